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
