"""Builders of test inputs shared by several test modules (importable as ``helpers``)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from gradw.checkpoint import save_checkpoint
from gradw.data.corpora.synthvox.ood import OOD_LICENCES
from gradw.data.corpora.synthvox.presets import OOD_POOL
from gradw.data.dirs import AugmentDir
from gradw.models.unet import MaskUNet
from gradw.training.loop import augment_fingerprints


def make_enhancer_checkpoint(
    path: Path,
    seed: int = 0,
    init_bias: float | None = None,
    tap: str | None = "layer4",
    trained_on: Path | None = None,
    speaker_checkpoint: str = "random",
    calibration: dict | None = None,
) -> Path:
    """A small G (random weights, width 4) saved as ``gradw train`` would, trained against a
    resnet-tiny (randomly initialised unless ``speaker_checkpoint`` names its weights) on the
    log-mel front-end (and on the augmentation directory ``trained_on``, whose fingerprints it
    then records; with ``calibration``, as a ``best.pt`` records it)."""
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
            "speaker": {"name": "resnet-tiny", "checkpoint": speaker_checkpoint, "tap": tap},
            **({} if calibration is None else {"calibration": calibration}),
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


def make_speaker_checkpoint(path: Path, seed: int = 0) -> Path:
    """A randomly initialised resnet-tiny (no head) saved as ``gradw train-speaker`` would."""
    from gradw.models.loading import RESNET_PRESETS, build_resnet

    torch.manual_seed(seed)
    config = {**RESNET_PRESETS["resnet-tiny"], "num_classes": None}
    model = build_resnet(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, kind="speaker", model=model, step=0, config={}, model_config=config)
    return path


def adapt_overrides(corpus: Path, out: Path, base: Path, *extra: str) -> list[str]:
    """Overrides of the tiny preset's ``adapt`` section for a fast run on the toy corpus
    ``corpus``: resnet-tiny from the speaker checkpoint ``base`` (tap layer3), 0.5 s crops,
    batches of 4, one thread, then ``extra``."""
    return [
        f"out_dir={out}",
        f"data.train={corpus / 'train'}",
        f"data.augment={corpus / 'augment' / 'train'}",
        f"data.val={corpus / 'val'}",
        f"data.val_augment={corpus / 'augment' / 'test'}",
        "speaker.name=resnet-tiny",
        f"speaker.checkpoint={base}",
        "speaker.tap=layer3",
        "data.crop_seconds=0.5",
        "optim.batch_size=4",
        "tensorboard=false",
        "threads=1",
        *extra,
    ]


def make_adapted_checkpoint(path: Path, base: Path, enhancer: Path | None = None, seed: int = 0) -> Path:
    """A checkpoint as ``gradw adapt`` writes it: resnet-tiny from ``base`` (a speaker checkpoint)
    with layer4 fully adapted (its weights perturbed from a seed), behind the G of ``enhancer``."""
    from gradw.models.adapters import base_digest, inject_adapters, trainable_parameters
    from gradw.models.loading import load_speaker_network
    from gradw.training.adapt import StudentModule, load_frozen_enhancer

    student = load_speaker_network("resnet-tiny", checkpoint=base, tap="layer4")
    digest = base_digest(student)
    record = None if enhancer is None else load_frozen_enhancer(enhancer, student)[1]
    spec = inject_adapters(student, ["layer4"], rank=0)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in trainable_parameters(student):
            p.add_(0.2 * torch.randn(p.shape, generator=generator))
    save_checkpoint(
        path,
        kind="adapted",
        model=StudentModule(student),
        step=1,
        config={},
        model_config={
            "speaker": {"name": "resnet-tiny", "checkpoint": str(base), "tap": "layer4"},
            "base_digest": digest,
            "adapter": spec.to_dict(),
        },
        extra={"frontend": "logmel", "train_speakers": 0, "enhancer": record},
    )
    return path


def with_short_utterance(source: Path, out: Path, milliseconds: float = 10.0) -> tuple[Path, str]:
    """A copy of the speech directory ``source`` in ``out`` whose first utterance (sorted) is
    ``milliseconds`` long (a new file ``out/short.wav``); returns (the copy, that utterance)."""
    import shutil

    from gradw.audio.io import write_audio
    from gradw.data.dirs import SpeechDir

    speech = SpeechDir.load(source)
    utt = speech.utts[0]
    shutil.copytree(source, out)
    short = out / "short.wav"
    write_audio(short, np.full(int(16 * milliseconds), 0.01, dtype=np.float32))
    wavs = {**speech.wavs, utt: short}
    (out / "wav.scp").write_text("".join(f"{u} {wavs[u]}\n" for u in sorted(wavs)))
    (out / "utt2dur").unlink(missing_ok=True)
    return out, utt


def strip_ood_pool(root: Path) -> None:
    """Make the synthvox corpus at ``root`` one built before the out-of-domain test pool existed:
    its lists, audio and manifest entries removed."""
    shutil.rmtree(root / "augment" / OOD_POOL)
    shutil.rmtree(root / "audio" / "augment" / OOD_POOL)
    manifest = json.loads((root / "manifest.json").read_text())
    for key in ("ood", "ood_licence_note"):
        del manifest[key]
    del manifest["augment"][OOD_POOL], manifest["augment_sources"][OOD_POOL], manifest["preset_config"]["ood"]
    for package in OOD_LICENCES:
        manifest["licences"].pop(package, None)
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")


def load_script(name: str):
    """The module of ``scripts/NAME.py`` (scripts are not a package: loaded from their file)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before it runs: dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
