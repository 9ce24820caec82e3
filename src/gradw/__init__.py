"""gradw: speaker verification in extreme noise with Grad-W speaker-aware enhancement."""

__version__ = "0.1.0"
