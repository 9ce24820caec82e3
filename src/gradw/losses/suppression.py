"""A penalty on suppressing speech that the noise left intact (a deviation from the paper).

Where the clean and the noisy mel power agree (within ``agree_db``), the noise did not reach
that time-frequency cell, so G has no reason to attenuate it; attenuating it there removes
speech E needs and is a known source of the broadband suppression that makes enhanced
embeddings collapse toward each other. E's features are mean-normalised over time, so a mask
constant over time in a band changes nothing E sees; the penalty therefore measures each cell's
attenuation against its band's mean over time::

    r(t, f)  = log M(t, f) - mean_t log M(t, f)            (relative log gain, nepers of power)
    a(t, f)  = 1 if |10 log10(noisy / clean)| < agree_db else 0
    penalty = sum_{t,f} a(t, f) * relu(-r(t, f)) / sum_{t,f} a(t, f)

so a mask that leaves agreeing cells at or above its band's level costs nothing, and the
identity start (a constant mask) costs exactly 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

AGREE_DB = 3.0
"""Default agreement bound: the noisy power within 3 dB of the clean power (local SNR >= ~0 dB)."""


def agreement(clean_mel: Tensor, noisy_mel: Tensor, agree_db: float = AGREE_DB) -> Tensor:
    """(B, F, T), (B, F, T) mel power -> (B, F, T) float, 1 where the two agree within ``agree_db``."""
    ratio_db = 10.0 * torch.log10((noisy_mel + 1e-10) / (clean_mel + 1e-10))
    return (ratio_db.abs() < agree_db).to(noisy_mel.dtype)


def suppression_penalty_per_item(
    mask: Tensor, clean_mel: Tensor, noisy_mel: Tensor, agree_db: float = AGREE_DB
) -> Tensor:
    """Per-utterance penalty on attenuating cells where clean and noisy agree.

    Args:
        mask: (B, F, T) mask in (0, 1] (carries G's graph).
        clean_mel: (B, F, T) clean mel power.
        noisy_mel: (B, F, T) noisy mel power (G's input).
        agree_db: the agreement bound in dB (> 0).

    Returns:
        (B,) mean over the agreeing cells of ``relu(mean_t log M - log M)``; 0 for an item with no
        agreeing cell.
    """
    if mask.dim() != 3 or not (mask.shape == clean_mel.shape == noisy_mel.shape):
        raise ValueError(
            "mask, clean_mel and noisy_mel must all be (B, F, T) with the same shape, got "
            f"{tuple(mask.shape)}, {tuple(clean_mel.shape)}, {tuple(noisy_mel.shape)}"
        )
    if not agree_db > 0:
        raise ValueError(f"agree_db must be > 0, got {agree_db!r}")
    log_mask = (mask + 1e-6).log()
    relative = log_mask - log_mask.mean(dim=-1, keepdim=True)
    agree = agreement(clean_mel.detach(), noisy_mel.detach(), agree_db)
    cost = (agree * torch.relu(-relative)).sum(dim=(1, 2))
    return cost / agree.sum(dim=(1, 2)).clamp_min(1.0)
