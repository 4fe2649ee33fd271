"""Image-quality metrics against the ground truth: MAE, MSE, PSNR, SSIM, MS-SSIM and FRC.

Every function takes real 2-D arrays (the amplitude or the phase of an image on the
ground-truth grid) and returns plain floats or frozen dataclasses with a ``to_dict()``.
A metric that cannot be computed raises :class:`compare_models.errors.MetricError` with the
reason; nothing returns NaN. The one non-finite value is PSNR of identical images, which is
``float("inf")``; :func:`compare_models.report.writers.to_jsonable` writes it as the string ``"inf"``.

References
----------
.. [1] Z. Wang, A. C. Bovik, H. R. Sheikh and E. P. Simoncelli, "Image quality assessment:
   from error visibility to structural similarity," IEEE Trans. Image Process. 13, 600-612
   (2004).
.. [2] Z. Wang, E. P. Simoncelli and A. C. Bovik, "Multiscale structural similarity for image
   quality assessment," Proc. 37th Asilomar Conf. Signals, Systems and Computers, 1398-1402
   (2003).
.. [3] M. van Heel and M. Schatz, "Fourier shell correlation threshold criteria,"
   J. Struct. Biol. 151, 250-262 (2005).
.. [4] P. B. Rosenthal and R. Henderson, "Optimal determination of particle orientation,
   absolute hand, and contrast loss in single-particle electron cryomicroscopy,"
   J. Mol. Biol. 333, 721-745 (2003) (FRC against a noise-free reference: the 0.5 threshold).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
from scipy import ndimage

from ..errors import MetricError
from .geometry import mask_bbox

__all__ = [
    "MS_SSIM_WEIGHTS",
    "MSSSIMResult",
    "FRCResult",
    "mae",
    "mse",
    "psnr",
    "ssim",
    "ms_ssim",
    "frc",
    "frc_threshold_bits",
    "frc_window",
    "frc_against_truth",
    "frc_on_region",
    "frc_half_set",
    "window_independent_fraction",
    "data_range",
    "compute_metrics",
    "FRC_AGAINST_TRUTH_THRESHOLD",
    "FRC_LEGACY_CUTOFFS",
    "HALF_SET_FRC_CUTOFFS",
    "HALF_SET_CSV_NAMES",
    "HALF_SET_DEFINITIONS",
    "DEFINITIONS",
]

#: Wang et al. (2003) exponents for scales 1 (finest) .. 5.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_SSIM_TAPS = 11
_SSIM_SIGMA = 1.5
_K1 = 0.01
_K2 = 0.03
_FIXED_THRESHOLDS = MappingProxyType({"0.5": 0.5, "1/7": 1.0 / 7.0})
_BIT_THRESHOLDS = MappingProxyType({"1bit": 1.0, "halfbit": 0.5})

#: Against ground truth (a noise-free reference) the resolution is where FRC falls below 0.5:
#: the counterpart of 1/7 between two half-set reconstructions (Rosenthal & Henderson 2003).
FRC_AGAINST_TRUTH_THRESHOLD = "0.5"
#: Cut-offs against ground truth kept only for existing aggregation scripts: not resolutions.
FRC_LEGACY_CUTOFFS = ("1/7",)
#: Cut-offs that belong to half-set FRC (two independent reconstructions from disjoint halves
#: of the scan; van Heel & Schatz 2005). ``frc`` computes them for any pair; a comparison
#: against ground truth never reports them.
HALF_SET_FRC_CUTOFFS = ("1/7", "1bit", "halfbit")
#: Names of the half-set cut-offs in comparison_metrics.csv and metrics.json: every one starts
#: with ``halfset_`` so that none can be taken for a number against ground truth.
HALF_SET_CSV_NAMES = MappingProxyType(
    {"1/7": "halfset_frc1over7", "halfbit": "halfset_frc_halfbit", "1bit": "halfset_frc_1bit"}
)
#: What each half-set number is, as metrics.json records it.
HALF_SET_DEFINITIONS = MappingProxyType(
    {
        "halfset_frc1over7": (
            "half-set FRC (two reconstructions from disjoint halves of the scan, no ground truth) "
            "falls below 1/7 (van Heel & Schatz 2005): the resolution, fraction of Nyquist"
        ),
        "halfset_frc_halfbit": (
            "half-set FRC falls below the 1/2-bit information curve (van Heel & Schatz 2005), "
            "fraction of Nyquist"
        ),
        "halfset_frc_1bit": (
            "half-set FRC falls below the 1-bit information curve (van Heel & Schatz 2005), "
            "fraction of Nyquist"
        ),
    }
)

#: What each number in a comparison is, as metrics.json records it.
DEFINITIONS = MappingProxyType(
    {
        "mae": "mean |test - truth| over the scored region (units of the component; phase in rad)",
        "mse": "mean (test - truth)^2 over the scored region",
        "psnr": "10 log10(data_range^2 / mse), dB; data_range: the truth's max - min over the scored region",
        "ssim": (
            "SSIM (Wang et al. 2004): 11-tap Gaussian window, sigma 1.5, K1 0.01, K2 0.03, "
            "L = data_range, mean over windows centred in the scored region"
        ),
        "ms_ssim": (
            "MS-SSIM (Wang, Simoncelli & Bovik 2003): 5 scales, weights 0.0448, 0.2856, 0.3001, "
            "0.2363, 0.1333, 2x2 mean and decimation between scales, L = data_range; no blur "
            "first unless ms_ssim_sigma is given (then both images, amplitude and phase alike); "
            "ms_ssim_scales gives the scales used (fewer, with renormalised weights, only when "
            "the region's box is under 161 px a side)"
        ),
        "ms_ssim_scales": "number of MS-SSIM scales behind ms_ssim",
        "frc50": (
            "FRC against ground truth, 0.5 threshold (Rosenthal & Henderson 2003): the "
            "resolution, as a fraction of Nyquist (half-period resolution = pixel size / value)"
        ),
        "frc1over7": (
            "legacy: where FRC against ground truth falls below 1/7, kept for existing "
            "aggregation scripts; NOT a resolution (1/7 is a half-set threshold)"
        ),
        "data_range": "the truth's max - min over the scored region (amplitude; phase in rad)",
    }
)


def _pair(a, b, name="images", complex_ok=False):
    a = np.asarray(a)
    b = np.asarray(b)
    if a.ndim != 2 or a.shape != b.shape:
        raise MetricError(f"{name} must be two 2-D arrays of one shape, got {a.shape}, {b.shape}")
    if complex_ok and (np.iscomplexobj(a) or np.iscomplexobj(b)):
        a, b = a.astype(np.complex128), b.astype(np.complex128)
    elif np.iscomplexobj(a) or np.iscomplexobj(b):
        raise MetricError(f"{name} must be real (pass the amplitude or the phase)")
    if a.size == 0:
        raise MetricError(f"{name} are empty")
    for label, arr in (("first", a), ("second", b)):
        if not np.isfinite(arr).all():
            raise MetricError(f"the {label} of the {name} has NaN or infinite values")
    if np.iscomplexobj(a):
        return a, b
    return a.astype(np.float64), b.astype(np.float64)


def _check_range(data_range):
    if data_range is None or not (math.isfinite(data_range) and data_range > 0):
        raise MetricError(f"data_range must be a positive finite number, got {data_range!r}")
    return float(data_range)


def mae(a, b) -> float:
    """Mean absolute difference ``mean |a - b|`` (units of the images)."""
    a, b = _pair(a, b)
    return float(np.mean(np.abs(a - b)))


def mse(a, b) -> float:
    """Mean squared difference ``mean (a - b)**2`` (units of the images, squared)."""
    a, b = _pair(a, b)
    return float(np.mean((a - b) ** 2))


def psnr(a, b, data_range) -> float:
    """Peak signal-to-noise ratio ``10 log10(data_range**2 / mse)`` in dB.

    Parameters
    ----------
    a, b : ndarray (H, W) real
        Reference and test image.
    data_range : float
        Peak-to-peak range of the signal (given explicitly, never guessed).

    Returns
    -------
    float
        ``inf`` when the images are identical (MSE = 0), by definition.
    """
    data_range = _check_range(data_range)
    err = mse(a, b)
    if err == 0.0:
        return math.inf
    return float(10.0 * np.log10(data_range**2 / err))


def _gaussian_window():
    half = (_SSIM_TAPS - 1) / 2
    taps = np.exp(-((np.arange(_SSIM_TAPS) - half) ** 2) / (2 * _SSIM_SIGMA**2))
    return taps / taps.sum()


def _filter_valid(image, window):
    """Separable correlation with ``window``, keeping only fully overlapped pixels ("valid")."""
    half = (len(window) - 1) // 2
    out = ndimage.correlate1d(image, window, axis=0, mode="reflect")
    out = ndimage.correlate1d(out, window, axis=1, mode="reflect")
    return out[half : image.shape[0] - half, half : image.shape[1] - half]


def _ssim_maps(a, b, data_range):
    """Luminance and contrast-structure maps (Wang 2004, Gaussian window, valid region)."""
    window = _gaussian_window()
    c1 = (_K1 * data_range) ** 2
    c2 = (_K2 * data_range) ** 2
    mu_a = _filter_valid(a, window)
    mu_b = _filter_valid(b, window)
    var_a = _filter_valid(a * a, window) - mu_a**2
    var_b = _filter_valid(b * b, window) - mu_b**2
    cov = _filter_valid(a * b, window) - mu_a * mu_b
    luminance = (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1)
    cs = (2 * cov + c2) / (var_a + var_b + c2)
    return luminance, cs


def ssim(a, b, data_range, *, mask=None) -> float:
    """Structural similarity index of Wang et al. (2004), mean over the valid pixels.

    Parameters
    ----------
    a, b : ndarray (H, W) real
        Reference and test image; both sides must be at least 11 pixels.
    data_range : float
        Dynamic range ``L`` in ``C1 = (0.01 L)**2``, ``C2 = (0.03 L)**2``.
    mask : ndarray (H, W) bool, optional
        Average the SSIM map only over windows centred on these pixels.

    Returns
    -------
    float
        In [-1, 1]; 1 for identical images.

    Notes
    -----
    11-tap Gaussian window, sigma 1.5, population (not sample) covariances, windows that lie
    entirely in the image. This equals :func:`skimage.metrics.structural_similarity` with
    ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False``.
    """
    a, b = _pair(a, b)
    data_range = _check_range(data_range)
    if min(a.shape) < _SSIM_TAPS:
        raise MetricError(f"SSIM needs both sides >= {_SSIM_TAPS} pixels, got shape {a.shape}")
    luminance, cs = _ssim_maps(a, b, data_range)
    smap = luminance * cs
    if mask is None:
        return float(smap.mean())
    half = (_SSIM_TAPS - 1) // 2
    inner = np.asarray(mask, bool)[half:-half, half:-half]
    if not inner.any():
        raise MetricError("SSIM mask has no pixel at least 5 pixels from the image edge")
    return float(smap[inner].mean())


@dataclass(frozen=True)
class MSSSIMResult:
    """Multi-scale SSIM.

    Attributes
    ----------
    value : float
        ``prod_j cs_j**w_j`` over the finer scales times ``ssim_M**w_M`` at the coarsest one.
    n_scales : int
        Scales actually used (5 unless the image was too small and fewer were allowed).
    weights : tuple of float
        Exponents used; the first ``n_scales`` paper weights renormalised to sum to 1 when
        fewer than 5 scales were used.
    note : str
        Empty, or a sentence saying why fewer scales were used.
    """

    value: float
    n_scales: int
    weights: tuple
    note: str = ""

    def to_dict(self) -> dict:
        return {
            "value": self.value,
            "n_scales": self.n_scales,
            "weights": list(self.weights),
            "note": self.note,
        }


def _max_scales(shape):
    """Number of scales whose coarsest image still holds one 11 x 11 window."""
    side = min(shape)
    n = 0
    while side >= _SSIM_TAPS:
        n += 1
        side = (side + 1) // 2
    return n


def _downsample(image):
    """2 x 2 mean then decimation; an odd side is first padded by mirroring its last line."""
    pad = ((0, image.shape[0] % 2), (0, image.shape[1] % 2))
    image = np.pad(image, pad, mode="symmetric")
    return 0.25 * (image[0::2, 0::2] + image[1::2, 0::2] + image[0::2, 1::2] + image[1::2, 1::2])


def ms_ssim(
    a,
    b,
    data_range,
    *,
    scales: int = 5,
    weights=MS_SSIM_WEIGHTS,
    allow_fewer_scales: bool = True,
) -> MSSSIMResult:
    """Multi-scale structural similarity (Wang, Simoncelli and Bovik 2003).

    Parameters
    ----------
    a, b : ndarray (H, W) real
        Reference and test image.
    data_range : float
        Dynamic range ``L`` of the images.
    scales : int
        Number of scales M (5 in the paper).
    weights : sequence of float
        Exponents, finest scale first (default: the paper's 0.0448, 0.2856, 0.3001, 0.2363,
        0.1333).
    allow_fewer_scales : bool
        If the image is too small for ``scales`` scales (the coarsest must still hold an
        11 x 11 window: 5 scales need sides >= 161), use as many as fit with the first
        weights renormalised to sum 1, and say so in ``note``; otherwise raise.

    Returns
    -------
    MSSSIMResult

    Raises
    ------
    MetricError
        Sides below 11 pixels, or too small for ``scales`` with ``allow_fewer_scales=False``.

    Notes
    -----
    At scale j (1 = the original image) the contrast-structure term ``cs_j`` is the mean of the
    SSIM contrast-structure map (11-tap Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03,
    valid windows only); at the coarsest scale M the full SSIM is used. Between scales both
    images are low-passed by a 2 x 2 mean and decimated by 2, as in the authors' MATLAB code
    and :func:`tf.image.ssim_multiscale`. As there, negative ``cs_j`` or ``ssim_M`` are clipped
    to 0 before the fractional powers (which are undefined for negative numbers), so strongly
    anti-correlated images give 0, a genuine value rather than a failure.
    """
    a, b = _pair(a, b)
    data_range = _check_range(data_range)
    weights = tuple(float(w) for w in weights)
    if int(scales) != scales or scales < 1 or len(weights) < scales:
        raise MetricError(f"scales must be 1..{len(weights)} (one weight each), got {scales!r}")
    available = _max_scales(a.shape)
    if available == 0:
        raise MetricError(f"MS-SSIM needs both sides >= {_SSIM_TAPS} pixels, got {a.shape}")
    n_scales = int(scales)
    note = ""
    used = weights[:n_scales]
    if available < n_scales:
        if not allow_fewer_scales:
            raise MetricError(
                f"MS-SSIM with {n_scales} scales needs both sides >= "
                f"{_SSIM_TAPS * 2 ** (n_scales - 1) - 2 ** (n_scales - 1) + 1} pixels "
                f"(an 11-pixel window at the coarsest scale), got shape {a.shape}"
            )
        note = (
            f"image {a.shape} too small for {n_scales} scales; used {available} with the "
            f"first {available} weights renormalised to sum 1"
        )
        n_scales = available
        total = sum(weights[:n_scales])
        used = tuple(w / total for w in weights[:n_scales])
    value = 1.0
    for j in range(n_scales):
        if j:
            a, b = _downsample(a), _downsample(b)
        luminance, cs = _ssim_maps(a, b, data_range)
        term = float((luminance * cs).mean()) if j == n_scales - 1 else float(cs.mean())
        value *= max(term, 0.0) ** used[j]
    return MSSSIMResult(value=float(value), n_scales=n_scales, weights=used, note=note)


def frc_threshold_bits(bits: float, n_pixels) -> np.ndarray:
    """Information-curve threshold of van Heel and Schatz (2005), eq. (17).

    ``T(n) = (e + (2 sqrt(e) + 1) / sqrt(n)) / (e + 1 + 2 sqrt(e) / sqrt(n))`` with
    ``e = (2**bits - 1) / 2`` the SNR of each half data set and ``n`` the number of Fourier
    pixels in the ring. For 1 bit: ``(0.5 + 2.4142/sqrt(n)) / (1.5 + 1.4142/sqrt(n))``; for
    1/2 bit: ``(0.2071 + 1.9102/sqrt(n)) / (1.2071 + 0.9102/sqrt(n))``.
    """
    snr = (2.0**bits - 1.0) / 2.0
    root_n = np.sqrt(np.maximum(np.asarray(n_pixels, dtype=np.float64), 1.0))
    root_s = math.sqrt(snr)
    return (snr + (2 * root_s + 1) / root_n) / (snr + 1 + 2 * root_s / root_n)


@dataclass(frozen=True, eq=False)
class FRCResult:
    """Fourier ring correlation of two images.

    Attributes
    ----------
    curve : ndarray (R,)
        FRC per ring, rings 0 (DC) .. R - 1 (Nyquist of the shorter side); after smoothing
        when ``smoothing_sigma`` was given.
    raw_curve : ndarray (R,)
        The unsmoothed curve.
    frequency_nyquist : ndarray (R,)
        Ring frequency as a fraction of Nyquist (0 .. 1).
    n_pixels : ndarray (R,) int
        Fourier pixels per ring.
    thresholds : dict of ndarray (R,)
        ``"1bit"`` and ``"halfbit"`` threshold curves.
    cutoffs : dict
        For each of ``"0.5"``, ``"1/7"``, ``"1bit"``, ``"halfbit"``: ``ring`` (first ring
        below the threshold after the curve first reached it, or the last ring),
        ``fraction_nyquist`` (crossing point, interpolated linearly between that ring and the
        one before; 1.0 if not crossed), ``resolution_m`` (half-period
        ``pixel_size_m / fraction_nyquist``, or None without a pixel size), ``crossed`` and
        ``reached`` (bool: whether the curve ever reached the threshold; if not, ring 1).
    zero_power_rings : tuple of int
        Rings where one image has no power (with a window: none of its own, beyond the
        window's leakage); their FRC is set to 0.
    pixel_size_m, smoothing_sigma : float or None
    independent_fraction : float
        Fraction of each ring's pixels counted as independent by the 1-bit and 1/2-bit curves.
    cutoff_rule : str
        How the cut-offs were found (:data:`CUTOFF_RULES`).
    window_leak : ndarray (R,) or None
        Correlation removed from each ring as the window's leakage (the plain windowed FRC
        minus ``raw_curve``; :func:`compare_models.imaging.frc_window.leak_corrected`); None
        without a window.
    window_resolution_nyquist : float or None
        The window's resolution as a fraction of Nyquist: a cut-off is uncertain by this much.
    """

    curve: np.ndarray
    raw_curve: np.ndarray
    frequency_nyquist: np.ndarray
    n_pixels: np.ndarray
    thresholds: dict
    cutoffs: dict
    zero_power_rings: tuple
    pixel_size_m: float | None
    smoothing_sigma: float | None
    independent_fraction: float = 1.0
    cutoff_rule: str = "after_reaching"
    window_leak: np.ndarray | None = None
    window_resolution_nyquist: float | None = None

    def to_dict(self) -> dict:
        return {
            "curve": self.curve.tolist(),
            "raw_curve": self.raw_curve.tolist(),
            "frequency_nyquist": self.frequency_nyquist.tolist(),
            "n_pixels": self.n_pixels.tolist(),
            "thresholds": {k: v.tolist() for k, v in self.thresholds.items()},
            "cutoffs": {k: dict(v) for k, v in self.cutoffs.items()},
            "zero_power_rings": list(self.zero_power_rings),
            "pixel_size_m": self.pixel_size_m,
            "smoothing_sigma": self.smoothing_sigma,
            "independent_fraction": self.independent_fraction,
            "cutoff_rule": self.cutoff_rule,
            "window_leak": None if self.window_leak is None else self.window_leak.tolist(),
            "window_resolution_nyquist": self.window_resolution_nyquist,
        }


#: How a cut-off is found (:func:`frc` ``cutoff_rule``).
CUTOFF_RULES = MappingProxyType(
    {
        "after_reaching": "first fall below the threshold after the curve first reached it (from ring 1)",
        "first": "first ring from ring 1 where the curve is below the threshold",
    }
)


def _cutoff(curve, threshold, n_rings_nyquist, pixel_size_m, rule="after_reaching"):
    """Where the curve falls below ``threshold``.

    ``"after_reaching"`` (against ground truth): the first fall after the curve has first
    reached the threshold. The lowest rings hold few pixels and the largest-scale residues of
    the gauge fit; a curve that starts below the threshold there and rises above it later is
    cut off where it falls again (``reached`` records whether it reached the threshold at all;
    if never, the cut-off is ring 1).

    ``"first"`` (half-set FRC): the first ring from ring 1 below the threshold. Two
    half-set reconstructions agree at the lowest frequencies; the resolution is where that
    agreement is first lost (van Heel & Schatz 2005), and a later rise above the threshold is
    noise, not information (``reached``: whether ring 1 was at or above it).
    """
    if rule not in CUTOFF_RULES:
        raise MetricError(f"cutoff_rule must be one of {', '.join(CUTOFF_RULES)}, got {rule!r}")
    reached_at = np.flatnonzero(curve[1:] >= threshold[1:]) + 1
    reached = reached_at.size > 0
    start = int(reached_at[0]) if reached else 1
    if rule == "first":
        reached, start = bool(curve[1] >= threshold[1]) if len(curve) > 1 else False, 1
    below = np.flatnonzero(curve[start:] < threshold[start:]) + start
    if below.size == 0:
        ring, position, crossed = len(curve) - 1, float(n_rings_nyquist), False
    else:
        ring, crossed = int(below[0]), True
        position = float(ring)
        if ring > start:
            above = curve[ring - 1] - threshold[ring - 1]
            under = curve[ring] - threshold[ring]
            position = ring - 1 + above / (above - under)
    fraction = min(position / n_rings_nyquist, 1.0)
    resolution = None
    if pixel_size_m is not None and fraction > 0:
        resolution = float(float(pixel_size_m) / fraction)
    return {
        "ring": int(ring),
        "fraction_nyquist": float(fraction),
        "resolution_m": resolution,
        "crossed": bool(crossed),
        "reached": bool(reached),
    }


def frc(
    a, b, *, pixel_size_m=None, smoothing_sigma=None, independent_fraction: float = 1.0, cutoff_rule: str = "after_reaching",
    window=None,
) -> FRCResult:
    """Fourier ring correlation between two images, with resolution cut-offs.

    Parameters
    ----------
    a, b : ndarray (H, W) real or complex
        Images on one pixel grid (typically the aligned reconstruction and the ground truth);
        complex for the unit phasors of a phase FRC.
    pixel_size_m : float, optional
        Object pixel size in metres, for half-period resolutions.
    smoothing_sigma : float, optional
        Gaussian smoothing of the curve along the ring axis (in rings) before the cut-offs.
    independent_fraction : float
        Fraction of a ring's Fourier pixels that are independent samples, in (0, 1]: the 1-bit
        and 1/2-bit curves use ``independent_fraction * n_pixels`` as the ring's ``n``
        (:func:`window_independent_fraction` for windowed images; 1 for images used whole).
    cutoff_rule : {"after_reaching", "first"}
        How a cut-off is found (:data:`CUTOFF_RULES`): against ground truth the first fall
        after the curve reached the threshold (default), between half sets the first ring
        below it.
    window : ndarray (H, W) real, optional
        The window both images were multiplied by: the power it can carry into each ring from
        far frequencies is removed (:func:`compare_models.imaging.frc_window.leak_corrected`).

    Returns
    -------
    FRCResult

    Notes
    -----
    ``FRC(r) = Re sum_r F_a conj(F_b) / sqrt(sum_r |F_a|**2 sum_r |F_b|**2)`` over the Fourier
    pixels of ring r. Ring r holds the frequencies ``k`` (cycles/pixel, per axis
    ``fftfreq``) with ``round(|k| * L) == r``, ``L = min(H, W)``, up to ``r = L // 2`` (the
    Nyquist ring of the shorter side; the corners beyond it are left out). Ring r is at
    ``2 r / L`` of Nyquist; a cut-off at fraction f of Nyquist is a half-period resolution of
    ``1 / f`` pixels. The search for a crossing starts at ring 1 (ring 0 is the mean). The
    images are used as given: no mean subtraction, no apodisation.

    References
    ----------
    .. [1] van Heel and Schatz, J. Struct. Biol. 151, 250 (2005).
    """
    a, b = _pair(a, b, complex_ok=True)
    if pixel_size_m is not None and not (math.isfinite(pixel_size_m) and pixel_size_m > 0):
        raise MetricError(f"pixel_size_m must be a positive number, got {pixel_size_m!r}")
    if smoothing_sigma is not None and not (smoothing_sigma >= 0):
        raise MetricError(f"smoothing_sigma must be >= 0, got {smoothing_sigma!r}")
    if not (0 < independent_fraction <= 1):
        raise MetricError(f"independent_fraction must be in (0, 1], got {independent_fraction!r}")
    length = min(a.shape)
    if length < 4:
        raise MetricError(f"FRC needs both sides >= 4 pixels, got shape {a.shape}")
    fa = np.fft.fft2(a)
    fb = np.fft.fft2(b)
    ky = np.fft.fftfreq(a.shape[0])[:, None]
    kx = np.fft.fftfreq(a.shape[1])[None, :]
    rings = np.rint(np.hypot(ky, kx) * length).astype(np.int64).ravel()
    n_rings = length // 2 + 1
    keep = rings < n_rings
    rings = rings[keep]
    cross = np.bincount(rings, (fa * np.conj(fb)).real.ravel()[keep], minlength=n_rings)
    power_a = np.bincount(rings, (np.abs(fa) ** 2).ravel()[keep], minlength=n_rings)
    power_b = np.bincount(rings, (np.abs(fb) ** 2).ravel()[keep], minlength=n_rings)
    n_pixels = np.bincount(rings, minlength=n_rings)
    leak = plain = None
    if window is not None:
        from .frc_window import leak_corrected, window_leak

        difference = np.abs(fa - fb) ** 2
        leak = window_leak(
            window, np.abs(fa) ** 2, np.abs(fb) ** 2, difference, np.rint(np.hypot(ky, kx) * length).astype(np.int64),
            n_rings, independent_fraction * n_pixels,
        )
        plain = cross / np.sqrt(np.maximum(power_a * power_b, np.finfo(float).tiny))
        power_difference = np.bincount(rings, difference.ravel()[keep], minlength=n_rings)
        cross, power_a, power_b = leak_corrected(power_a, power_b, power_difference, leak)
    denominator = np.sqrt(power_a * power_b)
    scale = max(power_a.max(), power_b.max())
    zero = (power_a <= 1e-24 * scale) | (power_b <= 1e-24 * scale) | (n_pixels == 0)
    if zero[1:].all():
        raise MetricError("FRC undefined: one image has no power at any non-zero frequency")
    raw = np.where(zero, 0.0, np.clip(cross / np.where(zero, 1.0, denominator), -1.0, 1.0))
    curve = raw
    if smoothing_sigma:
        curve = ndimage.gaussian_filter1d(raw, float(smoothing_sigma), mode="nearest")
    thresholds = {
        k: frc_threshold_bits(v, independent_fraction * n_pixels) for k, v in _BIT_THRESHOLDS.items()
    }
    nyquist_rings = length / 2
    cutoffs = {}
    for name, level in _FIXED_THRESHOLDS.items():
        cutoffs[name] = _cutoff(curve, np.full(n_rings, level), nyquist_rings, pixel_size_m, cutoff_rule)
    for name, curve_t in thresholds.items():
        cutoffs[name] = _cutoff(curve, curve_t, nyquist_rings, pixel_size_m, cutoff_rule)
    return FRCResult(
        curve=curve,
        raw_curve=raw,
        frequency_nyquist=np.arange(n_rings) / nyquist_rings,
        n_pixels=n_pixels,
        thresholds=thresholds,
        cutoffs=cutoffs,
        zero_power_rings=tuple(int(r) for r in np.flatnonzero(zero)),
        pixel_size_m=None if pixel_size_m is None else float(pixel_size_m),
        smoothing_sigma=None if smoothing_sigma is None else float(smoothing_sigma),
        independent_fraction=float(independent_fraction),
        cutoff_rule=cutoff_rule,
        window_leak=None if leak is None else plain - raw,
        window_resolution_nyquist=None if leak is None else float(min(leak.resolution_rings / nyquist_rings, 1.0)),
    )


def frc_window(mask, taper_px: float | None = None) -> np.ndarray:
    """Apodisation window for FRC on an irregular region: 1 deep inside ``mask``, falling to 0
    at its edge along a raised cosine of the distance to the nearest outside pixel.

    ``taper_px`` defaults to min(8, a tenth of the region's shorter side) pixels, at least 2.
    """
    mask = np.asarray(mask, dtype=bool)
    if taper_px is None:
        taper_px = max(2.0, min(8.0, 0.1 * min(mask.shape)))
    distance = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    ramp = np.clip(distance / float(taper_px), 0.0, 1.0)
    window = 0.5 * (1.0 - np.cos(np.pi * ramp))
    if not window.any():
        raise MetricError("region is too thin for an FRC window")
    return window


def window_independent_fraction(window) -> float:
    """Fraction of Fourier pixels that stay independent samples under a window.

    ``(sum w**2)**2 / (P sum w**4)`` for a window ``w`` of ``P`` pixels: 1 for no window, the
    area fraction for a hard mask. Multiplying white noise by ``w`` correlates its Fourier
    coefficients over an area of ``P sum w**4 / (sum w**2)**2`` Fourier pixels (Parseval), so a
    ring of ``n`` pixels holds about ``n`` times this fraction independent samples: what the
    1-bit and 1/2-bit curves' ``n`` counts.
    """
    w2 = np.square(np.asarray(window, dtype=np.float64))
    total = float(w2.sum())
    if total <= 0:
        raise MetricError("the FRC window is zero everywhere")
    return float(min(1.0, total**2 / (w2.size * float(np.square(w2).sum()))))


def frc_on_region(a, b, mask, *, pixel_size_m=None, smoothing_sigma=None, cutoff_rule="after_reaching") -> FRCResult:
    """FRC of two real images over an irregular region: the one FRC every comparison uses.

    Parameters
    ----------
    a, b : ndarray (h, w) real or complex
        The two images on the region's bounding box (values outside ``mask`` are ignored).
    mask : ndarray (h, w) bool
        The region.
    pixel_size_m, smoothing_sigma, cutoff_rule
        As :func:`frc`.

    Returns
    -------
    FRCResult

    Notes
    -----
    Each image minus its own window-weighted mean, times one raised-cosine window that falls
    to 0 at the region's edge (:func:`frc_window`): a hard mask edge is shared by both images
    and would correlate them at every frequency. The 1-bit and 1/2-bit curves count each
    ring's independent samples under that window (:func:`window_independent_fraction`). The
    window makes no correlation of its own: a ring's correlation counts only as far as what the
    window can carry into it from beyond its resolution cannot explain it
    (:func:`compare_models.imaging.frc_window.leak_corrected`).
    """
    a, b = _pair(a, b, complex_ok=True)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != a.shape:
        raise MetricError(f"mask has shape {mask.shape}, expected {a.shape}")
    window = frc_window(mask)
    a = np.where(mask, a, 0.0)
    b = np.where(mask, b, 0.0)
    return frc(
        window * (a - np.average(a, weights=window)),
        window * (b - np.average(b, weights=window)),
        pixel_size_m=pixel_size_m,
        smoothing_sigma=smoothing_sigma,
        independent_fraction=window_independent_fraction(window),
        cutoff_rule=cutoff_rule,
        window=window,
    )


def frc_half_set(ring: FRCResult) -> dict:
    """JSON-ready half-set FRC: the curve, the 1/2-bit and 1-bit threshold curves, and the
    cut-offs at 1/7, 1/2 bit and 1 bit (van Heel & Schatz 2005), each labelled.

    Returns
    -------
    dict
        ``kind`` (``"half_set"``), ``curve``, ``raw_curve``, ``frequency_nyquist``,
        ``n_pixels``, ``independent_fraction``, ``thresholds`` (``"halfbit"``, ``"1bit"``:
        one value per ring), ``cutoffs`` (``"1/7"``, ``"halfbit"``, ``"1bit"``: ``ring``,
        ``fraction_nyquist``, ``resolution_m``, ``crossed``, ``reached``, ``role``), the
        same three fractions under their CSV names (``halfset_frc1over7``,
        ``halfset_frc_halfbit``, ``halfset_frc_1bit``), ``zero_power_rings``,
        ``pixel_size_m``, ``smoothing_sigma``.
    """
    roles = {
        "1/7": "resolution (half-set FRC, fixed 1/7 threshold; van Heel & Schatz 2005)",
        "halfbit": "resolution (half-set FRC, 1/2-bit information curve; van Heel & Schatz 2005)",
        "1bit": "resolution (half-set FRC, 1-bit information curve; van Heel & Schatz 2005)",
    }
    cutoffs = {name: {**ring.cutoffs[name], "role": roles[name]} for name in HALF_SET_FRC_CUTOFFS}
    return {
        "kind": "half_set",
        "curve": ring.curve.tolist(),
        "raw_curve": ring.raw_curve.tolist(),
        "frequency_nyquist": ring.frequency_nyquist.tolist(),
        "n_pixels": ring.n_pixels.tolist(),
        "independent_fraction": ring.independent_fraction,
        "cutoff_rule": CUTOFF_RULES[ring.cutoff_rule],
        "thresholds": {name: ring.thresholds[name].tolist() for name in ("halfbit", "1bit")},
        "cutoffs": cutoffs,
        **{HALF_SET_CSV_NAMES[name]: cutoffs[name]["fraction_nyquist"] for name in HALF_SET_FRC_CUTOFFS},
        "zero_power_rings": list(ring.zero_power_rings),
        "pixel_size_m": ring.pixel_size_m,
        "smoothing_sigma": ring.smoothing_sigma,
        "window_resolution_nyquist": ring.window_resolution_nyquist,
    }


def data_range(values) -> tuple[float, str]:
    """The data range of a truth component over the scored region, and how it was found.

    Parameters
    ----------
    values : ndarray
        The truth's amplitude or phase at the scored region's pixels.

    Returns
    -------
    (float, str)
        ``max - min``; if that is 0 to 1e-12 relative (a constant component), ``max |values|``,
        with the source saying so.

    Raises
    ------
    MetricError
        The component is identically zero (no range at all).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0 or not np.isfinite(values).all():
        raise MetricError("data range needs finite values")
    top = float(np.abs(values).max())
    spread = float(values.max() - values.min())
    if spread > 1e-12 * top:
        return spread, "truth max - min over the scored region"
    if top == 0.0:
        raise MetricError("the ground truth is zero over the region: no data range")
    return top, "truth max |value| over the scored region (the truth is constant there)"


def frc_against_truth(ring: FRCResult) -> dict:
    """JSON-ready FRC of an image against ground truth: the 0.5 cut-off (the resolution) and
    the legacy 1/7 cut-off, each labelled; no half-set threshold curves."""
    cutoffs = {
        FRC_AGAINST_TRUTH_THRESHOLD: {
            **ring.cutoffs[FRC_AGAINST_TRUTH_THRESHOLD],
            "role": "resolution (FRC against ground truth, 0.5 threshold; Rosenthal & Henderson 2003)",
        }
    }
    for name in FRC_LEGACY_CUTOFFS:
        cutoffs[name] = {**ring.cutoffs[name], "role": "legacy; not a resolution against ground truth"}
    return {
        "kind": "ground_truth",
        "resolution_threshold": float(_FIXED_THRESHOLDS[FRC_AGAINST_TRUTH_THRESHOLD]),
        "curve": ring.curve.tolist(),
        "raw_curve": ring.raw_curve.tolist(),
        "frequency_nyquist": ring.frequency_nyquist.tolist(),
        "n_pixels": ring.n_pixels.tolist(),
        "cutoffs": cutoffs,
        "zero_power_rings": list(ring.zero_power_rings),
        "pixel_size_m": ring.pixel_size_m,
        "smoothing_sigma": ring.smoothing_sigma,
        "window_resolution_nyquist": ring.window_resolution_nyquist,
    }


def _component_metrics(test, truth, mask, data_range_, *, smooth_sigma, frc_sigma, pixel_size_m, frc_images=None):
    """All metrics of one real component on the region's bounding box; the FRC on
    ``frc_images`` when given (the unit phasors of a phase)."""
    fill = float(truth[mask].mean())
    test_f = np.where(mask, test, fill)
    truth_f = np.where(mask, truth, fill)
    out = {
        "mae": mae(test[mask][None], truth[mask][None]),
        "mse": mse(test[mask][None], truth[mask][None]),
        "psnr": psnr(truth[mask][None], test[mask][None], data_range_),
        "ssim": ssim(truth_f, test_f, data_range_, mask=mask),
    }
    ms_a, ms_b = truth_f, test_f
    if smooth_sigma:
        ms_a = ndimage.gaussian_filter(truth_f, smooth_sigma)
        ms_b = ndimage.gaussian_filter(test_f, smooth_sigma)
    ms = ms_ssim(ms_a, ms_b, data_range_)
    out.update(
        ms_ssim=ms.value,
        ms_ssim_scales=ms.n_scales,
        ms_ssim_weights=list(ms.weights),
        ms_ssim_note=ms.note,
        ms_ssim_sigma=smooth_sigma or None,
    )
    # FRC: each image minus its own (window-weighted) mean, times one smooth window that
    # falls to 0 at the region's edge (frc_on_region, shared with the half-set FRC).
    frc_test, frc_truth = (test, truth) if frc_images is None else frc_images
    ring = frc_on_region(frc_test, frc_truth, mask, pixel_size_m=pixel_size_m, smoothing_sigma=frc_sigma)
    out["frc50"] = ring.cutoffs[FRC_AGAINST_TRUTH_THRESHOLD]["fraction_nyquist"]
    out["frc1over7"] = ring.cutoffs["1/7"]["fraction_nyquist"]
    out["frc"] = frc_against_truth(ring)
    return out


def compute_metrics(
    aligned,
    truth,
    region,
    *,
    ms_ssim_sigma: float | None = None,
    frc_sigma: float | None = None,
    pixel_size_m: float | None = None,
    amplitude_data_range: float | None = None,
    phase_data_range: float | None = None,
) -> dict:
    """Amplitude and phase metrics of an aligned reconstruction against the ground truth.

    Parameters
    ----------
    aligned : ndarray (H, W) complex
        Reconstruction after :func:`compare_models.imaging.registration.register`.
    truth : ndarray (H, W) complex
        Ground truth on the same grid.
    region : ndarray (H, W) bool
        Scored region; the same for every model in one comparison
        (:func:`compare_models.imaging.region.scored_region`).
    ms_ssim_sigma : float or None
        Gaussian sigma (pixels) blurring both images before MS-SSIM, amplitude and phase alike
        (the existing tool's ``--ms-ssim-sigma``). Default None: no blur, as Wang et al. define it.
    frc_sigma : float or None
        Smoothing of the FRC curves, in rings.
    pixel_size_m : float or None
        Object pixel size, for FRC resolutions in metres.
    amplitude_data_range, phase_data_range : float or None
        Data range for PSNR, SSIM and MS-SSIM. Default, for both: the truth's max - min over
        the region (:func:`data_range`), recorded with ``data_range_source``.

    Returns
    -------
    dict
        ``{"amplitude": {...}, "phase": {...}, "region": {...}, "settings": {...}}``; each
        component has scalars ``mae, mse, psnr, ssim, ms_ssim, ms_ssim_scales, frc50,
        frc1over7`` (FRC cut-offs as fractions of Nyquist: ``frc50`` is the resolution,
        ``frc1over7`` a legacy value that is not one), ``ms_ssim_weights``, ``ms_ssim_note``,
        ``ms_ssim_sigma``, ``data_range``, ``data_range_source`` and ``frc`` (the curve and
        the labelled cut-offs, :func:`frc_against_truth`). ``psnr`` is ``inf`` for identical
        images (see :func:`compare_models.report.writers.to_jsonable`).

    Raises
    ------
    MetricError
        Shapes differ, the region is empty or too small (< 11 pixels a side for SSIM), a value
        inside the region is not finite, or a truth component is zero over the region.

    Notes
    -----
    Everything is computed on the region's bounding box. MAE, MSE and PSNR use only the
    region's pixels. For SSIM and MS-SSIM, pixels of the box outside the region are set, in
    both images, to the truth's mean over the region; SSIM averages its map over windows
    centred in the region. FRC uses each image minus its own mean, multiplied by the same
    :func:`frc_window` (a raised-cosine taper to zero at the region's edge), so the edge of
    the region adds no correlation of its own. The phase of the reconstruction is taken as
    ``angle(truth) + angle(aligned * conj(truth))``, so that phase differences are wrapped
    differences and no 2 pi jump appears where the truth's phase crosses +-pi; FRC of the
    phase is computed on their unit phasors ``exp(i phase)``, which have no wrap
    discontinuities (:func:`compare_models.imaging.frc_window.unit_phasor`). One data-range rule serves both components, so
    the same fraction-of-range error scores the same PSNR in amplitude and in phase.
    """
    aligned = np.asarray(aligned)
    truth = np.asarray(truth)
    region = np.asarray(region)
    if aligned.ndim != 2 or aligned.shape != truth.shape or region.shape != truth.shape:
        raise MetricError(
            f"aligned, truth and region must share one 2-D shape, got {aligned.shape}, "
            f"{truth.shape}, {region.shape}"
        )
    if region.dtype != bool or not region.any():
        raise MetricError("region must be a non-empty boolean mask")
    if ms_ssim_sigma is not None and not (math.isfinite(ms_ssim_sigma) and ms_ssim_sigma >= 0):
        raise MetricError(f"ms_ssim_sigma must be >= 0 pixels, got {ms_ssim_sigma!r}")
    box = mask_bbox(region)
    mask = region[box]
    if min(mask.shape) < _SSIM_TAPS:
        raise MetricError(
            f"region's bounding box {mask.shape} is smaller than the {_SSIM_TAPS}-pixel SSIM window"
        )
    rec = aligned[box].astype(np.complex128)
    ref = truth[box].astype(np.complex128)
    for name, arr in (("aligned", rec), ("truth", ref)):
        if not np.isfinite(arr[mask]).all():
            raise MetricError(f"{name} image has NaN or infinite values inside the region")
    # Outside the region the values do not matter (filled below); keep them finite.
    rec = np.where(mask, rec, 0)
    ref = np.where(mask, ref, 1)

    amp_t, amp_r = np.abs(ref), np.abs(rec)
    phase_t = np.angle(ref)
    # Exactly equal pixels get exactly equal phases (the product can carry rounding).
    phase_r = phase_t + np.where(rec == ref, 0.0, np.angle(rec * np.conj(ref)))
    ranges = {}
    for name, values, given in (
        ("amplitude", amp_t, amplitude_data_range),
        ("phase", phase_t, phase_data_range),
    ):
        if given is None:
            try:
                ranges[name] = data_range(values[mask])
            except MetricError as exc:
                raise MetricError(f"{name}: {exc}") from exc
        else:
            ranges[name] = (_check_range(given), "explicit")
    common = dict(frc_sigma=frc_sigma, pixel_size_m=pixel_size_m, smooth_sigma=ms_ssim_sigma)
    amplitude = _component_metrics(amp_r, amp_t, mask, ranges["amplitude"][0], **common)
    from .frc_window import unit_phasor

    phase = _component_metrics(
        phase_r, phase_t, mask, ranges["phase"][0], frc_images=(unit_phasor(phase_r), unit_phasor(phase_t)), **common
    )
    for part, name in ((amplitude, "amplitude"), (phase, "phase")):
        part.update(data_range=ranges[name][0], data_range_source=ranges[name][1])
    return {
        "amplitude": amplitude,
        "phase": phase,
        "region": {
            "bbox_rows": [int(box[0].start), int(box[0].stop)],
            "bbox_cols": [int(box[1].start), int(box[1].stop)],
            "n_pixels": int(mask.sum()),
        },
        "settings": {
            "ms_ssim_sigma": ms_ssim_sigma or None,
            "frc_sigma": frc_sigma,
            "pixel_size_m": pixel_size_m,
        },
    }
