"""Quiet start-up: the user's terminal and the sweep's step logs hold the tool's own lines, not
TensorFlow's start-up chatter (absl "I0000 ..." lines, oneDNN notices, CUDA probing), unless
--verbose asks for it. Every check runs a real subprocess, as a user would."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from compare_models.pipelines.startup import is_startup_noise

# What a user must not see: absl/glog lines, oneDNN notices, anything about CUDA.
FORBIDDEN = re.compile(r"I0000|[IWE]\d{4} \d\d:\d\d|oneDNN|cuda|cuInit|absl::InitializeLog", re.IGNORECASE)


def _env(**changes):
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as in a user's shell
    env.update(changes)
    return env


def _bad_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if FORBIDDEN.search(line)]


def _compare(args, env=None):
    command = [sys.executable, "-c", "from compare_models.cli import compare_main; compare_main()", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env or _env(), timeout=300)


def test_startup_noise_patterns():
    assert is_startup_noise("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR")
    assert is_startup_noise("I0000 00:00:1796121302.880050   12831 cudart_stub.cc:31] Could not find cuda drivers "
                            "on your machine, GPU will not be used.")
    assert is_startup_noise("E0000 00:00:1796121308.425505   12831 cuda_platform.cc:52] failed call to cuInit: "
                            "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)")
    assert is_startup_noise("I0000 00:00:1.2 1 cpu_feature_guard.cc:227] This TensorFlow binary is optimized")
    assert is_startup_noise("oneDNN custom operations are on. You may see slightly different numerical results")
    assert not is_startup_noise("error: --test_data x.npz: no such file")
    assert not is_startup_noise("Traceback (most recent call last):")


def test_help_prints_only_help():
    result = _compare(["--help"])
    assert result.returncode == 0
    assert result.stderr == ""
    assert "--pinn_dir" in result.stdout


def test_compare_prints_only_its_own_lines(tiny_study, tmp_path):
    out = tmp_path / "out"
    result = _compare(["--baseline_dir", tiny_study["baseline"], "--test_data", tiny_study["test"],
                       "--output_dir", out, "--skip-registration"])
    assert result.returncode == 0, result.stderr
    assert _bad_lines(result.stderr) == [] and _bad_lines(result.stdout) == []
    assert "baseline.predict_stitch" in result.stderr  # the tool's own progress lines are still there
    assert f"results: {out}" in result.stdout
    assert _bad_lines((out / "logs" / "run.log").read_text()) == []


@pytest.mark.slow  # the negative control of the test above; the sweep-step test has a fast one
def test_verbose_compare_lets_the_library_lines_through(tiny_study, tmp_path):
    result = _compare(["--baseline_dir", tiny_study["baseline"], "--test_data", tiny_study["test"],
                       "--output_dir", tmp_path / "out", "--skip-registration", "--verbose"])
    assert result.returncode == 0, result.stderr
    assert _bad_lines(result.stderr), "with --verbose, TensorFlow's start-up lines should be visible"


def _step_log(tiny_study, cell_dir, verbose: bool) -> str:
    """Run the sweep's train_baseline step the way the sweep does (its own process, stdout and
    stderr into the step log) and return the log."""
    (cell_dir / "data").mkdir(parents=True)
    shutil.copy(tiny_study["train"], cell_dir / "data" / "data_train.npz")
    request = {"step": "train_baseline", "cell_dir": str(cell_dir), "verbose": verbose,
               "settings": {"model": "baseline", "epochs": 1, "batch_size": 16, "width": 4, "depth": 2}}
    log_path = cell_dir / "logs" / "train_baseline.log"
    log_path.parent.mkdir()
    env = _env() if verbose else _env(TF_CPP_MIN_LOG_LEVEL="2")  # as run_cell builds it
    with log_path.open("w") as handle:
        completed = subprocess.run([sys.executable, "-m", "compare_models.pipelines.sweep_step", json.dumps(request)],
                                   stdout=handle, stderr=subprocess.STDOUT, env=env, timeout=300)
    text = log_path.read_text()
    assert completed.returncode == 0, text
    return text


def test_sweep_step_logs_hold_no_library_noise_unless_verbose(tiny_study, tmp_path):
    quiet = _step_log(tiny_study, tmp_path / "quiet", verbose=False)
    assert _bad_lines(quiet) == []
    assert "model          baseline" in quiet  # the step's own summary
    verbose = _step_log(tiny_study, tmp_path / "verbose", verbose=True)
    assert _bad_lines(verbose), "with verbose, the step log should keep TensorFlow's start-up lines"


@pytest.mark.parametrize("flag", [[], pytest.param(["--verbose"], marks=pytest.mark.slow)])
def test_train_command_is_quiet_unless_verbose(tiny_study, tmp_path, flag):
    command = [sys.executable, "-m", "compare_models.cli", "train", "--model", "baseline", "--train-data",
               str(tiny_study["train"]), "--out", str(tmp_path / "bundle"), "--epochs", "1", "--width", "4",
               "--depth", "2", "--no-progress", *flag]
    result = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=300)
    assert result.returncode == 0, result.stderr
    assert bool(_bad_lines(result.stderr)) == bool(flag)
    assert "bundle:" in result.stdout
