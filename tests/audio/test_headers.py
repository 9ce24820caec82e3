"""Tests for the frame counts read from containers' headers (gradw.audio.headers)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from gradw.audio.headers import promised_frames

WAVE = (0.3 * np.sin(np.arange(12344) / 7)).astype(np.float32)


@pytest.mark.parametrize(
    ("fmt", "subtype", "channels"),
    [
        ("WAV", "PCM_16", 1),
        ("WAV", "ULAW", 2),
        ("AIFF", "PCM_16", 2),
        ("AIFF", "PCM_24", 1),
        ("AIFF", "FLOAT", 1),  # AIFF-C, fl32
        ("AIFF", "ULAW", 1),  # AIFF-C, ulaw: one byte a sample
        ("W64", "PCM_16", 2),
        ("W64", "DOUBLE", 1),
        ("RF64", "PCM_24", 1),
        ("RF64", "FLOAT", 2),
    ],
)
def test_the_promised_count_of_a_whole_file_is_its_frames(
    tmp_path: Path, fmt: str, subtype: str, channels: int
) -> None:
    path = tmp_path / "x.audio"
    sf.write(path, np.stack([WAVE] * channels, axis=1), 16000, format=fmt, subtype=subtype)
    assert sf.info(str(path)).frames == 12344
    assert promised_frames(path) == 12344
    data = path.read_bytes()
    cut = tmp_path / "cut.audio"
    cut.write_bytes(data[: len(data) * 3 // 4])
    assert promised_frames(cut) == 12344  # the header still promises them all
    assert sf.info(str(cut)).frames < 12344  # libsndfile counts what is left


def test_other_containers_and_unknown_lengths_promise_nothing(tmp_path: Path) -> None:
    sf.write(tmp_path / "x.flac", WAVE, 16000)
    (tmp_path / "text.wav").write_text("not audio at all\n")
    (tmp_path / "short.wav").write_bytes(b"RIFF")
    for name in ("x.flac", "text.wav", "short.wav"):
        assert promised_frames(tmp_path / name) is None
    assert promised_frames(tmp_path / "nowhere.wav") is None
    # RF64 by a streaming writer: the ds64 chunk's data size not filled in (0)
    pcm = (WAVE * 32767).astype("<i2").tobytes()
    fmt = b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16)
    ds64 = b"ds64" + struct.pack("<IQQQI", 28, 0, 0, 0, 0)
    body = b"WAVE" + ds64 + fmt + b"data" + struct.pack("<I", 0xFFFFFFFF) + pcm
    (tmp_path / "stream.rf64").write_bytes(b"RF64" + struct.pack("<I", 0xFFFFFFFF) + body)
    assert promised_frames(tmp_path / "stream.rf64") is None
    ds64 = b"ds64" + struct.pack("<IQQQI", 28, 0, len(pcm) + 2000, 0, 0)  # 1000 frames more than held
    body = b"WAVE" + ds64 + fmt + b"data" + struct.pack("<I", 0xFFFFFFFF) + pcm
    (tmp_path / "cut.rf64").write_bytes(b"RF64" + struct.pack("<I", 0xFFFFFFFF) + body)
    assert promised_frames(tmp_path / "cut.rf64") == 12344 + 1000
