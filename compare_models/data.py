"""The test-data contract: load, validate and write ptychography datasets.

Frames and units (DESIGN.md, "Frames and units")
------------------------------------------------
* Positions are in object pixels: x is the column, y the row. A patch of size N centred at
  (x, y) covers rows ``y - N/2 .. y + N/2 - 1`` and columns ``x - N/2 .. x + N/2 - 1``; patch
  pixel (N/2, N/2) sits on object pixel (y, x).
* Diffraction is stored as amplitude (square root of counts), float32, shape (M, N, N), with
  the zero frequency at pixel (N/2, N/2).
* Dose is measured: :attr:`Dataset.measured_dose` is the mean number of counts per pattern.

Nothing is ever unpickled: files are opened with ``allow_pickle=False``. A pickled
``_metadata`` entry (as the older pipeline wrote it) is skipped with a warning; a required key
that would need pickle is an error.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DatasetError

__all__ = [
    "Dataset",
    "load_dataset",
    "load_npz_dataset",
    "save_dataset",
    "validate_dataset",
    "patch_bounds_ok",
]

# Tolerance for positions on the boundary of the object (float rounding of stored coordinates).
_POSITION_TOLERANCE_PX = 1e-6


@dataclass(frozen=True, eq=False)
class Dataset:
    """A validated ptychographic scan.

    Attributes
    ----------
    diffraction_amplitude : ndarray, (M, N, N) float32
        Measured far-field amplitudes (square root of counts), zero frequency at (N/2, N/2).
    positions_xy : ndarray, (M, 2) float64
        Patch centres in object pixels, column ``x`` then row ``y``.
    probe : ndarray, (N, N) complex64
        Illumination in the sample plane.
    object_truth : ndarray, (H, W) complex64, or None
        Ground-truth object on the pixel grid the positions refer to.
    patches_truth : ndarray, (M, N, N) complex64, or None
        Ground-truth object patches (the ``Y`` key).
    positions_start_xy : ndarray, (M, 2) float64
        Nominal positions (``xcoords_start``/``ycoords_start``); equal to ``positions_xy``
        when the file does not carry them.
    scan_index : ndarray, (M,) int64, or None
    metadata : dict
        JSON-decoded ``_metadata`` (dose, seed, provenance), empty when absent.
    source : str or None
        Path the dataset was loaded from, for error messages and provenance.
    """

    diffraction_amplitude: np.ndarray
    positions_xy: np.ndarray
    probe: np.ndarray
    object_truth: np.ndarray | None = None
    patches_truth: np.ndarray | None = None
    positions_start_xy: np.ndarray | None = None
    scan_index: np.ndarray | None = None
    metadata: dict = field(default_factory=dict)
    source: str | None = None

    def __post_init__(self):
        validate_dataset(self)
        if self.positions_start_xy is None:
            object.__setattr__(self, "positions_start_xy", self.positions_xy.copy())

    @property
    def n_positions(self) -> int:
        """Number of scan positions M."""
        return int(self.diffraction_amplitude.shape[0])

    @property
    def patch_size(self) -> int:
        """Pattern and probe side N in pixels."""
        return int(self.diffraction_amplitude.shape[1])

    @property
    def measured_dose(self) -> float:
        """Mean photon count per pattern, computed from the amplitudes (counts = amplitude²)."""
        counts = np.square(self.diffraction_amplitude, dtype=np.float64)
        return float(counts.sum(axis=(1, 2)).mean())

    @property
    def nominal_dose(self) -> float | None:
        """The dose the generator was asked for, if the metadata records one."""
        value = self.metadata.get("dose_nominal")
        return None if value is None else float(value)

    @property
    def pixel_size_m(self) -> float | None:
        """Object pixel size in metres, if the metadata records one."""
        value = self.metadata.get("pixel_size_m")
        return None if value is None else float(value)

    def subset(self, indices) -> Dataset:
        """Return the dataset restricted to the scan positions ``indices`` (in that order)."""
        indices = np.asarray(indices, dtype=np.int64)
        if indices.ndim != 1:
            raise DatasetError("subset indices must be a 1-D integer array")

        def pick(array):
            return None if array is None else array[indices]

        return dataclasses.replace(
            self,
            diffraction_amplitude=self.diffraction_amplitude[indices],
            positions_xy=self.positions_xy[indices],
            positions_start_xy=pick(self.positions_start_xy),
            patches_truth=pick(self.patches_truth),
            scan_index=pick(self.scan_index),
            metadata=dict(self.metadata),
        )


def _where(dataset_or_source) -> str:
    source = getattr(dataset_or_source, "source", dataset_or_source)
    return f"{source}: " if source else ""


def patch_bounds_ok(positions_xy, patch_size: int, object_shape) -> np.ndarray:
    """True for each position whose N x N patch lies inside an object of ``object_shape``.

    A patch centred at (x, y) needs columns ``x - N/2 .. x + N/2 - 1`` (rounded outward for
    sub-pixel positions, which interpolation reads on both sides).
    """
    positions_xy = np.asarray(positions_xy, dtype=np.float64)
    height, width = object_shape
    half = patch_size / 2
    low = positions_xy - half
    high = positions_xy + half - 1
    tol = _POSITION_TOLERANCE_PX
    inside_x = (low[:, 0] >= -tol) & (np.ceil(high[:, 0] - tol) <= width - 1)
    inside_y = (low[:, 1] >= -tol) & (np.ceil(high[:, 1] - tol) <= height - 1)
    return inside_x & inside_y


def validate_dataset(dataset: Dataset) -> None:
    """Check shapes, dtypes, finiteness and geometry; raise :class:`DatasetError` if broken."""
    where = _where(dataset)
    diff = dataset.diffraction_amplitude
    if not isinstance(diff, np.ndarray) or diff.ndim != 3 or diff.shape[1] != diff.shape[2]:
        raise DatasetError(
            f"{where}key 'diffraction': expected amplitudes of shape (M, N, N), got "
            f"{getattr(diff, 'shape', type(diff).__name__)}"
        )
    m, n = diff.shape[0], diff.shape[1]
    if m == 0:
        raise DatasetError(f"{where}key 'diffraction': no diffraction patterns (M = 0)")
    if not np.isfinite(diff).all():
        raise DatasetError(f"{where}key 'diffraction': contains NaN or infinite values")
    if (diff < 0).any():
        raise DatasetError(
            f"{where}key 'diffraction': negative values; expected amplitudes (sqrt of counts) >= 0"
        )
    pos = dataset.positions_xy
    if not isinstance(pos, np.ndarray) or pos.shape != (m, 2):
        raise DatasetError(
            f"{where}keys 'xcoords'/'ycoords': expected {m} positions (one per pattern), got "
            f"shape {getattr(pos, 'shape', None)}"
        )
    if not np.isfinite(pos).all():
        raise DatasetError(f"{where}keys 'xcoords'/'ycoords': contain NaN or infinite values")
    if dataset.positions_start_xy is not None and dataset.positions_start_xy.shape != (m, 2):
        raise DatasetError(
            f"{where}keys 'xcoords_start'/'ycoords_start': expected {m} positions, got "
            f"shape {dataset.positions_start_xy.shape}"
        )
    probe = dataset.probe
    if not isinstance(probe, np.ndarray) or probe.ndim != 2:
        raise DatasetError(
            f"{where}key 'probeGuess': expected a 2-D (N, N) complex array, got shape "
            f"{getattr(probe, 'shape', None)}"
        )
    if probe.shape != (n, n):
        raise DatasetError(
            f"{where}key 'probeGuess': shape {probe.shape} does not match the diffraction "
            f"patterns' N = {n}; expected ({n}, {n})"
        )
    if not np.isfinite(probe).all():
        raise DatasetError(f"{where}key 'probeGuess': contains NaN or infinite values")
    obj = dataset.object_truth
    if obj is not None:
        if obj.ndim != 2:
            raise DatasetError(
                f"{where}key 'objectGuess': expected a 2-D (H, W) complex array, got shape "
                f"{obj.shape}"
            )
        if not np.isfinite(obj).all():
            raise DatasetError(f"{where}key 'objectGuess': contains NaN or infinite values")
        inside = patch_bounds_ok(pos, n, obj.shape)
        if not inside.all():
            bad = int(np.flatnonzero(~inside)[0])
            raise DatasetError(
                f"{where}keys 'xcoords'/'ycoords': the {n}x{n} patch at position {bad} "
                f"(x={pos[bad, 0]:g}, y={pos[bad, 1]:g}) leaves the object of shape "
                f"{obj.shape}; expected N/2 <= x <= W - N/2 and N/2 <= y <= H - N/2 "
                f"({int((~inside).sum())} positions out of bounds)"
            )
    patches = dataset.patches_truth
    if patches is not None and patches.shape != (m, n, n):
        raise DatasetError(
            f"{where}key 'Y': expected ground-truth patches of shape {(m, n, n)}, got "
            f"{patches.shape}"
        )
    if dataset.scan_index is not None and dataset.scan_index.shape != (m,):
        raise DatasetError(
            f"{where}key 'scan_index': expected shape ({m},), got {dataset.scan_index.shape}"
        )


# --------------------------------------------------------------------------------------------
# Reading


def load_dataset(path) -> Dataset:
    """Load a dataset from ``path``, choosing the reader by the file's content.

    Parameters
    ----------
    path : str or os.PathLike
        An NPZ file following the contract in DESIGN.md (a zip archive); an HDF5 file (by its
        signature): a ptychodus ``product.h5`` or ``diffraction.h5`` with its partner beside
        it, or CXI; or a directory holding a ptychodus pair (see
        :mod:`compare_models.formats.ptychodus`).

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
        from .formats import is_ptychodus_pair_dir, load_ptychodus_dataset

        if is_ptychodus_pair_dir(path):
            return load_ptychodus_dataset(path)
        raise DatasetError(
            f"{path}: is a directory; expected a dataset file (.npz) or a ptychodus pair "
            "directory holding product.h5 and diffraction.h5"
        )
    if zipfile.is_zipfile(path):
        return load_npz_dataset(path)
    from .formats import has_hdf5_signature, load_hdf5_dataset

    if has_hdf5_signature(path):
        return load_hdf5_dataset(path)
    raise DatasetError(
        f"{path}: not a dataset file; expected an NPZ archive (a zip of .npy arrays), "
        "a ptychodus product/diffraction HDF5 file or a CXI file"
    )


