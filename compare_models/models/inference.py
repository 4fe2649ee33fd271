"""Batched, streaming prediction with a shape invariant: one patch per scan position.

The model runs through a ``tf.function`` with a fixed input signature (``batch_size`` samples),
so it is traced once; the last batch of a chunk is padded with zeros and the padding is
dropped. Grouped inputs are built one chunk at a time, so working memory depends on ``chunk``
and not on the number of positions (only the returned patches grow with it). After every batch
the number of returned patches is checked against the number of inputs.

Every model, whatever its format, goes through the same loop
(:class:`~compare_models.models.interface.LoadedModel`): it builds its own inputs from the
dataset, one sample per scan position, and says where each predicted patch sits. For this
project's gridsize-g networks every scan position seeds one group
(:mod:`compare_models.models.grouping`) and the patch returned for position i is the seed
member's, at position i; PtychoPINN's networks return one patch per group, at the group's
centroid (:mod:`compare_models.models.ptychopinn.inputs`). Either way the result has exactly M
patches, in the dataset's order, at every batch size.
This project's networks re-form a group whose members reach beyond the bundle's region margin
(``bundle.json``'s ``region_pad``, the margin the model was trained with) from the seed's
nearest neighbours so that it fits.

Two entry points:

- :func:`predict_and_stitch`, what ``compare-models`` runs: streaming. Inputs are built a chunk
  at a time in a background thread (prefetch) while the previous chunk runs; every batch goes
  through one compiled step that runs the network *and* adds its patches into a
  :class:`~compare_models.imaging.stitching.Stitcher`'s canvases, so patches never come back
  to the host and nothing proportional to n x N² is held: the state is the canvases.
- :func:`predict`, which returns every patch (n, N, N): for tests, parity checks and callers
  that want the patches themselves.

Backends
--------
Both run under whichever Keras backend the process started with
(:mod:`compare_models.models.backend`): the network and the stitching kernel of the
:class:`~compare_models.imaging.stitching.Stitcher` of the same name (:func:`stitch_backend`)
run in one compiled step on the backend's device:

- TensorFlow: one ``tf.function(jit_compile=True)`` (XLA) of network + stitching kernel;
  ``jit="auto"`` falls back to a plain ``tf.function`` for the network, with a warning, when
  XLA cannot compile it.
- JAX: one ``jax.jit`` of the network (``stateless_call``, its weights passed as arguments)
  + the scatter-add kernel, the canvas donated so it is updated in place.
- PyTorch: the network call + the ``index_add_`` kernel, eagerly, under ``torch.no_grad()``.

Inside every step, matrix products and convolutions run in full float32
(:func:`~compare_models.models.backend.float32_precision`: TF32 off). The first call of a JAX
or TensorFlow step compiles: :meth:`PredictStitchStep.warm_up` pays that on zeros, so callers
time it apart.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..errors import CompareModelsError, ConfigError

__all__ = [
    "Prediction",
    "PredictionCountError",
    "StreamResult",
    "PredictStitchStep",
    "JIT_MODES",
    "predict",
    "predict_and_stitch",
    "build_predictor",
    "warm_up",
    "stitch_backend",
    "stream_step",
]

log = logging.getLogger("compare_models.inference")

#: ``"auto"``: XLA-compile, fall back to a plain ``tf.function`` if XLA cannot; ``"on"``: XLA
#: or an error; ``"off"``: no XLA for the network.
JIT_MODES = ("auto", "on", "off")


class PredictionCountError(CompareModelsError, RuntimeError):
    """The model returned a different number of patches than it was given samples."""


@dataclass(frozen=True, eq=False)
class Prediction:
    """Predicted object patches and where they sit.

    Attributes
    ----------
    patches : ndarray (M, N, N) complex64
        One patch per scan position.
    positions_xy : ndarray (M, 2) float64
        Patch centres in object pixels (x column, y row): the dataset's positions, or the
        group centroids for PtychoPINN's networks.
    input_details : dict
        How the inputs were made (normalisation, grouping), for provenance.
    """

    patches: np.ndarray
    positions_xy: np.ndarray
    input_details: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.patches.shape[0] != self.positions_xy.shape[0]:
            raise PredictionCountError(
                f"{self.patches.shape[0]} patches for {self.positions_xy.shape[0]} positions"
            )


def stitch_backend(model=None) -> str:
    """The :class:`~compare_models.imaging.stitching.Stitcher` backend whose canvas lives with
    the network's tensors: the Keras backend of this process (imports Keras), or, for a model
    that runs on its own device (``model.stitch_backend``: PtychoPINN's PyTorch models,
    ``"torch"``, canvas on ``model.device``), that one (imports nothing)."""
    if model is not None and hasattr(model, "stitch_backend"):
        return model.stitch_backend
    from .backend import active_backend

    return active_backend()


def build_predictor(model, batch_size: int, *, jit: bool = False):
    """The function :func:`predict` runs for ``model``: fixed batch shape, NumPy inputs in,
    (B, N, N) complex64 patches out (a backend tensor; ``np.asarray`` of it, or
    :func:`_to_numpy`, gives NumPy), compiled when ``jit`` (TensorFlow: XLA; JAX: always).
    Built once, it is traced on its first call (:func:`warm_up`)."""
    return _predict_function(model, int(batch_size), jit=bool(jit))


def warm_up(predictor, model, batch_size: int) -> None:
    """Call ``predictor`` once on an all-zero batch, so that its one-off tracing happens here
    and not inside a timed :func:`predict`."""
    batch = [np.zeros(shape, dtype) for shape, dtype in model.input_specs(int(batch_size))]
    _to_numpy(predictor(*batch))


def _to_numpy(tensor) -> np.ndarray:
    from keras import ops

    return ops.convert_to_numpy(tensor)


def _network_patches(model, batch_size: int, call=None):
    """A traceable ``(*inputs) -> (B, N, N) complex64`` patches (``keras.ops``, any backend);
    checks the output's static shape when traced (one patch per sample, N x N).

    ``call(inputs)``: how the network is run (default: ``model.model(inputs, training=False)``).
    """
    from keras import ops

    network, n_side = model.model, model.patch_size
    call = call or (lambda inputs: network(inputs, training=False))

    def patches_of(*inputs):
        outputs = call(inputs[0] if len(inputs) == 1 else list(inputs))
        patches = ops.cast(model.patches_from_outputs(outputs), "complex64")
        if patches.shape[0] not in (None, batch_size):
            raise PredictionCountError(f"the model returned {patches.shape[0]} patches for a batch of {batch_size}")
        if tuple(patches.shape[1:]) != (n_side, n_side):
            raise PredictionCountError(
                f"the model returned patches of shape {tuple(patches.shape[1:])}, expected ({n_side}, {n_side})"
            )
        return patches

    return patches_of


def _jax_stateless(model):
    """``(variables, call)``: the network's weights as JAX arrays, and ``call(variables,
    inputs)`` running it through ``stateless_call`` (weights as arguments of a ``jax.jit``,
    not constants baked into it)."""
    network = model.model
    variables = ([v.value for v in network.trainable_variables], [v.value for v in network.non_trainable_variables])

    def call(variables, inputs):
        outputs, _ = network.stateless_call(variables[0], variables[1], inputs, training=False)
        return outputs

    return variables, call


def _predict_function(model, batch_size: int, *, jit: bool = False):
    """A function of fixed batch shape returning (B, N, N) complex64 patches as a backend
    tensor: TensorFlow, a ``tf.function`` (XLA when ``jit``); JAX, a ``jax.jit`` (always
    compiled); PyTorch, the eager call under ``torch.no_grad``. Each runs in full float32."""
    from .backend import active_backend, float32_precision

    backend = active_backend()
    if backend == "tensorflow":
        import tensorflow as tf

        signature = [tf.TensorSpec(shape, getattr(tf, dtype)) for shape, dtype in model.input_specs(batch_size)]
        return tf.function(_network_patches(model, batch_size), input_signature=signature, jit_compile=jit or None,
                           autograph=False)
    if backend == "jax":
        import jax

        variables, call = _jax_stateless(model)
        compiled = jax.jit(lambda variables, *inputs: _network_patches(
            model, batch_size, lambda x: call(variables, x))(*inputs))

        def run_jax(*inputs):
            with float32_precision("jax"):
                return compiled(variables, *inputs)

        return run_jax
    import torch

    patches_of = _network_patches(model, batch_size)
    device = _torch_device()

    def run_torch(*inputs):
        with torch.no_grad(), float32_precision("torch"):
            return patches_of(*(torch.as_tensor(x, device=device) for x in inputs))

    return run_torch


def _torch_device():
    """The device Keras's torch backend computes on."""
    from keras import ops

    return ops.zeros(()).device


