"""A synthetic corpus built in seconds from numpy alone, for tests and smoke checks.

Each "speaker" is a glottal-like pulse train with its own pitch range and formant frequencies,
shaped into syllable-like bursts; noise is coloured noise, music is sums of harmonic notes,
babble talkers are other toy voices, and rooms are exponentially decaying noise RIRs. It has the
same layout as the embedded synthvox corpus (``train``, ``val``, ``test`` speech directories with
trials, ``augment/train`` and ``augment/test``), so every pipeline stage runs on it. It is not
speech: use it to check that things run, never to judge a method.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
from scipy import signal

from gradw.audio.io import write_audio
from gradw.data.dirs import write_augment_dir, write_speech_dir
from gradw.data.trials import Trial

SR = 16000


def toy_voice(rng: np.random.Generator, f0: float, formants: tuple[float, ...], seconds: float) -> np.ndarray:
    """(N,) float32: a pulse train at ~f0 (with drift) through formant resonators, in syllables."""
    n = int(seconds * SR)
    t = np.arange(n) / SR
    drift = 1.0 + 0.08 * np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * t + rng.uniform(0, 6.28))
    phase = np.cumsum(f0 * drift / SR)
    pulses = (np.diff(np.floor(phase), prepend=0.0) > 0).astype(np.float64)
    out = pulses + 0.01 * rng.standard_normal(n)
    for freq in formants:
        b, a = signal.iirpeak(freq, Q=8.0, fs=SR)
        out = signal.lfilter(b, a, out)
    rate = rng.uniform(3.0, 5.0)
    envelope = np.clip(np.sin(2 * np.pi * rate * t + rng.uniform(0, 6.28)), 0, None) ** 0.7
    out = out * envelope
    return (0.3 * out / (np.abs(out).max() + 1e-9)).astype(np.float32)


def _coloured_noise(rng: np.random.Generator, seconds: float) -> np.ndarray:
    n = int(seconds * SR)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.maximum(np.fft.rfftfreq(n, 1 / SR), 20.0)
    spectrum /= freqs ** (rng.uniform(0.0, 2.0) / 2)
    out = np.fft.irfft(spectrum, n)
    return (0.3 * out / np.abs(out).max()).astype(np.float32)


def _music(rng: np.random.Generator, seconds: float) -> np.ndarray:
    n = int(seconds * SR)
    out = np.zeros(n)
    note = int(0.25 * SR)
    for start in range(0, n, note):
        t = np.arange(min(note, n - start)) / SR
        for f in 110.0 * 2 ** (rng.integers(0, 36, size=3) / 12):
            out[start : start + len(t)] += sum(np.sin(2 * np.pi * f * k * t) / k for k in range(1, 5))
    return (0.3 * out / np.abs(out).max()).astype(np.float32)


def _rir(rng: np.random.Generator) -> np.ndarray:
    n = int(rng.uniform(0.1, 0.3) * SR)
    decay = np.exp(-np.arange(n) / (rng.uniform(0.02, 0.06) * SR))
    rir = rng.standard_normal(n) * decay
    rir[0] = 3.0 * np.abs(rir).max()
    return (rir / np.abs(rir).max()).astype(np.float32)


def build_toy_corpus(
    out: str | Path,
    speakers: tuple[int, int, int] = (6, 3, 4),
    utts_per_speaker: int = 4,
    seconds: float = 2.0,
    seed: int = 0,
) -> dict[str, int]:
    """Write the toy corpus under ``out``; returns counts. Deterministic for a seed."""
    out = Path(out).resolve()
    rng = np.random.default_rng(seed)
    summary: dict[str, int] = {}
    spk_counter = 0
    for split, count in zip(("train", "val", "test"), speakers, strict=True):
        wavs: dict[str, Path] = {}
        utt2spk: dict[str, str] = {}
        for _ in range(count):
            spk = f"spk{spk_counter:03d}"
            spk_counter += 1
            f0 = rng.uniform(90, 240)
            formants = tuple(sorted(rng.uniform([300, 900, 2000], [900, 2000, 3500])))
            for u in range(utts_per_speaker):
                utt = f"{spk}-{u:02d}"
                path = out / "audio" / split / f"{utt}.wav"
                write_audio(path, toy_voice(rng, f0, formants, seconds * rng.uniform(0.8, 1.2)))
                wavs[utt], utt2spk[utt] = path, spk
        trials = None
        if split != "train":
            utts = sorted(wavs)
            trials = [Trial(a, b, utt2spk[a] == utt2spk[b]) for a, b in combinations(utts, 2)]
        write_speech_dir(out / split, wavs, utt2spk, trials=trials)
        summary[f"{split}_speakers"] = count
    for pool in ("train", "test"):
        for category, make, n_files in (
            ("noise", lambda: _coloured_noise(rng, 3.0), 4),
            ("music", lambda: _music(rng, 3.0), 3),
            (
                "babble",
                lambda: toy_voice(rng, rng.uniform(90, 240), (500.0, 1500.0, 2500.0), 3.0),
                6,
            ),
            ("rirs", lambda: _rir(rng), 3),
        ):
            files = {}
            for i in range(n_files):
                path = out / "audio" / "augment" / pool / category / f"{category}{i}.wav"
                write_audio(path, make())
                files[f"{category}{i}"] = path
            write_augment_dir(out / "augment" / pool, category, files)
    return summary
