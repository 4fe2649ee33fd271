"""Known-answer tests for compare_models.imaging.registration."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from skimage.registration import phase_cross_correlation

from compare_models.errors import RegistrationError
from compare_models.imaging.geometry import extract_patches
from compare_models.imaging.metrics import compute_metrics
from compare_models.imaging.registration import (
    APODISE_PX,
    apodise,
    fit_gauge,
    fourier_shift_image,
    register,
    scanned_region,
)

SIZE = 128


def _smooth_object(seed, size=SIZE):
    """Smooth periodic complex object (so a circular Fourier shift is an exact translation)."""
    rng = np.random.default_rng(seed)

    def field(sigma):
        f = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma, mode="wrap")
        return f / f.std()

    return (1 + 0.3 * field(3.0)) * np.exp(0.8j * field(2.5))


def _circular_shift(image, shift_yx):
    return np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(image), shift_yx))


def _central_region(margin=16, size=SIZE):
    region = np.zeros((size, size), bool)
    region[margin:-margin, margin:-margin] = True
    return region


# ----------------------------------------------------------------------------- scanned_region


def test_scanned_region_integer_positions_is_union_of_patches():
    positions = np.array([[20.0, 20.0], [30.0, 24.0], [50.0, 60.0]])
    region = scanned_region(positions, 16, (80, 70))
    expected = np.zeros((80, 70), bool)
    for x, y in positions.astype(int):
        expected[y - 8 : y + 8, x - 8 : x + 8] = True
    np.testing.assert_array_equal(region, expected)


def test_scanned_region_matches_extract_patches_footprint():
    # Every pixel a patch reads (bilinear weights > 0) is in the region, and no other.
    positions = np.array([[20.5, 20.0], [33.25, 27.75]])
    region = scanned_region(positions, 8, (50, 50))
    touched = np.zeros((50, 50))
    for k in range(50 * 50):
        probe = np.zeros(50 * 50)
        probe[k] = 1.0
        if np.abs(extract_patches(probe.reshape(50, 50), positions, 8)).sum() > 0:
            touched.flat[k] = 1
    np.testing.assert_array_equal(region, touched > 0)


def test_scanned_region_crop_and_erode():
    positions = np.array([[32.0, 32.0]])
    cropped = scanned_region(positions, 32, (64, 64), crop=16)
    assert cropped.sum() == 16 * 16 and cropped[24:40, 24:40].all()
    eroded = scanned_region(positions, 32, (64, 64), erode=3)
    assert eroded.sum() == 26 * 26 and eroded[19:45, 19:45].all()


def test_scanned_region_clips_and_validates():
    region = scanned_region(np.array([[2.0, 2.0]]), 8, (10, 10))
    assert region.sum() == 6 * 6
    with pytest.raises(RegistrationError, match="crop"):
        scanned_region(np.array([[5.0, 5.0]]), 8, (10, 10), crop=9)
    with pytest.raises(RegistrationError, match="positions_xy"):
        scanned_region(np.zeros((0, 2)), 8, (10, 10))


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 12),
    size=st.sampled_from([4, 6, 8]),
    seed=st.integers(0, 10_000),
)
def test_scanned_region_property_covers_every_integer_patch(n, size, seed):
    rng = np.random.default_rng(seed)
    positions = rng.integers(size // 2, 40 - size // 2, (n, 2)).astype(float)
    region = scanned_region(positions, size, (40, 40))
    count = np.zeros((40, 40), int)
    for x, y in positions.astype(int):
        count[y - size // 2 : y + size // 2, x - size // 2 : x + size // 2] += 1
    np.testing.assert_array_equal(region, count > 0)


# ----------------------------------------------------------------------------- shifts


def test_fourier_shift_integer_is_exact_and_does_not_wrap():
    image = _smooth_object(1)
    shifted = fourier_shift_image(image, (3, -5))
    np.testing.assert_allclose(shifted[3:, :-5], image[:-3, 5:], atol=1e-10)


def test_apodisation_keeps_the_sources_exact_and_smooths_the_edge_of_the_data():
    image = _smooth_object(16)
    valid = np.zeros(image.shape, bool)
    valid[20:100, 30:110] = True
    keep = np.zeros(image.shape, bool)
    keep[40:80, 50:90] = True
    apodised, untouched = apodise(np.where(valid, image, 0), valid, keep)
    np.testing.assert_array_equal(apodised[untouched], image[untouched])
    assert untouched[keep].all() and not untouched[~valid].any()
    # The taper is APODISE_PX wide here (keep lies deeper than that inside the data).
    # (the first row of data is 1 px from the outside: 8 px in is row 20 + 7)
    assert untouched[20 + APODISE_PX - 1, 60] and not untouched[20 + APODISE_PX - 2, 60]
    # The data's edge no longer has a kink: second differences across it stay small.
    rows = apodised[10:30, 60]
    assert np.abs(np.diff(rows, 2)).max() < 3 * np.abs(np.diff(image[30:50, 60], 2)).max() + 0.05
    # With the sources at the very edge of the data no pixel of data is tapered.
    filled, same = apodise(np.where(valid, image, 0), valid, valid)
    np.testing.assert_array_equal(same, valid)
    np.testing.assert_array_equal(filled[valid], image[valid])


def test_sign_convention_matches_skimage():
    truth = _smooth_object(2)
    moved = _circular_shift(truth, (2.0, -3.0))  # content moved down 2, left 3
    expected, _, _ = phase_cross_correlation(truth, moved, upsample_factor=10)
    result = register(moved, truth, _central_region())
    np.testing.assert_allclose(result.shift_yx, expected, atol=0.05)
    np.testing.assert_allclose(result.shift_yx, (-2.0, 3.0), atol=0.05)


@pytest.mark.parametrize("correlate_on", ["complex", "amplitude"])
@pytest.mark.parametrize("shift", [(2.0, -3.0), (1.3, -0.7), (-2.45, 3.21)])
def test_known_shift_recovered(shift, correlate_on):
    truth = _smooth_object(3)
    moved = _circular_shift(truth, shift)
    region = _central_region()
    result = register(moved, truth, region, correlate_on=correlate_on)
    np.testing.assert_allclose(result.shift_yx, -np.asarray(shift), atol=0.05)
    inner = ndimage.binary_erosion(region, iterations=10)
    np.testing.assert_allclose(result.aligned[inner], truth[inner], atol=0.02)
    # The whole image is shifted: data outside the region is kept (it used to be zeroed); only
    # pixels whose source left the grid or lay in the apodised rim of the data hold none.
    assert (result.aligned[~result.valid] == 0).all()
    deep = ndimage.binary_erosion(np.ones_like(region), iterations=APODISE_PX + 4, border_value=0)
    assert result.valid[deep].all()
    outside = deep & ~region
    np.testing.assert_allclose(result.aligned[outside], truth[outside], atol=0.02)


def test_shift_with_gauge_ramp_and_noise_recovered():
    rng = np.random.default_rng(4)
    truth = _smooth_object(4)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    moved = _circular_shift(truth, (1.6, 2.2)) * (0.5 - 0.2j) * np.exp(1j * (0.02 * xx - 0.01 * yy))
    moved = moved + 0.03 * (
        rng.standard_normal(moved.shape) + 1j * rng.standard_normal(moved.shape)
    )
    result = register(moved, truth, _central_region())
    np.testing.assert_allclose(result.shift_yx, (-1.6, -2.2), atol=0.05)
    assert result.gauge.phase_ramp_x_rad_per_px == pytest.approx(0.02, abs=1e-3)
    assert result.gauge.phase_ramp_y_rad_per_px == pytest.approx(-0.01, abs=1e-3)


def test_gauge_and_ramp_removed_exactly_without_shift():
    truth = _smooth_object(5)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    ramp = 0.7 + 0.05 * xx - 0.03 * yy
    factor = 0.4 * np.exp(1.1j)
    recon = factor * truth * np.exp(1j * ramp)
    region = _central_region(8)
    result = register(recon, truth, region, estimate_shift=False)
    np.testing.assert_allclose(result.aligned[region], truth[region], atol=1e-10)
    assert result.shift_yx == (0.0, 0.0)
    gauge = result.gauge
    assert gauge.phase_ramp_x_rad_per_px == pytest.approx(0.05, abs=1e-10)
    assert gauge.phase_ramp_y_rad_per_px == pytest.approx(-0.03, abs=1e-10)
    assert gauge.phase_offset_rad == pytest.approx(0.7 + 1.1, abs=1e-10)
    assert gauge.amplitude_scale == pytest.approx(1 / 0.4, rel=1e-12)
    # The applied correction is exactly what the result reports.
    applied = gauge.amplitude_scale * np.exp(
        -1j
        * (
            gauge.phase_offset_rad
            + gauge.phase_ramp_x_rad_per_px * xx
            + gauge.phase_ramp_y_rad_per_px * yy
        )
    )
    np.testing.assert_allclose(applied * factor * np.exp(1j * ramp), 1.0, atol=1e-10)


def test_large_ramp_beyond_wrapping_removed():
    truth = _smooth_object(6)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    recon = 2.0 * truth * np.exp(1j * (0.9 * xx + 0.4 * yy))  # wraps many times
    result = register(recon, truth, _central_region(8), estimate_shift=False)
    np.testing.assert_allclose(
        result.aligned[_central_region(8)], truth[_central_region(8)], atol=1e-9
    )


def test_offset_gauge_fits_the_offset_and_the_scale_only():
    truth = _smooth_object(7)
    region = _central_region()
    result = register((2 - 1j) * truth, truth, region, phase_align="offset", estimate_shift=False)
    gauge = result.gauge
    assert gauge.amplitude_scale == pytest.approx(1 / abs(2 - 1j), rel=1e-12)
    assert gauge.phase_offset_rad == pytest.approx(np.angle(2 - 1j), abs=1e-12)
    assert gauge.phase_ramp_x_rad_per_px == gauge.phase_ramp_y_rad_per_px == 0.0
    np.testing.assert_allclose(result.aligned[region], truth[region], atol=1e-12)


@pytest.mark.parametrize("retired", ["plane", "mean", "none"])
def test_gauges_that_contradict_design_are_refused(retired):
    """The existing tool's plane (a plane removed from each image separately), mean (each
    image's own mean phase) and none (one complex factor) are retired (docs/design.md)."""
    truth = _smooth_object(8)
    with pytest.raises(RegistrationError, match="phase_align"):
        register(truth, truth, _central_region(), phase_align=retired, estimate_shift=False)


