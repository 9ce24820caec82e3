"""Stage 1 end to end on the toy corpus (``gradw train-speaker``), and stage 2 against its E."""

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gradw.checkpoint import load_checkpoint
from gradw.config import SpeakerTrainConfig, TrainConfig, load_config
from gradw.data.datasets import SpeakerCrops
from gradw.data.dirs import SpeechDir
from gradw.data.lists import DataError
from gradw.models.loading import load_speaker_network
from gradw.training.distributed import DistInfo
from gradw.training.enhancer import TrainingError, prepare_speaker, train_enhancer
from gradw.training.loop import read_metrics
from gradw.training.speaker import aam_logits, class_names, margin_at, train_speaker


def _overrides(corpus: Path, out: Path, *extra: str) -> list[str]:
    return [
        f"out_dir={out}",
        f"train={corpus / 'train'}",
        f"augment={corpus / 'augment' / 'train'}",
        "tensorboard=false",
        "threads=1",
        *extra,
    ]


def _config(corpus: Path, out: Path, *extra: str) -> SpeakerTrainConfig:
    return load_config(SpeakerTrainConfig, "tiny", _overrides(corpus, out, *extra), section="train_speaker")


@pytest.fixture(scope="module")
def trained(toy_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[SpeakerTrainConfig, Path]:
    """E trained with the tiny preset's ``train_speaker`` section (resnet-tiny, 20 steps)."""
    config = _config(toy_corpus, tmp_path_factory.mktemp("speaker") / "run")
    return config, train_speaker(config, quiet=True)


def _train_speakers(corpus: Path) -> list[str]:
    """The training speakers, read independently of gradw's lists from utt2spk."""
    lines = (corpus / "train" / "utt2spk").read_text().split("\n")
    return sorted({line.split()[1] for line in lines if line.strip()})


# ---------------------------------------------------------------------------------------------
# the run


def test_checkpoint_describes_the_speaker_network(trained, toy_corpus: Path):
    config, last = trained
    assert last == Path(config.out_dir) / "last.pt"
    state = load_checkpoint(last, kind="speaker")
    speakers = _train_speakers(toy_corpus)
    assert len(speakers) == 6
    assert state["step"] == config.optim.steps == 20
    # speed perturbation (0.9, 1.1) makes two more copies of every speaker
    assert state["model_config"]["num_classes"] == 3 * len(speakers)
    assert state["model_config"]["name"] == "resnet-tiny" and state["model_config"]["embedding_dim"] == 64
    expected = speakers + [f"{s}@0.9" for s in speakers] + [f"{s}@1.1" for s in speakers]
    assert state["extra"]["speakers"] == expected
    assert class_names(speakers, (1.0, 0.9, 1.1)) == expected
    # the labels training used name the same classes: every crop's class is its utterance's speaker
    crops = SpeakerCrops(
        SpeechDir.load(toy_corpus / "train"), crop_seconds=0.5, speed_perturb=(1.0, 0.9, 1.1)
    )
    utt2spk = dict(line.split() for line in (toy_corpus / "train" / "utt2spk").read_text().splitlines())
    seen = set()
    for key in [(0, i) for i in range(len(crops))] + [(1, i) for i in range(len(crops))]:
        item = crops[key]
        name = expected[item["speaker"]]
        assert name.split("@")[0] == utt2spk[item["utt"]]
        seen.add(name.partition("@")[2])
    assert seen == {"", "0.9", "1.1"}  # all three speeds were drawn
    assert state["model"]["head.weight"].shape == (18, 64)
    assert state["config"]["aam"]["margin"] == config.aam.margin
    assert (Path(config.out_dir) / "config.yaml").is_file()
    assert (Path(config.out_dir) / "done.json").is_file()


def test_metrics_are_logged_and_sane(trained):
    config, _ = trained
    records = read_metrics(config.out_dir, "train")
    assert [r["step"] for r in records] == [5, 10, 15, 20]
    for record in records:
        assert math.isfinite(record["loss"]) and record["loss"] > 0
        assert 0.0 <= record["accuracy"] <= 1.0
        # the logged margin is the one of the step just taken (step index = done - 1)
        assert record["margin"] == pytest.approx(margin_at(record["step"] - 1, config))
        assert record["lr"] == pytest.approx(config.optim.lr)  # warm-up (5 steps) is over
    assert records[0]["margin"] == 0.0 and records[-1]["margin"] == pytest.approx(0.2)


def test_an_existing_run_is_not_overwritten(trained):
    config, _ = trained
    with pytest.raises(TrainingError, match="--resume"):
        train_speaker(config, quiet=True)


# ---------------------------------------------------------------------------------------------
# margin and logits


def test_margin_ramps_linearly_from_zero_to_final():
    config = SpeakerTrainConfig()
    config.aam.margin, config.aam.margin_ramp_start, config.aam.margin_ramp_end = 0.2, 5, 15
    expected = {0: 0.0, 4: 0.0, 5: 0.0, 6: 0.02, 10: 0.1, 14: 0.18, 15: 0.2, 16: 0.2, 10_000: 0.2}
    for step, margin in expected.items():
        assert margin_at(step, config) == pytest.approx(margin, abs=1e-12), step
    config.aam.margin_ramp_start = config.aam.margin_ramp_end = 0  # no ramp: the final margin throughout
    assert margin_at(0, config) == margin_at(99, config) == 0.2
    config.aam.margin_ramp_start = config.aam.margin_ramp_end = 10  # a step at 10, still 0 before it
    assert [margin_at(s, config) for s in (0, 9, 10, 11)] == [0.0, 0.0, 0.2, 0.2]


def _hand_aam(cosine: np.ndarray, labels: np.ndarray, margin: float, scale: float) -> np.ndarray:
    out = scale * cosine.copy()
    for i, y in enumerate(labels):
        theta = math.acos(cosine[i, y])
        if theta + margin <= math.pi:
            out[i, y] = scale * math.cos(theta + margin)
        else:  # past pi - m: cos(theta) - m sin(m), still decreasing in theta
            out[i, y] = scale * (cosine[i, y] - margin * math.sin(margin))
    return out


def test_aam_logits_match_a_hand_computation():
    rng = np.random.default_rng(0)
    cosine = rng.uniform(-0.95, 0.95, size=(6, 5))
    labels = np.array([0, 3, 4, 1, 2, 0])
    cosine[5, 0] = -0.99  # theta = 3.0 > pi - 0.2: the fallback branch
    cosine[4, 2] = 0.999
    margin, scale = 0.2, 32.0
    got = aam_logits(torch.from_numpy(cosine), torch.from_numpy(labels), margin, scale).numpy()
    np.testing.assert_allclose(got, _hand_aam(cosine, labels, margin, scale), rtol=1e-6, atol=1e-5)
    assert math.acos(-0.99) > math.pi - margin
    assert got[5, 0] == pytest.approx(scale * (-0.99 - margin * math.sin(margin)), abs=1e-5)
    # zero margin is plain scaled cosine
    plain = aam_logits(torch.from_numpy(cosine), torch.from_numpy(labels), 0.0, scale).numpy()
    np.testing.assert_allclose(plain, scale * cosine, atol=1e-5)


def test_aam_target_logit_keeps_decreasing_with_the_angle():
    theta = torch.linspace(0.01, math.pi - 0.01, 400, dtype=torch.float64)
    cosine = torch.cos(theta)[:, None]
    target = aam_logits(cosine, torch.zeros(len(theta), dtype=torch.long), 0.3, 1.0)[:, 0]
    assert bool((target[1:] < target[:-1]).all())
    assert bool((target <= cosine[:, 0] + 1e-12).all())  # the margin never helps the target


# ---------------------------------------------------------------------------------------------
# resume


def _train_cli(corpus: Path, out: Path, *extra: str, resume: bool = False) -> subprocess.Popen:
    args = [sys.executable, "-m", "gradw", "train-speaker", "--config", "tiny", "--quiet"]
    if resume:
        args.append("--resume")
    args += _overrides(corpus, out, "crop_seconds=0.5", "checkpoint_every=4", "log_every=2", *extra)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(args, cwd=out.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()[-3000:]


def test_resume_gives_the_weights_of_an_uninterrupted_run(toy_corpus: Path, tmp_path: Path):
    # each leg is a new process (numerics are then bit-exact); the first two run side by side.
    # The margin ramp (steps 5-15) and the warm-up (5 steps) straddle the split at step 4.
    full = _train_cli(toy_corpus, tmp_path / "full", "optim.steps=8")
    first = _train_cli(toy_corpus, tmp_path / "split", "optim.steps=4")
    _wait(full)
    _wait(first)
    assert load_checkpoint(tmp_path / "split" / "last.pt")["step"] == 4
    _wait(_train_cli(toy_corpus, tmp_path / "split", "optim.steps=8", resume=True))
    a = load_checkpoint(tmp_path / "full" / "last.pt", kind="speaker")
    b = load_checkpoint(tmp_path / "split" / "last.pt", kind="speaker")
    assert a["step"] == b["step"] == 8
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], atol=1e-7, rtol=1e-6, msg=key)
    ra, rb = read_metrics(tmp_path / "full", "train"), read_metrics(tmp_path / "split", "train")
    assert [r["step"] for r in rb] == [r["step"] for r in ra] == [2, 4, 6, 8]  # no step twice
    for x, y in zip(ra, rb, strict=True):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-6) and x["margin"] == y["margin"]


