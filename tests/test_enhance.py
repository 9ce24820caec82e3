"""Tests for gradw.enhance: the mel -> STFT mapping, frame alignment, chunking, files and the CLI."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import Tensor, nn

from gradw.audio.frontends import KaldiFbank, LogMel, build_frontend
from gradw.checkpoint import save_checkpoint
from gradw.cli.enhance import register as register_enhance
from gradw.enhance.chunks import Chunk, own_frames, plan_chunks
from gradw.enhance.dsp import align_mask_frames, mask_to_stft_gains, mel_to_linear_matrix, stft_frame_shift
from gradw.enhance.enhancer import EnhanceError, Enhancer
from gradw.enhance.files import collect_inputs
from gradw.models.unet import MaskUNet

SR = 16000


# ---------------------------------------------------------------------------------------------
# helpers


class FixedMask(nn.Module):
    """A stand-in for G: the mask is ``fn(T)`` of shape (F, T), whatever the features."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, features: Tensor) -> Tensor:
        b, f, t = features.shape
        return self.fn(t).to(features).expand(b, f, t)


class FrameLocal(nn.Module):
    """A G that looks at each (band, frame) alone: mask = sigmoid(a * features + b)."""

    def forward(self, features: Tensor) -> Tensor:
        return torch.sigmoid(0.7 * features - 0.2)


def tiny_unet(seed: int = 0, **kwargs) -> MaskUNet:
    torch.manual_seed(seed)
    return MaskUNet(base_width=4, blocks=(1, 1, 1, 1), up_layers=(1, 1, 1), **kwargs).eval()


def make_checkpoint(path: Path, frontend: str = "kaldi-fbank", speaker: str = "campplus") -> Path:
    model = tiny_unet()
    save_checkpoint(
        path,
        kind="enhancer",
        model=model,
        model_config=model.config,
        extra={"speaker": {"name": speaker, "checkpoint": None, "tap": "front"}, "frontend": frontend},
        config={},
        step=0,
    )
    return path


def tone_amplitude(x: np.ndarray, freq: float) -> float:
    """Least-squares amplitude of a sinusoid of ``freq`` Hz in ``x``."""
    t = np.arange(len(x)) / SR
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, x.astype(np.float64), rcond=None)
    return float(np.hypot(*coef))


def noise(seconds: float, seed: int = 0, scale: float = 0.1) -> Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy((scale * rng.standard_normal(int(seconds * SR))).astype(np.float32))


# ---------------------------------------------------------------------------------------------
# the mel -> linear mapping


@pytest.mark.parametrize("name", ["kaldi-fbank", "logmel"])
def test_mapping_rows_are_weighted_averages_and_uncovered_bins_take_the_nearest_band(name: str) -> None:
    fbank = build_frontend(name).fbank.double()  # (80, 257)
    mapping = mel_to_linear_matrix(fbank)
    assert mapping.shape == (257, 80)
    torch.testing.assert_close(mapping.sum(dim=1), torch.ones(257, dtype=torch.float64))
    covered = fbank.sum(0) > 0
    # covered bins: W[f, k] / sum_f W[f, k], checked column by column
    for k in torch.nonzero(covered).flatten().tolist()[::17]:
        torch.testing.assert_close(mapping[k], fbank[:, k] / fbank[:, k].sum())
    # uncovered bins: DC and the top of the spectrum (Nyquist for Kaldi, > 7.6 kHz for LogMel)
    uncovered = torch.nonzero(~covered).flatten().tolist()
    assert 0 in uncovered and 256 in uncovered
    for k in uncovered:
        expected_band = 0 if k < 128 else 79
        assert mapping[k].tolist() == [1.0 if f == expected_band else 0.0 for f in range(80)]


def test_constant_mask_maps_to_the_same_constant() -> None:
    frontend = KaldiFbank()
    mapping = mel_to_linear_matrix(frontend.fbank)
    mask = torch.full((2, 80, 37), 0.3)
    gains = mask_to_stft_gains(mask, mapping.float(), 40, stft_frame_shift(frontend))
    assert gains.shape == (2, 257, 40)
    torch.testing.assert_close(gains, torch.full_like(gains, 0.3))


