"""Known-answer tests for the metrics of compare_models.imaging (simple_metrics, ssim, frc, metrics)."""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage, signal
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from compare_models.errors import MetricError
from compare_models.imaging import frc as F
from compare_models.imaging import metrics as M
from compare_models.imaging import simple_metrics as SM
from compare_models.imaging import ssim as S
from compare_models.report import vocabulary as V
from compare_models.report.writers import to_jsonable


def _smooth(seed, shape=(192, 192), sigma=2.0):
    rng = np.random.default_rng(seed)
    image = ndimage.gaussian_filter(rng.random(shape), sigma)
    return (image - image.min()) / (image.max() - image.min())


def _noisy_pair(seed, shape=(192, 192), noise=0.05):
    rng = np.random.default_rng(seed)
    a = _smooth(seed, shape)
    return a, np.clip(a + noise * rng.standard_normal(shape), 0, 1)


# ----------------------------------------------------------------------------- identity


def test_identical_images():
    a = _smooth(0)
    assert SM.mae(a, a) == 0.0
    assert SM.mse(a, a) == 0.0
    assert SM.psnr(a, a, 1.0) == math.inf
    assert S.ssim(a, a, 1.0) == pytest.approx(1.0, abs=1e-12)
    assert S.ms_ssim(a, a, 1.0).value == pytest.approx(1.0, abs=1e-12)
    result = F.frc(a, a)
    np.testing.assert_allclose(result.curve, 1.0, atol=1e-12)
    assert all(not c["crossed"] for c in result.cutoffs.values())
    assert all(c["fraction_nyquist"] == 1.0 for c in result.cutoffs.values())
    assert result.cutoffs["0.5"]["ring"] == len(result.curve) - 1


def test_report_json_writes_inf_as_string():
    a = _smooth(1, (32, 32))
    payload = to_jsonable({"psnr": SM.psnr(a, a, 1.0), "x": np.float32(2.5), "v": np.arange(2)})
    assert json.loads(json.dumps(payload)) == {"psnr": "inf", "x": 2.5, "v": [0, 1]}


# ----------------------------------------------------------------------------- PSNR, SSIM


@pytest.mark.parametrize("data_range", [1.0, 2.5])
def test_psnr_and_mse_match_skimage(data_range):
    a, b = _noisy_pair(2, (64, 80))
    expected = peak_signal_noise_ratio(a, b, data_range=data_range)
    assert SM.psnr(a, b, data_range) == pytest.approx(expected, rel=1e-12)
    assert SM.mse(a, b) == pytest.approx(np.mean((a - b) ** 2), rel=1e-12)
    assert SM.mae(a, b) == pytest.approx(np.mean(np.abs(a - b)), rel=1e-12)


