"""The train job: load a dataset, train one network, write its bundle."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import MappingProxyType

from ..io.dispatch import load_dataset
from ..models.bundle import protocol_record, save_bundle
from ..models.training import TrainConfig, TrainResult, train_model

__all__ = ["run_train", "describe_training"]


def run_train(config: TrainConfig, train_data, out_dir, *, progress: bool = True) -> tuple[Path, TrainResult]:
    """Train per ``config`` on the dataset file ``train_data``; write the bundle ``out_dir``.

    With ``config.train_on == "test-diffraction"`` the file is the test scan: the PINN trains on
    its diffraction alone, and the bundle records the protocol and (for ``seen_in_training``)
    the test object's fingerprint and the footprint of the scan.

    Returns
    -------
    (Path, TrainResult)
        The bundle directory and the training result (model, history, intensity scale).
    """
    config = config.validate()
    dataset = load_dataset(train_data)
    result = train_model(dataset, config, progress=progress)
    extra = {}
    if result.region_pad is not None:  # the PINN's margin; inference uses the same one
        extra = {"region_pad": result.region_pad, "region_pad_rule": result.region_pad_rule}
    if result.initial_intensity_scale is not None:
        extra["initial_intensity_scale"] = result.initial_intensity_scale
    extra["training_protocol"] = protocol_record(config.train_on, result.kind)
    extra["architecture"] = architecture_record(config, result.patch_size)
    path = save_bundle(
        result.model,
        out_dir,
        kind=result.kind,
        patch_size=result.patch_size,
        gridsize=result.gridsize,
        intensity_scale=result.intensity_scale,
        probe=dataset.probe,
        train_dataset=dataset,
        config=config.to_dict(),
        history=result.history,
        extra=extra,
    )
    return path, result


_PROTOCOL_LINES = MappingProxyType({
    "training-set": "a separate training set",
    "test-diffraction": "the test scan's own diffraction (self-supervised, no ground truth)",
})


def architecture_record(config: TrainConfig, patch_size: int) -> dict:
    """``bundle.json``'s ``architecture``: which network, and PtychoPINN's settings for its."""
    if config.architecture != "ptychopinn":
        return {"name": "compare-models", "width": config.width, "depth": config.depth}
    settings = dataclasses.asdict(config.ptychopinn_architecture(patch_size))
    return {
        "name": "ptychopinn",
        "settings": settings,
        "source": "PtychoPINN ptycho/model.py diffraction_to_obj, made from these settings "
        "(compare_models.models.ptychopinn.architecture); trained with compare-models' physics and loss",
    }


def describe_training(result: TrainResult) -> str:
    """A few human-readable lines about a finished training."""
    history = result.history
    lines = [
        f"model          {result.kind} (gridsize {result.gridsize}, N = {result.patch_size}); "
        + ("PtychoPINN's architecture" if result.config.architecture == "ptychopinn" else "compare-models network"),
        f"trained on     {_PROTOCOL_LINES[result.config.train_on]}",
        f"epochs run     {len(history['loss'])}",
        f"loss           {history['loss'][0]:.5g} -> {history['loss'][-1]:.5g}",
    ]
    if history.get("val_loss"):
        lines.append(f"val_loss       {history['val_loss'][0]:.5g} -> {history['val_loss'][-1]:.5g}")
    lines.append(f"intensity scale {result.intensity_scale:.5g} (input normalisation)")
    if result.region_pad is not None:
        lines.append(f"region margin  {result.region_pad} px ({result.region_pad_rule})")
    return "\n".join(lines)
