"""Pieces shared by every training loop: seeding, the learning-rate schedule, the order of
examples, logging (progress bar, JSONL, TensorBoard) and checkpoint rotation."""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from gradw.training.distributed import DistInfo, shard


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_threads(threads: int) -> None:
    """Use ``threads`` intra-op threads (0: leave torch's default, all cores)."""
    if threads > 0:
        torch.set_num_threads(threads)


def warmup_constant(step: int, warmup_steps: int) -> float:
    """Learning-rate factor: linear from 0 to 1 over ``warmup_steps`` steps, then 1 (the paper's)."""
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, (step + 1) / warmup_steps)


def batch_keys(num_items: int, batch_size: int, seed: int, step: int) -> list[tuple[int, int]]:
    """The global batch used at ``step``, as (epoch, example index) keys.

    Epochs are consecutive permutations of ``range(num_items)`` (a fresh one per epoch, seeded by
    (seed, epoch)); batches are consecutive slices of the concatenated permutations. The epoch
    travels with each index so that a dataset draws a new crop and new noise for an utterance in
    every epoch. A function of its arguments alone, so a resumed run sees exactly the same batches.
    """
    if num_items <= 0:
        raise ValueError("no training examples")
    start = step * batch_size
    out: list[tuple[int, int]] = []
    while len(out) < batch_size:
        epoch, offset = divmod(start + len(out), num_items)
        perm = np.random.default_rng([seed, epoch]).permutation(num_items)
        take = min(batch_size - len(out), num_items - offset)
        out.extend((epoch, int(i)) for i in perm[offset : offset + take])
    return out


class StepSampler(torch.utils.data.Sampler[list[tuple[int, int]]]):
    """Yields this rank's share of each global batch, from ``start_step`` to ``end_step``."""

    def __init__(
        self, num_items: int, batch_size: int, seed: int, start_step: int, end_step: int, info: DistInfo
    ) -> None:
        self.num_items, self.batch_size, self.seed = num_items, batch_size, seed
        self.start_step, self.end_step, self.info = start_step, end_step, info

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start_step, self.end_step):
            yield shard(batch_keys(self.num_items, self.batch_size, self.seed, step), self.info)

    def __len__(self) -> int:
        return max(0, self.end_step - self.start_step)


class RunLogger:
    """Progress bar, JSONL metrics (``metrics.jsonl``) and TensorBoard, on the main rank only."""

    def __init__(
        self,
        out_dir: Path,
        total_steps: int,
        start_step: int,
        info: DistInfo,
        quiet: bool = False,
        tensorboard: bool = True,
        description: str = "train",
    ) -> None:
        self.info = info
        self.enabled = info.is_main
        self.metrics_path = out_dir / "metrics.jsonl"
        self.writer = None
        self.bar = None
        self.start_time = time.time()
        if not self.enabled:
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(out_dir / "tensorboard"))
            except ImportError:
                self.writer = None
        show = not quiet and sys.stderr.isatty()
        self.bar = tqdm(
            total=total_steps, initial=start_step, desc=description, disable=not show, dynamic_ncols=True
        )

    def log(self, step: int, values: dict[str, float], kind: str = "train") -> None:
        """Record ``values`` at ``step`` (JSONL always; TensorBoard when available)."""
        if not self.enabled:
            return
        record: dict[str, Any] = {"kind": kind, "step": step, "time": round(time.time() - self.start_time, 3)}
        record.update({k: (float(v) if math.isfinite(float(v)) else None) for k, v in values.items()})
        with open(self.metrics_path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(f"{kind}/{key}", value, step)
        if self.bar is not None and kind == "train":
            self.bar.set_postfix({k: f"{values[k]:.4g}" for k in list(values)[:3]})

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()


def read_metrics(out_dir: str | Path, kind: str | None = None) -> list[dict[str, Any]]:
    """The records of a run's ``metrics.jsonl`` (optionally of one kind)."""
    path = Path(out_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if kind is None or r.get("kind") == kind]


def truncate_metrics(out_dir: Path, after_step: int) -> None:
    """Drop records past ``after_step`` (a resumed run rewrites them)."""
    path = out_dir / "metrics.jsonl"
    if not path.is_file():
        return
    keep = [
        line
        for line in path.read_text().splitlines()
        if line.strip() and json.loads(line).get("step", 0) <= after_step
    ]
    tmp = path.with_name(".metrics.jsonl.tmp")
    tmp.write_text("".join(line + "\n" for line in keep))
    tmp.replace(path)
