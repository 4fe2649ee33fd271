"""Synthetic ptychography datasets at a chosen photon dose, under pty-chi's forward model.

Forward model (docs/simulation.md has the derivation and the pty-chi source lines)
---------------------------------------------------------------------------------
For a scan position ``x`` (per axis; the same for ``y``), patch side N (even) and probe ``P``
(centred at its pixel N/2):

* integer centre ``k = round(x)`` (half to even) and residual ``r = x - k`` in [-1/2, 1/2];
* the object is cut without interpolation: ``O_c = O[k - N/2 : k + N/2]``;
* the probe is Fourier-shifted by ``+r``: ``P_r(n) = P(n - r)``, periodic over the N x N window;
* the far-field wave is ``Psi = fftshift(fft2(P_r * O_c, norm="ortho"))``, zero frequency at
  pixel (N/2, N/2).

This is pty-chi 2.2's ``PlanarPtychographyForwardModel`` (LSQML, ePIE, DM) written in this
project's frame: given the true object and probe, pty-chi's model reproduces the noise-free data
to rounding (tests/test_forward_model.py). The probe's centre lands on object coordinate
``k - N/2 + N/2 + r = x``: the same place as in the project's frame.

The ``ortho`` FFT makes Parseval exact: ``sum |Psi|^2 == sum |P_r * O_c|^2``. The probe is
scaled so that the expected counts ``|Psi|^2`` average ``dose`` photons per pattern, then counts
are drawn from a Poisson law and the stored diffraction is their square root (amplitudes,
float32). The scale is folded into the stored ``probeGuess``.

The recorded ground-truth patches ``Y`` are :func:`compare_models.imaging.geometry.object_patches`:
the integer crop shifted back by ``-r``, i.e. the object seen from the probe's centre. A
network with a fixed, centred probe can see nothing else (a translation of the exit wave does not
change the diffraction modulus), so ``Y`` is what a perfect network predicts, and stitching it
(a Fourier shift by ``+r``) gives the object back exactly.

Objects and the train/test split
--------------------------------
The object's amplitude and phase come from images that scikit-image ships (``skimage.data``),
so nothing is downloaded. A study must not score pixels a network saw in training
(docs/design.md, "A fair comparison"); :func:`simulate_split` writes a training set that cannot
overlap the test set:

* ``split="objects"`` (the demo and the sweeps): the training set is simulated on other
  objects than the test object, with a random stream of its own. ``train_objects`` says which:
  ``"images"`` is one object made from two other shipped images (``train_amplitude_image``,
  ``train_phase_image``); ``"lines"``, ``"grf"``, ``"particles"`` or ``"mixed"`` are
  ``n_train_objects`` procedurally generated objects (:mod:`compare_models.study.objects`) of
  side ``train_object_size``, with feature size ``train_feature_size`` and phases in
  ``[train_phase_min, train_phase_max]``, placed side by side in one ``objectGuess``
  (:func:`~compare_models.study.objects.mosaic`) and each scanned on its own (no patch reads
  two objects);
* ``split="y"``: one object, training positions above the middle row and test positions below
  it, at least N apart in y, so that no test patch pixel lies under a training patch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .. import __version__
from ..config import setting
from ..errors import ConfigError
from ..imaging.geometry import fourier_shift, integer_crops, object_patches, split_nearest
from ..io.dataset import Dataset
from . import objects as object_families

__all__ = [
    "SimulationConfig",
    "SPLITS",
    "TRAIN_OBJECTS",
    "FORWARD_MODEL",
    "make_object",
    "make_probe",
    "make_scan",
    "exit_waves",
    "far_field_amplitude",
    "simulate_dataset",
    "simulate_generated_objects",
    "training_config",
    "simulate_split",
    "split_dataset_by_row",
]

SPLITS = ("y", "objects")

#: What ``split="objects"`` trains on: two other shipped images, or generated objects.
TRAIN_OBJECTS = ("images", *object_families.FAMILIES, "mixed")

#: Recorded in every simulated file's metadata.
FORWARD_MODEL = (
    "pty-chi 2.2 (LSQML/ePIE/DM): amplitude = |fftshift(fft2(fourier_shift(probe, x - round(x)) "
    "* object[round(y) - N/2 :, round(x) - N/2 :][:N, :N], norm='ortho'))|; "
    "Y = fourier_shift(that crop, -(x - round(x))); docs/simulation.md"
)

# Exit waves are made this many positions at a time (bounds the complex128 temporaries).
_CHUNK = 512

# Images that ship inside scikit-image (no download), grey-scaled on load.
_SHIPPED_IMAGES = ("camera", "astronaut", "coins", "moon", "text", "brick", "grass", "gravel", "page", "clock", "cell")


@dataclass(frozen=True)
class SimulationConfig:
    """Settings of ``ptycho-study simulate``; validated by :meth:`validate`.

    Lengths are in object pixels, phases in radians, the dose in photons per pattern.
    """

    patch_size: int = setting(64, "N, the side of every pattern and of the probe, pixels.")
    object_size: int = setting(256, "Side of the (test) object, pixels.")
    amplitude_image: str = setting("camera", "skimage.data image for the object's amplitude.")
    phase_image: str = setting("moon", "skimage.data image for the object's phase.")
    object_family: str = setting(
        "images", "The (test) object: two shipped images (images: --amplitude-image, --phase-image) or a "
        "generated object of a family (lines, Gaussian random fields, particles, or mixed).", choices=("images", *object_families.FAMILIES, "mixed"),
    )
    feature_size: float | None = setting(None, "Generated object's feature size, pixels.", default_text="N/8")
    amplitude_min: float = setting(0.4, "Lowest object amplitude.")
    amplitude_max: float = setting(1.0, "Highest object amplitude.")
    phase_min: float = setting(-1.0, "Lowest object phase, rad.")
    phase_max: float = setting(1.0, "Highest object phase, rad.")
    probe_shape: str = setting("disc", "Probe shape.", flag="--probe", choices=("disc", "gaussian"))
    probe_radius: float | None = setting(None, "Disc radius or Gaussian sigma, pixels.", default_text="N/4")
    probe_defocus_phase: float = setting(3.0, "Quadratic (defocus) phase at the disc's edge, rad.")
    scan: str = setting("grid", "Scan pattern.", choices=("grid", "jittered", "random"))
    scan_step: float | None = setting(None, "Grid step, pixels.", default_text="from --overlap")
    overlap: float = setting(0.75, "1 - step / probe diameter; sets the step when --scan-step is not given.")
    jitter: float = setting(1.0, "Standard deviation of the jitter, pixels (--scan jittered).")
    n_random_positions: int | None = setting(
        None, "Number of positions for --scan random.", flag="--n-positions", default_text="as many as the grid"
    )
    dose: float = setting(1e4, "Mean photons per pattern.")
    poisson_noise: bool = setting(True, "Poisson noise.", flag="--noise/--no-noise")
    seed: int = setting(0, "Seed of the scan jitter and the noise.")
    pixel_size_m: float | None = setting(
        None, "Object pixel size in metres (recorded in the metadata).", flag="--pixel-size", default_text="not recorded"
    )
    split: str | None = setting(
        None, "Write <out>_train.npz and <out>_test.npz: 'objects' trains on another object (--train-*-image), "
        "'y' on the top of this one (test: the bottom, N rows of positions apart).",
        choices=("objects", "y"), default_text="one file, no split",
    )
    train_amplitude_image: str = setting("astronaut", "--split objects: image for the training object's amplitude.")
    train_phase_image: str = setting("coins", "--split objects: image for the training object's phase.")
    train_object_size: int | None = setting(
        None, "--split objects: side of the training object, pixels.", default_text="--object-size"
    )
    train_seed: int | None = setting(
        None, "--split objects: seed of the training scan and noise.", default_text="a stream of its own derived from --seed"
    )
    train_objects: str = setting(
        "images", "--split objects: train on two other shipped images (images) or on generated objects of a "
        "family (lines, Gaussian random fields, particles, or mixed: a family drawn per field).", choices=("images", *object_families.FAMILIES, "mixed"),
    )
    n_train_objects: int = setting(
        1, "--split objects: number of generated training objects, each --train-object-size pixels and scanned "
        "on its own."
    )
    train_feature_size: float | None = setting(
        None, "Generated training objects' feature size, pixels (line width, particle diameter, field correlation "
        "length; each object draws within a factor 2).", default_text="N/8",
    )
    train_phase_min: float | None = setting(None, "Generated training objects' lowest phase, rad.",
                                            default_text="--phase-min")
    train_phase_max: float | None = setting(None, "Generated training objects' highest phase, rad.",
                                            default_text="--phase-max")

    def validate(self) -> SimulationConfig:
        """Raise :class:`ConfigError` naming the first invalid setting; return self."""
        if self.patch_size < 8 or self.patch_size % 2:
            raise ConfigError(f"patch_size must be an even integer >= 8, got {self.patch_size}")
        if self.object_size < self.patch_size + 2:
            raise ConfigError(
                f"object_size ({self.object_size}) must exceed patch_size ({self.patch_size}) by 2"
            )
        for name in ("amplitude_image", "phase_image", "train_amplitude_image", "train_phase_image"):
            if getattr(self, name) not in _SHIPPED_IMAGES:
                raise ConfigError(f"{name} must be one of {', '.join(_SHIPPED_IMAGES)}")
        if self.split is not None and self.split not in SPLITS:
            raise ConfigError(f"split must be one of {', '.join(SPLITS)} (or unset), got {self.split!r}")
        if self.train_object_size is not None and self.train_object_size < self.patch_size + 2:
            raise ConfigError(
                f"train_object_size ({self.train_object_size}) must exceed patch_size ({self.patch_size}) by 2"
            )
        if self.object_family not in TRAIN_OBJECTS:
            raise ConfigError(f"object_family must be one of {', '.join(TRAIN_OBJECTS)}, got {self.object_family!r}")
        if self.feature_size is not None and not self.feature_size > 0:
            raise ConfigError(f"feature_size must be > 0 pixels, got {self.feature_size}")
        if self.train_objects not in TRAIN_OBJECTS:
            raise ConfigError(f"train_objects must be one of {', '.join(TRAIN_OBJECTS)}, got {self.train_objects!r}")
        if not isinstance(self.n_train_objects, int) or self.n_train_objects < 1:
            raise ConfigError(f"n_train_objects must be an integer >= 1, got {self.n_train_objects!r}")
        if self.train_objects == "images" and self.n_train_objects != 1:
            raise ConfigError(
                "n_train_objects > 1 needs generated objects: set train_objects to one of "
                f"{', '.join(TRAIN_OBJECTS[1:])}"
            )
        if self.train_feature_size is not None and not self.train_feature_size > 0:
            raise ConfigError(f"train_feature_size must be > 0 pixels, got {self.train_feature_size}")
        if not self.resolved_train_phase_range[0] < self.resolved_train_phase_range[1]:
            raise ConfigError("need train_phase_min < train_phase_max")
        if self.split == "objects" and self.train_objects == "images" and self.object_family == "images":
            shared = {self.train_amplitude_image, self.train_phase_image} & {self.amplitude_image, self.phase_image}
            if shared:
                raise ConfigError(
                    f"split 'objects' trains on another object: train_amplitude_image and "
                    f"train_phase_image must differ from amplitude_image and phase_image "
                    f"(both use {', '.join(sorted(shared))})"
                )
        if not 0 <= self.amplitude_min < self.amplitude_max:
            raise ConfigError("need 0 <= amplitude_min < amplitude_max")
        if not self.phase_min < self.phase_max:
            raise ConfigError("need phase_min < phase_max")
        if self.probe_shape not in ("disc", "gaussian"):
            raise ConfigError(f"probe_shape must be 'disc' or 'gaussian', got {self.probe_shape!r}")
        if self.probe_radius is not None and not 0 < self.probe_radius <= self.patch_size / 2:
            raise ConfigError(f"probe_radius must be in (0, N/2], got {self.probe_radius}")
        if self.scan not in ("grid", "jittered", "random"):
            raise ConfigError(f"scan must be 'grid', 'jittered' or 'random', got {self.scan!r}")
        if self.scan_step is not None and self.scan_step <= 0:
            raise ConfigError(f"scan_step must be > 0, got {self.scan_step}")
        if not 0 <= self.overlap < 1:
            raise ConfigError(f"overlap must be in [0, 1), got {self.overlap}")
        if self.jitter < 0:
            raise ConfigError(f"jitter must be >= 0, got {self.jitter}")
        if self.n_random_positions is not None and self.n_random_positions < 1:
            raise ConfigError("n_random_positions must be >= 1")
        if not self.dose > 0:
            raise ConfigError(f"dose must be > 0 photons per pattern, got {self.dose}")
        if self.pixel_size_m is not None and not self.pixel_size_m > 0:
            raise ConfigError("pixel_size_m must be > 0")
        return self

    @property
    def resolved_probe_radius(self) -> float:
        return self.probe_radius if self.probe_radius is not None else self.patch_size / 4

    @property
    def resolved_scan_step(self) -> float:
        if self.scan_step is not None:
            return float(self.scan_step)
        diameter = 2 * self.resolved_probe_radius
        return max(1.0, diameter * (1 - self.overlap))

    @property
    def resolved_train_object_size(self) -> int:
        return self.train_object_size if self.train_object_size is not None else self.object_size

    @property
    def resolved_train_feature_size(self) -> float:
        return float(self.train_feature_size) if self.train_feature_size is not None else self.patch_size / 8

    @property
    def resolved_train_phase_range(self) -> tuple[float, float]:
        low = self.phase_min if self.train_phase_min is None else self.train_phase_min
        high = self.phase_max if self.train_phase_max is None else self.train_phase_max
        return float(low), float(high)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _grey_image(name: str, size: int) -> np.ndarray:
    """A shipped scikit-image image as float64 in [0, 1], resized to (size, size)."""
    from skimage import color, data, transform

    image = np.asarray(getattr(data, name)(), dtype=np.float64)
    if image.ndim == 3:
        image = color.rgb2gray(image[..., :3])
    image = transform.resize(image, (size, size), anti_aliasing=True, preserve_range=True)
    low, high = image.min(), image.max()
    return (image - low) / (high - low) if high > low else np.zeros_like(image)


#: Random stream of a generated (test) object: its own, never a scan's or a training object's.
OBJECT_STREAM = 7


def make_object(config: SimulationConfig) -> np.ndarray:
    """Complex object (object_size, object_size), complex64: amplitude and phase from two
    images, or (``object_family`` other than ``"images"``) a generated object
    (:func:`compare_models.study.objects.random_object`, feature size ``feature_size``, drawn
    from the stream ``(seed, 7)``)."""
    return _object_and_record(config)[0]


def _object_and_record(config: SimulationConfig) -> tuple[np.ndarray, dict]:
    size = config.object_size
    if config.object_family != "images":
        feature = config.feature_size if config.feature_size is not None else config.patch_size / 8
        obj, info = object_families.random_object(
            config.object_family, size, feature, np.random.default_rng([config.seed, OBJECT_STREAM]),
            amplitude_range=(config.amplitude_min, config.amplitude_max),
            phase_range=(config.phase_min, config.phase_max),
        )
        return obj, {"family": config.object_family, "size": size, "feature_size_px": float(feature), **info}
    amplitude = config.amplitude_min + (config.amplitude_max - config.amplitude_min) * _grey_image(
        config.amplitude_image, size
    )
    phase = config.phase_min + (config.phase_max - config.phase_min) * _grey_image(
        config.phase_image, size
    )
    record = {"amplitude_image": config.amplitude_image, "phase_image": config.phase_image, "size": size}
    return (amplitude * np.exp(1j * phase)).astype(np.complex64), record


def make_probe(config: SimulationConfig) -> np.ndarray:
    """Unit-peak probe (N, N) complex128 with a quadratic (defocus) phase, centred at (N/2, N/2)."""
    n_side = config.patch_size
    radius = config.resolved_probe_radius
    coords = np.arange(n_side) - n_side / 2
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    rr = np.hypot(xx, yy)
    if config.probe_shape == "disc":
        # Soft edge one pixel wide, so the far field is not dominated by ringing.
        amplitude = np.clip(radius + 0.5 - rr, 0.0, 1.0)
    else:
        amplitude = np.exp(-(rr**2) / (2 * radius**2))
    phase = config.probe_defocus_phase * (rr / radius) ** 2
    return amplitude * np.exp(1j * phase)


def make_scan(config: SimulationConfig, rng: np.random.Generator) -> np.ndarray:
    """Scan positions (M, 2) float64 (x, y) in ``[N/2, S - N/2 - 1]`` per axis, so that every
    patch's integer crop (at ``round(x) - N/2``, N wide) lies inside the object."""
    n_side, size = config.patch_size, config.object_size
    low, high = n_side / 2, size - n_side / 2 - 1
    step = config.resolved_scan_step
    axis = np.arange(low, high + 1e-9, step)
    gx, gy = np.meshgrid(axis, axis, indexing="xy")
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1)
    if config.scan == "grid":
        positions = grid
    elif config.scan == "jittered":
        positions = np.clip(grid + rng.normal(0.0, config.jitter, grid.shape), low, high)
    else:
        count = config.n_random_positions or grid.shape[0]
        positions = rng.uniform(low, high, size=(count, 2))
    return positions.astype(np.float64)


