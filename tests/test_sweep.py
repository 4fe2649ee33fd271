"""Dose sweeps on tiny cells: the report, idempotence, resuming a killed cell, Parsl."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from compare_models.pipelines.sweep import Cell, SweepConfig, plan_cell, run_sweep

TINY_SECTIONS = dict(
    simulate=dict(patch_size=16, object_size=56, scan="jittered", scan_step=3, jitter=0.3),
    # region_pad 6 (N/4 = 4 by default) holds the groups each half of the scan forms (half-set FRC).
    train_pinn=dict(gridsize=2, epochs=1, batch_size=16, width=4, depth=2, region_pad=6),
    train_baseline=dict(epochs=1, batch_size=16, width=4, depth=2),
    reconstruct=dict(epochs=3),
    compare=dict(stitch_crop_size=8, register_ptychi_only=True),
)


def _config(out: Path, **changes) -> SweepConfig:
    settings = dict(doses=(1e3, 1e5), seeds=(0,), output_dir=str(out), threads_per_cell=1, **TINY_SECTIONS)
    return SweepConfig(**{**settings, **changes}).validate()


def _markers(out: Path) -> dict[str, float]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in sorted(out.glob("cells/*/.done/*.json"))}


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "sweep"
    results = run_sweep(_config(out, workers=2), echo=lambda _: None)  # two cells at once
    return out, results


def test_tiny_sweep_reports_every_cell(finished_sweep):
    out, results = finished_sweep
    assert [r["status"] for r in results] == ["done", "done"], results
    with (out / "sweep_metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["dose_nominal", "dose_measured", "seed", "model", "metric", "component", "value"]
    assert {float(r["dose_nominal"]) for r in rows} == {1e3, 1e5}
    assert {r["model"] for r in rows} == {"PtychoPINN", "Baseline", "PtyChi"}
    # The measured dose is what the test data holds, within Poisson scatter of the nominal one.
    for row in rows:
        assert float(row["dose_measured"]) == pytest.approx(float(row["dose_nominal"]), rel=0.25)
    report = (out / "sweep_report.md").read_text()
    assert "## ms_ssim (amplitude)" in report and "PtyChi" in report
    # The number of MS-SSIM scales travels with the value: rows in the CSV, a column in the report.
    scales = [r for r in rows if r["metric"] == "ms_ssim_scales"]
    assert {r["component"] for r in scales} == {"amplitude", "phase"}
    assert all(float(r["value"]).is_integer() and float(r["value"]) >= 1 for r in scales)
    section = report.split("## ms_ssim (amplitude)")[1].split("##")[0]
    assert "| scales |" in section
    used = {str(int(float(r["value"]))) for r in scales if r["component"] == "amplitude"}
    assert all(line.rstrip(" |").rsplit("| ", 1)[-1] in used for line in section.splitlines() if line.startswith("| Pty"))
    assert "Rosenthal & Henderson" in report and "not a resolution" in report
    for metric in ("ms_ssim", "frc50", "halfset_frc_halfbit", "psnr"):
        assert (out / f"sweep_{metric}.png").stat().st_size > 1000
    # sweep_report.html links every cell's compare/report.html by a relative path that exists.
    page = (out / "sweep_report.html").read_text()
    for result in results:
        link = f"cells/{result['cell']}/compare/report.html"
        assert f'href="{link}"' in page and (out / link).is_file()
    # The step logs hold the steps' own lines, not TensorFlow's start-up chatter.
    logs = sorted(out.glob("cells/*/logs/*.log"))
    assert len(logs) == 2 * 5
    noise = re.compile(r"I0000|[IWE]\d{4} \d\d:\d\d|oneDNN|cuda|cuInit|absl::InitializeLog", re.IGNORECASE)
    for log in logs:
        assert not [line for line in log.read_text().splitlines() if noise.search(line)], log
    # Every cell reports half-set resolution for every arm (pty-chi's halves are reconstructed
    # by the cell's reconstruct step), labelled apart from the numbers against ground truth.
    for dose in (1e3, 1e5):
        for metric in ("halfset_frc1over7", "halfset_frc_halfbit", "halfset_frc_1bit"):
            models = {r["model"] for r in rows if r["metric"] == metric and float(r["dose_nominal"]) == dose}
            assert models == {"PtychoPINN", "Baseline", "PtyChi"}, (dose, metric)
    assert "## halfset_frc_halfbit (amplitude)" in report and "van Heel & Schatz" in report
    for cell in ("dose_1000_seed_0", "dose_100000_seed_0"):
        assert (out / "cells" / cell / "ptychi" / "half_sets" / "ptychi_half2.npz").exists()


def test_running_again_does_nothing(finished_sweep):
    out, _ = finished_sweep
    before = _markers(out)
    results = run_sweep(_config(out), echo=lambda _: None)
    assert [r["status"] for r in results] == ["skipped", "skipped"]
    assert _markers(out) == before


def test_changed_setting_redoes_only_what_depends_on_it(finished_sweep):
    out, _ = finished_sweep
    before = _markers(out)
    changed = dict(TINY_SECTIONS["compare"], ms_ssim_sigma=1.0)  # the old blur, now opt-in
    results = run_sweep(_config(out, compare=changed), echo=lambda _: None)
    assert all(r["ran"] == ["compare"] for r in results), results
    after = _markers(out)
    assert all(after[k] == before[k] for k in before if not k.endswith("compare.json"))


def test_plan_depends_on_dose_and_seed():
    config = _config(Path("x"))
    simulate = plan_cell(Cell(1e3, 0), config)[0]
    assert simulate.settings["dose"] == 1e3 and simulate.settings["seed"] == 0
    reconstruct = next(s for s in plan_cell(Cell(1e3, 0), config) if s.name == "reconstruct")
    assert reconstruct.settings["half_sets"] is True  # the sweep runs the halves by default
    off = _config(Path("x"), reconstruct={"epochs": 3, "half_sets": False})
    assert next(s for s in plan_cell(Cell(1e3, 0), off) if s.name == "reconstruct").settings["half_sets"] is False
    assert [s.name for s in plan_cell(Cell(1e3, 0), config)] == ["simulate", "train_pinn", "train_baseline", "reconstruct", "compare"]


def test_killed_cell_is_redone_and_nothing_else(tmp_path):
    out = tmp_path / "sweep"
    config = _config(out, doses=(1e4,))
    code = (
        "import json, sys; from compare_models.pipelines.sweep import SweepConfig, run_sweep; "
        "run_sweep(SweepConfig(**json.loads(sys.argv[1])))"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, json.dumps(config.to_dict())], start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    cell_dir = out / "cells" / Cell(1e4, 0).name
    deadline = time.time() + 120
    while time.time() < deadline and not (cell_dir / ".done" / "simulate.json").exists():
        time.sleep(0.1)
    time.sleep(0.5)  # now inside train_pinn
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    simulated = (cell_dir / ".done" / "simulate.json").stat().st_mtime_ns
    assert not (cell_dir / ".done" / "compare.json").exists()

    results = run_sweep(config, echo=lambda _: None)
    assert results[0]["status"] == "done"
    assert "simulate" not in results[0]["ran"] and "compare" in results[0]["ran"]
    assert (cell_dir / ".done" / "simulate.json").stat().st_mtime_ns == simulated
    assert (cell_dir / "compare" / "comparison_metrics.csv").exists()


def test_failed_cell_is_reported_and_others_finish(tmp_path):
    out = tmp_path / "sweep"
    # Dose 1e4 is fine; the crop of 99 > N fails the compare step of every cell, which must
    # be reported per cell with its log, not raised.
    results = run_sweep(_config(out, doses=(1e4,), arms=("baseline",), compare={"stitch_crop_size": 99}), echo=lambda _: None)
    assert results[0]["status"] == "failed" and results[0]["failed_step"] == "compare"
    assert "stitch-crop-size" in Path(results[0]["log"]).read_text()


def test_parsl_executor_runs_the_tiny_sweep(tmp_path):
    pytest.importorskip("parsl")
    parsl_config = tmp_path / "parsl_threads.py"
    parsl_config.write_text(
        "from parsl.config import Config\n"
        "from parsl.executors.threads import ThreadPoolExecutor\n"
        "config = Config(executors=[ThreadPoolExecutor(max_threads=2, label='local')], run_dir={!r})\n".format(str(tmp_path / "runinfo"))
    )
    out = tmp_path / "sweep"
    config = _config(out, doses=(1e4,), arms=("baseline",), executor="parsl", parsl_config=str(parsl_config))
    results = run_sweep(config, echo=lambda _: None)
    assert [r["status"] for r in results] == ["done"], results
    assert (out / "sweep_metrics.csv").read_text().count("Baseline") > 5


def test_paper_scale_config_is_at_the_papers_scale_and_runs_through_the_cluster_executor(tmp_path):
    """configs/paper_scale.yaml: N = 64, at least 10^4 training patterns (counted from its own
    scan settings), several doses and seeds, PtychoPINN's architecture, and a sweep config that
    the cluster executor accepts."""
    import dataclasses

    import numpy as np

    from compare_models.cli import _sweep_config
    from compare_models.config import build_config
    from compare_models.models.training import TrainConfig
    from compare_models.study.simulator import SimulationConfig, make_scan

    path = Path(__file__).resolve().parents[1] / "configs" / "paper_scale.yaml"
    parsl_config = tmp_path / "parsl.py"
    parsl_config.write_text("config = None\n")
    sweep = _sweep_config(str(path), {"executor": "parsl", "parsl_config": str(parsl_config)})
    assert len(sweep.doses) >= 3 and len(sweep.seeds) >= 2 and sweep.executor == "parsl"
    simulate = SimulationConfig(**sweep.simulate).validate()
    assert simulate.patch_size == 64 and simulate.split == "objects" and simulate.train_objects != "images"
    tile = dataclasses.replace(simulate, object_size=simulate.resolved_train_object_size)
    per_object = len(make_scan(tile, np.random.default_rng(0)))
    assert per_object * simulate.n_train_objects >= 10_000
    pinn = build_config(TrainConfig, sweep.train_pinn, {"model": "pinn"})
    assert pinn.architecture == "ptychopinn" and pinn.ptychopinn_architecture(64).N == 64
    build_config(TrainConfig, sweep.train_baseline, {"model": "baseline"})
