"""Atomic writes through unique temporary names, and the removal of a dead writer's leftovers."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gradw.fileio import atomic_path, atomic_write, pid_alive, remove_stale_temps, temp_path

SRC = Path(__file__).resolve().parents[1] / "src" / "gradw"
TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{32}\.tmp$")


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pid = int(child.stdout)
    assert not pid_alive(pid)
    return pid


def test_temp_names_are_unique_hidden_and_carry_the_pid(tmp_path: Path) -> None:
    names = {temp_path(tmp_path / "results.json").name for _ in range(50)}
    assert len(names) == 50
    for name in names:
        match = TEMP.match(name)
        assert match and match["name"] == "results.json" and int(match["pid"]) == os.getpid()
    long = temp_path(tmp_path / ("x" * 250 + ".wav"))
    assert len(long.name.encode()) <= 255 and TEMP.match(long.name) and long.parent == tmp_path


def test_atomic_write_replaces_the_file_and_leaves_nothing_else(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "a.txt"
    assert atomic_write(target, "one\n") == target  # parents created
    atomic_write(target, "two\n")
    assert target.read_text() == "two\n"
    atomic_write(tmp_path / "b.bin", b"\x00\x01", fsync=True)
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    atomic_write(tmp_path / "c.csv", "a,b\r\n", newline="")
    assert (tmp_path / "c.csv").read_bytes() == b"a,b\r\n"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.txt", "b.bin", "c.csv", "sub"]


@pytest.mark.parametrize("error", [ValueError("bad"), KeyboardInterrupt(), SystemExit(143)])
def test_any_error_removes_the_temporary_file_and_keeps_the_old_content(
    tmp_path: Path, error: BaseException
) -> None:
    target = tmp_path / "model.pt"
    target.write_text("old")
    seen: list[Path] = []
    with pytest.raises(type(error)), atomic_path(target) as tmp:
        seen.append(tmp)
        tmp.write_text("half")
        raise error
    assert target.read_text() == "old"
    assert not seen[0].exists() and sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_a_block_that_writes_nothing_fails_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError), atomic_path(tmp_path / "never.txt"):
        pass
    assert list(tmp_path.iterdir()) == []


def test_stale_temps_of_dead_writers_are_removed_and_others_kept(tmp_path: Path) -> None:
    dead = _dead_pid()
    nested = tmp_path / "scores" / "noisy"
    nested.mkdir(parents=True)
    stale = [tmp_path / f".results.json.{dead}.{'a' * 32}.tmp", nested / f".clean.txt.{dead}.{'b' * 32}.tmp"]
    live = tmp_path / f".results.csv.{os.getpid()}.{'c' * 32}.tmp"  # a writer still running
    others = [
        tmp_path / "results.json",
        tmp_path / f".notes.{dead}.tmp",  # not one of gradw's names
        tmp_path / f"x.{dead}.{'d' * 32}.tmp",  # not hidden
    ]
    for path in [*stale, live, *others]:
        path.write_text("x")
    assert remove_stale_temps(tmp_path) == [stale[0]]  # this folder only
    assert remove_stale_temps(tmp_path, recursive=True) == [stale[1]]
    assert all(p.exists() for p in [live, *others]) and not any(p.exists() for p in stale)
    assert remove_stale_temps(tmp_path / "missing") == []


def test_no_module_makes_temporary_names_of_its_own() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "fileio.py":
            continue
        text = path.read_text()
        for pattern in (r'\.tmp["\']', r"\bmkstemp\b", r"\buuid4\b", r"os\.replace\("):
            if re.search(pattern, text):
                offenders.append(f"{path.relative_to(SRC)}: {pattern}")
    assert offenders == []
