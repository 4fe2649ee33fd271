"""The compare job: models and data in, a complete comparison directory out.

Stages (each timed and logged): load the test data, then per arm (PINN, baseline, pty-chi) load
the model or reconstruction, predict every scan position in fixed-shape batches, stitch the
patches in the ground-truth frame; then score every arm on one footing (:func:`evaluate`):
estimate each arm's shift over the pixels of the scan's hull where every arm has data, erode
that region by the largest shift plus a margin, shift each whole image, fit its gauge and
compute the metrics on that one region; and write the report. docs/how-the-numbers-are-made.md
says how each number is made.

Half-set FRC (:mod:`compare_models.pipelines.compare_halfsets`), with or without ground truth:
every arm also gets two images from two disjoint halves of the scan, and their FRC.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np

from ..errors import ConfigError, DatasetError, MetricError
from ..report.staging import StagedOutput
from ..report.writers import (
    GROUND_TRUTH_TABLE_TITLE,
    HALF_SET_TABLE_TITLE,
    MODEL_NAMES,
    format_half_set_table,
    format_metrics_table,
    format_scoring_summary,
)

__all__ = ["CompareConfig", "ArmImage", "run_compare", "evaluate", "time_excluding_compile"]

log = logging.getLogger("compare_models.compare")

PHASE_ALIGN_METHODS = ("ramp", "offset")
# Gauges of the existing tool that DESIGN.md ("A fair comparison") rules out.
RETIRED_PHASE_ALIGN_METHODS = MappingProxyType(
    {
        "plane": "it removed a plane from each image's phase separately",
        "mean": "it subtracted each image's own mean phase and scaled by the ratio of mean amplitudes",
        "none": "it fitted one complex factor, whose modulus shrinks with phase noise",
    }
)
DEFAULT_CROP = 20  # the existing tool's --stitch-crop-size
#: metrics.json's layout; docs/how-the-numbers-are-made.md describes it.
METRICS_SCHEMA = "compare_models.metrics/2"


def resolve_crop(config, patch_size: int) -> int:
    """The stitching crop M for patches of side N: the explicit setting, which must satisfy
    0 < M <= N, or the default min(20, N)."""
    if config.stitch_crop_size is None:
        return min(DEFAULT_CROP, patch_size)
    if not 0 < config.stitch_crop_size <= patch_size:
        raise ConfigError(
            f"--stitch-crop-size {config.stitch_crop_size} is outside (0, N] for patches of N = {patch_size}"
        )
    return config.stitch_crop_size


@dataclass(frozen=True)
class CompareConfig:
    """Settings of one ``compare-models`` run (flags documented in ``compare-models --help``)."""

    test_data: str
    output_dir: str
    pinn_dir: str | None = None
    baseline_dir: str | None = None
    ptychi_recon_path: str | None = None
    stitch_crop_size: int | None = None  # None: DEFAULT_CROP, or N when N is smaller
    skip_registration: bool = False
    register_ptychi_only: bool = False
    phase_align_method: str = "ramp"
    registration_on: str = "complex"
    max_shift_px: float = 16.0
    region_margin_px: int = 2  # imaging.region.DEFAULT_MARGIN_PX
    ms_ssim_sigma: float | None = None
    frc_sigma: float | None = None
    pixel_size_m: float | None = None
    n_test_subsample: int | None = None
    test_subsample_seed: int = 0
    pinn_predict_batch_size: int = 32
    baseline_predict_batch_size: int = 32
    pinn_chunk_size: int = 1024
    baseline_chunk_size: int = 1024
    stitch_chunk_size: int = 512
    # How a patch is moved by its sub-pixel residual before its crop is added: "fourier" (the
    # simulator's and pty-chi's model, exact for the recorded patches) or "bilinear" (what
    # PtychoPINN's stitching does, to reproduce its images).
    stitch_interpolation: str = "fourier"
    # XLA for the networks (models.inference.JIT_MODES): "auto" compiles and falls back to a
    # plain tf.function, with a warning, for a network XLA cannot compile.
    predict_xla: str = "auto"
    overwrite: bool = False
    progress: bool = True
    # Half-set FRC for every arm (compare_halfsets): None (the default) computes it for every
    # arm whose halves cover enough of the scan and says why for the others; True requires it
    # (a half that leaves too little is an error); False turns it off.
    half_sets: bool | None = None
    half_set_split: str = "checkerboard"  # imaging.halfsets.SPLIT_METHODS
    ptychi_half_sets: str | None = None  # a directory with ptychi_half1.npz, ptychi_half2.npz
    ptychi_half_set_paths: tuple[str, str] | None = None  # the two files
    min_half_set_coverage: float = 0.9  # compare_halfsets.DEFAULT_MIN_COVERAGE
    command_line: tuple[str, ...] = field(default_factory=tuple)

    def validate(self) -> CompareConfig:
        if not (self.pinn_dir or self.baseline_dir or self.ptychi_recon_path):
            raise ConfigError(
                "nothing to compare: give at least one of --pinn_dir, --baseline_dir, --ptychi_recon_path"
            )
        if self.stitch_interpolation not in ("fourier", "bilinear"):
            raise ConfigError(
                f"--stitch-interpolation must be 'fourier' or 'bilinear', got {self.stitch_interpolation!r}"
            )
        if self.predict_xla not in ("auto", "on", "off"):
            raise ConfigError(f"--predict-xla must be auto, on or off, got {self.predict_xla!r}")
        if self.stitch_crop_size is not None and self.stitch_crop_size < 1:
            raise ConfigError(f"--stitch-crop-size must be > 0, got {self.stitch_crop_size}")
        if self.phase_align_method in RETIRED_PHASE_ALIGN_METHODS:
            raise ConfigError(
                f"--phase-align-method {self.phase_align_method} is retired: "
                f"{RETIRED_PHASE_ALIGN_METHODS[self.phase_align_method]} (see "
                "docs/how-the-numbers-are-made.md); use ramp (phase offset and linear ramp, "
                "the default) or offset"
            )
        if self.phase_align_method not in PHASE_ALIGN_METHODS:
            raise ConfigError(
                f"--phase-align-method must be one of {', '.join(PHASE_ALIGN_METHODS)}, got {self.phase_align_method!r}"
            )
        if self.registration_on not in ("complex", "amplitude"):
            raise ConfigError("registration_on must be 'complex' or 'amplitude'")
        if self.skip_registration and self.register_ptychi_only:
            raise ConfigError("--skip-registration and --register-ptychi-only exclude each other")
        for name in ("pinn_predict_batch_size", "baseline_predict_batch_size", "pinn_chunk_size", "baseline_chunk_size", "stitch_chunk_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.n_test_subsample is not None and self.n_test_subsample < 1:
            raise ConfigError(f"--n-test-subsample must be >= 1, got {self.n_test_subsample}")
        if (self.ms_ssim_sigma is not None and self.ms_ssim_sigma < 0) or (
            self.frc_sigma is not None and self.frc_sigma < 0
        ):
            raise ConfigError("--ms-ssim-sigma and --frc-sigma must be >= 0")
        if int(self.region_margin_px) != self.region_margin_px or self.region_margin_px < 0:
            raise ConfigError(f"--region-margin must be a whole number of pixels >= 0, got {self.region_margin_px}")
        if self.pixel_size_m is not None and not self.pixel_size_m > 0:
            raise ConfigError(f"--pixel-size must be > 0 metres, got {self.pixel_size_m}")
        if self.max_shift_px <= 0:
            raise ConfigError("max_shift_px must be > 0")
        from ..imaging.halfsets import SPLIT_METHODS

        if self.half_set_split not in SPLIT_METHODS:
            raise ConfigError(
                f"--half-set-split must be one of {', '.join(SPLIT_METHODS)}, got {self.half_set_split!r}"
            )
        if not 0 < self.min_half_set_coverage <= 1:
            raise ConfigError(f"--min-half-set-coverage must be in (0, 1], got {self.min_half_set_coverage}")
        if self.ptychi_half_set_paths is not None and len(self.ptychi_half_set_paths) != 2:
            raise ConfigError("--ptychi-half-set-paths takes two files: half 1 and half 2")
        if self.ptychi_half_sets and self.ptychi_half_set_paths:
            raise ConfigError("--ptychi-half-sets and --ptychi-half-set-paths exclude each other")
        if (self.ptychi_half_sets or self.ptychi_half_set_paths) and not self.ptychi_recon_path:
            raise ConfigError("pty-chi half sets need the full reconstruction too: give --ptychi_recon_path")
        return self

    @property
    def half_sets_enabled(self) -> bool:
        """Half-set FRC is on unless ``--no-half-sets`` (``half_sets`` False)."""
        return self.half_sets is not False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ArmImage:
    """One arm's object image on the ground-truth grid, before registration."""

    key: str  # "pinn", "baseline" or "ptychi"
    image: np.ndarray  # (H, W) complex64
    valid: np.ndarray  # (H, W) bool, where the arm has data
    timings_s: dict
    details: dict  # provenance: bundle metadata, recon metadata, counts
    halves: object = None  # compare_halfsets.HalfImages, or None (no half-set FRC)

    @property
    def name(self) -> str:
        return MODEL_NAMES[self.key]


