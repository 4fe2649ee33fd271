"""The compare job: models and data in, a complete comparison directory out.

Stages (each timed and logged): load the test data, then per arm (PINN, baseline, pty-chi) load
the model or reconstruction, predict every scan position in fixed-shape batches, stitch the
patches in the ground-truth frame (:mod:`compare_models.pipelines.compare_arms`); then score
every arm on one footing (:func:`evaluate`, through the one scoring path
:func:`compare_models.imaging.scoring.score_images`): estimate each arm's shift over the pixels
of the scan's hull where every arm has data, erode that region by the largest shift plus a
margin, shift each whole image, fit its gauge and compute the metrics on that one region; and
write the report (:func:`compare_models.report.compare_output.write_comparison`).
docs/how-the-numbers-are-made.md says how each number is made.

Half-set FRC (:mod:`compare_models.pipelines.compare_halfsets`), with or without ground truth:
every arm also gets two images from two disjoint halves of the scan, scored half 2 against
half 1 on the same path.

One arm never costs the others their numbers: an arm whose image cannot be made, or that
cannot be scored, is recorded with its reason and fix
(:mod:`compare_models.pipelines.compare_failures`) while the others are scored and written;
the run then exits :data:`~compare_models.pipelines.compare_failures.EXIT_FAILED_ARMS`. Only a
run in which no arm has any number fails as a whole.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import CompareModelsError, ConfigError, DatasetError
from ..report.records import ArmImage, ArmScore, Comparison, TruthScoring
from ..report.staging import StagedOutput
from ..report.vocabulary import CHANCE_DEFINITION, CHANCE_LABEL, CHANCE_NAME, MODEL_NAMES
from .compare_arms import Timer, compile_time, computation_time
from .compare_config import CompareConfig, resolve_crop, scoring_rules_for
from .compare_failures import ArmsFailedError, all_failed_message, making_failure, scoring_failure

__all__ = ["CompareConfig", "resolve_crop", "run_compare", "evaluate"]

log = logging.getLogger("compare_models.compare")


# --------------------------------------------------------------------------------------------
# The job


def run_compare(config: CompareConfig, *, echo: Callable[[str], None] = print) -> Comparison:
    """Run one comparison; returns its records (:class:`Comparison`), whose documents are
    written to the output directory.

    Raises a :class:`~compare_models.errors.CompareModelsError` for bad input before the
    output directory is touched where possible; any failure after that leaves the directory
    with ``logs/`` and ``FAILED`` only. An arm that cannot be made or scored is not such a
    failure: it is recorded (``Comparison.failures``) and the others are written; only when no
    arm has any number does the run fail (:class:`ArmsFailedError`).
    """
    from ..io.dispatch import load_dataset
    from ..report.compare_output import write_comparison
    from .compare_halfsets import ptychi_half_set_paths

    config.validate()
    _check_inputs_exist(config)
    ptychi_halves = ptychi_half_set_paths(config) if config.half_sets_enabled else None
    with StagedOutput(config.output_dir, overwrite=config.overwrite) as out:
        log.info("compare-models %s", " ".join(config.command_line))
        timer = Timer()
        dataset = _subsample(timer("load_test_data", load_dataset, config.test_data), config)
        shape = _describe_test_data(dataset, config)
        split = _half_set_split(dataset, config)
        arms, making_failures = _make_arms(dataset, shape, config, split, ptychi_halves)
        comparison = _score(arms, dataset, shape, config, split, timer, making_failures)
        document = timer(
            "write_outputs", write_comparison, out.path, comparison, dataset, config,
            seen_in_training=_seen_in_training(arms, dataset.object_truth, comparison.truth.region),
            timings_s=_all_timings(timer, arms),
        )
        comparison = dataclasses.replace(comparison, timings_s=_all_timings(timer, arms))
    _print_summary(comparison, document, dataset, config, echo)
    return comparison


def _describe_test_data(dataset, config: CompareConfig) -> tuple[int, int]:
    """Log what the test data is; return the object grid's shape."""
    shape = _object_shape(dataset)
    log.info("stitching crop: %d of N = %d", resolve_crop(config, dataset.patch_size), dataset.patch_size)
    log.info(
        "test data: %d positions, N = %d, object %s, %s",
        dataset.n_positions, dataset.patch_size, shape, dataset.dose_summary,
    )
    if not dataset.diffraction_in_counts:
        log.warning("test data: %s", dataset.diffraction_units)
    return shape


