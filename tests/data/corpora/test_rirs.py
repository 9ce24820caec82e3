"""prepare_rirs on a tiny fake RIRS_NOISES tree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gradw.audio.io import write_audio
from gradw.data.corpora.rirs import prepare_rirs, read_rir_list
from gradw.data.dirs import AugmentDir
from gradw.data.lists import DataError

ROOMS = {"smallroom": 3, "mediumroom": 2, "largeroom": 1}
RIRS_PER_ROOM = 2
RIR_ALL = ("smallroom", "mediumroom", "largeroom")


def _wav(path: Path) -> None:
    rir = np.zeros(64, dtype=np.float32)
    rir[0], rir[10] = 0.9, 0.3
    write_audio(path, rir, 16000)


def _rirs_noises(base: Path, with_lists: bool = True) -> Path:
    """``base/RIRS_NOISES/simulated_rirs/<set>/Room###/Room###-#####.wav`` plus Kaldi rir_lists."""
    root = base / "RIRS_NOISES"
    for name, rooms in ROOMS.items():
        lines = []
        for r in range(1, rooms + 1):
            room = f"Room{r:03d}"
            for k in range(1, RIRS_PER_ROOM + 1):
                stem = f"{room}-{k:05d}"
                _wav(root / "simulated_rirs" / name / room / f"{stem}.wav")
                location = f"RIRS_NOISES/simulated_rirs/{name}/{room}/{stem}.wav"
                lines.append(f"--rir-id {name}-{stem} --room-id {name}-{room} {location}")
        if with_lists:
            (root / "simulated_rirs" / name / "rir_list").write_text("\n".join(lines) + "\n")
    real = root / "real_rirs_isotropic_noises"
    _wav(real / "air_type1_air_binaural_lecture_0_1.wav")
    _wav(real / "RVB2014_type1_rir_largeroom1_near_angla.wav")
    _wav(real / "RVB2014_type1_noise_largeroom1_1.wav")  # a noise, not an RIR
    (real / "rir_list").write_text(
        "--rir-id air_type1_air_binaural_lecture_0_1 --room-id air_type1_lecture --rt-60 0.7 "
        "RIRS_NOISES/real_rirs_isotropic_noises/air_type1_air_binaural_lecture_0_1.wav\n"
        "--rir-id RVB2014_type1_rir_largeroom1_near_angla --room-id RVB2014_type1_largeroom1 "
        "RIRS_NOISES/real_rirs_isotropic_noises/RVB2014_type1_rir_largeroom1_near_angla.wav\n"
    )
    return root


def test_rir_lists_default_sets(tmp_path: Path) -> None:
    root = _rirs_noises(tmp_path)
    out = tmp_path / "aug"
    summary = prepare_rirs(root, out)
    aug = AugmentDir.load(out, check_audio=True)
    assert list(aug.categories) == ["rirs"]
    keys = aug.keys("rirs")
    assert len(keys) == (3 + 2) * RIRS_PER_ROOM
    assert "smallroom-Room001-00001" in keys and not any(k.startswith("largeroom") for k in keys)
    assert (
        aug.path("rirs", "mediumroom-Room002-00002")
        == root / "simulated_rirs/mediumroom/Room002/Room002-00002.wav"
    )
    assert summary["rooms"] == 5 and summary["sets"] == {"smallroom": 6, "mediumroom": 4}
    assert summary["sources"] == {"smallroom": "rir_list", "mediumroom": "rir_list"}
    assert not (out / "train").exists()


def test_glob_without_rir_list_gives_kaldi_ids(tmp_path: Path) -> None:
    with_lists = prepare_rirs(
        _rirs_noises(tmp_path / "a"), tmp_path / "out_a", sets=["largeroom", "smallroom"]
    )
    without = prepare_rirs(
        _rirs_noises(tmp_path / "b", with_lists=False), tmp_path / "out_b", sets=["largeroom", "smallroom"]
    )
    assert without["sources"] == {"largeroom": "glob", "smallroom": "glob"}
    assert AugmentDir.load(tmp_path / "out_a").keys("rirs") == AugmentDir.load(tmp_path / "out_b").keys(
        "rirs"
    )
    assert with_lists["rooms"] == without["rooms"] == 4


