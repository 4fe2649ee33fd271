"""The compare job: models and data in, a complete comparison directory out.

Stages (each timed and logged): load the test data, then per arm (PINN, baseline, pty-chi) load
the model or reconstruction, predict every scan position in fixed-shape batches, stitch the
patches in the ground-truth frame; then register every image to the ground truth over the
scanned region (the same region for every arm), compute the metrics, and write the report.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DatasetError, MetricError
from ..report.staging import StagedOutput
from ..report.writers import MODEL_NAMES, format_metrics_table

__all__ = ["CompareConfig", "ArmImage", "run_compare"]

log = logging.getLogger("compare_models.compare")

PHASE_ALIGN_METHODS = ("ramp", "plane", "mean", "none")
DEFAULT_CROP = 20  # the existing tool's --stitch-crop-size


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
    region_erode_px: int = 0
    ms_ssim_sigma: float = 1.0
    frc_sigma: float | None = None
    pixel_size_m: float | None = None
    n_test_subsample: int | None = None
    test_subsample_seed: int = 0
    pinn_predict_batch_size: int = 32
    baseline_predict_batch_size: int = 32
    pinn_chunk_size: int = 1024
    baseline_chunk_size: int = 1024
    stitch_chunk_size: int = 512
    overwrite: bool = False
    progress: bool = True
    command_line: tuple[str, ...] = field(default_factory=tuple)

    def validate(self) -> CompareConfig:
        if not (self.pinn_dir or self.baseline_dir or self.ptychi_recon_path):
            raise ConfigError(
                "nothing to compare: give at least one of --pinn_dir, --baseline_dir, --ptychi_recon_path"
            )
        if self.stitch_crop_size is not None and self.stitch_crop_size < 1:
            raise ConfigError(f"--stitch-crop-size must be > 0, got {self.stitch_crop_size}")
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
        if self.ms_ssim_sigma < 0 or (self.frc_sigma is not None and self.frc_sigma < 0):
            raise ConfigError("--ms-ssim-sigma and --frc-sigma must be >= 0")
        if self.pixel_size_m is not None and not self.pixel_size_m > 0:
            raise ConfigError(f"--pixel-size must be > 0 metres, got {self.pixel_size_m}")
        if self.max_shift_px <= 0:
            raise ConfigError("max_shift_px must be > 0")
        return self

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

    @property
    def name(self) -> str:
        return MODEL_NAMES[self.key]


class _Timer:
    def __init__(self):
        self.timings: dict[str, float] = {}

    def __call__(self, stage: str, func: Callable, *args, **kwargs):
        start = time.perf_counter()
        result = func(*args, **kwargs)
        self.timings[stage] = time.perf_counter() - start
        log.info("%s: %.3f s", stage, self.timings[stage])
        return result


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


def _network_arm(key: str, bundle_dir: str, dataset, shape, config: CompareConfig) -> ArmImage:
    from ..imaging.stitching import stitch
    from ..models.bundle import load_bundle
    from ..models.inference import predict

    timer = _Timer()
    bundle = timer(f"{key}.load", load_bundle, bundle_dir)
    bundle.check_compatible(dataset)
    crop = resolve_crop(config, dataset.patch_size)
    batch = getattr(config, f"{key}_predict_batch_size")
    chunk = getattr(config, f"{key}_chunk_size")
    prediction = timer(
        f"{key}.inference", predict, bundle, dataset, batch_size=batch, chunk=chunk, progress=config.progress
    )
    patches, positions = prediction.patches, prediction.positions_xy
    if patches.shape[0] != dataset.n_positions:
        raise MetricError(
            f"{MODEL_NAMES[key]}: {patches.shape[0]} patches for {dataset.n_positions} positions"
        )
    image, weights = timer(
        f"{key}.stitch", stitch, patches, positions, shape, crop=crop, backend="xla", chunk=config.stitch_chunk_size
    )
    details = {
        "bundle": str(bundle_dir),
        "kind": bundle.kind,
        "gridsize": bundle.gridsize,
        "n_patches": int(patches.shape[0]),
        "stitch_crop_size": crop,
        "predict_batch_size": batch,
        "chunk_size": chunk,
        "bundle_metadata": bundle.metadata,
    }
    return ArmImage(key, np.asarray(image, np.complex64), np.asarray(weights) > 0, timer.timings, details)


def _ptychi_arm(path: str, shape) -> ArmImage:
    from ..io.reconstruction import load_reconstruction, place_in_object_frame

    timer = _Timer()
    recon = timer("ptychi.load", load_reconstruction, path)
    image, valid = timer("ptychi.place", place_in_object_frame, recon, shape)
    details = {
        "path": str(path),
        "algorithm": recon.algorithm,
        "placed_by": recon.placed_by,
        "canvas_origin_xy": recon.canvas_origin_xy,
        "reconstruction_wall_time_s": recon.wall_time_s,
        "metadata": recon.metadata,
    }
    timings = dict(timer.timings)
    if recon.wall_time_s is not None:
        timings["ptychi.reconstruction"] = float(recon.wall_time_s)
    return ArmImage("ptychi", np.asarray(image, np.complex64), np.asarray(valid, bool), timings, details)


def _computation_time(arm: ArmImage) -> float | None:
    """What a user waits for to get this arm's image from the diffraction data."""
    if arm.key == "ptychi":
        return arm.timings_s.get("ptychi.reconstruction")
    return arm.timings_s[f"{arm.key}.inference"] + arm.timings_s[f"{arm.key}.stitch"]


