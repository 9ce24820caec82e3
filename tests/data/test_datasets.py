"""Tests for the training datasets (gradw.data.datasets) on a tiny generated corpus."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import toy_tone, write_float_wav
from torch.utils.data import DataLoader

from gradw.audio.mixing import measure_snr
from gradw.data.datasets import EnhancementTriples, SpeakerCrops, collate
from gradw.data.dirs import AugmentDir, SpeechDir, write_augment_dir, write_speech_dir
from gradw.data.lists import DataError

SR = 16000


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[SpeechDir, AugmentDir]:
    root = tmp_path_factory.mktemp("corpus")
    wavs, utt2spk = {}, {}
    for s in range(3):
        for u in range(3):
            utt = f"s{s}-u{u}"
            wavs[utt] = write_float_wav(root / "train" / f"{utt}.wav", toy_tone(5000 + 1500 * u, 10 * s + u))
            utt2spk[utt] = f"spk{2 - s}"  # speaker ids not in utterance order
    write_speech_dir(root / "train", wavs, utt2spk)
    rng = np.random.default_rng(1)
    aug = root / "aug"
    write_augment_dir(
        aug,
        "noise",
        {
            f"n{i}": write_float_wav(
                aug / "n" / f"{i}.wav", (0.05 * rng.standard_normal(4000 + 3000 * i)).astype(np.float32)
            )
            for i in range(4)
        },
    )
    write_augment_dir(
        aug,
        "music",
        {f"m{i}": write_float_wav(aug / "m" / f"{i}.wav", toy_tone(6000, 100 + i)) for i in range(2)},
    )
    write_augment_dir(
        aug,
        "babble",
        {f"b{i}": write_float_wav(aug / "b" / f"{i}.wav", toy_tone(3000, 200 + i)) for i in range(2)},
    )
    rir = np.zeros(800, dtype=np.float32)
    rir[20] = 1.0
    rir[21:] = 0.2 * np.exp(-np.arange(779) / 150) * rng.standard_normal(779)
    write_augment_dir(aug, "rirs", {"r0": write_float_wav(aug / "r" / "0.wav", rir)})
    return SpeechDir.load(root / "train"), AugmentDir.load(aug)


def _same(a: dict, b: dict) -> bool:
    return (
        all(torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k] for k in a)
        and a.keys() == b.keys()
    )


def test_triples_items_shapes_and_labels(corpus: tuple[SpeechDir, AugmentDir]) -> None:
    speech, aug = corpus
    data = EnhancementTriples(speech, aug, crop_seconds=0.25, seed=3)
    assert len(data) == 9
    assert data.speaker_index == {"spk0": 0, "spk1": 1, "spk2": 2}
    item = data[0]
    assert item["clean"].shape == item["noisy"].shape == (4000,)
    assert item["clean"].dtype == item["noisy"].dtype == torch.float32
    assert item["utt"] == "s0-u0" and item["speaker"] == 2
    assert item["category"] in ("noise", "music", "babble")
    assert not torch.equal(item["clean"], item["noisy"])  # every input noisy by default
    # short utterances (5000 samples) tiled up to a 0.5 s crop
    assert EnhancementTriples(speech, aug, crop_seconds=0.5)[0]["clean"].shape == (8000,)


def test_triples_deterministic_and_epochs_differ(corpus: tuple[SpeechDir, AugmentDir]) -> None:
    speech, aug = corpus
    a = EnhancementTriples(speech, aug, crop_seconds=0.2, seed=5, epoch=2)
    b = EnhancementTriples(speech, aug, crop_seconds=0.2, seed=5, epoch=2, preload=True)
    for i in reversed(range(len(a))):  # order of access does not matter
        assert _same(a[i], b[i])
    b.set_epoch(3)
    assert sum(not torch.equal(a[i]["noisy"], b[i]["noisy"]) for i in range(len(a))) >= len(a) - 1
    c = EnhancementTriples(speech, aug, crop_seconds=0.2, seed=6, epoch=2)
    assert not all(torch.equal(a[i]["noisy"], c[i]["noisy"]) for i in range(len(a)))


def test_triples_clean_fraction_one(corpus: tuple[SpeechDir, AugmentDir]) -> None:
    speech, _ = corpus
    data = EnhancementTriples(speech, None, crop_seconds=0.2, clean_fraction=1.0)
    for i in range(len(data)):
        item = data[i]
        assert torch.equal(item["clean"], item["noisy"]) and item["category"] == "clean"
    with pytest.raises(DataError, match="augmentation directory"):
        EnhancementTriples(speech, None, crop_seconds=0.2)


def test_triples_category_probabilities(corpus: tuple[SpeechDir, AugmentDir]) -> None:
    speech, aug = corpus
    probs = {"noise": 0.6, "music": 0.3, "babble": 0.1}
    data = EnhancementTriples(speech, aug, crop_seconds=0.05, category_probs=probs, preload=True)
    counts: Counter[str] = Counter()
    for epoch in range(60):
        data.set_epoch(epoch)
        counts.update(data[i]["category"] for i in range(len(data)))
    total = sum(counts.values())
    for category, p in probs.items():
        assert abs(counts[category] / total - p) < 0.06
    # default: proportional to file counts (4 noise, 2 music, 2 babble)
    default = EnhancementTriples(speech, aug, crop_seconds=0.05, preload=True)
    counts = Counter()
    for epoch in range(60):
        default.set_epoch(epoch)
        counts.update(default[i]["category"] for i in range(len(default)))
    assert abs(counts["noise"] / sum(counts.values()) - 0.5) < 0.07
    only_music = EnhancementTriples(speech, aug, crop_seconds=0.05, category_probs={"music": 1.0})
    assert {only_music[i]["category"] for i in range(len(only_music))} == {"music"}


def test_triples_snr_range_is_respected(corpus: tuple[SpeechDir, AugmentDir]) -> None:
    speech, aug = corpus
    data = EnhancementTriples(
        speech, aug, crop_seconds=0.2, snr={"noise": (-6.0, -4.0)}, floor=0.0, preload=True
    )
    for i in range(len(data)):
        item = data[i]
        clean, noisy = item["clean"].numpy(), item["noisy"].numpy()
        assert -6.01 <= measure_snr(clean, noisy - clean) <= -3.99


def test_triples_reverb_keeps_dry_target(corpus: tuple[SpeechDir, AugmentDir]) -> None:
    speech, aug = corpus
    dry = EnhancementTriples(speech, aug, crop_seconds=0.2, clean_fraction=1.0, seed=1)
    wet = EnhancementTriples(speech, aug, crop_seconds=0.2, reverb_prob=1.0, seed=1)
    item, ref = wet[4], dry[4]
    # same crop drawn first; the target stays dry (up to a common anti-clipping scale)
    scale = float(torch.dot(item["clean"], ref["clean"]) / torch.dot(ref["clean"], ref["clean"]))
    torch.testing.assert_close(item["clean"], ref["clean"] * scale)


def test_dataloader_workers_match(corpus: tuple[SpeechDir, AugmentDir]) -> None:
    speech, aug = corpus
    data = EnhancementTriples(speech, aug, crop_seconds=0.1, seed=2, epoch=1)
    kwargs = {"batch_size": 4, "collate_fn": collate, "shuffle": False}
    serial = list(DataLoader(data, num_workers=0, **kwargs))
    parallel = list(DataLoader(data, num_workers=2, **kwargs))
    assert len(serial) == len(parallel) == 3
    for a, b in zip(serial, parallel, strict=True):
        assert a["noisy"].shape[1] == 1600 and a["noisy"].dtype == torch.float32
        assert torch.equal(a["noisy"], b["noisy"]) and torch.equal(a["clean"], b["clean"])
        assert torch.equal(a["speaker"], b["speaker"]) and a["utt"] == b["utt"]


def test_collate() -> None:
    batch = [
        {"wav": torch.zeros(5), "speaker": 1, "utt": "a", "w": 0.5},
        {"wav": torch.ones(5), "speaker": 2, "utt": "b", "w": 1.0},
    ]
    out = collate(batch)
    assert out["wav"].shape == (2, 5) and out["speaker"].dtype == torch.int64
    assert out["utt"] == ["a", "b"] and out["w"].dtype == torch.float32
    with pytest.raises(ValueError, match="shapes differ"):
        collate([{"wav": torch.zeros(5)}, {"wav": torch.zeros(6)}])


def test_speaker_crops_speed_classes(corpus: tuple[SpeechDir, AugmentDir]) -> None:
    speech, aug = corpus
    data = SpeakerCrops(speech, crop_seconds=0.25, speed_perturb=(0.9, 1.0, 1.1), seed=0)
    assert data.speeds == (1.0, 0.9, 1.1)
    assert data.num_speakers == 3 and data.num_classes == 9
    labels = set()
    for epoch in range(12):
        data.set_epoch(epoch)
        for i in range(len(data)):
            item = data[i]
            assert item["wav"].shape == (4000,) and item["wav"].dtype == torch.float32
            base = data.speaker_index[speech.utt2spk[item["utt"]]]
            assert item["speaker"] % 3 == base
            labels.add(item["speaker"])
    assert labels == set(range(9))
    plain = SpeakerCrops(speech, crop_seconds=0.25, speed_perturb=None)
    assert plain.num_classes == 3 and {plain[i]["speaker"] for i in range(len(plain))} <= {0, 1, 2}


def test_speed_perturbation_shifts_pitch(tmp_path: Path) -> None:
    wav = (0.5 * np.sin(2 * np.pi * 400 * np.arange(2 * SR) / SR)).astype(np.float32)
    root = tmp_path / "d"
    write_speech_dir(root, {"u": write_float_wav(root / "u.wav", wav)}, {"u": "s"})
    data = SpeakerCrops(SpeechDir.load(root), crop_seconds=0.5, speed_perturb=(1.0, 1.1))
    for epoch in range(20):
        data.set_epoch(epoch)
        item = data[0]
        spectrum = np.abs(np.fft.rfft(item["wav"].numpy() * np.hanning(8000)))
        peak_hz = np.argmax(spectrum) * SR / 8000
        assert peak_hz == pytest.approx(440.0 if item["speaker"] == 1 else 400.0, abs=4.0)


def test_speaker_crops_augmented_deterministic(corpus: tuple[SpeechDir, AugmentDir]) -> None:
    speech, aug = corpus
    a = SpeakerCrops(speech, crop_seconds=0.2, augment=aug, augment_prob=1.0, reverb_prob=0.5, seed=9)
    b = SpeakerCrops(speech, crop_seconds=0.2, augment=aug, augment_prob=1.0, reverb_prob=0.5, seed=9)
    clean = SpeakerCrops(speech, crop_seconds=0.2, seed=9)
    for i in range(len(a)):
        assert _same(a[i], b[i])
        assert not torch.equal(a[i]["wav"], clean[i]["wav"])


def test_speaker_crops_reverb_only(corpus: tuple[SpeechDir, AugmentDir]) -> None:
    speech, aug = corpus
    data = SpeakerCrops(speech, crop_seconds=0.2, augment=aug, augment_prob=1.0, reverb_prob=1.0, snr={})
    clean = SpeakerCrops(speech, crop_seconds=0.2)
    for i in range(len(data)):  # reverberated (aligned), no noise: still close to the dry crop
        wet, dry = data[i]["wav"], clean[i]["wav"]
        assert not torch.equal(wet, dry)
        assert float(torch.dot(wet, dry) / (wet.norm() * dry.norm())) > 0.5
    with pytest.raises(DataError, match="no usable noise category"):
        SpeakerCrops(speech, crop_seconds=0.2, augment=aug, snr={})


def test_epoch_in_key_for_step_samplers(corpus: tuple[SpeechDir, AugmentDir]) -> None:
    speech, aug = corpus
    data = EnhancementTriples(speech, aug, crop_seconds=0.1, seed=4)
    data.set_epoch(7)
    assert _same(data[(7, 2)], data[2])  # (epoch, index) == set_epoch(epoch); data[index]
    assert not torch.equal(data[(8, 2)]["noisy"], data[2]["noisy"])
    with pytest.raises(IndexError):
        data[(0, len(data))]
    # a step-based batch sampler keys items by step: no set_epoch needed, workers agree
    sampler = [[(step, i) for i in range(step % 3, 9, 3)] for step in range(4)]
    serial = list(DataLoader(data, batch_sampler=sampler, collate_fn=data.collate))
    parallel = list(DataLoader(data, batch_sampler=sampler, num_workers=2, collate_fn=data.collate))
    for a, b in zip(serial, parallel, strict=True):
        assert torch.equal(a["noisy"], b["noisy"]) and a["utt"] == b["utt"]
    crops = SpeakerCrops(speech, crop_seconds=0.1)
    assert _same(crops[(0, 1)], crops[1]) and crops.collate is collate


def test_triples_noise_colour(corpus: tuple[SpeechDir, AugmentDir]) -> None:
    speech, aug = corpus
    common = {
        "crop_seconds": 0.2,
        "snr": {"noise": (-6.0, -4.0), "music": (-6.0, -4.0)},
        "floor": 0.0,
        "seed": 2,
    }
    plain = EnhancementTriples(speech, aug, **common)
    # off (prob 0, whatever the other values): no random number drawn, the very items of no option
    off = EnhancementTriples(
        speech, aug, **common, noise_colour={"prob": 0.0, "tilt_db": 9.0, "eq_db": 9.0, "bands": 2}
    )
    on = EnhancementTriples(
        speech, aug, **common, noise_colour={"prob": 1.0, "tilt_db": 6.0, "eq_db": 10.0, "bands": 3}
    )
    changed = 0
    for i in range(len(plain)):
        assert _same(plain[i], off[i])
        item = on[i]
        clean, noisy = item["clean"].numpy(), item["noisy"].numpy()
        # the same speech crop (drawn first), up to the scale that keeps each mixture from clipping
        reference = plain[i]["clean"].numpy()
        ratio = float(clean @ reference / (reference @ reference))
        assert ratio > 0 and np.allclose(clean, ratio * reference, atol=1e-6)
        assert -6.01 <= measure_snr(clean, noisy - clean) <= -3.99  # coloured before it is scaled
        changed += not torch.allclose(item["noisy"], plain[i]["noisy"])
    assert changed == len(plain)
