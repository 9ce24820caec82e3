"""Reproducible noisy test conditions: a seeded manifest, on-the-fly rendering, pre-mixed copies.

A *condition* is a noise category at one SNR, optionally reverberant: ``clean``, ``noise_-5``,
``music_0``, ``babble_-10``, ``noise_-5_rev``, ``clean_rev``. A *manifest* fixes, for every
(test utterance, condition), exactly what is added: the noise file(s), their start offsets, their
gains and the RIR. Rendering an entry is then a pure function of the clean audio and those
files, so the same entry always gives bit-identical audio, whether mixed on the fly during
evaluation or written once as a pre-mixed copy (:func:`write_condition`).

How the manifest is drawn (all from ``seed``):

* Gains are computed from the actual audio with ``floor=0`` (see :mod:`gradw.audio.mixing`), so
  a condition labelled -10 dB is -10 dB. Noise segments quieter than ``min_noise_db`` are
  skipped (another offset, then another file, is drawn).
* ``noise`` and ``music``: one file per utterance. Files are dealt to the utterances from
  successive seeded shuffles of the list, so consecutive utterances never share a file while
  there are more files than utterances, and every file is used about equally often.
* ``babble``: ``babble_talkers`` (5) distinct files from the babble pool, each at a random
  offset, summed at equal level and scaled to the nominal SNR (the overall-SNR mode of
  :func:`gradw.audio.mixing.babble`, so the nominal SNR is the true SNR).
* The noise files and offsets of an utterance are the same at every SNR of a category (only the
  gain changes), so SNR curves compare like with like.
* Reverberant conditions (``_rev``) convolve the clean utterance with one RIR per utterance
  (aligned on the direct path, see :func:`gradw.audio.mixing.reverberate`); the SNR is then
  relative to the reverberant speech, the signal actually in the mixture.
* A rendered mixture whose peak exceeds 1 is scaled down to a peak of 0.99 (the SNR is
  unchanged), so a written 16-bit copy and the on-the-fly audio agree.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gradw.audio.mixing import (
    MixingError,
    babble,
    fit_length,
    peak_normalise,
    power_db,
    reverberate,
    snr_gain,
)
from gradw.data.dirs import AugmentDir, SpeechDir, write_speech_dir
from gradw.data.lists import DataError, atomic_write_text, format_offenders

__all__ = [
    "AudioCache",
    "CONDITION_CATEGORIES",
    "Condition",
    "Entry",
    "Manifest",
    "RirRef",
    "Source",
    "augment_loader",
    "build_manifest",
    "parse_conditions",
    "render",
    "write_condition",
]

CONDITION_CATEGORIES: tuple[str, ...] = ("clean", "noise", "music", "babble")
_CATEGORY_STREAM = {"noise": 1, "music": 2, "babble": 3, "rirs": 4}
_FORMAT = "gradw.conditions.manifest"
_VERSION = 1
_MARKER = "condition.json"

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
                raise ValueError(f"condition {self.category!r} needs a finite SNR")
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


@dataclass
class Manifest:
    """Every (utterance, condition) of a noisy test set, fixed.

    Attributes:
        seed: the seed it was drawn from.
        conditions: the conditions, in order.
        entries: condition name -> utterance -> :class:`Entry`.
        test_root / augment_root: where the audio came from (informational; used by
            :func:`write_condition` when no directories are passed).
        sample_rate: the rate of every offset and length.
    """

    seed: int
    conditions: list[Condition]
    entries: dict[str, dict[str, Entry]]
    test_root: str | None = None
    augment_root: str | None = None
    sample_rate: int = 16000

    def entry(self, utt: str, condition: Condition | str) -> Entry:
        """The entry of ``utt`` under ``condition``."""
        name = condition if isinstance(condition, str) else condition.name
        try:
            return self.entries[name][utt]
        except KeyError:
            raise DataError(f"manifest has no entry for utterance {utt!r} under {name!r}") from None

    @property
    def utts(self) -> list[str]:
        """Utterances covered, sorted."""
        return sorted(next(iter(self.entries.values()), {}))

    def _body(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "seed": self.seed,
            "sample_rate": self.sample_rate,
            "test_root": self.test_root,
            "augment_root": self.augment_root,
            "conditions": [c.name for c in self.conditions],
            "entries": {
                name: [self.entries[name][utt].to_json() for utt in sorted(self.entries[name])]
                for name in (c.name for c in self.conditions)
            },
        }

    @property
    def hash(self) -> str:
        """SHA-256 of the manifest's content (not of the roots, so a moved corpus keeps it)."""
        body = self._body()
        body.pop("test_root")
        body.pop("augment_root")
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the manifest as JSON (atomically), with its content hash."""
        body = self._body()
        entries = body.pop("entries")
        body["hash"] = self.hash
        # valid JSON with one entry per line: compact, yet readable and diffable
        lines = [json.dumps(body)[:-1] + ', "entries": {']
        for i, (name, items) in enumerate(entries.items()):
            lines.append(f"{json.dumps(name)}: [")
            lines.extend(json.dumps(e) + ("," if j < len(items) - 1 else "") for j, e in enumerate(items))
            lines.append("]," if i < len(entries) - 1 else "]")
        lines.append("}}")
        atomic_write_text(path, "\n".join(lines) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Manifest:
        """Read a manifest written by :meth:`save` and check its hash.

        Raises:
            DataError: unreadable, another format or version, or a hash mismatch (edited file).
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"{path}: file not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{path}: not a readable JSON manifest ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != _FORMAT or data.get("version") != _VERSION:
            raise DataError(f"{path}: not a gradw condition manifest (version {_VERSION})")
        try:
            conditions = [Condition.from_name(n) for n in data["conditions"]]
            manifest = cls(
                seed=int(data["seed"]),
                conditions=conditions,
                entries={
                    name: {e["utt"]: Entry.from_json(name, e) for e in data["entries"][name]}
                    for name in data["conditions"]
                },
                test_root=data.get("test_root"),
                augment_root=data.get("augment_root"),
                sample_rate=int(data["sample_rate"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{path}: malformed manifest ({type(exc).__name__}: {exc})") from None
        if manifest.hash != data.get("hash"):
            raise DataError(f"{path}: content hash mismatch (the manifest was edited or is corrupt)")
        return manifest


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


def _stream(keys: Sequence[str], rng: np.random.Generator) -> Iterator[str]:
    """Keys from successive shuffles of ``keys`` (each key once per cycle)."""
    while True:
        for i in rng.permutation(len(keys)):
            yield keys[int(i)]


def _utt_stream_key(utt: str) -> int:
    return int.from_bytes(hashlib.sha256(utt.encode()).digest()[:8], "little")


class _Picker:
    """Draws audible segments for one category."""

    def __init__(
        self, category: str, augment: AugmentDir, loader: Loader, seed: int, min_noise_db: float
    ) -> None:
        self.category = category
        self.keys = augment.keys(category)
        self.loader = loader
        self.seed = seed
        self.min_noise_db = min_noise_db
        self.stream = _stream(self.keys, np.random.default_rng([seed, _CATEGORY_STREAM[category]]))

    def _offset(self, key: str, n: int, rng: np.random.Generator, tries: int = 10) -> int | None:
        """The offset of an audible (n,)-sample segment of ``key``, or None after ``tries``."""
        audio = self.loader(self.category, key)
        for _ in range(tries):
            segment, offset = fit_length(audio, n, rng)
            if power_db(segment, 0.0) >= self.min_noise_db:
                return offset
        return None

    def pick(self, utt: str, n: int, count: int) -> list[tuple[str, int]]:
        """``count`` ``(key, offset)`` pairs with audible segments, distinct files when the pool
        allows (a pool smaller than ``count`` reuses files at other offsets)."""
        rng = np.random.default_rng([self.seed, _CATEGORY_STREAM[self.category], _utt_stream_key(utt)])
        chosen: list[tuple[str, int]] = []
        rejected: list[str] = []
        if count == 1:  # dealt from the shared stream: neighbours get different files
            candidates: Iterable[str] = (next(self.stream) for _ in range(len(self.keys)))
        else:
            candidates = [self.keys[int(i)] for i in rng.permutation(len(self.keys))]
        for key in candidates:
            offset = self._offset(key, n, rng)
            if offset is None:
                rejected.append(key)
                continue
            chosen.append((key, offset))
            if len(chosen) == count:
                return chosen
        usable = list(chosen)
        for i in range(10 * count):
            if not usable or len(chosen) == count:
                break
            key = usable[i % len(usable)][0]
            offset = self._offset(key, n, rng)
            if offset is not None:
                chosen.append((key, offset))
        if chosen and len(chosen) == count:
            return chosen
        raise DataError(
            f"{self.category}: no audible segment (>= {self.min_noise_db} dBFS) found for utterance "
            f"{utt!r}; quiet files: {format_offenders(sorted(set(rejected)))}"
        )


def build_manifest(
    test_dir: SpeechDir,
    augment: AugmentDir | None,
    conditions: Sequence[Condition],
    seed: int,
    *,
    loader: Loader | None = None,
    babble_talkers: int = 5,
    min_noise_db: float = -60.0,
    sample_rate: int = 16000,
    progress: Callable[[Iterable[str]], Iterable[str]] | None = None,
) -> Manifest:
    """Fix the noise of every (test utterance, condition), reading the actual audio.

    Args:
        test_dir: the clean test set.
        augment: the noise pools (``noise``/``music``/``babble`` as needed; ``rirs`` for
            reverberant conditions). May be None when only ``clean`` is asked.
        conditions: the conditions (see :func:`parse_conditions`).
        seed: the seed; the same seed, data and conditions give the same manifest.
        loader: ``loader(category, key)`` for augmentation audio (default: a cached reader).
        babble_talkers: talkers per babble mixture.
        min_noise_db: noise segments below this power (dBFS) are not used.
        sample_rate: the rate audio is read at.
        progress: optional wrapper over the utterance iterable (e.g. ``tqdm``).

    Raises:
        DataError: a needed category is missing, a clean utterance is silent, or no audible noise
            segment can be found.
    """
    from gradw.audio.io import read_audio

    if not conditions:
        raise ValueError("no conditions")
    needed = sorted({c.category for c in conditions if c.category != "clean"})
    if any(c.reverb for c in conditions):
        needed.append("rirs")
    missing = [c for c in needed if augment is None or c not in augment]
    if missing:
        where = "no augmentation directory" if augment is None else str(augment.root)
        raise DataError(f"{where}: conditions need the missing categor(ies) {', '.join(missing)}")
    pickers: dict[str, _Picker] = {}
    rir_stream: Iterator[str] | None = None
    if augment is not None:
        if loader is None:
            loader = augment_loader(augment, AudioCache(sample_rate=sample_rate))
        pickers = {c: _Picker(c, augment, loader, seed, min_noise_db) for c in needed if c != "rirs"}
        if "rirs" in needed:
            rir_stream = _stream(
                augment.keys("rirs"), np.random.default_rng([seed, _CATEGORY_STREAM["rirs"]])
            )

    entries: dict[str, dict[str, Entry]] = {c.name: {} for c in conditions}
    utts = test_dir.utts
    for utt in progress(utts) if progress is not None else utts:
        clean = read_audio(test_dir.wavs[utt], sample_rate)
        n = clean.shape[0]
        speech = {False: clean}
        rir_ref = None
        if rir_stream is not None and loader is not None:
            key = next(rir_stream)
            rir = loader("rirs", key)
            rir_ref = RirRef(key, int(rir.shape[0]))
            speech[True] = reverberate(clean, rir)[0]
        picks = {
            cat: picker.pick(utt, n, babble_talkers if cat == "babble" else 1)
            for cat, picker in pickers.items()
        }
        for condition in conditions:
            sources: tuple[Source, ...] = ()
            if condition.category != "clean" and loader is not None and condition.snr_db is not None:
                chosen = picks[condition.category]
                audio = [loader(condition.category, key) for key, _ in chosen]
                offsets = [offset for _, offset in chosen]
                try:
                    gains = _gains(speech[condition.reverb], audio, offsets, condition.snr_db)
                except MixingError as exc:
                    raise DataError(f"{test_dir.wavs[utt]}: utterance {utt!r}: {exc}") from None
                sources = tuple(
                    Source(condition.category, key, offset, gain, int(wav.shape[0]))
                    for (key, offset), wav, gain in zip(chosen, audio, gains, strict=True)
                )
            entries[condition.name][utt] = Entry(
                utt, condition.name, n, sources, rir_ref if condition.reverb else None
            )
    return Manifest(
        seed=seed,
        conditions=list(conditions),
        entries=entries,
        test_root=str(test_dir.root),
        augment_root=None if augment is None else str(augment.root),
        sample_rate=sample_rate,
    )


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


def _utt_path(utt: str) -> str:
    parts = utt.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise DataError(f"utterance id {utt!r} cannot be used as a file name")
    return utt if utt.endswith(".wav") else f"{utt}.wav"


def write_condition(
    manifest: Manifest,
    condition: Condition | str,
    out_dir: str | os.PathLike[str],
    test_dir: SpeechDir | None = None,
    augment: AugmentDir | None = None,
    *,
    overwrite: bool = False,
    progress: Callable[[Iterable[str]], Iterable[str]] | None = None,
) -> SpeechDir:
    """Write pre-mixed copies of one condition as a speech directory (16-bit WAV).

    ``out_dir`` gets ``wav/<utt>.wav``, ``wav.scp``, ``utt2spk``, ``spk2utt``, ``utt2dur``, the
    trials (and ``spk2gender``) of the test set, and ``condition.json`` (condition and manifest
    hash). The directory is built under a temporary name and renamed when complete. If it already
    holds the same condition of the same manifest it is reused; any other existing directory is an
    error unless ``overwrite``.

    Args:
        manifest: the manifest.
        condition: the condition (or its name).
        out_dir: the output directory.
        test_dir / augment: the audio (default: loaded from the roots recorded in the manifest).
        overwrite: replace an existing directory made for another manifest or condition.
        progress: optional wrapper over the utterance iterable.
    """
    from gradw.audio.io import read_audio, write_audio

    name = condition if isinstance(condition, str) else condition.name
    if name not in manifest.entries:
        raise DataError(f"manifest has no condition {name!r}; it has {', '.join(manifest.entries)}")
    out_dir = Path(out_dir).absolute()
    marker = {"condition": name, "manifest_hash": manifest.hash}
    if out_dir.exists():
        try:
            same = json.loads((out_dir / _MARKER).read_text()) == marker
        except (OSError, ValueError):
            same = False
        if same:
            return SpeechDir.load(out_dir, check_audio=False)
        if not overwrite:
            raise DataError(f"{out_dir}: exists and was not made for {name} of this manifest (use overwrite)")
    if test_dir is None:
        if manifest.test_root is None:
            raise DataError("the manifest records no test directory; pass test_dir")
        test_dir = SpeechDir.load(manifest.test_root, check_audio=False)
    entries = manifest.entries[name]
    unknown = sorted(set(entries) - set(test_dir.wavs))
    if unknown:
        raise DataError(
            f"{test_dir.root}: manifest utterance(s) not in the test set: {format_offenders(unknown)}"
        )
    loader: Loader | None = None
    if any(e.sources or e.rir for e in entries.values()):
        if augment is None:
            if manifest.augment_root is None:
                raise DataError("the manifest records no augmentation directory; pass augment")
            augment = AugmentDir.load(manifest.augment_root)
        loader = augment_loader(augment, AudioCache(sample_rate=manifest.sample_rate))

    tmp = out_dir.with_name(f".{out_dir.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        wavs: dict[str, str] = {}
        utts = sorted(entries)
        for utt in progress(utts) if progress is not None else utts:
            clean = read_audio(test_dir.wavs[utt], manifest.sample_rate)
            noisy = render(entries[utt], clean, loader or _no_loader)
            wavs[utt] = f"wav/{_utt_path(utt)}"
            write_audio(tmp / wavs[utt], noisy, manifest.sample_rate)
        keep = set(utts)
        trials = (
            None
            if test_dir.trials is None
            else [t for t in test_dir.trials if t.enroll in keep and t.test in keep]
        )
        utt2spk = {u: test_dir.utt2spk[u] for u in utts}
        speakers = set(utt2spk.values())
        write_speech_dir(
            tmp,
            wavs,
            utt2spk,
            utt2dur={u: entries[u].num_samples / manifest.sample_rate for u in utts},
            trials=trials,
            spk2gender=None
            if test_dir.spk2gender is None
            else {s: g for s, g in test_dir.spk2gender.items() if s in speakers},
        )
        atomic_write_text(tmp / _MARKER, json.dumps(marker) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SpeechDir.load(out_dir, check_audio=False)


def _no_loader(category: str, key: str) -> np.ndarray:
    raise DataError(f"no augmentation audio available for {category} {key!r}")
