"""The benchmark report: Markdown tables and PNG plots made from an evaluation's rows.

``write_report(out, config, rows)`` writes ``OUT/report.md`` and ``OUT/plots/*.png``:

- a header saying what was evaluated (test set, trials, speakers, scorer E, systems and their
  checkpoints, protocol, seed), the elapsed time and the exact command (both read from
  ``OUT/results.json`` when present);
- a summary: mean EER over the conditions at SNR <= 0 dB, per noise category, with relative
  changes against ``noisy`` and against Equal-W (a system named ``equalw`` / ``equal-w``);
- EER and minDCF (P_target 0.01 and 0.05) tables, systems as rows and conditions as columns
  (clean first, then each noise category by SNR, highest first; one table per category so that
  they stay readable), each cell ``value [low, high]`` with the 95 % speaker-bootstrap interval
  and the best (lowest) value of each column in bold;
- the EER change against ``noisy`` in percentage points with the paired 95 % interval, ``✓``
  marking the cells whose interval excludes 0; the relative EER change (%) against ``noisy`` and
  against Equal-W;
- the number of trials per condition;
- plots: EER against SNR (a panel per noise category, a line per system, interval error bars,
  clean as a dashed reference line) and DET curves at chosen SNRs (a panel per category, a line
  per system), read from the score files ``OUT/scores/<system>/<condition>.txt``.

Every number comes from the rows and score files; nothing is typed by hand. matplotlib (the
``plots`` extra) is imported only to draw: without it the tables are written and the report says
why there are no plots.
"""


from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gradw.config import EvaluationConfig
from gradw.evaluation.grid import Row

__all__ = [
    "ConditionInfo",
    "Group",
    "condition_groups",
    "default_det_snrs",
    "equalw_system",
    "format_cell",
    "format_diff_cell",
    "format_diff_table",
    "format_metric_table",
    "format_relative_table",
    "format_summary_table",
    "format_table",
    "format_trials_table",
    "new_figure",
    "order_conditions",
    "order_systems",
    "plot_det_curves",
    "plot_metric_vs_snr",
    "save_png",
    "summary_table",
    "write_report",
]

#: The baseline system the paired differences are computed against.
BASELINE = "noisy"
#: Names (lower case, ``-``/``_`` removed) that identify the Equal-W ablation.
EQUALW_NAMES = ("equalw",)
#: Metrics with intervals: key -> (title, decimals).
METRICS: dict[str, tuple[str, int]] = {
    "eer": ("EER (%)", 2),
    "min_dcf_0.01": ("minDCF (P_target = 0.01)", 3),
    "min_dcf_0.05": ("minDCF (P_target = 0.05)", 3),
}
PLOTS_HINT = "install the plots extra: pip install 'gradw[plots]'"


# ---------------------------------------------------------------------------------------------
# ordering


@dataclass(frozen=True)
class ConditionInfo:
    """A condition as the rows describe it."""

    name: str
    category: str
    snr_db: float | None
    reverb: bool

    @property
    def is_clean(self) -> bool:
        return self.category == "clean"

    @property
    def label(self) -> str:
        """A short column label: ``clean``, ``clean (rev)``, ``-5 dB``."""
        if self.is_clean or self.snr_db is None:
            return "clean (rev)" if self.reverb else "clean"
        return f"{_format_snr(self.snr_db)} dB"


@dataclass(frozen=True)
class Group:
    """A block of columns: the clean reference (if any) and one noise category's SNRs."""

    title: str
    conditions: tuple[ConditionInfo, ...]


def _format_snr(snr: float) -> str:
    return f"{snr:g}"


def order_systems(rows: Sequence[Row]) -> list[str]:
    """System names in order of first appearance (the order of ``--systems``)."""
    return list(dict.fromkeys(r.system for r in rows))


