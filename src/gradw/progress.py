"""Progress a batch job can read: a bar on a terminal, a plain line now and then elsewhere.

Every long loop of gradw that is not a training (a training has its own lines, with the loss:
:class:`gradw.training.loop.RunLogger`) reports through :class:`Progress`: calibration, quality
fusion, corpus builds, the VoxCeleb header scan and file enhancement. On a terminal it is a
``tqdm`` bar; off a terminal (output redirected to a file, a scheduler's log) the bar would write
nothing readable, so it prints one line at most every ``interval`` seconds and one at the end::

    [calibration] 1,200/3,900 utt-cond (31%) | elapsed 2m10s, left 4m53s
    [calibration] 3,900 utt-cond in 7m02s

``quiet`` silences both.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, TypeVar

from tqdm import tqdm

__all__ = ["Progress", "duration", "track"]

T = TypeVar("T")

#: seconds between two plain lines by default
DEFAULT_INTERVAL = 60.0


def duration(seconds: float) -> str:
    """``75`` -> ``"1m15s"``, ``3720`` -> ``"1h02m"``."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class Progress:
    """Count done work; show it as a bar on a terminal or as plain lines elsewhere.

    Args:
        desc: what is being done, the lines' prefix (``[desc]``).
        total: how much there is to do, when known (gives the percentage and the time left).
        unit: what is counted (``"file"``, ``"utt-cond"``).
        quiet: show nothing.
        interval: least seconds between two plain lines.
        stream: where to write (default ``sys.stderr``, read at construction).
        clock: seconds, monotonic (a parameter for the tests).
    """

    def __init__(
        self,
        desc: str,
        total: int | None = None,
        unit: str = "item",
        *,
        quiet: bool = False,
        interval: float = DEFAULT_INTERVAL,
        stream: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.desc, self.total, self.unit = desc, total, unit
        self.done = 0
        self._stream = sys.stderr if stream is None else stream
        self._clock, self._interval = clock, interval
        self._start = self._last = clock()
        on_terminal = bool(getattr(self._stream, "isatty", lambda: False)())
        self._bar = (
            tqdm(total=total, desc=desc, unit=unit, file=self._stream, dynamic_ncols=True)
            if on_terminal and not quiet
            else None
        )
        self._plain = not on_terminal and not quiet
        self._closed = False

    def update(self, n: int = 1) -> None:
        """Count ``n`` more done; off a terminal, print a line when ``interval`` has passed."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self._plain and (now := self._clock()) - self._last >= self._interval:
            self._last = now
            self._print(self._status(now))

    def close(self, completed: bool = True) -> None:
        """End the bar, or print the final line (what was done, in how long) if anything was.

        ``completed=False`` (an error is on its way out) prints no final line: the error is the
        one line the user gets."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self._plain and self.done and completed:
            self._print(f"{self.done:,} {self.unit} in {duration(self._clock() - self._start)}")

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        self.close(completed=kind is None)

    def _status(self, now: float) -> str:
        elapsed = now - self._start
        if not self.total:
            return f"{self.done:,} {self.unit} | elapsed {duration(elapsed)}"
        left = elapsed / self.done * max(0, self.total - self.done) if self.done else 0.0
        return (
            f"{self.done:,}/{self.total:,} {self.unit} ({100 * self.done / self.total:.0f}%) | "
            f"elapsed {duration(elapsed)}, left {duration(left)}"
        )

    def _print(self, line: str) -> None:
        print(f"[{self.desc}] {line}", file=self._stream, flush=True)


def track(
    items: Iterable[T], desc: str, total: int | None = None, unit: str = "item", *, quiet: bool = False
) -> Iterator[T]:
    """Yield ``items``, counting each in a :class:`Progress` (``total`` from ``len`` when it has one)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(desc, total, unit, quiet=quiet) as progress:  # a loop left early: no final line
        for item in items:
            yield item
            progress.update()
