"""Quiet start-up: TensorFlow's C++ start-up lines stay off the user's terminal and out of logs.

On import and on first touching its devices, TensorFlow writes from C++ straight to file
descriptor 2: "WARNING: All log messages before absl::InitializeLog() is called are written to
STDERR", absl lines such as ``I0000 ... cudart_stub.cc:31] Could not find cuda drivers on your
machine``, CPU-feature and oneDNN notices, and ``E0000 ... failed call to cuInit`` on machines
without a GPU. ``TF_CPP_MIN_LOG_LEVEL`` silences only some of them: the absl lines are written
before TensorFlow's logging is set up. So :func:`quiet_tensorflow_startup`, called by an entry
point (the CLI commands that need TensorFlow, each sweep step's process) before anything
imports it:

1. sets ``TF_CPP_MIN_LOG_LEVEL=2`` unless the environment sets it (info and warnings off,
   errors on, for the rest of the run);
2. points fd 2 at a temporary file while it imports TensorFlow and lists its devices (which
   probes CUDA), then points fd 2 back;
3. drops the captured lines that are known start-up noise (:data:`NOISE`) and writes any other
   line back to stderr, so nothing unexpected is hidden; if the import fails, everything
   captured is written back before the error propagates.

``--verbose`` skips all of this. Nothing here is called as a side effect of a library call:
only the process entry points call it, once.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

__all__ = ["quiet_tensorflow_startup", "is_startup_noise", "NOISE"]

# Lines TensorFlow/XLA/absl write on start-up that say nothing about the user's run.
NOISE = (
    re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"),
    re.compile(r"^[IWE]\d{4} [\d:.]+\s+\d+ \S+:\d+\] "),  # absl/glog: I0000 00:00:1796121302.88 123 file.cc:31]
    re.compile(r"oneDNN custom operations are on"),
    re.compile(r"^To enable the following instructions: .*rebuild TensorFlow"),
    re.compile(r"^This TensorFlow binary is optimized to use available CPU instructions"),
)


def is_startup_noise(line: str) -> bool:
    """Whether ``line`` is one of TensorFlow's start-up lines (see :data:`NOISE`)."""
    return any(pattern.search(line) for pattern in NOISE)


def quiet_tensorflow_startup(*, verbose: bool = False) -> str:
    """Import TensorFlow with its start-up lines held back (see the module docstring).

    Parameters
    ----------
    verbose : bool
        Do nothing: let every library line through.

    Returns
    -------
    str
        The start-up lines that were held back ("" when nothing was done).
    """
    if verbose or "tensorflow" in sys.modules:
        return ""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as capture:
            os.dup2(capture.fileno(), 2)
            failed = True
            try:
                import tensorflow as tf

                tf.config.list_physical_devices()  # probes CUDA now, inside the capture
                failed = False
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                capture.seek(0)
                text = capture.read().decode("utf-8", errors="replace")
                kept = text if failed else "".join(
                    line for line in text.splitlines(keepends=True) if not is_startup_noise(line.rstrip("\n"))
                )
                if kept:
                    sys.stderr.write(kept)
                    sys.stderr.flush()
    finally:
        os.close(saved)
    return "".join(line for line in text.splitlines(keepends=True) if is_startup_noise(line.rstrip("\n")))
