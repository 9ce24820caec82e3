"""Mixing speech with noise, music, babble and room impulse responses (numpy, float32, 16 kHz).

SNR convention (the paper's code, voxceleb_trainer and WeSpeaker share it)::

    db(x) = 10 * log10(mean(x ** 2) + floor)
    gain  = sqrt(10 ** ((db(speech) - db(noise) - snr) / 10))
    noisy = speech + gain * noise

With the default ``floor=1e-4`` (the paper's training augmentation) the floor acts as a
-40 dBFS noise floor: a quiet noise segment cannot be scaled up far enough, so the mixture comes
out cleaner than nominal. With ``floor=0`` the achieved SNR is exactly the requested one, which is
what test conditions use (see :mod:`gradw.data.conditions`); then near-silent inputs are
rejected with a :class:`MixingError` because their gain would be meaningless.

Waveforms are ``(N,)`` float32 arrays; powers are computed in float64.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy.signal import fftconvolve

from gradw.errors import GradwError

__all__ = [
    "BabbleMix",
    "MIN_POWER_DB",
    "MixingError",
    "PAPER_FLOOR",
    "Reverberator",
    "apply_scale",
    "babble",
    "draw_offset",
    "fit_length",
    "fitted_power_db",
    "gain_for_levels",
    "measure_snr",
    "mix_at_snr",
    "peak_normalise",
    "peak_scale",
    "power_db",
    "reverberate",
    "snr_gain",
    "unit_gains",
    "weighted_sum",
]

PAPER_FLOOR = 1e-4
"""The power floor of the paper's SNR formula (a -40 dBFS floor)."""

MIN_POWER_DB = -80.0
"""Below this power (dBFS) a signal counts as silent when an exact SNR (``floor=0``) is asked."""


class MixingError(GradwError, ValueError):
    """A mixture cannot be made as asked (for example an exact SNR against silent noise)."""


def _as_wave(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"{name} must be a 1-D waveform (N,), got shape {x.shape}")
    if x.shape[0] == 0:
        raise MixingError(f"{name} is empty")
    return x.astype(np.float32, copy=False)


def power_db(x: np.ndarray, floor: float = PAPER_FLOOR) -> float:
    """``10 * log10(mean(x**2) + floor)`` of a waveform ``(N,)`` (``-inf`` for silence, floor 0)."""
    power = float(np.mean(np.square(np.asarray(x, dtype=np.float64)))) + floor
    return 10.0 * math.log10(power) if power > 0 else -math.inf


def measure_snr(speech: np.ndarray, noise: np.ndarray) -> float:
    """The true SNR in dB between a speech ``(N,)`` and the noise ``(N,)`` added to it (no floor)."""
    return power_db(speech, 0.0) - power_db(noise, 0.0)


def snr_gain(
    speech: np.ndarray,
    noise: np.ndarray,
    snr_db: float,
    floor: float = PAPER_FLOOR,
    min_power_db: float = MIN_POWER_DB,
) -> float:
    """The gain for ``noise`` so that ``speech + gain * noise`` is at ``snr_db``.

    ``gain = sqrt(10 ** ((db(speech) - db(noise) - snr_db) / 10))`` with
    ``db(x) = 10 log10(mean(x²) + floor)``: the paper's formula. With ``floor=0`` the SNR of the
    mixture is exactly ``snr_db``; with the paper's ``floor=1e-4`` it is higher than asked when the
    noise (or speech) is quiet, the documented pitfall of paper-faithful training noise.

    Args:
        speech: (N,) waveform the SNR is relative to.
        noise: (M,) noise waveform (usually already fitted to N samples).
        snr_db: wanted SNR in dB.
        floor: power floor added inside the log (0 for an exact SNR).
        min_power_db: with ``floor=0``, speech or noise below this power (dBFS) is rejected.

    Raises:
        MixingError: with ``floor=0``, the noise or the speech is near-silent.
    """
    speech = _as_wave(speech, "speech")
    noise = _as_wave(noise, "noise")
    if floor < 0:
        raise ValueError(f"floor must be >= 0, got {floor}")
    return gain_for_levels(power_db(speech, floor), power_db(noise, floor), snr_db, floor == 0, min_power_db)


