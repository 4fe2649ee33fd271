"""Quiet runs: TensorFlow's and XLA's native log lines stay off the user's terminal and out of
the step logs for the whole run, unless ``--verbose``.

TensorFlow, XLA and absl write from C++ straight to file descriptor 2, at import ("WARNING: All
log messages before absl::InitializeLog() is called are written to STDERR", ``I0000 ...
cudart_stub.cc:31] Could not find cuda drivers``, CPU-feature and oneDNN notices, ``E0000 ...
failed call to cuInit``) and later, during training or inference, at any level (``E0000 ...
util.cc:131] oneDNN supports DT_INT32 only on platforms with AVX-512``, logged on CPUs without
it). ``TF_CPP_MIN_LOG_LEVEL`` cannot hold them all back: absl writes before TensorFlow reads it,
and errors pass any level that lets real errors through. So an entry point (a CLI command, a
sweep step's process) calls :func:`quiet_native_logs` once, before anything imports
TensorFlow, and for the rest of the process:

1. fd 2 is a pipe read by a small filter process (this file run as a script, standard library
   only): it drops the lines :func:`is_native_log_line` recognises (absl/glog lines at levels
   I, W and E and TensorFlow's known start-up notices) and writes every other line to the
   real stderr. Lines of other native code, of child processes that inherit fd 2 and of
   loggers made before the call still reach the user, whole lines at a time. A fatal
   (``F``-level) line is kept: the process is about to abort and the line says why; because
   the filter is a process of its own, it still writes that line after its parent died.
2. Python's ``sys.stderr`` (warnings, tracebacks, tqdm's progress bars, log records) writes
   to the real stderr directly, not through the filter: nothing of the tool's own is delayed,
   reordered or dropped.
3. At exit fd 2 and ``sys.stderr`` are restored and the filter is given a moment to write
   its last lines.

``--verbose`` does none of this and lets every line through. Nothing here runs as a side
effect of a library call: only the process entry points call it, once.
"""

from __future__ import annotations

import os
import re
import sys

__all__ = ["quiet_native_logs", "quiet_tensorflow_startup", "is_native_log_line", "NativeLogFilter", "NOISE"]

# Lines TensorFlow/XLA/absl write from C++ that say nothing the user can act on. Fatal lines
# ("F0000 ...") are not among them.
NOISE = (
    re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"),
    re.compile(r"^[IWE]\d{4} [\d:.]+\s+\d+ \S+:\d+\] "),  # absl/glog: I0000 00:00:1796121302.88 123 file.cc:31]
    re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] \S+:\d+\] "),  # TF's older C++ logger
    re.compile(r"oneDNN custom operations are on"),
    re.compile(r"^To enable the following instructions: .*rebuild TensorFlow"),
    re.compile(r"^This TensorFlow binary is optimized to use available CPU instructions"),
)

#: Seconds the exit waits for the filter process to write its last lines.
FILTER_EXIT_WAIT_S = 5.0


def is_native_log_line(line: str) -> bool:
    """Whether ``line`` (without its newline) is one of TensorFlow's/XLA's native log lines
    that a quiet run holds back (see :data:`NOISE`)."""
    return any(pattern.search(line) for pattern in NOISE)


