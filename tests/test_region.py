"""Known-answer tests for compare_models.imaging.region: the hull, the common and scored regions."""

import numpy as np
import pytest
from scipy import ndimage

from compare_models.errors import RegistrationError
from compare_models.imaging.region import (
    REGION_RULE,
    common_region,
    erode_mask,
    erosion_px,
    scan_hull,
    scored_region,
)


def _grid(step=4.0, lo=20.0, hi=60.0):
    values = np.arange(lo, hi + 1e-9, step)
    xx, yy = np.meshgrid(values, values)
    return np.stack([xx.ravel(), yy.ravel()], axis=1)


def test_hull_of_a_rectangular_scan_is_the_rectangle_inclusive():
    hull = scan_hull(_grid(), (80, 90))
    expected = np.zeros((80, 90), bool)
    expected[20:61, 20:61] = True
    np.testing.assert_array_equal(hull, expected)


def test_hull_of_a_triangle_and_sub_pixel_positions():
    positions = np.array([[10.5, 10.5], [30.5, 10.5], [10.5, 30.5]])
    hull = scan_hull(positions, (40, 40))
    yy, xx = np.mgrid[:40, :40]
    expected = (xx >= 10.5) & (yy >= 10.5) & (xx + yy <= 41.0 + 1e-9)
    np.testing.assert_array_equal(hull, expected)


def test_hull_refuses_scans_with_no_area():
    with pytest.raises(RegistrationError, match="distinct"):
        scan_hull(np.array([[5.0, 5.0], [5.0, 5.0], [6.0, 6.0]]), (20, 20))
    with pytest.raises(RegistrationError, match="one line"):
        scan_hull(np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]), (20, 20))


def test_erosion_is_the_shift_rounded_up_plus_the_margin():
    assert erosion_px(0.0, 2) == 2
    assert erosion_px(0.3, 0) == 1
    assert erosion_px(np.hypot(2.3, 1.7), 2) == 3 + 2
    assert erosion_px(3.0 + 1e-12, 1) == 4
    with pytest.raises(RegistrationError, match="margin"):
        erosion_px(1.0, -1)


def test_erode_mask_matches_iterated_binary_erosion():
    rng = np.random.default_rng(0)
    mask = ndimage.gaussian_filter(rng.random((50, 60)), 3) > 0.48
    for k in (1, 3, 5):
        expected = ndimage.binary_erosion(mask, np.ones((3, 3), bool), iterations=k, border_value=0)
        np.testing.assert_array_equal(erode_mask(mask, k), expected)


def test_scored_region_is_the_same_whatever_each_arm_covers_beyond_the_hull():
    """Two arms that each cover the hull, one with much more beyond it: the region is the
    hull eroded by the shift and margin, identical to the one-arm region."""
    hull = scan_hull(_grid(), (80, 80))
    small = np.zeros((80, 80), bool)
    small[16:65, 16:65] = True
    big = np.ones((80, 80), bool)
    both = scored_region(hull, {"A": small, "B": big}, largest_shift_px=1.2, margin_px=2)
    alone = scored_region(hull, {"A": big}, largest_shift_px=1.2, margin_px=2)
    np.testing.assert_array_equal(both.mask, alone.mask)
    np.testing.assert_array_equal(both.mask, erode_mask(hull, 4))
    assert both.hull_lost_fraction == {"A": 0.0, "B": 0.0}
    record = both.to_dict()
    assert record["rule"] == REGION_RULE
    assert record["n_pixels"] == 33 * 33 and record["erosion_px"] == 4
    assert record["bbox_rows"] == [24, 57] and record["margin_px"] == 2
    assert record["largest_shift_px"] == pytest.approx(1.2)


def test_an_arm_with_holes_shrinks_the_region_for_everyone_and_says_how_much():
    hull = scan_hull(_grid(), (80, 80))
    full = np.ones((80, 80), bool)
    holed = full.copy()
    holed[30:40, 30:50] = False  # 200 of the hull's 41 * 41 pixels
    region = scored_region(hull, {"A": full, "B": holed}, margin_px=0)
    assert region.hull_lost_fraction["A"] == 0.0
    assert region.hull_lost_fraction["B"] == pytest.approx(200 / 41**2)
    assert not region.mask[30:40, 30:50].any()
    np.testing.assert_array_equal(region.mask, common_region(hull, {"A": full, "B": holed}))
    assert region.to_dict()["hull_lost_fraction_all_arms"] == pytest.approx(200 / 41**2)


def test_nothing_left_is_an_error_with_the_reason():
    hull = scan_hull(_grid(lo=20, hi=28), (50, 50))
    with pytest.raises(RegistrationError, match="lacks 100.0 %"):
        scored_region(hull, {"A": np.zeros((50, 50), bool)})
    with pytest.raises(RegistrationError, match="eroded by 7 px"):
        scored_region(hull, {"A": np.ones((50, 50), bool)}, largest_shift_px=4.5, margin_px=2)
