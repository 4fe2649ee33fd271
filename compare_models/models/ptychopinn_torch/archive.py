"""Read a PtychoPINN PyTorch-backend ``wts.h5.zip`` without unpickling anything.

PtychoPINN's Lightning backend (``ptycho_torch``) writes a zip that its TensorFlow backend's
loader cannot open, under the same name ``wts.h5.zip``:

==================================  ========================================================
member                              what it is, how it is read here
==================================  ========================================================
``manifest.dill``                   ``{"models": [...], "version": "2.0-pytorch"}``: a plain
                                    dict, read from the pickle's opcodes (no global allowed,
                                    :func:`compare_models.io.pickled_json.plain_value_from_pickle`)
``diffraction_to_obj/model.pth``    the state_dict of the whole Lightning module:
                                    ``torch.load(weights_only=True)`` (tensors and plain
                                    containers only)
``diffraction_to_obj/params.dill``  the flat training settings (N, gridsize, architecture,
                                    ``intensity_scale``, and absolute paths of the machine that
                                    trained it, never used): opcode walk, as the manifest
``torch_scaling_metadata.pt``       the model, data, training and inference configs PtychoPINN
                                    rebuilds the network from: ``torch.load(weights_only=True)``
``autoencoder/model.pth``           a placeholder (``{"_sentinel": ...}``), never read
==================================  ========================================================

Every problem is a :class:`~compare_models.models.ptychopinn.archive.PtychoPINNFormatError`
naming the file and the member. A zip cut short (no central directory at its end) is read
from its local headers to say which member was cut.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from ..ptychopinn.archive import PtychoPINNFormatError, _read_member, resolve_bundle_path

__all__ = [
    "MANIFEST",
    "PARAMS",
    "STATE_DICT",
    "SCALING_METADATA",
    "TORCH_MANIFEST_VERSION",
    "TorchBundleFiles",
    "is_torch_bundle",
    "local_members",
    "read_torch_bundle",
]

MANIFEST = "manifest.dill"
STATE_DICT = "diffraction_to_obj/model.pth"
PARAMS = "diffraction_to_obj/params.dill"
SCALING_METADATA = "torch_scaling_metadata.pt"
#: ``manifest.dill``'s ``version`` in bundles of PtychoPINN's PyTorch backend.
TORCH_MANIFEST_VERSION = "2.0-pytorch"

_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
_LOCAL_SIGNATURE = b"PK\x03\x04"


@dataclass(frozen=True)
class TorchBundleFiles:
    """What inference reads from a PyTorch-backend ``wts.h5.zip``.

    Attributes
    ----------
    source : str
        Path of the zip.
    manifest : Mapping
        ``manifest.dill`` (``version`` is ``"2.0-pytorch"``).
    params : Mapping
        ``diffraction_to_obj/params.dill``: flat settings (N, gridsize, architecture, ...).
    metadata : Mapping or None
        ``torch_scaling_metadata.pt`` (``model_config``, ``data_config``, ...), None when the
        bundle has none (PtychoPINN's older bundles).
    state_dict : Mapping[str, torch.Tensor]
        ``diffraction_to_obj/model.pth``, on the CPU.
    """

    source: str
    manifest: Mapping
    params: Mapping
    metadata: Mapping | None
    state_dict: Mapping


def _fail(source: str, member: str | None, problem: str) -> PtychoPINNFormatError:
    where = f"{source}: member '{member}'" if member else source
    return PtychoPINNFormatError(f"{where}: {problem}")


def local_members(data: bytes) -> list[tuple[str, bool]]:
    """Members of a zip read from its local file headers, in file order, with whether each
    one's data is complete: how a zip cut short (its central directory lost) is described.

    Parameters
    ----------
    data : bytes
        The zip file, perhaps truncated.

    Returns
    -------
    list of (name, complete)
        Stops at the first header that is not a local file header or whose data runs past the
        end of ``data`` (that one is listed with ``complete=False``).
    """
    members = []
    offset = 0
    while offset + _LOCAL_HEADER.size <= len(data):
        fields = _LOCAL_HEADER.unpack_from(data, offset)
        if fields[0] != _LOCAL_SIGNATURE:
            break
        flags, compressed, name_length, extra_length = fields[2], fields[7], fields[9], fields[10]
        name_start = offset + _LOCAL_HEADER.size
        name = data[name_start : name_start + name_length].decode("utf-8" if flags & 0x800 else "cp437", "replace")
        data_start = name_start + name_length + extra_length
        if flags & 0x08:  # sizes follow the data: its end cannot be known from the header
            members.append((name, data_start <= len(data)))
            break
        end = data_start + compressed
        members.append((name, end <= len(data)))
        if end > len(data):
            break
        offset = end
    return members


def _truncated_zip_error(source: str, exc: Exception) -> PtychoPINNFormatError:
    """The error for a zip that does not open: which member was cut, when that can be told."""
    try:
        data = Path(source).read_bytes()
    except OSError:
        data = b""
    members = local_members(data)
    cut = [name for name, complete in members if not complete]
    if cut:
        return _fail(source, cut[0], f"truncated: the archive ends inside this member ({len(data)} bytes in all; "
                     f"the zip's central directory is missing)")
    if members:
        return _fail(source, None, f"truncated or corrupt: no central directory after its last complete member "
                     f"'{members[-1][0]}' ({exc})")
    return _fail(source, None, f"not a readable zip archive, truncated or corrupt ({exc})")


def is_torch_bundle(path: str | os.PathLike, members: list[str] | None) -> bool:
    """Whether the zip at ``path`` is a PtychoPINN PyTorch-backend bundle, by content.

    It is when it holds ``diffraction_to_obj/model.pth``, or, holding no Keras model, when its
    ``manifest.dill`` says version ``2.0-pytorch`` (read without unpickling; a TensorFlow
    bundle's ``.dill`` members are never opened). ``members`` is the zip's member list, or
    None when the zip does not open (a truncated file: its local headers are read).
    """
    if members is None:
        try:
            data = Path(path).read_bytes()
        except OSError:
            return False
        names = [name for name, _complete in local_members(data)]
        return STATE_DICT in names or (MANIFEST in names and not any(n.endswith(".keras") for n in names))
    if STATE_DICT in members:
        return True
    if MANIFEST not in members or any(name.endswith(".keras") for name in members):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            manifest = _plain(archive.read(MANIFEST), str(path), MANIFEST)
    except (PtychoPINNFormatError, zipfile.BadZipFile, OSError, EOFError, ValueError):
        return False
    return isinstance(manifest, Mapping) and str(manifest.get("version", "")).endswith("pytorch")


def _plain(data: bytes, source: str, member: str):
    from ...io.pickled_json import UnsafePickle, plain_value_from_pickle

    try:
        return plain_value_from_pickle(data)
    except UnsafePickle as exc:
        raise _fail(source, member, f"not a plain-data pickle, not read ({exc})") from exc


def _torch_load(data: bytes, source: str, member: str):
    """``torch.load(weights_only=True)`` of a member: tensors and plain containers only."""
    from .device import import_torch

    torch = import_torch(f"{source}: reading '{member}'")
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise _fail(source, member, f"cannot be read with torch.load(weights_only=True), truncated or "
                    f"corrupt ({type(exc).__name__}: {first})") from exc


def read_torch_bundle(path: str | os.PathLike) -> TorchBundleFiles:
    """Read what inference needs from a PyTorch-backend ``wts.h5.zip``.

    Parameters
    ----------
    path : path-like
        The zip, or a directory holding ``wts.h5.zip``.

    Returns
    -------
    TorchBundleFiles

    Raises
    ------
    PtychoPINNFormatError
        A missing, truncated or corrupt zip or member (named), a manifest that is not version
        ``2.0-pytorch``, a state_dict that is not a mapping of tensors.
    """
    source = resolve_bundle_path(path)
    try:
        zf = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise _fail(source, None, "no such file") from None
        raise _truncated_zip_error(source, exc) from exc
    with zf:
        manifest = _plain(_read_member(zf, MANIFEST, source), source, MANIFEST)
        if not isinstance(manifest, Mapping) or manifest.get("version") != TORCH_MANIFEST_VERSION:
            version = manifest.get("version") if isinstance(manifest, Mapping) else None
            raise _fail(source, MANIFEST, f"version {version!r}; a PyTorch-backend bundle has "
                        f"{TORCH_MANIFEST_VERSION!r}")
        params = _plain(_read_member(zf, PARAMS, source), source, PARAMS)
        if not isinstance(params, Mapping):
            raise _fail(source, PARAMS, f"holds a {type(params).__name__}, expected a dict of settings")
        metadata = None
        if SCALING_METADATA in zf.namelist():
            metadata = _torch_load(_read_member(zf, SCALING_METADATA, source), source, SCALING_METADATA)
            if not isinstance(metadata, Mapping):
                raise _fail(source, SCALING_METADATA, f"holds a {type(metadata).__name__}, expected a dict")
        state_dict = _torch_load(_read_member(zf, STATE_DICT, source), source, STATE_DICT)
    _check_state_dict(state_dict, source)
    return TorchBundleFiles(
        source=source,
        manifest=MappingProxyType(dict(manifest)),
        params=MappingProxyType(dict(params)),
        metadata=None if metadata is None else MappingProxyType(dict(metadata)),
        state_dict=MappingProxyType(dict(state_dict)),
    )


def _check_state_dict(state_dict, source: str) -> None:
    from .device import import_torch

    torch = import_torch(source)
    if not isinstance(state_dict, Mapping) or "_sentinel" in state_dict:
        raise _fail(source, STATE_DICT, "is not a state_dict (a mapping of parameter names to tensors)")
    for key, value in state_dict.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise _fail(source, STATE_DICT, f"entry {key!r} is a {type(value).__name__}, not a tensor")
