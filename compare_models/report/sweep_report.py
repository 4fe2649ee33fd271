"""Aggregate a dose sweep: ``sweep_metrics.csv``, ``sweep_report.md`` and plots against dose."""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from .writers import read_metrics_csv

__all__ = ["collect_sweep_rows", "write_sweep_report", "SWEEP_COLUMNS", "PLOTTED_METRICS", "REPORT_NOTES"]

SWEEP_COLUMNS = ("dose_nominal", "dose_measured", "seed", "model", "metric", "component", "value")
PLOTTED_METRICS = ("ms_ssim", "frc50", "halfset_frc_halfbit", "psnr")


def _cell_dose(cell_dir: Path) -> float | None:
    provenance = cell_dir / "compare" / "provenance.json"
    if provenance.exists():
        data = json.loads(provenance.read_text())
        value = data.get("test_data", {}).get("dose_measured")
        if value is not None:
            return float(value)
    return None


def collect_sweep_rows(output_dir, cells) -> list[dict]:
    """Long-form rows from every finished cell's ``comparison_metrics.csv``."""
    rows = []
    for cell in cells:
        cell_dir = Path(output_dir) / "cells" / cell.name
        metrics_csv = cell_dir / "compare" / "comparison_metrics.csv"
        if not metrics_csv.exists():
            continue
        dose_measured = _cell_dose(cell_dir)
        for record in read_metrics_csv(metrics_csv):
            base = {
                "dose_nominal": cell.dose,
                "dose_measured": dose_measured,
                "seed": cell.seed,
                "model": record["model"],
                "metric": record["metric"],
            }
            if record["value"] is not None:
                rows.append({**base, "component": "", "value": record["value"]})
            for component in ("amplitude", "phase"):
                if record[component] is not None:
                    rows.append({**base, "component": component, "value": record[component]})
    return rows


def _summaries(rows):
    """{(metric, component): {model: [(dose_nominal, mean dose_measured, mean, std, n)]}}"""
    grouped = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for row in rows:
        if row["value"] is None or not math.isfinite(row["value"]):
            continue
        grouped[(row["metric"], row["component"])][row["model"]][row["dose_nominal"]].append(
            (row["dose_measured"], row["value"])
        )
    out = {}
    for key, by_model in grouped.items():
        out[key] = {}
        for model, by_dose in by_model.items():
            series = []
            for dose in sorted(by_dose):
                measured = [m for m, _ in by_dose[dose] if m is not None]
                values = np.array([v for _, v in by_dose[dose]])
                series.append(
                    (dose, float(np.mean(measured)) if measured else dose, float(values.mean()), float(values.std()), len(values))
                )
            out[key][model] = series
    return out


def _ms_ssim_scales(rows) -> dict:
    """{(component, model, dose_nominal): sorted scale counts seen over seeds}."""
    scales = defaultdict(set)
    for row in rows:
        if row["metric"] == "ms_ssim_scales" and row["value"] is not None:
            scales[(row["component"], row["model"], row["dose_nominal"])].add(int(row["value"]))
    return {key: sorted(value) for key, value in scales.items()}


#: What the sweep's headline numbers are (docs/how-the-numbers-are-made.md).
REPORT_NOTES = (
    "Every model of a cell is scored on one region: the scan's convex hull where every model has "
    "data, eroded by the largest registration shift plus a margin (each cell's "
    "compare/metrics.json records it).",
    "ms_ssim is Wang et al. (2003) MS-SSIM with no blur first; its tables give the number of "
    "scales used (5 unless the region's box is under 161 px a side, then fewer with "
    "renormalised weights; ms_ssim_scales rows carry it in sweep_metrics.csv).",
    "frc50 is FRC against ground truth at the 0.5 threshold (Rosenthal & Henderson 2003), a "
    "fraction of Nyquist; frc1over7 is a legacy value kept for old scripts, not a resolution.",
    "halfset_frc1over7, halfset_frc_halfbit and halfset_frc_1bit are half-set FRC (two images of "
    "each arm from disjoint halves of the scan, no ground truth) at the 1/7, 1/2-bit and 1-bit "
    "thresholds (van Heel & Schatz 2005), fractions of Nyquist: a different measurement from frc50; "
    "halfset_coverage is the fraction of the scan's hull that both halves cover.",
    "PSNR and SSIM use the truth's max - min over the region as data range, for amplitude and "
    "phase alike; computation_time_s excludes one-off compilation (compile_time_s).",
)


def write_sweep_report(output_dir, cells) -> dict[str, Path]:
    """Write ``sweep_metrics.csv``, ``sweep_report.md`` and ``sweep_<metric>.png`` files."""
    output_dir = Path(output_dir)
    rows = collect_sweep_rows(output_dir, cells)
    csv_path = output_dir / "sweep_metrics.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=SWEEP_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row[k] is None else row[k]) for k in SWEEP_COLUMNS})
    summaries = _summaries(rows)
    scales = _ms_ssim_scales(rows)
    written = {"csv": csv_path, "report": output_dir / "sweep_report.md"}
    lines = ["# Dose sweep report", "", f"{len(cells)} cells; {len({c.dose for c in cells})} doses, "
             f"{len({c.seed for c in cells})} seeds. Values are mean ± std over seeds; dose is the "
             "measured mean photon count per test pattern.", ""]
    lines += [f"- {note}" for note in REPORT_NOTES] + [""]
    for (metric, component), by_model in sorted(summaries.items()):
        title = f"{metric} ({component})" if component else metric
        with_scales = metric == "ms_ssim"
        header = "| model | nominal dose | measured dose | mean | std | seeds |" + (" scales |" if with_scales else "")
        lines += [f"## {title}", "", header, "|---" * (7 if with_scales else 6) + "|"]
        for model, series in sorted(by_model.items()):
            for dose, measured, mean, std, n in series:
                line = f"| {model} | {dose:g} | {measured:.4g} | {mean:.5g} | {std:.3g} | {n} |"
                if with_scales:
                    used = scales.get((component, model, dose), [])
                    line += f" {'/'.join(str(k) for k in used) or '?'} |"
                lines.append(line)
        lines.append("")
    plots = _plot(summaries, output_dir)
    if plots:
        lines += ["## Figures", ""] + [f"![{p.stem}]({p.name})" for p in plots.values()]
    written["report"].write_text("\n".join(lines) + "\n")
    written.update(plots)
    return written


def _plot(summaries, output_dir: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plots = {}
    for metric in PLOTTED_METRICS:
        keys = [(metric, c) for c in ("amplitude", "phase") if (metric, c) in summaries]
        if not keys:
            continue
        fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4), squeeze=False)
        for ax, key in zip(axes[0], keys, strict=True):
            for model, series in sorted(summaries[key].items()):
                measured = np.array([s[1] for s in series])
                mean = np.array([s[2] for s in series])
                std = np.array([s[3] for s in series])
                ax.errorbar(measured, mean, yerr=std, marker="o", capsize=3, label=model)
            ax.set_xscale("log")
            ax.set_xlabel("measured dose (photons per pattern)")
            ax.set_ylabel(metric)
            ax.set_title(f"{metric}, {key[1]}")
            ax.legend(fontsize=8)
        fig.tight_layout()
        path = output_dir / f"sweep_{metric}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        plots[metric] = path
    return plots
