"""Gridsize-2 PINN on a realistic irregular scan: a grid with 25 % of its positions missing,
±1.5 px jitter, step N/6, N = 32 (a scan that used to stop with "a group member
lies 8.25 px from its group centre, beyond the model's region margin of 8 px")."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from compare_models.cli import study_main
from compare_models.errors import DatasetError
from compare_models.imaging.geometry import extract_patches
from compare_models.io.dataset import Dataset
from compare_models.io.npz import save_dataset
from compare_models.models.grouping import (
    GroupFitError,
    centred_spread,
    fit_groups,
    group_neighbours,
)
from compare_models.models.inputs import make_groups
from compare_models.study.simulator import (
    SimulationConfig,
    far_field_amplitude,
    make_object,
    make_probe,
)

N = 32
OBJECT = 112


def irregular_scan_dataset(seed: int) -> Dataset:
    """The irregular scan, simulated with this project's far-field model and Poisson noise."""
    rng = np.random.default_rng(seed)
    step = N / 6
    low, high = N / 2 + 2, OBJECT - N / 2 - 3  # room for the jitter inside the object
    axis = np.arange(low, high + 1e-9, step)
    gx, gy = np.meshgrid(axis, axis, indexing="xy")
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1)
    keep = np.sort(rng.permutation(len(grid))[: int(round(0.75 * len(grid)))])  # 25 % missing
    positions = grid[keep] + rng.uniform(-1.5, 1.5, (len(keep), 2))  # ±1.5 px jitter
    config = SimulationConfig(patch_size=N, object_size=OBJECT, dose=1e4, seed=seed)
    obj, probe = make_object(config), make_probe(config)
    patches = extract_patches(obj, positions, N)
    unit = far_field_amplitude(probe * patches) ** 2
    scale = 1e4 / unit.sum(axis=(1, 2)).mean()
    counts = rng.poisson(unit * scale)
    return Dataset(
        diffraction_amplitude=np.sqrt(counts).astype(np.float32), positions_xy=positions,
        probe=(probe * np.sqrt(scale)).astype(np.complex64), object_truth=obj,
        patches_truth=patches.astype(np.complex64), metadata={"dose_nominal": 1e4, "seed": seed},
    )


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    root = tmp_path_factory.mktemp("irregular")
    return {seed: save_dataset(irregular_scan_dataset(seed), root / f"scan_{seed}.npz") for seed in (0, 1)}


def _train(train_data, out, *extra):
    result = CliRunner().invoke(study_main, ["train", "--model", "pinn", "--gridsize", "2", "--train-data", str(train_data),
                                             "--out", str(out), "--epochs", "1", "--width", "4", "--depth", "2",
                                             "--no-progress", *extra], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads((out / "bundle.json").read_text())


@pytest.fixture(scope="module")
def derived(scans, tmp_path_factory):
    """A bundle trained by the default training command on scan 0 (its margin derived from the
    scan), shared by the tests below: its directory and its bundle.json."""
    out = tmp_path_factory.mktemp("derived") / "bundle"
    return out, _train(scans[0], out)


def test_the_scan_is_the_one_that_failed(scans):
    from compare_models.io.dispatch import load_dataset

    for path in scans.values():
        positions = load_dataset(path).positions_xy
        spread = centred_spread(positions, group_neighbours(positions, 2)).max()
        assert spread > N / 4  # beyond the old fixed margin of N/4 = 8 px


def test_default_training_command_trains_on_the_irregular_scan_and_records_the_margin(scans, derived):
    from compare_models.io.dispatch import load_dataset
    from compare_models.models.bundle import load_bundle
    from compare_models.models.inference import predict

    path, document = derived
    positions = load_dataset(scans[0]).positions_xy
    spread = centred_spread(positions, group_neighbours(positions, 2)).max()
    assert document["region_pad"] == min(max(N // 4, math.ceil(spread)), N // 2)
    assert "derived from the training scan" in document["region_pad_rule"]
    bundle = load_bundle(path)
    assert bundle.region_pad == document["region_pad"]
    assert bundle.model.get_layer("object").pad == document["region_pad"]  # the model's own margin
    # Another irregular scan: every group fits the recorded margin (re-formed where needed),
    # and there is one patch per position.
    test = load_dataset(scans[1])
    groups = make_groups(test.positions_xy, 2, max_offset=bundle.region_pad)
    assert centred_spread(test.positions_xy, groups).max() <= bundle.region_pad + 1e-9
    np.testing.assert_array_equal(groups[:, 0], np.arange(test.n_positions))
    prediction = predict(bundle, test, batch_size=16, progress=False)
    assert prediction.patches.shape == (test.n_positions, N, N)
    assert np.isfinite(prediction.patches).all() and np.abs(prediction.patches).max() > 0


def test_loading_a_second_bundle_never_changes_the_first(scans, derived, tmp_path):
    from compare_models.io.dispatch import load_dataset
    from compare_models.models.bundle import load_bundle
    from compare_models.models.inference import predict

    derived_path, derived = derived
    configured = _train(scans[0], tmp_path / "configured", "--region-pad", "15")
    assert configured["region_pad"] == 15 and configured["region_pad_rule"] == "configured (region_pad)"
    assert derived["region_pad"] != 15
    data = load_dataset(scans[1])
    first = load_bundle(derived_path)
    before = predict(first, data, batch_size=8, progress=False).patches
    second = load_bundle(tmp_path / "configured")
    predict(second, data, batch_size=8, progress=False)
    assert first.region_pad == derived["region_pad"] and first.model.get_layer("object").pad == derived["region_pad"]
    assert second.region_pad == 15 and second.model.get_layer("object").pad == 15
    np.testing.assert_array_equal(predict(first, data, batch_size=8, progress=False).patches, before)


# --------------------------------------------------------------------------------------------
# fit_groups against a brute-force search


def _brute_force_tightest(positions, seed, c):
    others = [i for i in range(len(positions)) if i != seed]
    return min(centred_spread(positions, np.array([[seed, *combo]]))[0]
               for combo in itertools.combinations(others, c - 1))


def test_fit_groups_finds_the_tightest_group_and_keeps_the_others():
    rng = np.random.default_rng(5)
    positions = rng.uniform(0, 30, (14, 2))
    groups = group_neighbours(positions, 2)
    spread = centred_spread(positions, groups)
    tightest = np.array([_brute_force_tightest(positions, seed, 4) for seed in range(14)])
    margin = float(tightest.max())  # every seed has a group that fits; some nearest groups do not
    fitted, changed = fit_groups(positions, groups, margin, n_candidates=13)  # every other position
    refit = spread > margin
    assert changed == int(refit.sum()) > 0
    np.testing.assert_array_equal(fitted[~refit], groups[~refit])
    np.testing.assert_array_equal(fitted[:, 0], np.arange(14))
    for seed in np.flatnonzero(refit):
        assert len(set(fitted[seed])) == 4
        assert centred_spread(positions, fitted[seed:seed + 1])[0] == pytest.approx(tightest[seed])


def test_a_group_that_cannot_fit_is_an_error_naming_the_fix():
    sparse = np.array([[0.0, 0.0], [40.0, 0.0], [0.0, 40.0], [40.0, 40.0], [80.0, 0.0]])
    with pytest.raises(GroupFitError, match="scan position 0"):
        fit_groups(sparse, group_neighbours(sparse, 2), 8)
    with pytest.raises(DatasetError, match="larger region_pad"):
        make_groups(sparse, 2, max_offset=8)
