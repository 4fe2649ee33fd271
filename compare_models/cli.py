"""Command-line entry points: ``compare-models`` and ``ptycho-study``.

Thin by design: parse flags, build a config object, call a pipeline function, and turn
user-facing errors into one line on stderr with exit code 2. Heavy imports (TensorFlow,
pty-chi) happen inside the commands so that ``--help`` stays fast.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from pathlib import Path
from types import MappingProxyType

import click

from . import __version__
from .errors import CompareModelsError, ConfigError
from .models.training import TrainConfig
from .pipelines.compare_config import CompareConfig
from .pipelines.convert import ConvertConfig
from .study.ptychi_runner import ReconstructConfig
from .study.simulator import SimulationConfig

EXIT_USAGE = 2


def user_errors(func):
    """Print a :class:`CompareModelsError` as one line and exit 2, with no traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except CompareModelsError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_USAGE)

    return wrapper


# --------------------------------------------------------------------------------------------
# Options derived from the configuration classes


class _Option(click.Option):
    """A click option whose legacy spellings (``hidden_names``) are accepted but not listed in
    ``--help``."""

    def __init__(self, *args, hidden_names=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.hidden_names = tuple(hidden_names)

    def get_help_record(self, ctx):
        shown = self.opts
        self.opts = [name for name in shown if name not in self.hidden_names] or shown
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = shown


_SCALARS = MappingProxyType({"int": int, "float": float, "str": str, "bool": bool})


def _value_type(field) -> tuple[type, int]:
    """The click type and ``nargs`` of a configuration field, from its annotation."""
    annotation = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
    parts = [part.strip() for part in annotation.split("|") if part.strip() != "None"]
    if len(parts) == 1 and parts[0] in _SCALARS:
        return _SCALARS[parts[0]], 1
    if len(parts) == 1 and parts[0].startswith("tuple[") and "..." not in parts[0]:
        members = [m.strip() for m in parts[0][len("tuple["):-1].split(",")]
        if all(m in _SCALARS for m in members) and len(set(members)) == 1:
            return _SCALARS[members[0]], len(members)
    raise TypeError(f"no command-line type for {field.name}: {annotation}")


def _field_option(field, *, help_text=None, flag=None, hidden=(), metavar=None, default_text=None, choices=None):
    """One click option for a configuration field: its help and default from the class, its
    value None when not given (so that a --config file or the class default applies)."""
    from .config import describe_default

    meta = field.metadata
    kind, nargs = _value_type(field)
    flag = flag or meta.get("flag") or "--" + field.name.replace("_", "-")
    help_text = help_text if help_text is not None else meta.get("help", "")
    default = default_text or describe_default(field)
    if default != "required":
        help_text = f"{help_text} (default: {default})".strip()
    kwargs = {"default": None, "help": help_text, "hidden_names": tuple(hidden) + tuple(meta.get("aliases", ()))}
    if kind is bool:
        if "/" not in flag and field.default is not True:
            kwargs["is_flag"] = True
        elif "/" not in flag:
            flag = f"{flag}/--no-{flag.lstrip('-')}"
    elif choices or meta.get("choices"):
        kwargs["type"] = click.Choice(list(choices or meta["choices"]))
    else:
        kwargs["type"] = kind
        kwargs["nargs"] = nargs
        kwargs["metavar"] = metavar or meta.get("metavar")
    return _Option([*flag.split(" "), *kwargs["hidden_names"], field.name], **kwargs)


def config_options(
    cls, *, exclude=(), help_texts=None, flags=None, hidden=None, metavars=None, default_texts=None, choices=None
):
    """Decorator: a command-line option for every setting of the configuration class ``cls``
    (:func:`compare_models.config.setting`), with its help and its default as the class states
    them. Settings in ``exclude``, or given an option by hand below this decorator, are left out.
    ``help_texts``, ``flags``, ``hidden`` (legacy spellings), ``metavars``, ``default_texts``
    and ``choices`` override the fields' metadata by field name, for a class whose fields carry
    none."""
    import dataclasses

    def decorate(func):
        by_hand = getattr(func, "__click_params__", [])
        named = {param.name for param in by_hand}
        derived = [
            _field_option(
                field,
                help_text=(help_texts or {}).get(field.name),
                flag=(flags or {}).get(field.name),
                hidden=(hidden or {}).get(field.name, ()),
                metavar=(metavars or {}).get(field.name),
                default_text=(default_texts or {}).get(field.name),
                choices=(choices or {}).get(field.name),
            )
            for field in dataclasses.fields(cls)
            if field.name not in exclude and field.name not in named and field.metadata.get("cli", True)
        ]
        # click lists a command's options in the reverse order of this list: the options given
        # by hand first, then the settings in the order the class declares them.
        func.__click_params__ = [*reversed(derived), *by_hand]
        return func

    return decorate


# --------------------------------------------------------------------------------------------
# What every command prints: the same three switches on every command


def output_options(func):
    """--quiet, --verbose and --progress/--no-progress, the same on every command."""
    func = click.option("--progress/--no-progress", "progress", default=None,
                        help="Progress bars (default: on; off with --quiet).")(func)
    func = click.option("--verbose", is_flag=True,
                        help="Also TensorFlow's and XLA's native log lines (absl, oneDNN and CUDA notices, at any "
                             "level), held back by default; in a sweep, in the step logs.")(func)
    func = click.option("--quiet", is_flag=True, help="Warnings, errors and results only: no progress lines or bars.")(func)
    return func


def _output(quiet: bool, verbose: bool, progress: bool | None) -> tuple[bool, bool, bool]:
    """(quiet, verbose, progress) after checking that they agree."""
    if quiet and verbose:
        raise ConfigError("--quiet and --verbose exclude each other")
    return quiet, verbose, (not quiet) if progress is None else progress


def _console_log(quiet: bool) -> None:
    """The package's log records on stderr: INFO and above, warnings and errors with --quiet
    (a run log, where a command writes one, gets INFO whatever the console shows)."""
    import logging

    logger = logging.getLogger("compare_models")
    logger.setLevel(logging.INFO)
    if not any(getattr(handler, "compare_models_console", False) for handler in logger.handlers):
        console = logging.StreamHandler()
        console.compare_models_console = True
        console.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(console)
    for handler in logger.handlers:
        if getattr(handler, "compare_models_console", False):
            handler.setLevel(logging.WARNING if quiet else logging.INFO)


def _silent(*args, **kwargs) -> None:
    """An echo that prints nothing (--quiet)."""


def _config_option(section: str, example: str):
    return click.option(
        "--config", "config_path", type=click.Path(exists=True, dir_okay=False),
        help=f"YAML file with a '{section}' section (or flat keys): the settings below by their option names "
             f"with underscores ({example}); options given here win, unknown keys are refused.",
    )


# --------------------------------------------------------------------------------------------
# compare-models


def _quiet_tensorflow(verbose: bool, *, needed: bool = True) -> None:
    """Hold TensorFlow's and XLA's native log lines (absl, oneDNN and CUDA notices, at any
    level, at start-up and later) back for the rest of the command, unless ``verbose`` (see
    :mod:`compare_models.pipelines.startup`); import TensorFlow now when the command will need
    it (``needed``), so that its start-up lines come inside the filter."""
    from .pipelines.startup import quiet_native_logs, quiet_tensorflow_startup

    if needed:
        quiet_tensorflow_startup(verbose=verbose)
    else:
        quiet_native_logs(verbose=verbose)


def _install_sigterm_handler():
    """Turn SIGTERM into SystemExit so a killed run still marks its output FAILED."""
    import signal

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


@click.command(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="PtychoPINN's spellings are accepted too: every option with underscores (--pinn_dir, "
           "--baseline_dir, --test_data, --output_dir, --stitch_crop_size, ...) and --tike_recon_path "
           "for --ptychi-recon-path.",
)
@click.version_option(__version__, prog_name="compare-models")
@config_options(CompareConfig, exclude=("progress", "command_line"))
@_config_option("compare", "stitch_crop_size: 16")
@output_options
@user_errors
def compare_main(config_path, quiet, verbose, progress, **options):
    """Compare a PINN, a supervised baseline and a pty-chi reconstruction against ground truth.

    Runs batched inference over every scan position, stitches the patches in the ground-truth
    frame, registers every image to the ground truth and writes metrics (MAE, MSE, PSNR, SSIM,
    MS-SSIM, FRC), curves, images, figures and provenance to --output-dir. Every model is scored
    on one region: the scan's convex hull where every model has data, eroded by the largest
    shift plus --region-margin. At least one of --pinn-dir, --baseline-dir and
    --ptychi-recon-path must be given; --test-data and --output-dir may come from --config.

    Half-set FRC (on by default; --no-half-sets turns it off) gives every arm a resolution
    without ground truth: two images from two disjoint halves of the scan, correlated. Data
    without objectGuess gets the half-set numbers, the images and the figures.

    Exit status: 0 when every arm was scored; 3 when the comparison completed and was written
    but an arm could not be made or scored (the summary, metrics.json and report.html name it
    with the reason and the fix); 2 for bad input, or when no arm has any number (then only
    logs/ and FAILED are written).
    """
    from .config import config_from_file_and_flags
    from .pipelines.compare import run_compare

    quiet, verbose, progress = _output(quiet, verbose, progress)
    _install_sigterm_handler()
    _console_log(quiet)
    flags = {**options, "progress": progress, "command_line": tuple(sys.argv)}
    config = config_from_file_and_flags(CompareConfig, config_path, "compare", flags)
    if config.device == "cuda":  # one device setting for Keras and torch; cuda = gpu
        config = dataclasses.replace(config, device="gpu")
    # The networks need a Keras backend (which stitches their patches too), chosen here once,
    # before Keras is imported; pty-chi alone needs none.
    if config.pinn_dir or config.baseline_dir:
        config = _start_backend(config, verbose=verbose)
    else:
        _quiet_tensorflow(verbose, needed=False)
    comparison = run_compare(config, echo=click.echo)
    if comparison.failures:  # written and complete, but an arm failed: the summary names it
        from .report.vocabulary import EXIT_FAILED_ARMS

        sys.exit(EXIT_FAILED_ARMS)


def _start_backend(config, *, verbose: bool):
    """Choose and start the Keras backend of ``config`` (models.backend.start_backend) and
    return ``config`` with the backend resolved, as provenance records it."""
    import logging

    from .models.backend import start_backend

    choice = start_backend(config.backend, config.device,
                           before_import=lambda c: _quiet_tensorflow(verbose, needed=c.name == "tensorflow"))
    logging.getLogger("compare_models").info("Keras backend: %s (%s), device %s", choice.name, choice.reason,
                                             choice.device)
    return dataclasses.replace(config, backend=choice.name)


# --------------------------------------------------------------------------------------------
# ptycho-study


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="ptycho-study")
def study_main():
    """The study pipeline: simulate data, train networks, run pty-chi, sweep doses."""


