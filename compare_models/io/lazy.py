"""Arrays of scan rows read from the file on demand: diffraction patterns and ground-truth
patches that are never held whole.

A :class:`LazyRows` looks like a read-only (M, ...) NumPy array along its first axis:
``.shape``, ``.dtype``, ``.ndim``, ``len()``, and indexing by an int, a slice (any step) or an
integer index array (any shape, any order, repeats allowed; a boolean mask of length M too).
Indexing returns a fresh NumPy array (a copy) of :attr:`LazyRows.dtype`; further axes can follow
in a tuple (``lazy[rows, 3:5]``). ``np.asarray(lazy)`` materialises the whole array, for the
commands that want it (training, simulation, pty-chi).

Backends
--------
* :class:`NpyMemberRows`: a ``.npy`` member *stored* (not compressed) in an NPZ archive
  (``np.savez``). The member's data start is found from the zip local header and the ``.npy``
  header; rows are read with positioned reads into fresh buffers, so the pages read stay in the
  kernel's page cache and are not counted in the process's resident set (a memory map would
  count every page touched until unmapped). The file is opened per read: nothing is held open.
* :class:`ZipStreamRows`: a compressed member (``np.savez_compressed``). Deflate streams have no
  random access, so a read decompresses from the member's start up to the last row wanted,
  keeping only the rows asked for; :func:`iter_chunks` decompresses once front to back. Good
  for a pass or two (validation, a fingerprint), slow for random batches: the readers
  materialise compressed *diffraction* instead (module :mod:`compare_models.io.npz`).
* :class:`HDF5Rows`: an HDF5 dataset (ptychodus ``/patterns``, CXI ``/entry_1/data_1/data``,
  ground-truth patches). Rows are read by runs of consecutive rows with h5py (whose fancy
  indexing needs increasing, unique indices: the rows are sorted, read and put back in the
  order asked for). The file is opened per read.
* :class:`RowView`: rows of another array picked by an index map (``Dataset.subset``, the
  pairing of ptychodus patterns with positions); nothing is copied until read.

Every backend converts what it reads with an optional elementwise ``transform`` (counts to
amplitudes, bad pixels to zero) and casts to its ``dtype``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

__all__ = [
    "LazyRows",
    "NpyMemberRows",
    "ZipStreamRows",
    "HDF5Rows",
    "RowView",
    "iter_chunks",
    "chunk_rows",
    "take_rows",
    "is_lazy",
    "npz_member_info",
    "CHUNK_BYTES",
]

#: Default size of one chunk of :func:`iter_chunks` (and the longest run read at once), bytes.
#: A float64 temporary of a chunk (doses, energies) takes twice this.
CHUNK_BYTES = 8 * 1024 * 1024
#: Rows skipped between two wanted rows that are still read in one run rather than two.
_GAP_ROWS = 8


def is_lazy(array) -> bool:
    """True for a :class:`LazyRows` (an array read from its file on demand)."""
    return isinstance(array, LazyRows)


def chunk_rows(array, chunk_bytes: int | None = None) -> int:
    """Rows per chunk so that one chunk of ``array`` takes about ``chunk_bytes`` (default
    :data:`CHUNK_BYTES`), at least 1."""
    chunk_bytes = CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    row_bytes = int(np.prod(array.shape[1:], dtype=np.int64)) * np.dtype(array.dtype).itemsize
    return max(1, int(chunk_bytes // max(row_bytes, 1)))


def iter_chunks(array, rows: int | None = None):
    """Yield ``(start, chunk)`` over consecutive row blocks of ``array``.

    Parameters
    ----------
    array : ndarray or LazyRows, (M, ...)
    rows : int, optional
        Rows per chunk (default :func:`chunk_rows`, about 8 MiB).

    Yields
    ------
    start : int
        Index of the chunk's first row.
    chunk : ndarray, (k, ...)
        Rows ``start .. start + k - 1``: a view for an ndarray, a fresh array for a lazy one.
    """
    rows = chunk_rows(array) if rows is None else int(rows)
    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    if isinstance(array, LazyRows):
        yield from array._iter_blocks(rows)
        return
    for start in range(0, len(array), rows):
        yield start, array[start : start + rows]


def take_rows(array, indices) -> np.ndarray:
    """``array[indices]`` for an ndarray or a :class:`LazyRows` (any integer index shape)."""
    return array[np.asarray(indices, dtype=np.int64)]


class LazyRows:
    """Base class: an (M, ...) array whose rows are read on demand (see the module docstring).

    Subclasses implement :meth:`_read_sorted` (unique, increasing rows) and may override
    :meth:`_iter_blocks`.

    Attributes
    ----------
    shape : tuple of int
    dtype : numpy.dtype
    source : str or None
        The file, for error messages.
    key : str or None
        The member or dataset path inside the file, for error messages.
    values_checked : bool
        Set by :func:`compare_models.io.dataset.validate_dataset` once every value has been
        found finite and non-negative; views of a checked array are checked.
    """

    def __init__(self, shape, dtype, *, source=None, key=None):
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.source = None if source is None else str(source)
        self.key = key
        self._values_checked = False

    # -- array-like surface ------------------------------------------------------------------
    @property
    def ndim(self) -> int:
        """Number of axes."""
        return len(self.shape)

    @property
    def size(self) -> int:
        """Number of elements."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        """Bytes the whole array would take in memory."""
        return self.size * self.dtype.itemsize

    @property
    def values_checked(self) -> bool:
        return self._values_checked

    @values_checked.setter
    def values_checked(self, value: bool) -> None:
        self._values_checked = bool(value)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        where = f" {self.source}:{self.key}" if self.source else ""
        return f"<{type(self).__name__}{where} shape={self.shape} dtype={self.dtype}>"

    def __array__(self, dtype=None, copy=None):
        out = np.empty(self.shape, dtype=self.dtype)
        for start, chunk in self._iter_blocks(chunk_rows(self)):
            out[start : start + len(chunk)] = chunk
        return out if dtype is None else out.astype(dtype, copy=False)

    def __getitem__(self, key):
        rest = ()
        if isinstance(key, tuple):
            if not key:
                return np.asarray(self)
            if any(k is Ellipsis or k is None for k in key):
                raise TypeError(f"{type(self).__name__} supports int, slice and integer-array indexing of the first axis")
            key, rest = key[0], key[1:]
        m = self.shape[0]
        if isinstance(key, (int, np.integer)):
            index = int(key)
            if not -m <= index < m:
                raise IndexError(f"index {index} is out of bounds for axis 0 with size {m}")
            out = self.take(np.array([index % m]))[0]
            lead = 0
        elif isinstance(key, slice):
            start, stop, step = key.indices(m)
            if step == 1:
                out = self._read_range(start, max(start, stop))
            else:
                out = self.take(np.arange(start, stop, step))
            lead = 1
        else:
            index = np.asarray(key)
            if index.size == 0 and index.dtype.kind == "f":  # an empty list
                index = index.astype(np.int64)
            if index.dtype == bool:
                if index.shape != (m,):
                    raise IndexError(f"boolean index of shape {index.shape} does not match axis 0 of size {m}")
                index = np.flatnonzero(index)
            elif index.dtype.kind not in "iu":
                raise IndexError(f"only integers, slices and integer or boolean arrays are valid indices, got {index.dtype}")
            out = self.take(index)
            lead = index.ndim
        return out[(slice(None),) * lead + rest] if rest else out

    def take(self, indices) -> np.ndarray:
        """Rows ``indices`` (any integer shape, negative counted from the end) as a new
        array of shape ``indices.shape + shape[1:]``."""
        index = np.asarray(indices, dtype=np.int64)
        m = self.shape[0]
        flat = index.ravel()
        if flat.size and (flat.min() < -m or flat.max() >= m):
            bad = flat[(flat < -m) | (flat >= m)][0]
            raise IndexError(f"index {int(bad)} is out of bounds for axis 0 with size {m}")
        flat = np.where(flat < 0, flat + m, flat)
        if flat.size == 0:
            return np.empty(index.shape + self.shape[1:], dtype=self.dtype)
        if flat.size == 1 or np.all(flat[1:] > flat[:-1]):
            data = self._read_sorted(flat)
        else:
            unique, inverse = np.unique(flat, return_inverse=True)
            data = self._read_sorted(unique)[inverse]
        return data.reshape(index.shape + self.shape[1:])

    # -- for subclasses ----------------------------------------------------------------------
    def _read_sorted(self, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows`` (1-D, unique, increasing, in range) as a new array of ``dtype``."""
        raise NotImplementedError

    def _read_range(self, start: int, stop: int) -> np.ndarray:
        if stop <= start:
            return np.empty((0, *self.shape[1:]), dtype=self.dtype)
        return self._read_sorted(np.arange(start, stop, dtype=np.int64))

    def _iter_blocks(self, rows: int):
        for start in range(0, self.shape[0], rows):
            yield start, self._read_range(start, min(start + rows, self.shape[0]))


