#!/usr/bin/env python3
"""Write docs/levers.md: the levers beyond the paper, each measured with seeds, against the
success bar of the out-of-domain test (generated from evaluation runs, never typed by hand).

Usage::

    python scripts/levers.py EVAL_DIR [EVAL_DIR ...] [--val VAL_DIR] [--runs RUN ...] [--out FILE]

Each EVAL_DIR is a ``gradw evaluate --out`` folder; the first is the test the bar is judged on
(the out-of-domain one), the others are reported beside it. A system named ``LEVER-sK`` is seed
K of the lever ``LEVER``; any other name (``noisy``, a peer) is a system without seeds. For every
lever the report gives each seed's mean EER over the noisy conditions at or below 0 dB, the mean
over seeds and its change against ``noisy``, the four criteria of the bar on the mean over seeds
(all conditions at or below 0 dB at least 30 % below noisy, noise and music at least 25 % below,
no condition significantly worse, clean within 0.5 points), and per condition the paired
difference against ``noisy`` with its 95 % interval over test speakers and seeds
(:func:`gradw.evaluation.bootstrap.paired_seed_samples`). Two levers with the same seeds (Grad-W
and Equal-W) are compared seed by seed. ``--val`` names the evaluation on the validation speakers
and noise, where levers are ranked and one is chosen (the test folders choose nothing); ``--runs``
adds each training run's validation EER by step (its ``metrics.jsonl``).
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gradw.data.lists import read_map
from gradw.evaluation.bootstrap import paired_seed_samples
from gradw.evaluation.report.tables import BASELINE, format_table
from gradw.evaluation.results import Row, read_results
from gradw.evaluation.scoring import read_scores

REPRODUCE = [
    "The runs (one thread each; `K` the seed; the seed-0 G's are the `exp/demo/gradw` and "
    "`exp/demo/equalw` that `make demo` trained while its G took the standardised weights, and seed 0 "
    "of the student ran into `exp/demo/adapted-s0`; every student but the relation runs was trained "
    "without the relational term, the demo preset's default until docs/levers-student.md chose it, "
    "hence `loss.relation_weight=0.0`; the G's were validated every 200 steps, and every G but the "
    "`literal` and `equalw` ones took the standardised weights, the demo preset's until "
    "docs/paper-question.md ranked the literal ones first: `$G` stands for `loss.scheme=gradw-norm "
    "validation.every=200`):",
    "",
    "```",
    "gradw train --config demo threads=1 seed=K out_dir=exp/levers/gradw-sK $G",
    "gradw train --config demo threads=1 seed=K out_dir=exp/levers/equalw-sK $G loss.scheme=equal",
    "gradw adapt --config demo threads=1 seed=K out_dir=exp/levers/adapted-sK loss.relation_weight=0.0",
    "gradw adapt --config demo threads=1 seed=K out_dir=exp/levers/gstudent-sK loss.relation_weight=0.0 \\",
    "    enhancer_checkpoint=G_K    # G then student: G_K = seed K's Grad-W G (best.pt), frozen",
    "gradw adapt --config demo threads=1 seed=K out_dir=exp/levers/joint-sK loss.relation_weight=0.0 \\",
    "    enhancer_checkpoint=G_K joint.enabled=true joint.conflict=project joint.loss.scheme=gradw-norm",
    "gradw adapt --config demo threads=1 seed=K out_dir=exp/levers/colour-sK loss.relation_weight=0.0 \\",
    "    data.noise_colour.prob=0.5",
    "gradw adapt --config demo threads=1 seed=K out_dir=exp/levers/relation-sK   # the demo student now",
    "gradw train --config demo threads=1 seed=K out_dir=exp/levers/literal-sK validation.every=200",
    "gradw fuse --checkpoint STUDENT_K -o exp/levers/qfuse/adapted-sK.pt   # the weight of @qfuse",
    "# scale: a run continued (copied, then --resume with more steps: after the warm-up the rate is",
    "# constant, so a longer run is the shorter one continued), G at twice the width, and the student",
    "# on the full synthvox preset's training split (gradw data build synthvox --preset full)",
    "gradw train --config demo threads=1 seed=K $G optim.steps=1400 out_dir=exp/scale/gradw-sK --resume",
    "gradw adapt --config demo threads=1 seed=K optim.steps=800 out_dir=exp/scale/relation-sK --resume",
    "gradw train --config demo threads=1 seed=K $G enhancer.base_width=16 out_dir=exp/scale/gradw-w16-sK",
    "gradw adapt --config demo threads=1 seed=K out_dir=exp/scale/relation-full-sK \\",
    "    data.train=data/synthvox-full/train data.augment=data/synthvox-full/augment/train",
    "```",
    "",
    "then `gradw evaluate` on the validation speakers with the validation noise (where the choice is "
    "made) and on the test speakers with the out-of-domain pool, as below, and this script.",
]
#: which validation split chose the levers (``--split-note`` replaces it)
SPLIT_NOTE = (
    "The levers were chosen on the validation split as it was before four recorded speakers joined "
    "it (docs/calibration.md): its six MBROLA voices and their 540 trials, kept as "
    "`data/synthvox-demo-v1val/val` (the lines of today's `val` lists that name those six speakers, "
    "and the trials of that evaluation's score files). The relation runs and joint-s1 selected their "
    "`best.pt` on the ten-speaker split and on that six-speaker one respectively; every other run on "
    "the six-speaker one."
)
SEEDED = re.compile(r"^(?P<lever>.+)-s(?P<seed>\d+)(?P<suffix>\+q?fuse)?$")
N_BOOT = 1000
#: the paper's question, seed by seed: (title, lever a, lever b); ``gradw`` is the standardised
#: weighting (``gradw-norm``, the demo's G until these comparisons ranked it last), ``literal`` the
#: paper's softmax of the raw difference (the demo's G since)
PAPER_QUESTIONS = (
    ("Grad-W against Equal-W", "equalw", "gradw"),
    ("literal Grad-W against Equal-W", "equalw", "literal"),
    ("literal Grad-W against standardised Grad-W", "gradw", "literal"),
)
BAR_ALL, BAR_NOISE_MUSIC, BAR_CLEAN = -30.0, -25.0, 0.5


def lever_of(system: str) -> tuple[str, int | None]:
    """``gradw-s1`` -> ``("gradw", 1)``, ``adapted-s0+fuse`` -> ``("adapted+fuse", 0)`` (``+qfuse``
    alike), ``noisy`` -> ``("noisy", None)``."""
    match = SEEDED.match(system)
    if match is None:
        return system, None
    return match["lever"] + (match["suffix"] or ""), int(match["seed"])


def levers(systems: Sequence[str]) -> dict[str, dict[int | None, str]]:
    """lever -> {seed: system name}, in the order the systems come."""
    out: dict[str, dict[int | None, str]] = {}
    for system in systems:
        lever, seed = lever_of(system)
        out.setdefault(lever, {})[seed] = system
    return out


class Evaluation:
    """One evaluation folder: its rows, and the trials' scores and speakers per system x condition."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        config, self.rows = read_results(folder)
        self.test = Path(config["test"])
        self.augment = config.get("augment")
        self.utt2spk = read_map(self.test / "utt2spk")
        self.systems = list(dict.fromkeys(r.system for r in self.rows))
        self.eer = {(r.system, r.condition): r.metrics["eer"] for r in self.rows}
        self.noisy_conditions = list(dict.fromkeys(r.condition for r in self.rows if self._low(r)))
        self.clean = [c for c in dict.fromkeys(r.condition for r in self.rows) if c == "clean"]
        self._cache: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, list[str], list[str]]] = {}
        # (A systems, B systems, condition) -> the paired seed difference and its resampled values
        self._diffs: dict[tuple[tuple[str, ...], tuple[str, ...], str], tuple[float, np.ndarray]] = {}

    @staticmethod
    def _low(row: Row) -> bool:
        return row.snr_db is not None and row.snr_db <= 0.0 and not row.reverb

    def category(self, condition: str) -> str:
        return next(r.category for r in self.rows if r.condition == condition)

    def scores(self, system: str, condition: str) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
        """(N,) scores, (N,) labels and the two sides' speakers of one score file."""
        key = (system, condition)
        if key not in self._cache:
            enroll, test, scores, labels = read_scores(self.folder / "scores" / system / f"{condition}.txt")
            speakers = [self.utt2spk[u] for u in enroll], [self.utt2spk[u] for u in test]
            self._cache[key] = (scores, labels, *speakers)
        return self._cache[key]

    def mean(self, system: str, conditions: Sequence[str]) -> float:
        return float(np.mean([self.eer[system, c] for c in conditions]))

    def seed_mean(self, systems: Sequence[str], conditions: Sequence[str]) -> float:
        """The mean over seeds (``systems``) of each one's mean EER over ``conditions``."""
        return float(np.mean([self.mean(s, conditions) for s in systems]))

    def _condition_diff(
        self, systems_a: Sequence[str], systems_b: Sequence[str], condition: str
    ) -> tuple[float, np.ndarray]:
        """One condition's paired seed difference and its resampled values, computed once."""
        key = (tuple(systems_a), tuple(systems_b), condition)
        if key not in self._diffs:
            _, labels, enroll, test = self.scores(systems_a[0], condition)
            a = [self.scores(s, condition)[0] for s in systems_a]
            b = [self.scores(s, condition)[0] for s in systems_b]
            self._diffs[key] = paired_seed_samples(a, b, labels, enroll, test, "eer", N_BOOT, seed=0)
        return self._diffs[key]

    def diff(
        self, systems_a: Sequence[str], systems_b: Sequence[str], conditions: Sequence[str]
    ) -> tuple[float, float, float]:
        """Mean over ``conditions`` of the paired seed difference in EER (points) of B against A,
        with its 95 % interval (the same speaker and seed draws in every condition)."""
        diffs, samples = zip(
            *(self._condition_diff(systems_a, systems_b, c) for c in conditions), strict=True
        )
        low, high = np.quantile(np.mean(samples, axis=0), [0.025, 0.975])
        return 100 * float(np.mean(diffs)), 100 * low, 100 * high


