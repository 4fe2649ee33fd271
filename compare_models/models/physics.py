"""Differentiable forward model, Poisson likelihood and sub-pixel translation (``keras.ops``).

Written with ``keras.ops`` only, so the same functions run under Keras's TensorFlow, JAX and
PyTorch backends (they take and return the backend's tensors); under TensorFlow each op is the
one the earlier TensorFlow code called, so results are bit-identical to it.

Forward model (identical to :mod:`compare_models.study.simulator`)
------------------------------------------------------------
For an object patch ``O`` (N x N, complex) and the probe ``P`` stored with the dataset (already
scaled so that intensities are in photon counts), the far-field wave is

    Psi = fftshift(fft2(P * O, norm="ortho"))

with the zero frequency at pixel (N/2, N/2). ``keras.ops.fft2`` is unnormalised, so the
orthonormal transform is ``fft2(x) / sqrt(H W)``; ``fftshift`` is a roll by ``(H//2, W//2)``
over the last two axes, exactly as :func:`numpy.fft.fftshift` does.

Poisson likelihood
------------------
For predicted intensities ``lam`` and measured counts ``k = amplitude**2`` the negative
log-likelihood, up to the term ``log k!`` that does not depend on the model, is
``mean(lam - k log(lam + eps))``.

Group geometry (gridsize > 1)
-----------------------------
A group holds C patches whose centres sit at ``centre + d_c`` in object pixels (x column, y
row). The *region* is an array of side ``R = N + 2 pad`` whose pixel ``(pad, pad)`` is the
object pixel under pixel (0, 0) of a patch centred exactly at the group centre. Hence pixel
``(i, j)`` of member c lands on region pixel ``(i + pad + d_c,y, j + pad + d_c,x)``: a positive
offset moves a member's content down/right in the region. Translation is bilinear (a tent
kernel, exactly :func:`compare_models.imaging.geometry.extract_patches` for sub-pixel cuts), written as
two small matrix products so it runs on any device without image-transform kernels.

References
----------
.. [1] O. Hoidn, A. A. Mishra, A. Mehta, "Physics constrained unsupervised deep learning for
   rapid, high resolution scanning coherent diffraction reconstruction", Sci. Rep. 13, 22789
   (2023).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

__all__ = [
    "complex_from_parts",
    "fftshift2d",
    "far_field",
    "far_field_parts",
    "far_field_amplitude",
    "far_field_intensity",
    "poisson_nll",
    "resample_matrix",
    "translate",
    "combine_group",
]


def complex_from_parts(real, imag):
    """``real + i imag`` (complex64) from two float32 tensors of one shape."""
    return ops.view_as_complex(ops.stack([real, imag], axis=-1))


def fftshift2d(x):
    """Roll the last two axes by half their length (``numpy.fft.fftshift(x, axes=(-2, -1))``)."""
    height, width = x.shape[-2], x.shape[-1]
    return ops.roll(x, shift=[height // 2, width // 2], axis=[-2, -1])


def far_field_parts(exit_waves):
    """Real and imaginary parts (float32) of :func:`far_field`, without forming the complex
    result."""
    exit_waves = ops.cast(exit_waves, "complex64")
    height, width = exit_waves.shape[-2], exit_waves.shape[-1]
    norm = float(np.sqrt(np.float32(height * width)))  # the float32 square root
    real, imag = ops.fft2((ops.real(exit_waves), ops.imag(exit_waves)))
    return fftshift2d(real / norm), fftshift2d(imag / norm)


def far_field(exit_waves):
    """Centred orthonormal 2-D Fourier transform over the last two axes (complex64).

    Parameters
    ----------
    exit_waves : tensor (..., H, W) complex64

    Returns
    -------
    tensor (..., H, W) complex64
        ``fftshift(fft2(exit_waves, norm="ortho"))``; zero frequency at (H/2, W/2).
    """
    return complex_from_parts(*far_field_parts(exit_waves))


def far_field_amplitude(exit_waves):
    """``|far_field(exit_waves)|`` (float32), the ``keras.ops`` twin of the simulator's function."""
    return ops.abs(far_field(exit_waves))


def far_field_intensity(object_patches, probe):
    """Expected counts ``|fftshift(fft2(probe * O, norm="ortho"))|²`` (float32).

    Parameters
    ----------
    object_patches : tensor (..., N, N) complex64
    probe : tensor (N, N) complex64
        In the units of the dataset's ``probeGuess`` (scaled to photon counts).

    Notes
    -----
    The squared modulus is written as ``re² + im²`` so its gradient is finite at zero.
    """
    real, imag = far_field_parts(ops.multiply(ops.cast(object_patches, "complex64"), ops.cast(probe, "complex64")))
    return ops.square(real) + ops.square(imag)


