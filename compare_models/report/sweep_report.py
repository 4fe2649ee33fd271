"""Aggregate a dose sweep: ``sweep_metrics.csv``, ``sweep_report.md`` and plots against dose."""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from .writers import read_metrics_csv

__all__ = ["collect_sweep_rows", "write_sweep_report", "SWEEP_COLUMNS", "PLOTTED_METRICS"]

SWEEP_COLUMNS = ("dose_nominal", "dose_measured", "seed", "model", "metric", "component", "value")
PLOTTED_METRICS = ("ms_ssim", "frc50", "psnr")


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
    """{(metric, component): {model: [(dose_nominal, mean dose_measured or None, mean, std, n)]}}"""
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
                # No measured dose when the cells' data are not photon counts (provenance
                # records None then); the nominal dose is shown instead, labelled as such.
                series.append(
                    (dose, float(np.mean(measured)) if measured else None, float(values.mean()), float(values.std()), len(values))
                )
            out[key][model] = series
    return out


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
    written = {"csv": csv_path, "report": output_dir / "sweep_report.md"}
    lines = ["# Dose sweep report", "", f"{len(cells)} cells; {len({c.dose for c in cells})} doses, "
             f"{len({c.seed for c in cells})} seeds. Values are mean ± std over seeds; dose is the "
             "measured mean photon count per test pattern.", ""]
    for (metric, component), by_model in sorted(summaries.items()):
        title = f"{metric} ({component})" if component else metric
        lines += [f"## {title}", "", "| model | nominal dose | measured dose | mean | std | seeds |", "|---|---|---|---|---|---|"]
        for model, series in sorted(by_model.items()):
            for dose, measured, mean, std, n in series:
                shown = "not in counts" if measured is None else f"{measured:.4g}"
                lines.append(f"| {model} | {dose:g} | {shown} | {mean:.5g} | {std:.3g} | {n} |")
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
            all_measured = all(s[1] is not None for series in summaries[key].values() for s in series)
            for model, series in sorted(summaries[key].items()):
                dose = np.array([s[1] if all_measured else s[0] for s in series], dtype=float)
                mean = np.array([s[2] for s in series])
                std = np.array([s[3] for s in series])
                ax.errorbar(dose, mean, yerr=std, marker="o", capsize=3, label=model)
            ax.set_xscale("log")
            ax.set_xlabel(
                "measured dose (photons per pattern)" if all_measured
                else "nominal dose (photons per pattern; data not in counts, no measured dose)"
            )
            ax.set_ylabel(metric)
            ax.set_title(f"{metric}, {key[1]}")
            ax.legend(fontsize=8)
        fig.tight_layout()
        path = output_dir / f"sweep_{metric}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        plots[metric] = path
    return plots