def open_npz(path, *, error=DatasetError):
    """Open an NPZ archive with ``allow_pickle=False``; an unreadable file raises ``error``."""
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise error(f"{path}: cannot be read as NPZ ({exc})") from exc


def read_npz_member(archive, key: str, path, *, error=DatasetError, optional: bool = False):
    """The array under ``key`` of an NPZ opened with ``allow_pickle=False``.

    A pickled object array is refused with ``error`` naming the file and key, or, when
    ``optional``, skipped with a warning (None is returned); nothing is ever unpickled. A
    corrupt member or a zip member that is not a ``.npy`` file also raises ``error``.
    """
    try:
        value = archive[key]
    except ValueError as exc:
        if "pickle" not in str(exc):
            raise error(f"{path}: key '{key}' is not a readable NumPy array ({exc})") from exc
        if optional:
            warnings.warn(f"{path}: key '{key}' is a pickled object; skipped (never unpickled)", stacklevel=3)
            return None
        raise error(
            f"{path}: key '{key}' is stored as a pickled object array; refusing to unpickle. "
            "Expected a numeric array"
        ) from exc
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise error(f"{path}: key '{key}' is corrupt ({exc})") from exc
    if not isinstance(value, np.ndarray):  # a zip member that is not a .npy file
        raise error(f"{path}: key '{key}' is not a NumPy array (.npy) member")
    return value