def gain_for_levels(
    speech_db: float, noise_db: float, snr_db: float, exact: bool = False, min_power_db: float = MIN_POWER_DB
) -> float:
    """:func:`snr_gain` from the two levels (``power_db`` of the speech and of the noise, with
    the same floor): ``sqrt(10 ** ((speech_db - noise_db - snr_db) / 10))``.

    Raises:
        MixingError: with ``exact`` (floor 0), a level below ``min_power_db``.
    """
    if exact:
        if noise_db < min_power_db:
            raise MixingError(
                f"noise is near-silent ({noise_db:.1f} dBFS < {min_power_db} dBFS); "
                "an exact SNR would need a meaningless gain"
            )
        if speech_db < min_power_db:
            raise MixingError(f"speech is near-silent ({speech_db:.1f} dBFS < {min_power_db} dBFS)")
    return float(math.sqrt(10.0 ** ((speech_db - noise_db - float(snr_db)) / 10.0)))


def fit_length(
    noise: np.ndarray,
    n: int,
    rng: np.random.Generator | None = None,
    offset: int | None = None,
) -> tuple[np.ndarray, int]:
    """Cut or tile ``noise`` to ``n`` samples.

    The segment is ``noise[(offset + arange(n)) % len(noise)]``: a plain crop when the noise is
    long enough, the noise tiled (starting at ``offset``) when it is shorter. Without ``offset``
    one is drawn from ``rng``: uniformly in ``[0, len - n]`` for long noise (so no wrap), in
    ``[0, len)`` for short noise (a random phase of the tiling).

    Args:
        noise: (M,) waveform.
        n: wanted length.
        rng: random generator, needed when ``offset`` is None.
        offset: start sample in ``[0, M)``.

    Returns:
        ``(segment, offset)``: the (n,) float32 segment and the offset used.
    """
    noise = _as_wave(noise, "noise")
    length = noise.shape[0]
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    if offset is None:
        if rng is None:
            raise ValueError("fit_length needs rng or offset")
        offset = draw_offset(length, n, rng)
    offset = int(offset)
    if not 0 <= offset < length:
        raise ValueError(f"offset {offset} outside [0, {length})")
    if offset + n <= length:
        return noise[offset : offset + n].copy(), offset
    out = np.empty(n, dtype=np.float32)  # noise[offset:], then whole copies, then its head
    out[: length - offset] = noise[offset:]
    for start in range(length - offset, n, length):
        out[start : start + length] = noise[: min(length, n - start)]
    return out, offset


def draw_offset(length: int, n: int, rng: np.random.Generator) -> int:
    """The start :func:`fit_length` draws for an (n,) segment of a (length,) noise: uniform in
    ``[0, length - n]`` for a long noise, in ``[0, length)`` for a short one."""
    return int(rng.integers(0, length - n + 1)) if length >= n else int(rng.integers(0, length))


def fitted_power_db(noise: np.ndarray, n: int, offset: int, block: int | None = None) -> float:
    """``power_db(fit_length(noise, n, offset=offset)[0], 0.0)``, the segment taken ``block``
    samples at a time (None: whole), so that a long segment is never held."""
    if block is None or n <= block:
        return power_db(fit_length(noise, n, offset=offset)[0], 0.0)
    length = np.asarray(noise).shape[0]
    total = 0.0
    for start in range(0, n, block):
        piece = fit_length(noise, min(block, n - start), offset=(offset + start) % length)[0]
        total += float(np.sum(np.square(piece.astype(np.float64))))
    return 10.0 * math.log10(total / n) if total > 0 else -math.inf


def mix_at_snr(
    speech: np.ndarray,
    noise: np.ndarray,
    snr_db: float,
    rng: np.random.Generator | None = None,
    offset: int | None = None,
    floor: float = PAPER_FLOOR,
) -> tuple[np.ndarray, np.ndarray]:
    """Add ``noise`` to ``speech`` at ``snr_db``.

    The noise is fitted to the speech length with :func:`fit_length` (random crop from ``rng``
    or the given ``offset``; tiled when short) and scaled with :func:`snr_gain`.

    Args:
        speech: (N,) clean waveform.
        noise: (M,) noise waveform.
        snr_db: wanted SNR in dB.
        rng / offset: how the noise segment is chosen.
        floor: power floor of the SNR formula (paper: 1e-4; exact: 0).

    Returns:
        ``(noisy, noise_scaled)``, both (N,) float32, with ``noisy = speech + noise_scaled``.
    """
    speech = _as_wave(speech, "speech")
    segment, _ = fit_length(noise, speech.shape[0], rng=rng, offset=offset)
    gain = snr_gain(speech, segment, snr_db, floor=floor)
    scaled = (np.float32(gain) * segment).astype(np.float32)
    return speech + scaled, scaled


