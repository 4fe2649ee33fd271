"""PtychoPINN's default ``cnn`` generator, inference forward pass (torch, functional).

Input ``x`` (B, C, N, N) float32, the scaled diffraction amplitudes of a group (channel c =
member c). Output (B, C, N, N) complex64, ``amp · exp(i · phase)``, one object patch per channel.

Encoder: stages of ``conv3x3 → ReLU → conv3x3 → ReLU → CBAM → maxpool 2`` (channels
C → 32 s → 64 s → 128 s for N = 64; :func:`.weights.cnn_filters`), down to N/8.
CBAM (Woo et al. 2018): a channel gate ``x · σ(MLP(avgpool x) + MLP(maxpool x))`` (the MLP
``Linear(c, c/16) → ReLU → Linear(c/16, c)`` shared by both pools), then a spatial gate
``x · σ(conv7x7([max_c x, mean_c x]))`` without bias.

Two decoders of the same shape, amplitude and phase, on the encoder's output: up-blocks
``conv3x3 → ReLU → conv3x3 → ReLU → nearest ×2`` to N/2, then the last stage. Of its input's
channels, all but the last C make the centre: ``conv3x3 → activation``, zero-padded by N/4 on
every side to N × N. The last C channels make the border: an up-block to N × N (to 32 s
channels), ``conv3x3 → SiLU``, multiplied by a mask that is 1 outside the central N/2 × N/2
window and 0 inside. The stage returns centre + border. Activations: amplitude σ (or SiLU when
``amp_activation`` is not ``"sigmoid"``, as PtychoPINN), phase ``π · tanh``.

References
----------
.. [1] S. Woo, J. Park, J.-Y. Lee, I. S. Kweon, "CBAM: Convolutional Block Attention Module",
   ECCV 2018.
"""

from __future__ import annotations

import functools
import math

from .functional import conv, record

__all__ = ["cnn_forward"]

# Some of the cnn generator's convolutions are built without bias (the spatial gate).
_conv = functools.partial(conv, bias_optional=True)


def _double_conv(weights, name, x):
    x = _conv(weights, f"{name}.conv1", x).relu()
    return _conv(weights, f"{name}.conv2", x).relu()


def _cbam(weights, name, x):
    import torch
    import torch.nn.functional as F

    gate = f"{name}.ChannelGate.mlp"

    def mlp(pooled):
        hidden = F.linear(pooled, weights[f"{gate}.1.weight"], weights[f"{gate}.1.bias"]).relu()
        return F.linear(hidden, weights[f"{gate}.3.weight"], weights[f"{gate}.3.bias"])

    window = tuple(x.shape[-2:])  # global pools, summed as PtychoPINN's avg_pool2d sums
    channel = mlp(F.avg_pool2d(x, window).flatten(1)) + mlp(F.max_pool2d(x, window).flatten(1))
    x = x * torch.sigmoid(channel)[:, :, None, None]
    pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
    compress = weights[f"{name}.SpatialGate.compress.weight"]
    return x * torch.sigmoid(F.conv2d(pooled, compress, None, padding=compress.shape[-1] // 2))


def _up_block(weights, name, x):
    import torch.nn.functional as F

    return F.interpolate(_double_conv(weights, name, x), scale_factor=2, mode="nearest")


def _last_stage(weights, name, x, activation, n_side, channels, probe_big, taps, tap):
    import torch
    import torch.nn.functional as F

    centre = _conv(weights, f"{name}.conv1", x[:, :-channels])
    record(taps, f"{tap}_center_preact", centre)
    quarter = n_side // 4
    out = F.pad(activation(centre), (quarter, quarter, quarter, quarter))
    if not probe_big:
        return out
    border = _conv(weights, f"{name}.conv2", _up_block(weights, f"{name}.conv_up_block", x[:, -channels:]))
    record(taps, f"{tap}_border_preact", border)
    mask = torch.ones(border.shape[-2:], dtype=border.dtype, device=border.device)
    mask[quarter:-quarter, quarter:-quarter] = 0
    return out + F.silu(border) * mask


def cnn_forward(weights, settings, x, taps=None):
    """The ``cnn`` generator: (B, C, N, N) float32 -> (B, C, N, N) complex64 patches.

    Parameters
    ----------
    weights : Mapping[str, torch.Tensor]
        :func:`.weights.generator_weights`, on ``x``'s device.
    settings : TorchPinnSettings
    x : torch.Tensor (B, C, N, N) float32
        The scaled input (``f · amplitude``).
    taps : dict, optional
        Filled with intermediates, named as PtychoPINN's reference files name them
        (``encoder_block0_out``, ``encoder_out``, ``decoder_amp_base_out``,
        ``amp_center_preact``, ``amp_border_preact``, ``amp``, and the same for phase).

    Returns
    -------
    torch.Tensor (B, C, N, N) complex64
    """
    import torch
    import torch.nn.functional as F

    n_blocks = sum(1 for key in weights if key.startswith("encoder.blocks.") and key.endswith(".conv1.weight"))
    for i in range(n_blocks):
        x = _double_conv(weights, f"encoder.blocks.{i}", x)
        if settings.cbam_encoder:
            x = _cbam(weights, f"encoder.blocks.{i}.attention", x)
        x = F.max_pool2d(x, 2)
        record(taps, f"encoder_block{i}_out", x)
    record(taps, "encoder_out", x)
    if settings.amp_activation == "sigmoid":
        amp_activation = torch.sigmoid
    else:
        amp_activation = F.silu

    def decode(branch, head, activation):
        y = x
        n_up = sum(1 for key in weights if key.startswith(f"{branch}.blocks.") and key.endswith(".conv1.weight"))
        for i in range(n_up):
            y = _up_block(weights, f"{branch}.blocks.{i}", y)
        record(taps, f"{branch}_base_out", y)
        y = _last_stage(weights, f"{branch}.{head}", y, activation, settings.patch_size, settings.channels,
                        settings.probe_big, taps, head)
        record(taps, head, y)
        return y

    amp = decode("decoder_amp", "amp", amp_activation)
    phase = decode("decoder_phase", "phase", lambda v: math.pi * torch.tanh(v))
    return amp.to(torch.complex64) * torch.exp(1j * phase.to(torch.complex64))
