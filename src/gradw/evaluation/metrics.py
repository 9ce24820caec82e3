"""Speaker-verification metrics: ROC, EER, minDCF and DET points (the speaker-level bootstrap
of their intervals is :mod:`gradw.evaluation.bootstrap`).

Pure numpy/scipy; nothing here knows about models, files or tensors.

Conventions
-----------
- ``scores``: 1-D array of finite floats, higher means "more likely the same speaker".
- ``labels``: 1-D array of booleans (or 0/1); ``True`` marks a target (same-speaker) trial.
- A threshold ``t`` *accepts* a trial when ``score >= t``. At ``t``:
  ``FNR(t)`` = fraction of target trials with ``score < t`` (misses) and
  ``FPR(t)`` = fraction of non-target trials with ``score >= t`` (false alarms).
- The operating points are exact: one per distinct score value (tied scores share one threshold,
  so a tie between a target and a non-target trial gives a diagonal ROC step), plus a final
  ``+inf`` threshold that rejects everything. The first point (lowest score) accepts everything,
  so every ROC runs from ``(FPR, FNR) = (1, 0)`` to ``(0, 1)``.
- Optional non-negative ``weights`` count each trial that many times (a weight of 2 is the same
  as the trial appearing twice); the speaker bootstrap uses them.

Metric parameters follow WeSpeaker / 3D-Speaker / SpeechBrain (``p_target=0.01``,
``C_miss = C_fa = 1``); the Grad-W authors' code uses ``p_target=0.05``.
:func:`~gradw.evaluation.bootstrap.summarise` reports both.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


def check_scores_labels(
    scores: ArrayLike, labels: ArrayLike, allow_inf: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert ``scores`` (N,) to float64 and ``labels`` (N,) to bool.

    Raises:
        ValueError: empty input, wrong dimensionality, length mismatch, NaN scores (or infinite
            ones unless ``allow_inf``: LLRs may be), labels other than bool/0/1, or only one
            class present.
    """
    s = np.asarray(scores)
    y = np.asarray(labels)
    if s.ndim != 1 or y.ndim != 1:
        raise ValueError(f"scores and labels must be 1-D, got shapes {s.shape} and {y.shape}")
    if s.shape[0] != y.shape[0]:
        raise ValueError(f"length mismatch: {s.shape[0]} scores but {y.shape[0]} labels")
    if s.shape[0] == 0:
        raise ValueError("no trials: scores and labels are empty")
    if not (np.issubdtype(s.dtype, np.number) or s.dtype == bool):
        raise ValueError(f"scores must be numeric, got dtype {s.dtype}")
    s = s.astype(np.float64, copy=False)
    bad = np.isnan(s) if allow_inf else ~np.isfinite(s)
    if bad.any():
        idx = np.flatnonzero(bad)
        raise ValueError(
            f"{idx.size} score(s) are NaN or infinite (first at trial index {int(idx[0])}: {s[idx[0]]!r})"
        )
    if y.dtype == bool:
        y_bool = y
    elif np.issubdtype(y.dtype, np.number):
        ok = (y == 0) | (y == 1)
        if not ok.all():
            first = int(np.flatnonzero(~ok)[0])
            raise ValueError(f"labels must be boolean or 0/1, got {y[first]!r} at trial index {first}")
        y_bool = y == 1
    else:
        raise ValueError(f"labels must be boolean or 0/1, got dtype {y.dtype}")
    n_tar = int(y_bool.sum())
    if n_tar == 0:
        raise ValueError(f"no target trials among {y_bool.size}: EER/minDCF need both classes")
    if n_tar == y_bool.size:
        raise ValueError(f"no non-target trials among {y_bool.size}: EER/minDCF need both classes")
    return s, y_bool


def _check_weights(weights: ArrayLike | None, labels: np.ndarray) -> np.ndarray | None:
    """Validate optional per-trial weights (N,) against boolean ``labels`` (N,)."""
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != labels.shape:
        raise ValueError(f"weights must have shape {labels.shape}, got {w.shape}")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("weights must be finite and non-negative")
    if w[labels].sum() <= 0:
        raise ValueError("total weight of target trials is zero")
    if w[~labels].sum() <= 0:
        raise ValueError("total weight of non-target trials is zero")
    return w


