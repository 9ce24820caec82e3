"""The command line's frame: the command table, lazy parsers, one-line errors, overrides anywhere."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from gradw.cli.main import COMMANDS, build_parser, main
from gradw.cli.train import SECTION_NAMES
from gradw.config import SECTIONS


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
