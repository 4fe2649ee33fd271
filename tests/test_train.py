"""Training: the loss goes down, seeds reproduce, early stopping, the config and the CLI."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from compare_models.cli import study_main
from compare_models.config import build_config
from compare_models.errors import ConfigError, DatasetError
from compare_models.io.npz import save_dataset
from compare_models.models.baseline import build_baseline
from compare_models.models.bundle import load_bundle
from compare_models.models.inference import predict
from compare_models.models.inputs import intensity_scale
from compare_models.models.pinn import build_pinn
from compare_models.models.training import TrainConfig, evaluate_loss, split_indices, train_model
from compare_models.study.simulator import SimulationConfig, simulate_dataset, split_dataset_by_row

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY = dict(width=8, depth=3, batch_size=16, learning_rate=2e-3, validation_fraction=0.1)


@pytest.fixture(scope="module")
def dataset():
    # N = 32, 256 patterns.
    return simulate_dataset(
        SimulationConfig(patch_size=32, object_size=96, scan="jittered", scan_step=4, jitter=0.5, seed=3)
    )


def fresh_model(config, data):
    if config.model == "pinn":
        return build_pinn(32, config.gridsize, data.probe, width=config.width, depth=config.depth, seed=config.seed)
    return build_baseline(32, width=config.width, depth=config.depth, seed=config.seed)


@pytest.mark.parametrize("model, gridsize", [("pinn", 1), ("pinn", 2), ("baseline", 1)])
def test_two_epochs_lower_the_loss(dataset, model, gridsize):
    config = TrainConfig(model=model, gridsize=gridsize, epochs=2, seed=0, **TINY)
    scale = intensity_scale(dataset.diffraction_amplitude)
    before = evaluate_loss(fresh_model(config, dataset), dataset, config, intensity_scale=scale)
    result = train_model(dataset, config, progress=False)
    after = evaluate_loss(result.model, dataset, config, intensity_scale=scale)
    assert after < before, (before, after)
    assert len(result.history["loss"]) == 2 and len(result.history["val_loss"]) == 2
    assert result.intensity_scale == pytest.approx(scale)
    if model == "baseline":
        assert after < 0.9 * before


def test_same_seed_same_history_different_seed_differs(dataset):
    config = TrainConfig(model="pinn", gridsize=2, epochs=1, seed=5, width=4, depth=2, batch_size=32)
    first = train_model(dataset, config, progress=False).history
    second = train_model(dataset, config, progress=False).history
    other = train_model(dataset, dataclasses.replace(config, seed=6), progress=False).history
    assert first == second
    assert first != other


def test_early_stopping_stops_when_nothing_improves(dataset):
    # A step of 1e-30 cannot change float32 weights, so the validation loss never improves.
    config = TrainConfig(model="baseline", epochs=10, early_stopping_patience=2, learning_rate=1e-30,
                         width=4, depth=2, batch_size=64)
    history = train_model(dataset, config, progress=False).history
    assert len(history["loss"]) == 3
    assert len(set(history["val_loss"])) == 1


def test_no_validation_set(dataset):
    config = TrainConfig(model="baseline", epochs=1, validation_fraction=0.0, width=4, depth=2, batch_size=64)
    history = train_model(dataset, config, progress=False).history
    assert set(history) == {"loss"}


def test_baseline_needs_ground_truth(dataset):
    blind = dataclasses.replace(dataset, object_truth=None, patches_truth=None)
    with pytest.raises(DatasetError, match="ground truth"):
        train_model(blind, TrainConfig(model="baseline", epochs=1, width=4, depth=2), progress=False)


def test_split_indices_are_disjoint_complete_and_seeded():
    train, val = split_indices(101, 0.2, seed=4)
    assert len(val) == 20 and len(train) == 81
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(101))
    again = split_indices(101, 0.2, seed=4)
    assert np.array_equal(train, again[0]) and not np.array_equal(val, split_indices(101, 0.2, seed=5)[1])
    assert len(split_indices(2, 0.9, seed=0)[0]) == 1


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"model": "gan"}, "model must be"),
        ({"model": "baseline", "gridsize": 2}, "gridsize 1 only"),
        ({"epochs": 0}, "epochs"),
        ({"validation_fraction": 0.95}, "validation_fraction"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"gridsize": 2, "n_neighbours": 3}, "n_neighbours"),
        ({"early_stopping_patience": 0}, "patience"),
        ({"epoch": 3}, "unknown setting 'epoch'"),
    ],
)
def test_invalid_settings(settings, message):
    with pytest.raises(ConfigError, match=message):
        build_config(TrainConfig, settings)


@pytest.mark.e2e  # its flags and file: tests/test_cli_flags.py
def test_cli_train_writes_a_bundle_that_predicts(tmp_path, dataset):
    train, test = split_dataset_by_row(dataset)
    data_path = save_dataset(train, tmp_path / "train.npz")
    config = tmp_path / "c.yaml"
    config.write_text("train:\n  epochs: 3\n  width: 4\n  depth: 2\n  batch_size: 32\n")
    out = tmp_path / "bundle"
    result = CliRunner().invoke(
        study_main,
        ["train", "--model", "pinn", "--gridsize", "2", "--train-data", str(data_path), "--out", str(out),
         "--config", str(config), "--epochs", "1", "--seed", "2", "--no-progress"],
    )
    assert result.exit_code == 0, result.output
    assert "bundle:" in result.output
    bundle = load_bundle(out)
    assert bundle.kind == "pinn" and bundle.gridsize == 2
    assert bundle.metadata["config"]["epochs"] == 1 and bundle.metadata["config"]["width"] == 4
    assert len(bundle.metadata["history"]["loss"]) == 1
    assert (out / "loss.png").stat().st_size > 0
    assert predict(bundle, test, progress=False).patches.shape == (test.n_positions, 32, 32)


def test_cli_train_user_error_is_one_line(tmp_path, dataset):
    data_path = save_dataset(dataset, tmp_path / "d.npz")
    result = CliRunner().invoke(
        study_main,
        ["train", "--model", "baseline", "--gridsize", "2", "--train-data", str(data_path),
         "--out", str(tmp_path / "b")],
    )
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == ["error: the baseline supports gridsize 1 only"]
    assert not (tmp_path / "b").exists()


def stitch_average(patches, positions_xy, shape):
    """Average of patches placed at rounded integer positions (a plain NumPy reference)."""
    n_side = patches.shape[-1]
    total = np.zeros(shape, complex)
    count = np.zeros(shape)
    for patch, (x, y) in zip(patches, np.rint(positions_xy).astype(int), strict=True):
        rows = slice(y - n_side // 2, y + n_side // 2)
        cols = slice(x - n_side // 2, x + n_side // 2)
        total[rows, cols] += patch
        count[rows, cols] += 1
    return total / np.maximum(count, 1), count > 0


def gauge_fixed_mae(image, truth, mask):
    """Complex MAE over ``mask`` after the least-squares complex gain (the global gauge:
    amplitude scale and phase offset) that maps ``image`` onto ``truth``."""
    a, b = image[mask], truth[mask]
    gain = np.vdot(a, b) / max(np.vdot(a, a).real, 1e-12)
    return float(np.mean(np.abs(gain * a - b)))


@pytest.mark.slow
@pytest.mark.parametrize("model, gridsize", [("pinn", 2), ("baseline", 1)])
def test_stitched_images_beat_a_blank_image(model, gridsize):
    data = simulate_dataset(
        SimulationConfig(patch_size=32, object_size=128, scan="jittered", scan_step=3, jitter=0.5,
                         dose=1e5, seed=11)
    )
    train, test = split_dataset_by_row(data)  # N rows of positions apart: no shared pixel
    # Seed 0, which collapsed to a flat image before the PINN's intensity scale was calibrated
    # (test_pinn_trains_to_a_non_flat_image_on_every_seed checks five seeds).
    config = TrainConfig(model=model, gridsize=gridsize, epochs=40, batch_size=16, width=16,
                         learning_rate=5e-4, seed=0, validation_fraction=0.1)
    result = train_model(train, config, progress=False)
    from compare_models.models.bundle import Bundle

    bundle = Bundle(model=result.model, kind=model, patch_size=32, gridsize=gridsize,
                    intensity_scale=result.intensity_scale, probe=train.probe,
                    metadata={"region_pad": result.region_pad})
    prediction = predict(bundle, test, progress=False)
    image, covered = stitch_average(prediction.patches, prediction.positions_xy, data.object_truth.shape)
    # Score the interior of the test region, away from the scan edges.
    mask = np.zeros_like(covered)
    y = test.positions_xy[:, 1]
    mask[int(y.min()) : int(y.max()) + 1, 24:104] = True
    mask &= covered
    truth = data.object_truth
    error = gauge_fixed_mae(image, truth, mask)
    # The blank image, put through the same gauge fit, becomes the best uniform image.
    blank = gauge_fixed_mae(np.ones_like(image), truth, mask)
    print(f"{model}: complex MAE {error:.4f}, blank {blank:.4f}")
    assert error < 0.75 * blank


def test_calibrated_pinn_predicts_the_measured_counts(dataset):
    # The independent truth: the data's own counts. After calibration the untrained network's
    # expected counts, summed over the same samples, equal the measured ones.
    from compare_models.models.training import _Task, calibrate_intensity_scale

    config = TrainConfig(model="pinn", gridsize=2, width=4, depth=2, seed=1)
    scale = intensity_scale(dataset.diffraction_amplitude)
    model = fresh_model(config, dataset)
    task = _Task("pinn", dataset, config, scale, 8)
    indices = np.arange(dataset.n_positions)
    learned = calibrate_intensity_scale(model, task, indices, seed=1, n_samples=dataset.n_positions)
    inputs, (counts,) = task.batch(indices)
    predicted = model([inputs[0], inputs[1]], training=False)[1].numpy()
    assert predicted.sum() == pytest.approx(counts.sum(), rel=1e-4)
    assert learned == pytest.approx(model.get_layer("intensity").scale)
    assert 1.2 < learned < 4  # amplitude 1/2 at start, about 0.7 in the truth


@pytest.mark.parametrize("seed", [1, 3])
def test_pinn_amplitude_does_not_saturate_in_the_first_epoch(seed):
    # Before the intensity scale was calibrated, these seeds drove the amplitude sigmoid to 1 over
    # 75 % and 56 % of the patch within one epoch (a flat image the gradient cannot leave).
    data = simulate_dataset(
        SimulationConfig(patch_size=32, object_size=96, scan="jittered", scan_step=4, jitter=0.5, seed=3, dose=1e5)
    )
    config = TrainConfig(model="pinn", gridsize=2, epochs=1, batch_size=16, width=16, learning_rate=2e-3,
                         seed=seed, validation_fraction=0.1)
    result = train_model(data, config, progress=False)
    import keras

    probe = keras.Model(result.model.inputs, result.model.get_layer("amplitude_head").output)
    from compare_models.models.inputs import make_groups, pinn_inputs

    groups = make_groups(data.positions_xy, 2, seed=seed, max_offset=result.region_pad)
    x, offsets = pinn_inputs(data.diffraction_amplitude, data.positions_xy, groups, np.arange(64), result.intensity_scale)
    amplitude = probe([x, offsets]).numpy()
    assert (amplitude > 0.99).mean() < 0.05


def test_self_supervised_pinn_trains_without_the_ground_truth(dataset):
    # The same history as on the same patterns with the ground truth removed: none was read.
    config = TrainConfig(model="pinn", gridsize=2, epochs=1, width=4, depth=2, batch_size=32, seed=4,
                         train_on="test-diffraction")
    with_truth = train_model(dataset, config, progress=False).history
    blind = dataclasses.replace(dataset, object_truth=None, patches_truth=None)
    without = train_model(blind, config, progress=False).history
    assert with_truth == without


def test_baseline_is_refused_the_test_scan():
    with pytest.raises(ConfigError, match="PINN only: the supervised baseline learns from ground truth"):
        TrainConfig(model="baseline", train_on="test-diffraction").validate()


def test_cli_self_supervised_bundle_records_its_protocol(tmp_path, dataset):
    from compare_models.imaging.coverage import patch_footprint
    from compare_models.models.bundle import fraction_seen_in_training

    test_path = save_dataset(dataset, tmp_path / "test.npz")
    out = tmp_path / "pinn"
    args = ["train", "--model", "pinn", "--gridsize", "2", "--train-on", "test-diffraction", "--out", str(out),
            "--epochs", "1", "--width", "4", "--depth", "2", "--batch-size", "64", "--no-progress"]
    refused = CliRunner().invoke(study_main, [*args, "--train-data", str(test_path)])
    assert refused.exit_code == 2 and "--test-data" in refused.output
    result = CliRunner().invoke(study_main, [*args, "--test-data", str(test_path)])
    assert result.exit_code == 0, result.output
    assert "test scan's own diffraction" in result.output
    bundle = load_bundle(out)
    assert bundle.training_protocol == {
        "train_on": "test-diffraction",
        "description": bundle.metadata["training_protocol"]["description"],
        "ground_truth_used": False,
    }
    assert bundle.describe()["training_protocol"]["train_on"] == "test-diffraction"
    # It saw the test object: the scored pixels under its scan count as seen in training.
    region = patch_footprint(dataset.positions_xy, 32, dataset.object_truth.shape)
    assert fraction_seen_in_training(bundle.metadata, dataset.object_truth, region) == 1.0
    baseline = CliRunner().invoke(study_main, ["train", "--model", "baseline", "--train-on", "test-diffraction",
                                               "--test-data", str(test_path), "--out", str(tmp_path / "b")])
    assert baseline.exit_code == 2
    assert baseline.output.strip().splitlines()[-1].startswith("error: train_on 'test-diffraction' is for the PINN only")


def image_contrast(image, truth, mask):
    """Standard deviation of amplitude (over its mean) and of phase (about the mean phasor)
    inside ``mask``, each over the truth's: 0 for a flat image."""
    def spread(values):
        amplitude = np.abs(values)
        phase = np.angle(values * np.exp(-1j * np.angle(values.mean())))
        return amplitude.std() / amplitude.mean(), phase.std()

    (amp, phase), (amp_t, phase_t) = spread(image[mask]), spread(truth[mask])
    return amp / amp_t, phase / phase_t


