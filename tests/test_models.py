"""The two networks: custom layers round-trip, the PINN's physics is the simulator's, seeds."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from compare_models.errors import ConfigError
from compare_models.models.baseline import build_baseline
from compare_models.models.layers import (
    AmplitudePhaseToObject,
    FarFieldIntensity,
    GroupConsensus,
    IntensityScale,
    ScaledTanh,
)
from compare_models.models.pinn import build_pinn
from compare_models.study.simulator import far_field_amplitude

N = 16


def probe16():
    coords = np.arange(N) - N / 2
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    return (np.exp(-(xx**2 + yy**2) / 20.0) * np.exp(0.3j * xx) * 5).astype(np.complex64)


@pytest.mark.parametrize(
    "layer, inputs",
    [
        (ScaledTanh(scale=2.5), [np.linspace(-3, 3, 12, dtype=np.float32).reshape(1, 3, 4)]),
        (AmplitudePhaseToObject(), [np.full((1, 4, 4, 2), 0.5, np.float32), np.full((1, 4, 4, 2), 0.7, np.float32)]),
        (GroupConsensus(pad=3), [np.random.default_rng(0).normal(size=(2, 8, 8, 4, 2)).astype(np.float32),
                                 np.array([[[0, 0], [1, 0], [0, 1], [-1, -1]]] * 2, np.float32)]),
        (IntensityScale(), [np.ones((1, 4, 4, 1), np.float32)]),
    ],
)
def test_layer_config_round_trip(layer, inputs):
    args = inputs if len(inputs) > 1 else inputs[0]
    before = np.asarray(layer(args))
    config = keras.saving.serialize_keras_object(layer)
    rebuilt = keras.saving.deserialize_keras_object(config)
    assert type(rebuilt) is type(layer)
    assert rebuilt.get_config() == layer.get_config()
    after = np.asarray(rebuilt(args))
    if rebuilt.weights:
        rebuilt.set_weights(layer.get_weights())
        after = np.asarray(rebuilt(args))
    np.testing.assert_allclose(after, before, rtol=1e-6)


def test_scaled_tanh_and_amplitude_phase_values():
    x = np.array([[0.0, 0.5, -2.0]], np.float32)
    np.testing.assert_allclose(ScaledTanh()(x), np.pi * np.tanh(x), rtol=1e-6)
    obj = AmplitudePhaseToObject()([np.array([[2.0]], np.float32), np.array([[np.pi / 3]], np.float32)])
    np.testing.assert_allclose(np.asarray(obj)[0, 0], [1.0, np.sqrt(3)], rtol=1e-6)


def test_pinn_intensity_is_the_simulator_forward_model_times_learned_scale():
    probe = probe16()
    model = build_pinn(N, 1, probe, width=4, depth=2, seed=1)
    model.get_layer("intensity").log_scale.assign(np.log(1.7))
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 2, size=(3, N, N, 1)).astype(np.float32)
    obj, intensity = model([x, np.zeros((3, 1, 2), np.float32)])
    patch = np.asarray(obj)[..., 0, 0] + 1j * np.asarray(obj)[..., 0, 1]
    expected = 1.7 * far_field_amplitude(probe * patch) ** 2
    np.testing.assert_allclose(np.asarray(intensity)[..., 0], expected, rtol=1e-4, atol=1e-5)
    # The probe is stored in the model, not taken from anywhere else.
    np.testing.assert_allclose(model.get_layer("far_field").probe(), probe)
    assert [w.name for w in model.trainable_weights if "log_scale" in w.name] == ["log_scale"]


def test_pinn_outputs_in_range():
    model = build_pinn(N, 2, probe16(), width=4, depth=2, seed=0)
    rng = np.random.default_rng(1)
    obj, intensity = model([rng.uniform(0, 2, (2, N, N, 4)).astype(np.float32), np.zeros((2, 4, 2), np.float32)])
    amplitude = np.hypot(np.asarray(obj)[..., 0], np.asarray(obj)[..., 1])
    assert obj.shape == (2, N, N, 4, 2) and intensity.shape == (2, N, N, 4)
    assert (amplitude <= 1 + 1e-6).all() and (np.asarray(intensity) >= 0).all()


@pytest.mark.parametrize("gridsize", [1, 2])
def test_pinn_save_load_safe_mode_round_trip(tmp_path, gridsize):
    model = build_pinn(N, gridsize, probe16(), width=4, depth=2, pad=5, seed=3)
    model.get_layer("intensity").log_scale.assign(0.25)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True, compile=False)
    c = gridsize**2
    rng = np.random.default_rng(2)
    inputs = [rng.uniform(0, 2, (2, N, N, c)).astype(np.float32),
              rng.uniform(-2, 2, (2, c, 2)).astype(np.float32)]
    for a, b in zip(model(inputs), loaded(inputs), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert loaded.get_layer("object").pad == 5
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in loaded.layers)


def test_baseline_save_load_round_trip(tmp_path):
    model = build_baseline(N, width=4, depth=2, seed=3)
    model.save(tmp_path / "b.keras")
    loaded = keras.models.load_model(tmp_path / "b.keras", safe_mode=True, compile=False)
    x = np.random.default_rng(0).uniform(0, 2, (2, N, N, 1)).astype(np.float32)
    for a, b in zip(model(x), loaded(x), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    obj, amplitude, phase = loaded(x)
    np.testing.assert_allclose(
        np.asarray(obj)[..., 0, 0], np.asarray(amplitude * tf.cos(phase))[..., 0], rtol=1e-5, atol=1e-6
    )


def test_same_seed_same_weights_without_global_state():
    a = build_baseline(N, width=4, depth=2, seed=7)
    keras.utils.set_random_seed(123)  # global state must not matter
    b = build_baseline(N, width=4, depth=2, seed=7)
    c = build_baseline(N, width=4, depth=2, seed=8)
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)
    assert any(not np.array_equal(wa, wc) for wa, wc in zip(a.get_weights(), c.get_weights(), strict=True))


def test_patch_size_must_divide_by_pooling():
    with pytest.raises(ConfigError, match="divisible"):
        build_baseline(20, depth=3)


def test_far_field_layer_refuses_wrong_probe_shape():
    layer = FarFieldIntensity()
    layer.build((None, N, N, 1, 2))
    with pytest.raises(ValueError, match="does not fit"):
        layer.set_probe(np.ones((8, 8), np.complex64))
