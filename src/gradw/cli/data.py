"""``gradw data``: build the embedded corpus, or prepare the real corpora's data directories."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gradw.cli.common import open_fraction, print_summary


def cmd_data_build(args: argparse.Namespace) -> int:
    from gradw.data.corpora.synthvox.build import add_pool, build_synthvox

    if args.pool:
        return print_summary(add_pool(Path(args.out), args.pool, jobs=args.jobs, quiet=args.quiet))
    summary = build_synthvox(
        Path(args.out), preset=args.preset, seed=args.seed, jobs=args.jobs, quiet=args.quiet
    )
    return print_summary(summary)


def cmd_data_build_toy(args: argparse.Namespace) -> int:
    from gradw.data.corpora.toy import build_toy_corpus

    return print_summary(build_toy_corpus(Path(args.out), seed=args.seed))


def cmd_prepare_voxceleb(args: argparse.Namespace) -> int:
    from gradw.data.corpora.voxceleb import prepare_voxceleb

    summary = prepare_voxceleb(
        Path(args.out),
        vox1=Path(args.vox1) if args.vox1 else None,
        vox2=Path(args.vox2) if args.vox2 else None,
        trials=tuple(Path(t) for t in args.trials),
        val_speakers=args.val_speakers,
        val_trials=args.val_trials,
        seed=args.seed,
        durations=not args.no_durations,
        check_audio=args.check_audio,
        quiet=args.quiet,
    )
    return print_summary(summary)


def cmd_prepare_musan(args: argparse.Namespace) -> int:
    from gradw.data.corpora.musan import prepare_musan

    return print_summary(
        prepare_musan(
            Path(args.root), Path(args.out), val=args.split_val, test=args.split_test, seed=args.seed
        )
    )


def cmd_prepare_rirs(args: argparse.Namespace) -> int:
    from gradw.data.corpora.rirs import prepare_rirs

    summary = prepare_rirs(
        Path(args.root),
        Path(args.out),
        sets=tuple(args.sets),
        real=args.real,
        val=args.split_val,
        test=args.split_test,
        seed=args.seed,
    )
    return print_summary(summary)


def _add_split_args(parser: argparse.ArgumentParser, what: str) -> None:
    from gradw.data.corpora.musan import DEFAULT_TEST_FRACTION, DEFAULT_VAL_FRACTION

    parser.add_argument(
        "--split-val",
        type=open_fraction,
        default=DEFAULT_VAL_FRACTION,
        help=f"share of {what} for validation, OUT/val (default {DEFAULT_VAL_FRACTION})",
    )
    parser.add_argument(
        "--split-test",
        type=open_fraction,
        default=DEFAULT_TEST_FRACTION,
        help=f"share of {what} for the final test, OUT/test (default {DEFAULT_TEST_FRACTION}); "
        "the rest goes to OUT/train",
    )


def register(sub: Any) -> None:
    data = sub.add_parser("data", help="build or prepare data directories")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    build = data_sub.add_parser("build", help="build an embedded corpus from system packages")
    build.add_argument("corpus", choices=("synthvox",))
    build.add_argument("--preset", default="demo", choices=("tiny", "demo", "full"))
    build.add_argument("--out", required=True, help="output directory")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--jobs", type=int, default=None, help="worker processes (default: all cores)")
    build.add_argument(
        "--pool",
        choices=("test-ood",),
        help="build only this augmentation pool into the corpus already in --out, with the preset "
        "and seed its manifest names (every other file is left as it is)",
    )
    build.add_argument("--quiet", action="store_true")
    build.set_defaults(func=cmd_data_build)
    prepare = data_sub.add_parser("prepare", help="write data directories from the real corpora")
    prepare_sub = prepare.add_subparsers(dest="corpus", required=True)
    vox = prepare_sub.add_parser("voxceleb", help="VoxCeleb1 (Vox1-O trials) and VoxCeleb2 dev")
    vox.add_argument("--vox1", help="VoxCeleb1 root (dev/wav, test/wav or wav/)")
    vox.add_argument("--vox2", help="VoxCeleb2 root (dev/aac converted to wav/flac, or dev/wav)")
    vox.add_argument("--trials", action="append", default=[], help="trial list file (repeatable)")
    vox.add_argument("--val-speakers", type=int, default=50, help="held-out validation speakers")
    vox.add_argument("--val-trials", type=int, default=20000)
    vox.add_argument("--seed", type=int, default=0)
    vox.add_argument("--no-durations", action="store_true", help="skip utt2dur (no header reads)")
    vox.add_argument("--check-audio", action="store_true", help="decode every file (slow)")
    vox.add_argument("--out", required=True)
    vox.add_argument("--quiet", action="store_true")
    vox.set_defaults(func=cmd_prepare_voxceleb)
    musan = prepare_sub.add_parser("musan", help="MUSAN noise/music/speech (speech becomes babble)")
    musan.add_argument("root")
    _add_split_args(musan, "recordings")
    musan.add_argument("--seed", type=int, default=0)
    musan.add_argument("--out", required=True)
    musan.set_defaults(func=cmd_prepare_musan)
    rirs = prepare_sub.add_parser("rirs", help="RIRS_NOISES simulated (and real) room impulse responses")
    rirs.add_argument("root")
    rirs.add_argument("--sets", nargs="+", default=["smallroom", "mediumroom"])
    rirs.add_argument("--real", action="store_true", help="also the real RIRs")
    _add_split_args(rirs, "rooms")
    rirs.add_argument("--seed", type=int, default=0)
    rirs.add_argument("--out", required=True)
    rirs.set_defaults(func=cmd_prepare_rirs)

    toy = data_sub.add_parser("toy", help="write the seconds-fast synthetic toy corpus (tests, smoke checks)")
    toy.add_argument("--out", required=True)
    toy.add_argument("--seed", type=int, default=0)
    toy.set_defaults(func=cmd_data_build_toy)
