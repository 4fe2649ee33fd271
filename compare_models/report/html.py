"""``report.html``: one self-contained page per comparison, to open from disk and share.

:func:`write_compare_report` reads what a comparison directory already holds
(``metrics.json``, ``provenance.json`` and the PNG figures) and writes ``report.html`` beside
them; :func:`render_compare_report` is the pure part (dictionaries and PNG bytes in, HTML out).
The page is self-contained: every image is an inline ``data:image/png;base64`` URI, the CSS is
inline, there is no script and no external URL, and a Content-Security-Policy forbids any
other load, so it works offline and the same wherever it is copied. The only links are
relative ones to the files beside it (``metrics.json`` and so on).

Every section renders from whatever data is present; absent data leaves the section out or
says "not recorded", never an error. So a run without ground truth gets its images, timings
and provenance, and keys that later versions add appear once they are written.

Keys read
---------
``metrics.json``
    ``ground_truth`` (bool), ``object_shape`` ([H, W]), ``region_pixels`` (int).
    ``region`` (mapping, optional): how the scored region was made (rule, erosion, coverage,
    ...), shown as a table; its ``description`` (str), when present, as a sentence.
    ``thresholds`` (mapping, optional): thresholds used, name -> value or description.
    ``models[NAME]`` per arm (``PtychoPINN``, ``Baseline``, ``PtyChi``, ...):

    - ``metrics.amplitude`` / ``metrics.phase``: every scalar number is a row of the metrics
      table (``mae``, ``mse``, ``psnr``, ``ssim``, ``ms_ssim``, ``ms_ssim_scales``, FRC
      cut-offs ...; ``data_range`` and ``data_range_source`` go to the region section,
      ``ms_ssim_note`` to the notes); ``frc`` with ``curve``, ``frequency_nyquist``,
      ``thresholds`` (name -> curve) and ``cutoffs`` (name -> ``ring``, ``fraction_nyquist``,
      ``resolution_m``, ``crossed``): the FRC against the ground truth.
    - ``metrics.region`` (``bbox_rows``, ``bbox_cols``, ``n_pixels``) and ``metrics.settings``.
    - ``half_set_frc.amplitude`` / ``half_set_frc.phase`` (optional): a half-set FRC, in the
      same shape as ``metrics.<component>.frc``; plotted and tabulated when present.
    - ``registration``: ``shift_yx_px`` ([dy, dx]), ``correlation_error``, ``method``
      (``shift``, ``phase_align``, ``gauge``, ...), ``complex_factor``, ``phase_ramp``;
      ``gauge`` (mapping, optional, here or beside ``registration``): the fitted gauge.
    - ``computation_time_s``; ``compile_time_s`` (optional).
    - ``label`` (what the arm is), ``training_protocol`` (``description``),
      ``seen_in_training`` and ``model_format`` (all optional): the "Arms" table, and the
      label under the arm's name in the metrics table.

``provenance.json``
    ``command_line`` (list of str), ``versions`` (name -> version), ``inputs`` (role ->
    ``path``, ``sha256``), ``test_data`` (``n_positions``, ``patch_size``, ``dose_measured``,
    ``dose_nominal``, ``seed``), ``config`` (resolved settings, incl. ``test_subsample_seed``),
    ``timings_s`` (stage -> seconds) and ``arms[NAME]``: the arm's details (``kind``,
    ``gridsize``, ``algorithm``, ``placed_by``, ``bundle_metadata.config.seed``,
    ``metadata.config.seed`` ...). ``arms[NAME]["initialisation"]`` (str, optional) says how an
    iterative reconstruction's object was started; the value ``"unknown"`` (an external file
    whose start cannot be proven, e.g. possibly from the ground truth) puts a warning note at
    the top of the page, with ``arms[NAME]["initialisation_note"]`` when given.

Figures
    ``comparison.png`` (images and error maps), ``frc.png`` (FRC against the truth), and any
    other ``*.png`` in the directory, in name order.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

from .vocabulary import (
    CHANCE_FLAG,
    FRC_KIND_LABELS,
    HALF_SET_KIND_TITLES,
    HALF_SET_MEANING_TEXT,
    LEGACY_METRICS,
    RANKED_METRICS,
    protocol_text,
    seen_in_training_text,
)

__all__ = [
    "REPORT_NAME",
    "render_compare_report",
    "write_compare_report",
    "png_data_uri",
    "page",
    "table",
    "fmt",
]

REPORT_NAME = "report.html"
KNOWN_FIGURES = ("comparison.png", "frc.png")
LINKED_FILES = (
    "comparison_metrics.csv", "metrics.json", "frc_curves.csv", "provenance.json",
    "reconstructions.npz", "reconstructions_aligned.npz", "logs/run.log",
)
# Metric rows in this order first; other scalar numbers follow in the order they appear.
METRIC_ORDER = (
    "mae", "mse", "psnr", "ssim", "ms_ssim", "ms_ssim_scales",
    "frc50", "frc1over7", "frc_1bit", "frc_halfbit",
)
# Not metric rows: shown in the region and settings section or as notes.
NOT_METRIC_ROWS = frozenset({"data_range", "data_range_source", "ms_ssim_sigma", "ms_ssim_note", "ms_ssim_weights"})
# +1: higher is better, -1: lower is better (the best value of a row is marked). Legacy rows
# (frc1over7 ...) are never ranked: they are not measures of quality.
BETTER = RANKED_METRICS
COMPONENTS = ("amplitude", "phase")

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #1d1d1f; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.8em; }
h3 { font-size: 1.05em; margin-top: 1.2em; }
.subtitle { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 0.6em 0 1em; font-size: 0.92em; }
th, td { border: 1px solid #d0d0d0; padding: 0.25em 0.6em; text-align: right; vertical-align: top; }
th { background: #f2f2f2; }
td { white-space: nowrap; }
td.text, th.text { text-align: left; white-space: normal; }
td.mono, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 0.9em;
                 text-align: left; word-break: break-all; white-space: normal; }
td.best { font-weight: bold; background: #eaf5ea; }
td.chance, th.chance { color: #555; font-style: italic; background: #f4f4f4; }
th .arm-label { display: block; font-weight: normal; font-size: 0.85em; color: #555; }
td.below-chance { background: #fdecea; }
.flag { color: #a33; font-size: 0.8em; font-style: normal; }
.note { border-left: 4px solid #888; background: #f6f6f6; padding: 0.5em 0.8em; margin: 0.6em 0; }
.warning { border-left-color: #d08700; background: #fff6e0; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { color: #444; font-size: 0.9em; margin-top: 0.3em; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; white-space: pre-wrap; word-break: break-all; }
details { margin: 0.5em 0; }
summary { cursor: pointer; color: #234; }
footer { color: #777; font-size: 0.85em; margin-top: 3em; }
"""

