"""The command-line entry points: help, version, simulate, and one-line errors."""

import subprocess
import sys

import numpy as np
from click.testing import CliRunner

from compare_models import __version__
from compare_models.cli import compare_main, study_main
from compare_models.io.dispatch import load_dataset


def test_help_and_version():
    runner = CliRunner()
    assert runner.invoke(compare_main, ["--help"]).exit_code == 0
    result = runner.invoke(compare_main, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output
    assert runner.invoke(study_main, ["simulate", "--help"]).exit_code == 0


def test_help_does_not_import_tensorflow():
    code = (
        "import sys; from compare_models import cli; "
        "from click.testing import CliRunner; CliRunner().invoke(cli.compare_main, ['--help']); "
        "CliRunner().invoke(cli.study_main, ['simulate', '--help']); "
        "print('tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_simulate_writes_a_valid_dataset(tmp_path):
    out = tmp_path / "sim.npz"
    result = CliRunner().invoke(
        study_main,
        ["simulate", "--out", str(out), "--dose", "1000", "--seed", "4", "--patch-size", "16",
         "--object-size", "64", "--scan-step", "6"],
    )
    assert result.exit_code == 0, result.output
    dataset = load_dataset(out)
    assert dataset.patch_size == 16 and dataset.metadata["seed"] == 4
    assert dataset.nominal_dose == 1000


def test_simulate_config_file_and_override(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("simulate:\n  patch_size: 16\n  object_size: 64\n  scan_step: 8\n  dose: 50\n")
    out = tmp_path / "sim.npz"
    result = CliRunner().invoke(
        study_main, ["simulate", "--config", str(config), "--out", str(out), "--dose", "70"]
    )
    assert result.exit_code == 0, result.output
    dataset = load_dataset(out)
    assert dataset.nominal_dose == 70 and dataset.patch_size == 16
    assert np.diff(np.unique(dataset.positions_xy[:, 0]))[0] == 8


def test_misspelt_config_key_is_one_line_exit_2(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("simulate:\n  patchsize: 16\n")
    result = CliRunner().invoke(study_main, ["simulate", "--config", str(config), "--out", str(tmp_path / "x.npz")])
    assert result.exit_code == 2
    assert "unknown setting 'patchsize'" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "x.npz").exists()


def test_demo_runs_from_any_directory_with_the_configuration_shipped_in_the_package(tmp_path, monkeypatch):
    """`ptycho-study demo` outside the repository reads compare_models/configs/demo.yaml (the
    sweep itself is stood in for: this checks the configuration it is handed)."""
    import configparser
    from pathlib import Path

    import yaml

    from compare_models.pipelines import sweep

    handed = []

    def sweep_that_records(config, echo):
        handed.append(config)
        return [{"status": "failed", "failed_step": "simulate", "log": "-"}]

    monkeypatch.setattr(sweep, "run_sweep", sweep_that_records)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(study_main, ["demo", "--out", "here"])
    assert result.exit_code == 1 and "the demo failed at step simulate" in result.output
    package = Path(__file__).resolve().parents[1] / "compare_models"
    shipped = yaml.safe_load((package / "configs" / "demo.yaml").read_text())
    (config,) = handed
    assert list(config.doses) == shipped["sweep"]["doses"] and list(config.seeds) == shipped["sweep"]["seeds"]
    assert config.output_dir == "here"
    # setup.cfg's package data holds it, so an installed package has it too.
    setup = configparser.ConfigParser()
    setup.read(package.parent / "setup.cfg")
    pattern = setup["options.package_data"]["compare_models"].strip()
    assert package / "configs" / "demo.yaml" in list(package.glob(pattern))
