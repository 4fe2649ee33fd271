"""Stitching: predicted patches -> one object image in the ground-truth frame.

``stitch`` places every (optionally cropped) patch at its absolute scan position on the object
grid (docs/design.md, "Frames and units"), accumulates values and weights, and normalises.

Sub-pixel positions are handled the way the simulator and pty-chi handle them by default
(``interpolation="fourier"``; docs/simulation.md): each whole N x N patch is Fourier-shifted by
its residual ``r = x - round(x)``, then its central M x M window is added at integer pixels
from ``round(x) - N/2 + crop_start``. This is the exact inverse of the ground-truth patches
``Y`` (:func:`compare_models.imaging.geometry.object_patches`), so stitching ``Y`` gives the
object back to rounding error, with or without a crop. ``interpolation="bilinear"`` splats
each window's pixels onto their four neighbours instead.

One interface, a kernel per backend
-----------------------------------
:class:`Stitcher` is the one interface; ``backend`` picks the array library its canvas lives
in and the kernel that adds patches to it:

- ``"numpy"``: the reference. Shifts windows of values *and* of ones in float64 and slice-adds
  them one by one on the host. Every other backend is tested against it.
- ``"tensorflow"`` (alias ``"xla"``): a ``tf.function(jit_compile=True)`` loop of
  ``dynamic_slice`` + add + ``dynamic_update_slice``, one window at a time (fastest on XLA-CPU).
- ``"jax"``: one scatter-add (``canvas.at[index].add``) of the whole batch's windows on a
  flattened canvas, under ``jax.jit``.
- ``"torch"``: one ``index_add_`` of the whole batch's windows on a flattened view of the
  canvas, on the canvas's device (in place; ``keras.ops.scatter`` is not used: under torch it
  loops in Python).

The contract every non-NumPy backend keeps (what a caller that stitches inside its own compiled
step relies on, e.g. :func:`compare_models.models.inference.predict_and_stitch`):

1. **Canvas.** :attr:`Stitcher.canvas` is the backend's own array type (``tf.Tensor``,
   ``jax.Array``, ``torch.Tensor``) on the backend's device, float32, contiguous, of shape
   :attr:`Stitcher.canvas_shape` = ``(C, H + 2K, 2, W + 2K)``: C canvases, real and imaginary
   planes as rows of axis 2, K = M + 1 pixels of padding on every side. It is created (zeros)
   on first use; a caller assigns the updated array back (``stitcher.canvas = new``).
2. **Kernel.** :meth:`Stitcher.kernel` ``(batch, n_targets)`` returns a backend-native,
   traceable function ``(canvas, patches, origins, fractions, targets, gains) -> canvas`` that
   adds ``batch`` patches: ``patches`` (B, N, N) complex64; ``origins`` (B, 2) int32, (x, y)
   of each window on the padded canvas, from :meth:`Stitcher.place`; ``fractions`` (B, 2)
   float32, from :meth:`Stitcher.place`; ``targets`` (B, T) int32 canvas indices and ``gains``
   (B, T) float32 (1 = add, 0 = skip), from :meth:`Stitcher.targets`. All on the canvas's
   device. It may be traced inside the caller's own ``tf.function`` / ``jax.jit`` or called
   eagerly (torch, under ``torch.no_grad``). The TensorFlow and JAX kernels are pure (return
   a new canvas; donate it under ``jax.jit``); the torch kernel adds in place and returns the
   same tensor. A patch of gain 0 still enters the sum multiplied by 0, so padding patches must
   be finite (zeros): :meth:`Stitcher.guarded_kernel` zeroes padding and non-finite patches
   first and also returns how many valid patches were not finite.
3. **Weights.** They depend on the positions only: the caller records them on the host with
   :meth:`Stitcher.record_weights` (exact float64, O(patches)), once per patch it adds
   through a kernel. :meth:`Stitcher.add` does all of this for NumPy patches.
4. **Result.** :meth:`Stitcher.result` brings one canvas back to the host as NumPy:
   ``(image complex64, weights float32)``, identical in meaning across backends; float32
   accumulation (and, on a GPU, the order of atomic adds) makes backends differ from the
   NumPy reference by float32 rounding only.

Importing this module imports no array library but NumPy; each backend's library is imported
when a stitcher of that backend is made.
"""

from __future__ import annotations

import functools
from types import MappingProxyType

import numpy as np

from ..errors import StitchError
from .geometry import fourier_shift, split_nearest, split_positions

__all__ = ["stitch", "Stitcher", "crop_start", "canonical_backend", "BACKENDS", "DEFAULT_CHUNK", "WEIGHT_FLOOR"]

#: Patches per compiled XLA call. 256 measured fastest here, with 128 (n = 5088, N = 64; 512
#: and 1024 were 7 % and 19 % slower); see docs/performance.md.
DEFAULT_CHUNK = 256

#: A pixel counts as covered when its accumulated weight exceeds this. Weights are sums of
#: products of bilinear fractions, so only a pixel reached solely by a corner whose two
#: fractions are both below ~1e-5 falls under it; such a pixel is reported uncovered (0).
WEIGHT_FLOOR = 1e-10

#: The stitching backends: NumPy (the float64 reference) and one per array library.
BACKENDS = ("numpy", "tensorflow", "jax", "torch")
#: Other names accepted for a backend ("xla": the TensorFlow kernel's historical name).
_ALIASES = MappingProxyType({"xla": "tensorflow"})
_LIBRARY = MappingProxyType(
    {"tensorflow": "TensorFlow", "jax": "JAX (pip install 'compare-models[jax]')", "torch": "PyTorch"}
)
_INTERPOLATIONS = ("bilinear", "fourier")


def canonical_backend(backend: str) -> str:
    """The backend's name in :data:`BACKENDS` (``"xla"`` -> ``"tensorflow"``).

    Raises
    ------
    StitchError
        An unknown name.
    """
    name = _ALIASES.get(backend, backend) if isinstance(backend, str) else backend
    if name not in BACKENDS:
        raise StitchError(f"backend must be one of {BACKENDS} (or 'xla' for 'tensorflow'), got {backend!r}")
    return name


