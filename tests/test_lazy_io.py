"""Lazy diffraction and patches (compare_models.io.lazy): each backend against the array it was
written from, for every indexing form; the Dataset's chunked validation, dose, fingerprint and
subset; no file handle left open; and peak memory that does not follow the file's size."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compare_models.errors import DatasetError
from compare_models.io import lazy
from compare_models.io.dataset import Dataset, dataset_fingerprint, diffraction_counts_check
from compare_models.io.dispatch import load_dataset
from compare_models.io.lazy import (
    HDF5Rows,
    LazyRows,
    NpyMemberRows,
    RowView,
    ZipStreamRows,
    iter_chunks,
    npz_member_info,
)
from compare_models.io.ptychodus import save_ptychodus_dataset

M, N = 37, 8
REPO = Path(__file__).resolve().parents[1]


def _reference(m=M, n=N, seed=0):
    rng = np.random.default_rng(seed)
    return np.sqrt(rng.poisson(4.0, size=(m, n, n))).astype(np.float32)


def _arrays(m=M, n=N, seed=0):
    """A contract NPZ's arrays: Poisson amplitudes, positions inside a 40 x 40 object, Y."""
    rng = np.random.default_rng(seed)
    return {
        "diffraction": _reference(m, n, seed),
        "xcoords": rng.uniform(n / 2, 40 - n / 2, m),
        "ycoords": rng.uniform(n / 2, 40 - n / 2, m),
        "probeGuess": (rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n))).astype(np.complex64),
        "objectGuess": np.exp(1j * rng.normal(size=(40, 40))).astype(np.complex64),
        "Y": (rng.normal(size=(m, n, n)) + 1j * rng.normal(size=(m, n, n))).astype(np.complex64),
    }


def _eager(arrays, source=None) -> Dataset:
    return Dataset(
        diffraction_amplitude=arrays["diffraction"],
        positions_xy=np.stack([arrays["xcoords"], arrays["ycoords"]], axis=1),
        probe=arrays["probeGuess"],
        object_truth=arrays.get("objectGuess"),
        patches_truth=arrays.get("Y"),
        source=source,
    )


# ---------------------------------------------------------------------------------------------
# Backends, built once


@pytest.fixture(scope="module")
def backends(tmp_path_factory):
    """name -> (lazy array, the ndarray it must equal)."""
    root = tmp_path_factory.mktemp("lazy")
    ref = _reference()
    ref4 = ref[..., None]  # (M, N, N, 1), as PtychoPINN writes
    np.savez(root / "stored.npz", a=ref, b=ref4, c=ref.astype(np.float64))
    np.savez_compressed(root / "compressed.npz", a=ref)
    with h5py.File(root / "data.h5", "w") as h5file:
        h5file.create_dataset("chunked", data=np.square(ref.astype(np.float64)), chunks=(1, N, N), compression="lzf")
        h5file.create_dataset("contiguous", data=ref)
    out = {}
    for key, ref_key in (("a", ref), ("b", ref), ("c", ref)):
        info = npz_member_info(root / "stored.npz", key)
        assert info["stored"]
        out[f"npz-stored-{key}"] = (
            NpyMemberRows(root / "stored.npz", data_offset=info["data_offset"], file_shape=info["shape"],
                          file_dtype=info["dtype"], shape=ref.shape, dtype=np.float32, key=key),
            ref_key,
        )
    info = npz_member_info(root / "compressed.npz", "a")
    assert not info["stored"] and info["data_offset"] is None
    out["npz-compressed"] = (
        ZipStreamRows(root / "compressed.npz", key="a", file_shape=info["shape"], file_dtype=info["dtype"],
                      shape=ref.shape, dtype=np.float32),
        ref,
    )
    out["hdf5-chunked-counts"] = (
        HDF5Rows(root / "data.h5", "chunked", shape=ref.shape, dtype=np.float32,
                 transform=lambda counts: np.sqrt(counts)),
        ref,
    )
    out["hdf5-contiguous"] = (HDF5Rows(root / "data.h5", "contiguous", shape=ref.shape, dtype=np.float32), ref)
    order = np.random.default_rng(1).permutation(M)
    out["view-of-ndarray"] = (RowView(ref, order), ref[order])
    base = out["npz-stored-a"][0]
    out["view-of-view"] = (RowView(RowView(base, order), order[::-1]), ref[order][order[::-1]])
    out["view-of-hdf5"] = (RowView(out["hdf5-chunked-counts"][0], order[:20]), ref[order[:20]])
    return out


