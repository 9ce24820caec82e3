"""``gradw verify``: pairs of files or a trial list, each file at its own rate and channel count,
through a G or an adapted E; one-line errors before any score."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from helpers import make_adapted_checkpoint, make_enhancer_checkpoint, make_speaker_checkpoint, toy_tone

from gradw.cli.main import main
from gradw.evaluation.calibration import Calibration
from gradw.evaluation.verifier import SpeakerVerifier
from gradw.models.loading import weights_identity

SR = 16000


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """E (resnet-tiny from a checkpoint), a tiny G, and three recordings: 44.1 kHz stereo FLAC,
    8 kHz mono WAV, 16 kHz mono WAV."""
    root = tmp_path_factory.mktemp("verify")
    e_ckpt = make_speaker_checkpoint(root / "e.pt", seed=4)
    g_ckpt = make_enhancer_checkpoint(root / "g.pt", seed=1)
    a = soxr.resample(toy_tone(2 * SR, 1), SR, 44100).astype(np.float32)
    sf.write(root / "a.flac", np.stack([a, 0.4 * a[::-1]], axis=1), 44100)
    sf.write(root / "b.wav", soxr.resample(toy_tone(int(1.5 * SR), 2), SR, 8000), 8000)
    sf.write(root / "c.wav", toy_tone(SR, 3), SR)
    return {"root": root, "e": e_ckpt, "g": g_ckpt}


def by_hand(path: Path) -> np.ndarray:
    """Read, average the channels, resample to 16 kHz with soxr: the conversion a user would do."""
    data, rate = sf.read(path, dtype="float32", always_2d=True)
    mono = data.mean(axis=1)
    return mono if rate == SR else soxr.resample(mono, rate, SR, quality="HQ").astype(np.float32)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    code = main(["verify", *argv])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def test_two_files_of_other_rates_and_channels_score_as_converted_by_hand(setup, capsys) -> None:
    root = setup["root"]
    options = [
        "--checkpoint",
        str(setup["g"]),
        "--speaker",
        "resnet-tiny",
        "--speaker-checkpoint",
        str(setup["e"]),
    ]
    code, out, _err = run([str(root / "a.flac"), str(root / "b.wav"), *options], capsys)
    assert code == 0 and len(out) == 1
    enroll, test, score = out[0].split()
    assert (enroll, test) == (str(root / "a.flac"), str(root / "b.wav"))
    verifier = SpeakerVerifier("resnet-tiny", enhancer=setup["g"], checkpoint=setup["e"])
    expected = verifier.score(by_hand(root / "a.flac"), by_hand(root / "b.wav"), SR)
    assert float(score) == pytest.approx(expected, abs=1e-5)
    # G matters: without it the score differs
    code, plain, _err = run(
        [
            str(root / "a.flac"),
            str(root / "b.wav"),
            "--speaker",
            "resnet-tiny",
            "--speaker-checkpoint",
            str(setup["e"]),
        ],
        capsys,
    )
    assert code == 0 and abs(float(plain[0].split()[2]) - expected) > 1e-4


def test_a_trial_list_in_three_formats_with_a_threshold(setup, tmp_path: Path, capsys) -> None:
    root = setup["root"]
    trials = tmp_path / "trials.txt"
    trials.write_text("a.flac b.wav\n1 a.flac c.wav\n\nb.wav c.wav nontarget\nc.wav c.wav target\n")
    options = [
        "--speaker",
        "resnet-tiny",
        "--speaker-checkpoint",
        str(setup["e"]),
        "--checkpoint",
        str(setup["g"]),
    ]
    code, out, _err = run(["--trials", str(trials), "--root", str(root), *options], capsys)
    assert code == 0 and len(out) == 4
    rows = [line.split() for line in out]
    assert [r[3] for r in rows] == ["-", "target", "nontarget", "target"]  # labels reported, not used
    scores = [float(r[2]) for r in rows]
    verifier = SpeakerVerifier("resnet-tiny", enhancer=setup["g"], checkpoint=setup["e"])
    names = [("a.flac", "b.wav"), ("a.flac", "c.wav"), ("b.wav", "c.wav"), ("c.wav", "c.wav")]
    for (e, t), row, score in zip(names, rows, scores, strict=True):
        assert row[:2] == [str(root / e), str(root / t)]
        assert score == pytest.approx(verifier.score(by_hand(root / e), by_hand(root / t), SR), abs=1e-5)
    assert scores[3] == pytest.approx(1.0, abs=1e-6)
    # a threshold adds the decision, accept when score >= threshold
    threshold = sorted(scores)[1] + 1e-4
    code, out, err = run(
        ["--trials", str(trials), "--root", str(root), *options, "--threshold", str(threshold)], capsys
    )
    assert code == 0 and "threshold:" in err
    decisions = [line.split()[3] for line in out]
    assert decisions == ["accept" if s >= threshold else "reject" for s in scores]
    assert decisions.count("accept") == 2


def test_an_adapted_checkpoint_is_accepted(setup, tmp_path: Path, capsys) -> None:
    root = setup["root"]
    adapted = make_adapted_checkpoint(tmp_path / "adapted.pt", setup["e"], enhancer=setup["g"], seed=2)
    code, out, _err = run([str(root / "a.flac"), str(root / "b.wav"), "--checkpoint", str(adapted)], capsys)
    assert code == 0
    verifier = SpeakerVerifier(enhancer=adapted)
    expected = verifier.score(by_hand(root / "a.flac"), by_hand(root / "b.wav"), SR)
    assert float(out[0].split()[2]) == pytest.approx(expected, abs=1e-5)
    base = SpeakerVerifier("resnet-tiny", enhancer=setup["g"], checkpoint=setup["e"])
    assert abs(expected - base.score(by_hand(root / "a.flac"), by_hand(root / "b.wav"), SR)) > 1e-4


def _e(e: Path) -> list[str]:
    return ["--speaker", "resnet-tiny", "--speaker-checkpoint", str(e)]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (lambda r, e: [str(r / "a.flac"), *_e(e)], r"expected pairs of files .* got 1 path"),
        (lambda r, e: [str(r / "a.flac"), str(r / "nowhere.wav"), *_e(e)], r"nowhere\.wav: no such file"),
        (
            lambda r, e: [str(r / "a.flac"), str(r / "b.wav"), "--speaker", "resnet34"],
            r"resnet34 has no weights",
        ),
        (
            lambda r, e: ["--trials", str(r / "bad_trials.txt"), *_e(e)],
            r"bad_trials\.txt: line\(s\) 2 are none of",
        ),
        (lambda r, e: ["--trials", str(r / "trials.txt"), str(r / "a.flac"), str(r / "b.wav")], r"not both"),
        (
            lambda r, e: [str(r / "a.flac"), str(r / "b.wav"), *_e(e), "--threshold", "high"],
            r"neither a number",
        ),
        (lambda r, e: [str(r / "a.flac"), str(r / "b.wav"), "--checkpoint", str(r / "a.flac")], r"a\.flac"),
    ],
    ids=["odd", "missing-file", "no-weights", "bad-trials", "both", "threshold", "bad-checkpoint"],
)
def test_errors_are_one_line_before_any_score(argv, message, setup, capsys) -> None:
    root = setup["root"]
    (root / "bad_trials.txt").write_text("a.flac b.wav\na.flac b.wav maybe\n")
    (root / "trials.txt").write_text("a.flac b.wav\n")
    code, out, err = run(argv(root, setup["e"]), capsys)
    lines = err.strip().splitlines()
    assert code == 2 and out == [], err
    assert len(lines) == 1 and lines[0].startswith("gradw: error: ") and "Traceback" not in err
    assert re.search(message, lines[0]), lines[0]


def test_a_calibrated_checkpoint_prints_the_llr_and_decides_by_default(setup, capsys, tmp_path) -> None:
    root = setup["root"]
    scorer = weights_identity("resnet-tiny", str(setup["e"]))
    record = Calibration(8.0, -2.0, fitted_on="validation: 2 speakers", extra={"scorer": scorer})
    g = make_enhancer_checkpoint(
        tmp_path / "g.pt", seed=1, speaker_checkpoint=str(setup["e"]), calibration=record.to_dict()
    )
    code, out, err = run([str(root / "a.flac"), str(root / "b.wav"), "--checkpoint", str(g)], capsys)
    assert code == 0 and len(out) == 1
    _enroll, _test, score, llr, decision = out[0].split()
    assert float(llr) == pytest.approx(8.0 * float(score) - 2.0, abs=1e-3)
    assert decision == ("accept" if float(score) >= 0.25 else "reject")
    assert "threshold: 0.250000" in err and "fitted on validation: 2 speakers" in err


def test_a_recording_longer_than_the_window_is_scored_by_windows(setup, capsys) -> None:
    root = setup["root"]
    sf.write(root / "long.wav", toy_tone(int(2.5 * SR), 7), SR)  # 2.5 s: three windows of 1 s
    files = [str(root / "long.wav"), str(root / "c.wav")]
    options = ["--speaker", "resnet-tiny", "--speaker-checkpoint", str(setup["e"]), "--quiet"]
    scores = {}
    for window in ("1", "none", None):
        code, out, _err = run(
            [*files, *options, *([] if window is None else ["--window-seconds", window])], capsys
        )
        assert code == 0 and len(out) == 1
        scores[window] = float(out[0].split()[2])
    by_windows = SpeakerVerifier("resnet-tiny", checkpoint=setup["e"], window_seconds=1.0)
    whole = SpeakerVerifier("resnet-tiny", checkpoint=setup["e"], window_seconds=None)
    assert scores["1"] == pytest.approx(by_windows.verify_files(*files)[0], abs=1e-6)
    assert scores["none"] == pytest.approx(whole.verify_files(*files)[0], abs=1e-6)
    assert scores[None] == scores["none"]  # the default window (30 s) holds 2.5 s whole
    assert abs(scores["1"] - scores["none"]) > 1e-4


def test_a_quality_aware_calibration_prints_per_pair_llrs_and_decisions(setup, capsys, tmp_path) -> None:
    from gradw.evaluation.quality import QualityFunctions

    root = setup["root"]
    functions = QualityFunctions.build(["snr_percentile"], interactions=False)
    record = Calibration(
        8.0,
        -2.0,
        quality_names=functions.names,
        quality_weights=(0.05, 0.02),
        fitted_on="validation: 2 speakers",
        extra={"scorer": weights_identity("resnet-tiny", str(setup["e"]))},
        quality_functions=functions.to_dict(),
    )
    g = make_enhancer_checkpoint(
        tmp_path / "g.pt", seed=1, speaker_checkpoint=str(setup["e"]), calibration=record.to_dict()
    )
    code, out, err = run([str(root / "a.flac"), str(root / "b.wav"), "--checkpoint", str(g)], capsys)
    assert code == 0 and len(out) == 1
    _enroll, _test, score, llr, decision = out[0].split()
    assert decision == ("accept" if float(llr) >= 0 else "reject")
    assert "accept when the calibrated LLR >= 0" in err and "snr_percentile" in err
    assert "threshold:" not in err
