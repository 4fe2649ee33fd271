"""Flags are tested by the configuration they produce: each command runs with its pipeline
function replaced by a stand-in that stops it with what it was handed (``handoff`` in
conftest.py). The parsing, the configuration files, the validation run for real; what the
pipelines do with a configuration is tested beside each pipeline, and once end to end."""

from __future__ import annotations

import dataclasses

import pytest

from compare_models.cli import compare_main, study_main
from compare_models.pipelines import compare, reconstruct, simulate, train

REQUIRED = ["--test_data", "t.npz", "--output_dir", "out"]


def _compare_config(handoff, *argv):
    config = handoff(compare_main, [*REQUIRED, *argv], compare, "run_compare").config
    return dataclasses.replace(config, command_line=())


def test_compare_spellings_and_the_existing_tools_aliases_give_one_configuration(handoff):
    underscores = _compare_config(handoff, "--pinn_dir", "p", "--baseline_dir", "b", "--tike_recon_path", "r",
                                  "--stitch_crop_size", "8", "--register_ptychi_only", "--ms_ssim_sigma", "1",
                                  "--n_test_subsample", "9", "--pinn_predict_batch_size", "4")
    dashes = handoff(compare_main, ["--test-data", "t.npz", "--output-dir", "out", "--pinn-dir", "p", "--baseline-dir",
                                    "b", "--ptychi-recon-path", "r", "--stitch-crop-size", "8", "--register-ptychi-only",
                                    "--ms-ssim-sigma", "1", "--n-test-subsample", "9", "--pinn-predict-batch-size", "4"],
                     compare, "run_compare").config
    assert underscores == dataclasses.replace(dashes, command_line=())
    assert underscores.ptychi_recon_path == "r" and underscores.stitch_crop_size == 8
    assert underscores.ms_ssim_sigma == 1.0 and underscores.pinn_predict_batch_size == 4
    for alias in ("--tike-recon-path", "--ptychi_recon_path"):
        assert _compare_config(handoff, "--pinn_dir", "p", alias, "r").ptychi_recon_path == "r"


@pytest.mark.parametrize(("flags", "expected"), [([], None), (["--half-sets"], True), (["--no-half-sets"], False)])
def test_compare_half_set_switch(handoff, flags, expected):
    config = _compare_config(handoff, "--pinn_dir", "p", *flags)
    assert config.half_sets is expected and config.half_sets_enabled is (expected is not False)


def test_compare_defaults_and_quiet(handoff):
    config = _compare_config(handoff, "--pinn_dir", "p")
    assert config == compare.CompareConfig(test_data="t.npz", output_dir="out", pinn_dir="p")
    assert _compare_config(handoff, "--pinn_dir", "p", "--quiet").progress is False


def test_compare_pty_chi_half_set_paths_and_the_command_line(handoff):
    called = handoff(compare_main, [*REQUIRED, "--ptychi_recon_path", "r", "--ptychi-half-set-paths", "h1", "h2"],
                     compare, "run_compare")
    assert called.config.ptychi_half_set_paths == ("h1", "h2")
    assert called.config.command_line  # recorded for provenance


def test_simulate_flags_override_the_file(handoff, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("simulate:\n  patch_size: 16\n  object_size: 64\n  scan_step: 8\n  dose: 50\n")
    called = handoff(study_main, ["simulate", "--config", path, "--out", tmp_path / "s.npz", "--dose", "70",
                                  "--scan", "random", "--n-positions", "12", "--no-noise"], simulate, "run_simulate")
    config = called.config
    assert (config.patch_size, config.object_size, config.scan_step, config.dose) == (16, 64, 8, 70)
    assert config.scan == "random" and config.n_random_positions == 12 and config.poisson_noise is False


def test_train_flags_and_file(handoff, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 3\n  width: 4\n  depth: 2\n  batch_size: 32\n")
    data = tmp_path / "train.npz"
    data.write_bytes(b"")  # --train-data must exist; it is not read before the pipeline
    called = handoff(study_main, ["train", "--model", "pinn", "--gridsize", "2", "--train-data", data, "--out",
                                  tmp_path / "b", "--config", path, "--epochs", "1", "--seed", "2", "--patience", "4",
                                  "--region-pad", "6", "--no-progress"], train, "run_train")
    config = called.config
    assert (config.model, config.gridsize, config.epochs, config.seed) == ("pinn", 2, 1, 2)
    assert (config.width, config.depth, config.batch_size) == (4, 2, 32)  # from the file
    assert config.early_stopping_patience == 4 and config.region_pad == 6
    assert called.args_given[1:] == (str(data), str(tmp_path / "b")) and called.kwargs_given == {"progress": False}


def test_reconstruct_flags(handoff, tmp_path):
    from compare_models.study.ptychi_runner import ptychi_missing

    if ptychi_missing():
        pytest.skip("pty-chi extra not installed (the command stops before its pipeline)")
    data = tmp_path / "d.npz"
    data.write_bytes(b"")
    called = handoff(study_main, ["reconstruct", "--data", data, "--out", tmp_path / "o", "--algorithm", "epie",
                                  "--epochs", "3", "--half-sets", "--half-set-split", "alternate", "--refine-probe",
                                  "--threads", "2"], reconstruct, "run_reconstruct")
    assert called.args_given[:2] == (str(data), str(tmp_path / "o"))
    config = called.args_given[2]
    assert (config.algorithm, config.epochs, config.half_sets, config.half_set_split) == ("epie", 3, True, "alternate")
    assert config.refine_probe is True and config.n_threads == 2 and config.batch_size is None
