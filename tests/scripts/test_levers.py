"""scripts/levers.py: levers with seeds, their means, the bar and the paired intervals, from
evaluation folders with score files."""

import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import load_script

from gradw.config import EvaluationConfig
from gradw.evaluation.metrics import eer
from gradw.evaluation.results import Row, write_results

CONDITIONS = {
    "clean": ("clean", None),
    "noise_0": ("noise", 0.0),
    "music_-5": ("music", -5.0),
    "babble_0": ("babble", 0.0),
}


@pytest.fixture(scope="module")
def levers():
    return load_script("levers")


def _test_dir(
    root: Path, n_speakers: int = 12, per_speaker: int = 4
) -> tuple[Path, list[tuple[str, str, bool]]]:
    """A speech folder's utt2spk and wav.scp (the audio is never read) and a trial list."""
    root.mkdir(parents=True)
    utts = [(f"s{s:02d}-u{u}", f"s{s:02d}") for s in range(n_speakers) for u in range(per_speaker)]
    (root / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in utts))
    (root / "wav.scp").write_text("".join(f"{u} {root / u}.wav\n" for u, _ in utts))
    rng = np.random.default_rng(0)
    trials = []
    for i, (a, sa) in enumerate(utts):
        for b, sb in utts[i + 1 :]:
            if sa == sb or rng.random() < 0.1:
                trials.append((a, b, sa == sb))
    return root, trials


def _eval(folder: Path, test: Path, trials, noise: dict[str, dict[str, float]], seed: int = 0) -> Path:
    """An evaluation folder: per system and condition, scores = label + speaker effect + noise of
    the given spread; rows carry the EER of those scores, as gradw evaluate writes them."""
    rng = np.random.default_rng(seed)
    labels = np.array([t[2] for t in trials])
    speaker_effect = {s: rng.normal(0, 0.3) for s in sorted({t[0].split("-")[0] for t in trials})}
    base = labels * 2.0 + np.array([speaker_effect[t[0].split("-")[0]] for t in trials])
    rows = []
    for system, spreads in noise.items():
        for condition, spread in spreads.items():
            scores = base + rng.normal(0, spread, labels.size)
            path = folder / "scores" / system / f"{condition}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(
                "".join(
                    f"{a} {b} {s:.6f} {'target' if y else 'nontarget'}\n"
                    for (a, b, y), s in zip(trials, scores, strict=True)
                )
            )
            category, snr = CONDITIONS[condition]
            rows.append(Row(system, condition, category, snr, False, {"eer": 100 * eer(scores, labels)[0]}))
    write_results(
        folder, EvaluationConfig(test=str(test), out=str(folder), augment="pool"), rows, elapsed=1.0
    )
    return folder


def _spreads(clean: float, noisy: float) -> dict[str, float]:
    return {"clean": clean, "noise_0": noisy, "music_-5": noisy, "babble_0": noisy}


def test_levers_means_bar_and_paired_intervals(
    levers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    test, trials = _test_dir(tmp_path / "test")
    systems = {
        "noisy": _spreads(0.3, 1.0),
        "good-s0": _spreads(0.3, 0.4),
        "good-s1": _spreads(0.3, 0.5),
        "bad-s0": _spreads(0.3, 4.0),
        "bad-s1": _spreads(0.3, 4.0),
        "good-s0+fuse": _spreads(0.3, 0.2),
    }
    folder = _eval(tmp_path / "eval-ood", test, trials, systems)
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
