"""Read and write the HDF5 product and diffraction layout of ptychodus (APS).

File layout (ptychodus 1.7.0, ``ptychodus.api.io``)
--------------------------------------------------
``product.h5`` is flat HDF5:

* root attributes ``detector_object_distance_m`` and ``photon_energy_eV`` (required; the
  legacy ``probe_energy_eV`` is accepted), optional ``name``, ``comments``,
  ``probe_photon_count``, ``exposure_time_s``;
* ``/object`` complex (L, H, W) with attributes ``pixel_width_m``, ``pixel_height_m``,
  ``center_x_m``, ``center_y_m`` (all required);
* ``/probe`` complex (C, I, h, w) (OPR modes, incoherent modes), attributes
  ``pixel_width_m``/``pixel_height_m`` (default: the object's);
* ``/probe_position_indexes`` int, ``/probe_position_x_m``, ``/probe_position_y_m`` float
  (metres); optional ``/loss_epochs``, ``/loss_values``.

``diffraction.h5`` holds ``/patterns`` (n, h, w) *counts* (intensities) with attributes
``detector_pixel_width_m``/``detector_pixel_height_m``, ``/indexes`` (n,) that pair with
``/probe_position_indexes`` by value, and ``/bad_pixels`` (h, w) bool.

The pair directory
------------------
A *ptychodus pair* is a directory holding ``diffraction.h5`` and ``product.h5`` (the
product's probe and positions describe the scan; its object is the initial guess), and
optionally ``ground_truth.h5``: a file in the product layout whose ``/object`` is the ground
truth. A ``product.h5`` whose root attribute ``object_role`` is ``"ground_truth"`` also
supplies the ground truth itself. Every file stays loadable by ptychodus; what only this
project needs (nominal positions, ``scan_index``, the ``_metadata`` JSON, ground-truth
patches) sits in a ``/compare_models`` group that ptychodus ignores, so NPZ -> pair -> NPZ is
the identity.

Frames
------
ptychodus puts a position at the world coordinate of the probe array's centre, pixel
``(w - 1)/2``, and the object's ``center_*_m`` at pixel ``((W - 1)/2, (H - 1)/2)``:
``x_ptychodus_px = (x_m - center_x_m) / pixel_width_m + (W - 1)/2`` and a patch starts at
``x_ptychodus_px - (w - 1)/2``. This project puts patch pixel N/2 on the position (docs/design.md),
so the patch starts at ``x - N/2``. The same patch therefore has
``x = x_ptychodus_px + 1/2``, that is ``x = (x_m - center_x_m) / pixel_width_m + W/2``
(y likewise with rows), for every N.

Diffraction is stored as counts = amplitude². Counts that are integers to float32 precision
(Poisson data) are written as uint32 and give back the original float32 amplitudes bit for bit
(sqrt of the integer, correctly rounded); anything else is written as float64 counts, whose
square root is again exact, since a float32 squared fits a float64 mantissa.

Defaults for unknown physics
----------------------------
Simulated data often has no pixel size, photon energy or detector distance. The writers then
use :data:`DEFAULT_PIXEL_SIZE_M` (10 nm), :data:`DEFAULT_PHOTON_ENERGY_EV` (10 keV) and
:data:`DEFAULT_DETECTOR_DISTANCE_M` (1 m), say so in the product's ``comments``, and record
their names in ``/compare_models`` so that reading the pair back does not mistake them for
measured values (FRC then stays in pixels).

References
----------
ptychodus, https://github.com/AdvancedPhotonSource/ptychodus (``ptychodus/api/io.py``,
``ptychodus/api/object.py``, ``ptychodus/api/probe.py``), version 1.7.0.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np

from ..errors import DatasetError, ReconstructionFileError
from ..imaging.geometry import scan_canvas_shape
from ._h5 import atomic_h5_path, dataset_node, open_hdf5, read_array, read_attr_float, wavelength_m
from .dataset import Dataset
from .lazy import HDF5Rows, RowView, is_lazy

__all__ = [
    "DIFFRACTION_NAME",
    "PRODUCT_NAME",
    "GROUND_TRUTH_NAME",
    "DEFAULT_PIXEL_SIZE_M",
    "DEFAULT_PHOTON_ENERGY_EV",
    "DEFAULT_DETECTOR_DISTANCE_M",
    "ProductContents",
    "amplitude_to_counts",
    "counts_to_amplitude",
    "frame_px_to_world_m",
    "world_m_to_frame_px",
    "detector_pixel_size_m",
    "read_product",
    "write_product",
    "read_diffraction",
    "amplitude_transform",
    "warn_negative_counts",
    "write_diffraction",
    "resolve_pair",
    "load_ptychodus_dataset",
    "save_ptychodus_dataset",
]

DIFFRACTION_NAME = "diffraction.h5"
PRODUCT_NAME = "product.h5"
GROUND_TRUTH_NAME = "ground_truth.h5"

DEFAULT_PIXEL_SIZE_M = 1e-8
DEFAULT_PHOTON_ENERGY_EV = 1e4
DEFAULT_DETECTOR_DISTANCE_M = 1.0

EXTRAS_GROUP = "compare_models"
EXTRAS_VERSION = 1
_PHYSICAL_KEYS = ("pixel_size_m", "photon_energy_eV", "detector_object_distance_m")
_DEFAULTS = MappingProxyType(
    {
        "pixel_size_m": DEFAULT_PIXEL_SIZE_M,
        "photon_energy_eV": DEFAULT_PHOTON_ENERGY_EV,
        "detector_object_distance_m": DEFAULT_DETECTOR_DISTANCE_M,
    }
)
# Largest count for which float32 sqrt(count) squared still rounds back to the count.
_MAX_EXACT_COUNT = 2**22


@dataclass(frozen=True, eq=False)
class ProductContents:
    """What a ptychodus product holds, in this project's frame.

    Attributes
    ----------
    object_image : ndarray (H, W) complex64
        Layer 0 of ``/object``.
    probe : ndarray (N, N) complex64
        Mode (0, 0) of ``/probe``.
    positions_xy : ndarray (M, 2) float64
        Probe positions in object pixels of ``object_image`` (this project's frame).
    position_indexes : ndarray (M,) int64
    pixel_size_xy_m : tuple (float, float)
        Object pixel width and height in metres.
    center_xy_m : tuple (float, float)
        World coordinates of the object's centre, metres.
    photon_energy_eV, detector_object_distance_m : float
    name, comments : str
    loss_values : ndarray or None
    root_attrs : dict
        Every root attribute, for callers that want more.
    extras : dict
        The ``/compare_models`` group's attributes and datasets (empty for foreign files).
    """

    object_image: np.ndarray
    probe: np.ndarray
    positions_xy: np.ndarray
    position_indexes: np.ndarray
    pixel_size_xy_m: tuple
    center_xy_m: tuple
    photon_energy_eV: float  # noqa: N815
    detector_object_distance_m: float
    name: str = ""
    comments: str = ""
    loss_values: np.ndarray | None = None
    root_attrs: dict = field(default_factory=dict)
    extras: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Conversions


def world_m_to_frame_px(coord_m, center_m: float, pixel_m: float, size_px: int) -> np.ndarray:
    """ptychodus world coordinate (metres) -> this project's object-pixel coordinate.

    ``x = (x_m - center_m) / pixel_m + size_px / 2`` (see the module docstring: ptychodus's
    ``(W - 1)/2`` object centre plus the half pixel between the two patch conventions).
    """
    return (np.asarray(coord_m, dtype=np.float64) - center_m) / pixel_m + size_px / 2


def frame_px_to_world_m(coord_px, center_m: float, pixel_m: float, size_px: int) -> np.ndarray:
    """Inverse of :func:`world_m_to_frame_px`."""
    return center_m + pixel_m * (np.asarray(coord_px, dtype=np.float64) - size_px / 2)


def detector_pixel_size_m(
    pixel_size_m: float, photon_energy_eV: float, distance_m: float, n: int  # noqa: N803
) -> float:
    """Far-field detector pixel pitch giving object pixel ``pixel_size_m`` for N x N patterns:
    ``lambda z / (N dx)``."""
    return wavelength_m(photon_energy_eV) * distance_m / (n * pixel_size_m)


def amplitude_to_counts(amplitude) -> np.ndarray:
    """Counts = amplitude², as uint32 when that is exact to float32 precision, else float64.

    Integer counts (Poisson data stored as float32 ``sqrt(counts)``) are recovered by rounding;
    the result is only used when :func:`counts_to_amplitude` gives back the input bit for bit.
    Otherwise float64 counts are returned, which are exact (a float32 squared has at most 48
    significant bits).
    """
    amplitude = np.asarray(amplitude, dtype=np.float32)
    counts = np.square(amplitude.astype(np.float64))
    if counts.size and counts.max() < _MAX_EXACT_COUNT:
        rounded = np.rint(counts)
        if np.array_equal(np.sqrt(rounded).astype(np.float32), amplitude):
            return rounded.astype(np.uint32)
    return counts


class _CountsToAmplitude:
    """Counts block (k, h, w) -> float32 ``sqrt(counts)``, negatives and bad pixels to 0 (a class,
    not a closure, so that a lazy dataset pickles)."""

    def __init__(self, bad_pixels=None):
        self.bad = None if bad_pixels is None or not np.any(bad_pixels) else np.asarray(bad_pixels, dtype=bool)

    def __call__(self, counts):
        counts = np.array(counts, dtype=np.float64)  # one float64 working copy, changed in place
        counts[counts < 0] = 0.0
        np.sqrt(counts, out=counts)
        amplitude = counts.astype(np.float32)
        if self.bad is not None:
            amplitude[:, self.bad] = 0
        return amplitude


def amplitude_transform(bad_pixels=None):
    """A function mapping a block of counts (k, h, w) to float32 amplitudes ``sqrt(counts)``:
    negative counts become 0 (silently: :func:`warn_negative_counts` tells once per file) and
    ``bad_pixels`` (h, w) are set to 0. Used by the lazy HDF5 readers on every block read; the
    same values as :func:`counts_to_amplitude`."""
    return _CountsToAmplitude(bad_pixels)


def warn_negative_counts(node, *, path, key: str, rows: int = 256) -> None:
    """Warn once if the counts dataset ``node`` (an open h5py dataset) holds negative values,
    reading it ``rows`` patterns at a time (unsigned integers are skipped: they cannot be)."""
    if node.dtype.kind not in "if":
        return
    negative = 0
    for start in range(0, node.shape[0], rows):
        negative += int(np.count_nonzero(node[start : start + rows] < 0))
    if negative:
        warnings.warn(f"{path}: dataset '{key}' has {negative} negative counts; set to 0", stacklevel=3)


def counts_to_amplitude(counts, *, path=None, key: str = "patterns") -> np.ndarray:
    """Amplitude = sqrt(counts) as float32; negative counts are clipped to 0 with a warning."""
    counts = np.asarray(counts)
    if counts.dtype.kind in "iuf":
        counts = counts.astype(np.float64, copy=False)
    negative = counts < 0
    if negative.any():
        warnings.warn(
            f"{path}: dataset '{key}' has {int(negative.sum())} negative counts; set to 0",
            stacklevel=2,
        )
        counts = np.where(negative, 0.0, counts)
    return np.sqrt(counts).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Product


def _decode(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray) and value.size == 1:
        return _decode(value.reshape(()).item())
    return str(value)


#: Datasets of the extras group read lazily (by rows, when asked for): the ground-truth patches.
_LAZY_EXTRAS = ("patches",)


def _read_extras(h5file, path=None) -> dict:
    group = h5file.get(EXTRAS_GROUP)
    if group is None or hasattr(group, "dtype"):
        return {}
    extras = {key: _decode(value) for key, value in group.attrs.items()}
    for key, node in group.items():
        if not hasattr(node, "dtype"):
            continue
        if path is not None and key in _LAZY_EXTRAS and node.ndim >= 1 and node.dtype.kind in "biufc":
            extras[key] = HDF5Rows(path, f"{EXTRAS_GROUP}/{key}", shape=node.shape, dtype=np.complex64)
        else:
            extras[key] = node[()]
    return extras


def _take_mode(array: np.ndarray, keep_ndim: int, *, path, key: str, what: str) -> np.ndarray:
    """Index the leading axes at 0, warning when they hold more than one mode or layer."""
    leading = array.shape[: array.ndim - keep_ndim]
    if int(np.prod(leading)) > 1:
        warnings.warn(
            f"{path}: dataset '{key}' holds {leading} {what}; using the first only",
            stacklevel=3,
        )
    return array[(0,) * len(leading)]


def read_product(path, *, error=ReconstructionFileError) -> ProductContents:
    """Read a ptychodus ``product.h5`` into this project's frame (h5py only).

    Parameters
    ----------
    path : str or os.PathLike
    error : type
        Exception class for a file that breaks the layout (:class:`ReconstructionFileError`
        by default; the dataset readers pass :class:`DatasetError`).

    Returns
    -------
    ProductContents
        Positions in object pixels of layer 0 of ``/object`` (module docstring, "Frames").

    Raises
    ------
    error
        Naming the file, the dataset or attribute path and what was expected.
    """

    path = Path(path)
    with open_hdf5(path, error=error) as h5file:
        distance = read_attr_float(
            h5file, "detector_object_distance_m", path=path, where="the root group", error=error
        )
        energy_key = "photon_energy_eV" if "photon_energy_eV" in h5file.attrs else "probe_energy_eV"
        if energy_key not in h5file.attrs:
            energy_key = "photon_energy_eV"
        energy = read_attr_float(h5file, energy_key, path=path, where="the root group", error=error)
        obj = read_array(
            h5file, "object", path=path, error=error, kinds="c", ndims=(2, 3),
            expected="a complex (L, H, W) object array",
        )
        obj_node = h5file["object"]
        geom = {
            name: read_attr_float(obj_node, name, path=path, where="dataset '/object'", error=error)
            for name in ("pixel_width_m", "pixel_height_m", "center_x_m", "center_y_m")
        }
        for name in ("pixel_width_m", "pixel_height_m"):
            if not geom[name] > 0:
                raise error(
                    f"{path}: attribute '{name}' of dataset '/object' is {geom[name]}; expected > 0"
                )
        probe = read_array(
            h5file, "probe", path=path, error=error, kinds="c", ndims=(2, 3, 4),
            expected="a complex (C, I, h, w) probe array",
        )
        probe_node = h5file["probe"]
        for name, obj_name in (("pixel_width_m", "pixel_width_m"), ("pixel_height_m", "pixel_height_m")):
            value = read_attr_float(
                probe_node, name, path=path, where="dataset '/probe'", error=error, required=False
            )
            if value is not None and not np.isclose(value, geom[obj_name], rtol=1e-6, atol=0):
                raise error(
                    f"{path}: attribute '{name}' of '/probe' is {value:g} m but the object's is "
                    f"{geom[obj_name]:g} m; expected probe and object on the same pixel grid"
                )
        indexes = read_array(
            h5file, "probe_position_indexes", path=path, error=error, kinds="iu", ndims=(1,),
            expected="an integer (M,) array of position indexes",
        )
        xs = read_array(
            h5file, "probe_position_x_m", path=path, error=error, kinds="iuf", ndims=(1,),
            expected="a real (M,) array of x positions in metres",
        )
        ys = read_array(
            h5file, "probe_position_y_m", path=path, error=error, kinds="iuf", ndims=(1,),
            expected="a real (M,) array of y positions in metres",
        )
        if not (indexes.shape == xs.shape == ys.shape):
            raise error(
                f"{path}: position count mismatch: '/probe_position_indexes' {indexes.shape}, "
                f"'/probe_position_x_m' {xs.shape}, '/probe_position_y_m' {ys.shape}; expected "
                "one index, x and y per position"
            )
        if indexes.size == 0:
            raise error(f"{path}: '/probe_position_indexes' is empty; expected at least one position")
        if len(np.unique(indexes)) != indexes.size:
            raise error(f"{path}: '/probe_position_indexes' has repeated indexes; expected unique values")
        if not (np.isfinite(xs).all() and np.isfinite(ys).all()):
            raise error(f"{path}: '/probe_position_x_m'/'/probe_position_y_m' contain NaN or infinity")
        losses = None
        if "loss_values" in h5file:
            losses = read_array(
                h5file, "loss_values", path=path, error=error, kinds="iuf", ndims=(1,),
                expected="a real (E,) array of loss values",
            ).astype(np.float64)
        root_attrs = {key: h5file.attrs[key] for key in h5file.attrs}
        extras = _read_extras(h5file, path)

    obj2 = _take_mode(obj, 2, path=path, key="/object", what="object layers")
    probe2 = _take_mode(probe, 2, path=path, key="/probe", what="probe modes")
    height, width = obj2.shape
    positions = np.stack(
        [
            world_m_to_frame_px(xs, geom["center_x_m"], geom["pixel_width_m"], width),
            world_m_to_frame_px(ys, geom["center_y_m"], geom["pixel_height_m"], height),
        ],
        axis=1,
    )
    return ProductContents(
        object_image=np.ascontiguousarray(obj2, dtype=np.complex64),
        probe=np.ascontiguousarray(probe2, dtype=np.complex64),
        positions_xy=positions,
        position_indexes=indexes.astype(np.int64),
        pixel_size_xy_m=(geom["pixel_width_m"], geom["pixel_height_m"]),
        center_xy_m=(geom["center_x_m"], geom["center_y_m"]),
        photon_energy_eV=energy,
        detector_object_distance_m=distance,
        name=_decode(root_attrs.get("name", "")),
        comments=_decode(root_attrs.get("comments", "")),
        loss_values=losses,
        root_attrs=root_attrs,
        extras=extras,
    )


def _resolve_physics(pixel_size_m, photon_energy_eV, detector_object_distance_m):  # noqa: N803
    given = {
        "pixel_size_m": pixel_size_m,
        "photon_energy_eV": photon_energy_eV,
        "detector_object_distance_m": detector_object_distance_m,
    }
    resolved, defaulted = {}, []
    for key, value in given.items():
        if value is None:
            resolved[key] = _DEFAULTS[key]
            defaulted.append(key)
        else:
            value = float(value)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{key} must be a finite number > 0, got {value}")
            resolved[key] = value
    return resolved, defaulted


def _defaults_note(defaulted) -> str:
    if not defaulted:
        return ""
    values = ", ".join(f"{key}={_DEFAULTS[key]:g}" for key in defaulted)
    return (
        f"compare-models: {', '.join(defaulted)} unknown; written with placeholder defaults "
        f"({values}), not measured values."
    )


def write_product(
    path,
    object_image,
    *,
    probe,
    positions_xy,
    pixel_size_m: float | None = None,
    photon_energy_eV: float | None = None,  # noqa: N803
    detector_object_distance_m: float | None = None,
    name: str = "",
    comments: str = "",
    loss_values=None,
    position_indexes=None,
    probe_photon_count: float = 0.0,
    extras: dict | None = None,
    object_role: str | None = None,
) -> Path:
    """Write an object image, a probe and positions as a ptychodus product file.

    Parameters
    ----------
    path : str or os.PathLike
        Output ``.h5`` file; written to a temporary name and renamed.
    object_image : ndarray (H, W) complex
        The object, on the pixel grid ``positions_xy`` refer to. Its centre (pixel
        ``((W - 1)/2, (H - 1)/2)``) is placed at world coordinate (0, 0).
    probe : ndarray (N, N) complex
    positions_xy : ndarray (M, 2)
        Probe positions in object pixels of ``object_image`` (this project's frame, x column
        then y row); written in metres by :func:`frame_px_to_world_m`.
    pixel_size_m, photon_energy_eV, detector_object_distance_m : float or None
        Object pixel size (m), photon energy (eV), detector distance (m). ``None`` writes the
        module's documented defaults and says so in ``comments``.
    name, comments : str
        Root attributes ``name`` and ``comments``.
    loss_values : sequence of float, optional
        Per-epoch loss, written as ``/loss_epochs`` (0, 1, ...) and ``/loss_values``.
    position_indexes : sequence of int, optional
        ``/probe_position_indexes`` (default 0 .. M-1), pairing positions with patterns.
    probe_photon_count : float
        Root attribute ``probe_photon_count`` (0 when unknown, as ptychodus writes it).
    extras : dict, optional
        Attributes (str values) and datasets (arrays) for the ``/compare_models`` group.
    object_role : str, optional
        Root attribute ``object_role`` (``"ground_truth"`` marks the object as ground truth).

    Returns
    -------
    Path
        ``path``; ``ptychodus.api.io.load_product`` reads it back with the same object,
        probe and positions.
    """
    import h5py

    path = Path(path)
    obj = np.asarray(object_image)
    if obj.ndim != 2 or obj.dtype.kind != "c":
        raise ValueError(f"object_image must be a complex (H, W) array, got {obj.dtype} {obj.shape}")
    probe = np.asarray(probe)
    if probe.ndim != 2 or probe.dtype.kind != "c" or probe.shape[0] != probe.shape[1]:
        raise ValueError(f"probe must be a complex (N, N) array, got {probe.dtype} {probe.shape}")
    positions = np.asarray(positions_xy, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 2 or not np.isfinite(positions).all():
        raise ValueError(f"positions_xy must be finite (M, 2), got shape {positions.shape}")
    m = positions.shape[0]
    indexes = np.arange(m, dtype=np.int64) if position_indexes is None else np.asarray(position_indexes, dtype=np.int64)
    if indexes.shape != (m,):
        raise ValueError(f"position_indexes must have shape ({m},), got {indexes.shape}")
    physics, defaulted = _resolve_physics(pixel_size_m, photon_energy_eV, detector_object_distance_m)
    note = _defaults_note(defaulted)
    comments = "\n".join(part for part in (comments, note) if part)
    pixel = physics["pixel_size_m"]
    height, width = obj.shape
    x_m = frame_px_to_world_m(positions[:, 0], 0.0, pixel, width)
    y_m = frame_px_to_world_m(positions[:, 1], 0.0, pixel, height)

    extras = dict(extras or {})
    extras.setdefault("format_version", str(EXTRAS_VERSION))
    extras.setdefault("defaulted_json", json.dumps(defaulted))

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic_h5_path(path)
    try:
        with h5py.File(tmp, "w") as h5file:
            attrs = h5file.attrs
            attrs["name"] = str(name)
            attrs["comments"] = comments
            attrs["detector_object_distance_m"] = physics["detector_object_distance_m"]
            attrs["photon_energy_eV"] = physics["photon_energy_eV"]
            attrs["probe_photon_count"] = float(probe_photon_count)
            attrs["exposure_time_s"] = 0.0
            attrs["mass_attenuation_m2_per_kg"] = 0.0
            attrs["tomography_angle_deg"] = 0.0
            attrs["focus_object_distance_m"] = 0.0
            attrs["tilt_angle_deg"] = 0.0
            attrs["far_field"] = True
            if object_role is not None:
                attrs["object_role"] = str(object_role)
            h5file.create_dataset("probe_position_indexes", data=indexes)
            h5file.create_dataset("probe_position_x_m", data=x_m)
            h5file.create_dataset("probe_position_y_m", data=y_m)
            h5_probe = h5file.create_dataset("probe", data=probe.astype(np.complex64)[None, None])
            h5_probe.attrs["pixel_width_m"] = pixel
            h5_probe.attrs["pixel_height_m"] = pixel
            h5_obj = h5file.create_dataset("object", data=obj.astype(np.complex64)[None])
            h5_obj.attrs["center_x_m"] = 0.0
            h5_obj.attrs["center_y_m"] = 0.0
            h5_obj.attrs["pixel_width_m"] = pixel
            h5_obj.attrs["pixel_height_m"] = pixel
            h5file.create_dataset("object_layer_spacing_m", data=np.zeros(0, dtype=np.float64))
            losses = np.zeros(0) if loss_values is None else np.asarray(loss_values, dtype=np.float64).ravel()
            h5file.create_dataset("loss_epochs", data=np.arange(losses.size, dtype=np.int64))
            h5file.create_dataset("loss_values", data=losses)
            group = h5file.create_group(EXTRAS_GROUP)
            for key, value in extras.items():
                if isinstance(value, str):
                    group.attrs[key] = value
                else:
                    group.create_dataset(key, data=np.asarray(value))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


# --------------------------------------------------------------------------------------------
# Diffraction


def write_diffraction(path, amplitudes, *, detector_pixel_size_m: float, indexes=None) -> Path:
    """Write amplitudes (M, N, N) as a ptychodus ``diffraction.h5`` of counts (amplitude²).

    See :func:`amplitude_to_counts` for the dtype; ``/bad_pixels`` is all False.
    """
    import h5py

    path = Path(path)
    amplitudes = np.asarray(amplitudes)
    if amplitudes.ndim != 3:
        raise ValueError(f"amplitudes must be (M, N, N), got shape {amplitudes.shape}")
    m = amplitudes.shape[0]
    indexes = np.arange(m, dtype=np.int64) if indexes is None else np.asarray(indexes, dtype=np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic_h5_path(path)
    try:
        with h5py.File(tmp, "w") as h5file:
            h5file.create_dataset("indexes", data=indexes)
            patterns = h5file.create_dataset(
                "patterns", data=amplitude_to_counts(amplitudes), compression="lzf",
                chunks=(1, *amplitudes.shape[1:]),
            )
            patterns.attrs["detector_pixel_width_m"] = float(detector_pixel_size_m)
            patterns.attrs["detector_pixel_height_m"] = float(detector_pixel_size_m)
            h5file.create_dataset("bad_pixels", data=np.zeros(amplitudes.shape[1:], dtype=bool))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_diffraction(path, *, error=DatasetError, lazy: bool = False):
    """Read a ptychodus ``diffraction.h5``.

    Parameters
    ----------
    path : str or os.PathLike
    error : type
        Exception class for a file that breaks the layout.
    lazy : bool
        Return the amplitudes as a :class:`~compare_models.io.lazy.HDF5Rows` that reads
        ``/patterns`` by chunks when indexed (the file is not held open), instead of reading
        them whole.

    Returns
    -------
    indexes : ndarray (n,) int64
    amplitudes : ndarray or HDF5Rows, (n, h, w) float32
        sqrt(counts); pixels flagged in ``/bad_pixels`` are set to 0 (with a warning), negative
        counts to 0 (with a warning).
    detector_pixel_xy_m : tuple of float or None
    """

    path = Path(path)
    with open_hdf5(path, error=error) as h5file:
        node = dataset_node(
            h5file, "patterns", path=path, error=error, kinds="iuf", ndims=(3,),
            expected="real (n, h, w) diffraction counts",
        )
        shape = tuple(node.shape)
        indexes = read_array(
            h5file, "indexes", path=path, error=error, kinds="iu", ndims=(1,),
            expected=f"an integer ({shape[0]},) array of pattern indexes",
        )
        if indexes.shape[0] != shape[0]:
            raise error(
                f"{path}: '/indexes' has {indexes.shape[0]} entries but '/patterns' holds "
                f"{shape[0]} patterns; expected one index per pattern"
            )
        if len(np.unique(indexes)) != indexes.size:
            raise error(f"{path}: '/indexes' has repeated values; expected unique pattern indexes")
        pw = read_attr_float(node, "detector_pixel_width_m", path=path, where="dataset '/patterns'", error=error, required=False)
        ph = read_attr_float(node, "detector_pixel_height_m", path=path, where="dataset '/patterns'", error=error, required=False)
        bad = None
        if "bad_pixels" in h5file:
            bad = read_array(
                h5file, "bad_pixels", path=path, error=error, kinds="biu", ndims=(2,),
                expected=f"a boolean {shape[1:]} mask",
            ).astype(bool)
            if bad.shape != shape[1:]:
                raise error(
                    f"{path}: '/bad_pixels' has shape {bad.shape}; expected {shape[1:]}"
                )
        if lazy:
            warn_negative_counts(node, path=path, key="/patterns")
        else:
            patterns = node[()]
    if bad is not None and bad.any():
        warnings.warn(f"{path}: {int(bad.sum())} bad pixels set to 0", stacklevel=2)
    if lazy:
        amplitudes = HDF5Rows(path, "patterns", shape=shape, dtype=np.float32, transform=amplitude_transform(bad))
    else:
        amplitudes = counts_to_amplitude(patterns, path=path, key="/patterns")
        if bad is not None and bad.any():
            amplitudes[:, bad] = 0
    pixel = None if pw is None or ph is None else (pw, ph)
    return indexes.astype(np.int64), amplitudes, pixel


# --------------------------------------------------------------------------------------------
# The pair <-> Dataset


def resolve_pair(path) -> dict[str, Path]:
    """Find the pair's files from a directory, a product file or a diffraction file.

    Returns ``{"diffraction": ..., "product": ..., "ground_truth": ... or None}``; raises
    :class:`DatasetError` naming what is missing.
    """
    import h5py

    path = Path(path)
    if path.is_dir():
        directory, product, diffraction = path, path / PRODUCT_NAME, path / DIFFRACTION_NAME
    else:
        directory = path.parent
        with h5py.File(path, "r") as h5file:
            is_diffraction = "patterns" in h5file and "object" not in h5file
        if is_diffraction:
            diffraction, product = path, directory / PRODUCT_NAME
        else:
            product, diffraction = path, directory / DIFFRACTION_NAME
    for role, file in (("product", product), ("diffraction", diffraction)):
        if not file.is_file():
            raise DatasetError(
                f"{path}: the ptychodus pair needs a {role} file; expected {file} "
                f"(a directory holding {DIFFRACTION_NAME} and {PRODUCT_NAME})"
            )
    truth = directory / GROUND_TRUTH_NAME
    return {"diffraction": diffraction, "product": product, "ground_truth": truth if truth.is_file() else None}


def load_ptychodus_dataset(path) -> Dataset:
    """Load a ptychodus pair (see the module docstring) as a validated :class:`Dataset`.

    Parameters
    ----------
    path : str or os.PathLike
        The pair's directory, its ``product.h5`` or its ``diffraction.h5``.

    Returns
    -------
    Dataset
        Patterns paired with positions by index (in the product's position order), the
        product's probe, the ground truth when the pair has one, and metadata holding
        ``pixel_size_m``, ``photon_energy_eV`` and ``detector_object_distance_m`` (measured
        values only: defaults written by this project are left out).
    """
    files = resolve_pair(path)
    product = read_product(files["product"], error=DatasetError)
    indexes, amplitudes, _ = read_diffraction(files["diffraction"], error=DatasetError, lazy=True)
    n = product.probe.shape
    if amplitudes.shape[1:] != n or n[0] != n[1]:
        raise DatasetError(
            f"{files['diffraction']}: patterns are {amplitudes.shape[1:]} but the probe in "
            f"{files['product']} is {n}; expected square patterns the size of the probe"
        )
    row_of = {int(index): row for row, index in enumerate(indexes)}
    missing = [int(i) for i in product.position_indexes if int(i) not in row_of]
    if missing:
        raise DatasetError(
            f"{files['product']}: {len(missing)} of {product.position_indexes.size} positions "
            f"(indexes {missing[:5]}{'...' if len(missing) > 5 else ''}) have no pattern in "
            f"{files['diffraction']} '/indexes'; expected every position index to pair with a "
            "pattern"
        )
    if len(row_of) > product.position_indexes.size:
        warnings.warn(
            f"{files['diffraction']}: {len(row_of) - product.position_indexes.size} patterns have "
            "no position in the product and are dropped",
            stacklevel=2,
        )
    rows = np.array([row_of[int(i)] for i in product.position_indexes], dtype=np.int64)
    if not np.array_equal(rows, np.arange(len(amplitudes))):
        amplitudes = RowView(amplitudes, rows)  # read in the product's order, lazily

    frame = product
    object_truth = None
    truth_extras = {}
    if files["ground_truth"] is not None:
        frame = read_product(files["ground_truth"], error=DatasetError)
        object_truth = frame.object_image
        truth_extras = frame.extras
    elif _decode(product.root_attrs.get("object_role", "")) == "ground_truth":
        object_truth = product.object_image
    positions = product.positions_xy
    if frame is not product:
        # Positions live in the ground truth's pixel grid: map the product's metres there.
        xm = frame_px_to_world_m(positions[:, 0], product.center_xy_m[0], product.pixel_size_xy_m[0], product.object_image.shape[1])
        ym = frame_px_to_world_m(positions[:, 1], product.center_xy_m[1], product.pixel_size_xy_m[1], product.object_image.shape[0])
        positions = np.stack(
            [
                world_m_to_frame_px(xm, frame.center_xy_m[0], frame.pixel_size_xy_m[0], frame.object_image.shape[1]),
                world_m_to_frame_px(ym, frame.center_xy_m[1], frame.pixel_size_xy_m[1], frame.object_image.shape[0]),
            ],
            axis=1,
        )
    pw, ph = frame.pixel_size_xy_m
    if not np.isclose(pw, ph, rtol=1e-9, atol=0):
        warnings.warn(
            f"{files['product']}: object pixels are {pw:g} x {ph:g} m (not square); "
            "pixel_size_m records the width",
            stacklevel=2,
        )

    extras = product.extras
    metadata = {}
    defaulted = []
    if "metadata_json" in extras:
        try:
            metadata = json.loads(extras["metadata_json"])
            defaulted = json.loads(extras.get("defaulted_json", "[]"))
        except json.JSONDecodeError as exc:
            raise DatasetError(
                f"{files['product']}: attribute '/{EXTRAS_GROUP}' metadata_json is not valid JSON ({exc})"
            ) from exc
    else:
        metadata = {"source_format": "ptychodus"}
        if product.name:
            metadata["ptychodus_product_name"] = product.name
    physics = {
        "pixel_size_m": float(pw),
        "photon_energy_eV": product.photon_energy_eV,
        "detector_object_distance_m": product.detector_object_distance_m,
    }
    for key in _PHYSICAL_KEYS:
        if key not in defaulted:
            metadata[key] = physics[key]

    start = None
    if "positions_start_x_px" in extras and "positions_start_y_px" in extras:
        start = np.stack(
            [np.asarray(extras["positions_start_x_px"], np.float64), np.asarray(extras["positions_start_y_px"], np.float64)],
            axis=1,
        )
    scan_index = None
    if "scan_index" in extras:
        scan_index = np.asarray(extras["scan_index"]).astype(np.int64)
    patches = None
    if "patches" in truth_extras:
        patches = truth_extras["patches"]
        if not is_lazy(patches):
            patches = np.asarray(patches).astype(np.complex64)
    return Dataset(
        diffraction_amplitude=amplitudes,
        positions_xy=positions,
        probe=product.probe,
        object_truth=object_truth,
        patches_truth=patches,
        positions_start_xy=start,
        scan_index=scan_index,
        metadata=metadata,
        source=str(path),
    )


def save_ptychodus_dataset(
    dataset,
    out_dir,
    *,
    pixel_size_m: float | None = None,
    photon_energy_eV: float | None = None,  # noqa: N803
    detector_object_distance_m: float | None = None,
    name: str | None = None,
) -> dict[str, Path]:
    """Write ``dataset`` as a ptychodus pair in ``out_dir`` (created if needed).

    ``product.h5`` holds the probe, the positions and, as object, a uniform initial guess
    (ones) on the ground truth's grid (or the scan's bounding box without one);
    ``ground_truth.h5`` holds the ground truth when the dataset has one. Physical values not
    given are taken from ``dataset.metadata`` and otherwise defaulted (module docstring).

    Returns
    -------
    dict
        Written paths by role (``diffraction``, ``product``, ``ground_truth``).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DatasetError(f"{out_dir}: exists and is not a directory; expected a directory for the ptychodus pair")
    meta = dataset.metadata
    pixel_size_m = meta.get("pixel_size_m") if pixel_size_m is None else pixel_size_m
    photon_energy_eV = meta.get("photon_energy_eV") if photon_energy_eV is None else photon_energy_eV  # noqa: N806
    if detector_object_distance_m is None:
        detector_object_distance_m = meta.get("detector_object_distance_m")
    physics, _ = _resolve_physics(pixel_size_m, photon_energy_eV, detector_object_distance_m)
    n = dataset.patch_size
    name = name if name is not None else Path(dataset.source).stem if dataset.source else "compare-models"
    extras = {
        "metadata_json": json.dumps(dataset.metadata, sort_keys=True),
        "positions_start_x_px": dataset.positions_start_xy[:, 0],
        "positions_start_y_px": dataset.positions_start_xy[:, 1],
    }
    if dataset.scan_index is not None:
        extras["scan_index"] = dataset.scan_index
    if dataset.object_truth is not None:
        shape = dataset.object_truth.shape
    else:
        shape = scan_canvas_shape(dataset.positions_xy, n)
    common = {
        "probe": dataset.probe,
        "positions_xy": dataset.positions_xy,
        "pixel_size_m": pixel_size_m,
        "photon_energy_eV": photon_energy_eV,
        "detector_object_distance_m": detector_object_distance_m,
        "probe_photon_count": dataset.measured_dose,
    }
    written = {
        "diffraction": write_diffraction(
            out_dir / DIFFRACTION_NAME,
            dataset.diffraction_amplitude,
            detector_pixel_size_m=detector_pixel_size_m(
                physics["pixel_size_m"], physics["photon_energy_eV"], physics["detector_object_distance_m"], n
            ),
        ),
        "product": write_product(
            out_dir / PRODUCT_NAME,
            np.ones(shape, dtype=np.complex64),
            name=name,
            comments="compare-models: object is a uniform initial guess",
            extras=extras,
            **common,
        ),
    }
    truth_path = out_dir / GROUND_TRUTH_NAME
    if dataset.object_truth is not None:
        truth_extras = {} if dataset.patches_truth is None else {"patches": dataset.patches_truth}
        written["ground_truth"] = write_product(
            truth_path,
            dataset.object_truth,
            name=f"{name} ground truth",
            comments="compare-models: object is the ground truth",
            extras=truth_extras,
            object_role="ground_truth",
            **common,
        )
    elif truth_path.exists():
        truth_path.unlink()  # a stale ground truth would be read with the new pair
    return written
