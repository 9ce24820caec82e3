"""``gradw calibrate`` and ``gradw fuse``: fit what is fitted on a selected checkpoint after its
training (the score-to-LLR map on the validation speakers; the quality-aware fusion weight on the
training speakers, judged on the validation speakers) and store it with the checkpoint, as a copy
or in place. Both read the config saved in the checkpoint (or a preset's) with overrides."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gradw.cli.common import add_device_args

HELP = "fit a checkpoint's calibration (scores to LLRs) on the validation speakers and store it"
DESCRIPTION = (
    "Fit the calibration of a checkpoint of gradw train (G, scored by the E it was trained "
    "against) or gradw adapt on the validation speakers x the validation noise over the grid of "
    "the config's calibration section (categories, SNRs, quality measures), and store it in the "
    "checkpoint: a copy written to -o, or the checkpoint itself with --in-place (atomically; only "
    "its calibration entry changes). The config is the one saved in the checkpoint, or the "
    "--config preset's train (adapt) section; KEY=VALUE overrides apply to it, e.g. "
    "calibration.quality=[] for a map of the score alone, data.val=DIR to move the validation data."
)


FUSE_HELP = "fit a checkpoint's quality-aware fusion weight (for @qfuse) and store it"
FUSE_DESCRIPTION = (
    "Fit the per-utterance weight w = sigmoid(a + b * SNR estimate) between the system's embedding "
    "and the unenhanced one (E without G's mask; an adapted student's original network) on the "
    "training speakers x the training noise over the grid of the config's fusion section, by the "
    "mean EER over its conditions; judge it on the validation speakers x the validation noise "
    "(the system alone, the unenhanced embedding alone, @fuse and @qfuse are printed); store it in "
    "the checkpoint (a copy written to -o, or the checkpoint itself with --in-place). Evaluate it "
    "with gradw evaluate --systems NAME:CHECKPOINT@qfuse. The config is the one saved in the "
    "checkpoint, or the --config preset's train (adapt) section; KEY=VALUE overrides apply to it, "
    "e.g. fusion.snrs=[0,-5,-10] or data.train=DIR."
)


def _checkpoint_config(args: argparse.Namespace) -> tuple[Path, Path, Any]:
    """The checkpoint, the output and the config of ``gradw calibrate`` and ``gradw fuse``."""
    import torch

    from gradw.checkpoint import load_checkpoint
    from gradw.config import ConfigError, apply_overrides, from_dict, load_config
    from gradw.training.calibrate import KINDS

    if args.threads:
        torch.set_num_threads(args.threads)
    checkpoint = Path(args.checkpoint)
    output = checkpoint if args.in_place else Path(args.output)
    if not args.in_place and output.resolve() == checkpoint.resolve():
        raise ConfigError(
            f"the output {output} is the checkpoint itself: pass --in-place to update it, "
            "or choose another -o"
        )
    state = load_checkpoint(checkpoint)
    kind = state["kind"]
    if kind not in KINDS:
        verb = getattr(args, "command", "calibrate")
        raise ConfigError(
            f"{checkpoint} holds a {kind} model: {verb} a checkpoint of gradw train or gradw adapt"
        )
    section = "train" if kind == "enhancer" else "adapt"
    if args.config is not None:
        config = load_config(KINDS[kind], args.config, args.overrides, section=section)
    else:
        config = from_dict(KINDS[kind], apply_overrides(state["config"], args.overrides), f"{section}.")
    return checkpoint, output, config


def cmd_fuse(args: argparse.Namespace) -> int:
    """``gradw fuse``: 0 when the fusion weight is stored, 2 on an error (one line)."""
    from gradw.training.fuse import fuse_checkpoint

    checkpoint, output, config = _checkpoint_config(args)
    weights = fuse_checkpoint(checkpoint, config, output, device=args.device, quiet=args.quiet)
    print(f"fusion: {weights.describe()}")
    print(f"fitted on {weights.extra['fitted_on']}")
    print(f"judged on {weights.extra['judged_on']}")
    for split in ("training", "validation"):
        figures = weights.extra[split]
        print(
            f"mean EER on {split}: system {figures['system']:.2f} %, unenhanced {figures['base']:.2f} %, "
            f"@fuse {figures['fuse']:.2f} %, @qfuse {figures['qfuse']:.2f} %"
        )
    print(f"stored in: {output}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    """``gradw calibrate``: 0 when the calibration is stored, 2 on an error (one line)."""
    from gradw.evaluation.calibration import threshold_record
    from gradw.training.calibrate import calibrate_checkpoint

    checkpoint, output, config = _checkpoint_config(args)
    calibration = calibrate_checkpoint(checkpoint, config, output, device=args.device, quiet=args.quiet)
    print(f"calibration: {calibration.fitted_on}")
    record = threshold_record(calibration)
    kind = "score" if "normalised_by" not in record else "normalised score"
    if "normalised_by" in record:
        print(f"scores normalised by {record['normalised_by']} before the map")
    if record["threshold"] is not None:
        print(f"default decision: accept when {kind} >= {record['threshold']:.6f} (LLR >= 0)")
    else:
        moves = ", ".join(
            f"{'none' if t is None else f'{t:.4f}'} at {snr} dB"
            for snr, t in record["thresholds_by_snr"].items()
        )
        print(
            f"default decision: accept when LLR >= 0; {kind} needed, both sides at one SNR estimate: {moves}"
        )
    print(f"stored in: {output}")
    return 0


def register(sub: Any) -> argparse.ArgumentParser:
    """Register ``gradw calibrate`` (``func=cmd_calibrate``) and ``gradw fuse`` (``func=cmd_fuse``);
    returns the first."""
    parser = _register(sub, "calibrate", HELP, DESCRIPTION, cmd_calibrate)
    _register(sub, "fuse", FUSE_HELP, FUSE_DESCRIPTION, cmd_fuse)
    return parser


def _register(sub: Any, name: str, help_text: str, description: str, func: Any) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=description)
    parser.add_argument(
        "--checkpoint", required=True, metavar="PATH", help="a best.pt of gradw train or adapt"
    )
    parser.add_argument(
        "--config",
        default=None,
        metavar="PRESET",
        help="preset name or YAML file whose train (adapt) section to use "
        "(default: the config saved in the checkpoint)",
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("-o", "--output", default=None, metavar="PATH", help="write the updated copy here")
    where.add_argument("--in-place", action="store_true", help="update the checkpoint itself (atomically)")
    add_device_args(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. calibration.snrs=[0,-5]"
    )
    parser.set_defaults(func=func)
    return parser
