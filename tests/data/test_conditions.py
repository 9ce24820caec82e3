"""Tests for seeded noisy test conditions (gradw.data.conditions)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import toy_tone, write_float_wav

from gradw.audio.io import read_audio
from gradw.audio.mixing import measure_snr, reverberate
from gradw.data.conditions import AudioCache, Condition, augment_loader, parse_conditions, render
from gradw.data.dirs import AugmentDir, SpeechDir, write_augment_dir, write_speech_dir
from gradw.data.lists import DataError
from gradw.data.manifest import Manifest, build_manifest
from gradw.data.trials import Trial

SR = 16000


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[SpeechDir, AugmentDir]:
    root = tmp_path_factory.mktemp("corpus")
    wavs, utt2spk = {}, {}
    for s in range(4):
        for u in range(2):
            utt = f"spk{s}/utt{u}"
            wavs[utt] = write_float_wav(
                root / "test" / "wav" / f"{utt}.wav", toy_tone(6000 + 500 * u, 10 * s + u)
            )
            utt2spk[utt] = f"spk{s}"
    trials = [Trial("spk0/utt0", "spk0/utt1", True), Trial("spk0/utt0", "spk1/utt0", False)]
    write_speech_dir(root / "test", wavs, utt2spk, trials=trials)
    rng = np.random.default_rng(0)
    aug = root / "aug"
    noise = {
        f"n{i}": write_float_wav(
            aug / "a" / f"n{i}.wav", (0.1 * rng.standard_normal(3000 + 2500 * i)).astype(np.float32)
        )
        for i in range(4)
    }
    noise["quiet"] = write_float_wav(
        aug / "a" / "quiet.wav", (1e-5 * rng.standard_normal(9000)).astype(np.float32)
    )
    write_augment_dir(aug, "noise", noise)
    write_augment_dir(
        aug,
        "music",
        {f"m{i}": write_float_wav(aug / "a" / f"m{i}.wav", toy_tone(9000, 100 + i)) for i in range(3)},
    )
    write_augment_dir(
        aug,
        "babble",
        {f"b{i}": write_float_wav(aug / "a" / f"b{i}.wav", toy_tone(7000, 200 + i)) for i in range(6)},
    )
    rirs = {}
    for i in range(2):
        rir = np.zeros(1600, dtype=np.float32)
        rir[5 + 10 * i] = 1.0
        rir[6 + 10 * i :] = 0.3 * np.exp(-np.arange(1594 - 10 * i) / 300) * rng.standard_normal(1594 - 10 * i)
        rirs[f"r{i}"] = write_float_wav(aug / "a" / f"r{i}.wav", rir)
    write_augment_dir(aug, "rirs", rirs)
    return SpeechDir.load(root / "test"), AugmentDir.load(aug)


def _clean(test: SpeechDir, utt: str) -> np.ndarray:
    return read_audio(test.wavs[utt])


def test_condition_names_roundtrip() -> None:
    names = ["clean", "noise_-5", "music_0", "babble_-10", "noise_-5_rev", "clean_rev", "music_2.5"]
    for name in names:
        assert Condition.from_name(name).name == name
    assert Condition("noise", -5).name == "noise_-5"
    assert Condition("noise", -5.0, reverb=True).name == "noise_-5_rev"
    for bad in ("noise", "clean_3", "wind_0", "noise_x"):
        with pytest.raises(ValueError):
            Condition.from_name(bad)
    with pytest.raises(ValueError):
        Condition("clean", 0.0)


def test_parse_conditions_grid() -> None:
    grid = parse_conditions("clean,noise,babble", "0,-10", rooms=True)
    assert [c.name for c in grid] == [
        "clean",
        "noise_0",
        "noise_-10",
        "babble_0",
        "babble_-10",
        "clean_rev",
        "noise_0_rev",
        "noise_-10_rev",
        "babble_0_rev",
        "babble_-10_rev",
    ]
    assert parse_conditions(["music", "music"], [5, 5.0]) == [Condition("music", 5.0)]
    with pytest.raises(ValueError, match="unknown"):
        parse_conditions("wind", "0")
    with pytest.raises(ValueError, match="at least one SNR"):
        parse_conditions("noise", "")


@pytest.fixture(scope="module")
def manifest(corpus: tuple[SpeechDir, AugmentDir]) -> Manifest:
    test, aug = corpus
    conditions = parse_conditions("clean,noise,music,babble", [-20, -5, 10], rooms=True)
    return build_manifest(test, aug, conditions, seed=7)


def test_manifest_is_seeded(corpus: tuple[SpeechDir, AugmentDir], manifest: Manifest) -> None:
    test, aug = corpus
    again = build_manifest(test, aug, manifest.conditions, seed=7)
    assert again.hash == manifest.hash and again.entries == manifest.entries
    other = build_manifest(test, aug, manifest.conditions, seed=8)
    assert other.hash != manifest.hash


def test_manifest_spreads_noise_and_skips_silence(manifest: Manifest) -> None:
    entries = manifest.entries["noise_-5"]
    picks = [(e.sources[0].key, e.sources[0].offset) for e in entries.values()]
    assert len(set(picks)) == len(picks)  # different utterances, different file/offset
    files = [key for key, _ in picks]
    utts = manifest.utts
    assert len(set(files[:4])) == 4  # 4 usable files: the first 4 utterances share none
    assert "quiet" not in files  # the near-silent file is never used at an exact SNR
    for utt in utts:  # same file and offset at every SNR; only the gain changes
        a, b = manifest.entry(utt, "noise_-5").sources[0], manifest.entry(utt, "noise_10").sources[0]
        assert (a.key, a.offset) == (b.key, b.offset)
        assert a.gain / b.gain == pytest.approx(10 ** (15 / 20))
    for entry in manifest.entries["babble_-20"].values():
        assert len({s.key for s in entry.sources}) == 5  # 5 distinct talkers
    assert all(not e.sources and e.rir is None for e in manifest.entries["clean"].values())
    assert all(e.rir is not None for e in manifest.entries["clean_rev"].values())


def test_render_deterministic_and_clip_guarded(
    corpus: tuple[SpeechDir, AugmentDir], manifest: Manifest
) -> None:
    test, aug = corpus
    loader = augment_loader(aug)
    guarded = 0
    for condition in manifest.conditions:
        for utt in manifest.utts[:3]:
            entry = manifest.entry(utt, condition)
            clean = _clean(test, utt)
            noisy = render(entry, clean, loader)
            assert noisy.dtype == np.float32 and noisy.shape == clean.shape
            np.testing.assert_array_equal(noisy, render(entry, clean, loader))  # bit-identical
            raw = render(entry, clean, loader, clip_guard=False)
            if np.max(np.abs(raw)) > 1.0:  # scaled as a whole: the SNR is unchanged
                guarded += 1
                assert np.max(np.abs(noisy)) == pytest.approx(0.99)
                np.testing.assert_allclose(noisy, raw * (0.99 / np.max(np.abs(raw))), rtol=1e-6)
            else:
                np.testing.assert_array_equal(noisy, raw)
            if condition.name == "clean":
                np.testing.assert_array_equal(noisy, clean)
    assert guarded > 0  # -20 dB mixtures of these signals exceed full scale


def test_render_snr_exact_without_clip_guard(
    corpus: tuple[SpeechDir, AugmentDir], manifest: Manifest
) -> None:
    test, aug = corpus
    loader = augment_loader(aug)
    for condition in manifest.conditions:
        if condition.category == "clean":
            continue
        for utt in manifest.utts:
            entry = manifest.entry(utt, condition)
            clean = _clean(test, utt)
            noisy = render(entry, clean, loader, clip_guard=False)
            speech = reverberate(clean, loader("rirs", entry.rir.key))[0] if entry.rir else clean
            assert measure_snr(speech, noisy - speech) == pytest.approx(condition.snr_db, abs=0.01)


def test_render_checks_lengths(corpus: tuple[SpeechDir, AugmentDir], manifest: Manifest) -> None:
    test, aug = corpus
    utt = manifest.utts[0]
    entry = manifest.entry(utt, "music_10")
    with pytest.raises(DataError, match="manifest expects"):
        render(entry, _clean(test, utt)[:-1], augment_loader(aug))
    with pytest.raises(DataError, match="rebuild the manifest"):
        render(entry, _clean(test, utt), lambda c, k: np.zeros(5, np.float32))


def test_manifest_save_load(tmp_path: Path, corpus: tuple[SpeechDir, AugmentDir], manifest: Manifest) -> None:
    test, aug = corpus
    path = tmp_path / "m" / "manifest.json"
    manifest.save(path)
    loaded = Manifest.load(path)
    assert loaded.hash == manifest.hash and loaded.entries == manifest.entries
    assert loaded.conditions == manifest.conditions
    utt = manifest.utts[1]
    loader = augment_loader(aug)
    for name in ("babble_-20_rev", "noise_-5"):
        np.testing.assert_array_equal(
            render(loaded.entry(utt, name), _clean(test, utt), loader),
            render(manifest.entry(utt, name), _clean(test, utt), loader),
        )
    data = json.loads(path.read_text())
    data["entries"]["noise_-5"][0]["sources"][0][3] *= 2  # tamper with a gain
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="hash mismatch"):
        Manifest.load(path)


def test_build_manifest_needs_categories(corpus: tuple[SpeechDir, AugmentDir]) -> None:
    test, _ = corpus
    with pytest.raises(DataError, match="noise"):
        build_manifest(test, None, [Condition("noise", 0.0)], seed=0)
    clean_only = build_manifest(test, None, [Condition("clean")], seed=0)
    assert len(clean_only.entries["clean"]) == len(test)


def test_audio_cache_is_bounded(corpus: tuple[SpeechDir, AugmentDir]) -> None:
    _, aug = corpus
    cache = AudioCache(max_mb=0.06)  # room for about two of the 9000-sample music files
    paths = [aug.path("music", k) for k in aug.keys("music")]
    first = cache(paths[0])
    assert cache(paths[0]) is first and not first.flags.writeable
    for path in paths:
        cache(path)
    assert len(cache) == 1 or len(cache) == 2
    assert cache._bytes <= cache.max_bytes
