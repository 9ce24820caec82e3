"""Speaker verification from waveforms: embed, score and decide, optionally through a trained G.

Two classes make gradw's public Python API (both importable as ``gradw.Enhancer`` and
``gradw.SpeakerVerifier``):

* :class:`~gradw.enhance.enhancer.Enhancer`: waveforms in any rate and channel count, enhanced
  16 kHz waveforms out (the mel mask mapped onto the STFT), or the mel mask itself.
* :class:`SpeakerVerifier` (here): a fixed speaker network E, optionally with an enhancer G. With G, the
  embedding is computed exactly as in training and evaluation: G's mask multiplies the noisy mel
  power on E's own grid, before the log and the mean normalisation,
  ``features = CMN(log(mel) + log(M + 1e-6))``. No waveform is resynthesised (that would add the
  STFT round trip and the mel -> linear approximation of :mod:`gradw.enhance.dsp`).

A threshold for :meth:`SpeakerVerifier.verify` comes from an evaluation run: a score file
(``enroll test score target|nontarget``) read by :meth:`SpeakerVerifier.load_threshold`, or
scores and labels handed to :meth:`SpeakerVerifier.calibrate`, at the EER operating point or at
a target false-acceptance rate.

Example (a tiny checkpoint stands in for a trained one in ``tests/evaluation/test_verifier.py``)::

    import soundfile as sf

    from gradw import Enhancer, SpeakerVerifier

    # enhance a recording: any rate, any channels in; 16 kHz mono out
    enhancer = Enhancer.from_checkpoint("runs/grad-w/last.pt", min_gain_db=-25)
    noisy, rate = sf.read("noisy.flac", dtype="float32")
    clean = enhancer.enhance(noisy, rate)  # (N',) float32 at 16 kHz
    mask = enhancer.mask(noisy, rate)  # (80, T) mel power gains in (0, 1]
    sf.write("enhanced.wav", clean, 16000)

    # verify a trial with E = CAM++ and the enhancer's mask applied on E's mel grid
    verifier = SpeakerVerifier(speaker="campplus", enhancer=enhancer)
    enroll, rate_e = sf.read("enroll.wav", dtype="float32")
    test, rate_t = sf.read("test.wav", dtype="float32")
    embedding = verifier.embed(enroll, rate_e)  # (192,) float32
    # the threshold at the EER of an evaluation run (gradw benchmark writes OUT/scores/SYSTEM/*.txt);
    # target="far", far=0.01 picks the lowest threshold with at most 1 % false acceptances instead
    threshold = verifier.load_threshold("runs/bench/scores/grad-w/babble_-5.txt")
    same, score = verifier.verify(enroll, test, rate_e)  # (bool, cosine score)
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gradw.audio.io import prepare_waveform
from gradw.enhance.enhancer import Enhancer

__all__ = ["SpeakerVerifier", "threshold_at_far"]

_TARGETS = ("eer", "far")


def threshold_at_far(scores: Any, labels: Any, far: float) -> float:
    """The lowest threshold whose false-acceptance rate is at most ``far``.

    A trial is accepted when ``score >= threshold`` (the convention of
    :mod:`gradw.evaluation.metrics`). The threshold is one of the scores (or ``+inf`` when even
    the highest score would accept too many non-target trials), so the FAR on these trials is
    exactly the fraction of non-target scores at or above it.

    Raises:
        ValueError: ``far`` outside [0, 1], or invalid scores/labels.
    """
    from gradw.evaluation.metrics import roc

    if not 0.0 <= far <= 1.0:
        raise ValueError(f"far must lie in [0, 1], got {far!r}")
    fpr, _fnr, thresholds = roc(scores, labels)
    ok = np.flatnonzero(fpr <= far)  # fpr falls as the threshold rises: the first index is lowest
    return float(thresholds[ok[0]])


class SpeakerVerifier:
    """Speaker embeddings, cosine scores and accept/reject decisions, optionally enhanced.

    Args:
        speaker: a speaker-network name (``"campplus"``, ``"resnet34"``, ``"resnet-tiny"``; see
            :func:`gradw.models.load_speaker_network`), a ``SpeakerNetwork`` instance, or None to
            use the network the enhancer was trained against (as recorded in its checkpoint).
        enhancer: None, an :class:`Enhancer`, or the path of an enhancer checkpoint. Its front-end
            must be E's front-end (the mask lives on E's mel grid).
        tap: E's tap (irrelevant to embeddings; kept for parity with training).
        checkpoint: E's checkpoint when ``speaker`` is a name (e.g. a trained ResNet).
        threshold: an initial decision threshold (see :meth:`calibrate`).
        device: where E (and G) run; default CPU.

    Attributes:
        speaker: the E in use (eval mode).
        enhancer: the Enhancer or None.
        threshold: the decision threshold used by :meth:`verify` when none is passed.
    """

    def __init__(
        self,
        speaker: Any = "campplus",
        enhancer: Enhancer | str | os.PathLike[str] | None = None,
        tap: str | None = None,
        *,
        checkpoint: str | os.PathLike[str] | None = None,
        threshold: float | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        from gradw.audio.frontends import frontend_name
        from gradw.models.loading import load_speaker_network
        from gradw.models.speaker import SpeakerNetwork

        self.device = torch.device(device)
        if isinstance(enhancer, str | os.PathLike):
            enhancer = Enhancer.from_checkpoint(Path(enhancer), device=self.device)
        if speaker is None:
            if enhancer is None or not enhancer.speaker.get("name"):
                raise ValueError(
                    "speaker=None needs an enhancer whose checkpoint records its speaker network"
                )
            record = enhancer.speaker
            speaker = record["name"]
            checkpoint = checkpoint if checkpoint is not None else record.get("checkpoint")
            tap = tap if tap is not None else record.get("tap")
        if isinstance(speaker, SpeakerNetwork):
            network = speaker
        elif isinstance(speaker, str):
            network = load_speaker_network(speaker, checkpoint=checkpoint, tap=tap)
            if enhancer is not None and enhancer.speaker.get("name") not in (None, speaker):
                warnings.warn(
                    f"the enhancer was trained against {enhancer.speaker['name']!r}, not {speaker!r}",
                    stacklevel=2,
                )
        else:
            raise TypeError(f"speaker must be a name or a SpeakerNetwork, got {type(speaker).__name__}")
        self.speaker = network.to(self.device).eval()
        if enhancer is not None:
            mine = frontend_name(self.speaker.frontend)
            theirs = frontend_name(enhancer.frontend)
            if mine != theirs or self.speaker.frontend.n_mels != enhancer.frontend.n_mels:
                raise ValueError(
                    f"the enhancer's mask lives on the {theirs!r} mel grid, but the speaker network "
                    f"uses {mine!r}: they must match"
                )
        self.enhancer = enhancer
        self.threshold: float | None = None if threshold is None else float(threshold)

    @property
    def sample_rate(self) -> int:
        """E's input rate (16 kHz)."""
        return self.speaker.frontend.sample_rate

    # -- embeddings and scores ---------------------------------------------------------------
    @torch.no_grad()
    def embed_tensor(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, N) float waveform at 16 kHz -> (B, D) embedding (enhanced when G is set)."""
        network = self.speaker
        wav = wav.to(self.device, torch.float32)
        short = network.frontend.min_samples - wav.shape[-1]
        if short > 0:
            raise ValueError(
                f"the waveform has {wav.shape[-1]} samples at {self.sample_rate} Hz; "
                f"{type(network).__name__} needs at least {network.frontend.min_samples}"
            )
        if self.enhancer is None:
            return network.embed_through(wav)
        enhancer = self.enhancer

        def mask_model(features: torch.Tensor) -> torch.Tensor:  # G runs on its own device
            return enhancer.model(features.to(enhancer.device)).to(features.device)

        return network.embed_through(wav, mask_model)

    def embed(self, waveform: Any, sample_rate: int = 16000) -> np.ndarray:
        """Speaker embedding of one recording.

        Args:
            waveform: (N,), (N, C) or (C, N) numpy array or tensor at ``sample_rate``
                (downmixed and resampled to 16 kHz).
            sample_rate: its rate in Hz.

        Returns:
            (D,) float32 embedding (not normalised).
        """
        wav = torch.from_numpy(prepare_waveform(waveform, sample_rate, self.sample_rate))
        return self.embed_tensor(wav[None])[0].cpu().numpy()

    def score(self, a: Any, b: Any, sample_rate: int = 16000) -> float:
        """Cosine similarity of the embeddings of two recordings (both at ``sample_rate``)."""
        from gradw.evaluation.scoring import cosine_scores

        ea = self.embed(a, sample_rate)
        eb = self.embed(b, sample_rate)
        return float(cosine_scores(ea[None], eb[None])[0])

    def verify(
        self, a: Any, b: Any, sample_rate: int = 16000, threshold: float | None = None
    ) -> tuple[bool, float]:
        """Decide whether two recordings come from the same speaker.

        Args:
            a, b: waveforms at ``sample_rate``.
            sample_rate: their rate in Hz.
            threshold: accept when ``score >= threshold``; default :attr:`threshold`.

        Returns:
            ``(accepted, score)``.

        Raises:
            ValueError: no threshold given and none calibrated.
        """
        value = self.threshold if threshold is None else float(threshold)
        if value is None:
            raise ValueError(
                "no decision threshold: pass threshold=..., or call calibrate() or load_threshold() first"
            )
        s = self.score(a, b, sample_rate)
        return bool(s >= value), s

    # -- thresholds --------------------------------------------------------------------------
    def calibrate(self, scores: Any, labels: Any, target: str = "eer", far: float = 0.01) -> float:
        """Set :attr:`threshold` from evaluation scores and labels (True/1 = same speaker).

        Args:
            scores: (N,) trial scores.
            labels: (N,) trial labels.
            target: ``"eer"``: the threshold at the equal error rate
                (:func:`gradw.evaluation.metrics.eer`); ``"far"``: the lowest threshold whose
                false-acceptance rate is at most ``far`` (:func:`threshold_at_far`).
            far: the target false-acceptance rate for ``target="far"``.

        Returns:
            The new threshold.

        Raises:
            ValueError: unknown target, or invalid scores/labels (e.g. no target or no
                non-target trial).
        """
        from gradw.evaluation.metrics import eer

        if target == "eer":
            _value, threshold = eer(scores, labels)
        elif target == "far":
            threshold = threshold_at_far(scores, labels, far)
            if math.isinf(threshold):
                warnings.warn(
                    f"no threshold reaches FAR <= {far}: the highest score belongs to a non-target trial; "
                    "every trial will be rejected",
                    stacklevel=2,
                )
        else:
            raise ValueError(f"target must be one of {', '.join(_TARGETS)}, got {target!r}")
        self.threshold = float(threshold)
        return self.threshold

    def load_threshold(self, path: str | os.PathLike[str], target: str = "eer", far: float = 0.01) -> float:
        """Calibrate from a score file (``enroll test score target|nontarget`` lines, as written
        by the evaluation); see :meth:`calibrate`. Returns the new threshold."""
        from gradw.evaluation.scoring import read_scores

        _enroll, _test, scores, labels = read_scores(path)
        return self.calibrate(scores, labels, target=target, far=far)
