"""The dataset contract: every violation is a DatasetError naming the file and the key."""

import json
import warnings

import numpy as np
import pytest

from compare_models.errors import DatasetError
from compare_models.io.dataset import Dataset
from compare_models.io.dispatch import load_dataset
from compare_models.io.npz import save_dataset


def _arrays(m=6, n=8, size=32, seed=0):
    rng = np.random.default_rng(seed)
    obj = (rng.uniform(0.5, 1, (size, size)) * np.exp(1j * rng.uniform(-1, 1, (size, size)))).astype(
        np.complex64
    )
    x = rng.uniform(n / 2, size - n / 2 - 1, m)
    y = rng.uniform(n / 2, size - n / 2 - 1, m)
    return {
        "diffraction": rng.uniform(0, 3, (m, n, n)).astype(np.float32),
        "xcoords": x,
        "ycoords": y,
        "probeGuess": (np.ones((n, n)) * (1 + 0.5j)).astype(np.complex64),
        "objectGuess": obj,
    }


def _write(tmp_path, arrays, name="data.npz"):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def test_round_trip_keeps_every_array(tmp_path):
    arrays = _arrays()
    arrays["Y"] = np.ones((6, 8, 8), np.complex64)
    arrays["scan_index"] = np.arange(6)
    arrays["_metadata"] = np.array(json.dumps({"dose_nominal": 100.0, "seed": 3}))
    dataset = load_dataset(_write(tmp_path, arrays))
    assert dataset.diffraction_amplitude.dtype == np.float32
    assert dataset.positions_xy.shape == (6, 2)
    assert dataset.probe.dtype == np.complex64
    assert dataset.nominal_dose == 100.0
    np.testing.assert_array_equal(dataset.positions_xy[:, 0], arrays["xcoords"])
    np.testing.assert_array_equal(dataset.positions_start_xy, dataset.positions_xy)
    again = load_dataset(save_dataset(dataset, tmp_path / "again.npz"))
    for name in ("diffraction_amplitude", "positions_xy", "probe", "object_truth", "patches_truth", "scan_index"):
        np.testing.assert_array_equal(getattr(again, name), getattr(dataset, name))
    assert again.metadata == dataset.metadata


def test_measured_dose_is_mean_counts_per_pattern(tmp_path):
    arrays = _arrays()
    arrays["diffraction"] = np.full((6, 8, 8), 2.0, np.float32)  # 4 counts per pixel
    assert load_dataset(_write(tmp_path, arrays)).measured_dose == pytest.approx(4 * 64)


def test_diff3d_and_legacy_layout(tmp_path):
    arrays = _arrays(m=5, n=8)
    standard = arrays["diffraction"]
    arrays["diff3d"] = np.moveaxis(arrays.pop("diffraction"), 0, 2)  # (N, N, M)
    dataset = load_dataset(_write(tmp_path, arrays))
    np.testing.assert_array_equal(dataset.diffraction_amplitude, standard)


def test_optional_keys_absent(tmp_path):
    arrays = _arrays()
    del arrays["objectGuess"]
    dataset = load_dataset(_write(tmp_path, arrays))
    assert dataset.object_truth is None and dataset.patches_truth is None
    assert dataset.metadata == {}


def test_start_positions_read(tmp_path):
    arrays = _arrays()
    arrays["xcoords_start"] = arrays["xcoords"] + 0.25
    arrays["ycoords_start"] = arrays["ycoords"] - 0.25
    dataset = load_dataset(_write(tmp_path, arrays))
    np.testing.assert_allclose(dataset.positions_start_xy - dataset.positions_xy, [[0.25, -0.25]] * 6)


def _expect_error(tmp_path, arrays, *fragments):
    path = _write(tmp_path, arrays)
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize("key", ["diffraction", "xcoords", "ycoords", "probeGuess"])
def test_missing_required_key(tmp_path, key):
    arrays = _arrays()
    del arrays[key]
    _expect_error(tmp_path, arrays, f"missing key '{key}'")


