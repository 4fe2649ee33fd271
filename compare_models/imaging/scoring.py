"""One scoring path: region, registration, gauge, metrics and FRC, for any pair of images.

A comparison scores images in two ways, by one algorithm (docs/design.md, "A fair comparison"):

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

One input never costs another its score. An input that cannot be scored (no data inside the
hull, a shift that cannot be estimated or exceeds ``rules.max_shift_px``, an image the gauge or
the measure cannot use) is recorded in :attr:`Scoring.failures` with the step and the reason,
and the steps are run again without it, so that the region, the largest shift and every other
input's numbers are exactly those of a scoring without it. Inputs scored ``on_region`` (a
chance level: a constant image) are scored on the region the others made and never change it.

Which inputs are scored, whether a shift is estimated and what the outputs say are the
caller's decisions; nothing here knows an arm, a model or a file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from ..errors import CompareModelsError, MetricError, RegistrationError
from .region import ScoredRegion, scored_region
from .registration import RegistrationResult, ShiftEstimate, estimate_shift, register

__all__ = [
    "SCORING_KINDS",
    "SCORING_STEPS",
    "ScoringInput",
    "ScoringRules",
    "ImageScore",
    "ScoringFailure",
    "Scoring",
    "score_images",
    "constant_image",
]

#: What a scoring compares: an image with the ground truth, or half 2 with half 1.
SCORING_KINDS = ("ground_truth", "half_set")
# How each kind names, in messages, the test image and the region.
_WORDS = MappingProxyType({"ground_truth": ("image", "scored region"), "half_set": ("half 2", "half-set region")})
# Timer stage of each kind's measure.
_MEASURE_STAGE = MappingProxyType({"ground_truth": "metrics", "half_set": "frc"})
#: The steps at which an input can fail (:class:`ScoringFailure` ``step``).
SCORING_STEPS = ("region", "shift", "registration", "measure")
# What an input's failure may raise: a contract error, or numbers the algorithms cannot use.
# Anything else (a TypeError, say) is a bug in this code and propagates.
_INPUT_ERRORS = (CompareModelsError, ValueError, ArithmeticError)


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
    shift_note: str | None = None

    @property
    def aligned(self) -> np.ndarray:
        return self.registration.aligned


@dataclass(frozen=True)
class ScoringFailure:
    """Why one input could not be scored.

    Attributes
    ----------
    name : str
        The input's name.
    step : {"region", "shift", "registration", "measure"}
        Where it failed (:data:`SCORING_STEPS`).
    message : str
        The error's message.
    error : str
        The error's type (``RegistrationError``, ``MetricError`` ...).
    """

    name: str
    step: str
    message: str
    error: str

    @classmethod
    def of(cls, item: ScoringInput, step: str, exc: BaseException) -> ScoringFailure:
        return cls(name=item.name, step=step, message=str(exc), error=type(exc).__name__)


@dataclass(frozen=True, eq=False)
class Scoring:
    """Every input that could be scored, on one region, and the inputs that could not.

    Attributes
    ----------
    region : ScoredRegion or None
        The scored region (its ``mask``, pixel counts, erosion and hull losses); None when no
        input could be scored.
    scores : dict of str to ImageScore
        In the order of the inputs (then the ``on_region`` inputs).
    failures : dict of str to ScoringFailure
        The inputs that could not be scored, in the order they failed.
    """

    region: ScoredRegion | None
    scores: dict
    failures: dict = field(default_factory=dict)


def _no_timer(stage, func, *args, **kwargs):
    return func(*args, **kwargs)


def score_images(
    inputs,
    hull,
    rules: ScoringRules,
    *,
    check_region: Callable[[ScoredRegion], None] | None = None,
    timer: Callable | None = None,
    on_region: Callable[[ScoredRegion], Sequence[ScoringInput]] | None = None,
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
    on_region : callable, optional
        ``on_region(region) -> inputs`` made from the final scored region (a chance level: a
        constant image of the reference's mean over it) and scored on it with the same rules.
        They estimate no shift and add no mask: they never change the region.

    Returns
    -------
    Scoring
        The scores of every input that could be scored, and the failures of the others
        (:class:`ScoringFailure`): an input fails when it has no data inside the hull, when
        its shift cannot be estimated or exceeds ``rules.max_shift_px``, when its shift alone
        would erode the region away, or when its registration or measure raises. The others
        are then scored again without it, so their numbers do not depend on it.

    Raises
    ------
    RegistrationError
        No region is left although no single input can be blamed (the inputs' data do not
        overlap inside the hull).
    MetricError
        ``check_region`` refuses the region, or an ``on_region`` input asks for a shift or a
        mask.
    """
    rules.validate()
    timer = timer or _no_timer
    failures = {}
    active = []
    for item in inputs:
        failure = _outside_hull(item, hull)
        if failure is None:
            active.append(item)
        else:
            failures[item.name] = failure
    while active:
        region, shifts, failed = _region_and_shifts(active, hull, rules, timer)
        if not failed:
            if check_region is not None:
                check_region(region)
            attempts = {item.name: _score_one(item, shifts[item.name], region.mask, rules, timer) for item in active}
            failed = {name: a for name, a in attempts.items() if isinstance(a, ScoringFailure)}
            if not failed:
                scores = {**attempts, **_score_on_region(on_region, region, rules, timer, failures)}
                return Scoring(region=region, scores=scores, failures=failures)
        failures.update(failed)
        active = [item for item in active if item.name not in failed]
    return Scoring(region=None, scores={}, failures=failures)


