"""Scoring on one footing (every arm on one region, one gauge, one data range): compare's evaluate() on synthetic arms with known answers.

No networks here: the arms are images with valid masks, as the compare job hands them over.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import ndimage

from compare_models.imaging.geometry import extract_patches
from compare_models.imaging.metrics import compute_metrics
from compare_models.imaging.region import scan_hull, scanned_region
from compare_models.imaging.stitching import stitch
from compare_models.pipelines.compare import CompareConfig, evaluate
from compare_models.pipelines.compare_arms import time_excluding_compile
from compare_models.report.documents import metric_rows
from compare_models.report.records import ArmImage

SIZE = 112
N = 16


def _band_limited(seed, size=SIZE, cutoff=0.2):
    """A periodic complex object whose spectrum stops at ``cutoff`` cycles/pixel (0.4 of
    Nyquist): a Fourier shift of it is an exact translation."""
    rng = np.random.default_rng(seed)
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij"))

    def field():
        spectrum = np.fft.fft2(rng.standard_normal((size, size))) * (k < cutoff) * np.exp(-((k / 0.1) ** 2))
        f = np.fft.ifft2(spectrum).real
        return f / f.std()

    return (1 + 0.2 * field()) * np.exp(0.7j * field())


def _circular_shift(image, shift_yx):
    return np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(image), shift_yx))


def _positions(seed=0, step=4.0, jitter=0.4):
    rng = np.random.default_rng(seed)
    values = np.arange(24.0, SIZE - 24.0 + 1e-9, step)
    xx, yy = np.meshgrid(values, values)
    positions = np.stack([xx.ravel(), yy.ravel()], axis=1)
    return positions + rng.uniform(-jitter, jitter, positions.shape)


def _config(**changes):
    return CompareConfig(test_data="test.npz", output_dir="out", **changes)


def _arm(key, image, valid, seconds=1.0):
    timings = {"ptychi.reconstruction": seconds} if key == "ptychi" else {
        f"{key}.predict_stitch": seconds, f"{key}.stitch_finish": 0.0, f"{key}.predict_stitch_compile": 0.75,
    }
    return ArmImage(key, np.asarray(image, np.complex64), np.asarray(valid, bool), timings, {})


def test_a_perfect_image_displaced_sub_pixel_scores_near_perfect():
    """A shifted image is scored on its own data: a perfect image displaced by (2.3, -1.7) px once scored 37 dB amplitude PSNR,
    because the image was zeroed outside the region and edge-filled before shifting.

    Bound: 60 dB is an RMS error of 0.1 % of the truth's range. The shift is recovered to its
    1/100 px precision (here exactly: the shift is on that grid), and the Fourier shift of a
    band-limited image is exact but for the edge of the data, whose kink would ring along sinc
    tails falling off only as 1/distance (61 dB here with a nearest-pixel fill); the edge is
    apodised outside the scored pixels' sources, which leaves about 81 dB (the amplitude is
    shifted as an amplitude; 86 dB when the complex field was shifted). Registration then
    costs well under 0.1 % of the range, instead of the 1.4 % (37 dB) it cost.
    """
    truth = _band_limited(1)
    positions = _positions()
    footprint = scanned_region(positions, N, truth.shape)
    displaced = np.where(footprint, _circular_shift(truth, (2.3, -1.7)), 0)
    result = evaluate([_arm("ptychi", displaced, footprint)], truth, positions, _config())
    entry = result.arms["PtyChi"]
    assert entry.registration["shift_yx_px"] == pytest.approx([-2.3, 1.7], abs=1e-9)
    for part in ("amplitude", "phase"):
        assert entry.metrics[part]["psnr"] > 60, part
        assert entry.metrics[part]["ssim"] > 0.9999, part
    info = result.region_info
    assert info["largest_shift_px"] == pytest.approx(np.hypot(2.3, 1.7))
    assert info["erosion_px"] == 3 + 2 and info["margin_px"] == 2


def _stitched_truth(truth, positions, crop, patch_size=N):
    patches = extract_patches(truth, positions, patch_size)
    image, weights = stitch(patches, positions, truth.shape, crop=crop, backend="numpy")
    return image, weights > 0


@pytest.mark.parametrize(("patch_size", "crops"), [(16, (10, 14)), (32, (16, 20))])
def test_the_region_does_not_depend_on_the_stitching_crop(patch_size, crops):
    """The scored region does not depend on an arm's own settings: it was once the union of the networks' crop windows, so changing
    --stitch-crop-size moved pty-chi's FRC50 (0.61 to 0.46 on the demo) though its image was
    the same. Now it is the scan's hull where every arm has data: the same for any crop that
    covers the hull, and pty-chi's numbers are identical."""
    truth = _band_limited(2)
    positions = _positions(seed=2)
    rng = np.random.default_rng(2)
    ptychi = 0.8 * np.exp(0.3j) * truth + 0.02 * (rng.standard_normal(truth.shape) + 1j * rng.standard_normal(truth.shape))
    ptychi_valid = np.ones(truth.shape, bool)
    runs = {}
    for crop in crops:
        image, valid = _stitched_truth(truth, positions, crop, patch_size)
        arms = [_arm("pinn", image, valid), _arm("ptychi", ptychi, ptychi_valid)]
        runs[crop] = evaluate(arms, truth, positions, _config(stitch_crop_size=crop, register_ptychi_only=True))
    first, second = (runs[crop] for crop in crops)
    # The stitched images differ (their valid masks too) ...
    assert not np.array_equal(first.aligned["PtychoPINN"], second.aligned["PtychoPINN"])
    # ... but the region and every pty-chi number are the same.
    np.testing.assert_array_equal(first.region, second.region)
    assert first.region_info == second.region_info
    assert first.arms["PtyChi"].metrics == second.arms["PtyChi"].metrics
    assert first.arms["PtyChi"].registration == second.arms["PtyChi"].registration
    assert first.region_info["hull_lost_fraction"] == {"PtychoPINN": 0.0, "PtyChi": 0.0}
    assert first.region_info["n_pixels"] < scan_hull(positions, truth.shape).sum()