# No script, no external load: images are data URIs, styles inline.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


# --------------------------------------------------------------------------------------------
# HTML pieces shared with the sweep report


def esc(value) -> str:
    """HTML-escape ``str(value)``."""
    return html.escape(str(value), quote=True)


def fmt(value, digits: int = 5) -> str:
    """A number as text with ``digits`` significant figures; None as a dash; strings as is."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.{digits}g}"
    return str(value)


def _number(value) -> float | None:
    """A float for numbers and the JSON spellings "inf", "-inf", "nan"; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value in ("inf", "-inf", "nan"):
        return float(value)
    return None


def table(headers: Iterable, rows: Iterable[Iterable], *, text_columns: Iterable[int] = (0,), caption: str = "") -> str:
    """An HTML table; cells are escaped unless given as ``Markup``; columns in
    ``text_columns`` are left-aligned."""
    text_columns = set(text_columns)
    parts = ["<table>"]
    if caption:
        parts.append(f"<caption>{esc(caption)}</caption>")
    parts.append("<thead><tr>" + "".join(
        f'<th class="{"text" if i in text_columns else ""}">{_cell_html(h)}</th>' for i, h in enumerate(headers)
    ) + "</tr></thead><tbody>")
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            classes = []
            if i in text_columns:
                classes.append("text")
            if isinstance(cell, Markup) and cell.css:
                classes.append(cell.css)
            cells.append(f'<td class="{" ".join(classes)}">{_cell_html(cell)}</td>')
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</tbody></table>")
    return "".join(parts)


class Markup(str):
    """Text that is already HTML (not escaped again), with an optional CSS class for its cell."""

    css = ""

    def __new__(cls, text: str, css: str = ""):
        obj = super().__new__(cls, text)
        obj.css = css
        return obj


def _cell_html(cell) -> str:
    if isinstance(cell, Markup):
        return str(cell)
    if isinstance(cell, float | int) and not isinstance(cell, bool):
        return esc(fmt(cell))
    return esc(fmt(cell) if cell is None or isinstance(cell, bool) else cell)


