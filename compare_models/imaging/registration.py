"""Register a reconstruction to the ground truth: a sub-pixel shift, then the gauge.

A ptychographic reconstruction is defined up to a translation, a global phase, a linear phase
ramp and an amplitude scale (docs/design.md, "A fair comparison"). This module measures each against
the ground truth and returns every correction it applied, so that a report can show it:

* :func:`estimate_shift`: upsampled cross-correlation [1]_ over a region, refined iteratively,
  with its standard error from the data (:func:`shift_standard_error`); a shift that noise can
  explain is recorded and not applied, so that no image is resampled for nothing.
* :func:`fourier_shift_image`: the whole image translated by the Fourier shift theorem (only
  pixels where the arm has no data are filled first, and the edge of the data is smoothed by
  :func:`apodise` away from the pixels that are scored); registration never discards data.
* :func:`fit_gauge`: a global phase offset and a linear phase ramp fitted to the
  amplitude-weighted phase difference, and an amplitude scale fitted to the amplitudes alone
  [2]_, so that phase noise never moves an amplitude score. Never one complex factor (its
  modulus shrinks by about ``exp(-sigma**2 / 2)`` with phase noise sigma), never a plane
  removed from each image separately.
* :func:`register`: all of the above for one image. A shifted image's amplitude is the
  shifted amplitude, never the modulus of the shifted complex field, so that phase noise never
  moves an amplitude score through the resampling either.

Frames and units
----------------
* Images are (H, W) arrays on the ground-truth pixel grid; x is the column, y the row, and the
  pixel (0, 0) of the image is the origin of every phase plane reported here.
* Shifts are in pixels, (row, column) order, with the sign convention of
  :func:`skimage.registration.phase_cross_correlation`: ``shift_yx`` is the translation that,
  applied to the image (``aligned[y, x] = image[y - dy, x - dx]``, e.g. by
  :func:`scipy.ndimage.fourier_shift`), registers it with the reference. An image whose
  content sits 2 pixels further down than the reference's gets ``shift_yx[0] == -2``.
* Phase offsets are in radians, ramps in radians per pixel; the amplitude scale has no unit.

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
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import RegistrationError
from .geometry import mask_bbox
from .region import scanned_region

__all__ = [
    "PHASE_GAUGES",
    "SHIFT_SIGNIFICANCE_LEVEL",
    "SHIFT_RULE",
    "UPSAMPLE_FACTOR",
    "Gauge",
    "ShiftEstimate",
    "RegistrationResult",
    "estimate_shift",
    "shift_standard_error",
    "significance_threshold",
    "fourier_shift_image",
    "shifted_valid",
    "apodise",
    "APODISE_PX",
    "fit_gauge",
    "register",
    "scanned_region",
]

_CORRELATE_ON = ("complex", "amplitude")
#: Phase gauges :func:`fit_gauge` fits: offset and linear ramp, or the offset only.
PHASE_GAUGES = ("ramp", "offset")
# Width (pixels) of the cosine taper put on the region's edge before correlating.
_TAPER_PX = 8
# Extra padding (pixels) around an image before a Fourier shift, beyond the shift itself.
_SHIFT_PAD_PX = 32
_MAX_SHIFT_ITERATIONS = 4
#: Widest raised-cosine apodisation (pixels) put inside the edge of an image's data before a
#: sub-pixel shift (:func:`apodise`).
APODISE_PX = 8
#: Default false-alarm rate of the shift test: the probability that an image with no shift,
#: only noise, gets a shift applied (:func:`estimate_shift`).
SHIFT_SIGNIFICANCE_LEVEL = 1e-3
#: Default precision of the correlation peak: a grid of 1/UPSAMPLE_FACTOR pixels.
UPSAMPLE_FACTOR = 100
ESTIMATED = "upsampled cross-correlation (Guizar-Sicairos 2008)"
#: The rule :func:`estimate_shift` applies, in words (recorded with every estimate).
SHIFT_RULE = (
    "a measured shift is applied only when noise cannot explain it: its components divided by "
    "their precision (the standard error of the correlation peak from the residual between the "
    "registered images, combined with the rounding of the 1/upsample_factor grid) have a norm "
    "above sqrt(-2 ln(significance_level)), the chi-square test with 2 degrees of freedom; "
    "otherwise no shift is applied and the image is not resampled"
)


@dataclass(frozen=True)
class Gauge:
    """The gauge fitted to one image: ``aligned = s * image * exp(-i (a + gx x + gy y))``.

    Attributes
    ----------
    phase_offset_rad : float
        ``a``: the plane's value at pixel (0, 0), radians.
    phase_ramp_x_rad_per_px, phase_ramp_y_rad_per_px : float
        ``gx``, ``gy``: its slope along the column (x) and row (y) index, radians per pixel
        (both 0 for the ``"offset"`` gauge).
    amplitude_scale : float
        ``s``, the least-squares scale of ``|image|`` to ``|truth|`` (no unit).
    phase : str
        ``"ramp"`` or ``"offset"``.
    fit_pixels : int
        Pixels the fit used.
    """

    phase_offset_rad: float
    phase_ramp_x_rad_per_px: float
    phase_ramp_y_rad_per_px: float
    amplitude_scale: float
    phase: str = "ramp"
    fit_pixels: int = 0

    def plane(self, shape) -> np.ndarray:
        """The fitted phase plane on an (H, W) grid, radians."""
        yy, xx = np.mgrid[: shape[0], : shape[1]]
        return self.phase_offset_rad + self.phase_ramp_x_rad_per_px * xx + self.phase_ramp_y_rad_per_px * yy

    def apply(self, image) -> np.ndarray:
        """``amplitude_scale * image * exp(-1j * plane)``, complex128."""
        image = np.asarray(image)
        return self.amplitude_scale * image.astype(np.complex128) * np.exp(-1j * self.plane(image.shape))

    def to_dict(self) -> dict:
        return {
            "phase_offset_rad": float(self.phase_offset_rad),
            "phase_ramp_x_rad_per_px": float(self.phase_ramp_x_rad_per_px),
            "phase_ramp_y_rad_per_px": float(self.phase_ramp_y_rad_per_px),
            "amplitude_scale": float(self.amplitude_scale),
            "phase": self.phase,
            "fit_pixels": int(self.fit_pixels),
            "definition": (
                "aligned = amplitude_scale * image * exp(-i (phase_offset_rad + "
                "phase_ramp_x_rad_per_px * x + phase_ramp_y_rad_per_px * y)), x column and y row "
                "index from pixel (0, 0); the plane is the weighted least-squares fit to "
                "angle(image * conj(truth)) with weights |image| |truth|"
                + ("" if self.phase == "ramp" else " (offset only)")
                + "; amplitude_scale = sum |image| |truth| / sum |image|^2 over the scored region"
            ),
        }


@dataclass(frozen=True)
class ShiftEstimate:
    """A translation, how it was measured, and whether it was applied.

    Attributes
    ----------
    shift_yx : tuple of float
        (row, column) in pixels: the translation to apply. ``measured_shift_yx`` when that is
        significant (``applied``), else (0, 0). Sign as
        :func:`skimage.registration.phase_cross_correlation`.
    method : str
        ``"upsampled cross-correlation (Guizar-Sicairos 2008)"``, ``"none"`` or ``"given"``.
    correlate_on : str or None
    upsample_factor : int or None
        The correlation peak is located on a grid of ``1 / upsample_factor`` pixels.
    iterations : int
    correlation_error : float or None
        skimage's translation-invariant normalised RMS error of the last correlation.
    measured_shift_yx : tuple of float or None
        What the correlation found (None when nothing was measured).
    standard_error_yx : tuple of float or None
        Statistical standard error of each component of ``measured_shift_yx``, pixels
        (:func:`shift_standard_error`); ``inf`` when the images hold no structure to correlate.
    precision_yx : tuple of float or None
        The estimate's precision per component: ``sqrt(standard_error**2 + grid**2)`` with
        ``grid = 1 / (upsample_factor * sqrt(12))``, the standard deviation of rounding to the
        upsampled grid.
    significance : float or None
        ``sqrt(sum((measured / precision)**2))``: how many precisions the measured shift lies
        from zero.
    significance_level : float or None
        The false-alarm rate of the test: the probability that an image with no shift gets
        one applied.
    applied : bool
        Whether ``shift_yx`` is a translation to apply (a significant estimate, or one given).
    reason : str
        Why it was (or was not) applied, in words.
    """

    shift_yx: tuple
    method: str = "none"
    correlate_on: str | None = None
    upsample_factor: int | None = None
    iterations: int = 0
    correlation_error: float | None = None
    measured_shift_yx: tuple | None = None
    standard_error_yx: tuple | None = None
    precision_yx: tuple | None = None
    significance: float | None = None
    significance_level: float | None = None
    applied: bool = False
    reason: str = "no shift estimated"

    @property
    def norm_px(self) -> float:
        """Length of the translation applied, pixels."""
        return float(math.hypot(*self.shift_yx))

    @property
    def measured_norm_px(self) -> float | None:
        """Length of the measured translation, pixels (None when nothing was measured)."""
        return None if self.measured_shift_yx is None else float(math.hypot(*self.measured_shift_yx))

    def to_dict(self) -> dict:
        def pair(values):
            return None if values is None else [_json_float(values[0]), _json_float(values[1])]

        return {
            "shift_yx_px": [float(self.shift_yx[0]), float(self.shift_yx[1])],
            "applied": bool(self.applied),
            "reason": self.reason,
            "method": self.method,
            "correlate_on": self.correlate_on,
            "upsample_factor": self.upsample_factor,
            "iterations": int(self.iterations),
            "correlation_error": None if self.correlation_error is None else float(self.correlation_error),
            "measured_shift_yx_px": pair(self.measured_shift_yx),
            "standard_error_yx_px": pair(self.standard_error_yx),
            "precision_yx_px": pair(self.precision_yx),
            "significance": _json_float(self.significance),
            "significance_threshold": (
                None if self.significance_level is None else significance_threshold(self.significance_level)
            ),
            "significance_level": self.significance_level,
            "rule": SHIFT_RULE if self.method == ESTIMATED else None,
        }


def _json_float(value):
    """A float for JSON: None for None or a non-finite value (JSON has no inf)."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


