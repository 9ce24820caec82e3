"""prepare_musan on tiny fake MUSAN trees (original and voxceleb_trainer's musan_split)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gradw.audio.io import write_audio
from gradw.data.corpora.musan import SPLITS, prepare_musan, seeded_order, split_counts, split_groups
from gradw.data.dirs import AugmentDir
from gradw.data.lists import DataError

# category folder -> source -> recordings
MUSAN = {
    "noise": {"free-sound": 3, "sound-bible": 2},
    "music": {"fma": 2, "jamendo": 2},
    "speech": {"librivox": 3, "us-gov": 1},
}
SEGMENTS = 2  # musan_split segments per recording


def _wav(path: Path) -> None:
    write_audio(path, np.full(160, 0.01, dtype=np.float32), 16000)


def _musan(root: Path, split: bool = False) -> Path:
    """``root/noise/free-sound/noise-free-sound-0000.wav`` (or ``.../noise-free-sound-0000/00000.wav``)."""
    for category, sources in MUSAN.items():
        for source, count in sources.items():
            for i in range(count):
                name = f"{category}-{source}-{i:04d}"
                if split:
                    for s in range(SEGMENTS):
                        _wav(root / category / source / name / f"{s * 3:05d}.wav")
                else:
                    _wav(root / category / source / f"{name}.wav")
            (root / category / source / "ANNOTATIONS").write_text("file licence\n")
    (root / "README").write_text("MUSAN\n")
    return root


class _Union:
    """The three augmentation directories of a prepared folder, read as one (each must load)."""

    def __init__(self, out: Path, check_audio: bool = False) -> None:
        self.parts = [AugmentDir.load(out / split, check_audio=check_audio) for split in SPLITS]

    @property
    def categories(self) -> list[str]:
        return list(dict.fromkeys(c for part in self.parts for c in part.categories))

    def keys(self, category: str) -> list[str]:
        return sorted(k for part in self.parts if category in part.categories for k in part.keys(category))

    def path(self, category: str, key: str) -> Path:
        (part,) = [p for p in self.parts if category in p.categories and key in p.keys(category)]
        return part.path(category, key)


def _recording(key: str, segmented: bool) -> str:
    return key.rsplit("/", 1)[0] if segmented else key


def _recordings(category: str) -> int:
    return sum(MUSAN[category].values())


def test_standard_layout(tmp_path: Path) -> None:
    root = _musan(tmp_path / "musan")
    out = tmp_path / "aug"
    summary = prepare_musan(root, out)
    aug = _Union(out, check_audio=True)
    assert list(aug.categories) == ["noise", "music", "babble"]
    assert aug.keys("noise")[:2] == [
        "noise/free-sound/noise-free-sound-0000",
        "noise/free-sound/noise-free-sound-0001",
    ]
    assert (
        aug.path("babble", "babble/us-gov/speech-us-gov-0000")
        == root / "speech/us-gov/speech-us-gov-0000.wav"
    )
    for category, folder in (("noise", "noise"), ("music", "music"), ("babble", "speech")):
        keys = aug.keys(category)
        assert len(keys) == _recordings(folder)
        assert all(k.startswith(f"{category}/") for k in keys)
        assert summary[category] == {"files": _recordings(folder), "recordings": _recordings(folder)}
    assert summary["uncategorised"] == 0 and summary["warnings"] == []
    # three sides only: no list of every recording, no "speech" category
    assert not (out / "noise").exists() and not (out / "speech").exists()
    assert not any((out / split / "speech").exists() for split in SPLITS)


def test_musan_split_layout_gives_the_same_categories(tmp_path: Path) -> None:
    """The extra directory level of musan_split must not move the category (wespeaker#263)."""
    prepare_musan(_musan(tmp_path / "musan"), tmp_path / "a")
    plain = _Union(tmp_path / "a")
    root = _musan(tmp_path / "data" / "musan_split", split=True)
    summary = prepare_musan(root, tmp_path / "b")
    split = _Union(tmp_path / "b")
    assert list(split.categories) == list(plain.categories)
    for category in plain.categories:
        assert len(split.keys(category)) == SEGMENTS * len(plain.keys(category))
        # every segment key extends its recording's key from the plain layout
        assert {k.rsplit("/", 1)[0] for k in split.keys(category)} == set(plain.keys(category))
        assert summary[category]["recordings"] == len(plain.keys(category))
    assert "noise/free-sound/noise-free-sound-0002/00003" in split.keys("noise")


def test_category_folder_at_any_depth_and_as_root(tmp_path: Path) -> None:
    _musan(tmp_path / "corpora" / "extra" / "musan")
    summary = prepare_musan(tmp_path / "corpora", tmp_path / "deep")
    deep = _Union(tmp_path / "deep")
    assert len(deep.keys("music")) == _recordings("music")
    assert deep.keys("music")[0] == "music/extra/musan/fma/music-fma-0000"
    assert summary["noise"]["files"] == _recordings("noise")

    summary = prepare_musan(tmp_path / "corpora" / "extra" / "musan" / "noise", tmp_path / "noise_only")
    only = _Union(tmp_path / "noise_only")
    assert list(only.categories) == ["noise"]
    assert only.keys("noise")[0] == "noise/free-sound/noise-free-sound-0000"
    assert any("no audio for category(ies) music, babble" in w for w in summary["warnings"])


def test_uncategorised_audio_is_skipped_and_reported(tmp_path: Path) -> None:
    root = _musan(tmp_path / "musan")
    _wav(root / "misc" / "stray.wav")
    summary = prepare_musan(root, tmp_path / "out")
    assert summary["uncategorised"] == 1
    assert any("stray.wav" in w for w in summary["warnings"])
    aug = _Union(tmp_path / "out")
    assert not any("stray" in k for c in aug.categories for k in aug.keys(c))


def test_three_sides_disjoint_by_recording(tmp_path: Path) -> None:
    root = _musan(tmp_path / "musan_split", split=True)
    out = tmp_path / "out"
    summary = prepare_musan(root, out, val=0.25, test=0.25, seed=7)
    sides = {split: AugmentDir.load(out / split) for split in SPLITS}
    for category in ("noise", "music", "babble"):
        keys = {split: set(sides[split].keys(category)) for split in SPLITS}
        recs = {split: {_recording(k, segmented=True) for k in keys[split]} for split in SPLITS}
        assert all(keys.values())  # every side has every category
        # no recording (and so no segment) on two sides; together they are every recording
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            assert not recs[a] & recs[b], (category, a, b)
        n = summary[category]["recordings"]
        assert len(recs["train"] | recs["val"] | recs["test"]) == n
        k_val, k_test = split_counts(n, 0.25, 0.25)
        assert (len(recs["val"]), len(recs["test"])) == (k_val, k_test)
        for split in SPLITS:
            assert summary[split][category] == {"files": len(keys[split]), "recordings": len(recs[split])}
            assert len(keys[split]) == SEGMENTS * len(recs[split])
    again = prepare_musan(root, tmp_path / "again", val=0.25, test=0.25, seed=7)
    assert {s: again[s] for s in SPLITS} == {s: summary[s] for s in SPLITS}
    assert (tmp_path / "again/test/noise/wav.scp").read_text() == (out / "test/noise/wav.scp").read_text()


def test_a_list_of_every_recording_left_by_an_earlier_version_is_removed(tmp_path: Path) -> None:
    root = _musan(tmp_path / "musan")
    out = tmp_path / "out"
    _wav(tmp_path / "x.wav")
    (out / "noise").mkdir(parents=True)
    (out / "noise" / "wav.scp").write_text(f"old {tmp_path / 'x.wav'}\n")
    prepare_musan(root, out)
    assert not (out / "noise" / "wav.scp").exists()
    assert all((out / split / "noise" / "wav.scp").is_file() for split in SPLITS)


def test_each_category_needs_three_recordings(tmp_path: Path) -> None:
    _wav(tmp_path / "musan" / "noise" / "a" / "n1.wav")
    _wav(tmp_path / "musan" / "noise" / "a" / "n2.wav")
    for i in range(3):
        _wav(tmp_path / "musan" / "music" / "a" / f"m{i}.wav")
    with pytest.raises(DataError, match="'noise' has 2 recording"):
        prepare_musan(tmp_path / "musan", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_or_empty_root_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=str(tmp_path / "nope")):
        prepare_musan(tmp_path / "nope", tmp_path / "out")
    _wav(tmp_path / "other" / "x" / "a.wav")
    with pytest.raises(DataError, match=rf"{tmp_path / 'other'}: no audio files under a folder named"):
        prepare_musan(tmp_path / "other", tmp_path / "out")
    with pytest.raises(ValueError, match="test fraction"):
        prepare_musan(tmp_path / "other", tmp_path / "out", test=1.0)
    with pytest.raises(ValueError, match="leave some for training"):
        prepare_musan(tmp_path / "other", tmp_path / "out", val=0.5, test=0.5)


def test_colliding_keys_fail(tmp_path: Path) -> None:
    _wav(tmp_path / "musan" / "noise" / "src" / "a.wav")
    (tmp_path / "musan" / "noise" / "src" / "a.flac").write_bytes(
        (tmp_path / "musan/noise/src/a.wav").read_bytes()
    )
    with pytest.raises(DataError, match="noise/src/a"):
        prepare_musan(tmp_path / "musan", tmp_path / "out")


def test_split_helpers() -> None:
    items = [f"room{i}" for i in range(20)]
    assert seeded_order(items, 0) == seeded_order(reversed(items), 0)
    assert seeded_order(items, 0) != seeded_order(items, 1)
    # adding items does not reorder the others
    assert [x for x in seeded_order([*items, "new"], 0) if x != "new"] == seeded_order(items, 0)
    assert split_counts(10, 0.1, 0.2) == (1, 2) and split_counts(3, 0.01, 0.01) == (1, 1)
    assert split_counts(3, 0.3, 0.6) == (1, 1)  # one group always stays for training
    train, val, test = split_groups(items, 0.2, 0.3, seed=5)
    assert (len(train), len(val), len(test)) == (10, 4, 6)
    assert train | val | test == set(items) and not (train & val or train & test or val & test)
    with pytest.raises(ValueError):
        split_counts(2, 0.1, 0.1)


def test_the_paper_preset_trains_on_train_and_selects_on_val(tmp_path: Path) -> None:
    from gradw.cli.main import main
    from gradw.config import SpeakerTrainConfig, TrainConfig, load_config

    train = load_config(TrainConfig, "paper", section="train")
    speaker = load_config(SpeakerTrainConfig, "paper", section="train_speaker")
    assert Path(train.data.augment) == Path("data/augment/train") == Path(speaker.augment)
    assert Path(train.data.val_augment) == Path("data/augment/val")
    # the README's command writes exactly those folders
    root = _musan(tmp_path / "musan")
    assert main(["data", "prepare", "musan", str(root), "--out", str(tmp_path / "data/augment")]) == 0
    assert sorted(p.name for p in (tmp_path / "data/augment").iterdir()) == sorted(SPLITS)
