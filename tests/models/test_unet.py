"""Tests for the U-Net enhancer G (gradw.models.unet)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from gradw.audio.frontends import LogMel
from gradw.models.resnet import resnet_tiny
from gradw.models.unet import MaskUNet, TransConv


def tiny(**kwargs) -> MaskUNet:
    torch.manual_seed(0)
    kwargs.setdefault("base_width", 4)
    kwargs.setdefault("blocks", (1, 1, 1, 1))
    return MaskUNet(**kwargs)


def num_params(params) -> int:
    return sum(p.numel() for p in params)


def test_paper_config_shapes() -> None:
    with torch.device("meta"):  # shape inference at full width, no arithmetic
        g = MaskUNet()
        outs = g.encoder(torch.empty(2, 80, 496))
        mask = g(torch.empty(2, 80, 496))
    assert [tuple(o.shape[1:]) for o in outs] == [(32, 80, 496), (64, 40, 248), (128, 20, 124), (256, 10, 62)]
    assert tuple(mask.shape) == (2, 80, 496)


@pytest.mark.parametrize("num_frames", [97, 203, 501])
@pytest.mark.parametrize("pad_mode", ["constant", "replicate"])
def test_mask_has_the_input_shape_for_any_length(num_frames: int, pad_mode: str) -> None:
    g = tiny(pad_mode=pad_mode, up_layers=(3, 4, 6))
    feats = torch.randn(2, 16, num_frames)
    mask = g(feats)
    assert tuple(mask.shape) == (2, 16, num_frames)
    assert ((mask > 0) & (mask < 1)).all()


def test_padding_does_not_change_lengths_that_are_multiples_of_8() -> None:
    g = tiny().eval()
    feats = torch.randn(1, 16, 40)
    # with T already a multiple of 8 both modes run the identical graph
    torch.testing.assert_close(g(feats), tiny(pad_mode="replicate").eval()(feats))
    # padding affects the frames at the end only through the receptive field and the norms;
    # the output length is always cropped back
    assert g(feats[..., :37]).shape == (1, 16, 37)


def test_frequency_must_be_divisible_by_8() -> None:
    with pytest.raises(ValueError, match="F divisible by 8"):
        tiny()(torch.randn(1, 20, 32))
    with pytest.raises(ValueError, match=r"\(B, F, T\)"):
        tiny()(torch.randn(1, 1, 16, 32))


def test_declared_number_of_bands() -> None:
    with pytest.raises(ValueError, match="n_mels=20"):
        MaskUNet(n_mels=20)
    g = tiny(n_mels=16)
    assert g(torch.randn(1, 16, 24)).shape == (1, 16, 24)
    with pytest.raises(ValueError, match="built for F=16"):
        g(torch.randn(1, 24, 24))


def test_identity_start() -> None:
    g = tiny(init_bias=4.0)
    assert torch.count_nonzero(g.out.weight) == 0
    assert g.out.bias is not None and g.out.bias.item() == 4.0
    feats = torch.randn(2, 16, 45)
    mask = g(feats)
    torch.testing.assert_close(mask, torch.full_like(mask, 1 / (1 + math.exp(-4.0))))
    assert mask.mean().item() == pytest.approx(0.982, abs=1e-3)
    # first step: the zero-weight output conv is what learns first
    (mask * torch.randn_like(mask)).sum().backward()
    assert g.out.weight.grad.abs().sum() > 0 and g.out.bias.grad.abs() > 0


def test_paper_output_conv_has_no_bias() -> None:
    g = tiny()
    assert g.out.bias is None and torch.count_nonzero(g.out.weight) > 0


def test_attenuation_floor_is_a_power_gain() -> None:
    g = tiny(min_gain_db=-20.0, init_bias=-30.0)
    assert g.floor == pytest.approx(0.01)  # 10 ** (-20 / 10): the mask scales mel power
    mask = g(torch.randn(1, 16, 24))
    assert (mask >= 0.01).all()
    torch.testing.assert_close(mask, torch.full_like(mask, 0.01), atol=1e-6, rtol=0)
    # the log-mel drops by at most 20 dB
    assert (10 * torch.log10(mask)).min().item() >= -20.0 - 1e-4
    upper = tiny(min_gain_db=-10.0, init_bias=30.0)(torch.randn(1, 16, 24))
    assert (upper <= 1).all() and (upper > 0.99).all()


@pytest.mark.parametrize("bad", [{"min_gain_db": 3.0}, {"up_layers": (3, 4)}, {"pad_mode": "reflect"}])
def test_bad_arguments_are_rejected(bad: dict) -> None:
    with pytest.raises(ValueError):
        tiny(**bad)


def test_gradients_reach_every_parameter() -> None:
    g = tiny(up_layers=(2, 2, 2))
    feats = torch.randn(2, 16, 40)
    mask = g(feats)
    (mask * torch.randn_like(mask)).sum().backward()
    # a bias right before an InstanceNorm is cancelled by it, so its gradient is zero up to rounding
    before_norm = {f"{name}.bias" for name, m in g.named_modules() if isinstance(m, torch.nn.ConvTranspose2d)}
    for name, p in g.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        if name in before_norm:
            assert p.grad.abs().max() < 1e-4, name
        else:
            assert p.grad.abs().sum() > 0, name


def test_transconv_layout() -> None:
    up = TransConv(8, 4, 3)
    convs = [m for m in up if isinstance(m, torch.nn.ConvTranspose2d)]
    norms = [m for m in up if isinstance(m, torch.nn.InstanceNorm2d)]
    assert len(convs) == len(norms) == 3
    assert convs[0].stride == (2, 2) and convs[0].output_padding == (1, 1)
    assert all(c.stride == (1, 1) and c.output_padding == (0, 0) for c in convs[1:])
    assert all(c.bias is not None for c in convs) and all(n.affine for n in norms)
    assert tuple(up(torch.randn(1, 8, 5, 7)).shape) == (1, 4, 10, 14)


def test_parameter_counts() -> None:
    g = MaskUNet()
    total = num_params(g.parameters())
    decoder = num_params(g.decoder_parameters())
    assert total == 6_788_160
    assert total == pytest.approx(6.79e6, rel=0.02)  # paper notes: G ~ 6.79 M
    assert decoder == 1_464_800
    assert decoder == pytest.approx(1.46e6, rel=0.02)  # decoder ~ 1.46 M
    assert num_params(g.encoder_parameters()) + decoder == total


def test_config_round_trip() -> None:
    g = tiny(up_layers=(1, 2, 1), init_bias=2.0, min_gain_db=-25.0, pad_mode="replicate")
    config = json.loads(json.dumps(g.config))
    rebuilt = MaskUNet.from_config(config)
    assert rebuilt.config == g.config
    rebuilt.load_state_dict(g.state_dict())
    g.eval()
    rebuilt.eval()
    feats = torch.randn(1, 16, 30)
    torch.testing.assert_close(rebuilt(feats), g(feats))


def test_mask_trains_through_a_frozen_speaker_network() -> None:
    """The Grad-W graph: noisy features -> G -> mask on E's mel grid -> frozen E -> loss on A."""
    torch.manual_seed(0)
    speaker = resnet_tiny(frontend=LogMel(n_mels=16), base_width=4, embedding_dim=8, num_classes=3).freeze()
    g = tiny(n_mels=16, up_layers=(1, 1, 1))
    clean = torch.randn(2, 8000) * 0.1
    noisy = clean + torch.randn(2, 8000) * 0.3
    noisy_mel = speaker.mel_power(noisy)  # (B, F, T), T = 51: not a multiple of 8
    mask = g(speaker.features(noisy_mel))
    assert mask.shape == noisy_mel.shape
    enhanced = speaker.run(speaker.features(noisy_mel, mask))
    with torch.no_grad():
        reference = speaker.to_tap(speaker.features(speaker.mel_power(clean)))
    loss = (reference - enhanced.activation).abs().sum() / 2
    loss.backward()
    assert all(p.grad is None for p in speaker.parameters())
    assert g.out.weight.grad.abs().sum() > 0
    assert g.encoder.conv1.weight.grad.abs().sum() > 0
