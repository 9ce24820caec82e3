"""The synthvox augmentation pools: noise, music, babble talkers and room impulse responses.

MUSAN-like categories built from Debian and PyPI packages:

* **noise**: real ambient and industrial recordings (``lincity-ng-data``, split by sound family),
  plus procedural coloured noise (1/f^beta), mains hum and amplitude-modulated noise;
* **music**: the Warzone 2100 soundtrack (albums split between train and test), MIDI songs
  rendered with the FluidR3 sampled-instrument soundfont, and, as a fallback or for the tiny
  preset, procedurally synthesised music;
* **babble**: single-talker files from espeak-ng formant voice variants (even-numbered variants
  train, odd-numbered test), disjoint from every target speaker by construction;
* **rirs**: pyroomacoustics shoebox rooms (image-source method), or a statistical
  exponential-decay model when pyroomacoustics is not installed.

Every generator here is a pure function of its item (which carries its own seed), so the pools
are reproducible and can be built in any order by any number of processes.
"""

from __future__ import annotations

import functools
import glob
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from gradw.audio.io import resample

__all__ = [
    "BABBLE_LANGUAGES",
    "AugItem",
    "babble_variants",
    "coloured_noise",
    "lincity_files",
    "make_aug_item",
    "midi_files",
    "pyroomacoustics_available",
    "soundfont_path",
    "warzone_tracks",
]

SAMPLE_RATE = 16000
LINCITY_DIR = "/usr/share/games/lincity-ng/sounds"
WARZONE_DIR = "/usr/share/games/warzone2100/music/albums"
MIDI_DIR = "/usr/share/planetblupi/music"
SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2",)
#: Warzone 2100 albums held out for the test pool (the others train).
WARZONE_TEST_ALBUMS = ("legacy_soundtrack",)
WARZONE_VAL_ALBUMS = ("original_soundtrack",)
#: MIDI songs held out for the test pool.
MIDI_TEST_SONGS = ("music008", "music009")
MIDI_VAL_SONGS = ("music007",)
#: espeak-ng languages the babble talkers speak (all have wordfreq lists).
BABBLE_LANGUAGES = (
    "en", "de", "fr", "es", "it", "pt", "nl", "sv", "pl", "cs",
    "ru", "el", "tr", "fi", "hu", "ro", "id", "da", "nb", "bg",
)  # fmt: skip
#: (low, high) room dimensions in metres of the simulated rooms
ROOM_SIZE = ((3.0, 3.0, 2.5), (12.0, 10.0, 4.5))
_EXCLUDED_VARIANTS = re.compile(r"whisper|fast|demonic|robot|robosoft|announcer", re.I)


@dataclass(frozen=True)
class AugItem:
    """One augmentation file to make.

    Attributes:
        key: the key in the category's ``wav.scp``.
        path: output file (absolute).
        kind: generator: ``coloured``, ``hum``, ``am``, ``synth_music``, ``copy``, ``warzone``,
            ``midi``, ``babble`` or ``rir`` (the out-of-domain pool's kinds: ``ood.OOD_KINDS``).
        seed: the item's own random seed.
        seconds: length to make (0 for "as long as the source").
        source: the input file (``copy``, ``warzone``, ``midi``).
        offset: start in the source, seconds.
        text: babble prompt.
        voice: espeak-ng voice for babble (``<lang>+<variant>``; an out-of-domain talker's id).
        pitch: espeak-ng ``-p`` for babble (a percentage for an out-of-domain talker).
        rate: espeak-ng ``-s`` for babble (a percentage for an out-of-domain talker).
        max_order: image-source order cap for RIRs (0: Sabine's estimate).
        sources: recordings concatenated into the item (an out-of-domain babble talker who is
            actual recordings).
    """

    key: str
    path: str
    kind: str
    seed: int
    seconds: float = 0.0
    source: str = ""
    offset: float = 0.0
    text: str = ""
    voice: str = ""
    pitch: int = 50
    rate: int = 170
    max_order: int = 0
    sources: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------
# sources on this machine


def lincity_files(min_seconds: float = 0.5) -> list[str]:
    """The lincity-ng sound effects of at least ``min_seconds`` (sorted; the short interface
    clicks are left out), empty when ``lincity-ng-data`` is missing."""
    paths = []
    for path in sorted(glob.glob(f"{LINCITY_DIR}/*.wav")):
        info = sf.info(path)
        if info.frames >= min_seconds * info.samplerate:
            paths.append(path)
    return paths


