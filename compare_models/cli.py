"""Command-line entry points: ``compare-models`` and ``ptycho-study``.

Thin by design: parse flags, build a config object, call a pipeline function, and turn
user-facing errors into one line on stderr with exit code 2. Heavy imports (TensorFlow,
pty-chi) happen inside the commands so that ``--help`` stays fast.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from . import __version__
from .errors import CompareModelsError, ConfigError

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


def _quiet_tensorflow(verbose: bool, *, needed: bool = True) -> None:
    """Import TensorFlow with its C++ start-up lines (absl, oneDNN, CUDA probing) held back,
    unless ``verbose`` (see :mod:`compare_models.pipelines.startup`); when the command will not
    need TensorFlow (``needed`` False), only set its log level."""
    import os

    from .pipelines.startup import quiet_tensorflow_startup

    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if needed:
        quiet_tensorflow_startup(verbose=verbose)


def _install_sigterm_handler():
    """Turn SIGTERM into SystemExit so a killed run still marks its output FAILED."""
    import signal

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="compare-models")
@click.option("--pinn_dir", "--pinn-dir", "pinn_dir", type=click.Path(), help="PINN arm: a compare-models bundle (bundle.json), a PtychoPINN wts.h5.zip or its directory, or a baseline_model.h5 or a directory with one below it; recognised by content.")
@click.option("--baseline_dir", "--baseline-dir", "baseline_dir", type=click.Path(), help="Baseline arm: accepts every model --pinn_dir accepts (a PINN bundle may be the baseline).")
@click.option("--test_data", "--test-data", "test_data", required=True, type=click.Path(), help="Test dataset (NPZ contract, or HDF5 where supported).")
@click.option("--output_dir", "--output-dir", "output_dir", required=True, type=click.Path(file_okay=False), help="Where the comparison is written.")
@click.option("--ptychi_recon_path", "--ptychi-recon-path", "--tike_recon_path", "--tike-recon-path", "ptychi_recon_path", type=click.Path(), help="Iterative reconstruction NPZ: this project's ptychi_reconstruction.npz (placed by its recorded frame), PtychoPINN's (placed by its script's rule) or another writer's (registered).")
@click.option("--stitch-crop-size", "--stitch_crop_size", "stitch_crop_size", type=int, default=None, help="Keep the central M x M of each patch when stitching, 0 < M <= N (default 20, or N if smaller).")
@click.option("--skip-registration", "--skip_registration", "skip_registration", is_flag=True, help="Estimate no shifts (the gauge is still fitted).")
@click.option("--register-ptychi-only", "--register_ptychi_only", "register_ptychi_only", is_flag=True, help="Estimate a shift for pty-chi only; the networks are stitched in the ground-truth frame already.")
@click.option("--phase-align-method", "--phase_align_method", "phase_align_method", metavar="[ramp|offset]", default="ramp", show_default=True, help="Phase gauge, fitted to the amplitude-weighted phase difference: global offset and linear ramp (ramp) or offset only; the amplitude scale is always fitted to the amplitudes alone. The existing tool's plane, mean and none are retired (docs/how-the-numbers-are-made.md).")
@click.option("--registration-on", "registration_on", type=click.Choice(["complex", "amplitude"]), default="complex", show_default=True, help="Field used for phase correlation.")
@click.option("--max-shift", "max_shift_px", type=float, default=16.0, show_default=True, help="Largest registration shift accepted, pixels; larger is an error.")
@click.option("--region-margin", "--region-erode", "region_margin_px", type=int, default=2, show_default=True, help="Pixels eroded from the scored region beyond the largest registration shift.")
@click.option("--ms-ssim-sigma", "--ms_ssim_sigma", "ms_ssim_sigma", type=float, default=None, help="Gaussian blur (pixels) of amplitude and phase before MS-SSIM; default none (Wang et al. 2003).")
@click.option("--frc-sigma", "--frc_sigma", "frc_sigma", type=float, default=None, help="Gaussian smoothing of the FRC curve, in rings.")
@click.option("--pixel-size", "--pixel_size", "pixel_size_m", type=float, default=None, help="Object pixel size in metres (FRC resolution in metres); defaults to the data's.")
@click.option("--n-test-subsample", "--n_test_subsample", "n_test_subsample", type=int, default=None, help="Use a random subset of this many positions.")
@click.option("--test-subsample-seed", "--test_subsample_seed", "test_subsample_seed", type=int, default=0, show_default=True)
@click.option("--pinn-predict-batch-size", "--pinn_predict_batch_size", "pinn_predict_batch_size", type=int, default=32, show_default=True)
@click.option("--baseline-predict-batch-size", "--baseline_predict_batch_size", "baseline_predict_batch_size", type=int, default=32, show_default=True)
@click.option("--pinn-chunk-size", "--pinn_chunk_size", "pinn_chunk_size", type=int, default=1024, show_default=True, help="Positions per inference chunk (memory bound).")
@click.option("--baseline-chunk-size", "--baseline_chunk_size", "baseline_chunk_size", type=int, default=1024, show_default=True)
@click.option("--stitch-chunk-size", "stitch_chunk_size", type=int, default=512, show_default=True, help="Patches per compiled stitching call.")
@click.option("--predict-xla", "predict_xla", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True, help="XLA-compile each network together with its stitching (auto: fall back to a plain tf.function, with a warning, when XLA cannot compile a network).")
@click.option("--stitch-interpolation", "stitch_interpolation", type=click.Choice(["fourier", "bilinear"]), default="fourier", show_default=True, help="How each patch is moved by its sub-pixel residual before its central crop is added: fourier (the simulator's and pty-chi's model: stitching the recorded ground-truth patches gives the object back) or bilinear (as PtychoPINN's stitching does, to reproduce its images).")
@click.option("--half-sets/--no-half-sets", "half_sets", default=None, help="Half-set FRC for every arm: two images from two disjoint halves of the scan (networks: from the same model; pty-chi: from --ptychi-half-sets), registered to each other and correlated; needs no ground truth. Default: computed for every arm whose halves cover enough of the scan, the others named with the reason and the fix; --half-sets requires it for every arm (an error otherwise); --no-half-sets turns it off.")
@click.option("--half-set-split", "half_set_split", type=click.Choice(["checkerboard", "alternate"]), default="checkerboard", show_default=True, help="How the scan is split into halves: a checkerboard of the scan grid, or alternating positions along the scan path.")
@click.option("--ptychi-half-sets", "ptychi_half_sets", type=click.Path(), default=None, help="Directory with the pty-chi half-set reconstructions ptychi_half1.npz and ptychi_half2.npz (or a reconstruct output directory with them in half_sets/). Default: half_sets/ beside --ptychi_recon_path when ptycho-study reconstruct --half-sets wrote it.")
@click.option("--ptychi-half-set-paths", "ptychi_half_set_paths", type=click.Path(), nargs=2, default=None, help="The two pty-chi half-set reconstruction files, half 1 then half 2.")
@click.option("--min-half-set-coverage", "min_half_set_coverage", type=float, default=0.9, show_default=True, help="Fraction of the scan's hull that both halves of an arm must cover for its half-set FRC; below it that arm gets none (with --half-sets, or without ground truth, the run stops) and the message names the fix (a larger --stitch-crop-size or a denser scan).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output directory.")
@click.option("--quiet/--verbose", "quiet", default=None, help="--quiet: warnings and errors only, no progress bars. --verbose: also the libraries' start-up lines (TensorFlow's absl, oneDNN and CUDA notices), held back by default.")
@user_errors
def compare_main(quiet, **options):
    """Compare a PINN, a supervised baseline and a pty-chi reconstruction against ground truth.

    Runs batched inference over every scan position, stitches the patches in the ground-truth
    frame, registers every image to the ground truth and writes metrics (MAE, MSE, PSNR, SSIM,
    MS-SSIM, FRC), curves, images, figures and provenance to --output_dir. Every model is scored
    on one region: the scan's convex hull where every model has data, eroded by the largest
    shift plus --region-margin. At least one of --pinn_dir, --baseline_dir and
    --ptychi_recon_path must be given.

    Half-set FRC (on by default; --no-half-sets turns it off) gives every arm a resolution
    without ground truth: two images from two disjoint halves of the scan, correlated. Data
    without objectGuess gets the half-set numbers, the images and the figures.
    """
    import logging

    from .pipelines.compare import CompareConfig, run_compare

    _install_sigterm_handler()
    console = logging.StreamHandler()
    console.setLevel(logging.WARNING if quiet else logging.INFO)
    console.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("compare_models")
    logger.setLevel(logging.INFO)  # the run log gets INFO whatever the console shows
    logger.addHandler(console)
    if not options.get("ptychi_half_set_paths"):
        options["ptychi_half_set_paths"] = None
    config = CompareConfig(**options, progress=not quiet, command_line=tuple(sys.argv)).validate()
    # The networks need TensorFlow (and so does stitching their patches); pty-chi alone does not.
    _quiet_tensorflow(quiet is False, needed=bool(config.pinn_dir or config.baseline_dir))
    run_compare(config, echo=click.echo)


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
@click.option("--object-family", "object_family", type=click.Choice(["images", "lines", "grf", "particles", "mixed"]), help="The (test) object: two shipped images (images, the default: --amplitude-image, --phase-image) or a generated object of a family.")
@click.option("--feature-size", "feature_size", type=float, help="Generated object's feature size in pixels (default N/8).")
@click.option("--pixel-size", "pixel_size_m", type=float, help="Object pixel size in metres (recorded).")
@click.option("--noise/--no-noise", "poisson_noise", default=None, help="Poisson noise (default on).")
@click.option("--split", type=click.Choice(["objects", "y"]), default=None, help="Write <out>_train.npz and <out>_test.npz: 'objects' trains on another object (--train-*-image), 'y' on the top half of this one (test: bottom half, N rows of positions apart).")
@click.option("--train-amplitude-image", "train_amplitude_image", help="--split objects: skimage.data image for the training object's amplitude (default astronaut).")
@click.option("--train-phase-image", "train_phase_image", help="--split objects: image for the training object's phase (default coins).")
@click.option("--train-object-size", "train_object_size", type=int, help="--split objects: training object side in pixels (default --object-size).")
@click.option("--train-seed", "train_seed", type=int, help="--split objects: seed of the training scan and noise (default: a stream derived from --seed).")
@click.option("--train-objects", "train_objects", type=click.Choice(["images", "lines", "grf", "particles", "mixed"]), help="--split objects: train on two other shipped images (images, the default) or on generated objects of a family (lines, Gaussian random fields, particles, or mixed: a family drawn per field).")
@click.option("--n-train-objects", "n_train_objects", type=int, help="--split objects: number of generated training objects, each --train-object-size pixels and scanned on its own (default 1).")
@click.option("--train-feature-size", "train_feature_size", type=float, help="Generated objects' feature size in pixels (line width, particle diameter, field correlation length; each object draws within a factor 2; default N/8).")
@click.option("--train-phase-min", "train_phase_min", type=float, help="Generated objects' lowest phase, rad (default: the test object's).")
@click.option("--train-phase-max", "train_phase_max", type=float, help="Generated objects' highest phase, rad (default: the test object's).")
@user_errors
def simulate_command(out, config_path, **overrides):
    """Simulate a dataset at a chosen photon dose."""
    from .config import config_from_file_and_flags
    from .io.dispatch import load_dataset
    from .pipelines.simulate import describe_dataset, run_simulate
    from .study.simulator import SimulationConfig

    config = config_from_file_and_flags(SimulationConfig, config_path, "simulate", overrides)
    written = run_simulate(config, out)
    for role, path in written.items():
        click.echo(f"{role}: {path}")
        click.echo(_indent(describe_dataset(load_dataset(path))))


def _indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


@study_main.command("reconstruct")
@click.option("--data", "data_path", required=True, type=click.Path(exists=True), help="Dataset to reconstruct (NPZ, ptychodus pair or CXI).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory (gets ptychi_reconstruction.npz).")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="YAML with a 'reconstruct' section (or flat keys).")
@click.option("--algorithm", type=click.Choice(["lsqml", "epie", "dm", "bh"]), help="pty-chi engine (default lsqml).")
@click.option("--epochs", type=int, help="Epochs (default 100).")
@click.option("--batch-size", "batch_size", type=int, help="Positions per update (default: 50; ePIE 1).")
@click.option("--seed", type=int, help="Random seed (default 0).")
@click.option("--refine-probe/--fixed-probe", "refine_probe", default=None, help="Update the probe too (default fixed).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="auto: the GPU when present.")
@click.option("--threads", "n_threads", type=int, help="torch threads in the pty-chi process (default 1).")
@click.option("--half-sets/--no-half-sets", "half_sets", default=None, help="Also reconstruct the two halves of the scan, each on its own, into OUT/half_sets/ptychi_half1.npz and ptychi_half2.npz, for half-set FRC in compare-models (default off; the sweep turns it on).")
@click.option("--half-set-split", "half_set_split", type=click.Choice(["checkerboard", "alternate"]), help="How the scan is split into halves: a checkerboard of the scan grid (default) or alternating positions along the scan path.")
@user_errors
def reconstruct_command(data_path, out_dir, config_path, **overrides):
    """Reconstruct a dataset with pty-chi (object started blank, never from the ground truth).

    With --half-sets, the two interleaved halves of the scan are reconstructed too, each from
    its own positions with the same settings, into OUT/half_sets/ (ptychi_half1.npz,
    ptychi_half2.npz, split.json); compare-models finds them beside the full reconstruction.
    """
    from .config import config_from_file_and_flags
    from .study.ptychi_runner import INSTALL_HINT, ReconstructConfig, ptychi_missing

    if ptychi_missing() is not None:
        click.echo(f"error: pty-chi is not installed; install it with: {INSTALL_HINT}", err=True)
        sys.exit(EXIT_USAGE)
    from .pipelines.reconstruct import describe_result, run_reconstruct

    config = config_from_file_and_flags(ReconstructConfig, config_path, "reconstruct", overrides)
    path, result = run_reconstruct(data_path, out_dir, config)
    click.echo(f"reconstruction: {path}")
    click.echo(_indent(describe_result(result)))
    if config.half_sets:
        from .pipelines.reconstruct import HALF_SET_DIR, half_set_paths

        for number, half in enumerate(half_set_paths(Path(out_dir) / HALF_SET_DIR), start=1):
            click.echo(f"half set {number}: {half}")


@study_main.command("convert")
@click.argument("in_path", metavar="IN", type=click.Path(exists=True))
@click.argument("out_path", metavar="OUT", type=click.Path())
@click.option("--pixel-size", "pixel_size_m", type=float, help="Object pixel size in metres (default: from the data, else 1e-8, flagged as a placeholder).")
@click.option("--photon-energy", "photon_energy_eV", type=float, help="Photon energy in eV (default: from the data, else 1e4, flagged).")
@click.option("--distance", "detector_object_distance_m", type=float, help="Detector-object distance in metres (default: from the data, else 1, flagged).")
@click.option("--name", help="Product name attribute (default: the input file's stem).")
@user_errors
def convert_command(in_path, out_path, **options):
    """Convert IN to OUT between the NPZ contract and a ptychodus pair.

    IN is read by content: an NPZ file, a ptychodus pair (a directory holding
    diffraction.h5 and product.h5, or either file), or a CXI file. OUT ending in .npz gets
    the NPZ contract; any other OUT is a directory that receives diffraction.h5 (counts =
    amplitude squared), product.h5 (probe, positions in metres, a uniform initial-guess
    object) and, when the data has a ground truth, ground_truth.h5 (the truth in the product
    layout). Converting back gives the same arrays.
    """
    from .io.dispatch import load_dataset
    from .pipelines.convert import ConvertConfig, run_convert
    from .pipelines.simulate import describe_dataset

    written = run_convert(in_path, out_path, ConvertConfig(**options))
    for role, path in written.items():
        click.echo(f"{role}: {path}")
    click.echo(_indent(describe_dataset(load_dataset(out_path))))


@study_main.command("train")
@click.option("--model", "model", type=click.Choice(["pinn", "baseline"]), help="Network to train (default pinn).")
@click.option("--train-data", "train_data", type=click.Path(exists=True), help="Training dataset (NPZ, ptychodus pair or CXI); with --train-on test-diffraction, give the test scan with --test-data instead.")
@click.option("--train-on", "train_on", type=click.Choice(["training-set", "test-diffraction"]), help="training-set (default): --train-data is a separate training set. test-diffraction (PINN only): train on the test scan's own diffraction, given by --test-data, without its ground truth, as an iterative reconstruction does; the bundle records the protocol.")
@click.option("--test-data", "test_data", type=click.Path(exists=True), help="The test scan, for --train-on test-diffraction.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Bundle directory to write.")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="YAML with a 'train' section (or flat keys).")
@click.option("--gridsize", type=int, help="Patterns per sample side, C = g² (default 1; baseline 1 only).")
@click.option("--epochs", type=int, help="Epochs (default 20).")
@click.option("--batch-size", "batch_size", type=int, help="Samples per step (default 16).")
@click.option("--learning-rate", "learning_rate", type=float, help="Adam step size (default 1e-3).")
@click.option("--seed", type=int, help="Seed of weights, split and shuffles (default 0).")
@click.option("--validation-fraction", "validation_fraction", type=float, help="Held-out fraction (default 0.1).")
@click.option("--patience", "early_stopping_patience", type=int, help="Early stopping patience in epochs (default off).")
@click.option("--width", type=int, help="Filters of the first conv block (default 32).")
@click.option("--depth", type=int, help="Conv-pool blocks; N divisible by 2**depth (default 3).")
@click.option("--n-neighbours", "n_neighbours", type=int, help="K candidates per group (default C).")
@click.option("--region-pad", "region_pad", type=int, help="PINN overlap region margin, px (default: from the training scan, max(N/4, widest group) up to N/2).")
@click.option("--architecture", "architecture", type=click.Choice(["compare-models", "ptychopinn"]), help="The PINN's network: this project's (compare-models, the default; --width, --depth) or PtychoPINN's diffraction_to_obj (ptychopinn; N = 64, 128 or 256), trained with this project's physics loss.")
@click.option("--n-filters-scale", "n_filters_scale", type=int, help="--architecture ptychopinn: PtychoPINN's filter multiplier (default 2).")
@click.option("--progress/--no-progress", default=True, help="Show progress bars.")
@click.option("--verbose", is_flag=True, help="Also show the libraries' start-up lines (TensorFlow's absl, oneDNN and CUDA notices).")
@user_errors
def train_command(train_data, test_data, out_dir, config_path, progress, verbose, **overrides):
    """Train the PINN or the baseline and write a model bundle.

    Two protocols: on a separate training set (--train-data; the default), or, for the PINN
    only, self-supervised on the test scan's own diffraction (--train-on test-diffraction
    --test-data TEST), which needs no ground truth. The bundle records which.
    """
    from .config import config_from_file_and_flags
    from .models.training import TrainConfig
    from .pipelines.train import describe_training, run_train

    config = config_from_file_and_flags(TrainConfig, config_path, "train", overrides)
    if config.train_on == "test-diffraction":
        if test_data is None or train_data is not None:
            raise ConfigError("--train-on test-diffraction trains on the test scan: give it with --test-data (and no --train-data)")
        data = test_data
    else:
        if train_data is None or test_data is not None:
            raise ConfigError("give the training set with --train-data (--test-data is for --train-on test-diffraction)")
        data = train_data
    _quiet_tensorflow(verbose)
    path, result = run_train(config, data, out_dir, progress=progress)
    click.echo(f"bundle: {path}")
    click.echo(_indent(describe_training(result)))


def _sweep_config(config_path, overrides):
    from .config import build_config, read_yaml_section
    from .pipelines.sweep import SweepConfig

    sections = {}
    if config_path:
        data = read_yaml_section(config_path)
        unknown = set(data) - {"sweep", "simulate", "train_pinn", "train_baseline", "reconstruct", "compare"}
        if unknown:
            raise ConfigError(f"{config_path}: unknown section(s) {', '.join(sorted(unknown))}")
        sections = {k: v for k, v in data.items() if k != "sweep"}
        sections.update(data.get("sweep") or {})
    return build_config(SweepConfig, sections, overrides, where=config_path or "options")


def _split_numbers(text, kind):
    if text is None:
        return None
    try:
        return tuple(kind(float(item)) if kind is int else kind(item) for item in text.replace(",", " ").split())
    except ValueError as exc:
        raise ConfigError(f"cannot read {text!r} as a list of numbers") from exc


@study_main.command("sweep")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="YAML with sections sweep, simulate, train_pinn, train_baseline, reconstruct, compare.")
@click.option("--doses", help='Nominal doses, photons per pattern, e.g. "1e3 1e4 1e5".')
@click.option("--seeds", help='Seeds, e.g. "0 1".')
@click.option("--out", "output_dir", type=click.Path(file_okay=False), help="Sweep output directory (default sweep_output).")
@click.option("--workers", type=int, help="Cells run at once by the local process pool (default 1).")
@click.option("--executor", type=click.Choice(["process", "parsl"]), help="process (default) or parsl (Slurm/PBS via Parsl).")
@click.option("--parsl-config", "parsl_config", type=click.Path(exists=True, dir_okay=False), help="Parsl config file defining `config`.")
@click.option("--threads-per-cell", "threads_per_cell", type=int, help="Thread count for each cell's processes.")
@click.option("--verbose", is_flag=True, help="Keep the libraries' start-up lines (TensorFlow's absl, oneDNN and CUDA notices) in the step logs.")
@user_errors
def sweep_command(config_path, doses, seeds, verbose, **overrides):
    """Run a dose sweep: simulate, train both networks, run pty-chi and compare, per (dose, seed).

    Cells are skipped when their outputs exist with the same resolved configuration, and a
    cell interrupted mid-way is redone from the step that did not finish. Writes
    sweep_metrics.csv, sweep_report.html (self-contained; links to every cell's
    compare/report.html), sweep_report.md and sweep_<metric>.png to the output directory.
    """
    from .pipelines.sweep import run_sweep

    overrides.update(doses=_split_numbers(doses, float), seeds=_split_numbers(seeds, int), verbose=verbose or None)
    config = _sweep_config(config_path, overrides)
    results = run_sweep(config, echo=click.echo)
    click.echo(f"report: {Path(config.output_dir) / 'sweep_report.html'} (and sweep_report.md)")
    failed = [r for r in results if r["status"] == "failed"]
    if failed:
        click.echo(f"error: {len(failed)} of {len(results)} cells failed", err=True)
        sys.exit(1)


@study_main.command("demo")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), default="configs/demo.yaml", show_default=True)
@click.option("--out", "output_dir", type=click.Path(file_okay=False), default="demo_output", show_default=True)
@click.option("--verbose", is_flag=True, help="Keep the libraries' start-up lines in the step logs.")
@user_errors
def demo_command(config_path, output_dir, verbose):
    """The whole study on the embedded default: one (dose, seed) cell, then its metrics table."""
    import json

    from .pipelines.sweep import Cell, run_sweep
    from .report.writers import (
        GROUND_TRUTH_TABLE_TITLE,
        HALF_SET_TABLE_TITLE,
        format_half_set_table,
        format_metrics_table,
        format_scoring_summary,
        read_metrics_csv,
    )

    config = _sweep_config(config_path, {"output_dir": output_dir, "verbose": verbose or None})
    results = run_sweep(config, echo=click.echo)
    for result in results:
        if result["status"] == "failed":
            click.echo(f"error: the demo failed at step {result['failed_step']}; see {result['log']}", err=True)
            sys.exit(1)
    for dose in config.doses:
        for seed in config.seeds:
            compare_dir = Path(config.output_dir) / "cells" / Cell(float(dose), int(seed)).name / "compare"
            rows = [(r["model"], r["metric"], r["amplitude"], r["phase"], r["value"]) for r in read_metrics_csv(compare_dir / "comparison_metrics.csv")]
            click.echo(f"\nmetrics ({compare_dir / 'comparison_metrics.csv'}):")
            click.echo(GROUND_TRUTH_TABLE_TITLE)
            click.echo(format_metrics_table(rows))
            if any(row[1].startswith("halfset_") for row in rows):
                click.echo(HALF_SET_TABLE_TITLE)
                click.echo(format_half_set_table(rows))
            click.echo(format_scoring_summary(json.loads((compare_dir / "metrics.json").read_text())))
            click.echo("\nreport and figures:")
            for name in ("report.html", "comparison.png", "frc.png"):
                click.echo(f"  {compare_dir / name}")
    click.echo(f"  {Path(config.output_dir) / 'sweep_report.html'}")


if __name__ == "__main__":  # pragma: no cover
    study_main()