def png_data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for PNG bytes."""
    if not png.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError("not a PNG file")
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure(png: bytes, alt: str, caption: str = "") -> str:
    """An inline ``<figure>`` holding ``png``."""
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{png_data_uri(png)}" alt="{esc(alt)}">{cap}</figure>'


def note(text: str, *, warning: bool = False, markup: bool = False) -> str:
    body = text if markup else esc(text)
    return f'<div class="note{" warning" if warning else ""}">{body}</div>'


def page(title: str, subtitle: str, body: Iterable[str]) -> str:
    """A complete HTML document: inline CSS, no script, a CSP that forbids external loads."""
    written = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="subtitle">{esc(subtitle)}</p>',
        *body,
        f"<footer>Written by compare-models on {written}. This page is self-contained: "
        "images are embedded, and it needs no network and no scripts.</footer>",
        "</body>",
        "</html>",
        "",
    ])


def flatten(mapping: Mapping, prefix: str = "", *, max_list: int = 6) -> list[tuple[str, object]]:
    """``(dotted.key, value)`` pairs of a nested mapping; long lists become "[n values]"."""
    out = []
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            if value:
                out += flatten(value, name + ".", max_list=max_list)
            else:
                out.append((name, "{}"))
        elif isinstance(value, list | tuple):
            if len(value) <= max_list and all(not isinstance(v, Mapping | list | tuple) for v in value):
                out.append((name, "[" + ", ".join(fmt(_number(v) if _number(v) is not None else v) for v in value) + "]"))
            else:
                out.append((name, f"[{len(value)} values]"))
        else:
            out.append((name, value))
    return out


def kv_table(mapping: Mapping, *, headers=("setting", "value")) -> str:
    """A two-column table of a (flattened) mapping."""
    return table(headers, [(k, Markup(esc(fmt(v)), "mono") if isinstance(v, str) else v) for k, v in flatten(mapping)])


def frc_figure_png(curves: Mapping[str, Mapping[str, Mapping]], title: str) -> bytes:
    """PNG of FRC curves ``curves[model][component]`` (``curve``, ``frequency_nyquist``,
    optional ``thresholds``), amplitude and phase side by side, with their threshold curves."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4), dpi=100)
    axes = fig.subplots(1, 2, squeeze=False)[0]
    for ax, component in zip(axes, COMPONENTS, strict=True):
        drawn = set()
        for model, by_component in curves.items():
            frc = by_component.get(component)
            if not frc:
                continue
            freq = frc.get("frequency_nyquist") or list(range(len(frc.get("curve", []))))
            ax.plot(freq, [_number(v) for v in frc.get("curve", [])], label=model)
            for name, curve in (frc.get("thresholds") or {}).items():
                if name not in drawn and isinstance(curve, list) and len(curve) == len(freq):
                    ax.plot(freq, [_number(v) for v in curve], "k:", lw=1, label=f"{name} threshold")
                    drawn.add(name)
        ax.axhline(1 / 7, color="gray", ls="-.", lw=1, label="1/7")
        ax.set_xlabel("spatial frequency (fraction of Nyquist)")
        ax.set_ylabel("FRC")
        ax.set_title(f"{title}, {component}")
        ax.set_ylim(-0.1, 1.05)
        ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# The comparison report


def _models(metrics: Mapping) -> dict:
    models = metrics.get("models")
    return dict(models) if isinstance(models, Mapping) else {}


def _metric_rows(models: Mapping) -> list[str]:
    """Scalar metric names present for any model, in METRIC_ORDER then as they appear."""
    names: list[str] = []
    for entry in models.values():
        for component in COMPONENTS:
            values = ((entry.get("metrics") or {}).get(component)) or {}
            for key, value in values.items():
                if key in NOT_METRIC_ROWS or key in names or _number(value) is None:
                    continue
                names.append(key)
    known = [n for n in METRIC_ORDER if n in names]
    return known + [n for n in names if n not in known]


def _metrics_section(metrics: Mapping) -> list[str]:
    models = _models(metrics)
    with_metrics = {n: e for n, e in models.items() if isinstance(e.get("metrics"), Mapping)}
    out = ["<h2>Metrics</h2>"]
    if not with_metrics:
        out.append(note("No ground truth in the test data, so there are no metrics against it; "
                        "the images, timings and provenance follow."))
        return out
    names = list(with_metrics)
    chance, flagged = _chance(metrics)
    arms = [n for n in names if n != chance]
    heads = {n: ('<th colspan="2" class="chance">' + esc(f"{n} (chance)") if n == chance
                 else '<th colspan="2">' + esc(n)) + _arm_label(with_metrics[n]) + "</th>" for n in names}
    header = "<tr><th class=\"text\" rowspan=\"2\">metric</th>" + "".join(heads.values()) + "</tr><tr>" + "".join("<th>amplitude</th><th>phase</th>" for _ in names) + "</tr>"
    body = []
    for metric in _metric_rows(with_metrics):
        cells = {}
        for name in names:
            for component in COMPONENTS:
                value = ((with_metrics[name]["metrics"].get(component)) or {}).get(metric)
                cells[(name, component)] = _number(value)
        best = _best(cells, arms, BETTER.get(metric))
        label = f"{metric} (legacy, not ranked)" if metric in LEGACY_METRICS else metric
        row = [f'<td class="text">{esc(label)}</td>']
        for name in names:
            for component in COMPONENTS:
                value = cells[(name, component)]
                text = esc(fmt(value))
                css = "chance" if name == chance else "best" if value is not None and best.get(component) == value else ""
                if (name, component, metric) in flagged:
                    css, text = f"{css} below-chance", f'{text}<span class="flag"> ≤ chance</span>'
                row.append(f'<td class="{css}">{text}</td>')
        body.append("<tr>" + "".join(row) + "</tr>")
    out.append(f"<table><thead>{header}</thead><tbody>{''.join(body)}</tbody></table>")
    out.append('<p class="subtitle">Bold: the best arm on a ranked row (mae, mse, psnr, ssim, ms_ssim, '
               "frc50); legacy rows such as frc1over7 (the 1/7 crossing against ground truth, kept for "
               "old scripts, not a resolution) are never ranked. FRC cut-offs are fractions of "
               "Nyquist (see the FRC section for rings and metres). Every arm is scored on the same "
               "region of the ground-truth grid.</p>")
    out += _chance_notes(metrics, chance)
    return out


