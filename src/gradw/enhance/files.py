"""Folders in, folders out: any format libsndfile reads, any rate and
channel count (downmixed and resampled like :func:`gradw.audio.io.read_audio`); outputs are
16-bit 16 kHz WAV files mirroring the input tree, written atomically. Unreadable inputs are
reported by name at the end and do not stop the others. One input file with an output that names
an audio file (``x.flac -> out.wav``) writes that file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gradw.audio.io import WRITE_FORMATS
from gradw.enhance.enhancer import EnhanceError, Enhancer
from gradw.fileio import blocking_file, remove_stale_temps
from gradw.progress import track

#: Suffixes picked up when a directory is scanned (case-insensitive); files named explicitly are
#: always attempted, whatever their suffix.
AUDIO_SUFFIXES: frozenset[str] = frozenset(
    {
        ".wav",
        ".wave",
        ".flac",
        ".ogg",
        ".oga",
        ".opus",
        ".mp3",
        ".aif",
        ".aiff",
        ".aifc",
        ".au",
        ".snd",
        ".caf",
        ".w64",
        ".rf64",
        ".sph",
        ".nist",
    }
)
# ---------------------------------------------------------------------------------------------
# files


@dataclass
class EnhanceReport:
    """What :func:`enhance_files` did.

    Attributes:
        written: output files, in input order.
        failed: (input, reason) for every input that could not be enhanced.
    """

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def _scan(directory: Path) -> list[Path]:
    """Audio files under ``directory`` (recursive, sorted; hidden files and folders skipped)."""
    found = []
    for path in directory.rglob("*"):
        rel = path.relative_to(directory)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.suffix.lower() in AUDIO_SUFFIXES and path.is_file():
            found.append(path)
    return sorted(found)


def names_a_file(output: str | Path) -> bool:
    """Whether an output path names an audio file rather than a folder: it has an audio suffix
    (:data:`AUDIO_SUFFIXES`) and is not an existing directory."""
    path = Path(output)
    return path.suffix.lower() in AUDIO_SUFFIXES and not path.is_dir()


def _check_folder(out: Path, folder: Path) -> None:
    """Refuse an output whose folder cannot exist (:func:`gradw.fileio.blocking_file`)."""
    blocker = blocking_file(folder)
    if blocker is not None:
        raise EnhanceError(f"the output {out}: {blocker} exists and is not a folder")


def _single_file_job(
    inputs: Sequence[str | Path], out: Path
) -> tuple[list[tuple[Path, Path]], list[tuple[Path, str]]]:
    """One input file onto the output file ``out`` (see :func:`collect_inputs`)."""
    paths = [Path(item) for item in inputs]
    if len(paths) != 1 or paths[0].is_dir():
        what = f"{len(paths)} inputs are given" if len(paths) != 1 else f"the input {paths[0]} is a folder"
        raise EnhanceError(
            f"the output {out} names an audio file, but {what}: give an output folder "
            "(a file output takes exactly one input file)"
        )
    if out.suffix.lower() not in WRITE_FORMATS:
        raise EnhanceError(
            f"the output {out}: cannot write {out.suffix} files; use one of {', '.join(WRITE_FORMATS)}"
        )
    _check_folder(out, out.parent)
    source = paths[0]
    if not source.exists():
        return [], [(source, "no such file or directory")]
    if out.resolve() == source.resolve() or (out.exists() and out.samefile(source)):
        raise EnhanceError(f"the output {out} would overwrite the input file; choose another output file")
    return [(source, out)], []


def collect_inputs(
    inputs: Sequence[str | Path], out_dir: str | Path
) -> tuple[list[tuple[Path, Path]], list[tuple[Path, str]]]:
    """Map inputs onto output files.

    A file ``x/a.flac`` becomes ``OUT/a.wav``; a directory ``D`` is scanned recursively for audio
    files (:data:`AUDIO_SUFFIXES`; hidden entries skipped, and ``out_dir`` when it lies inside
    ``D``) and ``D/sub/b.mp3`` becomes ``OUT/sub/b.wav``. When ``out_dir`` names an audio file
    (:func:`names_a_file`: ``out.wav`` or ``out.flac``, not an existing folder), it is the output
    of the one input file.

    Returns:
        ``(jobs, missing)``: (input, output) pairs, and (path, reason) for inputs that do not
        exist.

    Raises:
        EnhanceError: two inputs map onto the same output, an output would overwrite an input,
            an output folder that is (or lies under) a file, or a file output with several
            inputs, a folder input, or a suffix gradw does not write.
    """
    out = Path(out_dir)
    if names_a_file(out):
        return _single_file_job(inputs, out)
    _check_folder(out, out)
    out_resolved = out.resolve()
    jobs: list[tuple[Path, Path]] = []
    missing: list[tuple[Path, str]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            # an output folder strictly inside an input folder may hold earlier outputs: skip it
            nested = out_resolved != path.resolve() and out_resolved.is_relative_to(path.resolve())
            for f in _scan(path):
                if not (nested and f.resolve().is_relative_to(out_resolved)):
                    jobs.append((f, out / f.relative_to(path).with_suffix(".wav")))
        elif path.exists():
            jobs.append((path, out / Path(path.name).with_suffix(".wav")))
        else:
            missing.append((path, "no such file or directory"))
    seen: dict[Path, Path] = {}
    sources = {src.resolve() for src, _ in jobs}
    for src, dst in jobs:
        key = dst.resolve()
        if key in seen:
            raise EnhanceError(
                f"{seen[key]} and {src} would both be written to {dst}; enhance them separately"
            )
        if key in sources:
            raise EnhanceError(
                f"the output {dst} would overwrite an input file; choose another output folder"
            )
        seen[key] = src
    return jobs, missing


def enhance_files(
    enhancer: Enhancer, inputs: Sequence[str | Path], out_dir: str | Path, quiet: bool = False
) -> EnhanceReport:
    """Enhance files and directories into ``out_dir``, or one file into the file ``out_dir``
    names (see :func:`collect_inputs`).

    Each output is written atomically; an input that cannot be read (or an output that cannot be
    written) is recorded in the report and the others go on. Temporary files that a killed earlier
    run left in the output folders are removed first (:func:`gradw.fileio.remove_stale_temps`).

    Raises:
        EnhanceError: nothing to enhance, or clashing outputs (before anything is written).
    """
    from gradw.audio.io import AudioError

    jobs, missing = collect_inputs(inputs, out_dir)
    if not jobs and not missing:
        raise EnhanceError(f"no audio files found in {', '.join(str(item) for item in inputs)}")
    for folder in sorted({dst.parent for _, dst in jobs}):  # what a killed earlier run left half-written
        remove_stale_temps(folder)
    report = EnhanceReport(failed=list(missing))
    for src, dst in track(jobs, "enhance", unit="file", quiet=quiet):
        try:
            enhancer.enhance_file(src, dst)
        except (AudioError, OSError) as exc:
            report.failed.append((src, getattr(exc, "reason", None) or str(exc)))
        else:
            report.written.append(dst)
    return report
