"""Pieces shared by every training loop: seeding, the learning-rate schedule, the order of
examples, logging (progress bar, JSONL, TensorBoard) and checkpoint rotation."""

from __future__ import annotations

import contextlib
import functools
import json
import math
import random
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from gradw.checkpoint import load_checkpoint, set_rng_state
from gradw.config import save_config
from gradw.data.dirs import AugmentDir
from gradw.errors import GradwError
from gradw.fileio import atomic_write
from gradw.progress import duration
from gradw.runlock import RunLock
from gradw.training.distributed import DistInfo, convert_batchnorm, shard


class TrainingError(GradwError, RuntimeError):
    """Training cannot go on (non-finite loss, inconsistent resume...); the message says why."""


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
        perm = _epoch_order(num_items, seed, epoch)
        take = min(batch_size - len(out), num_items - offset)
        out.extend((epoch, int(i)) for i in perm[offset : offset + take])
    return out


@functools.lru_cache(maxsize=2)
def _epoch_order(num_items: int, seed: int, epoch: int) -> np.ndarray:
    """The example order of one epoch, read-only. Cached: consecutive steps read the same epoch
    (or the two a batch straddles), and drawing the permutation costs O(num_items) (16 ms for a
    VoxCeleb2-sized list of a million files, against well under a millisecond for the batch)."""
    perm = np.random.default_rng([seed, epoch]).permutation(num_items)
    perm.setflags(write=False)
    return perm


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


#: the values a progress line or bar shows first, when a run logs them
_HEADLINE = ("loss", "eer", "min_dcf", "feature_l1", "embedding_distance", "mask_mean")


