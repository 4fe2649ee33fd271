"""Benchmark compare-models end to end at production sizes (not a test).

For every size (n positions, patch side N) it makes a test scan (a jittered 4-px grid, 8 px at
N = 128, over a simulated object; kept under ``--work`` and reused), a gridsize-2 PINN and a
gridsize-1 baseline of the default width (trained for one epoch on 300 positions: the weights
do not matter for timing), and then, each in its own process so that each peak RSS is its own:

1. ``compare-models`` on the scan (both networks; the pty-chi arm at the first size only, from a
   short reconstruction), timed stage by stage;
2. the bare forward passes of the same two networks, XLA-compiled (``jit_compile=True``), on
   inputs built beforehand, at the same batch size: the forward-pass limit. They are timed on
   up to ``--bare-positions`` positions and scaled to n (a compiled batch costs the same
   whatever the scan).

It prints a table per size (stage times, the streaming pass per network against its bare
forward passes, end-to-end wall, peak RSS) and a summary across sizes (time per position, RSS
against the first size plus the canvas); ``--json FILE`` keeps the figures.

    .venv/bin/python scripts/bench_compare.py                       # 5088, 20352, 81408 at N = 64; 20352 at N = 128
    .venv/bin/python scripts/bench_compare.py --sizes 5088:64        # one size
    .venv/bin/python scripts/bench_compare.py --half-sets            # with half-set FRC (a gs-2 PINN predicts each half again)

Targets: end to end within 1.15x the sum of the bare compiled forward passes;
peak RSS at 81408 positions within 1.2x of the 5088 figure plus the canvas; time linear in n.
docs/performance.md records the results.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

from bench_children import bare_inputs, print_child_report, run_child, time_forward, timed_compare

DEFAULT_SIZES = "5088:64,20352:64,81408:64,20352:128"
BATCH = 32


def _scan_settings(n_positions: int, patch_size: int) -> dict:
    """A jittered grid over an object just large enough for n positions."""
    step = 4 if patch_size <= 64 else 8
    per_side = int(n_positions**0.5) + 2
    return dict(patch_size=patch_size, object_size=patch_size + step * per_side + 4, scan="jittered",
                scan_step=step, jitter=0.5, dose=1e5, seed=1)


def _prepare(work: Path, n_positions: int, patch_size: int, with_ptychi: bool):
    """Test scan, networks (and a pty-chi reconstruction), made once and cached under ``work``."""
    from compare_models.io.npz import save_dataset
    from compare_models.models.training import TrainConfig
    from compare_models.pipelines.train import run_train
    from compare_models.study.simulator import SimulationConfig, simulate_dataset

    test_path = work / f"test_{n_positions}_n{patch_size}.npz"
    train_path = work / f"train_n{patch_size}.npz"
    if not test_path.exists() or not train_path.exists():
        start = time.perf_counter()
        dataset = simulate_dataset(SimulationConfig(**_scan_settings(n_positions, patch_size)))
        if dataset.n_positions < n_positions:
            raise SystemExit(f"simulated only {dataset.n_positions} positions, wanted {n_positions}")
        # Real scans carry no ground-truth patches (Y); the object stays, for the metrics.
        save_dataset(dataclasses.replace(dataset.subset(range(n_positions)), patches_truth=None), test_path)
        if not train_path.exists():
            save_dataset(dataset.subset(range(300)), train_path)  # contiguous: PINN groups stay local
        print(f"  simulated {test_path.name} in {time.perf_counter() - start:.0f} s", flush=True)
        del dataset
    bundles = {}
    for kind, gridsize in (("pinn", 2), ("baseline", 1)):
        out = work / f"{kind}_n{patch_size}"
        if not out.exists():
            run_train(TrainConfig(model=kind, gridsize=gridsize, epochs=1, batch_size=16), train_path, out,
                      progress=False)
        bundles[kind] = out
    recon = None
    if with_ptychi:
        from compare_models.pipelines.reconstruct import run_reconstruct
        from compare_models.study.ptychi_runner import ReconstructConfig

        recon = work / f"ptychi_{n_positions}_n{patch_size}" / "ptychi_reconstruction.npz"
        if not recon.exists():
            run_reconstruct(test_path, recon.parent, ReconstructConfig(epochs=3).validate(), progress=False)
    return test_path, bundles, recon


# -------------------------------------------------------------------------------- child: compare


def _compare_child(args) -> dict:
    from compare_models.pipelines.compare import CompareConfig

    recon = args.recon or None
    config = CompareConfig(
        test_data=args.test, output_dir=str(Path(args.work) / f"compare_{Path(args.test).stem}"),
        pinn_dir=args.pinn, baseline_dir=args.baseline, ptychi_recon_path=recon, overwrite=True,
        progress=False, half_sets=True if args.half_sets else False,
        register_ptychi_only=bool(recon),  # 1-epoch networks give images with nothing to correlate
        skip_registration=not recon,
        pinn_predict_batch_size=BATCH, baseline_predict_batch_size=BATCH,
    ).validate()
    total, timings, arms = timed_compare(config)
    return {"total": total, "timings_s": timings, "streaming": {key: arm.get("streaming", {}) for key, arm in arms.items()}}


# -------------------------------------------------------------------------------- child: bare


def _bare_child(args) -> dict:
    """Seconds per position of each network's XLA-compiled forward pass, inputs prebuilt."""
    return {
        key: time_forward("tensorflow", model, parts, BATCH)
        for key, model, parts in bare_inputs(args.test, {"pinn": args.pinn, "baseline": args.baseline},
                                             args.bare_positions, BATCH)
    }


