#!/usr/bin/env python3
"""Write the table of docs/calibration.md's "Reading the bar" from evaluation runs (never by hand).

Usage: python scripts/calibration_bar.py [LABEL=EVAL_DIR ...] [--doc docs/calibration.md]
(default: ``in-domain=exp/demo/eval out-of-domain=exp/demo/eval-ood``, what ``make demo`` writes).
For every calibrated system of each run: the mean over its conditions of Cllr - min Cllr and of the
loss a perfect calibration would show there (:func:`gradw.evaluation.report.tables.row_loss_floor`),
then Cllr, min Cllr, loss and floor of the LLRs of every condition pooled (``results.json``,
``calibration[SYSTEM].test_pooled``). The table between ``<!-- calibration-bar:begin -->`` and
``<!-- calibration-bar:end -->`` is replaced.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from gradw.evaluation.report.tables import format_table, row_loss_floor

BEGIN, END = "<!-- calibration-bar:begin -->", "<!-- calibration-bar:end -->"
HEADER = ["system", "test", "per condition: mean loss", "mean floor"]
HEADER += ["pooled: Cllr", "min Cllr", "loss", "floor"]


def rows_of(label: str, run: Path) -> list[list[str]]:
    """One table row per calibrated system of the evaluation in ``run``."""
    payload = json.loads((run / "results.json").read_text())  # what gradw.evaluation.results writes
    pooled = payload.get("calibration", {})
    by_system: dict[str, list[dict[str, float]]] = {}
    for row in payload["rows"]:
        if row["system"] in pooled and "cllr" in row["metrics"]:
            by_system.setdefault(row["system"], []).append(row["metrics"])
    body = []
    for system, metrics in by_system.items():
        loss = np.mean([m["cllr"] - m["min_cllr"] for m in metrics])
        floor = np.mean([row_loss_floor(m) for m in metrics])
        q = pooled[system]["test_pooled"]
        cells = [loss, floor, q["cllr"], q["min_cllr"], q["loss"], q["floor"]]
        body.append([system, label, *(f"{v:.3f}" for v in cells)])
    return body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "runs", nargs="*", default=["in-domain=exp/demo/eval", "out-of-domain=exp/demo/eval-ood"]
    )
    parser.add_argument("--doc", type=Path, default=Path("docs/calibration.md"))
    args = parser.parse_args()
    body = [r for spec in args.runs for r in rows_of(*_split(spec))]
    text = args.doc.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    args.doc.write_text(text[:start] + "\n" + format_table(HEADER, body).rstrip("\n") + "\n" + text[end:])
    print(f"updated {args.doc}")


def _split(spec: str) -> tuple[str, Path]:
    label, _, run = spec.partition("=")
    return label, Path(run)


if __name__ == "__main__":
    main()
