"""Example order, learning-rate schedule, metrics log."""

from collections import Counter

import pytest

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