def _arm_label(entry: Mapping) -> str:
    """What an arm is, under its name in a table header (metrics.json ``label``)."""
    label = entry.get("label")
    return f'<span class="arm-label">{esc(label)}</span>' if label else ""


def _arms_section(metrics: Mapping) -> list[str]:
    """What each arm is: the name the CSV uses, what it stands for, how a network was trained
    and how much of the scored region its training saw (metrics.json ``models``)."""
    rows = []
    for name, entry in _models(metrics).items():
        if not entry.get("label"):
            continue
        protocol = entry.get("training_protocol")
        trained = protocol_text(protocol) or "–"
        rows.append((name, entry["label"], trained, seen_in_training_text(entry.get("seen_in_training"), protocol),
                     entry.get("model_format") or "–"))
    if not rows:
        return []
    return [
        "<h2>Arms</h2>",
        table(("name (CSV)", "what it is", "training", "scored region seen in training", "format"),
              rows, text_columns=(0, 1, 2, 4)),
    ]


def _chance(metrics: Mapping) -> tuple[str | None, set]:
    """The chance level's model name (metrics.json ``chance``) and the set of
    ``(arm, component, metric)`` on which an arm does not beat it."""
    chance = metrics.get("chance") if isinstance(metrics.get("chance"), Mapping) else None
    if not chance:
        return None, set()
    flagged = {
        (name, flag.get("component"), flag.get("metric"))
        for name, flags in (chance.get("not_beaten") or {}).items()
        for flag in flags if isinstance(flag, Mapping)
    }
    return chance.get("model"), flagged


def _best(cells: Mapping, arms, direction) -> dict:
    """Component -> the best value among the arms (not the chance level) on a ranked row."""
    best = {}
    if direction and len(arms) > 1:
        for component in COMPONENTS:
            finite = [cells[(n, component)] for n in arms if cells[(n, component)] is not None
                      and not math.isnan(cells[(n, component)])]
            if finite:
                best[component] = max(finite) if direction > 0 else min(finite)
    return best


def _chance_notes(metrics: Mapping, chance: str | None) -> list[str]:
    """What the chance column is, and which arm does not beat it where."""
    if chance is None:
        return []
    record = metrics["chance"]
    items = []
    for name, flags in (record.get("not_beaten") or {}).items():
        if flags:
            lost = ", ".join(f"{f.get('component')} {f.get('metric')}" for f in flags if isinstance(f, Mapping))
            items.append(f"<li><b>{esc(name)}</b> {esc(CHANCE_FLAG)} on: {esc(lost)}</li>")
        else:
            items.append(f"<li><b>{esc(name)}</b> beats it on every ranked metric</li>")
    definition = str(record.get("definition", "")).removeprefix("chance level: ")
    text = (f"<strong>{esc(chance)} (chance level).</strong> {esc(definition[:1].upper() + definition[1:])}."
            f"<ul>{''.join(items)}</ul>")
    return [note(text, warning=any(record.get("not_beaten", {}).values()), markup=True)]


def _initialisation(details: Mapping) -> str | None:
    """How an arm's object was started: ``initialisation`` of the arm, else of its file's
    ``metadata``; None when neither records it."""
    value = details.get("initialisation")
    if value is None and isinstance(details.get("metadata"), Mapping):
        value = details["metadata"].get("initialisation")
    return None if value is None else str(value)


def _initialisation_notes(provenance: Mapping) -> list[str]:
    out = []
    arms = provenance.get("arms") or {}
    for name, details in arms.items():
        if not isinstance(details, Mapping):
            continue
        if (_initialisation(details) or "").lower() == "unknown":
            extra = details.get("initialisation_note")
            text = (f"<strong>{esc(name)}: initialisation unknown.</strong> This reconstruction was "
                    "made outside this tool, and its file does not record how the object was "
                    "started; it may have been started from the ground truth, which would flatter "
                    "its scores.")
            if extra:
                text += " " + esc(extra)
            out.append(note(text, warning=True, markup=True))
    return out


