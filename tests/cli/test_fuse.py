"""``gradw fuse`` from the command line: what it prints and stores (its bad inputs are in
test_bad_input.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import make_enhancer_checkpoint, make_speaker_checkpoint

from gradw.cli.main import main
from gradw.evaluation.fusion import FusionWeights


def test_a_copy_is_fitted_judged_and_stored(
    toy_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    e = make_speaker_checkpoint(tmp_path / "e.pt")
    g = make_enhancer_checkpoint(tmp_path / "run" / "best.pt", speaker_checkpoint=str(e))
    data = [
        f"data.train={toy_corpus / 'train'}",
        f"data.augment={toy_corpus / 'augment' / 'train'}",
        f"data.val={toy_corpus / 'val'}",
        f"data.val_augment={toy_corpus / 'augment' / 'test'}",
    ]
    grid = ["fusion.categories=[clean,babble]", "fusion.snrs=[-5]", "fusion.clip=[-5,10]", "--quiet"]
    before = g.read_bytes()
    assert main(["fuse", "--checkpoint", str(g), "-o", str(tmp_path / "fused.pt"), *data, *grid]) == 0
    out = capsys.readouterr().out.splitlines()
    weights = FusionWeights.from_dict(torch.load(tmp_path / "fused.pt", weights_only=True)["extra"]["fusion"])
    assert (weights.lo, weights.hi) == (-5.0, 10.0)
    assert out[0] == f"fusion: {weights.describe()}"
    assert out[1].startswith("fitted on training speakers of ") and "(clean, babble_-5)" in out[1]
    assert out[2].startswith("judged on validation speakers of ")
    v = weights.extra["validation"]
    assert out[4] == (
        f"mean EER on validation: system {v['system']:.2f} %, unenhanced {v['base']:.2f} %, "
        f"@fuse {v['fuse']:.2f} %, @qfuse {v['qfuse']:.2f} %"
    )
    assert out[5] == f"stored in: {tmp_path / 'fused.pt'}"
    assert g.read_bytes() == before
