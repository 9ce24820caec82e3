"""VoxCeleb1 and VoxCeleb2 as speech directories, with the Vox1-O trial lists.

Layouts read::

    VOX1/dev/wav/idXXXXX/<youtube_id>/NNNNN.wav      VoxCeleb1 dev (1,211 speakers)
    VOX1/test/wav/idXXXXX/<youtube_id>/NNNNN.wav     VoxCeleb1 test (40 speakers, Vox1-O)
    VOX1/wav/idXXXXX/...                             or both in one folder (as the official zips
                                                     unpack): test speakers = those in the trials
    VOX1/veri_test2.txt, VOX1/veri_test.txt          Vox1-O cleaned / original lists (also looked
                                                     for in VOX1/meta and VOX1/test)
    VOX2/dev/aac/idXXXXX/<youtube_id>/NNNNN.{wav,flac}   VoxCeleb2 dev, converted from m4a
    (also VOX2/dev/wav/..., VOX2/dev/..., or VOX2 pointing at the speaker folders)

Utterance ids are ``idXXXXX/<youtube_id>/NNNNN`` (trial-list entries without their suffix), so
trial lines map directly; the speaker is the first part. VoxCeleb2 is distributed as m4a, which
libsndfile cannot decode: convert it first (the error message gives the ffmpeg command).

Output (each a speech directory of :mod:`gradw.data.lists`)::

    OUT/vox1_test     trials = veri_test2 (cleaned, 37,611), trials_original = veri_test (37,720)
    OUT/vox1_dev      training
    OUT/vox2_dev      training, minus the held-out validation speakers
    OUT/vox2_val      the held-out speakers, with a generated balanced trial list

Without ``vox2``, the validation speakers are held out of VoxCeleb1 dev instead (``vox1_dev`` and
``vox1_val``). ``utt2dur`` is read from the file headers (skip with ``durations=False``), and
``spk2gender`` from ``vox1_meta.csv`` / ``vox2_meta.csv`` when present. Everything is scanned and
checked before anything is written.
"""

from __future__ import annotations

import math
import os
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradw.data.corpora.musan import seeded_order
from gradw.data.dirs import write_speech_dir
from gradw.data.lists import DataError, format_offenders
from gradw.data.trials import Trial, make_balanced_trials, read_trials, write_trials
from gradw.progress import track

__all__ = [
    "VOX1_O_CLEANED",
    "VOX1_O_CLEANED_TRIALS",
    "VOX1_O_ORIGINAL",
    "VOX1_O_ORIGINAL_TRIALS",
    "ffmpeg_command",
    "make_balanced_trials",
    "prepare_voxceleb",
    "utterance_id",
]

VOX1_O_CLEANED = "veri_test2.txt"
VOX1_O_ORIGINAL = "veri_test.txt"
VOX1_O_CLEANED_TRIALS = 37_611
VOX1_O_ORIGINAL_TRIALS = 37_720
_VOX1_O_SPEAKERS = 40
_SPEAKER = re.compile(r"^id\d+$")
_READABLE = (".wav", ".flac")  # in order of preference when an utterance has several
_M4A = ".m4a"
_STRIP_SUFFIXES = (*_READABLE, _M4A)
_TRIAL_DIRS = ("", "meta", "test")
_SLOTS = {
    "trials": (VOX1_O_CLEANED, VOX1_O_CLEANED_TRIALS),
    "trials_original": (VOX1_O_ORIGINAL, VOX1_O_ORIGINAL_TRIALS),
}


def utterance_id(entry: str) -> str:
    """The utterance id of a trial-list entry or relative path: ``id10270/x6uYqmx31kE/00001.wav``
    -> ``id10270/x6uYqmx31kE/00001`` (audio suffixes stripped, backslashes made slashes)."""
    entry = entry.replace("\\", "/")
    for suffix in _STRIP_SUFFIXES:
        if entry.lower().endswith(suffix):
            return entry[: -len(suffix)]
    return entry


