"""Model bundles: a directory holding a trained network and everything needed to run it.

Layout
------
``model.keras``
    The Keras model in the native format (custom layers registered under
    ``compare_models``; the probe and the learned intensity scale are weights inside it).
    Loaded with ``safe_mode=True``: no Lambda layers, no pickle, no dill.
``bundle.json``
    ``format``, ``format_version``, ``kind`` (``pinn`` or ``baseline``), ``architecture``
    (``name``: ``compare-models`` or ``ptychopinn``, and PtychoPINN's settings), ``patch_size`` (N),
    ``gridsize``, ``intensity_scale`` (the input normalisation: network input = measured
    amplitude / intensity_scale), ``learned_intensity_scale`` (PINN only, for information),
    ``probe_file``, ``train_data`` (source, SHA-256 fingerprint, positions, nominal and measured
    dose, and :func:`training_record`: the training object's fingerprint and the pixels the
    training patches read), ``training_protocol`` (:func:`training_protocol`: a separate
    training set, or self-supervised on the test scan's diffraction), ``config`` (the resolved
    training settings), ``history`` (loss per epoch), ``versions`` and ``created``.
``probe.npy``
    The probe (N, N) complex64 in the training data's photon-count units.
``loss.png``
    Training and validation loss per epoch.

A bundle is written to a temporary sibling directory and renamed into place, so an interrupted
training never leaves a directory that looks complete.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np

from .. import __version__
from ..errors import BundleError
from .finite_weights import check_finite_weights
from .interface import UNRECORDED_PROTOCOL, describe_basics

__all__ = [
    "Bundle",
    "save_bundle",
    "load_bundle",
    "plot_history",
    "training_record",
    "fraction_seen_in_training",
    "training_protocol",
    "PROTOCOL_DESCRIPTIONS",
    "KINDS",
    "MODEL_FORMAT",
    "MODEL_FORMATS",
    "ARCHITECTURE_LABELS",
    "JSON_FILE",
]

FORMAT = "compare_models.bundle"
MODEL_FORMAT = "compare_models bundle"  # as named in logs and provenance
#: ``model_format`` of a bundle per network architecture (``bundle.json`` ``architecture.name``).
MODEL_FORMATS = MappingProxyType({
    "compare-models": MODEL_FORMAT,
    "ptychopinn": "compare_models bundle (PtychoPINN architecture)",
})
#: What each architecture's network is, as reports name an arm.
ARCHITECTURE_LABELS = MappingProxyType({
    ("pinn", "compare-models"): "compare-models PINN",
    ("pinn", "ptychopinn"): "PtychoPINN architecture (TensorFlow, trained by compare-models)",
    ("baseline", "compare-models"): "compare-models baseline (PtychoNN-style)",
})
FORMAT_VERSION = 1
KINDS = ("pinn", "baseline")
MODEL_FILE = "model.keras"
JSON_FILE = "bundle.json"
PROBE_FILE = "probe.npy"
LOSS_FILE = "loss.png"


@dataclass(frozen=True, eq=False)
class Bundle:
    """A loaded model bundle; everything a prediction needs travels here, nothing is global.

    Implements :class:`~compare_models.models.interface.LoadedModel`.

    Attributes
    ----------
    model : keras.Model
    kind : str
        ``"pinn"`` or ``"baseline"``.
    patch_size : int
        N.
    gridsize : int
        g; the model sees C = g² patterns per sample.
    intensity_scale : float
        Input normalisation of the training data: input = amplitude / intensity_scale.
    probe : ndarray (N, N) complex64
    metadata : dict
        The decoded ``bundle.json``.
    path : Path or None
    """

    model: object
    kind: str
    patch_size: int
    gridsize: int
    intensity_scale: float
    probe: np.ndarray
    metadata: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def channels(self) -> int:
        """C = gridsize²."""
        return self.gridsize * self.gridsize

    @property
    def region_pad(self) -> int | None:
        """Region margin of the PINN's overlap constraint (pixels), None for the baseline."""
        value = self.metadata.get("region_pad")
        return None if value is None else int(value)

    @property
    def training_protocol(self) -> dict:
        """How the network was trained (:func:`training_protocol`): a separate training set or
        the test scan's own diffraction."""
        return training_protocol(self.metadata)

    @property
    def architecture(self) -> str:
        """The network: ``"compare-models"`` (this project's) or ``"ptychopinn"`` (PtychoPINN's
        ``diffraction_to_obj``, trained here); bundles that do not say are this project's."""
        record = self.metadata.get("architecture") or {}
        name = record.get("name") if isinstance(record, dict) else None
        return name if name in MODEL_FORMATS else "compare-models"

    @property
    def label(self) -> str:
        """What the network is, for reports: e.g. ``"compare-models PINN"``."""
        return ARCHITECTURE_LABELS.get((self.kind, self.architecture), f"{self.architecture} {self.kind}")

    @property
    def model_format(self) -> str:
        """``"compare_models bundle"``, or ``"compare_models bundle (PtychoPINN architecture)"``
        (see :class:`~compare_models.models.interface.LoadedModel`)."""
        return MODEL_FORMATS[self.architecture]

    def check_compatible(self, dataset) -> None:
        """Raise :class:`BundleError` if ``dataset`` cannot be run through this model."""
        from .interface import check_patch_size

        check_patch_size(self, dataset, minimum_positions=self.channels)

    def prepare_inputs(self, dataset):
        """Inputs for every scan position of ``dataset`` (:class:`~.interface.PreparedInputs`).

        Amplitudes are divided by the bundle's ``intensity_scale`` (the training data's, not
        the test data's). For the PINN, every position seeds one group of itself and its
        C - 1 nearest neighbours (:func:`compare_models.models.grouping.group_neighbours`,
        deterministic); the prediction for position i is the seed's patch at position i.
        """
        from . import inputs
        from .interface import PreparedInputs

        amplitude = dataset.diffraction_amplitude
        positions = dataset.positions_xy
        scale = self.intensity_scale
        details = {"normalisation": "amplitude / bundle intensity_scale", "intensity_scale": scale}
        if self.kind == "pinn":
            # Groups that reach beyond the bundle's margin are re-formed to fit it.
            groups = inputs.make_groups(positions, self.gridsize, max_offset=self.region_pad)

            def build(indices):
                return inputs.pinn_inputs(amplitude, positions, groups, indices, scale)

            details["grouping"] = (
                "one group per scan position: the position and its C - 1 nearest neighbours "
                "(re-formed from the nearest positions that fit when they reach beyond the "
                "bundle's region margin); the seed's patch sits at the seed's position"
            )
        else:

            def build(indices):
                return (inputs.baseline_inputs(amplitude, indices, scale),)

        return PreparedInputs(positions_xy=positions.astype(np.float64).copy(), build=build, details=details)

    def input_specs(self, batch_size: int):
        """PINN: amplitudes (B, N, N, C) and offsets (B, C, 2); baseline: (B, N, N, 1)."""
        n_side = self.patch_size
        if self.kind == "pinn":
            return (((batch_size, n_side, n_side, self.channels), "float32"),
                    ((batch_size, self.channels, 2), "float32"))
        return (((batch_size, n_side, n_side, 1), "float32"),)

    def patches_from_outputs(self, outputs):
        """First output (B, N, N, C, 2) real/imag -> the seed member's (B, N, N) complex64."""
        from keras import ops

        obj = outputs[0] if isinstance(outputs, (list, tuple)) else outputs
        return ops.view_as_complex(obj[:, :, :, 0, :])

    def describe(self) -> dict:
        """Format, kind, N, gridsize, intensity scale and the decoded ``bundle.json``."""
        return {
            **describe_basics(self),
            "intensity_scale": self.intensity_scale,
            "bundle_metadata": self.metadata,
        }


