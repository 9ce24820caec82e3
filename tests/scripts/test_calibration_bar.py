"""scripts/calibration_bar.py: docs/calibration.md's bar table from evaluation runs, per condition
and pooled, only between its markers."""

from pathlib import Path

import pytest
from helpers import load_script

from gradw.config import EvaluationConfig
from gradw.evaluation.calibration import calibration_loss_floor
from gradw.evaluation.results import Row, write_results


@pytest.fixture(scope="module")
def calibration_bar():
    return load_script("calibration_bar")


def _run(out: Path) -> Path:
    """Two conditions of a calibrated system `g` and an uncalibrated `noisy`."""
    counts = {"n_target": 50, "n_nontarget": 50}
    rows = [
        Row("noisy", "noise_0", "noise", 0.0, False, {"eer": 10.0}),
        Row("g", "noise_0", "noise", 0.0, False, {"eer": 5.0, "cllr": 0.40, "min_cllr": 0.30, **counts}),
        Row("g", "noise_-5", "noise", -5.0, False, {"eer": 20.0, "cllr": 0.90, "min_cllr": 0.70, **counts}),
    ]
    pooled = {"cllr": 0.61, "min_cllr": 0.58, "loss": 0.03, "floor": 0.012}
    out.mkdir(parents=True)
    write_results(
        out,
        EvaluationConfig(test="t", out=str(out)),
        rows,
        elapsed=1.0,
        calibration={"g": {"test_pooled": pooled}},
    )
    return out


def test_rows_give_the_mean_loss_its_floor_and_the_pooled_figures(calibration_bar, tmp_path: Path) -> None:
    rows = calibration_bar.rows_of("in-domain", _run(tmp_path / "eval"))
    floor = (
        calibration_loss_floor(5.0, 50, 50, draws=100) + calibration_loss_floor(20.0, 50, 50, draws=100)
    ) / 2
    assert rows == [["g", "in-domain", "0.150", f"{floor:.3f}", "0.610", "0.580", "0.030", "0.012"]]


def test_only_the_table_between_the_markers_is_replaced(calibration_bar, tmp_path: Path, monkeypatch) -> None:
    run = _run(tmp_path / "eval")
    doc = tmp_path / "calibration.md"
    before, after = "# Calibration\n\ntext before\n", "\ntext after\n"
    doc.write_text(f"{before}{calibration_bar.BEGIN}\nold table\n{calibration_bar.END}{after}")
    monkeypatch.setattr("sys.argv", ["calibration_bar.py", f"ood={run}", "--doc", str(doc)])
    calibration_bar.main()
    text = doc.read_text()
    assert text.startswith(before + calibration_bar.BEGIN + "\n| system | test |")
    assert text.endswith(calibration_bar.END + after)
    assert "old table" not in text and "| g | ood | 0.150 |" in text
