"""EnhancementObjective on a tiny speaker network: gradients, weights, training, errors."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from gradw.losses import (
    OBJECTIVE_SCHEMES,
    EnhancementObjective,
    NonFiniteLossError,
    activation_weights,
    logit_gradient,
    uniform_weights,
    weighted_l1,
)
from gradw.models.speaker import SpeakerNetwork


def _true_logit(speaker: SpeakerNetwork, activation: Tensor, labels: Tensor) -> Tensor:
    return speaker.logits(speaker.from_tap(activation)).gather(1, labels[:, None]).squeeze(1)


def _finite_difference_gradient(speaker: SpeakerNetwork, activation: Tensor, labels: Tensor, h: float = 1e-6):
    """Central differences of each item's true-speaker logit w.r.t. each of its activations."""
    a = activation.detach().clone()
    grad = torch.zeros_like(a)
    _, c, f, t = a.shape
    with torch.no_grad():
        for b, ci, fi, ti in itertools.product(range(a.shape[0]), range(c), range(f), range(t)):
            plus, minus = a[b : b + 1].clone(), a[b : b + 1].clone()
            plus[0, ci, fi, ti] += h
            minus[0, ci, fi, ti] -= h
            lab = labels[b : b + 1]
            grad[b, ci, fi, ti] = (
                _true_logit(speaker, plus, lab) - _true_logit(speaker, minus, lab)
            ).item() / (2 * h)
    return grad