def exit_waves(obj, probe, positions_xy) -> np.ndarray:
    """Exit waves ``P_r * O_c`` (M, N, N) complex128 in each position's crop frame.

    ``O_c`` is the object's integer crop at ``round(x) - N/2`` and ``P_r`` the probe
    Fourier-shifted by the residual ``r = x - round(x)`` (module docstring): pty-chi's exit
    wave ``psi``.

    Parameters
    ----------
    obj : ndarray (H, W) complex
    probe : ndarray (N, N) complex, centred at pixel (N/2, N/2)
    positions_xy : ndarray (M, 2)
        Patch centres, object pixels (x column, y row).
    """
    probe = np.asarray(probe)
    n_side = probe.shape[-1]
    origin, residual = split_nearest(positions_xy, n_side)
    shifted = fourier_shift(np.broadcast_to(probe, (residual.shape[0], n_side, n_side)), residual)
    return shifted * integer_crops(obj, origin, n_side)


def far_field_amplitude(exit_waves) -> np.ndarray:
    """``|fftshift(fft2(exit_waves, norm="ortho"))|`` over the last two axes (float64)."""
    spectrum = np.fft.fftshift(np.fft.fft2(exit_waves, norm="ortho"), axes=(-2, -1))
    return np.abs(spectrum)