def _failure_notes(metrics: Mapping) -> list[str]:
    """A warning naming every arm that failed, with the reason and the fix
    (metrics.json ``failures``)."""
    failures = metrics.get("failures") if isinstance(metrics.get("failures"), Mapping) else {}
    arms = failures.get("arms") if isinstance(failures.get("arms"), Mapping) else {}
    if not arms:
        return []
    items = []
    for name, records in arms.items():
        for record in records if isinstance(records, list) else []:
            step = f" (at the {record.get('step')} step)" if record.get("step") else ""
            items.append(f"<li><b>{esc(name)}</b>: {esc(record.get('stage'))}{esc(step)} failed: "
                         f"{esc(record.get('reason'))}<br><b>Fix:</b> {esc(record.get('fix'))}</li>")
    text = (f"<strong>Failed arms (exit status {esc(failures.get('exit_status'))}).</strong> Every other arm "
            f"was scored and written as if these had not been given.<ul>{''.join(items)}</ul>")
    return [note(text, warning=True, markup=True)]


def _notes(metrics: Mapping, provenance: Mapping) -> list[str]:
    out = _failure_notes(metrics) + _initialisation_notes(provenance)
    seen = set()
    for entry in _models(metrics).values():
        for component in COMPONENTS:
            text = (((entry.get("metrics") or {}).get(component)) or {}).get("ms_ssim_note")
            if text and text not in seen:
                seen.add(text)
                out.append(note(f"MS-SSIM: {text}"))
    return out


def _figures_section(figures: Mapping[str, bytes], metrics: Mapping) -> list[str]:
    out = ["<h2>Images</h2>"]
    if "comparison.png" in figures:
        caption = ("Amplitude and phase of every arm beside the ground truth, after registration, on "
                   "the scanned region; the lower rows are absolute error maps on one colour scale "
                   "per row." if metrics.get("ground_truth", True) else
                   "Amplitude and phase of every arm on the scanned region (no ground truth).")
        out.append(figure(figures["comparison.png"], "amplitude, phase and error maps per arm", caption))
    else:
        out.append(note("comparison.png: not written by this run."))
    return out


def _cutoff_rows(models: Mapping, key_path) -> list[tuple]:
    rows = []
    for name, entry in models.items():
        for component in COMPONENTS:
            frc = key_path(entry, component)
            if not isinstance(frc, Mapping):
                continue
            for threshold, cut in (frc.get("cutoffs") or {}).items():
                if not isinstance(cut, Mapping):
                    continue
                rows.append((name, component, threshold, cut.get("ring"), _number(cut.get("fraction_nyquist")),
                             _number(cut.get("resolution_m")), cut.get("crossed"),
                             Markup(esc(cut.get("role") or frc.get("kind") or "–"), "text")))
    return rows


def _truth_frc(entry, component):
    return (((entry.get("metrics") or {}).get(component)) or {}).get("frc")


def _half_set_frc(entry, component):
    return ((entry.get("half_set_frc")) or {}).get(component)


def _half_set_kind(entry) -> str:
    """``"network"`` for a half-set FRC that measures reproducibility, else ``"iterative"``."""
    meaning = ((entry.get("half_set_frc")) or {}).get("meaning")
    return "network" if meaning == "reproducibility" else "iterative"


CUTOFF_HEADERS = ("arm", "component", "threshold", "ring", "fraction of Nyquist", "half-period resolution (m)",
                  "crossed", "meaning")


def _frc_section(metrics: Mapping, figures: Mapping[str, bytes]) -> list[str]:
    models = _models(metrics)
    out = ["<h2>Fourier ring correlation</h2>"]
    if "frc.png" in figures:  # compare writes one row of curves per kind it computed
        out.append(figure(figures["frc.png"], "FRC curves",
                          "FRC of each arm, one row per kind computed in this run: against the "
                          "ground truth (0.5 threshold), and between two half sets of the scan "
                          "(1/7 line, ½-bit and 1-bit curves): the iterative arms' resolution and "
                          "the networks' reproducibility (not a resolution) in separate rows."))
    out.append("<h3>Against the ground truth</h3>")
    truth_rows = _cutoff_rows(models, _truth_frc)
    if truth_rows:
        out.append(table(CUTOFF_HEADERS, truth_rows, text_columns=(0, 1, 2)))
        out.append('<p class="subtitle">Against a noise-free ground truth the 0.5 crossing is the '
                   "resolution; 1/7, 1-bit and ½-bit are defined for two independent half-set "
                   "reconstructions. "
                   "\"crossed: no\" means the curve stays above the threshold up to the last ring.</p>")
    else:
        out.append(note("Not computed (no ground truth)."))
    out.append("<h3>Half-set FRC</h3>")
    half = {name: {c: _half_set_frc(e, c) for c in COMPONENTS if _half_set_frc(e, c)} for name, e in models.items()}
    half = {name: curves for name, curves in half.items() if curves}
    if half:
        out.append("<p>FRC between two images of one arm made from two disjoint halves of the scan (no "
                   "ground truth needed). What it measures depends on the arm, so the two kinds are "
                   "shown apart and never ranked against each other.</p>")
        for kind, title in HALF_SET_KIND_TITLES.items():
            mine = {name: curves for name, curves in half.items() if _half_set_kind(models[name]) == kind}
            if not mine:
                continue
            out.append(f"<h4>{esc(title[0].upper() + title[1:])}</h4>")
            out.append(note(f"{', '.join(mine)}: {HALF_SET_MEANING_TEXT[kind]}.", warning=kind == "network"))
            if "frc.png" not in figures:
                out.append(figure(frc_figure_png(mine, FRC_KIND_LABELS[f"half_set/{kind}"]), f"half-set FRC, {kind} arms",
                                  "The curves with the thresholds they were evaluated against."))
            rows = _cutoff_rows({name: models[name] for name in mine}, _half_set_frc)
            out.append(table(CUTOFF_HEADERS, rows, text_columns=(0, 1, 2)))
    else:
        out.append(note("Not computed in this run."))
    half_sets = metrics.get("half_sets")
    missing = half_sets.get("not_computed") if isinstance(half_sets, Mapping) else None
    if isinstance(missing, Mapping) and missing:
        items = "".join(f"<li><b>{esc(name)}</b>: {esc(reason)}</li>" for name, reason in missing.items())
        out.append(note(f"No half-set FRC for:<ul>{items}</ul>", markup=True))
    return out


