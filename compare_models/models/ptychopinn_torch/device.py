"""Where the PyTorch arm runs: importing torch, choosing the device, pinning float32.

``--device auto`` (the default) runs on CUDA when torch sees a CUDA device, else on the CPU;
``cpu`` and ``gpu`` (or ``cuda``) choose; the comparison's one ``--device`` flag serves the
Keras backend and these models alike. On a GPU, cuDNN convolutions may use TF32 by torch's default;
inference here runs with TF32 off (full float32: PtychoPINN's outputs are matched to 1e-5),
inside a context that restores torch's settings afterwards, so nothing process-wide changes.
"""

from __future__ import annotations

import contextlib

from ...errors import BundleError, ConfigError

__all__ = ["DEVICES", "import_torch", "resolve_device", "full_float32", "describe_device"]

#: Values of ``--device`` (``gpu`` and ``cuda`` are the same).
DEVICES = ("auto", "cpu", "gpu", "cuda")


def import_torch(context: str):
    """``import torch``, or a :class:`BundleError` saying what to install."""
    try:
        import torch
    except ImportError as exc:
        raise BundleError(
            f"{context}: PtychoPINN's PyTorch models need torch, which is not installed "
            "(pip install 'compare-models[ptychi]', or pip install torch)"
        ) from exc
    return torch


def resolve_device(name: str = "auto"):
    """The ``torch.device`` for ``--device name``.

    Raises
    ------
    ConfigError
        An unknown name, or ``cuda`` where torch sees no CUDA device.
    """
    if name not in DEVICES:
        raise ConfigError(f"--device must be one of {', '.join(DEVICES)}, got {name!r}")
    torch = import_torch(f"--device {name}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: torch sees no CUDA device here; use --device cpu (or auto)")
        return torch.device("cuda")
    return torch.device(name)


@contextlib.contextmanager
def full_float32():
    """Run the enclosed torch code with TF32 off for cuDNN convolutions and CUDA matmuls,
    restoring the previous settings on exit."""
    import torch

    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = (cudnn.allow_tf32, matmul.allow_tf32)
    cudnn.allow_tf32 = False
    matmul.allow_tf32 = False
    try:
        yield
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = saved


def describe_device(device) -> dict:
    """JSON-ready: the device, its name, and the float precision used."""
    import torch

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    return {"device": str(device), "device_name": name, "precision": "float32 (TF32 off)",
            "torch_version": torch.__version__}
