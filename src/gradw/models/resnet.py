"""The paper's speaker network E: a WeSpeaker-style ResNet34 with TSTP pooling.

Layout (``base_width`` w = 32, ``blocks`` = (3, 4, 6, 3), F = 80 mel bands)::

    features (B, F, T) -> (B, 1, F, T)
    stem   conv3x3 1->w, BN, ReLU                 (B, w,  F,   T)
    layer1 3 x BasicBlock(w),  stride 1           (B, w,  F,   T)
    layer2 4 x BasicBlock(2w), first stride 2     (B, 2w, F/2, T/2)
    layer3 6 x BasicBlock(4w), first stride 2     (B, 4w, F/4, T/4)
    layer4 3 x BasicBlock(8w), first stride 2     (B, 8w, F/8, T/8)   <- the paper's A
    pool   TSTP: mean and std over time           (B, 2 * 8w * F/8)
    seg_1  Linear -> embedding                    (B, 256)
    head   scaled cosine (optional)               (B, K)

Stride-2 convolutions use kernel 3 and padding 1, so every halving is a ceiling: any T >= 9
works (the pooled std needs at least two frames at the tap of ``layer4``).

Module attribute names follow WeSpeaker's ``ResNet`` so that state-dict keys are identical
(``conv1.weight``, ``bn1.running_mean``, ``layer2.0.shortcut.0.weight``, ``seg_1.weight``, ...);
WeSpeaker's training checkpoints keep the margin head as ``projection.weight``, which
:func:`load_wespeaker_state_dict` maps onto :class:`~gradw.models.speaker.CosineHead`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from gradw.audio.frontends import MelFrontend
from gradw.models.speaker import CosineHead, SpeakerNetwork

NormFactory = Callable[[int], nn.Module]
"""Builds a 2-D normalisation layer for a given channel count (e.g. ``nn.BatchNorm2d``)."""

TAPS: tuple[str, ...] = ("layer1", "layer2", "layer3", "layer4")
"""Tap names of :class:`ResNetSpeaker`, shallow to deep."""

PAPER_BLOCKS: tuple[int, int, int, int] = (3, 4, 6, 3)
TSTP_EPS = 1e-8


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution, padding 1, no bias."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


def downsampled_size(size: int, num_halvings: int) -> int:
    """Size after ``num_halvings`` stride-2, kernel-3, padding-1 convolutions (ceil(size / 2) each)."""
    for _ in range(num_halvings):
        size = (size - 1) // 2 + 1
    return size


class BasicBlock(nn.Module):
    """Residual block: conv3x3-norm-ReLU-conv3x3-norm, plus a shortcut, then ReLU.

    The shortcut is the identity, or a 1x1 convolution (no bias) and a norm when the stride or
    the width changes. With the default ``norm`` (BatchNorm) this is WeSpeaker's ``BasicBlock``;
    the U-Net decoder reuses it with instance norm.

    Args:
        in_channels: C_in.
        out_channels: C_out.
        stride: stride of the first convolution and of the shortcut (1 or 2).
        norm: factory for the normalisation layers.

    Shapes: (B, C_in, F, T) -> (B, C_out, ceil(F / stride), ceil(T / stride)).
    """

    expansion = 1

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, norm: NormFactory = nn.BatchNorm2d
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = norm(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = norm(out_channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                norm(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, F, T) -> (B, C_out, F', T')."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


def _check_blocks(blocks: Sequence[int]) -> tuple[int, int, int, int]:
    blocks = tuple(int(b) for b in blocks)
    if len(blocks) != 4 or any(b < 1 for b in blocks):
        raise ValueError(f"blocks must be four positive block counts, got {blocks}")
    return blocks  # type: ignore[return-value]


def _add_trunk(module: nn.Module, in_channels: int, base_width: int, blocks: Sequence[int]) -> None:
    """Give ``module`` the attributes ``conv1``, ``bn1``, ``layer1`` ... ``layer4`` (WeSpeaker names)."""
    if base_width < 1:
        raise ValueError(f"base_width must be positive, got {base_width}")
    blocks = _check_blocks(blocks)
    module.conv1 = conv3x3(in_channels, base_width)
    module.bn1 = nn.BatchNorm2d(base_width)
    width_in = base_width
    for i, (num_blocks, stride) in enumerate(zip(blocks, (1, 2, 2, 2), strict=True)):
        width = base_width * 2**i
        layers = [BasicBlock(width_in, width, stride)]
        layers += [BasicBlock(width, width, 1) for _ in range(num_blocks - 1)]
        setattr(module, f"layer{i + 1}", nn.Sequential(*layers))
        width_in = width


def _stem(module: nn.Module, features: Tensor) -> Tensor:
    """(B, F, T) features -> (B, w, F, T) stem output (also accepts (B, C_in, F, T))."""
    x = features.unsqueeze(1) if features.dim() == 3 else features
    if x.dim() != 4:
        raise ValueError(f"expected features (B, F, T), got shape {tuple(features.shape)}")
    return F.relu(module.bn1(module.conv1(x)))


class ResNetTrunk(nn.Module):
    """The ResNet feature trunk (stem and four stages), returning every stage output.

    Used as the encoder of the U-Net enhancer G.

    Args:
        in_channels: input channels (1 for a single log-mel map).
        base_width: w, the width of the stem and of ``layer1`` (32 in the paper).
        blocks: BasicBlocks per stage ((3, 4, 6, 3) for ResNet34).
    """

    def __init__(
        self, in_channels: int = 1, base_width: int = 32, blocks: Sequence[int] = PAPER_BLOCKS
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.base_width = base_width
        self.blocks = _check_blocks(blocks)
        _add_trunk(self, in_channels, base_width, blocks)

    @property
    def widths(self) -> tuple[int, int, int, int]:
        """Channels of the four stage outputs (w, 2w, 4w, 8w)."""
        w = self.base_width
        return (w, 2 * w, 4 * w, 8 * w)

    def forward(self, features: Tensor) -> list[Tensor]:
        """(B, F, T) features (or (B, C_in, F, T)) -> stage outputs.

        Returns:
            [out1 (B, w, F, T), out2 (B, 2w, F/2, T/2), out3 (B, 4w, F/4, T/4),
            out4 (B, 8w, F/8, T/8)], halvings rounded up.
        """
        x = _stem(self, features)
        outs = []
        for name in TAPS:
            x = getattr(self, name)(x)
            outs.append(x)
        return outs


class TSTP(nn.Module):
    """Temporal statistics pooling: mean and standard deviation over time (no parameters).

    std = sqrt(var + 1e-8) with the unbiased variance (``torch.var`` default), as in WeSpeaker.
    Output layout: [mean flattened over (C, F), std flattened over (C, F)].

    Shapes: (B, C, F, T) -> (B, 2 * C * F); T >= 2.
    """

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, F, T) -> (B, 2 * C * F)."""
        if x.shape[-1] < 2:
            raise ValueError(
                f"TSTP needs at least 2 frames to estimate a standard deviation, got {x.shape[-1]} "
                "(the input is too short for this network: use at least 9 frames)"
            )
        mean = x.mean(dim=-1).flatten(start_dim=1)
        std = torch.sqrt(torch.var(x, dim=-1) + TSTP_EPS).flatten(start_dim=1)
        return torch.cat((mean, std), dim=1)


