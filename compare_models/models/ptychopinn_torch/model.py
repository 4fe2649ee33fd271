"""A PyTorch-backend PtychoPINN bundle as a loaded model: read, checked, ready to run.

:func:`load_torch_pinn` reads the archive (:mod:`.archive`), validates the settings
(:mod:`.settings`), checks the generator's weights key by key (:mod:`.weights`) and moves them
to the device. :class:`LoadedTorchPinn` offers what the comparison needs from any model
(:class:`~compare_models.models.interface.LoadedModel`: ``kind``, ``model_format``,
``patch_size``, ``gridsize``, ``check_compatible``, ``describe``), plus the torch side:
``prepare`` (the groups and the scale factor of a dataset, :mod:`.inputs`) and ``forward``
(inputs (B, C, N, N) -> complex patches (B, C, N, N) on the device). :mod:`.stream` predicts
and stitches with them.

Everything a prediction needs travels in the instance; nothing is global, so loading a second
model never changes the first.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np

from ..interface import UNRECORDED_PROTOCOL, check_patch_size, describe_basics

__all__ = ["LoadedTorchPinn", "load_torch_pinn", "predict_torch"]

BACKEND = "torch"

log = logging.getLogger("compare_models.models")


@dataclass(frozen=True, eq=False)
class LoadedTorchPinn:
    """PtychoPINN's PyTorch ``diffraction_to_obj`` generator, run by this project's torch code.

    Attributes
    ----------
    settings : TorchPinnSettings
    weights : Mapping[str, torch.Tensor]
        The generator's tensors, on ``device``.
    device : torch.device
    path : Path
        The ``wts.h5.zip`` read.
    params : Mapping
        ``params.dill`` (provenance; its absolute paths are never used).
    """

    settings: object
    weights: object = field(repr=False)
    device: object
    path: Path
    params: object = field(default_factory=dict, repr=False)

    kind = "pinn"
    backend = BACKEND

    @property
    def model(self):
        """The generator (``forward``)."""
        return self.forward

    @property
    def patch_size(self) -> int:
        return self.settings.patch_size

    @property
    def gridsize(self) -> int:
        return self.settings.gridsize

    @property
    def channels(self) -> int:
        return self.settings.channels

    @property
    def model_format(self) -> str:
        """``"PtychoPINN PyTorch wts.h5.zip (ffno, gridsize 2)"``."""
        return f"PtychoPINN PyTorch wts.h5.zip ({self.settings.architecture}, gridsize {self.gridsize})"

    #: PtychoPINN's files do not record what the network was trained on.
    training_protocol = UNRECORDED_PROTOCOL

    @property
    def architecture(self) -> str:
        """``"ptychopinn-torch-cnn"`` or ``"ptychopinn-torch-ffno"``: the generator."""
        return f"ptychopinn-torch-{self.settings.architecture}"

    @property
    def label(self) -> str:
        """``"PtychoPINN PINN (PyTorch backend, cnn generator, gridsize 2)"``."""
        return f"PtychoPINN PINN (PyTorch backend, {self.settings.architecture} generator, gridsize {self.gridsize})"

    def check_compatible(self, dataset) -> None:
        """Raise :class:`~compare_models.errors.BundleError` for another N or too few positions."""
        check_patch_size(self, dataset, minimum_positions=self.channels)

    def prepare(self, dataset):
        """:class:`~.inputs.TorchInputs` of ``dataset``: groups and the scale factor."""
        from .inputs import prepare_torch_inputs

        return prepare_torch_inputs(dataset, self.channels)

    def forward(self, x, taps=None):
        """Generator forward pass: (B, C, N, N) float32 tensor on ``device`` -> (B, C, N, N)
        complex64 patches, channel c the object at member c's position. Call under
        ``torch.no_grad()`` and :func:`.device.full_float32`."""
        from .cnn import cnn_forward
        from .ffno import ffno_forward

        run = cnn_forward if self.settings.architecture == "cnn" else ffno_forward
        return run(self.weights, self.settings, x, taps)

    @property
    def stitch_backend(self) -> str:
        """The stitcher this model streams into: the ``"torch"`` kernel, canvas on :attr:`device`."""
        return BACKEND

    def stream_step(self, batch_size: int, stitcher, *, n_targets: int = 1):
        """:class:`~.stream.TorchPredictStitchStep` for this model."""
        from .stream import TorchPredictStitchStep

        return TorchPredictStitchStep(self, batch_size, stitcher, n_targets=n_targets)

    def predict_and_stitch(self, dataset, stitcher, **options):
        """:func:`~.stream.predict_and_stitch_torch` of this model (the comparison's streaming
        pass; :func:`compare_models.models.inference.predict_and_stitch` calls it)."""
        from .stream import predict_and_stitch_torch

        return predict_and_stitch_torch(self, dataset, stitcher, **options)

    def describe(self) -> dict:
        """Format, generator settings, device and what was read."""
        from .archive import PARAMS, SCALING_METADATA, STATE_DICT
        from .device import describe_device

        return {
            **describe_basics(self),
            "backend": BACKEND,
            "generator": self.settings.architecture,
            "settings": self.settings.to_dict(),
            "intensity_scale": self.settings.intensity_scale,
            "intensity_scale_applied": False,
            **describe_device(self.device),
            "members_read": [STATE_DICT, PARAMS, SCALING_METADATA, "manifest.dill"],
        }


def load_torch_pinn(path: str | os.PathLike, device="auto") -> LoadedTorchPinn:
    """Read a PyTorch-backend ``wts.h5.zip`` (or the directory holding it) onto ``device``.

    Parameters
    ----------
    path : path-like
    device : {"auto", "cpu", "gpu", "cuda"} or torch.device
        ``auto``: CUDA when torch sees a device, else the CPU; ``gpu`` and ``cuda`` the same.

    Raises
    ------
    PtychoPINNFormatError
        A missing or truncated file or member (named), an unsupported generator or scaling
        mode (named, with the supported ones), a missing or misshapen weight (the key).
    ConfigError
        ``device="cuda"`` without a CUDA device.
    """
    from .archive import read_torch_bundle
    from .device import resolve_device
    from .settings import settings_from_bundle
    from .weights import generator_weights

    files = read_torch_bundle(path)
    settings = settings_from_bundle(files)
    weights = generator_weights(files.state_dict, settings, files.source)
    target = resolve_device(device) if isinstance(device, str) else device
    on_device = MappingProxyType({name: tensor.to(target) for name, tensor in weights.items()})
    log.info("%s: PyTorch %s generator (gridsize %d, N = %d, settings from %s) on %s", files.source,
             settings.architecture, settings.gridsize, settings.patch_size, settings.settings_from, target)
    return LoadedTorchPinn(settings, on_device, target, Path(files.source), files.params)


def predict_torch(model: LoadedTorchPinn, dataset, *, batch_size: int = 32, progress: bool = False):
    """Every scan position's patch, (M, N, N) complex64 on the host, in dataset order.

    For tests and parity checks (it holds n x N² on the host); the comparison streams instead
    (:func:`.stream.predict_and_stitch_torch`).

    Returns
    -------
    patches : ndarray (M, N, N) complex64
        Position p's patch: channel c of the group whose member c is p.
    inputs : TorchInputs
    """
    import torch
    from tqdm.auto import tqdm

    from .device import full_float32

    inputs = model.prepare(dataset)
    n_side = model.patch_size
    patches = np.empty((inputs.n_positions, n_side, n_side), np.complex64)
    with torch.no_grad(), full_float32(), tqdm(total=inputs.n_groups, disable=not progress, unit="group") as bar:
        for start in range(0, inputs.n_groups, int(batch_size)):
            index = np.arange(start, min(inputs.n_groups, start + int(batch_size)))
            x = torch.from_numpy(inputs.build(index)).to(model.device)
            out = model.forward(x).cpu().numpy()
            keep = inputs.valid[index]
            patches[inputs.groups[index][keep]] = out[keep]
            bar.update(index.size)
    return patches, inputs
