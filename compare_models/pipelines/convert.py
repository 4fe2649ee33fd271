"""The convert job: between the NPZ contract and a ptychodus pair (or from CXI).

The input format is chosen by content (``load_dataset``); the output format by the output
path: a name ending in ``.npz`` gets the NPZ contract, anything else is a directory that
receives ``diffraction.h5``, ``product.h5`` and, when the data has a ground truth,
``ground_truth.h5`` (see :mod:`compare_models.io.ptychodus`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..config import setting
from ..errors import ConfigError, DatasetError

__all__ = ["ConvertConfig", "output_format", "run_convert"]


@dataclass(frozen=True)
class ConvertConfig:
    """Settings of ``ptycho-study convert``.

    Attributes
    ----------
    pixel_size_m, photon_energy_eV, detector_object_distance_m : float or None
        Physical values written into a ptychodus pair (object pixel size in metres, photon
        energy in eV, detector distance in metres). ``None`` takes them from the dataset's
        metadata, and failing that the documented placeholder defaults, flagged as such.
        Given values are also recorded in the dataset's metadata (both output formats).
    name : str or None
        The product's ``name`` attribute (default: the input's file stem).
    """

    pixel_size_m: float | None = setting(
        None, "Object pixel size in metres.", flag="--pixel-size",
        default_text="from the data, else 1e-8, flagged as a placeholder",
    )
    photon_energy_eV: float | None = setting(  # noqa: N815
        None, "Photon energy in eV.", flag="--photon-energy", default_text="from the data, else 1e4, flagged"
    )
    detector_object_distance_m: float | None = setting(
        None, "Detector-object distance in metres.", flag="--distance", default_text="from the data, else 1, flagged"
    )
    name: str | None = setting(None, "The product's name attribute.", default_text="the input file's stem")

    def validate(self) -> ConvertConfig:
        for key in ("pixel_size_m", "photon_energy_eV", "detector_object_distance_m"):
            value = getattr(self, key)
            if value is not None and not (np.isfinite(value) and value > 0):
                raise ConfigError(f"{key} must be a finite number > 0, got {value}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


def output_format(out) -> str:
    """``"npz"`` for a path ending in ``.npz``, else ``"ptychodus"`` (a pair directory)."""
    return "npz" if Path(out).suffix.lower() == ".npz" else "ptychodus"


def run_convert(in_path, out_path, config: ConvertConfig | None = None) -> dict[str, Path]:
    """Read ``in_path`` (any supported format) and write it to ``out_path``.

    Returns
    -------
    dict
        Written paths by role (``data`` for NPZ; ``diffraction``, ``product`` and
        ``ground_truth`` for a pair).
    """
    import dataclasses

    from ..io.dispatch import load_dataset
    from ..io.npz import save_dataset
    from ..io.ptychodus import save_ptychodus_dataset

    config = (config or ConvertConfig()).validate()
    in_path, out_path = Path(in_path), Path(out_path)
    if in_path.resolve() == out_path.resolve():
        raise DatasetError(f"{out_path}: output is the input; choose another output path")
    dataset = load_dataset(in_path)
    given = {
        key: value
        for key, value in config.to_dict().items()
        if key != "name" and value is not None
    }
    if given:
        dataset = dataclasses.replace(dataset, metadata={**dataset.metadata, **given})
    if output_format(out_path) == "npz":
        if out_path.is_dir():
            raise DatasetError(f"{out_path}: is a directory; expected an .npz file path")
        return {"data": save_dataset(dataset, out_path)}
    return save_ptychodus_dataset(dataset, out_path, name=config.name)
