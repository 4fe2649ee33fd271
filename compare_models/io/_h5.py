"""Small HDF5 helpers shared by the format readers: checked reads with clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = [
    "HDF5_SIGNATURE",
    "PLANCK_C_EV_M",
    "has_hdf5_signature",
    "read_attr_float",
    "read_array",
    "dataset_node",
    "atomic_h5_path",
    "wavelength_m",
]

# The 8-byte HDF5 format signature; a superblock sits at byte 0, 512, 1024, 2048, ...
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

# h * c in eV m (CODATA 2018), for wavelength = h c / E.
PLANCK_C_EV_M = 1.239841984e-6


def has_hdf5_signature(path) -> bool:
    """True if ``path`` is a file carrying the HDF5 signature at a legal superblock offset.

    Reads at most a few bytes at offsets 0, 512, 1024, 2048, ... (HDF5 file format
    specification, "Format Signature"), so it needs no h5py import.
    """
    path = Path(path)
    if not path.is_file():
        return False
    size = path.stat().st_size
    with path.open("rb") as handle:
        offset = 0
        while offset + len(HDF5_SIGNATURE) <= size:
            handle.seek(offset)
            if handle.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
                return True
            offset = 512 if offset == 0 else offset * 2
    return False


def open_hdf5(path, *, error):
    """Open ``path`` read-only with h5py; an unreadable file raises ``error`` naming it."""
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise error(f"{path}: cannot be opened as HDF5 ({exc})") from exc


def wavelength_m(photon_energy_eV: float) -> float:  # noqa: N803
    """Photon wavelength in metres for an energy in eV (lambda = h c / E)."""
    return PLANCK_C_EV_M / float(photon_energy_eV)


def read_attr_float(node, name: str, *, path, where: str, error, required: bool = True):
    """Read a scalar numeric attribute ``name`` of an HDF5 node as float.

    Raises ``error`` naming the file, the node and the attribute when it is missing (and
    ``required``), not a finite real scalar.
    """
    if name not in node.attrs:
        if not required:
            return None
        raise error(
            f"{path}: {where} is missing the required attribute '{name}'; expected a real scalar"
        )
    value = np.asarray(node.attrs[name])
    if value.size != 1 or value.dtype.kind not in "biuf":
        raise error(
            f"{path}: attribute '{name}' of {where} has dtype {value.dtype} and shape "
            f"{value.shape}; expected a real scalar"
        )
    value = float(value.reshape(()))
    if not np.isfinite(value):
        raise error(f"{path}: attribute '{name}' of {where} is {value}; expected a finite number")
    return value


def read_array(h5file, key: str, *, path, error, kinds: str, ndims, expected: str, required=True):
    """Read the dataset ``key`` checking that it is a dataset of dtype kind in ``kinds`` and rank
    in ``ndims``; ``expected`` describes the expectation in the error message."""
    node = dataset_node(h5file, key, path=path, error=error, kinds=kinds, ndims=ndims, expected=expected,
                        required=required)
    return None if node is None else node[()]


def dataset_node(h5file, key: str, *, path, error, kinds: str, ndims, expected: str, required=True):
    """The h5py dataset ``key``, checked as :func:`read_array` checks it, without reading its
    values (for readers that read it by chunks)."""
    node = h5file.get(key)
    if node is None:
        if not required:
            return None
        raise error(f"{path}: missing dataset '{key}': expected {expected}")
    if not hasattr(node, "dtype"):
        raise error(f"{path}: '{key}' is a group, not a dataset: expected {expected}")
    if node.dtype.kind not in kinds or node.ndim not in ndims:
        raise error(
            f"{path}: dataset '{key}' has dtype {node.dtype} and shape {node.shape}; "
            f"expected {expected}"
        )
    return node


def atomic_h5_path(path: Path) -> Path:
    """A temporary sibling name to write before ``os.replace`` onto ``path``."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")
