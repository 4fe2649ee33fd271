"""Pure builders of a comparison's documents, from its typed records.

Nothing here writes a file or reads one: each function turns records
(:mod:`compare_models.report.records`) and settings into plain data, which
:mod:`compare_models.report.compare_output` writes.

* :func:`metric_rows`: the rows of ``comparison_metrics.csv``;
* :func:`frc_curves`: the curves of ``frc_curves.csv`` and ``frc.png``;
* :func:`scoring_rules`, :func:`half_set_rules`: the rules a run scored by (metrics.json);
* :func:`metrics_document`: metrics.json;
* :func:`image_sets`: the images and masks of ``reconstructions.npz`` and
  ``reconstructions_aligned.npz``;
* :func:`provenance_document`: provenance.json.

``config`` below is the run's :class:`compare_models.pipelines.compare.CompareConfig` (read
for its settings only). docs/how-the-numbers-are-made.md describes every key.
"""

from __future__ import annotations

from collections.abc import Mapping

from .records import ArmScore, Comparison, HalfSetScore, HalfSetScoring, TruthScoring
from .vocabulary import (
    CHANCE_DEFINITION,
    CHANCE_NAME,
    DEFINITIONS,
    EXIT_FAILED_ARMS,
    FAILURE_RULE,
    HALF_SET_DEFINITIONS,
    HALF_SET_MEANING_TEXT,
    HALF_SET_REGION_RULE,
    NETWORK_HALVES_UNREGISTERED,
    RANKED_METRICS,
    half_set_role,
)

__all__ = [
    "METRICS_SCHEMA",
    "COMPONENT_METRICS",
    "GAUGE_ROWS",
    "HALF_SET_CSV_ORDER",
    "metric_rows",
    "half_set_rows",
    "frc_curves",
    "half_set_curves",
    "scoring_rules",
    "half_set_rules",
    "model_entry",
    "half_set_entry",
    "half_sets_document",
    "failures_document",
    "chance_flags",
    "chance_document",
    "metrics_document",
    "image_key",
    "image_sets",
    "provenance_document",
]

#: metrics.json's layout; docs/how-the-numbers-are-made.md describes it.
METRICS_SCHEMA = "compare_models.metrics/2"
#: Component rows of comparison_metrics.csv (``amplitude`` and ``phase`` filled).
COMPONENT_METRICS = ("mae", "mse", "psnr", "ssim", "ms_ssim", "ms_ssim_scales", "frc50", "frc1over7", "data_range")
#: Scalar rows (``value`` filled): the registration and the gauge applied.
GAUGE_ROWS = (
    ("gauge_amplitude_scale", "amplitude_scale"),
    ("gauge_phase_offset_rad", "phase_offset_rad"),
    ("gauge_phase_ramp_x_rad_per_px", "phase_ramp_x_rad_per_px"),
    ("gauge_phase_ramp_y_rad_per_px", "phase_ramp_y_rad_per_px"),
)
#: Order of the half-set cut-off rows in comparison_metrics.csv.
HALF_SET_CSV_ORDER = ("1/7", "halfbit", "1bit")


# --------------------------------------------------------------------------------------------
# comparison_metrics.csv


def metric_rows(truth: TruthScoring, half_sets: HalfSetScoring | None = None) -> list[tuple]:
    """Rows of ``comparison_metrics.csv`` (``model,metric,amplitude,phase,value``): each arm's
    metrics against the truth, registration, region and timings, the chance level's (model
    ``Constant``), then the half-set rows."""
    rows = []
    for name, arm in truth.arms.items():
        rows += _truth_rows(name, arm, truth.region_info)
    if truth.chance is not None:
        rows += _truth_rows(truth.chance.name, truth.chance, truth.region_info)
    return rows + half_set_rows(half_sets)


