"""synthvox: the embedded default corpus, built from Debian and PyPI packages only.

``build_synthvox(out, preset)`` makes a VoxCeleb/MUSAN-like corpus on a machine that has no
corpus:

* **speech** from 83 real speakers: 60 MBROLA diphone voices driven by espeak-ng (phoneme output
  remapped, then ``mbrola -e``), 11 Festival and 2 Flite voices, and 10 speakers who are actual
  recordings (Asterisk prompts, Fish Fillets dialogue, KTuberling's words: the validation split
  has recordings, as the test has). Each synthesised speaker gets its own
  pitch and rate, jittered per utterance. Speakers are split train / val / test with test
  speakers never seen in training; ``test/trials_real`` lists the real-recordings-only trials;
* **augmentation** pools for train, validation and test with disjoint sources: noise (real
  recordings and coloured noise), music (a real soundtrack, MIDI through a sampled-instrument
  soundfont, procedural music), babble talkers (espeak-ng formant voices) and simulated rooms
  (pyroomacoustics);
* an **out-of-domain test pool** (``augment/test-ood``, see ``ood.py``) whose noise, music,
  babble and rooms come from packages, generators, voices and a room simulation that no item of
  the other pools comes from: it measures how a system generalises to unseen noise.

Output (the data contract)::

    OUT/train, OUT/val, OUT/test        speech dirs (wav.scp utt2spk spk2utt utt2dur spk2gender;
                                        val and test with trials; test with trials_real)
    OUT/augment/{train,val,test,test-ood}/{noise,music,babble,rirs}/wav.scp
    OUT/audio/...                       16 kHz mono 16-bit FLAC
    OUT/manifest.json                   sources, licences, sizes; OUT/utterances.csv

The build uses every core, is resumable (finished files are skipped) and deterministic for a
seed. ``add_pool(out)`` builds the out-of-domain pool alone into a corpus built before it existed,
leaving every other file as it is. Install the system packages with
``scripts/install-system-deps.sh tiny|full`` (as root). MBROLA voices are non-free: never
redistribute them or the audio generated from them.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import multiprocessing
import os
import shutil
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gradw.audio.io import audio_info, write_audio
from gradw.data.corpora.synthvox.noise import AugItem, make_aug_item
from gradw.data.corpora.synthvox.ood import OOD_KINDS, make_ood_item
from gradw.data.corpora.synthvox.ood_plan import OodPlan, ood_manifest, plan_ood
from gradw.data.corpora.synthvox.plan import _Job, _make_jobs, _make_plan, _Plan
from gradw.data.corpora.synthvox.presets import (
    _REAL_NOTE,
    MANIFEST_VERSION,
    OOD_POOL,
    POOLS,
    PRESETS,
    SPLITS,
    Preset,
    SynthvoxError,
    _rng,
)
from gradw.data.corpora.synthvox.text import TextError
from gradw.data.corpora.synthvox.voices import (
    INSTALL_HINT,
    SAMPLE_RATE,
    SynthError,
    espeak_data_dir,
    make_espeak_data,
    synthesize_speaker_batch,
)
from gradw.data.dirs import AUGMENT_CATEGORIES, write_augment_dir, write_speech_dir
from gradw.data.lists import atomic_write_text, read_map, write_map
from gradw.data.trials import make_trials, write_trials
from gradw.progress import Progress
from gradw.runlock import RunLock

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
                wav = make_ood_item(item) if item.kind in OOD_KINDS else make_aug_item(item)
                write_audio(item.path, wav, SAMPLE_RATE)
                written += 1
            except (RuntimeError, ValueError, OSError) as exc:
                failed[item.key] = str(exc)
    return job.key, written, failed


def _execute(jobs: list[_Job], n_jobs: int, quiet: bool) -> dict[str, str]:
    """Run jobs on ``n_jobs`` processes with a progress bar; returns all failures."""
    failed: dict[str, str] = {}
    total = sum(len(j.paths) for j in jobs)
    if not jobs:
        return failed
    jobs = sorted(jobs, key=lambda j: -j.cost)  # long jobs first balances the processes
    sizes = {j.key: len(j.paths) for j in jobs}
    with Progress("synthvox", total, "file", quiet=quiet) as bar:
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

    for side in (s for s in POOLS if s in plan.augment):
        stats[f"augment_{side}"] = _write_pool(out, side, plan.augment[side])
    return stats


def _write_pool(out: Path, side: str, pool: dict[str, list[AugItem]]) -> dict[str, dict[str, Any]]:
    """Write the lists of one augmentation pool; returns files and seconds per category."""
    stats = {}
    for category, items in pool.items():
        wavs = {i.key: i.path for i in items if os.path.exists(i.path)}
        if not wavs:
            raise SynthvoxError(f"synthvox: augmentation pool {side}/{category} is empty")
        scp = write_augment_dir(out / "augment" / side, category, wavs)
        _relative_scp(scp, out)
        seconds = sum(frames / rate for rate, frames, _ in (audio_info(p) for p in wavs.values()))
        stats[category] = {"files": len(wavs), "seconds": round(seconds, 1)}
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
    from gradw.version import __version__

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
    pools = [side for side in POOLS if side in plan.augment]
    manifest = {
        "corpus": "synthvox",
        "manifest_version": MANIFEST_VERSION,
        "gradw_version": __version__,
        "preset": preset.name,
        "preset_config": dataclasses.asdict(preset),
        "seed": seed,
        "sample_rate": SAMPLE_RATE,
        "audio_format": "FLAC, 16-bit, mono",
        "splits": {s: stats[s] for s in SPLITS},
        "augment": {side: stats[f"augment_{side}"] for side in pools},
        "augment_sources": {side: plan.aug_sources[side] for side in pools},
        "speakers": speakers,
        "speech_packages": packages,
        "licences": licences,
        "missing": plan.missing,
        "notes": plan.notes,
        "failed": dict(sorted(failed.items())),
        "tools": _tool_versions(),
        "licence_note": _REAL_NOTE,
    }
    if plan.ood is not None and plan.ood.complete:
        _add_ood_to_manifest(manifest, plan.ood, preset, stats[f"augment_{OOD_POOL}"], {})
    return manifest


_OOD_NOTE = (
    "The out-of-domain pool's Pico and RHVoice voices are non-free in Debian (trained models "
    "without their sources): do not redistribute them or audio made from them. OpenSFX sounds are "
    "CC-BY-3.0, CC-BY-SA-3.0 or CC0-1.0, Asterisk's music on hold and the Singularity soundtrack "
    "CC-BY-SA-3.0, the Russian Asterisk prompts CC-BY-3.0, the ASC soundtrack GPL-2+, the "
    "Simutrans sounds Artistic-1.0, Festival's don voice BSD-like: keep this attribution with any "
    "derived audio and do not commit the generated audio."
)


def _add_ood_to_manifest(
    manifest: dict, ood: OodPlan, preset: Preset, stats: dict[str, Any], failed: dict[str, str]
) -> None:
    """Record the out-of-domain pool in a manifest (in place): its sizes, sources, description,
    licences, missing packages, notes and failures."""
    manifest["preset_config"]["ood"] = dataclasses.asdict(preset.ood)
    manifest["augment"][OOD_POOL] = stats
    manifest["augment_sources"][OOD_POOL] = ood.sources
    manifest["ood"] = ood_manifest(ood, preset)
    manifest["licences"].update(manifest["ood"]["licences"])
    for package, what in ood.missing.items():
        have = manifest["missing"].setdefault(package, [])
        have.extend(w for w in what if w not in have)
    manifest["notes"].extend(n for n in ood.notes if n not in manifest["notes"])
    manifest["failed"] = dict(sorted({**manifest["failed"], **failed}.items()))
    manifest["ood_licence_note"] = _OOD_NOTE


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
    with RunLock(out, "corpus build"):
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
            | {src for side in plan.aug_sources for cat in plan.aug_sources[side].values() for src in cat}
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
            "augment": {
                side: {c: v["files"] for c, v in stats[f"augment_{side}"].items()}
                for side in POOLS
                if f"augment_{side}" in stats
            },
            "sources_used": used,
            "sources_missing": {k: len(v) for k, v in sorted(plan.missing.items())},
            "files_made": n_files - skipped - len(failed),
            "files_skipped": skipped,
            "failed": len(failed),
            "elapsed_s": round(time.monotonic() - start, 1),
        }
        return summary


# ---------------------------------------------------------------------------------------------
# the out-of-domain pool alone, into an existing corpus


def pool_ready(root: Path, pool: str = OOD_POOL) -> bool:
    """Whether the corpus at ``root`` has augmentation pool ``pool``: listed in its manifest, with
    a list per category."""
    manifest = Path(root) / "manifest.json"
    if not manifest.is_file():
        return False
    try:
        listed = pool in json.loads(manifest.read_text(encoding="utf-8")).get("augment", {})
    except (ValueError, OSError):
        return False
    return listed and all(
        (Path(root) / "augment" / pool / c / "wav.scp").is_file() for c in AUGMENT_CATEGORIES
    )


def add_pool(out: Path, pool: str = OOD_POOL, jobs: int | None = None, quiet: bool = False) -> dict:
    """Build augmentation pool ``pool`` (the out-of-domain test pool) alone into the corpus at
    ``out``, with the preset and seed its manifest names.

    Only the pool's audio and lists are written, and the manifest is updated (atomically) to
    describe it; every other file is left as it is. Resumable and deterministic as
    :func:`build_synthvox`, whose full build makes the same pool.

    Returns:
        A summary: the pool's files per category, sources used and missing, failures, elapsed
        seconds.

    Raises:
        SynthvoxError: ``out`` has no synthvox manifest, its preset is unknown, or the pool's
            sources are not installed here (the message names the packages).
    """
    start = time.monotonic()
    out = Path(out).absolute()
    if pool != OOD_POOL:
        raise SynthvoxError(
            f"synthvox: only the {OOD_POOL} pool can be added to a built corpus, not {pool!r}"
        )
    path = out / "manifest.json"
    if not path.is_file():
        raise SynthvoxError(
            f"{out}: no synthvox corpus here (no manifest.json); build it with `gradw data build`"
        )
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("corpus") != "synthvox" or manifest.get("preset") not in PRESETS:
        raise SynthvoxError(f"{path}: not a synthvox corpus of a known preset ({', '.join(PRESETS)})")
    preset, seed = PRESETS[manifest["preset"]], int(manifest["seed"])
    try:
        ood = plan_ood(out, seed, preset)
    except TextError as exc:
        raise SynthvoxError(str(exc)) from None
    if not ood.complete:
        raise SynthvoxError(f"synthvox: {ood.notes[-1]}")
    n_jobs = max(1, jobs if jobs is not None else (os.cpu_count() or 1))
    with RunLock(out, "corpus build"):
        plan = _Plan(augment={OOD_POOL: ood.items}, aug_sources={OOD_POOL: ood.sources})
        all_jobs = _make_jobs(plan, "")
        todo = [j for j in all_jobs if _existing_files(j.paths) < len(j.paths)]
        n_files = sum(len(j.paths) for j in all_jobs)
        skipped = n_files - sum(len(j.paths) - _existing_files(j.paths) for j in todo)
        failed = _execute(todo, min(n_jobs, max(1, len(todo))), quiet)
        stats = _write_pool(out, OOD_POOL, ood.items)
        _add_ood_to_manifest(manifest, ood, preset, stats, failed)
        atomic_write_text(path, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return {
        "out": str(out),
        "preset": preset.name,
        "seed": seed,
        "pool": OOD_POOL,
        "augment": {OOD_POOL: {c: v["files"] for c, v in stats.items()}},
        "sources_used": sorted({src for cat in ood.sources.values() for src in cat}),
        "sources_missing": {k: len(v) for k, v in sorted(ood.missing.items())},
        "files_made": n_files - skipped - len(failed),
        "files_skipped": skipped,
        "failed": len(failed),
        "elapsed_s": round(time.monotonic() - start, 1),
    }
