"""The scored region: the one set of pixels on which every arm of a comparison is scored.

docs/design.md, "A fair comparison": every arm is scored on the pixels inside the scan's hull where
every arm has data, eroded by the largest applied registration shift plus a margin. The rule
does not depend on any arm's own settings (a stitching crop, say) as long as every arm covers
the hull; an arm that leaves holes shrinks the region for every arm, and
:class:`ScoredRegion` says by how much. Missing data never scores.

Frames and units
----------------
* Masks are (H, W) boolean arrays on the ground-truth pixel grid; x is the column, y the row.
* Scan positions are patch centres in object pixels, x (column) then y (row): the position
  ``(x, y)`` is the centre of object pixel ``(row y, column x)`` (docs/design.md, "Frames and units").
* Shifts and margins are in pixels.

References
----------
.. [1] M. Guizar-Sicairos, S. T. Thurman and J. R. Fienup, "Efficient subpixel image
   registration algorithms," Opt. Lett. 33, 156-158 (2008) (the shifts the erosion allows for).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..errors import RegistrationError
from .geometry import split_positions

__all__ = [
    "REGION_RULE",
    "DEFAULT_MARGIN_PX",
    "ScoredRegion",
    "scanned_region",
    "scan_hull",
    "common_region",
    "erosion_px",
    "erode_mask",
    "scored_region",
]

#: The rule, in words, as metrics.json records it.
REGION_RULE = (
    "pixels whose centre lies in the convex hull of the scan positions, where every arm has "
    "data (its valid mask, and a non-zero value), eroded (chessboard distance, the grid's "
    "border counting as outside) by ceil(largest applied registration shift) + margin pixels"
)

#: Pixels kept between the scored region and any pixel that a sub-pixel shift filled in or
#: interpolated across the edge of an arm's data (see :func:`erosion_px`).
DEFAULT_MARGIN_PX = 2


@dataclass(frozen=True, eq=False)
class ScoredRegion:
    """The scored region and how it was made.

    Attributes
    ----------
    mask : ndarray (H, W) bool
        The pixels every arm is scored on.
    hull_pixels : int
        Pixels inside the scan's convex hull.
    common_pixels : int
        Hull pixels where every arm has data (before the erosion).
    largest_shift_px : float
        Largest Euclidean norm of the registration shifts applied to any arm, pixels.
    margin_px : int
        Margin added to the shift, pixels.
    erosion_px : int
        ``ceil(largest_shift_px) + margin_px``: how far the common region was eroded.
    hull_lost_fraction : dict
        Per arm, the fraction of the hull where that arm has no data.
    """

    mask: np.ndarray
    hull_pixels: int
    common_pixels: int
    largest_shift_px: float
    margin_px: int
    erosion_px: int
    hull_lost_fraction: dict = field(default_factory=dict)

    @property
    def n_pixels(self) -> int:
        return int(self.mask.sum())

    def to_dict(self) -> dict:
        """JSON-ready description (everything but the mask, plus its bounding box)."""
        rows = np.flatnonzero(self.mask.any(axis=1))
        cols = np.flatnonzero(self.mask.any(axis=0))
        common_lost = 1.0 - self.common_pixels / self.hull_pixels if self.hull_pixels else 0.0
        return {
            "rule": REGION_RULE,
            "n_pixels": self.n_pixels,
            "bbox_rows": [int(rows[0]), int(rows[-1]) + 1] if rows.size else None,
            "bbox_cols": [int(cols[0]), int(cols[-1]) + 1] if cols.size else None,
            "hull_pixels": int(self.hull_pixels),
            "common_pixels": int(self.common_pixels),
            "largest_shift_px": float(self.largest_shift_px),
            "margin_px": int(self.margin_px),
            "erosion_px": int(self.erosion_px),
            "hull_lost_fraction": {k: float(v) for k, v in self.hull_lost_fraction.items()},
            "hull_lost_fraction_all_arms": float(common_lost),
        }


def scanned_region(positions_xy, patch_size: int, shape, *, crop=None, erode: int = 0):
    """Pixels of the object covered by at least one patch (or its central crop).

    This is the footprint of a scan, not the scored region (:func:`scored_region`).

    Parameters
    ----------
    positions_xy : array_like (n, 2)
        Patch centres in object pixels, x (column) then y (row).
    patch_size : int
        N, the side of a patch.
    shape : tuple (H, W)
        Shape of the object grid.
    crop : int, optional
        Use only the central ``crop x crop`` window of each patch, centred on the same
        position (the window of side ``crop`` in the frame of :mod:`compare_models.imaging.geometry`).
    erode : int
        Erode the union by this many pixels (8-connected, so by ``erode`` in the max-norm);
        the image border counts as outside.

    Returns
    -------
    ndarray (H, W) bool

    Notes
    -----
    A window with a sub-pixel origin is rounded outward to every pixel it touches (as
    :func:`compare_models.imaging.geometry.scan_canvas_shape` does). Windows are clipped to the grid.
    """
    pos = _positions(positions_xy)
    n_side = int(patch_size)
    if n_side < 1 or n_side != patch_size:
        raise RegistrationError(f"patch_size must be a positive integer, got {patch_size!r}")
    height, width = _shape(shape)
    side = n_side
    if crop is not None:
        side = int(crop)
        if side < 1 or side != crop or side > n_side:
            raise RegistrationError(f"crop must be an integer in 1..{n_side}, got {crop!r}")
    if int(erode) != erode or erode < 0:
        raise RegistrationError(f"erode must be a non-negative integer, got {erode!r}")

    origin_int, fraction = split_positions(pos, side)
    far = origin_int + side + (fraction > 0)
    # Coverage via a 2-D difference array: +1 at each window's corner, -1 past its far sides.
    diff = np.zeros((height + 1, width + 1), dtype=np.int64)
    c0 = np.clip(origin_int[:, 0], 0, width)
    r0 = np.clip(origin_int[:, 1], 0, height)
    c1 = np.clip(far[:, 0], 0, width)
    r1 = np.clip(far[:, 1], 0, height)
    keep = (c1 > c0) & (r1 > r0)
    for a, b, sign in ((r0, c0, 1), (r0, c1, -1), (r1, c0, -1), (r1, c1, 1)):
        np.add.at(diff, (a[keep], b[keep]), sign)
    region = diff.cumsum(axis=0).cumsum(axis=1)[:height, :width] > 0
    return erode_mask(region, int(erode))


def scan_hull(positions_xy, shape) -> np.ndarray:
    """Pixels whose centre lies inside (or on) the convex hull of the scan positions.

    Parameters
    ----------
    positions_xy : array_like (n, 2)
        Patch centres in object pixels, x (column) then y (row).
    shape : tuple (H, W)
        Shape of the object grid.

    Returns
    -------
    ndarray (H, W) bool
        True at ``(row r, column c)`` when the point ``(x, y) = (c, r)`` is in the hull
        (within 1e-9 px, so positions on the grid lie inside).

    Raises
    ------
    RegistrationError
        Fewer than three positions, or positions on one line: the hull has no area.

    Notes
    -----
    The hull depends on the scan only, so the scored region does not depend on how any arm
    was made (the stitching crop, say). Every arm that has data at every scan position and
    between neighbouring positions covers it.
    """
    from scipy.spatial import ConvexHull, QhullError

    pos = _positions(positions_xy)
    height, width = _shape(shape)
    unique = np.unique(pos, axis=0)
    if unique.shape[0] < 3:
        raise RegistrationError(
            f"the scan has {unique.shape[0]} distinct position(s): its hull has no area to score on"
        )
    try:
        hull = ConvexHull(unique)
    except QhullError as exc:
        raise RegistrationError(
            "the scan positions lie on one line: their hull has no area to score on"
        ) from exc
    # Facet inequalities a x + b y + c <= 0 (outward normals), on the hull's bounding box only.
    x0, y0 = np.floor(unique.min(axis=0)).astype(int)
    x1, y1 = np.ceil(unique.max(axis=0)).astype(int)
    r0, r1 = max(y0, 0), min(y1 + 1, height)
    c0, c1 = max(x0, 0), min(x1 + 1, width)
    mask = np.zeros((height, width), dtype=bool)
    if r1 <= r0 or c1 <= c0:
        return mask
    yy, xx = np.mgrid[r0:r1, c0:c1]
    inside = np.ones(yy.shape, dtype=bool)
    for a, b, c in hull.equations:
        inside &= a * xx + b * yy + c <= 1e-9
    mask[r0:r1, c0:c1] = inside
    return mask


def common_region(hull, valid_masks: Mapping[str, np.ndarray]) -> np.ndarray:
    """Hull pixels where every arm has data: ``hull & valid_1 & valid_2 & ...``.

    Parameters
    ----------
    hull : ndarray (H, W) bool
        :func:`scan_hull`.
    valid_masks : mapping of name to ndarray (H, W) bool
        Each arm's valid mask (where its image holds data).

    Returns
    -------
    ndarray (H, W) bool
    """
    hull = _mask(hull, "hull")
    region = hull.copy()
    for name, valid in valid_masks.items():
        region &= _mask(valid, f"valid mask of {name}", hull.shape)
    return region


def erosion_px(largest_shift_px: float, margin_px: int) -> int:
    """How far the common region is eroded: ``ceil(largest_shift_px) + margin_px``.

    Notes
    -----
    A shift of ``s`` pixels (Euclidean norm) fetches every output pixel from a point within
    chessboard distance ``ceil(s)`` of it, so after eroding by ``ceil(s)`` every scored pixel's
    value came from inside the common region, never from a pixel that an arm lacks. A sub-pixel
    Fourier shift also spreads each value along a decaying sinc tail; the margin keeps the
    scored pixels clear of the strongest part of that tail where it crosses the edge of an
    arm's data.
    """
    if not (math.isfinite(largest_shift_px) and largest_shift_px >= 0):
        raise RegistrationError(f"largest_shift_px must be >= 0, got {largest_shift_px!r}")
    if int(margin_px) != margin_px or margin_px < 0:
        raise RegistrationError(f"margin_px must be a non-negative integer, got {margin_px!r}")
    # A shift within float noise of an integer erodes by that integer.
    return int(math.ceil(largest_shift_px - 1e-9)) + int(margin_px)


def erode_mask(mask, pixels: int) -> np.ndarray:
    """Erode ``mask`` by ``pixels`` in the chessboard metric; the grid's border is outside."""
    mask = np.asarray(mask, dtype=bool)
    if pixels <= 0:
        return mask.copy()
    distance = ndimage.distance_transform_cdt(np.pad(mask, 1), metric="chessboard")
    return distance[1:-1, 1:-1] > pixels



