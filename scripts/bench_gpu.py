"""Benchmark compare-models on one GPU (or the CPU) against the bare compiled forward passes.

For every size (n positions, patch side N) and Keras backend it makes, under ``--work``: a
test scan (:func:`synthetic_scan`: a jittered 4-px grid, 8 px at N = 128, written uncompressed
so it is read lazily), and a gridsize-2 PINN and a gridsize-1 baseline of the default width and depth
with seeded, untrained weights (timing needs the real shapes only). Then, each in its own
process so that each peak is its own:

1. ``compare`` -- ``compare-models``' pipeline (``run_compare``) on the scan with both networks
   (registration skipped: untrained networks give images with nothing to correlate; no half
   sets), timed stage by stage: wall, the streaming passes, their compile time apart, peak host
   RSS (VmHWM) and peak GPU memory (the framework's allocator);
2. ``bare`` -- the same two networks' forward passes alone, compiled (JAX: ``jax.jit`` of
   ``stateless_call``; TensorFlow: ``tf.function(jit_compile=True)``; torch: eager under
   ``no_grad``), batch by batch on inputs built and put on the device beforehand, at the same
   batch size, timed on ``--bare-positions`` positions and scaled to n. Their FLOPs: the
   convolutions counted from the layers' shapes (2 * H_out * W_out * k * k * C_in * C_out per
   sample; they are nearly all of the work), and XLA's own count of the compiled forward pass
   (``cost_analysis``, JAX; on a GPU it leaves out the cuDNN convolutions, so it is kept for
   the CPU only); achieved FLOP/s against the GPU's float32 peak (SMs x max SM clock x 256 FLOP per cycle: Hopper's 128
   FP32 lanes a SM, one FMA each), TF32 being off.

It prints one table (and ``--json FILE`` keeps every figure):

    python scripts/bench_gpu.py --backend jax --device gpu --sizes 5088:64,81408:64,20352:128 --batch 256
    python scripts/bench_gpu.py --backend tensorflow --device cpu --sizes 5088:64 --batch 32

Targets: end to end within 1.15x of the bare forward passes at 81408 positions; host memory
flat in the number of positions. docs/performance.md records the results.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench_children import bare_inputs, print_child_report, run_child, time_forward, timed_compare


def synthetic_scan(n_positions: int, patch_size: int, seed: int = 1):
    """A test scan of ``n_positions`` for timing, made in seconds: a smooth random complex
    object, a disc probe (1e5 photons a pattern), a jittered grid (4 px steps, 8 px at
    N = 128, +-0.5 px) and the far-field amplitudes of the integer-cropped patches.

    Only the shapes and the sizes matter for timing; the sub-pixel shift the simulator applies
    is left out (the stitcher still shifts every patch by its residual).
    """
    import numpy as np

    from compare_models.io.dataset import Dataset

    rng = np.random.default_rng(seed)
    step = 4 if patch_size <= 64 else 8
    per_side = int(np.ceil(n_positions**0.5))
    size = patch_size + step * per_side + 4
    noise = np.fft.fft2(rng.standard_normal((2, size, size)))
    freq = np.hypot(*np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size)))
    smooth = np.real(np.fft.ifft2(noise * np.exp(-((freq / 0.02) ** 2))))
    smooth /= np.abs(smooth).max(axis=(1, 2), keepdims=True)
    obj = ((0.75 + 0.25 * smooth[0]) * np.exp(1j * smooth[1])).astype(np.complex64)
    grid = patch_size / 2 + 2 + step * np.arange(per_side)
    xx, yy = np.meshgrid(grid, grid)
    positions = np.stack([xx.ravel(), yy.ravel()], axis=1)[:n_positions]
    positions = positions + rng.uniform(-0.5, 0.5, positions.shape)
    yy, xx = np.mgrid[:patch_size, :patch_size] - patch_size / 2
    probe = (np.hypot(yy, xx) < patch_size / 4).astype(np.complex64)
    probe *= np.sqrt(1e5 / np.sum(np.abs(probe) ** 2))
    windows = np.lib.stride_tricks.sliding_window_view(obj, (patch_size, patch_size))
    origins = np.round(positions - patch_size / 2).astype(int)
    amplitude = np.empty((n_positions, patch_size, patch_size), np.float32)
    for start in range(0, n_positions, 4096):
        o = origins[start:start + 4096]
        exit_waves = probe * windows[o[:, 1], o[:, 0]]
        far = np.fft.fftshift(np.fft.fft2(exit_waves, norm="ortho"), axes=(-2, -1))
        amplitude[start:start + 4096] = np.abs(far)
    return Dataset(diffraction_amplitude=amplitude, positions_xy=positions, probe=probe, object_truth=obj,
                   metadata={"note": "bench_gpu.py synthetic scan"})


def _start(args):
    """Choose the Keras backend before Keras is imported (as the CLI does)."""
    from compare_models.models.backend import start_backend

    if args.backend == "tensorflow":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return start_backend(args.backend, args.device)


def _gpu_peak_bytes(backend: str):
    """Peak bytes the framework's allocator held on the GPU (None on the CPU)."""
    try:
        if backend == "jax":
            import jax

            device = jax.local_devices()[0]
            if device.platform != "gpu":
                return None
            return int(device.memory_stats()["peak_bytes_in_use"])
        if backend == "torch":
            import torch

            return int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None
        import tensorflow as tf

        if not tf.config.list_logical_devices("GPU"):
            return None
        return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])
    except Exception:  # noqa: BLE001 (a figure we report when the framework gives it)
        return None


