"""The FRC window makes no correlation of its own, and phase FRC has no wrap discontinuities
(compare_models.imaging.frc_window, through frc_on_region, half_set_frc and compute_metrics).

Known answers: halves that share a band-limited signal and nothing above it (plus independent
noise) hold no information above the band edge; two copies of a white signal with white noise
correlate at S / (S + N) at every ring; more phase noise never means more agreement."""

from __future__ import annotations

import numpy as np
import pytest

from compare_models.errors import MetricError
from compare_models.imaging import frc as F
from compare_models.imaging.frc_window import (
    leak_corrected,
    unit_phasor,
    window_leak,
    window_resolution_rings,
)
from compare_models.imaging.halfsets import half_set_frc
from compare_models.imaging.metrics import compute_metrics
from compare_models.imaging.region import scan_hull

SIZE = 128
CUTOFFS = ("1/7", "halfbit", "1bit")


def _band_limited(seed, edge_nyquist, size=SIZE):
    """Unit-variance real field whose spectrum is flat inside ``edge_nyquist`` of Nyquist and
    exactly zero outside (periodic on the grid)."""
    rng = np.random.default_rng(seed)
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij"))
    field = np.fft.ifft2(np.fft.fft2(rng.standard_normal((size, size))) * (k < edge_nyquist / 2)).real
    return field / field.std()


def _irregular_region(seed=0, size=SIZE):
    """The convex hull of 40 random scan positions: straight edges and corners, as a scan's."""
    positions = np.random.default_rng(seed).uniform(20, size - 20, (40, 2))
    return scan_hull(positions, (size, size))


def _halves(signal, sigma, seed=2):
    rng = np.random.default_rng(seed)
    return signal + sigma * rng.standard_normal(signal.shape), signal + sigma * rng.standard_normal(signal.shape)


@pytest.mark.parametrize("edge", [0.2, 0.4])
@pytest.mark.parametrize("sigma", [1e-3, 1e-2, 1e-1])
def test_halves_without_information_above_a_frequency_never_cross_above_it(edge, sigma):
    """Two halves share a signal with nothing above ``edge`` of Nyquist. With the raised-cosine
    window alone they crossed 1/7 at 0.58 (0.01 noise) to 1.0 (0.001 noise) for an edge at 0.2:
    the window leaked the in-band spectrum past the edge. Now no cut-off lies beyond the edge by
    more than the window's recorded resolution (and the one ring that rounding to rings adds),
    at any noise level."""
    mask = _irregular_region()
    first, second = _halves(1 + 0.3 * _band_limited(1, edge), sigma)
    ring = F.frc_on_region(first, second, mask, cutoff_rule="first")
    one_ring = 1 / (min(mask.shape) / 2)
    limit = edge + ring.window_resolution_nyquist + one_ring
    assert ring.window_resolution_nyquist < 0.15
    for name in CUTOFFS:
        assert ring.cutoffs[name]["fraction_nyquist"] <= limit, (name, ring.cutoffs[name], limit)
    # Through the half-set FRC (amplitude of two complex halves) the same holds.
    result = half_set_frc(first * np.exp(0.3j), second * np.exp(0.3j), mask)
    for name in CUTOFFS:
        assert result["amplitude"]["cutoffs"][name]["fraction_nyquist"] <= limit, name


def test_a_band_limited_image_scored_against_the_truth_stops_at_its_band():
    """Against the truth (0.5 crossing after reaching): an image that holds only the truth's
    content below 0.3 of Nyquist has no resolution beyond it."""
    rng = np.random.default_rng(5)
    truth_field = rng.standard_normal((SIZE, SIZE))
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(SIZE), np.fft.fftfreq(SIZE), indexing="ij"))
    low = np.fft.ifft2(np.fft.fft2(truth_field) * (k < 0.15)).real
    truth = 1 + 0.1 * truth_field + 2.0 * low
    image = 1 + 2.0 * low + 1e-3 * rng.standard_normal(low.shape)
    mask = _irregular_region(3)
    ring = F.frc_on_region(image, truth, mask)
    one_ring = 1 / (min(mask.shape) / 2)
    assert ring.cutoffs["0.5"]["fraction_nyquist"] <= 0.3 + ring.window_resolution_nyquist + one_ring


@pytest.mark.parametrize("sigma", [0.1, 0.3])
def test_correlation_that_is_there_is_kept(sigma):
    """Two copies of a white signal (variance 0.09) with white noise: FRC = 0.09 / (0.09 +
    sigma**2) at every ring. The leakage correction leaves it within its statistical error."""
    mask = _irregular_region()
    signal = 1 + 0.3 * np.random.default_rng(7).standard_normal((SIZE, SIZE))
    first, second = _halves(signal, sigma)
    ring = F.frc_on_region(first, second, mask, cutoff_rule="first")
    expected = 0.09 / (0.09 + sigma**2)
    rings = np.arange(4, len(ring.curve) - 1)
    spread = (1 - expected**2) / np.sqrt(ring.independent_fraction * ring.n_pixels[rings])
    assert np.median(ring.curve[rings]) == pytest.approx(expected, abs=0.02)
    assert (np.abs(ring.curve[rings] - expected) < 4 * spread + 0.02).all()


