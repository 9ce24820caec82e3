"""The synthvox speakers' audio: availability checks and per-engine synthesis.

Every speaker is one real person (the catalogue and the train/val/test split are in
:mod:`gradw.data.corpora.synthvox.catalogue`): an MBROLA diphone database driven by espeak-ng, a
Festival or Flite voice built from one speaker's recordings, or actual recordings (Asterisk
telephony prompts, Fish Fillets game dialogue, the words KTuberling speaks in each language).
Test speakers are never seen in training.

All synthesis runs external programs from Debian packages (``espeak-ng``, ``mbrola``,
``festival``, ``flite``, ``ffmpeg``) and returns 16 kHz mono float32 audio; the functions here
hold no state and are safe to call from worker processes.
"""

from __future__ import annotations

import functools
import glob
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from gradw.audio.io import resample
from gradw.data.corpora.synthvox.catalogue import CATALOGUE, Speaker
from gradw.errors import GradwError

__all__ = [
    "CATALOGUE",
    "SAMPLE_RATE",
    "Speaker",
    "SynthError",
    "UttPlan",
    "espeak_data_dir",
    "list_prompts",
    "make_espeak_data",
    "missing_requirement",
    "synthesize_speaker_batch",
]

SAMPLE_RATE = 16000
MBROLA_DIR = "/usr/share/mbrola"
FESTIVAL_VOICE_DIR = "/usr/share/festival/voices"
ASTERISK_DIR = "/usr/share/asterisk/sounds"
FILLETS_DIR = "/usr/share/games/fillets-ng/sound"
KTUBERLING_DIR = "/usr/share/ktuberling/sounds"
INSTALL_HINT = "scripts/install-system-deps.sh"

#: recordings below this rate are narrowband (telephone) takes and are left out
_MIN_RECORDING_RATE = 16000


class SynthError(GradwError, RuntimeError):
    """An external synthesiser failed or produced no usable audio."""


@dataclass(frozen=True)
class UttPlan:
    """Everything needed to make one utterance, fixed by the planner (no randomness left).

    Attributes:
        utt: utterance id.
        path: output audio file (absolute).
        text: prompt text (synthesised speakers).
        pitch: espeak-ng ``-p`` value, 0..99 (MBROLA; mapped to an F0 target for Flite).
        rate: speaking rate in words per minute (``-s`` for espeak-ng; a duration stretch for
            Festival and Flite).
        max_seconds: the utterance is cut to this length (0: no cut).
        sources: recordings concatenated into the utterance (real speakers).
        gaps: silence in seconds inserted after each source but the last.
        gain: peak level of the written utterance (0..1).
    """

    utt: str
    path: str
    text: str = ""
    pitch: float = 50.0
    rate: float = 170.0
    max_seconds: float = 0.0
    sources: tuple[str, ...] = ()
    gaps: tuple[float, ...] = field(default=())
    gain: float = 0.9


# ---------------------------------------------------------------------------------------------
# availability


def missing_requirement(speaker: Speaker, espeak_ok: bool = True) -> str | None:
    """The Debian package that ``speaker`` still needs on this machine, or None when usable.

    Args:
        speaker: the speaker to check.
        espeak_ok: whether espeak-ng works (MBROLA voices need it as their front-end).
    """
    if speaker.engine == "mbrola":
        if not espeak_ok:
            return "espeak-ng"
        if shutil.which("mbrola") is None:
            return "mbrola"
        db = Path(MBROLA_DIR) / speaker.voice / speaker.voice
        return None if db.is_file() else speaker.package
    if speaker.engine == "festival":
        if shutil.which("festival") is None:
            return "festival"
        return None if glob.glob(f"{FESTIVAL_VOICE_DIR}/*/{speaker.voice}") else speaker.package
    if speaker.engine == "flite":
        return None if shutil.which("flite") else "flite"
    if speaker.engine == "asterisk":
        if shutil.which("ffmpeg") is None:
            return "ffmpeg"
        return None if list_prompts(speaker) else speaker.package
    if speaker.engine in ("fillets", "ktuberling"):
        return None if list_prompts(speaker) else speaker.package
    raise ValueError(f"unknown engine {speaker.engine!r}")


