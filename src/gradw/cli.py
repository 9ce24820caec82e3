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
    from gradw.config import ConfigError
    from gradw.data.lists import DataError
    from gradw.training.checkpoint import CheckpointError
    from gradw.training.enhancer import TrainingError

    return (ConfigError, DataError, AudioError, CheckpointError, TrainingError, FileNotFoundError)


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
    from gradw.data.corpora.synthvox import build_synthvox

    summary = build_synthvox(
        Path(args.out), preset=args.preset, seed=args.seed, jobs=args.jobs, quiet=args.quiet
    )
    for key, value in summary.items():
        print(f"{key}: {value}")
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
