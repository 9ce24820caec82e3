"""Real-time factor of ``gradw enhance`` (run by hand; not part of the tests).

RTF = processing time / audio duration, for the full enhancement path (front-end, U-Net mask,
mel -> STFT mapping, iSTFT, chunk cross-fades) of a noise recording, with randomly initialised
U-Nets of the paper's depth (encoder blocks 3-4-6-3, up-samplers 3-4-6) at several widths. The
time does not depend on the weights.

Usage::

    python benchmarks/enhance_rtf.py --widths 8 32 --seconds 10 --threads 2
    python benchmarks/enhance_rtf.py --device cuda --seconds 60 --chunk-seconds 30

Prints one line per width: parameters, median / min wall time over the repeats, and RTF.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import torch

from gradw.audio.frontends import build_frontend
from gradw.enhance import Enhancer
from gradw.models.unet import PAPER_UP_LAYERS, MaskUNet


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    width: int,
    seconds: float,
    repeats: int,
    device: torch.device,
    frontend: str,
    chunk_seconds: float | None,
) -> tuple[int, list[float]]:
    """(parameter count, wall times in seconds) of enhancing ``seconds`` of noise."""
    torch.manual_seed(0)
    model = MaskUNet(base_width=width, blocks=(3, 4, 6, 3), up_layers=PAPER_UP_LAYERS)
    enhancer = Enhancer(model, build_frontend(frontend), chunk_seconds=chunk_seconds, device=device)
    rng = np.random.default_rng(0)
    wav = torch.from_numpy((0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)).to(device)
    enhancer.enhance_tensor(wav)  # warm-up (allocations, kernel selection)
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        enhancer.enhance_tensor(wav)
        _sync(device)
        times.append(time.perf_counter() - start)
    return sum(p.numel() for p in model.parameters()), times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[8, 32], help="U-Net base widths")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio duration")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frontend", default="kaldi-fbank", choices=("kaldi-fbank", "logmel"))
    parser.add_argument("--chunk-seconds", type=float, default=30.0, help="0: process whole")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(
        f"device {args.device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
        f"{args.seconds:g} s of audio, front-end {args.frontend}, chunks {args.chunk_seconds:g} s"
    )
    for width in args.widths:
        params, times = measure(
            width, args.seconds, args.repeats, device, args.frontend, args.chunk_seconds or None
        )
        median = statistics.median(times)
        print(
            f"width {width:3d}: {params / 1e6:6.2f} M params, median {median:7.3f} s, "
            f"min {min(times):7.3f} s, RTF {median / args.seconds:.4f}"
        )


if __name__ == "__main__":
    main()
