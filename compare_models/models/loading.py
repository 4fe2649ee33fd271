"""Load any model a user has, recognised by content: this project's bundles or PtychoPINN's files.

``--pinn_dir`` and ``--baseline_dir`` accept, for either arm:

===========================================  ==============================================
what the path is                             loaded as
===========================================  ==============================================
a directory holding ``bundle.json``          this project's bundle (``compare_models bundle``)
a directory holding ``wts.h5.zip``, or the   PtychoPINN PINN (``PtychoPINN wts.h5.zip
file itself (a zip with PtychoPINN's         (gridsize g)``)
``diffraction_to_obj/`` members)
the same, written by PtychoPINN's PyTorch    PtychoPINN PyTorch PINN (``PtychoPINN PyTorch
backend (``manifest.dill`` version           wts.h5.zip (generator, gridsize g)``), run by
``2.0-pytorch``, ``diffraction_to_obj/       torch on ``device``
model.pth``)
a directory with ``baseline_model.h5``       PtychoPINN supervised baseline (``PtychoPINN
anywhere below it (PtychoPINN nests it in a  baseline_model.h5``); several below one
timestamped folder), or the file itself      directory are an error naming them
(an HDF5 file with a ``model_config``
attribute)
===========================================  ==============================================

The checks run in that order; a directory that is none of them is an error saying what was
looked for. Every loader returns a :class:`~compare_models.models.interface.LoadedModel`.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from ..errors import BundleError

__all__ = ["FORMATS", "ModelSource", "detect_model_source", "load_model"]

#: Internal format key -> how logs name it before loading (the loaded model names itself).
FORMATS = MappingProxyType({
    "bundle": "compare_models bundle",
    "ptychopinn_pinn": "PtychoPINN wts.h5.zip",
    "ptychopinn_torch": "PtychoPINN PyTorch wts.h5.zip",
    "ptychopinn_baseline": "PtychoPINN baseline_model.h5",
})

_BUNDLE_JSON = "bundle.json"
_PINN_ARCHIVE = "wts.h5.zip"
_BASELINE_FILE = "baseline_model.h5"
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_PINN_MEMBER_PREFIXES = ("diffraction_to_obj/", "autoencoder/")


@dataclass(frozen=True)
class ModelSource:
    """Where a model is and in which format.

    Attributes
    ----------
    format : str
        A key of :data:`FORMATS`.
    path : Path
        What the loader reads: the bundle directory, the ``wts.h5.zip`` or the
        ``baseline_model.h5``.
    """

    format: str
    path: Path

    @property
    def description(self) -> str:
        """Human-readable format name."""
        return FORMATS[self.format]


def _is_hdf5(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE


def _zip_members(path: Path) -> list[str] | None:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError):
        return None


def _has_model_config(path: Path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as h5file:
            return "model_config" in h5file.attrs
    except (OSError, ValueError):
        return False


def _is_torch_bundle(path: Path, members) -> bool:
    from .ptychopinn_torch.archive import is_torch_bundle

    return is_torch_bundle(path, members)


def _detect_file(path: Path) -> ModelSource:
    if path.name == _BUNDLE_JSON:
        return ModelSource("bundle", path.parent)
    members = _zip_members(path)
    if (members is not None or path.name == _PINN_ARCHIVE) and _is_torch_bundle(path, members):
        return ModelSource("ptychopinn_torch", path)
    if members is not None:
        if any(m.startswith(_PINN_MEMBER_PREFIXES) for m in members) or path.name == _PINN_ARCHIVE:
            return ModelSource("ptychopinn_pinn", path)
        if "config.json" in members and (path.parent / _BUNDLE_JSON).is_file():
            return ModelSource("bundle", path.parent)
        raise BundleError(
            f"{path}: a zip archive but not a PtychoPINN wts.h5.zip (no diffraction_to_obj/ "
            "members); expected a model directory, wts.h5.zip or baseline_model.h5"
        )
    if _is_hdf5(path):
        if _has_model_config(path) or path.name == _BASELINE_FILE:
            return ModelSource("ptychopinn_baseline", path)
        raise BundleError(
            f"{path}: an HDF5 file without a 'model_config' attribute; expected a Keras "
            "baseline_model.h5"
        )
    # Unreadable content: let the loader named by the file name report what is wrong.
    if path.name == _PINN_ARCHIVE:
        return ModelSource("ptychopinn_pinn", path)
    if path.name == _BASELINE_FILE:
        return ModelSource("ptychopinn_baseline", path)
    raise BundleError(
        f"{path}: not a model file; expected a directory holding {_BUNDLE_JSON} or "
        f"{_PINN_ARCHIVE}, a PtychoPINN {_PINN_ARCHIVE}, or a {_BASELINE_FILE}"
    )


def detect_model_source(path) -> ModelSource:
    """Recognise the model at ``path`` by content (see the module docstring).

    Raises
    ------
    BundleError
        ``path`` does not exist, or is neither format; the message says what was looked for.
    """
    path = Path(path)
    if not path.exists():
        raise BundleError(f"{path}: no such file or directory")
    if path.is_file():
        return _detect_file(path)
    if (path / _BUNDLE_JSON).is_file():
        return ModelSource("bundle", path)
    if (path / _PINN_ARCHIVE).is_file():
        return _detect_file(path / _PINN_ARCHIVE)
    found = sorted(
        Path(root) / _BASELINE_FILE for root, _dirs, files in os.walk(path) if _BASELINE_FILE in files
    )
    if len(found) == 1:
        return ModelSource("ptychopinn_baseline", found[0])
    if len(found) > 1:
        raise BundleError(
            f"{path}: {len(found)} {_BASELINE_FILE} files below it "
            f"({', '.join(str(p) for p in found)}); pass the one to compare"
        )
    hint = ""
    if (path / "model.keras").is_file():
        hint = " (it holds model.keras without bundle.json: an incomplete compare-models bundle?)"
    raise BundleError(
        f"{path}: not a model: looked for {_BUNDLE_JSON} (a compare-models bundle), "
        f"{_PINN_ARCHIVE} (a PtychoPINN model) and {_BASELINE_FILE} (a PtychoPINN baseline, at "
        f"any depth); found none{hint}"
    )


def load_model(path, *, device: str = "auto"):
    """Load the model at ``path`` in whichever supported format it is.

    Parameters
    ----------
    path : str or os.PathLike
        A directory or file (see the module docstring).
    device : {"auto", "cpu", "gpu", "cuda"}
        Where a PyTorch model runs (``auto``: CUDA when torch sees a device; ``gpu`` =
        ``cuda``); the Keras models ignore it (their backend's device is chosen at start-up).

    Returns
    -------
    LoadedModel
        A :class:`~compare_models.models.bundle.Bundle`,
        :class:`~compare_models.models.ptychopinn.pinn.LoadedPinn`,
        :class:`~compare_models.models.ptychopinn_torch.model.LoadedTorchPinn` or
        :class:`~compare_models.models.ptychopinn.baseline.LoadedBaseline`; its
        ``model_format`` names the format.

    Raises
    ------
    BundleError
        Not a model, or a file of a recognised format that is missing parts, truncated or
        inconsistent (the message names the file and, in an archive, the member).
    """
    source = detect_model_source(path)
    if source.format == "bundle":
        from .bundle import load_bundle

        return load_bundle(source.path)
    if source.format == "ptychopinn_pinn":
        from .ptychopinn.pinn import load_pinn

        return load_pinn(source.path)
    if source.format == "ptychopinn_torch":
        from .ptychopinn_torch.model import load_torch_pinn

        return load_torch_pinn(source.path, device=device)
    from .ptychopinn.baseline import load_baseline

    return load_baseline(source.path)
