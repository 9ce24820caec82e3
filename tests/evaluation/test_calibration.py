"""Score calibration (logistic regression into LLRs) and Cllr / min Cllr / actual DCF."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gradw.evaluation.calibration import (
    Calibration,
    act_dcf,
    bayes_threshold,
    calibration_metrics,
    cllr,
    fit_calibration,
    min_cllr,
    optimal_llrs,
    pav,
    threshold_record,
)


def _gaussian_trials(n: int, seed: int = 0, mu=(0.1, 0.6), sigma: float = 0.15):
    """Non-target scores N(mu0, sigma), target scores N(mu1, sigma): the true LLR is affine."""
    rng = np.random.default_rng(seed)
    labels = np.r_[np.zeros(n), np.ones(n)].astype(int)
    scores = np.where(labels == 1, mu[1], mu[0]) + sigma * rng.standard_normal(2 * n)
    scale = (mu[1] - mu[0]) / sigma**2
    offset = -(mu[1] ** 2 - mu[0] ** 2) / (2 * sigma**2)
    return scores, labels, scale, offset


def test_fit_recovers_the_true_llr_of_gaussian_scores() -> None:
    scores, labels, scale, offset = _gaussian_trials(20_000)
    cal = fit_calibration(scores, labels)
    assert cal.scale == pytest.approx(scale, rel=0.03)
    assert cal.offset == pytest.approx(offset, abs=0.03 * abs(offset))
    assert (cal.n_target, cal.n_nontarget) == (20_000, 20_000)


def test_the_fit_minimises_the_prior_weighted_cross_entropy() -> None:
    scores, labels, *_ = _gaussian_trials(500, seed=1)
    labels[:40] = 1  # some overlap and an unbalanced set
    tar, non = labels == 1, labels == 0
    for prior in (0.5, 0.1):
        cal = fit_calibration(scores, labels, prior=prior)

        def objective(a: float, b: float, prior: float = prior) -> float:
            llr = a * scores + b + math.log(prior / (1 - prior))
            return prior * np.logaddexp(0, -llr[tar]).mean() + (1 - prior) * np.logaddexp(0, llr[non]).mean()

        best = objective(cal.scale, cal.offset)
        for da, db in ((0.05, 0), (-0.05, 0), (0, 0.02), (0, -0.02)):
            assert objective(cal.scale * (1 + da), cal.offset + db) > best


def test_cllr_reference_values() -> None:
    labels = np.array([1, 1, 0, 0, 0])
    assert cllr(np.zeros(5), labels) == pytest.approx(1.0)  # says nothing: 1 bit
    assert cllr(np.array([50.0, 50, -50, -50, -50]), labels) == pytest.approx(0.0, abs=1e-12)
    assert cllr(np.array([np.inf, np.inf, -np.inf, -np.inf, -np.inf]), labels) == 0.0
    llr = np.array([1.0, -0.5, 0.3, -2.0, 0.0])
    by_hand = 0.5 * (
        (math.log2(1 + math.exp(-1.0)) + math.log2(1 + math.exp(0.5))) / 2
        + (math.log2(1 + math.exp(0.3)) + math.log2(1 + math.exp(-2.0)) + 1.0) / 3
    )
    assert cllr(llr, labels) == pytest.approx(by_hand, rel=1e-12)


def test_pav_and_optimal_llrs() -> None:
    assert pav(np.array([0, 1, 0, 1, 1])).tolist() == [0.0, 0.5, 0.5, 1.0, 1.0]
    assert pav(np.array([1, 0, 0])).tolist() == pytest.approx([1 / 3] * 3)
    # tied scores share one value, whatever the order of their labels
    scores = np.array([0.1, 0.5, 0.5, 0.9])
    a = optimal_llrs(scores, np.array([0, 1, 0, 1]))
    b = optimal_llrs(scores, np.array([0, 0, 1, 1]))
    assert a[1] == a[2] and b[1] == b[2] and a[1] == pytest.approx(b[1])


def test_min_cllr_is_a_lower_bound_and_ignores_monotonic_maps() -> None:
    scores, labels, *_ = _gaussian_trials(300, seed=2)
    fitted = fit_calibration(scores, labels)
    low = min_cllr(scores, labels)
    assert 0.0 < low <= cllr(fitted.llr(scores), labels) + 1e-12
    for a, b in ((1.0, 0.0), (3.0, -1.0), (0.5, 2.0)):
        assert low <= cllr(a * scores + b, labels) + 1e-12
    assert min_cllr(np.exp(5 * scores), labels) == pytest.approx(low, rel=1e-12)
    # a calibrated system on its own fit trials loses little to the monotonic optimum
    assert cllr(fitted.llr(scores), labels) - low < 0.05


def test_bayes_threshold_and_act_dcf_by_hand() -> None:
    assert bayes_threshold(0.5) == 0.0
    assert bayes_threshold(0.01) == pytest.approx(math.log(99))
    assert bayes_threshold(0.5, c_miss=10) == pytest.approx(-math.log(10))
    llr = np.array([5.0, 3.0, -1.0, 4.7, 0.2, -3.0])
    labels = np.array([1, 1, 1, 0, 0, 0])
    # p = 0.01: accept when llr >= log(99) = 4.595: two misses (3, -1), one false alarm (4.7)
    p_miss, p_fa = 2 / 3, 1 / 3
    expected = (0.01 * p_miss + 0.99 * p_fa) / 0.01
    assert act_dcf(llr, labels, 0.01) == pytest.approx(expected)
    # p = 0.5: accept when llr >= 0: one miss (-1), two false alarms (4.7, 0.2)
    assert act_dcf(llr, labels, 0.5) == pytest.approx((0.5 * 1 / 3 + 0.5 * 2 / 3) / 0.5)


def test_score_threshold_is_where_the_llr_meets_the_bayes_threshold() -> None:
    cal = Calibration(scale=12.0, offset=-4.0)
    for p in (0.5, 0.05, 0.01):
        t = cal.score_threshold(p)
        assert cal.llr(np.array([t]))[0] == pytest.approx(bayes_threshold(p))
    with pytest.raises(ValueError, match="does not order"):
        Calibration(scale=-1.0, offset=0.0).score_threshold()


def test_quality_measures_enter_as_linear_terms() -> None:
    rng = np.random.default_rng(3)
    n = 20_000
    labels = rng.integers(0, 2, n)
    quality = rng.uniform(0, 1, n)  # e.g. a normalised SNR: better quality separates more
    scores = np.where(labels == 1, 0.6, 0.1) + (0.25 - 0.15 * quality) * rng.standard_normal(n)
    shifted = scores + 0.3 * quality  # a quality-dependent shift of every score
    plain = fit_calibration(shifted, labels)
    aware = fit_calibration(shifted, labels, quality=quality[:, None], quality_names=("snr",))
    assert aware.quality_weights[0] < 0  # the shift is taken back out
    assert cllr(aware.llr(shifted, quality[:, None]), labels) < cllr(plain.llr(shifted), labels) - 0.02
    with pytest.raises(ValueError, match="needs the quality measures snr"):
        aware.llr(shifted)
    with pytest.raises(ValueError, match="names"):
        fit_calibration(shifted, labels, quality=quality[:, None])


def test_round_trip_through_a_weights_only_checkpoint(tmp_path) -> None:
    cal = fit_calibration(*_gaussian_trials(200)[:2], fitted_on="validation: 2 conditions")
    torch.save({"calibration": cal.to_dict()}, tmp_path / "c.pt")
    back = Calibration.from_dict(torch.load(tmp_path / "c.pt", weights_only=True)["calibration"])
    assert back == cal


def test_calibration_metrics_keys() -> None:
    scores, labels, *_ = _gaussian_trials(100)
    assert set(calibration_metrics(scores, labels, None)) == {"min_cllr"}
    metrics = calibration_metrics(scores, labels, fit_calibration(scores, labels))
    assert set(metrics) == {"min_cllr", "cllr", "act_dcf_0.01", "act_dcf_0.05"}
    assert metrics["min_cllr"] <= metrics["cllr"]


def _two_conditions(n: int, seed: int):
    """Trials of a clean condition (side SNRs near 15 dB: scores far apart) and of a noisy one
    (near -10 dB: scores close together and shifted): the best LLR's slope and offset both
    depend on the quality. Returns scores, labels, (N, 1) SNRs of each side, condition index."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 2 * n)
    noisy = np.r_[np.zeros(n), np.ones(n)].astype(bool)
    centre = np.where(noisy, np.where(labels == 1, 0.38, 0.3), np.where(labels == 1, 0.8, 0.1))
    scores = centre + np.where(noisy, 0.12, 0.1) * rng.standard_normal(2 * n)
    snr = np.where(noisy, -10.0, 15.0)[:, None]
    return scores, labels, snr + rng.normal(0, 1, (2 * n, 1)), snr + rng.normal(0, 1, (2 * n, 1)), noisy


