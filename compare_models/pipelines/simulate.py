"""The simulate job: a dataset (or a train/test pair) written to NPZ files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..io.dataset import Dataset
from ..io.npz import save_dataset
from ..study.simulator import SimulationConfig, simulate_dataset, simulate_split

__all__ = ["run_simulate", "split_paths", "describe_dataset"]


def split_paths(out) -> tuple[Path, Path]:
    """``data.npz`` -> (``data_train.npz``, ``data_test.npz``)."""
    out = Path(out)
    return out.with_name(f"{out.stem}_train.npz"), out.with_name(f"{out.stem}_test.npz")


def run_simulate(config: SimulationConfig, out, *, split: str | None = None) -> dict[str, Path]:
    """Simulate per ``config``; write one file at ``out`` or, with a split, a train and a test
    file beside it (:func:`split_paths`). Returns the written paths by role.

    ``split`` ("y" or "objects"; see :mod:`compare_models.study.simulator`) replaces
    ``config.split`` when given.
    """
    if split is not None:
        config = dataclasses.replace(config, split=split)
    config = config.validate()
    if config.split is None:
        return {"data": save_dataset(simulate_dataset(config), out)}
    train, test = simulate_split(config)
    train_path, test_path = split_paths(out)
    return {"train": save_dataset(train, train_path), "test": save_dataset(test, test_path)}


def describe_dataset(dataset: Dataset) -> str:
    """A few human-readable lines about a dataset."""
    lines = [
        f"positions      {dataset.n_positions}",
        f"pattern size   {dataset.patch_size} x {dataset.patch_size}",
        f"dose           {dataset.measured_dose:.4g} photons/pattern measured"
        + (f" ({dataset.nominal_dose:.4g} nominal)" if dataset.nominal_dose else "")
        if dataset.diffraction_in_counts
        else f"dose           {dataset.dose_summary}",
    ]
    if dataset.object_truth is not None:
        lines.append(f"object         {dataset.object_truth.shape[0]} x {dataset.object_truth.shape[1]}")
    record = dataset.metadata.get("object") or {}
    if isinstance(record, dict) and record.get("n_objects"):
        lines.append(
            f"generated      {record['n_objects']} objects ({record.get('family')}) of {record.get('size')} px, "
            f"feature size {record.get('feature_size_px'):.3g} px"
        )
    x, y = dataset.positions_xy[:, 0], dataset.positions_xy[:, 1]
    lines.append(f"scan extent    x {x.min():.1f}..{x.max():.1f}, y {y.min():.1f}..{y.max():.1f} px")
    return "\n".join(lines)
