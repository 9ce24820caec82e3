"""The command line's frame: the command table, lazy parsers, one-line errors, overrides anywhere."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gradw.cli.main import COMMANDS, build_parser, main
from gradw.cli.train import SECTION_NAMES
from gradw.config import SECTIONS
from gradw.runlock import LOCK_NAME


def test_every_command_is_registered_by_its_module() -> None:
    for name in COMMANDS:
        parser = build_parser(only=name)
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        command = sub.choices[name]
        nested = [a for a in command._actions if isinstance(a, argparse._SubParsersAction)]
        assert command.get_default("func") is not None or nested, name


def test_the_config_sections_named_by_the_cli_are_the_configs() -> None:
    assert set(SECTION_NAMES) == set(SECTIONS)


def test_help_lists_every_command_without_importing_the_library() -> None:
    code = (
        "import sys; from gradw.cli.main import build_parser; build_parser().format_help(); "
        "print(sorted(m for m in sys.modules if m.startswith('gradw.')"
        " and not m.startswith(('gradw.cli', 'gradw.version'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
    help_text = subprocess.run(
        [sys.executable, "-m", "gradw", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for name in COMMANDS:
        assert name in help_text


def test_a_gradw_error_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--config", "tiny", "optim.nonsense=1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gradw: error: ") and "optim.nonsense" in err


def test_debug_shows_the_error_itself() -> None:
    from gradw.config import ConfigError

    with pytest.raises(ConfigError, match="optim.nonsense"):
        main(["--debug", "config", "--config", "tiny", "optim.nonsense=1"])


def test_overrides_may_follow_an_option(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["config", "--config", "tiny", "seed=3", "--section", "train", "optim.steps=8"]) == 0
    out = capsys.readouterr().out
    assert "seed: 3" in out and "steps: 8" in out
    # a stray word that is no override is refused in one line
    assert main(["config", "--config", "tiny", "--section", "train", "nonsense"]) == 2
    assert "'nonsense' is not of the form key=value" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# SIGTERM takes the path of Ctrl-C


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "gradw", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(found: Callable[[], bool], proc: subprocess.Popen, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not found():
        assert proc.poll() is None, f"finished before the signal: {proc.communicate()}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_sigterm_mid_write_removes_the_temporary_file_and_exits_143(tmp_path: Path) -> None:
    from helpers import make_enhancer_checkpoint, toy_tone, write_float_wav

    checkpoint = make_enhancer_checkpoint(tmp_path / "g.pt")
    write_float_wav(tmp_path / "in" / "long.wav", toy_tone(16000 * 900, seed=0))  # 15 minutes
    out = tmp_path / "out"
    proc = _start(
        ["enhance", str(tmp_path / "in"), "-o", str(out), "--checkpoint", str(checkpoint)], tmp_path
    )
    try:
        _wait_for(lambda: any(out.glob(".long.wav.*.tmp")), proc)  # the output is being written
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143
    assert err == "gradw: terminated (SIGTERM)\n"
    assert list(out.iterdir()) == []  # no temporary file, no partial output


def test_sigterm_releases_the_run_lock(toy_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    args = [
        "evaluate", "--test", str(toy_corpus / "test"), "--augment", str(toy_corpus / "augment" / "test"),
        "--scorer", "resnet-tiny", "--scorer-checkpoint", "random", "--snrs", "0", "--categories", "noise",
        "--n-boot", "20", "--quiet", "--out", str(out),
    ]  # fmt: skip
    proc = _start(args, tmp_path)
    try:
        _wait_for(lambda: (out / LOCK_NAME).exists(), proc)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143 and err == "gradw: terminated (SIGTERM)\n"
    assert not (out / LOCK_NAME).exists() and not list(tmp_path.rglob("*.tmp"))


def test_sigterm_handling_is_undone_when_main_returns(capsys: pytest.CaptureFixture[str]) -> None:
    before = signal.getsignal(signal.SIGTERM)
    assert main(["config", "--config", "tiny"]) == 0
    assert signal.getsignal(signal.SIGTERM) is before