NAMES = ["npz-stored-a", "npz-stored-b", "npz-stored-c", "npz-compressed", "hdf5-chunked-counts",
         "hdf5-contiguous", "view-of-ndarray", "view-of-view", "view-of-hdf5"]


@pytest.mark.parametrize("name", NAMES)
def test_surface_ints_slices_and_whole(backends, name):
    array, ref = backends[name]
    assert isinstance(array, LazyRows)
    assert array.shape == ref.shape and len(array) == len(ref) and array.ndim == 3
    assert array.dtype == np.float32
    m = len(ref)
    for i in (0, 1, m - 1, -1, -m):
        got = array[i]
        assert got.dtype == np.float32 and np.array_equal(got, ref[i])
    for key in (slice(None), slice(3, 11), slice(None, None, 3), slice(-5, None), slice(None, None, -2),
                slice(5, 2), slice(2, 1000), slice(np.int64(4), np.int64(9))):
        assert np.array_equal(array[key], ref[key]), key
    assert np.array_equal(np.asarray(array), ref)
    assert np.array_equal(array[2:9, 1:3, ::2], ref[2:9, 1:3, ::2])
    assert np.array_equal(array[[4, 0], 2], ref[[4, 0], 2])
    mask = np.arange(m) % 3 == 1
    assert np.array_equal(array[mask], ref[mask])
    for rows in (1, 4, m, m + 5):
        pieces = list(iter_chunks(array, rows))
        assert [start for start, _ in pieces] == list(range(0, m, rows))
        assert np.array_equal(np.concatenate([chunk for _, chunk in pieces]), ref)
    with pytest.raises(IndexError):
        array[m]
    with pytest.raises(IndexError):
        array[[0, m]]
    got = array[[1, 2]]
    got[:] = -1  # a copy: writing to it changes nothing
    assert np.array_equal(array[[1, 2]], ref[[1, 2]])


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_index_arrays_any_order_with_repeats(backends, name, data):
    array, ref = backends[name]
    m = len(ref)
    shape = data.draw(st.sampled_from([(0,), (1,), (5,), (17,), (3, 4), (2, 1, 3)]))
    count = int(np.prod(shape))
    values = data.draw(st.lists(st.integers(-m, m - 1), min_size=count, max_size=count))
    index = np.array(values, dtype=data.draw(st.sampled_from([np.int64, np.int32]))).reshape(shape)
    got = array[index]
    assert got.shape == ref[index].shape and got.dtype == np.float32
    assert np.array_equal(got, ref[index])
    if index.ndim == 1:
        assert np.array_equal(array[index.tolist()], ref[index])


def test_iter_chunks_on_ndarrays_gives_views():
    ref = _reference()
    pieces = list(iter_chunks(ref, 10))
    assert [start for start, _ in pieces] == [0, 10, 20, 30]
    assert all(np.shares_memory(chunk, ref) for _, chunk in pieces)
    with pytest.raises(ValueError):
        list(iter_chunks(ref, 0))


def test_runs_never_read_far_beyond_what_is_asked(backends, monkeypatch):
    """Sparse rows are read as short runs: a read never holds many more rows than it returns."""
    array, ref = backends["npz-stored-a"]
    seen = []
    original = NpyMemberRows._read_run

    def spy(self, handle, start, stop):
        seen.append(stop - start)
        return original(self, handle, start, stop)

    monkeypatch.setattr(NpyMemberRows, "_read_run", spy)
    rows = np.arange(0, M, 12)  # gaps of 11 rows: each row on its own
    assert np.array_equal(array[rows], ref[rows])
    assert seen == [1] * rows.size
    seen.clear()
    monkeypatch.setattr(lazy, "CHUNK_BYTES", 5 * N * N * 4)  # runs of at most 5 rows
    assert np.array_equal(array[np.arange(M)[::-1]], ref[::-1])
    assert max(seen) <= 5 and sum(seen) == M


# ---------------------------------------------------------------------------------------------
# Readers and the Dataset


def _write_formats(root: Path, arrays) -> dict[str, Path]:
    """The same data as stored NPZ, compressed NPZ, a ptychodus pair and (patterns only) CXI."""
    paths = {"stored": root / "stored.npz", "compressed": root / "compressed.npz", "pair": root / "pair"}
    np.savez(paths["stored"], **arrays)
    np.savez_compressed(paths["compressed"], **arrays)
    save_ptychodus_dataset(_eager(arrays), paths["pair"])
    return paths


