"""PtychoPINN's PyTorch-backend bundles: read without unpickling, run by this project's torch
code, checked against PtychoPINN's own outputs, stitched one patch per scan position.

The fixtures (../shared/fixtures/upstream, its README) hold two real bundles made by
PtychoPINN's ``train.py --backend pytorch`` (cnn gridsize 1, ffno gridsize 2) and, for 16 fixed
samples, the exact tensors PtychoPINN fed its networks, their outputs and intermediates.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch", reason="PtychoPINN's PyTorch models need torch (the ptychi extra)")

from compare_models.errors import BundleError  # noqa: E402
from compare_models.io.dataset import Dataset  # noqa: E402
from compare_models.models.loading import detect_model_source, load_model  # noqa: E402
from compare_models.models.ptychopinn.archive import PtychoPINNFormatError  # noqa: E402
from compare_models.models.ptychopinn_torch.archive import local_members, read_torch_bundle  # noqa: E402
from compare_models.models.ptychopinn_torch.inputs import partition_groups, scale_factor  # noqa: E402
from compare_models.models.ptychopinn_torch.model import (  # noqa: E402
    LoadedTorchPinn,
    load_torch_pinn,
    predict_torch,
)
from compare_models.models.ptychopinn_torch.settings import TorchPinnSettings  # noqa: E402
from compare_models.models.ptychopinn_torch.stream import predict_and_stitch_torch  # noqa: E402

BUNDLES = {"cnn_gs1": "torch_cnn_gs1", "ffno_gs2": "torch_ffno_gs2"}
RTOL, ATOL = 1e-5, 1e-4  # the fixtures README's tolerance for a port


@pytest.fixture(scope="module")
def models(upstream):
    return {key: load_torch_pinn(upstream / folder, device="cpu") for key, folder in BUNDLES.items()}


@pytest.fixture(scope="module")
def refs(upstream):
    out = {}
    for key in BUNDLES:
        with np.load(upstream / "reference" / f"ref_torch_{key}.npz", allow_pickle=False) as data:
            out[key] = {name: data[name] for name in data.files}
    return out


@pytest.fixture(scope="module")
def test_data(upstream):
    from compare_models.io.dispatch import load_dataset

    return load_dataset(upstream / "data" / "test_256.npz")


@pytest.fixture(scope="module")
def workflow_run(models, refs):
    """Each generator on PtychoPINN's workflow inputs, with its intermediates."""
    runs = {}
    for key, model in models.items():
        taps = {}
        with torch.no_grad():
            out = model.forward(torch.from_numpy(refs[key]["wf_input_diffraction"]), taps)
        runs[key] = (out.numpy(), {name: tensor.numpy() for name, tensor in taps.items()})
    return runs


# --------------------------------------------------------------------------------------------
# Reading and detection


@pytest.mark.parametrize("key", sorted(BUNDLES))
def test_bundles_are_recognised_by_content_in_either_form(upstream, tmp_path, key):
    folder = upstream / BUNDLES[key]
    assert detect_model_source(folder).format == "ptychopinn_torch"
    assert detect_model_source(folder / "wts.h5.zip").format == "ptychopinn_torch"
    renamed = tmp_path / "model.zip"  # the name says nothing; the manifest and members do
    renamed.write_bytes((folder / "wts.h5.zip").read_bytes())
    assert detect_model_source(renamed).format == "ptychopinn_torch"


def test_settings_come_from_the_bundle(models):
    cnn, ffno = models["cnn_gs1"], models["ffno_gs2"]
    assert (cnn.settings.architecture, cnn.gridsize, cnn.channels, cnn.patch_size) == ("cnn", 1, 1, 64)
    assert (ffno.settings.architecture, ffno.gridsize, ffno.channels, ffno.patch_size) == ("ffno", 2, 4, 64)
    assert cnn.settings.amp_activation == "sigmoid" and cnn.settings.cbam_encoder
    assert (ffno.settings.fno_width, ffno.settings.fno_blocks, ffno.settings.fno_modes) == (32, 4, 12)
    for model in (cnn, ffno):  # read from params.dill's opcodes; recorded, never applied
        assert model.settings.intensity_scale == pytest.approx(988.2117919921875)
        assert model.describe()["intensity_scale_applied"] is False
    assert ffno.model_format == "PtychoPINN PyTorch wts.h5.zip (ffno, gridsize 2)"


