"""Encoder and decoder stacks shared by the two networks (PtychoNN-style conv-pool blocks)."""

from __future__ import annotations

import itertools

import keras

from ..errors import ConfigError

__all__ = ["check_depth", "encoder", "decoder"]


def check_depth(patch_size: int, depth: int) -> None:
    """Raise :class:`ConfigError` unless N is divisible by ``2**depth`` (one pool per block)."""
    if depth < 1:
        raise ConfigError(f"depth must be >= 1, got {depth}")
    if patch_size % (2**depth):
        raise ConfigError(
            f"patch size N = {patch_size} must be divisible by 2**depth = {2**depth} "
            f"(depth {depth} pooling blocks)"
        )


def _conv(filters, seeds, name, activation="relu"):
    return keras.layers.Conv2D(
        filters,
        3,
        padding="same",
        activation=activation,
        kernel_initializer=keras.initializers.GlorotUniform(seed=next(seeds)),
        name=name,
    )


def encoder(x, *, width: int, depth: int, seeds: itertools.count):
    """``depth`` blocks of two 3x3 convolutions (``width * 2**i`` filters, ReLU) + 2x2 max-pool."""
    for i in range(depth):
        filters = width * 2**i
        x = _conv(filters, seeds, f"enc{i}_a")(x)
        x = _conv(filters, seeds, f"enc{i}_b")(x)
        x = keras.layers.MaxPooling2D(2, name=f"enc{i}_pool")(x)
    return x


def decoder(x, *, width: int, depth: int, channels: int, seeds: itertools.count, prefix: str):
    """Mirror of :func:`encoder` with 2x upsampling; ends in a linear conv to ``channels``."""
    for i in reversed(range(depth)):
        filters = width * 2**i
        x = _conv(filters, seeds, f"{prefix}{i}_a")(x)
        x = _conv(filters, seeds, f"{prefix}{i}_b")(x)
        x = keras.layers.UpSampling2D(2, name=f"{prefix}{i}_up")(x)
    return _conv(channels, seeds, f"{prefix}_out", activation=None)(x)
