"""``gradw calibrate`` from the command line: a calibrated copy, then an in-place update that
changes the calibration entry only (its bad inputs are in test_bad_input.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import make_enhancer_checkpoint, make_speaker_checkpoint

from gradw.cli.main import main
from gradw.evaluation.calibration import Calibration


def _same(a: object, b: object) -> bool:
    """Equal as loaded: tensors byte for byte, containers item by item, the rest by value."""
    if isinstance(a, torch.Tensor):
        return (
            isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.numpy().tobytes() == b.numpy().tobytes()
        )
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def test_a_copy_then_in_place(toy_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    e = make_speaker_checkpoint(tmp_path / "e.pt")
    g = make_enhancer_checkpoint(tmp_path / "run" / "best.pt", speaker_checkpoint=str(e))
    data = [f"data.val={toy_corpus / 'val'}", f"data.val_augment={toy_corpus / 'augment' / 'test'}"]
    grid = ["calibration.categories=[clean,noise]", "calibration.snrs=[0]", "--threads", "1", "--quiet"]
    before_bytes = g.read_bytes()

    assert main(["calibrate", "--checkpoint", str(g), "-o", str(tmp_path / "copy.pt"), *data, *grid]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("calibration: validation: 3 speakers, 66 trials x 2 conditions (clean, noise_0)")
    assert out[1].startswith("default decision: accept when LLR >= 0; score needed") and "at 0 dB" in out[1]
    assert out[2] == f"stored in: {tmp_path / 'copy.pt'}"
    assert g.read_bytes() == before_bytes

    before = torch.load(g, weights_only=True)
    plain = [*grid, "calibration.quality=[]"]
    assert main(["calibrate", "--checkpoint", str(g), "--in-place", *data, *plain]) == 0
    out = capsys.readouterr().out.splitlines()
    after = torch.load(g, weights_only=True)
    calibration = Calibration.from_dict(after["extra"]["calibration"])
    assert out[1] == f"default decision: accept when score >= {calibration.score_threshold():.6f} (LLR >= 0)"
    assert list(after) == list(before)
    for key in before:  # every other entry, byte for byte after torch.load
        if key != "extra":
            assert _same(before[key], after[key]), key
    assert set(after["extra"]) == {*before["extra"], "calibration"}
    assert all(_same(before["extra"][k], after["extra"][k]) for k in before["extra"])
    assert sorted(p.name for p in g.parent.iterdir()) == ["best.pt"]  # no lock, no temporary file left


def test_score_norm_round_trip_and_the_verifier_applies_the_stored_cohort(
    toy_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``gradw calibrate`` with AS-norm stores a cohort embedded through G and E from clean
    training audio (checked against an independent computation); a SpeakerVerifier built on the
    copy normalises with it, without any corpus."""
    import numpy as np

    from gradw.data.dirs import SpeechDir
    from gradw.evaluation.calibration_fit import cohort_utterances
    from gradw.evaluation.score_norm import asnorm_scores
    from gradw.evaluation.verifier import SpeakerVerifier

    e = make_speaker_checkpoint(tmp_path / "e.pt")
    g = make_enhancer_checkpoint(tmp_path / "run" / "best.pt", speaker_checkpoint=str(e))
    out = tmp_path / "snorm.pt"
    args = [
        "calibrate", "--checkpoint", str(g), "-o", str(out), "--threads", "1", "--quiet",
        f"data.train={toy_corpus / 'train'}", f"data.val={toy_corpus / 'val'}",
        f"data.val_augment={toy_corpus / 'augment' / 'test'}", "calibration.categories=[clean,noise]",
        "calibration.snrs=[0]", "calibration.quality=[]", "calibration.score_norm.top_n=3",
        "calibration.score_norm.utterances=2", "calibration.score_norm.per_speaker=true",
    ]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[1].startswith("scores normalised by AS-norm (top 3 of a cohort of")
    assert printed[2].startswith("default decision: accept when normalised score >= ")
    stored = torch.load(out, weights_only=True)["extra"]["calibration"]
    assert stored["score_norm"]["top_n"] == 3 and stored["score_norm"]["per_speaker"] is True
    assert stored["extra"]["request"]["score_norm"] == {
        "kind": "asnorm",
        "top_n": 3,
        "per_speaker": True,
        "utterances": 2,
    }

    # the cohort, computed independently: the verifier embeds the same clean utterances
    verifier = SpeakerVerifier(enhancer=out)
    train = SpeechDir.load(toy_corpus / "train")
    chosen = cohort_utterances(train, 2, 0)
    assert len(chosen) == len(train.spk2utt) and all(len(u) == 2 for u in chosen.values())
    rows = []
    for utts in chosen.values():
        emb = verifier.embed([str(train.wavs[u]) for u in utts]).astype(np.float64)
        mean = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).mean(axis=0)
        rows.append(mean / np.linalg.norm(mean))
    cohort = stored["score_norm"]["cohort"]
    assert cohort.dtype == torch.float32 and tuple(cohort.shape) == (
        len(train.spk2utt),
        verifier.speaker.embedding_dim,
    )
    np.testing.assert_allclose(cohort.numpy(), np.stack(rows), atol=2e-4)

    # the verifier applies the stored cohort: no cosine threshold, a decision per trial on the LLR
    calibration = verifier.calibration
    assert calibration is not None and calibration.score_norm is not None and verifier.threshold is None
    a, b = (str(train.wavs[u]) for u in list(train.wavs)[:2])
    ea, eb = verifier.embed(a), verifier.embed(b)
    score = verifier.score(a, b)
    normalised = asnorm_scores([score], ea[None], eb[None], cohort.numpy(), 3)[0]
    llr = calibration.scale * normalised + calibration.offset
    assert verifier.llr(score, a, b) == pytest.approx(llr, abs=1e-4)
    (result,) = verifier.score_pairs([(a, b)])
    assert result.llr == pytest.approx(llr, abs=1e-4) and result.decision == (llr >= 0)
    assert verifier.verify(a, b) == (llr >= 0, pytest.approx(score, abs=1e-6))
    with pytest.raises(ValueError, match="AS-norm"):
        verifier.llr(score)