class NativeLogFilter:
    """fd 2 of this process through a filter process that drops native log lines.

    Use :func:`quiet_native_logs` in an entry point; the class is the context manager behind
    it, so that a test can install and remove the filter inside one process.

    Parameters
    ----------
    record_path : path-like, optional
        File that receives every dropped line (appended), for a run log; default: dropped
        lines are discarded.
    """

    def __init__(self, record_path=None):
        self.record_path = None if record_path is None else os.fspath(record_path)
        self._saved_fd: int | None = None
        self._process = None
        self._python_stderr = None
        self._direct_stderr = None

    @property
    def active(self) -> bool:
        return self._saved_fd is not None

    def start(self) -> NativeLogFilter:
        """Point fd 2 at the filter and ``sys.stderr`` at the real stderr."""
        import subprocess

        if self.active:
            return self
        _flush(sys.stdout, sys.stderr)
        saved = os.dup(2)
        read_end, write_end = os.pipe()
        command = [sys.executable, "-I", "-S", os.path.abspath(__file__)]
        if self.record_path:
            command.append(self.record_path)
        try:
            self._process = subprocess.Popen(command, stdin=read_end, stdout=saved, stderr=saved, close_fds=True)
        except OSError:  # no filter, no quiet: the run itself is unaffected
            os.close(saved)
            return self
        finally:
            os.close(read_end)
        os.dup2(write_end, 2)
        os.close(write_end)
        self._saved_fd = saved
        self._redirect_python_stderr()
        return self

    def stop(self) -> None:
        """Restore fd 2 and ``sys.stderr``; wait a moment for the filter's last lines."""
        if not self.active:
            return
        _flush(sys.stdout, sys.stderr)
        if self._direct_stderr is not None:
            sys.stderr = self._python_stderr
            self._direct_stderr.close()
            self._direct_stderr = None
        os.dup2(self._saved_fd, 2)  # closes the pipe's last write end held here: the filter sees EOF
        os.close(self._saved_fd)
        self._saved_fd = None
        try:
            # A child process that inherited fd 2 may hold the pipe open; the filter then ends
            # when that child does.
            self._process.wait(timeout=FILTER_EXIT_WAIT_S)
        except Exception:  # noqa: BLE001 - leaving at exit must never fail
            pass

    def __enter__(self) -> NativeLogFilter:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _redirect_python_stderr(self) -> None:
        """Python's own stderr writes go to the real stderr, not through the filter; only when
        ``sys.stderr`` is this process's fd 2 (under a test runner's capture it is not)."""
        if not _stderr_is_fd2():
            return
        self._python_stderr = sys.stderr
        self._direct_stderr = open(  # noqa: SIM115 - closed in stop()
            os.dup(self._saved_fd),
            "w",
            buffering=1,
            encoding=sys.stderr.encoding,
            errors=sys.stderr.errors,
        )
        sys.stderr = self._direct_stderr
        import faulthandler

        if faulthandler.is_enabled():  # a crash's traceback must not wait on the pipe
            faulthandler.enable(file=self._direct_stderr)


def _stderr_is_fd2() -> bool:
    """Whether ``sys.stderr`` writes to this process's file descriptor 2."""
    try:
        return sys.stderr is not None and sys.stderr.fileno() == 2
    except (AttributeError, ValueError, OSError):
        return False


def _flush(*streams) -> None:
    for stream in streams:
        try:
            stream.flush()
        except (AttributeError, ValueError, OSError):
            pass


def quiet_native_logs(*, verbose: bool = False, record_path=None) -> NativeLogFilter | None:
    """Hold TensorFlow's and XLA's native log lines back for the rest of this process.

    Sets ``TF_CPP_MIN_LOG_LEVEL=2`` unless the environment sets it, and installs a
    :class:`NativeLogFilter` that is removed at exit (see the module docstring).

    Parameters
    ----------
    verbose : bool
        Do nothing: let every library line through.
    record_path : path-like, optional
        File that receives the dropped lines.

    Returns
    -------
    NativeLogFilter or None
        The installed filter; None when ``verbose``, or when ``sys.stderr`` is not this
        process's fd 2 (captured by a test runner or by a program that runs the command
        in-process, or the filter is installed already: a second call does nothing).
    """
    if verbose:
        return None
    import atexit

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not _stderr_is_fd2():
        # Python's stderr is not this process's fd 2: a test runner or a program that runs the
        # command in-process captured it, or the filter is installed already. fd 2 stays as it is.
        return None
    native_filter = NativeLogFilter(record_path).start()
    atexit.register(native_filter.stop)
    return native_filter


def quiet_tensorflow_startup(*, verbose: bool = False) -> NativeLogFilter | None:
    """:func:`quiet_native_logs`, then import TensorFlow and list its devices (which probes
    CUDA), so that the start-up lines come now, inside the filter (when one was installed)."""
    native_filter = quiet_native_logs(verbose=verbose)
    if native_filter is not None:
        import tensorflow as tf

        tf.config.list_physical_devices()
    return native_filter


def _filter_main(argv: list[str]) -> int:
    """The filter process: stdin -> stdout, native log lines dropped (or appended to argv[0])."""
    record = open(argv[0], "ab") if argv else None  # noqa: SIM115 - open for the process's life
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    for raw in iter(source.readline, b""):
        if is_native_log_line(raw.decode("utf-8", errors="replace").rstrip("\r\n")):
            if record is not None:
                record.write(raw)
                record.flush()
            continue
        sink.write(raw)
        sink.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_filter_main(sys.argv[1:]))
