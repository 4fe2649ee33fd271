"""PtychoPINN's architecture made from its settings: the config PtychoPINN itself writes, the
outputs PtychoPINN computes, and training it here with the project's physics loss.

The truths: PtychoPINN's own ``diffraction_to_obj/config.json`` and its reference outputs in
``../shared/fixtures/upstream`` (N = 64, gridsize 1 and 2); for N = 128 and 256, the
upstream-layout models of ``ptychopinn_synthetic`` (checked against the real N = 64 configs in
test_ptychopinn_models.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from ptychopinn_synthetic import upstream_config, upstream_like_model

from compare_models.errors import ConfigError
from compare_models.models.ptychopinn.architecture import (
    PtychoPINNArchitecture,
    build_network,
    model_config,
    object_inputs,
)
from compare_models.models.ptychopinn.archive import read_pinn_bundle
from compare_models.models.ptychopinn.build import assign_weights, build_pinn, parse_pinn_config

TOL = dict(rtol=1e-5, atol=1e-4)
KEYS = ("filters", "kernel_size", "activation", "padding", "pool_size", "size", "activation_name", "scale", "N",
        "c", "kind", "padded_size", "gridsize", "output_size", "use_polar", "batch_shape")


def _inbound(entry) -> list:
    names = []

    def walk(value):
        if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
            names.append(value["config"]["keras_history"][0])
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for node in entry.get("inbound_nodes", []):
        walk(node["args"])
    return names


OPERATIONS = ("GetItem", "Silu", "Multiply", "Add")


def structure(config) -> dict:
    """layer name -> (class, the settings build.py reads, inbound nodes). Operation nodes
    (GetItem, Silu, Multiply, Add) are named by Keras from a process-wide counter, so they are
    described by what they are and read instead of by name."""
    entries = {entry["name"]: entry for entry in config["config"]["layers"]}

    def source(name):
        entry = entries[name]
        if entry["class_name"] not in OPERATIONS:
            return name
        slices = [a for node in entry["inbound_nodes"] for a in node["args"][1:]] if entry["class_name"] == "GetItem" else []
        return (entry["class_name"], str(slices), tuple(source(n) for n in _inbound(entry)))

    out = {}
    for name, entry in entries.items():
        if entry["class_name"] in OPERATIONS:
            continue
        cfg = entry["config"]
        settings = {k: cfg[k] for k in KEYS if k in cfg and not (k == "activation" and cfg[k] == "linear")}
        out[name] = (entry["class_name"], settings, [source(n) for n in _inbound(entry)])
    return out


@pytest.mark.parametrize("gs", [1, 2])
def test_config_is_ptychopinns_own(upstream, gs):
    files = read_pinn_bundle(upstream / f"pinn_gs{gs}" / "wts.h5.zip")
    mine = model_config(PtychoPINNArchitecture(N=64, gridsize=gs))
    assert structure(mine) == structure(files.archive.config)
    assert parse_pinn_config(mine) == parse_pinn_config(files.archive.config)


@pytest.mark.parametrize("gs", [1, 2])
def test_built_network_computes_ptychopinns_outputs(upstream, gs):
    """Our config, built and given PtychoPINN's trained weights, returns PtychoPINN's outputs."""
    files = read_pinn_bundle(upstream / f"pinn_gs{gs}" / "wts.h5.zip")
    graph, _ = build_pinn(model_config(PtychoPINNArchitecture(N=64, gridsize=gs)), files.intensity_scale)
    assign_weights(graph, files.archive.weights, match="name")
    with np.load(upstream / "reference" / f"ref_pinn_gs{gs}.npz") as ref:
        out = graph.model.predict([ref["input_diffraction_scaled"], ref["input_positions"]], verbose=0)
        np.testing.assert_allclose(out, ref["output_trimmed_obj"], **TOL)


@pytest.mark.parametrize("n, gs, probe_big, pad_object", [(128, 1, True, True), (256, 2, True, True),
                                                           (64, 2, False, True), (64, 1, False, False)])
def test_other_settings_match_the_upstream_layout(n, gs, probe_big, pad_object):
    theirs = upstream_config(upstream_like_model(N=n, gridsize=gs, n_filters_scale=1, probe_big=probe_big,
                                                 pad_object=pad_object))
    mine = model_config(PtychoPINNArchitecture(N=n, gridsize=gs, n_filters_scale=1, probe_big=probe_big,
                                               pad_object=pad_object))
    assert structure(mine) == structure(theirs)


def test_seeded_weights_and_object_inputs():
    arch = PtychoPINNArchitecture(N=64, gridsize=1, n_filters_scale=1)
    first, config = build_network(arch, seed=3)
    again, _ = build_network(arch, seed=3)
    other, _ = build_network(arch, seed=4)
    a, b, c = (g.model.get_layer("conv2d_5").get_weights()[0] for g in (first, again, other))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert object_inputs(config) == ("add", "add_1")
    assert object_inputs(model_config(PtychoPINNArchitecture(N=64, gridsize=1, probe_big=False))) == (
        "amp_padded", "phase_padded")


@pytest.mark.parametrize("change, message", [
    (dict(N=32), "defined for N = 64, 128, 256"),
    (dict(amp_activation="tanh"), "amp_activation"),
    (dict(probe_big=True, pad_object=False), "probe_big needs pad_object"),
    (dict(n_filters_scale=0), "n_filters_scale"),
])
def test_bad_settings_are_refused(change, message):
    with pytest.raises(ConfigError, match=message):
        PtychoPINNArchitecture(**{"N": 64, "gridsize": 1, **change}).validate()


def test_ptycho_study_trains_ptychopinns_architecture_into_a_bundle(tmp_path):
    from click.testing import CliRunner

    from compare_models.cli import study_main
    from compare_models.io.npz import save_dataset
    from compare_models.models.bundle import load_bundle
    from compare_models.models.inference import predict
    from compare_models.models.loading import load_model
    from compare_models.study.simulator import SimulationConfig, simulate_dataset

    data = simulate_dataset(SimulationConfig(patch_size=64, object_size=100, scan="jittered", scan_step=8, seed=1))
    path = save_dataset(data, tmp_path / "train.npz")
    out = tmp_path / "pinn"
    result = CliRunner().invoke(study_main, [
        "train", "--model", "pinn", "--architecture", "ptychopinn", "--n-filters-scale", "1", "--gridsize", "1",
        "--train-data", str(path), "--out", str(out), "--epochs", "1", "--batch-size", "8", "--no-progress",
    ])
    assert result.exit_code == 0, result.output
    assert "PtychoPINN's architecture" in result.output
    bundle = load_bundle(out)
    assert bundle.architecture == "ptychopinn" and bundle.kind == "pinn"
    assert bundle.model_format == "compare_models bundle (PtychoPINN architecture)"
    assert bundle.label.startswith("PtychoPINN architecture")
    assert bundle.metadata["architecture"]["settings"]["n_filters_scale"] == 1
    # Its layers are PtychoPINN's (by name), followed by this project's physics.
    names = {layer.name for layer in bundle.model.layers}
    assert {"intensity_scaler", "conv2d", "amp", "phi", "amp_padded", "object", "far_field", "intensity"} <= names
    loaded = load_model(out)  # dispatch by content, as compare-models does
    assert loaded.model_format == bundle.model_format
    prediction = predict(loaded, data, progress=False)
    assert prediction.patches.shape == (data.n_positions, 64, 64) and np.isfinite(prediction.patches).all()


def test_ptychopinns_architecture_is_refused_for_n_32(tmp_path):
    from click.testing import CliRunner

    from compare_models.cli import study_main
    from compare_models.io.npz import save_dataset
    from compare_models.study.simulator import SimulationConfig, simulate_dataset

    data = simulate_dataset(SimulationConfig(patch_size=32, object_size=48, scan_step=8, seed=1))
    path = save_dataset(data, tmp_path / "train.npz")
    result = CliRunner().invoke(study_main, ["train", "--architecture", "ptychopinn", "--train-data", str(path),
                                             "--out", str(tmp_path / "p"), "--epochs", "1"])
    assert result.exit_code == 2
    assert "PtychoPINN's architecture is defined for N = 64, 128, 256; the data have N = 32" in result.output
