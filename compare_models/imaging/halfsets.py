"""Half-set FRC: two independent reconstructions from two interleaved halves of one scan.

The resolution of a reconstruction without ground truth (van Heel & Schatz 2005 [1]_; in
ptychography, e.g. Vila-Comamala et al. 2011 [2]_): split the scan positions into two disjoint
halves, reconstruct each half on its own, register one image to the other and correlate them
ring by ring. Where the correlation falls below a threshold (1/7, or the 1/2-bit or 1-bit
information curve) the two halves stop agreeing about the object: the resolution.

* :func:`split_half_sets`: the deterministic, spatially interleaved split (a checkerboard of the
  scan grid, or alternating positions along the scan path).
* :func:`half_set_frc`: the FRC of two registered half images over a region, amplitude and
  phase, with the half-set thresholds (through :func:`compare_models.imaging.frc.frc_on_region`,
  the same implementation as the FRC against ground truth).
* :func:`largest_gap_px`: how far a point of a region lies from the nearest position of a half
  (what a stitching crop must reach to cover it).

Frames and units
----------------
Positions are patch centres in object pixels, x (column) then y (row); images and masks are
(H, W) arrays on one object pixel grid. Frequencies are fractions of Nyquist; resolutions
half-periods in metres.

References
----------
.. [1] M. van Heel and M. Schatz, "Fourier shell correlation threshold criteria," J. Struct.
   Biol. 151, 250-262 (2005).
.. [2] J. Vila-Comamala, A. Diaz, M. Guizar-Sicairos, A. Mantion, C. M. Kewish, A. Menzel,
   O. Bunk and C. David, "Characterization of high-resolution diffractive X-ray optics by
   ptychographic coherent diffractive imaging," Opt. Express 19, 21333-21344 (2011).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from ..errors import MetricError
from .geometry import mask_bbox

__all__ = [
    "SPLIT_METHODS",
    "DEFAULT_SPLIT_METHOD",
    "SPLIT_DESCRIPTIONS",
    "HalfSplit",
    "split_half_sets",
    "checkerboard_lattice",
    "half_set_frc",
    "half_set_phase_images",
    "largest_gap_px",
]

#: The ways :func:`split_half_sets` can split a scan.
SPLIT_METHODS = ("checkerboard", "alternate")
#: The default: independent of the order in which the file lists the positions.
DEFAULT_SPLIT_METHOD = "checkerboard"
#: What each method does, as metrics.json records it.
SPLIT_DESCRIPTIONS = MappingProxyType({
    "checkerboard": (
        "checkerboard of the scan grid: each position gets the cell (i, j) of a lattice whose "
        "steps along x and y are estimated from the positions (nearest-neighbour spacing, "
        "refined by the periodogram of the coordinates); half 1 holds the positions with i + j "
        "even, half 2 those with i + j odd"
    ),
    "alternate": (
        "alternating positions along the scan path (the order of the file): half 1 holds "
        "positions 0, 2, 4, ..., half 2 positions 1, 3, 5, ..."
    ),
})

# Lattice search: candidate steps from 0.75 to 2.5 times the median nearest-neighbour spacing
# (a coarse grid of relative resolution 1e-3, then a fine one around each strong peak).
_STEP_RANGE = (0.75, 2.5)
_COARSE_RELATIVE = 1e-3
_FINE_RELATIVE = 1e-5
# Coordinates used for the periodogram (evenly spaced subset of larger scans).
_MAX_LATTICE_SAMPLES = 4096
# Coordinates used for the coarse search (its noise floor is about 1 / sqrt(samples); a grid's
# peak, exp(-2 pi^2 jitter^2 / step^2), is far above it).
_MAX_COARSE_SAMPLES = 1024
# Strongest coarse peaks refined per axis.
_MAX_PEAKS = 4


@dataclass(frozen=True, eq=False)
class HalfSplit:
    """Two disjoint halves of a scan's positions.

    Attributes
    ----------
    method : str
        One of :data:`SPLIT_METHODS`.
    half1, half2 : ndarray (n1,), (n2,) int64
        Indices of the positions in each half, increasing; disjoint; together every index
        ``0 .. n_positions - 1``.
    n_positions : int
    lattice_step_px : tuple of float or None
        Checkerboard: the lattice steps (x, y) in pixels.
    lattice_strength : tuple of float or None
        Checkerboard: the periodogram peak (x, y) in [0, 1]; near 1 for a regular grid, about
        ``exp(-2 pi^2 jitter^2 / step^2)`` for a jittered one, small when the scan has no grid.
    """

    method: str
    half1: np.ndarray
    half2: np.ndarray
    n_positions: int
    lattice_step_px: tuple | None = None
    lattice_strength: tuple | None = None

    @property
    def halves(self) -> tuple[np.ndarray, np.ndarray]:
        return self.half1, self.half2

    def to_dict(self) -> dict:
        """JSON-ready description (counts, not the indices)."""
        out = {
            "method": self.method,
            "description": SPLIT_DESCRIPTIONS[self.method],
            "n_positions": int(self.n_positions),
            "n_half1": int(self.half1.size),
            "n_half2": int(self.half2.size),
        }
        if self.lattice_step_px is not None:
            out["lattice_step_px"] = [float(v) for v in self.lattice_step_px]
            out["lattice_strength"] = [float(v) for v in self.lattice_strength]
        return out


def split_half_sets(positions_xy, method: str = DEFAULT_SPLIT_METHOD) -> HalfSplit:
    """Split scan positions into two disjoint, spatially interleaved halves.

    Parameters
    ----------
    positions_xy : array_like (M, 2)
        Patch centres in object pixels, x (column) then y (row), in scan order.
    method : {"checkerboard", "alternate"}
        ``"checkerboard"`` (default): colour the cells of the scan's lattice like a
        checkerboard (:func:`checkerboard_lattice`); every position's grid neighbours along x
        and y fall in the other half, whatever order the file lists them in.
        ``"alternate"``: even and odd positions along the scan path.

    Returns
    -------
    HalfSplit

    Raises
    ------
    MetricError
        Fewer than two positions, an unknown method, non-finite positions, or a split that
        leaves a half empty (the message suggests the other method).

    Notes
    -----
    Deterministic: the same positions give the same halves. On a regular or jittered grid
    (jitter well below half the step) the checkerboard's halves differ in size by at most one
    position (by one when the numbers of rows and of columns are both odd); alternate halves
    differ by at most one. Each half then samples the object on a grid rotated by 45
    degrees whose step is sqrt(2) times the scan's (checkerboard), or on every other column
    (alternate along a raster), so a stitching crop must reach about one scan step further.

    Examples
    --------
    >>> yy, xx = np.mgrid[0:3, 0:4] * 5.0
    >>> split = split_half_sets(np.stack([xx.ravel(), yy.ravel()], axis=1))
    >>> split.half1.tolist(), split.half2.tolist()
    ([0, 2, 5, 7, 8, 10], [1, 3, 4, 6, 9, 11])
    """
    positions = np.asarray(positions_xy, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 2:
        raise MetricError(f"positions_xy must have shape (M, 2), got {positions.shape}")
    if not np.isfinite(positions).all():
        raise MetricError("positions_xy contains NaN or infinite values")
    n_positions = positions.shape[0]
    if n_positions < 2:
        raise MetricError(f"a half-set split needs at least 2 scan positions, got {n_positions}")
    if method not in SPLIT_METHODS:
        raise MetricError(f"half-set split must be one of {', '.join(SPLIT_METHODS)}, got {method!r}")
    step = strength = None
    if method == "alternate":
        parity = np.arange(n_positions) % 2
    else:
        cells, step, strength = checkerboard_lattice(positions)
        parity = (cells[:, 0] + cells[:, 1]) % 2
    half1 = np.flatnonzero(parity == 0).astype(np.int64)
    half2 = np.flatnonzero(parity == 1).astype(np.int64)
    if half1.size == 0 or half2.size == 0:
        raise MetricError(
            f"the {method} split put all {n_positions} positions in one half (the positions do not "
            "form a grid); use --half-set-split alternate"
        )
    return HalfSplit(method, half1, half2, n_positions, step, strength)


def checkerboard_lattice(positions_xy):
    """Lattice cells of scan positions: the grid the scan was laid out on, estimated.

    Parameters
    ----------
    positions_xy : ndarray (M, 2)
        Object pixels, x then y; at least two distinct positions.

    Returns
    -------
    cells : ndarray (M, 2) int64
        Cell index (i along x, j along y) of every position.
    step_px : tuple of float
        Lattice step along x and y, pixels.
    strength : tuple of float
        Periodogram peak along x and y: ``|mean exp(2 pi i c / step)|`` of the coordinates.

    Notes
    -----
    1. ``d0``: the median distance from a position to its nearest neighbour (positions that
       coincide are skipped).
    2. Per axis, the step ``d`` in ``[0.75 d0, 2.5 d0]`` that maximises the periodogram
       ``|mean exp(2 pi i c / d)|`` of that axis' coordinates (a jittered grid's nearest
       neighbours are closer than its step, so ``d0`` alone would drift by a cell within a few
       rows); among near-equal peaks (a regular grid also peaks at half its step) the longest
       step wins. The phase of the peak places the lattice: ``i = round(c / d - phase / 2 pi)``.
    3. Along an axis with a single coordinate (one row), every position gets cell 0.
    """
    from scipy.spatial import cKDTree

    positions = np.asarray(positions_xy, dtype=np.float64)
    distinct = np.unique(positions, axis=0)
    if distinct.shape[0] < 2:
        raise MetricError("a checkerboard split needs at least two distinct scan positions")
    distance, _ = cKDTree(distinct).query(distinct, k=2)
    spacing = float(np.median(distance[:, 1]))
    sample = positions
    if positions.shape[0] > _MAX_LATTICE_SAMPLES:
        sample = positions[np.linspace(0, positions.shape[0] - 1, _MAX_LATTICE_SAMPLES).astype(int)]
    cells = np.zeros(positions.shape, dtype=np.int64)
    steps, strengths = [], []
    for axis in (0, 1):
        coords = positions[:, axis]
        if np.ptp(coords) < 1e-9 * max(1.0, float(np.abs(coords).max())):
            steps.append(spacing)
            strengths.append(1.0)
            continue
        step, strength, phase = _lattice_axis(sample[:, axis], spacing)
        cells[:, axis] = np.rint(coords / step - phase / (2 * np.pi)).astype(np.int64)
        steps.append(step)
        strengths.append(strength)
    return cells, (float(steps[0]), float(steps[1])), (float(strengths[0]), float(strengths[1]))


def _periodogram(coords, steps):
    """``mean exp(2 pi i c / d)`` for each candidate step ``d`` (complex, one per step)."""
    out = np.empty(steps.size, dtype=np.complex128)
    for start in range(0, steps.size, 256):
        angle = (2 * np.pi) * coords[None, :] / steps[start : start + 256, None]
        out[start : start + 256] = np.cos(angle).mean(axis=1) + 1j * np.sin(angle).mean(axis=1)
    return out


def _lattice_axis(coords, spacing):
    """Step, periodogram peak and phase of one axis' coordinates (see :func:`checkerboard_lattice`)."""
    # Centre the coordinates so the phase is well conditioned (the phase is then re-expressed
    # for the raw coordinates).
    origin = float(np.median(coords))
    centred = coords - origin
    low, high = _STEP_RANGE
    coarse = spacing * np.arange(low, high, _COARSE_RELATIVE)
    thinned = centred
    if centred.size > _MAX_COARSE_SAMPLES:
        thinned = centred[np.linspace(0, centred.size - 1, _MAX_COARSE_SAMPLES).astype(int)]
    power = np.abs(_periodogram(thinned, coarse))
    best = float(power.max())
    # Local maxima close to the best one: each is refined on a fine grid.
    peaks = [
        k for k in range(power.size)
        if power[k] >= best - 0.02 and power[k] >= power[max(k - 1, 0)] and power[k] >= power[min(k + 1, power.size - 1)]
    ]
    peaks = sorted(peaks, key=lambda k: -power[k])[:_MAX_PEAKS]
    candidates = []
    for k in peaks:
        fine = coarse[k] * (1 + np.arange(-1.5e-3, 1.5e-3 + 1e-12, _FINE_RELATIVE))
        values = _periodogram(centred, fine)
        m = int(np.argmax(np.abs(values)))
        candidates.append((float(np.abs(values[m])), float(fine[m]), complex(values[m])))
    top = max(c[0] for c in candidates)
    strength, step, value = max((c for c in candidates if c[0] >= top - 1e-6), key=lambda c: c[1])
    phase = float(np.angle(value)) + 2 * np.pi * origin / step
    return step, strength, phase