def test_quality_functions_fit_a_map_per_condition() -> None:
    from gradw.evaluation.quality import QualityFunctions

    scores, labels, enroll, test, noisy = _two_conditions(4000, seed=4)
    functions = QualityFunctions.build(["snr_percentile"])
    plain = fit_calibration(scores, labels)
    aware = fit_calibration(
        scores,
        labels,
        quality=functions.matrix(scores, enroll, test),
        quality_names=functions.names,
    )
    from dataclasses import replace

    aware = replace(aware, quality_functions=functions.to_dict())
    assert aware.measures == ("snr_percentile",)
    llr = aware.trial_llr(scores, enroll, test)
    assert llr == pytest.approx(aware.llr(scores, functions.matrix(scores, enroll, test)))
    for part in (noisy, ~noisy):  # better in each condition than one map for both
        low = min_cllr(scores[part], labels[part])
        assert cllr(llr[part], labels[part]) - low < 0.03
        assert cllr(llr[part], labels[part]) < cllr(plain.llr(scores[part]), labels[part]) - 0.02
    with pytest.raises(ValueError, match="needs the quality measures snr_percentile"):
        aware.trial_llr(scores)
    # the threshold moves with the quality: where the trial's LLR is 0
    for snr in (15.0, -10.0):
        side = np.array([snr])
        t = aware.score_threshold(enroll=side, test=side)
        assert aware.trial_llr([t], side[None], side[None])[0] == pytest.approx(0.0, abs=1e-9)
    assert aware.score_threshold(enroll=np.array([15.0]), test=np.array([15.0])) != pytest.approx(
        aware.score_threshold(enroll=np.array([-10.0]), test=np.array([-10.0])), abs=0.01
    )
    with pytest.raises(ValueError, match="give its measures"):
        aware.score_threshold()
    # stored and read back with its functions; results and reports state its thresholds by SNR
    back = Calibration.from_dict(aware.to_dict())
    assert back == aware and back.trial_llr(scores, enroll, test) == pytest.approx(llr)
    record = threshold_record(aware)
    assert record["threshold"] is None and set(record["thresholds_by_snr"]) == {"15", "10", "5", "0"}
    assert threshold_record(plain) == {"threshold": pytest.approx(plain.score_threshold())}
    metrics = calibration_metrics(scores, labels, aware, sides=(enroll, test))
    assert metrics["cllr"] == pytest.approx(cllr(llr, labels))


