"""Example order, learning-rate schedule, metrics log."""

from collections import Counter
from pathlib import Path

import pytest
import torch

from gradw.training.distributed import DistInfo, shard
from gradw.training.loop import (
    RunLogger,
    StepSampler,
    batch_keys,
    read_metrics,
    truncate_metrics,
    warmup_constant,
)


def test_batches_cover_each_epoch_exactly_once():
    num_items, batch = 10, 4
    keys = [k for step in range(5) for k in batch_keys(num_items, batch, seed=1, step=step)]
    seen = [i for _, i in keys]
    assert [e for e, _ in keys] == [0] * 10 + [1] * 10  # the epoch travels with each index
    assert sorted(seen[:10]) == list(range(10))  # epoch 0 is a permutation
    assert sorted(seen[10:20]) == list(range(10))  # so is epoch 1
    assert seen[:10] != seen[10:20]  # and it is a different one


def test_batches_are_a_function_of_their_arguments():
    assert batch_keys(37, 8, seed=3, step=11) == batch_keys(37, 8, seed=3, step=11)
    assert batch_keys(37, 8, seed=3, step=11) != batch_keys(37, 8, seed=4, step=11)
    with pytest.raises(ValueError):
        batch_keys(0, 8, seed=0, step=0)


def test_sharding_splits_the_global_batch():
    batch = batch_keys(100, 8, seed=0, step=2)
    parts = [shard(batch, DistInfo(rank=r, world_size=2)) for r in range(2)]
    assert parts[0] + parts[1] == batch
    with pytest.raises(ValueError, match="multiple of the number of processes"):
        shard(batch_keys(100, 7, 0, 0), DistInfo(rank=0, world_size=2))


def test_sampler_resumes_where_it_stopped():
    info = DistInfo()
    full = list(StepSampler(50, 4, 0, 0, 10, info))
    resumed = list(StepSampler(50, 4, 0, 6, 10, info))
    assert resumed == full[6:]
    assert len(StepSampler(50, 4, 0, 6, 10, info)) == 4


def test_warmup_is_linear_then_constant():
    assert warmup_constant(0, 4) == 0.25
    assert warmup_constant(3, 4) == 1.0
    assert warmup_constant(100, 4) == 1.0
    assert warmup_constant(0, 0) == 1.0


def test_metrics_log_and_truncation(tmp_path):
    logger = RunLogger(tmp_path, 10, 0, DistInfo(), quiet=True, tensorboard=False)
    for step in (1, 2, 3):
        logger.log(step, {"loss": 1.0 / step})
    logger.log(3, {"eer": 0.1}, kind="val")
    logger.close()
    records = read_metrics(tmp_path)
    assert Counter(r["kind"] for r in records) == {"train": 3, "val": 1}
    assert read_metrics(tmp_path, "train")[1]["loss"] == 0.5
    truncate_metrics(tmp_path, 2)
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]


def test_off_a_terminal_each_logged_step_prints_one_plain_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    info = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    logger = RunLogger(
        tmp_path, total_steps=10, start_step=0, info=info, tensorboard=False, description="train G"
    )
    logger.log(5, {"grad_diff_std": 1.0, "loss": 0.25, "lr": 1e-3})
    logger.log(5, {"eer": 12.5, "min_dcf": 0.5}, kind="val")
    logger.close()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("[train G] step 5/10 (50%) loss 0.25 ")  # the loss comes first
    assert "s/step, elapsed " in lines[0] and ", left " in lines[0]
    assert lines[1].startswith("[train G] step 5/10 (50%) validation: eer 12.5 min_dcf 0.5 |")
    assert [r["kind"] for r in read_metrics(tmp_path)] == ["train", "val"]  # the records are unchanged
    quiet = RunLogger(tmp_path / "q", total_steps=10, start_step=0, info=info, quiet=True, tensorboard=False)
    quiet.log(1, {"loss": 1.0})
    assert capsys.readouterr().err == ""
