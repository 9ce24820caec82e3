"""Quality measure functions: per-trial terms of a quality-aware calibration, and the measures of
every utterance under every condition of an evaluation (cached, keyed by content).

A calibration (:mod:`gradw.evaluation.calibration`) may add linear terms to the LLR of a trial,
``llr = a * score + b + w . q``, where ``q`` is built from blind quality measures of its two
recordings (:mod:`gradw.audio.quality`, computed on the audio each side of the trial received).
:class:`QualityFunctions` says how, and is stored with the calibration so that the evaluation and
the verifier build exactly the same ``q``:

* each measure of each side is clipped to its range (SNRs in dB; durations in seconds, then their
  natural log);
* a trial gets the minimum and the maximum of its two sides (the order of enrolment and test
  does not matter), per measure;
* with ``interactions``, each of those also multiplied by the score: the slope of the LLR then
  depends on the quality too (a condition where scores say little gets a flatter map), not only
  its offset.

Columns, per measure ``m``: ``min_m``, ``max_m``, then ``score*min_m``, ``score*max_m``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gradw.audio.io import audio_length, read_audio, read_windows
from gradw.audio.quality import MEASURES, quality_measures, windowed_quality_measures
from gradw.data.conditions import Condition, render
from gradw.data.dirs import SpeechDir
from gradw.data.manifest import Manifest
from gradw.data.streaming import render_windows
from gradw.evaluation.windows import window_sizes
from gradw.fileio import atomic_path

#: the version of the measures and of the functions: a stored calibration of another version
#: was fitted on numbers this code would not reproduce, and is refused
QUALITY_VERSION = 1
#: the default clip range of each measure (dB for SNRs, seconds for durations)
DEFAULT_CLIP: dict[str, tuple[float, float]] = {
    "snr_percentile": (-10.0, 15.0),
    "snr_wada": (-10.0, 15.0),
    "speech_seconds": (0.5, 60.0),
    "seconds": (0.5, 60.0),
}
#: measures that enter as their natural log (after clipping)
LOG_MEASURES = ("speech_seconds", "seconds")
#: the duration both sides are given in :meth:`QualityFunctions.example_side`
REFERENCE_SECONDS = 5.0


@dataclass(frozen=True)
class QualityFunctions:
    """Which measures a calibration uses and how a trial's terms are built from them.

    Attributes:
        measures: names from :data:`gradw.audio.quality.MEASURES`, in column order.
        clip: one ``(low, high)`` range per measure, in the measure's own unit.
        interactions: also the score times each min/max term.
        version: :data:`QUALITY_VERSION` of the code that fitted it.
    """

    measures: tuple[str, ...]
    clip: tuple[tuple[float, float], ...]
    interactions: bool = True
    version: int = QUALITY_VERSION

    def __post_init__(self) -> None:
        unknown = [m for m in self.measures if m not in MEASURES]
        if unknown:
            raise ValueError(
                f"unknown quality measure(s) {', '.join(unknown)} (known: {', '.join(MEASURES)})"
            )
        if len(set(self.measures)) != len(self.measures):
            raise ValueError(f"quality measures listed twice: {', '.join(self.measures)}")
        if len(self.clip) != len(self.measures):
            raise ValueError(f"{len(self.clip)} clip ranges for {len(self.measures)} quality measures")
        for name, (low, high) in zip(self.measures, self.clip, strict=True):
            if not low < high or (name in LOG_MEASURES and low <= 0):
                raise ValueError(f"quality measure {name}: bad clip range [{low}, {high}]")

    @classmethod
    def build(
        cls,
        measures: Sequence[str],
        clip: dict[str, Sequence[float]] | None = None,
        interactions: bool = True,
    ) -> QualityFunctions:
        """Functions of ``measures`` with their :data:`DEFAULT_CLIP` ranges, or those of ``clip``."""
        clip = dict(clip or {})
        stray = sorted(set(clip) - set(measures))
        if stray:
            raise ValueError(f"clip range for {', '.join(stray)}, which is not among the quality measures")
        ranges = tuple(
            tuple(float(v) for v in clip.get(m, DEFAULT_CLIP.get(m, (-np.inf, np.inf)))) for m in measures
        )
        return cls(tuple(measures), ranges, bool(interactions))  # type: ignore[arg-type]

    @property
    def names(self) -> tuple[str, ...]:
        """The column names of :meth:`matrix`."""
        base = [f"{kind}_{m}" for m in self.measures for kind in ("min", "max")]
        return tuple(base + ([f"score*{b}" for b in base] if self.interactions else []))

    def side(self, measures: np.ndarray) -> np.ndarray:
        """(N, M) raw measures of one side -> (N, M) clipped (and log for durations) values."""
        values = np.asarray(measures, dtype=np.float64).reshape(-1, len(self.measures))
        low, high = np.array(self.clip, dtype=np.float64).T
        values = np.clip(values, low, high)
        for j, name in enumerate(self.measures):
            if name in LOG_MEASURES:
                values[:, j] = np.log(values[:, j])
        return values

    def matrix(self, scores: np.ndarray, enroll: np.ndarray, test: np.ndarray) -> np.ndarray:
        """(N,) scores, (N, M) raw measures of each side -> (N, K) terms (columns :attr:`names`)."""
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        a, b = self.side(enroll), self.side(test)
        if a.shape[0] != s.shape[0] or b.shape[0] != s.shape[0]:
            raise ValueError(
                f"{s.shape[0]} scores but {a.shape[0]} and {b.shape[0]} rows of quality measures"
            )
        pairs = np.stack([np.minimum(a, b), np.maximum(a, b)], axis=2).reshape(s.shape[0], -1)
        return np.concatenate([pairs, s[:, None] * pairs], axis=1) if self.interactions else pairs

    def example_side(self, snr_db: float) -> np.ndarray:
        """(M,) raw measures of a recording at an estimated SNR of ``snr_db`` (every SNR measure)
        lasting :data:`REFERENCE_SECONDS` (every duration measure): for stating thresholds."""
        return np.array([REFERENCE_SECONDS if m in LOG_MEASURES else snr_db for m in self.measures])

    def describe(self) -> str:
        """In words, for ``fitted_on`` and the report."""
        parts = [
            f"{m} in [{low:g}, {high:g}]" for m, (low, high) in zip(self.measures, self.clip, strict=True)
        ]
        how = "min and max of the two sides" + (", each also times the score" if self.interactions else "")
        return f"{'; '.join(parts)} ({how})"

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (stored in checkpoints, which load with ``weights_only=True``)."""
        return {
            "measures": list(self.measures),
            "clip": [list(c) for c in self.clip],
            "interactions": self.interactions,
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QualityFunctions:
        """The inverse of :meth:`to_dict`.

        Raises:
            ValueError: another version than this code's (its measures would not be reproduced).
        """
        version = int(data.get("version", 0))
        if version != QUALITY_VERSION:
            raise ValueError(
                f"the calibration's quality measures are of version {version}, this gradw computes "
                f"version {QUALITY_VERSION}: fit it again (gradw calibrate)"
            )
        return cls(
            tuple(str(m) for m in data["measures"]),
            tuple((float(c[0]), float(c[1])) for c in data["clip"]),
            bool(data.get("interactions", True)),
            version,
        )


# ---------------------------------------------------------------------------------------------
# the measures of an evaluation's utterances, cached


class QualityStore:
    """Per-utterance measures on disk, one ``.npz`` per (measures, condition content) key, beside
    the embeddings (:class:`gradw.evaluation.grid.EmbeddingStore`); the same audio gives the same
    measures whatever the system, so the key names no system."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @staticmethod
    def key(
        measures: Sequence[str],
        condition_hash: str,
        condition: str,
        utts: Sequence[str],
        window_seconds: float | None = None,
    ) -> str:
        """The content key of a condition's measures (``window_seconds``: how long utterances
        are cut, which changes their measures)."""
        digest = hashlib.sha256()
        for part in (
            f"quality-v{QUALITY_VERSION}",
            ",".join(measures),
            condition_hash,
            condition,
            f"window={window_seconds}",
            *sorted(utts),
        ):
            digest.update(part.encode() + b"\0")
        return digest.hexdigest()[:24]

    def path(self, key: str) -> Path:
        return self.root / f"quality-{key}.npz"

    def load(self, key: str) -> dict[str, np.ndarray] | None:
        path = self.path(key)
        if not path.is_file():
            return None
        with np.load(path) as data:
            return dict(zip([str(u) for u in data["utts"]], data["values"], strict=True))

    def save(self, key: str, values: dict[str, np.ndarray]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        utts = sorted(values)
        with atomic_path(self.path(key)) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, utts=np.array(utts), values=np.stack([values[u] for u in utts]))


def _measure(audio: np.ndarray | Iterable[np.ndarray], names: tuple[str, ...]) -> np.ndarray:
    """(M,) measures of a (N,) waveform, or of a recording given as its consecutive windows."""
    if isinstance(audio, np.ndarray):
        return quality_measures(audio, names)
    return windowed_quality_measures(audio, names)


def condition_measures(
    store: QualityStore,
    measures: Sequence[str],
    keys: dict[str, str],
    utts: Sequence[str],
    audio: Callable[[str, str], np.ndarray | Iterable[np.ndarray]],
) -> dict[str, dict[str, np.ndarray]]:
    """Measures of ``utts`` under each condition: condition -> utt -> (M,) float64.

    Args:
        store: the cache.
        measures: names from :data:`gradw.audio.quality.MEASURES`.
        keys: condition name -> :meth:`QualityStore.key` of its content.
        utts: the utterances.
        audio: ``audio(condition, utt)``: the (N,) waveform the systems receive (the corrupted
            input), or its consecutive windows (a long utterance, measured window by window:
            :func:`gradw.audio.quality.windowed_quality_measures`); called only for conditions
            not cached yet.
    """
    out: dict[str, dict[str, np.ndarray]] = {}
    for condition, key in keys.items():
        cached = store.load(key)
        if cached is None or any(u not in cached for u in utts):
            cached = {u: _measure(audio(condition, u), tuple(measures)) for u in utts}
            store.save(key, cached)
        out[condition] = cached
    return out


def grid_measures(
    names: list[str],
    conditions: list[Condition],
    utts: list[str],
    test: SpeechDir,
    manifest: Manifest,
    loader: Callable[[str, str], np.ndarray] | None,
    store: QualityStore,
    hashes: dict[str, str],
    window_seconds: float | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """The quality measures ``names`` of every utterance under every condition, computed from the
    audio the systems receive (cached like the embeddings, keyed by content): condition -> utt ->
    (M,); empty when no system's calibration uses any. An utterance longer than ``window_seconds``
    is read, rendered and measured window by window, never held whole."""
    if not names:
        return {}
    by_name = {c.name: c for c in conditions}

    def audio(condition: str, utt: str) -> np.ndarray | Iterator[np.ndarray]:
        cond = by_name[condition]
        path = test.wavs[utt]
        sizes = window_sizes(audio_length(path), window_seconds)
        plain = cond.category == "clean" and not cond.reverb
        if len(sizes) > 1:  # a long utterance: read and rendered window by window, as embedded
            if plain:
                return read_windows(path, sizes)
            entry = [manifest.entry(utt, cond)]
            assert loader is not None
            return (w[0] for w in render_windows(entry, lambda: read_windows(path, sizes), sizes, loader))
        clean = read_audio(path)
        if plain:
            return clean
        assert loader is not None
        return render(manifest.entry(utt, cond), clean, loader)

    keys = {c.name: QualityStore.key(names, hashes[c.name], c.name, utts, window_seconds) for c in conditions}
    return condition_measures(store, names, keys, utts, audio)


def trial_sides(
    pairs: Sequence[tuple[str, str, Any]],
    test: dict[str, np.ndarray],
    enroll: dict[str, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(N, M) measures of the enrolment sides and (N, M) of the test sides of ``pairs``
    (``enroll``: the enrolment side's measures when it heard other audio, e.g. clean speech;
    default ``test``'s)."""
    enroll = test if enroll is None else enroll
    return (
        np.stack([enroll[e] for e, _t, _l in pairs]),
        np.stack([test[t] for _e, t, _l in pairs]),
    )


__all__ = [
    "DEFAULT_CLIP",
    "LOG_MEASURES",
    "QUALITY_VERSION",
    "QualityFunctions",
    "QualityStore",
    "condition_measures",
    "grid_measures",
    "trial_sides",
]
