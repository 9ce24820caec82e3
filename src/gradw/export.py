"""ONNX export of the enhancer G and the speaker network E, with a parity check on CPU.

Two files, both with a dynamic batch axis and a dynamic time axis, opset 17:

* ``model.onnx``, the enhancer: input ``features`` (B, F, T) float32, output ``mask`` (B, F, T),
  the mel power mask in (0, 1] (``floor`` when the model has one).
* ``model.speaker.onnx``, E: input ``features`` (B, F, T), output ``embedding`` (B, D); with
  ``speaker_mask=True`` (``--speaker-mask``) a second input ``mask`` (B, F, T) and the embedding of
  the masked features, exactly as in training: ``E(CMN(features + log(mask + 1e-6)))``.

``features`` are E's CMN log-mel features (the front-end's ``log_features`` of the mel power,
e.g. Kaldi fbank for CAM++); the front-end itself (framing, FFT, mel bank) is not in the graph.
Because CMN is linear and idempotent, re-normalising ``features + log(mask)`` equals normalising
``log(mel) + log(mask)``, the training formula. A full pipeline is therefore
``mask = enhancer(features)`` then ``embedding = speaker(features, mask)``. Each file records the
front-end name, its rate, hop and band count, and the speaker network in its metadata.

Choices:

* The exporter is the TorchScript-based one (``torch.onnx.export(..., dynamo=False)``): the
  ``torch.export``-based exporter needs ``onnxscript``, which is not a dependency.
* The U-Net pads T up to a multiple of 8 with a Python-computed pad, which tracing would freeze.
  The exported wrapper always appends 8 frames (zeros, or the last frame for ``pad_mode=
  "replicate"``, as the model pads) and slices to ``ceil(T / 8) * 8`` with traced sizes, then
  crops the mask back to T: the same arithmetic for every T.

Every export is written to a temporary file, checked (``onnx.checker`` with ``full_check``),
compared with eager PyTorch in onnxruntime on CPU at two time lengths, and renamed into place only
if the outputs agree within the tolerance: nothing half-written is left behind.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gradw.audio.frontends import MASK_EPS
from gradw.errors import GradwError
from gradw.fileio import atomic_path, blocking_file
from gradw.version import __version__

__all__ = [
    "CHECK_FRAMES",
    "DEFAULT_OPSET",
    "EXPORT_TARGETS",
    "EnhancerForExport",
    "ExportError",
    "ExportReport",
    "SpeakerForExport",
    "export_module",
    "export_onnx",
    "speaker_path",
]

DEFAULT_OPSET = 17
EXPORT_TARGETS = ("enhancer", "speaker", "both")
#: Time lengths of the parity check: one a multiple of 8, one not.
CHECK_FRAMES: tuple[int, int] = (200, 123)
#: Maximum absolute difference between onnxruntime and eager outputs.
DEFAULT_TOLERANCE = 1e-4


class ExportError(GradwError, RuntimeError):
    """An export failed (missing onnx, checker error, parity mismatch); says which file and why."""


class EnhancerForExport(nn.Module):
    """A :class:`~gradw.models.unet.MaskUNet` with trace-friendly padding of the time axis.

    Shapes: features (B, F, T) -> mask (B, F, T), equal to ``model(features)`` for every T.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.replicate = getattr(model, "pad_mode", "constant") == "replicate"

    def forward(self, features: Tensor) -> Tensor:
        """(B, F, T) -> (B, F, T)."""
        num_frames = features.shape[2]
        padded_frames = (num_frames + 7) // 8 * 8
        last = features[..., -1:]
        filler = last if self.replicate else torch.zeros_like(last)
        padded = torch.cat([features, filler.expand(-1, -1, 8)], dim=2)[..., :padded_frames]
        return self.model(padded)[..., :num_frames]


class SpeakerForExport(nn.Module):
    """E on CMN features, optionally with a mel power mask.

    Shapes: features (B, F, T) [, mask (B, F, T)] -> embedding (B, D). With a mask the network
    sees ``CMN(features + log(mask + 1e-6))``.
    """

    def __init__(self, speaker: nn.Module, with_mask: bool = False) -> None:
        super().__init__()
        self.speaker = speaker
        self.with_mask = with_mask

    def forward(self, features: Tensor, mask: Tensor | None = None) -> Tensor:
        """(B, F, T) [, (B, F, T)] -> (B, D)."""
        if self.with_mask:
            if mask is None:
                raise ValueError("this speaker export takes a mask")
            features = features + torch.log(mask + MASK_EPS)
            features = features - features.mean(dim=-1, keepdim=True)
        return self.speaker(features)


