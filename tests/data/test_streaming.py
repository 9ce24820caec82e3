"""Long utterances window by window (gradw.data.streaming): the manifest measured in windows is the
whole manifest, and the windows of a rendering, end to end, are the whole rendering."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import soundfile as sf
from helpers import toy_tone, write_float_wav

from gradw.audio.io import read_audio, read_windows
from gradw.audio.mixing import babble, fit_length, power_db, reverberate, snr_gain
from gradw.data.conditions import AudioCache, augment_loader, parse_conditions, render
from gradw.data.dirs import AugmentDir, SpeechDir, write_augment_dir, write_speech_dir
from gradw.data.lists import DataError
from gradw.data.manifest import Manifest, build_manifest
from gradw.data.streaming import render_windows, speech_levels, streamed_gains

SR = 16000
LONG = {"long": 150.0, "long44": 70.0}  # seconds: a 16 kHz WAV, a 44.1 kHz stereo FLAC
WINDOW = 40.0
CONDITIONS = parse_conditions("clean,noise,music,babble", [-15, 10], rooms=True)


def _sizes(n: int, window: float = WINDOW) -> list[int]:
    count = -(-n // round(window * SR))
    return [(i + 1) * n // count - i * n // count for i in range(count)]  # written out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[SpeechDir, AugmentDir]:
    root = tmp_path_factory.mktemp("streaming")
    sf.write(root / "long.wav", toy_tone(int(LONG["long"] * SR), 1), SR, subtype="PCM_16")
    left = toy_tone(int(LONG["long44"] * 44100), 2)
    sf.write(root / "long44.flac", np.stack([left, 0.5 * left[::-1]], axis=1), 44100)
    write_float_wav(root / "short.wav", toy_tone(4 * SR, 3))
    wavs = {
        u: root / name
        for u, name in (("long", "long.wav"), ("long44", "long44.flac"), ("short", "short.wav"))
    }
    write_speech_dir(root / "test", wavs, dict.fromkeys(wavs, "a"))
    rng = np.random.default_rng(0)
    # noise shorter than a window (tiled across window edges) and longer than the utterance
    lengths = {"noise": (7.3, 170.0), "music": (13.1, 33.3), "babble": (5.1, 6.7, 9.9, 11.3, 3.7, 21.0)}
    for category, seconds in lengths.items():
        files = {}
        for i, s in enumerate(seconds):
            wav = (
                0.1 * rng.standard_normal(int(s * SR))
                if category == "noise"
                else toy_tone(int(s * SR), 10 + i)
            )
            files[f"{category}{i}"] = write_float_wav(
                root / "aug" / f"{category}{i}.wav", wav.astype(np.float32)
            )
        write_augment_dir(root / "aug", category, files)
    rirs = {}
    for i, (length, direct) in enumerate(((4000, 30), (2400, 2300))):  # a late direct path too
        rir = 0.1 * rng.standard_normal(length) * np.exp(-np.arange(length) / 500)
        rir[direct] = 0.9
        rirs[f"r{i}"] = write_float_wav(root / "aug" / f"r{i}.wav", rir.astype(np.float32))
    write_augment_dir(root / "aug", "rirs", rirs)
    return SpeechDir.load(root / "test"), AugmentDir.load(root / "aug")


@pytest.fixture(scope="module")
def manifests(corpus: tuple[SpeechDir, AugmentDir]) -> tuple[Manifest, Manifest]:
    test, aug = corpus
    whole = build_manifest(test, aug, CONDITIONS, seed=5)
    windowed = build_manifest(test, aug, CONDITIONS, seed=5, window_seconds=WINDOW)
    return whole, windowed


def test_a_manifest_measured_by_windows_is_the_whole_manifest(manifests: tuple[Manifest, Manifest]) -> None:
    whole, windowed = manifests
    for condition in CONDITIONS:
        assert windowed.entry("short", condition) == whole.entry("short", condition)  # untouched
        for utt in LONG:
            a, b = whole.entry(utt, condition), windowed.entry(utt, condition)
            assert (a.num_samples, a.rir) == (b.num_samples, b.rir)
            assert [(s.key, s.offset, s.length) for s in a.sources] == [
                (s.key, s.offset, s.length) for s in b.sources
            ]
            np.testing.assert_allclose([s.gain for s in b.sources], [s.gain for s in a.sources], rtol=1e-9)
    assert windowed.entry("long", "babble_-15").sources and windowed.entry("long", "noise_10_rev").rir


def test_the_windows_of_a_rendering_end_to_end_are_the_whole_rendering(
    corpus: tuple[SpeechDir, AugmentDir], manifests: tuple[Manifest, Manifest]
) -> None:
    test, aug = corpus
    manifest = manifests[1]
    loader = augment_loader(aug, AudioCache())
    guarded = 0
    for utt in LONG:
        clean = read_audio(test.wavs[utt])  # the whole-file path, to compare with
        sizes = _sizes(clean.shape[0])
        assert len(sizes) > 1
        entries = [None, *(manifest.entry(utt, c) for c in CONDITIONS)]
        windows = list(
            render_windows(entries, lambda u=utt, s=sizes: read_windows(test.wavs[u], s), sizes, loader)
        )
        assert [[w.shape[0] for w in ws] for ws in windows] == [[size] * len(entries) for size in sizes]
        for i, entry in enumerate(entries):
            got = np.concatenate([ws[i] for ws in windows])
            assert got.dtype == np.float32
            if entry is None:
                np.testing.assert_array_equal(got, clean)
                continue
            expected = render(entry, clean, loader)
            guarded += bool(np.max(np.abs(render(entry, clean, loader, clip_guard=False))) > 1.0)
            if entry.rir is None:  # the same samples, added in the same order
                np.testing.assert_array_equal(got, expected)
            else:  # overlap-add against one convolution
                np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6)
    assert guarded > 0  # the clip guard's scale is the whole mixture's


def test_levels_and_gains_are_those_of_the_whole_utterance(
    corpus: tuple[SpeechDir, AugmentDir], manifests: tuple[Manifest, Manifest]
) -> None:
    test, aug = corpus
    loader = augment_loader(aug)
    clean = read_audio(test.wavs["long"])
    n = clean.shape[0]
    rir = loader("rirs", manifests[0].entry("long", "clean_rev").rir.key)
    levels = speech_levels(read_windows(test.wavs["long"], _sizes(n, 7.0)), n, rir)
    assert levels[False] == pytest.approx(power_db(clean, 0.0), abs=1e-9)
    assert levels[True] == pytest.approx(power_db(reverberate(clean, rir)[0], 0.0), abs=1e-6)
    assert speech_levels([clean[:1000], clean[1000:]], n, None) == {
        False: pytest.approx(levels[False], abs=1e-9)
    }
    with pytest.raises(DataError, match=f"holds {n} samples where {n + 1} were expected"):
        speech_levels([clean], n + 1, None)
    noise = [loader("babble", f"babble{i}") for i in range(5)]
    offsets = [17, 40000, 3, 99999, 12]
    block = 3 * SR + 7
    for snr in (-15.0, 10.0):
        one = streamed_gains(levels[False], noise[:1], offsets[:1], snr, n, block)
        assert one == [pytest.approx(snr_gain(clean, fit_length(noise[0], n, offset=17)[0], snr, floor=0.0))]
        several = streamed_gains(levels[False], noise, offsets, snr, n, block)
        reference = babble(noise, n, offsets=offsets, speech=clean, snr_db=snr, floor=0.0).gains
        np.testing.assert_allclose(several, reference, rtol=1e-9)


def test_a_rendering_checks_the_lengths_the_manifest_recorded(
    corpus: tuple[SpeechDir, AugmentDir], manifests: tuple[Manifest, Manifest]
) -> None:
    test, aug = corpus
    entry = manifests[1].entry("long", "music_10")
    n = entry.num_samples
    with pytest.raises(DataError, match="manifest expects"):
        list(render_windows([entry], lambda: [np.zeros(n - 1, np.float32)], [n - 1], augment_loader(aug)))
    with pytest.raises(DataError, match="rebuild the manifest"):
        list(
            render_windows(
                [entry], lambda: [np.zeros(n, np.float32)], [n], lambda c, k: np.ones(5, np.float32)
            )
        )


def test_no_whole_length_copy_is_held(corpus: tuple[SpeechDir, AugmentDir]) -> None:
    """The manifest's pass and the rendering of a 150 s utterance in windows of 5 s: numpy's peak
    allocation stays under half the size of the utterance as float32 (the whole path holds several
    copies of it, some float64)."""
    test, aug = corpus
    one = test.subset(["long"])
    loader = augment_loader(aug, AudioCache())
    for category in ("noise", "music", "babble", "rirs"):  # the noise pools, loaded beforehand
        for key in aug.keys(category):
            loader(category, key)
    size = int(LONG["long"] * SR) * 4
    tracemalloc.start()
    try:
        manifest = build_manifest(one, aug, CONDITIONS, seed=5, loader=loader, window_seconds=5.0)
        _, manifest_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        sizes = _sizes(manifest.entry("long", "clean").num_samples, 5.0)
        entries = [manifest.entry("long", c) for c in CONDITIONS[1:3]]
        for _ in render_windows(entries, lambda: read_windows(test.wavs["long"], sizes), sizes, loader):
            pass
        _, render_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert manifest_peak < size / 2, (manifest_peak, size)
    assert render_peak < size / 2, (render_peak, size)
