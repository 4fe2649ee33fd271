"""Writers for a comparison's results: CSV, JSON, NPZ, figures and provenance.

Every writer takes plain data and a path; none decides where the output directory is or
whether a run is complete (that is :mod:`compare_models.report.staging`'s job).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import platform
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType

import numpy as np

__all__ = [
    "MODEL_NAMES",
    "MetricRow",
    "write_metrics_csv",
    "read_metrics_csv",
    "write_json",
    "to_jsonable",
    "write_frc_csv",
    "write_images_npz",
    "plot_comparison",
    "plot_frc",
    "file_sha256",
    "environment_versions",
    "format_metrics_table",
    "format_half_set_table",
    "GROUND_TRUTH_TABLE_TITLE",
    "HALF_SET_TABLE_TITLE",
    "format_scoring_summary",
    "FRC_CSV_HEADER",
]

# Model names in comparison_metrics.csv, as the existing aggregation scripts expect them.
MODEL_NAMES = MappingProxyType({"pinn": "PtychoPINN", "baseline": "Baseline", "ptychi": "PtyChi"})

METRICS_CSV_HEADER = ("model", "metric", "amplitude", "phase", "value")

MetricRow = tuple  # (model, metric, amplitude or None, phase or None, value or None)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float | np.floating):
        value = float(value)
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    return str(value)


def write_metrics_csv(rows: Iterable[MetricRow], path) -> Path:
    """Write the tidy ``model,metric,amplitude,phase,value`` table.

    Component metrics fill ``amplitude`` and ``phase``; scalar quantities (timings, shifts)
    fill ``value``. Infinite PSNR is written as ``inf``.
    """
    path = Path(path)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(METRICS_CSV_HEADER)
        for row in rows:
            if len(row) != 5:
                raise ValueError(f"metric row must have 5 fields, got {row!r}")
            writer.writerow([row[0], row[1], *(_cell(v) for v in row[2:])])
    return path


def read_metrics_csv(path) -> list[dict]:
    """Read ``comparison_metrics.csv`` back; empty cells become None, numbers floats."""
    out = []
    with Path(path).open(newline="") as handle:
        for record in csv.DictReader(handle):
            parsed = dict(record)
            for key in ("amplitude", "phase", "value"):
                parsed[key] = float(record[key]) if record[key] != "" else None
            out.append(parsed)
    return out


def to_jsonable(value):
    """Turn NumPy scalars/arrays, complex numbers, paths and non-finite floats into JSON."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, complex | np.complexfloating):
        return {"real": float(value.real), "imag": float(value.imag)}
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        value = float(value)
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(data, path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(to_jsonable(data), indent=2, sort_keys=False) + "\n")
    return path


FRC_CSV_HEADER = (
    "model", "component", "kind", "ring", "frequency_nyquist", "n_pixels", "frc", "threshold_halfbit", "threshold_1bit"
)
#: What each FRC kind is, for figure labels.
FRC_KIND_LABELS = MappingProxyType(
    {
        "ground_truth": "FRC against ground truth",
        "half_set": "half-set FRC (two disjoint halves, no ground truth)",
    }
)


def write_frc_csv(curves: Mapping[str, Mapping[str, Mapping[str, Mapping]]], path) -> Path:
    """Write FRC curves in long form:
    ``model,component,kind,ring,frequency_nyquist,n_pixels,frc,threshold_halfbit,threshold_1bit``.

    ``curves[kind][model][component]`` holds arrays ``frc``, ``frequency_nyquist``,
    ``n_pixels`` (Fourier pixels per ring) and, for half-set curves, ``thresholds``
    (``"halfbit"``, ``"1bit"``: the information curves the cut-offs used, per ring). ``kind``
    is ``"ground_truth"`` (FRC of an image against the ground truth, whose resolution is the
    0.5 crossing; no threshold columns) or ``"half_set"`` (two images of one arm from disjoint
    halves of the scan; 1/7, 1/2-bit and 1-bit thresholds).
    """
    path = Path(path)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(FRC_CSV_HEADER)
        for kind, by_model in curves.items():
            for model, components in by_model.items():
                for component, curve in components.items():
                    frc = np.asarray(curve["frc"], dtype=float)
                    freq = np.asarray(curve["frequency_nyquist"], dtype=float)
                    n_pixels = np.asarray(curve["n_pixels"], dtype=np.int64)
                    thresholds = curve.get("thresholds") or {}
                    half = thresholds.get("halfbit")
                    one = thresholds.get("1bit")
                    for ring in range(len(frc)):
                        writer.writerow(
                            [model, component, curve.get("kind", kind), ring, _cell(freq[ring]), int(n_pixels[ring]),
                             _cell(frc[ring]), "" if half is None else _cell(float(half[ring])),
                             "" if one is None else _cell(float(one[ring]))]
                        )
    return path


