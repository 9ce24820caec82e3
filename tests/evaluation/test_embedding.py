"""What the benchmark embeds (gradw.evaluation.embedding): a long utterance read, rendered and
embedded window by window gives what its whole rendering, embedded by windows, gives; a short one
is embedded as it always was."""

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import make_enhancer_checkpoint, toy_tone, write_float_wav

from gradw.audio.io import read_audio
from gradw.data.conditions import AudioCache, augment_loader, parse_conditions, render
from gradw.data.dirs import AugmentDir, SpeechDir, write_augment_dir, write_speech_dir
from gradw.data.manifest import build_manifest
from gradw.evaluation.embedding import embed_conditions
from gradw.evaluation.systems import load_system, parse_system
from gradw.models.loading import load_speaker_network

CPU = torch.device("cpu")
SR = 16000
CONDITIONS = parse_conditions("clean,noise,babble", [-5], rooms=True)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[SpeechDir, AugmentDir, Path]:
    root = tmp_path_factory.mktemp("embedding")
    lengths = {"a-long": 6.5, "a-short": 1.5, "b-short": 1.8, "b-huge": 120.0, "c-big": 60.0}
    wavs = {}
    for seed, (utt, seconds) in enumerate(lengths.items()):
        wavs[utt] = root / f"{utt}.wav"
        sf.write(wavs[utt], toy_tone(int(seconds * SR), seed), SR, subtype="PCM_16")
    write_speech_dir(root / "test", wavs, {u: u[0] for u in wavs})  # (b-huge, c-big: memory only)
    rng = np.random.default_rng(1)
    for category, count in (("noise", 2), ("babble", 5)):
        files = {
            f"{category}{i}": write_float_wav(
                root / "aug" / f"{category}{i}.wav",
                (0.1 * rng.standard_normal(int((2.3 + i) * SR))).astype(np.float32),
            )
            for i in range(count)
        }
        write_augment_dir(root / "aug", category, files)
    rir = 0.1 * rng.standard_normal(3000) * np.exp(-np.arange(3000) / 400)
    rir[120] = 0.9
    write_augment_dir(
        root / "aug", "rirs", {"r0": write_float_wav(root / "aug" / "r0.wav", rir.astype(np.float32))}
    )
    return (
        SpeechDir.load(root / "test"),
        AugmentDir.load(root / "aug"),
        make_enhancer_checkpoint(root / "g.pt"),
    )


@pytest.fixture(scope="module")
def scorer():
    torch.manual_seed(7)
    return load_speaker_network("resnet-tiny", checkpoint="random").freeze()


@pytest.mark.parametrize("spec", ["noisy", "g"])
def test_long_utterances_by_windows_and_short_ones_whole(corpus, scorer, spec: str) -> None:
    test, aug, ckpt = corpus
    test = test.subset(["a-long", "a-short", "b-short"])
    system = load_system(parse_system("noisy" if spec == "noisy" else f"g:{ckpt}"), scorer, "s", CPU, 2.0)
    manifest = build_manifest(test, aug, CONDITIONS, seed=3, window_seconds=2.0)
    loader = augment_loader(aug, AudioCache())
    counted: list[int] = []
    got = embed_conditions(system, test.utts, CONDITIONS, test, manifest, loader, 0.0, counted.append)
    assert sum(counted) == len(test.utts) * len(CONDITIONS)
    grouped = embed_conditions(system, ["a-long"], CONDITIONS, test, manifest, loader, 100.0)  # batched
    for condition in CONDITIONS:
        for utt in test.utts:
            clean = read_audio(test.wavs[utt])  # the whole path: read, render, embed (by windows)
            whole = (
                clean if condition.name == "clean" else render(manifest.entry(utt, condition), clean, loader)
            )
            expected = system.embed(whole)
            if utt.endswith("short"):  # within the window: exactly as ever
                np.testing.assert_array_equal(got[condition.name][utt], expected)
            else:
                np.testing.assert_allclose(got[condition.name][utt], expected, rtol=0, atol=2e-6)
                np.testing.assert_allclose(grouped[condition.name][utt], expected, rtol=0, atol=2e-6)
    assert np.abs(got["noise_-5"]["a-long"] - got["clean"]["a-long"]).max() > 1e-3  # rendered, not clean


def test_a_long_utterance_is_never_held_whole(corpus, scorer) -> None:
    """Numpy's peak allocation while a 60 s and a 120 s utterance are read, rendered (noise and a
    room) and embedded in windows of 4 s is the same, and less than one float32 copy of the longer
    (the whole path holds several, some float64)."""
    test, aug, _ckpt = corpus
    conditions = [parse_conditions("noise", [-5], rooms=True)[1]]  # noise_-5_rev
    system = load_system(parse_system("noisy"), scorer, "s", CPU, 4.0)
    loader = augment_loader(aug, AudioCache())
    for category in ("noise", "babble", "rirs"):
        for key in aug.keys(category):
            loader(category, key)
    peaks = {}
    for utt in ("c-big", "b-huge"):
        one = test.subset([utt])
        manifest = build_manifest(one, aug, conditions, seed=3, window_seconds=4.0)
        tracemalloc.start()
        try:
            got = embed_conditions(system, [utt], conditions, one, manifest, loader, 0.0)
            peaks[utt] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert list(got[conditions[0].name]) == [utt]
    assert peaks["b-huge"] < 120 * SR * 4, peaks  # less than one copy of it
    assert abs(peaks["b-huge"] - peaks["c-big"]) < 0.05 * 60 * SR * 4, peaks  # twice as long: no more
