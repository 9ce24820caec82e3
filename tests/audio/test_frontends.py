"""Tests for the differentiable front-ends against independent references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import torch

from gradw.audio.frontends import (
    FLOAT32_EPS,
    KaldiFbank,
    LogMel,
    MelFrontend,
    build_frontend,
)

SR = 16000


def speech_like(seconds: float, seed: int) -> np.ndarray:
    """A voiced, formant-filtered harmonic source with a gliding f0, syllable envelope and noise."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    f0 = 120.0 + 40.0 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6)) + 15.0 * t
    phase = 2 * np.pi * np.cumsum(f0) / SR
    source = np.zeros(n)
    for k in range(1, 40):
        audible = (k * f0) < 0.45 * SR
        source += audible * np.sin(k * phase) / k
    out = np.zeros(n)
    for formant, bandwidth in ((rng.uniform(500, 800), 80), (rng.uniform(1100, 1800), 120), (2600, 200)):
        r = np.exp(-np.pi * bandwidth / SR)
        theta = 2 * np.pi * formant / SR
        out += scipy.signal.lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], source)
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 3.0 * t + rng.uniform(0, 6))
    out = out * envelope
    out = 0.5 * out / np.abs(out).max()
    out += 3e-3 * rng.standard_normal(n)
    return out.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# KaldiFbank vs kaldi-native-fbank


def knf_fbank(wav: np.ndarray) -> np.ndarray:
    """(N,) waveform in [-1, 1] -> (80, T) CMN log fbank from kaldi-native-fbank."""
    knf = pytest.importorskip("kaldi_native_fbank")
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = SR
    opts.frame_opts.dither = 0.0
    opts.frame_opts.snip_edges = True
    opts.frame_opts.window_type = "povey"
    opts.frame_opts.preemph_coeff = 0.97
    opts.frame_opts.remove_dc_offset = True
    opts.mel_opts.num_bins = 80
    opts.mel_opts.low_freq = 20.0
    opts.mel_opts.high_freq = 0.0
    opts.use_energy = False
    opts.use_log_fbank = True
    opts.use_power = True
    fbank = knf.OnlineFbank(opts)
    fbank.accept_waveform(SR, wav.tolist())
    fbank.input_finished()
    feats = np.stack([fbank.get_frame(i) for i in range(fbank.num_frames_ready)]).T
    return feats - feats.mean(axis=1, keepdims=True)


