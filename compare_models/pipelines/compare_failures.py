"""What an arm that cannot be made or scored is told: its failure, in one line, and the fix.

One arm never costs the others their numbers (docs/design.md, "Independence of arms"): the compare
job records a failed arm (:class:`compare_models.report.records.ArmFailure`) and goes on. This
module turns what went wrong (an exception while making the arm's image, or a
:class:`compare_models.imaging.scoring.ScoringFailure`) into the record, with the flag or file
that fixes it. The exit status of a run with a failed arm is :data:`EXIT_FAILED_ARMS`.
"""

from __future__ import annotations

from types import MappingProxyType

from ..errors import CompareModelsError
from ..report.records import ArmFailure
from ..report.vocabulary import EXIT_FAILED_ARMS

__all__ = [
    "EXIT_FAILED_ARMS",
    "MAKING",
    "AGAINST_TRUTH",
    "HALF_SETS",
    "ArmsFailedError",
    "making_failure",
    "scoring_failure",
    "all_failed_message",
]

#: The stages an arm can fail at, in words.
MAKING = "making the image"
AGAINST_TRUTH = "scoring against ground truth"
HALF_SETS = "half-set FRC"

_FLAGS = MappingProxyType({"pinn": "--pinn_dir", "baseline": "--baseline_dir", "ptychi": "--ptychi_recon_path"})


class ArmsFailedError(CompareModelsError):
    """No arm of a comparison could be made or scored (each one's failure in the message)."""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def making_failure(key: str, exc: BaseException) -> ArmFailure:
    """The record of an arm whose image could not be made (a model that cannot be loaded or
    run, a reconstruction file that cannot be placed)."""
    what = "reconstruction file" if key == "ptychi" else "model"
    reason = _one_line(exc) if isinstance(exc, CompareModelsError) else f"{type(exc).__name__}: {_one_line(exc)}"
    return ArmFailure(
        stage=MAKING, step=None, reason=reason,
        fix=(
            f"check the {what} that {_FLAGS[key]} names (logs/run.log has the full error), or "
            f"leave {_FLAGS[key]} out"
        ),
    )


def scoring_failure(key: str, failure, config, *, stage: str = AGAINST_TRUTH) -> ArmFailure:
    """The record of an arm that could not be scored, from its
    :class:`~compare_models.imaging.scoring.ScoringFailure`; ``stage`` is
    :data:`AGAINST_TRUTH` or :data:`HALF_SETS`."""
    return ArmFailure(stage=stage, step=failure.step, reason=_one_line(failure.message),
                      fix=_scoring_fix(key, failure, config, stage))


def _scoring_fix(key: str, failure, config, stage: str) -> str:
    if key == "chance":
        return "none needed for the arms (their numbers stand); the reason says what the truth lacks for a chance level"
    if failure.step == "region":
        return "its image holds no data inside the scan's hull: check that it was made from this test data"
    if failure.step == "shift":
        return _shift_fix(key, failure, config, stage)
    if stage == HALF_SETS:
        return "check the arm's half images (reconstructions.npz holds them), or --no-half-sets"
    return f"the reason says what the image lacks: check the {'reconstruction' if key == 'ptychi' else 'model'} (logs/run.log has the details)"


def _shift_fix(key: str, failure, config, stage: str) -> str:
    """A shift that cannot be estimated or exceeds --max-shift."""
    over = "max_shift" in failure.message
    bound = f"raise --max-shift (now {config.max_shift_px:g} px) above the shift in the reason"
    if stage == HALF_SETS:
        return (f"if the two halves are displaced by that much, {bound}; otherwise check that both half "
                "reconstructions are of this scan, or --no-half-sets" if over
                else "--skip-registration if both halves record their frame, or --no-half-sets")
    if key == "ptychi":
        return (f"if the reconstruction is displaced by that much, {bound}; otherwise check that it is "
                "of this scan" if over
                else "--skip-registration if the reconstruction records its frame")
    unregistered = (
        "a network's image is stitched in the ground-truth frame by construction: --register-ptychi-only "
        "estimates no shift for it"
    )
    return f"{unregistered} (or, if the shift is real, {bound})" if over else unregistered


def all_failed_message(failures: dict) -> str:
    """The one-line error of a comparison in which no arm could be made or scored."""
    lines = "; ".join(failure.line(name) for name, items in failures.items() for failure in items)
    return f"no arm could be scored: {lines}"