def _unit_intensities(obj, probe, positions) -> np.ndarray:
    """Noise-free counts (M, N, N) float64 for the unscaled probe, computed in chunks of
    positions into one array (no per-chunk list to concatenate: one copy at 10^5 positions)."""
    n_side = np.asarray(probe).shape[-1]
    out = np.empty((positions.shape[0], n_side, n_side))
    for start in range(0, positions.shape[0], _CHUNK):
        out[start : start + _CHUNK] = far_field_amplitude(exit_waves(obj, probe, positions[start : start + _CHUNK])) ** 2
    return out


def _counts_to_amplitude(expected_counts, rng, poisson_noise: bool):
    """Amplitudes sqrt(counts) (M, N, N) float32 and the counts per pattern (M,) float64.

    Poisson draws go chunk by chunk in order, which gives the same numbers as one draw over
    the whole array (the generator is consumed element by element in C order) without the
    full-size int64 and float64 temporaries.
    """
    amplitude = np.empty(expected_counts.shape, np.float32)
    per_pattern = np.empty(expected_counts.shape[0])
    for start in range(0, expected_counts.shape[0], _CHUNK):
        part = expected_counts[start : start + _CHUNK]
        counts = rng.poisson(part).astype(np.float64) if poisson_noise else part
        amplitude[start : start + _CHUNK] = np.sqrt(counts)
        per_pattern[start : start + _CHUNK] = counts.sum(axis=(1, 2))
    return amplitude, per_pattern


