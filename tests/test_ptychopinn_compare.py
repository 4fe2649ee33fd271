"""compare-models on the models users already have: PtychoPINN's own files, end to end.

The failure report this project started from (../shared/seeds/) ran PtychoPINN's
``scripts/compare_models.py`` on a gridsize-2 PINN, a baseline, a pty-chi file and a test NPZ
and crashed. Here the same command line runs on real files made by PtychoPINN's own code
(../shared/fixtures/upstream, its README), and the stitched images are checked against
PtychoPINN's own stitched images of the same predictions.

The whole runs (three N = 64 comparisons) are the end-to-end tier's; the default tier keeps
the bad-model checks here and the known answers of the same code in
tests/test_ptychopinn_models.py (the rebuilt networks against PtychoPINN's own outputs).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import ndimage, optimize

from compare_models.cli import compare_main
from compare_models.report.writers import read_metrics_csv

COMPLETE = (
    "comparison_metrics.csv", "metrics.json", "frc_curves.csv", "reconstructions.npz",
    "reconstructions_aligned.npz", "comparison.png", "frc.png", "provenance.json", "logs/run.log",
    "products/ptychopinn_product.h5", "products/baseline_product.h5", "products/ptychi_product.h5",
)


def _compare_models_command() -> list[str]:
    script = Path(sys.executable).with_name("compare-models")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from compare_models.cli import compare_main; sys.argv[0] = 'compare-models'; compare_main()"]


@pytest.fixture(scope="module")
def seed_command_run(upstream, tmp_path_factory):
    """The failure report's command as written, its paths replaced by the fixtures."""
    out = tmp_path_factory.mktemp("seed") / "dose_1000_dense_train"
    args = [
        "--pinn_dir", upstream / "pinn_gs2",
        "--baseline_dir", upstream / "baseline_gs1",
        "--test_data", upstream / "data" / "test_256.npz",
        "--output_dir", out,
        "--ms-ssim-sigma", "1.0",
        "--tike_recon_path", upstream / "ptychi" / "ptychi_reconstruction.npz",
        "--register-ptychi-only",
    ]
    env = {**os.environ, "MPLBACKEND": "Agg", "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(_compare_models_command() + [str(a) for a in args], capture_output=True,
                          text=True, env=env, timeout=600)
    return out, done


@pytest.mark.e2e
def test_seed_command_runs_to_a_complete_output(seed_command_run):
    out, done = seed_command_run
    assert done.returncode == 0, done.stderr[-3000:]
    for name in COMPLETE:
        assert (out / name).is_file(), name
    assert not (out / "FAILED").exists()
    models = {row["model"] for row in read_metrics_csv(out / "comparison_metrics.csv")}
    assert models == {"PtychoPINN", "Baseline", "PtyChi", "Constant"}  # Constant: the chance level
    assert "PtychoPINN" in done.stdout and "ms_ssim" in done.stdout


@pytest.mark.e2e
def test_seed_command_names_every_format(seed_command_run):
    out, done = seed_command_run
    provenance = json.loads((out / "provenance.json").read_text())
    arms = provenance["arms"]
    assert arms["PtychoPINN"]["model_format"] == "PtychoPINN wts.h5.zip (gridsize 2)"
    assert arms["Baseline"]["model_format"] == "PtychoPINN baseline_model.h5"
    assert arms["Baseline"]["model_path"].endswith("12-01-2026-07.18.27_baseline_gs1/baseline_model.h5")
    assert arms["PtychoPINN"]["patch_positions"] == "group centroid"
    assert arms["PtychoPINN"]["n_patches"] == 256  # one per scan position, never collapsed
    assert arms["PtychoPINN"]["inputs"]["normalization_factor"] == pytest.approx(0.40824962, rel=1e-6)
    log = (out / "logs" / "run.log").read_text()
    assert "PtychoPINN wts.h5.zip (gridsize 2)" in log and "PtychoPINN baseline_model.h5" in log
    # The printed summary names each arm by what it is, beside the CSV's name and the format.
    assert "PtychoPINN = PtychoPINN PINN (TensorFlow backend, gridsize 2); PtychoPINN wts.h5.zip (gridsize 2)" in done.stdout
    assert "Baseline = PtychoPINN supervised baseline (TensorFlow backend)" in done.stdout
    metrics = json.loads((out / "metrics.json").read_text())["models"]
    assert metrics["PtychoPINN"]["architecture"] == "ptychopinn"
    assert metrics["PtychoPINN"]["training_protocol"]["train_on"] == "unknown"  # PtychoPINN's files do not say
    assert metrics["PtyChi"]["label"] == "pty-chi (engine not recorded) (iterative; PtychoPINN's ptychi_reconstruct_tike.py)"


