"""``gradw train``, ``gradw train-speaker``, ``gradw adapt`` and ``gradw config``: the config-driven
training stages."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gradw.cli.common import add_config_args

#: the preset sections (gradw.config.SECTIONS), named here so that building the parser imports nothing
SECTION_NAMES = ("train", "train_speaker", "adapt", "evaluate", "demo")


def _checkpoint_to_use(path: Path) -> Path:
    """best.pt beside ``path`` when validation wrote one, else ``path`` (the last checkpoint)."""
    best = path.parent / "best.pt"
    return best if best.is_file() else path


def cmd_train(args: argparse.Namespace) -> int:
    from gradw.config import TrainConfig, load_config
    from gradw.training.enhancer import train_enhancer

    config = load_config(TrainConfig, args.config, args.overrides, section="train")
    path = train_enhancer(config, resume=args.resume, quiet=args.quiet)
    print(f"enhancer checkpoint: {_checkpoint_to_use(path)}")
    return 0


def cmd_train_speaker(args: argparse.Namespace) -> int:
    from gradw.config import SpeakerTrainConfig, load_config
    from gradw.training.speaker import train_speaker

    config = load_config(SpeakerTrainConfig, args.config, args.overrides, section="train_speaker")
    path = train_speaker(config, resume=args.resume, quiet=args.quiet)
    print(f"speaker checkpoint: {path}")
    return 0


def cmd_adapt(args: argparse.Namespace) -> int:
    from gradw.config import AdaptConfig, load_config
    from gradw.training.adapt import train_adapter

    config = load_config(AdaptConfig, args.config, args.overrides, section="adapt")
    path = train_adapter(config, resume=args.resume, quiet=args.quiet)
    print(f"adapted checkpoint: {_checkpoint_to_use(path)}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """Print the resolved config of a preset section with overrides (a dry run)."""
    import yaml

    from gradw.config import SECTIONS, load_config, to_dict

    config = load_config(SECTIONS[args.section], args.config, args.overrides, section=args.section)
    print(yaml.safe_dump(to_dict(config), sort_keys=False), end="")
    return 0


def register(sub: Any) -> None:
    train = sub.add_parser("train", help="train the enhancer G against a fixed speaker network E")
    add_config_args(train)
    train.set_defaults(func=cmd_train)

    train_spk = sub.add_parser("train-speaker", help="train a speaker network E (stage 1)")
    add_config_args(train_spk)
    train_spk.set_defaults(func=cmd_train_speaker)

    adapt = sub.add_parser(
        "adapt", help="adapt a student copy of E to noisy (or G-enhanced) speech, without labels"
    )
    add_config_args(adapt)
    adapt.set_defaults(func=cmd_adapt)

    config = sub.add_parser("config", help="print the resolved config of a preset section with overrides")
    config.add_argument("--config", default="demo", help="preset name or YAML file")
    config.add_argument("--section", choices=tuple(SECTION_NAMES), default="train")
    config.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    config.set_defaults(func=cmd_config)