def ffmpeg_command(folder: str | os.PathLike[str]) -> str:
    """A one-line shell command converting every ``*.m4a`` under ``folder`` to a 16 kHz mono
    ``.wav`` beside it (existing outputs are kept, so it can be rerun after an interruption)."""
    return (
        f"find {shlex.quote(os.fspath(folder))} -name '*.m4a' -exec sh -c "
        '\'ffmpeg -nostdin -loglevel error -n -i "$1" -ac 1 -ar 16000 "${1%.m4a}.wav"\' _ {} \\;'
    )


@dataclass
class _Split:
    """One output speech directory, fully computed before anything is written."""

    name: str
    wavs: dict[str, Path]
    trials: list[Trial] | None = None
    trials_original: list[Trial] | None = None
    trials_from: dict[str, str] = field(default_factory=dict)
    spk2gender: dict[str, str] | None = None
    utt2dur: dict[str, float] | None = None

    @property
    def utt2spk(self) -> dict[str, str]:
        return {utt: utt.split("/", 1)[0] for utt in self.wavs}


# ---------------------------------------------------------------------------------------------
# scanning


def _is_speaker_folder(folder: Path) -> bool:
    """True when ``folder`` directly holds at least one ``idNNNNN`` folder."""
    if not folder.is_dir():
        return False
    with os.scandir(folder) as entries:
        return any(_SPEAKER.match(e.name) and e.is_dir() for e in entries)


def _first_speaker_folder(candidates: Iterable[Path]) -> Path | None:
    return next((c for c in candidates if _is_speaker_folder(c)), None)


def _sorted_dirs(folder: Path) -> list[os.DirEntry[str]]:
    with os.scandir(folder) as entries:
        return sorted((e for e in entries if e.is_dir() and not e.name.startswith(".")), key=lambda e: e.name)


