#!/usr/bin/env python3
"""Write the results section of README.md from the demo's evaluation runs (never typed by hand).

Usage: python scripts/readme_results.py [EVAL_DIR] [--ood EVAL_OOD_DIR] [--readme README.md]
EVAL_DIR defaults to exp/demo/eval, the in-domain test (what `make demo` writes); EVAL_OOD_DIR,
the out-of-domain test, to EVAL_DIR's sibling ``eval-ood`` when that exists. Both are shown, each
under its own heading, with a table that sets their EERs side by side. The section between the
markers ``<!-- results:begin -->`` and ``<!-- results:end -->`` is replaced.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gradw.evaluation.report.document import threshold_sentence
from gradw.evaluation.report.tables import (
    BASELINE,
    format_diff_table,
    format_metric_table,
    format_summary_table,
    format_table,
    mean_eer_at_low_snr,
    order_systems,
)
from gradw.evaluation.results import read_results

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def per_category(rows: list) -> list[str]:
    """EER and EER-change tables, one pair per noise category (clean as the first column)."""
    lines: list[str] = []
    categories = [c for c in dict.fromkeys(r.category for r in rows) if c != "clean"]
    for category in categories:
        subset = [r for r in rows if r.category in ("clean", category)]
        lines += [
            f"**{category}**: EER (%) per SNR",
            "",
            format_metric_table(subset, "eer").rstrip(),
            "",
            f"**{category}**: EER change against `noisy` (points, paired 95 % interval, ✓: excludes 0)",
            "",
            format_diff_table(subset).rstrip(),
            "",
        ]
    return lines


def calibration(meta: dict, rows: list) -> list[str]:
    """Each calibrated system's default threshold (what it was fitted on) and how well its LLRs
    hold on the test conditions: mean Cllr against mean min Cllr."""
    lines: list[str] = []
    for system, record in meta.get("calibration", {}).items():
        mine = [r for r in rows if r.system == system and "cllr" in r.metrics]
        if not mine:
            continue
        cllr = sum(r.metrics["cllr"] for r in mine) / len(mine)
        low = sum(r.metrics["min_cllr"] for r in mine) / len(mine)
        worst = max(mine, key=lambda r: r.metrics["cllr"] - r.metrics["min_cllr"])
        lines += [
            threshold_sentence(system, record)
            + f" On the {len(mine)} test conditions its LLRs give a mean Cllr of {cllr:.3f} bits against a "
            f"mean min Cllr of {low:.3f} (the most miscalibrated condition: {worst.condition}, "
            f"{worst.metrics['cllr']:.3f} against {worst.metrics['min_cllr']:.3f}).{pooled_clause(record)}",
            "",
        ]
    return lines


def pooled_clause(record: dict) -> str:
    """The calibration judged on every condition's trials pooled (empty for a run without it)."""
    pooled = record.get("test_pooled")
    if not pooled:
        return ""
    return (
        f" Pooled over every condition ({pooled['n_trials']:,} trials) its LLRs give a Cllr of "
        f"{pooled['cllr']:.3f} bits against a min Cllr of {pooled['min_cllr']:.3f}: "
        f"{pooled['loss']:.3f} bits lost to calibration (a perfect one would show {pooled['floor']:.3f} "
        "on as many trials)."
    )


def only_out_of_domain(in_rows: list, ood_rows: list) -> list[str]:
    """A sentence naming the systems that only the out-of-domain run evaluated (empty if none)."""
    seen = {r.system for r in in_rows}
    only = [s for s in order_systems(ood_rows) if s not in seen]
    if not only:
        return []
    names = ", ".join(f"`{s}`" for s in only)
    return [
        f"{names} ran on the out-of-domain test only: trained on none of this corpus, they find the "
        "in-domain pool no more familiar than the other (`gradw demo peers_in_domain=true` runs them "
        "there too).",
        "",
    ]