def test_missing_data_never_scores():
    """Missing data never scores: zeroing 30 % of the region once improved phase MAE (0.401 to 0.282), since a
    zero scored as phase 0. A zero has no phase: it is missing data, and it shrinks the region
    for every arm (the output says by how much) instead of scoring."""
    truth = _band_limited(3)
    positions = _positions(seed=3)
    rng = np.random.default_rng(3)
    noisy = truth * (1 + 0.1 * rng.standard_normal(truth.shape)) * np.exp(0.4j * rng.standard_normal(truth.shape))
    valid = np.ones(truth.shape, bool)
    alone = evaluate([_arm("pinn", noisy, valid)], truth, positions, _config(skip_registration=True))
    hull = scan_hull(positions, truth.shape)
    zeroed = noisy.copy()
    rows = np.flatnonzero(hull.any(axis=1))
    cut = rows[0] + int(0.3 * rows.size)
    zeroed[: cut] = 0  # the top 30 % of the hull's rows; the stitched weight there is still > 0
    both = evaluate(
        [_arm("pinn", noisy, valid), _arm("baseline", zeroed, valid)], truth, positions, _config(skip_registration=True)
    )
    lost = both.region_info["hull_lost_fraction"]
    assert lost["PtychoPINN"] == 0.0
    assert lost["Baseline"] == pytest.approx(hull[:cut].sum() / hull.sum())
    assert 0.25 < lost["Baseline"] < 0.35
    assert not both.region[:cut].any()
    assert both.region_info["n_pixels"] < 0.75 * alone.region_info["n_pixels"]
    # The zeroed arm scores exactly as the intact one on the shared region ...
    assert both.arms["Baseline"].metrics["phase"]["mae"] == pytest.approx(
        both.arms["PtychoPINN"].metrics["phase"]["mae"], rel=1e-6
    )
    # ... and not better than the intact image scored on its whole region.
    before = alone.arms["PtychoPINN"].metrics["phase"]["mae"]
    after = both.arms["Baseline"].metrics["phase"]["mae"]
    assert after == pytest.approx(before, rel=0.05)
    rows_csv = {(r[0], r[1]): r for r in metric_rows(both)}
    assert rows_csv[("Baseline", "hull_lost_fraction")][4] == pytest.approx(lost["Baseline"])


