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

``benchmarks/enhance_rtf.py`` runs the same measurement next to gradw's G (``measure_peer``).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from _common import (
    SR,
    machine_summary,
    markdown_table,
    noisy_mixture,
    si_sdr,
    speech_like,
    time_calls,
)

from gradw.evaluation.peers import PEER_NAMES, PeerUnavailableError, build_peer


def measure_peer(name: str, noisy: np.ndarray, repeats: int) -> dict:
    """Build peer ``name`` and time ``enhance`` on ``noisy`` (one warm-up call, then ``repeats``).

    Returns ``{"name", "build_s", "times", "output"}``, or ``{"name", "unavailable": reason}``.
    """
    start = time.perf_counter()
    try:
        peer = build_peer(name)
    except PeerUnavailableError as err:
        return {"name": name, "unavailable": str(err)}
    build_s = time.perf_counter() - start
    output = peer.enhance(noisy)  # warm-up, kept for the sanity check
    times = time_calls(lambda: peer.enhance(noisy), repeats, warmup=0)
    return {"name": name, "build_s": build_s, "times": times, "output": output}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="audio duration (default 10)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up (default 3)")
    parser.add_argument("--snr", type=float, default=0.0, help="input SNR in dB (default 0)")
    parser.add_argument("--peers", nargs="+", default=list(PEER_NAMES), choices=PEER_NAMES)
    args = parser.parse_args(argv)

    clean = speech_like(args.seconds)
    noisy = noisy_mixture(clean, args.snr)
    print(f"machine: {machine_summary()}")
    print(
        f"{args.seconds:g} s of audio at {SR} Hz, SNR {args.snr:g} dB, {args.repeats} runs after a warm-up\n"
    )
    rows = []
    for name in args.peers:
        result = measure_peer(name, noisy, args.repeats)
        if "unavailable" in result:
            rows.append([name, "unavailable: " + result["unavailable"], "", "", "", ""])
            continue
        rtfs = [t / args.seconds for t in result["times"]]
        rows.append(
            [
                name,
                f"{result['build_s']:.3f}",
                f"{statistics.fmean(rtfs):.4f}",
                f"{min(rtfs):.4f}",
                f"{si_sdr(noisy, clean):.2f}",
                f"{si_sdr(result['output'], clean):.2f}",
            ]
        )
    print(markdown_table(["peer", "build s", "RTF mean", "RTF min", "SI-SDR in dB", "SI-SDR out dB"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
