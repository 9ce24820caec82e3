"""Builders of test inputs shared by several test modules (importable as ``helpers``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from gradw.checkpoint import save_checkpoint
from gradw.data.dirs import AugmentDir
from gradw.models.unet import MaskUNet
from gradw.training.loop import augment_fingerprints


def make_enhancer_checkpoint(
    path: Path,
    seed: int = 0,
    init_bias: float | None = None,
    tap: str | None = "layer4",
    trained_on: Path | None = None,
) -> Path:
    """A small G (random weights, width 4) saved as ``gradw train`` would, trained against
    resnet-tiny on the log-mel front-end (and on the augmentation directory ``trained_on``, whose
    fingerprints it then records)."""
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
        extra={
            "speaker": {"name": "resnet-tiny", "checkpoint": None, "tap": tap},
            "frontend": "logmel",
            **(
                {}
                if trained_on is None
                else {"augment_fingerprints": augment_fingerprints(AugmentDir.load(trained_on))}
            ),
        },
    )
    return path


def toy_tone(num_samples: int, seed: int) -> np.ndarray:
    """(N,) float32: a voiced-like tone (3 harmonics of a seeded f0 in 100-250 Hz, amplitude
    modulated at a seeded 2-6 Hz), peak about 0.37; cheaper than :func:`toy_voice` for tests."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / 16000
    f0 = 100 + 150 * rng.random()
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * (2 + 4 * rng.random()) * t)
    harmonics = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 4))
    return (0.2 * envelope * harmonics).astype(np.float32)


def write_float_wav(path: Path, wav: np.ndarray) -> Path:
    """Write (N,) float samples as a 32-bit float WAV at 16 kHz (parents created); returns path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wav, 16000, subtype="FLOAT")
    return path