def _region_section(metrics: Mapping) -> list[str]:
    models = _models(metrics)
    out = ["<h2>Scored region, gauge and thresholds</h2>"]
    region = metrics.get("region")
    summary = {"object shape (rows, cols)": metrics.get("object_shape"),
               "scored pixels": metrics.get("region_pixels")}
    first = next((e["metrics"] for e in models.values() if isinstance(e.get("metrics"), Mapping)), None)
    if isinstance(region, Mapping):
        sentence = region.get("description") or region.get("rule")
        if sentence:
            out.append(f"<p>{esc(sentence)}</p>")
        if "n_pixels" in region:
            summary.pop("scored pixels")
        summary.update({k: v for k, v in region.items() if k not in ("description", "rule")})
    elif first and isinstance(first.get("region"), Mapping):
        r = first["region"]
        summary["bounding box rows"] = r.get("bbox_rows")
        summary["bounding box cols"] = r.get("bbox_cols")
    summary = {k: v for k, v in summary.items() if v is not None}
    if summary:
        out.append(kv_table(summary, headers=("region", "value")))
    if first:
        ranges = []
        for component in COMPONENTS:
            values = first.get(component) or {}
            ranges.append((component, _number(values.get("data_range")), values.get("data_range_source"),
                           values.get("ms_ssim_scales"), values.get("ms_ssim_sigma")))
        out.append("<h3>Data ranges and MS-SSIM</h3>")
        out.append(table(("component", "data range", "source", "MS-SSIM scales", "MS-SSIM pre-blur σ (px)"), ranges,
                         text_columns=(0, 2)))
        if isinstance(first.get("settings"), Mapping):
            out.append(kv_table(first["settings"], headers=("metric setting", "value")))
    scoring = metrics.get("scoring") if isinstance(metrics.get("scoring"), Mapping) else {}
    thresholds = metrics.get("thresholds") or scoring.get("frc")
    names = sorted({row[2] for row in _cutoff_rows(models, _truth_frc)})
    out.append("<h3>Thresholds</h3>")
    if names:
        out.append(f"<p>FRC cut-offs evaluated at: {esc(', '.join(names))}.</p>")
    if isinstance(thresholds, Mapping) and thresholds:
        out.append(_text_table(thresholds, ("threshold", "value")))
    elif not names:
        out.append(note("Not recorded."))
    rules = {k: v for k, v in scoring.items() if k not in ("frc", "definitions")}
    if rules:
        out.append("<h3>Rules applied</h3>")
        out.append(_text_table(rules, ("rule", "value")))
    if isinstance(scoring.get("definitions"), Mapping):
        out.append("<details><summary>Definitions of the metrics</summary>")
        out.append(_text_table(scoring["definitions"], ("metric", "definition")))
        out.append("</details>")
    gauges = {}
    for name, entry in models.items():
        registration = entry.get("registration") or {}
        gauge = entry.get("gauge") or registration.get("gauge")
        pieces = {}
        if isinstance(gauge, Mapping):
            pieces.update(gauge)
        for key in ("complex_factor", "phase_ramp"):
            if isinstance(registration.get(key), Mapping):
                pieces[key] = registration[key]
        method = registration.get("method") or {}
        for key in ("phase_align", "gauge"):
            if method.get(key) is not None:
                pieces[f"method.{key}"] = method[key]
        if pieces:
            gauges[name] = dict(flatten(pieces))
    out.append("<h3>Gauge</h3>")
    if gauges:
        quantities = list(dict.fromkeys(k for values in gauges.values() for k in values))
        # A long sentence that every arm shares (how the gauge is defined) is said once, below.
        shared = [q for q in quantities if len({str(v.get(q)) for v in gauges.values()}) == 1
                  and isinstance(next(iter(gauges.values())).get(q), str)
                  and len(next(iter(gauges.values()))[q]) > 40]
        quantities = [q for q in quantities if q not in shared]
        rows = []
        for quantity in quantities:
            row = [quantity]
            for values in gauges.values():
                value = values.get(quantity)
                row.append(Markup(esc(fmt(value)), "text") if isinstance(value, str) and _number(value) is None
                           else _num_or(value))
            rows.append(row)
        out.append(table(("fitted quantity", *gauges), rows))
        for quantity in shared:
            out.append(f'<p class="subtitle">{esc(quantity)}: {esc(next(iter(gauges.values()))[quantity])}</p>')
        out.append('<p class="subtitle">What was fitted and applied to each image before scoring '
                   "(a reconstruction is defined up to a global phase, a phase ramp and a scale).</p>")
    else:
        out.append(note("Not recorded (no ground truth, so no gauge was fitted)."))
    return out


