"""Cosine scoring of trials and WeSpeaker-format score files.

Score file format (one trial per line, whitespace-separated, as WeSpeaker's
``compute_metrics.py`` reads it)::

    <enroll_id> <test_id> <score> target|nontarget

:func:`read_scores` also accepts ``1``/``0`` in the label column.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gradw.errors import GradwError
from gradw.fileio import atomic_write

__all__ = [
    "MissingEmbeddingError",
    "Trial",
    "cosine_scores",
    "read_scores",
    "score_trials",
    "write_scores",
]

#: ``(enroll_id, test_id, is_target)``.
Trial = tuple[str, str, bool]

_LABELS = {"target": True, "nontarget": False, "1": True, "0": False}


class MissingEmbeddingError(GradwError, ValueError, KeyError):
    """Some trial utterances have no embedding.

    Subclasses both :class:`ValueError` and :class:`KeyError`. ``missing`` holds every missing
    utterance id (sorted); the message names the first few.
    """

    def __init__(self, missing: Sequence[str], n_trials: int) -> None:
        self.missing: tuple[str, ...] = tuple(missing)
        shown = ", ".join(repr(m) for m in self.missing[:5])
        more = f" and {len(self.missing) - 5} more" if len(self.missing) > 5 else ""
        super().__init__(
            f"{len(self.missing)} utterance id(s) used by {n_trials} trials have no embedding: {shown}{more}"
        )

    def __str__(self) -> str:
        """The plain message (``KeyError`` would quote it)."""
        return str(self.args[0])


def _to_numpy(x: Any) -> np.ndarray:
    """A numpy float64 copy-or-view of an array or a (CPU/GPU, grad or not) torch tensor."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _unit_rows(x: np.ndarray, what: str) -> np.ndarray:
    """L2-normalise the rows of (N, D) ``x``; zero or non-finite rows raise ValueError."""
    if not np.isfinite(x).all():
        row = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
        raise ValueError(f"{what} row {row} contains NaN or infinite values")
    norms = np.linalg.norm(x, axis=1)
    zero = norms == 0
    if zero.any():
        raise ValueError(f"{what} row {int(np.flatnonzero(zero)[0])} is all zeros; cosine undefined")
    return x / norms[:, None]


def cosine_scores(enroll: Any, test: Any) -> np.ndarray:
    """Row-wise cosine similarity.

    Args:
        enroll: (N, D) embeddings, numpy array or torch tensor.
        test: (N, D) embeddings, paired row by row with ``enroll``.

    Returns:
        (N,) float64 cosine similarities in [-1, 1].

    Raises:
        ValueError: shapes differ or are not 2-D, or a row is all zeros or non-finite.
    """
    a = _to_numpy(enroll)
    b = _to_numpy(test)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(
            f"enroll and test must both be (N, D) with equal shapes, got {a.shape} and {b.shape}"
        )
    scores = np.einsum("nd,nd->n", _unit_rows(a, "enroll"), _unit_rows(b, "test"))
    return np.clip(scores, -1.0, 1.0)


def score_trials(embeddings: Mapping[str, Any], trials: Sequence[Sequence[Any]]) -> np.ndarray:
    """Cosine score of every trial.

    Args:
        embeddings: utterance id -> (D,) embedding (numpy array or torch tensor).
        trials: sequence of ``(enroll_id, test_id, label)``; the label is ignored here.

    Returns:
        (len(trials),) float64 scores, in trial order.

    Raises:
        MissingEmbeddingError: some trial ids are not in ``embeddings`` (all are listed in
            ``.missing``; the message names the first few).
        ValueError: embeddings of unequal dimension, or degenerate (zero / non-finite).
    """
    enroll_ids = [str(tr[0]) for tr in trials]
    test_ids = [str(tr[1]) for tr in trials]
    if not trials:
        return np.zeros(0, dtype=np.float64)
    needed = list(dict.fromkeys(enroll_ids + test_ids))
    missing = sorted(u for u in needed if u not in embeddings)
    if missing:
        raise MissingEmbeddingError(missing, len(trials))
    rows = {u: i for i, u in enumerate(needed)}
    vectors = [_to_numpy(embeddings[u]).reshape(-1) for u in needed]
    dims = {v.shape[0] for v in vectors}
    if len(dims) != 1:
        raise ValueError(f"embeddings have different dimensions: {sorted(dims)}")
    matrix = _unit_rows(np.stack(vectors), "embedding")
    e = np.fromiter((rows[u] for u in enroll_ids), dtype=np.int64, count=len(enroll_ids))
    t = np.fromiter((rows[u] for u in test_ids), dtype=np.int64, count=len(test_ids))
    return np.clip(np.einsum("nd,nd->n", matrix[e], matrix[t]), -1.0, 1.0)