class _Timer:
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
# Stages


def _subsample(dataset, config: CompareConfig):
    if config.n_test_subsample is None or config.n_test_subsample >= dataset.n_positions:
        return dataset
    rng = np.random.default_rng(config.test_subsample_seed)
    keep = np.sort(rng.choice(dataset.n_positions, size=config.n_test_subsample, replace=False))
    log.info("subsampled %d of %d positions (seed %d)", keep.size, dataset.n_positions, config.test_subsample_seed)
    return dataset.subset(keep)


def _object_shape(dataset) -> tuple[int, int]:
    from ..imaging.geometry import scan_canvas_shape

    if dataset.object_truth is not None:
        return tuple(dataset.object_truth.shape)
    return scan_canvas_shape(dataset.positions_xy, dataset.patch_size)


def _network_arm(key: str, model_path: str, dataset, shape, config: CompareConfig, split=None) -> ArmImage:
    from ..imaging.stitching import Stitcher
    from ..models import inference
    from ..models.loading import detect_model_source, load_model

    timer = _Timer()
    source = detect_model_source(model_path)
    log.info("%s: %s at %s", MODEL_NAMES[key], source.description, source.path)
    model = timer(f"{key}.load", load_model, model_path)
    log.info("%s: loaded %s (kind %s, N = %d, gridsize %d)", MODEL_NAMES[key], model.model_format,
             model.kind, model.patch_size, model.gridsize)
    model.check_compatible(dataset)
    crop = resolve_crop(config, dataset.patch_size)
    batch = getattr(config, f"{key}_predict_batch_size")
    chunk = getattr(config, f"{key}_chunk_size")
    # One streaming pass: each batch is predicted and stitched inside one compiled step and
    # dropped (models.inference.predict_and_stitch). Canvas 0 is the full image; with half sets
    # canvases 1 and 2 are the halves' images: a gridsize-1 patch depends on its own pattern
    # only, so it goes to its half's canvas in the same pass; gridsize-2 halves form their own
    # groups and are streamed afterwards (compare_halfsets.network_half_images).
    per_position = model.gridsize == 1
    stitcher = Stitcher(
        shape, dataset.patch_size, crop=crop, backend="xla", chunk=config.stitch_chunk_size,
        interpolation=config.stitch_interpolation, n_canvases=1 if split is None else 3,
    )
    canvases = 0
    if split is not None and per_position:
        from .compare_halfsets import half_canvases

        canvases = half_canvases(split, dataset.n_positions)
    step = inference.PredictStitchStep(
        model, batch, stitcher, n_targets=1 if np.ndim(canvases) == 0 else 2, jit=config.predict_xla
    )
    # computation_time_s is what a user waits for per image, without one-off compilation
    # (DESIGN.md): tracing and XLA compilation are paid by warm-up calls on zeros and timed
    # apart (``*_compile``).
    stream, seconds, compile_s = time_excluding_compile(
        step.warm_up,
        lambda: inference.predict_and_stitch(
            model, dataset, stitcher, canvases=canvases, batch_size=batch, chunk=chunk,
            progress=config.progress, step=step,
        ),
    )
    timer.record(f"{key}.predict_stitch", seconds)
    timer.record(f"{key}.predict_stitch_compile", compile_s)
    if stream.n_patches != dataset.n_positions:
        raise MetricError(f"{MODEL_NAMES[key]}: {stream.n_patches} patches for {dataset.n_positions} positions")
    image, weights = timer(f"{key}.stitch_finish", stitcher.result, 0)
    described = model.describe()
    halves = None
    if split is not None:  # half-set FRC: the same model and stitching on each half
        from .compare_halfsets import network_half_images

        def predict_half(number, indices):
            return inference.predict_and_stitch(
                model, dataset.subset(indices), stitcher, canvases=number, batch_size=batch, chunk=chunk,
                progress=config.progress, step=step,
            ).positions_xy

        halves = network_half_images(
            split, per_position=per_position, stitcher=stitcher, positions_xy=stream.positions_xy,
            predict_half=predict_half, key=key, crop=crop,
        )
        for stage, value in halves.timings_s.items():
            timer.record(stage, value)
    details = {
        "bundle": str(model_path),
        "model_path": str(source.path),
        "model_format": model.model_format,
        "kind": model.kind,
        "gridsize": model.gridsize,
        "n_patches": int(stream.n_patches),
        "patch_positions": stream.input_details.get("patch_position", "scan position"),
        "inputs": dict(stream.input_details),
        "stitch_crop_size": crop,
        "stitch_interpolation": config.stitch_interpolation,
        "predict_batch_size": batch,
        "chunk_size": chunk,
        "streaming": dict(stream.stream),
        "model": described,
        "patch_size": dataset.patch_size,
    }
    if "bundle_metadata" in described:
        details["bundle_metadata"] = described["bundle_metadata"]
    return ArmImage(key, np.asarray(image, np.complex64), np.asarray(weights) > 0, timer.timings, details, halves)


