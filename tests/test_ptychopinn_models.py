"""PtychoPINN's saved models read without unpickling, against PtychoPINN's own outputs.

The truths: ``../shared/fixtures/upstream/reference/ref_*.npz`` hold the exact inputs PtychoPINN
fed its models (commit 712c23f) and what its models returned; our port must return the same
within rtol 1e-5, atol 1e-4 (the fixtures' suggested tolerance; outside the central window a
gridsize-1 patch reaches 1.7e5, hence the relative term). Settings with no fixture (N = 128,
256, other decoder options) use bundles in PtychoPINN's format written by
``ptychopinn_synthetic`` from a model with known weights.
"""

from __future__ import annotations

import io
import math
import re
import zipfile
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
from ptychopinn_synthetic import upstream_config, upstream_like_model, write_bundle

from compare_models.errors import BundleError
from compare_models.io.dispatch import load_dataset
from compare_models.models.inference import predict
from compare_models.models.interface import LoadedModel
from compare_models.models.ptychopinn import inputs as pinputs
from compare_models.models.ptychopinn import layers as L
from compare_models.models.ptychopinn.archive import PtychoPINNFormatError, read_pinn_bundle
from compare_models.models.ptychopinn.baseline import (
    combine_amplitude_phase,
    load_baseline,
    predict_baseline,
)
from compare_models.models.ptychopinn.build import (
    assign_weights,
    build_functional,
    build_pinn,
    intermediate_model,
    parse_pinn_config,
    pinn_layer_factory,
)
from compare_models.models.ptychopinn.pinn import load_pinn, predict_pinn

TOL = dict(rtol=1e-5, atol=1e-4)

# reference key -> node name in config.json
INTERMEDIATES = {
    "inter_intensity_scaler": "intensity_scaler",
    "inter_amp_center_sigmoid": "amp",
    "inter_phase_center_pitanh": "phi",
    "inter_amp": "add",
    "inter_phase": "add_1",
    "inter_obj_patches": "obj",
    "inter_padded_obj": "padded_obj_2",
    "inter_trimmed_obj": "trimmed_obj",
}


