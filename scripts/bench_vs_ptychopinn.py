"""Benchmark: PtychoPINN's own ``scripts/compare_models.py`` against ``compare-models`` (not a test).

Both tools compare the same PtychoPINN models (the gridsize-2 PINN of
``../shared/fixtures/upstream/pinn_gs2`` and a gridsize-1 baseline: the fixture's
``baseline_model.h5`` and/or its gridsize-1 PINN bundle used as the baseline, as PtychoPINN's
users do) on the same 5088-position test set, each in its own process. For every run it prints
wall time, CPU time, peak resident memory (``os.wait4``), the load average of the machine
during the run, and the number of patches each arm produced; then the ratios theirs / ours.

Setup, once, by hand (nothing in this repository installs or builds PtychoPINN):

1. A checkout of PtychoPINN at the commit the fixtures were made with, outside this repository,
   e.g. a clone of the public repository hoidn/PtychoPINN in ``/work/upstream-ptychopinn``,
   then ``git -C /work/upstream-ptychopinn checkout 712c23f3bb6581ee4300c5572e3817a3d931165e``.
   Its ``ptycho/FRC`` submodule may stay empty (PtychoPINN's metric cells are then NaN, as in
   the fixture's ``reference/upstream_compare_gs1``); no other file is needed beyond
   ``ptycho/`` and ``scripts/``.
2. A separate virtual environment (never this project's) with what its ``compare_models.py``
   imports, at the versions the fixtures were made with::

       python3.11 -m venv /work/upstream-venv
       /work/upstream-venv/bin/pip install tensorflow==2.19.1 keras==3.15.1 numpy==2.1.3 \\
           dill pandas matplotlib scikit-image scipy pyyaml tqdm \\
           "tensorflow-probability[tf]" opencv-python-headless

   Check with ``PYTHONPATH=/work/upstream-ptychopinn /work/upstream-venv/bin/python
   /work/upstream-ptychopinn/scripts/compare_models.py --help``.

Run (from this repository's root; ``compare-models`` is taken from beside the Python that
runs this script, with this repository first on ``PYTHONPATH``)::

    PYTHONPATH=$PWD .venv/bin/python scripts/bench_vs_ptychopinn.py \\
        --ptychopinn-checkout /work/upstream-ptychopinn \\
        --ptychopinn-python /work/upstream-venv/bin/python

Everything is kept under ``--work`` (default ``bench_output/vs_ptychopinn``): the test set
(made once), each run's output directory and log, and ``results.json``, one record per run.
Columns: ``groups`` is the number of PINN groups (one per scan position), ``PINN out`` the
patches the PINN returned and the tool stitched, ``base out`` the patches the baseline returned
and the tool stitched (PtychoPINN runs the baseline on every member of every gridsize-2 group
when the PINN is gridsize 2: 4 patches per position). Runs accumulate there; the ratio table uses the latest record of each kind. So after a change
to this project, ``--skip-ptychopinn`` re-measures our side only and divides PtychoPINN's
stored figures by the new ones (PtychoPINN's side takes tens of minutes on 2 cores).

PtychoPINN's ``predict`` sums a whole batch onto one canvas once a batch holds 64 patterns or
more (batch x gridsize² >= 64; the fixture README's ``bug_output_predict_bs16``): at its
default PINN batch of 32 a gridsize-2 PINN returns n / 32 patches and the script stitches them
without a word. ``--ptychopinn-batch-size 32`` records that; the default, 8, is the largest
power of two that returns one patch per position, and only such runs enter the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FIXTURES = REPO.parent / "shared" / "fixtures" / "upstream"
BASELINES = {"baseline_gs1": "baseline_gs1", "pinn_gs1": "pinn_gs1"}  # name -> fixture folder
ENV = {"MPLBACKEND": "Agg", "TF_CPP_MIN_LOG_LEVEL": "2"}  # the same for both tools


# ---------------------------------------------------------------------------------------------
# The test set


def make_test_set(work: Path, n_positions: int) -> Path:
    """The ``n_positions`` test set at N = 64, in a layout both tools read; made once, cached.

    The scan is the one of ``scripts/bench_compare.py`` (a jittered 4-px grid over a 360-px
    object, dose 1e5, seed 1, its first ``n_positions`` points). The file holds PtychoPINN's
    keys (``diff3d``, ``xcoords``, ``ycoords``, ``xcoords_start``, ``ycoords_start``,
    ``probeGuess``, ``objectGuess``, ``scan_index``) and a JSON ``_metadata`` string, stored
    uncompressed and without object arrays. No ``Y``: neither tool needs ground-truth patches
    (both cut the truth from ``objectGuess``), and PtychoPINN would hold them in memory.

    The amplitudes are sqrt(counts); both tools divide them by one normalisation factor per
    dataset, f = sqrt((N/2)² / mean Σ amp²), before the networks see them, so the networks'
    inputs have the scale of PtychoPINN's own data whatever the dose.
    """
    path = work / f"test_{n_positions}_n64.npz"
    if path.exists():
        return path
    from compare_models.study.simulator import SimulationConfig, simulate_dataset

    config = SimulationConfig(patch_size=64, object_size=360, scan="jittered", scan_step=4, jitter=0.5, dose=1e5, seed=1)
    dataset = simulate_dataset(config)
    if dataset.n_positions < n_positions:
        raise SystemExit(f"the simulation gives only {dataset.n_positions} positions, fewer than {n_positions}")
    dataset = dataset.subset(range(n_positions))
    arrays = {
        "diff3d": dataset.diffraction_amplitude.astype(np.float32),
        "xcoords": dataset.positions_xy[:, 0].astype(np.float64),
        "ycoords": dataset.positions_xy[:, 1].astype(np.float64),
        "xcoords_start": dataset.positions_start_xy[:, 0].astype(np.float64),
        "ycoords_start": dataset.positions_start_xy[:, 1].astype(np.float64),
        "probeGuess": dataset.probe.astype(np.complex64),
        "objectGuess": dataset.object_truth.astype(np.complex64),
        "scan_index": np.zeros(n_positions, dtype=np.int64),
        "_metadata": np.array(json.dumps(dataset.metadata, sort_keys=True)),
    }
    work.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------------------------
# Measuring one process


def _load_sampler(samples: list, stop: threading.Event, every_s: float = 5.0) -> None:
    while not stop.wait(every_s):
        samples.append(os.getloadavg()[0])


def measure(command: list[str], env: dict, cwd: Path, log_path: Path) -> dict:
    """Run ``command`` to completion; its wall, CPU, peak RSS and the machine's load meanwhile.

    Peak RSS and CPU times come from ``os.wait4`` on the child (its own, and those of any
    children it waited for). The load is the 1-minute load average, sampled every 5 s; it
    includes the measured process itself (about 2 on this 2-core machine while TensorFlow runs).
    """
    samples: list[float] = [os.getloadavg()[0]]
    stop = threading.Event()
    sampler = threading.Thread(target=_load_sampler, args=(samples, stop), daemon=True)
    with open(log_path, "w") as log:
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        sampler.start()
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    samples.append(os.getloadavg()[0])
    cpu = usage.ru_utime + usage.ru_stime
    return {
        "exit_status": os.waitstatus_to_exitcode(status),
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "peak_rss_gib": round(usage.ru_maxrss / 2**20, 3),  # ru_maxrss is in KiB on Linux
        "load_1min": {"before": round(samples[0], 2), "mean": round(float(np.mean(samples)), 2),
                      "max": round(max(samples), 2), "after": round(samples[-1], 2)},
        "log": str(log_path),
    }


# ---------------------------------------------------------------------------------------------
# The two tools


def _last_int(pattern: str, text: str):
    found = re.findall(pattern, text)
    return int(found[-1]) if found else None


def run_ptychopinn(args, test_path: Path, baseline: str, batch: int) -> dict:
    """PtychoPINN's ``scripts/compare_models.py``, as its users run it (the seed report's flags)."""
    tag = f"ptychopinn_{baseline}_bs{batch}"
    out = args.work / tag
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    command = [
        str(args.ptychopinn_python), str(args.ptychopinn_checkout / "scripts" / "compare_models.py"),
        "--pinn_dir", str(args.fixtures / "pinn_gs2"),
        "--baseline_dir", str(args.fixtures / BASELINES[baseline]),
        "--test_data", str(test_path), "--output_dir", str(out / "out"),
        "--ms-ssim-sigma", "1.0", "--register-ptychi-only",
        "--pinn-predict-batch-size", str(batch),
    ]
    env = {**os.environ, **ENV, "PYTHONPATH": str(args.ptychopinn_checkout)}
    record = measure(command, env, out, args.work / f"{tag}.log")
    text = Path(record["log"]).read_text(errors="replace")
    record.update({
        "tool": "ptychopinn", "baseline": baseline, "pinn_predict_batch_size": batch,
        "baseline_predict_batch_size": 32,
        "command": command,
        # PtychoPINN logs the arrays it stitches; the offsets are one per group (= position).
        "pinn_patches": _last_int(r"PINN patches shape before reassembly: \((\d+),", text),
        "pinn_positions": _last_int(r"PINN offsets shape before reassembly: \((\d+),", text),
        "baseline_patches": _last_int(r"Complex patches shape: \((\d+),", text),
        "baseline_positions": _last_int(r"Baseline inference offsets shape: \((\d+),", text),
        "pinn_inference_s": _float_after(r"PtychoPINN inference completed in ([\d.]+)s", text),
        "baseline_inference_s": _float_after(r"Baseline inference completed in ([\d.]+)s", text),
        "completed": "Comparison complete!" in text,
        "stages_s": their_stages(text),
    })
    return record


# PtychoPINN's log lines that open each stage, in order (the stage ends where the next begins).
_THEIR_STAGES = (
    ("load models and data", r"Loading PtychoPINN inference model"),
    ("grouping + truth patches from objectGuess", r"Generating \d+ groups from"),
    ("PINN input build + predict", r"neighbor-sampled diffraction shape"),
    ("PINN stitch", r"PINN patches shape before reassembly"),
    ("baseline input build", r"Running inference with Baseline model"),
    ("baseline predict", r"Using single-shot baseline inference|Using chunked baseline inference"),
    ("baseline stitch", r"Reassembling baseline patches"),
    ("alignment, metrics, outputs", r"Saving NPZ files of raw|Performing coordinate-based alignment"),
    ("end", r"Results saved to:"),
)
_STAMP = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) - \w+ - (.*)")


def their_stages(text: str) -> dict:
    """Seconds per stage of PtychoPINN's script, from the time stamps of its log lines."""
    from datetime import datetime

    opened = {}
    for line in text.splitlines():
        match = _STAMP.search(line)
        if not match:
            continue
        for name, pattern in _THEIR_STAGES:
            if name not in opened and re.search(pattern, match.group(2)):
                opened[name] = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
    names = [name for name, _ in _THEIR_STAGES if name in opened]
    return {a: round((opened[b] - opened[a]).total_seconds(), 1) for a, b in zip(names[:-1], names[1:], strict=True)}


