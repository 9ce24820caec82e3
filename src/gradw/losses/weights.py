"""Position weights P over the tap activation map: Grad-W, Equal-W and variants.

Each scheme turns the gradients of the true-speaker logit with respect to the tap activations of
the enhanced input (``grad_enh``) and of the clean input (``grad_ref``), both (B, C, F, T), into
weights P of shape (B, 1, F, T): non-negative and summing to 1 over the F x T positions of each
utterance. The weights are constants of the loss (computed from detached gradients).

Schemes (``D = sum_c (G_enh - G_ref)``, shape (B, F, T)):

``gradw``
    The paper (arXiv 2401.02626) as in the authors' code: ``P = softmax(D / tau)`` over all (f, t)
    positions of each utterance, tau = 1 in the paper. Caveat (measured): D is tiny (it shrinks as
    1/T through the pooling and its scale follows E's BatchNorm gains), so at tau = 1 P is uniform
    to within rounding on some networks (CAM++) and this scheme then *is* Equal-W.
``gradw-norm``
    **A deviation from the paper**: D is standardised per utterance (zero mean, unit standard
    deviation over the (f, t) positions), clipped to [-clip, clip] and then passed through
    ``softmax(. / tau)``. P no longer depends on the overall scale of the gradients.
``equal``
    Equal-W, the paper's ablation: uniform ``P = 1 / (F T)``.
``absdiff``
    From the authors' history: ``P = sum_c |G_enh - G_ref|``, normalised to sum to 1.
``minmax``
    From the authors' history: ``P = (D - min D) / (max D - min D)``, normalised to sum to 1.

A degenerate map (constant D, or a zero absolute difference) gives uniform weights. Non-finite
gradients give non-finite weights for that utterance (never silently uniform), so that the loss
reports them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

WEIGHT_SCHEMES: tuple[str, ...] = ("gradw", "gradw-norm", "equal", "absdiff", "minmax")
"""Every scheme :func:`activation_weights` accepts."""

GRADIENT_SCHEMES: tuple[str, ...] = ("gradw", "gradw-norm", "absdiff", "minmax")
"""Schemes that need the logit gradients (and therefore speaker labels and a head)."""

SOFTMAX_SCHEMES: tuple[str, ...] = ("gradw", "gradw-norm")
"""Schemes whose weights come from a softmax, the only ones a temperature applies to."""


def check_weight_options(scheme: str, temperature: float = 1.0, clip: float | None = 3.0) -> None:
    """Raise ``ValueError`` naming the problem if the scheme options are invalid.

    Args:
        scheme: one of :data:`WEIGHT_SCHEMES`.
        temperature: softmax temperature tau > 0; must be 1 for the non-softmax schemes.
        clip: clipping bound c > 0 of ``gradw-norm`` (``None`` or ``inf``: no clipping).
    """
    if scheme not in WEIGHT_SCHEMES:
        raise ValueError(f"unknown weight scheme {scheme!r}: expected one of {', '.join(WEIGHT_SCHEMES)}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite positive number, got {temperature!r}")
    if scheme not in SOFTMAX_SCHEMES and temperature != 1.0:
        raise ValueError(
            f"temperature {temperature!r} has no effect with scheme {scheme!r}: "
            f"it applies only to {', '.join(SOFTMAX_SCHEMES)}"
        )
    if clip is not None and not clip > 0:
        raise ValueError(f"clip must be positive (or None for no clipping), got {clip!r}")


def _check_gradients(grad_enh: Tensor, grad_ref: Tensor) -> None:
    if grad_enh.dim() != 4:
        raise ValueError(f"gradients must be (B, C, F, T), got shape {tuple(grad_enh.shape)}")
    if grad_enh.shape != grad_ref.shape:
        raise ValueError(
            f"grad_enh and grad_ref shapes differ: {tuple(grad_enh.shape)} vs {tuple(grad_ref.shape)}"
        )


def _work_dtype(t: Tensor) -> torch.dtype:
    """float64 stays float64; everything else is computed in float32."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def gradient_difference(grad_enh: Tensor, grad_ref: Tensor) -> Tensor:
    """Channel-summed signed gradient difference D.

    Args:
        grad_enh: (B, C, F, T) gradient of the true-speaker logit w.r.t. the enhanced activations.
        grad_ref: (B, C, F, T) the same for the clean activations.

    Returns:
        (B, F, T) ``D = sum_c (G_enh - G_ref)`` (detached, float32 or float64).
    """
    _check_gradients(grad_enh, grad_ref)
    dtype = _work_dtype(grad_enh)
    return (grad_enh.detach().to(dtype) - grad_ref.detach().to(dtype)).sum(dim=1)


def uniform_weights(like: Tensor) -> Tensor:
    """Equal-W weights for an activation map.

    Args:
        like: (B, C, F, T) any tensor with the activation map's shape.

    Returns:
        (B, 1, F, T) all equal to 1 / (F T), float32 or float64, on ``like``'s device.
    """
    if like.dim() != 4:
        raise ValueError(f"expected a (B, C, F, T) tensor, got shape {tuple(like.shape)}")
    b, _, f, t = like.shape
    return torch.full((b, 1, f, t), 1.0 / (f * t), dtype=_work_dtype(like), device=like.device)