@functools.lru_cache(maxsize=16)
def _prompts(engine: str, voice: str) -> tuple[str, ...]:
    if engine == "asterisk":
        return tuple(sorted(glob.glob(f"{ASTERISK_DIR}/{voice}/**/*.g722", recursive=True)))
    if engine == "fillets":
        lang, character = voice.split("-")
        return tuple(sorted(glob.glob(f"{FILLETS_DIR}/*/{lang}/*-{character}-*.ogg")))
    if engine == "ktuberling":
        words = sorted(
            p for ext in ("wav", "ogg", "opus") for p in glob.glob(f"{KTUBERLING_DIR}/{voice}/*.{ext}")
        )
        return tuple(w for w in words if sf.info(w).samplerate >= _MIN_RECORDING_RATE)
    return ()


def list_prompts(speaker: Speaker) -> list[str]:
    """The recordings of a real speaker (sorted paths; KTuberling's narrowband takes, under 16 kHz,
    left out); empty for synthesised speakers."""
    return list(_prompts(speaker.engine, speaker.voice))


def prompt_seconds(path: str) -> float:
    """Duration of one recording: G.722 at 64 kbit/s is 8,000 bytes per second."""
    if path.endswith(".g722"):
        return os.path.getsize(path) / 8000.0
    info = sf.info(path)
    return float(info.frames) / float(info.samplerate)


# ---------------------------------------------------------------------------------------------
# espeak-ng data with the MBROLA voice fixes


