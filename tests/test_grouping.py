"""Neighbour groups on a grid, where the nearest neighbours are known."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compare_models.models.grouping import group_neighbours, group_offsets


def _grid(nx=5, ny=4, step=3.0):
    xs, ys = np.meshgrid(np.arange(nx) * step, np.arange(ny) * step)
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def test_gridsize_one_is_identity():
    groups = group_neighbours(_grid(), 1)
    np.testing.assert_array_equal(groups[:, 0], np.arange(20))


def test_corner_of_a_grid_groups_with_its_three_nearest():
    positions = _grid(step=3.0)
    groups = group_neighbours(positions, 2)
    assert groups.shape == (20, 4)
    np.testing.assert_array_equal(groups[:, 0], np.arange(20))
    # Corner 0 at (0, 0): nearest are (3, 0) idx 1 and (0, 3) idx 5 at distance 3,
    # then (3, 3) idx 6 at distance 3*sqrt(2).
    assert set(groups[0, 1:3]) == {1, 5} and groups[0, 3] == 6


def test_companions_are_the_nearest_when_k_equals_c():
    rng = np.random.default_rng(1)
    positions = rng.uniform(0, 50, (60, 2))
    groups = group_neighbours(positions, 2)
    for i in range(60):
        distances = np.hypot(*(positions - positions[i]).T)
        distances[i] = np.inf
        worst_chosen = distances[groups[i, 1:]].max()
        assert np.sort(distances)[2] == pytest.approx(worst_chosen)


def test_seeded_draw_is_deterministic_and_within_candidates():
    positions = _grid(8, 8, 2.0)
    a = group_neighbours(positions, 2, n_candidates=7, seed=3)
    b = group_neighbours(positions, 2, n_candidates=7, seed=3)
    c = group_neighbours(positions, 2, n_candidates=7, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    for i in range(len(positions)):
        distances = np.hypot(*(positions - positions[i]).T)
        cutoff = np.sort(distances)[6]
        assert (distances[a[i, 1:]] <= cutoff + 1e-9).all()
        assert len(set(a[i])) == 4


def test_offsets_are_relative_to_the_seed():
    positions = _grid()
    groups = group_neighbours(positions, 2)
    offsets = group_offsets(positions, groups)
    np.testing.assert_array_equal(offsets[:, 0], 0)
    np.testing.assert_allclose(offsets[0, 3], [3.0, 3.0])


def test_too_few_positions():
    with pytest.raises(ValueError, match="at least 4"):
        group_neighbours(_grid(1, 3), 2)


@settings(max_examples=30, deadline=None)
@given(m=st.integers(4, 80), gridsize=st.sampled_from([1, 2]), seed=st.integers(0, 5))
def test_one_group_per_position_of_distinct_members(m, gridsize, seed):
    positions = np.random.default_rng(seed).uniform(0, 30, (m, 2))
    groups = group_neighbours(positions, gridsize, n_candidates=gridsize**2 + 2, seed=seed)
    assert groups.shape == (m, gridsize**2)
    np.testing.assert_array_equal(groups[:, 0], np.arange(m))
    assert all(len(set(row)) == gridsize**2 for row in groups)
    assert groups.min() >= 0 and groups.max() < m