def _seeds(group: dict[int | None, str]) -> list[int | None]:
    """A lever's seeds in order (None, a system without seeds, first)."""
    return sorted(group, key=lambda k: -1 if k is None else k)


def _seeded(group: dict[int | None, str]) -> list[str]:
    return [group[k] for k in _seeds(group)]


def _cell(diff: float, low: float, high: float) -> str:
    mark = " ✓" if high < 0 or low > 0 else ""
    return f"{diff:+.2f} [{low:+.2f}, {high:+.2f}]{mark}"


def summary_lines(ev: Evaluation) -> list[str]:
    """Per lever: seeds, mean EER per seed and over seeds, change against noisy, the bar."""
    groups = levers(ev.systems)
    low = ev.noisy_conditions
    nm = [c for c in low if ev.category(c) in ("noise", "music")]
    noisy_all, noisy_nm = ev.mean(BASELINE, low), ev.mean(BASELINE, nm) if nm else float("nan")
    header = [
        "lever",
        "seeds",
        "all <= 0 dB per seed",
        "all <= 0 dB",
        "rel. (%)",
        "noise+music <= 0 dB",
        "rel. (%)",
        "clean",
        "worse than noisy (paired)",
        "bar met",
    ]
    body = []
    for lever, group in groups.items():
        systems = _seeded(group)
        per_seed = [ev.mean(s, low) for s in systems]
        mean_all = float(np.mean(per_seed))
        mean_nm = ev.seed_mean(systems, nm) if nm else float("nan")
        rel_all, rel_nm = 100 * (mean_all / noisy_all - 1), 100 * (mean_nm / noisy_nm - 1)
        clean = float(np.mean([ev.eer[s, "clean"] for s in systems])) if ev.clean else float("nan")
        clean_diff = clean - ev.eer[BASELINE, "clean"] if ev.clean else float("nan")
        if lever == BASELINE:
            worse: list[str] = []
        else:
            worse = [c for c in [*ev.clean, *low] if ev.diff([BASELINE], systems, [c])[1] > 0]
        met = (
            lever != BASELINE
            and rel_all <= BAR_ALL
            and rel_nm <= BAR_NOISE_MUSIC
            and not worse
            and clean_diff <= BAR_CLEAN
        )
        seeds = ", ".join("–" if k is None else str(k) for k in _seeds(group))
        body.append(
            [
                lever,
                seeds,
                ", ".join(f"{v:.2f}" for v in per_seed),
                f"{mean_all:.2f}",
                "–" if lever == BASELINE else f"{rel_all:+.1f}",
                f"{mean_nm:.2f}",
                "–" if lever == BASELINE else f"{rel_nm:+.1f}",
                f"{clean:.2f}",
                "–" if lever == BASELINE else (", ".join(worse) or "none"),
                "–" if lever == BASELINE else ("yes" if met else "no"),
            ]
        )
    return [format_table(header, body).rstrip()]


