"""scripts/levers.py: levers with seeds, their means, the bar and the paired intervals, from
evaluation folders with score files."""

import sys
from pathlib import Path

import numpy as np
import pytest
from fake_evaluations import evaluation_folder, speech_dir_with_trials, spreads


def test_levers_means_bar_and_paired_intervals(
    levers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    test, trials = speech_dir_with_trials(tmp_path / "test")
    systems = {
        "noisy": spreads(0.3, 1.0),
        "good-s0": spreads(0.3, 0.4),
        "good-s1": spreads(0.3, 0.5),
        "bad-s0": spreads(0.3, 4.0),
        "bad-s1": spreads(0.3, 4.0),
        "good-s0+fuse": spreads(0.3, 0.2),
    }
    folder = evaluation_folder(tmp_path / "eval-ood", test, trials, systems)
    ev = levers.Evaluation(folder)
    assert levers.lever_of("good-s1") == ("good", 1) and levers.lever_of("good-s0+fuse") == ("good+fuse", 0)
    assert levers.lever_of("good-s2+qfuse") == ("good+qfuse", 2)
    assert levers.lever_of("noisy") == ("noisy", None)
    assert ev.noisy_conditions == ["noise_0", "music_-5", "babble_0"] and ev.clean == ["clean"]

    text = "\n".join(levers.summary_lines(ev))
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
        for line in text.splitlines()[2:]
    }
    good = [ev.mean(s, ev.noisy_conditions) for s in ("good-s0", "good-s1")]
    assert rows["good"][1] == f"{good[0]:.2f}, {good[1]:.2f}" and rows["good"][2] == f"{np.mean(good):.2f}"
    noisy = ev.mean("noisy", ev.noisy_conditions)
    assert rows["good"][3] == f"{100 * (np.mean(good) / noisy - 1):+.1f}"
    assert rows["good"][-1] == "yes" and rows["good"][-2] == "none"
    assert rows["bad"][-1] == "no" and "noise_0" in rows["bad"][-2]  # significantly worse there

    # the paired interval of a mean over conditions averages the per-condition samples
    diff, low, high = ev.diff(["noisy"], ["good-s0", "good-s1"], ev.noisy_conditions)
    expected = np.mean(
        [
            np.mean([ev.eer[s, c] for s in ("good-s0", "good-s1")]) - ev.eer["noisy", c]
            for c in ev.noisy_conditions
        ]
    )
    assert diff == pytest.approx(expected, abs=1e-9) and low <= diff <= high < 0

    # Grad-W against Equal-W appears only when both levers have shared seeds
    assert levers.paper_question_lines(ev) == []
    assert "good − bad" in "\n".join(levers.paper_question_lines(ev, a="bad", b="good"))

    # the choice: the lowest mean over at least two seeds (good+fuse has one seed: ranked, not chosen)
    lines, chosen = levers.choice_lines(ev)
    assert chosen == "good" and "| 1 | good+fuse | 1 |" in "\n".join(lines)
    assert levers.choice_lines(ev, min_seeds=3)[1] is None

    out = tmp_path / "levers.md"
    monkeypatch.setattr(sys, "argv", ["levers.py", str(folder), "--val", str(folder), "--out", str(out)])
    assert levers.main() == 0
    document = out.read_text()
    assert "## eval-ood: `pool` (the bar's test)" in document and "| good+fuse |" in document
    assert "Chosen on validation: **good**." in document
    needle = document.split("## What moved the needle")[1]
    assert (
        needle.index("**good+fuse**") < needle.index("**good**") < needle.index("**bad**")
    )  # most gain first
    bad_line = next(line for line in needle.splitlines() if line.startswith("- **bad**"))
    assert "worse in " in bad_line and "noise_0" in bad_line.split("worse in ")[1]

    # why: d' per category against a direct computation, and the section in the document
    scores, labels = ev.scores("good-s0", "noise_0")[:2]
    target, nontarget = scores[labels.astype(bool)], scores[~labels.astype(bool)]
    expected_d = (target.mean() - nontarget.mean()) / np.sqrt((target.var() + nontarget.var()) / 2)
    assert levers.separation(scores, labels) == pytest.approx(expected_d)
    table = "\n".join(levers.separation_lines(ev, ev))
    good_row = next(line for line in table.splitlines() if line.startswith("| good |"))
    cells = [c.strip() for c in good_row.split("|")[2:-1]]
    mean_d = np.mean([levers.separation(*ev.scores(s, "noise_0")[:2]) for s in ("good-s0", "good-s1")])
    assert cells[0] == cells[1] == f"{mean_d:.2f}"  # noise: validation, test (the same folder here)
    bad_row = next(line for line in table.splitlines() if line.startswith("| bad |"))
    assert float(bad_row.split("|")[2]) < float(cells[0])  # the noisier lever separates less
    assert "### Why the rest falls short: separation per category" in document
    assert document.startswith("# Levers beyond the paper, with seeds") and levers.SPLIT_NOTE in document

    # a page of its own: another title and another note on the validation split
    args = ["--out", str(out), "--title", "Two levers", "--split-note", "Chosen on the ten-speaker split."]
    monkeypatch.setattr(sys, "argv", ["levers.py", str(folder), "--val", str(folder), *args])
    assert levers.main() == 0
    document = out.read_text()
    assert document.startswith("# Two levers\n") and "Chosen on the ten-speaker split." in document
    assert levers.SPLIT_NOTE not in document