def _register(arm: ArmImage, truth, region, placed_by_registration: bool, config: CompareConfig):
    from ..imaging.registration import register

    estimate_shift = not config.skip_registration and (
        not config.register_ptychi_only or arm.key == "ptychi"
    )
    if placed_by_registration and not estimate_shift:
        raise ConfigError(
            f"{arm.name}: the reconstruction file records no object-frame placement, so it must be "
            "registered; drop --skip-registration"
        )
    return register(
        arm.image,
        truth,
        region,
        max_shift=config.max_shift_px,
        correlate_on=config.registration_on,
        phase_align=config.phase_align_method,
        estimate_shift=estimate_shift,
    )


# --------------------------------------------------------------------------------------------
# The job


def run_compare(config: CompareConfig, *, echo: Callable[[str], None] = print) -> dict:
    """Run one comparison; returns the metrics dictionary written to ``metrics.json``.

    Raises a :class:`~compare_models.errors.CompareModelsError` for bad input before the
    output directory is touched where possible; any failure after that leaves the directory
    with ``logs/`` and ``FAILED`` only.
    """
    from ..io.dispatch import load_dataset

    config.validate()
    _check_inputs_exist(config)
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
            "test data: %d positions, N = %d, object %s, measured dose %.4g",
            dataset.n_positions, dataset.patch_size, shape, dataset.measured_dose,
        )

        arms: list[ArmImage] = []
        if config.pinn_dir:
            arms.append(_network_arm("pinn", config.pinn_dir, dataset, shape, config))
        if config.baseline_dir:
            arms.append(_network_arm("baseline", config.baseline_dir, dataset, shape, config))
        if config.ptychi_recon_path:
            arms.append(_ptychi_arm(config.ptychi_recon_path, shape))

        result = _evaluate(arms, dataset, shape, truth, pixel_size, config, timer)
        timer("write_outputs", _write_outputs, out.path, arms, result, dataset, config, timer)
        result["timings_s"] = _all_timings(timer, arms)
    if truth is not None:
        echo(format_metrics_table(metric_rows(result)))
    echo(f"results: {config.output_dir}")
    return result


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
            raise DatasetError(f"{flag} {path}: no such {'directory' if is_dir else 'file'}")
        if is_dir and not path.is_dir():
            raise DatasetError(f"{flag} {path}: expected a model bundle directory")


