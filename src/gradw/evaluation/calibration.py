"""Calibration of verification scores into log-likelihood ratios, and the metrics that judge it.

A cosine score says which trial is more likely a target than another, not how likely: the same
score means different things in clean speech and in babble at -5 dB. Calibration maps scores to
log-likelihood ratios, ``llr = scale * score + offset (+ quality · weights)``, by logistic
regression on trials with known labels (the validation speakers mixed with validation noise; never
the test trials), weighted so that targets and non-targets count as if the target prior were
``prior`` (Brümmer's prior-weighted logistic regression, the objective whose value is Cllr).
Optional quality measures per trial (e.g. the log duration of the shorter side, an estimated
SNR) enter as extra linear terms, as in quality measure functions; a calibration fitted with
:class:`gradw.evaluation.quality.QualityFunctions` stores them, so that the LLR of a trial can be
computed from its score and the raw measures of its two recordings (:meth:`Calibration.trial_llr`).
A calibration may also normalise the scores against a cohort before the map
(:class:`gradw.evaluation.score_norm.ScoreNorm`, AS-norm): it then stores the cohort, and the LLR
of a trial also needs the embeddings of its two sides.

With an LLR, the Bayes decision for a target prior ``p`` and costs ``c_miss``, ``c_fa`` is to accept
when ``llr >= log(c_fa (1 - p) / (c_miss p))``: 0 for equal priors and costs. That gives a default
decision threshold that does not have to be tuned per condition (how well it holds per condition
is what Cllr and the actual DCF measure).

Metrics (Brümmer and du Preez 2006; NIST SRE):
    * ``cllr``: ``0.5 * (mean log2(1 + e^-llr) over targets + mean log2(1 + e^llr) over
      non-targets)``, in bits; 0 is perfect, 1 is an uninformative system that says 0 always.
    * ``min_cllr``: Cllr after the best monotonic recalibration of the scores (pool adjacent
      violators on the test trials themselves): the discrimination part; ``cllr - min_cllr`` is
      the calibration loss.
    * ``act_dcf``: the normalised detection cost of the decisions ``llr >= threshold(p)``, to
      compare with minDCF at the same ``p``.

min Cllr is fitted on the very trials it judges, so it is optimistic: on a few hundred trials a
perfectly calibrated system still shows a calibration loss. :func:`calibration_loss_floor`
estimates that floor (the expected ``cllr - min_cllr`` of a perfectly calibrated system with the
same EER and trial counts) by simulation, and :func:`pooled_calibration` judges the LLRs of many
conditions at once, where the floor is small and a map that means different things in different
conditions shows.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize, special, stats

from gradw.evaluation.metrics import check_cost, check_scores_labels, eer
from gradw.evaluation.quality import QualityFunctions
from gradw.evaluation.score_norm import ScoreNorm

LN2 = math.log(2.0)


def logit(p: float) -> float:
    """log(p / (1 - p))."""
    return math.log(p) - math.log1p(-p)


def bayes_threshold(p_target: float = 0.5, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    """The LLR above which accepting costs less on average: ``log(c_fa (1 - p) / (c_miss p))``."""
    check_cost(p_target, c_miss, c_fa)
    return math.log(c_fa) - math.log(c_miss) - logit(p_target)


@dataclass(frozen=True)
class Calibration:
    """An affine map from scores (and quality measures) to log-likelihood ratios.

    Attributes:
        scale, offset: ``llr = scale * score + offset + quality @ quality_weights``.
        prior: the target prior the fit was weighted for.
        quality_names: names of the quality measures, in column order (empty: none).
        quality_weights: one weight per quality measure.
        fitted_on: what the fit saw, in words (speakers, trials, conditions).
        n_target, n_nontarget: trial counts of the fit.
        quality_functions: :meth:`QualityFunctions.to_dict` of how the quality columns are built
            from the raw measures of a trial's two recordings (empty: none, or a matrix given by
            the caller).
        extra: provenance (the conditions, the scorer, the request it was fitted for).
        score_norm: the normalisation applied to raw scores before the map (None: none); the
            map's ``score`` is then the normalised score.
    """

    scale: float
    offset: float
    prior: float = 0.5
    quality_names: tuple[str, ...] = ()
    quality_weights: tuple[float, ...] = ()
    fitted_on: str = ""
    n_target: int = 0
    n_nontarget: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    quality_functions: dict[str, Any] = field(default_factory=dict)
    score_norm: ScoreNorm | None = None

    @property
    def functions(self) -> QualityFunctions | None:
        """The stored :class:`QualityFunctions`, or None.

        Raises:
            ValueError: they were fitted by another version of the quality measures.
        """
        return QualityFunctions.from_dict(self.quality_functions) if self.quality_functions else None

    @property
    def measures(self) -> tuple[str, ...]:
        """The raw measures (:mod:`gradw.audio.quality`) each recording of a trial needs; empty
        when the LLR depends on the score alone."""
        functions = self.functions
        return () if functions is None else functions.measures

    def normalised(
        self, scores: ArrayLike, embeddings: tuple[ArrayLike, ArrayLike] | None = None
    ) -> np.ndarray:
        """(N,) raw scores -> (N,) the scores the map takes: normalised against the cohort with
        the (N, D) ``embeddings`` of the enrolment and test sides when :attr:`score_norm` is set,
        else as given.

        Raises:
            ValueError: a normalisation without the embeddings, or of another dimension.
        """
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        if self.score_norm is None:
            return s
        if embeddings is None:
            raise ValueError(
                "this calibration normalises scores against a cohort: give the embeddings of both sides"
            )
        enroll, test = (np.asarray(e, dtype=np.float64).reshape(s.shape[0], -1) for e in embeddings)
        return self.score_norm.normalise(s, enroll, test)

    def trial_llr(
        self,
        scores: ArrayLike,
        enroll: ArrayLike | None = None,
        test: ArrayLike | None = None,
        *,
        embeddings: tuple[ArrayLike, ArrayLike] | None = None,
    ) -> np.ndarray:
        """(N,) raw scores and, when :attr:`measures` is not empty, (N, M) raw measures of each
        side (and, with :attr:`score_norm`, the (N, D) ``embeddings`` of each side) -> (N,) LLRs."""
        s = self.normalised(scores, embeddings)
        functions = self.functions
        if functions is None:
            return self.llr(s)
        if enroll is None or test is None:
            raise ValueError(f"this calibration needs the quality measures {', '.join(functions.measures)}")
        return self.llr(s, functions.matrix(s, np.asarray(enroll), np.asarray(test)))

    def llr(self, scores: ArrayLike, quality: ArrayLike | None = None) -> np.ndarray:
        """(N,) scores (and (N, K) quality measures when the fit used them) -> (N,) LLRs."""
        s = np.asarray(scores, dtype=np.float64)
        out = self.scale * s + self.offset
        if self.quality_names:
            if quality is None:
                names = ", ".join(self.quality_names)
                raise ValueError(f"this calibration needs the quality measures {names}")
            q = np.asarray(quality, dtype=np.float64).reshape(s.shape[0], len(self.quality_names))
            out = out + q @ np.asarray(self.quality_weights)
        elif quality is not None:
            raise ValueError("this calibration uses no quality measures")
        return out

    def score_threshold(
        self,
        p_target: float = 0.5,
        c_miss: float = 1.0,
        c_fa: float = 1.0,
        enroll: ArrayLike | None = None,
        test: ArrayLike | None = None,
    ) -> float:
        """The score at which the LLR equals :func:`bayes_threshold`: accepting
        ``score >= threshold`` is the Bayes decision for this prior and these costs (with
        :attr:`score_norm`, a threshold on the normalised score, not on the cosine).

        With quality measures the threshold depends on the trial: give the (M,) raw measures of
        its two recordings (``enroll``, ``test``). The LLR is affine in the score for given
        measures, ``llr = slope * score + intercept``; ``inf`` when the slope is 0 and no score
        reaches the threshold, ``-inf`` when every score does.

        Raises:
            ValueError: measures missing, or a slope below 0 (the map does not order the scores).
        """
        target = bayes_threshold(p_target, c_miss, c_fa)
        if self.quality_names:
            if enroll is None or test is None:
                raise ValueError(
                    "with quality measures the threshold depends on the trial: give its measures"
                )
            sides = [
                np.repeat(np.asarray(m, dtype=np.float64).reshape(1, -1), 2, axis=0) for m in (enroll, test)
            ]
            functions = self.functions
            assert functions is not None
            s = np.array([0.0, 1.0])
            intercept, at_one = self.llr(s, functions.matrix(s, *sides))
            slope = at_one - intercept
        else:
            slope, intercept = self.scale, self.offset
        if slope < 0:
            raise ValueError(f"a calibration with slope {slope} does not order the scores")
        if slope == 0:
            return math.inf if intercept < target else -math.inf
        return float((target - intercept) / slope)

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (stored in checkpoints, which load with ``weights_only=True``)."""
        out = asdict(replace(self, score_norm=None))
        out["quality_names"] = list(self.quality_names)
        out["quality_weights"] = list(self.quality_weights)
        out["score_norm"] = None if self.score_norm is None else self.score_norm.to_dict()
        return out

    def record(self) -> dict[str, Any]:
        """:meth:`to_dict` for a JSON record: the cohort's shape instead of the cohort."""
        out = self.to_dict()
        out["score_norm"] = None if self.score_norm is None else self.score_norm.to_dict(cohort=False)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        """The inverse of :meth:`to_dict`."""
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        known["quality_names"] = tuple(known.get("quality_names", ()))
        known["quality_weights"] = tuple(float(w) for w in known.get("quality_weights", ()))
        known["quality_functions"] = dict(known.get("quality_functions") or {})
        norm = known.get("score_norm")
        known["score_norm"] = ScoreNorm.from_dict(norm) if norm else None
        return cls(**known)


