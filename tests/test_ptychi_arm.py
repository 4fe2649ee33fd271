"""The pty-chi arm: canvas and position conventions, the reconstruction file reader, placement,
and one short LSQML run on a tiny noiseless dataset (needs the ptychi extra)."""

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from compare_models.cli import study_main
from compare_models.errors import ConfigError, ReconstructionFileError
from compare_models.io.npz import save_dataset
from compare_models.io.reconstruction import (
    load_reconstruction,
    place_in_object_frame,
    save_reconstruction,
)
from compare_models.study import ptychi_runner as ptychi_arm
from compare_models.study.ptychi_runner import (
    ReconstructConfig,
    from_ptychi_positions,
    scan_canvas,
    to_ptychi_positions,
)
from compare_models.study.simulator import SimulationConfig, simulate_dataset

# --------------------------------------------------------------------------------------------
# Config


def test_config_validation_names_the_setting():
    assert ReconstructConfig().validate().batch_size_for("cpu") == 50
    assert ReconstructConfig().validate().batch_size_for("cuda") == 400
    assert ReconstructConfig(algorithm="epie").batch_size_for("cuda") == 1
    assert ReconstructConfig(batch_size=7).batch_size_for("cuda") == 7
    assert ReconstructConfig(algorithm="epie").to_dict()["batch_size"] is None
    with pytest.raises(ConfigError, match="device"):
        ReconstructConfig().batch_size_for("tpu")
    for bad, name in [
        ({"algorithm": "raar"}, "algorithm"),
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"device": "tpu"}, "device"),
        ({"n_threads": 0}, "n_threads"),
    ]:
        with pytest.raises(ConfigError, match=name):
            ReconstructConfig(**bad).validate()


# --------------------------------------------------------------------------------------------
# Canvas and positions


def _ptychi_patch_start(pos, canvas_side, patch_size):
    """pty-chi's rule, as its source states it: buffer centre round(S/2) - 0.5 for position 0,
    patch start = centre - (N - 1)/2 (``ptychi.data_structures.object``, ``image_proc``)."""
    return pos + (np.round(canvas_side / 2) - 0.5) - (patch_size - 1) / 2


