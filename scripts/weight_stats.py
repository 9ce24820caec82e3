"""What the Grad-W weights look like: their concentration over many validation utterances.

    python scripts/weight_stats.py --val data/synthvox-demo/val \\
        --manifest exp/levers/eval-val/manifest.json \\
        --checkpoint gradw-s0=exp/demo/gradw/best.pt --checkpoint equalw-s0=exp/demo/equalw/best.pt \\
        --figure babble_0=docs/levers/inspect-babble_0.png --out docs/weights.md

For every G given and every utterance of a seeded sample of the validation split under each noisy
condition of the evaluation's manifest (the very audio ``gradw evaluate`` embedded there), this
computes what ``gradw inspect`` shows for one utterance (:func:`inspect_utterance`): the weights P
of the paper's literal Grad-W (``gradw``) and of the standardised one the demo recipe trains with
(``gradw-norm``) on G's enhanced input, with the true-speaker logit taken against the speaker's
centroid of other clean utterances. Reported per category: the normalised entropy of P (1 =
uniform, Equal-W), max/mean, and the share of the top 10 % of positions (0.1 when uniform), as
means over utterances and SNRs. ``--figure CONDITION=PATH`` also draws the first sampled
utterance under CONDITION with every G into PATH (the ``gradw inspect`` figure). Nothing here is
typed by hand; the validation split is used, never the test split.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from gradw.audio.io import read_audio
from gradw.data.conditions import augment_loader, render
from gradw.data.dirs import AugmentDir, SpeechDir
from gradw.data.manifest import Manifest
from gradw.evaluation.report.tables import format_table
from gradw.evaluation.weight_maps import inspect_utterance, parse_checkpoint_args, speaker_target
from gradw.models.loading import load_enhancer, load_speaker_network

SCHEMES = ("gradw", "gradw-norm")
STATS = (
    ("weight_entropy", "entropy", 4),
    ("weight_max_mean", "max/mean", 2),
    ("weight_top10", "top 10 %", 3),
)


def sample(utts: list[str], count: int) -> list[str]:
    """``count`` utterances spread evenly over the sorted list (all when fewer)."""
    utts = sorted(utts)
    if count >= len(utts):
        return utts
    if count == 1:
        return utts[:1]
    return [utts[round(i * (len(utts) - 1) / (count - 1))] for i in range(count)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--val", required=True, help="the validation speech directory")
    parser.add_argument("--manifest", required=True, help="the manifest.json of an evaluation of --val")
    parser.add_argument("--checkpoint", action="append", required=True, metavar="NAME=PATH")
    parser.add_argument("--utts", type=int, default=12, help="utterances sampled (default 12)")
    parser.add_argument("--figure", action="append", default=[], metavar="CONDITION=PATH")
    parser.add_argument("--dpi", type=int, default=80, help="resolution of the figures (default 80)")
    parser.add_argument("--out", required=True, help="the Markdown file to write")
    args = parser.parse_args()

    torch.manual_seed(0)
    checkpoints = parse_checkpoint_args(args.checkpoint)
    figures = dict(item.split("=", 1) for item in args.figure)
    val = SpeechDir.load(args.val)
    manifest = Manifest.load(args.manifest)
    augment = AugmentDir.load(manifest.augment_root)
    load = augment_loader(augment)
    spec = load_enhancer(next(iter(checkpoints.values()))).speaker
    speaker = load_speaker_network(
        spec["name"], checkpoint=spec.get("checkpoint"), tap=spec.get("tap")
    ).eval()
    conditions = [c for c in manifest.conditions if c.category != "clean"]
    utts = sample(list(val.wavs), args.utts)

    # (system, scheme, category) -> stat -> values over utterances and SNRs
    values: dict[tuple[str, str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for i, utt in enumerate(utts):
        clean = read_audio(val.wavs[utt])
        target, _ = speaker_target(speaker, val, utt)
        for condition in conditions:
            noisy = render(manifest.entry(utt, condition), clean, load)
            figure = figures.get(condition.name) if i == 0 else None
            result = inspect_utterance(
                checkpoints,
                clean,
                noisy,
                None,
                figure,
                speaker=speaker,
                target_embedding=target,
                title=f"{utt} ({val.utt2spk[utt]}), {condition.name}",
                dpi=args.dpi,
            )
            for system, stats in result["systems"].items():
                for scheme in SCHEMES:
                    for key, _, _ in STATS:
                        values[system, scheme, condition.category][key].append(stats["weights"][scheme][key])
        print(f"[weights] {i + 1}/{len(utts)} {utt}", file=sys.stderr, flush=True)

    categories = sorted({c.category for c in conditions}, key=["noise", "music", "babble"].index)
    snrs = sorted({c.snr_db for c in conditions if c.snr_db is not None}, reverse=True)
    lines = [
        "# What the Grad-W weights look like",
        "",
        f"Generated by `python scripts/weight_stats.py` ({' '.join(sys.argv[1:])}); nothing here is "
        "typed by hand. E = the pretrained CAM++, tap = the layer before pooling "
        f"({len(utts)} validation utterances of {len({val.utt2spk[u] for u in utts})} speakers, each under "
        f"{', '.join(categories)} at {', '.join(f'{s:g}' for s in snrs)} dB: the audio of the validation "
        "evaluation). For each G, the weights P that each scheme would give on G's enhanced input: "
        "`gradw` is the paper's softmax of the raw gradient difference, `gradw-norm` the demo "
        "recipe's (the difference standardised per utterance and clipped to ±3 before the softmax). "
        "Entropy is H(P) / log(F·T) (1: uniform, i.e. Equal-W); max/mean 1 and a top-10 % share of "
        "0.1 are uniform too. Means over utterances and SNRs.",
        "",
    ]
    for scheme in SCHEMES:
        pooled = {
            key: [v for (_, sch, _), cell in values.items() if sch == scheme for v in cell[key]]
            for key, _, _ in STATS
        }
        lines.append(
            f"- `{scheme}`, over every G, category, SNR and utterance: entropy "
            f"{min(pooled['weight_entropy']):.4f} to {max(pooled['weight_entropy']):.4f} (mean "
            f"{np.mean(pooled['weight_entropy']):.4f}); the top 10 % of positions carry "
            f"{np.mean(pooled['weight_top10']):.1%} of the weight on average; max/mean "
            f"{np.mean(pooled['weight_max_mean']):.2f}."
        )
    lines.append("")
    for scheme in SCHEMES:
        rows = []
        for system in checkpoints:
            for category in categories:
                cell = values[system, scheme, category]
                rows.append(
                    [system, category, *(f"{np.mean(cell[key]):.{digits}f}" for key, _, digits in STATS)]
                )
        lines += [
            f"## `{scheme}`",
            "",
            format_table(["G", "category", *(name for _, name, _ in STATS)], rows),
            "",
        ]
    for condition, path in figures.items():
        rel = (
            Path(path).relative_to(Path(args.out).parent)
            if Path(path).is_relative_to(Path(args.out).parent)
            else path
        )
        lines += [f"## One utterance under {condition}", "", f"![{condition}]({rel})", ""]
    Path(args.out).write_text("\n".join(lines))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
