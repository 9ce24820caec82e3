"""The calibrated side of :class:`gradw.evaluation.verifier.SpeakerVerifier`: which calibration
applies, the quality measures of a recording, and the log-likelihood ratio of a trial.

A checkpoint's calibration (:mod:`gradw.evaluation.calibration`) maps a trial's score to an LLR,
possibly from quality measures of its two recordings and, with a score normalisation
(:mod:`gradw.evaluation.score_norm`), from the score normalised against the cohort stored with
it: then the LLR needs the two recordings' embeddings, and the default decision is made per
trial on the LLR, not by one cosine threshold.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradw.evaluation.calibration import Calibration, calibration_for
from gradw.evaluation.windows import window_bounds, window_sizes


class CalibratedScoring:
    """Mixed into :class:`~gradw.evaluation.verifier.SpeakerVerifier`, which provides
    ``calibration``, ``threshold``, ``speaker``, ``enhancer``, ``adapted``, ``window_seconds``,
    and the methods ``sample_rate``, ``_mono`` and ``_one_embedding``."""

    calibration: Calibration | None
    threshold: float | None
    speaker: Any
    enhancer: Any
    adapted: dict[str, Any] | None
    window_seconds: float | None
    sample_rate: int
    _mono: Any
    _one_embedding: Any

    def _find_calibration(self, speaker: Any, checkpoint: Any) -> Calibration | None:
        """The checkpoint's calibration, when this verifier scores as the network it was fitted
        with: an adapted student always; G's only with the E it was trained against (same name
        and weights; never random weights).

        Raises:
            ValueError: a calibration of another version of the quality measures, or whose
                cohort is not of the speaker network's embedding dimension.
        """
        from gradw.models.loading import weights_identity

        dim = getattr(self.speaker, "embedding_dim", None)
        if self.adapted is not None:
            return calibration_for(self.adapted.get("calibration"), None, dim)
        stored = getattr(self.enhancer, "calibration", None)
        if not stored or not isinstance(speaker, str):
            return None
        return calibration_for(stored, weights_identity(speaker, checkpoint), dim)

    @property
    def _by_llr(self) -> bool:
        """Whether the default decision is made per trial on the LLR (a calibration that uses
        quality measures or normalises the scores, and no threshold set)."""
        calibration = self.calibration
        return (
            self.threshold is None
            and calibration is not None
            and (bool(calibration.measures) or calibration.score_norm is not None)
        )

    def measures(self, item: Any, sample_rate: int = 16000) -> np.ndarray:
        """(M,) the quality measures of one recording (a (N,) waveform at ``sample_rate``, or a
        path) that this verifier's calibration uses, computed on the 16 kHz mono audio E receives;
        (0,) when it uses none."""
        from gradw.audio.io import audio_length, read_windows
        from gradw.audio.quality import windowed_quality_measures

        names = () if self.calibration is None else self.calibration.measures
        if not names:
            return np.zeros(0)
        if isinstance(item, str) or hasattr(item, "__fspath__"):  # measured window by window
            sizes = window_sizes(audio_length(item, self.sample_rate), self.window_seconds, self.sample_rate)
            return windowed_quality_measures(read_windows(item, sizes, self.sample_rate), names)
        wav = self._mono(item, sample_rate)
        bounds = window_bounds(wav.shape[0], self.window_seconds, self.sample_rate)
        return windowed_quality_measures((wav[start:stop] for start, stop in bounds), names)

    def pair_llr(
        self, score: float, embeddings: tuple[np.ndarray, np.ndarray], measures: tuple[np.ndarray, np.ndarray]
    ) -> float | None:
        """The calibrated LLR of one trial from its raw ``score``, the (D,) embeddings and the
        (M,) measures (:meth:`measures`) of its two recordings; None without a calibration."""
        calibration = self.calibration
        if calibration is None:
            return None
        ea, eb = embeddings
        qa, qb = measures
        value = calibration.trial_llr([score], qa[None], qb[None], embeddings=(ea[None], eb[None]))
        return float(value[0])

    def llr(
        self,
        score: float | np.ndarray,
        a: Any = None,
        b: Any = None,
        sample_rate: int = 16000,
        *,
        sample_rate_b: int | None = None,
    ) -> float | np.ndarray:
        """Calibrated log-likelihood ratio(s) of score(s) (see :attr:`calibration`).

        Args:
            score: a score, or (N,) scores (a calibration of the score alone).
            a, b: the trial's two recordings ((N,) waveforms or paths), which a calibration with
                quality measures (their measures, :meth:`measures`) or a score normalisation
                (their embeddings, normalised against the stored cohort) needs; ``score`` is then
                theirs.
            sample_rate, sample_rate_b: the rates of ``a`` and ``b`` (as ``score``).

        Raises:
            ValueError: this verifier has no calibration (a checkpoint without one, or G used
                with another speaker network than the one it was calibrated with), or one that
                needs the two recordings without them.
        """
        calibration = self.calibration
        if calibration is None:
            raise ValueError("no calibration: a best.pt selected on validation carries one")
        scores = np.atleast_1d(np.asarray(score, dtype=np.float64))
        if not calibration.measures and calibration.score_norm is None:
            values = calibration.llr(scores)
            return float(values[0]) if np.ndim(score) == 0 else values
        if a is None or b is None:
            needs = ", ".join(calibration.measures) or calibration.score_norm.describe()  # type: ignore[union-attr]
            raise ValueError(f"this calibration uses {needs}: give the two recordings")
        rate_b = sample_rate if sample_rate_b is None else sample_rate_b
        n = scores.shape[0]
        sides = [np.repeat(self.measures(x, r)[None], n, 0) for x, r in ((a, sample_rate), (b, rate_b))]
        embeddings = None
        if calibration.score_norm is not None:
            embeddings = tuple(
                np.repeat(self._one_embedding(x, r)[None], n, 0) for x, r in ((a, sample_rate), (b, rate_b))
            )
        values = calibration.trial_llr(scores, *sides, embeddings=embeddings)  # type: ignore[arg-type]
        return float(values[0]) if np.ndim(score) == 0 else values


__all__ = ["CalibratedScoring"]
