"""The reconstruct job: pty-chi on a dataset file, written as ``ptychi_reconstruction.npz``."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from ..io.dataset import dataset_fingerprint
from ..io.dispatch import load_dataset
from ..io.ptychodus import write_product
from ..io.reconstruction import save_reconstruction
from ..study.ptychi_runner import PtychiResult, ReconstructConfig, run_ptychi

__all__ = ["RECONSTRUCTION_NAME", "PRODUCT_NAME", "LOSS_NAME", "run_reconstruct", "describe_result"]

RECONSTRUCTION_NAME = "ptychi_reconstruction.npz"
PRODUCT_NAME = "ptychi_product.h5"
LOSS_NAME = "ptychi_loss.csv"


def run_reconstruct(
    data_path, out_dir, config: ReconstructConfig, *, progress: bool = True
) -> tuple[Path, PtychiResult]:
    """Reconstruct the dataset at ``data_path`` with pty-chi; write the result to ``out_dir``.

    Writes ``ptychi_reconstruction.npz`` (object, probe, algorithm, JSON metadata with the
    canvas's object-frame origin, timings, loss history, versions and the resolved config; see
    :mod:`compare_models.io.reconstruction`), ``ptychi_loss.csv`` (epoch, loss, seconds) and
    ``ptychi_product.h5``, the same object, probe, positions and losses as a ptychodus product
    on the reconstruction's canvas.

    Returns
    -------
    path : pathlib.Path
        The reconstruction file.
    result : PtychiResult
    """
    config.validate()
    dataset = load_dataset(data_path)
    result = run_ptychi(dataset, config, progress=progress)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metadata = result.metadata()
    metadata.update(data=str(data_path), dataset_sha256=dataset_fingerprint(dataset))
    loss_path = out_dir / LOSS_NAME
    tmp = loss_path.with_name(f".{loss_path.name}.{os.getpid()}.tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", "loss", "seconds"])
        times = metadata.get("epoch_times_s") or [""] * len(result.loss_history)
        for epoch, (loss, seconds) in enumerate(zip(result.loss_history, times, strict=True)):
            writer.writerow([epoch, repr(float(loss)), seconds])
    os.replace(tmp, loss_path)
    path = save_reconstruction(
        out_dir / RECONSTRUCTION_NAME,
        result.object,
        probe=result.probe,
        algorithm=result.algorithm,
        metadata=metadata,
    )
    # The same result as a ptychodus product, on the reconstruction's own canvas.
    origin = np.asarray(result.canvas_origin_xy, dtype=np.float64)
    write_product(
        out_dir / PRODUCT_NAME,
        result.object,
        probe=result.probe,
        positions_xy=dataset.positions_xy - origin,
        pixel_size_m=dataset.pixel_size_m,
        photon_energy_eV=dataset.metadata.get("photon_energy_eV"),
        detector_object_distance_m=dataset.metadata.get("detector_object_distance_m"),
        name=f"pty-chi {result.algorithm}",
        comments=f"compare_models reconstruct of {data_path}",
        loss_values=np.asarray(result.loss_history, dtype=np.float64),
    )
    return path, result


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
