"""Streaming prediction: one patch per position for every gridsize, batch size and count."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from compare_models.errors import BundleError, DatasetError
from compare_models.models.baseline import build_baseline
from compare_models.models.bundle import Bundle
from compare_models.models.inference import PredictionCountError, _predict_function, predict
from compare_models.models.inputs import intensity_scale
from compare_models.models.pinn import build_pinn
from compare_models.study.simulator import SimulationConfig, simulate_dataset

N = 16
PAD = 8
BATCH_SIZES = [1, 7, 16, 32, 64, 100]


@pytest.fixture(scope="module")
def dataset():
    # 101 positions: prime, so no batch size above 1 divides it.
    return simulate_dataset(
        SimulationConfig(patch_size=N, object_size=64, scan="random", n_random_positions=101, seed=2)
    )


def make_bundle(kind, gridsize, data):
    if kind == "pinn":
        model = build_pinn(N, gridsize, data.probe, width=4, depth=2, pad=PAD, seed=0)
    else:
        model = build_baseline(N, width=4, depth=2, seed=0)
    return Bundle(
        model=model, kind=kind, patch_size=N, gridsize=gridsize,
        intensity_scale=intensity_scale(data.diffraction_amplitude), probe=data.probe,
        metadata={"region_pad": PAD} if kind == "pinn" else {},
    )


@pytest.fixture(scope="module")
def bundles(dataset):
    return {
        ("pinn", 1): make_bundle("pinn", 1, dataset),
        ("pinn", 2): make_bundle("pinn", 2, dataset),
        ("baseline", 1): make_bundle("baseline", 1, dataset),
    }


@pytest.mark.parametrize("key", [("pinn", 1), ("pinn", 2), ("baseline", 1)])
def test_one_patch_per_position_for_every_batch_size(bundles, dataset, key):
    bundle = bundles[key]
    results = [predict(bundle, dataset, batch_size=b, progress=False) for b in BATCH_SIZES]
    reference = results[0]
    assert reference.patches.shape == (101, N, N) and reference.patches.dtype == np.complex64
    np.testing.assert_array_equal(reference.positions_xy, dataset.positions_xy)
    assert np.abs(reference.patches).max() > 0  # not a vacuous comparison
    for batch_size, result in zip(BATCH_SIZES, results, strict=True):
        assert result.patches.shape[0] == dataset.n_positions, batch_size
        np.testing.assert_allclose(result.patches, reference.patches, atol=1e-5, err_msg=str(batch_size))


@pytest.mark.parametrize("count", [1, 4, 5, 33])
def test_small_and_odd_counts(bundles, dataset, count):
    # The `count` positions nearest the middle, so that groups stay compact.
    distance = np.hypot(*(dataset.positions_xy - 32.0).T)
    subset = dataset.subset(np.argsort(distance)[:count])
    for (kind, gridsize), bundle in bundles.items():
        if count < gridsize**2:
            with pytest.raises(BundleError, match="scan positions"):
                predict(bundle, subset, batch_size=16, progress=False)
            continue
        result = predict(bundle, subset, batch_size=16, chunk=3, progress=False)
        assert result.patches.shape == (count, N, N), (kind, gridsize)


def test_chunking_does_not_change_the_result(bundles, dataset):
    bundle = bundles[("pinn", 2)]
    whole = predict(bundle, dataset, batch_size=16, chunk=4096, progress=False)
    chunked = predict(bundle, dataset, batch_size=16, chunk=20, progress=False)
    np.testing.assert_allclose(chunked.patches, whole.patches, atol=1e-6)


def test_gridsize_one_patch_is_the_models_output_for_that_pattern(bundles, dataset):
    bundle = bundles[("baseline", 1)]
    result = predict(bundle, dataset, batch_size=7, progress=False)
    x = dataset.diffraction_amplitude[[40]][..., None] / bundle.intensity_scale
    obj = np.asarray(bundle.model(x)[0])[0, :, :, 0]
    np.testing.assert_allclose(result.patches[40], obj[..., 0] + 1j * obj[..., 1], atol=1e-5)


def test_seed_patch_of_a_group_depends_on_its_own_pattern(bundles, dataset):
    """Reordering the dataset reorders the patches: each belongs to its own position."""
    bundle = bundles[("pinn", 2)]
    order = np.random.default_rng(0).permutation(dataset.n_positions)
    direct = predict(bundle, dataset, batch_size=16, progress=False)
    shuffled = predict(bundle, dataset.subset(order), batch_size=16, progress=False)
    np.testing.assert_allclose(shuffled.patches, direct.patches[order], atol=1e-5)
    np.testing.assert_array_equal(shuffled.positions_xy, dataset.positions_xy[order])


def test_fixed_signature_is_traced_once(bundles, dataset):
    bundle = bundles[("pinn", 2)]
    run = _predict_function(bundle, 7)
    for _ in range(3):
        run(tf.zeros((7, N, N, 4)), tf.zeros((7, 4, 2)))
    assert run.experimental_get_tracing_count() == 1


def test_n_mismatch_is_a_bundle_error_naming_both(bundles):
    other = simulate_dataset(SimulationConfig(patch_size=32, object_size=64, scan_step=16))
    with pytest.raises(BundleError, match=r"N = 16.*N = 32"):
        predict(bundles[("baseline", 1)], other, progress=False)


def test_groups_wider_than_the_region_are_re_formed_or_refused(dataset):
    from compare_models.models.grouping import centred_spread, group_neighbours

    # Step 12: a nearest-neighbour group (a T of four) spreads 12 px > PAD; a 2 x 2 square
    # spreads 6 px, so the groups are re-formed to fit and every position gets its patch.
    sparse = simulate_dataset(SimulationConfig(patch_size=N, object_size=96, scan_step=12))
    assert centred_spread(sparse.positions_xy, group_neighbours(sparse.positions_xy, 2)).max() > PAD
    prediction = predict(make_bundle("pinn", 2, sparse), sparse, progress=False)
    assert prediction.patches.shape[0] == sparse.n_positions
    # Step 20: even a square spreads 10 px > PAD: an error that names the margin.
    sparser = simulate_dataset(SimulationConfig(patch_size=N, object_size=96, scan_step=20))
    with pytest.raises(DatasetError, match="region margin"):
        predict(make_bundle("pinn", 2, sparser), sparser, progress=False)


@keras.saving.register_keras_serializable(package="compare_models_tests")
class DropLast(keras.layers.Layer):
    """A faulty layer: returns one sample fewer than it receives."""

    def call(self, inputs):
        return inputs[:-1]


def test_a_model_returning_too_few_patches_is_caught(dataset):
    x = keras.Input((N, N, 1))
    obj = keras.layers.Reshape((N, N, 1, 2))(keras.layers.Conv2D(2, 1)(x))
    faulty = keras.Model(x, [DropLast()(obj), x])
    bundle = Bundle(model=faulty, kind="baseline", patch_size=N, gridsize=1,
                    intensity_scale=1.0, probe=dataset.probe)
    with pytest.raises(PredictionCountError, match="returned 15 patches for a batch of 16"):
        predict(bundle, dataset, batch_size=16, progress=False)


def test_bad_arguments(bundles, dataset):
    with pytest.raises(ValueError, match="batch_size"):
        predict(bundles[("pinn", 1)], dataset, batch_size=0)
    with pytest.raises(ValueError, match="chunk"):
        predict(bundles[("pinn", 1)], dataset, chunk=0)