def _runs(rows: np.ndarray, max_span: int, gap: int = _GAP_ROWS):
    """Split sorted unique rows into runs ``(first, last + 1, a, b)`` (``rows[a:b]``) that skip
    at most ``gap`` rows between two wanted ones and span at most ``max_span`` rows (unless a
    single row), so that a read never holds much more than it returns."""
    breaks = np.flatnonzero(np.diff(rows) > gap + 1)
    starts = np.concatenate([[0], breaks + 1])
    stops = np.concatenate([breaks + 1, [rows.size]])
    runs = []
    for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
        while a < b:
            end = a + int(np.searchsorted(rows[a:b], rows[a] + max(max_span, 1)))
            runs.append((int(rows[a]), int(rows[end - 1]) + 1, a, end))
            a = end
    return runs


class _RunReader(LazyRows):
    """Reads sorted rows by runs of consecutive rows (:meth:`_read_run` on an open handle)."""

    def __init__(self, shape, dtype, *, source=None, key=None, transform=None):
        super().__init__(shape, dtype, source=source, key=key)
        self._transform = transform

    def _open(self):
        raise NotImplementedError

    def _read_run(self, handle, start: int, stop: int) -> np.ndarray:
        raise NotImplementedError

    def _convert(self, raw: np.ndarray) -> np.ndarray:
        if self._transform is not None:
            raw = self._transform(raw)
        return np.asarray(raw, dtype=self.dtype)

    def _read_sorted(self, rows):
        out = np.empty((rows.size, *self.shape[1:]), dtype=self.dtype)
        with self._open() as handle:
            for first, stop, a, b in _runs(rows, chunk_rows(self)):
                block = self._convert(self._read_run(handle, first, stop))
                out[a:b] = block if stop - first == b - a else block[rows[a:b] - first]
        return out

    def _read_range(self, start, stop):
        if stop <= start:
            return np.empty((0, *self.shape[1:]), dtype=self.dtype)
        with self._open() as handle:
            return self._convert(self._read_run(handle, start, stop))


