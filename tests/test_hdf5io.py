"""HDF5 interop: ptychodus pair and CXI readers, write_product, ptycho-study convert."""

from __future__ import annotations

import dataclasses
import shutil

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from compare_models.cli import study_main
from compare_models.errors import DatasetError, ReconstructionFileError
from compare_models.imaging.geometry import extract_patches
from compare_models.io.cxi import JOULES_PER_EV
from compare_models.io.dataset import Dataset
from compare_models.io.dispatch import load_dataset, load_hdf5_dataset
from compare_models.io.npz import save_dataset
from compare_models.io.ptychodus import (
    DEFAULT_PIXEL_SIZE_M,
    amplitude_to_counts,
    counts_to_amplitude,
    detector_pixel_size_m,
    read_product,
    save_ptychodus_dataset,
    write_product,
)
from compare_models.pipelines.convert import run_convert
from compare_models.study.simulator import SimulationConfig, simulate_dataset


@pytest.fixture(scope="module")
def simulated():
    """A small Poisson dataset with ground truth, patches and sub-pixel (jittered) positions."""
    config = SimulationConfig(patch_size=16, object_size=56, dose=500.0, scan="jittered", jitter=0.7, seed=3)
    return simulate_dataset(config)


def _assert_same_dataset(a: Dataset, b: Dataset, *, position_tol=1e-9):
    assert np.array_equal(a.diffraction_amplitude, b.diffraction_amplitude)
    assert a.diffraction_amplitude.dtype == b.diffraction_amplitude.dtype == np.float32
    np.testing.assert_allclose(a.positions_xy, b.positions_xy, rtol=0, atol=position_tol)
    np.testing.assert_allclose(a.positions_start_xy, b.positions_start_xy, rtol=0, atol=position_tol)
    assert np.array_equal(a.probe, b.probe)
    for x, y in ((a.object_truth, b.object_truth), (a.patches_truth, b.patches_truth), (a.scan_index, b.scan_index)):
        assert (x is None) == (y is None)
        if x is not None:
            assert np.array_equal(x, y)
    assert a.metadata == b.metadata


# --------------------------------------------------------------------------------------------
# Round trips


def test_npz_to_pair_to_npz_is_identity(simulated, tmp_path):
    npz = save_dataset(simulated, tmp_path / "in.npz")
    written = run_convert(npz, tmp_path / "pair")
    assert sorted(written) == ["diffraction", "ground_truth", "product"]
    assert h5py.File(written["diffraction"])["patterns"].dtype == np.uint32  # Poisson counts
    run_convert(tmp_path / "pair", tmp_path / "back.npz")
    back = load_dataset(tmp_path / "back.npz")
    _assert_same_dataset(load_dataset(npz), back)
    # Positions really are sub-pixel, so the 1e-9 px check is not trivially about integers.
    assert np.abs(simulated.positions_xy - np.round(simulated.positions_xy)).max() > 0.1


def test_pair_loads_from_any_of_its_files_by_content(simulated, tmp_path):
    written = save_ptychodus_dataset(simulated, tmp_path / "pair")
    from_dir = load_dataset(tmp_path / "pair")
    from_product = load_dataset(written["product"])
    from_diffraction = load_dataset(written["diffraction"])
    for other in (from_product, from_diffraction):
        _assert_same_dataset(from_dir, other)
    # Content, not the extension, picks the reader.
    odd = tmp_path / "pair" / "scan.dat"
    shutil.copy(written["product"], odd)
    _assert_same_dataset(from_dir, load_dataset(odd))


def test_defaults_are_flagged_and_not_read_back_as_measured(simulated, tmp_path):
    assert "pixel_size_m" not in simulated.metadata
    written = save_ptychodus_dataset(simulated, tmp_path / "pair")
    product = read_product(written["product"])
    assert product.pixel_size_xy_m == (DEFAULT_PIXEL_SIZE_M, DEFAULT_PIXEL_SIZE_M)
    assert "placeholder defaults" in product.comments and "pixel_size_m" in product.comments
    back = load_dataset(tmp_path / "pair")
    assert back.pixel_size_m is None and "photon_energy_eV" not in back.metadata


