"""compare-models end to end on a tiny study: outputs, their agreement, bad inputs, interruption.

The default tier keeps one full run and one without ground truth, with every check of their
outputs, and the bad inputs; the runs that repeat a comparison with another flag, or kill one,
are the end-to-end tier's. The flags' configurations are tested in test_cli_flags.py, what
they change in the scoring in test_compare_scoring.py and test_compare_halfsets.py."""

from __future__ import annotations

import csv
import json
import math
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from compare_models.cli import compare_main
from compare_models.io.dispatch import load_dataset
from compare_models.io.npz import save_dataset
from compare_models.report.writers import read_metrics_csv

EXPECTED_FILES = (
    "comparison_metrics.csv",
    "metrics.json",
    "frc_curves.csv",
    "reconstructions.npz",
    "reconstructions_aligned.npz",
    "comparison.png",
    "frc.png",
    "provenance.json",
    "logs/run.log",
)


def _invoke(args):
    return CliRunner().invoke(compare_main, [str(a) for a in args], catch_exceptions=False)


def _arms(study, ptychi=True):
    args = ["--pinn_dir", study["pinn"], "--baseline_dir", study["baseline"]]
    if ptychi and study["ptychi"] is not None:
        args += ["--ptychi_recon_path", study["ptychi"]]
    return args