@study_main.command("simulate")
@config_options(SimulationConfig)
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="Output NPZ path.")
@_config_option("simulate", "patch_size: 32")
@output_options
@user_errors
def simulate_command(out, config_path, quiet, verbose, progress, **overrides):
    """Simulate a dataset at a chosen photon dose."""
    from .config import config_from_file_and_flags
    from .io.dispatch import load_dataset
    from .pipelines.simulate import describe_dataset, run_simulate

    quiet, verbose, progress = _output(quiet, verbose, progress)
    _console_log(quiet)
    config = config_from_file_and_flags(SimulationConfig, config_path, "simulate", overrides)
    written = run_simulate(config, out)
    for role, path in written.items():
        click.echo(f"{role}: {path}")
        click.echo(_indent(describe_dataset(load_dataset(path))))


def _indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


@study_main.command("reconstruct")
@config_options(ReconstructConfig)
@click.option("--data", "data_path", required=True, type=click.Path(exists=True), help="Dataset to reconstruct (NPZ, ptychodus pair or CXI).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory (gets ptychi_reconstruction.npz).")
@_config_option("reconstruct", "epochs: 30")
@output_options
@user_errors
def reconstruct_command(data_path, out_dir, config_path, quiet, verbose, progress, **overrides):
    """Reconstruct a dataset with pty-chi (object started blank, never from the ground truth).

    With --half-sets, the two interleaved halves of the scan are reconstructed too, each from
    its own positions with the same settings, into OUT/half_sets/ (ptychi_half1.npz,
    ptychi_half2.npz, split.json); compare-models finds them beside the full reconstruction.
    """
    from .config import config_from_file_and_flags
    from .study.ptychi_runner import INSTALL_HINT, ptychi_missing

    quiet, verbose, progress = _output(quiet, verbose, progress)
    if ptychi_missing() is not None:
        click.echo(f"error: pty-chi is not installed; install it with: {INSTALL_HINT}", err=True)
        sys.exit(EXIT_USAGE)
    from .pipelines.reconstruct import describe_result, run_reconstruct

    _console_log(quiet)
    config = config_from_file_and_flags(ReconstructConfig, config_path, "reconstruct", overrides)
    path, result = run_reconstruct(data_path, out_dir, config, progress=progress)
    click.echo(f"reconstruction: {path}")
    click.echo(_indent(describe_result(result)))
    if config.half_sets:
        from .pipelines.reconstruct import HALF_SET_DIR, half_set_paths

        for number, half in enumerate(half_set_paths(Path(out_dir) / HALF_SET_DIR), start=1):
            click.echo(f"half set {number}: {half}")