def espeak_data_dir() -> Path | None:
    """The system ``espeak-ng-data`` folder as ``espeak-ng --version`` reports it, or None."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"Data at:\s*(\S+)", out)
    return Path(match.group(1)) if match and Path(match.group(1)).is_dir() else None


_VOICE_FIXES = {
    # the shipped file points to a missing 'zh' dictionary
    "mb-cn1": "name chinese-mb-cn1\nlanguage cmn\ngender female\npitch 100 280\nmbrola cn1 cmn_phtrans\n",
    # no voice file is shipped although hn1_phtrans is
    "mb-hn1": "name korean-mbrola-1\nlanguage ko\ngender male\nmbrola hn1 hn1_phtrans\n",
    # female, but the shipped file has no pitch line, so it renders at 100 Hz
    "mb-cz1": "name czech-mbrola-1\nlanguage cs 1\ngender female\npitch 150 230\nmbrola cz1 cs_phtrans\n",
}


def make_espeak_data(root: Path) -> Path:
    """Build a private espeak-ng data folder under ``root`` with the MBROLA voice fixes.

    The folder mirrors the system one with symbolic links, except ``voices/mb`` whose fixed
    voice files are real files. Rebuilt on every call (cheap); returns the value for
    espeak-ng's ``--path`` (the parent of ``espeak-ng-data``).

    Raises:
        SynthError: espeak-ng or its data folder is missing.
    """
    system = espeak_data_dir()
    if system is None:
        raise SynthError(
            f"espeak-ng is not installed: install the Debian package espeak-ng ({INSTALL_HINT} tiny)"
        )
    data = root / "espeak-ng-data"
    if data.exists():
        shutil.rmtree(data)
    (data / "voices" / "mb").mkdir(parents=True)
    for entry in system.iterdir():
        if entry.name != "voices":
            (data / entry.name).symlink_to(entry)
    for entry in (system / "voices").iterdir():
        if entry.name != "mb":
            (data / "voices" / entry.name).symlink_to(entry)
    for entry in (system / "voices" / "mb").iterdir():
        if entry.name not in _VOICE_FIXES:
            (data / "voices" / "mb" / entry.name).symlink_to(entry)
    for name, text in _VOICE_FIXES.items():
        (data / "voices" / "mb" / name).write_text(text, encoding="utf-8")
    return root


# ---------------------------------------------------------------------------------------------
# signal helpers


def _run(cmd: Sequence[str], data: bytes | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(list(cmd), input=data, capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SynthError(f"{cmd[0]} failed: {exc}") from exc


def _parse_wav_stream(raw: bytes, what: str) -> tuple[np.ndarray, int]:
    """Decode a 16-bit mono WAV written to a pipe (its size fields may be wrong)."""
    if len(raw) < 44 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise SynthError(f"{what}: no WAV data on stdout")
    rate = int.from_bytes(raw[24:28], "little")
    pos = 12
    while pos + 8 <= len(raw):
        chunk, size = raw[pos : pos + 4], int.from_bytes(raw[pos + 4 : pos + 8], "little")
        if chunk == b"data":
            body = raw[pos + 8 :]
            body = body[: len(body) // 2 * 2]
            return np.frombuffer(body, dtype="<i2").astype(np.float32) / 32768.0, rate
        pos += 8 + size + (size & 1)
    raise SynthError(f"{what}: WAV stream has no data chunk")


def _to_16k(wav: np.ndarray, rate: int) -> np.ndarray:
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim == 2:
        wav = wav.mean(axis=1, dtype=np.float32)
    return resample(wav, rate, SAMPLE_RATE) if rate != SAMPLE_RATE else wav


def trim_silence(wav: np.ndarray, threshold_db: float = -40.0, margin: float = 0.1) -> np.ndarray:
    """Cut leading and trailing parts quieter than ``threshold_db`` below the peak frame.

    Uses 20 ms frames; keeps ``margin`` seconds on each side. Returns the input when it is all
    below the threshold.
    """
    hop = SAMPLE_RATE // 50
    n = len(wav) // hop
    if n == 0:
        return wav
    energy = np.sqrt(np.mean(wav[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(20 * np.log10(energy / energy.max()) > threshold_db)
    if len(loud) == 0:
        return wav
    pad = int(margin * SAMPLE_RATE)
    start = max(0, loud[0] * hop - pad)
    stop = min(len(wav), (loud[-1] + 1) * hop + pad)
    return wav[start:stop]


def finish(wav: np.ndarray, plan: UttPlan) -> np.ndarray:
    """Trim silence, cut to ``plan.max_seconds`` (with a 20 ms fade-out) and peak-normalise."""
    wav = trim_silence(np.asarray(wav, dtype=np.float32))
    if plan.max_seconds > 0 and len(wav) > plan.max_seconds * SAMPLE_RATE:
        wav = wav[: int(plan.max_seconds * SAMPLE_RATE)].copy()
        fade = min(len(wav), SAMPLE_RATE // 50)
        wav[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    peak = float(np.max(np.abs(wav))) if len(wav) else 0.0
    if not np.isfinite(peak) or peak < 1e-3 or len(wav) < SAMPLE_RATE // 4:
        raise SynthError(f"{plan.utt}: synthesis produced silent or too short audio")
    return (wav * (plan.gain / peak)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# engines

_PHO_SLASH = re.compile(r"^([^\s;]+?)/(\s)", flags=re.M)


def synth_mbrola(speaker: Speaker, plan: UttPlan, espeak_path: str) -> tuple[np.ndarray, int]:
    """espeak-ng as front-end (``--pho``), phonemes ending in "/" remapped, then ``mbrola -e``.

    Returns:
        (16 kHz waveform, number of unknown diphones MBROLA skipped).
    """
    cmd = ["espeak-ng", f"--path={espeak_path}", "-v", speaker.espeak_voice, "-q", "--pho"]
    cmd += ["-p", str(int(round(plan.pitch))), "-s", str(int(round(plan.rate)))]
    front = _run(cmd, plan.text.encode("utf-8"))
    pho = front.stdout.decode("utf-8", errors="replace")
    if front.returncode != 0 or not pho.strip():
        err = front.stderr.decode(errors="replace").strip()
        raise SynthError(f"espeak-ng --pho -v {speaker.espeak_voice} failed: {err or 'no phonemes'}")
    pho = _PHO_SLASH.sub(r"\1\2", pho)
    db = f"{MBROLA_DIR}/{speaker.voice}/{speaker.voice}"
    back = _run(["mbrola", "-e", db, "-", "-.wav"], pho.encode("utf-8"))
    if back.returncode != 0:
        raise SynthError(f"mbrola {speaker.voice} failed: {back.stderr.decode(errors='replace').strip()}")
    wav, rate = _parse_wav_stream(back.stdout, f"mbrola {speaker.voice}")
    unknown = back.stderr.decode(errors="replace").lower().count("unknown")
    return _to_16k(wav, rate), unknown


def _pitch_to_hz(pitch: float, gender: str) -> float:
    """espeak-ng ``-p`` to a median F0 as measured on MBROLA voices."""
    base, at = (74.0, 20.0) if gender == "m" else (190.0, 50.0)
    return base * 2.0 ** ((pitch - at) / 68.0)


def synth_flite(speaker: Speaker, plan: UttPlan, tmp: Path) -> np.ndarray:
    """Flite with an F0 target from the plan's pitch and a duration stretch from its rate."""
    out = tmp / f"{plan.utt}.wav"
    cmd = [
        "flite",
        "-voice",
        speaker.voice,
        "--setf",
        f"int_f0_target_mean={_pitch_to_hz(plan.pitch, speaker.gender):.1f}",
    ]
    cmd += ["--setf", f"duration_stretch={170.0 / plan.rate:.3f}", "-t", plan.text, "-o", str(out)]
    proc = _run(cmd)
    if proc.returncode != 0 or not out.is_file():
        raise SynthError(
            f"flite -voice {speaker.voice} failed: {proc.stderr.decode(errors='replace').strip()}"
        )
    wav, rate = sf.read(out, dtype="float32")
    out.unlink()
    return _to_16k(wav, rate)


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def synth_festival(speaker: Speaker, plans: Sequence[UttPlan], tmp: Path) -> dict[str, np.ndarray]:
    """One ``festival -b`` process for many utterances of one voice.

    The script selects the voice, then for each utterance sets ``Duration_Stretch`` from the
    plan's rate and saves ``(SynthText ...)`` as RIFF. Text is written in the voice's encoding
    (ISO-8859-2 for Czech, ISO-8859-1 for Finnish); characters it cannot hold are dropped.
    """
    lines = [f"(voice_{speaker.voice})"]
    outs: dict[str, Path] = {}
    for plan in plans:
        out = tmp / f"{plan.utt}.wav"
        outs[plan.utt] = out
        text = plan.text.encode(speaker.encoding, errors="ignore").decode(speaker.encoding)
        lines.append(f"(Parameter.set 'Duration_Stretch {170.0 / plan.rate:.3f})")
        lines.append(f"(utt.save.wave (SynthText {_scheme_string(text)}) {_scheme_string(str(out))} 'riff)")
    script = tmp / f"{speaker.id}.scm"
    script.write_bytes(("\n".join(lines) + "\n").encode(speaker.encoding, errors="ignore"))
    proc = _run(["festival", "-b", str(script)], timeout=3600)
    results: dict[str, np.ndarray] = {}
    for utt, out in outs.items():
        if out.is_file():
            wav, rate = sf.read(out, dtype="float32")
            results[utt] = _to_16k(wav, rate)
            out.unlink()
    if not results:
        raise SynthError(
            f"festival voice_{speaker.voice} failed: {proc.stderr.decode(errors='replace').strip()[-500:]}"
        )
    return results


