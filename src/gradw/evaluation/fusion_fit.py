"""Fitting a quality-aware fusion (:mod:`gradw.evaluation.fusion`) on training speakers x training
noise, and judging it on validation speakers x validation noise.

Trials are rendered under a grid of conditions exactly as the calibration's are
(:func:`gradw.evaluation.calibration_fit.grid_items`: the seeded manifest, both sides corrupted),
and every rendering is embedded once through an ``@fuse`` system, which gives both of its
embeddings (the system's and the unenhanced one) and the blind SNR estimate of the rendering
(:meth:`gradw.evaluation.systems.System.fusion_parts`); every candidate weighting is then scored
from those arrays without embedding again.

The training speakers have no trial list: :func:`training_trials` draws a seeded number of
utterances per speaker (:func:`gradw.evaluation.calibration_fit.cohort_utterances`) and a balanced
list of target and non-target pairs among them (:func:`gradw.data.trials.make_balanced_trials`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from gradw.data.conditions import Condition
from gradw.data.dirs import SpeechDir
from gradw.data.lists import DataError
from gradw.data.trials import Trial, load_trials, make_balanced_trials, select_trials
from gradw.evaluation.calibration_fit import cohort_utterances, grid_items
from gradw.evaluation.fusion import FusionWeights, mean_eer
from gradw.evaluation.systems import System, embed_many


@dataclass
class FusionData:
    """What a fusion is fitted or judged on: U utterances under C conditions, T trials.

    Attributes:
        e_sys: (C, U, D) float32 the system's unit embeddings.
        e_base: (C, U, D) float32 the unenhanced unit embeddings.
        q: (C, U) float64 blind SNR estimates (dB) of each rendering.
        pairs: (T, 2) int64 indices of the enrolment and test utterances.
        labels: (T,) bool, True for a target trial.
        conditions: the C condition names.
        speakers: how many speakers the utterances come from.
    """

    e_sys: np.ndarray
    e_base: np.ndarray
    q: np.ndarray
    pairs: np.ndarray
    labels: np.ndarray
    conditions: list[str]
    speakers: int

    def describe(self, split: str) -> str:
        """One line: the split, its speakers, trials and conditions."""
        return (
            f"{split}: {self.speakers} speakers, {self.e_sys.shape[1]} utterances, {len(self.labels)} "
            f"trials x {len(self.conditions)} conditions ({', '.join(self.conditions)})"
        )


def training_trials(speech: SpeechDir, utterances: int, max_trials: int, seed: int) -> list[Trial]:
    """A seeded, balanced trial list among at most ``utterances`` utterances of each speaker.

    Raises:
        DataError: fewer than two speakers with two utterances (no target or no non-target).
    """
    chosen = cohort_utterances(speech, utterances, seed)
    trials = make_balanced_trials(chosen, max_trials, seed)
    if not trials:
        raise DataError(
            f"{speech.root}: no target and non-target pairs among {utterances} utterance(s) per "
            "speaker: the fusion needs at least two speakers with two utterances each"
        )
    return trials


def validation_trials(speech: SpeechDir, max_trials: int, seed: int) -> list[Trial]:
    """The validation split's own trial list (``trials``), a seeded selection of at most
    ``max_trials`` (as the calibration selects)."""
    return select_trials(load_trials(speech, "trials"), max_trials, seed)


def collect(
    system: System,
    speech: SpeechDir,
    trials: Sequence[Trial],
    augment_dir: str,
    conditions: Sequence[Condition],
    seed: int,
    progress: Callable[[int], None] | None = None,
) -> FusionData:
    """Render the utterances of ``trials`` under ``conditions`` and embed each once.

    Args:
        system: an ``@fuse`` or ``@qfuse`` system (:meth:`System.fusion_parts`).
        speech: the speakers ``trials`` name.
        trials: the trials.
        augment_dir: the noise of this split.
        conditions: the grid (:func:`gradw.evaluation.calibration_fit.grid_conditions`).
        seed: the manifest's seed.
        progress: called with the number of renderings embedded after each batch.

    Raises:
        DataError: bad lists or audio (named), an utterance too short for the system.
    """
    utts = sorted({u for t in trials for u in (t.enroll, t.test)})
    index = {u: i for i, u in enumerate(utts)}
    subset = speech.subset(utts)
    items = grid_items(subset, augment_dir, conditions, seed, system.scorer.min_samples)
    flat = embed_many(system, items, progress=progress, embed=system.fusion_parts)
    rows = np.stack([np.stack([flat[c.name, u] for u in utts]) for c in conditions])  # (C, U, 2D+1)
    dim = (rows.shape[2] - 1) // 2
    return FusionData(
        e_sys=rows[:, :, :dim],
        e_base=rows[:, :, dim : 2 * dim],
        q=rows[:, :, -1].astype(np.float64),
        pairs=np.array([(index[t.enroll], index[t.test]) for t in trials], dtype=np.int64),
        labels=np.array([t.target for t in trials], dtype=bool),
        conditions=[c.name for c in conditions],
        speakers=len({subset.utt2spk[u] for u in utts}),
    )


def compare(data: FusionData, weights: FusionWeights) -> dict[str, float]:
    """Mean EER (%) over the conditions of ``data``: the system alone (``system``), the unenhanced
    embedding alone (``base``), the fixed average (``fuse``) and ``weights`` (``qfuse``)."""
    lo, hi = weights.lo, weights.hi
    args = (data.e_sys, data.e_base, data.q, data.pairs, data.labels)
    return {
        "system": mean_eer(*args, None),
        "base": mean_eer(data.e_base, data.e_sys, data.q, data.pairs, data.labels, None),
        "fuse": mean_eer(*args, (0.0, 0.0, lo, hi)),
        "qfuse": mean_eer(*args, (weights.a, weights.b, lo, hi)),
    }


__all__ = ["FusionData", "collect", "compare", "training_trials", "validation_trials"]