def calibration_for(
    stored: dict[str, Any] | None, weights: str | None, dim: int | None = None
) -> Calibration | None:
    """A checkpoint's stored calibration (:meth:`Calibration.to_dict`), when it was fitted with
    the speaker network whose weights identity (``gradw.models.loading.weights_identity``) is
    ``weights``; None otherwise, and always for random weights (their identity is only a seed).
    ``weights=None``: the checkpoint holds its own speaker network (an adapted one), whose
    calibration always applies. ``dim``: the dimension of the embeddings it will see, which its
    score normalisation's cohort must have.

    Raises:
        ValueError: its quality measures are of another version (it must be fitted again), its
            stored score normalisation is broken, or its cohort is not of dimension ``dim``.
    """
    if not stored:
        return None
    calibration = Calibration.from_dict(stored)
    calibration.functions  # noqa: B018 - refuses another version of the quality measures, here
    if weights is not None:
        fitted_with = str(calibration.extra.get("scorer", ""))
        if not fitted_with or "|random-" in fitted_with or fitted_with != weights:
            return None
    norm = calibration.score_norm
    if norm is not None and dim is not None and norm.dim != dim:
        raise ValueError(
            f"its calibration's score normalisation has a cohort of dimension {norm.dim}, but the "
            f"speaker network's embeddings have {dim}: calibrate it again"
        )
    return calibration


