"""Making a comparison's arms: each network's and pty-chi's image on the ground-truth grid.

* :func:`network_arm`: load a model, predict every scan position and stitch the patches in one
  streaming pass (and, with half sets, each half's image);
* :func:`ptychi_arm`: load a reconstruction file and place it in the object frame;
* :func:`computation_time`, :func:`compile_time`: what a user waits for per image, and the
  one-off compilation, from an arm's timings;
* :class:`Timer`, :func:`time_excluding_compile`: the stage timing every step shares.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

from ..errors import MetricError
from ..report.records import ArmImage
from ..report.vocabulary import MODEL_NAMES
from .compare_config import resolve_crop

__all__ = ["Timer", "time_excluding_compile", "network_arm", "ptychi_arm", "computation_time", "compile_time"]

log = logging.getLogger("compare_models.compare")


class Timer:
    """Runs and times stages: ``timer(stage, func, *args, **kwargs)``; ``timings`` holds
    stage -> seconds, each logged."""

    def __init__(self):
        self.timings: dict[str, float] = {}

    def __call__(self, stage: str, func: Callable, *args, **kwargs):
        start = time.perf_counter()
        result = func(*args, **kwargs)
        self.record(stage, time.perf_counter() - start)
        return result

    def record(self, stage: str, seconds: float) -> None:
        self.timings[stage] = float(seconds)
        log.info("%s: %.3f s", stage, seconds)


def time_excluding_compile(warm_up: Callable[[], object], run: Callable[[], object]):
    """Time ``run()`` without the one-off compilation that its first call would pay.

    ``warm_up()`` must exercise the same compiled code as ``run()`` on a small input (one batch,
    one chunk). It is called twice: the first call pays every one-off cost (tracing, XLA
    compilation), the second is warm, so their difference is the compile time. Then ``run()``
    is timed, warm.

    Returns
    -------
    (result, run_s, compile_s)
        ``run()``'s result, its wall time in seconds, and the one-off compile time in seconds
        (``max(0, first warm-up - second warm-up)``).
    """
    start = time.perf_counter()
    warm_up()
    cold = time.perf_counter() - start
    start = time.perf_counter()
    warm_up()
    warm = time.perf_counter() - start
    start = time.perf_counter()
    result = run()
    return result, time.perf_counter() - start, max(0.0, cold - warm)


# --------------------------------------------------------------------------------------------
# Networks


def network_arm(key: str, model_path: str, dataset, shape, config, split=None) -> ArmImage:
    """A network's image of the test scan (and, with ``split``, its two half images).

    Parameters
    ----------
    key : {"pinn", "baseline"}
    model_path : str
        A bundle directory or one of PtychoPINN's model files.
    dataset : compare_models.io.dataset.Dataset
    shape : tuple (H, W)
        The object grid.
    config : CompareConfig
    split : compare_models.imaging.halfsets.HalfSplit or None
        The half-set split, or None for no half images.
    """
    from ..models.loading import detect_model_source, load_model

    timer = Timer()
    source = detect_model_source(model_path)
    log.info("%s: %s at %s", MODEL_NAMES[key], source.description, source.path)
    model = timer(f"{key}.load", load_model, model_path, device=config.device)
    log.info("%s: loaded %s (kind %s, N = %d, gridsize %d)", MODEL_NAMES[key], model.model_format,
             model.kind, model.patch_size, model.gridsize)
    model.check_compatible(dataset)
    run = _StreamRun(key, model, dataset, shape, config, split)
    stream = run.full_image(timer)
    image, weights = timer(f"{key}.stitch_finish", run.stitcher.result, 0)
    described = model.describe()
    halves = None
    if split is not None:  # half-set FRC: the same model and stitching on each half
        halves = run.half_images(stream)
        for stage, value in halves.timings_s.items():
            timer.record(stage, value)
    details = _network_details(model_path, source, model, stream, run, described, dataset, config)
    return ArmImage(key, np.asarray(image, np.complex64), np.asarray(weights) > 0, timer.timings, details, halves)


class _StreamRun:
    """One network's streaming pass: the stitcher, its compiled step and the settings.

    Canvas 0 is the full image; with half sets canvases 1 and 2 are the halves' images: a
    gridsize-1 patch depends on its own pattern only, so it goes to its half's canvas in the
    same pass; gridsize-2 halves form their own groups and are streamed afterwards
    (:func:`compare_models.pipelines.compare_halfsets.network_half_images`).
    """

    def __init__(self, key, model, dataset, shape, config, split):
        from ..imaging.stitching import Stitcher
        from ..models import inference

        self.key, self.model, self.dataset, self.config, self.split = key, model, dataset, config, split
        self.crop = resolve_crop(config, dataset.patch_size)
        self.batch = getattr(config, f"{key}_predict_batch_size")
        self.chunk = getattr(config, f"{key}_chunk_size")
        self.per_position = model.gridsize == 1
        self.stitcher = Stitcher(
            shape, dataset.patch_size, crop=self.crop, backend=inference.stitch_backend(model), chunk=config.stitch_chunk_size,
            interpolation=config.stitch_interpolation, n_canvases=1 if split is None else 3,
            device=getattr(model, "device", None),
        )
        self.canvases = 0
        if split is not None and self.per_position:
            from .compare_halfsets import half_canvases

            self.canvases = half_canvases(split, dataset.n_positions)
        self.step = inference.stream_step(
            model, self.batch, self.stitcher, n_targets=1 if np.ndim(self.canvases) == 0 else 2,
            jit=config.predict_xla,
        )

    def _stream(self, dataset, canvases):
        from ..models import inference

        return inference.predict_and_stitch(
            self.model, dataset, self.stitcher, canvases=canvases, batch_size=self.batch, chunk=self.chunk,
            progress=self.config.progress, step=self.step,
        )

    def full_image(self, timer: Timer):
        """Predict and stitch every position. computation_time_s is what a user waits for per
        image, without one-off compilation (docs/design.md): tracing and XLA compilation are paid by
        warm-up calls on zeros and timed apart (``*_compile``)."""
        key = self.key
        stream, seconds, compile_s = time_excluding_compile(
            self.step.warm_up, lambda: self._stream(self.dataset, self.canvases)
        )
        timer.record(f"{key}.predict_stitch", seconds)
        timer.record(f"{key}.predict_stitch_compile", compile_s)
        if stream.n_patches != self.dataset.n_positions:
            raise MetricError(f"{MODEL_NAMES[key]}: {stream.n_patches} patches for {self.dataset.n_positions} positions")
        return stream

    def half_images(self, stream):
        """The two half images, from canvases 1 and 2 (:func:`network_half_images`)."""
        from .compare_halfsets import network_half_images

        def predict_half(number, indices):
            return self._stream(self.dataset.subset(indices), number).positions_xy

        return network_half_images(
            self.split, per_position=self.per_position, stitcher=self.stitcher, positions_xy=stream.positions_xy,
            predict_half=predict_half, key=self.key, crop=self.crop,
        )


def _network_details(model_path, source, model, stream, run: _StreamRun, described, dataset, config) -> dict:
    """A network arm's provenance: the model, its inputs, the stitching and the streaming."""
    details = {
        "label": described["label"],
        "architecture": described["architecture"],
        "training_protocol": described["training_protocol"],
        "bundle": str(model_path),
        "model_path": str(source.path),
        "model_format": model.model_format,
        "kind": model.kind,
        "gridsize": model.gridsize,
        "n_patches": int(stream.n_patches),
        "patch_positions": stream.input_details.get("patch_position", "scan position"),
        "inputs": dict(stream.input_details),
        "stitch_crop_size": run.crop,
        "stitch_interpolation": config.stitch_interpolation,
        "predict_batch_size": run.batch,
        "chunk_size": run.chunk,
        "streaming": dict(stream.stream),
        "model": described,
        "patch_size": dataset.patch_size,
    }
    if "bundle_metadata" in described:
        details["bundle_metadata"] = described["bundle_metadata"]
    return details


