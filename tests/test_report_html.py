"""report.html and sweep_report.html: built from the run's data, self-contained, and checked in a
real browser (Debian's headless chromium; skipped with a reason where it is not installed)."""

from __future__ import annotations

import base64
import copy
import dataclasses
import html
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from _browser import check_page, find_chromium, is_blank
from click.testing import CliRunner

from compare_models.cli import compare_main
from compare_models.io.dispatch import load_dataset
from compare_models.io.npz import save_dataset
from compare_models.pipelines.sweep import Cell
from compare_models.report.html import fmt, render_compare_report
from compare_models.report.sweep_report import summarise, t_interval, write_sweep_report
from compare_models.report.writers import read_metrics_csv, write_metrics_csv

CHROMIUM = find_chromium()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)"
)

SRC_OR_HREF = re.compile(r'(?:src|href)="([^"]*)"')


def _invoke(args):
    return CliRunner().invoke(compare_main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def compare_dirs(tiny_study, tmp_path_factory):
    """Two real comparisons: every arm against the ground truth, and the PINN on data without one."""
    root = tmp_path_factory.mktemp("report")
    truth = root / "with_truth"
    args = ["--pinn_dir", tiny_study["pinn"], "--baseline_dir", tiny_study["baseline"]]
    if tiny_study["ptychi"] is not None:
        args += ["--ptychi_recon_path", tiny_study["ptychi"]]
    result = _invoke([*args, "--test_data", tiny_study["test"], "--output_dir", truth, "--stitch-crop-size", "8",
                      "--register-ptychi-only", "--quiet"])
    assert result.exit_code == 0, result.output
    dataset = load_dataset(tiny_study["test"])
    bare_data = save_dataset(dataclasses.replace(dataset, object_truth=None, patches_truth=None), root / "bare.npz")
    bare = root / "without_truth"
    result = _invoke(["--pinn_dir", tiny_study["pinn"], "--test_data", bare_data, "--output_dir", bare, "--quiet"])
    assert result.exit_code == 0, result.output
    return {"truth": truth, "bare": bare}


def _embedded_pngs(text: str) -> list[bytes]:
    return [base64.b64decode(src.split(",", 1)[1]) for src in re.findall(r'<img src="([^"]+)"', text)]


@pytest.mark.parametrize("which", ["truth", "bare"])
def test_report_is_self_contained(compare_dirs, which):
    directory = compare_dirs[which]
    text = (directory / "report.html").read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert "<script" not in text.lower()
    for target in SRC_OR_HREF.findall(text):
        # Images are inline; the only links are relative ones to files beside the report.
        if target.startswith("data:"):
            assert target.startswith("data:image/png;base64,")
        else:
            assert "://" not in target and not target.startswith("/"), target
            assert (directory / target).exists(), target
    assert "http://" not in text and "https://" not in text
    # The figures compare made are embedded byte for byte.
    embedded = _embedded_pngs(text)
    assert (directory / "comparison.png").read_bytes() in embedded
    if which == "truth":
        assert (directory / "frc.png").read_bytes() in embedded
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") for png in embedded)


def test_report_shows_the_runs_numbers(compare_dirs):
    directory = compare_dirs["truth"]
    text = (directory / "report.html").read_text()
    metrics = json.loads((directory / "metrics.json").read_text())
    provenance = json.loads((directory / "provenance.json").read_text())
    for name, entry in metrics["models"].items():
        chance = name == metrics["chance"]["model"]  # the chance level: labelled, and not timed
        # Each column names the arm as the CSV does, and under it what the arm is.
        label = f'<span class="arm-label">{entry["label"]}</span>'
        assert (f"<th colspan=\"2\" class=\"chance\">{name} (chance){label}</th>" if chance
                else f"<th colspan=\"2\">{name}{label}</th>") in text
        for component in ("amplitude", "phase"):
            for metric in ("mae", "psnr", "ssim", "ms_ssim", "frc50"):
                assert f">{fmt(entry['metrics'][component][metric])}<" in text, (name, component, metric)
            cutoff = entry["metrics"][component]["frc"]["cutoffs"]["0.5"]
            assert f">{fmt(cutoff['fraction_nyquist'])}<" in text
        dy, dx = entry["registration"]["shift_yx_px"]
        assert f">{fmt(dy)}<" in text and f">{fmt(dx)}<" in text
        for key in ("amplitude_scale", "phase_offset_rad", "phase_ramp_x_rad_per_px"):
            assert f">{fmt(entry['registration']['gauge'][key])}<" in text, key
        if not chance:
            assert f">{fmt(entry['computation_time_s'])}<" in text
    assert fmt(provenance["test_data"]["dose_measured"]) in text
    assert provenance["inputs"]["test_data"]["sha256"] in text
    assert provenance["versions"]["numpy"] in text
    assert html.escape(" ".join(provenance["command_line"])) in text
    assert f">{metrics['region_pixels']}<" in text
    assert html.escape(metrics["region"]["rule"]) in text  # the scored region's rule
    assert html.escape(metrics["scoring"]["frc"]["resolution"]) in text  # the thresholds used


def test_report_without_ground_truth_has_images_and_timings(compare_dirs):
    directory = compare_dirs["bare"]
    text = (directory / "report.html").read_text()
    metrics = json.loads((directory / "metrics.json").read_text())
    assert "No ground truth in the test data" in text
    assert f">{fmt(metrics['models']['PtychoPINN']['computation_time_s'])}<" in text
    assert "Not computed (no ground truth)" in text
    # comparison.png, and frc.png with the half-set curves (the only FRC without a truth).
    embedded = _embedded_pngs(text)
    assert len(embedded) == 2 and (directory / "frc.png").read_bytes() in embedded
    assert ">halfset_frc1over7<" in text or "1/7" in text


def _frc_entry(curve, thresholds):
    rings = len(curve)
    return {
        "curve": list(curve),
        "frequency_nyquist": list(np.linspace(0, 1, rings)),
        "thresholds": {"halfbit": list(thresholds)},
        "cutoffs": {"1/7": {"ring": 5, "fraction_nyquist": 0.3125, "resolution_m": 3.2e-8, "crossed": True}},
    }


def test_optional_sections_render_when_present(compare_dirs):
    directory = compare_dirs["truth"]
    metrics = json.loads((directory / "metrics.json").read_text())
    provenance = json.loads((directory / "provenance.json").read_text())
    figures = {p.name: p.read_bytes() for p in directory.glob("*.png")}
    plain_metrics = copy.deepcopy(metrics)  # as a run with --no-half-sets writes it
    for entry in plain_metrics["models"].values():
        entry.pop("half_set_frc", None)
    plain_metrics["half_sets"] = {"computed": False, "not_computed": {"PtychoPINN": "--no-half-sets"}}
    plain = render_compare_report(plain_metrics, provenance, figures)
    assert "initialisation unknown" not in plain
    assert plain.count("Not computed in this run.") == 1  # the half-set FRC
    assert "No half-set FRC for" in plain and "--no-half-sets" in plain

    richer_metrics = copy.deepcopy(plain_metrics)
    richer_metrics["half_sets"] = {"computed": True, "not_computed": {}}
    richer_provenance = copy.deepcopy(provenance)
    name = next(iter(richer_metrics["models"]))
    curve = np.linspace(1, 0, 16)
    richer_metrics["models"][name]["half_set_frc"] = {c: _frc_entry(curve, np.full(16, 0.2)) for c in ("amplitude", "phase")}
    richer_metrics["region"] = {"description": "hull of the scan where every arm has data, eroded by 3 px",
                                "erode_px": 3, "fraction_lost_to_holes": 0.0125}
    richer_metrics["thresholds"] = {"frc_against_truth": 0.5, "half_set": "1/7 and half-bit"}
    richer_metrics["models"][name]["gauge"] = {"amplitude_scale": 1.2345, "phase_offset_rad": -0.5}
    richer_provenance["arms"]["PtyChi"] = {"path": "x.npz", "algorithm": "pty-chi", "initialisation": "unknown",
                                           "initialisation_note": "written by PtychoPINN's pty-chi script"}
    text = render_compare_report(richer_metrics, richer_provenance, figures)
    assert "PtyChi: initialisation unknown." in text and "written by PtychoPINN&#x27;s pty-chi script" in text
    assert "Not computed in this run." not in text
    assert "No half-set FRC for" not in text
    # frc.png holds every FRC the run computed, so no second half-set figure is drawn ...
    assert len(_embedded_pngs(text)) == len(_embedded_pngs(plain))
    # ... except when the directory has no frc.png.
    without = {k: v for k, v in figures.items() if k != "frc.png"}
    assert len(_embedded_pngs(render_compare_report(richer_metrics, richer_provenance, without))) == len(without) + 1
    assert ">3.2e-08<" in text and ">0.3125<" in text
    assert "hull of the scan where every arm has data, eroded by 3 px" in text
    assert ">fraction_lost_to_holes<" in text and ">0.0125<" in text
    assert ">half_set<" in text and "1/7 and half-bit" in text
    assert ">amplitude_scale<" in text and ">1.2345<" in text


def _metrics_of(values: dict) -> dict:
    """A metrics.json document with arms whose amplitude and phase metrics are ``values[arm]``."""
    return {"ground_truth": True, "models": {
        name: {"metrics": {"amplitude": dict(metrics), "phase": dict(metrics)}} for name, metrics in values.items()
    }}


def _cells_of_row(text: str, label: str) -> list[str]:
    """The <td> elements of the metrics table's row whose first cell starts with ``label``."""
    row = re.search(r'<tr><td class="text">' + re.escape(html.escape(label)) + r"[^<]*</td>(.*?)</tr>", text)
    assert row, f"no row {label!r}"
    return re.findall(r"<td[^>]*>[^<]*</td>", row.group(1))


def test_legacy_frc1over7_is_never_ranked():
    """The 1/7 crossing against ground truth is a legacy number, not a resolution: no arm is
    bolded as best on it, however the values differ; the ranked rows still mark one best."""
    text = render_compare_report(_metrics_of({
        "PtychoPINN": {"frc50": 0.2, "frc1over7": 0.9, "ssim": 0.5},
        "PtyChi": {"frc50": 0.7, "frc1over7": 0.3, "ssim": 0.8},
    }), {}, {})
    assert "frc1over7 (legacy, not ranked)" in text
    legacy = _cells_of_row(text, "frc1over7")
    assert len(legacy) == 4 and not any('class="best"' in cell for cell in legacy)
    for ranked in ("frc50", "ssim"):
        cells = _cells_of_row(text, ranked)
        assert [i for i, cell in enumerate(cells) if 'class="best"' in cell] == [2, 3]  # PtyChi's two


def test_report_reads_initialisation_from_the_reconstruction_file(compare_dirs, tiny_study):
    if tiny_study["ptychi"] is None:
        pytest.skip("pty-chi is not installed, so the tiny study has no reconstruction")
    text = (compare_dirs["truth"] / "report.html").read_text()
    assert "blank (ones)" in text  # this project's pty-chi runner records it
    assert "initialisation unknown" not in text


# --------------------------------------------------------------------------------------------
# Sweep report


def test_t_interval_matches_the_closed_forms():
    # Student's t quantiles have closed forms for 1 and 2 degrees of freedom:
    # nu = 1 (Cauchy): tan(pi (p - 1/2)); nu = 2: (2p - 1) sqrt(2 / (4 p (1 - p))).
    p = 0.975
    t1 = math.tan(math.pi * (p - 0.5))
    t2 = (2 * p - 1) * math.sqrt(2 / (4 * p * (1 - p)))
    low, high = t_interval([1.0, 2.0, 3.0])  # mean 2, s = 1
    assert (low, high) == pytest.approx((2 - t2 / math.sqrt(3), 2 + t2 / math.sqrt(3)), rel=1e-12)
    low, high = t_interval([0.5, 0.7])  # mean 0.6, s = sqrt(0.02)
    assert (low + high) / 2 == pytest.approx(0.6, rel=1e-12)
    assert (high - low) / 2 == pytest.approx(t1 * math.sqrt(0.02) / math.sqrt(2), rel=1e-12)
    assert t_interval([4.2]) is None


def _fake_sweep(out: Path, seeds, values) -> list[Cell]:
    """Cells whose compare step wrote a metrics CSV with known values, a provenance with a
    measured dose, and a report.html."""
    cells = [Cell(dose, seed) for dose in (1e3, 1e5) for seed in seeds]
    for cell in cells:
        directory = out / "cells" / cell.name / "compare"
        directory.mkdir(parents=True)
        value = values[(cell.dose, cell.seed)]
        write_metrics_csv([("PtyChi", "ms_ssim", value, value / 2, None), ("PtyChi", "psnr", 10 * value, 5.0, None),
                           ("PtyChi", "frc50", value, value, None)], directory / "comparison_metrics.csv")
        (directory / "provenance.json").write_text(json.dumps({"test_data": {"dose_measured": 0.9 * cell.dose + cell.seed}}))
        (directory / "report.html").write_text("<!DOCTYPE html><title>cell</title><p>cell report</p>")
    return cells


def test_sweep_report_gives_t_intervals_and_links(tmp_path):
    values = {(1e3, 0): 0.5, (1e3, 1): 0.6, (1e3, 2): 0.7, (1e5, 0): 0.9, (1e5, 1): 0.9, (1e5, 2): 0.93}
    cells = _fake_sweep(tmp_path, (0, 1, 2), values)
    written = write_sweep_report(tmp_path, cells)
    text = written["html"].read_text()
    low, high = t_interval([0.5, 0.6, 0.7])
    assert f"[{fmt(low)}, {fmt(high)}]" in text
    assert "0, 1, 2 (3)" in text
    # One table per metric, each linking every cell's report by a relative path that exists.
    assert text.count("<h3>") == 3
    links = [t for t in SRC_OR_HREF.findall(text) if t.endswith("report.html")]
    assert len(links) == 3 * len(cells) + len(cells)  # three tables and the cell list
    for link in links:
        assert not link.startswith("/") and (tmp_path / link).exists()
    # The measured dose is the x axis: mean of the seeds' measured doses.
    points = summarise([{"dose_nominal": 1e3, "dose_measured": 0.9e3 + s, "seed": s, "model": "m", "metric": "x",
                         "component": "", "value": values[(1e3, s)]} for s in (0, 1, 2)])[("x", "")]["m"]
    assert points[0].dose_measured == pytest.approx(901.0) and points[0].interval == pytest.approx((low, high))
    assert "- (1 seed)" not in text and "– (1 seed)" not in text
    for name in ("sweep_report.md", "sweep_metrics.csv", "sweep_ms_ssim.png", "sweep_frc50.png", "sweep_psnr.png"):
        assert (tmp_path / name).exists()
    assert "95 % interval" in (tmp_path / "sweep_report.md").read_text()


def test_single_seed_sweep_draws_no_interval_and_says_so(tmp_path):
    cells = _fake_sweep(tmp_path, (0,), {(1e3, 0): 0.5, (1e5, 0): 0.9})
    written = write_sweep_report(tmp_path, cells)
    text = written["html"].read_text()
    assert "– (1 seed)" in text
    assert "With one seed per dose no interval can be given, and none is drawn." in text
    assert "– (1 seed)" in (tmp_path / "sweep_report.md").read_text()


def test_sweep_plots_draw_the_constant_as_the_chance_line(tmp_path):
    """The Constant rows of every cell are the chance level: a dashed grey line in each plot,
    labelled as such, and a note in the report."""
    from compare_models.report.sweep_report import _figure

    cells = _fake_sweep(tmp_path, (0, 1), {(1e3, 0): 0.5, (1e3, 1): 0.6, (1e5, 0): 0.9, (1e5, 1): 0.8})
    for cell in cells:
        path = tmp_path / "cells" / cell.name / "compare" / "comparison_metrics.csv"
        rows = [(r["model"], r["metric"], r["amplitude"], r["phase"], r["value"]) for r in read_metrics_csv(path)]
        write_metrics_csv(rows + [("Constant", "ms_ssim", 0.3, 0.2, None)], path)
    written = write_sweep_report(tmp_path, cells)
    summaries = summarise(_sweep_rows(tmp_path))
    figure_ = _figure(summaries, "ms_ssim")
    for ax in figure_.axes:
        chance = [line for line in ax.get_lines() if line.get_label() == "Constant (chance level)"]
        assert len(chance) == 1 and chance[0].get_linestyle() == "--"
        assert chance[0].get_ydata() == pytest.approx([0.3, 0.3]) or chance[0].get_ydata() == pytest.approx([0.2, 0.2])
    assert "chance level" in written["html"].read_text()


def _sweep_rows(out: Path) -> list[dict]:
    import csv

    with (out / "sweep_metrics.csv").open() as handle:
        return [{**row, "dose_nominal": float(row["dose_nominal"]), "dose_measured": float(row["dose_measured"]),
                 "seed": int(row["seed"]), "value": float(row["value"])} for row in csv.DictReader(handle)]


# --------------------------------------------------------------------------------------------
# In a real browser


def _assert_page_renders(path: Path):
    check = check_page(path)
    assert check.console_errors == [], check.console_errors
    n_images = (path.read_text()).count("<img ")
    assert len(check.images) == n_images
    for image in check.images:
        assert image["complete"] and image["naturalWidth"] > 0, image
    page_url = path.resolve().as_uri()
    assert all(url == page_url or url.startswith("data:image/png;base64,") for url in check.requests), check.requests
    assert check.screenshot_png and not is_blank(check.screenshot_png)
    return check


@needs_chromium
def test_reports_open_in_chromium(compare_dirs, tmp_path):
    check = _assert_page_renders(compare_dirs["truth"] / "report.html")
    assert len(check.images) >= 2 and "Metrics" in check.text
    check = _assert_page_renders(compare_dirs["bare"] / "report.html")
    assert "No ground truth" in check.text
    values = {(1e3, 0): 0.5, (1e3, 1): 0.6, (1e5, 0): 0.9, (1e5, 1): 0.95}
    cells = _fake_sweep(tmp_path, (0, 1), values)
    check = _assert_page_renders(write_sweep_report(tmp_path, cells)["html"])
    assert len(check.images) == 3 and "Dose sweep report" in check.title


@needs_chromium
def test_browser_check_catches_broken_pages(tmp_path):
    broken = tmp_path / "broken.html"
    broken.write_text('<!DOCTYPE html><title>x</title><img src="missing.png"><script>console.error("boom")</script>')
    check = check_page(broken)
    assert any("boom" in e for e in check.console_errors)
    assert any("missing.png" in e for e in check.console_errors)
    assert check.images[0]["naturalWidth"] == 0
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><title>blank</title>")
    assert is_blank(check_page(blank).screenshot_png)
