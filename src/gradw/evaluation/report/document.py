"""The benchmark report: Markdown tables and PNG plots made from an evaluation's rows.

``write_report(out, config, rows)`` writes ``OUT/report.md`` and ``OUT/plots/*.png`` (or ``.pdf``, ``.svg``):

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
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from gradw.config import RANDOM_WEIGHTS, EvaluationConfig
from gradw.evaluation.report.plots import (
    FIGURE_FORMATS,
    default_det_snrs,
    det_name,
    plot_det_curves,
    plot_metric_vs_snr,
)
from gradw.evaluation.report.tables import (
    BASELINE,
    METRICS,
    ConditionInfo,
    Group,
    _finite,
    _format_snr,
    condition_groups,
    equalw_system,
    format_calibration_loss_table,
    format_calibration_table,
    format_diff_table,
    format_metric_table,
    format_relative_table,
    format_summary_table,
    format_trials_table,
    order_conditions,
    order_systems,
)
from gradw.evaluation.results import Row
from gradw.fileio import atomic_write

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
    return {k: payload[k] for k in ("command", "elapsed_seconds", "calibration") if k in payload}


def _describe_system(spec: str) -> str:
    """``name`` (plus its checkpoint for ``NAME:PATH`` specs)."""
    spec = spec.strip()
    if ":" not in spec:
        return f"`{spec}`"
    name, path = spec.split(":", 1)
    for form, how in (
        ("@qfuse", ", embeddings fused with noisy by a weight of their SNR estimate"),
        ("@fuse", ", embeddings fused with noisy"),
    ):
        if path.endswith(form):
            return f"`{name}+{form[1:]}` (checkpoint `{path[: -len(form)]}`{how})"
    return f"`{name}` (checkpoint `{path}`)"


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
    if config.get("scorer_checkpoint") == RANDOM_WEIGHTS:
        seed = config.get("seed", 0)
        scorer += f" with **random weights** (initialised from seed {seed}, asked for by name)"
    elif config.get("scorer_checkpoint"):
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
    figure_format: str = "png",
    dpi: int = 110,
) -> Path:
    """Write ``OUT/report.md`` and the plots under ``OUT/plots/`` (see the module docstring).

    Args:
        out: the evaluation directory (score files are read from ``OUT/scores/``; the command
            and elapsed time from ``OUT/results.json`` when present).
        config: the :class:`EvaluationConfig` (or its dict, as :func:`read_results` returns it).
        rows: the evaluation rows.
        det_snrs: SNRs of the DET plots (default: 0 dB, or the nearest SNR, and the lowest SNR).
        max_snr: the summary averages conditions at SNR <= this.
        figure_format: ``png``, ``pdf`` or ``svg`` for the plots (a PDF is linked, not shown).
        dpi: resolution of the PNG plots (and of raster parts of the others).

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

    lines += _calibration_section(rows, groups, systems, _read_meta(out).get("calibration", {}))
    lines += _plot_section(out, rows, det_snrs, figure_format, dpi)
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


def threshold_sentence(system: str, calibration: dict[str, Any]) -> str:
    """One sentence: the default decision threshold of a calibrated system and what it was
    fitted on (``calibration`` as results.json records it). With quality measures the LLR, and so
    the score threshold, depends on the two recordings: the sentence gives it at a few estimated
    SNRs of both sides."""
    start = (
        f"`{system}` accepts a trial when its calibrated LLR is at least 0 (equal target and "
        "non-target priors and costs)"
    )
    fitted = f"the calibration was fitted on {calibration['fitted_on']}."
    by_snr = calibration.get("thresholds_by_snr")
    norm = calibration.get("normalised_by")
    kind = "cosine score" if not norm else "normalised score"
    if norm:
        start += (
            f"; it maps scores normalised by {norm} (so the cosine score it takes also depends on how "
            "the two recordings score against the cohort)"
        )
    if not by_snr:
        return f"{start}, i.e. a {kind} of at least {calibration['threshold']:.3f}; {fitted}"

    def at(value: float | None) -> str:
        return "none (no score)" if value is None or not math.isfinite(value) else f"{value:.3f}"

    moves = ", ".join(f"{at(t)} at {snr} dB" for snr, t in by_snr.items())
    return (
        f"{start}. Its LLR also depends on blind quality measures of the two recordings "
        f"({', '.join(calibration.get('quality_names', []))}), so the {kind} it takes moves with "
        f"their estimated SNR: with both sides at the same estimate, a score of at least {moves}; {fitted}"
    )


