"""Writers of plain data to files: CSV, JSON, NPZ, figures, hashes and versions.

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

import numpy as np

from .vocabulary import CHANCE_NAME, FRC_KIND_LABELS

__all__ = [
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
    "FRC_CSV_HEADER",
]

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
    side by side; the half-set curves of iterative arms (a resolution) and of networks (a
    reproducibility, ``meaning`` of their curves) in rows of their own.

    Against ground truth: the 0.5 threshold that defines the resolution against a noise-free
    reference (Rosenthal & Henderson 2003). Half-set: the fixed 1/7 threshold and the 1/2-bit
    and 1-bit information curves (van Heel & Schatz 2005), which depend on the ring's size.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    components = ("amplitude", "phase")
    panels = _frc_panels(curves)
    fig, axes = plt.subplots(len(panels), 2, figsize=(11, 4 * len(panels)), squeeze=False)
    for row, (label, kind, by_model) in enumerate(panels):
        for ax, component in zip(axes[row], components, strict=True):
            thresholds = None
            for model, by_component in by_model.items():
                curve = by_component.get(component)
                if curve is None:
                    continue
                freq = np.asarray(curve["frequency_nyquist"], dtype=float)
                if model == CHANCE_NAME:
                    ax.plot(freq, curve["frc"], color="0.45", ls=(0, (4, 2)), lw=1.5, label=f"{model} (chance)")
                else:
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
            ax.set_title(f"{FRC_KIND_LABELS[label]}, {component}", fontsize=10)
            ax.set_ylim(-0.1, 1.05)
            ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _frc_panels(curves) -> list[tuple[str, str, dict]]:
    """The rows of frc.png, ``(label, kind, {model: curves})``: against ground truth, then the
    half-set FRC of iterative arms (a resolution) and of networks (a reproducibility) apart,
    never on one axis."""
    panels = []
    if curves.get("ground_truth"):
        panels.append(("ground_truth", "ground_truth", curves["ground_truth"]))
    half = curves.get("half_set") or {}
    for meaning, kind in (("resolution", "iterative"), ("reproducibility", "network")):
        group = {model: by_component for model, by_component in half.items()
                 if _meaning(by_component) == meaning}
        if group:
            panels.append((f"half_set/{kind}", "half_set", group))
    return panels


def _meaning(by_component: Mapping) -> str:
    """What a model's half-set curves measure (``meaning`` of its curves; a resolution when
    not recorded)."""
    return next((c.get("meaning") for c in by_component.values() if c.get("meaning")), "resolution")


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
