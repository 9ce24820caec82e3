"""prepare_musan on tiny fake MUSAN trees (original and voxceleb_trainer's musan_split)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gradw.audio.io import write_audio
from gradw.data.corpora.musan import prepare_musan, seeded_order, split_count, split_groups
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


def _recordings(category: str) -> int:
    return sum(MUSAN[category].values())


def test_standard_layout(tmp_path: Path) -> None:
    root = _musan(tmp_path / "musan")
    out = tmp_path / "aug"
    summary = prepare_musan(root, out)
    aug = AugmentDir.load(out, check_audio=True)
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
    assert not (out / "train").exists() and not (out / "speech").exists()


def test_musan_split_layout_gives_the_same_categories(tmp_path: Path) -> None:
    """The extra directory level of musan_split must not move the category (wespeaker#263)."""
    prepare_musan(_musan(tmp_path / "musan"), tmp_path / "a")
    plain = AugmentDir.load(tmp_path / "a")
    root = _musan(tmp_path / "data" / "musan_split", split=True)
    summary = prepare_musan(root, tmp_path / "b")
    split = AugmentDir.load(tmp_path / "b")
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
    deep = AugmentDir.load(tmp_path / "deep")
    assert len(deep.keys("music")) == _recordings("music")
    assert deep.keys("music")[0] == "music/extra/musan/fma/music-fma-0000"
    assert summary["noise"]["files"] == _recordings("noise")

    summary = prepare_musan(tmp_path / "corpora" / "extra" / "musan" / "noise", tmp_path / "noise_only")
    only = AugmentDir.load(tmp_path / "noise_only")
    assert list(only.categories) == ["noise"]
    assert only.keys("noise")[0] == "noise/free-sound/noise-free-sound-0000"
    assert any("no audio for category(ies) music, babble" in w for w in summary["warnings"])


def test_uncategorised_audio_is_skipped_and_reported(tmp_path: Path) -> None:
    root = _musan(tmp_path / "musan")
    _wav(root / "misc" / "stray.wav")
    summary = prepare_musan(root, tmp_path / "out")
    assert summary["uncategorised"] == 1
    assert any("stray.wav" in w for w in summary["warnings"])
    aug = AugmentDir.load(tmp_path / "out")
    assert not any("stray" in k for c in aug.categories for k in aug.keys(c))


def test_train_test_split_by_recording(tmp_path: Path) -> None:
    root = _musan(tmp_path / "musan_split", split=True)
    out = tmp_path / "out"
    summary = prepare_musan(root, out, split_test=0.4, seed=7)
    full, train, test = AugmentDir.load(out), AugmentDir.load(out / "train"), AugmentDir.load(out / "test")
    for category in full.categories:
        tr, te = set(train.keys(category)), set(test.keys(category))
        assert tr and te and not tr & te
        assert tr | te == set(full.keys(category))
        # all segments of one recording on the same side
        assert not {k.rsplit("/", 1)[0] for k in tr} & {k.rsplit("/", 1)[0] for k in te}
        n = summary[category]["recordings"]
        assert len(te) == SEGMENTS * split_count(n, 0.4)
        assert summary["test"][category] == len(te) and summary["train"][category] == len(tr)
    again = prepare_musan(root, tmp_path / "again", split_test=0.4, seed=7)
    assert again["test"] == summary["test"]
    assert (tmp_path / "again/test/noise/wav.scp").read_text() == (out / "test/noise/wav.scp").read_text()
    # a later run without a split removes the stale split lists
    prepare_musan(root, out)
    assert not (out / "train" / "noise" / "wav.scp").exists()
    assert not (out / "test" / "babble" / "wav.scp").exists()


def test_split_needs_two_recordings_per_category(tmp_path: Path) -> None:
    _wav(tmp_path / "musan" / "noise" / "a" / "only.wav")
    _wav(tmp_path / "musan" / "music" / "a" / "m1.wav")
    _wav(tmp_path / "musan" / "music" / "a" / "m2.wav")
    with pytest.raises(DataError, match="'noise' has 1 recording"):
        prepare_musan(tmp_path / "musan", tmp_path / "out", split_test=0.5)
    assert not (tmp_path / "out").exists()


def test_missing_or_empty_root_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=str(tmp_path / "nope")):
        prepare_musan(tmp_path / "nope", tmp_path / "out")
    _wav(tmp_path / "other" / "x" / "a.wav")
    with pytest.raises(DataError, match=rf"{tmp_path / 'other'}: no audio files under a folder named"):
        prepare_musan(tmp_path / "other", tmp_path / "out")
    with pytest.raises(ValueError, match="split_test"):
        prepare_musan(tmp_path / "other", tmp_path / "out", split_test=1.0)


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
    assert split_count(10, 0.25) == 2 and split_count(3, 0.01) == 1 and split_count(3, 0.99) == 2
    train, test = split_groups(items, 0.3, seed=5)
    assert len(test) == 6 and train | test == set(items) and not train & test
    with pytest.raises(ValueError):
        split_count(1, 0.5)
