"""What several commands share: argument types and the options of the config-driven stages."""

from __future__ import annotations

import argparse
import sys


def open_fraction(text: str) -> float:
    """An argparse type: a number in (0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1): {text}")
    return value


#: the figure formats of --figure-format (gradw.evaluation.report.plots.FIGURE_FORMATS)
FORMATS = ("png", "pdf", "svg")


def dpi_value(text: str) -> int:
    """An argparse type: a figure resolution, an integer in [50, 1200]."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 50 <= value <= 1200:
        raise argparse.ArgumentTypeError(f"must be in [50, 1200]: {text}")
    return value


def add_config_args(parser: argparse.ArgumentParser, resume: bool = True) -> None:
    """``--config PRESET`` and ``KEY=VALUE`` overrides (anywhere on the line), as every stage takes."""
    parser.add_argument(
        "--config", default="demo", help="preset name (tiny, demo, full, paper) or a YAML file"
    )
    if resume:
        parser.add_argument("--resume", action="store_true", help="continue the run in out_dir from last.pt")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. loss.scheme=equal"
    )


def print_summary(summary: dict) -> int:
    """Print a summary mapping as ``key: value`` lines (warnings to stderr); returns 0."""
    for key, value in summary.items():
        if key == "warnings":
            for warning in value:
                print(f"warning: {warning}", file=sys.stderr)
        else:
            print(f"{key}: {value}")
    return 0
