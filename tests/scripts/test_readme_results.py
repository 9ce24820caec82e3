"""scripts/readme_results.py: the README's results section from the in-domain and the
out-of-domain evaluation runs, each labelled, with their EERs side by side."""

import sys
from pathlib import Path

import pytest
from helpers import load_script

from gradw.config import EvaluationConfig
from gradw.evaluation.results import Row, write_results


@pytest.fixture(scope="module")
def readme_results():
    return load_script("readme_results")


def _run(out: Path, eers: dict[str, dict[str, float]]) -> Path:
    """A results folder as ``gradw evaluate`` writes it: system -> condition -> EER."""
    rows = []
    for system, by_condition in eers.items():
        for condition, eer in by_condition.items():
            category, _, snr = condition.partition("_")
            rows.append(Row(system, condition, category, float(snr) if snr else None, False, {"eer": eer}))
    out.mkdir(parents=True)
    write_results(out, EvaluationConfig(test="t", out=str(out)), rows, elapsed=60.0)
    return out


IN_DOMAIN = {
    "noisy": {"clean": 1.0, "noise_0": 10.0, "noise_-5": 20.0, "noise_-10": 40.0},
    "gradw": {"clean": 1.0, "noise_0": 5.0, "noise_-5": 10.0, "noise_-10": 30.0},
}
OUT_OF_DOMAIN = {
    "noisy": {"clean": 1.0, "noise_0": 12.0, "noise_-5": 24.0},
    "gradw": {"clean": 1.0, "noise_0": 11.0, "noise_-5": 22.0},
}


def test_both_runs_are_shown_and_compared_on_shared_conditions(readme_results, tmp_path: Path) -> None:
    eval_dir = _run(tmp_path / "eval", IN_DOMAIN)
    ood_dir = _run(tmp_path / "eval-ood", OUT_OF_DOMAIN)
    text = readme_results.section(eval_dir, ood_dir)
    assert text.startswith(readme_results.BEGIN) and text.endswith(readme_results.END)
    head, ood_part = text.split("### Out-of-domain test (`augment/test-ood`)")
    assert "### In-domain test (`augment/test`)" in head and f"--ood {ood_dir}" in head
    # the comparison averages noise_0 and noise_-5 only (the -10 dB the out-of-domain run lacks is left out)
    assert "(noise_0, noise_-5)" in ood_part
    lines = [line for line in ood_part.splitlines() if line.startswith("| gradw |")]
    assert lines[0] == "| gradw | 7.50 | 16.50 | -50.0 | -8.3 |"  # (5+10)/2 vs (10+20)/2; (11+22)/2 vs 18
    assert lines[0].count("|") == 6
    assert "| noisy | 15.00 | 18.00 | – | – |" in ood_part
    assert ood_part.count("Mean EER over the conditions at or below 0 dB:") == 1


def test_main_finds_the_out_of_domain_run_beside_the_in_domain_one(
    readme_results, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{readme_results.BEGIN}\nSTALE TABLE\n{readme_results.END}\noutro\n")
    eval_dir = _run(tmp_path / "exp" / "eval", IN_DOMAIN)
    monkeypatch.setattr(sys, "argv", ["readme_results.py", str(eval_dir), "--readme", str(readme)])
    assert readme_results.main() == 0
    alone = readme.read_text()
    assert "STALE TABLE" not in alone and alone.startswith("intro\n") and alone.endswith("outro\n")
    assert "Out-of-domain" not in alone  # no eval-ood beside it: the in-domain run alone
    _run(tmp_path / "exp" / "eval-ood", OUT_OF_DOMAIN)
    assert readme_results.main() == 0
    both = readme.read_text()
    assert "### In-domain test" in both and "### Out-of-domain test" in both


def test_systems_of_the_out_of_domain_run_alone_are_named(readme_results, tmp_path: Path) -> None:
    eval_dir = _run(tmp_path / "eval", IN_DOMAIN)
    peer = {"rnnoise": {"clean": 1.0, "noise_0": 30.0, "noise_-5": 40.0}}
    ood_dir = _run(tmp_path / "eval-ood", {**OUT_OF_DOMAIN, **peer})
    text = readme_results.section(eval_dir, ood_dir)
    _, ood_part = text.split("### Out-of-domain test (`augment/test-ood`)")
    assert "`rnnoise` ran on the out-of-domain test only" in ood_part
    assert "`gradw` ran" not in text  # a system of both runs is not named
    assert readme_results.only_out_of_domain([], []) == []


def test_the_pooled_calibration_is_stated_when_the_run_has_it(readme_results) -> None:
    pooled = {"cllr": 0.4944, "min_cllr": 0.4846, "loss": 0.0098, "n_trials": 9000, "floor": 0.0065}
    clause = readme_results.pooled_clause({"test_pooled": pooled})
    assert clause == (
        " Pooled over every condition (9,000 trials) its LLRs give a Cllr of 0.494 bits against a min "
        "Cllr of 0.485: 0.010 bits lost to calibration (a perfect one would show 0.006 on as many trials)."
    )
    assert readme_results.pooled_clause({}) == ""  # a run from before the pooled reading
