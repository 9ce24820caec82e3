"""scripts/experiments.py: the index read from pages of scripts/levers.py, checked against the
evaluations those pages come from."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from fake_evaluations import evaluation_folder, speech_dir_with_trials, spreads
from helpers import load_script


@pytest.fixture(scope="module")
def experiments():
    return load_script("experiments")


def _run(folder: Path, curve: list[tuple[int, float]], noisy: float) -> Path:
    folder.mkdir(parents=True)
    records = [{"kind": "train", "step": 10, "loss": 1.0}]
    records += [{"kind": "val", "step": s, "eer": e, "eer_noisy": noisy} for s, e in curve]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def _page(levers, monkeypatch, out: Path, folder: Path, runs: list[Path] = ()) -> Path:
    args = ["levers.py", str(folder), "--val", str(folder), "--out", str(out)]
    monkeypatch.setattr(sys, "argv", [*args, *(["--runs", *map(str, runs)] if runs else [])])
    assert levers.main() == 0
    return out


def test_the_index_reads_every_lever_the_question_and_the_scale_curves(
    experiments, levers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    test, trials = speech_dir_with_trials(tmp_path / "test")
    g_systems = {
        "noisy": spreads(0.3, 1.0),
        "gradw-s0": spreads(0.3, 0.9),
        "gradw-s1": spreads(0.3, 0.8),
        "equalw-s0": spreads(0.3, 0.9),
        "equalw-s1": spreads(0.3, 0.95),
    }
    student_systems = {
        "noisy": spreads(0.3, 1.0),
        "relation-s0": spreads(0.3, 0.3),
        "relation-s1": spreads(0.3, 0.35),
        "relation-s0+fuse": spreads(0.3, 0.5),
        "relation-s1+fuse": spreads(0.3, 0.5),
        "joint-s0": spreads(0.3, 4.0),
    }
    g_eval = evaluation_folder(tmp_path / "g" / "eval-ood", test, trials, g_systems)
    s_eval = evaluation_folder(tmp_path / "s" / "eval-ood", test, trials, student_systems)
    runs = [
        _run(tmp_path / "runs" / "gradw-1400-s0", [(200, 18.0), (400, 17.0), (600, 16.5)], 19.0),
        _run(tmp_path / "runs" / "relation-long-s0", [(200, 15.0), (400, 14.0), (600, 14.2)], 19.0),
    ]
    g_page = _page(levers, monkeypatch, tmp_path / "docs" / "g.md", g_eval)
    s_page = _page(levers, monkeypatch, tmp_path / "docs" / "s.md", s_eval, runs)

    out = tmp_path / "docs" / "experiments.md"
    argv = ["experiments.py", str(g_page), str(s_page), "--scale", str(s_page), "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    assert experiments.main() == 0
    text = out.read_text()

    # every lever once per page, with the numbers of the evaluation it came from
    table = text.split("## Every lever on the out-of-domain test")[1].split("\n## ")[0]
    rows = {
        (cells[0], cells[2]): cells
        for cells in (
            [c.strip() for c in line.strip("|").split("|")]
            for line in table.splitlines()
            if line.startswith("| ")
        )
        if cells[0] != "lever"
    }
    assert {name for name, _ in rows} == {"gradw", "equalw", "relation", "relation+fuse", "joint"}
    ev = levers.Evaluation(s_eval)
    noisy = ev.mean("noisy", ev.noisy_conditions)
    relation = ev.seed_mean(["relation-s0", "relation-s1"], ev.noisy_conditions)
    cells = rows["relation", "[s.md](s.md)"]
    assert cells[1] == "student" and cells[3] == "2"
    assert cells[5] == f"{relation:.2f}" and cells[6] == f"{100 * (relation / noisy - 1):+.1f}"
    assert rows["relation+fuse", "[s.md](s.md)"][1] == "student, fused with the noisy embedding"
    assert rows["joint", "[s.md](s.md)"][9] != "none"  # significantly worse than noisy somewhere
    order = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")][1:]
    assert order.index("relation") < order.index("gradw") < order.index("joint")  # most gain first
    assert "Every page measures against the same noisy input" in text

    # the paper's question, as the G page states it
    question = text.split("## The paper's question")[1].split("\n## ")[0]
    assert "**Grad-W against Equal-W** ([g.md](g.md), seeds 0, 1)" in question
    g = levers.Evaluation(g_eval)
    diff, low, high = g.diff(["equalw-s0", "equalw-s1"], ["gradw-s0", "gradw-s1"], g.noisy_conditions)
    assert f"all <= 0 dB: {diff:+.2f} [{low:+.2f}, {high:+.2f}]" in question

    # the scale curves: lowest step, still falling or not, and the figure
    scale = text.split("## Scale")[1].split("\n## ")[0]
    assert "| gradw-1400-s0 | 19.00 | 18.00 | 17.00 | 16.50 | 16.50 (600) | yes |" in scale
    assert "| relation-long-s0 | 19.00 | 15.00 | 14.00 | 14.20 | 14.00 (400) | no |" in scale
    assert (tmp_path / "docs" / "experiments" / "scale.png").stat().st_size > 0
    assert "](experiments/scale.png)" in scale

    # what moved the needle, computed from the rows: who meets the bar, who comes closest
    needle = text.split("## What moved the needle")[1].split("\n## ")[0]
    met = [name for (name, _), cells in rows.items() if cells[10] == "yes" and cells[3] == "2"]
    assert met and f"met by {', '.join(met)}." in needle
    assert "Closest over every condition: **relation** (student, 2 seeds, s.md)" in needle
    assert "1 of 2 scale runs were still falling on validation at their last step (gradw-1400-s0)" in needle
    scale_rel = rows["relation", "[s.md](s.md)"][6]
    assert (
        f"relation (2 seeds) {rows['relation', '[s.md](s.md)'][4]} % on validation, {scale_rel} %" in needle
    )
    assert "joint" not in needle.split("- **Scale**")[0]  # one seed: not weighed (the scale line lists all)

    # why the rest fall short: separation and score shifts as the evaluations give them
    why = text.split("## Why the rest fall short")[1].split("\n## ")[0]

    def sep(evaluation, lever: str) -> float:  # a lever's d' in noise on the test, mean over seeds
        systems = [lever] if lever == "noisy" else [f"{lever}-s0", f"{lever}-s1"]
        return np.mean([levers.separation(*evaluation.scores(s, "noise_0")[:2]) for s in systems])

    assert f"d' = {sep(ev, 'noisy'):.2f} on the test (noise_0)" in why
    # over both pages' levers with two seeds: equalw (spreads 0.9, 0.95) the lowest, relation the highest
    lowest, highest = sep(g, "equalw"), sep(ev, "relation")
    assert f"range from {lowest:.2f} (equalw) to {highest:.2f} (relation)" in why
    scores, labels = ev.scores("relation-s0", "noise_0")[:2]
    target0 = scores[labels.astype(bool)].mean()
    scores, labels = ev.scores("relation-s1", "noise_0")[:2]
    target = (target0 + scores[labels.astype(bool)].mean()) / 2
    assert "**The closest lever, relation** (s.md)" in why and f"→ {target:.3f}" in why
    d, _, _ = ev.diff(["noisy"], ["relation-s0", "relation-s1"], ["babble_0"])
    assert "**Where its gain lies**" in why and f"babble_0 {d:+.2f}" in why  # relation is sure in babble


def test_families_by_name(experiments) -> None:
    def family(name: str) -> str:
        return experiments.Lever(name, "p.md", 2, 1.0, -1.0, -1.0, 1.0, [], False).family

    assert family("gradw") == family("gradw-1400") == family("literal") == "G alone"
    assert family("gradw-adapted") == family("gstudent") == "G then student"
    assert family("relation-long+qfuse") == "student, fused with the noisy embedding"
    assert family("something-else") == "other"


def test_the_needle_when_no_lever_meets_the_bar(experiments) -> None:
    page = experiments.Page(Path("p.md"), "P", [], {})
    page.levers = [
        experiments.Lever("relation", "p.md", 2, 11.0, -20.0, -19.0, 1.78, [], False, rel_val=-32.0),
        experiments.Lever("gradw", "p.md", 3, 13.0, -8.0, +7.0, 1.78, ["music_-5"], False, rel_val=-10.0),
        experiments.Lever("joint", "p.md", 1, 9.0, -40.0, -30.0, 1.78, [], True),  # one seed: not weighed
    ]
    text = "\n".join(experiments.needle_lines([page], None))
    assert "met by no lever with two seeds or more" in text
    assert "Closest over every condition: **relation** (student, 2 seeds, p.md) at -20.0 %" in text
    assert "1 of 2 levers are significantly worse than noisy in no condition" in text
    assert "the mean change is -21.0 % on validation and -14.0 % on the out-of-domain test" in text
    assert text.index("**student**") < text.index("**G alone**") and "joint" not in text


def test_a_page_without_the_bars_test_is_refused_by_name(experiments, tmp_path: Path) -> None:
    page = tmp_path / "notes.md"
    page.write_text("# Notes\n\n## Something\n\ntext\n")
    with pytest.raises(SystemExit, match=r"notes\.md: no section of the bar's test"):
        experiments.read_page(page)


def test_tables_keep_repeated_headers_apart(experiments) -> None:
    header, rows = experiments.parse_tables("| a | rel. | b | rel. |\n|:-|-:|-:|-:|\n| x | 1 | 2 | 3 |\n")[0]
    assert header == ["a", "rel.", "b", "rel."] and rows == [["x", "1", "2", "3"]]
    assert np.isclose(float(rows[0][3]), 3.0)
