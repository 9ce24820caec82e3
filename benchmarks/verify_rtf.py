"""Real-time factor of verification: what one trial costs with each kind of system.

Run by hand (not part of the tests)::

    python benchmarks/verify_rtf.py                                     # CAM++ alone, 10 s and 60 s
    python benchmarks/verify_rtf.py --system gradw=exp/demo/gradw/best.pt \\
        --system adapted=exp/demo/adapted/best.pt --threads 1 2

For every system and every length S this writes two files of S seconds of noisy speech-like audio
(``_common.speech_like`` at 0 dB, 16-bit WAV at 16 kHz) and times ``SpeakerVerifier.verify_files``
on the pair (both files read and embedded, the cosine score, the calibrated decision: what
``gradw verify`` runs per trial, less the interpreter's start), median of ``--repeats`` calls after a
warm-up call. RTF = wall time / the audio of the trial (2 S seconds); lower is faster, 1 is real
time. Systems: ``noisy`` (the pretrained CAM++ alone) always, and each ``--system NAME=CHECKPOINT``
(a G of ``gradw train``: E behind G's mask; a student of ``gradw adapt``: the student as E, behind
its G if it has one), as ``SpeakerVerifier(enhancer=CHECKPOINT)`` loads it. The weights do not
change the time, only the architecture does.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import soundfile as sf
from _common import (
    SR,
    machine_summary,
    markdown_table,
    median,
    noisy_mixture,
    set_threads,
    speech_like,
    time_calls,
)

from gradw.evaluation.verifier import SpeakerVerifier


def parse_system(text: str) -> tuple[str, Path]:
    """``NAME=CHECKPOINT`` -> (name, path); the file must exist."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=CHECKPOINT, got {text!r}")
    if not Path(path).is_file():
        raise argparse.ArgumentTypeError(f"{path}: no such checkpoint")
    return name, Path(path)


def write_pair(folder: Path, seconds: float) -> tuple[Path, Path]:
    """Two noisy speech-like 16-bit WAVs of ``seconds`` (different content)."""
    paths = []
    for seed in (0, 1):
        path = folder / f"s{seconds:g}-{seed}.wav"
        audio = noisy_mixture(speech_like(seconds, seed=seed), 0.0, seed=seed + 1)
        sf.write(path, audio, SR, subtype="PCM_16")
        paths.append(path)
    return paths[0], paths[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--system", action="append", type=parse_system, default=[], metavar="NAME=CKPT")
    parser.add_argument("--seconds", type=float, nargs="+", default=[10.0, 60.0])
    parser.add_argument("--threads", type=int, nargs="+", default=[2])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    systems = [("noisy (CAM++)", None), *args.system]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        pairs = {s: write_pair(Path(tmp), s) for s in args.seconds}
        for threads in args.threads:
            set_threads(threads)
            for name, checkpoint in systems:
                verifier = SpeakerVerifier() if checkpoint is None else SpeakerVerifier(enhancer=checkpoint)
                row = [name, threads]
                for seconds in args.seconds:
                    a, b = pairs[seconds]
                    trial = lambda v=verifier, a=a, b=b: v.verify_files(a, b)  # noqa: E731
                    wall = median(time_calls(trial, args.repeats))
                    row += [f"{wall:.3f}", f"{wall / (2 * seconds):.4f}"]
                rows.append(row)
    headers = ["system", "threads"]
    for seconds in args.seconds:
        headers += [f"{seconds:g} s pair: wall s", f"{seconds:g} s pair: RTF"]
    print(machine_summary())
    print(markdown_table(headers, rows))


if __name__ == "__main__":
    main()
