"""Fitting a checkpoint's quality-aware fusion (gradw.training.fuse) on the toy corpus's training
speakers, what ``@qfuse`` then embeds and evaluates, and the refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers import make_adapted_checkpoint, make_enhancer_checkpoint, make_speaker_checkpoint

from gradw.audio.io import read_audio
from gradw.audio.quality import percentile_snr
from gradw.config import AdaptConfig, ConfigError, EvaluationConfig, TrainConfig, from_dict
from gradw.data.dirs import SpeechDir
from gradw.evaluation.fusion import FusionWeights
from gradw.evaluation.grid import evaluate
from gradw.evaluation.systems import SystemSpecError, load_system, parse_system
from gradw.models.loading import load_speaker_network
from gradw.training.fuse import fuse_checkpoint

CPU = torch.device("cpu")


def _config(corpus: Path, cls: type = TrainConfig, **fusion: Any) -> Any:
    grid = {"categories": ["clean", "noise"], "snrs": [0], "max_trials": 100, **fusion}
    data = {
        "train": str(corpus / "train"),
        "augment": str(corpus / "augment" / "train"),
        "val": str(corpus / "val"),
        "val_augment": str(corpus / "augment" / "test"),
    }
    return from_dict(cls, {"data": data, "fusion": grid})


@pytest.fixture(scope="module")
def fused(toy_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("fuse")
    e = make_speaker_checkpoint(root / "e.pt")
    g = make_enhancer_checkpoint(root / "g.pt", speaker_checkpoint=str(e))
    before = g.read_bytes()
    weights = fuse_checkpoint(g, _config(toy_corpus), root / "g-fused.pt")
    assert g.read_bytes() == before  # the input is untouched
    return {"root": root, "e": e, "g": g, "out": root / "g-fused.pt", "weights": weights}


def _wav(corpus: Path) -> np.ndarray:
    test = SpeechDir.load(corpus / "test")
    return read_audio(test.wavs[sorted(test.wavs)[0]])


def _by_hand(parts: np.ndarray, weights: FusionWeights, wav: np.ndarray) -> np.ndarray:
    """The fused embedding from a @fuse system's parts, with the weight computed here."""
    dim = (parts.shape[1] - 1) // 2
    w = 1 / (1 + np.exp(-(weights.a + weights.b * np.clip(percentile_snr(wav), weights.lo, weights.hi))))
    fused = w * parts[0, :dim] + (1 - w) * parts[0, dim : 2 * dim]
    return fused / np.linalg.norm(fused)


def test_the_fit_is_stored_with_its_figures(fused: dict[str, Any]) -> None:
    weights, stored = fused["weights"], torch.load(fused["out"], weights_only=True)["extra"]["fusion"]
    assert FusionWeights.from_dict(stored) == weights
    assert (weights.lo, weights.hi) == (-10.0, 15.0)
    extra = weights.extra
    assert extra["fitted_on"].startswith("training speakers of ") and "6 speakers" in extra["fitted_on"]
    assert extra["judged_on"].startswith("validation speakers of ") and "3 speakers" in extra["judged_on"]
    assert "2 conditions (clean, noise_0)" in extra["judged_on"]
    for split in ("training", "validation"):
        assert set(extra[split]) == {"system", "base", "fuse", "qfuse"}
        assert all(0.0 <= v <= 100.0 for v in extra[split].values())
    # the grid holds @fuse and (to within 1e-13 of a weight) either input alone
    training = extra["training"]
    assert training["qfuse"] <= min(training["system"], training["base"], training["fuse"]) + 1e-9


def test_qfuse_embeds_the_weighted_average_and_has_its_own_identity(
    fused: dict[str, Any], toy_corpus: Path
) -> None:
    scorer = load_speaker_network("resnet-tiny", checkpoint=str(fused["e"])).freeze()
    wav = _wav(toy_corpus)
    qfuse = load_system(parse_system(f"g:{fused['out']}@qfuse"), scorer, "scorer-id", CPU)
    plain = load_system(parse_system(f"g:{fused['out']}@fuse"), scorer, "scorer-id", CPU)
    assert qfuse.spec.name == "g+qfuse" and qfuse.fusion == fused["weights"] and plain.fusion is None
    expected = _by_hand(plain.fusion_parts(wav[None]), fused["weights"], wav)
    np.testing.assert_allclose(qfuse.embed(wav), expected, atol=2e-5)
    assert fused["weights"].identity in qfuse.identity and fused["weights"].identity not in plain.identity
    assert qfuse.identity != plain.identity
    # @fuse of the fused checkpoint is still the plain average: the same identity as before the fit
    before = load_system(parse_system(f"g:{fused['g']}@fuse"), scorer, "scorer-id", CPU)
    assert plain.identity == before.identity


