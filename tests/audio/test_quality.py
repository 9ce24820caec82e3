"""Blind quality measures (gradw.audio.quality) against signals of known SNR and duration."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gradw.audio.quality import (
    MEASURES,
    WADA_ALPHA,
    percentile_snr,
    quality_measures,
    speech_seconds,
    wada_snr,
    wada_table,
)

RATE = 16000


def _at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """speech + noise scaled so that mean(speech^2) / mean(noise^2) is ``snr_db`` exactly."""
    gain = math.sqrt(np.mean(speech.astype(np.float64) ** 2) / np.mean(noise.astype(np.float64) ** 2))
    return (speech + gain * 10 ** (-snr_db / 20) * noise).astype(np.float32)


def _gamma_speech(n: int, seed: int) -> np.ndarray:
    """The speech model of WADA: Gamma(0.4) amplitudes with a random sign."""
    rng = np.random.default_rng(seed)
    return (0.05 * rng.gamma(WADA_ALPHA, 1.0, n) * rng.choice([-1.0, 1.0], n)).astype(np.float32)


def _bursts(seconds: float, seed: int, active: float = 0.4) -> np.ndarray:
    """Speech-like in time: 250 ms bursts of a harmonic tone, ``active`` of the time, silence
    between them (sparse in time and frequency, as the percentile estimator assumes)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    tone = sum(np.sin(2 * np.pi * 150 * k * t + rng.uniform(0, 6)) / k for k in range(1, 8))
    gate = (rng.random(int(seconds * 4)) < active).repeat(RATE // 4)[:n]
    return (0.1 * tone * gate).astype(np.float32)


def test_the_wada_table_runs_from_gaussian_noise_to_gamma_speech() -> None:
    snrs, g = wada_table()
    assert np.all(np.diff(g) >= 0) and snrs[0] == -20 and snrs[-1] == 100
    gaussian = 0.5 * math.log(2 / math.pi) + (np.euler_gamma + math.log(2)) / 2  # ~0.409
    from scipy.special import digamma

    gamma_speech = math.log(WADA_ALPHA) - digamma(WADA_ALPHA)  # ~1.645
    assert g[0] == pytest.approx(gaussian, abs=0.01)
    assert g[-1] == pytest.approx(gamma_speech, abs=0.03)


@pytest.mark.parametrize("snr", [-5.0, 0.0, 10.0, 20.0])
def test_wada_recovers_the_snr_of_its_own_model(snr: float) -> None:
    speech = _gamma_speech(160_000, seed=1)
    noise = np.random.default_rng(2).standard_normal(160_000).astype(np.float32)
    assert wada_snr(_at_snr(speech, noise, snr)) == pytest.approx(snr, abs=1.5)


@pytest.mark.parametrize("snr", [-5.0, 0.0, 5.0, 10.0])
def test_the_percentile_estimator_recovers_a_known_snr_in_stationary_noise(snr: float) -> None:
    speech = _bursts(8.0, seed=3)
    noise = np.random.default_rng(4).standard_normal(speech.shape[0]).astype(np.float32)
    # its documented bias: it reads higher than the truth, the more so the lower the SNR
    assert snr - 1.0 <= percentile_snr(_at_snr(speech, noise, snr)) <= snr + 6.0


def test_the_estimates_rise_with_the_snr_and_are_clipped() -> None:
    speech = _bursts(6.0, seed=5)
    noise = np.random.default_rng(6).standard_normal(speech.shape[0]).astype(np.float32)
    for estimator in (wada_snr, percentile_snr):
        values = [estimator(_at_snr(speech, noise, snr)) for snr in (-10, 0, 10, 20)]
        assert values == sorted(values), (estimator.__name__, values)
        assert estimator(_at_snr(speech, noise, 0), lo=5.0, hi=6.0) in (5.0, 6.0)
    silent = np.zeros(16000, dtype=np.float32)
    assert wada_snr(silent) == -20.0 and percentile_snr(silent) == -20.0


def test_speech_seconds_counts_the_frames_above_the_floor() -> None:
    rng = np.random.default_rng(7)
    wav = 0.001 * rng.standard_normal(3 * RATE)
    wav[RATE : 2 * RATE] += 0.3 * np.sin(2 * np.pi * 200 * np.arange(RATE) / RATE)  # 1 s of "speech"
    assert speech_seconds(wav.astype(np.float32)) == pytest.approx(1.0, abs=0.05)
    steady = 0.1 * rng.standard_normal(2 * RATE).astype(np.float32)
    assert speech_seconds(steady) == pytest.approx(2.0, abs=0.01)  # nothing stands out: all of it


def test_quality_measures_in_the_order_asked() -> None:
    wav = _at_snr(_bursts(3.0, seed=8), np.random.default_rng(9).standard_normal(48000), 5.0)
    every = quality_measures(wav)
    assert every.shape == (len(MEASURES),) and every[MEASURES.index("seconds")] == 3.0
    picked = quality_measures(wav, ("seconds", "snr_percentile"))
    assert picked.tolist() == [every[MEASURES.index("seconds")], every[MEASURES.index("snr_percentile")]]
    with pytest.raises(ValueError, match="unknown quality measure"):
        quality_measures(wav, ("loudness",))
    with pytest.raises(ValueError, match=r"shape \(N,\)"):
        quality_measures(np.zeros((2, 100)))


def test_windowed_measures_add_durations_and_weigh_the_rest_by_length() -> None:
    from gradw.audio.quality import windowed_quality_measures

    rng = np.random.default_rng(3)
    names = ("snr_percentile", "snr_wada", "speech_seconds", "seconds")
    whole = _at_snr(_bursts(5.0, 4), rng.standard_normal(5 * RATE).astype(np.float32), 5.0)
    # one window is exactly the recording's measures
    assert windowed_quality_measures([whole], names).tolist() == quality_measures(whole, names).tolist()
    pieces = [whole[: 3 * RATE], whole[3 * RATE :]]
    each = [quality_measures(p, names) for p in pieces]
    got = windowed_quality_measures(iter(pieces), names)
    for i in (0, 1):  # the SNR estimates: averaged, weighted 3 : 2 by the pieces' lengths
        assert got[i] == pytest.approx((3 * each[0][i] + 2 * each[1][i]) / 5)
    assert got[2] == pytest.approx(each[0][2] + each[1][2]) and got[3] == pytest.approx(5.0)
    with pytest.raises(ValueError, match="empty"):
        windowed_quality_measures([], names)
