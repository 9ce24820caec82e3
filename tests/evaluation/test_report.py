"""Tests for the benchmark report (gradw.evaluation.report)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

from gradw.cli.common import FORMATS
from gradw.cli.report import register as register_report
from gradw.config import EvaluationConfig
from gradw.data.lists import DataError
from gradw.evaluation.report.document import write_report
from gradw.evaluation.report.plots import (
    FIGURE_FORMATS,
    FigureError,
    default_det_snrs,
    figure_format,
    new_figure,
    save_figure,
    snr_offsets,
    system_styles,
)
from gradw.evaluation.report.tables import (
    condition_groups,
    equalw_system,
    format_cell,
    format_diff_cell,
    format_metric_table,
    format_summary_table,
    format_table,
    order_conditions,
    summary_table,
)
from gradw.evaluation.results import Row, read_results, write_results
from gradw.evaluation.scoring import write_scores

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SYSTEMS = ("noisy", "equalw", "gradw")
# condition -> (category, snr): given out of order on purpose
CONDITIONS = {
    "noise_-5": ("noise", -5.0),
    "clean": ("clean", None),
    "music_0": ("music", 0.0),
    "noise_0": ("noise", 0.0),
    "music_-5": ("music", -5.0),
    "noise_5": ("noise", 5.0),
}
# EER (%) per system x condition: the best of each column is known
EER = {
    "noisy": {
        "clean": 2.0,
        "noise_5": 6.0,
        "noise_0": 12.0,
        "noise_-5": 30.0,
        "music_0": 10.0,
        "music_-5": 20.0,
    },
    "equalw": {
        "clean": 2.5,
        "noise_5": 5.0,
        "noise_0": 10.0,
        "noise_-5": 25.0,
        "music_0": 9.0,
        "music_-5": 18.0,
    },
    "gradw": {
        "clean": 2.2,
        "noise_5": 5.5,
        "noise_0": 11.0,
        "noise_-5": 20.0,
        "music_0": 8.0,
        "music_-5": 16.0,
    },
}
# paired difference vs noisy (points) and interval: some exclude 0, some do not
DIFF = {
    ("gradw", "noise_-5"): (-10.0, -12.0, -8.0),  # significant improvement
    ("equalw", "noise_0"): (-2.0, -4.0, 0.5),  # interval includes 0
    ("equalw", "clean"): (0.5, 0.1, 0.9),  # significantly worse
}


def _metrics(system: str, condition: str) -> dict[str, float]:
    eer = EER[system][condition]
    m = {
        "eer": eer,
        "eer_ci_low": eer - 1.0,
        "eer_ci_high": eer + 1.5,
        "min_dcf_0.01": min(1.0, eer / 25),
        "min_dcf_0.01_ci_low": min(1.0, eer / 25) - 0.01,
        "min_dcf_0.01_ci_high": min(1.0, eer / 25 + 0.02),
        "min_dcf_0.05": eer / 40,
        "min_dcf_0.05_ci_low": eer / 40 - 0.01,
        "min_dcf_0.05_ci_high": eer / 40 + 0.01,
        "n_trials": 200,
        "n_target": 40,
        "n_nontarget": 160,
        "n_speakers": 8,
    }
    if system != "noisy":
        base = EER["noisy"][condition]
        diff, low, high = DIFF.get((system, condition), (eer - base, eer - base - 1.0, eer - base + 1.0))
        m.update({"eer_diff_vs_noisy": diff, "eer_diff_low": low, "eer_diff_high": high})
    return m


def make_rows() -> list[Row]:
    return [
        Row(s, c, cat, snr, False, _metrics(s, c)) for s in SYSTEMS for c, (cat, snr) in CONDITIONS.items()
    ]


def write_score_files(out: Path, rows: list[Row]) -> None:
    """Gaussian scores whose separation shrinks as the EER grows."""
    rng = np.random.default_rng(0)
    labels = np.array([True] * 40 + [False] * 160)
    trials = [(f"e{i}", f"t{i}", bool(label)) for i, label in enumerate(labels)]
    for row in rows:
        shift = 3.0 - row.metrics["eer"] / 12
        scores = rng.normal(size=labels.size) + shift * labels
        write_scores(out / "scores" / row.system / f"{row.condition}.txt", trials, scores)


def _table_cells(table: str) -> dict[str, list[str]]:
    """Markdown table -> first cell -> the other cells."""
    cells = {}
    for line in table.strip().splitlines()[2:]:
        parts = [p.strip() for p in line.strip().strip("|").split("|")]
        cells[parts[0]] = parts[1:]
    return cells


def _header(table: str) -> list[str]:
    return [p.strip() for p in table.strip().splitlines()[0].strip().strip("|").split("|")]


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5000


# ---------------------------------------------------------------------------------------------
# helpers


def test_format_table_layout_and_errors() -> None:
    table = format_table(["system", "a|b"], [["x", "1"], ["y", "2"]])
    lines = table.splitlines()
    assert lines[0] == "| system | a\\|b |"
    assert lines[1] == "|:---|---:|"
    assert lines[3] == "| y | 2 |"
    with pytest.raises(ValueError, match="row 0 has 1 cells"):
        format_table(["a", "b"], [["x"]])


def test_format_cells_and_significance_mark() -> None:
    assert format_cell(4.123, 3.5, 4.8) == "4.12 [3.50, 4.80]"
    assert format_cell(0.41234, digits=3) == "0.412"
    assert format_cell(None) == "–"
    assert format_cell(float("nan"), 1.0, 2.0) == "–"
    assert format_diff_cell(-2.1, -3.0, -1.2) == "-2.10 [-3.00, -1.20] ✓"
    assert format_diff_cell(-0.5, -1.5, 0.5) == "-0.50 [-1.50, +0.50]"
    assert format_diff_cell(1.0, 0.2, 1.8).endswith("✓")  # significantly worse is marked too
    assert format_diff_cell(0.3, None, None) == "+0.30"


def test_condition_order_and_groups() -> None:
    rows = make_rows() + [Row("noisy", "noise_0_rev", "noise", 0.0, True, _metrics("noisy", "noise_0"))]
    names = [c.name for c in order_conditions(rows)]
    assert names == ["clean", "noise_5", "noise_0", "noise_-5", "music_0", "music_-5", "noise_0_rev"]
    groups = condition_groups(order_conditions(rows))
    assert [g.title for g in groups] == ["noise", "music", "noise, reverberant"]
    assert [c.name for c in groups[0].conditions] == ["clean", "noise_5", "noise_0", "noise_-5"]
    assert [c.name for c in groups[2].conditions] == ["noise_0_rev"]  # no clean_rev to lead it


def test_equalw_detection() -> None:
    assert equalw_system(["noisy", "Equal-W", "gradw"]) == "Equal-W"
    assert equalw_system(["noisy", "equal_w"]) == "equal_w"
    assert equalw_system(["noisy", "gradw"]) is None


def test_metric_table_bolds_the_lowest_of_each_column() -> None:
    rows = make_rows()
    table = format_metric_table(rows, "eer")
    header = _header(table)
    cells = _table_cells(table)
    assert header == ["system", "clean", "5 dB", "0 dB", "-5 dB", "0 dB", "-5 dB"]
    assert cells["noisy"][0] == "**2.00 [1.00, 3.50]**"  # best clean
    assert cells["gradw"][0] == "2.20 [1.20, 3.70]"
    assert cells["equalw"][1].startswith("**5.00")  # best at noise 5 dB
    assert cells["gradw"][3] == "**20.00 [19.00, 21.50]**"  # best at noise -5 dB
    assert all(not cells["noisy"][i].startswith("**") for i in range(1, 6))
    # exactly one bold cell per column
    for col in range(6):
        assert sum(cells[s][col].startswith("**") for s in SYSTEMS) == 1


def test_summary_table_means_and_relative_changes() -> None:
    table = format_summary_table(make_rows())
    header = _header(table)
    assert header[:5] == ["system", "clean", "noise", "music", "all <= 0 dB"]
    cells = _table_cells(table)
    low = ["noise_0", "noise_-5", "music_0", "music_-5"]
    means = {s: float(np.mean([EER[s][c] for c in low])) for s in SYSTEMS}
    assert cells["gradw"][3] == f"**{means['gradw']:.2f}**"
    assert cells["noisy"][1] == f"{np.mean([12.0, 30.0]):.2f}"
    rel_noisy = 100 * (means["gradw"] - means["noisy"]) / means["noisy"]
    rel_equalw = 100 * (means["gradw"] - means["equalw"]) / means["equalw"]
    assert cells["gradw"][4] == f"{rel_noisy:+.1f}"
    assert cells["gradw"][5] == f"{rel_equalw:+.1f}"
    assert cells["noisy"][4] == "–"


def test_summary_table_plain_text() -> None:
    text = summary_table(make_rows())
    assert "[noise]" in text and "[music]" in text
    lines = {line.split()[0]: line for line in text.splitlines() if line and line.split()[0] in SYSTEMS}
    assert "20.00*" in text and "2.00*" in text
    assert "30.00*" not in text
    assert len(lines) == 3


def test_default_det_snrs() -> None:
    rows = make_rows()
    assert default_det_snrs(rows) == [0.0, -5.0]
    only = [r for r in rows if r.snr_db is None or r.snr_db > 0]
    assert default_det_snrs(only) == [5.0]


# ---------------------------------------------------------------------------------------------
# the report


@pytest.fixture()
def evaluation(tmp_path: Path) -> tuple[Path, EvaluationConfig, list[Row]]:
    out = tmp_path / "eval"
    out.mkdir()
    rows = make_rows()
    write_score_files(out, rows)
    config = EvaluationConfig(
        test="data/test",
        out=str(out),
        systems=["noisy", "equalw:exp/equalw/last.pt", "gradw:exp/gradw/last.pt"],
        augment="data/augment",
        categories=["noise", "music"],
        snrs=[5, 0, -5],
        n_boot=50,
    )
    write_results(out, config, rows, elapsed=125.0)
    return out, config, rows


def test_write_report_tables_and_plots(evaluation: tuple[Path, EvaluationConfig, list[Row]]) -> None:
    out, config, rows = evaluation
    path = write_report(out, config, rows)
    assert path == out / "report.md"
    text = path.read_text(encoding="utf-8")
    for system in SYSTEMS:
        assert f"| {system} |" in text
    for condition in CONDITIONS:
        assert f"| {condition} |" in text  # the trials table lists every condition
    assert "`exp/gradw/last.pt`" in text and "`exp/equalw/last.pt`" in text
    assert "both sides of every trial corrupted" in text
    assert "2 min 05 s" in text
    assert "Command:" in text
    assert "| 200 | 40 | 160 | 8 |" in text
    assert "**20.00 [19.00, 21.50]**" in text  # best EER at noise -5 dB, with its interval
    assert "-10.00 [-12.00, -8.00] ✓" in text
    assert "-2.00 [-4.00, +0.50] |" in text  # interval includes 0: no mark
    assert "+0.50 [+0.10, +0.90] ✓" in text
    assert "## Relative EER change vs `noisy` (%)" in text
    assert "## Relative EER change vs `equalw` (%)" in text
    versus_equalw = text.split("## Relative EER change vs `equalw` (%)")[1].split("\n## ")[0]
    assert "| gradw |" in versus_equalw and "| noisy |" not in versus_equalw
    rel = 100 * (EER["gradw"]["noise_-5"] - EER["equalw"]["noise_-5"]) / EER["equalw"]["noise_-5"]
    assert f"| gradw | {100 * (2.2 - 2.5) / 2.5:+.1f} |" in versus_equalw
    assert f"{rel:+.1f} |" in versus_equalw
    for title in ("EER (%)", "minDCF (P_target = 0.01)", "minDCF (P_target = 0.05)"):
        assert f"## {title}" in text
    plots = out / "plots"
    for name in ("eer_vs_snr.png", "det_snr_0.png", "det_snr_-5.png"):
        assert _is_png(plots / name), name
        assert f"(plots/{name})" in text


def test_report_from_read_results_and_custom_det_snrs(
    evaluation: tuple[Path, EvaluationConfig, list[Row]],
) -> None:
    out, _, _ = evaluation
    config, rows = read_results(out)
    (out / "plots").mkdir(exist_ok=True)
    (out / "plots" / "det_snr_-20.png").write_bytes(PNG_MAGIC)  # stale, from an older run
    text = write_report(out, config, rows, det_snrs=[5.0]).read_text(encoding="utf-8")
    assert _is_png(out / "plots" / "det_snr_5.png")
    assert not (out / "plots" / "det_snr_-20.png").exists()
    assert "(plots/det_snr_5.png)" in text and "det_snr_0.png" not in text


def test_report_without_matplotlib_still_writes_tables(
    evaluation: tuple[Path, EvaluationConfig, list[Row]], monkeypatch: pytest.MonkeyPatch
) -> None:
    out, config, rows = evaluation
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.warns(UserWarning, match="matplotlib is not installed"):
        text = write_report(out, config, rows).read_text(encoding="utf-8")
    assert "Plots skipped: matplotlib is not installed" in text
    assert "gradw[plots]" in text
    assert "**20.00 [19.00, 21.50]**" in text
    assert not (out / "plots").exists()


def test_report_without_noisy_baseline(tmp_path: Path) -> None:
    rows = [r for r in make_rows() if r.system != "noisy"]
    for r in rows:
        for key in ("eer_diff_vs_noisy", "eer_diff_low", "eer_diff_high"):
            r.metrics.pop(key)
    text = write_report(tmp_path, {"test": "t", "systems": ["equalw", "gradw"]}, rows).read_text("utf-8")
    assert "no paired EER differences" in text
    assert "Relative EER change vs `equalw`" in text
    assert "Relative EER change vs `noisy`" not in text
    assert "_No noisy condition or score file to plot._" not in text  # the EER plot needs no scores
    assert _is_png(tmp_path / "plots" / "eer_vs_snr.png")
    assert not list((tmp_path / "plots").glob("det_*.png"))  # no score files: no DET plot
    assert re.search(r"\| gradw \| \*\*", text)


def test_report_command(
    evaluation: tuple[Path, EvaluationConfig, list[Row]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    out, _, _ = evaluation
    parser = argparse.ArgumentParser(prog="gradw")
    register_report(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["report", str(out), "--det-snrs", "5"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "[noise]" in printed and f"report: {out / 'report.md'}" in printed
    assert _is_png(out / "plots" / "det_snr_5.png")
    args = parser.parse_args(["report", str(tmp_path / "nothing")])
    with pytest.raises(DataError, match="no results.json"):
        args.func(args)
    args = parser.parse_args(["report", str(out), "--det-snrs", "zero"])
    with pytest.raises(DataError, match="--det-snrs"):
        args.func(args)


@pytest.mark.parametrize(
    ("name", "magic"),
    [("f.png", (PNG_MAGIC,)), ("f.PDF", (b"%PDF",)), ("f.svg", (b"<?xml", b"<svg"))],
)
def test_a_figure_is_written_in_the_format_its_suffix_names(tmp_path: Path, name: str, magic: tuple) -> None:
    pytest.importorskip("matplotlib")
    fig = new_figure(2.0, 1.5)
    fig.add_subplot().plot([0, 1], [1, 0])
    path = save_figure(fig, tmp_path / "sub" / name)
    assert path == tmp_path / "sub" / name and path.read_bytes().startswith(magic)
    assert sorted(p.name for p in path.parent.iterdir()) == [name]  # no temporary file left
    assert figure_format(path) == name.rsplit(".", 1)[1].lower()


@pytest.mark.parametrize("name", ["f.jpg", "f", "f.png.bak"])
def test_a_figure_suffix_that_names_no_format_is_refused(tmp_path: Path, name: str) -> None:
    pytest.importorskip("matplotlib")
    with pytest.raises(FigureError, match=r"a figure is written as \.png, \.pdf, \.svg") as info:
        save_figure(new_figure(2.0, 1.5), tmp_path / name)
    assert "\n" not in str(info.value) and str(tmp_path / name) in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_mean_eer_at_low_snr_keeps_dry_conditions_at_or_below_the_snr() -> None:
    from gradw.evaluation.report.tables import mean_eer_at_low_snr
    from gradw.evaluation.results import Row

    def row(system: str, category: str, snr: float | None, eer: float, reverb: bool = False) -> Row:
        name = category if snr is None else f"{category}_{snr:g}" + ("_rev" if reverb else "")
        return Row(system, name, category, snr, reverb, {"eer": eer})

    rows = [
        row("a", "clean", None, 1.0),
        row("a", "noise", 5.0, 100.0),  # above 0 dB: out
        row("a", "noise", 0.0, 10.0),
        row("a", "noise", -5.0, 20.0),
        row("a", "music", -5.0, 30.0),
        row("a", "noise", -5.0, 90.0, reverb=True),  # reverberant: out
        row("b", "babble", 0.0, 40.0),
    ]
    assert mean_eer_at_low_snr(rows) == {"a": 20.0, "b": 40.0}
    assert mean_eer_at_low_snr(rows, ("noise",)) == {"a": 15.0}
    assert mean_eer_at_low_snr(rows, ("noise",), max_snr=5.0) == {"a": pytest.approx(130 / 3)}


def _png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    header = path.read_bytes()[:24]
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


@pytest.mark.parametrize(("fmt", "magic"), [("pdf", b"%PDF"), ("svg", b"<?xml")])
def test_report_plots_in_another_format_replace_the_old_ones(
    evaluation: tuple[Path, EvaluationConfig, list[Row]], fmt: str, magic: bytes
) -> None:
    pytest.importorskip("matplotlib")
    out, config, rows = evaluation
    write_report(out, config, rows)  # PNG first
    text = write_report(out, config, rows, figure_format=fmt).read_text(encoding="utf-8")
    names = sorted(p.name for p in (out / "plots").iterdir())
    assert names == sorted(f"{n}.{fmt}" for n in ("eer_vs_snr", "det_snr_0", "det_snr_-5"))
    assert all((out / "plots" / n).read_bytes().startswith(magic) for n in names)
    shown = "[" if fmt == "pdf" else "!["  # a PDF is linked, an SVG shown
    assert f"{shown}EER vs SNR (error bars: 95 % interval; dashed: clean)](plots/eer_vs_snr.{fmt})" in text


def test_report_dpi_sets_the_png_resolution(evaluation: tuple[Path, EvaluationConfig, list[Row]]) -> None:
    pytest.importorskip("matplotlib")
    out, config, rows = evaluation
    write_report(out, config, rows, dpi=100)
    low = _png_size(out / "plots" / "eer_vs_snr.png")
    write_report(out, config, rows, dpi=200)
    high = _png_size(out / "plots" / "eer_vs_snr.png")
    assert high[0] == pytest.approx(2 * low[0], abs=4) and high[1] == pytest.approx(2 * low[1], abs=4)


def test_systems_get_distinct_markers_and_spread_x_offsets() -> None:
    pytest.importorskip("matplotlib")
    systems = [f"s{i}" for i in range(6)]
    styles = system_styles(systems)
    assert len({v["marker"] for v in styles.values()}) == 6
    assert len({(v["color"], v["ls"]) for v in styles.values()}) == 6
    offsets = snr_offsets(systems, [0, -5, -10, 5])
    values = [offsets[s] for s in systems]
    assert values == sorted(values) and len(set(values)) == 6  # every system at its own x
    assert values[0] == pytest.approx(-values[-1]) and values[-1] - values[0] == pytest.approx(5 / 3)
    assert snr_offsets(["only"], [0, -5]) == {"only": 0.0}
    assert FORMATS == FIGURE_FORMATS  # the CLI's choices are the formats the figures are written in


def test_report_command_figure_options(
    evaluation: tuple[Path, EvaluationConfig, list[Row]], capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    from gradw.cli.main import main

    out, _, _ = evaluation
    assert main(["report", str(out), "--figure-format", "svg", "--dpi", "300"]) == 0
    assert (out / "plots" / "eer_vs_snr.svg").is_file()
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:  # argparse: usage and one error line, status 2
        main(["report", str(out), "--dpi", "10"])
    assert info.value.code == 2
    assert "argument --dpi: must be in [50, 1200]: 10" in capsys.readouterr().err


def test_calibration_loss_table_and_threshold_sentences() -> None:
    from gradw.evaluation.calibration import calibration_loss_floor
    from gradw.evaluation.report.document import threshold_sentence
    from gradw.evaluation.report.tables import format_calibration_loss_table

    counts = {"n_target": 50, "n_nontarget": 400}
    rows = [
        Row("gradw", "clean", "clean", None, False, {"cllr": 0.2, "min_cllr": 0.1, "eer": 5.0, **counts}),
        Row("gradw", "noise_0", "noise", 0.0, False, {"cllr": 0.5, "min_cllr": 0.2, "eer": 20.0, **counts}),
        Row("noisy", "clean", "clean", None, False, {"min_cllr": 0.1}),
    ]
    table = format_calibration_loss_table(rows)
    assert table.splitlines()[0].endswith("| mean Cllr | mean min Cllr | mean loss | mean floor |")
    floor = (
        calibration_loss_floor(5.0, 50, 400, draws=100) + calibration_loss_floor(20.0, 50, 400, draws=100)
    ) / 2
    assert (
        f"| gradw | 0.100 | 0.300 | 0.350 | 0.150 | 0.200 | {floor:.3f} |" in table and "noisy" not in table
    )
    assert 0.0 < floor < 0.2
    plain = {"threshold": 0.4321, "fitted_on": "validation: 6 speakers"}
    assert "a cosine score of at least 0.432; the calibration was fitted on validation" in threshold_sentence(
        "gradw", plain
    )
    aware = {
        "threshold": None,
        "thresholds_by_snr": {"15": 0.41, "0": 0.55, "-10": None},
        "quality_names": ["min_snr_percentile", "max_snr_percentile"],
        "fitted_on": "validation: 6 speakers",
    }
    sentence = threshold_sentence("gradw", aware)
    assert "LLR is at least 0" in sentence and "min_snr_percentile" in sentence
    assert "0.410 at 15 dB, 0.550 at 0 dB, none (no score) at -10 dB" in sentence
