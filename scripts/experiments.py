#!/usr/bin/env python3
"""Write docs/experiments.md: the index of the experiments beyond the paper, read from the pages
that scripts/levers.py generates from evaluation runs (nothing in it is typed by hand).

Usage::

    python scripts/experiments.py PAGE [PAGE ...] [--scale PAGE] [--out docs/experiments.md]

Each PAGE is a page of scripts/levers.py (docs/levers.md, docs/levers-student.md,
docs/paper-question.md); ``--scale`` names the one whose runs are the scale runs (longer training,
a wider G), whose validation curves the index tabulates and plots. From every page the index reads
the bar's test summary (one row per lever: seeds, mean EER at or below 0 dB and its change against
noisy, noise and music alone, clean, the conditions significantly worse than noisy) and the
ranking on validation; from the pages that have it, the paper's question (a lever against Equal-W,
seed by seed, with its paired interval). It writes one table of every lever, the paper's question,
the scale curves and a "what moved the needle" section computed from those rows.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path

#: the bar of the out-of-domain test (scripts/levers.py states it on every page)
BAR_ALL, BAR_NOISE_MUSIC = -30.0, -25.0
#: a change of separation d' smaller than this is reported as no better separation
SEPARATION_GAIN = 0.2
#: what a lever is, by the start of its name (the longest match wins); ``+fuse`` / ``+qfuse``
#: mark the same system with the noisy embedding fused in
FAMILIES = {
    "gradw-adapted": "G then student",
    "gstudent": "G then student",
    "joint": "G and student trained jointly",
    "adapted": "student",
    "relation": "student",
    "colour": "student",
    "gradw": "G alone",
    "equalw": "G alone",
    "literal": "G alone",
}
RUN_LINE = re.compile(
    r"^- `(?P<run>[^`]+)`: validation EER by step (?P<steps>[^()]+?)(?: \(noisy (?P<noisy>[\d.]+)\))?$"
)
SEEDS_NOTE = re.compile(r"seeds ([\d, ]+) paired seed by seed")


@dataclass
class Lever:
    """One lever's row of a page's bar-test summary (EER in %, changes in % against noisy)."""

    name: str
    page: str
    seeds: int
    all_low: float
    rel_all: float | None
    rel_noise_music: float | None
    clean: float
    worse: list[str]
    bar_met: bool
    rel_val: float | None = None

    @property
    def family(self) -> str:
        base, _, fused = self.name.partition("+")
        match = max((k for k in FAMILIES if base == k or base.startswith(k + "-")), key=len, default=None)
        family = FAMILIES[match] if match else "other"
        return f"{family}, fused with the noisy embedding" if fused else family


@dataclass
class Page:
    """What the index reads from one page of scripts/levers.py."""

    path: Path
    title: str
    levers: list[Lever]
    noisy: dict[str, float]
    #: title -> (the sentence before the table, [(the difference's name, ""), (conditions, cell), ...])
    questions: dict[str, tuple[str, list[tuple[str, str]]]] = field(default_factory=dict)
    runs: dict[str, tuple[list[tuple[int, float]], float | None]] = field(default_factory=dict)
    val_noisy: float | None = None  # the noisy input's mean EER on the page's validation evaluation
    #: lever -> category -> {"test": d', "target": mean, "nontarget": mean} (the test's scores)
    separation: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    #: the conditions the separation table averages over
    separation_conditions: str = ""
    #: lever -> condition -> (paired EER difference against noisy in points, interval excludes 0)
    paired: dict[str, dict[str, tuple[float, bool]]] = field(default_factory=dict)


def parse_tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every Markdown table in ``text``: its header and its rows, each a list of cells."""
    out, block = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            block.append([c.strip() for c in line.strip().strip("|").split("|")])
            continue
        if len(block) >= 2:
            out.append((block[0], block[2:]))
        block = []
    return out


def split_sections(text: str, level: int) -> dict[str, str]:
    """``#``-level headings (2: ``## ``) -> the text under them, up to the next heading of that level."""
    marker = "#" * level + " "
    parts = re.split(rf"^{re.escape(marker)}", text, flags=re.MULTILINE)
    return {p.split("\n", 1)[0].strip(): p.split("\n", 1)[1] if "\n" in p else "" for p in parts[1:]}


def _number(cell: str) -> float | None:
    return None if cell in ("–", "") else float(cell)


