"""Procedurally generated objects for training sets: lines, Gaussian random fields, particles.

Each family draws a real field in [0, 1] on a square grid from a NumPy generator (arrays out, no
global random state); :func:`random_object` turns two independent fields into a complex object
(amplitude and phase in given ranges), and :func:`mosaic` places many objects side by side in one
array so that a training set of many objects is one contract-conformant dataset (one
``objectGuess``, positions in its pixels).

Feature size
------------
``feature_px`` sets the scale of the structure, in object pixels: the width of a line, the
diameter of a particle, and for a Gaussian random field the correlation length (the field is
white noise smoothed by a Gaussian of standard deviation ``feature_px / 2``). Each object draws its
own feature size log-uniformly in ``[feature_px / 2, 2 feature_px]`` (:func:`random_object`), so a
training set spans a factor of four in scale.

These families follow the kinds of object PtychoPINN's simulator offers (lines, Gaussian random
fields, points); the code is this project's own.
"""

from __future__ import annotations

import math
from types import MappingProxyType

import numpy as np

__all__ = [
    "FAMILIES",
    "gaussian_random_field",
    "lines_field",
    "particles_field",
    "family_field",
    "random_object",
    "mosaic",
]

#: Procedural object families (``"mixed"`` in a configuration draws one per field).
FAMILIES = ("lines", "grf", "particles")


def _normalise(field: np.ndarray) -> np.ndarray:
    """Map the 1st..99th percentile of ``field`` to [0, 1], clipping the tails."""
    low, high = np.percentile(field, [1.0, 99.0])
    if not high > low:
        return np.zeros_like(field)
    return np.clip((field - low) / (high - low), 0.0, 1.0)


def _check(size: int, feature_px: float) -> None:
    if size < 2:
        raise ValueError(f"size must be >= 2 pixels, got {size}")
    if not feature_px > 0:
        raise ValueError(f"feature_px must be > 0, got {feature_px}")


def gaussian_random_field(size: int, feature_px: float, rng: np.random.Generator) -> np.ndarray:
    """White noise smoothed by a Gaussian of standard deviation ``feature_px / 2`` (periodic),
    normalised to [0, 1] (1st and 99th percentiles); (size, size) float64."""
    _check(size, feature_px)
    noise = rng.standard_normal((size, size))
    sigma = feature_px / 2
    freq = np.fft.fftfreq(size)
    f2 = freq[:, None] ** 2 + freq[None, :] ** 2
    smooth = np.fft.ifft2(np.fft.fft2(noise) * np.exp(-2 * (math.pi * sigma) ** 2 * f2)).real
    return _normalise(smooth)


def _segment_distance(yy, xx, start, end) -> np.ndarray:
    """Distance of every pixel centre (yy, xx) from the segment ``start``-``end`` (y, x)."""
    d = np.asarray(end, float) - np.asarray(start, float)
    length2 = float(d @ d)
    py, px = yy - start[0], xx - start[1]
    t = np.clip((py * d[0] + px * d[1]) / length2, 0.0, 1.0) if length2 > 0 else 0.0
    return np.hypot(py - t * d[0], px - t * d[1])


def lines_field(size: int, feature_px: float, rng: np.random.Generator) -> np.ndarray:
    """Random straight segments of width ``feature_px`` (anti-aliased one-pixel edges), random
    orientation, length between a quarter and the whole side, and height in [0.3, 1]; where
    segments cross, the higher one shows. (size, size) float64 in [0, 1]."""
    _check(size, feature_px)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    field = np.zeros((size, size))
    count = max(2, int(round(0.6 * size / feature_px)))
    for _ in range(count):
        centre = rng.uniform(0, size, 2)
        angle = rng.uniform(0, math.pi)
        half = rng.uniform(0.125, 0.5) * size
        step = half * np.array([math.sin(angle), math.cos(angle)])
        distance = _segment_distance(yy, xx, centre - step, centre + step)
        profile = np.clip(feature_px / 2 + 0.5 - distance, 0.0, 1.0)
        field = np.maximum(field, rng.uniform(0.3, 1.0) * profile)
    return field


