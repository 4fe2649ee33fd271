"""Keras backends: chosen once at start-up, and TensorFlow, JAX and PyTorch agreeing.

The cross-backend tests run each other backend once, in a process of its own
(tests/backend_check.py: Keras cannot switch backends once imported), with TensorFlow made
unimportable there, and compare what it returns with what this process computes under
TensorFlow on the same inputs: PtychoPINN's reference samples (the fixtures) and the tiny
study's two bundles (patches, full and half-set images).

The bound, measured on this project's CPU (x86-64, float32): every array agrees with
TensorFlow's within ``AGREEMENT`` times its largest modulus. Measured: at most 1.3e-6 (JAX, the
fixture baseline's phase) and 4.6e-7 (PyTorch) on the fixtures, 3.8e-7 on the bundles' patches
and images (the weights are equal: they depend on the positions only); the bound leaves a
factor of about 3 for other CPUs (other vector widths sum in other orders).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import upstream_fixtures_missing

from compare_models.models import backend as B

AGREEMENT = 4e-6
ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- choosing a backend


def test_default_backend_is_tensorflow_on_the_cpu_and_jax_on_a_gpu_with_jax():
    assert B.default_backend("auto", gpu_present=False, jax_with_cuda=True)[0] == "tensorflow"
    assert B.default_backend("auto", gpu_present=True, jax_with_cuda=True)[0] == "jax"
    assert B.default_backend("gpu", gpu_present=True, jax_with_cuda=True)[0] == "jax"
    assert B.default_backend("cpu", gpu_present=True, jax_with_cuda=True)[0] == "tensorflow"
    assert B.default_backend("auto", gpu_present=True, jax_with_cuda=False)[0] == "tensorflow"


def test_a_missing_or_unknown_backend_is_one_clear_error():
    only_tf = lambda name: name == "tensorflow"  # noqa: E731
    with pytest.raises(B.BackendError, match=r"jax backend .* needs JAX, which is not installed: pip install "
                                             r"'compare-models\[jax\]'.* --backend tensorflow"):
        B.resolve_backend("jax", installed=only_tf)
    with pytest.raises(B.BackendError, match="needs PyTorch, which is not installed"):
        B.resolve_backend("torch", installed=only_tf)
    with pytest.raises(B.BackendError, match="needs TensorFlow, which is not installed.*--backend jax"):
        B.resolve_backend(None, "cpu", installed=lambda name: name == "jax")
    with pytest.raises(B.BackendError, match="--backend must be one of"):
        B.resolve_backend("mxnet")
    with pytest.raises(B.BackendError, match="--device must be one of"):
        B.resolve_backend("tensorflow", "tpu")
    assert B.resolve_backend("tensorflow", installed=only_tf) == B.BackendChoice("tensorflow", "auto", "--backend tensorflow")


def test_the_backend_cannot_change_once_keras_is_imported(monkeypatch):
    import keras

    monkeypatch.setenv("KERAS_BACKEND", keras.backend.backend())
    other = "jax" if keras.backend.backend() != "jax" else "torch"
    with pytest.raises(B.BackendError, match=f"already running with the {keras.backend.backend()} backend"):
        B.activate_backend(B.BackendChoice(other, "auto", "test"))
    assert os.environ["KERAS_BACKEND"] == keras.backend.backend()  # nothing changed


def test_float32_precision_is_pinned_inside_and_restored_after():
    jax = pytest.importorskip("jax")
    torch = pytest.importorskip("torch")
    with B.float32_precision("jax"):
        assert jax.config.jax_default_matmul_precision == "highest"
    assert jax.config.jax_default_matmul_precision != "highest"
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        with B.float32_precision("torch"):
            assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _cli(*args, env=None):
    code = "import sys; from compare_models.cli import compare_main; sys.exit(compare_main())"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=300)


@pytest.mark.skipif(B.nvidia_gpu_present(), reason="this machine has a GPU")
def test_cli_gpu_request_without_a_gpu_and_missing_backend_exit_2_with_one_line(tmp_path):
    pytest.importorskip("torch")
    args = ["--pinn_dir", str(tmp_path / "none"), "--test_data", str(tmp_path / "none.npz"),
            "--output_dir", str(tmp_path / "out")]
    result = _cli(*args, "--backend", "torch", "--device", "gpu")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: --device gpu: PyTorch sees no GPU (this machine has no NVIDIA GPU the driver knows); "
        "use --device cpu or auto"]
    code = ("import sys; sys.modules['jax'] = None; from compare_models.cli import compare_main; "
            "sys.exit(compare_main())")
    result = subprocess.run([sys.executable, "-c", code, *args, "--backend", "jax"], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: the jax backend (--backend jax) needs JAX, which is not installed: pip install")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- agreement with TensorFlow


def _run_backend(name, request, tmp_path):
    request_path = tmp_path / f"{name}.json"
    request_path.write_text(json.dumps({**request, "output": str(tmp_path / f"{name}.npz")}))
    env = {**os.environ, "KERAS_BACKEND": name, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, str(ROOT / "tests" / "backend_check.py"), str(request_path)],
                            capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    with np.load(tmp_path / f"{name}.npz") as archive:
        return report, {key: archive[key] for key in archive.files}


@pytest.fixture(scope="module", params=["jax", "torch"])
def other_backend(request, tiny_study, tmp_path_factory):
    """One run of backend_check.py under JAX and one under PyTorch (the fixtures, the tiny
    study's bundles, and under JAX compare-models end to end)."""
    name = request.param
    pytest.importorskip(name)
    tmp_path = tmp_path_factory.mktemp(f"backend_{name}")
    missing = upstream_fixtures_missing()
    from conftest import UPSTREAM_FIXTURES

    report, outputs = _run_backend(name, {
        "upstream": None if missing else str(UPSTREAM_FIXTURES),
        "bundles": {"pinn": str(tiny_study["pinn"]), "baseline": str(tiny_study["baseline"])},
        "test_data": str(tiny_study["test"]),
        "compare_output_dir": str(tmp_path / "compare") if name == "jax" else None,
    }, tmp_path)
    return name, report, outputs


def _assert_agree(got, want, name):
    assert got.shape == want.shape, name
    scale = np.abs(want).max()
    assert scale > 0, name
    error = np.abs(got.astype(np.complex128) - want).max() / scale
    assert error <= AGREEMENT, f"{name}: max |difference| / max |value| = {error:.2e}"


@pytest.mark.e2e  # a process of its own per backend
def test_other_backend_agrees_with_tensorflow_on_ptychopinns_fixtures(other_backend, upstream):
    from backend_check import fixture_outputs

    name, report, outputs = other_backend
    assert report["backend"] == name
    for key, want in fixture_outputs(upstream).items():
        _assert_agree(outputs[key], want, f"{name} {key}")


@pytest.mark.e2e  # a process of its own per backend
def test_other_backend_agrees_with_tensorflow_on_the_projects_bundles(other_backend, tiny_study):
    from backend_check import bundle_outputs

    name, _, outputs = other_backend
    want = bundle_outputs({"pinn": tiny_study["pinn"], "baseline": tiny_study["baseline"]}, tiny_study["test"])
    for key, value in want.items():
        if key.endswith("_weights"):  # positions only, exact float64 on the host for every backend
            np.testing.assert_array_equal(outputs[key], value)
        else:
            _assert_agree(outputs[key], value, f"{name} {key}")


@pytest.mark.e2e  # a process of its own per backend
def test_other_backend_runs_without_tensorflow(other_backend):
    name, report, _ = other_backend
    assert report["tensorflow_imported"] is False
    if name == "jax":  # compare-models end to end, the backend recorded in provenance
        assert report["compare"] == {"config_backend": "jax", "arm_backends": ["jax", "jax"]}
