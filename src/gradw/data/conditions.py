"""Noisy test conditions: their names, the entries that fix what is added to an utterance, and
rendering an entry into audio (a pure function of the clean audio and the files it names).

A *condition* is a noise category at one SNR, optionally reverberant: ``clean``, ``noise_-5``,
``music_0``, ``babble_-10``, ``noise_-5_rev``, ``clean_rev``. How the entries of a test set are
drawn is :mod:`gradw.data.manifest`'s job.

* A rendered mixture whose peak exceeds 1 is scaled down to a peak of 0.99 (the SNR is
  unchanged), so a written 16-bit copy and the on-the-fly audio agree.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradw.audio.mixing import (
    babble,
    fit_length,
    peak_normalise,
    reverberate,
    snr_gain,
)
from gradw.data.dirs import AugmentDir
from gradw.data.lists import DataError

CONDITION_CATEGORIES: tuple[str, ...] = ("clean", "noise", "music", "babble")
_CATEGORY_STREAM = {"noise": 1, "music": 2, "babble": 3, "rirs": 4}

Loader = Callable[[str, str], np.ndarray]
"""``loader(category, key) -> (M,) float32`` waveform of an augmentation file."""


def _format_snr(snr: float) -> str:
    return str(int(snr)) if float(snr).is_integer() else repr(float(snr))


@dataclass(frozen=True)
class Condition:
    """One test condition.

    Attributes:
        category: ``clean``, ``noise``, ``music`` or ``babble``.
        snr_db: the SNR in dB (None for ``clean``).
        reverb: whether the speech is convolved with a room impulse response.
    """

    category: str
    snr_db: float | None = None
    reverb: bool = False

    def __post_init__(self) -> None:
        if self.category not in CONDITION_CATEGORIES:
            raise ValueError(
                f"unknown condition category {self.category!r}; expected one of "
                f"{', '.join(CONDITION_CATEGORIES)}"
            )
        if self.category == "clean" and self.snr_db is not None:
            raise ValueError("the clean condition has no SNR")
        if self.category != "clean":
            if self.snr_db is None or not math.isfinite(float(self.snr_db)):
                raise ValueError(f"condition {self.category!r} needs a finite SNR, got {self.snr_db!r}")
            object.__setattr__(self, "snr_db", float(self.snr_db))

    @property
    def name(self) -> str:
        """A stable name: ``clean``, ``noise_-5``, ``music_2.5``, ``babble_0_rev`` ..."""
        base = self.category if self.snr_db is None else f"{self.category}_{_format_snr(self.snr_db)}"
        return f"{base}_rev" if self.reverb else base

    def __str__(self) -> str:
        return self.name

    @classmethod
    def from_name(cls, name: str) -> Condition:
        """Parse a name made by :attr:`name`."""
        parts = name.split("_")
        reverb = parts[-1] == "rev"
        if reverb:
            parts = parts[:-1]
        try:
            if parts == ["clean"]:
                return cls("clean", None, reverb)
            if len(parts) == 2:
                return cls(parts[0], float(parts[1]), reverb)
        except ValueError:
            pass
        raise ValueError(f"not a condition name: {name!r} (expected e.g. 'clean', 'noise_-5', 'music_0_rev')")


def _split(values: Sequence[Any] | str) -> list[str]:
    if isinstance(values, str):
        return [v.strip() for v in values.split(",") if v.strip()]
    return [str(v).strip() for v in values]


def parse_conditions(
    categories: Sequence[str] | str,
    snrs: Sequence[float] | str,
    rooms: bool = False,
) -> list[Condition]:
    """Build the condition grid: ``clean`` (if listed) plus every other category at every SNR.

    Args:
        categories: names from ``clean``, ``noise``, ``music``, ``babble`` (a list or a
            comma-separated string).
        snrs: SNRs in dB (a list or a comma-separated string such as ``"-20,-10,0"``).
        rooms: also add the reverberant variant of every condition (``..._rev``), after the dry
            ones.

    Returns:
        Conditions in the given order, without duplicates.
    """
    cats = _split(categories)
    unknown = [c for c in cats if c not in CONDITION_CATEGORIES]
    if unknown:
        raise ValueError(
            f"unknown condition categories {unknown}; expected {', '.join(CONDITION_CATEGORIES)}"
        )
    try:
        levels = [float(s) for s in _split(snrs)]
    except ValueError:
        raise ValueError(f"SNRs must be numbers, got {snrs!r}") from None
    if any(c != "clean" for c in cats) and not levels:
        raise ValueError("noisy condition categories need at least one SNR")
    dry: list[Condition] = []
    for cat in cats:
        for snr in [None] if cat == "clean" else levels:
            condition = Condition(cat, snr, False)
            if condition not in dry:
                dry.append(condition)
    wet = [Condition(c.category, c.snr_db, True) for c in dry] if rooms else []
    return dry + wet


@dataclass(frozen=True)
class Source:
    """One added signal: ``gain * fit_length(file, num_samples, offset)``.

    Attributes:
        category: augmentation category (``noise``, ``music`` or ``babble``).
        key: the file's key in that category.
        offset: start sample (the file is tiled when shorter than the utterance).
        gain: linear gain.
        length: the file's length in samples when the manifest was built (checked on render).
    """

    category: str
    key: str
    offset: int
    gain: float
    length: int


@dataclass(frozen=True)
class RirRef:
    """The room impulse response of a reverberant entry (``rirs`` category)."""

    key: str
    length: int


@dataclass(frozen=True)
class Entry:
    """What to do to one clean utterance for one condition.

    Attributes:
        utt: the utterance id.
        condition: the condition name.
        num_samples: the clean utterance length (checked on render).
        sources: the signals added (empty for clean conditions).
        rir: the RIR, or None.
    """

    utt: str
    condition: str
    num_samples: int
    sources: tuple[Source, ...] = ()
    rir: RirRef | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "utt": self.utt,
            "num_samples": self.num_samples,
            "rir": None if self.rir is None else [self.rir.key, self.rir.length],
            "sources": [[s.category, s.key, s.offset, s.gain, s.length] for s in self.sources],
        }

    @classmethod
    def from_json(cls, condition: str, data: dict[str, Any]) -> Entry:
        rir = data["rir"]
        return cls(
            utt=str(data["utt"]),
            condition=condition,
            num_samples=int(data["num_samples"]),
            sources=tuple(
                Source(str(c), str(k), int(o), float(g), int(n)) for c, k, o, g, n in data["sources"]
            ),
            rir=None if rir is None else RirRef(str(rir[0]), int(rir[1])),
        )


class AudioCache:
    """A least-recently-used cache of decoded audio files, bounded by size.

    ``cache(path) -> (N,) float32`` reads with :func:`gradw.audio.io.read_audio` at
    ``sample_rate``. Arrays are returned read-only (shared between callers). Each process (for
    example each DataLoader worker) holds its own cache.
    """

    def __init__(self, max_mb: float = 256.0, sample_rate: int = 16000) -> None:
        self.max_bytes = int(max_mb * 2**20)
        self.sample_rate = sample_rate
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._bytes = 0

    def __call__(self, path: str | os.PathLike[str]) -> np.ndarray:
        from gradw.audio.io import read_audio

        key = os.fspath(path)
        wav = self._items.get(key)
        if wav is not None:
            self._items.move_to_end(key)
            return wav
        wav = read_audio(key, self.sample_rate)
        wav.setflags(write=False)
        if wav.nbytes <= self.max_bytes:
            self._items[key] = wav
            self._bytes += wav.nbytes
            while self._bytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._bytes -= old.nbytes
        return wav

    def __len__(self) -> int:
        return len(self._items)

    def __getstate__(self) -> dict[str, Any]:  # do not ship cached audio to worker processes
        state = self.__dict__.copy()
        state["_items"] = OrderedDict()
        state["_bytes"] = 0
        return state


def augment_loader(augment: AugmentDir, cache: AudioCache | None = None) -> Loader:
    """A ``loader(category, key)`` reading an augmentation directory through a cache."""
    cache = cache if cache is not None else AudioCache()

    def load(category: str, key: str) -> np.ndarray:
        return cache(augment.path(category, key))

    return load


def _gains(speech: np.ndarray, audio: list[np.ndarray], offsets: list[int], snr: float) -> list[float]:
    """Exact-SNR gains (floor 0): one file scaled directly; several (babble) summed at equal
    level and scaled together (the overall-SNR mode of :func:`gradw.audio.mixing.babble`)."""
    n = speech.shape[0]
    if len(audio) == 1:
        return [snr_gain(speech, fit_length(audio[0], n, offset=offsets[0])[0], snr, floor=0.0)]
    return babble(audio, n, offsets=offsets, speech=speech, snr_db=snr, floor=0.0).gains


def render(entry: Entry, clean_wav: np.ndarray, loader: Loader, clip_guard: bool = True) -> np.ndarray:
    """Mix one manifest entry: the same entry and audio always give bit-identical output.

    Args:
        entry: the manifest entry.
        clean_wav: (N,) float32 clean utterance (``N == entry.num_samples``).
        loader: ``loader(category, key)`` for the augmentation audio (see :func:`augment_loader`).
        clip_guard: scale the mixture down to a peak of 0.99 when it exceeds 1 (SNR unchanged).

    Returns:
        (N,) float32 noisy (and/or reverberant) utterance.

    Raises:
        DataError: the clean audio or an augmentation file does not have the length recorded in
            the manifest (the data changed since the manifest was built).
    """
    clean = np.asarray(clean_wav, dtype=np.float32)
    n = entry.num_samples
    if clean.ndim != 1 or clean.shape[0] != n:
        raise DataError(
            f"utterance {entry.utt!r} ({entry.condition}): clean audio has shape {clean.shape}, "
            f"the manifest expects ({n},)"
        )
    out = clean.copy()
    if entry.rir is not None:
        rir = _checked(loader, "rirs", entry.rir.key, entry.rir.length, entry)
        out = reverberate(clean, rir)[0]
    if entry.sources:
        noise = np.zeros(n, dtype=np.float32)
        for source in entry.sources:
            audio = _checked(loader, source.category, source.key, source.length, entry)
            segment, _ = fit_length(audio, n, offset=source.offset)
            noise += np.float32(source.gain) * segment
        out = out + noise
    if clip_guard:
        out, _ = peak_normalise(out, peak=0.99, only_if_above=1.0)
    return out.astype(np.float32, copy=False)


def _checked(loader: Loader, category: str, key: str, length: int, entry: Entry) -> np.ndarray:
    audio = loader(category, key)
    if audio.shape[0] != length:
        raise DataError(
            f"{category} file {key!r} has {audio.shape[0]} samples, the manifest expects {length} "
            f"(utterance {entry.utt!r}, {entry.condition}); rebuild the manifest"
        )
    return audio
