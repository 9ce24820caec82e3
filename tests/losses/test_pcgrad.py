"""Combining the gradients of the activation and embedding terms (gradw.losses.pcgrad)."""

import numpy as np
import pytest
import torch

from gradw.losses.pcgrad import combine_gradients


def _split(vector: list[float]) -> list[torch.Tensor]:
    """A 5-vector as two 'parameters' of shapes (2,) and (3,) (float64)."""
    v = torch.tensor(vector, dtype=torch.float64)
    return [v[:2].clone(), v[2:].clone()]


def test_agreeing_gradients_are_summed():
    a, b = _split([1, 2, 0, 1, 0]), _split([1, 0, 1, 0, 0])
    combined, stats = combine_gradients(a, b, "project")
    np.testing.assert_allclose(torch.cat(combined).numpy(), [2, 2, 1, 1, 0])
    assert stats["grad_conflict"] == 0.0
    assert stats["grad_cosine"] == pytest.approx(1 / np.sqrt(6 * 2))


def test_conflicting_gradients_are_projected_onto_each_others_normal_plane():
    ga, gb = np.array([1.0, 0, 0, 2, 0]), np.array([-1.0, 1, 0, 0, 0])
    combined, stats = combine_gradients(_split(list(ga)), _split(list(gb)), "project")
    dot = ga @ gb  # -1
    expected = (ga - dot / (gb @ gb) * gb) + (gb - dot / (ga @ ga) * ga)  # by hand: PCGrad's rule
    np.testing.assert_allclose(torch.cat(combined).numpy(), expected, atol=1e-12)
    # worked out: g_a' = (0.5, 0.5, 0, 2, 0), g_b' = (-0.8, 1, 0, 0.4, 0)
    np.testing.assert_allclose(expected, [-0.3, 1.5, 0, 2.4, 0], atol=1e-12)
    assert stats["grad_conflict"] == 1.0
    assert stats["grad_cosine"] == pytest.approx(dot / np.sqrt((ga @ ga) * (gb @ gb)))
    # each projected part is orthogonal to the other term: neither undoes the other to first order
    pa = ga - dot / (gb @ gb) * gb
    assert abs(pa @ gb) < 1e-12
    # "none" is the plain sum even when they conflict
    plain, stats = combine_gradients(_split(list(ga)), _split(list(gb)), "none")
    np.testing.assert_allclose(torch.cat(plain).numpy(), ga + gb)
    assert stats["grad_conflict"] == 0.0 and stats["grad_cosine"] < 0


def test_a_parameter_reached_by_one_term_only_and_bad_input():
    a = [torch.ones(2), None]
    b = [-torch.ones(2), torch.ones(3)]
    combined, stats = combine_gradients(a, b, "project")
    assert stats["grad_conflict"] == 1.0
    assert combined[1].shape == (3,)  # the missing gradient counts as zeros
    zero, stats = combine_gradients([torch.zeros(2)], [torch.ones(2)], "project")
    assert stats == {"grad_cosine": 0.0, "grad_conflict": 0.0}
    torch.testing.assert_close(zero[0], torch.ones(2))
    with pytest.raises(ValueError, match="unknown conflict mode 'pcgrad'"):
        combine_gradients(a, b, "pcgrad")
    with pytest.raises(ValueError, match="differ in length"):
        combine_gradients(a, b[:1])
    with pytest.raises(ValueError, match=r"parameter 0: gradient shapes differ: \(2,\) vs \(3,\)"):
        combine_gradients([torch.ones(2)], [torch.ones(3)])
    with pytest.raises(ValueError, match="parameter 0 gets a gradient from neither term"):
        combine_gradients([None], [None])