# -------------------------------------------------------------------------------- child: prepare


def _prepare_child(args) -> dict:
    """The test scan and the two bundles of one size (kept under --work and reused)."""
    from compare_models.io.npz import save_dataset
    from compare_models.models.bundle import save_bundle
    from compare_models.models.inputs import intensity_scale

    _start(args)
    from compare_models.models.baseline import build_baseline
    from compare_models.models.pinn import build_pinn

    test, n, patch_size = Path(args.test), args.n, args.patch_size
    made = {}
    start = time.perf_counter()
    if not test.exists():
        dataset = synthetic_scan(n, patch_size)
        small = dataset.subset(range(300))
        save_dataset(dataset, test)
        made["simulate_s"] = time.perf_counter() - start
        del dataset
    else:
        from compare_models.io.dispatch import load_dataset

        small = load_dataset(test).subset(range(300))
    scale = intensity_scale(small.diffraction_amplitude)
    pad = patch_size // 4
    for kind, path in (("pinn", args.pinn), ("baseline", args.baseline)):
        if Path(path).exists():
            continue
        model = (build_pinn(patch_size, 2, small.probe, pad=pad, seed=0) if kind == "pinn"
                 else build_baseline(patch_size, seed=0))
        save_bundle(model, path, kind=kind, patch_size=patch_size, gridsize=2 if kind == "pinn" else 1,
                    intensity_scale=scale, probe=small.probe, train_dataset=small,
                    config={"note": "untrained: seeded initial weights, for timing"}, history={"loss": []},
                    extra={"region_pad": pad, "region_pad_rule": "N/4 (benchmark)"} if kind == "pinn" else None)
    made["prepare_s"] = time.perf_counter() - start
    return made


# -------------------------------------------------------------------------------- child: compare


def _compare_child(args) -> dict:
    choice = _start(args)
    from compare_models.pipelines.compare import CompareConfig

    config = CompareConfig(
        test_data=args.test, output_dir=str(Path(args.work) / f"compare_{Path(args.test).stem}_{choice.name}"),
        pinn_dir=args.pinn, baseline_dir=args.baseline, overwrite=True, progress=False, half_sets=False,
        skip_registration=True, pinn_predict_batch_size=args.batch, baseline_predict_batch_size=args.batch,
        pinn_chunk_size=args.chunk, baseline_chunk_size=args.chunk, backend=choice.name, device=args.device,
    ).validate()
    total, timings, arms = timed_compare(config)
    streams = {key: arm.get("streaming", {}) for key, arm in arms.items()}
    return {"total": total, "timings_s": timings, "streaming": streams, "gpu_peak_bytes": _gpu_peak_bytes(choice.name)}