@dataclass(frozen=True, eq=False)
class RegistrationResult:
    """What :func:`register` did to an image.

    Attributes
    ----------
    aligned : ndarray (H, W) complex128
        ``gauge.apply(shifted)`` where the shifted image holds untouched data, 0 elsewhere;
        ``shifted`` is the whole input translated by ``shift.shift_yx``.
    valid : ndarray (H, W) bool
        Where ``aligned`` holds data: the input's valid mask, less the apodised rim when a
        shift was applied, translated by the shift (:func:`shifted_valid`).
    shift : ShiftEstimate
    gauge : Gauge
    """

    aligned: np.ndarray
    valid: np.ndarray
    shift: ShiftEstimate
    gauge: Gauge

    @property
    def shift_yx(self) -> tuple:
        return self.shift.shift_yx

    def to_dict(self) -> dict:
        """JSON-ready summary of the corrections (everything except the images)."""
        return {
            "shift_yx_px": [float(self.shift.shift_yx[0]), float(self.shift.shift_yx[1])],
            "shift": self.shift.to_dict(),
            "gauge": self.gauge.to_dict(),
        }


# --------------------------------------------------------------------------------------------
# Shifts


def fourier_shift_image(image, shift_yx, valid=None):
    """Translate the whole ``image`` by ``shift_yx`` pixels with a Fourier shift, without wrap-around.

    Parameters
    ----------
    image : ndarray (H, W), real or complex
    shift_yx : (float, float)
        Translation (row, column); ``out[y, x] = image[y - dy, x - dx]``.
    valid : ndarray (H, W) bool, optional
        Pixels that hold data. Only pixels outside it are replaced, by the nearest pixel
        inside it, so that the edge of the data does not ring; every pixel with data is kept.

    Returns
    -------
    ndarray (H, W) complex128

    Notes
    -----
    The (filled) image is padded by ``ceil(max |shift|) + 32`` pixels with a linear ramp to its
    mean, so that the periodic extension the FFT assumes is continuous and nothing wraps from
    one side into the other. Integer shifts are exact. For a band-limited image the shift is
    exact up to the truncation of the sinc interpolation at the edge of the data, which decays
    with the distance from it (the scored region keeps a margin from it: :mod:`.region`).
    """
    img = np.asarray(image).astype(np.complex128)
    dy, dx = float(shift_yx[0]), float(shift_yx[1])
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if not valid.any():
            raise RegistrationError("the image holds no data (its valid mask is empty)")
        if not valid.all():
            _, (iy, ix) = ndimage.distance_transform_edt(~valid, return_indices=True)
            img = img[iy, ix]
    if not np.isfinite(img).all():
        raise RegistrationError("the image has NaN or infinite values where it holds data")
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


