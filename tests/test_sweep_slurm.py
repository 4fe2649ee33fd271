"""The sweep's Slurm executor against a real Slurm: one node on this machine, started by the
session fixture below (tests/slurm_local.py), skipped with the reason where it cannot start.

Cells run the stand-in steps (through the scripted runner of tests/sweep_runners.py, which can
hold a step so that its job is cancelled or runs out of time mid-step), so what is tested is
the scheduling: Parsl's HighThroughputExecutor with its SlurmProvider submitting the cells as
jobs, the records of where they ran, and what the sweep says when a job ends under a cell.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from slurm_local import SlurmUnavailable, start_local_slurm, stop_local_slurm
from sweep_runners import RUNNER, write_script

from compare_models.pipelines.sweep import CELL_RECORD, Cell, SweepConfig, run_sweep

pytest.importorskip("parsl")

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
CELLS = (Cell(1e3, 0), Cell(1e5, 0))


@pytest.fixture(scope="session")
def local_slurm(tmp_path_factory):
    """A running one-node Slurm; its ``SLURM_CONF`` in the environment for the session."""
    try:
        slurm = start_local_slurm(tmp_path_factory.mktemp("slurm"))
    except SlurmUnavailable as exc:
        pytest.skip(f"no local Slurm: {exc}")
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in slurm.env.items():
                patch.setenv(name, value)
            yield slurm
    finally:
        stop_local_slurm(slurm)


def _cluster(slurm, **changes) -> dict:
    """Cluster settings for the local Slurm: one worker per job, two jobs at once, workers that
    find this checkout and its tests, a lost worker noticed within seconds."""
    paths = os.pathsep.join([str(REPO), str(TESTS), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])
    return {
        "partition": slurm.partition,
        "account": "none",
        "walltime": "00:10:00",
        "max_jobs": 2,
        "workers_per_node": 1,
        "exclusive": False,  # two one-CPU jobs share the node
        "heartbeat_period_s": 2,
        "heartbeat_threshold_s": 6,
        "setup": [f"export PATH={Path(sys.executable).parent}:$PATH", f"export PYTHONPATH={paths}"],
        **changes,
    }


def _settings(out: Path, slurm, **changes) -> dict:
    return {"doses": [c.dose for c in CELLS], "seeds": [0], "output_dir": str(out), "executor": "slurm",
            "step_runner": RUNNER, "cluster": _cluster(slurm), **changes}


def _status(out: Path) -> dict[str, dict]:
    return {r["cell"]: r for r in json.loads((out / "sweep_status.json").read_text())}


def _scheduler_knows(job_id: str) -> bool:
    return subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, check=False).returncode == 0


@pytest.mark.e2e  # a sweep through a real Slurm's jobs
def test_slurm_sweep_gives_the_local_executors_metrics_and_says_where_each_cell_ran(local_slurm, tmp_path):
    slurm_out, local_out = tmp_path / "slurm", tmp_path / "local"
    results = run_sweep(SweepConfig(**_settings(slurm_out, local_slurm)), echo=lambda _: None)
    run_sweep(SweepConfig(**_settings(local_out, local_slurm, executor="process")), echo=lambda _: None)
    assert [r["status"] for r in results] == ["done", "done"], results
    assert (slurm_out / "sweep_metrics.csv").read_text() == (local_out / "sweep_metrics.csv").read_text()
    for result in results:
        record = json.loads((slurm_out / "cells" / result["cell"] / CELL_RECORD).read_text())
        for where in (result, _status(slurm_out)[result["cell"]], record):
            assert (where["executor"], where["node"]) == ("slurm", local_slurm.node)
            assert where["queue_wait_s"] >= 0
            assert _scheduler_knows(where["job_id"]), where
        marker = json.loads((slurm_out / "cells" / result["cell"] / ".done" / "compare.json").read_text())
        assert marker["job_id"] == result["job_id"]


def _start_sweep(settings: dict, tmp_path: Path, *extra: str) -> subprocess.Popen:
    config = tmp_path / "sweep.yaml"
    config.write_text(json.dumps({"sweep": settings}))  # JSON is YAML
    env = {**os.environ, "PYTHONPATH": _cluster_pythonpath()}
    return subprocess.Popen([sys.executable, "-m", "compare_models.cli", "sweep", "--config", str(config), *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)


def _cluster_pythonpath() -> str:
    return os.pathsep.join([str(REPO), str(TESTS), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])


def _wait_for_step(out: Path, cell: Cell, step: str, timeout_s: float = 180) -> dict:
    """The cell's record once it runs ``step`` in a job."""
    path = out / "cells" / cell.name / CELL_RECORD
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            record = {}
        if record.get("running_step") == step and record.get("job_id"):
            return record
        time.sleep(0.5)
    raise AssertionError(f"{cell.name} did not reach {step} in {timeout_s} s")