def order_conditions(rows: Sequence[Row]) -> list[ConditionInfo]:
    """Conditions: dry before reverberant; clean first, then each category (in order of first
    appearance) by SNR, highest first."""
    seen: dict[str, ConditionInfo] = {}
    for r in rows:
        if r.condition not in seen:
            snr = None if r.snr_db is None else float(r.snr_db)
            seen[r.condition] = ConditionInfo(r.condition, r.category, snr, bool(r.reverb))
    categories = list(dict.fromkeys(c.category for c in seen.values() if not c.is_clean))

    def key(c: ConditionInfo) -> tuple[int, int, float]:
        rank = 0 if c.is_clean else 1 + categories.index(c.category)
        return (int(c.reverb), rank, -(c.snr_db if c.snr_db is not None else math.inf))

    return sorted(seen.values(), key=key)


def condition_groups(conditions: Sequence[ConditionInfo]) -> list[Group]:
    """One group per (noise category, reverb), each led by the matching clean condition."""
    clean = {c.reverb: c for c in conditions if c.is_clean}
    groups: dict[tuple[str, bool], list[ConditionInfo]] = {}
    for c in conditions:
        if not c.is_clean:
            groups.setdefault((c.category, c.reverb), []).append(c)
    out = []
    for (category, reverb), items in groups.items():
        lead = [clean[reverb]] if reverb in clean else []
        out.append(Group(f"{category}, reverberant" if reverb else category, tuple(lead + items)))
    if not out and clean:  # clean conditions only
        out.append(Group("clean", tuple(clean[k] for k in sorted(clean))))
    return out


def equalw_system(systems: Sequence[str]) -> str | None:
    """The system that is the Equal-W ablation (``equalw``, ``equal-w``, ``Equal_W``), if any."""
    for name in systems:
        if name.lower().replace("-", "").replace("_", "") in EQUALW_NAMES:
            return name
    return None


def _index(rows: Sequence[Row]) -> dict[tuple[str, str], dict[str, float]]:
    return {(r.system, r.condition): r.metrics for r in rows}


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


# ---------------------------------------------------------------------------------------------
# cells and tables


def format_cell(
    value: float | None, low: float | None = None, high: float | None = None, digits: int = 2
) -> str:
    """``value [low, high]`` (or ``value`` without an interval); ``–`` for a missing value."""
    if not _finite(value):
        return "–"
    text = f"{value:.{digits}f}"
    if _finite(low) and _finite(high):
        text += f" [{low:.{digits}f}, {high:.{digits}f}]"
    return text


def format_diff_cell(diff: float | None, low: float | None, high: float | None, digits: int = 2) -> str:
    """A signed paired difference with its interval, ``✓`` when the interval excludes 0:
    ``-2.10 [-3.00, -1.20] ✓``."""
    if not _finite(diff):
        return "–"
    text = f"{diff:+.{digits}f}"
    if _finite(low) and _finite(high):
        text += f" [{low:+.{digits}f}, {high:+.{digits}f}]"
        if low > 0 or high < 0:  # type: ignore[operator]
            text += " ✓"
    return text


