"""Audio file input/output: read, validate, downmix, resample, and write atomically.

Waveforms are numpy ``float32`` arrays. Mono audio is ``(N,)``; multi-channel arrays handed to
:func:`write_audio` or :func:`resample` are ``(N, C)`` (frames by channels, soundfile's layout).
Every error about a file is an :class:`AudioError` whose message names the file.

Nothing is clipped on reading. Integer PCM is scaled to [-1, 1) by libsndfile and taken as it is.
A file that stores floating-point samples (32/64-bit float WAV, or a lossy codec that decodes to
floats) may hold any level: when its (downmixed) samples peak above 1, the waveform is scaled down
so that its peak is 1, with a warning naming the file and the peak. The shape of the signal is
kept (one factor for the whole file), which is all that matters downstream: the speaker
networks' features are mean-normalised (a level is a constant offset of the log-mel), and noise
is mixed at an SNR (rescaled to the speech whatever its level). Writing 16-bit PCM clips to
[-1, 1], with a warning saying how many samples were clipped.

A file that holds fewer samples than its header promises (a WAV, RF64, W64 or AIFF file cut
short in a copy, a FLAC whose decoding breaks off) is an error, naming the file and both counts:
it is not processed as if it were whole.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from gradw.audio.headers import promised_frames
from gradw.errors import GradwError
from gradw.fileio import atomic_path

__all__ = [
    "prepare_waveform",
    "AudioError",
    "WRITE_FORMATS",
    "audio_info",
    "audio_length",
    "read_audio",
    "read_windows",
    "rechunk",
    "resample",
    "stream_audio",
    "write_audio",
    "write_audio_blocks",
]

#: soxr quality used for every resampling.
RESAMPLE_QUALITY = "HQ"
#: file suffix -> (libsndfile format, subtype) used by :func:`write_audio`.
WRITE_FORMATS: dict[str, tuple[str, str]] = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16")}
_MAX_WRITE_CHANNELS = 32
#: libsndfile subtypes that decode to floats with no bound (any other decodes into [-1, 1))
_FLOAT_SUBTYPES = frozenset(
    {"FLOAT", "DOUBLE", "VORBIS", "OPUS", "MPEG_LAYER_I", "MPEG_LAYER_II", "MPEG_LAYER_III"}
)
#: lossy codecs, whose frame count in the header may be an estimate
_LOSSY_SUBTYPES = frozenset({"VORBIS", "OPUS", "MPEG_LAYER_I", "MPEG_LAYER_II", "MPEG_LAYER_III"})


class AudioError(GradwError, ValueError):
    """An audio file is missing, unreadable, empty or holds invalid samples.

    Attributes:
        path: the offending file.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def _check_rate(rate: Any, name: str) -> int:
    if isinstance(rate, bool) or not isinstance(rate, int | np.integer) or rate <= 0:
        raise ValueError(f"{name} must be a positive integer, got {rate!r}")
    return int(rate)


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise AudioError(path, "no such file")
    if not path.is_file():
        raise AudioError(path, "not a regular file")


def _check_complete(path: Path, frames: int) -> None:
    """Refuse a file whose header promises more frames than it holds (libsndfile quietly reads
    what is there: ``frames``): WAV, RF64, W64 and AIFF (:func:`gradw.audio.headers.promised_frames`)."""
    promised = promised_frames(path)
    if promised is not None and promised > frames:
        raise AudioError(path, f"truncated: its header promises {promised} samples, the file holds {frames}")


def audio_info(path: str | os.PathLike[str]) -> tuple[int, int, int]:
    """Read only the header of an audio file.

    Returns:
        ``(sample_rate, num_frames, channels)``; ``num_frames`` counts samples per channel.

    Raises:
        AudioError: the file is missing, libsndfile cannot parse it, or it is a WAV, RF64, W64
            or AIFF file that holds fewer samples than its header promises (truncated).
    """
    p = Path(path)
    _check_exists(p)
    try:
        info = sf.info(os.fspath(p))
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise AudioError(p, f"cannot read audio header ({err})") from err
    _check_complete(p, int(info.frames))
    return int(info.samplerate), int(info.frames), int(info.channels)


