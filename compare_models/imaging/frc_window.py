"""What an FRC window and a phase image must not add to a Fourier ring correlation.

Two rules that the FRC (:mod:`compare_models.imaging.metrics`, ``frc_on_region``) follows:

* **A window makes no correlation of its own** (:func:`window_leak`). Multiplying both images
  by one window convolves both spectra with the window's spectrum, so strong content at some
  frequencies leaks into other rings identically in both images: two halves that share nothing
  above 0.2 of Nyquist correlated up to 0.41-1.0 of Nyquist through a raised-cosine window.
  The window's spectrum is split at its *resolution* ``rho`` (the radius, in rings, outside
  which it holds at most 1 % of its energy): what it carries from farther than ``rho`` is
  leakage, what lies within is the window's own blur of the spectrum. The expected leakage into
  each ring of each image and of their difference is computed from its windowed power
  spectrum, with the interval between its 1 % and 99 % quantiles for the ring's independent
  samples; a ring's correlation counts only as far as that interval cannot explain it
  (:func:`leak_corrected`). What the images share leaks into both but not into their
  difference, so halves without information above a frequency never cross a threshold above
  it by more than ``rho`` (and one ring), while images that differ by little, and identical
  images, still correlate at every frequency.
* **A phase FRC is computed on a quantity without wrap discontinuities** (:func:`unit_phasor`):
  the unit phasor ``exp(i phase)``, not the wrapped phase, whose 2 pi jumps both images share
  and which correlates them at every frequency (an 8 rad object reached Nyquist; more phase
  noise read as a better resolution).

References
----------
.. [1] D. B. Percival and A. T. Walden, *Spectral Analysis for Physical Applications*,
   Cambridge University Press (1993), ch. 6 (leakage of a tapered periodogram).
.. [2] M. van Heel and M. Schatz, "Fourier shell correlation threshold criteria," J. Struct.
   Biol. 151, 250-262 (2005).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import MetricError

__all__ = [
    "LEAK_ENERGY_FRACTION",
    "LEAK_CONFIDENCE",
    "WindowLeak",
    "window_resolution_rings",
    "window_leak",
    "leak_corrected",
    "unit_phasor",
    "WINDOW_RULE",
    "PHASE_RULE",
]

#: Share of the window's spectral energy allowed outside its resolution radius: the leakage
#: that is not subtracted and so can lower a ring's FRC by at most this share (times the
#: confidence factor) when the spectrum is flat.
LEAK_ENERGY_FRACTION = 0.01
#: Probability that a ring's realised leakage stays under the bound that is subtracted.
LEAK_CONFIDENCE = 0.99

WINDOW_RULE = (
    "the power the window carries into each ring from frequencies farther than its resolution "
    "(the radius outside which its spectrum holds 1 % of its energy) is estimated for each "
    "windowed image and for their difference, with the interval between its 1 % and 99 % "
    "quantiles for the ring's independent samples; each ring reports the correlation of the images' own content closest "
    "to zero that this interval allows (0 where the leakage can explain the ring)"
)
PHASE_RULE = (
    "phase FRC on the unit phasors exp(i phase) of the two images (no 2 pi jumps), after the "
    "phase gauge"
)


@dataclass(frozen=True, eq=False)
class WindowLeak:
    """The power a window can carry into each ring from far frequencies, for two images.

    Attributes
    ----------
    expected_a, expected_b, expected_difference : ndarray (R,)
        Expected power carried into each ring of image a, image b and their difference a - b
        from beyond ``resolution_rings``.
    factor, low_factor : ndarray (R,)
        ``gamma.ppf(confidence, n) / n`` and ``gamma.ppf(1 - confidence, n) / n`` for the
        ring's ``n`` independent samples: the realised leakage stays under ``factor *
        expected``, and above ``low_factor * expected``, with probability ``confidence``.
    resolution_rings : float
        The window's resolution, rings (:func:`window_resolution_rings`).
    energy_fraction, confidence : float
    """

    expected_a: np.ndarray
    expected_b: np.ndarray
    expected_difference: np.ndarray
    factor: np.ndarray
    low_factor: np.ndarray
    resolution_rings: float
    energy_fraction: float
    confidence: float


def _radius_rings(shape) -> np.ndarray:
    """|k| of every Fourier pixel in rings (``|k| * min(shape)``, k in cycles per pixel)."""
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.fftfreq(shape[1])[None, :]
    return np.hypot(ky, kx) * min(shape)


def _window_spectrum(window) -> np.ndarray:
    window = np.asarray(window, dtype=np.float64)
    spectrum = np.abs(np.fft.fft2(window)) ** 2
    total = float(spectrum.sum())
    if not total > 0:
        raise MetricError("the FRC window is zero everywhere")
    return spectrum / total


def window_resolution_rings(window, energy_fraction: float = LEAK_ENERGY_FRACTION) -> float:
    """Radius, in rings, outside which the window's power spectrum holds at most
    ``energy_fraction`` of its energy.

    Parameters
    ----------
    window : ndarray (h, w) real
    energy_fraction : float
        In (0, 1).

    Returns
    -------
    float
        Rings of the FRC on an (h, w) image (ring r holds ``round(|k| min(h, w)) == r``).

    Examples
    --------
    >>> yy, xx = np.mgrid[:64, :64]
    >>> narrow = np.exp(-((yy - 32) ** 2 + (xx - 32) ** 2) / (2 * 4.0**2))
    >>> wide = np.exp(-((yy - 32) ** 2 + (xx - 32) ** 2) / (2 * 8.0**2))
    >>> window_resolution_rings(narrow) > 1.9 * window_resolution_rings(wide)
    True
    """
    if not 0.0 < energy_fraction < 1.0:
        raise MetricError(f"energy_fraction must lie in (0, 1), got {energy_fraction!r}")
    spectrum = _window_spectrum(window).ravel()
    radius = _radius_rings(np.shape(window)).ravel()
    order = np.argsort(radius, kind="stable")
    inside = np.cumsum(spectrum[order])
    # The smallest radius whose disc holds at least 1 - energy_fraction of the energy.
    at = int(np.searchsorted(inside, 1.0 - energy_fraction, side="left"))
    return float(radius[order][min(at, radius.size - 1)])


def window_leak(
    window,
    power_a,
    power_b,
    power_difference,
    rings,
    n_rings: int,
    n_independent,
    *,
    energy_fraction: float = LEAK_ENERGY_FRACTION,
    confidence: float = LEAK_CONFIDENCE,
) -> WindowLeak:
    """The power ``window`` carries into each ring of two windowed images from far frequencies.

    Parameters
    ----------
    window : ndarray (h, w) real
        The window both images were multiplied by.
    power_a, power_b, power_difference : ndarray (h, w) real
        ``|F_a|**2``, ``|F_b|**2`` and ``|F_a - F_b|**2`` of the two windowed images, per
        Fourier pixel (numpy FFT order).
    rings : ndarray (h, w) int
        Ring of every Fourier pixel (``round(|k| min(h, w))``); pixels with ``rings >=
        n_rings`` are left out.
    n_rings : int
    n_independent : ndarray (R,)
        Independent samples per ring (``independent_fraction * n_pixels``).
    energy_fraction, confidence : float
        See :data:`LEAK_ENERGY_FRACTION`, :data:`LEAK_CONFIDENCE`.

    Returns
    -------
    WindowLeak

    Notes
    -----
    The windowed spectrum is the true one convolved with the window's power spectrum
    ``K(q) = |W(q)|**2 / sum |W|**2``. Split ``K`` at the window's resolution ``rho``
    (:func:`window_resolution_rings`): ``K_far = K [|q| > rho]`` is leakage. Its expected
    contribution to Fourier pixel ``k`` of an image is ``(K_far * P)(k)`` (circular
    convolution), with the windowed power spectrum ``P`` standing in for the true one (it is
    the true one blurred by ``K``, so the estimate errs on the large side). Summed over a ring
    of ``n`` independent samples, the realised leakage is a sum of ``n`` exponentially
    distributed powers, a Gamma(n) variable, which stays under ``gamma.ppf(confidence, n) / n``
    times its mean, and above ``gamma.ppf(1 - confidence, n) / n`` times it, with probability
    ``confidence``.
    """
    from scipy.stats import gamma

    if not 0.0 < confidence < 1.0:
        raise MetricError(f"confidence must lie in (0, 1), got {confidence!r}")
    window = np.asarray(window, dtype=np.float64)
    rings = np.asarray(rings)
    for name, array in (("power_a", power_a), ("power_b", power_b), ("power_difference", power_difference),
                        ("rings", rings)):
        if np.shape(array) != window.shape:
            raise MetricError(f"{name} has shape {np.shape(array)}, expected the window's {window.shape}")
    rho = window_resolution_rings(window, energy_fraction)
    far = np.fft.fft2(np.where(_radius_rings(window.shape) > rho, _window_spectrum(window), 0.0))
    keep = rings < n_rings

    def expected(power):
        per_pixel = np.fft.ifft2(far * np.fft.fft2(np.asarray(power, dtype=np.float64))).real
        return np.maximum(np.bincount(rings[keep], per_pixel[keep], minlength=n_rings)[:n_rings], 0.0)

    samples = np.maximum(np.asarray(n_independent, dtype=np.float64), 1.0)
    return WindowLeak(
        expected_a=expected(power_a),
        expected_b=expected(power_b),
        expected_difference=expected(power_difference),
        factor=gamma.ppf(confidence, samples) / samples,
        low_factor=gamma.ppf(1.0 - confidence, samples) / samples,
        resolution_rings=rho,
        energy_fraction=float(energy_fraction),
        confidence=float(confidence),
    )


#: Points at which the leakage's confidence interval is searched (:func:`leak_corrected`).
_INTERVAL_POINTS = 33


def leak_corrected(power_a, power_b, power_difference, leak: WindowLeak):
    """Ring sums of the two images' own power and cross power, without the window's leakage.

    Parameters
    ----------
    power_a, power_b, power_difference : ndarray (R,)
        Ring sums of ``|F_a|**2``, ``|F_b|**2`` and ``|F_a - F_b|**2`` of the windowed images.
    leak : WindowLeak

    Returns
    -------
    cross, own_a, own_b : ndarray (R,)
        ``own = max(P - expected, 0)``: each image's power in the ring less the leakage the
        window is expected to have brought, and ``cross`` such that ``cross / sqrt(own_a
        own_b)`` is the ring's FRC after the leakage (below).

    Notes
    -----
    The leakage carries what the images share: the same realisation enters ``P_a``, ``P_b``
    and the cross power ``C = (P_a + P_b - P_difference) / 2``, each ``t`` times its
    expectation (``e_a``, ``e_b`` and ``e_c = (e_a + e_b - e_difference) / 2``), where ``t``
    lies between ``low_factor`` and ``factor`` with probability ``confidence``. The FRC of the
    images' own content is then ``(C - t e_c) / sqrt((P_a - t e_a)(P_b - t e_b))`` for some
    ``t`` in that interval, and the ring reports the value closest to zero: 0 when the
    interval allows no correlation or no own power at all (a ring the window fills with
    leakage of shared content), else the smallest correlation it allows. Images that differ by
    little keep a correlation near 1 whatever ``t`` (the leakage cancels in their difference);
    identical images (zero difference) keep exactly 1. Without leakage (``expected = 0``) the
    result is the plain cross power and powers.
    """
    power_a = np.asarray(power_a, dtype=np.float64)
    power_b = np.asarray(power_b, dtype=np.float64)
    power_difference = np.asarray(power_difference, dtype=np.float64)
    e_a, e_b = leak.expected_a, leak.expected_b
    e_c = (e_a + e_b - leak.expected_difference) / 2.0
    plain_cross = (power_a + power_b - power_difference) / 2.0
    t = leak.low_factor + (leak.factor - leak.low_factor) * np.linspace(0.0, 1.0, _INTERVAL_POINTS)[:, None]
    own_a_t = power_a - t * e_a
    own_b_t = power_b - t * e_b
    with np.errstate(divide="ignore", invalid="ignore"):
        frc_t = (plain_cross - t * e_c) / np.sqrt(own_a_t * own_b_t)
    possible = (own_a_t > 0).all(axis=0) & (own_b_t > 0).all(axis=0)
    closest = np.take_along_axis(frc_t, np.argmin(np.abs(frc_t), axis=0)[None], axis=0)[0]
    sign_change = (frc_t.min(axis=0) <= 0) & (frc_t.max(axis=0) >= 0)
    frc_own = np.where(possible & ~sign_change, closest, 0.0)
    own_a = np.maximum(power_a - e_a, 0.0)
    own_b = np.maximum(power_b - e_b, 0.0)
    cross = frc_own * np.sqrt(own_a * own_b)
    identical = power_difference <= 1e-24 * np.maximum(power_a + power_b, np.finfo(float).tiny)
    cross = np.where(identical, plain_cross, cross)
    own_a = np.where(identical, power_a, own_a)
    own_b = np.where(identical, power_b, own_b)
    return cross, own_a, own_b


def unit_phasor(phase) -> np.ndarray:
    """``exp(i phase)``: the phase as a quantity without wrap discontinuities.

    A wrapped phase image jumps by 2 pi where the phase crosses +-pi; two images of one object
    share those jumps, and a jump has power at every frequency, so their FRC reads agreement up
    to Nyquist that is no information (more noise even makes more jumps, and a better score).
    The unit phasor is continuous through them; for small phase variations it is ``1 + i
    phase``, so its FRC is that of the phase.

    Examples
    --------
    >>> bool(np.allclose(unit_phasor(np.array([np.pi - 1e-9, -np.pi + 1e-9])), -1))
    True
    """
    return np.exp(1j * np.asarray(phase, dtype=np.float64))