# ----------------------------------------------------------------------------- the gauge


def _phase_noisy(amplitude, truth, sigma, seed=0):
    """``amplitude`` with the truth's phase plus Gaussian noise of ``sigma`` rad."""
    noise = np.random.default_rng(seed).standard_normal(truth.shape)
    return amplitude * np.exp(1j * (np.angle(truth) + sigma * noise))


def test_phase_noise_never_moves_the_amplitude_scores():
    """The amplitude scale is fitted to the amplitudes alone: with one complex factor, 0.3 and 0.6 rad of phase noise on an image
    with exactly the right amplitude scored 32.9 and 21.3 dB amplitude PSNR here (the factor
    shrinks by about exp(-sigma**2 / 2)). The amplitude scale now sees the amplitudes only."""
    truth = _smooth_object(13)
    region = _central_region()
    exact = np.abs(truth)
    noisy = exact * (1 + 0.05 * np.random.default_rng(1).standard_normal(truth.shape))
    for amplitude in (exact, noisy):
        scores = []
        for sigma in (0.3, 0.6):
            result = register(_phase_noisy(amplitude, truth, sigma), truth, region, estimate_shift=False)
            metrics = compute_metrics(result.aligned, truth, region)["amplitude"]
            scores.append({k: metrics[k] for k in ("mae", "mse", "psnr", "ssim", "ms_ssim")})
            scores[-1]["scale"] = result.gauge.amplitude_scale
        if amplitude is exact:  # only rounding left: |s * image * exp(-i plane)| to the last bits
            for score in scores:
                assert score["scale"] == pytest.approx(1.0, abs=1e-12)
                assert score["psnr"] > 250 and score["ssim"] == pytest.approx(1.0, abs=1e-12)
                assert score["mae"] < 1e-15
        else:
            for key in scores[0]:
                assert scores[0][key] == pytest.approx(scores[1][key], rel=1e-12), key
            assert 20 < scores[0]["psnr"] < 60


