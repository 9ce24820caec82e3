"""Corpus build time and training-data loader throughput, against what a training step consumes.

Run by hand (not part of the tests)::

    python benchmarks/data_throughput.py --corpus data/synthvox-demo            # loader only
    python benchmarks/data_throughput.py --corpus data/synthvox-demo --build tiny demo

``--build PRESET ...`` builds synthvox presets into a temporary directory (deleted afterwards)
with ``build_synthvox`` and every core, and reports the wall time and what was built (the
Debian packages of ``scripts/install-system-deps.sh`` must be installed). ``full`` takes about
10 minutes on 2 cores.

The loader is the one ``gradw train`` builds: ``EnhancementTriples`` from the preset's ``data``
section (crop, clean share, SNRs; the corpus's ``train`` and ``augment/train`` folders), batched
by ``StepSampler`` (fresh randomness per step) and ``collate``, in a ``DataLoader`` with 0 and 2
worker processes. Items per second exclude the first batch (worker start-up and the first file
reads, reported apart). The demo's training step is timed in the same run
(``train_step.Step``, synthetic batches) to give what training consumes: batch / step time.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch
from _common import machine_summary, markdown_table, median, set_threads
from train_step import Step


def build_time(preset: str, jobs: int | None) -> dict:
    """Build synthvox ``preset`` into a temporary folder; the summary plus the wall time."""
    from gradw.data.corpora.synthvox.build import build_synthvox

    root = Path(tempfile.mkdtemp(prefix=f"synthvox-{preset}-"))
    try:
        start = time.perf_counter()
        summary = build_synthvox(root / "corpus", preset=preset, jobs=jobs, quiet=True)
        summary["wall_s"] = time.perf_counter() - start
        summary["bytes"] = sum(p.stat().st_size for p in (root / "corpus").rglob("*") if p.is_file())
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return summary


def make_loader(
    corpus: Path, preset: str, workers: int, batches: int
) -> tuple[torch.utils.data.DataLoader, int]:
    """The ``gradw train`` loader of ``preset`` over ``corpus``; (loader, batch size)."""
    from gradw.config import TrainConfig, load_config
    from gradw.data.dirs import AugmentDir, SpeechDir
    from gradw.training.distributed import DistInfo
    from gradw.training.enhancer import _make_dataset
    from gradw.training.loop import StepSampler

    config = load_config(
        TrainConfig,
        preset,
        [f"data.train={corpus / 'train'}", f"data.augment={corpus / 'augment' / 'train'}"],
        section="train",
    )
    dataset = _make_dataset(config, SpeechDir.load(config.data.train), AugmentDir.load(config.data.augment))
    batch = config.optim.batch_size
    sampler = StepSampler(len(dataset), batch, config.seed, 0, batches, DistInfo())
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        collate_fn=dataset.collate,
        persistent_workers=False,
    )
    return loader, batch


def loader_rate(corpus: Path, preset: str, workers: int, items: int) -> dict:
    """Items per second of the training loader in steady state, and the first batch's latency.

    Workers prefetch two batches each while the first one is made, so the steady rate is taken
    from the moment that backlog is consumed (batch ``1 + 2 * workers`` on).
    """
    from gradw.config import TrainConfig, load_config

    batch = load_config(TrainConfig, preset, section="train").optim.batch_size
    skip = 1 + 2 * workers
    batches = max(skip + 8, -(-items // batch) + skip)
    loader, batch = make_loader(corpus, preset, workers, batches)
    stamps = [time.perf_counter()]
    for _ in loader:
        stamps.append(time.perf_counter())
    return {
        "preset": preset,
        "workers": workers,
        "batch": batch,
        "batches": len(stamps) - 1,
        "first_s": stamps[1] - stamps[0],
        "items_per_s": batch * (len(stamps) - 1 - skip) / (stamps[-1] - stamps[skip]),
        "overall_items_per_s": batch * (len(stamps) - 1) / (stamps[-1] - stamps[0]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, help="a built synthvox corpus (e.g. data/synthvox-demo)")
    parser.add_argument("--presets", nargs="+", default=["demo", "paper"], help="data sections to load with")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader worker counts")
    parser.add_argument("--items", type=int, default=400, help="items per loader measurement (about)")
    parser.add_argument("--build", nargs="*", default=[], metavar="PRESET", help="synthvox presets to build")
    parser.add_argument("--jobs", type=int, default=None, help="build processes (default: every core)")
    parser.add_argument("--train-steps", type=int, default=3, help="demo training steps to time (0: skip)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: default)")
    args = parser.parse_args()
    if args.corpus is None and not args.build:
        parser.error("give --corpus and/or --build")
    set_threads(args.threads)
    print(f"machine: {machine_summary()}")

    builds = []
    for preset in args.build:
        summary = build_time(preset, args.jobs)
        summary["load"] = machine_summary().rsplit("load average ", 1)[1]
        builds.append(summary)
        print(f"built {preset} in {summary['wall_s']:.1f} s", flush=True)

    rates = []
    if args.corpus is not None:
        for preset in args.presets:
            for workers in args.workers:
                rates.append(loader_rate(args.corpus, preset, workers, args.items))
                rates[-1]["load"] = machine_summary().rsplit("load average ", 1)[1]
                print(
                    f"loader {preset} workers {workers}: {rates[-1]['items_per_s']:.1f} items/s", flush=True
                )

    step_s = None
    if args.train_steps > 0 and args.corpus is not None:
        from gradw.config import TrainConfig, load_config

        config = load_config(TrainConfig, "demo", section="train")
        step = Step("demo", config.loss.scheme, config.optim.batch_size, config.data.crop_seconds, 49)
        step()
        step()
        step_s = median([step() for _ in range(args.train_steps)])
        consumed = config.optim.batch_size / step_s
        print(f"demo training step ({config.loss.scheme}, synthetic batch): {step_s:.3f} s", flush=True)

    print(f"\nmachine: {machine_summary()}\n")
    if builds:
        rows = []
        for b in builds:
            utts = b["utterances"]
            hours = sum(b["seconds"].values()) / 3600
            augment = sum(sum(v.values()) for v in b["augment"].values())
            speakers = "/".join(str(b["speakers"][s]) for s in ("train", "val", "test"))
            rows.append(
                [
                    b["preset"],
                    f"{b['wall_s']:.1f}",
                    speakers,
                    f"{sum(utts.values()):,}",
                    f"{hours:.2f}",
                    f"{augment:,}",
                    f"{b['bytes'] / 2**20:.0f}",
                    b["failed"],
                    b["load"],
                ]
            )
        headers = ["preset", "build s", "speakers train/val/test", "utterances", "speech h"]
        headers += ["augmentation files", "MiB", "failed", "load average after"]
        print(markdown_table(headers, rows))
        print()
    if rates:
        rows = []
        for r in rates:
            row = [
                r["preset"],
                r["workers"],
                r["batch"],
                r["batches"],
                f"{r['first_s']:.2f}",
                f"{r['items_per_s']:.1f}",
                f"{r['overall_items_per_s']:.1f}",
            ]
            if step_s is not None and r["preset"] == "demo":
                row.append(f"{r['items_per_s'] / consumed:.1f}x")
            else:
                row.append("")
            row.append(r["load"])
            rows.append(row)
        headers = ["data section", "workers", "batch", "batches", "first batch s", "items/s steady"]
        headers += ["items/s overall"]
        headers += ["vs demo step's need", "load average after"]
        print(markdown_table(headers, rows))
        inline = [r for r in rates if r["preset"] == "demo" and r["workers"] == 0]
        if step_s is not None and inline:
            batch = config.optim.batch_size
            print(
                f"\nthe demo step (batch {batch}) takes {step_s:.3f} s, so training consumes {consumed:.1f} "
                f"items/s; with 0 workers (the demo's setting) loading adds "
                f"{batch / inline[0]['items_per_s']:.3f} s to every step"
            )


if __name__ == "__main__":
    main()
