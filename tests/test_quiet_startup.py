"""Quiet runs: the user's terminal and the sweep's step logs hold the tool's own lines, not
TensorFlow's or XLA's native log lines (absl "I0000 ..." and "E0000 ..." lines, oneDNN notices,
CUDA probing), at start-up or later in the run, unless --verbose asks for them.

Whether TensorFlow logs a line late in a run depends on the host (the oneDNN DT_INT32 line comes
only on CPUs without AVX-512), so these tests never wait for the host to log: they make the
native layer write such a line on purpose, after start-up, with a C-level write to fd 2
(libc's write through ctypes) or TensorFlow's own C++ logger.

The default tier checks the filter in small processes that do not import TensorFlow; the
real commands (a training, a comparison, a sweep step, each importing TensorFlow in its own
process) are the end-to-end tier's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

from compare_models.pipelines.startup import NativeLogFilter, is_native_log_line

# What a user must not see: absl/glog lines, oneDNN notices, anything about CUDA.
FORBIDDEN = re.compile(r"I0000|[IWE]\d{4} \d\d:\d\d|oneDNN|cuda|cuInit|absl::InitializeLog", re.IGNORECASE)

#: The line TensorFlow logs during training on CPUs without AVX-512 (after start-up).
LATE_LINE = ("E0000 00:00:1796121308.425505   12831 util.cc:131] oneDNN supports DT_INT32 only on platforms "
             "with AVX-512. Falling back to the default Eigen-based implementation if present.")

#: Python that writes LATE_LINE from C (libc's write on fd 2), as TensorFlow's logger does.
NATIVE_WRITE = textwrap.dedent(f"""
    import ctypes as _ctypes

    def write_late_line():
        line = {(LATE_LINE + chr(10)).encode()!r}
        _ctypes.CDLL(None).write(2, line, len(line))
    """)


def _env(**changes):
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as in a user's shell
    env.update(changes)
    return env


def _bad_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if FORBIDDEN.search(line)]


def _python(code: str, *args, env=None, timeout=300, **kwargs):
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          env=env or _env(), timeout=timeout, **kwargs)


def test_native_log_patterns():
    assert is_native_log_line("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR")
    assert is_native_log_line("I0000 00:00:1796121302.880050   12831 cudart_stub.cc:31] Could not find cuda drivers "
                              "on your machine, GPU will not be used.")
    assert is_native_log_line("E0000 00:00:1796121308.425505   12831 cuda_platform.cc:52] failed call to cuInit: "
                              "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)")
    assert is_native_log_line(LATE_LINE)
    assert is_native_log_line("W0000 00:00:1.2 1 x.cc:7] a warning")
    assert is_native_log_line("2024-01-02 03:04:05.678901: W tensorflow/core/x.cc:12] the older format")
    assert is_native_log_line("I0000 00:00:1.2 1 cpu_feature_guard.cc:227] This TensorFlow binary is optimized")
    assert is_native_log_line("oneDNN custom operations are on. You may see slightly different numerical results")
    # A fatal line says why the process aborts: the user sees it.
    assert not is_native_log_line("F0000 00:00:1.2 1 x.cc:7] Check failed: n > 0")
    assert not is_native_log_line("error: --test_data x.npz: no such file")
    assert not is_native_log_line("Traceback (most recent call last):")
    assert not is_native_log_line("  E0000 is not at the start of this line]")


#: A process that holds native logs back, then writes from C, from Python, and from a child.
FILTERED_PROCESS = NATIVE_WRITE + textwrap.dedent("""
    import logging, os, subprocess, sys, warnings
    from compare_models.pipelines.startup import quiet_native_logs

    quiet_native_logs(verbose=sys.argv[1] == "verbose", record_path=sys.argv[2])
    assert quiet_native_logs(verbose=sys.argv[1] == "verbose") is None  # once per process
    import ctypes
    write_late_line()                                        # C, after start-up
    os.write(2, b"I0000 00:00:1.2 1 placer.cc:162] AddV2: (AddV2): CPU:0\\n")
    ctypes.CDLL(None).write(2, b"a native line of another library\\n", 33)
    warnings.warn("a python warning")
    print("python stderr line", file=sys.stderr)
    sys.stderr.write("\\rprogress 50%")                       # a bar's partial line, no newline
    sys.stderr.write("\\rprogress 100%\\n")
    logging.error("a logged error")
    print("stdout line")
    subprocess.run([sys.executable, "-c",                   # a child inherits fd 2
                    "import os; os.write(2, b'W0000 00:00:1.2 1 x.cc:1] child noise\\\\n'); "
                    "os.write(2, b'child line\\\\n')"], check=True)
    os.write(2, b"F0000 00:00:1.2 1 x.cc:1] fatal kept\\n")
    """)

KEPT = ["a native line of another library", "UserWarning: a python warning", "python stderr line",
        "progress 50%", "progress 100%", "ERROR:root:a logged error", "child line", "F0000 00:00:1.2 1 x.cc:1] fatal kept"]


def test_late_native_lines_are_held_back_and_everything_else_kept(tmp_path):
    record = tmp_path / "native.log"
    result = _python(FILTERED_PROCESS, "quiet", record)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "stdout line\n"
    assert _bad_lines(result.stderr) == []
    for kept in KEPT:
        assert kept in result.stderr
    # The dropped lines are recorded, in order, and nothing else is.
    assert record.read_text().splitlines() == [
        LATE_LINE, "I0000 00:00:1.2 1 placer.cc:162] AddV2: (AddV2): CPU:0", "W0000 00:00:1.2 1 x.cc:1] child noise"
    ]


def test_verbose_lets_the_native_lines_through(tmp_path):
    result = _python(FILTERED_PROCESS, "verbose", tmp_path / "native.log")
    assert result.returncode == 0, result.stderr
    assert LATE_LINE in result.stderr and "child noise" in result.stderr
    for kept in KEPT:
        assert kept in result.stderr
    assert not (tmp_path / "native.log").exists()


def test_the_filter_is_removed_on_leaving_and_passes_a_crash_reason(capfd):
    with NativeLogFilter():
        os.write(2, (LATE_LINE + "\n").encode())
        os.write(2, b"kept inside\n")
    os.write(2, (LATE_LINE + "\n").encode())  # fd 2 is itself again
    err = capfd.readouterr().err
    assert err == f"kept inside\n{LATE_LINE}\n"


def test_a_command_run_in_process_leaves_the_callers_stderr_alone(monkeypatch):
    """Under a test runner or a program that runs a command in-process, sys.stderr is not fd 2:
    nothing is installed and fd 2 stays what it was."""
    import io

    from compare_models.pipelines.startup import quiet_native_logs

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    before = os.fstat(2)
    assert quiet_native_logs() is None
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)


def test_a_fatal_line_reaches_the_user_though_the_process_aborts():
    # The filter is a process of its own: it still writes what it was sent when its parent dies.
    code = NATIVE_WRITE + textwrap.dedent("""
        import os
        from compare_models.pipelines.startup import quiet_native_logs
        quiet_native_logs()
        write_late_line()
        os.write(2, b"F0000 00:00:1.2 1 x.cc:1] Check failed: the reason\\n")
        os.abort()
        """)
    result = _python(code)
    assert result.returncode != 0
    assert "Check failed: the reason" in result.stderr
    assert LATE_LINE not in result.stderr


def test_help_prints_only_help():
    result = _python("from compare_models.cli import compare_main; compare_main()", "--help")
    assert result.returncode == 0
    assert result.stderr == ""
    assert "--pinn-dir" in result.stdout


# --------------------------------------------------------------------------------------------
# End-to-end: the real commands, each importing TensorFlow in its own process.

#: Every training in the process writes LATE_LINE from C before and after it trains.
LATE_LINE_IN_TRAINING = NATIVE_WRITE + textwrap.dedent("""
    import compare_models.pipelines.train as _train

    _run_train = _train.run_train

    def _run_train_with_late_lines(*args, **kwargs):
        write_late_line()
        try:
            return _run_train(*args, **kwargs)
        finally:
            write_late_line()

    _train.run_train = _run_train_with_late_lines
    """)


@pytest.mark.e2e
def test_tensorflow_own_late_log_lines_are_held_back(tmp_path):
    # TensorFlow's C++ logger, after start-up: device placement at log level 0 logs "I0000 ...
    # placer.cc" and "execute.cc" lines to fd 2 for every op.
    code = textwrap.dedent("""
        import sys
        from compare_models.pipelines.startup import NativeLogFilter, quiet_tensorflow_startup
        quiet_tensorflow_startup()
        import tensorflow as tf
        with NativeLogFilter(record_path=sys.argv[1]):
            tf.debugging.set_log_device_placement(True)
            tf.constant([1.0]) + 1.0
        """)
    record = tmp_path / "native.log"
    result = _python(code, record, env=_env(TF_CPP_MIN_LOG_LEVEL="0"))
    assert result.returncode == 0, result.stderr
    assert _bad_lines(result.stderr) == []
    assert "execute.cc" in record.read_text()  # TensorFlow did log, and the filter held it back


@pytest.mark.e2e
@pytest.mark.parametrize("flag", [[], ["--verbose"]])
def test_train_command_is_quiet_unless_verbose(tiny_study, tmp_path, flag):
    code = LATE_LINE_IN_TRAINING + "from compare_models.cli import study_main; study_main()"
    result = _python(code, "train", "--model", "baseline", "--train-data", tiny_study["train"],
                     "--out", tmp_path / "bundle", "--epochs", "1", "--width", "4", "--depth", "2", "--no-progress",
                     *flag)
    assert result.returncode == 0, result.stderr
    if flag:
        assert result.stderr.count(LATE_LINE) == 2, "with --verbose, the native lines should be visible"
    else:
        assert _bad_lines(result.stderr) == []
    assert "bundle:" in result.stdout


@pytest.mark.e2e
def test_compare_prints_only_its_own_lines(tiny_study, tmp_path):
    out = tmp_path / "out"
    result = _python("from compare_models.cli import compare_main; compare_main()",
                     "--baseline_dir", tiny_study["baseline"], "--test_data", tiny_study["test"],
                     "--output_dir", out, "--skip-registration")
    assert result.returncode == 0, result.stderr
    assert _bad_lines(result.stderr) == [] and _bad_lines(result.stdout) == []
    assert "baseline.predict_stitch" in result.stderr  # the tool's own progress lines are still there
    assert f"results: {out}" in result.stdout
    assert _bad_lines((out / "logs" / "run.log").read_text()) == []


@pytest.mark.slow  # the negative control of the test above; the other checks have fast ones
def test_verbose_compare_lets_the_library_lines_through(tiny_study, tmp_path):
    result = _python("from compare_models.cli import compare_main; compare_main()",
                     "--baseline_dir", tiny_study["baseline"], "--test_data", tiny_study["test"],
                     "--output_dir", tmp_path / "out", "--skip-registration", "--verbose")
    assert result.returncode == 0, result.stderr
    assert _bad_lines(result.stderr), "with --verbose, TensorFlow's start-up lines should be visible"


def _step_log(tiny_study, cell_dir, verbose: bool) -> str:
    """Run the sweep's train_baseline step the way the sweep does (its own process, stdout and
    stderr into the step log), with a late native line during training, and return the log."""
    (cell_dir / "data").mkdir(parents=True)
    shutil.copy(tiny_study["train"], cell_dir / "data" / "data_train.npz")
    request = {"step": "train_baseline", "cell_dir": str(cell_dir), "verbose": verbose,
               "settings": {"model": "baseline", "epochs": 1, "batch_size": 16, "width": 4, "depth": 2}}
    log_path = cell_dir / "logs" / "train_baseline.log"
    log_path.parent.mkdir()
    env = _env() if verbose else _env(TF_CPP_MIN_LOG_LEVEL="2")  # as run_cell builds it
    code = LATE_LINE_IN_TRAINING + "import sys\nfrom compare_models.pipelines.sweep_step import main\nmain(sys.argv[1:])"
    with log_path.open("w") as handle:
        completed = subprocess.run([sys.executable, "-c", code, json.dumps(request)],
                                   stdout=handle, stderr=subprocess.STDOUT, env=env, timeout=300)
    text = log_path.read_text()
    assert completed.returncode == 0, text
    return text


@pytest.mark.e2e
def test_sweep_step_logs_hold_no_library_noise_unless_verbose(tiny_study, tmp_path):
    quiet = _step_log(tiny_study, tmp_path / "quiet", verbose=False)
    assert _bad_lines(quiet) == []
    assert "model          baseline" in quiet  # the step's own summary
    verbose = _step_log(tiny_study, tmp_path / "verbose", verbose=True)
    assert verbose.count(LATE_LINE) == 2, "with verbose, the step log should keep the native lines"
