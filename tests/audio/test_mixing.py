"""Tests for gradw.audio.mixing: SNR formula, tiling/cropping, babble, reverberation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gradw.audio.mixing import (
    MixingError,
    Reverberator,
    apply_scale,
    babble,
    fit_length,
    fitted_power_db,
    gain_for_levels,
    measure_snr,
    mix_at_snr,
    peak_normalise,
    peak_scale,
    power_db,
    reverberate,
    snr_gain,
)

SR = 16000


def _speech(n: int, seed: int = 0) -> np.ndarray:
    """A speech-like signal: a harmonic tone under a syllable-rate envelope, with pauses."""
    t = np.arange(n) / SR
    rng = np.random.default_rng(seed)
    f0 = 120.0 + 40.0 * rng.random()
    tone = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    envelope = np.clip(np.sin(2 * np.pi * 4.0 * t), 0.0, None) * (t % 1.0 < 0.7)
    return (0.1 * tone * envelope).astype(np.float32)


def _noise(n: int, seed: int = 1) -> np.ndarray:
    return (0.05 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def _music(n: int) -> np.ndarray:
    """Music-like: a sequence of chords (sums of sines) with note changes every 0.25 s."""
    t = np.arange(n) / SR
    notes = np.array([220.0, 277.2, 329.6, 440.0])
    index = (t // 0.25).astype(int) % len(notes)
    chord = sum(np.sin(2 * np.pi * notes[index] * r * t) for r in (1.0, 1.25, 1.5))
    return (0.2 * chord).astype(np.float32)


@pytest.mark.parametrize("snr", [20.0, 0.0, -10.0, -20.0])
@pytest.mark.parametrize("kind", ["noise", "music"])
def test_exact_snr_without_floor(kind: str, snr: float) -> None:
    speech = _speech(SR)
    source = _noise(3 * SR) if kind == "noise" else _music(3 * SR)
    noisy, scaled = mix_at_snr(speech, source, snr, rng=np.random.default_rng(0), floor=0.0)
    assert noisy.dtype == np.float32 and noisy.shape == speech.shape
    np.testing.assert_allclose(noisy - speech, scaled, atol=1e-6)
    assert abs(measure_snr(speech, scaled) - snr) < 0.1


@pytest.mark.parametrize("snr", [20.0, 0.0, -10.0, -20.0])
def test_babble_overall_mode_exact_snr(snr: float) -> None:
    speech = _speech(SR)
    talkers = [_speech(SR + 3000 * i, seed=10 + i) for i in range(5)]
    mix = babble(talkers, SR, rng=np.random.default_rng(0), speech=speech, snr_db=snr, floor=0.0)
    assert mix.noise.shape == (SR,) and mix.noise.dtype == np.float32
    assert len(mix.offsets) == len(mix.gains) == 5
    assert abs(measure_snr(speech, mix.noise) - snr) < 0.1
    # equal level: every talker contributes the same power before the overall scaling
    levels = [
        power_db(g * fit_length(t, SR, offset=o)[0], 0.0)
        for t, o, g in zip(talkers, mix.offsets, mix.gains, strict=True)
    ]
    assert max(levels) - min(levels) < 0.01


def test_babble_per_talker_mode_is_paper_formula() -> None:
    speech = _speech(SR)
    talkers = [_speech(2 * SR, seed=20 + i) for i in range(6)]
    snrs = [5.0, 8.0, 10.0, 13.0, 15.0, 5.0]
    mix = babble(talkers, SR, rng=np.random.default_rng(3), speech=speech, snrs_db=snrs)
    expected = np.zeros(SR, dtype=np.float32)
    for talker, offset, snr, gain in zip(talkers, mix.offsets, snrs, mix.gains, strict=True):
        segment = talker[offset : offset + SR]
        assert gain == pytest.approx(snr_gain(speech, segment, snr, floor=1e-4))
        expected += np.float32(gain) * segment
    np.testing.assert_allclose(mix.noise, expected, atol=1e-6)
    # summing 6 talkers puts the overall SNR below the lowest per-talker SNR
    assert measure_snr(speech, mix.noise) < 5.0
    # the same offsets reproduce the same babble
    again = babble(talkers, SR, offsets=mix.offsets, speech=speech, snrs_db=snrs)
    np.testing.assert_array_equal(again.noise, mix.noise)


def test_babble_argument_checks() -> None:
    speech = _speech(100)
    with pytest.raises(ValueError, match="exactly one"):
        babble([_noise(200)], 100, np.random.default_rng(0), speech=speech)
    with pytest.raises(MixingError, match="near-silent"):
        babble([np.zeros(200, np.float32)], 100, np.random.default_rng(0), speech=speech, snr_db=0.0)


def test_floored_gain_matches_paper_formula() -> None:
    speech, noise = _speech(SR), _noise(SR)
    snr = -5.0
    speech_db = 10 * np.log10(np.mean(speech.astype(np.float64) ** 2) + 1e-4)
    noise_db = 10 * np.log10(np.mean(noise.astype(np.float64) ** 2) + 1e-4)
    paper = math.sqrt(10 ** ((speech_db - noise_db - snr) / 10))
    assert snr_gain(speech, noise, snr) == pytest.approx(paper, rel=1e-12)
    assert power_db(noise) == pytest.approx(noise_db)


def test_floor_pitfall_quiet_noise_comes_out_cleaner() -> None:
    """The +1e-4 floor (-40 dBFS) stops a quiet noise from reaching the nominal SNR."""
    speech = _speech(SR)
    quiet = (_noise(SR) * 0.01).astype(np.float32)  # about -66 dBFS
    _, floored = mix_at_snr(speech, quiet, -10.0, offset=0, floor=1e-4)
    _, exact = mix_at_snr(speech, quiet, -10.0, offset=0, floor=0.0)
    assert measure_snr(speech, floored) > -10.0 + 1.0
    assert measure_snr(speech, exact) == pytest.approx(-10.0, abs=1e-3)


def test_exact_snr_rejects_silence() -> None:
    speech = _speech(SR)
    with pytest.raises(MixingError, match="noise is near-silent"):
        snr_gain(speech, np.full(SR, 1e-6, np.float32), 0.0, floor=0.0)
    with pytest.raises(MixingError, match="speech is near-silent"):
        snr_gain(np.zeros(SR, np.float32), _noise(SR), 0.0, floor=0.0)
    # the floored formula never fails: silent noise gets a finite gain
    assert math.isfinite(snr_gain(speech, np.zeros(SR, np.float32), 0.0))


def test_fit_length_crops_and_tiles() -> None:
    noise = np.arange(10, dtype=np.float32)
    rng = np.random.default_rng(0)
    for _ in range(20):  # long noise: a crop fully inside, never wrapped
        segment, offset = fit_length(noise, 4, rng)
        assert 0 <= offset <= 6
        np.testing.assert_array_equal(segment, noise[offset : offset + 4])
    segment, offset = fit_length(noise, 25, offset=7)  # short noise: tiled from the offset
    assert offset == 7 and segment.shape == (25,)
    np.testing.assert_array_equal(segment, (np.arange(7, 32) % 10).astype(np.float32))
    segment, offset = fit_length(noise, 25, rng)
    assert 0 <= offset < 10 and segment.shape == (25,)
    segment, _ = fit_length(noise, 10, offset=0)
    np.testing.assert_array_equal(segment, noise)
    with pytest.raises(ValueError, match="rng or offset"):
        fit_length(noise, 4)
    with pytest.raises(ValueError, match="outside"):
        fit_length(noise, 4, offset=10)


def test_reverberate_keeps_click_train_aligned() -> None:
    n = 4000
    clicks = np.zeros(n, dtype=np.float32)
    positions = np.arange(100, n, 500)
    clicks[positions] = 1.0
    rir = np.zeros(400)
    rir[120] = 1.0  # delayed direct path
    rir[121:] = 0.4 * np.exp(-np.arange(279) / 40.0) * np.random.default_rng(0).choice([-1, 1], 279)
    reverberant, clean = reverberate(clicks, rir)
    assert reverberant.shape == clean.shape == (n,)
    np.testing.assert_array_equal(clean, clicks)
    for p in positions:  # the direct path of every click stays on its own sample
        window = reverberant[max(p - 50, 0) : p + 50]
        assert int(np.argmax(np.abs(window))) + max(p - 50, 0) == p
    # nothing arrives before the click: the output is causal relative to the clean signal
    assert np.allclose(reverberant[:100], 0.0, atol=1e-6)


@pytest.mark.parametrize("position", [0, 37])
def test_reverberate_delta_is_identity(position: int) -> None:
    speech = _speech(2000)
    rir = np.zeros(64)
    rir[position] = 0.3  # any scale: the RIR is energy-normalised
    reverberant, _ = reverberate(speech, rir)
    np.testing.assert_allclose(reverberant, speech, atol=1e-6)


def test_reverberate_early_target() -> None:
    speech = _speech(2000)
    rir = np.zeros(3200)
    rir[10] = 1.0
    rir[2000] = 0.5  # a late reflection (about 124 ms after the direct path)
    reverberant, early = reverberate(speech, rir, target="early", early_ms=50.0)
    np.testing.assert_allclose(early, speech / math.sqrt(1.25), atol=1e-6)
    assert not np.allclose(reverberant, early, atol=1e-3)


def test_peak_normalise_returns_scale() -> None:
    quiet = np.array([0.1, -0.5], dtype=np.float32)
    same, scale = peak_normalise(quiet)
    assert scale == 1.0 and same is quiet
    loud = np.array([0.5, -2.0], dtype=np.float32)
    scaled, scale = peak_normalise(loud)
    assert scale == pytest.approx(0.99 / 2.0)
    assert float(np.max(np.abs(scaled))) == pytest.approx(0.99)
    _, scale = peak_normalise(quiet, peak=0.5, only_if_above=None)
    assert scale == pytest.approx(1.0)


# -- pieces of long signals --------------------------------------------------------------------


def _room(length: int, direct: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rir = 0.2 * rng.standard_normal(length) * np.exp(-np.arange(length) / (length / 6))
    rir[direct] = 3.0
    return rir.astype(np.float32)


@pytest.mark.parametrize(
    ("rir_length", "direct", "pieces"),
    [
        (4000, 40, [50000, 50000, 60000]),  # a usual room: the direct path near the start
        (3000, 2900, [1000, 1, 999, 2000, 156000]),  # a late direct path, pieces shorter than the RIR
        (1, 0, [80000, 80000]),  # a delta: the speech itself
    ],
)
def test_the_reverberator_in_pieces_is_the_whole_reverberation(
    rir_length: int, direct: int, pieces: list[int]
) -> None:
    speech = _speech(sum(pieces), seed=3).astype(np.float32)
    rir = _room(rir_length, direct, seed=4) if rir_length > 1 else np.ones(1, np.float32)
    whole = reverberate(speech, rir)[0]  # one fftconvolve of the whole signal
    reverb = Reverberator(rir, speech.shape[0], chunk=7000)  # also split inside the pieces
    outs, start = [], 0
    for size in pieces:
        outs.append(reverb.push(speech[start : start + size]))
        start += size
    outs.append(reverb.finish())
    got = np.concatenate(outs)
    assert got.dtype == np.float32 and got.shape == whole.shape
    np.testing.assert_allclose(got, whole, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="pushed of the"):
        Reverberator(rir, 10).finish()
    with pytest.raises(ValueError, match="more than the 10 samples"):
        Reverberator(rir, 10).push(speech[:11])


def test_the_power_of_a_long_segment_is_measured_in_blocks() -> None:
    noise = (0.1 * np.random.default_rng(1).standard_normal(7001)).astype(np.float32)
    for n, offset in ((50000, 6999), (7001, 0), (3000, 4500)):  # tiled, exact, cropped
        whole = power_db(fit_length(noise, n, offset=offset)[0], 0.0)
        assert fitted_power_db(noise, n, offset) == whole
        assert fitted_power_db(noise, n, offset, block=1234) == pytest.approx(whole, abs=1e-9)
    assert fitted_power_db(np.zeros(100, np.float32), 1000, 3, block=64) == -math.inf


def test_the_gain_from_levels_is_snr_gain() -> None:
    speech, noise = _speech(16000), _noise(16000)
    for snr in (-10.0, 0.0, 7.5):
        assert gain_for_levels(power_db(speech, 0.0), power_db(noise, 0.0), snr, True) == snr_gain(
            speech, noise, snr, floor=0.0
        )
    with pytest.raises(MixingError, match="noise is near-silent"):
        gain_for_levels(-20.0, -90.0, 0.0, True)
    with pytest.raises(MixingError, match="speech is near-silent"):
        gain_for_levels(-90.0, -20.0, 0.0, True)
    assert gain_for_levels(-90.0, -90.0, 0.0) == 1.0  # no check without an exact SNR


def test_a_scale_found_on_the_peak_scales_pieces_as_the_whole() -> None:
    wav = 1.7 * _speech(9000, seed=2).astype(np.float32) / np.abs(_speech(9000, seed=2)).max()
    whole, scale = peak_normalise(wav)
    top = max(float(np.abs(piece).max()) for piece in np.array_split(wav, 3))
    assert peak_scale(top) == scale
    np.testing.assert_array_equal(
        np.concatenate([apply_scale(p, scale) for p in np.array_split(wav, 3)]), whole
    )
    assert peak_scale(0.5) == 1.0 and peak_scale(0.0) == 1.0