def read_page(path: Path) -> Page:
    """Parse one page of scripts/levers.py; an error names the page and what it lacks."""
    text = path.read_text(encoding="utf-8")
    title = text.split("\n", 1)[0].removeprefix("# ").strip()
    sections = split_sections(text, 2)
    bar = next((body for head, body in sections.items() if head.endswith("(the bar's test)")), None)
    if bar is None:
        raise SystemExit(f"{path}: no section of the bar's test (is it a page of scripts/levers.py?)")
    _, summary = parse_tables(bar.split("\n### ", 1)[0])[0]
    val_rel: dict[str, float] = {}
    choice = next(
        (body for head, body in sections.items() if head.startswith("The choice, on validation")), ""
    )
    val_noisy = re.search(r"\(noisy ([\d.]+) %\)", choice)
    for row in parse_tables(choice)[0][1] if choice else []:  # rank, lever, seeds, per seed, mean, rel.
        val_rel[row[1]] = float(row[5])
    levers, noisy = [], {}
    for cells in summary:  # lever, seeds, per seed, all, rel., noise+music, rel., clean, worse, bar met
        if cells[0] == "noisy":
            noisy = {"all": float(cells[3]), "noise+music": float(cells[5]), "clean": float(cells[7])}
            continue
        levers.append(
            Lever(
                name=cells[0],
                page=path.name,
                seeds=len(cells[1].split(",")),
                all_low=float(cells[3]),
                rel_all=_number(cells[4]),
                rel_noise_music=_number(cells[6]),
                clean=float(cells[7]),
                worse=[] if cells[8] in ("none", "–") else cells[8].split(", "),
                bar_met=cells[9] == "yes",
                rel_val=val_rel.get(cells[0]),
            )
        )
    questions: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    for head, body in split_sections(bar, 3).items():
        found = parse_tables(body)
        if found:
            header, rows = found[0]  # conditions, the difference
            questions[head] = (
                body.strip().split("\n", 1)[0],
                [(header[1], "")] + [(r[0], r[1]) for r in rows],
            )
    runs = {}
    for line in sections.get("Training runs", "").splitlines():
        match = RUN_LINE.match(line.strip())
        if match:
            steps = [(int(s), float(e)) for s, e in (p.split(": ") for p in match["steps"].split(", "))]
            runs[match["run"]] = (steps, float(match["noisy"]) if match["noisy"] else None)
    separation, paired = {}, {}
    over = re.search(r"^Separation d' .*? over (.+?), mean over seeds", text, flags=re.MULTILINE)
    for header, rows in parse_tables(text):
        if header[0] == "lever" and any(h.endswith(": test target / non-target") for h in header):
            separation = read_separation(header, rows)
    for header, rows in parse_tables(bar):
        if header[0] == "lever" and header[-1] == "mean <= 0 dB":  # the paired differences
            paired = {
                r[0]: {
                    c: (float(v.split()[0]), v.endswith("✓"))
                    for c, v in zip(header[1:-1], r[1:-1], strict=True)
                }
                for r in rows
            }
    return Page(
        path,
        title,
        levers,
        noisy,
        questions,
        runs,
        float(val_noisy[1]) if val_noisy else None,
        separation,
        over[1] if over else "",
        paired,
    )


def read_separation(header: list[str], rows: list[list[str]]) -> dict[str, dict[str, dict[str, float]]]:
    """A page's separation table: lever -> category -> d' on the test and its mean target and
    non-target scores (the validation columns are not read)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for row in rows:
        cells = dict(zip(header, row, strict=True))
        per: dict[str, dict[str, float]] = {}
        for name, cell in cells.items():
            category, _, what = name.partition(": ")
            if what == "test" and cell != "–":
                per.setdefault(category, {})["test"] = float(cell)
            elif what == "test target / non-target":
                target, nontarget = (float(x) for x in cell.split(" / "))
                per.setdefault(category, {}).update(target=target, nontarget=nontarget)
        out[row[0]] = per
    return out


def _fmt(value: float | None, sign: bool = True) -> str:
    if value is None:
        return "–"
    return f"{value:+.1f}" if sign else f"{value:.2f}"


def lever_table(pages: list[Page]) -> list[str]:
    """Every lever of every page on the bar's test, most gain first."""
    rows = sorted((lv for p in pages for lv in p.levers), key=lambda lv: lv.rel_all or 0.0)
    lines = [
        "| lever | what it is | page | seeds | validation: rel. (%) | all <= 0 dB | rel. (%) "
        "| noise+music: rel. (%) | clean | worse than noisy (paired) | bar met |",
        "|:---|:---|:---|---:|---:|---:|---:|---:|---:|:---|:---|",
    ]
    for lv in rows:
        lines.append(
            f"| {lv.name} | {lv.family} | [{lv.page}]({lv.page}) | {lv.seeds} | {_fmt(lv.rel_val)} | "
            f"{lv.all_low:.2f} | {_fmt(lv.rel_all)} | {_fmt(lv.rel_noise_music)} | {lv.clean:.2f} | "
            f"{', '.join(lv.worse) or 'none'} | {'yes' if lv.bar_met else 'no'} |"
        )
    return lines