class ResNetSpeaker(SpeakerNetwork):
    """WeSpeaker ResNet speaker network (ResNet34-TSTP-emb256 with the defaults): the paper's E.

    Args:
        frontend: front-end producing mel power and log-mel features; default the paper's
            log-mel (``build_frontend("logmel")``).
        feat_dim: F, mel bands; default ``frontend.n_mels``.
        base_width: w (WeSpeaker ``m_channels``), 32 in the paper.
        blocks: BasicBlocks per stage.
        embedding_dim: D (WeSpeaker ``embed_dim``), 256 in the paper.
        num_classes: K; when given, a ``CosineHead(D, K, scale)`` is created as ``self.head``.
        scale: logit scale s of the cosine head (32 in the paper).
        tap: where the network is split: "layer4" (default; the paper's A), "layer3", "layer2"
            or "layer1".

    Attributes:
        config: JSON-able constructor arguments (the front-end excluded); see :meth:`from_config`.
    """

    # TSTP needs 2 frames after three stride-2 halvings (rounded up): 9 input frames
    min_frames = 9

    def __init__(
        self,
        frontend: MelFrontend | None = None,
        *,
        feat_dim: int | None = None,
        base_width: int = 32,
        blocks: Sequence[int] = PAPER_BLOCKS,
        embedding_dim: int = 256,
        num_classes: int | None = None,
        scale: float = 32.0,
        tap: str = "layer4",
    ) -> None:
        if frontend is None:
            from gradw.audio.frontends import build_frontend

            frontend = build_frontend("logmel")
        super().__init__(frontend)
        if tap not in TAPS:
            raise ValueError(f"unknown tap {tap!r}; choose one of {', '.join(TAPS)}")
        if feat_dim is None:
            feat_dim = int(frontend.n_mels)
        blocks = _check_blocks(blocks)
        self.feat_dim = feat_dim
        self.base_width = base_width
        self.blocks = blocks
        self.embedding_dim = embedding_dim
        self.scale = float(scale)
        self.tap = tap
        self.config: dict[str, Any] = {
            "feat_dim": feat_dim,
            "base_width": base_width,
            "blocks": list(blocks),
            "embedding_dim": embedding_dim,
            "num_classes": num_classes,
            "scale": self.scale,
            "tap": tap,
        }
        _add_trunk(self, 1, base_width, blocks)
        self.pool = TSTP()
        self.stats_dim = 2 * 8 * base_width * downsampled_size(feat_dim, 3)
        self.seg_1 = nn.Linear(self.stats_dim, embedding_dim)
        if num_classes is not None:
            self.head = CosineHead(embedding_dim, num_classes, scale=self.scale)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], frontend: MelFrontend | None = None) -> ResNetSpeaker:
        """Rebuild a network from :attr:`config` (weights are not part of it)."""
        return cls(frontend, **dict(config))

    @property
    def num_classes(self) -> int | None:
        """K, or None without a head."""
        return None if self.head is None else self.head.num_classes

    def _tap_index(self) -> int:
        return TAPS.index(self.tap)

    def to_tap(self, features: Tensor) -> Tensor:
        """(B, F, T) features -> activation at the tap.

        For "layer4": (B, 8w, F/8, T/8) (the paper's A: (B, 256, 10, T/8)); halvings round up.
        """
        if features.dim() != 3 or features.shape[1] != self.feat_dim:
            raise ValueError(f"expected features (B, {self.feat_dim}, T), got shape {tuple(features.shape)}")
        x = _stem(self, features)
        for name in TAPS[: self._tap_index() + 1]:
            x = getattr(self, name)(x)
        return x

    def from_tap(self, activation: Tensor) -> Tensor:
        """(B, C, F', T') activation at the tap -> (B, D) embedding (``seg_1`` output)."""
        x = activation
        for name in TAPS[self._tap_index() + 1 :]:
            x = getattr(self, name)(x)
        return self.seg_1(self.pool(x))


