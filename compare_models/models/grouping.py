"""Neighbour groups for gridsize > 1: each scan position with its nearest neighbours.

A model with gridsize g sees C = g² diffraction patterns at once. Every scan position seeds
exactly one group, so there are as many groups as positions and a prediction can return one
patch per position (the seed's).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["group_neighbours", "group_offsets"]


def group_neighbours(positions_xy, gridsize: int, *, n_candidates: int | None = None, seed: int = 0) -> np.ndarray:
    """Indices (M, C) of a seed position and C - 1 of its nearest neighbours.

    Parameters
    ----------
    positions_xy : ndarray (M, 2)
        Scan positions in object pixels.
    gridsize : int
        g; groups have C = g² members. g = 1 gives ``arange(M)[:, None]``.
    n_candidates : int, optional
        K: the C - 1 companions are drawn without replacement from the K - 1 nearest other
        positions (K >= C). Default K = C, which takes the nearest C - 1 deterministically.
    seed : int
        Seed of the draw when K > C. The same positions, K and seed give the same groups.

    Returns
    -------
    ndarray (M, C) int64
        Row i starts with i (the seed); companions follow by increasing distance.

    Notes
    -----
    Ties in distance are broken by index, so the result does not depend on the platform.
    """
    positions_xy = np.asarray(positions_xy, dtype=np.float64)
    if positions_xy.ndim != 2 or positions_xy.shape[1] != 2:
        raise ValueError(f"positions_xy must have shape (M, 2), got {positions_xy.shape}")
    if gridsize < 1:
        raise ValueError(f"gridsize must be >= 1, got {gridsize}")
    m = positions_xy.shape[0]
    c = gridsize * gridsize
    if c == 1:
        return np.arange(m, dtype=np.int64)[:, None]
    k = c if n_candidates is None else int(n_candidates)
    if k < c:
        raise ValueError(f"n_candidates ({k}) must be at least gridsize² ({c})")
    if m < c:
        raise ValueError(f"gridsize {gridsize} needs at least {c} scan positions, got {m}")
    k = min(k, m)
    # Distances to every candidate, then a stable sort by (distance, index).
    tree = cKDTree(positions_xy)
    query_k = min(m, k + 8)  # a margin, so ties at the k-th distance resolve by index
    distance, index = tree.query(positions_xy, k=query_k)
    order = np.lexsort((index, np.round(distance, 9)), axis=1)
    index = np.take_along_axis(index, order, axis=1)
    rng = np.random.default_rng(seed)
    groups = np.empty((m, c), dtype=np.int64)
    for i in range(m):
        others = index[i][index[i] != i][: k - 1]
        if k > c:
            chosen = np.sort(rng.choice(k - 1, size=c - 1, replace=False))
            others = others[chosen]
        groups[i, 0] = i
        groups[i, 1:] = others[: c - 1]
    return groups


def group_offsets(positions_xy, groups) -> np.ndarray:
    """Offsets (M, C, 2) of each member from its group's seed position, object pixels (x, y)."""
    positions_xy = np.asarray(positions_xy, dtype=np.float64)
    members = positions_xy[groups]
    return members - members[:, :1, :]