# --------------------------------------------------------------------------------------------
# pty-chi


def ptychi_arm(path: str, shape, dataset) -> ArmImage:
    """pty-chi's reconstruction placed on the object grid (by its recorded frame, by
    PtychoPINN's placement rule, or left for registration)."""
    from ..io.reconstruction import (
        load_reconstruction,
        place_by_ptychopinn_rule,
        place_in_object_frame,
    )

    timer = Timer()
    recon = timer("ptychi.load", load_reconstruction, path)
    recon = place_by_ptychopinn_rule(recon, dataset.positions_xy, dataset.patch_size)
    log.info("PtyChi: written by %s; placed by %s%s", recon.writer, recon.placed_by,
             f" ({recon.placement_rule})" if recon.placement_rule else "")
    if recon.initialisation == "unknown":
        log.warning(
            "PtyChi: initialisation unknown: %s does not record how its object started (PtychoPINN's "
            "pty-chi script starts from the ground-truth object); its scores may not be independent "
            "of the ground truth", path,
        )
    image, valid = timer("ptychi.place", place_in_object_frame, recon, shape)
    details = {
        "label": recon.label,
        "architecture": "iterative",
        "path": str(path),
        "algorithm": recon.algorithm,
        "writer": recon.writer,
        "placed_by": recon.placed_by,
        "placement_rule": recon.placement_rule,
        "canvas_origin_xy": recon.canvas_origin_xy,
        "initialisation": recon.initialisation,
        "timestamp": recon.timestamp,
        "reconstruction_wall_time_s": recon.wall_time_s,
        "metadata": recon.metadata,
    }
    timings = dict(timer.timings)
    if recon.wall_time_s is not None:
        timings["ptychi.reconstruction"] = float(recon.wall_time_s)
    return ArmImage("ptychi", np.asarray(image, np.complex64), np.asarray(valid, bool), timings, details)


# --------------------------------------------------------------------------------------------
# Timings


def computation_time(arm: ArmImage) -> float | None:
    """What a user waits for to get this arm's image from the diffraction data, without
    one-off compilation."""
    if arm.key == "ptychi":
        return arm.timings_s.get("ptychi.reconstruction")
    return arm.timings_s[f"{arm.key}.predict_stitch"] + arm.timings_s[f"{arm.key}.stitch_finish"]


def compile_time(arm: ArmImage) -> float | None:
    """One-off compilation paid before the first image (tracing, XLA); None for pty-chi."""
    if arm.key == "ptychi":
        return None
    return arm.timings_s[f"{arm.key}.predict_stitch_compile"]
