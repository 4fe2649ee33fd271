"""Which Keras backend runs the networks: chosen once, at start-up, before Keras is imported.

Keras 3 reads ``KERAS_BACKEND`` when it is first imported and keeps that backend for the life of
the process. So an entry point (``compare-models``, a sweep's compare step) calls
:func:`start_backend` first thing: it resolves the request (:func:`resolve_backend`), sets the
environment Keras and the framework read (:func:`activate_backend`), imports the framework and
checks that the requested device is there. Nothing else in the package changes process state:
loading a model or running inference never does.

Backends
--------
``tensorflow``
    The default on a machine without a GPU; the only backend training runs on.
``jax``
    The default on a machine with an NVIDIA GPU when JAX with its CUDA plugin is installed
    (``pip install 'jax[cuda12]'``; the CPU build comes with ``pip install 'compare-models[jax]'``).
``torch``
    PyTorch, on the GPU when it sees one.

Devices
-------
``auto`` (the GPU when the chosen framework sees one), ``gpu`` (an error, exit 2, when it sees
none) or ``cpu`` (the GPUs are hidden from the process: ``CUDA_VISIBLE_DEVICES=""``).

Precision
---------
Inference runs in full float32: :func:`float32_precision` turns TensorFloat-32 off for the
matrix products and convolutions inside it (JAX: ``jax.default_matmul_precision("highest")``;
torch: ``allow_tf32 = False`` for cuBLAS and cuDNN; TensorFlow: TF32 execution off), and puts
the previous settings back when it exits. :func:`describe_runtime` records all of this.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from ..errors import ConfigError

__all__ = [
    "KERAS_BACKENDS",
    "DEVICES",
    "BackendError",
    "BackendChoice",
    "default_backend",
    "resolve_backend",
    "activate_backend",
    "start_backend",
    "active_backend",
    "nvidia_gpu_present",
    "float32_precision",
    "describe_runtime",
]

KERAS_BACKENDS = ("tensorflow", "jax", "torch")
DEVICES = ("auto", "cpu", "gpu")

_INSTALL = MappingProxyType({
    "tensorflow": "pip install 'tensorflow>=2.21,<2.22' (compare-models' own dependency)",
    "jax": "pip install 'compare-models[jax]' for the CPU, or JAX's CUDA build (pip install 'jax[cuda12]') for a GPU",
    "torch": "pip install torch (the CUDA build for a GPU)",
})
_FRAMEWORK = MappingProxyType({"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch"})


class BackendError(ConfigError):
    """The chosen backend is not installed, or the requested device is not there."""


@dataclass(frozen=True)
class BackendChoice:
    """A resolved backend request.

    Attributes
    ----------
    name : str
        One of :data:`KERAS_BACKENDS`.
    device : str
        One of :data:`DEVICES`, as requested.
    reason : str
        Why this backend: the request, or which default applied.
    """

    name: str
    device: str
    reason: str


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # e.g. sys.modules[name] is None
        return False


def _jax_cuda_installed() -> bool:
    """Whether a JAX CUDA plugin is installed (``jax-cuda12-plugin``, ``jax-cuda13-plugin`` ...)."""
    return any(
        (dist.metadata["Name"] or "").lower().replace("_", "-").startswith("jax-cuda")
        for dist in importlib.metadata.distributions()
    )


def nvidia_gpu_present() -> bool:
    """Whether the machine has an NVIDIA GPU the driver knows (read from ``/proc``; imports
    nothing) and the environment does not hide it."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1"):
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir())


def default_backend(device: str, gpu_present: bool, jax_with_cuda: bool) -> tuple[str, str]:
    """``(name, reason)`` of the default backend: JAX on a machine with an NVIDIA GPU where JAX
    with a CUDA plugin is installed (unless ``device`` is ``"cpu"``), else TensorFlow."""
    if device != "cpu" and gpu_present and jax_with_cuda:
        return "jax", "default on a machine with a GPU and JAX"
    if device == "cpu":
        return "tensorflow", "default on the CPU"
    if not gpu_present:
        return "tensorflow", "default (no GPU)"
    return "tensorflow", "default (JAX with CUDA is not installed)"


