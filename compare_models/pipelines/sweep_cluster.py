"""Sweep cells on a batch scheduler: Slurm or PBS Pro, through Parsl.

The ``sweep.cluster`` section of a sweep's YAML becomes a :class:`ClusterConfig`; from it
:func:`parsl_config` builds a Parsl ``HighThroughputExecutor`` whose blocks are jobs of Parsl's
``SlurmProvider`` or ``PBSProProvider``. Parsl submits, watches and cancels the jobs; this module
never reads the scheduler's queue listings itself. Before any cell starts,
:func:`check_scheduler` asks the scheduler whether it would take a job with these settings
(the submit command on PATH, the partition or queue known, ``sbatch --test-only``) and turns a
refusal into one line naming the setting and the fix.

A cell records where it ran with :func:`where_this_runs` (executor, the scheduler's job id from
the job's environment, the node's host name). When a job ends under a running cell (cancelled,
over its walltime, a node lost), :func:`job_end_reason` gives the scheduler's own words: the
job's state as Parsl's provider reports it and the last lines the scheduler wrote to the job's
standard error (``*** JOB 12 ON node CANCELLED AT ... DUE TO TIME LIMIT ***`` on Slurm).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from ..errors import ConfigError

__all__ = [
    "ClusterConfig",
    "CLUSTER_EXECUTORS",
    "JobEnd",
    "check_scheduler",
    "job_end_reason",
    "parsl_config",
    "where_this_runs",
]

#: The sweep executors that submit cells as batch jobs, and the scheduler each drives.
CLUSTER_EXECUTORS = ("slurm", "pbs")

_SUBMIT_COMMAND = MappingProxyType({"slurm": "sbatch", "pbs": "qsub"})
_WALLTIME = re.compile(r"^\d+:[0-5]\d:[0-5]\d$")
_LAUNCHERS = ("single", "srun", "mpiexec")
#: Seconds a scheduler command of the preflight may take before the sweep gives up on it.
_COMMAND_TIMEOUT_S = 60
#: Where a job's environment names its job id, by scheduler.
_JOB_ID_VARIABLES = ("SLURM_JOB_ID", "PBS_JOBID")


@dataclass(frozen=True)
class ClusterConfig:
    """Where and how a sweep's cells run as batch jobs (``sweep.cluster`` in the sweep's YAML).

    Parsl groups workers into *blocks*; each block is one batch job of ``nodes`` nodes with
    ``workers_per_node`` workers on each, and a worker runs one cell at a time (its steps one
    after another, each in its own process). Up to ``max_jobs`` jobs are queued or running at
    once; Parsl submits them as cells wait and cancels them when the sweep ends.

    Attributes
    ----------
    scheduler : {"slurm", "pbs"}
        Set from ``sweep.executor``, not in the section.
    partition : str, optional
        Slurm partition (``#SBATCH --partition``); the cluster's default when not given.
    queue : str, optional
        PBS queue (``qsub -q``); the server's default when not given.
    account : str
        Allocation the jobs are charged to (``--account`` / ``-A``). Required: write ``none``
        on a site that charges no account.
    walltime : str
        Time limit of each job, ``HH:MM:SS``. A job that reaches it is ended by the scheduler,
        and the cell running in it is reported failed "over its walltime".
    drain_after : str, optional
        ``HH:MM:SS`` after a job starts, its workers take no new cell (Parsl's drain period):
        set it to the walltime minus the longest cell, so that no cell starts that the
        walltime would cut short. Off when not given.
    nodes : int
        Nodes per job.
    max_jobs : int
        Jobs queued or running at once.
    workers_per_node : int
        Cells that run at once on a node.
    gpus_per_worker : int
        GPUs each worker (cell) is given (``CUDA_VISIBLE_DEVICES`` per worker); 0 on CPU
        nodes. A job asks for ``workers_per_node * gpus_per_worker`` GPUs per node.
    cpus_per_node : int, optional
        Slurm: CPUs requested per node; PBS: ``ncpus`` of the select statement (1 if not given).
    exclusive : bool
        Slurm: each job has its nodes to itself (``#SBATCH --exclusive``).
    setup : tuple of str
        Shell lines run at the start of every job, before the workers start: load modules,
        activate the environment where compare-models is installed.
    scheduler_options : tuple of str
        Extra directive lines for the job script, e.g. ``#SBATCH --qos=normal`` or
        ``#PBS -l filesystems=home:eagle``.
    launcher : {"single", "srun", "mpiexec"}, optional
        How a job starts one worker pool per node: ``single`` (one node), ``srun`` (Slurm) or
        ``mpiexec`` (PBS). Default: ``single`` for one node, else ``srun`` / ``mpiexec``.
    launcher_options : str
        Extra arguments of ``srun`` / ``mpiexec``, e.g. ``--depth=64 --ppn 1`` on Polaris.
    mpiexec_bind_flag : str
        The CPU-binding flag of the site's ``mpiexec`` (``--cpu-bind`` for MPICH and Cray PALS,
        ``--bind-to`` for Open MPI).
    interface : str, optional
        Network interface by which the compute nodes reach the host running the sweep (e.g.
        ``bond0`` on Polaris); every address of the host is tried when not given.
    heartbeat_period_s, heartbeat_threshold_s : int
        Seconds between worker heartbeats, and without one before a worker (with the cell it
        runs) counts as lost: how soon a cell in a cancelled job is reported.
    """

    scheduler: str = "slurm"
    partition: str | None = None
    queue: str | None = None
    account: str | None = None
    walltime: str = "01:00:00"
    drain_after: str | None = None
    nodes: int = 1
    max_jobs: int = 1
    workers_per_node: int = 1
    gpus_per_worker: int = 0
    cpus_per_node: int | None = None
    exclusive: bool = True
    setup: tuple[str, ...] = ()
    scheduler_options: tuple[str, ...] = ()
    launcher: str | None = None
    launcher_options: str = ""
    mpiexec_bind_flag: str = "--cpu-bind"
    interface: str | None = None
    heartbeat_period_s: int = 30
    heartbeat_threshold_s: int = 120

    def __post_init__(self):
        for name in ("setup", "scheduler_options"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))

    @property
    def charged_account(self) -> str | None:
        """The account to name in job scripts (None for ``account: none``)."""
        return None if self.account is None or self.account.lower() == "none" else self.account

    @property
    def gpus_per_node(self) -> int:
        return self.workers_per_node * self.gpus_per_worker

    @property
    def launcher_name(self) -> str:
        if self.launcher:
            return self.launcher
        if self.nodes == 1:
            return "single"
        return "srun" if self.scheduler == "slurm" else "mpiexec"

    def validate(self) -> ClusterConfig:
        key = "sweep.cluster"
        if self.scheduler not in CLUSTER_EXECUTORS:
            raise ConfigError(f"sweep.executor: a cluster runs 'slurm' or 'pbs', got {self.scheduler!r}")
        if self.scheduler == "slurm" and self.queue is not None:
            raise ConfigError(f"{key}.queue is a PBS setting; Slurm calls it partition: write partition: {self.queue}")
        if self.scheduler == "pbs" and self.partition is not None:
            raise ConfigError(f"{key}.partition is a Slurm setting; PBS calls it queue: write queue: {self.partition}")
        if not self.account:
            raise ConfigError(
                f"{key}.account is missing: set it to the allocation your jobs are charged to "
                "(Slurm: `sacctmgr show associations user=$USER format=account` lists yours), "
                "or to `none` on a site that charges no account"
            )
        if not _WALLTIME.match(str(self.walltime)):
            raise ConfigError(f"{key}.walltime must be HH:MM:SS (e.g. '04:00:00'), got {self.walltime!r}")
        if self.drain_after is not None:
            if not _WALLTIME.match(str(self.drain_after)):
                raise ConfigError(f"{key}.drain_after must be HH:MM:SS (e.g. '03:00:00'), got {self.drain_after!r}")
            if _seconds(self.drain_after) >= _seconds(self.walltime):
                raise ConfigError(
                    f"{key}.drain_after ({self.drain_after}) must be shorter than the walltime ({self.walltime}): "
                    "the walltime minus the longest cell"
                )
        for name in ("nodes", "max_jobs", "workers_per_node", "heartbeat_period_s", "heartbeat_threshold_s"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{key}.{name} must be >= 1, got {getattr(self, name)}")
        if self.gpus_per_worker < 0:
            raise ConfigError(f"{key}.gpus_per_worker must be >= 0, got {self.gpus_per_worker}")
        if self.cpus_per_node is not None and self.cpus_per_node < 1:
            raise ConfigError(f"{key}.cpus_per_node must be >= 1, got {self.cpus_per_node}")
        if self.heartbeat_threshold_s <= self.heartbeat_period_s:
            raise ConfigError(
                f"{key}.heartbeat_threshold_s ({self.heartbeat_threshold_s}) must exceed "
                f"heartbeat_period_s ({self.heartbeat_period_s})"
            )
        if self.launcher is not None and self.launcher not in _LAUNCHERS:
            raise ConfigError(f"{key}.launcher must be one of {', '.join(_LAUNCHERS)}, got {self.launcher!r}")
        if self.launcher_name == "srun" and self.scheduler != "slurm":
            raise ConfigError(f"{key}.launcher: srun starts workers in Slurm jobs only; on PBS use mpiexec")
        if self.launcher_name == "single" and self.nodes > 1:
            raise ConfigError(
                f"{key}.launcher 'single' starts workers on the first node only, but nodes is {self.nodes}: "
                f"use {'srun' if self.scheduler == 'slurm' else 'mpiexec'}, or nodes: 1"
            )
        bad = [line for line in self.scheduler_options if not line.lstrip().startswith("#")]
        if bad:
            raise ConfigError(f"{key}.scheduler_options are directive lines such as '#SBATCH --qos=normal', got {bad[0]!r}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _seconds(hh_mm_ss: str) -> int:
    hours, minutes, seconds = (int(part) for part in hh_mm_ss.split(":"))
    return 3600 * hours + 60 * minutes + seconds


def cluster_config(executor: str, section: dict) -> ClusterConfig:
    """The validated :class:`ClusterConfig` of ``sweep.cluster`` for ``executor`` (slurm or pbs)."""
    from ..config import build_config

    if "scheduler" in (section or {}):
        raise ConfigError("sweep.cluster.scheduler: the scheduler is set by sweep.executor (slurm or pbs)")
    return build_config(ClusterConfig, {"scheduler": executor}, section, where="sweep.cluster")


def parsl_config(cluster: ClusterConfig, run_dir):
    """A ``parsl.config.Config``: one ``HighThroughputExecutor`` whose blocks are jobs of
    ``SlurmProvider`` or ``PBSProProvider``, with Parsl's logs and job scripts under ``run_dir``.

    Blocks start on demand (none at start, up to ``max_jobs``); a cell is not retried by Parsl
    (a failed cell is reported, and ``sweep --resume`` redoes it).
    """
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor
    from parsl.launchers import MpiExecLauncher, SingleNodeLauncher, SrunLauncher

    launcher = {
        "single": lambda: SingleNodeLauncher(),
        "srun": lambda: SrunLauncher(overrides=cluster.launcher_options),
        "mpiexec": lambda: MpiExecLauncher(bind_cmd=cluster.mpiexec_bind_flag, overrides=cluster.launcher_options),
    }[cluster.launcher_name]()
    common = dict(
        nodes_per_block=cluster.nodes,
        init_blocks=0,
        min_blocks=0,
        max_blocks=cluster.max_jobs,
        walltime=cluster.walltime,
        worker_init="\n".join(cluster.setup),
        scheduler_options="\n".join(cluster.scheduler_options),
        launcher=launcher,
    )
    if cluster.scheduler == "slurm":
        from parsl.providers import SlurmProvider

        provider = SlurmProvider(
            partition=cluster.partition,
            account=cluster.charged_account,
            exclusive=cluster.exclusive,
            gpus_per_node=cluster.gpus_per_node or None,
            cores_per_node=cluster.cpus_per_node,
            **common,
        )
    else:
        from parsl.providers import PBSProProvider

        provider = PBSProProvider(
            account=cluster.charged_account,
            queue=cluster.queue,
            select_options=f"ngpus={cluster.gpus_per_node}" if cluster.gpus_per_node else "",
            cpus_per_node=cluster.cpus_per_node or 1,
            **common,
        )
    accelerators = [
        ",".join(str(w * cluster.gpus_per_worker + g) for g in range(cluster.gpus_per_worker))
        for w in range(cluster.workers_per_node)
    ] if cluster.gpus_per_worker else []
    address = None
    if cluster.interface:
        from parsl.addresses import address_by_interface

        address = address_by_interface(cluster.interface)
    executor = HighThroughputExecutor(
        label=f"sweep_{cluster.scheduler}",
        max_workers_per_node=cluster.workers_per_node,
        available_accelerators=accelerators,
        heartbeat_period=cluster.heartbeat_period_s,
        heartbeat_threshold=cluster.heartbeat_threshold_s,
        drain_period=_seconds(cluster.drain_after) if cluster.drain_after else None,
        address=address,
        provider=provider,
        # The interchange runs beside the sweep, in this Python (not whatever is on PATH).
        interchange_launch_cmd=[sys.executable, "-m", "parsl.executors.high_throughput.interchange"],
    )
    return Config(executors=[executor], run_dir=str(run_dir), retries=0)


def _run(command: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ConfigError(
            f"the scheduler did not answer `{' '.join(command)}` within {_COMMAND_TIMEOUT_S} s; "
            "try again when it is reachable"
        ) from exc


def _first_line(completed: subprocess.CompletedProcess) -> str:
    text = (completed.stderr or completed.stdout or "").strip()
    return text.splitlines()[-1].strip() if text else f"exit status {completed.returncode}"


def check_scheduler(cluster: ClusterConfig) -> None:
    """Refuse, before any cell starts, settings the scheduler would not run.

    Checks that the submit command (``sbatch`` / ``qsub``) is on PATH, that the partition
    (``scontrol show partition NAME``) or queue (``qstat -Q NAME``) exists, and, on Slurm, that
    ``sbatch --test-only`` accepts a job with the partition, account, walltime, nodes and GPUs
    of ``cluster``. Only the commands' exit status decides; their message is passed on.

    Raises
    ------
    ConfigError
        One line naming the setting and the fix.
    """
    cluster.validate()
    submit = _SUBMIT_COMMAND[cluster.scheduler]
    name = "Slurm" if cluster.scheduler == "slurm" else "PBS"
    if shutil.which(submit) is None:
        raise ConfigError(
            f"sweep.executor {cluster.scheduler}: no `{submit}` on PATH; run the sweep where {name}'s commands are "
            f"(a login node, or after `module load {cluster.scheduler}`), or set sweep.executor: process"
        )
    if cluster.scheduler == "slurm":
        if cluster.partition and shutil.which("scontrol"):
            completed = _run(["scontrol", "show", "partition", cluster.partition])
            if completed.returncode != 0:
                raise ConfigError(
                    f"sweep.cluster.partition: Slurm has no partition {cluster.partition!r} ({_first_line(completed)}); "
                    "set it to one that `sinfo -s` lists, or leave it out for the default partition"
                )
        command = ["sbatch", "--test-only", "--job-name=compare-models-check", f"--nodes={cluster.nodes}",
                   f"--time={cluster.walltime}"]
        if cluster.partition:
            command.append(f"--partition={cluster.partition}")
        if cluster.charged_account:
            command.append(f"--account={cluster.charged_account}")
        if cluster.gpus_per_node:
            command.append(f"--gpus-per-node={cluster.gpus_per_node}")
        completed = _run([*command, "--wrap", "true"])
        if completed.returncode != 0:
            raise ConfigError(
                f"sweep.cluster: Slurm would not run a job with account {cluster.account!r}, partition "
                f"{cluster.partition or '(default)'}, walltime {cluster.walltime}, nodes {cluster.nodes}"
                f"{f', {cluster.gpus_per_node} GPUs per node' if cluster.gpus_per_node else ''} "
                f"(sbatch --test-only: {_first_line(completed)}); change the setting it names"
            )
    elif cluster.queue and shutil.which("qstat"):
        completed = _run(["qstat", "-Q", cluster.queue])
        if completed.returncode != 0:
            raise ConfigError(
                f"sweep.cluster.queue: PBS has no queue {cluster.queue!r} ({_first_line(completed)}); "
                "set it to one that `qstat -Q` lists, or leave it out for the server's default queue"
            )


def where_this_runs(executor: str) -> dict:
    """Where the calling process runs: ``executor``, the batch job id (from the job's
    environment; None outside a job) and the host name."""
    job_id = next((os.environ[v] for v in _JOB_ID_VARIABLES if os.environ.get(v)), None)
    return {"executor": executor, "job_id": job_id, "node": os.environ.get("SLURMD_NODENAME") or socket.gethostname()}


@dataclass(frozen=True)
class JobEnd:
    """How a batch job ended, in the scheduler's words."""

    state: str | None  # Parsl's JobState name, when it is one that explains an end
    message: str  # the last lines the job's standard error holds ('' when none)
    over_walltime: bool

    def describe(self, scheduler: str, job_id: str, walltime: str) -> str:
        name = "Slurm" if scheduler == "slurm" else "PBS"
        parts = [f"its {name} job {job_id} ended while the cell ran"]
        if self.state:
            parts.append(f"(scheduler state {self.state})")
        text = " ".join(parts)
        if self.message:
            text += f"; the scheduler wrote: {self.message}"
        if self.over_walltime:
            text += f"; the job ran over its walltime ({walltime}): raise sweep.cluster.walltime"
        return text


#: The scheduler's own phrases for a job ended at its time limit (Slurm, PBS Pro).
_WALLTIME_PHRASES = ("DUE TO TIME LIMIT", "walltime")
#: Parsl job states that say why a job ended (COMPLETED says nothing when a task was lost:
#: Parsl reports a job that has left the queue listing as completed).
_TELLING_STATES = ("CANCELLED", "TIMEOUT", "FAILED", "HELD")


def job_end_reason(provider, job_id: str) -> JobEnd:
    """Ask Parsl's ``provider`` how job ``job_id`` ended and read the job's standard error.

    The state comes from the provider's ``status`` (Slurm: ``sacct`` where accounting is on,
    else ``squeue``; PBS: ``qstat``); the message is the last non-empty lines of the standard
    error file that Parsl gave the job, where Slurm and PBS write why they ended it.
    """
    try:
        status = provider.status([job_id])[0]
    except Exception:  # noqa: BLE001 -- a job the provider does not know, or a scheduler gone quiet
        return JobEnd(None, "", False)
    state = status.state.name if status.state.name in _TELLING_STATES else None
    lines = []
    if status.stderr_path and Path(status.stderr_path).is_file():
        lines = [line.strip() for line in Path(status.stderr_path).read_text(errors="replace").splitlines() if line.strip()]
    scheduler_lines = [line for line in lines if "***" in line or "PBS:" in line] or lines[-1:]
    message = " / ".join(scheduler_lines[-2:])
    over = state == "TIMEOUT" or any(p.lower() in message.lower() for p in _WALLTIME_PHRASES)
    return JobEnd(state, message, over)
