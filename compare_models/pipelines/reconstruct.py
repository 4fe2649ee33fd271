"""The reconstruct job: pty-chi on a dataset file, written as ``ptychi_reconstruction.npz``."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np

from ..io.dataset import dataset_fingerprint
from ..io.dispatch import load_dataset
from ..io.ptychodus import write_product
from ..io.reconstruction import save_reconstruction
from ..study.ptychi_runner import PtychiResult, ReconstructConfig, run_ptychi_jobs

__all__ = [
    "RECONSTRUCTION_NAME",
    "PRODUCT_NAME",
    "LOSS_NAME",
    "HALF_SET_DIR",
    "HALF_SET_NAMES",
    "SPLIT_NAME",
    "run_reconstruct",
    "half_set_paths",
    "describe_result",
]

RECONSTRUCTION_NAME = "ptychi_reconstruction.npz"
PRODUCT_NAME = "ptychi_product.h5"
LOSS_NAME = "ptychi_loss.csv"
#: With ``--half-sets``: the two half-set reconstructions, in this subdirectory of the output.
HALF_SET_DIR = "half_sets"
#: Their file names (each beside its ``_loss.csv`` and ``_product.h5``).
HALF_SET_NAMES = ("ptychi_half1.npz", "ptychi_half2.npz")
#: The split they were made on (method, counts, indices), as JSON.
SPLIT_NAME = "split.json"


def run_reconstruct(
    data_path, out_dir, config: ReconstructConfig, *, progress: bool = True
) -> tuple[Path, PtychiResult]:
    """Reconstruct the dataset at ``data_path`` with pty-chi; write the result to ``out_dir``.

    Writes ``ptychi_reconstruction.npz`` (object, probe, algorithm, JSON metadata with the
    canvas's object-frame origin, timings, loss history, versions and the resolved config; see
    :mod:`compare_models.io.reconstruction`), ``ptychi_loss.csv`` (epoch, loss, seconds) and
    ``ptychi_product.h5``, the same object, probe, positions and losses as a ptychodus product
    on the reconstruction's canvas.

    With ``config.half_sets`` it then reconstructs the two halves of the scan
    (:func:`compare_models.imaging.halfsets.split_half_sets`, ``config.half_set_split``), each
    from its own positions only and with the same settings, into ``half_sets/``:
    ``ptychi_half1.npz`` and ``ptychi_half2.npz`` (the same format and frame as the full
    reconstruction; their metadata's ``half_set`` holds the half, the split method, the
    position indices and the full dataset's fingerprint), a loss CSV and a product for each,
    and ``split.json``. compare-models finds them there (:func:`half_set_paths`). The full and
    the half-set reconstructions run one after another in one pty-chi process
    (:func:`compare_models.study.ptychi_runner.run_ptychi_jobs`): the same numbers as three
    processes, with one start-up.

    Returns
    -------
    path : pathlib.Path
        The reconstruction file.
    result : PtychiResult
    """
    config.validate()
    dataset = load_dataset(data_path)
    out_dir = Path(out_dir)
    if not config.half_sets:
        (result,) = run_ptychi_jobs([dataset], config, progress=progress)
        return _write(out_dir, "ptychi", RECONSTRUCTION_NAME, dataset, result, data_path, {}), result
    from ..imaging.halfsets import split_half_sets

    split = split_half_sets(dataset.positions_xy, config.half_set_split)
    halves = [dataset.subset(indices) for indices in split.halves]
    result, *half_results = run_ptychi_jobs(
        [dataset, *halves], config, progress=progress, labels=["full scan", "half 1", "half 2"]
    )
    path = _write(out_dir, "ptychi", RECONSTRUCTION_NAME, dataset, result, data_path, {})
    _write_half_sets(dataset, split, halves, half_results, out_dir / HALF_SET_DIR, data_path)
    return path, result


def half_set_paths(directory) -> tuple[Path, Path]:
    """The two half-set reconstruction files that ``--half-sets`` writes under ``directory``
    (a reconstruct output directory's ``half_sets/``)."""
    directory = Path(directory)
    return directory / HALF_SET_NAMES[0], directory / HALF_SET_NAMES[1]


def _write_half_sets(dataset, split, halves, results, directory: Path, data_path) -> None:
    """Both halves' reconstructions, each beside its loss CSV and product, and ``split.json``."""
    fingerprint = dataset_fingerprint(dataset)
    record = {
        **split.to_dict(),
        "of_dataset_sha256": fingerprint,
        "position_indices": [split.half1.tolist(), split.half2.tolist()],
    }
    directory.mkdir(parents=True, exist_ok=True)
    parts = zip(split.halves, halves, results, HALF_SET_NAMES, strict=True)
    for number, (indices, half, result, name) in enumerate(parts, start=1):
        meta = {
            "half_set": {
                "half": number,
                "method": split.method,
                "n_positions": int(indices.size),
                "n_positions_total": int(dataset.n_positions),
                "position_indices": indices.tolist(),
                "of_dataset_sha256": fingerprint,
            }
        }
        _write(directory, Path(name).stem, name, half, result, data_path, meta)
    tmp = directory / f".{SPLIT_NAME}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, directory / SPLIT_NAME)


def _write(out_dir: Path, stem: str, name: str, dataset, result: PtychiResult, data_path, extra: dict) -> Path:
    """A reconstruction file, its loss CSV and its ptychodus product in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    metadata = result.metadata()
    metadata.update(data=str(data_path), dataset_sha256=dataset_fingerprint(dataset), **extra)
    loss_path = out_dir / (LOSS_NAME if stem == "ptychi" else f"{stem}_loss.csv")
    tmp = loss_path.with_name(f".{loss_path.name}.{os.getpid()}.tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", "loss", "seconds"])
        times = metadata.get("epoch_times_s") or [""] * len(result.loss_history)
        for epoch, (loss, seconds) in enumerate(zip(result.loss_history, times, strict=True)):
            writer.writerow([epoch, repr(float(loss)), seconds])
    os.replace(tmp, loss_path)
    path = save_reconstruction(
        out_dir / name,
        result.object,
        probe=result.probe,
        algorithm=result.algorithm,
        metadata=metadata,
    )
    # The same result as a ptychodus product, on the reconstruction's own canvas.
    origin = np.asarray(result.canvas_origin_xy, dtype=np.float64)
    write_product(
        out_dir / (PRODUCT_NAME if stem == "ptychi" else f"{stem}_product.h5"),
        result.object,
        probe=result.probe,
        positions_xy=dataset.positions_xy - origin,
        pixel_size_m=dataset.pixel_size_m,
        photon_energy_eV=dataset.metadata.get("photon_energy_eV"),
        detector_object_distance_m=dataset.metadata.get("detector_object_distance_m"),
        name=f"pty-chi {result.algorithm}" + ("" if stem == "ptychi" else f" ({stem})"),
        comments=f"compare_models reconstruct of {data_path}" + ("" if stem == "ptychi" else f", {stem}"),
        loss_values=np.asarray(result.loss_history, dtype=np.float64),
    )
    return path


def describe_result(result: PtychiResult) -> str:
    """A few human-readable lines about a finished reconstruction."""
    ox, oy = result.canvas_origin_xy
    height, width = result.object.shape
    loss = result.loss_history
    return "\n".join(
        [
            f"algorithm      {result.algorithm} on {result.info.get('device', '?')}",
            f"epochs         {len(loss)}, loss {loss[0]:.4g} -> {loss[-1]:.4g}",
            f"wall time      {result.wall_time_s:.2f} s reconstruction, "
            f"{result.total_wall_time_s:.2f} s total",
            f"canvas         {height} x {width} at object (x, y) = ({ox}, {oy})",
        ]
    )
