"""Run pty-chi (LSQML, ePIE, DM, BH) on a dataset, in a child process.

Conventions: from this project's dataset to pty-chi's
-------------------------------------------------------
* Data. pty-chi takes intensities (counts) with the zero frequency at the centre when
  ``data_options.fft_shift=True``; the dataset holds amplitudes, so the intensities are their
  squares.
* Probe. pty-chi's far field is the unnormalised ``fft2``, this project's (and the simulator's)
  is ``fft2(..., norm="ortho")``, which is smaller by N for an N x N pattern. The dataset's
  ``probeGuess`` is therefore handed over divided by N, which makes pty-chi's model of the
  data exactly the simulator's; the probe written back is multiplied by N again, so it is in
  the dataset's convention. (No scale is guessed: LSQML's first-epoch probe rescaling is off.)
* Object. Initialised to ones (blank) on a canvas covering the scan's bounding box plus a
  margin; the ground truth is never shown to pty-chi. The canvas's object-frame origin
  ``(ox, oy)`` (integers) is chosen first; canvas pixel ``(r, c)`` is object pixel
  ``(r + oy, c + ox)``. Canvas sides are even.
* Positions. pty-chi places a patch centred at position ``p`` (pixels) so that its first pixel
  is at buffer index ``p + (round(S/2) - 0.5) - (N - 1)/2`` for a buffer of side S (the
  default ``SUPPORT`` origin). This project's patch centred at ``x`` starts at object column
  ``x - N/2``, i.e. canvas column ``x - N/2 - ox``. Equating the two for an even canvas side
  gives ``p_x = x - ox - W/2`` and ``p_y = y - oy - H/2`` (:func:`to_ptychi_positions`).
* Sub-pixel positions. pty-chi 2.2 (LSQML, ePIE, DM) cuts the object at the integer
  ``round(p)`` and Fourier-shifts the probe by ``p - round(p)``; the simulator does the same
  with ``round(x)`` (docs/simulation.md). ``torch.round`` rounds half to even, which commutes
  with subtracting the integer ``ox + W/2`` only when that integer is even, so
  :func:`scan_canvas` makes ``ox + W/2`` and ``oy + H/2`` even: then the two frames cut the
  same crop even at exact half-integer positions (a grid whose step is a half-integer).
  pty-chi's BH engine shifts the object instead (``apply_subpixel_shifts_on_probe=False``,
  floor split), a model that differs from the simulator's at sub-pixel positions (1e-4 to
  1e-2 relative in intensity, depending on the object's fine detail).

Process isolation
-----------------
Building a pty-chi task changes torch's process-wide default device and dtypes, so
:func:`run_ptychi` never imports torch: it writes the inputs to an NPZ in a temporary directory
and runs ``python -m compare_models.study.ptychi_runner IN OUT`` (no pickle crosses the boundary). The
child uses ``n_threads`` torch threads and flushes denormals (each missed costs up to 15-20x on
small CPUs), reports progress per epoch on stderr and writes the result NPZ.
:func:`run_ptychi_jobs` runs several reconstructions (a scan and its two half sets) one after
another in one child, ``IN1 OUT1 IN2 OUT2 ...``, so torch and pty-chi are started once: every
task is built afresh and seeds torch, NumPy and Python's RNG from ``seed`` when it is built,
so each result is the one its own child would give.

References
----------
.. [1] pty-chi, https://github.com/AdvancedPhotonSource/pty-chi (``ptychi.api.task``).
.. [2] M. Odstrcil, A. Menzel, M. Guizar-Sicairos, "Iterative least-squares solver for
   generalized maximum-likelihood ptychography", Opt. Express 26, 3108 (2018).
.. [3] A. M. Maiden, J. M. Rodenburg, "An improved ptychographical phase retrieval algorithm
   for diffractive imaging", Ultramicroscopy 109, 1256 (2009).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

from ..config import setting
from ..errors import CompareModelsError, ConfigError
from ..imaging.halfsets import SPLIT_METHODS

__all__ = [
    "ALGORITHMS",
    "INSTALL_HINT",
    "OBJECT_INITIALISATION",
    "ReconstructConfig",
    "PtychiResult",
    "PtychiNotInstalled",
    "PtychiRunError",
    "ptychi_missing",
    "default_batch_size",
    "scan_canvas",
    "to_ptychi_positions",
    "from_ptychi_positions",
    "ptychi_inputs",
    "run_ptychi",
    "run_ptychi_jobs",
]

ALGORITHMS = ("lsqml", "epie", "dm", "bh")
DEVICES = ("auto", "cpu", "cuda")
#: How the object starts (recorded in every reconstruction's metadata, read back by
#: :attr:`compare_models.io.reconstruction.Reconstruction.initialisation`).
OBJECT_INITIALISATION = "blank (ones)"
# Positions per update when none is asked for, by the device that runs the engine. On a CPU
# small batches converge fastest per second. On a GPU a batch of 50 leaves it idle: on one H200
# (scripts/bench_ptychi.py, 6084 positions, N = 64; docs/performance.md) LSQML took 1.17 s per
# epoch at 50 and 0.30 s at 400, and at equal wall time (27 s) 400 reached an object error of
# 0.020 against 0.027 for 50; beyond 800 the error per second gets worse again. Only LSQML was
# measured there, so the other engines keep their CPU defaults on a GPU.
_DEFAULT_BATCH = MappingProxyType(
    {
        "cpu": MappingProxyType({"lsqml": 50, "epie": 1, "dm": 50, "bh": 50}),
        "cuda": MappingProxyType({"lsqml": 400, "epie": 1, "dm": 50, "bh": 50}),
    }
)
INSTALL_HINT = "pip install -c constraints.txt -e '.[ptychi]'"


class PtychiNotInstalled(CompareModelsError, ImportError):
    """torch or ptychi cannot be found; the message says how to install them."""


class PtychiRunError(CompareModelsError, RuntimeError):
    """The pty-chi child process failed; the message carries its last error line."""


@dataclass(frozen=True)
class ReconstructConfig:
    """Settings of ``ptycho-study reconstruct`` (and of a sweep's reconstruct step); validated by
    :meth:`validate`.

    Each field states its default and its help once (:func:`compare_models.config.setting`);
    ``ptycho-study reconstruct --help`` lists them, and a ``--config`` file's ``reconstruct``
    section takes the same keys. ``batch_size`` None picks the measured default for the engine
    and the device it runs on (:func:`default_batch_size`).
    """

    algorithm: str = setting("lsqml", "pty-chi engine (BH runs with method GD).", choices=ALGORITHMS)
    epochs: int = setting(100, "Passes over all scan positions.")
    batch_size: int | None = setting(
        None, "Positions per update.",
        default_text="the measured default for the engine and device: on a CPU 50 (ePIE 1); on a GPU LSQML 400, "
        "ePIE 1, DM and BH 50",
    )
    seed: int = setting(0, "Seeds torch, NumPy and Python's RNG in the pty-chi process (batch order).")
    refine_probe: bool = setting(False, "Update the probe too (from --probe-refine-start); otherwise it stays fixed.",
                                 flag="--refine-probe/--fixed-probe")
    probe_refine_start: int = setting(1, "First epoch of probe updates with --refine-probe.")
    device: str = setting("auto", "Where pty-chi runs; auto: the GPU when torch sees one.", choices=DEVICES)
    n_threads: int = setting(1, "torch threads in the pty-chi process (1 is fastest on small CPUs).", flag="--threads")
    canvas_margin: int = setting(4, "Pixels added around the scan's bounding box on each side of the object canvas.")
    timeout_s: float | None = setting(
        None, "Stop pty-chi after this many seconds (with --half-sets: the three reconstructions together).",
        flag="--timeout", default_text="no limit",
    )
    half_sets: bool = setting(
        False, "Also reconstruct the two halves of the scan, each on its own, into OUT/half_sets/ "
        "(ptychi_half1.npz, ptychi_half2.npz), for half-set FRC in compare-models (the sweep turns it on).",
        flag="--half-sets/--no-half-sets",
    )
    half_set_split: str = setting(
        "checkerboard", "How the scan is split into halves: a checkerboard of the scan grid, or alternating "
        "positions along the scan path.", choices=SPLIT_METHODS,
    )

    def validate(self) -> ReconstructConfig:
        """Raise :class:`ConfigError` naming the first invalid setting; return self."""
        if self.algorithm not in ALGORITHMS:
            raise ConfigError(
                f"algorithm must be one of {', '.join(ALGORITHMS)}, got {self.algorithm!r}"
            )
        if int(self.epochs) != self.epochs or self.epochs < 1:
            raise ConfigError(f"epochs must be an integer >= 1, got {self.epochs}")
        if self.batch_size is not None and (int(self.batch_size) != self.batch_size or self.batch_size < 1):
            raise ConfigError(f"batch_size must be an integer >= 1, got {self.batch_size}")
        if self.probe_refine_start < 0:
            raise ConfigError(f"probe_refine_start must be >= 0, got {self.probe_refine_start}")
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.n_threads < 1:
            raise ConfigError(f"n_threads must be >= 1, got {self.n_threads}")
        if self.canvas_margin < 0:
            raise ConfigError(f"canvas_margin must be >= 0, got {self.canvas_margin}")
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise ConfigError(f"timeout_s must be > 0, got {self.timeout_s}")
        if self.half_set_split not in SPLIT_METHODS:
            raise ConfigError(
                f"half_set_split must be one of {', '.join(SPLIT_METHODS)}, got {self.half_set_split!r}"
            )
        return self

    def batch_size_for(self, device: str) -> int:
        """Positions per update on ``device`` ("cpu" or "cuda"): the setting, or the measured
        default for that device (module constant ``_DEFAULT_BATCH``)."""
        if self.batch_size is not None:
            return int(self.batch_size)
        return default_batch_size(self.algorithm, device)

    def to_dict(self) -> dict:
        """Plain dict of the settings (for provenance); ``batch_size`` None means "the default
        for the device", and the batch size actually used is recorded in the result's info."""
        return dataclasses.asdict(self)


def default_batch_size(algorithm: str, device: str) -> int:
    """pty-chi batch size used when none is given, for ``algorithm`` on ``device``.

    Parameters
    ----------
    algorithm : {"lsqml", "epie", "dm", "bh"}
    device : {"cpu", "cuda"}
        The device the engine runs on (after "auto" has been resolved).
    """
    if device not in _DEFAULT_BATCH:
        raise ConfigError(f"device must be 'cpu' or 'cuda' to pick a batch size, got {device!r}")
    if algorithm not in ALGORITHMS:
        raise ConfigError(f"algorithm must be one of {', '.join(ALGORITHMS)}, got {algorithm!r}")
    return _DEFAULT_BATCH[device][algorithm]


@dataclass(frozen=True, eq=False)
class PtychiResult:
    """A finished pty-chi reconstruction.

    Attributes
    ----------
    object : ndarray, (H', W') complex64
        Reconstructed object on the canvas.
    probe : ndarray, (N, N) complex64
        Final probe, in the dataset's (ortho-FFT) convention.
    algorithm : str
    canvas_origin_xy : tuple of int
        Object-frame (x, y) of ``object[0, 0]``; pixel (r, c) is object pixel (r + oy, c + ox).
    loss_history : ndarray, (epochs,) float64
        pty-chi's displayed loss per epoch.
    wall_time_s : float
        Task build plus all epochs, in the child.
    total_wall_time_s : float
        Including process start, imports and file exchange.
    info : dict
        Device, versions, epoch times and the resolved config.
    """

    object: np.ndarray
    probe: np.ndarray
    algorithm: str
    canvas_origin_xy: tuple[int, int]
    loss_history: np.ndarray
    wall_time_s: float
    total_wall_time_s: float
    info: dict

    def metadata(self) -> dict:
        """JSON-ready metadata for :func:`compare_models.io.reconstruction.save_reconstruction`."""
        return {
            "algorithm": self.algorithm,
            "canvas_origin_xy": [int(v) for v in self.canvas_origin_xy],
            "canvas_shape": [int(s) for s in self.object.shape],
            "frame_note": "reconstructed_object[r, c] is object pixel (r + oy, c + ox)",
            "probe_convention": "dataset (far field = fft2(probe * patch, norm='ortho'))",
            "object_initialisation": OBJECT_INITIALISATION,
            "wall_time_s": float(self.wall_time_s),
            "total_wall_time_s": float(self.total_wall_time_s),
            "epochs": int(len(self.loss_history)),
            "loss_history": [float(v) for v in self.loss_history],
            **self.info,
        }


# --------------------------------------------------------------------------------------------
# Geometry: canvas and position conversion (pure NumPy)


def scan_canvas(positions_xy, patch_size: int, margin: int = 4) -> tuple[tuple[int, int], tuple[int, int]]:
    """Object canvas covering every patch of the scan plus ``margin`` pixels on each side.

    Parameters
    ----------
    positions_xy : ndarray, (M, 2)
        Patch centres, object pixels (x column, y row).
    patch_size : int
        N (even).
    margin : int
        Extra pixels around the scan's bounding box.

    Returns
    -------
    origin_xy : tuple of int
        Object-frame (x, y) of canvas pixel (0, 0).
    shape : tuple of int
        (H, W), both even, with ``ox + W/2`` and ``oy + H/2`` even (module docstring: pty-chi
        then rounds exact half-integer positions to the same crop as the simulator).
    """
    positions_xy = np.asarray(positions_xy, dtype=np.float64)
    half = patch_size / 2
    low = np.floor(positions_xy.min(axis=0) - half) - margin
    high = np.ceil(positions_xy.max(axis=0) + half) + margin  # exclusive
    size = high - low
    size += size % 2  # even sides: round(S/2) is then exactly S/2
    # pty-chi's centre pixel (origin + S/2) even: two more pixels on the far side flip it.
    size += 2 * ((low + size / 2) % 2)
    ox, oy = (int(v) for v in low)
    width, height = (int(v) for v in size)
    return (ox, oy), (height, width)


def to_ptychi_positions(positions_xy, origin_xy, canvas_shape) -> tuple[np.ndarray, np.ndarray]:
    """Object-frame patch centres -> pty-chi positions (pixels) on the given canvas.

    ``p_x = x - ox - W/2``, ``p_y = y - oy - H/2`` (module docstring; canvas sides even).

    Returns
    -------
    pos_x, pos_y : ndarray, (M,) float64
    """
    height, width = canvas_shape
    if height % 2 or width % 2:
        raise ValueError(f"canvas sides must be even, got {canvas_shape}")
    positions_xy = np.asarray(positions_xy, dtype=np.float64)
    ox, oy = origin_xy
    return positions_xy[:, 0] - ox - width / 2, positions_xy[:, 1] - oy - height / 2


def from_ptychi_positions(pos_x, pos_y, origin_xy, canvas_shape) -> np.ndarray:
    """Inverse of :func:`to_ptychi_positions`: (M, 2) object-frame (x, y)."""
    height, width = canvas_shape
    ox, oy = origin_xy
    return np.stack(
        [np.asarray(pos_x, np.float64) + ox + width / 2, np.asarray(pos_y, np.float64) + oy + height / 2],
        axis=1,
    )


# --------------------------------------------------------------------------------------------
# Parent side


def ptychi_missing() -> str | None:
    """None when torch and ptychi can be imported; else the name of the missing package.

    Looks the packages up without importing them, so the calling process stays torch-free.
    """
    for name in ("torch", "ptychi"):
        if importlib.util.find_spec(name) is None:
            return name
    return None


def ptychi_inputs(dataset, config: ReconstructConfig, *, progress: bool = True) -> dict:
    """What the pty-chi child receives, in pty-chi's conventions (module docstring).

    Returns
    -------
    dict
        ``intensities`` (M, N, N) float32 (amplitudes squared, zero frequency at the centre),
        ``probe`` (N, N) complex64 (``probeGuess / N``), ``pos_x``, ``pos_y`` (M,) float64
        (:func:`to_ptychi_positions` on the :func:`scan_canvas`), and ``settings`` (the resolved
        config plus ``patch_size``, ``canvas_shape`` (H, W) and ``canvas_origin_xy``).
    """
    n_side = dataset.patch_size
    origin, shape = scan_canvas(dataset.positions_xy, n_side, config.canvas_margin)
    pos_x, pos_y = to_ptychi_positions(dataset.positions_xy, origin, shape)
    settings = config.to_dict()
    settings.update(patch_size=n_side, canvas_shape=list(shape), canvas_origin_xy=list(origin), progress=progress)
    return {
        "intensities": np.square(np.asarray(dataset.diffraction_amplitude), dtype=np.float32),  # read whole
        "probe": (dataset.probe / n_side).astype(np.complex64),
        "pos_x": pos_x,
        "pos_y": pos_y,
        "settings": settings,
    }


def run_ptychi(dataset, config: ReconstructConfig, *, progress: bool = True) -> PtychiResult:
    """Reconstruct ``dataset`` with pty-chi in a child process.

    Parameters
    ----------
    dataset : compare_models.io.dataset.Dataset
        Amplitudes, positions and ``probeGuess`` are used; the ground truth is not.
    config : ReconstructConfig
    progress : bool
        Show per-epoch progress on stderr (from the child).

    Returns
    -------
    PtychiResult

    Raises
    ------
    PtychiNotInstalled
        If torch or ptychi is missing.
    PtychiRunError
        If the child fails (its last error line is in the message) or times out.
    """
    return run_ptychi_jobs([dataset], config, progress=progress)[0]


def run_ptychi_jobs(datasets, config: ReconstructConfig, *, progress: bool = True, labels=None) -> list[PtychiResult]:
    """Reconstruct each of ``datasets`` with the same settings, one after another, in one child
    process (torch and pty-chi imported once).

    Each reconstruction is the one :func:`run_ptychi` gives for its dataset alone: the child
    builds a new task for each, and building a task seeds the random generators from
    ``config.seed``.

    Parameters
    ----------
    datasets : sequence of compare_models.io.dataset.Dataset
    config : ReconstructConfig
        ``timeout_s`` bounds the whole child.
    progress : bool
        Show per-epoch progress on stderr (from the child), one bar per dataset.
    labels : sequence of str, optional
        Names for the progress bars (e.g. "half 1"), one per dataset.

    Returns
    -------
    list of PtychiResult
        In the order of ``datasets``. ``total_wall_time_s`` of each is its own reconstruction
        plus the child's start, imports and file exchange, which the reconstructions of one
        child share.

    Raises
    ------
    PtychiNotInstalled
        If torch or ptychi is missing.
    PtychiRunError
        If the child fails (the failed reconstruction's last error line is in the message) or
        times out.
    """
    config.validate()
    datasets = list(datasets)
    labels = list(labels) if labels is not None else [None] * len(datasets)
    if not datasets or len(labels) != len(datasets):
        raise ValueError(f"need one label per dataset and at least one dataset, got {len(datasets)} and {len(labels)}")
    missing = ptychi_missing()
    if missing is not None:
        raise PtychiNotInstalled(f"pty-chi is not installed ({missing} missing); install it with: {INSTALL_HINT}")
    start = time.perf_counter()
    outputs = []
    with tempfile.TemporaryDirectory(prefix="ptychi_arm_") as tmp:
        paths = []
        for number, (dataset, label) in enumerate(zip(datasets, labels, strict=True)):
            inputs = ptychi_inputs(dataset, config, progress=progress)
            if label:
                inputs["settings"]["label"] = str(label)
            in_path, out_path = Path(tmp) / f"in{number}.npz", Path(tmp) / f"out{number}.npz"
            np.savez(
                in_path,
                **{k: v for k, v in inputs.items() if k != "settings"},
                settings=np.array(json.dumps(inputs["settings"])),
            )
            paths.append((in_path, out_path, tuple(inputs["settings"]["canvas_origin_xy"])))
        cmd = [sys.executable, "-m", "compare_models.study.ptychi_runner"]
        cmd += [str(p) for in_path, out_path, _ in paths for p in (in_path, out_path)]
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        try:
            proc = subprocess.run(
                cmd, env=env, stdout=subprocess.DEVNULL, stderr=None if progress else subprocess.PIPE,
                timeout=config.timeout_s, check=False, text=True,
            )
        except subprocess.TimeoutExpired as exc:
            raise PtychiRunError(f"pty-chi did not finish within {config.timeout_s} s") from exc
        if proc.returncode != 0 or not all(out_path.exists() for _, out_path, _ in paths):
            errors = [out_path.with_suffix(".error.txt") for _, out_path, _ in paths]
            detail = next((e.read_text().strip() for e in errors if e.exists()), "")
            if not detail and proc.stderr:
                detail = proc.stderr.strip().splitlines()[-1]
            raise PtychiRunError(
                f"pty-chi ({config.algorithm}) failed with exit code {proc.returncode}"
                + (f": {detail}" if detail else "")
            )
        for _, out_path, _ in paths:
            with np.load(out_path, allow_pickle=False) as out:
                outputs.append(
                    (out["object"].astype(np.complex64), out["probe"], out["loss"].astype(np.float64),
                     json.loads(out["info"].item()))
                )
    total = time.perf_counter() - start
    shared = max(total - sum(info["wall_time_s"] for *_, info in outputs), 0.0)
    results = []
    for dataset, (_, _, origin), (obj, probe, loss, info) in zip(datasets, paths, outputs, strict=True):
        wall = info.pop("wall_time_s")
        info["config"] = config.to_dict()
        info["n_positions"] = dataset.n_positions
        info["patch_size"] = dataset.patch_size
        if dataset.source:
            info["data"] = str(dataset.source)
        results.append(
            PtychiResult(
                object=obj,
                probe=(probe * dataset.patch_size).astype(np.complex64),
                algorithm=config.algorithm,
                canvas_origin_xy=origin,
                loss_history=loss,
                wall_time_s=float(wall),
                total_wall_time_s=float(wall) + shared,
                info=info,
            )
        )
    return results


# --------------------------------------------------------------------------------------------
# Child side (runs in its own process; may change torch's process-wide state)


def _register_torchvision_op_schemas() -> None:
    """Let ``import torchvision`` succeed when its compiled ops cannot load.

    torchvision's Python side registers fake kernels for ``torchvision::nms`` and
    ``torchvision::qnms``, which fails when its CUDA-linked ``_C`` extension does not load
    next to a CPU torch. Defining the two schemas first fixes the import; pty-chi uses only
    ``GaussianBlur``, which needs neither op. Where the extension loads, nothing is defined.
    """
    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return
    package = Path(spec.origin).parent
    for candidate in sorted(package.glob("_C*.so")) + sorted(package.glob("_C*.pyd")):
        try:
            torch.ops.load_library(str(candidate))
            return
        except (OSError, RuntimeError):
            break
    schema = "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"
    for name in ("nms", "qnms"):
        try:
            torch.library.define(f"torchvision::{name}", schema)
        except RuntimeError:  # already defined: nothing to do
            pass


def _build_options(api, settings: dict, device: str):
    algorithm = settings["algorithm"]
    options = {
        "lsqml": api.LSQMLOptions,
        "epie": api.EPIEOptions,
        "dm": api.DMOptions,
        "bh": api.BHOptions,
    }[algorithm]()
    options.data_options.fft_shift = True
    options.object_options.optimizable = True
    options.probe_options.optimizable = bool(settings["refine_probe"])
    options.probe_options.optimization_plan.start = int(settings["probe_refine_start"])
    options.probe_position_options.optimizable = False
    # With a fixed probe its scale is exact (module docstring), so the object keeps physical
    # units; pty-chi's ambiguity removal would rescale both every few epochs.
    options.object_options.remove_object_probe_ambiguity.enabled = bool(settings["refine_probe"])
    rec = options.reconstructor_options
    rec.num_epochs = int(settings["epochs"])
    batch = settings["batch_size"]
    rec.batch_size = int(batch) if batch is not None else default_batch_size(algorithm, device)
    rec.random_seed = int(settings["seed"])
    rec.default_device = api.Devices.GPU if device == "cuda" else api.Devices.CPU
    if algorithm == "lsqml":
        # The probe is already scaled to the data exactly (module docstring).
        rec.rescale_probe_intensity_in_first_epoch = False
    if algorithm == "bh":
        rec.method = "GD"
    return options


def _worker(in_path: str, out_path: str) -> None:
    import torch

    with np.load(in_path, allow_pickle=False) as data:
        intensities = data["intensities"]
        probe = data["probe"]
        pos_x, pos_y = data["pos_x"], data["pos_y"]
        settings = json.loads(data["settings"].item())
    torch.set_num_threads(int(settings["n_threads"]))
    torch.set_flush_denormal(True)
    _register_torchvision_op_schemas()
    import logging
    import warnings

    import ptychi
    from ptychi import api
    from ptychi.api.task import PtychographyTask
    from tqdm import tqdm

    logging.getLogger("ptychi").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad")
    device = settings["device"]
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    height, width = settings["canvas_shape"]
    n_side = int(settings["patch_size"])
    epochs = int(settings["epochs"])
    start = time.perf_counter()
    options = _build_options(api, settings, device)
    task = PtychographyTask(
        options,
        diffraction_data=intensities,
        object_data=np.ones((1, height, width), dtype=np.complex64),  # OBJECT_INITIALISATION
        probe_data=probe.reshape(1, 1, n_side, n_side),
        probe_position_x_px=pos_x,
        probe_position_y_px=pos_y,
    )
    epoch_times = []
    losses = []
    label = f" ({settings['label']})" if settings.get("label") else ""
    bar = tqdm(
        total=epochs, desc=f"pty-chi {settings['algorithm']}{label}", unit="epoch",
        disable=not settings.get("progress", True), file=sys.stderr,
    )
    for _ in range(epochs):
        t0 = time.perf_counter()
        task.run(n_epochs=1)
        epoch_times.append(time.perf_counter() - t0)
        loss = float(task.reconstructor.loss_tracker.table["loss"].iloc[-1])
        losses.append(loss)
        bar.set_postfix(loss=f"{loss:.4g}")
        bar.update(1)
    bar.close()
    wall = time.perf_counter() - start
    obj = task.get_data_to_cpu("object", as_numpy=True)
    probe_out = task.get_data_to_cpu("probe", as_numpy=True)
    obj = np.asarray(obj).reshape(-1, height, width)[0]
    probe_out = np.asarray(probe_out).reshape(-1, n_side, n_side)[0]
    info = {
        "wall_time_s": wall,
        "batch_size": int(options.reconstructor_options.batch_size),
        "epoch_times_s": epoch_times,
        "device": device,
        "n_threads": int(settings["n_threads"]),
        "ptychi_version": getattr(ptychi, "__version__", None) or _dist_version("ptychi"),
        "torch_version": torch.__version__,
    }
    tmp = Path(out_path).with_suffix(".tmp.npz")
    np.savez(
        tmp,
        object=obj.astype(np.complex64),
        probe=probe_out.astype(np.complex64),
        loss=np.asarray(losses, dtype=np.float64),
        info=np.array(json.dumps(info)),
    )
    os.replace(tmp, out_path)


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _main(argv: list[str]) -> int:
    if not argv or len(argv) % 2:
        print("usage: python -m compare_models.study.ptychi_runner IN.npz OUT.npz [IN2.npz OUT2.npz ...]",
              file=sys.stderr)
        return 2
    for in_path, out_path in zip(argv[::2], argv[1::2], strict=True):
        try:
            _worker(in_path, out_path)
        except Exception as exc:  # reported to the parent through a file, then re-raised
            Path(out_path).with_suffix(".error.txt").write_text(f"{type(exc).__name__}: {exc}")
            raise
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