def test_given_physics_flow_into_metadata_and_detector_pixel(simulated, tmp_path):
    run_convert_kwargs = dict(pixel_size_m=7e-9, photon_energy_eV=8000.0, detector_object_distance_m=2.5)
    from compare_models.pipelines.convert import ConvertConfig

    npz = save_dataset(simulated, tmp_path / "in.npz")
    written = run_convert(npz, tmp_path / "pair", ConvertConfig(**run_convert_kwargs))
    back = load_dataset(tmp_path / "pair")
    assert back.pixel_size_m == 7e-9
    assert back.metadata["photon_energy_eV"] == 8000.0
    assert back.metadata["detector_object_distance_m"] == 2.5
    # lambda z / (N p) with lambda = h c / E: 1.5498e-10 m * 2.5 m / (16 * 7e-9 m).
    expected = 1.239841984e-6 / 8000.0 * 2.5 / (16 * 7e-9)
    with h5py.File(written["diffraction"]) as h5file:
        assert h5file["patterns"].attrs["detector_pixel_width_m"] == pytest.approx(expected, rel=1e-12)
    assert detector_pixel_size_m(7e-9, 8000.0, 2.5, 16) == pytest.approx(3.4594e-3, rel=1e-4)


def test_ground_truth_from_product_object_role(simulated, tmp_path):
    """A single product whose root attribute object_role is 'ground_truth' supplies the truth."""
    pair = tmp_path / "pair"
    written = save_ptychodus_dataset(simulated, pair)
    written["ground_truth"].unlink()
    write_product(
        written["product"],
        simulated.object_truth,
        probe=simulated.probe,
        positions_xy=simulated.positions_xy,
        object_role="ground_truth",
    )
    back = load_dataset(pair)
    assert np.array_equal(back.object_truth, simulated.object_truth)
    np.testing.assert_allclose(back.positions_xy, simulated.positions_xy, rtol=0, atol=1e-9)


def test_a_pair_whose_patches_are_not_one_per_position_loads_without_them(simulated, tmp_path):
    """Ground-truth patches of another count than the positions (a one-patch Y carried over
    from PtychoPINN's generate_patches_tool.py) are ignored with a warning, here too."""
    import h5py

    pair = tmp_path / "pair"
    written = save_ptychodus_dataset(simulated, pair)
    n = simulated.patch_size
    with h5py.File(written["ground_truth"], "r+") as h5file:
        del h5file["compare_models/patches"]
        h5file["compare_models/patches"] = np.ones((1, n, n), np.complex64)
    with pytest.warns(UserWarning, match=r"key 'Y' holds 1 patch .*not one per position"):
        back = load_dataset(pair)
    assert back.patches_truth is None
    assert np.array_equal(back.object_truth, simulated.object_truth)


def test_positions_map_into_a_ground_truth_on_another_grid(simulated, tmp_path):
    """The product's object is 10 columns narrower and centred elsewhere: positions must be
    placed on the ground truth's grid through the metres, not copied as pixels."""
    pair = tmp_path / "pair"
    save_ptychodus_dataset(simulated, pair, pixel_size_m=1e-8)
    truth_frame = simulated.positions_xy
    # Product grid: columns shifted by 4 (object starts 4 px right), 10 px narrower.
    product_positions = truth_frame - np.array([4.0, 0.0])
    h, w = simulated.object_truth.shape
    write_product(
        pair / "product.h5",
        np.ones((h, w - 10), np.complex64),
        probe=simulated.probe,
        positions_xy=product_positions,
        pixel_size_m=1e-8,
    )
    # The product's world frame puts its centre at 0; the truth's centre is 4 - 5 = -1 px
    # away, so rewrite the truth's centre to match one physical frame.
    with h5py.File(pair / "ground_truth.h5", "r+") as h5file:
        h5file["object"].attrs["center_x_m"] = (w / 2 - ((w - 10) / 2 + 4)) * 1e-8
    back = load_dataset(pair)
    np.testing.assert_allclose(back.positions_xy, truth_frame, rtol=0, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=6),
                  elements=st.floats(0, 3e4, width=32)))
def test_amplitude_counts_round_trip_is_bit_exact(amplitude):
    counts = amplitude_to_counts(amplitude)
    assert counts.dtype in (np.uint32, np.float64)
    assert np.array_equal(counts_to_amplitude(counts), amplitude)


