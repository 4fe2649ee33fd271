"""Aggregate a dose sweep: ``sweep_metrics.csv``, ``sweep_report.md``, ``sweep_report.html`` and
plots against the measured dose.

Statistics over seeds
---------------------
For each model, metric, component and nominal dose the values of the seeds are summarised by
their mean, their sample standard deviation (``ddof = 1``) and a 95 % confidence interval of
the mean from Student's t distribution: ``mean ± t(0.975, n - 1) s / sqrt(n)`` for n seeds.
With a single seed there is no interval; the tables and the figures say so. The x position of a
dose is the mean *measured* dose of its seeds' test data (``provenance.json``'s
``test_data.dose_measured``), the nominal dose when none is recorded.

``sweep_report.html`` is self-contained (figures inline, no script, no external URL); it links,
by relative paths, to every cell's ``cells/<cell>/compare/report.html``.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .html import METRIC_ORDER, Markup, esc, figure, fmt, note, page, table
from .vocabulary import CHANCE_NAME, FRC_KIND_LABELS, HALF_SET_KIND_TITLES, MODEL_KINDS
from .writers import read_metrics_csv

__all__ = [
    "collect_sweep_rows",
    "cell_failed_arms",
    "arm_labels",
    "write_sweep_report",
    "summarise",
    "t_interval",
    "SeriesPoint",
    "SWEEP_COLUMNS",
    "PLOTTED_METRICS",
    "CONFIDENCE",
    "REPORT_NOTES",
]

SWEEP_COLUMNS = ("dose_nominal", "dose_measured", "seed", "model", "metric", "component", "value")
PLOTTED_METRICS = ("ms_ssim", "frc50", "halfset_frc_halfbit", "psnr")
CONFIDENCE = 0.95
CELL_REPORT = "compare/report.html"


def _cell_dose(cell_dir: Path) -> float | None:
    provenance = cell_dir / "compare" / "provenance.json"
    if provenance.exists():
        data = json.loads(provenance.read_text())
        value = data.get("test_data", {}).get("dose_measured")
        if value is not None:
            return float(value)
    return None


def _cell_metrics(cell_dir) -> dict:
    """A cell's ``compare/metrics.json``; empty when the comparison has not been written."""
    try:
        document = json.loads((Path(cell_dir) / "compare" / "metrics.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return document if isinstance(document, dict) else {}


def cell_failed_arms(cell_dir) -> dict[str, list[str]]:
    """The arms a cell's comparison has no numbers for, and why: arm name -> lines
    ``"<stage> failed: <reason>"``, from ``compare/metrics.json``'s ``failures`` (empty when
    every arm was scored, or when the comparison has not been written)."""
    return _failed_arms(_cell_metrics(cell_dir))


def _failed_arms(document: dict) -> dict[str, list[str]]:
    arms = (document.get("failures") or {}).get("arms") or {}
    return {
        name: [f"{item.get('stage')} failed: {item.get('reason')}" for item in items if isinstance(item, dict)]
        for name, items in arms.items() if isinstance(items, list)
    }


def arm_labels(output_dir, cells) -> dict[str, str]:
    """What each model name of the sweep stands for (metrics.json ``models.<name>.label`` of
    the cells' comparisons; labels that differ between cells are joined with " / ")."""
    return _arm_labels(_cell_metrics(Path(output_dir) / "cells" / cell.name) for cell in cells)


def _arm_labels(documents) -> dict[str, str]:
    labels: dict[str, list[str]] = {}
    for document in documents:
        for name, entry in (document.get("models") or {}).items():
            label = entry.get("label") if isinstance(entry, dict) else None
            if label and label not in labels.setdefault(name, []):
                labels[name].append(label)
    return {name: " / ".join(found) for name, found in labels.items() if found}


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


def t_interval(values, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Student-t confidence interval ``(low, high)`` of the mean of ``values``; None for fewer
    than two values.

    ``mean ± t_{(1 + confidence) / 2, n - 1} * s / sqrt(n)`` with ``s`` the sample standard
    deviation (``ddof = 1``).
    """
    from scipy import stats

    values = np.asarray(values, dtype=float)
    n = values.size
    if n < 2:
        return None
    mean = float(values.mean())
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * values.std(ddof=1) / math.sqrt(n))
    return mean - half, mean + half


@dataclass(frozen=True)
class SeriesPoint:
    """One (model, metric, component, nominal dose) summarised over seeds."""

    dose_nominal: float
    dose_measured: float | None  # mean over seeds; None when the data are not photon counts
    dose_measured_range: tuple[float, float] | None
    mean: float
    std: float | None  # sample standard deviation (ddof 1); None for one seed
    interval: tuple[float, float] | None  # 95 % t-interval of the mean; None for one seed
    seeds: tuple[int, ...]

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def dose_axis(self) -> float:
        """Where the point sits on a dose axis: the measured dose, or the nominal one for data
        that are not photon counts (nothing was measured; the axis label says so)."""
        return self.dose_nominal if self.dose_measured is None else self.dose_measured


def summarise(rows) -> dict[tuple[str, str], dict[str, list[SeriesPoint]]]:
    """``{(metric, component): {model: [SeriesPoint by nominal dose]}}`` from long-form rows;
    non-finite values are left out (and so do not count as seeds)."""
    grouped = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for row in rows:
        if row["value"] is None or not math.isfinite(row["value"]):
            continue
        grouped[(row["metric"], row["component"])][row["model"]][row["dose_nominal"]].append(
            (row["dose_measured"], row["value"], row["seed"])
        )
    out = {}
    for key, by_model in grouped.items():
        out[key] = {}
        for model, by_dose in by_model.items():
            series = []
            for dose in sorted(by_dose):
                entries = sorted(by_dose[dose], key=lambda e: e[2])
                measured = [m for m, _, _ in entries if m is not None]
                values = np.array([v for _, v, _ in entries], dtype=float)
                series.append(SeriesPoint(
                    dose_nominal=float(dose),
                    dose_measured=float(np.mean(measured)) if measured else None,
                    dose_measured_range=(min(measured), max(measured)) if measured else None,
                    mean=float(values.mean()),
                    std=float(values.std(ddof=1)) if values.size > 1 else None,
                    interval=t_interval(values),
                    seeds=tuple(int(s) for _, _, s in entries),
                ))
            out[key][model] = series
    return out


def _title(metric: str, component: str) -> str:
    return f"{metric} ({component})" if component else metric


def _dose(value: float) -> str:
    """A dose in three significant figures, exponent without '+0': 1e3, 9.2e4, 920."""
    return f"{value:.3g}".replace("e+0", "e").replace("e+", "e")


def _interval_text(point: SeriesPoint, digits: int = 4) -> str:
    if point.interval is None:
        return "– (1 seed)"
    return f"[{fmt(point.interval[0], digits)}, {fmt(point.interval[1], digits)}]"


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
    "thresholds (van Heel & Schatz 2005), fractions of Nyquist: a different measurement from frc50. "
    "For pty-chi it is a resolution; for a network it is the reproducibility of its image under "
    "independent data, NOT a resolution (the network's two halves share its weights and learned "
    "bias, so they agree on what is not the object too): the two kinds are plotted in separate rows "
    "and never ranked together. halfset_coverage is the fraction of the scan's hull that both "
    "halves cover.",
    "PSNR and SSIM use the truth's max - min over the region as data range, for amplitude and "
    "phase alike; computation_time_s excludes one-off compilation (compile_time_s).",
    f"{CHANCE_NAME} is the chance level (the dashed grey line): a constant image of the truth's mean "
    "amplitude and mean phase over the region, scored by the same rules; a model on or below it on "
    "a metric has learned nothing that metric can measure.",
)


def write_sweep_report(output_dir, cells) -> dict[str, Path]:
    """Write ``sweep_metrics.csv``, ``sweep_report.md``, ``sweep_report.html`` and
    ``sweep_<metric>.png`` into ``output_dir`` from the cells' comparison outputs.

    ``sweep_status.json`` (written by the sweep), when present, gives each cell's status.
    """
    output_dir = Path(output_dir)
    rows = collect_sweep_rows(output_dir, cells)
    csv_path = output_dir / "sweep_metrics.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=SWEEP_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row[k] is None else row[k]) for k in SWEEP_COLUMNS})
    summaries = summarise(rows)
    scales = _ms_ssim_scales(rows)
    written = {"csv": csv_path, "report": output_dir / "sweep_report.md", "html": output_dir / "sweep_report.html"}
    n_doses, n_seeds = len({c.dose for c in cells}), len({c.seed for c in cells})
    lines = ["# Dose sweep report", "", f"{_plural(len(cells), 'cell')}; {_plural(n_doses, 'dose')}, "
             f"{_plural(n_seeds, 'seed')}. Values are "
             "the mean over seeds, the sample standard deviation and the 95 % Student-t interval of the "
             "mean (none for a single seed); dose is the measured mean photon count per test pattern.", ""]
    lines += [f"- {text}" for text in REPORT_NOTES] + [""]
    # Each cell's metrics.json read once: what the names stand for, and the arms without numbers.
    documents = {c.name: _cell_metrics(output_dir / "cells" / c.name) for c in cells}
    labels = _arm_labels(documents.values())
    failed_arms = {name: _failed_arms(document) for name, document in documents.items()}
    if labels:
        lines += ["Arms (name in the tables = what it is):", ""] + [f"- {name} = {label}" for name, label in labels.items()] + [""]
    if any(failed_arms.values()):
        lines += ["## Arms without numbers", "",
                  "These cells' comparisons finished without some arms (their other arms were scored "
                  "as if the failed ones had not been given); the tables below lack those arms there.", ""]
        lines += [f"- {cell}: {name}: {'; '.join(reasons)}"
                  for cell, arms in failed_arms.items() for name, reasons in arms.items()] + [""]
    for (metric, component), by_model in sorted(summaries.items()):
        with_scales = metric == "ms_ssim"
        lines += [f"## {_title(metric, component)}", "",
                  "| model | nominal dose | measured dose | mean | std | 95 % interval | seeds |"
                  + (" scales |" if with_scales else ""),
                  "|---" * (8 if with_scales else 7) + "|"]
        for model, series in sorted(by_model.items()):
            for p in series:
                # No measured dose when the cells' data are not photon counts (provenance
                # records None then): the nominal dose is plotted, and labelled as such here.
                shown = "not in counts" if p.dose_measured is None else f"{p.dose_measured:.4g}"
                line = (f"| {_model_label(metric, model)} | {p.dose_nominal:g} | {shown} | {p.mean:.5g} | "
                        f"{fmt(p.std, 3)} | {_interval_text(p)} | {p.n} |")
                if with_scales:
                    used = scales.get((component, model, p.dose_nominal), [])
                    line += f" {'/'.join(str(k) for k in used) or '?'} |"
                lines.append(line)
        lines.append("")
    plots = _plot(summaries, output_dir)
    if plots:
        lines += ["## Figures", ""] + [f"![{p.stem}]({p.name})" for p in plots.values()]
    written["report"].write_text("\n".join(lines) + "\n")
    written["html"].write_text(_html(output_dir, cells, summaries, plots, labels, failed_arms), encoding="utf-8")
    written.update(plots)
    return written


def _single_seed_only(summaries, keys) -> bool:
    return all(p.n < 2 for key in keys for series in summaries[key].values() for p in series)


def _figure(summaries, metric: str):
    """A matplotlib Figure of ``metric`` against the measured dose, or None."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    keys = [(metric, c) for c in ("amplitude", "phase") if (metric, c) in summaries]
    if (metric, "") in summaries:
        keys.append((metric, ""))
    if not keys:
        return None
    groups = _panel_groups(metric, {model for key in keys for model in summaries[key]})
    fig = Figure(figsize=(5.5 * len(keys), 4.2 * len(groups)), dpi=110)
    grid = fig.subplots(len(groups), len(keys), squeeze=False)
    for (group, models), axes in zip(groups, grid, strict=True):
        for ax, key in zip(axes, keys, strict=True):
            _draw_panel(ax, summaries, key, models, group)
    single = _single_seed_only(summaries, keys)
    caption = ("mean over seeds; one seed per dose, so no interval is drawn" if single
               else "mean over seeds with its 95 % Student-t interval; n = seeds per point")
    fig.suptitle(f"{metric} against measured dose: {caption}", fontsize=9)
    fig.tight_layout()
    return fig


def _panel_groups(metric: str, models) -> list[tuple[str | None, set]]:
    """The rows of a metric's figure: one for every model, except half-set FRC, where the
    iterative arms (a resolution) and the networks (a reproducibility) get rows of their own
    and never share an axis."""
    if not metric.startswith("halfset_"):
        return [(None, set(models))]
    groups = []
    for kind in HALF_SET_KIND_TITLES:
        mine = {m for m in models if MODEL_KINDS.get(m, "iterative") == kind}
        if mine:
            groups.append((kind, mine))
    return groups


def _model_label(metric: str, model: str) -> str:
    """A model's name in a table, with what its half-set numbers measure."""
    if not metric.startswith("halfset_") or model == CHANCE_NAME:
        return model
    kind = MODEL_KINDS.get(model, "iterative")
    return f"{model} ({'resolution' if kind == 'iterative' else 'reproducibility, not a resolution'})"


def _draw_panel(ax, summaries, key, models, group) -> None:
    """One axis: ``models``' series of ``key`` against the measured dose."""
    for model, series in sorted(summaries[key].items()):
        if model not in models:
            continue
        x = np.array([p.dose_axis for p in series])
        mean = np.array([p.mean for p in series])
        if model == CHANCE_NAME:  # the chance line: what a constant image scores
            (line,) = ax.plot(x, mean, color="0.4", ls="--", lw=1.5, marker="_", markersize=18, mew=2,
                              label=f"{model} (chance level)")  # the bar marks a single dose too
        else:
            (line,) = ax.plot(x, mean, marker="o", label=model)
        with_interval = [p for p in series if p.interval is not None]
        if with_interval:
            xs = np.array([p.dose_axis for p in with_interval])
            ms = np.array([p.mean for p in with_interval])
            low = ms - np.array([p.interval[0] for p in with_interval])
            high = np.array([p.interval[1] for p in with_interval]) - ms
            ax.errorbar(xs, ms, yerr=[low, high], fmt="none", ecolor=line.get_color(), capsize=3)
        for p in series:
            ax.annotate(f"n={p.n}", (p.dose_axis, p.mean), textcoords="offset points", xytext=(4, 4),
                        fontsize=7, color=line.get_color())
    ax.set_xscale("log")
    measured_only = all(p.dose_measured is not None for s in summaries[key].values() for p in s)
    ax.set_xlabel("measured dose (photons per pattern)" if measured_only
                  else "dose (photons per pattern; nominal where the data are not counts)")
    ax.set_ylabel(key[0])
    title = _title(*key)
    if group is not None:
        title += f"\n{FRC_KIND_LABELS['half_set/' + group]}"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


def _plot(summaries, output_dir: Path) -> dict[str, Path]:
    plots = {}
    for metric in PLOTTED_METRICS:
        fig = _figure(summaries, metric)
        if fig is None:
            continue
        path = output_dir / f"sweep_{metric}.png"
        fig.savefig(path)
        plots[metric] = path
    return plots


def _cell_link(output_dir: Path, cell_name: str, label: str):
    target = output_dir / "cells" / cell_name / CELL_REPORT
    href = f"cells/{cell_name}/{CELL_REPORT}"
    if target.exists():
        return f'<a href="{esc(href)}">{esc(label)}</a>'
    return f'<span title="{esc(href)}: not written">{esc(label)} (no report)</span>'


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _status(output_dir: Path) -> dict[str, dict]:
    path = output_dir / "sweep_status.json"
    if not path.exists():
        return {}
    try:
        return {r["cell"]: r for r in json.loads(path.read_text()) if isinstance(r, dict) and "cell" in r}
    except (json.JSONDecodeError, OSError, TypeError):
        return {}


def _html(output_dir: Path, cells, summaries, plots, labels: dict, failed_arms: dict) -> str:
    by_dose_seed = {(float(c.dose), int(c.seed)): c.name for c in cells}
    status = _status(output_dir)
    doses = sorted({float(c.dose) for c in cells})
    seeds = sorted({int(c.seed) for c in cells})
    body = [note(
        "Each point is the mean over seeds at one nominal dose, placed at the mean measured dose "
        "(photons per test pattern); the bar is the 95 % confidence interval of the mean from "
        "Student's t distribution (mean ± t(0.975, n−1)·s/√n, s the sample standard deviation). "
        "n, the number of seeds, is written beside every point and in the tables. "
        + ("With one seed per dose no interval can be given, and none is drawn." if len(seeds) < 2 else "")
    )]
    body.append("<ul>" + "".join(f"<li>{esc(text)}</li>" for text in REPORT_NOTES) + "</ul>")
    if labels:
        body.append("<h2>Arms</h2>")
        body.append(table(("name (tables, CSV)", "what it is"), list(labels.items()), text_columns=(0, 1)))
    body.append("<h2>Figures</h2>")
    if plots:
        for metric, path in plots.items():
            body.append(figure(path.read_bytes(), f"{metric} against measured dose", f"{metric}: {path.name}"))
    else:
        body.append(note("No metrics to plot: no cell has finished its comparison."))

    present = list(dict.fromkeys(metric for metric, _ in sorted(summaries)))
    first = [m for m in (*PLOTTED_METRICS, *METRIC_ORDER) if m in present]
    metrics = list(dict.fromkeys(first + present))  # plotted and known metrics first, then the rest
    body.append("<h2>Tables</h2>")
    for metric in metrics:
        components = [c for c in ("amplitude", "phase", "") if (metric, c) in summaries]
        body.append(f"<h3>{esc(metric)}</h3>")
        headers = ["model", "nominal dose", "measured dose: mean (range)", "seeds (n)"]
        for component in components:
            label = component or "value"
            headers += [f"{label}: mean", f"{label}: std", f"{label}: 95 % interval"]
        headers.append("cell reports")
        models = sorted({m for c in components for m in summaries[(metric, c)]})
        rows = []
        for model in models:
            points = {c: {p.dose_nominal: p for p in summaries[(metric, c)].get(model, [])} for c in components}
            for dose in sorted({d for c in components for d in points[c]}):
                first = next(points[c][dose] for c in components if dose in points[c])
                span = first.dose_measured_range
                if span is None:  # data not in photon counts: nothing was measured
                    measured = "not in counts"
                else:
                    measured = _dose(first.dose_measured) + (
                        f" ({_dose(span[0])}–{_dose(span[1])})" if span[0] != span[1] else "")
                row = [_model_label(metric, model), _dose(dose), measured, f"{', '.join(map(str, first.seeds))} ({first.n})"]
                for component in components:
                    p = points[component].get(dose)
                    row += ([p.mean, p.std, _interval_text(p, 5)] if p else ["–", "–", "–"])
                links = [_cell_link(output_dir, by_dose_seed[(dose, s)], f"seed {s}")
                         for s in first.seeds if (dose, s) in by_dose_seed]
                row.append(Markup(", ".join(links), "text"))
                rows.append(row)
        body.append(table(headers, rows, text_columns=(0, 3)))

    body.append("<h2>Cells</h2>")
    cell_rows = []
    for dose in doses:
        for seed in seeds:
            name = by_dose_seed.get((dose, seed))
            if name is None:
                continue
            record = status.get(name, {})
            state = record.get("status", "–")
            if state == "failed":
                state = f"failed at {record.get('failed_step')}"
            missing = failed_arms.get(name, {})
            lacking = "; ".join(f"{arm}: {' '.join(reasons)}" for arm, reasons in missing.items()) or "–"
            cell_rows.append((Markup(_cell_link(output_dir, name, name), "text"), _dose(dose), seed, state, lacking))
    body.append(table(("cell", "nominal dose", "seed", "status", "arms without numbers"), cell_rows,
                      text_columns=(0, 3, 4)))
    body.append("<h2>Files</h2><ul>" + "".join(
        f'<li><a href="{esc(name)}">{esc(name)}</a></li>'
        for name in ("sweep_metrics.csv", "sweep_report.md", "sweep_config.json", "sweep_status.json")
        if (output_dir / name).exists() or name in ("sweep_metrics.csv", "sweep_report.md")
    ) + "</ul>")
    subtitle = (f"{_plural(len(cells), 'cell')}: {_plural(len(doses), 'dose')} × {_plural(len(seeds), 'seed')}; "
                f"output {output_dir.name}")
    return page("Dose sweep report", subtitle, body)

