"""The suppression penalty: values against an independent loop, invariances, gradients, errors."""

import math

import numpy as np
import pytest
import torch

from gradw.losses.objective import EnhancementObjective
from gradw.losses.suppression import agreement, suppression_penalty_per_item


def _loop_penalty(mask: np.ndarray, clean: np.ndarray, noisy: np.ndarray, agree_db: float) -> list[float]:
    """The definition written cell by cell, in float64."""
    out = []
    for b in range(mask.shape[0]):
        total, count = 0.0, 0
        for f in range(mask.shape[1]):
            logs = [math.log(m + 1e-6) for m in mask[b, f]]
            band_mean = sum(logs) / len(logs)
            for t, log_m in enumerate(logs):
                ratio = 10 * math.log10((noisy[b, f, t] + 1e-10) / (clean[b, f, t] + 1e-10))
                if abs(ratio) < agree_db:
                    count += 1
                    total += max(0.0, band_mean - log_m)
        out.append(total / max(count, 1))
    return out


def test_penalty_equals_the_cell_by_cell_definition(make_batch):
    data = make_batch(batch=3, n_mels=6, frames=9, seed=4, snr_scale=0.3)
    mask = torch.rand(3, 6, 9, generator=torch.Generator().manual_seed(1)) * 0.9 + 0.05
    got = suppression_penalty_per_item(mask, data.clean, data.noisy, agree_db=3.0)
    agree = agreement(data.clean, data.noisy, 3.0)
    assert 0 < float(agree.mean()) < 1  # the batch has agreeing and noise-dominated cells
    want = _loop_penalty(mask.double().numpy(), data.clean.double().numpy(), data.noisy.double().numpy(), 3.0)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5)


def test_a_mask_constant_over_time_costs_nothing(make_batch):
    data = make_batch(batch=2, n_mels=5, frames=7, snr_scale=0.3)
    per_band = torch.tensor([0.2, 0.5, 0.9, 1.0, 0.05]).view(1, 5, 1).expand(2, 5, 7)
    assert torch.equal(suppression_penalty_per_item(per_band, data.clean, data.noisy), torch.zeros(2))


def test_only_agreeing_cells_are_charged():
    clean = torch.ones(1, 1, 4)
    noisy = torch.tensor([[[1.0, 1.0, 100.0, 100.0]]])  # cells 2 and 3: noise 20 dB above speech
    mask = torch.tensor([[[1.0, 1.0, 0.01, 0.01]]])  # suppress only the noisy cells: no cost
    assert float(suppression_penalty_per_item(mask, clean, noisy)) == 0.0
    mask = torch.tensor([[[0.01, 1.0, 1.0, 1.0]]])  # suppress an intact cell: charged
    band_mean = (math.log(0.01 + 1e-6) + 3 * math.log(1 + 1e-6)) / 4
    want = (band_mean - math.log(0.01 + 1e-6)) / 2  # two agreeing cells, one below the mean
    assert float(suppression_penalty_per_item(mask, clean, noisy)) == pytest.approx(want, rel=1e-6)
    assert float(suppression_penalty_per_item(mask, clean, 100 * clean)) == 0.0  # nothing agrees


def test_penalty_pushes_suppressed_intact_cells_up(make_batch):
    data = make_batch(batch=2, n_mels=6, frames=8, snr_scale=0.3)
    mask = torch.full((2, 6, 8), 0.5)
    mask[:, :, 0] = 0.1
    mask.requires_grad_(True)
    suppression_penalty_per_item(mask, data.clean, data.noisy).sum().backward()
    agree = agreement(data.clean, data.noisy)
    first, agreeing = mask.grad[:, :, 0], agree[:, :, 0] > 0
    assert bool((first[agreeing] < 0).all())  # descent raises the suppressed intact cells
    assert bool((first[~agreeing] == 0).all())  # and leaves noise-dominated cells alone


def test_penalty_refuses_bad_input():
    x = torch.ones(1, 2, 3)
    with pytest.raises(ValueError, match="same shape"):
        suppression_penalty_per_item(x, x, torch.ones(1, 2, 4))
    with pytest.raises(ValueError, match="agree_db"):
        suppression_penalty_per_item(x, x, x, agree_db=0.0)


@pytest.mark.parametrize("scheme", ["equal", "gradw-norm", "spectral"])
def test_objective_adds_the_weighted_penalty(make_speaker, make_batch, scheme):
    speaker = make_speaker()
    data = make_batch(snr_scale=0.3)
    mask = torch.rand(data.clean.shape, generator=torch.Generator().manual_seed(3)) * 0.9 + 0.05
    plain = EnhancementObjective(speaker, scheme)(mask, data.clean, data.noisy, data.labels)
    kept = EnhancementObjective(speaker, scheme, keep_weight=7.0)(mask, data.clean, data.noisy, data.labels)
    penalty = suppression_penalty_per_item(mask, data.clean, data.noisy).mean()
    assert float(penalty) > 0
    torch.testing.assert_close(kept.loss, plain.loss + 7.0 * penalty)
    assert kept.stats["keep_term"] == pytest.approx(7.0 * float(penalty), rel=1e-5)
    assert plain.stats["keep_term"] == 0.0
    torch.testing.assert_close(kept.terms["feature"], kept.loss)  # the penalty goes with the feature term
    with pytest.raises(ValueError, match="keep_weight"):
        EnhancementObjective(speaker, scheme, keep_weight=-1.0)
