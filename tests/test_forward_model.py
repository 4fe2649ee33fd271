"""The simulator's forward model is pty-chi's own, for the installed pty-chi.

pty-chi's ``PlanarPtychographyForwardModel`` is called in this process (torch on the CPU),
on a task built the way the runner builds it (``ptychi_runner.ptychi_inputs`` for the canvas,
positions, probe scale and intensities, ``ptychi_runner._build_options`` for the options), but
with the TRUE object on the canvas. Its predicted intensities must equal the simulator's
noise-free counts. The runner itself keeps torch out of the caller; building a task changes
torch's process-wide defaults, which is harmless inside the test session.
"""

from __future__ import annotations

import configparser
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

from compare_models.imaging.geometry import (
    extract_patches,
    fourier_shift,
    integer_crops,
    split_nearest,
)
from compare_models.study import ptychi_runner
from compare_models.study.ptychi_runner import ReconstructConfig, ptychi_inputs
from compare_models.study.simulator import SimulationConfig, far_field_amplitude, simulate_dataset

pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")

TOLERANCE = 1e-5  # relative, on intensities (the bar)
SCENE = dict(patch_size=16, object_size=72, scan="jittered", scan_step=5, jitter=0.8, poisson_noise=False, seed=4)


@pytest.fixture(scope="module")
def ptychi_api():
    missing = ptychi_runner.ptychi_missing()
    if missing is not None:
        pytest.skip(f"pty-chi is not installed ({missing} missing): {ptychi_runner.INSTALL_HINT}")
    ptychi_runner._register_torchvision_op_schemas()  # as the child does before importing ptychi
    import logging

    import torch
    from ptychi import api
    from ptychi.api.task import PtychographyTask

    logging.getLogger("ptychi").setLevel(logging.ERROR)
    return torch, api, PtychographyTask


def object_on_canvas(obj, origin_xy, shape):
    """canvas[r, c] = obj[r + oy, c + ox], zero outside the object."""
    (ox, oy), (height, width) = origin_xy, shape
    canvas = np.zeros((height, width), np.complex128)
    r0, c0 = max(0, oy), max(0, ox)
    r1, c1 = min(obj.shape[0], oy + height), min(obj.shape[1], ox + width)
    canvas[r0 - oy : r1 - oy, c0 - ox : c1 - ox] = obj[r0:r1, c0:c1]
    return canvas


def ptychi_forward(ptychi_api, dataset, *, algorithm="lsqml", float64=False, canvas=None):
    """pty-chi's predicted intensities (M, N, N), zero frequency at the centre, and the task.

    ``canvas``: ((ox, oy), (H, W)) to use instead of the runner's ``scan_canvas``.
    """
    torch, api, task_class = ptychi_api
    config = ReconstructConfig(algorithm=algorithm, epochs=1, batch_size=dataset.n_positions, device="cpu")
    inputs = ptychi_inputs(dataset, config.validate(), progress=False)
    settings = inputs["settings"]
    if canvas is not None:
        origin, shape = canvas
        pos_x, pos_y = ptychi_runner.to_ptychi_positions(dataset.positions_xy, origin, shape)
        settings.update(canvas_origin_xy=list(origin), canvas_shape=list(shape))
        inputs.update(pos_x=pos_x, pos_y=pos_y)
    options = ptychi_runner._build_options(api, settings, "cpu")
    real, cplx = np.float32, np.complex64
    if float64:
        options.reconstructor_options.default_dtype = api.Dtypes.FLOAT64
        real, cplx = np.float64, np.complex128
    n_side = dataset.patch_size
    truth = object_on_canvas(dataset.object_truth, tuple(settings["canvas_origin_xy"]), tuple(settings["canvas_shape"]))
    task = task_class(
        options,
        diffraction_data=inputs["intensities"].astype(real),
        object_data=truth[None].astype(cplx),
        probe_data=(dataset.probe.astype(np.complex128) / n_side if float64 else inputs["probe"]).reshape(
            1, 1, n_side, n_side
        ).astype(cplx),
        probe_position_x_px=inputs["pos_x"].astype(real),
        probe_position_y_px=inputs["pos_y"].astype(real),
    )
    with torch.no_grad():
        predicted = task.reconstructor.forward_model.forward(torch.arange(dataset.n_positions))
    predicted = predicted.detach().cpu().numpy().astype(np.float64)
    return np.fft.fftshift(predicted, axes=(-2, -1)), task


def relative(test, reference):
    test, reference = np.asarray(test, np.float64), np.asarray(reference, np.float64)
    return float(np.linalg.norm(test - reference) / np.linalg.norm(reference))


def counts(dataset):
    return np.square(dataset.diffraction_amplitude.astype(np.float64))


def is_subpixel(positions):
    return np.all(np.abs(positions - np.round(positions)) > 1e-3)


@pytest.fixture(scope="module")
def scene():
    dataset = simulate_dataset(SimulationConfig(**SCENE))
    assert np.mean(dataset.positions_xy % 1 != 0) > 0.9  # sub-pixel (jitter clipped at the edges leaves a few integers)
    return dataset


# --------------------------------------------------------------------------------------------
# The deliverable: noise-free data fit pty-chi's forward model at sub-pixel positions


@pytest.mark.parametrize("algorithm", ["lsqml", "epie", "dm"])
def test_noise_free_data_fit_ptychi_forward_model(ptychi_api, scene, algorithm):
    """At the runner's own precision (float32) and options, for every engine whose forward
    model is the default one (BH shifts the object instead; docs/simulation.md)."""
    predicted, _ = ptychi_forward(ptychi_api, scene, algorithm=algorithm)
    assert relative(counts(scene), predicted) <= TOLERANCE


