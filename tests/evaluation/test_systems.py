"""The systems an evaluation compares: spec parsing, loading, and what each embeds."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import make_enhancer_checkpoint

from gradw.audio.io import read_audio
from gradw.checkpoint import save_checkpoint
from gradw.data.dirs import SpeechDir
from gradw.evaluation.peers import build_peer
from gradw.evaluation.systems import (
    PEER_NAMES,
    SystemSpec,
    SystemSpecError,
    default_batch_seconds,
    embed_many,
    load_system,
    parse_system,
    parse_systems,
)
from gradw.models.loading import load_speaker_network
from gradw.models.unet import MaskUNet

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def scorer():
    torch.manual_seed(123)
    return load_speaker_network("resnet-tiny", checkpoint="random").freeze()


@pytest.fixture(scope="module")
def wav(toy_corpus: Path) -> np.ndarray:
    test = SpeechDir.load(toy_corpus / "test")
    return read_audio(test.wavs[sorted(test.wavs)[0]])


@pytest.fixture()
def ckpt(tmp_path: Path) -> Path:
    return make_enhancer_checkpoint(tmp_path / "g.pt")


# ---------------------------------------------------------------------------------------------
# parsing


def test_every_spec_form_parses(ckpt: Path):
    assert parse_system(" noisy ") == SystemSpec("noisy", "noisy")
    for peer in PEER_NAMES:
        assert parse_system(peer) == SystemSpec(peer, "waveform")
    assert parse_system(f"gradw:{ckpt}") == SystemSpec("gradw", "mask", ckpt, False)
    assert parse_system(f"gradw:{ckpt}@fuse") == SystemSpec("gradw+fuse", "mask", ckpt, True)
    specs = parse_systems(f"noisy, gradw:{ckpt},gradw:{ckpt}@fuse,rnnoise,")
    assert [s.name for s in specs] == ["noisy", "gradw", "gradw+fuse", "rnnoise"]
    assert parse_systems(["noisy", f"equal-w_2:{ckpt}"])[1].name == "equal-w_2"


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("gradw:{missing}", r"system gradw: checkpoint not found: .*missing\.pt"),
        ("gradw:{missing}@fuse", r"checkpoint not found: .*missing\.pt$"),
        ("rnnoisy", r"unknown system 'rnnoisy': use noisy, rnnoise, deepfilternet3"),
        (":{ckpt}", "not of the form NAME:CHECKPOINT"),
        ("gradw:", "not of the form NAME:CHECKPOINT"),
        ("gradw:@fuse", "not of the form NAME:CHECKPOINT"),
        ("", "empty system name"),
        ("noisy:{ckpt}", "'noisy' .* is reserved"),
        ("rnnoise:{ckpt}", "'rnnoise' .* is reserved"),
        ("../x:{ckpt}", r"system name '\.\./x'.*names the score folder"),
        (".hidden:{ckpt}", "names the score folder"),
    ],
)
def test_bad_specs_name_the_problem(spec: str, match: str, ckpt: Path, tmp_path: Path):
    with pytest.raises(SystemSpecError, match=match):
        parse_system(spec.format(missing=tmp_path / "missing.pt", ckpt=ckpt))


def test_parse_systems_rejects_duplicates_and_nothing(ckpt: Path, tmp_path: Path):
    other = make_enhancer_checkpoint(tmp_path / "other.pt", seed=1)
    with pytest.raises(SystemSpecError, match="^duplicate system names: gradw, noisy$"):
        parse_systems(f"noisy,gradw:{ckpt},noisy,gradw:{other}")
    with pytest.raises(SystemSpecError, match="^duplicate system names: gradw\\+fuse$"):
        parse_systems([f"gradw:{ckpt}@fuse", f"gradw:{other}@fuse"])
    with pytest.raises(SystemSpecError, match="no systems given"):
        parse_systems(" , ")


# ---------------------------------------------------------------------------------------------
# embeddings


def _cmn(x: torch.Tensor) -> torch.Tensor:
    return x - x.mean(dim=-1, keepdim=True)


def _unit(x: torch.Tensor) -> np.ndarray:
    x = x[0].double()
    return (x / x.norm()).numpy()


def _independent_embeddings(scorer, state: dict, wav: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(masked, noisy) unit embeddings from E's documented pieces: the mask multiplies the mel power,
    features = CMN(log(mel + 1e-6) + log(mask + 1e-6)); G sees the noisy features."""
    g = MaskUNet.from_config(state["model_config"])
    g.load_state_dict(state["model"])
    g.eval()
    with torch.no_grad():
        mel = scorer.mel_power(torch.from_numpy(wav)[None])
        noisy_features = _cmn(torch.log(mel + 1e-6))
        mask = g(noisy_features)
        assert float(mask.std(dim=-1).mean()) > 1e-3  # a mask that varies in time: CMN cannot remove it
        masked = scorer(_cmn(torch.log(mel + 1e-6) + torch.log(mask + 1e-6)))
        noisy = scorer(noisy_features)
    return _unit(masked), _unit(noisy)


