"""Inputs of a PyTorch-backend PtychoPINN network, and which scan position each output is.

The network maps C = g² diffraction patterns (channel c = member c of a group) to C object
patches, patch c being the object at member c's scan position; it is given no positions.

Scale factor
------------
The input is ``f · amplitude`` with ONE factor per dataset,
``f = sqrt((N/2)² / mean over the scan's patterns of Σ amp²)``, as PtychoPINN computes it from
the test data (``ptycho_torch/inference.py`` ``_training_normalization_scale``; its workflow
path takes the same mean over its grouped patterns, which here are every pattern once). The
bundle's ``intensity_scale`` is a training quantity (the Poisson loss) and is not applied.

Groups: every position exactly once
-----------------------------------
For gridsize 1 each position is its own group. For gridsize g > 1 the positions are
*partitioned* into groups of C neighbours (:func:`partition_groups`), so that every scan
position is a member of exactly one group and gets exactly one patch: the channel of its own
pattern, placed at its own position. Groups are formed greedily in the dataset's order: the
first position not yet grouped takes its C − 1 nearest positions not yet grouped (ties by
index). When fewer than C positions are left, the last group is filled up with the nearest
already-grouped positions, whose patches are computed and dropped (``valid`` False). Nothing is
random; the same positions always give the same groups, whatever the batch size.

PtychoPINN's own torch paths differ (README, "Coming from PtychoPINN"): its workflow draws
overlapping groups, averages each group's C patches and places the mean at the group's centre;
its command line copies one pattern into all C channels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["TorchInputs", "partition_groups", "scale_factor", "prepare_torch_inputs"]


def scale_factor(amplitude) -> np.float32:
    """``float32(sqrt((N/2)² / mean Σ amp²))`` over every pattern of ``amplitude`` (M, N, N),
    read by chunks when lazy (one pass; each pattern's sum in float64)."""
    from ...io.lazy import iter_chunks

    amp = amplitude if hasattr(amplitude, "ndim") else np.asarray(amplitude)
    if amp.ndim != 3 or amp.shape[1] != amp.shape[2]:
        raise ValueError(f"expected (M, N, N) amplitudes, got {tuple(amp.shape)}")
    total = 0.0
    for _start, chunk in iter_chunks(amp):
        rows = np.asarray(chunk).reshape(len(chunk), -1)
        # float64 sums without a float64 copy of the chunk (12x faster than astype, measured)
        total += float(np.einsum("ij,ij->i", rows, rows, dtype=np.float64).sum())
    mean = total / max(1, amp.shape[0])
    if not (np.isfinite(mean) and mean > 0):
        raise ValueError(f"mean pattern energy must be finite and > 0, got {mean}")
    return np.float32(np.sqrt((amp.shape[1] / 2) ** 2 / mean))


def partition_groups(positions_xy, channels: int, *, candidates: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Every scan position in exactly one group of ``channels`` neighbours (module docstring).

    Parameters
    ----------
    positions_xy : ndarray (M, 2)
        Scan positions, object pixels.
    channels : int
        C, members per group.
    candidates : int
        Nearest positions looked at first for each seed (more are fetched when these are all
        grouped already); affects speed, not the result.

    Returns
    -------
    groups : ndarray (G, C) int64
        Members of each group, G = ceil(M / C); channel c of group k is position
        ``groups[k, c]``; a seed is channel 0 of its group.
    valid : ndarray (G, C) bool
        False for the fillers of the last group (positions already in another group).

    Notes
    -----
    Every position appears exactly once among the valid members: ``np.sort(groups[valid])``
    is ``arange(M)``.
    """
    positions = np.asarray(positions_xy, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 2:
        raise ValueError(f"positions_xy must have shape (M, 2), got {positions.shape}")
    m, c = positions.shape[0], int(channels)
    if c < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    if c == 1:
        return np.arange(m, dtype=np.int64)[:, None], np.ones((m, 1), bool)
    if m < c:
        raise ValueError(f"groups of {c} need at least {c} scan positions, got {m}")
    tree = cKDTree(positions)
    first_k = min(m, max(int(candidates), c + 1))
    nearest = _nearest_ordered(tree, positions, first_k)
    grouped = np.zeros(m, bool)
    n_groups = -(-m // c)
    groups = np.empty((n_groups, c), np.int64)
    valid = np.ones((n_groups, c), bool)
    row = 0
    radius = np.round(np.hypot(*(positions - positions.mean(axis=0)).T), 9)
    for seed in np.lexsort((np.arange(m), -radius)):  # the rim first, ties by index
        if grouped[seed]:
            continue
        order = nearest[seed]
        free = order[~grouped[order]]
        k = first_k
        while free.size < c and k < m:  # all near ones taken: look farther
            k = min(m, 4 * k)
            _, farther = tree.query(positions[seed], k=k)
            order = _by_distance(positions, seed, np.asarray(farther).ravel())
            free = order[~grouped[order]]
        members = free[:c]
        grouped[members] = True
        if members.size < c:  # the last group: fill with the nearest grouped positions
            fill = order[~np.isin(order, members)][: c - members.size]
            valid[row, members.size :] = False
            members = np.concatenate([members, fill])
        groups[row] = members
        row += 1
    return groups[:row], valid[:row]


def _nearest_ordered(tree, positions, k):
    """(M, k) nearest positions of every position, by distance then index, itself first."""
    distance, index = tree.query(positions, k=k)
    distance, index = np.asarray(distance).reshape(len(positions), -1), np.asarray(index).reshape(len(positions), -1)
    distance = np.round(distance, 9)
    distance[index == np.arange(len(positions))[:, None]] = -1.0
    return np.take_along_axis(index, np.lexsort((index, distance), axis=-1), axis=1).astype(np.int64)


def _by_distance(positions, seed, candidates):
    """``candidates`` ordered by distance from ``seed``, ties by index; the seed first."""
    candidates = np.asarray(candidates, np.int64)
    distance = np.hypot(*(positions[candidates] - positions[seed]).T)
    distance[candidates == seed] = -1.0
    return candidates[np.lexsort((candidates, np.round(distance, 9)))]


@dataclass(frozen=True, eq=False)
class TorchInputs:
    """A dataset's inputs for a PyTorch-backend network, built a chunk of groups at a time.

    Attributes
    ----------
    groups : ndarray (G, C) int64
        :func:`partition_groups`.
    valid : ndarray (G, C) bool
        Which member patches are kept (each scan position exactly once).
    positions_xy : ndarray (M, 2) float64
        The dataset's scan positions: where member p's patch sits.
    factor : numpy.float32
        :func:`scale_factor`.
    amplitude : array-like (M, N, N)
        The dataset's diffraction amplitudes (perhaps lazy).
    details : dict
        JSON-ready description for provenance.
    """

    groups: np.ndarray
    valid: np.ndarray
    positions_xy: np.ndarray
    factor: np.float32
    amplitude: object = field(repr=False)
    details: dict = field(default_factory=dict)

    @property
    def n_groups(self) -> int:
        return int(self.groups.shape[0])

    @property
    def n_positions(self) -> int:
        return int(self.positions_xy.shape[0])

    def build(self, group_indices) -> np.ndarray:
        """``factor · amplitude[groups[group_indices]]`` as (n, C, N, N) float32 (channel c =
        member c)."""
        members = self.groups[np.asarray(group_indices, np.int64)]
        rows = np.asarray(self.amplitude[members], dtype=np.float32)  # (n, C, N, N), only these rows
        return self.factor * rows


def prepare_torch_inputs(dataset, channels: int) -> TorchInputs:
    """The groups and the scale factor of ``dataset`` for a network of C = ``channels``."""
    positions = np.asarray(dataset.positions_xy, dtype=np.float64)
    groups, valid = partition_groups(positions, channels)
    factor = scale_factor(dataset.diffraction_amplitude)
    details = {
        "normalisation": "PtychoPINN (PyTorch backend): f * amplitude, f = sqrt((N/2)^2 / mean over "
        "the scan's patterns of sum amplitude^2); intensity_scale not applied",
        "normalization_factor": float(factor),
        "grouping": (
            "one group per scan position" if channels == 1 else
            f"every scan position in exactly one group of {channels} neighbours (greedy from the rim "
            "inwards: a position and its nearest ungrouped positions); channel c = member c"
        ),
        "n_groups": int(groups.shape[0]),
        "n_filler_members": int((~valid).sum()),
        "patch_position": "each channel at its own member's scan position",
    }
    return TorchInputs(groups, valid, positions, factor, dataset.diffraction_amplitude, details)