def test_images_that_differ_by_little_keep_a_correlation_near_one():
    """Leakage cancels in the difference of two images: nearly identical halves of a smooth
    object correlate near 1 at every ring where the object has power, leakage or not."""
    rng = np.random.default_rng(8)
    smooth = _band_limited(8, 0.5)
    first = 1 + 0.3 * smooth
    second = first + 1e-6 * rng.standard_normal(first.shape)
    ring = F.frc_on_region(first, second, _irregular_region(), cutoff_rule="first")
    assert ring.curve[1:30].min() > 0.999


def test_window_resolution_and_leak_are_checked_and_recorded():
    mask = _irregular_region()
    window = F.frc_window(mask)
    rho = window_resolution_rings(window)
    assert rho == pytest.approx(window_resolution_rings(window, 0.01))
    assert window_resolution_rings(window, 0.001) > rho > window_resolution_rings(window, 0.1)
    with pytest.raises(MetricError, match="energy_fraction"):
        window_resolution_rings(window, 1.0)
    with pytest.raises(MetricError, match="shape"):
        window_leak(window, np.ones((4, 4)), window, window, window.astype(int), 5, np.ones(5))
    ring = F.frc_on_region(*_halves(1 + 0.3 * _band_limited(1, 0.2), 1e-2), mask, cutoff_rule="first")
    record = ring.to_dict()
    assert record["window_resolution_nyquist"] == pytest.approx(rho / (min(mask.shape) / 2))
    assert len(record["window_leak"]) == len(record["curve"])
    # Beyond the band edge and the window's resolution the plain windowed FRC was leakage
    # (0.93-0.97 in the first rings there): that is what is removed.
    start = 0.2 + record["window_resolution_nyquist"] + 1 / (min(mask.shape) / 2)
    above = (ring.frequency_nyquist > start) & (ring.frequency_nyquist < start + 0.05)
    assert above.any() and np.asarray(record["window_leak"])[above].min() > 0.5


def test_leak_corrected_without_leakage_is_the_plain_cross_power():
    from compare_models.imaging.frc_window import WindowLeak

    zeros = np.zeros(4)
    none = WindowLeak(zeros, zeros, zeros, np.full(4, 2.0), np.full(4, 0.5), 3.0, 0.01, 0.99)
    pa, pb = np.array([4.0, 9.0, 1.0, 2.0]), np.array([1.0, 4.0, 1.0, 2.0])
    pd = np.array([1.0, 1.0, 2.0, 0.0])
    cross, own_a, own_b = leak_corrected(pa, pb, pd, none)
    np.testing.assert_allclose(cross, (pa + pb - pd) / 2)
    np.testing.assert_array_equal(own_a, pa)
    np.testing.assert_array_equal(own_b, pb)


# --------------------------------------------------------------------------------------------
# Phase FRC without wrap discontinuities


def _wrapping_object(span_rad, size=SIZE):
    """Amplitude 1, phase a smooth field spanning ``span_rad`` (wraps when > 2 pi)."""
    field = _band_limited(11, 0.15, size)
    field = (field - field.min()) / (field.max() - field.min())
    return np.exp(1j * span_rad * (field - 0.5))


def _phase_noisy(image, sigma, seed):
    return image * np.exp(1j * sigma * np.random.default_rng(seed).standard_normal(image.shape))


def _phase_cutoffs(span_rad, sigma, mask):
    truth = _wrapping_object(span_rad)
    result = half_set_frc(_phase_noisy(truth, sigma, 1), _phase_noisy(truth, sigma, 2), mask)
    return {name: result["phase"]["cutoffs"][name]["fraction_nyquist"] for name in CUTOFFS}, result


@pytest.mark.parametrize("span", [2.0, 8.0])
def test_more_phase_noise_never_reads_as_a_better_phase_resolution(span):
    """Half-set phase FRC of an object with 2 or 8 rad of phase and 0.3, 0.6, 1.0 rad of noise.
    On the wrapped phase both halves shared its 2 pi jumps (and noise made more of them): the
    8 rad object reached Nyquist, and the 2 rad object read 0.59 with 0.3 rad and 1.0 with 1 rad
    of noise. On the unit phasor the cut-off falls as the noise grows."""
    mask = np.zeros((SIZE, SIZE), bool)
    mask[8:-8, 8:-8] = True
    previous = None
    for sigma in (0.3, 0.6, 1.0):
        cutoffs, result = _phase_cutoffs(span, sigma, mask)
        if span == 8.0:
            assert result["phase_wrap_pixels"] > 0  # the object's phase wraps in the region
        assert max(cutoffs.values()) < 1.0, (sigma, cutoffs)
        if previous is not None:
            for name in CUTOFFS:
                assert cutoffs[name] <= previous[name] + 1e-12, (name, sigma, cutoffs, previous)
        previous = cutoffs


