"""One interface over every fixed speaker network E.

A speaker network is split at a named *tap* into two halves::

    waveform (B, N) --frontend--> mel power (B, F, T) --log [+ log mask], CMN--> features (B, F, T)
    features --to_tap--> activation A (B, C, F', T') --from_tap--> embedding (B, D)
    embedding --head--> logits (B, K)  (scaled cosine, margin 0)

Grad-W needs exactly this split: the activation map A at the tap, and the gradient of the
true-speaker logit with respect to A. A 1-D tap (C, T') is returned as (B, C, 1, T').
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from gradw.audio.frontends import MelFrontend


class CosineHead(nn.Module):
    """Scaled-cosine classification head, s * cos(e, w_k), margin 0 (as in the paper's code).

    Args:
        embedding_dim: D.
        num_classes: K.
        scale: s (32 in the paper).
    """

    def __init__(self, embedding_dim: int, num_classes: int, scale: float = 32.0) -> None:
        super().__init__()
        self.scale = float(scale)
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.xavier_uniform_(self.weight)

    @property
    def num_classes(self) -> int:
        return self.weight.shape[0]

    def cosine(self, embedding: Tensor) -> Tensor:
        """(B, D) -> (B, K) cosine similarities."""
        return F.linear(F.normalize(embedding, dim=-1), F.normalize(self.weight, dim=-1))

    def forward(self, embedding: Tensor) -> Tensor:
        """(B, D) -> (B, K) logits s * cos."""
        return self.scale * self.cosine(embedding)


@dataclass
class SpeakerPass:
    """Everything one forward pass of E yields.

    Attributes:
        activation: (B, C, F', T') the tap activation (a node of the graph: gradients of anything
            computed from ``embedding`` can be taken with respect to it).
        embedding: (B, D) speaker embedding (not normalised).
    """

    activation: Tensor
    embedding: Tensor


class SpeakerNetwork(nn.Module):
    """Base class: a frontend, a network split at a tap, and an optional cosine head.

    Subclasses implement :meth:`to_tap` and :meth:`from_tap` and set ``embedding_dim``.
    """

    embedding_dim: int
    tap: str
    #: the fewest feature frames the network embeds (a pooling over time may need several)
    min_frames: int = 1

    def __init__(self, frontend: MelFrontend) -> None:
        super().__init__()
        self.frontend = frontend
        self.head: CosineHead | None = None

    @property
    def min_samples(self) -> int:
        """The shortest waveform (samples at 16 kHz) the network embeds: enough for
        :attr:`min_frames` frames of its front-end."""
        n = self.frontend.min_samples
        while self.frontend.num_frames(n) < self.min_frames:
            n += 1
        return n

    # -- features -------------------------------------------------------------------------
    def mel_power(self, wav: Tensor) -> Tensor:
        """(B, N) waveform at 16 kHz -> (B, F, T) mel power, the grid a mask applies to."""
        return self.frontend.mel_power(wav)

    def features(self, mel_power: Tensor, mask: Tensor | None = None) -> Tensor:
        """(B, F, T) mel power [and mask in (0, 1]] -> (B, F, T) normalised log-mel features."""
        return self.frontend.log_features(mel_power, mask)

    # -- the two halves -------------------------------------------------------------------
    def to_tap(self, features: Tensor) -> Tensor:
        """(B, F, T) features -> (B, C, F', T') activation at the tap."""
        raise NotImplementedError

    def from_tap(self, activation: Tensor) -> Tensor:
        """(B, C, F', T') activation at the tap -> (B, D) embedding."""
        raise NotImplementedError

    # -- conveniences ---------------------------------------------------------------------
    def run(self, features: Tensor) -> SpeakerPass:
        """(B, F, T) features -> activation at the tap and embedding."""
        activation = self.to_tap(features)
        return SpeakerPass(activation=activation, embedding=self.from_tap(activation))

    def forward(self, features: Tensor) -> Tensor:
        """(B, F, T) features -> (B, D) embedding."""
        return self.from_tap(self.to_tap(features))

    def embed(self, wav: Tensor, mask: Tensor | None = None) -> Tensor:
        """(B, N) waveform [and (B, F, T) mask] -> (B, D) embedding."""
        return self(self.features(self.mel_power(wav), mask))

    def features_through(
        self, mel_power: Tensor, mask_model: Callable[[Tensor], Tensor] | None = None
    ) -> Tensor:
        """(B, F, T) mel power -> (B, F, T) features, masked by G when one is given.

        G (``mask_model``: noisy features (B, F, T) -> mask (B, F, T) in (0, 1]) sees the noisy
        normalised features, and its mask multiplies the mel power before the log and the mean
        normalisation, ``features = CMN(log(mel) + log(M + eps))``: the paper's
        ``E(t, f) = M(t, f) X(t, f)``, exactly as in training. No waveform is resynthesised.
        """
        features = self.features(mel_power)
        if mask_model is None:
            return features
        return self.features(mel_power, mask_model(features))

    def embed_through(self, wav: Tensor, mask_model: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """(B, N) waveform -> (B, D) embedding, through G when one is given (:meth:`features_through`)."""
        return self(self.features_through(self.mel_power(wav), mask_model))

    def logits(self, embedding: Tensor) -> Tensor:
        """(B, D) -> (B, K) scaled-cosine logits; needs a head."""
        if self.head is None:
            raise RuntimeError(
                f"speaker network {type(self).__name__} has no classification head: "
                "train one (gradw train-speaker) or build one from class centroids"
            )
        return self.head(embedding)

    def freeze(self) -> SpeakerNetwork:
        """Fix E: eval mode, no parameter gradients; gradients still flow to inputs."""
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self

    def train(self, mode: bool = True) -> SpeakerNetwork:
        """A frozen network stays in eval mode (BN running statistics) whatever the caller asks."""
        frozen = any(True for _ in self.parameters()) and not any(p.requires_grad for p in self.parameters())
        return super().train(False if frozen else mode)
