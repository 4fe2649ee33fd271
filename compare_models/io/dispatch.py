"""Pick a dataset reader by the file's content: NPZ, ptychodus pair, ptychodus file or CXI.

Readers need only h5py; ptychodus itself is used in tests to check that the files agree.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from ..errors import DatasetError
from ._h5 import has_hdf5_signature
from .cxi import is_cxi, load_cxi_dataset
from .dataset import Dataset
from .npz import load_npz_dataset
from .ptychodus import PRODUCT_NAME, load_ptychodus_dataset

__all__ = ["load_dataset", "load_hdf5_dataset", "hdf5_kind", "is_ptychodus_pair_dir"]


def load_dataset(path) -> Dataset:
    """Load a dataset from ``path``, choosing the reader by the file's content.

    Parameters
    ----------
    path : str or os.PathLike
        An NPZ file following the contract in docs/design.md (a zip archive); an HDF5 file (by its
        signature): a ptychodus ``product.h5`` or ``diffraction.h5`` with its partner beside
        it, or CXI; or a directory holding a ptychodus pair (see
        :mod:`compare_models.io.ptychodus`).

    Returns
    -------
    Dataset

    Raises
    ------
    DatasetError
        If the file is missing, is not a supported format, or violates the contract.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file")
    if path.is_dir():
        if is_ptychodus_pair_dir(path):
            return load_ptychodus_dataset(path)
        raise DatasetError(
            f"{path}: is a directory; expected a dataset file (.npz) or a ptychodus pair "
            "directory holding product.h5 and diffraction.h5"
        )
    if zipfile.is_zipfile(path):
        return load_npz_dataset(path)
    if has_hdf5_signature(path):
        return load_hdf5_dataset(path)
    raise DatasetError(
        f"{path}: not a dataset file; expected an NPZ archive (a zip of .npy arrays), "
        "a ptychodus product/diffraction HDF5 file or a CXI file"
    )


def is_ptychodus_pair_dir(path) -> bool:
    """True if ``path`` is a directory holding a ptychodus ``product.h5``."""
    path = Path(path)
    return path.is_dir() and (path / PRODUCT_NAME).is_file()


def hdf5_kind(path) -> str:
    """Classify an HDF5 file by content: ``"cxi"``, ``"product"``, ``"diffraction"`` or
    ``"unknown"``."""
    import h5py

    try:
        h5file = h5py.File(path, "r")
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be opened as HDF5 ({exc})") from exc
    with h5file:
        if is_cxi(h5file):
            return "cxi"
        if "object" in h5file and "probe_position_x_m" in h5file:
            return "product"
        if "patterns" in h5file and "indexes" in h5file:
            return "diffraction"
    return "unknown"


def load_hdf5_dataset(path):
    """Load a dataset from an HDF5 file or a ptychodus pair directory, chosen by content.

    Raises
    ------
    DatasetError
        If the file is neither CXI nor part of a ptychodus pair, or breaks its layout.
    """
    path = Path(path)
    if path.is_dir():
        return load_ptychodus_dataset(path)
    kind = hdf5_kind(path)
    if kind == "cxi":
        return load_cxi_dataset(path)
    if kind in ("product", "diffraction"):
        return load_ptychodus_dataset(path)
    raise DatasetError(
        f"{path}: HDF5 file of unknown layout; expected a ptychodus product ('/object', "
        "'/probe', '/probe_position_x_m'), a ptychodus diffraction file ('/patterns', "
        "'/indexes') or CXI ('/entry_1/data_1/data')"
    )