# ---------------------------------------------------------------------------------------------
# stage 2 against the trained E


def test_the_trained_network_loads_with_its_head(trained, toy_corpus: Path):
    _, last = trained
    state = load_checkpoint(last)
    speaker = load_speaker_network("resnet-tiny", checkpoint=last)
    assert speaker.head is not None and speaker.head.num_classes == 18
    assert speaker.speakers == state["extra"]["speakers"]
    torch.testing.assert_close(speaker.head.weight.detach(), state["model"]["head.weight"], rtol=0, atol=0)
    wav = torch.randn(2, 16000) * 0.1
    logits = speaker.logits(speaker.embed(wav))
    assert logits.shape == (2, 18) and bool((logits.abs() <= speaker.head.scale + 1e-4).all())


def _stage2_config(corpus: Path, out: Path, checkpoint: Path, train: str = "train") -> TrainConfig:
    overrides = [
        f"out_dir={out}",
        f"cache_dir={out.parent / 'cache'}",
        f"data.train={corpus / train}",
        f"data.augment={corpus / 'augment' / 'train'}",
        "speaker.name=resnet-tiny",
        f"speaker.checkpoint={checkpoint}",
        "speaker.tap=layer4",
        "speaker.centroid_crop_seconds=1.0",
        "data.crop_seconds=0.5",
        "optim.steps=2",
        "optim.batch_size=2",
        "tensorboard=false",
        "threads=1",
        "validation.every=0",
    ]
    return load_config(TrainConfig, "tiny", overrides, section="train")