def _make_arms(dataset, shape, config: CompareConfig, split, ptychi_halves) -> tuple[tuple[ArmImage, ...], dict]:
    """Every arm the config names: its image on the object grid, and its half images; and,
    for an arm whose image cannot be made, its failure (the other arms are still made)."""
    from .compare_arms import network_arm

    arms: list[ArmImage] = []
    failures = {}
    makers = {
        "pinn": (config.pinn_dir, lambda: network_arm("pinn", config.pinn_dir, dataset, shape, config, split)),
        "baseline": (config.baseline_dir, lambda: network_arm("baseline", config.baseline_dir, dataset, shape, config, split)),
        "ptychi": (config.ptychi_recon_path, lambda: _ptychi_with_halves(config, shape, dataset, ptychi_halves)),
    }
    for key, (given, make) in makers.items():
        if not given:
            continue
        try:
            arms.append(make())
        except Exception as exc:  # any arm's failure is that arm's (a model that cannot run)
            failures[MODEL_NAMES[key]] = making_failure(key, exc)
            # A contract error says all in its message; anything else gets its traceback logged.
            log.error("%s", failures[MODEL_NAMES[key]].line(MODEL_NAMES[key]),
                      exc_info=not isinstance(exc, CompareModelsError))
    if not arms:
        raise ArmsFailedError(all_failed_message({name: [f] for name, f in failures.items()}))
    return tuple(arms), failures


def _ptychi_with_halves(config: CompareConfig, shape, dataset, ptychi_halves) -> ArmImage:
    from .compare_arms import ptychi_arm
    from .compare_halfsets import ptychi_half_images

    arm = ptychi_arm(config.ptychi_recon_path, shape, dataset)
    if ptychi_halves is not None:
        halves = ptychi_half_images(ptychi_halves[0], shape, dataset, found=ptychi_halves[1])
        arm = dataclasses.replace(arm, halves=halves, timings_s={**arm.timings_s, **halves.timings_s})
    return arm


def _score(arms, dataset, shape, config: CompareConfig, split, timer, making_failures) -> Comparison:
    """Every arm against the truth, and every arm's half 2 against its half 1; an error only
    when no arm has any number."""
    from .compare_halfsets import evaluate_half_sets

    truth = dataset.object_truth
    pixel_size = config.pixel_size_m or dataset.pixel_size_m
    scoring = evaluate(arms, truth, dataset.positions_xy, config, pixel_size_m=pixel_size, timer=timer)
    half_sets = evaluate_half_sets(
        arms, dataset.positions_xy, shape, config, pixel_size_m=pixel_size,
        estimate_shift_for=lambda arm: _shift_policy(arm, config, halves=True), timer=timer,
        required=config.half_sets is True or truth is None,
    ) if config.half_sets_enabled else None
    comparison = Comparison(
        arms=tuple(arms), truth=scoring, half_sets=half_sets, split=split, making_failures=making_failures
    )
    scored = [a for a in scoring.arms.values() if a.score is not None] if truth is not None else []
    if not scored and not (half_sets is not None and half_sets.arms) and comparison.failures:
        raise ArmsFailedError(all_failed_message(comparison.failures))
    return comparison


def _print_summary(comparison: Comparison, document, dataset, config: CompareConfig, echo) -> None:
    from ..report.documents import metric_rows
    from ..report.summary import printed_summary

    rows = metric_rows(comparison.truth, comparison.half_sets)
    for line in printed_summary(
        rows, document, comparison.arms, ground_truth=dataset.object_truth is not None,
        dose_summary=dataset.dose_summary, output_dir=config.output_dir,
    ):
        echo(line)


# --------------------------------------------------------------------------------------------
# Stages


def _check_inputs_exist(config: CompareConfig):
    checks = [("--test_data", config.test_data, False), ("--pinn_dir", config.pinn_dir, True),
              ("--baseline_dir", config.baseline_dir, True), ("--ptychi_recon_path", config.ptychi_recon_path, False)]
    for flag, value, is_dir in checks:
        if value is None:
            continue
        path = Path(value)
        if not path.exists():
            raise DatasetError(f"{flag} {path}: no such {'directory or file' if is_dir else 'file'}")


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


def _seen_in_training(arms, truth, region) -> dict:
    """Per network arm, the fraction of the scored region under its training patches of this
    object (0 for another object, "unknown" when its bundle does not say); docs/design.md, "No leakage"."""
    from ..models.bundle import fraction_seen_in_training

    seen = {
        arm.name: fraction_seen_in_training(arm.details.get("bundle_metadata"), truth, region)
        for arm in arms
        if arm.key != "ptychi"
    }
    for name, value in seen.items():
        log.info("%s: fraction of scored pixels seen in training: %s", name, value)
    return seen


# --------------------------------------------------------------------------------------------
# Scoring against the truth


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


def _valid_masks(arms) -> dict[str, np.ndarray]:
    """Each arm's data: its own valid mask (stitched weight > 0, placed canvas), and a non-zero
    value (a zero has no phase; scoring it would score missing data)."""
    return {arm.name: np.asarray(arm.valid, bool) & (np.asarray(arm.image) != 0) for arm in arms}


def _arm_score(arm: ArmImage, image, score=None, failure=None) -> ArmScore:
    from ..report.summary import arm_notes

    return ArmScore(
        name=arm.name, image=image, computation_time_s=computation_time(arm), compile_time_s=compile_time(arm),
        notes=arm_notes(arm.details), score=score, failure=failure,
    )


