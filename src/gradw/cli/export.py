"""``gradw export onnx``: G and/or E as ONNX models, checked against the eager models."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gradw.export import DEFAULT_OPSET, EXPORT_TARGETS, ExportError, export_onnx

# ---------------------------------------------------------------------------------------------
# command line


def cmd_export(args: argparse.Namespace) -> int:
    """``gradw export onnx``: 0 on success, 2 when the export or its check fails."""
    try:
        report = export_onnx(
            args.checkpoint,
            args.output,
            what=args.what,
            speaker_mask=args.speaker_mask,
            opset=args.opset,
            check=not args.no_check,
        )
    except (ExportError, ValueError) as exc:  # ValueError covers CheckpointError
        print(f"gradw: error: {exc}", file=sys.stderr)
        return 2
    for path, (name, diff) in zip(report.files, report.max_diff.items(), strict=True):
        note = "unchecked" if diff is None else f"onnxruntime vs PyTorch max |diff| {diff:.2e}"
        print(f"{name}: {path} ({note})")
    return 0


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``gradw export onnx`` on an ``add_subparsers()`` object; sets ``func=cmd_export``."""
    parser = subparsers.add_parser("export", help="export trained models (ONNX)")
    formats = parser.add_subparsers(dest="export_format", required=True)
    onnx_parser = formats.add_parser(
        "onnx",
        help="export the enhancer and the speaker network to ONNX",
        description=(
            "Export the enhancer (features (B, F, T) -> mask (B, F, T)) to OUTPUT and the speaker "
            "network it was trained against (features [, mask] -> embedding) to OUTPUT's stem + "
            "'.speaker.onnx' (to OUTPUT itself with --what speaker), with dynamic batch and time "
            "axes; each file is checked with onnx.checker and against PyTorch in onnxruntime "
            "before it is written."
        ),
    )
    onnx_parser.add_argument("--checkpoint", required=True, help="enhancer checkpoint (gradw train)")
    onnx_parser.add_argument("-o", "--output", required=True, help="enhancer file, e.g. model.onnx")
    onnx_parser.add_argument(
        "--what", choices=EXPORT_TARGETS, default="both", help="which model(s) to export (default both)"
    )
    onnx_parser.add_argument(
        "--speaker-mask", action="store_true", help="give the speaker model a second input: the mask"
    )
    onnx_parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset ({DEFAULT_OPSET})")
    onnx_parser.add_argument("--no-check", action="store_true", help="skip the checker and the parity check")
    onnx_parser.set_defaults(func=cmd_export)
    return parser