def test_mask_system_embeds_through_g_on_the_scorer_mel_grid(scorer, wav: np.ndarray, ckpt: Path):
    state = torch.load(ckpt, weights_only=True)
    masked, noisy = _independent_embeddings(scorer, state, wav)
    assert np.abs(masked - noisy).max() > 1e-3  # G changes the embedding: the comparison means something
    system = load_system(parse_system(f"gradw:{ckpt}"), scorer, "scorer-id", CPU)
    emb = system.embed(wav)
    assert emb.dtype == np.float32 and emb.shape == (64,)
    assert np.linalg.norm(emb) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(emb, masked, atol=2e-5)
    assert system.info["step"] == 0 and system.info["trained_against"]["name"] == "resnet-tiny"
    noisy_system = load_system(parse_system("noisy"), scorer, "scorer-id", CPU)
    np.testing.assert_allclose(noisy_system.embed(wav), noisy, atol=2e-5)
    # fuse: the normalised sum of the unit enhanced and noisy embeddings
    fused = load_system(parse_system(f"gradw:{ckpt}@fuse"), scorer, "scorer-id", CPU).embed(wav)
    expected = (masked + noisy) / np.linalg.norm(masked + noisy)
    np.testing.assert_allclose(fused, expected, atol=2e-5)


def test_a_mask_of_ones_gives_the_noisy_embedding(scorer, wav: np.ndarray, ckpt: Path, tmp_path: Path):
    noisy = load_system(parse_system("noisy"), scorer, "s", CPU).embed(wav)
    system = load_system(parse_system(f"gradw:{ckpt}"), scorer, "s", CPU)
    assert np.abs(system.embed(wav) - noisy).max() > 1e-3
    system.enhancer.forward = lambda features: torch.ones_like(features)
    np.testing.assert_allclose(system.embed(wav), noisy, atol=1e-5)
    # a freshly initialised identity-start G (mask = sigmoid(20) everywhere) is transparent too
    near_one = make_enhancer_checkpoint(tmp_path / "one.pt", init_bias=20.0)
    np.testing.assert_allclose(
        load_system(parse_system(f"one:{near_one}"), scorer, "s", CPU).embed(wav), noisy, atol=1e-5
    )


def test_identity_follows_checkpoint_content_fuse_and_scorer(scorer, ckpt: Path, tmp_path: Path):
    copy = tmp_path / "elsewhere" / "copy.pt"
    copy.parent.mkdir()
    shutil.copy(ckpt, copy)
    other = make_enhancer_checkpoint(tmp_path / "other.pt", seed=1)

    def identity(spec: str, scorer_id: str = "s") -> str:
        return load_system(parse_system(spec), scorer, scorer_id, CPU).identity

    assert identity(f"a:{ckpt}") == identity(f"b:{copy}")  # content, not path or name
    assert len({identity(f"a:{ckpt}"), identity(f"a:{other}"), identity(f"a:{ckpt}@fuse")}) == 3
    assert identity(f"a:{ckpt}", "s1") != identity(f"a:{ckpt}", "s2")
    assert identity("noisy", "s1") != identity("noisy", "s2") != identity("rnnoise", "s2")


def test_peer_system_embeds_the_enhanced_waveform(scorer, wav: np.ndarray):
    system = load_system(parse_system("rnnoise"), scorer, "s", CPU)
    enhanced = build_peer("rnnoise").enhance(wav)
    with torch.no_grad():
        expected = _unit(scorer.embed(torch.from_numpy(np.asarray(enhanced, dtype=np.float32))[None]))
    np.testing.assert_allclose(system.embed(wav), expected, atol=2e-5)


