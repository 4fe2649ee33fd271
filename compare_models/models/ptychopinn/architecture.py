"""PtychoPINN's ``diffraction_to_obj`` network made from its settings, for training here.

:func:`model_config` writes the Keras functional config that PtychoPINN's ``ptycho/model.py``
saves as ``diffraction_to_obj/config.json`` for the given settings (layer names, classes,
settings and connections as PtychoPINN's code creates them), and :func:`build_network` builds it
with :func:`compare_models.models.ptychopinn.build.build_pinn`, the same allow-listed
interpreter that reads PtychoPINN's own files. So the network trained by
``ptycho-study train --architecture ptychopinn`` is the one PtychoPINN users have, layer for
layer (tests/test_ptychopinn_architecture.py builds both from PtychoPINN's own config.json and
from these settings and checks they agree).

The topology, for N = 64 (N = 128 and 256 add one encoder and one decoder block each)::

    input (B, N, N, C) -> IntensityScaler -> 3 x [Conv-Conv-MaxPool] (f = 32, 64, 128 x scale)
      amplitude decoder: 2 x [Conv-Conv-UpSample] (64, 32 x scale) -> channels [:-4]: Conv(C)
        -> sigmoid -> zero-pad N/4 (the central N/2 square) + channels [-4:]: [Conv-Conv-Up]
        -> Conv(C) -> swish -> x border mask (probe_big) -> add
      phase decoder: the same with pi tanh
    -> CombineComplexLayer (amp exp(i phase)) -> ReassemblePatchesLayer -> TrimReconstructionLayer

Kernel initialisers are re-drawn from ``seed`` (GlorotUniform, biases zero) so the same seed
builds the same weights without global random state.

References
----------
.. [1] O. Hoidn, A. A. Mishra, A. Mehta, Sci. Rep. 13, 22789 (2023); hoidn/PtychoPINN,
   ``ptycho/model.py`` (``create_encoder``, ``create_decoder_last``).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from dataclasses import dataclass
from types import MappingProxyType

from ...errors import ConfigError

__all__ = ["PtychoPINNArchitecture", "model_config", "object_inputs", "build_network", "PTYCHOPINN_INPUT_SCALE"]

#: PtychoPINN normalises each pattern so that the mean of sum(amplitude²) is (N/2)²; this
#: project's inputs have a mean of N² per pattern. The network's IntensityScaler divides the
#: project's input by 2 so PtychoPINN's convolutions see amplitudes on PtychoPINN's scale.
PTYCHOPINN_INPUT_SCALE = 2.0

_ENCODER_FILTERS = MappingProxyType({64: (32, 64, 128), 128: (16, 32, 64, 128), 256: (8, 16, 32, 64, 128)})
_DECODER_FILTERS = MappingProxyType({64: (64, 32), 128: (128, 64, 32), 256: (256, 128, 64, 32)})
_AMP_ACTIVATIONS = ("sigmoid", "swish", "softplus", "relu")
_C_OUTER = 4  # channels of the last decoder block that feed the border branch


@dataclass(frozen=True)
class PtychoPINNArchitecture:
    """PtychoPINN's model settings (the names of its ``ModelConfig``), for N and gridsize.

    Attributes
    ----------
    N, gridsize : int
        Pattern size (64, 128 or 256, as PtychoPINN supports) and group side (C = gridsize²).
    n_filters_scale : int
        Filter multiplier (PtychoPINN's default 2: 64 filters in the first convolution at N=64).
    object_big : bool
        Patches reassembled into one canvas per group (PtychoPINN's default True).
    probe_big : bool
        A swish branch predicts the border outside the central N/2 square (default True).
    pad_object : bool
        The central N/2 prediction is zero-padded to N (default True).
    amp_activation : str
        ``sigmoid`` (default), ``swish``, ``softplus`` or ``relu``.
    offset, max_position_jitter : int
        Enter the canvas side ``N + (gridsize - 1) offset + max_position_jitter`` (defaults 4 and 10).
    """

    N: int
    gridsize: int
    n_filters_scale: int = 2
    object_big: bool = True
    probe_big: bool = True
    pad_object: bool = True
    amp_activation: str = "sigmoid"
    offset: int = 4
    max_position_jitter: int = 10

    def validate(self) -> PtychoPINNArchitecture:
        if self.N not in _ENCODER_FILTERS:
            raise ConfigError(
                f"PtychoPINN's architecture is defined for N = {', '.join(map(str, _ENCODER_FILTERS))}; "
                f"the data have N = {self.N} (train this project's PINN instead: architecture compare-models)"
            )
        if not isinstance(self.gridsize, int) or self.gridsize < 1:
            raise ConfigError(f"gridsize must be an integer >= 1, got {self.gridsize!r}")
        if not isinstance(self.n_filters_scale, int) or self.n_filters_scale < 1:
            raise ConfigError(f"n_filters_scale must be an integer >= 1, got {self.n_filters_scale!r}")
        if self.amp_activation not in _AMP_ACTIVATIONS:
            raise ConfigError(f"amp_activation must be one of {', '.join(_AMP_ACTIVATIONS)}, got {self.amp_activation!r}")
        if self.probe_big and not self.pad_object:
            raise ConfigError("probe_big needs pad_object (PtychoPINN's border branch surrounds the padded centre)")
        if self.offset < 0 or self.max_position_jitter < 0:
            raise ConfigError("offset and max_position_jitter must be >= 0")
        return self

    @property
    def channels(self) -> int:
        return self.gridsize**2

    @property
    def padded_size(self) -> int:
        """Side of the reassembled canvas (PtychoPINN's ``get_padded_size``)."""
        return self.N + (self.gridsize - 1) * self.offset + self.max_position_jitter


class _Graph:
    """Accumulates functional-config entries, naming layers as Keras does (per-class counters)."""

    def __init__(self):
        self.entries: list[dict] = []
        self.shapes: dict[str, tuple] = {}
        self.counts: Counter = Counter()

    def name(self, stem: str) -> str:
        count = self.counts[stem]
        self.counts[stem] += 1
        return stem if count == 0 else f"{stem}_{count}"

    def ref(self, name: str) -> dict:
        return {"class_name": "__keras_tensor__",
                "config": {"shape": list(self.shapes[name]), "dtype": "float32", "keras_history": [name, 0, 0]}}

    def add(self, class_name, name, config, args, shape, *, module="keras.layers", registered=None):
        entry = {
            "module": module,
            "class_name": class_name,
            "config": {"name": name, "dtype": "float32", **config},
            "registered_name": registered,
            "name": name,
            "inbound_nodes": [{"args": args, "kwargs": {}}] if args is not None else [],
        }
        self.entries.append(entry)
        self.shapes[name] = shape
        return name


def _conv(graph, name, x, filters, activation):
    b, h, w, _ = graph.shapes[x]
    return graph.add("Conv2D", name, {
        "filters": filters, "kernel_size": [3, 3], "strides": [1, 1], "padding": "same",
        "data_format": "channels_last", "dilation_rate": [1, 1], "groups": 1, "activation": activation,
        "use_bias": True,
    }, [graph.ref(x)], (b, h, w, filters))


def _pool(graph, x):
    b, h, w, c = graph.shapes[x]
    return graph.add("MaxPooling2D", graph.name("max_pooling2d"), {
        "pool_size": [2, 2], "padding": "same", "strides": [2, 2], "data_format": "channels_last",
    }, [graph.ref(x)], (b, h // 2, w // 2, c))


def _up(graph, x):
    b, h, w, c = graph.shapes[x]
    return graph.add("UpSampling2D", graph.name("up_sampling2d"), {
        "size": [2, 2], "data_format": "channels_last", "interpolation": "nearest",
    }, [graph.ref(x)], (b, h * 2, w * 2, c))


def _op(graph, class_name, stem, args, shape, module="keras.src.ops.numpy"):
    name = graph.name(stem)
    entry_args = [a if not isinstance(a, str) else graph.ref(a) for a in args]
    graph.add(class_name, name, {}, entry_args, shape, module=module, registered=class_name)
    graph.entries[-1]["config"] = {"name": name}
    return name


def _channel_slice(graph, x, start, stop):
    b, h, w, c = graph.shapes[x]
    key = [{"class_name": "__ellipsis__", "config": {}},
           {"class_name": "__slice__", "config": {"start": start, "stop": stop, "step": None}}]
    width = len(range(c)[slice(start, stop)])
    return _op(graph, "GetItem", "get_item", [x, key], (b, h, w, width))


def _decoder(graph, arch, code, conv_names, act_name, act_config, prefix):
    """One decoder (``create_decoder_amp`` / ``create_decoder_phase``) on ``code``."""
    conv1, conv2, base, outer = conv_names
    x = code
    names = iter(base)
    for filters in _DECODER_FILTERS[arch.N]:
        x = _conv(graph, next(names), x, arch.n_filters_scale * filters, "relu")
        x = _conv(graph, next(names), x, arch.n_filters_scale * filters, "relu")
        x = _up(graph, x)
    n, c = arch.N, arch.channels
    if arch.pad_object:
        inner = _channel_slice(graph, x, None, -_C_OUTER)
        inner = _conv(graph, conv1, inner, c, "linear")
        b, h, w, _ = graph.shapes[inner]
        inner = graph.add("ActivationLayer", act_name, act_config, [graph.ref(inner)], (b, h, w, c),
                          module="ptycho.custom_layers", registered="ptycho>ActivationLayer")
        pad = n // 4
        inner = graph.add("ZeroPadding2D", f"{prefix}_padded", {
            "padding": [[pad, pad], [pad, pad]], "data_format": "channels_last",
        }, [graph.ref(inner)], (b, h + 2 * pad, w + 2 * pad, c))
        if not arch.probe_big:
            return inner
        border = _channel_slice(graph, x, -_C_OUTER, None)
        scale_factor = 2048 // n
        border = _conv(graph, outer[0], border, arch.n_filters_scale * scale_factor, "relu")
        border = _conv(graph, outer[1], border, arch.n_filters_scale * scale_factor, "relu")
        border = _up(graph, border)
        border = _conv(graph, conv2, border, c, "linear")
        shape = graph.shapes[border]
        border = _op(graph, "Silu", "silu", [border], shape, module="keras.src.ops.nn")
        mask = graph.add("CenterMaskLayer", graph.name("center_mask_layer"), {"N": n, "c": 1, "kind": "border"},
                         [graph.ref(border)], (shape[0], n, n, 1), module="ptycho.tf_helper",
                         registered="CenterMaskLayer")
        border = _op(graph, "Multiply", "multiply", [border, mask], shape)
        return _op(graph, "Add", "add", [inner, border], shape)
    scale_factor = 2048 // n
    x = _conv(graph, outer[0], x, arch.n_filters_scale * scale_factor, "relu")
    x = _conv(graph, outer[1], x, arch.n_filters_scale * scale_factor, "relu")
    x = _up(graph, x)
    x = _conv(graph, conv2, x, c, "linear")
    b, h, w, _ = graph.shapes[x]
    return graph.add("ActivationLayer", act_name, act_config, [graph.ref(x)], (b, h, w, c),
                     module="ptycho.custom_layers", registered="ptycho>ActivationLayer")


def model_config(arch: PtychoPINNArchitecture) -> dict:
    """The functional config of PtychoPINN's ``diffraction_to_obj`` for ``arch``.

    Layers are named in the order PtychoPINN's code creates them (encoder convolutions, then
    each decoder's two output convolutions before its blocks), which is how Keras numbers
    ``conv2d``, ``conv2d_1``, ...; the returned dict is what :func:`~.build.build_functional`
    and :func:`~.build.parse_pinn_config` read.
    """
    arch = arch.validate()
    graph = _Graph()
    n, c = arch.N, arch.channels
    depth_dec = len(_DECODER_FILTERS[n])
    graph.add("InputLayer", "input", {"batch_shape": [None, n, n, c]}, None, (None, n, n, c))
    graph.entries[-1]["config"] = {"batch_shape": [None, n, n, c], "dtype": "float32", "name": "input"}
    x = graph.add("IntensityScaler", "intensity_scaler", {}, [[graph.ref("input")]], (None, n, n, c),
                  module="ptycho.model", registered="ptycho>IntensityScaler")
    conv_names = (f"conv2d_{k}" if k else "conv2d" for k in itertools.count())
    for filters in _ENCODER_FILTERS[n]:
        x = _conv(graph, next(conv_names), x, arch.n_filters_scale * filters, "relu")
        x = _conv(graph, next(conv_names), x, arch.n_filters_scale * filters, "relu")
        x = _pool(graph, x)
    code = x

    def decoder_names():
        # PtychoPINN creates both output convolutions first, then the blocks; the outer block
        # only when it is used (the border branch, or no central padding).
        conv1, conv2 = next(conv_names), next(conv_names)
        base = [next(conv_names) for _ in range(2 * depth_dec)]
        used = arch.probe_big or not arch.pad_object
        outer = [next(conv_names) for _ in range(2)] if used else []
        return conv1, conv2, base, outer

    amp = _decoder(graph, arch, code, decoder_names(), "amp",
                   {"activation_name": arch.amp_activation, "scale": 1.0}, "amp")
    phase = _decoder(graph, arch, code, decoder_names(), "phi",
                     {"activation_name": "tanh", "scale": math.pi}, "phase")
    obj = graph.add("CombineComplexLayer", "obj", {"use_polar": True}, [[graph.ref(amp), graph.ref(phase)]],
                    (None, n, n, c), module="ptycho.custom_layers", registered="ptycho>CombineComplexLayer")
    graph.add("InputLayer", "input_positions", {}, None, (None, 1, 2, c))
    graph.entries[-1]["config"] = {"batch_shape": [None, 1, 2, c], "dtype": "float32", "name": "input_positions"}
    if arch.object_big:
        size = arch.padded_size
        padded = graph.add("ReassemblePatchesLayer", "padded_obj_2",
                           {"padded_size": size, "N": n, "gridsize": arch.gridsize},
                           [[graph.ref(obj), graph.ref("input_positions")]], (None, size, size, 1),
                           module="ptycho.custom_layers", registered="ptycho>ReassemblePatchesLayer")
    else:
        padded = graph.add("PadReconstructionLayer", "padded_obj_2", {"padded_size": None}, [graph.ref(obj)],
                           (None, n, n, 1), module="ptycho.custom_layers",
                           registered="ptycho>PadReconstructionLayer")
    graph.add("TrimReconstructionLayer", "trimmed_obj", {"output_size": n}, [graph.ref(padded)], (None, n, n, 1),
              module="ptycho.custom_layers", registered="ptycho>TrimReconstructionLayer")
    return {
        "class_name": "Functional",
        "config": {
            "name": "functional",
            "layers": graph.entries,
            "input_layers": [["input", 0, 0], ["input_positions", 0, 0]],
            "output_layers": [["trimmed_obj", 0, 0]],
        },
    }


def object_inputs(config: dict) -> tuple[str, str]:
    """Names of the two nodes feeding ``obj`` (CombineComplexLayer): amplitude and phase,
    (B, N, N, C) float32 each, in every member's own frame."""
    for entry in config["config"]["layers"]:
        if entry["class_name"] == "CombineComplexLayer":
            first, second = entry["inbound_nodes"][0]["args"][0]
            return first["config"]["keras_history"][0], second["config"]["keras_history"][0]
    raise ValueError("the config has no CombineComplexLayer")


def build_network(arch: PtychoPINNArchitecture, *, seed: int = 0):
    """Build ``diffraction_to_obj`` for ``arch`` with seeded initial weights.

    Returns
    -------
    graph : :class:`~.build.BuiltGraph`
        Its ``model`` maps ``[input (B, N, N, C), input_positions (B, 1, 2, C)]`` to the
        trimmed object; ``graph.tensors`` holds every node, e.g. the amplitude and phase named
        by :func:`object_inputs`.
    config : dict
        :func:`model_config` of ``arch``.
    """
    import keras

    from .build import build_pinn

    config = model_config(arch)
    graph, _ = build_pinn(config, PTYCHOPINN_INPUT_SCALE, source=f"PtychoPINN architecture N={arch.N}")
    seeds = itertools.count(int(seed) * 1000 + 500)
    for layer in graph.model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kernel = keras.initializers.GlorotUniform(seed=next(seeds))(layer.kernel.shape)
            layer.kernel.assign(kernel)
            layer.bias.assign(keras.ops.zeros(layer.bias.shape))
    return graph, config