def test_a_flat_map_has_no_threshold_and_an_old_record_still_loads() -> None:
    assert Calibration(scale=0.0, offset=-1.0).score_threshold() == math.inf
    assert Calibration(scale=0.0, offset=1.0).score_threshold() == -math.inf
    old = {"scale": 10.0, "offset": -5.0, "prior": 0.5, "fitted_on": "validation", "extra": {"scorer": "x|1"}}
    loaded = Calibration.from_dict(old)  # written before quality functions existed
    assert loaded.measures == () and loaded.functions is None
    assert loaded.trial_llr([0.5]) == pytest.approx([0.0])


def test_calibration_for_checks_the_scorer_and_the_version() -> None:
    from gradw.evaluation.calibration import calibration_for
    from gradw.evaluation.quality import QualityFunctions

    functions = QualityFunctions.build(["snr_wada"])
    stored = Calibration(
        scale=1.0,
        offset=0.0,
        quality_names=functions.names,
        quality_weights=(0.0,) * 4,
        extra={"scorer": "campplus|abc"},
        quality_functions=functions.to_dict(),
    ).to_dict()
    assert calibration_for(stored, "campplus|abc") is not None
    assert calibration_for(stored, "campplus|other") is None
    assert calibration_for(stored, None) is not None  # an adapted network's own calibration
    assert (
        calibration_for({**stored, "extra": {"scorer": "resnet-tiny|random-0"}}, "resnet-tiny|random-0")
        is None
    )
    stale = {**stored, "quality_functions": {**stored["quality_functions"], "version": 99}}
    with pytest.raises(ValueError, match="version 99"):
        calibration_for(stale, "campplus|abc")


def test_the_loss_floor_of_a_perfect_calibration() -> None:
    from gradw.evaluation.calibration import calibration_loss_floor

    # one target and one non-target, uninformative scores: half the draws rank them right (min
    # Cllr 0), half wrong (PAV pools them: min Cllr 1), while the exact LLR 0 costs 1 bit
    assert calibration_loss_floor(50.0, 1, 1, draws=4000) == pytest.approx(0.5, abs=0.03)
    assert calibration_loss_floor(0.0, 90, 810) == 0.0
    small = calibration_loss_floor(10.0, 90, 810)
    assert 0.02 < small < 0.08
    assert calibration_loss_floor(10.0, 90, 810) == small  # a fixed seed
    assert calibration_loss_floor(10.0, 900, 8100, draws=20) < small / 3
    with pytest.raises(ValueError, match="both classes"):
        calibration_loss_floor(10.0, 0, 10)


def test_pooled_calibration_judges_the_llrs_as_one_set() -> None:
    from gradw.evaluation.calibration import pooled_calibration

    rng = np.random.default_rng(3)
    labels = np.r_[np.ones(4000, bool), np.zeros(4000, bool)]
    scores = rng.standard_normal(labels.size) + 2.0 * labels
    exact = 2.0 * scores - 2.0  # the true LLR of these scores
    right = pooled_calibration(exact, labels)
    assert right["cllr"] == pytest.approx(cllr(exact, labels))
    assert right["min_cllr"] == pytest.approx(min_cllr(exact, labels))
    assert 0.0 <= right["loss"] < 0.01 and right["n_trials"] == labels.size
    # two halves whose LLRs are off by +2 and -2 bits of evidence: the pooled set pays for it
    half = np.arange(labels.size) % 2 == 0
    shifted = exact + np.where(half, 2.0, -2.0)
    assert pooled_calibration(shifted, labels)["loss"] > 0.1
    # infinite LLRs on the right side are allowed
    assert math.isfinite(
        pooled_calibration(np.r_[np.inf, -np.inf, exact], np.r_[True, False, labels])["loss"]
    )