def test_integer_counts_stored_as_integers():
    counts = np.array([[0, 1, 2, 17, 4_000_000]], dtype=np.float64)
    amplitude = np.sqrt(counts).astype(np.float32)
    stored = amplitude_to_counts(amplitude)
    assert stored.dtype == np.uint32 and np.array_equal(stored, counts.astype(np.uint32))
    assert amplitude_to_counts(np.float32([0.5])).dtype == np.float64  # 0.25 counts: not integer


# --------------------------------------------------------------------------------------------
# Agreement with ptychodus itself


def _ptychodus():
    return pytest.importorskip("ptychodus.api.io")


def test_written_product_loads_in_ptychodus_identically(tmp_path):
    io = _ptychodus()
    rng = np.random.default_rng(0)
    obj = (rng.normal(size=(40, 50)) + 1j * rng.normal(size=(40, 50))).astype(np.complex64)
    probe = (rng.normal(size=(16, 16)) + 1j * rng.normal(size=(16, 16))).astype(np.complex64)
    positions = rng.uniform(8, 32, size=(9, 2))
    path = write_product(
        tmp_path / "p.h5", obj, probe=probe, positions_xy=positions, pixel_size_m=2e-8,
        photon_energy_eV=9000.0, detector_object_distance_m=1.5, name="arm", comments="c",
        loss_values=[3.0, 2.0, 1.5],
    )
    product = io.load_product(path)
    assert np.array_equal(product.object_.get_layer(0), obj)
    assert np.array_equal(product.probes.get_array()[0, 0], probe)
    geometry = product.object_.get_geometry()
    x_ptychodus = geometry.map_probe_positions_to_object_x_px(product.probe_positions)
    y_ptychodus = geometry.map_probe_positions_to_object_y_px(product.probe_positions)
    # ptychodus centres the probe array at pixel (N-1)/2, this project at N/2: half a pixel.
    np.testing.assert_allclose(x_ptychodus + 0.5, positions[:, 0], rtol=0, atol=1e-9)
    np.testing.assert_allclose(y_ptychodus + 0.5, positions[:, 1], rtol=0, atol=1e-9)
    assert product.metadata.photon_energy_eV == 9000.0
    assert product.metadata.detector_distance_m == 1.5
    assert [loss.value for loss in product.losses] == [3.0, 2.0, 1.5]
    assert product.metadata.name == "arm"


def _ptychodus_patch_starts(io, path):
    """ptychodus 1.7's own mapping of a product's positions onto its object grid: the object
    coordinate (x, y) of each patch's pixel (0, 0), ``slice start + residual`` as
    ``ProbeGeometry.resolve_patch_bounds`` returns them (the split its simulator shifts by)."""
    product = io.load_product(path)
    geometry = product.object_.get_geometry()
    probe_geometry = product.probes.get_geometry()
    starts = []
    for position in product.probe_positions:
        point = geometry.map_coordinates_probe_to_object(position)
        bounds = probe_geometry.resolve_patch_bounds(point.x_px, point.y_px)
        starts.append((bounds.x_slice.start + bounds.dx, bounds.y_slice.start + bounds.dy))
    return np.array(starts)


def test_subpixel_patch_origins_agree_with_ptychodus(tmp_path):
    """The writer's half-pixel convention against ptychodus's own mapping, at sub-pixel
    positions: ptychodus puts each patch's first pixel where this project does, at
    (x - N/2, y - N/2). A writer half a pixel off fails (checked below), so the test has power."""
    io = _ptychodus()
    n = 16
    rng = np.random.default_rng(4)
    obj = np.ones((48, 52), np.complex64)
    positions = rng.uniform(9, 39, size=(12, 2))
    positions[:3] = np.floor(positions[:3]) + 0.5  # exact half-integers
    probe = np.ones((n, n), np.complex64)
    path = write_product(tmp_path / "p.h5", obj, probe=probe, positions_xy=positions)
    np.testing.assert_allclose(_ptychodus_patch_starts(io, path), positions - n / 2, rtol=0, atol=1e-9)
    off = write_product(tmp_path / "off.h5", obj, probe=probe, positions_xy=positions + [0.5, 0.0])
    assert np.abs(_ptychodus_patch_starts(io, off)[:, 0] - (positions[:, 0] - n / 2)).min() > 0.49


