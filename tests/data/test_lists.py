"""Tests for the Kaldi/WeSpeaker data contract (gradw.data.lists)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from gradw.data.dirs import AugmentDir, SpeechDir, write_augment_dir, write_speech_dir
from gradw.data.lists import DataError, format_offenders, read_map, write_map
from gradw.data.trials import Trial, read_pairs, read_trials, write_trials


def _wav(path: Path, seconds: float = 0.1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(int(16000 * seconds), dtype=np.float32), 16000, subtype="PCM_16")
    return path


def _speech_dir(tmp_path: Path) -> Path:
    root = tmp_path / "test"
    wavs = {f"s{s}-u{u}": _wav(root / "wav" / f"s{s}" / f"u{u}.wav") for s in range(2) for u in range(2)}
    utt2spk = {utt: utt.split("-")[0] for utt in wavs}
    trials = [Trial("s0-u0", "s0-u1", True), Trial("s0-u0", "s1-u0", False)]
    write_speech_dir(root, wavs, utt2spk, utt2dur={u: 0.1 for u in wavs}, trials=trials)
    return root


def test_format_offenders_caps_at_five() -> None:
    assert format_offenders(range(3)) == "0, 1, 2"
    assert format_offenders(range(8)) == "0, 1, 2, 3, 4 and 3 more"


def test_read_map_value_is_rest_of_line_and_blank_lines_ignored(tmp_path: Path) -> None:
    path = tmp_path / "wav.scp"
    path.write_text("b  /data/with space/b.wav\n\n   \na a.wav\n")
    assert read_map(path) == {"a": "a.wav", "b": "/data/with space/b.wav"}


def test_read_map_duplicates_and_missing_values_name_lines(tmp_path: Path) -> None:
    path = tmp_path / "utt2spk"
    path.write_text("u1 s1\nu2\nu1 s2\n")
    with pytest.raises(DataError) as err:
        read_map(path)
    message = str(err.value)
    assert str(path) in message
    assert "line(s) with no value: 2" in message
    assert "'u1' (lines 1 and 3)" in message


def test_read_map_caps_offender_list(tmp_path: Path) -> None:
    path = tmp_path / "utt2spk"
    path.write_text("".join(f"u{i}\n" for i in range(9)))
    with pytest.raises(DataError, match=r"1, 2, 3, 4, 5 and 4 more"):
        read_map(path)


def test_read_map_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        read_map(tmp_path / "nope")


def test_write_map_sorted_atomic_and_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "utt2dur"
    write_map(path, {"b": 1.25, "a": 0.1 + 0.2})
    assert path.read_text().splitlines()[0].startswith("a ")
    assert float(read_map(path)["a"]) == 0.1 + 0.2  # floats round-trip exactly
    assert [p.name for p in path.parent.iterdir()] == ["utt2dur"]  # no temp file left
    with pytest.raises(DataError):
        write_map(path, {"bad key": "x"})
    assert read_map(path)["b"] == "1.25"  # failed write left the old file intact


def test_trials_both_orders_and_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "trials"
    path.write_text("1 id1/a.wav id1/b.wav\nid1/a.wav id2/c.wav nontarget\n0 x y\nx z target\n")
    trials = read_trials(path)
    assert trials == [
        Trial("id1/a.wav", "id1/b.wav", True),
        Trial("id1/a.wav", "id2/c.wav", False),
        Trial("x", "y", False),
        Trial("x", "z", True),
    ]
    for style in ("kaldi", "voxceleb"):
        out = tmp_path / f"trials.{style}"
        write_trials(out, trials, style=style)
        assert read_trials(out) == trials
    assert (tmp_path / "trials.voxceleb").read_text().splitlines()[0] == "1 id1/a.wav id1/b.wav"
    assert (tmp_path / "trials.kaldi").read_text().splitlines()[1] == "id1/a.wav id2/c.wav nontarget"


def test_trials_bad_line_named(tmp_path: Path) -> None:
    path = tmp_path / "trials"
    path.write_text("1 a b\na b 0.5 target\n2 a b\n")
    with pytest.raises(DataError, match=r"line\(s\) 2, 3"):
        read_trials(path)


def test_speech_dir_roundtrip_relative_paths(tmp_path: Path) -> None:
    root = _speech_dir(tmp_path)
    scp = (root / "wav.scp").read_text()
    assert "s0-u0 wav/s0/u0.wav" in scp  # relative, so the directory can move
    assert (root / "spk2utt").read_text() == "s0 s0-u0 s0-u1\ns1 s1-u0 s1-u1\n"
    moved = tmp_path / "moved"
    root.rename(moved)
    data = SpeechDir.load(moved)
    assert data.speakers == ["s0", "s1"]
    assert data.spk2utt["s1"] == ["s1-u0", "s1-u1"]
    assert data.wavs["s1-u1"] == moved / "wav" / "s1" / "u1.wav"
    assert data.wavs["s1-u1"].is_absolute()
    assert data.utt2dur == {u: 0.1 for u in data.utts}
    assert data.trials is not None and len(data.trials) == 2
    assert len(data) == 4


def test_speech_dir_absolute_outside_root(tmp_path: Path) -> None:
    outside = _wav(tmp_path / "elsewhere" / "x.wav")
    root = tmp_path / "d"
    write_speech_dir(root, {"x": outside}, {"x": "spk"})
    assert (root / "wav.scp").read_text().strip() == f"x {outside}"
    assert SpeechDir.load(root).wavs["x"] == outside


def test_speech_dir_collects_every_problem(tmp_path: Path) -> None:
    root = _speech_dir(tmp_path)
    (root / "wav" / "s1" / "u1.wav").unlink()
    (root / "wav" / "s1" / "u0.wav").write_bytes(b"not audio at all")
    with open(root / "utt2spk", "a") as handle:
        handle.write("ghost s9\n")
    with open(root / "trials", "a") as handle:
        handle.write("s0-u0 nobody target\n")
    with open(root / "utt2dur", "a") as handle:
        handle.write("phantom 1.0\n")
    with pytest.raises(DataError) as err:
        SpeechDir.load(root)
    message = str(err.value)
    assert "no audio for utterance(s) ghost" in message
    assert "file(s) not found for s1-u1" in message
    assert "unreadable audio for s1-u0" in message
    assert "unknown utterance(s) nobody" in message
    assert "unknown utterance(s) phantom" in message
    # without the audio check the corrupt file passes (only existence is checked)
    (root / "utt2spk").write_text("".join(f"s{s}-u{u} s{s}\n" for s in range(2) for u in range(2)))
    with pytest.raises(DataError) as err:
        SpeechDir.load(root, check_audio=False)
    assert "unreadable" not in str(err.value)


def test_speech_dir_missing_and_empty_files(tmp_path: Path) -> None:
    root = tmp_path / "d"
    root.mkdir()
    with pytest.raises(DataError, match="wav.scp: file not found"):
        SpeechDir.load(root)
    (root / "wav.scp").write_text("")
    (root / "utt2spk").write_text("")
    with pytest.raises(DataError, match="empty"):
        SpeechDir.load(root)


def test_speech_dir_spk2utt_must_agree(tmp_path: Path) -> None:
    root = _speech_dir(tmp_path)
    (root / "spk2utt").write_text("s0 s0-u0\ns1 s0-u1 s1-u0 s1-u1\n")
    with pytest.raises(DataError, match="disagrees with utt2spk for s0-u1"):
        SpeechDir.load(root)


def test_speech_dir_rejects_pipes_and_segments(tmp_path: Path) -> None:
    root = _speech_dir(tmp_path)
    (root / "wav.scp").write_text("s0-u0 sox a.wav -t wav - |\n")
    (root / "utt2spk").write_text("s0-u0 s0\n")
    (root / "trials").unlink()
    (root / "utt2dur").unlink()
    with pytest.raises(DataError, match="piped"):
        SpeechDir.load(root)
    (root / "segments").write_text("seg s0-u0 0 1\n")
    with pytest.raises(DataError, match="segments"):
        SpeechDir.load(root)


def test_subset_filters_everything(tmp_path: Path) -> None:
    data = SpeechDir.load(_speech_dir(tmp_path))
    sub = data.subset(["s0-u0", "s0-u1"])
    assert sub.speakers == ["s0"]
    assert sub.trials == [Trial("s0-u0", "s0-u1", True)]
    assert sub.utt2dur is not None and set(sub.utt2dur) == {"s0-u0", "s0-u1"}
    with pytest.raises(DataError, match="unknown"):
        data.subset(["zz"])


def test_spread_speakers_keeps_evenly_spaced_speakers(tmp_path: Path) -> None:
    wavs = {f"{src}{k}-u{j}": "x.wav" for src in "abcd" for k in range(3) for j in range(2)}
    utt2spk = {u: u.split("-")[0] for u in wavs}
    root = tmp_path / "d"
    (root).mkdir()
    (root / "x.wav").write_bytes(b"")
    write_speech_dir(root, wavs, utt2spk)
    data = SpeechDir.load(root, check_audio=False)  # 12 speakers: a0 a1 a2 b0 ... d2
    four = data.spread_speakers(4)
    assert four.speakers == ["a0", "b0", "c0", "d0"]  # one of each source, not the first four
    assert set(four.wavs) == {u for u, s in utt2spk.items() if s in four.speakers}
    assert data.spread_speakers(6).speakers == ["a0", "a2", "b1", "c0", "c2", "d1"]
    assert data.spread_speakers(12).speakers == data.speakers
    for bad in (0, 13):
        with pytest.raises(DataError, match=f"cannot keep {bad} speakers of 12"):
            data.spread_speakers(bad)


def test_write_speech_dir_checks_before_writing(tmp_path: Path) -> None:
    root = tmp_path / "d"
    with pytest.raises(DataError, match="no speaker for b"):
        write_speech_dir(root, {"a": "a.wav", "b": "b.wav"}, {"a": "s"})
    with pytest.raises(DataError, match="trials name unknown"):
        write_speech_dir(root, {"a": "a.wav"}, {"a": "s"}, trials=[Trial("a", "q", True)])
    assert not root.exists()


def test_write_speech_dir_removes_stale_optional_files(tmp_path: Path) -> None:
    root = _speech_dir(tmp_path)
    data = SpeechDir.load(root)
    write_speech_dir(root, data.wavs, data.utt2spk)
    assert not (root / "trials").exists() and not (root / "utt2dur").exists()
    assert SpeechDir.load(root).trials is None


def test_augment_dir_speech_alias_and_relative_paths(tmp_path: Path) -> None:
    root = tmp_path / "aug"
    noise = {"n1": _wav(root / "audio" / "n1.wav")}
    speech = {"b1": _wav(root / "audio" / "b1.wav"), "b2": _wav(root / "audio" / "b2.wav")}
    write_augment_dir(root, "noise", noise)
    scp = write_augment_dir(root, "speech", speech)
    assert scp == root / "babble" / "wav.scp"
    assert "b1 ../audio/b1.wav" in scp.read_text()
    (root / "babble").rename(root / "speech")  # MUSAN's folder name
    aug = AugmentDir.load(root)
    assert list(aug.categories) == ["noise", "babble"]
    assert aug.keys("babble") == ["b1", "b2"]
    assert aug.path("speech", "b2") == root / "audio" / "b2.wav"
    assert "babble" in aug and "music" not in aug


def test_augment_dir_errors(tmp_path: Path) -> None:
    root = tmp_path / "aug"
    root.mkdir()
    with pytest.raises(DataError, match="no augmentation lists"):
        AugmentDir.load(root)
    (root / "music").mkdir()
    (root / "music" / "wav.scp").write_text("m1 missing.wav\n")
    with pytest.raises(DataError, match="not found for m1"):
        AugmentDir.load(root)
    with pytest.raises(DataError, match="unknown augmentation category"):
        write_augment_dir(root, "reverb", {"r": "r.wav"})


def test_pairs_to_verify_take_unlabelled_lines_and_both_label_orders(tmp_path: Path) -> None:
    path = tmp_path / "pairs"
    path.write_text("a.wav b.flac\n\n1 id1/a.wav id1/b.wav\nx.wav y.wav nontarget\n0 x y\n")
    assert read_pairs(path) == [
        ("a.wav", "b.flac", None),
        ("id1/a.wav", "id1/b.wav", True),
        ("x.wav", "y.wav", False),
        ("x", "y", False),
    ]
    path.write_text("a b\na\na b c d\n")
    with pytest.raises(DataError, match=r"pairs: line\(s\) 2, 3 are none of 'enroll test'"):
        read_pairs(path)
    path.write_text("\n")
    with pytest.raises(DataError, match="no pair to verify"):
        read_pairs(path)
    with pytest.raises(DataError, match="file not found"):
        read_pairs(tmp_path / "nowhere")


def test_a_byte_order_mark_is_dropped(tmp_path: Path) -> None:
    from gradw.data.lists import read_map

    path = tmp_path / "utt2spk"
    path.write_bytes("\ufeffu1 s1\nu2 s2\n".encode())
    assert read_map(path) == {"u1": "s1", "u2": "s2"}  # not an utterance named "\ufeffu1"


def test_contradictory_trials_are_refused_and_repeated_ones_named(tmp_path: Path) -> None:
    from gradw.data.trials import read_trials

    path = tmp_path / "trials"
    path.write_text("a b target\nb a nontarget\nc d nontarget\n")
    with pytest.raises(DataError, match=r"1 pair\(s\) listed both as target and as non-target: a b"):
        read_trials(path)
    path.write_text("1 a b\n1 a b\n0 c d\n")
    with pytest.warns(UserWarning, match=r"1 pair\(s\) listed more than once.*a b"):
        assert len(read_trials(path)) == 3
