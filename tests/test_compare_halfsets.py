"""Half-set FRC inside compare-models (a resolution without ground truth for every arm): each arm's half images, their scoring, the
pty-chi half sets and where compare-models finds them."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from click.testing import CliRunner

from compare_models.errors import ConfigError, DatasetError, MetricError
from compare_models.imaging.halfsets import split_half_sets
from compare_models.imaging.region import erode_mask, scan_hull
from compare_models.imaging.stitching import stitch
from compare_models.io.dispatch import load_dataset
from compare_models.pipelines.compare import CompareConfig
from compare_models.pipelines.compare_halfsets import (
    evaluate_half_sets,
    half_canvases,
    network_half_images,
    ptychi_half_set_paths,
)
from compare_models.report.records import ArmImage, HalfImages

# --------------------------------------------------------------------------------------------
# Network half images


def _network_halves(bundle, dataset, split, *, predict=None, crop=8):
    """The compare pipeline's way: one streaming pass (gridsize 1 fills the half canvases in
    it), then each gridsize-2 half on its own."""
    from compare_models.imaging.stitching import Stitcher
    from compare_models.models import inference

    per_position = bundle.gridsize == 1
    stitcher = Stitcher(dataset.object_truth.shape, dataset.patch_size, crop=crop, n_canvases=3)
    canvases = half_canvases(split, dataset.n_positions) if per_position else 0
    full = inference.predict_and_stitch(bundle, dataset, stitcher, canvases=canvases, batch_size=8, progress=False)

    def predict_half(number, indices):
        return inference.predict_and_stitch(
            bundle, dataset.subset(indices), stitcher, canvases=number, batch_size=8, progress=False
        ).positions_xy

    return network_half_images(
        split, per_position=per_position, stitcher=stitcher, positions_xy=full.positions_xy,
        predict_half=predict or predict_half, key=bundle.kind, crop=crop,
    )


@pytest.fixture(scope="module")
def pinn_halves(tiny_study):
    """The tiny study's gridsize-2 PINN's half images, made once for the tests below, and the
    groups every ``make_groups`` call formed while they were made."""
    from compare_models.models import inputs
    from compare_models.models.bundle import load_bundle

    bundle = load_bundle(tiny_study["pinn"])
    dataset = load_dataset(tiny_study["test"])
    split = split_half_sets(dataset.positions_xy)
    calls = []
    real = inputs.make_groups

    def spy(positions_xy, gridsize, **kwargs):
        groups = real(positions_xy, gridsize, **kwargs)
        calls.append((np.array(positions_xy), groups))
        return groups

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(inputs, "make_groups", spy)
        halves = _network_halves(bundle, dataset, split)
    return bundle, dataset, split, halves, calls


def test_gridsize2_model_forms_its_groups_inside_each_half(pinn_halves):
    bundle, dataset, split, halves, calls = pinn_halves
    assert bundle.gridsize == 2
    # The full run's groups, then one set per half, formed among that half's positions only.
    assert len(calls) == 3
    for (positions, groups), indices in zip(calls[1:], split.halves, strict=True):
        np.testing.assert_array_equal(positions, dataset.positions_xy[indices])
        members = indices[groups]  # indices into the whole scan
        assert set(members.ravel()) <= set(indices.tolist())
        assert groups.shape == (indices.size, 4) and not set(members.ravel()) & set(np.setdiff1d(np.arange(dataset.n_positions), indices))
    assert all(image.shape == dataset.object_truth.shape for image in halves.images)
    assert halves.details["reused_full_run_patches"] is False


@pytest.mark.parametrize("arm", ["pinn", "baseline"])
def test_half_image_depends_only_on_its_own_half(tiny_study, arm, request):
    """Independence, the point of half sets: changing every pattern of half 2 leaves the half-1
    image bit for bit unchanged (gridsize 2: groups inside the half; gridsize 1: the full run's
    per-position patches)."""
    from compare_models.models.bundle import load_bundle

    if arm == "pinn":
        bundle, dataset, split, first, _ = request.getfixturevalue("pinn_halves")
    else:
        bundle = load_bundle(tiny_study[arm])
        dataset = load_dataset(tiny_study["test"])
        split = split_half_sets(dataset.positions_xy)
        first = _network_halves(bundle, dataset, split)
    amplitude = np.array(dataset.diffraction_amplitude)  # read whole (a lazy array is read-only)
    amplitude[split.half2] = amplitude[split.half2][::-1] * 1.7
    other = dataclasses.replace(dataset, diffraction_amplitude=amplitude)
    second = _network_halves(bundle, other, split)
    np.testing.assert_array_equal(first.images[0], second.images[0])
    np.testing.assert_array_equal(first.valid[0], second.valid[0])
    assert not np.array_equal(first.images[1], second.images[1])


def test_gridsize1_reuses_the_full_runs_patches(tiny_study):
    from compare_models.models.bundle import load_bundle

    bundle = load_bundle(tiny_study["baseline"])
    dataset = load_dataset(tiny_study["test"])
    split = split_half_sets(dataset.positions_xy)

    def no_inference(number, indices):
        raise AssertionError("gridsize 1 must not predict again")

    halves = _network_halves(bundle, dataset, split, predict=no_inference)
    assert halves.details["reused_full_run_patches"] is True
    assert halves.timings_s["baseline.half_sets.predict_stitch"] == 0.0
    # Half 1 stitched from the full run's patches of its positions, on the full image's grid.
    from compare_models.models import inference

    full = inference.predict(bundle, dataset, batch_size=8, progress=False)
    image, _ = stitch(full.patches[split.half1], dataset.positions_xy[split.half1], dataset.object_truth.shape,
                      crop=8, backend="numpy")
    assert np.abs(image).max() > 0
    np.testing.assert_allclose(halves.images[0], image, atol=2e-5 * np.abs(image).max())


# --------------------------------------------------------------------------------------------
# Scoring on synthetic arms


def _object(shape=(96, 96), seed=0):
    rng = np.random.default_rng(seed)
    from scipy import ndimage

    field = ndimage.gaussian_filter(rng.normal(size=shape), 2.0)
    field /= field.std()
    return (1.0 + 0.2 * field) * np.exp(0.5j * ndimage.gaussian_filter(rng.normal(size=shape), 2.5) / 0.1)


def _synthetic_arm(name_key, first, second, valid1, valid2, positions=None, crop=None, patch_size=16):
    halves = HalfImages(
        (first.astype(np.complex64), second.astype(np.complex64)), (valid1, valid2), positions,
        {"method": "checkerboard", "n_half1": 10, "n_half2": 10}, "synthetic",
        {}, {"stitch_crop_size": crop, "placed_by": ["frame", "frame"]},
    )
    return ArmImage(name_key, first.astype(np.complex64), valid1 | valid2, {}, {"patch_size": patch_size}, halves)


def _config(**changes):
    return CompareConfig(test_data="x", output_dir="y", pinn_dir="p", **changes).validate()


def _positions():
    yy, xx = np.mgrid[16:81:4, 16:81:4]
    return np.stack([xx.ravel(), yy.ravel()], axis=1).astype(float)


def test_evaluate_registers_half_two_onto_half_one_on_the_common_region():
    obj = _object()
    rng = np.random.default_rng(1)
    shape = obj.shape
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    first = obj + 0.01 * (rng.normal(size=shape) + 1j * rng.normal(size=shape))
    shifted = np.fft.ifft2(np.fft.fft2(obj) * np.exp(-2j * np.pi * (np.fft.fftfreq(96)[:, None] * 0.6
                                                                   + np.fft.fftfreq(96)[None, :] * -0.4)))
    second = 1.3 * shifted * np.exp(1j * (0.2 + 0.003 * xx)) + 0.01 * (rng.normal(size=shape) + 1j * rng.normal(size=shape))
    valid1 = np.ones(shape, bool)
    valid2 = np.ones(shape, bool)
    valid2[:, :20] = False  # half 2 lacks the left part: the region loses it for every arm
    # An iterative arm's halves are registered; a network's never are (one frame by construction).
    arm = _synthetic_arm("ptychi", first, second, valid1, valid2)
    other = _synthetic_arm("baseline", first, first.copy(), valid1, valid1)
    positions = _positions()
    result = evaluate_half_sets([arm, other], positions, shape, _config())
    assert result.computed and set(result.arms) == {"PtyChi", "Baseline"}
    entry = result.arms["PtyChi"]
    assert entry.registration["shift_yx_px"] == pytest.approx([-0.6, 0.4], abs=0.03)
    assert entry.registration["gauge"]["amplitude_scale"] == pytest.approx(1 / 1.3, rel=0.01)
    assert entry.registration["gauge"]["phase_offset_rad"] == pytest.approx(0.2, abs=0.05)
    assert entry.kind == "half_set" and entry.amplitude["kind"] == "half_set"
    # The region: hull & every half's data, eroded by ceil(largest shift) + margin, one for all.
    hull = scan_hull(positions, shape)
    info = result.region_info
    assert info["erosion_px"] == 1 + 2
    np.testing.assert_array_equal(result.region, erode_mask(hull & valid2, 3))
    assert entry.coverage["half1"] == pytest.approx(1.0)
    assert entry.coverage["both"] == pytest.approx((hull & valid2).sum() / hull.sum())
    assert info["both_halves_fraction_of_hull"] == pytest.approx(entry.coverage["both"])
    # Identical halves (the baseline here) correlate fully.
    assert min(result.arms["Baseline"].amplitude["curve"][1:]) > 0.999
    # Noise of 1 % against a smooth object: the registered pair agrees to high frequencies.
    assert entry.amplitude["cutoffs"]["1/7"]["fraction_nyquist"] > 0.3


def test_skipped_shift_policy_and_arms_without_halves():
    obj = _object()
    valid = np.ones(obj.shape, bool)
    arm = _synthetic_arm("pinn", obj, obj, valid, valid)
    missing = dataclasses.replace(_synthetic_arm("ptychi", obj, obj, valid, valid), halves=None)
    result = evaluate_half_sets([arm, missing], _positions(), obj.shape, _config(ptychi_recon_path="r"),
                                estimate_shift_for=lambda a: False)
    assert result.arms["PtychoPINN"].registration["shift_yx_px"] == [0.0, 0.0]
    assert "reconstruct --half-sets" in result.not_computed["PtyChi"]
    assert result.region_info["erosion_px"] == 2


def _checkerboard_halves(crop):
    """The object, the 4-px grid, its two halves (each a checkerboard of the grid's sites) and
    each half's stitched footprint at ``crop``."""
    from compare_models.imaging.region import scanned_region

    obj = _object()
    positions = _positions()
    halves = [positions[k] for k in split_half_sets(positions).halves]
    valid = [scanned_region(h, 16, obj.shape, crop=crop) for h in halves]
    return obj, positions, halves, valid


def test_coverage_below_the_minimum_names_the_crop_that_would_do():
    """Each half of a 4-px grid holds a checkerboard: a crop of 4 leaves gaps (the other
    colour's sites lie 4 px from every position of the half); the error names the smallest crop
    whose windows cover the hull."""
    from compare_models.imaging.region import scanned_region

    obj, positions, halves, valid = _checkerboard_halves(crop=4)
    shape = obj.shape
    arm = _synthetic_arm("pinn", obj, obj, valid[0], valid[1], positions=tuple(halves), crop=4)
    with pytest.raises(MetricError) as info:
        evaluate_half_sets([arm], positions, shape, _config())
    message = str(info.value)
    assert "cover only" in message and "--min-half-set-coverage" in message
    hull = scan_hull(positions, shape)
    need = next(m for m in range(5, 17)
                if (hull & scanned_region(halves[0], 16, shape, crop=m) & scanned_region(halves[1], 16, shape, crop=m)).sum()
                >= 0.9 * hull.sum())
    assert f"--stitch-crop-size {need} or more; now 4" in message and "denser scan" in message
    # A pty-chi pair that does not cover the scan points at the reconstruct step instead.
    ptychi = _synthetic_arm("ptychi", obj, obj, valid[0], valid[1])
    with pytest.raises(MetricError, match="reconstruct --half-sets"):
        evaluate_half_sets([ptychi], positions, shape, _config())


def test_halves_that_cover_enough_but_leave_holes_are_caught_with_the_crop_that_would_do():
    """A crop of 5 on a 4-px checkerboard split covers 74 % of the hull, enough for a 70 %
    minimum, as a lattice of 225 holes: the FRC window would fall to zero around each (its
    resolution widens from 0.13 to 0.34 of Nyquist for such a sieve). The guard catches holes,
    not only a fraction, and names the smallest crop that covers without them."""
    from compare_models.imaging.coverage import region_holes

    obj, positions, halves, valid = _checkerboard_halves(crop=5)
    shape = obj.shape
    hull = scan_hull(positions, shape)
    both = hull & valid[0] & valid[1]
    assert both.sum() / hull.sum() > 0.7 and region_holes(both)["count"] > 100
    arm = _synthetic_arm("pinn", obj, obj, valid[0], valid[1], positions=tuple(halves), crop=5)
    config = _config(min_half_set_coverage=0.7)
    with pytest.raises(MetricError) as info:
        evaluate_half_sets([arm], positions, shape, config)
    message = str(info.value)
    assert "leave 225 holes" in message and "window would fall to zero" in message
    assert "--stitch-crop-size 7 or more; now 5" in message
    # Without holes the same fraction passes.
    full = np.ones(shape, bool)
    result = evaluate_half_sets([_synthetic_arm("pinn", obj, obj.copy(), full, full)], positions, shape, config)
    assert result.computed and result.arms["PtychoPINN"].coverage["holes"]["count"] == 0


def test_with_ground_truth_a_short_arm_is_named_and_the_others_are_scored(caplog):
    """Not required (the default with ground truth): the arm whose halves leave gaps gets no
    half-set FRC, with the coverage message as a warning and in not_computed; an arm that covers
    the hull is scored as usual. Required (--half-sets, or no ground truth): an error."""
    obj = _object()
    positions = _positions()
    split = split_half_sets(positions)
    halves = [positions[k] for k in split.halves]
    from compare_models.imaging.region import scanned_region

    shape = obj.shape
    valid = [scanned_region(h, 16, shape, crop=4) for h in halves]
    short = _synthetic_arm("pinn", obj, obj, valid[0], valid[1], positions=tuple(halves), crop=4)
    full = np.ones(shape, bool)
    covering = _synthetic_arm("baseline", obj, obj.copy(), full, full)
    with caplog.at_level("WARNING"):
        result = evaluate_half_sets([short, covering], positions, shape, _config(), required=False)
    assert set(result.arms) == {"Baseline"} and result.computed
    assert "cover only" in result.not_computed["PtychoPINN"]
    assert "--stitch-crop-size" in result.not_computed["PtychoPINN"]
    assert any("cover only" in r.getMessage() for r in caplog.records)
    # The region is the covering arm's alone: the short arm's gaps do not shrink it.
    assert result.region_info["both_halves_fraction_of_hull"] == pytest.approx(1.0)
    alone = evaluate_half_sets([short], positions, shape, _config(), required=False)
    assert not alone.computed and "cover only" in alone.not_computed["PtychoPINN"]
    with pytest.raises(MetricError, match="cover only"):
        evaluate_half_sets([short, covering], positions, shape, _config(), required=True)


def test_a_region_too_small_for_frc_is_an_error():
    obj = _object()
    valid = np.zeros(obj.shape, bool)
    valid[30:42, 20:80] = True  # 12 rows, eroded by 2 on each side: 8 < 11
    positions = np.array([[20.0, 30.0], [80.0, 30.0], [20.0, 41.0], [80.0, 41.0]])
    arm = _synthetic_arm("pinn", obj, obj, valid, valid)
    with pytest.raises(MetricError, match="at least 11 px a side"):
        evaluate_half_sets([arm], positions, obj.shape, _config())


# --------------------------------------------------------------------------------------------
# Where compare-models finds the pty-chi half sets


def test_ptychi_half_sets_found_by_directory_paths_or_beside_the_reconstruction(tiny_study, tmp_path):
    if tiny_study["ptychi"] is None:
        pytest.skip("pty-chi extra not installed")
    full = tiny_study["ptychi"]
    directory = full.parent / "half_sets"
    pair = (directory / "ptychi_half1.npz", directory / "ptychi_half2.npz")
    base = dict(test_data="x", output_dir="y", ptychi_recon_path=str(full))
    assert ptychi_half_set_paths(CompareConfig(**base)) == (pair, f"beside --ptychi_recon_path ({directory})")
    assert ptychi_half_set_paths(CompareConfig(**base, ptychi_half_sets=str(directory)))[0] == pair
    assert ptychi_half_set_paths(CompareConfig(**base, ptychi_half_sets=str(full.parent)))[0] == pair
    swapped = (str(pair[1]), str(pair[0]))
    assert ptychi_half_set_paths(CompareConfig(**base, ptychi_half_set_paths=swapped))[0] == pair[::-1]
    with pytest.raises(DatasetError, match="ptychi_half1.npz"):
        ptychi_half_set_paths(CompareConfig(**base, ptychi_half_sets=str(tmp_path)))
    with pytest.raises(DatasetError, match="no such file"):
        ptychi_half_set_paths(CompareConfig(**base, ptychi_half_set_paths=(str(tmp_path / "a.npz"), str(pair[1]))))
    # Half sets beside a reconstruction that was not made with --half-sets are stale: ignored.
    from compare_models.io.reconstruction import load_reconstruction, save_reconstruction

    recon = load_reconstruction(full)
    meta = dict(recon.metadata, config={**recon.metadata["config"], "half_sets": False})
    other = tmp_path / "ptychi_reconstruction.npz"
    save_reconstruction(other, recon.object, probe=recon.probe, algorithm=recon.algorithm, metadata=meta)
    (tmp_path / "half_sets").mkdir()
    for path in pair:
        (tmp_path / "half_sets" / path.name).write_bytes(path.read_bytes())
    assert ptychi_half_set_paths(CompareConfig(test_data="x", output_dir="y", ptychi_recon_path=str(other))) is None


def test_half_set_options_are_validated():
    with pytest.raises(ConfigError, match="--half-set-split"):
        _config(half_set_split="random")
    with pytest.raises(ConfigError, match="--min-half-set-coverage"):
        _config(min_half_set_coverage=0)
    with pytest.raises(ConfigError, match="exclude each other"):
        _config(ptychi_recon_path="r", ptychi_half_sets="d", ptychi_half_set_paths=("a", "b"))
    with pytest.raises(ConfigError, match="--ptychi_recon_path"):
        _config(ptychi_half_sets="d")


# --------------------------------------------------------------------------------------------
# ptycho-study reconstruct --half-sets


def _assert_half_set_files(out, test_data, method, epochs):
    """What reconstruct --half-sets writes: a full reconstruction and one per half, on disjoint
    halves that make up the scan, each with its record, loss CSV and product; split.json."""
    from compare_models.io.dataset import dataset_fingerprint
    from compare_models.io.reconstruction import load_reconstruction

    dataset = load_dataset(test_data)
    split = split_half_sets(dataset.positions_xy, method)
    full = load_reconstruction(out / "ptychi_reconstruction.npz")
    assert full.metadata["config"]["half_sets"] is True
    seen = []
    for number, indices in enumerate(split.halves, start=1):
        half = load_reconstruction(out / "half_sets" / f"ptychi_half{number}.npz")
        record = half.metadata["half_set"]
        assert record["half"] == number and record["method"] == method
        assert record["position_indices"] == indices.tolist()
        assert record["of_dataset_sha256"] == dataset_fingerprint(dataset) == full.metadata["dataset_sha256"]
        assert half.metadata["n_positions"] == indices.size and half.placed_by == "frame"
        assert half.metadata["epochs"] == epochs
        assert (out / "half_sets" / f"ptychi_half{number}_loss.csv").exists()
        assert (out / "half_sets" / f"ptychi_half{number}_product.h5").exists()
        seen.append(set(record["position_indices"]))
    assert not seen[0] & seen[1] and seen[0] | seen[1] == set(range(dataset.n_positions))
    split_file = json.loads((out / "half_sets" / "split.json").read_text())
    assert split_file["method"] == method and split_file["n_half1"] + split_file["n_half2"] == dataset.n_positions


@pytest.mark.ptychi
def test_reconstruct_half_sets_writes_two_reconstructions_on_disjoint_halves(tiny_study):
    """The tiny study's pty-chi output, made with half_sets on (tests/conftest.py)."""
    if tiny_study["ptychi"] is None:
        pytest.skip("pty-chi extra not installed")
    _assert_half_set_files(tiny_study["ptychi"].parent, tiny_study["test"], "checkerboard", epochs=8)


@pytest.mark.e2e
@pytest.mark.ptychi
def test_reconstruct_command_with_half_sets(tiny_study, tmp_path):
    from compare_models.cli import study_main
    from compare_models.study.ptychi_runner import ptychi_missing

    if ptychi_missing():
        pytest.skip("pty-chi extra not installed")
    out = tmp_path / "ptychi"
    result = CliRunner().invoke(
        study_main, ["reconstruct", "--data", str(tiny_study["test"]), "--out", str(out), "--epochs", "2",
                     "--half-sets", "--half-set-split", "alternate"], catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert f"half set 1: {out / 'half_sets' / 'ptychi_half1.npz'}" in result.output
    _assert_half_set_files(out, tiny_study["test"], "alternate", epochs=2)
