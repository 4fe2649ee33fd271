"""Benchmark stitching backends against pad-and-translate and a memory-bandwidth floor.

Not a test. Prints, per crop size M, a Markdown table: median wall time, patches per second,
peak extra resident memory, and ratios, for

- ``xla``: ``compare_models.imaging.stitching.stitch(..., backend="xla")`` with
  ``--interpolation`` (default: the stitcher's default, ``fourier``);
- ``numpy``: the NumPy reference backend, same interpolation;
- ``pad-translate``: the replaced tool's method, every patch zero-padded to the full canvas and
  bilinearly translated there (O(n * canvas^2)); timed on a subset and scaled to n;
- ``floor``: the bytes of every patch's (M+1)^2 complex64 window read once and written once,
  over the copy bandwidth measured here with ``np.copyto``.

Usage::

    .venv/bin/python scripts/bench_stitch.py            # n = 5088, N = 64, M in {20, 64}
    .venv/bin/python scripts/bench_stitch.py --n 1000 --reps 3 --crops 64
    .venv/bin/python scripts/bench_stitch.py --interpolation bilinear
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from compare_models.imaging.stitching import DEFAULT_CHUNK, stitch


def scan_positions(n, n_side, rng, side=72, step=4.5, jitter=0.5):
    """First n points of a side x side grid with ``step`` px spacing, jittered; (n, 2) x, y."""
    yy, xx = np.mgrid[0:side, 0:side]
    grid = np.stack([xx.ravel(), yy.ravel()], axis=1)[:n] * step + n_side / 2 + 2
    return grid + rng.uniform(-jitter, jitter, grid.shape)


def pad_and_translate(patches, positions_xy, shape, crop):
    """The replaced tool's method: pad each patch to the canvas, translate the whole canvas.

    Bilinear translation of the full (H, W) canvas per patch, for values and for ones.
    """
    height, width = shape
    n_side = patches.shape[1]
    s0 = n_side // 2 - crop // 2
    total = np.zeros(shape, np.complex64)
    weights = np.zeros(shape, np.float32)
    # The padded patch sits with its pixel (0, 0) at canvas (0, 0); translate by the origin.
    origin = np.asarray(positions_xy, float) - n_side / 2 + s0
    for patch, (ox, oy) in zip(patches, origin, strict=True):
        value = np.zeros((height + 1, width + 1), np.complex64)
        ones = np.zeros((height + 1, width + 1), np.float32)
        value[:crop, :crop] = patch[s0 : s0 + crop, s0 : s0 + crop]
        ones[:crop, :crop] = 1
        iy, ix = int(np.floor(oy)), int(np.floor(ox))
        fy, fx = oy - iy, ox - ix
        for arr, acc in ((value, total), (ones, weights)):
            moved = np.roll(arr, (iy, ix), axis=(0, 1))
            rows = (1 - fy) * moved + fy * np.roll(moved, 1, axis=0)
            full = (1 - fx) * rows + fx * np.roll(rows, 1, axis=1)
            acc += full[:height, :width]
    return np.where(weights > 0, total / np.maximum(weights, 1e-30), 0), weights


def copy_bandwidth(nbytes=256 * 2**20, reps=5):
    """Bytes per second of ``np.copyto`` (counting read + write) on ``nbytes`` buffers."""
    src = np.ones(nbytes // 8)
    dst = np.empty_like(src)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - t0)
    return 2 * nbytes / min(times)


def _rss_kib(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def timed(fn, reps):
    """(median seconds, peak extra RSS in MB) of ``fn()`` after one warm-up call."""
    fn()
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset this process's peak-RSS counter (Linux)
        base = _rss_kib("VmRSS:")
    except OSError:
        base = None
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    peak = (_rss_kib("VmHWM:") - base) / 1024 if base is not None else float("nan")
    return float(np.median(times)), max(peak, 0.0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=5088)
    parser.add_argument("--patch-size", type=int, default=64)
    parser.add_argument("--crops", type=int, nargs="+", default=[20, 64])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--chunk", type=int, default=DEFAULT_CHUNK)
    parser.add_argument("--interpolation", choices=["fourier", "bilinear"], default="fourier",
                        help="stitcher interpolation timed for xla and numpy (default: the stitcher's)")
    parser.add_argument("--naive-subset", type=int, default=256,
                        help="patches timed for pad-and-translate (scaled to n)")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    n, n_side = args.n, args.patch_size
    pos = scan_positions(n, n_side, rng)
    shape = (int(np.ceil(pos[:, 1].max() + n_side / 2 + 2)), int(np.ceil(pos[:, 0].max() + n_side / 2 + 2)))
    patches = (rng.standard_normal((n, n_side, n_side)) + 1j * rng.standard_normal((n, n_side, n_side))).astype(np.complex64)
    bandwidth = copy_bandwidth()
    interp = args.interpolation
    print(f"n = {n}, N = {n_side}, canvas (H, W) = {shape}, chunk = {args.chunk}, "
          f"interpolation = {interp}, cores = {os.cpu_count()}")
    print(f"copy bandwidth (np.copyto, read + write): {bandwidth / 1e9:.1f} GB/s")

    for crop in args.crops:
        k_win = crop + 1
        floor_bytes = n * k_win**2 * 8 * 2
        floor_s = floor_bytes / bandwidth
        sub = min(args.naive_subset, n)
        t_xla, m_xla = timed(lambda c=crop: stitch(patches, pos, shape, crop=c, backend="xla", chunk=args.chunk,
                                                   interpolation=interp), args.reps)
        t_np, m_np = timed(lambda c=crop: stitch(patches, pos, shape, crop=c, backend="numpy", chunk=args.chunk,
                                                 interpolation=interp), args.reps)
        t_sub, m_naive = timed(lambda c=crop, s=sub: pad_and_translate(patches[:s], pos[:s], shape, c), max(1, args.reps // 3))
        t_naive = t_sub * n / sub
        # Agreement check: the backends stitch the same image; pad-and-translate is bilinear.
        a, _ = stitch(patches, pos, shape, crop=crop, backend="xla", chunk=args.chunk, interpolation=interp)
        b, _ = stitch(patches, pos, shape, crop=crop, backend="numpy", interpolation=interp)
        ref, _ = stitch(patches[:sub], pos[:sub], shape, crop=crop, backend="numpy", interpolation="bilinear")
        naive, _ = pad_and_translate(patches[:sub], pos[:sub], shape, crop)
        print(f"\nM = {crop}: floor {floor_bytes / 1e6:.0f} MB of windows -> {floor_s * 1e3:.1f} ms; "
              f"max |xla - numpy| = {np.abs(a - b).max():.1e}, max |pad-translate - numpy| "
              f"({sub} patches) = {np.abs(naive - ref).max():.1e}")
        print("| method | median wall (s) | patches/s | peak extra RSS (MB) | vs xla | vs floor |")
        print("|---|---|---|---|---|---|")
        rows = [("xla", t_xla, m_xla), ("numpy", t_np, m_np),
                (f"pad-translate ({sub} timed, x{n / sub:.1f})", t_naive, m_naive)]
        for name, t, mem in rows:
            print(f"| {name} | {t:.4f} | {n / t:,.0f} | {mem:.0f} | {t / t_xla:.2f}x | {t / floor_s:.1f}x |")
        print(f"| floor | {floor_s:.4f} | {n / floor_s:,.0f} | | {floor_s / t_xla:.2f}x | 1.0x |")


if __name__ == "__main__":
    main()