def crop_start(patch_size: int, crop: int) -> int:
    """First row (and column) of the central ``crop`` x ``crop`` window of an N x N patch.

    The kept window is rows ``N//2 - M//2 .. N//2 - M//2 + M - 1``: for even M exactly
    ``N/2 - M/2 .. N/2 + M/2 - 1`` (centred on patch pixel N/2, as the full patch is); for odd
    M the window is symmetric about patch pixel ``N//2`` (``M//2`` pixels on each side).
    """
    return patch_size // 2 - crop // 2


def stitch(
    patches,
    positions_xy,
    shape,
    *,
    crop: int | None = None,
    backend: str = "tensorflow",
    chunk: int = DEFAULT_CHUNK,
    interpolation: str = "fourier",
):
    """Stitch patches into one complex image on the object grid.

    Parameters
    ----------
    patches : array_like (n, N, N), complex (real is accepted)
        Predicted (or ground-truth) patches.
    positions_xy : array_like (n, 2), float
        Patch centres in object pixels, x = column, y = row. Patch pixel (N/2, N/2) sits on
        object pixel (y, x); patch pixel (i, j) sits on object coordinate
        ``(y - N/2 + i, x - N/2 + j)`` (``compare_models.imaging.geometry``).
    shape : tuple (H, W)
        The object grid (that of ``objectGuess``). Parts of patches outside it are dropped.
    crop : int, optional
        Keep only the central ``crop`` x ``crop`` window of each patch (see ``crop_start``);
        ``0 < crop <= N``. Default: the whole patch.
    backend : {"tensorflow", "jax", "torch", "numpy"}
        The kernel (module docstring): ``"tensorflow"`` (alias ``"xla"``), ``"jax"`` or
        ``"torch"`` (fast, float32 accumulation), or ``"numpy"`` (reference, float64).
    chunk : int
        Patches per kernel call (ignored by the result; the NumPy backend uses it as its
        batch size for building windows).
    interpolation : {"fourier", "bilinear"}
        How a patch is moved by its sub-pixel position. ``"fourier"`` (default): the whole
        N x N patch is shifted by ``r = c - round(c)`` (``c`` the object coordinate of patch pixel
        N//2; ``geometry.split_nearest``) with a Fourier phase ramp, periodic over the patch,
        then its central M x M window is added at integer pixels, each with weight 1: the
        inverse of ``geometry.object_patches`` and of pty-chi's sub-pixel model.
        ``"bilinear"``: the M x M window is cut first, and each of its pixels is splatted onto
        its four neighbours with bilinear weights of ``floor`` fractions, on an (M+1) x (M+1)
        window; a window of ones is shifted the same way, so weights are exact at window edges.

    Returns
    -------
    image : ndarray (H, W) complex64
        ``sum / weight`` where the weight exceeds ``WEIGHT_FLOOR``, else 0.
    weights : ndarray (H, W) float32
        Accumulated weight per object pixel (each kept patch pixel contributes 1 in total,
        split bilinearly); 0 where no patch reaches.

    Raises
    ------
    StitchError
        Patch and position counts differ, wrong ranks or shapes, non-finite values, ``crop``
        outside (0, N], unknown backend or interpolation, or a patch that lies entirely
        outside ``shape``.

    Notes
    -----
    With integer positions both interpolations reduce to plain placement, so stitching patches
    cut from an object at integer positions returns the object exactly on the covered region.
    At sub-pixel positions, Fourier stitching of ``geometry.object_patches`` returns the object
    to float32 rounding. Bilinear splatting followed by normalisation reproduces any function
    that is linear over a window; errors are confined to curvature and to coverage edges.

    The fractional part of each position is taken in float64 before any canvas offset is
    added (``geometry.split_nearest``, ``geometry.split_positions``), so large coordinates do
    not lose precision.

    References
    ----------
    .. [1] L. Westover, "Footprint evaluation for volume rendering", SIGGRAPH 1990
       (splatting: forward-mapping each sample onto the output grid with a kernel).

    Examples
    --------
    >>> import numpy as np
    >>> obj = np.arange(64.0).reshape(8, 8).astype(np.complex64)
    >>> patches = np.stack([obj[0:4, 0:4], obj[4:8, 4:8]])
    >>> image, weights = stitch(patches, [[2, 2], [6, 6]], (8, 8), backend="numpy")
    >>> bool(np.allclose(image[:4, :4], obj[:4, :4])), float(weights[0, 5])
    (True, 0.0)
    """
    patches, positions, (height, width), m_keep = _validate(
        patches, positions_xy, shape, crop, backend, chunk, interpolation
    )
    stitcher = Stitcher(
        (height, width), patches.shape[1], crop=m_keep, backend=backend, chunk=chunk, interpolation=interpolation
    )
    stitcher._accumulate(patches, positions, 0)  # already validated
    return stitcher.result()


