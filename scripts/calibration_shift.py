#!/usr/bin/env python3
"""Where a calibration fitted on validation speakers loses on the test speakers: per condition,
the score distributions of both splits and what per-condition affine maps would reach.

Reads the score files of two runs of ``gradw evaluate`` of one system, one on the validation
split (the speakers and noise the calibration is fitted on) and one on the test split, and prints
a Markdown table, per condition present in both:

* the mean non-target and target scores on each split;
* the Cllr loss on test (Cllr - min Cllr, bits) of an affine map fitted on that condition's
  validation trials alone: the best a map can do that knows the condition exactly but sees only
  validation speakers;
* the same for a map fitted on the test trials themselves (a bound, not a calibration: it sees
  the answers): what an affine map loses to min Cllr's monotonic one.

Usage:
    python scripts/calibration_shift.py --val exp/cal/eval-val --test exp/cal/eval --system quality
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from gradw.evaluation.calibration import cllr, fit_calibration, min_cllr
from gradw.evaluation.scoring import read_scores


def _scores(run: Path, system: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    files = sorted((run / "scores" / system).glob("*.txt"))
    return {f.stem: read_scores(f)[2:] for f in files}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--val", required=True, type=Path, help="gradw evaluate output on the validation split"
    )
    parser.add_argument("--test", required=True, type=Path, help="gradw evaluate output on the test split")
    parser.add_argument("--system", required=True, help="the system whose score files to read")
    args = parser.parse_args()
    val, test = _scores(args.val, args.system), _scores(args.test, args.system)
    order = [c for c in test if c in val]
    print(
        "| condition | non-target mean, val / test | target mean, val / test | "
        "loss of a map fitted on val (bits) | loss of a map fitted on test (bits) |"
    )
    print("|---|---:|---:|---:|---:|")
    losses = []
    for condition in order:
        (sv, lv), (st, lt) = val[condition], test[condition]
        low = min_cllr(st, lt)
        on_val = cllr(fit_calibration(sv, lv).llr(st), lt) - low
        on_test = cllr(fit_calibration(st, lt).llr(st), lt) - low
        losses.append((on_val, on_test))
        print(
            f"| {condition} | {sv[~lv].mean():.3f} / {st[~lt].mean():.3f} | "
            f"{sv[lv].mean():.3f} / {st[lt].mean():.3f} | {on_val:.3f} | {on_test:.3f} |"
        )
    mean = np.mean(losses, axis=0)
    print(f"| mean | | | {mean[0]:.3f} | {mean[1]:.3f} |")


if __name__ == "__main__":
    main()