# -------------------------------------------------------------------------------- child: bare


def conv_flops(model) -> int:
    """FLOPs of one sample through the model's ``Conv2D`` layers: 2 * H_out * W_out * k_h * k_w *
    C_in * C_out each (multiply and add; bias and activations not counted)."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, height, width, c_out = layer.output.shape
            k_h, k_w, c_in, _ = layer.kernel.shape
            total += 2 * height * width * k_h * k_w * c_in * c_out
    return int(total)


def _bare_child(args) -> dict:
    """Seconds per position of each network's compiled forward pass, inputs on the device."""
    choice = _start(args)
    result = {}
    for key, model, parts in bare_inputs(args.test, {"pinn": args.pinn, "baseline": args.baseline},
                                         args.bare_positions, args.batch):
        result[key] = {"conv_flops_per_position": conv_flops(model.model),
                       **time_forward(choice.name, model, parts, args.batch)}
    result["gpu_peak_bytes"] = _gpu_peak_bytes(choice.name)
    return result


# -------------------------------------------------------------------------------- the machine


def gpu_description() -> dict:
    """Name, SM count, max SM clock and float32 peak of GPU 0 (empty without one)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,clocks.max.sm,memory.total,driver_version",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=30)
        name, clock_mhz, memory_mib, driver = (v.strip() for v in out.stdout.splitlines()[0].split(","))
    except (OSError, IndexError, ValueError, subprocess.SubprocessError):
        return {}
    info = {"name": name, "max_sm_clock_mhz": float(clock_mhz), "memory_mib": float(memory_mib), "driver": driver}
    try:
        probe = "import torch; print(torch.cuda.get_device_properties(0).multi_processor_count)"
        sms = int(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120).stdout)
        info["sms"] = sms
        info["fp32_peak_tflops"] = sms * float(clock_mhz) * 1e6 * 256 / 1e12
    except (ValueError, subprocess.SubprocessError):
        pass
    return info


def _run_child(mode: str, argv: list[str]) -> dict:
    return run_child(__file__, mode, argv, error=RuntimeError)  # main() keeps what was measured


def _bench_one(args, backend: str, n: int, patch_size: int) -> dict:
    work = args.work
    argv = ["--work", str(work), "--test", str(work / f"test_{n}_n{patch_size}.npz"),
            "--pinn", str(work / f"pinn_n{patch_size}"), "--baseline", str(work / f"baseline_n{patch_size}"),
            "--backend", backend, "--device", args.device, "--batch", str(args.batch), "--chunk", str(args.chunk),
            "--bare-positions", str(args.bare_positions), "--n", str(n), "--patch-size", str(patch_size)]
    made = _run_child("prepare", argv)
    made.pop("peak_rss_gib")
    compare, bare = _run_child("compare", argv), _run_child("bare", argv)
    rss, bare_rss = compare.pop("peak_rss_gib"), bare.pop("peak_rss_gib")
    timings = compare["timings_s"]
    row = {"backend": backend, "n": n, "patch_size": patch_size, "batch": args.batch, "made": made,
           "total_s": compare["total"], "timings_s": timings, "streaming": compare["streaming"],
           "peak_rss_gib": rss, "bare_rss_gib": bare_rss, "gpu_peak_bytes": compare["gpu_peak_bytes"],
           "bare_gpu_peak_bytes": bare["gpu_peak_bytes"]}
    for key in ("pinn", "baseline"):
        row[f"{key}_bare_s"] = bare[key]["seconds_per_position"] * n
        row[f"{key}_stream_s"] = timings[f"{key}.predict_stitch"]
        row[f"{key}_compile_s"] = timings.get(f"{key}.predict_stitch_compile")
        for flops in ("conv_flops_per_position", "xla_flops_per_position"):
            if flops in bare[key]:
                row[f"{key}_{flops}"] = bare[key][flops]
        # The convolutions' count: XLA's cost analysis on a GPU leaves out the cuDNN convolutions
        # it calls (it reported 0.2-1 MFLOP a position there, against 0.6 GFLOP of convolutions).
        row[f"{key}_bare_tflops"] = bare[key]["conv_flops_per_position"] / bare[key]["seconds_per_position"] / 1e12
    return row


def _print_table(rows: list[dict], gpu: dict) -> None:
    peak = gpu.get("fp32_peak_tflops")
    print(f"\nGPU: {gpu.get('name', 'none')} (SMs {gpu.get('sms')}, max SM clock {gpu.get('max_sm_clock_mhz')} MHz, "
          f"FP32 peak {peak and round(peak, 1)} TFLOP/s); host cores {os.cpu_count()}")
    head = (f"{'backend':<11}{'n':>7}{'N':>5}{'batch':>6}{'wall s':>9}{'stream s':>10}{'bare s':>9}{'str/bare':>9}"
            f"{'wall/bare':>10}{'compile s':>10}{'RSS GiB':>8}{'GPU GiB':>8}{'TFLOP/s':>9}{'of peak':>8}")
    print(head)
    for r in rows:
        bare = r["pinn_bare_s"] + r["baseline_bare_s"]
        stream = r["pinn_stream_s"] + r["baseline_stream_s"]
        compile_s = (r["pinn_compile_s"] or 0) + (r["baseline_compile_s"] or 0)
        gpu_gib = (r["gpu_peak_bytes"] or 0) / 2**30
        # Achieved FLOP/s of the bare forward passes of both networks together (convolutions).
        flops = sum(r[f"{k}_conv_flops_per_position"] for k in ("pinn", "baseline"))
        tflops = flops * r["n"] / bare / 1e12
        share = f"{100 * tflops / peak:.1f}%" if peak else ""
        print(f"{r['backend']:<11}{r['n']:>7}{r['patch_size']:>5}{r['batch']:>6}{r['total_s']:>9.2f}{stream:>10.2f}"
              f"{bare:>9.2f}{stream / bare:>9.3f}{r['total_s'] / bare:>10.3f}{compile_s:>10.2f}{r['peak_rss_gib']:>8.2f}"
              f"{gpu_gib:>8.2f}{tflops:>9.2f}{share:>8}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("bench_gpu_output"))
    parser.add_argument("--sizes", default="5088:64,81408:64,20352:128", help="n:N,... (default %(default)s)")
    parser.add_argument("--backend", default="jax", help="one or more of tensorflow,jax,torch (comma-separated)")
    parser.add_argument("--backend-sizes", default=None,
                        help="sizes for the backends after the first (default: the first size only)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"])
    parser.add_argument("--batch", type=int, default=256, help="samples per compiled call, both networks")
    parser.add_argument("--chunk", type=int, default=4096, help="positions whose inputs are built at once")
    parser.add_argument("--bare-positions", type=int, default=8192, help="positions the bare passes are timed on")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--child", choices=["prepare", "compare", "bare"], help=argparse.SUPPRESS)
    for name in ("test", "pinn", "baseline"):
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--patch-size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child = {"prepare": _prepare_child, "compare": _compare_child, "bare": _bare_child}[args.child]
        print_child_report(child(args))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    gpu = gpu_description()
    print(f"GPU: {gpu}", flush=True)
    backends = args.backend.split(",")
    sizes = [tuple(int(v) for v in item.split(":")) for item in args.sizes.split(",")]
    later = [tuple(int(v) for v in item.split(":")) for item in (args.backend_sizes or args.sizes.split(",")[0]).split(",")]
    rows, failures = [], []
    for number, backend in enumerate(backends):
        for n, patch_size in (sizes if number == 0 else later):
            print(f"{backend}: {n} positions at N = {patch_size} ...", flush=True)
            try:
                rows.append(_bench_one(args, backend, n, patch_size))
            except RuntimeError as exc:  # keep what was measured
                failures.append(f"{backend} {n}:{patch_size}: {exc}")
                print(failures[-1], flush=True)
            if args.json:
                args.json.write_text(json.dumps({"gpu": gpu, "rows": rows, "failures": failures}, indent=1))
            if rows:
                _print_table(rows[-1:], gpu)
    _print_table(rows, gpu)
    for failure in failures:
        print("FAILED:", failure)


if __name__ == "__main__":
    main()
