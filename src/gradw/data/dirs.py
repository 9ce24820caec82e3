"""Kaldi / WeSpeaker data directories: reading, validating and writing them.

A *speech directory* holds one corpus split:

* ``wav.scp``: ``utt path`` (the path is the rest of the line; absolute, or relative to the
  directory that holds the ``wav.scp``). Piped commands (``... |``) are not supported.
* ``utt2spk``: ``utt spk``; ``spk2utt`` (``spk utt1 utt2 ...``) is derived from it.
* optional ``utt2dur`` (``utt seconds``), ``trials`` (see :mod:`gradw.data.trials`) and
  ``spk2gender`` (``spk m|f``).

An *augmentation directory* holds one ``wav.scp`` per category: ``<root>/noise/wav.scp``,
``<root>/music/wav.scp``, ``<root>/babble/wav.scp`` (MUSAN's ``speech`` is accepted as the name
of the babble category) and ``<root>/rirs/wav.scp``.

Every reader fails with one :class:`~gradw.data.lists.DataError` that names the file and the first
offending keys or line numbers; every writer is atomic.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gradw.data.lists import DataError, _check_key, format_offenders, read_map, write_map
from gradw.data.trials import Trial, read_trials, write_trials

AUGMENT_CATEGORIES: tuple[str, ...] = ("noise", "music", "babble", "rirs")
"""Categories of an augmentation directory, in a fixed order."""

_CATEGORY_ALIASES = {"speech": "babble"}


def _resolve_scp(scp: Path, raw: Mapping[str, str]) -> tuple[dict[str, Path], list[str]]:
    """Turn ``wav.scp`` values into absolute paths (relative ones against the scp's folder)."""
    base = scp.parent.absolute()
    wavs: dict[str, Path] = {}
    piped: list[str] = []
    for key, value in raw.items():
        if value.endswith("|") or value.startswith("|"):
            piped.append(key)
            continue
        wavs[key] = _absolute_under(base, value)
    return wavs, piped


def check_duration(
    utt: str,
    path: Path,
    num_samples: int,
    min_samples: int,
    what: str,
    sample_rate: int = 16000,
    more: int = 0,
) -> None:
    """Refuse an utterance of ``num_samples`` (at ``sample_rate``) shorter than ``min_samples``.

    Args:
        utt: the utterance id; path: its file (both named in the message).
        num_samples: its length; min_samples: the least ``what`` needs (both at ``sample_rate``).
        what: what needs them, e.g. ``"the scorer resnet34"``.
        more: how many other utterances are too short as well (said in the message).

    Raises:
        DataError: ``PATH: utterance 'ID' lasts 10.0 ms, shorter than the 80.0 ms (1280 samples
            at 16 kHz) that WHAT needs``.
    """
    if num_samples >= min_samples:
        return
    rate = f"{sample_rate / 1000:g} kHz"
    others = f" ({more} other utterance(s) too)" if more else ""
    raise DataError(
        f"{path}: utterance {utt!r} lasts {1000 * num_samples / sample_rate:.1f} ms, shorter than the "
        f"{1000 * min_samples / sample_rate:.1f} ms ({min_samples} samples at {rate}) that {what} "
        f"needs{others}; remove it from the list"
    )


def _check_files(wavs: Mapping[str, Path], check_audio: bool) -> tuple[list[str], list[str]]:
    """Return the keys whose file is missing and those whose file is not readable audio."""
    missing = [key for key, path in wavs.items() if not path.is_file()]
    unreadable: list[str] = []
    if check_audio:
        from gradw.audio.io import audio_info  # imported here: io depends on nothing in data

        skip = set(missing)
        for key, path in wavs.items():
            if key in skip:
                continue
            try:
                audio_info(path)
            except Exception as exc:  # any decoder failure means "not readable"
                unreadable.append(f"{key} ({type(exc).__name__})")
    return missing, unreadable


@dataclass
class SpeechDir:
    """A Kaldi-style speech data directory held in memory.

    Attributes:
        root: the directory (absolute).
        wavs: utterance -> absolute audio path.
        utt2spk: utterance -> speaker.
        utt2dur: utterance -> duration in seconds, or None.
        trials: the trial list, or None.
        spk2gender: speaker -> ``m``/``f``, or None.
        spk2utt: speaker -> sorted utterances, derived from ``utt2spk`` when the object is built
            (treat a ``SpeechDir`` as read-only; use :meth:`subset` to derive a smaller one).
    """

    root: Path
    wavs: dict[str, Path]
    utt2spk: dict[str, str]
    utt2dur: dict[str, float] | None = None
    trials: list[Trial] | None = None
    spk2gender: dict[str, str] | None = None
    spk2utt: dict[str, list[str]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root).absolute()
        spk2utt: dict[str, list[str]] = {}
        for utt in sorted(self.utt2spk):
            spk2utt.setdefault(self.utt2spk[utt], []).append(utt)
        self.spk2utt = dict(sorted(spk2utt.items()))

    def __len__(self) -> int:
        return len(self.wavs)

    @property
    def utts(self) -> list[str]:
        """Utterance ids, sorted."""
        return sorted(self.wavs)

    @property
    def speakers(self) -> list[str]:
        """Speaker ids, sorted (index ``i`` of this list is speaker class ``i``)."""
        return list(self.spk2utt)

    @classmethod
    def load(cls, root: str | os.PathLike[str], check_audio: bool = True) -> SpeechDir:
        """Read and validate a speech directory.

        Checks: ``wav.scp`` and ``utt2spk`` exist and are non-empty and have the same keys; every
        audio file exists (and, with ``check_audio``, has a readable header); ``spk2utt``, when
        present, agrees with ``utt2spk``; ``utt2dur`` names only known utterances and holds
        positive numbers; trials name only known utterances; ``spk2gender`` holds ``m``/``f``.

        Raises:
            DataError: one error listing every problem found, each with its first offenders.
        """
        root = Path(root).absolute()
        if not root.is_dir():
            raise DataError(f"{root}: not a directory")
        if (root / "segments").exists():
            raise DataError(f"{root / 'segments'}: 'segments' files are not supported; cut the audio first")
        scp_path, u2s_path = root / "wav.scp", root / "utt2spk"
        raw_scp = read_map(scp_path)
        utt2spk = read_map(u2s_path)
        problems: list[str] = []
        if not raw_scp:
            problems.append(f"{scp_path}: empty")
        if not utt2spk:
            problems.append(f"{u2s_path}: empty")
        wavs, piped = _resolve_scp(scp_path, raw_scp)
        if piped:
            problems.append(f"{scp_path}: piped commands are not supported: {format_offenders(piped)}")
        only_scp = sorted(set(raw_scp) - set(utt2spk))
        only_u2s = sorted(set(utt2spk) - set(raw_scp))
        if only_scp:
            problems.append(f"{u2s_path}: no speaker for utterance(s) {format_offenders(only_scp)}")
        if only_u2s:
            problems.append(f"{scp_path}: no audio for utterance(s) {format_offenders(only_u2s)}")
        bad_spk = sorted(utt for utt, spk in utt2spk.items() if " " in spk or "\t" in spk)
        if bad_spk:
            problems.append(f"{u2s_path}: speaker id contains whitespace for {format_offenders(bad_spk)}")
        missing, unreadable = _check_files(wavs, check_audio)
        if missing:
            problems.append(f"{scp_path}: file(s) not found for {format_offenders(sorted(missing))}")
        if unreadable:
            problems.append(f"{scp_path}: unreadable audio for {format_offenders(sorted(unreadable))}")

        utt2dur = None
        if (root / "utt2dur").exists():
            utt2dur, dur_problems = _read_utt2dur(root / "utt2dur", set(raw_scp))
            problems.extend(dur_problems)
        trials = None
        if (root / "trials").exists():
            trials = read_trials(root / "trials")
            if not trials:
                problems.append(f"{root / 'trials'}: empty")
            unknown = sorted({u for t in trials for u in (t.enroll, t.test)} - set(raw_scp))
            if unknown:
                problems.append(f"{root / 'trials'}: unknown utterance(s) {format_offenders(unknown)}")
        spk2gender = None
        if (root / "spk2gender").exists():
            spk2gender = read_map(root / "spk2gender")
            bad = sorted(spk for spk, g in spk2gender.items() if g not in ("m", "f"))
            if bad:
                problems.append(f"{root / 'spk2gender'}: gender not 'm' or 'f' for {format_offenders(bad)}")
        if (root / "spk2utt").exists() and not problems:
            problems.extend(_check_spk2utt(root / "spk2utt", utt2spk))
        if problems:
            raise DataError("; ".join(problems))
        return cls(root, wavs, utt2spk, utt2dur, trials, spk2gender)

    def spread_speakers(self, n: int) -> SpeechDir:
        """A ``SpeechDir`` with ``n`` of the speakers, evenly spaced in the sorted list.

        Speaker ids are sorted, so ids that share a prefix (a source, a corpus) sit together;
        even spacing keeps every such group represented in proportion. Deterministic.

        Raises:
            DataError: ``n`` is below 1 or above the number of speakers.
        """
        speakers = self.speakers
        if not 1 <= n <= len(speakers):
            raise DataError(f"{self.root}: cannot keep {n} speakers of {len(speakers)}")
        chosen = {speakers[(i * len(speakers)) // n] for i in range(n)}
        return self.subset(u for u, s in self.utt2spk.items() if s in chosen)

    def check_durations(self, min_samples: int, what: str, sample_rate: int = 16000) -> None:
        """Refuse utterances shorter than ``min_samples`` at ``sample_rate``, from the files'
        headers (nothing is decoded): see :func:`check_duration`.

        Raises:
            DataError: naming the first short utterance, its file, its duration and the minimum.
            gradw.audio.io.AudioError: a header cannot be read (naming the file).
        """
        from gradw.audio.io import audio_info  # imported here: io depends on nothing in data

        short: list[tuple[str, int]] = []
        for utt in self.utts:
            rate, frames, _ = audio_info(self.wavs[utt])
            num_samples = frames * sample_rate // rate
            if num_samples < min_samples:
                short.append((utt, num_samples))
        if short:
            utt, num_samples = short[0]
            check_duration(utt, self.wavs[utt], num_samples, min_samples, what, sample_rate, len(short) - 1)

    def subset(self, utts: Iterable[str]) -> SpeechDir:
        """A new ``SpeechDir`` (same root) restricted to ``utts``.

        Trials are kept when both sides are in the subset; ``utt2dur`` and ``spk2gender`` are
        filtered accordingly.

        Raises:
            DataError: an utterance is unknown.
        """
        keep = set(utts)
        unknown = sorted(keep - set(self.wavs))
        if unknown:
            raise DataError(f"{self.root}: subset names unknown utterance(s) {format_offenders(unknown)}")
        utt2spk = {u: s for u, s in self.utt2spk.items() if u in keep}
        speakers = set(utt2spk.values())
        return SpeechDir(
            root=self.root,
            wavs={u: p for u, p in self.wavs.items() if u in keep},
            utt2spk=utt2spk,
            utt2dur=None if self.utt2dur is None else {u: d for u, d in self.utt2dur.items() if u in keep},
            trials=None
            if self.trials is None
            else [t for t in self.trials if t.enroll in keep and t.test in keep],
            spk2gender=None
            if self.spk2gender is None
            else {s: g for s, g in self.spk2gender.items() if s in speakers},
        )


def _read_utt2dur(path: Path, known: set[str]) -> tuple[dict[str, float], list[str]]:
    raw = read_map(path)
    problems = []
    unknown = sorted(set(raw) - known)
    if unknown:
        problems.append(f"{path}: unknown utterance(s) {format_offenders(unknown)}")
    utt2dur: dict[str, float] = {}
    bad: list[str] = []
    for utt, value in raw.items():
        try:
            dur = float(value)
        except ValueError:
            dur = float("nan")
        if not dur > 0 or dur == float("inf"):
            bad.append(utt)
        else:
            utt2dur[utt] = dur
    if bad:
        problems.append(f"{path}: duration not a positive number for {format_offenders(sorted(bad))}")
    return utt2dur, problems


def _check_spk2utt(path: Path, utt2spk: Mapping[str, str]) -> list[str]:
    pairs: dict[str, str] = {}
    for spk, value in read_map(path).items():
        for utt in value.split():
            pairs[utt] = spk
    wrong = sorted(utt for utt in set(pairs) | set(utt2spk) if pairs.get(utt) != utt2spk.get(utt))
    if wrong:
        return [f"{path}: disagrees with utt2spk for {format_offenders(wrong)}"]
    return []


def _scp_text(path: Path, base: Path, anchor: Path, relative: bool) -> str:
    """The ``wav.scp`` value for ``path``: relative to ``base`` (the scp's folder, POSIX form)
    when asked for and ``path`` lies under ``anchor``; absolute otherwise."""
    if relative and path.is_relative_to(anchor):
        return Path(os.path.relpath(path, base)).as_posix()
    return str(path)


def _absolute_under(base: Path, path: str | os.PathLike[str]) -> Path:
    """``path`` made absolute against ``base`` and lexically normalised (``a/../b`` -> ``b``)."""
    path = Path(path).expanduser()
    return Path(os.path.normpath(path if path.is_absolute() else base / path))


def _scp_entries(
    scp: Path, wavs: Mapping[str, str | os.PathLike[str]], anchor: Path, relative: bool
) -> dict[str, str]:
    base = scp.parent.absolute()
    entries = {}
    for key, value in wavs.items():
        _check_key(scp, key)
        text = _scp_text(_absolute_under(base, value), base, anchor, relative)
        if text.endswith("|"):
            raise DataError(f"{scp}: piped commands are not supported ({key!r})")
        entries[key] = text
    return entries


def write_speech_dir(
    root: str | os.PathLike[str],
    wavs: Mapping[str, str | os.PathLike[str]],
    utt2spk: Mapping[str, str],
    utt2dur: Mapping[str, float] | None = None,
    trials: Sequence[Trial] | None = None,
    spk2gender: Mapping[str, str] | None = None,
    relative: bool = True,
) -> SpeechDir:
    """Write a speech directory: ``wav.scp``, ``utt2spk``, ``spk2utt`` and, when given,
    ``utt2dur``, ``trials`` (Kaldi order) and ``spk2gender``.

    Paths in ``wavs`` that are relative are taken relative to ``root`` (the ``wav.scp``
    convention). With ``relative`` (default), paths under ``root`` are written relative to it,
    so the directory can be moved; others are written absolute. Optional files that are not given
    are removed if a previous write left them, so the directory stays consistent. Everything is
    checked before anything is written.

    Returns:
        The written directory as a :class:`SpeechDir` (audio not checked).

    Raises:
        DataError: inconsistent keys (nothing is written).
    """
    root = Path(root).absolute()
    problems = []
    only_wavs = sorted(set(wavs) - set(utt2spk))
    only_spk = sorted(set(utt2spk) - set(wavs))
    if not wavs:
        problems.append("no utterances")
    if only_wavs:
        problems.append(f"no speaker for {format_offenders(only_wavs)}")
    if only_spk:
        problems.append(f"no audio for {format_offenders(only_spk)}")
    if utt2dur is not None:
        unknown = sorted(set(utt2dur) - set(wavs))
        if unknown:
            problems.append(f"utt2dur names unknown utterance(s) {format_offenders(unknown)}")
    if trials is not None:
        unknown = sorted({u for t in trials for u in (t.enroll, t.test)} - set(wavs))
        if unknown:
            problems.append(f"trials name unknown utterance(s) {format_offenders(unknown)}")
    if problems:
        raise DataError(f"{root}: cannot write speech directory: " + "; ".join(problems))

    entries = _scp_entries(root / "wav.scp", wavs, root, relative)
    directory = SpeechDir(
        root=root,
        wavs={k: _absolute_under(root, v) for k, v in wavs.items()},
        utt2spk=dict(utt2spk),
        utt2dur=None if utt2dur is None else {k: float(v) for k, v in utt2dur.items()},
        trials=None if trials is None else list(trials),
        spk2gender=None if spk2gender is None else dict(spk2gender),
    )
    write_map(root / "wav.scp", entries)
    write_map(root / "utt2spk", directory.utt2spk)
    write_map(root / "spk2utt", {spk: " ".join(utts) for spk, utts in directory.spk2utt.items()})
    optional: dict[str, object] = {"utt2dur": utt2dur, "trials": trials, "spk2gender": spk2gender}
    for name, value in optional.items():
        if value is None:
            (root / name).unlink(missing_ok=True)
    if directory.utt2dur is not None:
        write_map(root / "utt2dur", directory.utt2dur)
    if directory.trials is not None:
        write_trials(root / "trials", directory.trials)
    if directory.spk2gender is not None:
        write_map(root / "spk2gender", directory.spk2gender)
    return directory


def _category(name: str) -> str:
    category = _CATEGORY_ALIASES.get(name, name)
    if category not in AUGMENT_CATEGORIES:
        raise DataError(
            f"unknown augmentation category {name!r}; expected one of {', '.join(AUGMENT_CATEGORIES)} "
            "('speech' is accepted for 'babble')"
        )
    return category


@dataclass
class AugmentDir:
    """Augmentation audio by category.

    Attributes:
        root: the directory (absolute).
        categories: category (``noise``, ``music``, ``babble``, ``rirs``) -> key -> absolute path,
            only for the categories present.
    """

    root: Path
    categories: dict[str, dict[str, Path]]

    def __post_init__(self) -> None:
        self.root = Path(self.root).absolute()

    def __contains__(self, category: str) -> bool:
        return _CATEGORY_ALIASES.get(category, category) in self.categories

    def keys(self, category: str) -> list[str]:
        """Sorted keys of one category (empty when the category is absent)."""
        return sorted(self.categories.get(_CATEGORY_ALIASES.get(category, category), {}))

    def path(self, category: str, key: str) -> Path:
        """The audio path of ``key`` in ``category``."""
        try:
            return self.categories[_CATEGORY_ALIASES.get(category, category)][key]
        except KeyError:
            raise DataError(f"{self.root}: no {category!r} entry {key!r}") from None

    def fingerprints(self, head_bytes: int = 8192) -> np.ndarray:
        """(K,) sorted unique uint64 fingerprints of the audio files, one per distinct recording.

        A fingerprint hashes the category, the file's size and its first ``head_bytes`` bytes: it
        follows the content, not the path, so a moved corpus keeps its fingerprints and two
        different files that share a name do not collide. Training records those of its
        augmentation in its checkpoints; the evaluation compares them with its test noise.

        Raises:
            DataError: a file cannot be read (names it).
        """
        values = set()
        for category, entries in self.categories.items():
            for path in entries.values():
                try:
                    with open(path, "rb") as handle:
                        head = handle.read(head_bytes)
                    size = path.stat().st_size
                except OSError as exc:
                    raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
                digest = hashlib.sha1(f"{category}|{size}|".encode() + head).digest()
                values.add(int.from_bytes(digest[:8], "little"))
        return np.array(sorted(values), dtype=np.uint64)

    @classmethod
    def load(cls, root: str | os.PathLike[str], check_audio: bool = False) -> AugmentDir:
        """Read ``<root>/<category>/wav.scp`` for every category present.

        ``<root>/speech/wav.scp`` (MUSAN's name) is read as the babble category.

        Raises:
            DataError: no category present, both ``speech`` and ``babble`` present, an empty
                list, or missing (or, with ``check_audio``, unreadable) files.
        """
        root = Path(root).absolute()
        if not root.is_dir():
            raise DataError(f"{root}: not a directory")
        categories: dict[str, dict[str, Path]] = {}
        problems: list[str] = []
        if (root / "speech" / "wav.scp").exists() and (root / "babble" / "wav.scp").exists():
            raise DataError(f"{root}: both 'speech' and 'babble' lists exist; keep one")
        for name in (*AUGMENT_CATEGORIES, "speech"):
            scp = root / name / "wav.scp"
            if not scp.exists():
                continue
            raw = read_map(scp)
            if not raw:
                problems.append(f"{scp}: empty")
                continue
            wavs, piped = _resolve_scp(scp, raw)
            if piped:
                problems.append(f"{scp}: piped commands are not supported: {format_offenders(piped)}")
            missing, unreadable = _check_files(wavs, check_audio)
            if missing:
                problems.append(f"{scp}: file(s) not found for {format_offenders(sorted(missing))}")
            if unreadable:
                problems.append(f"{scp}: unreadable audio for {format_offenders(sorted(unreadable))}")
            categories[_category(name)] = wavs
        if problems:
            raise DataError("; ".join(problems))
        if not categories:
            raise DataError(
                f"{root}: no augmentation lists; expected <category>/wav.scp for a category in "
                f"{', '.join(AUGMENT_CATEGORIES)}"
            )
        ordered = {c: categories[c] for c in AUGMENT_CATEGORIES if c in categories}
        return cls(root, ordered)


def write_augment_dir(
    root: str | os.PathLike[str],
    category: str,
    wavs: Mapping[str, str | os.PathLike[str]],
    relative: bool = True,
) -> Path:
    """Write ``<root>/<category>/wav.scp`` atomically and return its path.

    ``speech`` is written as ``babble``. Relative input paths are taken relative to the
    category folder (where the ``wav.scp`` lives). With ``relative`` (default), paths under
    ``root`` are written relative to the category folder (``../audio/x.wav`` is fine), so the
    whole directory can be moved; others are written absolute.
    """
    category = _category(category)
    root = Path(root).absolute()
    scp = root / category / "wav.scp"
    if not wavs:
        raise DataError(f"{scp}: no files for category {category!r}")
    write_map(scp, _scp_entries(scp, wavs, root, relative))
    return scp
