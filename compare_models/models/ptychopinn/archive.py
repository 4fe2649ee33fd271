"""Read PtychoPINN's saved model bundle (``wts.h5.zip``) without unpickling anything.

Upstream's ``ModelManager.save_multiple_models`` writes a zip holding, per model
(``autoencoder``, ``diffraction_to_obj``), ``model.keras`` (a Keras 3 zip of ``config.json``,
``metadata.json`` and ``model.weights.h5``), ``model.h5`` (an empty HDF5 file whose root
attribute ``intensity_scale`` is the trained scale), ``params.dill`` and
``custom_objects.dill``, plus a top-level ``manifest.dill``.  Inference needs only
``diffraction_to_obj/model.keras`` and the ``intensity_scale`` attribute of
``diffraction_to_obj/model.h5``; the ``.dill`` members are never opened here.

Every problem is reported as :class:`PtychoPINNFormatError` (a
:class:`~compare_models.errors.BundleError`) naming the file and member.
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import h5py
import numpy as np

from ...errors import BundleError

__all__ = [
    "BUNDLE_FILENAME",
    "INFERENCE_MODEL",
    "PtychoPINNFormatError",
    "KerasArchive",
    "KerasWeights",
    "PinnBundleFiles",
    "WeightEntry",
    "read_keras_archive",
    "read_keras_weights",
    "read_intensity_scale",
    "read_pinn_bundle",
    "resolve_bundle_path",
]

BUNDLE_FILENAME = "wts.h5.zip"
INFERENCE_MODEL = "diffraction_to_obj"


class PtychoPINNFormatError(BundleError):
    """A PtychoPINN file is missing, truncated or not in the expected format.

    The message names the file and, inside an archive, the member.
    """


@dataclass(frozen=True)
class WeightEntry:
    """Variables of one layer in a Keras 3 ``model.weights.h5``.

    Attributes
    ----------
    path : str
        Group path without the trailing ``/vars``, e.g. ``"layers/conv2d_11"``.
    name : str or None
        The ``name`` attribute Keras writes on the ``vars`` group (the layer name), if any.
    arrays : tuple of numpy.ndarray
        ``vars/0``, ``vars/1``, ... in index order (for Conv2D: kernel, bias).
    """

    path: str
    name: str | None
    arrays: tuple[np.ndarray, ...]


@dataclass(frozen=True)
class KerasWeights:
    """All ``vars`` groups of a Keras 3 ``model.weights.h5``, keyed by group path."""

    source: str
    entries: Mapping[str, WeightEntry]


@dataclass(frozen=True)
class KerasArchive:
    """Contents of a Keras 3 ``.keras`` zip that inference needs."""

    source: str
    config: Mapping
    weights: KerasWeights
    keras_version: str | None


@dataclass(frozen=True)
class PinnBundleFiles:
    """What inference reads from ``wts.h5.zip``.

    Attributes
    ----------
    source : str
        Path of the zip.
    model_name : str
        Sub-model read (``"diffraction_to_obj"``).
    archive : KerasArchive
        Its ``model.keras``: parsed ``config.json`` and the weight arrays.
    intensity_scale : float
        Root attribute ``intensity_scale`` of ``<model_name>/model.h5``.
    """

    source: str
    model_name: str
    archive: KerasArchive
    intensity_scale: float


def _fail(source: str, member: str | None, problem: str) -> PtychoPINNFormatError:
    where = f"{source}: member '{member}'" if member else source
    return PtychoPINNFormatError(f"{where}: {problem}")


def _read_member(zf: zipfile.ZipFile, member: str, source: str) -> bytes:
    """Bytes of one zip member; missing, truncated or corrupt members raise with their name."""
    try:
        info = zf.getinfo(member)
    except KeyError:
        names = ", ".join(sorted(zf.namelist())) or "none"
        raise _fail(source, member, f"missing from the archive (members: {names})") from None
    try:
        data = zf.read(info)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
        raise _fail(source, member, f"cannot be read, truncated or corrupt ({exc})") from exc
    if len(data) != info.file_size:
        raise _fail(source, member, f"truncated: {len(data)} of {info.file_size} bytes")
    return data


def _open_zip(data_or_path, source: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(data_or_path)
    except FileNotFoundError:
        raise _fail(source, None, "no such file") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise _fail(source, None, f"not a readable zip archive, truncated or corrupt ({exc})") from exc


def _open_h5(data: bytes, source: str, member: str) -> h5py.File:
    try:
        return h5py.File(io.BytesIO(data), "r")
    except (OSError, ValueError) as exc:
        raise _fail(source, member, f"not a readable HDF5 file, truncated or corrupt ({exc})") from exc


def read_keras_weights(data: bytes, source: str, member: str = "model.weights.h5") -> KerasWeights:
    """Read every ``.../vars`` group of a Keras 3 weights file into numpy arrays.

    Parameters
    ----------
    data : bytes
        The HDF5 file's bytes.
    source, member : str
        File and member names used in error messages.

    Returns
    -------
    KerasWeights
    """
    label = f"{source}!{member}" if member else source
    entries: dict[str, WeightEntry] = {}
    with _open_h5(data, source, member) as h5:

        def visit(name, obj):
            if not (isinstance(obj, h5py.Group) and (name == "vars" or name.endswith("/vars"))):
                return
            keys = list(obj.keys())
            if not all(k.isdigit() for k in keys):
                raise _fail(source, member, f"group '{name}' has non-numeric variables {keys}")
            arrays = tuple(np.asarray(obj[k][()]) for k in sorted(keys, key=int))
            layer_name = obj.attrs.get("name")
            if isinstance(layer_name, bytes):
                layer_name = layer_name.decode()
            path = name[: -len("/vars")] if name.endswith("/vars") else ""
            entries[path] = WeightEntry(path, None if layer_name is None else str(layer_name), arrays)

        try:
            h5.visititems(visit)
        except PtychoPINNFormatError:
            raise
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise _fail(source, member, f"cannot read the weight arrays ({exc})") from exc
    if not entries:
        raise _fail(source, member, "no Keras 3 'vars' groups found (not a Keras 3 weights file)")
    return KerasWeights(label, MappingProxyType(entries))


def read_keras_archive(data: bytes, source: str, member: str = "model.keras") -> KerasArchive:
    """Parse a Keras 3 ``.keras`` zip given as bytes: ``config.json`` and ``model.weights.h5``.

    Nothing is deserialised into Python objects other than JSON and numpy arrays.
    """
    label = f"{source}!{member}"
    zf = _open_zip(io.BytesIO(data), label)
    with zf:
        raw_config = _read_member(zf, "config.json", label)
        try:
            config = json.loads(raw_config)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _fail(label, "config.json", f"not valid JSON ({exc})") from exc
        if not isinstance(config, dict) or "config" not in config:
            raise _fail(label, "config.json", "not a Keras model config (no 'config' key)")
        keras_version = None
        if "metadata.json" in zf.namelist():
            try:
                keras_version = json.loads(_read_member(zf, "metadata.json", label)).get(
                    "keras_version"
                )
            except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
                keras_version = None
        weights = read_keras_weights(
            _read_member(zf, "model.weights.h5", label), label, "model.weights.h5"
        )
    return KerasArchive(label, config, weights, keras_version)


def read_intensity_scale(data: bytes, source: str, member: str) -> float:
    """Root attribute ``intensity_scale`` of upstream's ``model.h5`` (finite, > 0)."""
    with _open_h5(data, source, member) as h5:
        if "intensity_scale" not in h5.attrs:
            raise _fail(source, member, "has no root attribute 'intensity_scale'")
        value = np.asarray(h5.attrs["intensity_scale"])
    if value.size != 1 or not np.issubdtype(value.dtype, np.number):
        raise _fail(source, member, f"attribute 'intensity_scale' is not a number: {value!r}")
    scale = float(value.reshape(()))
    if not (math.isfinite(scale) and scale > 0):
        raise _fail(source, member, f"attribute 'intensity_scale' must be finite and > 0, got {scale}")
    return scale


