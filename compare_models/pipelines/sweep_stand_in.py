"""Stand-in steps: a sweep's plumbing without its science, in milliseconds.

``step_runner: stand-in`` (``ptycho-study sweep --dry-run``) runs every step of every cell
through :func:`run_stand_in_step` instead of the real step process: each step writes small
files where the real one writes its outputs, and the compare step a
``comparison_metrics.csv``, ``provenance.json`` and ``report.html`` of the real shape. The
numbers are deterministic functions of the cell's dose, seed and the step's settings (seeded
NumPy draws, no clock, no host), so a dry run gives the same ``sweep_metrics.csv`` on a laptop
and on a cluster. They measure nothing: a dry run checks a scheduler set-up (queues,
accounts, the workers' environment, a shared output directory) before spending an
allocation on the real steps, and it is what the sweep's own tests of resuming, killing,
failing and scheduling run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import MappingProxyType

import numpy as np

from ..report.vocabulary import MODEL_NAMES
from ..report.writers import write_metrics_csv
from .sweep_step import cell_paths

__all__ = ["run_stand_in_step", "STAND_IN_MARK"]

#: Written into every stand-in file, so that nobody mistakes one for a result.
STAND_IN_MARK = "stand-in output of a dry run: these numbers measure nothing"

_PATTERN_SHAPE = (6, 8, 8)  # patterns of a stand-in data set


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"stand_in": STAND_IN_MARK, **data}, indent=2, sort_keys=True, default=str))


def _simulate(settings: dict, paths: dict, log) -> None:
    dose, seed = float(settings["dose"]), int(settings["seed"])
    rng = np.random.default_rng([seed, int(round(dose))])
    per_pixel = dose / math.prod(_PATTERN_SHAPE[1:])
    paths["train"].parent.mkdir(parents=True, exist_ok=True)
    for role in ("train", "test"):
        counts = rng.poisson(per_pixel, size=_PATTERN_SHAPE).astype(np.float64)
        np.savez(paths[role], diffraction=counts, stand_in=np.array(STAND_IN_MARK))
        log.write(f"{role}: {paths[role]} ({counts.shape[0]} stand-in patterns, mean {counts.sum((1, 2)).mean():.6g} photons)\n")


def _counts(path: Path) -> np.ndarray:
    with np.load(path, allow_pickle=False) as data:
        return data["diffraction"]


def _train(settings: dict, paths: dict, log) -> None:
    model = settings["model"]
    photons = float(_counts(paths["train"]).sum((1, 2)).mean())
    _write_json(paths[model] / "stand_in_model.json", {"model": model, "train_photons": photons, "settings": settings})
    log.write(f"{model}: stand-in bundle {paths[model]}\n")


def _reconstruct(settings: dict, paths: dict, log) -> None:
    _write_json(paths["ptychi"] / "stand_in_reconstruction.json", {"settings": settings})
    if settings.get("half_sets"):
        for half in (1, 2):
            _write_json(paths["ptychi_half_sets"] / f"stand_in_half{half}.json", {"half": half})
    log.write(f"ptychi: stand-in reconstruction {paths['ptychi']}\n")


#: How well each arm does against dose in the stand-in (photons at which its quality is 1/2).
_HALF_QUALITY_PHOTONS = MappingProxyType({"pinn": 300.0, "baseline": 1000.0, "ptychi": 3000.0})


def _compare(settings: dict, paths: dict, log) -> None:
    counts = _counts(paths["test"])
    dose_measured = float(counts.sum((1, 2)).mean())
    present = {
        "pinn": paths["pinn"].is_dir(),
        "baseline": paths["baseline"].is_dir(),
        "ptychi": paths["ptychi"].is_dir(),
    }
    # The scatter of the test counts stands in for a seed's luck.
    luck = float(counts.std() / max(counts.mean(), 1e-12)) / 100
    rows = []
    for arm, here in present.items():
        if not here:
            continue
        quality = dose_measured / (dose_measured + _HALF_QUALITY_PHOTONS[arm])
        quality = min(max(quality - luck, 0.0), 1.0)
        name = MODEL_NAMES[arm]
        rows += [
            (name, "ms_ssim", quality, 0.9 * quality, None),
            (name, "ms_ssim_scales", 5.0, 5.0, None),
            (name, "psnr", 10 * math.log10(1 + dose_measured) * quality, 8 * quality, None),
            (name, "frc50", 0.5 * quality, 0.45 * quality, None),
            (name, "halfset_frc1over7", 0.6 * quality, 0.5 * quality, None),
            (name, "halfset_frc_halfbit", 0.55 * quality, 0.45 * quality, None),
            (name, "halfset_frc_1bit", 0.5 * quality, 0.4 * quality, None),
        ]
    out = paths["compare"]
    out.mkdir(parents=True, exist_ok=True)
    write_metrics_csv(rows, out / "comparison_metrics.csv")
    _write_json(out / "provenance.json", {"test_data": {"dose_measured": dose_measured}, "settings": settings})
    (out / "report.html").write_text(
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>stand-in cell</title></head>"
        f"<body><p>{STAND_IN_MARK}</p></body></html>"
    )
    log.write(f"compare: stand-in metrics for {', '.join(a for a, here in present.items() if here)} in {out}\n")


_STEPS = MappingProxyType({
    "simulate": _simulate,
    "train_pinn": _train,
    "train_baseline": _train,
    "reconstruct": _reconstruct,
    "compare": _compare,
})


def run_stand_in_step(request) -> int:
    """Run ``request.step`` of a cell as a stand-in (a :data:`compare_models.pipelines.sweep.StepRunner`).

    Parameters
    ----------
    request : compare_models.pipelines.sweep.StepRequest
        The step, its settings, the cell directory and the log path.

    Returns
    -------
    int
        0; a step that cannot be stood in for (unknown name, a missing input) raises.
    """
    paths = cell_paths(request.cell_dir)
    log_path = Path(request.log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        log.write(f"{request.step} ({STAND_IN_MARK})\n")
        _STEPS[request.step](request.settings, paths, log)
    return 0