def apodise(image, valid, keep, taper_px: float = APODISE_PX):
    """Smooth the edge of an image's data before a sub-pixel Fourier shift.

    Parameters
    ----------
    image : ndarray (H, W) complex
    valid : ndarray (H, W) bool
        Where the image holds data.
    keep : ndarray (H, W) bool
        Pixels whose values must stay exactly as they are (the sources of the scored pixels).
    taper_px : float
        Widest taper, pixels.

    Returns
    -------
    apodised : ndarray (H, W) complex128
        ``background + (filled - background) * w``: ``filled`` is the image with every pixel
        outside ``valid`` replaced by the nearest pixel inside it, ``background`` is ``filled``
        blurred by a Gaussian of ``T`` pixels, and ``w`` rises from 0 outside the data (and on
        the grid's border) to 1 at ``T`` pixels inside it along a raised cosine of the distance.
        ``T = min(taper_px, distance from the data's edge to the nearest pixel of keep)``, so
        ``w = 1`` on ``keep``.
    untouched : ndarray (H, W) bool
        Where ``w == 1`` and the image holds data: the pixels left exactly as they were.

    Notes
    -----
    The Fourier shift of a band-limited image is exact; what is not band-limited is the edge of
    the data, whose kink rings along sinc tails that fall off only as 1/distance. A smooth
    transition to a smooth background removes the kink, so scored pixels a few pixels inside
    the data are shifted to within the registration's own precision. Nothing in ``keep`` is
    changed, so nothing that is scored is altered.
    """
    img = np.asarray(image).astype(np.complex128)
    valid = np.asarray(valid, dtype=bool)
    filled = fourier_shift_image(img, (0.0, 0.0), valid)
    distance = ndimage.distance_transform_edt(np.pad(valid, 1))[1:-1, 1:-1]
    inside = np.asarray(keep, dtype=bool) & valid
    width = float(taper_px)
    if inside.any():
        width = min(width, float(distance[inside].min()))
    if width < 1.0:
        return filled, valid.copy()
    background = ndimage.gaussian_filter(filled.real, width, mode="nearest") + 1j * ndimage.gaussian_filter(
        filled.imag, width, mode="nearest"
    )
    weight = 0.5 - 0.5 * np.cos(np.pi * np.clip(distance / width, 0.0, 1.0))
    untouched = valid & (weight == 1.0)
    return np.where(weight == 1.0, filled, background + (filled - background) * weight), untouched


