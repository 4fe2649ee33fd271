"""The chance level: a constant image of the truth's mean, scored on the same region by the
same rules, written as model ``Constant``; an arm that does not beat it is flagged.

Independent truths: the mean and spread of the truth's amplitude over the region (NumPy), the
FRC of a structureless image (0 at every ring: the cut-off is ring 1), an arm that *is* the
constant image (it ties the chance level on every ranked metric) and an arm that is the truth
(it beats it on every one).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_compare_scoring import _arm, _band_limited, _circular_shift, _config, _positions

from compare_models.imaging.geometry import mask_bbox
from compare_models.imaging.region import erode_mask, scan_hull
from compare_models.imaging.scoring import constant_image
from compare_models.pipelines.compare import evaluate
from compare_models.report.documents import chance_flags, metric_rows, metrics_document
from compare_models.report.html import render_compare_report
from compare_models.report.records import Comparison
from compare_models.report.summary import format_chance
from compare_models.report.vocabulary import RANKED_METRICS


def test_the_constant_is_the_truths_mean_scored_on_the_arms_region():
    truth = _band_limited(21)
    positions = _positions(seed=21)
    valid = np.ones(truth.shape, bool)
    valid[:, :40] = False  # the arm lacks the left of the hull: the region shrinks for all
    result = evaluate([_arm("ptychi", _circular_shift(truth, (0.3, 0.2)), valid)], truth, positions, _config())
    chance = result.chance
    assert chance.name == "Constant" and chance.failure is None
    # It adds nothing to the region: the hull where the arm has data, eroded by the arm's shift.
    assert "Constant" not in result.region_info["hull_lost_fraction"]
    erosion = math.ceil(result.region_info["largest_shift_px"]) + result.region_info["margin_px"]
    assert np.array_equal(result.region, erode_mask(scan_hull(positions, truth.shape) & valid, erosion))
    assert chance.score.shift is None
    # Its amplitude is the truth's mean over the region: MAE, MSE and PSNR follow from NumPy.
    amplitude = np.abs(truth)[result.region]
    metrics = chance.metrics["amplitude"]
    assert metrics["mae"] == pytest.approx(np.mean(np.abs(amplitude - amplitude.mean())), rel=1e-9)
    assert metrics["mse"] == pytest.approx(amplitude.var(), rel=1e-9)
    assert metrics["psnr"] == pytest.approx(10 * np.log10(np.ptp(amplitude) ** 2 / amplitude.var()), rel=1e-9)
    # A constant amplitude has no structure: FRC 0 at every ring, the cut-off at ring 1.
    side = min(s.stop - s.start for s in mask_bbox(result.region))
    assert all(v == 0 for v in metrics["frc"]["curve"][1:])
    assert metrics["frc50"] == pytest.approx(2 / side) and not metrics["frc"]["cutoffs"]["0.5"]["reached"]
    # Every number a chance level can have is a number (SSIM of a constant is defined).
    for component in ("amplitude", "phase"):
        for metric in RANKED_METRICS:
            assert math.isfinite(chance.metrics[component][metric]), (component, metric)


def test_the_mean_phase_does_not_wrap():
    """Phases near +pi and -pi average to pi (the angle of the mean phasor), not to 0."""
    truth = np.exp(1j * np.where(np.arange(64).reshape(8, 8) % 2 == 0, np.pi - 0.05, -np.pi + 0.05))
    value = constant_image(truth, np.ones(truth.shape, bool))[0, 0]
    assert abs(abs(np.angle(value)) - np.pi) < 1e-12 and abs(value) == pytest.approx(1.0)


def test_an_arm_that_does_not_beat_the_constant_is_flagged_everywhere():
    """An arm that *is* the constant image ties the chance level on every ranked metric (a tie
    does not beat it); the truth beats it on every one. The CSV, metrics.json, the printed
    summary and report.html say so, and the chance level is never marked best."""
    truth = _band_limited(22).astype(np.complex64)  # as objectGuess and every arm's image are
    positions = _positions(seed=22)
    valid = np.ones(truth.shape, bool)
    config = _config()
    first = evaluate([_arm("ptychi", truth, valid)], truth, positions, config)
    blank = constant_image(truth, first.region)  # what the chance level starts from
    result = evaluate([_arm("ptychi", truth, valid), _arm("baseline", blank, valid)], truth, positions, config)
    assert np.array_equal(result.region, first.region)
    flags = chance_flags(result)
    assert flags["PtyChi"] == []
    assert {(f["component"], f["metric"]) for f in flags["Baseline"]} == {
        (c, m) for c in ("amplitude", "phase") for m in RANKED_METRICS
    }
    rows = {(r[0], r[1]) for r in metric_rows(result)}
    assert {("Constant", m) for m in ("mae", "mse", "psnr", "ssim", "ms_ssim", "frc50")} <= rows
    comparison = Comparison(arms=(), truth=result, half_sets=None)
    document = metrics_document(comparison, config, ground_truth=True)
    assert "chance level" in document["scoring"]["definitions"]["Constant"]
    assert document["models"]["Constant"]["metrics"]["amplitude"]["mae"] == result.chance.metrics["amplitude"]["mae"]
    assert document["models"]["PtyChi"]["not_better_than_chance"] == []
    assert "amplitude ssim" in document["models"]["Baseline"]["not_better_than_chance"]
    lines = format_chance(document)
    assert any(line.strip().startswith("Baseline does not beat the constant image") for line in lines)
    assert any(line.strip().startswith("PtyChi: beats the constant image on every ranked metric") for line in lines)
    from compare_models.report.writers import to_jsonable

    page = render_compare_report(to_jsonable(document), {}, {})
    assert "Constant (chance)" in page and page.count("≤ chance") == 2 * len(RANKED_METRICS)
    assert not any('class="best' in cell for cell in _constant_cells(page))


def _constant_cells(page: str) -> list[str]:
    """The metrics table's cells of the chance column (class "chance")."""
    import re

    return re.findall(r'<td class="chance[^"]*">[^<]*', page)