def _patches_truth(obj, positions, patch_size: int) -> np.ndarray:
    """``object_patches`` (M, N, N) complex64, in chunks of positions."""
    out = np.empty((positions.shape[0], patch_size, patch_size), np.complex64)
    for start in range(0, positions.shape[0], _CHUNK):
        out[start : start + _CHUNK] = object_patches(obj, positions[start : start + _CHUNK], patch_size)
    return out


def simulate_dataset(config: SimulationConfig, *, rng: np.random.Generator | None = None) -> Dataset:
    """Simulate a contract-conformant dataset (see module docstring for the model).

    Parameters
    ----------
    config : SimulationConfig
    rng : numpy.random.Generator, optional
        Random stream for the scan and the noise; default ``default_rng(config.seed)``.

    Returns
    -------
    Dataset
        Amplitudes, positions, the dose-scaled probe, the ground-truth object and patches
        ``Y``, and metadata recording the nominal and the measured dose, the seed, the forward
        model and the settings.
    """
    config.validate()
    rng = np.random.default_rng(config.seed) if rng is None else rng
    obj, record = _object_and_record(config)
    positions = make_scan(config, rng)
    return _simulate(config, obj, positions, rng, record)


def _simulate(config: SimulationConfig, obj, positions, rng: np.random.Generator, object_record: dict) -> Dataset:
    """Diffraction of ``obj`` at ``positions`` under the probe and dose of ``config``."""
    probe = make_probe(config)
    expected_counts = _unit_intensities(obj, probe, positions)
    # Scale the probe so the expected counts average `dose` per pattern.
    scale = config.dose / expected_counts.sum(axis=(1, 2)).mean()
    probe = probe * np.sqrt(scale)
    expected_counts *= scale
    amplitude, counts_per_pattern = _counts_to_amplitude(expected_counts, rng, config.poisson_noise)
    del expected_counts
    metadata = {
        "generator": "compare_models.simulate",
        "version": __version__,
        "seed": config.seed,
        "dose_nominal": float(config.dose),
        "dose_measured": float(counts_per_pattern.mean()),
        "config": config.to_dict(),
        "object": object_record,
        "forward_model": FORWARD_MODEL,
    }
    if config.pixel_size_m is not None:
        metadata["pixel_size_m"] = config.pixel_size_m
    return Dataset(
        diffraction_amplitude=amplitude,
        positions_xy=positions,
        probe=probe.astype(np.complex64),
        object_truth=obj,
        patches_truth=_patches_truth(obj, positions, config.patch_size),
        scan_index=np.zeros(positions.shape[0], dtype=np.int64),
        metadata=metadata,
    )


