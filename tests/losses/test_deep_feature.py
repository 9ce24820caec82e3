"""Weighted deep-feature L1 and the signal-level (log-mel) L1 baseline."""

from __future__ import annotations

import pytest
import torch

from gradw.losses import spectral_l1, spectral_l1_per_item, uniform_weights, weighted_l1, weighted_l1_per_item


def test_weighted_l1_hand_computed() -> None:
    # B = 2, C = 2, F = 1, T = 2
    a_ref = torch.tensor([[[[1.0, 2.0]], [[0.0, -1.0]]], [[[3.0, 3.0]], [[1.0, 1.0]]]])
    a_enh = torch.tensor([[[[0.0, 2.5]], [[1.0, 1.0]]], [[[3.0, 1.0]], [[-1.0, 1.0]]]])
    p = torch.tensor([[[[0.25, 0.75]]], [[[0.5, 0.5]]]])
    # item 0: |diff| = [[1, .5], [1, 2]] -> .25*1 + .75*.5 + .25*1 + .75*2 = 2.375
    # item 1: |diff| = [[0, 2], [2, 0]]  -> .5*0 + .5*2 + .5*2 + .5*0   = 2.0
    torch.testing.assert_close(weighted_l1_per_item(a_ref, a_enh, p), torch.tensor([2.375, 2.0]))
    torch.testing.assert_close(weighted_l1(a_ref, a_enh, p), torch.tensor(2.1875))


def test_uniform_weights_give_channels_times_mean_absolute_difference() -> None:
    g = torch.Generator().manual_seed(1)
    a_ref, a_enh = torch.randn(2, 3, 7, 5, 4, generator=g, dtype=torch.float64)
    loss = weighted_l1(a_ref, a_enh, uniform_weights(a_ref))
    torch.testing.assert_close(loss, 7 * (a_ref - a_enh).abs().mean())


def test_weighted_l1_gradient_reaches_enhanced_activations_only_through_weights_constant() -> None:
    g = torch.Generator().manual_seed(2)
    a_ref = torch.randn(2, 3, 4, 5, generator=g)
    a_enh = torch.randn(2, 3, 4, 5, generator=g, requires_grad=True)
    p = torch.rand(2, 1, 4, 5, generator=g)
    weighted_l1(a_ref, a_enh, p).backward()
    # d/dA_enh of (1/B) sum P |A_ref - A_enh| = (1/B) P sign(A_enh - A_ref)
    torch.testing.assert_close(a_enh.grad, p.expand(2, 3, 4, 5) * torch.sign(a_enh.detach() - a_ref) / 2)


def test_weighted_l1_shape_checks() -> None:
    a = torch.zeros(2, 3, 4, 5)
    with pytest.raises(ValueError, match="same shape"):
        weighted_l1(a, a[:, :2], torch.ones(2, 1, 4, 5))
    with pytest.raises(ValueError, match=r"weights must be \(2, 1, 4, 5\)"):
        weighted_l1(a, a, torch.ones(2, 4, 5))
    with pytest.raises(ValueError, match="weights must be"):
        weighted_l1(a, a, torch.ones(2, 1, 5, 4))


def test_spectral_l1_is_mean_absolute_difference() -> None:
    clean = torch.tensor([[[0.0, 1.0], [2.0, 3.0]], [[1.0, 1.0], [1.0, 1.0]]])
    enh = torch.tensor([[[1.0, 1.0], [2.0, 1.0]], [[1.0, 2.0], [1.0, 1.0]]])
    torch.testing.assert_close(spectral_l1_per_item(clean, enh), torch.tensor([0.75, 0.25]))
    torch.testing.assert_close(spectral_l1(clean, enh), torch.tensor(0.5))
    with pytest.raises(ValueError, match="same shape"):
        spectral_l1(clean, enh[:, :1])
