"""The differentiable physics against independent NumPy references and known answers."""

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import gammaln
from scipy.stats import poisson

from compare_models.imaging.geometry import extract_patches
from compare_models.models import physics
from compare_models.study.simulator import SimulationConfig, far_field_amplitude, simulate_dataset


def reference_far_field(exit_waves):
    """Centred orthonormal DFT by explicit matrices: no FFT, no fftshift (an independent truth).

    Output pixel u (0..N-1) holds frequency u - N/2; the DFT matrix is exp(-2 pi i f x / N)/sqrt(N).
    """
    n_side = exit_waves.shape[-1]
    freq = np.arange(n_side) - n_side // 2
    x = np.arange(n_side)
    dft = np.exp(-2j * np.pi * np.outer(freq, x) / n_side) / np.sqrt(n_side)
    return dft @ exit_waves @ dft.T


def random_complex(rng, shape):
    return (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)


@pytest.mark.parametrize("n_side", [16, 32, 64])
def test_tf_far_field_matches_simulator_and_dft_reference(n_side):
    rng = np.random.default_rng(n_side)
    exit_waves = random_complex(rng, (3, n_side, n_side))
    tf_amplitude = physics.far_field_amplitude(tf.constant(exit_waves)).numpy()
    np.testing.assert_allclose(tf_amplitude, far_field_amplitude(exit_waves), rtol=1e-5, atol=1e-5)
    reference = reference_far_field(exit_waves.astype(np.complex128))
    np.testing.assert_allclose(
        physics.far_field(tf.constant(exit_waves)).numpy(), reference, rtol=1e-5, atol=1e-5
    )


def test_forward_model_reproduces_noiseless_simulated_counts():
    dataset = simulate_dataset(
        SimulationConfig(patch_size=32, object_size=64, scan_step=8, poisson_noise=False, dose=1e5)
    )
    intensity = physics.far_field_intensity(dataset.patches_truth, dataset.probe).numpy()
    counts = np.square(dataset.diffraction_amplitude, dtype=np.float64)
    np.testing.assert_allclose(intensity, counts, rtol=1e-4, atol=1e-3 * counts.max())
    # Parseval in photon units: the summed intensity is the summed exit-wave power.
    power = np.sum(np.abs(dataset.probe * dataset.patches_truth) ** 2, axis=(1, 2))
    np.testing.assert_allclose(intensity.sum(axis=(1, 2)), power, rtol=1e-5)


def test_poisson_nll_equals_negative_log_pmf_up_to_log_factorial():
    rng = np.random.default_rng(0)
    lam = rng.uniform(0.1, 50.0, size=(4, 8, 8))
    counts = rng.poisson(lam).astype(np.float64)
    expected = -poisson.logpmf(counts, lam) - gammaln(counts + 1)
    value = physics.poisson_nll(counts, lam, eps=0.0).numpy()
    np.testing.assert_allclose(value, expected.mean(), rtol=1e-5)


def test_poisson_loss_prefers_the_true_object():
    dataset = simulate_dataset(SimulationConfig(patch_size=32, object_size=64, scan_step=8, dose=1e4))
    counts = np.square(dataset.diffraction_amplitude)
    truth = dataset.patches_truth
    rng = np.random.default_rng(1)
    loss_true = physics.poisson_nll(counts, physics.far_field_intensity(truth, dataset.probe)).numpy()
    for perturbed in (
        truth * np.exp(1j * 0.3 * rng.normal(size=truth.shape)),  # phase noise
        truth * 0.8,  # wrong amplitude
        np.roll(truth, 3, axis=2),  # shifted
    ):
        loss = physics.poisson_nll(
            counts, physics.far_field_intensity(perturbed.astype(np.complex64), dataset.probe)
        ).numpy()
        assert loss > loss_true + 1e-3


def test_poisson_gradient_is_finite_at_zero_intensity():
    obj = tf.Variable(tf.zeros((1, 8, 8), tf.complex64))
    probe = tf.ones((8, 8), tf.complex64)
    with tf.GradientTape() as tape:
        loss = physics.poisson_nll(tf.ones((1, 8, 8)), physics.far_field_intensity(obj, probe))
    grad = tape.gradient(loss, obj).numpy()
    assert np.isfinite(grad).all()


@settings(max_examples=20, deadline=None)
@given(
    x0=st.floats(2.0, 20.0), y0=st.floats(2.0, 20.0), n_out=st.sampled_from([8, 12])
)
def test_translate_matches_bilinear_extract_patches(x0, y0, n_out):
    rng = np.random.default_rng(3)
    image = random_complex(rng, (40, 40))
    out = physics.translate(tf.constant(image[None]), tf.constant([[x0, y0]], tf.float32), (n_out, n_out))
    # extract_patches cuts the patch whose pixel (0, 0) sits at object (x0, y0): centre + N/2.
    expected = extract_patches(image, np.array([[x0 + n_out / 2, y0 + n_out / 2]]), n_out)
    np.testing.assert_allclose(out.numpy(), expected, atol=2e-5)