# ---------------------------------------------------------------------------------------------
# NPZ members


def _read_npy_header(stream):
    """``(shape, fortran_order, dtype)`` of the ``.npy`` stream at its start (versions 1-3)."""
    from numpy.lib import format as npy_format

    version = npy_format.read_magic(stream)
    if version == (1, 0):
        return npy_format.read_array_header_1_0(stream)
    if version == (2, 0):
        return npy_format.read_array_header_2_0(stream)
    try:  # version 3.0 (utf-8 field names) has no public reader
        from numpy.lib._format_impl import _read_array_header
    except ImportError:  # pragma: no cover - older NumPy
        from numpy.lib.format import _read_array_header
    return _read_array_header(stream, version)


def npz_member_info(path, key: str) -> dict:
    """Where and how the ``.npy`` member ``key`` of the NPZ ``path`` is stored.

    Returns
    -------
    dict
        ``stored`` (True when the member is not compressed), ``data_offset`` (byte offset of
        the array data in the file when stored, else None), ``shape``, ``dtype`` and
        ``fortran_order`` from the ``.npy`` header.

    Raises
    ------
    KeyError
        No member ``key.npy``.
    ValueError
        The member is not a ``.npy`` file, or its zip entry is encrypted or inconsistent.
    """
    name = f"{key}.npy"
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
        if info.flag_bits & 0x1:
            raise ValueError(f"member {name} is encrypted")
        stored = info.compress_type == zipfile.ZIP_STORED
        with archive.open(info) as member:
            shape, fortran_order, dtype = _read_npy_header(member)
            header_bytes = member.tell() if stored else None
    data_offset = None
    if stored:
        with open(path, "rb") as handle:
            handle.seek(info.header_offset)
            local = handle.read(30)
            if local[:4] != b"PK\x03\x04":
                raise ValueError(f"member {name}: bad zip local header")
            name_len = int.from_bytes(local[26:28], "little")
            extra_len = int.from_bytes(local[28:30], "little")
        data_offset = info.header_offset + 30 + name_len + extra_len + header_bytes
    return {"stored": stored, "data_offset": data_offset, "shape": tuple(shape), "dtype": dtype,
            "fortran_order": bool(fortran_order)}


