"""Batched, streaming prediction with a shape invariant: one patch per scan position.

The model runs through a ``tf.function`` with a fixed input signature (``batch_size`` samples),
so it is traced once; the last batch of a chunk is padded with zeros and the padding is
dropped. Grouped inputs are built one chunk at a time, so working memory depends on ``chunk``
and not on the number of positions (only the returned patches grow with it). After every batch
the number of returned patches is checked against the number of inputs.

For gridsize g > 1 every scan position seeds one group (:mod:`compare_models.models.grouping`); the
patch returned for position i is the seed member's patch cut from the group's merged region,
so the result has exactly M patches at ``dataset.positions_xy``, in the dataset's order. A
group whose members reach beyond the bundle's region margin (``bundle.json``'s ``region_pad``,
the margin the model was trained with) is re-formed from the seed's nearest neighbours to fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import CompareModelsError

__all__ = ["Prediction", "PredictionCountError", "predict", "build_predictor", "warm_up"]


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
        Patch centres in object pixels (x column, y row): the dataset's positions.
    """

    patches: np.ndarray
    positions_xy: np.ndarray

    def __post_init__(self):
        if self.patches.shape[0] != self.positions_xy.shape[0]:
            raise PredictionCountError(
                f"{self.patches.shape[0]} patches for {self.positions_xy.shape[0]} positions"
            )


def build_predictor(bundle, batch_size: int):
    """The ``tf.function`` :func:`predict` runs: fixed batch shape, returns the seed patch
    (B, N, N, 2). Built once, it is traced on its first call (:func:`warm_up`)."""
    return _predict_function(bundle, int(batch_size))


def warm_up(predictor, bundle, batch_size: int) -> None:
    """Call ``predictor`` once on an all-zero batch, so that its one-off tracing happens here
    and not inside a timed :func:`predict`."""
    n_side = bundle.patch_size
    if bundle.kind == "pinn":
        batch = [
            np.zeros((batch_size, n_side, n_side, bundle.channels), np.float32),
            np.zeros((batch_size, bundle.channels, 2), np.float32),
        ]
    else:
        batch = [np.zeros((batch_size, n_side, n_side, 1), np.float32)]
    np.asarray(predictor(*batch))


def _predict_function(bundle, batch_size: int):
    """A ``tf.function`` of fixed batch shape returning the seed patch (B, N, N, 2)."""
    import tensorflow as tf

    model = bundle.model
    n_side = bundle.patch_size
    if bundle.kind == "pinn":
        signature = [
            tf.TensorSpec((batch_size, n_side, n_side, bundle.channels), tf.float32),
            tf.TensorSpec((batch_size, bundle.channels, 2), tf.float32),
        ]
    else:
        signature = [tf.TensorSpec((batch_size, n_side, n_side, 1), tf.float32)]

    @tf.function(input_signature=signature)
    def run(*inputs):
        outputs = model(inputs[0] if len(inputs) == 1 else list(inputs), training=False)
        obj = outputs[0] if isinstance(outputs, (list, tuple)) else outputs
        return obj[:, :, :, 0, :]

    return run


def predict(
    bundle, dataset, *, batch_size: int = 32, chunk: int = 4096, progress: bool = True, predictor=None
) -> Prediction:
    """Predict one object patch per scan position of ``dataset``.

    Parameters
    ----------
    bundle : compare_models.models.bundle.Bundle
    dataset : compare_models.io.dataset.Dataset
        Its N must match the bundle's.
    batch_size : int
        Samples per model call (fixed shape; the last batch is padded).
    chunk : int
        Samples whose inputs are built at once (rounded up to a multiple of ``batch_size``).
    progress : bool
        Show a tqdm bar.
    predictor : callable, optional
        :func:`build_predictor` ``(bundle, batch_size)``, perhaps already warmed up; built
        here when not given.

    Returns
    -------
    Prediction
        ``patches`` (M, N, N) complex64 and ``positions_xy`` (M, 2) float64, in dataset order.

    Raises
    ------
    BundleError
        If the data does not fit the model (N, too few positions).
    PredictionCountError
        If a batch returns a different number of patches than it was given.
    """
    from tqdm.auto import tqdm

    from . import inputs

    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if int(chunk) < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    batch_size = int(batch_size)
    chunk = -(-int(chunk) // batch_size) * batch_size
    bundle.check_compatible(dataset)
    m = dataset.n_positions
    n_side = bundle.patch_size
    amplitude = dataset.diffraction_amplitude
    positions = dataset.positions_xy
    scale = bundle.intensity_scale
    if bundle.kind == "pinn":
        # Groups that reach beyond the bundle's margin are re-formed to fit it.
        groups = inputs.make_groups(positions, bundle.gridsize, max_offset=bundle.region_pad)
    run = predictor if predictor is not None else _predict_function(bundle, batch_size)
    patches = np.empty((m, n_side, n_side), dtype=np.complex64)
    with tqdm(total=m, desc=f"predict {bundle.kind}", unit="pos", disable=not progress) as bar:
        for chunk_start in range(0, m, chunk):
            indices = np.arange(chunk_start, min(m, chunk_start + chunk))
            if bundle.kind == "pinn":
                chunk_inputs = inputs.pinn_inputs(amplitude, positions, groups, indices, scale)
            else:
                chunk_inputs = (inputs.baseline_inputs(amplitude, indices, scale),)
            for start in range(0, len(indices), batch_size):
                stop = min(len(indices), start + batch_size)
                n_valid = stop - start
                batch = [_pad(part[start:stop], batch_size) for part in chunk_inputs]
                output = np.asarray(run(*batch))
                if output.shape[0] != batch_size:
                    raise PredictionCountError(
                        f"the model returned {output.shape[0]} patches for a batch of {batch_size}"
                    )
                kept = output[:n_valid]
                if kept.shape[0] != n_valid:
                    raise PredictionCountError(
                        f"{kept.shape[0]} patches for {n_valid} samples in a batch"
                    )
                target = slice(chunk_start + start, chunk_start + stop)
                patches[target] = kept[..., 0] + 1j * kept[..., 1]
                bar.update(n_valid)
    return Prediction(patches=patches, positions_xy=positions.astype(np.float64).copy())


def _pad(array: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad the first axis of ``array`` to ``size``."""
    if array.shape[0] == size:
        return array
    padding = np.zeros((size - array.shape[0],) + array.shape[1:], dtype=array.dtype)
    return np.concatenate([array, padding], axis=0)
