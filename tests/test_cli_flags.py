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
    assert config.backend in ("tensorflow", "jax", "torch")  # resolved at start-up, recorded
    expected = compare.CompareConfig(test_data="t.npz", output_dir="out", pinn_dir="p")
    assert config == dataclasses.replace(expected, backend=config.backend)
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


# --------------------------------------------------------------------------------------------
# One place for every setting: defaults and help from the configuration classes


def _settings_classes():
    from compare_models.models.training import TrainConfig
    from compare_models.pipelines.convert import ConvertConfig
    from compare_models.study.ptychi_runner import ReconstructConfig
    from compare_models.study.simulator import SimulationConfig

    return {"simulate": SimulationConfig, "reconstruct": ReconstructConfig, "convert": ConvertConfig, "train": TrainConfig,
            "compare-models": compare.CompareConfig}


def _help(command, *names):
    from click.testing import CliRunner

    result = CliRunner().invoke(command, [*names, "--help"], terminal_width=400)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())  # one line: help wraps


@pytest.mark.parametrize("name", ["simulate", "reconstruct", "convert", "train", "compare-models"])
def test_every_setting_has_help_and_its_default_from_the_class(name):
    """Each field says what it is (config.setting) and states no default in its words; the
    help shows the default the class holds."""
    from compare_models.config import describe_default

    cls = _settings_classes()[name]
    text = _help(compare_main) if name == "compare-models" else _help(study_main, name)
    for field in dataclasses.fields(cls):
        meta = field.metadata
        assert meta.get("help"), f"{cls.__name__}.{field.name} has no help text"
        assert "default" not in meta["help"].lower(), f"{cls.__name__}.{field.name}: the default belongs to the field"
        if not meta.get("cli", True):
            continue
        flag = (meta.get("flag") or "--" + field.name.replace("_", "-")).split("/")[0]
        assert f"{flag} " in text, (name, flag)
        if describe_default(field) != "required":
            assert f"(default: {' '.join(describe_default(field).split())})" in text, (name, field.name)


@pytest.mark.parametrize(("name", "module", "function", "config_at", "argv"), [
    ("simulate", simulate, "run_simulate", 0, ["--out", "s.npz"]),
    ("train", train, "run_train", 0, ["--train-data", "{data}", "--out", "b"]),
    ("convert", None, "run_convert", 2, ["{data}", "o.npz"]),
])
def test_without_flags_a_command_gets_its_class_defaults(handoff, tmp_path, monkeypatch, name, module, function,
                                                         config_at, argv):
    from compare_models.pipelines import convert

    data = tmp_path / "d.npz"
    data.write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    called = handoff(study_main, [name, *(a.format(data=data) for a in argv)], module or convert, function)
    assert called.args_given[config_at] == _settings_classes()[name]()


def test_compare_config_file_takes_the_flags_names_and_refuses_unknown_keys(handoff, tmp_path):
    from click.testing import CliRunner

    path = tmp_path / "compare.yaml"
    path.write_text("compare:\n  test_data: t.npz\n  output_dir: out\n  pinn_dir: p\n  stitch_crop_size: 12\n"
                    "  max_shift: 4.5\n  region-margin: 3\n  half_sets: false\n  ptychi_half_set_paths: [h1, h2]\n"
                    "  ptychi_recon_path: r\n")
    config = handoff(compare_main, ["--config", path, "--stitch-crop-size", "10"], compare, "run_compare").config
    assert (config.test_data, config.output_dir, config.pinn_dir) == ("t.npz", "out", "p")
    assert config.stitch_crop_size == 10  # the option wins
    assert (config.max_shift_px, config.region_margin_px, config.half_sets) == (4.5, 3, False)
    assert tuple(config.ptychi_half_set_paths) == ("h1", "h2")
    flat = tmp_path / "flat.yaml"
    flat.write_text("pinn_dir: p\nms_ssim_sigma: 1.0\n")
    config = handoff(compare_main, ["--config", flat, *REQUIRED], compare, "run_compare").config
    assert config.pinn_dir == "p" and config.ms_ssim_sigma == 1.0
    bad = tmp_path / "bad.yaml"
    bad.write_text("compare:\n  pinn_dir: p\n  stitch_crop: 12\n")
    result = CliRunner().invoke(compare_main, ["--config", str(bad), *REQUIRED])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        result.output.strip().splitlines()[0]] and "unknown setting 'stitch_crop'" in result.output
    assert str(bad) in result.output
    missing = CliRunner().invoke(compare_main, ["--pinn-dir", "p", "--output-dir", "o"])
    assert missing.exit_code == 2 and "missing setting(s) test_data" in missing.output


def test_one_spelling_in_help_and_the_underscore_names_hidden():
    from click.testing import CliRunner

    result = CliRunner().invoke(compare_main, ["--help"], terminal_width=400)
    options = [line.split()[0].rstrip(",") for line in result.output.splitlines() if line.startswith("  -")]
    assert "--pinn-dir" in options and "--test-data" in options and "--ptychi-recon-path" in options
    assert not [name for name in options if "_" in name], options
    assert "--tike_recon_path" in result.output  # documented once, in the epilog
    for command in ("simulate", "reconstruct", "convert", "train", "sweep", "demo"):
        text = CliRunner().invoke(study_main, [command, "--help"], terminal_width=400).output
        names = [line.split()[0].rstrip(",") for line in text.splitlines() if line.startswith("  -")]
        assert not [name for name in names if "_" in name], (command, names)


@pytest.mark.parametrize("command", ["compare-models", "simulate", "reconstruct", "convert", "train", "sweep", "demo"])
def test_quiet_verbose_and_progress_are_the_same_on_every_command(command, tmp_path):
    from click.testing import CliRunner

    argv = [] if command == "compare-models" else [command]
    cli = compare_main if command == "compare-models" else study_main
    text = _help(cli, *argv)
    assert "--quiet Warnings, errors and results only" in text
    assert "--verbose Also TensorFlow's and XLA's native log lines" in text
    assert "--progress / --no-progress Progress bars (default: on; off with --quiet)." in text
    data = tmp_path / "d.npz"
    data.write_bytes(b"")
    required = {"simulate": ["--out", "s.npz"], "reconstruct": ["--data", data, "--out", "o"],
                "convert": [data, "o.npz"], "train": ["--train-data", data, "--out", "b"]}.get(command, [])
    result = CliRunner().invoke(cli, [*argv, *map(str, required), "--quiet", "--verbose"])
    assert result.exit_code == 2 and "--quiet and --verbose exclude each other" in result.output


def test_quiet_turns_progress_off_and_progress_turns_it_back_on(handoff, tmp_path):
    data = tmp_path / "d.npz"
    data.write_bytes(b"")
    argv = ["train", "--train-data", data, "--out", tmp_path / "b"]
    assert handoff(study_main, argv, train, "run_train").kwargs_given == {"progress": True}
    assert handoff(study_main, [*argv, "--quiet"], train, "run_train").kwargs_given == {"progress": False}
    assert handoff(study_main, [*argv, "--quiet", "--progress"], train, "run_train").kwargs_given == {"progress": True}
    assert _compare_config(handoff, "--pinn-dir", "p", "--no-progress").progress is False