@study_main.command("convert")
@config_options(ConvertConfig)
@click.argument("in_path", metavar="IN", type=click.Path(exists=True))
@click.argument("out_path", metavar="OUT", type=click.Path())
@_config_option("convert", "pixel_size: 1.0e-8")
@output_options
@user_errors
def convert_command(in_path, out_path, config_path, quiet, verbose, progress, **options):
    """Convert IN to OUT between the NPZ contract and a ptychodus pair.

    IN is read by content: an NPZ file, a ptychodus pair (a directory holding
    diffraction.h5 and product.h5, or either file), or a CXI file. OUT ending in .npz gets
    the NPZ contract; any other OUT is a directory that receives diffraction.h5 (counts =
    amplitude squared), product.h5 (probe, positions in metres, a uniform initial-guess
    object) and, when the data has a ground truth, ground_truth.h5 (the truth in the product
    layout). Converting back gives the same arrays.
    """
    from .config import config_from_file_and_flags
    from .io.dispatch import load_dataset
    from .pipelines.convert import run_convert
    from .pipelines.simulate import describe_dataset

    quiet, verbose, progress = _output(quiet, verbose, progress)
    _console_log(quiet)
    written = run_convert(in_path, out_path, config_from_file_and_flags(ConvertConfig, config_path, "convert", options))
    for role, path in written.items():
        click.echo(f"{role}: {path}")
    click.echo(_indent(describe_dataset(load_dataset(out_path))))


