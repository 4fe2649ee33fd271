"""Settings of one compare-models run: :class:`CompareConfig` and the stitching crop it implies."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from types import MappingProxyType

from ..config import setting
from ..errors import ConfigError

__all__ = ["CompareConfig", "resolve_crop", "scoring_rules_for", "PHASE_ALIGN_METHODS", "RETIRED_PHASE_ALIGN_METHODS", "DEFAULT_CROP"]

PHASE_ALIGN_METHODS = ("ramp", "offset")
# Gauges of the existing tool that docs/design.md ("A fair comparison") rules out.
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
    """Settings of one ``compare-models`` run (and of a sweep's compare step).

    Each field states its default and its help once (:func:`compare_models.config.setting`);
    ``compare-models --help`` lists them, a ``--config`` file (or a sweep's ``compare``
    section) takes the same keys, and PtychoPINN's underscore spellings are hidden aliases.
    """

    test_data: str = setting(help="Test dataset: the NPZ contract, a ptychodus pair or a CXI file (by content).",
                             aliases=("--test_data",))
    output_dir: str = setting(help="Where the comparison is written.", aliases=("--output_dir",))
    pinn_dir: str | None = setting(
        None, "PINN arm: a compare-models bundle (bundle.json), a PtychoPINN wts.h5.zip or its directory, or a "
        "baseline_model.h5 or a directory with one below it; recognised by content.",
        aliases=("--pinn_dir",), default_text="no PINN arm",
    )
    baseline_dir: str | None = setting(
        None, "Baseline arm: every model --pinn-dir takes (a PINN bundle may be the baseline).",
        aliases=("--baseline_dir",), default_text="no baseline arm",
    )
    ptychi_recon_path: str | None = setting(
        None, "Iterative reconstruction NPZ: this project's ptychi_reconstruction.npz (placed by its recorded "
        "frame), PtychoPINN's (placed by its script's rule) or another writer's (registered).",
        aliases=("--ptychi_recon_path", "--tike_recon_path", "--tike-recon-path"), default_text="no pty-chi arm",
    )
    stitch_crop_size: int | None = setting(
        None, "Keep the central M x M of each patch when stitching, 0 < M <= N.", aliases=("--stitch_crop_size",),
        default_text=f"{DEFAULT_CROP}, or N if smaller",
    )
    skip_registration: bool = setting(False, "Estimate no shifts (the gauge is still fitted).",
                                      aliases=("--skip_registration",))
    register_ptychi_only: bool = setting(
        False, "Estimate a shift for pty-chi only; the networks are stitched in the ground-truth frame already.",
        aliases=("--register_ptychi_only",),
    )
    phase_align_method: str = setting(
        "ramp", "Phase gauge, fitted to the amplitude-weighted phase difference: global offset and linear ramp "
        "(ramp) or offset only (offset); the amplitude scale is always fitted to the amplitudes alone. The "
        "existing tool's plane, mean and none are retired (docs/how-the-numbers-are-made.md).",
        aliases=("--phase_align_method",), metavar="[ramp|offset]",
    )
    registration_on: str = setting("complex", "Field used for phase correlation.", choices=("complex", "amplitude"),
                                   aliases=("--registration_on",))
    max_shift_px: float = setting(16.0, "Largest registration shift accepted, pixels; larger is an error.",
                                  flag="--max-shift", aliases=("--max_shift",))
    region_margin_px: int = setting(
        2, "Pixels eroded from the scored region beyond the largest registration shift.", flag="--region-margin",
        aliases=("--region_margin", "--region-erode"),
    )  # imaging.region.DEFAULT_MARGIN_PX
    ms_ssim_sigma: float | None = setting(
        None, "Gaussian blur (pixels) of amplitude and phase before MS-SSIM.", aliases=("--ms_ssim_sigma",),
        default_text="none, as Wang et al. 2003",
    )
    frc_sigma: float | None = setting(None, "Gaussian smoothing of the FRC curve, in rings.", aliases=("--frc_sigma",))
    pixel_size_m: float | None = setting(
        None, "Object pixel size in metres (FRC resolution in metres).", flag="--pixel-size",
        aliases=("--pixel_size",), default_text="the data's",
    )
    n_test_subsample: int | None = setting(None, "Use a random subset of this many positions.",
                                           aliases=("--n_test_subsample",), default_text="every position")
    test_subsample_seed: int = setting(0, "Seed of --n-test-subsample's draw.", aliases=("--test_subsample_seed",))
    pinn_predict_batch_size: int = setting(32, "PINN groups per inference batch.", aliases=("--pinn_predict_batch_size",))
    baseline_predict_batch_size: int = setting(32, "Baseline patterns per inference batch.",
                                               aliases=("--baseline_predict_batch_size",))
    pinn_chunk_size: int = setting(1024, "Positions per PINN inference chunk (memory bound).",
                                   aliases=("--pinn_chunk_size",))
    baseline_chunk_size: int = setting(1024, "Positions per baseline inference chunk (memory bound).",
                                       aliases=("--baseline_chunk_size",))
    stitch_chunk_size: int = setting(512, "Patches per compiled stitching call.", aliases=("--stitch_chunk_size",))
    stitch_interpolation: str = setting(
        "fourier", "How each patch is moved by its sub-pixel residual before its central crop is added: fourier "
        "(the simulator's and pty-chi's model: stitching the recorded ground-truth patches gives the object back) "
        "or bilinear (as PtychoPINN's stitching does, to reproduce its images).",
        choices=("fourier", "bilinear"), aliases=("--stitch_interpolation",),
    )
    predict_xla: str = setting(
        "auto", "XLA-compile each network together with its stitching (auto: fall back to a plain tf.function, "
        "with a warning, when XLA cannot compile a network).", choices=("auto", "on", "off"),
        aliases=("--predict_xla",),
    )  # models.inference.JIT_MODES
    backend: str | None = setting(
        None, "Keras backend that runs the networks and stitches their patches, chosen once at start-up and "
        "recorded in provenance.json (PtychoPINN's PyTorch models run on torch whatever it is).",
        choices=("tensorflow", "jax", "torch"),
        default_text="tensorflow; jax on a machine with an NVIDIA GPU where JAX's CUDA build is installed",
    )  # models.backend
    device: str = setting(
        "auto", "auto: the GPU when the backend sees one; gpu (or cuda): an error when it sees none; cpu: the "
        "GPUs are hidden. PtychoPINN's PyTorch models run on the same choice.", choices=("auto", "cpu", "gpu", "cuda"),
    )
    overwrite: bool = setting(False, "Replace an existing output directory.")
    progress: bool = setting(True, "Progress bars.", cli=False)  # the CLI's --progress/--quiet
    half_sets: bool | None = setting(
        None, "Half-set FRC for every arm: two images from two disjoint halves of the scan (networks: from the "
        "same model; pty-chi: from --ptychi-half-sets), registered to each other and correlated; needs no ground "
        "truth. --half-sets requires it for every arm (an error otherwise); --no-half-sets turns it off.",
        flag="--half-sets/--no-half-sets",
        default_text="computed for every arm whose halves cover enough of the scan, the others named with the "
        "reason and the fix",
    )
    half_set_split: str = setting(
        "checkerboard", "How the scan is split into halves: a checkerboard of the scan grid, or alternating "
        "positions along the scan path.", choices=("checkerboard", "alternate"),
    )  # imaging.halfsets.SPLIT_METHODS
    ptychi_half_sets: str | None = setting(
        None, "Directory with the pty-chi half-set reconstructions ptychi_half1.npz and ptychi_half2.npz (or a "
        "reconstruct output directory with them in half_sets/).",
        default_text="half_sets/ beside --ptychi-recon-path when ptycho-study reconstruct --half-sets wrote it",
    )
    ptychi_half_set_paths: tuple[str, str] | None = setting(
        None, "The two pty-chi half-set reconstruction files, half 1 then half 2.", metavar="HALF1 HALF2",
        default_text="none",
    )
    min_half_set_coverage: float = setting(
        0.9, "Fraction of the scan's hull that both halves of an arm must cover for its half-set FRC; below it "
        "that arm gets none (with --half-sets, or without ground truth, the run stops) and the message names "
        "the fix (a larger --stitch-crop-size or a denser scan).",
    )  # compare_halfsets.DEFAULT_MIN_COVERAGE
    command_line: tuple[str, ...] = setting(help="The command line, for provenance.", cli=False,
                                            default_factory=tuple)

    def validate(self) -> CompareConfig:
        if not (self.pinn_dir or self.baseline_dir or self.ptychi_recon_path):
            raise ConfigError(
                "nothing to compare: give at least one of --pinn-dir, --baseline-dir, --ptychi-recon-path"
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
