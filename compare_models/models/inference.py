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
"""

from __future__ import annotations

from dataclasses import dataclass, field

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


def build_predictor(model, batch_size: int):
    """The ``tf.function`` :func:`predict` runs for ``model``: fixed batch shape, returns
    (B, N, N) complex64 patches. Built once, it is traced on its first call (:func:`warm_up`)."""
    return _predict_function(model, int(batch_size))


def warm_up(predictor, model, batch_size: int) -> None:
    """Call ``predictor`` once on an all-zero batch, so that its one-off tracing happens here
    and not inside a timed :func:`predict`."""
    batch = [np.zeros(shape, dtype) for shape, dtype in model.input_specs(int(batch_size))]
    np.asarray(predictor(*batch))


def _predict_function(model, batch_size: int):
    """A ``tf.function`` of fixed batch shape returning (B, N, N) complex64 patches."""
    import tensorflow as tf

    network = model.model
    signature = [tf.TensorSpec(shape, getattr(tf, dtype)) for shape, dtype in model.input_specs(batch_size)]

    @tf.function(input_signature=signature)
    def run(*inputs):
        outputs = network(inputs[0] if len(inputs) == 1 else list(inputs), training=False)
        return model.patches_from_outputs(outputs)

    return run


def predict(
    model, dataset, *, batch_size: int = 32, chunk: int = 4096, progress: bool = True, predictor=None
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

    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if int(chunk) < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    batch_size = int(batch_size)
    chunk = -(-int(chunk) // batch_size) * batch_size
    model.check_compatible(dataset)
    prepared = model.prepare_inputs(dataset)
    m = prepared.n_samples
    if m != dataset.n_positions:
        raise PredictionCountError(f"{m} samples prepared for {dataset.n_positions} positions")
    n_side = model.patch_size
    run = predictor if predictor is not None else _predict_function(model, batch_size)
    patches = np.empty((m, n_side, n_side), dtype=np.complex64)
    with tqdm(total=m, desc=f"predict {model.kind}", unit="pos", disable=not progress) as bar:
        for chunk_start in range(0, m, chunk):
            indices = np.arange(chunk_start, min(m, chunk_start + chunk))
            chunk_inputs = prepared.build(indices)
            for start in range(0, len(indices), batch_size):
                stop = min(len(indices), start + batch_size)
                n_valid = stop - start
                batch = [_pad(part[start:stop], batch_size) for part in chunk_inputs]
                output = np.asarray(run(*batch))
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


def _pad(array: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad the first axis of ``array`` to ``size``."""
    if array.shape[0] == size:
        return array
    padding = np.zeros((size - array.shape[0],) + array.shape[1:], dtype=array.dtype)
    return np.concatenate([array, padding], axis=0)
