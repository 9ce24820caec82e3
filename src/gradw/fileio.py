"""Atomic file writes, and the removal of what a killed writer left behind.

Every file gradw writes whole (checkpoints, configs, lists, score files, results, reports, plots,
audio, ONNX models, caches) goes through :func:`atomic_path` or :func:`atomic_write`: the data go
to a hidden temporary file beside the destination, named ``.{name}.{pid}.{uuid}.tmp``, which
replaces the destination (``os.replace``) only once it is complete. On any error, a
``KeyboardInterrupt`` or ``SystemExit`` included (``gradw`` turns SIGTERM into the former), the
temporary file is removed and the destination is left as it was. Unique names let two processes
write the same destination at once (the last complete file wins) and name the writer's pid, so a
run that opens a folder removes the temporary files of processes that no longer exist
(:func:`remove_stale_temps`: a writer killed with ``kill -9`` cannot clean up after itself).
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write", "blocking_file", "pid_alive", "remove_stale_temps", "temp_path"]

#: ``.{name}.{pid}.{uuid}.tmp``: the pid of the writer and 32 hex digits
_TEMP_NAME = re.compile(r"^\..*\.(?P<pid>[0-9]+)\.[0-9a-f]{32}\.tmp$", re.DOTALL)
_NAME_MAX = 255  # bytes in a file name on the usual file systems


def temp_path(path: str | os.PathLike[str]) -> Path:
    """A unique temporary path beside ``path``: ``.{name}.{pid}.{uuid}.tmp`` (the name is
    shortened when the result would be longer than a file system allows)."""
    path = Path(path)
    suffix = f".{os.getpid()}.{uuid.uuid4().hex}.tmp"
    name = path.name
    room = _NAME_MAX - 1 - len(suffix.encode())
    if len(name.encode()) > room:
        name = name.encode()[:room].decode(errors="ignore")
    return path.with_name(f".{name}{suffix}")


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, fsync: bool = False) -> Iterator[Path]:
    """A temporary path to write the whole of ``path`` to; it replaces ``path`` when the block ends.

    Usage::

        with atomic_path(out / "model.pt") as tmp:
            torch.save(state, tmp)

    The block must create the file at the yielded path (give writers that append a suffix of
    their own, such as ``np.savez``, an open file instead). The parent folder must exist.

    Args:
        path: the destination.
        fsync: flush the temporary file to disk before it replaces ``path``.

    Raises:
        whatever the block raises (the temporary file removed, ``path`` untouched), or the
        ``OSError`` of a failed rename.
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        yield tmp
        if fsync:
            _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write(
    path: str | os.PathLike[str],
    data: str | bytes,
    *,
    encoding: str = "utf-8",
    newline: str | None = None,
    fsync: bool = False,
) -> Path:
    """Write ``data`` (text or bytes) to ``path`` atomically (see :func:`atomic_path`); parent
    folders are created.

    Args:
        path: the destination.
        data: the whole content; ``str`` is encoded with ``encoding`` (``newline`` as for
            :func:`open`: None writes ``\\n`` as the platform's line end).
        fsync: flush to disk before the rename.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, fsync=fsync) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            with open(tmp, "w", encoding=encoding, newline=newline) as handle:
                handle.write(data)
    return path


def blocking_file(folder: str | os.PathLike[str]) -> Path | None:
    """What keeps ``folder`` from being (or becoming) a folder: the folder itself, or the nearest of
    its parents that exists, when that is not a folder; None when nothing does."""
    folder = Path(folder).absolute()
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    return existing if existing is not None and not existing.is_dir() else None


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    except (OverflowError, ValueError):  # not a pid this system can have
        return False
    return True


def remove_stale_temps(folder: str | os.PathLike[str], recursive: bool = False) -> list[Path]:
    """Remove the temporary files of :func:`atomic_path` in ``folder`` whose writer no longer runs.

    Only names of the form ``.{name}.{pid}.{uuid}.tmp`` with a pid that no process on this machine
    has are removed; call it on a folder no other machine writes into (a run's locked folder, an
    output folder of this process). A missing folder is not an error.

    Args:
        folder: the folder to clean.
        recursive: clean its subfolders as well.

    Returns:
        The files removed.
    """
    removed: list[Path] = []
    alive: dict[int, bool] = {os.getpid(): True}
    stack = [Path(folder)]
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for entry in entries:
            if recursive and entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
                continue
            match = _TEMP_NAME.match(entry.name)
            if match is None or not entry.is_file(follow_symlinks=False):
                continue
            pid = int(match["pid"])
            if pid not in alive:
                alive[pid] = pid_alive(pid)
            if not alive[pid]:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed
