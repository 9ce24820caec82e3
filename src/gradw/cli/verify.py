"""``gradw verify``: cosine scores (and decisions) of pairs of audio files, optionally through a
trained G or with an adapted E."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from gradw.cli.common import add_device_args, window_value

HELP = "score pairs of audio files (same speaker?), optionally through a trained G"
DESCRIPTION = (
    "Score pairs of recordings: ENROLL TEST [ENROLL TEST ...] on the command line, or a trial list "
    "(--trials) with one pair a line: 'enroll test', '1|0 enroll test' or 'enroll test "
    "target|nontarget' (a label is reported in the last column, never used). Each file is read at "
    "its own rate and downmixed (any format libsndfile reads). One line per pair on stdout: ENROLL "
    "TEST SCORE, then the calibrated LLR when the checkpoint carries a calibration (a best.pt "
    "selected on validation; a quality-aware one also measures each file, e.g. its estimated SNR), "
    "then accept|reject when a decision can be made (by default: that LLR >= 0, a fixed score "
    "threshold unless the calibration is quality-aware), then the label when the list has them."
)


def _pairs(args: argparse.Namespace) -> list[tuple[Path, Path, bool | None]]:
    from gradw.data.lists import DataError
    from gradw.data.trials import read_pairs

    if args.trials and args.files:
        raise DataError("give pairs of files or --trials, not both")
    if args.trials:
        root = Path(args.root) if args.root else Path()
        return [(root / e, root / t, label) for e, t, label in read_pairs(args.trials)]
    if args.root:
        raise DataError("--root applies to the paths of a --trials list")
    if not args.files or len(args.files) % 2:
        raise DataError(
            "expected pairs of files (ENROLL TEST [ENROLL TEST ...]) or --trials, "
            f"got {len(args.files)} path(s)"
        )
    files = [Path(f) for f in args.files]
    return [(files[i], files[i + 1], None) for i in range(0, len(files), 2)]


def _threshold(verifier: Any, text: str | None) -> float | None:
    """--threshold: a number, or a score file of an evaluation (its EER threshold)."""
    from gradw.data.lists import DataError

    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        if not Path(text).is_file():
            raise DataError(f"--threshold: {text!r} is neither a number nor a score file") from None
        return verifier.load_threshold(text)
    if not math.isfinite(value):
        raise DataError(f"--threshold must be a finite number, got {text!r}")
    return value


def cmd_verify(args: argparse.Namespace) -> int:
    """``gradw verify``: 0 when every pair was scored, 2 on an error (one line, nothing printed
    for any pair: every file is checked before the first score)."""
    import torch

    from gradw.evaluation.verifier import SpeakerVerifier

    if args.threads:
        torch.set_num_threads(args.threads)
    pairs = _pairs(args)
    try:
        verifier = SpeakerVerifier(
            args.speaker,
            enhancer=args.checkpoint,
            checkpoint=args.speaker_checkpoint,
            device=args.device,
            **({"window_seconds": args.window_seconds} if "window_seconds" in args else {}),
        )
        threshold = _threshold(verifier, args.threshold)
        if threshold is None:
            threshold = verifier.threshold  # the calibrated default, when the checkpoint has one
    except ValueError as exc:  # a front-end mismatch, a bad score file...: one line
        print(f"gradw: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    calibration = verifier.calibration
    note = None  # printed once the first pair is scored, so that an unreadable file is the only line
    per_pair = calibration is not None and (calibration.measures or calibration.score_norm is not None)
    if not args.quiet and calibration is not None and threshold is None and per_pair:
        uses = (
            [f"the quality measures {', '.join(calibration.measures)} of each file"]
            if calibration.measures
            else []
        )
        uses += (
            [f"scores normalised by {calibration.score_norm.describe()}"] if calibration.score_norm else []
        )
        note = (
            f"decision: accept when the calibrated LLR >= 0; the LLR also uses {' and '.join(uses)}, "
            f"so the score it takes varies by pair (fitted on {calibration.fitted_on})"
        )
    elif threshold is not None and not args.quiet:
        source = (
            f" (calibrated: LLR >= 0; fitted on {calibration.fitted_on})"
            if calibration is not None and args.threshold is None
            else ""
        )
        note = f"threshold: {threshold:.6f}, accept when score >= threshold{source}"
    labelled = any(label is not None for _e, _t, label in pairs)
    scored = verifier.score_pairs([(e, t) for e, t, _label in pairs], threshold)
    for (enroll, test, label), (score, llr, decision) in zip(pairs, scored, strict=True):
        if note is not None:
            print(note, file=sys.stderr)
            note = None
        fields = [str(enroll), str(test), f"{score:.6f}"]
        if llr is not None:
            fields.append(f"{llr:.4f}")
        if decision is not None:
            fields.append("accept" if decision else "reject")
        if labelled:
            fields.append("-" if label is None else "target" if label else "nontarget")
        print(" ".join(fields), flush=True)
    return 0


def register(sub: Any) -> argparse.ArgumentParser:
    """Register ``gradw verify`` on an ``add_subparsers()`` object; sets ``func=cmd_verify``."""
    parser = sub.add_parser("verify", help=HELP, description=DESCRIPTION)
    parser.add_argument("files", nargs="*", metavar="AUDIO", help="pairs of audio files: ENROLL TEST ...")
    parser.add_argument("--trials", default=None, metavar="FILE", help="a list of pairs, one a line")
    parser.add_argument(
        "--root", default=None, metavar="DIR", help="the folder --trials paths are relative to (default: .)"
    )
    parser.add_argument(
        "--checkpoint",
        default=None,
        metavar="PATH",
        help="an enhancer checkpoint (gradw train: G's mask is applied on E's mel grid) or an adapted "
        "one (gradw adapt: its student replaces E)",
    )
    parser.add_argument(
        "--speaker",
        default=None,
        metavar="NAME",
        help="speaker network E: campplus, resnet34, resnet-tiny (default: the one the checkpoint "
        "records, else campplus)",
    )
    parser.add_argument(
        "--speaker-checkpoint",
        default=None,
        metavar="PATH",
        help="E's weights, required by a ResNet ('random' for random weights, on purpose)",
    )
    parser.add_argument(
        "--threshold",
        default=None,
        metavar="T",
        help="accept when score >= T; T is a number or a score file of gradw evaluate (its EER threshold)",
    )
    parser.add_argument(
        "--window-seconds",
        type=window_value,
        default=argparse.SUPPRESS,
        metavar="S",
        help="embed a longer recording as the mean of its windows' embeddings, read window by window "
        "(default 30, as gradw evaluate; 'none': every recording whole)",
    )
    add_device_args(parser)
    parser.add_argument("--quiet", action="store_true", help="print the scores only")
    parser.set_defaults(func=cmd_verify)
    return parser
