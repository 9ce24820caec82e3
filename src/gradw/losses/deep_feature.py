"""Weighted deep-feature (activation-map) L1 loss of Grad-W and Equal-W.

``L = (1/B) sum_b sum_{c,f,t} P_b[f,t] |A_ref - A_enh|_b[c,f,t]``: summed over channels and
positions, averaged over the batch, as in the paper's code.
"""

from __future__ import annotations

from torch import Tensor


def _check(a_ref: Tensor, a_enh: Tensor, weights: Tensor) -> None:
    if a_ref.dim() != 4 or a_ref.shape != a_enh.shape:
        raise ValueError(
            "activations must both be (B, C, F, T) with the same shape, got "
            f"{tuple(a_ref.shape)} and {tuple(a_enh.shape)}"
        )
    b, c, f, t = a_ref.shape
    if (
        weights.dim() != 4
        or weights.shape[0] != b
        or weights.shape[2:] != (f, t)
        or weights.shape[1] not in (1, c)
    ):
        raise ValueError(f"weights must be ({b}, 1, {f}, {t}), got {tuple(weights.shape)}")


def weighted_l1_per_item(a_ref: Tensor, a_enh: Tensor, weights: Tensor) -> Tensor:
    """Per-utterance weighted L1, ``sum_{c,f,t} P |A_ref - A_enh|``.

    Args:
        a_ref: (B, C, F, T) clean activations (the target; normally detached).
        a_enh: (B, C, F, T) enhanced activations.
        weights: (B, 1, F, T) position weights P (normally summing to 1 per utterance).

    Returns:
        (B,) one loss per utterance.
    """
    _check(a_ref, a_enh, weights)
    return ((a_ref - a_enh).abs() * weights).flatten(1).sum(dim=1)


def weighted_l1(a_ref: Tensor, a_enh: Tensor, weights: Tensor) -> Tensor:
    """Batch weighted L1 loss, ``(1/B) sum_b sum_{c,f,t} P |A_ref - A_enh|``.

    With uniform weights 1 / (F T) this is C times the mean absolute difference.

    Args:
        a_ref: (B, C, F, T) clean activations.
        a_enh: (B, C, F, T) enhanced activations.
        weights: (B, 1, F, T) position weights P.

    Returns:
        () scalar.
    """
    return weighted_l1_per_item(a_ref, a_enh, weights).mean()