def _text_table(mapping: Mapping, headers) -> str:
    """A two-column table of a flattened mapping whose values are mostly sentences."""
    rows = [(k, Markup(esc(fmt(v)), "text") if isinstance(v, str) and _number(v) is None else _num_or(v))
            for k, v in flatten(mapping)]
    return table(headers, rows, text_columns=(0, 1))


def _num_or(value):
    number = _number(value)
    return number if number is not None else value


def _registration_section(metrics: Mapping) -> list[str]:
    rows = []
    for name, entry in _models(metrics).items():
        registration = entry.get("registration")
        if not isinstance(registration, Mapping):
            continue
        shift = registration.get("shift_yx_px") or [None, None]
        method = registration.get("method") if isinstance(registration.get("method"), Mapping) else {}
        estimate = registration.get("shift") if isinstance(registration.get("shift"), Mapping) else {}
        error = estimate.get("correlation_error", registration.get("correlation_error"))
        how = estimate.get("method") or method.get("shift") or "not estimated"
        rows.append((name, _number(shift[0]), _number(shift[1]), _number(error), how,
                     estimate.get("correlate_on") or method.get("correlate_on")))
    out = ["<h2>Registration</h2>"]
    if rows:
        out.append(table(("arm", "shift dy (px)", "shift dx (px)", "correlation error", "method", "correlated on"),
                         rows, text_columns=(0, 4, 5)))
        out.append('<p class="subtitle">The translation (rows, columns; pixels) applied to each image '
                   "to place it on the ground truth; sign as skimage's phase_cross_correlation.</p>")
    else:
        out.append(note("No registration (no ground truth)."))
    return out


def _timings_section(metrics: Mapping, provenance: Mapping) -> list[str]:
    out = ["<h2>Timings</h2>"]
    rows = []
    chance, _ = _chance(metrics)
    for name, entry in _models(metrics).items():
        if name != chance:  # the chance level is not computed by anyone
            rows.append((name, _number(entry.get("computation_time_s")), _number(entry.get("compile_time_s"))))
    if rows:
        out.append(table(("arm", "computation time (s)", "compile time (s)"), rows))
        out.append('<p class="subtitle">Computation time: what a user waits for per image (network: '
                   "inference and stitching; pty-chi: its reconstruction).</p>")
    stages = provenance.get("timings_s")
    if isinstance(stages, Mapping) and stages:
        out.append("<details><summary>Every stage</summary>")
        out.append(table(("stage", "seconds"), [(k, _number(v)) for k, v in stages.items()]))
        out.append("</details>")
    return out


def _seed(mapping, *path):
    for key in path:
        if not isinstance(mapping, Mapping):
            return None
        mapping = mapping.get(key)
    return mapping


