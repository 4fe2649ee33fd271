"""Model bundles: atomic writes, safe-mode loading, clear errors, isolation between bundles."""

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from compare_models.errors import BundleError
from compare_models.io.npz import save_dataset
from compare_models.models.bundle import load_bundle, save_bundle
from compare_models.models.inference import predict
from compare_models.models.inputs import intensity_scale
from compare_models.models.pinn import build_pinn
from compare_models.study.simulator import SimulationConfig, simulate_dataset

N = 16


@pytest.fixture(scope="module")
def dataset():
    return simulate_dataset(SimulationConfig(patch_size=N, object_size=48, scan_step=3, seed=1))


def write_bundle(path, dataset, *, seed=0, gridsize=1, log_scale=0.0, history=None):
    model = build_pinn(N, gridsize, dataset.probe, width=4, depth=2, seed=seed)
    model.get_layer("intensity").log_scale.assign(log_scale)
    return save_bundle(
        model, path, kind="pinn", patch_size=N, gridsize=gridsize,
        intensity_scale=intensity_scale(dataset.diffraction_amplitude), probe=dataset.probe,
        train_dataset=dataset, config={"seed": seed}, history=history or {"loss": [2.0, 1.0]},
        extra={"region_pad": N // 4},
    )


def test_bundle_contents(tmp_path, dataset):
    path = write_bundle(tmp_path / "b", dataset, log_scale=np.log(2.0))
    assert sorted(p.name for p in path.iterdir()) == ["bundle.json", "loss.png", "model.keras", "probe.npy"]
    document = json.loads((path / "bundle.json").read_text())
    assert document["kind"] == "pinn" and document["patch_size"] == N and document["gridsize"] == 1
    assert document["intensity_scale"] == pytest.approx(np.sqrt(np.mean(dataset.diffraction_amplitude.astype(float) ** 2)))
    assert document["learned_intensity_scale"] == pytest.approx(2.0)
    assert document["train_data"]["dose_measured"] == pytest.approx(dataset.measured_dose)
    assert document["train_data"]["dose_nominal"] == dataset.nominal_dose
    assert len(document["train_data"]["sha256"]) == 64
    assert {"tensorflow", "keras", "compare_models"} <= set(document["versions"])
    assert (path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    np.testing.assert_array_equal(np.load(path / "probe.npy", allow_pickle=False), dataset.probe)
    with zipfile.ZipFile(path / "model.keras") as archive:
        assert not any(name.endswith((".pkl", ".pickle", ".dill")) for name in archive.namelist())
    assert not list(tmp_path.glob(".b.*"))  # no temporary directories left behind


def test_a_reloaded_bundle_predicts_as_the_model_it_was_saved_from(tmp_path, dataset):
    """The round trip in this process (the end-to-end tier repeats it in a fresh one)."""
    from compare_models.models.bundle import Bundle

    model = build_pinn(N, 2, dataset.probe, width=4, depth=2, seed=0)
    model.get_layer("intensity").log_scale.assign(0.3)
    scale = intensity_scale(dataset.diffraction_amplitude)
    path = save_bundle(model, tmp_path / "b", kind="pinn", patch_size=N, gridsize=2, intensity_scale=scale,
                       probe=dataset.probe, train_dataset=dataset, config={}, history={"loss": [1.0]},
                       extra={"region_pad": N // 4})
    in_memory = Bundle(model=model, kind="pinn", patch_size=N, gridsize=2, intensity_scale=scale,
                       probe=dataset.probe, metadata={"region_pad": N // 4})
    expected = predict(in_memory, dataset, batch_size=8, progress=False).patches
    np.testing.assert_array_equal(predict(load_bundle(path), dataset, batch_size=8, progress=False).patches, expected)


@pytest.mark.e2e
def test_reload_in_a_fresh_process_predicts_identically(tmp_path, dataset):
    path = write_bundle(tmp_path / "b", dataset, gridsize=2, log_scale=0.3)
    data_path = save_dataset(dataset, tmp_path / "d.npz")
    here = predict(load_bundle(path), dataset, batch_size=8, progress=False).patches
    code = (
        "import sys, numpy as np\n"
        "from compare_models.models.bundle import load_bundle\n"
        "from compare_models.io.dispatch import load_dataset\n"
        "from compare_models.models.inference import predict\n"
        "p = predict(load_bundle(sys.argv[1]), load_dataset(sys.argv[2]), batch_size=8, progress=False)\n"
        "np.save(sys.argv[3], p.patches)\n"
    )
    out = tmp_path / "patches.npy"
    subprocess.run([sys.executable, "-c", code, str(path), str(data_path), str(out)], check=True,
                   capture_output=True)
    np.testing.assert_array_equal(np.load(out), here)


def test_loading_a_second_bundle_does_not_change_the_first(tmp_path, dataset):
    first = load_bundle(write_bundle(tmp_path / "a", dataset, seed=0))
    before = predict(first, dataset, batch_size=16, progress=False).patches
    shifted = simulate_dataset(SimulationConfig(patch_size=N, object_size=48, scan_step=3, dose=1e6))
    second = load_bundle(write_bundle(tmp_path / "b", shifted, seed=1, log_scale=1.0))
    assert second.intensity_scale != first.intensity_scale
    predict(second, dataset, batch_size=16, progress=False)
    after = predict(first, dataset, batch_size=16, progress=False).patches
    np.testing.assert_array_equal(after, before)


def test_overwrite_an_existing_bundle(tmp_path, dataset):
    write_bundle(tmp_path / "b", dataset, history={"loss": [5.0]})
    write_bundle(tmp_path / "b", dataset, history={"loss": [3.0, 2.0]})
    assert load_bundle(tmp_path / "b").metadata["history"]["loss"] == [3.0, 2.0]


def test_refuses_to_overwrite_a_directory_that_is_not_a_bundle(tmp_path, dataset):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("keep me")
    with pytest.raises(BundleError, match="refusing"):
        write_bundle(tmp_path / "b", dataset)
    assert (tmp_path / "b" / "notes.txt").exists()


def test_failed_write_leaves_no_bundle(tmp_path, dataset):
    with pytest.raises(ValueError):
        write_bundle(tmp_path / "b", dataset, history={"loss": ["not a number"]})
    assert not (tmp_path / "b").exists()
    assert not list(tmp_path.iterdir())


def corrupt(path, how):
    if how == "no-json":
        (path / "bundle.json").unlink()
    elif how == "bad-json":
        (path / "bundle.json").write_text("{not json")
    elif how == "unknown-kind":
        document = json.loads((path / "bundle.json").read_text())
        document["kind"] = "transformer"
        (path / "bundle.json").write_text(json.dumps(document))
    elif how == "truncated-model":
        data = (path / "model.keras").read_bytes()
        (path / "model.keras").write_bytes(data[: len(data) // 2])
    elif how == "no-model":
        (path / "model.keras").unlink()
    elif how == "no-probe":
        (path / "probe.npy").unlink()
    elif how == "pickled-probe":
        np.save(path / "probe.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif how == "wrong-n":
        document = json.loads((path / "bundle.json").read_text())
        document["patch_size"] = 32
        (path / "bundle.json").write_text(json.dumps(document))


@pytest.mark.parametrize(
    "how, message",
    [
        ("no-json", "missing bundle.json"),
        ("bad-json", "not valid JSON"),
        ("unknown-kind", "unknown model kind 'transformer'"),
        ("truncated-model", "cannot be loaded as a Keras model"),
        ("no-model", "missing model.keras"),
        ("no-probe", "missing probe.npy"),
        ("pickled-probe", "cannot be read"),
        ("wrong-n", r"expected a complex \(32, 32\) probe"),
    ],
)
def test_broken_bundles_raise_bundle_error(tmp_path, dataset, how, message):
    path = write_bundle(tmp_path / "b", dataset)
    corrupt(path, how)
    with pytest.raises(BundleError, match=message):
        load_bundle(path)


def test_missing_directory(tmp_path):
    with pytest.raises(BundleError, match="no such bundle directory"):
        load_bundle(tmp_path / "nothing")


def test_check_compatible_names_both_sizes(tmp_path, dataset):
    bundle = load_bundle(write_bundle(tmp_path / "b", dataset))
    other = simulate_dataset(SimulationConfig(patch_size=32, object_size=64, scan_step=16))
    with pytest.raises(BundleError, match=r"N = 16.*N = 32"):
        bundle.check_compatible(other)
    bundle.check_compatible(dataset)
