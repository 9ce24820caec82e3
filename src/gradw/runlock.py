"""One run per folder: a lock file that a training, an evaluation, a corpus build or a demo holds
while it writes into its folder.

The lock is ``FOLDER/.gradw.lock``, created atomically (``O_CREAT | O_EXCL``) and holding the
owner's pid, host, start time and command line. A second run into the same folder is refused with
a line naming the first. A lock left by a process that no longer runs on this host (killed with
``kill -9``, a power cut) is taken over with a message; a lock from another host cannot be checked
and is refused, naming the file to remove once that run is known to be gone. The lock is removed
when the run ends, whether it succeeded or failed; the folders the lock created (the run folder and
any missing parent) that are empty then are removed as well, so a run refused before its first
write leaves nothing behind. Ctrl-C and SIGTERM are held back from just before the lock file is
created until the run owns it, so one that comes at that moment removes the lock like any other.
Taking the lock removes the temporary files that writers killed in an earlier run left in the
folder (:func:`gradw.fileio.remove_stale_temps`).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from types import FrameType, TracebackType

from gradw.errors import GradwError
from gradw.fileio import pid_alive, remove_stale_temps

LOCK_NAME = ".gradw.lock"


_INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


class _HeldInterrupts:
    """Ctrl-C and SIGTERM recorded instead of handled, until :meth:`release` restores their
    handlers and delivers what came meanwhile (to the restored handlers, at that point).

    Python runs signal handlers in the main thread only, whichever thread the signal reached, so
    holding them means replacing the main thread's handlers (a signal mask would not do: another
    thread can take the signal and the main thread still runs the handler). Elsewhere than in the
    main thread nothing is held: an interrupt is raised in the main thread, not in this one.
    """

    def __init__(self) -> None:
        self.pending: list[int] = []
        self.previous: dict[int, object] = {}
        if threading.current_thread() is threading.main_thread():
            for signum in _INTERRUPTS:
                self.previous[signum] = signal.signal(signum, self._record)

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.pending.append(signum)

    def release(self) -> None:
        """Restore the handlers and deliver the held signals; a second call does nothing."""
        previous, self.previous = self.previous, {}
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        pending, self.pending = list(dict.fromkeys(self.pending)), []
        for signum in pending:
            signal.raise_signal(signum)


class RunLockError(GradwError, RuntimeError):
    """Another run holds the folder (or its lock cannot be read or written); names the owner."""


class RunLock:
    """The lock of one run folder, as a context manager.

    Args:
        folder: the run folder (created, with its parents, when missing).
        what: what the run is (``training``, ``evaluation``...), for the messages.
    """

    def __init__(self, folder: str | os.PathLike[str], what: str) -> None:
        self.folder = Path(folder)
        self.what = what
        self.path = self.folder / LOCK_NAME
        self._created: list[Path] = []  # the folders acquire() made, deepest first
        self._held = False

    def _owner(self) -> dict:
        try:
            owner = json.loads(self.path.read_text())
            return owner if isinstance(owner, dict) else {}
        except (OSError, ValueError):
            return {}

    def acquire(self) -> RunLock:
        """Take the lock, or raise :class:`RunLockError` naming the run that holds it."""
        if not self.folder.exists():
            missing = [p for p in (self.folder, *self.folder.parents) if not p.exists()]
            try:
                self.folder.mkdir(parents=True)
                self._created = missing
            except FileExistsError:
                pass
            except OSError as exc:
                reason = exc.strerror or exc
                raise RunLockError(f"{self.folder}: cannot create the folder ({reason})") from None
        elif not self.folder.is_dir():
            raise RunLockError(f"{self.folder}: exists and is not a folder")
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "what": self.what,
            "command": " ".join(sys.argv),
        }
        for _ in range(2):
            held = _HeldInterrupts()  # none may land between the file's creation and the record of it
            fd = -1
            try:
                try:
                    fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    pass  # fd stays -1: another run's lock, or a stale one
                except OSError as exc:
                    reason = exc.strerror or exc
                    raise RunLockError(f"{self.path}: cannot create the lock ({reason})") from None
                if fd >= 0:
                    self._held = True
                held.release()  # one that came meanwhile is raised here, inside the try
                if fd < 0:
                    self._take_over_if_stale()
                    continue
                with os.fdopen(fd, "w") as handle:
                    fd = -1  # the handle owns it now
                    handle.write(json.dumps(record) + "\n")
                # the folder is this run's now: what a killed writer left half-written goes
                remove_stale_temps(self.folder, recursive=True)
            except BaseException:  # an interrupt (SIGTERM, Ctrl-C) before the run began: no lock left
                if fd >= 0:
                    os.close(fd)
                if self._held:
                    self.path.unlink(missing_ok=True)
                    self._held = False
                self._remove_created_folders()
                raise
            finally:
                held.release()
            return self
        raise RunLockError(f"{self.path}: another run took the lock at the same moment; try again")

    def _take_over_if_stale(self) -> None:
        owner = self._owner()
        pid, host = owner.get("pid"), owner.get("host")
        here = socket.gethostname()
        if isinstance(pid, int) and host == here and not pid_alive(pid):
            print(
                f"gradw: taking over {self.path}: its {owner.get('what', 'run')} (pid {pid}, started "
                f"{owner.get('started', '?')}) is no longer running",
                file=sys.stderr,
            )
            self.path.unlink(missing_ok=True)
            return
        if not owner:
            raise RunLockError(
                f"{self.folder} is locked by {self.path}, which cannot be read; remove it if no run uses "
                "the folder"
            )
        where = "" if host == here else f" on host {host}"
        hint = "" if host == here else f"; remove {self.path} if that run is gone"
        raise RunLockError(
            f"{self.folder} is in use by another {owner.get('what', 'run')}: pid {pid}{where}, "
            f"started {owner.get('started', '?')}{hint}"
        )

    def release(self) -> None:
        """Remove the lock if this process holds it (and the folders the lock made, those that
        are empty)."""
        if not self._held:
            return
        if self._owner().get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)
        self._held = False
        self._remove_created_folders()

    def _remove_created_folders(self) -> None:
        for folder in self._created:  # deepest first: a parent empties when its child goes
            try:
                folder.rmdir()  # only when empty
            except OSError:
                break
        self._created = []

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
