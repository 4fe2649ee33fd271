"""Network inputs built from a dataset, a batch of indices at a time (arrays in, arrays out).

* Normalised amplitude: measured amplitude divided by the dataset's *intensity scale*
  ``s = sqrt(mean counts per pixel)`` so inputs are O(1). The scale of the training data is
  stored in the bundle and applied unchanged at inference.
* Groups (gridsize g, C = g²): :func:`compare_models.models.grouping.group_neighbours`, one group per
  scan position with the seed first. Offsets are each member's position minus the group centre
  (the mean of the members' positions), (x, y) in object pixels.
"""

from __future__ import annotations

import numpy as np

from ..errors import DatasetError
from .grouping import group_neighbours

__all__ = [
    "intensity_scale",
    "make_groups",
    "group_offsets_centred",
    "check_offsets_fit",
    "pinn_inputs",
    "group_counts",
    "baseline_inputs",
]


def intensity_scale(amplitude) -> float:
    """``sqrt(mean(amplitude²))``: root of the mean count per detector pixel (photons)."""
    value = float(np.sqrt(np.mean(np.square(amplitude, dtype=np.float64))))
    if not value > 0:
        raise DatasetError("diffraction amplitudes are all zero; cannot normalise the inputs")
    return value


def make_groups(positions_xy, gridsize: int, *, n_neighbours: int | None = None, seed: int = 0) -> np.ndarray:
    """(M, C) member indices, seed first (see :func:`compare_models.models.grouping.group_neighbours`)."""
    try:
        return group_neighbours(positions_xy, gridsize, n_candidates=n_neighbours, seed=seed)
    except ValueError as exc:
        raise DatasetError(str(exc)) from exc


def group_offsets_centred(positions_xy, groups) -> np.ndarray:
    """Offsets (M, C, 2) float64 of each member from its group's mean position, (x, y) px."""
    members = np.asarray(positions_xy, dtype=np.float64)[groups]
    return members - members.mean(axis=1, keepdims=True)


def check_offsets_fit(offsets, pad: int) -> None:
    """Raise :class:`DatasetError` if a member's offset exceeds the model's region margin."""
    worst = float(np.abs(offsets).max()) if offsets.size else 0.0
    if worst > pad:
        raise DatasetError(
            f"a group member lies {worst:.2f} px from its group centre, beyond the model's "
            f"region margin of {pad} px; use a denser scan, fewer neighbours or a larger "
            "region_pad"
        )


def pinn_inputs(amplitude, positions_xy, groups, indices, scale: float):
    """Inputs of the PINN for the groups ``indices``.

    Returns
    -------
    x : ndarray (n, N, N, C) float32
        Member amplitudes divided by ``scale``; channel c is member c (seed first).
    offsets : ndarray (n, C, 2) float32
        Offsets from the group centre, (x, y) object pixels.
    """
    members = groups[indices]
    x = np.moveaxis(amplitude[members], 1, -1) / np.float32(scale)
    offsets = group_offsets_centred(positions_xy, members)
    return x.astype(np.float32), offsets.astype(np.float32)


def group_counts(amplitude, groups, indices) -> np.ndarray:
    """Measured counts (amplitude²) of the groups ``indices``, (n, N, N, C) float32."""
    members = groups[indices]
    return np.square(np.moveaxis(amplitude[members], 1, -1)).astype(np.float32)


def baseline_inputs(amplitude, indices, scale: float) -> np.ndarray:
    """Inputs of the baseline, (n, N, N, 1) float32: amplitudes divided by ``scale``."""
    return (amplitude[indices][..., None] / np.float32(scale)).astype(np.float32)