def largest_gap_px(positions_xy, mask) -> float:
    """The largest chessboard distance from a pixel of ``mask`` to the nearest position.

    A stitching crop of side M centred on each position covers every pixel within chessboard
    distance M / 2 of it, so the crop must be at least ``2 * largest_gap_px`` for the positions
    to cover ``mask``.

    Parameters
    ----------
    positions_xy : array_like (n, 2)
        Object pixels, x then y.
    mask : ndarray (H, W) bool
    """
    from scipy.spatial import cKDTree

    rows, cols = np.nonzero(np.asarray(mask, dtype=bool))
    if rows.size == 0:
        return 0.0
    distance, _ = cKDTree(np.asarray(positions_xy, dtype=np.float64)).query(
        np.stack([cols, rows], axis=1).astype(np.float64), k=1, p=np.inf
    )
    return float(distance.max())


def half_set_phase_images(image1, image2, mask, *, phase_gauge: str = "ramp"):
    """Phase images of two registered halves, for their FRC.

    Parameters
    ----------
    image1, image2 : ndarray (h, w) complex
        Half 1 and half 2 after registration onto half 1, on the region's bounding box.
    mask : ndarray (h, w) bool
        The region.
    phase_gauge : {"ramp", "offset"}
        What is removed from both: the plane (offset and linear ramp), or the offset, fitted to
        the phase of the consensus ``image1 + image2``, amplitude-weighted.

    Returns
    -------
    phase1, phase2 : ndarray (h, w) float64
        ``phase1 = angle(image1 exp(-i P))``, ``phase2 = phase1 + angle(image2 conj(image1))``,
        radians, with ``P`` the consensus plane: the same plane leaves both, and their
        difference is a wrapped difference with no 2 pi jump.
    wrap_pixels : int
        Pixels of the region next to a jump of more than pi in ``phase1``: where the object's
        phase itself wraps. Both images share such a jump, which would correlate them at every
        frequency; :func:`half_set_frc` therefore correlates the unit phasors
        ``exp(i phase)``, which have none.
    """
    from .registration import fit_gauge

    image1 = np.asarray(image1, dtype=np.complex128)
    image2 = np.asarray(image2, dtype=np.complex128)
    consensus = image1 + image2
    gauge = fit_gauge(consensus, np.ones_like(consensus), mask, phase=phase_gauge)
    relative = image1 * np.exp(-1j * gauge.plane(image1.shape))
    phase1 = np.angle(relative)
    phase2 = phase1 + np.angle(image2 * np.conj(image1))
    jumps = np.zeros(mask.shape, dtype=bool)
    dx = np.abs(np.diff(phase1, axis=1)) > np.pi
    dy = np.abs(np.diff(phase1, axis=0)) > np.pi
    jumps[:, 1:] |= dx
    jumps[:, :-1] |= dx
    jumps[1:, :] |= dy
    jumps[:-1, :] |= dy
    return phase1, phase2, int((jumps & mask).sum())


