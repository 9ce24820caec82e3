"""The SNR x noise-type benchmark behind ``gradw evaluate``.

For every system x condition: the test utterances are corrupted exactly as the seeded manifest
says (both sides of each trial, as in the paper, or only the test side with ``clean_enroll``),
embedded by the fixed scorer E through the system, scored by cosine, and summarised with EER and
minDCF (P_target 0.01 and 0.05) with 95 % bootstrap intervals over speakers, plus the paired
difference against ``noisy``.

Embeddings are cached on disk per (system, scorer, manifest, condition), keyed by content: the
system's identity (the digest of its weights and the scorer's), the condition's manifest entries and
the digests of every audio file they read (:mod:`gradw.evaluation.content`). Adding a system or an
SNR recomputes only what is new, an interrupted evaluation resumes, and a test or noise recording
replaced in place is read again, its manifest entries drawn again, and its embeddings recomputed.
Under ``torchrun`` the utterances are sharded across ranks and rank 0 merges and scores.

A system whose calibration uses quality measures (:mod:`gradw.evaluation.quality`) has its Cllr
and actual DCF computed from quality-aware LLRs: the measures of every utterance under every
condition are computed from the corrupted audio the systems receive, once for all systems, and
cached beside the embeddings, keyed by the same condition content. A calibration that normalises
scores against a cohort (:mod:`gradw.evaluation.score_norm`) gets its LLRs from the normalised
scores of the same embeddings; EER and minDCF stay those of the raw scores, and the normalised
scores' min Cllr and EER are added (``min_cllr_norm``, ``eer_norm``).

Batching by length, exactly: each utterance is read once and rendered under every condition a
system still needs; these renderings all have the utterance's length, and so do other utterances
of equal length next to it in the duration-sorted order, so they are embedded as one batch with
nothing padded (see :func:`gradw.evaluation.systems.embed_many`; batches pay on a GPU, and on the
CPU, where they were measured slower for ResNet34, items go one at a time by default). Progress
is saved every ``save_every`` utterances, so an interrupted evaluation loses at most that much
work.

Long utterances: one longer than ``window_seconds`` (30 s by default) is embedded as the
length-weighted mean of the embeddings of consecutive windows, each through the whole system
(:mod:`gradw.evaluation.windows`), and it is never held whole: the manifest measures it window
by window, and each window is read from the file and rendered under a condition on its own
(:mod:`gradw.data.streaming`), so memory does not grow with the length of an utterance. Shorter
utterances are read, rendered and embedded whole, as before.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from gradw.config import ConfigError, EvaluationConfig
from gradw.data.conditions import AudioCache, Condition, augment_loader, parse_conditions
from gradw.data.dirs import AugmentDir, SpeechDir
from gradw.data.lists import DataError
from gradw.data.manifest import Manifest, build_manifest
from gradw.data.trials import Trial, load_trials, select_trials
from gradw.evaluation.bootstrap import paired_bootstrap_diff, summarise
from gradw.evaluation.calibration import (
    calibration_loss_floor,
    calibration_metrics,
    pooled_calibration,
    threshold_record,
)
from gradw.evaluation.content import InputDigests
from gradw.evaluation.embedding import embed_conditions
from gradw.evaluation.metrics import eer
from gradw.evaluation.quality import QualityStore, grid_measures, trial_sides
from gradw.evaluation.report.document import write_report
from gradw.evaluation.results import Row, write_results
from gradw.evaluation.scoring import cosine_scores, score_trials, write_scores
from gradw.evaluation.systems import System, augment_overlap, load_system, parse_systems
from gradw.fileio import atomic_path, atomic_write, blocking_file
from gradw.models.loading import (
    RANDOM_WEIGHTS,
    RESNET_PRESETS,
    SPEAKER_NETWORKS,
    is_random_weights,
    load_speaker_network,
    weights_identity,
)
from gradw.models.speaker import SpeakerNetwork
from gradw.runlock import RunLock

# ---------------------------------------------------------------------------------------------
# inputs


def scorer_identity(name: str, checkpoint: str | None, tap: str | None, seed: int = 0) -> str:
    """A content identity for the scorer network and its tap: ``NAME|DIGEST|TAP``."""
    return f"{weights_identity(name, checkpoint, seed)}|{tap}"


def load_scorer(config: EvaluationConfig, device: torch.device) -> SpeakerNetwork:
    """The scorer E, frozen, on ``device``.

    A ResNet needs its checkpoint; with ``scorer_checkpoint="random"`` (asked for by name: tests,
    smoke checks) it is randomly initialised from ``config.seed`` alone, not from whatever the
    caller's global RNG holds, so that every process (and every torchrun rank) builds the same
    network and cached embeddings stay valid.

    Raises:
        ConfigError: an unknown scorer, a ResNet without ``scorer_checkpoint``, or a bad tap.
    """
    from gradw.checkpoint import CheckpointError

    if config.scorer not in SPEAKER_NETWORKS:
        raise ConfigError(f"unknown scorer {config.scorer!r} (choose from {', '.join(SPEAKER_NETWORKS)})")
    if config.scorer in RESNET_PRESETS and not config.scorer_checkpoint:
        raise ConfigError(
            f"scorer {config.scorer} has no weights of its own: give --scorer-checkpoint PATH (a gradw "
            f"train-speaker checkpoint or a WeSpeaker state dict), or --scorer-checkpoint {RANDOM_WEIGHTS} "
            "to evaluate randomly initialised weights on purpose"
        )
    try:
        with torch.random.fork_rng(devices=[]):
            if is_random_weights(config.scorer_checkpoint):
                torch.manual_seed(config.seed)
            scorer = load_speaker_network(
                config.scorer, checkpoint=config.scorer_checkpoint, tap=config.scorer_tap
            )
    except CheckpointError:
        raise
    except ValueError as exc:  # an unknown tap, a checkpoint of another architecture...
        raise ConfigError(f"scorer {config.scorer}: {exc}") from None
    return scorer.freeze().to(device)


def _manifest(
    config: EvaluationConfig,
    test: SpeechDir,
    augment: AugmentDir | None,
    conditions: list[Condition],
    digests: InputDigests,
) -> Manifest:
    """The seeded manifest, reused from ``OUT/manifest.json`` when it was drawn for the same inputs
    (the same files with the same content, conditions and seed)."""
    path = Path(config.out) / "manifest.json"
    fingerprint = hashlib.sha256(
        json.dumps(
            {
                "utts": {u: str(test.wavs[u]) for u in sorted(test.wavs)},
                "augment": str(augment.root) if augment is not None else None,
                "content": digests.fingerprint(),
                "conditions": [c.name for c in conditions],
                "seed": config.seed,
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()[:16]
    stamp = path.with_name("manifest.inputs")
    if path.is_file() and stamp.is_file() and stamp.read_text().strip() == fingerprint:
        return Manifest.load(path)
    manifest = build_manifest(test, augment, conditions, config.seed, window_seconds=config.window_seconds)
    manifest.save(path)
    atomic_write(stamp, fingerprint + "\n")
    return manifest


# ---------------------------------------------------------------------------------------------
# embeddings


def condition_hash(
    manifest: Manifest, condition: Condition, utts: Sequence[str], digests: InputDigests
) -> str:
    """Content hash of what ``utts`` sound like under ``condition``: their manifest entries and the
    content digests of the files each entry reads (the clean utterance, its noise, its RIR).

    A condition's entries do not depend on the other conditions drawn with it, so adding an SNR or
    a category to an evaluation leaves the hashes (and the cached embeddings) of the others intact.
    """
    entries = [manifest.entry(u, condition) for u in sorted(utts)]
    body = {
        "sample_rate": manifest.sample_rate,
        "entries": [e.to_json() for e in entries],
        "content": [digests.of_entry(e) for e in entries],
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class EmbeddingStore:
    """Embeddings on disk, one ``.npz`` per (system, condition content) key."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @staticmethod
    def key(system_identity: str, condition_hash: str, condition: str, utts: Sequence[str]) -> str:
        """The key of the embeddings of ``utts`` under a condition (see :func:`condition_hash`)."""
        digest = hashlib.sha256()
        for part in (system_identity, condition_hash, condition, *sorted(utts)):
            digest.update(part.encode() + b"\0")
        return digest.hexdigest()[:24]

    def path(self, key: str) -> Path:
        return self.root / f"emb-{key}.npz"

    def load(self, key: str) -> dict[str, np.ndarray] | None:
        path = self.path(key)
        if not path.is_file():
            return None
        with np.load(path) as data:
            utts = [str(u) for u in data["utts"]]
            return dict(zip(utts, data["embeddings"], strict=True))

    def save(self, key: str, embeddings: dict[str, np.ndarray]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        utts = sorted(embeddings)
        with atomic_path(self.path(key)) as tmp, open(tmp, "wb") as handle:  # a path would gain ".npz"
            np.savez(handle, utts=np.array(utts), embeddings=np.stack([embeddings[u] for u in utts]))


def by_length(
    utts: Sequence[str], test: SpeechDir, manifest: Manifest, conditions: Sequence[Condition]
) -> list[str]:
    """``utts`` ordered by length (utt2dur, else the manifest's sample counts), then by name.

    Equal lengths become neighbours (and batch together); under ``torchrun`` every rank's shard
    of this order (``[rank::world]``) gets a similar share of long and short utterances.
    """
    noisy = [c for c in conditions if c.category != "clean" or c.reverb]
    if test.utt2dur is not None and all(u in test.utt2dur for u in utts):
        length = {u: round(test.utt2dur[u] * manifest.sample_rate) for u in utts}
    elif noisy:
        length = {u: manifest.entry(u, noisy[0]).num_samples for u in utts}
    else:
        length = dict.fromkeys(utts, 0)
    return sorted(utts, key=lambda u: (length[u], u))


# ---------------------------------------------------------------------------------------------
# the run


def _ranks() -> tuple[int, int]:
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def evaluate(config: EvaluationConfig, quiet: bool = False) -> list[Row]:
    """Run the benchmark; writes ``OUT/results.{json,csv}``, ``OUT/scores/`` and ``OUT/report.md``.

    OUT is locked while the evaluation runs (:class:`~gradw.runlock.RunLock`): a second
    evaluation into it is refused.
    """
    rank, world = _ranks()
    import torch.distributed as dist

    owned = world > 1 and dist.is_available() and not dist.is_initialized()  # torchrun, not a caller
    try:
        with RunLock(config.out, "evaluation") if rank == 0 else contextlib.nullcontext():
            return _evaluate(config, quiet)
    finally:
        if owned and dist.is_initialized():
            # ended here, while the interpreter is whole: a gloo group left to interpreter shutdown
            # can abort the process after a successful run
            gc.collect()
            dist.destroy_process_group()


def _evaluate(config: EvaluationConfig, quiet: bool) -> list[Row]:
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    rank, world = _ranks()
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo")
    out = Path(config.out)
    started = time.time()

    # everything that can be wrong is checked before any work starts (and before OUT is created)
    cache = Path(config.cache_dir) if config.cache_dir else out / "cache"
    blocker = blocking_file(cache)
    if blocker is not None:
        raise ConfigError(f"evaluate.cache_dir: {blocker} exists and is not a folder")
    test = SpeechDir.load(config.test)
    trials = select_trials(load_trials(test, config.trials), config.max_trials, config.seed)
    needed = sorted({u for t in trials for u in (t.enroll, t.test)})
    test = test.subset(needed)
    categories = (["clean"] if config.clean else []) + [c for c in config.categories if c != "clean"]
    try:
        conditions = parse_conditions(categories, config.snrs, rooms=config.rooms)
    except ValueError as exc:
        raise ConfigError(f"conditions: {exc}") from None
    if config.clean_enroll and not config.clean:
        conditions = [Condition("clean"), *conditions]
    noisy_needed = any(c.category != "clean" or c.reverb for c in conditions)
    if noisy_needed and not config.augment:
        raise DataError("noisy conditions need an augmentation directory (--augment)")
    augment = AugmentDir.load(config.augment) if config.augment else None
    wanted = sorted({c.category for c in conditions if c.category != "clean"})
    wanted += ["rirs"] if any(c.reverb for c in conditions) else []
    if augment is not None:
        missing = [c for c in wanted if c not in augment]
        if missing:
            raise DataError(f"{augment.root}: the conditions need the missing list(s) {', '.join(missing)}")
    specs = parse_systems(config.systems)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    scorer = load_scorer(config, device)
    scorer_id = scorer_identity(config.scorer, config.scorer_checkpoint, config.scorer_tap, config.seed)
    systems = [load_system(spec, scorer, scorer_id, device, config.window_seconds) for spec in specs]
    longest = max(systems, key=lambda s: s.scorer.min_samples)  # an adapted system brings its own E
    test.check_durations(
        longest.scorer.min_samples,
        f"the scorer {config.scorer}"
        if longest.scorer is scorer
        else f"system {longest.spec.name}'s speaker network",
    )
    overlap = _check_augment_overlap(systems, augment, quiet or rank != 0)
    # what the caches are keyed by: the content of every file read (rank 0 reads, the others receive)
    digests = InputDigests.read(test, needed, augment, wanted) if rank == 0 else None
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)

    manifest = _manifest(config, test, augment, conditions, digests) if digests is not None else None
    if world > 1:
        import torch.distributed as dist

        shared = [digests]
        dist.broadcast_object_list(shared, src=0)
        digests = shared[0]
        dist.barrier()
        manifest = Manifest.load(out / "manifest.json")
    loader = augment_loader(augment, AudioCache()) if augment is not None else None
    store = EmbeddingStore(cache)

    assert manifest is not None and digests is not None
    # each condition's hash once, for every system
    hashes = {c.name: condition_hash(manifest, c, needed, digests) for c in conditions}
    keys = {
        (s.spec.name, c.name): EmbeddingStore.key(s.identity, hashes[c.name], c.name, needed)
        for s in systems
        for c in conditions
    }
    mine = by_length(needed, test, manifest, conditions)[rank::world]
    # a system with the identity of an earlier one (the same weights under another calibration or
    # name) shares its cache keys: the earlier one embeds for both
    first = {s.identity: s.spec.name for s in reversed(systems)}
    todo = {
        s.spec.name: [c for c in conditions if not store.path(keys[s.spec.name, c.name]).is_file()]
        if first[s.identity] == s.spec.name
        else []
        for s in systems
    }
    show = not quiet and sys.stderr.isatty() and rank == 0
    total = sum(len(t) for t in todo.values()) * len(mine)
    bar = tqdm(total=total, desc="embeddings", unit="utt-cond", disable=not show, dynamic_ncols=True)
    plain = not quiet and not sys.stderr.isatty() and rank == 0  # batch jobs: a line per system
    done = 0
    for number, system in enumerate(systems, start=1):
        if todo[system.spec.name]:
            names = {c.name: keys[system.spec.name, c.name] for c in todo[system.spec.name]}
            _embed_system(
                config, system, todo[system.spec.name], names, mine, test, manifest, loader, store, bar
            )
        done += len(todo[system.spec.name]) * len(mine)
        if plain:
            elapsed = time.time() - started
            left = elapsed / done * (total - done) if done else 0.0
            print(
                f"[evaluate] system {number}/{len(systems)} {system.spec.name}: "
                f"{len(todo[system.spec.name]) * len(mine)} utterance-conditions embedded "
                f"({len(conditions) - len(todo[system.spec.name])} conditions cached) | "
                f"elapsed {elapsed / 60:.1f} min, left {left / 60:.1f} min",
                file=sys.stderr,
                flush=True,
            )
    bar.close()
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        if rank != 0:
            return []

    names = list(
        dict.fromkeys(m for s in systems if s.calibration is not None for m in s.calibration.measures)
    )
    measures = grid_measures(
        names, conditions, needed, test, manifest, loader, QualityStore(cache), hashes, config.window_seconds
    )
    rows, pooled = _score(config, systems, conditions, trials, test, store, keys, (names, measures))
    elapsed = time.time() - started
    calibrations = {
        s.spec.name: {
            **s.calibration.record(),
            **threshold_record(s.calibration),
            "test_pooled": pooled[s.spec.name],
        }
        for s in systems
        if s.calibration is not None
    }
    write_results(out, config, rows, elapsed, checks={"augment_overlap": overlap}, calibration=calibrations)

    write_report(out, config, rows, figure_format=config.figure_format, dpi=config.dpi)
    return rows