class BabbleMix(NamedTuple):
    """The result of :func:`babble`.

    Attributes:
        noise: (n,) float32 babble, already scaled: add it to the speech.
        offsets: start sample of each talker's segment.
        gains: gain applied to each talker's segment (``noise = Σ gains[i] * segment[i]``).
    """

    noise: np.ndarray
    offsets: list[int]
    gains: list[float]


def babble(
    talkers: Sequence[np.ndarray],
    n: int,
    rng: np.random.Generator | None = None,
    snrs_db: Sequence[float] | None = None,
    speech: np.ndarray | None = None,
    snr_db: float | None = None,
    offsets: Sequence[int] | None = None,
    floor: float = PAPER_FLOOR,
    min_power_db: float = MIN_POWER_DB,
) -> BabbleMix:
    """Babble noise from several talkers, in one of two modes.

    * **Per-talker SNR (the paper's training babble)**: give ``snrs_db``, one SNR per talker
      (the paper draws 5-7 talkers, each SNR from {5, 8, 10, 13, 15} dB). Each talker segment is
      scaled with :func:`snr_gain` to its own SNR relative to ``speech``, and the scaled
      segments are summed. The overall SNR is then lower than any single one (about -3 to +8 dB
      for the paper's setting) and is not fixed.
    * **Overall SNR**: give ``snr_db``. Each talker segment is normalised to unit power (equal
      level), the segments are summed, and the sum is scaled to ``snr_db`` relative to
      ``speech``. With ``floor=0`` the nominal SNR is the true SNR, which is what test conditions
      use. Silent talker segments get gain 0 (all silent raises :class:`MixingError`).

    Each talker is fitted to ``n`` samples with :func:`fit_length` (random offset from ``rng``
    unless ``offsets`` are given; tiled when short).

    Args:
        talkers: list of (M_i,) talker waveforms.
        n: output length (the speech length).
        rng: random generator for the offsets.
        snrs_db: per-talker SNRs (per-talker mode).
        speech: (n,) clean waveform the SNRs refer to (required).
        snr_db: overall SNR (overall mode).
        offsets: per-talker start samples instead of random ones.
        floor: power floor of the SNR formula.
        min_power_db: power below which a talker segment counts as silent (overall mode).

    Returns:
        A :class:`BabbleMix` (scaled babble (n,), offsets, per-talker gains).
    """
    if not talkers:
        raise ValueError("babble needs at least one talker")
    if (snrs_db is None) == (snr_db is None):
        raise ValueError("give exactly one of snrs_db (per-talker mode) or snr_db (overall mode)")
    if speech is None:
        raise ValueError("babble needs the speech the SNR refers to")
    speech = _as_wave(speech, "speech")
    if speech.shape[0] != n:
        raise ValueError(f"speech has {speech.shape[0]} samples, expected n={n}")
    if offsets is not None and len(offsets) != len(talkers):
        raise ValueError(f"{len(offsets)} offsets for {len(talkers)} talkers")
    segments: list[np.ndarray] = []
    used: list[int] = []
    for i, talker in enumerate(talkers):
        segment, offset = fit_length(talker, n, rng=rng, offset=None if offsets is None else offsets[i])
        segments.append(segment)
        used.append(offset)

    if snrs_db is not None:
        if len(snrs_db) != len(talkers):
            raise ValueError(f"{len(snrs_db)} SNRs for {len(talkers)} talkers")
        gains = [snr_gain(speech, seg, snr, floor=floor) for seg, snr in zip(segments, snrs_db, strict=True)]
    else:
        unit = unit_gains([power_db(seg, 0.0) for seg in segments], min_power_db)
        total = weighted_sum(segments, unit)
        overall = snr_gain(speech, total, float(snr_db), floor=floor)  # type: ignore[arg-type]
        gains = [overall * u for u in unit]
    return BabbleMix(weighted_sum(segments, gains), used, gains)