def run_lines(eval_dir: Path) -> tuple[list[str], list]:
    """The lines that describe one run (its command, the summary, calibration, the tables per
    category) and its rows."""
    config, rows = read_results(eval_dir)
    meta = json.loads((eval_dir / "results.json").read_text())
    n_trials = rows[0].metrics.get("n_trials") if rows else None
    lines = [
        f"From the run of `{meta.get('command', 'gradw evaluate')}` ({n_trials} trials per condition, both "
        f"sides corrupted, E = {config.get('scorer')}; this run of the evaluation took "
        f"{meta.get('elapsed_seconds', 0) / 60:.1f} min (embeddings already in its cache, if any, reused); "
        "benchmarks/README.md gives the time from scratch). "
        "EER in %, 95 % bootstrap interval over speakers in brackets; the best of each column in bold.",
        "",
        "Mean EER over the conditions at or below 0 dB:",
        "",
        format_summary_table(rows).rstrip(),
        "",
        *calibration(meta, rows),
        *per_category(rows),
    ]
    return lines, rows


def _conditions(rows: list) -> set[str]:
    return {r.condition for r in rows if r.snr_db is not None and r.snr_db <= 0.0 and not r.reverb}


def comparison(in_domain: list, out_of_domain: list) -> list[str]:
    """Each system's mean EER over the noisy conditions (at or below 0 dB) that both tests ran,
    in-domain beside out-of-domain, and its change against ``noisy`` in each."""
    shared = _conditions(in_domain) & _conditions(out_of_domain)
    if not shared:
        return []
    means = [
        mean_eer_at_low_snr([r for r in rows if r.condition in shared]) for rows in (in_domain, out_of_domain)
    ]
    systems = [s for s in order_systems(in_domain) if s in means[0] and s in means[1]]
    header = ["system", "in-domain", "out-of-domain"]
    refs = [m.get(BASELINE) for m in means]
    if all(r for r in refs):
        header += ["in-domain: rel. vs noisy (%)", "out-of-domain: rel. vs noisy (%)"]
    body = []
    for system in systems:
        line = [system, f"{means[0][system]:.2f}", f"{means[1][system]:.2f}"]
        if len(header) > 3:
            line += [
                "–" if system == BASELINE else f"{100.0 * (m[system] - ref) / ref:+.1f}"
                for m, ref in zip(means, refs, strict=True)
            ]
        body.append(line)
    names = ", ".join(sorted(shared, key=lambda c: (c.split("_")[0], -float(c.split("_")[1]))))
    return [
        f"Mean EER over the conditions both tests ran ({names}): what each system keeps of its gain "
        "on noise, music and voices it never met:",
        "",
        format_table(header, body).rstrip(),
        "",
    ]


def section(eval_dir: Path, ood_dir: Path | None = None) -> str:
    script = f"python scripts/readme_results.py {eval_dir}" + (f" --ood {ood_dir}" if ood_dir else "")
    lines = [BEGIN, "", f"Generated by `{script}`.", ""]
    in_lines, in_rows = run_lines(eval_dir)
    if ood_dir is None:
        lines += in_lines
    else:
        ood_lines, ood_rows = run_lines(ood_dir)
        lines += [
            "### In-domain test (`augment/test`)",
            "",
            "Noise, music, babble from the packages, generators and voices the training and validation "
            "pools draw on (other recordings, songs, variants and seeds).",
            "",
            *in_lines,
            "### Out-of-domain test (`augment/test-ood`)",
            "",
            "Noise, music and babble from packages, generators and talkers that no training or "
            "validation item comes from (the corpus's `manifest.json`, key `ood`, lists them).",
            "",
            *only_out_of_domain(in_rows, ood_rows),
            *comparison(in_rows, ood_rows),
            *ood_lines,
        ]
    lines.append(END)
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("eval_dir", nargs="?", default="exp/demo/eval")
    parser.add_argument("--ood", default=None, help="the out-of-domain run (default: EVAL_DIR/../eval-ood)")
    parser.add_argument("--readme", default="README.md")
    args = parser.parse_args()
    eval_dir = Path(args.eval_dir)
    ood = Path(args.ood) if args.ood else eval_dir.parent / "eval-ood"
    ood_dir = ood if (ood / "results.json").is_file() else None
    readme = Path(args.readme)
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        print(f"{readme}: no {BEGIN} ... {END} markers", file=sys.stderr)
        return 2
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(head + section(eval_dir, ood_dir) + tail)
    print(f"updated {readme} from {eval_dir}" + (f" and {ood_dir}" if ood_dir else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
