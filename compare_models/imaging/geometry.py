"""Patch geometry in the object frame shared by every module (docs/design.md, "Frames and units").

A patch of side N centred at ``(x, y)`` (object pixels; x column, y row) covers rows
``y - N/2 .. y + N/2 - 1`` and columns ``x - N/2 .. x + N/2 - 1``; patch pixel (N/2, N/2) sits
on object pixel (y, x).

Sub-pixel positions (docs/simulation.md)
----------------------------------------
The ground-truth patch at a sub-pixel position is pty-chi's: the object is cut without
interpolation at the nearest integer position and Fourier-shifted by what is left
(:func:`split_nearest`, :func:`integer_crops`, :func:`fourier_shift`, :func:`object_patches`).
:func:`extract_patches` samples bilinearly instead; it is kept for callers that want that.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "patch_origins",
    "split_positions",
    "split_nearest",
    "fourier_shift",
    "integer_crops",
    "object_patches",
    "extract_patches",
    "scan_canvas_shape",
    "mask_bbox",
]

#: Residuals closer than this to 0 are snapped to 0, so integer scans stay exact (pixels).
_SNAP_PX = 1e-9


def patch_origins(positions_xy, patch_size: int) -> np.ndarray:
    """Object coordinates (x, y) of each patch's pixel (0, 0), float64 (n, 2)."""
    return np.asarray(positions_xy, dtype=np.float64) - patch_size / 2


def split_positions(positions_xy, patch_size: int):
    """Split patch origins into integer and fractional parts.

    Returns
    -------
    origin_int : ndarray (n, 2) int64
        ``floor`` of each patch's origin (x, y) in object pixels.
    fraction : ndarray (n, 2) float64 in [0, 1)
        What is left, computed in float64 before any canvas offset so that large
        coordinates do not lose precision.
    """
    origin = patch_origins(positions_xy, patch_size)
    origin_int = np.floor(origin)
    fraction = origin - origin_int
    # Snap fractions within float noise of an integer, so integer scans stay exact.
    near_one = fraction > 1 - 1e-9
    origin_int[near_one] += 1
    fraction[near_one] = 0.0
    fraction[fraction < 1e-9] = 0.0
    return origin_int.astype(np.int64), fraction


