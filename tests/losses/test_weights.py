"""Position weights P: Grad-W, gradw-norm, Equal-W, absdiff, minmax, and their statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gradw.losses import WEIGHT_SCHEMES, activation_weights, gradient_difference, weight_stats


def _grads(b: int = 3, c: int = 4, f: int = 5, t: int = 6, seed: int = 0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(b, c, f, t, generator=g, dtype=dtype),
        torch.randn(b, c, f, t, generator=g, dtype=dtype),
    )


def _np_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("scheme", WEIGHT_SCHEMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_scheme_is_a_distribution_per_utterance(scheme: str, dtype: torch.dtype) -> None:
    g_enh, g_ref = _grads(dtype=dtype)
    p = activation_weights(g_enh, g_ref, scheme)
    assert p.shape == (3, 1, 5, 6)
    assert p.dtype == dtype
    assert bool((p >= 0).all())
    torch.testing.assert_close(p.sum(dim=(1, 2, 3)), torch.ones(3, dtype=dtype))


def test_equal_is_exactly_uniform() -> None:
    g_enh, g_ref = _grads()
    p = activation_weights(g_enh, g_ref, "equal")
    assert bool((p == 1.0 / 30).all())


def test_gradw_is_softmax_of_channel_summed_signed_difference() -> None:
    g_enh, g_ref = _grads()
    d = (g_enh.numpy() - g_ref.numpy()).sum(axis=1).reshape(3, -1)
    for tau in (1.0, 0.3):
        expected = _np_softmax(d / tau).reshape(3, 1, 5, 6)
        got = activation_weights(g_enh, g_ref, "gradw", temperature=tau).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-12)
    np.testing.assert_allclose(gradient_difference(g_enh, g_ref).numpy().reshape(3, -1), d, rtol=1e-12)


def test_gradw_norm_standardises_clips_then_softmax() -> None:
    g_enh, g_ref = _grads()
    g_enh[0, :, 2, 3] += 10.0  # an outlier that the clip must catch
    d = (g_enh.numpy() - g_ref.numpy()).sum(axis=1).reshape(3, -1)
    z = (d - d.mean(axis=1, keepdims=True)) / d.std(axis=1, keepdims=True)
    assert z.max() > 3.0
    for clip, tau in ((3.0, 1.0), (1.5, 0.5), (None, 1.0)):
        zc = z if clip is None else np.clip(z, -clip, clip)
        expected = _np_softmax(zc / tau).reshape(3, 1, 5, 6)
        got = activation_weights(g_enh, g_ref, "gradw-norm", temperature=tau, clip=clip).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_absdiff_and_minmax_match_independent_computation() -> None:
    g_enh, g_ref = _grads()
    a = np.abs(g_enh.numpy() - g_ref.numpy()).sum(axis=1).reshape(3, -1)
    np.testing.assert_allclose(
        activation_weights(g_enh, g_ref, "absdiff").numpy().reshape(3, -1),
        a / a.sum(axis=1, keepdims=True),
        rtol=1e-12,
    )
    d = (g_enh.numpy() - g_ref.numpy()).sum(axis=1).reshape(3, -1)
    m = (d - d.min(axis=1, keepdims=True)) / (d.max(axis=1, keepdims=True) - d.min(axis=1, keepdims=True))
    got = activation_weights(g_enh, g_ref, "minmax").numpy().reshape(3, -1)
    np.testing.assert_allclose(got, m / m.sum(axis=1, keepdims=True), rtol=1e-12)
    assert bool((got.min(axis=1) == 0).all())  # the least-attended position gets nothing


@pytest.mark.parametrize("scheme", ["gradw", "gradw-norm", "absdiff", "minmax"])
def test_more_attention_on_enhanced_input_gets_the_most_weight(scheme: str) -> None:
    g_ref = torch.full((2, 3, 4, 5), 0.2, dtype=torch.float64)
    g_enh = g_ref.clone()
    g_enh[0, :, 1, 3] += 0.5
    g_enh[1, :, 3, 0] += 0.5
    p = activation_weights(g_enh, g_ref, scheme).flatten(1)
    assert p.argmax(dim=1).tolist() == [1 * 5 + 3, 3 * 5 + 0]
    others = p[0, torch.arange(20) != 8]
    torch.testing.assert_close(others, torch.full_like(others, others[0].item()))  # the rest equal


def test_absdiff_is_symmetric_and_signed_schemes_are_not() -> None:
    g_enh, g_ref = _grads()
    torch.testing.assert_close(
        activation_weights(g_enh, g_ref, "absdiff"), activation_weights(g_ref, g_enh, "absdiff")
    )
    # swapping the inputs negates D: the most-weighted position of gradw becomes the least-weighted one
    p = activation_weights(g_enh, g_ref, "gradw").flatten(1)
    q = activation_weights(g_ref, g_enh, "gradw").flatten(1)
    assert torch.equal(p.argmax(dim=1), q.argmin(dim=1))


def test_gradw_norm_is_scale_invariant_but_literal_gradw_is_not() -> None:
    g_enh, g_ref = _grads(dtype=torch.float32)
    d_ref = activation_weights(g_enh, g_ref, "gradw-norm")
    for scale in (1e-30, 1e-8, 1e-3, 7.0, 1e4):
        torch.testing.assert_close(
            activation_weights(scale * g_enh, scale * g_ref, "gradw-norm"), d_ref, rtol=1e-5, atol=1e-7
        )
    # relative deviation from uniform, max |P - 1/N| * N: shrinks in proportion to the scale of D
    spread = [
        (activation_weights(s * g_enh, s * g_ref, "gradw") * 30 - 1).abs().max().item()
        for s in (1.0, 1e-2, 1e-4, 1e-6)
    ]
    assert spread[0] > 1.0
    assert spread[1] > 30 * spread[2] > 900 * spread[3]
    assert spread[3] < 1e-4  # at a tiny gradient scale the literal gradw is Equal-W


@pytest.mark.parametrize("scheme", WEIGHT_SCHEMES)
def test_equal_gradients_give_uniform_weights(scheme: str) -> None:
    g, _ = _grads()
    p = activation_weights(g, g.clone(), scheme)
    torch.testing.assert_close(p, torch.full_like(p, 1.0 / 30))


@pytest.mark.parametrize("scheme", ["gradw", "gradw-norm", "absdiff", "minmax"])
def test_non_finite_gradients_stay_visible(scheme: str) -> None:
    g_enh, g_ref = _grads()
    g_enh[1, 0, 0, 0] = float("nan")
    p = activation_weights(g_enh, g_ref, scheme)
    assert bool(p[1].isnan().any())
    assert bool(torch.isfinite(p[[0, 2]]).all())


def test_weights_are_constants() -> None:
    g_enh, g_ref = _grads()
    p = activation_weights(g_enh.requires_grad_(), g_ref, "gradw")
    assert not p.requires_grad


def test_bad_options_are_refused() -> None:
    g_enh, g_ref = _grads()
    with pytest.raises(ValueError, match="unknown weight scheme"):
        activation_weights(g_enh, g_ref, "softmax")
    with pytest.raises(ValueError, match="temperature"):
        activation_weights(g_enh, g_ref, "gradw", temperature=0.0)
    with pytest.raises(ValueError, match="applies only to"):
        activation_weights(g_enh, g_ref, "absdiff", temperature=2.0)
    with pytest.raises(ValueError, match="clip"):
        activation_weights(g_enh, g_ref, "gradw-norm", clip=0.0)
    with pytest.raises(ValueError, match="shapes differ"):
        activation_weights(g_enh, g_ref[:, :2], "gradw")
    with pytest.raises(ValueError, match=r"\(B, C, F, T\)"):
        activation_weights(g_enh[0], g_ref[0], "gradw")


def test_weight_stats_uniform_one_hot_and_two_level() -> None:
    n = 4 * 5
    uniform = torch.full((2, 1, 4, 5), 1.0 / n)
    s = weight_stats(uniform)
    assert s["weight_entropy"] == pytest.approx(1.0)
    assert s["weight_max_mean"] == pytest.approx(1.0)
    assert s["weight_top10"] == pytest.approx(2 / n)  # top 10 % of 20 positions = 2 positions

    one_hot = torch.zeros(2, 1, 4, 5)
    one_hot[0, 0, 1, 2] = 1.0
    one_hot[1, 0, 3, 4] = 1.0
    s = weight_stats(one_hot)
    assert s["weight_entropy"] == pytest.approx(0.0, abs=1e-12)
    assert s["weight_max_mean"] == pytest.approx(n)
    assert s["weight_top10"] == pytest.approx(1.0)

    # half the mass on 2 positions, half spread over the other 18
    p = np.full(n, 0.5 / 18)
    p[:2] = 0.25
    s = weight_stats(torch.tensor(p).view(1, 1, 4, 5))
    assert s["weight_entropy"] == pytest.approx(-(p * np.log(p)).sum() / math.log(n))
    assert s["weight_max_mean"] == pytest.approx(0.25 * n)
    assert s["weight_top10"] == pytest.approx(0.5)


def test_weight_stats_single_position() -> None:
    s = weight_stats(torch.ones(3, 1, 1, 1))
    assert s == {"weight_entropy": 1.0, "weight_max_mean": 1.0, "weight_top10": 1.0}
