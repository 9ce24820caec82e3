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
