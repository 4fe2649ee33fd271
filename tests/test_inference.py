"""Streaming prediction: one patch per position for every gridsize, batch size and count."""

import tracemalloc

import keras
import numpy as np
import pytest
import tensorflow as tf

from compare_models.errors import BundleError, DatasetError, StitchError
from compare_models.imaging.stitching import Stitcher, stitch
from compare_models.models.baseline import build_baseline
from compare_models.models.bundle import Bundle
from compare_models.models.inference import (
    PredictionCountError,
    PredictStitchStep,
    _predict_function,
    predict,
    predict_and_stitch,
)
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


# --------------------------------------------------------------------------------------------
# Streaming: predict_and_stitch


def _stitched_reference(bundle, data, **options):
    """predict (every patch held) then stitch: the non-streaming reference."""
    prediction = predict(bundle, data, batch_size=16, progress=False)
    return stitch(prediction.patches, prediction.positions_xy, data.object_truth.shape, **options)


# Every network with every batch size and chunk (each pair its own XLA compile): the default
# tier runs each network once and each (batch size, chunk) once; the rest are end-to-end.
STREAM_KEYS = [("pinn", 1), ("pinn", 2), ("baseline", 1)]
STREAM_SHAPES = [(1, 7), (7, 20), (32, 1024)]