@pytest.mark.slow
def test_pinn_trains_to_a_non_flat_image_on_every_seed():
    """Five of five weight seeds, on the demo's settings (configs/demo.yaml: its train_pinn
    section, on the data it names: the test scan's own diffraction, or the training set), give
    a stitched test image with at least a quarter of the truth's contrast in amplitude and in
    phase (a flat image has none; trained PINNs reach 0.4 to 1)."""
    from compare_models.config import read_yaml_section
    from compare_models.imaging.region import scanned_region
    from compare_models.imaging.stitching import stitch
    from compare_models.models.bundle import Bundle
    from compare_models.study.simulator import simulate_split

    demo = read_yaml_section(CONFIGS / "demo.yaml")
    train, test = simulate_split(SimulationConfig(**demo["simulate"]))
    crop = demo["compare"]["stitch_crop_size"]
    mask = scanned_region(test.positions_xy, 32, test.object_truth.shape, crop=crop, erode=4)
    contrasts = []
    for seed in range(5):
        config = build_config(TrainConfig, demo["train_pinn"], {"seed": seed})
        data = test if config.train_on == "test-diffraction" else train
        result = train_model(data, config, progress=False)
        bundle = Bundle(model=result.model, kind="pinn", patch_size=32, gridsize=config.gridsize,
                        intensity_scale=result.intensity_scale, probe=data.probe,
                        metadata={"region_pad": result.region_pad})
        prediction = predict(bundle, test, progress=False)
        image, _ = stitch(prediction.patches, prediction.positions_xy, test.object_truth.shape, crop=crop)
        contrasts.append(image_contrast(image, test.object_truth, mask))
    print("amplitude, phase contrast per seed:", [(round(a, 2), round(p, 2)) for a, p in contrasts])
    assert all(a > 0.25 and p > 0.25 for a, p in contrasts), contrasts


