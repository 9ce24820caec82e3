"""Evaluation folders as `gradw evaluate` writes them (results and score files), with scores drawn
around the labels: inputs for the scripts that read evaluations (scripts/levers.py)."""

from pathlib import Path

import numpy as np

from gradw.config import EvaluationConfig
from gradw.evaluation.metrics import eer
from gradw.evaluation.results import Row, write_results

CONDITIONS = {
    "clean": ("clean", None),
    "noise_0": ("noise", 0.0),
    "music_-5": ("music", -5.0),
    "babble_0": ("babble", 0.0),
}


def speech_dir_with_trials(
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


def evaluation_folder(
    folder: Path, test: Path, trials, noise: dict[str, dict[str, float]], seed: int = 0
) -> Path:
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


def spreads(clean: float, noisy: float) -> dict[str, float]:
    return {"clean": clean, "noise_0": noisy, "music_-5": noisy, "babble_0": noisy}
