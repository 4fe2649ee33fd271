"""Refuse a model whose weights are not finite, when it is loaded.

A network that diverged in training (a NaN loss, an exploding gradient) saves NaN or infinite
weights without complaint, and every prediction it makes is NaN. Found at inference that costs
a full pass and says only how many patches are non-finite; found at loading it names the file,
the layer and the weight. Every loader (:mod:`compare_models.models.bundle`,
:mod:`compare_models.models.ptychopinn.pinn`, :mod:`compare_models.models.ptychopinn.baseline`)
calls :func:`check_finite_weights` on the model it built, so every format is checked the same
way, on the weights that will run.
"""

from __future__ import annotations

import numpy as np

from ..errors import BundleError

__all__ = ["check_finite_weights", "non_finite_weights"]

#: Weights named in the message beyond the first (the rest are counted).
_NAMED = 3


def non_finite_weights(model) -> list[dict]:
    """Every weight of ``model`` that holds a NaN or an infinite value.

    Parameters
    ----------
    model : keras.Model

    Returns
    -------
    list of dict
        In ``model.weights`` order: ``layer`` (the layer's name), ``weight`` (the variable's
        path, e.g. ``"conv2d_3/kernel"``), ``nan`` and ``inf`` (counts) and ``size``.
    """
    import keras

    owners = {}
    for layer in _all_layers(model):
        for variable in layer.weights:
            owners.setdefault(id(variable), layer.name)
    found = []
    for variable in model.weights:
        values = np.asarray(keras.ops.convert_to_numpy(variable))
        if np.isfinite(values).all():
            continue
        path = str(getattr(variable, "path", None) or variable.name)
        found.append({
            "layer": owners.get(id(variable), path.rsplit("/", 1)[0]),
            "weight": path,
            "nan": int(np.isnan(values).sum()),
            "inf": int(np.isinf(values).sum()),
            "size": int(values.size),
        })
    return found


def _all_layers(model):
    """The model's layers, nested models' layers first (the innermost layer owns a weight)."""
    out = []
    for layer in getattr(model, "layers", ()):
        out.extend(_all_layers(layer))
        out.append(layer)
    return out


def check_finite_weights(model, source: str, *, error: type[BundleError] = BundleError) -> None:
    """Raise ``error`` when a weight of ``model`` is not finite, naming ``source``, the layer
    and the weight.

    Parameters
    ----------
    model : keras.Model
        The model as loaded (its weights assigned).
    source : str
        The file (and archive member) the weights came from, for the message.
    error : type
        A :class:`~compare_models.errors.BundleError` subclass to raise.

    Raises
    ------
    BundleError
        ``"<source>: weight '<path>' of layer '<layer>' holds <k> NaN and <j> infinite values
        (of <n>) ..."``, naming up to three more weights and counting the rest.
    """
    bad = non_finite_weights(model)
    if not bad:
        return
    first = bad[0]
    text = (
        f"{source}: weight '{first['weight']}' of layer '{first['layer']}' holds "
        f"{first['nan']} NaN and {first['inf']} infinite values (of {first['size']})"
    )
    more = [f"'{entry['weight']}'" for entry in bad[1 : 1 + _NAMED]]
    if more:
        rest = len(bad) - 1 - len(more)
        text += f"; so do {', '.join(more)}" + (f" and {rest} more" if rest else "")
    raise error(
        f"{text}: a model with non-finite weights predicts nothing (did its training diverge?); "
        "retrain it, or pass another model"
    )
