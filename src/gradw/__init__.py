"""gradw: speaker verification in extreme noise with Grad-W speaker-aware enhancement.

The Python API (``gradw.Enhancer``, ``gradw.SpeakerVerifier``) loads lazily, so that ``import
gradw`` stays light.
"""

from typing import Any

__version__ = "0.1.0"

__all__ = ["Enhancer", "SpeakerVerifier", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("Enhancer", "SpeakerVerifier"):
        from gradw import api

        return getattr(api, name)
    raise AttributeError(f"module 'gradw' has no attribute {name!r}")
