"""Speaker-level bootstrap intervals of verification metrics, and paired differences between two
systems on the same trials.

Resampling speakers (not trials) keeps each speaker's trials together, so the interval reflects
the variation between speakers, which dominates at the scale of a test set. A paired difference
resamples the same speakers for both systems, so it compares like with like. Every metric comes
from :mod:`gradw.evaluation.metrics`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from gradw.evaluation.metrics import (
    _dcf_from_rates,
    _eer_from_rates,
    _rates,
    _sort_trials,
    check_cost,
    check_scores_labels,
)

#: A user metric for the bootstrap: ``fn(scores, labels, weights) -> float``.
MetricFn = Callable[[np.ndarray, np.ndarray, np.ndarray], float]

# Bootstrap rows are processed in chunks of about this many (resample x trial) elements.
_CHUNK_ELEMENTS = 2_000_000

# ---------------------------------------------------------------------------------------------
# Speaker-level bootstrap
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _MetricSpec:
    """A resolved bootstrap metric: a batched rate function or a user callable."""

    batched: Callable[[np.ndarray, np.ndarray], np.ndarray] | None
    user: MetricFn | None


def _resolve_metric(metric: str | MetricFn, p_target: float, c_miss: float, c_fa: float) -> _MetricSpec:
    """Turn ``"eer"``, ``"min_dcf"`` or a callable into a :class:`_MetricSpec`."""
    if callable(metric):
        return _MetricSpec(batched=None, user=metric)
    if metric == "eer":
        return _MetricSpec(batched=lambda fpr, fnr: _eer_from_rates(fpr, fnr)[0], user=None)
    if metric == "min_dcf":
        check_cost(p_target, c_miss, c_fa)
        return _MetricSpec(
            batched=lambda fpr, fnr: _dcf_from_rates(fpr, fnr, p_target, c_miss, c_fa)[0], user=None
        )
    raise ValueError(f"unknown metric {metric!r}: use 'eer', 'min_dcf' or a callable")


def _point_value(spec: _MetricSpec, scores: np.ndarray, labels: np.ndarray) -> float:
    """The metric on the full, unweighted trial set."""
    if spec.user is not None:
        return float(spec.user(scores, labels, np.ones_like(scores)))
    st = _sort_trials(scores, labels)
    fpr, fnr = _rates(st, None)
    return float(spec.batched(fpr, fnr)[0])  # type: ignore[misc]


def _speaker_indices(
    enroll_speakers: Sequence[Any] | ArrayLike, test_speakers: Sequence[Any] | ArrayLike, n: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Map per-trial speaker labels (N,) to integer ids; returns (enroll_idx, test_idx, n_speakers)."""
    e = np.asarray(enroll_speakers)
    t = np.asarray(test_speakers)
    if e.ndim != 1 or t.ndim != 1:
        raise ValueError("enroll_speakers and test_speakers must be 1-D (one speaker per trial)")
    if e.shape[0] != n or t.shape[0] != n:
        raise ValueError(
            f"length mismatch: {n} trials but {e.shape[0]} enroll and {t.shape[0]} test speakers"
        )
    both = np.concatenate([e.astype(str), t.astype(str)])
    uniq, inv = np.unique(both, return_inverse=True)
    return inv[:n], inv[n:], int(uniq.size)


def _pair_weights(counts: np.ndarray, e: np.ndarray, t: np.ndarray, same: np.ndarray) -> np.ndarray:
    """Trial multiplicities for speaker resamples.

    Args:
        counts: (B, S) times each speaker was drawn.
        e: (N,) enroll speaker index per trial.
        t: (N,) test speaker index per trial.
        same: (1, N) ``e == t``.

    Returns:
        (B, N) weights: ``counts[e]`` for same-speaker trials, ``counts[e] * counts[t]`` otherwise.
    """
    c_e = counts[:, e]
    return np.where(same, c_e, c_e * counts[:, t])