def _scored_arms(arms, scoring, config: CompareConfig) -> dict[str, ArmScore]:
    """Each arm's record against the truth: its score, or its failure (logged)."""
    scores = {}
    for arm in arms:
        if arm.name in scoring.scores:
            score = scoring.scores[arm.name]
            scores[arm.name] = _arm_score(arm, score.aligned, score)
            continue
        failure = scoring_failure(arm.key, scoring.failures[arm.name], config)
        log.error("%s", failure.line(arm.name))
        scores[arm.name] = _arm_score(arm, None, failure=failure)
    return scores


def evaluate(arms, truth, positions_xy, config: CompareConfig, *, pixel_size_m=None, timer=None) -> TruthScoring:
    """Score every arm against the truth on one footing (docs/design.md, "A fair comparison").

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
    TruthScoring
        The region (and, with ground truth, its description and the hull), the rules, and
        per arm an :class:`ArmScore` (registration and metrics with ground truth; timings).

    Notes
    -----
    :func:`compare_models.imaging.scoring.score_images` with the truth as every arm's
    reference: the common region (hull & every arm's data), each arm's shift over it (unless
    the config skips it), the scored region (eroded by ceil(largest shift) + margin), then each
    whole image shifted, its gauge fitted and its metrics computed on that region.
    """
    from ..imaging.region import scan_hull
    from ..imaging.scoring import ScoringInput, score_images
    from ..report.documents import scoring_rules

    names = [arm.name for arm in arms]
    if len(set(names)) != len(names):
        raise ConfigError(f"two arms share a name: {names}")
    shape = tuple(arms[0].image.shape)
    valids = _valid_masks(arms)
    rules = scoring_rules(config)
    if truth is None:
        return _without_truth(arms, positions_xy, shape, valids, rules)
    hull = scan_hull(positions_xy, shape)
    inputs = [
        ScoringInput(
            name=arm.name, image=arm.image, valid=valids[arm.name], reference=truth,
            region_masks={arm.name: valids[arm.name]}, estimate_shift=_shift_policy(arm, config), stage=arm.key,
        )
        for arm in arms
    ]
    scoring = score_images(
        inputs, hull, scoring_rules_for("ground_truth", config, pixel_size_m), timer=timer,
        on_region=lambda region: [_chance_input(truth, region.mask)],
    )
    scores = _scored_arms(arms, scoring, config)
    region = scoring.region
    if region is None:  # no arm could be scored: the figures show where the arms have data
        return TruthScoring(object_shape=shape, region=_display_region(positions_xy, shape, valids),
                            region_info=None, hull=hull, rules=rules, arms=scores)
    _log_region(region)
    return TruthScoring(
        object_shape=shape, region=region.mask, region_info=region.to_dict(), hull=hull, rules=rules, arms=scores,
        chance=_chance_score(scoring, config),
    )


def _log_region(region) -> None:
    lost = ", ".join(f"{k} {100 * v:.2f} %" for k, v in region.hull_lost_fraction.items())
    log.info(
        "scored region: %d px (hull %d px; hull without data: %s; eroded by %d px)",
        region.n_pixels, region.hull_pixels, lost, region.erosion_px,
    )


def _chance_input(truth, region):
    """The chance level as a scoring input: a constant image of the truth's mean amplitude and
    mean phase over the scored region, with no shift, a full valid mask and no mask of its own
    in the region."""
    from ..imaging.scoring import ScoringInput, constant_image

    return ScoringInput(
        name=CHANCE_NAME, image=constant_image(truth, region), valid=np.ones(truth.shape, bool),
        reference=truth, region_masks={}, estimate_shift=False, stage="constant",
    )


def _chance_score(scoring, config: CompareConfig) -> ArmScore:
    """The chance level's record: its score, or why it could not be scored."""
    notes = {"label": CHANCE_LABEL, "what": CHANCE_DEFINITION}
    if CHANCE_NAME in scoring.scores:
        score = scoring.scores[CHANCE_NAME]
        return ArmScore(CHANCE_NAME, score.aligned, None, None, notes, score=score)
    failure = scoring_failure("chance", scoring.failures[CHANCE_NAME], config)
    log.error("%s", failure.line(CHANCE_NAME))
    return ArmScore(CHANCE_NAME, None, None, None, notes, failure=failure)


def _without_truth(arms, positions_xy, shape, valids, rules) -> TruthScoring:
    """No ground truth: nothing scored; the figures show :func:`_display_region`."""
    log.warning(
        "the test data has no ground truth ('objectGuess'): no metrics against ground truth "
        "(half-set FRC needs none)"
    )
    scores = {arm.name: _arm_score(arm, arm.image) for arm in arms}
    region = _display_region(positions_xy, shape, valids)
    return TruthScoring(object_shape=shape, region=region, region_info=None, hull=None, rules=rules, arms=scores)


def _display_region(positions_xy, shape, valids) -> np.ndarray:
    """The region figures show when nothing is scored: the hull where every arm has data, or
    (a scan with no hull, arms without common data) wherever any arm has data."""
    from ..errors import RegistrationError
    from ..imaging.region import common_region, scan_hull

    try:
        region = common_region(scan_hull(positions_xy, shape), valids)
    except RegistrationError:
        region = np.zeros(shape, bool)
    if not region.any():
        region = np.logical_or.reduce(list(valids.values()))
    return region
