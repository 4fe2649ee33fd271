"""Iterative reconstructions written by other tools: who wrote them, where they sit, how they
started. PtychoPINN's pty-chi script records no frame; its rule is checked here on a canvas
sampled from a known field at the rule's coordinates."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from compare_models.imaging.registration import scanned_region
from compare_models.io.reconstruction import (
    WRITER_PTYCHOPINN,
    WRITER_THIS_PROJECT,
    load_reconstruction,
    place_by_ptychopinn_rule,
    place_in_object_frame,
    ptychopinn_canvas_origin,
    save_reconstruction,
)
from compare_models.study.ptychi_runner import OBJECT_INITIALISATION

N = 16
OBJECT_SHAPE = (64, 72)


def _field(rows, cols):
    """A smooth complex field, known at any real coordinate (object pixels)."""
    return (2 + np.cos(2 * np.pi * rows / 23.0) * np.sin(2 * np.pi * cols / 29.0)) * np.exp(
        1j * 0.8 * np.sin(2 * np.pi * (rows + 2 * cols) / 41.0))


def _ptychopinn_file(path, positions, canvas_shape):
    """A file with exactly the keys PtychoPINN's ptychi_reconstruct_tike.py writes, holding
    the field sampled where its rule says each canvas pixel is."""
    ox, oy = ptychopinn_canvas_origin(canvas_shape, positions)
    rr, cc = np.mgrid[0:canvas_shape[0], 0:canvas_shape[1]].astype(float)
    canvas = _field(rr + oy, cc + ox).astype(np.complex64)
    np.savez(path, reconstructed_object=canvas, reconstructed_probe=np.ones((N, N), np.complex64),
             algorithm=np.array("pty-chi"), timestamp=np.array("2026-12-01T07:19:02.981080"))
    return path


@pytest.fixture
def positions():
    rng = np.random.default_rng(5)
    return np.column_stack([rng.uniform(14.3, 55.7, 40), rng.uniform(13.6, 48.9, 40)])


def test_ptychopinn_file_is_recognised_and_placed_by_its_rule(tmp_path, positions):
    canvas_shape = (70, 75)  # odd W: round() rounds half to even, as the rule's writer did
    recon = load_reconstruction(_ptychopinn_file(tmp_path / "p.npz", positions, canvas_shape))
    assert recon.writer == WRITER_PTYCHOPINN and recon.initialisation == "unknown"
    assert recon.placed_by == "registration"  # nothing in the file places it
    placed = place_by_ptychopinn_rule(recon, positions, N)
    mean_x, mean_y = positions.mean(axis=0)
    assert placed.placed_by == "rule"
    assert placed.canvas_origin_xy == pytest.approx((mean_x - (round(75 / 2) + 1), mean_y - (round(70 / 2) + 1)))
    image, valid = place_in_object_frame(placed, OBJECT_SHAPE)
    # Valid pixels are the scan's, never the rest of the canvas.
    assert valid.any() and not (valid & ~scanned_region(positions, N, OBJECT_SHAPE)).any()
    assert not image[~valid].any()
    # A Fourier shift interpolates exactly only band-limited, periodic images; this small
    # canvas is neither, so it rings from the support's edge (errors fall off as 1/distance:
    # 0.1 at 2 px, 0.03 at 8 px). Far from the edge, and in the median, the field is where
    # the rule says; placing it one pixel off is ten times worse.
    inner = ndimage.distance_transform_edt(valid) > 6
    rows, cols = np.nonzero(inner)
    error = np.abs(image[rows, cols] - _field(rows, cols))
    assert error.max() < 0.05 and np.median(error) < 5e-3
    off_by_one = np.abs(image[rows, cols] - _field(rows, cols + 1))
    assert np.median(off_by_one) > 10 * np.median(error) and np.median(off_by_one) > 0.05


def test_integer_rule_origin_places_exactly(tmp_path):
    positions = np.array([[30.0, 31.0], [40.0, 33.0]])  # mean (35, 32): integer origin
    recon = load_reconstruction(_ptychopinn_file(tmp_path / "p.npz", positions, (60, 60)))
    placed = place_by_ptychopinn_rule(recon, positions, N)
    assert placed.canvas_origin_xy == (35.0 - 31, 32.0 - 31)
    image, valid = place_in_object_frame(placed, OBJECT_SHAPE)
    rows, cols = np.nonzero(valid)
    np.testing.assert_allclose(image[rows, cols], _field(rows, cols).astype(np.complex64), rtol=1e-6)


def test_own_files_record_their_initialisation_and_foreign_ones_are_unknown(tmp_path):
    obj = np.ones((8, 8), np.complex64)
    own = save_reconstruction(tmp_path / "own.npz", obj, algorithm="lsqml",
                              metadata={"canvas_origin_xy": [0, 0], "object_initialisation": OBJECT_INITIALISATION})
    older = save_reconstruction(tmp_path / "older.npz", obj, algorithm="lsqml", metadata={"canvas_origin_xy": [0, 0]})
    for path in (own, older):
        recon = load_reconstruction(path)
        assert recon.writer == WRITER_THIS_PROJECT and recon.initialisation == "blank (ones)"
        assert place_by_ptychopinn_rule(recon, np.zeros((1, 2)), N) is recon
    np.savez(tmp_path / "other.npz", reconstructed_object=obj, algorithm=np.array("lsqml"))
    other = load_reconstruction(tmp_path / "other.npz")
    assert other.writer == "unknown" and other.initialisation == "unknown"
    assert other.placed_by == "registration"
    # 'pty-chi' and a timestamp, but also metadata: not PtychoPINN's script.
    np.savez(tmp_path / "near.npz", reconstructed_object=obj, algorithm=np.array("pty-chi"),
             timestamp=np.array("t"), metadata=np.array("{}"))
    assert load_reconstruction(tmp_path / "near.npz").writer == "unknown"


def test_the_upstream_file_is_ptychopinns(upstream):
    recon = load_reconstruction(upstream / "ptychi" / "ptychi_reconstruction.npz")
    assert recon.writer == WRITER_PTYCHOPINN and recon.initialisation == "unknown"
    assert recon.object.shape == (272, 272) and recon.timestamp.startswith("2026-")