def _float_after(pattern: str, text: str):
    found = re.findall(pattern, text)
    return float(found[-1]) if found else None


def _ours_command() -> list[str]:
    script = Path(sys.executable).with_name("compare-models")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from compare_models.cli import compare_main; sys.argv[0] = 'compare-models'; compare_main()"]


def run_ours(args, test_path: Path, baseline: str) -> dict:
    """This project's ``compare-models`` on the same files and flags (its default batch sizes)."""
    tag = f"ours_{baseline}"
    out = args.work / tag
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    command = _ours_command() + [
        "--pinn_dir", str(args.fixtures / "pinn_gs2"),
        "--baseline_dir", str(args.fixtures / BASELINES[baseline]),
        "--test_data", str(test_path), "--output_dir", str(out / "out"),
        "--ms-ssim-sigma", "1.0", "--register-ptychi-only",
    ]
    python_path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, **ENV, "PYTHONPATH": python_path}
    record = measure(command, env, out, args.work / f"{tag}.log")
    record.update({"tool": "ours", "baseline": baseline, "command": command, "completed": False})
    provenance_path = out / "out" / "provenance.json"
    if record["exit_status"] == 0 and provenance_path.is_file():
        provenance = json.loads(provenance_path.read_text())
        arms = provenance["arms"]
        timings = provenance.get("timings_s", {})
        record.update({
            "completed": True,
            "pinn_predict_batch_size": arms["PtychoPINN"].get("predict_batch_size"),
            "baseline_predict_batch_size": arms["Baseline"].get("predict_batch_size"),
            "pinn_patches": arms["PtychoPINN"]["n_patches"],
            "pinn_positions": provenance["test_data"]["n_positions"],  # one group per position
            "baseline_patches": arms["Baseline"]["n_patches"],
            "baseline_positions": provenance["test_data"]["n_positions"],
            "pinn_inference_s": timings.get("pinn.inference"),
            "baseline_inference_s": timings.get("baseline.inference"),
            "timings_s": timings,
        })
    return record


