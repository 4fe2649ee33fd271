"""Half-set FRC inside compare-models: each arm's two half images, and their FRC.

Every arm of a comparison gets two images from the two disjoint halves of the scan
(:func:`compare_models.imaging.halfsets.split_half_sets`):

* a network: :func:`network_half_images`. With gridsize 1 a patch depends on its own pattern
  only, so each patch of the full run is also added to its half's canvas in the same streaming
  pass (no extra inference); with gridsize 2 each half forms its groups among its own
  positions and is predicted again. Both halves are stitched on the full image's grid with the
  full image's settings.
* pty-chi: two reconstructions that ``ptycho-study reconstruct --half-sets`` made from the two
  halves (:func:`ptychi_half_set_paths`, :func:`ptychi_half_images`).

:func:`evaluate_half_sets` then scores half 2 of every arm against its half 1 on the one
scoring path (:func:`compare_models.imaging.scoring.score_images`, kind ``"half_set"``):
registered onto half 1 (pty-chi: shift, phase offset and ramp, amplitude scale; a network: no
shift, since both halves come from one model on one grid, then the gauge) over one region for
every arm, the half-set region, and correlated (the half-set FRC: an iterative arm's
resolution, a network's reproducibility under independent data). Neither step needs ground
truth.

Nothing here imports TensorFlow: a network arm hands in its stitcher and its ``predict_half``.
docs/how-the-numbers-are-made.md ("Half-set FRC") describes every rule and output.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType

import numpy as np

from ..errors import ConfigError, DatasetError, MetricError
from ..report.records import HalfImages, HalfSetScore, HalfSetScoring
from ..report.vocabulary import ARM_KINDS, HALF_SET_REGION_RULE

__all__ = [
    "DEFAULT_MIN_COVERAGE",
    "MIN_REGION_SIDE_PX",
    "half_canvases",
    "network_half_images",
    "ptychi_half_set_paths",
    "ptychi_half_images",
    "evaluate_half_sets",
]

log = logging.getLogger("compare_models.compare")

#: Both halves of every arm must cover at least this fraction of the scan's hull. Below it the
#: region has holes where a half lacks data: the FRC window must fall to zero around every hole,
#: a sieve-like window imposes its own pattern on both images (and correlates them at its
#: frequencies), and the region no longer resembles the one the full images cover.
DEFAULT_MIN_COVERAGE = 0.9
#: The half-set region's bounding box must be at least this many pixels a side: the floor of
#: the scored region against ground truth (the 11-pixel SSIM window), so that one scan is never
#: big enough for one kind of number and not the other; it leaves 5 FRC rings above the mean.
MIN_REGION_SIDE_PX = 11
# How a network's half images were made (per_position True: gridsize 1), in words.
_NETWORK_HALVES_HOW = MappingProxyType({
    True: (
        "the full run's patches of each half's positions, stitched on the full image's grid in "
        "the same pass (gridsize 1: a patch depends on its own pattern only)"
    ),
    False: (
        "each half predicted on its own (groups formed among the half's positions only) and "
        "stitched on the full image's grid"
    ),
})


# --------------------------------------------------------------------------------------------
# Making the half images


def half_canvases(split, n_positions: int) -> np.ndarray:
    """(M, 2) canvas indices for a streaming pass that fills the full image (canvas 0) and,
    for gridsize 1, each position's half image (canvas 1 or 2; -1 for a position in neither)."""
    half_of = np.full(int(n_positions), -1)
    for number, indices in enumerate(split.halves, start=1):
        half_of[indices] = number
    return np.stack([np.zeros(int(n_positions), int), half_of], axis=1)


