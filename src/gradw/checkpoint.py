"""Self-describing, atomically written checkpoints that load with ``weights_only=True``.

A checkpoint is a plain dict of tensors and JSON-able values::

    {"format": "gradw-checkpoint", "kind": "enhancer" | "speaker", "step": int,
     "config": {...resolved config...}, "model_config": {...constructor arguments...},
     "versions": {"gradw": ..., "torch": ..., "python": ..., "code": git hash or None},
     "model": state_dict, "optimizer": state_dict | None, "rng": {...} | None, "extra": {...}}
"""

from __future__ import annotations

import hashlib
import platform
import random
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gradw.errors import GradwError
from gradw.fileio import atomic_path
from gradw.version import __version__

FORMAT = "gradw-checkpoint"


class CheckpointError(GradwError, ValueError):
    """A checkpoint file is missing, unreadable or not what was expected; names the file."""


def code_version() -> str | None:
    """The git commit of the source tree, when it is a git checkout (else None)."""
    root = Path(__file__).resolve().parents[3]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def software_versions() -> dict[str, str | None]:
    """Versions recorded in every checkpoint."""
    return {
        "gradw": __version__,
        "torch": str(torch.__version__),
        "numpy": str(np.__version__),
        "python": platform.python_version(),
        "code": code_version(),
    }


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states as weights_only-loadable values."""
    py_version, py_state, py_gauss = random.getstate()
    np_state = np.random.get_state()
    return {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), cached))
    torch.set_rng_state(state["torch"])


def save_checkpoint(
    path: str | Path,
    *,
    kind: str,
    model: torch.nn.Module,
    step: int,
    config: dict[str, Any],
    model_config: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": FORMAT,
        "kind": kind,
        "step": int(step),
        "config": config,
        "model_config": model_config,
        "versions": software_versions(),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "rng": rng_state(),
        "extra": extra or {},
    }
    with atomic_path(path, fsync=True) as tmp:
        torch.save(state, tmp)
    return path


def read_torch_file(path: str | Path, what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` with one-line errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for corrupt files
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(
            f"cannot read {what} {path}: not a PyTorch checkpoint or corrupt "
            f"({type(exc).__name__}: {first_line})"
        ) from None


#: key -> type of what every gradw checkpoint holds (:func:`save_checkpoint` writes them all)
REQUIRED_KEYS: dict[str, type] = {
    "kind": str,
    "step": int,
    "config": dict,
    "model_config": dict,
    "model": dict,
    "extra": dict,
}


def check_keys(path: str | Path, state: dict[str, Any]) -> None:
    """Raise :class:`CheckpointError` naming the file and the first of :data:`REQUIRED_KEYS` that
    ``state`` lacks or holds with another type."""
    for key, kind in REQUIRED_KEYS.items():
        if key not in state:
            raise CheckpointError(f"{path}: not a complete gradw checkpoint (no {key!r})")
        if not isinstance(state[key], kind) or isinstance(state[key], bool):
            raise CheckpointError(f"{path}: {key!r} is a {type(state[key]).__name__}, not a {kind.__name__}")


def load_checkpoint(path: str | Path, kind: str | None = None) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; check its format, its kind and that it holds
    every key of :data:`REQUIRED_KEYS`.

    Raises:
        CheckpointError: one line naming the file.
    """
    path = Path(path)
    state = read_torch_file(path)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a gradw checkpoint")
    if kind is not None and state.get("kind") != kind:
        raise CheckpointError(f"{path} holds a {state.get('kind')} model, expected a {kind} model")
    check_keys(path, state)
    return state


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 (16 hex digits) of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()[:16]
