"""Each arm is named by what it is: the printed summary, report.html and metrics.json say which
network (this project's PINN, PtychoPINN's architecture trained here, a PtychoPINN model and its
backend, the baseline) or reconstruction each name stands for, and how a network was trained;
the CSV keeps the names existing scripts read (PtychoPINN, Baseline, PtyChi).

Independent truths: the labels each loader states for the files it read (the fixtures'
PtychoPINN TensorFlow and PyTorch models, this project's bundles), the writer and engine a
reconstruction file records, and a whole comparison's outputs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_compare_cli import _arms, _invoke
from test_compare_scoring import _arm, _band_limited, _config, _positions

from compare_models.io.reconstruction import WRITER_PTYCHOPINN, WRITER_THIS_PROJECT, Reconstruction
from compare_models.models.bundle import Bundle
from compare_models.models.interface import UNRECORDED_PROTOCOL, describe_basics
from compare_models.pipelines.compare import evaluate
from compare_models.report.documents import metrics_document
from compare_models.report.html import render_compare_report
from compare_models.report.records import Comparison
from compare_models.report.summary import arm_notes, format_arms
from compare_models.report.writers import read_metrics_csv, to_jsonable


def _bundle(kind, architecture=None, protocol=None):
    metadata = {}
    if architecture:
        metadata["architecture"] = {"name": architecture}
    if protocol:
        metadata["training_protocol"] = protocol
    return Bundle(model=None, kind=kind, patch_size=32, gridsize=1, intensity_scale=1.0,
                  probe=np.ones((32, 32), np.complex64), metadata=metadata)


@pytest.mark.parametrize(("kind", "architecture", "label"), [
    ("pinn", None, "compare-models PINN"),
    ("pinn", "ptychopinn", "PtychoPINN architecture (TensorFlow, trained by compare-models)"),
    ("baseline", None, "compare-models baseline (PtychoNN-style)"),
])
def test_a_bundle_says_whose_network_it_is(kind, architecture, label):
    bundle = _bundle(kind, architecture)
    described = describe_basics(bundle)
    assert bundle.label == described["label"] == label
    assert described["architecture"] == (architecture or "compare-models")
    # A bundle that does not record its protocol says so rather than guessing.
    assert described["training_protocol"] == dict(UNRECORDED_PROTOCOL)


def test_a_bundle_reports_its_recorded_protocol():
    protocol = {"train_on": "test-diffraction", "description": "self-supervised", "ground_truth_used": False}
    assert describe_basics(_bundle("pinn", protocol=protocol))["training_protocol"] == protocol


def test_ptychopinn_tensorflow_models_are_named_with_their_backend(upstream):
    from compare_models.models.ptychopinn.baseline import load_baseline
    from compare_models.models.ptychopinn.pinn import load_pinn

    pinn = load_pinn(upstream / "pinn_gs2")
    assert pinn.label == "PtychoPINN PINN (TensorFlow backend, gridsize 2)"
    assert pinn.describe()["architecture"] == "ptychopinn"
    assert pinn.describe()["training_protocol"]["train_on"] == "unknown"
    baseline = load_baseline(upstream / "baseline_gs1")
    assert baseline.label == "PtychoPINN supervised baseline (TensorFlow backend)"
    assert baseline.describe()["architecture"] == "ptychopinn-baseline"


@pytest.mark.parametrize(("name", "generator", "gridsize"), [("torch_cnn_gs1", "cnn", 1), ("torch_ffno_gs2", "ffno", 2)])
def test_ptychopinn_pytorch_models_are_named_with_backend_and_generator(upstream, name, generator, gridsize):
    pytest.importorskip("torch")
    from compare_models.models.ptychopinn_torch.model import load_torch_pinn

    model = load_torch_pinn(upstream / name, device="cpu")
    assert model.label == f"PtychoPINN PINN (PyTorch backend, {generator} generator, gridsize {gridsize})"
    assert model.describe()["architecture"] == f"ptychopinn-torch-{generator}"


@pytest.mark.parametrize(("algorithm", "writer", "label"), [
    ("lsqml", WRITER_THIS_PROJECT, "pty-chi LSQML (iterative; ptycho-study reconstruct)"),
    ("pty-chi", WRITER_PTYCHOPINN, "pty-chi (engine not recorded) (iterative; PtychoPINN's ptychi_reconstruct_tike.py)"),
    ("unknown", "unknown", "pty-chi (engine not recorded) (iterative; writer unknown)"),
])
def test_a_reconstruction_is_named_by_its_engine_and_writer(algorithm, writer, label):
    recon = Reconstruction(object=np.ones((4, 4), np.complex64), algorithm=algorithm, writer=writer)
    assert recon.label == label


def test_metrics_json_summary_and_report_say_what_each_arm_is():
    truth = _band_limited(31).astype(np.complex64)
    valid = np.ones(truth.shape, bool)
    protocol = {"train_on": "test-diffraction", "description": "self-supervised on the test scan",
                "ground_truth_used": False}
    pinn = _arm("pinn", truth, valid)
    details = {"label": "compare-models PINN", "architecture": "compare-models", "training_protocol": protocol,
               "model_format": "compare_models bundle", "bundle": "b"}
    pinn = type(pinn)("pinn", pinn.image, pinn.valid, pinn.timings_s, details)
    ptychi = _arm("ptychi", truth, valid)
    ptychi = type(ptychi)("ptychi", ptychi.image, ptychi.valid, ptychi.timings_s,
                          {"label": "pty-chi LSQML (iterative; ptycho-study reconstruct)", "architecture": "iterative",
                           "initialisation": "blank (ones)", "path": "p"})
    # What metrics.json copies: the arm's identity, not its paths.
    assert arm_notes(pinn.details) == {k: details[k] for k in ("label", "architecture", "training_protocol", "model_format")}
    result = evaluate([pinn, ptychi], truth, _positions(seed=31), _config())
    document = to_jsonable(metrics_document(Comparison(arms=(), truth=result, half_sets=None), _config(),
                                            ground_truth=True, seen_in_training={"PtychoPINN": 1.0}))
    models = document["models"]
    assert models["PtychoPINN"]["label"] == "compare-models PINN"
    assert models["PtychoPINN"]["training_protocol"]["train_on"] == "test-diffraction"
    assert models["PtychoPINN"]["seen_in_training"] == 1.0
    assert models["PtyChi"]["label"].startswith("pty-chi LSQML") and "seen_in_training" not in models["PtyChi"]
    assert models["Constant"]["label"] == "constant image (chance level)"
    lines = format_arms(document)
    assert lines[0].startswith("arms")
    pinn_line = next(line for line in lines if line.strip().startswith("PtychoPINN ="))
    assert "compare-models PINN" in pinn_line and "self-supervised on the test scan" in pinn_line
    # Self-supervised on the test scan: it saw the scan's diffraction, never its ground truth.
    assert "seen in training: 100.0 % (its diffraction only, never its ground truth)" in pinn_line
    assert any(line.strip().startswith("Constant = constant image (chance level)") for line in lines)
    page = render_compare_report(document, {}, {})
    assert "<h2>Arms</h2>" in page
    assert page.count('<span class="arm-label">compare-models PINN</span>') == 1  # under its metrics column
    assert "self-supervised on the test scan" in page


def test_the_sweep_report_says_what_each_name_stands_for(tmp_path):
    from compare_models.pipelines.sweep import Cell
    from compare_models.report.sweep_report import arm_labels

    cells = [Cell(1e3, 0), Cell(1e3, 1), Cell(1e5, 0)]
    labels = {cells[0]: "compare-models PINN", cells[1]: "PtychoPINN architecture (TensorFlow, trained by compare-models)"}
    for cell, label in labels.items():
        compare = tmp_path / "cells" / cell.name / "compare"
        compare.mkdir(parents=True)
        (compare / "metrics.json").write_text(json.dumps({"models": {"PtychoPINN": {"label": label}, "Baseline": {}}}))
    # Cells that disagree are both named; a cell without outputs and an entry without a label add nothing.
    assert arm_labels(tmp_path, cells) == {"PtychoPINN": " / ".join(labels.values())}


def test_a_comparison_names_its_arms_everywhere_but_the_csv(tiny_study, tmp_path):
    """A whole run: the bundles' labels reach metrics.json, the printed summary and report.html;
    the CSV keeps PtychoPINN's model names."""
    out = tmp_path / "out"
    result = _invoke([*_arms(tiny_study, ptychi=False), "--test_data", tiny_study["test"], "--output_dir", out,
                      "--stitch-crop-size", "8", "--skip-registration", "--no-half-sets", "--quiet"])
    assert result.exit_code == 0, result.output
    models = json.loads((out / "metrics.json").read_text())["models"]
    assert models["PtychoPINN"]["label"] == "compare-models PINN"
    assert models["Baseline"]["label"] == "compare-models baseline (PtychoNN-style)"
    for name in ("PtychoPINN", "Baseline"):
        assert models[name]["architecture"] == "compare-models"
        assert models[name]["training_protocol"]["train_on"] == "training-set"
        assert models[name]["seen_in_training"] == 0.0
    assert models["Baseline"]["training_protocol"]["ground_truth_used"] is True
    assert "PtychoPINN = compare-models PINN" in result.output
    assert "Baseline = compare-models baseline (PtychoNN-style)" in result.output
    page = (out / "report.html").read_text()
    assert "compare-models baseline (PtychoNN-style)" in page and "<h2>Arms</h2>" in page
    assert {row["model"] for row in read_metrics_csv(out / "comparison_metrics.csv")} == {"PtychoPINN", "Baseline", "Constant"}
