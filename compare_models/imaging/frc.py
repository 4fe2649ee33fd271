"""Fourier ring correlation (FRC) of two real images, its thresholds and cut-offs.

:func:`frc` correlates two images ring by ring and finds where the curve falls below the
fixed (0.5, 1/7) and information-curve (1-bit, 1/2-bit) thresholds; :func:`frc_on_region` is
the one FRC every comparison uses on an irregular region (mean removed, a raised-cosine window
to the region's edge); :func:`frc_against_truth` and :func:`frc_half_set` label the cut-offs
each kind of FRC reports.

References
----------
.. [1] M. van Heel and M. Schatz, "Fourier shell correlation threshold criteria,"
   J. Struct. Biol. 151, 250-262 (2005).
.. [2] P. B. Rosenthal and R. Henderson, "Optimal determination of particle orientation,
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
from .simple_metrics import as_pair

__all__ = [
    "FRCResult",
    "CUTOFF_RULES",
    "frc",
    "frc_threshold_bits",
    "frc_window",
    "window_independent_fraction",
    "frc_on_region",
    "frc_against_truth",
    "frc_half_set",
    "FRC_AGAINST_TRUTH_THRESHOLD",
    "FRC_LEGACY_CUTOFFS",
    "HALF_SET_FRC_CUTOFFS",
    "HALF_SET_CSV_NAMES",
]

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

    A ring where one image has no power correlates nothing: its FRC is 0. So an image with no
    power at any non-zero frequency (a constant) against one with structure has an FRC of 0 at
    every ring above ring 0: it never reaches a threshold, and every cut-off is ring 1 (``reached`` False),
    the floor of the measure, which is what a chance-level constant image scores. Two images
    without structure, or whose powers share no ring, have no FRC (a MetricError).

    References
    ----------
    .. [1] van Heel and Schatz, J. Struct. Biol. 151, 250 (2005).
    """
    a, b = as_pair(a, b)
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
    if zero[1:].all() and not _one_without_structure(power_a, power_b, scale):
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
    a, b = as_pair(a, b)
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
    # What a cut-off measures depends on what made the two images (an iterative arm's halves
    # give a resolution, a network's a reproducibility): the caller says so, not this module.
    roles = {
        "1/7": "half-set FRC cut-off, fixed 1/7 threshold (van Heel & Schatz 2005)",
        "halfbit": "half-set FRC cut-off, 1/2-bit information curve (van Heel & Schatz 2005)",
        "1bit": "half-set FRC cut-off, 1-bit information curve (van Heel & Schatz 2005)",
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


def _one_without_structure(power_a, power_b, scale) -> bool:
    """Whether exactly one of two images has no power at any non-zero frequency (the other
    has some): their FRC is then 0 at every ring, not undefined."""
    flat_a = bool((power_a[1:] <= 1e-24 * scale).all())
    flat_b = bool((power_b[1:] <= 1e-24 * scale).all())
    return flat_a != flat_b
