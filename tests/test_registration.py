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
from compare_models.imaging.registration import fourier_shift_image, register, scanned_region

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
    assert (result.aligned[~region] == 0).all()


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
    assert result.phase_ramp["d_dx_rad_per_px"] == pytest.approx(0.02, abs=1e-3)
    assert result.phase_ramp["d_dy_rad_per_px"] == pytest.approx(-0.01, abs=1e-3)


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
    assert result.phase_ramp["d_dx_rad_per_px"] == pytest.approx(0.05, abs=1e-10)
    assert result.phase_ramp["d_dy_rad_per_px"] == pytest.approx(-0.03, abs=1e-10)
    # The applied correction is exactly what the result reports.
    applied = result.complex_factor * np.exp(
        -1j
        * (
            result.phase_ramp["offset_rad"]
            + result.phase_ramp["d_dx_rad_per_px"] * xx
            + result.phase_ramp["d_dy_rad_per_px"] * yy
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


def test_phase_align_none_fits_only_the_complex_factor():
    truth = _smooth_object(7)
    region = _central_region()
    result = register((2 - 1j) * truth, truth, region, phase_align="none", estimate_shift=False)
    assert result.complex_factor == pytest.approx(1 / (2 - 1j))
    assert result.phase_ramp == {"offset_rad": 0.0, "d_dx_rad_per_px": 0.0, "d_dy_rad_per_px": 0.0}
    np.testing.assert_allclose(result.aligned[region], truth[region], atol=1e-12)


def test_mean_and_plane_modes_match_existing_tool_differences():
    truth = _smooth_object(8)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    recon = 3.0 * truth * np.exp(1j * (0.2 + 0.004 * xx))
    region = _central_region()
    r, t = recon[region], truth[region]
    for mode in ("mean", "plane"):
        result = register(recon, truth, region, phase_align=mode, estimate_shift=False)
        amp = np.abs(result.aligned[region])
        np.testing.assert_allclose(amp, np.abs(r) * np.abs(t).mean() / np.abs(r).mean())
        diff = np.angle(result.aligned[region]) - np.angle(t)
        if mode == "mean":
            # existing tool: (phi_r - mean phi_r) - (phi_t - mean phi_t)
            expected = (np.angle(r) - np.angle(r).mean()) - (np.angle(t) - np.angle(t).mean())
        else:
            expected = np.zeros_like(diff)  # the ramp is a plane: the planes differ by it
        wrapped = np.angle(np.exp(1j * (diff - expected)))
        np.testing.assert_allclose(wrapped, 0.0, atol=1e-9)


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
    assert '"shift_yx_px"' in text and '"phase_ramp"' in text
