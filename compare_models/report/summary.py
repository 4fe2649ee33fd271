"""The printed summary of a comparison: plain-text tables and how the numbers were made.

Pure functions of rows (:func:`compare_models.report.documents.metric_rows`), of the
metrics.json document or of the records; the caller prints the lines.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from .vocabulary import (
    CHANCE_FLAG,
    GROUND_TRUTH_TABLE_TITLE,
    HALF_SET_KIND_TITLES,
    HALF_SET_TABLE_ROWS,
    HALF_SET_TABLE_TITLE,
    MODEL_KINDS,
    protocol_text,
    seen_in_training_text,
)

__all__ = [
    "format_metrics_table",
    "format_half_set_table",
    "format_scoring_summary",
    "arm_notes",
    "format_arms",
    "summary_notes",
    "format_chance",
    "format_failures",
    "printed_summary",
]

MetricRow = tuple  # (model, metric, amplitude or None, phase or None, value or None)


def format_metrics_table(rows: Iterable[MetricRow], metrics=("mae", "mse", "psnr", "ssim", "ms_ssim", "ms_ssim_scales", "frc50")) -> str:
    """A plain-text table of the component metrics: one line per model and metric."""
    rows = [r for r in rows if r[1] in metrics]
    lines = [f"{'model':<12}{'metric':<16}{'amplitude':>14}{'phase':>14}"]
    for model, metric, amplitude, phase, _ in rows:
        lines.append(f"{model:<12}{metric:<16}{_fmt(amplitude):>14}{_fmt(phase):>14}")
    return "\n".join(lines)



def format_half_set_table(rows: Iterable[MetricRow]) -> str:
    """Plain-text tables of the half-set FRC cut-offs (fraction of Nyquist), one line per model
    and threshold, and each model's coverage: labelled so that none can be read as a number
    against ground truth, and in two tables: iterative arms (a resolution) and networks (the
    reproducibility of their image, not a resolution), never ranked together."""
    rows = list(rows)
    labels = dict(HALF_SET_TABLE_ROWS)
    lines = []
    for kind, title in HALF_SET_KIND_TITLES.items():
        mine = [row for row in rows if row[1] in labels and MODEL_KINDS.get(row[0], "iterative") == kind]
        if not mine:
            continue
        lines += [title, f"  {'model':<12}{'half-set FRC cut-off':<32}{'amplitude':>14}{'phase':>14}"]
        for model, metric, amplitude, phase, _ in mine:
            lines.append(f"  {model:<12}{metric + ' (' + labels[metric] + ')':<32}{_fmt(amplitude):>14}{_fmt(phase):>14}")
    coverage = [(model, value) for model, metric, _, _, value in rows if metric == "halfset_coverage"]
    if coverage:
        lines.append(
            "both halves cover: " + ", ".join(f"{model} {100 * value:.1f} %" for model, value in coverage)
            + " of the scan's hull"
        )
    return "\n".join(lines)


def _fmt(value) -> str:
    if value is None:
        return "-"
    value = float(value)
    if math.isinf(value):
        return "inf"
    return f"{value:.5g}"


def format_scoring_summary(document: Mapping) -> str:
    """How the numbers of a comparison were made, in a few lines, from its ``metrics.json``
    document: the scored region, the gauge applied, the MS-SSIM scales, the FRC thresholds and
    the data ranges. Empty without ground truth."""
    region = document.get("region")
    scoring = document.get("scoring") or {}
    models = document.get("models") or {}
    half_lines = _half_set_summary(document)
    if not region or not models:
        return "\n".join(half_lines)
    rows = region["bbox_rows"]
    cols = region["bbox_cols"]
    lines = [
        f"scored region: {region['n_pixels']} px (box rows {rows[0]}-{rows[1]}, columns "
        f"{cols[0]}-{cols[1]}; {rows[1] - rows[0]} x {cols[1] - cols[0]} px), the same for every model:",
        f"  convex hull of the scan positions ({region['hull_pixels']} px) where every model has data "
        f"({region['common_pixels']} px), eroded by {region['erosion_px']} px = ceil(largest shift "
        f"{region['largest_shift_px']:.3g} px) + margin {region['margin_px']} px",
        "  hull without data: "
        + ", ".join(f"{name} {100 * lost:.2f} %" for name, lost in region["hull_lost_fraction"].items()),
    ]
    gauge = scoring.get("gauge", {})
    registration = scoring.get("registration", {})
    lines.append(f"registration: shifts {registration.get('shifts', '?')}; gauge ({gauge.get('phase_align_method', '?')}): "
                 f"{gauge.get('description', '?')}")
    for name, entry in models.items():
        reg = entry.get("registration")
        if not reg:
            continue
        g = reg["gauge"]
        dy, dx = reg["shift_yx_px"]
        lines.append(
            f"  {name}: shift (dy, dx) = ({dy:.3f}, {dx:.3f}) px, amplitude scale {g['amplitude_scale']:.5g}, "
            f"phase offset {g['phase_offset_rad']:.4g} rad, ramp x {g['phase_ramp_x_rad_per_px']:.3g}, "
            f"y {g['phase_ramp_y_rad_per_px']:.3g} rad/px (from pixel (0, 0))"
        )
    ms = scoring.get("ms_ssim", {})
    sigma = ms.get("sigma")
    scales = ", ".join(
        f"{name} {entry['metrics']['amplitude']['ms_ssim_scales']}/{entry['metrics']['phase']['ms_ssim_scales']}"
        for name, entry in models.items()
        if entry.get("metrics")
    )
    lines.append(
        f"MS-SSIM: {ms.get('definition', 'Wang et al. 2003')}, weights {ms.get('weights')}, "
        f"{'no blur first' if not sigma else f'Gaussian blur sigma {sigma} px first (amplitude and phase)'}; "
        f"scales used (amplitude/phase): {scales}"
    )
    frc = scoring.get("frc", {})
    lines.append(
        f"FRC against ground truth: {frc.get('resolution', '')}; frc1over7 is legacy, not a resolution; "
        "the 1/7, 1/2-bit and 1-bit thresholds are applied to half-set FRC only"
    )
    first = next((entry["metrics"] for entry in models.values() if entry.get("metrics")), None)
    if first is not None:
        lines.append(
            f"PSNR/SSIM/MS-SSIM data range: {scoring.get('data_range', '')}: amplitude "
            f"{first['amplitude']['data_range']:.5g}, phase {first['phase']['data_range']:.5g} rad"
        )
    return "\n".join(lines + half_lines)


def _half_set_summary(document: Mapping) -> list[str]:
    """How the half-set FRC was made, from metrics.json's ``half_sets``."""
    half = document.get("half_sets") or {}
    if not half.get("computed"):
        reason = half.get("not_computed")
        return [f"half-set FRC: not computed ({reason})"] if isinstance(reason, str) else []
    lines = []
    split = half.get("split") or {}
    if split:
        lines.append(
            f"half-set FRC: split {split.get('method')} ({split.get('n_half1')} + {split.get('n_half2')} of "
            f"{split.get('n_positions')} positions); half 2 registered onto half 1 (an iterative arm: shift, "
            "phase offset/ramp, amplitude scale; a network: no shift, its halves share one frame by "
            "construction, then the gauge); thresholds 1/7, 1/2-bit and 1-bit (van Heel & Schatz 2005)"
        )
    region = half.get("region") or {}
    if region:
        lines.append(
            f"  half-set region: {region['n_pixels']} px = {100 * region['region_fraction_of_hull']:.1f} % of the "
            f"scan's hull (both halves of every model cover {100 * region['both_halves_fraction_of_hull']:.1f} % "
            f"of the hull; eroded by {region['erosion_px']} px)"
        )
    for name, reason in (half.get("not_computed") or {}).items():
        lines.append(f"  {name}: no half-set FRC ({reason})")
    for name, entry in (document.get("models") or {}).items():
        frc = entry.get("half_set_frc")
        if not frc:
            continue
        cut = []
        for component in ("amplitude", "phase"):
            values = frc[component]
            parts = []
            for key, label in (("1/7", "1/7"), ("halfbit", "1/2-bit"), ("1bit", "1-bit")):
                c = values["cutoffs"][key]
                text = f"{label} {c['fraction_nyquist']:.3g}"
                if c.get("resolution_m"):
                    text += f" ({c['resolution_m']:.3g} m)"
                if not c.get("crossed"):
                    text += " (not crossed)"
                parts.append(text)
            cut.append(f"{component} " + ", ".join(parts))
        what = ("half-set reproducibility of the image under independent data, NOT a resolution"
                if frc.get("meaning") == "reproducibility" else "half-set resolution")
        lines.append(f"  {name}: {what} (fraction of Nyquist) " + "; ".join(cut))
    return lines