def sound_family(path: str) -> str:
    """A lincity sound's family: its name without digits (``Farm1..3`` -> ``Farm``)."""
    return re.sub(r"\d+", "", Path(path).stem)


def warzone_tracks() -> dict[str, list[str]]:
    """Warzone 2100 tracks by album (sorted), empty when ``warzone2100-music`` is missing."""
    albums: dict[str, list[str]] = {}
    for path in sorted(glob.glob(f"{WARZONE_DIR}/*/*.opus")):
        albums.setdefault(Path(path).parent.name, []).append(path)
    return albums


def midi_files() -> list[str]:
    """The planetblupi MIDI songs (sorted), empty when ``planetblupi-music-midi`` is missing."""
    return sorted(glob.glob(f"{MIDI_DIR}/*.mid"))


def soundfont_path() -> str | None:
    """The sampled-instrument soundfont, or None when ``fluid-soundfont-gm`` is missing."""
    return next((p for p in SOUNDFONTS if Path(p).is_file()), None)


@functools.lru_cache(maxsize=1)
def babble_variants() -> tuple[str, ...]:
    """espeak-ng voice variants usable as babble talkers, sorted by file name.

    Whispered, robotic and novelty variants are left out. Empty when espeak-ng is missing.
    """
    if shutil.which("espeak-ng") is None:
        return ()
    out = subprocess.run(
        ["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=False
    ).stdout
    names = set()
    for line in out.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 5 and fields[4].startswith("!v/"):
            name = fields[4][3:]
            if not _EXCLUDED_VARIANTS.search(name):
                names.add(name)
    return tuple(sorted(names, key=str.lower))


def pyroomacoustics_available() -> bool:
    """True when pyroomacoustics can be imported."""
    try:
        import pyroomacoustics  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# procedural generators


def coloured_noise(n: int, beta: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with a 1/f^beta power spectrum, shaped in the frequency domain.

    Args:
        n: number of samples.
        beta: spectral slope (0 white, 1 pink, 2 brown).
        rng: random generator.

    Returns:
        (n,) float32, unit peak.
    """
    spectrum = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
    freqs = np.fft.rfftfreq(n, d=1.0 / SAMPLE_RATE)
    freqs[0] = freqs[1] if n > 1 else 1.0
    spectrum *= freqs ** (-beta / 2.0)
    spectrum[0] = 0.0
    wav = np.fft.irfft(spectrum, n=n)
    return _unit_peak(wav)


def _unit_peak(wav: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(wav))) if len(wav) else 0.0
    return (wav / peak if peak > 0 else wav).astype(np.float32)


def mains_hum(n: int, rng: np.random.Generator) -> np.ndarray:
    """50 or 60 Hz hum with random harmonics over a little coloured noise."""
    t = np.arange(n) / SAMPLE_RATE
    base = 50.0 if rng.random() < 0.5 else 60.0
    wav = np.zeros(n)
    for k in range(1, 9):
        wav += rng.uniform(0.0, 1.0) / k * np.sin(2 * np.pi * base * k * t + rng.uniform(0, 2 * np.pi))
    wav = _unit_peak(wav) + 0.05 * coloured_noise(n, rng.uniform(0.0, 2.0), rng)
    return _unit_peak(wav)


def modulated_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Coloured noise with a slow sinusoidal or random amplitude envelope."""
    t = np.arange(n) / SAMPLE_RATE
    depth = rng.uniform(0.3, 0.95)
    envelope = 1.0 + depth * np.sin(2 * np.pi * rng.uniform(0.2, 8.0) * t + rng.uniform(0, 2 * np.pi))
    return _unit_peak(coloured_noise(n, rng.uniform(0.0, 2.0), rng) * envelope)


def _tone(freq: float, n: int, rng: np.random.Generator, bright: float) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    wav = np.zeros(n)
    for k in range(1, 7):
        if freq * k < SAMPLE_RATE / 2:
            wav += bright ** (k - 1) * np.sin(2 * np.pi * freq * k * t + rng.uniform(0, 2 * np.pi))
    attack = max(1, min(n, int(0.01 * SAMPLE_RATE)))
    env = np.exp(-t * rng.uniform(1.0, 6.0))
    env[:attack] *= np.linspace(0.0, 1.0, attack)
    return wav * env


def synth_music(n: int, rng: np.random.Generator) -> np.ndarray:
    """A procedurally composed piece: a chord progression, a melody and percussion.

    Random key, tempo, timbre and scale; notes are additive harmonic tones with decaying
    envelopes, the percussion is filtered noise bursts on the beat.
    """
    tempo = rng.uniform(70, 160)
    beat = int(SAMPLE_RATE * 60.0 / tempo)
    root = 110.0 * 2 ** (rng.integers(0, 12) / 12.0)
    scale = [0, 2, 4, 5, 7, 9, 11] if rng.random() < 0.5 else [0, 2, 3, 5, 7, 8, 10]
    degrees = rng.choice([0, 3, 4, 5, 1], size=8)
    bright = rng.uniform(0.2, 0.7)
    wav = np.zeros(n + 8 * beat)
    for bar, pos in enumerate(range(0, n, 4 * beat)):
        degree = int(degrees[bar % len(degrees)])
        for third in (0, 2, 4):
            step = scale[(degree + third) % 7] + 12 * ((degree + third) // 7)
            wav[pos : pos + 4 * beat] += 0.3 * _tone(root * 2 ** (step / 12.0), 4 * beat, rng, bright)
        for b in range(4):
            start = pos + b * beat
            note = scale[int(rng.integers(0, 7))] + 12 * int(rng.integers(1, 3))
            length = beat if rng.random() < 0.7 else beat // 2
            wav[start : start + length] += 0.5 * _tone(root * 2 ** (note / 12.0), length, rng, bright)
            hit = min(len(wav) - start, beat // 4)
            if hit > 0:
                decay = np.exp(-np.arange(hit) / (0.02 * SAMPLE_RATE))
                wav[start : start + hit] += 0.4 * coloured_noise(hit, rng.uniform(0.0, 1.5), rng) * decay
    return _unit_peak(wav[:n])


# ---------------------------------------------------------------------------------------------
# real sources


def _load_16k(path: str, offset: float = 0.0, seconds: float = 0.0) -> np.ndarray:
    """Read (part of) an audio file as 16 kHz mono float32."""
    info = sf.info(path)
    start = int(offset * info.samplerate)
    stop = start + int(seconds * info.samplerate) if seconds > 0 else None
    wav, rate = sf.read(path, start=start, stop=stop, dtype="float32", always_2d=True)
    wav = wav.mean(axis=1, dtype=np.float32)
    return resample(wav, int(rate), SAMPLE_RATE) if rate != SAMPLE_RATE else wav


def render_midi(song: str, seconds: float, soundfont: str) -> np.ndarray:
    """Render the first ``seconds`` of a MIDI song with fluidsynth at 16 kHz (mono).

    fluidsynth writes raw 16-bit stereo to a pipe; reading stops after ``seconds`` so the long
    loops in these songs are not rendered in full.
    """
    cmd = ["fluidsynth", "-ni", "-g", "0.5", "-r", str(SAMPLE_RATE), "-T", "raw", "-F", "-", soundfont, song]
    want = int(seconds * SAMPLE_RATE) * 4
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
    ) as proc:
        assert proc.stdout is not None
        chunks, got = [], 0
        while got < want:
            chunk = proc.stdout.read(min(1 << 20, want - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        proc.kill()
    raw = b"".join(chunks)
    pcm = np.frombuffer(raw[: len(raw) // 4 * 4], dtype="<i2").astype(np.float32).reshape(-1, 2) / 32768.0
    return pcm.mean(axis=1)


def _espeak_talker(item: AugItem) -> np.ndarray:
    with tempfile.TemporaryDirectory(prefix="synthvox-babble-") as tmp:
        out = Path(tmp) / "talker.wav"
        cmd = ["espeak-ng", "-v", item.voice, "-p", str(item.pitch), "-s", str(item.rate), "-w", str(out)]
        proc = subprocess.run(cmd, input=item.text.encode("utf-8"), capture_output=True, check=False)
        if proc.returncode != 0 or not out.is_file():
            raise RuntimeError(
                f"espeak-ng -v {item.voice} failed: {proc.stderr.decode(errors='replace').strip()}"
            )
        wav, rate = sf.read(out, dtype="float32")
    return resample(wav, int(rate), SAMPLE_RATE) if rate != SAMPLE_RATE else wav


def _rir_pyroomacoustics(rng: np.random.Generator, max_order: int) -> np.ndarray:
    import pyroomacoustics as pra

    size = rng.uniform(*ROOM_SIZE)
    e_absorption, order = pra.inverse_sabine(rng.uniform(0.2, 1.0), size)
    if max_order > 0:
        order = min(order, max_order)
    # the randomised image sources draw from pyroomacoustics' own global generator (0.10) or
    # numpy's (older releases): seed both from the item's seed
    inner = int(rng.integers(0, 2**31 - 1))
    np.random.seed(inner)
    if hasattr(pra, "random") and hasattr(pra.random, "seed"):
        pra.random.seed(numpy=inner, libroom=inner)
    room = pra.ShoeBox(
        size,
        fs=SAMPLE_RATE,
        materials=pra.Material(e_absorption),
        max_order=order,
        use_rand_ism=True,
        max_rand_disp=0.05,
    )
    room.add_source(rng.uniform([0.5, 0.5, 0.8], size - 0.5))
    room.add_microphone(rng.uniform([0.5, 0.5, 0.8], size - 0.5))
    room.compute_rir()
    return np.asarray(room.rir[0][0], dtype=np.float32)


def _rir_statistical(rng: np.random.Generator) -> np.ndarray:
    """A direct path plus exponentially decaying noise with RT60 ~ U(0.2, 1.0) s."""
    rt60 = rng.uniform(0.2, 1.0)
    n = int(rt60 * 1.2 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    delay = int(rng.uniform(0.002, 0.02) * SAMPLE_RATE)
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60) * rng.uniform(0.1, 0.5)
    tail[:delay] = 0.0
    tail[delay] = 1.0
    return tail.astype(np.float32)


def make_aug_item(item: AugItem) -> np.ndarray:
    """Generate the 16 kHz mono waveform of one augmentation item (peak 0.9; RIRs peak 1).

    Raises:
        RuntimeError: an external program failed.
        ValueError: unknown item kind.
    """
    rng = np.random.default_rng(item.seed)
    n = int(item.seconds * SAMPLE_RATE)
    if item.kind == "coloured":
        wav = coloured_noise(n, rng.uniform(0.0, 2.0), rng)
    elif item.kind == "hum":
        wav = mains_hum(n, rng)
    elif item.kind == "am":
        wav = modulated_noise(n, rng)
    elif item.kind == "synth_music":
        wav = synth_music(n, rng)
    elif item.kind in ("copy", "warzone"):
        wav = _load_16k(item.source, item.offset, item.seconds)
    elif item.kind == "midi":
        sf2 = soundfont_path()
        if sf2 is None:
            raise RuntimeError("the soundfont is missing (Debian package fluid-soundfont-gm)")
        wav = render_midi(item.source, item.offset + item.seconds, sf2)[int(item.offset * SAMPLE_RATE) :]
    elif item.kind == "babble":
        wav = _espeak_talker(item)
        from gradw.data.corpora.synthvox.voices import trim_silence

        wav = trim_silence(wav)[:n] if n > 0 else trim_silence(wav)
    elif item.kind == "rir":
        wav = (
            _rir_pyroomacoustics(rng, item.max_order)
            if pyroomacoustics_available()
            else _rir_statistical(rng)
        )
        peak = float(np.max(np.abs(wav)))
        return (wav / peak).astype(np.float32) if peak > 0 else wav
    else:
        raise ValueError(f"unknown augmentation item kind {item.kind!r}")
    wav = np.asarray(wav, dtype=np.float32)
    if len(wav) < SAMPLE_RATE // 10 or not np.isfinite(wav).all() or float(np.max(np.abs(wav))) < 1e-4:
        raise RuntimeError(f"{item.key}: generated audio is empty or silent")
    return (0.9 * _unit_peak(wav)).astype(np.float32)


def split_families(
    paths: Sequence[str], test_share: float = 0.2, val_share: float = 0.15
) -> tuple[list[str], list[str], list[str]]:
    """Split lincity sounds into train, validation and test by sound family (fixed,
    seed-independent): (train, val, test) lists of paths.

    Families are shuffled with a constant seed and taken for test until ``test_share`` of the
    files is reached, then for validation until ``val_share`` is, so ``Farm1..3`` always land on
    the same side (and the test side does not depend on ``val_share``).
    """
    families: dict[str, list[str]] = {}
    for path in sorted(paths):
        families.setdefault(sound_family(path), []).append(path)
    order = sorted(families)
    np.random.default_rng(20240105).shuffle(order)
    taken: dict[str, str] = {}
    count = {"test": 0, "val": 0}
    for family in order:
        for side, share in (("test", test_share), ("val", val_share)):
            if count[side] < share * len(paths):
                taken[family] = side
                count[side] += len(families[family])
                break
    sides = {
        side: sorted(p for f in sorted(families) if taken.get(f, "train") == side for p in families[f])
        for side in ("train", "val", "test")
    }
    return sides["train"], sides["val"], sides["test"]
