"""The simulator against independent truths: Parseval, the dose, slicing, seeds, the split,
and the ground-truth patches a perfect network predicts. (Its agreement with pty-chi's own
forward model is in test_forward_model.py.)"""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.metrics import structural_similarity

from compare_models.config import read_yaml_section
from compare_models.errors import ConfigError
from compare_models.imaging.geometry import (
    extract_patches,
    fourier_shift,
    integer_crops,
    object_patches,
    scan_canvas_shape,
    split_nearest,
)
from compare_models.imaging.stitching import stitch
from compare_models.io.dispatch import load_dataset
from compare_models.pipelines.compare import CompareConfig, resolve_crop
from compare_models.pipelines.simulate import run_simulate
from compare_models.study.simulator import (
    SimulationConfig,
    exit_waves,
    far_field_amplitude,
    make_scan,
    simulate_dataset,
)

SMALL = dict(patch_size=16, object_size=64, scan_step=4)
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_noiseless_amplitudes_satisfy_parseval():
    dataset = simulate_dataset(SimulationConfig(**SMALL, poisson_noise=False, scan="jittered"))
    waves = exit_waves(dataset.object_truth, dataset.probe, dataset.positions_xy)
    detector = np.square(dataset.diffraction_amplitude, dtype=np.float64).sum(axis=(1, 2))
    sample = np.square(np.abs(waves)).sum(axis=(1, 2))
    np.testing.assert_allclose(detector, sample, rtol=1e-5)
    # And the amplitudes are the modulus of the centred, orthonormal FFT of the exit wave.
    np.testing.assert_allclose(dataset.diffraction_amplitude, far_field_amplitude(waves), rtol=1e-5, atol=1e-5)


def test_exit_wave_is_probe_shifted_over_integer_crop():
    """Independent of geometry's helpers: a plane-wave probe and a plane-wave object, both
    periodic over the window, whose Fourier shift is exact; the exit wave at a sub-pixel x is
    the crop at round(x) - N/2 times the probe moved by x - round(x)."""
    n_side, size = 16, 48
    rows, cols = np.mgrid[0:size, 0:size]
    obj = np.exp(2j * np.pi * (3 * cols - 2 * rows) / n_side)
    i, j = np.mgrid[0:n_side, 0:n_side]
    probe = np.exp(2j * np.pi * (1 * j + 2 * i) / n_side)
    pos = np.array([[20.3, 23.5], [24.5, 20.7]])  # 23.5 -> 24 and 24.5 -> 24: half to even
    waves = exit_waves(obj, probe, pos)
    for k, (x, y) in enumerate(pos):
        kx, ky = np.round(x), np.round(y)
        crop = obj[int(ky) - 8 : int(ky) + 8, int(kx) - 8 : int(kx) + 8]
        moved = np.exp(2j * np.pi * (1 * (j - (x - kx)) + 2 * (i - (y - ky))) / n_side)
        np.testing.assert_allclose(waves[k], moved * crop, atol=1e-12)


def test_ground_truth_patches_are_the_object_seen_from_the_true_position():
    """Y[i, j] = O(y - N/2 + i, x - N/2 + j) for an object whose band-limited interpolation is
    known (a plane wave periodic over the window), and the exact crop at integer positions."""
    dataset = simulate_dataset(SimulationConfig(**SMALL, scan="jittered", jitter=0.7, poisson_noise=False))
    np.testing.assert_array_equal(
        dataset.patches_truth, object_patches(dataset.object_truth, dataset.positions_xy, 16)
    )
    n_side, size = 16, 48
    rows, cols = np.mgrid[0:size, 0:size]
    obj = np.exp(2j * np.pi * (3 * cols - 5 * rows) / n_side)
    pos = np.random.default_rng(3).uniform(9, 38, (25, 2))
    i, j = np.mgrid[0:n_side, 0:n_side]
    want = np.exp(
        2j * np.pi * (3 * (pos[:, 0, None, None] - 8 + j) - 5 * (pos[:, 1, None, None] - 8 + i)) / n_side
    )
    np.testing.assert_allclose(object_patches(obj, pos, n_side), want, atol=1e-12)
    whole = np.round(pos)
    np.testing.assert_array_equal(object_patches(obj, whole, n_side), extract_patches(obj, whole, n_side))