def test_nothing_is_unpickled_beyond_weights_only(upstream, monkeypatch):
    """torch.load is only ever called with weights_only=True; the .dill members go through the
    opcode walk (pickle.loads is never reached)."""
    import pickle

    calls = []
    original = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return original(*args, **kwargs)

    def refuse(*args, **kwargs):
        raise AssertionError("pickle.loads called")

    monkeypatch.setattr(torch, "load", spy)
    monkeypatch.setattr(pickle, "loads", refuse)
    files = read_torch_bundle(upstream / "torch_ffno_gs2")
    assert calls and all(flag is True for flag in calls)
    assert files.manifest["version"] == "2.0-pytorch"
    assert files.params["architecture"] == "ffno"


# --------------------------------------------------------------------------------------------
# Parity with PtychoPINN


@pytest.mark.parametrize("key", sorted(BUNDLES))
def test_workflow_patches_equal_ptychopinns(workflow_run, refs, key):
    out, _ = workflow_run[key]
    np.testing.assert_allclose(out, refs[key]["wf_output_patches"], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("key", sorted(BUNDLES))
def test_command_line_patches_equal_ptychopinns(models, refs, key):
    """PtychoPINN's CLI feeds the raw pattern times its scale factor (gs2: one pattern repeated
    into all four channels, which this project never does; the network is still the same)."""
    ref = refs[key]
    x = ref["cli_input_diffraction_raw"] * ref["cli_input_scale_factor"]
    with torch.no_grad():
        out = models[key].forward(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, ref["cli_output_patches"], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("key", sorted(BUNDLES))
def test_intermediates_equal_ptychopinns(workflow_run, refs, key):
    """Every recorded intermediate. Where a tensor reaches large values (the CNN's decoder runs
    up to 4e3 before its last activation) float32 sums differ in their last bits between two
    summation orders, so the absolute term scales with the tensor: atol = max(1e-4, 1e-5 max|ref|)."""
    _, taps = workflow_run[key]
    ref = refs[key]
    names = [name[len("wf_inter_"):] for name in ref if name.startswith("wf_inter_")]
    assert len(names) >= 6
    for name in names:
        want = ref[f"wf_inter_{name}"]
        got = ref["wf_input_diffraction"] if name == "generator_input" else taps[name][: want.shape[0]]
        atol = max(ATOL, 1e-5 * float(np.abs(want).max()))
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=atol, err_msg=name)


def test_scale_factor_is_ptychopinns(refs, test_data):
    """f = sqrt((N/2)² / mean Σ amp²) over the test set, as PtychoPINN's CLI computes it."""
    f = scale_factor(test_data.diffraction_amplitude)
    assert f == pytest.approx(float(refs["cnn_gs1"]["cli_input_scale_factor"]), rel=1e-6)
    assert f == pytest.approx(float(refs["cnn_gs1"]["wf_normalization_factor"]), rel=1e-6)


def test_prepared_inputs_are_ptychopinns_for_gridsize_1(models, refs, test_data):
    inputs = models["cnn_gs1"].prepare(test_data)
    np.testing.assert_array_equal(inputs.groups[:, 0], np.arange(256))
    np.testing.assert_allclose(inputs.build(np.arange(16)), refs["cnn_gs1"]["wf_input_diffraction"], rtol=1e-7)


def test_every_patch_of_the_scan_equals_ptychopinns(models, refs, test_data):
    """Positions all over the scan, through inputs prepared for the whole scan (one factor):
    their central 20 x 20 equal the patches PtychoPINN's CLI stitched (cli_all_patches_crop20)."""
    model = models["cnn_gs1"]
    inputs = model.prepare(test_data)
    chosen = np.arange(0, 256, 5)
    with torch.no_grad():
        patches = model.forward(torch.from_numpy(inputs.build(chosen))).numpy()[:, 0]
    want = refs["cnn_gs1"]["cli_all_patches_crop20"][inputs.groups[chosen, 0], 0]
    np.testing.assert_allclose(patches[:, 22:42, 22:42], want, rtol=RTOL, atol=ATOL)


# --------------------------------------------------------------------------------------------
# Groups: every position once


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 120), channels=st.sampled_from([1, 4, 9]), seed=st.integers(0, 2**16))
def test_every_position_is_in_exactly_one_group(m, channels, seed):
    if m < channels:
        with pytest.raises(ValueError, match="at least"):
            partition_groups(np.zeros((m, 2)), channels)
        return
    positions = np.random.default_rng(seed).uniform(0, 100, (m, 2))
    groups, valid = partition_groups(positions, channels)
    assert groups.shape == (-(-m // channels), channels)
    np.testing.assert_array_equal(np.sort(groups[valid]), np.arange(m))
    assert valid[:-1].all() and valid[-1].sum() == m - channels * (len(groups) - 1)
    assert all(len(set(row)) == channels for row in groups)  # fillers are other positions
    again, _ = partition_groups(positions, channels)
    np.testing.assert_array_equal(groups, again)


def test_groups_stay_compact_on_the_fixture_scan(test_data):
    """Rim first: the largest member offset from a group's centre stays within 4.5 nearest-
    neighbour distances (21 px; dataset order gave 38 px)."""
    positions = test_data.positions_xy
    groups, _ = partition_groups(positions, 4)
    spread = np.abs(positions[groups] - positions[groups].mean(axis=1, keepdims=True)).max()
    assert spread < 22.0


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_one_patch_per_position_at_every_batch_size(models, test_data, batch_size):
    subset = test_data.subset(np.arange(13))  # 13 = 3 groups of 4 + one filled up
    patches, inputs = predict_torch(models["ffno_gs2"], subset, batch_size=batch_size)
    reference, _ = predict_torch(models["ffno_gs2"], subset, batch_size=4)
    assert patches.shape == (13, 64, 64) and int(inputs.valid.sum()) == 13
    np.testing.assert_allclose(patches, reference, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------------------------
# Stitching through the torch path


@pytest.mark.parametrize("key", sorted(BUNDLES))
def test_streamed_image_equals_a_numpy_stitch_of_the_same_patches(models, test_data, key):
    from compare_models.imaging.stitching import Stitcher, stitch

    subset = test_data.subset(np.arange(40))
    model = models[key]
    stitcher = Stitcher(test_data.object_truth.shape, 64, crop=20, backend="torch", device="cpu")
    result = predict_and_stitch_torch(model, subset, stitcher, batch_size=5, chunk=24, progress=False)
    assert result.n_patches == 40 and stitcher.n_added[0] == 40
    image, weights = stitcher.result(0)
    patches, _ = predict_torch(model, subset, batch_size=7)
    want, want_weights = stitch(patches, subset.positions_xy, test_data.object_truth.shape, crop=20, backend="numpy")
    np.testing.assert_allclose(weights, want_weights, rtol=1e-6)
    scale = np.abs(want).max()
    np.testing.assert_allclose(image, want, rtol=0, atol=2e-6 * scale)


@dataclass(frozen=True, eq=False)
class _Oracle(LoadedTorchPinn):
    """A 'network' that returns each member's ground-truth patch: the dataset's pattern p is
    the constant p + 1, which the oracle reads back from its (scaled) input."""

    truth: np.ndarray = None
    factor: float = 1.0

    def forward(self, x, taps=None):
        index = torch.round(x[:, :, 0, 0] / self.factor).long() - 1  # (B, C) scan positions
        return torch.from_numpy(self.truth)[index]


def _oracle_case(gridsize, integer, seed=0, n_side=16):
    from compare_models.imaging.geometry import object_patches

    rng = np.random.default_rng(seed)
    size = 64
    obj = (rng.uniform(0.5, 1.5, (size, size)) * np.exp(1j * rng.uniform(-1, 1, (size, size)))).astype(np.complex64)
    grid = np.arange(n_side // 2 + 2, size - n_side // 2 - 2, 3.0)
    xx, yy = np.meshgrid(grid, grid)
    positions = np.stack([xx.ravel(), yy.ravel()], axis=1)
    if not integer:
        positions = positions + rng.uniform(-0.5, 0.5, positions.shape)
    m = len(positions)
    amplitude = np.broadcast_to((np.arange(m, dtype=np.float32) + 1)[:, None, None], (m, n_side, n_side)).copy()
    dataset = Dataset(amplitude, positions, np.ones((n_side, n_side), np.complex64), object_truth=obj)
    truth = object_patches(obj, positions, n_side).astype(np.complex64)
    settings_ = TorchPinnSettings("ffno", n_side, gridsize, gridsize**2)
    oracle = _Oracle(settings_, {}, torch.device("cpu"), Path("oracle"), truth=truth,
                     factor=float(scale_factor(amplitude)))
    return oracle, dataset, obj


@pytest.mark.parametrize("gridsize", [1, 2, 3])
@pytest.mark.parametrize("batch_size", [1, 4, 64])
def test_ground_truth_patches_through_this_path_give_the_object_back(gridsize, batch_size):
    """Channel c of every group is placed at member c's scan position: stitching the true
    patches this way returns the object exactly on the scanned region (integer positions)."""
    from compare_models.imaging.stitching import Stitcher

    oracle, dataset, obj = _oracle_case(gridsize, integer=True)
    stitcher = Stitcher(obj.shape, 16, crop=8, backend="torch", device="cpu")
    result = predict_and_stitch_torch(oracle, dataset, stitcher, batch_size=batch_size, chunk=50, progress=False)
    assert result.n_patches == dataset.n_positions == stitcher.n_added[0]
    image, weights = stitcher.result(0)
    covered = weights > 0
    assert covered.sum() > 0.5 * obj.size
    np.testing.assert_allclose(image[covered], obj[covered], rtol=0, atol=1e-5)


def test_ground_truth_patches_at_subpixel_positions_round_trip():
    from compare_models.imaging.stitching import Stitcher

    oracle, dataset, obj = _oracle_case(2, integer=False, seed=1)
    stitcher = Stitcher(obj.shape, 16, crop=8, backend="torch", device="cpu")
    predict_and_stitch_torch(oracle, dataset, stitcher, batch_size=7, progress=False)
    image, weights = stitcher.result(0)
    covered = weights > 0
    np.testing.assert_allclose(image[covered], obj[covered], rtol=0, atol=1e-4)


def test_ptychopinns_own_placements_do_not_give_the_object_back(test_data):
    """What the README's 'Coming from PtychoPINN' measures: stitching the ground-truth patches
    at the positions point-mirrored about the scan centre (PtychoPINN's command line) or the
    mean of each group's patches at its centre (its workflow) against this path's placement."""
    from compare_models.imaging.region import scan_hull
    from compare_models.imaging.stitching import stitch

    truth = test_data.object_truth
    positions = test_data.positions_xy
    patches = np.asarray(test_data.patches_truth)
    hull = scan_hull(positions, truth.shape)

    def error(image, weights):
        mask = hull & (weights > 0)
        return float(np.linalg.norm(image[mask] - truth[mask]) / np.linalg.norm(truth[mask]))

    ours = error(*stitch(patches, positions, truth.shape, crop=20, backend="numpy"))
    mirrored = error(*stitch(patches, 2 * positions.mean(axis=0) - positions, truth.shape, crop=20, backend="numpy"))
    from compare_models.models.grouping import group_neighbours

    groups = group_neighbours(positions, 2)  # each position and its 3 nearest, as PtychoPINN's workflow
    mean = error(*stitch(patches[groups].mean(axis=1), positions[groups].mean(axis=1), truth.shape, crop=20,
                         backend="numpy"))
    print(f"relative error: this path {ours:.3g}, mirrored {mirrored:.3g}, group mean at centre {mean:.3g}")
    assert ours < 0.01 and mirrored > 0.2 and mean > 5 * ours


# --------------------------------------------------------------------------------------------
# Bad bundles: one line naming the member, key or setting


def _rewrite(source: Path, target: Path, changes: dict) -> Path:
    """Copy a wts.h5.zip, replacing members (bytes) or torch objects (saved with torch.save)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for name in old.namelist():
            if name in changes and changes[name] is None:
                continue
            data = old.read(name)
            if name in changes:
                value = changes[name](data)
                if not isinstance(value, bytes):
                    buffer = io.BytesIO()
                    torch.save(value, buffer)
                    value = buffer.getvalue()
                data = value
            new.writestr(name, data)
    return target


def _state_dict(data):
    return dict(torch.load(io.BytesIO(data), weights_only=True))


def _metadata(data):
    return dict(torch.load(io.BytesIO(data), weights_only=True))


def test_a_missing_key_is_named(upstream, tmp_path):
    key = "model.autoencoder.encoder.blocks.1.conv2.weight"

    def drop(data):
        state = _state_dict(data)
        del state[key]
        return state

    bad = _rewrite(upstream / "torch_cnn_gs1" / "wts.h5.zip", tmp_path / "wts.h5.zip", {"diffraction_to_obj/model.pth": drop})
    with pytest.raises(PtychoPINNFormatError, match=re.escape(f"key '{key}' is missing")):
        load_torch_pinn(bad, device="cpu")


def test_a_misshapen_key_is_named(upstream, tmp_path):
    key = "model.autoencoder.ffno_stack.blocks.2.shared_spectral.weights_y"

    def shrink(data):
        state = _state_dict(data)
        state[key] = state[key][:, :, :8]
        return state

    bad = _rewrite(upstream / "torch_ffno_gs2" / "wts.h5.zip", tmp_path / "wts.h5.zip", {"diffraction_to_obj/model.pth": shrink})
    with pytest.raises(PtychoPINNFormatError, match=re.escape(f"key '{key}' has shape (32, 32, 8), expected (32, 32, 12)")):
        load_torch_pinn(bad, device="cpu")


@pytest.mark.parametrize(("change", "fragments"), [
    ({"architecture": "fno"}, ["generator 'fno' is not supported", "cnn, ffno"]),
    ({"physics_forward_mode": "rectangular_scaled"}, ["scaling mode 'rectangular_scaled", "supported: amplitude"]),
    ({"intensity_scale_trainable": True}, ["scaling mode 'trainable intensity scale"]),
    ({"use_shared_decoder": True}, ["use_shared_decoder", "False"]),
])
def test_an_unsupported_generator_or_scaling_mode_is_named(upstream, tmp_path, change, fragments):
    def edit(data):
        metadata = _metadata(data)
        metadata["model_config"] = {**metadata["model_config"], **change}
        return metadata

    bad = _rewrite(upstream / "torch_cnn_gs1" / "wts.h5.zip", tmp_path / "wts.h5.zip", {"torch_scaling_metadata.pt": edit})
    with pytest.raises(PtychoPINNFormatError) as raised:
        load_torch_pinn(bad, device="cpu")
    for fragment in fragments:
        assert fragment in str(raised.value)


def test_a_parity_scale_delta_is_refused(upstream, tmp_path):
    def add(data):
        return {**_state_dict(data), "log_scale_delta": torch.tensor(0.1)}

    bad = _rewrite(upstream / "torch_ffno_gs2" / "wts.h5.zip", tmp_path / "wts.h5.zip", {"diffraction_to_obj/model.pth": add})
    with pytest.raises(PtychoPINNFormatError, match="scaling mode 'parity scale"):
        load_torch_pinn(bad, device="cpu")


def test_a_truncated_archive_names_the_member_it_ends_in(upstream, tmp_path):
    source = (upstream / "torch_ffno_gs2" / "wts.h5.zip").read_bytes()
    members = dict(local_members(source))
    assert all(members.values()) and "diffraction_to_obj/model.pth" in members
    cut = tmp_path / "cut" / "wts.h5.zip"
    cut.parent.mkdir()
    cut.write_bytes(source[: len(source) // 2])  # inside model.pth, the largest member
    assert detect_model_source(cut.parent).format == "ptychopinn_torch"
    with pytest.raises(PtychoPINNFormatError, match=re.escape("member 'diffraction_to_obj/model.pth': truncated")):
        load_model(cut.parent, device="cpu")


def test_a_corrupt_member_is_named(upstream, tmp_path):
    bad = _rewrite(upstream / "torch_ffno_gs2" / "wts.h5.zip", tmp_path / "wts.h5.zip",
                   {"diffraction_to_obj/model.pth": lambda data: data[: len(data) // 3]})
    with pytest.raises(PtychoPINNFormatError, match=re.escape("member 'diffraction_to_obj/model.pth': cannot be read")):
        load_torch_pinn(bad, device="cpu")


def test_a_missing_member_is_named(upstream, tmp_path):
    bad = _rewrite(upstream / "torch_ffno_gs2" / "wts.h5.zip", tmp_path / "wts.h5.zip",
                   {"diffraction_to_obj/params.dill": None})
    with pytest.raises(PtychoPINNFormatError, match=re.escape("member 'diffraction_to_obj/params.dill': missing")):
        load_torch_pinn(bad, device="cpu")


def test_cuda_where_there_is_none_is_one_line(upstream):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from compare_models.errors import ConfigError

    with pytest.raises(ConfigError, match="--device cuda"):
        load_torch_pinn(upstream / "torch_ffno_gs2", device="cuda")


def test_errors_are_bundle_errors():
    assert issubclass(PtychoPINNFormatError, BundleError)