def read_audio(path: str | os.PathLike[str], sample_rate: int = 16000) -> np.ndarray:
    """Read an audio file as a mono float32 waveform at ``sample_rate``.

    Handling:

    * any format libsndfile reads (WAV, FLAC, OGG/Vorbis, OGG/Opus, ...). Integer PCM is scaled
      to [-1, 1) by libsndfile; floating-point samples are taken as stored unless the (downmixed)
      waveform peaks above 1: then it is divided by its peak (never clipped), with a warning
      naming the file and the peak (see the module docstring);
    * several channels are downmixed by averaging them;
    * a different file rate is resampled with soxr (quality ``"HQ"``); the output length is
      ``round(N * sample_rate / file_rate)`` and may overshoot [-1, 1] slightly near full scale.

    Args:
        path: the audio file.
        sample_rate: the rate of the returned waveform in Hz.

    Returns:
        (N,) float32 waveform.

    Raises:
        AudioError: (naming the file) when the file is missing, is not a regular file, cannot be
            decoded (corrupt, empty or unknown format), holds no samples, holds NaN/Inf, or holds
            fewer samples than its header promises (truncated).
        ValueError: when ``sample_rate`` is not a positive integer.
    """
    target = _check_rate(sample_rate, "sample_rate")
    blocks = list(stream_audio(path, target, block_seconds=None))
    wav = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
    if wav.shape[0] == 0:
        raise AudioError(path, f"too short to resample to {target} Hz")
    return wav


def stream_audio(
    path: str | os.PathLike[str], sample_rate: int = 16000, block_seconds: float | None = 10.0
) -> Iterator[np.ndarray]:
    """Read an audio file block by block: what :func:`read_audio` returns, in consecutive pieces.

    The same handling (downmix by averaging, a floating-point file peaking above 1 divided by its
    peak, soxr ``"HQ"`` resampling, streamed so that the samples equal the one-shot
    resampling), with memory bounded by one block, whatever the length of the file. A file of
    floating-point samples is decoded twice when streamed: once for its peak, once for the blocks.

    Args:
        path: the audio file.
        sample_rate: the rate of the yielded blocks in Hz.
        block_seconds: about how much of the file each read takes (None: all of it at once).

    Yields:
        (N_i,) float32 mono blocks at ``sample_rate`` (some may be empty while a resampler fills).

    Raises:
        AudioError: as :func:`read_audio` (raised when the problem is reached: a FLAC file whose
            decoding breaks off is reported after the blocks before the break were yielded; a
            NaN in a floating-point file is found by the first pass, before any block).
        ValueError: when ``sample_rate`` is not a positive integer.
    """
    target = _check_rate(sample_rate, "sample_rate")
    p = Path(path)
    _check_exists(p)
    try:
        handle = sf.SoundFile(os.fspath(p))
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise AudioError(p, f"cannot decode audio ({err})") from err
    with handle:
        _check_complete(p, int(handle.frames))
        rate = int(handle.samplerate)
        size = -1 if block_seconds is None else max(1, int(block_seconds * rate))  # -1: all that is left
        source: Iterable[np.ndarray] = _mono_blocks(p, handle, size)
        peak = 0.0  # integer PCM cannot exceed 1: no need to know its peak
        if block_seconds is None:  # one block: its peak is known before it is yielded
            source = list(source)
            peak = max((float(np.abs(b).max()) for b in source), default=0.0)
        elif handle.subtype in _FLOAT_SUBTYPES:
            peak = max((float(np.abs(b).max()) for b in _mono_blocks(p, handle, size)), default=0.0)
            handle.seek(0)
        if peak > 1.0:
            warnings.warn(
                f"{p}: floating-point samples peak at {peak:.4g}, beyond full scale (1); "
                f"read divided by {peak:.4g} so that they peak at 1 (not clipped)",
                stacklevel=2,
            )
        stream = (
            None
            if rate == target
            else soxr.ResampleStream(rate, target, 1, dtype="float32", quality=RESAMPLE_QUALITY)
        )
        pending: np.ndarray | None = None  # one block of look-ahead, to tell the resampler the last
        for block in _then_none(source):
            if pending is not None:
                if peak > 1.0:
                    pending = pending / np.float32(peak)  # x / peak <= 1 exactly in float32
                out = pending if stream is None else stream.resample_chunk(pending, last=block is None)
                yield np.ascontiguousarray(out, dtype=np.float32)
            pending = block


def _then_none(blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray | None]:
    yield from blocks
    yield None


def _mono_blocks(path: Path, handle: sf.SoundFile, size: int) -> Iterator[np.ndarray]:
    """Decode an open file from its current position: validated (N_i,) float32 mono blocks at the
    file's rate, downmixed by averaging; ``size`` frames per read (-1: all that is left).

    Raises:
        AudioError: undecodable, no samples, non-finite samples, or fewer samples than the header
            promises (naming both counts).
    """
    promised = int(handle.frames)
    total = 0
    while True:
        try:
            data = handle.read(size, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, OSError) as err:
            where = (
                f" after {total} of the {promised} samples its header promises" if total < promised else ""
            )
            raise AudioError(path, f"cannot decode audio{where} ({err})") from err
        if data.shape[0] == 0:
            break
        if data.shape[1] == 0:
            raise AudioError(path, "file holds no audio samples (zero length)")
        if not np.isfinite(data).all():
            raise AudioError(path, "file holds non-finite samples (NaN or Inf)")
        total += data.shape[0]
        yield data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    if total == 0:
        raise AudioError(path, "file holds no audio samples (zero length)")
    if total < promised and handle.subtype not in _LOSSY_SUBTYPES:  # lossy: the count is an estimate
        raise AudioError(path, f"truncated: its header promises {promised} samples, {total} could be read")


