"""A WeSpeaker ResNet34 checkpoint through gradw gives the embedding of WeSpeaker's own recipe.

The reference below is written in this test from WeSpeaker's published architecture (VoxCeleb
ResNet34: a 3x3 stem of 32 channels, BasicBlocks [3, 4, 6, 3] at widths 32/64/128/256 with strides
1/2/2/2 and 1x1 projection shortcuts, statistics pooling over time of the (C x F/8) map, mean and
sqrt(unbiased variance + 1e-7), one linear layer to 256) and its feature pipeline (Kaldi fbank
from kaldi-native-fbank, 80 bins, 25/10 ms, no dither, on 16-bit-scaled samples; mean normalised
over time). It shares no code with gradw: only the state dict crosses over.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from gradw.models.loading import load_speaker_network

knf = pytest.importorskip("kaldi_native_fbank")
SR = 16000


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class _WeSpeakerResNet34(nn.Module):
    def __init__(self, feat_dim: int = 80, embed_dim: int = 256, num_classes: int = 7) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        cin = 32
        for i, (n, width, stride) in enumerate(
            zip((3, 4, 6, 3), (32, 64, 128, 256), (1, 2, 2, 2), strict=True), start=1
        ):
            blocks = []
            for j in range(n):
                blocks.append(_Block(cin, width, stride if j == 0 else 1))
                cin = width
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
        self.seg_1 = nn.Linear(2 * 256 * (feat_dim // 8), embed_dim)
        self.projection = nn.Linear(embed_dim, num_classes, bias=False)  # the margin head's weight

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, T, F) mean-normalised fbank -> (B, 256) embedding."""
        x = feats.permute(0, 2, 1).unsqueeze(1)
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = x.reshape(x.shape[0], -1, x.shape[-1])
        stats = torch.cat([x.mean(dim=-1), torch.sqrt(torch.var(x, dim=-1) + 1e-7)], dim=-1)
        return self.seg_1(stats)


def _fbank(wav: np.ndarray) -> torch.Tensor:
    """(N,) waveform in [-1, 1] -> (T, 80) mean-normalised log fbank, as WeSpeaker computes it."""
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = SR
    opts.frame_opts.dither = 0.0
    opts.frame_opts.snip_edges = True
    opts.mel_opts.num_bins = 80
    fbank = knf.OnlineFbank(opts)
    fbank.accept_waveform(SR, (wav * (1 << 15)).tolist())
    fbank.input_finished()
    feats = np.stack([fbank.get_frame(i) for i in range(fbank.num_frames_ready)])
    return torch.from_numpy(feats - feats.mean(axis=0, keepdims=True)).float()


def _speech_like(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 110 + 60 * rng.random()
    voiced = sum(np.sin(2 * np.pi * f0 * k * t + rng.random()) / k for k in range(1, 12))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t) ** 2
    return (0.1 * envelope * voiced + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[_WeSpeakerResNet34, Path]:
    torch.manual_seed(0)
    reference = _WeSpeakerResNet34()
    with torch.no_grad():  # non-trivial BatchNorm statistics, as a trained network has
        for module in reference.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    reference.eval()
    path = tmp_path_factory.mktemp("wespeaker") / "avg_model.pt"
    # WeSpeaker saves the DDP-wrapped model: keys start with "module."
    torch.save({f"module.{k}": v for k, v in reference.state_dict().items()}, path)
    return reference, path


@pytest.mark.parametrize("seconds, seed", [(2.0, 0), (3.37, 1)])
def test_wespeaker_resnet34_gives_the_reference_embedding(checkpoint, seconds: float, seed: int) -> None:
    reference, path = checkpoint
    wav = _speech_like(seconds, seed)
    with torch.no_grad():
        expected = reference(_fbank(wav)[None])[0]
        network = load_speaker_network("wespeaker-resnet34", checkpoint=path)
        ours = network.embed(torch.from_numpy(wav)[None])[0]
    cosine = F.cosine_similarity(ours, expected, dim=0).item()
    assert cosine >= 0.99999, cosine
    assert torch.allclose(ours, expected, rtol=1e-3, atol=1e-3 * expected.abs().max().item())
    # the classification head came along too
    assert torch.equal(network.head.weight, reference.projection.weight)