def noisy_lines(pages: list[Page]) -> list[str]:
    """The noisy baseline each page's changes are against (one sentence when they agree), and
    each page's on validation."""
    values = {(p.noisy.get("all"), p.noisy.get("noise+music"), p.noisy.get("clean")) for p in pages}
    val = [f"{p.path.name} {p.val_noisy:.2f} %" for p in pages if p.val_noisy is not None]
    on_val = (
        " The validation column is against each page's own validation evaluation of the noisy input: "
        + ", ".join(val)
        + " (see each page for its validation split)."
        if val
        else ""
    )
    if len(values) == 1:
        a, nm, c = values.pop()
        return [
            f"Every page measures against the same noisy input on the bar's test: {a:.2f} % over the "
            f"conditions at or below 0 dB, {nm:.2f} % over noise and music alone, {c:.2f} % clean." + on_val
        ]
    return [
        f"- {p.path.name}: noisy {p.noisy['all']:.2f} % at or below 0 dB, {p.noisy['noise+music']:.2f} % "
        f"noise and music, {p.noisy['clean']:.2f} % clean"
        for p in pages
    ]


def question_lines(pages: list[Page]) -> list[str]:
    """The paper's question as the pages answer it: each comparison with its seeds and interval."""
    lines = []
    for page in pages:
        for head, (intro, rows) in page.questions.items():
            seeds = SEEDS_NOTE.search(intro)
            (column, _), *cells_by_condition = rows
            cells = "; ".join(f"{conditions}: {cell}" for conditions, cell in cells_by_condition)
            lines.append(
                f"- **{head}** ([{page.path.name}]({page.path.name}), seeds "
                f"{seeds[1] if seeds else '?'}), {column}: {cells}."
            )
    if not lines:
        return ["No page given holds the paper's question."]
    return [
        *lines,
        "",
        "A ✓ marks an interval that excludes 0; the interval resamples the test speakers and the seeds.",
    ]


def scale_lines(page: Page | None, figure: Path, doc: Path) -> list[str]:
    """The scale runs' validation EER against steps: a table, a figure and, per run, where it was
    lowest and whether it was still falling at its last step."""
    if page is None or not page.runs:
        return ["No scale page given (`--scale`)."]
    steps = sorted({s for curve, _ in page.runs.values() for s, _ in curve})
    lines = [
        f"From [{page.path.name}]({page.path.name}): mean validation EER (%) over noise, music and "
        "babble at 0 and -5 dB by training step (each run's validation audio follows its seed, so "
        "each has its own noisy baseline).",
        "",
        "| run | noisy | " + " | ".join(str(s) for s in steps) + " | lowest (step) | falling at the end |",
        "|:---|---:|" + "---:|" * len(steps) + "---:|:---|",
    ]
    for run, (curve, noisy) in page.runs.items():
        by_step = dict(curve)
        best_step, best = min(curve, key=lambda se: (se[1], se[0]))
        falling = still_falling(curve)
        cells = " | ".join(f"{by_step[s]:.2f}" if s in by_step else "" for s in steps)
        lines.append(
            f"| {run} | {_fmt(noisy, sign=False)} | {cells} | {best:.2f} ({best_step}) | "
            f"{'yes' if falling else 'no'} |"
        )
    if plot_curves(page, figure):
        lines += ["", f"![validation EER against steps]({figure.relative_to(doc.parent)})"]
    return lines


def still_falling(curve: list[tuple[int, float]]) -> bool:
    """Whether a validation curve's last value is below every earlier one."""
    return len(curve) > 1 and curve[-1][1] < min(e for _, e in curve[:-1])