def half_set_frc(
    image1,
    image2,
    region,
    *,
    pixel_size_m: float | None = None,
    smoothing_sigma: float | None = None,
    phase_gauge: str = "ramp",
) -> dict:
    """Half-set FRC of two registered half images, amplitude and phase.

    Parameters
    ----------
    image1 : ndarray (H, W) complex
        Half 1 (the reference).
    image2 : ndarray (H, W) complex
        Half 2, registered onto half 1 (shift and gauge:
        :func:`compare_models.imaging.registration.register` with half 1 as the reference).
    region : ndarray (H, W) bool
        Pixels both halves cover (the half-set region); the FRC runs on its bounding box with
        the raised-cosine window of :func:`compare_models.imaging.frc.frc_window`.
    pixel_size_m : float, optional
        Object pixel size, for half-period resolutions in metres.
    smoothing_sigma : float, optional
        Gaussian smoothing of the curves along the ring axis (rings).
    phase_gauge : {"ramp", "offset"}
        The consensus plane removed from both phase images (:func:`half_set_phase_images`).

    Returns
    -------
    dict
        ``amplitude`` and ``phase``: :func:`compare_models.imaging.frc.frc_half_set` of
        each (``kind: "half_set"``, curve, thresholds, cut-offs at 1/7, 1/2 bit and 1 bit);
        the phase FRC is that of the unit phasors ``exp(i phase)`` of
        :func:`half_set_phase_images`, which have no wrap discontinuities; ``region``
        (bounding box and pixel count); ``phase_wrap_pixels`` (for information: the phasors
        make the jumps harmless).

    Raises
    ------
    MetricError
        Shapes differ, the region is empty or under 4 pixels a side, or a value in it is not
        finite.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> image = np.exp(1j * rng.normal(size=(32, 32))) * (1 + rng.random((32, 32)))
    >>> result = half_set_frc(image, image, np.ones((32, 32), bool))
    >>> result["amplitude"]["cutoffs"]["1/7"]["crossed"], min(result["amplitude"]["curve"][1:]) > 0.999
    (False, True)
    """
    from .frc import frc_half_set, frc_on_region
    from .frc_window import unit_phasor

    image1 = np.asarray(image1)
    image2 = np.asarray(image2)
    region = np.asarray(region)
    if image1.ndim != 2 or image1.shape != image2.shape or region.shape != image1.shape:
        raise MetricError(
            f"the half images and the region must share one 2-D shape, got {image1.shape}, "
            f"{image2.shape}, {region.shape}"
        )
    if region.dtype != bool or not region.any():
        raise MetricError("the half-set region must be a non-empty boolean mask")
    box = mask_bbox(region)
    mask = region[box]
    first = image1[box].astype(np.complex128)
    second = image2[box].astype(np.complex128)
    for label, arr in (("half 1", first), ("half 2", second)):
        if not np.isfinite(arr[mask]).all():
            raise MetricError(f"{label} has NaN or infinite values inside the half-set region")
    first = np.where(mask, first, 0)
    second = np.where(mask, second, 0)
    phase1, phase2, wraps = half_set_phase_images(first, second, mask, phase_gauge=phase_gauge)
    common = dict(pixel_size_m=pixel_size_m, smoothing_sigma=smoothing_sigma, cutoff_rule="first")
    amplitude = frc_half_set(frc_on_region(np.abs(first), np.abs(second), mask, **common))
    phase = frc_half_set(frc_on_region(unit_phasor(phase1), unit_phasor(phase2), mask, **common))
    return {
        "amplitude": amplitude,
        "phase": phase,
        "region": {
            "bbox_rows": [int(box[0].start), int(box[0].stop)],
            "bbox_cols": [int(box[1].start), int(box[1].stop)],
            "n_pixels": int(mask.sum()),
        },
        "phase_wrap_pixels": wraps,
    }