def _outside_hull(item: ScoringInput, hull) -> ScoringFailure | None:
    """A failure when one of the input's masks holds no pixel of the hull (its data cannot be
    scored, and would leave no region for any input)."""
    hull = np.asarray(hull, bool)
    for key, mask in item.region_masks.items():
        if not (hull & np.asarray(mask, bool)).any():
            error = RegistrationError(f"{key} holds no data inside the scan's hull")
            return ScoringFailure.of(item, "region", error)
    return None


def _region_and_shifts(active, hull, rules: ScoringRules, timer):
    """The common region of the ``active`` inputs, their shifts over it and the scored region;
    ``(region, shifts, failed)`` with ``failed`` the inputs that failed (then no region)."""
    masks = {key: mask for item in active for key, mask in item.region_masks.items()}
    common = scored_region(hull, masks, largest_shift_px=0.0, margin_px=0)
    attempts = {item.name: _shift(item, common.mask, rules, timer) for item in active}
    failed = {name: a for name, a in attempts.items() if isinstance(a, ScoringFailure)}
    if failed:
        return None, None, failed
    norms = {name: (0.0 if shift is None else shift.norm_px) for name, shift in attempts.items()}
    largest = max(norms.values(), default=0.0)
    try:
        region = scored_region(hull, masks, largest_shift_px=largest, margin_px=rules.margin_px)
    except RegistrationError as exc:
        if len(active) < 2 or largest == 0.0:
            raise
        # The largest shift eroded the region away: that input fails, the others go on.
        name = max(norms, key=norms.get)
        item = next(i for i in active if i.name == name)
        return None, None, {name: ScoringFailure.of(item, "shift", exc)}
    return region, attempts, {}


def _score_on_region(on_region, region: ScoredRegion, rules: ScoringRules, timer, failures: dict) -> dict:
    """Score the ``on_region`` inputs on the final region (no shift, no mask of their own)."""
    if on_region is None:
        return {}
    scores = {}
    for item in on_region(region):
        if item.estimate_shift or item.region_masks:
            raise MetricError(f"{item.name}: an input scored on the region estimates no shift and adds no mask")
        attempt = _score_one(item, None, region.mask, rules, timer)
        if isinstance(attempt, ScoringFailure):
            failures[item.name] = attempt
        else:
            scores[item.name] = attempt
    return scores


