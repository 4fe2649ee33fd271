"""Dose sweeps: one cell per (dose, seed), run locally, through Parsl, or as Slurm / PBS jobs.

A cell is a chain of steps (simulate, train the PINN, train the baseline, run pty-chi, compare).
A *step runner* runs one step: the real one (``step_runner: subprocess``) runs each step in its
own Python process (``python -m compare_models.pipelines.sweep_step``): TensorFlow and pty-chi
set process-wide state, and a separate process per step keeps them apart and gives each step
its own log. The stand-in runner (``step_runner: stand-in``, ``sweep --dry-run``) writes small
deterministic outputs instead, to check the plumbing (:mod:`.sweep_stand_in`); any
``module:function`` taking a :class:`StepRequest` and returning an exit status can be named.

A step is done when its marker file ``.done/<step>.json`` holds the hash of the step's
resolved configuration (which includes the hashes of the steps it depends on, and the step
runner unless it is the real one); a step whose marker is missing or stale is redone, with
everything after it. So a sweep is idempotent (running it again does nothing) and resumable (a
killed cell is redone from the step that did not finish; finished cells are kept).

Executors: ``process`` (a local process pool of ``workers``), ``parsl`` (any Parsl
configuration file), ``slurm`` and ``pbs`` (Parsl's ``HighThroughputExecutor`` with its Slurm
or PBS Pro provider, configured by the ``cluster`` section: :mod:`.sweep_cluster`). Every cell
records where it ran (executor, batch job id, node) and how long it waited between submission
and its start, in ``sweep_status.json`` and in ``cells/<cell>/cell_provenance.json``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import hashlib
import importlib
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType

from ..errors import ConfigError
from .sweep_cluster import (
    CLUSTER_EXECUTORS,
    ClusterConfig,
    check_scheduler,
    cluster_config,
    job_end_reason,
    where_this_runs,
)

__all__ = [
    "SweepConfig",
    "Cell",
    "Step",
    "StepRequest",
    "StepRunner",
    "plan_cell",
    "run_cell",
    "run_sweep",
    "run_step_in_subprocess",
    "resolve_step_runner",
    "read_recorded_config",
    "STEP_NAMES",
    "STEP_RUNNERS",
    "EXECUTORS",
    "CELL_RECORD",
]

log = logging.getLogger("compare_models.sweep")

STEP_NAMES = ("simulate", "train_pinn", "train_baseline", "reconstruct", "compare")
EXECUTORS = ("process", "parsl", *CLUSTER_EXECUTORS)
#: Step runners by name; any other name is read as ``module:function``.
STEP_RUNNERS = MappingProxyType({
    "subprocess": "compare_models.pipelines.sweep:run_step_in_subprocess",
    "stand-in": "compare_models.pipelines.sweep_stand_in:run_stand_in_step",
})
REAL_STEP_RUNNER = "subprocess"
#: A cell's own record: where it ran, how long it waited, which steps ran (in the cell directory).
CELL_RECORD = "cell_provenance.json"
SWEEP_CONFIG_FILE = "sweep_config.json"
SWEEP_STATUS_FILE = "sweep_status.json"


@dataclass(frozen=True)
class SweepConfig:
    """Settings of ``ptycho-study sweep`` (YAML sections plus command-line overrides).

    ``simulate``, ``train_pinn``, ``train_baseline``, ``reconstruct`` and ``compare`` hold the
    settings of each step (the keys of that step's configuration object); dose and seed are set
    per cell. ``arms`` chooses which of pinn, baseline and ptychi run. ``executor`` is one of
    :data:`EXECUTORS`; ``cluster`` holds the settings of :class:`~.sweep_cluster.ClusterConfig`
    for ``slurm`` and ``pbs``. ``step_runner`` names what runs a step (:data:`STEP_RUNNERS`).
    """

    doses: tuple[float, ...] = (1e3, 1e4, 1e5, 1e6)
    seeds: tuple[int, ...] = (0,)
    output_dir: str = "sweep_output"
    workers: int = 1
    executor: str = "process"
    parsl_config: str | None = None
    cluster: dict = field(default_factory=dict)
    step_runner: str = REAL_STEP_RUNNER
    threads_per_cell: int | None = None
    arms: tuple[str, ...] = ("pinn", "baseline", "ptychi")
    verbose: bool = False  # keep the libraries' start-up lines in the step logs
    simulate: dict = field(default_factory=dict)
    train_pinn: dict = field(default_factory=dict)
    train_baseline: dict = field(default_factory=dict)
    reconstruct: dict = field(default_factory=dict)
    compare: dict = field(default_factory=dict)

    def __post_init__(self):
        # Lists from YAML, JSON or to_dict() become tuples, so the config stays hashable
        # and compares equal however it was built.
        for name in ("doses", "seeds", "arms"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    def validate(self) -> SweepConfig:
        if not self.doses:
            raise ConfigError("a sweep needs at least one dose")
        if any(not float(d) > 0 for d in self.doses):
            raise ConfigError(f"doses must be > 0 photons per pattern, got {list(self.doses)}")
        if not self.seeds:
            raise ConfigError("a sweep needs at least one seed")
        if self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")
        if self.executor not in EXECUTORS:
            raise ConfigError(f"sweep.executor must be one of {', '.join(EXECUTORS)}; got {self.executor!r}")
        if self.executor == "parsl" and not self.parsl_config:
            raise ConfigError("--executor parsl needs --parsl-config FILE")
        if not isinstance(self.cluster, dict):
            raise ConfigError(f"sweep.cluster must be a mapping of settings, got {self.cluster!r}")
        if self.executor in CLUSTER_EXECUTORS:
            self.cluster_settings()
        unknown = set(self.arms) - {"pinn", "baseline", "ptychi"}
        if unknown or not self.arms:
            raise ConfigError(f"arms must be a non-empty subset of pinn, baseline, ptychi; got {list(self.arms)}")
        resolve_step_runner(self.step_runner)
        return self

    def cluster_settings(self) -> ClusterConfig:
        """The validated ``cluster`` section for a ``slurm`` or ``pbs`` executor."""
        return cluster_config(self.executor, self.cluster)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Cell:
    dose: float
    seed: int

    @property
    def name(self) -> str:
        return f"dose_{self.dose:g}_seed_{self.seed}"


@dataclass(frozen=True)
class Step:
    """One step of a cell: what it runs (``settings``), what it needs and makes."""

    name: str
    settings: dict
    depends_on: tuple[str, ...]
    outputs: tuple[str, ...]  # paths relative to the cell directory


@dataclass(frozen=True)
class StepRequest:
    """What a step runner is asked to do: run ``step`` with ``settings`` for the cell in
    ``cell_dir``, writing its log to ``log_path``."""

    step: str
    settings: dict
    cell_dir: str
    log_path: str
    verbose: bool = False
    threads: int | None = None


#: A step runner: runs one step and returns its exit status (0 when it succeeded).
StepRunner = Callable[[StepRequest], int]


def resolve_step_runner(name: str) -> StepRunner:
    """The step runner ``name`` (a key of :data:`STEP_RUNNERS` or ``module:function``)."""
    target = STEP_RUNNERS.get(name, name)
    module_name, _, function_name = target.partition(":")
    if not module_name or not function_name:
        raise ConfigError(f"sweep.step_runner: expected {', '.join(STEP_RUNNERS)} or module:function, got {name!r}")
    try:
        runner = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"sweep.step_runner {name!r}: cannot import {target} ({exc})") from exc
    if not callable(runner):
        raise ConfigError(f"sweep.step_runner {name!r}: {target} is not callable")
    return runner


def run_step_in_subprocess(request: StepRequest) -> int:
    """The real step runner: ``python -m compare_models.pipelines.sweep_step`` in a process of
    its own, its standard output and error into the step's log; returns its exit status."""
    payload = {"step": request.step, "settings": request.settings, "cell_dir": request.cell_dir, "verbose": request.verbose}
    env = dict(os.environ)
    if not request.verbose:
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if request.threads:
        for name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "MKL_NUM_THREADS"):
            env[name] = str(request.threads)
    with Path(request.log_path).open("w") as handle:
        completed = subprocess.run(
            [sys.executable, "-m", "compare_models.pipelines.sweep_step", json.dumps(payload)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
            check=False,
        )
    return completed.returncode


def _hash(data) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def plan_cell(cell: Cell, config: SweepConfig) -> list[Step]:
    """The steps of ``cell`` with their resolved settings, in order."""
    steps = [
        Step(
            "simulate",
            {**config.simulate, "dose": float(cell.dose), "seed": int(cell.seed)},
            (),
            ("data/data_train.npz", "data/data_test.npz"),
        )
    ]
    trained = []
    for arm in ("pinn", "baseline"):
        if arm in config.arms:
            section = getattr(config, f"train_{arm}")
            steps.append(
                Step(
                    f"train_{arm}",
                    {**section, "model": arm, "seed": int(cell.seed)},
                    ("simulate",),
                    (f"models/{arm}",),
                )
            )
            trained.append(f"train_{arm}")
    if "ptychi" in config.arms:
        # The halves too (unless the section turns them off): every cell then reports
        # half-set resolution for every arm.
        steps.append(
            Step(
                "reconstruct",
                {"half_sets": True, **config.reconstruct, "seed": int(cell.seed)},
                ("simulate",),
                ("ptychi",),
            )
        )
        trained.append("reconstruct")
    steps.append(Step("compare", dict(config.compare), ("simulate", *trained), ("compare",)))
    return steps


def _step_hashes(steps: list[Step], runner: str = REAL_STEP_RUNNER) -> dict[str, str]:
    """Each step's hash: its settings, its upstream hashes and, for any runner but the real
    one, the runner (so stand-in outputs never pass for real ones)."""
    hashes: dict[str, str] = {}
    for step in steps:
        content = {"step": step.name, "settings": step.settings, "upstream": [hashes[d] for d in step.depends_on]}
        if runner != REAL_STEP_RUNNER:
            content["runner"] = runner
        hashes[step.name] = _hash(content)
    return hashes


def _marker(cell_dir: Path, step: str) -> Path:
    return cell_dir / ".done" / f"{step}.json"


def _is_done(cell_dir: Path, step: Step, digest: str) -> bool:
    marker = _marker(cell_dir, step.name)
    if not marker.exists():
        return False
    try:
        recorded = json.loads(marker.read_text()).get("hash")
    except (json.JSONDecodeError, OSError):
        return False
    return recorded == digest and all((cell_dir / p).exists() for p in step.outputs)


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat(timespec="milliseconds")


def _write_json(path: Path, data) -> None:
    """Write ``data`` whole or not at all (a reader on another node never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(data, indent=2, default=str))
    partial.replace(path)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _clear_outputs(cell_dir: Path, step: Step) -> None:
    _marker(cell_dir, step.name).unlink(missing_ok=True)
    for output in step.outputs:
        target = cell_dir / output
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


PLACEMENT_KEYS = ("executor", "job_id", "node", "submitted_at", "started_at", "queue_wait_s")


def run_cell(cell_dict: dict, config_dict: dict, submitted_at: float | None = None) -> dict:
    """Run one cell's steps that are not done yet; never raises for a failed step.

    Takes and returns plain dicts so that any executor (process pool, Parsl) can ship it.
    ``submitted_at`` (seconds since the epoch, on the submitting host) gives the queue wait.
    Writes ``cells/<cell>/cell_provenance.json`` when it starts and after every step.

    Returns
    -------
    dict
        ``cell`` name, ``status`` ("done", "skipped" when nothing had to run, or "failed"),
        ``ran`` (steps run), ``failed_step``, ``log`` (path of the failed step's log),
        ``reason`` (why it failed), ``seconds``, and where it ran: ``executor``, ``job_id``
        (the batch job; None outside one), ``node``, ``submitted_at``, ``started_at`` and
        ``queue_wait_s`` (from submission to the start on the worker).
    """
    start = time.perf_counter()
    config = SweepConfig(**config_dict)
    cell = Cell(**cell_dict)
    cell_dir = Path(config.output_dir) / "cells" / cell.name
    placement = _placement(config, submitted_at)
    record = _cell_record(cell, config, placement)
    record_path = cell_dir / CELL_RECORD
    _write_json(record_path, record)
    steps = plan_cell(cell, config)
    hashes = _step_hashes(steps, config.step_runner)
    ran: list[str] = []

    def finish(status: str, failed_step=None, log_path=None, reason=None) -> dict:
        record.update(status=status, running_step=failed_step, reason=reason, seconds=round(time.perf_counter() - start, 3))
        _write_json(record_path, record)
        return {
            "cell": cell.name,
            "status": status,
            "ran": ran,
            "failed_step": failed_step,
            "log": log_path,
            "reason": reason,
            "over_walltime": False,
            "seconds": time.perf_counter() - start,
            **placement,
        }

    try:
        runner = resolve_step_runner(config.step_runner)
    except ConfigError as exc:
        return finish("failed", "executor", None, str(exc))
    redo_rest = False
    for step in steps:
        if not redo_rest and _is_done(cell_dir, step, hashes[step.name]):
            record["steps"].append({"step": step.name, "hash": hashes[step.name], "ran": False})
            continue
        redo_rest = True  # everything after a redone step is redone too
        _clear_outputs(cell_dir, step)
        log_path = cell_dir / "logs" / f"{step.name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        record["running_step"] = step.name
        _write_json(record_path, record)
        request = StepRequest(step.name, step.settings, str(cell_dir), str(log_path), config.verbose, config.threads_per_cell)
        status, seconds = _execute_step(runner, request)
        if status != 0:
            return finish("failed", step.name, str(log_path), f"step {step.name} exited with status {status}; see {log_path}")
        where = {k: placement[k] for k in ("executor", "job_id", "node")}
        _mark_done(cell_dir, step, {"hash": hashes[step.name], "runner": config.step_runner, "seconds": seconds, **where})
        record["steps"].append({"step": step.name, "hash": hashes[step.name], "ran": True, "seconds": seconds, "log": str(log_path)})
        ran.append(step.name)
    return finish("done" if ran else "skipped")


def _placement(config: SweepConfig, submitted_at: float | None) -> dict:
    """Where and when a cell starts: executor, batch job, node, and the wait since its
    submission (``submitted_at``, seconds since the epoch on the submitting host)."""
    started_at = time.time()
    return {
        **where_this_runs(config.executor),
        "submitted_at": _iso(submitted_at),
        "started_at": _iso(started_at),
        "queue_wait_s": None if submitted_at is None else round(max(started_at - submitted_at, 0.0), 3),
    }


def _cell_record(cell: Cell, config: SweepConfig, placement: dict) -> dict:
    """The cell's ``cell_provenance.json`` as it starts running."""
    from .. import __version__

    return {
        "cell": cell.name,
        "dose": float(cell.dose),
        "seed": int(cell.seed),
        "compare_models_version": __version__,
        "step_runner": config.step_runner,
        **placement,
        "status": "running",
        "running_step": None,
        "reason": None,
        "steps": [],
    }


def _execute_step(runner: StepRunner, request: StepRequest) -> tuple[int, float]:
    """Run one step through ``runner``: its exit status (a runner that raises has failed, with
    its traceback appended to the step's log) and the seconds it took."""
    start = time.perf_counter()
    try:
        status = runner(request)
    except Exception:  # a runner's own failure is the step's failure, with its traceback in the log
        with Path(request.log_path).open("a") as handle:
            handle.write(traceback.format_exc())
        status = 1
    return status, round(time.perf_counter() - start, 3)


def _mark_done(cell_dir: Path, step, record: dict) -> None:
    """Write the step's done marker: ``record`` (hash, runner, seconds, where it ran) and the
    step's settings; a later run skips the step while its hash is unchanged."""
    path = _marker(cell_dir, step.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**record, "settings": step.settings}, sort_keys=True, default=str))