def simulate_generated_objects(config: SimulationConfig, rng: np.random.Generator) -> Dataset:
    """A training set of ``config.n_train_objects`` generated objects (``config.train_objects``).

    Each object (side ``train_object_size``, :func:`compare_models.study.objects.random_object`)
    is scanned on its own with the scan settings of ``config`` (positions within the object, so
    no patch reads two objects); the objects sit side by side in one ``objectGuess``
    (:func:`compare_models.study.objects.mosaic`) and the positions are in its pixels. Probe,
    dose and noise are those of ``config``; the metadata's ``object`` records every object's
    families, feature size and place.
    """
    size = config.resolved_train_object_size
    tile_config = dataclasses.replace(config, object_size=size)
    tiles, infos, scans = [], [], []
    for _ in range(config.n_train_objects):
        tile, info = object_families.random_object(
            config.train_objects, size, config.resolved_train_feature_size, rng,
            amplitude_range=(config.amplitude_min, config.amplitude_max),
            phase_range=config.resolved_train_phase_range,
        )
        tiles.append(tile)
        infos.append(info)
        scans.append(make_scan(tile_config, rng))
    canvas, origins = object_families.mosaic(tiles, fill=config.amplitude_max)
    positions = np.concatenate([scan + origin[::-1] for scan, origin in zip(scans, origins, strict=True)])
    record = {
        "family": config.train_objects,
        "n_objects": config.n_train_objects,
        "size": size,
        "feature_size_px": config.resolved_train_feature_size,
        "phase_range": list(config.resolved_train_phase_range),
        "amplitude_range": [config.amplitude_min, config.amplitude_max],
        "objects": [
            {**info, "origin_row_col": [int(r), int(c)], "n_positions": int(len(scan))}
            for info, (r, c), scan in zip(infos, origins, scans, strict=True)
        ],
    }
    return _simulate(config, canvas, positions, rng, record)


