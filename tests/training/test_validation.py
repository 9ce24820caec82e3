"""Validation EER during training (gradw.training.validation.Validator) on the toy val split."""

from pathlib import Path

import numpy as np
import pytest
import torch

from gradw.config import EvaluationConfig
from gradw.data.dirs import SpeechDir
from gradw.evaluation.grid import evaluate
from gradw.models.loading import load_speaker_network
from gradw.models.unet import MaskUNet
from gradw.training.distributed import DistInfo
from gradw.training.enhancer import attach_centroid_head
from gradw.training.validation import Validator

CPU = torch.device("cpu")
CONDITIONS = ("noise_0", "babble_0")


@pytest.fixture(scope="module")
def speaker(toy_corpus: Path, tmp_path_factory: pytest.TempPathFactory):
    """resnet-tiny drawn from seed 0 (as ``gradw evaluate --scorer resnet-tiny --seed 0`` draws it),
    with a centroid head over the training speakers, frozen: E as stage 2 prepares it."""
    torch.manual_seed(0)
    net = load_speaker_network("resnet-tiny", checkpoint="random")
    cache = tmp_path_factory.mktemp("centroids")
    attach_centroid_head(net, SpeechDir.load(toy_corpus / "train"), 1.0, cache, DistInfo(), "resnet-tiny")
    assert net.head is not None and net.head.num_classes == 6
    return net.freeze()


def _validator(speaker, corpus: Path, max_trials: int = 200) -> Validator:
    return Validator(
        speaker,
        test_dir=str(corpus / "val"),
        augment_dir=str(corpus / "augment" / "test"),
        categories=("noise", "babble"),
        snrs=(0.0,),
        max_trials=max_trials,
        seed=0,
        device=CPU,
    )


def _g(init_bias: float | None, seed: int = 0) -> MaskUNet:
    torch.manual_seed(seed)
    return MaskUNet(n_mels=80, base_width=4, blocks=(1, 1, 1, 1), up_layers=(1, 1, 1), init_bias=init_bias)


@pytest.fixture(scope="module")
def validator(speaker, toy_corpus: Path) -> Validator:
    return _validator(speaker, toy_corpus)


def test_scores_every_condition_and_their_mean(validator: Validator):
    assert len(validator.trials) == 66  # 3 speakers x 4 utterances: all pairs
    g = _g(None)
    g.train()
    result = validator(g)
    assert g.training  # the caller's mode is restored
    assert set(result) == {"eer", "eer_noisy", *(f"eer_{c}" for c in CONDITIONS)}
    for value in result.values():
        assert 0.0 <= value <= 100.0
    assert result["eer"] == pytest.approx(np.mean([result[f"eer_{c}"] for c in CONDITIONS]), abs=1e-12)
    assert result["eer_noisy"] == pytest.approx(np.mean(list(validator.baseline.values())), abs=1e-12)


def test_a_transparent_g_scores_like_no_g(validator: Validator):
    result = validator(_g(init_bias=20.0))  # mask = sigmoid(20) everywhere: ~1
    assert abs(result["eer"] - result["eer_noisy"]) <= 1e-9
    for condition in CONDITIONS:
        assert abs(result[f"eer_{condition}"] - validator.baseline[condition]) <= 1e-9


def test_deterministic_across_constructions(validator: Validator, speaker, toy_corpus: Path):
    again = _validator(speaker, toy_corpus)
    assert again.pairs == validator.pairs
    assert again.baseline == validator.baseline
    for name in CONDITIONS:
        for utt, audio in validator.audio[name].items():
            assert np.array_equal(audio, again.audio[name][utt])
    g = _g(None, seed=3)
    assert again(g) == validator(g)


@pytest.mark.filterwarnings("ignore:.*speaker resamples lacked:RuntimeWarning")
def test_baseline_matches_the_benchmark_on_the_same_conditions(validator: Validator, toy_corpus, tmp_path):
    """Two code paths, one answer: the noisy EERs of ``gradw evaluate`` (same split, noise pool,
    seed and scorer) equal the validator's baseline."""
    config = EvaluationConfig(
        test=str(toy_corpus / "val"),
        out=str(tmp_path / "eval"),
        augment=str(toy_corpus / "augment" / "test"),
        categories=["noise", "babble"],
        snrs=[0.0],
        clean=False,
        scorer="resnet-tiny",
        scorer_checkpoint="random",
        n_boot=10,
    )
    rows = evaluate(config, quiet=True)
    assert {r.condition: r.metrics["eer"] for r in rows} == pytest.approx(validator.baseline, abs=1e-9)


def test_max_trials_subsamples(speaker, toy_corpus: Path):
    small = _validator(speaker, toy_corpus, max_trials=20)
    assert len(small.trials) == 20 and 0 < small.labels.sum() < 20
    assert set(small.audio["noise_0"]) == {u for t in small.trials for u in (t.enroll, t.test)}