def poisson_nll(counts, intensity, eps: float = 1e-6):
    """Mean Poisson negative log-likelihood ``mean(lam - k log(lam + eps))`` (scalar float32).

    Parameters
    ----------
    counts : tensor
        Measured counts k (amplitude squared), photons.
    intensity : tensor
        Predicted expected counts lam >= 0, photons, same shape.
    eps : float
        Keeps the logarithm finite where lam = 0.
    """
    counts = ops.cast(counts, "float32")
    intensity = ops.cast(intensity, "float32")
    return ops.mean(intensity - counts * ops.log(intensity + eps))


def resample_matrix(out_len: int, in_len: int, start):
    """Bilinear (tent) resampling matrices: output pixel i reads input coordinate ``start + i``.

    Parameters
    ----------
    out_len, in_len : int
    start : tensor (B,) float32
        Input coordinate of output pixel 0, pixels.

    Returns
    -------
    tensor (B, out_len, in_len) float32
        ``W[b, i, j] = max(0, 1 - |start[b] + i - j|)``; inputs outside ``0 .. in_len-1`` read 0.
    """
    start = ops.cast(start, "float32")
    i = ops.arange(out_len, dtype="float32")[None, :, None]
    j = ops.arange(in_len, dtype="float32")[None, None, :]
    return ops.relu(1.0 - ops.abs(start[:, None, None] + i - j))


def translate(images, start_xy, out_shape):
    """Resample ``images`` on a shifted grid: ``out[b, i, j] = images[b, y0 + i, x0 + j]``.

    Parameters
    ----------
    images : tensor (B, H, W) complex64 or float32
    start_xy : tensor (B, 2) float32
        ``(x0, y0)``: the input coordinate (column, row) read by output pixel (0, 0). Fractions
        are interpolated bilinearly; pixels outside the input read zero.
    out_shape : tuple of int
        ``(Ho, Wo)``.

    Returns
    -------
    tensor (B, Ho, Wo), dtype of ``images``
    """
    images = ops.convert_to_tensor(images)
    dtype = keras.backend.standardize_dtype(images.dtype)
    height, width = images.shape[-2], images.shape[-1]
    rows = resample_matrix(out_shape[0], height, start_xy[:, 1])
    cols = resample_matrix(out_shape[1], width, start_xy[:, 0])
    rows = ops.cast(rows, dtype)
    cols = ops.cast(cols, dtype)
    return ops.matmul(ops.matmul(rows, images), ops.swapaxes(cols, -1, -2))


def combine_group(patches, offsets_xy, pad: int):
    """Merge C overlapping patches into one region, average overlaps, cut each patch back out.

    Parameters
    ----------
    patches : tensor (B, C, N, N) complex64
        Member patches; member c is centred at ``centre + offsets_xy[:, c]``.
    offsets_xy : tensor (B, C, 2) float32
        Offsets (x, y) of each member from the group centre, object pixels. Must satisfy
        ``|offset| <= pad`` for the member to fit in the region.
    pad : int
        Margin of the region around a centred patch; the region side is ``N + 2 pad``.

    Returns
    -------
    tensor (B, C, N, N) complex64
        Each member's patch cut from the averaged region (see the module notes for the sign
        convention). Consistent inputs at integer offsets come back unchanged.
    """
    patches = ops.convert_to_tensor(patches)
    n_side = patches.shape[-1]
    channels = patches.shape[1]
    region = n_side + 2 * pad
    flat = ops.reshape(patches, [-1, n_side, n_side])
    offsets = ops.reshape(ops.cast(offsets_xy, "float32"), [-1, 2])
    place_start = -(offsets + float(pad))
    placed = translate(flat, place_start, (region, region))
    # Coverage of each placed patch: the outer product of the resampling matrices' row sums.
    rows = ops.sum(resample_matrix(region, n_side, place_start[:, 1]), axis=2)
    cols = ops.sum(resample_matrix(region, n_side, place_start[:, 0]), axis=2)
    weight = rows[:, :, None] * cols[:, None, :]
    placed = ops.reshape(placed, [-1, channels, region, region])
    weight = ops.reshape(weight, [-1, channels, region, region])
    total = ops.sum(weight, axis=1)
    inverse = ops.where(total > 1e-6, 1.0 / ops.maximum(total, 1e-6), ops.zeros_like(total))
    merged = ops.sum(placed, axis=1) * ops.cast(inverse, keras.backend.standardize_dtype(placed.dtype))
    merged = ops.repeat(merged[:, None], channels, axis=1)
    cut = translate(ops.reshape(merged, [-1, region, region]), offsets + float(pad), (n_side, n_side))
    return ops.reshape(cut, [-1, channels, n_side, n_side])