def test_readers_are_lazy_and_equal_to_the_eager_dataset(tmp_path):
    arrays = _arrays()
    eager = _eager(arrays)
    paths = _write_formats(tmp_path, arrays)
    for name, path in paths.items():
        dataset = load_dataset(path)
        diff = dataset.diffraction_amplitude
        if name == "compressed":  # a deflate stream has no random access: read into memory
            assert isinstance(diff, np.ndarray)
        else:
            assert isinstance(diff, LazyRows), name
        assert np.array_equal(np.asarray(diff), arrays["diffraction"]), name
        assert isinstance(dataset.patches_truth, LazyRows), name  # Y is read only when asked for
        assert np.array_equal(np.asarray(dataset.patches_truth), arrays["Y"]), name
        assert dataset.measured_dose == eager.measured_dose, name  # the same sums, chunked
        assert dataset.diffraction_units == eager.diffraction_units
        assert diffraction_counts_check(diff, {}) == diffraction_counts_check(arrays["diffraction"], {})
        if name != "pair":  # the pair stores positions in metres (rounding)
            assert dataset_fingerprint(dataset) == dataset_fingerprint(dataclasses.replace(eager, source=str(path)))
        copied = pickle.loads(pickle.dumps(dataset.subset([2, 0])))  # e.g. to a sweep worker
        assert np.array_equal(copied.diffraction_amplitude[[1, 0]], arrays["diffraction"][[0, 2]])


def test_cxi_patterns_are_read_lazily_with_mask_and_clipping(tmp_path):
    counts = np.square(_reference().astype(np.float64))
    counts[5, 0, 0] = -3.0
    mask = np.zeros((N, N), np.uint8)
    mask[2, 3] = 1
    path = tmp_path / "scan.cxi"
    with h5py.File(path, "w") as h5file:
        h5file.create_dataset("/entry_1/data_1/data", data=counts, chunks=(4, N, N))
        h5file["/entry_1/instrument_1/detector_1/mask"] = mask
        h5file["/entry_1/sample_1/geometry_1/translation"] = np.random.default_rng(0).uniform(0, 1e-7, (M, 3))
        h5file["/entry_1/instrument_1/source_1/illumination"] = np.ones((N, N), np.complex64)
        h5file["/entry_1/ptychodus/object_pixel_width_m"] = 1e-8
    with pytest.warns(UserWarning, match="1 negative counts"):
        dataset = load_dataset(path)
    assert isinstance(dataset.diffraction_amplitude, HDF5Rows)
    expected = np.sqrt(np.maximum(counts, 0)).astype(np.float32)
    expected[:, 2, 3] = 0
    assert np.array_equal(dataset.diffraction_amplitude[[7, 5, 5]], expected[[7, 5, 5]])
    assert np.array_equal(np.asarray(dataset.diffraction_amplitude), expected)


def test_chunked_values_match_whole_array_numbers(tmp_path, monkeypatch):
    """Dose, energy and the PtychoPINN factor from 3-row chunks equal the whole-array values."""
    from compare_models.models.inputs import intensity_scale
    from compare_models.models.ptychopinn import inputs as upstream

    arrays = _arrays(m=50)
    np.savez(tmp_path / "d.npz", **arrays)
    monkeypatch.setattr(lazy, "CHUNK_BYTES", 3 * N * N * 4)
    dataset = load_dataset(tmp_path / "d.npz")
    ref = arrays["diffraction"]
    assert dataset.measured_dose == float(np.square(ref, dtype=np.float64).sum(axis=(1, 2)).mean())
    np.testing.assert_array_equal(
        upstream.pattern_energy(dataset.diffraction_amplitude), np.sum(np.square(ref.astype(np.float64)), axis=(1, 2))
    )
    positions = dataset.positions_xy
    for gridsize in (1, 2):
        groups = upstream.group_neighbours(positions, gridsize)
        assert upstream.normalization_factor(dataset.diffraction_amplitude, groups) == upstream.normalization_factor(
            ref, groups
        )
        members = groups[[3, 0, 3]]
        np.testing.assert_array_equal(
            upstream.normalized_group(dataset.diffraction_amplitude, members, 0.5),
            upstream.normalized_group(ref, members, 0.5),
        )
    assert intensity_scale(dataset.diffraction_amplitude) == pytest.approx(intensity_scale(ref), rel=1e-12)


