"""Scale: list loading, dataset indexing, evaluation planning and scoring at VoxCeleb size.

Run by hand (not part of the tests)::

    python benchmarks/scale_lists.py --work /scratch/scale-lists
    python benchmarks/scale_lists.py --entries 20000 --speakers 400 --trials 2000   # a quick check

Generates, under ``--work`` (kept; by default a temporary folder, removed at the end):

* a VoxCeleb2-dev-sized training list: ``--entries`` (1,000,000) utterances of ``--speakers``
  (6,000) speakers, ids ``idNNNNN/<video>/NNNNN`` (about ``--per-video`` utterances per video),
  written as ``gradw data prepare voxceleb`` writes them: ``wav.scp`` (absolute paths),
  ``utt2spk``, ``spk2utt``, ``utt2dur`` and ``spk2gender``;
* a Vox1-O-sized test list: ``--test-utts`` (4,874) utterances of ``--test-speakers`` (40) with a
  ``trials`` list of ``--trials`` (37,611) pairs, half of them target pairs;
* an augmentation directory: ``noise``, ``music``, ``babble`` and ``rirs``, ``--augment-files``
  keys each.

Every entry is a symlink (``--layout symlinks``: one per entry, in VoxCeleb's folder layout) to
one of a few generated files (speech-like audio of ``--seconds`` 4 to 12 s, noise, music, babble,
RIRs); ``--layout shared`` points the lists at those files directly. No corpus is written. The
generation is timed, but it is not a gradw figure.

Each stage then runs in a fresh process, so its peak RSS (taken by ``_common.run_child``) is its
own; every process imports the same gradw modules (and torch) before its stage, and the memory
this costs (its peak RSS at that point) is reported as the base:

* ``load``: ``SpeechDir.load`` of the training list as training runs it (every file checked and
  its header read); ``load-nocheck``: the same with ``check_audio=False`` (lists and validation).
* ``dataset-g`` / ``dataset-e``: the training datasets as ``gradw train`` (``EnhancementTriples``
  of the paper preset) and ``gradw train-speaker`` (``SpeakerCrops``) build them on the loaded
  list, then the keys of ``--items`` items from the step sampler at the preset's batch size.
  Items are not drawn: every item decodes its audio (``data_throughput.py`` measures that), so
  what is measured here is the index (construction) and the sampler.
* ``plan``: what ``gradw evaluate`` does before embedding: the test list and its trials, the
  condition grid (clean + ``--categories`` x ``--snrs``, 28 conditions by default), the
  augmentation lists, the seeded manifest (built from the audio and saved, then reloaded as a
  rerun or every torchrun rank does), the embedding-cache keys of ``--systems`` systems, the
  length order and the cache look-up. No embedding is computed.
* ``score``: what ``gradw evaluate`` does after embedding (``grid._score``, then ``results.json``
  and ``report.md`` with its plots), on random embeddings (``--dim``) written to its cache first:
  cosine scores of every trial under every system x condition, score files, EER and minDCF
  (P_target 0.01 and 0.05) with ``--n-boot`` speaker-bootstrap resamples (``gradw evaluate``'s
  default is 1000) and the paired EER differences against ``noisy``.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from _common import (
    SR,
    Stopwatch,
    emit_result,
    machine_summary,
    markdown_table,
    peak_rss_mib,
    run_child,
    set_threads,
    speech_like,
    worker_command,
)

from gradw.config import DEFAULT_SNRS

STAGES = ("load", "load-nocheck", "dataset-g", "dataset-e", "plan", "score")
AUGMENT = ("noise", "music", "babble", "rirs")
_VIDEO_CHARS = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))


# ---------------------------------------------------------------------------------------------
# memory and timers


def current_rss_mib() -> float:
    """Resident memory of this process now, MiB (``/proc/self/statm``; nan elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return float("nan")
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def wrap_exclusive(watch: Stopwatch, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` timed into section ``name``, its time taken off the section it was called from, so
    that nested sections (``read_map`` inside the ``utt2dur`` check) are counted once."""

    def timed(*args: Any, **kwargs: Any) -> Any:
        parent = watch.current
        start = time.perf_counter()
        watch.start(name)
        try:
            return fn(*args, **kwargs)
        finally:
            watch.stop()
            if parent is not None:
                watch.seconds[parent] = watch.seconds.get(parent, 0.0) - (time.perf_counter() - start)

    return timed


class Stage:
    """What one stage process measured: timed sections (counted in the stage's time or setup),
    memory marks and sizes."""

    def __init__(self) -> None:
        self.watch = Stopwatch()
        self.sections: list[tuple[str, bool]] = []  # (name, counted) in first-seen order
        self.marks: dict[str, float] = {}
        self.info: dict[str, Any] = {}

    def timed(self, name: str, counted: bool = True) -> Any:
        """``with stage.timed("name"): ...`` times a block into section ``name``."""
        self.declare(name, counted)
        return self.watch(name)

    def declare(self, name: str, counted: bool = True) -> None:
        """Register section ``name`` (a wrapped function times into it)."""
        if name not in [n for n, _ in self.sections]:
            self.sections.append((name, counted))

    def mark(self, name: str) -> None:
        """Record the resident memory now (after a garbage collection) as ``name``."""
        gc.collect()
        self.marks[name] = current_rss_mib()

    def result(self, base_mib: float) -> dict[str, Any]:
        """The stage's report for the driver (``base_mib``: peak RSS before the stage began)."""
        rows = [(n, self.watch.get(n), counted) for n, counted in self.sections]
        return {
            "sections": rows,
            "seconds": sum(s for _, s, counted in rows if counted),
            "setup_seconds": sum(s for _, s, counted in rows if not counted),
            "base_mib": base_mib,
            "peak_in_stage_mib": peak_rss_mib(),
            "marks": self.marks,
            **self.info,
        }


# ---------------------------------------------------------------------------------------------
# generation (not a gradw figure)


def work_paths(work: Path) -> dict[str, Path]:
    """Where the generated pool, audio links, lists and evaluation output live under ``work``."""
    return {
        "pool": work / "pool",
        "audio": work / "audio",
        "train": work / "lists" / "vox2_dev",
        "test": work / "lists" / "vox1_test",
        "augment": work / "lists" / "augment",
        "eval": work / "eval",
    }


def _write_wav(path: Path, wav: np.ndarray) -> float:
    from gradw.audio.io import write_audio

    write_audio(path, np.clip(wav, -0.99, 0.99).astype(np.float32), SR)
    return len(wav) / SR


def make_pool(pool: Path, files: int, seconds: tuple[float, float], seed: int) -> dict[str, list]:
    """The few real audio files every list entry points at: category -> [(path, seconds)]."""
    rng = np.random.default_rng(seed)
    pool.mkdir(parents=True, exist_ok=True)
    out: dict[str, list] = {"speech": [], "noise": [], "music": [], "babble": [], "rirs": []}
    for k in range(files):
        path = pool / f"speech_{k:03d}.wav"
        out["speech"].append((path, _write_wav(path, speech_like(float(rng.uniform(*seconds)), seed=k))))
    for k in range(4):
        n = 15 * SR
        white = rng.standard_normal(n)
        coloured = np.convolve(white, np.exp(-np.arange(32) / (4.0 + 4 * k)), mode="same")
        path = pool / f"noise_{k}.wav"
        out["noise"].append((path, _write_wav(path, 0.1 * coloured / coloured.std())))
        t = np.arange(n) / SR
        notes = 220.0 * 2 ** (rng.integers(0, 24, size=n // (SR // 2) + 1) / 12)
        f0 = np.repeat(notes, SR // 2)[:n]
        phase = 2 * np.pi * np.cumsum(f0) / SR
        music = sum(np.sin(h * phase) / h for h in range(1, 6)) * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t))
        path = pool / f"music_{k}.wav"
        out["music"].append((path, _write_wav(path, 0.2 * music / np.abs(music).max())))
        path = pool / f"babble_{k}.wav"
        out["babble"].append((path, _write_wav(path, speech_like(15.0, seed=1000 + k))))
        m = int((0.2 + 0.1 * k) * SR)
        rir = rng.standard_normal(m) * np.exp(-np.arange(m) / (0.05 * SR))
        rir[0] = 1.0
        path = pool / f"rir_{k}.wav"
        out["rirs"].append((path, _write_wav(path, 0.9 * rir / np.abs(rir).max())))
    return out


def _video_ids(count: int, rng: np.random.Generator) -> list[str]:
    """``count`` distinct YouTube-like 11-character ids."""
    ids: list[str] = []
    seen: set[str] = set()
    while len(ids) < count:
        for row in _VIDEO_CHARS[rng.integers(0, len(_VIDEO_CHARS), size=(count - len(ids), 11))]:
            vid = "".join(row)
            if vid not in seen:
                seen.add(vid)
                ids.append(vid)
    return ids


def _link(path: Path, target: Path, made: set[Path]) -> None:
    if path.parent not in made:
        path.parent.mkdir(parents=True, exist_ok=True)
        made.add(path.parent)
    os.symlink(os.path.relpath(target, path.parent), path)


def make_speech_list(
    root: Path,
    audio: Path,
    pool: Sequence[tuple[Path, float]],
    entries: int,
    speakers: int,
    first_id: int,
    per_video: int,
    layout: str,
    rng: np.random.Generator,
) -> dict[str, list[str]]:
    """Write a VoxCeleb-layout speech directory (``wav.scp``, ``utt2spk``, ``spk2utt``,
    ``utt2dur``, ``spk2gender``); returns spk2utt."""
    counts = [entries // speakers + (1 if i < entries % speakers else 0) for i in range(speakers)]
    videos = _video_ids(sum(math.ceil(c / per_video) for c in counts), rng)
    choice = rng.integers(0, len(pool), size=entries)
    scp, u2s, u2d = [], [], []
    spk2utt: dict[str, list[str]] = {}
    made: set[Path] = set()
    v = e = 0
    for i, count in enumerate(counts):
        spk = f"id{first_id + i:05d}"
        utts = spk2utt.setdefault(spk, [])
        for k in range(count):
            if k % per_video == 0:
                video = videos[v]
                v += 1
            utt = f"{spk}/{video}/{k % per_video + 1:05d}"
            target, seconds = pool[int(choice[e])]
            e += 1
            path = target
            if layout == "symlinks":
                path = audio / f"{utt}.wav"
                _link(path, target, made)
            scp.append(f"{utt} {path}\n")
            u2s.append(f"{utt} {spk}\n")
            u2d.append(f"{utt} {round(seconds, 4)!r}\n")
            utts.append(utt)
    root.mkdir(parents=True, exist_ok=True)
    for name, lines in (("wav.scp", scp), ("utt2spk", u2s), ("utt2dur", u2d)):
        lines.sort()
        (root / name).write_text("".join(lines))
    (root / "spk2utt").write_text("".join(f"{s} {' '.join(sorted(u))}\n" for s, u in sorted(spk2utt.items())))
    genders = "".join(f"{s} {'mf'[i % 2]}\n" for i, s in enumerate(sorted(spk2utt)))
    (root / "spk2gender").write_text(genders)
    return spk2utt


def write_trials_list(root: Path, spk2utt: dict[str, list[str]], trials: int, seed: int) -> int:
    """A Vox1-O-like ``trials`` file (Kaldi order): ``trials`` pairs, about half target."""
    from gradw.data.trials import make_balanced_trials, write_trials

    pairs = make_balanced_trials(spk2utt, 2 * math.ceil(trials / 2), seed)
    drop = len(pairs) - trials
    if drop > 0:  # an odd count: one target pair fewer
        target = set([i for i, t in enumerate(pairs) if t.target][:drop])
        pairs = [t for i, t in enumerate(pairs) if i not in target]
    write_trials(root / "trials", pairs)
    return len(pairs)


def make_augment(root: Path, audio: Path, pool: dict[str, list], files: int, layout: str) -> dict[str, int]:
    """``<root>/<category>/wav.scp`` for noise, music, babble and rirs, ``files`` keys each."""
    made: set[Path] = set()
    for category in AUGMENT:
        lines = []
        for k in range(files):
            target = pool[category][k % len(pool[category])][0]
            path = target
            if layout == "symlinks":
                path = audio / category / f"{category}-{k:05d}.wav"
                _link(path, target, made)
            lines.append(f"{category}-{k:05d} {path}\n")
        (root / category).mkdir(parents=True, exist_ok=True)
        (root / category / "wav.scp").write_text("".join(lines))
    return dict.fromkeys(AUGMENT, files)


def generate(args: argparse.Namespace, work: Path) -> list[tuple[str, str, float]]:
    """Write every list the stages read; (what, size, seconds) per part."""
    paths = work_paths(work)
    rng = np.random.default_rng(args.seed)
    rows = []
    start = time.perf_counter()
    pool = make_pool(paths["pool"], args.audio_files, tuple(args.seconds), args.seed)
    total = sum(s for _, s in pool["speech"])
    rows.append(
        (
            "audio pool",
            f"{args.audio_files} speech files ({total:.0f} s), 4 each of noise/music/babble/rirs",
            time.perf_counter() - start,
        )
    )
    start = time.perf_counter()
    make_speech_list(
        paths["train"],
        paths["audio"] / "train",
        pool["speech"],
        args.entries,
        args.speakers,
        1,
        args.per_video,
        args.layout,
        rng,
    )
    rows.append(
        (
            "training list",
            f"{args.entries:,} entries, {args.speakers:,} speakers ({args.layout})",
            time.perf_counter() - start,
        )
    )
    start = time.perf_counter()
    spk2utt = make_speech_list(
        paths["test"],
        paths["audio"] / "test",
        pool["speech"],
        args.test_utts,
        args.test_speakers,
        10270,
        args.per_video,
        args.layout,
        rng,
    )
    count = write_trials_list(paths["test"], spk2utt, args.trials, args.seed)
    rows.append(
        (
            "test list + trials",
            f"{args.test_utts:,} entries, {args.test_speakers} speakers, {count:,} trials",
            time.perf_counter() - start,
        )
    )
    start = time.perf_counter()
    make_augment(paths["augment"], paths["audio"] / "augment", pool, args.augment_files, args.layout)
    rows.append(
        (
            "augmentation lists",
            f"{args.augment_files} keys x {len(AUGMENT)} categories",
            time.perf_counter() - start,
        )
    )
    return rows


# ---------------------------------------------------------------------------------------------
# the stages (each in its own process)


def _import_gradw() -> None:
    """Import every gradw module a stage uses, so each stage starts from the same base memory."""
    import gradw.config
    import gradw.data.datasets
    import gradw.data.dirs
    import gradw.data.manifest
    import gradw.evaluation.bootstrap
    import gradw.evaluation.grid
    import gradw.evaluation.report.document
    import gradw.training.enhancer
    import gradw.training.loop
    import gradw.training.speaker  # noqa: F401


def stage_load(args: argparse.Namespace, paths: dict[str, Path], stage: Stage, check_audio: bool) -> None:
    """``SpeechDir.load`` of the training list, with a breakdown of where its time goes."""
    import gradw.data.dirs as dirs

    names = {
        "read_map": "read lists (read_map)",
        "_resolve_scp": "resolve wav.scp paths",
        "_check_files": "file checks" + (" (exists + header read)" if check_audio else " (exists)"),
        "_read_utt2dur": "utt2dur check",
        "_check_spk2utt": "spk2utt check",
    }
    for attr, name in names.items():
        stage.declare(name)
        setattr(dirs, attr, wrap_exclusive(stage.watch, name, getattr(dirs, attr)))
    stage.declare("build SpeechDir (spk2utt)")
    dirs.SpeechDir.__post_init__ = wrap_exclusive(  # type: ignore[method-assign]
        stage.watch, "build SpeechDir (spk2utt)", dirs.SpeechDir.__post_init__
    )
    stage.declare("rest of SpeechDir.load")
    start = time.perf_counter()
    with stage.watch("rest of SpeechDir.load"):
        speech = dirs.SpeechDir.load(paths["train"], check_audio=check_audio)
    stage.info["wall_load_s"] = time.perf_counter() - start
    stage.mark("after load")
    stage.info.update(count=len(speech), unit="entries", speakers=len(speech.spk2utt))


def _sampler_keys(stage: Stage, num_items: int, batch: int, items: int, seed: int) -> None:
    from gradw.training.distributed import DistInfo
    from gradw.training.loop import StepSampler

    steps = max(1, math.ceil(items / batch))
    with stage.timed(f"sampler keys ({steps} steps x {batch})"):
        drawn = sum(len(keys) for keys in StepSampler(num_items, batch, seed, 0, steps, DistInfo()))
    stage.info["keys"] = drawn
    stage.info["key_steps"] = steps


def stage_dataset(args: argparse.Namespace, paths: dict[str, Path], stage: Stage, which: str) -> None:
    """The training dataset of ``gradw train`` (``g``) or ``gradw train-speaker`` (``e``)."""
    from gradw.config import SpeakerTrainConfig, TrainConfig, load_config
    from gradw.data.dirs import AugmentDir, SpeechDir
    from gradw.training.enhancer import _make_dataset
    from gradw.training.speaker import speaker_crops

    with stage.timed("load list (check_audio=False; setup)", counted=False):
        speech = SpeechDir.load(paths["train"], check_audio=False)
    stage.mark("after load")
    with stage.timed("augmentation lists (AugmentDir.load)"):
        augment = AugmentDir.load(paths["augment"])
    if which == "g":
        config = load_config(
            TrainConfig,
            "paper",
            [f"data.train={paths['train']}", f"data.augment={paths['augment']}"],
            section="train",
        )
        with stage.timed("build EnhancementTriples (paper)"):
            dataset: Any = _make_dataset(config, speech, augment)
        batch, seed = config.optim.batch_size, config.seed
    else:
        e_config = load_config(
            SpeakerTrainConfig,
            "paper",
            [f"train={paths['train']}", f"augment={paths['augment']}"],
            section="train_speaker",
        )
        with stage.timed("build SpeakerCrops (paper)"):
            dataset = speaker_crops(e_config, speech, augment)
        batch, seed = e_config.optim.batch_size, e_config.seed
    stage.mark("after dataset")
    _sampler_keys(stage, len(dataset), batch, args.items, seed)
    stage.info.update(count=len(dataset), unit="entries", batch=batch)


def _conditions(args: argparse.Namespace) -> list[Any]:
    from gradw.data.conditions import parse_conditions

    return parse_conditions(["clean", *[c for c in args.categories if c != "clean"]], args.snrs)


def _system_names(count: int) -> list[str]:
    return ["noisy", *[f"g-{k}" for k in range(1, count)]]


def _test_and_trials(paths: dict[str, Path], stage: Stage) -> tuple[Any, list[Any], list[str]]:
    """The test list, its trials and the utterances they need, as ``gradw evaluate`` reads them."""
    from gradw.data.dirs import SpeechDir
    from gradw.data.trials import load_trials, select_trials

    with stage.timed("test list (SpeechDir.load, reads trials)"):
        test = SpeechDir.load(paths["test"])
    with stage.timed("trials (load_trials, select, subset)"):
        trials = select_trials(load_trials(test, "trials"), None, 0)
        needed = sorted({u for t in trials for u in (t.enroll, t.test)})
        test = test.subset(needed)
    return test, trials, needed


def stage_plan(args: argparse.Namespace, paths: dict[str, Path], stage: Stage) -> None:
    """Everything ``gradw evaluate`` does before its first embedding."""
    import gradw.evaluation.grid as grid
    from gradw.config import EvaluationConfig
    from gradw.data.conditions import AudioCache, augment_loader
    from gradw.data.dirs import AugmentDir
    from gradw.evaluation.content import InputDigests
    from gradw.evaluation.grid import EmbeddingStore, by_length, condition_hash

    out = paths["eval"] / "plan"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    test, trials, needed = _test_and_trials(paths, stage)
    with stage.timed("condition grid"):
        conditions = _conditions(args)
    with stage.timed("augmentation lists (AugmentDir.load)"):
        augment = AugmentDir.load(paths["augment"])
    with stage.timed("input digests (SHA-256 of every file read)"):
        categories = sorted({c.category for c in conditions if c.category != "clean"})
        digests = InputDigests.read(test, needed, augment, categories)
    stage.mark("before manifest")
    config = EvaluationConfig(test=str(paths["test"]), out=str(out), augment=str(paths["augment"]))
    cache = AudioCache()
    build = grid.build_manifest

    def build_with_cache(*a: Any, **k: Any) -> Any:  # the default loader, with a cache we can size
        return build(*a, loader=augment_loader(augment, cache), **k)

    grid.build_manifest = wrap_exclusive(stage.watch, "manifest: build (reads audio)", build_with_cache)
    stage.declare("manifest: build (reads audio)")
    save = grid.Manifest.save
    grid.Manifest.save = wrap_exclusive(stage.watch, "manifest: save", save)  # type: ignore[method-assign]
    stage.declare("manifest: save")
    stage.declare("manifest: input fingerprint")
    with stage.watch("manifest: input fingerprint"):
        manifest = grid._manifest(config, test, augment, conditions, digests)
    stage.mark("after manifest")
    stage.info["audio_cache_mib"] = cache._bytes / 2**20
    stage.info["audio_cache_files"] = len(cache)
    with stage.timed("manifest: reload (a rerun, each torchrun rank)"):
        grid._manifest(config, test, augment, conditions, digests)
    systems = [(name, f"bench|{name}") for name in _system_names(args.systems)]
    store = EmbeddingStore(out / "cache")
    with stage.timed(f"condition hashes ({len(conditions)} conditions)"):
        hashes = {c.name: condition_hash(manifest, c, needed, digests) for c in conditions}
    with stage.timed(f"cache keys ({len(systems)} systems x {len(conditions)} conditions)"):
        keys = {
            (name, c.name): EmbeddingStore.key(identity, hashes[c.name], c.name, needed)
            for name, identity in systems
            for c in conditions
        }
    with stage.timed("length order (by_length)"):
        mine = by_length(needed, test, manifest, conditions)
    with stage.timed("cache look-up (todo)"):
        todo = {
            name: [c for c in conditions if not store.path(keys[name, c.name]).is_file()]
            for name, _ in systems
        }
    assert len(mine) == len(needed) and all(len(t) == len(conditions) for t in todo.values())
    stage.info.update(
        count=len(needed) * len(conditions),
        unit="utterance-conditions",
        utts=len(needed),
        trials=len(trials),
        conditions=len(conditions),
        manifest_bytes=(out / "manifest.json").stat().st_size,
        mean_seconds=float(np.mean([manifest.entry(u, "clean").num_samples for u in needed])) / SR,
    )


def _random_embeddings(
    test: Any, needed: list[str], conditions: list[Any], systems: list[str], dim: int, seed: int
) -> Iterator[tuple[str, str, dict[str, np.ndarray]]]:
    """(system, condition, utt -> (dim,) float32) one at a time: embeddings near a per-speaker
    centre, further from it at lower SNR (so the EERs vary as in a real grid)."""
    rng = np.random.default_rng(seed)
    speakers = sorted({test.utt2spk[u] for u in needed})
    centre = {s: rng.standard_normal(dim) for s in speakers}
    for k, system in enumerate(systems):
        for c in conditions:
            spread = 0.8 + (0.0 if c.snr_db is None else 0.08 * (25.0 - c.snr_db)) * (1.0 - 0.1 * k)
            noise = rng.standard_normal((len(needed), dim))
            embeddings = {
                u: (centre[test.utt2spk[u]] + spread * noise[i]).astype(np.float32)
                for i, u in enumerate(needed)
            }
            yield system, c.name, embeddings


def stage_score(args: argparse.Namespace, paths: dict[str, Path], stage: Stage) -> None:
    """Scoring, metrics, bootstrap intervals, results and report of ``gradw evaluate``."""
    import gradw.evaluation.bootstrap as bootstrap
    import gradw.evaluation.grid as grid
    from gradw.config import EvaluationConfig
    from gradw.evaluation.grid import EmbeddingStore
    from gradw.evaluation.report.document import write_report
    from gradw.evaluation.results import write_results

    out = paths["eval"] / "score"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    test, trials, needed = _test_and_trials(paths, stage)
    conditions = _conditions(args)
    names = _system_names(args.systems)
    store = EmbeddingStore(out / "cache")
    keys = {
        (n, c.name): EmbeddingStore.key(f"bench|{n}", "random", c.name, needed)
        for n in names
        for c in conditions
    }
    with stage.timed("random embeddings to the cache (setup)", counted=False):
        for name, condition, emb in _random_embeddings(test, needed, conditions, names, args.dim, 0):
            store.save(keys[name, condition], emb)
    stage.mark("before scoring")
    sections = {
        "score_trials": "cosine scores",
        "write_scores": "score files",
        "summarise": "EER, minDCF (point values)",
        "paired_bootstrap_diff": "paired differences (point values)",
        "calibration_metrics": "min Cllr (PAV)",
    }
    for attr, name in sections.items():
        stage.declare(name)
        setattr(grid, attr, wrap_exclusive(stage.watch, name, getattr(grid, attr)))
    load = EmbeddingStore.load
    stage.declare("load embeddings")
    EmbeddingStore.load = wrap_exclusive(stage.watch, "load embeddings", load)  # type: ignore[method-assign]
    resamples = bootstrap._bootstrap_values

    def timed_resamples(*a: Any, **k: Any) -> Any:
        name = (
            "bootstrap: paired differences"
            if "paired" in (stage.watch.current or "")
            else "bootstrap: intervals"
        )
        stage.declare(name)
        return wrap_exclusive(stage.watch, name, resamples)(*a, **k)

    bootstrap._bootstrap_values = timed_resamples
    config = EvaluationConfig(test=str(paths["test"]), out=str(out), n_boot=args.n_boot)
    systems: Any = [SimpleNamespace(spec=SimpleNamespace(name=n), calibration=None) for n in names]
    stage.declare("rest of _score")
    start = time.perf_counter()
    with stage.watch("rest of _score"):
        rows = grid._score(config, systems, conditions, trials, test, store, keys)
    score_s = time.perf_counter() - start
    stage.mark("after scoring")
    with stage.timed("results.json + report.md (plots)"):
        write_results(out, config, rows, score_s, checks={})
        write_report(out, config, rows)
    eers = [r.metrics["eer"] for r in rows]
    stage.info.update(
        count=len(trials) * len(rows),
        unit="trial-conditions",
        trials=len(trials),
        conditions=len(conditions),
        systems=len(names),
        rows=len(rows),
        n_boot=args.n_boot,
        eer_range=[min(eers), max(eers)],
        cache_bytes=sum(p.stat().st_size for p in store.root.glob("*.npz")),
        score_bytes=sum(p.stat().st_size for p in (out / "scores").rglob("*.txt")),
    )


def run_stage(args: argparse.Namespace) -> None:
    """The ``--worker`` entry point: import, measure the base memory, run one stage, report."""
    set_threads(args.threads)
    _import_gradw()
    base = peak_rss_mib()
    paths = work_paths(args.work)
    stage = Stage()
    stage.mark("base")
    name = args.worker
    if name in ("load", "load-nocheck"):
        stage_load(args, paths, stage, check_audio=name == "load")
    elif name in ("dataset-g", "dataset-e"):
        stage_dataset(args, paths, stage, name[-1])
    elif name == "plan":
        stage_plan(args, paths, stage)
    else:
        stage_score(args, paths, stage)
    emit_result(stage.result(base))


# ---------------------------------------------------------------------------------------------
# the driver


WHAT = {
    "load": "SpeechDir.load (training list; files checked, headers read)",
    "load-nocheck": "SpeechDir.load (training list; check_audio=False)",
    "dataset-g": "EnhancementTriples (paper) + sampler keys",
    "dataset-e": "SpeakerCrops (paper) + sampler keys",
    "plan": "evaluate before embedding: lists, trials, manifest, cache keys",
    "score": "evaluate after embedding: scores, EER/minDCF, bootstrap, report",
}


def child_argv(args: argparse.Namespace, stage: str, work: Path) -> list[str]:
    """The command that runs ``stage`` in a fresh interpreter with this run's settings."""
    argv = ["--worker", stage, "--work", str(work), "--threads", str(args.threads)]
    argv += ["--items", str(args.items), "--systems", str(args.systems), "--dim", str(args.dim)]
    argv += ["--n-boot", str(args.n_boot), "--snrs", *[repr(s) for s in args.snrs]]
    argv += ["--categories", *args.categories]
    return worker_command(os.path.abspath(__file__), *argv)


def _fmt(seconds: float) -> str:
    return f"{seconds:.3f}" if seconds < 10 else f"{seconds:.1f}"


def print_tables(
    generation: list[tuple[str, str, float]], runs: dict[str, Any], args: argparse.Namespace
) -> None:
    """The Markdown tables: generation, stages, breakdowns, sizes."""
    print(
        markdown_table(
            ["generated (not a gradw figure)", "size", "s"], [[a, b, _fmt(s)] for a, b, s in generation]
        )
    )
    print()
    rows = []
    for name, (run, res) in runs.items():
        rate = res["count"] / res["seconds"] if res["seconds"] > 0 else float("nan")
        marks = res["marks"]
        after = list(marks.values())[-1]
        rows.append(
            [
                name,
                WHAT[name],
                f"{res['count']:,} {res['unit']}",
                _fmt(res["seconds"]),
                f"{rate:,.0f}",
                f"{run.max_rss_mib:,.0f}",
                f"{res['base_mib']:,.0f}",
                f"{run.max_rss_mib - res['base_mib']:,.0f}",
                f"{after - marks['base']:,.0f}",
                _fmt(res["setup_seconds"]),
                _fmt(run.wall_s),
            ]
        )
    headers = ["stage", "what", "size", "stage s", "per s", "peak RSS MiB", "base MiB", "peak - base MiB"]
    headers += ["RSS held after - base MiB", "setup s (not counted)", "process wall s"]
    print(markdown_table(headers, rows))
    print()
    rows = []
    for name, (_, res) in runs.items():
        for section, seconds, counted in res["sections"]:
            share = f"{100 * seconds / res['seconds']:.0f} %" if counted and res["seconds"] > 0 else "setup"
            rows.append([name, section, _fmt(seconds), share])
    print(markdown_table(["stage", "section", "s", "share of stage"], rows))
    print()
    rows = []
    if "dataset-g" in runs or "dataset-e" in runs:
        for name in ("dataset-g", "dataset-e"):
            if name in runs:
                res = runs[name][1]
                keys_s = next(s for sec, s, _ in res["sections"] if sec.startswith("sampler keys"))
                rows.append(
                    [
                        f"{name}: sampler, per step (batch {res['batch']})",
                        f"{1000 * keys_s / res['key_steps']:.2f} ms",
                    ]
                )
                rows.append(
                    [
                        f"{name}: dataset held in memory",
                        f"{res['marks']['after dataset'] - res['marks']['after load']:,.0f} MiB",
                    ]
                )
                rows.append(
                    [
                        f"{name}: list held in memory",
                        f"{res['marks']['after load'] - res['marks']['base']:,.0f} MiB",
                    ]
                )
    if "plan" in runs:
        res = runs["plan"][1]
        rows.append(["plan: manifest.json", f"{res['manifest_bytes'] / 2**20:.1f} MiB"])
        grown = res["marks"]["after manifest"] - res["marks"]["before manifest"]
        rows.append(["plan: manifest + audio cache held in memory", f"{grown:,.0f} MiB"])
        rows.append(
            [
                "plan: of which the audio cache (bounded at 256 MiB)",
                f"{res['audio_cache_mib']:.0f} MiB ({res['audio_cache_files']} files)",
            ]
        )
        rows.append(
            [
                "plan: so the manifest itself",
                f"{grown - res['audio_cache_mib']:,.0f} MiB ({res['count']:,} entries)",
            ]
        )
        rows.append(["plan: mean test utterance", f"{res['mean_seconds']:.2f} s"])
    if "score" in runs:
        res = runs["score"][1]
        per = res["seconds"] / res["rows"]
        rows.append(
            [
                "score: per system x condition",
                f"{per:.2f} s ({res['trials']:,} trials, {res['n_boot']} resamples)",
            ]
        )
        rows.append(
            ["score: embedding cache on disk", f"{res['cache_bytes'] / 2**20:.1f} MiB ({args.dim}-d float32)"]
        )
        rows.append(["score: score files on disk", f"{res['score_bytes'] / 2**20:.1f} MiB"])
        rows.append(
            [
                "score: EER range of the random embeddings",
                f"{res['eer_range'][0]:.1f} to {res['eer_range'][1]:.1f} %",
            ]
        )
    if rows:
        print(markdown_table(["figure", "value"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, help="folder for the generated lists (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the generated folder")
    parser.add_argument(
        "--entries", type=int, default=1_000_000, help="training-list entries (default 1,000,000)"
    )
    parser.add_argument("--speakers", type=int, default=6000, help="training-list speakers (default 6,000)")
    parser.add_argument("--per-video", type=int, default=7, help="utterances per video (default 7)")
    parser.add_argument("--test-utts", type=int, default=4874, help="test utterances (default 4,874)")
    parser.add_argument("--test-speakers", type=int, default=40, help="test speakers (default 40)")
    parser.add_argument("--trials", type=int, default=37_611, help="test trials (default 37,611)")
    parser.add_argument(
        "--snrs",
        type=float,
        nargs="+",
        default=list(DEFAULT_SNRS),
        help="evaluation SNRs (default: evaluate's 9)",
    )
    parser.add_argument(
        "--categories",
        nargs="+",
        default=["noise", "music", "babble"],
        help="noisy categories (clean is added)",
    )
    parser.add_argument("--systems", type=int, default=2, help="systems evaluated: noisy + N-1 G (default 2)")
    parser.add_argument("--dim", type=int, default=256, help="embedding dimension (default 256, ResNet34)")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    parser.add_argument(
        "--items", type=int, default=4096, help="sampler keys drawn per dataset (default 4096)"
    )
    parser.add_argument("--audio-files", type=int, default=16, help="distinct speech files behind the lists")
    parser.add_argument(
        "--seconds", type=float, nargs=2, default=[4.0, 12.0], help="their durations (uniform)"
    )
    parser.add_argument("--augment-files", type=int, default=200, help="keys per augmentation category")
    parser.add_argument("--layout", choices=["symlinks", "shared"], default="symlinks")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", choices=STAGES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_stage(args)
        return

    if not 2 <= args.speakers <= args.entries or not 2 <= args.test_speakers <= args.test_utts // 2:
        sys.exit("need 2 <= --speakers <= --entries and 2 <= --test-speakers <= --test-utts / 2")
    set_threads(args.threads)
    print(f"machine: {machine_summary()}", flush=True)
    temporary = args.work is None
    work = Path(tempfile.mkdtemp(prefix="scale-lists-")) if temporary else args.work.absolute()
    if not temporary and any(work.iterdir() if work.is_dir() else []):
        sys.exit(f"{work}: not empty; give an empty or new folder")
    try:
        generation = generate(args, work)
        for what, size, seconds in generation:
            print(f"generated {what}: {size} in {seconds:.1f} s", flush=True)
        runs: dict[str, Any] = {}
        for stage in args.stages:
            run = run_child(child_argv(args, stage, work))
            if run.returncode != 0 or run.result is None:
                sys.exit(f"stage {stage} failed ({run.returncode}):\n{run.stdout}{run.stderr}")
            runs[stage] = (run, run.result)
            print(
                f"{stage}: {run.result['seconds']:.2f} s, peak RSS {run.max_rss_mib:,.0f} MiB "
                f"(load average {machine_summary().rsplit('load average ', 1)[1]})",
                flush=True,
            )
    finally:
        if temporary and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nmachine: {machine_summary()}\n")
    print_tables(generation, runs, args)
    if temporary and args.keep:
        print(f"\ngenerated lists kept in {work}")


if __name__ == "__main__":
    main()
