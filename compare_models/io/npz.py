"""The NPZ form of the test-data contract (DESIGN.md, "Contracts"): read and write.

Nothing is ever unpickled: files are opened with ``allow_pickle=False``. A pickled
``_metadata`` entry (as the older pipeline wrote it) is skipped with a warning; a required key
that would need pickle is an error.
"""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from .dataset import Dataset

__all__ = ["load_npz_dataset", "save_dataset", "open_npz", "read_npz_member"]


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