def _truth_rows(name: str, arm: ArmScore, region_info: dict | None) -> list[tuple]:
    rows = []
    metrics = arm.metrics
    if metrics is not None:
        for metric in COMPONENT_METRICS:
            rows.append((name, metric, metrics["amplitude"][metric], metrics["phase"][metric], None))
    registration = arm.registration
    if registration is not None:
        dy, dx = registration["shift_yx_px"]
        rows.append((name, "registration_offset_dy", None, None, dy))
        rows.append((name, "registration_offset_dx", None, None, dx))
        for row_name, key in GAUGE_ROWS:
            rows.append((name, row_name, None, None, registration["gauge"][key]))
    if region_info is not None and metrics is not None:
        rows.append((name, "region_pixels", None, None, region_info["n_pixels"]))
        lost = region_info["hull_lost_fraction"].get(name)
        if lost is not None:  # an image scored on the region without adding to it has none
            rows.append((name, "hull_lost_fraction", None, None, lost))
    if arm.computation_time_s is not None:
        rows.append((name, "computation_time_s", None, None, arm.computation_time_s))
    if arm.compile_time_s is not None:
        rows.append((name, "compile_time_s", None, None, arm.compile_time_s))
    return rows


def half_set_rows(half_sets: HalfSetScoring | None) -> list[tuple]:
    """Rows of ``comparison_metrics.csv`` for the half-set FRC (``model,metric,amplitude,phase,value``).

    ``halfset_frc1over7``, ``halfset_frc_halfbit``, ``halfset_frc_1bit`` (fractions of Nyquist,
    amplitude and phase), then ``halfset_region_pixels``, ``halfset_coverage`` (fraction of the
    hull both of the arm's halves cover), ``halfset_positions_half1``/``_half2``,
    ``halfset_registration_offset_dy``/``_dx`` and ``halfset_gauge_amplitude_scale``.
    """
    from ..imaging.frc import HALF_SET_CSV_NAMES

    rows = []
    if half_sets is None or not half_sets.computed:
        return rows
    info = half_sets.region_info
    for name, score in half_sets.arms.items():
        for cutoff in HALF_SET_CSV_ORDER:
            metric = HALF_SET_CSV_NAMES[cutoff]
            rows.append((name, metric, score.amplitude[metric], score.phase[metric], None))
        rows.append((name, "halfset_region_pixels", None, None, info["n_pixels"]))
        rows.append((name, "halfset_coverage", None, None, score.coverage["both"]))
        split = score.split or {}
        for number in (1, 2):
            count = split.get(f"n_half{number}")
            if count is not None:
                rows.append((name, f"halfset_positions_half{number}", None, None, int(count)))
        registration = score.registration
        dy, dx = registration["shift_yx_px"]
        rows.append((name, "halfset_registration_offset_dy", None, None, dy))
        rows.append((name, "halfset_registration_offset_dx", None, None, dx))
        rows.append((name, "halfset_gauge_amplitude_scale", None, None, registration["gauge"]["amplitude_scale"]))
    return rows


# --------------------------------------------------------------------------------------------
# FRC curves


def frc_curves(truth: TruthScoring, half_sets: HalfSetScoring | None = None) -> dict:
    """``{kind: {model: {component: curve}}}``: FRC against ground truth (``"ground_truth"``)
    and between half sets (``"half_set"``), whichever were computed."""
    curves = {}
    scored = list(truth.arms.items()) + ([(truth.chance.name, truth.chance)] if truth.chance is not None else [])
    for name, arm in scored:
        metrics = arm.metrics
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
    half = half_set_curves(half_sets)
    if half:
        curves["half_set"] = half
    return curves


def half_set_curves(half_sets: HalfSetScoring | None) -> dict:
    """``{model: {component: {kind, meaning, frc, frequency_nyquist, n_pixels, thresholds}}}``
    of the half-set FRC, for ``frc_curves.csv`` and ``frc.png`` (``meaning``: ``"resolution"``
    for an iterative arm, ``"reproducibility"`` for a network; never drawn on one axis)."""
    curves = {}
    if half_sets is None or not half_sets.computed:
        return curves
    for name, score in half_sets.arms.items():
        measures = score.score.measures
        curves[name] = {
            component: {
                "kind": "half_set",
                "meaning": score.meaning,
                "frc": measures[component]["curve"],
                "frequency_nyquist": measures[component]["frequency_nyquist"],
                "n_pixels": measures[component]["n_pixels"],
                "thresholds": measures[component]["thresholds"],
            }
            for component in ("amplitude", "phase")
        }
    return curves


# --------------------------------------------------------------------------------------------
# The rules