@study_main.command("train")
@config_options(TrainConfig)
@click.option("--train-data", "train_data", type=click.Path(exists=True), help="Training dataset (NPZ, ptychodus pair or CXI); with --train-on test-diffraction, give the test scan with --test-data instead.")
@click.option("--test-data", "test_data", type=click.Path(exists=True), help="The test scan, for --train-on test-diffraction (its diffraction only; its ground truth is never read).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Bundle directory to write.")
@_config_option("train", "batch_size: 16")
@output_options
@user_errors
def train_command(train_data, test_data, out_dir, config_path, quiet, verbose, progress, **overrides):
    """Train the PINN or the baseline and write a model bundle.

    Two protocols: on a separate training set (--train-data; the default), or, for the PINN
    only, self-supervised on the test scan's own diffraction (--train-on test-diffraction
    --test-data TEST), which needs no ground truth. The bundle records which.
    """
    from .config import config_from_file_and_flags
    from .models.backend import start_backend
    from .pipelines.train import describe_training, run_train

    quiet, verbose, progress = _output(quiet, verbose, progress)
    _console_log(quiet)
    config = config_from_file_and_flags(TrainConfig, config_path, "train", overrides)
    if config.train_on == "test-diffraction":
        if test_data is None or train_data is not None:
            raise ConfigError("--train-on test-diffraction trains on the test scan: give it with --test-data (and no --train-data)")
        data = test_data
    else:
        if train_data is None or test_data is not None:
            raise ConfigError("give the training set with --train-data (--test-data is for --train-on test-diffraction)")
        data = train_data
    start_backend("tensorflow", before_import=lambda c: _quiet_tensorflow(verbose))  # training runs on TensorFlow
    path, result = run_train(config, data, out_dir, progress=progress)
    click.echo(f"bundle: {path}")
    click.echo(_indent(describe_training(result)))


def _sweep_default(name: str, text: str | None = None) -> str:
    """SweepConfig's default for ``name``, in words (``text`` when the value is None)."""
    import dataclasses

    from .config import describe_default
    from .pipelines.sweep import SweepConfig

    field = next(f for f in dataclasses.fields(SweepConfig) if f.name == name)
    described = describe_default(field)
    return text if text and described == "none" else described


