"""The supervised baseline (PtychoNN-style): one diffraction amplitude -> its object patch.

Input: normalised amplitude ``(B, N, N, 1)`` float32 (measured amplitude divided by the
bundle's intensity scale). An encoder of conv-pool blocks feeds two decoders, amplitude
(sigmoid) and phase (pi tanh, radians). Outputs, in order: ``object`` (B, N, N, 1, 2)
real/imaginary parts, ``amplitude`` (B, N, N, 1) and ``phase`` (B, N, N, 1) for the loss.

References
----------
.. [1] M. J. Cherukara et al., "AI-enabled high-resolution scanning coherent diffraction
   imaging", Appl. Phys. Lett. 117, 044103 (2020).
"""

from __future__ import annotations

import itertools

import keras

from . import blocks
from .layers import AmplitudePhaseToObject, ScaledTanh

__all__ = ["build_baseline"]


def build_baseline(patch_size: int, *, width: int = 32, depth: int = 3, seed: int = 0) -> keras.Model:
    """Build the baseline for N = ``patch_size`` (see module docstring; ``seed`` seeds the
    kernel initialisers without touching global random state)."""
    blocks.check_depth(patch_size, depth)
    seeds = itertools.count(int(seed) * 1000)
    amplitude_in = keras.Input((patch_size, patch_size, 1), name="amplitude")
    code = blocks.encoder(amplitude_in, width=width, depth=depth, seeds=seeds)
    amp = blocks.decoder(code, width=width, depth=depth, channels=1, seeds=seeds, prefix="amp")
    amp = keras.layers.Activation("sigmoid", name="amplitude_head")(amp)
    phase = blocks.decoder(code, width=width, depth=depth, channels=1, seeds=seeds, prefix="phase")
    phase = ScaledTanh(name="phase_head")(phase)
    obj = AmplitudePhaseToObject(name="object")([amp, phase])
    return keras.Model(amplitude_in, [obj, amp, phase], name="baseline")
