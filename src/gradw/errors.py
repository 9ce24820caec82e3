"""The one base class of every error gradw reports to a user.

Each part of gradw raises its own subclass (a bad config key, a malformed data list, an unreadable
audio file or checkpoint, a failed export...), and each message names the file, key or value at
fault. The command line catches :class:`GradwError` alone and prints its message as one line
(``gradw: error: ...``) with exit status 2; ``--debug`` shows the traceback instead.

The subclasses keep a built-in base as well (``ValueError``, ``RuntimeError``...), so code that
catches those keeps working.
"""

from __future__ import annotations

__all__ = ["GradwError"]


class GradwError(Exception):
    """Base of every user-facing gradw error; its message is one line that names the culprit."""