def scoring_rules(config) -> dict:
    """The rules a run scored by against the truth, in words and numbers (metrics.json ``scoring``)."""
    from ..imaging.frc_window import PHASE_RULE, WINDOW_RULE
    from ..imaging.region import REGION_RULE
    from ..imaging.registration import SHIFT_RULE, SHIFT_SIGNIFICANCE_LEVEL, UPSAMPLE_FACTOR
    from ..imaging.ssim import MS_SSIM_WEIGHTS

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
            "a significant shift translates the whole image by the Fourier shift theorem (its "
            "amplitude shifted as an amplitude, never the modulus of the shifted complex field)",
            "rule": SHIFT_RULE,
            "significance_level": SHIFT_SIGNIFICANCE_LEVEL,
            "correlate_on": config.registration_on,
            "upsample_factor": UPSAMPLE_FACTOR,
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
            "phase": PHASE_RULE,
            "window_leakage": WINDOW_RULE,
            "half_set": (
                "half-set FRC (1/7, 1/2-bit and 1-bit thresholds; van Heel & Schatz 2005) between "
                "two images of each arm from disjoint halves of the scan: an iterative arm's "
                "resolution, a network's reproducibility under independent data (not a resolution); "
                "metrics.json half_sets and models.<model>.half_set_frc, CSV rows halfset_*"
                if config.half_sets_enabled
                else "not computed (--no-half-sets)"
            ),
        },
        "definitions": {**DEFINITIONS, CHANCE_NAME: CHANCE_DEFINITION},
    }


def half_set_rules(config, split) -> dict:
    """The rules the half-set FRC follows, for metrics.json's ``half_sets`` section."""
    return {
        "kind": "half_set",
        "what": (
            "FRC between two images of the same arm made from two disjoint, interleaved halves of "
            "the scan positions; needs no ground truth (van Heel & Schatz 2005). For an iterative "
            "arm it is a resolution; for a network the reproducibility of its image under "
            "independent data, not a resolution; the two are never ranked against each other"
        ),
        "split": None if split is None else split.to_dict(),
        "meaning": {kind: HALF_SET_MEANING_TEXT[kind] for kind in ("iterative", "network")},
        "registration": {
            "iterative": (
                "half 2 registered onto half 1: shift by upsampled cross-correlation over the pixels "
                "both halves cover (same policy as the arm's registration), then the gauge (phase "
                f"{'offset and linear ramp' if config.phase_align_method == 'ramp' else 'offset'} fitted to "
                "the amplitude-weighted phase difference, amplitude scale to the amplitudes alone)"
            ),
            "network": f"{NETWORK_HALVES_UNREGISTERED} (the same gauge fit as an iterative arm's)",
        },
        "region_rule": HALF_SET_REGION_RULE,
        "frc": (
            "the FRC of the against-truth comparison (each image minus its window-weighted mean, "
            "times one raised-cosine window falling to 0 at the region's edge); phase images relative "
            "to the plane fitted to the consensus half 1 + half 2"
        ),
        "thresholds": {
            "1/7": "fixed 1/7 (van Heel & Schatz 2005)",
            "halfbit": "1/2-bit information curve, eq. (17) of van Heel & Schatz 2005, n = independent Fourier pixels per ring",
            "1bit": "1-bit information curve, same equation",
        },
        "definitions": dict(HALF_SET_DEFINITIONS),
        "references": [
            "M. van Heel and M. Schatz, J. Struct. Biol. 151, 250-262 (2005)",
        ],
    }


# --------------------------------------------------------------------------------------------
# metrics.json


def model_entry(arm: ArmScore) -> dict:
    """metrics.json's ``models.<model>``: metrics and registration (with ground truth), the
    timings, the arm's notes, and its failure against the truth when it could not be scored."""
    entry = {}
    if arm.score is not None:
        entry.update(metrics=arm.metrics, registration=arm.registration)
    entry.update(computation_time_s=arm.computation_time_s, compile_time_s=arm.compile_time_s, **arm.notes)
    if arm.failure is not None:
        entry["failure"] = arm.failure.to_dict()
    return entry


def _chance_entry(entry: dict) -> dict:
    """The chance level's ``models.Constant``: its FRC cut-offs are a chance level, not a
    resolution, and their ``role`` says so."""
    metrics = entry.get("metrics")
    if not metrics:
        return entry
    labelled = dict(metrics)
    for component in ("amplitude", "phase"):
        frc = metrics[component]["frc"]
        cutoffs = {name: {**cut, "role": f"chance level: what a constant image scores ({cut['role']})"}
                   for name, cut in frc["cutoffs"].items()}
        labelled[component] = {**metrics[component], "frc": {**frc, "cutoffs": cutoffs}}
    return {**entry, "metrics": labelled}


