"""Datasets as PtychoPINN writes them: diff3d, (M, N, N, 1) arrays, placeholders, pickled metadata
read from its opcodes (never unpickled), and amplitudes that are not photon counts."""

from __future__ import annotations

import io
import json
import os
import warnings

import numpy as np
import pytest

from compare_models.errors import DatasetError
from compare_models.io.dataset import diffraction_counts_check
from compare_models.io.dispatch import load_dataset
from compare_models.io.npz import save_dataset
from compare_models.io.pickled_json import UnsafePickle, json_text_from_npy
from compare_models.study.simulator import SimulationConfig, simulate_dataset


@pytest.fixture(scope="module")
def arrays(tmp_path_factory):
    """The arrays of a small simulated dataset in the NPZ contract (Poisson counts)."""
    dataset = simulate_dataset(SimulationConfig(patch_size=16, object_size=48, scan_step=8, dose=1e4, seed=1))
    path = save_dataset(dataset, tmp_path_factory.mktemp("base") / "base.npz")
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def _write(tmp_path, name="d.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)  # object arrays are pickled by NumPy, as PtychoPINN's files are
    return path


def _ptychopinn_style(arrays, **changes):
    out = {k: v for k, v in arrays.items() if k not in ("diffraction", "_metadata")}
    out["diff3d"] = arrays["diffraction"]
    out.update(changes)
    return out


def test_diff3d_alone_and_beside_an_equal_diffraction(arrays, tmp_path):
    alone = load_dataset(_write(tmp_path, "a.npz", **_ptychopinn_style(arrays)))
    np.testing.assert_array_equal(alone.diffraction_amplitude, arrays["diffraction"])
    both = load_dataset(_write(tmp_path, "b.npz", **arrays, diff3d=arrays["diffraction"].copy()))
    np.testing.assert_array_equal(both.diffraction_amplitude, arrays["diffraction"])


def test_diff3d_that_differs_from_diffraction_is_refused_naming_both(arrays, tmp_path):
    other = arrays["diffraction"].copy()
    other[0, 0, 0] += 1
    with pytest.raises(DatasetError, match=r"'diffraction'.*'diff3d'.*different"):
        load_dataset(_write(tmp_path, **arrays, diff3d=other))


def test_trailing_channel_axes_are_squeezed(arrays, tmp_path):
    path = _write(tmp_path, **_ptychopinn_style(arrays, diff3d=arrays["diffraction"][..., None], Y=arrays["Y"][..., None]))
    dataset = load_dataset(path)
    np.testing.assert_array_equal(dataset.diffraction_amplitude, arrays["diffraction"])
    np.testing.assert_array_equal(dataset.patches_truth, arrays["Y"])


@pytest.mark.parametrize("placeholder", [np.array(None, dtype=object), np.zeros(1, np.complex64), np.array(0.0)])
def test_a_singleton_y_is_ignored_with_a_warning(arrays, tmp_path, placeholder):
    with pytest.warns(UserWarning, match="'Y'"):
        dataset = load_dataset(_write(tmp_path, **_ptychopinn_style(arrays, Y=placeholder)))
    assert dataset.patches_truth is None


@pytest.mark.parametrize("shape", ["1,N,N,1", "1,N,N", "3,N,N,1"])
@pytest.mark.parametrize("writer", [np.savez, np.savez_compressed])
def test_patches_that_are_not_one_per_position_are_ignored_with_a_warning(arrays, tmp_path, shape, writer):
    """PtychoPINN's generate_patches_tool.py with its defaults writes Y of shape (1, N, N, 1)
    (nsamples groups, not one patch per position); its loader ignores such a Y with a warning.
    It was refused ("key 'Y': expected ground-truth patches of shape (M, N, N)"). Stored and
    compressed members alike (the lazy readers)."""
    n = arrays["Y"].shape[-1]
    dims = tuple(n if d == "N" else int(d) for d in shape.split(","))
    y = (np.arange(np.prod(dims)).reshape(dims) * (1 + 1j)).astype(np.complex64)
    path = tmp_path / "patched.npz"
    writer(path, **_ptychopinn_style(arrays, Y=y))
    with pytest.warns(UserWarning, match=rf"key 'Y' holds {dims[0]} patch.*not one per position.*ignored"):
        dataset = load_dataset(path)
    assert dataset.patches_truth is None
    np.testing.assert_array_equal(dataset.diffraction_amplitude, arrays["diffraction"])
    np.testing.assert_array_equal(dataset.object_truth, arrays["objectGuess"])


def test_one_patch_per_position_of_the_wrong_size_is_still_an_error(arrays, tmp_path):
    m, n = arrays["Y"].shape[:2]
    y = np.zeros((m, n + 2, n + 2, 1), np.complex64)
    with pytest.raises(DatasetError, match=r"d\.npz: key 'Y': expected ground-truth patches of shape"):
        load_dataset(_write(tmp_path, **_ptychopinn_style(arrays, Y=y)))


def test_a_dataset_made_in_memory_drops_a_one_patch_y(arrays):
    from compare_models.io.dataset import Dataset

    n = arrays["Y"].shape[-1]
    with pytest.warns(UserWarning, match="not one per position"):
        dataset = Dataset(
            diffraction_amplitude=arrays["diffraction"],
            positions_xy=np.stack([arrays["xcoords"], arrays["ycoords"]], axis=1),
            probe=arrays["probeGuess"],
            object_truth=arrays["objectGuess"],
            patches_truth=np.zeros((1, n, n, 1), np.complex64),
        )
    assert dataset.patches_truth is None


def test_convert_accepts_a_generate_patches_tool_file(arrays, tmp_path):
    """Through the command line: one warning, exit 0, and the written file has no Y."""
    from click.testing import CliRunner

    from compare_models.cli import study_main

    n = arrays["Y"].shape[-1]
    source = _write(tmp_path, "patched.npz", **_ptychopinn_style(arrays, Y=np.ones((1, n, n, 1), np.complex64)))
    out = tmp_path / "out.npz"
    with pytest.warns(UserWarning, match="not one per position"):
        result = CliRunner().invoke(study_main, ["convert", str(source), str(out)])
    assert result.exit_code == 0, result.output
    with np.load(out, allow_pickle=False) as archive:
        assert "Y" not in archive.files
        np.testing.assert_array_equal(archive["diffraction"], arrays["diffraction"])


def test_ground_truth_patches_are_the_patches_when_y_is_absent(arrays, tmp_path):
    gtp = arrays["Y"][..., None]  # (M, N, N, 1) as PtychoPINN writes it
    only = {k: v for k, v in _ptychopinn_style(arrays, ground_truth_patches=gtp).items() if k != "Y"}
    dataset = load_dataset(_write(tmp_path, "g.npz", **only))
    np.testing.assert_array_equal(dataset.patches_truth, arrays["Y"])
    # With a usable Y beside it, Y is the ground truth.
    beside = load_dataset(_write(tmp_path, "y.npz", **_ptychopinn_style(arrays, ground_truth_patches=gtp * 2)))
    np.testing.assert_array_equal(beside.patches_truth, arrays["Y"])


def test_pickled_metadata_json_is_read_without_unpickling(arrays, tmp_path):
    text = json.dumps({"physics_parameters": {"nphotons": 1e9}, "seed": 42})
    path = _write(tmp_path, **_ptychopinn_style(arrays, _metadata=np.array(text, dtype=object)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # read, not skipped
        dataset = load_dataset(path)
    assert dataset.metadata == {"physics_parameters": {"nphotons": 1e9}, "seed": 42}
    assert dataset.nominal_dose == 1e9


class _Exploit:
    """Unpickling this would run a shell command that creates a file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_pickle_is_never_executed_and_is_skipped(arrays, tmp_path):
    marker = tmp_path / "exploited"
    exploit = np.empty((), dtype=object)
    exploit[()] = _Exploit(marker)
    path = _write(tmp_path, **_ptychopinn_style(arrays, _metadata=exploit))
    with pytest.warns(UserWarning, match="_metadata.*never unpickled"):
        dataset = load_dataset(path)
    assert dataset.metadata == {}
    assert not marker.exists()


@pytest.mark.parametrize(
    "value",
    [{"a": 1}, ["x"], b"bytes", 3],
    ids=["dict", "list", "bytes", "int"],
)
def test_only_a_plain_string_array_is_accepted(value):
    buffer = io.BytesIO()
    array = np.empty((), dtype=object)
    array[()] = value
    np.save(buffer, array, allow_pickle=True)
    with pytest.raises(UnsafePickle):
        json_text_from_npy(buffer.getvalue())


@pytest.mark.parametrize("protocol", [3, 4, 5])  # NumPy writes 3; 2 has no bytes opcode
def test_every_pickle_protocol_of_a_string_array_is_read(protocol):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|O", "fortran_order": False, "shape": ()})
    import pickle  # the test writes the stream; the package never imports pickle

    array = np.empty((), dtype=object)
    array[()] = '{"k": "é"}'
    stream = pickle.dumps(array, protocol=protocol)
    assert json_text_from_npy(header.getvalue() + stream) == '{"k": "é"}'


def test_upstream_test_data_loads_with_its_metadata(upstream):
    dataset = load_dataset(upstream / "data" / "test_256.npz")
    assert dataset.n_positions == 256 and dataset.patch_size == 64
    assert dataset.metadata["physics_parameters"]["nphotons"] == 1e9
    assert dataset.patches_truth is not None and dataset.patches_truth.shape == (256, 64, 64)
    assert not dataset.diffraction_in_counts
    assert dataset.nominal_dose == 1e9
    summary = dataset.dose_summary
    assert "measured dose" not in summary and "6135" not in summary
    assert "not in photon counts" in summary


def test_counts_are_recognised_by_metadata_or_content(arrays):
    amplitude = arrays["diffraction"]
    assert diffraction_counts_check(amplitude, {"generator": "compare_models.simulate"})[0]
    # Without metadata: Poisson counts are integers ...
    assert diffraction_counts_check(amplitude, {})[0]
    # ... and scaled amplitudes are not.
    scaled, reason = diffraction_counts_check(amplitude * np.float32(0.9), {})
    assert not scaled and "not an integer" in reason
    # A writer's explicit statement wins over the content.
    assert not diffraction_counts_check(amplitude, {"diffraction_units": "arbitrary"})[0]
    assert diffraction_counts_check(amplitude * 0.9, {"diffraction_units": "expected counts"})[0]
    # PtychoPINN's simulator says what it wrote.
    upstream_meta = {"creation_info": {"script": "simulate_and_save.py"}}
    assert not diffraction_counts_check(amplitude, upstream_meta)[0]


def test_noise_free_simulations_are_expected_counts(tmp_path):
    dataset = simulate_dataset(SimulationConfig(patch_size=16, object_size=48, scan_step=8, poisson_noise=False))
    assert dataset.diffraction_in_counts
    assert "expected counts" in dataset.diffraction_units
    assert dataset.dose_summary.startswith("measured dose")
    reloaded = load_dataset(save_dataset(dataset, tmp_path / "clean.npz"))
    assert reloaded.diffraction_in_counts


def test_describe_and_sweep_report_say_not_in_counts(upstream, tmp_path):
    from compare_models.pipelines.simulate import describe_dataset
    from compare_models.report.sweep_report import summarise

    text = describe_dataset(load_dataset(upstream / "data" / "test_256.npz"))
    assert "not in photon counts" in text and "measured" not in text.replace("not measurable", "")
    rows = [{"dose_nominal": 1e9, "dose_measured": None, "model": "PtychoPINN", "metric": "psnr",
             "component": "phase", "value": 30.0}]
    rows[0]["seed"] = 0
    (series,) = summarise(rows)[("psnr", "phase")].values()
    (point,) = series
    assert point.dose_nominal == 1e9 and point.mean == 30.0 and point.n == 1
    assert point.dose_measured is None  # never the nominal dose passed off as measured
