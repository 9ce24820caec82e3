"""Combining the gradients of two loss terms that disagree (a deviation from the paper).

The activation loss (Grad-W / Equal-W) and the embedding term pull G's parameters in directions
that can conflict: a step that brings the enhanced activation map closer to the clean one may move
the pooled embedding away, and the reverse. The paper names handling such conflicts as future
work. ``project`` follows PCGrad (Yu et al., "Gradient surgery for multi-task learning", NeurIPS
2020) for two terms: when ``g_a . g_b < 0``, each gradient is replaced by its projection onto the
normal plane of the other,

    g_a' = g_a - (g_a . g_b / |g_b|^2) g_b,    g_b' = g_b - (g_a . g_b / |g_a|^2) g_a,

and the update is ``g_a' + g_b'``; otherwise it is ``g_a + g_b`` (the plain sum). Dot products
and norms are over all parameters together (one flattened vector per term).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

CONFLICT_MODES = ("none", "project")


def combine_gradients(
    grads_a: Sequence[Tensor | None], grads_b: Sequence[Tensor | None], mode: str = "project"
) -> tuple[list[Tensor], dict[str, float]]:
    """Combine the per-parameter gradients of two terms.

    Args:
        grads_a: gradients of term a, one per parameter (``None``: the term does not reach it).
        grads_b: gradients of term b, same parameters and shapes.
        mode: ``"none"`` (sum) or ``"project"`` (PCGrad where the terms conflict).

    Returns:
        (combined gradients, one per parameter; stats): ``grad_cosine`` (cosine between g_a and
        g_b, 0 when either is zero) and ``grad_conflict`` (1.0 when projected, else 0.0).

    Raises:
        ValueError: unknown mode, or lists of different lengths or shapes.
    """
    if mode not in CONFLICT_MODES:
        raise ValueError(f"unknown conflict mode {mode!r}: expected one of {', '.join(CONFLICT_MODES)}")
    if len(grads_a) != len(grads_b):
        raise ValueError(f"gradient lists differ in length: {len(grads_a)} vs {len(grads_b)}")
    pairs: list[tuple[Tensor, Tensor]] = []
    for index, (a, b) in enumerate(zip(grads_a, grads_b, strict=True)):
        if a is None and b is None:
            raise ValueError(f"parameter {index} gets a gradient from neither term")
        a = torch.zeros_like(b) if a is None else a
        b = torch.zeros_like(a) if b is None else b
        if a.shape != b.shape:
            raise ValueError(
                f"parameter {index}: gradient shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}"
            )
        pairs.append((a, b))
    dot = sum((a.double() * b.double()).sum() for a, b in pairs)
    norm_a = sum(a.double().pow(2).sum() for a, _ in pairs)
    norm_b = sum(b.double().pow(2).sum() for _, b in pairs)
    dot_f, na, nb = float(dot), float(norm_a), float(norm_b)
    cosine = dot_f / (na * nb) ** 0.5 if na > 0 and nb > 0 else 0.0
    conflict = mode == "project" and dot_f < 0 and na > 0 and nb > 0
    if not conflict:
        return [a + b for a, b in pairs], {"grad_cosine": cosine, "grad_conflict": 0.0}
    scale_b, scale_a = dot_f / nb, dot_f / na  # g_a' = g_a - scale_b g_b; g_b' = g_b - scale_a g_a
    combined = [(a - scale_b * b) + (b - scale_a * a) for a, b in pairs]
    return combined, {"grad_cosine": cosine, "grad_conflict": 1.0}
