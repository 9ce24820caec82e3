"""Real-time factor of each peer denoiser (gradw.evaluation.peers) on CPU.

Run by hand (not part of the test suite)::

    python benchmarks/peers_rtf.py                 # 10 s of audio, 3 timed runs after a warm-up
    python benchmarks/peers_rtf.py --seconds 30 --repeats 5 --peers rnnoise deepfilternet3

The input is a synthetic speech-like signal (harmonic source with a moving f0, formant filters,
syllable envelope) plus pink and white noise at 0 dB. Content matters for speed: RNNoise and
DeepFilterNet3 skip work on silent frames, so timing silence or pure noise would mislead. RTF is
processing time / audio duration, per call to ``enhance`` (which includes building a fresh
model state, the 16 <-> 48 kHz resampling and the delay compensation). The SI-SDR columns are a
sanity check that each peer did something, not a quality benchmark.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
from scipy import signal

from gradw.evaluation.peers import PEER_NAMES, PeerUnavailableError, build_peer

SR = 16000


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """(N,) float32 speech-like signal at 16 kHz, peak 0.3."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    f0 = 125 + 25 * np.sin(2 * np.pi * 0.6 * t) + 10 * np.sin(2 * np.pi * 2.1 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    source = sum(np.sin(k * phase) / k for k in range(1, 60))
    vowels = [(730, 1090, 2440), (270, 2290, 3010), (530, 1840, 2480), (570, 840, 2410)]
    out = np.zeros(n)
    start = int(0.15 * SR)
    while start + int(0.3 * SR) < n:
        length = int(rng.uniform(0.12, 0.30) * SR)
        seg = source[start : start + length]
        shaped = np.zeros(length)
        vowel = vowels[rng.integers(len(vowels))]
        for formant, bw, gain in zip(vowel, (90, 110, 150), (1.0, 0.6, 0.3), strict=True):
            r = np.exp(-np.pi * bw / SR)
            shaped += gain * signal.lfilter(
                [1 - r], [1, -2 * r * np.cos(2 * np.pi * formant / SR), r * r], seg
            )
        out[start : start + length] = shaped * np.sin(np.pi * np.arange(length) / length) ** 2
        start += length + int(rng.uniform(0.04, 0.16) * SR)
    return (0.3 * out / np.abs(out).max()).astype(np.float32)


def noisy_mixture(clean: np.ndarray, snr_db: float, seed: int = 1) -> np.ndarray:
    """clean + (pink + white) noise at ``snr_db``; (N,) float32."""
    rng = np.random.default_rng(seed)
    n = clean.shape[0]
    spec = np.fft.rfft(rng.standard_normal(n))
    spec[0] = 0
    spec[1:] /= np.sqrt(np.fft.rfftfreq(n, 1 / SR)[1:])
    pink = np.fft.irfft(spec, n)
    noise = pink / pink.std() + rng.standard_normal(n)
    gain = np.sqrt(np.sum(clean.astype(np.float64) ** 2) / np.sum(noise**2) / 10 ** (snr_db / 10))
    return (clean + gain * noise).astype(np.float32)


def si_sdr(est: np.ndarray, ref: np.ndarray) -> float:
    est, ref = est.astype(np.float64), ref.astype(np.float64)
    target = np.dot(est, ref) / np.dot(ref, ref) * ref
    return float(10 * np.log10(np.sum(target**2) / np.sum((est - target) ** 2)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="audio duration (default 10)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up (default 3)")
    parser.add_argument("--snr", type=float, default=0.0, help="input SNR in dB (default 0)")
    parser.add_argument("--peers", nargs="+", default=list(PEER_NAMES), choices=PEER_NAMES)
    args = parser.parse_args(argv)

    clean = speech_like(args.seconds)
    noisy = noisy_mixture(clean, args.snr)
    cpu = platform.processor() or platform.machine()
    print(
        f"# {args.seconds:g} s of audio at {SR} Hz, SNR {args.snr:g} dB, "
        f"{args.repeats} runs after a warm-up; {cpu}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}"
    )
    print(f"{'peer':<28} {'build s':>8} {'RTF mean':>9} {'RTF min':>8} {'SI-SDR in':>10} {'out':>6}")
    for name in args.peers:
        t0 = time.perf_counter()
        try:
            peer = build_peer(name)
        except PeerUnavailableError as err:
            print(f"{name:<28} unavailable: {err}")
            continue
        build_s = time.perf_counter() - t0
        out = peer.enhance(noisy)  # warm-up
        rtfs = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            peer.enhance(noisy)
            rtfs.append((time.perf_counter() - t0) / args.seconds)
        print(
            f"{name:<28} {build_s:>8.3f} {statistics.fmean(rtfs):>9.4f} {min(rtfs):>8.4f} "
            f"{si_sdr(noisy, clean):>10.2f} {si_sdr(out, clean):>6.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
