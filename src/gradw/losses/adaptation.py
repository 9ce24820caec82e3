"""The label-free adaptation objective of ``gradw adapt``: a student copy of E taught to embed noisy
(or G-masked) speech where the frozen teacher E embeds the clean speech, without speaker labels::

    loss = w_emb  * mean_b (1 - cos(e_s, e_ref))
         + w_tap  * mean_b sum_{c,f,t} P |A_ref - A_s|          (P: equal or label-free gradw-norm)
         + w_cons * mean_b (1 - cos(e_c, e_ref))                 (0 at step 0)
         + w_rel  * mean_b mean_{j != b} |cos(e_s,b, e_s,j) - cos(e_ref,b, e_ref,j)|
         + w_anc  * sum ||theta - theta_0||^2                    (the trained weights)

The relational term keeps the geometry of the batch: the cosine between two noisy utterances as
the student embeds them should be the cosine between their clean versions as the teacher embeds
them. Pulling each noisy embedding onto its clean reference alone lets the student move every
embedding towards a shared direction: non-target scores rise with target scores, and the
separation gained on the training noise is lost on other noise (docs/levers.md, "why").

Label-free ``gradw-norm`` tap weights: Grad-W's true-speaker logit needs labels; here the score
is the cosine between the teacher's embedding of an activation and the teacher's clean embedding
``e_ref``. Its gradient at the clean activation is zero (the cosine is at its maximum there), so
the gradient difference of the paper reduces to the gradient at the student's activation,
``D = sum_c d cos(E.from_tap(A_s), e_ref) / d A_s``, standardised, clipped and soft-maxed by
:func:`gradw.losses.weights.activation_weights` as for G.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from gradw.losses.deep_feature import weighted_l1_per_item
from gradw.losses.objective import NonFiniteLossError, ObjectiveResult
from gradw.losses.weights import activation_weights, uniform_weights, weight_stats
from gradw.models.speaker import SpeakerNetwork

TAP_SCHEMES: tuple[str, ...] = ("equal", "gradw-norm")
"""Position weights of the tap term."""
# ---------------------------------------------------------------------------------------------
# the objective


def label_free_weights(
    teacher: SpeakerNetwork,
    activation: Tensor,
    reference: Tensor,
    scheme: str = "equal",
    temperature: float = 1.0,
    clip: float | None = 3.0,
) -> Tensor:
    """Position weights P of the tap term, without labels.

    Args:
        teacher: the frozen E (its second half judges the activation).
        activation: (B, C, F', T') the student's tap activation on the noisy input.
        reference: (B, D) the teacher's embedding of the clean input.
        scheme: ``equal`` (uniform) or ``gradw-norm`` (the standardised, clipped, soft-maxed
            gradient of ``cos(teacher.from_tap(A), reference)`` with respect to A; see the module
            docstring).
        temperature / clip: as in :func:`gradw.losses.weights.activation_weights`.

    Returns:
        (B, 1, F', T') detached weights summing to 1 per utterance.
    """
    if scheme not in TAP_SCHEMES:
        raise ValueError(f"unknown tap scheme {scheme!r}: expected one of {', '.join(TAP_SCHEMES)}")
    if scheme == "equal":
        return uniform_weights(activation)
    with torch.enable_grad():
        leaf = activation.detach().requires_grad_(True)
        score = F.cosine_similarity(teacher.from_tap(leaf), reference.detach(), dim=-1, eps=1e-8)
        (gradient,) = torch.autograd.grad(score.sum(), leaf)
    return activation_weights(gradient, torch.zeros_like(gradient), scheme, temperature, clip)


def _cosine_distance(a: Tensor, b: Tensor) -> Tensor:
    """(B, D), (B, D) -> (B,) 1 - cos."""
    return 1.0 - F.cosine_similarity(a, b, dim=-1, eps=1e-8)


def relation_distance(embedding: Tensor, reference: Tensor) -> Tensor:
    """Per item, the mean absolute difference between its cosines with the other items of the
    batch and the reference's (the relational term).

    Args:
        embedding: (B, D) the student's embeddings.
        reference: (B, D) the teacher's embeddings of the same items' clean inputs.

    Returns:
        (B,) mean over j != b of |cos(e_b, e_j) - cos(r_b, r_j)|; zeros for a batch of one.
    """
    batch = embedding.shape[0]
    if batch < 2:
        return embedding.new_zeros(batch)
    e = F.normalize(embedding, dim=-1, eps=1e-8)
    r = F.normalize(reference, dim=-1, eps=1e-8)
    gap = (e @ e.T - r @ r.T).abs()
    off_diagonal = ~torch.eye(batch, dtype=torch.bool, device=embedding.device)
    return (gap * off_diagonal).sum(dim=1) / (batch - 1)


class AdaptationObjective:
    """The adaptation loss of one batch (see the module docstring).

    ``stats`` holds ``loss``; ``embedding_distance`` (mean 1 - cos(student noisy, teacher
    clean)); ``consistency_distance`` (mean 1 - cos(student clean, teacher clean), when the clean
    pass ran); ``relation_distance`` (the relational term, when on); ``tap_l1`` (the weighted L1,
    when on); ``anchor_distance`` (sum of squared weight changes, when on); ``weight_entropy`` ...
    (:func:`gradw.losses.weights.weight_stats`, for ``gradw-norm``).

    Args:
        teacher: the frozen E.
        embedding_weight / tap_weight / consistency_weight / relation_weight / anchor_weight: term
            weights >= 0.
        scheme / temperature / clip: position weights of the tap term (:func:`label_free_weights`).
        anchors: (parameter, initial value) pairs for the anchor term.
    """

    def __init__(
        self,
        teacher: SpeakerNetwork,
        embedding_weight: float = 1.0,
        tap_weight: float = 0.0,
        consistency_weight: float = 1.0,
        anchor_weight: float = 0.0,
        scheme: str = "equal",
        relation_weight: float = 0.0,
        temperature: float = 1.0,
        clip: float | None = 3.0,
        anchors: list[tuple[Tensor, Tensor]] | None = None,
    ) -> None:
        self.teacher = teacher
        self.embedding_weight = float(embedding_weight)
        self.tap_weight = float(tap_weight)
        self.consistency_weight = float(consistency_weight)
        self.anchor_weight = float(anchor_weight)
        self.relation_weight = float(relation_weight)
        self.scheme, self.temperature, self.clip = scheme, float(temperature), clip
        self.anchors = anchors or []

    @property
    def needs_clean_pass(self) -> bool:
        """Whether the student must also embed the clean input (the consistency term)."""
        return self.consistency_weight > 0

    def __call__(
        self,
        activation: Tensor,
        embedding: Tensor,
        ref_activation: Tensor,
        ref_embedding: Tensor,
    ) -> ObjectiveResult:
        """Evaluate the loss.

        Args:
            activation: (B or 2B, C, F', T') the student's tap activations: the noisy inputs, then
                (with the consistency term) the clean ones.
            embedding: (B or 2B, D) the student's embeddings, in the same order.
            ref_activation: (B, C, F', T') the teacher's tap activations of the clean inputs.
            ref_embedding: (B, D) the teacher's embeddings of the clean inputs.

        Returns:
            An :class:`~gradw.losses.objective.ObjectiveResult` (``weights`` set for the tap term).

        Raises:
            NonFiniteLossError: naming the batch items whose loss is not finite.
        """
        batch = ref_embedding.shape[0]
        expected = 2 * batch if self.needs_clean_pass else batch
        if embedding.shape[0] != expected or activation.shape[0] != expected:
            raise ValueError(
                f"expected {expected} student items for {batch} references, got {embedding.shape[0]}"
            )
        stats: dict[str, float] = {}
        terms: dict[str, Tensor] = {}
        ref_embedding = ref_embedding.detach().to(embedding.dtype)
        distance = _cosine_distance(embedding[:batch], ref_embedding)
        per_item = self.embedding_weight * distance
        stats["embedding_distance"] = distance.detach().mean().item()
        weights: Tensor | None = None
        if self.tap_weight > 0:
            noisy_activation = activation[:batch]
            weights = label_free_weights(
                self.teacher, noisy_activation, ref_embedding, self.scheme, self.temperature, self.clip
            )
            tap = weighted_l1_per_item(
                ref_activation.detach(), noisy_activation, weights.to(activation.dtype)
            )
            per_item = per_item + self.tap_weight * tap
            stats["tap_l1"] = tap.detach().mean().item()
            if self.scheme != "equal":
                stats.update(weight_stats(weights))
        if self.relation_weight > 0:
            relation = relation_distance(embedding[:batch], ref_embedding)
            per_item = per_item + self.relation_weight * relation
            stats["relation_distance"] = relation.detach().mean().item()
        if self.needs_clean_pass:
            consistency = _cosine_distance(embedding[batch:], ref_embedding)
            per_item = per_item + self.consistency_weight * consistency
            stats["consistency_distance"] = consistency.detach().mean().item()
        loss = per_item.mean()
        if not bool(torch.isfinite(loss)):
            raise NonFiniteLossError(torch.nonzero(~torch.isfinite(per_item.detach())).flatten().tolist())
        terms["items"] = loss
        if self.anchor_weight > 0 and self.anchors:
            anchor = sum(((p - p0) ** 2).sum() for p, p0 in self.anchors)
            assert isinstance(anchor, Tensor)
            loss = loss + self.anchor_weight * anchor
            terms["anchor"] = self.anchor_weight * anchor
            stats["anchor_distance"] = anchor.detach().item()
        stats["loss"] = loss.item()
        return ObjectiveResult(loss=loss, stats=stats, weights=weights, terms=terms)
