"""Pieces both generators' forward passes share (torch, functional): a same-padded 2-D
convolution read from the state_dict, and recording an intermediate tensor for parity tests."""

from __future__ import annotations

__all__ = ["conv", "record"]


def conv(weights, name, x, *, bias_optional: bool = False):
    """``F.conv2d`` of (B, C, H, W) ``x`` with ``weights[name.weight]`` and ``name.bias``,
    padded to keep H × W (odd kernels). ``bias_optional``: a layer built without bias has no
    ``name.bias`` key; otherwise a missing key is a :class:`KeyError`."""
    import torch.nn.functional as F

    weight = weights[f"{name}.weight"]
    bias = weights.get(f"{name}.bias") if bias_optional else weights[f"{name}.bias"]
    return F.conv2d(x, weight, bias, padding=weight.shape[-1] // 2)


def record(taps, name, tensor):
    """Keep ``tensor`` as ``taps[name]`` when the caller asked for intermediates (``taps`` is a
    dict), else nothing."""
    if taps is not None:
        taps[name] = tensor
