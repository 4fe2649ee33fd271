"""Model inputs as PtychoPINN prepares them (upstream ``ptycho/raw_data.py``, ``loader.py``).

Only for PtychoPINN's own networks; this project's bundles keep their stored scale
(:mod:`compare_models.models.inputs`). Pipeline, for a dataset of M positions::

    groups      = group_neighbours(positions, gridsize)           # (M, C), one per position
    f           = normalization_factor(amplitude, groups)          # ONE factor per dataset
    X           = normalized_group(amplitude, groups[i], f)        # f * amp, (n, N, N, C)
    centroid, local = group_offsets(positions, groups[i])          # (n, 2), (n, 1, 2, C)
    PINN input     : [X * float32(intensity_scale), float32(local)]
    baseline input : X                                              (no intensity scale)
    each predicted patch sits on its group's centroid

Groups: formed, seeded, deterministic
-------------------------------------
Every scan position i seeds exactly one group (so M positions give M groups and M patches).
For gridsize 1 the group is ``[i]``. For gridsize g > 1 the ``neighbor_count`` (7, as upstream's
``compare_models.py``) nearest *other* positions of i are found with a KD-tree, and C = g² of
them are drawn without replacement; the draws come from a private
``numpy.random.RandomState(seed)`` (seed 0), consumed in position order. This is exactly
upstream's ``group_coords`` after ``np.random.seed(0)`` with ``n_groups >= M`` (the reference
fixtures were made that way), but no global random state is read or changed. The same
positions and seed always give the same groups. As upstream, the seed itself is usually not a
member of its group; the group's patch is placed on the group's centroid (the mean of its
members' positions), where upstream's ``reassemble_position`` puts it.

Positions fed to the network (``input_positions``, upstream ``coords_nominal``) are
``group mean - member position`` in [x, y] order, object pixels.

Normalisation
-------------
``f = sqrt((N/2)² / mean_{groups, members} sum_pixels amp²)`` (upstream ``normalize_data``),
over the *grouped* patterns: a position that belongs to several groups counts several times,
so the factor of one dataset differs slightly between gridsize 1 and 2. One factor per
dataset, never per batch.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

__all__ = [
    "NEIGHBOR_COUNT",
    "GROUPING_SEED",
    "group_neighbours",
    "pattern_energy",
    "normalization_factor",
    "normalized_group",
    "group_offsets",
    "pinn_inputs",
    "baseline_inputs",
]

#: Candidates per group (upstream compare_models.py's ``neighbor_count``).
NEIGHBOR_COUNT = 7
#: Seed of the member draw (the reference fixtures' ``np.random.seed(0)``).
GROUPING_SEED = 0


def group_neighbours(positions_xy, gridsize: int, *, neighbor_count: int = NEIGHBOR_COUNT,
                     seed: int = GROUPING_SEED) -> np.ndarray:
    """One group per scan position, members drawn as upstream draws them (module docstring).

    Parameters
    ----------
    positions_xy : ndarray, (M, 2)
        Scan positions, object pixels (x column, y row).
    gridsize : int
        g; groups have C = g² members.
    neighbor_count : int
        K >= C: members are drawn from the K nearest other positions.
    seed : int
        Seed of the private ``RandomState`` used for the draws.

    Returns
    -------
    ndarray, (M, C) int64
        Row i: the members of the group seeded at position i.

    Raises
    ------
    ValueError
        Fewer positions than C, or K < C.
    """
    positions = np.asarray(positions_xy, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 2:
        raise ValueError(f"positions_xy must have shape (M, 2), got {positions.shape}")
    m, c = positions.shape[0], int(gridsize) ** 2
    if gridsize < 1:
        raise ValueError(f"gridsize must be >= 1, got {gridsize}")
    if c == 1:
        return np.arange(m, dtype=np.int64)[:, None]
    if m < c:
        raise ValueError(f"gridsize {gridsize} needs at least {c} scan positions, got {m}")
    if neighbor_count < c:
        raise ValueError(f"neighbor_count={neighbor_count} must be >= gridsize**2={c}")
    rng = np.random.RandomState(seed)  # private generator: no global state
    _distance, neighbours = cKDTree(positions).query(positions, k=min(neighbor_count + 1, m))
    groups = np.empty((m, c), dtype=np.int64)
    for i, row in enumerate(np.atleast_2d(neighbours)):
        # The nearest hit is the position itself; upstream drops it when it has K others.
        row = row[1 : neighbor_count + 1] if len(row) > neighbor_count else row[:neighbor_count]
        if len(row) < c:
            row = np.concatenate([[i], row])
        groups[i] = rng.choice(row, size=c, replace=len(row) < c)
    return groups


def pattern_energy(amplitude) -> np.ndarray:
    """``sum_pixels amp²`` of every pattern, (M,) float64.

    ``amplitude`` may be lazy (:mod:`compare_models.io.lazy`): one pass over row chunks, with
    the same per-pattern sums as the whole array gives.
    """
    from ...io.lazy import iter_chunks

    energy = np.empty(len(amplitude), dtype=np.float64)
    for start, chunk in iter_chunks(amplitude):
        energy[start : start + len(chunk)] = np.sum(np.square(chunk.astype(np.float64)), axis=(1, 2))
    return energy


def normalization_factor(amplitude, groups) -> np.float32:
    """PtychoPINN's per-dataset factor ``sqrt((N/2)² / mean over grouped patterns of sum amp²)``.

    Parameters
    ----------
    amplitude : ndarray or LazyRows, (M, N, N)
        Diffraction amplitudes of the dataset (read once, by chunks, when lazy).
    groups : ndarray, (G, C) int
        Member indices of every group (a position counts once per group it is in).

    Returns
    -------
    numpy.float32
        ``f``; the network input is ``f * amplitude`` (times the intensity scale for the PINN).
    """
    amp = amplitude if hasattr(amplitude, "shape") and hasattr(amplitude, "ndim") else np.asarray(amplitude)
    if amp.ndim != 3 or amp.shape[1] != amp.shape[2]:
        raise ValueError(f"expected (M, N, N) amplitudes, got {tuple(amp.shape)}")
    n = amp.shape[1]
    # Per-pattern energies in one chunked pass, then the mean over the grouped patterns (a
    # pattern in several groups counts several times), as upstream's mean over X[groups].
    mean = float(np.mean(pattern_energy(amp)[np.asarray(groups)]))
    if not (np.isfinite(mean) and mean > 0):
        raise ValueError(f"mean pattern energy must be finite and > 0, got {mean}")
    return np.float32(np.sqrt((n / 2) ** 2 / mean))


def normalized_group(amplitude, members, factor) -> np.ndarray:
    """``float32(factor) * amplitude[members]`` as (n, N, N, C) float32; channel c is member c."""
    grouped = np.moveaxis(amplitude[np.asarray(members)], 1, -1)  # only the members' rows
    return np.float32(factor) * grouped.astype(np.float32, copy=False)


def group_offsets(positions_xy, members) -> tuple[np.ndarray, np.ndarray]:
    """Group centroids and member offsets.

    Parameters
    ----------
    positions_xy : ndarray, (M, 2)
    members : ndarray, (n, C) int

    Returns
    -------
    centroids : ndarray, (n, 2) float64
        Mean [x, y] of each group's members: where the group's patch sits.
    local : ndarray, (n, 1, 2, C) float64
        ``centroid - member position``, axis 2 = [x, y] (upstream ``coords_nominal``); zeros for
        gridsize 1.
    """
    coords = np.asarray(positions_xy, dtype=np.float64)[np.asarray(members)]  # (n, C, 2)
    centroids = coords.mean(axis=1)
    local = np.moveaxis(centroids[:, None, :] - coords, 1, -1)[:, None]  # (n, 1, 2, C)
    return centroids, local


def pinn_inputs(x_normalized, local_offsets, intensity_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """``[X * float32(intensity_scale), float32(local_offsets)]``: the PINN's two inputs."""
    x = np.asarray(x_normalized, dtype=np.float32) * np.float32(intensity_scale)
    return x, np.asarray(local_offsets, dtype=np.float32)


def baseline_inputs(x_normalized) -> np.ndarray:
    """The baseline's input: ``X`` as float32, without the intensity scale."""
    return np.asarray(x_normalized, dtype=np.float32)
