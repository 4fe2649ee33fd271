"""Pixel-wise metrics of two real images: MAE, MSE, PSNR, and the data range PSNR and SSIM use.

Every function takes real 2-D arrays (the amplitude or the phase of an image on the
ground-truth grid) and returns plain floats. A metric that cannot be computed raises
:class:`compare_models.errors.MetricError` with the reason; nothing returns NaN. The one
non-finite value is PSNR of identical images, which is ``float("inf")``.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import MetricError

__all__ = ["as_pair", "as_real_pair", "check_data_range", "mae", "mse", "psnr", "data_range"]


def as_real_pair(a, b, name="images"):
    """Two finite, non-empty real 2-D arrays of one shape, as float64; a MetricError otherwise."""
    if np.iscomplexobj(a) or np.iscomplexobj(b):
        raise MetricError(f"{name} must be real (pass the amplitude or the phase)")
    return as_pair(a, b, name)


def as_pair(a, b, name="images"):
    """Two finite, non-empty 2-D arrays of one shape: float64, or complex128 when either is
    complex (the unit phasors of a phase FRC); a MetricError otherwise."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.ndim != 2 or a.shape != b.shape:
        raise MetricError(f"{name} must be two 2-D arrays of one shape, got {a.shape}, {b.shape}")
    if a.size == 0:
        raise MetricError(f"{name} are empty")
    for label, arr in (("first", a), ("second", b)):
        if not np.isfinite(arr).all():
            raise MetricError(f"the {label} of the {name} has NaN or infinite values")
    dtype = np.complex128 if np.iscomplexobj(a) or np.iscomplexobj(b) else np.float64
    return a.astype(dtype), b.astype(dtype)


def check_data_range(data_range):
    """``data_range`` as a float; a MetricError unless it is positive and finite."""
    if data_range is None or not (math.isfinite(data_range) and data_range > 0):
        raise MetricError(f"data_range must be a positive finite number, got {data_range!r}")
    return float(data_range)


def mae(a, b) -> float:
    """Mean absolute difference ``mean |a - b|`` (units of the images)."""
    a, b = as_real_pair(a, b)
    return float(np.mean(np.abs(a - b)))


def mse(a, b) -> float:
    """Mean squared difference ``mean (a - b)**2`` (units of the images, squared)."""
    a, b = as_real_pair(a, b)
    return float(np.mean((a - b) ** 2))


def psnr(a, b, data_range) -> float:
    """Peak signal-to-noise ratio ``10 log10(data_range**2 / mse)`` in dB.

    Parameters
    ----------
    a, b : ndarray (H, W) real
        Reference and test image.
    data_range : float
        Peak-to-peak range of the signal (given explicitly, never guessed).

    Returns
    -------
    float
        ``inf`` when the images are identical (MSE = 0), by definition.
    """
    data_range = check_data_range(data_range)
    err = mse(a, b)
    if err == 0.0:
        return math.inf
    return float(10.0 * np.log10(data_range**2 / err))



def data_range(values) -> tuple[float, str]:
    """The data range of a truth component over the scored region, and how it was found.

    Parameters
    ----------
    values : ndarray
        The truth's amplitude or phase at the scored region's pixels.

    Returns
    -------
    (float, str)
        ``max - min``; if that is 0 to 1e-12 relative (a constant component), ``max |values|``,
        with the source saying so.

    Raises
    ------
    MetricError
        The component is identically zero (no range at all).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0 or not np.isfinite(values).all():
        raise MetricError("data range needs finite values")
    top = float(np.abs(values).max())
    spread = float(values.max() - values.min())
    if spread > 1e-12 * top:
        return spread, "truth max - min over the scored region"
    if top == 0.0:
        raise MetricError("the ground truth is zero over the region: no data range")
    return top, "truth max |value| over the scored region (the truth is constant there)"
