"""The reconstruct job: pty-chi on a dataset file, written as ``ptychi_reconstruction.npz``."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from ..data import load_dataset
from ..ptychi_arm import PtychiResult, ReconstructConfig, run_ptychi
from ..ptychi_io import save_reconstruction
from ..simulate import dataset_fingerprint

__all__ = ["RECONSTRUCTION_NAME", "LOSS_NAME", "run_reconstruct", "describe_result"]

RECONSTRUCTION_NAME = "ptychi_reconstruction.npz"
LOSS_NAME = "ptychi_loss.csv"


def run_reconstruct(
    data_path, out_dir, config: ReconstructConfig, *, progress: bool = True
) -> tuple[Path, PtychiResult]:
    """Reconstruct the dataset at ``data_path`` with pty-chi; write the result to ``out_dir``.

    Writes ``ptychi_reconstruction.npz`` (object, probe, algorithm, JSON metadata with the
    canvas's object-frame origin, timings, loss history, versions and the resolved config; see
    :mod:`compare_models.ptychi_io`) and ``ptychi_loss.csv`` (epoch, loss, seconds).

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