def training_config(config: SimulationConfig) -> SimulationConfig:
    """The settings of the training set of ``split="objects"``: the other object's images and
    size; everything else (probe, scan, dose) as in ``config``."""
    return dataclasses.replace(
        config,
        split=None,
        object_family="images",  # never the test object's generator and stream
        amplitude_image=config.train_amplitude_image,
        phase_image=config.train_phase_image,
        object_size=config.resolved_train_object_size,
        seed=config.seed if config.train_seed is None else config.train_seed,
    )


def simulate_split(config: SimulationConfig) -> tuple[Dataset, Dataset]:
    """(train, test) datasets per ``config.split`` ("objects" or "y"; module docstring).

    With ``"objects"`` the test set is :func:`simulate_dataset` of ``config`` and the training
    set that of :func:`training_config` (``train_objects="images"``) or
    :func:`simulate_generated_objects` (generated objects), drawn from a random stream of its
    own (seeded by ``train_seed``, or by ``(seed, 1)`` when that is unset, so it never repeats
    a test stream).
    """
    config.validate()
    if config.split == "y":
        return split_dataset_by_row(simulate_dataset(config))
    if config.split != "objects":
        raise ConfigError(f"simulate_split needs split 'y' or 'objects', got {config.split!r}")
    test = simulate_dataset(config)
    train_settings = training_config(config)
    seed = [config.seed, 1] if config.train_seed is None else config.train_seed
    if config.train_objects == "images":
        train = simulate_dataset(train_settings, rng=np.random.default_rng(seed))
    else:
        train = simulate_generated_objects(train_settings, np.random.default_rng(seed))
    train.metadata["random_seed"] = seed  # what numpy.random.default_rng was given
    for role, part, settings in (("train", train, train_settings), ("test", test, config)):
        part.metadata.update(split=role, split_mode="objects")
        part.metadata["object"]["role"] = role
        part.metadata["config"] = settings.to_dict()
    return train, test


