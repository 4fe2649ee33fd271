"""Half-set FRC, the numeric core: the split, the FRC against analytic truths."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compare_models.errors import MetricError
from compare_models.imaging import frc as F
from compare_models.imaging.halfsets import (
    SPLIT_METHODS,
    half_set_frc,
    largest_gap_px,
    split_half_sets,
)
from compare_models.imaging.registration import register

# --------------------------------------------------------------------------------------------
# The split


def _grid(nx, ny, sx, sy, origin=(0.0, 0.0)):
    """A regular grid in raster order, and each position's (column, row) index."""
    cols, rows = np.meshgrid(np.arange(nx), np.arange(ny))
    positions = np.stack([origin[0] + sx * cols.ravel(), origin[1] + sy * rows.ravel()], axis=1)
    return positions, cols.ravel(), rows.ravel()


positions_strategy = st.integers(2, 300).flatmap(
    lambda n: st.tuples(st.just(n), st.integers(0, 2**32 - 1), st.floats(5, 500))
)


@settings(max_examples=40, deadline=None)
@given(spec=positions_strategy, method=st.sampled_from(SPLIT_METHODS))
def test_split_is_disjoint_covers_all_and_is_deterministic(spec, method):
    n, seed, extent = spec
    rng = np.random.default_rng(seed)
    positions = rng.uniform(0, extent, size=(n, 2))
    try:
        split = split_half_sets(positions, method)
    except MetricError as exc:  # a random pair may all fall into one checkerboard colour
        assert method == "checkerboard" and "alternate" in str(exc)
        return
    assert np.intersect1d(split.half1, split.half2).size == 0
    assert np.array_equal(np.sort(np.concatenate(split.halves)), np.arange(n))
    assert split.half1.size and split.half2.size
    again = split_half_sets(positions.copy(), method)
    assert np.array_equal(again.half1, split.half1) and np.array_equal(again.half2, split.half2)
    if method == "alternate":
        assert np.array_equal(split.half1, np.arange(0, n, 2))


@settings(max_examples=40, deadline=None)
@given(
    nx=st.integers(2, 25),
    ny=st.integers(2, 25),
    sx=st.floats(2, 12),
    aspect=st.floats(0.5, 2.0),
    origin=st.tuples(st.floats(-50, 50), st.floats(-50, 50)),
    jitter=st.floats(0, 0.1),
    seed=st.integers(0, 2**32 - 1),
)
def test_checkerboard_of_a_grid_is_balanced_and_interleaved(nx, ny, sx, aspect, origin, jitter, seed):
    """On a grid (jitter up to a tenth of the step) the checkerboard finds the grid's cells: the
    halves differ by at most one position, and every position's neighbours along x and y are in
    the other half, whatever the order of the positions."""
    sy = sx * aspect
    positions, cols, rows = _grid(nx, ny, sx, sy, origin)
    rng = np.random.default_rng(seed)
    positions = positions + rng.uniform(-jitter, jitter, positions.shape) * min(sx, sy)
    split = split_half_sets(positions)
    assert abs(split.half1.size - split.half2.size) <= 1
    colour = np.zeros(len(positions), int)
    colour[split.half2] = 1
    truth = (cols + rows) % 2
    assert np.array_equal(colour, truth) or np.array_equal(colour, 1 - truth)
    # Invariant to the order of the file: a permuted scan gets the same colours.
    order = rng.permutation(len(positions))
    permuted = split_half_sets(positions[order])
    colour_permuted = np.zeros(len(positions), int)
    colour_permuted[permuted.half2] = 1
    assert np.array_equal(colour_permuted, colour[order]) or np.array_equal(colour_permuted, 1 - colour[order])


def test_checkerboard_of_a_jittered_scan_matches_its_grid():
    """Gaussian jitter of a sixth of the step (the simulator's jittered scan): a position lands
    in the wrong cell only when its jitter exceeds half a step (3 sigma), about 0.5 %."""
    rng = np.random.default_rng(1)
    positions, cols, rows = _grid(40, 40, 3.0, 3.0, (20.0, 30.0))
    positions = positions + rng.normal(0, 0.5, positions.shape)
    split = split_half_sets(positions)
    colour = np.zeros(len(positions), int)
    colour[split.half2] = 1
    agree = max(np.mean(colour == (cols + rows) % 2), np.mean(colour != (cols + rows) % 2))
    assert agree > 0.98
    assert abs(split.half1.size - split.half2.size) <= 0.02 * len(positions)
    assert split.lattice_step_px == pytest.approx((3.0, 3.0), rel=2e-3)


