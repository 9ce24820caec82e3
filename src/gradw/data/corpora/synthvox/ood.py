"""The out-of-domain test pool (``augment/test-ood``): noise, music, babble and rooms that share no
package, recording, generator or voice with the train, validation and test pools.

The in-domain pools draw on lincity-ng sounds and coloured noise, hum and modulated noise; the
Warzone 2100 soundtrack, MIDI songs and procedural music; espeak-ng formant voices; and
pyroomacoustics shoebox rooms of 3-12 m (image sources, one absorption for every wall). This pool
draws instead on:

* **noise**: real recordings from two other games, Simutrans (``simutrans-pak64``: water, wind,
  birds, traffic, saws) and OpenTTD's OpenSFX (``openttd-opensfx``: engines, aircraft, machinery,
  applause, animals), plus two procedural generators of its own: rotating machinery (a wandering
  harmonic series with firing impacts and resonances) and crackle (random impulses: rain, fire,
  typing);
* **music**: recorded soundtracks of other packages: Advanced Strategic Command (``asc-music``),
  Endgame: Singularity (``singularity-music``) and Asterisk's music on hold
  (``asterisk-moh-opsound-g722``);
* **babble**: other engines and talkers who are no speaker of any split: the six SVOX Pico voices
  (``libttspico-utils``), RHVoice's bdl and clb (``rhvoice-english``), Festival's don
  (``festvox-don``) and the recorded Russian Asterisk prompts (``asterisk-core-sounds-ru-g722``);
* **rirs**: another room simulation: pyroomacoustics with ray tracing (hybrid with image sources
  of order 3), air absorption and a frequency-dependent material per surface (walls, floor,
  ceiling), in rooms outside the training range: booths of 1.5-2.8 m and halls of 14-30 m.

Every generator is a pure function of its item (which carries its own seed), as in ``noise.py``.
"""

from __future__ import annotations

import functools
import glob
import io
import re
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import soundfile as sf
from scipy.signal import fftconvolve

from gradw.audio.io import resample
from gradw.data.corpora.synthvox.catalogue import Speaker
from gradw.data.corpora.synthvox.noise import (
    SAMPLE_RATE,
    AugItem,
    _load_16k,
    _unit_peak,
    pyroomacoustics_available,
)
from gradw.data.corpora.synthvox.voices import (
    ASTERISK_DIR,
    FESTIVAL_VOICE_DIR,
    SynthError,
    UttPlan,
    _decode_g722,
    synth_festival,
    trim_silence,
)

__all__ = [
    "EXCLUDED_TALKERS",
    "OOD_KINDS",
    "OOD_LICENCES",
    "TALKERS",
    "Talker",
    "crackle_noise",
    "machine_noise",
    "make_ood_item",
    "missing_talker",
    "music_tracks",
    "noise_recordings",
]

SIMUTRANS_DIR = "/usr/share/games/simutrans/pak/sound"
OPENSFX_CAT = "/usr/share/games/openttd/baseset/opensfx/opensfx.cat"
ASC_DIR = "/usr/share/games/asc/music"
SINGULARITY_DIR = "/usr/share/games/singularity/music"
MOH_DIR = "/usr/share/asterisk/moh"
PICO_LANG_DIR = "/usr/share/pico/lang"
RHVOICE_DIR = "/usr/share/RHVoice/voices"
#: the generators of this pool (``AugItem.kind``)
OOD_KINDS = ("machine", "crackle", "ood_recording", "ood_music", "ood_talker", "ood_rir")
#: licences of the pool's sources, by Debian package
OOD_LICENCES = {
    "simutrans-pak64": "Artistic-1.0",
    "openttd-opensfx": "CC-BY-3.0, CC-BY-SA-3.0 or CC0-1.0 per sound (the OpenSFX set: CC-BY-SA-3.0, "
    "GPL-2+ or CDDL-1.1)",
    "asc-music": "GPL-2+",
    "singularity-music": "CC-BY-SA-3.0",
    "asterisk-moh-opsound-g722": "CC-BY-SA-3.0",
    "libttspico-utils": "Apache-2.0 (Pico lingware without its sources: Debian non-free)",
    "rhvoice-english": "LGPL-2.1+ (RHVoice voices trained on CMU ARCTIC; Debian non-free)",
    "festvox-don": "CSTR Edinburgh licence (BSD-like)",
    "asterisk-core-sounds-ru-g722": "CC-BY-3.0",
}