@pytest.fixture(scope="module")
def full_run(tiny_study, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "out"
    # The tiny networks are barely trained: their images sit in the ground-truth frame by
    # construction, and phase correlation on them would chase noise past --max-shift.
    result = _invoke(
        [*_arms(tiny_study), "--test_data", tiny_study["test"], "--output_dir", out, "--stitch-crop-size", "8",
         "--register-ptychi-only", "--quiet"]
    )
    return out, result


def test_full_run_writes_every_output(full_run, tiny_study):
    out, result = full_run
    assert result.exit_code == 0, result.output
    for name in EXPECTED_FILES:
        assert (out / name).is_file(), name
    assert not (out / "FAILED").exists()
    models = {row["model"] for row in read_metrics_csv(out / "comparison_metrics.csv")}
    expected = {"PtychoPINN", "Baseline", "Constant"} | ({"PtyChi"} if tiny_study["ptychi"] else set())
    assert models == expected  # Constant: the chance level
    # The table the demo prints.
    assert "ms_ssim" in result.output and "PtychoPINN" in result.output


def test_csv_and_json_agree(full_run):
    out, _ = full_run
    rows = read_metrics_csv(out / "comparison_metrics.csv")
    with (out / "comparison_metrics.csv").open() as handle:
        assert next(csv.reader(handle)) == ["model", "metric", "amplitude", "phase", "value"]
    document = json.loads((out / "metrics.json").read_text())
    for row in rows:
        entry = document["models"][row["model"]]
        if row["amplitude"] is not None:
            for component in ("amplitude", "phase"):
                if row["metric"].startswith("halfset_"):  # half-set FRC: its own section
                    value = entry["half_set_frc"][component][row["metric"]]
                    assert value == entry["half_set_frc"][component]["cutoffs"][
                        {"halfset_frc1over7": "1/7", "halfset_frc_halfbit": "halfbit", "halfset_frc_1bit": "1bit"}[row["metric"]]
                    ]["fraction_nyquist"]
                    assert row[component] == pytest.approx(value, rel=1e-12)
                    continue
                value = entry["metrics"][component][row["metric"]]
                value = math.inf if value == "inf" else value
                assert row[component] == pytest.approx(value, rel=1e-12)
        elif row["metric"] == "computation_time_s":
            assert row["value"] == pytest.approx(entry["computation_time_s"])
        elif row["metric"] == "registration_offset_dy":
            assert row["value"] == pytest.approx(entry["registration"]["shift_yx_px"][0])
    for name, entry in document["models"].items():
        for component in ("amplitude", "phase"):
            metrics = entry["metrics"][component]
            assert 0 <= metrics["mae"] and -1 <= metrics["ssim"] <= 1 and 0 <= metrics["ms_ssim"] <= 1, name
            assert 0 < metrics["frc50"] <= 1


def test_csv_carries_scales_gauge_region_and_half_set_cutoffs_under_their_own_names(full_run, tiny_study):
    out, _ = full_run
    rows = read_metrics_csv(out / "comparison_metrics.csv")
    metrics = {row["metric"] for row in rows}
    assert {"ms_ssim", "ms_ssim_scales", "frc50", "frc1over7", "data_range", "compile_time_s",
            "gauge_amplitude_scale", "gauge_phase_offset_rad", "gauge_phase_ramp_x_rad_per_px",
            "gauge_phase_ramp_y_rad_per_px", "region_pixels", "hull_lost_fraction"} <= metrics
    # No 1-bit or 1/2-bit cut-off against ground truth; half-set ones are named halfset_*.
    assert not {"frc_1bit", "frc_halfbit"} & metrics
    half = {"halfset_frc1over7", "halfset_frc_halfbit", "halfset_frc_1bit", "halfset_coverage", "halfset_region_pixels"}
    expected = {"PtychoPINN", "Baseline"} | ({"PtyChi"} if tiny_study["ptychi"] else set())
    for model in expected:
        assert half <= {row["metric"] for row in rows if row["model"] == model}, model
    for row in rows:
        if row["metric"] in ("halfset_frc1over7", "halfset_frc_halfbit", "halfset_frc_1bit"):
            assert 0 < row["amplitude"] <= 1 and 0 < row["phase"] <= 1
    document = json.loads((out / "metrics.json").read_text())
    for row in rows:
        entry = document["models"][row["model"]]
        if row["metric"] == "ms_ssim_scales":
            assert row["amplitude"] == entry["metrics"]["amplitude"]["ms_ssim_scales"] >= 1
        elif row["metric"] == "gauge_amplitude_scale":
            assert row["value"] == pytest.approx(entry["registration"]["gauge"]["amplitude_scale"])
        elif row["metric"] == "region_pixels":
            assert row["value"] == document["region"]["n_pixels"]


def test_metrics_json_and_provenance_state_how_the_numbers_were_made(full_run):
    out, result = full_run
    document = json.loads((out / "metrics.json").read_text())
    assert document["schema"] == "compare_models.metrics/2"
    region = document["region"]
    assert "convex hull" in region["rule"] and region["n_pixels"] == document["region_pixels"] > 0
    assert region["erosion_px"] == math.ceil(region["largest_shift_px"] - 1e-9) + region["margin_px"]
    assert set(region["hull_lost_fraction"]) == set(document["models"]) - {"Constant"}  # chance adds no mask
    scoring = document["scoring"]
    assert scoring["ms_ssim"]["weights"] == [0.0448, 0.2856, 0.3001, 0.2363, 0.1333]
    assert scoring["ms_ssim"]["sigma"] is None
    assert scoring["frc"]["kind"] == "ground_truth" and "Rosenthal" in scoring["frc"]["resolution"]
    assert "amplitude-weighted" in scoring["gauge"]["description"]
    for name, entry in document["models"].items():
        for component in ("amplitude", "phase"):
            assert entry["metrics"][component]["frc"]["kind"] == "ground_truth"
            if name == "Constant":  # the chance level has no half sets
                continue
            half = entry["half_set_frc"][component]
            assert half["kind"] == "half_set" and set(half["cutoffs"]) == {"1/7", "halfbit", "1bit"}
            assert len(half["thresholds"]["halfbit"]) == len(half["curve"])
        if name != "Constant":
            assert entry["half_set_frc"]["registration"]["direction"].startswith("half 2 registered onto half 1")
    halves = document["half_sets"]
    assert halves["computed"] and halves["split"]["method"] == "checkerboard"
    assert halves["split"]["n_half1"] + halves["split"]["n_half2"] == halves["split"]["n_positions"]
    assert 0 < halves["region"]["both_halves_fraction_of_hull"] <= 1 and "van Heel" in halves["what"]
    assert "half-set FRC" in scoring["frc"]["half_set"]
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["scored_region"] == region and provenance["scoring"] == scoring
    assert provenance["half_sets"] == halves
    assert provenance["arms"]["PtychoPINN"]["half_sets"]["reused_full_run_patches"] is False
    assert "amplitude_scale" in provenance["corrections"]["PtychoPINN"]["gauge"]
    # The printed summary states the region, the gauge, the scales, the thresholds, the ranges.
    for fragment in ("scored region:", "convex hull", "gauge (ramp)", "amplitude scale", "MS-SSIM:",
                     "scales used", "0.5 threshold", "not a resolution", "data range"):
        assert fragment in result.output, fragment
    # Both kinds of FRC, each labelled by what it is.
    for fragment in ("against ground truth (frc50", "half-set FRC (two images of each arm from disjoint halves",
                     "halfset_frc_halfbit (1/2-bit)", "half-set region:", "both halves cover"):
        assert fragment in result.output, fragment


def test_computation_time_excludes_compilation(full_run):
    out, _ = full_run
    provenance = json.loads((out / "provenance.json").read_text())
    timings = provenance["timings_s"]
    document = json.loads((out / "metrics.json").read_text())
    entry = document["models"]["PtychoPINN"]
    assert entry["computation_time_s"] == pytest.approx(timings["pinn.predict_stitch"] + timings["pinn.stitch_finish"])
    assert entry["compile_time_s"] == pytest.approx(timings["pinn.predict_stitch_compile"])
    assert timings["pinn.predict_stitch_compile"] > 0  # the model is traced afresh in every run


@pytest.mark.e2e
def test_scored_region_does_not_depend_on_the_stitching_crop(tiny_study, tmp_path):
    """The scored region does not depend on the stitching crop, end to end: pty-chi's image is the same, so its numbers must be too."""
    if tiny_study["ptychi"] is None:
        pytest.skip("pty-chi extra not installed")
    documents = {}
    for crop in ("8", "12"):
        out = tmp_path / f"crop{crop}"
        result = _invoke(["--pinn_dir", tiny_study["pinn"], "--ptychi_recon_path", tiny_study["ptychi"],
                          "--test_data", tiny_study["test"], "--output_dir", out, "--stitch-crop-size", crop,
                          "--register-ptychi-only", "--quiet"])
        assert result.exit_code == 0, result.output
        documents[crop] = json.loads((out / "metrics.json").read_text())
    first, second = documents["8"], documents["12"]
    assert first["region"] == second["region"]
    assert first["region"]["hull_lost_fraction"] == {"PtychoPINN": 0.0, "PtyChi": 0.0}
    assert first["models"]["PtyChi"]["metrics"] == second["models"]["PtyChi"]["metrics"]
    assert first["models"]["PtychoPINN"]["metrics"] != second["models"]["PtychoPINN"]["metrics"]


@pytest.mark.parametrize("retired", ["plane", "mean", "none"])
def test_retired_phase_align_methods_are_refused_with_the_reason(tiny_study, tmp_path, retired):
    out = tmp_path / "out"
    result = _invoke(["--pinn_dir", tiny_study["pinn"], "--test_data", tiny_study["test"], "--output_dir", out,
                      "--phase-align-method", retired])
    _assert_clean_failure(result, out, "is retired")


def test_frc_csv_matches_json_curves(full_run):
    out, _ = full_run
    document = json.loads((out / "metrics.json").read_text())
    with (out / "frc_curves.csv").open() as handle:
        records = list(csv.DictReader(handle))
    for name, entry in document["models"].items():
        for component in ("amplitude", "phase"):
            kinds = [("ground_truth", entry["metrics"][component]["frc"])]
            if "half_set_frc" in entry:  # not the chance level (Constant)
                kinds.append(("half_set", entry["half_set_frc"][component]))
            for kind, frc in kinds:
                mine = [r for r in records if r["model"] == name and r["component"] == component and r["kind"] == kind]
                np.testing.assert_allclose([float(r["frc"]) for r in mine], frc["curve"])
                assert [int(r["n_pixels"]) for r in mine] == frc["n_pixels"]
                if kind == "half_set":
                    np.testing.assert_allclose([float(r["threshold_halfbit"]) for r in mine], frc["thresholds"]["halfbit"])
                    np.testing.assert_allclose([float(r["threshold_1bit"]) for r in mine], frc["thresholds"]["1bit"])
                else:
                    assert {r["threshold_halfbit"] for r in mine} == {""}


def test_images_are_on_the_ground_truth_grid(full_run, tiny_study):
    out, _ = full_run
    truth = load_dataset(tiny_study["test"]).object_truth
    with np.load(out / "reconstructions.npz", allow_pickle=False) as stitched:
        np.testing.assert_array_equal(stitched["ground_truth_complex"], truth)
        assert stitched["scored_region"].dtype == bool and stitched["scored_region"].any()
        assert not (stitched["scored_region"] & ~stitched["scan_hull"]).any()
        assert stitched["ptychopinn_valid"].dtype == bool
        for key in ("ptychopinn", "baseline"):
            assert stitched[f"{key}_complex"].shape == truth.shape
            np.testing.assert_allclose(stitched[f"{key}_amplitude"], np.abs(stitched[f"{key}_complex"]), rtol=1e-6)
            for number in (1, 2):  # the half-set images, on the same grid
                assert stitched[f"{key}_half{number}_complex"].shape == truth.shape
                assert stitched[f"{key}_half{number}_valid"].dtype == bool
        assert not (stitched["halfset_region"] & ~stitched["scan_hull"]).any()
    with np.load(out / "reconstructions_aligned.npz", allow_pickle=False) as aligned:
        assert {"ptychopinn_phase", "baseline_phase", "ground_truth_complex", "ptychopinn_half2_complex"} <= set(aligned.files)


def test_provenance_records_inputs_and_dose(full_run, tiny_study):
    out, _ = full_run
    provenance = json.loads((out / "provenance.json").read_text())
    dataset = load_dataset(tiny_study["test"])
    assert provenance["test_data"]["dose_measured"] == pytest.approx(dataset.measured_dose)
    assert len(provenance["inputs"]["test_data"]["sha256"]) == 64
    assert set(provenance["inputs"]) >= {"test_data", "pinn", "baseline"}
    assert "PtychoPINN" in provenance["corrections"]
    assert any(k.startswith("pinn.predict_stitch") for k in provenance["timings_s"])
    # The tiny study's networks trained on another object: no scored pixel was seen.
    assert provenance["seen_in_training"] == {"PtychoPINN": 0.0, "Baseline": 0.0}


@pytest.mark.e2e
def test_same_inputs_same_numbers(full_run, tiny_study, tmp_path):
    out, _ = full_run
    again = tmp_path / "again"
    result = _invoke(
        [*_arms(tiny_study), "--test_data", tiny_study["test"], "--output_dir", again, "--stitch-crop-size", "8",
         "--register-ptychi-only", "--quiet"]
    )
    assert result.exit_code == 0
    first = {(r["model"], r["metric"]): r for r in read_metrics_csv(out / "comparison_metrics.csv")}
    for row in read_metrics_csv(again / "comparison_metrics.csv"):
        if row["metric"] in ("computation_time_s", "compile_time_s"):
            continue
        assert row == first[(row["model"], row["metric"])]


@pytest.fixture(scope="module")
def bare_run(tiny_study, tmp_path_factory):
    """The full run's inputs without objectGuess (a real scan has none)."""
    import dataclasses

    root = tmp_path_factory.mktemp("bare")
    dataset = load_dataset(tiny_study["test"])
    bare = save_dataset(dataclasses.replace(dataset, object_truth=None, patches_truth=None), root / "bare.npz")
    out = root / "out"
    result = _invoke([*_arms(tiny_study), "--test_data", bare, "--output_dir", out, "--stitch-crop-size", "8",
                      "--register-ptychi-only", "--quiet"])
    return out, result, bare


def test_no_ground_truth_gives_half_set_metrics_images_and_figures(bare_run, full_run, tiny_study):
    """Without ground truth the run exits 0 with the half-set resolution of every arm
    (pty-chi's half sets found beside its reconstruction), the images and the figures; the
    half-set numbers are the ones the run with ground truth reports."""
    out, result, _ = bare_run
    assert result.exit_code == 0, result.output
    for name in ("comparison_metrics.csv", "metrics.json", "frc_curves.csv", "reconstructions.npz",
                 "comparison.png", "frc.png", "provenance.json"):
        assert (out / name).is_file(), name
    rows = read_metrics_csv(out / "comparison_metrics.csv")
    expected = {"PtychoPINN", "Baseline"} | ({"PtyChi"} if tiny_study["ptychi"] else set())
    assert {r["model"] for r in rows if r["metric"] == "halfset_frc_halfbit"} == expected
    assert not {r["metric"] for r in rows} & {"mae", "psnr", "ssim", "ms_ssim", "frc50", "frc1over7"}
    # Without a truth the grid is the scan's bounding box rather than objectGuess's: the same
    # pixels, so the same numbers up to the rounding of the sub-pixel shifts.
    with_truth = {(r["model"], r["metric"]): r for r in read_metrics_csv(full_run[0] / "comparison_metrics.csv")}
    for row in rows:
        if row["metric"].startswith("halfset_"):
            other = with_truth[(row["model"], row["metric"])]
            for key in ("amplitude", "phase", "value"):
                assert row[key] == (None if other[key] is None else pytest.approx(other[key], abs=1e-4)), row
    document = json.loads((out / "metrics.json").read_text())
    assert document["ground_truth"] is False and document["region"] is None
    assert document["half_sets"]["computed"] and not document["half_sets"]["not_computed"]
    for name in expected:
        assert document["models"][name]["half_set_frc"]["phase"]["kind"] == "half_set"
    with (out / "frc_curves.csv").open() as handle:
        assert {r["kind"] for r in csv.DictReader(handle)} == {"half_set"}
    assert "half-set FRC (two images of each arm" in result.output and "against ground truth (frc50" not in result.output


def test_pty_chi_half_sets_by_directory_or_paths_give_the_same_numbers(bare_run, tiny_study, tmp_path):
    if tiny_study["ptychi"] is None:
        pytest.skip("pty-chi extra not installed")
    out, _, bare = bare_run
    halves = tiny_study["ptychi"].parent / "half_sets"
    reference = {(r["model"], r["metric"]): r for r in read_metrics_csv(out / "comparison_metrics.csv")}
    for option in (["--ptychi-half-sets", halves],
                   ["--ptychi-half-set-paths", halves / "ptychi_half1.npz", halves / "ptychi_half2.npz"]):
        again = tmp_path / option[0].strip("-")
        result = _invoke(["--ptychi_recon_path", tiny_study["ptychi"], *option, "--test_data", bare,
                          "--output_dir", again, "--register-ptychi-only", "--quiet"])
        assert result.exit_code == 0, result.output
        for row in read_metrics_csv(again / "comparison_metrics.csv"):
            if row["metric"].startswith("halfset_"):
                assert row == reference[(row["model"], row["metric"])]
        provenance = json.loads((again / "provenance.json").read_text())
        assert provenance["arms"]["PtyChi"]["half_sets"]["found"] == option[0]
        assert {"ptychi_half1", "ptychi_half2"} <= set(provenance["inputs"])


@pytest.mark.e2e
def test_no_half_sets_option(tiny_study, tmp_path):
    out = tmp_path / "out"
    result = _invoke(["--baseline_dir", tiny_study["baseline"], "--test_data", tiny_study["test"], "--output_dir", out,
                      "--no-half-sets", "--skip-registration", "--quiet"])
    assert result.exit_code == 0, result.output
    assert not any(r["metric"].startswith("halfset_") for r in read_metrics_csv(out / "comparison_metrics.csv"))
    document = json.loads((out / "metrics.json").read_text())
    assert document["half_sets"]["computed"] is False and "half_set_frc" not in document["models"]["Baseline"]


@pytest.mark.e2e
def test_halves_that_leave_gaps_fail_with_the_crop_that_would_do(tiny_study, tmp_path):
    """A crop of 4 px covers the tiny scan (step 3) but not its halves (their positions lie up to
    3.6 px from a pixel of the hull). With --half-sets the error names --stitch-crop-size and a
    denser scan; by default, with ground truth, the run completes, names the arm and the fix,
    and writes no half-set rows for it. The crop named is 6: a crop of 5 covers 90 % of the hull
    but leaves holes inside it, which the guard refuses too."""
    out = tmp_path / "out"
    args = ["--baseline_dir", tiny_study["baseline"], "--test_data", tiny_study["test"],
            "--stitch-crop-size", "4", "--skip-registration"]
    result = _invoke([*args, "--output_dir", out, "--half-sets"])
    _assert_clean_failure(result, out, "half-set FRC: both halves of Baseline cover only")
    assert "--stitch-crop-size 6 or more; now 4" in result.output and "denser scan" in result.output
    default = tmp_path / "default"
    result = _invoke([*args, "--output_dir", default])
    assert result.exit_code == 0, result.output
    rows = read_metrics_csv(default / "comparison_metrics.csv")
    assert not [r for r in rows if r["metric"].startswith("halfset_frc")]
    assert any(r["metric"] == "frc50" for r in rows)
    reason = json.loads((default / "metrics.json").read_text())["half_sets"]["not_computed"]["Baseline"]
    assert "cover only" in reason and "--stitch-crop-size 6 or more" in reason


def test_existing_output_needs_overwrite(full_run, tiny_study):
    out, _ = full_run
    result = _invoke(["--pinn_dir", tiny_study["pinn"], "--test_data", tiny_study["test"], "--output_dir", out])
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert (out / "comparison_metrics.csv").exists()


@pytest.mark.e2e
def test_dash_spellings_and_tike_alias(tiny_study, tmp_path):
    if tiny_study["ptychi"] is None:
        pytest.skip("pty-chi extra not installed")
    out = tmp_path / "out"
    result = _invoke(
        ["--baseline-dir", tiny_study["baseline"], "--tike_recon_path", tiny_study["ptychi"],
         "--test-data", tiny_study["test"], "--output-dir", out, "--register-ptychi-only", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert {r["model"] for r in read_metrics_csv(out / "comparison_metrics.csv")} == {"Baseline", "PtyChi", "Constant"}


def _foreign_reconstruction(tiny_study, tmp_path, shift_rows):
    """The ground truth, rolled by ``shift_rows``, saved as another writer would (no frame)."""
    truth = load_dataset(tiny_study["test"]).object_truth
    path = tmp_path / "foreign.npz"
    np.savez(path, reconstructed_object=np.roll(truth, shift_rows, axis=0) * (0.5 * np.exp(0.3j)))
    return path


def test_foreign_reconstruction_is_registered_to_the_truth(tiny_study, tmp_path):
    out = tmp_path / "out"
    recon = _foreign_reconstruction(tiny_study, tmp_path, 3)
    result = _invoke(["--ptychi_recon_path", recon, "--test_data", tiny_study["test"], "--output_dir", out, "--quiet"])
    assert result.exit_code == 0, result.output
    document = json.loads((out / "metrics.json").read_text())
    entry = document["models"]["PtyChi"]
    assert entry["registration"]["shift_yx_px"] == pytest.approx([-3, 0], abs=0.05)
    assert entry["registration"]["gauge"]["amplitude_scale"] == pytest.approx(2.0, rel=1e-3)
    assert entry["registration"]["gauge"]["phase_offset_rad"] == pytest.approx(0.3, abs=1e-3)
    # Away from the region's edge (where rolled-in rows differ) the aligned image is the truth.
    assert entry["metrics"]["amplitude"]["ms_ssim"] > 0.95
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["arms"]["PtyChi"]["placed_by"] == "registration"


def test_shift_beyond_the_bound_fails_with_its_value(tiny_study, tmp_path):
    out = tmp_path / "out"
    recon = _foreign_reconstruction(tiny_study, tmp_path, 25)
    result = _invoke(["--ptychi_recon_path", recon, "--test_data", tiny_study["test"], "--output_dir", out,
                      "--max-shift", "10"])
    _assert_clean_failure(result, out, "exceeds max_shift")


def _metric_values(out, model) -> dict:
    """``(metric, component) -> value`` of one model's rows against ground truth, timings left out."""
    values = {}
    for row in read_metrics_csv(out / "comparison_metrics.csv"):
        if row["model"] == model and not row["metric"].endswith("time_s"):
            values[(row["metric"], "amplitude")] = row["amplitude"]
            values[(row["metric"], "phase")] = row["phase"]
            values[(row["metric"], "value")] = row["value"]
    return values


def test_failed_arms_are_named_and_cost_the_others_nothing(tiny_study, tmp_path):
    """A model that cannot run (a truncated .keras file) and a reconstruction displaced past
    --max-shift: the run completes (no FAILED), writes the PINN's numbers exactly as a run
    with the PINN alone does, names both failed arms with the reason and the fix in the
    printed summary, metrics.json and report.html, and exits 3."""
    broken = tmp_path / "broken"
    shutil.copytree(tiny_study["baseline"], broken)
    (broken / "model.keras").write_bytes((broken / "model.keras").read_bytes()[:200])
    far = _foreign_reconstruction(tiny_study, tmp_path, 25)
    common = ["--test_data", tiny_study["test"], "--stitch-crop-size", "8", "--register-ptychi-only",
              "--no-half-sets", "--max-shift", "10", "--quiet"]
    out = tmp_path / "out"
    result = _invoke(["--pinn_dir", tiny_study["pinn"], "--baseline_dir", broken, "--ptychi_recon_path", far,
                      "--output_dir", out, *common])
    assert result.exit_code == 3, result.output
    assert not (out / "FAILED").exists() and (out / "report.html").exists()
    models = {row["model"] for row in read_metrics_csv(out / "comparison_metrics.csv")}
    assert models == {"PtychoPINN", "Constant"}
    document = json.loads((out / "metrics.json").read_text())
    failures = document["failures"]["arms"]
    assert set(failures) == {"Baseline", "PtyChi"} and document["failures"]["exit_status"] == 3
    (baseline,), (ptychi,) = failures["Baseline"], failures["PtyChi"]
    assert baseline["stage"] == "making the image" and "model.keras" in baseline["reason"]
    assert "--baseline_dir" in baseline["fix"]
    assert ptychi["step"] == "shift" and "exceeds max_shift" in ptychi["reason"] and "--max-shift" in ptychi["fix"]
    assert document["models"]["PtyChi"]["failure"] == ptychi
    printed = [line for line in result.output.splitlines() if "Fix:" in line]
    assert any(line.strip().startswith("Baseline:") for line in printed)
    assert any(line.strip().startswith("PtyChi:") and "--max-shift" in line for line in printed)
    page = (out / "report.html").read_text()
    assert "Failed arms" in page and "exceeds max_shift" in page and "model.keras" in page
    # The failed arms did not shape the PINN's region or numbers: a run without them agrees.
    alone = tmp_path / "alone"
    result = _invoke(["--pinn_dir", tiny_study["pinn"], "--output_dir", alone, *common])
    assert result.exit_code == 0, result.output
    assert _metric_values(out, "PtychoPINN") == _metric_values(alone, "PtychoPINN")


# ---- bad inputs, as a new user would try them: one line, exit 2, nothing that looks finished


def _assert_clean_failure(result, out, fragment):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and fragment in lines[0], result.output
    assert "Traceback" not in result.output
    assert not (out / "comparison_metrics.csv").exists()
    if out.exists():
        assert (out / "FAILED").exists() and fragment.split()[0] in (out / "FAILED").read_text() + result.output


def test_wrong_paths(tiny_study, tmp_path):
    out = tmp_path / "out"
    result = _invoke(["--pinn_dir", tmp_path / "nope", "--test_data", tiny_study["test"], "--output_dir", out])
    _assert_clean_failure(result, out, "no such directory")
    result = _invoke(["--pinn_dir", tiny_study["pinn"], "--test_data", tmp_path / "x.npz", "--output_dir", out])
    _assert_clean_failure(result, out, "no such file")


def test_nothing_to_compare(tiny_study, tmp_path):
    result = _invoke(["--test_data", tiny_study["test"], "--output_dir", tmp_path / "o"])
    _assert_clean_failure(result, tmp_path / "o", "nothing to compare")


def test_bundle_for_another_patch_size(tiny_study, tmp_path):
    from compare_models.study.simulator import SimulationConfig, simulate_dataset

    other = save_dataset(simulate_dataset(SimulationConfig(patch_size=32, object_size=96, scan_step=8)), tmp_path / "n32.npz")
    out = tmp_path / "out"
    result = _invoke(["--pinn_dir", tiny_study["pinn"], "--test_data", other, "--output_dir", out])
    _assert_clean_failure(result, out, "N = 16")


def test_data_without_probe(tiny_study, tmp_path):
    with np.load(tiny_study["test"], allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files if k != "probeGuess"}
    bad = tmp_path / "noprobe.npz"
    np.savez(bad, **arrays)
    out = tmp_path / "out"
    result = _invoke(["--pinn_dir", tiny_study["pinn"], "--test_data", bad, "--output_dir", out])
    _assert_clean_failure(result, out, "probeGuess")


def test_corrupt_keras_file(tiny_study, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_study["pinn"], broken)
    model_file = broken / "model.keras"
    model_file.write_bytes(model_file.read_bytes()[:200])
    out = tmp_path / "out"
    result = _invoke(["--pinn_dir", broken, "--test_data", tiny_study["test"], "--output_dir", out])
    _assert_clean_failure(result, out, "model.keras")


def test_reconstruction_without_object(tiny_study, tmp_path):
    bad = tmp_path / "recon.npz"
    np.savez(bad, reconstructed_probe=np.ones((16, 16), np.complex64))
    out = tmp_path / "out"
    result = _invoke(["--ptychi_recon_path", bad, "--test_data", tiny_study["test"], "--output_dir", out])
    _assert_clean_failure(result, out, "reconstructed_object")


@pytest.mark.parametrize("crop", ["0", "17"])
def test_crop_size_out_of_range(tiny_study, tmp_path, crop):
    out = tmp_path / "out"
    result = _invoke(["--pinn_dir", tiny_study["pinn"], "--test_data", tiny_study["test"], "--output_dir", out, "--stitch-crop-size", crop])
    _assert_clean_failure(result, out, "--stitch-crop-size")


@pytest.mark.e2e
def test_interrupted_run_leaves_nothing_that_looks_complete(tiny_study, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-c", "from compare_models.cli import compare_main; compare_main()", *map(str, _arms(tiny_study)),
               "--test_data", str(tiny_study["test"]), "--output_dir", str(out), "--quiet"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    # Wait until the run has started writing (its staging directory exists), then kill it.
    while time.time() < deadline and not list(tmp_path.glob(".out.partial-*")):
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    assert process.returncode != 0
    assert not (out / "comparison_metrics.csv").exists()
    assert (out / "FAILED").exists()
    assert not list(tmp_path.glob(".out.partial-*"))


def test_demo_prints_the_region_scales_gauge_and_thresholds(full_run, tmp_path, monkeypatch):
    """`ptycho-study demo` prints, after its table, how the numbers were made (read back from
    the cell's metrics.json). The study itself is stood in for by the finished comparison."""
    from compare_models import cli
    from compare_models.pipelines import sweep

    out, _ = full_run
    demo_out = tmp_path / "demo"
    shutil.copytree(out, demo_out / "cells" / sweep.Cell(1e4, 7).name / "compare")
    config = tmp_path / "demo.yaml"
    config.write_text("sweep:\n  doses: [10000]\n  seeds: [7]\n")
    monkeypatch.setattr(sweep, "run_sweep", lambda config, echo: [{"status": "done"}])
    result = CliRunner().invoke(cli.study_main, ["demo", "--config", str(config), "--out", str(demo_out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    for fragment in ("ms_ssim_scales", "scored region:", "hull without data", "gauge (ramp)",
                     "scales used", "0.5 threshold", "not a resolution", "data range"):
        assert fragment in result.output, fragment
    # Both kinds of FRC, each labelled by what it is.
    for fragment in ("against ground truth (frc50: FRC against the truth at 0.5",
                     "half-set FRC (two images of each arm from disjoint halves of the scan, no ground truth",
                     "halfset_frc1over7 (1/7)", "halfset_frc_halfbit (1/2-bit)", "halfset_frc_1bit (1-bit)",
                     "half-set resolution (fraction of Nyquist)"):
        assert fragment in result.output, fragment