def test_wrong_rank(tmp_path):
    arrays = _arrays()
    arrays["diffraction"] = arrays["diffraction"][0]
    _expect_error(tmp_path, arrays, "'diffraction'", "rank 3")


def test_wrong_rank_positions(tmp_path):
    arrays = _arrays()
    arrays["xcoords"] = arrays["xcoords"][:, None]
    _expect_error(tmp_path, arrays, "'xcoords'", "rank 1")


def test_length_mismatch(tmp_path):
    arrays = _arrays()
    arrays["ycoords"] = arrays["ycoords"][:-1]
    _expect_error(tmp_path, arrays, "'xcoords'", "'ycoords'")


def test_diffraction_count_mismatch(tmp_path):
    arrays = _arrays()
    arrays["diffraction"] = arrays["diffraction"][:-1]
    _expect_error(tmp_path, arrays, "'diffraction'", "6 positions")


def test_nan_amplitude(tmp_path):
    arrays = _arrays()
    arrays["diffraction"][2, 3, 3] = np.nan
    _expect_error(tmp_path, arrays, "'diffraction'", "NaN")


def test_negative_amplitude(tmp_path):
    arrays = _arrays()
    arrays["diffraction"][1, 0, 0] = -0.5
    _expect_error(tmp_path, arrays, "'diffraction'", "negative")


def test_probe_size_differs(tmp_path):
    arrays = _arrays(n=8)
    arrays["probeGuess"] = np.ones((10, 10), np.complex64)
    _expect_error(tmp_path, arrays, "'probeGuess'", "(8, 8)")


def test_patch_leaves_object(tmp_path):
    arrays = _arrays(n=8, size=32)
    arrays["xcoords"][4] = 30.0  # columns 26..33 of a 32-wide object
    _expect_error(tmp_path, arrays, "'xcoords'", "position 4", "leaves the object")


def test_patch_on_the_edge_is_accepted(tmp_path):
    arrays = _arrays(n=8, size=32)
    arrays["xcoords"][:2] = [4.0, 28.0]  # columns 0..7 and 24..31
    arrays["ycoords"][:2] = [28.0, 4.0]
    load_dataset(_write(tmp_path, arrays))


def test_not_an_npz(tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("just text")
    with pytest.raises(DatasetError, match="not a dataset file"):
        load_dataset(path)


def test_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(tmp_path / "absent.npz")


def test_required_key_needing_pickle_is_refused(tmp_path):
    arrays = _arrays()
    arrays["probeGuess"] = np.array([arrays["probeGuess"]], dtype=object)
    _expect_error(tmp_path, arrays, "'probeGuess'", "pickle")


def test_pickled_metadata_is_skipped_with_warning(tmp_path):
    arrays = _arrays()
    arrays["_metadata"] = np.array([{"dose": 1e4}], dtype=object)
    path = _write(tmp_path, arrays)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = load_dataset(path)
    assert dataset.metadata == {}
    assert any("_metadata" in str(w.message) for w in caught)


def test_dataset_validates_when_built_in_memory():
    arrays = _arrays()
    with pytest.raises(DatasetError, match="probeGuess"):
        Dataset(
            diffraction_amplitude=arrays["diffraction"],
            positions_xy=np.stack([arrays["xcoords"], arrays["ycoords"]], 1),
            probe=np.ones((4, 4), np.complex64),
        )


def test_subset_keeps_order(tmp_path):
    dataset = load_dataset(_write(tmp_path, _arrays()))
    part = dataset.subset([4, 1])
    np.testing.assert_array_equal(part.positions_xy, dataset.positions_xy[[4, 1]])
    np.testing.assert_array_equal(part.diffraction_amplitude[0], dataset.diffraction_amplitude[4])


def test_zip_member_that_is_not_an_array(tmp_path):
    import zipfile

    path = _write(tmp_path, _arrays())
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("Y", b"not an array")
    with pytest.raises(DatasetError, match="'Y' is not a (readable )?NumPy array"):
        load_dataset(path)
