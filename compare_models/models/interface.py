"""The one face every loaded model shows to inference and to the comparison.

A network reaches ``compare-models`` in one of several formats: this project's bundles
(:mod:`compare_models.models.bundle`), PtychoPINN's ``wts.h5.zip`` and its supervised
``baseline_model.h5`` (:mod:`compare_models.models.ptychopinn`). Each loader returns an object
with the attributes and methods of :class:`LoadedModel`; :func:`compare_models.models.inference.predict`
and the compare pipeline use only those, so neither branches on the format.

What a model decides for itself
-------------------------------
* How its inputs are made from a dataset (:meth:`LoadedModel.prepare_inputs`): the
  normalisation (this project's stored scale, or PtychoPINN's per-dataset factor), the groups
  for gridsize > 1 and the offsets fed beside the patterns.
* Where each predicted patch sits (:attr:`PreparedInputs.positions_xy`): the seed position for
  this project's networks, the group's centroid for PtychoPINN's.
* How its outputs become complex patches (:meth:`LoadedModel.patches_from_outputs`).

Invariant shared by every model: one sample per scan position, in the dataset's order, so a
prediction holds exactly one patch per position at every batch size.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import BundleError

__all__ = ["PreparedInputs", "LoadedModel", "check_patch_size", "describe_basics", "UNRECORDED_PROTOCOL"]

#: ``training_protocol`` of a model whose file does not say how it was trained (PtychoPINN's
#: files, bundles older than the record).
UNRECORDED_PROTOCOL = MappingProxyType(
    {"train_on": "unknown", "description": "not recorded in the model file", "ground_truth_used": None}
)


@dataclass(frozen=True, eq=False)
class PreparedInputs:
    """A model's inputs for one dataset, built a chunk of samples at a time.

    Attributes
    ----------
    positions_xy : ndarray, (M, 2) float64
        Where the patch predicted for each sample sits: object pixels, x column, y row (a patch
        of side N centred at (x, y) covers rows y - N/2 .. y + N/2 - 1). One row per scan
        position, in the dataset's order.
    build : callable
        ``build(indices) -> tuple of ndarray``: the model's inputs for the samples ``indices``
        (a 1-D integer array), in the order of :meth:`LoadedModel.input_specs`.
    details : Mapping
        JSON-ready description for provenance (normalisation, grouping).
    """

    positions_xy: np.ndarray
    build: Callable[[np.ndarray], tuple[np.ndarray, ...]]
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        """Number of samples M (= scan positions)."""
        return int(self.positions_xy.shape[0])


@runtime_checkable
class LoadedModel(Protocol):
    """What inference and the comparison need from a loaded model, whatever its format.

    Attributes
    ----------
    model : keras.Model
        The network, called on the tensors described by :meth:`input_specs`.
    kind : str
        Network family: ``"pinn"`` or ``"baseline"`` (not the arm it is compared as: a PINN
        may be the baseline arm).
    model_format : str
        Human-readable format, e.g. ``"compare_models bundle"``,
        ``"PtychoPINN wts.h5.zip (gridsize 2)"``, ``"PtychoPINN baseline_model.h5"``.
    patch_size : int
        N.
    gridsize : int
        g; the model sees C = g² patterns per sample.
    path : Path or None
        Where it was loaded from.
    label : str
        What the network is, as reports name the arm: whose architecture, which framework
        wrote it, e.g. ``"compare-models PINN"``, ``"PtychoPINN PINN (PyTorch backend, cnn
        generator, gridsize 2)"``.
    architecture : str
        The architecture's short name in metrics.json (``"compare-models"``,
        ``"ptychopinn"``, ``"ptychopinn-baseline"``, ``"ptychopinn-torch-cnn"``...).
    training_protocol : Mapping
        How it was trained (``train_on``, ``description``, ``ground_truth_used``);
        :data:`UNRECORDED_PROTOCOL` when the file does not say.
    """

    model: Any
    kind: str
    patch_size: int
    gridsize: int
    path: Path | None

    @property
    def model_format(self) -> str: ...

    @property
    def label(self) -> str: ...

    @property
    def architecture(self) -> str: ...

    @property
    def training_protocol(self) -> Mapping: ...

    def check_compatible(self, dataset) -> None:
        """Raise :class:`~compare_models.errors.BundleError` if ``dataset`` cannot be run."""

    def prepare_inputs(self, dataset) -> PreparedInputs:
        """Dataset-level preparation: normalisation, groups, patch positions."""

    def input_specs(self, batch_size: int) -> tuple[tuple[tuple[int, ...], str], ...]:
        """(shape, dtype) of each model input for a batch of ``batch_size`` samples."""

    def patches_from_outputs(self, outputs):
        """Model outputs -> (B, N, N) complex64 patches (TensorFlow ops, traced once)."""

    def describe(self) -> dict:
        """JSON-ready description for provenance (format, settings, scales)."""


def check_patch_size(model, dataset, *, minimum_positions: int = 1) -> None:
    """Raise :class:`BundleError` if ``dataset``'s N differs from the model's, or if it has
    fewer than ``minimum_positions`` scan positions; the message names both."""
    where = model.path or model.model_format
    if dataset.patch_size != model.patch_size:
        data = f"the data {dataset.source}" if dataset.source else "the data"
        raise BundleError(
            f"{where}: the model ({model.model_format}) expects patterns of N = "
            f"{model.patch_size}, but {data} has N = {dataset.patch_size}"
        )
    if dataset.n_positions < minimum_positions:
        raise BundleError(
            f"{where}: gridsize {model.gridsize} needs at least {minimum_positions} scan "
            f"positions, the data has {dataset.n_positions}"
        )


def describe_basics(model) -> dict:
    """The part of :meth:`LoadedModel.describe` every model shares: what it is (label,
    architecture, training protocol), format, kind, N, gridsize."""
    return {
        "label": model.label,
        "architecture": model.architecture,
        "training_protocol": dict(model.training_protocol),
        "model_format": model.model_format,
        "kind": model.kind,
        "patch_size": model.patch_size,
        "gridsize": model.gridsize,
    }