def _evaluate(arms, dataset, shape, truth, pixel_size, config, timer) -> dict:
    from ..imaging.registration import scanned_region

    region = scanned_region(
        dataset.positions_xy, dataset.patch_size, shape, crop=resolve_crop(config, dataset.patch_size),
        erode=config.region_erode_px,
    )
    result = {"region_pixels": int(region.sum()), "object_shape": list(shape), "models": {}, "region": region}
    if truth is None:
        log.warning("the test data has no ground truth ('objectGuess'): images only, no metrics")
        for arm in arms:
            result["models"][arm.name] = {"computation_time_s": _computation_time(arm)}
        result["aligned"] = {arm.name: arm.image for arm in arms}
        return result
    from ..imaging.metrics import compute_metrics

    aligned = {}
    for arm in arms:
        placed_by_registration = arm.details.get("placed_by") == "registration"
        registration = timer(f"{arm.key}.registration", _register, arm, truth, region, placed_by_registration, config)
        aligned[arm.name] = registration.aligned
        metrics = timer(
            f"{arm.key}.metrics",
            compute_metrics,
            registration.aligned,
            truth,
            region,
            ms_ssim_sigma=config.ms_ssim_sigma,
            frc_sigma=config.frc_sigma,
            pixel_size_m=pixel_size,
        )
        result["models"][arm.name] = {
            "metrics": metrics,
            "registration": registration.to_dict(),
            "computation_time_s": _computation_time(arm),
        }
    result["aligned"] = aligned
    return result


COMPONENT_METRICS = ("mae", "mse", "psnr", "ssim", "ms_ssim", "frc50", "frc1over7", "frc_1bit", "frc_halfbit")


def metric_rows(result: dict) -> list[tuple]:
    """Rows of ``comparison_metrics.csv`` (``model,metric,amplitude,phase,value``)."""
    rows = []
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
        if entry.get("computation_time_s") is not None:
            rows.append((name, "computation_time_s", None, None, entry["computation_time_s"]))
    return rows


def _frc_curves(result: dict) -> dict:
    curves = {}
    for name, entry in result["models"].items():
        metrics = entry.get("metrics")
        if metrics is None:
            continue
        curves[name] = {}
        for component in ("amplitude", "phase"):
            frc = metrics[component]["frc"]
            curves[name][component] = {
                "frc": frc["curve"],
                "frequency_nyquist": frc["frequency_nyquist"],
                "threshold_halfbit": frc["thresholds"]["halfbit"],
                "threshold_1bit": frc["thresholds"]["1bit"],
            }
    return curves


def _image_key(name: str) -> str:
    return name.lower()


def _write_outputs(directory: Path, arms, result, dataset, config, timer):
    from ..io.ptychodus import write_product
    from ..report import writers as report

    truth = dataset.object_truth
    region = result["region"]
    stitched = {_image_key(arm.name): arm.image for arm in arms}
    aligned = {_image_key(name): image for name, image in result["aligned"].items()}
    if truth is not None:
        stitched["ground_truth"] = truth
        aligned["ground_truth"] = truth
    report.write_images_npz(stitched, directory / "reconstructions.npz", masks={"scanned_region": region})
    report.write_images_npz(aligned, directory / "reconstructions_aligned.npz")
    title = f"{dataset.n_positions} positions, measured dose {dataset.measured_dose:.3g} photons/pattern"
    report.plot_comparison(result["aligned"], truth, region, directory / "comparison.png", title=title)

    rows = metric_rows(result)
    if truth is not None:
        report.write_metrics_csv(rows, directory / "comparison_metrics.csv")
        curves = _frc_curves(result)
        report.write_frc_csv(curves, directory / "frc_curves.csv")
        report.plot_frc(curves, directory / "frc.png")
    metrics_doc = {
        "schema": "compare_models.metrics/1",
        "object_shape": result["object_shape"],
        "region_pixels": result["region_pixels"],
        "ground_truth": truth is not None,
        "models": result["models"],
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
        },
        "test_data": {
            "n_positions": dataset.n_positions,
            "patch_size": dataset.patch_size,
            "dose_measured": dataset.measured_dose,
            "dose_nominal": dataset.nominal_dose,
            "seed": dataset.metadata.get("seed"),
            "metadata": dataset.metadata,
        },
        "arms": {arm.name: arm.details for arm in arms},
        "corrections": {
            name: entry.get("registration") for name, entry in result["models"].items()
        },
        "seen_in_training": _seen_in_training(arms, truth, region),
        "timings_s": _all_timings(timer, arms),
    }
    report.write_json(provenance, directory / "provenance.json")


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