def network_half_images(
    split,
    *,
    per_position: bool,
    stitcher,
    positions_xy,
    predict_half: Callable,
    key: str,
    crop: int,
) -> HalfImages:
    """A network arm's two half images, from canvases 1 and 2 of its stitcher.

    Parameters
    ----------
    split : compare_models.imaging.halfsets.HalfSplit
    per_position : bool
        True when a patch depends on its own pattern only (gridsize 1): the full run's pass
        already added each patch to its half's canvas, so nothing is predicted again.
        Otherwise (gridsize 2) ``predict_half`` streams each half, whose groups are formed
        among that half's positions only, into its canvas.
    stitcher : compare_models.imaging.stitching.Stitcher
        The arm's stitcher (the full image's grid and settings), with three canvases: the full
        image, half 1, half 2.
    positions_xy : ndarray (M, 2)
        Where the full run's patches sat (the scan positions, or a PtychoPINN model's group
        centroids), object pixels.
    predict_half : callable
        ``predict_half(number, indices) -> positions_xy (n, 2)``: predicts and stitches the
        half ``number`` (1 or 2) made of the scan positions ``indices`` into canvas
        ``number``, and says where its patches sat.
    key : str
        The arm's key, for timings (``<key>.half_sets.predict_stitch``).
    crop : int
        The stitching crop (recorded).
    """
    images, valid, positions = [], [], []
    seconds = 0.0
    for number, indices in enumerate(split.halves, start=1):
        if per_position:
            half_positions = np.asarray(positions_xy)[indices]
        else:
            start = time.perf_counter()
            try:
                half_positions = predict_half(number, indices)
            except DatasetError as exc:
                raise DatasetError(
                    f"half set {number} ({indices.size} positions, groups formed inside the half): "
                    f"{exc}; or --no-half-sets"
                ) from exc
            seconds += time.perf_counter() - start
        if stitcher.n_added[number] != indices.size:
            raise MetricError(f"half set {number}: {stitcher.n_added[number]} patches for {indices.size} positions")
        image, weights = stitcher.result(number)
        images.append(np.asarray(image, np.complex64))
        valid.append(np.asarray(weights) > 0)
        positions.append(np.asarray(half_positions, np.float64))
    return HalfImages(
        tuple(images), tuple(valid), tuple(positions),
        {**split.to_dict(), "made_by": "compare-models"}, _NETWORK_HALVES_HOW[bool(per_position)],
        {f"{key}.half_sets.predict_stitch": seconds},
        {"stitch_crop_size": int(crop), "reused_full_run_patches": bool(per_position)},
    )


def ptychi_half_set_paths(config) -> tuple[tuple[Path, Path], str] | None:
    """Where the pty-chi half-set reconstructions are, and how they were found.

    In order: ``--ptychi-half-set-paths A B``; ``--ptychi-half-sets DIR`` (``DIR`` holding
    ``ptychi_half1.npz`` and ``ptychi_half2.npz``, or a reconstruct output directory whose
    ``half_sets/`` does); else ``half_sets/`` beside ``--ptychi_recon_path`` when the full
    reconstruction's metadata says it was made with ``--half-sets`` and both files are there.
    None when there are none.

    Raises
    ------
    DatasetError
        A path given explicitly does not exist.
    """
    from .reconstruct import HALF_SET_DIR, half_set_paths

    if config.ptychi_half_set_paths:
        pair = tuple(Path(p) for p in config.ptychi_half_set_paths)
        for path in pair:
            if not path.is_file():
                raise DatasetError(f"--ptychi-half-set-paths {path}: no such file")
        return pair, "--ptychi-half-set-paths"
    if config.ptychi_half_sets:
        directory = Path(config.ptychi_half_sets)
        if not directory.is_dir():
            raise DatasetError(f"--ptychi-half-sets {directory}: no such directory")
        for candidate in (directory, directory / HALF_SET_DIR):
            pair = half_set_paths(candidate)
            if all(p.is_file() for p in pair):
                return pair, "--ptychi-half-sets"
        names = ", ".join(p.name for p in half_set_paths(directory))
        raise DatasetError(
            f"--ptychi-half-sets {directory}: expected {names} there or in its {HALF_SET_DIR}/ "
            "(ptycho-study reconstruct --half-sets writes them)"
        )
    if config.ptychi_recon_path:
        pair = half_set_paths(Path(config.ptychi_recon_path).parent / HALF_SET_DIR)
        if all(p.is_file() for p in pair) and _made_with_half_sets(config.ptychi_recon_path, pair):
            return pair, f"beside --ptychi_recon_path ({pair[0].parent})"
    return None


