"""The report's figures: EER against SNR (a panel per noise category, a line per system, interval
error bars) and DET curves read from the score files. matplotlib (the ``plots`` extra) is imported
only to draw.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gradw.errors import GradwError
from gradw.evaluation.report.tables import (
    METRICS,
    PLOTS_HINT,
    _finite,
    _format_snr,
    _index,
    condition_groups,
    order_conditions,
    order_systems,
)
from gradw.evaluation.results import Row
from gradw.fileio import atomic_path

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


#: figure formats written by :func:`save_figure`, named by the file's suffix
FIGURE_FORMATS = ("png", "pdf", "svg")


class FigureError(GradwError, ValueError):
    """A figure path whose suffix names no format gradw writes; names the path."""


def figure_format(path: str | Path) -> str:
    """The format a figure path's suffix names: ``png``, ``pdf`` or ``svg`` (case-insensitive).

    Raises:
        FigureError: no suffix, or another one (one line naming the path).
    """
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FIGURE_FORMATS:
        given = f"the suffix .{suffix}" if suffix else "no suffix"
        raise FigureError(
            f"{path}: a figure is written as {', '.join('.' + f for f in FIGURE_FORMATS)}, "
            f"and this path has {given}"
        )
    return suffix


def save_figure(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """Save a figure in the format its suffix names (:func:`figure_format`: PNG, PDF or SVG),
    atomically (a temporary name in the same folder, then a rename). ``dpi`` sets the PNG's
    resolution and that of raster images inside a PDF or SVG.

    Raises:
        FigureError: a suffix that names no format gradw writes (nothing is written).
    """
    path = Path(path)
    fmt = figure_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi)
    return path


#: markers and line styles cycled over systems, so that no two systems look alike in print
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
LINE_STYLES = ("-", "--", "-.", ":")


def system_styles(systems: Sequence[str]) -> dict[str, dict[str, Any]]:
    """A colour (tab10), a marker and a line style per system, distinct for up to 10 systems
    (colours and markers) and in black-and-white print (marker and line style together)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    styles = {}
    for i, s in enumerate(systems):
        styles[s] = {"color": cmap(i % 10), "marker": MARKERS[i % len(MARKERS)], "ls": LINE_STYLES[i % 4]}
    return styles


def snr_offsets(systems: Sequence[str], snrs: Sequence[float]) -> dict[str, float]:
    """Small x-offsets (dB) that spread the systems' points and error bars around each SNR, so
    that equal values do not hide each other: evenly over a third of the closest SNR spacing."""
    values = sorted(set(float(v) for v in snrs))
    spacing = min((b - a for a, b in zip(values, values[1:], strict=False)), default=5.0)
    spread = spacing / 3.0
    n = len(systems)
    if n < 2:
        return {s: 0.0 for s in systems}
    return {s: spread * (i / (n - 1) - 0.5) for i, s in enumerate(systems)}


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


def plot_metric_vs_snr(
    rows: Sequence[Row], path: str | Path, metric: str = "eer", dpi: int = 110
) -> Path | None:
    """``metric`` against SNR: a panel per noise category, a line per system with its interval
    as error bars (each system with its own marker, shifted by a small x-offset so equal values
    stay visible), the clean value as a dashed horizontal line. None when no noisy condition. The
    path's suffix sets the format (PNG, PDF, SVG); ``dpi`` the resolution of a PNG.

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
    styles = system_styles(systems)
    offsets = snr_offsets(systems, [c.snr_db for c in conditions if c.snr_db is not None])
    for ax, group in zip(axes.flat, groups, strict=False):
        noisy = sorted((c for c in group.conditions if not c.is_clean), key=lambda c: c.snr_db or 0.0)
        clean = [c for c in group.conditions if c.is_clean]
        for s in systems:
            pts = [(c.snr_db, index.get((s, c.name), {})) for c in noisy]
            pts = [(x, m) for x, m in pts if _finite(m.get(metric))]
            if pts:
                x = np.array([p[0] for p in pts], dtype=float) + offsets[s]
                y = np.array([p[1][metric] for p in pts], dtype=float)
                low = np.array([p[1].get(f"{metric}_ci_low", np.nan) for p in pts], dtype=float)
                high = np.array([p[1].get(f"{metric}_ci_high", np.nan) for p in pts], dtype=float)
                err = np.vstack([np.nan_to_num(y - low), np.nan_to_num(high - y)]).clip(min=0)
                ax.errorbar(
                    x,
                    y,
                    yerr=err,
                    marker=styles[s]["marker"],
                    ms=4,
                    lw=1.3,
                    capsize=2.5,
                    color=styles[s]["color"],
                    label=s,
                )
            if clean:
                value = index.get((s, clean[0].name), {}).get(metric)
                if _finite(value):
                    ax.axhline(value, ls="--", lw=1.0, color=styles[s]["color"], alpha=0.8)
        ax.set_title(group.title + ("  (dashed: clean)" if clean else ""), fontsize=10)
        ax.set_xlabel("SNR (dB)")
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel(title)
    for ax in list(axes.flat)[len(groups) :]:
        ax.set_visible(False)
    _legend(fig, axes.flat[0])
    return save_figure(fig, Path(path), dpi=dpi)


_DET_TICKS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95)


def plot_det_curves(
    out: str | Path, rows: Sequence[Row], snr_db: float, path: str | Path, dpi: int = 110
) -> Path | None:
    """DET curves at one SNR: a panel per noise category, a line per system (its own colour and
    line style), read from ``OUT/scores/<system>/<condition>.txt``. None when no score file
    exists for that SNR. The path's suffix sets the format; ``dpi`` the resolution of a PNG.

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
    styles = system_styles(systems)
    for ax, (title, curves) in zip(axes.flat, panels, strict=False):
        for s, x, y in curves:
            style = styles[s]
            ax.plot(x, y, lw=1.4, color=style["color"], ls=style["ls"], label=s, drawstyle="steps-post")
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
    return save_figure(fig, Path(path), dpi=dpi)


def default_det_snrs(rows: Sequence[Row]) -> list[float]:
    """0 dB (or the SNR nearest to it) and the lowest SNR present."""
    snrs = sorted({float(r.snr_db) for r in rows if r.snr_db is not None and r.category != "clean"})
    if not snrs:
        return []
    nearest = min(snrs, key=lambda s: (abs(s), -s))
    return list(dict.fromkeys([nearest, snrs[0]]))


def det_name(snr: float, fmt: str = "png") -> str:
    """The file name of the DET figure at ``snr`` in format ``fmt``."""
    return f"det_snr_{_format_snr(snr)}.{fmt}"
