"""Differentiable log-mel front-ends (no torchaudio).

Every front-end exposes the mel power grid so that a mask M in (0, 1] applies before the log,
as in the paper's code: features = CMN(log(mel + eps) + log(M + 1e-6)).
"""

from __future__ import annotations

from torch import Tensor, nn

MASK_EPS = 1e-6


class MelFrontend(nn.Module):
    """Base class. Subclasses implement :meth:`mel_power` and :meth:`log_mel`.

    Attributes:
        sample_rate: expected input rate (16 kHz).
        n_mels: F, the number of mel bands.
        hop_length: samples between frames.
    """

    sample_rate: int = 16000
    n_mels: int
    hop_length: int

    def mel_power(self, wav: Tensor) -> Tensor:
        """(B, N) waveform -> (B, F, T) mel power (non-negative)."""
        raise NotImplementedError

    def log_mel(self, mel_power: Tensor) -> Tensor:
        """(B, F, T) mel power -> (B, F, T) log mel (before mean normalisation)."""
        raise NotImplementedError

    def num_frames(self, num_samples: int) -> int:
        """Frames T produced from N samples."""
        raise NotImplementedError

    def log_features(self, mel_power: Tensor, mask: Tensor | None = None) -> Tensor:
        """(B, F, T) mel power [, (B, F, T) mask] -> (B, F, T) CMN log-mel features."""
        feats = self.log_mel(mel_power)
        if mask is not None:
            feats = feats + (mask + MASK_EPS).log()
        return feats - feats.mean(dim=-1, keepdim=True)

    def forward(self, wav: Tensor, mask: Tensor | None = None) -> Tensor:
        """(B, N) waveform -> (B, F, T) features."""
        return self.log_features(self.mel_power(wav), mask)
