"""Register a reconstruction to the ground truth: sub-pixel shift, complex gauge, phase ramp.

A ptychographic reconstruction is defined up to a translation, a global complex factor and (for
the phase) a linear ramp. :func:`register` removes all three, measured against the ground truth
over the scanned region only, and returns every correction it applied so that a report can
show it (DESIGN.md, "Metrics, as the literature defines them").

Frames and units
----------------
* Images are (H, W) arrays on the ground-truth pixel grid; x is the column, y the row, and the
  pixel (0, 0) of the image is the origin of every plane reported here.
* Shifts are in pixels, (row, column) order, with the sign convention of
  :func:`skimage.registration.phase_cross_correlation`: ``shift_yx`` is the translation that,
  applied to the image (``aligned[y, x] = image[y - dy, x - dx]``, e.g. by
  :func:`scipy.ndimage.fourier_shift`), registers it with the reference. An image whose
  content sits 2 pixels further down than the reference's gets ``shift_yx[0] == -2``.
* Phase ramps are in radians and radians per pixel.

References
----------
.. [1] M. Guizar-Sicairos, S. T. Thurman and J. R. Fienup, "Efficient subpixel image
   registration algorithms," Opt. Lett. 33, 156-158 (2008).
.. [2] M. Guizar-Sicairos, A. Diaz, M. Holler, M. S. Lucas, A. Menzel, R. A. Wepf and
   O. Bunk, "Phase tomography from x-ray coherent diffractive imaging projections,"
   Opt. Express 19, 21345-21357 (2011) (removal of the global phase and linear phase ramp).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..errors import RegistrationError
from .geometry import mask_bbox, split_positions

__all__ = ["RegistrationResult", "scanned_region", "register", "fourier_shift_image"]

_CORRELATE_ON = ("complex", "amplitude")
_PHASE_ALIGN = ("ramp", "plane", "mean", "none")
# Width (pixels) of the cosine taper put on the region's edge before correlating.
_TAPER_PX = 8
# Extra padding (pixels) around an image before a Fourier shift, beyond the shift itself.
_SHIFT_PAD_PX = 32
_MAX_SHIFT_ITERATIONS = 4


@dataclass(frozen=True, eq=False)
class RegistrationResult:
    """What :func:`register` did to an image.

    Attributes
    ----------
    aligned : ndarray (H, W) complex128
        ``complex_factor * exp(-1j * (offset + d_dx * x + d_dy * y)) * shifted`` on the region,
        0 outside it; ``shifted`` is the input translated by ``shift_yx``.
    shift_yx : tuple of float
        Applied translation (row, column) in pixels; sign as
        :func:`skimage.registration.phase_cross_correlation` (see module notes).
    complex_factor : complex
        Global factor applied to the shifted image.
    phase_ramp : dict
        ``{"offset_rad", "d_dx_rad_per_px", "d_dy_rad_per_px"}``: the plane removed from the
        phase, with x, y the column and row index of the image (origin at pixel (0, 0)).
    method : dict
        Strings and numbers describing how: ``shift``, ``correlate_on``, ``upsample_factor``,
        ``max_shift_px``, ``iterations``, ``gauge``, ``phase_align``.
    correlation_error : float or None
        skimage's translation-invariant normalised RMS error of the last correlation.
    """

    aligned: np.ndarray
    shift_yx: tuple[float, float]
    complex_factor: complex
    phase_ramp: dict = field(default_factory=dict)
    method: dict = field(default_factory=dict)
    correlation_error: float | None = None

    def to_dict(self) -> dict:
        """JSON-ready summary of the corrections (everything except the image)."""
        return {
            "shift_yx_px": [float(self.shift_yx[0]), float(self.shift_yx[1])],
            "complex_factor": {
                "real": float(self.complex_factor.real),
                "imag": float(self.complex_factor.imag),
                "abs": float(abs(self.complex_factor)),
                "angle_rad": float(np.angle(self.complex_factor)),
            },
            "phase_ramp": {k: float(v) for k, v in self.phase_ramp.items()},
            "method": dict(self.method),
            "correlation_error": (
                None if self.correlation_error is None else float(self.correlation_error)
            ),
        }


def scanned_region(positions_xy, patch_size: int, shape, *, crop=None, erode: int = 0):
    """Pixels of the object covered by at least one patch (or its central crop).

    Parameters
    ----------
    positions_xy : array_like (n, 2)
        Patch centres in object pixels, x (column) then y (row).
    patch_size : int
        N, the side of a patch.
    shape : tuple (H, W)
        Shape of the object grid.
    crop : int, optional
        Use only the central ``crop x crop`` window of each patch, centred on the same
        position (the window of side ``crop`` in the frame of :mod:`compare_models.imaging.geometry`).
    erode : int
        Erode the union by this many pixels (8-connected, so by ``erode`` in the max-norm);
        the image border counts as outside.

    Returns
    -------
    ndarray (H, W) bool

    Notes
    -----
    A window with a sub-pixel origin is rounded outward to every pixel it touches (as
    :func:`compare_models.imaging.geometry.scan_canvas_shape` does). Windows are clipped to the grid.
    """
    pos = np.asarray(positions_xy, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 2 or pos.shape[0] == 0:
        raise RegistrationError(f"positions_xy must have shape (n >= 1, 2), got {pos.shape}")
    if not np.isfinite(pos).all():
        raise RegistrationError("positions_xy contains NaN or infinite values")
    n_side = int(patch_size)
    if n_side < 1 or n_side != patch_size:
        raise RegistrationError(f"patch_size must be a positive integer, got {patch_size!r}")
    if len(shape) != 2 or min(shape) < 1:
        raise RegistrationError(f"shape must be (H, W) with H, W >= 1, got {shape!r}")
    height, width = int(shape[0]), int(shape[1])
    side = n_side
    if crop is not None:
        side = int(crop)
        if side < 1 or side != crop or side > n_side:
            raise RegistrationError(f"crop must be an integer in 1..{n_side}, got {crop!r}")
    if int(erode) != erode or erode < 0:
        raise RegistrationError(f"erode must be a non-negative integer, got {erode!r}")

    origin_int, fraction = split_positions(pos, side)
    far = origin_int + side + (fraction > 0)
    # Coverage via a 2-D difference array: +1 at each window's corner, -1 past its far sides.
    diff = np.zeros((height + 1, width + 1), dtype=np.int64)
    c0 = np.clip(origin_int[:, 0], 0, width)
    r0 = np.clip(origin_int[:, 1], 0, height)
    c1 = np.clip(far[:, 0], 0, width)
    r1 = np.clip(far[:, 1], 0, height)
    keep = (c1 > c0) & (r1 > r0)
    for a, b, sign in ((r0, c0, 1), (r0, c1, -1), (r1, c0, -1), (r1, c1, 1)):
        np.add.at(diff, (a[keep], b[keep]), sign)
    region = diff.cumsum(axis=0).cumsum(axis=1)[:height, :width] > 0
    if erode:
        region = ndimage.binary_erosion(
            region, structure=np.ones((3, 3), bool), iterations=int(erode), border_value=0
        )
    return region


def fourier_shift_image(image, shift_yx, region=None):
    """Translate ``image`` by ``shift_yx`` pixels with a Fourier shift, without wrap-around.

    Parameters
    ----------
    image : ndarray (H, W), real or complex
    shift_yx : (float, float)
        Translation (row, column); ``out[y, x] = image[y - dy, x - dx]``.
    region : ndarray (H, W) bool, optional
        Pixels that hold data. Pixels outside it are first replaced by the nearest pixel
        inside it, so that the region's edge does not ring.

    Returns
    -------
    ndarray (H, W) complex128

    Notes
    -----
    The (filled) image is padded by ``ceil(max |shift|) + 32`` pixels with a linear ramp to its
    mean, so that the periodic extension the FFT assumes is continuous and nothing wraps from
    one side into the other. Integer shifts are exact.
    """
    img = np.asarray(image).astype(np.complex128)
    dy, dx = float(shift_yx[0]), float(shift_yx[1])
    if region is not None and not region.all():
        _, (iy, ix) = ndimage.distance_transform_edt(~region, return_indices=True)
        img = img[iy, ix]
    if dy == 0.0 and dx == 0.0:
        return img
    pad = int(math.ceil(max(abs(dy), abs(dx)))) + _SHIFT_PAD_PX
    mean = complex(img.mean())
    # np.pad's linear_ramp does not take complex end values; pad both parts.
    padded = np.pad(img.real, pad, mode="linear_ramp", end_values=mean.real) + 1j * np.pad(
        img.imag, pad, mode="linear_ramp", end_values=mean.imag
    )
    spectrum = ndimage.fourier_shift(np.fft.fft2(padded), (dy, dx))
    shifted = np.fft.ifft2(spectrum)
    return shifted[pad : pad + img.shape[0], pad : pad + img.shape[1]]


def _taper(mask):
    """Soft version of ``mask``: rises from 0 to 1 over ``_TAPER_PX`` pixels inside its edge."""
    inside = np.pad(mask, 1)
    dist = ndimage.distance_transform_edt(inside)[1:-1, 1:-1]
    width = max(1.0, min(_TAPER_PX, 0.25 * min(mask.shape)))
    ramp = np.clip(dist / width, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * ramp)


def _correlation_input(img, mask, taper, correlate_on):
    x = np.abs(img) if correlate_on == "amplitude" else img
    x = x - x[mask].mean()
    return x * taper


def _estimate_shift(image, reference, region, *, max_shift, upsample_factor, correlate_on):
    from skimage.registration import phase_cross_correlation

    box = mask_bbox(region)
    mask = region[box]
    taper = _taper(mask)
    ref = _correlation_input(reference[box], mask, taper, correlate_on)
    total = np.zeros(2)
    error = None
    iterations = 0
    moving = image
    for iterations in range(1, _MAX_SHIFT_ITERATIONS + 1):  # noqa: B007
        mov = moving[box]
        if correlate_on == "complex":
            # A relative phase ramp moves the complex correlation peak: remove the current
            # estimate of it (fitted at the current shift) before correlating.
            offset, d_dx, d_dy = _fit_ramp(mov * np.conj(reference[box]), mask, box)
            yy, xx = np.mgrid[box[0], box[1]]
            mov = mov * np.exp(-1j * (offset + d_dx * xx + d_dy * yy))
        mov = _correlation_input(mov, mask, taper, correlate_on)
        step, error, _ = phase_cross_correlation(
            ref, mov, upsample_factor=upsample_factor, normalization=None
        )
        total = total + np.asarray(step, dtype=np.float64)
        size = float(np.hypot(*total))
        if size > max_shift:
            raise RegistrationError(
                f"registration shift ({total[0]:.3f}, {total[1]:.3f}) px (|shift| = "
                f"{size:.3f} px) exceeds max_shift = {max_shift} px"
            )
        if np.hypot(*step) < 1.0 / upsample_factor:
            break
        moving = fourier_shift_image(image, total, region)
    return (float(total[0]), float(total[1])), float(error), iterations


def _least_squares_factor(moving, target):
    power = float(np.sum(np.abs(moving) ** 2))
    if power == 0.0:
        raise RegistrationError(
            "the image is zero over the region; no complex factor can be fitted"
        )
    return complex(np.sum(np.conj(moving) * target) / power)


def _weighted_plane(values, weights, xx, yy):
    """Weighted least-squares plane ``a + bx x + by y`` (centred for conditioning)."""
    wsum = weights.sum()
    xc, yc = float((weights * xx).sum() / wsum), float((weights * yy).sum() / wsum)
    design = np.stack([np.ones_like(xx), xx - xc, yy - yc], axis=1)
    sw = np.sqrt(weights)
    coef, *_ = np.linalg.lstsq(design * sw[:, None], values * sw, rcond=None)
    a, bx, by = (float(c) for c in coef)
    return a - bx * xc - by * yc, bx, by


def _fit_ramp(relative, mask, box):
    """Amplitude-weighted plane fitted to ``angle(relative)`` on ``mask`` (no unwrapping needed).

    ``relative`` is ``c * recon * conj(truth)`` on the bounding box; its modulus is the weight.
    A coarse gradient from neighbour products (robust to wrapping, up to pi rad/px) is refined
    by weighted least squares on the remaining, small, phase.
    """
    z = np.where(mask, relative, 0)
    gx = float(np.angle(np.sum(z[:, 1:] * np.conj(z[:, :-1]))))
    gy = float(np.angle(np.sum(z[1:, :] * np.conj(z[:-1, :]))))
    yy, xx = np.mgrid[box[0], box[1]]
    xx, yy, zv = xx[mask].astype(float), yy[mask].astype(float), z[mask]
    coarse = gx * xx + gy * yy
    a0 = float(np.angle(np.sum(zv * np.exp(-1j * coarse))))
    residual = np.angle(zv * np.exp(-1j * (coarse + a0)))
    weights = np.abs(zv)
    if weights.sum() == 0:
        raise RegistrationError("image and reference have no common support in the region")
    a, bx, by = _weighted_plane(residual, weights, xx, yy)
    return a0 + a, gx + bx, gy + by


def _unweighted_plane(phase, mask, box):
    yy, xx = np.mgrid[box[0], box[1]]
    return _weighted_plane(
        phase[mask], np.ones(int(mask.sum())), xx[mask].astype(float), yy[mask].astype(float)
    )


def register(
    image,
    reference,
    region,
    *,
    max_shift: float = 10.0,
    upsample_factor: int = 100,
    correlate_on: str = "complex",
    phase_align: str = "ramp",
    estimate_shift: bool = True,
) -> RegistrationResult:
    """Align a reconstruction to the ground truth: shift, complex factor and phase ramp.

    Parameters
    ----------
    image : ndarray (H, W) complex
        Reconstruction on the ground-truth pixel grid.
    reference : ndarray (H, W) complex
        Ground truth.
    region : ndarray (H, W) bool
        Scanned region (:func:`scanned_region`); every fit uses only these pixels.
    max_shift : float
        Largest accepted translation, pixels (Euclidean norm of ``shift_yx``).
    upsample_factor : int
        Sub-pixel precision of the correlation is ``1 / upsample_factor`` pixels.
    correlate_on : {"complex", "amplitude"}
        Correlate the complex fields (default) or their moduli (choose this when the phase
        carries a strong ramp, which moves the complex cross-correlation peak).
    phase_align : {"ramp", "plane", "mean", "none"}
        ``"ramp"``: least-squares complex factor ``c`` minimising
        ``sum_region |c * shifted - reference|**2``, then a plane fitted to
        ``angle(c * shifted * conj(reference))`` weighted by ``|c * shifted| * |reference|`` and
        removed; finally ``c`` is refitted by least squares to the de-ramped image.
        ``"none"``: the least-squares complex factor only.
        ``"plane"`` and ``"mean"`` reproduce the existing tool's alignment: amplitude scaled by
        ``mean|reference| / mean|shifted|``, and the phase corrected by the difference of
        unweighted planes fitted to each wrapped phase (``"plane"``) or by the difference of
        the mean phases (``"mean"``). The reference is never modified: the difference of the
        two fits is applied to the image, so pixel differences equal the existing tool's.
    estimate_shift : bool
        If False, no translation is estimated or applied; only the gauge is fitted.

    Returns
    -------
    RegistrationResult

    Raises
    ------
    RegistrationError
        Bad shapes or arguments, non-finite values, an empty region, an image that is zero on
        the region, or a shift larger than ``max_shift`` (the message gives the value).

    Notes
    -----
    The correlation sees only the region's bounding box, with each image's mean over the
    region removed and the region multiplied by a cosine-tapered mask, so that uncovered
    pixels and the region's edge do not pull the peak. The estimate is refined by shifting the
    image and correlating again (up to 4 times) until the correction is below one upsampled
    pixel. The shift is applied by :func:`fourier_shift_image` (no wrap-around). The output
    is 0 outside the region.

    References
    ----------
    .. [1] Guizar-Sicairos, Thurman and Fienup, Opt. Lett. 33, 156 (2008).

    Examples
    --------
    >>> yy, xx = np.mgrid[:64, :64]
    >>> truth = np.exp(1j * np.sin(xx / 5.0) * np.cos(yy / 7.0))
    >>> result = register(2j * truth, truth, np.ones((64, 64), bool), estimate_shift=False)
    >>> bool(np.allclose(result.aligned, truth))
    True
    """
    img = np.asarray(image)
    ref = np.asarray(reference)
    reg = np.asarray(region)
    if img.ndim != 2 or img.shape != ref.shape or reg.shape != img.shape:
        raise RegistrationError(
            f"image, reference and region must share one 2-D shape, got {img.shape}, "
            f"{ref.shape}, {reg.shape}"
        )
    if reg.dtype != bool:
        raise RegistrationError(f"region must be a boolean mask, got dtype {reg.dtype}")
    if not reg.any():
        raise RegistrationError("region is empty: no pixel to register on")
    for name, arr in (("image", img), ("reference", ref)):
        if not np.isfinite(arr[reg]).all():
            raise RegistrationError(f"{name} has NaN or infinite values inside the region")
    if correlate_on not in _CORRELATE_ON:
        raise RegistrationError(
            f"correlate_on must be one of {_CORRELATE_ON}, got {correlate_on!r}"
        )
    if phase_align not in _PHASE_ALIGN:
        raise RegistrationError(f"phase_align must be one of {_PHASE_ALIGN}, got {phase_align!r}")
    if not (max_shift > 0 and math.isfinite(max_shift)):
        raise RegistrationError(f"max_shift must be a positive number of pixels, got {max_shift!r}")
    if int(upsample_factor) != upsample_factor or upsample_factor < 1:
        raise RegistrationError(
            f"upsample_factor must be a positive integer, got {upsample_factor!r}"
        )
    img = img.astype(np.complex128)
    ref = ref.astype(np.complex128)
    # Outside the region nothing is trusted; zero it so fills and fits never see it.
    img = np.where(reg, img, 0)

    method = {
        "shift": "none",
        "correlate_on": None,
        "upsample_factor": None,
        "max_shift_px": float(max_shift),
        "iterations": 0,
        "phase_align": phase_align,
    }
    shift_yx = (0.0, 0.0)
    error = None
    if estimate_shift:
        shift_yx, error, iterations = _estimate_shift(
            img,
            ref,
            reg,
            max_shift=float(max_shift),
            upsample_factor=int(upsample_factor),
            correlate_on=correlate_on,
        )
        method.update(
            shift="upsampled cross-correlation (Guizar-Sicairos 2008), Fourier shift",
            correlate_on=correlate_on,
            upsample_factor=int(upsample_factor),
            iterations=iterations,
        )
        shifted = fourier_shift_image(img, shift_yx, reg)
    else:
        shifted = img

    # Fit the gauge only where the shifted image came from inside the region (not from the
    # fill), unless that leaves nothing.
    fit = reg
    if shift_yx != (0.0, 0.0):
        source = ndimage.shift(reg.astype(float), shift_yx, order=1, cval=0.0) > 1 - 1e-9
        if (reg & source).any():
            fit = reg & source
    box = mask_bbox(fit)
    mask = fit[box]
    mov = shifted[box][mask]
    tgt = ref[box][mask]
    yy, xx = np.mgrid[: img.shape[0], : img.shape[1]]
    offset = d_dx = d_dy = 0.0
    if phase_align in ("ramp", "none"):
        factor = _least_squares_factor(mov, tgt)
        method["gauge"] = "least-squares complex factor over the region"
        if phase_align == "ramp":
            relative = factor * shifted[box] * np.conj(ref[box])
            offset, d_dx, d_dy = _fit_ramp(relative, mask, box)
            ramp_box = np.exp(-1j * (offset + d_dx * xx[box][mask] + d_dy * yy[box][mask]))
            factor = _least_squares_factor(mov * ramp_box, tgt)
            method["gauge"] += "; amplitude-weighted phase ramp; factor refitted after the ramp"
    else:
        mean_mov = float(np.abs(mov).mean())
        if mean_mov == 0.0:
            raise RegistrationError("the image is zero over the region; no scale can be fitted")
        scale = float(np.abs(tgt).mean()) / mean_mov
        if phase_align == "mean":
            factor = scale * np.exp(1j * (np.angle(tgt).mean() - np.angle(mov).mean()))
            method["gauge"] = "existing tool: mean-amplitude ratio and mean-phase difference"
        else:
            p_img = _unweighted_plane(np.angle(shifted[box]), mask, box)
            p_ref = _unweighted_plane(np.angle(ref[box]), mask, box)
            offset, d_dx, d_dy = (a - b for a, b in zip(p_img, p_ref, strict=True))
            factor = complex(scale)
            method["gauge"] = "existing tool: mean-amplitude ratio and difference of phase planes"

    correction = factor * np.exp(-1j * (offset + d_dx * xx + d_dy * yy))
    aligned = np.where(reg, correction * shifted, 0)
    return RegistrationResult(
        aligned=aligned,
        shift_yx=shift_yx,
        complex_factor=complex(factor),
        phase_ramp={"offset_rad": offset, "d_dx_rad_per_px": d_dx, "d_dy_rad_per_px": d_dy},
        method=method,
        correlation_error=error,
    )
