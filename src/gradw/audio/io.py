"""Audio file input/output: read, validate, downmix, resample, and write atomically.

Waveforms are numpy ``float32`` arrays. Mono audio is ``(N,)``; multi-channel arrays handed to
:func:`write_audio` or :func:`resample` are ``(N, C)`` (frames by channels, soundfile's layout).
Every error about a file is an :class:`AudioError` whose message names the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from gradw.errors import GradwError
from gradw.fileio import atomic_path

__all__ = [
    "prepare_waveform",
    "AudioError",
    "WRITE_FORMATS",
    "audio_info",
    "read_audio",
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


def audio_info(path: str | os.PathLike[str]) -> tuple[int, int, int]:
    """Read only the header of an audio file.

    Returns:
        ``(sample_rate, num_frames, channels)``; ``num_frames`` counts samples per channel.

    Raises:
        AudioError: the file is missing or libsndfile cannot parse it.
    """
    p = Path(path)
    _check_exists(p)
    try:
        info = sf.info(os.fspath(p))
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise AudioError(p, f"cannot read audio header ({err})") from err
    return int(info.samplerate), int(info.frames), int(info.channels)


def read_audio(path: str | os.PathLike[str], sample_rate: int = 16000) -> np.ndarray:
    """Read an audio file as a mono float32 waveform at ``sample_rate``.

    Handling:

    * any format libsndfile reads (WAV, FLAC, OGG/Vorbis, OGG/Opus, ...). Integer PCM is scaled
      to [-1, 1) by libsndfile; floating-point files are returned as stored (not clipped or
      rescaled, so they may exceed [-1, 1] if the file does);
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
            decoded (corrupt, empty or unknown format), holds no samples, or holds NaN/Inf.
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

    The same handling (downmix by averaging, soxr ``"HQ"`` resampling, streamed so that the
    samples equal the one-shot resampling), with memory bounded by one block, whatever the
    length of the file.

    Args:
        path: the audio file.
        sample_rate: the rate of the yielded blocks in Hz.
        block_seconds: about how much of the file each read takes (None: all of it at once).

    Yields:
        (N_i,) float32 mono blocks at ``sample_rate`` (some may be empty while a resampler fills).

    Raises:
        AudioError: as :func:`read_audio` (raised when the problem is reached: a NaN in the last
            block is reported after the earlier blocks were yielded).
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
        rate = int(handle.samplerate)
        stream = (
            None
            if rate == target
            else soxr.ResampleStream(rate, target, 1, dtype="float32", quality=RESAMPLE_QUALITY)
        )
        size = -1 if block_seconds is None else max(1, int(block_seconds * rate))  # -1: all that is left
        total = 0
        pending: np.ndarray | None = None  # one block of look-ahead, to tell the resampler the last
        while True:
            try:
                data = handle.read(size, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError, OSError) as err:
                raise AudioError(p, f"cannot decode audio ({err})") from err
            last = data.shape[0] == 0
            if not last:
                if data.shape[1] == 0:
                    raise AudioError(p, "file holds no audio samples (zero length)")
                if not np.isfinite(data).all():
                    raise AudioError(p, "file holds non-finite samples (NaN or Inf)")
                total += data.shape[0]
            if pending is not None:
                out = pending if stream is None else stream.resample_chunk(pending, last=last)
                yield np.ascontiguousarray(out, dtype=np.float32)
            if last:
                break
            pending = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
        if total == 0:
            raise AudioError(p, "file holds no audio samples (zero length)")


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
    directories are created. Samples are clipped to [-1, 1] before quantisation. The data go to a
    hidden temporary file in the same directory, which is renamed over ``path`` only once it is
    complete, so ``path`` is never left half-written and no temporary file remains on failure.

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
    total = 0
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
                    handle.write(np.clip(data, -1.0, 1.0))
                    total += data.shape[0]
                if total == 0:
                    raise AudioError(p, "refusing to write an empty waveform")
            finally:
                if handle is not None:
                    handle.close()
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
