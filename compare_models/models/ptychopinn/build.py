"""Rebuild PtychoPINN's ``diffraction_to_obj`` network from its ``config.json``.

The Keras functional config is interpreted by our own code (:func:`build_functional`): every
node is looked up in an allow-list of standard Keras layers, a few pure Keras operations
(``GetItem``, ``Silu``, ``Multiply``, ``Add``, ...) and our own re-implementations of
PtychoPINN's layers (:mod:`.layers`).  Nothing in the file is handed to Keras' generic
deserialiser, nothing is imported by the module name written in the file, and ``Lambda`` /
``TFOpLambda`` nodes (which carry Python bytecode or arbitrary TF symbols) are refused.
Weights are then copied from ``model.weights.h5`` layer by layer (:func:`assign_weights`).

This is stricter than loading the ``.keras`` file with Keras' ``safe_mode=True``: safe mode
refuses Lambda bytecode but still resolves the class and module names written in the file;
here only the names in the allow-lists can ever be instantiated, with only the config keys
documented for each.

The settings inference needs are summarised in :class:`PtychoPINNConfig` (see
:func:`parse_pinn_config` for where each lives in ``config.json``). The encoder depth follows N
(3, 4, 5 MaxPooling2D stages for N = 64, 128, 256) and is read from the file, not assumed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import keras
import numpy as np

from . import layers as L
from .archive import KerasWeights, PtychoPINNFormatError

__all__ = [
    "ENCODER_DEPTH",
    "PtychoPINNConfig",
    "parse_pinn_config",
    "SAFE_OPERATIONS",
    "REFUSED_CLASSES",
    "STANDARD_LAYERS",
    "BuiltGraph",
    "build_functional",
    "pinn_layer_factory",
    "keras_snake_case",
    "keras_weight_paths",
    "assign_weights",
    "build_pinn",
    "intermediate_model",
]

# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------

#: Encoder depth (number of Conv-Conv-MaxPool blocks) PtychoPINN uses for each N.
ENCODER_DEPTH: Mapping[int, int] = MappingProxyType({64: 3, 128: 4, 256: 5})


@dataclass(frozen=True)
class PtychoPINNConfig:
    """Inference settings of a PtychoPINN ``diffraction_to_obj`` model, read from config.json.

    Attributes
    ----------
    N : int
        Patch (diffraction pattern) size.
    gridsize : int
        Patches per group = ``gridsize**2`` (the channel count C).
    n_filters_scale : int
        Filter multiplier: the first encoder conv has ``n_filters_scale * 2048 // N`` filters.
    encoder_depth : int
        Number of MaxPooling2D stages (3, 4, 5 for N = 64, 128, 256).
    object_big : bool
        True: patches are stitched by ``ReassemblePatchesLayer`` (output one canvas per group).
    probe_big : bool
        True: each decoder adds a swish border branch outside the central N/2 window.
    pad_object : bool
        True: the decoder's central N/2 prediction is zero-padded to N (``amp_padded``).
    padded_size : int or None
        Canvas size of ``ReassemblePatchesLayer``; None for ``object_big=False``.
    amp_activation, phase_activation : str
        ``activation_name`` of the ActivationLayers ``amp`` and ``phi``.
    phase_scale : float
        ``scale`` of ``phi`` (pi): phase = pi * tanh(.).
    use_polar : bool
        ``CombineComplexLayer.use_polar`` (True: amp*exp(i*phase)).
    """

    N: int
    gridsize: int
    n_filters_scale: int
    encoder_depth: int
    object_big: bool
    probe_big: bool
    pad_object: bool
    padded_size: int | None
    amp_activation: str
    phase_activation: str
    phase_scale: float
    use_polar: bool = True

    @property
    def channels(self) -> int:
        """Patches per group, ``gridsize**2``."""
        return self.gridsize**2


def _functional_config(model_config: Mapping, source: str) -> Mapping:
    if model_config.get("class_name") not in ("Functional", "Model"):
        raise PtychoPINNFormatError(
            f"{source}: expected a Functional model config, got class_name="
            f"{model_config.get('class_name')!r}"
        )
    inner = model_config.get("config")
    if not isinstance(inner, Mapping) or not isinstance(inner.get("layers"), list):
        raise PtychoPINNFormatError(f"{source}: model config has no 'config.layers' list")
    return inner


def _layers_by_class(inner: Mapping) -> dict[str, list[Mapping]]:
    found: dict[str, list[Mapping]] = {}
    for entry in inner["layers"]:
        found.setdefault(entry.get("class_name"), []).append(entry)
    return found


def _batch_shape(entry: Mapping) -> tuple:
    cfg = entry.get("config", {})
    shape = cfg.get("batch_shape", cfg.get("batch_input_shape"))
    if shape is None:
        raise PtychoPINNFormatError(f"input layer {entry.get('name')!r} has no batch_shape")
    return tuple(shape)


def parse_pinn_config(model_config: Mapping, source: str = "config.json") -> PtychoPINNConfig:
    """Extract :class:`PtychoPINNConfig` from a ``diffraction_to_obj`` ``config.json``.

    Where each setting lives (``layers`` = ``config["config"]["layers"]``):

    * ``N``, ``gridsize``: ``batch_shape`` of the InputLayer ``input`` = (None, N, N, gridsize**2);
      cross-checked against ``input_positions`` (None, 1, 2, C), ``TrimReconstructionLayer.
      output_size`` and ``ReassemblePatchesLayer.N/gridsize``.
    * ``padded_size``: ``ReassemblePatchesLayer.padded_size`` (layer ``padded_obj_2``).
    * ``object_big``: a ``ReassemblePatchesLayer`` is present (``PadReconstructionLayer`` if not).
    * ``probe_big``: ``CenterMaskLayer`` nodes with ``kind='border'`` are present.
    * ``pad_object``: ZeroPadding2D layers ``amp_padded`` / ``phase_padded`` are present.
    * activations: ``ActivationLayer`` ``amp`` (``activation_name``) and ``phi``
      (``activation_name``, ``scale``).
    * ``encoder_depth``: number of MaxPooling2D layers; ``n_filters_scale``: filters of the
      first Conv2D times N / 2048.

    Raises
    ------
    PtychoPINNFormatError
        A setting is missing or two places disagree.
    """
    inner = _functional_config(model_config, source)
    by_class = _layers_by_class(inner)
    by_name = {e.get("name"): e for e in inner["layers"]}

    def fail(problem: str) -> PtychoPINNFormatError:
        return PtychoPINNFormatError(f"{source}: {problem}")

    input_items = inner.get("input_layers", [])
    if input_items and isinstance(input_items[0], str):
        input_items = [input_items]
    input_names = [item[0] for item in input_items]
    if len(input_names) != 2:
        raise fail(f"expected 2 model inputs (diffraction, positions), found {input_names}")
    diff_shape = _batch_shape(by_name[input_names[0]])
    pos_shape = _batch_shape(by_name[input_names[1]])
    if len(diff_shape) != 4 or diff_shape[1] != diff_shape[2]:
        raise fail(f"input {input_names[0]!r} has shape {diff_shape}, expected (None, N, N, C)")
    n, channels = int(diff_shape[1]), int(diff_shape[3])
    gridsize = math.isqrt(channels)
    if gridsize**2 != channels:
        raise fail(f"input channel count {channels} is not a square (gridsize**2)")
    if tuple(pos_shape[1:]) != (1, 2, channels):
        raise fail(f"input {input_names[1]!r} has shape {pos_shape}, expected (None, 1, 2, {channels})")

    reassemble = by_class.get("ReassemblePatchesLayer", [])
    pad_recon = by_class.get("PadReconstructionLayer", [])
    if len(reassemble) + len(pad_recon) != 1:
        raise fail("expected exactly one ReassemblePatchesLayer or PadReconstructionLayer")
    object_big = bool(reassemble)
    padded_size = None
    if object_big:
        rcfg = reassemble[0]["config"]
        padded_size = rcfg.get("padded_size")
        if padded_size is None:
            raise fail("ReassemblePatchesLayer.padded_size is null (upstream then reads it from "
                       "params.dill, which is never unpickled here)")
        padded_size = int(padded_size)
        for key, want in (("N", n), ("gridsize", gridsize)):
            if rcfg.get(key) is not None and int(rcfg[key]) != want:
                raise fail(f"ReassemblePatchesLayer.{key}={rcfg[key]} but the input implies {want}")
    for trim in by_class.get("TrimReconstructionLayer", []):
        size = trim["config"].get("output_size")
        if size is not None and int(size) != n:
            raise fail(f"TrimReconstructionLayer.output_size={size} but N={n}")

    masks = by_class.get("CenterMaskLayer", [])
    probe_big = any(m["config"].get("kind") == "border" for m in masks)
    pad_object = "amp_padded" in by_name or "phase_padded" in by_name

    activations = {e.get("name"): e["config"] for e in by_class.get("ActivationLayer", [])}
    if "amp" not in activations or "phi" not in activations:
        raise fail(f"ActivationLayers 'amp' and 'phi' expected, found {sorted(activations)}")

    depth = len(by_class.get("MaxPooling2D", []))
    expected_depth = ENCODER_DEPTH.get(n)
    if expected_depth is None:
        raise fail(f"N={n} is not one PtychoPINN supports ({sorted(ENCODER_DEPTH)})")
    if depth != expected_depth:
        raise fail(f"{depth} MaxPooling2D stages but PtychoPINN uses {expected_depth} for N={n}")
    convs = by_class.get("Conv2D", [])
    if not convs:
        raise fail("no Conv2D layers")
    first_filters = int(convs[0]["config"]["filters"])
    scale, rem = divmod(first_filters * n, 2048)
    if rem or scale < 1:
        raise fail(f"first Conv2D has {first_filters} filters, not a multiple of 2048/N={2048 // n}")
    combine = by_class.get("CombineComplexLayer", [])
    use_polar = bool(combine[0]["config"].get("use_polar", True)) if combine else True

    return PtychoPINNConfig(
        N=n,
        gridsize=gridsize,
        n_filters_scale=scale,
        encoder_depth=depth,
        object_big=object_big,
        probe_big=probe_big,
        pad_object=pad_object,
        padded_size=padded_size,
        amp_activation=str(activations["amp"].get("activation_name", "sigmoid")),
        phase_activation=str(activations["phi"].get("activation_name", "tanh")),
        phase_scale=float(activations["phi"].get("scale", 1.0)),
        use_polar=use_polar,
    )


# --------------------------------------------------------------------------------------------
# Generic functional-config interpreter
# --------------------------------------------------------------------------------------------

_SAFE_ACTIVATIONS = ("linear", "relu", "sigmoid", "tanh", "softplus", "swish", "silu", None)

#: Keras operations (serialised by Keras 3 as graph nodes, module ``keras.src.ops.*``) that
#: may appear, with the function that re-creates each.  They take no configuration.
SAFE_OPERATIONS: Mapping[str, Callable[..., Any]] = MappingProxyType({
    "Add": keras.ops.add,
    "Subtract": keras.ops.subtract,
    "Multiply": keras.ops.multiply,
    "Silu": keras.ops.silu,
    "Swish": keras.ops.silu,
    "Sigmoid": keras.ops.sigmoid,
    "Tanh": keras.ops.tanh,
    "Relu": keras.ops.relu,
    "Softplus": keras.ops.softplus,
    "GetItem": lambda x, key: x[tuple(key) if isinstance(key, list) else key],
})

#: Node types that would execute code stored in the file; always refused.
REFUSED_CLASSES = ("Lambda", "TFOpLambda", "SlicingOpLambda")


def _check_float32_policy(entry: Mapping) -> None:
    dtype = entry["config"].get("dtype")
    name = dtype.get("config", {}).get("name") if isinstance(dtype, Mapping) else dtype
    if name not in (None, "float32"):
        raise PtychoPINNFormatError(
            f"layer {entry.get('name')!r}: dtype policy {name!r} not supported (float32 only)"
        )


def _activation(entry: Mapping):
    act = entry["config"].get("activation")
    if act not in _SAFE_ACTIVATIONS:
        raise PtychoPINNFormatError(f"layer {entry.get('name')!r}: activation {act!r} not allowed")
    return "silu" if act == "swish" else act


def _standard_layer(entry: Mapping) -> keras.layers.Layer:
    """A standard Keras layer from an allow-listed subset of its config keys."""
    cls, cfg, name = entry["class_name"], entry["config"], entry["name"]
    _check_float32_policy(entry)
    fmt = cfg.get("data_format", "channels_last")
    if cls == "Conv2D":
        return keras.layers.Conv2D(
            filters=int(cfg["filters"]),
            kernel_size=tuple(cfg["kernel_size"]),
            strides=tuple(cfg.get("strides", (1, 1))),
            padding=cfg.get("padding", "valid"),
            data_format=fmt,
            dilation_rate=tuple(cfg.get("dilation_rate", (1, 1))),
            groups=int(cfg.get("groups", 1)),
            activation=_activation(entry),
            use_bias=bool(cfg.get("use_bias", True)),
            name=name,
        )
    if cls == "MaxPooling2D":
        strides = cfg.get("strides")
        return keras.layers.MaxPooling2D(
            pool_size=tuple(cfg["pool_size"]),
            strides=None if strides is None else tuple(strides),
            padding=cfg.get("padding", "valid"),
            data_format=fmt,
            name=name,
        )
    if cls == "UpSampling2D":
        return keras.layers.UpSampling2D(
            size=tuple(cfg["size"]),
            data_format=fmt,
            interpolation=cfg.get("interpolation", "nearest"),
            name=name,
        )
    if cls == "ZeroPadding2D":
        return keras.layers.ZeroPadding2D(
            padding=tuple(tuple(p) for p in cfg["padding"]), data_format=fmt, name=name
        )
    raise KeyError(cls)


STANDARD_LAYERS = ("Conv2D", "MaxPooling2D", "UpSampling2D", "ZeroPadding2D")

LayerFactory = Callable[[Mapping], "keras.layers.Layer | None"]


@dataclass(frozen=True)
class BuiltGraph:
    """A model rebuilt from a functional config.

    Attributes
    ----------
    model : keras.Model
    tensors : Mapping[str, KerasTensor]
        First output of every config node, keyed by the node's name in the file (so op nodes
        such as ``add``/``add_1`` can be inspected although Keras names them differently).
    layer_order : tuple of (name, class_name)
        The config's layer entries (not operations) in file order, as Keras numbered them in
        ``model.weights.h5``.
    """

    model: keras.Model
    tensors: Mapping[str, Any]
    layer_order: tuple[tuple[str, str], ...]


class _NotReady(Exception):
    pass


def _resolve(arg, tensors: Mapping, where: str):
    if isinstance(arg, list):
        return [_resolve(a, tensors, where) for a in arg]
    if isinstance(arg, Mapping):
        kind = arg.get("class_name")
        if kind == "__keras_tensor__":
            key = tuple(arg["config"]["keras_history"])
            if key not in tensors:
                raise _NotReady(key)
            return tensors[key]
        if kind == "__ellipsis__":
            return Ellipsis
        if kind == "__slice__":
            c = arg.get("config", {})
            return slice(c.get("start"), c.get("stop"), c.get("step"))
        raise PtychoPINNFormatError(f"{where}: unsupported argument object {kind!r}")
    if arg is None or isinstance(arg, (bool, int, float, str)):
        return arg
    raise PtychoPINNFormatError(f"{where}: unsupported argument {arg!r}")


def build_functional(
    model_config: Mapping,
    custom_layer: LayerFactory | None = None,
    source: str = "config",
) -> BuiltGraph:
    """Interpret a Keras 3 functional model config with an allow-list.

    Parameters
    ----------
    model_config : Mapping
        ``{"class_name": "Functional", "config": {"layers": [...], "input_layers": [...],
        "output_layers": [...]}}`` as in ``config.json`` or a legacy h5 ``model_config``.
    custom_layer : callable, optional
        ``entry -> Layer`` for non-standard layers; returns None for unknown classes.
    source : str
        Used in error messages.

    Returns
    -------
    BuiltGraph

    Raises
    ------
    PtychoPINNFormatError
        Unknown or refused node types, Keras 2 node format, dangling inputs.
    """
    inner = _functional_config(model_config, source)
    tensors: dict[tuple, Any] = {}
    by_name: dict[str, Any] = {}
    layer_order: list[tuple[str, str]] = []
    pending: list[tuple[Mapping, int, Mapping, Callable]] = []

    for entry in inner["layers"]:
        cls = entry.get("class_name")
        name = entry.get("name") or entry.get("config", {}).get("name")
        entry = {**entry, "name": name}
        where = f"{source}: layer {name!r} ({cls})"
        if cls in REFUSED_CLASSES:
            raise PtychoPINNFormatError(
                f"{where}: {cls} nodes hold Python code or arbitrary TF symbols; refusing to load"
            )
        module = str(entry.get("module") or "")
        if cls == "InputLayer":
            layer_order.append((name, cls))
            dtype = entry["config"].get("dtype", "float32")
            if isinstance(dtype, Mapping):  # a serialised DTypePolicy
                dtype = dtype.get("config", {}).get("name", "float32")
            tensor = keras.Input(batch_shape=_batch_shape(entry), dtype=dtype, name=name)
            tensors[(name, 0, 0)] = tensor
            by_name[name] = tensor
            continue
        if cls in SAFE_OPERATIONS and (not module or module.startswith("keras.src.ops")):
            if set(entry.get("config", {})) - {"name"}:
                raise PtychoPINNFormatError(f"{where}: operation with parameters is not supported")
            fn = SAFE_OPERATIONS[cls]
        elif cls in STANDARD_LAYERS and (not module or module.startswith("keras")):
            layer_order.append((name, cls))
            fn = _standard_layer(entry)
        else:
            layer = custom_layer(entry) if custom_layer is not None else None
            if layer is None:
                raise PtychoPINNFormatError(f"{where}: node type not in the allow-list")
            layer_order.append((name, cls))
            fn = layer
        nodes = entry.get("inbound_nodes", [])
        if not nodes:
            raise PtychoPINNFormatError(f"{where}: node has no inputs")
        for index, node in enumerate(nodes):
            if not isinstance(node, Mapping) or "args" not in node:
                raise PtychoPINNFormatError(f"{where}: Keras 2 style inbound_nodes are not supported")
            if node.get("kwargs"):
                raise PtychoPINNFormatError(f"{where}: call keyword arguments are not supported")
            pending.append((entry, index, node, fn))

    while pending:
        remaining = []
        for entry, index, node, fn in pending:
            where = f"{source}: layer {entry['name']!r}"
            try:
                args = _resolve(node["args"], tensors, where)
            except _NotReady:
                remaining.append((entry, index, node, fn))
                continue
            out = fn(*args)
            outs = out if isinstance(out, (list, tuple)) else [out]
            for k, tensor in enumerate(outs):
                tensors[(entry["name"], index, k)] = tensor
            by_name.setdefault(entry["name"], outs[0])
        if len(remaining) == len(pending):
            names = sorted({e["name"] for e, *_ in remaining})
            raise PtychoPINNFormatError(f"{source}: unresolved inputs for layers {names}")
        pending = remaining

    def lookup(items, what):
        if items and isinstance(items[0], str):  # a single [name, node, tensor] triple
            items = [items]
        found = []
        for item in items:
            key = tuple(item)
            if key not in tensors:
                raise PtychoPINNFormatError(f"{source}: {what} {key} not produced by any layer")
            found.append(tensors[key])
        return found

    inputs = lookup(inner.get("input_layers", []), "input")
    outputs = lookup(inner.get("output_layers", []), "output")
    if not inputs or not outputs:
        raise PtychoPINNFormatError(f"{source}: model has no inputs or no outputs")
    model = keras.Model(
        inputs=inputs if len(inputs) > 1 else inputs[0],
        outputs=outputs if len(outputs) > 1 else outputs[0],
        name=inner.get("name", "rebuilt"),
    )
    return BuiltGraph(model, MappingProxyType(by_name), tuple(layer_order))


# --------------------------------------------------------------------------------------------
# PtychoPINN layers
# --------------------------------------------------------------------------------------------

_CUSTOM_CLASS_NAMES = MappingProxyType({cls.__name__: cls for cls in L.CUSTOM_LAYERS})


def pinn_layer_factory(intensity_scale: float) -> LayerFactory:
    """Factory for :func:`build_functional` mapping upstream's custom layers to ours.

    Only the documented config keys of each layer are read.
    """

    def make(entry: Mapping):
        cls, cfg, name = entry.get("class_name"), entry.get("config", {}), entry["name"]
        registered = entry.get("registered_name")
        module = str(entry.get("module") or "")
        known = registered in L.UPSTREAM_LAYER_CLASSES or (
            cls in _CUSTOM_CLASS_NAMES and module.startswith("ptycho")
        )
        if not known:
            return None
        if cls == "IntensityScaler":
            return L.IntensityScaler.from_intensity_scale(intensity_scale, name=name)
        if cls == "ActivationLayer":
            return L.ActivationLayer(
                activation_name=cfg.get("activation_name", "sigmoid"),
                scale=float(cfg.get("scale", 1.0)),
                name=name,
            )
        if cls == "CenterMaskLayer":
            return L.CenterMaskLayer(N=int(cfg["N"]), c=int(cfg["c"]),
                                     kind=cfg.get("kind", "center"), name=name)
        if cls == "CombineComplexLayer":
            return L.CombineComplexLayer(use_polar=bool(cfg.get("use_polar", True)), name=name)
        if cls == "ReassemblePatchesLayer":
            missing = [k for k in ("padded_size", "N", "gridsize") if cfg.get(k) is None]
            if missing:
                raise PtychoPINNFormatError(
                    f"layer {name!r}: ReassemblePatchesLayer config lacks {missing} (upstream "
                    "falls back to params.dill, which is never unpickled here)"
                )
            return L.ReassemblePatchesLayer(int(cfg["padded_size"]), int(cfg["N"]),
                                            int(cfg["gridsize"]), name=name)
        if cls == "PadReconstructionLayer":
            return L.PadReconstructionLayer(padded_size=cfg.get("padded_size"), name=name)
        if cls == "TrimReconstructionLayer":
            if cfg.get("output_size") is None:
                raise PtychoPINNFormatError(f"layer {name!r}: TrimReconstructionLayer.output_size is null")
            return L.TrimReconstructionLayer(int(cfg["output_size"]), name=name)
        return None

    return make


# --------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------

def keras_snake_case(class_name: str) -> str:
    """Keras' ``to_snake_case`` (the stem of a layer's path in ``model.weights.h5``)."""
    name = re.sub(r"\W+", "", class_name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def keras_weight_paths(layer_order: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Layer name -> ``layers/<snake_case>[_k]`` as Keras 3 numbers ``model.layers`` on save."""
    used: dict[str, int] = {}
    paths = {}
    for name, cls in layer_order:
        stem = keras_snake_case(cls)
        count = used.get(stem, 0)
        used[stem] = count + 1
        paths[name] = f"layers/{stem}" if count == 0 else f"layers/{stem}_{count}"
    return paths


