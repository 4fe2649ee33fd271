"""The simulator against independent truths: Parseval, the dose, slicing, seeds, the split."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compare_models.errors import ConfigError
from compare_models.imaging.geometry import extract_patches, scan_canvas_shape
from compare_models.io.dispatch import load_dataset
from compare_models.pipelines.simulate import run_simulate
from compare_models.study.simulator import SimulationConfig, far_field_amplitude, simulate_dataset

SMALL = dict(patch_size=16, object_size=64, scan_step=4)


def test_noiseless_amplitudes_satisfy_parseval():
    dataset = simulate_dataset(SimulationConfig(**SMALL, poisson_noise=False, scan="jittered"))
    exit_waves = dataset.probe.astype(np.complex128) * dataset.patches_truth
    detector = np.square(dataset.diffraction_amplitude, dtype=np.float64).sum(axis=(1, 2))
    sample = np.square(np.abs(exit_waves)).sum(axis=(1, 2))
    np.testing.assert_allclose(detector, sample, rtol=1e-5)
    # And the amplitudes are the modulus of the centred, orthonormal FFT of the exit wave.
    np.testing.assert_allclose(
        dataset.diffraction_amplitude, far_field_amplitude(exit_waves), rtol=1e-4, atol=1e-4
    )


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
    assert train.n_positions + test.n_positions == whole.n_positions
    train_set = {tuple(p) for p in train.positions_xy}
    assert not train_set & {tuple(p) for p in test.positions_xy}
    middle = whole.object_truth.shape[0] / 2
    assert train.positions_xy[:, 1].max() < middle <= test.positions_xy[:, 1].min()
    assert train.metadata["split"] == "train" and test.metadata["split"] == "test"


@pytest.mark.parametrize(
    "change",
    [dict(patch_size=15), dict(dose=0), dict(scan="spiral"), dict(overlap=1.0), dict(amplitude_image="nope")],
)
def test_bad_settings_are_refused(change):
    with pytest.raises(ConfigError):
        SimulationConfig(**{**SMALL, **change}).validate()
