"""Stitching: exact round trips, sub-pixel accuracy, every backend's kernel against the NumPy
reference, errors."""

from __future__ import annotations

import doctest
import importlib.util
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.ndimage import binary_erosion

from compare_models.errors import StitchError
from compare_models.imaging import stitching as reassembly
from compare_models.imaging.geometry import extract_patches, object_patches, split_nearest
from compare_models.imaging.stitching import Stitcher, crop_start, stitch

INSTALLED = {name: importlib.util.find_spec(name) is not None for name in ("tensorflow", "jax", "torch")}


def _backend(name):
    return pytest.param(name, marks=pytest.mark.skipif(not INSTALLED[name], reason=f"{name} is not installed"), id=name)


#: Every kernel backend (each skipped when its library is missing) and the NumPy reference.
KERNEL_BACKENDS = [_backend("tensorflow"), _backend("jax"), _backend("torch")]
BACKENDS = [pytest.param("numpy", id="numpy"), *KERNEL_BACKENDS]
AVAILABLE = ["numpy"] + [name for name, present in INSTALLED.items() if present]


def random_object(rng, height, width):
    return (rng.standard_normal((height, width)) + 1j * rng.standard_normal((height, width))).astype(
        np.complex64
    )


def coverage_mask(positions_xy, n_side, m_keep, shape):
    """Independent coverage of integer-position windows: union of the kept M x M boxes."""
    mask = np.zeros(shape, bool)
    s0 = crop_start(n_side, m_keep)
    origins = np.floor(np.asarray(positions_xy, dtype=float) - n_side / 2).astype(int)
    for c0, r0 in origins + s0:
        mask[max(r0, 0) : max(r0 + m_keep, 0), max(c0, 0) : max(c0 + m_keep, 0)] = True
    return mask


def regular_scan(step, lo, hi):
    g = np.arange(lo, hi + 1, step)
    xx, yy = np.meshgrid(g, g)
    return np.stack([xx.ravel(), yy.ravel()], axis=1).astype(float)


def irregular_scan(rng, n, lo, hi, hole_centre, hole_radius):
    """Random integer points with a disc-shaped hole removed."""
    pts = rng.integers(lo, hi + 1, size=(n, 2)).astype(float)
    keep = np.hypot(pts[:, 0] - hole_centre[0], pts[:, 1] - hole_centre[1]) > hole_radius
    return pts[keep]


# --------------------------------------------------------------------------- exact round trips


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("crop", [None, 12, 9])
def test_integer_regular_scan_returns_object(backend, crop):
    rng = np.random.default_rng(0)
    obj = random_object(rng, 64, 72)
    n_side = 16
    pos = regular_scan(5, 8, 56)
    pos[:, 0] += 4  # x up to 60 (W = 72), not symmetric in x and y
    patches = extract_patches(obj, pos, n_side)
    image, weights = stitch(patches, pos, obj.shape, crop=crop, backend=backend, chunk=37)
    m_keep = crop or n_side
    covered = coverage_mask(pos, n_side, m_keep, obj.shape)
    np.testing.assert_array_equal(weights > 0, covered)
    np.testing.assert_allclose(image[covered], obj[covered], atol=1e-6, rtol=0)
    assert np.all(image[~covered] == 0) and np.all(weights[~covered] == 0)
    # Each kept patch pixel contributes weight 1 in total.
    assert weights.sum() == pytest.approx(len(pos) * m_keep**2)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("interpolation", ["bilinear", "fourier"])
def test_integer_irregular_scan_with_holes(backend, interpolation):
    rng = np.random.default_rng(1)
    obj = random_object(rng, 80, 80)
    n_side = 12
    pos = irregular_scan(rng, 150, 6, 74, hole_centre=(40, 40), hole_radius=16)
    patches = extract_patches(obj, pos, n_side)
    image, weights = stitch(
        patches, pos, obj.shape, crop=10, backend=backend, interpolation=interpolation, chunk=64
    )
    covered = coverage_mask(pos, n_side, 10, obj.shape)
    assert not covered[40, 40], "the scan should leave a hole"
    np.testing.assert_array_equal(weights > 0, covered)
    np.testing.assert_allclose(image[covered], obj[covered], atol=1e-6, rtol=0)
    assert image[40, 40] == 0 and weights[40, 40] == 0