def _versions() -> dict:
    """Versions that wrote the bundle: Keras, its backend and framework (without importing a
    framework Keras does not run on)."""
    from importlib import metadata

    import keras

    backend = keras.backend.backend()
    versions = {
        "compare_models": __version__,
        "keras": keras.__version__,
        "keras_backend": backend,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    try:
        versions[backend] = metadata.version(backend)
    except metadata.PackageNotFoundError:
        pass
    return versions


def plot_history(history: dict, path) -> Path:
    """Write the loss curves in ``history`` (``loss``, optional ``val_loss``) to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 3.5), dpi=100)
    axes = figure.add_subplot(1, 1, 1)
    for key, label in (("loss", "training"), ("val_loss", "validation")):
        values = history.get(key) or []
        if values:
            axes.plot(np.arange(1, len(values) + 1), values, marker="o", label=label)
    axes.set_xlabel("epoch")
    axes.set_ylabel("loss")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    return Path(path)


def save_bundle(
    model,
    out_dir,
    *,
    kind: str,
    patch_size: int,
    gridsize: int,
    intensity_scale: float,
    probe,
    train_dataset,
    config: dict,
    history: dict,
    extra: dict | None = None,
) -> Path:
    """Write a bundle directory at ``out_dir`` atomically (temp dir + rename).

    Parameters
    ----------
    model : keras.Model
    out_dir : str or Path
        Replaced if it already holds a bundle; an existing directory that is not a bundle (and
        not empty) is refused rather than deleted.
    kind, patch_size, gridsize, intensity_scale, probe
        See :class:`Bundle`.
    train_dataset : Dataset
        The training data, for its fingerprint and doses.
    config : dict
        Resolved training settings.
    history : dict
        ``{"loss": [...], "val_loss": [...]}`` per epoch.
    extra : dict, optional
        More JSON-serialisable fields for ``bundle.json`` (e.g. ``region_pad``).

    Returns
    -------
    Path
        ``out_dir``.
    """
    from ..io.dataset import dataset_fingerprint

    if kind not in KINDS:
        raise BundleError(f"unknown model kind {kind!r}; expected one of {', '.join(KINDS)}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise BundleError(f"{out_dir}: exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / JSON_FILE).exists():
        raise BundleError(
            f"{out_dir}: exists, is not empty and holds no {JSON_FILE}; refusing to overwrite it"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    probe = np.asarray(probe, dtype=np.complex64)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        model.save(tmp / MODEL_FILE)
        np.save(tmp / PROBE_FILE, probe, allow_pickle=False)
        plot_history(history, tmp / LOSS_FILE)
        learned = None
        try:
            learned = float(np.exp(model.get_layer("intensity").log_scale.numpy()))
        except ValueError:
            pass
        document = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": kind,
            "patch_size": int(patch_size),
            "gridsize": int(gridsize),
            "intensity_scale": float(intensity_scale),
            "intensity_scale_definition": "network input = measured amplitude / intensity_scale "
            "(sqrt of the training data's mean counts per pixel)",
            "learned_intensity_scale": learned,
            "probe_file": PROBE_FILE,
            "model_file": MODEL_FILE,
            "train_data": {
                "source": train_dataset.source,
                "sha256": dataset_fingerprint(train_dataset),
                "n_positions": train_dataset.n_positions,
                "dose_nominal": train_dataset.nominal_dose,
                "dose_measured": train_dataset.measured_dose,
                **training_record(train_dataset),
            },
            "config": config,
            "history": {k: [float(v) for v in vals] for k, vals in history.items()},
            "versions": _versions(),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            **(extra or {}),
        }
        (tmp / JSON_FILE).write_text(json.dumps(document, indent=2, sort_keys=True))
        if out_dir.exists():
            old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def training_record(train_dataset) -> dict:
    """What a network saw in training, small enough for ``bundle.json``.

    Returns
    -------
    dict
        ``object_sha256`` (:func:`compare_models.io.dataset.object_fingerprint` of the training
        ``objectGuess``; None without one), ``object_shape`` (H, W) of the grid the positions
        refer to, and ``footprint_runs``: the pixels any training patch read
        (:func:`compare_models.imaging.coverage.patch_footprint`) as row runs
        ``[row, start, stop]``.
    """
    from ..imaging.coverage import mask_to_runs, patch_footprint
    from ..imaging.geometry import scan_canvas_shape
    from ..io.dataset import object_fingerprint

    obj = train_dataset.object_truth
    if obj is not None:
        shape, fingerprint = tuple(obj.shape), object_fingerprint(obj)
    else:
        shape, fingerprint = scan_canvas_shape(train_dataset.positions_xy, train_dataset.patch_size), None
    footprint = patch_footprint(train_dataset.positions_xy, train_dataset.patch_size, shape)
    return {
        "object_sha256": fingerprint,
        "object_shape": [int(s) for s in shape],
        "footprint_runs": mask_to_runs(footprint),
    }


#: What each training protocol (``TrainConfig.train_on``) means, as reports say it.
PROTOCOL_DESCRIPTIONS = MappingProxyType({
    "training-set": "trained on a separate training set (no scored pixel of the test object, "
    "unless seen_in_training says otherwise)",
    "test-diffraction": "self-supervised on the test scan's own diffraction (no ground truth), as an "
    "iterative reconstruction is",
})


def training_protocol(bundle_metadata: dict | None) -> dict:
    """How a bundle's network was trained: ``train_on``, ``description`` and
    ``ground_truth_used`` (the baseline learns from ground-truth patches, the PINN never does).

    Bundles written before the protocol was recorded say ``"unknown"``.
    """
    document = bundle_metadata or {}
    record = document.get("training_protocol")
    if isinstance(record, dict) and record.get("train_on") in PROTOCOL_DESCRIPTIONS:
        return dict(record)
    return dict(UNRECORDED_PROTOCOL)


def protocol_record(train_on: str, kind: str) -> dict:
    """The ``training_protocol`` entry :func:`save_bundle` writes (see :func:`training_protocol`)."""
    if train_on not in PROTOCOL_DESCRIPTIONS:
        raise BundleError(f"unknown training protocol {train_on!r}; expected one of {', '.join(PROTOCOL_DESCRIPTIONS)}")
    return {"train_on": train_on, "description": PROTOCOL_DESCRIPTIONS[train_on], "ground_truth_used": kind == "baseline"}


def fraction_seen_in_training(bundle_metadata: dict, test_object, region) -> float | str:
    """Fraction of the scored ``region`` that lies under any training patch of the same object.

    Parameters
    ----------
    bundle_metadata : dict
        The model's ``bundle.json`` (:attr:`Bundle.metadata`).
    test_object : ndarray (H, W) or None
        The test data's ground truth, on the grid of ``region``.
    region : ndarray (H, W) bool
        The scored pixels.

    Returns
    -------
    float or "unknown"
        0.0 when the network was trained on another object; the covered fraction of ``region``
        when on this one; ``"unknown"`` when the bundle does not record its training object
        and footprint (older or foreign bundles, or training data without ``objectGuess``) or
        there is no ground truth.
    """
    from ..imaging.coverage import fraction_covered, runs_to_mask
    from ..io.dataset import object_fingerprint

    record = (bundle_metadata or {}).get("train_data") or {}
    trained_on = record.get("object_sha256")
    if test_object is None or trained_on is None or "footprint_runs" not in record:
        return "unknown"
    if trained_on != object_fingerprint(test_object):
        return 0.0
    seen = runs_to_mask(record["footprint_runs"], np.shape(test_object))
    return fraction_covered(region, seen)


def _require(document: dict, key: str, kinds, path):
    if key not in document:
        raise BundleError(f"{path}: {JSON_FILE} lacks the key '{key}'")
    value = document[key]
    if not isinstance(value, kinds) or isinstance(value, bool):
        raise BundleError(f"{path}: {JSON_FILE} key '{key}' has an invalid value {value!r}")
    return value


def load_bundle(path) -> Bundle:
    """Load a bundle directory written by :func:`save_bundle`.

    Raises
    ------
    BundleError
        If the directory or a file is missing, ``bundle.json`` is not valid, the kind is
        unknown, the model cannot be loaded in Keras safe mode, a weight is not finite (the
        message names the layer and the weight), or the parts disagree (N).
    """
    import keras

    from . import layers  # noqa: F401  (registers the custom layers)
    from .ptychopinn import layers as _ptychopinn_layers  # noqa: F401  (PtychoPINN-architecture bundles)

    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"{path}: no such bundle directory")
    json_path = path / JSON_FILE
    if not json_path.is_file():
        raise BundleError(f"{path}: missing {JSON_FILE}; not a model bundle (or incomplete)")
    try:
        document = json.loads(json_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{json_path}: not valid JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise BundleError(f"{json_path}: expected a JSON object")
    if document.get("format") != FORMAT:
        raise BundleError(f"{json_path}: 'format' is {document.get('format')!r}, expected {FORMAT!r}")
    kind = _require(document, "kind", str, json_path)
    if kind not in KINDS:
        raise BundleError(f"{json_path}: unknown model kind {kind!r}; expected one of {', '.join(KINDS)}")
    patch_size = _require(document, "patch_size", int, json_path)
    gridsize = _require(document, "gridsize", int, json_path)
    scale = float(_require(document, "intensity_scale", (int, float), json_path))
    if not (np.isfinite(scale) and scale > 0):
        raise BundleError(f"{json_path}: 'intensity_scale' must be a positive number, got {scale}")
    probe_path = path / document.get("probe_file", PROBE_FILE)
    if not probe_path.is_file():
        raise BundleError(f"{path}: missing {probe_path.name} (the probe)")
    try:
        probe = np.load(probe_path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise BundleError(f"{probe_path}: cannot be read as a .npy array ({exc})") from exc
    if probe.shape != (patch_size, patch_size) or probe.dtype.kind != "c":
        raise BundleError(
            f"{probe_path}: expected a complex ({patch_size}, {patch_size}) probe, got "
            f"{probe.dtype} {probe.shape}"
        )
    model_path = path / document.get("model_file", MODEL_FILE)
    if not model_path.is_file():
        raise BundleError(f"{path}: missing {model_path.name} (the Keras model)")
    try:
        model = keras.models.load_model(model_path, safe_mode=True, compile=False)
    except Exception as exc:  # Keras raises many types for corrupt or foreign files
        raise BundleError(
            f"{model_path}: cannot be loaded as a Keras model in safe mode "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc
    check_finite_weights(model, str(model_path))
    input_shape = model.inputs[0].shape
    expected = (patch_size, patch_size, gridsize * gridsize if kind == "pinn" else 1)
    if tuple(input_shape[1:]) != expected:
        raise BundleError(
            f"{model_path}: model input shape {tuple(input_shape[1:])} does not match "
            f"{JSON_FILE} (N = {patch_size}, gridsize {gridsize}: expected {expected})"
        )
    return Bundle(
        model=model,
        kind=kind,
        patch_size=patch_size,
        gridsize=gridsize,
        intensity_scale=scale,
        probe=probe.astype(np.complex64),
        metadata=document,
        path=path,
    )
