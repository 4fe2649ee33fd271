"""The two networks, their physics and their inputs."""

from .baseline import build_baseline
from .layers import (
    AmplitudePhaseToObject,
    FarFieldIntensity,
    GroupConsensus,
    IntensityScale,
    ScaledTanh,
)
from .pinn import build_pinn, default_pad

KINDS = ("pinn", "baseline")

__all__ = [
    "KINDS",
    "build_pinn",
    "build_baseline",
    "default_pad",
    "ScaledTanh",
    "AmplitudePhaseToObject",
    "GroupConsensus",
    "FarFieldIntensity",
    "IntensityScale",
]