@pytest.mark.parametrize("sigma", [0.01, 0.1, 0.3])
def test_phase_frc_is_the_signal_to_noise_ratio_of_the_phase(sigma):
    """A white Gaussian phase (s = 0.1 rad rms) with white Gaussian phase noise sigma in each
    half. Pixel by pixel the phasors' covariance is exp(-sigma²) (1 - exp(-s²)) and their
    variance 1 - exp(-s² - sigma²), so for white fields the FRC is their ratio at every ring
    (about s² / (s² + sigma²) for small phases): 0.990 at sigma = 0.01 rad, where no threshold
    is crossed and the cut-offs read Nyquist (as a well-converged iterative reconstruction's
    do); 0.4975 at 0.1 rad; 0.096 at 0.3 rad, below every threshold from the first ring on."""
    mask = np.zeros((SIZE, SIZE), bool)
    mask[8:-8, 8:-8] = True
    phase = 0.1 * np.random.default_rng(9).standard_normal((SIZE, SIZE))
    first, second = (_phase_noisy(np.exp(1j * phase), sigma, seed) for seed in (1, 2))
    result = half_set_frc(first, second, mask)["phase"]
    curve = np.asarray(result["curve"])
    rings = np.arange(4, len(curve) - 1)
    expected = np.exp(-sigma**2) * (1 - np.exp(-0.01)) / (1 - np.exp(-0.01 - sigma**2))
    assert np.median(curve[rings]) == pytest.approx(expected, abs=0.02)
    cutoffs = [result["cutoffs"][name] for name in CUTOFFS]
    if sigma == 0.01:
        assert all(not c["crossed"] and c["fraction_nyquist"] == 1.0 for c in cutoffs), cutoffs
    if sigma == 0.3:
        assert all(c["crossed"] and c["ring"] <= 2 for c in cutoffs), cutoffs


def test_phase_against_the_truth_is_not_fooled_by_wrapping():
    """FRC against the truth: the truth's own 2 pi jumps were in both phase images, so an
    8 rad object with 0.1 rad of phase noise scored phase frc50 = 1.0 (Nyquist). On the unit
    phasors it does not, and more noise scores lower."""
    truth = _wrapping_object(8.0)
    region = np.zeros(truth.shape, bool)
    region[8:-8, 8:-8] = True
    noise = (0.1, 0.3, 1.0)
    scores = [compute_metrics(_phase_noisy(truth, sigma, 4), truth, region)["phase"]["frc50"] for sigma in noise]
    assert scores[0] < 0.8
    assert scores[2] < scores[1] < scores[0], scores


def test_unit_phasor_is_continuous_through_the_wrap():
    phase = np.linspace(-3 * np.pi, 3 * np.pi, 1001)
    wrapped = np.angle(np.exp(1j * phase))
    np.testing.assert_allclose(unit_phasor(wrapped), np.exp(1j * phase), atol=1e-12)
    assert np.abs(np.diff(unit_phasor(wrapped))).max() < 0.02  # no jump, the wrapped phase has 2 pi ones


def test_holes_that_a_coverage_fraction_hides_are_found_and_cost_the_window_its_resolution():
    """A half-set region at 94 % coverage whose missing 6 % is a lattice of 3 x 3 px holes: the
    fraction passes a 90 % guard, the holes do not, and the FRC window's resolution says why
    (0.13 of Nyquist on the hull, 0.34 with the holes)."""
    from compare_models.imaging.coverage import fraction_covered, region_holes

    hull = _irregular_region()
    yy, xx = np.mgrid[:SIZE, :SIZE]
    lattice = ((yy % 12) < 3) & ((xx % 12) < 3)
    holey = hull & ~lattice
    assert fraction_covered(hull, holey) > 0.9
    assert region_holes(hull) == {"count": 0, "pixels": 0, "largest_pixels": 0}
    found = region_holes(holey)
    assert found["count"] > 20 and found["largest_pixels"] == 9
    assert found["pixels"] <= int((hull & lattice).sum())
    # A bay open to the outside is no hole.
    bay = hull.copy()
    rows, cols = np.nonzero(hull)
    bay[rows.min() : rows.min() + 10, cols.min() : cols.max() + 1] = False
    assert region_holes(bay)["count"] == 0
    signal = 1 + 0.3 * _band_limited(1, 0.2)
    plain = F.frc_on_region(*_halves(signal, 1e-2), hull, cutoff_rule="first")
    sieve = F.frc_on_region(*_halves(signal, 1e-2), holey, cutoff_rule="first")
    assert sieve.window_resolution_nyquist > 2 * plain.window_resolution_nyquist