def resolve_bundle_path(path: str | os.PathLike) -> str:
    """``wts.h5.zip`` itself, or a directory that holds it (as upstream's ``load_inference_bundle``)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        candidate = os.path.join(path, BUNDLE_FILENAME)
        if not os.path.isfile(candidate):
            raise PtychoPINNFormatError(f"{path}: directory holds no {BUNDLE_FILENAME}")
        return candidate
    if not os.path.isfile(path):
        raise PtychoPINNFormatError(f"{path}: no such file")
    return path


def read_pinn_bundle(path: str | os.PathLike, model_name: str = INFERENCE_MODEL) -> PinnBundleFiles:
    """Read what inference needs from a PtychoPINN ``wts.h5.zip``.

    Parameters
    ----------
    path : path-like
        The zip, or a directory containing ``wts.h5.zip``.
    model_name : str
        Sub-model folder inside the zip; ``"diffraction_to_obj"`` for inference.

    Returns
    -------
    PinnBundleFiles

    Raises
    ------
    PtychoPINNFormatError
        Missing/truncated zip or member, invalid JSON/HDF5, missing ``intensity_scale``.
    """
    source = resolve_bundle_path(path)
    with _open_zip(source, source) as zf:
        keras_member = f"{model_name}/model.keras"
        h5_member = f"{model_name}/model.h5"
        archive = read_keras_archive(_read_member(zf, keras_member, source), source, keras_member)
        scale = read_intensity_scale(_read_member(zf, h5_member, source), source, h5_member)
    return PinnBundleFiles(source, model_name, archive, scale)
