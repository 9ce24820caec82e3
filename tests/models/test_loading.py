"""The speaker-network reader refuses to guess: a ResNet without weights is an error unless random
weights are asked for by name."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gradw.checkpoint import CheckpointError, save_checkpoint
from gradw.config import RANDOM_WEIGHTS
from gradw.errors import GradwError
from gradw.models.loading import RESNET_PRESETS, build_resnet, is_random_weights, load_speaker_network


@pytest.mark.parametrize("name", ["resnet34", "resnet-tiny"])
def test_a_resnet_without_a_checkpoint_is_refused(name: str) -> None:
    with pytest.raises(CheckpointError) as info:
        load_speaker_network(name)
    message = str(info.value)
    assert isinstance(info.value, GradwError) and "\n" not in message
    assert f"speaker network {name} has no weights of its own" in message
    assert "give its checkpoint" in message and "'random'" in message
    with pytest.raises(CheckpointError, match="no weights of its own"):
        load_speaker_network(name, checkpoint="")


def test_random_weights_are_given_when_asked_for_by_name() -> None:
    assert RANDOM_WEIGHTS == "random" and is_random_weights("random")
    assert not is_random_weights(None) and not is_random_weights(Path("random"))
    torch.manual_seed(3)
    first = load_speaker_network("resnet-tiny", checkpoint="random")
    torch.manual_seed(3)
    second = load_speaker_network("resnet-tiny", checkpoint="random", tap="layer3")
    assert not first.training and first.embedding_dim == 64
    assert first.tap == "layer4" and second.tap == "layer3"
    for (key, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), key  # drawn from torch's RNG: the seed decides


def test_a_checkpoint_still_loads_and_campplus_takes_no_random_weights(tmp_path: Path) -> None:
    torch.manual_seed(5)
    model = build_resnet({**RESNET_PRESETS["resnet-tiny"], "num_classes": None})
    path = save_checkpoint(
        tmp_path / "e.pt",
        kind="speaker",
        model=model,
        step=0,
        config={},
        model_config={**RESNET_PRESETS["resnet-tiny"], "num_classes": None},
    )
    loaded = load_speaker_network("resnet-tiny", checkpoint=path)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with pytest.raises(CheckpointError, match="campplus: random weights are not offered"):
        load_speaker_network("campplus", checkpoint="random")


# ---------------------------------------------------------------------------------------------
# tampered checkpoints: refused in one line naming the file, before anything is allocated


def _tampered(tmp_path: Path, name: str, change) -> Path:  # noqa: ANN001 - a callable on the state dict
    from helpers import make_enhancer_checkpoint

    source = make_enhancer_checkpoint(tmp_path / "g.pt", seed=0)
    state = torch.load(source, weights_only=True)
    change(state)
    path = tmp_path / name
    torch.save(state, path)
    return path


def _set(key: str, value):  # noqa: ANN001, ANN202
    def change(state: dict) -> None:
        state[key] = value

    return change


def _config(**values):  # noqa: ANN003, ANN202
    def change(state: dict) -> None:
        state["model_config"].update(values)

    return change


def _drop_weight(state: dict) -> None:
    del state["model"]["out.weight"]


def _reshape_weight(state: dict) -> None:
    state["model"]["out.weight"] = torch.zeros(1, 5, 1, 1)


def _extra_weight(state: dict) -> None:
    state["model"]["rogue.weight"] = torch.zeros(3, 2)


def _drop_key(state: dict) -> None:
    del state["model_config"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            _drop_weight,
            r"weight 'out.weight' is missing \(its model_config builds it with shape \(1, 4, 1, 1\)\)",
        ),
        (
            _reshape_weight,
            r"weight 'out.weight' has shape \(1, 5, 1, 1\) in the file, "
            r"its model_config builds \(1, 4, 1, 1\)",
        ),
        (_extra_weight, r"unexpected weight 'rogue.weight' of shape \(3, 2\)"),
        (_config(base_width=1024), r"asks for an enhancer of [0-9,]+ parameters, more than the 500,000,000"),
        (_config(blocks=[10**9, 1, 1, 1]), r"asks for an enhancer of 1,000,000,006 layers"),
        (
            _config(up_layers=[1, float("inf"), 1]),
            r"asks for an enhancer of [0-9,]+ layers, more than the 1,000",
        ),
        (_config(base_width="wide"), r"its model_config does not describe an enhancer"),
        (_set("kind", "speaker"), r"holds a speaker model, expected a enhancer model"),
        (_drop_key, r"not a complete gradw checkpoint \(no 'model_config'\)"),
        (_set("model", [1, 2]), r"'model' is a list, not a dict"),
    ],
    ids=[
        "missing",
        "shape",
        "unexpected",
        "huge",
        "deep",
        "endless",
        "nonsense",
        "kind",
        "no-config",
        "not-weights",
    ],
)
def test_a_tampered_enhancer_checkpoint_fails_in_one_line_naming_it(tmp_path: Path, change, message) -> None:  # noqa: ANN001
    import time

    from gradw.models.loading import load_enhancer

    path = _tampered(tmp_path, "tampered.pt", change)
    started = time.monotonic()
    with pytest.raises(CheckpointError, match=message) as info:
        load_enhancer(path)
    assert time.monotonic() - started < 2.0  # nothing of the size asked for was allocated
    text = str(info.value)
    assert isinstance(info.value, GradwError) and "\n" not in text and text.startswith(str(path))


def test_a_speaker_checkpoint_asking_for_a_huge_head_is_refused_quickly(tmp_path: Path) -> None:
    import time

    from helpers import make_speaker_checkpoint

    path = make_speaker_checkpoint(tmp_path / "e.pt")
    state = torch.load(path, weights_only=True)
    state["model_config"]["num_classes"] = 10**7  # a (10 M, 64) head: 640 M parameters
    torch.save(state, path)
    started = time.monotonic()
    with pytest.raises(CheckpointError, match=r"e\.pt: its model_config asks for a speaker network of 640,"):
        load_speaker_network("resnet-tiny", checkpoint=path)
    assert time.monotonic() - started < 2.0


def test_the_command_line_reports_a_tampered_checkpoint_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    import numpy as np
    import soundfile as sf

    path = _tampered(tmp_path, "huge.pt", _config(base_width=1024))
    sf.write(tmp_path / "x.wav", np.zeros(16000, dtype=np.float32), 16000)
    result = subprocess.run(
        [sys.executable, "-m", "gradw", "enhance", str(tmp_path / "x.wav"), "-o", str(tmp_path / "out"),
         "--checkpoint", str(path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(
        f"gradw: error: {path}: its model_config"
    )
    assert not (tmp_path / "out").exists()