def _made_with_half_sets(full_path, pair) -> bool:
    """Whether the full reconstruction was made with ``--half-sets`` on the data the halves
    were split from (so that stale halves of another run are never picked up)."""
    from ..io.reconstruction import load_reconstruction

    full = load_reconstruction(full_path).metadata
    if not (full.get("config") or {}).get("half_sets"):
        log.warning("%s: half-set files found but the reconstruction was not made with --half-sets; ignored", pair[0].parent)
        return False
    for path in pair:
        record = load_reconstruction(path).metadata.get("half_set") or {}
        if record.get("of_dataset_sha256") != full.get("dataset_sha256"):
            log.warning("%s: made from other data than %s; the half sets are ignored", path, full_path)
            return False
    return True


def ptychi_half_images(pair, shape, dataset, *, found: str = "") -> HalfImages:
    """The two pty-chi half reconstructions placed on the comparison's grid.

    Parameters
    ----------
    pair : (path, path)
        Half 1 and half 2 reconstruction files (this project's format or another writer's).
    shape : tuple (H, W)
    dataset : compare_models.io.dataset.Dataset
        The test data: when the files record the split and the data they came from
        (``metadata["half_set"]``), the positions of each half are recovered for coverage hints.
    found : str
        How the files were found (:func:`ptychi_half_set_paths`), for provenance.
    """
    from ..io.dataset import dataset_fingerprint
    from ..io.reconstruction import load_reconstruction, place_in_object_frame

    images, valid, records, details, timings = [], [], [], [], {}
    start = time.perf_counter()
    for path in pair:
        recon = load_reconstruction(path)
        image, mask = place_in_object_frame(recon, shape)
        images.append(np.asarray(image, np.complex64))
        valid.append(np.asarray(mask, bool))
        records.append(recon.metadata.get("half_set") or {})
        details.append({
            "path": str(path),
            "algorithm": recon.algorithm,
            "placed_by": recon.placed_by,
            "canvas_origin_xy": recon.canvas_origin_xy,
            "reconstruction_wall_time_s": recon.wall_time_s,
        })
    timings["ptychi.half_sets.load"] = time.perf_counter() - start
    split = {"made_by": "ptycho-study reconstruct --half-sets" if records[0] else "unknown (not recorded in the files)"}
    positions = None
    if records[0] and records[1]:
        split.update(
            method=records[0].get("method"),
            n_positions=records[0].get("n_positions_total"),
            n_half1=records[0].get("n_positions"),
            n_half2=records[1].get("n_positions"),
        )
        same_data = records[0].get("of_dataset_sha256") == dataset_fingerprint(dataset)
        split["from_this_test_data"] = bool(same_data)
        if same_data:
            positions = tuple(dataset.positions_xy[np.asarray(r["position_indices"], dtype=np.int64)] for r in records)
    return HalfImages(
        tuple(images), tuple(valid), positions, split,
        "two pty-chi reconstructions, one from each half of the scan's positions, placed by their recorded frames",
        timings, {"files": details, "placed_by": [d["placed_by"] for d in details], "found": found},
    )


# --------------------------------------------------------------------------------------------
# Scoring

