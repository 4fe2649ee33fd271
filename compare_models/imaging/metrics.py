"""Every metric of an image against the ground truth, amplitude and phase, on one region.

:func:`compute_metrics` is what a comparison reports for an aligned image: MAE, MSE, PSNR
(:mod:`.simple_metrics`), SSIM and MS-SSIM (:mod:`.ssim`) and FRC (:mod:`.frc`), each with
its data range and settings. ``psnr`` is ``inf`` for identical images;
:func:`compare_models.report.writers.to_jsonable` writes it as the string ``"inf"``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from ..errors import MetricError
from .frc import FRC_AGAINST_TRUTH_THRESHOLD, frc_against_truth, frc_on_region
from .geometry import mask_bbox
from .simple_metrics import check_data_range, data_range, mae, mse, psnr
from .ssim import SSIM_TAPS, ms_ssim, ssim

__all__ = ["compute_metrics"]


def _component_metrics(test, truth, mask, data_range_, *, smooth_sigma, frc_sigma, pixel_size_m, frc_images=None):
    """All metrics of one real component on the region's bounding box; the FRC on
    ``frc_images`` when given (the unit phasors of a phase)."""
    fill = float(truth[mask].mean())
    test_f = np.where(mask, test, fill)
    truth_f = np.where(mask, truth, fill)
    out = {
        "mae": mae(test[mask][None], truth[mask][None]),
        "mse": mse(test[mask][None], truth[mask][None]),
        "psnr": psnr(truth[mask][None], test[mask][None], data_range_),
        "ssim": ssim(truth_f, test_f, data_range_, mask=mask),
    }
    ms_a, ms_b = truth_f, test_f
    if smooth_sigma:
        ms_a = ndimage.gaussian_filter(truth_f, smooth_sigma)
        ms_b = ndimage.gaussian_filter(test_f, smooth_sigma)
    ms = ms_ssim(ms_a, ms_b, data_range_)
    out.update(
        ms_ssim=ms.value,
        ms_ssim_scales=ms.n_scales,
        ms_ssim_weights=list(ms.weights),
        ms_ssim_note=ms.note,
        ms_ssim_sigma=smooth_sigma or None,
    )
    # FRC: each image minus its own (window-weighted) mean, times one smooth window that
    # falls to 0 at the region's edge (frc_on_region, shared with the half-set FRC).
    frc_test, frc_truth = (test, truth) if frc_images is None else frc_images
    ring = frc_on_region(frc_test, frc_truth, mask, pixel_size_m=pixel_size_m, smoothing_sigma=frc_sigma)
    out["frc50"] = ring.cutoffs[FRC_AGAINST_TRUTH_THRESHOLD]["fraction_nyquist"]
    out["frc1over7"] = ring.cutoffs["1/7"]["fraction_nyquist"]
    out["frc"] = frc_against_truth(ring)
    return out


def compute_metrics(
    aligned,
    truth,
    region,
    *,
    ms_ssim_sigma: float | None = None,
    frc_sigma: float | None = None,
    pixel_size_m: float | None = None,
    amplitude_data_range: float | None = None,
    phase_data_range: float | None = None,
) -> dict:
    """Amplitude and phase metrics of an aligned reconstruction against the ground truth.

    Parameters
    ----------
    aligned : ndarray (H, W) complex
        Reconstruction after :func:`compare_models.imaging.registration.register`.
    truth : ndarray (H, W) complex
        Ground truth on the same grid.
    region : ndarray (H, W) bool
        Scored region; the same for every model in one comparison
        (:func:`compare_models.imaging.region.scored_region`).
    ms_ssim_sigma : float or None
        Gaussian sigma (pixels) blurring both images before MS-SSIM, amplitude and phase alike
        (the existing tool's ``--ms-ssim-sigma``). Default None: no blur, as Wang et al. define it.
    frc_sigma : float or None
        Smoothing of the FRC curves, in rings.
    pixel_size_m : float or None
        Object pixel size, for FRC resolutions in metres.
    amplitude_data_range, phase_data_range : float or None
        Data range for PSNR, SSIM and MS-SSIM. Default, for both: the truth's max - min over
        the region (:func:`data_range`), recorded with ``data_range_source``.

    Returns
    -------
    dict
        ``{"amplitude": {...}, "phase": {...}, "region": {...}, "settings": {...}}``; each
        component has scalars ``mae, mse, psnr, ssim, ms_ssim, ms_ssim_scales, frc50,
        frc1over7`` (FRC cut-offs as fractions of Nyquist: ``frc50`` is the resolution,
        ``frc1over7`` a legacy value that is not one), ``ms_ssim_weights``, ``ms_ssim_note``,
        ``ms_ssim_sigma``, ``data_range``, ``data_range_source`` and ``frc`` (the curve and
        the labelled cut-offs, :func:`frc_against_truth`). ``psnr`` is ``inf`` for identical
        images (see :func:`compare_models.report.writers.to_jsonable`).

    Raises
    ------
    MetricError
        Shapes differ, the region is empty or too small (< 11 pixels a side for SSIM), a value
        inside the region is not finite, or a truth component is zero over the region.

    Notes
    -----
    Everything is computed on the region's bounding box. MAE, MSE and PSNR use only the
    region's pixels. For SSIM and MS-SSIM, pixels of the box outside the region are set, in
    both images, to the truth's mean over the region; SSIM averages its map over windows
    centred in the region. FRC uses each image minus its own mean, multiplied by the same
    :func:`frc_window` (a raised-cosine taper to zero at the region's edge), so the edge of
    the region adds no correlation of its own. The phase of the reconstruction is taken as
    ``angle(truth) + angle(aligned * conj(truth))``, so that phase differences are wrapped
    differences and no 2 pi jump appears where the truth's phase crosses +-pi; FRC of the
    phase is computed on their unit phasors ``exp(i phase)``, which have no wrap
    discontinuities (:func:`compare_models.imaging.frc_window.unit_phasor`). One data-range rule serves both components, so
    the same fraction-of-range error scores the same PSNR in amplitude and in phase.
    """
    aligned = np.asarray(aligned)
    truth = np.asarray(truth)
    region = np.asarray(region)
    if aligned.ndim != 2 or aligned.shape != truth.shape or region.shape != truth.shape:
        raise MetricError(
            f"aligned, truth and region must share one 2-D shape, got {aligned.shape}, "
            f"{truth.shape}, {region.shape}"
        )
    if region.dtype != bool or not region.any():
        raise MetricError("region must be a non-empty boolean mask")
    if ms_ssim_sigma is not None and not (math.isfinite(ms_ssim_sigma) and ms_ssim_sigma >= 0):
        raise MetricError(f"ms_ssim_sigma must be >= 0 pixels, got {ms_ssim_sigma!r}")
    box = mask_bbox(region)
    mask = region[box]
    if min(mask.shape) < SSIM_TAPS:
        raise MetricError(
            f"region's bounding box {mask.shape} is smaller than the {SSIM_TAPS}-pixel SSIM window"
        )
    rec = aligned[box].astype(np.complex128)
    ref = truth[box].astype(np.complex128)
    for name, arr in (("aligned", rec), ("truth", ref)):
        if not np.isfinite(arr[mask]).all():
            raise MetricError(f"{name} image has NaN or infinite values inside the region")
    # Outside the region the values do not matter (filled below); keep them finite.
    rec = np.where(mask, rec, 0)
    ref = np.where(mask, ref, 1)

    amp_t, amp_r = np.abs(ref), np.abs(rec)
    phase_t = np.angle(ref)
    # Exactly equal pixels get exactly equal phases (the product can carry rounding).
    phase_r = phase_t + np.where(rec == ref, 0.0, np.angle(rec * np.conj(ref)))
    ranges = {}
    for name, values, given in (
        ("amplitude", amp_t, amplitude_data_range),
        ("phase", phase_t, phase_data_range),
    ):
        if given is None:
            try:
                ranges[name] = data_range(values[mask])
            except MetricError as exc:
                raise MetricError(f"{name}: {exc}") from exc
        else:
            ranges[name] = (check_data_range(given), "explicit")
    common = dict(frc_sigma=frc_sigma, pixel_size_m=pixel_size_m, smooth_sigma=ms_ssim_sigma)
    amplitude = _component_metrics(amp_r, amp_t, mask, ranges["amplitude"][0], **common)
    from .frc_window import unit_phasor

    phase = _component_metrics(
        phase_r, phase_t, mask, ranges["phase"][0], frc_images=(unit_phasor(phase_r), unit_phasor(phase_t)), **common
    )
    for part, name in ((amplitude, "amplitude"), (phase, "phase")):
        part.update(data_range=ranges[name][0], data_range_source=ranges[name][1])
    return {
        "amplitude": amplitude,
        "phase": phase,
        "region": {
            "bbox_rows": [int(box[0].start), int(box[0].stop)],
            "bbox_cols": [int(box[1].start), int(box[1].stop)],
            "n_pixels": int(mask.sum()),
        },
        "settings": {
            "ms_ssim_sigma": ms_ssim_sigma or None,
            "frc_sigma": frc_sigma,
            "pixel_size_m": pixel_size_m,
        },
    }