class NpyMemberRows(_RunReader):
    """Rows of a stored (uncompressed) ``.npy`` member of an NPZ, read with positioned reads.

    Parameters
    ----------
    path : str or Path
        The NPZ file.
    data_offset : int
        Byte offset of the member's array data (:func:`npz_member_info`).
    file_shape : tuple
        Shape in the file, C order; its first axis is the row axis, and the product of the rest
        must equal that of ``shape[1:]`` (a trailing axis of length 1 is dropped this way).
    file_dtype : numpy.dtype
    shape : tuple
        Shape presented.
    dtype : numpy.dtype
        Dtype presented (each read is cast to it).
    key : str
    """

    def __init__(self, path, *, data_offset: int, file_shape, file_dtype, shape, dtype, key=None, transform=None):
        super().__init__(shape, dtype, source=path, key=key, transform=transform)
        self._path = Path(path)
        self._offset = int(data_offset)
        self._file_dtype = np.dtype(file_dtype)
        self._row_items = int(np.prod(file_shape[1:], dtype=np.int64))
        if file_shape[0] != self.shape[0] or self._row_items != int(np.prod(self.shape[1:], dtype=np.int64)):
            raise ValueError(f"file shape {tuple(file_shape)} cannot be read as {self.shape}")
        self._row_bytes = self._row_items * self._file_dtype.itemsize

    def _open(self):
        return open(self._path, "rb", buffering=0)

    def _read_run(self, handle, start, stop):
        count = stop - start
        raw = np.empty(count * self._row_items, dtype=self._file_dtype)
        view = memoryview(raw).cast("B")
        handle.seek(self._offset + start * self._row_bytes)
        done = 0
        while done < view.nbytes:
            got = handle.readinto(view[done:])
            if not got:
                raise OSError(f"{self._path}: member '{self.key}' ends early (file truncated?)")
            done += got
        return raw.reshape((count, *self.shape[1:]))