def test_phase_fit_is_amplitude_weighted():
    """Where the image (or the truth) is dark its phase is noise; the fit weighs each pixel's
    phase difference by |image| |truth|, so dark pixels do not pull the offset or the ramp."""
    truth = _smooth_object(14)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    rng = np.random.default_rng(14)
    image = truth * np.exp(1j * (0.4 + 0.01 * xx))
    dark = xx < SIZE // 3
    image[dark] = 1e-6 * np.exp(1j * rng.uniform(-np.pi, np.pi, int(dark.sum())))
    gauge = fit_gauge(image, truth, _central_region())
    assert gauge.phase_offset_rad == pytest.approx(0.4, abs=1e-3)
    assert gauge.phase_ramp_x_rad_per_px == pytest.approx(0.01, abs=1e-5)
    assert gauge.phase_ramp_y_rad_per_px == pytest.approx(0.0, abs=1e-5)


def test_gauge_records_every_fitted_value():
    truth = _smooth_object(15)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    image = 0.5 * truth * np.exp(1j * (0.2 + 0.003 * xx - 0.004 * yy))
    record = register(image, truth, _central_region(), estimate_shift=False).to_dict()
    gauge = record["gauge"]
    assert gauge["amplitude_scale"] == pytest.approx(2.0)
    assert gauge["phase_offset_rad"] == pytest.approx(0.2)
    assert gauge["phase_ramp_x_rad_per_px"] == pytest.approx(0.003)
    assert gauge["phase_ramp_y_rad_per_px"] == pytest.approx(-0.004)
    assert gauge["phase"] == "ramp" and gauge["fit_pixels"] == _central_region().sum()
    assert "complex_factor" not in record


