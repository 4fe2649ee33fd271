"""Which object pixels a set of patches reads, and how much of a region they cover.

Used to record what a network was trained on (the union of its training patches' footprints,
kept as row runs) and to measure train/test leakage: the fraction of a scored region that lies
under any training patch (docs/design.md, "A fair comparison": no scored pixel was seen, as ground
truth, by any training sample). :func:`region_holes` finds the holes of a region: what a
coverage fraction does not show (a half-set region at 94 % coverage whose 6 % are a lattice of
holes gives its FRC window the resolution of a sieve).

A patch centred at ``(x, y)`` (object pixels; x column, y row) reads at most the rows
``floor(y - N/2) .. ceil(y + N/2) - 1`` and the columns ``floor(x - N/2) .. ceil(x + N/2) - 1``:
its integer crop (``round(x) - N/2``, N wide; :func:`compare_models.imaging.geometry.split_nearest`)
or a bilinear cut (N + 1 wide) alike. :func:`patch_footprint` uses that bound.
"""

from __future__ import annotations

import numpy as np

__all__ = ["patch_footprint", "mask_to_runs", "runs_to_mask", "fraction_covered", "region_holes"]


def patch_footprint(positions_xy, patch_size: int, shape) -> np.ndarray:
    """Union of the pixels that patches at ``positions_xy`` read, on an (H, W) grid.

    Parameters
    ----------
    positions_xy : array_like (n, 2)
        Patch centres, object pixels (x column, y row).
    patch_size : int
        N.
    shape : tuple (H, W)
        The object grid; parts of patches outside it are dropped.

    Returns
    -------
    ndarray (H, W) bool

    Examples
    --------
    >>> patch_footprint([[4.0, 4.0]], 4, (8, 8)).sum(), patch_footprint([[4.5, 4.0]], 4, (8, 8)).sum()
    (np.int64(16), np.int64(20))
    """
    positions = np.asarray(positions_xy, dtype=np.float64).reshape(-1, 2)
    height, width = (int(s) for s in shape)
    half = patch_size / 2
    first = np.clip(np.floor(positions - half).astype(np.int64), 0, [width, height])
    stop = np.clip(np.ceil(positions + half).astype(np.int64), 0, [width, height])
    diff = np.zeros((height + 1, width + 1), np.int64)
    np.add.at(diff, (first[:, 1], first[:, 0]), 1)
    np.add.at(diff, (first[:, 1], stop[:, 0]), -1)
    np.add.at(diff, (stop[:, 1], first[:, 0]), -1)
    np.add.at(diff, (stop[:, 1], stop[:, 0]), 1)
    return diff.cumsum(axis=0).cumsum(axis=1)[:height, :width] > 0


def mask_to_runs(mask) -> list[list[int]]:
    """Row runs ``[row, start, stop]`` (stop exclusive) of the True pixels of a 2-D mask.

    A compact, JSON-ready record of a footprint: a scan without holes needs one run per row.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    padded = np.zeros((mask.shape[0], mask.shape[1] + 2), np.int8)
    padded[:, 1:-1] = mask
    rows, cols = np.nonzero(np.diff(padded, axis=1))
    # Edges alternate start, stop along each row.
    return [[int(r), int(a), int(b)] for r, a, b in zip(rows[::2], cols[::2], cols[1::2], strict=True)]


def runs_to_mask(runs, shape) -> np.ndarray:
    """Inverse of :func:`mask_to_runs`; raises ``ValueError`` for a run outside ``shape``."""
    height, width = (int(s) for s in shape)
    mask = np.zeros((height, width), bool)
    for run in runs:
        if len(run) != 3:
            raise ValueError(f"a run is [row, start, stop], got {run!r}")
        row, start, stop = (int(v) for v in run)
        if not (0 <= row < height and 0 <= start < stop <= width):
            raise ValueError(f"run {run!r} lies outside a grid of shape {(height, width)}")
        mask[row, start:stop] = True
    return mask


def fraction_covered(region, covered) -> float:
    """Fraction of the True pixels of ``region`` that are also True in ``covered``.

    Raises
    ------
    ValueError
        If the shapes differ or ``region`` holds no pixel.
    """
    region = np.asarray(region, dtype=bool)
    covered = np.asarray(covered, dtype=bool)
    if region.shape != covered.shape:
        raise ValueError(f"region {region.shape} and coverage {covered.shape} have different shapes")
    total = int(region.sum())
    if total == 0:
        raise ValueError("the region holds no pixel")
    return int((region & covered).sum()) / total


def region_holes(region) -> dict:
    """The holes of a region: groups of pixels outside it that it encloses.

    Parameters
    ----------
    region : array_like (H, W) bool

    Returns
    -------
    dict
        ``count`` (number of holes), ``pixels`` (their pixels in all) and ``largest_pixels``
        (the largest hole's), all 0 for a region without holes.

    Notes
    -----
    A hole is a 4-connected group of pixels outside the region that does not reach the grid's
    border through pixels outside the region (:func:`scipy.ndimage.binary_fill_holes`). A
    coverage fraction cannot tell a region that lacks its rim from one riddled with holes; an
    FRC window must fall to zero around every hole, and a window with holes has a broad
    spectrum: its resolution (``window_resolution_nyquist``) was 0.13 of Nyquist on a scan's
    hull and 0.34 with a lattice of 3 x 3 px holes every 12 px (94 % coverage).

    Examples
    --------
    >>> ring = np.ones((7, 7), bool)
    >>> ring[3, 3] = False
    >>> region_holes(ring)
    {'count': 1, 'pixels': 1, 'largest_pixels': 1}
    """
    from scipy import ndimage

    region = np.asarray(region, dtype=bool)
    if region.ndim != 2:
        raise ValueError(f"region must be 2-D, got shape {region.shape}")
    holes = ndimage.binary_fill_holes(region) & ~region
    labels, count = ndimage.label(holes)
    sizes = np.bincount(labels.ravel())[1:]
    return {
        "count": int(count),
        "pixels": int(sizes.sum()) if count else 0,
        "largest_pixels": int(sizes.max()) if count else 0,
    }