def diff_lines(ev: Evaluation) -> list[str]:
    """Per lever and condition: the paired difference against noisy over speakers and seeds."""
    groups = {k: v for k, v in levers(ev.systems).items() if k != BASELINE}
    conditions = [*ev.clean, *ev.noisy_conditions]
    header = ["lever", *conditions, "mean <= 0 dB"]
    body = []
    for lever, group in groups.items():
        systems = _seeded(group)
        cells = [_cell(*ev.diff([BASELINE], systems, [c])) for c in conditions]
        body.append([lever, *cells, _cell(*ev.diff([BASELINE], systems, ev.noisy_conditions))])
    return [format_table(header, body).rstrip()]


def paper_question_lines(ev: Evaluation, a: str = "equalw", b: str = "gradw") -> list[str]:
    """Grad-W against Equal-W, seed k against seed k, per category and over every condition."""
    groups = levers(ev.systems)
    if a not in groups or b not in groups:
        return []
    seeds = sorted(k for k in set(groups[a]) & set(groups[b]) if k is not None)
    if not seeds:
        return []
    systems_a, systems_b = [groups[a][k] for k in seeds], [groups[b][k] for k in seeds]
    by_category: dict[str, list[str]] = {}
    for c in ev.noisy_conditions:
        by_category.setdefault(ev.category(c), []).append(c)
    header = ["conditions", f"{b} − {a} (EER points) [95 % interval]"]
    body = [[f"{cat} <= 0 dB", _cell(*ev.diff(systems_a, systems_b, cs))] for cat, cs in by_category.items()]
    body.append(["all <= 0 dB", _cell(*ev.diff(systems_a, systems_b, ev.noisy_conditions))])
    return [
        f"{b} against {a}, seeds {', '.join(map(str, seeds))} paired seed by seed (same initialisation "
        "and data order); the interval resamples the test speakers and the seeds; negative: "
        f"{b} has the lower EER; ✓: the interval excludes 0.",
        "",
        format_table(header, body).rstrip(),
    ]


