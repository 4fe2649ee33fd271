"""PtychoPINN's ``ffno`` generator (factorised Fourier neural operator), inference forward
pass (torch, functional).

Input ``x`` (B, C, N, N) float32, the scaled diffraction amplitudes of a group (channel c =
member c); output (B, C, N, N) complex64, one object patch per channel. Constant resolution:

1. input transform (``none``, ``sqrt``, ``log1p`` of the clamped input, or an instance norm
   without affine terms, eps 1e-6);
2. lifter: ``conv3x3(C → W) → GELU → conv3x3(W → W)``;
3. ``fno_blocks`` residual blocks ``x + g · project(GELU(expand(InstanceNorm(S(x)))))``, with
   ``expand``/``project`` 1×1 convolutions W → 2W → W, the instance norm affine (eps 1e-5), one
   scalar gate g shared by the blocks, and S the factorised spectral convolution (Tran et al.
   2023): along each axis separately, the real FFT, the first ``m = min(modes, n/2 + 1)``
   frequencies mixed across channels by complex weights ``(W_in, W_out, m)``, the others zeroed,
   the inverse real FFT; S(x) is the sum of the two axes' results;
4. ``fno_cnn_blocks`` residual refiners ``x + conv3x3(GELU(conv3x3(x)))``;
5. head: a 1×1 convolution to 2C channels, channel c the real part and C + c the imaginary part
   of patch c (``real_imag``); or σ / π·tanh of those as amplitude and phase
   (``amp_phase_logits``); or two 1×1 convolutions to C channels each, amplitude σ and phase
   π·tanh (``amp_phase``).

GELU is the exact (erf) form, as torch's default.

References
----------
.. [1] A. Tran, A. Mathews, L. Xie, C. S. Ong, "Factorized Fourier Neural Operators",
   ICLR 2023.
"""

from __future__ import annotations

import math

from .functional import conv as _conv
from .functional import record

__all__ = ["ffno_forward", "factorised_spectral"]


def factorised_spectral(x, weights_x, weights_y):
    """S(x): the factorised spectral convolution of (B, W, H, Wd) float32 ``x``.

    ``weights_x`` (W, W, modes) complex64 mix the frequencies along the last axis (columns),
    ``weights_y`` along the rows. Returns the same shape and dtype as ``x``.
    """
    import torch

    height, width = x.shape[-2:]
    modes_w = min(weights_x.shape[-1], width // 2 + 1)
    modes_h = min(weights_y.shape[-1], height // 2 + 1)
    along_w = torch.fft.rfft(x, dim=-1)
    mixed_w = torch.zeros_like(along_w)
    mixed_w[..., :modes_w] = torch.einsum("bihm,iom->bohm", along_w[..., :modes_w], weights_x[:, :, :modes_w])
    along_h = torch.fft.rfft(x, dim=-2)
    mixed_h = torch.zeros_like(along_h)
    mixed_h[:, :, :modes_h, :] = torch.einsum("bimw,iom->bomw", along_h[:, :, :modes_h, :], weights_y[:, :, :modes_h])
    return torch.fft.irfft(mixed_w, n=width, dim=-1) + torch.fft.irfft(mixed_h, n=height, dim=-2)


def _input_transform(x, mode):
    import torch
    import torch.nn.functional as F

    if mode == "sqrt":
        return torch.sqrt(torch.clamp(x, min=0.0))
    if mode == "log1p":
        return torch.log1p(torch.clamp(x, min=0.0))
    if mode == "instancenorm":
        return F.instance_norm(x, eps=1e-6)
    return x


def ffno_forward(weights, settings, x, taps=None):
    """The ``ffno`` generator: (B, C, N, N) float32 -> (B, C, N, N) complex64 patches.

    Parameters
    ----------
    weights : Mapping[str, torch.Tensor]
        :func:`.weights.generator_weights`, on ``x``'s device.
    settings : TorchPinnSettings
    x : torch.Tensor (B, C, N, N) float32
        The scaled input (``f · amplitude``).
    taps : dict, optional
        Filled with intermediates named as PtychoPINN's reference files name them
        (``lifter_out``, ``ffno_stack_out``, ``refiners_out``, ``output_proj``,
        ``generator_out`` (B, N, N, C, 2)).

    Returns
    -------
    torch.Tensor (B, C, N, N) complex64
    """
    import torch
    import torch.nn.functional as F

    batch, channels, height, width = x.shape
    x = _input_transform(x, settings.fno_input_transform)
    x = _conv(weights, "lifter.conv2", F.gelu(_conv(weights, "lifter.conv1", x)))
    record(taps, "lifter_out", x)
    gate = weights["ffno_stack.shared_gate"]
    for i in range(settings.fno_blocks):
        block = f"ffno_stack.blocks.{i}"
        update = factorised_spectral(x, weights[f"{block}.shared_spectral.weights_x"],
                                     weights[f"{block}.shared_spectral.weights_y"])
        update = F.instance_norm(update, weight=weights[f"{block}.norm.weight"], bias=weights[f"{block}.norm.bias"],
                                 eps=1e-5)
        update = _conv(weights, f"{block}.project", F.gelu(_conv(weights, f"{block}.expand", update)))
        x = x + gate * update
    record(taps, "ffno_stack_out", x)
    for i in range(settings.fno_cnn_blocks):
        x = x + _conv(weights, f"refiners.{i}.conv2", F.gelu(_conv(weights, f"refiners.{i}.conv1", x)))
    record(taps, "refiners_out", x)
    if settings.generator_output_mode == "amp_phase":
        amp = torch.sigmoid(_conv(weights, "output_amp", x))
        phase = math.pi * torch.tanh(_conv(weights, "output_phase", x))
        return amp.to(torch.complex64) * torch.exp(1j * phase.to(torch.complex64))
    projected = _conv(weights, "output_proj", x)
    record(taps, "output_proj", projected)
    record(taps, "generator_out", projected.view(batch, 2, channels, height, width).permute(0, 3, 4, 2, 1))
    first, second = projected[:, :channels], projected[:, channels:]
    if settings.generator_output_mode == "amp_phase_logits":
        amp, phase = torch.sigmoid(first), math.pi * torch.tanh(second)
        return amp.to(torch.complex64) * torch.exp(1j * phase.to(torch.complex64))
    return torch.complex(first, second)
