"""Fitting a calibration where choices are made: validation speakers x validation noise, over a
grid of conditions that spans the evaluation's range.

The validation trials are corrupted as the seeded manifest says (both sides, as in the
evaluation) under every condition of the grid (``clean`` and each category at each SNR, optionally
reverberant), embedded through the system, scored, and the quality measures of every corrupted
recording computed (:mod:`gradw.audio.quality`); one calibration is fitted on every condition's
trials pooled, with :class:`~gradw.evaluation.quality.QualityFunctions` terms when asked
(:func:`gradw.evaluation.calibration.fit_calibration`).

With a score normalisation (:class:`~gradw.evaluation.score_norm.ScoreNorm`), every validation
score is normalised against the cohort before the fit, and the cohort is stored with the
calibration. The cohort (:func:`build_cohort`) is embedded through the calibrated system itself
(G and E, or an adapted student), from clean training utterances: a seeded, fixed number per
speaker, one entry per utterance or per speaker (the unit-length mean of its utterances' unit
embeddings, as WeSpeaker's cohorts of training-speaker means). Per utterance is the default: on
the demo's validation speakers (fit on half of them, judged on the other half) it gave a lower
Cllr than per-speaker means (0.636 bits at top 10 against 0.671; 0.646 without normalisation),
whose 49 entries leave a side's top few statistics noisy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

import numpy as np

from gradw.audio.io import read_audio
from gradw.audio.quality import quality_measures
from gradw.data.conditions import AudioCache, Condition, augment_loader, parse_conditions, render
from gradw.data.dirs import AugmentDir, SpeechDir, check_duration
from gradw.data.manifest import build_manifest
from gradw.data.trials import load_trials, select_trials
from gradw.evaluation.calibration import Calibration, fit_calibration
from gradw.evaluation.quality import QualityFunctions, trial_sides
from gradw.evaluation.score_norm import ScoreNorm
from gradw.evaluation.scoring import score_trials
from gradw.evaluation.systems import System, embed_many


def grid_conditions(categories: Sequence[str], snrs: Sequence[float], rooms: bool = False) -> list[Condition]:
    """The calibration grid: ``clean`` when listed, then every other category at every SNR (and
    each reverberant too with ``rooms``).

    Raises:
        ValueError: an unknown category, or noisy categories without SNRs.
    """
    return parse_conditions(list(categories), list(snrs), rooms=rooms)


def cohort_size(speech: SpeechDir, utterances: int, per_speaker: bool) -> int:
    """How many entries :func:`build_cohort` gives for these speakers."""
    if per_speaker:
        return len(speech.spk2utt)
    return sum(min(utterances, len(utts)) for utts in speech.spk2utt.values())


def cohort_utterances(speech: SpeechDir, utterances: int, seed: int) -> dict[str, list[str]]:
    """Speaker -> a seeded draw of at most ``utterances`` of its utterances (sorted)."""
    rng = np.random.default_rng(seed)
    out = {}
    for spk, utts in speech.spk2utt.items():
        picked = rng.choice(len(utts), size=min(utterances, len(utts)), replace=False)
        out[spk] = sorted(utts[i] for i in picked)
    return out


def build_cohort(
    system: System,
    train_dir: str,
    *,
    kind: str,
    top_n: int,
    utterances: int,
    per_speaker: bool,
    seed: int,
    progress: Callable[[int], None] | None = None,
) -> ScoreNorm:
    """Embed the cohort of a score normalisation through ``system``, from clean audio.

    Args:
        system: what embeds (the system being calibrated).
        train_dir: the training speakers (a data directory).
        kind: the normalisation (:data:`gradw.evaluation.score_norm.SCORE_NORM_KINDS`).
        top_n: its ``top_n`` (at most the cohort's size).
        utterances: at most this many utterances per speaker (a seeded draw).
        per_speaker: one entry per speaker (the unit-length mean of its utterances' unit
            embeddings), else one per utterance.
        seed: the draw's seed.
        progress: called with the number of utterances embedded after each batch.

    Returns:
        The normalisation with its (C, D) float32 cohort.

    Raises:
        DataError: bad lists or audio (named), an utterance too short for the system.
        ValueError: ``top_n`` larger than the cohort.
    """
    speech = SpeechDir.load(train_dir)
    chosen = cohort_utterances(speech, utterances, seed)

    def items():
        for utts in chosen.values():
            for utt in utts:
                wav = read_audio(speech.wavs[utt])
                check_duration(
                    utt, speech.wavs[utt], wav.shape[0], system.scorer.min_samples, "the speaker network"
                )
                yield utt, wav

    emb = embed_many(system, items(), progress=progress)
    unit = {u: e / max(float(np.linalg.norm(e)), 1e-12) for u, e in emb.items()}
    if per_speaker:
        means = [np.mean([unit[u] for u in utts], axis=0) for utts in chosen.values()]
        rows = [m / max(float(np.linalg.norm(m)), 1e-12) for m in means]
    else:
        rows = [unit[u] for utts in chosen.values() for u in utts]
    n_utts = sum(len(u) for u in chosen.values())
    described = (
        f"{len(chosen)} training speakers, {n_utts} clean utterances "
        f"(at most {utterances} per speaker, seed {seed}), "
        + ("one mean embedding per speaker" if per_speaker else "one embedding per utterance")
    )
    return ScoreNorm(kind, top_n, np.stack(rows).astype(np.float32), per_speaker, described)


def grid_items(
    speech: SpeechDir,
    augment_dir: str | None,
    conditions: Sequence[Condition],
    seed: int,
    min_samples: int,
    seen: Callable[[Condition, str, np.ndarray], None] | None = None,
) -> Iterator[tuple[tuple[str, str], np.ndarray]]:
    """Every utterance of ``speech`` under every condition, rendered as the seeded manifest says.

    Args:
        speech: the speakers (every utterance of it is rendered; subset it first).
        augment_dir: the noise (the categories the conditions name; ``rirs`` for rooms); not
            read when every condition is clean.
        conditions: :func:`grid_conditions`.
        seed: the manifest's seed.
        min_samples: the shortest utterance the speaker network takes.
        seen: called with ``(condition, utterance, (N,) rendering)`` before each is yielded.

    Yields:
        ``((condition name, utterance), (N,) float32 waveform)``, utterance-major: one
        utterance's renderings (one length) are adjacent, so they batch together
        (:func:`gradw.evaluation.systems.embed_many`).

    Raises:
        DataError: bad lists or audio (named), an utterance shorter than ``min_samples``.
    """
    noisy = [c for c in conditions if c.category != "clean" or c.reverb]
    if noisy and augment_dir is None:
        raise ValueError("noisy conditions need an augmentation directory")
    augment = AugmentDir.load(augment_dir) if noisy and augment_dir is not None else None
    manifest = build_manifest(speech, augment, noisy, seed) if noisy else None
    loader = augment_loader(augment, AudioCache()) if augment is not None else None
    for utt in sorted(speech.wavs):
        clean = read_audio(speech.wavs[utt])
        check_duration(utt, speech.wavs[utt], clean.shape[0], min_samples, "the speaker network")
        for condition in conditions:
            if condition.category == "clean" and not condition.reverb:
                wav = clean
            else:
                assert manifest is not None and loader is not None
                wav = render(manifest.entry(utt, condition), clean, loader)
            if seen is not None:
                seen(condition, utt, wav)
            yield (condition.name, utt), wav


def fit_on_validation(
    system: System,
    speech_dir: str,
    augment_dir: str,
    conditions: Sequence[Condition],
    functions: QualityFunctions | None,
    max_trials: int | None,
    seed: int,
    prior: float = 0.5,
    log: Callable[[str], None] | None = None,
    progress: Callable[[int], None] | None = None,
    score_norm: ScoreNorm | None = None,
) -> Calibration:
    """Fit the calibration of ``system`` on a validation split under ``conditions``.

    Args:
        system: what embeds (:func:`gradw.evaluation.systems.load_system`).
        speech_dir: the validation speakers (a data directory with ``trials``).
        augment_dir: the validation noise (the categories the grid names; ``rirs`` for rooms).
        conditions: :func:`grid_conditions`.
        functions: the quality measure functions, or None for a map of the score alone.
        max_trials: at most this many trials (a seeded, balanced selection), or None for all.
        seed: the manifest's and the selection's seed.
        prior: the target prior of the fit.
        log: called with a line of progress.
        progress: called with the number of (utterance, condition) items embedded after each batch
            (of ``len(utterances) * len(conditions)``, which ``log`` states first).
        score_norm: normalise every score against its cohort before the fit (:func:`build_cohort`;
            stored with the calibration), or None.

    Returns:
        The calibration, its ``extra`` holding the conditions (the caller adds provenance).

    Raises:
        DataError: a bad list or audio file (named), a recording too short for the system.
    """
    speech = SpeechDir.load(speech_dir)
    trials = select_trials(load_trials(speech, "trials"), max_trials, seed)
    pairs = [(t.enroll, t.test, t.target) for t in trials]
    labels = np.array([t.target for t in trials])
    utts = sorted({u for t in trials for u in (t.enroll, t.test)})
    speech = speech.subset(utts)
    if log is not None:
        log(f"{len(utts)} utterances x {len(conditions)} conditions, {len(trials)} trials each")

    measures: dict[str, dict[str, np.ndarray]] = {c.name: {} for c in conditions}

    def measure(condition: Condition, utt: str, wav: np.ndarray) -> None:
        if functions is not None:
            measures[condition.name][utt] = quality_measures(wav, functions.measures)

    items = grid_items(speech, augment_dir, conditions, seed, system.scorer.min_samples, measure)
    flat = embed_many(system, items, progress=progress)
    scores, columns = [], []
    for condition in conditions:
        s = score_trials({u: flat[condition.name, u] for u in utts}, pairs)
        if score_norm is not None:
            sides = [np.stack([flat[condition.name, p[i]] for p in pairs]) for i in (0, 1)]
            s = score_norm.normalise(s, *sides)
        scores.append(s)
        if functions is not None:
            columns.append(functions.matrix(s, *trial_sides(pairs, measures[condition.name])))
    names = [c.name for c in conditions]
    described = (
        f"validation: {len(speech.spk2utt)} speakers, {len(trials)} trials x {len(names)} conditions "
        f"({', '.join(names)}); quality: {functions.describe() if functions is not None else 'none'}"
        + (f"; scores: {score_norm.describe()}" if score_norm is not None else "")
    )
    calibration = fit_calibration(
        np.concatenate(scores),
        np.tile(labels, len(names)),
        prior=prior,
        quality=np.concatenate(columns) if functions is not None else None,
        quality_names=functions.names if functions is not None else (),
        fitted_on=described,
    )
    return replace(
        calibration,
        quality_functions=functions.to_dict() if functions is not None else {},
        extra={"conditions": names},
        score_norm=score_norm,
    )


__all__ = [
    "build_cohort",
    "cohort_size",
    "cohort_utterances",
    "fit_on_validation",
    "grid_conditions",
    "grid_items",
]