@dataclass(frozen=True)
class Talker:
    """One out-of-domain babble talker.

    Attributes:
        id: the talker's id (``<engine>-<voice>``), recorded in the item's ``voice``.
        engine: ``pico``, ``rhvoice``, ``festival`` or ``asterisk`` (recordings).
        voice: the engine's voice name (Pico language, RHVoice profile, Festival voice,
            Asterisk sound folder).
        lang: text language (wordfreq code) or language of the recordings.
        gender: ``m`` or ``f``.
        package: the Debian package that provides the voice.
        real: the talker is actual recordings.
    """

    id: str
    engine: str
    voice: str
    lang: str
    gender: str
    package: str
    real: bool = False


#: talkers who are no speaker of any split (``voices.CATALOGUE``) and no babble variant
TALKERS: tuple[Talker, ...] = (
    Talker("pico-en-US", "pico", "en-US", "en", "f", "libttspico-utils"),
    Talker("pico-en-GB", "pico", "en-GB", "en", "f", "libttspico-utils"),
    Talker("pico-de-DE", "pico", "de-DE", "de", "f", "libttspico-utils"),
    Talker("pico-es-ES", "pico", "es-ES", "es", "f", "libttspico-utils"),
    Talker("pico-fr-FR", "pico", "fr-FR", "fr", "f", "libttspico-utils"),
    Talker("pico-it-IT", "pico", "it-IT", "it", "f", "libttspico-utils"),
    Talker("rhvoice-bdl", "rhvoice", "bdl", "en", "m", "rhvoice-english"),
    Talker("rhvoice-clb", "rhvoice", "clb", "en", "f", "rhvoice-english"),
    Talker("festival-don", "festival", "don_diphone", "en", "m", "festvox-don"),
    Talker(
        "asterisk-ru", "asterisk", "ru_RU_f_IvrvoiceRU", "ru", "f", "asterisk-core-sounds-ru-g722", real=True
    ),
)
#: voices of the same packages left out, and why
EXCLUDED_TALKERS = {
    # CAM++ centroids of four sentences: cosine 0.88 to flite-awb, and 0.78 to festival-cmu_us_slt
    # (bdl and clb: at most 0.41 and 0.38 to the Flite and Festival English speakers of the splits)
    "rhvoice-alan": "trained on CMU ARCTIC awb, the test speaker flite-awb",
    "rhvoice-slt": "trained on CMU ARCTIC slt, the test speaker festival-cmu_us_slt",
    "rhvoice-evgeniy-eng": "CC-BY-NC-ND-4.0",
    "rhvoice-lyubov": "CC-BY-NC-ND-4.0",
    "festival-kal": "the training speaker festival-kal",
    "festival-rab": "the same database as the test speaker mbrola-en1",
}
_ENGINE_TOOL = {"pico": "pico2wave", "rhvoice": "RHVoice-test", "festival": "festival", "asterisk": "ffmpeg"}


# ---------------------------------------------------------------------------------------------
# sources on this machine


def missing_talker(talker: Talker) -> str | None:
    """The Debian package ``talker`` still needs on this machine, or None when usable."""
    tool = _ENGINE_TOOL[talker.engine]
    if shutil.which(tool) is None:
        return {"pico2wave": "libttspico-utils", "RHVoice-test": "rhvoice"}.get(tool, tool)
    present = {
        "pico": lambda: Path(PICO_LANG_DIR, f"{talker.voice}_ta.bin").is_file(),
        "rhvoice": lambda: Path(RHVOICE_DIR, talker.voice).is_dir(),
        "festival": lambda: bool(glob.glob(f"{FESTIVAL_VOICE_DIR}/*/{talker.voice}")),
        "asterisk": lambda: bool(talker_prompts(talker.voice)),
    }[talker.engine]()
    return None if present else talker.package


@functools.lru_cache(maxsize=4)
def talker_prompts(folder: str) -> tuple[str, ...]:
    """The G.722 recordings of an Asterisk voice folder (sorted)."""
    return tuple(sorted(glob.glob(f"{ASTERISK_DIR}/{folder}/**/*.g722", recursive=True)))


