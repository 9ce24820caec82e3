"""A tiny speaker network E and a toy enhancement task for the loss tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from gradw.audio.frontends import MelFrontend
from gradw.models.speaker import CosineHead, SpeakerNetwork


class GivenMelFrontend(MelFrontend):
    """Stand-in frontend: the 'waveform' is already mel power; log_mel = log(x + 1e-6)."""

    hop_length = 160

    def __init__(self, n_mels: int) -> None:
        super().__init__()
        self.n_mels = n_mels

    def mel_power(self, wav: Tensor) -> Tensor:
        return wav

    def log_mel(self, mel_power: Tensor) -> Tensor:
        return (mel_power + 1e-6).log()

    def num_frames(self, num_samples: int) -> int:
        return num_samples


class ToySpeaker(SpeakerNetwork):
    """features (B, F, T) -> conv3x3 + BN + ReLU -> A (B, C, F, T) -> mean/std over T -> linear."""

    tap = "conv"

    def __init__(
        self,
        n_mels: int = 8,
        channels: int = 4,
        embedding_dim: int = 8,
        num_classes: int = 5,
        head: bool = True,
    ) -> None:
        super().__init__(GivenMelFrontend(n_mels))
        self.embedding_dim = embedding_dim
        self.conv = nn.Conv2d(1, channels, 3, padding=1)
        self.norm = nn.BatchNorm2d(channels)
        self.proj = nn.Linear(2 * channels * n_mels, embedding_dim)
        if head:
            self.head = CosineHead(embedding_dim, num_classes)

    def to_tap(self, features: Tensor) -> Tensor:
        return F.relu(self.norm(self.conv(features.unsqueeze(1))))

    def from_tap(self, activation: Tensor) -> Tensor:
        mean = activation.mean(dim=-1)
        std = (activation.var(dim=-1) + 1e-8).sqrt()
        return self.proj(torch.cat([mean, std], dim=1).flatten(1))


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread is several times faster on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@dataclass
class ToyBatch:
    clean: Tensor  # (B, F, T) mel power
    noisy: Tensor  # (B, F, T)
    labels: Tensor  # (B,)


@pytest.fixture
def make_speaker() -> Callable[..., ToySpeaker]:
    """Factory: a frozen toy E with non-trivial BN statistics (seeded)."""

    def make(seed: int = 0, head: bool = True, dtype: torch.dtype = torch.float32, **kwargs) -> ToySpeaker:
        torch.manual_seed(seed)
        net = ToySpeaker(head=head, **kwargs)
        with torch.no_grad():
            net.norm.running_mean.uniform_(-0.5, 0.5)
            net.norm.running_var.uniform_(0.5, 2.0)
            net.norm.weight.uniform_(0.5, 1.5)
            net.norm.bias.uniform_(-0.2, 0.4)
        return net.to(dtype).freeze()

    return make


@pytest.fixture
def make_batch() -> Callable[..., ToyBatch]:
    """Factory: clean = harmonic stack with a moving f0 in the mel domain; noisy = clean + noise."""

    def make(
        batch: int = 3,
        n_mels: int = 8,
        frames: int = 12,
        seed: int = 0,
        snr_scale: float = 1.0,
        dtype: torch.dtype = torch.float32,
        num_classes: int = 5,
    ) -> ToyBatch:
        g = torch.Generator().manual_seed(seed)
        f = torch.arange(n_mels, dtype=torch.float64)[None, :, None]
        t = torch.arange(frames, dtype=torch.float64)[None, None, :]
        f0 = 1.0 + 0.6 * torch.rand(batch, 1, 1, generator=g, dtype=torch.float64)
        track = f0 * (
            1.0 + 0.15 * torch.sin(2 * torch.pi * t / frames + torch.rand(batch, 1, 1, generator=g))
        )
        clean = 1e-3 + sum((4.0 / k) * torch.exp(-((f - k * track) ** 2) / 0.3) for k in range(1, 6))
        noise = snr_scale * torch.empty(batch, n_mels, frames, dtype=torch.float64).exponential_(generator=g)
        labels = torch.randint(0, num_classes, (batch,), generator=g)
        return ToyBatch(clean=clean.to(dtype), noisy=(clean + noise).to(dtype), labels=labels)

    return make