def test_shift_over_limit_is_an_error_with_the_value():
    truth = _smooth_object(9)
    moved = _circular_shift(truth, (6.0, 0.0))
    with pytest.raises(RegistrationError, match=r"max_shift = 3") as info:
        register(moved, truth, _central_region(), max_shift=3)
    reported = float(re.search(r"\|shift\| = ([0-9.]+) px", str(info.value)).group(1))
    assert reported == pytest.approx(6.0, abs=0.2)  # first, unrefined estimate


def test_masked_region_ignores_uncovered_zeros():
    # A spiral-like irregular region: the reconstruction is zero outside it.
    truth = _smooth_object(10)
    rng = np.random.default_rng(10)
    positions = rng.uniform(40, 88, (30, 2))
    region = scanned_region(positions, 24, truth.shape)
    moved = np.where(region, _circular_shift(truth, (-1.4, 0.8)), 0)
    result = register(moved, truth, region)
    np.testing.assert_allclose(result.shift_yx, (1.4, -0.8), atol=0.05)


def test_bad_inputs_are_errors():
    truth = _smooth_object(11)
    region = _central_region()
    with pytest.raises(RegistrationError, match="empty"):
        register(truth, truth, np.zeros_like(region))
    with pytest.raises(RegistrationError, match="NaN"):
        bad = truth.copy()
        bad[64, 64] = np.nan
        register(bad, truth, region)
    with pytest.raises(RegistrationError, match="zero over the region"):
        register(np.zeros_like(truth), truth, region, estimate_shift=False)
    with pytest.raises(RegistrationError, match="phase_align"):
        register(truth, truth, region, phase_align="planes")
    with pytest.raises(RegistrationError, match="shape"):
        register(truth[:-1], truth, region)