def resnet34(
    num_classes: int | None = None,
    base_width: int = 32,
    embedding_dim: int = 256,
    frontend: MelFrontend | None = None,
    tap: str = "layer4",
    **kwargs: Any,
) -> ResNetSpeaker:
    """The paper's E: ResNet34 (blocks 3/4/6/3), TSTP, 256-d embedding (6.63 M parameters at w=32,
    F=80, head excluded). Extra keyword arguments go to :class:`ResNetSpeaker`."""
    return ResNetSpeaker(
        frontend,
        base_width=base_width,
        blocks=PAPER_BLOCKS,
        embedding_dim=embedding_dim,
        num_classes=num_classes,
        tap=tap,
        **kwargs,
    )


def resnet_tiny(
    num_classes: int | None = None,
    base_width: int = 8,
    embedding_dim: int = 64,
    frontend: MelFrontend | None = None,
    tap: str = "layer4",
    blocks: Sequence[int] = (1, 1, 1, 1),
    **kwargs: Any,
) -> ResNetSpeaker:
    """A small ResNet (one block per stage, width 8) for tests and CPU presets."""
    return ResNetSpeaker(
        frontend,
        base_width=base_width,
        blocks=blocks,
        embedding_dim=embedding_dim,
        num_classes=num_classes,
        tap=tap,
        **kwargs,
    )