@dataclass
class _Backend:
    """An open executor, and the Parsl provider of its batch jobs (cluster executors only)."""

    pool: concurrent.futures.Executor
    provider: object | None = None


@contextlib.contextmanager
def _open_backend(config: SweepConfig, cluster: ClusterConfig | None, out: Path):
    if config.executor == "process":
        import multiprocessing

        with concurrent.futures.ProcessPoolExecutor(
            max_workers=config.workers, mp_context=multiprocessing.get_context("spawn")
        ) as pool:
            yield _Backend(pool)
        return
    from parsl import DataFlowKernel
    from parsl.concurrent import ParslPoolExecutor

    if config.executor == "parsl":
        with ParslPoolExecutor(_load_parsl_config(config.parsl_config)) as pool:
            yield _Backend(pool)
        return
    from .sweep_cluster import parsl_config

    parsl_settings = parsl_config(cluster, (out / "parsl").resolve())
    dfk = DataFlowKernel(parsl_settings)
    try:
        executor = dfk.executors[parsl_settings.executors[0].label]
        yield _Backend(ParslPoolExecutor(dfk=dfk), executor.provider)
    finally:
        dfk.cleanup()  # cancels the jobs still queued or running


def _load_parsl_config(path):
    """Load ``config`` from a Parsl configuration file (a Python file, as Parsl documents)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such Parsl config file")
    spec = importlib.util.spec_from_file_location("compare_models_parsl_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "config"):
        raise ConfigError(f"{path}: a Parsl config file must define `config` (a parsl.config.Config)")
    return module.config


def _lost_cell(cell: Cell, exc: BaseException, out: Path, backend: _Backend, config: SweepConfig, submitted_at: float) -> dict:
    """The result of a cell whose worker was lost (its job cancelled, over its walltime, a
    node gone): what the cell recorded when it started, and the scheduler's account of the job."""
    record_path = out / "cells" / cell.name / CELL_RECORD
    record = _read_json(record_path) or {}
    # The record is this submission's (not one left by an earlier sweep) and the cell was running.
    started = record.get("status") == "running" and record.get("submitted_at") == _iso(submitted_at)
    placement = {k: record.get(k) if started else None for k in PLACEMENT_KEYS}
    placement["executor"] = config.executor
    failed_step = (record.get("running_step") if started else None) or "executor"
    over_walltime = False
    if started and backend.provider is not None and placement["job_id"]:
        cluster = config.cluster_settings()
        end = job_end_reason(backend.provider, placement["job_id"])
        reason = end.describe(cluster.scheduler, placement["job_id"], cluster.walltime)
        over_walltime = end.over_walltime
    else:
        reason = f"the worker running the cell was lost: {type(exc).__name__}: {exc}"
    log_path = out / "cells" / cell.name / "logs" / f"{failed_step}.log"
    if started:
        record.update(status="failed", reason=reason, over_walltime=over_walltime)
        _write_json(record_path, record)
    return {
        "cell": cell.name,
        "status": "failed",
        "ran": [s["step"] for s in record.get("steps", []) if s.get("ran")] if started else [],
        "failed_step": failed_step,
        "log": str(log_path) if log_path.exists() else None,
        "reason": reason,
        "over_walltime": over_walltime,
        "seconds": 0.0,
        **placement,
    }


