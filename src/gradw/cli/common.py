"""What several commands share: argument types and the options of the config-driven stages."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


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


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum``."""

    def value(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}: {text}")
        return number

    return value


def window_value(text: str) -> float | None:
    """An argparse type: a window of at least 1 second, or ``none`` (no window)."""
    if text.strip().lower() in ("none", "null"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds or 'none': {text!r}") from None
    if not value >= 1.0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 1, or 'none': {text}")
    return value


#: the torch device types --device takes
DEVICE_TYPES = ("cpu", "cuda", "mps")


def device_value(text: str) -> str:
    """An argparse type: a torch device that this machine has (``cpu``, ``cuda``, ``cuda:1``,
    ``mps``), checked before any work (torch is imported only when the option is given)."""
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in DEVICE_TYPES:
        raise argparse.ArgumentTypeError(f"not a device: {text!r} (use {', '.join(DEVICE_TYPES)} or cuda:N)")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise argparse.ArgumentTypeError(f"{text}: no CUDA device is available here; use cpu")
        if device.index is not None and device.index >= count:
            raise argparse.ArgumentTypeError(f"{text}: this machine has {count} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"{text}: no MPS device is available here; use cpu")
    return text


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


def add_device_args(parser: argparse.ArgumentParser) -> None:
    """``--device`` (checked by :func:`device_value`) and ``--threads`` (>= 0; 0: torch's
    default), as the commands that run a network on one recording at a time take them."""
    parser.add_argument("--device", type=device_value, default="cpu", help="torch device (default cpu)")
    parser.add_argument(
        "--threads", type=int_at_least(0), default=0, help="torch intra-op threads (0: default)"
    )