@pytest.mark.parametrize("bad, message", [(np.nan, "contains NaN or infinite"), (-1.0, "negative values")])
def test_bad_value_in_a_late_chunk_names_file_key_and_position(tmp_path, monkeypatch, bad, message):
    arrays = _arrays(m=60)
    arrays["diffraction"][57, 3, 4] = bad
    path = tmp_path / "late.npz"
    np.savez(path, **arrays)
    monkeypatch.setattr(lazy, "CHUNK_BYTES", 4 * N * N * 4)  # 15 chunks: the bad one is the last
    with pytest.raises(DatasetError, match=rf"late\.npz: key 'diffraction': {message}.*position 57"):
        load_dataset(path)


def test_bad_counts_in_a_late_hdf5_chunk(tmp_path, monkeypatch):
    arrays = _arrays(m=60)
    save_ptychodus_dataset(_eager(arrays), tmp_path / "pair")
    with h5py.File(tmp_path / "pair" / "diffraction.h5", "a") as h5file:
        counts = h5file["patterns"][()].astype(np.float64)
        counts[58, 0, 0] = np.inf
        del h5file["patterns"]
        h5file.create_dataset("patterns", data=counts, chunks=(1, N, N))
    monkeypatch.setattr(lazy, "CHUNK_BYTES", 4 * N * N * 4)
    with pytest.raises(DatasetError, match=r"pair: key 'diffraction' \(read from 'patterns'\): contains NaN.*position 58"):
        load_dataset(tmp_path / "pair")


def test_negative_hdf5_counts_are_clipped_with_one_warning(tmp_path):
    arrays = _arrays()
    save_ptychodus_dataset(_eager(arrays), tmp_path / "pair")
    with h5py.File(tmp_path / "pair" / "diffraction.h5", "a") as h5file:
        counts = h5file["patterns"][()].astype(np.float64)
        counts[30, 1, 1] = -2.0
        counts[31, 2, 2] = -5.0
        del h5file["patterns"]
        h5file.create_dataset("patterns", data=counts)
    with pytest.warns(UserWarning, match=r"'/patterns' has 2 negative counts; set to 0"):
        dataset = load_dataset(tmp_path / "pair")
    assert dataset.diffraction_amplitude[30, 1, 1] == 0 and dataset.diffraction_amplitude[31, 2, 2] == 0


def test_two_diffraction_keys_compared_chunk_by_chunk(tmp_path, monkeypatch):
    arrays = _arrays(m=40)
    monkeypatch.setattr(lazy, "CHUNK_BYTES", 4 * N * N * 4)
    for saver in (np.savez, np.savez_compressed):
        np.savez(tmp_path / "same.npz", diff3d=arrays["diffraction"][..., None], **arrays)
        assert np.array_equal(np.asarray(load_dataset(tmp_path / "same.npz").diffraction_amplitude), arrays["diffraction"])
        other = arrays["diffraction"].copy()
        other[39, 0, 0] += 1  # differs in the last chunk only
        saver(tmp_path / "differ.npz", diff3d=other, **arrays)
        with pytest.raises(DatasetError, match=r"keys 'diffraction' .* and 'diff3d' .* hold different patterns"):
            load_dataset(tmp_path / "differ.npz")


def test_subset_is_an_index_map_that_reads_nothing(tmp_path, monkeypatch):
    arrays = _arrays()
    np.savez(tmp_path / "d.npz", **arrays)
    dataset = load_dataset(tmp_path / "d.npz")
    reads = []
    original = NpyMemberRows._read_run
    monkeypatch.setattr(NpyMemberRows, "_read_run", lambda self, *a: reads.append(a[1:]) or original(self, *a))
    indices = np.array([30, 2, 2, 11, 36])
    part = dataset.subset(indices)
    again = part.subset([4, 0])
    assert reads == []  # neither validation nor the view read a pattern
    assert isinstance(part.diffraction_amplitude, RowView) and isinstance(part.patches_truth, RowView)
    assert np.array_equal(np.asarray(part.diffraction_amplitude), arrays["diffraction"][indices])
    assert np.array_equal(part.patches_truth[1:3], arrays["Y"][indices[1:3]])
    assert np.array_equal(np.asarray(again.diffraction_amplitude), arrays["diffraction"][[36, 30]])
    np.testing.assert_array_equal(part.positions_xy, dataset.positions_xy[indices])
    assert reads  # and reading does read
    assert dataset_fingerprint(part) == dataset_fingerprint(_eager(arrays).subset(indices))
    with pytest.raises(DatasetError, match="subset indices"):
        dataset.subset([M])


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd (Linux)")
def test_no_file_handle_is_left_open(tmp_path):
    arrays = _arrays()
    paths = _write_formats(tmp_path, arrays)
    before = _open_fds()
    files_before = h5py.h5f.get_obj_count(types=h5py.h5f.OBJ_FILE)
    for path in paths.values():
        dataset = load_dataset(path)
        dataset.diffraction_amplitude[[5, 1, 5]]
        list(iter_chunks(dataset.diffraction_amplitude, 7))
        dataset.subset([3, 4]).patches_truth[0]
        dataset_fingerprint(dataset)
        assert _open_fds() == before, path  # nothing held open between reads, dataset alive
        del dataset
    assert _open_fds() == before
    assert h5py.h5f.get_obj_count(types=h5py.h5f.OBJ_FILE) == files_before