def audio_length(path: str | os.PathLike[str], sample_rate: int = 16000) -> int:
    """The number of samples :func:`read_audio` returns for ``path``, without holding them: the
    header's count for a file at ``sample_rate`` in a lossless encoding, else the length of a
    streaming read (:func:`stream_audio`, memory bounded by a block).

    Raises:
        AudioError: as :func:`read_audio` (for a file read in full here).
        ValueError: when ``sample_rate`` is not a positive integer.
    """
    target = _check_rate(sample_rate, "sample_rate")
    p = Path(path)
    _check_exists(p)
    try:
        info = sf.info(os.fspath(p))
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise AudioError(p, f"cannot read audio header ({err})") from err
    _check_complete(p, int(info.frames))
    if int(info.samplerate) == target and info.subtype not in _LOSSY_SUBTYPES and info.frames > 0:
        return int(info.frames)
    with warnings.catch_warnings():  # a float file's level is reported when it is read
        warnings.simplefilter("ignore")
        total = sum(block.shape[0] for block in stream_audio(p, target))
    if total == 0:
        raise AudioError(p, f"too short to resample to {target} Hz")
    return total


def rechunk(blocks: Iterable[np.ndarray], sizes: Sequence[int]) -> Iterator[np.ndarray]:
    """Consecutive (N_i,) blocks of a waveform -> its consecutive pieces of ``sizes[j]`` samples
    (float32), holding one piece and one block at a time.

    Raises:
        ValueError: the blocks hold fewer or more samples than ``sum(sizes)`` (found once the
            pieces before the shortfall were yielded, or after the last one).
    """
    source = iter(blocks)
    pending = np.zeros(0, dtype=np.float32)
    done = 0
    expected = sum(sizes)
    for size in sizes:
        if pending.shape[0] == size:  # a block that is exactly the piece: no copy
            piece, pending = pending, pending[:0]
        else:
            piece = np.empty(size, dtype=np.float32)
            filled = 0
            while filled < size:
                if pending.shape[0] == 0:
                    block = next(source, None)
                    if block is None:
                        raise ValueError(f"{done + filled} samples where {expected} were expected")
                    pending = np.asarray(block, dtype=np.float32)
                    continue
                take = min(size - filled, pending.shape[0])
                piece[filled : filled + take] = pending[:take]
                pending = pending[take:]
                filled += take
        done += size
        yield np.asarray(piece, dtype=np.float32)
    extra = pending.shape[0] + sum(np.shape(block)[0] for block in source)
    if extra:
        raise ValueError(f"{done + extra} samples where {expected} were expected")


def read_windows(
    path: str | os.PathLike[str], sizes: Sequence[int], sample_rate: int = 16000, block_seconds: float = 10.0
) -> Iterator[np.ndarray]:
    """Read a file as consecutive windows of ``sizes[j]`` samples: what :func:`read_audio`
    returns, cut into those pieces (the same downmix, level and resampling, read by
    :func:`stream_audio`), holding one window and one block of the file at a time.

    Args:
        path: the audio file.
        sizes: the windows' lengths at ``sample_rate``; they sum to the file's length
            (:func:`audio_length`).
        sample_rate: the rate of the windows in Hz.
        block_seconds: how much of the file each read takes (at most a window's length).

    Raises:
        AudioError: as :func:`read_audio`, or the file does not hold ``sum(sizes)`` samples (it
            changed since it was measured).
    """
    p = Path(path)
    longest = max(sizes, default=0)
    if longest:
        block_seconds = min(block_seconds, longest / _check_rate(sample_rate, "sample_rate"))
    try:
        yield from rechunk(stream_audio(p, sample_rate, block_seconds), sizes)
    except AudioError:
        raise
    except ValueError as err:
        raise AudioError(p, f"holds {err} at {sample_rate} Hz (did it change while it was read?)") from None