def test_ground_truth_patches_carry_the_data():
    """The exit wave seen from the probe's centre (Y's frame) has the data's far-field modulus
    (shift theorem); probe * Y equals it only approximately at sub-pixel positions."""
    dataset = simulate_dataset(SimulationConfig(**SMALL, scan="jittered", poisson_noise=False))
    _, residual = split_nearest(dataset.positions_xy, 16)
    waves = exit_waves(dataset.object_truth, dataset.probe, dataset.positions_xy)
    np.testing.assert_allclose(
        far_field_amplitude(fourier_shift(waves, -residual)), dataset.diffraction_amplitude, rtol=1e-5, atol=1e-5
    )
    crops = integer_crops(dataset.object_truth, split_nearest(dataset.positions_xy, 16)[0], 16)
    np.testing.assert_allclose(fourier_shift(dataset.patches_truth, residual), crops, atol=2e-6)


def _masked_ssim(image, truth, covered):
    """Mean SSIM (skimage, 7 x 7 windows, data range = the truth's range over the covered
    pixels) over the covered pixels whose whole window is covered."""
    from scipy.ndimage import binary_erosion

    inner = binary_erosion(covered, np.ones((7, 7), bool))
    data_range = float(truth[covered].max() - truth[covered].min())
    _, ssim_map = structural_similarity(image, truth, data_range=data_range, full=True)
    return float(ssim_map[inner].mean())


@pytest.mark.parametrize("name", ["demo.yaml", "dose_sweep.yaml", "paper_scale.yaml"])
def test_recorded_patches_stitch_back_to_the_object(name):
    """Y is what a perfect network predicts: stitched by compare-models' stitcher with its
    defaults (Fourier interpolation, the default --stitch-crop-size) and with the config's own
    crop, on the config's test scan, it gives the object back (SSIM >= 0.99; in fact to
    float32 rounding)."""
    config = SimulationConfig(**{**read_yaml_section(CONFIGS / name, "simulate"), "poisson_noise": False, "split": None})
    dataset = simulate_dataset(config)
    obj = dataset.object_truth
    default_crop = resolve_crop(CompareConfig(test_data="-", output_dir="-", pinn_dir="-"), dataset.patch_size)
    own_crop = read_yaml_section(CONFIGS / name, "compare").get("stitch_crop_size")
    for crop in {default_crop, own_crop}:
        image, weights = stitch(dataset.patches_truth, dataset.positions_xy, obj.shape, crop=crop)
        covered = weights > 0
        assert covered.mean() > 0.6
        for part in (np.abs, np.angle):
            assert _masked_ssim(part(image), part(obj), covered) >= 0.99, (crop, part.__name__)
        assert np.abs(image - obj)[covered].max() < 1e-4


@pytest.mark.parametrize("name", ["demo.yaml", "dose_sweep.yaml", "paper_scale.yaml"])
def test_shipped_test_scans_leave_room_for_five_ms_ssim_scales(name):
    """Five MS-SSIM scales need at least 161 px per side; the scored region is the scan's hull
    eroded by the registration margin (up to about 10 px a side)."""
    config = SimulationConfig(**read_yaml_section(CONFIGS / name, "simulate")).validate()
    positions = make_scan(config, np.random.default_rng(config.seed))
    hull_side = np.ptp(positions, axis=0).min()
    assert hull_side - 2 * 10 >= 161


def test_zero_frequency_sits_at_the_centre():
    dataset = simulate_dataset(SimulationConfig(**SMALL, poisson_noise=False))
    mean_pattern = dataset.diffraction_amplitude.mean(axis=0)
    n = dataset.patch_size
    assert np.unravel_index(np.argmax(mean_pattern), mean_pattern.shape) == (n // 2, n // 2)


@pytest.mark.parametrize("dose, step", [(1e2, 1), (1e4, 4), (1e6, 4)])
def test_measured_dose_within_one_percent(dose, step):
    # Poisson scatter of the mean is sqrt(dose / M): at 100 photons the 1% bound needs
    # M >> 100 patterns to hold at 3 sigma, hence the dense scan (M = 2304).
    dataset = simulate_dataset(SimulationConfig(**{**SMALL, "scan_step": step}, dose=dose, seed=1))
    assert 3 * np.sqrt(dose / dataset.n_positions) < 0.01 * dose
    assert dataset.measured_dose == pytest.approx(dose, rel=0.01)
    assert dataset.metadata["dose_measured"] == pytest.approx(dataset.measured_dose)
    assert dataset.metadata["dose_nominal"] == dose


def test_poisson_counts_are_integers():
    dataset = simulate_dataset(SimulationConfig(**SMALL, dose=500))
    counts = np.square(dataset.diffraction_amplitude.astype(np.float64))
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-3)