@pytest.mark.parametrize(
    "key,batch_size,chunk",
    [pytest.param(key, *shape, marks=() if i == j else pytest.mark.e2e, id=f"{key[0]}-gs{key[1]}-batch{shape[0]}-chunk{shape[1]}")
     for i, key in enumerate(STREAM_KEYS) for j, shape in enumerate(STREAM_SHAPES)],
)
def test_stream_equals_predict_then_stitch(bundles, dataset, key, batch_size, chunk):
    bundle = bundles[key]
    expected, expected_weights = _stitched_reference(bundle, dataset, crop=12)
    stitcher = Stitcher(dataset.object_truth.shape, N, crop=12)
    result = predict_and_stitch(bundle, dataset, stitcher, batch_size=batch_size, chunk=chunk, progress=False)
    image, weights = stitcher.result()
    assert result.n_patches == dataset.n_positions
    assert result.stream["batches"] == sum(-(-min(c, 101 - s) // batch_size) for s, c in
                                           ((s, -(-chunk // batch_size) * batch_size) for s in
                                            range(0, 101, -(-chunk // batch_size) * batch_size)))
    np.testing.assert_array_equal(weights, expected_weights)
    assert np.abs(expected).max() > 0
    np.testing.assert_allclose(image, expected, atol=2e-5 * np.abs(expected).max())


def test_stream_fills_half_set_canvases_in_the_same_pass(bundles, dataset):
    bundle = bundles[("pinn", 1)]
    prediction = predict(bundle, dataset, batch_size=16, progress=False)
    half = np.arange(dataset.n_positions) % 2
    half[:3] = -1  # in no half
    stitcher = Stitcher(dataset.object_truth.shape, N, n_canvases=3)
    canvases = np.stack([np.zeros(dataset.n_positions, int), np.where(half < 0, -1, 1 + half)], axis=1)
    predict_and_stitch(bundle, dataset, stitcher, canvases=canvases, batch_size=8, chunk=24, progress=False)
    for index, members in ((0, slice(None)), (1, half == 0), (2, half == 1)):
        expected, expected_weights = stitch(prediction.patches[members], prediction.positions_xy[members],
                                            dataset.object_truth.shape)
        image, weights = stitcher.result(index)
        np.testing.assert_array_equal(weights, expected_weights)
        np.testing.assert_allclose(image, expected, atol=2e-5 * np.abs(expected).max(), err_msg=str(index))


def test_stream_with_and_without_xla_agree(bundles, dataset):
    images = {}
    for jit in ("on", "off"):
        stitcher = Stitcher(dataset.object_truth.shape, N)
        result = predict_and_stitch(bundles[("pinn", 2)], dataset, stitcher, batch_size=16, progress=False, jit=jit)
        assert result.stream["network_xla"] is (jit == "on")
        images[jit] = stitcher.result()[0]
    np.testing.assert_allclose(images["on"], images["off"], atol=1e-5 * np.abs(images["off"]).max())


@keras.saving.register_keras_serializable(package="compare_models_tests")
class HostOnly(keras.layers.Layer):
    """An identity XLA cannot compile (a Python function inside the graph)."""

    def call(self, inputs):
        out = tf.py_function(lambda x: x, [inputs], tf.float32)
        out.set_shape(inputs.shape)
        return out


@keras.saving.register_keras_serializable(package="compare_models_tests")
class PoisonFirst(keras.layers.Layer):
    """Makes sample 0 of every batch NaN."""

    def call(self, inputs):
        mask = tf.one_hot(0, tf.shape(inputs)[0], on_value=np.nan, off_value=0.0)
        return inputs + tf.reshape(mask, (-1, 1, 1, 1, 1))


def _baseline_with(layer, data):
    x = keras.Input((N, N, 1))
    obj = keras.layers.Reshape((N, N, 1, 2))(keras.layers.Conv2D(2, 1)(x))
    model = keras.Model(x, [layer(obj), x])
    return Bundle(model=model, kind="baseline", patch_size=N, gridsize=1, intensity_scale=1.0, probe=data.probe)


def test_a_network_xla_cannot_compile_falls_back_or_fails_as_asked(dataset, caplog):
    bundle = _baseline_with(HostOnly(), dataset)
    stitcher = Stitcher(dataset.object_truth.shape, N)
    with caplog.at_level("WARNING", logger="compare_models.inference"):
        result = predict_and_stitch(bundle, dataset, stitcher, batch_size=16, progress=False, jit="auto")
    assert result.stream["network_xla"] is False and result.stream["xla_fallback_reason"]
    assert "running it without XLA" in caplog.text
    expected, _ = _stitched_reference(bundle, dataset)
    np.testing.assert_allclose(stitcher.result()[0], expected, atol=1e-5 * np.abs(expected).max())
    with pytest.raises(Exception):  # noqa: B017 (TensorFlow's own error type for an op XLA refuses)
        predict_and_stitch(bundle, dataset, Stitcher(dataset.object_truth.shape, N), batch_size=16,
                           progress=False, jit="on")


def test_non_finite_patches_are_reported_not_stitched(dataset):
    bundle = _baseline_with(PoisonFirst(), dataset)
    stitcher = Stitcher(dataset.object_truth.shape, N)
    predict_and_stitch(bundle, dataset, stitcher, batch_size=16, progress=False)
    n_batches = -(-dataset.n_positions // 16)
    with pytest.raises(StitchError, match=f"{n_batches} patches have non-finite values"):
        stitcher.result()


def test_a_patch_off_the_grid_is_refused_before_inference(bundles, dataset):
    with pytest.raises(StitchError, match="entirely outside"):
        predict_and_stitch(bundles[("baseline", 1)], dataset, Stitcher((8, 8), N), progress=False)


def test_stream_holds_no_array_proportional_to_the_scan(bundles):
    """NumPy's allocations during the pass (tracemalloc sees them) do not grow like n x N²:
    four times the positions add a few bytes per position (positions, placements), against
    the 2 KiB per position that holding the patches would cost."""
    many = simulate_dataset(SimulationConfig(patch_size=N, object_size=128, scan_step=2, seed=3))
    assert many.n_positions > 3000
    bundle = bundles[("pinn", 2)]
    peaks = {}
    for n in (many.n_positions // 4, many.n_positions):
        stitcher = Stitcher(many.object_truth.shape, N)
        step = PredictStitchStep(bundle, 32, stitcher)
        step.warm_up()  # tracing and compiling happen once, outside the measurement
        data = many.subset(range(n))
        tracemalloc.start()
        try:
            predict_and_stitch(bundle, data, stitcher, batch_size=32, chunk=128, progress=False, step=step)
            peaks[n] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert stitcher.n_added[0] == n
    (n_small, small), (n_large, large) = sorted(peaks.items())
    patch_bytes = N * N * 8  # one complex64 patch
    assert large - small < 0.15 * (n_large - n_small) * patch_bytes, peaks
