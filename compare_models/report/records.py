"""Typed records of one comparison: each arm's images, and each arm's scores.

The compare pipeline makes them (:mod:`compare_models.pipelines.compare`); the document
builders (:mod:`compare_models.report.documents`) and the printed summary
(:mod:`compare_models.report.summary`) read them; nothing else passes a comparison around.

* :class:`HalfImages`: an arm's two half-set images.
* :class:`ArmImage`: an arm's image on the ground-truth grid, before registration.
* :class:`ArmScore`: an arm against the ground truth (or, without one, its timings only).
* :class:`TruthScoring`: every arm against the ground truth, on one region.
* :class:`HalfSetScore`: an arm's half 2 against its half 1.
* :class:`HalfSetScoring`: every arm's half sets, on one region, and the arms left out.
* :class:`Comparison`: all of the above for one run.

* :class:`ArmFailure`: why an arm could not be made or scored, and the fix.

An arm that cannot be made or scored never costs the others their numbers: it is recorded
beside them (``ArmScore.failure``, ``HalfSetScoring.failures``,
``Comparison.making_failures``; all of them in :attr:`Comparison.failures`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..imaging.scoring import ImageScore
from .vocabulary import HALF_SET_MEANINGS, MODEL_NAMES, NETWORK_HALVES_UNREGISTERED

__all__ = [
    "ArmFailure",
    "HalfImages",
    "ArmImage",
    "ArmScore",
    "TruthScoring",
    "HalfSetScore",
    "HalfSetScoring",
    "Comparison",
    "registration_record",
]


@dataclass(frozen=True)
class ArmFailure:
    """Why an arm has no numbers of one kind, and what to do about it.

    Attributes
    ----------
    stage : str
        What could not be done, in words ("making the image", "scoring against ground truth",
        "half-set FRC").
    step : str or None
        Where inside the scoring it failed (``region``, ``shift``, ``registration``,
        ``measure``; :data:`compare_models.imaging.scoring.SCORING_STEPS`), None while making
        the image.
    reason : str
        The error, in one line.
    fix : str
        What to change (a flag, a file) to get the arm's numbers.
    """

    stage: str
    step: str | None
    reason: str
    fix: str

    def to_dict(self) -> dict:
        return {"stage": self.stage, "step": self.step, "reason": self.reason, "fix": self.fix}

    def line(self, name: str) -> str:
        """One line for the printed summary and the logs."""
        where = self.stage if self.step is None else f"{self.stage} (at the {self.step} step)"
        return f"{name}: {where} failed: {self.reason}. Fix: {self.fix}"


@dataclass(frozen=True, eq=False)
class HalfImages:
    """An arm's two half-set images on the comparison's grid.

    Attributes
    ----------
    images : tuple of two ndarray (H, W) complex64
    valid : tuple of two ndarray (H, W) bool
        Where each half image holds data.
    positions_xy : tuple of two ndarray (n_k, 2) or None
        The positions each half was made from (object pixels), for coverage hints.
    split : dict
        How the halves were chosen (:meth:`HalfSplit.to_dict`, plus where it came from).
    how : str
        How the images were made, in words.
    timings_s : dict
        Stage -> seconds.
    details : dict
        Provenance (paths, algorithms, stitching crop ...).
    """

    images: tuple
    valid: tuple
    positions_xy: tuple | None
    split: dict
    how: str
    timings_s: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class ArmImage:
    """One arm's object image on the ground-truth grid, before registration.

    Attributes
    ----------
    key : {"pinn", "baseline", "ptychi"}
    image : ndarray (H, W) complex64
    valid : ndarray (H, W) bool
        Where the arm has data.
    timings_s : dict
        Stage -> seconds.
    details : dict
        Provenance: bundle metadata, reconstruction metadata, counts.
    halves : HalfImages or None
        The two half-set images (None: no half-set FRC).
    """

    key: str
    image: np.ndarray
    valid: np.ndarray
    timings_s: dict
    details: dict
    halves: HalfImages | None = None

    @property
    def name(self) -> str:
        return MODEL_NAMES[self.key]


def registration_record(score: ImageScore) -> dict:
    """The registration applied to a scored image, JSON-ready: the shift and the gauge
    (:meth:`RegistrationResult.to_dict`), and the shift estimate where one was made."""
    record = score.registration.to_dict()
    if score.shift is not None:
        record["shift"] = score.shift.to_dict()
    return record


@dataclass(frozen=True, eq=False)
class ArmScore:
    """One arm against the ground truth.

    Attributes
    ----------
    name : str
        The arm's name (:data:`MODEL_NAMES`).
    image : ndarray (H, W) complex or None
        The image as scored: registered onto the truth, or as stitched without ground truth;
        None when the arm could not be scored.
    computation_time_s, compile_time_s : float or None
        What a user waits for per image (no one-off compilation), and the compilation.
    notes : dict
        What metrics.json says besides the numbers (``model_format``, ``initialisation``).
    score : ImageScore or None
        Registration and metrics; None without ground truth.
    failure : ArmFailure or None
        Why the arm could not be scored; None when it was (or when nothing was to be scored).
    """

    name: str
    image: np.ndarray | None
    computation_time_s: float | None
    compile_time_s: float | None
    notes: dict
    score: ImageScore | None = None
    failure: ArmFailure | None = None

    @property
    def metrics(self) -> dict | None:
        """:func:`compare_models.imaging.metrics.compute_metrics` of the arm, or None."""
        return None if self.score is None else self.score.measures

    @property
    def registration(self) -> dict | None:
        """:func:`registration_record` of the arm, or None."""
        return None if self.score is None else registration_record(self.score)


@dataclass(frozen=True, eq=False)
class TruthScoring:
    """Every arm against the ground truth, on one region (or, without ground truth, the
    region the figures show).

    Attributes
    ----------
    object_shape : tuple (H, W)
    region : ndarray (H, W) bool
        The scored region; without ground truth the displayed one.
    region_info : dict or None
        :meth:`ScoredRegion.to_dict`; None without ground truth.
    hull : ndarray (H, W) bool or None
        The scan's hull (None without ground truth).
    rules : dict
        The scoring rules in words and numbers (metrics.json ``scoring``).
    arms : dict of str to ArmScore
        In the order of the arms.
    chance : ArmScore or None
        The chance level: a constant image of the truth's mean scored on the region by the same
        rules (:data:`compare_models.report.vocabulary.CHANCE_DEFINITION`); None without ground
        truth or when no arm was scored.
    """

    object_shape: tuple
    region: np.ndarray
    region_info: dict | None
    hull: np.ndarray | None
    rules: dict
    arms: dict
    chance: ArmScore | None = None

    @property
    def region_pixels(self) -> int:
        return int(np.count_nonzero(self.region))

    @property
    def aligned(self) -> dict:
        """Arm name -> the image as scored (arms that failed left out)."""
        return {name: arm.image for name, arm in self.arms.items() if arm.failure is None}


@dataclass(frozen=True, eq=False)
class HalfSetScore:
    """One arm's half 2 registered onto its half 1 and correlated.

    Attributes
    ----------
    name : str
    half1 : ndarray (H, W) complex
        The reference half.
    score : ImageScore
        Half 2's registration and :func:`compare_models.imaging.halfsets.half_set_frc`.
    split, how : dict, str
        How the halves were chosen and made (:class:`HalfImages`).
    coverage : dict
        Fractions of the hull that half 1, half 2 and both cover.
    arm_kind : {"iterative", "network"}
        What made the halves (:data:`compare_models.report.vocabulary.ARM_KINDS`): it decides
        what the half-set FRC measures (:attr:`meaning`).
    """

    name: str
    half1: np.ndarray
    score: ImageScore
    split: dict
    how: str
    coverage: dict
    arm_kind: str = "iterative"

    kind = "half_set"

    @property
    def meaning(self) -> str:
        """``"resolution"`` (an iterative arm) or ``"reproducibility"`` (a network)."""
        return HALF_SET_MEANINGS[self.arm_kind]

    @property
    def amplitude(self) -> dict:
        return self.score.measures["amplitude"]

    @property
    def phase(self) -> dict:
        return self.score.measures["phase"]

    @property
    def phase_wrap_pixels(self) -> int:
        return self.score.measures["phase_wrap_pixels"]

    @property
    def registration(self) -> dict:
        """:func:`registration_record` of half 2 onto half 1, with the direction."""
        record = registration_record(self.score)
        if self.arm_kind == "network":
            record["shift_estimated"] = False
            record["why"] = NETWORK_HALVES_UNREGISTERED
            record["direction"] = "half 2 registered onto half 1 (no shift: one frame by construction; the gauge of half 2 against half 1)"
        else:
            record["shift_estimated"] = self.score.shift is not None
            record["direction"] = "half 2 registered onto half 1 (shift, then the gauge of half 2 against half 1)"
        return record

    @property
    def aligned(self) -> tuple:
        """(half 1, half 2 registered onto it)."""
        return np.asarray(self.half1), self.score.aligned


@dataclass(frozen=True, eq=False)
class HalfSetScoring:
    """Every arm's half-set FRC on one region.

    Attributes
    ----------
    computed : bool
        Whether any arm has a half-set FRC.
    region : ndarray (H, W) bool or None
    region_info : dict or None
        The region (:meth:`ScoredRegion.to_dict`) with its rule and coverage.
    arms : dict of str to HalfSetScore
    not_computed : dict of str to str
        Arm name -> why it has no half-set FRC (and the fix), for arms left out by design (no
        half images, halves that cover too little).
    failures : dict of str to ArmFailure
        Arm name -> why its half sets could not be scored (an error, not a design).
    """

    computed: bool
    region: np.ndarray | None = None
    region_info: dict | None = None
    arms: dict = field(default_factory=dict)
    not_computed: dict = field(default_factory=dict)
    failures: dict = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Comparison:
    """One run: the arms, their scores against the truth, and their half sets.

    Attributes
    ----------
    arms : tuple of ArmImage
    truth : TruthScoring
    half_sets : HalfSetScoring or None
        None with half-set FRC turned off.
    split : HalfSplit or None
        How the test scan was split into halves.
    timings_s : dict
        Stage -> seconds: the run's and every arm's.
    making_failures : dict of str to ArmFailure
        Arms the config names whose image could not be made (not in ``arms``).
    """

    arms: tuple
    truth: TruthScoring
    half_sets: HalfSetScoring | None
    split: object = None
    timings_s: dict = field(default_factory=dict)
    making_failures: dict = field(default_factory=dict)

    @property
    def failures(self) -> dict:
        """Arm name -> list of :class:`ArmFailure`: every arm that lacks numbers because
        something failed (its image, its score against the truth, its half sets)."""
        failures = {name: [failure] for name, failure in self.making_failures.items()}
        scored = list(self.truth.arms.items())
        if self.truth.chance is not None:
            scored.append((self.truth.chance.name, self.truth.chance))
        for name, arm in scored:
            if arm.failure is not None:
                failures.setdefault(name, []).append(arm.failure)
        for name, failure in (self.half_sets.failures if self.half_sets is not None else {}).items():
            failures.setdefault(name, []).append(failure)
        return failures
