"""The SNR x noise-type benchmark behind ``gradw evaluate``.

For every system x condition: the test utterances are corrupted exactly as the seeded manifest
says (both sides of each trial, as in the paper, or only the test side with ``clean_enroll``),
embedded by the fixed scorer E through the system, scored by cosine, and summarised with EER and
minDCF (P_target 0.01 and 0.05) with 95 % bootstrap intervals over speakers, plus the paired
difference against ``noisy``.

Embeddings are cached on disk per (system, scorer, manifest, condition), keyed by content, so
adding a system or an SNR recomputes only what is new and an interrupted evaluation resumes.
Under ``torchrun`` the utterances are sharded across ranks and rank 0 merges and scores.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from gradw.audio.io import read_audio
from gradw.data.conditions import (
    AudioCache,
    Condition,
    Manifest,
    augment_loader,
    build_manifest,
    parse_conditions,
    render,
)
from gradw.data.lists import AugmentDir, DataError, SpeechDir, Trial, read_trials
from gradw.evaluation.metrics import paired_bootstrap_diff, summarise
from gradw.evaluation.scoring import score_trials, write_scores
from gradw.evaluation.systems import System, file_digest, load_system, parse_systems
from gradw.models import load_speaker_network
from gradw.models.speaker import SpeakerNetwork

DEFAULT_SNRS = (20.0, 15.0, 10.0, 5.0, 0.0, -5.0, -10.0, -15.0, -20.0)


@dataclass
class EvaluationConfig:
    """What ``gradw evaluate`` runs."""

    test: str
    out: str
    systems: list[str] = field(default_factory=lambda: ["noisy"])
    augment: str | None = None
    categories: list[str] = field(default_factory=lambda: ["noise", "music", "babble"])
    snrs: list[float] = field(default_factory=lambda: list(DEFAULT_SNRS))
    clean: bool = True
    rooms: bool = False
    scorer: str = "campplus"
    scorer_checkpoint: str | None = None
    scorer_tap: str | None = None
    trials: str = "trials"
    max_trials: int | None = None
    clean_enroll: bool = False
    seed: int = 0
    n_boot: int = 1000
    cache_dir: str | None = None
    threads: int = 0


# ---------------------------------------------------------------------------------------------
# inputs


def select_trials(trials: list[Trial], max_trials: int | None, seed: int) -> list[Trial]:
    """At most ``max_trials`` trials, a seeded sample keeping the target share (all when None)."""
    if max_trials is None or len(trials) <= max_trials:
        return trials
    rng = np.random.default_rng([seed, 7])
    targets = [t for t in trials if t.target]
    others = [t for t in trials if not t.target]
    n_target = max(1, round(max_trials * len(targets) / len(trials)))
    keep_t = rng.choice(len(targets), size=min(n_target, len(targets)), replace=False)
    keep_n = rng.choice(len(others), size=min(max_trials - len(keep_t), len(others)), replace=False)
    chosen = {id(targets[i]) for i in keep_t} | {id(others[i]) for i in keep_n}
    return [t for t in trials if id(t) in chosen]


def load_trials(test: SpeechDir, name: str) -> list[Trial]:
    """The trial list ``name`` of a test directory (``trials`` by default, or a path)."""
    path = Path(name) if Path(name).is_file() else test.root / name
    if not path.is_file():
        raise DataError(f"{test.root}: no trial list {name!r}")
    trials = read_trials(path)
    unknown = sorted({u for t in trials for u in (t.enroll, t.test)} - set(test.wavs))
    if unknown:
        raise DataError(f"{path}: trials name utterances missing from wav.scp: {', '.join(unknown[:5])}")
    return trials


def scorer_identity(name: str, checkpoint: str | None, tap: str | None) -> str:
    """A content identity for the scorer network."""
    if checkpoint:
        return f"{name}|{file_digest(Path(checkpoint))}|{tap}"
    if name == "campplus":
        from gradw.models.campplus import find_campplus_weights

        return f"campplus|{file_digest(find_campplus_weights())}|{tap}"
    return f"{name}|random|{tap}"


def _manifest(
    config: EvaluationConfig, test: SpeechDir, augment: AugmentDir | None, conditions: list[Condition]
) -> Manifest:
    """The seeded manifest, reused from ``OUT/manifest.json`` when it was drawn for the same inputs."""
    path = Path(config.out) / "manifest.json"
    fingerprint = hashlib.sha256(
        json.dumps(
            {
                "utts": {u: str(test.wavs[u]) for u in sorted(test.wavs)},
                "augment": str(augment.root) if augment is not None else None,
                "conditions": [c.name for c in conditions],
                "seed": config.seed,
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()[:16]
    stamp = path.with_name("manifest.inputs")
    if path.is_file() and stamp.is_file() and stamp.read_text().strip() == fingerprint:
        return Manifest.load(path)
    manifest = build_manifest(test, augment, conditions, config.seed)
    manifest.save(path)
    stamp.write_text(fingerprint + "\n")
    return manifest


# ---------------------------------------------------------------------------------------------
# embeddings


class EmbeddingStore:
    """Embeddings on disk, one ``.npz`` per (system, condition, manifest) content key."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @staticmethod
    def key(system_identity: str, manifest_hash: str, condition: str, utts: Sequence[str]) -> str:
        digest = hashlib.sha256()
        for part in (system_identity, manifest_hash, condition, *sorted(utts)):
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
        tmp = self.root / f".emb-{key}.{os.getpid()}.tmp.npz"
        np.savez(tmp, utts=np.array(utts), embeddings=np.stack([embeddings[u] for u in utts]))
        tmp.replace(self.path(key))