@pytest.mark.e2e  # a sweep through a real Slurm's jobs
def test_cancelled_cell_is_reported_with_the_schedulers_reason_and_resume_redoes_only_it(local_slurm, tmp_path):
    out = tmp_path / "sweep"
    held, other = CELLS
    write_script(out, hold=[{"cell": held.name, "step": "train_pinn", "seconds": 600}])
    sweep = _start_sweep(_settings(out, local_slurm), tmp_path)
    try:
        record = _wait_for_step(out, held, "train_pinn")
        subprocess.run(["scancel", record["job_id"]], check=True)
        output, _ = sweep.communicate(timeout=180)
    finally:
        sweep.kill()
    assert sweep.returncode == 1, output
    status = _status(out)
    failed = status[held.name]
    assert (failed["status"], failed["failed_step"], failed["job_id"]) == ("failed", "train_pinn", record["job_id"])
    assert f"Slurm job {record['job_id']}" in failed["reason"] and "CANCELLED" in failed["reason"]
    assert not failed["over_walltime"]
    assert f"FAILED at train_pinn [slurm job {record['job_id']}" in output
    assert status[other.name]["status"] == "done"
    kept = {p: p.stat().st_mtime_ns for p in out.glob("cells/*/.done/*.json")}

    write_script(out)  # nothing held now
    resume = subprocess.run([sys.executable, "-m", "compare_models.cli", "sweep", "--resume", "--out", str(out)],
                            env={**os.environ, "PYTHONPATH": _cluster_pythonpath()}, capture_output=True, text=True,
                            timeout=300, check=False)
    assert resume.returncode == 0, resume.stdout + resume.stderr
    status = _status(out)
    assert status[held.name]["ran"] == ["train_pinn", "train_baseline", "reconstruct", "compare"]
    assert status[held.name]["executor"] == "slurm" and status[held.name]["job_id"] != record["job_id"]
    assert status[other.name]["status"] == "skipped" and status[other.name]["job_id"] is None  # not submitted
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())  # nothing done before was redone


def test_unknown_partition_is_refused_before_any_cell(local_slurm, tmp_path):
    out = tmp_path / "sweep"
    sweep = _start_sweep(_settings(out, local_slurm, cluster=_cluster(local_slurm, partition="nosuchpartition")), tmp_path)
    output, _ = sweep.communicate(timeout=120)
    assert sweep.returncode == 2, output
    (line,) = output.strip().splitlines()
    assert "sweep.cluster.partition" in line and "nosuchpartition" in line and "sinfo -s" in line
    assert not out.exists()


@pytest.mark.e2e  # waits for Slurm's clock: a one-minute limit, enforced within half a minute
def test_job_over_its_walltime_is_reported_as_such(local_slurm, tmp_path):
    out = tmp_path / "sweep"
    cell = CELLS[0]
    write_script(out, hold=[{"cell": cell.name, "step": "reconstruct", "seconds": 600}])
    settings = _settings(out, local_slurm, doses=[cell.dose], cluster=_cluster(local_slurm, walltime="00:01:00"))
    results = run_sweep(SweepConfig(**settings), echo=lambda _: None)
    (result,) = results
    assert (result["status"], result["failed_step"]) == ("failed", "reconstruct")
    assert result["over_walltime"], result
    assert "TIME LIMIT" in result["reason"] and "over its walltime (00:01:00)" in result["reason"]
    record = json.loads((out / "cells" / cell.name / CELL_RECORD).read_text())
    assert record["status"] == "failed" and record["over_walltime"]
