"""The NPZ form of the test-data contract (docs/design.md, "Contracts"): read and write.

Nothing is ever unpickled: files are opened with ``allow_pickle=False``. A required key that
would need pickle is an error.

Variants PtychoPINN writes, and what is done with them
------------------------------------------------------
* ``diff3d`` beside ``diffraction``: used if the two are equal; if they differ the file is
  refused with an error naming both keys (never a silent choice).
* Diffraction of shape (M, N, N, 1): the trailing axis is squeezed.
* ``Y`` holding a single value (a placeholder, often a pickled ``None``): ignored with a warning.
* ``Y`` that is not one patch per position, such as the (1, N, N, 1) patch that PtychoPINN's
  ``generate_patches_tool.py`` writes by default: ignored with a warning, as PtychoPINN's own
  loader ignores it (:func:`compare_models.io.dataset.patches_for_positions`, which every
  reader goes through).
* ``ground_truth_patches`` (M, N, N[, 1]): the ground-truth patches when ``Y`` is absent.
* ``_metadata`` stored as a pickled 0-d object array: its JSON string is taken out of the
  pickle's opcode stream without unpickling (:mod:`compare_models.io.pickled_json`); a stream
  that is anything but a plain string array (a class, a call) is skipped with a warning.

Large files
-----------
The diffraction and the ground-truth patches are not read whole (:mod:`compare_models.io.lazy`):
a member stored uncompressed (``np.savez``, as :func:`save_dataset` writes) is read by rows at
its offset in the file when indexed; a compressed member (``np.savez_compressed``) cannot be,
so compressed *diffraction* is read into memory on its own (one member at a time, never two
decompressed together) and compressed patches are streamed when asked for. The legacy
(N, N, M) layout and Fortran-ordered members are read whole. Positions, probe and object are
small and read at once.
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
from .lazy import NpyMemberRows, ZipStreamRows, iter_chunks, npz_member_info

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


def _pickled_metadata_text(archive, path) -> str | None:
    """The JSON string of a pickled ``_metadata`` entry, read from its opcodes (never
    unpickled); None with a warning when the stream is not a plain string array."""
    from .pickled_json import UnsafePickle, json_text_from_npy

    try:
        data = archive.zip.read("_metadata.npy")
        return json_text_from_npy(data)
    except (UnsafePickle, KeyError, zipfile.BadZipFile, OSError) as exc:
        warnings.warn(
            f"{path}: key '_metadata' is a pickled object that is not a plain string ({exc}); "
            "skipped (never unpickled)",
            stacklevel=4,
        )
        return None


def _read_metadata(archive, path) -> dict:
    if "_metadata" not in archive.files:
        return {}
    try:
        raw = read_npz_member(archive, "_metadata", path)
    except DatasetError as exc:
        if "pickle" not in str(exc):
            raise
        raw = None
    if raw is None:  # a pickled object array, as PtychoPINN writes it
        text = _pickled_metadata_text(archive, path)
        if text is None:
            return {}
    else:
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


def _diffraction_layout(diff: np.ndarray, m: int, path, key: str = "diffraction") -> np.ndarray:
    """Return (M, N, N) amplitudes, accepting the legacy (N, N, M) layout and a trailing
    channel axis of length 1, (M, N, N, 1)."""
    if diff.ndim == 4 and diff.shape[-1] == 1:
        diff = diff[..., 0]
    if diff.ndim != 3:
        raise DatasetError(
            f"{path}: key '{key}': expected rank 3 (M, N, N), got rank {diff.ndim} "
            f"with shape {diff.shape}"
        )
    if diff.shape[0] == m and diff.shape[1] == diff.shape[2]:
        return diff
    if diff.shape[2] == m and diff.shape[0] == diff.shape[1]:
        return np.moveaxis(diff, 2, 0)
    raise DatasetError(
        f"{path}: key '{key}': shape {diff.shape} does not match the {m} positions in "
        f"'xcoords'; expected ({m}, N, N) or the legacy (N, N, {m})"
    )


def _member_info(path, key: str) -> dict:
    """:func:`~compare_models.io.lazy.npz_member_info`, with errors naming the file and key."""
    try:
        return npz_member_info(path, key)
    except KeyError as exc:
        raise DatasetError(f"{path}: key '{key}' is not a NumPy array (.npy) member") from exc
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DatasetError(f"{path}: key '{key}' is not a readable NumPy array ({exc})") from exc


def _lazy_rows(path, key: str, info: dict, shape, dtype):
    """A lazy reader of member ``key`` presented as ``shape``/``dtype`` (same C-order bytes per
    row): positioned reads when stored, a decompressing stream when compressed."""
    common = {"file_shape": info["shape"], "file_dtype": info["dtype"], "shape": shape, "dtype": dtype}
    if info["stored"]:
        return NpyMemberRows(path, data_offset=info["data_offset"], key=key, **common)
    return ZipStreamRows(path, key=key, **common)


def _row_layout(info: dict, m: int):
    """(M, N, N) when member ``info`` can be read row by row as amplitudes, else None (the
    legacy (N, N, M) layout and Fortran order are read whole)."""
    shape = info["shape"]
    if info["fortran_order"]:
        return None
    if len(shape) == 4 and shape[-1] == 1:
        shape = shape[:3]
    if len(shape) == 3 and shape[0] == m and shape[1] == shape[2]:
        return shape
    return None


def _check_member_dtype(info: dict, key: str, path, *, complex_ok: bool) -> None:
    dtype = info["dtype"]
    if dtype.hasobject:
        raise DatasetError(
            f"{path}: key '{key}' is stored as a pickled object array; refusing to unpickle. "
            "Expected a numeric array"
        )
    _numeric(np.empty(0, dtype=dtype), key, path, complex_ok=complex_ok)


def _read_diffraction(archive, keys, m: int, path):
    """(M, N, N) float32 amplitudes from ``diffraction`` and/or ``diff3d``; both present and
    different is an error naming both keys.

    A stored member comes back lazy (:class:`~compare_models.io.lazy.NpyMemberRows`); a
    compressed one is decompressed into memory on its own (random batches need random access,
    which a deflate stream has not). A second key is compared chunk by chunk, never held.
    """
    first_key = keys[0]
    info = _member_info(path, first_key)
    _check_member_dtype(info, first_key, path, complex_ok=False)
    shape = _row_layout(info, m)
    if shape is not None and info["stored"]:
        first = _lazy_rows(path, first_key, info, shape, np.float32)
    else:
        diff = _numeric(read_npz_member(archive, first_key, path), first_key, path, complex_ok=False)
        first = np.ascontiguousarray(_diffraction_layout(diff, m, path, first_key), dtype=np.float32)
    if len(keys) == 2:
        key = keys[1]
        other = _member_info(path, key)
        _check_member_dtype(other, key, path, complex_ok=False)
        other_shape = _row_layout(other, m)
        if other_shape is not None:
            second = _lazy_rows(path, key, other, other_shape, np.float32)
        else:
            value = _numeric(read_npz_member(archive, key, path), key, path, complex_ok=False)
            second = np.asarray(_diffraction_layout(value, m, path, key), dtype=np.float32)
        same = tuple(second.shape) == tuple(first.shape)
        if same:
            for start, chunk in iter_chunks(second):
                if not np.array_equal(first[start : start + len(chunk)], chunk):
                    same = False
                    break
        if not same:
            raise DatasetError(
                f"{path}: keys 'diffraction' {tuple(first.shape)} and 'diff3d' {tuple(second.shape)} hold "
                "different patterns; expected one of them, or both equal (remove the one that is wrong)"
            )
    return first


def _read_patches(archive, files, path):
    """Ground-truth patches (M, N, N) complex64 from ``Y`` or, without a usable ``Y``,
    ``ground_truth_patches``; a single-valued ``Y`` placeholder is ignored with a warning.

    Returned lazy (read when asked for; stored members by positioned reads, compressed ones by
    a decompressing stream); Fortran-ordered members are read whole.
    """
    for key in ("Y", "ground_truth_patches"):
        if key not in files:
            continue
        info = _member_info(path, key)
        if key == "Y" and info["dtype"].hasobject:  # a pickled None, as PtychoPINN writes it
            warnings.warn(f"{path}: key 'Y' is a pickled object; skipped (never unpickled)", stacklevel=3)
            continue
        shape = info["shape"]
        if key == "Y" and int(np.prod(shape, dtype=np.int64)) <= 1:
            warnings.warn(
                f"{path}: key 'Y' holds a single value (shape {shape}), not ground-truth "
                "patches; ignored",
                stacklevel=3,
            )
            continue
        _check_member_dtype(info, key, path, complex_ok=True)
        if len(shape) == 4 and shape[-1] == 1:  # (M, N, N, 1), as PtychoPINN writes
            shape = shape[:3]
        if info["fortran_order"] or len(shape) < 1 or shape[0] == 0:
            return _patch_array(read_npz_member(archive, key, path), key, path)
        return _lazy_rows(path, key, info, shape, np.complex64)
    return None


def _patch_array(value: np.ndarray, key: str, path) -> np.ndarray:
    patches = _numeric(value, key, path, complex_ok=True)
    if patches.ndim == 4 and patches.shape[-1] == 1:  # (M, N, N, 1), as PtychoPINN writes
        patches = patches[..., 0]
    return patches.astype(np.complex64)


def load_npz_dataset(path) -> Dataset:
    """Load and validate an NPZ dataset without unpickling anything (see module docstring)."""
    path = Path(path)
    with open_npz(path) as archive:
        files = set(archive.files)
        diff_keys = [key for key in ("diffraction", "diff3d") if key in files]
        if not diff_keys:
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
        diff = _read_diffraction(archive, diff_keys, m, path)
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
        patches = _read_patches(archive, files, path)
        scan_index = None
        if "scan_index" in files:
            scan_index = _numeric(read_npz_member(archive, "scan_index", path), "scan_index", path, complex_ok=False)
            scan_index = scan_index.astype(np.int64)
        metadata = _read_metadata(archive, path)

    return Dataset(
        diffraction_amplitude=diff,
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
        "diffraction": np.asarray(dataset.diffraction_amplitude, dtype=np.float32),
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
        arrays["Y"] = np.asarray(dataset.patches_truth, dtype=np.complex64)
    if dataset.scan_index is not None:
        arrays["scan_index"] = dataset.scan_index.astype(np.int64)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return path