def g722_seconds(path: str) -> float:
    """Duration of a 64 kbit/s G.722 file: 8,000 bytes per second."""
    return Path(path).stat().st_size / 8000.0


@functools.lru_cache(maxsize=1)
def _opensfx_index() -> tuple[tuple[int, str, int, int], ...]:
    """(index, title, offset, size) of the sounds in OpenSFX's catalogue: a table of (offset,
    size) pairs, then per sound a length-prefixed title and a RIFF WAV."""
    with open(OPENSFX_CAT, "rb") as handle:
        head = handle.read(8)
        count = (struct.unpack("<I", head[:4])[0] & 0x7FFFFFFF) // 8
        table = head + handle.read(8 * count - 8)
        entries = []
        for i in range(count):
            offset, size = struct.unpack_from("<II", table, 8 * i)
            offset &= 0x7FFFFFFF
            handle.seek(offset)
            length = handle.read(1)[0]
            title = handle.read(length).rstrip(b"\0").decode("utf-8", errors="replace")
            entries.append((i, title, offset + 1 + length, size - 1 - length))
    return tuple(entries)


def _read_opensfx(index: int) -> tuple[np.ndarray, int]:
    _, _, offset, size = _opensfx_index()[index]
    with open(OPENSFX_CAT, "rb") as handle:
        handle.seek(offset)
        data = handle.read(size)
    wav, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return wav.mean(axis=1, dtype=np.float32), int(rate)


#: OpenSFX sounds that are no noise: jingles, beeps, Morse code, empty slots and Toyland's cartoon
#: effects
_OPENSFX_SKIP = re.compile(r'^"?(Good Year|Bad Year|Beep|Morse|Unused|Toyland)', re.I)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:32].strip("-") or "x"


def noise_recordings(min_seconds: float = 0.5) -> dict[str, list[tuple[str, str]]]:
    """(name, source) of the noise recordings installed here, by Debian package; a source is a
    file path, or ``opensfx.cat#N`` for sound N of the OpenSFX catalogue. Sounds shorter than
    ``min_seconds`` (clicks, beeps), jingles and cartoon effects are left out."""
    found: dict[str, list[tuple[str, str]]] = {}
    for path in sorted(glob.glob(f"{SIMUTRANS_DIR}/*.wav")):
        info = sf.info(path)
        if info.frames >= min_seconds * info.samplerate:
            found.setdefault("simutrans-pak64", []).append((f"simutrans-{_slug(Path(path).stem)}", path))
    if Path(OPENSFX_CAT).is_file():
        for index, title, offset, size in _opensfx_index():
            if size <= 44 or _OPENSFX_SKIP.match(title):
                continue
            with open(OPENSFX_CAT, "rb") as handle:
                handle.seek(offset)
                info = sf.info(io.BytesIO(handle.read(size)))
            if info.frames >= min_seconds * info.samplerate:
                name = _slug(title.split('"')[1] if title.count('"') >= 2 else title)
                found.setdefault("openttd-opensfx", []).append(
                    (f"opensfx-{index:02d}-{name}", f"{OPENSFX_CAT}#{index}")
                )
    return found


def _track_seconds(path: str) -> float:
    if path.endswith(".g722"):
        return g722_seconds(path)
    info = sf.info(path)
    return float(info.frames) / float(info.samplerate)


def music_tracks() -> dict[str, list[tuple[str, float]]]:
    """(path, seconds) of the music tracks installed here, by Debian package (sorted)."""
    found: dict[str, list[tuple[str, float]]] = {}
    for package, pattern in (
        ("asc-music", f"{ASC_DIR}/*.mp3"),
        ("singularity-music", f"{SINGULARITY_DIR}/*.ogg"),
        ("asterisk-moh-opsound-g722", f"{MOH_DIR}/*.g722"),
    ):
        for path in sorted(glob.glob(pattern)):
            found.setdefault(package, []).append((path, _track_seconds(path)))
    return found


# ---------------------------------------------------------------------------------------------
# procedural generators (none of them is used by the other pools)


