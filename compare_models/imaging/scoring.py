"""One scoring path: region, registration, gauge, metrics and FRC, for any pair of images.

A comparison scores images in two ways, by one algorithm (DESIGN.md, "A fair comparison"):

* against the ground truth (``kind="ground_truth"``): each arm's image is the test image and
  the truth the reference; the measure is :func:`compare_models.imaging.metrics.compute_metrics`;
* half 2 against half 1 (``kind="half_set"``): each arm's half-2 image is the test image and
  its half-1 image the reference; the measure is
  :func:`compare_models.imaging.halfsets.half_set_frc`.

:func:`score_images` runs the steps for every :class:`ScoringInput` at once, on one region:

1. the common region: pixels of ``hull`` where every input's ``region_masks`` hold data;
2. each input's shift onto its reference over the common region, where its ``estimate_shift``
   asks for one (:func:`compare_models.imaging.registration.estimate_shift`);
3. the scored region: the common region eroded by ceil(largest shift) + margin
   (:func:`compare_models.imaging.region.scored_region`);
4. each whole test image shifted, its gauge fitted against the reference on the scored region
   (:func:`compare_models.imaging.registration.register`);
5. the measure on the scored region.

Which inputs are scored, whether a shift is estimated and what the outputs say are the
caller's decisions; nothing here knows an arm, a model or a file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from ..errors import MetricError
from .region import ScoredRegion, scored_region
from .registration import RegistrationResult, ShiftEstimate, estimate_shift, register

__all__ = ["SCORING_KINDS", "ScoringInput", "ScoringRules", "ImageScore", "Scoring", "score_images"]

#: What a scoring compares: an image with the ground truth, or half 2 with half 1.
SCORING_KINDS = ("ground_truth", "half_set")
# How each kind names, in messages, the test image and the region.
_WORDS = MappingProxyType({"ground_truth": ("image", "scored region"), "half_set": ("half 2", "half-set region")})
# Timer stage of each kind's measure.
_MEASURE_STAGE = MappingProxyType({"ground_truth": "metrics", "half_set": "frc"})


@dataclass(frozen=True, eq=False)
class ScoringInput:
    """One image to score against its reference.

    Attributes
    ----------
    name : str
        What the image is (an arm's name), for messages and as the key of its score.
    image : ndarray (H, W) complex
        The test image.
    valid : ndarray (H, W) bool
        Where ``image`` holds data (and is not 0: a zero has no phase).
    reference : ndarray (H, W) complex
        What ``image`` is registered onto and measured against: the ground truth, or half 1.
    region_masks : mapping of str to ndarray (H, W) bool
        The masks this input adds to the common region (the arm's valid mask; both halves'
        masks for a half-set pair), keyed by the names the region's ``hull_lost_fraction``
        reports.
    estimate_shift : bool
        Whether a shift onto the reference is estimated (else the image stays where it is).
    stage : str
        Prefix of this input's timer stages (``<stage>.shift``, ``<stage>.registration``,
        ``<stage>.metrics`` or ``<stage>.frc``).
    """

    name: str
    image: np.ndarray
    valid: np.ndarray
    reference: np.ndarray
    region_masks: Mapping[str, np.ndarray]
    estimate_shift: bool
    stage: str


@dataclass(frozen=True)
class ScoringRules:
    """How images are scored (the comparison's settings).

    Attributes
    ----------
    kind : {"ground_truth", "half_set"}
        Which measure (:data:`SCORING_KINDS`).
    max_shift_px : float
        Largest shift a registration may estimate, pixels.
    correlate_on : {"complex", "amplitude"}
        What the shift estimate correlates.
    margin_px : int
        Erosion of the region beyond the largest shift, pixels.
    phase_align : {"ramp", "offset"}
        The phase gauge fitted after the shift.
    ms_ssim_sigma : float or None
        Blur before MS-SSIM, pixels (against ground truth only).
    frc_sigma : float or None
        Smoothing of FRC curves, rings.
    pixel_size_m : float or None
        Object pixel size, metres (resolutions in metres).
    """

    kind: str
    max_shift_px: float
    correlate_on: str
    margin_px: int
    phase_align: str
    ms_ssim_sigma: float | None = None
    frc_sigma: float | None = None
    pixel_size_m: float | None = None

    def validate(self) -> ScoringRules:
        if self.kind not in SCORING_KINDS:
            raise MetricError(f"scoring kind must be one of {', '.join(SCORING_KINDS)}, got {self.kind!r}")
        return self


@dataclass(frozen=True, eq=False)
class ImageScore:
    """What scoring made of one :class:`ScoringInput`.

    Attributes
    ----------
    name : str
    shift : ShiftEstimate or None
        The estimated shift; None where none was estimated.
    registration : RegistrationResult
        The shift applied and the gauge fitted; ``registration.aligned`` is the test image
        registered onto its reference.
    measures : dict
        ``compute_metrics`` (against ground truth) or ``half_set_frc`` (half sets).
    """

    name: str
    shift: ShiftEstimate | None
    registration: RegistrationResult
    measures: dict

    @property
    def aligned(self) -> np.ndarray:
        return self.registration.aligned


@dataclass(frozen=True, eq=False)
class Scoring:
    """Every input scored on one region.

    Attributes
    ----------
    region : ScoredRegion
        The scored region (its ``mask``, pixel counts, erosion and hull losses).
    scores : dict of str to ImageScore
        In the order of the inputs.
    """

    region: ScoredRegion
    scores: dict


def _no_timer(stage, func, *args, **kwargs):
    return func(*args, **kwargs)


def score_images(
    inputs,
    hull,
    rules: ScoringRules,
    *,
    check_region: Callable[[ScoredRegion], None] | None = None,
    timer: Callable | None = None,
) -> Scoring:
    """Score every input on one region (the steps in this module's docstring).

    Parameters
    ----------
    inputs : sequence of ScoringInput
        At least one; names unique.
    hull : ndarray (H, W) bool
        The scan's convex hull (:func:`compare_models.imaging.region.scan_hull`).
    rules : ScoringRules
    check_region : callable, optional
        ``check_region(region)`` raises if the scored region cannot serve (called before any
        registration).
    timer : callable, optional
        ``timer(stage, func, *args, **kwargs)`` runs and times each step.

    Returns
    -------
    Scoring

    Raises
    ------
    RegistrationError
        A shift beyond ``rules.max_shift_px``, or no region left.
    MetricError
        A shifted image lacks data inside the region, or a measure cannot be computed.
    """
    rules.validate()
    timer = timer or _no_timer
    masks = {key: mask for item in inputs for key, mask in item.region_masks.items()}
    common = scored_region(hull, masks, largest_shift_px=0.0, margin_px=0)
    shifts = {item.name: _shift(item, common.mask, rules, timer) for item in inputs}
    largest = max((s.norm_px for s in shifts.values() if s is not None), default=0.0)
    region = scored_region(hull, masks, largest_shift_px=largest, margin_px=rules.margin_px)
    if check_region is not None:
        check_region(region)
    scores = {item.name: _score_one(item, shifts[item.name], region.mask, rules, timer) for item in inputs}
    return Scoring(region=region, scores=scores)


def _shift(item: ScoringInput, common, rules: ScoringRules, timer) -> ShiftEstimate | None:
    """The input's shift onto its reference over the common region, or None."""
    if not item.estimate_shift:
        return None
    return timer(
        f"{item.stage}.shift", estimate_shift, item.image, item.reference, common, valid=item.valid,
        max_shift=rules.max_shift_px, correlate_on=rules.correlate_on,
    )


def _score_one(item: ScoringInput, shift, region, rules: ScoringRules, timer) -> ImageScore:
    """Register one input onto its reference on the scored region, then measure it."""
    registration = timer(
        f"{item.stage}.registration", register, item.image, item.reference, region, valid=item.valid,
        shift_yx=None if shift is None else shift.shift_yx, estimate_shift=False,
        phase_align=rules.phase_align,
    )
    if not registration.valid[region].all():  # the erosion guarantees it
        image_word, region_word = _WORDS[rules.kind]
        raise MetricError(f"{item.name}: the shifted {image_word} lacks data inside the {region_word}")
    measures = timer(f"{item.stage}.{_MEASURE_STAGE[rules.kind]}", _measure, registration.aligned, item.reference, region, rules)
    return ImageScore(name=item.name, shift=shift, registration=registration, measures=measures)


def _measure(aligned, reference, region, rules: ScoringRules) -> dict:
    """Against ground truth every metric; between half sets the half-set FRC."""
    if rules.kind == "ground_truth":
        from .metrics import compute_metrics

        return compute_metrics(
            aligned, reference, region, ms_ssim_sigma=rules.ms_ssim_sigma, frc_sigma=rules.frc_sigma,
            pixel_size_m=rules.pixel_size_m,
        )
    from .halfsets import half_set_frc

    return half_set_frc(
        reference, aligned, region, pixel_size_m=rules.pixel_size_m, smoothing_sigma=rules.frc_sigma,
        phase_gauge=rules.phase_align,
    )
