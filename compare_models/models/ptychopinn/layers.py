"""This project's Keras implementations of the PtychoPINN layers named in its ``config.json``.

Every class here is written from what the upstream layer computes (PtychoPINN, hoidn/PtychoPINN
commit 712c23f: ``ptycho/model.py``, ``ptycho/custom_layers.py``, ``ptycho/tf_helper.py``); no
upstream code is copied. Each is registered with Keras under this project's package name,
:data:`KERAS_PACKAGE`, and rebuilds from its :meth:`get_config`.  The class *names*
deliberately equal upstream's: Keras addresses a layer's weights in ``model.weights.h5`` by the
snake-cased class name (``layers/conv2d_11``), so equal names keep the two layouts equal.

None of these layers owns a Keras variable: the only upstream non-Conv state, the intensity
scale, is a plain float in the layer config (upstream keeps it in an untracked ``tf.Variable``
that is never written to ``model.weights.h5``).

Every ``call`` is written with ``keras.ops`` only, so the layers run under Keras's TensorFlow,
JAX and PyTorch backends alike; under TensorFlow each op is the one the earlier TensorFlow code
called, so outputs are bit-identical to it.

Deliberate difference from upstream: :class:`ReassemblePatchesLayer` treats every group of the
batch independently.  Upstream sums all patches of a batch onto ONE canvas once the batch holds
64 patches or more (``bug_output_predict_bs16`` in the fixtures) and centres offsets on the
batch mean; here the output has one canvas per group whatever the batch size.
"""

from __future__ import annotations

import math
from types import MappingProxyType

import keras
import numpy as np
from keras import ops

__all__ = [
    "KERAS_PACKAGE",
    "NORM_EPSILON",
    "IntensityScaler",
    "ActivationLayer",
    "CenterMaskLayer",
    "CombineComplexLayer",
    "ReassemblePatchesLayer",
    "PadReconstructionLayer",
    "TrimReconstructionLayer",
    "center_block_mask",
    "translate_bilinear",
    "complex_from_parts",
    "UPSTREAM_LAYER_CLASSES",
    "CUSTOM_LAYERS",
]

KERAS_PACKAGE = "compare_models_ptychopinn"

#: Added to the reassembled centre-mask weights before dividing (upstream ``mk_norm``).
#: Outside the union of the central N/2 x N/2 windows the divisor is this value alone, so the
#: border of each reassembled patch comes out amplified about 1000 times.
NORM_EPSILON = 0.001

_ACTIVATIONS = ("sigmoid", "tanh", "swish", "softplus", "relu")


def _float32_of(value: float) -> float:
    """Round a Python float to the nearest float32 and return it as a Python float."""
    return float(np.float32(value))


@keras.saving.register_keras_serializable(package=KERAS_PACKAGE)
class IntensityScaler(keras.layers.Layer):
    """Divide the input by the bundle's intensity scale: ``y = x / exp(log_scale)``.

    Parameters
    ----------
    log_scale : float
        ``log(intensity_scale)`` rounded to float32, as upstream stores it in a float32
        variable; the exponential is evaluated in float32 exactly as upstream does, so the
        output equals upstream's to the last bit on the same hardware.
    """

    def __init__(self, log_scale: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.log_scale = _float32_of(log_scale)

    @classmethod
    def from_intensity_scale(cls, intensity_scale: float, **kwargs) -> IntensityScaler:
        """Build from the ``intensity_scale`` attribute of ``model.h5`` (must be > 0)."""
        if not (intensity_scale > 0 and math.isfinite(intensity_scale)):
            raise ValueError(f"intensity_scale must be finite and > 0, got {intensity_scale!r}")
        return cls(log_scale=math.log(intensity_scale), **kwargs)

    def call(self, inputs):
        # Upstream calls the layer with a one-element list.
        x = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        return ops.divide(x, ops.exp(ops.convert_to_tensor(self.log_scale, dtype=keras.backend.standardize_dtype(x.dtype))))

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, (list, tuple)) and input_shape and isinstance(
            input_shape[0], (list, tuple)
        ):
            return tuple(input_shape[0])
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config["log_scale"] = self.log_scale
        return config


