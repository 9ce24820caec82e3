"""``gradw``: the entry point. Builds only the parser of the command that runs (``gradw --help``
lists them all without importing any library code) and reports every user-facing error as one
line ``gradw: error: ...`` with exit status 2 (``--debug`` shows the traceback instead).

SIGTERM (``kill``, a batch scheduler's time limit, ``docker stop``) takes the path of Ctrl-C: it
raises :class:`Terminated`, a ``KeyboardInterrupt``, where the program is, so every atomic write
under way removes its temporary file and every run lock is released; the command prints one line
and exits with 143 (130 for Ctrl-C). A second SIGTERM while that happens kills at once."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from types import FrameType

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command killed by Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM (see :func:`sigterm_raises`)."""


#: command -> (module of gradw.cli that registers it, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "build the corpus, train Grad-W and Equal-W, evaluate every system"),
    "train": ("train", "train the enhancer G against a fixed speaker network E"),
    "train-speaker": ("train", "train a speaker network E (stage 1)"),
    "adapt": ("train", "adapt a student copy of E to noisy (or G-enhanced) speech, without labels"),
    "config": ("train", "print the resolved config of a preset section with overrides"),
    "data": ("data", "build or prepare data directories"),
    "calibrate": ("calibrate", "fit a checkpoint's calibration (scores to LLRs) on the validation speakers"),
    "fuse": (
        "calibrate",
        "fit a checkpoint's quality-aware fusion weight (for @qfuse) on the training speakers",
    ),
    "evaluate": ("evaluate", "EER / minDCF of systems across SNRs and noise types"),
    "report": ("report", "rewrite OUT/report.md and OUT/plots/ from an evaluation's results"),
    "inspect": ("inspect", "plot where Grad-W and Equal-W put their weight on one utterance"),
    "enhance": ("enhance", "enhance audio files with a trained enhancer (16 kHz WAV out)"),
    "verify": ("verify", "score pairs of audio files (same speaker?), optionally through a trained G"),
    "export": ("export", "export trained models (ONNX)"),
}


def _command_of(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser with ``only``'s command group fully registered and every other command listed
    (with None, every command is only listed: enough for ``gradw --help``)."""
    parser = argparse.ArgumentParser(
        prog="gradw", description="Speaker verification in extreme noise: Grad-W speaker-aware enhancement."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = None if only is None else COMMANDS[only][0]
    registered: set[str] = set()
    for name, (module, help_text) in COMMANDS.items():
        if module != wanted:
            sub.add_parser(name, help=help_text, add_help=False)
        elif module not in registered:
            registered.add(module)
            importlib.import_module(f"gradw.cli.{module}").register(sub)
    return parser


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse, letting ``KEY=VALUE`` overrides stand anywhere on the line (after an option too)."""
    args, extra = parser.parse_known_args(argv)
    stray = [a for a in extra if a.startswith("-") or "=" not in a]
    if stray or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    return args


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM kills at once
    raise Terminated


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """While the block runs, SIGTERM raises :class:`Terminated` in the main thread (the previous
    handler is restored afterwards; elsewhere than in the main thread, nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    from gradw.errors import GradwError

    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command_of(argv)
    parser = build_parser(command if command in COMMANDS else None)
    args = _parse(parser, argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        with sigterm_raises():
            return func(args)
    except Terminated:
        print("gradw: terminated (SIGTERM)", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("gradw: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (GradwError, FileNotFoundError) as exc:
        if args.debug:
            raise
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"gradw: error: {message}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