# -------------------------------------------------------------------------------- main


def _bench_one(work: Path, n: int, patch_size: int, with_ptychi: bool, args) -> dict:
    test_path, bundles, recon = _prepare(work, n, patch_size, with_ptychi)
    argv = ["--work", str(work), "--test", str(test_path), "--pinn", str(bundles["pinn"]),
            "--baseline", str(bundles["baseline"]), "--recon", str(recon or ""),
            "--bare-positions", str(args.bare_positions)] + (["--half-sets"] if args.half_sets else [])
    compare, bare = run_child(__file__, "compare", argv), run_child(__file__, "bare", argv)
    rss, bare_rss = compare.pop("peak_rss_gib"), bare.pop("peak_rss_gib")
    timings = compare["timings_s"]
    # The passes the comparison needs: n per network, and n more for a gridsize-2 PINN's halves.
    passes = {"pinn": 2 if args.half_sets else 1, "baseline": 1}
    bare_s = {key: bare[key]["seconds_per_position"] * n * passes[key] for key in passes}
    stream_s = {key: timings[f"{key}.predict_stitch"] + timings.get(f"{key}.half_sets.predict_stitch", 0.0)
                for key in passes}
    from compare_models.io.dispatch import load_dataset

    shape = load_dataset(test_path).object_truth.shape
    return {
        "n": n, "patch_size": patch_size, "total_s": compare["total"], "timings_s": timings,
        "peak_rss_gib": rss, "bare_rss_gib": bare_rss, "bare_s": bare_s, "stream_s": stream_s,
        "streaming": compare["streaming"], "object_shape": list(shape),
        "canvas_gib": shape[0] * shape[1] * 8 * 8 / 2**30,  # ~8 complex64 images of the grid live at once
        "with_ptychi": with_ptychi, "half_sets": bool(args.half_sets),
    }


