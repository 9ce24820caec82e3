"""The paper's enhancer G: a U-Net that predicts a mel-power mask.

Layout (``base_width`` w = 32 in the paper)::

    features (B, F, T)  log-mel of the noisy input, F divisible by 8
      encoder  ResNetTrunk (BatchNorm, randomly initialised)
               out1 (B, w, F, T) out2 (B, 2w, F/2, T/2) out3 (B, 4w, F/4, T/4) out4 (B, 8w, F/8, T/8)
      up[0]    transConv(8w -> 4w, n=3), cat IN(out3), Block(8w -> 4w)   (B, 4w, F/4, T/4)
      up[1]    transConv(4w -> 2w, n=4), cat IN(out2), Block(4w -> 2w)   (B, 2w, F/2, T/2)
      up[2]    transConv(2w -> w,  n=6), cat IN(out1), Block(2w -> w)    (B, w,  F,   T)
      out      conv1x1 (w -> 1) -> sigmoid -> mask (B, F, T)

``transConv(in, out, n)`` is n ConvTranspose2d layers, each followed by InstanceNorm2d(affine=True)
and ReLU; the first doubles both axes (kernel 3, stride 2, padding 1, output padding 1). The skip
is instance-normalised without affine parameters before concatenation, and ``Block`` is the
residual :class:`~gradw.models.resnet.BasicBlock` with InstanceNorm2d(affine=False).

The mask multiplies the mel *power* of the noisy input (E sees log(mel) + log(M)).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from gradw.models.resnet import PAPER_BLOCKS, BasicBlock, ResNetTrunk

PAPER_UP_LAYERS: tuple[int, int, int] = (3, 4, 6)
PAD_MODES = ("constant", "replicate")


def instance_norm(channels: int) -> nn.InstanceNorm2d:
    """InstanceNorm2d without affine parameters (skip connections and decoder Blocks)."""
    return nn.InstanceNorm2d(channels, affine=False)


class TransConv(nn.Sequential):
    """The paper's up-sampler ``transConv(in, out, n)``.

    n x [ConvTranspose2d(kernel 3) -> InstanceNorm2d(affine=True) -> ReLU]; the first layer has
    stride 2, padding 1, output padding 1 (doubles F and T), the others stride 1, padding 1.
    All transposed convolutions have a bias, as in the authors' code (and in the paper's parameter
    count); since an instance norm follows each of them, the bias is cancelled and its gradient is zero up
    to rounding (it stays at its initial value).

    Shapes: (B, C_in, F, T) -> (B, C_out, 2F, 2T).
    """

    def __init__(self, in_channels: int, out_channels: int, num_layers: int) -> None:
        if num_layers < 1:
            raise ValueError(f"transConv needs at least one layer, got {num_layers}")
        layers: list[nn.Module] = []
        for i in range(num_layers):
            first = i == 0
            layers += [
                nn.ConvTranspose2d(
                    in_channels if first else out_channels,
                    out_channels,
                    kernel_size=3,
                    stride=2 if first else 1,
                    padding=1,
                    output_padding=1 if first else 0,
                    bias=True,
                ),
                nn.InstanceNorm2d(out_channels, affine=True),
                nn.ReLU(),
            ]
        super().__init__(*layers)


class UpStage(nn.Module):
    """One decoder stage: up-sample, concatenate the normalised skip, fuse with a residual Block.

    Args:
        in_channels: C_in of the deeper map.
        out_channels: C_out, also the skip's channel count.
        num_layers: n of the up-sampler.

    Shapes: deep (B, C_in, F, T), skip (B, C_out, 2F, 2T) -> (B, C_out, 2F, 2T).
    """

    def __init__(self, in_channels: int, out_channels: int, num_layers: int) -> None:
        super().__init__()
        self.upsample = TransConv(in_channels, out_channels, num_layers)
        self.skip_norm = instance_norm(out_channels)
        self.fuse = BasicBlock(2 * out_channels, out_channels, stride=1, norm=instance_norm)

    def forward(self, deep: Tensor, skip: Tensor) -> Tensor:
        """(B, C_in, F, T), (B, C_out, 2F, 2T) -> (B, C_out, 2F, 2T)."""
        up = self.upsample(deep)
        return self.fuse(torch.cat((up, self.skip_norm(skip)), dim=1))


class MaskUNet(nn.Module):
    """The enhancer G: log-mel features of the noisy input -> mel-power mask.

    Args:
        n_mels: F, when known: checked to be divisible by 8 here, and every input must have F
            bands. None accepts any F divisible by 8 (the network is fully convolutional and its
            parameters do not depend on F).
        base_width: w, the encoder's stem width (32 in the paper).
        blocks: encoder BasicBlocks per stage ((3, 4, 6, 3) in the paper).
        up_layers: transposed convolutions in the three up-samplers, deep to shallow
            ((3, 4, 6) in the paper).
        init_bias: None (paper): default initialisation and an output convolution without bias.
            A float b: identity start; the output 1x1 convolution gets a bias initialised to b
            and a zero weight, so the mask starts at ``floor + (1 - floor) * sigmoid(b)``
            everywhere (b = 4 -> 0.982 without a floor). With a zero weight, only the output
            convolution receives gradient on the first step; the rest follows from step two.
        min_gain_db: None (paper): mask = sigmoid(z) in (0, 1). A value g <= 0 (dB): attenuation
            floor. Because the mask multiplies mel **power**, g is a power gain:
            floor = 10 ** (g / 10) (e.g. -20 dB -> 0.01), mask = floor + (1 - floor) * sigmoid(z)
            in (floor, 1); the mel power E sees is attenuated by at most |g| dB.
        pad_mode: how T is extended to a multiple of 8 before the encoder (frames are appended at
            the end and the mask is cropped back): "constant" (zeros: with mean-normalised
            features this is the utterance mean, and it matches the authors' zero-padding
            'apply' mode) or "replicate" (repeat the last frame). When T is already a multiple
            of 8 nothing is padded, exactly as in the paper.

    Attributes:
        config: JSON-able constructor arguments; :meth:`from_config` rebuilds the module.
        time_stride: frames per time step of the deepest level (three stride-2 stages: 8); inputs
            that start on a multiple of it share the whole recording's downsampling grid.
    """

    time_stride = 8

    def __init__(
        self,
        *,
        n_mels: int | None = None,
        base_width: int = 32,
        blocks: Sequence[int] = PAPER_BLOCKS,
        up_layers: Sequence[int] = PAPER_UP_LAYERS,
        init_bias: float | None = None,
        min_gain_db: float | None = None,
        pad_mode: str = "constant",
    ) -> None:
        super().__init__()
        if n_mels is not None and (n_mels < 8 or n_mels % 8):
            raise ValueError(f"MaskUNet needs F divisible by 8 (three stride-2 stages), got n_mels={n_mels}")
        up_layers = tuple(int(n) for n in up_layers)
        if len(up_layers) != 3 or any(n < 1 for n in up_layers):
            raise ValueError(f"up_layers must be three positive layer counts, got {up_layers}")
        if min_gain_db is not None and not (math.isfinite(min_gain_db) and min_gain_db <= 0):
            raise ValueError(f"min_gain_db must be a finite value <= 0 dB, got {min_gain_db}")
        if init_bias is not None and not math.isfinite(init_bias):
            raise ValueError(f"init_bias must be finite, got {init_bias}")
        if pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode must be one of {', '.join(PAD_MODES)}, got {pad_mode!r}")
        self.encoder = ResNetTrunk(in_channels=1, base_width=base_width, blocks=blocks)
        w = base_width
        self.up = nn.ModuleList(
            [
                UpStage(8 * w, 4 * w, up_layers[0]),
                UpStage(4 * w, 2 * w, up_layers[1]),
                UpStage(2 * w, w, up_layers[2]),
            ]
        )
        self.out = nn.Conv2d(w, 1, kernel_size=1, bias=init_bias is not None)
        if init_bias is not None:
            nn.init.zeros_(self.out.weight)
            nn.init.constant_(self.out.bias, float(init_bias))
        self.floor = 0.0 if min_gain_db is None else 10.0 ** (min_gain_db / 10.0)
        self.pad_mode = pad_mode
        self.n_mels = n_mels
        self.config: dict[str, Any] = {
            "n_mels": n_mels,
            "base_width": base_width,
            "blocks": list(self.encoder.blocks),
            "up_layers": list(up_layers),
            "init_bias": None if init_bias is None else float(init_bias),
            "min_gain_db": None if min_gain_db is None else float(min_gain_db),
            "pad_mode": pad_mode,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MaskUNet:
        """Rebuild a (freshly initialised) U-Net from :attr:`config`."""
        return cls(**dict(config))

    def encoder_parameters(self) -> list[nn.Parameter]:
        """Parameters of the ResNet encoder."""
        return list(self.encoder.parameters())

    def decoder_parameters(self) -> list[nn.Parameter]:
        """Parameters of the up-stages and the output convolution."""
        return [*self.up.parameters(), *self.out.parameters()]

    def mask_logits(self, features: Tensor) -> Tensor:
        """(B, F, T) features -> (B, F, T) pre-sigmoid mask logits z."""
        if features.dim() != 3:
            raise ValueError(f"expected features (B, F, T), got shape {tuple(features.shape)}")
        num_bins, num_frames = features.shape[1], features.shape[2]
        if self.n_mels is not None and num_bins != self.n_mels:
            raise ValueError(f"this MaskUNet was built for F={self.n_mels} mel bands, got F={num_bins}")
        if num_bins % 8 or num_bins == 0:
            raise ValueError(f"MaskUNet needs F divisible by 8 (three stride-2 stages), got F={num_bins}")
        if num_frames < 1:
            raise ValueError("MaskUNet needs at least one frame")
        pad = -num_frames % 8
        x = features
        if pad:
            x = F.pad(x, (0, pad), mode=self.pad_mode)
        out1, out2, out3, out4 = self.encoder(x)
        y = self.up[0](out4, out3)
        y = self.up[1](y, out2)
        y = self.up[2](y, out1)
        return self.out(y).squeeze(1)[..., :num_frames]

    def forward(self, features: Tensor) -> Tensor:
        """(B, F, T) log-mel features of the noisy input -> (B, F, T) mask in (floor, 1)."""
        mask = torch.sigmoid(self.mask_logits(features))
        if self.floor > 0.0:
            mask = self.floor + (1.0 - self.floor) * mask
        return mask