def _escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def format_table(
    header: Sequence[str], body: Sequence[Sequence[str]], align: Sequence[str] | None = None
) -> str:
    """A Markdown table.

    Args:
        header: column titles.
        body: rows of cell strings, each as long as ``header``.
        align: per column ``"l"``, ``"r"`` or ``"c"`` (default: first column left, others right).

    Returns:
        The table, one line per row, ending with a newline; ``|`` in cells is escaped.

    Raises:
        ValueError: a row or ``align`` of the wrong length.
    """
    n = len(header)
    if align is None:
        align = ["l"] + ["r"] * (n - 1)
    if len(align) != n:
        raise ValueError(f"align has {len(align)} entries for {n} columns")
    marks = {"l": ":---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(_escape(h) for h in header) + " |"]
    lines.append("|" + "|".join(marks[a] for a in align) + "|")
    for i, row in enumerate(body):
        if len(row) != n:
            raise ValueError(f"table row {i} has {len(row)} cells for {n} columns")
        lines.append("| " + " | ".join(_escape(c) for c in row) + " |")
    return "\n".join(lines) + "\n"


def _bold(text: str) -> str:
    return f"**{text}**"


def _best_per_column(values: dict[str, float | None], digits: int) -> set[str]:
    """Systems holding the lowest value of a column (ties at the displayed precision)."""
    shown = {s: round(v, digits) for s, v in values.items() if _finite(v)}
    if not shown:
        return set()
    best = min(shown.values())
    return {s for s, v in shown.items() if v == best}


def format_metric_table(
    rows: Sequence[Row],
    metric: str = "eer",
    conditions: Sequence[ConditionInfo] | None = None,
    systems: Sequence[str] | None = None,
    digits: int | None = None,
    bold_best: bool = True,
) -> str:
    """Systems x conditions table of ``metric`` with its interval (``<metric>_ci_low/high``),
    the lowest value of each column in bold.

    Args:
        rows: the evaluation rows.
        metric: ``eer``, ``min_dcf_0.01``, ``min_dcf_0.05`` (or any key of the metrics).
        conditions: the columns (default: every condition, see :func:`order_conditions`).
        systems: the rows (default: every system, see :func:`order_systems`).
        digits: decimals (default: 2 for EER, 3 for minDCF).
        bold_best: bold the lowest value of each column.
    """
    conditions = list(conditions) if conditions is not None else order_conditions(rows)
    systems = list(systems) if systems is not None else order_systems(rows)
    if digits is None:
        digits = METRICS.get(metric, ("", 3))[1]
    index = _index(rows)
    body = [[s] for s in systems]
    for c in conditions:
        column = {s: index.get((s, c.name), {}).get(metric) for s in systems}
        best = _best_per_column(column, digits) if bold_best and len(systems) > 1 else set()
        for s, line in zip(systems, body, strict=True):
            m = index.get((s, c.name), {})
            cell = format_cell(m.get(metric), m.get(f"{metric}_ci_low"), m.get(f"{metric}_ci_high"), digits)
            line.append(_bold(cell) if s in best else cell)
    return format_table(["system", *(c.label for c in conditions)], body)


def format_diff_table(
    rows: Sequence[Row],
    conditions: Sequence[ConditionInfo] | None = None,
    systems: Sequence[str] | None = None,
    digits: int = 2,
) -> str:
    """EER change against ``noisy`` in percentage points, ``diff [low, high]`` from the paired
    bootstrap (``eer_diff_vs_noisy``, ``eer_diff_low``, ``eer_diff_high``), ``✓`` where the
    interval excludes 0. The baseline itself is not a row."""
    conditions = list(conditions) if conditions is not None else order_conditions(rows)
    systems = [s for s in (systems if systems is not None else order_systems(rows)) if s != BASELINE]
    index = _index(rows)
    body = []
    for s in systems:
        line = [s]
        for c in conditions:
            m = index.get((s, c.name), {})
            line.append(
                format_diff_cell(
                    m.get("eer_diff_vs_noisy"), m.get("eer_diff_low"), m.get("eer_diff_high"), digits
                )
            )
        body.append(line)
    return format_table(["system", *(c.label for c in conditions)], body)


def _relative(value: float | None, reference: float | None) -> float | None:
    if not (_finite(value) and _finite(reference)) or reference == 0:
        return None
    return 100.0 * (value - reference) / reference  # type: ignore[operator]


def format_relative_table(
    rows: Sequence[Row],
    reference: str,
    conditions: Sequence[ConditionInfo] | None = None,
    systems: Sequence[str] | None = None,
    metric: str = "eer",
    digits: int = 1,
) -> str:
    """Relative change of ``metric`` against the system ``reference``, in percent:
    ``100 (value - reference) / reference`` (negative = lower = better). No interval."""
    conditions = list(conditions) if conditions is not None else order_conditions(rows)
    systems = [s for s in (systems if systems is not None else order_systems(rows)) if s != reference]
    index = _index(rows)
    body = []
    for s in systems:
        line = [s]
        for c in conditions:
            rel = _relative(
                index.get((s, c.name), {}).get(metric), index.get((reference, c.name), {}).get(metric)
            )
            line.append("–" if rel is None else f"{rel:+.{digits}f}")
        body.append(line)
    return format_table(["system", *(c.label for c in conditions)], body)


def _low_snr_means(
    rows: Sequence[Row], max_snr: float
) -> tuple[list[str], list[tuple[str, list[str]]], dict[tuple[str, str], float]]:
    """(systems, [(column, conditions)], (system, column) -> mean EER) over the conditions at
    SNR <= max_snr that every system has; the clean columns hold the clean EER."""
    systems = order_systems(rows)
    index = _index(rows)
    conditions = order_conditions(rows)
    common = [c for c in conditions if all(_finite(index.get((s, c.name), {}).get("eer")) for s in systems)]
    columns: list[tuple[str, list[str]]] = [(c.label, [c.name]) for c in common if c.is_clean]
    low = [c for c in common if not c.is_clean and c.snr_db is not None and c.snr_db <= max_snr]
    if not low:
        return systems, [], {}
    for group in condition_groups(low):
        columns.append((group.title, [c.name for c in group.conditions]))
    if len(columns) - sum(1 for c in common if c.is_clean) > 1:
        columns.append((f"all <= {_format_snr(max_snr)} dB", [c.name for c in low]))
    means = {
        (s, title): float(np.mean([index[(s, n)]["eer"] for n in names]))
        for s in systems
        for title, names in columns
    }
    return systems, columns, means


def format_summary_table(rows: Sequence[Row], max_snr: float = 0.0) -> str:
    """Mean EER (%) over the conditions at SNR <= ``max_snr`` of each noise category (clean EER
    as is), the lowest of each column in bold, and the relative change of the last column
    against ``noisy`` and against Equal-W. Only conditions that every system has are averaged.
    Empty string when there is nothing to summarise."""
    systems, columns, means = _low_snr_means(rows, max_snr)
    if not columns:
        return ""
    last = columns[-1][0]
    refs = [r for r in (BASELINE if BASELINE in systems else None, equalw_system(systems)) if r]
    header = ["system", *(title for title, _ in columns)]
    header += [f"{last}: rel. vs {r} (%)" for r in refs]
    body = []
    best = {title: _best_per_column({s: means[(s, title)] for s in systems}, 2) for title, _ in columns}
    for s in systems:
        line = [s]
        for title, _ in columns:
            cell = f"{means[(s, title)]:.2f}"
            line.append(_bold(cell) if len(systems) > 1 and s in best[title] else cell)
        for r in refs:
            rel = None if s == r else _relative(means[(s, last)], means[(r, last)])
            line.append("–" if rel is None else f"{rel:+.1f}")
        body.append(line)
    return format_table(header, body)


def format_trials_table(rows: Sequence[Row]) -> str:
    """Trials per condition: total, target, non-target and speakers (a range if systems differ)."""
    keys = [
        ("n_trials", "trials"),
        ("n_target", "target"),
        ("n_nontarget", "non-target"),
        ("n_speakers", "speakers"),
    ]
    body = []
    for c in order_conditions(rows):
        line = [c.name]
        for key, _ in keys:
            values = sorted(
                {int(r.metrics[key]) for r in rows if r.condition == c.name and _finite(r.metrics.get(key))}
            )
            line.append(
                "–" if not values else str(values[0]) if len(values) == 1 else f"{values[0]}–{values[-1]}"
            )
        body.append(line)
    return format_table(["condition", *(title for _, title in keys)], body)


def summary_table(rows: Sequence[Row], digits: int = 2) -> str:
    """A compact plain-text table of EER (%) for the terminal: systems x conditions, one block
    per noise category (clean first), ``*`` after the lowest value of each column."""
    systems = order_systems(rows)
    index = _index(rows)
    groups = condition_groups(order_conditions(rows))
    name_width = max([len(s) for s in systems] + [len("EER (%)")])
    blocks = []
    for group in groups:
        cells = {}
        for c in group.conditions:
            column = {s: index.get((s, c.name), {}).get("eer") for s in systems}
            best = _best_per_column(column, digits) if len(systems) > 1 else set()
            for s in systems:
                v = column[s]
                cells[(s, c.name)] = ("-" if not _finite(v) else f"{v:.{digits}f}") + (
                    "*" if s in best else ""
                )
        widths = [max(len(c.label), *(len(cells[(s, c.name)]) for s in systems)) for c in group.conditions]
        lines = [f"[{group.title}]"]
        lines.append(
            "EER (%)".ljust(name_width)
            + "".join("  " + c.label.rjust(w) for c, w in zip(group.conditions, widths, strict=True))
        )
        for s in systems:
            lines.append(
                s.ljust(name_width)
                + "".join(
                    "  " + cells[(s, c.name)].rjust(w) for c, w in zip(group.conditions, widths, strict=True)
                )
            )
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + ("\n" if blocks else "")


# ---------------------------------------------------------------------------------------------
# plots


def new_figure(width: float, height: float) -> Any:
    """A matplotlib Figure on an Agg canvas (no pyplot, no global backend change).

    Raises:
        ImportError: matplotlib is not installed (the message says how to install it).
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(f"matplotlib is not installed ({PLOTS_HINT})") from exc
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """Save a figure as PNG atomically (a temporary name in the same folder, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fig.savefig(tmp, format="png", dpi=dpi)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _colours(systems: Sequence[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {s: cmap(i % 10) for i, s in enumerate(systems)}


def _legend(fig: Any, ax: Any) -> None:
    """One legend for the figure, outside the panels (inside the first panel on matplotlib < 3.7)."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    try:
        fig.legend(handles, labels, loc="outside right upper", fontsize=9)
    except ValueError:  # "outside" placement needs matplotlib >= 3.7
        ax.legend(handles, labels, fontsize=8)


def _panel_grid(n: int) -> tuple[int, int]:
    cols = min(n, 3)
    return math.ceil(n / cols), cols


def plot_metric_vs_snr(rows: Sequence[Row], path: str | Path, metric: str = "eer") -> Path | None:
    """``metric`` against SNR: a panel per noise category, a line per system with its interval
    as error bars, the clean value as a dashed horizontal line. None when no noisy condition.

    Raises:
        ImportError: without matplotlib.
    """
    systems = order_systems(rows)
    index = _index(rows)
    conditions = order_conditions(rows)
    groups = [g for g in condition_groups(conditions) if any(not c.is_clean for c in g.conditions)]
    if not groups:
        return None
    title, _ = METRICS.get(metric, (metric, 3))
    n_rows, n_cols = _panel_grid(len(groups))
    fig = new_figure(4.2 * n_cols, 3.4 * n_rows)
    axes = fig.subplots(n_rows, n_cols, squeeze=False, sharey=True)
    colours = _colours(systems)
    for ax, group in zip(axes.flat, groups, strict=False):
        noisy = sorted((c for c in group.conditions if not c.is_clean), key=lambda c: c.snr_db or 0.0)
        clean = [c for c in group.conditions if c.is_clean]
        for s in systems:
            pts = [(c.snr_db, index.get((s, c.name), {})) for c in noisy]
            pts = [(x, m) for x, m in pts if _finite(m.get(metric))]
            if pts:
                x = np.array([p[0] for p in pts], dtype=float)
                y = np.array([p[1][metric] for p in pts], dtype=float)
                low = np.array([p[1].get(f"{metric}_ci_low", np.nan) for p in pts], dtype=float)
                high = np.array([p[1].get(f"{metric}_ci_high", np.nan) for p in pts], dtype=float)
                err = np.vstack([np.nan_to_num(y - low), np.nan_to_num(high - y)]).clip(min=0)
                ax.errorbar(
                    x, y, yerr=err, marker="o", ms=3.5, lw=1.4, capsize=2.5, color=colours[s], label=s
                )
            if clean:
                value = index.get((s, clean[0].name), {}).get(metric)
                if _finite(value):
                    ax.axhline(value, ls="--", lw=1.0, color=colours[s], alpha=0.8)
        ax.set_title(group.title + ("  (dashed: clean)" if clean else ""), fontsize=10)
        ax.set_xlabel("SNR (dB)")
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel(title)
    for ax in list(axes.flat)[len(groups) :]:
        ax.set_visible(False)
    _legend(fig, axes.flat[0])
    return save_png(fig, Path(path))


_DET_TICKS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95)


def plot_det_curves(out: str | Path, rows: Sequence[Row], snr_db: float, path: str | Path) -> Path | None:
    """DET curves at one SNR: a panel per noise category, a line per system, read from
    ``OUT/scores/<system>/<condition>.txt``. None when no score file exists for that SNR.

    Raises:
        ImportError: without matplotlib.
    """
    from scipy.stats import norm

    from gradw.evaluation.metrics import det_curve
    from gradw.evaluation.scoring import read_scores

    out = Path(out)
    systems = order_systems(rows)
    panels: list[tuple[str, list[tuple[str, np.ndarray, np.ndarray]]]] = []
    for group in condition_groups(order_conditions(rows)):
        match = [c for c in group.conditions if not c.is_clean and c.snr_db == float(snr_db)]
        if not match:
            continue
        curves = []
        for s in systems:
            score_file = out / "scores" / s / f"{match[0].name}.txt"
            if not score_file.is_file():
                continue
            _, _, scores, labels = read_scores(score_file)
            if labels.all() or not labels.any():
                continue
            x, y = det_curve(scores, labels)
            curves.append((s, x, y))
        if curves:
            panels.append((f"{group.title}, {_format_snr(float(snr_db))} dB", curves))
    if not panels:
        return None
    lowest = min(float(np.min(np.concatenate([c[1], c[2]]))) for _, curves in panels for c in curves)
    lo = max(lowest, float(norm.ppf(0.0005))) - 0.1
    hi = float(norm.ppf(0.95))
    ticks = [t for t in _DET_TICKS if lo <= norm.ppf(t) <= hi]
    n_rows, n_cols = _panel_grid(len(panels))
    fig = new_figure(4.0 * n_cols, 3.8 * n_rows)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    colours = _colours(systems)
    for ax, (title, curves) in zip(axes.flat, panels, strict=False):
        for s, x, y in curves:
            ax.plot(x, y, lw=1.4, color=colours[s], label=s, drawstyle="steps-post")
        ax.plot([lo, hi], [lo, hi], ls=":", lw=0.8, color="0.5")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
        positions = [float(norm.ppf(t)) for t in ticks]
        names = [f"{100 * t:g}" for t in ticks]
        ax.set_xticks(positions, names, fontsize=8)
        ax.set_yticks(positions, names, fontsize=8)
        ax.set_xlabel("false alarm rate (%)")
        ax.set_ylabel("miss rate (%)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    _legend(fig, axes.flat[0])
    return save_png(fig, Path(path))


def default_det_snrs(rows: Sequence[Row]) -> list[float]:
    """0 dB (or the SNR nearest to it) and the lowest SNR present."""
    snrs = sorted({float(r.snr_db) for r in rows if r.snr_db is not None and r.category != "clean"})
    if not snrs:
        return []
    nearest = min(snrs, key=lambda s: (abs(s), -s))
    return list(dict.fromkeys([nearest, snrs[0]]))


def _det_name(snr: float) -> str:
    return f"det_snr_{_format_snr(snr)}.png"


# ---------------------------------------------------------------------------------------------
# the report


def _config_dict(config: EvaluationConfig | dict[str, Any]) -> dict[str, Any]:
    if is_dataclass(config) and not isinstance(config, type):
        return asdict(config)
    return dict(config)


def _read_meta(out: Path) -> dict[str, Any]:
    """``command`` and ``elapsed_seconds`` from ``OUT/results.json`` (empty when absent)."""
    path = out / "results.json"
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: payload[k] for k in ("command", "elapsed_seconds") if k in payload}


def _describe_system(spec: str) -> str:
    """``name`` (plus its checkpoint for ``NAME:PATH`` specs)."""
    spec = spec.strip()
    if ":" not in spec:
        return f"`{spec}`"
    name, path = spec.split(":", 1)
    fuse = path.endswith("@fuse")
    if fuse:
        path = path[: -len("@fuse")]
        name += "+fuse"
    return f"`{name}` (checkpoint `{path}`{', embeddings fused with noisy' if fuse else ''})"


def _format_duration(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min {sec:02d} s" if hours else f"{minutes} min {sec:02d} s"


def _header(config: dict[str, Any], rows: Sequence[Row], meta: dict[str, Any]) -> list[str]:
    def counts(key: str) -> str:
        values = sorted({int(r.metrics[key]) for r in rows if _finite(r.metrics.get(key))})
        return "?" if not values else str(values[0]) if len(values) == 1 else f"{values[0]}–{values[-1]}"

    lines = ["# gradw evaluation report", ""]
    trials = f"{counts('n_trials')} ({counts('n_target')} target, {counts('n_nontarget')} non-target)"
    lines.append(
        f"- **Test set:** `{config.get('test', '?')}`, trial list `{config.get('trials', 'trials')}`"
    )
    extra = f", a seeded sample of at most {config['max_trials']}" if config.get("max_trials") else ""
    lines.append(f"- **Trials:** {trials} per condition{extra}; **speakers:** {counts('n_speakers')}")
    scorer = f"`{config.get('scorer', '?')}`"
    if config.get("scorer_checkpoint"):
        scorer += f" (checkpoint `{config['scorer_checkpoint']}`)"
    if config.get("scorer_tap"):
        scorer += f", tap `{config['scorer_tap']}`"
    lines.append(f"- **Scorer E:** {scorer}; cosine scoring, no score normalisation")
    specs = config.get("systems") or order_systems(rows)
    if isinstance(specs, str):
        specs = [s for s in specs.split(",") if s.strip()]
    lines.append("- **Systems:** " + "; ".join(_describe_system(s) for s in specs))
    protocol = (
        "clean enrolment, corrupted test side"
        if config.get("clean_enroll")
        else "both sides of every trial corrupted (as in the paper)"
    )
    lines.append(f"- **Protocol:** {protocol}")
    if config.get("augment"):
        lines.append(f"- **Noise:** `{config['augment']}`, manifest seed {config.get('seed', 0)}")
    n_boot = config.get("n_boot")
    lines.append(
        "- **Intervals:** 95 % speaker-level bootstrap"
        + (f" ({n_boot} resamples)" if n_boot else "")
        + "; EER differences are paired (same trials, same corrupted audio)"
    )
    if "elapsed_seconds" in meta:
        lines.append(f"- **Elapsed:** {_format_duration(meta['elapsed_seconds'])}")
    if meta.get("command"):
        lines += ["", "Command:", "", "```", str(meta["command"]), "```"]
    return lines + [""]


def _grouped_tables(
    rows: Sequence[Row], groups: Sequence[Group], make: Callable[[Sequence[ConditionInfo]], str]
) -> list[str]:
    lines: list[str] = []
    for group in groups:
        if len(groups) > 1:
            lines += [f"**{group.title}**", ""]
        lines += [make(group.conditions).rstrip("\n"), ""]
    return lines


def write_report(
    out: str | Path,
    config: EvaluationConfig | dict[str, Any],
    rows: Sequence[Row],
    det_snrs: Sequence[float] | None = None,
    max_snr: float = 0.0,
) -> Path:
    """Write ``OUT/report.md`` and the plots under ``OUT/plots/`` (see the module docstring).

    Args:
        out: the evaluation directory (score files are read from ``OUT/scores/``; the command
            and elapsed time from ``OUT/results.json`` when present).
        config: the :class:`EvaluationConfig` (or its dict, as :func:`read_results` returns it).
        rows: the evaluation rows.
        det_snrs: SNRs of the DET plots (default: 0 dB, or the nearest SNR, and the lowest SNR).
        max_snr: the summary averages conditions at SNR <= this.

    Returns:
        The path of ``report.md``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = list(rows)
    cfg = _config_dict(config)
    systems = order_systems(rows)
    conditions = order_conditions(rows)
    groups = condition_groups(conditions)
    equalw = equalw_system(systems)
    lines = _header(cfg, rows, _read_meta(out))

    if not rows:
        lines += ["No results.", ""]
        return _write_text(out / "report.md", "\n".join(lines))

    summary = format_summary_table(rows, max_snr)
    if summary:
        lines += [
            f"## Summary: mean EER (%) over the conditions at SNR <= {_format_snr(max_snr)} dB",
            "",
            "Clean columns hold the clean EER. Lowest value of each column in bold; relative change "
            "of the last mean, negative = lower EER = better.",
            "",
            summary.rstrip("\n"),
            "",
        ]

    for metric, (title, _) in METRICS.items():
        if not any(metric in r.metrics for r in rows):
            continue
        lines += [f"## {title}", "", "Cells: value [95 % interval]; lowest of each column in bold.", ""]
        lines += _grouped_tables(rows, groups, lambda cs, m=metric: format_metric_table(rows, m, cs, systems))
        if metric == "eer":
            lines += _difference_sections(rows, groups, systems, equalw)

    lines += _plot_section(out, rows, det_snrs)
    lines += ["## Trials per condition", "", format_trials_table(rows)]  # ends with a newline
    return _write_text(out / "report.md", "\n".join(lines))


def _difference_sections(
    rows: Sequence[Row], groups: Sequence[Group], systems: Sequence[str], equalw: str | None
) -> list[str]:
    lines: list[str] = []
    has_diff = any("eer_diff_vs_noisy" in r.metrics for r in rows)
    if has_diff:
        lines += [
            f"## EER change vs `{BASELINE}` (percentage points)",
            "",
            "Cells: difference [paired 95 % interval]; negative = lower EER than no enhancement; "
            "✓ = the interval excludes 0.",
            "",
        ]
        lines += _grouped_tables(rows, groups, lambda cs: format_diff_table(rows, cs, systems))
    elif BASELINE not in systems:
        lines += [f"_No `{BASELINE}` system in this evaluation: no paired EER differences._", ""]
    for ref in [r for r in (BASELINE if BASELINE in systems else None, equalw) if r]:
        # the noisy baseline is left out of the comparison with Equal-W
        shown = [s for s in systems if s != BASELINE or ref == BASELINE]
        if not [s for s in shown if s != ref]:
            continue
        lines += [
            f"## Relative EER change vs `{ref}` (%)",
            "",
            f"Cells: 100 (EER - EER[{ref}]) / EER[{ref}]; negative = better. No interval.",
            "",
        ]
        lines += _grouped_tables(
            rows, groups, lambda cs, r=ref, ss=shown: format_relative_table(rows, r, cs, ss)
        )
    return lines


def _plot_section(out: Path, rows: Sequence[Row], det_snrs: Sequence[float] | None) -> list[str]:
    plots = out / "plots"
    lines = ["## Plots", ""]
    try:
        made: list[tuple[str, Path]] = []
        eer_plot = plot_metric_vs_snr(rows, plots / "eer_vs_snr.png")
        if eer_plot is not None:
            made.append(("EER vs SNR (error bars: 95 % interval; dashed: clean)", eer_plot))
        snrs = list(det_snrs) if det_snrs is not None else default_det_snrs(rows)
        wanted = set()
        for snr in snrs:
            path = plot_det_curves(out, rows, snr, plots / _det_name(snr))
            if path is not None:
                wanted.add(path.name)
                made.append((f"DET curves at {_format_snr(snr)} dB", path))
        for stale in plots.glob("det_snr_*.png") if plots.is_dir() else []:
            if stale.name not in wanted:
                stale.unlink()
    except ImportError as exc:
        warnings.warn(f"report plots skipped: {exc}", stacklevel=3)
        return lines + [f"_Plots skipped: {exc}._", ""]
    if not made:
        return lines + ["_No noisy condition or score file to plot._", ""]
    for caption, path in made:
        lines += [f"![{caption}](plots/{path.name})", ""]
    return lines


def _write_text(path: Path, text: str) -> Path:
    """Write a text file atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