#: the estimated SNRs (dB, both sides) at which :func:`threshold_record` states a quality-aware
#: calibration's score threshold: the range blind estimates of speech in noise mostly fall in
#: (they read low SNRs several dB high: an estimate of 0 dB is a mixture at -5 to -10 dB)
EXAMPLE_SNRS = (15.0, 10.0, 5.0, 0.0)


def threshold_record(calibration: Calibration) -> dict[str, Any]:
    """The default decision (LLR >= 0) as score thresholds, for results and reports:
    ``{"threshold": t}`` without quality measures; with them ``{"threshold": None,
    "thresholds_by_snr": {"15": t, ...}}``, both sides at each of :data:`EXAMPLE_SNRS` (durations
    at :data:`gradw.evaluation.quality.REFERENCE_SECONDS`); a threshold that does not exist (a
    slope below 0) is None. With a score normalisation the thresholds are on the normalised score
    and ``normalised_by`` names it (:meth:`ScoreNorm.describe`)."""

    def safe(**sides: np.ndarray) -> float | None:
        try:
            return calibration.score_threshold(**sides)
        except ValueError:
            return None

    functions = calibration.functions
    norm = {} if calibration.score_norm is None else {"normalised_by": calibration.score_norm.describe()}
    if functions is None:
        return {"threshold": safe(), **norm}
    by_snr = {}
    for snr in EXAMPLE_SNRS:
        side = functions.example_side(snr)
        by_snr[f"{snr:g}"] = safe(enroll=side, test=side)
    return {"threshold": None, "thresholds_by_snr": by_snr, **norm}


