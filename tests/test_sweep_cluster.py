"""The sweep's cluster settings: the example configurations become the Parsl executors they
describe, bad settings are refused in one line before any cell starts, and a lost job's end is
told in the scheduler's words. (Against a running Slurm: test_sweep_slurm.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from compare_models.cli import _sweep_config, study_main
from compare_models.errors import ConfigError
from compare_models.pipelines.sweep_cluster import cluster_config, job_end_reason

parsl = pytest.importorskip("parsl")

REPO = Path(__file__).resolve().parents[1]
STUDY = REPO / "configs" / "dose_sweep.yaml"


def _example(name: str, tmp_path: Path, **cluster):
    """The study's YAML plus the example site file (plus ``cluster`` settings), as the CLI reads them."""
    extra = tmp_path / "extra.yaml"
    extra.write_text(f"sweep:\n  cluster: {cluster!r}\n".replace("None", "null"))
    return _sweep_config((STUDY, REPO / "configs" / name, extra), {})


def test_slurm_example_is_a_parsl_slurm_executor(tmp_path):
    from parsl.executors import HighThroughputExecutor
    from parsl.providers import SlurmProvider

    from compare_models.pipelines.sweep_cluster import parsl_config

    config = _example("sweep_slurm.yaml", tmp_path)
    assert config.executor == "slurm" and config.simulate["patch_size"] == 64  # the study's settings kept
    settings = parsl_config(config.cluster_settings(), tmp_path / "runinfo")
    (executor,) = settings.executors
    assert isinstance(executor, HighThroughputExecutor) and isinstance(executor.provider, SlurmProvider)
    provider = executor.provider
    assert (provider.partition, provider.account, provider.walltime) == ("gpu", "my_project", "04:00:00")
    assert (provider.nodes_per_block, provider.init_blocks, provider.max_blocks) == (1, 0, 4)
    assert "#SBATCH --gpus-per-node=4" in provider.scheduler_options and "#SBATCH --exclusive" in provider.scheduler_options
    assert "source /path/to/compare-models/.venv/bin/activate" in provider.worker_init
    assert executor.max_workers_per_node == 4 and executor.available_accelerators == ["0", "1", "2", "3"]
    assert executor.drain_period == 3 * 3600  # drain_after 03:00:00: no cell starts that the walltime would cut
    assert settings.retries == 0 and settings.run_dir == str(tmp_path / "runinfo")


def test_pbs_example_is_a_parsl_pbspro_executor(tmp_path):
    from parsl.launchers import MpiExecLauncher
    from parsl.providers import PBSProProvider

    from compare_models.pipelines.sweep_cluster import parsl_config

    # interface null: this machine has no bond0 to look up
    config = _example("sweep_pbs_polaris.yaml", tmp_path, interface=None, gpus_per_worker=2, workers_per_node=2)
    (executor,) = parsl_config(config.cluster_settings(), tmp_path).executors
    provider = executor.provider
    assert isinstance(provider, PBSProProvider)
    assert (provider.queue, provider.account, provider.walltime) == ("debug", "MyProject", "01:00:00")
    assert provider.select_options == "ngpus=4" and provider.cpus_per_node == 64
    assert "#PBS -l filesystems=home:eagle" in provider.scheduler_options
    assert isinstance(provider.launcher, MpiExecLauncher)
    assert (provider.launcher.bind_cmd, provider.launcher.overrides) == ("--cpu-bind", "--depth=64 --ppn 1")
    assert executor.available_accelerators == ["0,1", "2,3"]  # two GPUs for each of two workers