class Stitcher:
    """Stitch patches a chunk at a time into one or more canvases: memory O(canvas), not O(n).

    :func:`stitch` is ``Stitcher(...).add(all patches).result()``. Streaming callers add each
    chunk of predicted patches as it comes and drop it; the state is the canvases (float32
    planes in the backend's array type, complex128 for ``"numpy"``) and the weight maps,
    whatever the number of patches. Several canvases share one pass: each patch is added to
    the canvases its ``canvases`` row names (e.g. the full image and the patch's half-set
    image).

    Parameters
    ----------
    shape : tuple (H, W)
        The object grid.
    patch_size : int
        N.
    crop, backend, chunk, interpolation
        As in :func:`stitch`.
    n_canvases : int
        Number of images accumulated side by side (default 1).
    device : optional
        Where the canvas lives, in the backend's own terms: a ``jax.Device`` or a torch device
        (``"cuda"``, ``"cpu"``, a ``torch.device``). Default: the backend's default device
        (for torch, ``"cuda"`` when available, else ``"cpu"``). TensorFlow places it itself.

    Notes
    -----
    The module docstring states the contract of :attr:`canvas`, :meth:`kernel`,
    :meth:`record_weights` and :meth:`result` that a caller stitching inside its own compiled
    function relies on (:func:`compare_models.models.inference.predict_and_stitch` does, so
    patches never come back to the host). The weights depend on the positions only and are
    accumulated exactly in float64 on the host, O(patches) per add.
    """

    def __init__(self, shape, patch_size: int, *, crop=None, backend: str = "tensorflow",
                 chunk: int = DEFAULT_CHUNK, interpolation: str = "fourier", n_canvases: int = 1, device=None):
        _, _, (height, width), m_keep = _validate(
            np.zeros((1, patch_size, patch_size), np.complex64), np.zeros((1, 2)), shape, crop, backend, chunk,
            interpolation,
        )
        if isinstance(n_canvases, bool) or not isinstance(n_canvases, (int, np.integer)) or n_canvases < 1:
            raise StitchError(f"n_canvases must be a positive integer, got {n_canvases!r}")
        self.shape = (height, width)
        self.patch_size = int(patch_size)
        self.crop = m_keep
        self.backend = canonical_backend(backend)
        self.chunk = int(chunk)
        self.interpolation = interpolation
        self.n_canvases = int(n_canvases)
        self.n_added = np.zeros(self.n_canvases, np.int64)
        k_win = m_keep + 1
        self._k_win = k_win
        padded = (self.n_canvases, height + 2 * k_win, width + 2 * k_win)
        #: (C, H + 2K, 2, W + 2K): the shape of :attr:`canvas` (non-NumPy backends).
        self.canvas_shape = (self.n_canvases, height + 2 * k_win, 2, width + 2 * k_win)
        self._nonfinite = None
        self._canvas = None
        if self.backend == "numpy":
            self._total = np.zeros(padded, np.complex128)
            self._weights = np.zeros(padded)
            self.device = None
            return
        if self.backend == "jax" and int(np.prod(self.canvas_shape)) >= 2**31:
            raise StitchError(
                f"a canvas of shape {self.canvas_shape} has 2**31 or more elements, more than the JAX "
                "kernel's int32 indices reach; use fewer canvases or the torch backend"
            )
        # Exact float64 weights from 2-D difference arrays (see _weights_exact).
        self._diff = np.zeros((self.n_canvases, height + 2 * k_win + 1, width + 2 * k_win + 1))
        try:
            self._ops = _BACKEND_OPS[self.backend]()
        except ImportError as exc:
            raise StitchError(
                f"the {self.backend!r} stitching backend needs {_LIBRARY[self.backend]}, which is not installed "
                f"({exc}); install it or pick another backend from {BACKENDS}"
            ) from exc
        self.device = self._ops.device(device)

    # -- placement --------------------------------------------------------------------------

    def place(self, positions_xy):
        """Validated placement of patches centred at ``positions_xy`` (object pixels, x, y).

        Returns
        -------
        origins : ndarray (n, 2) int32
            (x, y) of each kept window's pixel (0, 0) on the padded canvas.
        fractions : ndarray (n, 2) float64
            Sub-pixel part: the Fourier residual in [-1/2, 1/2] or the bilinear fraction in
            [0, 1), rounded to float32 for the kernel backends (whose kernels shift by float32).
        """
        positions = np.asarray(positions_xy, dtype=np.float64)
        if positions.ndim != 2 or positions.shape[1] != 2:
            raise StitchError(f"positions_xy must have shape (n, 2) (x column, y row), got {positions.shape}")
        if not np.isfinite(positions).all():
            bad = int(np.flatnonzero(~np.isfinite(positions).all(axis=1))[0])
            raise StitchError(f"positions_xy has non-finite values (first at index {bad})")
        split = split_nearest if self.interpolation == "fourier" else split_positions
        origin_int, fraction = split(positions, self.patch_size)
        origin_int = origin_int + crop_start(self.patch_size, self.crop)
        _check_inside(origin_int, fraction, self.crop, *self.shape, positions, self.interpolation)
        if self.backend != "numpy":
            fraction = fraction.astype(np.float32).astype(np.float64)
        return (origin_int + self._k_win).astype(np.int32), fraction

    def targets(self, canvases, n: int):
        """``canvases`` (an int, (n,) or (n, T) ints; -1 = none) -> (n, T) int32 canvas indices
        (-1 replaced by 0) and (n, T) float32 gains (0 where -1)."""
        rows = np.asarray(canvases)
        if rows.ndim == 0:
            rows = np.full((n, 1), int(rows))
        elif rows.ndim == 1:
            rows = rows[:, None]
        if rows.ndim != 2 or rows.shape[0] != n or not np.issubdtype(rows.dtype, np.integer):
            raise StitchError(f"canvases must be an int or integer array of {n} rows, got shape {rows.shape}")
        if rows.size and (rows.min() < -1 or rows.max() >= self.n_canvases):
            raise StitchError(f"canvas indices must be in [-1, {self.n_canvases}), got {rows.min()}..{rows.max()}")
        gains = (rows >= 0).astype(np.float32)
        return np.maximum(rows, 0).astype(np.int32), gains

    def record_weights(self, origins, fractions, targets, gains) -> None:
        """Add the weights of windows at ``origins``/``fractions`` (from :meth:`place`) to the
        canvases ``targets`` with ``gains`` (from :meth:`targets`); kernel backends only."""
        if self.backend == "numpy":
            raise StitchError("record_weights is for the kernel backends; the NumPy backend weighs as it adds")
        m_keep, interpolation = self.crop, self.interpolation
        for t in range(targets.shape[1]):
            canvas, gain = targets[:, t], gains[:, t].astype(np.float64)
            _add_weight_boxes(self._diff, canvas, origins, fractions, m_keep, interpolation, gain)
            np.add.at(self.n_added, canvas[gain > 0], 1)

    # -- the device canvas and its kernels --------------------------------------------------

    @property
    def canvas(self):
        """The accumulated canvases: a float32 array of the backend's type, on its device, of
        shape :attr:`canvas_shape` (real and imaginary planes; K = crop + 1 of padding on every
        side). Zeros until something is added."""
        if self.backend == "numpy":
            raise StitchError("the NumPy backend has no device canvas")
        if self._canvas is None:
            self._canvas = self._ops.zeros(self.canvas_shape, self.device)
        return self._canvas

    @canvas.setter
    def canvas(self, value):
        self._canvas = value

    def count_nonfinite(self, count) -> None:
        """Record ``count`` (a scalar of any backend) patches with non-finite values, found by a
        caller that stitches through :meth:`guarded_kernel`; :meth:`result` raises if any were."""
        self._nonfinite = count if self._nonfinite is None else self._nonfinite + count

    def kernel(self, batch: int, n_targets: int = 1):
        """A backend-native traceable ``(canvas, patches, origins, fractions, targets, gains)
        -> canvas`` adding ``batch`` patches to ``T = n_targets`` canvases each (module
        docstring, point 2)."""
        if self.backend == "numpy":
            raise StitchError("the NumPy backend has no kernel; use add()")
        return self._ops.kernel(int(batch), self.patch_size, self.crop, self.interpolation, int(n_targets))

    def guarded_kernel(self, batch: int, n_targets: int = 1):
        """As :meth:`kernel`, but returns ``(canvas, n_nonfinite)``: patches whose gains are all
        0 (padding) or that hold a NaN or infinity are replaced by zeros before they are added,
        and ``n_nonfinite`` (a scalar int32 of the backend) counts the latter among the valid
        ones (pass it to :meth:`count_nonfinite`)."""
        if self.backend == "numpy":
            raise StitchError("the NumPy backend has no kernel; use add()")
        kernel, ops = self.kernel(batch, n_targets), self._ops

        def add(canvas, patches, origins, fractions, targets, gains):
            keep, nonfinite = ops.finite_and_valid(patches, gains)
            return kernel(canvas, ops.zero_unless(keep, patches), origins, fractions, targets, gains), nonfinite

        return add

    # -- accumulation -----------------------------------------------------------------------

    def add(self, patches, positions_xy, canvases=0) -> None:
        """Add patches (n, N, N) centred at ``positions_xy`` (n, 2) to ``canvases``.

        ``canvases``: the canvas index of every patch (an int for all), or an (n, T) array of
        indices, -1 for none, to add each patch to T canvases at the cost of shifting it once.
        """
        patches = np.asarray(patches)
        if patches.ndim != 3 or patches.shape[1:] != (self.patch_size, self.patch_size):
            raise StitchError(
                f"patches must have shape (n, {self.patch_size}, {self.patch_size}), got {patches.shape}"
            )
        _check_numeric(patches)
        positions = np.asarray(positions_xy, dtype=np.float64)
        if positions.shape != (patches.shape[0], 2):
            raise StitchError(
                f"{patches.shape[0]} patches for positions_xy of shape {positions.shape}: stitching "
                "needs exactly one position (x, y) per patch"
            )
        if patches.shape[0] == 0:
            return
        _check_finite(patches)
        self._accumulate(patches, positions, canvases)

    def _accumulate(self, patches, positions, canvases):
        origins, fractions = self.place(positions)
        targets, gains = self.targets(canvases, patches.shape[0])
        if self.backend == "numpy":
            self._add_numpy(patches, origins, fractions, targets, gains)
            return
        self.record_weights(origins, fractions, targets, gains)
        self._add_kernel(patches, origins, fractions.astype(np.float32), targets, gains)

    def _add_numpy(self, patches, origins, fractions, targets, gains):
        s0 = crop_start(self.patch_size, self.crop)
        k_win = self._k_win
        for start in range(0, patches.shape[0], self.chunk):
            stop = min(start + self.chunk, patches.shape[0])
            value, weight = _windows_numpy(patches[start:stop], fractions[start:stop], s0, self.crop, self.interpolation)
            for j, (c0, r0) in enumerate(origins[start:stop]):
                for canvas, gain in zip(targets[start + j], gains[start + j], strict=True):
                    if gain:
                        self._total[canvas, r0 : r0 + k_win, c0 : c0 + k_win] += value[j]
                        self._weights[canvas, r0 : r0 + k_win, c0 : c0 + k_win] += weight[j]
                        self.n_added[canvas] += 1

    def _add_kernel(self, patches, origins, fractions, targets, gains):
        """NumPy patches -> the backend's kernel, one padded chunk at a time."""
        n, n_side, chunk = patches.shape[0], self.patch_size, self.chunk
        step = self._ops.compiled(chunk, n_side, self.crop, self.canvas_shape, self.interpolation, targets.shape[1])
        canvas = self.canvas
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            p = np.ascontiguousarray(patches[start:stop], dtype=np.complex64)
            if not p.flags.writeable:  # DLPack cannot export read-only arrays (e.g. memory maps)
                p = p.copy()
            o, f = origins[start:stop], fractions[start:stop]
            t, g = targets[start:stop], gains[start:stop]
            if stop - start < chunk:  # pad the last chunk with all-zero patches at (0, 0)
                extra = chunk - (stop - start)
                p = np.concatenate([p, np.zeros((extra, n_side, n_side), np.complex64)])
                o = np.concatenate([o, np.zeros((extra, 2), np.int32)])
                f = np.concatenate([f, np.zeros((extra, 2), np.float32)])
                t = np.concatenate([t, np.zeros((extra, t.shape[1]), np.int32)])
                g = np.concatenate([g, np.zeros((extra, g.shape[1]), np.float32)])
            canvas = step(canvas, *self._ops.to_device((p, o, f, t, g), self.device))
        self._canvas = canvas

    # -- result -----------------------------------------------------------------------------

    def result(self, index: int = 0):
        """``(image, weights)`` of canvas ``index`` as NumPy arrays, as :func:`stitch` returns
        them, whatever the backend.

        Raises
        ------
        StitchError
            If nothing was added to that canvas, or patches with non-finite values were.
        """
        height, width = self.shape
        k_win = self._k_win
        inner = (slice(k_win, k_win + height), slice(k_win, k_win + width))
        if self.n_added[index] == 0:
            raise StitchError(f"no patches to stitch (n = 0) in canvas {index}")
        if self.backend == "numpy":
            total, weights = self._total[index][inner], self._weights[index][inner]
        else:
            if self._nonfinite is not None and int(self._nonfinite) > 0:
                raise StitchError(f"{int(self._nonfinite)} patches have non-finite values")
            planes = self._ops.to_numpy(self.canvas[index])[k_win : k_win + height, :, k_win : k_win + width]
            total = planes[:, 0].astype(np.float64) + 1j * planes[:, 1]
            weights = self._diff[index].cumsum(axis=0).cumsum(axis=1)[inner]
        covered = weights > WEIGHT_FLOOR
        image = np.zeros((height, width), dtype=np.complex64)
        image[covered] = total[covered] / weights[covered]
        weights = np.where(covered, weights, 0.0).astype(np.float32)
        return image, weights


