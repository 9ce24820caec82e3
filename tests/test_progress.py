"""gradw.progress: plain lines off a terminal, at most one per interval, and a final one."""

from __future__ import annotations

import io

import pytest

from gradw.progress import Progress, duration, track


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    "seconds, text",
    [(0, "0m00s"), (59.6, "1m00s"), (75, "1m15s"), (3599, "59m59s"), (3720, "1h02m"), (-3, "0m00s")],
)
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_plain_lines_at_most_one_per_interval_with_time_left() -> None:
    stream, clock = io.StringIO(), Clock()
    with Progress("calibration", total=100, unit="utt-cond", interval=60, stream=stream, clock=clock) as bar:
        clock.now += 30
        bar.update(10)  # 30 s: too early for a line
        assert stream.getvalue() == ""
        clock.now += 30
        bar.update(15)  # 60 s, 25 done: 2.4 s each, 75 left -> 180 s
        clock.now += 10
        bar.update(5)  # 10 s after the last line: none
    lines = stream.getvalue().splitlines()
    assert lines == [
        "[calibration] 25/100 utt-cond (25%) | elapsed 1m00s, left 3m00s",
        "[calibration] 30 utt-cond in 1m10s",
    ]


def test_unknown_total_counts_without_a_percentage() -> None:
    stream, clock = io.StringIO(), Clock()
    bar = Progress("fusion", unit="utt-cond", interval=5, stream=stream, clock=clock)
    clock.now += 7
    bar.update(1234)
    bar.close()
    bar.close()  # twice is once
    assert stream.getvalue().splitlines() == [
        "[fusion] 1,234 utt-cond | elapsed 0m07s",
        "[fusion] 1,234 utt-cond in 0m07s",
    ]


def test_quiet_and_nothing_done_print_nothing() -> None:
    stream, clock = io.StringIO(), Clock()
    with Progress("x", total=3, quiet=True, interval=0, stream=stream, clock=clock) as bar:
        bar.update(3)
    with Progress("y", total=3, interval=0, stream=stream, clock=clock):
        pass
    assert stream.getvalue() == ""


def test_a_terminal_gets_a_bar_not_lines() -> None:
    stream = Terminal()
    with Progress("enhance", total=2, unit="file", interval=0, stream=stream) as bar:
        bar.update(2)
    text = stream.getvalue()
    assert "enhance" in text and "2/2" in text
    assert "[enhance]" not in text


def test_track_yields_every_item_and_reports_them(capsys: pytest.CaptureFixture[str]) -> None:
    items = ["a", "b", "c"]
    assert list(track(items, "scan", unit="file")) == items
    err = capsys.readouterr().err  # pytest's capture is not a terminal
    assert err.splitlines()[-1].startswith("[scan] 3 file in ")


def test_an_error_leaves_no_final_line() -> None:
    """An error inside the loop is the one line the user gets: no "done" line after it."""
    stream, clock = io.StringIO(), Clock()
    progress = Progress("synthvox", total=5, interval=60, stream=stream, clock=clock)
    with pytest.raises(ValueError, match="bad file"), progress as bar:
        bar.update(2)
        raise ValueError("bad file")
    assert stream.getvalue() == ""


def test_a_track_left_early_prints_no_final_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(RuntimeError):
        for item in track(range(5), "scan"):
            if item == 2:
                raise RuntimeError("stop")
    assert "[scan]" not in capsys.readouterr().err