def _decode_g722(paths: Sequence[str]) -> list[np.ndarray]:
    """Decode G.722 prompts with one ffmpeg call: the raw streams are concatenated on stdin and
    split again by size (64 kbit/s G.722 gives exactly two 16 kHz samples per byte)."""
    blobs = [Path(p).read_bytes() for p in paths]
    cmd = [
        "ffmpeg",
        "-nostdin",
        "-loglevel",
        "error",
        "-f",
        "g722",
        "-i",
        "pipe:0",
        "-f",
        "s16le",
        "-ac",
        "1",
        "pipe:1",
    ]
    proc = _run(cmd, b"".join(blobs))
    pcm = np.frombuffer(proc.stdout[: len(proc.stdout) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0
    if proc.returncode != 0 or len(pcm) != 2 * sum(len(b) for b in blobs):
        raise SynthError(
            f"ffmpeg could not decode G.722 prompts: {proc.stderr.decode(errors='replace').strip()}"
        )
    out, pos = [], 0
    for blob in blobs:
        out.append(pcm[pos : pos + 2 * len(blob)])
        pos += 2 * len(blob)
    return out


def _read_recording(path: str) -> np.ndarray:
    wav, rate = sf.read(path, dtype="float32", always_2d=True)
    return _to_16k(wav, int(rate))


def assemble_recordings(plan: UttPlan, decoded: dict[str, np.ndarray]) -> np.ndarray:
    """Concatenate the plan's trimmed recordings with its silent gaps."""
    parts: list[np.ndarray] = []
    for i, source in enumerate(plan.sources):
        parts.append(trim_silence(decoded[source], margin=0.05))
        if i < len(plan.gaps):
            parts.append(np.zeros(int(plan.gaps[i] * SAMPLE_RATE), dtype=np.float32))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def synthesize_speaker_batch(
    speaker: Speaker, plans: Sequence[UttPlan], espeak_path: str
) -> tuple[dict[str, np.ndarray], dict[str, str], int]:
    """Make the audio of several utterances of one speaker.

    Returns:
        (utterance -> finished 16 kHz waveform, utterance -> error message for failures,
        total unknown MBROLA diphones).
    """
    done: dict[str, np.ndarray] = {}
    failed: dict[str, str] = {}
    unknown = 0
    with tempfile.TemporaryDirectory(prefix="synthvox-") as tmp_name:
        tmp = Path(tmp_name)
        raw: dict[str, np.ndarray] = {}
        if speaker.engine == "festival":
            try:
                raw = synth_festival(speaker, plans, tmp)
            except SynthError as exc:
                failed.update({p.utt: str(exc) for p in plans})
        elif speaker.engine in ("asterisk", "fillets", "ktuberling"):
            sources = sorted({s for p in plans for s in p.sources})
            try:
                if speaker.engine == "asterisk":
                    decoded = dict(zip(sources, _decode_g722(sources), strict=True))
                else:
                    decoded = {s: _read_recording(s) for s in sources}
                raw = {p.utt: assemble_recordings(p, decoded) for p in plans}
            except (SynthError, OSError, sf.LibsndfileError) as exc:
                failed.update({p.utt: str(exc) for p in plans})
        else:
            for plan in plans:
                try:
                    if speaker.engine == "mbrola":
                        raw[plan.utt], unk = synth_mbrola(speaker, plan, espeak_path)
                        unknown += unk
                    else:
                        raw[plan.utt] = synth_flite(speaker, plan, tmp)
                except SynthError as exc:
                    failed[plan.utt] = str(exc)
        for plan in plans:
            if plan.utt in failed:
                continue
            if plan.utt not in raw:
                failed[plan.utt] = f"{speaker.engine} produced no file"
                continue
            try:
                done[plan.utt] = finish(raw[plan.utt], plan)
            except SynthError as exc:
                failed[plan.utt] = str(exc)
    return done, failed, unknown