def write_images_npz(images: Mapping[str, np.ndarray], path, *, masks: Mapping[str, np.ndarray] | None = None) -> Path:
    """Save complex images as ``<name>_complex``, ``<name>_amplitude`` and ``<name>_phase``,
    and boolean ``masks`` under their own names."""
    arrays = {name: np.asarray(mask, dtype=bool) for name, mask in (masks or {}).items()}
    for name, image in images.items():
        image = np.asarray(image)
        arrays[f"{name}_complex"] = image.astype(np.complex64)
        arrays[f"{name}_amplitude"] = np.abs(image).astype(np.float32)
        arrays[f"{name}_phase"] = np.angle(image).astype(np.float32)
    path = Path(path)
    np.savez_compressed(path, **arrays)
    return path


def plot_comparison(images: Mapping[str, np.ndarray], truth: np.ndarray | None, region: np.ndarray, path, *, title: str = "") -> Path:
    """Amplitude and phase rows, a column per model and the ground truth; with a ground
    truth, two more rows of absolute error maps. Images are cropped to the scanned region."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from ..imaging.geometry import mask_bbox

    box = mask_bbox(region)
    columns = dict(images)
    if truth is not None:
        columns["Ground truth"] = truth
    n_rows = 4 if truth is not None else 2
    n_cols = len(columns)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.0 * n_cols, 2.8 * n_rows), squeeze=False)
    amp_ref = np.abs(truth[box]) if truth is not None else None
    phase_ref = np.angle(truth[box]) if truth is not None else None
    amp_limits = (
        (float(amp_ref.min()), float(amp_ref.max())) if amp_ref is not None else None
    )
    phase_limits = (
        (float(phase_ref.min()), float(phase_ref.max())) if phase_ref is not None else None
    )
    error_limits = [None, None]
    if truth is not None:
        # One colour scale per error row, shared by every model, so the maps compare.
        for image in images.values():
            crop = np.where(region, image, np.nan)[box]
            amp_err = np.nanmax(np.abs(np.abs(crop) - amp_ref))
            phase_err = np.nanmax(np.abs(np.angle(np.exp(1j * (np.angle(crop) - phase_ref)))))
            error_limits[0] = max(error_limits[0] or 0.0, float(amp_err))
            error_limits[1] = max(error_limits[1] or 0.0, float(phase_err))
    for col, (name, image) in enumerate(columns.items()):
        crop = np.where(region, image, np.nan)[box]
        amp, phase = np.abs(crop), np.angle(crop)
        shown = [
            (amp, "amplitude", "gray", amp_limits),
            (phase, "phase (rad)", "twilight", phase_limits),
        ]
        if truth is not None:
            shown += [
                (np.abs(amp - amp_ref), "|amplitude error|", "magma", (0.0, error_limits[0] or 1.0)),
                (np.abs(np.angle(np.exp(1j * (phase - phase_ref)))), "|phase error| (rad)", "magma", (0.0, error_limits[1] or 1.0)),
            ]
        for row, (data, label, cmap, limits) in enumerate(shown):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(label)
            if name == "Ground truth" and row >= 2:
                ax.axis("off")
                continue
            vmin, vmax = limits if limits else (None, None)
            handle = ax.imshow(data, cmap=cmap, vmin=vmin, vmax=vmax)
            if row == 0:
                ax.set_title(name)
            fig.colorbar(handle, ax=ax, fraction=0.046, pad=0.04)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_frc(curves: Mapping[str, Mapping[str, Mapping[str, Mapping]]], path) -> Path:
    """FRC curves, a row per kind (``curves[kind][model][component]``), amplitude and phase
    side by side.

    Against ground truth: the 0.5 threshold that defines the resolution against a noise-free
    reference (Rosenthal & Henderson 2003). Half-set: the fixed 1/7 threshold and the 1/2-bit
    and 1-bit information curves (van Heel & Schatz 2005), which depend on the ring's size.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    components = ("amplitude", "phase")
    kinds = [kind for kind in ("ground_truth", "half_set") if curves.get(kind)]
    fig, axes = plt.subplots(len(kinds), 2, figsize=(11, 4 * len(kinds)), squeeze=False)
    for row, kind in enumerate(kinds):
        for ax, component in zip(axes[row], components, strict=True):
            thresholds = None
            for model, by_component in curves[kind].items():
                curve = by_component.get(component)
                if curve is None:
                    continue
                freq = np.asarray(curve["frequency_nyquist"], dtype=float)
                ax.plot(freq, curve["frc"], label=model)
                if thresholds is None and curve.get("thresholds"):
                    thresholds = (freq, curve["thresholds"])
            if kind == "ground_truth":
                ax.axhline(0.5, color="gray", ls="--", lw=1, label="0.5 (resolution vs ground truth)")
            else:
                ax.axhline(1 / 7, color="gray", ls="--", lw=1, label="1/7")
                if thresholds is not None:
                    freq, table = thresholds
                    ax.plot(freq, table["halfbit"], color="k", ls=":", lw=1, label="1/2-bit")
                    ax.plot(freq, table["1bit"], color="k", ls="-.", lw=1, label="1-bit")
            ax.set_xlabel("spatial frequency (fraction of Nyquist)")
            ax.set_ylabel(FRC_KIND_LABELS[kind].split(" (")[0])
            ax.set_title(f"{FRC_KIND_LABELS[kind]}, {component}", fontsize=10)
            ax.set_ylim(-0.1, 1.05)
            ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def file_sha256(path, chunk_bytes: int = 1 << 20) -> str:
    """SHA-256 of a file; of every file (sorted by relative path) for a directory."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with file.open("rb") as handle:
            while block := handle.read(chunk_bytes):
                digest.update(block)
    return digest.hexdigest()


def environment_versions() -> dict[str, str]:
    """Versions of Python and the numerical packages that are already imported or importable
    cheaply (TensorFlow and torch only if the run imported them)."""
    from importlib import metadata

    from .. import __version__

    versions = {"compare_models": __version__, "python": sys.version.split()[0], "platform": platform.platform()}
    for package in ("numpy", "scipy", "scikit-image", "h5py", "keras", "tensorflow", "torch", "ptychi"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def format_metrics_table(rows: Iterable[MetricRow], metrics=("mae", "mse", "psnr", "ssim", "ms_ssim", "ms_ssim_scales", "frc50")) -> str:
    """A plain-text table of the component metrics: one line per model and metric."""
    rows = [r for r in rows if r[1] in metrics]
    lines = [f"{'model':<12}{'metric':<16}{'amplitude':>14}{'phase':>14}"]
    for model, metric, amplitude, phase, _ in rows:
        lines.append(f"{model:<12}{metric:<16}{_fmt(amplitude):>14}{_fmt(phase):>14}")
    return "\n".join(lines)


#: Titles of the two printed tables, so that neither kind of number is read as the other.
GROUND_TRUTH_TABLE_TITLE = (
    "against ground truth (frc50: FRC against the truth at 0.5, Rosenthal & Henderson 2003):"
)
HALF_SET_TABLE_TITLE = (
    "half-set FRC (two images of each arm from disjoint halves of the scan, no ground truth "
    "needed; 1/7, 1/2-bit and 1-bit thresholds, van Heel & Schatz 2005), fraction of Nyquist:"
)

#: Half-set rows of the printed table, with the label each carries.
HALF_SET_TABLE_ROWS = (
    ("halfset_frc1over7", "1/7"),
    ("halfset_frc_halfbit", "1/2-bit"),
    ("halfset_frc_1bit", "1-bit"),
)


def format_half_set_table(rows: Iterable[MetricRow]) -> str:
    """A plain-text table of the half-set FRC cut-offs (fraction of Nyquist), one line per
    model and threshold, and each model's coverage: labelled so that none can be read as a
    number against ground truth."""
    rows = list(rows)
    labels = dict(HALF_SET_TABLE_ROWS)
    lines = [f"{'model':<12}{'half-set FRC cut-off':<32}{'amplitude':>14}{'phase':>14}"]
    for model, metric, amplitude, phase, _ in rows:
        if metric in labels:
            lines.append(f"{model:<12}{metric + ' (' + labels[metric] + ')':<32}{_fmt(amplitude):>14}{_fmt(phase):>14}")
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
            f"{split.get('n_positions')} positions); half 2 registered onto half 1 (shift, phase offset/ramp, "
            "amplitude scale); thresholds 1/7, 1/2-bit and 1-bit (van Heel & Schatz 2005)"
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
        lines.append(f"  {name}: half-set resolution (fraction of Nyquist) " + "; ".join(cut))
    return lines
