"""One arm never costs the others their numbers (docs/design.md, "Independence of arms").

An arm that cannot be scored (a shift beyond --max-shift, no data inside the scan's hull) is
recorded with its reason and fix, and every other arm is scored exactly as in a run without it:
the independent truth is that run. No networks here: the arms are images with valid masks, as
the compare job hands them over (the end-to-end check through the CLI is in
tests/test_compare_cli.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from test_compare_scoring import _arm, _band_limited, _circular_shift, _config, _positions

from compare_models.pipelines.compare import evaluate
from compare_models.pipelines.compare_halfsets import evaluate_half_sets
from compare_models.report.records import HalfImages


def _same_numbers(a: dict, b: dict) -> None:
    """Every scalar of two compute_metrics results is identical (bit for bit)."""
    for component in ("amplitude", "phase"):
        for key, value in a[component].items():
            if isinstance(value, float | int):
                assert b[component][key] == value, (component, key)


def test_a_shift_beyond_max_shift_fails_that_arm_alone():
    """pty-chi displaced by 25 px with --max-shift 10: it is named, with the reason and the
    flag that fixes it; the PINN is scored exactly as if pty-chi had not been given (same
    region, same largest shift, same metrics)."""
    truth = _band_limited(11)
    positions = _positions(seed=11)
    valid = np.ones(truth.shape, bool)
    pinn = _arm("pinn", _circular_shift(truth, (0.6, -0.4)) * 0.8, valid)
    far = _arm("ptychi", np.roll(truth, 25, axis=0), valid)
    config = _config(max_shift_px=10.0)
    both = evaluate([pinn, far], truth, positions, config)
    alone = evaluate([pinn], truth, positions, config)
    failure = both.arms["PtyChi"].failure
    assert failure is not None and failure.step == "shift"
    assert "exceeds max_shift" in failure.reason and "--max-shift" in failure.fix
    assert both.arms["PtyChi"].metrics is None and both.arms["PtyChi"].image is None
    assert both.arms["PtychoPINN"].failure is None
    assert np.array_equal(both.region, alone.region)
    assert both.region_info == alone.region_info
    assert "PtyChi" not in both.region_info["hull_lost_fraction"]
    _same_numbers(both.arms["PtychoPINN"].metrics, alone.arms["PtychoPINN"].metrics)
    assert both.arms["PtychoPINN"].registration == alone.arms["PtychoPINN"].registration


def test_a_network_shifted_past_the_bound_is_told_to_skip_its_registration():
    """An undertrained network whose correlation peak lands past --max-shift: the fix names
    --register-ptychi-only (a network's image is in the ground-truth frame by construction)."""
    truth = _band_limited(12)
    positions = _positions(seed=12)
    valid = np.ones(truth.shape, bool)
    arms = [_arm("baseline", np.roll(truth, 30, axis=1), valid), _arm("ptychi", truth, valid)]
    result = evaluate(arms, truth, positions, _config(max_shift_px=10.0))
    failure = result.arms["Baseline"].failure
    assert failure.step == "shift" and "--register-ptychi-only" in failure.fix
    assert result.arms["PtyChi"].metrics["amplitude"]["psnr"] > 100  # the truth itself, scored


def test_an_arm_without_data_in_the_hull_does_not_empty_the_region():
    """An arm whose image is zero (no data) everywhere would leave no region for anyone; it
    fails at the region step and the other arm is scored on its own region."""
    truth = _band_limited(13)
    positions = _positions(seed=13)
    valid = np.ones(truth.shape, bool)
    good = _arm("ptychi", 0.5 * truth, valid)
    empty = _arm("pinn", np.zeros_like(truth), valid)
    both = evaluate([empty, good], truth, positions, _config())
    alone = evaluate([good], truth, positions, _config())
    assert both.arms["PtychoPINN"].failure.step == "region"
    assert "no data inside the scan's hull" in both.arms["PtychoPINN"].failure.reason
    assert np.array_equal(both.region, alone.region)
    _same_numbers(both.arms["PtyChi"].metrics, alone.arms["PtyChi"].metrics)


def test_half_sets_of_one_arm_that_cannot_be_registered_cost_the_others_nothing():
    """pty-chi's half 2 displaced by 25 px (--max-shift 10): its half-set FRC fails with the fix,
    the PINN's half-set FRC is computed on the region it would have alone."""
    truth = _band_limited(14)
    positions = _positions(seed=14)
    valid = np.ones(truth.shape, bool)

    def with_halves(key, second):
        halves = HalfImages((truth.astype(np.complex64), second.astype(np.complex64)), (valid, valid), None,
                            {"method": "checkerboard"}, "test halves", {}, {})
        arm = _arm(key, truth, valid)
        return type(arm)(arm.key, arm.image, arm.valid, arm.timings_s, arm.details, halves)

    rng = np.random.default_rng(14)
    noisy = truth * np.exp(0.2j * rng.standard_normal(truth.shape))
    pinn = with_halves("pinn", noisy)
    far = with_halves("ptychi", np.roll(truth, 25, axis=0))
    config = _config(max_shift_px=10.0)
    both = evaluate_half_sets([pinn, far], positions, truth.shape, config)
    alone = evaluate_half_sets([pinn], positions, truth.shape, config)
    assert set(both.arms) == {"PtychoPINN"} and set(both.failures) == {"PtyChi"}
    assert "exceeds max_shift" in both.failures["PtyChi"].reason
    assert "--max-shift" in both.failures["PtyChi"].fix
    assert np.array_equal(both.region, alone.region)
    assert both.arms["PtychoPINN"].amplitude["curve"] == pytest.approx(alone.arms["PtychoPINN"].amplitude["curve"], abs=0)
