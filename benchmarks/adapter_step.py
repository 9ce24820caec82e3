"""Training-step time of the adaptation student: full fine-tuning against LoRA, both LoRA forms.

Run by hand (not part of the tests)::

    OMP_NUM_THREADS=1 python benchmarks/adapter_step.py --threads 1 --batch 16 --seconds 3

One step is what ``gradw adapt`` runs on the student for a batch: forward from features to the
embedding and backward (the teacher's pass and the data are left out). The student is the
pretrained CAM++ (tap ``pool-input``), every layer selected (``adapter.layers=[all]``):

- ``full``: every weight trained (rank 0);
- ``lora``: LoRA as :class:`gradw.models.adapters.LoRALayer` computes it, one layer with the
  weight ``W + (alpha / r) B A``;
- ``lora-branch``: the same update as a second branch, ``base(x) + (alpha / r) B(A(x))`` (an
  r-channel layer of the base's kind, then a 1x1 map), for comparison.

The first steps are warm-up; the table gives the median of the timed steps.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import Tensor
from torch.nn import functional as F

from gradw.models.adapters import LoRALayer, inject_adapters
from gradw.models.loading import load_speaker_network


def branch_forward(layer: LoRALayer, x: Tensor) -> Tensor:
    """The two-branch form of a LoRA layer (equal to :meth:`LoRALayer.forward` up to rounding)."""
    base = layer.base
    y = base(x)
    if isinstance(base, torch.nn.Linear):
        return y + layer.scale * F.linear(F.linear(x, layer.lora_A), layer.lora_B)
    a = layer.lora_A.view(layer.rank, *base.weight.shape[1:])
    low = base._conv_forward(x, a, None)
    b = layer.lora_B.view(*layer.lora_B.shape, *([1] * (base.weight.dim() - 2)))
    conv = F.conv1d if isinstance(base, torch.nn.Conv1d) else F.conv2d
    return y + layer.scale * conv(low, b)


def step_times(mode: str, features: Tensor, rank: int, steps: int, warmup: int) -> list[float]:
    student = load_speaker_network("campplus", tap="pool-input")
    inject_adapters(student, ["all"], rank=0 if mode == "full" else rank, alpha=2.0 * rank)
    student.eval()
    if mode == "lora-branch":
        for module in student.modules():
            if isinstance(module, LoRALayer):
                module.forward = lambda x, m=module: branch_forward(m, x)  # type: ignore[method-assign]
    times = []
    for _ in range(warmup + steps):
        student.zero_grad(set_to_none=True)
        start = time.perf_counter()
        student(features).sum().backward()
        times.append(time.perf_counter() - start)
    return times[warmup:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--batch", type=int, default=16, help="items per step (8 noisy + 8 clean in the demo)"
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="crop length")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    frontend = load_speaker_network("campplus", tap="pool-input")
    wav = 0.1 * torch.randn(args.batch, int(args.seconds * 16000))
    with torch.no_grad():
        features = frontend.features(frontend.mel_power(wav))
    print(f"CAM++, {args.batch} crops of {args.seconds:g} s, {args.threads} thread(s), rank {args.rank}")
    print("| student | s/step (median) | steps timed |")
    print("|:---|---:|---:|")
    for mode in ("full", "lora", "lora-branch"):
        times = step_times(mode, features, args.rank, args.steps, args.warmup)
        print(f"| {mode} | {statistics.median(times):.2f} | {len(times)} |")


if __name__ == "__main__":
    main()
