"""Predict and stitch a PyTorch-backend model's patches on its device, a batch at a time.

The streaming counterpart of :func:`compare_models.models.inference.predict_and_stitch` for
:class:`~.model.LoadedTorchPinn`: each batch of groups goes through the generator and, without
leaving the device, through the stitcher's torch kernel
(:meth:`~compare_models.imaging.stitching.Stitcher.guarded_kernel`, an ``index_add_`` into the
canvas), under ``torch.no_grad()`` with TF32 off. Patch c of a group is added at the scan
position of member c; the fillers of the last group (positions already in another group) get
gain 0, so every scan position is stitched exactly once (:mod:`.inputs`). Nothing of size
n × N² is held on the host: the inputs are built a chunk at a time in a background thread
(pinned memory when the device is a GPU) while the previous chunk runs; the placement of every
patch (O(n)) is computed once, recorded in the stitcher's weights and sent to the device.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ...errors import ConfigError

__all__ = ["TorchPredictStitchStep", "predict_and_stitch_torch"]


class TorchPredictStitchStep:
    """One step: a batch of groups (B, C, N, N) -> C·B patches -> added to the stitcher's canvases.

    Parameters
    ----------
    model : LoadedTorchPinn
    batch_size : int
        Groups per call.
    stitcher : compare_models.imaging.stitching.Stitcher
        ``backend="torch"``, its canvas on the model's device.
    n_targets : int
        Canvases each patch is added to (e.g. 2: the full image and its half-set image).
    """

    jit = False  # nothing is compiled (eager torch), kept for the streaming record
    fallback_reason = None

    def __init__(self, model, batch_size: int, stitcher, *, n_targets: int = 1):
        if stitcher.backend != "torch":
            raise ConfigError(f"a PyTorch model streams into a 'torch' stitcher, got {stitcher.backend!r}")
        if str(stitcher.device) != str(model.device):
            raise ConfigError(f"the stitcher's canvas is on {stitcher.device}, the model on {model.device}")
        self.model, self.batch_size, self.stitcher = model, int(batch_size), stitcher
        self.n_targets = int(n_targets)
        self._add = stitcher.guarded_kernel(self.batch_size * model.channels, self.n_targets)

    def _run(self, canvas, x, geometry):
        import torch

        from .device import full_float32

        with torch.no_grad(), full_float32():
            patches = self.model.forward(x)
            n_side = patches.shape[-1]
            return self._add(canvas, patches.reshape(-1, n_side, n_side), *geometry)

    def warm_up(self) -> None:
        """One all-zero batch on a scratch canvas (the stitcher's is untouched): cuDNN's
        algorithm choice and CUDA's first-call costs are paid here."""
        import torch

        device, b, c, n = self.model.device, self.batch_size, self.model.channels, self.model.patch_size
        canvas = torch.zeros(self.stitcher.canvas_shape, dtype=torch.float32, device=device)
        x = torch.zeros((b, c, n, n), dtype=torch.float32, device=device)
        rows, t = b * c, self.n_targets
        geometry = (
            torch.full((rows, 2), self.stitcher.crop + 1, dtype=torch.int32, device=device),
            torch.zeros((rows, 2), dtype=torch.float32, device=device),
            torch.zeros((rows, t), dtype=torch.int32, device=device),
            torch.zeros((rows, t), dtype=torch.float32, device=device),
        )
        self._run(canvas, x, geometry)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def __call__(self, x, geometry) -> None:
        """Add one batch: ``x`` (b, C, N, N) float32 on the device (b <= batch size),
        ``geometry`` (origins, fractions, targets, gains) of its b·C patches, on the device."""
        canvas, nonfinite = self._run(self.stitcher.canvas, x, geometry)
        self.stitcher.canvas = canvas
        self.stitcher.count_nonfinite(nonfinite)


def predict_and_stitch_torch(model, dataset, stitcher, *, canvases=0, batch_size: int = 32, chunk: int = 1024,
                             progress: bool = True, step: TorchPredictStitchStep | None = None):
    """Predict one patch per scan position of ``dataset`` and stitch it on the device.

    Parameters
    ----------
    model : LoadedTorchPinn
    dataset : compare_models.io.dataset.Dataset
        Its N must match the model's; its patterns are read a chunk at a time.
    stitcher : compare_models.imaging.stitching.Stitcher
        ``backend="torch"`` on the model's device.
    canvases : int or array_like (M,) or (M, T) of int
        The canvas (or T canvases, -1 for none) each scan position's patch is added to.
    batch_size : int
        Groups per forward pass (C·batch_size patches).
    chunk : int
        Scan positions whose inputs are built at once, in a background thread while the
        previous chunk runs (rounded to whole batches of groups).
    progress : bool
        Show a tqdm bar.
    step : TorchPredictStitchStep, optional
        Built (and warmed up) by the caller for this model, batch size, stitcher and T.

    Returns
    -------
    compare_models.models.inference.StreamResult
        ``positions_xy`` are the scan positions (where each position's patch sat).

    Raises
    ------
    BundleError
        The data does not fit the model (N, too few positions).
    StitchError
        A patch off the grid (before any inference), or non-finite patches (at
        ``stitcher.result``).
    """
    import torch
    from tqdm.auto import tqdm

    from ..inference import PredictionCountError, StreamResult

    if int(batch_size) < 1 or int(chunk) < 1:
        raise ValueError(f"batch_size and chunk must be >= 1, got {batch_size}, {chunk}")
    batch_size = int(batch_size)
    begun = time.perf_counter()
    model.check_compatible(dataset)
    inputs = model.prepare(dataset)
    m, c = inputs.n_positions, model.channels
    if m != dataset.n_positions:
        raise PredictionCountError(f"{m} positions prepared for {dataset.n_positions}")
    slots = inputs.groups.reshape(-1)  # (G·C,): the scan position of every patch, group by group
    # Placement first: a patch off the grid is refused before any inference.
    origins, fractions = stitcher.place(inputs.positions_xy[slots])
    targets, gains = stitcher.targets(canvases, m)
    targets, gains = targets[slots], gains[slots] * inputs.valid.reshape(-1, 1)
    if int(inputs.valid.sum()) != m:
        raise PredictionCountError(f"{int(inputs.valid.sum())} patches kept for {m} positions")
    if step is None:
        step = TorchPredictStitchStep(model, batch_size, stitcher, n_targets=targets.shape[1])
        step.warm_up()
    elif (step.batch_size, step.n_targets, step.stitcher) != (batch_size, targets.shape[1], stitcher):
        raise ConfigError("predict_and_stitch_torch: step was built for another batch size, T or stitcher")
    stitcher.record_weights(origins, fractions, targets, gains)
    device = model.device
    geometry = tuple(torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in (
        origins, fractions.astype(np.float32), targets.astype(np.int32), gains.astype(np.float32)))
    pin = device.type == "cuda"
    prepared_s = time.perf_counter() - begun
    groups_per_chunk = max(batch_size, -(-max(1, int(chunk) // c) // batch_size) * batch_size)
    chunk_starts = list(range(0, inputs.n_groups, groups_per_chunk))

    def build(start):
        """The chunk's inputs as one (pinned) host tensor (runs in the prefetch thread)."""
        index = np.arange(start, min(inputs.n_groups, start + groups_per_chunk))
        x = torch.from_numpy(inputs.build(index))
        return (x.pin_memory() if pin else x), index

    waited = 0.0
    n_batches = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch") as pool, tqdm(
        total=m, desc=f"predict+stitch {model.kind} (torch, {device.type})", unit="pos", disable=not progress
    ) as bar:
        pending = pool.submit(build, chunk_starts[0])
        for number in range(len(chunk_starts)):
            start = time.perf_counter()
            host, index = pending.result()
            waited += time.perf_counter() - start
            if number + 1 < len(chunk_starts):
                pending = pool.submit(build, chunk_starts[number + 1])
            on_device = host.to(device, non_blocking=pin)
            for first in range(0, index.size, batch_size):
                last = min(index.size, first + batch_size)
                rows = slice((index[first]) * c, (index[last - 1] + 1) * c)
                step(on_device[first:last], tuple(g[rows] for g in geometry))
                n_batches += 1
                bar.update(int(inputs.valid[index[first:last]].sum()))
            del on_device
    if device.type == "cuda":  # the pass ends when its last kernel has run, not when it was queued
        torch.cuda.synchronize(device)
    return StreamResult(
        n_patches=m,
        positions_xy=np.array(inputs.positions_xy, dtype=np.float64),
        input_details=dict(inputs.details),
        stream={
            "backend": "torch",
            "device": str(device),
            "batches": n_batches,
            "batch_size": batch_size,
            "batch_unit": "groups",
            "chunk": groups_per_chunk * c,
            "network_xla": False,
            "xla_fallback_reason": None,
            "input_wait_s": round(waited, 3),
            "prepare_s": round(prepared_s, 3),
        },
    )
