"""The report's tables: systems as rows, conditions as columns, every cell from the rows of an
evaluation (EER and minDCF with intervals, paired differences against ``noisy``, relative changes
against ``noisy`` and Equal-W, trial counts, and the low-SNR summary).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradw.evaluation.calibration import calibration_loss_floor
from gradw.evaluation.results import Row

BASELINE = "noisy"
#: Names (lower case, ``-``/``_`` removed) that identify the Equal-W ablation.
EQUALW_NAMES = ("equalw",)
#: Metrics with intervals: key -> (title, decimals).
METRICS: dict[str, tuple[str, int]] = {
    "eer": ("EER (%)", 2),
    "min_dcf_0.01": ("minDCF (P_target = 0.01)", 3),
    "min_dcf_0.05": ("minDCF (P_target = 0.05)", 3),
    "min_cllr": ("min Cllr (bits; discrimination only, after the best monotonic calibration)", 3),
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


def format_calibration_table(
    rows: Sequence[Row],
    conditions: Sequence[ConditionInfo] | None = None,
    systems: Sequence[str] | None = None,
) -> str:
    """Calibrated systems x conditions: ``Cllr (min Cllr); actDCF (minDCF)`` at P_target = 0.01;
    only systems whose rows carry ``cllr`` (their checkpoint had a calibration)."""
    conditions = list(conditions) if conditions is not None else order_conditions(rows)
    index = _index(rows)
    systems = [
        s
        for s in (systems if systems is not None else order_systems(rows))
        if any("cllr" in index.get((s, c.name), {}) for c in conditions)
    ]
    body = []
    for s in systems:
        line = [s]
        for c in conditions:
            m = index.get((s, c.name), {})
            cllr = format_cell(m.get("cllr"), digits=3)
            low = format_cell(m.get("min_cllr"), digits=3)
            act = format_cell(m.get("act_dcf_0.01"), digits=3)
            best = format_cell(m.get("min_dcf_0.01"), digits=3)
            line.append(f"{cllr} ({low}); {act} ({best})")
        body.append(line)
    return format_table(["system", *(c.label for c in conditions)], body) if body else ""


def row_loss_floor(metrics: dict[str, float]) -> float:
    """:func:`calibration_loss_floor` of one row's EER and trial counts (NaN without counts)."""
    if "n_target" not in metrics or "n_nontarget" not in metrics:
        return float("nan")
    return calibration_loss_floor(
        metrics["eer"], int(metrics["n_target"]), int(metrics["n_nontarget"]), draws=100
    )


def format_calibration_loss_table(
    rows: Sequence[Row],
    conditions: Sequence[ConditionInfo] | None = None,
    systems: Sequence[str] | None = None,
) -> str:
    """Calibrated systems x conditions (named in full: one table for every category): Cllr - min
    Cllr (the calibration loss, bits), then the mean Cllr, the mean min Cllr and their difference
    over the conditions; only systems whose rows carry ``cllr``. min Cllr is that of the raw
    scores for every system (the same bar for all). ``mean floor``: the mean over the conditions
    of :func:`calibration_loss_floor` at each condition's EER and trial counts, the loss a
    perfectly calibrated system would show there (min Cllr is fitted on the trials it judges).
    When a system normalises its scores before its map, a last column gives the mean min Cllr of
    its normalised scores (``min_cllr_norm``)."""
    conditions = list(conditions) if conditions is not None else order_conditions(rows)
    index = _index(rows)
    systems = [
        s
        for s in (systems if systems is not None else order_systems(rows))
        if all("cllr" in index.get((s, c.name), {}) for c in conditions)
    ]
    body = []
    for s in systems:
        cllr = [index[s, c.name]["cllr"] for c in conditions]
        low = [index[s, c.name]["min_cllr"] for c in conditions]
        mean, mean_low = sum(cllr) / len(cllr), sum(low) / len(low)
        gaps = [format_cell(a - b, digits=3) for a, b in zip(cllr, low, strict=True)]
        floor = np.mean([row_loss_floor(index[s, c.name]) for c in conditions])
        summary = (mean, mean_low, mean - mean_low, floor)
        body.append([s, *gaps, *(format_cell(v, digits=3) for v in summary)])
        normed = [index[s, c.name].get("min_cllr_norm") for c in conditions]
        body[-1].append(format_cell(sum(normed) / len(normed), digits=3) if None not in normed else "–")
    header = [
        "system",
        *(c.name for c in conditions),
        "mean Cllr",
        "mean min Cllr",
        "mean loss",
        "mean floor",
    ]
    if all(line[-1] == "–" for line in body):
        body = [line[:-1] for line in body]
    else:
        header.append("mean min Cllr, normalised scores")
    return format_table(header, body) if body and conditions else ""


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


def mean_eer_at_low_snr(
    rows: Sequence[Row], categories: Sequence[str] | None = None, max_snr: float = 0.0
) -> dict[str, float]:
    """system -> mean EER (%) over its dry (non-reverberant) conditions at SNR <= ``max_snr`` dB,
    of ``categories`` only when given: the summary figure the experiments rank recipes by."""
    values: dict[str, list[float]] = {}
    for row in rows:
        if row.snr_db is None or row.snr_db > max_snr or row.reverb:
            continue
        if categories is None or row.category in categories:
            values.setdefault(row.system, []).append(row.metrics["eer"])
    return {system: float(np.mean(v)) for system, v in values.items()}


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
