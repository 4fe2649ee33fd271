"""No leakage: no scored pixel was seen, as ground truth, by any training sample.

The shipped configs train on another object than they test; ``--split y`` keeps N rows of
positions between its halves; a bundle records what it was trained on, and compare-models'
provenance says which fraction of the scored pixels its training patches covered.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compare_models.config import read_yaml_section
from compare_models.errors import ConfigError
from compare_models.imaging.coverage import (
    fraction_covered,
    mask_to_runs,
    patch_footprint,
    runs_to_mask,
)
from compare_models.imaging.geometry import split_nearest
from compare_models.io.dispatch import load_dataset
from compare_models.io.npz import save_dataset
from compare_models.models.bundle import fraction_seen_in_training, training_record
from compare_models.pipelines.sweep import Cell, SweepConfig, plan_cell
from compare_models.pipelines.sweep_step import run_step
from compare_models.study.simulator import SimulationConfig, simulate_dataset, simulate_split

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY = dict(patch_size=16, object_size=64, scan="jittered", scan_step=3, jitter=0.6, dose=1e4, seed=1)


def footprint_brute_force(positions, n_side, shape):
    """Union of each patch's integer crop (split_nearest) and bilinear cut (floor, N + 1 wide)."""
    mask = np.zeros(shape, bool)
    origin, _ = split_nearest(positions, n_side)
    for (c0, r0), (x, y) in zip(origin, positions, strict=True):
        mask[max(r0, 0) : max(r0 + n_side, 0), max(c0, 0) : max(c0 + n_side, 0)] = True
        f0, g0 = int(np.floor(x - n_side / 2)), int(np.floor(y - n_side / 2))
        f1, g1 = int(np.ceil(x + n_side / 2)), int(np.ceil(y + n_side / 2))
        mask[max(g0, 0) : max(g1, 0), max(f0, 0) : max(f1, 0)] = True
    return mask


def scored_region(test):
    """Pixels the test scan's patches cover: the scored region is inside it, whatever the rule."""
    return patch_footprint(test.positions_xy, test.patch_size, test.object_truth.shape)


# --------------------------------------------------------------------------------------------
# Footprints and their record


@settings(max_examples=40, deadline=None)
@given(
    n_half=st.integers(1, 8),
    seed=st.integers(0, 2**16),
    count=st.integers(1, 30),
    integer=st.booleans(),
)
def test_footprint_is_every_pixel_a_patch_reads(n_half, seed, count, integer):
    rng = np.random.default_rng(seed)
    n_side, shape = 2 * n_half, (40, 36)
    positions = rng.uniform(-4, 44, (count, 2))
    if integer:
        positions = np.round(positions)
    mask = patch_footprint(positions, n_side, shape)
    np.testing.assert_array_equal(mask, footprint_brute_force(positions, n_side, shape))
    np.testing.assert_array_equal(runs_to_mask(mask_to_runs(mask), shape), mask)


def test_runs_are_compact_and_checked():
    mask = np.zeros((6, 8), bool)
    mask[1:5, 2:7] = True
    mask[3, 0] = True
    assert mask_to_runs(mask) == [[1, 2, 7], [2, 2, 7], [3, 0, 1], [3, 2, 7], [4, 2, 7]]
    with pytest.raises(ValueError, match="outside"):
        runs_to_mask([[6, 0, 1]], (6, 8))
    assert fraction_covered(mask, mask) == 1.0
    with pytest.raises(ValueError, match="no pixel"):
        fraction_covered(np.zeros((6, 8), bool), mask)


# --------------------------------------------------------------------------------------------
# The splits


def test_split_y_keeps_a_guard_band_of_n():
    """Training positions and test positions are at least N apart in y, so no test patch pixel
    lies under a training patch (the old split cut at a row, and patches reached N/2 past it)."""
    train, test = simulate_split(SimulationConfig(**TINY, split="y"))
    n_side = train.patch_size
    assert test.positions_xy[:, 1].min() - train.positions_xy[:, 1].max() >= n_side
    seen = patch_footprint(train.positions_xy, n_side, train.object_truth.shape)
    assert not (seen & scored_region(test)).any()
    record = {"train_data": training_record(train)}
    assert fraction_seen_in_training(record, test.object_truth, scored_region(test)) == 0.0
    assert train.metadata["split_guard_px"] == n_side and test.metadata["split"] == "test"


def test_a_deliberately_overlapping_split_is_measured():
    """Training positions that reach into the test half: the fraction is what a brute-force
    count of the shared pixels gives, and it is > 0."""
    whole = simulate_dataset(SimulationConfig(**TINY))
    n_side, shape = whole.patch_size, whole.object_truth.shape
    y = whole.positions_xy[:, 1]
    train = whole.subset(np.flatnonzero(y < shape[0] / 2))  # the old split: no guard band
    test = whole.subset(np.flatnonzero(y >= shape[0] / 2))
    region = scored_region(test)
    fraction = fraction_seen_in_training({"train_data": training_record(train)}, test.object_truth, region)
    expected = (footprint_brute_force(train.positions_xy, n_side, shape) & region).sum() / region.sum()
    assert fraction == pytest.approx(expected) and fraction > 0.1