def _ptychi_arm(path: str, shape, dataset) -> ArmImage:
    from ..io.reconstruction import (
        load_reconstruction,
        place_by_ptychopinn_rule,
        place_in_object_frame,
    )

    timer = _Timer()
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


def _arm_notes(arm: ArmImage) -> dict:
    """What ``metrics.json`` says about an arm besides its numbers: the model format, and for
    an iterative reconstruction how its object was initialised (``"unknown"`` for foreign
    files)."""
    notes = {}
    if "model_format" in arm.details:
        notes["model_format"] = arm.details["model_format"]
    if "initialisation" in arm.details:
        notes["initialisation"] = arm.details["initialisation"]
    return notes


def _summary_notes(arms) -> list[str]:
    """Lines printed under the metrics table: each arm's format, unknown initialisations."""
    lines = []
    for arm in arms:
        if "model_format" in arm.details:
            lines.append(f"{arm.name}: {arm.details['model_format']}")
        if arm.details.get("initialisation") == "unknown":
            lines.append(
                f"{arm.name}: initialisation unknown (a file from {arm.details.get('writer')}; "
                "it may have started from the ground truth)"
            )
        elif "initialisation" in arm.details:
            lines.append(f"{arm.name}: initialisation {arm.details['initialisation']}")
    return lines