def choice_lines(ev: Evaluation, min_seeds: int = 2) -> tuple[list[str], str | None]:
    """Levers ranked on the validation evaluation by the mean over seeds of their mean EER at or
    below 0 dB; the choice is the first with at least ``min_seeds`` seeds. Returns the lines and
    the chosen lever."""
    ranked = []
    noisy = ev.mean(BASELINE, ev.noisy_conditions)
    for lever, group in levers(ev.systems).items():
        if lever == BASELINE:
            continue
        per_seed = [ev.mean(s, ev.noisy_conditions) for s in _seeded(group)]
        ranked.append((float(np.mean(per_seed)), lever, per_seed))
    ranked.sort()
    header = ["rank", "lever", "seeds", "per seed", "mean", "rel. vs noisy (%)"]
    body = [
        [
            str(i + 1),
            lever,
            str(len(per)),
            ", ".join(f"{v:.2f}" for v in per),
            f"{m:.2f}",
            f"{100 * (m / noisy - 1):+.1f}",
        ]
        for i, (m, lever, per) in enumerate(ranked)
    ]
    chosen = next((lever for _, lever, per in ranked if len(per) >= min_seeds), None)
    lines = [
        f"Mean EER over the noisy conditions at or below 0 dB on validation (noisy {noisy:.2f} %), mean "
        f"over seeds. The rule: the lever with the lowest mean over at least {min_seeds} seeds is chosen.",
        "",
        format_table(header, body).rstrip(),
        "",
        f"Chosen on validation: **{chosen}**."
        if chosen
        else f"No lever has {min_seeds} seeds yet: no choice.",
    ]
    return lines, chosen