def _bootstrap_values(
    score_sets: Sequence[np.ndarray],
    labels: np.ndarray,
    enroll_idx: np.ndarray,
    test_idx: np.ndarray,
    n_speakers: int,
    specs: Sequence[_MetricSpec],
    n_boot: int,
    seed: int,
) -> np.ndarray:
    """Metric values over speaker resamples shared by every system and metric.

    Each resample draws ``n_speakers`` speakers with replacement (counts ``c``); a trial between
    speakers ``e != t`` gets weight ``c[e] * c[t]``, a same-speaker trial ``c[e]`` (see
    :func:`bootstrap_ci`). Resamples without any target or any non-target weight are dropped
    (with a warning).

    Returns:
        (n_systems, n_metrics, n_valid) array.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n_speakers, np.full(n_speakers, 1.0 / n_speakers), size=n_boot)
    counts = counts.astype(np.float64)
    n = labels.size
    sorted_sets = [_sort_trials(s, labels) for s in score_sets]
    out = np.empty((len(score_sets), len(specs), n_boot))
    sorted_idx = [(enroll_idx[st.order], test_idx[st.order]) for st in sorted_sets]
    same_sorted = [(e == t)[None, :] for e, t in sorted_idx]
    need_rates = any(sp.batched is not None for sp in specs)
    # Validity depends only on labels and weights, so it is shared by all systems and metrics.
    valid = np.zeros(n_boot, dtype=bool)
    chunk = max(1, _CHUNK_ELEMENTS // n)
    for lo in range(0, n_boot, chunk):
        c = counts[lo : lo + chunk]
        for a, st in enumerate(sorted_sets):
            e, t = sorted_idx[a]
            # (b, N) weights in this system's sorted order
            w_sorted = _pair_weights(c, e, t, same_sorted[a])
            if a == 0:
                w_tar = w_sorted[:, st.is_target].sum(axis=1)
                w_non = w_sorted[:, ~st.is_target].sum(axis=1)
                valid[lo : lo + c.shape[0]] = (w_tar > 0) & (w_non > 0)
            fpr, fnr = _rates(st, w_sorted) if need_rates else (None, None)
            for m, sp in enumerate(specs):
                if sp.batched is not None:
                    out[a, m, lo : lo + c.shape[0]] = sp.batched(fpr, fnr)
                else:
                    w_trial = np.empty_like(w_sorted)
                    w_trial[:, st.order] = w_sorted
                    scores = score_sets[a]
                    for r in range(c.shape[0]):
                        ok = valid[lo + r]
                        value = sp.user(scores, labels, w_trial[r]) if ok else np.nan  # type: ignore[misc]
                        out[a, m, lo + r] = value
    n_bad = int((~valid).sum())
    if n_bad == n_boot:
        raise ValueError("no bootstrap resample contained both target and non-target trials")
    if n_bad:
        warnings.warn(
            f"{n_bad} of {n_boot} speaker resamples lacked target or non-target trials and were "
            "dropped; the interval is based on the rest",
            RuntimeWarning,
            stacklevel=3,
        )
    return out[:, :, valid]


def _check_alpha(alpha: float) -> None:
    """Validate the interval's miscoverage level."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")


