"""What the benchmarks' parent and child processes share (imported by the ``bench_*.py``
scripts beside it, which run as ``python scripts/bench_*.py``).

Each measurement runs in a child process of its own, so that each peak resident set is its
own: the parent runs ``python SCRIPT --child MODE ARGS...``, the child prints one JSON line
last (its figures and its own peak RSS), the parent decodes it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

__all__ = ["peak_rss_gib", "print_child_report", "run_child", "timed_compare"]


def peak_rss_gib() -> float:
    """This process's peak resident set (VmHWM), GiB. Read by the child itself: the rusage a
    parent gets from wait4 counts the parent's own pages at fork time too."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def print_child_report(report: dict) -> None:
    """The child's last line: ``report`` with ``peak_rss_gib`` added, as JSON."""
    print(json.dumps({**report, "peak_rss_gib": peak_rss_gib()}))


def run_child(script: str, mode: str, argv: list[str], *, error: type[BaseException] = SystemExit) -> dict:
    """Run ``script --child mode argv`` in a new Python process; returns the JSON of its last
    line of output (with ``peak_rss_gib``). A child that fails raises ``error`` naming it."""
    child = subprocess.run([sys.executable, script, "--child", mode, *argv], stdout=subprocess.PIPE, text=True)
    if child.returncode != 0:
        raise error(f"{mode} child failed (status {child.returncode})")
    return json.loads(child.stdout.strip().splitlines()[-1])


def timed_compare(config) -> tuple[float, dict, dict]:
    """Run ``compare-models``' pipeline on ``config`` (a validated ``CompareConfig``), quietly.

    Returns the wall time in seconds, the stage timings (``Comparison.timings_s``) and each
    network arm's details as provenance.json records them (``pinn``, ``baseline``; empty for an
    arm not given), whose ``streaming`` entry holds the streaming pass's figures.
    """
    import time

    from compare_models.pipelines.compare import MODEL_NAMES, run_compare

    start = time.perf_counter()
    comparison = run_compare(config, echo=lambda _: None)
    total = time.perf_counter() - start
    provenance = json.loads((Path(config.output_dir) / "provenance.json").read_text())
    arms = {key: provenance["arms"].get(MODEL_NAMES[key], {}) for key in ("pinn", "baseline")}
    return total, dict(comparison.timings_s), arms
