"""A PtychoPINN ``wts.h5.zip`` as a loaded model: read, rebuilt with our layers, ready to predict.

:func:`load_pinn` reads the two members inference needs (:mod:`.archive`), rebuilds
``diffraction_to_obj`` from its ``config.json`` (:mod:`.build`) and copies the weights.
:class:`LoadedPinn` implements :class:`~compare_models.models.interface.LoadedModel`: inputs are
made as PtychoPINN makes them (:mod:`.inputs`: per-dataset normalisation factor, groups of
C = gridsize² positions, ``input_positions`` = group mean - member position, times the
bundle's ``intensity_scale``) and each predicted patch sits on its group's centroid.

Everything a prediction needs travels in the :class:`LoadedPinn` instance; nothing is global,
so loading a second model never changes the first.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..finite_weights import check_finite_weights
from ..interface import UNRECORDED_PROTOCOL, describe_basics
from .archive import PtychoPINNFormatError, read_pinn_bundle
from .build import BuiltGraph, PtychoPINNConfig, assign_weights, build_pinn

__all__ = ["LoadedPinn", "load_pinn", "predict_pinn"]


@dataclass(frozen=True, eq=False)
class LoadedPinn:
    """A PtychoPINN ``diffraction_to_obj`` rebuilt with this project's layers.

    Attributes
    ----------
    graph : BuiltGraph
        ``graph.model`` maps ``[X_normalized * intensity_scale, input_positions]`` to
        (B, N, N, 1) complex64.
    config : PtychoPINNConfig
        Settings read from ``config.json``.
    intensity_scale : float
        From ``diffraction_to_obj/model.h5``; the input is ``f * amplitude * intensity_scale``.
    path : Path
        The ``wts.h5.zip`` read.
    keras_version : str or None
        Keras version that wrote the file (``metadata.json``), for information.
    """

    graph: BuiltGraph
    config: PtychoPINNConfig
    intensity_scale: float
    path: Path
    keras_version: str | None = None

    kind = "pinn"

    @property
    def model(self):
        """The rebuilt ``keras.Model``."""
        return self.graph.model

    @property
    def patch_size(self) -> int:
        """N."""
        return self.config.N

    @property
    def gridsize(self) -> int:
        """g; C = g² patterns per group."""
        return self.config.gridsize

    @property
    def model_format(self) -> str:
        """``"PtychoPINN wts.h5.zip (gridsize g)"``."""
        return f"PtychoPINN wts.h5.zip (gridsize {self.gridsize})"

    #: PtychoPINN's TensorFlow ``diffraction_to_obj``.
    architecture = "ptychopinn"
    #: PtychoPINN's files do not record what the network was trained on.
    training_protocol = UNRECORDED_PROTOCOL

    @property
    def label(self) -> str:
        """``"PtychoPINN PINN (TensorFlow backend, gridsize g)"``."""
        return f"PtychoPINN PINN (TensorFlow backend, gridsize {self.gridsize})"

    def check_compatible(self, dataset) -> None:
        """Raise :class:`~compare_models.errors.BundleError` for another N or too few positions."""
        from ..interface import check_patch_size

        check_patch_size(self, dataset, minimum_positions=self.config.channels)

    def prepare_inputs(self, dataset):
        """PtychoPINN's inputs for every scan position (one group seeded per position)."""
        from ..interface import PreparedInputs
        from . import inputs

        amplitude = dataset.diffraction_amplitude
        positions = dataset.positions_xy
        groups = inputs.group_neighbours(positions, self.gridsize)
        factor = inputs.normalization_factor(amplitude, groups)
        centroids, _ = inputs.group_offsets(positions, groups)
        scale = self.intensity_scale

        def build(indices):
            members = groups[indices]
            x = inputs.normalized_group(amplitude, members, factor)
            _, local = inputs.group_offsets(positions, members)
            return inputs.pinn_inputs(x, local, scale)

        details = {
            "normalisation": "PtychoPINN: f * amplitude * intensity_scale, "
            "f = sqrt((N/2)^2 / mean over grouped patterns of sum amplitude^2)",
            "normalization_factor": float(factor),
            "intensity_scale": scale,
            "grouping": (
                "one group per scan position"
                if self.gridsize == 1
                else f"one group per scan position: {self.config.channels} of its "
                f"{inputs.NEIGHBOR_COUNT} nearest other positions, drawn by "
                f"RandomState({inputs.GROUPING_SEED}) in position order"
            ),
            "patch_position": "group centroid",
        }
        return PreparedInputs(positions_xy=centroids, build=build, details=details)

    def input_specs(self, batch_size: int):
        """Diffraction (B, N, N, C) and ``input_positions`` (B, 1, 2, C), float32."""
        n, c = self.config.N, self.config.channels
        return (((batch_size, n, n, c), "float32"), ((batch_size, 1, 2, c), "float32"))

    def patches_from_outputs(self, outputs):
        """(B, N, N, 1) complex64 -> (B, N, N)."""
        out = outputs[0] if isinstance(outputs, (list, tuple)) else outputs
        return out[..., 0]

    def describe(self) -> dict:
        """Format, settings from ``config.json`` and the intensity scale."""
        return {
            **describe_basics(self),
            "intensity_scale": self.intensity_scale,
            "ptychopinn_config": dataclasses.asdict(self.config),
            "keras_version": self.keras_version,
            "members_read": ["diffraction_to_obj/model.keras", "diffraction_to_obj/model.h5"],
        }