def _numeric(array: np.ndarray, key: str, path, *, complex_ok: bool) -> np.ndarray:
    kind = array.dtype.kind
    allowed = "biufc" if complex_ok else "biuf"
    if kind not in allowed:
        expected = "a numeric (real or complex)" if complex_ok else "a real numeric"
        raise DatasetError(f"{path}: key '{key}' has dtype {array.dtype}; expected {expected} array")
    return array


def _read_metadata(archive, path) -> dict:
    if "_metadata" not in archive.files:
        return {}
    raw = read_npz_member(archive, "_metadata", path, optional=True)
    if raw is None:  # the older pipeline pickled it: skipped with a warning
        return {}
    if raw.dtype.kind not in "US" or raw.size != 1:
        warnings.warn(
            f"{path}: key '_metadata' is not a JSON string (dtype {raw.dtype}); skipped",
            stacklevel=3,
        )
        return {}
    text = raw.reshape(()).item()
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: key '_metadata' is not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise DatasetError(f"{path}: key '_metadata' must hold a JSON object, got {type(value).__name__}")
    return value


def _diffraction_layout(diff: np.ndarray, m: int, path) -> np.ndarray:
    """Return (M, N, N) amplitudes, accepting the legacy (N, N, M) layout."""
    if diff.ndim != 3:
        raise DatasetError(
            f"{path}: key 'diffraction': expected rank 3 (M, N, N), got rank {diff.ndim} "
            f"with shape {diff.shape}"
        )
    if diff.shape[0] == m and diff.shape[1] == diff.shape[2]:
        return diff
    if diff.shape[2] == m and diff.shape[0] == diff.shape[1]:
        return np.moveaxis(diff, 2, 0)
    raise DatasetError(
        f"{path}: key 'diffraction': shape {diff.shape} does not match the {m} positions in "
        f"'xcoords'; expected ({m}, N, N) or the legacy (N, N, {m})"
    )


