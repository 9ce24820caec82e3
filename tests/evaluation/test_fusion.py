"""Quality-aware fusion: the weight function, the fused embedding, the stored record and the fit."""

import math

import numpy as np
import pytest

from gradw.evaluation.fusion import (
    CONSTANT_WEIGHTS,
    FusionError,
    FusionWeights,
    candidates,
    fit_fusion,
    fuse_embeddings,
    fusion_weight,
    mean_eer,
)
from gradw.evaluation.quality import QUALITY_VERSION


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_the_weight_is_a_logistic_of_the_clipped_snr_by_hand():
    q = np.array([-20.0, 0.0, 5.0, 30.0])
    # clipped to [-10, 15]: -10, 0, 5, 15; a + b q = 2.5, 0.5, -0.5, -2.5
    expected = [1 / (1 + math.exp(-z)) for z in (2.5, 0.5, -0.5, -2.5)]
    np.testing.assert_allclose(fusion_weight(q, 0.5, -0.2, -10.0, 15.0), expected, rtol=1e-12)
    assert fusion_weight(np.array([1e6]), 0.0, 1.0, -1e9, 1e9)[0] == 1.0  # no overflow
    assert fusion_weight(np.array([-1e6]), 0.0, 1.0, -1e9, 1e9)[0] == 0.0


def test_the_fused_embedding_by_hand_and_at_either_end():
    rng = np.random.default_rng(0)
    e_sys, e_base = rng.standard_normal((3, 8)), 5 * rng.standard_normal((3, 8))  # not unit length
    w = np.array([0.25, 0.5, 0.9])
    expected = _unit(w[:, None] * _unit(e_sys) + (1 - w[:, None]) * _unit(e_base))
    np.testing.assert_allclose(fuse_embeddings(e_sys, e_base, w), expected, atol=1e-6)
    np.testing.assert_allclose(fuse_embeddings(e_sys, e_base, 1.0), _unit(e_sys), atol=1e-6)
    np.testing.assert_allclose(fuse_embeddings(e_sys, e_base, 0.0), _unit(e_base), atol=1e-6)
    q = np.array([-3.0, 0.0, 12.0])
    saturated_high, saturated_low = FusionWeights(30.0, 0.0), FusionWeights(-30.0, 0.0)
    np.testing.assert_allclose(saturated_high.fuse(e_sys, e_base, q), _unit(e_sys), atol=1e-6)
    np.testing.assert_allclose(saturated_low.fuse(e_sys, e_base, q), _unit(e_base), atol=1e-6)
    # a = b = 0 is @fuse: the plain average of the unit embeddings
    np.testing.assert_allclose(
        FusionWeights(0.0, 0.0).fuse(e_sys, e_base, q), _unit(_unit(e_sys) + _unit(e_base)), atol=1e-6
    )


def test_the_record_round_trips_and_names_the_identity():
    weights = FusionWeights(0.7, -0.15, -5.0, 10.0, extra={"fitted_on": "x"})
    back = FusionWeights.from_dict(weights.to_dict())
    assert back == weights and back.extra == {"fitted_on": "x"}
    assert weights.identity == f"qfuse:snr_percentile-v{QUALITY_VERSION}:a=0.7,b=-0.15,q=[-5.0,10.0]"
    assert FusionWeights(0.7, -0.1, -5.0, 10.0).identity != weights.identity
    assert FusionWeights(0.7, -0.15, -6.0, 10.0).identity != weights.identity
    assert weights.describe() == "w = sigmoid(0.700 + -0.150 * clip(snr_percentile, -5, 10 dB))"


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"a": None}, r"^extra\.fusion: missing key\(s\) a$"),
        ({"b": float("nan")}, r"^extra\.fusion: fusion\.b: expected a finite number, got nan$"),
        ({"a": "high"}, r"^extra\.fusion: fusion\.a: expected a finite number, got 'high'$"),
        ({"lo": 20.0}, r"^extra\.fusion: fusion\.lo, fusion\.hi: expected lo < hi, got \[20\.0, 15\.0\]$"),
        ({"measure": "snr_wada"}, r"fusion\.measure: 'snr_wada' is not known"),
        ({"version": QUALITY_VERSION + 1}, r"fusion\.version: .* fit it again \(gradw fuse\)$"),
    ],
)
def test_a_bad_record_is_refused_naming_the_key(change: dict, match: str):
    data = FusionWeights(0.5, -0.2, -10.0, 15.0).to_dict()
    for key, value in change.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    with pytest.raises(FusionError, match=match):
        FusionWeights.from_dict(data, "extra.fusion")
    with pytest.raises(FusionError, match="^extra.fusion: expected a mapping, got list$"):
        FusionWeights.from_dict([1, 2], "extra.fusion")