@keras.saving.register_keras_serializable(package=KERAS_PACKAGE)
class ActivationLayer(keras.layers.Layer):
    """Element-wise activation by name.

    ``sigmoid``, ``swish`` (x * sigmoid(x)), ``softplus`` and ``relu`` are the plain functions;
    ``tanh`` is ``scale * tanh(x)`` (the phase head uses ``scale = pi``).  As upstream, ``scale``
    only affects ``tanh``.
    """

    def __init__(self, activation_name: str = "sigmoid", scale: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if activation_name not in _ACTIVATIONS:
            raise ValueError(
                f"unknown activation_name {activation_name!r}; expected one of {_ACTIVATIONS}"
            )
        self.activation_name = activation_name
        self.scale = float(scale)

    def call(self, inputs):
        name = self.activation_name
        if name == "sigmoid":
            return ops.sigmoid(inputs)
        if name == "tanh":
            return self.scale * ops.tanh(inputs)
        if name == "swish":
            return ops.silu(inputs)
        if name == "softplus":
            return ops.softplus(inputs)
        return ops.relu(inputs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(activation_name=self.activation_name, scale=self.scale)
        return config


def center_block_mask(n: int, dtype="float32"):
    """(n', n') mask: ones on the central ``n//2`` square, zero-padded by ``n//4`` on each side.

    ``n' = n//2 + 2*(n//4)`` (= n when n is a multiple of 4), as upstream's ``CenterMaskLayer``.
    """
    ones = ops.ones((n // 2, n // 2), dtype=dtype)
    return ops.pad(ones, [[n // 4, n // 4], [n // 4, n // 4]])


@keras.saving.register_keras_serializable(package=KERAS_PACKAGE)
class CenterMaskLayer(keras.layers.Layer):
    """Return a constant mask shaped like the batch: (B, N, N, c).

    ``kind='center'``: 1 on the central N/2 x N/2 square, 0 elsewhere; ``kind='border'``: the
    complement.  The input values are ignored; only its batch size and dtype are used.
    """

    def __init__(self, N: int, c: int, kind: str = "center", **kwargs):
        super().__init__(**kwargs)
        if kind not in ("center", "border"):
            raise ValueError(f"unknown kind {kind!r}; expected 'center' or 'border'")
        self.N = int(N)
        self.c = int(c)
        self.kind = kind

    def call(self, inputs):
        mask = center_block_mask(self.N, keras.backend.standardize_dtype(inputs.dtype))
        if self.kind == "border":
            mask = 1 - mask
        batch = ops.shape(inputs)[0]
        return ops.tile(mask[None, :, :, None], [batch, 1, 1, self.c])

    def compute_output_shape(self, input_shape):
        size = self.N // 2 + 2 * (self.N // 4)
        return (input_shape[0], size, size, self.c)

    def get_config(self):
        config = super().get_config()
        config.update(N=self.N, c=self.c, kind=self.kind)
        return config


@keras.saving.register_keras_serializable(package=KERAS_PACKAGE)
class CombineComplexLayer(keras.layers.Layer):
    """``[amp, phase] -> amp * exp(i*phase)`` as complex64 (``use_polar=True``, the default).

    ``use_polar=False`` reproduces upstream's legacy ``amp + i*phase`` for old bundles.
    """

    def __init__(self, use_polar: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.use_polar = bool(use_polar)

    def call(self, inputs):
        amp, phase = (ops.cast(_real_part(t), "float32") for t in inputs)
        if self.use_polar:
            return ops.polar(amp, phase)
        return complex_from_parts(amp, phase)

    def get_config(self):
        config = super().get_config()
        config["use_polar"] = self.use_polar
        return config


def _real_part(x):
    """The real part of a complex tensor; a real tensor as it is."""
    return ops.real(x) if "complex" in keras.backend.standardize_dtype(x.dtype) else x


def complex_from_parts(real, imag):
    """``real + i imag`` as complex64, from two float32 tensors of one shape (``keras.ops``)."""
    return ops.view_as_complex(ops.stack([real, imag], axis=-1))


def translate_bilinear(images, offsets):
    """Shift each image by a sub-pixel offset with bilinear interpolation and zero fill.

    ``out[m, y, x, :] = in[m, y + dy_m, x + dx_m, :]`` sampled bilinearly; each of the four
    neighbouring source pixels contributes only if it lies inside the image (upstream's
    ``fill_mode='zeros'``), so content moves by ``-offset``.

    Parameters
    ----------
    images : tensor
        (M, H, W, K) float, H and W known when traced.
    offsets : tensor
        (M, 2) float, ``[dx, dy]`` per image (x = column, y = row).

    Returns
    -------
    tensor
        (M, H, W, K), same dtype as ``images``.
    """
    dtype = keras.backend.standardize_dtype(images.dtype)
    height, width = int(images.shape[1]), int(images.shape[2])
    offsets = ops.cast(offsets, dtype)
    # Sample positions; the shift is uniform over an image, so rows and columns separate.
    sx = ops.arange(width, dtype=dtype)[None, :] + offsets[:, 0:1]  # (M, W)
    sy = ops.arange(height, dtype=dtype)[None, :] + offsets[:, 1:2]  # (M, H)
    x0 = ops.floor(sx)
    y0 = ops.floor(sy)
    x1 = x0 + 1
    y1 = y0 + 1
    wmax = float(width - 1)
    hmax = float(height - 1)

    def inside(v, vmax):
        return ops.cast(ops.logical_and(v >= 0, v <= vmax), dtype)

    def index(v, vmax):
        return ops.cast(ops.clip(v, 0, vmax), "int32")

    # Gathers along one axis with one index per (image, row) or (image, column): exact.
    rows0 = ops.take_along_axis(images, index(y0, hmax)[:, :, None, None], axis=1)
    rows1 = ops.take_along_axis(images, index(y1, hmax)[:, :, None, None], axis=1)
    ix0 = index(x0, wmax)[:, None, :, None]
    ix1 = index(x1, wmax)[:, None, :, None]
    corner_a = ops.take_along_axis(rows0, ix0, axis=2)  # (y0, x0)
    corner_b = ops.take_along_axis(rows0, ix1, axis=2)  # (y0, x1)
    corner_c = ops.take_along_axis(rows1, ix0, axis=2)  # (y1, x0)
    corner_d = ops.take_along_axis(rows1, ix1, axis=2)  # (y1, x1)

    in_x0 = inside(x0, wmax)[:, None, :, None]
    in_x1 = inside(x1, wmax)[:, None, :, None]
    in_y0 = inside(y0, hmax)[:, :, None, None]
    in_y1 = inside(y1, hmax)[:, :, None, None]
    corner_a = corner_a * (in_x0 * in_y0)
    corner_b = corner_b * (in_x1 * in_y0)
    corner_c = corner_c * (in_x0 * in_y1)
    corner_d = corner_d * (in_x1 * in_y1)

    wx = (sx - x0)[:, None, :, None]
    wy = (sy - y0)[:, :, None, None]
    w_a = (1 - wx) * (1 - wy)
    w_b = wx * (1 - wy)
    w_c = (1 - wx) * wy
    w_d = wx * wy
    return w_a * corner_a + w_b * corner_b + w_c * corner_c + w_d * corner_d


@keras.saving.register_keras_serializable(package=KERAS_PACKAGE)
class ReassemblePatchesLayer(keras.layers.Layer):
    """Stitch the C patches of each group onto one padded canvas per group.

    For group b with patches p_c (N x N, complex) and offsets o_c = [x, y] (``input_positions``)::

        o'_c  = o_c - mean_c(o_c)                      (per group)
        S(f)  = sum_c  T_{o'_c}( pad_P(f_c) )          (T: translate_bilinear, content moves -o')
        out_b = S(Re p) / (S(m) + 0.001) + i * S(Im p) / (S(m) + 0.001)

    where m is the N x N centre mask (1 on the central N/2 square) and pad_P zero-pads N -> P
    (``padded_size``) symmetrically.  Output: (B, P, P, 1) complex64.

    Differences from upstream (see module docstring): one canvas per group at every batch
    size, and offsets centred per group instead of over the whole batch (identical for
    PtychoPINN inputs, whose offsets are already zero-mean in every group).
    """

    def __init__(self, padded_size: int, N: int, gridsize: int, **kwargs):
        super().__init__(**kwargs)
        self.padded_size = int(padded_size)
        self.N = int(N)
        self.gridsize = int(gridsize)
        if self.N % 4 or self.padded_size < self.N:
            raise ValueError(
                f"need N a multiple of 4 and padded_size >= N, got N={self.N}, "
                f"padded_size={self.padded_size}"
            )

    def call(self, inputs):
        patches, positions = inputs
        n, c = self.N, self.gridsize**2
        pad = (self.padded_size - n) // 2
        size = n + 2 * pad
        positions = ops.cast(_real_part(positions), "float32")
        offsets = ops.transpose(positions[:, 0, :, :], [0, 2, 1])  # (B, C, 2) as [x, y]
        offsets = offsets - ops.mean(offsets, axis=1, keepdims=True)

        patches = ops.cast(patches, "complex64")
        batch = ops.shape(patches)[0]
        mask = ops.broadcast_to(center_block_mask(n)[None, :, :, None], ops.shape(patches))
        # (B, N, N, C, 3): real, imag, centre mask -> one image of 3 planes per patch.
        stack = ops.stack([ops.real(patches), ops.imag(patches), mask], axis=-1)
        stack = ops.reshape(ops.transpose(stack, [0, 3, 1, 2, 4]), [-1, n, n, 3])
        stack = ops.pad(stack, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        shifted = translate_bilinear(stack, ops.reshape(offsets, [-1, 2]))
        summed = ops.sum(ops.reshape(shifted, [batch, c, size, size, 3]), axis=1)
        norm = summed[..., 2:3] + NORM_EPSILON
        return complex_from_parts(summed[..., 0:1] / norm, summed[..., 1:2] / norm)

    def get_config(self):
        config = super().get_config()
        config.update(padded_size=self.padded_size, N=self.N, gridsize=self.gridsize)
        return config


@keras.saving.register_keras_serializable(package=KERAS_PACKAGE)
class PadReconstructionLayer(keras.layers.Layer):
    """``object.big = False`` path: channels to batch, zero-pad N -> ``padded_size``.

    (B, N, N, C) -> (B*C, P, P, 1).  Upstream takes P from its global params (not saved in
    config.json); followed by :class:`TrimReconstructionLayer` the value of P does not change
    the model output, so ``padded_size=None`` means "no padding".
    """

    def __init__(self, padded_size: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.padded_size = None if padded_size is None else int(padded_size)

    def call(self, inputs):
        n = inputs.shape[1]
        flat = ops.reshape(ops.transpose(inputs, [0, 3, 1, 2]), [-1, n, inputs.shape[2], 1])
        if self.padded_size is None:
            return flat
        pad = (self.padded_size - n) // 2
        return ops.pad(flat, [[0, 0], [pad, pad], [pad, pad], [0, 0]])

    def get_config(self):
        config = super().get_config()
        config["padded_size"] = self.padded_size
        return config


@keras.saving.register_keras_serializable(package=KERAS_PACKAGE)
class TrimReconstructionLayer(keras.layers.Layer):
    """Crop (B, M, M, K) symmetrically by ``(M - output_size) // 2`` pixels on each side."""

    def __init__(self, output_size: int, **kwargs):
        super().__init__(**kwargs)
        self.output_size = int(output_size)

    def call(self, inputs):
        size = inputs.shape[1]
        if size is None or inputs.shape[2] != size:
            raise ValueError(f"TrimReconstructionLayer needs a static square input, got {inputs.shape}")
        clip = (size - self.output_size) // 2
        if clip < 0:
            raise ValueError(f"cannot trim {size} to {self.output_size}")
        return inputs[:, clip: size - clip, clip: size - clip, :]

    def get_config(self):
        config = super().get_config()
        config["output_size"] = self.output_size
        return config


#: Our layer class for each upstream registered name found in diffraction_to_obj's config.json.
UPSTREAM_LAYER_CLASSES = MappingProxyType({
    "ptycho>IntensityScaler": IntensityScaler,
    "ptycho>ActivationLayer": ActivationLayer,
    "CenterMaskLayer": CenterMaskLayer,
    "ptycho>CenterMaskLayer": CenterMaskLayer,
    "ptycho>CombineComplexLayer": CombineComplexLayer,
    "ptycho>ReassemblePatchesLayer": ReassemblePatchesLayer,
    "ptycho>PadReconstructionLayer": PadReconstructionLayer,
    "ptycho>TrimReconstructionLayer": TrimReconstructionLayer,
})

CUSTOM_LAYERS = (
    IntensityScaler,
    ActivationLayer,
    CenterMaskLayer,
    CombineComplexLayer,
    ReassemblePatchesLayer,
    PadReconstructionLayer,
    TrimReconstructionLayer,
)