def unit_gains(levels_db: Sequence[float], min_power_db: float = MIN_POWER_DB) -> list[float]:
    """The gains that bring babble talker segments of these levels (dBFS, floor 0) to unit power;
    0 for a near-silent segment (below ``min_power_db``).

    Raises:
        MixingError: every segment is near-silent.
    """
    unit = [0.0 if db < min_power_db else 10.0 ** (-db / 20.0) for db in levels_db]
    if not any(unit):
        raise MixingError("every babble talker segment is near-silent")
    return unit


def weighted_sum(segments: Sequence[np.ndarray], gains: Sequence[float]) -> np.ndarray:
    """``Σ gains[i] * segments[i]`` in float32, in a fixed order (so results are reproducible)."""
    out = np.zeros_like(segments[0], dtype=np.float32)
    for segment, gain in zip(segments, gains, strict=True):
        if gain:
            out += np.float32(gain) * segment
    return out


def _unit_rir(rir: np.ndarray) -> tuple[np.ndarray, int]:
    """(L,) RIR -> (its float64 copy normalised by its energy, the index of its direct path)."""
    rir = np.asarray(rir, dtype=np.float64)
    if rir.ndim != 1 or rir.shape[0] == 0:
        raise ValueError(f"rir must be a non-empty 1-D array, got shape {rir.shape}")
    energy = float(np.sum(rir**2))
    if not energy > 0:
        raise MixingError("the RIR is all zeros")
    rir = rir / math.sqrt(energy)
    return rir, int(np.argmax(np.abs(rir)))


def reverberate(
    speech: np.ndarray,
    rir: np.ndarray,
    target: str = "dry",
    early_ms: float = 50.0,
    sample_rate: int = 16000,
) -> tuple[np.ndarray, np.ndarray]:
    """Convolve speech with a room impulse response, keeping it aligned with the clean target.

    The RIR is normalised by its energy (``rir / sqrt(sum(rir**2))``, as in voxceleb_trainer,
    WeSpeaker and the paper's code) and convolved with ``scipy.signal.fftconvolve``. Unlike
    ``convolve(...)[:N]``, the output is taken from the RIR's direct path on (the index of its
    largest absolute value), ``full[peak : peak + N]``, so the reverberant signal is not delayed
    relative to the clean one: a frame of the clean target matches the same frame of the input.
    A pure delta RIR (at any position) returns the speech unchanged.

    Args:
        speech: (N,) clean waveform.
        rir: (L,) impulse response at the same sample rate.
        target: the clean target returned with it: ``"dry"`` (the input speech, a copy) or
            ``"early"`` (speech convolved with the RIR's direct path and the first ``early_ms``
            of reflections, the usual dereverberation target), both aligned the same way.
        early_ms: length of the early part after the peak for ``target="early"``.
        sample_rate: sample rate in Hz (for ``early_ms``).

    Returns:
        ``(reverberant, aligned_clean)``, both (N,) float32.
    """
    speech = _as_wave(speech, "speech")
    rir, peak = _unit_rir(rir)
    n = speech.shape[0]
    dry = speech.astype(np.float64)
    reverberant = fftconvolve(dry, rir)[peak : peak + n].astype(np.float32)
    if target == "dry":
        clean = speech.copy()
    elif target == "early":
        end = peak + 1 + int(round(early_ms * sample_rate / 1000.0))
        clean = fftconvolve(dry, rir[:end])[peak : peak + n].astype(np.float32)
    else:
        raise ValueError(f"target must be 'dry' or 'early', not {target!r}")
    return reverberant, clean