@pytest.mark.parametrize("shape", [(64, 64), (50, 73), (11, 11)])
def test_ssim_matches_skimage(shape):
    a, b = _noisy_pair(3, shape, noise=0.1)
    expected = structural_similarity(
        a, b, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert S.ssim(a, b, 1.0) == pytest.approx(expected, abs=1e-12)


def test_ssim_and_psnr_refuse_bad_input():
    a = _smooth(4, (32, 32))
    with pytest.raises(MetricError, match="data_range"):
        SM.psnr(a, a, 0.0)
    with pytest.raises(MetricError, match="NaN"):
        S.ssim(a, np.full_like(a, np.nan), 1.0)
    with pytest.raises(MetricError, match="11"):
        S.ssim(a[:10], a[:10], 1.0)


# ----------------------------------------------------------------------------- MS-SSIM


def _ms_ssim_paper(x, y, data_range):
    """Direct transcription of Wang, Simoncelli and Bovik (2003) for sides divisible by 16.

    2-D Gaussian window (11 x 11, sigma 1.5) by explicit 2-D convolution, l, c, s as in eqs.
    (5)-(7) with C3 = C2 / 2, 2 x 2 averaging and decimation between scales, eq. (7) product.
    """
    taps = np.arange(11) - 5
    g = np.exp(-(taps[:, None] ** 2 + taps[None, :] ** 2) / (2 * 1.5**2))
    g /= g.sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    c3 = c2 / 2
    weights = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333]
    result = 1.0
    for j in range(5):
        if j:
            x = x.reshape(x.shape[0] // 2, 2, x.shape[1] // 2, 2).mean(axis=(1, 3))
            y = y.reshape(y.shape[0] // 2, 2, y.shape[1] // 2, 2).mean(axis=(1, 3))

        def conv(img):
            return signal.convolve2d(img, g, mode="valid")

        mx, my = conv(x), conv(y)
        sx = np.sqrt(np.maximum(conv(x * x) - mx**2, 0))
        sy = np.sqrt(np.maximum(conv(y * y) - my**2, 0))
        sxy = conv(x * y) - mx * my
        contrast = (2 * sx * sy + c2) / (sx**2 + sy**2 + c2)
        structure = (sxy + c3) / (sx * sy + c3)
        if j < 4:
            result *= np.mean(contrast * structure) ** weights[j]
        else:
            lum = (2 * mx * my + c1) / (mx**2 + my**2 + c1)
            result *= np.mean(lum * contrast * structure) ** weights[j]
    return result


@pytest.mark.parametrize("noise", [0.02, 0.1, 0.3])
def test_ms_ssim_matches_paper_transcription(noise):
    a, b = _noisy_pair(5, (192, 208), noise=noise)
    result = S.ms_ssim(a, b, 1.0)
    assert result.n_scales == 5 and result.weights == S.MS_SSIM_WEIGHTS and result.note == ""
    assert result.value == pytest.approx(_ms_ssim_paper(a, b, 1.0), abs=1e-10)


def test_ms_ssim_orders_degradation():
    a = _smooth(6)
    values = [S.ms_ssim(a, _noisy_pair(6, noise=n)[1], 1.0).value for n in (0.01, 0.05, 0.2)]
    assert values[0] > values[1] > values[2] > 0


def test_ms_ssim_small_image_fallback_is_named():
    a, b = _noisy_pair(7, (100, 120))
    result = S.ms_ssim(a, b, 1.0)
    assert result.n_scales == 4
    assert sum(result.weights) == pytest.approx(1.0)
    np.testing.assert_allclose(result.weights, np.array(S.MS_SSIM_WEIGHTS[:4]) / 0.8668)
    assert "4" in result.note and "renormalised" in result.note
    assert 0 < result.value < 1
    with pytest.raises(MetricError, match="161"):
        S.ms_ssim(a, b, 1.0, allow_fewer_scales=False)
    with pytest.raises(MetricError, match="11"):
        S.ms_ssim(a[:10], b[:10], 1.0)
    # 161 is the smallest side that holds 5 scales (161 -> 81 -> 41 -> 21 -> 11).
    assert S.ms_ssim(*_noisy_pair(8, (161, 161)), 1.0).n_scales == 5
    assert S.ms_ssim(*_noisy_pair(8, (160, 161)), 1.0).n_scales == 4


@pytest.mark.slow
def test_ms_ssim_matches_tensorflow():
    tf = pytest.importorskip("tensorflow")
    for shape in ((192, 192), (181, 170)):
        a, b = _noisy_pair(9, shape, noise=0.08)
        expected = tf.image.ssim_multiscale(
            tf.constant(a[None, :, :, None], tf.float64),
            tf.constant(b[None, :, :, None], tf.float64),
            max_val=1.0,
        ).numpy()[0]
        # TF computes in float32.
        assert S.ms_ssim(a, b, 1.0).value == pytest.approx(float(expected), abs=2e-5)


# ----------------------------------------------------------------------------- FRC


def test_frc_threshold_curves_closed_form():
    n = np.array([1, 4, 8, 50, 400, 10_000])
    one_bit = (0.5 + 2.4142 / np.sqrt(n)) / (1.5 + 1.4142 / np.sqrt(n))
    half_bit = (0.2071 + 1.9102 / np.sqrt(n)) / (1.2071 + 0.9102 / np.sqrt(n))
    np.testing.assert_allclose(F.frc_threshold_bits(1, n), one_bit, atol=5e-5)
    np.testing.assert_allclose(F.frc_threshold_bits(0.5, n), half_bit, atol=5e-5)
    # Large rings: the thresholds tend to e / (e + 1): 1/3 and 0.1716.
    assert F.frc_threshold_bits(1, 1e12) == pytest.approx(1 / 3, abs=1e-5)
    assert F.frc_threshold_bits(0.5, 1e12) == pytest.approx(0.2071 / 1.2071, abs=1e-4)


def test_frc_ring_bookkeeping():
    result = F.frc(*_noisy_pair(10, (64, 64)))
    assert len(result.curve) == 33
    np.testing.assert_allclose(result.frequency_nyquist, np.arange(33) / 32)
    assert result.n_pixels[0] == 1
    # every pixel of the inscribed disc is counted once
    assert result.n_pixels.sum() == int((np.rint(np.hypot(*np.mgrid[-32:32, -32:32])) <= 32).sum())
    np.testing.assert_allclose(result.thresholds["1bit"], F.frc_threshold_bits(1, result.n_pixels))


def test_frc_independent_white_noise_is_near_zero():
    rng = np.random.default_rng(11)
    a, b = rng.standard_normal((2, 256, 256))
    result = F.frc(a, b)
    # Each ring's FRC has standard deviation about 1 / sqrt(n_pixels / 2).
    z = result.curve[4:] * np.sqrt(result.n_pixels[4:] / 2)
    assert np.abs(np.mean(result.curve[4:])) < 0.01
    assert np.abs(z).max() < 5
    assert result.cutoffs["0.5"]["fraction_nyquist"] < 0.05


def test_frc_band_limited_signal_crosses_at_band_limit():
    rng = np.random.default_rng(12)
    size = 256
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij"))
    band = k < 0.25 * 0.5  # half of Nyquist (0.5 cycles/pixel)
    spectrum = (rng.standard_normal((size, size)) + 1j * rng.standard_normal((size, size))) * band
    s = np.fft.ifft2(spectrum).real
    s /= s.std()
    # In-band SNR is high, so the 0.5 curve falls at the band edge: 0.25 of Nyquist.
    noise = 0.05
    a = s + noise * rng.standard_normal(s.shape)
    b = s + noise * rng.standard_normal(s.shape)
    result = F.frc(a, b, pixel_size_m=10e-9)
    for name in ("0.5", "1/7", "1bit", "halfbit"):
        cut = result.cutoffs[name]
        assert cut["crossed"]
        assert cut["fraction_nyquist"] == pytest.approx(0.25, abs=0.02), name
        assert cut["resolution_m"] == pytest.approx(10e-9 / cut["fraction_nyquist"])
        assert abs(cut["ring"] - 32) <= 2
    assert result.curve[5:28].min() > 0.9


def test_frc_smoothing_and_validation():
    a, b = _noisy_pair(13, (64, 64), noise=0.3)
    raw = F.frc(a, b)
    smooth = F.frc(a, b, smoothing_sigma=2.0)
    np.testing.assert_allclose(smooth.raw_curve, raw.curve)
    np.testing.assert_allclose(
        smooth.curve, ndimage.gaussian_filter1d(raw.curve, 2.0, mode="nearest")
    )
    with pytest.raises(MetricError, match="pixel_size_m"):
        F.frc(a, b, pixel_size_m=-1.0)
    with pytest.raises(MetricError, match="no power"):
        F.frc(np.ones((16, 16)), 2 * np.ones((16, 16)))


def test_frc_of_a_constant_against_structure_is_zero_at_every_ring():
    """A constant has no power above ring 0, so it correlates with nothing: 0 at every ring
    above the mean (each ring where one image has no power is 0), never reaching a threshold; every cut-off
    is ring 1, at 2 / L of Nyquist (L the shorter side): the floor of the measure, which is
    what the chance level scores."""
    a, _ = _noisy_pair(14, (48, 64), noise=0.3)
    result = F.frc(np.full(a.shape, 0.7), a)
    assert np.all(result.curve[1:] == 0)
    for name in ("0.5", "1/7"):
        assert result.cutoffs[name]["ring"] == 1 and not result.cutoffs[name]["reached"]
        assert result.cutoffs[name]["fraction_nyquist"] == pytest.approx(2 / 48)


@settings(max_examples=20, deadline=None)
@given(h=st.integers(8, 40), w=st.integers(8, 40), seed=st.integers(0, 1000))
def test_frc_property_bounded_and_symmetric(h, w, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((2, h, w))
    ab, ba = F.frc(a, b), F.frc(b, a)
    assert np.all(np.abs(ab.curve) <= 1 + 1e-12)
    np.testing.assert_allclose(ab.curve, ba.curve)
    assert len(ab.curve) == min(h, w) // 2 + 1
    for cut in ab.cutoffs.values():
        assert 0 < cut["fraction_nyquist"] <= 1 and math.isfinite(cut["fraction_nyquist"])


# ----------------------------------------------------------------------------- compute_metrics


def _complex_object(seed, shape=(200, 200)):
    return (0.5 + 0.5 * _smooth(seed, shape)) * np.exp(2j * (_smooth(seed + 100, shape) - 0.5))


def test_compute_metrics_identical():
    truth = _complex_object(20)
    region = np.zeros(truth.shape, bool)
    region[10:190, 5:195] = True
    out = M.compute_metrics(truth, truth, region)
    for part in ("amplitude", "phase"):
        d = out[part]
        assert d["mae"] == 0.0 and d["mse"] == 0.0 and d["psnr"] == math.inf
        assert d["ssim"] == pytest.approx(1.0, abs=1e-12)
        assert d["ms_ssim"] == pytest.approx(1.0, abs=1e-12) and d["ms_ssim_scales"] == 5
        assert d["frc50"] == d["frc1over7"] == 1.0
        np.testing.assert_allclose(d["frc"]["curve"][1:], 1.0, atol=1e-9)
    # One data-range rule (was 2 pi for the phase): the truth's max - min over the region.
    phase = np.angle(truth[region])
    assert out["phase"]["data_range"] == pytest.approx(phase.max() - phase.min())
    amp = np.abs(truth[region])
    assert out["amplitude"]["data_range"] == pytest.approx(amp.max() - amp.min())
    json.dumps(to_jsonable(out))  # everything is serialisable


def test_compute_metrics_known_errors_and_pixel_metrics_use_region_only():
    truth = _complex_object(21)
    region = np.zeros(truth.shape, bool)
    region[20:180, 20:180] = True
    recon = truth * 1.1 * np.exp(0.05j)
    recon[~region] = 123.0  # outside the region: must not matter
    out = M.compute_metrics(recon, truth, region)
    amp = np.abs(truth[region])
    assert out["amplitude"]["mae"] == pytest.approx(0.1 * amp.mean())
    assert out["amplitude"]["mse"] == pytest.approx(np.mean((0.1 * amp) ** 2))
    assert out["phase"]["mae"] == pytest.approx(0.05)
    phase = np.angle(truth[region])
    phase_range = phase.max() - phase.min()  # was 2 pi: now the one data-range rule
    assert out["phase"]["psnr"] == pytest.approx(10 * np.log10(phase_range**2 / 0.05**2))
    assert out["region"]["n_pixels"] == 160 * 160
    assert out["region"]["bbox_rows"] == [20, 180]
    assert out["amplitude"]["ms_ssim_scales"] == 4  # 160-pixel box: documented fallback


def test_compute_metrics_phase_differences_are_wrapped():
    # Truth phase near +-pi: a small offset must not produce 2 pi jumps.
    truth = (1 + 0.2 * _smooth(22)) * np.exp(1j * (np.pi - 0.05 + 0.1 * _smooth(23)))
    region = np.ones(truth.shape, bool)
    out = M.compute_metrics(truth * np.exp(0.1j), truth, region)
    assert out["phase"]["mae"] == pytest.approx(0.1)


def test_compute_metrics_pure_phase_object_uses_max_as_range():
    truth = np.exp(1j * _smooth(24))
    region = np.ones(truth.shape, bool)
    out = M.compute_metrics(truth, truth, region)
    assert out["amplitude"]["data_range"] == pytest.approx(1.0)
    assert "constant" in out["amplitude"]["data_range_source"]


def test_compute_metrics_errors():
    truth = _complex_object(25, (40, 40))
    region = np.ones(truth.shape, bool)
    with pytest.raises(MetricError, match="non-empty"):
        M.compute_metrics(truth, truth, np.zeros_like(region))
    small = np.zeros_like(region)
    small[5:12, 5:30] = True
    with pytest.raises(MetricError, match="SSIM window"):
        M.compute_metrics(truth, truth, small)
    bad = truth.copy()
    bad[3, 3] = np.nan
    with pytest.raises(MetricError, match="aligned.*NaN"):
        M.compute_metrics(bad, truth, region)
    with pytest.raises(MetricError, match="zero over the region"):
        M.compute_metrics(truth, np.zeros_like(truth), region)


def test_frc_of_a_blurred_image_on_an_irregular_region_falls_at_high_frequency():
    """A reconstruction with no fine detail must not correlate with the truth near Nyquist,
    whatever the shape of the scanned region (a hard mask edge would make it)."""
    rng = np.random.default_rng(4)
    truth = (0.6 + 0.3 * ndimage.gaussian_filter(rng.random((96, 96)), 1.0)) * np.exp(
        1j * ndimage.gaussian_filter(rng.random((96, 96)), 1.0)
    )
    blurred = ndimage.gaussian_filter(truth.real, 4.0) + 1j * ndimage.gaussian_filter(truth.imag, 4.0)
    yy, xx = np.mgrid[:96, :96]
    region = (np.hypot(yy - 48, xx - 48) < 40) & ~((yy > 40) & (yy < 50) & (xx > 60))
    metrics = M.compute_metrics(blurred, truth, region)
    for component in ("amplitude", "phase"):
        curve = np.array(metrics[component]["frc"]["curve"])
        # About 90 independent samples a ring up there: a spread of 0.1 around 0 (0.21 at most
        # here once the window's leakage leaves the powers; 0.175 before).
        assert np.abs(curve[len(curve) // 2 :]).max() < 0.25, component
        assert metrics[component]["frc50"] < 0.4, component


def test_frc_window_is_one_inside_and_zero_outside():
    mask = np.zeros((40, 40), bool)
    mask[5:35, 5:35] = True
    window = F.frc_window(mask, taper_px=4)
    assert window[~mask].max() == 0.0
    assert window[12:28, 12:28].min() == 1.0
    assert 0 < window[5, 20] < window[7, 20] < 1.0


def test_frc_cutoff_ignores_a_low_first_ring():
    """A dip at the lowest ring (few pixels, residual gauge) is not the resolution cut-off:
    the cut-off is where the curve falls below the threshold after having reached it."""
    curve = np.array([0.0, 0.2, 0.9, 0.8, 0.6, 0.4, 0.2, 0.1])
    threshold = np.full(curve.size, 0.5)
    cut = F._cutoff(curve, threshold, n_rings_nyquist=7, pixel_size_m=None)
    assert cut["ring"] == 5 and cut["reached"] and cut["crossed"]
    assert cut["fraction_nyquist"] == pytest.approx((4 + 0.1 / 0.2) / 7)
    never = F._cutoff(np.array([0.0, 0.3, 0.2, 0.1]), np.full(4, 0.5), 3, None)
    assert never["ring"] == 1 and not never["reached"]


# -------------------------------------------------- scoring rules: data range, MS-SSIM, FRC by kind


def test_one_data_range_rule_for_amplitude_and_phase():
    """The same 5 %-of-range error scores the same PSNR in amplitude and phase (it scored
    26.1 and 35.9 dB when the phase used 2 pi); the range is recorded."""
    amplitude = 0.5 + 0.3 * _smooth(30)
    phase = 1.2 * (_smooth(31) - 0.5)
    truth = amplitude * np.exp(1j * phase)
    region = np.zeros(truth.shape, bool)
    region[8:184, 8:184] = True
    amp_range = np.ptp(amplitude[region])
    phase_range = np.ptp(phase[region])
    sign = np.where(np.indices(truth.shape).sum(axis=0) % 2 == 0, 1.0, -1.0)
    test = (amplitude + 0.05 * amp_range * sign) * np.exp(1j * (phase + 0.05 * phase_range * sign))
    out = M.compute_metrics(test, truth, region)
    expected = 10 * np.log10(1 / 0.05**2)  # 26.02 dB
    assert out["amplitude"]["psnr"] == pytest.approx(expected, rel=1e-9)
    assert out["phase"]["psnr"] == pytest.approx(expected, rel=1e-9)
    assert out["amplitude"]["data_range"] == pytest.approx(amp_range)
    assert out["phase"]["data_range"] == pytest.approx(phase_range)
    assert out["phase"]["data_range_source"] == "truth max - min over the scored region"
    # SSIM's constants use the same range: the two components score alike too.
    assert out["amplitude"]["ssim"] == pytest.approx(
        S.ssim(amplitude[8:184, 8:184], np.abs(test)[8:184, 8:184], amp_range), rel=1e-12
    )


def test_ms_ssim_is_wang_by_default_and_the_blur_treats_both_components_alike():
    """No blur before MS-SSIM unless asked (the amplitude alone used to be blurred, sigma 1);
    a requested blur applies to amplitude and phase alike."""
    truth = _complex_object(32)
    rng = np.random.default_rng(32)
    test = truth * (1 + 0.05 * rng.standard_normal(truth.shape)) * np.exp(0.1j * rng.standard_normal(truth.shape))
    region = np.ones(truth.shape, bool)
    amp_t, amp_r = np.abs(truth), np.abs(test)
    phase_t = np.angle(truth)
    phase_r = phase_t + np.angle(test * np.conj(truth))
    amp_range, phase_range = np.ptp(amp_t), np.ptp(phase_t)
    plain = M.compute_metrics(test, truth, region)
    assert plain["amplitude"]["ms_ssim"] == pytest.approx(S.ms_ssim(amp_t, amp_r, amp_range).value, rel=1e-12)
    assert plain["phase"]["ms_ssim"] == pytest.approx(S.ms_ssim(phase_t, phase_r, phase_range).value, rel=1e-12)
    assert plain["amplitude"]["ms_ssim_scales"] == plain["phase"]["ms_ssim_scales"] == 5
    assert plain["amplitude"]["ms_ssim_sigma"] is None and plain["settings"]["ms_ssim_sigma"] is None
    blurred = M.compute_metrics(test, truth, region, ms_ssim_sigma=1.0)
    for part, (a, b, rng_) in {"amplitude": (amp_t, amp_r, amp_range), "phase": (phase_t, phase_r, phase_range)}.items():
        expected = S.ms_ssim(ndimage.gaussian_filter(a, 1.0), ndimage.gaussian_filter(b, 1.0), rng_).value
        assert blurred[part]["ms_ssim"] == pytest.approx(expected, rel=1e-12), part
        assert blurred[part]["ms_ssim"] > plain[part]["ms_ssim"], part
        assert blurred[part]["ms_ssim_sigma"] == 1.0


def test_frc_against_ground_truth_reports_the_half_crossing_only():
    """Against ground truth the resolution is the 0.5 crossing (frc50); 1/7 is kept as a
    labelled legacy value; the half-set thresholds (1-bit, 1/2-bit) are not reported."""
    truth = _complex_object(33)
    rng = np.random.default_rng(33)
    test = truth + 0.05 * (rng.standard_normal(truth.shape) + 1j * rng.standard_normal(truth.shape))
    out = M.compute_metrics(test, truth, np.ones(truth.shape, bool))
    for part in ("amplitude", "phase"):
        d = out[part]
        assert "frc_1bit" not in d and "frc_halfbit" not in d
        frc = d["frc"]
        assert frc["kind"] == "ground_truth" and frc["resolution_threshold"] == 0.5
        assert set(frc["cutoffs"]) == {"0.5", "1/7"}
        assert "resolution" in frc["cutoffs"]["0.5"]["role"] and "Rosenthal" in frc["cutoffs"]["0.5"]["role"]
        assert "not a resolution" in frc["cutoffs"]["1/7"]["role"]
        assert d["frc50"] == frc["cutoffs"]["0.5"]["fraction_nyquist"]
        assert d["frc1over7"] == frc["cutoffs"]["1/7"]["fraction_nyquist"]
        assert "thresholds" not in frc
    assert "Rosenthal" in V.DEFINITIONS["frc50"] and "NOT a resolution" in V.DEFINITIONS["frc1over7"]
    # The half-set thresholds stay available for half-set FRC.
    assert set(F.HALF_SET_FRC_CUTOFFS) <= set(F.frc(np.abs(test), np.abs(truth)).cutoffs)


def test_data_range_of_a_constant_and_of_a_zero_component():
    assert SM.data_range(np.array([0.2, 0.7, 0.5])) == (pytest.approx(0.5), "truth max - min over the scored region")
    value, source = SM.data_range(np.full(5, -0.3))
    assert value == pytest.approx(0.3) and "constant" in source
    with pytest.raises(MetricError, match="zero"):
        SM.data_range(np.zeros(4))