@settings(max_examples=60, deadline=None)
@given(
    n_half=st.integers(4, 32),
    margin=st.integers(0, 6),
    seed=st.integers(0, 2**31 - 1),
    count=st.integers(1, 40),
    integer=st.booleans(),
)
def test_canvas_covers_the_scan_and_positions_map_to_the_same_patch(n_half, margin, seed, count, integer):
    rng = np.random.default_rng(seed)
    n_side = 2 * n_half
    positions = rng.uniform(n_half, n_half + 200, size=(count, 2))
    if integer:
        positions = np.round(positions)
    (ox, oy), (height, width) = scan_canvas(positions, n_side, margin)
    assert height % 2 == 0 and width % 2 == 0
    # pty-chi rounds p = x - ox - W/2 half to even; it agrees with round(x) at every position,
    # half-integers included, only when ox + W/2 is even (tests/test_forward_model.py).
    assert (ox + width // 2) % 2 == 0 and (oy + height // 2) % 2 == 0
    # Every patch, with its interpolation neighbour, lies at least `margin` inside the canvas.
    starts = positions - n_side / 2 - np.array([ox, oy])
    assert (starts >= margin).all()
    assert (starts[:, 0] + n_side + 1 + margin <= width + 1).all()
    assert (starts[:, 1] + n_side + 1 + margin <= height + 1).all()
    pos_x, pos_y = to_ptychi_positions(positions, (ox, oy), (height, width))
    # pty-chi's first patch pixel is this project's (x - N/2, y - N/2) on the canvas.
    np.testing.assert_allclose(_ptychi_patch_start(pos_x, width, n_side), starts[:, 0], atol=1e-9)
    np.testing.assert_allclose(_ptychi_patch_start(pos_y, height, n_side), starts[:, 1], atol=1e-9)
    back = from_ptychi_positions(pos_x, pos_y, (ox, oy), (height, width))
    np.testing.assert_allclose(back, positions, atol=1e-9)


def test_odd_canvas_is_refused():
    with pytest.raises(ValueError, match="even"):
        to_ptychi_positions(np.zeros((1, 2)), (0, 0), (31, 32))


# --------------------------------------------------------------------------------------------
# Reader and writer


def _complex_image(shape, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)


def test_written_file_round_trips(tmp_path):
    obj, probe = _complex_image((20, 24)), _complex_image((8, 8), 1)
    path = save_reconstruction(
        tmp_path / "r.npz", obj, probe=probe, algorithm="epie",
        metadata={"canvas_origin_xy": [-3, 5], "wall_time_s": 1.5},
    )
    with np.load(path, allow_pickle=False) as raw:  # plain arrays only
        assert raw["algorithm"].dtype.kind == "U"
        assert json.loads(raw["metadata"].item())["canvas_origin_xy"] == [-3, 5]
    recon = load_reconstruction(path)
    np.testing.assert_array_equal(recon.object, obj)
    np.testing.assert_array_equal(recon.probe, probe)
    assert recon.algorithm == "epie"
    assert recon.canvas_origin_xy == (-3.0, 5.0)
    assert recon.wall_time_s == 1.5
    assert recon.placed_by == "frame"
    assert recon.source == str(path)


def test_other_writers_file_is_marked_for_registration(tmp_path):
    obj = _complex_image((1, 10, 6))  # pty-chi's (slices, H, W) with one slice
    np.savez(tmp_path / "other.npz", reconstructed_object=obj)
    recon = load_reconstruction(tmp_path / "other.npz")
    assert recon.object.shape == (10, 6)
    assert recon.probe is None and recon.canvas_origin_xy is None and recon.wall_time_s is None
    assert recon.algorithm == "unknown" and recon.placed_by == "registration"
    image, valid = place_in_object_frame(recon, (14, 14))
    # Centred: rows 2..11, columns 4..9.
    np.testing.assert_array_equal(image[2:12, 4:10], obj[0])
    assert valid.sum() == 60 and valid[2:12, 4:10].all()
    # Larger than the grid: centre-cropped.
    image, valid = place_in_object_frame(recon, (4, 4))
    np.testing.assert_array_equal(image, obj[0, 3:7, 1:5])
    assert valid.all()


def test_pickled_metadata_is_skipped_with_a_warning(tmp_path):
    path = tmp_path / "legacy.npz"
    np.savez(path, reconstructed_object=_complex_image((4, 4)),
             metadata=np.array([{"a": 1}], dtype=object), algorithm=np.array("lsqml"))
    with pytest.warns(UserWarning, match="pickled"):
        recon = load_reconstruction(path)
    assert recon.metadata == {} and recon.algorithm == "lsqml"


@pytest.mark.parametrize(
    "arrays, match",
    [
        ({"object": _complex_image((4, 4))}, "missing key 'reconstructed_object'"),
        ({"reconstructed_object": np.ones((4, 4))}, "float64; expected a complex"),
        ({"reconstructed_object": _complex_image((2, 4, 4))}, r"shape \(2, 4, 4\)"),
        ({"reconstructed_object": np.full((4, 4), np.nan + 0j)}, "NaN"),
        ({"reconstructed_object": np.array([1 + 0j, None], dtype=object)}, "pickled"),
        ({"reconstructed_object": _complex_image((4, 4)),
          "reconstructed_probe": _complex_image((3, 4, 4))}, "reconstructed_probe"),
    ],
)
def test_broken_files_name_the_key(tmp_path, arrays, match):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ReconstructionFileError, match=match) as info:
        load_reconstruction(path)
    assert str(path) in str(info.value)


