"""Multi-process training helpers: torchrun set-up, sharding of each global batch, synced BatchNorm.

Launch with ``torchrun --nproc_per_node=N -m gradw train ...`` (or ``--nnodes``): each rank takes
its slice of every global batch, DistributedDataParallel averages the gradients, and
BatchNorm statistics are reduced across ranks, so N processes with a global batch B compute the
same update as one process with batch B.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup_distributed(device: str | None = None) -> DistInfo:
    """Initialise the process group when launched by torchrun (NCCL on GPU, gloo on CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def cleanup_distributed() -> None:
    """Tear down the process group if one was set up.

    DistributedDataParallel wrappers keep the process group alive through reference cycles; they
    are collected first, so that the group and its communication threads end here, while the
    interpreter is fully alive, and not during interpreter shutdown (where gloo's threads can
    abort the process after a successful run).
    """
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
        gc.collect()


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in a single process)."""
    if info.distributed:
        dist.barrier()


def shard(items: list[T], info: DistInfo) -> list[T]:
    """This rank's contiguous slice of a global batch (the batch size must divide evenly)."""
    if len(items) % info.world_size:
        raise ValueError(
            f"global batch of {len(items)} does not split over {info.world_size} processes; "
            "choose optim.batch_size as a multiple of the number of processes"
        )
    per_rank = len(items) // info.world_size
    return items[info.rank * per_rank : (info.rank + 1) * per_rank]


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks whose gradient is the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:  # noqa: ANN001
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # noqa: ANN001
        out = grad.clone()
        dist.all_reduce(out)
        return out


class GroupBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose batch statistics are reduced over all ranks (any backend, CPU included).

    torch's SyncBatchNorm runs on GPUs only; this one all-reduces [sum, sum of squares, count]
    with autograd, so gradients are exact on gloo as well. In a single process it equals
    BatchNorm2d.
    """

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        count = torch.full((1,), x.numel() / x.shape[1], dtype=x.dtype, device=x.device)
        stats = torch.cat([x.sum(dim=(0, 2, 3)), (x * x).sum(dim=(0, 2, 3)), count])
        stats = _AllReduceSum.apply(stats)
        channels = x.shape[1]
        total = stats[-1]
        mean = stats[:channels] / total
        var = stats[channels : 2 * channels] / total - mean * mean
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                momentum = 0.1 if self.momentum is None else self.momentum
                unbiased = var * total / (total - 1).clamp(min=1)
                self.running_mean.mul_(1 - momentum).add_(momentum * mean)
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased)
                self.num_batches_tracked += 1
        y = (x - mean[None, :, None, None]) * torch.rsqrt(var[None, :, None, None] + self.eps)
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y


def convert_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d in ``module`` by a :class:`GroupBatchNorm2d` with the same state."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            replacement = GroupBatchNorm2d(
                child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
            )
            replacement.load_state_dict(child.state_dict())
            replacement.to(next(child.buffers()).device if list(child.buffers()) else "cpu")
            setattr(module, name, replacement)
        else:
            convert_batchnorm(child)
    return module


def all_reduce_mean(value: float, info: DistInfo) -> float:
    """Mean of a Python float over ranks (for logging)."""
    if not info.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / info.world_size


def all_reduce_tensors(tensors: list[torch.Tensor], info: DistInfo) -> list[torch.Tensor]:
    """Mean of each tensor over ranks (what DDP does to gradients in backward, for gradients
    computed outside it, e.g. under ``no_sync``). Returns the tensors (averaged in place)."""
    if info.distributed:
        for tensor in tensors:
            dist.all_reduce(tensor)
            tensor /= info.world_size
    return tensors


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


__all__ = [
    "DistInfo",
    "GroupBatchNorm2d",
    "all_reduce_tensors",
    "all_reduce_mean",
    "barrier",
    "cleanup_distributed",
    "convert_batchnorm",
    "setup_distributed",
    "shard",
    "unwrap",
]
