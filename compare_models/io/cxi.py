"""Read ptychography test data from a CXI file (Coherent X-ray Imaging format, version 1.6).

Layout read
-----------
* Patterns: ``/entry_1/data_1/data`` (or ``/entry_1/instrument_1/detector_1/data``), (n, h, w)
  intensities (counts); amplitude = sqrt(counts), negative counts clipped to 0 with a warning.
  ``/entry_1/instrument_1/detector_1/mask`` (non-zero = invalid) pixels are set to 0. The
  patterns are not read whole: the dataset's diffraction reads them by chunks when indexed
  (:class:`compare_models.io.lazy.HDF5Rows`).
* Positions: ``/entry_1/sample_1/geometry_1/translation`` (or ``/entry_1/data_1/translation``),
  (n, 3) or (n, 2), metres.
* Illumination: ``/entry_1/instrument_1/source_1/illumination`` (or ``/entry_1/image_1/data``,
  where ptychodus writes it), complex (h, w) or with leading mode axes (the first mode is used).
* Physics: ``/entry_1/instrument_1/source_1/energy`` (joules), ``.../detector_1/distance`` (m),
  ``.../detector_1/x_pixel_size`` and ``y_pixel_size`` (m).

Sign conventions
----------------
As ptychodus's CXI reader does, ``translation[:, 0]`` is taken as the probe's x position
(increasing with the object's column index) and ``translation[:, 1]`` as its y position
(increasing with the row index), in metres; the z column is ignored. Files that record the
sample stage's motion with the opposite sign give a mirrored scan (negate the translations).

Pixel size and frame
--------------------
The object pixel size is the first available of: ``/entry_1/ptychodus/object_pixel_width_m``;
the probe's ``/entry_1/image_1/image_size[0]`` divided by its width; or the far-field relation
``dx = lambda z / (N p)`` from the energy, distance and detector pixel pitch ``p``. Without
any of these, metres cannot be turned into pixels and the file is refused. CXI carries no
ground truth, so positions are placed on the scan's own canvas:
``x = x_m / dx - min(x_m / dx) + N/2`` (the leftmost patch starts at column 0), y likewise.

References
----------
F. R. N. C. Maia, "The Coherent X-ray Imaging Data Bank", Nature Methods 9, 854 (2012);
CXI file format 1.6, https://www.cxidb.org/cxi.html.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DatasetError
from ._h5 import open_hdf5, wavelength_m
from .dataset import Dataset
from .lazy import HDF5Rows
from .ptychodus import amplitude_transform, warn_negative_counts

__all__ = ["load_cxi_dataset", "is_cxi", "JOULES_PER_EV"]

JOULES_PER_EV = 1.602176634e-19

_DATA_PATHS = ("/entry_1/data_1/data", "/entry_1/instrument_1/detector_1/data")
_TRANSLATION_PATHS = ("/entry_1/sample_1/geometry_1/translation", "/entry_1/data_1/translation")
_PROBE_PATHS = ("/entry_1/instrument_1/source_1/illumination", "/entry_1/image_1/data")
_ENERGY = "/entry_1/instrument_1/source_1/energy"
_DISTANCE = "/entry_1/instrument_1/detector_1/distance"
_DET_X = "/entry_1/instrument_1/detector_1/x_pixel_size"
_DET_Y = "/entry_1/instrument_1/detector_1/y_pixel_size"
_MASK = "/entry_1/instrument_1/detector_1/mask"
_OBJECT_PIXEL = "/entry_1/ptychodus/object_pixel_width_m"
_PROBE_IMAGE_SIZE = "/entry_1/image_1/image_size"


def is_cxi(h5file) -> bool:
    """True if an open HDF5 file looks like CXI (has ``/entry_1`` with data)."""
    return "entry_1" in h5file and any(key in h5file for key in _DATA_PATHS)


def _first(h5file, paths, *, path, expected):
    for key in paths:
        node = h5file.get(key)
        if node is not None and hasattr(node, "dtype"):
            return key, node
    raise DatasetError(f"{path}: missing dataset {' or '.join(repr(p) for p in paths)}: expected {expected}")


def _scalar(h5file, key, *, path):
    node = h5file.get(key)
    if node is None:
        return None
    value = np.asarray(node[()])
    if value.size != 1 or value.dtype.kind not in "iuf":
        raise DatasetError(f"{path}: dataset '{key}' has dtype {value.dtype} and shape {value.shape}; expected a real scalar")
    value = float(value.reshape(()))
    if not (np.isfinite(value) and value > 0):
        raise DatasetError(f"{path}: dataset '{key}' is {value}; expected a finite number > 0")
    return value


def load_cxi_dataset(path) -> Dataset:
    """Load a CXI 1.6 file (see the module docstring) as a validated :class:`Dataset`.

    Returns
    -------
    Dataset
        No ground truth; metadata holds ``pixel_size_m`` and, when the file has them,
        ``photon_energy_eV`` and ``detector_object_distance_m``.

    Raises
    ------
    DatasetError
        Naming the file, the dataset path and the expectation.
    """

    path = Path(path)
    with open_hdf5(path, error=DatasetError) as h5file:
        data_key, data_node = _first(h5file, _DATA_PATHS, path=path, expected="(n, h, w) intensities")
        if data_node.ndim != 3 or data_node.dtype.kind not in "iuf":
            raise DatasetError(f"{path}: dataset '{data_key}' has dtype {data_node.dtype} and shape {data_node.shape}; expected real (n, h, w) intensities")
        counts_shape = tuple(data_node.shape)
        t_key, t_node = _first(h5file, _TRANSLATION_PATHS, path=path, expected="(n, 3) translations in metres")
        translation = np.asarray(t_node[()])
        if translation.ndim != 2 or translation.shape[1] < 2 or translation.dtype.kind not in "iuf":
            raise DatasetError(f"{path}: dataset '{t_key}' has dtype {translation.dtype} and shape {translation.shape}; expected real (n, 3) translations in metres")
        if translation.shape[0] != counts_shape[0]:
            raise DatasetError(
                f"{path}: position count mismatch: '{t_key}' has {translation.shape[0]} rows but "
                f"'{data_key}' holds {counts_shape[0]} patterns; expected one translation per pattern"
            )
        p_key, p_node = _first(h5file, _PROBE_PATHS, path=path, expected="a complex (h, w) illumination")
        probe = np.asarray(p_node[()])
        if probe.dtype.kind != "c" or probe.ndim < 2:
            raise DatasetError(f"{path}: dataset '{p_key}' has dtype {probe.dtype} and shape {probe.shape}; expected a complex (h, w) illumination")
        energy_j = _scalar(h5file, _ENERGY, path=path)
        distance = _scalar(h5file, _DISTANCE, path=path)
        det_x = _scalar(h5file, _DET_X, path=path)
        pixel = _scalar(h5file, _OBJECT_PIXEL, path=path)
        if pixel is None and _PROBE_IMAGE_SIZE in h5file:
            size = np.asarray(h5file[_PROBE_IMAGE_SIZE][()], dtype=np.float64).ravel()
            if size.size >= 1 and size[0] > 0:
                pixel = float(size[0]) / probe.shape[-1]
        mask = None
        if _MASK in h5file:
            mask = np.asarray(h5file[_MASK][()]) != 0
        warn_negative_counts(data_node, path=path, key=data_key)
    energy_ev = None if energy_j is None else energy_j / JOULES_PER_EV
    n = counts_shape[-1]
    if pixel is None:
        if energy_ev is None or distance is None or det_x is None:
            raise DatasetError(
                f"{path}: cannot convert translations (metres) to object pixels: expected "
                f"'{_OBJECT_PIXEL}', or '{_ENERGY}', '{_DISTANCE}' and '{_DET_X}' to compute "
                "dx = lambda z / (N p)"
            )
        pixel = wavelength_m(energy_ev) * distance / (n * det_x)
    if probe.ndim > 2:
        lead = probe.shape[:-2]
        if int(np.prod(lead)) > 1:
            import warnings

            warnings.warn(f"{path}: '{p_key}' holds {lead} probe modes; using the first only", stacklevel=2)
        probe = probe[(0,) * len(lead)]
    if counts_shape[1:] != probe.shape or counts_shape[1] != counts_shape[2]:
        raise DatasetError(
            f"{path}: patterns in '{data_key}' are {counts_shape[1:]} but the illumination "
            f"'{p_key}' is {probe.shape}; expected square patterns the size of the probe"
        )
    bad = mask if mask is not None and mask.shape == counts_shape[1:] else None
    # Read by chunks when indexed (lazy.HDF5Rows); sqrt, clipping and the mask on each read.
    amplitudes = HDF5Rows(path, data_key, shape=counts_shape, dtype=np.float32, transform=amplitude_transform(bad))
    if not np.isfinite(translation[:, :2]).all():
        raise DatasetError(f"{path}: dataset '{t_key}' contains NaN or infinite values")
    px = translation[:, :2].astype(np.float64) / pixel
    positions = px - px.min(axis=0) + n / 2
    metadata = {"source_format": "cxi", "pixel_size_m": float(pixel)}
    if energy_ev is not None:
        metadata["photon_energy_eV"] = float(energy_ev)
    if distance is not None:
        metadata["detector_object_distance_m"] = float(distance)
    return Dataset(
        diffraction_amplitude=amplitudes,
        positions_xy=positions,
        probe=probe.astype(np.complex64),
        metadata=metadata,
        source=str(path),
    )
