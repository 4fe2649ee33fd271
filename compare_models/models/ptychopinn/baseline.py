"""Load upstream's supervised baseline (``baseline_model.h5``, legacy Keras HDF5) safely.

The file (written by Keras 3's legacy-h5 writer from ``scripts/run_baseline.py``) holds the
root attribute ``model_config`` (JSON of a Functional model using only standard layers) and a
``model_weights`` group with one sub-group per layer; each sub-group's ``weight_names``
attribute lists its datasets in variable order (``conv2d/kernel``, ``conv2d/bias``).  We rebuild
the graph with :func:`.build.build_functional` (standard layers only, no custom objects) and
copy the arrays by layer name.  ``optimizer_weights`` and ``training_config`` are ignored.

The model maps ``X_normalized`` (no intensity scale) to ``[amplitude, phase]``, each
(B, N, N, 1) float32; the object patch is ``amplitude * exp(i * phase)``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ..finite_weights import check_finite_weights
from ..interface import UNRECORDED_PROTOCOL, describe_basics
from .archive import PtychoPINNFormatError
from .build import BuiltGraph, build_functional

__all__ = [
    "BASELINE_FILENAME",
    "MODEL_FORMAT",
    "LoadedBaseline",
    "find_baseline_file",
    "load_baseline",
    "predict_baseline",
    "combine_amplitude_phase",
]

BASELINE_FILENAME = "baseline_model.h5"
MODEL_FORMAT = "PtychoPINN baseline_model.h5"


@dataclass(frozen=True, eq=False)
class LoadedBaseline:
    """The rebuilt baseline; implements :class:`~compare_models.models.interface.LoadedModel`.

    Attributes
    ----------
    graph : BuiltGraph
        ``graph.model``: (B, N, N, 1) float32 -> [amplitude, phase], each (B, N, N, 1).
    patch_size : int
        N.
    keras_version : str or None
        Keras version recorded in the file, for information.
    path : Path
        The ``baseline_model.h5`` read.
    """

    graph: BuiltGraph
    patch_size: int
    keras_version: str | None
    path: Path

    kind = "baseline"
    gridsize = 1
    #: PtychoPINN's supervised baseline (PtychoNN-style), as PtychoPINN's TensorFlow code builds it.
    architecture = "ptychopinn-baseline"
    label = "PtychoPINN supervised baseline (TensorFlow backend)"
    #: PtychoPINN's files do not record what the network was trained on.
    training_protocol = UNRECORDED_PROTOCOL

    @property
    def model(self):
        """The rebuilt ``keras.Model``."""
        return self.graph.model

    @property
    def model_format(self) -> str:
        """``"PtychoPINN baseline_model.h5"``."""
        return MODEL_FORMAT

    def check_compatible(self, dataset) -> None:
        """Raise :class:`~compare_models.errors.BundleError` for another N."""
        from ..interface import check_patch_size

        check_patch_size(self, dataset)

    def prepare_inputs(self, dataset):
        """``f * amplitude`` per position (PtychoPINN's factor f, no intensity scale); each
        patch sits at its own scan position."""
        from ..interface import PreparedInputs
        from . import inputs

        amplitude = dataset.diffraction_amplitude
        groups = inputs.group_neighbours(dataset.positions_xy, 1)
        factor = inputs.normalization_factor(amplitude, groups)

        def build(indices):
            return (inputs.baseline_inputs(inputs.normalized_group(amplitude, groups[indices], factor)),)

        details = {
            "normalisation": "PtychoPINN: f * amplitude (no intensity scale), "
            "f = sqrt((N/2)^2 / mean over patterns of sum amplitude^2)",
            "normalization_factor": float(factor),
            "patch_position": "scan position",
        }
        positions = np.asarray(dataset.positions_xy, dtype=np.float64).copy()
        return PreparedInputs(positions_xy=positions, build=build, details=details)

    def input_specs(self, batch_size: int):
        """Normalised diffraction (B, N, N, 1) float32."""
        return (((batch_size, self.patch_size, self.patch_size, 1), "float32"),)

    def patches_from_outputs(self, outputs):
        """``[amplitude, phase]`` -> ``amplitude * exp(i * phase)``, (B, N, N) complex64."""
        from keras import ops

        amplitude, phase = outputs
        return ops.polar(ops.cast(amplitude[..., 0], "float32"), ops.cast(phase[..., 0], "float32"))

    def describe(self) -> dict:
        """Format, N and the Keras version that wrote the file."""
        return {
            **describe_basics(self),
            "keras_version": self.keras_version,
            "outputs": "amplitude, phase (object = amplitude * exp(i * phase))",
        }


def find_baseline_file(directory: str | os.PathLike) -> str:
    """The single ``baseline_model.h5`` below ``directory``.

    Upstream's ``compare_models.py`` takes the first one ``os.walk`` meets (run_baseline.py
    nests it as ``<dir>/<dd-mm-yyyy-HH.MM.SS>_baseline_gs<k>/baseline_model.h5``); here more
    than one is an error rather than a filesystem-order-dependent choice.
    """
    directory = os.fspath(directory)
    if os.path.isfile(directory):
        return directory
    found = sorted(
        os.path.join(root, name)
        for root, _dirs, files in os.walk(directory)
        for name in files
        if name == BASELINE_FILENAME
    )
    if not found:
        raise PtychoPINNFormatError(f"{directory}: no {BASELINE_FILENAME} below this directory")
    if len(found) > 1:
        raise PtychoPINNFormatError(
            f"{directory}: {len(found)} {BASELINE_FILENAME} files below it ({', '.join(found)}); "
            "pass the one to compare"
        )
    return found[0]


def _text_attr(h5: h5py.File, key: str, source: str) -> str:
    if key not in h5.attrs:
        raise PtychoPINNFormatError(f"{source}: no root attribute '{key}' (weights-only file?)")
    value = h5.attrs[key]
    return value.decode() if isinstance(value, bytes) else str(value)


def _names(attr) -> list[str]:
    return [n.decode() if isinstance(n, bytes) else str(n) for n in np.asarray(attr).ravel()]


def load_baseline(path: str | os.PathLike) -> LoadedBaseline:
    """Rebuild the baseline from ``baseline_model.h5`` (or a directory containing one).

    Raises
    ------
    PtychoPINNFormatError
        Unreadable/truncated file, missing ``model_config`` or weights, shape mismatch, a
        non-standard layer, or a weight that is not finite (the message names the layer and
        weight).
    """
    source = find_baseline_file(path)
    try:
        h5 = h5py.File(source, "r")
    except (OSError, ValueError) as exc:
        raise PtychoPINNFormatError(f"{source}: not a readable HDF5 file, truncated or corrupt ({exc})") from exc
    with h5:
        try:
            model_config = json.loads(_text_attr(h5, "model_config", source))
        except json.JSONDecodeError as exc:
            raise PtychoPINNFormatError(f"{source}: attribute 'model_config' is not JSON ({exc})") from exc
        keras_version = h5.attrs.get("keras_version")
        keras_version = keras_version.decode() if isinstance(keras_version, bytes) else keras_version
        graph = build_functional(model_config, None, f"{source}!model_config")
        if "model_weights" not in h5:
            raise PtychoPINNFormatError(f"{source}: no 'model_weights' group")
        group = h5["model_weights"]
        try:
            _assign_legacy_weights(graph, group, source)
        except (OSError, KeyError) as exc:
            raise PtychoPINNFormatError(f"{source}: cannot read weights ({exc})") from exc
    check_finite_weights(graph.model, str(source), error=PtychoPINNFormatError)
    if len(graph.model.inputs) != 1 or len(graph.model.outputs) != 2:
        raise PtychoPINNFormatError(
            f"{source}: expected 1 input and 2 outputs (amplitude, phase), got "
            f"{len(graph.model.inputs)} and {len(graph.model.outputs)}"
        )
    shape = tuple(graph.model.inputs[0].shape[1:])
    if len(shape) != 3 or shape[0] != shape[1] or shape[0] is None:
        raise PtychoPINNFormatError(f"{source}: input shape {shape} is not (N, N, C)")
    if shape[2] != 1:
        raise PtychoPINNFormatError(
            f"{source}: a baseline with {shape[2]} input channels (gridsize "
            f"{int(round(shape[2] ** 0.5))}); compare-models reads gridsize-1 baselines only"
        )
    for output in graph.model.outputs:
        if tuple(output.shape[1:]) != shape:
            raise PtychoPINNFormatError(f"{source}: output shape {tuple(output.shape[1:])} is not {shape}")
    return LoadedBaseline(graph, int(shape[0]), keras_version, Path(source))


def _assign_legacy_weights(graph: BuiltGraph, group: h5py.Group, source: str) -> None:
    file_layers = set(_names(group.attrs.get("layer_names", list(group.keys()))))
    for name, _cls in graph.layer_order:
        layer = graph.model.get_layer(name)
        if not layer.weights:
            continue
        if name not in file_layers or name not in group:
            raise PtychoPINNFormatError(f"{source}: no weights for layer {name!r}")
        sub = group[name]
        weight_names = _names(sub.attrs.get("weight_names", []))
        if len(weight_names) != len(layer.weights):
            raise PtychoPINNFormatError(
                f"{source}: layer {name!r} has {len(weight_names)} stored arrays, needs "
                f"{len(layer.weights)}"
            )
        arrays = [np.asarray(sub[w][()]) for w in weight_names]
        for var, arr in zip(layer.weights, arrays, strict=True):
            if tuple(var.shape) != arr.shape:
                raise PtychoPINNFormatError(
                    f"{source}: '{name}/{var.name}' stored shape {arr.shape} != {tuple(var.shape)}"
                )
        layer.set_weights([a.astype(np.float32) for a in arrays])
    model_names = {n for n, _ in graph.layer_order}
    extra = sorted(
        n for n in file_layers - model_names
        if n in group and len(_names(group[n].attrs.get("weight_names", []))) > 0
    )
    if extra:
        raise PtychoPINNFormatError(f"{source}: weights for layers not in the model: {extra}")


def predict_baseline(loaded: LoadedBaseline, x_normalized: np.ndarray, batch_size: int = 16
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Amplitude and phase patches, each (B, N, N, 1) float32.

    Parameters
    ----------
    x_normalized : numpy.ndarray
        (B, N, N, 1) float32 normalised diffraction amplitudes, NOT multiplied by the
        intensity scale (upstream compare_models.py feeds the baseline this way).
    """
    x = np.asarray(x_normalized, dtype=np.float32)
    n = loaded.patch_size
    if x.ndim != 4 or x.shape[1:] != (n, n, 1):
        raise ValueError(f"input shape {x.shape}, expected (B, {n}, {n}, 1)")
    amp, phase = loaded.model.predict(x, batch_size=batch_size, verbose=0)
    return np.asarray(amp, np.float32), np.asarray(phase, np.float32)


def combine_amplitude_phase(amplitude: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """``amplitude * exp(i * phase)`` as complex64, computed as upstream compare_models.py does."""
    amp = np.asarray(amplitude, np.float32).astype(np.complex64)
    return amp * np.exp(1j * np.asarray(phase, np.float32).astype(np.complex64))