def _ref(upstream: Path, name: str):
    with np.load(upstream / "reference" / f"{name}.npz", allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


@pytest.fixture(scope="module")
def models(upstream):
    """Both PtychoPINN PINNs and the baseline, loaded once."""
    return {
        "gs1": load_pinn(upstream / "pinn_gs1" / "wts.h5.zip"),
        "gs2": load_pinn(upstream / "pinn_gs2"),  # the directory, as --pinn_dir gives it
        "baseline": load_baseline(upstream / "baseline_gs1"),  # nested, found below
    }


@pytest.fixture(scope="module")
def test_data(upstream):
    return load_dataset(upstream / "data" / "test_256.npz")


# --------------------------------------------------------------------------------------------
# What is read from config.json


@pytest.mark.parametrize("gs", [1, 2])
def test_settings_are_read_from_config_json(models, upstream, gs):
    loaded = models[f"gs{gs}"]
    cfg = loaded.config
    assert (cfg.N, cfg.gridsize, cfg.n_filters_scale, cfg.encoder_depth) == (64, gs, 2, 3)
    assert cfg.padded_size == (74 if gs == 1 else 78)
    assert cfg.object_big and cfg.probe_big and cfg.pad_object and cfg.use_polar
    assert (cfg.amp_activation, cfg.phase_activation) == ("sigmoid", "tanh")
    assert cfg.phase_scale == pytest.approx(math.pi)
    assert loaded.intensity_scale == float(_ref(upstream, f"ref_pinn_gs{gs}")["intensity_scale"])
    assert isinstance(loaded, LoadedModel)
    assert loaded.model_format == f"PtychoPINN wts.h5.zip (gridsize {gs})"


# --------------------------------------------------------------------------------------------
# Numerical parity with PtychoPINN's outputs


@pytest.mark.parametrize("gs", [1, 2])
def test_pinn_output_equals_ptychopinn(models, upstream, gs):
    ref = _ref(upstream, f"ref_pinn_gs{gs}")
    out = predict_pinn(models[f"gs{gs}"], ref["input_diffraction_scaled"], ref["input_positions"],
                       batch_size=int(ref["predict_batch_size"]))
    assert out.dtype == np.complex64 and out.shape == ref["output_trimmed_obj"].shape
    np.testing.assert_allclose(out, ref["output_trimmed_obj"], **TOL)


@pytest.mark.parametrize("gs", [1, 2])
def test_pinn_intermediates_equal_ptychopinn(models, upstream, gs):
    ref = _ref(upstream, f"ref_pinn_gs{gs}")
    model = intermediate_model(models[f"gs{gs}"].graph, list(INTERMEDIATES.values()))
    outs = model.predict([ref["input_diffraction_scaled"], ref["input_positions"]], verbose=0)
    for key, got in zip(INTERMEDIATES, outs, strict=True):
        np.testing.assert_allclose(got, ref[key], **TOL, err_msg=key)


@pytest.mark.parametrize("batch_size", [1, 5, 16, 80])
def test_gs2_one_output_per_group_at_every_batch_size(models, upstream, batch_size):
    """PtychoPINN's predict(batch_size=16) returns ONE canvas for these 16 groups (its batch
    collapse, recorded as bug_output_predict_bs16); ours returns one per group. 80 groups in
    one batch = 320 patches, where upstream collapses at 64."""
    ref = _ref(upstream, "ref_pinn_gs2")
    assert ref["bug_output_predict_bs16"].shape == (1, 64, 64, 1)
    repeat = 5 if batch_size == 80 else 1
    x = np.tile(ref["input_diffraction_scaled"], (repeat, 1, 1, 1))
    pos = np.tile(ref["input_positions"], (repeat, 1, 1, 1))
    out = predict_pinn(models["gs2"], x, pos, batch_size=batch_size)
    assert out.shape == (16 * repeat, 64, 64, 1)
    np.testing.assert_allclose(out, np.tile(ref["output_trimmed_obj"], (repeat, 1, 1, 1)), **TOL)


def test_baseline_output_equals_ptychopinn(models, upstream):
    ref = _ref(upstream, "ref_baseline_gs1")
    loaded = models["baseline"]
    assert loaded.patch_size == 64 and loaded.model_format == "PtychoPINN baseline_model.h5"
    amp, phase = predict_baseline(loaded, ref["input_X"])
    np.testing.assert_allclose(amp, ref["output_amplitude"], **TOL)
    np.testing.assert_allclose(phase, ref["output_phase"], **TOL)
    want = ref["output_amplitude"].astype(np.complex64) * np.exp(1j * ref["output_phase"].astype(np.complex64))
    np.testing.assert_allclose(combine_amplitude_phase(amp, phase), want, **TOL)


def test_weight_matching_by_name_and_by_path_agree(upstream):
    files = read_pinn_bundle(upstream / "pinn_gs2" / "wts.h5.zip")
    weights = []
    for match in ("name", "path"):
        graph, _ = build_pinn(files.archive.config, files.intensity_scale)
        assert assign_weights(graph, files.archive.weights, match) == 22  # the 22 Conv2D layers
        weights.append(graph.model.get_weights())
    for a, b in zip(*weights, strict=True):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------------------------
# Inputs as PtychoPINN prepares them, and the path compare-models takes


@pytest.mark.parametrize("gs", [1, 2])
def test_inputs_reproduce_ptychopinns_exactly(upstream, test_data, gs):
    ref = _ref(upstream, f"ref_pinn_gs{gs}")
    amplitude, positions = test_data.diffraction_amplitude, test_data.positions_xy
    groups = pinputs.group_neighbours(positions, gs)
    np.testing.assert_array_equal(groups[:16], ref["nn_indices"])
    factor = pinputs.normalization_factor(amplitude, groups)
    assert factor == ref["normalization_factor"]  # the same float32
    x = pinputs.normalized_group(amplitude, ref["nn_indices"], factor)
    np.testing.assert_array_equal(x, ref["X_normalized"])
    centroids, local = pinputs.group_offsets(positions, ref["nn_indices"])
    np.testing.assert_allclose(centroids, ref["global_offsets"][:, 0, :, 0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(local, ref["local_offsets"], rtol=0, atol=1e-12)
    diff_in, pos_in = pinputs.pinn_inputs(x, local, float(ref["intensity_scale"]))
    np.testing.assert_array_equal(diff_in, ref["input_diffraction_scaled"])
    np.testing.assert_array_equal(pos_in, ref["input_positions"])
    if gs == 1:
        np.testing.assert_array_equal(pinputs.baseline_inputs(x), _ref(upstream, "ref_baseline_gs1")["input_X"])


def test_grouping_is_deterministic_and_leaves_global_state_alone(test_data):
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    first = pinputs.group_neighbours(test_data.positions_xy, 2)
    second = pinputs.group_neighbours(test_data.positions_xy, 2)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(np.random.get_state()[1], before)
    assert first.shape == (test_data.n_positions, 4)  # one group per position


@pytest.mark.parametrize("gs", [1, 2])
def test_prepared_inputs_feed_the_reference_samples(models, upstream, test_data, gs):
    """The compare path (LoadedModel.prepare_inputs) builds exactly the reference inputs, and
    puts each group's patch on the group's centroid."""
    ref = _ref(upstream, f"ref_pinn_gs{gs}")
    prepared = models[f"gs{gs}"].prepare_inputs(test_data)
    assert prepared.n_samples == test_data.n_positions
    x, pos = prepared.build(np.arange(16))
    np.testing.assert_array_equal(x, ref["input_diffraction_scaled"])
    np.testing.assert_array_equal(pos, ref["input_positions"])
    np.testing.assert_allclose(prepared.positions_xy[:16], ref["global_offsets"][:, 0, :, 0], atol=1e-12)
    assert prepared.details["normalization_factor"] == pytest.approx(float(ref["normalization_factor"]), rel=0)


@pytest.mark.parametrize("key", ["gs1", "gs2", "baseline"])
def test_compare_path_reproduces_ptychopinns_outputs(models, upstream, test_data, key):
    """What compare-models runs for every model (LoadedModel.prepare_inputs -> the traced
    batch function of models.inference -> patches_from_outputs), on PtychoPINN's 16 reference
    samples: the inputs are PtychoPINN's and the patches equal its outputs."""
    from compare_models.models.inference import _predict_function

    model = models[key]
    prepared = model.prepare_inputs(test_data)
    batch = prepared.build(np.arange(16))
    patches = np.asarray(_predict_function(model, 16)(*batch))
    assert patches.shape == (16, 64, 64) and patches.dtype == np.complex64
    if key == "baseline":
        ref = _ref(upstream, "ref_baseline_gs1")
        np.testing.assert_array_equal(batch[0], ref["input_X"])
        want = ref["output_amplitude"][..., 0].astype(np.complex64) * np.exp(
            1j * ref["output_phase"][..., 0].astype(np.complex64))
        np.testing.assert_array_equal(prepared.positions_xy, test_data.positions_xy)
    else:
        ref = _ref(upstream, f"ref_pinn_{key}")
        want = ref["output_trimmed_obj"][..., 0]
        groups = pinputs.group_neighbours(test_data.positions_xy, model.gridsize)
        np.testing.assert_allclose(prepared.positions_xy, test_data.positions_xy[groups].mean(axis=1), atol=1e-12)
    np.testing.assert_allclose(patches, want, **TOL)


@pytest.fixture(scope="module")
def gs2_subset_at_batch_16(models, test_data):
    subset = test_data.subset(np.arange(23))  # 23 positions: prime, no batch size divides it
    return subset, predict(models["gs2"], subset, batch_size=16, progress=False)


@pytest.mark.parametrize("batch_size", [1, 5, 30])
def test_compare_inference_gs2_one_patch_per_position_at_every_batch_size(models, gs2_subset_at_batch_16, batch_size):
    """Through models.inference.predict: one patch per position, at its group's centroid,
    the same at every batch size (upstream collapses a batch of >= 64 patches into one)."""
    subset, reference = gs2_subset_at_batch_16
    result = predict(models["gs2"], subset, batch_size=batch_size, chunk=10, progress=False)
    assert result.patches.shape == (23, 64, 64)
    np.testing.assert_allclose(result.patches, reference.patches, **TOL)
    groups = pinputs.group_neighbours(subset.positions_xy, 2)
    np.testing.assert_allclose(result.positions_xy, subset.positions_xy[groups].mean(axis=1), atol=1e-12)


def test_a_second_model_never_changes_the_first(models, upstream, test_data, tmp_path):
    """Nothing global: loading and running another PtychoPINN model, with another intensity
    scale, leaves the first model's inputs and outputs bit for bit the same."""
    gs1 = models["gs1"]
    ref = _ref(upstream, "ref_pinn_gs1")
    before_out = predict_pinn(gs1, ref["input_diffraction_scaled"], ref["input_positions"])
    before_in = gs1.prepare_inputs(test_data).build(np.arange(16))
    keras.utils.set_random_seed(4)
    other = write_bundle(upstream_like_model(64, 1), tmp_path / "wts.h5.zip", intensity_scale=3.5)
    second = load_pinn(other)
    assert second.intensity_scale == 3.5 and gs1.intensity_scale == float(ref["intensity_scale"])
    predict(second, test_data.subset(np.arange(20)), batch_size=8, progress=False)
    after_out = predict_pinn(gs1, ref["input_diffraction_scaled"], ref["input_positions"])
    after_in = gs1.prepare_inputs(test_data).build(np.arange(16))
    np.testing.assert_array_equal(after_out, before_out)
    for a, b in zip(after_in, before_in, strict=True):
        np.testing.assert_array_equal(a, b)


def test_another_n_is_refused_naming_both(models):
    from compare_models.study.simulator import SimulationConfig, simulate_dataset

    data = simulate_dataset(SimulationConfig(patch_size=16, object_size=48, scan_step=8))
    for loaded in models.values():
        with pytest.raises(BundleError, match=r"N = 64.*N = 16"):
            loaded.check_compatible(data)


# --------------------------------------------------------------------------------------------
# Our layers


def _layer_cases():
    return [
        (L.IntensityScaler.from_intensity_scale(988.2116699, name="s"), [np.ones((2, 8, 8, 1), np.float32)]),
        (L.ActivationLayer("tanh", scale=math.pi, name="phi"), np.ones((2, 8, 8, 1), np.float32)),
        (L.ActivationLayer("swish", name="a"), np.ones((2, 8, 8, 1), np.float32)),
        (L.CenterMaskLayer(8, 1, kind="border", name="m"), np.ones((2, 8, 8, 1), np.float32)),
        (L.CombineComplexLayer(name="obj"),
         [np.ones((2, 8, 8, 4), np.float32), np.full((2, 8, 8, 4), 0.5, np.float32)]),
        (L.ReassemblePatchesLayer(14, 8, 2, name="r"),
         [np.ones((2, 8, 8, 4), np.complex64),
          np.random.RandomState(0).uniform(-2, 2, (2, 1, 2, 4)).astype(np.float32)]),
        (L.PadReconstructionLayer(12, name="p"), np.ones((2, 8, 8, 1), np.complex64)),
        (L.TrimReconstructionLayer(8, name="t"), np.ones((2, 14, 14, 1), np.complex64)),
    ]


@pytest.mark.parametrize("case", range(8))
def test_layer_round_trips_in_safe_mode(case):
    layer, x = _layer_cases()[case]
    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"] == f"{L.KERAS_PACKAGE}>{type(layer).__name__}"
    revived = keras.saving.deserialize_keras_object(serialized, safe_mode=True)
    assert type(revived) is type(layer) and revived.get_config() == config
    np.testing.assert_array_equal(np.asarray(revived(x)), np.asarray(layer(x)))


def test_every_custom_layer_is_covered():
    assert {type(layer) for layer, _ in _layer_cases()} == set(L.CUSTOM_LAYERS)


def test_reassemble_zero_offsets_is_centre_normalised():
    """Zero offsets, gridsize 1: patch/(mask + 0.001): /1.001 inside the centre, x1000 outside."""
    patch = np.full((1, 8, 8, 1), 2 + 1j, np.complex64)
    out = np.asarray(L.ReassemblePatchesLayer(12, 8, 1)([patch, np.zeros((1, 1, 2, 1), np.float32)]))
    assert out.shape == (1, 12, 12, 1)
    np.testing.assert_allclose(out[0, 6, 6, 0], (2 + 1j) / 1.001, rtol=1e-6)
    np.testing.assert_allclose(out[0, 2, 2, 0], (2 + 1j) / 0.001, rtol=1e-5)
    assert out[0, 0, 0, 0] == 0


def test_translate_moves_content_by_minus_offset():
    img = np.zeros((1, 7, 7, 1), np.float32)
    img[0, 3, 3, 0] = 1
    out = np.asarray(L.translate_bilinear(img, np.array([[1.0, -2.0]], np.float32)))
    assert out[0, 5, 2, 0] == 1 and out.sum() == 1  # row 3 + 2, column 3 - 1
    half = np.asarray(L.translate_bilinear(img, np.array([[0.5, 0.0]], np.float32)))
    np.testing.assert_allclose(half[0, 3, 2:4, 0], [0.5, 0.5])


# --------------------------------------------------------------------------------------------
# N = 128 and 256 and other settings, from configs written by the test


@pytest.mark.parametrize("gs", [1, 2])
def test_synthetic_writer_matches_the_real_n64_configs(upstream, gs):
    """Guards the writer used below: same layers, order, names and settings as PtychoPINN's."""
    real = read_pinn_bundle(upstream / f"pinn_gs{gs}" / "wts.h5.zip").archive.config
    syn = upstream_config(upstream_like_model(64, gs))
    real_layers, syn_layers = real["config"]["layers"], syn["config"]["layers"]
    assert len(real_layers) == len(syn_layers)

    def strip(config):
        return {k: v for k, v in config.items() if k not in ("name", "dtype")}

    for r, s in zip(real_layers, syn_layers, strict=True):
        assert (r["class_name"], r["module"], r.get("registered_name")) == (
            s["class_name"], s["module"], s.get("registered_name"))
        if not r["module"].startswith("keras.src.ops"):  # op names are session counters
            assert r["name"] == s["name"]
        assert strip(r["config"]) == strip(s["config"]), r["name"]
    assert parse_pinn_config(real) == parse_pinn_config(syn)


@pytest.mark.parametrize(
    "n,gs,depth,kwargs",
    [(128, 2, 4, {"n_filters_scale": 1}), (256, 1, 5, {"n_filters_scale": 1}),
     (64, 1, 3, {"object_big": False, "probe_big": False, "pad_object": False})],
    ids=["N128-gs2", "N256-gs1", "N64-plain"],
)
def test_bundles_for_other_settings_load_and_reproduce_their_source(tmp_path, n, gs, depth, kwargs):
    """The encoder depth follows N and is read from config.json; the loaded model reproduces
    the model the bundle was written from."""
    keras.utils.set_random_seed(1)
    source = upstream_like_model(n, gs, **kwargs)
    for weight in source.weights:  # non-trivial biases so every branch matters
        if "bias" in weight.path:
            weight.assign(np.random.RandomState(2).normal(0, 0.1, weight.shape).astype(np.float32))
    write_bundle(source, tmp_path / "wts.h5.zip")
    loaded = load_pinn(tmp_path)
    cfg = loaded.config
    assert (cfg.N, cfg.gridsize, cfg.encoder_depth) == (n, gs, depth)
    assert cfg.n_filters_scale == kwargs.get("n_filters_scale", 2)
    assert (cfg.object_big, cfg.probe_big, cfg.pad_object) == tuple(
        kwargs.get(k, True) for k in ("object_big", "probe_big", "pad_object"))
    rng = np.random.RandomState(3)
    x = rng.uniform(0, 3000, (2, n, n, gs * gs)).astype(np.float32)
    pos = rng.uniform(-4, 4, (2, 1, 2, gs * gs)).astype(np.float32) * (gs > 1)
    pos -= pos.mean(axis=3, keepdims=True)
    out = predict_pinn(loaded, x, pos, batch_size=2)
    want = np.asarray(source.predict([x, pos], batch_size=2, verbose=0))
    assert out.shape == (2, n, n, 1) and np.isfinite(out).all()
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)


def test_a_depth_that_does_not_follow_n_is_refused(tmp_path):
    config = upstream_config(upstream_like_model(128, 1))
    # Drop one of N = 128's four pooling stages (parsing reads the config, builds nothing).
    layers = config["config"]["layers"]
    config["config"]["layers"] = [e for e in layers if e["name"] != "max_pooling2d_3"]
    with pytest.raises(PtychoPINNFormatError, match="3 MaxPooling2D stages but PtychoPINN uses 4 for N=128"):
        parse_pinn_config(config)


# --------------------------------------------------------------------------------------------
# Safety and errors


def test_nothing_in_the_package_unpickles():
    root = Path(__file__).resolve().parents[1] / "compare_models"
    banned = re.compile(
        r"^\s*(import|from)\s+(pickle|dill|cloudpickle|joblib)\b|allow_pickle\s*=\s*True|\bpickle\.loads?\(",
        re.M,
    )
    for path in root.rglob("*.py"):
        assert not banned.search(path.read_text()), path


def test_dill_members_are_never_opened(upstream, monkeypatch):
    """Only the two inference members of wts.h5.zip are read (ZipFile.read goes through open)."""
    touched = []
    original = zipfile.ZipFile.open

    def spy(self, name, *args, **kwargs):
        touched.append(getattr(name, "filename", name))
        return original(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    load_pinn(upstream / "pinn_gs1" / "wts.h5.zip")
    assert not [t for t in touched if t.endswith(".dill")], touched
    assert {"diffraction_to_obj/model.keras", "diffraction_to_obj/model.h5"} <= set(touched)


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_errors_are_bundle_errors_naming_file_and_member(upstream, tmp_path):
    assert issubclass(PtychoPINNFormatError, BundleError)
    source = (upstream / "pinn_gs1" / "wts.h5.zip").read_bytes()
    truncated = tmp_path / "t" / "wts.h5.zip"
    truncated.parent.mkdir()
    truncated.write_bytes(source[: len(source) // 2])
    with pytest.raises(PtychoPINNFormatError, match=re.escape(str(truncated))):
        load_pinn(truncated)
    missing = _zip(tmp_path / "wts.h5.zip", {"diffraction_to_obj/model.h5": b""})
    with pytest.raises(PtychoPINNFormatError, match="member 'diffraction_to_obj/model.keras'.*missing"):
        read_pinn_bundle(missing)


def test_truncated_model_keras_member_is_named(tmp_path):
    keras_zip = io.BytesIO()
    with zipfile.ZipFile(keras_zip, "w") as archive:
        archive.writestr("config.json", "{}")
        archive.writestr("model.weights.h5", b"\0" * 1000)
    path = _zip(tmp_path / "wts.h5.zip", {"diffraction_to_obj/model.keras": keras_zip.getvalue()[:-40]})
    with pytest.raises(PtychoPINNFormatError, match="diffraction_to_obj/model.keras"):
        read_pinn_bundle(path)


def test_missing_intensity_scale_is_named(upstream, tmp_path):
    with zipfile.ZipFile(upstream / "pinn_gs1" / "wts.h5.zip") as archive:
        keras_bytes = archive.read("diffraction_to_obj/model.keras")
    empty = io.BytesIO()
    with h5py.File(empty, "w"):
        pass
    path = _zip(tmp_path / "wts.h5.zip", {"diffraction_to_obj/model.keras": keras_bytes,
                                          "diffraction_to_obj/model.h5": empty.getvalue()})
    with pytest.raises(PtychoPINNFormatError, match="model.h5.*intensity_scale"):
        read_pinn_bundle(path)


def test_lambda_and_unknown_nodes_are_refused():
    config = {"class_name": "Functional", "config": {"layers": [
        {"class_name": "InputLayer", "name": "in", "config": {"batch_shape": [None, 4]}, "inbound_nodes": []},
        {"class_name": "Lambda", "name": "evil", "config": {"function": "gASV..."},
         "inbound_nodes": [{"args": [{"class_name": "__keras_tensor__",
                                      "config": {"keras_history": ["in", 0, 0]}}], "kwargs": {}}]},
    ], "input_layers": [["in", 0, 0]], "output_layers": [["evil", 0, 0]]}}
    with pytest.raises(PtychoPINNFormatError, match="Lambda"):
        build_functional(config, pinn_layer_factory(1.0))
    config["config"]["layers"][1]["class_name"] = "ProbeIllumination"
    with pytest.raises(PtychoPINNFormatError, match="allow-list"):
        build_functional(config, pinn_layer_factory(1.0))


def test_no_baseline_file_below_is_named(tmp_path):
    with pytest.raises(PtychoPINNFormatError, match="no baseline_model.h5"):
        load_baseline(tmp_path)
