"""``gradw enhance``: enhance audio files and folders with a trained G."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import torch

from gradw.cli.common import add_device_args
from gradw.enhance.chunks import DEFAULT_CHUNK_SECONDS, DEFAULT_OVERLAP_SECONDS
from gradw.enhance.dsp import gain_floor
from gradw.enhance.enhancer import Enhancer
from gradw.enhance.files import enhance_files, names_a_file

# ---------------------------------------------------------------------------------------------
# command line


def cmd_enhance(args: argparse.Namespace) -> int:
    """``gradw enhance``: 0 when every input was enhanced, 1 when some failed, 2 on a usage error."""
    if getattr(args, "threads", 0):
        torch.set_num_threads(args.threads)
    try:
        # a bad checkpoint (CheckpointError) or bad chunk options (ValueError): one line, exit 2
        enhancer = Enhancer.from_checkpoint(
            args.checkpoint,
            min_gain_db=args.min_gain_db,
            chunk_seconds=None if args.chunk_seconds <= 0 else args.chunk_seconds,
            overlap_seconds=args.overlap_seconds,
            device=args.device,
        )
        report = enhance_files(enhancer, args.inputs, args.output, quiet=args.quiet)
    except ValueError as exc:  # EnhanceError, CheckpointError and option errors
        print(f"gradw: error: {exc}", file=sys.stderr)
        return 2
    to_file = names_a_file(args.output)  # one input file onto the output file
    if not args.quiet and to_file and report.written:
        print(f"enhanced {args.inputs[0]} into {report.written[0]}")
    elif not args.quiet and not to_file:
        print(f"enhanced {len(report.written)} file(s) into {args.output}")
    if report.failed:
        print(f"gradw: error: {len(report.failed)} input(s) could not be enhanced:", file=sys.stderr)
        for path, reason in report.failed:
            print(f"  {path}: {reason}", file=sys.stderr)
        return 1
    return 0


def _min_gain(text: str) -> float:
    value = float(text)
    try:
        gain_floor(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``gradw enhance`` on an ``add_subparsers()`` object; sets ``func=cmd_enhance``."""
    parser = subparsers.add_parser(
        "enhance",
        help="enhance audio files with a trained enhancer (16 kHz WAV out)",
        description=(
            "Enhance audio files or directories (recursive) with a trained mask U-Net. Any format, "
            "rate and channel count is read; 16 kHz 16-bit WAV files are written to OUT, "
            "mirroring each input directory's tree. With one input file, an OUT ending in .wav or "
            ".flac is the output file itself. Inputs that cannot be read are listed at the "
            "end and the exit status is 1; an output that would overwrite an input is refused."
        ),
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files or directories")
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="output directory, or the output file (.wav, .flac) of a single input file",
    )
    parser.add_argument("--checkpoint", required=True, help="enhancer checkpoint (gradw train)")
    parser.add_argument(
        "--min-gain-db",
        type=_min_gain,
        default=None,
        metavar="DB",
        help="attenuation limit: floor of the power gain in dB (<= 0, e.g. -25); default none",
    )
    parser.add_argument(
        "--chunk-seconds",
        type=float,
        default=DEFAULT_CHUNK_SECONDS,
        metavar="S",
        help=f"process long recordings in chunks of S seconds (default {DEFAULT_CHUNK_SECONDS:g}; 0: whole)",
    )
    parser.add_argument(
        "--overlap-seconds",
        type=float,
        default=DEFAULT_OVERLAP_SECONDS,
        metavar="S",
        help=f"overlap between chunks (default {DEFAULT_OVERLAP_SECONDS:g})",
    )
    add_device_args(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    parser.set_defaults(func=cmd_enhance)
    return parser
