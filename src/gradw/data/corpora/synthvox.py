"""synthvox: the embedded default corpus, built from Debian and PyPI packages only.

``build_synthvox(out, preset)`` makes a VoxCeleb/MUSAN-like corpus on a machine that has no
corpus (recipe and measurements: ``notes/data.md``):

* **speech** from 79 real speakers: 60 MBROLA diphone voices driven by espeak-ng (phoneme output
  remapped, then ``mbrola -e``), 11 Festival and 2 Flite voices, and 6 speakers who are actual
  recordings (Asterisk prompts, Fish Fillets dialogue). Each synthesised speaker gets its own
  pitch and rate, jittered per utterance. Speakers are split train / val / test with test
  speakers never seen in training; ``test/trials_real`` lists the real-recordings-only trials;
* **augmentation** pools for train and test with disjoint sources: noise (real recordings and
  coloured noise), music (a real soundtrack, MIDI through a sampled-instrument soundfont,
  procedural music), babble talkers (espeak-ng formant voices) and simulated rooms
  (pyroomacoustics).

Output (the data contract)::

    OUT/train, OUT/val, OUT/test        speech dirs (wav.scp utt2spk spk2utt utt2dur spk2gender;
                                        val and test with trials; test with trials_real)
    OUT/augment/{train,test}/{noise,music,babble,rirs}/wav.scp
    OUT/audio/...                       16 kHz mono 16-bit FLAC
    OUT/manifest.json                   sources, licences, sizes; OUT/utterances.csv

The build uses every core, is resumable (finished files are skipped) and deterministic for a
seed. Install the system packages with ``scripts/install-system-deps.sh tiny|full`` (as root).
MBROLA voices are non-free: never redistribute them or the audio generated from them.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import itertools
import json
import math
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from gradw.audio.io import audio_info, write_audio
from gradw.data.corpora.synthvox_noise import (
    BABBLE_LANGUAGES,
    MIDI_TEST_SONGS,
    WARZONE_TEST_ALBUMS,
    AugItem,
    babble_variants,
    lincity_files,
    make_aug_item,
    midi_files,
    pyroomacoustics_available,
    soundfont_path,
    split_families,
    warzone_tracks,
)
from gradw.data.corpora.synthvox_text import TextError, make_text, text_language_ok
from gradw.data.corpora.synthvox_voices import (
    CATALOGUE,
    INSTALL_HINT,
    SAMPLE_RATE,
    Speaker,
    SynthError,
    UttPlan,
    espeak_data_dir,
    list_prompts,
    make_espeak_data,
    missing_requirement,
    prompt_seconds,
    synthesize_speaker_batch,
)
from gradw.data.lists import (
    AUGMENT_CATEGORIES,
    DataError,
    Trial,
    atomic_write_text,
    read_map,
    write_augment_dir,
    write_map,
    write_speech_dir,
    write_trials,
)

__all__ = ["PRESETS", "Preset", "SplitSize", "SynthvoxError", "build_synthvox", "make_trials"]

SPLITS = ("train", "val", "test")
SIDES = ("train", "test")
AUDIO_EXT = ".flac"
MANIFEST_VERSION = 1

#: seconds per word at 170 wpm by text language, measured on this recipe's voices with
#: wordfreq prompts; used to choose how many words make an utterance of a target length.
_SECONDS_PER_WORD = {
    "af": 0.23, "ar": 0.29, "ca": 0.26, "cs": 0.18, "de": 0.27, "el": 0.16, "en": 0.17, "es": 0.15,
    "et": 0.22, "fa": 0.25, "fi": 0.22, "fr": 0.13, "he": 0.20, "hi": 0.17, "hr": 0.17, "is": 0.24,
    "it": 0.17, "ja": 0.155, "ko": 0.16, "la": 0.37, "lt": 0.22, "ms": 0.26, "nl": 0.17, "pl": 0.15,
    "pt": 0.13, "ru": 0.17, "sv": 0.20, "te": 0.49, "tr": 0.245, "zh": 0.22,
}  # fmt: skip
_WORD_MARGIN = 1.25  # synthesise a little more than needed, then cut to the target length
_BATCH = {"mbrola": 10, "flite": 10, "festival": 60, "asterisk": 40, "fillets": 40}
_AUG_BATCH = {"rir": 25, "babble": 6, "copy": 40, "coloured": 10, "hum": 10, "am": 10, "synth_music": 4}

_REAL_NOTE = (
    "MBROLA voices are non-free (use with MBROLA only, no sale, redistribution only free of "
    "charge): never redistribute the voices or audio generated from them. Asterisk prompts and "
    "Warzone 2100 music are CC-BY-SA-3.0, lincity-ng and Fish Fillets data GPL-2+: keep this "
    "attribution with any derived audio and do not commit the generated audio."
)


class SynthvoxError(DataError):
    """The corpus cannot be built (a required tool or too many speakers are missing)."""


@dataclass(frozen=True)
class SplitSize:
    """Size of one speech split.

    Attributes:
        utts: utterances per speaker.
        seconds: (min, max) target utterance length; each target is uniform in this range.
        speakers: speaker ids in priority order, or None for every catalogue speaker of the
            split. Speakers whose packages are missing are skipped.
        max_speakers: keep at most this many of the available speakers (None: all).
        trials: at most this many target trials, and as many non-target ones (0: no trials).
    """

    utts: int
    seconds: tuple[float, float]
    speakers: tuple[str, ...] | None = None
    max_speakers: int | None = None
    trials: int = 0


@dataclass(frozen=True)
class Preset:
    """Sizes of a synthvox build. Counts in pairs are (train pool, test pool).

    Attributes:
        name: preset name.
        train, val, test: the speech splits.
        noise: procedural noise clips (coloured noise, with one in ten mains hum and one in ten
            amplitude-modulated noise).
        noise_seconds: length of a procedural noise clip.
        real_noise: add the lincity-ng recordings (all of them, split by sound family).
        warzone: at most this many 30 s soundtrack segments (None: all).
        midi_seconds: seconds of each MIDI song to render (0: no MIDI).
        music_synth: procedural music clips, always added.
        music_fallback: procedural music clips added when no real music source is installed.
        music_seconds: length of a procedural music clip and of a soundtrack segment.
        babble: single-talker files.
        babble_seconds: length of a babble talker file.
        rirs: room impulse responses.
        rir_max_order: image-source order cap (0: Sabine's estimate, the full tail).
    """

    name: str
    train: SplitSize
    val: SplitSize
    test: SplitSize
    noise: tuple[int, int]
    noise_seconds: float
    real_noise: bool
    warzone: tuple[int, int] | None
    midi_seconds: float
    music_synth: tuple[int, int]
    music_fallback: tuple[int, int]
    music_seconds: float
    babble: tuple[int, int]
    babble_seconds: float
    rirs: tuple[int, int]
    rir_max_order: int = 0

    def split(self, name: str) -> SplitSize:
        """The size of split ``name``."""
        return {"train": self.train, "val": self.val, "test": self.test}[name]


#: test speakers of the demo, in priority order: the real recordings first, then one of each
#: engine, then the rest of the test catalogue as stand-ins for missing packages.
_DEMO_TEST = (
    "asterisk-allison", "asterisk-june", "asterisk-carlo", "fillets-nl-m", "festival-cmu_us_slt",
    "flite-awb", "mbrola-us1", "mbrola-en1", "mbrola-de2", "mbrola-fr2",
    *[s.id for s in CATALOGUE if s.split == "test"],
)  # fmt: skip

PRESETS: dict[str, Preset] = {
    # CI and tests: only what `install-system-deps.sh tiny` installs; builds in seconds
    "tiny": Preset(
        name="tiny",
        train=SplitSize(6, (2.0, 4.0), ("mbrola-us2", "mbrola-de1", "mbrola-fr1", "mbrola-br2", "flite-rms")),
        val=SplitSize(4, (2.0, 4.0), ("mbrola-de4", "mbrola-it4"), trials=40),
        test=SplitSize(
            4, (2.0, 4.0), ("mbrola-us1", "mbrola-en1", "mbrola-de2", "mbrola-fr2", "flite-awb"), trials=60
        ),
        noise=(6, 3),
        noise_seconds=6.0,
        real_noise=False,
        warzone=(0, 0),
        midi_seconds=0.0,
        music_synth=(4, 2),
        music_fallback=(0, 0),
        music_seconds=8.0,
        babble=(8, 7),
        babble_seconds=6.0,
        rirs=(6, 3),
        rir_max_order=10,
    ),
    # CPU demo that trains and evaluates in about 45 minutes
    "demo": Preset(
        name="demo",
        train=SplitSize(20, (3.0, 6.0)),
        val=SplitSize(10, (3.0, 6.0), trials=1000),
        test=SplitSize(10, (4.0, 8.0), _DEMO_TEST, max_speakers=10, trials=2000),
        noise=(60, 20),
        noise_seconds=20.0,
        real_noise=True,
        warzone=(40, 12),
        midi_seconds=60.0,
        music_synth=(0, 0),
        music_fallback=(40, 12),
        music_seconds=30.0,
        babble=(100, 40),
        babble_seconds=15.0,
        rirs=(200, 50),
    ),
    # the whole recipe of notes/data.md
    "full": Preset(
        name="full",
        train=SplitSize(120, (4.0, 10.0)),
        val=SplitSize(50, (4.0, 10.0), trials=3000),
        test=SplitSize(40, (6.0, 10.0), trials=10000),
        noise=(300, 60),
        noise_seconds=30.0,
        real_noise=True,
        warzone=None,
        midi_seconds=300.0,
        music_synth=(0, 0),
        music_fallback=(300, 60),
        music_seconds=30.0,
        babble=(340, 86),
        babble_seconds=20.0,
        rirs=(1000, 200),
    ),
}


# ---------------------------------------------------------------------------------------------
# seeds


def _seed(seed: int, *parts: object) -> int:
    """A 63-bit seed derived from the build seed and a key (stable across runs and machines)."""
    digest = hashlib.blake2b("|".join(map(str, (seed, *parts))).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def _rng(seed: int, *parts: object) -> np.random.Generator:
    return np.random.default_rng(_seed(seed, *parts))


# ---------------------------------------------------------------------------------------------
# planning


@dataclass
class _Job:
    """A unit of work for one process: utterances of one speaker or a batch of augment items."""

    kind: str  # "speech" or "augment"
    key: str
    speaker: Speaker | None = None
    plans: tuple[UttPlan, ...] = ()
    items: tuple[AugItem, ...] = ()
    espeak_path: str = ""
    cost: float = 0.0

    @property
    def paths(self) -> list[str]:
        return [p.path for p in self.plans] + [i.path for i in self.items]


@dataclass
class _Plan:
    speakers: dict[str, list[Speaker]] = field(default_factory=dict)
    prosody: dict[str, tuple[float, float]] = field(default_factory=dict)
    utts: dict[str, list[UttPlan]] = field(default_factory=dict)  # speaker id -> plans
    augment: dict[str, dict[str, list[AugItem]]] = field(default_factory=dict)  # side -> category
    aug_sources: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    missing: dict[str, list[str]] = field(default_factory=dict)  # package -> what it would add
    notes: list[str] = field(default_factory=list)


def _select_speakers(preset: Preset, plan: _Plan) -> None:
    by_id = {s.id: s for s in CATALOGUE}
    text_ok: dict[str, bool] = {}
    for split in SPLITS:
        size = preset.split(split)
        ids = size.speakers if size.speakers is not None else [s.id for s in CATALOGUE if s.split == split]
        chosen: list[Speaker] = []
        for sid in dict.fromkeys(ids):
            speaker = by_id.get(sid)
            if speaker is None:
                raise SynthvoxError(f"preset {preset.name!r}: unknown speaker {sid!r}")
            if speaker.split != split:
                raise SynthvoxError(
                    f"preset {preset.name!r}: speaker {sid} belongs to {speaker.split}, not {split}"
                )
            need = missing_requirement(speaker)
            if need is None and not speaker.real:
                if speaker.lang not in text_ok:
                    text_ok[speaker.lang] = text_language_ok(speaker.lang)
                if not text_ok[speaker.lang]:
                    need = "wordfreq (pip install wordfreq==3.1.1)"
            if need is not None:
                plan.missing.setdefault(need, []).append(sid)
                continue
            if size.max_speakers is None or len(chosen) < size.max_speakers:
                chosen.append(speaker)
        plan.speakers[split] = chosen
    short = [s for s in SPLITS if len(plan.speakers[s]) < 2]
    if short:
        have = ", ".join(f"{s}: {len(plan.speakers[s])}" for s in SPLITS)
        packages = " ".join(sorted(plan.missing)) or "(none)"
        raise SynthvoxError(
            f"synthvox preset {preset.name!r} needs at least 2 speakers in every split, found {have}; "
            f"missing: {packages}; install the system packages with `sudo {INSTALL_HINT} "
            f"{'tiny' if preset.name == 'tiny' else 'full'}`"
        )


def _speaker_prosody(seed: int, speaker: Speaker) -> tuple[float, float]:
    """Fixed (espeak ``-p`` pitch, rate in wpm) of a speaker (notes/data.md §5.2)."""
    rng = _rng(seed, "prosody", speaker.id)
    pitch = rng.uniform(20, 60) if speaker.gender == "m" else rng.uniform(35, 70)
    return float(pitch), float(rng.uniform(140, 200))


def _audio_path(out: Path, *parts: str) -> str:
    return str(out.joinpath("audio", *parts[:-1], parts[-1] + AUDIO_EXT))


def _plan_tts(out: Path, seed: int, split: str, speaker: Speaker, size: SplitSize, plan: _Plan) -> None:
    base_pitch, base_rate = _speaker_prosody(seed, speaker)
    plan.prosody[speaker.id] = (base_pitch, base_rate)
    spw = _SECONDS_PER_WORD.get(speaker.lang, 0.2)
    plans = []
    for k in range(size.utts):
        utt = f"{speaker.id}-{k:04d}"
        rng = _rng(seed, "utt", utt)
        target = float(rng.uniform(*size.seconds))
        pitch = float(np.clip(base_pitch + rng.uniform(-6, 6), 0, 99))
        rate = float(base_rate * rng.uniform(0.9, 1.1))
        n_words = math.ceil(_WORD_MARGIN * target / (spw * 170.0 / rate))
        text = make_text(speaker.lang, n_words, rng)
        plans.append(
            UttPlan(
                utt, _audio_path(out, split, speaker.id, utt), text, pitch, rate, max_seconds=round(target, 3)
            )
        )
    plan.utts[speaker.id] = plans


def _plan_real(out: Path, seed: int, split: str, speaker: Speaker, size: SplitSize, plan: _Plan) -> None:
    """Concatenate random recordings, each used once, with 0.1-0.4 s gaps, to the target length."""
    prompts = list_prompts(speaker)
    order = _rng(seed, "prompts", speaker.id).permutation(len(prompts))
    queue = [(prompts[i], prompt_seconds(prompts[i])) for i in order]
    plans = []
    for k in range(size.utts):
        utt = f"{speaker.id}-{k:04d}"
        rng = _rng(seed, "utt", utt)
        target = float(rng.uniform(*size.seconds))
        sources: list[str] = []
        gaps: list[float] = []
        total = 0.0
        while queue and total < target:
            path, seconds = queue.pop(0)
            if sources:
                gaps.append(round(float(rng.uniform(0.1, 0.4)), 3))
                total += gaps[-1]
            sources.append(path)
            total += seconds
        if total < 0.5 * size.seconds[0]:
            plan.notes.append(f"{speaker.id}: recordings ran out after {k} utterances")
            break
        plans.append(
            UttPlan(
                utt,
                _audio_path(out, split, speaker.id, utt),
                max_seconds=size.seconds[1],
                sources=tuple(sources),
                gaps=tuple(gaps),
            )
        )
    plan.utts[speaker.id] = plans


def _aug_path(out: Path, side: str, category: str, key: str) -> str:
    return _audio_path(out, "augment", side, category, key)


@dataclass
class _Pool:
    """The items of one augmentation side (train or test), with a count per source."""

    out: Path
    side: str
    items: dict[str, list[AugItem]] = field(default_factory=lambda: {c: [] for c in AUGMENT_CATEGORIES})
    sources: dict[str, dict[str, int]] = field(default_factory=lambda: {c: {} for c in AUGMENT_CATEGORIES})

    @property
    def index(self) -> int:
        """0 for the train side, 1 for the test side (the index into a preset's pairs)."""
        return SIDES.index(self.side)

    def add(self, category: str, origin: str, key: str, kind: str, **fields: Any) -> None:
        item = AugItem(key, _aug_path(self.out, self.side, category, key), kind, **fields)
        self.items[category].append(item)
        self.sources[category][origin] = self.sources[category].get(origin, 0) + 1


def _plan_noise(pool: _Pool, seed: int, preset: Preset, lincity: dict[str, list[str]]) -> None:
    """Real lincity-ng recordings (split by family) plus procedural clips: coloured noise, with
    one in ten mains hum and one in ten amplitude-modulated noise."""
    for path in lincity.get(pool.side, []):
        pool.add("noise", "lincity-ng-data", f"lincity-{Path(path).stem}", "copy", seed=0, source=path)
    for i in range(preset.noise[pool.index]):
        kind = {8: "hum", 9: "am"}.get(i % 10, "coloured")
        seconds = preset.noise_seconds
        pool.add(
            "noise",
            f"procedural-{kind}",
            f"{kind}-{pool.side}-{i:04d}",
            kind,
            seed=_seed(seed, "noise", pool.side, i),
            seconds=seconds,
        )


def _warzone_segments(
    albums: dict[str, list[str]], side: str, seconds: float, cap: int | None
) -> list[tuple[str, float]]:
    """(track, offset) of the soundtrack segments of one side: test albums for test, the others
    for train; taken round-robin over the tracks so a cap still spreads over the albums."""
    tracks = [
        t
        for album, ts in sorted(albums.items())
        if (album in WARZONE_TEST_ALBUMS) == (side == "test")
        for t in ts
    ]
    per_track = [[(t, j * seconds) for j in range(int(_duration(t) // seconds))] for t in tracks]
    chosen = [s for s in itertools.chain(*itertools.zip_longest(*per_track)) if s is not None]
    return sorted(chosen[:cap])


def _plan_music(
    pool: _Pool, seed: int, preset: Preset, albums: dict[str, list[str]], songs: list[str]
) -> None:
    """Soundtrack segments, MIDI renders and procedural music (the fallback when neither real
    source is installed)."""
    cap = None if preset.warzone is None else preset.warzone[pool.index]
    for track, offset in _warzone_segments(albums, pool.side, preset.music_seconds, cap):
        key = f"warzone-{Path(track).parent.name}-{Path(track).stem}-{int(offset):04d}"
        pool.add(
            "music",
            "warzone2100-music",
            key,
            "warzone",
            seed=0,
            seconds=preset.music_seconds,
            source=track,
            offset=offset,
        )
    for song in songs:
        if (Path(song).stem in MIDI_TEST_SONGS) == (pool.side == "test"):
            source = "planetblupi-music-midi+fluid-soundfont-gm"
            pool.add(
                "music",
                source,
                f"midi-{Path(song).stem}",
                "midi",
                seed=0,
                seconds=preset.midi_seconds,
                source=song,
            )
    n_synth = preset.music_synth[pool.index]
    if not pool.items["music"]:
        n_synth += preset.music_fallback[pool.index]
    for i in range(n_synth):
        key = f"synth-{pool.side}-{i:04d}"
        pool.add(
            "music",
            "procedural-music",
            key,
            "synth_music",
            seed=_seed(seed, "music", pool.side, i),
            seconds=preset.music_seconds,
        )


def _plan_babble(pool: _Pool, seed: int, preset: Preset, variants: Sequence[str]) -> None:
    """Single-talker files from espeak-ng formant variants: even-numbered variants for train,
    odd-numbered for test, each talker with its own language, pitch and rate."""
    mine = variants[pool.index :: 2]
    for i in range(preset.babble[pool.index] if mine else 0):
        rng = _rng(seed, "babble", pool.side, i)
        lang = BABBLE_LANGUAGES[int(rng.integers(len(BABBLE_LANGUAGES)))]
        rate = int(rng.integers(130, 200))
        words = math.ceil(
            _WORD_MARGIN * preset.babble_seconds / (_SECONDS_PER_WORD.get(lang, 0.2) * 170.0 / rate)
        )
        pool.add(
            "babble",
            "espeak-ng",
            f"talker-{pool.side}-{i:04d}",
            "babble",
            seed=0,
            seconds=preset.babble_seconds,
            text=make_text(lang, words, rng),
            voice=f"{lang}+{mine[i % len(mine)]}",
            pitch=int(rng.integers(20, 80)),
            rate=rate,
        )


def _plan_augment(out: Path, seed: int, preset: Preset, plan: _Plan) -> None:
    """Plan the train and test augmentation pools from the sources installed here."""
    lincity_paths = lincity_files() if preset.real_noise else []
    if preset.real_noise and not lincity_paths:
        plan.missing.setdefault("lincity-ng-data", []).append("real noise recordings")
    lincity = dict(zip(SIDES, split_families(lincity_paths), strict=True)) if lincity_paths else {}
    albums = warzone_tracks() if preset.warzone != (0, 0) else {}
    if preset.warzone != (0, 0) and not albums:
        plan.missing.setdefault("warzone2100-music", []).append("soundtrack music")
    songs = midi_files() if preset.midi_seconds > 0 else []
    if preset.midi_seconds > 0:
        needs = {
            "fluidsynth": shutil.which("fluidsynth") is not None,
            "fluid-soundfont-gm": soundfont_path() is not None,
            "planetblupi-music-midi": bool(songs),
        }
        for package in (p for p, ok in needs.items() if not ok):
            plan.missing.setdefault(package, []).append("MIDI music")
        if not all(needs.values()):
            songs = []
    rooms = "pyroomacoustics" if pyroomacoustics_available() else "statistical-rir"
    if rooms != "pyroomacoustics":
        plan.missing.setdefault("pyroomacoustics (pip install pyroomacoustics==0.10.1)", []).append(
            "simulated rooms (a statistical RIR model is used instead)"
        )
    variants = babble_variants()
    for side in SIDES:
        pool = _Pool(out, side)
        _plan_noise(pool, seed, preset, lincity)
        _plan_music(pool, seed, preset, albums, songs)
        _plan_babble(pool, seed, preset, variants)
        for i in range(preset.rirs[pool.index]):
            key = f"rir-{side}-{i:05d}"
            pool.add(
                "rirs", rooms, key, "rir", seed=_seed(seed, "rir", side, i), max_order=preset.rir_max_order
            )
        plan.augment[side] = pool.items
        plan.aug_sources[side] = pool.sources


def _duration(path: str) -> float:
    info = sf.info(path)
    return float(info.frames) / float(info.samplerate)


def _make_plan(out: Path, preset: Preset, seed: int) -> _Plan:
    plan = _Plan()
    _select_speakers(preset, plan)
    for split in SPLITS:
        size = preset.split(split)
        for speaker in plan.speakers[split]:
            if speaker.real:
                _plan_real(out, seed, split, speaker, size, plan)
            else:
                _plan_tts(out, seed, split, speaker, size, plan)
    _plan_augment(out, seed, preset, plan)
    return plan


def _make_jobs(plan: _Plan, espeak_path: str) -> list[_Job]:
    jobs: list[_Job] = []
    for split in SPLITS:
        for speaker in plan.speakers[split]:
            plans = plan.utts[speaker.id]
            step = _BATCH[speaker.engine]
            for start in range(0, len(plans), step):
                chunk = tuple(plans[start : start + step])
                cost = sum(p.max_seconds for p in chunk) * (5.0 if speaker.engine == "festival" else 1.0)
                jobs.append(
                    _Job(
                        "speech", f"{speaker.id}:{start}", speaker, chunk, espeak_path=espeak_path, cost=cost
                    )
                )
    for side, cats in plan.augment.items():
        for category, items in cats.items():
            by_kind: dict[str, list[AugItem]] = {}
            for item in items:
                by_kind.setdefault(item.kind, []).append(item)
            for kind, group in by_kind.items():
                step = _AUG_BATCH.get(kind, 1)
                for start in range(0, len(group), step):
                    chunk = tuple(group[start : start + step])
                    cost = sum(max(i.seconds, 2.0) for i in chunk) * (0.3 if kind != "babble" else 1.0)
                    jobs.append(_Job("augment", f"{side}/{category}/{kind}:{start}", items=chunk, cost=cost))
    return jobs


# ---------------------------------------------------------------------------------------------
# execution


def _run_job(job: _Job) -> tuple[str, int, dict[str, str]]:
    """Make the files of one job that do not exist yet (runs in a worker process).

    Returns:
        (job key, files written, key -> error for failures).
    """
    failed: dict[str, str] = {}
    written = 0
    if job.kind == "speech":
        assert job.speaker is not None
        todo = [p for p in job.plans if not os.path.exists(p.path)]
        if todo:
            done, failed, _ = synthesize_speaker_batch(job.speaker, todo, job.espeak_path)
            for plan in todo:
                if plan.utt in done:
                    write_audio(plan.path, done[plan.utt], SAMPLE_RATE)
                    written += 1
    else:
        for item in job.items:
            if os.path.exists(item.path):
                continue
            try:
                write_audio(item.path, make_aug_item(item), SAMPLE_RATE)
                written += 1
            except (RuntimeError, ValueError, OSError) as exc:
                failed[item.key] = str(exc)
    return job.key, written, failed


def _execute(jobs: list[_Job], n_jobs: int, quiet: bool) -> dict[str, str]:
    """Run jobs on ``n_jobs`` processes with a progress bar; returns all failures."""
    from tqdm import tqdm

    failed: dict[str, str] = {}
    total = sum(len(j.paths) for j in jobs)
    if not jobs:
        return failed
    jobs = sorted(jobs, key=lambda j: -j.cost)  # long jobs first balances the processes
    sizes = {j.key: len(j.paths) for j in jobs}
    disable = quiet or not sys.stderr.isatty()
    with tqdm(total=total, desc="synthvox", unit="file", disable=disable, dynamic_ncols=True) as bar:
        if n_jobs <= 1:
            for job in jobs:
                key, _, fails = _run_job(job)
                failed.update(fails)
                bar.update(sizes[key])
        else:
            method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
            with multiprocessing.get_context(method).Pool(n_jobs) as pool:
                for key, _, fails in pool.imap_unordered(_run_job, jobs, chunksize=1):
                    failed.update(fails)
                    bar.update(sizes[key])
    return failed


# ---------------------------------------------------------------------------------------------
# lists, trials, manifest


def make_trials(spk2utt: dict[str, list[str]], max_target: int, rng: np.random.Generator) -> list[Trial]:
    """A balanced trial list: up to ``max_target`` same-speaker pairs and as many
    different-speaker pairs, each pair of two distinct utterances listed once.

    Args:
        spk2utt: speaker -> utterances.
        max_target: cap on target trials (sampled without replacement when there are more).
        rng: random generator.

    Returns:
        Trials sorted by (enroll, test); empty when fewer than two speakers have two utterances.
    """
    spk2utt = {s: sorted(u) for s, u in sorted(spk2utt.items()) if u}
    targets = [pair for utts in spk2utt.values() for pair in itertools.combinations(utts, 2)]
    if max_target <= 0 or not targets or len(spk2utt) < 2:
        return []
    if len(targets) > max_target:
        targets = [targets[i] for i in sorted(rng.choice(len(targets), max_target, replace=False))]
    utts = [(u, s) for s, us in spk2utt.items() for u in us]
    n_nontarget_all = (len(utts) ** 2 - sum(len(us) ** 2 for us in spk2utt.values())) // 2
    want = min(len(targets), n_nontarget_all)
    nontargets: set[tuple[str, str]] = set()
    if want > n_nontarget_all // 4:
        every = [
            (a, b) for (a, sa), (b, sb) in itertools.combinations(utts, 2) if sa != sb
        ]  # small lists: enumerate
        nontargets = {every[i] for i in rng.choice(len(every), want, replace=False)}
    else:
        while len(nontargets) < want:
            i, j = rng.integers(len(utts), size=2)
            (a, sa), (b, sb) = utts[i], utts[j]
            if sa != sb:
                nontargets.add((min(a, b), max(a, b)))
    trials = [Trial(a, b, True) for a, b in targets] + [Trial(a, b, False) for a, b in nontargets]
    return sorted(trials, key=lambda t: (t.enroll, t.test))


def _relative_scp(scp: Path, out: Path) -> None:
    """Rewrite ``wav.scp`` paths under ``out`` relative to the scp's folder, so the corpus can be
    moved and two builds of the same seed have identical lists."""
    entries = read_map(scp)
    rel = {}
    for key, value in entries.items():
        path = Path(value)
        if path.is_absolute() and path.is_relative_to(out):
            value = Path(os.path.relpath(path, scp.parent)).as_posix()
        rel[key] = value
    write_map(scp, rel)


def _write_lists(out: Path, preset: Preset, seed: int, plan: _Plan) -> dict[str, Any]:
    stats: dict[str, Any] = {}
    rows = []
    for split in SPLITS:
        wavs: dict[str, str] = {}
        utt2spk: dict[str, str] = {}
        utt2dur: dict[str, float] = {}
        spk2gender: dict[str, str] = {}
        for speaker in plan.speakers[split]:
            for p in plan.utts[speaker.id]:
                if not os.path.exists(p.path):
                    continue
                rate, frames, _ = audio_info(p.path)
                wavs[p.utt], utt2spk[p.utt] = p.path, speaker.id
                utt2dur[p.utt] = round(frames / rate, 4)
                spk2gender[speaker.id] = speaker.gender
                rel = Path(p.path).relative_to(out).as_posix()
                info = [speaker.id, speaker.gender, speaker.engine, speaker.lang, split, int(speaker.real)]
                rows.append([p.utt, *info, rel, utt2dur[p.utt]])
        if len(spk2gender) < 2:
            raise SynthvoxError(
                f"synthvox: split {split!r} has {len(spk2gender)} speaker(s) with audio; need 2"
            )
        spk2utt: dict[str, list[str]] = {}
        for utt, spk in utt2spk.items():
            spk2utt.setdefault(spk, []).append(utt)
        size = preset.split(split)
        trials = make_trials(spk2utt, size.trials, _rng(seed, "trials", split)) if size.trials else None
        root = out / split
        write_speech_dir(root, wavs, utt2spk, utt2dur, trials or None, spk2gender)
        _relative_scp(root / "wav.scp", out)
        real = {s.id for s in plan.speakers[split] if s.real}
        n_real = 0
        if split == "test":
            real_trials = make_trials(
                {s: u for s, u in spk2utt.items() if s in real}, size.trials, _rng(seed, "trials_real", split)
            )
            if real_trials:
                write_trials(root / "trials_real", real_trials)
                n_real = len(real_trials)
            else:
                (root / "trials_real").unlink(missing_ok=True)
        stats[split] = {
            "speakers": len(spk2utt),
            "real_speakers": len(real & set(spk2utt)),
            "utterances": len(wavs),
            "seconds": round(sum(utt2dur.values()), 1),
            "trials": len(trials or []),
            **({"trials_real": n_real} if split == "test" else {}),
        }
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["utt", "speaker", "gender", "source", "lang", "split", "real", "path", "duration"])
    writer.writerows(sorted(rows))
    atomic_write_text(out / "utterances.csv", buf.getvalue())

    for side in SIDES:
        stats[f"augment_{side}"] = {}
        for category, items in plan.augment[side].items():
            wavs = {i.key: i.path for i in items if os.path.exists(i.path)}
            if not wavs:
                raise SynthvoxError(f"synthvox: augmentation pool {side}/{category} is empty")
            scp = write_augment_dir(out / "augment" / side, category, wavs)
            _relative_scp(scp, out)
            seconds = sum(frames / rate for rate, frames, _ in (audio_info(p) for p in wavs.values()))
            stats[f"augment_{side}"][category] = {"files": len(wavs), "seconds": round(seconds, 1)}
    return stats


def _tool_versions() -> dict[str, str]:
    versions: dict[str, str] = {}
    for tool, args in (("espeak-ng", ["--version"]), ("festival", ["--version"]), ("flite", ["--version"])):
        if shutil.which(tool) is not None:
            out = subprocess.run([tool, *args], capture_output=True, text=True, check=False)
            versions[tool] = (
                (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else ""
            )
    from importlib import metadata

    for package in ("wordfreq", "pyroomacoustics", "soundfile", "numpy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return versions


def _manifest(preset: Preset, seed: int, plan: _Plan, stats: dict[str, Any], failed: dict[str, str]) -> dict:
    from gradw import __version__

    speakers = []
    for split in SPLITS:
        for s in plan.speakers[split]:
            entry = {k: v for k, v in dataclasses.asdict(s).items() if k not in ("espeak_voice", "encoding")}
            if s.id in plan.prosody:
                entry["pitch"], entry["rate_wpm"] = (round(x, 2) for x in plan.prosody[s.id])
            speakers.append(entry)
    packages = sorted({s["package"] for s in speakers})
    licences = {s["package"]: s["licence"] for s in speakers}
    licences.update(
        {
            "lincity-ng-data": "GPL-2+",
            "warzone2100-music": "CC-BY-SA-3.0 or GPL-2+",
            "planetblupi-music-midi": "GPL-3+ / Expat",
            "fluid-soundfont-gm": "MIT (FluidR3)",
            "espeak-ng": "GPL-3+",
            "pyroomacoustics": "MIT",
            "wordfreq": "Apache-2.0 code, CC-BY-SA-4.0 data",
        }
    )
    aug_sources = {side: plan.aug_sources[side] for side in SIDES}
    return {
        "corpus": "synthvox",
        "manifest_version": MANIFEST_VERSION,
        "gradw_version": __version__,
        "preset": preset.name,
        "preset_config": dataclasses.asdict(preset),
        "seed": seed,
        "sample_rate": SAMPLE_RATE,
        "audio_format": "FLAC, 16-bit, mono",
        "splits": {s: stats[s] for s in SPLITS},
        "augment": {side: stats[f"augment_{side}"] for side in SIDES},
        "augment_sources": aug_sources,
        "speakers": speakers,
        "speech_packages": packages,
        "licences": licences,
        "missing": plan.missing,
        "notes": plan.notes,
        "failed": dict(sorted(failed.items())),
        "tools": _tool_versions(),
        "licence_note": _REAL_NOTE,
    }


def _existing_files(paths: Iterable[str]) -> int:
    return sum(os.path.exists(p) for p in paths)


def build_synthvox(
    out: Path,
    preset: str | Preset = "tiny",
    seed: int = 0,
    jobs: int | None = None,
    quiet: bool = False,
) -> dict:
    """Build the synthvox corpus into ``out`` (see the module docstring for the layout).

    Resumable: files that exist are kept and only missing ones are made, so an interrupted build
    continues and a finished one is a fast no-op; lists and the manifest are rewritten with the
    same content. Deterministic: the same seed and installed packages give the same corpus.

    Args:
        out: output directory (created).
        preset: ``tiny`` (tests, seconds), ``demo`` (CPU demo), ``full`` (the whole recipe), or
            a :class:`Preset`.
        seed: build seed (speaker prosody, texts, pools, rooms, trials).
        jobs: worker processes (default: every core; 1 runs in this process).
        quiet: no progress bar (it is also off when stderr is not a terminal).

    Returns:
        A summary: speakers, utterances and seconds per split, augmentation files per pool,
        sources used and missing, failures, elapsed seconds.

    Raises:
        SynthvoxError: a required tool is missing (the message names the Debian package and
            ``scripts/install-system-deps.sh``) or a split has fewer than two speakers.
    """
    start = time.monotonic()
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise SynthvoxError(f"unknown synthvox preset {preset!r}; choose one of {', '.join(PRESETS)}")
        preset = PRESETS[preset]
    out = Path(out).absolute()
    n_jobs = max(1, jobs if jobs is not None else (os.cpu_count() or 1))
    if espeak_data_dir() is None:
        raise SynthvoxError(
            "espeak-ng is not installed (Debian package espeak-ng; it drives the MBROLA voices and the "
            f"babble talkers): run `sudo {INSTALL_HINT} {'tiny' if preset.name == 'tiny' else 'full'}`"
        )
    try:
        plan = _make_plan(out, preset, seed)
    except TextError as exc:
        raise SynthvoxError(str(exc)) from None
    out.mkdir(parents=True, exist_ok=True)
    espeak_path = ""
    if any(s.engine == "mbrola" for split in SPLITS for s in plan.speakers[split]):
        try:
            espeak_path = str(make_espeak_data(out / ".work" / "espeak"))
        except (SynthError, OSError) as exc:
            raise SynthvoxError(f"cannot prepare espeak-ng data: {exc}") from exc
    all_jobs = _make_jobs(plan, espeak_path)
    todo = [j for j in all_jobs if _existing_files(j.paths) < len(j.paths)]
    n_files = sum(len(j.paths) for j in all_jobs)
    skipped = n_files - sum(len(j.paths) - _existing_files(j.paths) for j in todo)
    failed = _execute(todo, min(n_jobs, max(1, len(todo))), quiet)
    stats = _write_lists(out, preset, seed, plan)
    manifest = _manifest(preset, seed, plan, stats, failed)
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")

    used = sorted(
        {s.package for split in SPLITS for s in plan.speakers[split]}
        | {src for side in SIDES for cat in plan.aug_sources[side].values() for src in cat}
    )
    summary: dict[str, Any] = {
        "out": str(out),
        "preset": preset.name,
        "seed": seed,
        "speakers": {s: stats[s]["speakers"] for s in SPLITS},
        "real_speakers": {s: stats[s]["real_speakers"] for s in SPLITS},
        "utterances": {s: stats[s]["utterances"] for s in SPLITS},
        "seconds": {s: stats[s]["seconds"] for s in SPLITS},
        "trials": {
            "val": stats["val"]["trials"],
            "test": stats["test"]["trials"],
            "test_real": stats["test"]["trials_real"],
        },
        "augment": {side: {c: v["files"] for c, v in stats[f"augment_{side}"].items()} for side in SIDES},
        "sources_used": used,
        "sources_missing": {k: len(v) for k, v in sorted(plan.missing.items())},
        "files_made": n_files - skipped - len(failed),
        "files_skipped": skipped,
        "failed": len(failed),
        "elapsed_s": round(time.monotonic() - start, 1),
    }
    return summary


def _main(argv: Sequence[str] | None = None) -> int:  # pragma: no cover - manual use
    import argparse

    parser = argparse.ArgumentParser(description="build the synthvox corpus")
    parser.add_argument("out")
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    summary = build_synthvox(Path(args.out), args.preset, args.seed, args.jobs, args.quiet)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_main())
