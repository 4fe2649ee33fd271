"""compare-models with PtychoPINN's PyTorch bundles, end to end on the fixtures.

* The command of the request that added them: the cnn bundle as the PINN, the ffno bundle as
  the baseline; its stitched PINN image equals an independent NumPy stitch of the same patches.
* A TensorFlow PtychoPINN model, a PyTorch one and pty-chi in one comparison.
* A bad PyTorch bundle: one line, exit 2.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("torch", reason="PtychoPINN's PyTorch models need torch (the ptychi extra)")

from compare_models.cli import compare_main  # noqa: E402
from compare_models.report.writers import read_metrics_csv  # noqa: E402


def _compare_models(args, timeout=900):
    script = Path(sys.executable).with_name("compare-models")
    command = [str(script)] if script.is_file() else [
        sys.executable, "-c", "import sys; from compare_models.cli import compare_main; sys.argv[0] = 'compare-models'; compare_main()"]
    env = {**os.environ, "MPLBACKEND": "Agg", "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(command + [str(a) for a in args], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def issue_command_run(upstream, tmp_path_factory):
    """compare-models --pinn_dir torch_cnn_gs1 --baseline_dir torch_ffno_gs2 --test_data
    test_256.npz --output_dir OUT --register-ptychi-only, as written."""
    out = tmp_path_factory.mktemp("torch") / "OUT"
    done = _compare_models([
        "--pinn_dir", upstream / "torch_cnn_gs1", "--baseline_dir", upstream / "torch_ffno_gs2",
        "--test_data", upstream / "data" / "test_256.npz", "--output_dir", out, "--register-ptychi-only",
    ])
    return out, done


@pytest.mark.e2e  # a whole compare-models run; the models' known answers: test_ptychopinn_torch.py
def test_the_command_completes_and_names_both_formats(issue_command_run):
    out, done = issue_command_run
    assert done.returncode == 0, done.stderr[-3000:]
    assert not (out / "FAILED").exists()
    assert {row["model"] for row in read_metrics_csv(out / "comparison_metrics.csv")} == {"PtychoPINN", "Baseline", "Constant"}
    arms = json.loads((out / "provenance.json").read_text())["arms"]
    assert arms["PtychoPINN"]["model_format"] == "PtychoPINN PyTorch wts.h5.zip (cnn, gridsize 1)"
    assert arms["Baseline"]["model_format"] == "PtychoPINN PyTorch wts.h5.zip (ffno, gridsize 2)"
    for arm in arms.values():
        assert arm["n_patches"] == 256
        assert arm["patch_positions"] == "each channel at its own member's scan position"
        assert arm["streaming"]["backend"] == "torch"
        assert arm["model"]["precision"] == "float32 (TF32 off)"
        assert arm["model"]["intensity_scale_applied"] is False
    assert arms["Baseline"]["inputs"]["n_groups"] == 64
    log = (out / "logs" / "run.log").read_text()
    assert "PtychoPINN PyTorch wts.h5.zip (ffno, gridsize 2)" in log
    assert "PtychoPINN PyTorch wts.h5.zip (cnn, gridsize 1)" in done.stdout
    assert "PtychoPINN = PtychoPINN PINN (PyTorch backend, cnn generator, gridsize 1)" in done.stdout
    models = json.loads((out / "metrics.json").read_text())["models"]
    assert models["Baseline"]["label"] == "PtychoPINN PINN (PyTorch backend, ffno generator, gridsize 2)"
    assert models["Baseline"]["architecture"] == "ptychopinn-torch-ffno"


@pytest.mark.e2e  # a whole compare-models run; the models' known answers: test_ptychopinn_torch.py
def test_the_stitched_cnn_image_equals_a_numpy_stitch_of_the_same_patches(issue_command_run, upstream):
    """The independent reference: the cnn's patches computed on the host (not streamed) and
    stitched by the NumPy backend (float64, one window at a time), same crop and frame."""
    from compare_models.imaging.stitching import stitch
    from compare_models.io.dispatch import load_dataset
    from compare_models.models.ptychopinn_torch.model import load_torch_pinn, predict_torch

    out, done = issue_command_run
    assert done.returncode == 0, done.stderr[-3000:]
    dataset = load_dataset(upstream / "data" / "test_256.npz")
    patches, _ = predict_torch(load_torch_pinn(upstream / "torch_cnn_gs1", device="cpu"), dataset, batch_size=64)
    want, weights = stitch(patches, dataset.positions_xy, dataset.object_truth.shape, crop=20, backend="numpy")
    with np.load(out / "reconstructions.npz") as images:
        got = images["ptychopinn_complex"]
    covered = weights > 0
    assert covered.sum() > 20000
    np.testing.assert_allclose(got[covered], want[covered], rtol=0, atol=1e-5 * np.abs(want).max())
    assert not got[~covered].any()


@pytest.mark.e2e  # a whole compare-models run; the models' known answers: test_ptychopinn_torch.py
def test_tensorflow_and_pytorch_models_and_ptychi_in_one_comparison(upstream, tmp_path):
    out = tmp_path / "mixed"
    done = _compare_models([
        "--pinn_dir", upstream / "pinn_gs1", "--baseline_dir", upstream / "torch_ffno_gs2",
        "--ptychi_recon_path", upstream / "ptychi" / "ptychi_reconstruction.npz",
        "--test_data", upstream / "data" / "test_256.npz", "--output_dir", out, "--register-ptychi-only",
        "--no-half-sets", "--device", "cpu",
    ])
    assert done.returncode == 0, done.stderr[-3000:]
    rows = read_metrics_csv(out / "comparison_metrics.csv")
    assert {row["model"] for row in rows} == {"PtychoPINN", "Baseline", "PtyChi", "Constant"}
    arms = json.loads((out / "provenance.json").read_text())["arms"]
    assert arms["PtychoPINN"]["model_format"] == "PtychoPINN wts.h5.zip (gridsize 1)"
    assert arms["Baseline"]["model_format"] == "PtychoPINN PyTorch wts.h5.zip (ffno, gridsize 2)"
    assert arms["Baseline"]["model"]["device"] == "cpu"
    ssim = {row["model"]: float(row["amplitude"]) for row in rows if row["metric"] == "ssim"}
    assert all(np.isfinite(value) for value in ssim.values())


def test_a_bad_pytorch_bundle_is_one_line_and_exit_2(upstream, tmp_path):
    import torch

    source = upstream / "torch_ffno_gs2" / "wts.h5.zip"
    bad = tmp_path / "ffno" / "wts.h5.zip"
    bad.parent.mkdir()
    key = "model.autoencoder.output_proj.weight"
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(bad, "w") as new:
        for name in old.namelist():
            data = old.read(name)
            if name == "diffraction_to_obj/model.pth":
                state = dict(torch.load(io.BytesIO(data), weights_only=True))
                del state[key]
                buffer = io.BytesIO()
                torch.save(state, buffer)
                data = buffer.getvalue()
            new.writestr(name, data)
    result = CliRunner().invoke(compare_main, [
        "--baseline_dir", str(bad.parent), "--test_data", str(upstream / "data" / "test_256.npz"),
        "--output_dir", str(tmp_path / "out"),
    ], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and key in lines[0] and "model.pth" in lines[0], result.output
    assert "Traceback" not in result.output