# --------------------------------------------------------------------------- validation


def _validate(patches, positions_xy, shape, crop, backend, chunk, interpolation):
    canonical_backend(backend)
    if interpolation not in _INTERPOLATIONS:
        raise StitchError(f"interpolation must be one of {_INTERPOLATIONS}, got {interpolation!r}")
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise StitchError(f"chunk must be a positive integer, got {chunk!r}")
    patches = np.asarray(patches)
    if patches.ndim != 3 or patches.shape[1] != patches.shape[2] or patches.shape[1] < 1:
        raise StitchError(f"patches must have shape (n, N, N), got {patches.shape}")
    _check_numeric(patches)
    positions = np.asarray(positions_xy, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 2:
        raise StitchError(f"positions_xy must have shape (n, 2) (x column, y row), got {positions.shape}")
    n_patches, n_positions = patches.shape[0], positions.shape[0]
    if n_patches != n_positions:
        raise StitchError(
            f"{n_patches} patches for {n_positions} positions: stitching needs exactly one "
            "patch per scan position"
        )
    if n_patches == 0:
        raise StitchError("no patches to stitch (n = 0)")
    if not np.isfinite(positions).all():
        bad = int(np.flatnonzero(~np.isfinite(positions).all(axis=1))[0])
        raise StitchError(f"positions_xy has non-finite values (first at index {bad})")
    _check_finite(patches)
    try:
        height, width = (int(s) for s in shape)
    except (TypeError, ValueError) as exc:
        raise StitchError(f"shape must be (H, W), got {shape!r}") from exc
    if height < 1 or width < 1 or np.ndim(shape) != 1:
        raise StitchError(f"shape must be two positive integers (H, W), got {shape!r}")
    n_side = patches.shape[1]
    if crop is None:
        m_keep = n_side
    else:
        if isinstance(crop, bool) or not isinstance(crop, (int, np.integer)):
            raise StitchError(f"crop must be an integer in (0, {n_side}], got {crop!r}")
        m_keep = int(crop)
        if not 0 < m_keep <= n_side:
            raise StitchError(f"crop must be in (0, N] = (0, {n_side}], got {m_keep}")
    return patches, positions, (height, width), m_keep


def _check_numeric(patches):
    if not (np.issubdtype(patches.dtype, np.number) and not np.issubdtype(patches.dtype, np.bool_)):
        raise StitchError(f"patches must be numeric (complex or real), got dtype {patches.dtype}")


def _check_finite(patches):
    """Raise naming the first patch with a NaN or infinite value.

    A sum propagates NaN and +-inf without a temporary array; only if it is not finite (or
    overflowed) is every element checked, to confirm and name the culprit. (Taking the sum
    inside the XLA kernel instead was measured ~10 ms slower: XLA-CPU does not fuse it.)
    """
    if not np.isfinite(patches.sum()):
        _raise_if_not_finite(patches)


def _raise_if_not_finite(patches):
    """Raise naming the first patch with a NaN or infinite value (called after a non-finite sum)."""
    finite = np.isfinite(patches).reshape(patches.shape[0], -1).all(axis=1)
    if not finite.all():
        raise StitchError(f"patches have non-finite values (first in patch {int(np.flatnonzero(~finite)[0])})")


def _check_inside(origin_int, fraction, m_keep, height, width, positions, interpolation):
    """Refuse a patch whose kept window has no pixel on the object grid."""
    first = origin_int
    last = origin_int + m_keep - 1
    if interpolation == "bilinear":
        last = last + (fraction > 0)
    outside = (last[:, 0] < 0) | (last[:, 1] < 0) | (first[:, 0] >= width) | (first[:, 1] >= height)
    if outside.any():
        bad = int(np.flatnonzero(outside)[0])
        raise StitchError(
            f"patch {bad} at position (x, y) = {tuple(positions[bad])} lies entirely outside "
            f"the object grid of shape (H, W) = {(height, width)} ({int(outside.sum())} such "
            "patches); positions must be in object pixels of that grid"
        )


# --------------------------------------------------------------------------- NumPy reference


def _tents(fraction, m_keep, interpolation):
    """1-D weights (n, M+1) of a window per axis: bilinear tent, or M ones then a 0 (Fourier)."""
    n = fraction.shape[0]
    t = np.zeros((n, m_keep + 1))
    if interpolation == "bilinear":
        t[:, :m_keep] += 1 - fraction[:, None]
        t[:, 1:] += fraction[:, None]
    else:
        t[:, :m_keep] = 1.0
    return t


def _windows_numpy(patches, frac, s0, m_keep, interpolation):
    """(c, M+1, M+1) numerator windows and weight windows for one batch (float64)."""
    c = patches.shape[0]
    if interpolation == "fourier":  # shift the whole patch, then cut the window
        win = fourier_shift(patches, frac)[:, s0 : s0 + m_keep, s0 : s0 + m_keep]
    else:
        win = patches[:, s0 : s0 + m_keep, s0 : s0 + m_keep].astype(np.complex128)
    ty = _tents(frac[:, 1], m_keep, interpolation)
    tx = _tents(frac[:, 0], m_keep, interpolation)
    weight = ty[:, :, None] * tx[:, None, :]
    if interpolation == "bilinear":
        fy = frac[:, 1][:, None, None]
        fx = frac[:, 0][:, None, None]
        rows = np.zeros((c, m_keep + 1, m_keep), dtype=np.complex128)
        rows[:, :-1] += (1 - fy) * win
        rows[:, 1:] += fy * win
        value = np.zeros((c, m_keep + 1, m_keep + 1), dtype=np.complex128)
        value[:, :, :-1] += (1 - fx) * rows
        value[:, :, 1:] += fx * rows
    else:
        value = np.zeros((c, m_keep + 1, m_keep + 1), dtype=np.complex128)
        value[:, :m_keep, :m_keep] = win
    return value, weight


# --------------------------------------------------------------------------- exact weights (host)


def _add_weight_boxes(diff, canvas, origins, fraction, m_keep, interpolation, gain):
    """Add windows' weights to the 2-D difference arrays ``diff`` (C, H', W') in place.

    Per axis a window's weight is a sum of boxes: bilinear ``(1-f) box_M(o) + f box_M(o+1)``;
    Fourier ``box_M(o)``. The 2-D weight is the product of the two axes, so each window adds at
    most 4 boxes, i.e. 16 corner updates. ``origins`` are on the padded canvas.
    """

    def boxes(axis):
        f = fraction[:, axis]
        o = origins[:, axis].astype(np.int64)
        if interpolation == "bilinear":
            return [(o, 1 - f), (o + 1, f)]
        return [(o, np.ones_like(f))]

    for r0, wy in boxes(1):
        for c0, wx in boxes(0):
            w = wy * wx * gain
            r1, c1 = r0 + m_keep, c0 + m_keep
            np.add.at(diff, (canvas, r0, c0), w)
            np.add.at(diff, (canvas, r0, c1), -w)
            np.add.at(diff, (canvas, r1, c0), -w)
            np.add.at(diff, (canvas, r1, c1), w)


def _weights_exact(origin_int, fraction, m_keep, height, width, interpolation):
    """Weight map (H, W) float64 of windows at ``origin_int`` (unpadded) from a 2-D difference
    array: O(n + H W)."""
    k_win = m_keep + 1
    diff = np.zeros((1, height + 2 * k_win + 1, width + 2 * k_win + 1))
    n = origin_int.shape[0]
    _add_weight_boxes(diff, np.zeros(n, np.int64), origin_int + k_win, fraction, m_keep, interpolation, np.ones(n))
    weights = diff[0].cumsum(axis=0).cumsum(axis=1)
    return weights[k_win : k_win + height, k_win : k_win + width]


# --------------------------------------------------------------------------- TensorFlow kernel


def _stitch_ops(chunk, n_side, m_keep, interpolation, n_targets):
    """A traceable ``(canvas, patches, origins, fractions, targets, gains) -> canvas``.

    ``canvas`` is (C, H', 2, W') float32 (real and imaginary rows), ``patches`` (chunk, N, N)
    complex64 (padding patches must be zeros, or have gain 0), ``origins`` (chunk, 2) int32
    (x, y) of each window in the padded canvas, ``fractions`` (chunk, 2) float32, ``targets``
    (chunk, T) int32 canvas indices and ``gains`` (chunk, T) float32 (0 or 1).
    """
    import tensorflow as tf
    from tensorflow.compiler.tf2xla.python import xla

    k_win = m_keep + 1
    s0 = crop_start(n_side, m_keep)
    # Four windows per loop iteration cut loop overhead by ~20 % (measured, M = 64).
    unroll = 4 if chunk % 4 == 0 else 1
    freq = np.fft.fftfreq(n_side).astype(np.float32)

    def windows(p, f):
        # Layout (chunk, row, re/im, column): the minor axis is a long spatial one, which XLA-CPU
        # vectorises far better than an interleaved re/im pair (measured 2x on the window build).
        fx = f[:, 0][:, None, None]
        fy = f[:, 1][:, None, None]
        if interpolation == "fourier":
            # Shift the whole N x N patch, then cut the window (the inverse of object_patches);
            # an unshifted patch is kept as it is, so integer scans stay exact.
            phase = -2.0 * np.pi * (fy * freq[None, :, None] + fx * freq[None, None, :])
            ramp = tf.complex(tf.cos(phase), tf.sin(phase))
            moved = tf.reduce_any(tf.not_equal(f, 0.0), axis=1)[:, None, None]
            p = tf.where(moved, tf.signal.ifft2d(tf.signal.fft2d(p) * ramp), p)
        win = p[:, s0 : s0 + m_keep, s0 : s0 + m_keep]
        x = tf.stack([tf.math.real(win), tf.math.imag(win)], axis=2)  # (c, M, 2, M)
        fy, fx = fy[..., None], fx[..., None]
        if interpolation == "bilinear":
            # Edge, overlap, edge by concatenation: the same sums as padding two shifted copies,
            # and a ~20 % faster window build on XLA-CPU (measured).
            a, b = (1 - fy) * x, fy * x
            x = tf.concat([a[:, :1], a[:, 1:] + b[:, :-1], b[:, -1:]], axis=1)
            a, b = (1 - fx) * x, fx * x
            x = tf.concat([a[..., :1], a[..., 1:] + b[..., :-1], b[..., -1:]], axis=3)
        else:
            x = tf.pad(x, [[0, 0], [0, 1], [0, 0], [0, 1]])
        return x  # (chunk, K, 2, K)

    def accumulate(canvas, patches, origins, fractions, targets, gains):
        w = windows(patches, fractions)
        w = w[:, None] * gains[:, :, None, None, None]  # (chunk, T, K, 2, K)

        def body(i, c):
            for j in range(unroll):  # patches stay in order: the sum does not depend on unroll
                k = unroll * i + j
                for t in range(n_targets):
                    start = tf.stack([targets[k, t], origins[k, 1], 0, origins[k, 0]])
                    cur = xla.dynamic_slice(c, start, [1, k_win, 2, k_win])
                    c = xla.dynamic_update_slice(c, cur + w[k, t][None], start)
            return i + 1, c

        n_iter = chunk // unroll
        _, canvas = tf.while_loop(lambda i, c: i < n_iter, body, [tf.constant(0), canvas])
        return canvas

    return accumulate


@functools.lru_cache(maxsize=16)
def _compiled_step(chunk, n_side, m_keep, canvas_shape, interpolation, n_targets):
    """The jit-compiled chunk step of :func:`_stitch_ops` for one set of shapes.

    Returned as a concrete function: calling it with tensors skips ``tf.function``'s argument
    conversion and trace lookup (≈ 0.3 ms per call, measured).
    """
    import tensorflow as tf

    accumulate = _stitch_ops(chunk, n_side, m_keep, interpolation, n_targets)
    step = tf.function(accumulate, jit_compile=True, reduce_retracing=False)
    return step.get_concrete_function(
        tf.TensorSpec(canvas_shape, tf.float32),
        tf.TensorSpec((chunk, n_side, n_side), tf.complex64),
        tf.TensorSpec((chunk, 2), tf.int32),
        tf.TensorSpec((chunk, 2), tf.float32),
        tf.TensorSpec((chunk, n_targets), tf.int32),
        tf.TensorSpec((chunk, n_targets), tf.float32),
    )


# --------------------------------------------------------------------------- JAX kernel


def _canvas_offsets(k_win, canvas_w):
    """(K, 2, K) offsets of a window's pixels (row i, plane p, column j) from its pixel
    (0, 0, 0) in a flattened (C, H', 2, W') canvas: ``(2 i + p) W' + j``."""
    rows = np.arange(k_win)[:, None, None]
    planes = np.arange(2)[None, :, None]
    cols = np.arange(k_win)[None, None, :]
    return (rows * 2 + planes) * canvas_w + cols


def _jax_ops(chunk, n_side, m_keep, interpolation, n_targets):
    """The JAX kernel: windows as in :func:`_stitch_ops`, then one scatter-add of the batch's
    T x K x 2 x K values into the flattened canvas (pure: returns the new canvas)."""
    import jax
    import jax.numpy as jnp

    k_win = m_keep + 1
    s0 = crop_start(n_side, m_keep)
    freq = np.fft.fftfreq(n_side).astype(np.float32)

    def windows(p, f):
        fx = f[:, 0][:, None, None]
        fy = f[:, 1][:, None, None]
        if interpolation == "fourier":
            phase = -2.0 * np.pi * (fy * freq[None, :, None] + fx * freq[None, None, :])
            ramp = jax.lax.complex(jnp.cos(phase), jnp.sin(phase))
            moved = jnp.any(f != 0.0, axis=1)[:, None, None]
            p = jnp.where(moved, jnp.fft.ifft2(jnp.fft.fft2(p) * ramp), p)
        win = p[:, s0 : s0 + m_keep, s0 : s0 + m_keep]
        x = jnp.stack([jnp.real(win), jnp.imag(win)], axis=2)  # (c, M, 2, M)
        fy, fx = fy[..., None], fx[..., None]
        if interpolation == "bilinear":
            a, b = (1 - fy) * x, fy * x
            x = jnp.concatenate([a[:, :1], a[:, 1:] + b[:, :-1], b[:, -1:]], axis=1)
            a, b = (1 - fx) * x, fx * x
            x = jnp.concatenate([a[..., :1], a[..., 1:] + b[..., :-1], b[..., -1:]], axis=3)
        else:
            x = jnp.pad(x, ((0, 0), (0, 1), (0, 0), (0, 1)))
        return x  # (chunk, K, 2, K)

    def accumulate(canvas, patches, origins, fractions, targets, gains):
        shape = canvas.shape
        canvas_h, canvas_w = shape[1], shape[3]
        w = windows(patches, fractions)[:, None] * gains[:, :, None, None, None]  # (B, T, K, 2, K)
        base = (targets * canvas_h + origins[:, 1:2]) * (2 * canvas_w) + origins[:, 0:1]  # (B, T)
        offsets = jnp.asarray(_canvas_offsets(k_win, canvas_w), jnp.int32)
        index = base[:, :, None, None, None] + offsets
        # Indices stay in bounds: place() keeps every window inside the padded canvas.
        flat = canvas.reshape(-1).at[index.reshape(-1)].add(w.reshape(-1), mode="promise_in_bounds")
        return flat.reshape(shape)

    return accumulate


class _JaxOps:
    """The JAX backend's array plumbing (imports JAX when made)."""

    name = "jax"

    def __init__(self):
        import jax  # noqa: F401  (fail here, at construction, when JAX is missing)

    @staticmethod
    def device(requested):
        import jax

        return requested if requested is not None else jax.devices()[0]

    @staticmethod
    def zeros(shape, device):
        import jax.numpy as jnp

        return jnp.zeros(shape, jnp.float32, device=device)

    @staticmethod
    def kernel(batch, n_side, m_keep, interpolation, n_targets):
        return _jax_ops(batch, n_side, m_keep, interpolation, n_targets)

    @staticmethod
    def finite_and_valid(patches, gains):
        import jax.numpy as jnp

        valid = jnp.max(gains, axis=1) > 0
        finite = jnp.all(jnp.isfinite(patches), axis=(1, 2))
        return valid & finite, jnp.sum(valid & ~finite, dtype=jnp.int32)

    @staticmethod
    def zero_unless(keep, patches):
        import jax.numpy as jnp

        return jnp.where(keep[:, None, None], patches, jnp.zeros_like(patches))

    @staticmethod
    def compiled(chunk, n_side, m_keep, canvas_shape, interpolation, n_targets):
        return _jax_compiled_step(chunk, n_side, m_keep, interpolation, n_targets)

    @staticmethod
    def to_device(arrays, device):
        import jax

        return jax.device_put(arrays, device)

    @staticmethod
    def to_numpy(array):
        return np.asarray(array)


@functools.lru_cache(maxsize=16)
def _jax_compiled_step(chunk, n_side, m_keep, interpolation, n_targets):
    """``jax.jit`` of the JAX kernel, the canvas donated (updated in place where the device
    allows)."""
    import jax

    return jax.jit(_jax_ops(chunk, n_side, m_keep, interpolation, n_targets), donate_argnums=0)


# --------------------------------------------------------------------------- torch kernel


def _torch_ops(chunk, n_side, m_keep, interpolation, n_targets):
    """The torch kernel: windows as in :func:`_stitch_ops`, then one ``index_add_`` of the
    batch's T x K x 2 x K values into a flattened view of the canvas, in place, on the
    canvas's device."""
    import torch

    k_win = m_keep + 1
    s0 = crop_start(n_side, m_keep)

    def windows(p, f):
        fx = f[:, 0][:, None, None]
        fy = f[:, 1][:, None, None]
        if interpolation == "fourier":
            freq = torch.fft.fftfreq(n_side, device=p.device, dtype=torch.float32)
            phase = -2.0 * np.pi * (fy * freq[None, :, None] + fx * freq[None, None, :])
            ramp = torch.complex(torch.cos(phase), torch.sin(phase))
            moved = (f != 0.0).any(dim=1)[:, None, None]
            p = torch.where(moved, torch.fft.ifft2(torch.fft.fft2(p) * ramp), p)
        win = p[:, s0 : s0 + m_keep, s0 : s0 + m_keep]
        x = torch.stack([win.real, win.imag], dim=2)  # (c, M, 2, M)
        fy, fx = fy[..., None], fx[..., None]
        if interpolation == "bilinear":
            a, b = (1 - fy) * x, fy * x
            x = torch.cat([a[:, :1], a[:, 1:] + b[:, :-1], b[:, -1:]], dim=1)
            a, b = (1 - fx) * x, fx * x
            x = torch.cat([a[..., :1], a[..., 1:] + b[..., :-1], b[..., -1:]], dim=3)
        else:
            x = torch.nn.functional.pad(x, (0, 1, 0, 0, 0, 1))
        return x  # (chunk, K, 2, K)

    @torch.no_grad()
    def accumulate(canvas, patches, origins, fractions, targets, gains):
        canvas_h, canvas_w = canvas.shape[1], canvas.shape[3]
        w = windows(patches, fractions)[:, None] * gains[:, :, None, None, None]  # (B, T, K, 2, K)
        origins = origins.long()
        base = (targets.long() * canvas_h + origins[:, 1:2]) * (2 * canvas_w) + origins[:, 0:1]  # (B, T)
        rows = torch.arange(k_win, device=canvas.device)[:, None, None]
        planes = torch.arange(2, device=canvas.device)[None, :, None]
        cols = torch.arange(k_win, device=canvas.device)[None, None, :]
        index = base[:, :, None, None, None] + (rows * 2 + planes) * canvas_w + cols
        canvas.view(-1).index_add_(0, index.reshape(-1), w.reshape(-1))
        return canvas

    return accumulate


class _TorchOps:
    """The torch backend's array plumbing (imports torch when made)."""

    name = "torch"

    def __init__(self):
        import torch  # noqa: F401  (fail here, at construction, when torch is missing)

    @staticmethod
    def device(requested):
        import torch

        if requested is not None:
            return torch.device(requested)
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    @staticmethod
    def zeros(shape, device):
        import torch

        return torch.zeros(shape, dtype=torch.float32, device=device)

    @staticmethod
    def kernel(batch, n_side, m_keep, interpolation, n_targets):
        return _torch_ops(batch, n_side, m_keep, interpolation, n_targets)

    @staticmethod
    def finite_and_valid(patches, gains):
        import torch

        valid = gains.amax(dim=1) > 0
        finite = torch.isfinite(patches).flatten(1).all(dim=1)
        return valid & finite, (valid & ~finite).sum(dtype=torch.int32)

    @staticmethod
    def zero_unless(keep, patches):
        import torch

        with torch.no_grad():
            return torch.where(keep[:, None, None], patches, torch.zeros_like(patches))

    @staticmethod
    def compiled(chunk, n_side, m_keep, canvas_shape, interpolation, n_targets):
        return _torch_ops(chunk, n_side, m_keep, interpolation, n_targets)  # eager

    @staticmethod
    def to_device(arrays, device):
        import torch

        return tuple(torch.from_numpy(a).to(device) for a in arrays)

    @staticmethod
    def to_numpy(array):
        return array.detach().cpu().numpy()


# --------------------------------------------------------------------------- TensorFlow plumbing


class _TensorFlowOps:
    """The TensorFlow backend's array plumbing (imports TensorFlow when made)."""

    name = "tensorflow"

    def __init__(self):
        import tensorflow  # noqa: F401  (fail here, at construction, when TensorFlow is missing)

    @staticmethod
    def device(requested):
        return requested  # None: TensorFlow places tensors itself (the GPU when there is one)

    @staticmethod
    def zeros(shape, device):
        import tensorflow as tf

        if device is None:
            return tf.zeros(shape, tf.float32)
        with tf.device(device):
            return tf.zeros(shape, tf.float32)

    @staticmethod
    def kernel(batch, n_side, m_keep, interpolation, n_targets):
        return _stitch_ops(batch, n_side, m_keep, interpolation, n_targets)

    @staticmethod
    def finite_and_valid(patches, gains):
        import tensorflow as tf

        valid = tf.reduce_max(gains, axis=1) > 0
        finite = tf.reduce_all(
            tf.math.is_finite(tf.math.real(patches)) & tf.math.is_finite(tf.math.imag(patches)), axis=[1, 2]
        )
        return valid & finite, tf.reduce_sum(tf.cast(valid & ~finite, tf.int32))

    @staticmethod
    def zero_unless(keep, patches):
        import tensorflow as tf

        return tf.where(keep[:, None, None], patches, tf.zeros_like(patches))

    @staticmethod
    def compiled(chunk, n_side, m_keep, canvas_shape, interpolation, n_targets):
        return _compiled_step(chunk, n_side, m_keep, tuple(canvas_shape), interpolation, n_targets)

    @staticmethod
    def to_device(arrays, device):
        import tensorflow as tf

        p, *rest = arrays
        # Hand the patches to TensorFlow without a copy (DLPack); a copy here cost ~40 ms/5088.
        return (tf.experimental.dlpack.from_dlpack(p.__dlpack__()), *(tf.constant(a) for a in rest))

    @staticmethod
    def to_numpy(array):
        return array.numpy()


_BACKEND_OPS = MappingProxyType({"tensorflow": _TensorFlowOps, "jax": _JaxOps, "torch": _TorchOps})
