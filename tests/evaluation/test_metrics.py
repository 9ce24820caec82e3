"""Tests for gradw.evaluation.metrics against hand-derived and brute-force computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_curve

from gradw.evaluation.bootstrap import bootstrap_ci, paired_bootstrap_diff, paired_seed_diff, summarise
from gradw.evaluation.metrics import det_curve, eer, min_dcf, roc

# --------------------------------------------------------------------------------------------
# Helpers (independent of the implementation)
# --------------------------------------------------------------------------------------------


def brute_force_rates(scores, labels):
    """Pure-Python (threshold, fpr, fnr) list, accepting score >= threshold."""
    tar = [s for s, y in zip(scores, labels, strict=True) if y]
    non = [s for s, y in zip(scores, labels, strict=True) if not y]
    out = []
    for thr in sorted(set(scores)) + [math.inf]:
        fnr = sum(1 for s in tar if s < thr) / len(tar)
        fpr = sum(1 for s in non if s >= thr) / len(non)
        out.append((thr, fpr, fnr))
    return out


def brute_force_min_dcf(scores, labels, p, c_miss, c_fa):
    """Pure-Python normalised minDCF over every threshold."""
    norm_ = min(c_miss * p, c_fa * (1 - p))
    return min(
        (c_miss * p * fnr + c_fa * (1 - p) * fpr) / norm_ for _, fpr, fnr in brute_force_rates(scores, labels)
    )


def make_trials(n_speakers, trials_per_speaker, rng, speaker_sd=0.7, shift=2.0):
    """Synthetic trials with a per-speaker score offset (so speakers matter for the CI)."""
    e = np.repeat(np.arange(n_speakers), trials_per_speaker)
    target = rng.random(e.size) < 0.3
    other = (e + rng.integers(1, n_speakers, e.size)) % n_speakers
    t = np.where(target, e, other)
    offset = rng.normal(0.0, speaker_sd, n_speakers)
    scores = rng.normal(size=e.size) + shift * target + offset[e] * np.where(target, -1.0, 1.0)
    return scores, target, np.array([f"spk{i}" for i in e]), np.array([f"spk{i}" for i in t])


# --------------------------------------------------------------------------------------------
# ROC
# --------------------------------------------------------------------------------------------


def test_roc_matches_brute_force_with_ties():
    rng = np.random.default_rng(1)
    scores = np.round(rng.normal(size=200), 1)  # many ties, including target/non-target ties
    labels = rng.random(200) < 0.4
    fpr, fnr, thr = roc(scores, labels)
    expected = brute_force_rates(scores.tolist(), labels.tolist())
    assert len(thr) == len(set(scores.tolist())) + 1
    np.testing.assert_array_equal(thr, [e[0] for e in expected])
    np.testing.assert_allclose(fpr, [e[1] for e in expected], atol=1e-12)
    np.testing.assert_allclose(fnr, [e[2] for e in expected], atol=1e-12)
    assert np.all(np.diff(fpr) <= 0) and np.all(np.diff(fnr) >= 0)
    assert (fpr[0], fnr[0], fpr[-1], fnr[-1]) == (1.0, 0.0, 0.0, 1.0)


def test_roc_accepts_bool_and_int_labels():
    s = [0.1, 0.4, 0.35, 0.8]
    a = roc(s, [0, 0, 1, 1])
    b = roc(s, [False, False, True, True])
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


# --------------------------------------------------------------------------------------------
# EER
# --------------------------------------------------------------------------------------------


def test_eer_perfectly_separated_is_zero():
    value, thr = eer([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0])
    assert value == 0.0
    assert 0.2 < thr <= 0.8  # a threshold that separates the classes


def test_eer_fully_inverted_is_one():
    value, _ = eer([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0])
    assert value == 1.0


def test_eer_interpolates_on_diagonal_tie_segment():
    # targets {1, 3, 4, 5}, non-targets {0, 2, 3}; the tie at 3 makes a diagonal ROC step.
    # Accept score >= t:
    #   t=2: FNR = 1/4 (target 1),     FPR = 2/3 (2, 3)   -> FNR - FPR = -5/12
    #   t=3: FNR = 1/4,                FPR = 1/3 (3)      -> FNR - FPR = -1/12
    #   t=4: FNR = 2/4 (targets 1, 3), FPR = 0            -> FNR - FPR = +1/2
    # Segment t=3 -> t=4: FPR = 1/3 - u/3, FNR = 1/4 + u/4; equal when u = 1/7, so
    # EER = 1/3 * 6/7 = 2/7 (= 1/4 * 8/7). The nearest-point rule (t=3, |d| = 1/12) would give
    # max(FPR, FNR) = 1/3 or the mean 7/24 instead.
    scores = [1, 3, 4, 5, 0, 2, 3]
    labels = [1, 1, 1, 1, 0, 0, 0]
    value, thr = eer(scores, labels)
    assert value == pytest.approx(2 / 7, abs=1e-15)
    assert thr == 3.0  # the bracketing point nearer the crossing (u = 1/7 < 1/2)


def test_eer_on_vertical_segment_equals_fpr():
    # target {2}, non-targets {1, 3, 4}: t=2 -> (FPR, FNR) = (2/3, 0); t=3 -> (2/3, 1).
    # The vertical segment crosses FNR = FPR at 2/3 (nearest point would say 1 or 5/6).
    value, _ = eer([2, 1, 3, 4], [1, 0, 0, 0])
    assert value == pytest.approx(2 / 3, abs=1e-15)


def test_eer_agrees_with_sklearn_nearest_point_within_one_step():
    rng = np.random.default_rng(7)
    labels = rng.random(5000) < 0.2
    scores = rng.normal(size=5000) + 1.5 * labels
    value, thr = eer(scores, labels)
    fpr, tpr, _ = roc_curve(labels, scores)
    fnr = 1 - tpr
    k = np.nanargmin(np.abs(fnr - fpr))
    step = max(1 / labels.sum(), 1 / (~labels).sum())
    assert abs(value - fpr[k]) <= step
    assert abs(value - fnr[k]) <= step
    assert min(fpr[k], fnr[k]) - 1e-12 <= value <= max(fpr[k], fnr[k]) + 1e-12
    # The returned threshold's operating point is within a step of the EER too.
    assert abs(np.mean(scores[~labels] >= thr) - value) <= step
    assert abs(np.mean(scores[labels] < thr) - value) <= step


def test_eer_invariant_to_monotone_transform_and_order():
    rng = np.random.default_rng(3)
    labels = rng.random(300) < 0.5
    scores = rng.normal(size=300) + labels
    perm = rng.permutation(300)
    base = eer(scores, labels)[0]
    assert eer(np.exp(scores), labels)[0] == pytest.approx(base, abs=1e-12)
    assert eer(scores[perm], labels[perm])[0] == pytest.approx(base, abs=1e-12)


def test_integer_weights_equal_replicated_trials():
    rng = np.random.default_rng(11)
    labels = rng.random(80) < 0.4
    scores = np.round(rng.normal(size=80) + labels, 1)
    w = rng.integers(0, 4, size=80)
    w[0], w[np.flatnonzero(labels)[0]] = 1, 1  # keep both classes
    w[np.flatnonzero(~labels)[0]] = 1
    rep_s, rep_y = np.repeat(scores, w), np.repeat(labels, w)
    assert eer(scores, labels, weights=w)[0] == pytest.approx(eer(rep_s, rep_y)[0], abs=1e-12)
    assert min_dcf(scores, labels, 0.05, weights=w)[0] == pytest.approx(
        min_dcf(rep_s, rep_y, 0.05)[0], abs=1e-12
    )


# --------------------------------------------------------------------------------------------
# minDCF
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "c_miss", "c_fa"), [(0.01, 1, 1), (0.05, 1, 1), (0.5, 1, 1), (0.05, 10, 1), (0.2, 1, 3)]
)
def test_min_dcf_matches_brute_force(p, c_miss, c_fa):
    rng = np.random.default_rng(5)
    labels = rng.random(300) < 0.3
    scores = np.round(rng.normal(size=300) + 1.2 * labels, 2)
    value, thr = min_dcf(scores, labels, p, c_miss, c_fa)
    expected = brute_force_min_dcf(scores.tolist(), labels.tolist(), p, c_miss, c_fa)
    assert value == pytest.approx(expected, abs=1e-12)
    # The threshold reproduces the value.
    fnr = np.mean(scores[labels] < thr)
    fpr = np.mean(scores[~labels] >= thr)
    norm_ = min(c_miss * p, c_fa * (1 - p))
    assert (c_miss * p * fnr + c_fa * (1 - p) * fpr) / norm_ == pytest.approx(value, abs=1e-12)


def test_min_dcf_never_exceeds_one():
    rng = np.random.default_rng(9)
    for trial in range(30):
        n = int(rng.integers(2, 60))
        labels = rng.random(n) < 0.5
        labels[0], labels[1] = True, False
        scores = rng.normal(size=n) - 2.0 * labels * (trial % 2)  # half of them inverted
        for p in (0.001, 0.01, 0.05, 0.5, 0.9):
            assert min_dcf(scores, labels, p)[0] <= 1.0 + 1e-12


def test_min_dcf_fully_inverted_is_one_and_separated_is_zero():
    assert min_dcf([0.0, 0.1, 0.5, 0.6], [1, 1, 0, 0], 0.01)[0] == pytest.approx(1.0)
    assert min_dcf([0.0, 0.1, 0.5, 0.6], [0, 0, 1, 1], 0.01)[0] == 0.0


# --------------------------------------------------------------------------------------------
# DET
# --------------------------------------------------------------------------------------------


def test_det_curve_is_probit_of_roc_and_finite():
    rng = np.random.default_rng(2)
    labels = rng.random(500) < 0.3
    scores = rng.normal(size=500) + labels
    x, y = det_curve(scores, labels)
    fpr, fnr, _ = roc(scores, labels)
    assert np.isfinite(x).all() and np.isfinite(y).all()
    inner = (fpr > 0) & (fpr < 1) & (fnr > 0) & (fnr < 1)
    np.testing.assert_allclose(x[inner], norm.ppf(fpr[inner]))
    np.testing.assert_allclose(y[inner], norm.ppf(fnr[inner]))
    assert x[0] == pytest.approx(norm.ppf(1 - 0.5 / (~labels).sum()))
    x2, _ = det_curve(scores, labels, eps=1e-3)
    assert x2[-1] == pytest.approx(norm.ppf(1e-3))


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [roc, eer, min_dcf, det_curve, summarise])
@pytest.mark.parametrize(
    ("scores", "labels", "match"),
    [
        ([], [], "empty"),
        ([0.1, 0.2], [1, 1], "no non-target"),
        ([0.1, 0.2], [0, 0], "no target"),
        ([0.1, float("nan")], [1, 0], "NaN"),
        ([0.1, 0.2, 0.3], [1, 0], "length mismatch"),
        ([0.1, 0.2], [1, 2], "0/1"),
        ([[0.1, 0.2]], [[1, 0]], "1-D"),
    ],
)
def test_bad_input_raises_value_error(fn, scores, labels, match):
    with pytest.raises(ValueError, match=match):
        fn(scores, labels)


def test_bad_parameters_raise():
    s, y = [0.1, 0.5, 0.3], [0, 1, 1]
    with pytest.raises(ValueError, match="p_target"):
        min_dcf(s, y, p_target=1.0)
    with pytest.raises(ValueError, match="weights"):
        eer(s, y, weights=[1, -1, 1])
    with pytest.raises(ValueError, match="unknown metric"):
        bootstrap_ci(s, y, ["a", "b", "b"], ["a", "b", "b"], metric="auc")
    with pytest.raises(ValueError, match="length mismatch"):
        bootstrap_ci(s, y, ["a", "b"], ["a", "b", "b"])
    with pytest.raises(ValueError, match="both"):
        summarise(s, y, enroll_speakers=["a", "b", "b"])


# --------------------------------------------------------------------------------------------
# Bootstrap
# --------------------------------------------------------------------------------------------


def test_bootstrap_ci_contains_estimate_and_shrinks_with_more_speakers():
    rng = np.random.default_rng(0)
    mean_width = {}
    for n_spk in (12, 150):
        widths = []
        for rep in range(3):
            s, y, e, t = make_trials(n_spk, 60, rng)
            for metric, point in (("eer", eer(s, y)[0]), ("min_dcf", min_dcf(s, y, 0.05)[0])):
                low, high = bootstrap_ci(s, y, e, t, metric, n_boot=200, seed=rep, p_target=0.05)
                assert low <= point <= high
                if metric == "eer":
                    widths.append(high - low)
        mean_width[n_spk] = np.mean(widths)
    # ~12x the speakers: the width should fall roughly like 1/sqrt(12) ~ 0.29.
    assert mean_width[150] < 0.6 * mean_width[12]


def test_bootstrap_is_seeded_and_callable_metric_matches_builtin():
    rng = np.random.default_rng(4)
    s, y, e, t = make_trials(12, 25, rng)
    a = bootstrap_ci(s, y, e, t, "eer", n_boot=60, seed=3)
    b = bootstrap_ci(s, y, e, t, "eer", n_boot=60, seed=3)
    c = bootstrap_ci(s, y, e, t, lambda sc, lb, w: eer(sc, lb, weights=w)[0], n_boot=60, seed=3)
    assert a == b
    assert c == pytest.approx(a, abs=1e-12)
    assert bootstrap_ci(s, y, e, t, "eer", n_boot=60, seed=4) != a


def test_bootstrap_weights_follow_speaker_multiplicities():
    rng = np.random.default_rng(8)
    n_spk = 8
    s, y, e, t = make_trials(n_spk, 30, rng)
    seen = []

    def spy(sc, lb, w):
        seen.append(w.copy())
        return eer(sc, lb, weights=w)[0]

    bootstrap_ci(s, y, e, t, spy, n_boot=25, seed=1)
    assert seen
    spk = sorted(set(e) | set(t))
    for w in seen:
        # Multiplicity c of each speaker, read off its same-speaker (target) trials (weight c).
        c = {}
        for name in spk:
            wt = w[(e == name) & y]
            assert np.all(wt == wt[0]) and wt[0] == int(wt[0])
            c[name] = int(wt[0])
        assert sum(c.values()) == n_spk  # n_spk draws with replacement
        # Cross-speaker trials: one per pairing of the copies.
        expected = np.array([c[a] if a == b else c[a] * c[b] for a, b in zip(e, t, strict=True)])
        np.testing.assert_array_equal(w, expected)
        # ... and a weight means "this many copies of the trial".
        k = w.astype(int)
        assert eer(s, y, weights=w)[0] == pytest.approx(eer(np.repeat(s, k), np.repeat(y, k))[0], abs=1e-12)


def test_bootstrap_drops_resamples_without_both_classes():
    # Two speakers: a resample of {A, A} or {B, B} has no non-target trial.
    s = [0.9, 0.8, 0.1, 0.2]
    y = [1, 1, 0, 0]
    e, t = ["A", "B", "A", "B"], ["A", "B", "B", "A"]
    with pytest.warns(RuntimeWarning, match="dropped"):
        low, high = bootstrap_ci(s, y, e, t, n_boot=50)
    assert (low, high) == (0.0, 0.0)


def test_paired_diff_with_itself_is_exactly_zero():
    rng = np.random.default_rng(6)
    s, y, e, t = make_trials(20, 40, rng)
    assert paired_bootstrap_diff(s, s, y, e, t, "eer", n_boot=200) == (0.0, 0.0, 0.0)
    assert paired_bootstrap_diff(s, s, y, e, t, "min_dcf", n_boot=50) == (0.0, 0.0, 0.0)


def test_paired_diff_detects_a_better_system():
    rng = np.random.default_rng(12)
    s, y, e, t = make_trials(40, 60, rng)
    noisy = s + rng.normal(0, 1.5, s.size)
    diff, low, high = paired_bootstrap_diff(noisy, s, y, e, t, "eer", n_boot=300)
    assert diff == pytest.approx(eer(s, y)[0] - eer(noisy, y)[0], abs=1e-15)
    assert low <= diff <= high < 0  # B (clean scores) is significantly better
    # Pairing removes the shared speaker variation: the paired interval is narrower than the
    # spread of the difference of two independent intervals.
    lo_a, hi_a = bootstrap_ci(noisy, y, e, t, n_boot=300)
    lo_b, hi_b = bootstrap_ci(s, y, e, t, n_boot=300)
    assert high - low < (hi_a - lo_a) + (hi_b - lo_b)


def test_paired_seed_diff_is_the_mean_of_paired_differences_and_resamples_seeds():
    rng = np.random.default_rng(13)
    s, y, e, t = make_trials(30, 40, rng)
    noisy = s + rng.normal(0, 1.5, s.size)
    seeds_b = [s + rng.normal(0, 0.3, s.size) for _ in range(3)]
    seeds_a = [s + rng.normal(0, 1.0, s.size) for _ in range(3)]
    # against one set (noisy): the mean over seeds of EER(B_k) - EER(noisy)
    diff, low, high = paired_seed_diff([noisy], seeds_b, y, e, t, n_boot=300)
    expected = np.mean([eer(b, y)[0] for b in seeds_b]) - eer(noisy, y)[0]
    assert diff == pytest.approx(expected, abs=1e-12)
    assert low <= diff <= high < 0
    # seed k against seed k
    diff, low, high = paired_seed_diff(seeds_a, seeds_b, y, e, t, n_boot=300)
    expected = np.mean([eer(b, y)[0] - eer(a, y)[0] for a, b in zip(seeds_a, seeds_b, strict=True)])
    assert diff == pytest.approx(expected, abs=1e-12) and low <= diff <= high
    # one seed: the speaker-paired interval of paired_bootstrap_diff, exactly
    assert paired_seed_diff([noisy], [s], y, e, t, n_boot=200) == paired_bootstrap_diff(
        noisy, s, y, e, t, n_boot=200
    )
    # resampling the seeds widens the interval when the seeds disagree
    far = [s, noisy + rng.normal(0, 1.0, s.size)]
    _, lo_far, hi_far = paired_seed_diff([noisy], far, y, e, t, n_boot=300)
    _, lo_one, hi_one = paired_seed_diff([noisy], far[:1], y, e, t, n_boot=300)
    assert hi_far - lo_far > hi_one - lo_one
    with pytest.raises(ValueError, match="one set or one per seed of B"):
        paired_seed_diff(seeds_a[:2], seeds_b, y, e, t)
    with pytest.raises(ValueError, match="one set or one per seed of B"):
        paired_seed_diff([noisy], [], y, e, t)


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------


def test_summarise_values_and_cis():
    rng = np.random.default_rng(10)
    s, y, e, t = make_trials(30, 40, rng)
    plain = summarise(s, y)
    assert plain["eer"] == pytest.approx(100 * eer(s, y)[0])
    assert plain["min_dcf_0.01"] == pytest.approx(min_dcf(s, y, 0.01)[0])
    assert plain["min_dcf_0.05"] == pytest.approx(min_dcf(s, y, 0.05)[0])
    assert (plain["n_trials"], plain["n_target"], plain["n_nontarget"]) == (y.size, y.sum(), (~y).sum())
    assert not any(k.endswith("_ci_low") for k in plain)

    full = summarise(s, y, e, t, n_boot=200, seed=2)
    assert full["n_speakers"] == 30
    for key in ("eer", "min_dcf_0.01", "min_dcf_0.05"):
        assert full[key] == plain[key]
        assert full[f"{key}_ci_low"] <= full[key] <= full[f"{key}_ci_high"]
    low, high = bootstrap_ci(s, y, e, t, "eer", n_boot=200, seed=2)
    assert (full["eer_ci_low"], full["eer_ci_high"]) == pytest.approx((100 * low, 100 * high))
    low, high = bootstrap_ci(s, y, e, t, "min_dcf", n_boot=200, seed=2, p_target=0.05)
    assert (full["min_dcf_0.05_ci_low"], full["min_dcf_0.05_ci_high"]) == pytest.approx((low, high))
