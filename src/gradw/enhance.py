"""Speech enhancement with a trained mask U-Net G: waveforms or files in, 16 kHz waveforms out.

G predicts a mask M on the **mel power grid** of the speaker network's front-end (paper notes
§2.4): it multiplies the mel power, ``E(t, f) = M(t, f) X(t, f)``. Verification never needs a
waveform (see :mod:`gradw.api`); listening, peers and downstream tools do, so this module maps
the mel mask back onto a linear STFT and resynthesises.

Pipeline for one waveform (B = 1)::

    wav (N,) 16 kHz --E's front-end--> mel power (F, T_mel) --log, CMN--> features (F, T_mel)
    features --G--> mask M (F, T_mel)                        power gains on the mel grid
    M --time alignment, mel -> linear mapping, floor--> G_lin (K, T_stft), K = n_fft // 2 + 1
    STFT(wav) (K, T_stft) * sqrt(G_lin) --iSTFT, noisy phase--> enhanced wav (N,)

**STFT.** The framing of E's front-end: n_fft 512 (K = 257 bins, 31.25 Hz apart), a 400-sample
window, hop 160, ``center=True`` (frame j centred on sample 160 j, T_stft = 1 + N // 160) with
zero padding at the ends. The window is a periodic Hann window for both analysis and synthesis
(``torch.istft`` divides by the summed squared windows, so a gain of 1 reconstructs the input to
float precision); its shape does not matter for the mapping, only the bin frequencies do.

**Mel -> linear mapping** (:func:`mel_to_linear_matrix`). With W (F, K) the front-end's
triangular filterbank (the weights that produced the mel power), linear bin k gets the
filterbank-weighted average of the mel gains of the bands that cover it::

    G_lin[k] = sum_f W[f, k] M[f] / sum_f W[f, k]        (bins with sum_f W[f, k] > 0)

Bins that no band covers (below ``f_min``, above ``f_max``, Kaldi's Nyquist bin) take the gain
of the band whose centre (the weight centroid of its triangle) is nearest. Every row of the
(K, F) mapping sums to one, so a constant mask maps to the same constant, and a bin between two
bands interpolates their gains. This is the normalised transpose of W; it is not an exact
inverse (none exists: 257 bins are projected onto 80 bands), but projecting ``G_lin * power``
back through W gives ``M * mel`` wherever the mask is smooth across neighbouring bands.

**Power gains.** M multiplies power, so the STFT is scaled by the amplitude gain sqrt(G_lin).
The optional floor (``min_gain_db`` = g <= 0, DeepFilterNet's attenuation limit) applies to the
power gain: ``G_lin = max(G_lin, 10 ** (g / 10))``, i.e. no bin is attenuated by more than |g| dB.
Deep suppression at low SNR is where musical noise and speech distortion come from; -20 dB to
-30 dB is a sensible floor for listening.

**Time alignment** (:func:`stft_frame_shift`). The mask lives on E's frames, the gains on the
STFT frames; the two grids share the hop but not the origin:

* ``LogMel`` (the paper's features) is itself a ``center=True`` STFT with hop 160: mel frame t is
  centred on sample 160 t, the same as STFT frame t. Shift 0.
* ``KaldiFbank`` snips edges: frame t covers samples [160 t, 160 t + 400), centre 160 t + 200
  (T_mel = 1 + (N - 400) // 160), whereas STFT frame j is centred on 160 j. Kaldi frame t therefore
  sits at STFT position j = t + 200 / 160 = t + 1.25.

(Strictly, both centres are half a sample earlier, 160 t + 199.5 and 160 j - 0.5: the offset of
exactly 200 samples is unaffected.) STFT frame j takes the mask linearly interpolated at mel-frame
position ``j - shift``; frames before the first or after the last mel centre hold the edge value.

**Long recordings** (:func:`plan_chunks`) are processed in the fewest overlapping chunks of at
most 30 s (by default) with at least 2 s of overlap, of about equal length, each starting on G's
8-frame downsampling grid, so the U-Net, whose activations grow with T (about 100 MB per minute
of audio at the paper's width), never sees more than one chunk. The output is yielded chunk by
chunk as it becomes final (:meth:`Enhancer.enhance_blocks`) and files are written block by block;
``gradw enhance`` also decodes its input block by block into a temporary 16 kHz file and reads
each chunk from there (:meth:`Enhancer.enhance_file`), so its memory does not grow with the length
of the recording. Two things would make a chunk's mask differ from the whole-file mask:

* CMN: the features of a chunk would be normalised by the chunk's own mean. A first, cheap pass
  (front-end only) computes the whole recording's mean log-mel, counting each frame once, and
  every chunk is normalised by it, so chunked features equal whole-file features.
* The U-Net itself is not local: its decoder uses instance normalisation (statistics over the
  whole input map) and its receptive field spans many frames. These differences remain.

Each chunk is enhanced on its own and the outputs are cross-faded with complementary raised-
cosine weights over the middle half of each overlap (1 s by default), away from both chunk edges.
Chunked and whole-file outputs are therefore close but not bit-identical (the tests bound the
difference; see ``tests/test_enhance.py``).

Files (:func:`enhance_files`, ``gradw enhance``): any format libsndfile reads, any rate and
channel count (downmixed and resampled like :func:`gradw.audio.io.read_audio`); outputs are
16-bit 16 kHz WAV files mirroring the input tree, written atomically. Unreadable inputs are
reported by name at the end and do not stop the others.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from gradw.audio.frontends import KaldiFbank, LogMel, MelFrontend, build_frontend
from gradw.errors import GradwError

__all__ = [
    "AUDIO_SUFFIXES",
    "DEFAULT_CHUNK_SECONDS",
    "DEFAULT_OVERLAP_SECONDS",
    "Chunk",
    "EnhanceError",
    "EnhanceReport",
    "Enhancer",
    "add_enhance_parser",
    "align_mask_frames",
    "cmd_enhance",
    "collect_inputs",
    "enhance_files",
    "gain_floor",
    "mask_to_stft_gains",
    "mel_to_linear_matrix",
    "plan_chunks",
    "prepare_waveform",
    "stft_frame_shift",
]

DEFAULT_CHUNK_SECONDS = 30.0
DEFAULT_OVERLAP_SECONDS = 2.0
#: Suffixes picked up when a directory is scanned (case-insensitive); files named explicitly are
#: always attempted, whatever their suffix.
AUDIO_SUFFIXES: frozenset[str] = frozenset(
    {
        ".wav",
        ".wave",
        ".flac",
        ".ogg",
        ".oga",
        ".opus",
        ".mp3",
        ".aif",
        ".aiff",
        ".aifc",
        ".au",
        ".snd",
        ".caf",
        ".w64",
        ".rf64",
        ".sph",
        ".nist",
    }
)

#: ``read(start, stop)`` -> (stop - start,) float32 samples of a recording at 16 kHz
Reader = Callable[[int, int], Tensor]


class EnhanceError(GradwError, ValueError):
    """An enhancement job cannot start (clashing outputs, no inputs, bad options); says why."""


# ---------------------------------------------------------------------------------------------
# the mask -> STFT gain mapping


def mel_to_linear_matrix(fbank: Tensor) -> Tensor:
    """The (K, F) matrix that maps mel gains onto linear STFT bins (the normalised transpose).

    Row k holds the weights ``W[f, k] / sum_f W[f, k]`` of the bands covering bin k; a bin that
    no band covers gets a one-hot row selecting the band whose centre is nearest (centres are the
    weight centroids of the triangles, in bins). Every row sums to one.

    Args:
        fbank: (F, K) non-negative filterbank weights (mel power = fbank @ power).

    Returns:
        (K, F) float64 mapping: linear gains = mapping @ mel gains.

    Raises:
        ValueError: if ``fbank`` is not 2-D, has negative weights or covers no bin at all.
    """
    if fbank.dim() != 2:
        raise ValueError(f"expected a (F, K) filterbank, got shape {tuple(fbank.shape)}")
    weights = fbank.detach().to(torch.float64).cpu()
    if (weights < 0).any():
        raise ValueError("filterbank weights must be non-negative")
    num_bands, num_bins = weights.shape
    band_mass = weights.sum(dim=1)  # (F,)
    if not (band_mass > 0).any():
        raise ValueError("the filterbank covers no frequency bin")
    bins = torch.arange(num_bins, dtype=torch.float64)
    centres = (weights * bins).sum(dim=1) / band_mass.clamp(min=1e-300)
    centres = torch.where(band_mass > 0, centres, torch.full_like(centres, math.inf))
    coverage = weights.sum(dim=0)  # (K,)
    mapping = weights.t() / coverage.clamp(min=1e-300)[:, None]  # (K, F)
    uncovered = coverage <= 0
    if uncovered.any():
        nearest = (bins[uncovered, None] - centres[None, :]).abs().argmin(dim=1)
        mapping[uncovered] = F.one_hot(nearest, num_bands).to(torch.float64)
    return mapping


def stft_frame_shift(frontend: MelFrontend) -> float:
    """Position of mel frame 0 on the STFT frame grid (hop units): 0 for ``LogMel``, 1.25 for
    ``KaldiFbank`` (frame t centred on sample 160 t + 200, STFT frame j on 160 j).

    Raises:
        TypeError: for a front-end whose framing is not known here.
    """
    return frame_centre(frontend) / frontend.hop_length


def frame_centre(frontend: MelFrontend) -> float:
    """Centre of mel frame 0 in samples (frame t is centred on ``frame_centre + hop * t``)."""
    if isinstance(frontend, LogMel):
        return 0.0
    if isinstance(frontend, KaldiFbank):
        return frontend.frame_length / 2.0
    raise TypeError(f"unknown framing for front-end {type(frontend).__name__}")


def align_mask_frames(mask: Tensor, num_frames: int, shift: float) -> Tensor:
    """Resample a mask from mel frames onto STFT frames by linear interpolation.

    STFT frame j takes the mask at mel-frame position ``j - shift`` (clamped to the first and
    last mel frame).

    Args:
        mask: (..., T_mel) values on the mel frames.
        num_frames: T_stft.
        shift: position of mel frame 0 on the STFT grid (:func:`stft_frame_shift`).

    Returns:
        (..., T_stft) tensor.
    """
    num_mel = mask.shape[-1]
    if num_mel < 1:
        raise ValueError("the mask has no frames")
    pos = torch.arange(num_frames, dtype=torch.float64, device=mask.device) - shift
    pos = pos.clamp(0.0, float(num_mel - 1))
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=num_mel - 1)
    frac = (pos - lo.to(torch.float64)).to(mask.dtype)
    return mask[..., lo] * (1.0 - frac) + mask[..., hi] * frac


def gain_floor(min_gain_db: float | None) -> float:
    """The power-gain floor ``10 ** (min_gain_db / 10)`` (0 for None).

    Raises:
        ValueError: unless ``min_gain_db`` is None or a finite value <= 0.
    """
    if min_gain_db is None:
        return 0.0
    if isinstance(min_gain_db, bool) or not math.isfinite(min_gain_db) or min_gain_db > 0:
        raise ValueError(f"min_gain_db must be a finite value <= 0 dB, got {min_gain_db!r}")
    return 10.0 ** (float(min_gain_db) / 10.0)


def mask_to_stft_gains(
    mask: Tensor,
    mapping: Tensor,
    num_frames: int,
    shift: float,
    min_gain_db: float | None = None,
) -> Tensor:
    """Mel power mask -> linear STFT power gains.

    Args:
        mask: (B, F, T_mel) mel power gains.
        mapping: (K, F) from :func:`mel_to_linear_matrix`.
        num_frames: T_stft of the STFT the gains will multiply.
        shift: :func:`stft_frame_shift` of the front-end the mask was computed on.
        min_gain_db: optional power-gain floor in dB (<= 0).

    Returns:
        (B, K, T_stft) power gains, at least ``10 ** (min_gain_db / 10)``.
    """
    if mask.dim() != 3 or mask.shape[1] != mapping.shape[1]:
        raise ValueError(f"expected a mask (B, {mapping.shape[1]}, T), got shape {tuple(mask.shape)}")
    aligned = align_mask_frames(mask, num_frames, shift)  # (B, F, T_stft)
    gains = torch.matmul(mapping.to(device=mask.device, dtype=mask.dtype), aligned)  # (B, K, T_stft)
    floor = gain_floor(min_gain_db)
    return gains.clamp(min=floor) if floor > 0 else gains


# ---------------------------------------------------------------------------------------------
# chunking


@dataclass(frozen=True)
class Chunk:
    """One chunk of a long recording, in samples.

    Attributes:
        start, stop: the samples fed to the network, ``[start, stop)``.
        own_start, own_stop: the samples this chunk answers for; the own ranges of a plan tile
            ``[0, N)``. A mel frame belongs to the chunk whose own range holds its centre.
        fade_in, fade_out: lengths of the raised-cosine cross-fades centred on ``own_start`` and
            ``own_stop`` (0 at the ends of the recording).
    """

    start: int
    stop: int
    own_start: int
    own_stop: int
    fade_in: int = 0
    fade_out: int = 0

    def weights(self) -> Tensor:
        """(stop - start,) float32 output weights: 1 on the own range, complementary raised-
        cosine ramps across each shared boundary, 0 beyond them."""
        n = torch.arange(self.start, self.stop, dtype=torch.float64)
        w = torch.ones_like(n)
        if self.fade_in:
            w = w * _ramp(n, self.own_start, self.fade_in)
        if self.fade_out:
            w = w * (1.0 - _ramp(n, self.own_stop, self.fade_out))
        return w.float()


def _ramp(n: Tensor, centre: int, width: int) -> Tensor:
    """Raised-cosine rise from 0 to 1 over ``[centre - width / 2, centre + width / 2)``."""
    r = ((n - (centre - width / 2.0) + 0.5) / width).clamp(0.0, 1.0)
    return 0.5 - 0.5 * torch.cos(math.pi * r)


def plan_chunks(
    num_samples: int,
    chunk_samples: int | None,
    overlap_samples: int,
    align: int = 1,
    crossfade: int | None = None,
) -> list[Chunk]:
    """Split ``[0, num_samples)`` into the fewest overlapping chunks, all of about one length.

    The number of chunks is the least that keeps every chunk within ``chunk_samples`` and every
    overlap at least ``overlap_samples``; the recording is then shared evenly between them, so no
    work is spent on a last chunk that is mostly overlap (60 s in chunks of 30 s with 4 s of
    overlap: three chunks of about 23 s, not three of 30 s). Chunk starts are multiples of
    ``align`` (the hop, so every chunk's frames lie on the recording's frame grid); the last
    chunk ends at ``num_samples`` (it may be up to ``align - 1`` samples longer than the others).
    The boundary between two own ranges sits in the middle of their overlap (rounded down to
    ``align``), and the cross-fade there spans ``crossfade`` samples (default half the overlap),
    shortened if needed to stay inside both chunks.

    Args:
        num_samples: N.
        chunk_samples: longest chunk; None (or N <= chunk length) gives one chunk.
        overlap_samples: minimum overlap between consecutive chunks.
        align: granularity of chunk starts and boundaries.
        crossfade: cross-fade length at each boundary.

    Returns:
        The chunks, in order.

    Raises:
        ValueError: for a non-positive length or an overlap that leaves no progress.
    """
    if num_samples <= 0:
        raise ValueError(f"need a positive number of samples, got {num_samples}")
    if chunk_samples is None or num_samples <= chunk_samples:
        return [Chunk(0, num_samples, 0, num_samples)]
    if align < 1 or overlap_samples < 0:
        raise ValueError(f"need align >= 1 and overlap >= 0, got {align}, {overlap_samples}")
    # two steps of `align` are kept in hand for rounding the length up and the starts down
    longest = chunk_samples // align * align - 2 * align
    overlap = -(-overlap_samples // align) * align
    if longest - overlap <= 0:
        raise ValueError(
            f"chunks of {chunk_samples} samples with {overlap_samples} samples of overlap make no progress"
        )
    count = -(-(num_samples - overlap) // (longest - overlap))  # fewest chunks of <= longest samples
    # k chunks of c samples with overlaps >= O cover N when k c - (k - 1) O >= N
    chunk = -(-(num_samples + (count - 1) * overlap) // count)
    chunk = -(-chunk // align) * align + align
    last = (num_samples - chunk) // align * align
    starts = [(i * last) // (count - 1) // align * align for i in range(count - 1)] + [last]
    stops = [s + chunk for s in starts[:-1]] + [num_samples]
    fade = overlap // 2 if crossfade is None else int(crossfade)
    bounds = []
    fades = []
    for i in range(len(starts) - 1):
        lo, hi = starts[i + 1], stops[i]
        b = (lo + hi) // 2 // align * align
        if not lo < b < hi:
            b = (lo + hi) // 2
        bounds.append(b)
        fades.append(max(0, min(fade, 2 * (b - lo), 2 * (hi - b))))
    own_starts = [0, *bounds]
    own_stops = [*bounds, num_samples]
    fade_ins = [0, *fades]
    fade_outs = [*fades, 0]
    return [
        Chunk(s, e, os_, oe, fi, fo)
        for s, e, os_, oe, fi, fo in zip(
            starts, stops, own_starts, own_stops, fade_ins, fade_outs, strict=True
        )
    ]


def own_frames(chunk: Chunk, num_frames: int, centre: float, hop: int) -> Tensor:
    """(num_frames,) bool: which of a chunk's mel frames it owns.

    A frame is owned when its centre lies in ``[own_start, own_stop)``; the first chunk also owns
    frames centred before its start and the last chunk frames centred at or after its end (a
    ``center=True`` front-end has a frame centred on sample N), so the chunks of a plan own every
    frame of the recording exactly once.
    """
    centres = chunk.start + centre + hop * torch.arange(num_frames, dtype=torch.float64)
    keep = torch.ones(num_frames, dtype=torch.bool)
    if chunk.own_start > chunk.start:
        keep &= centres >= chunk.own_start
    if chunk.own_stop < chunk.stop:
        keep &= centres < chunk.own_stop
    return keep


# ---------------------------------------------------------------------------------------------
# waveforms


def prepare_waveform(waveform: Any, sample_rate: int, target_rate: int = 16000) -> np.ndarray:
    """Any waveform -> (N,) float32 mono at ``target_rate``.

    Accepts a numpy array or torch tensor, (N,) mono or 2-D multi-channel; for 2-D input the
    shorter axis is the channel axis, so both soundfile's (N, C) and torchaudio's (C, N) layouts
    work. Floating-point samples are taken as they are (nominally in [-1, 1]); int16 and int32
    PCM are scaled to [-1, 1) as soundfile does; other dtypes are refused. Channels are averaged
    and the rate is converted with soxr (as :func:`gradw.audio.io.read_audio` does).

    Raises:
        ValueError: empty, more than 2-D, non-finite samples, another dtype, or a bad rate.
    """
    from gradw.audio.io import resample

    if hasattr(waveform, "detach"):
        waveform = waveform.detach().cpu().numpy()
    raw = np.asarray(waveform)
    if raw.dtype in (np.int16, np.int32):  # integer PCM: scale to [-1, 1) like soundfile
        wav = (raw / float(2 ** (8 * raw.dtype.itemsize - 1))).astype(np.float32)
    elif not np.issubdtype(raw.dtype, np.floating):
        raise ValueError(f"expected float, int16 or int32 samples, got dtype {raw.dtype}")
    else:
        wav = raw.astype(np.float32, copy=False)
    if wav.ndim == 2:
        channel_axis = 0 if wav.shape[0] < wav.shape[1] else 1
        wav = wav.mean(axis=channel_axis, dtype=np.float32)
    if wav.ndim != 1:
        raise ValueError(f"expected a waveform of shape (N,), (N, C) or (C, N), got shape {wav.shape}")
    if wav.shape[0] == 0:
        raise ValueError("the waveform is empty")
    if not np.isfinite(wav).all():
        raise ValueError("the waveform holds NaN or infinite samples")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    wav = resample(wav, int(sample_rate), target_rate)
    if wav.shape[0] == 0:
        raise ValueError(f"the waveform is too short to resample from {sample_rate} Hz to {target_rate} Hz")
    return np.ascontiguousarray(wav, dtype=np.float32)


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


# ---------------------------------------------------------------------------------------------
# files


@dataclass
class EnhanceReport:
    """What :func:`enhance_files` did.

    Attributes:
        written: output files, in input order.
        failed: (input, reason) for every input that could not be enhanced.
    """

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def _scan(directory: Path) -> list[Path]:
    """Audio files under ``directory`` (recursive, sorted; hidden files and folders skipped)."""
    found = []
    for path in directory.rglob("*"):
        rel = path.relative_to(directory)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.suffix.lower() in AUDIO_SUFFIXES and path.is_file():
            found.append(path)
    return sorted(found)


def collect_inputs(
    inputs: Sequence[str | Path], out_dir: str | Path
) -> tuple[list[tuple[Path, Path]], list[tuple[Path, str]]]:
    """Map inputs onto output files.

    A file ``x/a.flac`` becomes ``OUT/a.wav``; a directory ``D`` is scanned recursively for audio
    files (:data:`AUDIO_SUFFIXES`; hidden entries skipped, and ``out_dir`` when it lies inside
    ``D``) and ``D/sub/b.mp3`` becomes ``OUT/sub/b.wav``.

    Returns:
        ``(jobs, missing)``: (input, output) pairs, and (path, reason) for inputs that do not
        exist.

    Raises:
        EnhanceError: two inputs map onto the same output, or an output would overwrite an input.
    """
    out = Path(out_dir)
    out_resolved = out.resolve()
    jobs: list[tuple[Path, Path]] = []
    missing: list[tuple[Path, str]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            # an output folder strictly inside an input folder may hold earlier outputs: skip it
            nested = out_resolved != path.resolve() and out_resolved.is_relative_to(path.resolve())
            for f in _scan(path):
                if not (nested and f.resolve().is_relative_to(out_resolved)):
                    jobs.append((f, out / f.relative_to(path).with_suffix(".wav")))
        elif path.exists():
            jobs.append((path, out / Path(path.name).with_suffix(".wav")))
        else:
            missing.append((path, "no such file or directory"))
    seen: dict[Path, Path] = {}
    sources = {src.resolve() for src, _ in jobs}
    for src, dst in jobs:
        key = dst.resolve()
        if key in seen:
            raise EnhanceError(
                f"{seen[key]} and {src} would both be written to {dst}; enhance them separately"
            )
        if key in sources:
            raise EnhanceError(
                f"the output {dst} would overwrite an input file; choose another output folder"
            )
        seen[key] = src
    return jobs, missing


def enhance_files(
    enhancer: Enhancer, inputs: Sequence[str | Path], out_dir: str | Path, quiet: bool = False
) -> EnhanceReport:
    """Enhance files and directories into ``out_dir`` (see :func:`collect_inputs`).

    Each output is written atomically; an input that cannot be read (or an output that cannot be
    written) is recorded in the report and the others go on.

    Raises:
        EnhanceError: nothing to enhance, or clashing outputs (before anything is written).
    """
    from tqdm import tqdm

    from gradw.audio.io import AudioError

    jobs, missing = collect_inputs(inputs, out_dir)
    if not jobs and not missing:
        raise EnhanceError("no audio files found in the inputs")
    report = EnhanceReport(failed=list(missing))
    show = not quiet and sys.stderr.isatty()
    for src, dst in tqdm(jobs, desc="enhance", unit="file", disable=not show, dynamic_ncols=True):
        try:
            enhancer.enhance_file(src, dst)
        except (AudioError, OSError) as exc:
            report.failed.append((src, getattr(exc, "reason", None) or str(exc)))
        else:
            report.written.append(dst)
    return report


# ---------------------------------------------------------------------------------------------
# command line


def cmd_enhance(args: argparse.Namespace) -> int:
    """``gradw enhance``: 0 when every input was enhanced, 1 when some failed, 2 on a usage error."""
    if getattr(args, "threads", 0):
        torch.set_num_threads(args.threads)
    try:
        # a bad checkpoint (CheckpointError) or bad chunk options (ValueError): one line, exit 2
        enhancer = Enhancer.from_checkpoint(
            args.checkpoint,
            min_gain_db=args.min_gain_db,
            chunk_seconds=None if args.chunk_seconds <= 0 else args.chunk_seconds,
            overlap_seconds=args.overlap_seconds,
            device=args.device,
        )
        report = enhance_files(enhancer, args.inputs, args.output, quiet=args.quiet)
    except ValueError as exc:  # EnhanceError, CheckpointError and option errors
        print(f"gradw: error: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(f"enhanced {len(report.written)} file(s) into {args.output}")
    if report.failed:
        print(f"gradw: error: {len(report.failed)} input(s) could not be enhanced:", file=sys.stderr)
        for path, reason in report.failed:
            print(f"  {path}: {reason}", file=sys.stderr)
        return 1
    return 0


def _min_gain(text: str) -> float:
    value = float(text)
    try:
        gain_floor(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def add_enhance_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``gradw enhance`` on an ``add_subparsers()`` object; sets ``func=cmd_enhance``."""
    parser = subparsers.add_parser(
        "enhance",
        help="enhance audio files with a trained enhancer (16 kHz WAV out)",
        description=(
            "Enhance audio files or directories (recursive) with a trained mask U-Net. Any format, "
            "rate and channel count is read; 16 kHz 16-bit WAV files are written to OUTDIR, "
            "mirroring each input directory's tree. Inputs that cannot be read are listed at the "
            "end and the exit status is 1."
        ),
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files or directories")
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output directory")
    parser.add_argument("--checkpoint", required=True, help="enhancer checkpoint (gradw train)")
    parser.add_argument(
        "--min-gain-db",
        type=_min_gain,
        default=None,
        metavar="DB",
        help="attenuation limit: floor of the power gain in dB (<= 0, e.g. -25); default none",
    )
    parser.add_argument(
        "--chunk-seconds",
        type=float,
        default=DEFAULT_CHUNK_SECONDS,
        metavar="S",
        help=f"process long recordings in chunks of S seconds (default {DEFAULT_CHUNK_SECONDS:g}; 0: whole)",
    )
    parser.add_argument(
        "--overlap-seconds",
        type=float,
        default=DEFAULT_OVERLAP_SECONDS,
        metavar="S",
        help=f"overlap between chunks (default {DEFAULT_OVERLAP_SECONDS:g})",
    )
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: default)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    parser.set_defaults(func=cmd_enhance)
    return parser
