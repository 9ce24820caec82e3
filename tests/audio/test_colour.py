"""Tests for the random spectral colouring of training noise (gradw.audio.colour)."""

from __future__ import annotations

import numpy as np
import pytest

from gradw.audio.colour import colour_gain_db, random_colouring

SR = 16000


def _band_db(wav: np.ndarray, lo: float, hi: float) -> float:
    """Mean power (dB) of ``wav``'s spectrum between lo and hi Hz."""
    spectrum = np.abs(np.fft.rfft(wav.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(wav.shape[0], 1.0 / SR)
    return float(10 * np.log10(spectrum[(freqs >= lo) & (freqs < hi)].mean()))


def test_gain_curve_against_its_formula() -> None:
    freqs = np.array([10.0, 50.0, 500.0, 1000.0, 2000.0, 4000.0])
    # a tilt alone: 0 dB at 1 kHz, tilt dB per octave, held below 50 Hz
    assert colour_gain_db(freqs, 3.0) == pytest.approx([3 * np.log2(0.05)] * 2 + [-3.0, 0.0, 3.0, 6.0])
    # one bump of +6 dB, one octave wide, at 2 kHz: its full gain there, exp(-1/2) of it an octave away
    curve = colour_gain_db(freqs, 0.0, np.array([2000.0]), np.array([1.0]), np.array([6.0]))
    assert curve[4] == pytest.approx(6.0) and curve[3] == pytest.approx(6.0 * np.exp(-0.5))
    assert curve[5] == pytest.approx(6.0 * np.exp(-0.5))


def test_colouring_tilts_white_noise_as_drawn() -> None:
    white = np.random.default_rng(0).standard_normal(4 * SR).astype(np.float32)
    rng = np.random.default_rng(7)
    tilt = np.random.default_rng(7).uniform(-6.0, 6.0)  # the first draw is the tilt
    coloured = random_colouring(white, rng, tilt_db=6.0, eq_db=0.0, bands=0)
    assert coloured.shape == white.shape and coloured.dtype == np.float32
    # the power two octaves apart moves by two octaves' tilt (white noise is flat to within ~0.2 dB)
    measured = (_band_db(coloured, 3600, 4400) - _band_db(white, 3600, 4400)) - (
        _band_db(coloured, 900, 1100) - _band_db(white, 900, 1100)
    )
    assert measured == pytest.approx(2 * tilt, abs=0.3)
    assert abs(tilt) > 0.5  # the check above is not vacuous


def test_zero_gains_leave_the_signal_and_the_same_seed_repeats() -> None:
    x = np.random.default_rng(1).standard_normal(8000).astype(np.float32)
    flat = random_colouring(x, np.random.default_rng(3), tilt_db=0.0, eq_db=0.0, bands=3)
    assert np.allclose(flat, x, atol=1e-5)
    a = random_colouring(x, np.random.default_rng(4), tilt_db=6.0, eq_db=10.0, bands=3)
    b = random_colouring(x, np.random.default_rng(4), tilt_db=6.0, eq_db=10.0, bands=3)
    assert np.array_equal(a, b) and not np.allclose(a, x, atol=1e-3)