def test_remove_mean_phase_zeroes_the_illuminated_mean_and_nothing_else():
    rng = np.random.default_rng(0)
    patches = (rng.uniform(0.4, 1, (3, 8, 8)) * np.exp(1j * rng.uniform(-1, 1, (3, 8, 8)))).astype(np.complex64)
    weight = rng.uniform(0, 1, (8, 8)).astype(np.float32)
    from compare_models.models.losses import remove_mean_phase

    out = remove_mean_phase(patches, weight)
    np.testing.assert_allclose(np.abs(out), np.abs(patches), rtol=1e-6)
    np.testing.assert_allclose(np.angle(np.sum(out * weight, axis=(1, 2))), 0, atol=1e-6)
    # A constant phase added to a patch changes nothing: it is what the data cannot see.
    rotated = remove_mean_phase(patches * np.exp(0.7j), weight)
    np.testing.assert_allclose(rotated, out, atol=1e-5)


def test_pinn_gauge_term_is_the_squared_mean_phase_in_count_units(dataset):
    # An object of constant phase theta over every pixel: the Poisson term does not depend on
    # theta; the gauge term is mean_counts * theta^2.
    import tensorflow as tf

    from compare_models.models.physics import poisson_nll
    from compare_models.models.training import _Task

    config = TrainConfig(model="pinn", gridsize=2, width=4, depth=2)
    task = _Task("pinn", dataset, config, 3.0, 8)
    theta = 0.3
    obj = np.zeros((2, 32, 32, 4, 2), np.float32)
    obj[..., 0], obj[..., 1] = 0.7 * np.cos(theta), 0.7 * np.sin(theta)
    intensity = np.full((2, 32, 32, 4), 5.0, np.float32)
    counts = np.full((2, 32, 32, 4), 4.0, np.float32)
    total = float(task.loss((tf.constant(obj), tf.constant(intensity)), (tf.constant(counts),)))
    nll = float(poisson_nll(counts, intensity))
    assert total - nll == pytest.approx(9.0 * theta**2, rel=1e-5)
    free = _Task("pinn", dataset, dataclasses.replace(config, phase_gauge="free"), 3.0, 8)
    assert float(free.loss((tf.constant(obj), tf.constant(intensity)), (tf.constant(counts),))) == pytest.approx(nll)


def test_phase_gauge_defaults_by_protocol():
    assert TrainConfig().resolved_phase_gauge == "illuminated-mean"
    assert TrainConfig(train_on="test-diffraction").resolved_phase_gauge == "free"
    assert TrainConfig(train_on="test-diffraction", phase_gauge="illuminated-mean").to_dict()["phase_gauge"] == "illuminated-mean"
    with pytest.raises(ConfigError, match="phase_gauge"):
        TrainConfig(phase_gauge="zero").validate()