def test_alternate_split_and_recorded_description():
    positions, _, _ = _grid(3, 3, 4.0, 4.0)
    split = split_half_sets(positions, "alternate")
    assert split.half1.tolist() == [0, 2, 4, 6, 8] and split.half2.tolist() == [1, 3, 5, 7]
    record = split.to_dict()
    assert record["method"] == "alternate" and record["n_half1"] == 5 and record["n_half2"] == 4
    assert "along the scan path" in record["description"]
    record = split_half_sets(positions).to_dict()
    assert record["method"] == "checkerboard" and record["lattice_step_px"] == pytest.approx([4.0, 4.0])


@pytest.mark.parametrize(
    "positions, method, fragment",
    [
        (np.zeros((1, 2)), "checkerboard", "at least 2"),
        (np.zeros((5, 2)), "checkerboard", "distinct"),
        (np.ones((4, 2)), "random", "must be one of"),
        (np.full((4, 2), np.nan), "alternate", "NaN"),
    ],
)
def test_split_refuses_what_it_cannot_split(positions, method, fragment):
    with pytest.raises(MetricError, match=fragment):
        split_half_sets(positions, method)


def test_largest_gap_is_the_chessboard_distance_to_the_nearest_position():
    positions, _, _ = _grid(5, 5, 4.0, 4.0, (10.0, 10.0))
    mask = np.zeros((40, 40), bool)
    mask[10:27, 10:27] = True  # x and y from 10 to 26 (the grid spans 10..26)
    assert largest_gap_px(positions, mask) == pytest.approx(2.0)  # cell centres
    checker = positions[((np.arange(25) // 5) + (np.arange(25) % 5)) % 2 == 0]
    assert largest_gap_px(checker, mask) == pytest.approx(4.0)  # the other colour's sites


# --------------------------------------------------------------------------------------------
# The FRC of two noisy copies against the analytic SNR


L = 256
KAPPA_RINGS = 12.0  # the signal's power falls as exp(-r**2 / (2 kappa**2)), r in rings


def _band_limited(seed, scale=1.0):
    """A real image whose power spectrum is exactly ``P(k) = exp(-(|k| L)**2 / (2 kappa**2))``
    (unnormalised FFT, times a constant), zero beyond 0.8 of Nyquist."""
    rng = np.random.default_rng(seed)
    phase = np.angle(np.fft.fft2(rng.normal(size=(L, L))))  # Hermitian: the image is real
    ky = np.fft.fftfreq(L)[:, None]
    kx = np.fft.fftfreq(L)[None, :]
    radius = np.hypot(ky, kx) * L  # rings
    amplitude = np.exp(-(radius**2) / (4 * KAPPA_RINGS**2)) * (radius < 0.8 * L / 2)
    image = np.fft.ifft2(amplitude * np.exp(1j * phase)).real
    return scale * image / image.std(), radius


def _expected_curve(signal, radius, sigma, n_rings):
    """FRC(r) = S_r / (S_r + N) of two copies with independent white noise of variance
    sigma**2: S_r the signal's mean power over ring r (from its spectrum), N = P sigma**2."""
    power = np.abs(np.fft.fft2(signal)) ** 2
    rings = np.rint(radius).astype(int)
    keep = rings < n_rings
    s_r = np.bincount(rings[keep], power[keep], n_rings) / np.bincount(rings[keep], minlength=n_rings)
    noise = signal.size * sigma**2
    return s_r / (s_r + noise)


def _expected_phasor_curve(signal, radius, sigma, n_rings):
    """FRC of the unit phasors exp(i (signal + n)) of two copies with independent Gaussian
    phase noise n of variance sigma**2. With exp(i n) = exp(-sigma**2 / 2) + nu, nu white of
    variance 1 - exp(-sigma**2): cross power exp(-sigma**2) |F exp(i signal)|**2, and each
    copy adds white noise of power P (1 - exp(-sigma**2)) per Fourier pixel."""
    power = np.exp(-(sigma**2)) * np.abs(np.fft.fft2(np.exp(1j * signal))) ** 2
    rings = np.rint(radius).astype(int)
    keep = rings < n_rings
    s_r = np.bincount(rings[keep], power[keep], n_rings) / np.bincount(rings[keep], minlength=n_rings)
    noise = signal.size * (1 - np.exp(-(sigma**2)))
    return s_r / (s_r + noise)


def _expected_crossing(curve, threshold):
    """First ring >= 1 where the analytic curve is below the threshold, interpolated."""
    below = np.flatnonzero(curve[1:] < threshold[1:]) + 1
    ring = below[0]
    above, under = curve[ring - 1] - threshold[ring - 1], curve[ring] - threshold[ring]
    return ring - 1 + above / (above - under)


def _noise_for_crossing(signal, radius, ring):
    """The noise sigma at which the analytic FRC is 1/7 at ``ring`` (SNR = 1/6 there)."""
    power = np.abs(np.fft.fft2(signal)) ** 2
    s_ring = power[np.rint(radius) == ring].mean()
    return float(np.sqrt(6 * s_ring / signal.size))


def test_two_noisy_copies_cross_one_seventh_and_half_bit_where_the_snr_says():
    signal, radius = _band_limited(0)
    sigma = _noise_for_crossing(signal, radius, 40)
    rng = np.random.default_rng(1)
    first = signal + rng.normal(0, sigma, signal.shape)
    second = signal + rng.normal(0, sigma, signal.shape)
    ring = F.frc(first, second, cutoff_rule="first")
    expected = _expected_curve(signal, radius, sigma, len(ring.curve))
    for name, threshold in (("1/7", np.full(len(expected), 1 / 7)), ("halfbit", ring.thresholds["halfbit"]),
                            ("1bit", ring.thresholds["1bit"])):
        want = _expected_crossing(expected, threshold)
        got = ring.cutoffs[name]["fraction_nyquist"] * (L / 2)
        assert got == pytest.approx(want, abs=2), (name, got, want)
    assert _expected_crossing(expected, np.full(len(expected), 1 / 7)) == pytest.approx(40, abs=0.5)
    # The curve itself follows SNR / (1 + SNR) within its statistical error.
    rings = np.arange(5, 70)
    error = (1 - expected[rings] ** 2) / np.sqrt(ring.n_pixels[rings]) + 0.01
    assert np.all(np.abs(ring.curve[rings] - expected[rings]) < 4 * error)


@pytest.mark.parametrize("component", ["amplitude", "phase"])
def test_half_set_frc_of_noisy_copies_crosses_where_the_snr_says(component):
    """The same through half_set_frc (window, mean removal, phase plane): amplitude and phase
    of two complex half images, each with independent noise."""
    signal, radius = _band_limited(2, scale=0.3)
    sigma = _noise_for_crossing(signal, radius, 48)
    rng = np.random.default_rng(3)
    noisy = [signal + rng.normal(0, sigma, signal.shape) for _ in range(2)]
    if component == "amplitude":
        images = [(2.0 + n) * np.exp(0.4j) for n in noisy]
    else:
        images = [1.5 * np.exp(1j * n) for n in noisy]
    result = half_set_frc(images[0], images[1], np.ones((L, L), bool))
    frc = result[component]
    assert frc["kind"] == "half_set" and result["phase_wrap_pixels"] == 0
    if component == "amplitude":
        expected = _expected_curve(signal, radius, sigma, len(frc["curve"]))
        assert _expected_crossing(expected, np.full(len(expected), 1 / 7)) == pytest.approx(48, abs=0.5)
    else:  # the phase FRC is that of the unit phasors exp(i phase)
        expected = _expected_phasor_curve(signal, radius, sigma, len(frc["curve"]))
    want = _expected_crossing(expected, np.full(len(expected), 1 / 7))
    got = frc["cutoffs"]["1/7"]["fraction_nyquist"] * (L / 2)
    assert got == pytest.approx(want, abs=2)
    assert frc["halfset_frc1over7"] == frc["cutoffs"]["1/7"]["fraction_nyquist"]


def test_identical_halves_give_frc_one_and_no_cutoff():
    signal, _ = _band_limited(4, scale=0.5)
    image = (1.0 + 0.3 * signal) * np.exp(1j * signal)
    mask = np.zeros((L, L), bool)
    mask[20:200, 30:230] = True
    result = half_set_frc(image, image.copy(), mask, pixel_size_m=1e-8)
    for component in ("amplitude", "phase"):
        frc = result[component]
        assert np.min(frc["curve"][1:]) > 1 - 1e-9
        for name in ("1/7", "halfbit", "1bit"):
            cut = frc["cutoffs"][name]
            assert cut["crossed"] is False and cut["fraction_nyquist"] == 1.0
            assert cut["resolution_m"] == pytest.approx(1e-8)


def test_registration_then_frc_undoes_shift_and_gauge_between_halves():
    """Half 2 is half 1 displaced by (1.5, -2.25) px, scaled by 0.7 and with a phase offset and
    ramp: registered onto half 1 (the compare-models procedure), their FRC is ~1 again."""
    signal, _ = _band_limited(5, scale=0.4)
    first = (1.0 + 0.2 * signal) * np.exp(1j * signal)
    yy, xx = np.mgrid[:L, :L]
    moved = np.fft.ifft2(np.fft.fft2(first) * np.exp(-2j * np.pi * (np.fft.fftfreq(L)[:, None] * 1.5
                                                                    + np.fft.fftfreq(L)[None, :] * -2.25)))
    second = 0.7 * moved * np.exp(1j * (0.5 + 0.01 * xx - 0.02 * yy))
    region = np.zeros((L, L), bool)
    region[40:216, 40:216] = True
    registration = register(second, first, region, max_shift=5)
    assert registration.shift_yx == pytest.approx((-1.5, 2.25), abs=0.02)
    assert registration.gauge.amplitude_scale == pytest.approx(1 / 0.7, rel=1e-3)
    result = half_set_frc(first, registration.aligned, region & registration.valid)
    for component in ("amplitude", "phase"):
        # Over the rings where the signal has power (it falls as exp(-r**2 / 288)).
        assert np.min(result[component]["curve"][1:40]) > 0.99, component


def test_window_independent_fraction():
    assert F.window_independent_fraction(np.ones((16, 16))) == pytest.approx(1.0)
    mask = np.zeros((20, 20))
    mask[:10, :] = 1
    assert F.window_independent_fraction(mask) == pytest.approx(0.5)


def test_frc_half_set_reports_thresholds_and_labelled_cutoffs():
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(2, 64, 64))
    out = F.frc_half_set(F.frc_on_region(a, a + 0.5 * b, np.ones((64, 64), bool), cutoff_rule="first"))
    assert out["kind"] == "half_set"
    assert set(out["thresholds"]) == {"halfbit", "1bit"} and set(out["cutoffs"]) == {"1/7", "halfbit", "1bit"}
    assert all("van Heel & Schatz 2005" in c["role"] for c in out["cutoffs"].values())
    assert {"halfset_frc1over7", "halfset_frc_halfbit", "halfset_frc_1bit"} <= set(out)
    assert "first ring" in out["cutoff_rule"]
    # One bit needs more correlation than half a bit, which needs more than 1/7 at large n.
    assert out["halfset_frc_1bit"] <= out["halfset_frc_halfbit"] <= out["halfset_frc1over7"]


def test_first_crossing_rule_ignores_a_later_rise():
    curve = np.array([1.0, 0.9, 0.5, 0.1, 0.05, 0.6, 0.05])
    threshold = np.full(7, 1 / 7)
    first = F._cutoff(curve, threshold, 6, None, "first")
    assert first["ring"] == 3 and first["crossed"]
    again = F._cutoff(np.array([1.0, 0.1, 0.6, 0.05]), np.full(4, 0.5), 3, None, "first")
    assert again["ring"] == 1 and again["reached"] is False
    legacy = F._cutoff(np.array([1.0, 0.1, 0.6, 0.05]), np.full(4, 0.5), 3, None, "after_reaching")
    assert legacy["ring"] == 3  # against ground truth the later fall counts