def _weighted_logistic_loss(
    theta: np.ndarray, x: np.ndarray, y: np.ndarray, weights: np.ndarray, shift: float
) -> tuple[float, np.ndarray]:
    """Prior-weighted cross-entropy (nats) of ``llr = x @ theta`` and its gradient."""
    llr = x @ theta + shift
    sign = np.where(y, -1.0, 1.0)  # targets pay log(1 + e^-llr), non-targets log(1 + e^llr)
    z = sign * llr
    loss = float(np.sum(weights * np.logaddexp(0.0, z)))
    dz = weights * sign * special.expit(z)  # d/dllr of log(1 + e^z) = sign * sigmoid(z)
    return loss, x.T @ dz


def fit_calibration(
    scores: ArrayLike,
    labels: ArrayLike,
    *,
    prior: float = 0.5,
    quality: ArrayLike | None = None,
    quality_names: tuple[str, ...] = (),
    fitted_on: str = "",
) -> Calibration:
    """Fit :class:`Calibration` by prior-weighted logistic regression.

    Args:
        scores: (N,) scores of trials with known labels (validation trials, never test ones).
        labels: (N,) 1 for target trials, 0 for non-target ones (both present).
        prior: the target prior the objective weights for (targets weigh ``prior / N_target`` in
            total, non-targets ``(1 - prior) / N_nontarget``).
        quality: optional (N, K) quality measures, one row per trial.
        quality_names: their names (K of them) when ``quality`` is given.
        fitted_on: a description of the trials, kept with the result.
    """
    s, y = check_scores_labels(scores, labels)
    if not 0.0 < prior < 1.0:
        raise ValueError(f"prior must lie in (0, 1), got {prior}")
    columns = [s]
    if quality is not None:
        q = np.asarray(quality, dtype=np.float64).reshape(s.shape[0], -1)
        if len(quality_names) != q.shape[1]:
            raise ValueError(f"{q.shape[1]} quality measures but {len(quality_names)} names")
        columns += list(q.T)
    elif quality_names:
        raise ValueError("quality_names given without quality measures")
    # standardise the inputs for a well-conditioned fit, then map the solution back
    x = np.stack(columns, axis=1)
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std == 0] = 1.0
    xs = np.concatenate([(x - mean) / std, np.ones((x.shape[0], 1))], axis=1)
    n_tar, n_non = int(y.sum()), int((~y).sum())
    weights = np.where(y, prior / n_tar, (1.0 - prior) / n_non)
    shift = logit(prior)  # the fit is of the posterior log-odds; the LLR removes the prior
    start = np.zeros(xs.shape[1])
    start[0] = 1.0
    result = optimize.minimize(
        _weighted_logistic_loss, start, args=(xs, y, weights, shift), jac=True, method="L-BFGS-B"
    )
    theta = result.x
    slopes = theta[:-1] / std
    offset = float(theta[-1] - np.sum(slopes * mean))
    return Calibration(
        scale=float(slopes[0]),
        offset=offset,
        prior=prior,
        quality_names=tuple(quality_names),
        quality_weights=tuple(float(w) for w in slopes[1:]),
        fitted_on=fitted_on,
        n_target=n_tar,
        n_nontarget=n_non,
    )