def predict(
    model, dataset, *, batch_size: int = 32, chunk: int = 4096, progress: bool = True, predictor=None,
    jit: bool = False,
) -> Prediction:
    """Predict one object patch per scan position of ``dataset``.

    Parameters
    ----------
    model : compare_models.models.interface.LoadedModel
        Any loaded model: this project's bundle or a PtychoPINN model. It builds its own
        inputs and says where each patch sits.
    dataset : compare_models.io.dataset.Dataset
        Its N must match the model's.
    batch_size : int
        Samples per model call (fixed shape; the last batch is padded).
    chunk : int
        Samples whose inputs are built at once (rounded up to a multiple of ``batch_size``).
    progress : bool
        Show a tqdm bar.
    predictor : callable, optional
        :func:`build_predictor` ``(model, batch_size)``, perhaps already warmed up; built
        here when not given.
    jit : bool
        XLA-compile the predictor built here (default off: this function returns every patch
        for tests and parity checks; :func:`predict_and_stitch` is the fast path).

    Returns
    -------
    Prediction
        ``patches`` (M, N, N) complex64 and ``positions_xy`` (M, 2) float64, in dataset order:
        the dataset's positions for this project's networks, the group centroids for
        PtychoPINN's gridsize-2 networks.

    Raises
    ------
    BundleError
        If the data does not fit the model (N, too few positions).
    PredictionCountError
        If a batch returns a different number of patches than it was given.
    """
    from tqdm.auto import tqdm

    from .backend import float32_precision

    batch_size, chunk, prepared = _prepare(model, dataset, batch_size, chunk)
    m = prepared.n_samples
    n_side = model.patch_size
    run = predictor if predictor is not None else _predict_function(model, batch_size, jit=jit)
    patches = np.empty((m, n_side, n_side), dtype=np.complex64)
    with tqdm(total=m, desc=f"predict {model.kind}", unit="pos", disable=not progress) as bar, \
            float32_precision():
        for chunk_start in range(0, m, chunk):
            indices = np.arange(chunk_start, min(m, chunk_start + chunk))
            chunk_inputs = prepared.build(indices)
            for start in range(0, len(indices), batch_size):
                stop = min(len(indices), start + batch_size)
                n_valid = stop - start
                batch = [_pad(part[start:stop], batch_size) for part in chunk_inputs]
                output = _to_numpy(run(*batch))
                if output.shape[0] != batch_size:
                    raise PredictionCountError(
                        f"the model returned {output.shape[0]} patches for a batch of {batch_size}"
                    )
                if output.shape[1:] != (n_side, n_side):
                    raise PredictionCountError(
                        f"the model returned patches of shape {output.shape[1:]}, expected ({n_side}, {n_side})"
                    )
                patches[chunk_start + start : chunk_start + stop] = output[:n_valid]
                bar.update(n_valid)
    return Prediction(
        patches=patches,
        positions_xy=np.array(prepared.positions_xy, dtype=np.float64),
        input_details=dict(prepared.details),
    )