def evaluate_half_sets(
    arms, positions_xy, shape, config, *, pixel_size_m=None, estimate_shift_for=None, timer=None, required=True
) -> HalfSetScoring:
    """Half-set FRC of every arm that has two half images, on one region for all.

    Parameters
    ----------
    arms : sequence of ArmImage
        Arms with ``halves`` (:class:`HalfImages`) or None.
    positions_xy : ndarray (M, 2)
        The test scan's positions (all of them): the hull.
    shape : tuple (H, W)
    config : CompareConfig
        ``max_shift_px``, ``registration_on``, ``region_margin_px``, ``phase_align_method``,
        ``frc_sigma``, ``min_half_set_coverage``, ``stitch_crop_size``.
    pixel_size_m : float, optional
    estimate_shift_for : callable, optional
        ``estimate_shift_for(arm) -> bool``: whether a shift between an iterative arm's halves
        is estimated (the comparison's own policy); default always. A network's halves share
        one frame by construction: never.
    timer : callable, optional
        ``timer(stage, func, *args, **kwargs)``.
    required : bool
        True (``--half-sets`` given, or no ground truth, so that the half-set FRC is the run's
        only measure): an arm whose halves leave too little is an error naming the fix. False
        (the default with ground truth): that arm gets no half-set FRC, with the same message as
        a warning and in ``not_computed``.

    Returns
    -------
    HalfSetScoring
        ``computed``, ``region`` (mask) and ``region_info`` (the rule, pixel counts, coverage,
        erosion), ``arms`` (name -> :class:`HalfSetScore`), ``not_computed`` (name -> reason).

    Raises
    ------
    MetricError
        A half leaves too little: both halves of an arm cover less than
        ``config.min_half_set_coverage`` of the hull, or the region is under
        :data:`MIN_REGION_SIDE_PX` a side; the message names the fix.

    Notes
    -----
    An arm whose half sets cannot be scored (a half-to-half shift beyond
    ``config.max_shift_px``, halves the gauge or the FRC cannot use) costs the others nothing:
    it is recorded in ``failures`` with the fix, and the others are scored without it.
    """
    from ..imaging.region import scan_hull
    from ..imaging.scoring import score_images
    from .compare_config import scoring_rules_for

    estimate_shift_for = estimate_shift_for or (lambda arm: True)
    with_halves = [arm for arm in arms if arm.halves is not None]
    not_computed = {arm.name: _reason_missing(arm, config) for arm in arms if arm.halves is None}
    for name, reason in not_computed.items():
        log.warning("%s: no half-set FRC (%s)", name, reason)
    if not with_halves:
        return HalfSetScoring(computed=False, not_computed=not_computed)
    hull = scan_hull(positions_xy, shape)
    masks, coverage = _half_masks(with_halves, hull)
    with_halves = _drop_short(with_halves, coverage, hull, config, required, not_computed)
    if not with_halves:
        return HalfSetScoring(computed=False, not_computed=not_computed)
    inputs = [_half_set_input(arm, masks[arm.name], estimate_shift_for(arm)) for arm in with_halves]
    rules = scoring_rules_for("half_set", config, pixel_size_m)
    scoring = score_images(inputs, hull, rules, check_region=_check_half_set_region, timer=timer)
    failures = _half_set_failures(with_halves, scoring, config)
    if scoring.region is None:
        return HalfSetScoring(computed=False, not_computed=not_computed, failures=failures)
    info = _half_set_region_info(scoring.region, coverage, hull, config)
    scores = {
        arm.name: _half_set_score(arm, scoring.scores[arm.name], coverage[arm.name])
        for arm in with_halves if arm.name in scoring.scores
    }
    return HalfSetScoring(
        computed=True, region=scoring.region.mask, region_info=info, arms=scores, not_computed=not_computed,
        failures=failures,
    )


def _half_set_failures(arms, scoring, config) -> dict:
    """The records of the arms whose half sets could not be scored (logged)."""
    from .compare_failures import HALF_SETS, scoring_failure

    failures = {}
    for arm in arms:
        if arm.name in scoring.failures:
            failures[arm.name] = scoring_failure(arm.key, scoring.failures[arm.name], config, stage=HALF_SETS)
            log.error("%s", failures[arm.name].line(arm.name))
    return failures