def test_patch_frames_agree_with_ptychodus_patch_bounds(tmp_path):
    """For integer patch starts, ptychodus's own patch slice equals this project's patch."""
    io = _ptychodus()
    n = 16
    obj = (np.arange(48 * 48).reshape(48, 48) * (1 + 1j)).astype(np.complex64)
    positions = np.array([[8.0, 8.0], [20.0, 13.0], [40.0, 31.0]])
    path = write_product(tmp_path / "p.h5", obj, probe=np.ones((n, n), np.complex64), positions_xy=positions)
    product = io.load_product(path)
    geometry = product.object_.get_geometry()
    probe_geometry = product.probes.get_geometry()
    ours = extract_patches(obj, positions, n)
    for k, position in enumerate(product.probe_positions):
        point = geometry.map_coordinates_probe_to_object(position)
        bounds = probe_geometry.resolve_patch_bounds(point.x_px, point.y_px)
        assert bounds.dx == pytest.approx(0, abs=1e-9) and bounds.dy == pytest.approx(0, abs=1e-9)
        assert np.array_equal(obj[bounds.y_slice, bounds.x_slice], ours[k])


def test_product_saved_by_ptychodus_loads_here(tmp_path):
    io = _ptychodus()
    from ptychodus.api.assemble import AssembledDiffractionData
    from ptychodus.api.geometry import PixelGeometry
    from ptychodus.api.object import Object, ObjectCenter
    from ptychodus.api.probe import ProbeSequence
    from ptychodus.api.probe_positions import ProbePosition, ProbePositionSequence
    from ptychodus.api.product import Product, ProductMetadata

    rng = np.random.default_rng(1)
    n, h, w, pixel = 8, 30, 36, 5e-9
    obj = (rng.normal(size=(1, h, w)) + 1j * rng.normal(size=(1, h, w))).astype(np.complex64)
    probe = (rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n))).astype(np.complex64)
    center = (1.3e-7, -2.1e-7)
    ptycho_px = rng.uniform(6, 22, size=(5, 2))  # ptychodus object pixels
    indexes = np.array([7, 3, 11, 0, 5])
    points = [
        ProbePosition(int(i), center[0] + pixel * (x - (w - 1) / 2), center[1] + pixel * (y - (h - 1) / 2))
        for i, (x, y) in zip(indexes, ptycho_px, strict=True)
    ]
    product = Product(
        metadata=ProductMetadata(name="beamline", comments="", detector_distance_m=2.0,
                                 photon_energy_eV=7000.0, probe_photon_count=0.0,
                                 exposure_time_s=0.1, mass_attenuation_m2_per_kg=0.0,
                                 tomography_angle_deg=0.0),
        probe_positions=ProbePositionSequence(points),
        probes=ProbeSequence(array=probe, opr_weights=None, pixel_geometry=PixelGeometry(pixel, pixel)),
        object_=Object(array=obj, pixel_geometry=PixelGeometry(pixel, pixel), center=ObjectCenter(*center)),
        losses=[],
    )
    io.save_product(tmp_path / "product.h5", product)
    # Patterns stored in another order, plus one pattern without a position.
    pattern_indexes = np.array([0, 3, 5, 7, 11, 99])
    counts = rng.poisson(20.0, size=(6, n, n)).astype(np.uint16)
    io.save_diffraction_data(
        tmp_path / "diffraction.h5",
        AssembledDiffractionData(pattern_indexes, counts, PixelGeometry(75e-6, 75e-6), np.zeros((n, n), bool)),
    )
    with pytest.warns(UserWarning, match="no position"):
        dataset = load_dataset(tmp_path)
    np.testing.assert_allclose(dataset.positions_xy, ptycho_px + 0.5, rtol=0, atol=1e-9)
    rows = [list(pattern_indexes).index(i) for i in indexes]
    assert np.array_equal(dataset.diffraction_amplitude, np.sqrt(counts[rows].astype(np.float64)).astype(np.float32))
    assert np.array_equal(dataset.probe, probe)
    assert dataset.object_truth is None
    assert dataset.metadata["pixel_size_m"] == pixel
    assert dataset.metadata["photon_energy_eV"] == 7000.0
    assert dataset.metadata["detector_object_distance_m"] == 2.0
    contents = read_product(tmp_path / "product.h5")
    assert np.array_equal(contents.object_image, obj[0])