def test_the_grid_tries_fuse_first_then_the_constants_then_slopes():
    grid = candidates(-2.0, 3.0)
    assert grid[0] == (0.0, 0.0)  # @fuse
    constants = grid[: len(CONSTANT_WEIGHTS)]
    assert all(b == 0.0 for _, b in constants)
    weights = fusion_weight(np.zeros(len(constants)), np.array([a for a, _ in constants]), 0.0, -2.0, 3.0)
    np.testing.assert_allclose(weights, CONSTANT_WEIGHTS, atol=1e-12)
    slopes = grid[len(CONSTANT_WEIGHTS) :]
    assert len(slopes) == 6 * 2 * 6  # 6 slopes, both signs, midpoints -2..3 dB
    assert all(b != 0 and -2 - 1e-9 <= -a / b <= 3 + 1e-9 for a, b in slopes)


def _planted(a: float, b: float, seed: int, speakers: int = 40, per: int = 6, dim: int = 64):
    """Embeddings whose best per-utterance weight is ``sigmoid(a + b q)``: both are a speaker
    vector plus independent unit noise, ``c s + sqrt(1 - c^2) u``; averaging two such estimates,
    the weight that maximises the signal against the noise has log-odds
    ``log(c_sys / (1 - c_sys^2)) - log(c_base / (1 - c_base^2))``, set to ``a + b q`` by the
    system's ``c`` (the unenhanced one is fixed at 0.35). Four conditions, q uniform in [-10, 15]."""
    rng = np.random.default_rng(seed)
    spk = _unit(rng.standard_normal((speakers, dim)))
    owner = np.repeat(np.arange(speakers), per)
    q = rng.uniform(-10.0, 15.0, size=(4, owner.size))
    c_base = 0.35
    k = np.exp(a + b * q) * c_base / (1 - c_base**2)
    c_sys = (np.sqrt(1 + 4 * k**2) - 1) / (2 * k)  # c / (1 - c^2) = k

    def side(c: np.ndarray) -> np.ndarray:
        u = _unit(rng.standard_normal((*c.shape, dim)))
        return c[..., None] * spk[owner] + np.sqrt(1 - c**2)[..., None] * u

    e_sys, e_base = side(c_sys), side(np.full_like(c_sys, c_base))
    i, j = np.triu_indices(owner.size, 1)
    target = owner[i] == owner[j]
    keep = np.flatnonzero(target)
    keep = np.sort(np.concatenate([keep, rng.choice(np.flatnonzero(~target), keep.size, replace=False)]))
    return e_sys, e_base, q, np.stack([i[keep], j[keep]], axis=1), target[keep]


@pytest.mark.parametrize(("a", "b", "seed"), [(1.0, -0.3, 0), (1.0, -0.3, 1), (-0.5, 0.2, 0), (-0.5, 0.2, 1)])
def test_the_fit_recovers_a_planted_weight(a: float, b: float, seed: int):
    e_sys, e_base, q, pairs, labels = _planted(a, b, seed)
    fit_a, fit_b, value = fit_fusion(e_sys, e_base, q, pairs, labels, -10.0, 15.0)
    assert np.sign(fit_b) == np.sign(b) and 0.5 <= fit_b / b <= 2.0
    assert abs(-fit_a / fit_b - (-a / b)) <= 2.0  # the midpoint, in dB
    args = (e_sys, e_base, q, pairs, labels)
    assert value == pytest.approx(mean_eer(*args, (fit_a, fit_b, -10.0, 15.0)))
    assert value <= mean_eer(*args, (a, b, -10.0, 15.0)) + 0.5
    alone = min(mean_eer(*args, None), mean_eer(e_base, e_sys, q, pairs, labels, None))
    assert value < mean_eer(*args, (0.0, 0.0, -10.0, 15.0)) - 0.5 and value < alone - 2.0


def test_a_constant_advantage_gives_a_constant_weight_near_the_planted_one():
    e_sys, e_base, q, pairs, labels = _planted(1.0, 0.0, 0)  # best weight sigmoid(1) = 0.73 everywhere
    fit_a, fit_b, _ = fit_fusion(e_sys, e_base, q, pairs, labels, -10.0, 15.0)
    weights = fusion_weight(np.array([-10.0, 0.0, 15.0]), fit_a, fit_b, -10.0, 15.0)
    assert np.all((weights >= 0.6) & (weights <= 0.9)), weights
