"""Blind quality measures of a recording: what a system can tell about its own input.

Every measure is computed from the audio a system receives (the corrupted input, never the clean
speech or the noise apart), so the evaluation, the calibration fit and a user's verification all
compute the same numbers from the same waveform. Waveforms are ``(N,)`` float32 at 16 kHz.

SNR estimators (both return dB, clipped to ``[lo, hi]``):

* :func:`wada_snr`, waveform amplitude distribution analysis (Kim and Stern, Interspeech 2008).
  Speech amplitudes are modelled as Gamma-distributed with shape ``alpha = 0.4`` (a random sign),
  the noise as Gaussian. The statistic
  ``G_z = ln(E|z|) - E[ln|z|]`` (the log of the arithmetic over the geometric mean of ``|z|``)
  does not depend on the level of ``z`` and grows monotonically with the SNR of ``z = x + v``,
  from ``0.5 ln(2/pi) + (gamma_E + ln 2) / 2 ~= 0.409`` for Gaussian noise alone to
  ``ln(alpha) - psi(alpha) ~= 1.645`` for speech alone. The curve ``G_z(SNR)`` is tabulated once
  (:func:`wada_table`, by simulation with a fixed seed) and inverted by interpolation.
* :func:`percentile_snr`, a band-wise noise floor: the power spectrogram (32 ms frames, 16 ms
  hop) is pooled into ``bands`` bands; a band's noise power is its ``percentile``-th percentile
  over the frames (speech is sparse in time and frequency, noise is not), and
  ``SNR = 10 log10(sum_b max(P_b - N_b, 0) / sum_b N_b)`` with ``P_b`` the band's mean power.

Duration: :func:`speech_seconds`, the length of the frames whose energy stands ``margin_db``
above the recording's frame-energy floor (an energy voice-activity detector), and the plain
length in seconds. :func:`quality_measures` computes every named measure of one recording.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import cache

import numpy as np

SAMPLE_RATE = 16000

#: the measures :func:`quality_measures` knows, in the order it returns them when asked for all
MEASURES = ("snr_wada", "snr_percentile", "speech_seconds", "seconds")

#: the shape of the Gamma distribution of speech amplitudes (Kim and Stern 2008)
WADA_ALPHA = 0.4
#: the SNR range (dB) of the WADA table; estimates outside it are clipped to it
WADA_RANGE = (-20.0, 100.0)
_EPS = 1e-20


def _wave(x: np.ndarray) -> np.ndarray:
    wav = np.asarray(x, dtype=np.float64)
    if wav.ndim != 1:
        raise ValueError(f"expected one waveform of shape (N,), got shape {wav.shape}")
    if wav.shape[0] == 0:
        raise ValueError("the waveform is empty")
    return wav


def _g_statistic(z: np.ndarray) -> float:
    """``ln(E|z|) - E[ln|z|]`` of a (N,) signal (exact zeros, e.g. digital silence, left out)."""
    a = np.abs(z)
    a = a[a > 0]
    if a.size == 0:
        return math.inf
    return float(math.log(a.mean()) - np.log(a).mean())


@cache
def wada_table(step_db: float = 0.5, samples: int = 200_000) -> tuple[np.ndarray, np.ndarray]:
    """The WADA curve: ((K,) SNRs in dB, (K,) ``G_z`` at each), ``G_z`` increasing.

    Simulated once with a fixed seed: ``x = s * g`` with ``g ~ Gamma(WADA_ALPHA, 1)`` and a random
    sign ``s``, ``v ~ N(0, 1)``, ``z = c x + v`` with ``c`` setting ``E[(c x)^2] / E[v^2]`` to each
    SNR (the same draws at every SNR, so the curve is smooth).
    """
    rng = np.random.default_rng(20080922)
    x = rng.gamma(WADA_ALPHA, 1.0, samples) * rng.choice([-1.0, 1.0], samples)
    v = rng.standard_normal(samples)
    x /= math.sqrt(np.mean(x**2))
    v /= math.sqrt(np.mean(v**2))
    snrs = np.arange(WADA_RANGE[0], WADA_RANGE[1] + step_db / 2, step_db)
    g = np.array([_g_statistic(10 ** (snr / 20) * x + v) for snr in snrs])
    g = np.maximum.accumulate(g)  # monotone against the simulation's last wiggles
    return snrs, g


def wada_snr(wav: np.ndarray, lo: float = WADA_RANGE[0], hi: float = WADA_RANGE[1]) -> float:
    """Blind SNR in dB of a (N,) waveform by WADA (see the module docstring), clipped to
    ``[lo, hi]``. A silent waveform gives ``lo``."""
    z = _wave(wav)
    if not np.any(z):
        return float(lo)
    snrs, g = wada_table()
    gz = _g_statistic(z)
    if gz <= g[0]:
        estimate = snrs[0]
    elif gz >= g[-1]:
        estimate = snrs[-1]
    else:
        estimate = float(np.interp(gz, g, snrs))
    return float(min(max(estimate, lo), hi))


def _frames(wav: np.ndarray, frame: int, hop: int) -> np.ndarray:
    """(N,) -> (T, frame) frames (the last partial frame dropped; one zero-padded frame if N < frame)."""
    if wav.shape[0] < frame:
        wav = np.pad(wav, (0, frame - wav.shape[0]))
    count = 1 + (wav.shape[0] - frame) // hop
    index = np.arange(frame)[None, :] + hop * np.arange(count)[:, None]
    return wav[index]


def band_powers(wav: np.ndarray, bands: int = 16, frame: int = 512, hop: int = 256) -> np.ndarray:
    """(N,) waveform -> (T, bands) power per frame in ``bands`` equal-width bands of the Hann-window
    power spectrum (DC and Nyquist left out)."""
    frames = _frames(_wave(wav), frame, hop) * np.hanning(frame)
    power = np.abs(np.fft.rfft(frames, axis=1))[:, 1:-1] ** 2
    edges = np.linspace(0, power.shape[1], bands + 1).astype(int)
    return np.add.reduceat(power, edges[:-1], axis=1) / np.diff(edges)


def percentile_snr(
    wav: np.ndarray, percentile: float = 30.0, bands: int = 16, lo: float = -20.0, hi: float = 60.0
) -> float:
    """Blind SNR in dB of a (N,) waveform from band-wise noise floors (see the module
    docstring), clipped to ``[lo, hi]``. A silent waveform gives ``lo``."""
    power = band_powers(wav, bands)
    noise = np.percentile(power, percentile, axis=0)
    signal = np.maximum(power.mean(axis=0) - noise, 0.0)
    total_noise = float(noise.sum())
    if total_noise <= _EPS:
        return float(hi if signal.sum() > _EPS else lo)
    estimate = 10 * math.log10(max(float(signal.sum()), _EPS) / total_noise)
    return float(min(max(estimate, lo), hi))


def speech_seconds(
    wav: np.ndarray, margin_db: float = 6.0, floor_percentile: float = 10.0, sample_rate: int = SAMPLE_RATE
) -> float:
    """Seconds of a (N,) waveform whose 32 ms frames (16 ms hop) have an energy at least
    ``margin_db`` above the ``floor_percentile``-th percentile of the frame energies; the
    length of the waveform when no frame stands out (a steady signal)."""
    z = _wave(wav)
    energy = 10 * np.log10(np.mean(_frames(z, 512, 256) ** 2, axis=1) + _EPS)
    active = energy >= np.percentile(energy, floor_percentile) + margin_db
    share = float(active.mean()) if active.any() else 1.0
    return share * z.shape[0] / sample_rate


def quality_measures(wav: np.ndarray, names: tuple[str, ...] = MEASURES) -> np.ndarray:
    """(N,) waveform at 16 kHz -> (len(names),) float64 measures, in the order of ``names``
    (from :data:`MEASURES`)."""
    unknown = [n for n in names if n not in MEASURES]
    if unknown:
        raise ValueError(f"unknown quality measure(s) {', '.join(unknown)} (known: {', '.join(MEASURES)})")
    z = _wave(wav)
    compute = {
        "snr_wada": lambda: wada_snr(z),
        "snr_percentile": lambda: percentile_snr(z),
        "speech_seconds": lambda: speech_seconds(z),
        "seconds": lambda: z.shape[0] / SAMPLE_RATE,
    }
    return np.array([compute[n]() for n in names], dtype=np.float64)


#: measures that add up over a recording's pieces; the others are averaged, weighted by length
ADDITIVE_MEASURES = ("speech_seconds", "seconds")


def windowed_quality_measures(windows: Iterable[np.ndarray], names: tuple[str, ...] = MEASURES) -> np.ndarray:
    """The measures of one recording given as its consecutive (N_j,) windows, holding one window
    at a time (a long recording is measured as it is embedded: by windows): each window is
    measured on its own; durations add up, the other measures are averaged weighted by the
    windows' lengths. A single window gives exactly :func:`quality_measures` of it.

    Returns:
        (len(names),) float64.
    """
    additive = np.array([n in ADDITIVE_MEASURES for n in names])
    total = np.zeros(len(names), dtype=np.float64)
    length = 0
    for window in windows:
        n = int(np.asarray(window).shape[0])
        values = quality_measures(window, names)
        total += np.where(additive, values, values * n)
        length += n
    if length == 0:
        raise ValueError("the waveform is empty")
    return np.where(additive, total, total / length)


__all__ = [
    "ADDITIVE_MEASURES",
    "MEASURES",
    "WADA_ALPHA",
    "WADA_RANGE",
    "band_powers",
    "percentile_snr",
    "quality_measures",
    "speech_seconds",
    "wada_snr",
    "wada_table",
    "windowed_quality_measures",
]