def _computation_time(arm: ArmImage) -> float | None:
    """What a user waits for to get this arm's image from the diffraction data, without
    one-off compilation."""
    if arm.key == "ptychi":
        return arm.timings_s.get("ptychi.reconstruction")
    return arm.timings_s[f"{arm.key}.predict_stitch"] + arm.timings_s[f"{arm.key}.stitch_finish"]


def _compile_time(arm: ArmImage) -> float | None:
    """One-off compilation paid before the first image (tracing, XLA); None for pty-chi."""
    if arm.key == "ptychi":
        return None
    return arm.timings_s[f"{arm.key}.predict_stitch_compile"]


def _shift_policy(arm: ArmImage, config: CompareConfig, *, halves: bool = False) -> bool:
    """Whether this arm's shift is estimated (against the truth, or ``halves``: half 2 against
    half 1); an arm that has no placement must be."""
    estimate = not config.skip_registration and (not config.register_ptychi_only or arm.key == "ptychi")
    if halves:
        return estimate
    if arm.details.get("placed_by") == "registration" and not estimate:
        raise ConfigError(
            f"{arm.name}: the reconstruction file records no object-frame placement, so it must be "
            "registered; drop --skip-registration"
        )
    return estimate


# --------------------------------------------------------------------------------------------
# The job


def run_compare(config: CompareConfig, *, echo: Callable[[str], None] = print) -> dict:
    """Run one comparison; returns the metrics dictionary written to ``metrics.json``.

    Raises a :class:`~compare_models.errors.CompareModelsError` for bad input before the
    output directory is touched where possible; any failure after that leaves the directory
    with ``logs/`` and ``FAILED`` only.
    """
    from ..io.dispatch import load_dataset
    from .compare_halfsets import evaluate_half_sets, ptychi_half_images, ptychi_half_set_paths

    config.validate()
    _check_inputs_exist(config)
    ptychi_halves = ptychi_half_set_paths(config) if config.half_sets_enabled else None
    with StagedOutput(config.output_dir, overwrite=config.overwrite) as out:
        log.info("compare-models %s", " ".join(config.command_line))
        timer = _Timer()
        dataset = timer("load_test_data", load_dataset, config.test_data)
        dataset = _subsample(dataset, config)
        shape = _object_shape(dataset)
        log.info("stitching crop: %d of N = %d", resolve_crop(config, dataset.patch_size), dataset.patch_size)
        truth = dataset.object_truth
        pixel_size = config.pixel_size_m or dataset.pixel_size_m
        log.info(
            "test data: %d positions, N = %d, object %s, %s",
            dataset.n_positions, dataset.patch_size, shape, dataset.dose_summary,
        )
        if not dataset.diffraction_in_counts:
            log.warning("test data: %s", dataset.diffraction_units)

        split = _half_set_split(dataset, config)
        arms: list[ArmImage] = []
        if config.pinn_dir:
            arms.append(_network_arm("pinn", config.pinn_dir, dataset, shape, config, split))
        if config.baseline_dir:
            arms.append(_network_arm("baseline", config.baseline_dir, dataset, shape, config, split))
        if config.ptychi_recon_path:
            arm = _ptychi_arm(config.ptychi_recon_path, shape, dataset)
            if ptychi_halves is not None:
                halves = ptychi_half_images(ptychi_halves[0], shape, dataset, found=ptychi_halves[1])
                arm = dataclasses.replace(arm, halves=halves, timings_s={**arm.timings_s, **halves.timings_s})
            arms.append(arm)

        result = evaluate(arms, truth, dataset.positions_xy, config, pixel_size_m=pixel_size, timer=timer)
        result["half_sets"] = evaluate_half_sets(
            arms, dataset.positions_xy, shape, config, pixel_size_m=pixel_size,
            estimate_shift_for=lambda arm: _shift_policy(arm, config, halves=True), timer=timer,
            required=config.half_sets is True or truth is None,
        ) if config.half_sets_enabled else None
        result["half_set_split"] = split
        document = timer("write_outputs", _write_outputs, out.path, arms, result, dataset, config, timer)
        result["timings_s"] = _all_timings(timer, arms)
    rows = metric_rows(result)
    if truth is not None:
        echo(GROUND_TRUTH_TABLE_TITLE)
        echo(format_metrics_table(rows))
    if any(row[1].startswith("halfset_") for row in rows):
        echo(HALF_SET_TABLE_TITLE)
        echo(format_half_set_table(rows))
    summary = format_scoring_summary(document)
    if summary:
        echo(summary)
    echo(f"test data: {dataset.dose_summary}")
    for line in _summary_notes(arms):
        echo(line)
    echo(f"results: {config.output_dir}")
    return result


