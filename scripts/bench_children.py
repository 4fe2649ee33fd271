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

__all__ = ["bare_inputs", "peak_rss_gib", "print_child_report", "run_child", "time_forward", "timed_compare"]


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


def bare_inputs(test_path, model_paths: dict, max_positions: int, batch: int):
    """For each ``key: path`` of ``model_paths``: ``(key, model, parts)``, the loaded model and
    its inputs for the whole batches of the test scan's first ``max_positions`` positions."""
    import numpy as np

    from compare_models.io.dispatch import load_dataset
    from compare_models.models.loading import load_model

    dataset = load_dataset(test_path)
    n = min(dataset.n_positions, max_positions)
    subset = dataset.subset(range(n))
    for key, path in model_paths.items():
        model = load_model(path)
        yield key, model, model.prepare_inputs(subset).build(np.arange(n // batch * batch))


def time_forward(backend: str, model, parts, batch: int) -> dict:
    """Seconds of the compiled forward pass over ``parts`` (whole batches, put on the device
    beforehand) on the Keras ``backend``, in full float32, after two warm-up calls; for JAX also
    XLA's FLOP count of one batch."""
    import time

    from compare_models.models import inference
    from compare_models.models.backend import float32_precision

    n_batches = parts[0].shape[0] // batch
    entry = {}
    if backend == "jax":
        import jax

        variables, call = inference._jax_stateless(model)
        forward = jax.jit(lambda variables, *inputs: inference._network_patches(
            model, batch, lambda x: call(variables, x))(*inputs))
        batches = [jax.device_put([p[i * batch:(i + 1) * batch] for p in parts]) for i in range(n_batches)]
        with float32_precision("jax"):
            cost = forward.lower(variables, *batches[0]).compile().cost_analysis()
            cost = cost[0] if isinstance(cost, (list, tuple)) else cost
            entry["xla_flops_per_position"] = float(cost.get("flops", float("nan"))) / batch

        def run(inputs):
            return forward(variables, *inputs)

        wait = jax.block_until_ready
    else:
        predictor = inference.build_predictor(model, batch, jit=True)

        def run(inputs):
            return predictor(*inputs)

        if backend == "torch":
            import torch

            device = inference._torch_device()
            batches = [[torch.as_tensor(p[i * batch:(i + 1) * batch], device=device) for p in parts]
                       for i in range(n_batches)]

            def wait(out):
                if out.is_cuda:
                    torch.cuda.synchronize()
                return out
        else:
            import tensorflow as tf

            batches = [[tf.constant(p[i * batch:(i + 1) * batch]) for p in parts] for i in range(n_batches)]

            def wait(out):
                return out.numpy()
    with float32_precision(backend):
        wait(run(batches[0]))  # compile
        wait(run(batches[0]))
        start = time.perf_counter()
        for inputs in batches:
            out = run(inputs)
        wait(out)
        seconds = time.perf_counter() - start
    return {**entry, "seconds_per_position": seconds / (n_batches * batch), "timed_positions": n_batches * batch}