@pytest.mark.parametrize("n_side, m_keep", [(16, 7), (16, 5), (15, 7), (15, 6), (8, 8), (8, 1)])
def test_crop_window_convention(n_side, m_keep):
    """The kept window is rows N//2 - M//2 .. N//2 - M//2 + M - 1 of the patch."""
    patch = (np.arange(n_side * n_side).reshape(1, n_side, n_side) + 1).astype(np.complex64)
    # Odd N: the patch origin is y - N/2, so a half-integer centre puts it on the grid.
    x, y = 20 + (n_side % 2) / 2, 17 + (n_side % 2) / 2
    image, weights = stitch(patch, [[x, y]], (40, 40), crop=m_keep, backend="numpy")
    s0 = n_side // 2 - m_keep // 2
    r0, c0 = int(y - n_side / 2) + s0, int(x - n_side / 2) + s0
    expected = np.zeros((40, 40), np.complex64)
    expected[r0 : r0 + m_keep, c0 : c0 + m_keep] = patch[0, s0 : s0 + m_keep, s0 : s0 + m_keep]
    np.testing.assert_array_equal(image, expected)
    if n_side % 2 == 0:
        # Patch pixel (N/2, N/2) stays on object pixel (y, x) after cropping.
        assert image[int(y), int(x)] == patch[0, n_side // 2, n_side // 2]
    if m_keep % 2 == 1:
        rows = np.flatnonzero(weights.any(axis=1))
        assert rows[0] == r0 and rows[-1] == r0 + m_keep - 1
        centre = r0 + m_keep // 2
        assert rows[-1] - centre == centre - rows[0] == m_keep // 2


# --------------------------------------------------------------------------- sub-pixel


def smooth_object(height, width):
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    amp = 1.0 + 0.3 * np.sin(2 * np.pi * xx / 40) * np.cos(2 * np.pi * yy / 50)
    phase = 0.8 * np.cos(2 * np.pi * (xx + 0.5 * yy) / 45)
    return amp * np.exp(1j * phase)


@pytest.mark.parametrize("backend", BACKENDS)
def test_subpixel_smooth_object_within_interpolation_error(backend):
    rng = np.random.default_rng(2)
    obj = smooth_object(90, 90)
    n_side = 16
    pos = regular_scan(4, 12, 76) + rng.uniform(-0.5, 0.5, (len(regular_scan(4, 12, 76)), 2))
    patches = extract_patches(obj, pos, n_side).astype(np.complex64)
    image, weights = stitch(patches, pos, obj.shape, backend=backend, chunk=50, interpolation="bilinear")
    covered = weights > 0
    err = np.abs(image - obj)[covered]
    # Bounds from the object's derivatives: a pixel on the coverage edge can be reached only by
    # a window's edge row/column, whose samples sit up to one pixel away in each axis; one
    # pixel further in, those edge samples are outweighed by window interiors, leaving the
    # second-derivative error of bilinear sampling (applied twice: extract, then splat).
    gy, gx = np.gradient(obj)
    grad = np.hypot(np.abs(gx), np.abs(gy)).max()
    curv = max(np.abs(np.gradient(gx, axis=1)).max(), np.abs(np.gradient(gy, axis=0)).max())
    assert err.max() < np.sqrt(2) * grad + curv
    interior = binary_erosion(covered)
    assert np.abs(image - obj)[interior].max() < 0.25 * grad + curv
    assert np.median(err) < 0.25 * curv + 1e-3
    # Sub-pixel handling must beat ignoring the fraction (rounding the positions).
    rounded, _ = stitch(patches, np.round(pos), obj.shape, backend=backend, chunk=50, interpolation="bilinear")
    err_rounded = np.abs(rounded - obj)[covered]
    assert np.sqrt(np.mean(err**2)) < 0.2 * np.sqrt(np.mean(err_rounded**2))


def test_subpixel_linear_object_exact_inside_single_window():
    """Bilinear splatting + normalisation reproduces a linear function exactly away from the
    window's edge row and column."""
    yy, xx = np.mgrid[0:40, 0:40].astype(np.float64)
    obj = (0.3 + 0.02 * xx - 0.01 * yy) + 1j * (0.1 * yy - 0.05 * xx)
    pos = np.array([[20.3, 19.65]])
    patches = extract_patches(obj, pos, 12)
    for backend in AVAILABLE:
        image, weights = stitch(patches, pos, obj.shape, backend=backend, interpolation="bilinear")
        inner = weights > 0.999
        assert inner.sum() == 11 * 11
        np.testing.assert_allclose(image[inner], obj[inner], atol=2e-6, rtol=0)


# --------------------------------------------------------------------------- kernels == NumPy

CASES = [(1, 1), (2, 2), (63, 21), (64, 32), (65, 13), (159, 53), (1023, 31), (5088, 32), (5216, 32)]
#: The scatter-add kernels (no per-window loop) on fewer cases: one patch, ragged last
#: chunks, and a long run.
SCATTER_CASES = [(1, 1), (65, 13), (1023, 31)]


def _check_kernel_matches_numpy(backend, n, dividing_chunk, interpolation):
    rng = np.random.default_rng(n)
    shape, n_side = (40, 44), 8
    pos = np.stack([rng.uniform(2, 42, n), rng.uniform(2, 38, n)], axis=1)  # some leave the grid
    patches = random_object(rng, n * n_side, n_side).reshape(n, n_side, n_side)
    ref, w_ref = stitch(patches, pos, shape, backend="numpy", crop=6, interpolation=interpolation)
    other_chunk = 100 if n % 100 == 0 or n == 64 else 64
    assert n % dividing_chunk == 0 and n % other_chunk != 0
    for chunk in (dividing_chunk, other_chunk):
        image, weights = stitch(patches, pos, shape, backend=backend, crop=6, chunk=chunk, interpolation=interpolation)
        assert image.dtype == np.complex64 and weights.dtype == np.float32
        assert image.shape == weights.shape == shape
        np.testing.assert_allclose(weights, w_ref, atol=1e-6, rtol=1e-6)
        np.testing.assert_allclose(image, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("interpolation", ["fourier", "bilinear"])
@pytest.mark.parametrize("n, dividing_chunk", CASES)
def test_xla_matches_numpy(n, dividing_chunk, interpolation):
    pytest.importorskip("tensorflow")
    _check_kernel_matches_numpy("xla", n, dividing_chunk, interpolation)  # the alias of "tensorflow"


@pytest.mark.parametrize("interpolation", ["fourier", "bilinear"])
@pytest.mark.parametrize("n, dividing_chunk", SCATTER_CASES)
@pytest.mark.parametrize("backend", KERNEL_BACKENDS[1:])
def test_scatter_kernels_match_numpy(backend, n, dividing_chunk, interpolation):
    _check_kernel_matches_numpy(backend, n, dividing_chunk, interpolation)


@pytest.mark.parametrize("interpolation", ["bilinear", "fourier"])
def test_result_does_not_depend_on_chunk(interpolation):
    pytest.importorskip("tensorflow")
    rng = np.random.default_rng(5)
    n, n_side = 300, 10
    pos = rng.uniform(5, 45, (n, 2))
    patches = random_object(rng, n * n_side, n_side).reshape(n, n_side, n_side)
    results = [
        stitch(patches, pos, (50, 50), backend=backend, chunk=chunk, interpolation=interpolation)
        for backend, chunk in [("tensorflow", 7), ("tensorflow", 64), ("tensorflow", 300), ("tensorflow", 512),
                               ("numpy", 3)]
    ]
    for image, weights in results[1:4]:
        np.testing.assert_allclose(image, results[0][0], atol=1e-6, rtol=0)
        np.testing.assert_array_equal(weights, results[0][1])
    np.testing.assert_allclose(results[0][0], results[4][0], atol=1e-5, rtol=0)
    np.testing.assert_allclose(results[0][1], results[4][1], atol=1e-5, rtol=0)


def test_fourier_matches_numpy_subpixel_and_interpolates_band_limited_signal():
    n_side = 16
    yy, xx = np.mgrid[0:48, 0:48].astype(np.float64)
    # Periodic over a 16-pixel window: Fourier shifting it is exact.
    obj = np.exp(2j * np.pi * (2 * xx + 3 * yy) / n_side)
    pos = np.array([[24.25, 23.6]])
    patches = extract_patches(obj, np.round(pos), n_side)  # the signal sampled at integer pos
    # Stitch the integer-position patch at the sub-pixel position: the whole patch is shifted
    # by r = pos - round(pos) and placed at round(pos) - N/2, so the image is the signal
    # shifted by r, exactly, on all N x N pixels.
    frac = pos - np.round(pos)
    shifted = np.exp(2j * np.pi * (2 * (xx - frac[0, 0]) + 3 * (yy - frac[0, 1])) / n_side)
    for backend in AVAILABLE:
        image, weights = stitch(patches, pos, obj.shape, backend=backend)  # Fourier by default
        inside = weights > 0
        assert inside.sum() == n_side**2 and np.all(weights[inside] == 1)
        rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
        assert (rows[0], cols[0]) == (24 - 8, 24 - 8)  # round(23.6) = 24, round(24.25) = 24
        np.testing.assert_allclose(image[inside], shifted[inside], atol=2e-5, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n_side, crop", [(16, None), (16, 12), (16, 9), (15, 7)])
def test_fourier_stitching_inverts_object_patches(backend, n_side, crop):
    """Ground-truth patches at sub-pixel positions (pty-chi's convention, geometry.object_patches)
    stitch back to the object to float32 rounding, with or without a crop: the stitcher shifts
    each whole patch back by its residual before it cuts the window."""
    rng = np.random.default_rng(11)
    obj = random_object(rng, 70, 76)
    pos = rng.uniform(n_side / 2 + 1, 60 - n_side / 2, (120, 2)) + [6, 0]
    pos[:10] = np.floor(pos[:10]) + 0.5  # exact half-integers: round half to even
    patches = object_patches(obj, pos, n_side)
    image, weights = stitch(patches, pos, obj.shape, crop=crop, backend=backend, chunk=32)
    m_keep = crop or n_side
    origin, _ = split_nearest(pos, n_side)
    covered = np.zeros(obj.shape, bool)
    for c0, r0 in origin + crop_start(n_side, m_keep):
        covered[r0 : r0 + m_keep, c0 : c0 + m_keep] = True
    np.testing.assert_array_equal(weights > 0, covered)
    np.testing.assert_allclose(image[covered], obj[covered], atol=2e-5, rtol=0)
    # Bilinear splatting of the same patches is only approximate.
    blurred, w_bilinear = stitch(patches, pos, obj.shape, crop=crop, backend=backend, interpolation="bilinear")
    inner = (w_bilinear > 0) & covered
    assert np.abs(blurred - obj)[inner].max() > 0.1


# --------------------------------------------------------------------------- properties


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 40),
    n_side=st.integers(1, 12),
    data=st.data(),
)
def test_property_numpy_integer_roundtrip_and_weights(n, n_side, data):
    m_keep = data.draw(st.integers(1, n_side))
    height = data.draw(st.integers(n_side + 1, 30))
    width = data.draw(st.integers(n_side + 1, 30))
    seed = data.draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    obj = random_object(rng, height, width)
    origins = np.stack(
        [rng.integers(0, width - n_side + 1, n), rng.integers(0, height - n_side + 1, n)], axis=1
    )
    pos = origins + n_side / 2  # integer patch origins (half-integer centres for odd N)
    patches = extract_patches(obj, pos, n_side)
    image, weights = stitch(patches, pos, (height, width), crop=m_keep, backend="numpy")
    covered = coverage_mask(pos, n_side, m_keep, (height, width))
    np.testing.assert_array_equal(weights > 0, covered)
    np.testing.assert_allclose(image[covered], obj[covered], atol=1e-6, rtol=0)
    assert weights.sum() == pytest.approx(n * m_keep**2)
    # The analytic weight map used by the XLA backend equals the windowed ones.
    frac_pos = pos + rng.uniform(0, 1, pos.shape) * (rng.uniform(size=pos.shape) < 0.7)
    frac_pos = np.minimum(frac_pos, [width - n_side / 2 - 1, height - n_side / 2 - 1])
    from compare_models.imaging.geometry import split_positions

    for interpolation, split in (("bilinear", split_positions), ("fourier", split_nearest)):
        _, w_direct = stitch(
            patches, frac_pos, (height, width), crop=m_keep, backend="numpy", interpolation=interpolation
        )
        oi, fr = split(frac_pos, n_side)
        w_exact = reassembly._weights_exact(oi + crop_start(n_side, m_keep), fr, m_keep, height, width, interpolation)
        np.testing.assert_allclose(w_exact, w_direct, atol=1e-9)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 70),
    n_side=st.sampled_from([4, 6, 7, 8]),
    data=st.data(),
)
def test_property_kernel_equals_numpy(backend, n, n_side, data):
    m_keep = data.draw(st.integers(1, n_side))
    height = data.draw(st.sampled_from([12, 20]))
    width = data.draw(st.sampled_from([12, 23]))
    chunk = data.draw(st.sampled_from([16, 32]))
    interpolation = data.draw(st.sampled_from(["fourier", "bilinear"]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    # Every kept window reaches the grid: round(x) <= W - 1 (Fourier) and floor(x) <= W - 1 (bilinear).
    pos = np.stack([rng.uniform(0, width - 1, n), rng.uniform(0, height - 1, n)], axis=1)
    patches = random_object(rng, n * n_side, n_side).reshape(n, n_side, n_side)
    ref, w_ref = stitch(patches, pos, (height, width), crop=m_keep, backend="numpy", interpolation=interpolation)
    image, weights = stitch(
        patches, pos, (height, width), crop=m_keep, backend=backend, chunk=chunk, interpolation=interpolation
    )
    np.testing.assert_allclose(weights, w_ref, atol=1e-6, rtol=1e-6)
    np.testing.assert_allclose(image, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(2, 60), data=st.data())
def test_property_stitcher_streams_chunks_into_several_canvases(backend, n, data):
    """Adding patches a few at a time, each to the full canvas and to one of two others, gives
    on every canvas what one-shot stitch gives on that canvas's patches (every backend)."""
    n_side, height, width = 6, 14, 17
    m_keep = data.draw(st.integers(1, n_side))
    interpolation = data.draw(st.sampled_from(["fourier", "bilinear"]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    pos = np.stack([rng.uniform(0, width - 1, n), rng.uniform(0, height - 1, n)], axis=1)
    patches = random_object(rng, n * n_side, n_side).reshape(n, n_side, n_side)
    group = rng.integers(-1, 2, n)  # -1: in neither of canvases 1 and 2
    group[:2] = [0, 1]  # both non-empty
    stitcher = Stitcher((height, width), n_side, crop=m_keep, backend=backend, chunk=8,
                        interpolation=interpolation, n_canvases=3)
    cuts = np.sort(rng.choice(np.arange(1, n), size=min(3, n - 1), replace=False))
    for part in np.split(np.arange(n), cuts):
        targets = np.stack([np.zeros(part.size, int), np.where(group[part] < 0, -1, group[part] + 1)], axis=1)
        stitcher.add(patches[part], pos[part], canvases=targets)
    for index, members in ((0, np.ones(n, bool)), (1, group == 0), (2, group == 1)):
        ref, w_ref = stitch(patches[members], pos[members], (height, width), crop=m_keep, backend="numpy",
                            interpolation=interpolation)
        image, weights = stitcher.result(index)
        assert stitcher.n_added[index] == members.sum()
        np.testing.assert_allclose(weights, w_ref, atol=1e-6, rtol=1e-6)
        np.testing.assert_allclose(image, ref, atol=1e-5, rtol=0)


def test_stitcher_refuses_an_empty_canvas_and_bad_targets():
    stitcher = Stitcher((10, 10), 4, n_canvases=2)
    stitcher.add(np.ones((1, 4, 4)), [[5, 5]], canvases=0)
    with pytest.raises(StitchError, match="no patches to stitch"):
        stitcher.result(1)
    with pytest.raises(StitchError, match="canvas indices"):
        stitcher.add(np.ones((1, 4, 4)), [[5, 5]], canvases=2)
    with pytest.raises(StitchError, match="patches must have shape"):
        stitcher.add(np.ones((1, 5, 5)), [[5, 5]])
    with pytest.raises(StitchError, match="2 patches for positions_xy of shape"):
        stitcher.add(np.ones((2, 4, 4)), [[5, 5]])


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_guarded_kernel_in_callers_own_step_skips_padding_and_counts_nonfinite(backend):
    """The interface a streaming caller uses: its own compiled step around guarded_kernel, the
    canvas in the backend's array type, weights recorded on the host. A NaN patch is counted
    (result() raises) and not added; padding rows (gain 0) holding NaN are ignored."""
    rng = np.random.default_rng(3)
    n, n_side, batch = 10, 8, 4
    pos = rng.uniform(6, 18, (n, 2))
    patches = random_object(rng, n * n_side, n_side).reshape(n, n_side, n_side)
    ref, w_ref = stitch(patches, pos, (24, 24), crop=6, backend="numpy")
    stitcher = Stitcher((24, 24), n_side, crop=6, backend=backend, n_canvases=2)
    assert stitcher.backend == backend and tuple(stitcher.canvas.shape) == stitcher.canvas_shape
    origins, fractions = stitcher.place(pos)
    targets, gains = stitcher.targets(0, n)
    stitcher.record_weights(origins, fractions, targets, gains)
    fractions = fractions.astype(np.float32)
    kernel = stitcher.guarded_kernel(batch, 1)
    if backend == "tensorflow":
        import tensorflow as tf

        step, to = tf.function(kernel, jit_compile=True), tf.constant
    elif backend == "jax":
        import jax

        step, to = jax.jit(kernel, donate_argnums=0), lambda a: jax.device_put(a, stitcher.device)
    else:
        import torch

        # The kernel takes its inputs on the canvas's device (a GPU where there is one).
        step, to = kernel, lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(stitcher.device)
    for start in range(0, n + batch, batch):  # the last batch is all padding
        rows = np.arange(start, start + batch)
        inside = rows < n
        rows = np.minimum(rows, n - 1)
        p = np.where(inside[:, None, None], patches[rows], np.nan).astype(np.complex64)
        g = np.where(inside[:, None], gains[rows], 0).astype(np.float32)
        stitcher.canvas, count = step(stitcher.canvas, to(p), to(origins[rows]), to(fractions[rows]),
                                      to(targets[rows]), to(g))
        stitcher.count_nonfinite(count)
    image, weights = stitcher.result(0)
    np.testing.assert_allclose(weights, w_ref, atol=1e-6, rtol=1e-6)
    np.testing.assert_allclose(image, ref, atol=1e-5, rtol=0)
    # One valid NaN patch, into canvas 1: counted, so that canvas's result is refused.
    bad = np.full((batch, n_side, n_side), np.nan, np.complex64)
    g = np.zeros((batch, 1), np.float32)
    g[0] = 1
    stitcher.record_weights(origins[:1], fractions[:1].astype(np.float64), np.ones((1, 1), np.int32), g[:1])
    stitcher.canvas, count = step(stitcher.canvas, to(bad), to(origins[:batch]), to(fractions[:batch]),
                                  to(np.ones((batch, 1), np.int32)), to(g))
    assert int(count) == 1
    stitcher.count_nonfinite(count)
    with pytest.raises(StitchError, match="1 patches have non-finite values"):
        stitcher.result(1)


def test_backend_names_and_a_missing_library(monkeypatch):
    assert reassembly.canonical_backend("xla") == "tensorflow"
    assert [reassembly.canonical_backend(b) for b in reassembly.BACKENDS] == list(reassembly.BACKENDS)
    monkeypatch.setitem(sys.modules, "jax", None)  # `import jax` now raises ImportError
    with pytest.raises(StitchError, match=r"'jax' stitching backend needs JAX .*compare-models\[jax\]"):
        Stitcher((10, 10), 4, backend="jax")
    with pytest.raises(StitchError, match="NumPy backend has no kernel"):
        Stitcher((10, 10), 4, backend="numpy").kernel(4)


# --------------------------------------------------------------------------- refusals


def test_rejects_159_patches_for_5088_positions():
    patches = np.zeros((159, 8, 8), np.complex64)
    pos = np.full((5088, 2), 20.0)
    for backend in AVAILABLE:
        with pytest.raises(StitchError, match="159 patches for 5088 positions"):
            stitch(patches, pos, (40, 40), backend=backend)


@pytest.mark.parametrize(
    "patches, pos, shape, kwargs, message",
    [
        (np.zeros((2, 8, 8)), np.full((2, 2), np.nan), (20, 20), {}, "non-finite"),
        (np.full((2, 8, 8), np.inf), np.full((2, 2), 10.0), (20, 20), {}, "non-finite"),
        (np.zeros((8, 8)), np.full((1, 2), 10.0), (20, 20), {}, r"\(n, N, N\)"),
        (np.zeros((2, 8, 6)), np.full((2, 2), 10.0), (20, 20), {}, r"\(n, N, N\)"),
        (np.zeros((2, 8, 8)), np.full((2, 3), 10.0), (20, 20), {}, r"\(n, 2\)"),
        (np.zeros((2, 8, 8)), np.full(2, 10.0), (20, 20), {}, r"\(n, 2\)"),
        (np.zeros((0, 8, 8)), np.zeros((0, 2)), (20, 20), {}, "n = 0"),
        (np.zeros((2, 8, 8)), np.full((2, 2), 10.0), (20, 20), {"crop": 0}, r"crop must be in \(0, N\]"),
        (np.zeros((2, 8, 8)), np.full((2, 2), 10.0), (20, 20), {"crop": 9}, r"crop must be in \(0, N\]"),
        (np.zeros((2, 8, 8)), np.full((2, 2), 10.0), (20, 20), {"crop": 4.0}, "crop must be an integer"),
        (np.zeros((2, 8, 8)), np.full((2, 2), 10.0), (20,), {}, "shape must be"),
        (np.zeros((2, 8, 8)), np.full((2, 2), 10.0), (20, 0), {}, "shape must be"),
        (np.zeros((2, 8, 8)), np.full((2, 2), 10.0), (20, 20), {"chunk": 0}, "chunk"),
        (np.zeros((2, 8, 8)), np.full((2, 2), 10.0), (20, 20), {"backend": "cuda"}, "backend"),
        (np.zeros((2, 8, 8)), np.full((2, 2), 10.0), (20, 20), {"interpolation": "cubic"}, "interpolation"),
        (np.zeros((2, 8, 8)), [[10.0, 10.0], [40.0, 10.0]], (20, 20), {}, "patch 1 .* entirely outside"),
        (np.zeros((1, 8, 8)), [[-4.0, 10.0]], (20, 20), {}, "entirely outside"),
        (np.zeros((1, 8, 8)), [[10.0, 24.0]], (20, 20), {}, "entirely outside"),
    ],
)
def test_refuses_impossible_input(patches, pos, shape, kwargs, message):
    with pytest.raises(StitchError, match=message):
        stitch(patches, pos, shape, **kwargs)


def test_partly_outside_patch_is_clipped_not_refused():
    # Centre x = 1, N = 8: window cols -3..4 (5 inside); with crop 4: cols -1..2 (3 inside).
    patches = np.ones((1, 8, 8), np.complex64)
    for crop, inside_cols in [(None, 5), (4, 3)]:
        for backend in AVAILABLE:
            image, weights = stitch(patches, [[1.0, 10.0]], (20, 20), crop=crop, backend=backend)
            assert int((weights.sum(axis=0) > 0).sum()) == inside_cols
            np.testing.assert_allclose(image[weights > 0], 1.0)
    # A window only one pixel inside (x = -3 -> cols -7..0) is still accepted.
    image, weights = stitch(patches, [[-3.0, 10.0]], (20, 20), backend="numpy")
    assert weights[:, 0].sum() == 8 and weights[:, 1:].sum() == 0


def test_read_only_and_real_inputs_are_accepted():
    rng = np.random.default_rng(7)
    patches = random_object(rng, 3 * 8, 8).reshape(3, 8, 8)
    pos = rng.uniform(6, 14, (3, 2))
    ref, _ = stitch(patches, pos, (20, 20), backend="numpy")
    frozen = patches.copy()
    frozen.flags.writeable = False
    real_ref, _ = stitch(patches.real, pos, (20, 20), backend="numpy")
    for backend in AVAILABLE[1:]:
        image, _ = stitch(frozen, pos, (20, 20), backend=backend)
        np.testing.assert_allclose(image, ref, atol=1e-5, rtol=0)
        real_kernel, _ = stitch(patches.real.astype(np.float64), pos, (20, 20), backend=backend)
        np.testing.assert_allclose(real_kernel, real_ref, atol=1e-5, rtol=0)
    as_complex, _ = stitch(patches.real.astype(np.complex64), pos, (20, 20), backend="numpy")
    np.testing.assert_array_equal(real_ref, as_complex)
    # Bilinear splatting is real-linear; a Fourier shift of an even-sided patch is not (its
    # Nyquist bin takes a complex phase), so the real part only commutes with the former.
    bilinear, _ = stitch(patches, pos, (20, 20), backend="numpy", interpolation="bilinear")
    real_bilinear, _ = stitch(patches.real, pos, (20, 20), backend="numpy", interpolation="bilinear")
    np.testing.assert_allclose(real_bilinear, bilinear.real, atol=1e-6, rtol=0)


# --------------------------------------------------------------------------- module hygiene


def test_import_does_not_load_an_array_library():
    code = ("import sys, compare_models.imaging.stitching; "
            "print(sorted(m for m in ('tensorflow', 'jax', 'torch', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_docstring_example():
    failures, _ = doctest.testmod(reassembly, verbose=False)
    assert failures == 0
