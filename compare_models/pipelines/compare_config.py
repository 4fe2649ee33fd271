"""Settings of one compare-models run: :class:`CompareConfig` and the stitching crop it implies."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from types import MappingProxyType

from ..errors import ConfigError

__all__ = ["CompareConfig", "resolve_crop", "scoring_rules_for", "PHASE_ALIGN_METHODS", "RETIRED_PHASE_ALIGN_METHODS", "DEFAULT_CROP"]

PHASE_ALIGN_METHODS = ("ramp", "offset")
# Gauges of the existing tool that DESIGN.md ("A fair comparison") rules out.
RETIRED_PHASE_ALIGN_METHODS = MappingProxyType(
    {
        "plane": "it removed a plane from each image's phase separately",
        "mean": "it subtracted each image's own mean phase and scaled by the ratio of mean amplitudes",
        "none": "it fitted one complex factor, whose modulus shrinks with phase noise",
    }
)
DEFAULT_CROP = 20  # the existing tool's --stitch-crop-size


def resolve_crop(config, patch_size: int) -> int:
    """The stitching crop M for patches of side N: the explicit setting, which must satisfy
    0 < M <= N, or the default min(20, N)."""
    if config.stitch_crop_size is None:
        return min(DEFAULT_CROP, patch_size)
    if not 0 < config.stitch_crop_size <= patch_size:
        raise ConfigError(
            f"--stitch-crop-size {config.stitch_crop_size} is outside (0, N] for patches of N = {patch_size}"
        )
    return config.stitch_crop_size


@dataclass(frozen=True)
class CompareConfig:
    """Settings of one ``compare-models`` run (flags documented in ``compare-models --help``)."""

    test_data: str
    output_dir: str
    pinn_dir: str | None = None
    baseline_dir: str | None = None
    ptychi_recon_path: str | None = None
    stitch_crop_size: int | None = None  # None: DEFAULT_CROP, or N when N is smaller
    skip_registration: bool = False
    register_ptychi_only: bool = False
    phase_align_method: str = "ramp"
    registration_on: str = "complex"
    max_shift_px: float = 16.0
    region_margin_px: int = 2  # imaging.region.DEFAULT_MARGIN_PX
    ms_ssim_sigma: float | None = None
    frc_sigma: float | None = None
    pixel_size_m: float | None = None
    n_test_subsample: int | None = None
    test_subsample_seed: int = 0
    pinn_predict_batch_size: int = 32
    baseline_predict_batch_size: int = 32
    pinn_chunk_size: int = 1024
    baseline_chunk_size: int = 1024
    stitch_chunk_size: int = 512
    # How a patch is moved by its sub-pixel residual before its crop is added: "fourier" (the
    # simulator's and pty-chi's model, exact for the recorded patches) or "bilinear" (what
    # PtychoPINN's stitching does, to reproduce its images).
    stitch_interpolation: str = "fourier"
    # XLA for the networks (models.inference.JIT_MODES): "auto" compiles and falls back to a
    # plain tf.function, with a warning, for a network XLA cannot compile.
    predict_xla: str = "auto"
    # The Keras backend of the networks and the device (models.backend; chosen at start-up,
    # before Keras is imported): None = the machine's default, resolved and recorded by the CLI.
    # PtychoPINN's PyTorch models run on torch whatever the backend, on the same device choice
    # (models.ptychopinn_torch.device: "auto" is CUDA when torch sees a GPU; "cuda" = "gpu").
    backend: str | None = None
    device: str = "auto"
    overwrite: bool = False
    progress: bool = True
    # Half-set FRC for every arm (compare_halfsets): None (the default) computes it for every
    # arm whose halves cover enough of the scan and says why for the others; True requires it
    # (a half that leaves too little is an error); False turns it off.
    half_sets: bool | None = None
    half_set_split: str = "checkerboard"  # imaging.halfsets.SPLIT_METHODS
    ptychi_half_sets: str | None = None  # a directory with ptychi_half1.npz, ptychi_half2.npz
    ptychi_half_set_paths: tuple[str, str] | None = None  # the two files
    min_half_set_coverage: float = 0.9  # compare_halfsets.DEFAULT_MIN_COVERAGE
    command_line: tuple[str, ...] = field(default_factory=tuple)

    def validate(self) -> CompareConfig:
        if not (self.pinn_dir or self.baseline_dir or self.ptychi_recon_path):
            raise ConfigError(
                "nothing to compare: give at least one of --pinn_dir, --baseline_dir, --ptychi_recon_path"
            )
        if self.stitch_interpolation not in ("fourier", "bilinear"):
            raise ConfigError(
                f"--stitch-interpolation must be 'fourier' or 'bilinear', got {self.stitch_interpolation!r}"
            )
        if self.predict_xla not in ("auto", "on", "off"):
            raise ConfigError(f"--predict-xla must be auto, on or off, got {self.predict_xla!r}")
        if self.device not in ("auto", "cpu", "gpu", "cuda"):
            raise ConfigError(f"--device must be auto, cpu or gpu (or cuda), got {self.device!r}")
        if self.stitch_crop_size is not None and self.stitch_crop_size < 1:
            raise ConfigError(f"--stitch-crop-size must be > 0, got {self.stitch_crop_size}")
        if self.phase_align_method in RETIRED_PHASE_ALIGN_METHODS:
            raise ConfigError(
                f"--phase-align-method {self.phase_align_method} is retired: "
                f"{RETIRED_PHASE_ALIGN_METHODS[self.phase_align_method]} (see "
                "docs/how-the-numbers-are-made.md); use ramp (phase offset and linear ramp, "
                "the default) or offset"
            )
        if self.phase_align_method not in PHASE_ALIGN_METHODS:
            raise ConfigError(
                f"--phase-align-method must be one of {', '.join(PHASE_ALIGN_METHODS)}, got {self.phase_align_method!r}"
            )
        if self.registration_on not in ("complex", "amplitude"):
            raise ConfigError("registration_on must be 'complex' or 'amplitude'")
        if self.skip_registration and self.register_ptychi_only:
            raise ConfigError("--skip-registration and --register-ptychi-only exclude each other")
        for name in ("pinn_predict_batch_size", "baseline_predict_batch_size", "pinn_chunk_size", "baseline_chunk_size", "stitch_chunk_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.n_test_subsample is not None and self.n_test_subsample < 1:
            raise ConfigError(f"--n-test-subsample must be >= 1, got {self.n_test_subsample}")
        if (self.ms_ssim_sigma is not None and self.ms_ssim_sigma < 0) or (
            self.frc_sigma is not None and self.frc_sigma < 0
        ):
            raise ConfigError("--ms-ssim-sigma and --frc-sigma must be >= 0")
        if int(self.region_margin_px) != self.region_margin_px or self.region_margin_px < 0:
            raise ConfigError(f"--region-margin must be a whole number of pixels >= 0, got {self.region_margin_px}")
        if self.pixel_size_m is not None and not self.pixel_size_m > 0:
            raise ConfigError(f"--pixel-size must be > 0 metres, got {self.pixel_size_m}")
        if self.max_shift_px <= 0:
            raise ConfigError("max_shift_px must be > 0")
        from ..imaging.halfsets import SPLIT_METHODS

        if self.half_set_split not in SPLIT_METHODS:
            raise ConfigError(
                f"--half-set-split must be one of {', '.join(SPLIT_METHODS)}, got {self.half_set_split!r}"
            )
        if not 0 < self.min_half_set_coverage <= 1:
            raise ConfigError(f"--min-half-set-coverage must be in (0, 1], got {self.min_half_set_coverage}")
        if self.ptychi_half_set_paths is not None and len(self.ptychi_half_set_paths) != 2:
            raise ConfigError("--ptychi-half-set-paths takes two files: half 1 and half 2")
        if self.ptychi_half_sets and self.ptychi_half_set_paths:
            raise ConfigError("--ptychi-half-sets and --ptychi-half-set-paths exclude each other")
        if (self.ptychi_half_sets or self.ptychi_half_set_paths) and not self.ptychi_recon_path:
            raise ConfigError("pty-chi half sets need the full reconstruction too: give --ptychi_recon_path")
        return self

    @property
    def half_sets_enabled(self) -> bool:
        """Half-set FRC is on unless ``--no-half-sets`` (``half_sets`` False)."""
        return self.half_sets is not False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def scoring_rules_for(kind: str, config: CompareConfig, pixel_size_m=None):
    """The :class:`~compare_models.imaging.scoring.ScoringRules` of a run's settings, for
    scoring against the truth (``"ground_truth"``) or half 2 against half 1 (``"half_set"``)."""
    from ..imaging.scoring import ScoringRules

    return ScoringRules(
        kind, max_shift_px=config.max_shift_px, correlate_on=config.registration_on,
        margin_px=config.region_margin_px, phase_align=config.phase_align_method,
        ms_ssim_sigma=config.ms_ssim_sigma if kind == "ground_truth" else None,
        frc_sigma=config.frc_sigma, pixel_size_m=pixel_size_m,
    ).validate()