def resample(wav: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample with soxr (quality ``"HQ"``).

    Args:
        wav: (N,) or (N, C) waveform.
        orig_sr: its rate in Hz.
        target_sr: the wanted rate in Hz.

    Returns:
        float32 array of shape (round(N * target_sr / orig_sr),) or (..., C). The input is
        returned as float32 (copied only if the dtype changes) when the rates are equal.

    Raises:
        ValueError: for non-positive rates or a waveform that is not 1-D or 2-D.
    """
    orig = _check_rate(orig_sr, "orig_sr")
    target = _check_rate(target_sr, "target_sr")
    arr = np.asarray(wav, dtype=np.float32)
    if arr.ndim not in (1, 2):
        raise ValueError(f"expected a waveform of shape (N,) or (N, C), got shape {arr.shape}")
    if orig == target:
        return arr
    if arr.shape[0] == 0:
        return arr.copy()
    out = soxr.resample(arr, orig, target, quality=RESAMPLE_QUALITY)
    return np.asarray(out, dtype=np.float32)


def _as_numpy(wav: Any) -> np.ndarray:
    if hasattr(wav, "detach"):  # a torch tensor; io.py does not import torch
        wav = wav.detach().cpu().numpy()
    return np.asarray(wav, dtype=np.float32)


def write_audio(path: str | os.PathLike[str], wav: Any, sample_rate: int = 16000) -> None:
    """Write a waveform as 16-bit PCM, atomically.

    The format follows the suffix: ``.wav`` (16-bit PCM WAV) or ``.flac`` (16-bit FLAC). Parent
    directories are created. Samples are clipped to [-1, 1] before quantisation, with a warning
    that counts them (none is clipped silently). The data go to a hidden temporary file in the
    same directory, which is renamed over ``path`` only once it is complete, so ``path`` is never
    left half-written and no temporary file remains on failure.

    Args:
        path: the destination file.
        wav: (N,) mono or (N, C) multi-channel waveform (numpy array or torch tensor).
        sample_rate: rate in Hz stored in the header.

    Raises:
        AudioError: (a ValueError, naming the file) for an unsupported suffix, an empty or
            badly shaped waveform, non-finite samples, or a failed write.
        ValueError: when ``sample_rate`` is not a positive integer.
    """
    write_audio_blocks(path, [wav], sample_rate)


def write_audio_blocks(path: str | os.PathLike[str], blocks: Iterable[Any], sample_rate: int = 16000) -> None:
    """Write a waveform that arrives in consecutive blocks, as :func:`write_audio` does.

    Only one block is held at a time (each is clipped as it is written), so a long recording
    can be written with memory bounded by its largest block. The file appears at ``path`` only
    when every block is written; an error in any block (or in producing it) leaves nothing.

    Args:
        path: the destination file (``.wav`` or ``.flac``).
        blocks: (N_i,) or (N_i, C) waveform blocks (numpy arrays or tensors), one channel count.
        sample_rate: rate in Hz stored in the header.

    Raises:
        AudioError: as :func:`write_audio`, naming the file (an empty waveform means no samples
            in any block).
        ValueError: when ``sample_rate`` is not a positive integer.
    """
    rate = _check_rate(sample_rate, "sample_rate")
    p = Path(path)
    fmt = WRITE_FORMATS.get(p.suffix.lower())
    if fmt is None:
        valid = ", ".join(WRITE_FORMATS)
        raise AudioError(p, f"unsupported suffix {p.suffix!r} for writing; use one of {valid}")
    handle: sf.SoundFile | None = None
    shape: tuple[int, ...] | None = None
    total = clipped = 0
    try:
        with atomic_path(p) as tmp:
            try:
                for block in blocks:
                    data = _as_numpy(block)
                    if data.ndim not in (1, 2) or (
                        data.ndim == 2 and not 0 < data.shape[1] <= _MAX_WRITE_CHANNELS
                    ):
                        raise AudioError(
                            p,
                            f"expected a waveform of shape (N,) or (N, C) with C <= {_MAX_WRITE_CHANNELS}, "
                            f"got shape {data.shape}",
                        )
                    if shape is not None and data.shape[1:] != shape:
                        raise AudioError(
                            p, f"a block of shape {data.shape} follows blocks of shape (N, *{shape})"
                        )
                    shape = data.shape[1:]
                    if not np.isfinite(data).all():
                        raise AudioError(p, "refusing to write non-finite samples (NaN or Inf)")
                    if data.shape[0] == 0:
                        continue
                    if handle is None:
                        p.parent.mkdir(parents=True, exist_ok=True)
                        channels = 1 if data.ndim == 1 else data.shape[1]
                        handle = sf.SoundFile(
                            os.fspath(tmp),
                            "w",
                            samplerate=rate,
                            channels=channels,
                            subtype=fmt[1],
                            format=fmt[0],
                        )
                    clipped += int(np.count_nonzero(np.abs(data) > 1.0))
                    handle.write(np.clip(data, -1.0, 1.0))
                    total += data.shape[0]
                if total == 0:
                    raise AudioError(p, "refusing to write an empty waveform")
            finally:
                if handle is not None:
                    handle.close()
        if clipped:
            warnings.warn(
                f"{p}: {clipped} sample(s) beyond [-1, 1] clipped to write 16-bit PCM", stacklevel=2
            )
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise AudioError(p, f"cannot write audio ({err})") from err


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
