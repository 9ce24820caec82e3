"""Plain Kaldi-style list files: reading and writing key-value maps, atomically, with errors that
name the file and the first offending keys or line numbers.

Every reader fails with one :class:`DataError`; every writer writes a temporary file, then
``os.replace``, so nothing is left half-written.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from gradw.errors import GradwError
from gradw.fileio import atomic_write

_MAX_SHOWN = 5


class DataError(GradwError, ValueError):
    """A data file or directory is missing, malformed or inconsistent.

    The message names the file (or directory) and the first offending keys or lines.
    """


def format_offenders(items: Iterable[object], limit: int = _MAX_SHOWN) -> str:
    """Join the first ``limit`` items with commas and add "and N more" for the rest.

    >>> format_offenders(["a", "b", "c"], limit=2)
    'a, b and 1 more'
    """
    items = list(items)
    shown = ", ".join(str(item) for item in items[:limit])
    if len(items) > limit:
        return f"{shown} and {len(items) - limit} more"
    return shown


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write a data list atomically (UTF-8, ``\n`` line ends, flushed to disk; parents created):
    :func:`gradw.fileio.atomic_write`."""
    atomic_write(path, text, newline="\n", fsync=True)


def _read_lines(path: Path) -> list[tuple[int, str]]:
    """Return ``(line_number, stripped_line)`` for the non-blank lines of a text file (UTF-8; a
    byte-order mark at the start, as some editors write, is dropped)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1) if line.strip()]


def read_map(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read a ``key value`` file (``wav.scp``, ``utt2spk``, ...) into a dict.

    The key is the first whitespace-separated token, the value the rest of the line (so values
    may contain spaces). Blank lines are ignored.

    Raises:
        DataError: the file is missing, a line has no value, or a key repeats (the message names
            the file and the offending line numbers).
    """
    path = Path(path)
    mapping: dict[str, str] = {}
    first_line: dict[str, int] = {}
    no_value: list[int] = []
    duplicates: list[str] = []
    for number, line in _read_lines(path):
        parts = line.split(maxsplit=1)
        if len(parts) < 2:
            no_value.append(number)
            continue
        key, value = parts[0], parts[1].strip()
        if key in mapping:
            duplicates.append(f"{key!r} (lines {first_line[key]} and {number})")
            continue
        mapping[key] = value
        first_line[key] = number
    problems = []
    if no_value:
        problems.append(f"line(s) with no value: {format_offenders(no_value)}")
    if duplicates:
        problems.append(f"duplicate key(s): {format_offenders(duplicates)}")
    if problems:
        raise DataError(f"{path}: " + "; ".join(problems))
    return mapping


def _check_key(path: Path, key: str) -> None:
    if not key or any(ch.isspace() for ch in key):
        raise DataError(f"{path}: key {key!r} is empty or contains whitespace")


def write_map(path: str | os.PathLike[str], mapping: Mapping[str, object]) -> None:
    """Write ``mapping`` as ``key value`` lines sorted by key, atomically.

    Values are written with ``str`` (floats with ``repr`` so they read back exactly). Keys must
    be non-empty and free of whitespace; values must be non-empty and on one line.
    """
    path = Path(path)
    lines = []
    for key in sorted(mapping):
        _check_key(path, key)
        value = mapping[key]
        text = repr(value) if isinstance(value, float) else str(value)
        if not text.strip() or "\n" in text or "\r" in text:
            raise DataError(f"{path}: value for key {key!r} is empty or spans several lines")
        lines.append(f"{key} {text}\n")
    atomic_write_text(path, "".join(lines))