def test_random_scan_in_float64(ptychi_api):
    dataset = simulate_dataset(SimulationConfig(**{**SCENE, "scan": "random", "n_random_positions": 60}))
    assert is_subpixel(dataset.positions_xy)
    predicted, _ = ptychi_forward(ptychi_api, dataset, float64=True)
    # float32 amplitudes squared against pty-chi in float64: float32 rounding only.
    assert relative(counts(dataset), predicted) <= 1e-6


# --------------------------------------------------------------------------------------------
# pty-chi's position convention, for the installed version


def test_ptychi_version_is_within_the_pin():
    """setup.cfg pins ptychi to the versions these tests cover; the installed one must be one."""
    from packaging.requirements import Requirement

    pytest.importorskip("ptychi")
    setup = configparser.ConfigParser()
    setup.read(Path(__file__).resolve().parents[1] / "setup.cfg")
    lines = setup["options.extras_require"]["ptychi"].split("\n")
    requirement = next(Requirement(line) for line in lines if line.strip().startswith("ptychi"))
    # An upper bound: a later pty-chi may change its rounding or its shifts.
    assert any(spec.operator in ("<", "<=", "==", "~=") for spec in requirement.specifier), (
        f"setup.cfg: {requirement} must be pinned to the versions tests/test_forward_model.py covers"
    )
    assert version("ptychi") in requirement.specifier


def test_position_convention_of_installed_ptychi(ptychi_api, scene):
    """pty-chi's own intermediates: the object patch is the integer crop at round(x) - N/2 (this
    project's frame, through the runner's canvas and positions), and the probe is probeGuess / N
    Fourier-shifted by +(x - round(x)): the convention docs/simulation.md states."""
    predicted, task = ptychi_forward(ptychi_api, scene, float64=True)
    variables = task.reconstructor.forward_model.intermediate_variables
    crops = variables.obj_patches.detach().cpu().numpy()[:, 0]
    probes = variables.shifted_unique_probes[0].detach().cpu().numpy()[:, 0]
    n_side = scene.patch_size
    origin, residual = split_nearest(scene.positions_xy, n_side)
    assert np.abs(residual).max() <= 0.5
    np.testing.assert_array_equal(crops, integer_crops(scene.object_truth.astype(np.complex128), origin, n_side))
    expected_probe = fourier_shift(np.broadcast_to(scene.probe / n_side, crops.shape), residual)
    np.testing.assert_allclose(probes, expected_probe, rtol=0, atol=1e-12 * np.abs(scene.probe).max())
    assert relative(counts(scene), predicted) <= 1e-6


def test_other_conventions_do_not_fit(ptychi_api, scene):
    """The test has power: floor instead of round, the opposite shift, or bilinear sampling of
    the object (the simulator before this convention) miss pty-chi by far more than 1e-5."""
    predicted, _ = ptychi_forward(ptychi_api, scene, float64=True)
    obj, probe, pos, n_side = scene.object_truth, scene.probe.astype(np.complex128), scene.positions_xy, scene.patch_size
    origin, residual = split_nearest(pos, n_side)
    floor = np.floor(pos)
    candidates = {
        "floor": fourier_shift(np.broadcast_to(probe, (len(pos), n_side, n_side)), pos - floor)
        * integer_crops(obj, (floor - n_side // 2).astype(int), n_side),
        "opposite sign": fourier_shift(np.broadcast_to(probe, (len(pos), n_side, n_side)), -residual)
        * integer_crops(obj, origin, n_side),
        "bilinear object": probe * extract_patches(obj.astype(np.complex128), pos, n_side),
    }
    for name, waves in candidates.items():
        assert relative(far_field_amplitude(waves) ** 2, predicted) > 10 * TOLERANCE, name


# --------------------------------------------------------------------------------------------
# The runner's canvas parity at exact half-integer positions


def half_integer_scene():
    """A grid scan with a step of 2.5 px: every other position is an exact half-integer. (On a
    64-px object the canvas that merely covers this scan with the default margin has
    ``ox + W/2`` odd, the case the parity rule is for.)"""
    dataset = simulate_dataset(SimulationConfig(**{**SCENE, "object_size": 64, "scan": "grid", "scan_step": 2.5}))
    assert np.mean(dataset.positions_xy % 1 == 0.5) > 0.4
    return dataset


def test_half_integer_positions_fit_on_the_runners_canvas(ptychi_api):
    """pty-chi rounds p = x - ox - W/2, the simulator rounds x; half to even agrees at x.5 only
    when ox + W/2 is even, which scan_canvas ensures. On a canvas of the other parity the
    crops differ by a pixel and the fit breaks (shown below, so the check has power)."""
    dataset = half_integer_scene()
    (ox, oy), (height, width) = ptychi_runner.scan_canvas(dataset.positions_xy, dataset.patch_size, 4)
    assert (ox + width // 2) % 2 == 0 and (oy + height // 2) % 2 == 0
    predicted, _ = ptychi_forward(ptychi_api, dataset, float64=True)
    assert relative(counts(dataset), predicted) <= 1e-6
    odd = ((ox - 2, oy), (height, width + 2))  # ox + W/2 odd
    predicted_odd, _ = ptychi_forward(ptychi_api, dataset, float64=True, canvas=odd)
    assert relative(counts(dataset), predicted_odd) > 10 * TOLERANCE