def _scan(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """Scan ``folder/idXXXXX/<youtube_id>/<file>``.

    Returns:
        ``(wavs, m4a_only)``: utterance -> readable file (``.wav`` preferred over ``.flac``), and
        the utterances that exist only as ``.m4a``.
    """
    wavs: dict[str, Path] = {}
    m4a: set[str] = set()
    for speaker in _sorted_dirs(folder):
        if not _SPEAKER.match(speaker.name):
            continue
        for video in _sorted_dirs(Path(speaker.path)):
            with os.scandir(video.path) as entries:
                names = sorted(e.name for e in entries if e.is_file() and not e.name.startswith("."))
            for name in names:
                stem, suffix = os.path.splitext(name)
                utt = f"{speaker.name}/{video.name}/{stem}"
                suffix = suffix.lower()
                if suffix in _READABLE:
                    current = wavs.get(utt)
                    if current is None or _READABLE.index(suffix) < _READABLE.index(current.suffix.lower()):
                        wavs[utt] = Path(video.path, name).absolute()
                elif suffix == _M4A:
                    m4a.add(utt)
    return wavs, sorted(m4a - set(wavs))


def _scan_readable(folder: Path, corpus: str) -> dict[str, Path]:
    """:func:`_scan` that fails clearly on m4a files that were not converted."""
    wavs, m4a_only = _scan(folder)
    if m4a_only and not wavs:
        raise DataError(
            f"{folder}: {corpus} holds only .m4a audio ({len(m4a_only)} files), which libsndfile cannot "
            f"read. Convert it to 16 kHz WAV with ffmpeg first, e.g.: {ffmpeg_command(folder)}"
        )
    if m4a_only:
        raise DataError(
            f"{folder}: {len(m4a_only)} {corpus} utterance(s) exist only as .m4a (conversion "
            f"incomplete?): {format_offenders(m4a_only, 3)}. Convert them with: {ffmpeg_command(folder)}"
        )
    if not wavs:
        raise DataError(f"{folder}: no {corpus} audio (.wav or .flac) found in idXXXXX/<video>/ folders")
    return wavs


def _read_gender(paths: Sequence[Path]) -> dict[str, str]:
    """Speaker -> ``m``/``f`` from VoxCeleb meta files (``vox1_meta.csv`` is tab-separated,
    ``vox2_meta.csv`` comma-separated with padded fields); missing files are ignored."""
    genders: dict[str, str] = {}
    for path in paths:
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            fields = [f.strip() for f in re.split(r"[\t,]", line)]
            if fields and _SPEAKER.match(fields[0]):
                gender = next((f.lower() for f in fields[1:] if f.lower() in ("m", "f")), None)
                if gender is not None:
                    genders[fields[0]] = gender
    return genders


def _gender_for(
    wavs: Mapping[str, Path], genders: Mapping[str, str], name: str, warnings: list[str]
) -> dict[str, str] | None:
    speakers = {utt.split("/", 1)[0] for utt in wavs}
    if not genders:
        return None
    unknown = sorted(speakers - set(genders))
    if unknown:
        warnings.append(f"{name}: no gender for {format_offenders(unknown, 3)}; spk2gender not written")
        return None
    return {spk: genders[spk] for spk in sorted(speakers)}


# ---------------------------------------------------------------------------------------------
# trials


def _load_trials(path: Path) -> list[Trial]:
    return [Trial(utterance_id(t.enroll), utterance_id(t.test), t.target) for t in read_trials(path)]


def _trial_files(root: Path, given: Sequence[str | os.PathLike[str]]) -> dict[str, Path]:
    """Slot (``trials`` / ``trials_original``) -> list file: given files first (``veri_test.txt``
    fills ``trials_original``, any other name ``trials``), then the standard names under ``root``."""
    files: dict[str, Path] = {}
    for item in given:
        path = Path(item).expanduser().absolute()
        if not path.is_file():
            raise DataError(f"{path}: trial list not found")
        slot = "trials_original" if path.name == VOX1_O_ORIGINAL else "trials"
        if slot in files:
            raise DataError(f"{path}: two trial lists given for {slot!r} ({files[slot]} and {path})")
        files[slot] = path
    for slot, (name, _) in _SLOTS.items():
        if slot in files:
            continue
        found = next((root / sub / name for sub in _TRIAL_DIRS if (root / sub / name).is_file()), None)
        if found is not None:
            files[slot] = found
    return files


def _check_trials(path: Path, trials: Sequence[Trial], wavs: Mapping[str, Path], where: str) -> None:
    unknown = sorted({u for t in trials for u in (t.enroll, t.test)} - set(wavs))
    if unknown:
        raise DataError(
            f"{path}: {len(unknown)} utterance(s) not found in {where}: {format_offenders(unknown)}"
        )
    if not trials:
        raise DataError(f"{path}: empty trial list")


# ---------------------------------------------------------------------------------------------
# durations


def _durations(split: _Split, check_audio: bool, quiet: bool) -> dict[str, float]:
    """Utterance -> seconds from the headers (and, with ``check_audio``, a full decode)."""
    from gradw.audio.io import audio_info, read_audio

    durations: dict[str, float] = {}
    bad: list[str] = []
    for utt, path in track(split.wavs.items(), split.name, unit="file", quiet=quiet):
        try:
            rate, frames, _ = audio_info(path)
            if frames <= 0:
                raise ValueError("no samples")
            if check_audio:
                read_audio(path, rate)
        except ValueError as exc:  # AudioError is a ValueError
            bad.append(f"{path} ({getattr(exc, 'reason', exc)})")
            continue
        durations[utt] = frames / rate
    if bad:
        raise DataError(f"{split.name}: {len(bad)} unreadable audio file(s): {format_offenders(bad, 3)}")
    return durations


# ---------------------------------------------------------------------------------------------
# the preparer


def _vox1_splits(root: Path, trials: Sequence[str | os.PathLike[str]], warnings: list[str]) -> list[_Split]:
    if not root.is_dir():
        raise DataError(f"{root}: VoxCeleb1 directory not found")
    dev_dir = _first_speaker_folder([root / "dev" / "wav", root / "dev"])
    test_dir = _first_speaker_folder([root / "test" / "wav", root / "test"])
    flat_dir = _first_speaker_folder([root / "wav", root])
    if flat_dir is not None and (dev_dir is not None or test_dir is not None):
        found = ", ".join(str(d) for d in (dev_dir, test_dir, flat_dir) if d is not None)
        raise DataError(
            f"{root}: both split (dev/, test/) and flat VoxCeleb1 folders found ({found}); keep one"
        )
    if flat_dir is None and dev_dir is None and test_dir is None:
        raise DataError(
            f"{root}: no VoxCeleb1 audio; expected dev/wav/idXXXXX/<video>/NNNNN.wav and "
            "test/wav/idXXXXX/..., or wav/idXXXXX/..."
        )

    lists = {slot: (path, _load_trials(path)) for slot, path in _trial_files(root, trials).items()}
    genders = _read_gender([root / "vox1_meta.csv", root / "meta" / "vox1_meta.csv"])
    if flat_dir is not None:
        everything = _scan_readable(flat_dir, "VoxCeleb1")
        if not lists:
            raise DataError(
                f"{flat_dir}: VoxCeleb1 dev and test share one folder, so the test speakers are taken "
                f"from the Vox1-O trial list, but neither {VOX1_O_CLEANED} nor {VOX1_O_ORIGINAL} was found "
                f"in {root} (or {root / 'meta'}); download it or pass its path"
            )
        test_speakers = {
            u.split("/", 1)[0] for _, ts in lists.values() for t in ts for u in (t.enroll, t.test)
        }
        if len(test_speakers) != _VOX1_O_SPEAKERS:
            warnings.append(
                f"vox1_test: {len(test_speakers)} test speakers taken from the trial list(s), "
                f"Vox1-O has {_VOX1_O_SPEAKERS}"
            )
        test_wavs = {u: p for u, p in everything.items() if u.split("/", 1)[0] in test_speakers}
        dev_wavs = {u: p for u, p in everything.items() if u not in test_wavs}
        test_where = f"{flat_dir} (test speakers)"
    else:
        dev_wavs = _scan_readable(dev_dir, "VoxCeleb1 dev") if dev_dir is not None else {}
        test_wavs = _scan_readable(test_dir, "VoxCeleb1 test") if test_dir is not None else {}
        test_where = str(test_dir)

    splits: list[_Split] = []
    if test_wavs:
        test = _Split("vox1_test", test_wavs)
        for slot, (path, ts) in lists.items():
            _check_trials(path, ts, test_wavs, test_where)
            standard = _SLOTS[slot][1] if path.name == _SLOTS[slot][0] else None
            if standard is not None and len(ts) != standard:
                warnings.append(f"{path}: {len(ts)} trials, not the standard {standard}")
        if "trials" in lists:
            test.trials = lists["trials"][1]
            test.trials_from["trials"] = str(lists["trials"][0])
        elif "trials_original" in lists:
            test.trials = lists["trials_original"][1]
            test.trials_from["trials"] = str(lists["trials_original"][0])
            warnings.append(
                f"vox1_test: cleaned list {VOX1_O_CLEANED} not found; 'trials' is the original list "
                f"{lists['trials_original'][0]}"
            )
        if "trials_original" in lists:
            test.trials_original = lists["trials_original"][1]
            test.trials_from["trials_original"] = str(lists["trials_original"][0])
        if not lists:
            warnings.append(
                f"vox1_test: no trial list ({VOX1_O_CLEANED} / {VOX1_O_ORIGINAL} not found in {root}); "
                "written without trials"
            )
        test.spk2gender = _gender_for(test_wavs, genders, "vox1_test", warnings)
        splits.append(test)
    else:
        warnings.append(f"{root}: no VoxCeleb1 test audio; vox1_test not written")
    if dev_wavs:
        dev = _Split("vox1_dev", dev_wavs)
        dev.spk2gender = _gender_for(dev_wavs, genders, "vox1_dev", warnings)
        splits.append(dev)
    return splits


def _vox2_split(root: Path, warnings: list[str]) -> _Split:
    if not root.is_dir():
        raise DataError(f"{root}: VoxCeleb2 directory not found")
    folder = _first_speaker_folder(
        [root / "dev" / "aac", root / "dev" / "wav", root / "dev" / "flac", root / "dev", root]
    )
    if folder is None:
        raise DataError(
            f"{root}: no VoxCeleb2 dev audio; expected dev/aac/idXXXXX/<video>/NNNNN.wav (converted "
            "from m4a), dev/wav/idXXXXX/..., or the idXXXXX folders themselves"
        )
    wavs = _scan_readable(folder, "VoxCeleb2 dev")
    genders = _read_gender([root / "vox2_meta.csv", root / "meta" / "vox2_meta.csv"])
    return _Split("vox2_dev", wavs, spk2gender=_gender_for(wavs, genders, "vox2_dev", warnings))


def _hold_out(train: _Split, count: int, num_trials: int, seed: int) -> _Split:
    """Move ``count`` speakers (seeded) from ``train`` into a new validation split with trials."""
    speakers = sorted(set(train.utt2spk.values()))
    if count > len(speakers) - 1:
        raise DataError(
            f"{train.name}: cannot hold out {count} validation speakers out of {len(speakers)} "
            "(at least one must stay for training)"
        )
    held = set(seeded_order(speakers, seed, salt=f"{train.name}/val")[:count])
    val_wavs = {u: p for u, p in train.wavs.items() if u.split("/", 1)[0] in held}
    train.wavs = {u: p for u, p in train.wavs.items() if u not in val_wavs}
    val = _Split(train.name.replace("_dev", "_val"), val_wavs)
    spk2utt: dict[str, list[str]] = {}
    for utt, spk in val.utt2spk.items():
        spk2utt.setdefault(spk, []).append(utt)
    val.trials = make_balanced_trials(spk2utt, num_trials, seed)
    val.trials_from["trials"] = f"generated (seed {seed})"
    if train.spk2gender is not None:
        val.spk2gender = {s: g for s, g in train.spk2gender.items() if s in held}
        train.spk2gender = {s: g for s, g in train.spk2gender.items() if s not in held}
    return val


def _remove_speech_dir(root: Path) -> bool:
    """Remove the files a speech directory is made of (and the folder, if then empty); True when
    there was a ``wav.scp``."""
    existed = (root / "wav.scp").is_file()
    for name in ("wav.scp", "utt2spk", "spk2utt", "utt2dur", "trials", "trials_original", "spk2gender"):
        (root / name).unlink(missing_ok=True)
    if root.is_dir() and not any(root.iterdir()):
        root.rmdir()
    return existed


def prepare_voxceleb(
    out: str | os.PathLike[str],
    vox1: str | os.PathLike[str] | None = None,
    vox2: str | os.PathLike[str] | None = None,
    trials: Sequence[str | os.PathLike[str]] = (),
    val_speakers: int = 50,
    val_trials: int = 20_000,
    seed: int = 0,
    durations: bool = True,
    check_audio: bool = False,
    quiet: bool = False,
) -> dict[str, Any]:
    """Write VoxCeleb1/2 speech directories (see the module doc for layouts and outputs).

    Args:
        out: the output folder (``OUT/vox1_test``, ``OUT/vox1_dev``, ``OUT/vox2_dev``,
            ``OUT/vox2_val`` or ``OUT/vox1_val``).
        vox1: the VoxCeleb1 root, or None.
        vox2: the VoxCeleb2 root, or None.
        trials: Vox1-O trial list files that are not in the VoxCeleb1 root. A file named
            ``veri_test.txt`` becomes ``trials_original``; any other becomes ``trials``. The
            entries may carry ``.wav`` suffixes (they are stripped).
        val_speakers: speakers held out of the training corpus (VoxCeleb2 dev when given, else
            VoxCeleb1 dev) for validation, chosen by ``seed``; 0 for none. The paper held out 50.
        val_trials: size of the generated balanced validation trial list.
        seed: chooses the validation speakers and trials.
        durations: read every file header (one small read per file) to write ``utt2dur``;
            False skips it.
        check_audio: also decode every file completely (slow on VoxCeleb2: all of its audio is
            read), so corrupt files fail here rather than in training.
        quiet: no progress bar (it is also off when stderr is not a terminal).

    Returns:
        A summary: ``out``, and per written directory ``path``, ``utterances``, ``speakers``,
        ``hours`` (with durations), ``trials`` / ``trials_original`` (counts) and ``trials_from``;
        plus ``warnings``.

    Raises:
        DataError: a root or its audio folders are missing, only m4a audio is present (the
            message gives the ffmpeg command), a trial list names utterances that do not exist,
            or an audio file is unreadable. Nothing is written then.
        ValueError: neither corpus given, or a bad ``val_speakers`` / ``val_trials``.
    """
    if vox1 is None and vox2 is None:
        raise ValueError("give the VoxCeleb1 and/or VoxCeleb2 root")
    if val_speakers < 0 or val_speakers == 1:
        raise ValueError(f"val_speakers must be 0 or at least 2, got {val_speakers}")
    if val_speakers and val_trials < 2:
        raise ValueError(f"val_trials must be at least 2, got {val_trials}")
    if trials and vox1 is None:
        raise ValueError("trial lists are for VoxCeleb1 test: give the VoxCeleb1 root too")
    out = Path(out).expanduser().absolute()
    warnings: list[str] = []
    splits: list[_Split] = []
    if vox1 is not None:
        splits += _vox1_splits(Path(vox1).expanduser().absolute(), trials, warnings)
    if vox2 is not None:
        splits.append(_vox2_split(Path(vox2).expanduser().absolute(), warnings))
    if val_speakers:
        train = next((s for s in splits if s.name == "vox2_dev"), None) or next(
            (s for s in splits if s.name == "vox1_dev"), None
        )
        if train is None:
            warnings.append("no training corpus (VoxCeleb1 dev or VoxCeleb2 dev): no validation split")
        else:
            val = _hold_out(train, val_speakers, val_trials, seed)
            if len(val.trials or []) < val_trials:
                warnings.append(f"{val.name}: only {len(val.trials or [])} trials could be made")
            splits.append(val)
    if durations or check_audio:
        for split in splits:
            split.utt2dur = _durations(split, check_audio, quiet)

    summary: dict[str, Any] = {"out": str(out)}
    written = {split.name for split in splits}
    for name in ("vox1", "vox2"):
        if (
            f"{name}_dev" in written
            and f"{name}_val" not in written
            and _remove_speech_dir(out / f"{name}_val")
        ):
            warnings.append(
                f"removed {out / f'{name}_val'} (left by an earlier run; it overlaps {name}_dev now)"
            )
    for split in splits:
        root = out / split.name
        write_speech_dir(
            root,
            split.wavs,
            split.utt2spk,
            utt2dur=split.utt2dur,
            trials=split.trials,
            spk2gender=split.spk2gender,
        )
        if split.trials_original is not None:
            write_trials(root / "trials_original", split.trials_original)
        else:
            (root / "trials_original").unlink(missing_ok=True)
        info: dict[str, Any] = {
            "path": str(root),
            "utterances": len(split.wavs),
            "speakers": len(set(split.utt2spk.values())),
        }
        if split.utt2dur is not None:
            info["hours"] = round(math.fsum(split.utt2dur.values()) / 3600.0, 3)
        if split.trials is not None:
            info["trials"] = len(split.trials)
        if split.trials_original is not None:
            info["trials_original"] = len(split.trials_original)
        if split.trials_from:
            info["trials_from"] = dict(split.trials_from)
        summary[split.name] = info
    summary["warnings"] = warnings
    return summary
