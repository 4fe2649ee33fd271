"""Custom Keras layers of the two networks, all serialisable in the native ``.keras`` format.

Complex tensors never cross a layer boundary: an object is carried as a float32 tensor
``(B, N, N, C, 2)`` holding the real and imaginary parts, so Keras' dtype handling stays in
float32. Every layer is registered under the package name ``compare_models`` and rebuilds from
its :meth:`get_config`; weights (the probe, the learned intensity scale) live in the saved
model, never in module state. Every ``call`` uses ``keras.ops`` only, so the layers run under
Keras's TensorFlow, JAX and PyTorch backends (training stays on TensorFlow).
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from . import physics

__all__ = [
    "ScaledTanh",
    "AmplitudePhaseToObject",
    "GroupConsensus",
    "FarFieldIntensity",
    "IntensityScale",
    "object_to_complex",
]

_PACKAGE = "compare_models"


def object_to_complex(obj):
    """``(B, N, N, C, 2)`` float real/imag -> ``(B, C, N, N)`` complex64."""
    return ops.transpose(ops.view_as_complex(obj), [0, 3, 1, 2])


def _complex_to_object(z):
    """``(B, C, N, N)`` complex64 -> ``(B, N, N, C, 2)`` float32."""
    return ops.view_as_real(ops.transpose(z, [0, 2, 3, 1]))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ScaledTanh(keras.layers.Layer):
    """``scale * tanh(x)``; the phase head uses ``scale = pi`` (radians)."""

    def __init__(self, scale: float = math.pi, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)

    def call(self, inputs):
        return self.scale * ops.tanh(inputs)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class AmplitudePhaseToObject(keras.layers.Layer):
    """``[amplitude, phase]`` (B, N, N, C) each -> object (B, N, N, C, 2) real/imag float32."""

    def call(self, inputs):
        amplitude, phase = inputs
        return ops.stack([amplitude * ops.cos(phase), amplitude * ops.sin(phase)], axis=-1)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class GroupConsensus(keras.layers.Layer):
    """Overlap constraint of a group: ``[object (B,N,N,C,2), offsets (B,C,2)]`` -> object.

    Places the C member patches at their offsets (x, y, object pixels, from the group centre)
    in one region of side ``N + 2 pad``, averages the overlaps and cuts each member back out
    (:func:`compare_models.models.physics.combine_group`). For C = 1 and zero offset it is the
    identity.
    """

    def __init__(self, pad: int, **kwargs):
        super().__init__(**kwargs)
        self.pad = int(pad)

    def call(self, inputs):
        obj, offsets = inputs
        merged = physics.combine_group(object_to_complex(obj), offsets, self.pad)
        return _complex_to_object(merged)

    def get_config(self):
        return {**super().get_config(), "pad": self.pad}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FarFieldIntensity(keras.layers.Layer):
    """Object (B, N, N, C, 2) -> expected counts (B, N, N, C) through the fixed probe.

    The probe is a pair of non-trainable weights (real, imaginary) of shape (N, N), saved with
    the model; set it with :meth:`set_probe` after building.
    """

    def build(self, input_shape):
        n_side = int(input_shape[1])
        self.probe_real = self.add_weight(
            name="probe_real", shape=(n_side, n_side), initializer="zeros", trainable=False
        )
        self.probe_imag = self.add_weight(
            name="probe_imag", shape=(n_side, n_side), initializer="zeros", trainable=False
        )

    def set_probe(self, probe) -> None:
        """Store ``probe`` (N, N) complex, in the dataset's photon-count units."""
        probe = np.asarray(probe)
        if probe.shape != tuple(self.probe_real.shape):
            raise ValueError(
                f"probe of shape {probe.shape} does not fit the layer's {tuple(self.probe_real.shape)}"
            )
        self.probe_real.assign(probe.real.astype(np.float32))
        self.probe_imag.assign(probe.imag.astype(np.float32))

    def probe(self) -> np.ndarray:
        """The stored probe as a complex64 array (N, N)."""
        return (
            ops.convert_to_numpy(self.probe_real) + 1j * ops.convert_to_numpy(self.probe_imag)
        ).astype(np.complex64)

    def call(self, inputs):
        probe = physics.complex_from_parts(self.probe_real, self.probe_imag)
        intensity = physics.far_field_intensity(object_to_complex(inputs), probe)
        return ops.transpose(intensity, [0, 2, 3, 1])


@keras.saving.register_keras_serializable(package=_PACKAGE)
class IntensityScale(keras.layers.Layer):
    """Multiply by a learned global scale ``exp(log_scale)`` (a trainable real weight, init 1)."""

    def build(self, input_shape):
        self.log_scale = self.add_weight(
            name="log_scale", shape=(), initializer="zeros", trainable=True
        )

    @property
    def scale(self) -> float:
        return float(np.exp(ops.convert_to_numpy(self.log_scale)))

    def call(self, inputs):
        return inputs * ops.exp(self.log_scale)