SWEEP_SECTIONS = ("sweep", "simulate", "train_pinn", "train_baseline", "reconstruct", "compare")


def _sweep_config(config_paths, overrides, *, recorded=None):
    """The sweep's configuration: ``recorded`` settings (a resumed sweep's), then each YAML of
    ``config_paths`` in order (a later file's keys replace an earlier one's, section by
    section), then ``overrides`` from the command line."""
    from .config import build_config, read_yaml_section
    from .pipelines.sweep import SweepConfig

    if isinstance(config_paths, (str, Path)):
        config_paths = (config_paths,)
    sections = dict(recorded or {})
    for config_path in config_paths or ():
        data = read_yaml_section(config_path)
        unknown = set(data) - set(SWEEP_SECTIONS)
        if unknown:
            raise ConfigError(f"{config_path}: unknown section(s) {', '.join(sorted(unknown))}")
        for name, section in data.items():
            if name == "sweep":
                section = dict(section or {})
                if "cluster" in section:  # the cluster mapping merges key by key, like a section
                    section["cluster"] = {**sections.get("cluster", {}), **(section["cluster"] or {})}
                sections.update(section)
            else:
                sections[name] = {**sections.get(name, {}), **(section or {})}
    where = ", ".join(str(p) for p in config_paths or ()) or "options"
    return build_config(SweepConfig, sections, overrides, where=where)


def _split_numbers(text, kind):
    if text is None:
        return None
    try:
        return tuple(kind(float(item)) if kind is int else kind(item) for item in text.replace(",", " ").split())
    except ValueError as exc:
        raise ConfigError(f"cannot read {text!r} as a list of numbers") from exc


@study_main.command("sweep")
@click.option("--config", "config_paths", multiple=True, type=click.Path(exists=True, dir_okay=False), help="YAML with sections sweep, simulate, train_pinn, train_baseline, reconstruct, compare; give it more than once to add a site's file (e.g. configs/sweep_slurm.yaml) to a study's, later keys winning.")
@click.option("--doses", help=f'Nominal doses, photons per pattern, e.g. "1e3 1e4 1e5" (default: {_sweep_default("doses")}).')
@click.option("--seeds", help=f'Seeds, e.g. "0 1" (default: {_sweep_default("seeds")}).')
@click.option("--out", "output_dir", type=click.Path(file_okay=False), help=f"Sweep output directory (default: {_sweep_default('output_dir')}).")
@click.option("--workers", type=int, help=f"Cells run at once by the local process pool (default: {_sweep_default('workers')}).")
@click.option("--executor", type=click.Choice(["process", "parsl", "slurm", "pbs"]), help=f"process (this machine), slurm or pbs (batch jobs, configured by the sweep section's cluster settings: docs/clusters.md), or parsl (any Parsl config file) (default: {_sweep_default('executor')}).")
@click.option("--parsl-config", "parsl_config", type=click.Path(exists=True, dir_okay=False), help="Parsl config file defining `config` (for --executor parsl).")
@click.option("--threads-per-cell", "threads_per_cell", type=int, help="Thread count for each cell's processes (default: " + _sweep_default("threads_per_cell", "the libraries' own") + ").")
@click.option("--resume", is_flag=True, help="Go on with the sweep in --out with the settings it was started with (its sweep_config.json): finished steps are kept, failed and unfinished cells redone. --config files and options given here replace recorded settings (e.g. a longer walltime).")
@click.option("--dry-run", "dry_run", is_flag=True, help="Run stand-in steps that write small made-up outputs in seconds, to check the executor, the scheduler settings and the output directory before a real sweep (use another --out than the real sweep's).")
@output_options
@user_errors
def sweep_command(config_paths, doses, seeds, quiet, verbose, progress, resume, dry_run, **overrides):
    """Run a dose sweep: simulate, train both networks, run pty-chi and compare, per (dose, seed).

    Cells are skipped when their outputs exist with the same resolved configuration, and a
    cell interrupted mid-way is redone from the step that did not finish. Writes
    sweep_metrics.csv, sweep_report.html (self-contained; links to every cell's
    compare/report.html), sweep_report.md and sweep_<metric>.png to the output directory, and
    sweep_status.json: each cell's status and where it ran (executor, batch job, node, seconds
    waited in the queue), and the arms a cell's comparison has no numbers for. Exit status 1 when
    a cell failed, 3 when every cell finished but some without an arm.
    """
    from .pipelines.sweep import read_recorded_config, run_sweep

    quiet, verbose, progress = _output(quiet, verbose, progress)
    _console_log(quiet)
    overrides.update(doses=_split_numbers(doses, float), seeds=_split_numbers(seeds, int), verbose=verbose or None)
    if dry_run:
        overrides["step_runner"] = "stand-in"
    recorded = None
    if resume:
        overrides["output_dir"] = overrides["output_dir"] or "sweep_output"
        recorded = read_recorded_config(overrides["output_dir"])
    config = _sweep_config(config_paths, overrides, recorded=recorded)
    results = run_sweep(config, echo=_silent if quiet else click.echo)
    click.echo(f"report: {Path(config.output_dir) / 'sweep_report.html'} (and sweep_report.md)")
    failed = [r for r in results if r["status"] == "failed"]
    if failed:
        click.echo(f"error: {len(failed)} of {len(results)} cells failed; `ptycho-study sweep --resume --out {config.output_dir}` redoes them", err=True)
        sys.exit(1)
    lacking = [r for r in results if r.get("failed_arms")]
    if lacking:
        from .report.vocabulary import EXIT_FAILED_ARMS

        click.echo(
            f"warning: {len(lacking)} of {len(results)} cells finished without some arms (named above, in "
            "sweep_status.json and sweep_report.html); their other arms were scored", err=True,
        )
        sys.exit(EXIT_FAILED_ARMS)


