"""synthvox planning: which speakers, utterances and augmentation files a preset makes, as a list
of jobs with their output paths and seeds (a pure function of the preset and the seed; nothing is
synthesised here).
"""

from __future__ import annotations

import itertools
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from gradw.data.corpora.synthvox.catalogue import CATALOGUE, Speaker
from gradw.data.corpora.synthvox.noise import (
    BABBLE_LANGUAGES,
    MIDI_TEST_SONGS,
    MIDI_VAL_SONGS,
    WARZONE_TEST_ALBUMS,
    WARZONE_VAL_ALBUMS,
    AugItem,
    babble_variants,
    lincity_files,
    midi_files,
    pyroomacoustics_available,
    soundfont_path,
    split_families,
    warzone_tracks,
)
from gradw.data.corpora.synthvox.ood_plan import OodPlan, plan_ood
from gradw.data.corpora.synthvox.presets import (
    _AUG_BATCH,
    _BATCH,
    _SECONDS_PER_WORD,
    _WORD_MARGIN,
    AUDIO_EXT,
    OOD_POOL,
    SIDES,
    SPLITS,
    Preset,
    SplitSize,
    SynthvoxError,
    _rng,
    _seed,
)
from gradw.data.corpora.synthvox.text import make_text, text_language_ok
from gradw.data.corpora.synthvox.voices import (
    INSTALL_HINT,
    UttPlan,
    list_prompts,
    missing_requirement,
    prompt_seconds,
)
from gradw.data.dirs import AUGMENT_CATEGORIES

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
    ood: OodPlan | None = None  # the out-of-domain test pool (in augment and aug_sources when complete)

    def add_ood(self, ood: OodPlan) -> None:
        """Take in the out-of-domain pool's plan: its items when complete, its missing packages
        and notes in any case."""
        self.ood = ood
        for package, what in ood.missing.items():
            self.missing.setdefault(package, []).extend(what)
        self.notes.extend(ood.notes)
        if ood.complete:
            self.augment[OOD_POOL] = ood.items
            self.aug_sources[OOD_POOL] = ood.sources


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
    """Fixed (espeak ``-p`` pitch, rate in wpm) of a speaker, drawn once from its seed."""
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
    """The items of one augmentation side (train, val or test), with a count per source."""

    out: Path
    side: str
    items: dict[str, list[AugItem]] = field(default_factory=lambda: {c: [] for c in AUGMENT_CATEGORIES})
    sources: dict[str, dict[str, int]] = field(default_factory=lambda: {c: {} for c in AUGMENT_CATEGORIES})

    @property
    def index(self) -> int:
        """0 for the train side, 1 for validation, 2 for test (the index into a preset's triples)."""
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


def _side_of(name: str, test: tuple[str, ...], val: tuple[str, ...]) -> str:
    """The side a named source (album, song) belongs to."""
    return "test" if name in test else "val" if name in val else "train"


def _warzone_segments(
    albums: dict[str, list[str]], side: str, seconds: float, cap: int | None
) -> list[tuple[str, float]]:
    """(track, offset) of the soundtrack segments of one side: test albums for test, validation
    albums for val, the others for train; taken round-robin over the tracks so a cap still spreads
    over the albums."""
    tracks = [
        t
        for album, ts in sorted(albums.items())
        if _side_of(album, WARZONE_TEST_ALBUMS, WARZONE_VAL_ALBUMS) == side
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
        if _side_of(Path(song).stem, MIDI_TEST_SONGS, MIDI_VAL_SONGS) == pool.side:
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
    """Single-talker files from espeak-ng formant variants: odd-numbered variants for test, and
    the even-numbered ones alternately for train and validation, each talker with its own
    language, pitch and rate."""
    mine = {"train": variants[0::4], "val": variants[2::4], "test": variants[1::2]}[pool.side]
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
    """Plan the train, validation, test and out-of-domain test augmentation pools from the
    sources installed here."""
    lincity_paths = lincity_files() if preset.real_noise else []
    if preset.real_noise and not lincity_paths:
        plan.missing.setdefault("lincity-ng-data", []).append("real noise recordings")
    lincity = dict(zip(SIDES, split_families(lincity_paths), strict=True)) if lincity_paths else {}
    albums = warzone_tracks() if preset.warzone != (0, 0, 0) else {}
    if preset.warzone != (0, 0, 0) and not albums:
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
    plan.add_ood(plan_ood(out, seed, preset))


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
        for speaker in plan.speakers.get(split, []):
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
                    weight = {"babble": 1.0, "ood_talker": 1.0, "ood_rir": 5.0}.get(kind, 0.3)
                    cost = sum(max(i.seconds, 2.0) for i in chunk) * weight
                    jobs.append(_Job("augment", f"{side}/{category}/{kind}:{start}", items=chunk, cost=cost))
    return jobs
