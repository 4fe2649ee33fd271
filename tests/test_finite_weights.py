"""A model with non-finite weights is refused when it is loaded, in every format, naming the
file, the layer and the weight (it used to be found after a full inference pass, as "128
patches have non-finite values")."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from compare_models.errors import BundleError

N = 16


def _poison(layer, index=0, value=np.nan, count=3):
    """Put ``value`` into the first ``count`` entries of ``layer``'s weight ``index``."""
    weights = layer.get_weights()
    flat = weights[index].reshape(-1)
    flat[:count] = value
    layer.set_weights(weights)


@pytest.fixture(scope="module")
def dataset():
    from compare_models.study.simulator import SimulationConfig, simulate_dataset

    return simulate_dataset(SimulationConfig(patch_size=N, object_size=48, scan_step=4, seed=1))


def _project_bundle(path, dataset, poison=None):
    from compare_models.models.bundle import save_bundle
    from compare_models.models.inputs import intensity_scale
    from compare_models.models.pinn import build_pinn

    model = build_pinn(N, 1, dataset.probe, width=4, depth=2, seed=0)
    if poison is not None:
        poison(model)
    return save_bundle(
        model, path, kind="pinn", patch_size=N, gridsize=1,
        intensity_scale=intensity_scale(dataset.diffraction_amplitude), probe=dataset.probe,
        train_dataset=dataset, config={"seed": 0}, history={"loss": [2.0, 1.0]},
    )


def _first_conv(model):
    import keras

    return next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D))


def test_a_bundle_with_a_nan_kernel_is_refused_naming_the_file_layer_and_weight(tmp_path, dataset):
    from compare_models.models.bundle import load_bundle

    names = {}

    def poison(model):
        layer = _first_conv(model)
        names["layer"] = layer.name
        _poison(layer)

    path = _project_bundle(tmp_path / "nan", dataset, poison)
    with pytest.raises(BundleError) as info:
        load_bundle(path)
    message = str(info.value)
    assert str(path / "model.keras") in message
    assert f"layer '{names['layer']}'" in message and f"'{names['layer']}/kernel'" in message
    assert "3 NaN and 0 infinite values" in message
    # A clean bundle of the same shape loads.
    load_bundle(_project_bundle(tmp_path / "ok", dataset))


def test_a_ptychopinn_archive_with_an_infinite_bias_is_refused(tmp_path):
    from ptychopinn_synthetic import upstream_like_model, write_bundle

    from compare_models.models.ptychopinn.pinn import load_pinn

    model = upstream_like_model(64, 1, n_filters_scale=1)
    _poison(model.get_layer("conv2d_5"), index=1, value=np.inf, count=2)
    path = write_bundle(model, tmp_path / "wts.h5.zip")
    with pytest.raises(BundleError) as info:
        load_pinn(path)
    message = str(info.value)
    assert f"{path}!diffraction_to_obj/model.keras" in message
    assert "weight 'conv2d_5/bias' of layer 'conv2d_5'" in message
    assert "0 NaN and 2 infinite values" in message


def _baseline_like(path, poison_layer=None):
    """A tiny two-output model saved in the legacy HDF5 format, as run_baseline.py saves one."""
    import keras

    inp = keras.Input((N, N, 1), name="input")
    x = keras.layers.Conv2D(2, 3, padding="same", activation="relu", name="conv2d")(inp)
    amp = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid", name="amp")(x)
    phase = keras.layers.Conv2D(1, 3, padding="same", activation="tanh", name="phase")(x)
    model = keras.Model(inp, [amp, phase])
    if poison_layer:
        _poison(model.get_layer(poison_layer), value=np.nan, count=1)
    model.save(path)
    return path


def test_a_ptychopinn_baseline_with_a_nan_weight_is_refused(tmp_path):
    from compare_models.models.ptychopinn.baseline import load_baseline

    clean = load_baseline(_baseline_like(tmp_path / "ok" / "baseline_model.h5"))
    assert clean.patch_size == N
    path = _baseline_like(tmp_path / "nan" / "baseline_model.h5", poison_layer="phase")
    with pytest.raises(BundleError) as info:
        load_baseline(path)
    message = str(info.value)
    assert str(path) in message and "weight 'phase/kernel' of layer 'phase'" in message


def test_the_cli_says_it_in_one_line_and_exits_2(tmp_path, dataset):
    from compare_models.cli import compare_main
    from compare_models.io.npz import save_dataset

    bundle = _project_bundle(tmp_path / "nan", dataset, lambda model: _poison(_first_conv(model)))
    data = save_dataset(dataset, tmp_path / "test.npz")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        compare_main, ["--pinn_dir", str(bundle), "--test_data", str(data), "--output_dir", str(out), "--quiet"],
    )
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "model.keras" in errors[0] and "non-finite weights" in errors[0], result.output
    assert "Traceback" not in result.output
    assert not (out / "comparison_metrics.csv").exists()
