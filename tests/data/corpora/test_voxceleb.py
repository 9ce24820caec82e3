"""prepare_voxceleb on tiny fake VoxCeleb trees in the standard layouts."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from gradw.audio.io import write_audio
from gradw.data.corpora.voxceleb import ffmpeg_command, prepare_voxceleb, utterance_id
from gradw.data.dirs import SpeechDir
from gradw.data.lists import DataError
from gradw.data.trials import Trial, make_balanced_trials, read_trials

SR = 16000
N_SAMPLES = 800  # 0.05 s
VOX1_TEST = {
    "id10270": ("x6uYqmx31kE", "8jEAjG6SegY"),
    "id10271": ("1gtz-CUIygI",),
    "id10272": ("Ae4ZU2GBDyk",),
}
VOX1_DEV = {"id10001": ("1zcIwhmdeo4",), "id10002": ("0_laIeN-Q44",)}
UTTS_PER_VIDEO = 2


def _wav(path: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    write_audio(path, 0.1 * rng.standard_normal(N_SAMPLES).astype(np.float32), SR)


def _tree(folder: Path, speakers: dict[str, tuple[str, ...]], suffix: str = ".wav") -> list[str]:
    """Write ``folder/spk/video/0000N<suffix>`` and return the utterance ids."""
    utts = []
    for spk, videos in speakers.items():
        for video in videos:
            for n in range(1, UTTS_PER_VIDEO + 1):
                path = folder / spk / video / f"{n:05d}{suffix}"
                if suffix == ".m4a":
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(b"\x00\x00\x00\x20ftypM4A ")  # never decoded
                else:
                    _wav(path, len(utts))
                utts.append(f"{spk}/{video}/{n:05d}")
    return utts


def _veri_lines(utts: list[str], count: int) -> list[str]:
    """VoxCeleb-style trial lines (``label enroll.wav test.wav``) over ``utts``."""
    lines = []
    for i, a in enumerate(utts):
        for b in utts[i + 1 :]:
            label = int(a.split("/")[0] == b.split("/")[0])
            lines.append(f"{label} {a}.wav {b}.wav")
    return lines[:count]


@pytest.fixture
def vox1(tmp_path: Path) -> tuple[Path, list[str], list[str]]:
    root = tmp_path / "voxceleb1"
    test_utts = _tree(root / "test" / "wav", VOX1_TEST)
    dev_utts = _tree(root / "dev" / "wav", VOX1_DEV)
    lines = _veri_lines(test_utts, 12)
    (root / "veri_test.txt").write_text("\n".join(lines) + "\n")
    (root / "veri_test2.txt").write_text("\n".join(lines[:9]) + "\n")
    return root, test_utts, dev_utts


def test_vox1_split_layout_with_both_trial_lists(
    tmp_path: Path, vox1: tuple[Path, list[str], list[str]]
) -> None:
    root, test_utts, dev_utts = vox1
    out = tmp_path / "out"
    summary = prepare_voxceleb(out, vox1=root, val_speakers=0, quiet=True)

    test = SpeechDir.load(out / "vox1_test")
    assert test.utts == sorted(test_utts)
    assert test.speakers == sorted(VOX1_TEST)
    assert test.utt2spk["id10270/x6uYqmx31kE/00001"] == "id10270"
    assert test.wavs["id10270/x6uYqmx31kE/00001"] == root / "test/wav/id10270/x6uYqmx31kE/00001.wav"
    assert test.utt2dur is not None
    assert test.utt2dur["id10271/1gtz-CUIygI/00002"] == pytest.approx(N_SAMPLES / SR)
    # cleaned list -> trials, original -> trials_original; the .wav suffixes map onto the ids
    assert test.trials is not None and len(test.trials) == 9
    original = read_trials(out / "vox1_test" / "trials_original")
    assert len(original) == 12
    assert original[0] == Trial("id10270/x6uYqmx31kE/00001", "id10270/x6uYqmx31kE/00002", True)
    assert test.trials == original[:9]
    assert summary["vox1_test"]["trials"] == 9 and summary["vox1_test"]["trials_original"] == 12
    assert summary["vox1_test"]["trials_from"]["trials"].endswith("veri_test2.txt")
    assert any("not the standard 37611" in w for w in summary["warnings"])

    dev = SpeechDir.load(out / "vox1_dev")
    assert dev.utts == sorted(dev_utts)
    assert dev.trials is None
    assert summary["vox1_dev"]["speakers"] == 2 and summary["vox1_dev"]["utterances"] == 4
    assert not (out / "vox1_val").exists()


def test_vox1_flat_layout_takes_test_speakers_from_trials(tmp_path: Path) -> None:
    root = tmp_path / "vox1"
    test_utts = _tree(root / "wav", VOX1_TEST)
    dev_utts = _tree(root / "wav", VOX1_DEV)
    (root / "meta").mkdir()
    (root / "meta" / "veri_test2.txt").write_text("\n".join(_veri_lines(test_utts, 20)) + "\n")
    out = tmp_path / "out"
    summary = prepare_voxceleb(out, vox1=root, val_speakers=0, durations=False, quiet=True)
    test = SpeechDir.load(out / "vox1_test")
    dev = SpeechDir.load(out / "vox1_dev")
    assert test.utts == sorted(test_utts) and dev.utts == sorted(dev_utts)
    assert test.utt2dur is None and not (out / "vox1_test" / "utt2dur").exists()
    assert not (out / "vox1_test" / "trials_original").exists()
    assert "hours" not in summary["vox1_test"]
    assert any("3 test speakers taken from the trial list" in w for w in summary["warnings"])


def test_vox1_flat_layout_without_trials_fails(tmp_path: Path) -> None:
    root = tmp_path / "vox1"
    _tree(root / "wav", VOX1_TEST)
    with pytest.raises(DataError, match="veri_test2.txt"):
        prepare_voxceleb(tmp_path / "out", vox1=root, val_speakers=0, quiet=True)
    assert not (tmp_path / "out").exists()


def test_trials_naming_missing_utterances_fail_and_write_nothing(
    tmp_path: Path, vox1: tuple[Path, list[str], list[str]]
) -> None:
    root, _, _ = vox1
    with open(root / "veri_test2.txt", "a") as handle:
        handle.write("0 id10270/x6uYqmx31kE/00001.wav id10999/nope/00042.wav\n")
    with pytest.raises(DataError, match=r"veri_test2\.txt.*id10999/nope/00042"):
        prepare_voxceleb(tmp_path / "out", vox1=root, val_speakers=0, quiet=True)
    assert not (tmp_path / "out").exists()


def test_explicit_trial_list_in_kaldi_order(tmp_path: Path, vox1: tuple[Path, list[str], list[str]]) -> None:
    root, test_utts, _ = vox1
    (root / "veri_test2.txt").unlink()
    custom = tmp_path / "lists" / "vox1_O_cleaned.kaldi"
    custom.parent.mkdir()
    custom.write_text(
        f"{test_utts[0]}.wav {test_utts[-1]}.wav nontarget\n{test_utts[0]} {test_utts[1]} target\n"
    )
    out = tmp_path / "out"
    prepare_voxceleb(out, vox1=root, trials=[custom], val_speakers=0, durations=False, quiet=True)
    test = SpeechDir.load(out / "vox1_test", check_audio=False)
    assert test.trials == [
        Trial(test_utts[0], test_utts[-1], False),
        Trial(test_utts[0], test_utts[1], True),
    ]
    assert len(read_trials(out / "vox1_test" / "trials_original")) == 12


def test_only_original_list_becomes_trials_with_a_warning(
    tmp_path: Path, vox1: tuple[Path, list[str], list[str]]
) -> None:
    root, _, _ = vox1
    (root / "veri_test2.txt").unlink()
    summary = prepare_voxceleb(tmp_path / "out", vox1=root, val_speakers=0, durations=False, quiet=True)
    test = SpeechDir.load(tmp_path / "out" / "vox1_test", check_audio=False)
    assert test.trials is not None and len(test.trials) == 12
    assert any("cleaned list veri_test2.txt not found" in w for w in summary["warnings"])


def _vox2(tmp_path: Path, n_speakers: int = 6) -> tuple[Path, list[str]]:
    root = tmp_path / "voxceleb2"
    speakers = {f"id0{i:04d}": (f"vid{i}a", f"vid{i}b") for i in range(12, 12 + n_speakers)}
    return root, _tree(root / "dev" / "aac", speakers)


def test_vox2_held_out_validation_speakers(tmp_path: Path) -> None:
    root, utts = _vox2(tmp_path)
    out = tmp_path / "out"
    summary = prepare_voxceleb(out, vox2=root, val_speakers=2, val_trials=40, seed=3, quiet=True)
    train = SpeechDir.load(out / "vox2_dev")
    val = SpeechDir.load(out / "vox2_val")
    assert len(val.speakers) == 2 and len(train.speakers) == 4
    assert not set(val.speakers) & set(train.speakers)
    assert sorted(train.utts + val.utts) == sorted(utts)
    # balanced generated trials within the held-out speakers: 2 speakers x C(4, 2) = 12 target pairs
    assert val.trials is not None
    labels = Counter(t.target for t in val.trials)
    assert labels[True] == labels[False] == 12
    for t in val.trials:
        assert t.enroll < t.test
        assert (val.utt2spk[t.enroll] == val.utt2spk[t.test]) == t.target
    assert len({(t.enroll, t.test) for t in val.trials}) == len(val.trials)
    assert summary["vox2_val"]["trials"] == 24
    assert any("only 24 trials" in w for w in summary["warnings"])
    assert summary["vox2_dev"]["hours"] == pytest.approx(len(train) * N_SAMPLES / SR / 3600, abs=1e-3)


def test_validation_split_is_deterministic_by_seed(tmp_path: Path) -> None:
    root, _ = _vox2(tmp_path)

    def held_out(seed: int, name: str) -> tuple[list[str], str]:
        out = tmp_path / name
        prepare_voxceleb(
            out, vox2=root, val_speakers=2, val_trials=10, seed=seed, durations=False, quiet=True
        )
        return SpeechDir.load(out / "vox2_val", check_audio=False).speakers, (
            out / "vox2_val/trials"
        ).read_text()

    first = held_out(0, "a")
    assert held_out(0, "b") == first
    assert any(held_out(seed, f"s{seed}")[0] != first[0] for seed in range(1, 6))


def test_vox1_only_holds_validation_out_of_dev(
    tmp_path: Path, vox1: tuple[Path, list[str], list[str]]
) -> None:
    root, test_utts, dev_utts = vox1
    dev_utts += _tree(root / "dev" / "wav", {"id10003": ("a1",), "id10004": ("b1",)})
    out = tmp_path / "out"
    summary = prepare_voxceleb(out, vox1=root, val_speakers=2, val_trials=8, durations=False, quiet=True)
    dev = SpeechDir.load(out / "vox1_dev", check_audio=False)
    val = SpeechDir.load(out / "vox1_val", check_audio=False)
    assert len(dev.speakers) == len(val.speakers) == 2
    assert not set(dev.speakers) & set(val.speakers)
    assert sorted(dev.utts + val.utts) == sorted(dev_utts)
    assert SpeechDir.load(out / "vox1_test", check_audio=False).utts == sorted(test_utts)
    assert summary["vox1_val"]["trials"] == 4  # 2 speakers x C(2, 2) target pairs, 2 non-target
    with pytest.raises(DataError, match="cannot hold out 4 validation speakers out of 4"):
        prepare_voxceleb(tmp_path / "out2", vox1=root, val_speakers=4, durations=False, quiet=True)


def test_vox1_and_vox2_together(tmp_path: Path, vox1: tuple[Path, list[str], list[str]]) -> None:
    root1, _, dev_utts = vox1
    root2, _ = _vox2(tmp_path, n_speakers=5)
    out = tmp_path / "out"
    summary = prepare_voxceleb(out, vox1=root1, vox2=root2, val_speakers=2, durations=False, quiet=True)
    assert {k for k in summary if k.startswith("vox")} == {"vox1_test", "vox1_dev", "vox2_dev", "vox2_val"}
    assert SpeechDir.load(out / "vox1_dev", check_audio=False).utts == sorted(dev_utts)
    assert summary["vox2_dev"]["speakers"] == 3 and summary["vox2_val"]["speakers"] == 2


def test_m4a_only_fails_with_the_ffmpeg_command(tmp_path: Path) -> None:
    root = tmp_path / "vox2"
    _tree(root / "dev" / "aac", {"id00012": ("abc",), "id00015": ("def",)}, suffix=".m4a")
    with pytest.raises(DataError, match="only .m4a") as info:
        prepare_voxceleb(tmp_path / "out", vox2=root, val_speakers=0, quiet=True)
    message = str(info.value)
    assert "ffmpeg" in message and "-ar 16000" in message and str(root / "dev" / "aac") in message
    assert not (tmp_path / "out").exists()


def test_partly_converted_m4a_fails_but_converted_beside_m4a_works(tmp_path: Path) -> None:
    root = tmp_path / "vox2"
    speakers = {"id00012": ("abc",), "id00015": ("def",), "id00017": ("ghi",)}
    utts = _tree(root / "dev" / "aac", speakers, suffix=".m4a")
    for i, utt in enumerate(utts[:-1]):
        _wav(root / "dev" / "aac" / f"{utt}.wav", i)
    with pytest.raises(DataError, match=rf"exist only as .m4a.*{utts[-1]}"):
        prepare_voxceleb(tmp_path / "out", vox2=root, val_speakers=0, quiet=True)
    _wav(root / "dev" / "aac" / f"{utts[-1]}.wav")
    prepare_voxceleb(tmp_path / "out", vox2=root, val_speakers=0, quiet=True)
    train = SpeechDir.load(tmp_path / "out" / "vox2_dev")
    assert train.utts == sorted(utts)
    assert all(path.suffix == ".wav" for path in train.wavs.values())


def test_missing_roots_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=str(tmp_path / "nope")):
        prepare_voxceleb(tmp_path / "out", vox1=tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=rf"{tmp_path / 'empty'}.*dev/aac"):
        prepare_voxceleb(tmp_path / "out", vox2=tmp_path / "empty")
    with pytest.raises(ValueError, match="VoxCeleb1 and/or VoxCeleb2"):
        prepare_voxceleb(tmp_path / "out")


def test_unreadable_audio_fails_naming_the_file(tmp_path: Path) -> None:
    root, utts = _vox2(tmp_path, n_speakers=2)
    bad = root / "dev" / "aac" / f"{utts[0]}.wav"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(DataError, match=str(bad)):
        prepare_voxceleb(tmp_path / "out", vox2=root, val_speakers=0, quiet=True)
    assert not (tmp_path / "out").exists()


def test_gender_from_meta(tmp_path: Path, vox1: tuple[Path, list[str], list[str]]) -> None:
    root, _, _ = vox1
    rows = ["VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet"]
    rows += [f"{spk}\tName_{i}\t{'mf'[i % 2]}\tUSA\ttest" for i, spk in enumerate(VOX1_TEST)]
    rows += [f"{spk}\tDev_{i}\tm\tUK\tdev" for i, spk in enumerate(VOX1_DEV)]
    (root / "vox1_meta.csv").write_text("\n".join(rows) + "\n")
    prepare_voxceleb(tmp_path / "out", vox1=root, val_speakers=0, durations=False, quiet=True)
    test = SpeechDir.load(tmp_path / "out" / "vox1_test", check_audio=False)
    assert test.spk2gender == {"id10270": "m", "id10271": "f", "id10272": "m"}


def test_make_balanced_trials_on_a_large_list() -> None:
    spk2utt = {f"s{s:03d}": [f"s{s:03d}/u{u:03d}" for u in range(60 + s % 7)] for s in range(40)}
    trials = make_balanced_trials(spk2utt, 2000, seed=1)
    assert len(trials) == 2000
    assert sum(t.target for t in trials) == 1000
    assert len({(t.enroll, t.test) for t in trials}) == 2000
    for t in trials:
        assert t.enroll < t.test
        assert (t.enroll.split("/")[0] == t.test.split("/")[0]) == t.target
    assert make_balanced_trials(spk2utt, 2000, seed=1) == trials
    assert make_balanced_trials(spk2utt, 2000, seed=2) != trials
    # every same-speaker pair is reachable: with all target pairs wanted, all are listed once
    small = {"a": ["a1", "a2", "a3"], "b": ["b1", "b2"], "c": ["c1"]}
    all_trials = make_balanced_trials(small, 100, seed=0)
    assert {(t.enroll, t.test) for t in all_trials if t.target} == {
        ("a1", "a2"),
        ("a1", "a3"),
        ("a2", "a3"),
        ("b1", "b2"),
    }
    assert sum(not t.target for t in all_trials) == 4
    assert make_balanced_trials({"a": ["a1", "a2"]}, 10, seed=0) == []
    unprefixed = make_balanced_trials({"z": ["a1", "a2"], "y": ["b1", "b2"]}, 10, seed=0)
    assert len(unprefixed) == 4 and all(t.enroll < t.test for t in unprefixed)


def test_helpers() -> None:
    assert utterance_id("id10270/x6uYqmx31kE/00001.wav") == "id10270/x6uYqmx31kE/00001"
    assert utterance_id("id10270/x6uYqmx31kE/00001") == "id10270/x6uYqmx31kE/00001"
    command = ffmpeg_command("/data/vox 2/dev/aac")
    assert command.startswith("find '/data/vox 2/dev/aac' -name '*.m4a'")
    assert "${1%.m4a}.wav" in command


def test_rerun_without_validation_removes_the_stale_val_dir(tmp_path: Path) -> None:
    root, utts = _vox2(tmp_path, n_speakers=4)
    out = tmp_path / "out"
    prepare_voxceleb(out, vox2=root, val_speakers=2, durations=False, quiet=True)
    assert (out / "vox2_val" / "wav.scp").is_file()
    summary = prepare_voxceleb(out, vox2=root, val_speakers=0, durations=False, quiet=True)
    assert not (out / "vox2_val").exists()
    assert any("vox2_val" in w and "overlaps" in w for w in summary["warnings"])
    assert SpeechDir.load(out / "vox2_dev", check_audio=False).utts == sorted(utts)
