"""Synthetic ptychography datasets at a chosen photon dose.

Forward model and normalisation
-------------------------------
For a scan position with object patch ``O_k`` (N x N, cut as in :mod:`compare_models.imaging.geometry`)
and probe ``P``, the far-field wave is

    Psi_k = fftshift(fft2(P * O_k, norm="ortho"))

so that Parseval holds exactly: ``sum |Psi_k|^2 == sum |P * O_k|^2``; zero frequency sits at
pixel (N/2, N/2). The probe is scaled so that the expected counts ``|Psi_k|^2`` average
``dose`` photons per pattern, then counts are drawn from a Poisson law and the stored
diffraction is their square root (amplitudes, float32). Because the scale is folded into the
probe, ``|Psi_k|`` computed from the stored ``probeGuess`` and the true object is the noiseless
amplitude: the physics in :mod:`compare_models.models.physics` uses the same expression.

The object's amplitude and phase come from images that scikit-image ships (``skimage.data``),
so nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .. import __version__
from ..errors import ConfigError
from ..imaging.geometry import extract_patches
from ..io.dataset import Dataset

__all__ = [
    "SimulationConfig",
    "make_object",
    "make_probe",
    "make_scan",
    "far_field_amplitude",
    "simulate_dataset",
    "split_dataset_by_row",
]

# Images that ship inside scikit-image (no download), grey-scaled on load.
_SHIPPED_IMAGES = ("camera", "astronaut", "coins", "moon", "text", "brick", "grass", "gravel", "page", "clock", "cell")


@dataclass(frozen=True)
class SimulationConfig:
    """Settings of ``ptycho-study simulate``; validated by :meth:`validate`.

    Lengths are in object pixels, phases in radians, the dose in photons per pattern.
    """

    patch_size: int = 64
    object_size: int = 256
    amplitude_image: str = "camera"
    phase_image: str = "moon"
    amplitude_min: float = 0.4
    amplitude_max: float = 1.0
    phase_min: float = -1.0
    phase_max: float = 1.0
    probe_shape: str = "disc"  # "disc" or "gaussian"
    probe_radius: float | None = None  # disc radius or Gaussian sigma; default N/4
    probe_defocus_phase: float = 3.0  # quadratic phase at the disc edge, rad
    scan: str = "grid"  # "grid", "jittered" or "random"
    scan_step: float | None = None  # grid step; default derived from overlap
    overlap: float = 0.75  # 1 - step / probe diameter, used when scan_step is None
    jitter: float = 1.0  # std of the jitter, pixels (scan="jittered")
    n_random_positions: int | None = None  # scan="random"; default: as many as the grid
    dose: float = 1e4
    poisson_noise: bool = True
    seed: int = 0
    pixel_size_m: float | None = None

    def validate(self) -> SimulationConfig:
        """Raise :class:`ConfigError` naming the first invalid setting; return self."""
        if self.patch_size < 8 or self.patch_size % 2:
            raise ConfigError(f"patch_size must be an even integer >= 8, got {self.patch_size}")
        if self.object_size < self.patch_size + 2:
            raise ConfigError(
                f"object_size ({self.object_size}) must exceed patch_size ({self.patch_size}) by 2"
            )
        for name in ("amplitude_image", "phase_image"):
            if getattr(self, name) not in _SHIPPED_IMAGES:
                raise ConfigError(f"{name} must be one of {', '.join(_SHIPPED_IMAGES)}")
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


def make_object(config: SimulationConfig) -> np.ndarray:
    """Complex object (object_size, object_size), complex64: amplitude and phase from two images."""
    size = config.object_size
    amplitude = config.amplitude_min + (config.amplitude_max - config.amplitude_min) * _grey_image(
        config.amplitude_image, size
    )
    phase = config.phase_min + (config.phase_max - config.phase_min) * _grey_image(
        config.phase_image, size
    )
    return (amplitude * np.exp(1j * phase)).astype(np.complex64)


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
    """Scan positions (M, 2) float64 (x, y) keeping every patch, with its interpolation
    neighbour, inside the object."""
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


def far_field_amplitude(exit_waves) -> np.ndarray:
    """``|fftshift(fft2(exit_waves, norm="ortho"))|`` over the last two axes (float64)."""
    spectrum = np.fft.fftshift(np.fft.fft2(exit_waves, norm="ortho"), axes=(-2, -1))
    return np.abs(spectrum)


def simulate_dataset(config: SimulationConfig) -> Dataset:
    """Simulate a contract-conformant dataset (see module docstring for the model).

    Returns
    -------
    Dataset
        Amplitudes, positions, the dose-scaled probe, the ground-truth object and patches, and
        metadata recording the nominal and the measured dose, the seed and the settings.
    """
    config.validate()
    rng = np.random.default_rng(config.seed)
    obj = make_object(config)
    probe = make_probe(config)
    positions = make_scan(config, rng)
    patches = extract_patches(obj, positions, config.patch_size)
    # Scale the probe so the expected counts average `dose` per pattern.
    intensity_unit = far_field_amplitude(probe * patches) ** 2
    scale = config.dose / intensity_unit.sum(axis=(1, 2)).mean()
    probe = probe * np.sqrt(scale)
    expected_counts = intensity_unit * scale
    if config.poisson_noise:
        counts = rng.poisson(expected_counts).astype(np.float64)
    else:
        counts = expected_counts
    amplitude = np.sqrt(counts).astype(np.float32)
    metadata = {
        "generator": "compare_models.simulate",
        "version": __version__,
        "seed": config.seed,
        "dose_nominal": float(config.dose),
        "dose_measured": float(counts.sum(axis=(1, 2)).mean()),
        "config": config.to_dict(),
        "forward_model": "amplitude = |fftshift(fft2(probe * patch, norm='ortho'))|",
    }
    if config.pixel_size_m is not None:
        metadata["pixel_size_m"] = config.pixel_size_m
    return Dataset(
        diffraction_amplitude=amplitude,
        positions_xy=positions,
        probe=probe.astype(np.complex64),
        object_truth=obj,
        patches_truth=patches.astype(np.complex64),
        scan_index=np.zeros(positions.shape[0], dtype=np.int64),
        metadata=metadata,
    )


def split_dataset_by_row(dataset: Dataset) -> tuple[Dataset, Dataset]:
    """Split into (train, test): scan positions in the top and bottom halves of the object.

    Both halves keep the whole ground-truth object, so each is a complete dataset; no scan
    position appears in both. The measured dose is recomputed for each half.
    """
    if dataset.object_truth is None:
        raise ValueError("splitting by row needs the ground-truth object")
    middle = dataset.object_truth.shape[0] / 2
    in_top = dataset.positions_xy[:, 1] < middle
    halves = []
    for name, mask in (("train", in_top), ("test", ~in_top)):
        if not mask.any():
            raise ValueError(f"the {name} half of the scan holds no positions")
        part = dataset.subset(np.flatnonzero(mask))
        part.metadata.update(
            split=name,
            split_axis="y",
            dose_measured=part.measured_dose,
        )
        halves.append(part)
    return halves[0], halves[1]