def split_dataset_by_row(dataset: Dataset) -> tuple[Dataset, Dataset]:
    """Split into (train, test) at the middle row, with a guard band of N between the halves.

    With the middle row ``c = H // 2``, training positions have ``y <= c - N/2`` and test
    positions ``y >= c + N/2``; those in between are dropped. A patch reads object rows
    ``floor(y - N/2) .. ceil(y + N/2) - 1`` at most (its integer crop, or a bilinear cut), so
    every training patch lies above row c and every test patch from row c down: no test patch
    pixel is under a training patch.

    Both halves keep the whole ground-truth object, so each is a complete dataset. The measured
    dose is recomputed for each half.

    Raises
    ------
    ValueError
        Without a ground-truth object, or when a half holds no position.
    """
    if dataset.object_truth is None:
        raise ValueError("splitting by row needs the ground-truth object")
    middle = dataset.object_truth.shape[0] // 2
    half = dataset.patch_size / 2
    y = dataset.positions_xy[:, 1]
    halves = []
    for name, mask in (("train", y <= middle - half), ("test", y >= middle + half)):
        if not mask.any():
            raise ValueError(
                f"the {name} half of the scan holds no positions (a guard band of N = "
                f"{dataset.patch_size} rows of positions around row {middle} is left out)"
            )
        part = dataset.subset(np.flatnonzero(mask))
        part.metadata.update(
            split=name,
            split_mode="y",
            split_axis="y",
            split_guard_px=float(dataset.patch_size),
            dose_measured=part.measured_dose,
        )
        halves.append(part)
    return halves[0], halves[1]
