"""The enhancement training objective: a fixed speaker network E judges the masked input.

One call implements a training step's loss as in the paper's code (arXiv 2401.02626,
Appendix A of the notes)::

    A_ref  = E.to_tap(E.features(clean_mel))                      (detached)
    G_ref  = d s_y(A_ref) / d A_ref                               (detached)
    A_enh  = E.to_tap(E.features(noisy_mel, mask))                (graph back to the mask)
    G_enh  = d s_y(A_enh) / d A_enh                               (detached: P is a constant)
    P      = activation_weights(G_enh, G_ref, scheme)             (B, 1, F', T')
    loss   = weighted_l1(A_ref, A_enh, P)

with s_y the true-speaker logit of E's cosine head. E is frozen (eval mode, no parameter
gradients); gradients flow through E into the mask and so into the enhancement network G.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.nn import functional as F

from gradw.errors import GradwError
from gradw.losses.deep_feature import weighted_l1_per_item
from gradw.losses.spectral import spectral_l1_per_item
from gradw.losses.suppression import suppression_penalty_per_item
from gradw.losses.weights import (
    GRADIENT_SCHEMES,
    WEIGHT_SCHEMES,
    activation_weights,
    check_weight_options,
    gradient_difference,
    uniform_weights,
    weight_stats,
)
from gradw.models.speaker import SpeakerNetwork

OBJECTIVE_SCHEMES: tuple[str, ...] = (*WEIGHT_SCHEMES, "spectral")
"""Every scheme :class:`EnhancementObjective` accepts."""


class NonFiniteLossError(GradwError, ValueError):
    """The loss is NaN or infinite; ``indices`` names the offending batch items.

    Attributes:
        indices: positions in the batch whose per-utterance loss is not finite (empty if only the
            batch total overflowed).
    """

    def __init__(self, indices: Sequence[int], message: str | None = None) -> None:
        self.indices = [int(i) for i in indices]
        if message is None:
            message = (
                f"non-finite loss for batch items {self.indices}"
                if self.indices
                else "non-finite loss: every item is finite, the batch total overflowed"
            )
        super().__init__(message)


@dataclass
class ObjectiveResult:
    """The outcome of one objective evaluation.

    Attributes:
        loss: () scalar to backpropagate (into the mask only).
        stats: floats for the training log (see :class:`EnhancementObjective`).
        weights: (B, 1, F', T') the detached weights P, or ``None`` for ``spectral``.
        terms: the scalar terms that sum to ``loss``: ``"feature"`` (the activation or spectral
            L1, plus the suppression penalty when on; batch mean) and, when on, ``"embedding"``
            (embedding_weight x mean 1 - cos); for combining their gradients
            (:mod:`gradw.losses.pcgrad`).
    """

    loss: Tensor
    stats: dict[str, float] = field(default_factory=dict)
    weights: Tensor | None = None
    terms: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class LogitGradient:
    """The true-speaker logit at a tap activation and its gradient (all detached).

    Attributes:
        gradient: (B, C, F', T') d s_y / d A, one utterance's logit per item (E is in eval mode,
            so items do not interact).
        logit: (B,) s_y, the true-speaker logit.
        embedding: (B, D) E's embedding of the activation.
    """

    gradient: Tensor
    logit: Tensor
    embedding: Tensor


def check_labels(labels: Tensor | None, batch_size: int, num_classes: int) -> Tensor:
    """Validate speaker labels for the head: (B,) integers in [0, num_classes).

    Raises:
        ValueError: naming what is wrong.
    """
    if labels is None:
        raise ValueError("speaker labels are required for the gradient-weighted schemes")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.dtype.is_complex:
        raise ValueError(f"labels must be an integer tensor, got {labels.dtype}")
    if labels.shape != (batch_size,):
        raise ValueError(f"labels must have shape ({batch_size},), got {tuple(labels.shape)}")
    if batch_size and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}) (the head's classes), "
            f"got values in [{int(labels.min())}, {int(labels.max())}]"
        )
    return labels.long()


def logit_gradient(speaker: SpeakerNetwork, activation: Tensor, labels: Tensor) -> LogitGradient:
    """Gradient of the true-speaker logit with respect to a tap activation.

    The gradient is taken at a detached copy of ``activation``, so the graph that produced it
    (e.g. back to a mask) is neither used nor freed; works inside ``torch.no_grad()`` too.

    Args:
        speaker: E, with a head.
        activation: (B, C, F', T') tap activation.
        labels: (B,) long true-speaker indices.

    Returns:
        A :class:`LogitGradient` with (B, C, F', T') gradient, (B,) logit, (B, D) embedding.
    """
    with torch.enable_grad():
        leaf = activation.detach().requires_grad_(True)
        embedding = speaker.from_tap(leaf)
        logit = speaker.logits(embedding).gather(1, labels.view(-1, 1).to(embedding.device)).squeeze(1)
        (gradient,) = torch.autograd.grad(logit.sum(), leaf)
    return LogitGradient(gradient=gradient.detach(), logit=logit.detach(), embedding=embedding.detach())


def _cosine_distance(a: Tensor, b: Tensor) -> Tensor:
    """(B, D), (B, D) -> (B,) 1 - cos."""
    return 1.0 - F.cosine_similarity(a, b, dim=-1, eps=1e-8)


class EnhancementObjective:
    """Loss for training a mask against a fixed speaker network E.

    Schemes: ``gradw`` (the paper), ``gradw-norm`` (standardised and clipped gradient difference,
    a deviation from the paper), ``equal`` (Equal-W), ``absdiff``, ``minmax`` (variants from the
    authors' history; see :mod:`gradw.losses.weights`) and ``spectral`` (L1 between E's clean and
    enhanced log-mel features, no network). ``equal`` and ``spectral`` need no labels and skip the
    gradient computations.

    Optional embedding term (a deviation from the paper, which uses the weighted L1 alone):
    ``loss += embedding_weight * mean_b(1 - cos(emb(enhanced), emb(clean)))``.

    Optional suppression penalty (a deviation too, :mod:`gradw.losses.suppression`):
    ``loss += keep_weight * mean_b(penalty)``, which charges attenuating cells that the noise
    left intact.

    ``stats`` holds: ``loss``; ``feature_l1`` (the weighted L1, or the spectral L1);
    ``embedding_term`` (embedding_weight x the mean cosine distance; 0 when off);
    ``keep_term`` (keep_weight x the mean suppression penalty; 0 when off);
    ``embedding_distance`` (mean 1 - cos, when both embeddings were computed); ``weight_entropy``,
    ``weight_max_mean``, ``weight_top10`` (see :func:`weight_stats`; not for ``spectral``);
    ``grad_diff_std`` (mean over the batch of the standard deviation over positions of D, the
    scale ``gradw`` sees; gradient schemes only); ``mask_mean``; ``mask_log_spread`` (mean over
    bands of the standard deviation over time of log M: the part of the mask that survives CMN);
    ``logit_enh`` and ``logit_ref`` (mean true-speaker logit of the enhanced and clean inputs,
    when computed: always for the gradient schemes, for ``equal`` when labels are given and E
    has a head, for ``spectral`` when also the embedding term is on).

    Args:
        speaker: E. It is frozen in place (eval mode, ``requires_grad=False``).
        scheme: one of :data:`OBJECTIVE_SCHEMES`.
        temperature: softmax temperature for ``gradw`` / ``gradw-norm`` (1 in the paper).
        clip: clipping bound for ``gradw-norm`` (``None``: no clipping).
        embedding_weight: lambda >= 0 of the embedding term (0: the paper's loss).
        keep_weight: weight >= 0 of the suppression penalty (0: off, the paper's loss).
    """

    def __init__(
        self,
        speaker: SpeakerNetwork,
        scheme: str = "gradw",
        temperature: float = 1.0,
        clip: float | None = 3.0,
        embedding_weight: float = 0.0,
        keep_weight: float = 0.0,
    ) -> None:
        if scheme not in OBJECTIVE_SCHEMES:
            raise ValueError(f"unknown scheme {scheme!r}: expected one of {', '.join(OBJECTIVE_SCHEMES)}")
        check_weight_options("equal" if scheme == "spectral" else scheme, temperature, clip)
        if not embedding_weight >= 0:
            raise ValueError(f"embedding_weight must be >= 0, got {embedding_weight!r}")
        if not keep_weight >= 0:
            raise ValueError(f"keep_weight must be >= 0, got {keep_weight!r}")
        if scheme in GRADIENT_SCHEMES and speaker.head is None:
            raise ValueError(
                f"scheme {scheme!r} needs the speaker network's classification head "
                f"({type(speaker).__name__} has none); use 'equal' or 'spectral', or give E a head"
            )
        self.speaker = speaker.freeze()
        self.scheme = scheme
        self.temperature = float(temperature)
        self.clip = clip
        self.embedding_weight = float(embedding_weight)
        self.keep_weight = float(keep_weight)

    @property
    def needs_labels(self) -> bool:
        """Whether :meth:`__call__` requires speaker labels."""
        return self.scheme in GRADIENT_SCHEMES

    def _true_logit(self, embedding: Tensor, labels: Tensor) -> Tensor:
        """(B, D) embedding -> (B,) true-speaker logit (detached)."""
        with torch.no_grad():
            return self.speaker.logits(embedding).gather(1, labels.view(-1, 1)).squeeze(1)

    def __call__(
        self, mask: Tensor, clean_mel: Tensor, noisy_mel: Tensor, labels: Tensor | None = None
    ) -> ObjectiveResult:
        """Evaluate the loss of one batch.

        Args:
            mask: (B, F, T) mask in (0, 1] on the mel-power grid (from G; carries G's graph).
            clean_mel: (B, F, T) mel power of the clean reference.
            noisy_mel: (B, F, T) mel power of the noisy input.
            labels: (B,) long true-speaker indices into E's head; required for the gradient
                schemes, optional otherwise (only used for logging the logits).

        Returns:
            :class:`ObjectiveResult`.

        Raises:
            ValueError: bad shapes or labels (missing labels for a gradient scheme).
            NonFiniteLossError: the loss is NaN or infinite; ``indices`` names the items.
        """
        if mask.dim() != 3 or not (mask.shape == clean_mel.shape == noisy_mel.shape):
            raise ValueError(
                "mask, clean_mel and noisy_mel must all be (B, F, T) with the same shape, got "
                f"{tuple(mask.shape)}, {tuple(clean_mel.shape)}, {tuple(noisy_mel.shape)}"
            )
        speaker = self.speaker
        batch = mask.shape[0]
        if self.needs_labels:
            labels = check_labels(labels, batch, speaker.head.num_classes)  # type: ignore[union-attr]
        elif labels is not None and speaker.head is not None:
            labels = check_labels(labels, batch, speaker.head.num_classes)
        else:
            labels = None
        if labels is not None:
            labels = labels.to(mask.device)

        stats: dict[str, float] = {}
        weights: Tensor | None = None
        emb_enh: Tensor | None = None  # with the graph to the mask, for the embedding term
        emb_enh_seen: Tensor | None = None  # detached, for logging
        emb_ref: Tensor | None = None
        use_embedding = self.embedding_weight > 0

        if self.scheme == "spectral":
            with torch.no_grad():
                feats_ref = speaker.features(clean_mel)
            feats_enh = speaker.features(noisy_mel, mask)
            feature_loss = spectral_l1_per_item(feats_ref, feats_enh)
            if use_embedding:
                emb_enh = speaker(feats_enh)
                with torch.no_grad():
                    emb_ref = speaker(feats_ref)
        else:
            with torch.no_grad():
                a_ref = speaker.to_tap(speaker.features(clean_mel))
            a_enh = speaker.to_tap(speaker.features(noisy_mel, mask))
            if self.scheme in GRADIENT_SCHEMES:
                assert labels is not None
                ref = logit_gradient(speaker, a_ref, labels)
                enh = logit_gradient(speaker, a_enh, labels)
                weights = activation_weights(
                    enh.gradient, ref.gradient, self.scheme, self.temperature, self.clip
                )
                d = gradient_difference(enh.gradient, ref.gradient).flatten(1)
                stats["grad_diff_std"] = d.std(dim=1, correction=0).mean().item()
                stats["logit_enh"] = enh.logit.mean().item()
                stats["logit_ref"] = ref.logit.mean().item()
                emb_enh_seen, emb_ref = enh.embedding, ref.embedding
            else:
                weights = uniform_weights(a_enh)
                if labels is not None:
                    with torch.no_grad():
                        emb_enh_seen = speaker.from_tap(a_enh)
                        emb_ref = speaker.from_tap(a_ref)
                    stats["logit_enh"] = self._true_logit(emb_enh_seen, labels).mean().item()
                    stats["logit_ref"] = self._true_logit(emb_ref, labels).mean().item()
                elif use_embedding:
                    with torch.no_grad():
                        emb_ref = speaker.from_tap(a_ref)
            feature_loss = weighted_l1_per_item(a_ref, a_enh, weights)
            if use_embedding:
                emb_enh = speaker.from_tap(a_enh)

        per_item = feature_loss
        keep: Tensor | None = None
        if self.keep_weight > 0:
            keep = suppression_penalty_per_item(mask, clean_mel, noisy_mel)
            per_item = per_item + self.keep_weight * keep.to(per_item.dtype)
        terms = {"feature": per_item.mean()}
        distance: Tensor | None = None
        if use_embedding:
            assert emb_enh is not None and emb_ref is not None
            distance = _cosine_distance(emb_enh, emb_ref.to(emb_enh.dtype))
            per_item = per_item + self.embedding_weight * distance.to(per_item.dtype)
            terms["embedding"] = self.embedding_weight * distance.to(per_item.dtype).mean()
            if self.scheme == "spectral" and labels is not None:
                stats["logit_enh"] = self._true_logit(emb_enh.detach(), labels).mean().item()
                stats["logit_ref"] = self._true_logit(emb_ref, labels).mean().item()
        elif emb_enh_seen is not None and emb_ref is not None:
            distance = _cosine_distance(emb_enh_seen, emb_ref)

        loss = per_item.mean()
        if not bool(torch.isfinite(loss)):
            bad = torch.nonzero(~torch.isfinite(per_item.detach())).flatten().tolist()
            raise NonFiniteLossError(bad)

        stats["loss"] = loss.item()
        stats["feature_l1"] = feature_loss.detach().mean().item()
        if distance is not None:
            stats["embedding_distance"] = distance.detach().mean().item()
        stats["embedding_term"] = (
            self.embedding_weight * stats["embedding_distance"] if use_embedding else 0.0
        )
        stats["keep_term"] = self.keep_weight * keep.detach().mean().item() if keep is not None else 0.0
        if weights is not None:
            stats.update(weight_stats(weights))
        stats["mask_mean"] = mask.detach().mean().item()
        # what E sees of the mask: a mask constant over time in a band is removed by the mean
        # normalisation, so the effective part is the spread of log M over time
        stats["mask_log_spread"] = (mask.detach() + 1e-6).log().std(dim=-1).mean().item()
        return ObjectiveResult(loss=loss, stats=stats, weights=weights, terms=terms)
