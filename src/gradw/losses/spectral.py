"""Signal-level baseline: L1 between clean and enhanced log-mel features.

The features are those E sees (log mel with the mask applied before the log, then CMN), so this
baseline trains the same mask on the same grid as Grad-W, without E's network.
"""

from __future__ import annotations

from torch import Tensor


def spectral_l1_per_item(clean_features: Tensor, enhanced_features: Tensor) -> Tensor:
    """Per-utterance mean absolute difference of the features.

    Args:
        clean_features: (B, F, T) features of the clean input (the target).
        enhanced_features: (B, F, T) features of the masked noisy input.

    Returns:
        (B,) mean over (F, T) of ``|clean - enhanced|``.
    """
    if clean_features.shape != enhanced_features.shape or clean_features.dim() < 2:
        raise ValueError(
            "features must both be (B, F, T) with the same shape, got "
            f"{tuple(clean_features.shape)} and {tuple(enhanced_features.shape)}"
        )
    return (clean_features - enhanced_features).abs().flatten(1).mean(dim=1)


def spectral_l1(clean_features: Tensor, enhanced_features: Tensor) -> Tensor:
    """Mean absolute difference between clean and enhanced features over (B, F, T).

    Args:
        clean_features: (B, F, T).
        enhanced_features: (B, F, T).

    Returns:
        () scalar.
    """
    return spectral_l1_per_item(clean_features, enhanced_features).mean()
