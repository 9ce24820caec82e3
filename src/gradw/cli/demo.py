"""``gradw demo``: the paper's question answered end to end on the embedded corpus."""

from __future__ import annotations

import argparse
from typing import Any

from gradw.cli.common import int_at_least


def cmd_demo(args: argparse.Namespace) -> int:
    from gradw.demo import run_demo

    run_demo(args.preset, quiet=args.quiet, processes=args.processes, overrides=args.overrides)
    return 0


def register(sub: Any) -> None:
    demo = sub.add_parser("demo", help="build the corpus, train Grad-W and Equal-W, evaluate every system")
    demo.add_argument(
        "--preset", default="demo", help="tiny, demo or full (or a YAML file with a demo section)"
    )
    demo.add_argument(
        "--processes", type=int_at_least(1), default=None, help="evaluation processes (default: the preset's)"
    )
    demo.add_argument("--quiet", action="store_true")
    demo.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="overrides of the demo section, e.g. n_boot=200"
    )
    demo.set_defaults(func=cmd_demo)