def _label_word(label: Any) -> str:
    """``'target'`` / ``'nontarget'`` for a bool, 0/1, or either word."""
    if isinstance(label, str):
        key = label.strip().lower()
        if key in _LABELS:
            return "target" if _LABELS[key] else "nontarget"
        raise ValueError(f"unknown trial label {label!r}")
    if isinstance(label, bool | np.bool_ | int | np.integer) and label in (0, 1):
        return "target" if bool(label) else "nontarget"
    raise ValueError(f"unknown trial label {label!r}")


def write_scores(path: str | os.PathLike[str], trials: Sequence[Sequence[Any]], scores: Any) -> None:
    """Write a WeSpeaker score file atomically (temporary file in the same folder, then rename).

    Args:
        path: output file; missing parent folders are created.
        trials: sequence of ``(enroll_id, test_id, label)`` with label bool, 0/1 or
            ``'target'``/``'nontarget'``.
        scores: (len(trials),) scores. Written with ``repr`` precision, so they read back exactly.

    Raises:
        ValueError: length mismatch, an id containing whitespace, a bad label or score.
    """
    s = _to_numpy(scores).reshape(-1)
    if s.shape[0] != len(trials):
        raise ValueError(f"length mismatch: {len(trials)} trials but {s.shape[0]} scores")
    lines = []
    for k, (trial, score) in enumerate(zip(trials, s, strict=True)):
        if len(trial) < 3:
            raise ValueError(f"trial {k} needs (enroll_id, test_id, label), got {trial!r}")
        enroll_id, test_id = str(trial[0]), str(trial[1])
        for uid in (enroll_id, test_id):
            if not uid or any(ch.isspace() for ch in uid):
                raise ValueError(f"trial {k}: utterance id {uid!r} is empty or contains whitespace")
        if not np.isfinite(score):
            raise ValueError(f"trial {k}: score {score!r} is not finite")
        lines.append(f"{enroll_id} {test_id} {float(score)!r} {_label_word(trial[2])}\n")
    atomic_write(path, "".join(lines), fsync=True)


def read_scores(path: str | os.PathLike[str]) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """Read a score file ``enroll test score label`` (label ``target``/``nontarget`` or ``1``/``0``).

    Blank lines and lines starting with ``#`` are skipped.

    Returns:
        ``(enroll_ids, test_ids, scores, labels)``: two lists of str, (N,) float64 scores and
        (N,) bool labels (True = target).

    Raises:
        ValueError: a malformed line (naming the file and line number).
        FileNotFoundError: no such file.
    """
    enroll: list[str] = []
    test: list[str] = []
    scores: list[float] = []
    labels: list[bool] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            if len(fields) != 4:
                raise ValueError(
                    f"{path}:{lineno}: expected 'enroll test score target|nontarget', got {line.strip()!r}"
                )
            try:
                value = float(fields[2])
            except ValueError:
                raise ValueError(f"{path}:{lineno}: score {fields[2]!r} is not a number") from None
            if not np.isfinite(value):
                raise ValueError(f"{path}:{lineno}: score {fields[2]!r} is not finite")
            key = fields[3].lower()
            if key not in _LABELS:
                raise ValueError(f"{path}:{lineno}: label {fields[3]!r} is not target/nontarget/1/0")
            enroll.append(fields[0])
            test.append(fields[1])
            scores.append(value)
            labels.append(_LABELS[key])
    return enroll, test, np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