def shifted_valid(valid, shift_yx) -> np.ndarray:
    """Where an image shifted by ``shift_yx`` holds data: pixels whose source point
    ``(y - dy, x - dx)`` has all four of its bilinear neighbours in ``valid``."""
    valid = np.asarray(valid, dtype=bool)
    dy, dx = float(shift_yx[0]), float(shift_yx[1])
    if dy == 0.0 and dx == 0.0:
        return valid.copy()
    return ndimage.shift(valid.astype(np.float64), (dy, dx), order=1, cval=0.0) > 1 - 1e-9


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


def estimate_shift(
    image,
    reference,
    region,
    *,
    valid=None,
    max_shift: float = 10.0,
    upsample_factor: int = UPSAMPLE_FACTOR,
    correlate_on: str = "complex",
    significance_level: float = SHIFT_SIGNIFICANCE_LEVEL,
) -> ShiftEstimate:
    """Translation that registers ``image`` with ``reference`` over ``region``, applied only
    when it is significant.

    Parameters
    ----------
    image, reference : ndarray (H, W) complex
    region : ndarray (H, W) bool
        Pixels to correlate on (where both have data).
    valid : ndarray (H, W) bool, optional
        Where ``image`` holds data (default: everywhere); used when the image is re-shifted.
    max_shift : float
        Largest accepted translation, pixels (Euclidean norm).
    upsample_factor : int
        The peak is located on a grid of ``1 / upsample_factor`` pixels.
    correlate_on : {"complex", "amplitude"}
        Correlate the complex fields (a relative phase ramp is removed first at each step), or
        their moduli.
    significance_level : float
        False-alarm rate of the test that decides whether the measured shift is applied: the
        probability that an image with no shift gets one (default 1e-3).

    Returns
    -------
    ShiftEstimate
        ``measured_shift_yx`` is what the correlation found; ``shift_yx`` is that when it is
        significant, else (0, 0), and ``applied`` and ``reason`` say which and why.

    Raises
    ------
    RegistrationError
        Bad arguments, or a measured shift larger than ``max_shift`` (the message gives it).

    Notes
    -----
    The correlation sees only the region's bounding box, with each image's mean over the
    region removed and the region multiplied by a cosine-tapered mask, so that pixels outside
    the region and its edge do not pull the peak. The estimate is refined by shifting the whole
    image (:func:`fourier_shift_image`) and correlating again (up to 4 times) until the
    correction is below one upsampled pixel.

    Noise moves the peak: pixel-white phase noise of 0.3, 0.6 and 1 rad on a perfect image
    moves it by about 0.02, 0.04 and 0.1 px, and Fourier-shifting a noisy complex image by such
    a shift mixes its phase noise into its amplitude. So the shift is tested. Its standard
    error per axis is measured from the data (:func:`shift_standard_error`), combined with the
    rounding of the upsampled grid into a precision ``p = sqrt(se**2 + 1 / (12 u**2))`` (``u``
    the upsample factor), and the shift is applied only when
    ``sqrt((dy / p_y)**2 + (dx / p_x)**2) > sqrt(-2 ln(significance_level))`` (under "no
    shift" that statistic follows a chi distribution with 2 degrees of freedom, whose survival
    function is ``exp(-t**2 / 2)``). A shift that fails the test is below what these images can
    estimate: it is recorded, not applied, and the image is not resampled.

    References
    ----------
    .. [1] Guizar-Sicairos, Thurman and Fienup, Opt. Lett. 33, 156 (2008).
    """
    from skimage.registration import phase_cross_correlation

    img, ref, reg = _check_images(image, reference, region)
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
    if correlate_on not in _CORRELATE_ON:
        raise RegistrationError(f"correlate_on must be one of {_CORRELATE_ON}, got {correlate_on!r}")
    if not (max_shift > 0 and math.isfinite(max_shift)):
        raise RegistrationError(f"max_shift must be a positive number of pixels, got {max_shift!r}")
    if int(upsample_factor) != upsample_factor or upsample_factor < 1:
        raise RegistrationError(f"upsample_factor must be a positive integer, got {upsample_factor!r}")
    if not (0.0 < significance_level < 1.0):
        raise RegistrationError(f"significance_level must lie in (0, 1), got {significance_level!r}")
    upsample_factor = int(upsample_factor)
    box = mask_bbox(reg)
    mask = reg[box]
    taper = _taper(mask)
    ref_in = _correlation_input(ref[box], mask, taper, correlate_on)
    total = np.zeros(2)
    error = None
    iterations = 0
    moving = fourier_shift_image(img, (0.0, 0.0), valid)
    for iterations in range(1, _MAX_SHIFT_ITERATIONS + 1):  # noqa: B007
        mov = moving[box]
        if correlate_on == "complex":
            # A relative phase ramp moves the complex correlation peak: remove the current
            # estimate of it (fitted at the current shift) before correlating.
            offset, d_dx, d_dy = _fit_phase_plane(mov * np.conj(ref[box]), mask, box, "ramp")
            yy, xx = np.mgrid[box[0], box[1]]
            mov = mov * np.exp(-1j * (offset + d_dx * xx + d_dy * yy))
        mov_in = _correlation_input(mov, mask, taper, correlate_on)
        step, error, _ = phase_cross_correlation(
            ref_in, mov_in, upsample_factor=upsample_factor, normalization=None
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
        moving = fourier_shift_image(img, total, valid)
    measured = (float(total[0]), float(total[1]))
    standard_error = shift_standard_error(ref_in, mov_in)
    return _tested_estimate(
        measured, standard_error, upsample_factor, significance_level,
        correlate_on=correlate_on, iterations=iterations, correlation_error=float(error),
    )


def significance_threshold(significance_level: float) -> float:
    """``sqrt(-2 ln(significance_level))``: the norm, in precisions, above which a measured
    2-D shift is significant (the chi distribution with 2 degrees of freedom has the survival
    function ``exp(-t**2 / 2)``). 3.717 for the default 1e-3."""
    return float(math.sqrt(-2.0 * math.log(significance_level)))


def _tested_estimate(measured, standard_error, upsample_factor, significance_level, **details):
    """The :class:`ShiftEstimate` of a measured shift: applied when significant."""
    grid = 1.0 / (upsample_factor * math.sqrt(12.0))
    precision = tuple(float(math.hypot(se, grid)) for se in standard_error)
    threshold = significance_threshold(significance_level)
    where = (
        f"measured ({measured[0]:.3f}, {measured[1]:.3f}) px, precision "
        f"({precision[0]:.3g}, {precision[1]:.3g}) px"
    )
    if measured == (0.0, 0.0):
        significance, applied = 0.0, False
        reason = "not applied: the measured shift is zero (no resampling)"
    elif not all(math.isfinite(p) for p in precision):
        significance, applied = 0.0, False
        reason = (
            f"not applied: the images hold no common structure along an axis, so no shift can be "
            f"estimated ({where}); the image is not resampled"
        )
    else:
        significance = float(math.hypot(measured[0] / precision[0], measured[1] / precision[1]))
        applied = significance > threshold
        verdict = (
            "applied: noise cannot explain it"
            if applied
            else "not applied: noise in the images explains it, so the image is not resampled"
        )
        reason = (
            f"{verdict} ({where}; {significance:.2f} precisions from zero, threshold "
            f"{threshold:.2f} for a false-alarm rate of {significance_level:g})"
        )
    return ShiftEstimate(
        shift_yx=measured if applied else (0.0, 0.0),
        method=ESTIMATED,
        upsample_factor=upsample_factor,
        measured_shift_yx=measured,
        standard_error_yx=tuple(float(se) for se in standard_error),
        precision_yx=precision,
        significance=significance,
        significance_level=float(significance_level),
        applied=applied,
        reason=reason,
        **details,
    )


def _spectral_gradient(values):
    """(d/dy, d/dx) of a periodic array by the Fourier derivative: the derivative of the
    trigonometric interpolation that the FFT-based correlation sees."""
    spectrum = np.fft.fft2(values)
    ky = 2j * np.pi * np.fft.fftfreq(values.shape[0])[:, None]
    kx = 2j * np.pi * np.fft.fftfreq(values.shape[1])[None, :]
    return np.fft.ifft2(ky * spectrum), np.fft.ifft2(kx * spectrum)


def shift_standard_error(reference_in, moving_in) -> tuple[float, float]:
    """Standard error (row, column), pixels, of the correlation peak between two registered,
    tapered images, from their residual.

    Parameters
    ----------
    reference_in, moving_in : ndarray (h, w), real or complex
        The correlation inputs at the estimated shift: each image minus its mean over the
        region, times the tapered mask (zero outside the region), the moving one registered.

    Returns
    -------
    (float, float)
        ``inf`` along an axis where the images share no structure (no curvature of the peak).

    Notes
    -----
    With ``f`` the reference, ``g = c * moving`` (``c`` the least-squares scale, complex for
    complex images) and ``e = g - f`` the residual, the correlation ``C(d) = Re sum g(x + d)
    conj(f(x))`` peaks where ``C'(d) = 0``. Near the peak, a first-order expansion gives the
    error of the peak along axis ``k`` as ``-sum_x s_k(x) / H_k``, with the score
    ``s_k = Re(e conj(d_k f))`` and the curvature ``H_k = Re sum d_k g conj(d_k f)``
    (derivatives by the Fourier derivative). For a residual independent from pixel to pixel the
    variance is ``sum_x s_k(x)**2 / H_k**2`` (the sandwich estimator: it holds for any noise
    level per pixel and any direction of the noise, such as phase noise, which moves a complex
    value along ``i f``). A residual that is correlated between neighbouring pixels makes this
    an underestimate. Checked by Monte Carlo in the tests (0.3 to 1 rad of phase noise: the
    spread of the estimates matches the stated error within about 25 %).
    """
    f = np.asarray(reference_in)
    g = np.asarray(moving_in)
    power = float(np.vdot(g, g).real)
    if power == 0.0:
        return (math.inf, math.inf)
    g = g * (np.vdot(g, f) / power)
    residual = g - f
    errors = []
    for df, dg in zip(_spectral_gradient(f), _spectral_gradient(g), strict=True):
        curvature = float(np.real(np.vdot(df, dg)))
        if not curvature > 0.0:
            errors.append(math.inf)
            continue
        score = np.real(residual * np.conj(df))
        errors.append(float(math.sqrt(float(np.sum(score**2))) / curvature))
    return (errors[0], errors[1])


_estimate_shift = estimate_shift  # register() has a parameter of that name


# --------------------------------------------------------------------------------------------
# The gauge


def _weighted_plane(values, weights, xx, yy, with_ramp=True):
    """Weighted least-squares plane ``a + bx x + by y`` (centred for conditioning)."""
    wsum = weights.sum()
    xc, yc = float((weights * xx).sum() / wsum), float((weights * yy).sum() / wsum)
    if not with_ramp:
        return float((weights * values).sum() / wsum), 0.0, 0.0
    design = np.stack([np.ones_like(xx), xx - xc, yy - yc], axis=1)
    sw = np.sqrt(weights)
    coef, *_ = np.linalg.lstsq(design * sw[:, None], values * sw, rcond=None)
    a, bx, by = (float(c) for c in coef)
    return a - bx * xc - by * yc, bx, by


def _fit_phase_plane(relative, mask, box, phase):
    """Plane fitted to ``angle(relative)`` on ``mask``, weighted by ``|relative|``.

    ``relative`` is ``image * conj(truth)`` on the bounding box ``box``, so the weight is
    ``|image| |truth|``. No unwrapping is needed: a coarse gradient from neighbour products
    (robust to wrapping, up to pi rad/px) and the weighted circular mean are removed first, and
    the weighted least-squares plane is fitted to the remaining, small, wrapped phase.
    """
    z = np.where(mask, relative, 0)
    gx = gy = 0.0
    if phase == "ramp":
        gx = float(np.angle(np.sum(z[:, 1:] * np.conj(z[:, :-1]))))
        gy = float(np.angle(np.sum(z[1:, :] * np.conj(z[:-1, :]))))
    yy, xx = np.mgrid[box[0], box[1]]
    xx, yy, zv = xx[mask].astype(float), yy[mask].astype(float), z[mask]
    weights = np.abs(zv)
    if weights.sum() == 0:
        raise RegistrationError(
            "image and truth have no common support in the region: no phase can be fitted"
        )
    coarse = gx * xx + gy * yy
    a0 = float(np.angle(np.sum(zv * np.exp(-1j * coarse))))
    residual = np.angle(zv * np.exp(-1j * (coarse + a0)))
    a, bx, by = _weighted_plane(residual, weights, xx, yy, with_ramp=phase == "ramp")
    return a0 + a, gx + bx, gy + by


def fit_gauge(image, reference, region, *, phase: str = "ramp") -> Gauge:
    """Fit the gauge of ``image`` against ``reference`` over ``region``.

    Parameters
    ----------
    image : ndarray (H, W) complex
        Reconstruction, already translated onto the reference.
    reference : ndarray (H, W) complex
        Ground truth.
    region : ndarray (H, W) bool
        Pixels the fit uses (the scored region).
    phase : {"ramp", "offset"}
        Fit a global phase offset and a linear phase ramp (default), or the offset only.

    Returns
    -------
    Gauge

    Raises
    ------
    RegistrationError
        Bad shapes or values, an empty region, or an image that is zero on the region.

    Notes
    -----
    Phase: the plane ``a + gx x + gy y`` minimising
    ``sum_region |image| |truth| wrap(angle(image conj(truth)) - plane)**2`` (amplitude-weighted
    phase difference). Amplitude: ``s = sum |image| |truth| / sum |image|**2`` minimising
    ``sum_region (s |image| - |truth|)**2``. The two fits share nothing: the amplitude scale
    sees the moduli only, so phase noise cannot move it, and the plane is fitted to the
    difference of the two images' phases, never to each image's phase separately.

    Examples
    --------
    >>> yy, xx = np.mgrid[:32, :32]
    >>> truth = (1 + 0.1 * np.sin(xx / 3)) * np.exp(1j * np.cos(yy / 4))
    >>> gauge = fit_gauge(2 * truth * np.exp(1j * (0.3 + 0.01 * xx)), truth, np.ones((32, 32), bool))
    >>> round(gauge.amplitude_scale, 6), round(gauge.phase_offset_rad, 6), round(gauge.phase_ramp_x_rad_per_px, 6)
    (0.5, 0.3, 0.01)
    """
    img, ref, reg = _check_images(image, reference, region)
    if phase not in PHASE_GAUGES:
        raise RegistrationError(f"phase gauge must be one of {PHASE_GAUGES}, got {phase!r}")
    box = mask_bbox(reg)
    mask = reg[box]
    mov = img[box][mask]
    tgt = ref[box][mask]
    amp_mov, amp_tgt = np.abs(mov), np.abs(tgt)
    power = float(np.sum(amp_mov**2))
    if power == 0.0:
        raise RegistrationError("the image is zero over the region; no amplitude scale can be fitted")
    scale = float(np.sum(amp_mov * amp_tgt) / power)
    offset, d_dx, d_dy = _fit_phase_plane(img[box] * np.conj(ref[box]), mask, box, phase)
    return Gauge(
        phase_offset_rad=offset,
        phase_ramp_x_rad_per_px=d_dx,
        phase_ramp_y_rad_per_px=d_dy,
        amplitude_scale=scale,
        phase=phase,
        fit_pixels=int(mask.sum()),
    )


# --------------------------------------------------------------------------------------------
# Both


def register(
    image,
    reference,
    region,
    *,
    valid=None,
    shift_yx=None,
    estimate_shift: bool = True,
    max_shift: float = 10.0,
    upsample_factor: int = UPSAMPLE_FACTOR,
    correlate_on: str = "complex",
    phase_align: str = "ramp",
    significance_level: float = SHIFT_SIGNIFICANCE_LEVEL,
) -> RegistrationResult:
    """Align a reconstruction to the ground truth: shift the whole image, then fit the gauge.

    Parameters
    ----------
    image : ndarray (H, W) complex
        Reconstruction on the ground-truth pixel grid.
    reference : ndarray (H, W) complex
        Ground truth.
    region : ndarray (H, W) bool
        Pixels to correlate on and to fit the gauge on (in a comparison, the scored region).
    valid : ndarray (H, W) bool, optional
        Where ``image`` holds data (default: everywhere). Data outside ``region`` is kept and
        shifted with the rest; only pixels outside ``valid`` are filled before shifting.
    shift_yx : (float, float), optional
        Apply this translation instead of estimating one.
    estimate_shift : bool
        If False (and no ``shift_yx``), no translation is estimated or applied.
    max_shift, upsample_factor, correlate_on, significance_level
        As :func:`estimate_shift` (a measured shift that is not significant is not applied).
    phase_align : {"ramp", "offset"}
        Phase gauge (:func:`fit_gauge`).

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
    Without a shift to apply the image is not resampled: its pixels reach the gauge as they
    are. Before a non-zero shift the edge of the image's data is apodised (:func:`apodise`)
    outside the sources of the region's pixels, which stay exact. The amplitude and the complex
    field are shifted separately: the shifted image is ``shift(|image|) * exp(i
    angle(shift(image)))``, so that a Fourier shift never mixes the phase's noise into the
    amplitude (the phase is taken from the complex field, which has no wrap). The gauge is
    fitted where the shifted image still holds untouched data (``region & valid`` after the
    shift). Registration by itself costs nothing: a band-limited image displaced by a sub-pixel
    shift comes back to within the shift's precision a few pixels inside its data.

    Examples
    --------
    >>> yy, xx = np.mgrid[:64, :64]
    >>> truth = np.exp(1j * np.sin(xx / 5.0) * np.cos(yy / 7.0))
    >>> result = register(2j * truth, truth, np.ones((64, 64), bool), estimate_shift=False)
    >>> bool(np.allclose(result.aligned, truth))
    True
    """
    img, ref, reg = _check_images(image, reference, region)
    if phase_align not in PHASE_GAUGES:
        raise RegistrationError(f"phase_align must be one of {PHASE_GAUGES}, got {phase_align!r}")
    if valid is None:
        valid = np.ones(img.shape, dtype=bool)
    else:
        valid = np.asarray(valid)
        if valid.shape != img.shape or valid.dtype != bool:
            raise RegistrationError(f"valid must be a boolean mask of shape {img.shape}")
    if shift_yx is not None:
        given = (float(shift_yx[0]), float(shift_yx[1]))
        shift = ShiftEstimate(
            shift_yx=given, method="given", applied=given != (0.0, 0.0), reason="given by the caller"
        )
    elif estimate_shift:
        shift = _estimate_shift(
            img, ref, reg & valid, valid=valid, max_shift=max_shift,
            upsample_factor=upsample_factor, correlate_on=correlate_on,
            significance_level=significance_level,
        )
    else:
        shift = ShiftEstimate(shift_yx=(0.0, 0.0))
    if shift.shift_yx == (0.0, 0.0):
        shifted, data = fourier_shift_image(img, (0.0, 0.0), valid), valid.copy()
    else:
        shifted, data = _shift_amplitude_and_field(img, valid, reg, shift.shift_yx)
    fit_region = reg & data
    if not fit_region.any():
        raise RegistrationError("after the shift the image holds no data inside the region")
    gauge = fit_gauge(shifted, ref, fit_region, phase=phase_align)
    aligned = np.where(data, gauge.apply(shifted), 0)
    return RegistrationResult(aligned=aligned, valid=data, shift=shift, gauge=gauge)


def _shift_amplitude_and_field(img, valid, region, shift_yx):
    """``shift(|img|) * exp(i angle(shift(img)))`` and where it holds untouched data.

    The sources of the region's pixels stay exact; the edge of the data is apodised
    (:func:`apodise`) in the amplitude and in the field alike. A shifted amplitude that rings
    below zero is clipped to 0.
    """
    reach = int(math.ceil(max(abs(shift_yx[0]), abs(shift_yx[1])) - 1e-9))
    sources = ndimage.binary_dilation(region, np.ones((3, 3), bool), iterations=reach) if reach else region
    field, untouched = apodise(img, valid, sources)
    amplitude, _ = apodise(np.abs(img), valid, sources)
    shifted_field = fourier_shift_image(field, shift_yx)
    shifted_amplitude = np.maximum(fourier_shift_image(amplitude.real, shift_yx).real, 0.0)
    shifted = shifted_amplitude * np.exp(1j * np.angle(shifted_field))
    return shifted, shifted_valid(untouched, shift_yx)


def _check_images(image, reference, region):
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
    return img.astype(np.complex128), ref.astype(np.complex128), reg