def test_split_objects_trains_on_another_object():
    train, test = simulate_split(SimulationConfig(**TINY, split="objects", train_object_size=48))
    assert train.object_truth.shape == (48, 48) and test.object_truth.shape == (64, 64)
    assert train.metadata["object"]["amplitude_image"] != test.metadata["object"]["amplitude_image"]
    assert not np.array_equal(train.positions_xy[:5], test.positions_xy[:5])  # its own random stream
    record = {"train_data": training_record(train)}
    assert fraction_seen_in_training(record, test.object_truth, scored_region(test)) == 0.0
    # The same object (a test file used for training) is recognised, and fully covered.
    assert fraction_seen_in_training({"train_data": training_record(test)}, test.object_truth, scored_region(test)) == 1.0


def test_split_objects_refuses_shared_images():
    with pytest.raises(ConfigError, match="another object"):
        SimulationConfig(**TINY, split="objects", train_amplitude_image="camera").validate()
    with pytest.raises(ConfigError, match="another object"):
        SimulationConfig(**TINY, split="objects", phase_image="coins", train_phase_image="coins").validate()


def test_foreign_or_old_bundles_say_unknown():
    test = simulate_dataset(SimulationConfig(**TINY))
    region = scored_region(test)
    for metadata in ({}, {"train_data": {"sha256": "x"}}, {"train_data": {"object_sha256": None, "footprint_runs": []}}):
        assert fraction_seen_in_training(metadata, test.object_truth, region) == "unknown"
    assert fraction_seen_in_training({"train_data": training_record(test)}, None, region) == "unknown"


# --------------------------------------------------------------------------------------------
# The shipped configs


@pytest.mark.parametrize("name", ["demo.yaml", "dose_sweep.yaml", "paper_scale.yaml"])
def test_shipped_configs_train_on_another_object(name, tmp_path):
    """The config's own simulate settings, run through the sweep's simulate step at a tiny
    size: the networks' training data share no pixel with the test object."""
    path = REPO_ROOT / "configs" / name
    sweep = SweepConfig(**{k: v for k, v in read_yaml_section(path).items() if k != "sweep"})
    simulate = next(step for step in plan_cell(Cell(1e4, 0), sweep) if step.name == "simulate")
    tiny = {**simulate.settings, "patch_size": 16, "object_size": 56, "scan_step": 4, "train_object_size": 40}
    run_step("simulate", tiny, tmp_path)
    train, test = load_dataset(tmp_path / "data" / "data_train.npz"), load_dataset(tmp_path / "data" / "data_test.npz")
    assert train.metadata["split_mode"] == "objects"
    record = {"train_data": training_record(train)}
    assert fraction_seen_in_training(record, test.object_truth, scored_region(test)) == 0.0


@pytest.mark.e2e
def test_compare_records_the_fraction_seen_in_training(tiny_study, tmp_path):
    """compare-models' provenance.json: 0 for the tiny study's networks (split y with its guard
    band), and > 0 for a baseline whose training data overlap the test scan."""
    from compare_models.models.training import TrainConfig
    from compare_models.pipelines.compare import CompareConfig, run_compare
    from compare_models.pipelines.train import run_train

    # A baseline trained on the test scan itself: every scored pixel was seen.
    leaky_data = save_dataset(load_dataset(tiny_study["test"]), tmp_path / "leaky_train.npz")
    config = TrainConfig(model="baseline", epochs=1, batch_size=16, width=4, depth=2, seed=0).validate()
    leaky_bundle, _ = run_train(config, leaky_data, tmp_path / "leaky", progress=False)

    out = tmp_path / "compare"
    run_compare(
        CompareConfig(
            test_data=str(tiny_study["test"]), output_dir=str(out), pinn_dir=str(tiny_study["pinn"]),
            baseline_dir=str(leaky_bundle), progress=False, skip_registration=True,
        ),
        echo=lambda _: None,
    )
    provenance = json.loads((out / "provenance.json").read_text())
    seen = provenance["seen_in_training"]
    assert seen["PtychoPINN"] == 0.0
    assert seen["Baseline"] == 1.0
    # Beside it, the protocol each network was trained under.
    protocol = provenance["training_protocol"]
    assert protocol["PtychoPINN"]["train_on"] == "training-set" and protocol["PtychoPINN"]["ground_truth_used"] is False
    assert protocol["Baseline"]["ground_truth_used"] is True


def test_bundles_without_a_recorded_protocol_say_unknown():
    from compare_models.models.bundle import protocol_record, training_protocol

    assert training_protocol({"kind": "pinn"})["train_on"] == "unknown"
    assert training_protocol(None)["ground_truth_used"] is None
    assert training_protocol({"training_protocol": protocol_record("test-diffraction", "pinn")})["train_on"] == "test-diffraction"
