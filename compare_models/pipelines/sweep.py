"""Dose sweeps: one cell per (dose, seed), run through any ``concurrent.futures`` executor.

A cell is a chain of steps (simulate, train the PINN, train the baseline, run pty-chi, compare).
Each step runs in its own Python process (``python -m compare_models.pipelines.sweep_step``): TensorFlow
and pty-chi set process-wide state, and a separate process per step keeps them apart and gives
each step its own log. A step is done when its marker file ``.done/<step>.json`` holds the hash
of the step's resolved configuration (which includes the hashes of the steps it depends on);
a step whose marker is missing or stale is redone, with everything after it. So a sweep is
idempotent (running it again does nothing) and resumable (a killed cell is redone from the
step that did not finish; finished cells are kept).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError

__all__ = [
    "SweepConfig",
    "Cell",
    "Step",
    "plan_cell",
    "run_cell",
    "run_sweep",
    "STEP_NAMES",
]

log = logging.getLogger("compare_models.sweep")

STEP_NAMES = ("simulate", "train_pinn", "train_baseline", "reconstruct", "compare")


@dataclass(frozen=True)
class SweepConfig:
    """Settings of ``ptycho-study sweep`` (YAML sections plus command-line overrides).

    ``simulate``, ``train_pinn``, ``train_baseline``, ``reconstruct`` and ``compare`` hold the
    settings of each step (the keys of that step's configuration object); dose and seed are set
    per cell. ``arms`` chooses which of pinn, baseline and ptychi run.
    """

    doses: tuple[float, ...] = (1e3, 1e4, 1e5, 1e6)
    seeds: tuple[int, ...] = (0,)
    output_dir: str = "sweep_output"
    workers: int = 1
    executor: str = "process"  # "process" or "parsl"
    parsl_config: str | None = None
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
        if self.executor not in ("process", "parsl"):
            raise ConfigError(f"executor must be 'process' or 'parsl', got {self.executor!r}")
        if self.executor == "parsl" and not self.parsl_config:
            raise ConfigError("--executor parsl needs --parsl-config FILE")
        unknown = set(self.arms) - {"pinn", "baseline", "ptychi"}
        if unknown or not self.arms:
            raise ConfigError(f"arms must be a non-empty subset of pinn, baseline, ptychi; got {list(self.arms)}")
        return self

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


def _step_hashes(steps: list[Step]) -> dict[str, str]:
    hashes: dict[str, str] = {}
    for step in steps:
        hashes[step.name] = _hash(
            {"step": step.name, "settings": step.settings, "upstream": [hashes[d] for d in step.depends_on]}
        )
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


def run_cell(cell_dict: dict, config_dict: dict) -> dict:
    """Run one cell's steps that are not done yet; never raises for a failed step.

    Takes and returns plain dicts so that any executor (process pool, Parsl) can ship it.

    Returns
    -------
    dict
        ``cell`` name, ``status`` ("done", "skipped" when nothing had to run, or "failed"),
        ``ran`` (steps run), ``failed_step``, ``log`` (path of the failed step's log), ``seconds``.
    """
    config = SweepConfig(**config_dict)
    cell = Cell(**cell_dict)
    cell_dir = Path(config.output_dir) / "cells" / cell.name
    steps = plan_cell(cell, config)
    hashes = _step_hashes(steps)
    start = time.perf_counter()
    ran: list[str] = []
    redo_rest = False
    for step in steps:
        if not redo_rest and _is_done(cell_dir, step, hashes[step.name]):
            continue
        redo_rest = True  # everything after a redone step is redone too
        marker = _marker(cell_dir, step.name)
        marker.unlink(missing_ok=True)
        for output in step.outputs:
            target = cell_dir / output
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        log_path = cell_dir / "logs" / f"{step.name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        request = {"step": step.name, "settings": step.settings, "cell_dir": str(cell_dir), "verbose": config.verbose}
        env = dict(os.environ)
        if not config.verbose:
            env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        if config.threads_per_cell:
            for name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "MKL_NUM_THREADS"):
                env[name] = str(config.threads_per_cell)
        with log_path.open("w") as handle:
            completed = subprocess.run(
                [sys.executable, "-m", "compare_models.pipelines.sweep_step", json.dumps(request)],
                stdout=handle,
                stderr=subprocess.STDOUT,
                env=env,
                check=False,
            )
        if completed.returncode != 0:
            return {
                "cell": cell.name,
                "status": "failed",
                "ran": ran,
                "failed_step": step.name,
                "log": str(log_path),
                "seconds": time.perf_counter() - start,
            }
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"hash": hashes[step.name], "settings": step.settings}, sort_keys=True, default=str))
        ran.append(step.name)
    return {
        "cell": cell.name,
        "status": "done" if ran else "skipped",
        "ran": ran,
        "failed_step": None,
        "log": None,
        "seconds": time.perf_counter() - start,
    }


def _make_executor(config: SweepConfig) -> concurrent.futures.Executor:
    if config.executor == "process":
        import multiprocessing

        return concurrent.futures.ProcessPoolExecutor(
            max_workers=config.workers, mp_context=multiprocessing.get_context("spawn")
        )
    try:
        from parsl.concurrent import ParslPoolExecutor
    except ImportError as exc:
        raise ConfigError("--executor parsl needs Parsl: pip install -e '.[parsl]'") from exc
    return ParslPoolExecutor(_load_parsl_config(config.parsl_config))


def _load_parsl_config(path):
    """Load ``config`` from a Parsl configuration file (a Python file, as Parsl documents)."""
    import importlib.util

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such Parsl config file")
    spec = importlib.util.spec_from_file_location("compare_models_parsl_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "config"):
        raise ConfigError(f"{path}: a Parsl config file must define `config` (a parsl.config.Config)")
    return module.config


def run_sweep(config: SweepConfig, *, echo=print) -> list[dict]:
    """Run every (dose, seed) cell through the configured executor, then aggregate.

    Returns the per-cell results; the caller decides the exit code (non-zero if any failed).
    """
    from tqdm import tqdm

    from ..report.sweep_report import write_sweep_report

    config.validate()
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep_config.json").write_text(json.dumps(config.to_dict(), indent=2, default=str))
    cells = [Cell(float(d), int(s)) for d in config.doses for s in config.seeds]
    config_dict = config.to_dict()
    results = []
    with _make_executor(config) as pool:
        futures = {pool.submit(run_cell, dataclasses.asdict(c), config_dict): c for c in cells}
        for future in tqdm(concurrent.futures.as_completed(futures), total=len(futures), desc="sweep cells"):
            cell = futures[future]
            try:
                result = future.result()
            except Exception as exc:  # an executor failure (worker died), not a step failure
                result = {"cell": cell.name, "status": "failed", "ran": [], "failed_step": "executor", "log": repr(exc), "seconds": 0.0}
            results.append(result)
            if result["status"] == "failed":
                echo(f"cell {result['cell']} FAILED at {result['failed_step']}: see {result['log']}")
            else:
                echo(f"cell {result['cell']}: {result['status']} ({', '.join(result['ran']) or 'nothing to do'})")
    results.sort(key=lambda r: r["cell"])
    (out / "sweep_status.json").write_text(json.dumps(results, indent=2))
    write_sweep_report(out, cells)
    return results
