"""``gradw inspect``: where Grad-W and Equal-W put their weight on one utterance (a figure and numbers)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from gradw.cli.common import dpi_value
from gradw.evaluation.weight_maps import inspect_utterance, parse_checkpoint_args, speaker_target
from gradw.losses.weights import WEIGHT_SCHEMES


def cmd_inspect(args: argparse.Namespace) -> int:
    """Run ``gradw inspect`` (see :func:`add_inspect_parser`)."""
    from gradw.audio.io import read_audio
    from gradw.data.conditions import Condition, augment_loader, render
    from gradw.data.dirs import AugmentDir, SpeechDir
    from gradw.data.lists import DataError
    from gradw.data.manifest import Manifest, build_manifest
    from gradw.evaluation.report.plots import figure_format
    from gradw.models.loading import load_enhancer, load_speaker_network

    figure_format(args.output)  # png, pdf or svg, from the suffix: checked before any work
    torch.manual_seed(args.seed)
    checkpoints = parse_checkpoint_args(args.checkpoint)
    test = SpeechDir.load(args.test)
    if args.utt not in test.wavs:
        near = [u for u in test.utts if args.utt in u or u in args.utt][:5]
        hint = f"; similar: {', '.join(near)}" if near else ""
        raise DataError(f"{test.root}: utterance {args.utt!r} is not in wav.scp{hint}")
    try:
        condition = Condition.from_name(args.condition)
    except ValueError as exc:
        raise DataError(f"--condition: {exc}") from None
    clean = read_audio(test.wavs[args.utt])
    noisy = clean
    if condition.category != "clean" or condition.reverb:
        if args.manifest:
            manifest = Manifest.load(args.manifest)
            if condition.name not in manifest.entries:
                have = ", ".join(c.name for c in manifest.conditions)
                raise DataError(f"{args.manifest}: no condition {condition.name!r} (it has: {have})")
            entry = manifest.entry(args.utt, condition)
            augment_root = args.augment or manifest.augment_root
        else:
            augment_root = args.augment
        if not augment_root:
            raise DataError(f"condition {condition.name!r} needs the augmentation directory (--augment)")
        augment = AugmentDir.load(augment_root)
        if not args.manifest:
            manifest = build_manifest(test.subset([args.utt]), augment, [condition], args.seed)
            entry = manifest.entry(args.utt, condition)
        noisy = render(entry, clean, augment_loader(augment))

    first = load_enhancer(next(iter(checkpoints.values())))
    spec = dict(first.speaker or {})
    if args.scorer and args.scorer != spec.get("name"):
        spec = {"name": args.scorer, "checkpoint": None, "tap": None}
    if args.scorer_checkpoint:
        spec["checkpoint"] = args.scorer_checkpoint
    if not spec.get("name"):
        raise DataError(f"{next(iter(checkpoints.values()))}: no speaker network recorded; pass --scorer")
    try:
        speaker = load_speaker_network(spec["name"], checkpoint=spec.get("checkpoint"), tap=spec.get("tap"))
    except ValueError as exc:
        raise DataError(f"speaker network: {exc}") from None
    speaker.eval()
    speaker.to(torch.device("cuda" if torch.cuda.is_available() else "cpu"))

    label: int | None = None
    target = None
    spk = test.utt2spk[args.utt]
    classes = list(getattr(speaker, "speakers", None) or [])
    if speaker.head is not None and spk in classes and classes.index(spk) < speaker.head.num_classes:
        label = classes.index(spk)
    else:
        target, used = speaker_target(speaker, test, args.utt)
        if target is not None and not args.quiet:
            print(
                f"logit target: centroid of {len(used)} other clean utterance(s) of speaker {spk}",
                file=sys.stderr,
            )
    try:
        result = inspect_utterance(
            checkpoints,
            clean,
            noisy,
            label,
            Path(args.output),
            speaker=speaker,
            scheme=args.scheme,
            target_embedding=target,
            title=f"{args.utt} ({spk}), {condition.name}",
            dpi=args.dpi,
        )
    except ValueError as exc:
        raise DataError(str(exc)) from None
    print(f"figure: {result['figure']}")
    for name, value in result["logits"].items():
        print(f"logit {name}: {value:.3f}  cos to clean: {result['cosine_to_clean'][name]:.3f}")
    for name, stats in result["systems"].items():
        w = stats["weights"][args.scheme]
        print(
            f"{name}: mask mean {stats['mask_mean']:.3f}; "
            f"P {args.scheme}: entropy {w['weight_entropy']:.4f}, "
            f"max/mean {w['weight_max_mean']:.2f}, top10 {w['weight_top10']:.3f}"
        )
    for note in result["notes"]:
        print(f"note: {note}", file=sys.stderr)
    return 0


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``gradw inspect`` on an ``argparse`` subparsers object; returns the parser."""
    parser = subparsers.add_parser(
        "inspect",
        help="plot E's gradient maps and the Grad-W weights for one utterance and condition",
        description=(
            "For one test utterance under one condition: E's features of the clean, noisy and "
            "enhanced input, the gradient maps of the true-speaker logit on the clean and enhanced "
            "input, the weights P of Equal-W and of a gradient scheme, and the (weighted) "
            "activation differences. The condition is rendered with the seeded manifest logic of "
            "`gradw evaluate`; pass --manifest OUT/manifest.json to get exactly an evaluation's audio "
            "(a one-utterance manifest may deal that utterance another noise file)."
        ),
    )
    parser.add_argument("--test", required=True, help="the clean test data directory (wav.scp, utt2spk)")
    parser.add_argument(
        "--augment", default=None, help="the augmentation directory (noise, music, babble, rirs)"
    )
    parser.add_argument("--utt", required=True, help="the utterance id")
    parser.add_argument("--condition", required=True, help="e.g. clean, noise_-5, babble_-10, music_0_rev")
    parser.add_argument(
        "--checkpoint",
        action="append",
        required=True,
        metavar="NAME=PATH",
        help="an enhancer checkpoint (repeat to compare, e.g. gradw=... equalw=...)",
    )
    parser.add_argument(
        "-o", "--output", required=True, help="the figure to write: .png, .pdf or .svg (by its suffix)"
    )
    parser.add_argument(
        "--scorer",
        default=None,
        help="speaker network E (default: the one the first checkpoint was trained against)",
    )
    parser.add_argument("--scorer-checkpoint", default=None, help="checkpoint of E (resnet34, resnet-tiny)")
    parser.add_argument(
        "--scheme",
        default="gradw-norm",
        choices=[s for s in WEIGHT_SCHEMES if s != "equal"],
        help="the gradient scheme plotted beside Equal-W",
    )
    parser.add_argument("--manifest", default=None, help="reuse an evaluation's manifest.json")
    parser.add_argument("--seed", type=int, default=0, help="manifest seed (as gradw evaluate --seed)")
    parser.add_argument("--dpi", type=dpi_value, default=150, help="resolution of a PNG (50-1200)")
    parser.add_argument("--quiet", action="store_true")
    parser.set_defaults(func=cmd_inspect)
    return parser
