"""The training losses, arrays in and loss out: the PINN's Poisson likelihood with its phase
gauge, the baseline's illumination-weighted absolute errors, and their weights.

A pattern's diffraction fixes neither the phase of a constant added to what the probe
illuminates (its patch's phase is known only up to a constant), nor anything where the probe
does not shine. The losses here say so: the PINN's gauge term holds the constant at 0, the
baseline's targets have it removed (:func:`remove_mean_phase`) and its errors are weighted by
the illumination (:func:`loss_weight`). docs/training-study.md has the measurements.
"""

from __future__ import annotations

import numpy as np

from ..errors import DatasetError

__all__ = [
    "PHASE_GAUGES",
    "LOSS_WEIGHTINGS",
    "loss_weight",
    "remove_mean_phase",
    "pinn_loss",
    "baseline_loss",
]

#: How the phase constant that a pattern cannot determine is fixed (``TrainConfig.phase_gauge``).
PHASE_GAUGES = ("illuminated-mean", "free")


def remove_mean_phase(patches, weight) -> np.ndarray:
    """``patches`` (n, N, N) complex with the phase of their ``weight``-ed mean removed, so that
    each patch's illuminated mean phase is 0 (the phasor mean, so no wrap)."""
    patches = np.asarray(patches)
    mean = np.sum(patches * weight, axis=(1, 2))
    rotation = np.where(np.abs(mean) > 0, np.conj(mean) / np.maximum(np.abs(mean), 1e-30), 1.0)
    return (patches * rotation[:, None, None]).astype(patches.dtype)


#: How the baseline's loss weights the pixels of a patch.
LOSS_WEIGHTINGS = ("illumination", "uniform")


def loss_weight(probe, weighting: str) -> np.ndarray:
    """Per-pixel weight (N, N) float32 of the baseline's loss, mean 1.

    ``"illumination"``: the probe's intensity ``|P|²``. A pixel the probe does not illuminate
    leaves no trace in the diffraction, so its ground truth cannot be predicted from the data;
    weighting by the illumination spends the network on what the data determine (the
    stitched image keeps the patches' centres, where the probe is). ``"uniform"``: every pixel
    alike (the loss before this option).
    """
    if weighting == "uniform":
        return np.ones(np.shape(probe), np.float32)
    intensity = np.abs(np.asarray(probe)) ** 2
    if not intensity.sum() > 0:
        raise DatasetError("the probe is zero everywhere: cannot weight the loss by its illumination")
    return (intensity / intensity.mean()).astype(np.float32)


def pinn_loss(outputs, counts, *, gauge_weight=None, mean_counts: float = 1.0):
    """Poisson NLL of the PINN's expected counts, plus the phase gauge term.

    Parameters
    ----------
    outputs : (object, intensity)
        The PINN's outputs: member patches (B, N, N, C, 2) real/imaginary after the overlap
        constraint, and expected counts (B, N, N, C).
    counts : tf.Tensor (B, N, N, C)
        Measured counts.
    gauge_weight : ndarray (N, N) or None
        With weights (the illumination), add ``mean_counts * mean(m²)``, ``m`` each member's
        weighted mean phase (the phase of its weighted phasor sum): the far field's modulus
        does not see that constant, so this term fixes it at 0, in the NLL's own units (counts
        per pixel). None: the NLL alone.
    mean_counts : float
        The data's mean count per pixel.
    """
    import tensorflow as tf

    from .physics import poisson_nll

    obj, intensity = outputs[0], outputs[1]
    nll = poisson_nll(counts, intensity)
    if gauge_weight is None:
        return nll
    weight = tf.constant(np.asarray(gauge_weight, np.float32)[None, :, :, None])
    re = tf.reduce_sum(weight * obj[..., 0], axis=(1, 2))
    im = tf.reduce_sum(weight * obj[..., 1], axis=(1, 2))
    return nll + float(mean_counts) * tf.reduce_mean(tf.square(tf.atan2(im, re)))


def baseline_loss(outputs, targets, weight):
    """Weighted mean absolute error of amplitude plus that of the wrapped phase difference.

    ``outputs``: the baseline's (object, amplitude (B, N, N, 1), phase (B, N, N, 1));
    ``targets``: (amplitude, phase) of the truth patches; ``weight`` (N, N), mean 1.
    """
    import tensorflow as tf

    weight = tf.constant(np.asarray(weight, np.float32)[None, :, :, None])
    amplitude_error = tf.reduce_mean(weight * tf.abs(outputs[1] - targets[0]))
    delta = outputs[2] - targets[1]
    phase_error = tf.reduce_mean(weight * tf.abs(tf.atan2(tf.sin(delta), tf.cos(delta))))
    return amplitude_error + phase_error
