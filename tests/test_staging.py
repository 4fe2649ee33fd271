"""The staged output directory: leftovers of killed runs are removed, live runs' never."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from compare_models.cli import compare_main
from compare_models.report.staging import (
    OWNER_FILE,
    StagedOutput,
    owner_alive,
    remove_stale_staging,
)


def _dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _leftover(parent, name, pid, record=None, kind="partial"):
    token = f"{len(list(parent.iterdir())):08x}"  # distinct per call
    path = parent / f".{name}.{kind}-{pid}-{token}"
    (path / "logs").mkdir(parents=True)
    if record is not None:
        (path / OWNER_FILE).write_text(json.dumps(record))
    return path


@pytest.mark.e2e
def test_compare_killed_by_sigkill_is_cleaned_up_by_the_next_run(tiny_study, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-c", "from compare_models.cli import compare_main; compare_main()",
               "--baseline_dir", str(tiny_study["baseline"]), "--test_data", str(tiny_study["test"]),
               "--output_dir", str(out), "--skip-registration", "--quiet"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not list(tmp_path.glob(".out.partial-*/OWNER")):
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    leftovers = list(tmp_path.glob(".out.partial-*"))
    assert len(leftovers) == 1 and not out.exists()  # SIGKILL cannot be caught: this is what it leaves
    assert leftovers[0].name.startswith(f".out.partial-{process.pid}-")
    assert json.loads((leftovers[0] / OWNER_FILE).read_text())["pid"] == process.pid

    result = CliRunner().invoke(compare_main, ["--baseline_dir", str(tiny_study["baseline"]), "--test_data",
                                               str(tiny_study["test"]), "--output_dir", str(out), "--skip-registration", "--quiet"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert not list(tmp_path.glob(".out.*"))
    assert (out / "metrics.json").exists() and not (out / OWNER_FILE).exists()
    assert f"removed {leftovers[0].name}" in (out / "logs" / "run.log").read_text()


def test_a_live_runs_staging_directory_is_never_removed(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        from compare_models.report.staging import _owner_record

        record = dict(_owner_record(), pid=sleeper.pid)
        record["start_ticks"] = _start_ticks(sleeper.pid)
        live = _leftover(tmp_path, "out", sleeper.pid, record)
        live_no_owner_file = _leftover(tmp_path, "out", sleeper.pid, kind="old")
        dead = _leftover(tmp_path, "out", _dead_pid(), dict(record, pid=0))
        reused = _leftover(tmp_path, "out", sleeper.pid, dict(record, start_ticks=(record["start_ticks"] or 0) + 1))
        elsewhere = _leftover(tmp_path, "out", _dead_pid(), dict(record, host="another-node"))
        unnamed = tmp_path / ".out.partial-0123abcd"  # no pid: cannot be attributed
        unnamed.mkdir()
        other_target = _leftover(tmp_path, "other", _dead_pid(), record)
        assert owner_alive(live) and owner_alive(live_no_owner_file)
        assert not owner_alive(dead)
        assert not owner_alive(reused) or _start_ticks(sleeper.pid) is None
        with StagedOutput(tmp_path / "out") as staged:
            (staged.path / "x.txt").write_text("done")
        assert (tmp_path / "out" / "x.txt").exists()
        assert live.exists() and live_no_owner_file.exists() and elsewhere.exists() and unnamed.exists()
        assert other_target.exists()  # another target's leftovers are that target's business
        assert not dead.exists()
        if _start_ticks(sleeper.pid) is not None:
            assert not reused.exists()  # the pid was reused by a process that started later
    finally:
        sleeper.kill()
        sleeper.wait()
    # Once the owner has exited, its directories go; the unattributable ones stay.
    assert set(remove_stale_staging(tmp_path / "out")) == {live, live_no_owner_file}
    assert elsewhere.exists() and unnamed.exists()


def test_a_zombie_owner_counts_as_dead(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.time() + 10
    while time.time() < deadline and _state(child.pid) != "Z":
        time.sleep(0.01)
    if _state(child.pid) != "Z":
        child.wait()
        pytest.skip("no /proc here: zombies cannot be told from live processes")
    try:
        leftover = _leftover(tmp_path, "out", child.pid)
        assert not owner_alive(leftover)
    finally:
        child.wait()


def _start_ticks(pid):
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2:].split()[19])


def _state(pid):
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()[0]


def test_this_process_owns_its_own_staging_directory(tmp_path):
    with StagedOutput(tmp_path / "out") as staged:
        assert staged.path.name.startswith(f".out.partial-{os.getpid()}-")
        assert owner_alive(staged.path)
        assert remove_stale_staging(tmp_path / "out") == []
        assert staged.path.exists()