def _half_set_split(dataset, config: CompareConfig):
    """The split of the test scan into two halves (None with --no-half-sets)."""
    if not config.half_sets_enabled:
        return None
    from ..imaging.halfsets import split_half_sets

    split = split_half_sets(dataset.positions_xy, config.half_set_split)
    log.info(
        "half sets (%s): %d and %d of %d positions", split.method, split.half1.size, split.half2.size,
        dataset.n_positions,
    )
    return split


def _all_timings(timer, arms) -> dict[str, float]:
    """The run's stage timings and every arm's, in seconds."""
    return {**timer.timings, **{k: v for arm in arms for k, v in arm.timings_s.items()}}


def _check_inputs_exist(config: CompareConfig):
    checks = [("--test_data", config.test_data, False), ("--pinn_dir", config.pinn_dir, True),
              ("--baseline_dir", config.baseline_dir, True), ("--ptychi_recon_path", config.ptychi_recon_path, False)]
    for flag, value, is_dir in checks:
        if value is None:
            continue
        path = Path(value)
        if not path.exists():
            raise DatasetError(f"{flag} {path}: no such {'directory or file' if is_dir else 'file'}")


def _valid_masks(arms) -> dict[str, np.ndarray]:
    """Each arm's data: its own valid mask (stitched weight > 0, placed canvas), and a non-zero
    value (a zero has no phase; scoring it would score missing data)."""
    return {arm.name: np.asarray(arm.valid, bool) & (np.asarray(arm.image) != 0) for arm in arms}


def evaluate(arms, truth, positions_xy, config: CompareConfig, *, pixel_size_m=None, timer=None) -> dict:
    """Score every arm on one footing (DESIGN.md, "A fair comparison").

    Parameters
    ----------
    arms : sequence of ArmImage
        Images on the ground-truth grid with their valid masks.
    truth : ndarray (H, W) complex or None
        Ground truth; without it only the region for display is made.
    positions_xy : ndarray (n, 2)
        Scan positions of the test data (x column, y row), object pixels.
    config : CompareConfig
    pixel_size_m : float, optional
    timer : optional
        Stage timer (``timer(stage, func, *args)``).

    Returns
    -------
    dict
        ``region`` (the mask), ``region_info`` (:meth:`ScoredRegion.to_dict`, or None without
        ground truth), ``region_pixels``, ``object_shape``, ``aligned`` (name -> image),
        ``models`` (name -> ``metrics``, ``registration``, ``computation_time_s``,
        ``compile_time_s``) and ``scoring`` (what rules were applied).

    Notes
    -----
    1. The common region: pixels of the scan's convex hull where every arm has data.
    2. Each arm's shift is estimated over the common region (unless skipped by the config).
    3. The scored region: the common region eroded by ceil(largest shift) + margin.
    4. Each whole image is shifted, its gauge fitted on the scored region, and its metrics
       computed there.
    """
    from ..imaging.region import scan_hull, scored_region
    from ..imaging.registration import estimate_shift, register

    timer = timer or _Timer()
    names = [arm.name for arm in arms]
    if len(set(names)) != len(names):
        raise ConfigError(f"two arms share a name: {names}")
    shape = tuple(arms[0].image.shape)
    valids = _valid_masks(arms)
    result = {"object_shape": list(shape), "models": {}, "scoring": _scoring_rules(config)}
    if truth is None:
        log.warning(
            "the test data has no ground truth ('objectGuess'): no metrics against ground truth "
            "(half-set FRC needs none)"
        )
        region = _display_region(positions_xy, shape, valids)
        result.update(region=region, region_info=None, region_pixels=int(region.sum()))
        for arm in arms:
            result["models"][arm.name] = {
                "computation_time_s": _computation_time(arm),
                "compile_time_s": _compile_time(arm),
                **_arm_notes(arm),
            }
        result["aligned"] = {arm.name: arm.image for arm in arms}
        return result
    from ..imaging.metrics import compute_metrics

    hull = scan_hull(positions_xy, shape)
    common = scored_region(hull, valids, largest_shift_px=0.0, margin_px=0)
    shifts = {}
    for arm in arms:
        if _shift_policy(arm, config):
            shifts[arm.name] = timer(
                f"{arm.key}.shift", estimate_shift, arm.image, truth, common.mask, valid=valids[arm.name],
                max_shift=config.max_shift_px, correlate_on=config.registration_on,
            )
        else:
            shifts[arm.name] = None
    largest = max((s.norm_px for s in shifts.values() if s is not None), default=0.0)
    region = scored_region(hull, valids, largest_shift_px=largest, margin_px=config.region_margin_px)
    lost = ", ".join(f"{k} {100 * v:.2f} %" for k, v in region.hull_lost_fraction.items())
    log.info(
        "scored region: %d px (hull %d px; hull without data: %s; eroded by %d px)",
        region.n_pixels, region.hull_pixels, lost, region.erosion_px,
    )
    result.update(
        region=region.mask, region_info=region.to_dict(), region_pixels=region.n_pixels, hull=hull
    )
    aligned = {}
    for arm in arms:
        shift = shifts[arm.name]
        registration = timer(
            f"{arm.key}.registration", register, arm.image, truth, region.mask, valid=valids[arm.name],
            shift_yx=None if shift is None else shift.shift_yx, estimate_shift=False,
            phase_align=config.phase_align_method,
        )
        if not registration.valid[region.mask].all():  # the erosion guarantees it
            raise MetricError(f"{arm.name}: the shifted image lacks data inside the scored region")
        aligned[arm.name] = registration.aligned
        metrics = timer(
            f"{arm.key}.metrics",
            compute_metrics,
            registration.aligned,
            truth,
            region.mask,
            ms_ssim_sigma=config.ms_ssim_sigma,
            frc_sigma=config.frc_sigma,
            pixel_size_m=pixel_size_m,
        )
        record = registration.to_dict()
        if shift is not None:
            record["shift"] = shift.to_dict()
        result["models"][arm.name] = {
            "metrics": metrics,
            "registration": record,
            "computation_time_s": _computation_time(arm),
            "compile_time_s": _compile_time(arm),
            **_arm_notes(arm),
        }
    result["aligned"] = aligned
    return result


