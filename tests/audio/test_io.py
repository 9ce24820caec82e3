"""Tests for audio reading, writing and resampling."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from gradw.audio.io import (
    AudioError,
    audio_info,
    audio_length,
    read_audio,
    read_windows,
    rechunk,
    resample,
    stream_audio,
    write_audio,
    write_audio_blocks,
)


def sine(freq: float, sr: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_frequency(wav: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(wav * np.hanning(len(wav))))
    return float(np.argmax(spectrum) * sr / len(wav))


def test_write_read_round_trip_wav_and_flac(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    wav = (0.3 * rng.standard_normal(8000)).clip(-0.99, 0.99).astype(np.float32)
    for name in ("a.wav", "b.flac"):
        path = tmp_path / name
        write_audio(path, wav)
        back = read_audio(path)
        assert back.dtype == np.float32 and back.shape == wav.shape
        np.testing.assert_allclose(back, wav, atol=1.0 / 32768 + 1e-7)
        info = sf.info(str(path))
        assert info.subtype == "PCM_16" and info.samplerate == 16000
        assert audio_info(path) == (16000, 8000, 1)
    assert sf.info(str(tmp_path / "a.wav")).format == "WAV"
    assert sf.info(str(tmp_path / "b.flac")).format == "FLAC"


def test_write_accepts_torch_tensor_and_clips_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "clip.wav"
    with pytest.warns(UserWarning, match=r"clip\.wav: 2 sample\(s\) beyond \[-1, 1\] clipped"):
        write_audio(path, torch.tensor([0.0, 1.5, -2.0, 0.25], requires_grad=True))
    back, sr = sf.read(str(path), dtype="int16")
    assert sr == 16000
    np.testing.assert_array_equal(back, [0, 32767, -32768, 8192])


def test_write_leaves_no_temp_file_and_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    write_audio(path, sine(440, 16000, 0.1))
    write_audio(path, sine(880, 16000, 0.2))
    assert sorted(os.listdir(tmp_path)) == ["out.wav"]
    assert audio_info(path)[1] == 3200


def test_write_nan_creates_nothing_and_keeps_old_file(tmp_path: Path) -> None:
    bad = sine(440, 16000, 0.1)
    bad[10] = np.nan
    with pytest.raises(ValueError, match="new.wav"):
        write_audio(tmp_path / "new.wav", bad)
    assert os.listdir(tmp_path) == []
    old = tmp_path / "old.wav"
    write_audio(old, sine(440, 16000, 0.1))
    bad[10] = np.inf
    with pytest.raises(AudioError, match="non-finite"):
        write_audio(old, bad)
    assert sorted(os.listdir(tmp_path)) == ["old.wav"]
    assert audio_info(old) == (16000, 1600, 1)


def test_write_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match=r"x\.mp3.*\.wav"):
        write_audio(tmp_path / "x.mp3", np.zeros(10))
    with pytest.raises(AudioError, match="empty"):
        write_audio(tmp_path / "x.wav", np.zeros(0))
    with pytest.raises(AudioError, match=r"\(1, 5000\)"):
        write_audio(tmp_path / "x.wav", np.zeros((1, 5000)))
    with pytest.raises(ValueError, match="sample_rate"):
        write_audio(tmp_path / "x.wav", np.zeros(10), sample_rate=0)
    assert os.listdir(tmp_path) == []


@pytest.mark.filterwarnings("ignore:.*clipped to write 16-bit PCM")
def test_blocks_write_the_same_file_as_one_call(tmp_path: Path) -> None:
    wav = sine(440, 16000, 0.5, amp=1.2)  # clipped in both
    write_audio(tmp_path / "one.flac", wav)
    pieces = [wav[:1000], wav[1000:1000], torch.from_numpy(wav[1000:5001]), wav[5001:]]
    write_audio_blocks(tmp_path / "blocks.flac", iter(pieces))
    np.testing.assert_array_equal(read_audio(tmp_path / "blocks.flac"), read_audio(tmp_path / "one.flac"))
    stereo = np.stack([wav, -wav], axis=1)
    write_audio_blocks(tmp_path / "st.wav", [stereo[:100], stereo[100:]])
    assert audio_info(tmp_path / "st.wav") == (16000, len(wav), 2)


def test_a_failing_block_leaves_nothing_and_keeps_the_old_file(tmp_path: Path) -> None:
    old = tmp_path / "out.wav"
    write_audio(old, sine(440, 16000, 0.1))

    def blocks():
        yield sine(440, 16000, 0.1)
        raise RuntimeError("the enhancer failed half-way")

    with pytest.raises(AudioError, match=r"out\.wav.*half-way"):
        write_audio_blocks(old, blocks())
    bad = sine(440, 16000, 0.1)
    bad[5] = np.nan
    with pytest.raises(AudioError, match="non-finite"):
        write_audio_blocks(old, [sine(440, 16000, 0.1), bad])
    with pytest.raises(AudioError, match=r"shape \(10, 2\) follows"):
        write_audio_blocks(old, [np.zeros(10), np.zeros((10, 2))])
    with pytest.raises(AudioError, match="empty"):
        write_audio_blocks(old, [np.zeros(0), np.zeros(0)])
    assert sorted(os.listdir(tmp_path)) == ["out.wav"]
    assert audio_info(old) == (16000, 1600, 1)


def test_stereo_is_downmixed_by_averaging(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    stereo = (0.4 * rng.standard_normal((4000, 2))).astype(np.float32)
    path = tmp_path / "stereo.wav"
    sf.write(str(path), stereo, 16000, subtype="FLOAT")
    assert audio_info(path) == (16000, 4000, 2)
    mono = stereo.mean(axis=1)
    peak = np.abs(mono).max()  # Gaussian noise in float: channels peak at 1.57, their mean at 1.11
    assert 1.1 < peak < 1.12
    with pytest.warns(UserWarning, match=r"stereo\.wav: floating-point samples peak at 1\.109"):
        wav = read_audio(path)
    np.testing.assert_allclose(wav, mono / peak, rtol=0, atol=1e-7)  # averaged, then scaled to peak 1
    quiet = tmp_path / "quiet.wav"
    sf.write(str(quiet), 0.5 * stereo, 16000, subtype="FLOAT")
    np.testing.assert_allclose(read_audio(quiet), 0.5 * mono, rtol=0, atol=1e-7)  # in range: as stored


@pytest.mark.parametrize(("sr", "freq"), [(44100, 1000.0), (8000, 440.0), (48000, 3000.0)])
def test_resampled_on_read(tmp_path: Path, sr: int, freq: float) -> None:
    path = tmp_path / f"tone_{sr}.wav"
    sf.write(str(path), sine(freq, sr, 1.0), sr, subtype="PCM_16")
    wav = read_audio(path)
    assert wav.dtype == np.float32
    assert wav.shape == (16000,)
    assert abs(peak_frequency(wav, 16000) - freq) <= 2.0
    # level is preserved (the tone is well inside both pass-bands)
    np.testing.assert_allclose(np.sqrt(np.mean(wav[1000:-1000] ** 2)), 0.5 / np.sqrt(2), rtol=0.01)


def test_reads_ogg_vorbis(tmp_path: Path) -> None:
    path = tmp_path / "tone.ogg"
    sf.write(str(path), sine(500.0, 22050, 1.0), 22050, format="OGG", subtype="VORBIS")
    wav = read_audio(path)
    assert abs(len(wav) - 16000) <= 1
    assert abs(peak_frequency(wav, 16000) - 500.0) <= 2.0


def test_resample_function() -> None:
    x = sine(1000.0, 48000, 0.5)
    y = resample(x, 48000, 16000)
    assert y.dtype == np.float32 and y.shape == (8000,)
    assert abs(peak_frequency(y, 16000) - 1000.0) <= 2.0
    assert resample(x, 16000, 16000) is x
    stereo = np.stack([x, -x], axis=1)
    assert resample(stereo, 48000, 16000).shape == (8000, 2)
    assert resample(sine(100.0, 8000, 0.5)[:1001], 8000, 16000).shape == (2002,)
    with pytest.raises(ValueError, match="orig_sr"):
        resample(x, 0, 16000)
    with pytest.raises(ValueError, match="shape"):
        resample(np.zeros((2, 2, 2)), 8000, 16000)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.wav"
    with pytest.raises(AudioError, match="nope.wav.*no such file"):
        read_audio(path)
    with pytest.raises(AudioError, match="nope.wav"):
        audio_info(path)
    with pytest.raises(AudioError, match="not a regular file"):
        read_audio(tmp_path)


def test_corrupt_and_empty_files(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(np.random.default_rng(2).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    for path in (corrupt, empty):
        with pytest.raises(AudioError, match=path.name) as info:
            read_audio(path)
        assert info.value.path == str(path)
        assert isinstance(info.value, ValueError)
        with pytest.raises(AudioError, match=path.name):
            audio_info(path)


def test_zero_length_audio(tmp_path: Path) -> None:
    path = tmp_path / "zero.wav"
    sf.write(str(path), np.zeros(0, dtype=np.float32), 16000)
    assert audio_info(path) == (16000, 0, 1)
    with pytest.raises(AudioError, match="zero.wav.*zero length"):
        read_audio(path)


def test_non_finite_content(tmp_path: Path) -> None:
    x = sine(440.0, 16000, 0.1)
    x[100] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(str(path), x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="nan.wav.*non-finite"):
        read_audio(path)


@pytest.mark.parametrize(("rate", "channels"), [(16000, 1), (44100, 2), (8000, 3)])
def test_streamed_blocks_are_the_file_read_at_once(tmp_path: Path, rate: int, channels: int) -> None:
    rng = np.random.default_rng(rate)
    data = (0.3 * rng.standard_normal((int(2.7 * rate), channels))).astype(np.float32)
    path = tmp_path / "x.flac"
    sf.write(path, data, rate, subtype="PCM_24")
    blocks = list(stream_audio(path, 16000, block_seconds=0.25))
    assert len(blocks) > 5
    np.testing.assert_array_equal(np.concatenate(blocks), read_audio(path))


def test_streaming_reports_bad_files(tmp_path: Path) -> None:
    bad = sine(440, 16000, 1.0)
    bad[-10] = np.nan
    sf.write(tmp_path / "nan.wav", bad, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan\.wav: file holds non-finite"):
        list(stream_audio(tmp_path / "nan.wav", block_seconds=0.1))
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match=r"empty\.wav: file holds no audio samples"):
        list(stream_audio(tmp_path / "empty.wav"))
    (tmp_path / "junk.wav").write_bytes(b"RIFF\x00\x00junk")
    with pytest.raises(AudioError, match=r"junk\.wav: cannot decode audio"):
        list(stream_audio(tmp_path / "junk.wav"))
    with pytest.raises(AudioError, match="no such file"):
        list(stream_audio(tmp_path / "missing.wav"))


def test_a_file_too_short_to_resample_is_named(tmp_path: Path) -> None:
    sf.write(tmp_path / "click.wav", np.full(1, 0.5, np.float32), 48000, subtype="FLOAT")
    assert soxr_len(1, 48000, 16000) == 0  # one sample at 48 kHz is no sample at 16 kHz
    with pytest.raises(AudioError, match=r"click\.wav: too short to resample to 16000 Hz"):
        read_audio(tmp_path / "click.wav")


def soxr_len(n: int, rate: int, target: int) -> int:
    return len(resample(np.zeros(n, np.float32), rate, target))


# ---------------------------------------------------------------------------------------------
# levels beyond full scale, and files cut short


def test_a_float_file_beyond_full_scale_is_scaled_to_peak_one_never_clipped(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    loud = (10.0 * rng.standard_normal(16000)).astype(np.float32)
    loud *= np.float32(46.0 / np.abs(loud).max())  # peak 46: clipping would flatten most samples
    assert np.mean(np.abs(loud) > 1) > 0.9
    path = tmp_path / "loud.wav"
    sf.write(path, loud, 16000, subtype="FLOAT")
    with pytest.warns(UserWarning, match=r"loud\.wav: floating-point samples peak at 46\b") as caught:
        wav = read_audio(path)
    assert len(caught) == 1
    assert wav.shape == loud.shape and np.abs(wav).max() == 1.0
    assert np.corrcoef(wav, loud)[0, 1] == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(wav, loud / 46.0, rtol=1e-6)
    # streamed (``gradw enhance``): the same samples, one warning, the peak found before any block
    with pytest.warns(UserWarning, match="peak at 46") as caught:
        blocks = list(stream_audio(path, 16000, block_seconds=0.1))
    assert len(caught) == 1
    np.testing.assert_array_equal(np.concatenate(blocks), wav)
    # at another rate: scaled, then resampled (as in range)
    with pytest.warns(UserWarning, match="peak at 46"):
        down = read_audio(path, 8000)
    np.testing.assert_allclose(down, resample(loud / np.float32(46.0), 16000, 8000), atol=1e-6)


def test_integer_pcm_is_read_as_stored(tmp_path: Path, recwarn: pytest.WarningsRecorder) -> None:
    rng = np.random.default_rng(4)
    pcm = rng.integers(-32768, 32768, 8000).astype(np.int16)
    pcm[:2] = (-32768, 32767)  # full scale both ways
    path = tmp_path / "pcm.wav"
    sf.write(path, pcm, 16000, subtype="PCM_16")
    np.testing.assert_array_equal(read_audio(path), pcm.astype(np.float32) / 32768)
    np.testing.assert_array_equal(np.concatenate(list(stream_audio(path, block_seconds=0.1))), pcm / 32768)
    assert not [w for w in recwarn if "pcm.wav" in str(w.message)]


def _cut(path: Path, keep: float) -> Path:
    data = path.read_bytes()
    cut = path.with_name("cut-" + path.name)
    cut.write_bytes(data[: int(len(data) * keep)])
    return cut


@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT"])
def test_a_truncated_wav_is_refused_naming_both_counts(tmp_path: Path, subtype: str) -> None:
    path = tmp_path / "whole.wav"
    sf.write(path, sine(440, 16000, 2.0), 16000, subtype=subtype)
    cut = _cut(path, 0.5)
    holds = sf.info(str(cut)).frames  # libsndfile quietly reads what is left...
    assert 0 < holds < 16000
    message = rf"cut-whole\.wav: truncated: its header promises 32000 samples, the file holds {holds}$"
    with pytest.raises(AudioError, match=message):  # ...gradw refuses it
        read_audio(cut)
    with pytest.raises(AudioError, match=message):
        list(stream_audio(cut))
    with pytest.raises(AudioError, match=message):
        audio_info(cut)  # data directories are checked with it
    assert audio_info(path) == (16000, 32000, 1)  # the whole file is fine


def test_a_wav_with_chunks_before_its_data_and_an_unknown_length_is_read(tmp_path: Path) -> None:
    import struct

    samples = (0.25 * np.sin(np.arange(1000) / 5)).astype(np.float32)
    pcm = (samples * 32768).astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16)
    junk = b"LIST" + struct.pack("<I", 5) + b"abcde\0"  # odd size: padded
    for size in (len(pcm), 0xFFFFFFFF):  # exact, or a streaming writer's "length unknown"
        body = (
            b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + junk + b"data" + struct.pack("<I", size) + pcm
        )
        path = tmp_path / f"{size}.wav"
        path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
        np.testing.assert_allclose(read_audio(path), samples, atol=1 / 32768)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + junk + b"data" + struct.pack("<I", 4000) + pcm
    (tmp_path / "short.wav").write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    with pytest.raises(
        AudioError, match=r"short\.wav: truncated: its header promises 2000 samples, the file holds 1000"
    ):
        read_audio(tmp_path / "short.wav")


def test_a_truncated_flac_is_refused(tmp_path: Path) -> None:
    """libsndfile reports the full length in a cut FLAC's header and fails when decoding reaches
    the cut (whether or not the cut falls on a frame boundary); the error names both counts."""
    path = tmp_path / "whole.flac"
    rng = np.random.default_rng(5)
    sf.write(path, (0.3 * rng.standard_normal(48000)).astype(np.float32), 16000, subtype="PCM_16")
    data = path.read_bytes()
    frame_start = data.index(b"\xff\xf8", data.index(b"\xff\xf8") + 2)  # the second FLAC frame
    for keep, name in ((0.6, "mid.flac"), (frame_start / len(data), "edge.flac")):
        cut = tmp_path / name
        cut.write_bytes(data[: int(round(keep * len(data)))])
        assert sf.info(str(cut)).frames == 48000  # the header still promises every sample
        with pytest.raises(AudioError, match=rf"{name}: cannot decode audio after \d+ of the 48000 samples"):
            read_audio(cut)
        with pytest.raises(AudioError, match=rf"{name}: cannot decode audio after \d+ of the 48000 samples"):
            list(stream_audio(cut, block_seconds=0.25))


# containers whose header states a length (besides WAV): suffix -> soundfile format
CONTAINERS = {".aiff": "AIFF", ".w64": "W64", ".rf64": "RF64", ".wav": "WAV"}


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT"])
@pytest.mark.parametrize("suffix", list(CONTAINERS))
def test_a_truncated_aiff_w64_or_rf64_is_refused_naming_both_counts(
    tmp_path: Path, suffix: str, subtype: str
) -> None:
    path = tmp_path / f"whole{suffix}"
    sf.write(path, sine(440, 16000, 2.0), 16000, format=CONTAINERS[suffix], subtype=subtype)
    assert audio_info(path) == (16000, 32000, 1)  # whole: read as it is
    assert audio_length(path) == 32000
    np.testing.assert_array_equal(read_audio(path), sf.read(path, dtype="float32")[0])
    cut = _cut(path, 0.6)
    holds = sf.info(str(cut)).frames  # libsndfile lowers its count to what the cut file holds
    assert 0 < holds < 32000
    message = rf"cut-whole\{suffix}: truncated: its header promises 32000 samples, the file holds {holds}$"
    for read in (audio_info, read_audio, audio_length, lambda p: list(stream_audio(p))):
        with pytest.raises(AudioError, match=message):
            read(cut)


def test_a_stereo_aiff_counts_frames_not_samples(tmp_path: Path) -> None:
    path = tmp_path / "stereo.aiff"
    sf.write(path, np.stack([sine(300, 16000, 1.0), sine(500, 16000, 1.0)], axis=1), 16000, format="AIFF")
    assert audio_info(path) == (16000, 16000, 2)
    with pytest.raises(AudioError, match="promises 16000 samples, the file holds"):
        read_audio(_cut(path, 0.5))


def test_audio_length_is_what_read_audio_returns(tmp_path: Path) -> None:
    wav = np.stack([sine(300, 44100, 1.3), sine(500, 44100, 1.3, amp=0.2)], axis=1)
    sf.write(tmp_path / "a.flac", wav, 44100)  # resampled: counted by reading
    sf.write(tmp_path / "b.wav", wav[:, 0], 16000, subtype="PCM_16")  # the header's count
    sf.write(tmp_path / "c.ogg", wav[:, 0], 16000, format="OGG", subtype="VORBIS")  # an estimate
    for name in ("a.flac", "b.wav", "c.ogg"):
        for rate in (16000, 8000):
            assert audio_length(tmp_path / name, rate) == read_audio(tmp_path / name, rate).shape[0]
    with pytest.raises(AudioError, match="nowhere.wav: no such file"):
        audio_length(tmp_path / "nowhere.wav")


def test_rechunk_cuts_blocks_into_pieces_of_the_given_sizes() -> None:
    wav = np.arange(100, dtype=np.float32)
    blocks = [wav[:7], wav[7:7], wav[7:60], wav[60:]]  # an empty block, a piece-sized one
    pieces = list(rechunk(blocks, [30, 30, 40]))
    assert [p.shape[0] for p in pieces] == [30, 30, 40]
    np.testing.assert_array_equal(np.concatenate(pieces), wav)
    assert [p.dtype for p in pieces] == [np.float32] * 3
    whole = list(rechunk([wav], [100]))
    np.testing.assert_array_equal(whole[0], wav)
    with pytest.raises(ValueError, match="90 samples where 100 were expected"):
        list(rechunk([wav[:90]], [50, 50]))
    with pytest.raises(ValueError, match="101 samples where 100 were expected"):
        list(rechunk([wav, wav[:1]], [50, 50]))


@pytest.mark.filterwarnings("ignore:.*beyond full scale")
@pytest.mark.parametrize(("rate", "channels", "subtype"), [(16000, 1, "PCM_16"), (22050, 2, "FLOAT")])
def test_windows_read_from_a_file_are_the_file_read_whole(
    tmp_path: Path, rate: int, channels: int, subtype: str
) -> None:
    rng = np.random.default_rng(3)
    data = (0.4 * rng.standard_normal((int(rate * 7.3), channels))).astype(np.float32)
    data[100, 0] = 2.5 if subtype == "FLOAT" else 0.9  # a float file beyond full scale: divided by its peak
    path = tmp_path / f"x-{rate}.wav"
    sf.write(path, data, rate, subtype=subtype)
    whole = read_audio(path)
    n = audio_length(path)
    assert n == whole.shape[0]
    sizes = [n // 3, n // 3, n - 2 * (n // 3)]  # windows unrelated to the 1 s reads below
    windows = list(read_windows(path, sizes, block_seconds=1.0))
    assert [w.shape[0] for w in windows] == sizes
    np.testing.assert_array_equal(np.concatenate(windows), whole)
    with pytest.raises(AudioError, match=rf"x-{rate}\.wav: holds {n} samples where {n + 5} were expected"):
        list(read_windows(path, [*sizes[:2], sizes[2] + 5]))
