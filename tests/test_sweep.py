"""Dose sweeps: the report, idempotence, resuming a killed cell, failures, Parsl, the records.

The plumbing is tested with the stand-in step runner (``step_runner: stand-in``), which writes
small deterministic outputs in milliseconds; the real step runner is tested here on one step
(its own process, its log, its exit status) and on a whole tiny sweep in the end-to-end tier
(``-m e2e``). The Slurm executor's tests, against a Slurm that they start, are in
test_sweep_slurm.py.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from sweep_runners import RUNNER, write_script

from compare_models.cli import study_main
from compare_models.errors import ConfigError
from compare_models.pipelines.sweep import (
    CELL_RECORD,
    Cell,
    StepRequest,
    SweepConfig,
    plan_cell,
    run_step_in_subprocess,
    run_sweep,
)

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent

TINY_SECTIONS = dict(
    simulate=dict(patch_size=16, object_size=56, scan="jittered", scan_step=3, jitter=0.3),
    # region_pad 6 (N/4 = 4 by default) holds the groups each half of the scan forms (half-set FRC).
    train_pinn=dict(gridsize=2, epochs=1, batch_size=16, width=4, depth=2, region_pad=6),
    train_baseline=dict(epochs=1, batch_size=16, width=4, depth=2),
    reconstruct=dict(epochs=3),
    compare=dict(stitch_crop_size=8, register_ptychi_only=True),
)
STEPS = ["simulate", "train_pinn", "train_baseline", "reconstruct", "compare"]


def _config(out: Path, **changes) -> SweepConfig:
    settings = dict(doses=(1e3, 1e5), seeds=(0,), output_dir=str(out), threads_per_cell=1, step_runner="stand-in",
                    **TINY_SECTIONS)
    return SweepConfig(**{**settings, **changes}).validate()


def _quiet(_line) -> None:
    pass


def _markers(out: Path) -> dict[str, float]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in sorted(out.glob("cells/*/.done/*.json"))}


def _assert_figures_and_cell_links(out: Path, results) -> None:
    """The sweep's figures are drawn, and sweep_report.html links every cell's
    compare/report.html by a relative path that exists."""
    for metric in ("ms_ssim", "frc50", "halfset_frc_halfbit", "psnr"):
        assert (out / f"sweep_{metric}.png").stat().st_size > 1000
    page = (out / "sweep_report.html").read_text()
    for result in results:
        link = f"cells/{result['cell']}/compare/report.html"
        assert f'href="{link}"' in page and (out / link).is_file()


def _status(out: Path) -> dict[str, dict]:
    return {r["cell"]: r for r in json.loads((out / "sweep_status.json").read_text())}


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "sweep"
    results = run_sweep(_config(out, workers=2), echo=_quiet)  # two cells at once, process pool
    return out, results


def test_sweep_reports_every_cell(finished_sweep):
    out, results = finished_sweep
    assert [r["status"] for r in results] == ["done", "done"], results
    assert all(r["ran"] == STEPS for r in results)
    with (out / "sweep_metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["dose_nominal", "dose_measured", "seed", "model", "metric", "component", "value"]
    assert {float(r["dose_nominal"]) for r in rows} == {1e3, 1e5}
    assert {r["model"] for r in rows} == {"PtychoPINN", "Baseline", "PtyChi"}
    # The measured dose is what the (stand-in) test data hold, within Poisson scatter of the nominal one.
    for row in rows:
        assert float(row["dose_measured"]) == pytest.approx(float(row["dose_nominal"]), rel=0.25)
    report = (out / "sweep_report.md").read_text()
    assert "## ms_ssim (amplitude)" in report and "PtyChi" in report
    _assert_figures_and_cell_links(out, results)
    assert len(list(out.glob("cells/*/logs/*.log"))) == 2 * 5


def test_each_cell_records_where_it_ran_and_its_wait(finished_sweep):
    out, results = finished_sweep
    status = _status(out)
    for result in results:
        record = json.loads((out / "cells" / result["cell"] / CELL_RECORD).read_text())
        for where in (status[result["cell"]], record):
            assert where["executor"] == "process"
            assert where["node"] == socket.gethostname()
            assert where["job_id"] == (os.environ.get("SLURM_JOB_ID") or os.environ.get("PBS_JOBID"))
            assert where["queue_wait_s"] >= 0
        assert record["status"] == "done" and record["step_runner"] == "stand-in"
        assert [s["step"] for s in record["steps"] if s["ran"]] == STEPS
        # The wait is the time from submission to the start on the worker, by the two stamps.
        from datetime import datetime

        waited = datetime.fromisoformat(record["started_at"]) - datetime.fromisoformat(record["submitted_at"])
        assert record["queue_wait_s"] == pytest.approx(waited.total_seconds(), abs=2e-3)
        marker = json.loads((out / "cells" / result["cell"] / ".done" / "compare.json").read_text())
        assert (marker["executor"], marker["node"], marker["runner"]) == ("process", socket.gethostname(), "stand-in")


def test_running_again_does_nothing(finished_sweep):
    out, _ = finished_sweep
    before = _markers(out)
    records = {p: p.stat().st_mtime_ns for p in out.glob(f"cells/*/{CELL_RECORD}")}
    results = run_sweep(_config(out), echo=_quiet)
    assert [r["status"] for r in results] == ["skipped", "skipped"]
    assert all(r["executor"] is None for r in results)  # nothing submitted
    assert _markers(out) == before
    # The cells' records still describe the run that made their outputs.
    assert {p: p.stat().st_mtime_ns for p in records} == records


def test_changed_setting_redoes_only_what_depends_on_it(finished_sweep):
    out, _ = finished_sweep
    before = _markers(out)
    changed = dict(TINY_SECTIONS["compare"], ms_ssim_sigma=1.0)  # the old blur, now opt-in
    results = run_sweep(_config(out, compare=changed), echo=_quiet)
    assert all(r["ran"] == ["compare"] for r in results), results
    after = _markers(out)
    assert all(after[k] == before[k] for k in before if not k.endswith("compare.json"))


def test_stand_in_outputs_never_pass_for_real_ones(finished_sweep, tmp_path):
    out, _ = finished_sweep
    # Another runner's hashes differ: over stand-in outputs, every step is redone.
    copy = tmp_path / "copy"
    run_sweep(_config(copy, doses=(1e3,)), echo=_quiet)
    results = run_sweep(_config(copy, doses=(1e3,), step_runner=RUNNER), echo=_quiet)
    assert results[0]["ran"] == STEPS
    # A dry run refuses an output directory that holds real results.
    marker = next(copy.glob("cells/*/.done/simulate.json"))
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "runner": "subprocess"}))
    with pytest.raises(ConfigError, match="another --out"):
        run_sweep(_config(copy, doses=(1e3,)), echo=_quiet)


def test_plan_depends_on_dose_and_seed():
    config = _config(Path("x"))
    simulate = plan_cell(Cell(1e3, 0), config)[0]
    assert simulate.settings["dose"] == 1e3 and simulate.settings["seed"] == 0
    reconstruct = next(s for s in plan_cell(Cell(1e3, 0), config) if s.name == "reconstruct")
    assert reconstruct.settings["half_sets"] is True  # the sweep runs the halves by default
    off = _config(Path("x"), reconstruct={"epochs": 3, "half_sets": False})
    assert next(s for s in plan_cell(Cell(1e3, 0), off) if s.name == "reconstruct").settings["half_sets"] is False
    assert [s.name for s in plan_cell(Cell(1e3, 0), config)] == STEPS


def _env_with_tests_on_path() -> dict:
    paths = [str(REPO), str(TESTS), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def test_killed_cell_is_redone_and_nothing_else(tmp_path):
    out = tmp_path / "sweep"
    config = _config(out, doses=(1e4,), step_runner=RUNNER)
    cell = Cell(1e4, 0)
    write_script(out, hold=[{"cell": cell.name, "step": "train_pinn", "seconds": 300}])
    code = (
        "import json, sys; from compare_models.pipelines.sweep import SweepConfig, run_sweep; "
        "run_sweep(SweepConfig(**json.loads(sys.argv[1])))"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, json.dumps(config.to_dict())], start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env_with_tests_on_path(),
    )
    cell_dir = out / "cells" / cell.name
    deadline = time.time() + 120
    while time.time() < deadline and not (cell_dir / "logs" / "train_pinn.log").exists():
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)  # the sweep and its worker, inside train_pinn
    process.wait(timeout=30)
    simulated = (cell_dir / ".done" / "simulate.json").stat().st_mtime_ns
    assert not (cell_dir / ".done" / "train_pinn.json").exists()

    write_script(out)  # no more holding
    results = run_sweep(config, echo=_quiet)
    assert results[0]["status"] == "done"
    assert results[0]["ran"] == STEPS[1:]
    assert (cell_dir / ".done" / "simulate.json").stat().st_mtime_ns == simulated
    assert (cell_dir / "compare" / "comparison_metrics.csv").exists()


def test_failed_cell_is_reported_and_others_finish(tmp_path):
    out = tmp_path / "sweep"
    write_script(out, fail=[{"cell": Cell(1e3, 0).name, "step": "compare", "message": "stitch-crop-size 99 > N"}])
    settings = {"sweep": {"doses": [1000, 100000], "seeds": [0], "step_runner": RUNNER, "output_dir": str(out)}}
    config = tmp_path / "sweep.yaml"
    config.write_text(json.dumps(settings))  # JSON is YAML
    result = CliRunner().invoke(study_main, ["sweep", "--config", str(config)])
    assert result.exit_code == 1, result.output
    assert "1 of 2 cells failed" in result.output and f"--resume --out {out}" in result.output
    status = _status(out)
    failed, done = status[Cell(1e3, 0).name], status[Cell(1e5, 0).name]
    assert (failed["status"], failed["failed_step"]) == ("failed", "compare")
    assert "stitch-crop-size" in Path(failed["log"]).read_text()
    assert "status 3" in failed["reason"] and failed["log"] in failed["reason"]
    assert done["status"] == "done"
    with (out / "sweep_metrics.csv").open() as handle:
        assert {float(r["dose_nominal"]) for r in csv.DictReader(handle)} == {1e5}
    # --resume redoes the failed cell with the recorded settings, and only it; a --config
    # given with it replaces recorded settings (here the process pool's workers).
    write_script(out)
    more = tmp_path / "more.yaml"
    more.write_text("sweep:\n  workers: 2\n")
    result = CliRunner().invoke(study_main, ["sweep", "--resume", "--out", str(out), "--config", str(more)])
    assert result.exit_code == 0, result.output
    status = _status(out)
    assert status[Cell(1e3, 0).name]["ran"] == ["compare"]
    assert status[Cell(1e5, 0).name]["status"] == "skipped"
    recorded = json.loads((out / "sweep_config.json").read_text())
    assert (recorded["step_runner"], recorded["doses"], recorded["workers"]) == (RUNNER, [1000, 100000], 2)


def test_a_cell_without_an_arm_is_named_and_the_sweep_exits_3(tmp_path):
    """A cell whose comparison finished without an arm is not a failed cell (its other arms have
    numbers), but it is not silently 'done' either: the cell's line, sweep_status.json, both
    reports and the exit status (3, as compare-models') say which arm is missing and why, also
    when a later run finds the cell finished."""
    out = tmp_path / "sweep"
    lacking = Cell(1e3, 0).name
    write_script(out, fail_arm=[{"cell": lacking, "arm": "Baseline", "reason": "baseline_model.h5 has N = 64"}])
    settings = {"sweep": {"doses": [1000, 100000], "seeds": [0], "step_runner": RUNNER, "output_dir": str(out)}}
    config = tmp_path / "sweep.yaml"
    config.write_text(json.dumps(settings))
    for _ in range(2):  # the first run makes the cells; the second finds them finished
        result = CliRunner().invoke(study_main, ["sweep", "--config", str(config)])
        assert result.exit_code == 3, result.output
        assert "1 of 2 cells finished without some arms" in result.output
        assert f"cell {lacking}: " in result.output and "WITHOUT Baseline (making the image failed: baseline_model.h5 has N = 64)" in result.output
        status = _status(out)
        assert status[lacking]["failed_arms"] == {"Baseline": ["making the image failed: baseline_model.h5 has N = 64"]}
        assert status[Cell(1e5, 0).name]["failed_arms"] == {}
    assert [r["status"] for r in _status(out).values()] == ["skipped", "skipped"]
    report = (out / "sweep_report.md").read_text()
    assert "## Arms without numbers" in report and f"- {lacking}: Baseline: making the image failed" in report
    assert "arms without numbers" in (out / "sweep_report.html").read_text()


def test_resume_needs_a_recorded_sweep(tmp_path):
    runner = CliRunner()
    result = runner.invoke(study_main, ["sweep", "--resume", "--out", str(tmp_path / "none")])
    assert result.exit_code == 2 and "sweep_config.json is missing" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_later_config_files_replace_earlier_keys(tmp_path):
    from compare_models.cli import _sweep_config

    study, site = tmp_path / "study.yaml", tmp_path / "site.yaml"
    study.write_text("sweep:\n  doses: [1000]\n  cluster: {account: a, walltime: '01:00:00'}\ncompare:\n  stitch_crop_size: 8\n")
    site.write_text("sweep:\n  executor: slurm\n  cluster: {account: b}\ncompare:\n  ms_ssim_sigma: 1.0\n")
    config = _sweep_config((study, site), {"doses": None})
    assert config.executor == "slurm" and config.doses == (1000.0,)
    assert config.cluster == {"account": "b", "walltime": "01:00:00"}
    assert config.compare == {"stitch_crop_size": 8, "ms_ssim_sigma": 1.0}


def test_parsl_executor_gives_the_same_metrics(finished_sweep, tmp_path):
    pytest.importorskip("parsl")
    parsl_config = tmp_path / "parsl_threads.py"
    parsl_config.write_text(
        "from parsl.config import Config\n"
        "from parsl.executors.threads import ThreadPoolExecutor\n"
        "config = Config(executors=[ThreadPoolExecutor(max_threads=2, label='local')], run_dir={!r})\n".format(str(tmp_path / "runinfo"))
    )
    reference, _ = finished_sweep
    out = tmp_path / "sweep"
    results = run_sweep(_config(out, executor="parsl", parsl_config=str(parsl_config)), echo=_quiet)
    assert [(r["status"], r["executor"]) for r in results] == [("done", "parsl")] * 2, results
    assert (out / "sweep_metrics.csv").read_text() == (reference / "sweep_metrics.csv").read_text()


def test_real_step_runner_runs_a_step_in_its_own_process(tmp_path):
    cell_dir = tmp_path / "cells" / Cell(1e4, 0).name
    settings = {**TINY_SECTIONS["simulate"], "dose": 1e4, "seed": 0, "train_object_size": 40}
    log = cell_dir / "logs" / "simulate.log"
    log.parent.mkdir(parents=True)
    assert run_step_in_subprocess(StepRequest("simulate", settings, str(cell_dir), str(log), threads=1)) == 0
    assert (cell_dir / "data" / "data_train.npz").is_file() and (cell_dir / "data" / "data_test.npz").is_file()
    assert "test:" in log.read_text()
    # A failing step: its exit status, and the error in its log.
    bad = {**settings, "scan_stepp": 3}
    assert run_step_in_subprocess(StepRequest("simulate", bad, str(cell_dir), str(log))) != 0
    assert "scan_stepp" in log.read_text()


@pytest.mark.e2e
def test_tiny_real_sweep_reports_every_cell(tmp_path):
    out = tmp_path / "sweep"
    results = run_sweep(_config(out, workers=2, step_runner="subprocess"), echo=_quiet)  # two cells at once
    assert [r["status"] for r in results] == ["done", "done"], results
    with (out / "sweep_metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {float(r["dose_nominal"]) for r in rows} == {1e3, 1e5}
    assert {r["model"] for r in rows} == {"PtychoPINN", "Baseline", "PtyChi", "Constant"}  # Constant: chance
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
    # Each name in the tables is said to stand for what it is.
    assert "- PtychoPINN = compare-models PINN" in report and "- Baseline = compare-models baseline" in report
    _assert_figures_and_cell_links(out, results)
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
    # A real sweep's records say where each cell ran, like the stand-in's.
    assert all(r["executor"] == "process" and r["queue_wait_s"] >= 0 for r in results)


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
    sweep = _sweep_config([str(path)], {"executor": "parsl", "parsl_config": str(parsl_config)})
    assert len(sweep.doses) >= 3 and len(sweep.seeds) >= 2 and sweep.executor == "parsl"
    simulate = SimulationConfig(**sweep.simulate).validate()
    assert simulate.patch_size == 64 and simulate.split == "objects" and simulate.train_objects != "images"
    tile = dataclasses.replace(simulate, object_size=simulate.resolved_train_object_size)
    per_object = len(make_scan(tile, np.random.default_rng(0)))
    assert per_object * simulate.n_train_objects >= 10_000
    pinn = build_config(TrainConfig, sweep.train_pinn, {"model": "pinn"})
    assert pinn.architecture == "ptychopinn" and pinn.ptychopinn_architecture(64).N == 64
    build_config(TrainConfig, sweep.train_baseline, {"model": "baseline"})