#: What metrics.json copies from an arm's details (provenance's ``arms.<name>``), in order:
#: what the arm is, how a network was trained, the file's format, how an iterative
#: reconstruction's object started (``"unknown"`` for foreign files).
ARM_NOTE_KEYS = ("label", "architecture", "training_protocol", "model_format", "initialisation")


def arm_notes(details: Mapping) -> dict:
    """What ``metrics.json`` says about an arm besides its numbers (:data:`ARM_NOTE_KEYS`)."""
    return {key: details[key] for key in ARM_NOTE_KEYS if key in details}


def format_arms(document: Mapping) -> list[str]:
    """What each arm is, a line per arm, from metrics.json's ``models``: the name the CSV uses
    and what it stands for (``label``), the file's format, and for a network how it was trained
    and how much of the scored region its training saw."""
    lines = []
    for name, entry in (document.get("models") or {}).items():
        if not entry.get("label"):
            continue
        parts = [f"  {name} = {entry['label']}"]
        if entry.get("model_format"):
            parts.append(entry["model_format"])
        protocol = entry.get("training_protocol")
        if isinstance(protocol, Mapping):
            parts.append(f"training: {protocol_text(protocol)}")
        if entry.get("seen_in_training") is not None:
            seen = seen_in_training_text(entry["seen_in_training"], protocol)
            parts.append(f"scored region seen in training: {seen}")
        lines.append("; ".join(parts))
    return ["arms (name in the CSV = what it is):", *lines] if lines else []