def _provenance_section(provenance: Mapping) -> list[str]:
    out = ["<h2>Provenance</h2>"]
    if not provenance:
        out.append(note("provenance.json: not found."))
        return out
    command = provenance.get("command_line")
    if command:
        out.append("<h3>Command</h3>")
        out.append(f"<pre>{esc(' '.join(str(c) for c in command))}</pre>")
    data = provenance.get("test_data") or {}
    if data:
        out.append("<h3>Test data</h3>")
        out.append(table(("quantity", "value"), [
            ("positions", data.get("n_positions")),
            ("pattern side N (px)", data.get("patch_size")),
            ("measured dose (photons per pattern)", _number(data.get("dose_measured"))),
            ("nominal dose (photons per pattern)", _number(data.get("dose_nominal"))),
        ]))
    seeds = [("test data (simulation)", data.get("seed"))]
    config = provenance.get("config") or {}
    if config.get("n_test_subsample") is not None:
        seeds.append(("test subsample", config.get("test_subsample_seed")))
    arms = provenance.get("arms") or {}
    for name, details in arms.items():
        seed = _seed(details, "bundle_metadata", "config", "seed")
        if seed is None:
            seed = _seed(details, "metadata", "config", "seed")
        what = "training" if details.get("bundle_metadata") else "reconstruction"
        seeds.append((f"{name} ({what})", seed))
    out.append("<h3>Seeds</h3>")
    out.append(table(("what", "seed"), seeds))
    if arms:
        out.append("<h3>Arms</h3>")
        rows = []
        for name, details in arms.items():
            details = details if isinstance(details, Mapping) else {}
            source = details.get("bundle") or details.get("path")
            kind = details.get("kind") or details.get("algorithm")
            rows.append((name, kind, details.get("gridsize"), details.get("placed_by"),
                         _initialisation(details) or ("not recorded" if details.get("algorithm") else "–"),
                         Markup(esc(source or "–"), "mono")))
        out.append(table(("arm", "kind / algorithm", "gridsize", "placed by", "initialisation", "source"),
                         rows, text_columns=(0, 1, 3, 4, 5)))
    inputs = provenance.get("inputs") or {}
    if inputs:
        out.append("<h3>Inputs</h3>")
        out.append(table(("input", "path", "SHA-256"), [
            (role, Markup(esc(entry.get("path", "")), "mono"), Markup(esc(entry.get("sha256", "")), "mono"))
            for role, entry in inputs.items() if isinstance(entry, Mapping)
        ], text_columns=(0, 1, 2)))
    versions = provenance.get("versions") or {}
    if versions:
        out.append("<h3>Versions</h3>")
        out.append(table(("package", "version"), list(versions.items()), text_columns=(0, 1)))
    if config:
        out.append("<details><summary>Resolved settings</summary>")
        out.append(kv_table(config))
        out.append("</details>")
    return out


def _files_section(present: Iterable[str]) -> list[str]:
    links = [f'<li><a href="{esc(name)}">{esc(name)}</a></li>' for name in present]
    if not links:
        return []
    return ["<h2>Files beside this report</h2>", "<ul>", *links, "</ul>"]


def render_compare_report(
    metrics: Mapping,
    provenance: Mapping,
    figures: Mapping[str, bytes],
    *,
    title: str = "Comparison report",
    linked_files: Iterable[str] = (),
) -> str:
    """The report page for one comparison (see the module docstring for the keys read).

    Parameters
    ----------
    metrics, provenance : mapping
        The decoded ``metrics.json`` and ``provenance.json`` (either may be empty).
    figures : mapping of str to bytes
        PNG files by name; ``comparison.png`` and ``frc.png`` go to their sections, the rest to
        "More figures".
    title : str
    linked_files : iterable of str
        Relative paths of files beside the report, listed as links.

    Returns
    -------
    str
        A complete, self-contained HTML document.
    """
    data = provenance.get("test_data") or {}
    models = _models(metrics)
    parts = []
    if data.get("n_positions") is not None:
        parts.append(f"{data['n_positions']} positions")
    if data.get("patch_size") is not None:
        parts.append(f"N = {data['patch_size']}")
    if _number(data.get("dose_measured")) is not None:
        parts.append(f"measured dose {fmt(_number(data['dose_measured']), 4)} photons per pattern")
    chance, _ = _chance(metrics)
    if models:
        parts.append("arms: " + ", ".join(name for name in models if name != chance))
    if chance:
        parts.append(f"chance level: {chance}")
    parts.append("with ground truth" if metrics.get("ground_truth", bool(metrics.get("models"))) else "no ground truth")
    body = [*_notes(metrics, provenance)]
    body += _arms_section(metrics)
    body += _metrics_section(metrics)
    body += _figures_section(figures, metrics)
    body += _frc_section(metrics, figures)
    body += _region_section(metrics)
    body += _registration_section(metrics)
    body += _timings_section(metrics, provenance)
    body += _provenance_section(provenance)
    others = [name for name in sorted(figures) if name not in KNOWN_FIGURES]
    if others:
        body.append("<h2>More figures</h2>")
        body += [figure(figures[name], name, name) for name in others]
    body += _files_section(linked_files)
    return page(title, "; ".join(parts), body)


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return {}
    return data if isinstance(data, dict) else {}


def write_compare_report(directory, *, name: str = REPORT_NAME) -> Path:
    """Write ``report.html`` into a comparison directory from the files it holds.

    Parameters
    ----------
    directory : path
        A comparison directory (or its staging directory): ``metrics.json``,
        ``provenance.json`` and ``*.png`` are read when present.
    name : str
        File name of the page.

    Returns
    -------
    Path
        The page written.
    """
    directory = Path(directory)
    metrics = _read_json(directory / "metrics.json")
    provenance = _read_json(directory / "provenance.json")
    figures = {p.name: p.read_bytes() for p in sorted(directory.glob("*.png")) if p.is_file()}
    title = "Comparison report"
    output = (provenance.get("config") or {}).get("output_dir")
    if output:  # the directory and its parent: a sweep's are all called "compare"
        parts = Path(output).parts[-2:]
        title = f"Comparison report: {'/'.join(parts)}"
    present = [f for f in LINKED_FILES if (directory / f).exists()]
    text = render_compare_report(metrics, provenance, figures, title=title, linked_files=present)
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path
