"""How many frames an audio file's header promises, read from the container itself.

libsndfile quietly lowers its frame count to what a cut file still holds, so a recording cut short
in a copy would be read as if it were whole. This module reads the count the header itself
promises, for the containers that state one in bytes or frames:

* RIFF/RIFX WAV: the ``data`` chunk's size (PCM, IEEE float, A-law, mu-law, extensible);
* RF64 and BW64 (WAV beyond 4 GiB): the ``data`` size of the ``ds64`` chunk;
* Sony Wave64 (W64): the size of the ``data`` chunk (GUID-named, 64-bit sizes);
* AIFF and AIFF-C: the ``COMM`` chunk's frame count, checked against the ``SSND`` chunk's size
  for the uncompressed encodings.

Any other container (FLAC, Ogg, ...) gives None: its decoder reports a cut by failing.
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO

__all__ = ["promised_frames"]

#: WAV format tags whose data chunk holds ``block_align`` bytes per frame: PCM, IEEE float,
#: A-law, mu-law, extensible
_WAV_FRAME_TAGS = frozenset({0x0001, 0x0003, 0x0006, 0x0007, 0xFFFE})
#: a WAV data size at least this large is a "length unknown" placeholder of a streaming writer
_WAV_UNKNOWN_SIZE = 0x7FFF0000
#: the GUIDs of Wave64's chunks: b"riff", b"wave", b"fmt ", b"data", each followed by this tail
_W64_TAIL = b"\xf3\xac\xd3\x11\x8c\xd1\x00\xc0\x4f\x8e\xdb\x8a"
_W64_RIFF = b"riff\x2e\x91\xcf\x11\xa5\xd6\x28\xdb\x04\xc1\x00\x00"
#: AIFF-C compression types whose samples are stored as plain bytes: (name, bytes per sample or
#: None for the COMM chunk's sample size)
_AIFC_PLAIN = {
    b"NONE": None, b"twos": None, b"sowt": None, b"raw ": None,
    b"fl32": 4, b"FL32": 4, b"fl64": 8, b"FL64": 8,
    b"in24": 3, b"42ni": 3, b"in32": 4, b"23ni": 4,
    b"ulaw": 1, b"ULAW": 1, b"alaw": 1, b"ALAW": 1,
}  # fmt: skip


def promised_frames(path: str | os.PathLike[str]) -> int | None:
    """The frames the header of ``path`` promises, or None when it promises no count this module
    reads (another container, a compressed encoding, a streaming writer's "unknown" size, a
    header that cannot be parsed: libsndfile judges those)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
            if len(head) >= 12 and head[:4] in (b"RIFF", b"RIFX") and head[8:12] == b"WAVE":
                return _riff(handle, "<" if head[:4] == b"RIFF" else ">", None)
            if len(head) >= 12 and head[:4] in (b"RF64", b"BW64") and head[8:12] == b"WAVE":
                return _riff(handle, "<", 0)
            if head == _W64_RIFF:
                return _wave64(handle)
            if len(head) >= 12 and head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
                return _aiff(handle, head[8:12] == b"AIFC")
    except (OSError, struct.error, ValueError):
        return None
    return None


def _frames(tag: int | None, block_align: int | None, size: int) -> int | None:
    if tag not in _WAV_FRAME_TAGS or not block_align:
        return None
    return size // block_align


def _riff(handle: BinaryIO, order: str, ds64: int | None) -> int | None:
    """RIFF/RIFX (``ds64`` None) or RF64/BW64 (the data size comes from the ``ds64`` chunk)."""
    handle.seek(12)
    tag = block_align = None
    while len(chunk := handle.read(8)) == 8:
        name, size = chunk[:4], struct.unpack(order + "I", chunk[4:])[0]
        if name == b"ds64" and ds64 is not None and size >= 24:
            _riff_size, ds64, _samples = struct.unpack("<QQQ", handle.read(24))
            size -= 24
        elif name == b"data":
            if ds64 is not None:
                return _frames(tag, block_align, ds64) if ds64 else None
            return None if size >= _WAV_UNKNOWN_SIZE else _frames(tag, block_align, size)
        elif name == b"fmt " and size >= 14:
            tag, _, _, _, block_align = struct.unpack(order + "HHIIH", handle.read(14))
            size -= 14
        handle.seek(size + (size & 1), os.SEEK_CUR)  # chunks are padded to even sizes
    return None


def _wave64(handle: BinaryIO) -> int | None:
    """Sony Wave64: 16-byte GUID names, 64-bit sizes that count the 24-byte chunk header, chunks
    aligned to 8 bytes."""
    handle.seek(24)
    if handle.read(16) != b"wave" + _W64_TAIL:
        return None
    tag = block_align = None
    while len(chunk := handle.read(24)) == 24:
        guid, size = chunk[:16], struct.unpack("<Q", chunk[16:])[0]
        if size < 24:
            return None
        body = size - 24
        if guid == b"data" + _W64_TAIL:
            return _frames(tag, block_align, body)
        if guid == b"fmt " + _W64_TAIL and body >= 14:
            tag, _, _, _, block_align = struct.unpack("<HHIIH", handle.read(14))
            body -= 14
        handle.seek(body + (-size % 8), os.SEEK_CUR)
    return None


def _aiff(handle: BinaryIO, compressed: bool) -> int | None:
    """AIFF/AIFF-C: the COMM chunk's frame count; for plain encodings it must also fit in the
    SSND chunk's declared size (whichever promises less is the promise)."""
    handle.seek(12)
    frames = frame_bytes = None
    while len(chunk := handle.read(8)) == 8:
        name, size = chunk[:4], struct.unpack(">I", chunk[4:])[0]
        body = size
        if name == b"COMM" and size >= 18:
            channels, frames, bits = struct.unpack(">hIh", handle.read(8))
            handle.read(10)  # the sample rate (80-bit extended)
            body -= 18
            width: int | None = (bits + 7) // 8
            if compressed and size >= 22:
                kind = handle.read(4)
                body -= 4
                if kind not in _AIFC_PLAIN:
                    width = None  # compressed: its bytes do not count its frames
                elif _AIFC_PLAIN[kind] is not None:
                    width = _AIFC_PLAIN[kind]
            frame_bytes = channels * width if width and channels > 0 else None
        elif name == b"SSND" and size >= 8:
            if frames is None:
                return None
            offset, _block = struct.unpack(">II", handle.read(8))
            if frame_bytes:
                frames = min(frames, max(0, size - 8 - offset) // frame_bytes)
            return frames or None
        handle.seek(body + (body & 1), os.SEEK_CUR)
    return None