def summary_notes(arms) -> list[str]:
    """Lines printed under the metrics table: how each iterative arm's object started, and a
    warning where that is unknown."""
    lines = []
    for arm in arms:
        if arm.details.get("initialisation") == "unknown":
            lines.append(
                f"{arm.name}: initialisation unknown (a file from {arm.details.get('writer')}; "
                "it may have started from the ground truth)"
            )
        elif "initialisation" in arm.details:
            lines.append(f"{arm.name}: initialisation {arm.details['initialisation']}")
    return lines


def format_chance(document: Mapping) -> list[str]:
    """Lines saying, per arm, on which ranked metrics it does not beat the chance level (the
    ``Constant`` rows), from metrics.json's ``chance``; none without one."""
    chance = document.get("chance")
    if not chance:
        return []
    lines = [
        f"chance level ({chance['model']} rows): a constant image of the truth's mean amplitude and mean "
        "phase over the region, scored by the same rules; a tie does not beat it"
    ]
    for name, flags in (chance.get("not_beaten") or {}).items():
        if not flags:
            lines.append(f"  {name}: beats the constant image on every ranked metric ({', '.join(chance['ranked_metrics'])})")
            continue
        lost = ", ".join(f"{f['component']} {f['metric']} ({_fmt(f['value'])}; chance {_fmt(f['chance'])})" for f in flags)
        lines.append(f"  {name} {CHANCE_FLAG} on: {lost}")
    return lines


def format_failures(document: Mapping) -> list[str]:
    """Lines naming every arm that failed, with the reason and the fix, from metrics.json's
    ``failures``; none when nothing failed."""
    failures = document.get("failures") or {}
    arms = failures.get("arms") or {}
    if not arms:
        return []
    lines = [
        f"FAILED ARMS ({len(arms)}; exit status {failures.get('exit_status')}): every other arm was "
        "scored and written, as if the failed ones had not been given"
    ]
    for name, items in arms.items():
        for failure in items:
            where = failure["stage"] if failure.get("step") is None else f"{failure['stage']} (at the {failure['step']} step)"
            lines.append(f"  {name}: {where} failed: {failure['reason']}. Fix: {failure['fix']}")
    return lines


def printed_summary(rows, document: Mapping, arms, *, ground_truth: bool, dose_summary: str, output_dir) -> list[str]:
    """What compare-models prints when it is done: what each arm is, the table against the
    truth, the half-set table, how the numbers were made, the dose, each arm's notes, the arms
    that failed and where the results are."""
    lines = format_arms(document)
    if ground_truth:
        lines += [GROUND_TRUTH_TABLE_TITLE, format_metrics_table(rows)]
        lines += format_chance(document)
    if any(row[1].startswith("halfset_") for row in rows):
        lines += [HALF_SET_TABLE_TITLE, format_half_set_table(rows)]
    summary = format_scoring_summary(document)
    if summary:
        lines.append(summary)
    lines.append(f"test data: {dose_summary}")
    lines += summary_notes(arms)
    lines += format_failures(document)
    lines.append(f"results: {output_dir}")
    return lines