def needle_lines(bar: Evaluation, val: Evaluation | None) -> list[str]:
    """What moved the needle, read off the numbers: each lever's change against noisy on
    validation and on the bar's test (mean over seeds, conditions at or below 0 dB), and the
    conditions where its paired interval excludes 0, better or worse."""
    lines = []
    noisy = bar.mean(BASELINE, bar.noisy_conditions)
    val_groups = levers(val.systems) if val is not None else {}
    ranked = []
    for lever, group in levers(bar.systems).items():
        if lever == BASELINE:
            continue
        systems = _seeded(group)
        rel = 100 * (bar.seed_mean(systems, bar.noisy_conditions) / noisy - 1)
        better, worse = [], []
        for c in [*bar.clean, *bar.noisy_conditions]:
            _, low, high = bar.diff([BASELINE], systems, [c])
            if high < 0:
                better.append(c)
            elif low > 0:
                worse.append(c)
        on_val = ""
        if lever in val_groups:
            v_noisy = val.mean(BASELINE, val.noisy_conditions)
            v_rel = 100 * (val.seed_mean(_seeded(val_groups[lever]), val.noisy_conditions) / v_noisy - 1)
            on_val = f"{v_rel:+.1f} % on validation, "
        ranked.append((rel, lever, len(systems), on_val, better, worse))
    for rel, lever, n, on_val, better, worse in sorted(ranked):
        lines.append(
            f"- **{lever}** ({n} seed{'s' if n > 1 else ''}): {on_val}{rel:+.1f} % on the bar's test; "
            f"better than noisy (interval excludes 0) in {', '.join(better) or 'no condition'}; "
            f"worse in {', '.join(worse) or 'no condition'}."
        )
    return lines


def separation(scores: np.ndarray, labels: np.ndarray) -> float:
    """d' of one score file: (mean target - mean non-target) / sqrt of the mean of their variances."""
    target, nontarget = scores[labels.astype(bool)], scores[~labels.astype(bool)]
    return float((target.mean() - nontarget.mean()) / np.sqrt(0.5 * (target.var() + nontarget.var())))


def separation_lines(bar: Evaluation, val: Evaluation | None) -> list[str]:
    """Why a lever falls short, per category: the separation d' of target and non-target scores at
    the SNRs (at or below 0 dB) that validation and the bar's test share, mean over conditions and
    seeds, on each split; and on the test, the mean target and non-target scores."""
    shared = [c for c in bar.noisy_conditions if val is None or c in val.noisy_conditions]
    categories = list(dict.fromkeys(bar.category(c) for c in shared))
    splits = [("validation", val), ("test", bar)] if val is not None else [("test", bar)]
    header = ["lever"] + [f"{cat}: {name}" for cat in categories for name, _ in splits]
    header += [f"{cat}: test target / non-target" for cat in categories]
    val_groups = levers(val.systems) if val is not None else {}
    body = []
    for lever, group in levers(bar.systems).items():
        row = [lever]
        for cat in categories:
            conditions = [c for c in shared if bar.category(c) == cat]
            for _, ev in splits:
                systems = _seeded(group if ev is bar else val_groups.get(lever, {}))
                row.append(
                    f"{np.mean([separation(*ev.scores(s, c)[:2]) for s in systems for c in conditions]):.2f}"
                    if systems
                    else "–"
                )
        for cat in categories:
            conditions = [c for c in shared if bar.category(c) == cat]
            pairs = [bar.scores(s, c)[:2] for s in _seeded(group) for c in conditions]
            target = np.mean([x[y.astype(bool)].mean() for x, y in pairs])
            nontarget = np.mean([x[~y.astype(bool)].mean() for x, y in pairs])
            row.append(f"{target:.3f} / {nontarget:.3f}")
        body.append(row)
    snrs = ", ".join(shared)
    return [
        f"Separation d' of target and non-target scores (higher separates better) over {snrs}, mean "
        "over seeds; a lever that gains d' on validation but not on the test learned the validation "
        "pool's noise rather than noise in general.",
        "",
        format_table(header, body).rstrip(),
    ]