def _calibration_section(
    rows: Sequence[Row], groups: Sequence[Group], systems: Sequence[str], calibrations: dict[str, Any]
) -> list[str]:
    """Cllr, min Cllr, actual and minimum DCF of the systems whose checkpoint carries a
    calibration, and their default thresholds."""
    if not any("cllr" in r.metrics for r in rows):
        return []
    lines = [
        "## Calibration",
        "",
        "LLRs from the calibration stored with each checkpoint (fitted on the validation speakers "
        "and the validation noise, over the grid it names; quality-aware when it uses quality "
        "measures of the recordings). Cells: Cllr (min Cllr) in bits; actual DCF (minDCF) at "
        "P_target = 0.01. Cllr - min Cllr is the cost of miscalibration in that condition "
        "(min Cllr: the best monotonic map fitted on that condition's own trials).",
        "",
    ]
    lines += [threshold_sentence(s, calibrations[s]) for s in systems if s in calibrations]
    lines += [""] if calibrations else []
    lines += _grouped_tables(rows, groups, lambda cs: format_calibration_table(rows, cs, systems))
    lines += [
        "Cllr - min Cllr per condition (bits), and the means over every condition (mean floor: the "
        "loss a perfectly calibrated system with the same EER would show on as many trials, since "
        "min Cllr is fitted on the trials it judges):",
        "",
    ]
    lines += [format_calibration_loss_table(rows, None, systems).rstrip("\n"), ""]
    pooled = [
        pooled_sentence(s, calibrations[s]["test_pooled"])
        for s in systems
        if "test_pooled" in calibrations.get(s, {})
    ]
    return lines + (pooled + [""] if pooled else [])


def pooled_sentence(system: str, pooled: dict[str, float]) -> str:
    """One line on a system's LLRs pooled over every condition of the evaluation."""
    return (
        f"- {system}, every condition pooled ({pooled['n_trials']:,} trials): Cllr {pooled['cllr']:.3f}, "
        f"min Cllr of its LLRs {pooled['min_cllr']:.3f}, loss {pooled['loss']:.3f} bits "
        f"(a perfect calibration: {pooled['floor']:.3f} at these counts)"
    )


def _plot_section(
    out: Path, rows: Sequence[Row], det_snrs: Sequence[float] | None, fmt: str = "png", dpi: int = 110
) -> list[str]:
    if fmt not in FIGURE_FORMATS:
        raise ValueError(f"figure format {fmt!r}: choose one of {', '.join(FIGURE_FORMATS)}")
    plots = out / "plots"
    lines = ["## Plots", ""]
    try:
        made: list[tuple[str, Path]] = []
        eer_plot = plot_metric_vs_snr(rows, plots / f"eer_vs_snr.{fmt}", dpi=dpi)
        if eer_plot is not None:
            made.append(("EER vs SNR (error bars: 95 % interval; dashed: clean)", eer_plot))
        snrs = list(det_snrs) if det_snrs is not None else default_det_snrs(rows)
        for snr in snrs:
            path = plot_det_curves(out, rows, snr, plots / det_name(snr, fmt), dpi=dpi)
            if path is not None:
                made.append((f"DET curves at {_format_snr(snr)} dB", path))
        wanted = {path.name for _, path in made}
        for pattern in ("det_snr_*", "eer_vs_snr.*"):  # figures of an earlier report, any format
            for stale in plots.glob(pattern) if plots.is_dir() else []:
                if stale.name not in wanted and stale.suffix.lstrip(".") in FIGURE_FORMATS:
                    stale.unlink()
    except ImportError as exc:
        warnings.warn(f"report plots skipped: {exc}", stacklevel=3)
        return lines + [f"_Plots skipped: {exc}._", ""]
    if not made:
        return lines + ["_No noisy condition or score file to plot._", ""]
    for caption, path in made:
        # Markdown viewers show PNG and SVG images; a PDF is a link
        lines += [f"{'' if fmt == 'pdf' else '!'}[{caption}](plots/{path.name})", ""]
    return lines


def _write_text(path: Path, text: str) -> Path:
    """Write a text file atomically."""
    return atomic_write(path, text)