# --------------------------------------------------------------------------------------------
# Malformed files


@pytest.fixture()
def pair(simulated, tmp_path):
    save_ptychodus_dataset(simulated, tmp_path / "pair")
    return tmp_path / "pair"


def test_missing_required_attribute(pair):
    with h5py.File(pair / "product.h5", "r+") as h5file:
        del h5file.attrs["photon_energy_eV"]
    with pytest.raises(DatasetError, match=r"product\.h5.*root group.*'photon_energy_eV'"):
        load_dataset(pair)
    with h5py.File(pair / "product.h5", "r+") as h5file:
        h5file.attrs["photon_energy_eV"] = 1e4
        del h5file["object"].attrs["center_x_m"]
    with pytest.raises(ReconstructionFileError, match=r"dataset '/object'.*'center_x_m'"):
        read_product(pair / "product.h5")


def test_real_valued_object(pair):
    with h5py.File(pair / "ground_truth.h5", "r+") as h5file:
        attrs = dict(h5file["object"].attrs)
        real = np.abs(h5file["object"][()])
        del h5file["object"]
        h5file.create_dataset("object", data=real)
        h5file["object"].attrs.update(attrs)
    with pytest.raises(DatasetError, match=r"ground_truth\.h5.*'object'.*float32.*expected a complex"):
        load_dataset(pair)


def test_position_count_mismatch(pair):
    with h5py.File(pair / "product.h5", "r+") as h5file:
        x = h5file["probe_position_x_m"][()]
        del h5file["probe_position_x_m"]
        h5file.create_dataset("probe_position_x_m", data=x[:-1])
    with pytest.raises(DatasetError, match=r"position count mismatch.*probe_position_x_m"):
        load_dataset(pair)


def test_position_without_pattern(pair):
    with h5py.File(pair / "diffraction.h5", "r+") as h5file:
        h5file["indexes"][0] = 10_000
    with pytest.raises(DatasetError, match=r"1 of \d+ positions.*indexes \[0\]"):
        load_dataset(pair)


def test_pair_missing_diffraction_and_unknown_hdf5(pair, tmp_path):
    (pair / "diffraction.h5").unlink()
    with pytest.raises(DatasetError, match=r"needs a diffraction file"):
        load_dataset(pair)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as h5file:
        h5file.create_dataset("something", data=[1, 2])
    with pytest.raises(DatasetError, match="unknown layout"):
        load_dataset(other)
    with pytest.raises(DatasetError, match="not a dataset file"):
        (tmp_path / "text.npz").write_text("hello")
        load_dataset(tmp_path / "text.npz")


# --------------------------------------------------------------------------------------------
# CXI


def _write_cxi(path, counts, translation_m, probe, *, energy_eV, distance_m, det_pixel_m):  # noqa: N803
    """A CXI 1.6 file as written by beamline software: data under the detector with a soft
    link from data_1, translations (n, 3) in metres, illumination under source_1."""
    with h5py.File(path, "w") as h5file:
        h5file.create_dataset("cxi_version", data=160)
        det = h5file.create_group("/entry_1/instrument_1/detector_1")
        det.create_dataset("data", data=counts)
        det.create_dataset("distance", data=distance_m)
        det.create_dataset("x_pixel_size", data=det_pixel_m)
        det.create_dataset("y_pixel_size", data=det_pixel_m)
        source = h5file.create_group("/entry_1/instrument_1/source_1")
        source.create_dataset("energy", data=energy_eV * JOULES_PER_EV)
        source.create_dataset("illumination", data=probe)
        geom = h5file.create_group("/entry_1/sample_1/geometry_1")
        geom.create_dataset("translation", data=translation_m)
        data = h5file.create_group("/entry_1/data_1")
        data["data"] = h5py.SoftLink("/entry_1/instrument_1/detector_1/data")
        data["translation"] = h5py.SoftLink("/entry_1/sample_1/geometry_1/translation")


