"""Evaluation throughput: utterance-conditions per second, and where the time goes.

Run by hand (not part of the tests)::

    python benchmarks/eval_throughput.py --test data/synthvox-demo/test \\
        --augment data/synthvox-demo/augment/test --utts 20

For each preset (``demo``: pretrained CAM++ with the demo's G; ``paper``: ResNet34 with random
weights and G at width 32, full depth) this runs what ``gradw evaluate`` runs to embed the test
set: the seeded manifest (``build_manifest``), then ``embed_conditions`` for every system (each
utterance rendered under every condition, equal lengths batched) with the systems
``load_system`` builds, ``noisy`` and a G system (a randomly
initialised G saved as a ``gradw train`` checkpoint; the time does not depend on the weights).
Scoring and bootstrap intervals are not included (they take seconds).

Timers wrap, without changing them: the audio reading and noise rendering that
``embed_conditions`` calls, ``System.embed_batch`` and, inside it, E's mel power, E's features, E's
forward and G's forward. What is left of ``System.embed`` (tensor conversion, normalisation)
and of the loop is reported as "other". ``--batch-seconds 0`` embeds one item at a time, as
``gradw evaluate`` did before batching, for comparison. Utterances are a seeded sample of the test list; one
utterance of one condition is embedded once per warm-up before timing.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import (
    Stopwatch,
    machine_summary,
    markdown_table,
    preset_models,
    save_random_enhancer,
    set_threads,
)

SECTIONS = (
    ("E forward", "E forward"),
    ("G forward", "G forward"),
    ("E mel power", "mel power"),
    ("E features", "features"),
    ("read", "read audio"),
    ("render", "render noise"),
)


def instrument(watch: Stopwatch) -> None:
    """Time the audio reading and noise rendering of ``embed_conditions`` (module-level names)."""
    import gradw.evaluation.grid as benchmark

    benchmark.read_audio = watch.wrap("read", benchmark.read_audio)
    benchmark.render = watch.wrap("render", benchmark.render)


def measure_preset(
    watch: Stopwatch,
    preset: str,
    test_dir: Path,
    augment_dir: Path,
    utts: int,
    categories: list[str],
    snrs: list[float],
    batch_seconds: float,
) -> list[dict]:
    """Embed ``utts`` test utterances under every condition through ``noisy`` and G; one row per system."""
    import gradw.evaluation.grid as benchmark
    from gradw.audio.io import read_audio
    from gradw.data.conditions import AudioCache, augment_loader, parse_conditions
    from gradw.data.dirs import AugmentDir, SpeechDir
    from gradw.data.manifest import build_manifest
    from gradw.evaluation.systems import load_system, parse_system

    models = preset_models(preset)
    scorer = models.speaker.freeze()
    test = SpeechDir.load(test_dir)
    rng = np.random.default_rng(0)
    chosen = sorted(rng.choice(sorted(test.wavs), size=min(utts, len(test.wavs)), replace=False).tolist())
    test = test.subset(chosen)
    augment = AugmentDir.load(augment_dir)
    conditions = parse_conditions(categories, snrs)
    start = time.perf_counter()
    manifest = build_manifest(test, augment, conditions, seed=0)
    manifest_s = time.perf_counter() - start
    loader = augment_loader(augment, AudioCache())
    durations = {u: len(read_audio(test.wavs[u])) / 16000 for u in chosen}

    scorer.mel_power = watch.wrap("E mel power", scorer.mel_power)
    scorer.features = watch.wrap("E features", scorer.features)
    scorer.forward = watch.wrap("E forward", scorer.forward)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = save_random_enhancer(Path(tmp) / "g.pt", models)
        device = torch.device("cpu")
        for spec in ("noisy", f"g-{preset}:{checkpoint}"):
            system = load_system(parse_system(spec), scorer, f"bench-{preset}", device)
            if system.enhancer is not None:
                system.enhancer.forward = watch.wrap("G forward", system.enhancer.forward)
            system.embed_batch = watch.wrap("embed", system.embed_batch)
            benchmark.embed_conditions(system, chosen[:1], conditions, test, manifest, loader, batch_seconds)
            watch.reset()
            start = time.perf_counter()
            benchmark.embed_conditions(system, chosen, conditions, test, manifest, loader, batch_seconds)
            wall = time.perf_counter() - start
            count = len(chosen) * len(conditions)
            shares = {name: watch.get(name) / wall for name, _ in SECTIONS}
            shares["other"] = 1.0 - sum(shares.values())
            rows.append(
                {
                    "preset": preset,
                    "system": "noisy" if system.enhancer is None else "G",
                    "scorer": type(scorer).__name__,
                    "g_width": models.config.enhancer.base_width,
                    "count": count,
                    "wall_s": wall,
                    "rate": count / wall,
                    "audio_rate": sum(durations.values()) * len(conditions) / wall,
                    "mean_duration_s": float(np.mean(list(durations.values()))),
                    "shares": shares,
                    "manifest_s": manifest_s,
                    "conditions": len(conditions),
                    "batch_seconds": batch_seconds,
                    "load": machine_summary().rsplit("load average ", 1)[1],
                }
            )
            label = f"{preset} {rows[-1]['system']} batch {batch_seconds:g} s"
            print(f"{label}: {rows[-1]['rate']:.2f} utterance-conditions/s", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--test", type=Path, required=True, help="test directory (wav.scp, utt2spk, trials)")
    parser.add_argument("--augment", type=Path, required=True, help="test augmentation directory")
    parser.add_argument("--presets", nargs="+", default=["demo", "paper"], help="E and G of these presets")
    parser.add_argument("--utts", type=int, default=20, help="test utterances (seeded sample; default 20)")
    parser.add_argument("--categories", nargs="+", default=["clean", "noise", "music", "babble"])
    parser.add_argument("--snrs", type=float, nargs="+", default=[0.0, -5.0])
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: default)")
    parser.add_argument(
        "--batch-seconds",
        type=float,
        nargs="+",
        default=[0.0, 60.0],
        help="batch sizes to compare (0: one item)",
    )
    args = parser.parse_args()
    set_threads(args.threads)
    print(f"machine: {machine_summary()}")
    watch = Stopwatch()
    instrument(watch)
    rows = []
    for preset in args.presets:
        for batch_seconds in args.batch_seconds:
            rows += measure_preset(
                watch, preset, args.test, args.augment, args.utts, args.categories, args.snrs, batch_seconds
            )

    print(f"\nmachine: {machine_summary()}\n")
    table = []
    for r in rows:
        s = r["shares"]
        table.append(
            [
                r["preset"],
                f"{r['system']} ({r['scorer']}" + (f", G w{r['g_width']})" if r["system"] == "G" else ")"),
                f"{r['count']} ({r['conditions']} conditions)",
                f"{r['batch_seconds']:g} s" if r["batch_seconds"] > 0 else "one item",
                f"{r['wall_s']:.1f}",
                f"{r['rate']:.2f}",
                f"{r['audio_rate']:.0f}",
                f"{100 * (s['E forward'] + s['G forward']):.0f} %",
                *(f"{100 * s[name]:.0f} %" for name, _ in SECTIONS),
                f"{100 * s['other']:.0f} %",
                f"{r['manifest_s']:.1f}",
                r["load"],
            ]
        )
    headers = ["preset", "system", "utterance-conditions", "batch", "wall s", "utt-cond/s", "audio s/s"]
    headers += ["in model forwards", *(label for _, label in SECTIONS), "other", "manifest s", "load average"]
    print(markdown_table(headers, table))
    mean = np.mean([r["mean_duration_s"] for r in rows])
    print(f"\nmean test utterance: {mean:.2f} s; shares are of the wall time of the embedding loop")


if __name__ == "__main__":
    main()