def test_not_an_npz_or_missing(tmp_path):
    text = tmp_path / "notes.npz"
    text.write_text("hello")
    with pytest.raises(ReconstructionFileError, match="not an NPZ"):
        load_reconstruction(text)
    with pytest.raises(ReconstructionFileError, match="no such file"):
        load_reconstruction(tmp_path / "absent.npz")
    with pytest.raises(ReconstructionFileError, match="directory"):
        load_reconstruction(tmp_path)
    broken = tmp_path / "broken.npz"
    with zipfile.ZipFile(broken, "w") as archive:
        archive.writestr("reconstructed_object.npy", b"not an array")
    with pytest.raises(ReconstructionFileError):
        load_reconstruction(broken)


# --------------------------------------------------------------------------------------------
# Placement in the object frame


@settings(max_examples=60, deadline=None)
@given(
    ox=st.integers(-12, 20), oy=st.integers(-12, 20),
    h=st.integers(1, 14), w=st.integers(1, 14),
)
def test_integer_origin_places_every_pixel_exactly(tmp_path_factory, ox, oy, h, w):
    obj = _complex_image((h, w), 3)
    shape = (16, 12)
    path = save_reconstruction(
        tmp_path_factory.mktemp("p") / "r.npz", obj, algorithm="x",
        metadata={"canvas_origin_xy": [ox, oy]},
    )
    image, valid = place_in_object_frame(load_reconstruction(path), shape)
    expected = np.zeros(shape, np.complex64)
    expected_valid = np.zeros(shape, bool)
    for r in range(h):
        for c in range(w):
            if 0 <= r + oy < shape[0] and 0 <= c + ox < shape[1]:
                expected[r + oy, c + ox] = obj[r, c]
                expected_valid[r + oy, c + ox] = True
    np.testing.assert_array_equal(image, expected)
    np.testing.assert_array_equal(valid, expected_valid)


def test_fractional_origin_samples_a_smooth_image_at_the_right_place(tmp_path):
    # A band-limited periodic image on the canvas, known analytically everywhere.
    size = 32

    def field(rows, cols):
        return np.exp(2j * np.pi * (2 * cols / size)) * (1.5 + np.cos(2 * np.pi * rows / size))

    rr, cc = np.mgrid[0:size, 0:size].astype(float)
    obj = field(rr, cc).astype(np.complex64)
    ox, oy = 3.25, 1.5
    path = save_reconstruction(tmp_path / "f.npz", obj, algorithm="x",
                               metadata={"canvas_origin_xy": [ox, oy]})
    image, valid = place_in_object_frame(load_reconstruction(path), (40, 40))
    rows, cols = np.nonzero(valid)
    # Object pixel (R, C) is canvas coordinate (R - oy, C - ox).
    expected = field(rows - oy, cols - ox)
    np.testing.assert_allclose(image[rows, cols], expected, atol=1e-4)
    assert valid.sum() == (size - 1) * (size - 1)
    assert not image[~valid].any()


# --------------------------------------------------------------------------------------------
# The CLI without the extra


