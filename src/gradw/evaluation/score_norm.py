"""Adaptive symmetric score normalisation (AS-norm) against a cohort of embeddings.

A cosine score's meaning depends on the two speakers it compares: a speaker population whose
non-target pairs score 0.3 on average needs another threshold than one whose non-target pairs
score 0.1. AS-norm (Matejka et al., Interspeech 2017) measures, for each side of a trial, how
its embedding scores against a cohort of other speakers, keeping only its ``top_n`` closest
cohort entries (the impostors most like it), and standardises the trial's score by those
statistics, symmetrically::

    s_norm = 0.5 * ((s - mu_e) / sigma_e + (s - mu_t) / sigma_t)

with ``mu_x``, ``sigma_x`` the mean and (population) standard deviation of the ``top_n`` highest
cosine scores of side ``x``'s embedding against the cohort. The normalised score is what the
calibration then maps to an LLR (:mod:`gradw.evaluation.calibration`).

The cohort (:class:`ScoreNorm`) is stored with the calibration in the checkpoint, as a small
(C, D) float32 array, so a verifier normalises without any corpus.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

#: the normalisations implemented (``calibration.score_norm.kind``)
SCORE_NORM_KINDS = ("asnorm",)

#: the smallest standard deviation a side's statistics may have (a cohort of identical entries
#: would divide by 0)
MIN_STD = 1e-6


def unit_rows(x: ArrayLike) -> np.ndarray:
    """(..., D) -> (..., D) float64 vectors along the last axis scaled to unit length (zero
    vectors stay zero)."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def cohort_stats(embeddings: ArrayLike, cohort: ArrayLike, top_n: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each embedding's ``top_n`` highest cosine scores against
    the cohort.

    Args:
        embeddings: (N, D) embeddings (any length; compared by cosine).
        cohort: (C, D) cohort embeddings.
        top_n: how many of the highest cohort scores count, 2 <= top_n <= C (the spread of one
            score is 0).

    Returns:
        ``(mean, std)``: two (N,) float64 arrays; ``std`` is the population standard deviation
        (ddof 0), floored at :data:`MIN_STD`.

    Raises:
        ValueError: shapes that do not match, an empty cohort, or ``top_n`` outside [1, C].
    """
    e = np.asarray(embeddings, dtype=np.float64)
    c = np.asarray(cohort, dtype=np.float64)
    if e.ndim != 2 or c.ndim != 2:
        raise ValueError(f"embeddings (N, D) and cohort (C, D) expected, got {e.shape} and {c.shape}")
    if e.shape[1] != c.shape[1]:
        raise ValueError(f"embeddings of dimension {e.shape[1]} but a cohort of dimension {c.shape[1]}")
    if c.shape[0] == 0:
        raise ValueError("the cohort is empty")
    if isinstance(top_n, bool) or not isinstance(top_n, int | np.integer) or not 2 <= top_n <= c.shape[0]:
        raise ValueError(f"top_n must be an integer in [2, {c.shape[0]}] (the cohort's size), got {top_n!r}")
    scores = unit_rows(e) @ unit_rows(c).T  # (N, C)
    top = np.partition(scores, c.shape[0] - top_n, axis=1)[:, c.shape[0] - top_n :]  # (N, top_n)
    return top.mean(axis=1), np.maximum(top.std(axis=1), MIN_STD)


def asnorm(
    scores: ArrayLike,
    enroll_stats: tuple[ArrayLike, ArrayLike],
    test_stats: tuple[ArrayLike, ArrayLike],
) -> np.ndarray:
    """AS-norm of trial scores from their sides' cohort statistics (:func:`cohort_stats`).

    Args:
        scores: (T,) raw cosine scores.
        enroll_stats, test_stats: ``(mean, std)``, each (T,), of the enrolment and test sides.

    Returns:
        (T,) float64 ``0.5 * ((s - mu_e) / sigma_e + (s - mu_t) / sigma_t)``.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    (me, se), (mt, st) = (
        (np.asarray(a, dtype=np.float64) for a in pair) for pair in (enroll_stats, test_stats)
    )
    return 0.5 * ((s - me) / se + (s - mt) / st)