def test_parent_of_rirs_noises_and_real_rirs(tmp_path: Path) -> None:
    _rirs_noises(tmp_path)
    summary = prepare_rirs(tmp_path, tmp_path / "out", sets=(), real=True)
    keys = AugmentDir.load(tmp_path / "out").keys("rirs")
    assert keys == ["RVB2014_type1_rir_largeroom1_near_angla", "air_type1_air_binaural_lecture_0_1"]
    assert summary["sets"] == {"real": 2} and summary["rooms"] == 2


def test_real_needs_its_rir_list(tmp_path: Path) -> None:
    root = _rirs_noises(tmp_path)
    (root / "real_rirs_isotropic_noises" / "rir_list").unlink()
    with pytest.raises(DataError, match="real_rirs_isotropic_noises/rir_list: not found"):
        prepare_rirs(root, tmp_path / "out", real=True)


def test_split_by_room(tmp_path: Path) -> None:
    root = _rirs_noises(tmp_path)
    out = tmp_path / "out"
    summary = prepare_rirs(root, out, sets=RIR_ALL, split_test=0.34, seed=1)
    full, train, test = AugmentDir.load(out), AugmentDir.load(out / "train"), AugmentDir.load(out / "test")
    tr, te = set(train.keys("rirs")), set(test.keys("rirs"))
    assert tr and te and not tr & te and tr | te == set(full.keys("rirs"))

    def room(key: str) -> str:
        return key.rsplit("-", 1)[0]

    assert not {room(k) for k in tr} & {room(k) for k in te}  # test rooms are unseen
    assert summary["test"] == {"rirs": 2 * RIRS_PER_ROOM, "rooms": 2}  # round(0.34 * 6)
    assert summary["train"] == {"rirs": 4 * RIRS_PER_ROOM, "rooms": 4}
    prepare_rirs(root, tmp_path / "again", sets=RIR_ALL, split_test=0.34, seed=1)
    assert (tmp_path / "again/test/rirs/wav.scp").read_text() == (out / "test/rirs/wav.scp").read_text()
    prepare_rirs(root, out, sets=RIR_ALL)
    assert not (out / "test" / "rirs" / "wav.scp").exists()


def test_missing_paths_are_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=str(tmp_path / "nope")):
        prepare_rirs(tmp_path / "nope", tmp_path / "out")
    root = _rirs_noises(tmp_path)
    (root / "simulated_rirs" / "mediumroom" / "Room002" / "Room002-00001.wav").unlink()
    with pytest.raises(DataError, match=r"mediumroom/rir_list: file\(s\) not found.*Room002-00001.wav"):
        prepare_rirs(root, tmp_path / "out")


def test_set_folder_missing(tmp_path: Path) -> None:
    root = tmp_path / "RIRS_NOISES"
    _wav(root / "simulated_rirs" / "smallroom" / "Room001" / "Room001-00001.wav")
    with pytest.raises(DataError, match=rf"{root / 'simulated_rirs' / 'mediumroom'}: RIR set not found"):
        prepare_rirs(root, tmp_path / "out")
    with pytest.raises(ValueError, match="unknown RIR set"):
        prepare_rirs(root, tmp_path / "out", sets=["hugeroom"])
    with pytest.raises(DataError, match="at least 2 are needed"):
        prepare_rirs(root, tmp_path / "out", sets=["smallroom"], split_test=0.5)


def test_read_rir_list_forms(tmp_path: Path) -> None:
    root = _rirs_noises(tmp_path)
    listing = tmp_path / "my_list"
    listing.write_text(
        "--rir-id a --room-id r1 --receiver-position-id 1 "
        "simulated_rirs/smallroom/Room001/Room001-00001.wav\n"
        f"--rir-id b --room-id r2 {root}/simulated_rirs/smallroom/Room002/Room002-00001.wav\n"
        "--rir-id c --room-id r3 sox x.wav -t wav - |\n"
        "\n"
    )
    rirs, piped = read_rir_list(listing, root)
    assert [(r.id, r.room) for r in rirs] == [("a", "r1"), ("b", "r2")]
    assert rirs[0].path == root / "simulated_rirs/smallroom/Room001/Room001-00001.wav"
    assert piped == 1
    listing.write_text("--room-id r1 simulated_rirs/smallroom/Room001/Room001-00001.wav\n")
    with pytest.raises(DataError, match="line"):
        read_rir_list(listing, root)
