"""Long recordings embedded by windows (gradw.evaluation.windows)."""

import numpy as np
import pytest

from gradw.evaluation.windows import embed_windows, window_bounds, window_sizes


def test_window_bounds_are_the_fewest_equal_windows():
    assert window_bounds(40000, None) == [(0, 40000)]
    assert window_bounds(16000, 1.0) == [(0, 16000)]  # exactly one window: whole
    assert window_bounds(16001, 1.0) == [(0, 8000), (8000, 16001)]  # never a scrap of one sample
    assert window_bounds(40000, 1.0) == [(0, 13333), (13333, 26666), (26666, 40000)]
    assert window_bounds(30 * 60 * 16000, 60.0) == [(i * 960000, (i + 1) * 960000) for i in range(30)]
    assert window_sizes(40000, 1.0) == [13333, 13333, 13334]
    assert window_sizes(40000, None) == [40000]


def test_the_embedding_of_windows_is_the_length_weighted_mean_of_unit_embeddings():
    rng = np.random.default_rng(0)
    recordings = rng.standard_normal((2, 10)).astype(np.float32)
    bounds = [(0, 3), (3, 10)]

    def embed(x: np.ndarray) -> np.ndarray:  # (B, n) -> (B, 4), neither normalised nor linear
        return np.stack([[x.sum(1)[b], (x**2).sum(1)[b] + 1, x.shape[1], x.max(1)[b]] for b in range(len(x))])

    got = embed_windows((recordings[:, a:b] for a, b in bounds), embed)
    for row in range(2):
        parts = [embed(recordings[row : row + 1, a:b])[0].astype(np.float64) for a, b in bounds]
        mean = 3 * parts[0] / np.linalg.norm(parts[0]) + 7 * parts[1] / np.linalg.norm(parts[1])
        np.testing.assert_allclose(got[row], mean / np.linalg.norm(mean), rtol=1e-6)
    assert got.dtype == np.float32
    with pytest.raises(ValueError, match="no windows"):
        embed_windows([], embed)
