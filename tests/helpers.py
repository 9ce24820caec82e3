"""Builders of test inputs shared by several test modules (importable as ``helpers``)."""

from __future__ import annotations

from pathlib import Path

import torch

from gradw.checkpoint import save_checkpoint
from gradw.models.unet import MaskUNet


def make_enhancer_checkpoint(
    path: Path, seed: int = 0, init_bias: float | None = None, tap: str | None = "layer4"
) -> Path:
    """A small G (random weights, width 4) saved as ``gradw train`` would, trained against
    resnet-tiny on the log-mel front-end."""
    torch.manual_seed(seed)
    g = MaskUNet(n_mels=80, base_width=4, blocks=(1, 1, 1, 1), up_layers=(1, 1, 1), init_bias=init_bias)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(
        path,
        kind="enhancer",
        model=g,
        step=0,
        config={},
        model_config=g.config,
        extra={"speaker": {"name": "resnet-tiny", "checkpoint": None, "tap": tap}, "frontend": "logmel"},
    )
    return path
