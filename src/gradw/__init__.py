"""gradw: speaker verification in extreme noise with Grad-W speaker-aware enhancement.

The Python API (``gradw.Enhancer``, ``gradw.SpeakerVerifier``) loads lazily, so that ``import
gradw`` stays light.
"""

from typing import Any

from gradw.version import __version__

__all__ = ["Enhancer", "SpeakerVerifier", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Enhancer":
        from gradw.enhance.enhancer import Enhancer

        return Enhancer
    if name == "SpeakerVerifier":
        from gradw.evaluation.verifier import SpeakerVerifier

        return SpeakerVerifier
    raise AttributeError(f"module 'gradw' has no attribute {name!r}")
