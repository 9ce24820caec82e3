"""Checkpoints: atomic, self-describing, loadable with weights_only=True."""

import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from gradw.checkpoint import (
    CheckpointError,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))


def test_round_trip_with_optimizer(tmp_path: Path):
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(5, 3)).sum().backward()
    opt.step()
    path = save_checkpoint(
        tmp_path / "run" / "last.pt",
        kind="enhancer",
        model=model,
        step=7,
        config={"a": 1},
        model_config={"w": 2},
        optimizer=opt,
        extra={"note": "x"},
    )
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary file left behind
    state = load_checkpoint(path, kind="enhancer")
    assert state["step"] == 7 and state["config"] == {"a": 1} and state["model_config"] == {"w": 2}
    assert state["versions"]["torch"] == torch.__version__
    clone = _model()
    clone.load_state_dict(state["model"])
    for a, b in zip(model.state_dict().values(), clone.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    opt2 = torch.optim.Adam(clone.parameters(), lr=1e-3)
    opt2.load_state_dict(state["optimizer"])
    assert opt2.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]


def test_rng_state_round_trip():
    state = rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(state)
    b = (random.random(), np.random.rand(), torch.rand(1).item())
    assert a == b


def test_errors_name_the_file(tmp_path: Path):
    with pytest.raises(CheckpointError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="garbage.pt"):
        load_checkpoint(bad)
    other = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(1)}, other)
    with pytest.raises(CheckpointError, match="not a gradw checkpoint"):
        load_checkpoint(other)
    path = save_checkpoint(
        tmp_path / "spk.pt", kind="speaker", model=_model(), step=1, config={}, model_config={}
    )
    with pytest.raises(CheckpointError, match="expected a enhancer"):
        load_checkpoint(path, kind="enhancer")


@pytest.mark.parametrize("key", ["kind", "step", "config", "model_config", "model", "extra"])
def test_a_checkpoint_without_a_required_key_is_refused_naming_it(tmp_path: Path, key: str) -> None:
    path = save_checkpoint(
        tmp_path / "g.pt", kind="enhancer", model=_model(), step=1, config={}, model_config={}
    )
    state = torch.load(path, weights_only=True)
    assert load_checkpoint(path)["step"] == 1
    del state[key]
    torch.save(state, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(info.value) == f"{path}: not a complete gradw checkpoint (no {key!r})"
    state[key] = "text" if key != "kind" else 3
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(path))}: '{key}' is a (str|int), not a "):
        load_checkpoint(path)