@pytest.mark.parametrize(
    ("executor", "section", "says"),
    [
        ("slurm", {"walltime": "1:00:00"}, "sweep.cluster.account is missing"),
        ("slurm", {"account": "a", "queue": "debug"}, "Slurm calls it partition"),
        ("pbs", {"account": "a", "partition": "gpu"}, "PBS calls it queue"),
        ("slurm", {"account": "a", "walltime": "4h"}, "walltime must be HH:MM:SS"),
        ("slurm", {"account": "a", "walltime": "01:00:00", "drain_after": "01:00:00"}, "shorter than the walltime"),
        ("slurm", {"account": "a", "nodes": 2, "launcher": "single"}, "use srun"),
        ("pbs", {"account": "a", "launcher": "srun"}, "on PBS use mpiexec"),
        ("slurm", {"account": "a", "scheduler_options": ["--qos=x"]}, "directive lines"),
        ("slurm", {"account": "a", "scheduler": "pbs"}, "set by sweep.executor"),
        ("slurm", {"account": "a", "partitoin": "gpu"}, "unknown setting 'partitoin'"),
    ],
)
def test_bad_cluster_settings_name_the_setting(executor, section, says):
    with pytest.raises(ConfigError, match=says):
        cluster_config(executor, section)


def test_account_none_means_no_account_line():
    cluster = cluster_config("slurm", {"account": "none"})
    assert cluster.charged_account is None


@pytest.mark.parametrize(("executor", "command"), [("slurm", "sbatch"), ("pbs", "qsub")])
def test_no_submit_command_is_one_line_exit_2_before_any_cell(tmp_path, monkeypatch, executor, command):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    out = tmp_path / "sweep"
    site = tmp_path / "site.yaml"
    site.write_text(f"sweep:\n  executor: {executor}\n  step_runner: stand-in\n  cluster:\n    account: none\n")
    result = CliRunner().invoke(study_main, ["sweep", "--config", str(site), "--out", str(out), "--doses", "1e3"])
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert f"no `{command}` on PATH" in line and f"sweep.executor {executor}" in line and "module load" in line
    assert not out.exists()  # refused before anything was written


def test_missing_account_is_one_line_exit_2(tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text("sweep:\n  executor: slurm\n  cluster:\n    partition: gpu\n")
    result = CliRunner().invoke(study_main, ["sweep", "--config", str(site), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert "sweep.cluster.account is missing" in line and "`none`" in line


class _Provider:
    """A provider that knows one job: what Parsl's Slurm or PBS provider answers for it."""

    def __init__(self, status):
        self._status = status

    def status(self, job_ids):
        return [self._status for _ in job_ids]


def test_job_end_is_told_in_the_schedulers_words(tmp_path):
    from parsl.jobs.states import JobState, JobStatus

    stderr = tmp_path / "job.stderr"
    stderr.write_text("worker noise\n=>> PBS: job killed: walltime 3630 exceeded limit 3600\n")
    end = job_end_reason(_Provider(JobStatus(JobState.FAILED, stderr_path=str(stderr))), "42.pbs")
    assert end.state == "FAILED" and end.over_walltime
    assert end.message == "=>> PBS: job killed: walltime 3630 exceeded limit 3600"
    text = end.describe("pbs", "42.pbs", "01:00:00")
    assert "PBS job 42.pbs" in text and "raise sweep.cluster.walltime" in text
    # A job that Parsl lists as completed (it left the queue listing) but that ended under a
    # running cell: the state says nothing, the scheduler's line says what happened.
    stderr.write_text("slurmstepd: error: *** JOB 7 ON n1 CANCELLED AT 2026-01-01T00:00:00 ***\n")
    end = job_end_reason(_Provider(JobStatus(JobState.COMPLETED, stderr_path=str(stderr))), "7")
    assert end.state is None and not end.over_walltime and "CANCELLED AT" in end.message


def test_clusters_page_holds_both_example_configurations():
    """docs/clusters.md shows the example files as they are (same settings), and README links it."""
    import re

    import yaml

    page = (REPO / "docs" / "clusters.md").read_text()
    shown = [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", page, flags=re.DOTALL)]
    for name in ("sweep_slurm.yaml", "sweep_pbs_polaris.yaml"):
        assert yaml.safe_load((REPO / "configs" / name).read_text()) in shown, name
        assert f"configs/{name}" in page
    assert "docs/clusters.md" in (REPO / "README.md").read_text()
