"""Speaker verification from waveforms or files: embed, score and decide, optionally through a trained G.

Two classes make gradw's public Python API (both importable as ``gradw.Enhancer`` and
``gradw.SpeakerVerifier``):

* :class:`~gradw.enhance.enhancer.Enhancer`: waveforms in any rate and channel count, enhanced
  16 kHz waveforms out (the mel mask mapped onto the STFT), or the mel mask itself.
* :class:`SpeakerVerifier` (here): a fixed speaker network E, optionally with an enhancer G. With G, the
  embedding is computed exactly as in training and evaluation: G's mask multiplies the noisy mel
  power on E's own grid, before the log and the mean normalisation,
  ``features = CMN(log(mel) + log(M + 1e-6))``. No waveform is resynthesised (that would add the
  STFT round trip and the mel -> linear approximation of :mod:`gradw.enhance.dsp`).

Embeddings come from one recording (``(N,)`` -> ``(D,)``), a batch (``(B, N)`` -> ``(B, D)``), a
list of recordings of any lengths, or files (:meth:`SpeakerVerifier.embed_files`, each read at its
own rate). A 2-D array is always a batch, never channels: multi-channel audio is downmixed by the
caller, or passed as a path.

A recording longer than ``window_seconds`` (30 s by default, as ``gradw evaluate``) is read and
embedded window by window (:mod:`gradw.evaluation.windows`): memory stays that of one window.

A checkpoint selected on validation carries a calibration (:mod:`gradw.evaluation.calibration`):
:meth:`SpeakerVerifier.llr` gives log-likelihood ratios, and the default decision accepts when the
LLR is at least 0. Without quality measures that is a score threshold
(:attr:`SpeakerVerifier.threshold`); a quality-aware calibration also reads blind measures of the
two recordings (:mod:`gradw.audio.quality`, e.g. estimated SNR), and one with a score
normalisation normalises the score against the cohort stored with it (from the two recordings'
embeddings), so either decides per trial on the LLR (the threshold stays None;
:mod:`gradw.evaluation.verifier_llr`). Other thresholds come from an evaluation's score file
(:meth:`SpeakerVerifier.load_threshold`) or scores and labels (:meth:`SpeakerVerifier.calibrate`),
at the EER or at a target false-acceptance rate. ``gradw verify`` is the command-line side.

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
    # the threshold at the EER of an evaluation run (gradw evaluate writes OUT/scores/SYSTEM/*.txt);
    # target="far", far=0.01 picks the lowest threshold with at most 1 % false acceptances instead
    threshold = verifier.load_threshold("runs/bench/scores/grad-w/babble_-5.txt")
    # straight from the files, each read at its own rate and downmixed: (cosine score, decision)
    score, same = verifier.verify_files("enroll.wav", "test.flac")
    # or from waveforms, each with its own rate; a 2-D array is a batch, so downmix channels first
    enroll, rate_e = sf.read("enroll.wav", dtype="float32")  # mono
    test, rate_t = sf.read("test.flac", dtype="float32", always_2d=True)  # (N, C)
    test = test.mean(axis=1)
    embedding = verifier.embed(enroll, rate_e)  # (192,) float32
    accepted, cosine = verifier.verify(enroll, test, rate_e, sample_rate_b=rate_t)  # (bool, score)
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from gradw.audio.io import audio_length, prepare_waveform, read_audio, read_windows
from gradw.enhance.enhancer import Enhancer
from gradw.errors import GradwError
from gradw.evaluation.calibration import Calibration
from gradw.evaluation.metrics import operating_threshold, threshold_at_far
from gradw.evaluation.verifier_llr import CalibratedScoring
from gradw.evaluation.windows import DEFAULT_WINDOW_SECONDS, embed_windows, window_bounds, window_sizes

__all__ = [
    "DEFAULT_WINDOW_SECONDS",
    "MAX_CHANNELS",
    "PairResult",
    "SpeakerVerifier",
    "VerificationError",
    "threshold_at_far",
]

#: a 2-D array whose last axis is at most this long is taken for (N, C) channels and refused
MAX_CHANNELS = 8


class PairResult(NamedTuple):
    """One scored pair: the cosine ``score``, the calibrated ``llr`` (None without a calibration)
    and the ``decision`` (None when none can be made)."""

    score: float
    llr: float | None
    decision: bool | None


class VerificationError(GradwError, ValueError):
    """Input that :class:`SpeakerVerifier` cannot embed as given (a shape that may hold channels, a
    recording too short for E, a speaker network that contradicts the checkpoint); one line."""


def _is_path(item: Any) -> bool:
    return isinstance(item, str | os.PathLike)


def _as_array(waveform: Any) -> np.ndarray:
    if hasattr(waveform, "detach"):  # a torch tensor
        waveform = waveform.detach().cpu().numpy()
    return np.asarray(waveform)


class SpeakerVerifier(CalibratedScoring):
    """Speaker embeddings, cosine scores and accept/reject decisions, optionally enhanced.

    Args:
        speaker: a speaker-network name (``"campplus"``, ``"resnet34"``, ``"resnet-tiny"``; see
            :func:`gradw.models.load_speaker_network`), a ``SpeakerNetwork`` instance, or None
            (default): the network the enhancer's checkpoint records it was trained against, or
            CAM++ when there is no enhancer.
        enhancer: None, an :class:`Enhancer`, or the path of a checkpoint: of ``gradw train`` (G,
            whose front-end must be E's: the mask lives on E's mel grid), or of ``gradw adapt``
            (its adapted student replaces E, behind its G when it was adapted on G's output; then
            ``speaker`` must be None or the student's base network, and ``checkpoint`` None).
        tap: E's tap (irrelevant to embeddings; kept for parity with training).
        checkpoint: E's checkpoint when ``speaker`` is a name: required by a ResNet (e.g. a
            trained ``resnet34``), or ``"random"`` to use randomly initialised weights on purpose.
        threshold: an initial decision threshold (see :meth:`calibrate`).
        device: where E (and G) run; default CPU.
        window_seconds: a recording longer than this is embedded by windows (see the module
            docstring); None: every recording whole.

    Attributes:
        speaker: the E in use (eval mode).
        enhancer: the Enhancer or None.
        adapted: the provenance of an adapted checkpoint (see
            :func:`gradw.models.loading.load_adapted`), or None.
        threshold: the decision threshold used by :meth:`verify` and :meth:`verify_files` when
            none is passed (None with a quality-aware or normalising calibration: then they
            accept when the trial's LLR is at least 0).
        calibration: the checkpoint's :class:`~gradw.evaluation.calibration.Calibration`, or None.
        window_seconds: the window of long recordings (None: none).

    Raises:
        gradw.checkpoint.CheckpointError: an unreadable checkpoint, or a ResNet without weights.
        VerificationError: (a ValueError) ``speaker`` contradicts the checkpoint, G's mel grid is
            not E's, or E would be rebuilt from a record of random weights (which cannot be drawn
            again).
    """

    def __init__(
        self,
        speaker: Any = None,
        enhancer: Enhancer | str | os.PathLike[str] | None = None,
        tap: str | None = None,
        *,
        checkpoint: str | os.PathLike[str] | None = None,
        threshold: float | None = None,
        device: str | torch.device = "cpu",
        window_seconds: float | None = DEFAULT_WINDOW_SECONDS,
    ) -> None:
        from gradw.audio.frontends import frontend_name
        from gradw.models.loading import checkpoint_kind, is_random_weights, load_speaker_network
        from gradw.models.speaker import SpeakerNetwork

        if window_seconds is not None and not window_seconds >= 1:
            raise ValueError(f"window_seconds must be at least 1 (or None), got {window_seconds!r}")
        self.window_seconds = None if window_seconds is None else float(window_seconds)
        self.device = torch.device(device)
        self.adapted: dict[str, Any] | None = None
        source = enhancer if _is_path(enhancer) else None
        if _is_path(enhancer) and checkpoint_kind(Path(enhancer)) == "adapted":  # type: ignore[arg-type]
            speaker, enhancer = self._load_adapted(Path(enhancer), speaker, checkpoint)  # type: ignore[arg-type]
        elif _is_path(enhancer):
            enhancer = Enhancer.from_checkpoint(Path(enhancer), device=self.device)  # type: ignore[arg-type]
        if speaker is None and enhancer is None:
            speaker = "campplus"
        if speaker is None:
            assert isinstance(enhancer, Enhancer)
            if not enhancer.speaker.get("name"):
                raise VerificationError(
                    "speaker=None needs an enhancer whose checkpoint records its speaker network; "
                    "pass speaker="
                )
            record = enhancer.speaker
            speaker = record["name"]
            if checkpoint is None and is_random_weights(record.get("checkpoint")):
                raise VerificationError(
                    f"the enhancer was trained against a randomly initialised {speaker}, which cannot "
                    "be drawn again: give the speaker network's checkpoint (or 'random', on purpose)"
                )
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
                raise VerificationError(
                    f"the enhancer's mask lives on the {theirs!r} mel grid, but the speaker network "
                    f"uses {mine!r}: they must match"
                )
        self.enhancer = enhancer
        try:
            self.calibration: Calibration | None = self._find_calibration(speaker, checkpoint)
        except ValueError as exc:
            raise VerificationError(f"{source or 'the checkpoint'}: {exc}") from None
        by_score = self.calibration is not None and not self.calibration.measures
        if threshold is None and by_score and self.calibration.score_norm is None:  # type: ignore[union-attr]
            threshold = self.calibration.score_threshold()  # type: ignore[union-attr]
        self.threshold: float | None = None if threshold is None else float(threshold)

    def _load_adapted(self, path: Path, speaker: Any, checkpoint: Any) -> tuple[Any, Enhancer | None]:
        """The student of a ``gradw adapt`` checkpoint (as E) and its G as an Enhancer (or None)."""
        from gradw.audio.frontends import build_frontend, frontend_name
        from gradw.models.loading import load_adapted

        student, g, info = load_adapted(path)
        base = info["speaker"]["name"]
        if speaker is not None and not (isinstance(speaker, str) and speaker == base):
            given = speaker if isinstance(speaker, str) else type(speaker).__name__
            raise VerificationError(
                f"{path} is an adapted checkpoint: its student of {base} replaces the speaker network, "
                f"so speaker={given!r} cannot be used with it (pass speaker=None)"
            )
        if checkpoint is not None:
            raise VerificationError(
                f"{path} is an adapted checkpoint: it rebuilds its own base network, so checkpoint= "
                "cannot be used with it"
            )
        self.adapted = info
        if g is None:
            return student, None
        record = info["enhancer"] or {}
        frontend = build_frontend(record.get("frontend") or frontend_name(student.frontend))
        return student, Enhancer(g, frontend, device=self.device, speaker=info["speaker"])

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
        if wav.shape[-1] < network.min_samples:
            raise VerificationError(
                f"the waveform has {wav.shape[-1]} samples at {self.sample_rate} Hz; "
                f"{type(network).__name__} needs at least {network.min_samples}"
            )
        if self.enhancer is None:
            return network.embed_through(wav)
        enhancer = self.enhancer

        def mask_model(features: torch.Tensor) -> torch.Tensor:  # G runs on its own device
            return enhancer.model(features.to(enhancer.device)).to(features.device)

        return network.embed_through(wav, mask_model)

    def _embed_rows(self, wavs: np.ndarray) -> np.ndarray:
        """(B, N) float32 16 kHz recordings -> (B, D): whole when N fits in the window (as
        :meth:`embed_tensor` gives them), else by windows (unit length)."""
        bounds = window_bounds(wavs.shape[1], self.window_seconds, self.sample_rate)
        if len(bounds) == 1:
            return self._embed_array(wavs)
        return embed_windows((wavs[:, start:stop] for start, stop in bounds), self._embed_array)

    def _embed_array(self, wavs: np.ndarray) -> np.ndarray:
        return self.embed_tensor(torch.from_numpy(np.ascontiguousarray(wavs))).cpu().numpy()

    def _embed_path(self, path: str | os.PathLike[str]) -> np.ndarray:
        """One file -> (D,): read whole when it fits in the window, else read window by window
        (never held whole)."""
        sizes = window_sizes(audio_length(path, self.sample_rate), self.window_seconds, self.sample_rate)
        if len(sizes) == 1:
            return self._embed_array(read_audio(path, self.sample_rate)[None])[0]
        windows = (w[None] for w in read_windows(path, sizes, self.sample_rate))
        return embed_windows(windows, self._embed_array)[0]

    def _mono(self, item: Any, sample_rate: int) -> np.ndarray:
        """One recording -> (N,) float32 at E's rate: a path is read at its own rate (downmixed);
        an array must be 1-D (a 2-D one could hold channels or a batch: never guessed)."""
        if _is_path(item):
            return read_audio(item, self.sample_rate)
        arr = _as_array(item)
        if arr.ndim != 1:
            raise VerificationError(
                f"expected one mono recording of shape (N,), got shape {arr.shape}: downmix "
                "multi-channel audio first (e.g. wav.mean(axis=1)) or pass the file's path"
            )
        return prepare_waveform(arr, sample_rate, self.sample_rate)

    def embed(self, waveform: Any, sample_rate: int = 16000) -> np.ndarray:
        """Speaker embeddings of one recording or of a batch.

        Args:
            waveform: what to embed:

                * a (N,) numpy array or tensor: one mono recording -> (D,);
                * a (B, N) array or tensor: a batch of B mono recordings of one length -> (B, D),
                  row b the embedding of ``waveform[b]`` alone. A 2-D array is never read as
                  channels: a (N, C) array (its last axis at most 8, or shorter than its first)
                  is refused with a ValueError, and a (C, N) multi-channel recording would be
                  embedded channel by channel; downmix it (``wav.mean(axis=0)``) or pass its path;
                * a list or tuple of (N_i,) arrays of any lengths (or paths) -> (B, D);
                * a path (``str`` or ``os.PathLike``): read at the file's own rate and downmixed
                  (:func:`gradw.audio.io.read_audio`) -> (D,); see also :meth:`embed_files`.
            sample_rate: the rate in Hz of the arrays (resampled to 16 kHz); not used for paths.

        Returns:
            (D,) or (B, D) float32 embeddings: not normalised, except those of recordings longer
            than :attr:`window_seconds`, which are unit-length means of their windows'
            embeddings (a file that long is read window by window, never whole).

        Raises:
            VerificationError: (a ValueError) a 2-D array shaped like channels, a list item that
                is not 1-D, an empty list, more than two dimensions, or a recording too short for E.
            gradw.audio.io.AudioError: an unreadable file (named).
        """
        if _is_path(waveform):
            return self._embed_path(waveform)
        if isinstance(waveform, list | tuple):
            if not waveform:
                raise VerificationError("nothing to embed: the list is empty")
            return np.stack(
                [
                    self._embed_path(item)
                    if _is_path(item)
                    else self._embed_rows(self._mono(item, sample_rate)[None])[0]
                    for item in waveform
                ]
            )
        arr = _as_array(waveform)
        if arr.ndim == 1:
            return self.embed([arr], sample_rate)[0]
        if arr.ndim != 2:
            raise VerificationError(
                f"expected a waveform (N,), a batch (B, N) or a list of waveforms, got shape {arr.shape}"
            )
        batch, length = arr.shape
        if length <= MAX_CHANNELS or length < batch:
            raise VerificationError(
                f"a 2-D array is a batch (B, N) of mono recordings, but shape {arr.shape} looks like "
                "(N, C) channels: downmix it (e.g. wav.mean(axis=1)), pass the file's path, or pass "
                "a list of 1-D waveforms"
            )
        rows = [prepare_waveform(row, sample_rate, self.sample_rate) for row in arr]
        return self._embed_rows(np.stack(rows))

    def embed_files(self, paths: Iterable[str | os.PathLike[str]]) -> np.ndarray:
        """Embeddings of audio files, each read at its own rate and downmixed
        (:func:`gradw.audio.io.read_audio`): any format libsndfile reads.

        Returns:
            (B, D) float32 embeddings, in the order of ``paths`` (a single path gives (1, D)).
        """
        items = [paths] if _is_path(paths) else list(paths)  # type: ignore[list-item]
        if not all(_is_path(p) for p in items):
            raise TypeError("embed_files takes paths; use embed() for waveforms")
        return self.embed(items)

    def _one_embedding(self, item: Any, sample_rate: int) -> np.ndarray:
        if not _is_path(item) and _as_array(item).ndim != 1:
            raise VerificationError(
                f"a trial compares one recording with another: expected shape (N,) or a path, "
                f"got shape {_as_array(item).shape} (downmix multi-channel audio first)"
            )
        return self.embed(item, sample_rate)

    def score(self, a: Any, b: Any, sample_rate: int = 16000, *, sample_rate_b: int | None = None) -> float:
        """Cosine similarity of the embeddings of two recordings.

        Args:
            a, b: (N,) mono waveforms (or paths, read at their own rates).
            sample_rate: the rate of ``a``, and of ``b`` unless ``sample_rate_b`` is given.
            sample_rate_b: the rate of ``b`` when it differs from ``a``'s.
        """
        from gradw.evaluation.scoring import cosine_scores

        ea = self._one_embedding(a, sample_rate)
        eb = self._one_embedding(b, sample_rate if sample_rate_b is None else sample_rate_b)
        return float(cosine_scores(ea[None], eb[None])[0])

    def _threshold(self, threshold: float | None) -> float | None:
        return self.threshold if threshold is None else float(threshold)

    def verify(
        self,
        a: Any,
        b: Any,
        sample_rate: int = 16000,
        threshold: float | None = None,
        *,
        sample_rate_b: int | None = None,
    ) -> tuple[bool, float]:
        """Decide whether two recordings come from the same speaker.

        Args:
            a, b: (N,) mono waveforms (or paths, read at their own rates).
            sample_rate: the rate of ``a``, and of ``b`` unless ``sample_rate_b`` is given.
            threshold: accept when ``score >= threshold``; default :attr:`threshold`.
            sample_rate_b: the rate of ``b`` when it differs from ``a``'s.

        Returns:
            ``(accepted, score)`` (for files, :meth:`verify_files` returns ``(score, decision)``
            as SpeechBrain's ``verify_files`` does). Without a threshold, a quality-aware or
            normalising calibration decides: accepted when the trial's LLR is at least 0.

        Raises:
            ValueError: no threshold given and none calibrated.
        """
        value = self._threshold(threshold)
        if value is None and not self._by_llr:
            raise ValueError(
                "no decision threshold: pass threshold=..., or call calibrate() or load_threshold() first"
            )
        from gradw.evaluation.scoring import cosine_scores

        rate_b = sample_rate if sample_rate_b is None else sample_rate_b
        ea, eb = self._one_embedding(a, sample_rate), self._one_embedding(b, rate_b)
        s = float(cosine_scores(ea[None], eb[None])[0])
        if value is None:
            llr = self.pair_llr(s, (ea, eb), (self.measures(a, sample_rate), self.measures(b, rate_b)))
            return bool(llr is not None and llr >= 0.0), s
        return bool(s >= value), s

    def verify_files(
        self, a: str | os.PathLike[str], b: str | os.PathLike[str], threshold: float | None = None
    ) -> tuple[float, bool | None]:
        """Verify two audio files, each read at its own rate and downmixed (any format).

        Args:
            a, b: the enrolment and test files.
            threshold: accept when ``score >= threshold``; default :attr:`threshold`.

        Returns:
            ``(score, decision)``: the cosine score, and whether the two are accepted as one
            speaker (None when no threshold is known), in SpeechBrain's order.
        """
        ((score, decision),) = self.verify_pairs([(a, b)], threshold)
        return score, decision

    def verify_pairs(
        self,
        pairs: Iterable[tuple[str | os.PathLike[str], str | os.PathLike[str]]],
        threshold: float | None = None,
    ) -> Iterator[tuple[float, bool | None]]:
        """:meth:`verify_files` over many pairs, each distinct file embedded once.

        Every file's header is read before any embedding, so a missing or unreadable file stops
        the run before any score (:class:`gradw.audio.io.AudioError`, naming it).

        Yields:
            ``(score, decision)`` per pair, in order (decision None when no threshold is known);
            see :meth:`score_pairs` for the LLRs too.
        """
        for result in self.score_pairs(pairs, threshold):
            yield result.score, result.decision

    def score_pairs(
        self,
        pairs: Iterable[tuple[str | os.PathLike[str], str | os.PathLike[str]]],
        threshold: float | None = None,
    ) -> Iterator[PairResult]:
        """Score, calibrate and decide pairs of files, each distinct file read and embedded once
        (and its quality measured once, when the calibration uses quality measures).

        The decision: ``score >= threshold`` (default :attr:`threshold`); without one, the
        trial's LLR >= 0 under a quality-aware or normalising calibration; else None. Every file's
        header is read before any embedding (:class:`gradw.audio.io.AudioError`, naming a bad one).

        Yields:
            :class:`PairResult` per pair, in order.
        """
        from gradw.audio.io import audio_info
        from gradw.evaluation.scoring import cosine_scores

        items = [(Path(a), Path(b)) for a, b in pairs]
        for path in dict.fromkeys(p for pair in items for p in pair):
            audio_info(path)
        value = self._threshold(threshold)
        by_llr = value is None and self._by_llr
        cache: dict[Path, tuple[np.ndarray, np.ndarray]] = {}

        def read(path: Path) -> tuple[np.ndarray, np.ndarray]:
            key = path.resolve()
            if key not in cache:
                cache[key] = (self._embed_path(path), self.measures(path))
            return cache[key]

        for a, b in items:
            (ea, qa), (eb, qb) = read(a), read(b)
            score = float(cosine_scores(ea[None], eb[None])[0])
            llr = self.pair_llr(score, (ea, eb), (qa, qb))
            if value is not None:
                decision: bool | None = score >= value
            else:
                decision = None if not by_llr or llr is None else llr >= 0.0
            yield PairResult(score, llr, decision)

    # -- thresholds --------------------------------------------------------------------------
    def calibrate(self, scores: Any, labels: Any, target: str = "eer", far: float = 0.01) -> float:
        """Set :attr:`threshold` from (N,) evaluation scores and (N,) labels (True/1 = same
        speaker) at ``target``: ``"eer"`` or ``"far"`` (at most ``far`` false acceptances); see
        :func:`gradw.evaluation.metrics.operating_threshold`, whose ValueError it raises. Returns
        the new threshold."""
        threshold = operating_threshold(scores, labels, target, far)
        self.threshold = float(threshold)
        return self.threshold

    def load_threshold(self, path: str | os.PathLike[str], target: str = "eer", far: float = 0.01) -> float:
        """Calibrate from a score file (``enroll test score target|nontarget`` lines, as written
        by the evaluation); see :meth:`calibrate`. Returns the new threshold."""
        from gradw.evaluation.scoring import read_scores

        _enroll, _test, scores, labels = read_scores(path)
        return self.calibrate(scores, labels, target=target, far=far)
