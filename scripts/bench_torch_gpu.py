"""Benchmark PtychoPINN's PyTorch bundles in compare-models on a GPU (not a test).

In one run, for each scan size (default 5088 and 81408 positions, N = 64):

1. a test scan is synthesised on the device from a probe and an object (by default those of
   PtychoPINN's ``test_256.npz``, given as a small NPZ with ``probeGuess`` and ``objectGuess``):
   the object is mirror-tiled to the size a jittered 4-px grid of n positions needs, the
   positions are rounded to whole pixels, and each pattern is ``|FFT(probe · patch)|`` computed
   in torch on the device; the NPZ is written uncompressed (read lazily by the comparison);
2. ``compare-models`` runs on it in a child process (PINN arm: the cnn bundle, baseline arm: the
   ffno bundle; ``--no-half-sets``; no pty-chi arm), timed stage by stage, with the child's peak
   host RSS (VmHWM) and peak GPU memory (torch's allocator);
3. the streaming passes alone, in a third child (both arms predicted and stitched, nothing
   scored or written): its peak host RSS and GPU memory, against the size of the canvases;
4. the bare forward pass of each generator on the same device, in another child: one batch of
   real inputs already on the device, run as many times as the comparison has batches (n/C
   groups in batches of ``--batch-size``), under ``torch.no_grad`` with TF32 off, synchronised.

With ``--parity REF ...`` (PtychoPINN's ``ref_torch_*.npz``, or a copy holding only their
``wf_input_diffraction``, ``wf_output_patches``, ``cli_input_diffraction_raw``,
``cli_input_scale_factor`` and ``cli_output_patches``) it first runs both generators on the
device on PtychoPINN's exact inputs and prints the largest difference from PtychoPINN's outputs,
in full float32 (what the comparison runs) and with TF32 allowed (torch's default for cuDNN
convolutions on a GPU).

It prints one table (and ``--json FILE`` keeps the figures): per size and arm, the streaming
pass (predict + stitch on the device, and the canvas brought back; of it, ``prep``: the scale
factor's pass over the data, the groups and the placements) against the bare forward pass, the comparison's wall time, and peak host and GPU memory.

    python scripts/bench_torch_gpu.py --cnn torch_cnn_gs1/wts.h5.zip --ffno torch_ffno_gs2/wts.h5.zip \\
        --source probe_object.npz --work /tmp/bench_torch

On a machine without CUDA it runs on the CPU (``--sizes 508`` keeps it short), which is how it
is checked before it goes to a GPU. docs/performance.md records the results.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

from bench_children import print_child_report, run_child, timed_compare

DEFAULT_SIZES = "5088,81408"
STEP_PX = 4


# ------------------------------------------------------------------------------- the scan


def synthesise(source: Path, n_positions: int, out: Path, device: str) -> dict:
    """Write a test NPZ of ``n_positions`` patterns made on ``device`` (module docstring)."""
    import numpy as np
    import torch

    with np.load(source) as data:
        probe = data["probeGuess"].astype(np.complex64)
        obj = data["objectGuess"].astype(np.complex64)
    n_side = probe.shape[0]
    per_side = math.ceil(math.sqrt(n_positions))
    size = n_side + STEP_PX * (per_side - 1) + 8
    reps = math.ceil(size / obj.shape[0])
    tiled = np.pad(obj, [(0, obj.shape[0] * (reps - 1))] * 2, mode="symmetric")[:size, :size]
    rng = np.random.default_rng(1)
    grid = np.arange(per_side) * STEP_PX + n_side / 2 + 4
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    positions = np.stack([xx.ravel(), yy.ravel()], axis=1)[:n_positions]
    positions = np.round(positions + rng.uniform(-0.5, 0.5, positions.shape))  # whole pixels: exact crops
    start = time.perf_counter()
    dev = torch.device(device)
    object_t = torch.from_numpy(tiled).to(dev)
    probe_t = torch.from_numpy(probe).to(dev)
    offsets = torch.arange(n_side, device=dev)
    diffraction = np.empty((n_positions, n_side, n_side), np.float32)
    corner = torch.from_numpy((positions - n_side // 2).astype(np.int64)).to(dev)  # (x0, y0)
    for first in range(0, n_positions, 4096):
        c = corner[first:first + 4096]
        rows = (c[:, 1, None] + offsets)[:, :, None]
        cols = (c[:, 0, None] + offsets)[:, None, :]
        exit_wave = object_t[rows, cols] * probe_t
        amp = torch.fft.fftshift(torch.fft.fft2(exit_wave, norm="ortho"), dim=(-2, -1)).abs()
        diffraction[first:first + len(c)] = amp.cpu().numpy()
    np.savez(out, diffraction=diffraction, xcoords=positions[:, 0], ycoords=positions[:, 1],
             probeGuess=probe, objectGuess=tiled)
    return {"object_shape": list(tiled.shape), "synthesis_s": time.perf_counter() - start}


# ------------------------------------------------------------------------------- children


def _compare_child(args) -> dict:
    from compare_models.pipelines.compare import CompareConfig

    config = CompareConfig(
        test_data=args.test, output_dir=str(Path(args.work) / f"compare_{Path(args.test).stem}"),
        pinn_dir=args.cnn, baseline_dir=args.ffno, overwrite=True, progress=False, half_sets=False,
        register_ptychi_only=True, pinn_predict_batch_size=args.batch_size,
        baseline_predict_batch_size=args.batch_size, device=args.device,
    ).validate()
    import torch

    total, timings, arms = timed_compare(config)
    gpu = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    return {
        "total_s": total, "timings_s": timings, "peak_gpu_gib": gpu,
        "streaming": {key: arm["streaming"] for key, arm in arms.items()},
        "device_name": arms["pinn"]["model"]["device_name"],
        "n_groups": {key: arm["inputs"]["n_groups"] for key, arm in arms.items()},
    }


def _stream_child(args) -> dict:
    """Memory of the streaming pass alone: both arms predicted and stitched (full images,
    nothing scored or written), the child's peak RSS and GPU memory against the canvases'."""
    import numpy as np
    import torch

    from compare_models.imaging.stitching import Stitcher
    from compare_models.io.dispatch import load_dataset
    from compare_models.models.ptychopinn_torch.model import load_torch_pinn

    dataset = load_dataset(args.test)
    canvas_bytes = 0
    for path in (args.cnn, args.ffno):
        model = load_torch_pinn(path, device=args.device)
        stitcher = Stitcher(dataset.object_truth.shape, model.patch_size, crop=20, backend="torch", device=model.device)
        model.predict_and_stitch(dataset, stitcher, batch_size=args.batch_size, progress=False)
        image, _ = stitcher.result(0)
        canvas_bytes += int(np.prod(stitcher.canvas_shape)) * 4
        del stitcher, image
    gpu = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    return {"stream_peak_gpu_gib": gpu, "canvas_gib": canvas_bytes / 2**30}


def _bare_child(args) -> dict:
    """Seconds of each generator's forward pass over the comparison's number of batches."""
    import numpy as np
    import torch

    from compare_models.io.dispatch import load_dataset
    from compare_models.models.ptychopinn_torch.device import full_float32
    from compare_models.models.ptychopinn_torch.model import load_torch_pinn

    dataset = load_dataset(args.test)
    result = {}
    for key, path in (("pinn", args.cnn), ("baseline", args.ffno)):
        model = load_torch_pinn(path, device=args.device)
        inputs = model.prepare(dataset.subset(range(min(dataset.n_positions, args.batch_size * model.channels))))
        x = torch.from_numpy(inputs.build(np.arange(inputs.n_groups))).to(model.device)
        n_batches = math.ceil(math.ceil(dataset.n_positions / model.channels) / args.batch_size)

        def sync(device=model.device):
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        with torch.no_grad(), full_float32():
            for _ in range(3):  # warm-up: cuDNN's algorithm choice, first-call costs
                model.forward(x)
            sync()
            start = time.perf_counter()
            for _ in range(n_batches):
                model.forward(x)
            sync()
            seconds = time.perf_counter() - start
        result[key] = {"seconds": seconds, "batches": n_batches, "generator": model.settings.architecture}
    return result


# ------------------------------------------------------------------------------- parity


def parity(references: list[str], bundles: dict, device: str) -> list[dict]:
    """Largest |port - PtychoPINN| on PtychoPINN's reference inputs, float32 and TF32."""
    import numpy as np
    import torch

    from compare_models.models.ptychopinn_torch.device import full_float32
    from compare_models.models.ptychopinn_torch.model import load_torch_pinn

    rows = []
    for path in references:
        with np.load(path) as ref:
            arrays = {k: ref[k] for k in ("wf_input_diffraction", "wf_output_patches", "cli_input_diffraction_raw",
                                          "cli_input_scale_factor", "cli_output_patches")}
        channels = arrays["wf_input_diffraction"].shape[1]
        model = load_torch_pinn(bundles["cnn" if channels == 1 else "ffno"], device=device)
        for path_name, x, want in (
            ("workflow", arrays["wf_input_diffraction"], arrays["wf_output_patches"]),
            ("command line", arrays["cli_input_diffraction_raw"] * arrays["cli_input_scale_factor"],
             arrays["cli_output_patches"]),
        ):
            row = {"generator": model.settings.architecture, "path": path_name, "max_abs_ref": float(np.abs(want).max())}
            for mode in ("float32", "tf32"):
                cudnn, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
                with torch.no_grad():
                    if mode == "float32":
                        with full_float32():
                            got = model.forward(torch.from_numpy(x).to(model.device)).cpu().numpy()
                    else:
                        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
                        try:
                            got = model.forward(torch.from_numpy(x).to(model.device)).cpu().numpy()
                        finally:
                            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = cudnn, matmul
                row[f"max_abs_diff_{mode}"] = float(np.abs(got - want).max())
                row[f"within_tolerance_{mode}"] = bool(np.allclose(got, want, rtol=1e-5, atol=1e-4))
            rows.append(row)
    return rows