def _half_set_score(arm, score, coverage) -> HalfSetScore:
    """An arm's half-set record. Where the phase of half 1 wraps, the phase FRC is unharmed:
    it correlates the unit phasors exp(i phase), which have no jumps."""
    wraps = score.measures["phase_wrap_pixels"]
    if wraps:
        log.info(
            "%s: the phase of half 1 wraps next to %d pixels of the half-set region (the phase FRC "
            "correlates exp(i phase), which does not jump there)", arm.name, wraps,
        )
    return HalfSetScore(
        name=arm.name, half1=arm.halves.images[0], score=score, split=arm.halves.split,
        how=arm.halves.how, coverage=coverage, arm_kind=ARM_KINDS[arm.key],
    )


def _half_masks(arms, hull) -> tuple[dict, dict]:
    """Each arm's two half masks (valid and non-zero), the fractions of the hull that half 1,
    half 2 and both cover, and the holes both leave inside it
    (:func:`compare_models.imaging.coverage.region_holes`)."""
    from ..imaging.coverage import region_holes

    hull_pixels = int(hull.sum())
    masks, coverage = {}, {}
    for arm in arms:
        halves = [np.asarray(v, bool) & (np.asarray(img) != 0) for img, v in zip(arm.halves.images, arm.halves.valid, strict=True)]
        masks[arm.name] = tuple(halves)
        both = hull & halves[0] & halves[1]
        coverage[arm.name] = {
            "half1": float((hull & halves[0]).sum() / hull_pixels),
            "half2": float((hull & halves[1]).sum() / hull_pixels),
            "both": float(both.sum() / hull_pixels),
            "holes": region_holes(both),
        }
    return masks, coverage


def _drop_short(arms, coverage, hull, config, required: bool, not_computed: dict) -> list:
    """The arms whose halves both cover enough of the hull, without holes. For the others: an
    error when the half-set FRC is ``required``, else a warning and the reason in
    ``not_computed``."""
    kept = []
    for arm in arms:
        enough = coverage[arm.name]["both"] >= config.min_half_set_coverage
        if enough and not coverage[arm.name]["holes"]["count"]:
            kept.append(arm)
            continue
        message = _coverage_message(arm, coverage[arm.name], hull, config)
        if required:
            raise MetricError(message)
        log.warning("%s", message)
        not_computed[arm.name] = message
    return kept


def _half_set_input(arm, masks, estimate: bool):
    """Half 2 of an arm as a scoring input against its half 1. A network's two halves share
    one frame by construction (one model, one grid): no shift is estimated between them. Half
    sets placed by registration (no recorded frame) must have their shift estimated."""
    from ..imaging.scoring import ScoringInput

    if ARM_KINDS[arm.key] == "network":
        estimate = False
    placed = all(p != "registration" for p in arm.halves.details.get("placed_by", ()))
    if not estimate and not placed:
        raise ConfigError(
            f"{arm.name}: the half-set reconstruction files record no object-frame placement, "
            "so they must be registered; drop --skip-registration"
        )
    first, second = arm.halves.images
    return ScoringInput(
        name=arm.name, image=second, valid=masks[1], reference=first,
        region_masks={f"{arm.name} half 1": masks[0], f"{arm.name} half 2": masks[1]},
        estimate_shift=estimate, stage=f"{arm.key}.half_sets",
    )


def _check_half_set_region(region) -> None:
    """The half-set region must be at least :data:`MIN_REGION_SIDE_PX` a side."""
    rows = np.flatnonzero(region.mask.any(axis=1))
    cols = np.flatnonzero(region.mask.any(axis=0))
    box = (int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1))
    if min(box) < MIN_REGION_SIDE_PX:
        raise MetricError(
            f"half-set FRC: the region both halves of every arm cover is only {box[0]} x {box[1]} px "
            f"(at least {MIN_REGION_SIDE_PX} px a side for an FRC); use a larger scan, a larger "
            "stitching crop (--stitch-crop-size), or --no-half-sets"
        )