def speaker_path(output: str | Path) -> Path:
    """The speaker file next to an enhancer file: ``model.onnx`` -> ``model.speaker.onnx``."""
    out = Path(output)
    return out.with_name(f"{out.stem}.speaker{out.suffix or '.onnx'}")


def check_outputs(checkpoint: str | Path, output: str | Path, what: str) -> list[Path]:
    """The files an export writes, checked before any work: each ends in ``.onnx``, none is the
    checkpoint it reads (an export never overwrites its input) or a folder, and none lies under a
    file.

    Raises:
        ExportError: naming the offending path.
    """
    files = [Path(output)] + ([speaker_path(output)] if what == "both" else [])
    source = Path(checkpoint).resolve()
    for path in files:
        if path.suffix.lower() != ".onnx":
            raise ExportError(f"{path}: an ONNX model is written to a file ending in .onnx")
        if path.resolve() == source:
            raise ExportError(f"{path} is the checkpoint being exported: choose another output")
        if path.is_dir():
            raise ExportError(f"{path} is a folder: name the .onnx file to write")
        blocker = blocking_file(path.parent)
        if blocker is not None:
            raise ExportError(f"{path}: {blocker} exists and is not a folder")
    return files


def _import_onnx() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise ExportError(
            f"ONNX export needs onnx and onnxruntime ({exc}); install them with `pip install gradw[onnx]`"
        ) from None
    return onnx, onnxruntime


def _check_parity(
    path: Path,
    module: nn.Module,
    input_names: Sequence[str],
    example: Sequence[Tensor],
    frames: Sequence[int],
    tolerance: float,
) -> float:
    """Run the file in onnxruntime (CPU) and eagerly on random inputs of each length; return the
    largest absolute difference, or raise ExportError above ``tolerance``."""
    _onnx, ort = _import_onnx()
    session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for i, num_frames in enumerate(frames):
        batch = 2 if i % 2 == 0 else 1
        inputs = []
        for name, ex in zip(input_names, example, strict=True):
            shape = (batch, ex.shape[1], num_frames)
            if name == "mask":
                inputs.append(torch.rand(shape, generator=generator).clamp(min=1e-3))
            else:
                inputs.append(torch.randn(shape, generator=generator))
        with torch.no_grad():
            expected = module(*inputs).numpy()
        got = session.run(None, {n: x.numpy() for n, x in zip(input_names, inputs, strict=True)})[0]
        if got.shape != expected.shape:
            raise ExportError(f"{path}: onnxruntime output shape {got.shape} != eager {expected.shape}")
        diff = float(abs(got - expected).max())
        worst = max(worst, diff)
        if not diff <= tolerance:
            raise ExportError(
                f"{path}: onnxruntime and PyTorch differ by {diff:.3g} (> {tolerance:g}) at T={num_frames}"
            )
    return worst


def export_module(
    module: nn.Module,
    output: str | Path,
    example: Sequence[Tensor],
    input_names: Sequence[str],
    output_name: str,
    *,
    opset: int = DEFAULT_OPSET,
    metadata: dict[str, str] | None = None,
    check: bool = True,
    check_frames: Sequence[int] = CHECK_FRAMES,
    tolerance: float = DEFAULT_TOLERANCE,
) -> float | None:
    """Export a module whose inputs are all (B, F, T) with dynamic B and T; atomic.

    Args:
        module: the module (put in eval mode).
        output: the ``.onnx`` file.
        example: example inputs for tracing.
        input_names: one name per input.
        output_name: the name of the single output (its batch axis is dynamic; its last axis too
            when the output is 3-D).
        opset: ONNX opset.
        metadata: string key/value pairs stored in the model.
        check: run ``onnx.checker`` (full check) and the onnxruntime parity check.
        check_frames: time lengths of the parity check.
        tolerance: maximum absolute difference allowed by the parity check.

    Returns:
        The largest onnxruntime-vs-eager difference, or None without ``check``.

    Raises:
        ExportError: onnx missing, the export, the checker or the parity check failed.
    """
    onnx, _ort = _import_onnx()
    module = module.eval()
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    dynamic = {name: {0: "batch", 2: "frames"} for name in input_names}
    with torch.no_grad():
        out_dims = module(*example).dim()
    dynamic[output_name] = {0: "batch", 2: "frames"} if out_dims == 3 else {0: "batch"}
    try:
        with atomic_path(out) as tmp:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # tracer and legacy-exporter chatter
                torch.onnx.export(
                    module,
                    tuple(example),
                    os.fspath(tmp),
                    dynamo=False,
                    opset_version=opset,
                    input_names=list(input_names),
                    output_names=[output_name],
                    dynamic_axes=dynamic,
                    do_constant_folding=True,
                )
            model = onnx.load(os.fspath(tmp))
            for key, value in (metadata or {}).items():
                entry = model.metadata_props.add()
                entry.key, entry.value = str(key), str(value)
            onnx.save(model, os.fspath(tmp))
            worst = None
            if check:
                try:
                    onnx.checker.check_model(model, full_check=True)
                except onnx.checker.ValidationError as exc:
                    raise ExportError(f"{out}: onnx.checker rejects the export: {exc}") from None
                worst = _check_parity(tmp, module, input_names, example, check_frames, tolerance)
    except ExportError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch.onnx and onnxruntime raise many types
        raise ExportError(f"{out}: export failed: {type(exc).__name__}: {exc}") from None
    return worst