# ------------------------------------------------------------------------------- main


def _bench_one(n: int, args) -> dict:
    work = Path(args.work)
    test = work / f"test_{n}.npz"
    scan = synthesise(Path(args.source), n, test, args.synth_device)
    argv = ["--work", str(work), "--test", str(test), "--cnn", args.cnn, "--ffno", args.ffno,
            "--batch-size", str(args.batch_size), "--device", args.device]
    compare, bare, stream = (run_child(__file__, mode, argv) for mode in ("compare", "bare", "stream"))
    test.unlink()
    return {"n": n, **scan, "compare": compare, "bare": bare, "stream": stream}


def _print(results: list[dict]) -> None:
    device = results[0]["compare"]["device_name"]
    print(f"\nPtychoPINN PyTorch bundles in compare-models on {device} (batch {results[0]['compare']['streaming']['pinn']['batch_size']} groups, "
          "float32, TF32 off, no half sets, no pty-chi)")
    head = (f"{'positions':>9} {'arm':<9} {'generator':<9} {'groups':>7} {'stream s':>9} {'(prep s)':>9} {'bare s':>8} "
            f"{'ratio':>6} {'compare s':>10} {'RSS GiB':>8} {'GPU GiB':>8}")
    print(head)
    print("-" * len(head))
    for r in results:
        timings = r["compare"]["timings_s"]
        for key in ("pinn", "baseline"):
            stream = timings[f"{key}.predict_stitch"] + timings[f"{key}.stitch_finish"]
            bare = r["bare"][key]["seconds"]
            gpu = r["compare"]["peak_gpu_gib"]
            prep = r["compare"]["streaming"][key].get("prepare_s", float("nan"))
            print(f"{r['n']:>9} {key:<9} {r['bare'][key]['generator']:<9} {r['compare']['n_groups'][key]:>7} "
                  f"{stream:>9.2f} {prep:>9.2f} {bare:>8.2f} {stream / bare:>6.2f} {r['compare']['total_s']:>10.1f} "
                  f"{r['compare']['peak_rss_gib']:>8.2f} {'-' if gpu is None else f'{gpu:.2f}':>8}")
    print("\nthe streaming passes alone (both arms, full images; no scoring, no outputs):")
    for r in results:
        st = r["stream"]
        gpu = "-" if st["stream_peak_gpu_gib"] is None else f"{st['stream_peak_gpu_gib']:.2f}"
        print(f"  {r['n']}: peak RSS {st['peak_rss_gib']:.2f} GiB, peak GPU {gpu} GiB, canvases {st['canvas_gib']:.3f} GiB")
    print("\nstages of each comparison (s):")
    for r in results:
        t = r["compare"]["timings_s"]
        keys = ("load_test_data", "pinn.load", "pinn.predict_stitch_compile", "baseline.predict_stitch_compile",
                "scoring", "write_outputs")
        print(f"  {r['n']}: object {r['object_shape'][0]} px, " + ", ".join(
            f"{k} {t[k]:.2f}" for k in keys if k in t))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=("compare", "bare", "stream"))
    parser.add_argument("--work", default="/tmp/bench_torch")
    parser.add_argument("--test")
    parser.add_argument("--cnn", required=True, help="torch_cnn_gs1/wts.h5.zip")
    parser.add_argument("--ffno", required=True, help="torch_ffno_gs2/wts.h5.zip")
    parser.add_argument("--source", help="NPZ with probeGuess and objectGuess (test_256's)")
    parser.add_argument("--sizes", default=DEFAULT_SIZES)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--parity", nargs="*", default=[], help="PtychoPINN reference NPZs (ref_torch_*.npz)")
    args = parser.parse_args()
    if args.child:
        print_child_report({"compare": _compare_child, "bare": _bare_child, "stream": _stream_child}[args.child](args))
        return
    import torch

    args.synth_device = "cuda" if torch.cuda.is_available() and args.device != "cpu" else "cpu"
    Path(args.work).mkdir(parents=True, exist_ok=True)
    checks = parity(args.parity, {"cnn": args.cnn, "ffno": args.ffno}, args.device) if args.parity else []
    for row in checks:
        print(f"parity {row['generator']:<5} {row['path']:<13} max|ref| {row['max_abs_ref']:8.3g}  "
              f"max|diff| float32 {row['max_abs_diff_float32']:.2g} ({'ok' if row['within_tolerance_float32'] else 'OUT'})"
              f", TF32 {row['max_abs_diff_tf32']:.2g} ({'ok' if row['within_tolerance_tf32'] else 'OUT'})", flush=True)
    results = []
    for n in (int(s) for s in args.sizes.split(",")):
        print(f"== {n} positions", flush=True)
        results.append(_bench_one(n, args))
    _print(results)
    if args.json:
        Path(args.json).write_text(json.dumps({"parity": checks, "sizes": results}, indent=1))
    print(f"\ncores {os.cpu_count()}, torch {torch.__version__}")


if __name__ == "__main__":
    main()
