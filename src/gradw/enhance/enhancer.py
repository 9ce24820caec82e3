"""The :class:`Enhancer`: a trained mask U-Net G with E's front-end; enhanced 16 kHz waveforms
(whole, block by block, or file to file) and mel masks.

G predicts a mask M on the **mel power grid** of the speaker network's front-end: it multiplies
the mel power, ``E(t, f) = M(t, f) X(t, f)``. Verification never needs a waveform (see
:mod:`gradw.evaluation.verifier`); listening, peers and downstream tools do, so the mel mask is
mapped back onto a linear STFT (:mod:`gradw.enhance.dsp`) and resynthesised, in chunks for long
recordings (:mod:`gradw.enhance.chunks`).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from gradw.audio.frontends import MelFrontend, build_frontend
from gradw.audio.io import prepare_waveform
from gradw.enhance.chunks import (
    DEFAULT_CHUNK_SECONDS,
    DEFAULT_OVERLAP_SECONDS,
    Chunk,
    Reader,
    own_frames,
    plan_chunks,
)
from gradw.enhance.dsp import (
    frame_centre,
    gain_floor,
    mask_to_stft_gains,
    mel_to_linear_matrix,
    stft_frame_shift,
)
from gradw.errors import GradwError


class EnhanceError(GradwError, ValueError):
    """An enhancement job cannot start (clashing outputs, no inputs, bad options); says why."""


# ---------------------------------------------------------------------------------------------
# the enhancer


class Enhancer:
    """A mask U-Net G with E's front-end: enhance waveforms and compute mel masks.

    Args:
        model: G, (B, F, T) CMN log-mel features -> (B, F, T) mel power mask (eval mode is set).
        frontend: E's front-end (the mel grid the mask lives on): ``LogMel`` or ``KaldiFbank``.
        min_gain_db: power-gain floor of the linear gains in dB (<= 0), or None for none.
        chunk_seconds: chunk length for long inputs; None processes any input whole.
        overlap_seconds: overlap between consecutive chunks.
        device: where G runs (default: the model's device).
        speaker: the description of the E that G was trained against
            (``{"name", "checkpoint", "tap"}``, as in the checkpoint), if known.

    Example::

        enhancer = Enhancer.from_checkpoint("runs/grad-w/last.pt", min_gain_db=-25)
        clean = enhancer.enhance(noisy, sample_rate=44100)  # (N',) float32 at 16 kHz
        mask = enhancer.mask(noisy, sample_rate=44100)      # (80, T) mel power gains
    """

    sample_rate: int = 16000

    def __init__(
        self,
        model: nn.Module,
        frontend: MelFrontend,
        *,
        min_gain_db: float | None = None,
        chunk_seconds: float | None = DEFAULT_CHUNK_SECONDS,
        overlap_seconds: float = DEFAULT_OVERLAP_SECONDS,
        device: str | torch.device | None = None,
        speaker: dict[str, Any] | None = None,
        calibration: dict[str, Any] | None = None,
    ) -> None:
        gain_floor(min_gain_db)  # validates
        if chunk_seconds is not None and not (math.isfinite(chunk_seconds) and chunk_seconds > 0):
            raise ValueError(f"chunk_seconds must be positive, got {chunk_seconds!r}")
        if not (math.isfinite(overlap_seconds) and overlap_seconds >= 0):
            raise ValueError(f"overlap_seconds must be >= 0, got {overlap_seconds!r}")
        if chunk_seconds is not None and chunk_seconds <= overlap_seconds:
            raise ValueError(
                f"chunk_seconds ({chunk_seconds}) must exceed overlap_seconds ({overlap_seconds})"
            )
        if device is None:
            first = next(iter(model.parameters()), None)
            device = first.device if first is not None else torch.device("cpu")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.frontend = frontend.to(self.device).eval()
        self.sample_rate = frontend.sample_rate
        self.min_gain_db = min_gain_db
        self.chunk_seconds = chunk_seconds
        self.overlap_seconds = float(overlap_seconds)
        self.speaker = dict(speaker) if speaker else {}
        # the score-to-LLR map the checkpoint was selected with (gradw.evaluation.calibration)
        self.calibration = dict(calibration) if calibration else None
        self.hop = frontend.hop_length
        self.n_fft = int(frontend.n_fft)  # type: ignore[attr-defined]
        self.win_length = int(getattr(frontend, "win_length", getattr(frontend, "frame_length", self.n_fft)))
        self.shift = stft_frame_shift(frontend)
        self.centre = frame_centre(frontend)
        self.mapping = mel_to_linear_matrix(frontend.fbank).float().to(self.device)  # type: ignore[attr-defined]
        self.window = torch.hann_window(self.win_length, periodic=True, device=self.device)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        *,
        min_gain_db: float | None = None,
        chunk_seconds: float | None = DEFAULT_CHUNK_SECONDS,
        overlap_seconds: float = DEFAULT_OVERLAP_SECONDS,
        device: str | torch.device | None = None,
    ) -> Enhancer:
        """G from a ``gradw train`` checkpoint, with the front-end recorded in it.

        Raises:
            CheckpointError: missing, unreadable or not an enhancer checkpoint.
        """
        from gradw.checkpoint import CheckpointError
        from gradw.models.loading import load_enhancer

        bundle = load_enhancer(path)
        try:
            frontend = build_frontend(bundle.frontend)
        except ValueError as exc:
            raise CheckpointError(f"{path}: {exc}") from None
        n_mels = getattr(bundle.enhancer, "n_mels", None)
        if n_mels is not None and n_mels != frontend.n_mels:
            raise CheckpointError(
                f"{path}: the enhancer expects {n_mels} mel bands but its front-end "
                f"{bundle.frontend!r} has {frontend.n_mels}"
            )
        return cls(
            bundle.enhancer,
            frontend,
            min_gain_db=min_gain_db,
            chunk_seconds=chunk_seconds,
            overlap_seconds=overlap_seconds,
            device=device or "cpu",
            speaker=bundle.speaker,
            calibration=bundle.calibration,
        )

    # -- helpers ---------------------------------------------------------------------------
    def _as_tensor(self, waveform: Any, sample_rate: int) -> Tensor:
        return torch.from_numpy(prepare_waveform(waveform, sample_rate, self.sample_rate)).to(self.device)

    def _chunk_samples(self) -> int | None:
        if self.chunk_seconds is None:
            return None
        return max(int(round(self.chunk_seconds * self.sample_rate)), self.frontend.min_samples)

    def plan(self, num_samples: int) -> list[Chunk]:
        """The chunks a waveform of ``num_samples`` samples is processed in."""
        return plan_chunks(
            num_samples,
            self._chunk_samples(),
            int(round(self.overlap_seconds * self.sample_rate)),
            # chunks start on G's downsampling grid (time_stride frames), not just the frame grid:
            # measured on 10 s of noise, 4 s chunks, 2 s overlap, a width-4 U-Net: 59 dB from the
            # whole-file output when aligned to 8 frames, 28 dB when aligned to 1 frame
            align=self.hop * getattr(self.model, "time_stride", 1),
        )

    def _pad(self, wav: Tensor) -> Tensor:
        """Zero-pad a waveform shorter than one front-end frame."""
        short = self.frontend.min_samples - wav.shape[-1]
        return F.pad(wav, (0, short)) if short > 0 else wav

    def _global_mean(self, read: Reader, chunks: Sequence[Chunk]) -> Tensor:
        """(F, 1) mean log-mel over the whole recording, each frame counted once."""
        total = torch.zeros(self.frontend.n_mels, dtype=torch.float64, device=self.device)
        count = 0
        for chunk in chunks:
            log_mel = self.frontend.log_mel(self.frontend.mel_power(read(chunk.start, chunk.stop)[None]))[0]
            keep = own_frames(chunk, log_mel.shape[-1], self.centre, self.hop).to(self.device)
            total += log_mel[:, keep].sum(dim=-1, dtype=torch.float64)
            count += int(keep.sum())
        return (total / max(count, 1)).to(torch.float32)[:, None]

    def _chunk_masks(self, read: Reader, chunks: Sequence[Chunk]) -> Iterator[tuple[Chunk, Tensor, Tensor]]:
        """Yield (chunk, (N_chunk,) audio, (1, F, T_chunk) mask) over ``chunks``, the plan of a
        padded recording whose samples ``read(start, stop)`` gives."""
        mean = self._global_mean(read, chunks) if len(chunks) > 1 else None
        for chunk in chunks:
            audio = read(chunk.start, chunk.stop)
            mel = self.frontend.mel_power(audio[None])
            # CMN: the front-end's own over a single chunk, the whole recording's mean otherwise
            features = self.frontend.log_features(mel) if mean is None else self.frontend.log_mel(mel) - mean
            yield chunk, audio, self.model(features)

    def apply_mask(self, wav: Tensor, mask: Tensor) -> Tensor:
        """Apply a mel mask to a waveform through the STFT.

        Args:
            wav: (N,) waveform at 16 kHz.
            mask: (1, F, T_mel) mel power mask computed on ``wav``'s frames.

        Returns:
            (N,) enhanced waveform (noisy phase, amplitude gains sqrt(G_lin), floored).
        """
        spec = torch.stft(
            wav[None],
            n_fft=self.n_fft,
            hop_length=self.hop,
            win_length=self.win_length,
            window=self.window.to(wav.dtype),
            center=True,
            pad_mode="constant",
            return_complex=True,
        )  # (1, K, T_stft)
        gains = mask_to_stft_gains(mask, self.mapping, spec.shape[-1], self.shift, self.min_gain_db)
        out = torch.istft(
            spec * gains.sqrt(),
            n_fft=self.n_fft,
            hop_length=self.hop,
            win_length=self.win_length,
            window=self.window.to(wav.dtype),
            center=True,
            length=wav.shape[-1],
        )
        return out[0]

    # -- tensors at 16 kHz -------------------------------------------------------------------
    @torch.no_grad()
    def enhance_blocks(self, wav: Tensor) -> Iterator[Tensor]:
        """Enhance a waveform chunk by chunk, yielding the output as it becomes final.

        Chunk i's overlap-added output is final up to where chunk i+1 starts; the rest (the
        overlap) is carried into the next chunk. Besides the input, memory holds one chunk's
        work, whatever the length of the recording.

        Args:
            wav: (N,) float waveform at 16 kHz on any device.

        Yields:
            consecutive (N_i,) pieces of the enhanced waveform (on G's device; sum N_i = N).
        """
        if wav.dim() != 1 or wav.shape[0] == 0:
            raise ValueError(f"expected a non-empty (N,) waveform, got shape {tuple(wav.shape)}")
        x = self._pad(wav.to(self.device, torch.float32))
        yield from self.enhance_reader(lambda start, stop: x[start:stop], x.shape[0], wav.shape[0])

    @torch.no_grad()
    def enhance_reader(self, read: Reader, num_samples: int, keep: int | None = None) -> Iterator[Tensor]:
        """:meth:`enhance_blocks` for a recording that is read piece by piece.

        Args:
            read: ``read(start, stop)`` -> (stop - start,) float32 samples at 16 kHz on G's device;
                each chunk is read twice (the mean normalisation pass, then the mask).
            num_samples: N, at least one front-end frame long.
            keep: how many output samples to yield (default N; fewer for a zero-padded input).

        Yields:
            consecutive pieces of the enhanced waveform, ``keep`` samples in all.
        """
        keep = num_samples if keep is None else keep
        chunks = self.plan(num_samples)
        carry = torch.zeros(0, device=self.device)
        emitted = 0
        for index, (chunk, audio, mask) in enumerate(self._chunk_masks(read, chunks)):
            piece = chunk.weights().to(self.device) * self.apply_mask(audio, mask)
            piece[: carry.shape[0]] += carry
            final = chunks[index + 1].start - chunk.start if index + 1 < len(chunks) else piece.shape[0]
            carry = piece[final:]
            out = piece[: max(0, min(final, keep - emitted))]
            emitted += out.shape[0]
            if out.shape[0]:
                yield out

    def enhance_tensor(self, wav: Tensor) -> Tensor:
        """(N,) float waveform at 16 kHz on any device -> (N,) enhanced waveform (same device)."""
        return torch.cat(list(self.enhance_blocks(wav))).to(wav.device)

    @torch.no_grad()
    def mask_tensor(self, wav: Tensor) -> Tensor:
        """(N,) float waveform at 16 kHz -> (F, T_mel) mel mask on E's frames.

        Long inputs are processed in chunks; each mel frame comes from the chunk that owns it.
        Inputs shorter than one front-end frame are zero-padded to one frame.
        """
        if wav.dim() != 1 or wav.shape[0] == 0:
            raise ValueError(f"expected a non-empty (N,) waveform, got shape {tuple(wav.shape)}")
        x = self._pad(wav.to(self.device, torch.float32))
        parts = []
        for chunk, _, mask in self._chunk_masks(lambda start, stop: x[start:stop], self.plan(x.shape[-1])):
            keep = own_frames(chunk, mask.shape[-1], self.centre, self.hop).to(mask.device)
            parts.append(mask[0][:, keep])
        return torch.cat(parts, dim=-1)

    # -- the public numpy API -----------------------------------------------------------------
    def enhance(self, waveform: Any, sample_rate: int = 16000) -> np.ndarray:
        """Enhance a waveform.

        Args:
            waveform: (N,), (N, C) or (C, N) numpy array or tensor at ``sample_rate``.
            sample_rate: its rate in Hz; it is resampled to 16 kHz and downmixed first.

        Returns:
            (N16,) float32 enhanced waveform at 16 kHz (N16 = round(N * 16000 / sample_rate)).
        """
        return self.enhance_tensor(self._as_tensor(waveform, sample_rate)).cpu().numpy()

    def mask(self, waveform: Any, sample_rate: int = 16000) -> np.ndarray:
        """The mel power mask G predicts for a waveform.

        Args:
            waveform: (N,), (N, C) or (C, N) at ``sample_rate`` (resampled to 16 kHz, downmixed).
            sample_rate: its rate in Hz.

        Returns:
            (F, T) float32 mask in (0, 1] on E's mel frames (T = the front-end's frame count).
        """
        return self.mask_tensor(self._as_tensor(waveform, sample_rate)).cpu().numpy()

    def enhance_file(self, source: str | Path, destination: str | Path) -> None:
        """Read any audio file, enhance it, write a 16 kHz 16-bit WAV/FLAC atomically.

        Memory does not grow with the length of the recording: the input is decoded, downmixed
        and resampled block by block into a temporary 16 kHz float32 file beside the output,
        each chunk is read from there (twice: the mean normalisation pass, then the mask), and
        the output is written block by block; the temporary file is removed in every case.

        Raises:
            AudioError: the input cannot be read or the output cannot be written (naming it).
        """
        from gradw.audio.io import AudioError, stream_audio, write_audio_blocks

        destination = Path(destination)
        # the spool goes on the output's file system (not a /tmp that may live in memory), in its
        # nearest existing folder so that nothing is created for an input that fails
        folder = next(
            d for d in (destination.absolute().parent, *destination.absolute().parents) if d.is_dir()
        )
        with tempfile.TemporaryFile(dir=folder, prefix=f".{destination.name}.") as spool:
            n = 0
            for block in stream_audio(source, self.sample_rate):
                block.astype("<f4", copy=False).tofile(spool)
                n += block.shape[0]
            if n == 0:
                raise AudioError(source, f"too short to resample to {self.sample_rate} Hz")
            if n < self.frontend.min_samples:  # shorter than one frame: pad it in memory
                spool.seek(0)
                wav = torch.from_numpy(np.fromfile(spool, dtype="<f4", count=n).astype(np.float32))
                blocks = self.enhance_blocks(wav)
            else:

                def read(start: int, stop: int) -> Tensor:
                    spool.seek(4 * start)
                    samples = np.fromfile(spool, dtype="<f4", count=stop - start).astype(np.float32)
                    return torch.from_numpy(samples).to(self.device)

                blocks = self.enhance_reader(read, n)
            write_audio_blocks(destination, (block.cpu() for block in blocks), self.sample_rate)
