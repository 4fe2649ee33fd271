"""Structural similarity: SSIM (Wang et al. 2004) and MS-SSIM (Wang, Simoncelli & Bovik 2003).

Both take real 2-D arrays (an amplitude or a phase) and an explicit data range; a value that
cannot be computed raises :class:`compare_models.errors.MetricError`.

References
----------
.. [1] Z. Wang, A. C. Bovik, H. R. Sheikh and E. P. Simoncelli, "Image quality assessment:
   from error visibility to structural similarity," IEEE Trans. Image Process. 13, 600-612
   (2004).
.. [2] Z. Wang, E. P. Simoncelli and A. C. Bovik, "Multiscale structural similarity for image
   quality assessment," Proc. 37th Asilomar Conf. Signals, Systems and Computers, 1398-1402
   (2003).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import MetricError
from .simple_metrics import as_real_pair, check_data_range

__all__ = ["MS_SSIM_WEIGHTS", "SSIM_TAPS", "MSSSIMResult", "ssim", "ms_ssim"]

#: Wang et al. (2003) exponents for scales 1 (finest) .. 5.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
#: Side of the Gaussian SSIM window, pixels: the smallest region SSIM can score.
SSIM_TAPS = 11
_SSIM_SIGMA = 1.5
_K1 = 0.01
_K2 = 0.03


def _gaussian_window():
    half = (SSIM_TAPS - 1) / 2
    taps = np.exp(-((np.arange(SSIM_TAPS) - half) ** 2) / (2 * _SSIM_SIGMA**2))
    return taps / taps.sum()


def _filter_valid(image, window):
    """Separable correlation with ``window``, keeping only fully overlapped pixels ("valid")."""
    half = (len(window) - 1) // 2
    out = ndimage.correlate1d(image, window, axis=0, mode="reflect")
    out = ndimage.correlate1d(out, window, axis=1, mode="reflect")
    return out[half : image.shape[0] - half, half : image.shape[1] - half]


def _ssim_maps(a, b, data_range):
    """Luminance and contrast-structure maps (Wang 2004, Gaussian window, valid region)."""
    window = _gaussian_window()
    c1 = (_K1 * data_range) ** 2
    c2 = (_K2 * data_range) ** 2
    mu_a = _filter_valid(a, window)
    mu_b = _filter_valid(b, window)
    var_a = _filter_valid(a * a, window) - mu_a**2
    var_b = _filter_valid(b * b, window) - mu_b**2
    cov = _filter_valid(a * b, window) - mu_a * mu_b
    luminance = (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1)
    cs = (2 * cov + c2) / (var_a + var_b + c2)
    return luminance, cs


def ssim(a, b, data_range, *, mask=None) -> float:
    """Structural similarity index of Wang et al. (2004), mean over the valid pixels.

    Parameters
    ----------
    a, b : ndarray (H, W) real
        Reference and test image; both sides must be at least 11 pixels.
    data_range : float
        Dynamic range ``L`` in ``C1 = (0.01 L)**2``, ``C2 = (0.03 L)**2``.
    mask : ndarray (H, W) bool, optional
        Average the SSIM map only over windows centred on these pixels.

    Returns
    -------
    float
        In [-1, 1]; 1 for identical images.

    Notes
    -----
    11-tap Gaussian window, sigma 1.5, population (not sample) covariances, windows that lie
    entirely in the image. This equals :func:`skimage.metrics.structural_similarity` with
    ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False``.
    """
    a, b = as_real_pair(a, b)
    data_range = check_data_range(data_range)
    if min(a.shape) < SSIM_TAPS:
        raise MetricError(f"SSIM needs both sides >= {SSIM_TAPS} pixels, got shape {a.shape}")
    luminance, cs = _ssim_maps(a, b, data_range)
    smap = luminance * cs
    if mask is None:
        return float(smap.mean())
    half = (SSIM_TAPS - 1) // 2
    inner = np.asarray(mask, bool)[half:-half, half:-half]
    if not inner.any():
        raise MetricError("SSIM mask has no pixel at least 5 pixels from the image edge")
    return float(smap[inner].mean())


@dataclass(frozen=True)
class MSSSIMResult:
    """Multi-scale SSIM.

    Attributes
    ----------
    value : float
        ``prod_j cs_j**w_j`` over the finer scales times ``ssim_M**w_M`` at the coarsest one.
    n_scales : int
        Scales actually used (5 unless the image was too small and fewer were allowed).
    weights : tuple of float
        Exponents used; the first ``n_scales`` paper weights renormalised to sum to 1 when
        fewer than 5 scales were used.
    note : str
        Empty, or a sentence saying why fewer scales were used.
    """

    value: float
    n_scales: int
    weights: tuple
    note: str = ""

    def to_dict(self) -> dict:
        return {
            "value": self.value,
            "n_scales": self.n_scales,
            "weights": list(self.weights),
            "note": self.note,
        }


def _max_scales(shape):
    """Number of scales whose coarsest image still holds one 11 x 11 window."""
    side = min(shape)
    n = 0
    while side >= SSIM_TAPS:
        n += 1
        side = (side + 1) // 2
    return n


def _downsample(image):
    """2 x 2 mean then decimation; an odd side is first padded by mirroring its last line."""
    pad = ((0, image.shape[0] % 2), (0, image.shape[1] % 2))
    image = np.pad(image, pad, mode="symmetric")
    return 0.25 * (image[0::2, 0::2] + image[1::2, 0::2] + image[0::2, 1::2] + image[1::2, 1::2])


def ms_ssim(
    a,
    b,
    data_range,
    *,
    scales: int = 5,
    weights=MS_SSIM_WEIGHTS,
    allow_fewer_scales: bool = True,
) -> MSSSIMResult:
    """Multi-scale structural similarity (Wang, Simoncelli and Bovik 2003).

    Parameters
    ----------
    a, b : ndarray (H, W) real
        Reference and test image.
    data_range : float
        Dynamic range ``L`` of the images.
    scales : int
        Number of scales M (5 in the paper).
    weights : sequence of float
        Exponents, finest scale first (default: the paper's 0.0448, 0.2856, 0.3001, 0.2363,
        0.1333).
    allow_fewer_scales : bool
        If the image is too small for ``scales`` scales (the coarsest must still hold an
        11 x 11 window: 5 scales need sides >= 161), use as many as fit with the first
        weights renormalised to sum 1, and say so in ``note``; otherwise raise.

    Returns
    -------
    MSSSIMResult

    Raises
    ------
    MetricError
        Sides below 11 pixels, or too small for ``scales`` with ``allow_fewer_scales=False``.

    Notes
    -----
    At scale j (1 = the original image) the contrast-structure term ``cs_j`` is the mean of the
    SSIM contrast-structure map (11-tap Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03,
    valid windows only); at the coarsest scale M the full SSIM is used. Between scales both
    images are low-passed by a 2 x 2 mean and decimated by 2, as in the authors' MATLAB code
    and :func:`tf.image.ssim_multiscale`. As there, negative ``cs_j`` or ``ssim_M`` are clipped
    to 0 before the fractional powers (which are undefined for negative numbers), so strongly
    anti-correlated images give 0, a genuine value rather than a failure.
    """
    a, b = as_real_pair(a, b)
    data_range = check_data_range(data_range)
    weights = tuple(float(w) for w in weights)
    if int(scales) != scales or scales < 1 or len(weights) < scales:
        raise MetricError(f"scales must be 1..{len(weights)} (one weight each), got {scales!r}")
    available = _max_scales(a.shape)
    if available == 0:
        raise MetricError(f"MS-SSIM needs both sides >= {SSIM_TAPS} pixels, got {a.shape}")
    n_scales = int(scales)
    note = ""
    used = weights[:n_scales]
    if available < n_scales:
        if not allow_fewer_scales:
            raise MetricError(
                f"MS-SSIM with {n_scales} scales needs both sides >= "
                f"{SSIM_TAPS * 2 ** (n_scales - 1) - 2 ** (n_scales - 1) + 1} pixels "
                f"(an 11-pixel window at the coarsest scale), got shape {a.shape}"
            )
        note = (
            f"image {a.shape} too small for {n_scales} scales; used {available} with the "
            f"first {available} weights renormalised to sum 1"
        )
        n_scales = available
        total = sum(weights[:n_scales])
        used = tuple(w / total for w in weights[:n_scales])
    value = 1.0
    for j in range(n_scales):
        if j:
            a, b = _downsample(a), _downsample(b)
        luminance, cs = _ssim_maps(a, b, data_range)
        term = float((luminance * cs).mean()) if j == n_scales - 1 else float(cs.mean())
        value *= max(term, 0.0) ** used[j]
    return MSSSIMResult(value=float(value), n_scales=n_scales, weights=used, note=note)
