"""Tests for ``gradw inspect`` (gradw.evaluation.weight_maps)."""

from __future__ import annotations

import argparse
import copy
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import make_enhancer_checkpoint, toy_tone, write_float_wav

from gradw.cli.inspect import register as register_inspect
from gradw.cli.main import main
from gradw.data.dirs import AugmentDir, SpeechDir, write_augment_dir, write_speech_dir
from gradw.data.lists import DataError
from gradw.evaluation import weight_maps
from gradw.evaluation.weight_maps import inspect_utterance, parse_checkpoint_args
from gradw.losses import logit_gradient
from gradw.models.resnet import resnet_tiny

SR = 16000
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ckpt")
    return {
        "gradw": make_enhancer_checkpoint(root / "gradw" / "last.pt", 0, tap=None),
        "equalw": make_enhancer_checkpoint(root / "equalw" / "last.pt", 1, tap=None),
    }


@pytest.fixture(scope="module")
def speaker() -> torch.nn.Module:
    torch.manual_seed(0)
    return resnet_tiny(num_classes=4).eval()


@pytest.fixture(scope="module")
def wavs() -> tuple[np.ndarray, np.ndarray]:
    clean = toy_tone(SR + SR // 2, 3)
    noise = 0.1 * np.random.default_rng(4).standard_normal(clean.shape[0]).astype(np.float32)
    return clean, clean + noise


def test_inspect_utterance_numbers_and_png(
    tmp_path: Path,
    checkpoints: dict[str, Path],
    speaker: torch.nn.Module,
    wavs: tuple[np.ndarray, np.ndarray],
) -> None:
    clean, noisy = wavs
    png = tmp_path / "fig.png"
    result = inspect_utterance(checkpoints, clean, noisy, 2, png, speaker=speaker, title="utt, noise_-5")
    assert result["png"] == png
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 20_000
    assert result["logit"]["kind"] == "head" and result["logit"]["label"] == 2
    assert list(result["systems"]) == ["gradw", "equalw"]
    assert set(result["logits"]) == {"clean", "noisy", "gradw", "equalw"}
    c, f, t = result["shapes"]["tap"]
    for label, stats in result["systems"].items():
        weights = result["maps"]["weights"][label]
        for scheme in ("equal", "gradw-norm", "gradw"):
            assert weights[scheme].shape == (f, t)
            assert weights[scheme].sum() == pytest.approx(1.0, abs=1e-6)
            assert stats["weights"][scheme]["sum"] == pytest.approx(1.0, abs=1e-6)
        assert stats["weights"]["equal"]["weight_entropy"] == pytest.approx(1.0, abs=1e-9)
        assert stats["weights"]["equal"]["weight_max_mean"] == pytest.approx(1.0)
        assert stats["weights"]["gradw-norm"]["weight_entropy"] < 1.0  # the gradient scheme is not uniform
        assert 0.0 < stats["mask_mean"] < 1.0
        assert stats["mask_mean"] == pytest.approx(result["maps"]["mask"][label].mean(), rel=1e-5)
        diff = result["maps"]["difference"][label]
        assert stats["weighted_l1"]["equal"] == pytest.approx(diff.mean(), rel=1e-5)
        assert result["maps"]["weighted_difference"][label] == pytest.approx(weights["gradw-norm"] * diff)
        assert result["maps"]["features"][label].shape == tuple(result["shapes"]["features"])
    # the clean gradient map is the channel sum of the head logit's gradient at the clean tap
    with torch.no_grad():
        x = torch.from_numpy(clean)[None]
        a_ref = speaker.to_tap(speaker.features(speaker.mel_power(x)))
    expected = logit_gradient(speaker, a_ref, torch.tensor([2]))
    assert result["maps"]["gradient"]["clean"] == pytest.approx(
        expected.gradient.sum(dim=1)[0].double().numpy(), rel=1e-4, abs=1e-9
    )
    assert result["logits"]["clean"] == pytest.approx(float(expected.logit[0]), rel=1e-5)


def test_inspect_without_head_uses_target_cosine(
    checkpoints: dict[str, Path], wavs: tuple[np.ndarray, np.ndarray]
) -> None:
    torch.manual_seed(1)
    headless = resnet_tiny().eval()
    clean, noisy = wavs
    own = inspect_utterance(checkpoints, clean, noisy, None, None, speaker=headless)
    assert own["png"] is None
    assert own["logit"]["kind"] == "target-cosine"
    assert own["logits"]["clean"] == pytest.approx(32.0, rel=1e-5)  # cos(e, e) = 1
    assert any("gradient vanishes" in n for n in own["notes"])
    grad_clean = np.abs(own["maps"]["gradient"]["clean"]).max()
    grad_noisy = np.abs(own["maps"]["gradient"]["noisy"]).max()
    assert grad_clean < 1e-3 * grad_noisy
    # an explicit target: the logit is 32 cos(e, target)
    target = np.random.default_rng(0).standard_normal(headless.embedding_dim).astype(np.float32)
    given = inspect_utterance(
        checkpoints, clean, noisy, None, None, speaker=headless, target_embedding=target
    )
    with torch.no_grad():
        emb = headless.embed(torch.from_numpy(clean)[None])[0]
    cos = torch.nn.functional.cosine_similarity(emb, torch.from_numpy(target), dim=0)
    assert given["logits"]["clean"] == pytest.approx(32 * float(cos), rel=1e-4)
    assert not given["notes"]


def test_inspect_utterance_errors(
    checkpoints: dict[str, Path], speaker: torch.nn.Module, wavs: tuple[np.ndarray, np.ndarray]
) -> None:
    clean, noisy = wavs
    with pytest.raises(ValueError, match="same length"):
        inspect_utterance(checkpoints, clean, noisy[:-10], 0, None, speaker=speaker)
    with pytest.raises(ValueError, match="outside E's head"):
        inspect_utterance(checkpoints, clean, noisy, 7, None, speaker=speaker)
    with pytest.raises(ValueError, match="scheme must be one of"):
        inspect_utterance(checkpoints, clean, noisy, 0, None, speaker=speaker, scheme="equal")


# ---------------------------------------------------------------------------------------------
# the command


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("corpus")
    wavs, utt2spk = {}, {}
    for s in range(2):
        for u in range(2):
            utt = f"spk{s}-utt{u}"
            wavs[utt] = write_float_wav(root / "test" / f"{utt}.wav", toy_tone(SR + 800 * u, 10 * s + u))
            utt2spk[utt] = f"spk{s}"
    write_speech_dir(root / "test", wavs, utt2spk)
    rng = np.random.default_rng(0)
    noise = {
        f"n{i}": write_float_wav(
            root / "aug" / f"n{i}.wav", (0.1 * rng.standard_normal(12000)).astype(np.float32)
        )
        for i in range(2)
    }
    write_augment_dir(root / "aug", "noise", noise)
    SpeechDir.load(root / "test")
    AugmentDir.load(root / "aug")
    return root / "test", root / "aug"


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gradw")
    register_inspect(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["inspect", *argv])


@pytest.mark.parametrize(
    ("name", "magic"), [("fig.png", PNG_MAGIC), ("fig.pdf", b"%PDF"), ("fig.svg", b"<?xml")]
)
def test_cmd_inspect_writes_the_figure(
    tmp_path: Path,
    corpus: tuple[Path, Path],
    checkpoints: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    name: str,
    magic: bytes,
) -> None:
    test, aug = corpus
    out = tmp_path / name
    args = _parse(
        [
            "--test", str(test), "--augment", str(aug), "--utt", "spk1-utt0", "--condition", "noise_-5",
            "--checkpoint", f"gradw={checkpoints['gradw']}", "--checkpoint", str(checkpoints["equalw"]),
            "-o", str(out), "--quiet",
        ]
    )  # fmt: skip
    assert args.func(args) == 0
    assert out.read_bytes().startswith(magic)  # the format the suffix names, not PNG bytes in a .pdf
    if name.endswith(".svg"):
        assert b"<svg" in out.read_bytes()[:1000]
    printed = capsys.readouterr().out
    assert f"figure: {out}" in printed
    assert "gradw: mask mean" in printed and "equalw: mask mean" in printed  # the second named by its run dir


def test_cmd_inspect_clear_errors(
    tmp_path: Path,
    corpus: tuple[Path, Path],
    checkpoints: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    test, aug = corpus
    base = [
        "--test",
        str(test),
        "--augment",
        str(aug),
        "--checkpoint",
        f"g={checkpoints['gradw']}",
        "-o",
        str(tmp_path / "x.png"),
    ]
    args = _parse([*base, "--utt", "spk9-utt0", "--condition", "noise_-5"])
    with pytest.raises(DataError, match="utterance 'spk9-utt0' is not in wav.scp"):
        args.func(args)
    args = _parse([*base, "--utt", "spk0-utt0", "--condition", "noise-5"])
    with pytest.raises(DataError, match="--condition: not a condition name: 'noise-5'"):
        args.func(args)
    args = _parse([*base, "--utt", "spk0-utt0", "--condition", "music_0"])
    with pytest.raises(DataError, match="music"):
        args.func(args)
    assert not (tmp_path / "x.png").exists()
    # a figure suffix that names no format: one line, before any work (not even the checkpoints)
    argv = ["inspect", "--test", str(tmp_path / "nowhere"), "--utt", "u", "--condition", "clean"]
    argv += ["--checkpoint", "g=missing.pt", "-o", str(tmp_path / "fig.jpg")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(r"fig\.jpg: a figure is written as \.png, \.pdf, \.svg", err)
    assert not (tmp_path / "fig.jpg").exists()
    with pytest.raises(DataError, match="file not found"):
        parse_checkpoint_args(["g=missing.pt"])
    with pytest.raises(DataError, match="given twice"):
        parse_checkpoint_args([f"g={checkpoints['gradw']}", f"g={checkpoints['equalw']}"])


def _svg_text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def test_the_figure_labels_time_in_seconds_and_the_tap_axis(
    tmp_path: Path,
    checkpoints: dict[str, Path],
    speaker: torch.nn.Module,
    wavs: tuple[np.ndarray, np.ndarray],
) -> None:
    matplotlib = pytest.importorskip("matplotlib")
    clean, noisy = wavs
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text as text, so it can be read back
        result = inspect_utterance(checkpoints, clean, noisy, 2, tmp_path / "map.svg", speaker=speaker)
        text = _svg_text(tmp_path / "map.svg")
        bins = result["shapes"]["tap"][1]
        assert "time (s)" in text and "mel band" in text and f"tap freq. bin (of {bins})" in text
        assert result["frame_seconds"] == pytest.approx(0.01)
        # a tap without a frequency axis (one row, as CAM++'s pool input): curves over time
        flat = copy.deepcopy(result)
        maps = flat["maps"]
        for key in ("gradient", "difference", "weighted_difference"):
            maps[key] = {k: v.sum(axis=0, keepdims=True) for k, v in maps[key].items()}
        maps["weights"] = {
            k: {s: w.mean(axis=0, keepdims=True) for s, w in v.items()} for k, v in maps["weights"].items()
        }
        weight_maps._plot(flat, tmp_path / "flat.svg", None)
        text = _svg_text(tmp_path / "flat.svg")
        assert "value per tap frame" in text and "tap freq. bin" not in text and "time (s)" in text