def asnorm_scores(
    scores: ArrayLike, enroll: ArrayLike, test: ArrayLike, cohort: ArrayLike, top_n: int
) -> np.ndarray:
    """(T,) raw scores of trials whose sides have (T, D) embeddings ``enroll`` and ``test`` ->
    (T,) AS-normalised scores against the (C, D) ``cohort``."""
    return asnorm(scores, cohort_stats(enroll, cohort, top_n), cohort_stats(test, cohort, top_n))


@dataclass(frozen=True)
class ScoreNorm:
    """A score normalisation and its cohort, as stored with a calibration.

    Attributes:
        kind: ``"asnorm"`` (:data:`SCORE_NORM_KINDS`).
        top_n: how many of a side's highest cohort scores its statistics use.
        cohort: (C, D) float32 cohort embeddings.
        per_speaker: whether each cohort entry is a speaker's mean embedding (else one utterance).
        described: where the cohort comes from, in words.
    """

    kind: str
    top_n: int
    cohort: np.ndarray
    per_speaker: bool = True
    described: str = ""

    def __post_init__(self) -> None:
        if self.kind not in SCORE_NORM_KINDS:
            raise ValueError(
                f"unknown score normalisation {self.kind!r} (expected {', '.join(SCORE_NORM_KINDS)})"
            )
        cohort = np.asarray(self.cohort, dtype=np.float32)
        if cohort.ndim != 2 or cohort.shape[0] == 0:
            raise ValueError(f"the cohort must be a non-empty (C, D) array, got shape {cohort.shape}")
        if not 2 <= self.top_n <= cohort.shape[0]:
            raise ValueError(f"top_n must be in [2, {cohort.shape[0]}] (the cohort's size), got {self.top_n}")
        object.__setattr__(self, "cohort", cohort)

    @property
    def dim(self) -> int:
        """D, the embedding dimension the cohort needs."""
        return int(self.cohort.shape[1])

    def stats(self, embeddings: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """(N, D) embeddings -> ``(mean, std)``, each (N,) (:func:`cohort_stats`).

        Raises:
            ValueError: embeddings of another dimension than the cohort's.
        """
        return cohort_stats(embeddings, self.cohort, self.top_n)

    def normalise(self, scores: ArrayLike, enroll: ArrayLike, test: ArrayLike) -> np.ndarray:
        """(T,) raw scores and the (T, D) embeddings of their two sides -> (T,) normalised scores."""
        return asnorm(scores, self.stats(enroll), self.stats(test))

    def describe(self) -> str:
        """One phrase for reports, e.g. ``AS-norm (top 20 of a cohort of 49 speaker means)``."""
        entries = "speaker means" if self.per_speaker else "utterances"
        return f"AS-norm (top {self.top_n} of a cohort of {self.cohort.shape[0]} {entries})"

    def to_dict(self, cohort: bool = True) -> dict[str, Any]:
        """Plain types and one float32 tensor (``cohort``; a checkpoint loads it with
        ``weights_only=True``). ``cohort=False``: its shape instead (for JSON records)."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "top_n": int(self.top_n),
            "per_speaker": bool(self.per_speaker),
            "described": self.described,
        }
        if cohort:
            import torch

            out["cohort"] = torch.from_numpy(self.cohort.copy())
        else:
            out["cohort_shape"] = list(self.cohort.shape)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScoreNorm:
        """The inverse of :meth:`to_dict` (the cohort as a tensor, an array or nested lists).

        Raises:
            ValueError: no cohort, or a bad kind, cohort or ``top_n``.
        """
        if data.get("cohort") is None:
            raise ValueError("the stored score normalisation has no cohort")
        cohort = data["cohort"]
        if hasattr(cohort, "detach"):
            cohort = cohort.detach().cpu().numpy()
        return cls(
            kind=str(data.get("kind", "")),
            top_n=int(data.get("top_n", 0)),
            cohort=np.asarray(cohort, dtype=np.float32),
            per_speaker=bool(data.get("per_speaker", True)),
            described=str(data.get("described", "")),
        )


__all__ = [
    "MIN_STD",
    "SCORE_NORM_KINDS",
    "ScoreNorm",
    "asnorm",
    "asnorm_scores",
    "cohort_stats",
    "unit_rows",
]
