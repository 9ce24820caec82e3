"""The ``calibration`` section of the train and adapt configs (re-exported by :mod:`gradw.config`,
which checks its values against :data:`gradw.config_ranges.RULES` like every section's)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ScoreNormConfig:
    """Score normalisation before the calibration's map (see gradw.evaluation.score_norm):
    AS-norm against a cohort of the training speakers (``data.train``), embedded through the
    calibrated system itself from clean audio, ``utterances`` per speaker (seeded), stored with the
    calibration. ``per_speaker``: each speaker's mean embedding is one cohort entry (else each
    utterance is); ``top_n``: how many of a side's closest cohort entries its statistics use. The
    defaults were chosen on the demo's validation speakers (see gradw.evaluation.calibration_fit)."""

    kind: str = "asnorm"
    top_n: int = 10
    per_speaker: bool = False
    utterances: int = 4


@dataclass
class CalibrationConfig:
    """The score-to-LLR map of the selected checkpoint (``best.pt``), fitted once at the end of
    training (and by ``gradw calibrate``) on the validation speakers x the validation noise over
    this grid (see gradw.evaluation.calibration_fit), with quality measure functions of blind
    per-recording measures (gradw.evaluation.quality; ``quality: []`` for a map of the score
    alone)."""

    categories: tuple[str, ...] = ("clean", "noise", "music", "babble")
    snrs: tuple[float, ...] = (5.0, 0.0, -5.0, -10.0)
    rooms: bool = False
    # per-recording measures (gradw.audio.quality.MEASURES); each enters as min and max of the sides
    quality: tuple[str, ...] = ("snr_percentile",)
    # measure -> [low, high] (dB, or seconds for durations); missing: the default range
    clip: dict[str, tuple[float, float]] = field(default_factory=dict)
    # also the score times each quality term (the slope then depends on the quality)
    interactions: bool = True
    max_trials: int = 2000
    # normalise the scores against a cohort before the map (None: raw cosine scores)
    score_norm: ScoreNormConfig | None = None


@dataclass
class FusionConfig:
    """The quality-aware fusion of ``gradw fuse`` (see gradw.evaluation.fusion): its weight
    ``sigmoid(a + b * clip(snr_percentile, *clip))`` is fitted on the training speakers
    (``data.train``, at most ``utterances`` each, a seeded draw, and at most ``max_trials``
    balanced trials among them) x the training noise (``data.augment``) over this grid, by the
    mean EER over its conditions, and judged on the validation speakers (``data.val``, at most
    ``max_trials`` of their trials) x the validation noise (``data.val_augment``)."""

    categories: tuple[str, ...] = ("clean", "noise", "music", "babble")
    snrs: tuple[float, ...] = (5.0, 0.0, -5.0, -10.0)
    # the range (dB) the blind SNR estimate is clipped to before the weight
    clip: tuple[float, float] = (-10.0, 15.0)
    utterances: int = 4
    max_trials: int = 1000


__all__ = ["CalibrationConfig", "FusionConfig", "ScoreNormConfig"]
