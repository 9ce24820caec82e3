"""Planning the out-of-domain test pool (``augment/test-ood``) from the sources installed here: a
pure function of the preset, the seed and the installed packages, like the other pools' plan.

When a category has no source on this machine the pool is not planned at all (its missing
packages are reported), so a corpus without it still builds; ``scripts/install-system-deps.sh``
installs every source.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradw.data.corpora.synthvox.noise import AugItem, pyroomacoustics_available
from gradw.data.corpora.synthvox.ood import (
    OOD_LICENCES,
    ROOM_SIZES,
    TALKERS,
    Talker,
    _slug,
    g722_seconds,
    missing_talker,
    music_tracks,
    noise_recordings,
    talker_prompts,
)
from gradw.data.corpora.synthvox.presets import (
    _SECONDS_PER_WORD,
    _WORD_MARGIN,
    AUDIO_EXT,
    OOD_POOL,
    Preset,
    _rng,
    _seed,
)
from gradw.data.corpora.synthvox.text import make_text, text_language_ok
from gradw.data.dirs import AUGMENT_CATEGORIES

NOISE_PACKAGES = ("simutrans-pak64", "openttd-opensfx")
MUSIC_PACKAGES = ("asc-music", "singularity-music", "asterisk-moh-opsound-g722")
_SHORT = {"asc-music": "asc", "singularity-music": "singularity", "asterisk-moh-opsound-g722": "moh"}
#: what differs from the in-domain pools, per category (recorded in the manifest)
DIFFERENCES = {
    "noise": "recordings of other games (Simutrans, OpenTTD OpenSFX) instead of lincity-ng; "
    "procedural machinery and crackle instead of coloured noise, hum and modulated noise",
    "music": "the ASC and Endgame: Singularity soundtracks and Asterisk's music on hold instead of "
    "Warzone 2100, MIDI and procedural music",
    "babble": "Pico, RHVoice, Festival (don) and recorded Asterisk (Russian) talkers, none of them a "
    "speaker of any split, instead of espeak-ng formant variants",
    "rirs": "pyroomacoustics ray tracing (image sources to order 3), air absorption and a "
    "frequency-dependent material per surface, in booths of 1.5-2.8 m and halls of 14-30 m, instead "
    "of image sources only, one absorption for every wall and rooms of 3-12 m",
}


@dataclass
class OodPlan:
    """The out-of-domain pool of a build: its items and sources per category (empty when it
    cannot be built here), the packages that are missing and notes."""

    items: dict[str, list[AugItem]] = field(default_factory=lambda: {c: [] for c in AUGMENT_CATEGORIES})
    sources: dict[str, dict[str, int]] = field(default_factory=lambda: {c: {} for c in AUGMENT_CATEGORIES})
    talkers: dict[str, int] = field(default_factory=dict)
    missing: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every category has items."""
        return all(self.items[c] for c in AUGMENT_CATEGORIES)

    def add(self, out: Path, category: str, origin: str, key: str, kind: str, **fields: Any) -> None:
        path = out.joinpath("audio", "augment", OOD_POOL, category, key + AUDIO_EXT)
        self.items[category].append(AugItem(key, str(path), kind, **fields))
        self.sources[category][origin] = self.sources[category].get(origin, 0) + 1


def _allowed(preset: Preset, package: str) -> bool:
    return preset.ood.packages is None or package in preset.ood.packages


def _interleave(groups: Sequence[Sequence[Any]]) -> list[Any]:
    """Round-robin over the groups, so a cap spreads over all of them."""
    return [x for x in itertools.chain(*itertools.zip_longest(*groups)) if x is not None]


def _plan_noise(out: Path, seed: int, preset: Preset, pool: OodPlan) -> None:
    found = noise_recordings()
    for package in NOISE_PACKAGES:
        if _allowed(preset, package) and package not in found:
            pool.missing.setdefault(package, []).append("out-of-domain noise recordings")
    groups = []
    for package in sorted(p for p in found if _allowed(preset, p)):
        order = _rng(seed, "ood-recordings", package).permutation(len(found[package]))
        groups.append([(package, *found[package][i]) for i in order])
    for package, name, source in sorted(_interleave(groups)[: preset.ood.recordings]):
        pool.add(out, "noise", package, f"ood-{name}", "ood_recording", seed=0, source=source)
    for i in range(preset.ood.noise):
        kind = ("machine", "crackle")[i % 2]
        seed_i = _seed(seed, "ood-noise", i)
        pool.add(
            out,
            "noise",
            f"procedural-{kind}",
            f"ood-{kind}-{i:04d}",
            kind,
            seed=seed_i,
            seconds=preset.noise_seconds,
        )