def _check_augment_overlap(systems: list[System], augment: AugmentDir | None, quiet: bool) -> dict[str, int]:
    """Compare the test noise with each system's training noise; a shared recording is reported
    loudly (stderr and a warning) and recorded in results.json, since it flatters the system."""
    if augment is None or not any(s.train_augment is not None for s in systems):
        return {}
    overlap = augment_overlap(systems, augment.fingerprints())
    for name, count in overlap.items():
        if count:
            message = (
                f"system {name} was trained on {count} of the recordings in {augment.root}: its results on "
                "those conditions are not a test on unseen noise (prepare disjoint train/val/test splits)"
            )
            warnings.warn(message, stacklevel=2)
            if not quiet:
                print(f"gradw: warning: {message}", file=sys.stderr)
    return overlap


def _partial(key: str, rank: int, world: int) -> str:
    return f"partial-{key}-{rank}of{world}"


def _embed_system(
    config: EvaluationConfig,
    system: System,
    conditions: list[Condition],
    keys: dict[str, str],
    utts: list[str],
    test: SpeechDir,
    manifest: Manifest,
    loader: Callable[[str, str], np.ndarray] | None,
    store: EmbeddingStore,
    bar: tqdm,
) -> None:
    """Embed this rank's ``utts`` under ``conditions`` (cache keys ``keys``) and store them.

    Progress goes to per-rank partial files every ``config.save_every`` utterances (a rerun
    starts from them); at the end rank 0 merges every rank's partial files into the cache files.
    """
    rank, world = _ranks()
    done = {name: store.load(_partial(key, rank, world)) or {} for name, key in keys.items()}
    remaining = [u for u in utts if any(u not in done[name] for name in keys)]
    bar.update((len(utts) - len(remaining)) * len(keys))
    step = max(1, config.save_every)
    for start in range(0, len(remaining), step):
        block = remaining[start : start + step]
        got = embed_conditions(
            system, block, conditions, test, manifest, loader, config.batch_seconds, bar.update
        )
        for name, key in keys.items():
            done[name].update(got[name])
            store.save(_partial(key, rank, world), done[name])
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    if rank == 0:
        for key in keys.values():
            merged: dict[str, np.ndarray] = {}
            for r in range(world):
                merged.update(store.load(_partial(key, r, world)) or {})
            store.save(key, merged)
            # this run's partial files, and any left by an interrupted run with another world size
            for stale in store.root.glob(f"emb-partial-{key}-*.npz"):
                stale.unlink(missing_ok=True)


