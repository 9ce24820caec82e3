"""A seeded manifest of noisy test conditions: for every (test utterance, condition), exactly what
is added.

A *condition* is a noise category at one SNR, optionally reverberant: ``clean``, ``noise_-5``,
``music_0``, ``babble_-10``, ``noise_-5_rev``, ``clean_rev``. A *manifest* fixes, for every
(test utterance, condition), exactly what is added: the noise file(s), their start offsets, their
gains and the RIR. Rendering an entry is then a pure function of the clean audio and those
files, so the same entry always gives bit-identical audio.

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
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gradw.audio.mixing import (
    MixingError,
    draw_offset,
    fitted_power_db,
    reverberate,
)
from gradw.data.conditions import (
    _CATEGORY_STREAM,
    AudioCache,
    Condition,
    Entry,
    Loader,
    RirRef,
    Source,
    _gains,
    augment_loader,
)
from gradw.data.dirs import AugmentDir, SpeechDir
from gradw.data.lists import DataError, atomic_write_text, format_offenders
from gradw.data.streaming import speech_levels, streamed_gains

_FORMAT = "gradw.conditions.manifest"
_VERSION = 1


@dataclass
class Manifest:
    """Every (utterance, condition) of a noisy test set, fixed.

    Attributes:
        seed: the seed it was drawn from.
        conditions: the conditions, in order.
        entries: condition name -> utterance -> :class:`Entry`.
        test_root / augment_root: where the audio came from (informational).
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
        self,
        category: str,
        augment: AugmentDir,
        loader: Loader,
        seed: int,
        min_noise_db: float,
        block: int | None = None,
    ) -> None:
        self.category = category
        self.keys = augment.keys(category)
        self.loader = loader
        self.seed = seed
        self.min_noise_db = min_noise_db
        self.block = block  # a segment is measured this many samples at a time (None: whole)
        self.stream = _stream(self.keys, np.random.default_rng([seed, _CATEGORY_STREAM[category]]))

    def _offset(self, key: str, n: int, rng: np.random.Generator, tries: int = 10) -> int | None:
        """The offset of an audible (n,)-sample segment of ``key``, or None after ``tries``."""
        audio = self.loader(self.category, key)
        if n <= 0:
            raise ValueError(f"n must be positive, got {n}")
        for _ in range(tries):
            offset = draw_offset(audio.shape[0], n, rng)
            if fitted_power_db(audio, n, offset, self.block) >= self.min_noise_db:
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
    window_seconds: float | None = None,
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
        window_seconds: an utterance longer than this is read and measured window by window, so
            that no whole-length copy of it is held (:mod:`gradw.data.streaming`; its gains are
            those of the whole utterance to float rounding); None: every utterance is read whole.

    Raises:
        DataError: a needed category is missing, a clean utterance is silent, or no audible noise
            segment can be found.
    """
    from gradw.audio.io import audio_length, read_audio, stream_audio

    if not conditions:
        raise ValueError("no conditions")
    needed = sorted({c.category for c in conditions if c.category != "clean"})
    if any(c.reverb for c in conditions):
        needed.append("rirs")
    missing = [c for c in needed if augment is None or c not in augment]
    if missing:
        where = "no augmentation directory" if augment is None else str(augment.root)
        raise DataError(f"{where}: conditions need the missing categor(ies) {', '.join(missing)}")
    block = None if window_seconds is None else max(1, round(window_seconds * sample_rate))
    pickers: dict[str, _Picker] = {}
    rir_stream: Iterator[str] | None = None
    if augment is not None:
        if loader is None:
            loader = augment_loader(augment, AudioCache(sample_rate=sample_rate))
        pickers = {c: _Picker(c, augment, loader, seed, min_noise_db, block) for c in needed if c != "rirs"}
        if "rirs" in needed:
            rir_stream = _stream(
                augment.keys("rirs"), np.random.default_rng([seed, _CATEGORY_STREAM["rirs"]])
            )

    entries: dict[str, dict[str, Entry]] = {c.name: {} for c in conditions}
    utts = test_dir.utts
    for utt in progress(utts) if progress is not None else utts:
        path = test_dir.wavs[utt]
        length = None if block is None else audio_length(path, sample_rate)
        long = length is not None and block is not None and length > block
        clean = None if long else read_audio(path, sample_rate)  # a long one is read in windows
        n = length if clean is None else clean.shape[0]
        assert n is not None
        speech = {} if clean is None else {False: clean}
        rir_ref = rir = None
        if rir_stream is not None and loader is not None:
            key = next(rir_stream)
            rir = loader("rirs", key)
            rir_ref = RirRef(key, int(rir.shape[0]))
            if clean is not None:
                speech[True] = reverberate(clean, rir)[0]
        levels = {}
        if clean is None and pickers:  # the levels the gains need, in one pass over the file
            try:
                levels = speech_levels(stream_audio(path, sample_rate), n, rir)
            except DataError as exc:
                raise DataError(f"{path}: utterance {utt!r}: {exc}") from None
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
                    if clean is None:
                        assert block is not None
                        gains = streamed_gains(
                            levels[condition.reverb], audio, offsets, condition.snr_db, n, block
                        )
                    else:
                        gains = _gains(speech[condition.reverb], audio, offsets, condition.snr_db)
                except MixingError as exc:
                    raise DataError(f"{path}: utterance {utt!r}: {exc}") from None
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
