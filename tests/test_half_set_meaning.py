"""Half-set FRC says what it is in every output: an iterative arm's resolution, a network's
reproducibility under independent data, never ranked or drawn on one axis together; and a
network's two halves, which share one frame by construction, are never registered.

The independent truths: a known sub-pixel displacement between two halves (recovered for
pty-chi; not applied to a network's halves, whose pixels reach the FRC unresampled), and the
kind of each arm.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from test_compare_scoring import _arm, _band_limited, _circular_shift, _config, _positions

from compare_models.pipelines.compare import evaluate
from compare_models.pipelines.compare_halfsets import evaluate_half_sets
from compare_models.report.documents import frc_curves, metric_rows, metrics_document
from compare_models.report.html import render_compare_report
from compare_models.report.records import ArmImage, Comparison, HalfImages
from compare_models.report.summary import printed_summary
from compare_models.report.writers import _frc_panels, to_jsonable

DISPLACEMENT = (0.3, -0.2)


def _with_halves(key: str, truth, second) -> ArmImage:
    valid = np.ones(truth.shape, bool)
    arm = _arm(key, truth, valid)
    halves = HalfImages((np.asarray(truth, np.complex64), np.asarray(second, np.complex64)), (valid, valid), None,
                        {"method": "checkerboard", "n_half1": 10, "n_half2": 10, "n_positions": 20},
                        "test halves", {}, {})
    return ArmImage(arm.key, arm.image, arm.valid, arm.timings_s, arm.details, halves)


@pytest.fixture(scope="module")
def scored():
    truth = _band_limited(31)
    positions = _positions(seed=31)
    rng = np.random.default_rng(31)
    second = _circular_shift(truth, DISPLACEMENT) * np.exp(0.05j * rng.standard_normal(truth.shape))
    arms = [_with_halves("pinn", truth, second), _with_halves("ptychi", truth, second)]
    config = _config()
    half_sets = evaluate_half_sets(arms, positions, truth.shape, config)
    against_truth = evaluate(arms, truth, positions, config)
    comparison = Comparison(arms=tuple(arms), truth=against_truth, half_sets=half_sets)
    document = to_jsonable(metrics_document(comparison, config, ground_truth=True))
    return {"arms": arms, "half_sets": half_sets, "comparison": comparison, "document": document, "second": second}


def test_a_networks_halves_are_not_registered(scored):
    """The same displaced pair of halves: pty-chi's shift is estimated (the displacement comes
    back); the network's is not, and its half 2 reaches the FRC as it is (scaled by the gauge,
    never resampled)."""
    half_sets = scored["half_sets"]
    ptychi = half_sets.arms["PtyChi"].registration
    assert ptychi["shift_estimated"] is True
    assert ptychi["shift_yx_px"] == pytest.approx([-DISPLACEMENT[0], -DISPLACEMENT[1]], abs=0.02)
    network = half_sets.arms["PtychoPINN"]
    record = network.registration
    assert record["shift_estimated"] is False and record["shift_yx_px"] == [0.0, 0.0]
    assert "one frame by construction" in record["why"] and record["shift"]["method"] == "none"
    region = half_sets.region
    aligned = network.score.aligned
    scale = record["gauge"]["amplitude_scale"]
    assert np.allclose(np.abs(aligned[region]), scale * np.abs(scored["second"][region]), rtol=1e-5)
    # metrics.json records it.
    entry = scored["document"]["models"]["PtychoPINN"]["half_set_frc"]
    assert entry["registration"]["shift_estimated"] is False
    assert "one frame by construction" in scored["document"]["half_sets"]["registration"]["network"]


def test_metrics_json_says_what_each_half_set_number_is(scored):
    models = scored["document"]["models"]
    assert models["PtyChi"]["half_set_frc"]["meaning"] == "resolution"
    assert models["PtychoPINN"]["half_set_frc"]["meaning"] == "reproducibility"
    assert "not a resolution" in models["PtychoPINN"]["half_set_frc"]["meaning_text"]
    for component in ("amplitude", "phase"):
        for cut in models["PtychoPINN"]["half_set_frc"][component]["cutoffs"].values():
            assert cut["role"].startswith("reproducibility") and "not a resolution" in cut["role"]
        for cut in models["PtyChi"]["half_set_frc"][component]["cutoffs"].values():
            assert cut["role"].startswith("resolution")
    definitions = scored["document"]["half_sets"]["definitions"]
    assert all("reproducibility" in text for text in definitions.values())
    assert scored["document"]["half_sets"]["arms"] == {"PtychoPINN": "reproducibility", "PtyChi": "resolution"}
    assert "network's reproducibility" in scored["document"]["scoring"]["frc"]["half_set"]


def test_the_printed_summary_puts_the_two_kinds_in_separate_tables(scored):
    comparison = scored["comparison"]
    rows = metric_rows(comparison.truth, comparison.half_sets)
    lines = printed_summary(rows, scored["document"], (), ground_truth=True, dose_summary="-", output_dir="out")
    text = "\n".join(lines)
    iterative = text.index("iterative arms: half-set resolution")
    network = text.index("networks: reproducibility of the image under independent data (NOT a resolution")
    ptychi_rows = [m.start() for m in re.finditer(r"^  PtyChi +halfset_", text, re.M)]
    pinn_rows = [m.start() for m in re.finditer(r"^  PtychoPINN +halfset_", text, re.M)]
    assert ptychi_rows and pinn_rows
    # Each arm's rows sit under its own title, and the two groups do not interleave.
    first, second = sorted([(iterative, ptychi_rows), (network, pinn_rows)])
    assert all(first[0] < r < second[0] for r in first[1]) and all(r > second[0] for r in second[1])
    assert "PtychoPINN: half-set reproducibility of the image under independent data, NOT a resolution" in text
    assert "PtyChi: half-set resolution" in text
    assert "PtychoPINN: half-set resolution" not in text


def test_report_html_shows_the_two_kinds_apart(scored):
    page = render_compare_report(scored["document"], {}, {})
    start = page.index("<h3>Half-set FRC</h3>")
    half = page[start:page.index("<h2>", start)]
    iterative = half.index("Iterative arms: half-set resolution")
    network = half.index("Networks: reproducibility of the image under independent data")
    tables = re.findall(r"<table>.*?</table>", half, re.S)
    assert len(tables) == 2
    for table_html in tables:
        at = half.index(table_html)
        under = max((h for h in (iterative, network) if h < at), default=None)  # the heading above it
        names = set(re.findall(r'<td class="text">(PtyChi|PtychoPINN)</td>', table_html))
        assert names == ({"PtyChi"} if under == iterative else {"PtychoPINN"})
    pinn_roles = re.findall(r'<td class="text">PtychoPINN</td>.*?<td class="text">([^<]*)</td></tr>', half, re.S)
    assert pinn_roles and all(role.startswith("reproducibility") for role in pinn_roles)


def test_frc_png_draws_the_two_kinds_in_separate_rows(scored):
    comparison = scored["comparison"]
    panels = _frc_panels(frc_curves(comparison.truth, comparison.half_sets))
    assert [(label, set(models)) for label, _, models in panels] == [
        ("ground_truth", {"PtychoPINN", "PtyChi", "Constant"}),
        ("half_set/iterative", {"PtyChi"}),
        ("half_set/network", {"PtychoPINN"}),
    ]


def test_the_sweep_plots_the_two_kinds_on_separate_axes():
    from compare_models.report.sweep_report import _figure, summarise

    rows = [
        {"dose_nominal": dose, "dose_measured": dose, "seed": 0, "model": model, "metric": "halfset_frc_halfbit",
         "component": component, "value": value}
        for dose in (1e3, 1e4) for component in ("amplitude", "phase")
        for model, value in (("PtychoPINN", 0.28), ("Baseline", 0.27), ("PtyChi", 0.25))
    ]
    figure = _figure(summarise(rows), "halfset_frc_halfbit")
    labels = [{line.get_label() for line in ax.get_lines()} for ax in figure.axes]
    assert {"PtyChi"} in labels and {"PtychoPINN", "Baseline"} in labels and len(labels) == 4
    titles = {ax.get_title() for ax in figure.axes}
    assert any("resolution" in t and "iterative" in t for t in titles)
    assert any("reproducibility" in t and "not a resolution" in t for t in titles)