def test_floor_limits_the_power_gain() -> None:
    mapping = mel_to_linear_matrix(LogMel().fbank).float()
    mask = torch.full((1, 80, 10), 1e-6)
    gains = mask_to_stft_gains(mask, mapping, 10, 0.0, min_gain_db=-20)
    torch.testing.assert_close(gains, torch.full_like(gains, 0.01))
    with pytest.raises(ValueError, match="min_gain_db"):
        mask_to_stft_gains(mask, mapping, 10, 0.0, min_gain_db=3)


def test_frame_shift_of_each_frontend() -> None:
    assert stft_frame_shift(LogMel()) == 0.0
    assert stft_frame_shift(KaldiFbank()) == pytest.approx(200 / 160)


def test_alignment_puts_a_kaldi_frame_at_its_centre_sample() -> None:
    # a mask that is 1 on Kaldi frame 20 only: frame 20 is centred on sample 160 * 20 + 200
    mask = torch.zeros(1, 1, 50)
    mask[..., 20] = 1.0
    aligned = align_mask_frames(mask, 60, stft_frame_shift(KaldiFbank()))[0, 0].double()
    centroid_frame = float((aligned * torch.arange(60)).sum() / aligned.sum())
    assert centroid_frame * 160 == pytest.approx(160 * 20 + 200)
    # edges hold the first / last value
    ramp = torch.arange(5.0).view(1, 1, 5)
    held = align_mask_frames(ramp, 9, 1.25)[0, 0]
    torch.testing.assert_close(held[:2], torch.zeros(2))
    torch.testing.assert_close(held[2], torch.tensor(0.75))
    torch.testing.assert_close(held[-3:], torch.full((3,), 4.0))


# ---------------------------------------------------------------------------------------------
# end to end with a prescribed mask


@pytest.mark.parametrize("frontend", [KaldiFbank(), LogMel()], ids=["kaldi", "logmel"])
def test_constant_mask_scales_the_waveform_by_its_square_root(frontend) -> None:
    enhancer = Enhancer(FixedMask(lambda t: torch.full((80, t), 0.25)), frontend)
    wav = noise(1.3, seed=1)
    out = enhancer.enhance_tensor(wav)
    assert out.shape == wav.shape
    torch.testing.assert_close(out, 0.5 * wav, atol=1e-5, rtol=0)  # power gain 0.25 -> amplitude 0.5
    unity = Enhancer(FixedMask(lambda t: torch.ones(80, t)), frontend).enhance_tensor(wav)
    torch.testing.assert_close(unity, wav, atol=1e-5, rtol=0)


def test_mask_on_the_bands_covering_1khz_keeps_1khz_and_attenuates_5khz() -> None:
    frontend = KaldiFbank()
    bin_1k = round(1000 * 512 / SR)  # bin 32 is exactly 1 kHz
    values = torch.where(frontend.fbank[:, bin_1k] > 0, 1.0, 0.01)  # (80,)
    assert int((values == 1).sum()) >= 1
    enhancer = Enhancer(FixedMask(lambda t: values[:, None].expand(80, t)), frontend)
    t = np.arange(SR) / SR
    wav = 0.3 * np.sin(2 * np.pi * 1000 * t) + 0.3 * np.sin(2 * np.pi * 5000 * t)
    out = enhancer.enhance(wav.astype(np.float32), SR)
    inner = slice(2000, -2000)
    keep_1k = tone_amplitude(out[inner], 1000) / 0.3
    keep_5k = tone_amplitude(out[inner], 5000) / 0.3
    assert keep_1k > 0.8
    assert keep_5k == pytest.approx(0.1, abs=0.02)  # sqrt(0.01)


@pytest.mark.parametrize("frontend", [KaldiFbank(), LogMel()], ids=["kaldi", "logmel"])
def test_time_alignment_on_a_signal_where_it_matters(frontend) -> None:
    # A mask that passes mel frames [40, 60) only, on a constant signal: with frequency-flat
    # gains the output is the input times a time-varying gain a(n), whose power centroid must sit
    # on the centres of the passed mel frames. A Kaldi mask applied without the 1.25-frame shift
    # would land 200 samples (12.5 ms) early.
    first, stop = 40, 60

    def window(t: int) -> Tensor:
        m = torch.zeros(80, t)
        m[:, first:stop] = 1.0
        return m

    enhancer = Enhancer(FixedMask(window), frontend)
    wav = torch.full((SR,), 0.5)
    gain = (enhancer.enhance_tensor(wav) / 0.5).double()
    power = gain**2
    centroid = float((power * torch.arange(SR)).sum() / power.sum())
    centre_0 = 200.0 if isinstance(frontend, KaldiFbank) else 0.0
    expected = centre_0 + 160 * (first + stop - 1) / 2
    assert centroid == pytest.approx(expected, abs=10)
    # and the passed region spans the 20 frames (3200 samples), not more
    passed = torch.nonzero(gain > 0.5).flatten()
    assert float(passed[-1] - passed[0]) == pytest.approx(160 * (stop - first), abs=200)