def _display_region(positions_xy, shape, valids) -> np.ndarray:
    """Without ground truth nothing is scored; the figures show the hull where every arm has
    data, or (a scan with no hull) wherever any arm has data."""
    from ..errors import RegistrationError
    from ..imaging.region import common_region, scan_hull

    try:
        region = common_region(scan_hull(positions_xy, shape), valids)
    except RegistrationError:
        region = np.zeros(shape, bool)
    if not region.any():
        region = np.logical_or.reduce(list(valids.values()))
    return region


def _scoring_rules(config: CompareConfig) -> dict:
    """The rules this run scored by, in words and numbers (metrics.json ``scoring``)."""
    from ..imaging.metrics import DEFINITIONS, MS_SSIM_WEIGHTS
    from ..imaging.region import REGION_RULE

    if config.skip_registration:
        shifts = "none estimated (--skip-registration)"
    elif config.register_ptychi_only:
        shifts = "estimated for pty-chi only (--register-ptychi-only)"
    else:
        shifts = "estimated for every arm"
    phase = (
        "global phase offset and linear phase ramp"
        if config.phase_align_method == "ramp"
        else "global phase offset only"
    )
    return {
        "region": {"rule": REGION_RULE, "margin_px": int(config.region_margin_px)},
        "registration": {
            "shifts": shifts,
            "method": "upsampled cross-correlation (Guizar-Sicairos 2008) over the common region; "
            "the whole image is Fourier-shifted",
            "correlate_on": config.registration_on,
            "upsample_factor": 100,
            "max_shift_px": float(config.max_shift_px),
        },
        "gauge": {
            "phase_align_method": config.phase_align_method,
            "description": (
                f"{phase} fitted to the amplitude-weighted phase difference "
                "angle(image conj(truth)), weights |image| |truth|; amplitude scale fitted to the "
                "amplitudes alone (least squares of |image| to |truth|); never one complex factor, "
                "never a plane removed from each image separately"
            ),
        },
        "data_range": "the truth's max - min over the scored region, for amplitude and phase alike",
        "ms_ssim": {
            "definition": "Wang, Simoncelli & Bovik 2003",
            "scales_requested": len(MS_SSIM_WEIGHTS),
            "weights": list(MS_SSIM_WEIGHTS),
            "sigma": config.ms_ssim_sigma or None,
        },
        "frc": {
            "kind": "ground_truth",
            "resolution": "frc50: FRC against ground truth, 0.5 threshold (Rosenthal & Henderson 2003)",
            "legacy": {"frc1over7": "1/7 crossing against ground truth; NOT a resolution"},
            "half_set": (
                "half-set FRC (1/7, 1/2-bit and 1-bit thresholds; van Heel & Schatz 2005) between "
                "two images of each arm from disjoint halves of the scan: metrics.json half_sets and "
                "models.<model>.half_set_frc, CSV rows halfset_*"
                if config.half_sets_enabled
                else "not computed (--no-half-sets)"
            ),
        },
        "definitions": dict(DEFINITIONS),
    }


