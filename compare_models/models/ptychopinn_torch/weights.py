"""The generator's weights out of the Lightning state_dict, checked key by key.

The state_dict of PtychoPINN's Lightning module holds the generator under
``model.autoencoder.`` (for the ffno generator also, identically, under ``model.generator.``),
the physics layer under ``model.forward_model.`` (not needed for inference) and, for a shared
spectral operator, the same tensor under several names. :func:`expected_shapes` lists every
tensor the forward pass reads, with its shape, from the settings alone (so a file cannot
choose its own architecture); :func:`generator_weights` checks the file against it and
returns the tensors under names without the prefix. A key that is missing or has another
shape is one :class:`PtychoPINNFormatError` naming the key, the expected and the found shape.
"""

from __future__ import annotations

from types import MappingProxyType

from ..ptychopinn.archive import PtychoPINNFormatError

__all__ = ["PREFIX", "expected_shapes", "generator_weights", "cnn_filters"]

#: Where the generator sits in the Lightning module's state_dict.
PREFIX = "model.autoencoder."


def cnn_filters(settings) -> tuple[list[int], list[int]]:
    """Channels of the CNN's encoder stages ``[C, ...]`` and decoder stages ``[128 s, ...]``
    (PtychoPINN's tables for N = 64, 128, 256, s = ``n_filters_scale``)."""
    s, n, c = settings.n_filters_scale, settings.patch_size, settings.channels
    stages = {64: [32, 64, 128], 128: [16, 32, 64, 128], 256: [8, 16, 32, 64, 128]}[n]
    encoder = [c] + [s * k for k in stages]
    decoder = [s * 128] + {64: [s * 64, s * 32], 128: [s * 128, s * 64, s * 32],
                           256: [s * 256, s * 128, s * 64, s * 32]}[n]
    return encoder, decoder


def _conv(shapes, name, c_out, c_in, k, bias=True):
    shapes[f"{name}.weight"] = (c_out, c_in, k, k)
    if bias:
        shapes[f"{name}.bias"] = (c_out,)


def _cnn_shapes(settings) -> dict:
    shapes: dict[str, tuple] = {}
    encoder, decoder = cnn_filters(settings)
    c, s = settings.channels, settings.n_filters_scale
    for i in range(1, len(encoder)):
        block = f"encoder.blocks.{i - 1}"
        _conv(shapes, f"{block}.conv1", encoder[i], encoder[i - 1], 3)
        _conv(shapes, f"{block}.conv2", encoder[i], encoder[i], 3)
        if settings.cbam_encoder:
            hidden = encoder[i] // 16
            gate = f"{block}.attention.ChannelGate.mlp"
            shapes[f"{gate}.1.weight"], shapes[f"{gate}.1.bias"] = (hidden, encoder[i]), (hidden,)
            shapes[f"{gate}.3.weight"], shapes[f"{gate}.3.bias"] = (encoder[i], hidden), (encoder[i],)
            shapes[f"{block}.attention.SpatialGate.compress.weight"] = (1, 2, 7, 7)
    for branch, last in (("decoder_amp", "amp"), ("decoder_phase", "phase")):
        for i in range(1, len(decoder)):
            _conv(shapes, f"{branch}.blocks.{i - 1}.conv1", decoder[i], decoder[i - 1], 3)
            _conv(shapes, f"{branch}.blocks.{i - 1}.conv2", decoder[i], decoder[i], 3)
        head = f"{branch}.{last}"
        _conv(shapes, f"{head}.conv1", c, decoder[-1] - c, 3)
        if settings.probe_big:
            _conv(shapes, f"{head}.conv_up_block.conv1", s * 32, c, 3)
            _conv(shapes, f"{head}.conv_up_block.conv2", s * 32, s * 32, 3)
            _conv(shapes, f"{head}.conv2", c, s * 32, 3)
    return shapes


def _ffno_shapes(settings) -> dict:
    shapes: dict[str, tuple] = {}
    c, width, modes = settings.channels, settings.fno_width, settings.fno_modes
    hidden = max(width, int(round(width * 2.0)))
    _conv(shapes, "lifter.conv1", width, c, 3)
    _conv(shapes, "lifter.conv2", width, width, 3)
    shapes["ffno_stack.shared_gate"] = ()
    for i in range(settings.fno_blocks):
        block = f"ffno_stack.blocks.{i}"
        shapes[f"{block}.shared_spectral.weights_x"] = (width, width, modes)
        shapes[f"{block}.shared_spectral.weights_y"] = (width, width, modes)
        shapes[f"{block}.norm.weight"] = shapes[f"{block}.norm.bias"] = (width,)
        _conv(shapes, f"{block}.expand", hidden, width, 1)
        _conv(shapes, f"{block}.project", width, hidden, 1)
    for i in range(settings.fno_cnn_blocks):
        _conv(shapes, f"refiners.{i}.conv1", width, width, 3)
        _conv(shapes, f"refiners.{i}.conv2", width, width, 3)
    if settings.generator_output_mode == "amp_phase":
        _conv(shapes, "output_amp", c, width, 1)
        _conv(shapes, "output_phase", c, width, 1)
    else:
        _conv(shapes, "output_proj", 2 * c, width, 1)
    return shapes


def expected_shapes(settings) -> dict[str, tuple[int, ...]]:
    """Every generator tensor the forward pass reads, name (without :data:`PREFIX`) -> shape."""
    return _cnn_shapes(settings) if settings.architecture == "cnn" else _ffno_shapes(settings)


def generator_weights(state_dict, settings, source: str):
    """The generator's tensors, checked against :func:`expected_shapes`.

    Parameters
    ----------
    state_dict : Mapping[str, torch.Tensor]
        The Lightning module's state_dict (``diffraction_to_obj/model.pth``).
    settings : TorchPinnSettings
    source : str
        File named in errors.

    Returns
    -------
    Mapping[str, torch.Tensor]
        Name without :data:`PREFIX` -> tensor (float32, or complex64 for spectral weights).

    Raises
    ------
    PtychoPINNFormatError
        The first key missing, of another shape, or of a non-floating dtype (named).
    """
    from .archive import STATE_DICT

    weights = {}
    for name, shape in expected_shapes(settings).items():
        key = PREFIX + name
        if key not in state_dict:
            raise PtychoPINNFormatError(
                f"{source}: member '{STATE_DICT}': key '{key}' is missing (the {settings.architecture} "
                f"generator needs it, shape {shape})"
            )
        tensor = state_dict[key]
        if tuple(tensor.shape) != shape:
            raise PtychoPINNFormatError(
                f"{source}: member '{STATE_DICT}': key '{key}' has shape {tuple(tensor.shape)}, expected "
                f"{shape} for the {settings.architecture} generator with these settings"
            )
        if not (tensor.is_floating_point() or tensor.is_complex()):
            raise PtychoPINNFormatError(f"{source}: member '{STATE_DICT}': key '{key}' has dtype {tensor.dtype}, "
                                        "expected a floating-point tensor")
        weights[name] = tensor.detach().to("cpu", copy=True)
    return MappingProxyType(weights)
