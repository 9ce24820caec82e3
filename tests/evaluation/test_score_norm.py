"""AS-norm against a cohort, and a calibration that normalises its scores before the map."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradw.evaluation.calibration import (
    Calibration,
    calibration_for,
    calibration_metrics,
    cllr,
    fit_calibration,
    min_cllr,
    threshold_record,
)
from gradw.evaluation.score_norm import ScoreNorm, asnorm, asnorm_scores, cohort_stats


def _loop_asnorm(enroll, test, cohort, top_n):
    """AS-norm one trial at a time, by sorting: the definition, written independently."""
    out = []
    for e, t in zip(enroll, test, strict=True):
        raw = float(e @ t / (np.linalg.norm(e) * np.linalg.norm(t)))
        sides = []
        for x in (e, t):
            against = sorted(
                (float(x @ c / (np.linalg.norm(x) * np.linalg.norm(c))) for c in cohort), reverse=True
            )
            top = against[:top_n]
            mean = sum(top) / top_n
            std = (sum((v - mean) ** 2 for v in top) / top_n) ** 0.5
            sides.append((raw - mean) / std)
        out.append(0.5 * (sides[0] + sides[1]))
    return np.array(out)


@pytest.mark.parametrize("top_n", [2, 5, 17])
def test_asnorm_matches_a_trial_by_trial_loop(top_n: int) -> None:
    rng = np.random.default_rng(0)
    enroll, test, cohort = rng.normal(size=(9, 12)), rng.normal(size=(9, 12)), 3 * rng.normal(size=(17, 12))
    raw = np.sum(enroll * test, axis=1) / np.linalg.norm(enroll, axis=1) / np.linalg.norm(test, axis=1)
    got = asnorm_scores(raw, enroll, test, cohort, top_n)
    np.testing.assert_allclose(got, _loop_asnorm(enroll, test, cohort, top_n), rtol=1e-10, atol=1e-12)
    norm = ScoreNorm("asnorm", top_n, cohort)
    np.testing.assert_allclose(norm.normalise(raw, enroll, test), got, rtol=1e-6)  # a float32 cohort


def test_cohort_stats_by_hand() -> None:
    cohort = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.6, 0.8]])
    mean, std = cohort_stats(np.array([[2.0, 0.0]]), cohort, 2)  # scores 1, 0, -1, 0.6: top 2 = 1, 0.6
    assert mean[0] == pytest.approx(0.8) and std[0] == pytest.approx(0.2)
    assert asnorm([0.9], (mean, std), (np.array([0.5]), np.array([0.1])))[0] == pytest.approx(
        0.5 * (0.5 + 4.0)
    )


def test_a_speaker_population_offset_is_removed() -> None:
    """Two populations, one whose embeddings all share a direction (its non-target pairs score
    higher): raw non-target scores need two thresholds, AS-normalised ones nearly line up."""
    rng = np.random.default_rng(1)
    shared = rng.normal(size=32)
    spread = rng.normal(size=(60, 32))  # population a: 30 non-target pairs
    close = rng.normal(size=(60, 32)) + 1.2 * shared  # population b
    cohort = np.vstack([rng.normal(size=(100, 32)), rng.normal(size=(100, 32)) + 1.2 * shared])

    def cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)

    raw_a, raw_b = cos(spread[:30], spread[30:]), cos(close[:30], close[30:])
    norm_a = asnorm_scores(raw_a, spread[:30], spread[30:], cohort, 20)
    norm_b = asnorm_scores(raw_b, close[:30], close[30:], cohort, 20)
    raw_gap = (raw_b.mean() - raw_a.mean()) / raw_a.std()  # in units of the spread of a's scores
    norm_gap = (norm_b.mean() - norm_a.mean()) / norm_a.std()
    assert raw_gap > 2.0
    assert abs(norm_gap) < 0.5 * raw_gap


@pytest.mark.parametrize("top_n", [0, 1, -3, 5, 2.5, True])
def test_bad_top_n_and_shapes_are_refused(top_n) -> None:
    cohort = np.eye(4)
    with pytest.raises(ValueError, match=r"top_n must be an integer in \[2, 4\]"):
        cohort_stats(np.ones((2, 4)), cohort, top_n)
    with pytest.raises(ValueError, match="dimension 3 but a cohort of dimension 4"):
        cohort_stats(np.ones((2, 3)), cohort, 2)
    with pytest.raises(ValueError, match="empty"):
        cohort_stats(np.ones((2, 4)), np.zeros((0, 4)), 1)
    with pytest.raises(ValueError, match="unknown score normalisation 'znorm'"):
        ScoreNorm("znorm", 2, cohort)
    with pytest.raises(ValueError, match=r"top_n must be in \[2, 4\]"):
        ScoreNorm("asnorm", 9, cohort)


def _normalised_fit(seed: int = 0):
    """Trials of two speaker populations, a cohort, and a calibration fitted on normalised scores."""
    rng = np.random.default_rng(seed)
    cohort = rng.normal(size=(40, 8)).astype(np.float32)
    enroll, test = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    labels = np.arange(400) % 2 == 0
    test[labels] = enroll[labels] + 0.7 * rng.normal(size=(200, 8))
    raw = np.sum(enroll * test, axis=1) / np.linalg.norm(enroll, axis=1) / np.linalg.norm(test, axis=1)
    norm = ScoreNorm("asnorm", 10, cohort, per_speaker=True, described="40 cohort speakers")
    base = fit_calibration(norm.normalise(raw, enroll, test), labels)
    calibration = Calibration(base.scale, base.offset, fitted_on="x", score_norm=norm)
    return calibration, raw, enroll, test, labels


def test_a_normalising_calibration_maps_the_normalised_score() -> None:
    calibration, raw, enroll, test, labels = _normalised_fit()
    normalised = calibration.score_norm.normalise(raw, enroll, test)
    llr = calibration.trial_llr(raw, embeddings=(enroll, test))
    np.testing.assert_allclose(llr, calibration.scale * normalised + calibration.offset)
    with pytest.raises(ValueError, match="give the embeddings of both sides"):
        calibration.trial_llr(raw)
    metrics = calibration_metrics(raw, labels, calibration, embeddings=(enroll, test))
    assert metrics["cllr"] == pytest.approx(cllr(llr, labels))
    assert metrics["min_cllr"] == pytest.approx(min_cllr(raw, labels))
    assert metrics["min_cllr_norm"] == pytest.approx(min_cllr(normalised, labels))
    assert 0.0 <= metrics["eer_norm"] <= 50.0
    record = threshold_record(calibration)
    assert record["normalised_by"] == "AS-norm (top 10 of a cohort of 40 speaker means)"
    assert calibration.llr([record["threshold"]])[0] == pytest.approx(0.0, abs=1e-9)


def test_the_cohort_round_trips_through_a_weights_only_checkpoint(tmp_path) -> None:
    calibration, raw, enroll, test, _ = _normalised_fit()
    torch.save({"calibration": calibration.to_dict()}, tmp_path / "c.pt")
    stored = torch.load(tmp_path / "c.pt", weights_only=True)["calibration"]
    assert isinstance(stored["score_norm"]["cohort"], torch.Tensor)
    assert stored["score_norm"]["cohort"].dtype == torch.float32 and tuple(
        stored["score_norm"]["cohort"].shape
    ) == (40, 8)
    back = Calibration.from_dict(stored)
    np.testing.assert_array_equal(back.score_norm.cohort, calibration.score_norm.cohort)
    assert (back.score_norm.top_n, back.score_norm.per_speaker) == (10, True)
    np.testing.assert_allclose(
        back.trial_llr(raw, embeddings=(enroll, test)), calibration.trial_llr(raw, embeddings=(enroll, test))
    )
    record = calibration.record()  # for results.json: the shape, not the array
    assert record["score_norm"]["cohort_shape"] == [40, 8] and "cohort" not in record["score_norm"]
    # an old record without the key: no normalisation, as before
    old = {k: v for k, v in calibration.to_dict().items() if k != "score_norm"}
    assert Calibration.from_dict(old).score_norm is None


def test_a_cohort_of_another_dimension_is_refused() -> None:
    calibration, *_ = _normalised_fit()
    stored = calibration.to_dict()
    assert calibration_for(stored, None, 8) is not None
    with pytest.raises(
        ValueError, match="cohort of dimension 8, but the speaker network's embeddings have 192"
    ):
        calibration_for(stored, None, 192)