def particles_field(size: int, feature_px: float, rng: np.random.Generator) -> np.ndarray:
    """Random discs of diameter ``feature_px`` times [0.5, 1.5] (anti-aliased edges), heights in
    [0.3, 1], covering about 40 % of the area; the higher disc shows where they overlap.
    (size, size) float64 in [0, 1]."""
    _check(size, feature_px)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    field = np.zeros((size, size))
    mean_area = math.pi * (feature_px / 2) ** 2 * (1 + 1 / 12)  # E[(0.5..1.5)^2] = 13/12
    count = max(1, int(round(0.4 * size * size / mean_area)))
    for _ in range(count):
        cy, cx = rng.uniform(0, size, 2)
        radius = feature_px / 2 * rng.uniform(0.5, 1.5)
        profile = np.clip(radius + 0.5 - np.hypot(yy - cy, xx - cx), 0.0, 1.0)
        field = np.maximum(field, rng.uniform(0.3, 1.0) * profile)
    return field


_FIELDS = MappingProxyType({"lines": lines_field, "grf": gaussian_random_field, "particles": particles_field})


def family_field(family: str, size: int, feature_px: float, rng: np.random.Generator) -> np.ndarray:
    """A field of ``family`` (one of :data:`FAMILIES`), (size, size) float64 in [0, 1]."""
    if family not in _FIELDS:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, got {family!r}")
    return _FIELDS[family](size, feature_px, rng)


def random_object(
    family: str,
    size: int,
    feature_px: float,
    rng: np.random.Generator,
    *,
    amplitude_range: tuple[float, float] = (0.4, 1.0),
    phase_range: tuple[float, float] = (-1.0, 1.0),
) -> tuple[np.ndarray, dict]:
    """One complex object whose amplitude and phase are independent fields.

    Parameters
    ----------
    family : str
        One of :data:`FAMILIES`, or ``"mixed"``: the amplitude's and the phase's family are
        drawn independently (uniformly) for this object.
    size : int
        Side in pixels.
    feature_px : float
        Typical feature size; this object's is drawn log-uniformly in ``[f/2, 2f]``.
    rng : numpy.random.Generator
    amplitude_range, phase_range : (float, float)
        Amplitude (transmission) and phase (radians) span these ranges; each field is flipped
        with probability 1/2 (so that bright-on-dark and dark-on-bright both occur).

    Returns
    -------
    obj : ndarray (size, size) complex64
    info : dict
        ``amplitude_family``, ``phase_family`` and ``feature_px`` of this object.
    """
    if family != "mixed" and family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)} or 'mixed', got {family!r}")
    feature = float(feature_px * np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
    fields, names = [], []
    for _ in range(2):
        name = FAMILIES[rng.integers(len(FAMILIES))] if family == "mixed" else family
        field = family_field(name, size, feature, rng)
        fields.append(1.0 - field if rng.random() < 0.5 else field)
        names.append(name)
    (a_low, a_high), (p_low, p_high) = amplitude_range, phase_range
    amplitude = a_low + (a_high - a_low) * fields[0]
    phase = p_low + (p_high - p_low) * fields[1]
    info = {"amplitude_family": names[0], "phase_family": names[1], "feature_px": round(feature, 3)}
    return (amplitude * np.exp(1j * phase)).astype(np.complex64), info


def mosaic(tiles, *, fill: complex = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Objects of one size side by side in a near-square grid, row by row.

    Parameters
    ----------
    tiles : sequence of ndarray (S, S) complex
    fill : complex
        Value of the grid cells no tile occupies.

    Returns
    -------
    canvas : ndarray (rows S, cols S) complex64
        ``cols = ceil(sqrt(K))``, ``rows = ceil(K / cols)``.
    origins : ndarray (K, 2) int
        (row, column) of each tile's pixel (0, 0) in the canvas.
    """
    tiles = [np.asarray(t) for t in tiles]
    if not tiles:
        raise ValueError("mosaic needs at least one tile")
    side = tiles[0].shape[0]
    if any(t.shape != (side, side) for t in tiles):
        raise ValueError("mosaic tiles must all be square and of one size")
    cols = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    canvas = np.full((rows * side, cols * side), fill, dtype=np.complex64)
    origins = np.array([(k // cols * side, k % cols * side) for k in range(len(tiles))], dtype=np.int64)
    for tile, (row, col) in zip(tiles, origins, strict=True):
        canvas[row : row + side, col : col + side] = tile
    return canvas, origins
