"""Quality-aware fusion: a per-utterance weight between a system's embedding and the unenhanced one.

``@fuse`` averages a system's length-normalised embedding ``e_sys`` (G-enhanced, or an adapted
student's) with the unenhanced one ``e_base`` (E on the input without G's mask, or the original
network on the input as is) with a fixed weight of one half. ``@qfuse`` lets the audio decide:

    w(q) = sigmoid(a + b * clip(q, lo, hi))
    fused = normalize(w * e_sys + (1 - w) * e_base)      (e_sys, e_base unit length)

with ``q`` a blind SNR estimate of the recording the system receives
(:func:`gradw.audio.quality.percentile_snr`, in dB, the ``snr_percentile`` measure), clipped to
``[lo, hi]``. ``w = 1/2`` everywhere (``a = b = 0``) is ``@fuse``; ``w -> 1`` the system alone,
``w -> 0`` the unenhanced embedding alone.

``(a, b)`` are chosen by :func:`fit_fusion`: a grid search that minimises the mean EER over a grid
of conditions (each condition's trials scored on its own, as the evaluation reports them), on
training speakers mixed with training noise (:mod:`gradw.evaluation.fusion_fit`). The mean EER
over conditions is the figure the project's benchmark reports and selects by, so the fit
optimises what is measured; a grid search needs no gradient of the EER (a step function) and
visits the constant weights (``b = 0``, including ``@fuse`` and either input alone) as well, so the
fitted weighting is never worse than those on the data it was fitted on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from gradw.audio.quality import percentile_snr
from gradw.evaluation.metrics import eer
from gradw.evaluation.quality import DEFAULT_CLIP, QUALITY_VERSION
from gradw.evaluation.score_norm import unit_rows

#: the quality measure that drives the weight (:data:`gradw.audio.quality.MEASURES`)
FUSION_MEASURE = "snr_percentile"
#: the default clip range of ``q`` (dB): the calibration's range of the same measure
DEFAULT_RANGE: tuple[float, float] = DEFAULT_CLIP[FUSION_MEASURE]
#: the constant weights :func:`fit_fusion` tries (``b = 0``); ``@fuse`` is 0.5
CONSTANT_WEIGHTS = (0.5, 0.0, 0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9, 1.0)
#: the slopes (per dB) :func:`fit_fusion` tries, each sign, at every midpoint of the range
SLOPES = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)
#: ``|a|`` standing in for an infinite logit (a constant weight of exactly 0 or 1)
_SATURATED = 30.0


class FusionError(ValueError):
    """Stored fusion weights that cannot be used; the message names the key."""


def fusion_weight(q: np.ndarray, a: float, b: float, lo: float, hi: float) -> np.ndarray:
    """The weight of the system's embedding: ``sigmoid(a + b * clip(q, lo, hi))``.

    Args:
        q: (B,) blind SNR estimates in dB (any shape; the result has it).
        a, b: the logistic's offset and slope (per dB).
        lo, hi: the clip range of ``q`` in dB.

    Returns:
        (B,) float64 weights in [0, 1].
    """
    z = a + b * np.clip(np.asarray(q, dtype=np.float64), lo, hi)
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # the logistic, without overflow for large |z|


def fuse_embeddings(e_sys: np.ndarray, e_base: np.ndarray, w: np.ndarray | float) -> np.ndarray:
    """``normalize(w * unit(e_sys) + (1 - w) * unit(e_base))``, row by row.

    Args:
        e_sys: (B, D) the system's embeddings.
        e_base: (B, D) the unenhanced embeddings of the same recordings.
        w: (B,) weights of ``e_sys`` in [0, 1] (or one for all).

    Returns:
        (B, D) float32 unit-length embeddings.
    """
    e_sys, e_base = unit_rows(e_sys), unit_rows(e_base)
    w = np.broadcast_to(np.asarray(w, dtype=np.float64), e_sys.shape[:1])[:, None]
    return unit_rows(w * e_sys + (1.0 - w) * e_base).astype(np.float32)


def blind_snr(wavs: np.ndarray) -> np.ndarray:
    """(B, N) float32 16 kHz waveforms -> (B,) blind SNR estimates in dB (``snr_percentile``,
    unclipped beyond the measure's own range)."""
    return np.array([percentile_snr(w) for w in np.asarray(wavs)], dtype=np.float64)


@dataclass(frozen=True)
class FusionWeights:
    """Fitted fusion weights, as a checkpoint stores them (``extra["fusion"]``).

    Attributes:
        a, b: ``w(q) = sigmoid(a + b * clip(q, lo, hi))`` (``b`` per dB).
        lo, hi: the clip range of ``q`` (dB).
        measure: the quality measure (:data:`FUSION_MEASURE`).
        version: :data:`gradw.evaluation.quality.QUALITY_VERSION` of the measure's code.
        extra: provenance (what it was fitted on, the validation figures).
    """

    a: float
    b: float
    lo: float = DEFAULT_RANGE[0]
    hi: float = DEFAULT_RANGE[1]
    measure: str = FUSION_MEASURE
    version: int = QUALITY_VERSION
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for key in ("a", "b", "lo", "hi"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise FusionError(f"fusion.{key}: expected a finite number, got {value!r}")
        if not self.lo < self.hi:
            raise FusionError(f"fusion.lo, fusion.hi: expected lo < hi, got [{self.lo}, {self.hi}]")
        if self.measure != FUSION_MEASURE:
            raise FusionError(f"fusion.measure: {self.measure!r} is not known (expected {FUSION_MEASURE})")
        if self.version != QUALITY_VERSION:
            raise FusionError(
                f"fusion.version: fitted with version {self.version} of the quality measures, this "
                f"code computes version {QUALITY_VERSION}: fit it again (gradw fuse)"
            )

    def weight(self, q: np.ndarray) -> np.ndarray:
        """(B,) SNR estimates in dB -> (B,) weights of the system's embedding."""
        return fusion_weight(q, self.a, self.b, self.lo, self.hi)

    def fuse(self, e_sys: np.ndarray, e_base: np.ndarray, q: np.ndarray) -> np.ndarray:
        """(B, D), (B, D), (B,) -> (B, D) fused unit embeddings (:func:`fuse_embeddings`)."""
        return fuse_embeddings(e_sys, e_base, self.weight(q))

    @property
    def identity(self) -> str:
        """What the fused embeddings depend on (part of a system's cache key)."""
        return f"qfuse:{self.measure}-v{self.version}:a={self.a!r},b={self.b!r},q=[{self.lo!r},{self.hi!r}]"

    def describe(self) -> str:
        """One line: the weight function and its range."""
        return f"w = sigmoid({self.a:.3f} + {self.b:.3f} * clip({self.measure}, {self.lo:g}, {self.hi:g} dB))"

    def to_dict(self) -> dict[str, Any]:
        """Plain types, for a checkpoint."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "fusion") -> FusionWeights:
        """Rebuild from :meth:`to_dict`.

        Raises:
            FusionError: not a mapping, a missing key, a bad value (named; ``where`` prefixes it).
        """
        if not isinstance(data, dict):
            raise FusionError(f"{where}: expected a mapping, got {type(data).__name__}")
        missing = [k for k in ("a", "b", "lo", "hi", "measure", "version") if k not in data]
        if missing:
            raise FusionError(f"{where}: missing key(s) {', '.join(missing)}")
        known = {k: data[k] for k in ("a", "b", "lo", "hi", "measure", "version")}
        try:
            return cls(**known, extra=dict(data.get("extra") or {}))
        except FusionError as exc:
            raise FusionError(f"{where}: {exc}") from None


def candidates(lo: float, hi: float) -> list[tuple[float, float]]:
    """The ``(a, b)`` grid of :func:`fit_fusion`: every constant weight of :data:`CONSTANT_WEIGHTS`
    (``@fuse`` first), then each slope of :data:`SLOPES`, falling and rising, centred on every
    whole dB of ``[lo, hi]`` (``a = -b * midpoint``)."""
    out = []
    for w in CONSTANT_WEIGHTS:
        a = _SATURATED if w >= 1 else -_SATURATED if w <= 0 else math.log(w / (1 - w))
        out.append((a, 0.0))
    midpoints = np.arange(math.ceil(lo), math.floor(hi) + 1)
    for slope in SLOPES:
        for b in (-slope, slope):
            out.extend((float(-b * m), float(b)) for m in midpoints)
    return out


def mean_eer(
    e_sys: np.ndarray,
    e_base: np.ndarray,
    q: np.ndarray,
    pairs: np.ndarray,
    labels: np.ndarray,
    weights: tuple[float, float, float, float] | None,
) -> float:
    """The mean over conditions of the EER (%) of fused embeddings.

    Args:
        e_sys: (C, U, D) the system's embeddings of U utterances under C conditions.
        e_base: (C, U, D) the unenhanced ones.
        q: (C, U) blind SNR estimates (dB) of each rendering.
        pairs: (T, 2) int indices into the U utterances (enrolment, test).
        labels: (T,) bool, True for a target trial.
        weights: ``(a, b, lo, hi)``; None scores ``e_sys`` alone.
    """
    total = 0.0
    for c in range(e_sys.shape[0]):
        if weights is None:
            emb = unit_rows(e_sys[c])
        else:
            emb = fuse_embeddings(e_sys[c], e_base[c], fusion_weight(q[c], *weights))
        scores = np.sum(emb[pairs[:, 0]] * emb[pairs[:, 1]], axis=1)
        total += eer(scores, labels)[0] * 100.0
    return total / e_sys.shape[0]


def fit_fusion(
    e_sys: np.ndarray,
    e_base: np.ndarray,
    q: np.ndarray,
    pairs: np.ndarray,
    labels: np.ndarray,
    lo: float = DEFAULT_RANGE[0],
    hi: float = DEFAULT_RANGE[1],
    grid: Sequence[tuple[float, float]] | None = None,
) -> tuple[float, float, float]:
    """Choose ``(a, b)`` minimising :func:`mean_eer` over ``grid`` (default :func:`candidates`).

    Ties go to the earlier candidate: ``@fuse``, then the other constants, then the gentler
    slopes. Shapes as in :func:`mean_eer`.

    Returns:
        ``(a, b, mean EER %)`` of the best candidate.
    """
    e_sys = unit_rows(e_sys).astype(np.float32)  # once, not per candidate
    e_base = unit_rows(e_base).astype(np.float32)
    pairs = np.asarray(pairs, dtype=np.int64)
    labels = np.asarray(labels, dtype=bool)
    best: tuple[float, float, float] | None = None
    for a, b in grid if grid is not None else candidates(lo, hi):
        value = mean_eer(e_sys, e_base, q, pairs, labels, (a, b, lo, hi))
        if best is None or value < best[2] - 1e-9:
            best = (float(a), float(b), value)
    assert best is not None, "an empty grid"
    return best


__all__ = [
    "CONSTANT_WEIGHTS",
    "DEFAULT_RANGE",
    "FUSION_MEASURE",
    "SLOPES",
    "FusionError",
    "FusionWeights",
    "blind_snr",
    "candidates",
    "fit_fusion",
    "fuse_embeddings",
    "fusion_weight",
    "mean_eer",
]
