"""Patch geometry in the object frame shared by every module (DESIGN.md, "Frames and units").

A patch of side N centred at ``(x, y)`` (object pixels; x column, y row) covers rows
``y - N/2 .. y + N/2 - 1`` and columns ``x - N/2 .. x + N/2 - 1``; patch pixel (N/2, N/2) sits
on object pixel (y, x). Sub-pixel positions are sampled bilinearly.
"""

from __future__ import annotations

import numpy as np

__all__ = ["patch_origins", "split_positions", "extract_patches", "scan_canvas_shape", "mask_bbox"]


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


def extract_patches(obj, positions_xy, patch_size: int) -> np.ndarray:
    """Cut N x N patches from ``obj`` at ``positions_xy`` (bilinear for sub-pixel positions).

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