# ---------------------------------------------------------------------------------------------
# chunking


def test_chunk_plan_tiles_the_recording() -> None:
    n = 10 * SR + 77
    chunks = plan_chunks(n, 4 * SR, 2 * SR, align=160)
    assert chunks[0].start == 0 and chunks[-1].stop == n
    assert chunks[0].own_start == 0 and chunks[-1].own_stop == n
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert b.start % 160 == 0 and a.own_stop == b.own_start and a.own_stop % 160 == 0
        assert a.stop - b.start >= 2 * SR  # at least the requested overlap
        assert b.start + b.fade_in // 2 <= b.own_start and a.own_stop + a.fade_out // 2 <= a.stop
    # the output weights sum to one everywhere
    total = torch.zeros(n)
    for c in chunks:
        total[c.start : c.stop] += c.weights()
    torch.testing.assert_close(total, torch.ones(n))
    assert plan_chunks(n, None, SR) == [Chunk(0, n, 0, n)]
    assert plan_chunks(3 * SR, 4 * SR, SR) == [Chunk(0, 3 * SR, 0, 3 * SR)]
    with pytest.raises(ValueError, match="no progress"):
        plan_chunks(n, SR, SR)


@pytest.mark.parametrize("seed", range(40))
def test_chunk_plans_are_even_and_spend_little_on_overlap(seed: int) -> None:
    rng = np.random.default_rng(seed)
    hop = 160
    chunk = int(rng.integers(2 * SR, 40 * SR))
    overlap = int(rng.integers(0, chunk // 2))
    n = int(rng.integers(chunk + 1, 12 * chunk))
    chunks = plan_chunks(n, chunk, overlap, align=hop)
    lengths = [c.stop - c.start for c in chunks]
    assert chunks[0].start == 0 and chunks[-1].stop == n
    assert max(lengths) <= chunk  # memory stays bounded by the requested chunk
    assert max(lengths) - min(lengths) < hop  # shared evenly (the last one takes the remainder)
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert b.start % hop == 0 and a.stop - b.start >= overlap
    # the fewest chunks that can work: one fewer could not cover n with chunks <= chunk - 2 hops
    k = len(chunks)
    assert k == 1 or (k - 1) * (chunk - 2 * hop) - (k - 2) * overlap < n + hop
    # work: the recording plus the overlaps, each at most the requested one plus a few hops
    assert sum(lengths) <= n + (k - 1) * (overlap + 4 * hop)


def test_a_minute_in_half_minute_chunks_costs_about_a_minute() -> None:
    # the old plan (full-length chunks, the last one flush with the end) cost 90 s of work here
    chunks = plan_chunks(60 * SR, 30 * SR, 4 * SR, align=160)
    assert len(chunks) == 3
    assert sum(c.stop - c.start for c in chunks) <= 68.2 * SR


@pytest.mark.parametrize("frontend", [KaldiFbank(), LogMel()], ids=["kaldi", "logmel"])
def test_chunks_own_every_frame_exactly_once(frontend) -> None:
    n = 9 * SR + 333
    enhancer = Enhancer(FrameLocal(), frontend, chunk_seconds=3.0, overlap_seconds=1.0)
    chunks = enhancer.plan(n)
    assert len(chunks) > 2
    owned = sum(
        int(own_frames(c, frontend.num_frames(c.stop - c.start), enhancer.centre, 160).sum()) for c in chunks
    )
    assert owned == frontend.num_frames(n)


@pytest.mark.parametrize("frontend", [KaldiFbank(), LogMel()], ids=["kaldi", "logmel"])
def test_chunked_equals_whole_for_a_frame_local_model(frontend) -> None:
    # With a model that looks at each frame alone, the only thing that could differ between
    # chunked and whole-file processing is the chunking itself (CMN, frame grids, cross-fades):
    # the global-mean CMN makes the features identical, so outputs and masks agree to rounding.
    wav = noise(9.0, seed=2)
    whole = Enhancer(FrameLocal(), frontend, chunk_seconds=None)
    chunked = Enhancer(FrameLocal(), frontend, chunk_seconds=3.0, overlap_seconds=1.0)
    assert len(chunked.plan(len(wav))) > 2
    torch.testing.assert_close(chunked.enhance_tensor(wav), whole.enhance_tensor(wav), atol=2e-6, rtol=0)
    torch.testing.assert_close(chunked.mask_tensor(wav), whole.mask_tensor(wav), atol=2e-6, rtol=0)
    reference = FrameLocal()(frontend(wav[None]))[0]  # the front-end's own CMN over the whole file
    torch.testing.assert_close(whole.mask_tensor(wav), reference, atol=1e-6, rtol=0)


def test_chunked_unet_output_is_close_to_whole_file_output() -> None:
    # The U-Net is not frame-local (instance norm over the whole input, a wide receptive field),
    # so chunks differ from the whole file. Measured on 10 s of noise with 4 s chunks and 2 s of
    # overlap (5 chunks of 3.7 s, starts on G's 8-frame grid): error 55 dB below the signal (53-56
    # dB for chunks of 3.6-5 s; 28 dB when the starts ignore the 8-frame grid). The bound (error
    # >= 40 dB below the signal, max |diff| < 5e-3) leaves a margin of over 10 dB; a broken
    # overlap-add or a misplaced chunk gives errors near 0 dB.
    wav = noise(10.0, seed=3)
    model = tiny_unet(seed=1)
    whole = Enhancer(model, KaldiFbank(), chunk_seconds=None).enhance_tensor(wav)
    chunked = Enhancer(model, KaldiFbank(), chunk_seconds=4.0, overlap_seconds=2.0).enhance_tensor(wav)
    err = chunked - whole
    snr = 10 * torch.log10(whole.pow(2).sum() / err.pow(2).sum())
    assert snr > 40
    assert err.abs().max() < 5e-3


# ---------------------------------------------------------------------------------------------
# the Enhancer API


def test_enhancer_from_checkpoint_any_rate_and_channels(tmp_path: Path) -> None:
    enhancer = Enhancer.from_checkpoint(make_checkpoint(tmp_path / "g.pt"))
    assert isinstance(enhancer.frontend, KaldiFbank)
    assert enhancer.speaker["name"] == "campplus"
    rng = np.random.default_rng(0)
    stereo = (0.1 * rng.standard_normal((44100, 2))).astype(np.float32)  # (N, C), 1 s at 44.1 kHz
    out = enhancer.enhance(stereo, 44100)
    assert out.dtype == np.float32 and out.shape == (16000,)
    # the (C, N) layout is the same recording
    np.testing.assert_allclose(enhancer.enhance(stereo.T, 44100), out, atol=1e-6)
    # int16 PCM is scaled like soundfile does
    pcm = np.round(stereo * 32768).clip(-32768, 32767).astype(np.int16)
    np.testing.assert_allclose(enhancer.enhance(pcm, 44100), out, atol=1e-4)
    mask = enhancer.mask(stereo, 44100)
    assert mask.shape == (80, KaldiFbank().num_frames(16000))
    assert ((mask > 0) & (mask <= 1)).all()
    # the mask is G applied to E's CMN features of the downmixed, resampled waveform
    from gradw.audio.io import resample

    mono = torch.from_numpy(resample(stereo.mean(axis=1), 44100, SR))
    with torch.no_grad():
        expected = enhancer.model(KaldiFbank()(mono[None]))[0].numpy()
    np.testing.assert_allclose(mask, expected, atol=1e-6)


def test_enhancer_handles_very_short_and_rejects_bad_input(tmp_path: Path) -> None:
    enhancer = Enhancer(tiny_unet(), KaldiFbank())
    out = enhancer.enhance(np.full(100, 0.1, dtype=np.float32), SR)  # shorter than one fbank frame
    assert out.shape == (100,) and np.isfinite(out).all()
    with pytest.raises(ValueError, match="empty"):
        enhancer.enhance(np.zeros(0, dtype=np.float32), SR)
    with pytest.raises(ValueError, match="NaN"):
        enhancer.enhance(np.array([0.0, np.nan] * 300, dtype=np.float32), SR)
    with pytest.raises(ValueError, match="chunk_seconds"):
        Enhancer(tiny_unet(), KaldiFbank(), chunk_seconds=1.0, overlap_seconds=2.0)


# ---------------------------------------------------------------------------------------------
# files and the command line


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gradw")
    register_enhance(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["enhance", *argv])
    return args.func(args)


def test_cli_mirrors_the_tree_and_reports_unreadable_inputs(tmp_path: Path, capsys) -> None:
    ckpt = make_checkpoint(tmp_path / "g.pt")
    src = tmp_path / "in"
    (src / "spk1").mkdir(parents=True)
    rng = np.random.default_rng(0)
    sf.write(src / "spk1" / "a.flac", 0.1 * rng.standard_normal((22050, 2)), 22050)  # stereo 22.05 kHz
    sf.write(src / "b.wav", 0.1 * rng.standard_normal(8000), SR)
    (src / "spk1" / "broken.wav").write_bytes(b"RIFF not really a wav file")
    (src / "notes.txt").write_text("not audio, not picked up")
    single = tmp_path / "single.ogg"
    sf.write(single, 0.1 * rng.standard_normal(12000), 48000, format="OGG", subtype="VORBIS")
    out = tmp_path / "out"

    code = run_cli(
        [str(src), str(single), str(tmp_path / "missing.wav"), "-o", str(out), "--checkpoint", str(ckpt)]
    )

    assert code == 1
    err = capsys.readouterr().err
    assert "2 input(s) could not be enhanced" in err
    assert "broken.wav" in err and "missing.wav" in err
    assert "[enhance] 4 file in " in err  # off a terminal, a plain progress line (gradw.progress)
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    assert written == ["b.wav", "single.wav", "spk1", "spk1/a.wav"]  # no broken.wav, no temporary files
    for rel, seconds in (("spk1/a.wav", 1.0), ("b.wav", 0.5), ("single.wav", 0.25)):
        info = sf.info(out / rel)
        assert (info.samplerate, info.channels, info.frames) == (SR, 1, int(seconds * SR))


def test_cli_all_good_exits_zero_and_applies_the_floor(tmp_path: Path) -> None:
    ckpt = make_checkpoint(tmp_path / "g.pt")
    wav = noise(1.0, seed=4).numpy()
    sf.write(tmp_path / "x.wav", wav, SR, subtype="FLOAT")
    code = run_cli(
        [str(tmp_path / "x.wav"), "-o", str(tmp_path / "o"), "--checkpoint", str(ckpt), "--min-gain-db", "-6"]
    )
    assert code == 0
    out, rate = sf.read(tmp_path / "o" / "x.wav", dtype="float32")
    enhancer = Enhancer.from_checkpoint(ckpt, min_gain_db=-6)
    np.testing.assert_allclose(out, enhancer.enhance(wav, SR), atol=2 / 32768)  # 16-bit PCM


def test_temporary_files_left_by_a_killed_run_are_removed_by_the_next(tmp_path: Path) -> None:
    import subprocess
    import sys

    ckpt = make_checkpoint(tmp_path / "g.pt")
    (tmp_path / "in" / "sub").mkdir(parents=True)
    for rel in ("x.wav", "sub/y.wav"):
        sf.write(tmp_path / "in" / rel, noise(0.5, seed=1).numpy(), SR, subtype="FLOAT")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pid = int(dead.stdout)  # a writer that no longer runs
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    stale = [out / f".x.wav.{pid}.{'a' * 32}.tmp", out / "sub" / f".y.wav.{pid}.{'b' * 32}.tmp"]
    live = out / f".x.wav.{os.getpid()}.{'c' * 32}.tmp"  # a writer still running (this one)
    for path in (*stale, live):
        path.write_bytes(b"half")
    assert run_cli([str(tmp_path / "in"), "-o", str(out), "--checkpoint", str(ckpt)]) == 0
    assert not any(p.exists() for p in stale) and live.exists()
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p != live) == [
        "sub",
        "sub/y.wav",
        "x.wav",
    ]


def test_clashing_outputs_are_refused_before_anything_is_written(tmp_path: Path, capsys) -> None:
    ckpt = make_checkpoint(tmp_path / "g.pt")
    (tmp_path / "d1").mkdir()
    (tmp_path / "d2").mkdir()
    for d in ("d1", "d2"):
        sf.write(tmp_path / d / "same.wav", np.zeros(4000), SR)
    code = run_cli(
        [str(tmp_path / "d1"), str(tmp_path / "d2"), "-o", str(tmp_path / "o"), "--checkpoint", str(ckpt)]
    )
    assert code == 2
    assert "would both be written" in capsys.readouterr().err
    assert (
        run_cli([str(tmp_path / "d1"), "-o", str(tmp_path / "o"), "--checkpoint", str(tmp_path / "no.pt")])
        == 2
    )
    assert "checkpoint not found" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    for same_place in ([tmp_path / "d1"], [tmp_path / "d1" / "same.wav"]):
        with pytest.raises(EnhanceError, match="overwrite an input"):
            collect_inputs(same_place, tmp_path / "d1")
    # an output folder inside an input folder: earlier outputs are not inputs again
    (tmp_path / "d1" / "enhanced").mkdir()
    sf.write(tmp_path / "d1" / "enhanced" / "same.wav", np.zeros(4000), SR)
    jobs, missing = collect_inputs([tmp_path / "d1"], tmp_path / "d1" / "enhanced")
    assert jobs == [(tmp_path / "d1" / "same.wav", tmp_path / "d1" / "enhanced" / "same.wav")] and not missing


def test_one_input_file_and_an_audio_output_write_that_file(tmp_path: Path, capsys) -> None:
    ckpt = make_checkpoint(tmp_path / "g.pt")
    rng = np.random.default_rng(3)
    noisy = (0.1 * rng.standard_normal((44100, 2))).astype(np.float32)
    sf.write(tmp_path / "x.flac", noisy, 44100)  # 1 s, stereo, 44.1 kHz
    enhancer = Enhancer.from_checkpoint(ckpt)
    expected = enhancer.enhance(noisy, 44100)

    out = tmp_path / "out.wav"
    assert run_cli([str(tmp_path / "x.flac"), "-o", str(out), "--checkpoint", str(ckpt)]) == 0
    assert out.is_file() and out.read_bytes()[:4] == b"RIFF"  # a file, not a folder out.wav/
    assert f"into {out}" in capsys.readouterr().out
    got, rate = sf.read(out, dtype="float32")
    assert rate == SR and got.shape == expected.shape == (SR,)
    np.testing.assert_allclose(got, expected, atol=2 / 32768)  # 16-bit PCM
    # FLAC by its suffix, parents created; no suffix: a folder, as for several inputs
    nested = tmp_path / "new" / "dir" / "out.FLAC"
    assert run_cli([str(tmp_path / "x.flac"), "-o", str(nested), "--checkpoint", str(ckpt)]) == 0
    assert nested.read_bytes()[:4] == b"fLaC" and sf.info(nested).samplerate == SR
    assert run_cli([str(tmp_path / "x.flac"), "-o", str(tmp_path / "folder"), "--checkpoint", str(ckpt)]) == 0
    assert (tmp_path / "folder" / "x.wav").is_file()
    # an existing folder keeps being a folder, whatever its name
    (tmp_path / "old.wav").mkdir()
    old = tmp_path / "old.wav"
    assert run_cli([str(tmp_path / "x.flac"), "-o", str(old), "--checkpoint", str(ckpt)]) == 0
    assert (tmp_path / "old.wav" / "x.wav").is_file()
    jobs = collect_inputs([tmp_path / "x.flac"], tmp_path / "o.wav")
    assert jobs == ([(tmp_path / "x.flac", tmp_path / "o.wav")], [])
    assert collect_inputs([tmp_path / "nope.wav"], tmp_path / "o.wav") == (
        [],
        [(tmp_path / "nope.wav", "no such file or directory")],
    )


def test_a_file_output_that_is_an_input_or_takes_several_inputs_is_refused(tmp_path: Path, capsys) -> None:
    ckpt = make_checkpoint(tmp_path / "g.pt")
    sf.write(tmp_path / "x.wav", 0.1 * np.random.default_rng(4).standard_normal(8000), SR)
    sf.write(tmp_path / "y.wav", np.zeros(8000), SR)
    (tmp_path / "link.wav").symlink_to(tmp_path / "x.wav")
    before = (tmp_path / "x.wav").read_bytes()
    cases = [
        ([tmp_path / "x.wav"], tmp_path / "x.wav", "would overwrite the input file"),
        ([tmp_path / "x.wav"], tmp_path / "sub" / ".." / "x.wav", "would overwrite the input file"),
        ([tmp_path / "x.wav"], tmp_path / "link.wav", "would overwrite the input file"),
        ([tmp_path / "x.wav", tmp_path / "y.wav"], tmp_path / "out.wav", "but 2 inputs are given"),
        ([tmp_path], tmp_path / "out.wav", "is a folder: give an output folder"),
        ([tmp_path / "x.wav"], tmp_path / "out.mp3", r"cannot write \.mp3 files; use one of \.wav, \.flac"),
    ]
    for inputs, output, message in cases:
        code = run_cli([*map(str, inputs), "-o", str(output), "--checkpoint", str(ckpt)])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("gradw: error: ")
        assert re.search(message, err), err
        with pytest.raises(EnhanceError, match=message):
            collect_inputs(inputs, output)
    assert (tmp_path / "x.wav").read_bytes() == before and (tmp_path / "link.wav").is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.pt", "link.wav", "x.wav", "y.wav"]


def test_blocks_are_the_whole_output_in_order_and_chunks_start_on_g_grid() -> None:
    wav = noise(11.3, seed=4)
    enhancer = Enhancer(tiny_unet(seed=2), KaldiFbank(), chunk_seconds=3.0, overlap_seconds=1.0)
    chunks = enhancer.plan(len(wav))
    assert len(chunks) > 3 and all(c.start % (8 * 160) == 0 for c in chunks)
    blocks = list(enhancer.enhance_blocks(wav))
    assert len(blocks) == len(chunks)
    # each block is final when yielded: it ends where the next chunk starts
    assert [len(b) for b in blocks[:-1]] == [
        b.start - a.start for a, b in zip(chunks, chunks[1:], strict=False)
    ]
    assert sum(len(b) for b in blocks) == len(wav)
    # the same overlap-add done at once, from the chunks' own outputs
    total = torch.zeros(len(wav))
    for chunk, audio, mask in enhancer._chunk_masks(lambda start, stop: wav[start:stop], chunks):
        total[chunk.start : chunk.stop] += chunk.weights() * enhancer.apply_mask(audio, mask)
    torch.testing.assert_close(torch.cat(blocks), total, atol=1e-7, rtol=0)


def test_enhance_file_streams_through_a_spool_and_equals_the_in_memory_path(tmp_path: Path) -> None:
    from gradw.audio.io import read_audio

    rng = np.random.default_rng(5)
    stereo = (0.1 * rng.standard_normal((int(9.3 * 44100), 2))).astype(np.float32)
    source = tmp_path / "in" / "long.flac"
    source.parent.mkdir()
    sf.write(source, stereo, 44100, subtype="PCM_24")
    enhancer = Enhancer(tiny_unet(seed=3), KaldiFbank(), chunk_seconds=3.0, overlap_seconds=1.0)
    assert len(enhancer.plan(int(9.3 * SR))) > 3
    out = tmp_path / "out" / "long.wav"
    enhancer.enhance_file(source, out)
    expected = enhancer.enhance_tensor(torch.from_numpy(read_audio(source))).numpy()
    got = read_audio(out)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, np.clip(expected, -1, 1), atol=1.5 / 32768)  # 16-bit output
    assert sorted(p.name for p in out.parent.iterdir()) == ["long.wav"]  # the spool is gone
    # shorter than one frame: padded in memory, as enhance() does
    sf.write(tmp_path / "in" / "tiny.wav", stereo[:100], 44100)
    enhancer.enhance_file(tmp_path / "in" / "tiny.wav", tmp_path / "out" / "tiny.wav")
    assert read_audio(tmp_path / "out" / "tiny.wav").shape == (round(100 * SR / 44100),)


def test_enhance_file_that_fails_creates_nothing(tmp_path: Path) -> None:
    from gradw.audio.io import AudioError

    bad = (0.1 * np.ones(SR)).astype(np.float32)
    bad[SR // 2] = np.nan
    source = tmp_path / "nan.wav"
    sf.write(source, bad, SR, subtype="FLOAT")
    enhancer = Enhancer(tiny_unet(), KaldiFbank())
    with pytest.raises(AudioError, match=r"nan\.wav: file holds non-finite samples"):
        enhancer.enhance_file(source, tmp_path / "out" / "deep" / "nan.wav")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.wav"]  # no folder, no spool