def peak_normalise(
    wav: np.ndarray,
    peak: float = 0.99,
    only_if_above: float | None = 1.0,
) -> tuple[np.ndarray, float]:
    """Scale a waveform so its largest absolute sample is ``peak``.

    With ``only_if_above`` (default 1.0), the waveform is only scaled down when its peak exceeds
    that value (to avoid clipping); otherwise it is returned as is with scale 1. The scale is
    returned so the clean target can be scaled by the same factor (keeping the pair consistent).

    Args:
        wav: (N,) waveform.
        peak: wanted peak after scaling.
        only_if_above: scale only when the peak is above this (None: always scale).

    Returns:
        ``(scaled, scale)``: the (N,) float32 waveform and the factor applied.
    """
    wav = np.asarray(wav, dtype=np.float32)
    scale = peak_scale(float(np.max(np.abs(wav))) if wav.size else 0.0, peak, only_if_above)
    if scale == 1.0:
        return wav, 1.0
    return apply_scale(wav, scale), scale


def peak_scale(top: float, peak: float = 0.99, only_if_above: float | None = 1.0) -> float:
    """The factor :func:`peak_normalise` applies to a waveform whose largest absolute sample is
    ``top`` (1.0: left as it is), so that a waveform held in pieces is scaled as if whole."""
    if top == 0.0 or (only_if_above is not None and top <= only_if_above):
        return 1.0
    return peak / top


def apply_scale(wav: np.ndarray, scale: float) -> np.ndarray:
    """``wav`` scaled as :func:`peak_normalise` scales it (float32; ``wav`` itself for 1.0)."""
    if scale == 1.0:
        return np.asarray(wav, dtype=np.float32)
    return (np.asarray(wav, dtype=np.float32) * np.float32(scale)).astype(np.float32)


class Reverberator:
    """:func:`reverberate`'s reverberant output, computed piece by piece (overlap-add).

    Feed the speech in consecutive pieces of any length (:meth:`push`), then call
    :meth:`finish`: the pieces returned, in order, make the (N,) float32 waveform that
    ``reverberate(speech, rir)[0]`` gives for the whole speech, to float rounding (each piece is
    convolved on its own and the tails of the convolutions are carried into the next). Memory is
    bounded by a piece and the RIR, whatever N.

    Args:
        rir: (L,) impulse response (normalised by its energy and aligned on its direct path, as
            :func:`reverberate` does).
        num_samples: N, the length of the whole speech.
        chunk: the most samples convolved at once (bounds the FFT's memory; at least four times
            the RIR's length, so that the FFTs are not mostly the RIR's tail).
    """

    def __init__(self, rir: np.ndarray, num_samples: int, chunk: int = 1 << 15) -> None:
        self.rir, self.peak = _unit_rir(rir)
        self.num_samples = int(num_samples)
        self.chunk = max(int(chunk), 4 * self.rir.shape[0])
        self._carry = np.zeros(self.rir.shape[0] - 1, dtype=np.float64)  # the tail still to come
        self._fed = 0
        self._skip = self.peak  # samples of the full convolution before the direct path
        self._left = self.num_samples  # output samples still to give

    def _emit(self, full: np.ndarray) -> np.ndarray:
        """Final samples of the full convolution -> the output samples among them."""
        drop = min(self._skip, full.shape[0])
        self._skip -= drop
        out = full[drop : drop + self._left].astype(np.float32)
        self._left -= out.shape[0]
        return out

    def push(self, piece: np.ndarray) -> np.ndarray:
        """Feed the next (M,) speech samples; returns the output samples now final (float32)."""
        piece = np.asarray(piece)
        if piece.ndim != 1:
            raise ValueError(f"expected a (M,) piece of speech, got shape {piece.shape}")
        if self._fed + piece.shape[0] > self.num_samples:
            raise ValueError(f"more than the {self.num_samples} samples announced")
        self._fed += piece.shape[0]
        outs = []
        for start in range(0, piece.shape[0], self.chunk):
            part = piece[start : start + self.chunk].astype(np.float64)
            full = fftconvolve(part, self.rir)  # (m + L - 1,), aligned on the first sample of part
            full[: self._carry.shape[0]] += self._carry
            self._carry = full[part.shape[0] :]
            outs.append(self._emit(full[: part.shape[0]]))
        return np.concatenate(outs) if len(outs) != 1 else outs[0]

    def finish(self) -> np.ndarray:
        """The last output samples, once every speech sample was pushed."""
        if self._fed != self.num_samples:
            raise ValueError(f"{self._fed} samples pushed of the {self.num_samples} announced")
        out = self._emit(self._carry)
        self._carry = self._carry[:0]
        return out
