"""Training loops for the PINN (Poisson likelihood, no ground truth) and the baseline (MAE).

Both use the same explicit loop: a seeded permutation splits off a validation set, each epoch
shuffles the training samples with a seeded NumPy generator, batches are built from the
dataset on the fly (memory does not grow with the number of positions beyond the dataset
itself), and one ``tf.function`` step applies Adam. Determinism: the kernel initialisers are
seeded from ``config.seed`` and the shuffles use their own ``numpy.random.Generator``, so no
global random state is set; the same seed on the same machine gives the same loss history.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from ..config import setting
from ..errors import ConfigError, DatasetError
from .losses import LOSS_WEIGHTINGS, PHASE_GAUGES, loss_weight, remove_mean_phase

#: The PINN's networks: this project's, or PtychoPINN's diffraction_to_obj.
ARCHITECTURES = ("compare-models", "ptychopinn")

#: Training protocols: a separate training set, or the test scan's own diffraction (PINN only).
TRAIN_ON = ("training-set", "test-diffraction")

__all__ = [
    "ARCHITECTURES",
    "TRAIN_ON",
    "TrainConfig",
    "TrainResult",
    "train_model",
    "evaluate_loss",
    "split_indices",
    "calibrate_intensity_scale",
]


@dataclass(frozen=True)
class TrainConfig:
    """Settings of ``ptycho-study train`` (and of a sweep's training steps); validated by
    :meth:`validate`.

    Each field states its default and its help once (:func:`compare_models.config.setting`);
    ``ptycho-study train --help`` lists them, and a ``--config`` file's ``train`` section takes
    the same keys. ``n_neighbours`` is K of
    :func:`compare_models.models.grouping.group_neighbours`; ``region_pad`` None derives the
    margin from the training scan (:func:`compare_models.models.inputs.region_pad_for`).
    """

    model: str = setting("pinn", "Network to train.", choices=("pinn", "baseline"))
    gridsize: int = setting(1, "Patterns per sample side, C = g² per sample (the baseline takes 1 only).")
    epochs: int = setting(20, "Passes over the training samples.")
    batch_size: int = setting(16, "Samples per step.")
    learning_rate: float = setting(1e-3, "Adam step size.")
    seed: int = setting(0, "Seed of the weights, the validation split, the shuffles and the neighbour draw.")
    validation_fraction: float = setting(0.1, "Fraction of samples held out for the validation loss, in [0, 0.9].")
    early_stopping_patience: int | None = setting(
        None, "Stop after this many epochs without improvement of the validation loss (the training loss when "
        "there is no validation set) and keep the best weights.", flag="--patience", default_text="off",
    )
    width: int = setting(32, "Filters of the first conv block (doubling per block).")
    depth: int = setting(3, "Conv-pool blocks; N must be divisible by 2**depth.")
    n_neighbours: int | None = setting(None, "K candidates per group.", default_text="C, the nearest neighbours")
    region_pad: int | None = setting(
        None, "PINN overlap region margin, pixels; groups reaching beyond it are re-formed to fit.",
        default_text="from the training scan: max(N/4, widest group) up to N/2",
    )
    train_on: str = setting(
        "training-set", "The protocol: training-set (the data are a training set: other objects than the "
        "test's, or another part of the object) or test-diffraction (PINN only: the data are the test scan "
        "itself and the PINN trains on its diffraction alone, as an iterative reconstruction does; its ground "
        "truth is never read). The bundle records it.", choices=TRAIN_ON,
    )
    loss_weighting: str = setting(
        "illumination", "Baseline: how the supervised loss weights a patch's pixels: illumination (the "
        "probe's intensity) or uniform. The PINN's Poisson loss takes no weighting.",
        choices=LOSS_WEIGHTINGS,
    )
    phase_gauge: str | None = setting(
        None, "Single-shot data fix each patch's phase only up to a constant: illuminated-mean holds each "
        "member's illuminated mean phase at 0 (PINN loss term; baseline targets), free lets the network choose "
        "it.", choices=PHASE_GAUGES,
        default_text="by protocol: free for a PINN trained on the test scan's diffraction, illuminated-mean otherwise",
    )
    architecture: str = setting(
        "compare-models", "The PINN's network: this project's (compare-models; --width, --depth) or "
        "PtychoPINN's diffraction_to_obj (ptychopinn; N = 64, 128 or 256), trained with this project's "
        "physics loss.", choices=ARCHITECTURES,
    )
    n_filters_scale: int = setting(2, "--architecture ptychopinn: PtychoPINN's filter multiplier.")
    probe_big: bool = setting(True, "--architecture ptychopinn: PtychoPINN's probe_big setting.", cli=False)
    pad_object: bool = setting(True, "--architecture ptychopinn: PtychoPINN's pad_object setting.", cli=False)
    amp_activation: str = setting("sigmoid", "--architecture ptychopinn: PtychoPINN's amplitude activation.",
                                  cli=False)

    def validate(self) -> TrainConfig:
        """Raise :class:`ConfigError` naming the first invalid setting; return self."""
        if self.model not in ("pinn", "baseline"):
            raise ConfigError(f"model must be 'pinn' or 'baseline', got {self.model!r}")
        if not isinstance(self.gridsize, int) or self.gridsize < 1:
            raise ConfigError(f"gridsize must be an integer >= 1, got {self.gridsize!r}")
        if self.model == "baseline" and self.gridsize != 1:
            raise ConfigError("the baseline supports gridsize 1 only")
        for name in ("epochs", "batch_size", "width", "depth"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not 0 <= self.validation_fraction <= 0.9:
            raise ConfigError(
                f"validation_fraction must be in [0, 0.9], got {self.validation_fraction}"
            )
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise ConfigError("early_stopping_patience must be >= 1 (or unset)")
        if self.n_neighbours is not None and self.n_neighbours < self.gridsize**2:
            raise ConfigError(
                f"n_neighbours ({self.n_neighbours}) must be at least gridsize² ({self.gridsize**2})"
            )
        if self.region_pad is not None and self.region_pad < 0:
            raise ConfigError(f"region_pad must be >= 0, got {self.region_pad}")
        if self.phase_gauge is not None and self.phase_gauge not in PHASE_GAUGES:
            raise ConfigError(f"phase_gauge must be one of {', '.join(PHASE_GAUGES)}, got {self.phase_gauge!r}")
        if self.loss_weighting not in LOSS_WEIGHTINGS:
            raise ConfigError(f"loss_weighting must be one of {', '.join(LOSS_WEIGHTINGS)}, got {self.loss_weighting!r}")
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(f"architecture must be one of {', '.join(ARCHITECTURES)}, got {self.architecture!r}")
        if self.architecture == "ptychopinn" and self.model != "pinn":
            raise ConfigError("architecture 'ptychopinn' is a PINN: use it with model 'pinn'")
        if self.train_on not in TRAIN_ON:
            raise ConfigError(f"train_on must be one of {', '.join(TRAIN_ON)}, got {self.train_on!r}")
        if self.train_on == "test-diffraction" and self.model != "pinn":
            raise ConfigError(
                "train_on 'test-diffraction' is for the PINN only: the supervised baseline learns "
                "from ground truth, and training it on the test scan would score pixels it was "
                "shown; train it on a training set (train_on 'training-set')"
            )
        return self

    @property
    def resolved_phase_gauge(self) -> str:
        """``phase_gauge``, or its default for the protocol."""
        if self.phase_gauge is not None:
            return self.phase_gauge
        return "free" if self.train_on == "test-diffraction" else "illuminated-mean"

    def to_dict(self) -> dict:
        """The settings, with the phase gauge resolved (as recorded in bundles)."""
        return {**dataclasses.asdict(self), "phase_gauge": self.resolved_phase_gauge}

    def ptychopinn_architecture(self, patch_size: int):
        """PtychoPINN's settings for N = ``patch_size`` (validated; ConfigError for another N)."""
        from .ptychopinn.architecture import PtychoPINNArchitecture

        return PtychoPINNArchitecture(
            N=patch_size, gridsize=self.gridsize, n_filters_scale=self.n_filters_scale,
            probe_big=self.probe_big, pad_object=self.pad_object, amp_activation=self.amp_activation,
        ).validate()


@dataclass(frozen=True, eq=False)
class TrainResult:
    """A trained network and what a bundle records about it."""

    model: object
    kind: str
    patch_size: int
    gridsize: int
    intensity_scale: float
    history: dict
    config: TrainConfig
    region_pad: int | None
    region_pad_rule: str | None = None  # how region_pad was chosen (recorded in the bundle)
    initial_intensity_scale: float | None = None  # PINN: calibrated start of the learned scale


def split_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of ``range(n)`` into (train, validation); validation gets
    ``round(fraction n)`` samples (at least 1 when fraction > 0), training keeps at least 1."""
    rng = np.random.default_rng([seed, 1])
    order = rng.permutation(n)
    n_val = 0 if fraction <= 0 else max(1, int(round(fraction * n)))
    n_val = min(n_val, n - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _batches(indices: np.ndarray, batch_size: int):
    for start in range(0, len(indices), batch_size):
        yield indices[start : start + batch_size]


class _Task:
    """Per-kind inputs and loss (kept private: the loop below is the same for both)."""

    def __init__(self, kind, dataset, config, scale, pad):
        from . import inputs

        self.kind = kind
        # Training draws random batches every epoch: the patterns are read into memory once.
        self.amplitude = np.asarray(dataset.diffraction_amplitude, dtype=np.float32)
        self.positions = dataset.positions_xy
        self.scale = scale
        self.inputs = inputs
        self.channels = config.gridsize**2
        self.phase_gauge = config.resolved_phase_gauge
        # Where the probe shines: weights of the patch's mean phase (and the baseline's loss).
        self.illumination = loss_weight(dataset.probe, "illumination")
        self.mean_counts = float(scale) ** 2
        if kind == "pinn":
            self.groups = inputs.make_groups(
                self.positions, config.gridsize, n_neighbours=config.n_neighbours, seed=config.seed,
                max_offset=pad,
            )
        else:
            self.truth = _truth_patches(dataset)
            self.weight = loss_weight(dataset.probe, config.loss_weighting)

    def batch(self, indices):
        if self.kind == "pinn":
            x, offsets = self.inputs.pinn_inputs(
                self.amplitude, self.positions, self.groups, indices, self.scale
            )
            counts = self.inputs.group_counts(self.amplitude, self.groups, indices)
            return (x, offsets), (counts,)
        x = self.inputs.baseline_inputs(self.amplitude, indices, self.scale)
        truth = self.truth[indices]
        if self.phase_gauge == "illuminated-mean":
            truth = remove_mean_phase(truth, self.illumination)
        return (x,), (
            np.abs(truth)[..., None].astype(np.float32),
            np.angle(truth)[..., None].astype(np.float32),
        )

    def signature(self, tf):
        """Input signature ``(inputs, targets)`` with a free batch axis (traced once)."""
        n_side, c = self.amplitude.shape[1], self.channels

        def spec(*shape):
            return tf.TensorSpec((None, *shape), tf.float32)

        if self.kind == "pinn":
            return [(spec(n_side, n_side, c), spec(c, 2)), (spec(n_side, n_side, c),)]
        return [(spec(n_side, n_side, 1),), (spec(n_side, n_side, 1), spec(n_side, n_side, 1))]

    def loss(self, outputs, targets):
        from .losses import baseline_loss, pinn_loss

        if self.kind == "pinn":
            gauge = self.illumination if self.phase_gauge == "illuminated-mean" else None
            return pinn_loss(outputs, targets[0], gauge_weight=gauge, mean_counts=self.mean_counts)
        return baseline_loss(outputs, targets, self.weight)


def _model_inputs(inputs):
    """A Keras functional model takes a list for several inputs, a tensor for one."""
    return inputs[0] if len(inputs) == 1 else list(inputs)


def _truth_patches(dataset) -> np.ndarray:
    """Ground-truth patches for the baseline: ``Y``, or cut from ``objectGuess`` the way the
    simulator makes ``Y`` (:func:`compare_models.imaging.geometry.object_patches`)."""
    if dataset.patches_truth is not None:
        return np.asarray(dataset.patches_truth, dtype=np.complex64)  # read whole (training)
    if dataset.object_truth is not None:
        from ..imaging.geometry import object_patches

        return object_patches(dataset.object_truth, dataset.positions_xy, dataset.patch_size).astype(
            np.complex64
        )
    raise DatasetError(
        f"{dataset.source or 'dataset'}: the baseline needs ground truth: key 'Y' (patches) or "
        "'objectGuess' (object)"
    )


def train_model(dataset, config: TrainConfig, *, progress: bool = True) -> TrainResult:
    """Train a network on ``dataset`` per ``config``.

    Parameters
    ----------
    dataset : Dataset
        Training data; the baseline also needs ground truth (``Y`` or ``objectGuess``).
    config : TrainConfig
    progress : bool
        Show a tqdm bar per epoch.

    Returns
    -------
    TrainResult
        The model (best weights when early stopping is on), its input normalisation and the
        loss history ``{"loss": [...], "val_loss": [...]}`` (mean loss per sample per epoch).
    """
    import tensorflow as tf
    from tqdm.auto import tqdm

    from .baseline import build_baseline
    from .inputs import intensity_scale
    from .pinn import build_pinn, build_ptychopinn_pinn

    config = config.validate()
    if config.train_on == "test-diffraction":
        # Self-supervised on the test scan: the network never sees its ground truth.
        dataset = dataclasses.replace(dataset, object_truth=None, patches_truth=None)
    n_side = dataset.patch_size
    scale = intensity_scale(dataset.diffraction_amplitude)  # a chunked pass
    pad = pad_rule = None
    if config.model == "pinn":
        pad, pad_rule = _region_pad(dataset, config)
        if config.architecture == "ptychopinn":
            model = build_ptychopinn_pinn(
                dataset.probe, config.ptychopinn_architecture(n_side), pad=pad, seed=config.seed
            )
        else:
            model = build_pinn(
                n_side, config.gridsize, dataset.probe, width=config.width, depth=config.depth,
                pad=pad, seed=config.seed,
            )
    else:
        model = build_baseline(n_side, width=config.width, depth=config.depth, seed=config.seed)
    task = _Task(config.model, dataset, config, scale, pad)
    train_idx, val_idx = split_indices(dataset.n_positions, config.validation_fraction, config.seed)
    initial_scale = None
    if config.model == "pinn":
        initial_scale = calibrate_intensity_scale(model, task, train_idx, seed=config.seed)
    import keras

    optimizer = keras.optimizers.Adam(learning_rate=config.learning_rate)
    optimizer.build(model.trainable_variables)

    signature = task.signature(tf)

    @tf.function(input_signature=signature)
    def train_step(inputs, targets):
        with tf.GradientTape() as tape:
            loss = task.loss(model(_model_inputs(inputs), training=True), targets)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        return loss

    @tf.function(input_signature=signature)
    def eval_step(inputs, targets):
        return task.loss(model(_model_inputs(inputs), training=False), targets)

    def run(step, indices, bar):
        total = 0.0
        for batch in _batches(indices, config.batch_size):
            inputs, targets = task.batch(batch)
            loss = float(step(inputs, targets))
            if not math.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss}; lower the learning rate")
            total += loss * len(batch)
            bar.update(len(batch))
            bar.set_postfix(loss=f"{loss:.4g}")
        return total / len(indices)

    history = {"loss": [], "val_loss": []}
    rng = np.random.default_rng([config.seed, 2])
    best, best_weights, waited = math.inf, None, 0
    for epoch in range(config.epochs):
        with tqdm(
            total=len(train_idx) + len(val_idx),
            desc=f"{config.model} epoch {epoch + 1}/{config.epochs}",
            unit="sample",
            disable=not progress,
            leave=False,
        ) as bar:
            history["loss"].append(run(train_step, rng.permutation(train_idx), bar))
            if len(val_idx):
                history["val_loss"].append(run(eval_step, val_idx, bar))
        monitored = history["val_loss"][-1] if len(val_idx) else history["loss"][-1]
        if progress:
            tqdm.write(
                f"{config.model} epoch {epoch + 1}: loss {history['loss'][-1]:.5g}"
                + (f", val_loss {history['val_loss'][-1]:.5g}" if len(val_idx) else "")
            )
        if config.early_stopping_patience is not None:
            if monitored < best:
                best, best_weights, waited = monitored, model.get_weights(), 0
            else:
                waited += 1
                if waited >= config.early_stopping_patience:
                    break
    if best_weights is not None:
        model.set_weights(best_weights)
    if not history["val_loss"]:
        del history["val_loss"]
    return TrainResult(
        model=model,
        kind=config.model,
        patch_size=n_side,
        gridsize=config.gridsize,
        intensity_scale=scale,
        history=history,
        config=config,
        region_pad=pad,
        region_pad_rule=pad_rule,
        initial_intensity_scale=initial_scale,
    )


#: Training samples whose counts calibrate the PINN's initial intensity scale.
CALIBRATION_SAMPLES = 256


def calibrate_intensity_scale(model, task, train_indices, *, seed: int, n_samples: int = CALIBRATION_SAMPLES) -> float:
    """Set the PINN's learned intensity scale so that the untrained network predicts, on
    average, the measured counts; return that scale.

    Over up to ``n_samples`` training samples (a seeded draw), the scale is
    ``sum(measured counts) / sum(predicted counts)`` at the network's initial weights, and
    ``log_scale`` of the ``intensity`` layer is moved by its logarithm. Without it the
    untrained network (amplitude ``sigmoid(0) = 1/2``) predicts a fraction of the counts, the
    Poisson loss's first steps push every amplitude up together, and for some weight seeds the
    sigmoid saturates at 1 over most of the patch: the gradient through it vanishes and the
    network stays at a flat image (docs/training-study.md).

    Notes
    -----
    The overall amplitude level and the intensity scale trade off exactly (a global amplitude
    scale is part of the gauge that scoring fits), so this choice leaves the amplitudes free in
    the sigmoid's linear range.
    """
    rng = np.random.default_rng([seed, 3])
    chosen = np.sort(rng.permutation(train_indices)[:n_samples])
    measured = predicted = 0.0
    for batch in _batches(chosen, 64):
        inputs, targets = task.batch(batch)
        intensity = model(_model_inputs(inputs), training=False)[1]
        measured += float(np.sum(targets[0], dtype=np.float64))
        predicted += float(np.sum(np.asarray(intensity), dtype=np.float64))
    if not (predicted > 0 and measured > 0):
        raise DatasetError(
            "cannot calibrate the intensity scale: the training patterns or the untrained "
            "network's predictions hold no counts"
        )
    layer = model.get_layer("intensity")
    layer.log_scale.assign(layer.log_scale.numpy() + np.log(measured / predicted))
    return layer.scale


def _region_pad(dataset, config: TrainConfig) -> tuple[int, str]:
    """The PINN's region margin: the configured one, or derived from the training scan."""
    from .inputs import region_pad_for

    if config.region_pad is not None:
        return int(config.region_pad), "configured (region_pad)"
    return region_pad_for(
        dataset.positions_xy, dataset.patch_size, config.gridsize, n_neighbours=config.n_neighbours, seed=config.seed
    )


def evaluate_loss(
    model, dataset, config: TrainConfig, *, intensity_scale: float, region_pad: int | None = None,
    batch_size: int = 64,
) -> float:
    """Mean training loss of ``model`` over every sample of ``dataset`` (no update).

    The loss is the one :func:`train_model` minimises for ``config.model``: the Poisson NLL
    for the PINN (groups formed as in training), MAE of amplitude and wrapped phase for the
    baseline. ``intensity_scale`` is the input normalisation the model was trained with.
    """
    import tensorflow as tf

    config = config.validate()
    if config.model == "pinn" and region_pad is None:
        region_pad, _ = _region_pad(dataset, config)
    task = _Task(config.model, dataset, config, intensity_scale, region_pad)

    @tf.function(input_signature=task.signature(tf))
    def eval_step(inputs, targets):
        return task.loss(model(_model_inputs(inputs), training=False), targets)

    indices = np.arange(dataset.n_positions)
    total = 0.0
    for batch in _batches(indices, batch_size):
        inputs, targets = task.batch(batch)
        total += float(eval_step(inputs, targets)) * len(batch)
    return total / len(indices)