@dataclass
class ExportReport:
    """Files written by :func:`export_onnx` and their parity-check differences (None: unchecked)."""

    files: list[Path] = field(default_factory=list)
    max_diff: dict[str, float | None] = field(default_factory=dict)


def export_onnx(
    checkpoint: str | Path,
    output: str | Path,
    *,
    what: str = "both",
    speaker_mask: bool = False,
    opset: int = DEFAULT_OPSET,
    check: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
) -> ExportReport:
    """Export an enhancer checkpoint (and the E it was trained against) to ONNX.

    Args:
        checkpoint: a ``gradw train`` checkpoint.
        output: the enhancer file (``model.onnx``); E goes to :func:`speaker_path` of it, or to
            ``output`` itself when ``what="speaker"``.
        what: ``"enhancer"``, ``"speaker"`` or ``"both"``.
        speaker_mask: give the speaker model a ``mask`` input (see the module docstring).
        opset: ONNX opset (17).
        check: run the checker and the onnxruntime parity check (recommended).
        tolerance: maximum absolute difference of the parity check.

    Returns:
        An :class:`ExportReport`.

    Raises:
        CheckpointError: the checkpoint (or E's) cannot be loaded.
        ExportError: the export or a check failed.
        ValueError: an unknown ``what``.
    """
    from gradw.audio.frontends import build_frontend
    from gradw.checkpoint import CheckpointError
    from gradw.models.loading import load_enhancer, load_speaker_network

    if what not in EXPORT_TARGETS:
        raise ValueError(f"what must be one of {', '.join(EXPORT_TARGETS)}, got {what!r}")
    check_outputs(checkpoint, output, what)
    bundle = load_enhancer(checkpoint)
    frontend = build_frontend(bundle.frontend)
    n_mels = frontend.n_mels
    metadata = {
        "producer": "gradw",
        "frontend": bundle.frontend,
        "sample_rate": str(frontend.sample_rate),
        "hop_length": str(frontend.hop_length),
        "n_mels": str(n_mels),
        "features": "CMN log-mel features (B, F, T) of the frontend",
        "speaker": str(bundle.speaker.get("name")),
        "checkpoint_step": str(bundle.step),
    }
    metadata["gradw_version"] = __version__
    report = ExportReport()
    example = torch.randn(1, n_mels, CHECK_FRAMES[0] + 1)
    if what in ("enhancer", "both"):
        out = Path(output)
        worst = export_module(
            EnhancerForExport(bundle.enhancer),
            out,
            [example],
            ["features"],
            "mask",
            opset=opset,
            metadata={**metadata, "model": "enhancer: features -> mel power mask"},
            check=check,
            tolerance=tolerance,
        )
        report.files.append(out)
        report.max_diff["enhancer"] = worst
    if what in ("speaker", "both"):
        record = bundle.speaker
        if not record.get("name"):
            raise CheckpointError(f"{checkpoint}: the checkpoint does not record its speaker network")
        speaker = load_speaker_network(
            record["name"], checkpoint=record.get("checkpoint"), tap=record.get("tap")
        )
        out = Path(output) if what == "speaker" else speaker_path(output)
        inputs = [example, torch.rand(1, n_mels, example.shape[2])] if speaker_mask else [example]
        names = ["features", "mask"] if speaker_mask else ["features"]
        worst = export_module(
            SpeakerForExport(speaker.eval(), with_mask=speaker_mask),
            out,
            inputs,
            names,
            "embedding",
            opset=opset,
            metadata={
                **metadata,
                "model": "speaker: " + " + ".join(names) + " -> embedding",
                "embedding_dim": str(speaker.embedding_dim),
            },
            check=check,
            tolerance=tolerance,
        )
        report.files.append(out)
        report.max_diff["speaker"] = worst
    return report
