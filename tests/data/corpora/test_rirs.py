"""prepare_rirs on a tiny fake RIRS_NOISES tree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gradw.audio.io import write_audio
from gradw.data.corpora.musan import SPLITS
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


def _sides(out: Path, check_audio: bool = False) -> dict[str, AugmentDir]:
    return {split: AugmentDir.load(out / split, check_audio=check_audio) for split in SPLITS}


def _keys(out: Path) -> list[str]:
    """Every RIR key of the three sides of a prepared folder."""
    return sorted(k for side in _sides(out).values() for k in side.keys("rirs"))


def test_rir_lists_default_sets(tmp_path: Path) -> None:
    root = _rirs_noises(tmp_path)
    out = tmp_path / "aug"
    summary = prepare_rirs(root, out)
    sides = _sides(out, check_audio=True)
    assert all(list(side.categories) == ["rirs"] for side in sides.values())
    keys = _keys(out)
    assert len(keys) == (3 + 2) * RIRS_PER_ROOM
    assert "smallroom-Room001-00001" in keys and not any(k.startswith("largeroom") for k in keys)
    (owner,) = [side for side in sides.values() if "mediumroom-Room002-00002" in side.keys("rirs")]
    assert (
        owner.path("rirs", "mediumroom-Room002-00002")
        == root / "simulated_rirs/mediumroom/Room002/Room002-00002.wav"
    )
    assert summary["rooms"] == 5 and summary["sets"] == {"smallroom": 6, "mediumroom": 4}
    assert summary["sources"] == {"smallroom": "rir_list", "mediumroom": "rir_list"}
    assert not (out / "rirs").exists()  # three sides only


def test_glob_without_rir_list_gives_kaldi_ids(tmp_path: Path) -> None:
    with_lists = prepare_rirs(
        _rirs_noises(tmp_path / "a"), tmp_path / "out_a", sets=["largeroom", "smallroom"]
    )
    without = prepare_rirs(
        _rirs_noises(tmp_path / "b", with_lists=False), tmp_path / "out_b", sets=["largeroom", "smallroom"]
    )
    assert without["sources"] == {"largeroom": "glob", "smallroom": "glob"}
    assert _keys(tmp_path / "out_a") == _keys(tmp_path / "out_b")
    assert with_lists["rooms"] == without["rooms"] == 4


def test_parent_of_rirs_noises_and_real_rirs(tmp_path: Path) -> None:
    _rirs_noises(tmp_path)
    summary = prepare_rirs(tmp_path, tmp_path / "out", sets=("largeroom",), real=True)
    keys = [k for k in _keys(tmp_path / "out") if not k.startswith("largeroom")]
    assert keys == ["RVB2014_type1_rir_largeroom1_near_angla", "air_type1_air_binaural_lecture_0_1"]
    assert summary["sets"] == {"largeroom": RIRS_PER_ROOM, "real": 2} and summary["rooms"] == 3


def test_real_needs_its_rir_list(tmp_path: Path) -> None:
    root = _rirs_noises(tmp_path)
    (root / "real_rirs_isotropic_noises" / "rir_list").unlink()
    with pytest.raises(DataError, match="real_rirs_isotropic_noises/rir_list: not found"):
        prepare_rirs(root, tmp_path / "out", real=True)


def test_three_sides_disjoint_by_room(tmp_path: Path) -> None:
    root = _rirs_noises(tmp_path)
    out = tmp_path / "out"
    summary = prepare_rirs(root, out, sets=RIR_ALL, val=0.2, test=0.34, seed=1)
    sides = _sides(out)

    def room(key: str) -> str:
        return key.rsplit("-", 1)[0]

    rooms = {split: {room(k) for k in side.keys("rirs")} for split, side in sides.items()}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not rooms[a] & rooms[b], (a, b)  # validation and test rooms are unseen in training
    assert len(rooms["train"] | rooms["val"] | rooms["test"]) == 6
    assert summary["test"] == {"rirs": 2 * RIRS_PER_ROOM, "rooms": 2}  # round(0.34 * 6)
    assert summary["val"] == {"rirs": 1 * RIRS_PER_ROOM, "rooms": 1}  # round(0.2 * 6)
    assert summary["train"] == {"rirs": 3 * RIRS_PER_ROOM, "rooms": 3}
    prepare_rirs(root, tmp_path / "again", sets=RIR_ALL, val=0.2, test=0.34, seed=1)
    for split in SPLITS:
        assert (tmp_path / "again" / split / "rirs/wav.scp").read_text() == (
            out / split / "rirs/wav.scp"
        ).read_text()


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
    with pytest.raises(DataError, match="at least 3 are needed"):
        prepare_rirs(root, tmp_path / "out", sets=["smallroom"])


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
