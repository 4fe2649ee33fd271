"""The physics-informed network (PtychoPINN): diffraction amplitudes -> object patches.

Inputs are the normalised amplitudes of a group of C = gridsize² patterns, ``(B, N, N, C)``
float32 (measured amplitude divided by the bundle's intensity scale), and the members' offsets
from the group centre, ``(B, C, 2)`` float32 (x, y, object pixels). An encoder of conv-pool
blocks feeds two decoders: amplitude (sigmoid) and phase (pi tanh, radians). The C patches are
merged into one object region so that overlap constrains them
(:class:`~compare_models.models.layers.GroupConsensus`), then multiplied by the fixed probe and
propagated to the far field exactly as the simulator does; a learned global scale multiplies
the intensities.

Outputs, in order: ``object`` (B, N, N, C, 2) real/imaginary parts of each member's patch
(member 0 is the group's seed) and ``intensity`` (B, N, N, C), expected counts in photons for
the Poisson loss.

References
----------
.. [1] O. Hoidn, A. A. Mishra, A. Mehta, Sci. Rep. 13, 22789 (2023).
"""

from __future__ import annotations

import itertools

import keras

from . import blocks
from .layers import (
    AmplitudePhaseToObject,
    FarFieldIntensity,
    GroupConsensus,
    IntensityScale,
    ScaledTanh,
)

__all__ = ["build_pinn", "build_ptychopinn_pinn", "default_pad"]


def default_pad(patch_size: int) -> int:
    """Region margin used when none is given: N/4 pixels."""
    return patch_size // 4


def build_pinn(
    patch_size: int,
    gridsize: int,
    probe,
    *,
    width: int = 32,
    depth: int = 3,
    pad: int | None = None,
    seed: int = 0,
) -> keras.Model:
    """Build the PINN for N = ``patch_size`` and C = ``gridsize**2``.

    Parameters
    ----------
    patch_size : int
        N, divisible by ``2**depth``.
    gridsize : int
        1 or 2 (any g >= 1 works; C = g²).
    probe : ndarray (N, N) complex
        Stored in the model as fixed weights, photon-count units.
    width : int
        Filters of the first encoder block (doubling per block).
    depth : int
        Number of conv-pool blocks.
    pad : int, optional
        Region margin for the overlap constraint (default N/4); group offsets must stay within.
    seed : int
        Seeds every kernel initialiser, so the same seed builds the same weights without
        touching global random state.
    """
    blocks.check_depth(patch_size, depth)
    channels = gridsize * gridsize
    pad = default_pad(patch_size) if pad is None else int(pad)
    seeds = itertools.count(int(seed) * 1000)
    amplitude_in = keras.Input((patch_size, patch_size, channels), name="amplitude")
    offsets_in = keras.Input((channels, 2), name="offsets")
    code = blocks.encoder(amplitude_in, width=width, depth=depth, seeds=seeds)
    amp = blocks.decoder(code, width=width, depth=depth, channels=channels, seeds=seeds, prefix="amp")
    amp = keras.layers.Activation("sigmoid", name="amplitude_head")(amp)
    phase = blocks.decoder(code, width=width, depth=depth, channels=channels, seeds=seeds, prefix="phase")
    phase = ScaledTanh(name="phase_head")(phase)
    obj = AmplitudePhaseToObject(name="patches")([amp, phase])
    obj = GroupConsensus(pad, name="object")([obj, offsets_in])
    far_field = FarFieldIntensity(name="far_field")
    intensity = far_field(obj)
    intensity = IntensityScale(name="intensity")(intensity)
    model = keras.Model([amplitude_in, offsets_in], [obj, intensity], name="pinn")
    far_field.set_probe(probe)
    return model


def build_ptychopinn_pinn(probe, architecture, *, pad: int | None = None, seed: int = 0) -> keras.Model:
    """PtychoPINN's network (:mod:`compare_models.models.ptychopinn.architecture`) with this
    project's physics: the same inputs, outputs and forward model as :func:`build_pinn`.

    PtychoPINN's encoder and decoders predict each member's amplitude and phase (the inputs of
    its ``obj`` layer); from there on the model is this project's: the overlap constraint
    (:class:`GroupConsensus`), the fixed probe and far field, and a learned intensity scale.
    PtychoPINN's own reassembly into a canvas is not used for training (the consensus plays its
    part). Inputs and outputs are those of :func:`build_pinn`, so bundles, inference and the
    loss are shared.

    Parameters
    ----------
    probe : ndarray (N, N) complex
    architecture : PtychoPINNArchitecture
        N, gridsize and PtychoPINN's model settings.
    pad : int, optional
        Region margin of the overlap constraint (default N/4).
    seed : int
        Seeds the convolution kernels.
    """
    from .ptychopinn.architecture import build_network, object_inputs

    graph, config = build_network(architecture, seed=seed)
    amplitude_name, phase_name = object_inputs(config)
    n_side, channels = architecture.N, architecture.channels
    pad = default_pad(n_side) if pad is None else int(pad)
    amplitude_in = graph.model.inputs[0]
    offsets_in = keras.Input((channels, 2), name="offsets")
    obj = AmplitudePhaseToObject(name="patches")([graph.tensors[amplitude_name], graph.tensors[phase_name]])
    obj = GroupConsensus(pad, name="object")([obj, offsets_in])
    far_field = FarFieldIntensity(name="far_field")
    intensity = IntensityScale(name="intensity")(far_field(obj))
    model = keras.Model([amplitude_in, offsets_in], [obj, intensity], name="pinn_ptychopinn")
    far_field.set_probe(probe)
    return model