def plot_curves(page: Page, figure: Path) -> bool:
    """Each scale run's validation EER relative to its noisy baseline against steps."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for run, (curve, noisy) in page.runs.items():
        xs = [s for s, _ in curve]
        ys = [100 * (e / noisy - 1) if noisy else e for _, e in curve]
        ax.plot(xs, ys, marker="o", label=run)
    ax.set_xlabel("training step")
    ax.set_ylabel("validation EER against noisy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(figure, dpi=110)
    plt.close(fig)
    return True


def needle_lines(pages: list[Page], scale: Page | None) -> list[str]:
    """What moved the needle, computed from the rows: the closest lever to each criterion of the
    bar, each family's best, validation against the test, and the scale runs' trend."""
    seeded = [lv for p in pages for lv in p.levers if lv.seeds >= 2 and lv.rel_all is not None]
    if not seeded:
        return ["No lever has two seeds yet."]
    best = min(seeded, key=lambda lv: lv.rel_all)
    best_nm = min(seeded, key=lambda lv: lv.rel_noise_music)
    met = [lv.name for lv in sorted(seeded, key=lambda lv: lv.rel_all) if lv.bar_met]
    clean_ok = [lv for lv in seeded if not lv.worse]
    lines = [
        f"- **The bar** ({BAR_ALL:+.0f} % at or below 0 dB, {BAR_NOISE_MUSIC:+.0f} % on noise and "
        f"music, nothing significantly worse, clean kept): "
        + (f"met by {', '.join(met)}." if met else "met by no lever with two seeds or more.")
        + f" Closest over every condition: **{best.name}** ({best.family}, {best.seeds} seeds, "
        f"{best.page}) at {best.rel_all:+.1f} %; closest on noise and music: **{best_nm.name}** at "
        f"{best_nm.rel_noise_music:+.1f} %. {len(clean_ok)} of {len(seeded)} levers are significantly "
        "worse than noisy in no condition.",
    ]
    families: dict[str, list[Lever]] = {}
    for lv in seeded:
        families.setdefault(lv.family, []).append(lv)
    ranked = sorted(families.items(), key=lambda kv: min(lv.rel_all for lv in kv[1]))
    for family, members in ranked:
        top = min(members, key=lambda lv: lv.rel_all)
        lines.append(
            f"- **{family}**: best {top.name} at {top.rel_all:+.1f} % over every condition at or below "
            f"0 dB ({_fmt(top.rel_noise_music)} % on noise and music) on the bar's test"
            + (f", {top.rel_val:+.1f} % on validation" if top.rel_val is not None else "")
            + f"; {len(members)} lever{'s' if len(members) > 1 else ''} measured."
        )
    both = [lv for lv in seeded if lv.rel_val is not None]
    if both:
        val = sum(lv.rel_val for lv in both) / len(both)
        test = sum(lv.rel_all for lv in both) / len(both)
        lines.append(
            f"- **Validation against the bar's test**: over the {len(both)} levers ranked on both, the "
            f"mean change is {val:+.1f} % on validation and {test:+.1f} % on the out-of-domain test; "
            "the gap is what the validation noise shares with training and the unseen pool does not."
        )
    if scale is not None and scale.runs:
        falling = [run for run, (curve, _) in scale.runs.items() if still_falling(curve)]
        measured = "; ".join(
            f"{lv.name} ({lv.seeds} seed{'s' if lv.seeds > 1 else ''}) {_fmt(lv.rel_val)} % on validation, "
            f"{_fmt(lv.rel_all)} % on the bar's test"
            for lv in scale.levers
        )
        lines.append(
            f"- **Scale**: {len(falling)} of {len(scale.runs)} scale runs were still falling on "
            f"validation at their last step ({', '.join(falling) or 'none'}). Their levers: {measured}."
        )
    return lines


def _of_category(conditions: str, category: str) -> str:
    """The conditions of one category in a comma-separated list (``noise_0, music_0`` -> ``noise_0``)."""
    return ", ".join(c for c in conditions.split(", ") if c.split("_", 1)[0] == category)


def shortfall_lines(pages: list[Page]) -> list[str]:
    """Why no lever reaches the bar, from the pages' separation tables and paired differences: per
    category, the noisy input's separation d' on the test against the range over levers (which
    levers move it at all), how the closest lever shifts target and non-target scores, and which
    conditions carry its gain."""
    seeded = [(p, lv) for p in pages for lv in p.levers if lv.seeds >= 2 and lv.rel_all is not None]
    with_sep = [(p, lv) for p, lv in seeded if lv.name in p.separation and "noisy" in p.separation]
    if not with_sep:
        return ["No page gives the separation of target and non-target scores."]
    lines = []
    categories = list(dict.fromkeys(c for p, _ in with_sep for c in p.separation["noisy"]))
    for category in categories:
        rows = [(p, lv) for p, lv in with_sep if "test" in p.separation[lv.name].get(category, {})]
        if not rows:
            continue
        noisy = with_sep[0][0].separation["noisy"][category]["test"]
        measured = [(p.separation[lv.name][category]["test"], lv.name) for p, lv in rows]
        (d_lo, lo), (d_hi, hi) = (f(measured, key=lambda m: m[0]) for f in (min, max))
        over = _of_category(with_sep[0][0].separation_conditions, category)
        count = len({lv.name for _, lv in rows})
        lines.append(
            f"- **{category}**: the noisy input separates target from non-target trials by d' = "
            f"{noisy:.2f} on the test ({over}); the {count} levers with two seeds or "
            f"more range from {d_lo:.2f} ({lo}) to {d_hi:.2f} ({hi}), a change of "
            f"{d_lo - noisy:+.2f} to {d_hi - noisy:+.2f}"
            + (
                f": no lever separates {category} trials better than the noisy input does (by "
                f"{SEPARATION_GAIN} or more)."
                if d_hi - noisy < SEPARATION_GAIN
                else "."
            )
        )
    page, best = min(with_sep, key=lambda r: r[1].rel_all)
    noisy_sep, best_sep = page.separation["noisy"], page.separation[best.name]
    shifts = "; ".join(
        f"{c}: target {noisy_sep[c]['target']:.3f} → {best_sep[c]['target']:.3f} "
        f"({best_sep[c]['target'] - noisy_sep[c]['target']:+.3f}), non-target "
        f"{noisy_sep[c]['nontarget']:.3f} → {best_sep[c]['nontarget']:.3f} "
        f"({best_sep[c]['nontarget'] - noisy_sep[c]['nontarget']:+.3f})"
        for c in categories
        if "target" in best_sep.get(c, {}) and "target" in noisy_sep.get(c, {})
    )
    lines.append(
        f"- **The closest lever, {best.name}** ({page.path.name}), shifts the mean cosine scores on "
        f"the test (over {page.separation_conditions}): {shifts}."
    )
    paired = page.paired.get(best.name, {})
    gains = {c: d for c, (d, _) in paired.items() if c != "clean"}
    if gains:
        total = sum(gains.values())
        sure = {c: d for c, (d, excl) in paired.items() if c != "clean" and excl}
        share = 100 * sum(sure.values()) / total if total else 0.0
        listed = ", ".join(f"{c} {d:+.2f}" for c, d in sure.items()) or "none"
        lines.append(
            f"- **Where its gain lies**: summed over the {len(gains)} conditions at or below 0 dB its "
            f"EER changes by {total:+.2f} points against noisy (paired over speakers and seeds); the "
            f"conditions whose interval excludes 0 ({listed}) carry {share:.0f} % of that, and every "
            "other condition's interval includes 0."
        )
    return lines


def document(pages: list[Page], scale: Page | None, doc: Path) -> str:
    every = [*pages, *([scale] if scale is not None and scale not in pages else [])]
    names = " ".join(str(p.path) for p in pages) + (f" --scale {scale.path}" if scale else "")
    lines = [
        "# Experiments beyond the paper",
        "",
        f"Generated by `python scripts/experiments.py {names}` from those pages, which "
        "scripts/levers.py generates from evaluation runs; nothing here is typed by hand. EER in %; "
        "changes are against the noisy input over the conditions at or below 0 dB, mean over seeds, "
        "on the out-of-domain test (speakers, noise, music and talkers that no training or "
        "validation item comes from); choices were made on validation. The first search for G's "
        "recipe, before the validation noise had a split of its own, is "
        "[recipe-search.md](recipe-search.md).",
        "",
        "## Every lever on the out-of-domain test",
        "",
        *noisy_lines(every),
        "",
        *lever_table(every),
        "",
        "## The paper's question: Grad-W against Equal-W",
        "",
        *question_lines(every),
        "",
        "## Scale: validation EER against steps and width",
        "",
        *scale_lines(scale, doc.parent / "experiments" / "scale.png", doc),
        "",
        "## What moved the needle",
        "",
        *needle_lines(every, scale),
        "",
        "## Why the rest fall short",
        "",
        *shortfall_lines(every),
        "",
        "## The pages",
        "",
        *(f"- [{p.path.name}]({p.path.name}): {p.title}" for p in every),
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pages", nargs="+", type=Path, help="pages of scripts/levers.py")
    parser.add_argument("--scale", type=Path, help="the page of the scale runs (its curves are plotted)")
    parser.add_argument("--out", type=Path, default=Path("docs/experiments.md"))
    args = parser.parse_args()
    pages = [read_page(p) for p in args.pages]
    scale = read_page(args.scale) if args.scale else None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(document(pages, scale, args.out), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