def embed_condition(
    system: System,
    utts: Sequence[str],
    condition: Condition,
    test: SpeechDir,
    manifest: Manifest | None,
    loader: Callable[[str, str], np.ndarray] | None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Embeddings of ``utts`` under ``condition`` through ``system``: utt -> (D,)."""
    out: dict[str, np.ndarray] = {}
    for utt in utts:
        wav = read_audio(test.wavs[utt])
        if condition.category != "clean" or condition.reverb:
            assert manifest is not None and loader is not None
            wav = render(manifest.entry(utt, condition), wav, loader)
        out[utt] = system.embed(wav)
        if progress is not None:
            progress(1)
    return out


# ---------------------------------------------------------------------------------------------
# the run


@dataclass
class Row:
    """One system x condition result."""

    system: str
    condition: str
    category: str
    snr_db: float | None
    reverb: bool
    metrics: dict[str, float]


def _ranks() -> tuple[int, int]:
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def evaluate(config: EvaluationConfig, quiet: bool = False) -> list[Row]:
    """Run the benchmark; writes ``OUT/results.{json,csv}``, ``OUT/scores/`` and ``OUT/report.md``."""
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    rank, world = _ranks()
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo")
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()

    # everything that can be wrong is checked before any work starts
    test = SpeechDir.load(config.test)
    trials = select_trials(load_trials(test, config.trials), config.max_trials, config.seed)
    needed = sorted({u for t in trials for u in (t.enroll, t.test)})
    test = test.subset(needed)
    categories = (["clean"] if config.clean else []) + [c for c in config.categories if c != "clean"]
    conditions = parse_conditions(categories, config.snrs, rooms=config.rooms)
    if config.clean_enroll and not config.clean:
        conditions = [Condition("clean"), *conditions]
    noisy_needed = any(c.category != "clean" or c.reverb for c in conditions)
    if noisy_needed and not config.augment:
        raise DataError("noisy conditions need an augmentation directory (--augment)")
    augment = AugmentDir.load(config.augment) if config.augment else None
    specs = parse_systems(config.systems)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    scorer: SpeakerNetwork = (
        load_speaker_network(config.scorer, checkpoint=config.scorer_checkpoint, tap=config.scorer_tap)
        .freeze()
        .to(device)
    )
    scorer_id = scorer_identity(config.scorer, config.scorer_checkpoint, config.scorer_tap)
    systems = [load_system(spec, scorer, scorer_id, device) for spec in specs]

    manifest = _manifest(config, test, augment, conditions) if rank == 0 else None
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        manifest = Manifest.load(out / "manifest.json")
    loader = augment_loader(augment, AudioCache()) if augment is not None else None
    store = EmbeddingStore(Path(config.cache_dir) if config.cache_dir else out / "cache")

    jobs = [(s, c) for s in systems for c in conditions]
    assert manifest is not None
    todo = [
        (s, c)
        for s, c in jobs
        if store.load(EmbeddingStore.key(s.identity, manifest.hash, c.name, needed)) is None
    ]
    show = not quiet and sys.stderr.isatty() and rank == 0
    bar = tqdm(
        total=len(todo) * len(needed) // world, desc="embeddings", disable=not show, dynamic_ncols=True
    )
    for system, condition in todo:
        key = EmbeddingStore.key(system.identity, manifest.hash, condition.name, needed)
        mine = needed[rank::world]
        embeddings = embed_condition(system, mine, condition, test, manifest, loader, bar.update)
        if world > 1:
            store.save(f"part-{key}-{rank}", embeddings)
            import torch.distributed as dist

            dist.barrier()
            if rank == 0:
                merged: dict[str, np.ndarray] = {}
                for r in range(world):
                    merged.update(store.load(f"part-{key}-{r}") or {})
                    store.path(f"part-{key}-{r}").unlink(missing_ok=True)
                store.save(key, merged)
        else:
            store.save(key, embeddings)
    bar.close()
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        if rank != 0:
            return []

    rows = _score(config, systems, conditions, trials, test, manifest, store, needed)
    elapsed = time.time() - started
    write_results(out, config, rows, elapsed)
    from gradw.evaluation.report import write_report

    write_report(out, config, rows)
    return rows


def _score(
    config: EvaluationConfig,
    systems: list[System],
    conditions: list[Condition],
    trials: list[Trial],
    test: SpeechDir,
    manifest: Manifest,
    store: EmbeddingStore,
    needed: list[str],
) -> list[Row]:
    out = Path(config.out)
    labels = np.array([t.target for t in trials])
    enroll_spk = [test.utt2spk[t.enroll] for t in trials]
    test_spk = [test.utt2spk[t.test] for t in trials]
    pairs = [(t.enroll, t.test, t.target) for t in trials]
    rows: list[Row] = []
    scores_of: dict[tuple[str, str], np.ndarray] = {}
    clean = Condition("clean")
    for system in systems:
        clean_emb = None
        if config.clean_enroll:
            clean_emb = store.load(EmbeddingStore.key(system.identity, manifest.hash, clean.name, needed))
        for condition in conditions:
            emb = store.load(EmbeddingStore.key(system.identity, manifest.hash, condition.name, needed))
            assert emb is not None
            if clean_emb is not None:
                scores = np.array([float(clean_emb[e] @ emb[t]) for e, t, _ in pairs], dtype=np.float64)
            else:
                scores = score_trials(emb, pairs)
            scores_of[(system.spec.name, condition.name)] = scores
            write_scores(out / "scores" / system.spec.name / f"{condition.name}.txt", pairs, scores)
            metrics = summarise(scores, labels, enroll_spk, test_spk, n_boot=config.n_boot, seed=config.seed)
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
    return rows


def write_results(out: Path, config: EvaluationConfig, rows: Iterable[Row], elapsed: float) -> None:
    """``results.json`` (config, rows, timing) and ``results.csv`` (a row per system x condition)."""
    rows = list(rows)
    payload = {
        "config": asdict(config),
        "command": " ".join(sys.argv),
        "elapsed_seconds": round(elapsed, 1),
        "rows": [asdict(r) for r in rows],
    }
    tmp = out / ".results.json.tmp"
    tmp.write_text(json.dumps(payload, indent=1))
    tmp.replace(out / "results.json")
    keys: list[str] = []
    for row in rows:
        keys.extend(k for k in row.metrics if k not in keys)
    tmp = out / ".results.csv.tmp"
    with open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["system", "condition", "category", "snr_db", "reverb", *keys])
        for row in rows:
            writer.writerow(
                [
                    row.system,
                    row.condition,
                    row.category,
                    row.snr_db,
                    row.reverb,
                    *(row.metrics.get(k) for k in keys),
                ]
            )
    tmp.replace(out / "results.csv")


def read_results(out: str | Path) -> tuple[dict[str, Any], list[Row]]:
    """Read ``results.json`` back: (config dict, rows)."""
    payload = json.loads((Path(out) / "results.json").read_text())
    return payload["config"], [Row(**r) for r in payload["rows"]]