def test_cxi_reader(tmp_path):
    rng = np.random.default_rng(2)
    n, m = 8, 6
    energy, distance, det_pixel = 6200.0, 1.2, 55e-6
    pixel = 1.239841984e-6 / energy * distance / (n * det_pixel)  # lambda z / (N p)
    scan_px = rng.uniform(-3, 12, size=(m, 2))
    translation = np.column_stack([scan_px * pixel, np.full(m, 0.25)])  # z is ignored
    counts = rng.poisson(9.0, size=(m, n, n)).astype(np.int32)
    probe = (rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n))).astype(np.complex64)
    path = tmp_path / "scan.cxi"
    _write_cxi(path, counts, translation, probe, energy_eV=energy, distance_m=distance, det_pixel_m=det_pixel)
    dataset = load_dataset(path)
    assert np.array_equal(dataset.diffraction_amplitude, np.sqrt(counts.astype(np.float64)).astype(np.float32))
    expected = scan_px - scan_px.min(axis=0) + n / 2  # leftmost/topmost patch starts at 0
    np.testing.assert_allclose(dataset.positions_xy, expected, rtol=0, atol=1e-9)
    assert np.array_equal(dataset.probe, probe)
    assert dataset.pixel_size_m == pytest.approx(pixel, rel=1e-12)
    assert dataset.metadata["photon_energy_eV"] == pytest.approx(energy, rel=1e-12)
    assert dataset.metadata["detector_object_distance_m"] == distance
    # And CXI converts to a ptychodus pair and back.
    run_convert(path, tmp_path / "pair")
    back = load_hdf5_dataset(tmp_path / "pair")
    _assert_same_dataset(dataset, dataclasses.replace(back, source=None))


def test_cxi_translation_count_mismatch(tmp_path):
    n = 8
    path = tmp_path / "bad.cxi"
    _write_cxi(path, np.ones((4, n, n)), np.zeros((3, 3)), np.ones((n, n), np.complex64),
               energy_eV=1e4, distance_m=1.0, det_pixel_m=5e-5)
    with pytest.raises(DatasetError, match=r"bad\.cxi: position count mismatch.*translation.*3 rows.*4 patterns"):
        load_dataset(path)


# --------------------------------------------------------------------------------------------
# CLI


def test_cli_convert_round_trip(simulated, tmp_path):
    npz = save_dataset(simulated, tmp_path / "in.npz")
    runner = CliRunner()
    result = runner.invoke(study_main, ["convert", str(npz), str(tmp_path / "pair"), "--pixel-size", "1e-8"])
    assert result.exit_code == 0, result.output
    assert "product:" in result.output and "ground_truth:" in result.output
    result = runner.invoke(study_main, ["convert", str(tmp_path / "pair"), str(tmp_path / "back.npz")])
    assert result.exit_code == 0, result.output
    back = load_dataset(tmp_path / "back.npz")
    assert back.pixel_size_m == 1e-8
    np.testing.assert_allclose(back.positions_xy, simulated.positions_xy, rtol=0, atol=1e-9)
    (tmp_path / "pair" / "diffraction.h5").unlink()
    result = runner.invoke(study_main, ["convert", str(tmp_path / "pair"), str(tmp_path / "x.npz")])
    assert result.exit_code == 2 and "needs a diffraction file" in result.output


def test_reconstruct_writes_a_product_beside_its_npz(tiny_study):
    """`ptycho-study reconstruct` also writes ptychi_product.h5: same object and probe as the
    NPZ, positions on the reconstruction's canvas, opened by ptychodus itself."""
    if tiny_study["ptychi"] is None:
        pytest.skip("pty-chi extra not installed")
    from compare_models.io.dispatch import load_dataset
    from compare_models.io.ptychodus import read_product
    from compare_models.io.reconstruction import load_reconstruction

    recon = load_reconstruction(tiny_study["ptychi"])
    product_path = tiny_study["ptychi"].parent / "ptychi_product.h5"
    product = read_product(product_path)
    np.testing.assert_array_equal(product.object_image, recon.object)
    np.testing.assert_array_equal(product.probe, recon.probe)
    positions = load_dataset(tiny_study["test"]).positions_xy
    np.testing.assert_allclose(product.positions_xy + np.asarray(recon.canvas_origin_xy), positions, atol=1e-9)
    loaded = _ptychodus().load_product(product_path)
    assert np.array_equal(loaded.object_.get_layer(0), recon.object)