#: Component rows of comparison_metrics.csv (``amplitude`` and ``phase`` filled).
COMPONENT_METRICS = ("mae", "mse", "psnr", "ssim", "ms_ssim", "ms_ssim_scales", "frc50", "frc1over7", "data_range")
#: Scalar rows (``value`` filled): the registration and the gauge applied.
GAUGE_ROWS = (
    ("gauge_amplitude_scale", "amplitude_scale"),
    ("gauge_phase_offset_rad", "phase_offset_rad"),
    ("gauge_phase_ramp_x_rad_per_px", "phase_ramp_x_rad_per_px"),
    ("gauge_phase_ramp_y_rad_per_px", "phase_ramp_y_rad_per_px"),
)


def metric_rows(result: dict) -> list[tuple]:
    """Rows of ``comparison_metrics.csv`` (``model,metric,amplitude,phase,value``)."""
    rows = []
    region_info = result.get("region_info")
    for name, entry in result["models"].items():
        metrics = entry.get("metrics")
        if metrics is not None:
            for metric in COMPONENT_METRICS:
                rows.append((name, metric, metrics["amplitude"][metric], metrics["phase"][metric], None))
        registration = entry.get("registration")
        if registration is not None:
            dy, dx = registration["shift_yx_px"]
            rows.append((name, "registration_offset_dy", None, None, dy))
            rows.append((name, "registration_offset_dx", None, None, dx))
            for row_name, key in GAUGE_ROWS:
                rows.append((name, row_name, None, None, registration["gauge"][key]))
        if region_info is not None:
            rows.append((name, "region_pixels", None, None, region_info["n_pixels"]))
            rows.append((name, "hull_lost_fraction", None, None, region_info["hull_lost_fraction"][name]))
        if entry.get("computation_time_s") is not None:
            rows.append((name, "computation_time_s", None, None, entry["computation_time_s"]))
        if entry.get("compile_time_s") is not None:
            rows.append((name, "compile_time_s", None, None, entry["compile_time_s"]))
    from .compare_halfsets import half_set_rows

    return rows + half_set_rows(result.get("half_sets"))


def _frc_curves(result: dict) -> dict:
    """``{kind: {model: {component: curve}}}``: FRC against ground truth (``"ground_truth"``)
    and between half sets (``"half_set"``), whichever were computed."""
    from .compare_halfsets import half_set_curves

    curves = {}
    for name, entry in result["models"].items():
        metrics = entry.get("metrics")
        if metrics is None:
            continue
        by_component = curves.setdefault("ground_truth", {}).setdefault(name, {})
        for component in ("amplitude", "phase"):
            frc = metrics[component]["frc"]
            by_component[component] = {
                "kind": frc["kind"],
                "frc": frc["curve"],
                "frequency_nyquist": frc["frequency_nyquist"],
                "n_pixels": frc["n_pixels"],
            }
    half = half_set_curves(result.get("half_sets"))
    if half:
        curves["half_set"] = half
    return curves


def _image_key(name: str) -> str:
    return name.lower()


def _half_sets_document(result: dict, config: CompareConfig) -> dict:
    """metrics.json's ``half_sets`` section: the rules, the split, the region and its coverage,
    and which arms have no half-set FRC and why (the curves are under each model's
    ``half_set_frc``). docs/how-the-numbers-are-made.md describes every key."""
    from .compare_halfsets import half_set_scoring

    half_sets = result.get("half_sets")
    document = half_set_scoring(config, result.get("half_set_split"))
    if half_sets is None:
        return {**document, "computed": False, "not_computed": "--no-half-sets"}
    return {
        **document,
        "computed": half_sets["computed"],
        "region": half_sets["region_info"],
        "not_computed": half_sets["not_computed"],
    }