def split_nearest(positions_xy, patch_size: int):
    """Split patch centres into an integer crop origin and a sub-pixel residual, pty-chi's way.

    Parameters
    ----------
    positions_xy : array_like (n, 2)
        Patch centres, object pixels (x column, y row).
    patch_size : int
        N.

    Returns
    -------
    origin_int : ndarray (n, 2) int64
        Object (x, y) of pixel (0, 0) of each patch's integer crop: ``k - N//2`` with
        ``k = round(c)``, where ``c = position - (N % 2)/2`` is the object coordinate of patch
        pixel ``N//2`` (``c = position`` for even N).
    residual : ndarray (n, 2) float64 in [-1/2, 1/2]
        ``c - k``: how far the patch sits from its integer crop.

    Notes
    -----
    ``np.round`` rounds half to even, as ``torch.round`` does in pty-chi 2.2's forward model
    (``ptychi/forward_models.py``, ``positions.round()``); docs/simulation.md has the
    derivation. Residuals within 1e-9 px of 0 are set to 0.

    Examples
    --------
    >>> origin, residual = split_nearest([[10.3, 20.5]], 8)
    >>> origin.tolist(), residual.round(6).tolist()
    ([[6, 16]], [[0.3, 0.5]])
    """
    positions = np.asarray(positions_xy, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 2:
        raise ValueError(f"positions_xy must have shape (n, 2) (x column, y row), got {positions.shape}")
    n_side = int(patch_size)
    centre = positions - (n_side % 2) / 2
    nearest = np.round(centre)
    residual = centre - nearest
    residual[np.abs(residual) < _SNAP_PX] = 0.0
    return (nearest - n_side // 2).astype(np.int64), residual


def fourier_shift(images, shifts_xy) -> np.ndarray:
    """Shift images by sub-pixel amounts with a Fourier phase ramp (periodic over each image).

    ``out[i, j] = in(i - s_y, j - s_x)``, band-limited interpolation, periodic over the image.

    Parameters
    ----------
    images : array_like (n, H, W) or (H, W), complex or real
    shifts_xy : array_like (n, 2) or (2,)
        (x, y) shift of each image, pixels; positive moves the content to larger indices.

    Returns
    -------
    ndarray, complex128, the shape of ``images``
        An image whose shift is exactly 0 is returned unchanged (bit for bit).

    Notes
    -----
    The same operator as ``ptychi.image_proc.fourier_shift`` (pty-chi 2.2):
    ``ifft2(fft2(image) * exp(-2 pi i (f_y s_y + f_x s_x)))`` with ``f = fftfreq(side)``, so the
    Nyquist bin of an even side is at ``f = -1/2``.
    """
    images = np.asarray(images, dtype=np.complex128)
    single = images.ndim == 2
    if single:
        images = images[None]
    if images.ndim != 3:
        raise ValueError(f"images must have shape (n, H, W) or (H, W), got {images.shape}")
    shifts = np.asarray(shifts_xy, dtype=np.float64).reshape(-1, 2)
    shifts = np.broadcast_to(shifts, (images.shape[0], 2))
    height, width = images.shape[-2:]
    fy = np.fft.fftfreq(height)[None, :, None]
    fx = np.fft.fftfreq(width)[None, None, :]
    moved = (shifts != 0).any(axis=1)
    out = images.copy()
    if moved.any():
        sy = shifts[moved, 1, None, None]
        sx = shifts[moved, 0, None, None]
        ramp = np.exp(-2j * np.pi * (fy * sy + fx * sx))
        out[moved] = np.fft.ifft2(np.fft.fft2(images[moved]) * ramp)
    return out[0] if single else out


def integer_crops(obj, origin_xy, patch_size: int) -> np.ndarray:
    """``obj[r0 : r0 + N, c0 : c0 + N]`` for each integer origin (c0, r0), no interpolation.

    Parameters
    ----------
    obj : ndarray (H, W)
    origin_xy : array_like (n, 2) int
        Object (x, y) of each crop's pixel (0, 0), e.g. from :func:`split_nearest`.
    patch_size : int
        N.

    Returns
    -------
    ndarray (n, N, N), dtype of ``obj``

    Raises
    ------
    ValueError
        If a crop leaves the object.
    """
    obj = np.asarray(obj)
    if obj.ndim != 2:
        raise ValueError(f"obj must be 2-D (H, W), got shape {obj.shape}")
    n_side = int(patch_size)
    origin = np.asarray(origin_xy, dtype=np.int64).reshape(-1, 2)
    height, width = obj.shape
    bad = (origin < 0).any(axis=1) | (origin[:, 0] + n_side > width) | (origin[:, 1] + n_side > height)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"crop {k} with origin (x, y) = {tuple(int(v) for v in origin[k])} and side {n_side} "
            f"leaves the object of shape {obj.shape}"
        )
    rows = origin[:, 1, None] + np.arange(n_side)[None, :]
    cols = origin[:, 0, None] + np.arange(n_side)[None, :]
    return obj[rows[:, :, None], cols[:, None, :]]


def object_patches(obj, positions_xy, patch_size: int) -> np.ndarray:
    """Ground-truth patches: the object seen from each sub-pixel position (the dataset's ``Y``).

    ``Y = fourier_shift(O_c, -r)``: the integer crop ``O_c`` at the nearest integer position
    (:func:`split_nearest`) shifted back by the residual ``r``, so that
    ``Y[i, j] = O(y - N/2 + i, x - N/2 + j)`` (band-limited, periodic over the patch): the patch
    centred at the true position, in the frame of this module's docstring. It is what a network
    with a fixed, centred probe sees, and what a perfect network predicts; a Fourier shift by
    ``+r`` gives the crop back exactly (the stitcher does that).

    Parameters
    ----------
    obj : ndarray (H, W), complex or real
    positions_xy : array_like (n, 2)
        Patch centres, object pixels (x column, y row).
    patch_size : int
        N.

    Returns
    -------
    ndarray (n, N, N) complex (complex64 for a complex64 or real float32 object, else complex128)
        For integer positions exactly the slices ``obj[y - N/2 : y + N/2, x - N/2 : x + N/2]``.

    Raises
    ------
    ValueError
        If a crop leaves the object.
    """
    obj = np.asarray(obj)
    origin, residual = split_nearest(positions_xy, patch_size)
    crops = integer_crops(obj, origin, patch_size)
    dtype = np.result_type(obj.dtype, np.complex64)
    return fourier_shift(crops, -residual).astype(dtype)


def extract_patches(obj, positions_xy, patch_size: int) -> np.ndarray:
    """Cut N x N patches from ``obj`` at ``positions_xy`` (bilinear for sub-pixel positions).

    Not the simulator's ground truth at sub-pixel positions: that is :func:`object_patches`.

    Parameters
    ----------
    obj : ndarray (H, W), real or complex
    positions_xy : ndarray (n, 2)
        Patch centres, object pixels (x column, y row).
    patch_size : int
        N.

    Returns
    -------
    ndarray (n, N, N), dtype of ``obj``
        For integer positions exactly ``obj[y - N/2 : y + N/2, x - N/2 : x + N/2]``.

    Raises
    ------
    ValueError
        If a patch (with its interpolation neighbours) leaves the object.
    """
    obj = np.asarray(obj)
    if obj.ndim != 2:
        raise ValueError(f"obj must be 2-D (H, W), got shape {obj.shape}")
    n_side = int(patch_size)
    origin_int, fraction = split_positions(positions_xy, n_side)
    height, width = obj.shape
    needs_x = fraction[:, 0] > 0
    needs_y = fraction[:, 1] > 0
    low_bad = (origin_int < 0).any(axis=1)
    high_bad = (origin_int[:, 0] + n_side + needs_x > width) | (
        origin_int[:, 1] + n_side + needs_y > height
    )
    if (low_bad | high_bad).any():
        bad = int(np.flatnonzero(low_bad | high_bad)[0])
        raise ValueError(
            f"patch {bad} at position {tuple(np.asarray(positions_xy)[bad])} leaves the object "
            f"of shape {obj.shape} (patch size {n_side})"
        )
    # One extra row/column of zeros so a window of N + 1 can always be sliced; it only
    # ever gets zero weight.
    padded = np.pad(obj, ((0, 1), (0, 1)))
    out = np.empty((origin_int.shape[0], n_side, n_side), dtype=obj.dtype)
    for k, ((c0, r0), (fx, fy)) in enumerate(zip(origin_int, fraction, strict=True)):
        if fx == 0 and fy == 0:
            out[k] = obj[r0 : r0 + n_side, c0 : c0 + n_side]
            continue
        win = padded[r0 : r0 + n_side + 1, c0 : c0 + n_side + 1]
        rows = (1 - fy) * win[:-1] + fy * win[1:]
        out[k] = (1 - fx) * rows[:, :-1] + fx * rows[:, 1:]
    return out


def scan_canvas_shape(positions_xy, patch_size: int) -> tuple[int, int]:
    """(H, W) of the smallest object grid, with origin at 0, holding every patch.

    Used when there is no ground truth: the canvas is the bounding box of the scan plus N/2.
    """
    origin_int, fraction = split_positions(positions_xy, patch_size)
    far = origin_int + patch_size + (fraction > 0)
    if (origin_int < 0).any():
        raise ValueError("positions put a patch at negative object coordinates")
    return int(far[:, 1].max()), int(far[:, 0].max())


def mask_bbox(mask) -> tuple[slice, slice]:
    """(rows, cols) slices of the smallest box holding every True pixel of a 2-D ``mask``.

    Raises
    ------
    ValueError
        If ``mask`` holds no True pixel.
    """
    mask = np.asarray(mask, dtype=bool)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("mask holds no True pixel")
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)