def _half_set_region_info(region, coverage, hull, config) -> dict:
    """metrics.json's half-set region: :meth:`ScoredRegion.to_dict` with the rule and coverage."""
    hull_pixels = int(hull.sum())
    info = region.to_dict()
    info.update(
        rule=HALF_SET_REGION_RULE,
        coverage=coverage,
        both_halves_fraction_of_hull=float(region.common_pixels / hull_pixels),
        region_fraction_of_hull=float(region.n_pixels / hull_pixels),
        min_coverage=float(config.min_half_set_coverage),
    )
    log.info(
        "half-set region: %d px (%.1f %% of the hull; both halves of every arm cover %.1f %% of it)",
        region.n_pixels, 100 * info["region_fraction_of_hull"], 100 * info["both_halves_fraction_of_hull"],
    )
    return info


def _reason_missing(arm, config) -> str:
    if not config.half_sets_enabled:
        return "--no-half-sets"
    if arm.key == "ptychi":
        return (
            "no half-set reconstructions: run ptycho-study reconstruct --half-sets, or give "
            "--ptychi-half-sets DIR / --ptychi-half-set-paths A B"
        )
    return "no half images"


def _coverage_message(arm, coverage, hull, config) -> str:
    """The error for halves that leave too much of the hull uncovered, with the fix."""
    from ..imaging.halfsets import largest_gap_px

    head = (
        f"half-set FRC: both halves of {arm.name} cover only {100 * coverage['both']:.1f} % of the "
        f"scan's hull (half 1 {100 * coverage['half1']:.1f} %, half 2 {100 * coverage['half2']:.1f} %; "
        f"at least {100 * config.min_half_set_coverage:.0f} % needed, --min-half-set-coverage)"
    )
    holes = coverage.get("holes") or {"count": 0}
    if coverage["both"] >= config.min_half_set_coverage and holes["count"]:
        head = (
            f"half-set FRC: both halves of {arm.name} cover {100 * coverage['both']:.1f} % of the scan's "
            f"hull but leave {holes['count']} holes inside it ({holes['pixels']} px, the largest "
            f"{holes['largest_pixels']} px), and the FRC window would fall to zero around each"
        )
    if arm.key == "ptychi":
        return (
            f"{head}: the pty-chi half reconstructions do not cover the scan; reconstruct both halves "
            "from this test data (ptycho-study reconstruct --half-sets), or --no-half-sets"
        )
    crop = arm.halves.details.get("stitch_crop_size")
    positions = arm.halves.positions_xy
    patch_size = arm.details.get("patch_size")
    if not positions:
        return f"{head}: use a larger stitching crop (--stitch-crop-size) or a denser scan, or --no-half-sets"
    gap = max(largest_gap_px(p, hull) for p in positions)
    need = _crop_that_covers(positions, patch_size, hull, crop, config.min_half_set_coverage)
    if need is not None:
        fix = f"use a larger stitching crop (--stitch-crop-size {need} or more; now {crop}) or a denser scan"
    else:
        fix = f"use a denser scan (no crop up to N = {patch_size} covers enough)"
    return (
        f"{head}: each half holds every other position, and its patches cut to the stitching crop "
        f"({crop} px) leave gaps up to {gap:.1f} px from its nearest position; {fix}, or --no-half-sets"
    )


def _crop_that_covers(positions, patch_size, hull, crop, fraction):
    """The smallest stitching crop, above ``crop`` and up to N, whose windows at both halves'
    positions cover ``fraction`` of the hull without holes
    (:func:`compare_models.imaging.region.scanned_region`, the stitcher's footprint); None if
    there is none."""
    from ..imaging.coverage import region_holes
    from ..imaging.region import scanned_region

    if not patch_size or crop is None:
        return None
    hull_pixels = hull.sum()
    for size in range(int(crop) + 1, int(patch_size) + 1):
        both = hull.copy()
        for half in positions:
            both &= scanned_region(half, patch_size, hull.shape, crop=size)
        if both.sum() >= fraction * hull_pixels and not region_holes(both)["count"]:
            return size
    return None