@pytest.mark.e2e
def test_foreign_ptychi_file_is_placed_by_its_rule_and_its_initialisation_is_unknown(seed_command_run):
    out, done = seed_command_run
    provenance = json.loads((out / "provenance.json").read_text())
    ptychi = provenance["arms"]["PtyChi"]
    assert ptychi["writer"] == "PtychoPINN scripts/reconstruction/ptychi_reconstruct_tike.py"
    assert ptychi["placed_by"] == "rule" and "round(H/2) + 1" in ptychi["placement_rule"]
    # x̄ - (round(W/2) + 1), ȳ - (round(H/2) + 1) for the 272 x 272 canvas (README: -26.76, -22.66).
    np.testing.assert_allclose(ptychi["canvas_origin_xy"], [110.236 - 137, 114.343 - 137], atol=1e-3)
    # The rule places it; registration reports what is left: a fraction of a pixel.
    residual = provenance["corrections"]["PtyChi"]["shift_yx_px"]
    assert np.hypot(*residual) < 0.5, residual
    # Initialisation unknown, visibly: provenance, metrics.json, the log and the printed summary.
    assert ptychi["initialisation"] == "unknown"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["models"]["PtyChi"]["initialisation"] == "unknown"
    assert "WARNING" in (out / "logs" / "run.log").read_text().split("initialisation unknown")[0].splitlines()[-1]
    assert "PtyChi: initialisation unknown" in done.stdout


@pytest.mark.e2e
def test_data_not_in_counts_is_said_and_no_dose_is_measured(seed_command_run):
    out, done = seed_command_run
    provenance = json.loads((out / "provenance.json").read_text())
    test_data = provenance["test_data"]
    assert test_data["dose_measured"] is None and test_data["diffraction_in_counts"] is False
    assert test_data["dose_nominal"] == 1e9  # PtychoPINN's nphotons, read from the pickled _metadata
    text = done.stdout + (out / "logs" / "run.log").read_text()
    assert "measured dose" not in text and "6135" not in text
    assert "not in photon counts" in done.stdout


@pytest.fixture(scope="module")
def pinn_as_baseline_run(upstream, tmp_path_factory):
    """The gridsize-1 PINN, and the gridsize-2 PINN's wts.h5.zip given as --baseline_dir."""
    out = tmp_path_factory.mktemp("pinn_as_baseline") / "out"
    result = CliRunner().invoke(compare_main, [str(a) for a in [
        "--pinn_dir", upstream / "pinn_gs1", "--baseline_dir", upstream / "pinn_gs2" / "wts.h5.zip",
        "--test_data", upstream / "data" / "test_256.npz", "--output_dir", out,
        "--register-ptychi-only", "--quiet",
    ]], catch_exceptions=False)
    return out, result