def test_same_seed_same_arrays_other_seed_differs():
    a = simulate_dataset(SimulationConfig(**SMALL, scan="jittered", seed=5))
    b = simulate_dataset(SimulationConfig(**SMALL, scan="jittered", seed=5))
    c = simulate_dataset(SimulationConfig(**SMALL, scan="jittered", seed=6))
    np.testing.assert_array_equal(a.diffraction_amplitude, b.diffraction_amplitude)
    np.testing.assert_array_equal(a.positions_xy, b.positions_xy)
    assert not np.array_equal(a.positions_xy, c.positions_xy)


def test_integer_patch_extraction_equals_slicing():
    rng = np.random.default_rng(0)
    obj = rng.normal(size=(40, 50)) + 1j * rng.normal(size=(40, 50))
    positions = np.array([[8, 8], [42, 32], [20, 17]], dtype=float)
    patches = extract_patches(obj, positions, 16)
    for (x, y), patch in zip(positions.astype(int), patches, strict=True):
        np.testing.assert_array_equal(patch, obj[y - 8 : y + 8, x - 8 : x + 8])


def test_half_pixel_extraction_is_the_neighbour_average():
    obj = np.arange(30 * 30, dtype=float).reshape(30, 30)
    patch = extract_patches(obj, np.array([[10.5, 12.0]]), 8)[0]
    expected = 0.5 * (obj[8:16, 6:14] + obj[8:16, 7:15])
    np.testing.assert_allclose(patch, expected)


def test_extraction_refuses_patches_outside():
    with pytest.raises(ValueError, match="leaves the object"):
        extract_patches(np.zeros((20, 20)), np.array([[17.0, 10.0]]), 8)


@settings(max_examples=25, deadline=None)
@given(
    n_half=st.integers(2, 8),
    xs=st.lists(st.floats(0, 40, allow_nan=False), min_size=1, max_size=20),
)
def test_canvas_shape_holds_every_patch(n_half, xs):
    n = 2 * n_half
    positions = np.stack([np.array(xs) + n / 2, np.array(xs)[::-1] + n / 2], axis=1)
    height, width = scan_canvas_shape(positions, n)
    patches = extract_patches(np.ones((height, width)), positions, n)
    assert patches.shape == (len(xs), n, n)


@pytest.mark.parametrize("scan", ["grid", "jittered", "random"])
def test_scans_stay_inside_the_object(scan):
    dataset = simulate_dataset(SimulationConfig(**SMALL, scan=scan, jitter=3.0))
    n, size = dataset.patch_size, dataset.object_truth.shape[0]
    assert dataset.positions_xy.min() >= n / 2
    assert dataset.positions_xy.max() <= size - n / 2 - 1


def test_split_files_share_no_position(tmp_path):
    config = SimulationConfig(**SMALL, scan="jittered", seed=2)
    written = run_simulate(config, tmp_path / "sim.npz", split="y")
    train, test = load_dataset(written["train"]), load_dataset(written["test"])
    whole = simulate_dataset(config)
    y = whole.positions_xy[:, 1]
    middle, half = whole.object_truth.shape[0] // 2, whole.patch_size / 2
    assert train.n_positions == (y <= middle - half).sum() and test.n_positions == (y >= middle + half).sum()
    assert train.n_positions + test.n_positions < whole.n_positions  # the guard band
    train_set = {tuple(p) for p in train.positions_xy}
    assert not train_set & {tuple(p) for p in test.positions_xy}
    assert train.positions_xy[:, 1].max() + half <= middle <= test.positions_xy[:, 1].min() - half
    assert train.metadata["split"] == "train" and test.metadata["split"] == "test"
    np.testing.assert_array_equal(train.object_truth, test.object_truth)


def test_split_objects_writes_two_objects(tmp_path):
    config = SimulationConfig(**SMALL, scan="jittered", seed=2, split="objects", train_object_size=40)
    written = run_simulate(config, tmp_path / "sim.npz")
    train, test = load_dataset(written["train"]), load_dataset(written["test"])
    np.testing.assert_array_equal(test.diffraction_amplitude, simulate_dataset(config).diffraction_amplitude)
    assert train.object_truth.shape == (40, 40)
    assert train.metadata["object"] == {"amplitude_image": "astronaut", "phase_image": "coins", "size": 40, "role": "train"}
    assert test.metadata["object"]["amplitude_image"] == "camera" and test.metadata["split_mode"] == "objects"


@pytest.mark.parametrize(
    "change",
    [
        dict(patch_size=15), dict(dose=0), dict(scan="spiral"), dict(overlap=1.0), dict(amplitude_image="nope"),
        dict(split="x"), dict(train_phase_image="nope"), dict(train_object_size=10),
        dict(split="objects", train_amplitude_image="camera"),
    ],
)
def test_bad_settings_are_refused(change):
    with pytest.raises(ConfigError):
        SimulationConfig(**{**SMALL, **change}).validate()