# ---------------------------------------------------------------------------------------------
# Versions, storage, report


def _our_stages(timings: dict) -> dict:
    """Our per-stage seconds, each stage with its one-off compilation folded in."""
    stages: dict = {}
    for name, seconds in timings.items():
        if name == "ptychi.reconstruction":
            continue  # a pty-chi file's own recorded time, not spent here
        key = name.removesuffix("_compile")
        stages[key] = stages.get(key, 0.0) + seconds
    return stages


def _versions(python: str, env: dict) -> str:
    code = ("import sys, numpy, tensorflow as tf, keras; "
            "print(f'Python {sys.version.split()[0]}, TF {tf.__version__}, Keras {keras.__version__}, NumPy {numpy.__version__}')")
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, env={**os.environ, **ENV, **env})
    return done.stdout.strip().splitlines()[-1] if done.returncode == 0 and done.stdout.strip() else "unknown"


def _git_head(path: Path) -> str:
    done = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else "unknown (not a git checkout)"


def _machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.node()}: {os.cpu_count()} CPU cores {model}".strip()


def _load_results(path: Path) -> list[dict]:
    return json.loads(path.read_text()) if path.is_file() else []


def _save_results(path: Path, records: list[dict]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(records, indent=1))
    os.replace(tmp, path)


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _print_record(r: dict) -> None:
    load = r["load_1min"]
    batch = r.get("pinn_predict_batch_size")
    print(f"{r['tool']:<11}{r['baseline']:<14}{_fmt(batch, 'd'):>6}{r['wall_s']:>9.1f}{r['cpu_s']:>9.1f}"
          f"{r['peak_rss_gib']:>9.2f}{_fmt(r.get('pinn_positions'), 'd'):>8}{_fmt(r.get('pinn_patches'), 'd'):>9}"
          f"{_fmt(r.get('baseline_patches'), 'd'):>10}"
          f"  {load['before']:.1f}/{load['mean']:.1f}/{load['max']:.1f}  exit {r['exit_status']}"
          f"{'' if r.get('completed') else ' INCOMPLETE'}")