def standardise(d: Tensor) -> Tensor:
    """Per-utterance z-score over the (f, t) positions, invariant to positive rescaling.

    The map is first divided by its largest absolute deviation so that tiny gradients (1e-20
    and below) do not underflow when squared. A constant map gives zeros.

    Args:
        d: (B, F, T).

    Returns:
        (B, F, T) with zero mean and unit (population) standard deviation per utterance.
    """
    flat = d.flatten(1)
    centred = flat - flat.mean(dim=1, keepdim=True)
    scale = centred.abs().amax(dim=1, keepdim=True)
    unit = centred / torch.where(scale == 0, torch.ones_like(scale), scale)
    std = unit.std(dim=1, correction=0, keepdim=True)
    z = unit / torch.where(std == 0, torch.ones_like(std), std)
    return z.view_as(d)


def _normalise_sum(x: Tensor) -> Tensor:
    """(B, N) non-negative -> divided by its row sum; a zero row becomes uniform (NaN stays NaN)."""
    total = x.sum(dim=1, keepdim=True)
    uniform = torch.full_like(x, 1.0 / x.shape[1])
    return torch.where(total == 0, uniform, x / torch.where(total == 0, torch.ones_like(total), total))


def activation_weights(
    grad_enh: Tensor,
    grad_ref: Tensor,
    scheme: str = "gradw",
    temperature: float = 1.0,
    clip: float | None = 3.0,
) -> Tensor:
    """Weights P over the positions of the tap activation map (see the module docstring).

    Args:
        grad_enh: (B, C, F, T) gradient of the true-speaker logit w.r.t. the enhanced activations.
        grad_ref: (B, C, F, T) the same for the clean activations.
        scheme: ``gradw`` (paper), ``gradw-norm`` (standardised D, a deviation from the paper),
            ``equal`` (Equal-W), ``absdiff`` or ``minmax``.
        temperature: softmax temperature tau (``softmax(D / tau)``) for ``gradw`` and
            ``gradw-norm``; the paper uses 1. Other schemes accept only 1.
        clip: ``gradw-norm`` clips the standardised D to [-clip, clip] (``None``: no clipping);
            ignored by the other schemes.

    Returns:
        (B, 1, F, T) detached weights, non-negative, summing to 1 per utterance (float32, or
        float64 for float64 gradients).
    """
    check_weight_options(scheme, temperature, clip)
    _check_gradients(grad_enh, grad_ref)
    b, _, f, t = grad_enh.shape
    if scheme == "equal":
        return uniform_weights(grad_enh)
    if scheme == "absdiff":
        dtype = _work_dtype(grad_enh)
        a = (grad_enh.detach().to(dtype) - grad_ref.detach().to(dtype)).abs().sum(dim=1)
        return _normalise_sum(a.flatten(1)).view(b, 1, f, t)
    d = gradient_difference(grad_enh, grad_ref)
    if scheme == "minmax":
        flat = d.flatten(1)
        low = flat.amin(dim=1, keepdim=True)
        span = flat.amax(dim=1, keepdim=True) - low
        scaled = (flat - low) / torch.where(span == 0, torch.ones_like(span), span)
        return _normalise_sum(scaled).view(b, 1, f, t)
    if scheme == "gradw-norm":
        d = standardise(d)
        if clip is not None and math.isfinite(clip):
            d = d.clamp(-clip, clip)
    return torch.softmax(d.flatten(1) / temperature, dim=1).view(b, 1, f, t)


def weight_stats(weights: Tensor) -> dict[str, float]:
    """How far P is from uniform, averaged over the batch (for training logs).

    Args:
        weights: (B, 1, F, T) weights summing to 1 per utterance.

    Returns:
        ``weight_entropy``: normalised entropy H(P) / log(F T) (1 = uniform, 0 = one position;
        1 when F T = 1); ``weight_max_mean``: max(P) / mean(P) (1 = uniform, F T = one-hot);
        ``weight_top10``: share of the weight on the top 10 % of positions (at least one position;
        about 0.1 when uniform).
    """
    if weights.dim() != 4:
        raise ValueError(f"weights must be (B, 1, F, T), got shape {tuple(weights.shape)}")
    w = weights.detach().flatten(1).to(torch.float64)
    n = w.shape[1]
    total = w.sum(dim=1)
    entropy = -torch.special.xlogy(w / total[:, None], w / total[:, None]).sum(dim=1)
    norm_entropy = entropy / math.log(n) if n > 1 else torch.ones_like(entropy)
    max_mean = w.amax(dim=1) / w.mean(dim=1)
    k = max(1, math.ceil(0.1 * n))
    top = w.topk(k, dim=1).values.sum(dim=1) / total
    return {
        "weight_entropy": norm_entropy.mean().item(),
        "weight_max_mean": max_mean.mean().item(),
        "weight_top10": top.mean().item(),
    }