def test_to_dict_is_json_ready():
    import json

    truth = _smooth_object(12)
    result = register(1j * truth, truth, _central_region())
    text = json.dumps(result.to_dict())
    assert '"shift_yx_px"' in text and '"gauge"' in text and '"amplitude_scale"' in text


# ----------------------------------------------------------------------------- shifts and noise


def _with_phase_noise(image, sigma, seed):
    """``image * exp(i * noise)``: pixel-white Gaussian phase noise of ``sigma`` rad."""
    return image * np.exp(1j * sigma * np.random.default_rng(seed).standard_normal(image.shape))


def _amplitude_scores(result, truth, region):
    metrics = compute_metrics(result.aligned, truth, region)["amplitude"]
    return {key: metrics[key] for key in ("mae", "psnr", "ssim", "ms_ssim")}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_phase_noise_alone_moves_no_shift_and_no_amplitude_score(seed):
    """truth * exp(i noise) has exactly the truth's amplitude. Complex correlation measured
    0.01-0.12 px shifts from 0.3-1 rad of phase noise here, and Fourier-shifting the noisy field
    by them cost amplitude PSNR (inf -> 58/48/51 dB at 0.3 rad, 43/33/41 at 0.6, 32/24/40 at
    1 rad for seeds 0/1/2). Now the measured shift is recorded, found within its noise, and not
    applied: nothing is resampled and the amplitude scores are those without noise."""
    truth = _smooth_object(13)
    region = _central_region()
    for sigma in (0.3, 0.6, 1.0):
        noisy = _with_phase_noise(truth, sigma, seed)
        for correlate_on in ("complex", "amplitude"):
            result = register(noisy, truth, region, correlate_on=correlate_on)
            scores = _amplitude_scores(result, truth, region)
            assert scores["psnr"] > 250 and scores["mae"] < 1e-14, (sigma, correlate_on, scores)
            assert scores["ssim"] == pytest.approx(1.0, abs=1e-12)
            assert scores["ms_ssim"] == pytest.approx(1.0, abs=1e-12)
            # No resampling: the aligned amplitude is the input's, scaled by 1 to rounding.
            np.testing.assert_allclose(np.abs(result.aligned[region]), np.abs(truth[region]), rtol=1e-13)
            assert result.shift.shift_yx == (0.0, 0.0) and not result.shift.applied, result.shift.reason
            assert "not applied" in result.shift.reason
        # The compare job's way: estimate, then register with the estimate's shift.
        from compare_models.imaging.registration import estimate_shift

        estimate = estimate_shift(noisy, truth, region)
        assert estimate.measured_shift_yx is not None and not estimate.applied
        piped = register(noisy, truth, region, shift_yx=estimate.shift_yx, estimate_shift=False)
        np.testing.assert_array_equal(piped.aligned, register(noisy, truth, region).aligned)


@pytest.mark.parametrize("sigma", [0.0, 0.3, 0.6, 1.0])
def test_a_real_subpixel_shift_under_phase_noise_is_found_and_applied(sigma):
    """A known (0.37, -0.61) px displacement is measured within its stated precision, applied,
    and the amplitude comes back: 70, 70, 66 and 56 dB amplitude PSNR at 0, 0.3, 0.6 and 1 rad
    (the last two from the shift's own error). Shifting the complex field scored 85, 26, 18.5
    and 14 dB: it mixed the phase noise into the amplitude."""
    truth = _smooth_object(13)
    region = _central_region()
    moved = _with_phase_noise(_circular_shift(truth, (0.37, -0.61)), sigma, seed=0)
    result = register(moved, truth, region)
    assert _amplitude_scores(result, truth, region)["psnr"] > 55
    shift = result.shift
    assert shift.applied and shift.shift_yx == shift.measured_shift_yx, shift.reason
    error = np.abs(np.asarray(shift.measured_shift_yx) - (-0.37, 0.61))
    assert (error <= 3 * np.asarray(shift.precision_yx) + 0.01).all(), (shift.measured_shift_yx, shift.precision_yx)