def _prepare(model, dataset, batch_size, chunk):
    """Checked ``(batch_size, chunk, prepared inputs)``: ``chunk`` rounded up to a multiple of
    ``batch_size``, one sample per scan position."""
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if int(chunk) < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    batch_size = int(batch_size)
    chunk = -(-int(chunk) // batch_size) * batch_size
    model.check_compatible(dataset)
    prepared = model.prepare_inputs(dataset)
    if prepared.n_samples != dataset.n_positions:
        raise PredictionCountError(f"{prepared.n_samples} samples prepared for {dataset.n_positions} positions")
    return batch_size, chunk, prepared


def _pad(array: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad the first axis of ``array`` to ``size``."""
    if array.shape[0] == size:
        return array
    padding = np.zeros((size - array.shape[0],) + array.shape[1:], dtype=array.dtype)
    return np.concatenate([array, padding], axis=0)


# --------------------------------------------------------------------------------------------
# Streaming: predict a batch, stitch it, drop it


@dataclass(frozen=True, eq=False)
class StreamResult:
    """What :func:`predict_and_stitch` did (the images are in the stitcher).

    Attributes
    ----------
    n_patches : int
        Patches predicted and stitched: one per scan position.
    positions_xy : ndarray (M, 2) float64
        Where each patch sat (object pixels): the scan positions, or PtychoPINN's group
        centroids. O(M), not O(M N²).
    input_details : dict
        How the inputs were made (normalisation, grouping), for provenance.
    stream : dict
        How the pass ran: batches, whether the network was XLA-compiled, seconds the compute
        waited for prefetched inputs (near 0 when building inputs is hidden behind compute).
    """

    n_patches: int
    positions_xy: np.ndarray
    input_details: dict = field(default_factory=dict)
    stream: dict = field(default_factory=dict)


class PredictStitchStep:
    """One compiled step: a batch of model inputs -> patches -> added to a stitcher's canvases.

    Built for the Keras backend of this process (module docstring, "Backends"); the stitcher
    must be of the same backend (:func:`stitch_backend`), so the patches never leave the
    device. TensorFlow: network and stitching kernel in one ``tf.function(jit_compile=True)``
    (XLA); if XLA cannot compile the network (``jit="auto"``), the network runs in a plain
    ``tf.function`` and the kernel in its own XLA function. JAX: one ``jax.jit`` of both, the
    canvas donated. PyTorch: both eagerly under ``torch.no_grad()``. Patches with non-finite
    values are counted (the stitcher raises at
    :meth:`~compare_models.imaging.stitching.Stitcher.result`) and not added, and so are the
    padding samples of a short last batch (gain 0).

    Parameters
    ----------
    model : compare_models.models.interface.LoadedModel
    batch_size : int
        Samples per call (fixed shape).
    stitcher : compare_models.imaging.stitching.Stitcher
        Of the Keras backend's name; its canvas is updated by each call.
    n_targets : int
        Canvases each patch is added to (e.g. 2: the full image and its half-set image).
    jit : {"auto", "on", "off"}
        TensorFlow only (JAX always compiles; PyTorch runs eagerly).
    """

    def __init__(self, model, batch_size: int, stitcher, *, n_targets: int = 1, jit: str = "auto"):
        from .backend import active_backend

        if jit not in JIT_MODES:
            raise ConfigError(f"jit must be one of {JIT_MODES}, got {jit!r}")
        self.backend = active_backend()
        if stitcher.backend != self.backend:
            raise ConfigError(
                f"predict_and_stitch: the stitcher's backend is {stitcher.backend!r} but Keras runs on "
                f"{self.backend!r}; make the Stitcher with backend=stitch_backend()"
            )
        self.model, self.batch_size, self.stitcher = model, int(batch_size), stitcher
        self.n_targets, self.jit_mode = int(n_targets), jit
        self.jit = (jit != "off") if self.backend == "tensorflow" else self.backend == "jax"
        self.fallback_reason = None
        self._build()

    def _specs(self):
        """(shape, dtype) of the canvas, of each model input and of the four geometry arrays."""
        b, t = self.batch_size, self.n_targets
        geometry = [((b, 2), "int32"), ((b, 2), "float32"), ((b, t), "int32"), ((b, t), "float32")]
        return (tuple(self.stitcher.canvas_shape), "float32"), list(self.model.input_specs(b)), geometry

    def _build(self):
        add = self.stitcher.guarded_kernel(self.batch_size, self.n_targets)
        if self.backend == "tensorflow":
            self._build_tensorflow(add)
        elif self.backend == "jax":
            import jax

            variables, call = _jax_stateless(self.model)
            model, batch_size = self.model, self.batch_size

            def fused(canvas, variables, inputs, geometry):
                patches = _network_patches(model, batch_size, lambda x: call(variables, x))(*inputs)
                return add(canvas, patches, *geometry)

            compiled = jax.jit(fused, donate_argnums=0)
            self._call = lambda canvas, inputs, geometry: compiled(canvas, variables, list(inputs), list(geometry))
        else:
            import torch

            patches_of = _network_patches(self.model, self.batch_size)

            def eager(canvas, inputs, geometry):
                with torch.no_grad():
                    return add(canvas, patches_of(*inputs), *geometry)

            self._call = eager

    def _build_tensorflow(self, add):
        import tensorflow as tf

        patches_of = _network_patches(self.model, self.batch_size)
        (canvas_shape, _), inputs, geometry = self._specs()
        canvas_spec = tf.TensorSpec(canvas_shape, tf.float32)
        input_specs = [tf.TensorSpec(shape, getattr(tf, dtype)) for shape, dtype in inputs]
        geometry_specs = [tf.TensorSpec(shape, getattr(tf, dtype)) for shape, dtype in geometry]
        n_inputs = len(input_specs)
        if self.jit:
            def fused(canvas, *rest):
                return add(canvas, patches_of(*rest[:n_inputs]), *rest[n_inputs:])

            compiled = tf.function(fused, jit_compile=True, autograph=False).get_concrete_function(
                canvas_spec, *input_specs, *geometry_specs
            )
            self._call = lambda canvas, inputs, geometry: compiled(canvas, *inputs, *geometry)
        else:
            network = tf.function(patches_of, autograph=False).get_concrete_function(*input_specs)
            stitch = tf.function(add, jit_compile=True, autograph=False).get_concrete_function(
                canvas_spec, tf.TensorSpec((self.batch_size, self.model.patch_size, self.model.patch_size), tf.complex64),
                *geometry_specs,
            )
            self._call = lambda canvas, inputs, geometry: stitch(canvas, network(*inputs), *geometry)

    @property
    def on_cpu(self) -> bool:
        """Whether the step computes on the CPU."""
        if self.backend == "jax":
            return self.stitcher.device.platform == "cpu"
        if self.backend == "torch":
            return self.stitcher.device.type == "cpu"
        import tensorflow as tf

        return not tf.config.list_logical_devices("GPU")

    def to_device(self, arrays):
        """NumPy arrays -> tensors of the backend on the stitcher's device (the step's inputs)."""
        if self.backend == "tensorflow":
            import tensorflow as tf

            return [tf.constant(a) for a in arrays]
        if self.backend == "jax":
            import jax

            return jax.device_put(list(arrays), self.stitcher.device)
        import torch

        return [torch.as_tensor(a, device=self.stitcher.device) for a in arrays]

    def _wait(self, result) -> None:
        """Block until ``result`` (and the work before it) is computed."""
        if self.backend == "tensorflow":
            result[0].numpy()
        elif self.backend == "jax":
            import jax

            jax.block_until_ready(result)
        else:
            import torch

            if result[0].is_cuda:
                torch.cuda.synchronize(result[0].device)

    def warm_up(self) -> None:
        """Run one all-zero batch on a scratch canvas (the stitcher's is untouched), so that
        tracing and compilation (XLA under TensorFlow and JAX) happen here. With
        ``jit="auto"``, a network XLA cannot compile under TensorFlow is rebuilt without XLA,
        with a warning."""
        from .backend import float32_precision

        (canvas_shape, canvas_dtype), inputs, geometry = self._specs()

        def zeros():
            canvas = self.to_device([np.zeros(canvas_shape, canvas_dtype)])[0]
            return canvas, self.to_device([np.zeros(s, d) for s, d in inputs]), self.to_device(
                [np.zeros(s, d) for s, d in geometry])

        with float32_precision(self.backend):
            try:
                result = self._call(*zeros())
            except PredictionCountError:
                raise
            except Exception as exc:  # XLA refuses an op: InvalidArgumentError, UnimplementedError ...
                if self.backend != "tensorflow" or self.jit_mode != "auto" or not self.jit:
                    raise
                self.fallback_reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
                log.warning("XLA could not compile the %s network (%s); running it without XLA",
                            self.model.kind, self.fallback_reason)
                self.jit = False
                self._build()
                result = self._call(*zeros())
            self._wait(result)

    def __call__(self, inputs, geometry):
        """Add one batch: ``inputs`` (tensors of :meth:`LoadedModel.input_specs`), ``geometry``
        (origins, fractions, targets, gains tensors of the batch), all from :meth:`to_device`.
        Runs in full float32 (:func:`~compare_models.models.backend.float32_precision`)."""
        from .backend import float32_precision

        with float32_precision(self.backend):
            canvas, nonfinite = self._call(self.stitcher.canvas, inputs, geometry)
        self.stitcher.canvas = canvas
        self.stitcher.count_nonfinite(nonfinite)

    def finish(self) -> None:
        """Wait until every call so far has been computed (the backends run asynchronously)."""
        self._wait((self.stitcher.canvas,))


def stream_step(model, batch_size: int, stitcher, *, n_targets: int = 1, jit: str = "auto"):
    """The streaming step for ``model``: its own (``model.stream_step``, e.g. PtychoPINN's
    PyTorch models, which run eagerly: ``jit`` does not apply) or :class:`PredictStitchStep`
    (TensorFlow/XLA)."""
    if hasattr(model, "stream_step"):
        return model.stream_step(batch_size, stitcher, n_targets=n_targets)
    return PredictStitchStep(model, batch_size, stitcher, n_targets=n_targets, jit=jit)


def predict_and_stitch(
    model, dataset, stitcher, *, canvases=0, batch_size: int = 32, chunk: int = 1024, progress: bool = True,
    step: PredictStitchStep | None = None, jit: str = "auto", prefetch_workers: int | None = None,
) -> StreamResult:
    """Predict one patch per scan position of ``dataset`` and stitch it as it comes.

    Parameters
    ----------
    model : compare_models.models.interface.LoadedModel
    dataset : compare_models.io.dataset.Dataset
        Its N must match the model's. Its patterns are read a chunk at a time.
    stitcher : compare_models.imaging.stitching.Stitcher
        Of the Keras backend (:func:`stitch_backend`), on the object grid; receives every patch.
    canvases : int or array_like (M,) or (M, T) of int
        The canvas (or T canvases, -1 for none) each position's patch is added to.
    batch_size : int
        Samples per compiled call (fixed shape; the last batch is padded, with gain 0).
    chunk : int
        Samples whose inputs are built at once, in a background thread while the previous
        chunk runs (rounded up to a multiple of ``batch_size``). The working set is about two
        chunks of inputs.
    progress : bool
        Show a tqdm bar.
    step : PredictStitchStep, optional
        Built (and warmed up) by the caller for this model, batch size, stitcher and T.
    jit : {"auto", "on", "off"}
        XLA for the network when ``step`` is not given (TensorFlow).
    prefetch_workers : int, optional
        Threads building chunks of inputs ahead, each one chunk (NumPy releases the GIL for
        the reads and the normalisation). Default: 1 when the network computes on the CPU
        (the cores are the network's), else up to 4 (a GPU consumes inputs faster than one
        thread builds a gridsize-2 network's). Chunks are consumed in order, so the sums do not
        depend on it.

    Returns
    -------
    StreamResult

    Raises
    ------
    BundleError
        If the data does not fit the model (N, too few positions).
    PredictionCountError
        If the model's samples or patches do not match the positions.
    StitchError
        A patch outside the grid (before any inference), or non-finite patches (at
        ``stitcher.result``).
    """
    if hasattr(model, "predict_and_stitch"):  # a model that streams on its own device (PyTorch)
        return model.predict_and_stitch(dataset, stitcher, canvases=canvases, batch_size=batch_size, chunk=chunk,
                                        progress=progress, step=step)
    from tqdm.auto import tqdm

    from .backend import describe_runtime

    batch_size, chunk, prepared = _prepare(model, dataset, batch_size, chunk)
    m = prepared.n_samples
    positions = np.array(prepared.positions_xy, dtype=np.float64)
    # Placement first: a patch off the grid is refused before any inference.
    origins, fractions = stitcher.place(positions)
    targets, gains = stitcher.targets(canvases, m)
    if step is None:
        step = PredictStitchStep(model, batch_size, stitcher, n_targets=targets.shape[1], jit=jit)
        step.warm_up()
    elif (step.batch_size, step.n_targets, step.stitcher) != (batch_size, targets.shape[1], stitcher):
        raise ConfigError("predict_and_stitch: step was built for another batch size, T or stitcher")
    stitcher.record_weights(origins, fractions, targets, gains)
    fractions = fractions.astype(np.float32)

    def build(chunk_start):
        """The chunk's batches as tensors (runs in the prefetch thread)."""
        indices = np.arange(chunk_start, min(m, chunk_start + chunk))
        parts = prepared.build(indices)
        if any(part.shape[0] != indices.size for part in parts):
            raise PredictionCountError(
                f"the model's inputs have {[part.shape[0] for part in parts]} samples for {indices.size} positions"
            )
        geometry = (origins[indices], fractions[indices], targets[indices], gains[indices])
        batches = []
        for start in range(0, indices.size, batch_size):
            stop = min(indices.size, start + batch_size)
            batches.append((
                step.to_device([_pad(part[start:stop], batch_size) for part in parts]),
                step.to_device([_pad(g[start:stop], batch_size) for g in geometry]),
                stop - start,
            ))
        return batches

    waited = 0.0
    n_batches = 0
    chunk_starts = list(range(0, m, chunk))
    workers = int(prefetch_workers) if prefetch_workers else (1 if step.on_cpu else min(4, os.cpu_count() or 1))
    if workers < 1:
        raise ConfigError(f"prefetch_workers must be >= 1, got {prefetch_workers}")
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="prefetch") as pool, tqdm(
        total=m, desc=f"predict+stitch {model.kind}", unit="pos", disable=not progress
    ) as bar:
        pending = deque(pool.submit(build, s) for s in chunk_starts[:workers])
        for number in range(len(chunk_starts)):
            start = time.perf_counter()
            batches = pending.popleft().result()
            waited += time.perf_counter() - start
            if number + workers < len(chunk_starts):
                pending.append(pool.submit(build, chunk_starts[number + workers]))
            for inputs, geometry, n_valid in batches:
                step(inputs, geometry)
                n_batches += 1
                bar.update(n_valid)
            del batches
        step.finish()  # the backends run asynchronously: the pass ends when its work is done
    return StreamResult(
        n_patches=m,
        positions_xy=positions,
        input_details=dict(prepared.details),
        stream={
            "batches": n_batches,
            "batch_size": batch_size,
            "chunk": chunk,
            "network_xla": bool(step.jit),
            "xla_fallback_reason": step.fallback_reason,
            "input_wait_s": round(waited, 3),
            "prefetch_workers": workers,
            **describe_runtime(step.backend),
        },
    )