class MaskPredictor(nn.Module):
    """A minimal G: a two-layer conv on the noisy log-mel, sigmoid, starting near identity (0.88)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.Tanh(), nn.Conv2d(8, 1, 3, padding=1))
        with torch.no_grad():
            self.net[2].weight.mul_(0.1)
            self.net[2].bias.fill_(2.0)

    def forward(self, noisy_mel: Tensor) -> Tensor:
        feats = (noisy_mel + 1e-6).log()
        feats = feats - feats.mean(dim=-1, keepdim=True)
        return torch.sigmoid(self.net(feats.unsqueeze(1))).squeeze(1)


def test_autograd_gradients_and_weights_match_finite_differences(make_speaker, make_batch) -> None:
    speaker = make_speaker(dtype=torch.float64)
    data = make_batch(batch=2, frames=6, dtype=torch.float64)
    mask = torch.rand(data.noisy.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    mask = 0.2 + 0.8 * mask
    a_ref = speaker.to_tap(speaker.features(data.clean))
    a_enh = speaker.to_tap(speaker.features(data.noisy, mask))
    g_ref = _finite_difference_gradient(speaker, a_ref, data.labels)
    g_enh = _finite_difference_gradient(speaker, a_enh, data.labels)
    assert g_enh.abs().max() > 1e-3  # a real signal, not zeros
    torch.testing.assert_close(
        logit_gradient(speaker, a_ref, data.labels).gradient, g_ref, rtol=1e-6, atol=1e-8
    )
    torch.testing.assert_close(
        logit_gradient(speaker, a_enh, data.labels).gradient, g_enh, rtol=1e-6, atol=1e-8
    )

    for scheme, tau in (
        ("gradw", 1.0),
        ("gradw", 0.01),
        ("gradw-norm", 1.0),
        ("absdiff", 1.0),
        ("minmax", 1.0),
    ):
        objective = EnhancementObjective(speaker, scheme, temperature=tau)
        result = objective(mask, data.clean, data.noisy, data.labels)
        expected = activation_weights(g_enh, g_ref, scheme, temperature=tau)
        torch.testing.assert_close(result.weights, expected, rtol=1e-5, atol=1e-9)
        torch.testing.assert_close(result.loss, weighted_l1(a_ref, a_enh, expected), rtol=1e-6, atol=1e-10)
    # at a sharp temperature the weights are far from uniform: the comparison above has teeth
    sharp = EnhancementObjective(speaker, "gradw", temperature=0.01)(
        mask, data.clean, data.noisy, data.labels
    )
    assert sharp.stats["weight_max_mean"] > 2.0


def test_unit_mask_gives_the_noisy_activations(make_speaker, make_batch) -> None:
    speaker = make_speaker(dtype=torch.float64)
    data = make_batch(dtype=torch.float64)
    ones = torch.ones_like(data.noisy)
    a_ref = speaker.to_tap(speaker.features(data.clean))
    a_noisy = speaker.to_tap(speaker.features(data.noisy))  # no mask at all
    equal = EnhancementObjective(speaker, "equal")(ones, data.clean, data.noisy)
    torch.testing.assert_close(equal.loss, weighted_l1(a_ref, a_noisy, uniform_weights(a_noisy)))
    gradw = EnhancementObjective(speaker, "gradw", temperature=0.1)(ones, data.clean, data.noisy, data.labels)
    g_noisy = logit_gradient(speaker, a_noisy, data.labels).gradient
    g_ref = logit_gradient(speaker, a_ref, data.labels).gradient
    torch.testing.assert_close(gradw.weights, activation_weights(g_noisy, g_ref, "gradw", temperature=0.1))
    spectral = EnhancementObjective(speaker, "spectral")(ones, data.clean, data.noisy)
    expected = (speaker.features(data.clean) - speaker.features(data.noisy)).abs().mean()
    torch.testing.assert_close(spectral.loss, expected)


@pytest.mark.parametrize("scheme", OBJECTIVE_SCHEMES)
def test_clean_input_with_unit_mask_costs_nothing(make_speaker, make_batch, scheme: str) -> None:
    speaker = make_speaker()
    data = make_batch()
    result = EnhancementObjective(speaker, scheme)(
        torch.ones_like(data.clean), data.clean, data.clean, data.labels
    )
    assert result.loss.item() == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("scheme", OBJECTIVE_SCHEMES)
def test_training_a_mask_lowers_the_loss_and_only_g_learns(make_speaker, make_batch, scheme: str) -> None:
    speaker = make_speaker()
    data = make_batch(batch=4, frames=16, seed=1)
    torch.manual_seed(0)
    g = MaskPredictor()
    objective = EnhancementObjective(speaker, scheme, embedding_weight=0.0)
    optimiser = torch.optim.Adam(g.parameters(), lr=0.05)
    losses = []
    for _ in range(30):
        optimiser.zero_grad()
        result = objective(g(data.noisy), data.clean, data.noisy, data.labels)
        result.loss.backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in g.parameters())
        assert all(p.grad is None and not p.requires_grad for p in speaker.parameters())
        optimiser.step()
        losses.append(result.loss.item())
    assert losses[-1] < 0.8 * losses[0]
    assert speaker.training is False


def test_embedding_term_is_added_to_the_loss(make_speaker, make_batch) -> None:
    speaker = make_speaker(dtype=torch.float64)
    data = make_batch(dtype=torch.float64)
    mask = torch.full_like(data.noisy, 0.7)
    feats_ref, feats_enh = speaker.features(data.clean), speaker.features(data.noisy, mask)
    distance = (1 - F.cosine_similarity(speaker(feats_enh), speaker(feats_ref), dim=-1)).mean()
    assert distance > 1e-3
    a_ref, a_enh = speaker.to_tap(feats_ref), speaker.to_tap(feats_enh)
    for scheme, base in (
        ("equal", weighted_l1(a_ref, a_enh, uniform_weights(a_enh))),
        ("spectral", (feats_ref - feats_enh).abs().mean()),
    ):
        result = EnhancementObjective(speaker, scheme, embedding_weight=2.5)(mask, data.clean, data.noisy)
        torch.testing.assert_close(result.loss, base + 2.5 * distance)
        assert result.stats["feature_l1"] == pytest.approx(base.item())
        assert result.stats["embedding_term"] == pytest.approx(2.5 * distance.item())
        assert result.stats["embedding_distance"] == pytest.approx(distance.item())
    # the embedding term alone trains the mask too
    mask = mask.clone().requires_grad_(True)
    objective = EnhancementObjective(speaker, "gradw", embedding_weight=1.0)
    with_term = objective(mask, data.clean, data.noisy, data.labels)
    without = EnhancementObjective(speaker, "gradw")(mask, data.clean, data.noisy, data.labels)
    torch.testing.assert_close(with_term.loss - without.loss, distance)


def test_stats_and_weights(make_speaker, make_batch) -> None:
    speaker = make_speaker()
    data = make_batch()
    mask = torch.full_like(data.noisy, 0.5)
    result = EnhancementObjective(speaker, "gradw")(mask, data.clean, data.noisy, data.labels)
    assert result.weights.shape == (3, 1, 8, 12)
    assert {
        "loss",
        "feature_l1",
        "embedding_term",
        "weight_entropy",
        "weight_max_mean",
        "weight_top10",
        "grad_diff_std",
        "mask_mean",
        "logit_enh",
        "logit_ref",
    } <= result.stats.keys()
    assert result.stats["mask_mean"] == pytest.approx(0.5)
    a_enh = speaker.to_tap(speaker.features(data.noisy, mask))
    assert result.stats["logit_enh"] == pytest.approx(
        _true_logit(speaker, a_enh, data.labels).mean().item(), rel=1e-5
    )
    a_ref = speaker.to_tap(speaker.features(data.clean))
    assert result.stats["logit_ref"] == pytest.approx(
        _true_logit(speaker, a_ref, data.labels).mean().item(), rel=1e-5
    )
    spectral = EnhancementObjective(speaker, "spectral")(mask, data.clean, data.noisy)
    assert spectral.weights is None
    assert "weight_entropy" not in spectral.stats and "logit_enh" not in spectral.stats
    equal = EnhancementObjective(speaker, "equal")(mask, data.clean, data.noisy)
    assert equal.stats["weight_entropy"] == pytest.approx(1.0)


def test_works_inside_no_grad_for_validation(make_speaker, make_batch) -> None:
    speaker = make_speaker()
    data = make_batch()
    mask = torch.full_like(data.noisy, 0.5)
    objective = EnhancementObjective(speaker, "gradw-norm")
    expected = objective(mask, data.clean, data.noisy, data.labels)
    with torch.no_grad():
        result = objective(mask, data.clean, data.noisy, data.labels)
    torch.testing.assert_close(result.loss, expected.loss.detach())
    torch.testing.assert_close(result.weights, expected.weights)


@pytest.mark.parametrize("scheme", ["gradw", "gradw-norm", "absdiff", "minmax"])
def test_gradient_schemes_need_labels(make_speaker, make_batch, scheme: str) -> None:
    speaker = make_speaker()
    data = make_batch()
    objective = EnhancementObjective(speaker, scheme)
    assert objective.needs_labels
    with pytest.raises(ValueError, match="labels are required"):
        objective(torch.ones_like(data.noisy), data.clean, data.noisy, None)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 5\)"):
        objective(torch.ones_like(data.noisy), data.clean, data.noisy, torch.tensor([0, 1, 5]))
    with pytest.raises(ValueError, match="integer"):
        objective(torch.ones_like(data.noisy), data.clean, data.noisy, torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="needs the speaker network's classification head"):
        EnhancementObjective(make_speaker(head=False), scheme)


def test_equal_and_spectral_need_no_labels_nor_head(make_speaker, make_batch) -> None:
    speaker = make_speaker(head=False)
    data = make_batch()
    for scheme in ("equal", "spectral"):
        result = EnhancementObjective(speaker, scheme)(torch.ones_like(data.noisy), data.clean, data.noisy)
        assert result.loss.item() > 0


def test_bad_configuration_and_shapes(make_speaker, make_batch) -> None:
    speaker = make_speaker()
    data = make_batch()
    with pytest.raises(ValueError, match="unknown scheme"):
        EnhancementObjective(speaker, "grad-w")
    with pytest.raises(ValueError, match="temperature"):
        EnhancementObjective(speaker, "equal", temperature=0.5)
    with pytest.raises(ValueError, match="embedding_weight"):
        EnhancementObjective(speaker, "equal", embedding_weight=-1.0)
    with pytest.raises(ValueError, match="same shape"):
        EnhancementObjective(speaker, "equal")(torch.ones(3, 8, 11), data.clean, data.noisy)


def test_speaker_network_is_frozen(make_speaker) -> None:
    torch.manual_seed(0)
    speaker = make_speaker()
    for p in speaker.parameters():
        p.requires_grad_(True)
    speaker.train()
    EnhancementObjective(speaker, "equal")
    assert not any(p.requires_grad for p in speaker.parameters())
    assert not speaker.training


@pytest.mark.parametrize("scheme", OBJECTIVE_SCHEMES)
def test_non_finite_loss_names_the_offending_items(make_speaker, make_batch, scheme: str) -> None:
    speaker = make_speaker()
    data = make_batch(batch=4)
    noisy = data.noisy.clone()
    noisy[1, 3, 5] = float("nan")
    noisy[3, 0, 0] = float("inf")
    objective = EnhancementObjective(speaker, scheme, embedding_weight=0.5)
    with pytest.raises(NonFiniteLossError) as info:
        objective(torch.full_like(noisy, 0.9), data.clean, noisy, data.labels)
    assert info.value.indices == [1, 3]
    assert isinstance(info.value, ValueError)
    assert "[1, 3]" in str(info.value)