class ZipStreamRows(LazyRows):
    """Rows of a compressed ``.npy`` member, decompressed front to back on each read (see the
    module docstring: fine for a pass, slow for random access)."""

    def __init__(self, path, *, key: str, file_shape, file_dtype, shape, dtype, transform=None):
        super().__init__(shape, dtype, source=path, key=key)
        self._path = Path(path)
        self._file_dtype = np.dtype(file_dtype)
        self._row_items = int(np.prod(file_shape[1:], dtype=np.int64))
        if file_shape[0] != self.shape[0] or self._row_items != int(np.prod(self.shape[1:], dtype=np.int64)):
            raise ValueError(f"file shape {tuple(file_shape)} cannot be read as {self.shape}")
        self._transform = transform

    def _stream(self, rows_per_block: int):
        """Yield ``(start, raw block)`` decompressing the member once, front to back."""
        row_bytes = self._row_items * self._file_dtype.itemsize
        with zipfile.ZipFile(self._path) as archive, archive.open(f"{self.key}.npy") as member:
            _read_npy_header(member)
            for start in range(0, self.shape[0], rows_per_block):
                count = min(rows_per_block, self.shape[0] - start)
                data = member.read(count * row_bytes)
                if len(data) != count * row_bytes:
                    raise OSError(f"{self._path}: member '{self.key}' ends early (file truncated?)")
                raw = np.frombuffer(data, dtype=self._file_dtype).reshape((count, *self.shape[1:]))
                yield start, raw

    def _convert(self, raw):
        if self._transform is not None:
            raw = self._transform(raw)
        return np.array(raw, dtype=self.dtype)

    def _read_sorted(self, rows):
        out = np.empty((rows.size, *self.shape[1:]), dtype=self.dtype)
        if rows.size == 0:
            return out
        last = int(rows[-1])
        block = chunk_rows(self)
        for start, raw in self._stream(block):
            if start > last:
                break
            stop = start + len(raw)
            a, b = np.searchsorted(rows, [start, stop])
            if b > a:
                out[a:b] = self._convert(raw[rows[a:b] - start])
        return out

    def _iter_blocks(self, rows):
        for start, raw in self._stream(rows):
            yield start, self._convert(raw)


# ---------------------------------------------------------------------------------------------
# HDF5


class HDF5Rows(_RunReader):
    """Rows of an HDF5 dataset, read by runs with h5py; the file is opened per read.

    Parameters
    ----------
    path : str or Path
    dataset : str
        Path of the dataset inside the file; its first axis is the row axis, and the product of
        the rest must equal that of ``shape[1:]``.
    shape, dtype :
        What is presented (each read is cast to ``dtype`` after ``transform``).
    transform : callable, optional
        Applied to each raw block (e.g. counts -> amplitudes).
    """

    def __init__(self, path, dataset: str, *, shape, dtype, transform=None):
        super().__init__(shape, dtype, source=path, key=dataset, transform=transform)
        self._path = Path(path)
        self._dataset = dataset

    def _open(self):
        import h5py

        return h5py.File(self._path, "r")

    def _read_run(self, handle, start, stop):
        raw = handle[self._dataset][start:stop]
        return raw.reshape((stop - start, *self.shape[1:]))


# ---------------------------------------------------------------------------------------------
# Views


class RowView(LazyRows):
    """Rows ``rows`` of ``base`` (an ndarray or a lazy array), in that order; nothing is read
    until indexed."""

    def __init__(self, base, rows):
        rows = np.asarray(rows, dtype=np.int64)
        if rows.ndim != 1:
            raise ValueError("rows must be a 1-D integer array")
        m = len(base)
        if rows.size and (rows.min() < -m or rows.max() >= m):
            raise IndexError(f"row index out of bounds for {m} rows")
        rows = np.where(rows < 0, rows + m, rows)
        if isinstance(base, RowView):  # compose: a view of a view reads the first base
            rows, base = base._rows[rows], base._base
        super().__init__((rows.size, *base.shape[1:]), base.dtype,
                         source=getattr(base, "source", None), key=getattr(base, "key", None))
        self._base = base
        self._rows = rows
        self._values_checked = bool(getattr(base, "values_checked", False))

    @property
    def values_checked(self) -> bool:
        return self._values_checked or bool(getattr(self._base, "values_checked", False))

    @values_checked.setter
    def values_checked(self, value: bool) -> None:
        self._values_checked = bool(value)

    def _read_sorted(self, rows):
        return self.take(rows)

    def take(self, indices):
        index = np.asarray(indices, dtype=np.int64)
        m = self.shape[0]
        if index.size and (index.min() < -m or index.max() >= m):
            raise IndexError(f"index out of bounds for axis 0 with size {m}")
        mapped = self._rows[np.where(index < 0, index + m, index)]
        if isinstance(self._base, LazyRows):
            return self._base.take(mapped)
        return np.array(self._base[mapped], dtype=self.dtype)

    def _read_range(self, start, stop):
        return self.take(np.arange(start, stop, dtype=np.int64))
