"""Quality measure functions (gradw.evaluation.quality): per-trial terms, storage, the cache."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from gradw.evaluation.quality import (
    QUALITY_VERSION,
    QualityFunctions,
    QualityStore,
    condition_measures,
    trial_sides,
)


def test_terms_are_min_and_max_of_the_clipped_sides_then_times_the_score() -> None:
    f = QualityFunctions.build(["snr_percentile", "seconds"], {"seconds": [1.0, 10.0]})
    assert f.clip == ((-10.0, 15.0), (1.0, 10.0))  # the default range, and the one given
    assert f.names == (
        "min_snr_percentile",
        "max_snr_percentile",
        "min_seconds",
        "max_seconds",
        "score*min_snr_percentile",
        "score*max_snr_percentile",
        "score*min_seconds",
        "score*max_seconds",
    )
    scores = np.array([0.5, -0.2])
    enroll = np.array([[30.0, 4.0], [-3.0, 0.5]])  # 30 dB clipped to 15; 0.5 s clipped to 1 s
    test = np.array([[2.0, 20.0], [-20.0, 2.0]])
    m = f.matrix(scores, enroll, test)
    expected = np.array(
        [
            [2.0, 15.0, math.log(4.0), math.log(10.0)],
            [-10.0, -3.0, math.log(1.0), math.log(2.0)],
        ]
    )
    assert m[:, :4] == pytest.approx(expected)
    assert m[:, 4:] == pytest.approx(scores[:, None] * expected)
    assert f.matrix(scores, test, enroll) == pytest.approx(m)  # the order of the sides is no matter
    plain = QualityFunctions.build(["snr_percentile"], interactions=False)
    assert plain.names == ("min_snr_percentile", "max_snr_percentile")
    assert plain.matrix(scores, enroll[:, :1], test[:, :1]).shape == (2, 2)


def test_stored_and_read_back_and_another_version_refused() -> None:
    f = QualityFunctions.build(["snr_wada", "speech_seconds"], interactions=False)
    data = f.to_dict()
    assert data == {
        "measures": ["snr_wada", "speech_seconds"],
        "clip": [[-10.0, 15.0], [0.5, 60.0]],
        "interactions": False,
        "version": QUALITY_VERSION,
    }
    assert QualityFunctions.from_dict(data) == f
    with pytest.raises(ValueError, match="version 0.*gradw calibrate"):
        QualityFunctions.from_dict({**data, "version": 0})
    assert "snr_wada in [-10, 15]" in f.describe() and "times the score" not in f.describe()
    side = f.example_side(-5.0)
    assert side.tolist() == [-5.0, 5.0]  # the SNR given, the reference duration


@pytest.mark.parametrize(
    ("measures", "clip", "message"),
    [
        (["loudness"], None, "unknown quality measure"),
        (["seconds", "seconds"], None, "listed twice"),
        (["snr_wada"], {"snr_wada": [5.0, 5.0]}, "bad clip range"),
        (["seconds"], {"seconds": [0.0, 5.0]}, "bad clip range"),  # a log needs a positive floor
        (["snr_wada"], {"seconds": [1.0, 5.0]}, "not among the quality measures"),
    ],
)
def test_bad_functions_are_refused(measures: list[str], clip: dict | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        QualityFunctions.build(measures, clip)


def test_the_store_caches_by_content_and_reuses_it(tmp_path: Path) -> None:
    store = QualityStore(tmp_path / "cache")
    utts = ["a", "b"]
    key = QualityStore.key(["snr_wada"], "hash1", "noise_0", utts)
    assert key != QualityStore.key(["snr_wada"], "hash2", "noise_0", utts)  # other audio
    assert key != QualityStore.key(["seconds"], "hash1", "noise_0", utts)  # other measures
    calls: list[tuple[str, str]] = []

    def audio(condition: str, utt: str) -> np.ndarray:
        calls.append((condition, utt))
        return np.linspace(-0.5, 0.5, 8000 if utt == "a" else 16000).astype(np.float32)

    first = condition_measures(store, ["seconds"], {"noise_0": key}, utts, audio)
    assert first["noise_0"]["a"].tolist() == [0.5] and first["noise_0"]["b"].tolist() == [1.0]
    assert len(calls) == 2 and store.path(key).is_file()
    again = condition_measures(store, ["seconds"], {"noise_0": key}, utts, audio)
    assert len(calls) == 2  # read from the cache
    assert {u: v.tolist() for u, v in again["noise_0"].items()} == {"a": [0.5], "b": [1.0]}
    pairs = [("a", "b", True), ("b", "b", False)]
    enroll, test = trial_sides(pairs, again["noise_0"])
    assert enroll[:, 0].tolist() == [0.5, 1.0] and test[:, 0].tolist() == [1.0, 1.0]
    clean = {"a": np.array([9.0]), "b": np.array([8.0])}
    enroll, _ = trial_sides(pairs, again["noise_0"], enroll=clean)
    assert enroll[:, 0].tolist() == [9.0, 8.0]