@pytest.fixture(scope="module")
def bilinear_run(upstream, tmp_path_factory):
    """The gridsize-1 PINN and the baseline stitched as PtychoPINN stitches (bilinear
    translation of each patch), to compare with its own stitched images."""
    out = tmp_path_factory.mktemp("bilinear") / "out"
    result = CliRunner().invoke(compare_main, [str(a) for a in [
        "--pinn_dir", upstream / "pinn_gs1", "--baseline_dir", upstream / "baseline_gs1",
        "--test_data", upstream / "data" / "test_256.npz", "--output_dir", out,
        "--stitch-interpolation", "bilinear", "--skip-registration", "--no-half-sets", "--quiet",
    ]], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.e2e
def test_a_pinn_bundle_works_as_the_baseline_arm(pinn_as_baseline_run, seed_command_run):
    out, result = pinn_as_baseline_run
    assert result.exit_code == 0, result.output
    arms = json.loads((out / "provenance.json").read_text())["arms"]
    assert arms["Baseline"]["model_format"] == "PtychoPINN wts.h5.zip (gridsize 2)"
    assert arms["PtychoPINN"]["model_format"] == "PtychoPINN wts.h5.zip (gridsize 1)"
    # The arm does not change what a model computes: the gs2 PINN as the baseline gives the
    # image it gave as the PINN arm.
    with np.load(out / "reconstructions.npz") as here, np.load(seed_command_run[0] / "reconstructions.npz") as seed:
        np.testing.assert_allclose(here["baseline_complex"], seed["ptychopinn_complex"], rtol=1e-5, atol=1e-6)


def _register_to(ours, theirs, region):
    """Sub-pixel shift that best maps ``theirs`` (PtychoPINN's 184 x 184 canvas, embedded in
    the middle of ours) onto ``ours`` by least squares over ``region``: a coarse estimate by
    phase correlation, a 0.1 px grid around it, then Nelder-Mead. Returns (shift of their
    canvas pixel (0, 0) in our frame, relative residual)."""
    from skimage.registration import phase_cross_correlation

    offset = (ours.shape[0] - theirs.shape[0]) // 2
    canvas = np.zeros_like(ours)
    canvas[offset:offset + theirs.shape[0], offset:offset + theirs.shape[1]] = theirs
    # As imaging.registration.fourier_shift_image: fill outside the data with the nearest data
    # pixel and pad with a ramp, so that the shift neither rings nor wraps; done once here.
    _, (iy, ix) = ndimage.distance_transform_edt(np.abs(canvas) == 0, return_indices=True)
    pad = 40
    filled = canvas[iy, ix]
    mean = filled.mean()
    padded = np.pad(filled.real, pad, mode="linear_ramp", end_values=mean.real) + 1j * np.pad(
        filled.imag, pad, mode="linear_ramp", end_values=mean.imag)
    spectrum = np.fft.fft2(padded)
    target = ours[region]

    def residual(shift):
        moved = np.fft.ifft2(ndimage.fourier_shift(spectrum, shift))[pad:-pad, pad:-pad]
        return np.linalg.norm(target - moved[region]) / np.linalg.norm(target)

    coarse, _, _ = phase_cross_correlation(np.abs(ours) * region, np.abs(canvas) * region, upsample_factor=10)
    grid = np.arange(-0.5, 0.501, 0.1)
    values = np.array([[residual(coarse + (a, b)) for b in grid] for a in grid])
    i, j = np.unravel_index(values.argmin(), values.shape)
    start = coarse + (grid[i], grid[j])
    best = optimize.minimize(residual, start, method="Nelder-Mead", options=dict(
        xatol=1e-4, fatol=1e-12, initial_simplex=[start, start + (0.05, 0), start + (0, 0.05)]))
    return best.x + offset, float(best.fun)


@pytest.mark.e2e
@pytest.mark.parametrize("arm", ["ptychopinn", "baseline"])
def test_stitched_images_agree_with_ptychopinns_own(upstream, bilinear_run, arm):
    """PtychoPINN's compare_models.py stitched the gs1 PINN's and the baseline's predictions
    onto a 184 x 184 canvas centred on the mean position (M = 20), moving each patch by its
    sub-pixel residual with bilinear interpolation; ours, stitched the same way
    (--stitch-interpolation bilinear; the default Fourier shift is the simulator's and
    pty-chi's model instead), agrees after sub-pixel registration: the shift is that frame
    relation (canvas pixel (r, c) = object pixel (r + ȳ - 92, c + x̄ - 92)) within 0.05 px,
    and the residual is

    * baseline: ~6e-6 relative (measured) -> bound 1e-4: the same patches stitched the same
      way, float32 rounding only;
    * gs1 PINN: ~4e-3 relative (measured) -> bound 1e-2. The patches are the same to 1e-6;
      what differs is the sub-pixel step: PtychoPINN translates each whole patch by bilinear
      interpolation before keeping its central 20 x 20, this project splats the 20 x 20
      window bilinearly (the adjoint). The two agree exactly at integer positions and differ
      by a second difference of the image times f(1 - f); the two-epoch PINN's image is rough
      (the baseline's is smooth, hence its far smaller residual).
    """
    with np.load(bilinear_run / "reconstructions.npz") as ours_file:
        ours = ours_file[f"{arm}_complex"]
        region = ndimage.binary_erosion(ours_file["scored_region"], iterations=4)
    with np.load(upstream / "reference" / "upstream_compare_gs1" / "reconstructions.npz", allow_pickle=False) as theirs_file:
        theirs = theirs_file[f"{arm}_complex"]
    shift, residual = _register_to(ours, theirs, region)
    print(f"{arm}: shift {shift} px, relative residual {residual:.3g}")
    mean_x, mean_y = 110.2360, 114.3430  # mean test position (fixtures README)
    np.testing.assert_allclose(shift, [mean_y - 92, mean_x - 92], atol=0.05)
    assert residual < (1e-4 if arm == "baseline" else 1e-2)


# --------------------------------------------------------------------------------------------
# Bad models: one line on stderr, exit 2


def _invoke(args):
    return CliRunner().invoke(compare_main, [str(a) for a in args], catch_exceptions=False)


def _assert_one_line_error(result, fragments):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.output


def test_a_folder_that_is_neither_format(upstream, tmp_path):
    folder = tmp_path / "runs"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a model")
    result = _invoke(["--pinn_dir", folder, "--test_data", upstream / "data" / "test_256.npz",
                      "--output_dir", tmp_path / "out"])
    _assert_one_line_error(result, ["bundle.json", "wts.h5.zip", "baseline_model.h5", str(folder)])


def test_a_wts_zip_with_a_member_missing(upstream, tmp_path):
    broken = tmp_path / "pinn"
    broken.mkdir()
    with zipfile.ZipFile(upstream / "pinn_gs1" / "wts.h5.zip") as source, \
            zipfile.ZipFile(broken / "wts.h5.zip", "w") as target:
        target.writestr("diffraction_to_obj/model.keras", source.read("diffraction_to_obj/model.keras"))
    result = _invoke(["--pinn_dir", broken, "--test_data", upstream / "data" / "test_256.npz",
                      "--output_dir", tmp_path / "out"])
    _assert_one_line_error(result, ["wts.h5.zip", "diffraction_to_obj/model.h5", "missing"])


def test_a_truncated_model_keras(upstream, tmp_path):
    broken = tmp_path / "wts.h5.zip"
    with zipfile.ZipFile(upstream / "pinn_gs1" / "wts.h5.zip") as source, zipfile.ZipFile(broken, "w") as target:
        keras_bytes = source.read("diffraction_to_obj/model.keras")
        target.writestr("diffraction_to_obj/model.keras", keras_bytes[: len(keras_bytes) // 3])
        target.writestr("diffraction_to_obj/model.h5", source.read("diffraction_to_obj/model.h5"))
    result = _invoke(["--baseline_dir", broken, "--test_data", upstream / "data" / "test_256.npz",
                      "--output_dir", tmp_path / "out"])
    _assert_one_line_error(result, ["diffraction_to_obj/model.keras", "truncated or corrupt"])


def test_a_model_for_another_n(upstream, tmp_path):
    from compare_models.io.npz import save_dataset
    from compare_models.study.simulator import SimulationConfig, simulate_dataset

    data = save_dataset(simulate_dataset(SimulationConfig(patch_size=16, object_size=48, scan_step=8)), tmp_path / "n16.npz")
    for flag, model in (("--pinn_dir", upstream / "pinn_gs2"), ("--baseline_dir", upstream / "baseline_gs1")):
        result = _invoke([flag, model, "--test_data", data, "--output_dir", tmp_path / f"out{flag}"])
        _assert_one_line_error(result, ["N = 64", "N = 16"])


def test_several_baselines_below_one_folder_are_named(upstream, tmp_path):
    folder = tmp_path / "baselines"
    for stamp in ("a", "b"):
        (folder / stamp).mkdir(parents=True)
        shutil.copy(next((upstream / "baseline_gs1").rglob("baseline_model.h5")), folder / stamp / "baseline_model.h5")
    result = _invoke(["--baseline_dir", folder, "--test_data", upstream / "data" / "test_256.npz",
                      "--output_dir", tmp_path / "out"])
    _assert_one_line_error(result, ["2 baseline_model.h5 files", "pass the one"])


def test_a_zip_that_is_not_ptychopinns(upstream, tmp_path):
    path = tmp_path / "model.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "x")
    result = _invoke(["--pinn_dir", path, "--test_data", upstream / "data" / "test_256.npz",
                      "--output_dir", tmp_path / "out"])
    _assert_one_line_error(result, ["not a PtychoPINN wts.h5.zip"])