def _has_work(cell: Cell, config: SweepConfig) -> bool:
    """Whether any step of ``cell`` is not done with its current settings."""
    cell_dir = Path(config.output_dir) / "cells" / cell.name
    steps = plan_cell(cell, config)
    hashes = _step_hashes(steps, config.step_runner)
    return not all(_is_done(cell_dir, step, hashes[step.name]) for step in steps)


def _nothing_to_do(cell: Cell) -> dict:
    return {
        "cell": cell.name,
        "status": "skipped",
        "ran": [],
        "failed_step": None,
        "log": None,
        "reason": None,
        "over_walltime": False,
        "seconds": 0.0,
        **dict.fromkeys(PLACEMENT_KEYS),
    }


def _refuse_dry_run_over_results(out: Path, config: SweepConfig) -> None:
    if config.step_runner == REAL_STEP_RUNNER:
        return
    for marker in sorted(out.glob("cells/*/.done/*.json")):
        if (_read_json(marker) or {}).get("runner", REAL_STEP_RUNNER) == REAL_STEP_RUNNER:
            raise ConfigError(
                f"--out {out}: holds results of the real steps ({marker.parent.parent.name}); a dry run "
                f"(step_runner {config.step_runner}) would replace them: give it another --out"
            )


def read_recorded_config(output_dir) -> dict:
    """The settings a sweep in ``output_dir`` ran with (its ``sweep_config.json``), for
    ``sweep --resume``."""
    path = Path(output_dir) / SWEEP_CONFIG_FILE
    data = _read_json(path)
    if not isinstance(data, dict):
        raise ConfigError(
            f"--resume: {path} is missing or unreadable; give --out the directory of the sweep to resume, "
            "or start it without --resume"
        )
    return data