def load_npz_dataset(path) -> Dataset:
    """Load and validate an NPZ dataset without unpickling anything (see module docstring)."""
    path = Path(path)
    with open_npz(path) as archive:
        files = set(archive.files)
        diff_key = "diffraction" if "diffraction" in files else "diff3d" if "diff3d" in files else None
        if diff_key is None:
            raise DatasetError(
                f"{path}: missing key 'diffraction' (or 'diff3d'): expected amplitudes (M, N, N)"
            )
        for key in ("xcoords", "ycoords", "probeGuess"):
            if key not in files:
                expected = "(N, N) complex probe" if key == "probeGuess" else "(M,) positions"
                raise DatasetError(f"{path}: missing key '{key}': expected {expected}")

        def vector(key):
            value = _numeric(read_npz_member(archive, key, path), key, path, complex_ok=False)
            if value.ndim != 1:
                raise DatasetError(
                    f"{path}: key '{key}': expected rank 1 (M,), got shape {value.shape}"
                )
            return value.astype(np.float64)

        x, y = vector("xcoords"), vector("ycoords")
        if x.shape != y.shape:
            raise DatasetError(
                f"{path}: keys 'xcoords' {x.shape} and 'ycoords' {y.shape} differ in length"
            )
        m = x.shape[0]
        diff = _numeric(read_npz_member(archive, diff_key, path), diff_key, path, complex_ok=False)
        diff = _diffraction_layout(diff, m, path).astype(np.float32)
        probe = _numeric(read_npz_member(archive, "probeGuess", path), "probeGuess", path, complex_ok=True)
        start = None
        if "xcoords_start" in files or "ycoords_start" in files:
            if not {"xcoords_start", "ycoords_start"} <= files:
                raise DatasetError(
                    f"{path}: keys 'xcoords_start' and 'ycoords_start' must be given together"
                )
            xs, ys = vector("xcoords_start"), vector("ycoords_start")
            if xs.shape != (m,) or ys.shape != (m,):
                raise DatasetError(
                    f"{path}: keys 'xcoords_start'/'ycoords_start': expected shape ({m},), got "
                    f"{xs.shape} and {ys.shape}"
                )
            start = np.stack([xs, ys], axis=1)
        obj = None
        if "objectGuess" in files:
            obj = _numeric(read_npz_member(archive, "objectGuess", path), "objectGuess", path, complex_ok=True)
            obj = obj.astype(np.complex64)
        patches = None
        if "Y" in files:
            patches = _numeric(read_npz_member(archive, "Y", path), "Y", path, complex_ok=True)
            if patches.ndim == 4 and patches.shape[-1] == 1:  # (M, N, N, 1) from older writers
                patches = patches[..., 0]
            patches = patches.astype(np.complex64)
        scan_index = None
        if "scan_index" in files:
            scan_index = _numeric(read_npz_member(archive, "scan_index", path), "scan_index", path, complex_ok=False)
            scan_index = scan_index.astype(np.int64)
        metadata = _read_metadata(archive, path)

    return Dataset(
        diffraction_amplitude=np.ascontiguousarray(diff),
        positions_xy=np.stack([x, y], axis=1),
        probe=probe.astype(np.complex64),
        object_truth=obj,
        patches_truth=patches,
        positions_start_xy=start,
        scan_index=scan_index,
        metadata=metadata,
        source=str(path),
    )


# --------------------------------------------------------------------------------------------
# Writing


def save_dataset(dataset: Dataset, path) -> Path:
    """Write ``dataset`` as an NPZ in the contract format (no object arrays, no pickle).

    The file is written to a temporary name and renamed, so a reader never sees half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {
        "diffraction": dataset.diffraction_amplitude.astype(np.float32),
        "xcoords": dataset.positions_xy[:, 0].astype(np.float64),
        "ycoords": dataset.positions_xy[:, 1].astype(np.float64),
        "xcoords_start": dataset.positions_start_xy[:, 0].astype(np.float64),
        "ycoords_start": dataset.positions_start_xy[:, 1].astype(np.float64),
        "probeGuess": dataset.probe.astype(np.complex64),
        "_metadata": np.array(json.dumps(dataset.metadata, sort_keys=True)),
    }
    if dataset.object_truth is not None:
        arrays["objectGuess"] = dataset.object_truth.astype(np.complex64)
    if dataset.patches_truth is not None:
        arrays["Y"] = dataset.patches_truth.astype(np.complex64)
    if dataset.scan_index is not None:
        arrays["scan_index"] = dataset.scan_index.astype(np.int64)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return path