def _shift(item: ScoringInput, common, rules: ScoringRules, timer) -> ShiftEstimate | ScoringFailure | None:
    """The input's shift onto its reference over the common region, None where none is
    estimated, or the failure."""
    if not item.estimate_shift:
        return None
    try:
        if _flat(item.image, common, "complex"):
            return None  # every shift of a constant image is the same image
        if _flat(item.image, common, rules.correlate_on):
            raise RegistrationError(
                f"the image's {rules.correlate_on} is constant over the region: no shift can be "
                "estimated from it"
            )
        return timer(
            f"{item.stage}.shift", estimate_shift, item.image, item.reference, common, valid=item.valid,
            max_shift=rules.max_shift_px, correlate_on=rules.correlate_on,
        )
    except _INPUT_ERRORS as exc:
        return ScoringFailure.of(item, "shift", exc)


def _flat(image, region, correlate_on: str) -> bool:
    """Whether ``image`` (its modulus for ``correlate_on="amplitude"``) takes one value over
    ``region``."""
    values = np.asarray(image)[region]
    if correlate_on == "amplitude":
        values = np.abs(values)
    return values.size > 0 and bool(np.all(values == values[0]))


def _score_one(item: ScoringInput, shift, region, rules: ScoringRules, timer) -> ImageScore | ScoringFailure:
    """Register one input onto its reference on the scored region, then measure it; the
    failure, if either step cannot be done."""
    step = "registration"
    try:
        registration = timer(
            f"{item.stage}.registration", register, item.image, item.reference, region, valid=item.valid,
            shift_yx=None if shift is None else shift.shift_yx, estimate_shift=False,
            phase_align=rules.phase_align,
        )
        if not registration.valid[region].all():  # the erosion guarantees it
            image_word, region_word = _WORDS[rules.kind]
            raise MetricError(f"{item.name}: the shifted {image_word} lacks data inside the {region_word}")
        step = "measure"
        measures = timer(
            f"{item.stage}.{_MEASURE_STAGE[rules.kind]}", _measure, registration.aligned, item.reference, region, rules
        )
    except _INPUT_ERRORS as exc:
        return ScoringFailure.of(item, step, exc)
    note = None
    if item.estimate_shift and shift is None:
        note = "the image is constant over the region: every shift of it is the same image, so none was estimated"
    return ImageScore(name=item.name, shift=shift, registration=registration, measures=measures, shift_note=note)


def constant_image(reference, region) -> np.ndarray:
    """A constant image of the reference's mean amplitude and mean phase over ``region``.

    Parameters
    ----------
    reference : ndarray (H, W) complex
    region : ndarray (H, W) bool

    Returns
    -------
    ndarray (H, W) complex (the reference's precision, at least complex64)
        ``mean(|reference|) * exp(i angle(mean(exp(i angle(reference)))))`` over the region
        everywhere: the phase is the angle of the mean unit phasor, a mean that a 2 pi wrap
        does not move (the arithmetic mean of phases near +pi and -pi would be 0).

    Raises
    ------
    MetricError
        An empty region, or a reference whose unit phasors cancel over it (no mean phase).

    Examples
    --------
    >>> truth = np.array([[1.0 * np.exp(3.1j), 3.0 * np.exp(-3.1j)]])
    >>> value = constant_image(truth, np.ones((1, 2), bool))[0, 0]
    >>> round(float(abs(value)), 6), round(float(abs(np.angle(value))), 6)
    (2.0, 3.141593)
    """
    values = np.asarray(reference)[np.asarray(region, bool)]
    if values.size == 0:
        raise MetricError("constant image: the region is empty")
    phasor = np.mean(np.exp(1j * np.angle(values)))
    if abs(phasor) < 1e-12:
        raise MetricError("constant image: the reference's phases cancel over the region (no mean phase)")
    value = np.mean(np.abs(values)) * np.exp(1j * np.angle(phasor))
    return np.full(np.shape(reference), value, dtype=np.result_type(np.asarray(reference).dtype, np.complex64))


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