def test_cli_without_ptychi_says_how_to_install(tmp_path, monkeypatch):
    data = save_dataset(
        simulate_dataset(SimulationConfig(patch_size=16, object_size=40, scan_step=8)),
        tmp_path / "d.npz",
    )
    monkeypatch.setattr(ptychi_arm, "ptychi_missing", lambda: "ptychi")
    result = CliRunner().invoke(study_main, ["reconstruct", "--data", str(data), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert lines == ["error: pty-chi is not installed; install it with: "
                     "pip install -c constraints.txt -e '.[ptychi]'"]


# --------------------------------------------------------------------------------------------
# A real run (needs the ptychi extra; CI installs it)

needs_ptychi = pytest.mark.skipif(
    ptychi_arm.ptychi_missing() is not None, reason="the ptychi extra is not installed"
)
EPOCHS = 40


@pytest.fixture(scope="module")
def lsqml_run(tmp_path_factory):
    """A tiny noiseless jittered scan (N = 32, 144 positions, object 112 px; phase from
    'coins', which has strong contrast at all scales) reconstructed with 40 LSQML epochs through the CLI, in a fresh interpreter that reports whether the
    calling process ever imported torch."""
    root = tmp_path_factory.mktemp("ptychi")
    dataset = simulate_dataset(
        SimulationConfig(patch_size=32, object_size=112, scan="jittered", jitter=0.7,
                         scan_step=7, poisson_noise=False, seed=3, phase_image="coins")
    )
    data = save_dataset(dataset, root / "data.npz")
    out = root / "out"
    code = (
        "import sys\n"
        "from compare_models.cli import study_main\n"
        f"args = ['reconstruct', '--data', {str(data)!r}, '--out', {str(out)!r},\n"
        f"        '--algorithm', 'lsqml', '--epochs', '{EPOCHS}', '--seed', '1']\n"
        "study_main.main(args, standalone_mode=False)\n"
        "print('TORCH_IN_PARENT', 'torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dataset, out, proc


def _scanned_box(dataset):
    """Rows and columns between the outermost scan centres: every pixel well illuminated."""
    low = np.ceil(dataset.positions_xy.min(axis=0)).astype(int)
    high = np.floor(dataset.positions_xy.max(axis=0)).astype(int)
    return slice(low[1], high[1] + 1), slice(low[0], high[0] + 1)


def _gauge_errors(image, truth):
    """Mean amplitude and phase errors after the gauge of a reconstruction (docs/design.md,
    "A fair comparison"): the least-squares complex factor, then an amplitude-weighted plane fitted to
    the relative phase, then the factor again."""
    image, truth = image.astype(np.complex128), truth.astype(np.complex128)
    rows, cols = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    design = np.stack([np.ones(image.size), cols.ravel(), rows.ravel()], axis=1)
    c = np.vdot(image, truth) / np.vdot(image, image)
    relative = (c * image * np.conj(truth)).ravel()
    weight = np.abs(relative)
    plane = np.linalg.lstsq(design * weight[:, None], np.angle(relative) * weight, rcond=None)[0]
    image = image * np.exp(-1j * (design @ plane)).reshape(image.shape)
    fitted = image * (np.vdot(image, truth) / np.vdot(image, image))
    amplitude = np.mean(np.abs(np.abs(fitted) - np.abs(truth)))
    phase = np.mean(np.abs(np.angle(fitted * np.conj(truth))))
    return amplitude, phase


@needs_ptychi
@pytest.mark.ptychi
def test_run_leaves_the_calling_process_torch_free_and_reports_progress(lsqml_run):
    _, out, proc = lsqml_run
    assert "TORCH_IN_PARENT False" in proc.stdout
    assert "reconstruction:" in proc.stdout
    assert f"{EPOCHS}/{EPOCHS}" in proc.stderr  # per-epoch progress bar reached the end
    lines = (out / "ptychi_loss.csv").read_text().splitlines()
    assert lines[0] == "epoch,loss,seconds" and len(lines) == EPOCHS + 1


@needs_ptychi
@pytest.mark.ptychi
def test_written_file_round_trips_with_provenance(lsqml_run):
    dataset, out, _ = lsqml_run
    recon = load_reconstruction(out / "ptychi_reconstruction.npz")
    meta = recon.metadata
    assert recon.algorithm == "lsqml" and recon.placed_by == "frame"
    assert meta["epochs"] == EPOCHS and len(meta["loss_history"]) == EPOCHS
    assert meta["loss_history"][-1] < meta["loss_history"][0] / 100
    assert meta["ptychi_version"] and meta["torch_version"] and meta["device"] == "cpu"
    assert meta["batch_size"] == 50 and meta["config"]["batch_size"] is None  # the CPU default
    assert recon.wall_time_s > 0 and meta["total_wall_time_s"] >= recon.wall_time_s
    assert meta["config"]["seed"] == 1 and meta["config"]["refine_probe"] is False
    assert list(recon.canvas_origin_xy) == meta["canvas_origin_xy"]
    # The probe was fixed: scaled by 1/N into pty-chi and back by N, it is probeGuess again.
    np.testing.assert_allclose(recon.probe, dataset.probe, rtol=0, atol=1e-4 * np.abs(dataset.probe).max())


@needs_ptychi
@pytest.mark.ptychi
def test_lsqml_beats_the_blank_start_and_the_frame_places_it(lsqml_run):
    from skimage.registration import phase_cross_correlation

    dataset, out, _ = lsqml_run
    truth = dataset.object_truth
    recon = load_reconstruction(out / "ptychi_reconstruction.npz")
    image, valid = place_in_object_frame(recon, truth.shape)
    box = _scanned_box(dataset)
    assert valid[box].all()
    # Placed by the recorded frame only: the residual shift to the truth is below 0.5 px.
    shift, _, _ = phase_cross_correlation(truth[box], image[box], upsample_factor=20)
    assert np.hypot(*shift) < 0.5, shift
    # Registered errors far below those of the blank (all-ones) starting object.
    amp, phase = _gauge_errors(image[box], truth[box])
    amp0, phase0 = _gauge_errors(np.ones_like(image[box]), truth[box])
    assert amp < 0.25 * amp0, (amp, amp0)
    assert phase < 0.25 * phase0, (phase, phase0)
    # With the exact, fixed probe the object keeps physical units: the gauge is near 1.
    c = np.vdot(image[box], truth[box]) / np.vdot(image[box], image[box])
    assert abs(abs(c) - 1) < 0.05, c


@pytest.mark.e2e
@needs_ptychi
@pytest.mark.ptychi
def test_reconstructions_sharing_one_child_give_each_ones_own_numbers():
    """The full scan and a half set in one pty-chi process (as reconstruct --half-sets runs
    them) give exactly what the half set gives in a process of its own: nothing the first task
    leaves in torch's process-wide state reaches the second."""
    from compare_models.imaging.halfsets import split_half_sets

    dataset = simulate_dataset(SimulationConfig(patch_size=16, object_size=48, scan="jittered", jitter=0.5,
                                                scan_step=4, seed=2))
    half = dataset.subset(split_half_sets(dataset.positions_xy, "checkerboard").half2)
    config = ReconstructConfig(epochs=3, seed=5, batch_size=8).validate()
    full_shared, half_shared = ptychi_arm.run_ptychi_jobs([dataset, half], config, progress=False)
    half_alone = ptychi_arm.run_ptychi(half, config, progress=False)
    np.testing.assert_array_equal(half_shared.object, half_alone.object)
    np.testing.assert_array_equal(half_shared.loss_history, half_alone.loss_history)
    np.testing.assert_array_equal(half_shared.probe, half_alone.probe)
    assert half_shared.canvas_origin_xy == half_alone.canvas_origin_xy
    assert half_shared.info["n_positions"] == half.n_positions < full_shared.info["n_positions"]
    assert full_shared.object.shape != half_shared.object.shape or full_shared.loss_history[0] != half_shared.loss_history[0]
    # The child's start-up is shared and counted in each.
    for result in (full_shared, half_shared):
        assert result.total_wall_time_s >= result.wall_time_s > 0


def test_jobs_need_one_label_per_dataset():
    dataset = simulate_dataset(SimulationConfig(patch_size=16, object_size=48, scan_step=8))
    with pytest.raises(ValueError, match="one label per dataset"):
        ptychi_arm.run_ptychi_jobs([dataset], ReconstructConfig(), labels=["a", "b"])
    with pytest.raises(ValueError, match="at least one dataset"):
        ptychi_arm.run_ptychi_jobs([], ReconstructConfig())
