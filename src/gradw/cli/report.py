"""``gradw report``: rewrite the report (tables, plots) of a finished evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gradw.cli.common import FORMATS, dpi_value
from gradw.evaluation.report.document import write_report
from gradw.evaluation.report.tables import summary_table

# ---------------------------------------------------------------------------------------------
# the command


def cmd_report(args: Any) -> int:
    """Run ``gradw report`` (see :func:`add_report_parser`)."""
    from gradw.data.lists import DataError
    from gradw.evaluation.results import read_results

    out = Path(args.out)
    if not (out / "results.json").is_file():
        raise DataError(f"{out}: no results.json (run gradw evaluate first)")
    try:
        config, rows = read_results(out)
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{out / 'results.json'}: unreadable results ({type(exc).__name__}: {exc})") from None
    det_snrs = None
    if args.det_snrs is not None:
        try:
            det_snrs = [float(s) for s in args.det_snrs.split(",") if s.strip()]
        except ValueError:
            raise DataError(f"--det-snrs: expected comma-separated numbers, got {args.det_snrs!r}") from None
    figures = {"figure_format": args.figure_format, "dpi": args.dpi}
    path = write_report(out, config, rows, det_snrs=det_snrs, max_snr=args.max_snr, **figures)
    print(summary_table(rows), end="")
    print(f"report: {path}")
    return 0


def register(subparsers: Any) -> Any:
    """Register ``gradw report OUT`` (rewrite the report of an evaluation from its
    ``results.json`` and score files) on an ``argparse`` subparsers object; returns the parser."""
    parser = subparsers.add_parser(
        "report",
        help="rewrite OUT/report.md and OUT/plots/ from an evaluation's results",
        description="Rewrite the Markdown report and plots of `gradw evaluate OUT` from OUT/results.json "
        "and OUT/scores/, and print the EER table.",
    )
    parser.add_argument("out", help="the evaluation directory")
    parser.add_argument(
        "--det-snrs", default=None, help="SNRs of the DET plots, e.g. '0,-10' (default: 0 and the lowest)"
    )
    parser.add_argument(
        "--max-snr", type=float, default=0.0, help="the summary averages conditions at SNR <= this (dB)"
    )
    parser.add_argument("--figure-format", default="png", choices=FORMATS, help="the plots' format")
    parser.add_argument("--dpi", type=dpi_value, default=110, help="resolution of PNG plots (50-1200)")
    parser.set_defaults(func=cmd_report)
    return parser
