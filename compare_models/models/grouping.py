"""Neighbour groups for gridsize > 1: each scan position with its nearest neighbours.

A model with gridsize g sees C = g² diffraction patterns at once. Every scan position seeds
exactly one group, so there are as many groups as positions and a prediction can return one
patch per position (the seed's).

On an irregular scan (holes, jitter) a seed's nearest neighbours can spread far around it; the
PINN places each member inside a region of margin ``pad`` around the group centre, so
:func:`fit_groups` re-forms any group whose members reach beyond ``pad`` from among the seed's
nearest candidates, keeping the combination with the smallest spread.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["group_neighbours", "group_offsets", "centred_spread", "fit_groups", "GroupFitError"]

EXTRA_CANDIDATES = 8  # fit_groups searches the seed's C - 1 + this many nearest positions


class GroupFitError(ValueError):
    """No choice of neighbours keeps a group within the margin."""


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


def centred_spread(positions_xy, groups) -> np.ndarray:
    """Per group, the largest |x| or |y| offset of a member from the group's mean position,
    (M,) float64 in pixels (the margin the group needs)."""
    members = np.asarray(positions_xy, dtype=np.float64)[groups]
    offsets = members - members.mean(axis=1, keepdims=True)
    return np.abs(offsets).max(axis=(1, 2)) if offsets.size else np.zeros(len(groups))


def fit_groups(positions_xy, groups, max_offset: float, *, n_candidates: int | None = None) -> tuple[np.ndarray, int]:
    """Re-form the groups whose members lie farther than ``max_offset`` from their centre.

    Parameters
    ----------
    positions_xy : ndarray (M, 2)
        Scan positions, object pixels.
    groups : ndarray (M, C) int
        Groups from :func:`group_neighbours`, seed first.
    max_offset : float
        Margin in pixels: every member's |x| and |y| offset from its group's mean position must
        not exceed it.
    n_candidates : int, optional
        Candidates searched per re-formed group (default C - 1 + ``EXTRA_CANDIDATES``).

    Returns
    -------
    (ndarray (M, C) int64, int)
        The groups (unchanged rows where they already fit; seed still first) and the number
        re-formed. A re-formed group takes, among every choice of C - 1 companions from the
        seed's nearest candidates, the one with the smallest spread (:func:`centred_spread`);
        ties go to the smaller summed distance from the seed, then to the earlier choice.

    Raises
    ------
    GroupFitError
        When no choice fits, naming the seed, its position and the smallest spread found.
    """
    positions_xy = np.asarray(positions_xy, dtype=np.float64)
    groups = np.array(groups, dtype=np.int64, copy=True)
    m, c = groups.shape
    spread = centred_spread(positions_xy, groups)
    bad = np.flatnonzero(spread > max_offset + 1e-9)
    if c == 1 or bad.size == 0:
        return groups, 0
    k = min(m - 1, (c - 1 + EXTRA_CANDIDATES) if n_candidates is None else int(n_candidates))
    _, neighbours = cKDTree(positions_xy).query(positions_xy[bad], k=k + 1)
    combos = np.array(list(itertools.combinations(range(k), c - 1)), dtype=np.int64)
    for row, seed in enumerate(bad):
        candidates = neighbours[row][neighbours[row] != seed][:k]
        if len(candidates) == k:
            chosen = candidates[combos]
        else:  # the seed was not among its own nearest (duplicated positions)
            chosen = np.array(list(itertools.combinations(candidates, c - 1)), dtype=np.int64)
        members = np.concatenate([np.full((len(chosen), 1), seed), chosen], axis=1)
        spreads = centred_spread(positions_xy, members)
        distance = np.hypot(*(positions_xy[chosen] - positions_xy[seed]).transpose(2, 0, 1)).sum(axis=1)
        best = np.lexsort((np.arange(len(members)), np.round(distance, 9), np.round(spreads, 9)))[0]
        if spreads[best] > max_offset + 1e-9:
            x, y = positions_xy[seed]
            raise GroupFitError(
                f"no group of {c} around scan position {seed} at (x={x:.2f}, y={y:.2f}) fits a "
                f"margin of {max_offset:g} px: its tightest group spreads {spreads[best]:.2f} px"
            )
        groups[seed] = members[best]
    return groups, int(bad.size)