def test_translate_integer_shift_moves_content_by_the_offset():
    image = np.zeros((1, 10, 10), np.float32)
    image[0, 4, 5] = 1.0
    out = physics.translate(tf.constant(image), tf.constant([[-2.0, -3.0]]), (10, 10)).numpy()
    # Output pixel (i, j) reads input (i - 3, j - 2): the spike moves down 3, right 2.
    assert out[0, 7, 7] == 1.0 and out.sum() == 1.0


def reference_combine(patches, offsets, pad):
    """NumPy reference for integer offsets: slice-place, average by coverage, slice-cut."""
    n_groups, channels, n_side, _ = patches.shape
    region = n_side + 2 * pad
    out = np.empty_like(patches)
    for b in range(n_groups):
        total = np.zeros((region, region), complex)
        count = np.zeros((region, region))
        for c in range(channels):
            dx, dy = offsets[b, c].astype(int)
            rows = slice(pad + dy, pad + dy + n_side)
            cols = slice(pad + dx, pad + dx + n_side)
            total[rows, cols] += patches[b, c]
            count[rows, cols] += 1
        merged = np.where(count > 0, total / np.maximum(count, 1), 0)
        for c in range(channels):
            dx, dy = offsets[b, c].astype(int)
            out[b, c] = merged[pad + dy : pad + dy + n_side, pad + dx : pad + dx + n_side]
    return out


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(-4, 4), min_size=8, max_size=8), st.integers(0, 1000))
def test_combine_group_matches_numpy_reference_at_integer_offsets(raw, seed):
    rng = np.random.default_rng(seed)
    offsets = np.array(raw, dtype=np.float32).reshape(1, 4, 2)
    patches = random_complex(rng, (1, 4, 12, 12))
    got = physics.combine_group(tf.constant(patches), tf.constant(offsets), 4).numpy()
    np.testing.assert_allclose(got, reference_combine(patches, offsets, 4), atol=1e-5)


def test_group_of_consistent_shifted_copies_comes_back_unchanged():
    """Sign convention: member c is centred at centre + d_c (x, y); consistent patches of one
    object are a fixed point, and the same patches with the offsets' signs flipped are not."""
    rng = np.random.default_rng(5)
    obj = random_complex(rng, (48, 48))
    n_side, pad = 16, 6
    centre = np.array([24.0, 23.0])
    offsets = np.array([[0, 0], [3, 0], [0, -4], [-2, 5]], dtype=np.float64)
    patches = extract_patches(obj, centre + offsets, n_side)
    got = physics.combine_group(
        tf.constant(patches[None]), tf.constant(offsets[None].astype(np.float32)), pad
    ).numpy()[0]
    np.testing.assert_allclose(got, patches, atol=1e-5)
    flipped = physics.combine_group(
        tf.constant(patches[None]), tf.constant(-offsets[None].astype(np.float32)), pad
    ).numpy()[0]
    assert np.abs(flipped - patches).max() > 0.1


def test_sub_pixel_group_of_a_smooth_object_comes_back_closely():
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(6)
    obj = gaussian_filter(rng.normal(size=(48, 48)), 3) + 1j * gaussian_filter(rng.normal(size=(48, 48)), 3)
    obj = (obj / np.abs(obj).mean()).astype(np.complex64)
    offsets = np.array([[0.3, 0.6], [3.5, 0.2], [0.1, -3.7], [-2.4, 4.1]])
    offsets -= offsets.mean(axis=0)
    patches = extract_patches(obj, np.array([24.0, 23.0]) + offsets, 16)
    got = physics.combine_group(
        tf.constant(patches[None]), tf.constant(offsets[None].astype(np.float32)), 6
    ).numpy()[0]
    # Two bilinear passes smooth a little; a wrong sign would misplace by several pixels.
    error = np.abs(got - patches).mean() / np.abs(patches).mean()
    assert error < 0.05
    wrong = physics.combine_group(
        tf.constant(patches[None]), tf.constant(-offsets[None].astype(np.float32)), 6
    ).numpy()[0]
    assert np.abs(wrong - patches).mean() / np.abs(patches).mean() > 4 * error


def test_combine_group_single_member_is_identity():
    rng = np.random.default_rng(2)
    patches = random_complex(rng, (3, 1, 16, 16))
    got = physics.combine_group(tf.constant(patches), tf.zeros((3, 1, 2)), 4).numpy()
    np.testing.assert_allclose(got, patches, atol=1e-6)
