"""Differentiable log-mel front-ends (no torchaudio).

Every front-end exposes the mel power grid so that a mask M in (0, 1] applies before the log,
as in the paper's code: features = CMN(log(mel + eps) + log(M + 1e-6)).

Two front-ends are provided:

* :class:`LogMel`: the paper's features (torchaudio ``Spectrogram`` + ``MelScale`` semantics:
  512-point STFT of a 400-sample periodic Hamming window, hop 160, centred with reflect padding,
  power spectrum, 80 HTK-mel triangles over 20-7600 Hz, ``log(mel + 1e-6)``).
* :class:`KaldiFbank`: Kaldi ``compute-fbank-feats`` semantics as used by CAM++ / 3D-Speaker
  (25 ms / 10 ms frames with snipped edges, DC removal, pre-emphasis 0.97, povey window,
  512-point FFT, 80 Kaldi-mel bins over 20 Hz-Nyquist, log floored at float32 eps).

Both are plain ``torch`` modules, differentiable with respect to the waveform, and both return
features as ``(B, F, T)`` with per-utterance mean normalisation over time (CMN).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

MASK_EPS = 1e-6
LOGMEL_EPS = 1e-6
FLOAT32_EPS = float(torch.finfo(torch.float32).eps)

__all__ = [
    "FRONTENDS",
    "FLOAT32_EPS",
    "KaldiFbank",
    "LOGMEL_EPS",
    "LogMel",
    "MASK_EPS",
    "MelFrontend",
    "build_frontend",
    "htk_mel_filterbank",
    "kaldi_mel_filterbank",
]


class MelFrontend(nn.Module):
    """Base class. Subclasses implement :meth:`mel_power`, :meth:`log_mel` and :meth:`num_frames`.

    Attributes:
        sample_rate: expected input rate (16 kHz).
        n_mels: F, the number of mel bands.
        hop_length: samples between frames.
        min_samples: the shortest waveform (in samples) that yields at least one frame.
    """

    sample_rate: int = 16000
    n_mels: int
    hop_length: int
    min_samples: int = 1

    def mel_power(self, wav: Tensor) -> Tensor:
        """(B, N) waveform -> (B, F, T) mel power (non-negative)."""
        raise NotImplementedError

    def log_mel(self, mel_power: Tensor) -> Tensor:
        """(B, F, T) mel power -> (B, F, T) log mel (before mean normalisation)."""
        raise NotImplementedError

    def num_frames(self, num_samples: int) -> int:
        """Frames T produced from N samples."""
        raise NotImplementedError

    def log_features(self, mel_power: Tensor, mask: Tensor | None = None) -> Tensor:
        """(B, F, T) mel power [, (B, F, T) mask] -> (B, F, T) CMN log-mel features.

        The mask multiplies the mel power, i.e. ``log(M + 1e-6)`` is added in the log domain
        before the mean over time is removed. A mask that broadcasts to (B, F, T) (for example
        (B, 1, T)) is accepted.

        Raises:
            ValueError: if the mask does not broadcast to the shape of ``mel_power``.
        """
        feats = self.log_mel(mel_power)
        if mask is not None:
            try:
                shape = torch.broadcast_shapes(mask.shape, feats.shape)
            except RuntimeError:
                shape = None
            if shape != feats.shape:
                raise ValueError(
                    f"mask of shape {tuple(mask.shape)} does not match features of shape "
                    f"{tuple(feats.shape)} (expected (B, F, T))"
                )
            feats = feats + (mask + MASK_EPS).log()
        return feats - feats.mean(dim=-1, keepdim=True)

    def forward(self, wav: Tensor, mask: Tensor | None = None) -> Tensor:
        """(B, N) waveform -> (B, F, T) features."""
        return self.log_features(self.mel_power(wav), mask)

    def _check_wav(self, wav: Tensor) -> None:
        """Raise ValueError unless ``wav`` is a finite floating (B, N) tensor with N >= min_samples."""
        if not isinstance(wav, Tensor):
            raise ValueError(f"expected a torch.Tensor waveform of shape (B, N), got {type(wav).__name__}")
        if wav.dim() != 2:
            raise ValueError(
                f"expected a waveform of shape (B, N), got shape {tuple(wav.shape)}; "
                "use wav[None] for a single utterance"
            )
        if not wav.is_floating_point():
            raise ValueError(f"expected a floating-point waveform, got dtype {wav.dtype}")
        if wav.shape[-1] < self.min_samples:
            raise ValueError(
                f"waveform of shape {tuple(wav.shape)} is too short for {type(self).__name__}: "
                f"need at least {self.min_samples} samples for one frame"
            )
        if not bool(torch.isfinite(wav).all()):
            bad = (~torch.isfinite(wav)).flatten(1).any(dim=1).nonzero().flatten().tolist()
            raise ValueError(f"waveform contains NaN or infinite samples (batch items {bad[:5]})")


def _hz_to_htk_mel(freq: Tensor) -> Tensor:
    return 2595.0 * torch.log10(1.0 + freq / 700.0)


def _htk_mel_to_hz(mel: Tensor) -> Tensor:
    return 700.0 * (torch.pow(10.0, mel / 2595.0) - 1.0)


def htk_mel_filterbank(n_freqs: int, n_mels: int, sample_rate: int, f_min: float, f_max: float) -> Tensor:
    """HTK-mel triangular filterbank with torchaudio ``melscale_fbanks`` semantics (norm=None).

    Triangle edges are equally spaced on the HTK mel scale ``2595 log10(1 + f / 700)`` between
    ``f_min`` and ``f_max``; the weights are evaluated on the linear frequencies of the
    ``n_freqs`` STFT bins (0 .. sample_rate / 2).

    Returns:
        (n_mels, n_freqs) float64 weights.
    """
    all_freqs = torch.linspace(0.0, sample_rate // 2, n_freqs, dtype=torch.float64)
    m_pts = torch.linspace(
        float(_hz_to_htk_mel(torch.tensor(f_min, dtype=torch.float64))),
        float(_hz_to_htk_mel(torch.tensor(f_max, dtype=torch.float64))),
        n_mels + 2,
        dtype=torch.float64,
    )
    f_pts = _htk_mel_to_hz(m_pts)
    left, centre, right = f_pts[:-2, None], f_pts[1:-1, None], f_pts[2:, None]
    up = (all_freqs[None, :] - left) / (centre - left)
    down = (right - all_freqs[None, :]) / (right - centre)
    return torch.clamp(torch.minimum(up, down), min=0.0)


def kaldi_mel_filterbank(n_fft: int, n_mels: int, sample_rate: int, f_min: float, f_max: float) -> Tensor:
    """Kaldi mel filterbank (``MelBanks`` without VTLN).

    Kaldi's mel scale is ``1127 ln(1 + f / 700)``. Bin edges are equally spaced on it between
    ``f_min`` and ``f_max``; each triangle is evaluated at the mel value of the FFT bin centres
    ``i * sample_rate / n_fft`` for ``i < n_fft / 2`` (the Nyquist bin gets weight 0, as in Kaldi).

    Returns:
        (n_mels, n_fft // 2 + 1) float64 weights.
    """
    num_fft_bins = n_fft // 2
    mel_low = 1127.0 * math.log1p(f_min / 700.0)
    mel_high = 1127.0 * math.log1p(f_max / 700.0)
    delta = (mel_high - mel_low) / (n_mels + 1)
    bin_mel = 1127.0 * torch.log1p(
        torch.arange(num_fft_bins, dtype=torch.float64) * (sample_rate / n_fft) / 700.0
    )
    left = mel_low + delta * torch.arange(n_mels, dtype=torch.float64)[:, None]
    centre = left + delta
    right = centre + delta
    up = (bin_mel[None, :] - left) / delta
    down = (right - bin_mel[None, :]) / delta
    weights = torch.zeros(n_mels, num_fft_bins + 1, dtype=torch.float64)
    weights[:, :num_fft_bins] = torch.clamp(torch.minimum(up, down), min=0.0)
    return weights


def _power(spec: Tensor) -> Tensor:
    """|X|^2 of a complex tensor, written so that the gradient is finite at X = 0."""
    return torch.view_as_real(spec).pow(2).sum(-1)


class LogMel(MelFrontend):
    """The paper's log-mel front-end (torchaudio ``Spectrogram`` + ``MelScale`` semantics).

    ``wav`` (B, N) -> STFT (n_fft 512, periodic Hamming window of ``win_length`` centred in the
    FFT frame, hop 160, ``center=True`` with reflect padding) -> power (B, 257, T) -> 80 HTK-mel
    bands (B, 80, T) -> ``log(mel + 1e-6)`` -> CMN. T = 1 + N // hop_length (80000 samples ->
    501 frames). No pre-emphasis, no dither.

    Args:
        sample_rate: input rate in Hz.
        n_fft: FFT size (n_fft // 2 + 1 frequency bins).
        win_length: Hamming window length in samples (<= n_fft).
        hop_length: frame shift in samples.
        n_mels: number of mel bands F.
        f_min: lowest filter edge in Hz.
        f_max: highest filter edge in Hz (<= sample_rate / 2).
        log_eps: added to the mel power before the log.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 512,
        win_length: int = 400,
        hop_length: int = 160,
        n_mels: int = 80,
        f_min: float = 20.0,
        f_max: float = 7600.0,
        log_eps: float = LOGMEL_EPS,
    ) -> None:
        super().__init__()
        if not 0 < win_length <= n_fft:
            raise ValueError(f"need 0 < win_length <= n_fft, got win_length={win_length}, n_fft={n_fft}")
        if hop_length <= 0 or n_mels <= 0:
            raise ValueError(f"hop_length and n_mels must be positive, got {hop_length}, {n_mels}")
        if not 0.0 <= f_min < f_max <= sample_rate / 2:
            raise ValueError(
                f"need 0 <= f_min < f_max <= sample_rate / 2, got f_min={f_min}, f_max={f_max}, "
                f"sample_rate={sample_rate}"
            )
        self.sample_rate = int(sample_rate)
        self.n_fft = int(n_fft)
        self.win_length = int(win_length)
        self.hop_length = int(hop_length)
        self.n_mels = int(n_mels)
        self.f_min = float(f_min)
        self.f_max = float(f_max)
        self.log_eps = float(log_eps)
        # reflect padding of n_fft // 2 on each side needs more than n_fft // 2 samples
        self.min_samples = self.n_fft // 2 + 1
        self.register_buffer(
            "window",
            torch.hamming_window(self.win_length, periodic=True, dtype=torch.float32),
            persistent=False,
        )
        fbank = htk_mel_filterbank(self.n_fft // 2 + 1, self.n_mels, self.sample_rate, self.f_min, self.f_max)
        self.register_buffer("fbank", fbank.float(), persistent=False)

    def extra_repr(self) -> str:
        return (
            f"sample_rate={self.sample_rate}, n_fft={self.n_fft}, win_length={self.win_length}, "
            f"hop_length={self.hop_length}, n_mels={self.n_mels}, f_min={self.f_min}, f_max={self.f_max}"
        )

    def num_frames(self, num_samples: int) -> int:
        """T = 1 + N // hop_length (centred frames)."""
        if num_samples < self.min_samples:
            return 0
        return 1 + num_samples // self.hop_length

    def power_spectrum(self, wav: Tensor) -> Tensor:
        """(B, N) waveform -> (B, n_fft // 2 + 1, T) power spectrum."""
        self._check_wav(wav)
        spec = torch.stft(
            wav,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window.to(wav.dtype),
            center=True,
            pad_mode="reflect",
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        return _power(spec)

    def mel_power(self, wav: Tensor) -> Tensor:
        """(B, N) waveform -> (B, n_mels, T) mel power."""
        power = self.power_spectrum(wav)
        return torch.matmul(self.fbank.to(power.dtype), power)

    def log_mel(self, mel_power: Tensor) -> Tensor:
        """(B, F, T) mel power -> (B, F, T) ``log(mel + 1e-6)``."""
        return (mel_power + self.log_eps).log()


class KaldiFbank(MelFrontend):
    """Kaldi fbank front-end, as expected by CAM++ (3D-Speaker), fed a waveform in [-1, 1].

    Per frame (``frame_length`` samples every ``frame_shift``, ``snip_edges=True``, so
    T = 1 + (N - frame_length) // frame_shift and N < frame_length is an error): remove the DC
    offset, pre-emphasise (``x[i] -= 0.97 x[i-1]``, ``x[0] -= 0.97 x[0]``), apply the povey window
    ``(0.5 - 0.5 cos(2 pi n / (L - 1)))^0.85``, zero-pad to ``n_fft``, take the power spectrum and
    apply Kaldi's mel bank (80 bins, 20 Hz to Nyquist). :meth:`log_mel` is ``log(max(mel, eps))``
    with eps the float32 machine epsilon. No dither, no energy term.

    Args:
        sample_rate: input rate in Hz.
        frame_length: window length in samples (25 ms).
        frame_shift: frame shift in samples (10 ms).
        n_fft: padded FFT size (Kaldi rounds the window up to a power of two: 512).
        n_mels: number of mel bins F.
        f_min: low edge of the first bin in Hz.
        f_max: high edge of the last bin in Hz; None means Nyquist (Kaldi ``high_freq=0``).
        preemph: pre-emphasis coefficient (0 disables it).
        remove_dc: subtract the per-frame mean.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        frame_length: int = 400,
        frame_shift: int = 160,
        n_fft: int = 512,
        n_mels: int = 80,
        f_min: float = 20.0,
        f_max: float | None = None,
        preemph: float = 0.97,
        remove_dc: bool = True,
    ) -> None:
        super().__init__()
        if f_max is None:
            f_max = sample_rate / 2
        if not 1 < frame_length <= n_fft:
            raise ValueError(
                f"need 1 < frame_length <= n_fft, got frame_length={frame_length}, n_fft={n_fft}"
            )
        if frame_shift <= 0 or n_mels <= 0:
            raise ValueError(f"frame_shift and n_mels must be positive, got {frame_shift}, {n_mels}")
        if not 0.0 <= f_min < f_max <= sample_rate / 2:
            raise ValueError(
                f"need 0 <= f_min < f_max <= sample_rate / 2, got f_min={f_min}, f_max={f_max}, "
                f"sample_rate={sample_rate}"
            )
        self.sample_rate = int(sample_rate)
        self.frame_length = int(frame_length)
        self.hop_length = int(frame_shift)
        self.n_fft = int(n_fft)
        self.n_mels = int(n_mels)
        self.f_min = float(f_min)
        self.f_max = float(f_max)
        self.preemph = float(preemph)
        self.remove_dc = bool(remove_dc)
        self.min_samples = self.frame_length
        n = torch.arange(self.frame_length, dtype=torch.float64)
        povey = (0.5 - 0.5 * torch.cos(2.0 * math.pi * n / (self.frame_length - 1))).pow(0.85)
        self.register_buffer("window", povey.float(), persistent=False)
        fbank = kaldi_mel_filterbank(self.n_fft, self.n_mels, self.sample_rate, self.f_min, self.f_max)
        self.register_buffer("fbank", fbank.float(), persistent=False)

    @property
    def frame_shift(self) -> int:
        """Samples between frames (same as :attr:`hop_length`)."""
        return self.hop_length

    def extra_repr(self) -> str:
        return (
            f"sample_rate={self.sample_rate}, frame_length={self.frame_length}, "
            f"frame_shift={self.hop_length}, n_fft={self.n_fft}, n_mels={self.n_mels}, "
            f"f_min={self.f_min}, f_max={self.f_max}, preemph={self.preemph}, remove_dc={self.remove_dc}"
        )

    def num_frames(self, num_samples: int) -> int:
        """T = 1 + (N - frame_length) // frame_shift, or 0 when N < frame_length (snip_edges)."""
        if num_samples < self.frame_length:
            return 0
        return 1 + (num_samples - self.frame_length) // self.hop_length

    def power_spectrum(self, wav: Tensor) -> Tensor:
        """(B, N) waveform -> (B, n_fft // 2 + 1, T) power spectrum of the processed frames."""
        self._check_wav(wav)
        frames = wav.unfold(-1, self.frame_length, self.hop_length)  # (B, T, L)
        if self.remove_dc:
            frames = frames - frames.mean(dim=-1, keepdim=True)
        if self.preemph != 0.0:
            previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
            frames = frames - self.preemph * previous
        frames = frames * self.window.to(frames.dtype)
        spec = torch.fft.rfft(frames, n=self.n_fft, dim=-1)  # (B, T, n_fft // 2 + 1)
        return _power(spec).transpose(1, 2)

    def mel_power(self, wav: Tensor) -> Tensor:
        """(B, N) waveform -> (B, n_mels, T) mel power."""
        power = self.power_spectrum(wav)
        return torch.matmul(self.fbank.to(power.dtype), power)

    def log_mel(self, mel_power: Tensor) -> Tensor:
        """(B, F, T) mel power -> (B, F, T) ``log(max(mel, float32 eps))``."""
        return mel_power.clamp(min=FLOAT32_EPS).log()


FRONTENDS: dict[str, type[MelFrontend]] = {"logmel": LogMel, "kaldi-fbank": KaldiFbank}


def frontend_name(frontend: MelFrontend) -> str:
    """The registry name of a front-end instance (the inverse of :func:`build_frontend`)."""
    for name, cls in FRONTENDS.items():
        if type(frontend) is cls:
            return name
    raise ValueError(f"front-end {type(frontend).__name__} is not registered in FRONTENDS")


def build_frontend(name: str, **kwargs: object) -> MelFrontend:
    """Build a front-end by name: ``"logmel"`` (:class:`LogMel`) or ``"kaldi-fbank"`` (:class:`KaldiFbank`).

    Keyword arguments go to the constructor.

    Raises:
        ValueError: for an unknown name (the message lists the valid names).
    """
    try:
        cls = FRONTENDS[name]
    except KeyError:
        valid = ", ".join(repr(k) for k in FRONTENDS)
        raise ValueError(f"unknown front-end {name!r}; valid names: {valid}") from None
    return cls(**kwargs)  # type: ignore[arg-type]