def _score(
    config: EvaluationConfig,
    systems: list[System],
    conditions: list[Condition],
    trials: list[Trial],
    test: SpeechDir,
    store: EmbeddingStore,
    keys: dict[tuple[str, str], str],
    quality: tuple[list[str], dict[str, dict[str, np.ndarray]]],
) -> tuple[list[Row], dict[str, dict[str, float]]]:
    """Score every system x condition; ``quality``: the measure names and the measures
    (:func:`gradw.evaluation.quality.grid_measures`) the calibrations need. Returns the rows and,
    per calibrated system, :func:`pooled_calibration` of its LLRs over every condition (with
    ``floor``: :func:`calibration_loss_floor` at the pooled EER and trial counts)."""
    out = Path(config.out)
    names, measures = quality
    labels = np.array([t.target for t in trials])
    enroll_spk = [test.utt2spk[t.enroll] for t in trials]
    test_spk = [test.utt2spk[t.test] for t in trials]
    pairs = [(t.enroll, t.test, t.target) for t in trials]
    rows: list[Row] = []
    scores_of: dict[tuple[str, str], np.ndarray] = {}
    pooled: dict[str, dict[str, float]] = {}
    for system in systems:
        llrs: list[np.ndarray] = []
        clean_emb = None
        if config.clean_enroll:  # enrolment side clean, test side corrupted
            clean_emb = store.load(keys[system.spec.name, "clean"])
            assert clean_emb is not None
        for condition in conditions:
            emb = store.load(keys[system.spec.name, condition.name])
            assert emb is not None
            sides_emb = (
                np.stack([(clean_emb if clean_emb is not None else emb)[e] for e, _, _ in pairs]),
                np.stack([emb[t] for _, t, _ in pairs]),
            )
            scores = cosine_scores(*sides_emb) if clean_emb is not None else score_trials(emb, pairs)
            scores_of[(system.spec.name, condition.name)] = scores
            write_scores(out / "scores" / system.spec.name / f"{condition.name}.txt", pairs, scores)
            metrics = summarise(scores, labels, enroll_spk, test_spk, n_boot=config.n_boot, seed=config.seed)
            sides = None
            if system.calibration is not None and system.calibration.measures:
                columns = [names.index(m) for m in system.calibration.measures]
                enroll = measures["clean"] if config.clean_enroll else None
                e, t = trial_sides(pairs, measures[condition.name], enroll)
                sides = (e[:, columns], t[:, columns])
            normalises = system.calibration is not None and system.calibration.score_norm is not None
            embeddings = sides_emb if normalises else None
            metrics.update(
                calibration_metrics(scores, labels, system.calibration, sides=sides, embeddings=embeddings)
            )
            if system.calibration is not None:
                llrs.append(
                    system.calibration.trial_llr(scores, *(sides or (None, None)), embeddings=embeddings)
                )
            rows.append(
                Row(
                    system.spec.name,
                    condition.name,
                    condition.category,
                    condition.snr_db,
                    condition.reverb,
                    metrics,
                )
            )
        if llrs:
            every = np.tile(labels, len(llrs))
            pooled[system.spec.name] = pooled_calibration(np.concatenate(llrs), every)
            finite = np.clip(np.concatenate(llrs), -1e6, 1e6)
            pooled[system.spec.name]["floor"] = calibration_loss_floor(
                100.0 * eer(finite, every)[0], int(every.sum()), int((~every).sum()), draws=50
            )
    # paired differences of EER against the noisy baseline (same trials, same corrupted audio)
    for row in rows:
        base = scores_of.get(("noisy", row.condition))
        if base is None or row.system == "noisy":
            continue
        diff, low, high = paired_bootstrap_diff(
            base,
            scores_of[(row.system, row.condition)],
            labels,
            enroll_spk,
            test_spk,
            metric="eer",
            n_boot=config.n_boot,
            seed=config.seed,
        )
        row.metrics.update(
            {"eer_diff_vs_noisy": 100 * diff, "eer_diff_low": 100 * low, "eer_diff_high": 100 * high}
        )
    return rows, pooled
