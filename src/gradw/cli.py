"""The ``gradw`` command line: one subcommand per pipeline stage.

Every subcommand fails with one line ``gradw: error: ...`` naming the bad file, key or value and
a non-zero exit status.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

EXIT_USAGE = 2


def _known_errors() -> tuple[type[BaseException], ...]:
    from gradw.audio.io import AudioError
    from gradw.checkpoint import CheckpointError
    from gradw.config import ConfigError
    from gradw.data.lists import DataError
    from gradw.evaluation.systems import SystemSpecError
    from gradw.training.loop import TrainingError

    return (
        ConfigError,
        DataError,
        AudioError,
        CheckpointError,
        TrainingError,
        SystemSpecError,
        FileNotFoundError,
    )


# ---------------------------------------------------------------------------------------------
# subcommands


def cmd_train(args: argparse.Namespace) -> int:
    from gradw.config import TrainConfig, load_config
    from gradw.training.enhancer import train_enhancer

    config = load_config(TrainConfig, args.config, args.overrides, section="train")
    path = train_enhancer(config, resume=args.resume, quiet=args.quiet)
    print(f"enhancer checkpoint: {path}")
    return 0


def cmd_train_speaker(args: argparse.Namespace) -> int:
    from gradw.config import SpeakerTrainConfig, load_config
    from gradw.training.speaker import train_speaker

    config = load_config(SpeakerTrainConfig, args.config, args.overrides, section="train_speaker")
    path = train_speaker(config, resume=args.resume, quiet=args.quiet)
    print(f"speaker checkpoint: {path}")
    return 0


def cmd_data_build(args: argparse.Namespace) -> int:
    from gradw.data.corpora.synthvox.build import build_synthvox

    summary = build_synthvox(
        Path(args.out), preset=args.preset, seed=args.seed, jobs=args.jobs, quiet=args.quiet
    )
    for key, value in summary.items():
        print(f"{key}: {value}")
    return 0


def cmd_data_build_toy(args: argparse.Namespace) -> int:
    from gradw.data.corpora.toy import build_toy_corpus

    for key, value in build_toy_corpus(Path(args.out), seed=args.seed).items():
        print(f"{key}: {value}")
    return 0


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
    return _print_summary(summary)


def cmd_prepare_musan(args: argparse.Namespace) -> int:
    from gradw.data.corpora.musan import prepare_musan

    return _print_summary(
        prepare_musan(Path(args.root), Path(args.out), split_test=args.split_test, seed=args.seed)
    )


def cmd_prepare_rirs(args: argparse.Namespace) -> int:
    from gradw.data.corpora.rirs import prepare_rirs

    summary = prepare_rirs(
        Path(args.root),
        Path(args.out),
        sets=tuple(args.sets),
        real=args.real,
        split_test=args.split_test,
        seed=args.seed,
    )
    return _print_summary(summary)


def _print_summary(summary: dict) -> int:
    for key, value in summary.items():
        if key == "warnings":
            for warning in value:
                print(f"warning: {warning}", file=sys.stderr)
        else:
            print(f"{key}: {value}")
    return 0


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1): {text}")
    return value


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip() and v.strip() != "clean"]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") from None


def cmd_evaluate(args: argparse.Namespace) -> int:
    from gradw.evaluation.grid import EvaluationConfig, evaluate
    from gradw.evaluation.report import summary_table

    snr_items = [v.strip() for v in args.snrs.split(",") if v.strip()]
    config = EvaluationConfig(
        test=args.test,
        out=args.out,
        systems=[s for s in args.systems.split(",") if s.strip()],
        augment=args.augment,
        categories=[c for c in args.categories.split(",") if c.strip()],
        snrs=_floats(args.snrs),
        clean="clean" in snr_items or args.clean,
        rooms=args.rooms,
        scorer=args.scorer,
        scorer_checkpoint=args.scorer_checkpoint,
        scorer_tap=args.scorer_tap,
        trials=args.trials,
        max_trials=args.max_trials,
        clean_enroll=args.clean_enroll,
        seed=args.seed,
        n_boot=args.n_boot,
        cache_dir=args.cache_dir,
        threads=args.threads,
        batch_seconds=args.batch_seconds,
        save_every=args.save_every,
    )
    rows = evaluate(config, quiet=args.quiet)
    if rows:
        print(summary_table(rows), end="")
        print(f"report: {Path(args.out) / 'report.md'}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from gradw.demo import run_demo

    run_demo(args.preset, quiet=args.quiet, processes=args.processes)
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """Print the resolved config of a preset section with overrides (a dry run)."""
    import yaml

    from gradw.config import SpeakerTrainConfig, TrainConfig, load_config, to_dict

    cls = TrainConfig if args.section == "train" else SpeakerTrainConfig
    config = load_config(cls, args.config, args.overrides, section=args.section)
    print(yaml.safe_dump(to_dict(config), sort_keys=False), end="")
    return 0


# ---------------------------------------------------------------------------------------------
# parser


def _add_training_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="demo", help="preset name (tiny, demo, paper) or a YAML file")
    parser.add_argument("--resume", action="store_true", help="continue the run in out_dir from last.pt")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. loss.scheme=equal"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradw", description="Speaker verification in extreme noise: Grad-W speaker-aware enhancement."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="build the corpus, train Grad-W and Equal-W, evaluate every system")
    demo.add_argument(
        "--preset", default="demo", help="tiny, demo or full (or a YAML file with a demo section)"
    )
    demo.add_argument(
        "--processes", type=int, default=None, help="evaluation processes (default: the preset's)"
    )
    demo.add_argument("--quiet", action="store_true")
    demo.set_defaults(func=cmd_demo)

    train = sub.add_parser("train", help="train the enhancer G against a fixed speaker network E")
    _add_training_args(train)
    train.set_defaults(func=cmd_train)

    train_spk = sub.add_parser("train-speaker", help="train a speaker network E (stage 1)")
    _add_training_args(train_spk)
    train_spk.set_defaults(func=cmd_train_speaker)

    config = sub.add_parser("config", help="print the resolved config of a preset with overrides")
    config.add_argument("--config", default="demo", help="preset name or YAML file")
    config.add_argument("--section", choices=("train", "train_speaker"), default="train")
    config.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    config.set_defaults(func=cmd_config)

    data = sub.add_parser("data", help="build or prepare data directories")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    build = data_sub.add_parser("build", help="build an embedded corpus from system packages")
    build.add_argument("corpus", choices=("synthvox",))
    build.add_argument("--preset", default="demo", choices=("tiny", "demo", "full"))
    build.add_argument("--out", required=True, help="output directory")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--jobs", type=int, default=None, help="worker processes (default: all cores)")
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
    musan.add_argument(
        "--split-test", type=_fraction, default=0.0, help="share of recordings held out for testing"
    )
    musan.add_argument("--seed", type=int, default=0)
    musan.add_argument("--out", required=True)
    musan.set_defaults(func=cmd_prepare_musan)
    rirs = prepare_sub.add_parser("rirs", help="RIRS_NOISES simulated (and real) room impulse responses")
    rirs.add_argument("root")
    rirs.add_argument("--sets", nargs="+", default=["smallroom", "mediumroom"])
    rirs.add_argument("--real", action="store_true", help="also the real RIRs")
    rirs.add_argument("--split-test", type=_fraction, default=0.0, help="share of rooms held out for testing")
    rirs.add_argument("--seed", type=int, default=0)
    rirs.add_argument("--out", required=True)
    rirs.set_defaults(func=cmd_prepare_rirs)

    toy = data_sub.add_parser("toy", help="write the seconds-fast synthetic toy corpus (tests, smoke checks)")
    toy.add_argument("--out", required=True)
    toy.add_argument("--seed", type=int, default=0)
    toy.set_defaults(func=cmd_data_build_toy)

    ev = sub.add_parser("evaluate", help="EER / minDCF of systems across SNRs and noise types")
    ev.add_argument("--test", required=True, help="test speech directory (wav.scp, utt2spk, trials)")
    ev.add_argument("--augment", help="augmentation directory with the test noise pools")
    ev.add_argument(
        "--systems", default="noisy", help="comma-separated: noisy, NAME:CHECKPOINT, rnnoise, ..."
    )
    ev.add_argument(
        "--snrs", default="clean,20,15,10,5,0,-5,-10,-15,-20", help="SNRs in dB ('clean' adds clean)"
    )
    ev.add_argument("--categories", default="noise,music,babble")
    ev.add_argument("--clean", action="store_true", help="also evaluate clean speech")
    ev.add_argument("--rooms", action="store_true", help="also evaluate every condition with reverberation")
    ev.add_argument("--scorer", default="campplus", help="speaker network E that scores the trials")
    ev.add_argument("--scorer-checkpoint", default=None)
    ev.add_argument("--scorer-tap", default=None)
    ev.add_argument("--trials", default="trials", help="trial list name in the test directory, or a path")
    ev.add_argument("--max-trials", type=int, default=None, help="seeded subset of the trials")
    ev.add_argument("--clean-enroll", action="store_true", help="enrolment side clean, test side corrupted")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the intervals")
    ev.add_argument("--cache-dir", default=None, help="embedding cache (default OUT/cache)")
    ev.add_argument("--threads", type=int, default=0)
    ev.add_argument(
        "--batch-seconds",
        type=float,
        default=None,
        help="most audio per batch, renderings of one length only (default: 60 on a GPU; "
        "on the CPU one at a time, measured faster there)",
    )
    ev.add_argument(
        "--save-every", type=int, default=200, help="save progress every N utterances (default 200)"
    )
    ev.add_argument("--out", required=True)
    ev.add_argument("--quiet", action="store_true")
    ev.set_defaults(func=cmd_evaluate)

    from gradw.enhance import add_enhance_parser
    from gradw.evaluation.report import add_report_parser
    from gradw.evaluation.weight_maps import add_inspect_parser
    from gradw.export import add_export_parser

    add_report_parser(sub)
    add_inspect_parser(sub)
    add_enhance_parser(sub)
    add_export_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        print("gradw: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if isinstance(exc, _known_errors()):
            print(f"gradw: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        raise


if __name__ == "__main__":
    sys.exit(main())