def _write_outputs(directory: Path, arms, result, dataset, config, timer):
    from ..io.ptychodus import write_product
    from ..report import writers as report
    from ..report.html import write_compare_report

    truth = dataset.object_truth
    region = result["region"]
    stitched = {_image_key(arm.name): arm.image for arm in arms}
    aligned = {_image_key(name): image for name, image in result["aligned"].items()}
    if truth is not None:
        stitched["ground_truth"] = truth
        aligned["ground_truth"] = truth
    masks = {"scored_region": region}
    if result.get("hull") is not None:
        masks["scan_hull"] = result["hull"]
    masks.update({f"{_image_key(arm.name)}_valid": arm.valid for arm in arms})
    half_sets = result.get("half_sets") or {}
    for arm in arms:  # the half-set images: <model>_half1, <model>_half2
        if arm.halves is not None:
            for number in (1, 2):
                stitched[f"{_image_key(arm.name)}_half{number}"] = arm.halves.images[number - 1]
                masks[f"{_image_key(arm.name)}_half{number}_valid"] = arm.halves.valid[number - 1]
    for name, (first, second) in (half_sets.get("aligned") or {}).items():
        aligned[f"{_image_key(name)}_half1"] = first
        aligned[f"{_image_key(name)}_half2"] = second
    if half_sets.get("region") is not None:
        masks["halfset_region"] = half_sets["region"]
    report.write_images_npz(stitched, directory / "reconstructions.npz", masks=masks)
    report.write_images_npz(aligned, directory / "reconstructions_aligned.npz")
    dose = (
        f"measured dose {dataset.measured_dose:.3g} photons/pattern" if dataset.diffraction_in_counts
        else "data not in photon counts: no measured dose"
    )
    title = f"{dataset.n_positions} positions, {dose}"
    report.plot_comparison(result["aligned"], truth, region, directory / "comparison.png", title=title)

    rows = metric_rows(result)
    if rows:
        report.write_metrics_csv(rows, directory / "comparison_metrics.csv")
    curves = _frc_curves(result)
    if curves:
        report.write_frc_csv(curves, directory / "frc_curves.csv")
        report.plot_frc(curves, directory / "frc.png")
    models = {name: dict(entry) for name, entry in result["models"].items()}
    for name, entry in (half_sets.get("models") or {}).items():
        models[name]["half_set_frc"] = entry
    metrics_doc = {
        "schema": METRICS_SCHEMA,
        "object_shape": result["object_shape"],
        "ground_truth": truth is not None,
        "region": result["region_info"],
        "region_pixels": result["region_pixels"],
        "scoring": result["scoring"],
        "half_sets": _half_sets_document(result, config),
        "models": models,
    }
    report.write_json(metrics_doc, directory / "metrics.json")

    # Ptychodus products, so the images open in the facility's viewer.
    products = directory / "products"
    products.mkdir()
    physics = {
        "pixel_size_m": config.pixel_size_m or dataset.pixel_size_m,
        "photon_energy_eV": dataset.metadata.get("photon_energy_eV"),
        "detector_object_distance_m": dataset.metadata.get("detector_object_distance_m"),
    }
    for arm in arms:
        write_product(
            products / f"{_image_key(arm.name)}_product.h5", arm.image, probe=dataset.probe,
            positions_xy=dataset.positions_xy, name=arm.name, comments="compare-models stitched image", **physics,
        )
    if truth is not None:
        write_product(
            products / "ground_truth_product.h5", truth, probe=dataset.probe, positions_xy=dataset.positions_xy,
            name="ground truth", comments="objectGuess of the test data", object_role="ground_truth", **physics,
        )

    provenance = {
        "command_line": list(config.command_line),
        "config": config.to_dict(),
        "versions": report.environment_versions(),
        "inputs": {
            "test_data": {"path": config.test_data, "sha256": report.file_sha256(config.test_data)},
            **{
                arm.key: {
                    "path": str(arm.details.get("bundle") or arm.details.get("path")),
                    "sha256": report.file_sha256(arm.details.get("bundle") or arm.details.get("path")),
                }
                for arm in arms
            },
            **{
                f"ptychi_half{number}": {"path": entry["path"], "sha256": report.file_sha256(entry["path"])}
                for arm in arms
                if arm.key == "ptychi" and arm.halves is not None
                for number, entry in enumerate(arm.halves.details["files"], start=1)
            },
        },
        "test_data": {
            "n_positions": dataset.n_positions,
            "patch_size": dataset.patch_size,
            "dose_measured": dataset.measured_dose if dataset.diffraction_in_counts else None,
            "dose_nominal": dataset.nominal_dose,
            "diffraction_in_counts": dataset.diffraction_in_counts,
            "diffraction_units": dataset.diffraction_units,
            "dose_summary": dataset.dose_summary,
            "seed": dataset.metadata.get("seed"),
            "metadata": dataset.metadata,
        },
        "arms": {
            arm.name: {
                **arm.details,
                "half_sets": None if arm.halves is None else {
                    "how": arm.halves.how, "split": arm.halves.split, **arm.halves.details
                },
            }
            for arm in arms
        },
        "corrections": {
            name: entry.get("registration") for name, entry in result["models"].items()
        },
        "scored_region": result["region_info"],
        "scoring": result["scoring"],
        "half_sets": metrics_doc["half_sets"],
        "seen_in_training": _seen_in_training(arms, truth, region),
        "training_protocol": {
            arm.name: arm.details["model"].get("training_protocol", "unknown") for arm in arms if arm.key != "ptychi"
        },
        "timings_s": _all_timings(timer, arms),
    }
    report.write_json(provenance, directory / "provenance.json")
    write_compare_report(directory)  # report.html, from the files written above
    return report.to_jsonable(metrics_doc)


def _seen_in_training(arms, truth, region) -> dict:
    """Per network arm, the fraction of the scored region under its training patches of this
    object (0 for another object, "unknown" when its bundle does not say); DESIGN.md, "No leakage"."""
    from ..models.bundle import fraction_seen_in_training

    seen = {
        arm.name: fraction_seen_in_training(arm.details.get("bundle_metadata"), truth, region)
        for arm in arms
        if arm.key != "ptychi"
    }
    for name, value in seen.items():
        log.info("%s: fraction of scored pixels seen in training: %s", name, value)
    return seen