def chance_flags(truth: TruthScoring) -> dict:
    """Arm name -> the ranked metrics on which it does not beat the chance level.

    Returns
    -------
    dict
        ``{arm: [{"component", "metric", "value", "chance"}, ...]}`` for every arm scored
        against the truth (an empty list: it beats the constant image on every ranked metric,
        :data:`~compare_models.report.vocabulary.RANKED_METRICS`); a tie does not beat it.
        Empty without a chance level.
    """
    chance = truth.chance
    if chance is None or chance.metrics is None:
        return {}
    flags = {}
    for name, arm in truth.arms.items():
        if arm.metrics is None:
            continue
        flags[name] = [
            {"component": component, "metric": metric, "value": arm.metrics[component][metric],
             "chance": chance.metrics[component][metric]}
            for component in ("amplitude", "phase")
            for metric, better in RANKED_METRICS.items()
            if not _beats(arm.metrics[component][metric], chance.metrics[component][metric], better)
        ]
    return flags


def _beats(value, level, better: int) -> bool:
    return value > level if better > 0 else value < level


def chance_document(truth: TruthScoring) -> dict | None:
    """metrics.json's ``chance``: what the chance level is, and per arm the ranked metrics on
    which it does not beat it; None without a chance level."""
    if truth.chance is None:
        return None
    return {
        "model": truth.chance.name,
        "definition": CHANCE_DEFINITION,
        "ranked_metrics": list(RANKED_METRICS),
        "not_beaten": chance_flags(truth),
    }


def failures_document(comparison: Comparison) -> dict:
    """metrics.json's ``failures``: every arm that lacks numbers because something failed, with
    each failure's stage, step, reason and fix; empty when nothing failed."""
    failures = comparison.failures
    return {
        "arms": {name: [f.to_dict() for f in items] for name, items in failures.items()},
        "exit_status": EXIT_FAILED_ARMS if failures else 0,
        "rule": FAILURE_RULE,
    }


def half_set_entry(score: HalfSetScore) -> dict:
    """metrics.json's ``models.<model>.half_set_frc``: the curves and cut-offs, each cut-off's
    ``role`` saying what it is for this arm (a resolution, or a network's reproducibility)."""
    return {
        "kind": score.kind,
        "arm_kind": score.arm_kind,
        "meaning": score.meaning,
        "meaning_text": HALF_SET_MEANING_TEXT[score.arm_kind],
        "amplitude": _with_roles(score.amplitude, score.arm_kind),
        "phase": _with_roles(score.phase, score.arm_kind),
        "registration": score.registration,
        "split": score.split,
        "how": score.how,
        "coverage": score.coverage,
        "phase_wrap_pixels": score.phase_wrap_pixels,
    }


def _with_roles(frc: dict, arm_kind: str) -> dict:
    """A half-set FRC with each cut-off's ``role`` for this kind of arm."""
    cutoffs = {name: {**cut, "role": half_set_role(name, arm_kind)} for name, cut in frc["cutoffs"].items()}
    return {**frc, "cutoffs": cutoffs}


def half_sets_document(half_sets: HalfSetScoring | None, config, split) -> dict:
    """metrics.json's ``half_sets`` section: the rules, the split, the region and its coverage,
    and which arms have no half-set FRC and why (the curves are under each model's
    ``half_set_frc``)."""
    document = half_set_rules(config, split)
    if half_sets is None:
        return {**document, "computed": False, "not_computed": "--no-half-sets"}
    return {
        **document,
        "arms": {name: score.meaning for name, score in half_sets.arms.items()},
        "computed": half_sets.computed,
        "region": half_sets.region_info,
        "not_computed": half_sets.not_computed,
        "failures": {name: failure.to_dict() for name, failure in half_sets.failures.items()},
    }


