"""Benchmark compare-models end to end at production size (not a test).

A 5088-position test set with N = 64, a gridsize-2 PINN and a gridsize-1 baseline (briefly
trained: the weights do not matter for timing) and a short pty-chi reconstruction of the same
scan. Prints the wall time of every stage (load, inference per arm, stitching, registration,
metrics, writing) and the peak resident memory of the comparison.

    .venv/bin/python scripts/bench_compare.py [--work DIR] [--positions 5088]

Target (issue 7): under 10 minutes and 4 GiB on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def _prepare(work: Path, n_positions: int):
    from compare_models.io.npz import save_dataset
    from compare_models.models.training import TrainConfig
    from compare_models.pipelines.reconstruct import run_reconstruct
    from compare_models.pipelines.train import run_train
    from compare_models.study.ptychi_runner import ReconstructConfig
    from compare_models.study.simulator import SimulationConfig, simulate_dataset

    test_path = work / "test_5088.npz"
    train_path = work / "train_small.npz"
    if not test_path.exists():
        # A jittered 4-px grid over a 360-px object gives ~5400 positions; keep the first n.
        config = SimulationConfig(patch_size=64, object_size=360, scan="jittered", scan_step=4, jitter=0.5, dose=1e5, seed=1)
        dataset = simulate_dataset(config)
        if dataset.n_positions < n_positions:
            raise SystemExit(f"simulated only {dataset.n_positions} positions")
        save_dataset(dataset.subset(range(n_positions)), test_path)
        save_dataset(dataset.subset(range(300)), train_path)  # contiguous: PINN groups stay local
    bundles = {}
    for kind, gridsize in (("pinn", 2), ("baseline", 1)):
        out = work / kind
        if not out.exists():
            run_train(TrainConfig(model=kind, gridsize=gridsize, epochs=1, batch_size=16), train_path, out, progress=False)
        bundles[kind] = out
    recon = work / "ptychi" / "ptychi_reconstruction.npz"
    if not recon.exists():
        run_reconstruct(test_path, work / "ptychi", ReconstructConfig(epochs=3).validate(), progress=False)
    return test_path, bundles, recon


def _compare_only(work: Path, test_path, bundles, recon) -> dict:
    from compare_models.pipelines.compare import CompareConfig, run_compare

    config = CompareConfig(
        test_data=str(test_path), output_dir=str(work / "compare"), pinn_dir=str(bundles["pinn"]),
        baseline_dir=str(bundles["baseline"]), ptychi_recon_path=str(recon), overwrite=True, progress=False,
        register_ptychi_only=True,  # 1-epoch networks give images with nothing to correlate
    ).validate()
    start = time.perf_counter()
    result = run_compare(config, echo=lambda _: None)
    return {"total": time.perf_counter() - start, "timings_s": result["timings_s"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("bench_output"))
    parser.add_argument("--positions", type=int, default=5088)
    parser.add_argument("--compare-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.compare_only:  # the child: inputs exist; print the timings as JSON
        test_path, bundles, recon = _prepare(args.work, args.positions)
        print(json.dumps(_compare_only(args.work, test_path, bundles, recon)))
        return
    start = time.perf_counter()
    _prepare(args.work, args.positions)
    print(f"inputs ready in {time.perf_counter() - start:.1f} s (cached under {args.work})")
    # The comparison runs in its own process so that its peak RSS is its own.
    child = subprocess.Popen(
        [sys.executable, __file__, "--work", str(args.work), "--positions", str(args.positions), "--compare-only"],
        stdout=subprocess.PIPE, text=True,
    )
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    if status != 0:
        raise SystemExit(f"compare failed (status {status})")
    report = json.loads(output.strip().splitlines()[-1])
    print(f"\ncompare-models, {args.positions} positions, N = 64, cores = {os.cpu_count()}")
    print(f"{'stage':<28}{'seconds':>10}")
    for stage, seconds in sorted(report["timings_s"].items()):
        if stage == "ptychi.reconstruction":
            continue  # the reconstruction's own wall time, recorded in its file
        print(f"{stage:<28}{seconds:>10.2f}")
    print(f"{'total (wall, in process)':<28}{report['total']:>10.2f}")
    print(f"peak RSS of the comparison process: {usage.ru_maxrss / 2**20:.2f} GiB")


if __name__ == "__main__":
    main()