def run_lines(runs: Sequence[Path]) -> list[str]:
    """Each training run's validation EER by step (and the teacher's or noisy's)."""
    lines = []
    for run in runs:
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]
        val = [r for r in records if r.get("kind") == "val"]
        if not val:
            continue
        steps = ", ".join(f"{r['step']}: {r['eer']:.2f}" for r in val)
        base = val[0].get("eer_noisy")
        lines.append(
            f"- `{run.name}`: validation EER by step {steps}" + (f" (noisy {base:.2f})" if base else "")
        )
    return lines


def document(
    evaluations: Sequence[Evaluation],
    runs: Sequence[Path],
    val: Evaluation | None = None,
    title: str = "Levers beyond the paper, with seeds",
    split_note: str = SPLIT_NOTE,
) -> str:
    lines = [
        f"# {title}",
        "",
        "Generated by `python scripts/levers.py "
        + " ".join(str(e.folder) for e in evaluations)
        + (f" --val {val.folder}" if val else "")
        + (" --runs " + " ".join(str(r) for r in runs) if runs else "")
        + "`. EER in %. A system `LEVER-sK` "
        "is seed K of a lever; means are over seeds; intervals are 95 % over test speakers and seeds "
        f"({N_BOOT} resamples), paired with `noisy` on the same trials and corrupted audio. The bar "
        f"(judged on the first test): all conditions at or below 0 dB {BAR_ALL:+.0f} %, noise and music "
        f"{BAR_NOISE_MUSIC:+.0f} %, no condition significantly worse than noisy, clean within "
        f"{BAR_CLEAN} points.",
        "",
    ]
    if val is not None:
        choice, _ = choice_lines(val)
        lines += [f"## The choice, on validation (`{val.folder.name}`: `{val.augment}`)", "", *choice, ""]
    for i, ev in enumerate(evaluations):
        title = "the bar's test" if i == 0 else "reported beside it"
        lines += [
            f"## {ev.folder.name}: `{ev.augment}` ({title})",
            "",
            *summary_lines(ev),
            "",
            "Paired difference against noisy (EER points) [95 % interval]; ✓: excludes 0.",
            "",
            *diff_lines(ev),
            "",
        ]
        for title, a, b in PAPER_QUESTIONS:
            question = paper_question_lines(ev, a, b)
            if question:
                lines += [f"### {title}", "", *question, ""]
    if evaluations:
        lines += [
            "## What moved the needle",
            "",
            "Mean EER at or below 0 dB against noisy, mean over seeds, most gain first:",
            "",
            *needle_lines(evaluations[0], val),
            "",
            "### Why the rest falls short: separation per category",
            "",
            *separation_lines(evaluations[0], val),
            "",
        ]
    if runs:
        lines += ["## Training runs", "", *run_lines(runs), ""]
    lines += ["## Reproduce", "", *REPRODUCE, "", split_note, ""]
    for ev in [*([val] if val else []), *evaluations]:
        command = json.loads((ev.folder / "results.json").read_text()).get("command", "")
        lines += [f"`{ev.folder.name}` was written by:", "", "```", command, "```", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "evals", nargs="+", type=Path, help="gradw evaluate output folders; the first judges the bar"
    )
    parser.add_argument(
        "--val", type=Path, help="the evaluation on the validation split, where the choice is made"
    )
    parser.add_argument("--runs", nargs="*", type=Path, default=[], help="training run folders")
    parser.add_argument("--out", type=Path, default=Path("docs/levers.md"))
    parser.add_argument("--title", default="Levers beyond the paper, with seeds", help="the page's title")
    parser.add_argument("--split-note", default=SPLIT_NOTE, help="which validation split chose the levers")
    args = parser.parse_args()
    text = document(
        [Evaluation(e) for e in args.evals],
        args.runs,
        Evaluation(args.val) if args.val else None,
        title=args.title,
        split_note=args.split_note,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