@study_main.command("demo")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), default=None, help="YAML with sections sweep, simulate, train_pinn, train_baseline, reconstruct, compare (default: the demo's configuration shipped with the package, compare_models/configs/demo.yaml).")
@click.option("--out", "output_dir", type=click.Path(file_okay=False), default="demo_output", show_default=True, help="Output directory.")
@output_options
@user_errors
def demo_command(config_path, output_dir, quiet, verbose, progress):
    """The whole study on the embedded default: one (dose, seed) cell, then its metrics table."""
    import json

    from .config import shipped_config
    from .pipelines.sweep import Cell, run_sweep
    from .report.summary import (
        format_arms,
        format_chance,
        format_failures,
        format_half_set_table,
        format_metrics_table,
        format_scoring_summary,
    )
    from .report.vocabulary import GROUND_TRUTH_TABLE_TITLE, HALF_SET_TABLE_TITLE
    from .report.writers import read_metrics_csv

    quiet, verbose, progress = _output(quiet, verbose, progress)
    _console_log(quiet)
    config = _sweep_config(config_path or shipped_config("demo.yaml"), {"output_dir": output_dir, "verbose": verbose or None})
    results = run_sweep(config, echo=_silent if quiet else click.echo)
    for result in results:
        if result["status"] == "failed":
            click.echo(f"error: the demo failed at step {result['failed_step']}; see {result['log']}", err=True)
            sys.exit(1)
    for dose in config.doses:
        for seed in config.seeds:
            compare_dir = Path(config.output_dir) / "cells" / Cell(float(dose), int(seed)).name / "compare"
            rows = [(r["model"], r["metric"], r["amplitude"], r["phase"], r["value"]) for r in read_metrics_csv(compare_dir / "comparison_metrics.csv")]
            click.echo(f"\nmetrics ({compare_dir / 'comparison_metrics.csv'}):")
            document = json.loads((compare_dir / "metrics.json").read_text())
            for line in format_arms(document):
                click.echo(line)
            click.echo(GROUND_TRUTH_TABLE_TITLE)
            click.echo(format_metrics_table(rows))
            for line in format_chance(document):
                click.echo(line)
            if any(row[1].startswith("halfset_") for row in rows):
                click.echo(HALF_SET_TABLE_TITLE)
                click.echo(format_half_set_table(rows))
            click.echo(format_scoring_summary(document))
            for line in format_failures(document):
                click.echo(line)
            click.echo("\nreport and figures:")
            for name in ("report.html", "comparison.png", "frc.png"):
                click.echo(f"  {compare_dir / name}")
    click.echo(f"  {Path(config.output_dir) / 'sweep_report.html'}")


if __name__ == "__main__":  # pragma: no cover
    study_main()