HEADER = (f"{'tool':<11}{'baseline':<14}{'batch':>6}{'wall s':>9}{'CPU s':>9}{'RSS GiB':>9}"
          f"{'groups':>8}{'PINN out':>9}{'base out':>10}  load before/mean/max")


def report(records: list[dict], n_positions: int) -> None:
    """Print the stored runs for ``n_positions`` and the ratios theirs / ours per baseline."""
    records = [r for r in records if r.get("n_positions") == n_positions]
    print(f"\nAll stored runs at {n_positions} positions (oldest first):")
    print(HEADER)
    for r in records:
        _print_record(r)
    print("\nWhere the time went (latest run of each kind; PtychoPINN's from its log's time stamps, "
          "ours from provenance.json, compile times included in their stage):")
    latest = {}
    for r in records:
        latest[(r["tool"], r["baseline"], r.get("pinn_predict_batch_size"))] = r
    for (tool, baseline, batch), r in latest.items():
        if tool == "ptychopinn":
            stages = r.get("stages_s")
            if stages is None and Path(r["log"]).is_file():
                stages = their_stages(Path(r["log"]).read_text(errors="replace"))
        else:
            stages = _our_stages(r.get("timings_s") or {})
        text = ", ".join(f"{name} {seconds:.1f}" for name, seconds in (stages or {}).items())
        print(f"  {tool} {baseline} batch {batch}: {text or '-'}")
    print("\nRatios PtychoPINN / compare-models (latest complete runs; PtychoPINN runs that "
          "returned fewer PINN patches than positions are left out):")
    for baseline in BASELINES:
        theirs = [r for r in records if r["tool"] == "ptychopinn" and r["baseline"] == baseline
                  and r.get("completed") and r.get("pinn_patches") == n_positions]
        ours = [r for r in records if r["tool"] == "ours" and r["baseline"] == baseline and r.get("completed")]
        if not theirs or not ours:
            continue
        t, o = theirs[-1], ours[-1]
        print(f"  baseline {baseline}: wall {t['wall_s']:.1f} / {o['wall_s']:.1f} s = {t['wall_s'] / o['wall_s']:.2f}x; "
              f"CPU {t['cpu_s']:.1f} / {o['cpu_s']:.1f} s = {t['cpu_s'] / o['cpu_s']:.2f}x; "
              f"peak RSS {t['peak_rss_gib']:.2f} / {o['peak_rss_gib']:.2f} GiB = {t['peak_rss_gib'] / o['peak_rss_gib']:.2f}x "
              f"(theirs at batch {t['pinn_predict_batch_size']}, {t['started']}; ours {o['started']})")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ptychopinn-checkout", type=Path, help="PtychoPINN checkout (needs ptycho/ and scripts/)")
    parser.add_argument("--ptychopinn-python", type=Path, help="Python of the separate venv for PtychoPINN")
    parser.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES, help="../shared/fixtures/upstream by default")
    parser.add_argument("--work", type=Path, default=REPO / "bench_output" / "vs_ptychopinn")
    parser.add_argument("--positions", type=int, default=5088)
    parser.add_argument("--baseline", action="append", choices=sorted(BASELINES), dest="baselines",
                        help="baseline arm: the fixture's baseline_model.h5 (baseline_gs1) or its gridsize-1 PINN "
                             "(pinn_gs1); repeat for both (default: both)")
    parser.add_argument("--ptychopinn-batch-size", action="append", type=int, dest="batches",
                        help="PtychoPINN's --pinn-predict-batch-size; repeat for several (default: 8)")
    parser.add_argument("--skip-ptychopinn", action="store_true", help="run only ours; ratios use stored PtychoPINN runs")
    parser.add_argument("--skip-ours", action="store_true", help="run only PtychoPINN's script")
    parser.add_argument("--report-only", action="store_true", help="print the stored runs and ratios, run nothing")
    args = parser.parse_args()
    baselines = args.baselines or list(BASELINES)
    batches = args.batches or [8]
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    results_path = args.work / "results.json"
    records = _load_results(results_path)
    if args.report_only:
        report(records, args.positions)
        return
    run_theirs = not args.skip_ptychopinn
    if run_theirs and (args.ptychopinn_checkout is None or args.ptychopinn_python is None):
        parser.error("--ptychopinn-checkout and --ptychopinn-python are needed (or --skip-ptychopinn)")
    if not (args.fixtures / "pinn_gs2" / "wts.h5.zip").is_file():
        raise SystemExit(f"fixtures not found: {args.fixtures / 'pinn_gs2' / 'wts.h5.zip'}")
    if run_theirs:
        args.ptychopinn_checkout = args.ptychopinn_checkout.resolve()
        script = args.ptychopinn_checkout / "scripts" / "compare_models.py"
        if not script.is_file():
            raise SystemExit(f"not a PtychoPINN checkout: {script} is missing")
    args.fixtures = args.fixtures.resolve()

    start = time.perf_counter()
    test_path = make_test_set(args.work, args.positions)
    print(f"test set: {test_path} ({test_path.stat().st_size / 2**20:.0f} MiB, ready in {time.perf_counter() - start:.1f} s)")
    common = {"n_positions": args.positions, "machine": _machine(), "test_data": str(test_path)}
    ours_versions = _versions(sys.executable, {"PYTHONPATH": str(REPO)}) if not args.skip_ours else None
    theirs_versions = (_versions(str(args.ptychopinn_python), {"PYTHONPATH": str(args.ptychopinn_checkout)})
                       if run_theirs else None)
    plan = []
    for baseline in baselines:
        if run_theirs:
            plan += [("ptychopinn", baseline, batch) for batch in batches]
        if not args.skip_ours:
            plan.append(("ours", baseline, None))
    print(HEADER)
    for tool, baseline, batch in plan:
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        if tool == "ptychopinn":
            record = run_ptychopinn(args, test_path, baseline, batch)
            record.update(versions=theirs_versions, code=f"PtychoPINN {_git_head(args.ptychopinn_checkout)}")
        else:
            record = run_ours(args, test_path, baseline)
            record.update(versions=ours_versions, code=f"compare-models {_git_head(REPO)}")
        record.update(common, started=started)
        records.append(record)
        _save_results(results_path, records)
        _print_record(record)
    print(f"\nmachine: {common['machine']}")
    if ours_versions:
        print(f"ours:   {ours_versions}; {_git_head(REPO)}")
    if theirs_versions:
        print(f"theirs: {theirs_versions}; {_git_head(args.ptychopinn_checkout)}")
    report(records, args.positions)


if __name__ == "__main__":
    main()