def resolve_backend(requested: str | None = None, device: str = "auto", *, installed=None) -> BackendChoice:
    """The backend to run: ``requested``, or the default for this machine (:func:`default_backend`).

    Parameters
    ----------
    requested : {"tensorflow", "jax", "torch"} or None
    device : {"auto", "cpu", "gpu"}
    installed : callable, optional
        ``installed(name) -> bool`` (default: whether the package can be imported); for tests.

    Raises
    ------
    BackendError
        An unknown name, or a backend that is not installed (the message says what to install
        or which backend to pick).
    """
    installed = installed or _installed
    if device not in DEVICES:
        raise BackendError(f"--device must be one of {', '.join(DEVICES)}, got {device!r}")
    if requested is not None and requested not in KERAS_BACKENDS:
        raise BackendError(f"--backend must be one of {', '.join(KERAS_BACKENDS)}, got {requested!r}")
    if requested is None:
        name, reason = default_backend(device, nvidia_gpu_present(), installed("jax") and _jax_cuda_installed())
    else:
        name, reason = requested, f"--backend {requested}"
    if not installed(name):
        others = [b for b in KERAS_BACKENDS if b != name and installed(b)]
        pick = f", or pick an installed backend: --backend {' or '.join(others)}" if others else ""
        raise BackendError(f"the {name} backend ({reason}) needs {_FRAMEWORK[name]}, which is not installed: "
                           f"{_INSTALL[name]}{pick}")
    return BackendChoice(name, device, reason)


def activate_backend(choice: BackendChoice) -> None:
    """Set ``KERAS_BACKEND`` (and, for ``device="cpu"``, hide the GPUs) before Keras is imported.

    Raises
    ------
    BackendError
        Keras was already imported with another backend in this process.
    """
    keras_config = sys.modules.get("keras.src.backend.config")
    if keras_config is not None and keras_config.backend() != choice.name:
        raise BackendError(
            f"Keras is already running with the {keras_config.backend()} backend in this process; the "
            f"{choice.name} backend must be chosen before Keras is imported (set KERAS_BACKEND={choice.name})"
        )
    os.environ["KERAS_BACKEND"] = choice.name
    if choice.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        if choice.name == "jax":
            os.environ["JAX_PLATFORMS"] = "cpu"


def _framework_gpus(name: str) -> list[str]:
    """Names of the GPUs the framework sees (imports it)."""
    if name == "jax":
        import jax

        try:
            return [str(d.device_kind) for d in jax.devices("gpu")]
        except RuntimeError:  # no GPU backend
            return []
    if name == "torch":
        import torch

        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    import tensorflow as tf

    return [d.name for d in tf.config.list_physical_devices("GPU")]


def start_backend(requested: str | None = None, device: str = "auto", *, before_import=None) -> BackendChoice:
    """Resolve, activate and import the backend once, at an entry point's start.

    ``before_import(choice)`` runs after the environment is set and before the framework is
    imported (the CLI holds TensorFlow's start-up lines back there). With ``device="gpu"``, a
    framework that sees no GPU is an error naming what to install or which device to pick.
    """
    choice = resolve_backend(requested, device)
    activate_backend(choice)
    if before_import is not None:
        before_import(choice)
    if device == "gpu" and not _framework_gpus(choice.name):
        hint = _INSTALL[choice.name] if nvidia_gpu_present() else "this machine has no NVIDIA GPU the driver knows"
        raise BackendError(f"--device gpu: {_FRAMEWORK[choice.name]} sees no GPU ({hint}); use --device cpu or auto")
    return choice


def active_backend() -> str:
    """The backend Keras runs in this process (imports Keras)."""
    import keras

    return keras.backend.backend()


@contextlib.contextmanager
def float32_precision(name: str | None = None):
    """Full float32 for matrix products and convolutions inside the block (TF32 off), on the
    backend ``name`` (default: Keras's); the previous settings come back on exit."""
    name = name or active_backend()
    if name == "jax":
        import jax

        with jax.default_matmul_precision("highest"):
            yield
    elif name == "torch":
        import torch

        saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    else:
        import tensorflow as tf

        saved = tf.config.experimental.tensor_float_32_execution_enabled()
        tf.config.experimental.enable_tensor_float_32_execution(False)
        try:
            yield
        finally:
            tf.config.experimental.enable_tensor_float_32_execution(saved)


def describe_runtime(name: str | None = None) -> dict:
    """Backend, framework version, the devices it computes on and the precision pinned, for
    provenance."""
    import keras

    name = name or active_backend()
    if name == "jax":
        import jax

        version, devices = jax.__version__, [f"{d.platform}:{d.device_kind}" for d in jax.devices()]
        precision = 'float32: jax.default_matmul_precision("highest") (TF32 off)'
    elif name == "torch":
        import torch

        version = torch.__version__
        devices = ([f"cuda:{torch.cuda.get_device_name(0)}"] if torch.cuda.is_available() else ["cpu"])
        precision = "float32: torch.backends.cuda.matmul.allow_tf32 = cudnn.allow_tf32 = False"
    else:
        import tensorflow as tf

        version = tf.__version__
        devices = [d.device_type + ":" + d.name for d in tf.config.list_logical_devices()]
        precision = "float32: TF32 execution off"
    return {"keras_backend": name, "keras": keras.__version__, "framework_version": version,
            "devices": devices, "precision": precision}
