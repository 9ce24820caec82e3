"""An evaluation's results: one :class:`Row` per system x condition, written as ``results.json``
(config, command, timing, rows) and ``results.csv``, and read back for reports."""

from __future__ import annotations

import csv
import io
import json
import shlex
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gradw.config import EvaluationConfig
from gradw.fileio import atomic_write


@dataclass
class Row:
    """One system x condition result."""

    system: str
    condition: str
    category: str
    snr_db: float | None
    reverb: bool
    metrics: dict[str, float]


def write_results(
    out: Path,
    config: EvaluationConfig,
    rows: Iterable[Row],
    elapsed: float,
    checks: dict[str, Any] | None = None,
    calibration: dict[str, Any] | None = None,
) -> None:
    """``results.json`` (config, rows, timing, the checks made on the inputs, the calibration of
    each calibrated system with its default score threshold) and ``results.csv`` (a row per
    system x condition)."""
    rows = list(rows)
    payload = {
        "config": asdict(config),
        "command": "gradw " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "elapsed_seconds": round(elapsed, 1),
        "checks": checks or {},
        "calibration": calibration or {},
        "rows": [asdict(r) for r in rows],
    }
    atomic_write(out / "results.json", json.dumps(payload, indent=1))
    keys: list[str] = []
    for row in rows:
        keys.extend(k for k in row.metrics if k not in keys)
    table = io.StringIO(newline="")
    writer = csv.writer(table)
    writer.writerow(["system", "condition", "category", "snr_db", "reverb", *keys])
    for row in rows:
        writer.writerow(
            [
                row.system,
                row.condition,
                row.category,
                row.snr_db,
                row.reverb,
                *(row.metrics.get(k) for k in keys),
            ]
        )
    atomic_write(out / "results.csv", table.getvalue(), newline="")


def read_results(out: str | Path) -> tuple[dict[str, Any], list[Row]]:
    """Read ``results.json`` back: (config dict, rows)."""
    payload = json.loads((Path(out) / "results.json").read_text())
    return payload["config"], [Row(**r) for r in payload["rows"]]
