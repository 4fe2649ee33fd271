"""HDF5 interop: ptychodus products and diffraction files, and CXI, read into a ``Dataset``.

Readers need only h5py; ptychodus itself is used in tests to check that the files agree.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DatasetError
from ._h5 import has_hdf5_signature
from .cxi import load_cxi_dataset
from .ptychodus import (
    DIFFRACTION_NAME,
    GROUND_TRUTH_NAME,
    PRODUCT_NAME,
    ProductContents,
    load_ptychodus_dataset,
    read_product,
    save_ptychodus_dataset,
    write_product,
)

__all__ = [
    "DIFFRACTION_NAME",
    "GROUND_TRUTH_NAME",
    "PRODUCT_NAME",
    "ProductContents",
    "has_hdf5_signature",
    "hdf5_kind",
    "is_ptychodus_pair_dir",
    "load_cxi_dataset",
    "load_hdf5_dataset",
    "load_ptychodus_dataset",
    "read_product",
    "save_ptychodus_dataset",
    "write_product",
]


def is_ptychodus_pair_dir(path) -> bool:
    """True if ``path`` is a directory holding a ptychodus ``product.h5``."""
    path = Path(path)
    return path.is_dir() and (path / PRODUCT_NAME).is_file()


def hdf5_kind(path) -> str:
    """Classify an HDF5 file by content: ``"cxi"``, ``"product"``, ``"diffraction"`` or
    ``"unknown"``."""
    import h5py

    from .cxi import is_cxi

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