def test_with_one_shift_applied_phase_noise_moves_no_amplitude_score():
    """The amplitude is shifted as an amplitude: given the same shift, the aligned amplitude is
    the same with and without phase noise (to rounding). Shifting the complex field gave 84,
    26, 18.5 and 14.5 dB amplitude PSNR at 0, 0.3, 0.6 and 1 rad; now 70 dB at every level."""
    truth = _smooth_object(13)
    region = _central_region()
    moved = _circular_shift(truth, (1.37, -0.61))
    reference = register(moved, truth, region, shift_yx=(-1.37, 0.61))
    base = _amplitude_scores(reference, truth, region)
    assert base["psnr"] > 60
    for sigma in (0.3, 0.6, 1.0):
        result = register(_with_phase_noise(moved, sigma, seed=3), truth, region, shift_yx=(-1.37, 0.61))
        np.testing.assert_allclose(np.abs(result.aligned), np.abs(reference.aligned), rtol=1e-12, atol=1e-13)
        for key, value in _amplitude_scores(result, truth, region).items():
            assert value == pytest.approx(base[key], rel=1e-9), key


def test_the_stated_standard_error_is_the_spread_of_the_estimates():
    """Monte Carlo: 20 phase-noise draws per level; the measured shifts scatter around zero as
    the stated standard error says, or less (the threshold is only as good as this; measured:
    spread / stated 0.85-1.15 at 0.3 rad, 0.73-0.76 at 1 rad)."""
    from compare_models.imaging.registration import estimate_shift

    truth = _smooth_object(13, size=64)
    region = _central_region(8, size=64)
    for sigma in (0.3, 1.0):
        measured, stated = [], []
        for seed in range(20):
            noisy = _with_phase_noise(truth, sigma, 100 + seed)
            estimate = estimate_shift(noisy, truth, region)
            measured.append(estimate.measured_shift_yx)
            stated.append(estimate.standard_error_yx)
        ratio = np.std(measured, axis=0) / np.median(stated, axis=0)
        assert ((0.5 < ratio) & (ratio < 1.5)).all(), (sigma, ratio)
        assert np.abs(np.mean(measured, axis=0)).max() < 3 * np.median(stated) / np.sqrt(20) + 0.01


def test_a_shift_below_the_grid_is_not_resampled_and_the_record_says_why():
    """Without noise the precision is the upsampled grid's rounding, 1 / (u sqrt 12) px: a
    0.004 px displacement measures 0 or one grid step (0.01 px at u = 100) and is not applied;
    0.03 px is. The record names the upsample factor, the verdict and the reason."""
    import json
    import math

    from compare_models.imaging.registration import SHIFT_RULE, estimate_shift

    truth = _smooth_object(17)
    region = _central_region()
    small = estimate_shift(_circular_shift(truth, (0.004, 0.0)), truth, region)
    assert not small.applied and small.shift_yx == (0.0, 0.0)
    assert small.precision_yx[0] == pytest.approx(1 / (100 * math.sqrt(12)), rel=1e-3)
    large = estimate_shift(_circular_shift(truth, (0.03, 0.0)), truth, region)
    assert large.applied and large.shift_yx == pytest.approx((-0.03, 0.0), abs=0.011)
    record = json.loads(json.dumps(large.to_dict(), allow_nan=False))
    assert record["applied"] is True and record["upsample_factor"] == 100
    assert record["significance_threshold"] == pytest.approx(math.sqrt(-2 * math.log(1e-3)))
    assert record["significance"] > record["significance_threshold"]
    assert record["rule"] == SHIFT_RULE and "applied" in record["reason"]
    assert record["measured_shift_yx_px"] == pytest.approx([-0.03, 0.0], abs=0.011)
    # A stricter test (a smaller false-alarm rate) needs more evidence.
    strict = estimate_shift(_circular_shift(truth, (0.03, 0.0)), truth, region, significance_level=1e-300)
    assert not strict.applied and "not applied" in strict.reason
    with pytest.raises(RegistrationError, match="significance_level"):
        estimate_shift(truth, truth, region, significance_level=1.0)