def assign_weights(built: BuiltGraph, weights: KerasWeights, match: str = "auto") -> int:
    """Copy arrays from a Keras 3 ``model.weights.h5`` into the rebuilt model.

    Parameters
    ----------
    built : BuiltGraph
    weights : KerasWeights
    match : {"auto", "name", "path"}
        ``name``: by the layer-name attribute Keras writes on each ``vars`` group; ``path``: by
        Keras' path rule (:func:`keras_weight_paths`) over the config's layer order; ``auto``:
        names if every group with arrays has one, else paths.

    Returns
    -------
    int
        Number of layers that received weights.

    Raises
    ------
    PtychoPINNFormatError
        A layer's weights are missing, have the wrong count or shape, or the file holds
        weights that no layer takes.
    """
    holding = {p: e for p, e in weights.entries.items() if e.arrays}
    if match == "auto":
        match = "name" if all(e.name for e in holding.values()) else "path"
    if match == "name":
        table = {e.name: e for e in holding.values()}
    elif match == "path":
        paths = keras_weight_paths(built.layer_order)
        table = {name: holding[path] for name, path in paths.items() if path in holding}
    else:
        raise ValueError(f"match must be 'auto', 'name' or 'path', got {match!r}")

    used: set[str] = set()
    count = 0
    for name, _cls in built.layer_order:
        layer = built.model.get_layer(name)
        expected = layer.weights
        entry = table.get(name)
        if not expected:
            if entry is not None:
                raise PtychoPINNFormatError(
                    f"{weights.source}: '{entry.path}' holds {len(entry.arrays)} arrays for "
                    f"layer {name!r}, which has no weights"
                )
            continue
        if entry is None:
            raise PtychoPINNFormatError(f"{weights.source}: no weights for layer {name!r} (by {match})")
        if len(entry.arrays) != len(expected):
            raise PtychoPINNFormatError(
                f"{weights.source}: '{entry.path}' has {len(entry.arrays)} arrays, layer "
                f"{name!r} needs {len(expected)}"
            )
        for var, arr in zip(expected, entry.arrays, strict=True):
            if tuple(var.shape) != arr.shape:
                raise PtychoPINNFormatError(
                    f"{weights.source}: '{entry.path}' array shape {arr.shape} != {tuple(var.shape)}"
                    f" for {var.path}"
                )
        layer.set_weights([np.asarray(a, dtype=np.float32) for a in entry.arrays])
        used.add(entry.path)
        count += 1
    unused = sorted(set(holding) - used)
    if unused:
        raise PtychoPINNFormatError(f"{weights.source}: weights not used by any layer: {unused}")
    return count


def build_pinn(model_config: Mapping, intensity_scale: float, source: str = "config.json"
               ) -> tuple[BuiltGraph, PtychoPINNConfig]:
    """Rebuild the network described by ``config.json`` (weights left as initialised).

    Returns
    -------
    graph : BuiltGraph
        ``graph.model`` maps ``[X * intensity_scale, input_positions]`` to (B, N, N, 1)
        complex64.
    settings : PtychoPINNConfig
    """
    settings = parse_pinn_config(model_config, source)
    graph = build_functional(model_config, pinn_layer_factory(intensity_scale), source)
    out = graph.model.outputs[0]
    if tuple(out.shape[1:]) != (settings.N, settings.N, 1):
        raise PtychoPINNFormatError(f"{source}: output shape {out.shape} is not (B, N, N, 1)")
    return graph, settings


def intermediate_model(graph: BuiltGraph, names: Sequence[str]) -> keras.Model:
    """Model returning the tensors of the named config nodes (e.g. ``"add"``, ``"obj"``)."""
    missing = [n for n in names if n not in graph.tensors]
    if missing:
        raise KeyError(f"no nodes named {missing}")
    return keras.Model(graph.model.inputs, [graph.tensors[n] for n in names])