def load_pinn(path: str | os.PathLike, match: str = "auto") -> LoadedPinn:
    """Read ``wts.h5.zip`` (or the directory holding it), rebuild ``diffraction_to_obj``,
    load its weights.

    Parameters
    ----------
    path : path-like
    match : {"auto", "name", "path"}
        Weight matching mode, see :func:`.build.assign_weights`.

    Raises
    ------
    PtychoPINNFormatError
        Missing or truncated file or member, a config this reader does not know, weights that
        do not fit, or a weight that is not finite (the message names the layer and weight).
    """
    files = read_pinn_bundle(path)
    graph, settings = build_pinn(files.archive.config, files.intensity_scale,
                                 f"{files.archive.source}!config.json")
    assign_weights(graph, files.archive.weights, match)
    check_finite_weights(graph.model, files.archive.source, error=PtychoPINNFormatError)
    return LoadedPinn(graph, settings, files.intensity_scale, Path(files.source),
                      files.archive.keras_version)


def predict_pinn(loaded: LoadedPinn, diffraction_scaled, positions, batch_size: int = 16) -> np.ndarray:
    """Run the rebuilt model on prepared inputs; one (N, N) patch per group at every batch size.

    Parameters
    ----------
    loaded : LoadedPinn
    diffraction_scaled : ndarray, (B, N, N, C)
        ``X_normalized * intensity_scale``.
    positions : ndarray, (B, 1, 2, C)
        Group mean minus member position, [x, y].
    batch_size : int

    Returns
    -------
    ndarray, (B, N, N, 1) complex64
    """
    cfg = loaded.config
    x = np.asarray(diffraction_scaled, dtype=np.float32)
    pos = np.asarray(positions, dtype=np.float32)
    if x.ndim != 4 or x.shape[1:] != (cfg.N, cfg.N, cfg.channels):
        raise ValueError(f"diffraction shape {x.shape}, expected (B, {cfg.N}, {cfg.N}, {cfg.channels})")
    if pos.shape != (x.shape[0], 1, 2, cfg.channels):
        raise ValueError(f"positions shape {pos.shape}, expected ({x.shape[0]}, 1, 2, {cfg.channels})")
    out = loaded.model.predict([x, pos], batch_size=batch_size, verbose=0)
    return np.asarray(out).astype(np.complex64, copy=False)