def test_gauge_and_region_are_recorded_per_model_and_in_the_csv():
    truth = _band_limited(4)
    positions = _positions(seed=4)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    image = 1.7 * truth * np.exp(1j * (0.5 + 0.002 * xx - 0.001 * yy))
    result = evaluate([_arm("ptychi", image, np.ones(truth.shape, bool))], truth, positions, _config(skip_registration=True))
    gauge = result.arms["PtyChi"].registration["gauge"]
    assert gauge["amplitude_scale"] == pytest.approx(1 / 1.7, rel=1e-6)
    assert gauge["phase_offset_rad"] == pytest.approx(0.5, abs=1e-5)
    assert gauge["phase_ramp_x_rad_per_px"] == pytest.approx(0.002, abs=1e-7)
    assert gauge["phase_ramp_y_rad_per_px"] == pytest.approx(-0.001, abs=1e-7)
    rows = {r[1]: r for r in metric_rows(result) if r[0] == "PtyChi"}
    assert rows["gauge_amplitude_scale"][4] == pytest.approx(gauge["amplitude_scale"])
    assert rows["gauge_phase_ramp_x_rad_per_px"][4] == pytest.approx(0.002, abs=1e-7)
    # The region's box (about 60 px a side) holds 3 scales; the CSV says so beside the value.
    assert rows["ms_ssim_scales"][2:4] == (3, 3)
    assert result.arms["PtyChi"].metrics["amplitude"]["ms_ssim_scales"] == 3
    assert rows["data_range"][2] == pytest.approx(result.arms["PtyChi"].metrics["amplitude"]["data_range"])
    assert rows["region_pixels"][4] == result.region_info["n_pixels"]
    assert "frc_1bit" not in {r[1] for r in metric_rows(result)}
    assert result.rules["gauge"]["phase_align_method"] == "ramp"
    assert "0.5 threshold" in result.rules["frc"]["resolution"]


def test_scored_metrics_equal_the_metrics_of_the_aligned_image_on_the_region():
    """evaluate() adds no metric of its own: it is compute_metrics on the scored region."""
    truth = _band_limited(5)
    positions = _positions(seed=5)
    result = evaluate([_arm("ptychi", 0.9 * truth, np.ones(truth.shape, bool))], truth, positions, _config())
    again = compute_metrics(result.aligned["PtyChi"], truth, result.region)
    assert result.arms["PtyChi"].metrics["amplitude"]["ssim"] == again["amplitude"]["ssim"]


def test_computation_time_excludes_a_deliberate_compile():
    """computation_time_s is without one-off compilation (it once included the XLA compile). A first call
    that is much slower (a compile) is timed apart."""
    calls = []

    def kernel():
        calls.append(None)
        time.sleep(0.4 if len(calls) == 1 else 0.01)  # the first call compiles
        return len(calls)

    result, run_s, compile_s = time_excluding_compile(kernel, kernel)
    assert result == 3
    assert run_s < 0.2
    assert compile_s == pytest.approx(0.39, abs=0.1)
    arms = [_arm("pinn", np.ones((4, 4)), np.ones((4, 4), bool), seconds=0.2)]
    result = evaluate(arms, None, _positions(), _config())
    entry = result.arms["PtychoPINN"]
    assert entry.computation_time_s == pytest.approx(0.2)  # inference + stitch, warm
    assert entry.compile_time_s == pytest.approx(0.75)