def metrics_document(
    comparison: Comparison, config, *, ground_truth: bool, seen_in_training: Mapping | None = None
) -> dict:
    """metrics.json: the region, the rules, the half-set section and every model's numbers.

    Each model's entry says what the arm is (``label``, ``architecture``; for a network its
    ``training_protocol`` and, given ``seen_in_training``, the fraction of the scored region its
    training saw), so that a reader knows which protocol each number comes from.
    """
    truth = comparison.truth
    models = {name: model_entry(arm) for name, arm in truth.arms.items()}
    for name, seen in (seen_in_training or {}).items():
        if name in models:
            models[name]["seen_in_training"] = seen
    if comparison.half_sets is not None:
        for name, score in comparison.half_sets.arms.items():
            models[name]["half_set_frc"] = half_set_entry(score)
        for name, failure in comparison.half_sets.failures.items():
            models[name]["half_set_failure"] = failure.to_dict()
    for name, failure in comparison.making_failures.items():
        models[name] = {"failure": failure.to_dict()}
    for name, flags in chance_flags(truth).items():
        models[name]["not_better_than_chance"] = [f"{f['component']} {f['metric']}" for f in flags]
    if truth.chance is not None:
        models[truth.chance.name] = _chance_entry(model_entry(truth.chance))
    return {
        "schema": METRICS_SCHEMA,
        "object_shape": list(truth.object_shape),
        "ground_truth": ground_truth,
        "region": truth.region_info,
        "region_pixels": truth.region_pixels,
        "scoring": truth.rules,
        "half_sets": half_sets_document(comparison.half_sets, config, comparison.split),
        "failures": failures_document(comparison),
        "chance": chance_document(truth),
        "models": models,
    }


# --------------------------------------------------------------------------------------------
# Images


def image_key(name: str) -> str:
    """An arm's name as the images' files spell it (``ptychopinn``, ``ptychi``...)."""
    return name.lower()


def image_sets(comparison: Comparison, truth_image) -> tuple[dict, dict, dict]:
    """The images of ``reconstructions.npz`` (as stitched), of ``reconstructions_aligned.npz``
    (as scored) and the masks saved beside the first: ``(stitched, aligned, masks)``."""
    arms = comparison.arms
    stitched = {image_key(arm.name): arm.image for arm in arms}
    aligned = {image_key(name): image for name, image in comparison.truth.aligned.items()}
    if truth_image is not None:
        stitched["ground_truth"] = truth_image
        aligned["ground_truth"] = truth_image
    masks = {"scored_region": comparison.truth.region}
    if comparison.truth.hull is not None:
        masks["scan_hull"] = comparison.truth.hull
    masks.update({f"{image_key(arm.name)}_valid": arm.valid for arm in arms})
    for arm in arms:  # the half-set images: <model>_half1, <model>_half2
        if arm.halves is not None:
            for number in (1, 2):
                stitched[f"{image_key(arm.name)}_half{number}"] = arm.halves.images[number - 1]
                masks[f"{image_key(arm.name)}_half{number}_valid"] = arm.halves.valid[number - 1]
    half_sets = comparison.half_sets
    if half_sets is not None:
        for name, score in half_sets.arms.items():
            first, second = score.aligned
            aligned[f"{image_key(name)}_half1"] = first
            aligned[f"{image_key(name)}_half2"] = second
        if half_sets.region is not None:
            masks["halfset_region"] = half_sets.region
    return stitched, aligned, masks


# --------------------------------------------------------------------------------------------
# provenance.json


def provenance_document(
    comparison: Comparison,
    dataset,
    config,
    *,
    inputs: Mapping,
    versions: Mapping,
    metrics_doc: Mapping,
    seen_in_training: Mapping,
    timings_s: Mapping,
) -> dict:
    """provenance.json: the command, the settings, the inputs and their hashes, the test data,
    every arm's details, the corrections applied, the rules and the timings."""
    arms = comparison.arms
    truth = comparison.truth
    return {
        "command_line": list(config.command_line),
        "config": config.to_dict(),
        "versions": dict(versions),
        "inputs": dict(inputs),
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
        "corrections": {name: arm.registration for name, arm in truth.arms.items()},
        "scored_region": truth.region_info,
        "scoring": truth.rules,
        "half_sets": metrics_doc["half_sets"],
        "failures": metrics_doc["failures"],
        "seen_in_training": dict(seen_in_training),
        # Which protocol made each network's numbers (a training set, or the test scan's own
        # diffraction for a PINN trained self-supervised), beside seen_in_training.
        "training_protocol": {
            arm.name: arm.details.get("model", {}).get("training_protocol", "unknown")
            for arm in arms if arm.key != "ptychi"
        },
        "timings_s": dict(timings_s),
    }
