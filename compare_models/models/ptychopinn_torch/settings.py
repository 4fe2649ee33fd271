"""The settings of a PyTorch-backend bundle that inference depends on, validated.

PtychoPINN rebuilds the network from the ``model_config`` and ``data_config`` dictionaries of
``torch_scaling_metadata.pt``; bundles without that member are read from the flat
``params.dill`` with PtychoPINN's defaults for what it does not hold. Only the settings below
change the inference forward pass; each value this project does not implement is refused by
name, with the supported ones.

Generators
----------
``cnn`` (PtychoPINN's default): an encoder of conv-conv-CBAM-maxpool blocks and two decoders
(amplitude, phase), each with up-blocks and a last stage whose centre comes from ``conv1`` and
whose border comes from a separate up-sampled path (:mod:`.cnn`). ``ffno``: a factorised
Fourier neural operator at constant resolution (:mod:`.ffno`).

Scaling mode
------------
Only ``amplitude`` physics with a fixed intensity scale is run: the network's input is
``f * amplitude`` with ``f = sqrt((N/2)² / mean over patterns of sum amp²)``, the factor
PtychoPINN computes from the test data (:mod:`.inputs`); the bundle's ``intensity_scale`` is a
training quantity (the Poisson loss) and is not applied. Refused: ``physics_forward_mode =
'rectangular_scaled'`` (PtychoPINN's count-intensity contract, whose inference needs its
probe-weighted VarPro stitching), a trainable intensity scale (the input would be multiplied by
``model_config.intensity_scale`` instead), and a state_dict with ``log_scale_delta`` (its
``parity_scale_mode``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ..ptychopinn.archive import PtychoPINNFormatError

__all__ = [
    "GENERATORS",
    "SCALING_MODES",
    "FFNO_OUTPUT_MODES",
    "FFNO_INPUT_TRANSFORMS",
    "TorchPinnSettings",
    "settings_from_bundle",
]

#: Generators whose inference forward pass this project implements.
GENERATORS = ("cnn", "ffno")
#: Scaling modes run here (module docstring).
SCALING_MODES = ("amplitude",)
FFNO_OUTPUT_MODES = ("real_imag", "amp_phase", "amp_phase_logits")
FFNO_INPUT_TRANSFORMS = ("none", "sqrt", "log1p", "instancenorm")
#: N the CNN's encoder and decoders are defined for (PtychoPINN's filter tables).
CNN_PATCH_SIZES = (64, 128, 256)

# The CNN options that change its graph, and the value this project implements.
_CNN_FIXED = MappingProxyType({
    "cnn_output_mode": "amp_phase",
    "use_shared_decoder": False,
    "batch_norm": False,
    "eca_encoder": False,
    "cbam_bottleneck": False,
    "object_big": True,
    "use_legacy_decoder_channel_override": False,
})
# PtychoPINN's ModelConfig defaults for what an old params.dill may not hold.
_MODEL_DEFAULTS = MappingProxyType({
    "mode": "Unsupervised", "architecture": "cnn", "n_filters_scale": 2, "amp_activation": "silu",
    "cbam_encoder": True, "probe_big": True, "fno_modes": 12, "fno_width": 32, "fno_blocks": 4,
    "fno_cnn_blocks": 2, "learned_input_channels": 1, "fno_input_transform": "none",
    "generator_output_mode": "real_imag", "physics_forward_mode": "amplitude",
    "intensity_scale_trainable": False, **_CNN_FIXED,
})
# params.dill's flat keys -> ModelConfig names.
_PARAMS_ALIASES = MappingProxyType({"object.big": "object_big", "probe.big": "probe_big"})


@dataclass(frozen=True)
class TorchPinnSettings:
    """What the inference forward pass of a PyTorch-backend bundle depends on.

    Attributes
    ----------
    architecture : {"cnn", "ffno"}
    patch_size : int
        N.
    gridsize : int
        g; the network sees C = g² patterns, channel c = group member c.
    channels : int
        C.
    n_filters_scale : int
        CNN width factor (encoder filters 32·s, 64·s, 128·s for N = 64).
    amp_activation : str
        CNN amplitude activation: ``"sigmoid"``, else SiLU (as PtychoPINN).
    cbam_encoder : bool
        CNN encoder blocks end with CBAM attention.
    probe_big : bool
        CNN last stage adds the border path.
    fno_width, fno_blocks, fno_modes, fno_cnn_blocks : int
        FFNO hidden channels, spectral blocks, Fourier modes kept per axis, residual refiners.
    fno_input_transform : str
        FFNO input transform before lifting.
    generator_output_mode : str
        FFNO head: ``real_imag`` (default), ``amp_phase`` or ``amp_phase_logits``.
    scaling_mode : str
        ``"amplitude"``: input × the per-dataset RMS factor (module docstring).
    intensity_scale : float or None
        ``params.dill``'s ``intensity_scale`` (training only; recorded, never applied).
    settings_from : str
        The member the settings were read from.
    """

    architecture: str
    patch_size: int
    gridsize: int
    channels: int
    n_filters_scale: int = 2
    amp_activation: str = "silu"
    cbam_encoder: bool = True
    probe_big: bool = True
    fno_width: int = 32
    fno_blocks: int = 4
    fno_modes: int = 12
    fno_cnn_blocks: int = 2
    fno_input_transform: str = "none"
    generator_output_mode: str = "real_imag"
    scaling_mode: str = "amplitude"
    intensity_scale: float | None = None
    settings_from: str = ""

    def validate(self, source: str = "") -> TorchPinnSettings:
        """Raise :class:`PtychoPINNFormatError` naming a value that is not supported."""
        where = f"{source}: " if source else ""
        if self.architecture not in GENERATORS:
            raise PtychoPINNFormatError(
                f"{where}generator '{self.architecture}' is not supported; supported generators: "
                f"{', '.join(GENERATORS)}"
            )
        if self.scaling_mode not in SCALING_MODES:
            raise PtychoPINNFormatError(
                f"{where}scaling mode '{self.scaling_mode}' is not supported; supported: "
                f"{', '.join(SCALING_MODES)} (input × sqrt((N/2)² / mean Σ amp²), intensity_scale not applied)"
            )
        if self.gridsize < 1 or self.channels != self.gridsize**2:
            raise PtychoPINNFormatError(f"{where}C = {self.channels} channels for gridsize {self.gridsize}; "
                                        "expected C = gridsize²")
        if self.patch_size < 8 or self.patch_size % 4:
            raise PtychoPINNFormatError(f"{where}N = {self.patch_size} is not supported (a multiple of 4, >= 8)")
        if self.architecture == "cnn" and self.patch_size not in CNN_PATCH_SIZES:
            raise PtychoPINNFormatError(f"{where}the cnn generator is defined for N in {CNN_PATCH_SIZES}, "
                                        f"got N = {self.patch_size}")
        if self.architecture == "ffno":
            if self.generator_output_mode not in FFNO_OUTPUT_MODES:
                raise PtychoPINNFormatError(
                    f"{where}ffno output mode '{self.generator_output_mode}' is not supported; supported: "
                    f"{', '.join(FFNO_OUTPUT_MODES)}"
                )
            if self.fno_input_transform not in FFNO_INPUT_TRANSFORMS:
                raise PtychoPINNFormatError(
                    f"{where}ffno input transform '{self.fno_input_transform}' is not supported; supported: "
                    f"{', '.join(FFNO_INPUT_TRANSFORMS)}"
                )
        return self

    @property
    def generator(self) -> str:
        """The generator, as logs name it."""
        return self.architecture

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _refuse(source: str, what: str, value, supported) -> PtychoPINNFormatError:
    return PtychoPINNFormatError(f"{source}: {what} {value!r} is not supported; supported: {supported}")


def _scaling_mode(model_config: Mapping, state_dict_keys, source: str) -> str:
    physics = model_config.get("physics_forward_mode", "amplitude")
    if physics != "amplitude":
        return f"{physics} (physics_forward_mode)"
    if model_config.get("intensity_scale_trainable", False):
        return "trainable intensity scale (intensity_scale_trainable)"
    if any(key == "log_scale_delta" or key.endswith(".log_scale_delta") for key in state_dict_keys):
        return "parity scale (log_scale_delta in the state_dict)"
    return "amplitude"


def _int(value, source: str, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
        raise PtychoPINNFormatError(f"{source}: setting {name} = {value!r} is not an integer")
    return int(value)


def settings_from_bundle(files) -> TorchPinnSettings:
    """The validated settings of a :class:`~.archive.TorchBundleFiles`.

    Raises
    ------
    PtychoPINNFormatError
        An unsupported generator, scaling mode or generator option (named, with the supported
        ones), or settings that contradict each other.
    """
    from .archive import PARAMS, SCALING_METADATA

    params = dict(files.params)
    if files.metadata is not None:
        source = f"{files.source}: member '{SCALING_METADATA}'"
        model_config = files.metadata.get("model_config")
        data_config = files.metadata.get("data_config")
        if not isinstance(model_config, Mapping) or not isinstance(data_config, Mapping):
            raise PtychoPINNFormatError(f"{source}: has no model_config and data_config dicts")
        model_config = {**_MODEL_DEFAULTS, **model_config}
        patch_size = _int(data_config.get("N", params.get("N")), source, "N")
        grid = data_config.get("grid_size", (params.get("gridsize", 1),) * 2)
        if not (isinstance(grid, (tuple, list)) and len(grid) == 2 and grid[0] == grid[1]):
            raise PtychoPINNFormatError(f"{source}: data_config grid_size {grid!r} is not a square (g, g)")
        gridsize = _int(grid[0], source, "grid_size")
        channels = _int(data_config.get("C", gridsize**2), source, "C")
        c_model = model_config.get("C_model", channels)
        if c_model != channels:
            raise PtychoPINNFormatError(f"{source}: model_config C_model = {c_model} but data_config C = {channels}")
    else:
        source = f"{files.source}: member '{PARAMS}'"
        flat = {_PARAMS_ALIASES.get(key, key): value for key, value in params.items()}
        model_config = {**_MODEL_DEFAULTS, **{k: v for k, v in flat.items() if k in _MODEL_DEFAULTS}}
        patch_size = _int(params.get("N", 64), source, "N")
        gridsize = _int(params.get("gridsize", 1), source, "gridsize")
        channels = gridsize**2
    mode = model_config.get("mode", "Unsupervised")
    if mode != "Unsupervised":
        raise _refuse(source, "model mode", mode, "'Unsupervised' (the PINN)")
    architecture = str(model_config["architecture"])
    if architecture == "cnn":
        for name, wanted in _CNN_FIXED.items():
            if model_config.get(name, wanted) != wanted:
                raise _refuse(source, f"cnn generator option {name} =", model_config[name], repr(wanted))
    if architecture == "ffno" and model_config.get("learned_input_channels", 1) != 1:
        raise _refuse(source, "ffno option learned_input_channels =", model_config["learned_input_channels"], "1")
    intensity_scale = params.get("intensity_scale")
    if not (isinstance(intensity_scale, (int, float)) and math.isfinite(intensity_scale)):
        intensity_scale = None
    settings = TorchPinnSettings(
        architecture=architecture,
        patch_size=patch_size,
        gridsize=gridsize,
        channels=channels,
        n_filters_scale=_int(model_config["n_filters_scale"], source, "n_filters_scale"),
        amp_activation=str(model_config["amp_activation"]),
        cbam_encoder=bool(model_config["cbam_encoder"]),
        probe_big=bool(model_config["probe_big"]),
        fno_width=_int(model_config["fno_width"], source, "fno_width"),
        fno_blocks=_int(model_config["fno_blocks"], source, "fno_blocks"),
        fno_modes=_int(model_config["fno_modes"], source, "fno_modes"),
        fno_cnn_blocks=_int(model_config["fno_cnn_blocks"], source, "fno_cnn_blocks"),
        fno_input_transform=str(model_config["fno_input_transform"]),
        generator_output_mode=str(model_config["generator_output_mode"]),
        scaling_mode=_scaling_mode(model_config, files.state_dict.keys(), source),
        intensity_scale=None if intensity_scale is None else float(intensity_scale),
        settings_from=SCALING_METADATA if files.metadata is not None else PARAMS,
    )
    return settings.validate(source)