def _smooth_walk(n: int, points: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    """A random walk of ``points`` steps, interpolated to ``n`` samples, around 0."""
    walk = np.cumsum(rng.standard_normal(max(2, points))) * scale / np.sqrt(max(2, points))
    return np.interp(np.arange(n), np.linspace(0, n, len(walk)), walk - walk.mean())


def _resonances(wav: np.ndarray, rng: np.random.Generator, count: int) -> np.ndarray:
    """``wav`` through ``count`` random resonances (Gaussian bumps on a log-frequency axis)."""
    spectrum = np.fft.rfft(wav)
    freqs = np.fft.rfftfreq(len(wav), d=1.0 / SAMPLE_RATE)
    logf = np.log2(np.maximum(freqs, 20.0))
    gain = np.full(len(freqs), 0.05)
    for _ in range(count):
        centre = rng.uniform(np.log2(80.0), np.log2(6000.0))
        gain += rng.uniform(0.3, 1.0) * np.exp(-0.5 * ((logf - centre) / rng.uniform(0.1, 0.6)) ** 2)
    return np.fft.irfft(spectrum * gain, n=len(wav))


def machine_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Rotating machinery: a harmonic series on a slowly wandering shaft speed, impacts at the
    firing rate, and broadband noise through random resonances.

    Returns:
        (n,) float32, unit peak.
    """
    f0 = rng.uniform(12.0, 60.0)
    speed = f0 * (1.0 + _smooth_walk(n, n // (SAMPLE_RATE // 2) + 2, rng.uniform(0.01, 0.08), rng))
    phase = 2 * np.pi * np.cumsum(speed) / SAMPLE_RATE
    tilt = rng.uniform(0.4, 1.4)
    harmonics = np.zeros(n)
    for h in range(1, min(80, int(4000 / f0)) + 1):
        harmonics += rng.lognormal(0.0, 0.6) * h**-tilt * np.sin(h * phase + rng.uniform(0, 2 * np.pi))
    firing = int(rng.integers(1, 5))
    cycles = np.floor(phase * firing / (2 * np.pi))
    hits = np.flatnonzero(np.diff(cycles) > 0)
    impulses = np.zeros(n)
    impulses[hits] = rng.uniform(0.5, 1.0, len(hits))
    burst = int(rng.uniform(0.002, 0.01) * SAMPLE_RATE)
    kernel = rng.standard_normal(burst) * np.exp(-np.arange(burst) / (0.3 * burst))
    knocks = fftconvolve(impulses, kernel)[:n]
    broadband = _resonances(rng.standard_normal(n), rng, int(rng.integers(2, 5)))
    parts = [_unit_peak(harmonics), _unit_peak(knocks), _unit_peak(broadband)]
    weights = rng.dirichlet([2.0, 1.0, 1.5])
    return _unit_peak(sum(w * p for w, p in zip(weights, parts, strict=True)))


def crackle_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Random impulses (Poisson times, heavy-tailed amplitudes) ringing through short decays and
    random resonances: rain, fire, typing, gravel.

    Returns:
        (n,) float32, unit peak.
    """
    rate = float(np.exp(rng.uniform(np.log(4.0), np.log(400.0))))
    count = int(rng.poisson(rate * n / SAMPLE_RATE)) + 1
    impulses = np.zeros(n)
    np.add.at(
        impulses,
        rng.integers(0, n, count),
        np.minimum(rng.pareto(1.5, count) + 0.1, 20.0) * rng.choice([-1.0, 1.0], count),
    )
    burst = max(8, int(rng.uniform(0.001, 0.02) * SAMPLE_RATE))
    kernel = rng.standard_normal(burst) * np.exp(-np.arange(burst) / (0.25 * burst))
    crackle = _resonances(fftconvolve(impulses, kernel)[:n], rng, int(rng.integers(1, 4)))
    return _unit_peak(crackle)


# ---------------------------------------------------------------------------------------------
# real sources and talkers


def _read_source(source: str, offset: float = 0.0, seconds: float = 0.0) -> np.ndarray:
    """16 kHz mono audio of a recording: a file libsndfile reads, a G.722 file or an OpenSFX
    sound (``opensfx.cat#N``), from ``offset`` for ``seconds`` (0: to the end)."""
    if "#" in source and source.split("#")[0].endswith(".cat"):
        wav, rate = _read_opensfx(int(source.rsplit("#", 1)[1]))
        wav = resample(wav, rate, SAMPLE_RATE) if rate != SAMPLE_RATE else wav
    elif source.endswith(".g722"):
        wav = _decode_g722([source])[0]
    else:
        return _load_16k(source, offset, seconds)
    start = int(offset * SAMPLE_RATE)
    return wav[start : start + int(seconds * SAMPLE_RATE)] if seconds > 0 else wav[start:]


def _run(cmd: list[str], data: bytes | None = None) -> None:
    try:
        proc = subprocess.run(cmd, input=data, capture_output=True, timeout=600, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SynthError(f"{cmd[0]} failed: {exc}") from exc
    if proc.returncode != 0:
        raise SynthError(f"{cmd[0]} failed: {proc.stderr.decode(errors='replace').strip()[-300:]}")


def _talk(talker: Talker, item: AugItem) -> np.ndarray:
    """One talker's speech for a babble item (16 kHz mono, not trimmed)."""
    if talker.real:
        rng = np.random.default_rng(item.seed)
        parts = []
        for wav in _decode_g722(list(item.sources)):
            parts += [trim_silence(wav, margin=0.05), np.zeros(int(rng.uniform(0.1, 0.4) * SAMPLE_RATE))]
        return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
    with tempfile.TemporaryDirectory(prefix="synthvox-ood-") as tmp:
        out = Path(tmp) / "talker.wav"
        if talker.engine == "pico":
            markup = (
                f'<speed level="{item.rate}"><pitch level="{item.pitch}">{escape(item.text)}</pitch></speed>'
            )
            _run(["pico2wave", "-l", talker.voice, "-w", str(out), markup])
        elif talker.engine == "rhvoice":
            cmd = ["RHVoice-test", "-p", talker.voice, "-r", str(item.rate), "-t", str(item.pitch)]
            _run([*cmd, "-o", str(out)], item.text.encode("utf-8"))
        else:
            speaker = Speaker(
                talker.id, "festival", talker.voice, talker.lang, talker.gender, "", talker.package, ""
            )
            plan = UttPlan("talker", str(out), item.text, rate=170.0 * item.rate / 100.0)
            return synth_festival(speaker, [plan], Path(tmp))["talker"]
        if not out.is_file():
            raise SynthError(f"{talker.engine} voice {talker.voice} wrote no audio")
        wav, rate = sf.read(out, dtype="float32", always_2d=True)
    mono = wav.mean(axis=1, dtype=np.float32)
    return resample(mono, int(rate), SAMPLE_RATE) if rate != SAMPLE_RATE else mono


# ---------------------------------------------------------------------------------------------
# rooms

_WALLS = (
    "brickwork", "rough_concrete", "plasterboard", "wooden_lining", "ceramic_tiles", "limestone_wall",
    "glass_window", "curtains_cotton_0.5", "gypsum_board", "facing_brick", "panel_fabric_covered_6pcf",
)  # fmt: skip
_FLOORS = (
    "concrete_floor",
    "marble_floor",
    "linoleum_on_concrete",
    "carpet_cotton",
    "carpet_thin",
    "stage_floor",
)
_CEILINGS = (
    "ceiling_plasterboard",
    "ceiling_fibre_absorber",
    "ceiling_fissured_tile",
    "hard_surface",
    "wooden_lining",
)
#: (low, high) room dimensions in metres: booths below the training rooms' 3 x 3 x 2.5 m, halls
#: above their 12 x 10 x 4.5 m
ROOM_SIZES = {"booth": ((1.5, 1.5, 2.0), (2.8, 2.8, 2.4)), "hall": ((14.0, 11.0, 5.0), (30.0, 25.0, 10.0))}


def _room_size(rng: np.random.Generator) -> tuple[str, np.ndarray]:
    kind = "hall" if rng.random() < 0.5 else "booth"
    low, high = ROOM_SIZES[kind]
    return kind, rng.uniform(low, high)


def _rir_ray_traced(rng: np.random.Generator) -> np.ndarray:
    """pyroomacoustics: image sources to order 3 plus ray tracing, air absorption, a
    frequency-dependent material per wall, floor and ceiling."""
    import pyroomacoustics as pra

    kind, size = _room_size(rng)
    materials = {w: pra.Material(str(rng.choice(_WALLS))) for w in ("east", "west", "north", "south")}
    materials["floor"] = pra.Material(str(rng.choice(_FLOORS)))
    materials["ceiling"] = pra.Material(str(rng.choice(_CEILINGS)))
    inner = int(rng.integers(0, 2**31 - 1))
    np.random.seed(inner)
    if hasattr(pra, "random") and hasattr(pra.random, "seed"):
        pra.random.seed(numpy=inner, libroom=inner)
    room = pra.ShoeBox(
        size, fs=SAMPLE_RATE, materials=materials, max_order=3, ray_tracing=True, air_absorption=True
    )
    room.set_ray_tracing(receiver_radius=0.5, n_rays=3000, energy_thres=1e-5)
    margin = 1.0 if kind == "hall" else 0.3
    low = np.array([margin, margin, 1.0])
    room.add_source(rng.uniform(low, size - margin))
    room.add_microphone(rng.uniform(low, size - margin))
    room.compute_rir()
    return np.asarray(room.rir[0][0], dtype=np.float32)


def _rir_banded(rng: np.random.Generator) -> np.ndarray:
    """Without pyroomacoustics: sparse early reflections and a tail whose decay shortens with
    frequency (one RT60 per octave band), in the same booths and halls."""
    kind, size = _room_size(rng)
    rt_low = rng.uniform(1.5, 3.0) if kind == "hall" else rng.uniform(0.15, 0.4)
    n = int(rt_low * 1.2 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    freqs = np.fft.rfftfreq(n, d=1.0 / SAMPLE_RATE)
    tail = np.zeros(n)
    edges = (0.0, 500.0, 1000.0, 2000.0, 4000.0, SAMPLE_RATE / 2 + 1)
    for k in range(len(edges) - 1):
        rt = rt_low * (1.0 - 0.12 * k)
        band = np.fft.rfft(rng.standard_normal(n) * np.exp(-6.9078 * t / rt))
        tail += np.fft.irfft(band * ((freqs >= edges[k]) & (freqs < edges[k + 1])), n=n)
    delay = int(float(np.linalg.norm(size)) / 343.0 * rng.uniform(0.05, 0.3) * SAMPLE_RATE)
    out = 0.3 * _unit_peak(tail)
    out[: delay + 1] = 0.0
    out[delay] = 1.0
    for _ in range(int(rng.integers(4, 16))):
        at = delay + int(rng.uniform(0.001, 0.03 if kind == "booth" else 0.12) * SAMPLE_RATE)
        if at < n:
            out[at] += rng.uniform(-0.6, 0.6)
    return out.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# the items


def make_ood_item(item: AugItem) -> np.ndarray:
    """Generate the 16 kHz mono waveform of one out-of-domain item (peak 0.9; RIRs peak 1).

    Raises:
        RuntimeError: an external program failed or made no audio.
        ValueError: unknown item kind.
    """
    rng = np.random.default_rng(item.seed)
    n = int(item.seconds * SAMPLE_RATE)
    if item.kind == "machine":
        wav = machine_noise(n, rng)
    elif item.kind == "crackle":
        wav = crackle_noise(n, rng)
    elif item.kind in ("ood_recording", "ood_music"):
        wav = _read_source(item.source, item.offset, item.seconds)
    elif item.kind == "ood_talker":
        talker = next((t for t in TALKERS if t.id == item.voice), None)
        if talker is None:
            raise ValueError(f"unknown out-of-domain talker {item.voice!r}")
        wav = trim_silence(_talk(talker, item))
        wav = wav[:n] if n > 0 else wav
    elif item.kind == "ood_rir":
        wav = _rir_ray_traced(rng) if pyroomacoustics_available() else _rir_banded(rng)
        peak = float(np.max(np.abs(wav)))
        return (wav / peak).astype(np.float32) if peak > 0 else wav
    else:
        raise ValueError(f"unknown out-of-domain item kind {item.kind!r}")
    wav = np.asarray(wav, dtype=np.float32)
    if len(wav) < SAMPLE_RATE // 10 or not np.isfinite(wav).all() or float(np.max(np.abs(wav))) < 1e-4:
        raise RuntimeError(f"{item.key}: generated audio is empty or silent")
    return (0.9 * _unit_peak(wav)).astype(np.float32)