def _interval(values: np.ndarray, alpha: float) -> tuple[float, float]:
    """Percentile interval ``[alpha/2, 1 - alpha/2]`` of 1-D bootstrap values."""
    low, high = np.quantile(values, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


def bootstrap_ci(
    scores: ArrayLike,
    labels: ArrayLike,
    enroll_speakers: Sequence[Any] | ArrayLike,
    test_speakers: Sequence[Any] | ArrayLike,
    metric: str | MetricFn = "eer",
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    *,
    p_target: float = 0.01,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of a metric, resampling speakers.

    Trials that share a speaker are not independent, so resampling trials understates the
    uncertainty. Here each resample draws as many speakers as there are (the union of enroll
    and test speakers) with replacement. A speaker drawn ``c`` times stands for ``c`` distinct
    speakers that each have that speaker's data, so:

    - a cross-speaker trial (enroll speaker ``e`` != test speaker ``t``) enters with
      multiplicity ``c[e] * c[t]``, one per pairing of the copies;
    - a same-speaker trial (``e == t``, i.e. a target trial) enters ``c[e]`` times, once per
      copy: a copy's own trials are duplicated, but two copies of one person are not a new
      same-speaker pair (nor a valid different-speaker one);
    - trials touching an undrawn speaker drop out.

    The pure product ``c[e] * c[t]`` for every trial would weight a repeated speaker's target
    trials by ``c**2``; on synthetic data with speaker effects on both sides it widened the
    95 % interval by 15-50 % over the true sampling spread (obtained by redrawing speakers from
    the generating model), whereas this rule came within a few percent. Keeping trials only
    when both speakers are drawn (weight 0/1) or resampling enroll speakers alone gave
    intervals that were too narrow. Resamples left without target or non-target trials (only
    likely with very few speakers) are dropped with a :class:`RuntimeWarning`.

    Args:
        scores: (N,) trial scores.
        labels: (N,) True/1 for target trials.
        enroll_speakers: (N,) speaker of each trial's enrollment side.
        test_speakers: (N,) speaker of each trial's test side, named as on the enroll side
            (a trial with equal names is a same-speaker trial).
        metric: ``"eer"`` (fraction), ``"min_dcf"`` (with ``p_target``, ``c_miss``, ``c_fa``),
            or a callable ``fn(scores, labels, weights) -> float`` (evaluated once per resample;
            slower than the built-in names, which are vectorised over resamples).
        n_boot: number of resamples.
        alpha: the interval covers ``1 - alpha``.
        seed: seed of the resampling generator.
        p_target: minDCF target prior.
        c_miss: minDCF miss cost.
        c_fa: minDCF false-alarm cost.

    Returns:
        ``(low, high)``, the ``alpha/2`` and ``1 - alpha/2`` percentiles.

    Raises:
        ValueError: on invalid input, unknown metric or parameters.
    """
    s, y = check_scores_labels(scores, labels)
    _check_alpha(alpha)
    spec = _resolve_metric(metric, p_target, c_miss, c_fa)
    e, t, n_spk = _speaker_indices(enroll_speakers, test_speakers, s.size)
    vals = _bootstrap_values([s], y, e, t, n_spk, [spec], n_boot, seed)
    return _interval(vals[0, 0], alpha)


def paired_bootstrap_diff(
    scores_a: ArrayLike,
    scores_b: ArrayLike,
    labels: ArrayLike,
    enroll_speakers: Sequence[Any] | ArrayLike,
    test_speakers: Sequence[Any] | ArrayLike,
    metric: str | MetricFn = "eer",
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    *,
    p_target: float = 0.01,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
) -> tuple[float, float, float]:
    """Paired speaker-bootstrap interval of ``metric(B) - metric(A)`` on the same trials.

    Both systems are scored on every resample with the *same* speaker draw (see
    :func:`bootstrap_ci`), so the variation that the two share (hard speakers, easy
    speakers) cancels. For error metrics a negative difference means B is better; B is
    significantly better at level ``alpha`` when ``high < 0``.

    Args:
        scores_a: (N,) scores of system A (e.g. noisy, no enhancement).
        scores_b: (N,) scores of system B on the same trials, same order.
        labels: (N,) True/1 for target trials.
        enroll_speakers: (N,) enrollment speaker per trial.
        test_speakers: (N,) test speaker per trial.
        metric: as in :func:`bootstrap_ci`.
        n_boot: number of resamples.
        alpha: the interval covers ``1 - alpha``.
        seed: seed of the resampling generator.
        p_target: minDCF target prior.
        c_miss: minDCF miss cost.
        c_fa: minDCF false-alarm cost.

    Returns:
        ``(diff, low, high)``: the difference on the full trial set and its percentile interval.

    Raises:
        ValueError: on invalid input, unknown metric or parameters.
    """
    sa, y = check_scores_labels(scores_a, labels)
    sb, _ = check_scores_labels(scores_b, labels)
    _check_alpha(alpha)
    spec = _resolve_metric(metric, p_target, c_miss, c_fa)
    e, t, n_spk = _speaker_indices(enroll_speakers, test_speakers, sa.size)
    diff = _point_value(spec, sb, y) - _point_value(spec, sa, y)
    vals = _bootstrap_values([sa, sb], y, e, t, n_spk, [spec], n_boot, seed)
    low, high = _interval(vals[1, 0] - vals[0, 0], alpha)
    return float(diff), low, high


def paired_seed_samples(
    scores_a: Sequence[ArrayLike],
    scores_b: Sequence[ArrayLike],
    labels: ArrayLike,
    enroll_speakers: Sequence[Any] | ArrayLike,
    test_speakers: Sequence[Any] | ArrayLike,
    metric: str | MetricFn = "eer",
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[float, np.ndarray]:
    """The mean over seeds of the paired difference ``metric(B_k) - metric(A_k)`` and its values
    over resamples of test speakers and seeds (see :func:`paired_seed_diff`).

    Args:
        scores_a: (S,) or (1,) sequence of (N,) score arrays on the same trials, same order.
        scores_b: (S,) sequence of (N,) score arrays.
        labels: (N,) True/1 for target trials.
        enroll_speakers: (N,) enrollment speaker per trial.
        test_speakers: (N,) test speaker per trial.
        metric: as in :func:`bootstrap_ci` (with its default minDCF costs).
        n_boot: number of resamples.
        seed: seed of the resampling generator.

    Two calls with the same ``seed`` and ``n_boot`` on trial lists over the same speakers (e.g.
    one trial list under several conditions) draw the same speakers and seeds in every resample,
    so their sample arrays can be averaged into the interval of a mean over conditions.

    Returns:
        ``(diff, samples)``: the difference on the full trial set and (R,) resampled values
        (R ≤ ``n_boot``: resamples without both classes are dropped).
    """
    n_seeds = len(scores_b)
    if n_seeds == 0 or len(scores_a) not in (1, n_seeds):
        raise ValueError(
            f"paired seed differences need one or more score sets for B and, for A, one set or one per "
            f"seed of B; got {len(scores_a)} for A and {n_seeds} for B"
        )
    checked = [check_scores_labels(s, labels) for s in (*scores_a, *scores_b)]
    y = checked[0][1]
    sets = [s for s, _ in checked]
    if len({s.size for s in sets}) != 1:
        raise ValueError("every score set must hold the same trials")
    spec = _resolve_metric(metric, 0.01, 1.0, 1.0)
    e, t, n_spk = _speaker_indices(enroll_speakers, test_speakers, y.size)
    n_a = len(scores_a)
    points = np.array([_point_value(spec, s, y) for s in sets])
    diff = float(np.mean(points[n_a:] - (points[:n_a] if n_a == n_seeds else points[0])))
    vals = _bootstrap_values(sets, y, e, t, n_spk, [spec], n_boot, seed)[:, 0]  # (sets, resamples)
    per_seed = vals[n_a:] - (vals[:n_a] if n_a == n_seeds else vals[:1])  # (S, resamples)
    drawn = np.random.default_rng([seed, 1]).integers(0, n_seeds, size=(per_seed.shape[1], n_seeds))
    return diff, per_seed[drawn, np.arange(per_seed.shape[1])[:, None]].mean(axis=1)


def paired_seed_diff(
    scores_a: Sequence[ArrayLike],
    scores_b: Sequence[ArrayLike],
    labels: ArrayLike,
    enroll_speakers: Sequence[Any] | ArrayLike,
    test_speakers: Sequence[Any] | ArrayLike,
    metric: str | MetricFn = "eer",
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Paired interval of ``mean over seeds of metric(B_k) - metric(A_k)``, resampling test
    speakers and seeds.

    ``scores_b`` holds one score set per training seed of system B; ``scores_a`` the same seeds of
    system A in the same order (seed k of A against seed k of B: same initialisation and data
    order), or a single set (a system without seeds, e.g. ``noisy``), used against every seed of
    B. Each resample draws speakers as :func:`bootstrap_ci` does, shared by every set, and draws
    the seeds with replacement; its value is the mean over the drawn seeds of the paired
    difference. With one seed this is :func:`paired_bootstrap_diff`'s interval. The arguments
    are :func:`paired_seed_samples`'s, with ``alpha`` (the interval covers ``1 - alpha``).

    Returns:
        ``(diff, low, high)``: the mean paired difference over all seeds on the full trial set
        and its percentile interval; negative means B has the lower error.

    Raises:
        ValueError: no seeds, A with neither one set nor one per seed of B, or invalid scores.
    """
    _check_alpha(alpha)
    diff, samples = paired_seed_samples(
        scores_a, scores_b, labels, enroll_speakers, test_speakers, metric, n_boot, seed
    )
    low, high = _interval(samples, alpha)
    return diff, low, high


def summarise(
    scores: ArrayLike,
    labels: ArrayLike,
    enroll_speakers: Sequence[Any] | ArrayLike | None = None,
    test_speakers: Sequence[Any] | ArrayLike | None = None,
    *,
    p_targets: Sequence[float] = (0.01, 0.05),
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, float | int]:
    """Headline numbers for one trial set.

    Keys:
        ``eer`` (**percent**), ``eer_threshold``; ``min_dcf_<p>`` and ``min_dcf_<p>_threshold``
        for each ``p`` in ``p_targets`` (``C_miss = C_fa = 1``; default keys ``min_dcf_0.01`` and
        ``min_dcf_0.05``); ``n_trials``, ``n_target``, ``n_nontarget``. When both speaker
        sequences are given, also ``n_speakers`` and ``<metric>_ci_low`` / ``<metric>_ci_high``
        for ``eer`` (percent) and each ``min_dcf_<p>``, from one shared set of speaker resamples
        (see :func:`bootstrap_ci`).

    Raises:
        ValueError: on invalid input, or when only one of the speaker sequences is given.
    """
    s, y = check_scores_labels(scores, labels)
    st = _sort_trials(s, y)
    fpr, fnr = _rates(st, None)
    e_val, e_idx = _eer_from_rates(fpr, fnr)
    out: dict[str, float | int] = {
        "eer": 100.0 * float(e_val[0]),
        "eer_threshold": float(st.thresholds[e_idx[0]]),
    }
    for p in p_targets:
        check_cost(p, 1.0, 1.0)
        d_val, d_idx = _dcf_from_rates(fpr, fnr, p, 1.0, 1.0)
        out[f"min_dcf_{p:g}"] = float(d_val[0])
        out[f"min_dcf_{p:g}_threshold"] = float(st.thresholds[d_idx[0]])
    out["n_trials"] = int(y.size)
    out["n_target"] = int(y.sum())
    out["n_nontarget"] = int((~y).sum())
    if (enroll_speakers is None) != (test_speakers is None):
        raise ValueError("give both enroll_speakers and test_speakers, or neither")
    if enroll_speakers is not None and test_speakers is not None:
        _check_alpha(alpha)
        e, t, n_spk = _speaker_indices(enroll_speakers, test_speakers, s.size)
        specs = [_resolve_metric("eer", 0.01, 1.0, 1.0)]
        specs += [_resolve_metric("min_dcf", p, 1.0, 1.0) for p in p_targets]
        vals = _bootstrap_values([s], y, e, t, n_spk, specs, n_boot, seed)[0]
        out["n_speakers"] = n_spk
        names = ["eer"] + [f"min_dcf_{p:g}" for p in p_targets]
        scale = [100.0] + [1.0] * len(p_targets)
        for name, k, v in zip(names, scale, vals, strict=True):
            low, high = _interval(v, alpha)
            out[f"{name}_ci_low"] = k * low
            out[f"{name}_ci_high"] = k * high
    return out