def _print_one(r: dict) -> None:
    n, patch_size = r["n"], r["patch_size"]
    print(f"\n== {n} positions, N = {patch_size}, object {r['object_shape'][0]} x {r['object_shape'][1]} px, "
          f"cores {os.cpu_count()}{', with pty-chi arm' if r['with_ptychi'] else ''}"
          f"{', half sets on' if r['half_sets'] else ''}")
    print(f"{'stage':<34}{'seconds':>10}")
    for stage, seconds in sorted(r["timings_s"].items()):
        if stage != "ptychi.reconstruction":  # the reconstruction's own wall time, from its file
            print(f"{stage:<34}{seconds:>10.2f}")
    print(f"{'end to end (wall, in process)':<34}{r['total_s']:>10.2f}")
    bare_total = sum(r["bare_s"].values())
    for key in ("pinn", "baseline"):
        wait = r["streaming"].get(key, {}).get("input_wait_s")
        print(f"{key + ' streaming pass / bare fwd':<34}{r['stream_s'][key]:>10.2f} / {r['bare_s'][key]:.2f} s"
              f" = {r['stream_s'][key] / r['bare_s'][key]:.3f}x   (input wait {wait} s)")
    print(f"{'both passes / bare fwd sum':<34}{sum(r['stream_s'].values()):>10.2f} / {bare_total:.2f} s"
          f" = {sum(r['stream_s'].values()) / bare_total:.3f}x")
    print(f"{'end to end / bare fwd sum':<34}{r['total_s']:>10.2f} / {bare_total:.2f} s = {r['total_s'] / bare_total:.3f}x")
    print(f"{'peak RSS of compare':<34}{r['peak_rss_gib']:>10.2f} GiB (bare-pass process {r['bare_rss_gib']:.2f} GiB)")


def _print_summary(results: list[dict]) -> None:
    print("\n== summary")
    print(f"{'n':>7} {'N':>4} {'wall s':>8} {'us/pos':>8} {'stream/bare':>12} {'wall/bare':>10} {'RSS GiB':>8}"
          f" {'canvas GiB':>11}")
    for r in results:
        bare_total = sum(r["bare_s"].values())
        print(f"{r['n']:>7} {r['patch_size']:>4} {r['total_s']:>8.1f} {1e6 * r['total_s'] / r['n']:>8.0f}"
              f" {sum(r['stream_s'].values()) / bare_total:>12.3f} {r['total_s'] / bare_total:>10.3f}"
              f" {r['peak_rss_gib']:>8.2f} {r['canvas_gib']:>11.3f}")
    base = next((r for r in results if r["patch_size"] == 64), None)
    for r in results:
        if base is not None and r is not base and r["patch_size"] == base["patch_size"]:
            allowed = 1.2 * base["peak_rss_gib"] + r["canvas_gib"]
            print(f"RSS at {r['n']}: {r['peak_rss_gib']:.2f} GiB against 1.2 x {base['peak_rss_gib']:.2f}"
                  f" + canvas {r['canvas_gib']:.3f} = {allowed:.2f} GiB: {'met' if r['peak_rss_gib'] <= allowed else 'NOT met'}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("bench_output"))
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="n:N,... (default %(default)s)")
    parser.add_argument("--half-sets", action="store_true", help="half-set FRC on (off by default here)")
    parser.add_argument("--no-ptychi", action="store_true", help="no pty-chi arm, even at the first size")
    parser.add_argument("--bare-positions", type=int, default=4096, help="positions the bare passes are timed on")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--prepare-only", action="store_true", help="make the inputs of every size, time nothing")
    parser.add_argument("--child", choices=["compare", "bare"], help=argparse.SUPPRESS)
    for name in ("test", "pinn", "baseline", "recon"):
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        report = _compare_child(args) if args.child == "compare" else _bare_child(args)
        print_child_report(report)
        return
    args.work.mkdir(parents=True, exist_ok=True)
    results = []
    for number, item in enumerate(args.sizes.split(",")):
        n, patch_size = (int(v) for v in item.split(":"))
        print(f"preparing {n} positions at N = {patch_size} under {args.work} ...", flush=True)
        if args.prepare_only:
            _prepare(args.work, n, patch_size, number == 0 and not args.no_ptychi)
            continue
        results.append(_bench_one(args.work, n, patch_size, number == 0 and not args.no_ptychi, args))
        _print_one(results[-1])
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
    if results:
        _print_summary(results)


if __name__ == "__main__":
    main()