def cllr(llrs: ArrayLike, labels: ArrayLike) -> float:
    """Cllr in bits: 0.5 * (mean log2(1 + e^-llr) over targets + mean log2(1 + e^llr) over
    non-targets). Infinite LLRs on the right side cost 0."""
    s, y = check_scores_labels(llrs, labels, allow_inf=True)
    tar = np.logaddexp(0.0, -s[y]).mean() / LN2
    non = np.logaddexp(0.0, s[~y]).mean() / LN2
    return float(0.5 * (tar + non))


def pav(labels_by_score: np.ndarray) -> np.ndarray:
    """Pool adjacent violators: the non-decreasing sequence closest (least squares) to a 0/1
    sequence. (N,) labels in score order -> (N,) fitted values in [0, 1]."""
    values: list[float] = []
    counts: list[int] = []
    for label in labels_by_score.astype(np.float64):
        values.append(label)
        counts.append(1)
        while len(values) > 1 and values[-2] > values[-1]:
            n = counts[-2] + counts[-1]
            merged = (values[-2] * counts[-2] + values[-1] * counts[-1]) / n
            values[-2:] = [merged]
            counts[-2:] = [n]
    return np.repeat(values, counts)


def optimal_llrs(scores: ArrayLike, labels: ArrayLike) -> np.ndarray:
    """(N,) the LLRs of the best monotonic (non-decreasing) map of the scores on these very
    trials (PAV; tied scores share one value), as used for min Cllr."""
    s, y = check_scores_labels(scores, labels)
    # tied scores must get one value: order them non-targets first, so PAV pools them
    order = np.lexsort((y, s))
    posterior = np.empty(s.shape[0])
    posterior[order] = pav(y[order])
    _, first, inverse = np.unique(s[order], return_index=True, return_inverse=True)
    tied_mean = np.bincount(inverse, weights=posterior[order]) / np.bincount(inverse)
    posterior[order] = tied_mean[inverse]
    n_tar, n_non = int(y.sum()), int((~y).sum())
    with np.errstate(divide="ignore"):
        log_odds = np.log(posterior) - np.log1p(-posterior)
    return log_odds - math.log(n_tar / n_non)


def min_cllr(scores: ArrayLike, labels: ArrayLike) -> float:
    """Cllr of :func:`optimal_llrs`: what a perfectly calibrated version of the scores would
    reach (bits)."""
    return cllr(optimal_llrs(scores, labels), labels)


def act_dcf(
    llrs: ArrayLike, labels: ArrayLike, p_target: float = 0.01, c_miss: float = 1.0, c_fa: float = 1.0
) -> float:
    """Normalised detection cost of the Bayes decisions ``llr >= bayes_threshold(p_target)``."""
    s, y = check_scores_labels(llrs, labels, allow_inf=True)
    check_cost(p_target, c_miss, c_fa)
    accept = s >= bayes_threshold(p_target, c_miss, c_fa)
    p_miss = float(np.mean(~accept[y]))
    p_fa = float(np.mean(accept[~y]))
    norm = min(c_miss * p_target, c_fa * (1.0 - p_target))
    return (c_miss * p_target * p_miss + c_fa * (1.0 - p_target) * p_fa) / norm