def scored_region(
    hull,
    valid_masks: Mapping[str, np.ndarray],
    *,
    largest_shift_px: float = 0.0,
    margin_px: int = DEFAULT_MARGIN_PX,
) -> ScoredRegion:
    """The region every arm is scored on (docs/design.md, "A fair comparison").

    Parameters
    ----------
    hull : ndarray (H, W) bool
        :func:`scan_hull` of the test scan.
    valid_masks : mapping of name to ndarray (H, W) bool
        Each arm's valid mask: where its image holds data (a network's stitched weight > 0,
        pty-chi's placed canvas), and, since a zero has no phase, where its value is not 0.
    largest_shift_px : float
        Largest Euclidean norm of the registration shifts applied to any arm, pixels.
    margin_px : int
        Extra erosion, pixels (:data:`DEFAULT_MARGIN_PX`).

    Returns
    -------
    ScoredRegion

    Raises
    ------
    RegistrationError
        The hull is empty, a mask has another shape, or nothing is left after the erosion.

    Examples
    --------
    >>> hull = np.zeros((20, 20), bool); hull[2:18, 2:18] = True
    >>> valid = np.ones((20, 20), bool); valid[:, :6] = False
    >>> region = scored_region(hull, {"A": valid}, largest_shift_px=0.4, margin_px=1)
    >>> region.erosion_px, region.n_pixels, round(region.hull_lost_fraction["A"], 3)
    (2, 96, 0.25)
    """
    hull = _mask(hull, "hull")
    hull_pixels = int(hull.sum())
    if hull_pixels == 0:
        raise RegistrationError("the scan's hull holds no pixel of the object grid")
    common = common_region(hull, valid_masks)
    lost = {
        name: 1.0 - float((hull & np.asarray(valid, bool)).sum()) / hull_pixels
        for name, valid in valid_masks.items()
    }
    if not common.any():
        detail = ", ".join(f"{name} lacks {100 * f:.1f} %" for name, f in lost.items())
        raise RegistrationError(
            f"no pixel of the scan's hull has data from every arm ({detail} of the hull)"
        )
    pixels = erosion_px(float(largest_shift_px), margin_px)
    mask = erode_mask(common, pixels)
    if not mask.any():
        raise RegistrationError(
            f"the scored region is empty: the {int(common.sum())} hull pixels where every arm has "
            f"data vanish when eroded by {pixels} px (largest shift {largest_shift_px:.3f} px + "
            f"margin {margin_px} px)"
        )
    return ScoredRegion(
        mask=mask,
        hull_pixels=hull_pixels,
        common_pixels=int(common.sum()),
        largest_shift_px=float(largest_shift_px),
        margin_px=int(margin_px),
        erosion_px=pixels,
        hull_lost_fraction=lost,
    )


# --------------------------------------------------------------------------------------------


def _positions(positions_xy):
    pos = np.asarray(positions_xy, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 2 or pos.shape[0] == 0:
        raise RegistrationError(f"positions_xy must have shape (n >= 1, 2), got {pos.shape}")
    if not np.isfinite(pos).all():
        raise RegistrationError("positions_xy contains NaN or infinite values")
    return pos


def _shape(shape):
    if len(shape) != 2 or min(shape) < 1:
        raise RegistrationError(f"shape must be (H, W) with H, W >= 1, got {shape!r}")
    return int(shape[0]), int(shape[1])


def _mask(mask, name, shape=None):
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.dtype != bool:
        raise RegistrationError(f"{name} must be a 2-D boolean mask, got {mask.dtype} {mask.shape}")
    if shape is not None and mask.shape != tuple(shape):
        raise RegistrationError(f"{name} has shape {mask.shape}, expected {tuple(shape)}")
    return mask