def test_unreadable_or_wrong_checkpoints_fail_clearly(scorer, tmp_path: Path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(SystemSpecError, match=r"^system g: cannot read checkpoint .*garbage\.pt") as info:
        load_system(parse_system(f"g:{garbage}"), scorer, "s", CPU)
    assert "\n" not in str(info.value)  # torch's many-line unpickling message is cut to its first line
    speaker = tmp_path / "speaker.pt"
    save_checkpoint(speaker, kind="speaker", model=scorer, step=0, config={}, model_config={})
    with pytest.raises(
        SystemSpecError, match="^system g: .*holds a speaker model, expected a enhancer model"
    ):
        load_system(parse_system(f"g:{speaker}"), scorer, "s", CPU)


def test_another_scorer_front_end_scores_the_resynthesised_waveform(wav: np.ndarray, ckpt: Path):
    """CAM++ uses Kaldi fbank, G was trained on log-mel: the enhanced waveform is scored instead."""
    from gradw.enhance.enhancer import Enhancer

    campplus = load_speaker_network("campplus").freeze()
    system = load_system(parse_system(f"gradw:{ckpt}"), campplus, "campplus", CPU)
    assert system.info["resynthesised"] is True and system.enhancer is None
    short = wav[:16000]
    enhanced = Enhancer.from_checkpoint(ckpt).enhance(short)
    with torch.no_grad():
        expected = _unit(campplus.embed(torch.from_numpy(np.asarray(enhanced, dtype=np.float32))[None]))
    np.testing.assert_allclose(system.embed(short), expected, atol=2e-5)
    with pytest.raises(SystemSpecError, match="@fuse needs a scorer with G's front-end"):
        load_system(parse_system(f"gradw:{ckpt}@fuse"), campplus, "campplus", CPU)


# ---------------------------------------------------------------------------------------------
# batching by length


class _Recorder:
    """A stand-in system: records the batch shapes it is given, embeds a waveform as [mean, n]."""

    def __init__(self, device: str = "cpu") -> None:
        self.shapes: list[tuple[int, ...]] = []
        self.device = torch.device(device)

    def embed_batch(self, wavs: np.ndarray) -> np.ndarray:
        self.shapes.append(wavs.shape)
        return np.stack([[w.mean(), w.shape[0]] for w in wavs]).astype(np.float32)


def test_embed_many_batches_runs_of_equal_length_only():
    lengths = [800, 800, 800, 1200, 1200, 800, 800, 800, 800]
    items = [(f"u{i}", np.full(n, i, np.float32)) for i, n in enumerate(lengths)]
    recorder = _Recorder()
    seen: list[int] = []
    # at most 3 items of 800 samples (2400 samples = 0.15 s) per batch
    out = embed_many(recorder, items, batch_seconds=2400 / 16000, progress=seen.append)
    assert recorder.shapes == [(3, 800), (2, 1200), (3, 800), (1, 800)]
    assert seen == [3, 2, 3, 1]
    assert list(out) == [k for k, _ in items]
    for i, (key, _) in enumerate(items):
        np.testing.assert_array_equal(out[key], [i, lengths[i]])  # each key got its own item's result
    one = _Recorder()
    embed_many(one, items, batch_seconds=0)
    assert one.shapes == [(1, n) for n in lengths]  # 0: one item at a time
    default = _Recorder()
    embed_many(default, items)
    assert default.shapes == one.shapes  # on the CPU, one at a time unless asked (measured faster)
    assert default_batch_seconds(torch.device("cuda")) == 60.0


def test_batched_embeddings_equal_one_at_a_time(scorer, wav: np.ndarray, ckpt: Path):
    rng = np.random.default_rng(0)
    n = 16000
    wavs = np.stack([wav[:n], wav[n : 2 * n], 0.3 * rng.standard_normal(n).astype(np.float32)])
    for spec in ("noisy", f"g:{ckpt}", f"g:{ckpt}@fuse"):
        system = load_system(parse_system(spec), scorer, "s", CPU)
        batched = system.embed_batch(wavs)
        alone = np.stack([system.embed(w) for w in wavs])
        assert batched.shape == (3, alone.shape[1])
        np.testing.assert_allclose(batched, alone, atol=2e-6)
        assert np.abs(batched[0] - batched[1]).max() > 1e-2  # the items did not leak into each other
    with pytest.raises(ValueError, match=r"embed_batch expects \(B, N\)"):
        system.embed_batch(wavs[0])


# ---------------------------------------------------------------------------------------------
# long utterances: embedded by windows


def _long(wav: np.ndarray, n: int) -> np.ndarray:
    return np.resize(wav, n).astype(np.float32)  # the utterance repeated: speech in every window


def test_an_utterance_within_the_window_gives_the_embedding_it_always_had(
    scorer, wav: np.ndarray, ckpt: Path
):
    assert len(wav) < 60 * 16000
    for spec in ("noisy", f"g:{ckpt}", f"g:{ckpt}@fuse"):
        whole = load_system(parse_system(spec), scorer, "s", CPU)
        assert whole.window_seconds is None
        for window in (60.0, len(wav) / 16000):
            windowed = load_system(parse_system(spec), scorer, "s", CPU, window_seconds=window)
            np.testing.assert_array_equal(windowed.embed(wav), whole.embed(wav))
            np.testing.assert_array_equal(
                windowed.embed_batch(np.stack([wav, wav[::-1]])),
                whole.embed_batch(np.stack([wav, wav[::-1]])),
            )


@pytest.mark.parametrize("kind", ["noisy", "g", "g@fuse", "rnnoise"])
def test_a_long_utterance_is_the_weighted_mean_of_its_windows(scorer, wav: np.ndarray, ckpt: Path, kind: str):
    spec = {"noisy": "noisy", "g": f"g:{ckpt}", "g@fuse": f"g:{ckpt}@fuse", "rnnoise": "rnnoise"}[kind]
    long = _long(wav, 40000)  # 2.5 s in windows of 1 s: three windows of 0.83 s
    whole = load_system(parse_system(spec), scorer, "s", CPU)
    windowed = load_system(parse_system(spec), scorer, "s", CPU, window_seconds=1.0)
    pieces = [long[:13333], long[13333:26666], long[26666:]]  # written out: not window_bounds
    embeddings = [whole.embed(p).astype(np.float64) for p in pieces]  # each window alone, whole
    mean = sum(len(p) * e for p, e in zip(pieces, embeddings, strict=True)) / len(long)
    expected = mean / np.linalg.norm(mean)
    got = windowed.embed(long)
    assert got.dtype == np.float32 and np.linalg.norm(got) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert np.abs(whole.embed(long) - got).max() > 1e-4  # whole and windowed differ: the test tells
    # a batch of long utterances: each item is its own windows' mean
    other = _long(wav[::-1], 40000)
    batched = windowed.embed_batch(np.stack([long, other]))
    np.testing.assert_allclose(batched, np.stack([got, windowed.embed(other)]), atol=2e-6)


def test_a_peer_is_identified_by_its_package_version(scorer, monkeypatch: pytest.MonkeyPatch):
    import importlib.metadata

    installed = importlib.metadata.version("noisereduce")
    system = load_system(parse_system("spectral-gating"), scorer, "s", CPU)
    assert system.identity == f"spectral-gating|noisereduce=={installed}|s"
    assert system.info["peer"] == f"spectral-gating|noisereduce=={installed}"
    real = importlib.metadata.version
    monkeypatch.setattr(  # the package upgraded: another system, whose embeddings are keyed anew
        importlib.metadata, "version", lambda name: "99.0" if name == "noisereduce" else real(name)
    )
    upgraded = load_system(parse_system("spectral-gating"), scorer, "s", CPU)
    assert upgraded.identity == "spectral-gating|noisereduce==99.0|s" != system.identity
    assert load_system(parse_system("rnnoise"), scorer, "s", CPU).identity == (
        f"rnnoise|pyrnnoise=={real('pyrnnoise')}|s"
    )


def test_the_window_is_part_of_the_identity(scorer, ckpt: Path):
    def identity(spec: str, window: float | None) -> str:
        return load_system(parse_system(spec), scorer, "s", CPU, window_seconds=window).identity

    for spec in ("noisy", f"g:{ckpt}", "rnnoise"):
        assert len({identity(spec, None), identity(spec, 60.0), identity(spec, 30.0)}) == 3
        assert identity(spec, 60.0) == identity(spec, 60)