def test_an_adapted_student_is_fused_with_its_original_network(
    fused: dict[str, Any], toy_corpus: Path
) -> None:
    adapted = make_adapted_checkpoint(fused["root"] / "adapted.pt", base=fused["e"])
    weights = fuse_checkpoint(adapted, _config(toy_corpus, AdaptConfig), fused["root"] / "adapted-fused.pt")
    scorer = load_speaker_network("resnet-tiny", checkpoint="random")  # not used by an adapted system
    wav = _wav(toy_corpus)
    qfuse = load_system(parse_system(f"a:{fused['root'] / 'adapted-fused.pt'}@qfuse"), scorer, "x", CPU)
    assert qfuse.teacher is not None and qfuse.fusion == weights
    plain = load_system(parse_system(f"a:{fused['root'] / 'adapted-fused.pt'}@fuse"), scorer, "x", CPU)
    np.testing.assert_allclose(
        qfuse.embed(wav), _by_hand(plain.fusion_parts(wav[None]), weights, wav), atol=2e-5
    )


def test_the_evaluation_runs_qfuse_beside_fuse(fused: dict[str, Any], toy_corpus: Path) -> None:
    out = fused["root"] / "eval"
    config = EvaluationConfig(
        test=str(toy_corpus / "test"),
        out=str(out),
        systems=["noisy", f"g:{fused['out']}@fuse", f"g:{fused['out']}@qfuse"],
        augment=str(toy_corpus / "augment" / "test"),
        categories=["noise"],
        snrs=[0.0],
        scorer="resnet-tiny",
        scorer_checkpoint=str(fused["e"]),
        n_boot=20,
        cache_dir=str(fused["root"] / "cache"),
    )
    rows = evaluate(config, quiet=True)
    assert {(r.system, r.condition) for r in rows} == {
        (s, c) for s in ("noisy", "g+fuse", "g+qfuse") for c in ("clean", "noise_0")
    }
    assert all(0.0 <= r.metrics["eer"] <= 100.0 for r in rows)
    assert (out / "scores" / "g+qfuse" / "noise_0.txt").is_file()


def test_qfuse_of_a_checkpoint_without_weights_names_it(fused: dict[str, Any]) -> None:
    scorer = load_speaker_network("resnet-tiny", checkpoint=str(fused["e"]))
    g = fused["g"]
    with pytest.raises(
        SystemSpecError, match=rf"^system g\+qfuse: {g} holds no fusion weights \(key extra\.fusion\)"
    ):
        load_system(parse_system(f"g:{g}@qfuse"), scorer, "x", CPU)
    state = torch.load(fused["out"], weights_only=True)
    state["extra"]["fusion"]["lo"] = 40.0
    torch.save(state, fused["root"] / "bad-range.pt")
    bad = fused["root"] / "bad-range.pt"
    with pytest.raises(
        SystemSpecError, match=rf"^system g\+qfuse: {bad}: extra\.fusion: fusion\.lo, fusion\.hi"
    ):
        load_system(parse_system(f"g:{bad}@qfuse"), scorer, "x", CPU)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (
            {"fusion": {"categories": ["thunder"]}},
            ConfigError,
            "^fusion.categories: unknown category 'thunder'",
        ),
        ({"fusion": {"categories": ["noise"], "snrs": []}}, ConfigError, "^fusion.snrs"),
        ({"data": {"train": ""}}, ConfigError, "^data.train: the fusion is fitted on the training speakers"),
        ({"data": {"val": ""}}, ConfigError, "^data.val: the fusion is judged on the validation speakers"),
        ({"data": {"augment": ""}}, ConfigError, "^data.augment: the fusion grid has noisy conditions"),
    ],
)
def test_a_bad_fusion_config_is_refused_before_any_work(
    fused: dict[str, Any], toy_corpus: Path, change: dict, error: type, message: str
) -> None:
    config = _config(toy_corpus)
    for section, values in change.items():
        for key, value in values.items():
            setattr(getattr(config, section), key, value)
    target = fused["root"] / "never.pt"
    with pytest.raises(error, match=message):
        fuse_checkpoint(fused["g"], config, target)
    assert not target.exists()
