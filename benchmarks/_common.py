"""Helpers shared by the benchmark scripts (run by hand; not part of the tests).

One place for: the machine description printed with every table, timers, peak memory of this
process or of a child, the dense-matmul reference rate, Markdown tables, the synthetic
speech-like test signal, and the preset models (E and G as ``src/gradw/configs/*.yaml`` describe them,
with random weights where the preset's weights are not shipped).

The scripts import this module as ``_common`` (Python puts the script's own folder on
``sys.path``), so run them as ``python benchmarks/NAME.py``.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from scipy import signal
from torch.utils.flop_counter import FlopCounterMode

SR = 16000
RESULT_PREFIX = "RESULT "


# ---------------------------------------------------------------------------------------------
# the machine


def cpu_model() -> str:
    """The CPU model name (``lscpu``'s "Model name"), or the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> tuple[float, float]:
    """(total, available) memory in GiB from /proc/meminfo ((nan, nan) elsewhere)."""
    values: dict[str, float] = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, rest = line.split(":", 1)
            values[key] = float(rest.split()[0]) / 2**20  # kB -> GiB
    except (OSError, ValueError):
        return float("nan"), float("nan")
    return values.get("MemTotal", float("nan")), values.get("MemAvailable", float("nan"))


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as ``uptime`` prints them."""
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def machine_summary() -> str:
    """One Markdown-friendly line: CPU, cores, memory, Python, torch, threads, load average."""
    total, available = memory_gib()
    return (
        f"{cpu_model()}, {os.cpu_count()} cores, {total:.1f} GiB memory ({available:.1f} GiB available), "
        f"Python {platform.python_version()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} intra-op thread(s); load average {load_average()}"
    )


def set_threads(threads: int) -> None:
    """Use ``threads`` torch intra-op threads (0: leave torch's default)."""
    if threads > 0:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------
# time and memory


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB (``ru_maxrss``, KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class Stopwatch:
    """Accumulated wall time per named section.

    ``with watch("name"): ...`` times a block; ``watch.wrap("name", fn)`` returns ``fn`` timed on
    every call (to wrap a model's method or a module-level function without changing it);
    ``start``/``stop``/``switch`` time sections whose ends are not in one block (``switch`` ends
    the innermost section and starts another in its place, e.g. from an autograd hook). Sections
    may nest; each keeps its own total, and :attr:`current` names the innermost open one.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._open: list[tuple[str, float]] = []

    @property
    def current(self) -> str | None:
        """The innermost open section, or None."""
        return self._open[-1][0] if self._open else None

    def add(self, name: str, seconds: float) -> None:
        """Add ``seconds`` to section ``name``."""
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        self.calls[name] = self.calls.get(name, 0) + 1

    def start(self, name: str) -> None:
        """Open section ``name``."""
        self._open.append((name, time.perf_counter()))

    def stop(self) -> None:
        """Close the innermost open section."""
        name, started = self._open.pop()
        self.add(name, time.perf_counter() - started)

    def switch(self, name: str) -> None:
        """Close the innermost open section and open ``name`` in its place."""
        self.stop()
        self.start(name)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self.start(name)
        try:
            yield
        finally:
            self.stop()

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` with every call timed into section ``name``."""

        def timed(*args: Any, **kwargs: Any) -> Any:
            with self(name):
                return fn(*args, **kwargs)

        return timed

    def reset(self) -> None:
        """Forget every section (open sections stay open)."""
        self.seconds.clear()
        self.calls.clear()

    def get(self, name: str) -> float:
        """Total seconds of ``name`` (0 if never timed)."""
        return self.seconds.get(name, 0.0)


class _NoModuleTracking:
    parents = frozenset({"Global"})

    def __enter__(self) -> _NoModuleTracking:
        return self

    def __exit__(self, *args: object) -> None:
        return None


class SectionFlopCounter(FlopCounterMode):
    """``FlopCounterMode`` that credits FLOPs to a :class:`Stopwatch`'s innermost open section.

    The stock counter attributes FLOPs to modules with backward hooks on module inputs, which
    makes ``torch.autograd.grad`` fail when a module's input is the leaf the gradient is taken
    at (Grad-W's logit gradient on ResNet34's layer4 tap). This one tracks no modules; the FLOP
    formulas are torch's own. ``by_section`` maps a section name (``"other"`` outside any) to
    FLOPs; ``get_total_flops()`` works as usual.
    """

    def __init__(self, watch: Stopwatch) -> None:
        super().__init__(display=False)
        self.mod_tracker = _NoModuleTracking()  # type: ignore[assignment]
        self.watch = watch
        self.by_section: dict[str, int] = {}

    def _count_flops(self, func_packet: Any, out: Any, args: Any, kwargs: Any) -> Any:
        formula = self.flop_registry.get(func_packet)
        if formula is not None:
            flops = int(formula(*args, **kwargs, out_val=out))
            self.flop_counts["Global"][func_packet] += flops
            section = self.watch.current or "other"
            self.by_section[section] = self.by_section.get(section, 0) + flops
        return out


def time_calls(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> list[float]:
    """Wall times (s) of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def matmul_rate(n: int = 2048, repeats: int = 5) -> float:
    """Best dense float32 ``(n, n) @ (n, n)`` rate in FLOP/s (2 n^3 FLOPs per product)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen)
    b = torch.randn(n, n, generator=gen)
    out = torch.empty(n, n)
    best = min(time_calls(lambda: torch.mm(a, b, out=out), repeats, warmup=1))
    return 2.0 * n**3 / best


@dataclass
class ChildRun:
    """A finished child process: exit status, wall time, peak memory and its output."""

    returncode: int
    wall_s: float
    max_rss_mib: float
    stdout: str
    stderr: str
    result: dict[str, Any] | None = field(default=None)


# Forks and execs sys.argv[2:], waits for it and writes "exit-code max-rss-KiB" to sys.argv[1].
_LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as handle:
    handle.write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}")
"""


def run_child(argv: Sequence[str]) -> ChildRun:
    """Run ``argv`` to completion and measure its wall time and its own peak resident memory.

    The command is started by a small launcher process that forks it and reads its
    ``ru_maxrss`` with ``os.wait4``. Linux carries a process's peak RSS across ``exec``, and a
    child forked (or vforked) straight from this process would start with this process's
    memory counted (a benchmark driver holding models and audio would inflate the figure by
    its own size); the launcher is small, so the figure is the command's own. A line
    ``RESULT {json}`` on the command's stdout (see :func:`emit_result`) is parsed into
    ``result``.
    """
    with (
        tempfile.TemporaryFile("w+") as out,
        tempfile.TemporaryFile("w+") as err,
        tempfile.TemporaryDirectory() as tmp,
    ):
        report = Path(tmp) / "rusage"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-S", "-c", _LAUNCHER, str(report), *argv], stdout=out, stderr=err)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
        returncode, maxrss_kib = (int(v) for v in report.read_text().split())
    result = None
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX) :])
    return ChildRun(returncode, wall, maxrss_kib / 1024.0, stdout, stderr, result)


def emit_result(result: dict[str, Any]) -> None:
    """Print ``result`` as the line :func:`run_child` parses."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def worker_command(script: str, *args: str) -> list[str]:
    """The command that runs benchmark ``script`` (a path) again, in a fresh interpreter."""
    return [sys.executable, script, *args]


# ---------------------------------------------------------------------------------------------
# tables


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table; numbers are printed as given (format them first)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def median(values: Sequence[float]) -> float:
    """The median (``nan`` for no values)."""
    return statistics.median(values) if values else float("nan")


def si(value: float, unit: str = "") -> str:
    """``value`` with an SI prefix: 1.23e9 -> '1.23 G'."""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}".rstrip()


# ---------------------------------------------------------------------------------------------
# test signals


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """(N,) float32 speech-like signal at 16 kHz, peak 0.3.

    A harmonic source with a moving f0, shaped by vowel formant filters into syllables with
    pauses. Content matters for some peers' speed (RNNoise and DeepFilterNet3 skip work on
    silent frames), so timing silence or pure noise would mislead.
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    f0 = 125 + 25 * np.sin(2 * np.pi * 0.6 * t) + 10 * np.sin(2 * np.pi * 2.1 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    source = sum(np.sin(k * phase) / k for k in range(1, 60))
    vowels = [(730, 1090, 2440), (270, 2290, 3010), (530, 1840, 2480), (570, 840, 2410)]
    out = np.zeros(n)
    start = int(0.15 * SR)
    while start + int(0.3 * SR) < n:
        length = int(rng.uniform(0.12, 0.30) * SR)
        seg = source[start : start + length]
        shaped = np.zeros(length)
        vowel = vowels[rng.integers(len(vowels))]
        for formant, bw, gain in zip(vowel, (90, 110, 150), (1.0, 0.6, 0.3), strict=True):
            r = np.exp(-np.pi * bw / SR)
            shaped += gain * signal.lfilter(
                [1 - r], [1, -2 * r * np.cos(2 * np.pi * formant / SR), r * r], seg
            )
        out[start : start + length] = shaped * np.sin(np.pi * np.arange(length) / length) ** 2
        start += length + int(rng.uniform(0.04, 0.16) * SR)
    return (0.3 * out / np.abs(out).max()).astype(np.float32)


def noisy_mixture(clean: np.ndarray, snr_db: float, seed: int = 1) -> np.ndarray:
    """clean + (pink + white) noise at ``snr_db``; (N,) float32."""
    rng = np.random.default_rng(seed)
    n = clean.shape[0]
    spec = np.fft.rfft(rng.standard_normal(n))
    spec[0] = 0
    spec[1:] /= np.sqrt(np.fft.rfftfreq(n, 1 / SR)[1:])
    pink = np.fft.irfft(spec, n)
    noise = pink / pink.std() + rng.standard_normal(n)
    gain = np.sqrt(np.sum(clean.astype(np.float64) ** 2) / np.sum(noise**2) / 10 ** (snr_db / 10))
    return (clean + gain * noise).astype(np.float32)


def long_noisy_speech(seconds: float, block_seconds: float = 60.0, snr_db: float = 0.0) -> np.ndarray:
    """(N,) float32 noisy speech-like signal of any length, built from ``block_seconds`` blocks."""
    blocks = []
    remaining = seconds
    seed = 0
    while remaining > 0:
        length = min(block_seconds, remaining)
        blocks.append(noisy_mixture(speech_like(length, seed=seed), snr_db, seed=seed + 1))
        remaining -= length
        seed += 2
    return np.concatenate(blocks)


def si_sdr(est: np.ndarray, ref: np.ndarray) -> float:
    """Scale-invariant SDR of ``est`` against ``ref`` in dB."""
    est, ref = est.astype(np.float64), ref.astype(np.float64)
    target = np.dot(est, ref) / np.dot(ref, ref) * ref
    return float(10 * np.log10(np.sum(target**2) / np.sum((est - target) ** 2)))


# ---------------------------------------------------------------------------------------------
# the preset models


@dataclass
class PresetModels:
    """E and G as a preset's ``train`` section describes them.

    Attributes:
        preset: the preset name (``demo``, ``paper``, ...).
        config: the resolved ``TrainConfig``.
        speaker: E in eval mode (pretrained CAM++ for ``campplus``; a ResNet with random weights
            otherwise, since the paper's VoxCeleb-trained ResNet34 is not shipped).
        enhancer: G, freshly initialised (``build_enhancer``).
        frontend: the registry name of E's front-end (the grid G's mask lives on).
    """

    preset: str
    config: Any
    speaker: Any
    enhancer: Any
    frontend: str


def preset_models(preset: str, overrides: Sequence[str] = (), seed: int = 0) -> PresetModels:
    """Build E (without a head) and G for ``preset`` (``key=value`` overrides of its train section)."""
    from gradw.audio.frontends import frontend_name
    from gradw.config import TrainConfig, load_config
    from gradw.models.loading import RANDOM_WEIGHTS, load_speaker_network
    from gradw.training.enhancer import build_enhancer

    config = load_config(TrainConfig, preset, list(overrides), section="train")
    # the time of E does not depend on its weights: a ResNet is asked for random ones by name
    checkpoint = config.speaker.checkpoint if config.speaker.name == "campplus" else RANDOM_WEIGHTS
    speaker = load_speaker_network(config.speaker.name, checkpoint=checkpoint, tap=config.speaker.tap)
    torch.manual_seed(seed)
    enhancer = build_enhancer(config, speaker.frontend.n_mels)
    return PresetModels(preset, config, speaker.eval(), enhancer, frontend_name(speaker.frontend))


def save_random_enhancer(path: Path, models: PresetModels) -> Path:
    """Save G (as initialised) as a ``gradw train`` checkpoint that ``gradw enhance`` and
    ``gradw evaluate`` load; the time of both does not depend on the weights."""
    from gradw.checkpoint import save_checkpoint
    from gradw.config import to_dict

    cfg = models.config.speaker
    return save_checkpoint(
        path,
        kind="enhancer",
        model=models.enhancer,
        step=0,
        config=to_dict(models.config),
        model_config=models.enhancer.config,
        extra={
            "speaker": {"name": cfg.name, "checkpoint": None, "tap": cfg.tap},
            "frontend": models.frontend,
            "train_speakers": 0,
        },
    )


def parameter_count(module: torch.nn.Module) -> int:
    """Number of parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())


def write_repeated_wav(path: Path, block: np.ndarray, seconds: float) -> None:
    """``seconds`` of 16-bit 16 kHz WAV made of ``block`` (N,) repeated, written block by block,
    so a recording of hours never sits in memory (its content does not matter for time or memory)."""
    remaining = int(round(seconds * SR))
    with sf.SoundFile(path, "w", samplerate=SR, channels=1, subtype="PCM_16") as handle:
        while remaining > 0:
            piece = block[: min(len(block), remaining)]
            handle.write(piece)
            remaining -= len(piece)
