"""Long recordings embedded by windows: where the windows fall, and how their embeddings make one.

An utterance longer than the window (``window_seconds``) is cut into the fewest consecutive
windows of at most that length, of equal length to a sample, no overlap (:func:`window_bounds`);
each window is embedded on its own, as a short recording would be, and the recording's embedding
is the length-weighted mean of the windows' L2-normalised embeddings, L2-normalised
(:func:`embed_windows`). The evaluation (:mod:`gradw.evaluation.systems`,
:mod:`gradw.evaluation.grid`) and the verifier (:mod:`gradw.evaluation.verifier`) both embed long
recordings this way, so memory is bounded by one window whatever the length. A recording no
longer than the window is embedded whole, exactly as without one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

__all__ = ["DEFAULT_WINDOW_SECONDS", "embed_windows", "window_bounds", "window_sizes"]

#: the window of :class:`gradw.SpeakerVerifier` and ``gradw verify`` (``gradw evaluate``'s is
#: ``evaluate.window_seconds``, 30 s by default as well)
DEFAULT_WINDOW_SECONDS = 30.0


def window_bounds(
    num_samples: int, window_seconds: float | None, sample_rate: int = 16000
) -> Sequence[tuple[int, int]]:
    """The windows a waveform of ``num_samples`` is embedded by: ``[(start, stop), ...]``.

    One window ``(0, N)`` when ``window_seconds`` is None or N fits in it; otherwise the fewest
    consecutive windows of at most ``window_seconds``, of equal length to a sample
    (``k = ceil(N / W)``, window i is ``[i N // k, (i + 1) N // k)``): none is shorter than half a
    window, so no window is a scrap too short to embed.
    """
    if window_seconds is None:
        return [(0, num_samples)]
    window = max(1, int(round(window_seconds * sample_rate)))
    count = -(-num_samples // window)
    if count <= 1:
        return [(0, num_samples)]
    return [(i * num_samples // count, (i + 1) * num_samples // count) for i in range(count)]


def window_sizes(num_samples: int, window_seconds: float | None, sample_rate: int = 16000) -> list[int]:
    """The lengths of the windows of :func:`window_bounds`, in order."""
    return [stop - start for start, stop in window_bounds(num_samples, window_seconds, sample_rate)]


def embed_windows(windows: Iterable[np.ndarray], embed: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """The embeddings of recordings given window by window.

    Args:
        windows: consecutive windows, each (B, n_j): window j of each of B recordings.
        embed: (B, n) waveforms -> (B, D) embeddings (normalised or not).

    Returns:
        (B, D) float32: for each recording, ``sum_j n_j e_j / |e_j|`` normalised to unit length.
    """
    total: np.ndarray | None = None
    for window in windows:
        emb = np.asarray(embed(window), dtype=np.float64)
        emb = window.shape[-1] * emb / np.linalg.norm(emb, axis=-1, keepdims=True)
        total = emb if total is None else total + emb
    if total is None:
        raise ValueError("no windows to embed")
    return (total / np.linalg.norm(total, axis=-1, keepdims=True)).astype(np.float32)