# -- WeSpeaker checkpoints ---------------------------------------------------------------------

WESPEAKER_HEAD_KEY = "projection.weight"
_OWN_PREFIXES = ("frontend.", "head.")


def _trunk_keys(model: ResNetSpeaker) -> list[str]:
    """State-dict keys WeSpeaker's ResNet has too (front-end and head excluded)."""
    return [k for k in model.state_dict() if not k.startswith(_OWN_PREFIXES)]


def _unwrap(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Strip a {"state_dict": ...} / {"model": ...} wrapper and DDP's "module." prefix."""
    for wrapper in ("state_dict", "model"):
        inner = state_dict.get(wrapper)
        if isinstance(inner, Mapping) and not isinstance(inner, Tensor):
            state_dict = inner
            break
    return {k.removeprefix("module."): v for k, v in state_dict.items()}


def _listing(keys: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_wespeaker_state_dict(
    model: ResNetSpeaker, state_dict: Mapping[str, Any], *, strict: bool = True
) -> ResNetSpeaker:
    """Load a WeSpeaker ResNet state dict (e.g. ``avg_model.pt``) into ``model``, in place.

    Accepts a plain state dict, one wrapped as {"state_dict": ...} or {"model": ...}, and keys
    prefixed with "module." (DDP). ``projection.weight`` (WeSpeaker's margin head, shape (K, D))
    becomes ``model.head.weight``; a head is created when the model has none. The front-end is
    not part of a WeSpeaker checkpoint and is left as it is.

    Args:
        model: the network to fill.
        state_dict: the WeSpeaker weights.
        strict: also reject keys the model does not have (missing keys are always an error).

    Returns:
        ``model``.

    Raises:
        ValueError: naming every missing, unexpected or wrongly-shaped key.
    """
    sd = _unwrap(state_dict)
    head_weight = sd.pop(WESPEAKER_HEAD_KEY, None)
    own = model.state_dict()
    expected = _trunk_keys(model)
    missing = [k for k in expected if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = sorted(k for k in sd if k not in own or k.startswith(_OWN_PREFIXES))
    mismatched = [
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in expected
        if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)
    ]
    if model.head is not None and head_weight is None:
        missing.append(WESPEAKER_HEAD_KEY)
    if head_weight is not None:
        if head_weight.dim() != 2 or head_weight.shape[1] != model.embedding_dim:
            mismatched.append(
                f"{WESPEAKER_HEAD_KEY}: checkpoint {tuple(head_weight.shape)} vs model "
                f"(K, {model.embedding_dim})"
            )
        elif model.head is not None and tuple(head_weight.shape) != tuple(model.head.weight.shape):
            mismatched.append(
                f"{WESPEAKER_HEAD_KEY}: checkpoint {tuple(head_weight.shape)} vs model "
                f"{tuple(model.head.weight.shape)}"
            )
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected and strict:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches: {_listing(mismatched)}")
    if problems:
        raise ValueError(
            f"WeSpeaker state dict does not fit {type(model).__name__}"
            f"(base_width={model.base_width}, blocks={model.blocks}, feat_dim={model.feat_dim}, "
            f"embedding_dim={model.embedding_dim}): " + "; ".join(problems)
        )
    if head_weight is not None and model.head is None:
        model.head = CosineHead(model.embedding_dim, head_weight.shape[0], scale=model.scale).to(
            model.seg_1.weight.device
        )
        model.config["num_classes"] = model.head.num_classes
    to_load = {k: sd[k] for k in expected if k in sd}
    if head_weight is not None:
        to_load["head.weight"] = head_weight
    model.load_state_dict(to_load, strict=False)
    return model


def to_wespeaker_state_dict(model: ResNetSpeaker) -> OrderedDict[str, Tensor]:
    """``model``'s weights under WeSpeaker's key names (head as ``projection.weight``, no front-end)."""
    own = model.state_dict()
    out: OrderedDict[str, Tensor] = OrderedDict((k, own[k]) for k in _trunk_keys(model))
    if model.head is not None:
        out[WESPEAKER_HEAD_KEY] = own["head.weight"]
    return out
