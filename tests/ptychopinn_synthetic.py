"""Test support: write upstream-format PtychoPINN bundles for settings no fixture covers.

:func:`upstream_like_model` lays out ``diffraction_to_obj`` exactly as upstream's
``create_model_with_gridsize`` does (same layer order, layer names and node structure), using
our layers; :func:`upstream_config` turns it into the ``config.json`` upstream would write (its
registered names and modules); :func:`write_bundle` packs config + Keras 3 weights +
``model.h5`` into a ``wts.h5.zip``.  Checked against the real N=64 configs in the tests.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
import zipfile

import h5py
import keras
import numpy as np

from compare_models.models.ptychopinn import layers as L

_UPSTREAM_NAMES = {
    "IntensityScaler": ("ptycho.model", "ptycho>IntensityScaler"),
    "ActivationLayer": ("ptycho.custom_layers", "ptycho>ActivationLayer"),
    "CenterMaskLayer": ("ptycho.tf_helper", "CenterMaskLayer"),
    "CombineComplexLayer": ("ptycho.custom_layers", "ptycho>CombineComplexLayer"),
    "ReassemblePatchesLayer": ("ptycho.custom_layers", "ptycho>ReassemblePatchesLayer"),
    "PadReconstructionLayer": ("ptycho.custom_layers", "ptycho>PadReconstructionLayer"),
    "TrimReconstructionLayer": ("ptycho.custom_layers", "ptycho>TrimReconstructionLayer"),
}

ENCODER_FILTERS = {64: (32, 64, 128), 128: (16, 32, 64, 128), 256: (8, 16, 32, 64, 128)}
DECODER_FILTERS = {64: (64, 32), 128: (128, 64, 32), 256: (256, 128, 64, 32)}


class _Names:
    """Keras-style automatic names (conv2d, conv2d_1, ...) from a private counter."""

    def __init__(self):
        self.counts = {}

    def __call__(self, stem):
        k = self.counts.get(stem, 0)
        self.counts[stem] = k + 1
        return stem if k == 0 else f"{stem}_{k}"


def upstream_like_model(N=64, gridsize=1, n_filters_scale=2, intensity_scale=988.2116699,
                        object_big=True, probe_big=True, pad_object=True,
                        amp_activation="sigmoid", padded_size=None):
    """Our-layer model with upstream's ``diffraction_to_obj`` topology and names."""
    c = gridsize**2
    if padded_size is None:
        padded_size = N + 10 if gridsize == 1 else N + 14
    nm = _Names()

    def conv(filters, act="relu"):
        return keras.layers.Conv2D(filters, (3, 3), activation=act, padding="same",
                                   name=nm("conv2d"))

    def conv_pool(x, f):
        x = conv(f)(x)
        x = conv(f)(x)
        return keras.layers.MaxPooling2D((2, 2), padding="same", name=nm("max_pooling2d"))(x)

    def conv_up(x, f):
        x = conv(f)(x)
        x = conv(f)(x)
        return keras.layers.UpSampling2D((2, 2), name=nm("up_sampling2d"))(x)

    def decoder(x, act, name):
        outc = c if object_big else 1
        conv1 = conv(outc, act=None)
        conv2 = conv(outc, act=None)
        for f in DECODER_FILTERS[N]:
            x = conv_up(x, n_filters_scale * f)
        if not pad_object:
            x2 = conv_up(x, n_filters_scale * (2048 // N))
            return act(conv2(x2))
        x1 = act(conv1(x[..., :-4]))
        x1 = keras.layers.ZeroPadding2D((N // 4, N // 4), name=name + "_padded")(x1)
        if not probe_big:
            return x1
        x2 = conv_up(x[..., -4:], n_filters_scale * (2048 // N))
        x2 = keras.ops.silu(conv2(x2))
        mask = L.CenterMaskLayer(N, 1, kind="border", name=nm("center_mask_layer"))(x2)
        return x1 + x2 * mask

    inp = keras.Input(batch_shape=(None, N, N, c), name="input")
    pos = keras.Input(batch_shape=(None, 1, 2, c), name="input_positions")
    x = L.IntensityScaler.from_intensity_scale(intensity_scale, name="intensity_scaler")([inp])
    for f in ENCODER_FILTERS[N]:
        x = conv_pool(x, n_filters_scale * f)
    amp = decoder(x, L.ActivationLayer(amp_activation, name="amp"), "amp")
    phase = decoder(x, L.ActivationLayer("tanh", scale=math.pi, name="phi"), "phase")
    obj = L.CombineComplexLayer(name="obj")([amp, phase])
    if object_big:
        big = L.ReassemblePatchesLayer(padded_size, N, gridsize, name="padded_obj_2")([obj, pos])
    else:
        big = L.PadReconstructionLayer(name="padded_obj_2")(obj)
    out = L.TrimReconstructionLayer(N, name="trimmed_obj")(big)
    return keras.Model([inp, pos], [out], name="functional_1")


def upstream_config(model) -> dict:
    """``config.json`` content as upstream would save ``model`` (its class registry names)."""
    inner = json.loads(json.dumps(model.get_config()))  # tuples -> lists, as in the file
    for entry in inner["layers"]:
        cls = entry["class_name"]
        if cls in _UPSTREAM_NAMES:
            entry["module"], entry["registered_name"] = _UPSTREAM_NAMES[cls]
            entry["config"].pop("log_scale", None)
    return {"module": "keras.src.models.functional", "class_name": "Functional",
            "config": inner, "registered_name": "Functional", "build_config": {"input_shape": None},
            "compile_config": {}}


def write_bundle(model, path, intensity_scale=988.2116699, config=None):
    """Write ``wts.h5.zip`` with ``diffraction_to_obj/model.keras`` and ``model.h5`` only."""
    config = upstream_config(model) if config is None else config
    with tempfile.TemporaryDirectory() as tmp:
        wpath = os.path.join(tmp, "model.weights.h5")
        model.save_weights(wpath)
        with open(wpath, "rb") as fh:
            weights = fh.read()
    keras_zip = io.BytesIO()
    with zipfile.ZipFile(keras_zip, "w") as zf:
        zf.writestr("config.json", json.dumps(config))
        zf.writestr("metadata.json", json.dumps({"keras_version": keras.__version__}))
        zf.writestr("model.weights.h5", weights)
    h5buf = io.BytesIO()
    with h5py.File(h5buf, "w") as h5:
        h5.attrs["intensity_scale"] = np.float64(intensity_scale)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("diffraction_to_obj/model.keras", keras_zip.getvalue())
        zf.writestr("diffraction_to_obj/model.h5", h5buf.getvalue())
    return path
