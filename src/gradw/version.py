"""The version of gradw (one place; checkpoints and manifests record it)."""

__version__ = "0.1.0"
