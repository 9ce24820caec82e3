"""Tests for gradw.evaluation.scoring."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from gradw.evaluation.scoring import (
    MissingEmbeddingError,
    cosine_scores,
    read_scores,
    score_trials,
    write_scores,
)


def py_cosine(a, b):
    """Cosine of two plain lists."""
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_cosine_scores_matches_definition_and_is_scale_invariant():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 5))
    b = rng.normal(size=(6, 5))
    got = cosine_scores(a, b)
    assert got.shape == (6,) and got.dtype == np.float64
    expected = [py_cosine(x.tolist(), y.tolist()) for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(got, expected, atol=1e-12)
    np.testing.assert_allclose(cosine_scores(3.0 * a, 0.5 * b), got, atol=1e-12)
    np.testing.assert_allclose(cosine_scores(a, a), 1.0, atol=1e-12)
    np.testing.assert_allclose(cosine_scores(a, -a), -1.0, atol=1e-12)


def test_cosine_scores_accepts_torch_tensors():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    a = rng.normal(size=(4, 8)).astype(np.float32)
    b = rng.normal(size=(4, 8)).astype(np.float32)
    got = cosine_scores(torch.tensor(a, requires_grad=True), torch.tensor(b))
    np.testing.assert_allclose(got, cosine_scores(a, b), atol=1e-6)


@pytest.mark.parametrize(
    ("a", "b", "match"),
    [
        (np.ones((3, 4)), np.ones((3, 5)), "equal shapes"),
        (np.ones(4), np.ones(4), "equal shapes"),
        (np.array([[1.0, 0.0], [0.0, 0.0]]), np.ones((2, 2)), "row 1 is all zeros"),
        (np.array([[1.0, np.nan]]), np.ones((1, 2)), "NaN"),
    ],
)
def test_cosine_scores_rejects_bad_input(a, b, match):
    with pytest.raises(ValueError, match=match):
        cosine_scores(a, b)


def test_score_trials_matches_pairwise_cosine():
    rng = np.random.default_rng(2)
    emb = {f"u{i}": rng.normal(size=16) for i in range(5)}
    trials = [("u0", "u1", True), ("u2", "u0", False), ("u4", "u4", True), ("u3", "u1", False)]
    got = score_trials(emb, trials)
    expected = [py_cosine(emb[a].tolist(), emb[b].tolist()) for a, b, _ in trials]
    np.testing.assert_allclose(got, expected, atol=1e-12)
    assert score_trials(emb, []).shape == (0,)


def test_score_trials_names_missing_ids():
    emb = {"a": np.ones(3), "b": np.ones(3)}
    trials = [("a", f"m{i}", False) for i in range(7)] + [("x", "b", True)]
    with pytest.raises(MissingEmbeddingError) as info:
        score_trials(emb, trials)
    err = info.value
    assert isinstance(err, ValueError) and isinstance(err, KeyError)
    assert err.missing == tuple(sorted([f"m{i}" for i in range(7)] + ["x"]))
    msg = str(err)
    assert msg.startswith("8 utterance id(s)")
    assert "'m0'" in msg and "and 3 more" in msg


def test_score_trials_rejects_mixed_dimensions():
    with pytest.raises(ValueError, match="different dimensions"):
        score_trials({"a": np.ones(3), "b": np.ones(4)}, [("a", "b", True)])


def test_score_file_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    trials = [("spk1/u1.wav", "spk2/u9.wav", False), ("spk1/u1.wav", "spk1/u2.wav", True), ("e", "t", 1)]
    scores = rng.normal(size=3)
    path = tmp_path / "sub" / "dir" / "vox1_O.score"
    write_scores(path, trials, scores)
    lines = path.read_text().splitlines()
    assert lines[0].split()[::3] == ["spk1/u1.wav", "nontarget"]
    assert lines[2].endswith(" target")
    enroll, test, got, labels = read_scores(path)
    assert enroll == ["spk1/u1.wav", "spk1/u1.wav", "e"]
    assert test == ["spk2/u9.wav", "spk1/u2.wav", "t"]
    np.testing.assert_array_equal(got, scores)  # exact: written with repr precision
    np.testing.assert_array_equal(labels, [False, True, True])
    assert labels.dtype == bool
    assert os.listdir(path.parent) == ["vox1_O.score"]  # no temporary file left behind


def test_read_scores_accepts_both_label_spellings(tmp_path):
    path = tmp_path / "scores.txt"
    path.write_text("# comment\na b 0.5 target\n\na c -0.25 nontarget\nb c 0.125 1\nc d 1e-3 0\n")
    enroll, test, scores, labels = read_scores(path)
    assert enroll == ["a", "a", "b", "c"] and test == ["b", "c", "c", "d"]
    np.testing.assert_array_equal(scores, [0.5, -0.25, 0.125, 0.001])
    np.testing.assert_array_equal(labels, [True, False, True, False])


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("a b 0.5\n", r"scores.txt:1: expected"),
        ("a b 0.5 target\na b x target\n", r"scores.txt:2: score 'x'"),
        ("a b 0.5 yes\n", r"scores.txt:1: label 'yes'"),
        ("a b nan target\n", "not finite"),
    ],
)
def test_read_scores_rejects_malformed_lines(tmp_path, text, match):
    path = tmp_path / "scores.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        read_scores(path)


def test_write_scores_failure_leaves_existing_file_untouched(tmp_path):
    path = tmp_path / "s.score"
    write_scores(path, [("a", "b", True)], [0.5])
    before = path.read_text()
    with pytest.raises(ValueError, match="length mismatch"):
        write_scores(path, [("a", "b", True)], [0.5, 0.1])
    with pytest.raises(ValueError, match="not finite"):
        write_scores(path, [("a", "b", True)], [float("nan")])
    with pytest.raises(ValueError, match="whitespace"):
        write_scores(path, [("a x", "b", True)], [0.1])
    with pytest.raises(ValueError, match="label"):
        write_scores(path, [("a", "b", 2)], [0.1])
    assert path.read_text() == before
    assert os.listdir(tmp_path) == ["s.score"]


def test_write_scores_accepts_label_words(tmp_path):
    path = tmp_path / "s.score"
    write_scores(path, [("a", "b", "target"), ("a", "c", "nontarget")], np.array([0.25, -0.5]))
    assert path.read_text() == "a b 0.25 target\na c -0.5 nontarget\n"