def test_stage2_uses_the_checkpoint_head_and_no_centroids(trained, toy_corpus: Path, tmp_path: Path):
    _, last = trained
    state = load_checkpoint(last)
    config = _stage2_config(toy_corpus, tmp_path / "g", last)
    cache = Path(config.cache_dir)
    speaker = prepare_speaker(config, SpeechDir.load(config.data.train), DistInfo())
    torch.testing.assert_close(speaker.head.weight, state["model"]["head.weight"], rtol=0, atol=0)
    g = train_enhancer(config, quiet=True)
    assert load_checkpoint(g, kind="enhancer")["extra"]["speaker"]["checkpoint"] == str(last)
    assert not list(cache.glob("centroids-*"))
    # control: the same E over other speakers (the validation split) falls back to centroids
    other = _stage2_config(toy_corpus, tmp_path / "g2", last, train="val")
    speaker = prepare_speaker(other, SpeechDir.load(other.data.train), DistInfo())
    assert speaker.head.num_classes == 3
    assert len(list(cache.glob("centroids-*.pt"))) == 1


def test_reverberation_reaches_the_speaker_training(toy_corpus: Path, tmp_path: Path):
    """train_speaker.reverb_prob is passed on: with RIRs it trains; without any it is refused."""
    import shutil

    config = _config(toy_corpus, tmp_path / "rev", "reverb_prob=1.0", "augment_prob=1.0", "optim.steps=2")
    assert train_speaker(config, quiet=True).is_file()
    dry = tmp_path / "dry"
    shutil.copytree(toy_corpus / "augment" / "train", dry)
    shutil.rmtree(dry / "rirs")
    config = _config(toy_corpus, tmp_path / "norirs", "reverb_prob=1.0", f"augment={dry}", "optim.steps=2")
    with pytest.raises(DataError, match="reverb_prob > 0 needs a 'rirs' list"):
        train_speaker(config, quiet=True)


def test_the_paper_preset_reverberates_e_with_training_rooms_only():
    config = load_config(SpeakerTrainConfig, "paper", section="train_speaker")
    assert config.reverb_prob > 0 and Path(config.augment) == Path("data/augment/train")