def _describe(result: dict) -> str:
    """One line for a finished cell: its status, what ran, where, and how long it waited."""
    if result["executor"] is None:
        return f"cell {result['cell']}: {result['status']} (nothing to do; not submitted)" + _failed_arms_text(result)
    where = [result["executor"]]
    if result.get("job_id"):
        where.append(f"job {result['job_id']}")
    if result.get("node"):
        where.append(f"on {result['node']}")
    if result.get("queue_wait_s") is not None:
        where.append(f"waited {result['queue_wait_s']:.1f} s")
    if result["status"] == "failed":
        return f"cell {result['cell']} FAILED at {result['failed_step']} [{' '.join(where)}]: {result['reason']}"
    line = f"cell {result['cell']}: {result['status']} ({', '.join(result['ran']) or 'nothing to do'}) [{' '.join(where)}]"
    return line + _failed_arms_text(result)


def _failed_arms_text(result: dict) -> str:
    arms = result.get("failed_arms") or {}
    if not arms:
        return ""
    return "; WITHOUT " + "; ".join(f"{name} ({' '.join(reasons)})" for name, reasons in arms.items())


def run_sweep(config: SweepConfig, *, echo=print) -> list[dict]:
    """Run every (dose, seed) cell through the configured executor, then aggregate.

    Settings the scheduler would refuse are refused first, as a :class:`ConfigError`, before
    any cell starts. ``sweep_status.json`` is rewritten as each cell ends.

    Returns the per-cell results, sorted by cell; the caller decides the exit code (non-zero if
    any failed).
    """
    from tqdm import tqdm

    from ..report.sweep_report import cell_failed_arms, write_sweep_report

    config.validate()
    if config.executor != "process" and importlib.util.find_spec("parsl") is None:
        raise ConfigError(f"sweep.executor {config.executor} needs Parsl: pip install -e '.[parsl]'")
    cluster = config.cluster_settings() if config.executor in CLUSTER_EXECUTORS else None
    if cluster is not None:
        check_scheduler(cluster)
    out = Path(config.output_dir)
    _refuse_dry_run_over_results(out, config)
    out.mkdir(parents=True, exist_ok=True)
    previous = _read_json(out / SWEEP_CONFIG_FILE)
    (out / SWEEP_CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2, default=str))
    cells = [Cell(float(d), int(s)) for d in config.doses for s in config.seeds]
    # Workers may start in another directory (a batch job's): they get the absolute path.
    shipped = {**config.to_dict(), "output_dir": str(out.resolve())}
    results: dict[str, dict] = {}

    def record(result: dict) -> None:
        # A finished cell whose comparison lacks an arm says which and why (compare-models
        # scores the others and records the failed ones in metrics.json).
        failed = result["status"] == "failed"
        result["failed_arms"] = {} if failed else cell_failed_arms(out / "cells" / result["cell"])
        results[result["cell"]] = result
        _write_json(out / SWEEP_STATUS_FILE, [results[k] for k in sorted(results)])
        echo(_describe(result))

    # A cell with nothing left to do is not submitted (no job queued to find that out); its
    # cell_provenance.json keeps the record of the run that made its outputs.
    pending = [cell for cell in cells if _has_work(cell, config)]
    for cell in cells:
        if cell not in pending:
            record(_nothing_to_do(cell))
    if pending:
        with _open_backend(config, cluster, out) as backend:
            futures = {}
            for cell in pending:
                submitted_at = time.time()
                futures[backend.pool.submit(run_cell, dataclasses.asdict(cell), shipped, submitted_at)] = (cell, submitted_at)
            for future in tqdm(concurrent.futures.as_completed(futures), total=len(futures), desc="sweep cells"):
                cell, submitted_at = futures[future]
                try:
                    result = future.result()
                except Exception as exc:  # the worker was lost (job ended, process died), not a step failure
                    result = _lost_cell(cell, exc, out, backend, config, submitted_at)
                record(result)
    ordered = [results[k] for k in sorted(results)]
    # Running a finished sweep again does nothing, its report included (delete
    # sweep_report.html to have it written again).
    same_cells = isinstance(previous, dict) and [
        previous.get(k) for k in ("doses", "seeds", "arms")] == [list(getattr(config, k)) for k in ("doses", "seeds", "arms")]
    if not same_cells or any(r["status"] != "skipped" for r in ordered) or not (out / "sweep_report.html").exists():
        write_sweep_report(out, cells)
    return ordered