def check_cost(p_target: float, c_miss: float, c_fa: float) -> None:
    """Validate detection-cost parameters."""
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target must lie in (0, 1), got {p_target}")
    if c_miss <= 0 or c_fa <= 0:
        raise ValueError(f"c_miss and c_fa must be positive, got {c_miss} and {c_fa}")


# ---------------------------------------------------------------------------------------------
# Core: exact (weighted, batched) operating points
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _SortedTrials:
    """Trials sorted by score, with the cut points that define the distinct thresholds.

    Attributes:
        order: (N,) permutation sorting the scores ascending (stable).
        is_target: (N,) labels in sorted order.
        cuts: (K+1,) for each threshold, the number of sorted trials strictly below it.
        thresholds: (K+1,) the K distinct scores ascending, then ``+inf``.
    """

    order: np.ndarray
    is_target: np.ndarray
    cuts: np.ndarray
    thresholds: np.ndarray


def _sort_trials(scores: np.ndarray, labels: np.ndarray) -> _SortedTrials:
    """Sort validated trials once; the result serves every weighting of them."""
    order = np.argsort(scores, kind="stable")
    s = scores[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    cuts = np.r_[starts, s.size]
    thresholds = np.r_[s[starts], np.inf]
    return _SortedTrials(order=order, is_target=labels[order], cuts=cuts, thresholds=thresholds)


def _rates(st: _SortedTrials, sorted_weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """FPR and FNR at every threshold of ``st``.

    Args:
        st: sorted trials.
        sorted_weights: (B, N) non-negative weights already in sorted order, or ``None`` for
            unit weights (then B = 1).

    Returns:
        ``(fpr, fnr)``, each (B, K+1). Rows whose target or non-target weight is zero are NaN.
    """
    tar = st.is_target.astype(np.float64)[None, :]
    if sorted_weights is None:
        w_tar, w_non = tar, 1.0 - tar
    else:
        w_tar = sorted_weights * tar
        w_non = sorted_weights - w_tar
    zero = np.zeros((w_tar.shape[0], 1))
    cum_tar = np.concatenate([zero, np.cumsum(w_tar, axis=1)], axis=1)
    cum_non = np.concatenate([zero, np.cumsum(w_non, axis=1)], axis=1)
    total_tar = cum_tar[:, -1:]
    total_non = cum_non[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        fnr = cum_tar[:, st.cuts] / total_tar
        fpr = (total_non - cum_non[:, st.cuts]) / total_non
    # Pin the ends exactly (cumulative sums of floats may be off by an ulp).
    fnr[:, -1] = 1.0
    fpr[:, -1] = 0.0
    fnr[:, 0] = 0.0
    fpr[:, 0] = 1.0
    bad = (total_tar[:, 0] <= 0) | (total_non[:, 0] <= 0)
    fnr[bad] = np.nan
    fpr[bad] = np.nan
    return fpr, fnr


def _eer_from_rates(fpr: np.ndarray, fnr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Interpolated EER for each row of (B, K+1) rates; returns (eer (B,), nearest index (B,)).

    ``d = FNR - FPR`` never decreases with the threshold and runs from -1 to +1. With ``i`` the
    first point where ``d >= 0`` and ``j = i - 1`` (so ``d_j < 0``), the ROC segment from point
    ``j`` to point ``i`` crosses the line ``FNR = FPR`` at ``a = -d_j / (d_i - d_j)`` and
    ``EER = FPR_j + a (FPR_i - FPR_j)`` (equal to ``FNR_j + a (FNR_i - FNR_j)``). The returned
    index is whichever of ``i``, ``j`` lies nearer the crossing.
    """
    d = fnr - fpr
    rows = np.arange(d.shape[0])
    i = np.argmax(d >= 0, axis=1)
    i = np.maximum(i, 1)  # d[:, 0] == -1 always; guards NaN rows
    j = i - 1
    d_i, d_j = d[rows, i], d[rows, j]
    with np.errstate(invalid="ignore", divide="ignore"):
        a = -d_j / (d_i - d_j)
    value = fpr[rows, j] + a * (fpr[rows, i] - fpr[rows, j])
    nearest = np.where(a >= 0.5, i, j)
    return value, nearest


def _dcf_from_rates(
    fpr: np.ndarray, fnr: np.ndarray, p_target: float, c_miss: float, c_fa: float
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised minimum DCF for each row of (B, K+1) rates; returns (value (B,), argmin (B,))."""
    norm = min(c_miss * p_target, c_fa * (1.0 - p_target))
    dcf = (c_miss * p_target * fnr + c_fa * (1.0 - p_target) * fpr) / norm
    nan_rows = np.isnan(dcf[:, 0])
    idx = np.argmin(np.where(np.isnan(dcf), np.inf, dcf), axis=1)
    value = dcf[np.arange(dcf.shape[0]), idx]
    value[nan_rows] = np.nan
    return value, idx


def _single_rates(
    scores: ArrayLike, labels: ArrayLike, weights: ArrayLike | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated (fpr, fnr, thresholds), each (K+1,), for one (optionally weighted) trial set."""
    s, y = check_scores_labels(scores, labels)
    w = _check_weights(weights, y)
    st = _sort_trials(s, y)
    sw = None if w is None else w[st.order][None, :]
    fpr, fnr = _rates(st, sw)
    return fpr[0], fnr[0], st.thresholds


# ---------------------------------------------------------------------------------------------
# Public point metrics
# ---------------------------------------------------------------------------------------------


def roc(
    scores: ArrayLike, labels: ArrayLike, *, weights: ArrayLike | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact ROC operating points.

    Args:
        scores: (N,) trial scores.
        labels: (N,) True/1 for target trials.
        weights: optional (N,) non-negative trial multiplicities.

    Returns:
        ``(fpr, fnr, thresholds)``, each (K+1,), ascending in threshold: one point per distinct
        score (tied scores form a single threshold) and a last one at ``+inf``. A trial is
        accepted when ``score >= threshold``. ``fpr`` falls from 1 to 0 and ``fnr`` rises from
        0 to 1.

    Raises:
        ValueError: on invalid input (see module docstring).
    """
    fpr, fnr, thr = _single_rates(scores, labels, weights)
    return fpr, fnr, thr


def eer(scores: ArrayLike, labels: ArrayLike, *, weights: ArrayLike | None = None) -> tuple[float, float]:
    """Equal error rate, linearly interpolated on the ROC (NIST / WeSpeaker convention).

    The ROC points are exact (see :func:`roc`). ``FNR - FPR`` changes sign between two
    consecutive operating points; the EER is where the straight segment joining them crosses
    ``FNR = FPR``. This differs from the "nearest point" EER of scikit-learn-based code
    (voxceleb_trainer, the Grad-W authors), which reports ``max`` or the mean of FPR and FNR at
    the point with the smallest ``|FNR - FPR|`` and can be off by up to one ROC step.

    Args:
        scores: (N,) trial scores.
        labels: (N,) True/1 for target trials.
        weights: optional (N,) non-negative trial multiplicities.

    Returns:
        ``(eer, threshold)``: the EER as a fraction in [0, 1], and the threshold of the
        operating point (of the two bracketing ones) nearer the crossing.

    Raises:
        ValueError: on invalid input.
    """
    fpr, fnr, thr = _single_rates(scores, labels, weights)
    value, idx = _eer_from_rates(fpr[None], fnr[None])
    return float(value[0]), float(thr[idx[0]])


def min_dcf(
    scores: ArrayLike,
    labels: ArrayLike,
    p_target: float = 0.01,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
    *,
    weights: ArrayLike | None = None,
) -> tuple[float, float]:
    """Normalised minimum detection cost over all exact operating points.

    ``DCF(t) = c_miss * p_target * FNR(t) + c_fa * (1 - p_target) * FPR(t)``, divided by
    ``min(c_miss * p_target, c_fa * (1 - p_target))`` (the cost of the better trivial system),
    minimised over the thresholds of :func:`roc`. Both "accept all" and "reject all" are among
    the operating points, so the value never exceeds 1.

    Args:
        scores: (N,) trial scores.
        labels: (N,) True/1 for target trials.
        p_target: prior probability of a target trial, in (0, 1).
        c_miss: cost of a miss (> 0).
        c_fa: cost of a false alarm (> 0).
        weights: optional (N,) non-negative trial multiplicities.

    Returns:
        ``(min_dcf, threshold)``; the threshold may be ``+inf`` (reject all).

    Raises:
        ValueError: on invalid input or cost parameters.
    """
    check_cost(p_target, c_miss, c_fa)
    fpr, fnr, thr = _single_rates(scores, labels, weights)
    value, idx = _dcf_from_rates(fpr[None], fnr[None], p_target, c_miss, c_fa)
    return float(value[0]), float(thr[idx[0]])


def det_curve(
    scores: ArrayLike, labels: ArrayLike, *, eps: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """DET curve points on probit (normal deviate) axes, for plotting.

    Args:
        scores: (N,) trial scores.
        labels: (N,) True/1 for target trials.
        eps: rates are clipped to ``[eps, 1 - eps]`` before ``norm.ppf`` so the ends stay
            finite. By default half a trial of each class (``0.5 / n_nontarget`` for FPR,
            ``0.5 / n_target`` for FNR), just beyond what the data can resolve.

    Returns:
        ``(x, y) = (ppf(FPR), ppf(FNR))``, each (K+1,), ordered by ascending threshold.

    Raises:
        ValueError: on invalid input or ``eps`` outside (0, 0.5).
    """
    from scipy.stats import norm

    s, y = check_scores_labels(scores, labels)
    fpr, fnr, _ = _single_rates(s, y, None)
    if eps is None:
        eps_fa = 0.5 / float((~y).sum())
        eps_miss = 0.5 / float(y.sum())
    else:
        if not 0.0 < eps < 0.5:
            raise ValueError(f"eps must lie in (0, 0.5), got {eps}")
        eps_fa = eps_miss = eps
    x = norm.ppf(np.clip(fpr, eps_fa, 1.0 - eps_fa))
    yy = norm.ppf(np.clip(fnr, eps_miss, 1.0 - eps_miss))
    return x, yy


def threshold_at_far(scores: ArrayLike, labels: ArrayLike, far: float) -> float:
    """The lowest threshold whose false-acceptance rate is at most ``far``.

    A trial is accepted when ``score >= threshold`` (this module's convention). The threshold is
    one of the scores (or ``+inf`` when even the highest score would accept too many non-target
    trials), so the FAR on these trials is exactly the fraction of non-target scores at or above
    it.

    Raises:
        ValueError: ``far`` outside [0, 1], or invalid scores/labels.
    """
    if not 0.0 <= far <= 1.0:
        raise ValueError(f"far must lie in [0, 1], got {far!r}")
    fpr, _fnr, thresholds = roc(scores, labels)
    ok = np.flatnonzero(fpr <= far)  # fpr falls as the threshold rises: the first index is lowest
    return float(thresholds[ok[0]])


#: the operating points :func:`operating_threshold` knows
OPERATING_TARGETS = ("eer", "far")


def operating_threshold(
    scores: ArrayLike, labels: ArrayLike, target: str = "eer", far: float = 0.01
) -> float:
    """The decision threshold of (N,) scores and (N,) labels at an operating point: ``"eer"``, the
    equal error rate's (:func:`eer`); ``"far"``, the lowest threshold whose false-acceptance rate is
    at most ``far`` (:func:`threshold_at_far`; a warning when none reaches it, then every trial is
    rejected).

    Raises:
        ValueError: unknown target, or invalid scores/labels (e.g. no target or no non-target).
    """
    if target == "eer":
        return float(eer(scores, labels)[1])
    if target != "far":
        raise ValueError(f"target must be one of {', '.join(OPERATING_TARGETS)}, got {target!r}")
    threshold = threshold_at_far(scores, labels, far)
    if math.isinf(threshold):
        warnings.warn(
            f"no threshold reaches FAR <= {far}: the highest score belongs to a non-target trial; "
            "every trial will be rejected",
            stacklevel=3,
        )
    return float(threshold)
