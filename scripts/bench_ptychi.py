"""Benchmark pty-chi's batch size on the device at hand (not a test).

Simulates one scan (default: a 79 x 79 grid, 6241 positions, N = 64, step 4 px, dose 1e6),
then runs ``ptycho-study reconstruct``'s engine (:func:`run_ptychi`) for a fixed number of
epochs at each batch size and prints, per batch size: the median epoch time after the first
(warm-up) epoch, the final data loss, and the object error after the same number of epochs
(normalised complex error over the scanned interior, after one global complex factor: a
benchmark figure only, not a metric of record).

    python scripts/bench_ptychi.py --device cuda --batch-sizes 50 100 200 400 800 1600
    python scripts/bench_ptychi.py --device cpu --positions-per-side 20 --epochs 3

Results and the chosen per-device defaults are recorded in docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def object_error(result, dataset) -> float:
    """min_c ||c x - o|| / ||o|| over the scan's interior, x the canvas cut to the truth's grid."""
    ox, oy = (int(round(v)) for v in result.canvas_origin_xy)
    truth = dataset.object_truth
    low = np.floor(dataset.positions_xy.min(axis=0)).astype(int)
    high = np.ceil(dataset.positions_xy.max(axis=0)).astype(int)
    rows = slice(low[1], high[1])  # patch centres: every pixel here is well illuminated
    cols = slice(low[0], high[0])
    height, width = result.object.shape
    canvas = np.zeros_like(truth)
    r0, c0 = max(oy, 0), max(ox, 0)
    r1, c1 = min(oy + height, truth.shape[0]), min(ox + width, truth.shape[1])
    canvas[r0:r1, c0:c1] = result.object[r0 - oy:r1 - oy, c0 - ox:c1 - ox]
    x = canvas[rows, cols].ravel()
    o = truth[rows, cols].ravel()
    gain = np.vdot(x, o) / max(np.vdot(x, x).real, 1e-30)
    return float(np.linalg.norm(gain * x - o) / np.linalg.norm(o))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--algorithm", default="lsqml")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[50, 100, 200, 400, 800, 1600])
    parser.add_argument("--epochs", type=int, nargs="+", default=[10],
                        help="epochs for every batch size, or one number per batch size "
                             "(e.g. to compare batch sizes at equal wall time)")
    parser.add_argument("--positions-per-side", type=int, default=79)
    parser.add_argument("--patch-size", type=int, default=64)
    parser.add_argument("--step", type=float, default=4.0)
    parser.add_argument("--dose", type=float, default=1e6)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    from compare_models.study.ptychi_runner import ReconstructConfig, run_ptychi
    from compare_models.study.simulator import SimulationConfig, simulate_dataset

    size = int(round(args.step * (args.positions_per_side - 1))) + args.patch_size
    sim = SimulationConfig(
        patch_size=args.patch_size, object_size=size, scan="grid", scan_step=args.step,
        dose=args.dose, seed=0,
    )
    t0 = time.perf_counter()
    dataset = simulate_dataset(sim.validate())
    print(f"simulated {dataset.n_positions} positions, N = {dataset.patch_size}, "
          f"object {size} px, in {time.perf_counter() - t0:.1f} s", flush=True)

    if len(args.epochs) not in (1, len(args.batch_sizes)):
        parser.error("--epochs takes one number, or one per batch size")
    epochs_per_batch = args.epochs * len(args.batch_sizes) if len(args.epochs) == 1 else args.epochs
    rows = []
    for batch, epochs in zip(args.batch_sizes, epochs_per_batch, strict=True):
        config = ReconstructConfig(
            algorithm=args.algorithm, epochs=epochs, batch_size=batch, device=args.device,
            n_threads=args.threads, seed=0,
        ).validate()
        result = run_ptychi(dataset, config, progress=False)
        epoch_times = result.info["epoch_times_s"]
        warm = epoch_times[1:] or epoch_times
        row = {
            "batch_size": batch,
            "device": result.info["device"],
            "n_positions": dataset.n_positions,
            "epochs": epochs,
            "first_epoch_s": epoch_times[0],
            "median_epoch_s": statistics.median(warm),
            "wall_time_s": result.wall_time_s,
            "final_loss": float(result.loss_history[-1]),
            "object_error": object_error(result, dataset),
        }
        rows.append(row)
        print(
            f"batch {batch:5d} on {row['device']}: {row['median_epoch_s']:.3f} s/epoch "
            f"(first {row['first_epoch_s']:.2f} s), loss {row['final_loss']:.4g}, "
            f"object error {row['object_error']:.4f} after {epochs} epochs ({row['wall_time_s']:.1f} s)",
            flush=True,
        )
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