def calibration_loss_floor(
    eer_percent: float, n_target: int, n_nontarget: int, draws: int = 200, seed: int = 0
) -> float:
    """The expected ``cllr - min_cllr`` (bits) of a *perfectly* calibrated system measured on
    ``n_target`` + ``n_nontarget`` trials: what finite test sets make the calibration loss look
    like when there is none.

    The system: Gaussian scores of unit variance, targets at ``d' = 2 Phi^-1(1 - EER)`` and
    non-targets at 0 (its EER is ``eer_percent``; ``d' = 0`` at 50 % or more), whose exact LLR
    ``d' s - d'^2 / 2`` is the calibrated output; min Cllr is fitted by PAV on each draw's own
    trials, as for a real system. Returns the mean over ``draws`` draws (fixed ``seed``: the
    same inputs give the same floor)."""
    if eer_percent <= 0.0:
        return 0.0
    if n_target < 1 or n_nontarget < 1 or draws < 1:
        raise ValueError(
            f"need trials of both classes and draws >= 1, got {n_target}, {n_nontarget}, {draws}"
        )
    d = max(0.0, 2.0 * float(stats.norm.isf(eer_percent / 100.0)))  # an EER of 50 % or more: d' = 0
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.ones(n_target, dtype=bool), np.zeros(n_nontarget, dtype=bool)])
    gaps = []
    for _ in range(draws):
        scores = rng.standard_normal(labels.size) + d * labels
        gaps.append(cllr(d * scores - 0.5 * d * d, labels) - min_cllr(scores, labels))
    return float(np.mean(gaps))


def pooled_calibration(llrs: ArrayLike, labels: ArrayLike) -> dict[str, float]:
    """The LLRs of many conditions judged as one set: ``cllr``, ``min_cllr`` (PAV on the LLRs
    themselves: the best monotonic recalibration of the pooled output), their difference
    ``loss``, and ``n_trials``. A map whose LLR means more in one condition than in another
    loses here even when it is right on average."""
    s, y = check_scores_labels(llrs, labels, allow_inf=True)
    finite = np.where(np.isfinite(s), s, np.sign(s) * 1e6)
    value, low = cllr(s, y), min_cllr(finite, y)
    return {"cllr": value, "min_cllr": low, "loss": value - low, "n_trials": int(y.size)}


def calibration_metrics(
    scores: ArrayLike,
    labels: ArrayLike,
    calibration: Calibration | None,
    p_targets: tuple[float, ...] = (0.01, 0.05),
    sides: tuple[np.ndarray, np.ndarray] | None = None,
    embeddings: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, float]:
    """``min_cllr`` (of the raw scores) always; with a calibration also ``cllr`` and
    ``act_dcf_<p>`` per prior (``sides``: the (N, M) raw quality measures of the enrolment and
    test sides, when the calibration uses them). A calibration with a score normalisation needs
    the (N, D) ``embeddings`` of both sides, and adds ``min_cllr_norm`` and ``eer_norm`` (%), the
    min Cllr and EER of the normalised scores (what its map can reach at best)."""
    out = {"min_cllr": min_cllr(scores, labels)}
    if calibration is not None:
        normalised = calibration.normalised(scores, embeddings)
        llrs = calibration.trial_llr(scores, *(sides or (None, None)), embeddings=embeddings)
        out["cllr"] = cllr(llrs, labels)
        out.update({f"act_dcf_{p:g}": act_dcf(llrs, labels, p) for p in p_targets})
        if calibration.score_norm is not None:
            out["min_cllr_norm"] = min_cllr(normalised, labels)
            out["eer_norm"] = 100.0 * eer(normalised, labels)[0]
    return out


__all__ = [
    "Calibration",
    "act_dcf",
    "bayes_threshold",
    "calibration_for",
    "calibration_loss_floor",
    "calibration_metrics",
    "cllr",
    "threshold_record",
    "fit_calibration",
    "logit",
    "min_cllr",
    "optimal_llrs",
    "pav",
    "pooled_calibration",
]
