"""The ``gradw`` command line: one module per command group, each a thin layer that parses its
arguments, calls a library function and prints. Library code is imported only when a command
runs, so ``gradw --help`` stays fast; every user-facing error is reported by :func:`main` as one
line with exit status 2."""

from gradw.cli.main import main

__all__ = ["main"]