def _plan_music(out: Path, seed: int, preset: Preset, pool: OodPlan) -> None:
    found = music_tracks()
    if "asterisk-moh-opsound-g722" in found and shutil.which("ffmpeg") is None:
        del found["asterisk-moh-opsound-g722"]
        if _allowed(preset, "asterisk-moh-opsound-g722"):
            pool.missing.setdefault("ffmpeg", []).append("out-of-domain music (G.722)")
    for package in MUSIC_PACKAGES:
        if _allowed(preset, package) and package not in found:
            pool.missing.setdefault(package, []).append("out-of-domain music")
    seconds = preset.music_seconds
    groups = []
    for package in sorted(p for p in found if _allowed(preset, p)):
        # whole segments only, half a second short of the end (compressed files' lengths are estimates)
        per_track = [
            [(package, t, j * seconds) for j in range(int(max(0.0, d - 0.5) // seconds))]
            for t, d in found[package]
        ]
        groups.append(_interleave(per_track))
    for package, track, offset in sorted(_interleave(groups)[: preset.ood.music]):
        key = f"ood-{_SHORT[package]}-{_slug(Path(track).stem)}-{int(offset):04d}"
        pool.add(
            out, "music", package, key, "ood_music", seed=0, seconds=seconds, source=track, offset=offset
        )


def _talkers(preset: Preset, pool: OodPlan) -> list[Talker]:
    usable = []
    text_ok: dict[str, bool] = {}
    for talker in (t for t in TALKERS if _allowed(preset, t.package)):
        need = missing_talker(talker)
        if need is None and not talker.real:
            if talker.lang not in text_ok:
                text_ok[talker.lang] = text_language_ok(talker.lang)
            if not text_ok[talker.lang]:
                need = "wordfreq (pip install wordfreq==3.1.1)"
        if need is None:
            usable.append(talker)
        else:
            pool.missing.setdefault(need, []).append(f"out-of-domain talker {talker.id}")
    return usable


def _plan_babble(out: Path, seed: int, preset: Preset, pool: OodPlan) -> None:
    """Single-talker files, the talkers taken in turn; a recorded talker's files concatenate
    recordings, each used once in the pool."""
    talkers = _talkers(preset, pool)
    queues: dict[str, list[str]] = {}
    for t in (t for t in talkers if t.real):
        prompts = talker_prompts(t.voice)
        queues[t.id] = [prompts[i] for i in _rng(seed, "ood-prompts", t.id).permutation(len(prompts))]
    seconds = preset.babble_seconds
    for i in range(preset.ood.babble if talkers else 0):
        talker = talkers[i % len(talkers)]
        key = f"ood-talker-{i:04d}"
        if talker.real:
            sources: list[str] = []
            total = 0.0
            while queues[talker.id] and total < 1.2 * seconds:  # silences are trimmed away
                sources.append(queues[talker.id].pop(0))
                total += g722_seconds(sources[-1])
            if total < 0.5 * seconds:
                pool.notes.append(f"{talker.id}: recordings ran out after {i} babble files")
                continue
            fields: dict[str, Any] = {"seed": _seed(seed, "ood-babble", i), "sources": tuple(sources)}
        else:
            rng = _rng(seed, "ood-babble", i)
            rate = int(rng.integers(80, 121))
            words = math.ceil(
                1.2 * _WORD_MARGIN * seconds / (_SECONDS_PER_WORD.get(talker.lang, 0.2) * rate / 100.0)
            )
            text = make_text(talker.lang, words, rng)
            fields = {"seed": 0, "text": text, "rate": rate, "pitch": int(rng.integers(90, 111))}
        pool.add(out, "babble", talker.package, key, "ood_talker", seconds=seconds, voice=talker.id, **fields)
        pool.talkers[talker.id] = pool.talkers.get(talker.id, 0) + 1


def plan_ood(out: Path, seed: int, preset: Preset) -> OodPlan:
    """Plan the out-of-domain test pool of a build into ``out`` from the sources installed here.

    Returns:
        The plan; ``complete`` is False (and its items are empty) when a category has no source
        here, with the missing packages in ``missing`` and a note.
    """
    out = Path(out).absolute()
    pool = OodPlan()
    _plan_noise(out, seed, preset, pool)
    _plan_music(out, seed, preset, pool)
    _plan_babble(out, seed, preset, pool)
    rooms = "pyroomacoustics-ray-tracing" if pyroomacoustics_available() else "banded-statistical-rir"
    if rooms != "pyroomacoustics-ray-tracing":
        pool.missing.setdefault("pyroomacoustics (pip install pyroomacoustics==0.10.1)", []).append(
            "out-of-domain rooms (a statistical model with octave-band decays is used instead)"
        )
    for i in range(preset.ood.rirs):
        pool.add(out, "rirs", rooms, f"ood-rir-{i:05d}", "ood_rir", seed=_seed(seed, "ood-rir", i))
    if not pool.complete:
        empty = [c for c in AUGMENT_CATEGORIES if not pool.items[c]]
        packages = " ".join(sorted(pool.missing)) or "(none)"
        pool.notes.append(
            f"augment/{OOD_POOL} not built: no source for {', '.join(empty)} here (missing: {packages}); "
            "install them with scripts/install-system-deps.sh"
        )
        pool.items = {c: [] for c in AUGMENT_CATEGORIES}
        pool.sources = {c: {} for c in AUGMENT_CATEGORIES}
        pool.talkers = {}
    return pool


def ood_manifest(pool: OodPlan, preset: Preset) -> dict[str, Any]:
    """The manifest's description of the pool: what differs, its talkers, its rooms, licences."""
    used = {src for cat in pool.sources.values() for src in cat}
    return {
        "pool": OOD_POOL,
        "size": dataclasses.asdict(preset.ood),
        "differs": DIFFERENCES,
        "talkers": [{**vars(t), "files": pool.talkers[t.id]} for t in TALKERS if t.id in pool.talkers],
        "room_sizes_m": {k: [list(low), list(high)] for k, (low, high) in ROOM_SIZES.items()},
        "licences": {p: lic for p, lic in OOD_LICENCES.items() if p in used},
    }