@pytest.mark.parametrize(("seconds", "seed"), [(1.0, 1), (2.37, 2), (3.0, 3)])
def test_kaldi_fbank_matches_kaldi_native_fbank(seconds: float, seed: int) -> None:
    wav = speech_like(seconds, seed)
    ref = knf_fbank(wav)
    ours = KaldiFbank()(torch.from_numpy(wav)[None])[0].numpy()
    assert ours.shape == ref.shape == (80, 1 + (len(wav) - 400) // 160)
    assert np.abs(ours - ref).max() <= 1e-3


def test_kaldi_mel_bank_matches_kaldi_native_fbank() -> None:
    knf = pytest.importorskip("kaldi_native_fbank")
    mel_opts = knf.MelBanksOptions(num_bins=80, low_freq=20.0, high_freq=0.0)
    frame_opts = knf.FrameExtractionOptions()
    frame_opts.samp_freq = SR
    ref = np.asarray(knf.MelBanks(mel_opts, frame_opts).get_matrix())
    ours = KaldiFbank().fbank.numpy()
    assert ours.shape == (80, 257)
    np.testing.assert_allclose(ours[:, : ref.shape[1]], ref, atol=5e-5)
    assert np.all(ours[:, 256] == 0.0)  # Kaldi never uses the Nyquist bin


def test_kaldi_fbank_log_floor_is_float32_eps() -> None:
    fe = KaldiFbank()
    mel = torch.tensor([[[0.0, 1e-12, 1.0]]])
    np.testing.assert_allclose(fe.log_mel(mel).numpy(), [[[np.log(FLOAT32_EPS)] * 2 + [0.0]]], rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# LogMel vs a numpy/scipy reference (torchaudio Spectrogram + MelScale semantics)


def numpy_logmel(wav: np.ndarray) -> np.ndarray:
    """(N,) -> (80, T) log(mel + 1e-6) computed in float64 with numpy/scipy only."""
    n_fft, win, hop = 512, 400, 160
    window = np.zeros(n_fft)
    left = (n_fft - win) // 2
    window[left : left + win] = scipy.signal.get_window("hamming", win, fftbins=True)
    padded = np.pad(wav.astype(np.float64), n_fft // 2, mode="reflect")
    n_frames = 1 + (len(padded) - n_fft) // hop
    frames = np.stack([padded[t * hop : t * hop + n_fft] for t in range(n_frames)])
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2  # (T, 257)

    freqs = np.arange(n_fft // 2 + 1) * SR / n_fft

    def to_mel(f: np.ndarray | float) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def from_mel(m: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    edges = from_mel(np.linspace(to_mel(20.0), to_mel(7600.0), 82))
    bank = np.zeros((80, len(freqs)))
    for m in range(80):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        rising = (freqs >= lo) & (freqs <= mid)
        falling = (freqs > mid) & (freqs < hi)
        bank[m, rising] = (freqs[rising] - lo) / (mid - lo)
        bank[m, falling] = (hi - freqs[falling]) / (hi - mid)
    return np.log(bank @ power.T + 1e-6)


def test_logmel_matches_numpy_reference() -> None:
    wav = speech_like(1.5, 7)
    fe = LogMel()
    x = torch.from_numpy(wav)[None]
    ref = numpy_logmel(wav)
    log_mel = fe.log_mel(fe.mel_power(x))[0].numpy()
    assert log_mel.shape == ref.shape == (80, 1 + len(wav) // 160)
    np.testing.assert_allclose(log_mel, ref, rtol=1e-4, atol=1e-4)
    feats = fe(x)[0].numpy()
    np.testing.assert_allclose(feats, ref - ref.mean(axis=1, keepdims=True), rtol=1e-4, atol=2e-4)
    np.testing.assert_allclose(feats.mean(axis=1), 0.0, atol=1e-5)


def test_logmel_five_seconds_gives_501_frames() -> None:
    fe = LogMel()
    wav = torch.randn(2, 80000) * 0.1
    assert fe(wav).shape == (2, 80, 501)
    assert fe.num_frames(80000) == 501
    assert fe.hop_length == 160 and fe.n_mels == 80


def test_batch_equals_single_utterances() -> None:
    a, b = speech_like(1.0, 11), speech_like(1.0, 12)
    batch = torch.from_numpy(np.stack([a, b]))
    for fe in (LogMel(), KaldiFbank()):
        both = fe(batch)
        torch.testing.assert_close(both[0], fe(batch[:1])[0], rtol=0, atol=1e-5)
        torch.testing.assert_close(both[1], fe(batch[1:])[0], rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# masks and gradients

FRONTENDS = [LogMel, KaldiFbank]


@pytest.mark.parametrize("cls", FRONTENDS)
def test_mask_of_ones_and_constant_mask_leave_features_unchanged(cls: type[MelFrontend]) -> None:
    fe = cls()
    wav = torch.from_numpy(speech_like(1.0, 21))[None]
    mel = fe.mel_power(wav)
    plain = fe.log_features(mel)
    torch.testing.assert_close(fe.log_features(mel, torch.ones_like(mel)), plain, rtol=0, atol=1e-5)
    torch.testing.assert_close(fe(wav, torch.full_like(mel, 0.5)), plain, rtol=0, atol=1e-5)


@pytest.mark.parametrize("cls", FRONTENDS)
def test_mask_multiplies_mel_power_before_log_and_cmn(cls: type[MelFrontend]) -> None:
    fe = cls()
    wav = torch.from_numpy(speech_like(1.0, 22))[None]
    mel = fe.mel_power(wav)
    mask = torch.ones_like(mel)
    half = mel.shape[-1] // 2
    mask[..., :half] = 0.5
    log_mel = fe.log_mel(mel)
    shifted = log_mel + np.log(0.5 + 1e-6) * (torch.arange(mel.shape[-1]) < half)
    expected = shifted - shifted.mean(dim=-1, keepdim=True)
    torch.testing.assert_close(fe.log_features(mel, mask), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("cls", FRONTENDS)
def test_gradients_reach_waveform_and_mask(cls: type[MelFrontend]) -> None:
    fe = cls()
    wav = torch.from_numpy(speech_like(0.5, 23))[None].requires_grad_(True)
    n_frames = fe.num_frames(wav.shape[-1])
    mask = torch.full((1, 80, n_frames), 0.7, requires_grad=True)
    weights = torch.randn(1, 80, n_frames, generator=torch.Generator().manual_seed(0))
    loss = (fe(wav, mask) * weights).sum()
    loss.backward()
    for grad in (wav.grad, mask.grad):
        assert grad is not None
        assert torch.isfinite(grad).all()
        assert grad.abs().max() > 0
    # the mask gradient is d loss / d log(mask) / (mask + eps): weights minus their time mean
    centred = weights - weights.mean(dim=-1, keepdim=True)
    torch.testing.assert_close(mask.grad, centred / (0.7 + 1e-6), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cls", FRONTENDS)
def test_gradient_is_finite_on_silence(cls: type[MelFrontend]) -> None:
    fe = cls()
    wav = torch.zeros(1, 4000, requires_grad=True)
    fe(wav).sum().backward()
    assert torch.isfinite(wav.grad).all()


@pytest.mark.parametrize("cls", FRONTENDS)
@pytest.mark.parametrize("n", [400, 401, 559, 560, 561, 16000, 23999])
def test_num_frames_matches_output(cls: type[MelFrontend], n: int) -> None:
    fe = cls()
    assert fe.mel_power(torch.zeros(1, n)).shape == (1, 80, fe.num_frames(n))


def test_num_frames_formulas() -> None:
    assert KaldiFbank().num_frames(399) == 0
    assert KaldiFbank().num_frames(560) == 2
    assert LogMel().num_frames(16000) == 101


# ---------------------------------------------------------------------------------------------
# input validation and the factory


@pytest.mark.parametrize("cls", FRONTENDS)
def test_rejects_bad_shapes(cls: type[MelFrontend]) -> None:
    fe = cls()
    with pytest.raises(ValueError, match=r"\(1000,\)"):
        fe(torch.zeros(1000))
    with pytest.raises(ValueError, match=r"\(1, 1, 1000\)"):
        fe(torch.zeros(1, 1, 1000))
    with pytest.raises(ValueError, match="too short"):
        fe(torch.zeros(1, fe.min_samples - 1))
    with pytest.raises(ValueError, match="dtype"):
        fe(torch.zeros(1, 1000, dtype=torch.int16))
    mel = fe.mel_power(torch.zeros(1, 1000))
    with pytest.raises(ValueError, match="mask"):
        fe.log_features(mel, torch.ones(1, 80, mel.shape[-1] + 1))


def test_kaldi_too_short_names_the_minimum() -> None:
    with pytest.raises(ValueError, match="400"):
        KaldiFbank()(torch.zeros(2, 399))


def test_float64_input_gives_float64_features() -> None:
    wav = torch.from_numpy(speech_like(0.5, 31))[None]
    for fe in (LogMel(), KaldiFbank()):
        out64 = fe(wav.double())
        assert out64.dtype == torch.float64
        torch.testing.assert_close(out64.float(), fe(wav), rtol=0, atol=1e-3)


def test_build_frontend() -> None:
    assert isinstance(build_frontend("logmel"), LogMel)
    fe = build_frontend("kaldi-fbank", n_mels=40)
    assert isinstance(fe, KaldiFbank) and fe.n_mels == 40
    assert fe.mel_power(torch.zeros(1, 800)).shape == (1, 40, 3)
    with pytest.raises(ValueError, match="'logmel'.*'kaldi-fbank'"):
        build_frontend("mfcc")


@pytest.mark.parametrize("name", ["logmel", "kaldi-fbank"])
def test_non_finite_waveforms_are_refused_not_turned_into_nan_features(name):
    frontend = build_frontend(name)
    wav = torch.zeros(3, 16000)
    wav[1, 100] = float("nan")
    wav[2, 5] = float("inf")
    with pytest.raises(ValueError, match=r"NaN or infinite samples \(batch items \[1, 2\]\)"):
        frontend(wav)
    assert torch.isfinite(frontend(torch.zeros(1, 16000))).all()  # digital silence is fine
