"""Command-line entry points: ``compare-models`` and ``ptycho-study``.

Thin by design: parse flags, build a config object, call a pipeline function, and turn
user-facing errors into one line on stderr with exit code 2. Heavy imports (TensorFlow,
pty-chi) happen inside the commands so that ``--help`` stays fast.
"""

from __future__ import annotations

import functools
import sys

import click

from . import __version__
from .errors import CompareModelsError

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
# compare-models


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="compare-models")
def compare_main():
    """Compare a PINN, a supervised baseline and a pty-chi reconstruction against ground truth."""
    click.echo("compare-models: the comparison is not implemented yet", err=True)
    sys.exit(EXIT_USAGE)


# --------------------------------------------------------------------------------------------
# ptycho-study


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="ptycho-study")
def study_main():
    """The study pipeline: simulate data, train networks, run pty-chi, sweep doses."""


@study_main.command("simulate")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="Output NPZ path.")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="YAML with a 'simulate' section (or flat keys).")
@click.option("--dose", type=float, help="Mean photons per pattern (default 1e4).")
@click.option("--seed", type=int, help="Random seed (default 0).")
@click.option("--patch-size", "patch_size", type=int, help="N, pattern and probe side (default 64).")
@click.option("--object-size", "object_size", type=int, help="Object side in pixels (default 256).")
@click.option("--scan", type=click.Choice(["grid", "jittered", "random"]), help="Scan pattern.")
@click.option("--scan-step", "scan_step", type=float, help="Grid step in pixels (default from --overlap).")
@click.option("--overlap", type=float, help="1 - step / probe diameter (default 0.75).")
@click.option("--jitter", type=float, help="Jitter std in pixels for --scan jittered.")
@click.option("--n-positions", "n_random_positions", type=int, help="Number of points for --scan random.")
@click.option("--probe", "probe_shape", type=click.Choice(["disc", "gaussian"]), help="Probe shape.")
@click.option("--probe-radius", "probe_radius", type=float, help="Disc radius or Gaussian sigma, pixels.")
@click.option("--amplitude-image", "amplitude_image", help="skimage.data image for the amplitude.")
@click.option("--phase-image", "phase_image", help="skimage.data image for the phase.")
@click.option("--pixel-size", "pixel_size_m", type=float, help="Object pixel size in metres (recorded).")
@click.option("--noise/--no-noise", "poisson_noise", default=None, help="Poisson noise (default on).")
@click.option("--split", type=click.Choice(["y"]), default=None, help="Write <out>_train.npz and <out>_test.npz from the top and bottom halves.")
@user_errors
def simulate_command(out, config_path, split, **overrides):
    """Simulate a dataset at a chosen photon dose."""
    from .config import build_config, read_yaml_section
    from .data import load_dataset
    from .pipelines.simulate import describe_dataset, run_simulate
    from .simulate import SimulationConfig

    from_file = _config_section(config_path, "simulate", read_yaml_section) if config_path else {}
    config = build_config(SimulationConfig, from_file, overrides, where=config_path or "options")
    written = run_simulate(config, out, split=split)
    for role, path in written.items():
        click.echo(f"{role}: {path}")
        click.echo(_indent(describe_dataset(load_dataset(path))))


def _config_section(path, section, reader):
    data = reader(path)
    return reader(path, section) if section in data else data


def _indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


if __name__ == "__main__":  # pragma: no cover
    study_main()