class RunLogger:
    """Progress, JSONL metrics (``metrics.jsonl``) and TensorBoard, on the main rank only.

    On a terminal, a progress bar shows the loss and the latest validation EER. Off a terminal (a
    batch job, output redirected to a file) each logged step and each validation prints one plain
    line instead: ``[train G] step 120/600 (20%) loss 0.1234 ... | 1.2 s/step, elapsed 2m24s, left
    9m36s``. ``quiet`` silences both.
    """

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
        self.total_steps = total_steps
        self.start_step = start_step
        self.description = description
        self.plain = False
        self.last_val: dict[str, float] = {}
        if not self.enabled:
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(out_dir / "tensorboard"))
            except ImportError:
                self.writer = None
        on_terminal = sys.stderr.isatty()
        self.plain = not quiet and not on_terminal
        self.bar = tqdm(
            total=total_steps,
            initial=start_step,
            desc=description,
            disable=quiet or not on_terminal,
            dynamic_ncols=True,
        )

    @staticmethod
    def _headline(values: dict[str, float], limit: int = 4) -> dict[str, float]:
        keys = [k for k in _HEADLINE if k in values] + [k for k in values if k not in _HEADLINE]
        return {k: values[k] for k in keys[:limit]}

    def _timing(self, step: int) -> str:
        elapsed = time.time() - self.start_time
        done = step - self.start_step
        if done <= 0:
            return f"elapsed {duration(elapsed)}"
        per_step = elapsed / done
        left = per_step * (self.total_steps - step)
        return f"{per_step:.2f} s/step, elapsed {duration(elapsed)}, left {duration(left)}"

    def log(self, step: int, values: dict[str, float], kind: str = "train") -> None:
        """Record ``values`` at ``step`` (JSONL always; TensorBoard when available; a plain line off
        a terminal)."""
        if not self.enabled:
            return
        record: dict[str, Any] = {"kind": kind, "step": step, "time": round(time.time() - self.start_time, 3)}
        record.update({k: (float(v) if math.isfinite(float(v)) else None) for k, v in values.items()})
        with open(self.metrics_path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(f"{kind}/{key}", value, step)
        if kind == "val":
            self.last_val = dict(values)
        shown = self._headline(values)
        if self.bar is not None and not self.bar.disable:
            postfix = {k: f"{v:.4g}" for k, v in self._headline(values, 2 if kind == "train" else 1).items()}
            if kind == "train" and "eer" in self.last_val:
                postfix["val_eer"] = f"{self.last_val['eer']:.2f}"
            self.bar.set_postfix(postfix)
        if self.plain:
            share = 100 * step / self.total_steps if self.total_steps else 100.0
            what = "validation: " if kind == "val" else ""
            numbers = " ".join(f"{k} {v:.4g}" for k, v in shown.items())
            print(
                f"[{self.description}] step {step}/{self.total_steps} ({share:.0f}%) {what}{numbers} | "
                f"{self._timing(step)}",
                file=sys.stderr,
                flush=True,
            )

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
    atomic_write(path, "".join(line + "\n" for line in keep))


def run_lock(out_dir: str | Path, info: DistInfo) -> contextlib.AbstractContextManager:
    """The run folder's lock (:class:`~gradw.runlock.RunLock`), held by the main process only."""
    if not str(out_dir).strip():
        raise TrainingError("out_dir is empty: name the run folder (out_dir=exp/NAME)")
    return RunLock(out_dir, "training") if info.is_main else contextlib.nullcontext()


def open_run(out_dir: str | Path, config: object, resume: bool, info: DistInfo) -> Path:
    """Create the run folder and save the resolved config; refuse to overwrite a finished or
    started run unless resuming, and a resume with nothing to resume. Returns the path of
    ``last.pt``."""
    out = Path(out_dir)
    last = out / "last.pt"
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        if last.is_file() and not resume:
            raise TrainingError(
                f"{out} already holds a run; pass --resume to continue it or choose another out_dir"
            )
        if resume and not last.is_file():
            raise TrainingError(f"{out}: nothing to resume (no last.pt); run without --resume to start")
        save_config(config, out / "config.yaml")
    return last


def start_training(
    model: torch.nn.Module,
    lr: float,
    last: Path,
    kind: str,
    resume: bool,
    info: DistInfo,
    groups: Sequence[dict[str, Any]] = (),
) -> tuple[torch.nn.Module, torch.optim.Optimizer, int]:
    """Adam over ``model`` restored from ``last`` when resuming, wrapped for DDP when distributed.

    ``groups``: further Adam parameter groups (``{"params": ..., "lr": ...}``) of parameters
    outside ``model``; their optimizer state is saved and restored with the rest (their weights
    are the caller's to save and restore).

    Returns (model to call, optimizer, first step). BatchNorm layers are converted to
    cross-rank BatchNorm *before* the optimizer takes the parameters (conversion makes new ones).
    """
    if info.distributed:
        convert_batchnorm(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for group in groups:
        optimizer.add_param_group(dict(group))
    start_step = 0
    if resume and last.is_file():
        state = load_checkpoint(last, kind=kind)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        start_step = int(state["step"])
        if info.is_main:
            truncate_metrics(last.parent, start_step)
    if info.distributed:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[info.device.index] if info.device.type == "cuda" else None
        )
    return model, optimizer, start_step


def step_loader(
    dataset: torch.utils.data.Dataset,
    batch_size: int,
    seed: int,
    start_step: int,
    steps: int,
    info: DistInfo,
    num_workers: int,
) -> torch.utils.data.DataLoader:
    """A loader yielding this rank's share of the global batch of every step in [start, steps)."""
    sampler = StepSampler(len(dataset), batch_size, seed, start_step, steps, info)  # type: ignore[arg-type]
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=dataset.collate,  # type: ignore[attr-defined]
    )


def set_learning_rate(
    optimizer: torch.optim.Optimizer, base_lr: float | Sequence[float], step: int, warmup_steps: int
) -> float:
    """Apply the warm-up-then-constant schedule at ``step`` (``base_lr``: one rate for every
    parameter group, or one per group); returns the rate of the first group."""
    factor = warmup_constant(step, warmup_steps)
    rates = [base_lr] * len(optimizer.param_groups) if isinstance(base_lr, float | int) else list(base_lr)
    if len(rates) != len(optimizer.param_groups):
        raise ValueError(f"{len(rates)} learning rates for {len(optimizer.param_groups)} parameter groups")
    for group, rate in zip(optimizer.param_groups, rates, strict=True):
        group["lr"] = rate * factor
    return optimizer.param_groups[0]["lr"]


def augment_fingerprints(augment: AugmentDir) -> torch.Tensor:
    """The training augmentation's content fingerprints as a checkpoint can hold them: (K,) int64
    (the uint64 values of :meth:`~gradw.data.dirs.AugmentDir.fingerprints`, bit for bit)."""
    return torch.from_numpy(augment.fingerprints().view(np.int64).copy())
