"""Random spectral colouring of a noise: more noise types from the same recordings.

A training noise or music segment is filtered by a smooth random gain curve before it is scaled
to the drawn SNR (so the SNR is exact whatever the colouring). The curve, in dB over frequency f::

    gain_db(f) = tilt * log2(f / 1 kHz) + sum_k g_k * exp(-0.5 * ((log2 f - log2 c_k) / w_k) ** 2)

a spectral tilt (``tilt`` in dB per octave, uniform in ``[-tilt_db, tilt_db]``) and ``bands``
log-Gaussian bumps or notches (centre ``c_k`` log-uniform in 100 Hz..7 kHz, width ``w_k`` uniform
in 0.3..1.5 octaves, gain ``g_k`` uniform in ``[-eq_db, eq_db]``); frequencies below 50 Hz take
the curve's value at 50 Hz. It is applied in one real FFT of the segment (circular: the segment
is a crop of a longer recording, and its ends are not heard apart from the speech's).
"""

from __future__ import annotations

import numpy as np

__all__ = ["colour_gain_db", "random_colouring"]

#: (low, high) Hz of the bumps' centres
CENTRE_RANGE = (100.0, 7000.0)
#: (low, high) octaves of the bumps' widths
WIDTH_RANGE = (0.3, 1.5)
#: below this frequency (Hz) the curve is held at its value there
LOW_FREQUENCY = 50.0


def colour_gain_db(
    freqs: np.ndarray,
    tilt: float,
    centres: np.ndarray | None = None,
    widths: np.ndarray | None = None,
    gains: np.ndarray | None = None,
) -> np.ndarray:
    """The gain curve in dB at ``freqs`` (Hz, any shape; see the module docstring).

    Args:
        freqs: frequencies in Hz.
        tilt: dB per octave, 0 at 1 kHz.
        centres, widths, gains: (K,) the bumps' centres (Hz), widths (octaves) and gains (dB);
            None: no bumps.
    """
    octaves = np.log2(np.maximum(np.asarray(freqs, dtype=np.float64), LOW_FREQUENCY) / 1000.0)
    curve = tilt * octaves
    if centres is not None and widths is not None and gains is not None:
        where = np.log2(np.asarray(centres, dtype=np.float64) / 1000.0)
        shape = (octaves[..., None] - where) / np.asarray(widths, dtype=np.float64)
        curve = curve + (np.asarray(gains, dtype=np.float64) * np.exp(-0.5 * shape**2)).sum(axis=-1)
    return curve


def random_colouring(
    wav: np.ndarray,
    rng: np.random.Generator,
    tilt_db: float,
    eq_db: float,
    bands: int,
    sample_rate: int = 16000,
) -> np.ndarray:
    """``wav`` (N,) filtered by a random gain curve drawn from ``rng``; (N,) float32.

    The draws, in order: the tilt, then ``bands`` centres, widths and gains (nothing for
    ``bands=0``). ``tilt_db=0`` and ``eq_db=0`` still draw but leave the spectrum as it is.
    """
    tilt = float(rng.uniform(-tilt_db, tilt_db))
    centres = np.exp(rng.uniform(*np.log(CENTRE_RANGE), size=bands))
    widths = rng.uniform(*WIDTH_RANGE, size=bands)
    gains = rng.uniform(-eq_db, eq_db, size=bands)
    n = wav.shape[0]
    spectrum = np.fft.rfft(np.asarray(wav, dtype=np.float64))
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    spectrum *= 10.0 ** (colour_gain_db(freqs, tilt, centres, widths, gains) / 20.0)
    return np.fft.irfft(spectrum, n).astype(np.float32)
