"""Generated training objects: the families' statistics, the mosaic, and training sets of many
objects that keep the data contract and the no-leakage guarantees."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compare_models.errors import ConfigError
from compare_models.imaging.geometry import split_nearest
from compare_models.models.bundle import fraction_seen_in_training, training_record
from compare_models.study import objects
from compare_models.study.simulator import SimulationConfig, simulate_split

SMALL = dict(patch_size=16, object_size=64, scan="jittered", scan_step=4, jitter=0.5, seed=2, split="objects")


@pytest.mark.parametrize("family", objects.FAMILIES)
def test_fields_lie_in_the_unit_interval_and_follow_the_seed(family):
    first = objects.family_field(family, 48, 4.0, np.random.default_rng(1))
    again = objects.family_field(family, 48, 4.0, np.random.default_rng(1))
    other = objects.family_field(family, 48, 4.0, np.random.default_rng(2))
    assert first.shape == (48, 48) and first.min() >= 0 and first.max() <= 1
    assert first.std() > 0.1  # structure, not a flat field
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("feature", [3.0, 6.0])
def test_grf_autocorrelation_has_the_width_of_its_smoothing(feature):
    # White noise smoothed by a Gaussian of sigma s has a Gaussian autocorrelation of sigma
    # s sqrt(2): at lag 2 s it is exp(-1).
    field = objects.gaussian_random_field(256, feature, np.random.default_rng(0))
    centred = field - field.mean()
    spectrum = np.abs(np.fft.fft2(centred)) ** 2
    acf = np.fft.ifft2(spectrum).real
    acf /= acf[0, 0]
    lag = int(round(2 * feature / 2))  # 2 s, s = feature / 2
    measured = 0.5 * (acf[lag, 0] + acf[0, lag])
    assert measured == pytest.approx(np.exp(-1), abs=0.08)


def test_particles_have_the_requested_diameter():
    # One particle of nominal diameter d: its area lies within that of discs 0.5 d and 1.5 d.
    for seed in range(5):
        rng = np.random.default_rng(seed)
        field = np.zeros((64, 64))
        while not field.any():
            field = objects.particles_field(64, 40.0, rng)  # 40 px: one or two particles
        area = (field > 0).sum()
        assert np.pi * 10**2 * 0.8 < area < 2 * np.pi * 30**2


@settings(max_examples=30, deadline=None)
@given(
    start=st.tuples(st.floats(0, 20), st.floats(0, 20)),
    end=st.tuples(st.floats(0, 20), st.floats(0, 20)),
)
def test_segment_distance_matches_a_dense_sampling_of_the_segment(start, end):
    yy, xx = np.mgrid[0:21, 0:21].astype(float)
    distance = objects._segment_distance(yy, xx, np.array(start), np.array(end))
    t = np.linspace(0, 1, 2001)
    points = np.array(start)[None] + t[:, None] * (np.array(end) - np.array(start))[None]
    brute = np.min(np.hypot(yy[..., None] - points[:, 0], xx[..., None] - points[:, 1]), axis=-1)
    step = np.hypot(*np.subtract(end, start)) / 2000
    assert np.all(distance <= brute + 1e-9) and np.all(brute - distance <= step)


@pytest.mark.parametrize("family", [*objects.FAMILIES, "mixed"])
def test_random_object_spans_its_ranges(family):
    obj, info = objects.random_object(family, 40, 4.0, np.random.default_rng(3), amplitude_range=(0.5, 0.9),
                                      phase_range=(-0.7, 0.4))
    amplitude, phase = np.abs(obj), np.angle(obj)
    assert obj.dtype == np.complex64
    assert amplitude.min() >= 0.5 - 1e-6 and amplitude.max() <= 0.9 + 1e-6
    assert phase.min() >= -0.7 - 1e-6 and phase.max() <= 0.4 + 1e-6
    assert 2.0 <= info["feature_px"] <= 8.0
    assert {info["amplitude_family"], info["phase_family"]} <= set(objects.FAMILIES)
    if family != "mixed":
        assert info["amplitude_family"] == info["phase_family"] == family


def test_mosaic_places_each_tile_at_its_origin():
    tiles = [np.full((5, 5), k + 1j, np.complex64) for k in range(5)]
    canvas, origins = objects.mosaic(tiles, fill=-1)
    assert canvas.shape == (10, 15)
    for k, (row, col) in enumerate(origins):
        np.testing.assert_array_equal(canvas[row : row + 5, col : col + 5], tiles[k])
    assert (canvas[5:, 10:] == -1).all()


def test_generated_training_set_holds_many_objects_and_never_the_test_one():
    config = SimulationConfig(**SMALL, train_objects="mixed", n_train_objects=5, train_object_size=32,
                              train_feature_size=3.0).validate()
    train, test = simulate_split(config)
    record = train.metadata["object"]
    assert record["family"] == "mixed" and record["n_objects"] == 5 and len(record["objects"]) == 5
    assert train.object_truth.shape == (64, 96)  # 2 rows x 3 columns of 32-px objects, one cell unused
    assert sum(o["n_positions"] for o in record["objects"]) == train.n_positions
    # Every patch's integer crop lies inside one object: no pattern mixes two objects.
    origin, _ = split_nearest(train.positions_xy, 16)
    tile = origin // 32
    assert np.array_equal(tile, (origin + 15) // 32)
    # The recorded patches are the objects seen from the positions (stitching gives them back).
    from compare_models.imaging.stitching import stitch

    image, weight = stitch(train.patches_truth, train.positions_xy, train.object_truth.shape, crop=16)
    covered = weight > 0
    assert np.abs(image - train.object_truth)[covered].max() < 1e-4
    assert train.measured_dose == pytest.approx(1e4, rel=0.02)
    # The leak guard: another object, so no scored pixel was seen in training.
    region = np.ones(test.object_truth.shape, bool)
    assert fraction_seen_in_training({"train_data": training_record(train)}, test.object_truth, region) == 0.0
    # Same settings, same arrays; another train_seed, other objects.
    again, _ = simulate_split(config)
    np.testing.assert_array_equal(again.diffraction_amplitude, train.diffraction_amplitude)
    other, _ = simulate_split(SimulationConfig(**{**SMALL, "seed": 2}, train_objects="mixed", n_train_objects=5,
                                               train_object_size=32, train_feature_size=3.0, train_seed=9))
    assert not np.array_equal(other.object_truth, train.object_truth)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(train_objects="clouds"), "train_objects"),
        (dict(n_train_objects=3), "n_train_objects > 1 needs generated objects"),
        (dict(train_objects="grf", n_train_objects=0), "n_train_objects"),
        (dict(train_objects="grf", train_feature_size=0), "train_feature_size"),
        (dict(train_objects="grf", train_phase_min=1.0, train_phase_max=0.5), "train_phase_min"),
    ],
)
def test_bad_generated_object_settings_are_refused(change, message):
    with pytest.raises(ConfigError, match=message):
        SimulationConfig(**{**SMALL, **change}).validate()


def test_generated_objects_may_reuse_the_test_images_names():
    # The image-overlap guard concerns training on shipped images only.
    SimulationConfig(**SMALL, train_objects="grf", n_train_objects=2, train_amplitude_image="camera").validate()


@pytest.mark.parametrize("train_objects", ["images", "particles"])
def test_generated_test_object_is_never_the_training_one(train_objects):
    config = SimulationConfig(**SMALL, object_family="mixed", feature_size=3.0, train_objects=train_objects,
                              n_train_objects=1 if train_objects == "images" else 2, train_object_size=40,
                              train_amplitude_image="camera", train_phase_image="coins").validate()
    train, test = simulate_split(config)
    assert test.metadata["object"]["family"] == "mixed" and test.object_truth.shape == (64, 64)
    assert test.metadata["object"]["feature_size_px"] == 3.0
    amplitude = np.abs(test.object_truth)
    assert amplitude.min() >= 0.4 - 1e-6 and amplitude.max() <= 1 + 1e-6
    region = np.ones(test.object_truth.shape, bool)
    assert fraction_seen_in_training({"train_data": training_record(train)}, test.object_truth, region) == 0.0
    if train_objects == "images":
        assert train.metadata["object"]["amplitude_image"] == "camera"
    # The same seed gives the same test object; another seed another one.
    again = simulate_split(config)[1].object_truth
    other = simulate_split(SimulationConfig(**{**SMALL, "seed": 3}, object_family="mixed", feature_size=3.0,
                                            train_objects="particles", n_train_objects=2))[1].object_truth
    np.testing.assert_array_equal(again, test.object_truth)
    assert not np.array_equal(other, test.object_truth)
