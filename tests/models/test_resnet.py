"""Tests for the ResNet speaker network E (gradw.models.resnet)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import Tensor

from gradw.audio.frontends import LogMel
from gradw.models.resnet import (
    TAPS,
    TSTP,
    BasicBlock,
    ResNetSpeaker,
    ResNetTrunk,
    downsampled_size,
    load_wespeaker_state_dict,
    resnet34,
    resnet_tiny,
    to_wespeaker_state_dict,
)
from gradw.models.speaker import CosineHead


def tiny(n_mels: int = 16, **kwargs) -> ResNetSpeaker:
    torch.manual_seed(0)
    return resnet_tiny(frontend=LogMel(n_mels=n_mels), base_width=4, embedding_dim=8, **kwargs)


def num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# -- shapes ----------------------------------------------------------------------------------


def test_paper_config_stage_shapes() -> None:
    frontend = LogMel(n_mels=80)
    # meta tensors: shape inference at full width without any arithmetic
    with torch.device("meta"):
        trunk = ResNetTrunk()
        outs = trunk(torch.empty(2, 80, 496))
        model = resnet34(frontend=frontend, num_classes=5944)
        activation = model.to_tap(torch.empty(2, 80, 496))
        embedding = model.from_tap(activation)
        logits = model.logits(embedding)
    assert [tuple(o.shape) for o in outs] == [
        (2, 32, 80, 496),
        (2, 64, 40, 248),
        (2, 128, 20, 124),
        (2, 256, 10, 62),
    ]
    assert tuple(activation.shape) == (2, 256, 10, 62)
    assert tuple(embedding.shape) == (2, 256)
    assert tuple(logits.shape) == (2, 5944)
    assert model.stats_dim == 5120


@pytest.mark.parametrize("num_frames", [9, 97, 203])
def test_any_number_of_frames(num_frames: int) -> None:
    model = tiny().eval()
    feats = torch.randn(2, 16, num_frames)
    act = model.to_tap(feats)
    expected_t = math.ceil(math.ceil(math.ceil(num_frames / 2) / 2) / 2)
    assert tuple(act.shape) == (2, 32, 2, expected_t)
    assert downsampled_size(num_frames, 3) == expected_t
    emb = model(feats)
    assert tuple(emb.shape) == (2, 8)
    assert torch.isfinite(emb).all()


def test_too_short_input_is_a_clear_error() -> None:
    model = tiny().eval()
    with pytest.raises(ValueError, match="at least 2 frames"):
        model(torch.randn(1, 16, 8))  # 8 -> 4 -> 2 -> 1 frame at layer4


def test_wrong_feature_size_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"\(B, 16, T\)"):
        tiny()(torch.randn(1, 24, 40))


def test_trunk_outputs_match_speaker_stages() -> None:
    model = tiny().eval()
    trunk = ResNetTrunk(base_width=4, blocks=(1, 1, 1, 1)).eval()
    trunk.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("seg_1.")})
    feats = torch.randn(2, 16, 40)
    outs = trunk(feats)
    assert trunk.widths == (4, 8, 16, 32)
    for tap, out in zip(TAPS, outs, strict=True):
        model.tap = tap
        torch.testing.assert_close(model.to_tap(feats), out)


# -- building blocks ---------------------------------------------------------------------------


def test_basic_block_shortcut_only_when_shape_changes() -> None:
    same = BasicBlock(8, 8, stride=1)
    assert len(same.shortcut) == 0
    strided = BasicBlock(8, 16, stride=2)
    assert isinstance(strided.shortcut[0], torch.nn.Conv2d)
    assert strided.shortcut[0].kernel_size == (1, 1) and strided.shortcut[0].bias is None
    assert isinstance(strided.shortcut[1], torch.nn.BatchNorm2d)
    assert all(m.bias is None for m in strided.modules() if isinstance(m, torch.nn.Conv2d))
    out = strided(torch.randn(2, 8, 9, 7))
    assert tuple(out.shape) == (2, 16, 5, 4)
    assert (out >= 0).all()  # ends with a ReLU


def test_tstp_matches_definition() -> None:
    x = torch.randn(3, 4, 5, 11)
    stats = TSTP()(x)
    assert tuple(stats.shape) == (3, 2 * 4 * 5)
    mean = x.sum(-1) / 11
    std = (((x - mean[..., None]) ** 2).sum(-1) / 10 + 1e-8).sqrt()  # unbiased variance
    torch.testing.assert_close(stats[:, :20], mean.reshape(3, 20))
    torch.testing.assert_close(stats[:, 20:], std.reshape(3, 20))
    # layout: channel-major (c * F + f)
    torch.testing.assert_close(stats[1, 2 * 5 + 3], x[1, 2, 3].mean())


# -- taps -------------------------------------------------------------------------------------


@pytest.mark.parametrize("tap", TAPS)
def test_to_tap_then_from_tap_equals_forward(tap: str) -> None:
    model = tiny(tap=tap).eval()
    feats = torch.randn(2, 16, 50)
    act = model.to_tap(feats)
    depth = TAPS.index(tap)
    assert act.shape[1] == 4 * 2**depth
    assert act.shape[2] == downsampled_size(16, depth)
    assert act.shape[3] == downsampled_size(50, depth)
    torch.testing.assert_close(model.from_tap(act), model(feats))
    pass_ = model.run(feats)
    torch.testing.assert_close(pass_.activation, act)
    torch.testing.assert_close(pass_.embedding, model(feats))


def test_unknown_tap_is_rejected() -> None:
    with pytest.raises(ValueError, match="layer4"):
        tiny(tap="pool")


def test_gradient_of_logit_with_respect_to_tap() -> None:
    model = tiny(num_classes=5).eval()
    feats = torch.randn(2, 16, 40)
    pass_ = model.run(feats)
    logits = model.logits(pass_.embedding)
    expected = 32.0 * torch.nn.functional.cosine_similarity(
        pass_.embedding[:, None, :], model.head.weight[None], dim=-1
    )
    torch.testing.assert_close(logits, expected)
    grad = torch.autograd.grad(logits[:, 0].sum(), pass_.activation)[0]
    assert grad.shape == pass_.activation.shape
    assert grad.abs().sum() > 0


def test_no_head_without_num_classes() -> None:
    model = tiny()
    assert model.head is None and model.num_classes is None
    with pytest.raises(RuntimeError, match="no classification head"):
        model.logits(torch.randn(1, 8))


# -- freezing ----------------------------------------------------------------------------------


def test_frozen_network_passes_gradients_to_inputs_only() -> None:
    model = tiny(num_classes=3).freeze()
    model.train()  # a frozen network refuses training mode
    assert not model.training
    assert all(not m.training for m in model.modules())
    feats = torch.randn(2, 16, 40, requires_grad=True)
    model.logits(model(feats))[:, 1].sum().backward()
    assert feats.grad is not None and feats.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())
    running = model.bn1.running_mean.clone()
    model(torch.randn(2, 16, 40) * 5 + 3)
    torch.testing.assert_close(model.bn1.running_mean, running)  # BN statistics untouched


# -- WeSpeaker state dicts ---------------------------------------------------------------------

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def bn_keys(prefix: str) -> list[str]:
    return [f"{prefix}.{name}" for name in BN]


def test_state_dict_keys_are_wespeaker_names() -> None:
    keys = list(resnet34(frontend=LogMel(n_mels=80)).state_dict())
    # written out by hand from WeSpeaker's ResNet (BasicBlock, _make_layer, seg_1)
    assert keys[:18] == [
        "conv1.weight",
        *bn_keys("bn1"),
        "layer1.0.conv1.weight",
        *bn_keys("layer1.0.bn1"),
        "layer1.0.conv2.weight",
        *bn_keys("layer1.0.bn2"),
    ]
    assert "layer1.0.shortcut.0.weight" not in keys  # same width, stride 1: identity
    layer2_first = [
        "layer2.0.conv1.weight",
        *bn_keys("layer2.0.bn1"),
        "layer2.0.conv2.weight",
        *bn_keys("layer2.0.bn2"),
        "layer2.0.shortcut.0.weight",
        *bn_keys("layer2.0.shortcut.1"),
    ]
    start = keys.index("layer2.0.conv1.weight")
    assert keys[start : start + len(layer2_first)] == layer2_first
    assert "layer2.1.shortcut.0.weight" not in keys
    for layer in ("layer3", "layer4"):
        assert f"{layer}.0.shortcut.0.weight" in keys
    assert "layer4.2.bn2.running_var" in keys and "layer4.3.conv1.weight" not in keys
    assert "layer3.5.conv2.weight" in keys and "layer3.6.conv1.weight" not in keys
    assert keys[-2:] == ["seg_1.weight", "seg_1.bias"]
    assert not any(k.startswith(("pool.", "seg_bn_1.", "seg_2.")) for k in keys)
    # 1 stem conv + 16 blocks x 2 convs + 3 shortcut convs, each with one BN (5 entries)
    assert len(keys) == (1 + 32 + 3) * 6 + 2


def wespeaker_dict(model: ResNetSpeaker, prefix: str = "") -> dict[str, Tensor]:
    """What WeSpeaker would save for ``model``: no front-end, head as ``projection.weight``."""
    out = {}
    for k, v in model.state_dict().items():
        if k.startswith("frontend."):
            continue
        out[prefix + ("projection.weight" if k == "head.weight" else k)] = v.clone()
    return out


def randomise(model: ResNetSpeaker) -> None:
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_()
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 2.0)
        for p in model.parameters():
            p.normal_(std=0.1)


@pytest.mark.parametrize("wrap", ["plain", "module", "state_dict"])
def test_load_wespeaker_round_trip(tmp_path, wrap: str) -> None:
    source = tiny(num_classes=7)
    randomise(source)
    source.eval()
    sd = wespeaker_dict(source, prefix="module." if wrap == "module" else "")
    if wrap == "state_dict":
        sd = {"state_dict": sd, "epoch": 3}
    path = tmp_path / "avg_model.pt"
    torch.save(sd, path)
    loaded = torch.load(path, weights_only=True)

    target = tiny()  # no head yet: the head comes from projection.weight
    assert load_wespeaker_state_dict(target, loaded) is target
    assert isinstance(target.head, CosineHead) and target.num_classes == 7
    assert target.config["num_classes"] == 7
    target.eval()
    for k, v in source.state_dict().items():
        torch.testing.assert_close(target.state_dict()[k], v, rtol=0, atol=0)
    feats = torch.randn(2, 16, 40)
    torch.testing.assert_close(target.logits(target(feats)), source.logits(source(feats)))


def test_to_wespeaker_state_dict_round_trips() -> None:
    source = tiny(num_classes=4)
    randomise(source)
    exported = to_wespeaker_state_dict(source)
    assert exported.keys() == wespeaker_dict(source).keys()
    target = load_wespeaker_state_dict(tiny(num_classes=4), exported)
    torch.testing.assert_close(target.head.weight, source.head.weight)


def test_missing_keys_are_named() -> None:
    sd = wespeaker_dict(tiny(num_classes=3))
    del sd["layer2.0.shortcut.0.weight"]
    del sd["seg_1.bias"]
    with pytest.raises(ValueError, match="missing keys: .*layer2.0.shortcut.0.weight.*seg_1.bias"):
        load_wespeaker_state_dict(tiny(), sd)


def test_missing_head_when_the_model_has_one() -> None:
    sd = wespeaker_dict(tiny())
    with pytest.raises(ValueError, match="projection.weight"):
        load_wespeaker_state_dict(tiny(num_classes=3), sd)


def test_unexpected_keys_and_shape_mismatches() -> None:
    sd = wespeaker_dict(tiny())
    sd["seg_2.weight"] = torch.zeros(8, 8)  # a two_emb_layer checkpoint
    with pytest.raises(ValueError, match="unexpected keys: seg_2.weight"):
        load_wespeaker_state_dict(tiny(), sd)
    load_wespeaker_state_dict(tiny(), sd, strict=False)  # tolerated when not strict

    wide = resnet_tiny(frontend=LogMel(n_mels=16), base_width=8, embedding_dim=8)
    with pytest.raises(ValueError, match=r"shape mismatches: conv1.weight: checkpoint \(8, 1, 3, 3\)"):
        load_wespeaker_state_dict(tiny(), wespeaker_dict(wide))
    bad_head = wespeaker_dict(tiny())
    bad_head["projection.weight"] = torch.zeros(5, 9)
    with pytest.raises(ValueError, match="projection.weight"):
        load_wespeaker_state_dict(tiny(), bad_head)


# -- sizes and configs -------------------------------------------------------------------------


def test_resnet34_parameter_count() -> None:
    model = resnet34(frontend=LogMel(n_mels=80))
    total = num_params(model)
    assert total == 6_634_336
    assert total == pytest.approx(6.63e6, rel=0.01)  # paper notes: trunk + embedding 6.63 M
    assert total - num_params(model.seg_1) == pytest.approx(5.32e6, rel=0.01)  # trunk 5.32 M
    with_head = resnet34(frontend=LogMel(n_mels=80), num_classes=5944)
    assert num_params(with_head) - total == 5944 * 256  # head 1.52 M


def test_config_round_trip() -> None:
    model = tiny(num_classes=5, tap="layer3")
    config = json.loads(json.dumps(model.config))
    rebuilt = ResNetSpeaker.from_config(config, frontend=LogMel(n_mels=16))
    assert rebuilt.config == model.config
    rebuilt.load_state_dict(model.state_dict())
    assert rebuilt.tap == "layer3" and rebuilt.num_classes == 5


def test_default_frontend_is_logmel() -> None:
    model = resnet_tiny()
    assert isinstance(model.frontend, LogMel)
    assert model.feat_dim == model.frontend.n_mels == 80
    assert not any(k.startswith("frontend.") for k in model.state_dict())  # WeSpeaker keys only


def test_embeds_a_waveform_with_a_mask() -> None:
    model = tiny().eval()
    wav = torch.randn(2, 16000) * 0.1
    mel = model.mel_power(wav)
    assert tuple(mel.shape) == (2, 16, 101)
    plain = model.embed(wav)
    assert tuple(plain.shape) == (2, 8)
    torch.testing.assert_close(model.embed(wav, torch.ones_like(mel)), plain, atol=1e-4, rtol=1e-4)
    # a constant mask is a constant offset of the log-mel, which mean normalisation removes
    torch.testing.assert_close(model.embed(wav, torch.full_like(mel, 0.1)), plain, atol=1e-3, rtol=1e-3)
    halved = torch.ones_like(mel)
    halved[..., :50] = 1e-3  # a per-band constant would vanish under CMN too
    assert (model.embed(wav, halved) - plain).abs().max() > 1e-3


@pytest.mark.parametrize(("name", "expected"), [("resnet-tiny", 1280), ("wespeaker-resnet34", 1680)])
def test_min_samples_is_the_shortest_waveform_the_network_embeds(name: str, expected: int) -> None:
    from gradw.models.loading import load_speaker_network

    torch.manual_seed(0)
    network = load_speaker_network(name, checkpoint="random")
    assert network.min_samples == expected  # 9 frames: TSTP needs 2 after three halvings
    assert network.frontend.num_frames(expected) == 9
    with torch.no_grad():
        assert network.embed(0.1 * torch.randn(1, expected)).shape == (1, network.embedding_dim)
        with pytest.raises(ValueError, match="too short"):
            network.embed(0.1 * torch.randn(1, expected - 1))