# ---------------------------------------------------------------------------------------------
# Peak memory in a child process


_CHILD = """
import json, sys
import numpy as np
import h5py  # imported before the baseline, as the readers import it
from compare_models.io.dataset import dataset_fingerprint
from compare_models.io.dispatch import load_dataset
from compare_models.io.lazy import iter_chunks

def peak_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

base = peak_kib()
dataset = load_dataset(sys.argv[1])                 # validates every pattern
dose = dataset.measured_dose
units = dataset.diffraction_units
fingerprint = dataset_fingerprint(dataset)
total = 0.0
for start, chunk in iter_chunks(dataset.diffraction_amplitude):
    total += float(chunk[:, 0, 0].sum())
rng = np.random.default_rng(0)
picked = rng.choice(dataset.n_positions, 512, replace=False)
batch = dataset.diffraction_amplitude[picked]
half = dataset.subset(picked[:256])
for start, chunk in iter_chunks(half.diffraction_amplitude):
    pass
print(json.dumps({"base_kib": base, "peak_kib": peak_kib(), "m": dataset.n_positions,
                  "lazy": type(dataset.diffraction_amplitude).__name__}))
"""


def _big_counts(m, n, seed=0):
    """Yield (start, counts block) of an (m, n, n) float32 amplitude array, 256 rows at a time."""
    rng = np.random.default_rng(seed)
    for start in range(0, m, 256):
        rows = min(256, m - start)
        yield start, np.sqrt(rng.poisson(3.0, size=(rows, n, n))).astype(np.float32)


def _write_big_npz(path, m, n):
    """A stored (np.savez-like) NPZ written member by member, never whole in this process."""
    from numpy.lib import format as npy_format

    rng = np.random.default_rng(1)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        with archive.open("diffraction.npy", "w", force_zip64=True) as member:
            npy_format.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False, "shape": (m, n, n)})
            for _, block in _big_counts(m, n):
                member.write(block.tobytes())
        for key, value in (("xcoords", rng.uniform(0, 100, m)), ("ycoords", rng.uniform(0, 100, m)),
                           ("probeGuess", np.ones((n, n), np.complex64))):
            with archive.open(f"{key}.npy", "w") as member:
                npy_format.write_array(member, value)


def _write_big_cxi(path, m, n):
    with h5py.File(path, "w") as h5file:
        data = h5file.create_dataset("/entry_1/data_1/data", shape=(m, n, n), dtype=np.float32, chunks=(16, n, n))
        for start, block in _big_counts(m, n):
            data[start : start + len(block)] = np.square(block)
        h5file["/entry_1/sample_1/geometry_1/translation"] = np.random.default_rng(1).uniform(0, 1e-6, (m, 3))
        h5file["/entry_1/instrument_1/source_1/illumination"] = np.ones((n, n), np.complex64)
        h5file["/entry_1/ptychodus/object_pixel_width_m"] = 1e-8


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs /proc/self/status (Linux)")
@pytest.mark.parametrize("kind", ["npz", "cxi"])
def test_peak_memory_does_not_follow_the_file_size(tmp_path, kind):
    """Loading, validating, dosing, fingerprinting and reading a 200 MB file in a child process
    raises its peak RSS by far less than the file (< 1/4: chunks, not the patterns)."""
    m, n = 12800, 64  # 12800 x 64 x 64 float32 = 210 MB
    path = tmp_path / ("big.npz" if kind == "npz" else "big.cxi")
    (_write_big_npz if kind == "npz" else _write_big_cxi)(path, m, n)
    size = path.stat().st_size
    assert size > 200e6
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(_CHILD), str(path)], capture_output=True,
                          text=True, env=env, check=False, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["m"] == m and report["lazy"] in ("NpyMemberRows", "HDF5Rows")
    growth = (report["peak_kib"] - report["base_kib"]) * 1024
    assert growth < size / 4, f"peak RSS grew by {growth / 1e6:.0f} MB for a {size / 1e6:.0f} MB file"
