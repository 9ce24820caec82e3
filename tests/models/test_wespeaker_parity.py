"""A WeSpeaker ResNet34 checkpoint through gradw gives the embedding of WeSpeaker's own recipe.

The reference (``wespeaker_reference``) is written from WeSpeaker's published architecture and
feature pipeline and shares no code with gradw: only the state dict crosses over.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F
from wespeaker_reference import WeSpeakerResNet34, wespeaker_fbank, write_wespeaker_checkpoint

from gradw.models.loading import load_speaker_network

knf = pytest.importorskip("kaldi_native_fbank")
SR = 16000


def _speech_like(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 110 + 60 * rng.random()
    voiced = sum(np.sin(2 * np.pi * f0 * k * t + rng.random()) / k for k in range(1, 12))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t) ** 2
    return (0.1 * envelope * voiced + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[WeSpeakerResNet34, Path]:
    path = tmp_path_factory.mktemp("wespeaker") / "avg_model.pt"
    return write_wespeaker_checkpoint(path), path


@pytest.mark.parametrize("seconds, seed", [(2.0, 0), (3.37, 1)])
def test_wespeaker_resnet34_gives_the_reference_embedding(checkpoint, seconds: float, seed: int) -> None:
    reference, path = checkpoint
    wav = _speech_like(seconds, seed)
    with torch.no_grad():
        expected = reference(wespeaker_fbank(wav)[None])[0]
        network = load_speaker_network("wespeaker-resnet34", checkpoint=path)
        ours = network.embed(torch.from_numpy(wav)[None])[0]
    cosine = F.cosine_similarity(ours, expected, dim=0).item()
    assert cosine >= 0.99999, cosine
    assert torch.allclose(ours, expected, rtol=1e-3, atol=1e-3 * expected.abs().max().item())
    # the classification head came along too
    assert torch.equal(network.head.weight, reference.projection.weight)
