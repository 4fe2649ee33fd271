"""Run the inference path under one Keras backend, in a process of its own; print JSON.

    KERAS_BACKEND=jax python tests/backend_check.py REQUEST.json

Keras picks its backend when it is imported, so a pytest process (TensorFlow) cannot run a
second one: tests/test_backends.py starts this script once per backend. The request names the
output NPZ, the PtychoPINN fixture folder (or null), the project's bundles and test data (or
null) and whether to run compare-models end to end. TensorFlow is made unimportable first (by
``main``; the parent imports the helpers under TensorFlow to compute the same outputs), so
every check also shows that the path does not need it. Outputs (for the parent to compare with
TensorFlow's): the fixtures' models on PtychoPINN's reference inputs, and for the project's
bundles the patches of predict() and the full and half-set images of predict_and_stitch().
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np


def _ref(upstream: Path, name: str) -> dict:
    with np.load(upstream / "reference" / f"{name}.npz", allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def fixture_outputs(upstream: Path) -> dict:
    from compare_models.models.ptychopinn.baseline import load_baseline, predict_baseline
    from compare_models.models.ptychopinn.pinn import load_pinn, predict_pinn

    out = {}
    for gs in (1, 2):
        model = load_pinn(upstream / f"pinn_gs{gs}" / "wts.h5.zip")
        ref = _ref(upstream, f"ref_pinn_gs{gs}")
        out[f"fixture_pinn_gs{gs}"] = predict_pinn(model, ref["input_diffraction_scaled"], ref["input_positions"])
    amplitude, phase = predict_baseline(load_baseline(upstream / "baseline_gs1"), _ref(upstream, "ref_baseline_gs1")["input_X"])
    out["fixture_baseline_amplitude"], out["fixture_baseline_phase"] = amplitude, phase
    return out


def bundle_outputs(bundles: dict, test_data: str) -> dict:
    from compare_models.imaging.stitching import Stitcher
    from compare_models.io.dispatch import load_dataset
    from compare_models.models.inference import predict, predict_and_stitch, stitch_backend
    from compare_models.models.loading import load_model

    dataset = load_dataset(test_data)
    out = {}
    for kind, path in bundles.items():
        model = load_model(path)
        out[f"{kind}_patches"] = predict(model, dataset, batch_size=16, progress=False).patches
        stitcher = Stitcher(dataset.object_truth.shape, dataset.patch_size, crop=12, backend=stitch_backend(),
                            chunk=64, n_canvases=2)
        half = np.where(np.arange(dataset.n_positions) % 2 == 0, 1, -1)
        canvases = np.stack([np.zeros(dataset.n_positions, int), half], axis=1)
        predict_and_stitch(model, dataset, stitcher, canvases=canvases, batch_size=16, chunk=64, progress=False)
        out[f"{kind}_image"], out[f"{kind}_weights"] = stitcher.result(0)
        out[f"{kind}_half_image"], _ = stitcher.result(1)
    return out


def run_compare_cli(bundles: dict, test_data: str, output_dir: str, backend: str) -> dict:
    from compare_models.cli import compare_main

    argv = ["compare-models", "--pinn_dir", bundles["pinn"], "--baseline_dir", bundles["baseline"],
            "--test_data", test_data, "--output_dir", output_dir, "--backend", backend, "--quiet",
            "--skip-registration", "--no-half-sets"]
    saved, sys.argv = sys.argv, argv
    try:
        compare_main(standalone_mode=False)
    finally:
        sys.argv = saved
    provenance = json.loads((Path(output_dir) / "provenance.json").read_text())
    return {"config_backend": provenance["config"]["backend"],
            "arm_backends": sorted(arm["streaming"]["keras_backend"] for arm in provenance["arms"].values())}


def main(request_path: str) -> None:
    sys.modules["tensorflow"] = None  # `import tensorflow` now fails: the path must not need it
    request = json.loads(Path(request_path).read_text())
    start = time.perf_counter()
    import keras

    report = {"backend": keras.backend.backend()}
    outputs = {}
    if request.get("upstream"):
        outputs.update(fixture_outputs(Path(request["upstream"])))
    if request.get("bundles"):
        outputs.update(bundle_outputs(request["bundles"], request["test_data"]))
        if request.get("compare_output_dir"):
            report["compare"] = run_compare_cli(request["bundles"], request["test_data"],
                                                request["compare_output_dir"], report["backend"])
    np.savez(request["output"], **outputs)
    report["tensorflow_imported"] = sys.modules.get("tensorflow") is not None
    report["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])
