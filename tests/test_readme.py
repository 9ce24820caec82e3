"""The README's commands run as written.

The real-data section ("Your own data, and VoxCeleb + MUSAN + RIRS_NOISES") is run on small fake
trees in the standard layouts (VoxCeleb1 ``test/wav`` with ``veri_test2.txt``, VoxCeleb2
``dev/aac`` converted to wav, MUSAN ``noise|music|speech/SOURCE``, RIRS_NOISES
``simulated_rirs/SET/RoomNNN``): prepare, train E and G with the paper preset, evaluate on the
test split. The commands are read from the README itself; the only changes are the corpus paths
and overrides appended to each command that scale the run down (steps, crops, conditions).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
from helpers import toy_tone
from wespeaker_reference import write_wespeaker_checkpoint

from gradw.audio.io import read_audio, write_audio
from gradw.checkpoint import load_checkpoint
from gradw.data.dirs import AugmentDir, SpeechDir
from gradw.evaluation.results import read_results

README = Path(__file__).resolve().parents[1] / "README.md"
SR = 16000


def readme_section(title: str) -> str:
    """The text of the README section whose heading is ``title``, up to the next heading (a ``#``
    line inside a code block is a comment, not a heading)."""
    lines, inside, fenced = [], False, False
    for line in README.read_text(encoding="utf-8").splitlines(keepends=True):
        if line.startswith("```"):
            fenced = not fenced
        heading = not fenced and re.match(r"#+ ", line) is not None
        if heading and inside:
            break
        if inside:
            lines.append(line)
        if heading and line.rstrip("\n").split(" ", 1)[1] == title:
            inside = True
    assert lines, f"README has no section {title!r}"
    return "".join(lines)


def bash_commands(section: str) -> list[list[str]]:
    """The commands of the section's ``bash`` blocks, continuation lines joined, comments dropped,
    each split as the shell would."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(words)
    return commands


def test_readme_commands_are_found() -> None:
    commands = bash_commands(readme_section("Your own data, and VoxCeleb + MUSAN + RIRS_NOISES"))
    heads = [" ".join(c[:3]) for c in commands]
    assert heads == [
        "gradw data prepare",
        "gradw data prepare",
        "gradw data prepare",
        "gradw train-speaker --config",
        "gradw train --config",
        "gradw evaluate --test",
        "gradw train --config",
        "gradw evaluate --test",
    ]


# ---------------------------------------------------------------------------------------------
# fake corpora in the standard layouts


def _speech(path: Path, seed: int, seconds: float = 1.2) -> None:
    write_audio(path, toy_tone(int(seconds * SR), seed), SR)


def _noise(path: Path, seed: int, seconds: float = 3.0) -> None:
    rng = np.random.default_rng(seed)
    write_audio(path, (0.1 * rng.standard_normal(int(seconds * SR))).astype(np.float32), SR)


def fake_voxceleb(base: Path) -> tuple[Path, Path]:
    """VoxCeleb1 test (4 speakers, 2 videos, 1 utterance each, and its cleaned trial list) and
    VoxCeleb2 dev (54 speakers: the default 50 held out for validation leave 4 to train on)."""
    vox1, vox2 = base / "voxceleb1", base / "voxceleb2"
    test_utts = []
    for s in range(4):
        for v in range(2):
            utt = f"id1027{s}/video{v}/00001"
            _speech(vox1 / "test" / "wav" / f"{utt}.wav", seed=100 * s + v)
            test_utts.append(utt)
    lines = [
        f"{int(a.split('/')[0] == b.split('/')[0])} {a}.wav {b}.wav"
        for i, a in enumerate(test_utts)
        for b in test_utts[i + 1 :]
    ]
    (vox1 / "veri_test2.txt").write_text("\n".join(lines) + "\n")
    for s in range(54):
        for v in range(2):
            _speech(vox2 / "dev" / "aac" / f"id0{s:04d}" / f"clip{v}" / "00001.wav", seed=10_000 + 10 * s + v)
    return vox1, vox2


def fake_musan(base: Path) -> Path:
    """MUSAN: 10 recordings of noise, music and speech, in two sources each."""
    root = base / "musan"
    for c, category in enumerate(("noise", "music", "speech")):
        for i in range(10):
            source = ("a", "b")[i % 2]
            path = root / category / source / f"{category}-{source}-{i:04d}.wav"
            if category == "speech":
                _speech(path, seed=50_000 + i, seconds=3.0)
            else:
                _noise(path, seed=1000 * c + i)
    return root


def fake_rirs(base: Path) -> Path:
    """RIRS_NOISES: 4 small and 4 medium simulated rooms of 2 RIRs each."""
    root = base / "RIRS_NOISES"
    for name in ("smallroom", "mediumroom"):
        for r in range(1, 5):
            for k in range(1, 3):
                rir = np.zeros(800, dtype=np.float32)
                rir[0], rir[40 * r + k] = 0.9, 0.3
                write_audio(
                    root / "simulated_rirs" / name / f"Room{r:03d}" / f"Room{r:03d}-{k:05d}.wav", rir, SR
                )
    return root


# what each command gets appended to run in a test: a few steps on 1 s crops, a few conditions
SCALE_DOWN = {
    "train-speaker": [
        "optim.steps=2", "optim.batch_size=4", "optim.warmup_steps=1", "crop_seconds=1.0",
        "num_workers=0", "checkpoint_every=2", "log_every=1",
    ],
    "train": [
        "optim.steps=2", "optim.batch_size=2", "optim.warmup_steps=1", "data.crop_seconds=1.0",
        "data.num_workers=0", "validation.every=2", "validation.snrs=[0]",
        "validation.categories=[noise]", "validation.max_trials=20", "checkpoint_every=2", "log_every=1",
    ],
    "evaluate": ["--snrs", "clean,0", "--categories", "noise,babble", "n_boot=20"],
}  # fmt: skip


def _run(words: list[str], replace: dict[str, str], work: Path) -> str:
    """Run one README command (``gradw ...``) in ``work`` with the paths in ``replace``
    substituted and the scale-down overrides appended; returns the command's name."""
    assert words[0] == "gradw"
    args = []
    for word in words[1:]:
        for old, new in replace.items():
            word = word.replace(old, new)
        args.append(word)
    args += SCALE_DOWN.get(args[0], [])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "gradw", *args], cwd=work, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, f"{' '.join(words)}\n{result.stderr[-3000:]}"
    return args[0] if args[0] != "data" else f"data {args[2]}"


def test_real_data_section_runs_on_fake_trees(tmp_path: Path) -> None:
    corpora = tmp_path / "corpora"
    vox1, vox2 = fake_voxceleb(corpora)
    avg_model = corpora / "wespeaker" / "avg_model.pt"
    write_wespeaker_checkpoint(avg_model)
    replace = {
        "/data/voxceleb1": str(vox1),
        "/data/voxceleb2": str(vox2),
        "/data/musan": str(fake_musan(corpora)),
        "/data/RIRS_NOISES": str(fake_rirs(corpora)),
        "/models/avg_model.pt": str(avg_model),
    }
    work = tmp_path / "work"
    work.mkdir()
    section = readme_section("Your own data, and VoxCeleb + MUSAN + RIRS_NOISES")
    ran = [_run(words, replace, work) for words in bash_commands(section)]
    assert ran == [
        "data voxceleb", "data musan", "data rirs", "train-speaker", "train", "evaluate",  # the paper
        "train", "evaluate",  # a WeSpeaker ResNet34 made robust
    ]  # fmt: skip

    # the three augmentation sides share no recording, and each category is on every side
    sides = {s: AugmentDir.load(work / "data" / "augment" / s) for s in ("train", "val", "test")}
    for category in ("noise", "music", "babble", "rirs"):
        files = {s: {d.path(category, k).resolve() for k in d.keys(category)} for s, d in sides.items()}
        assert all(files.values()), category
        assert not files["train"] & files["val"] and not files["train"] & files["test"], category
        assert not files["val"] & files["test"], category
    # the validation speakers are held out of training
    train = SpeechDir.load(work / "data" / "voxceleb" / "vox2_dev")
    val = SpeechDir.load(work / "data" / "voxceleb" / "vox2_val")
    assert len(val.spk2utt) == 50 and len(train.spk2utt) == 4
    assert not set(train.spk2utt) & set(val.spk2utt)

    # G was trained against the E of stage 1 (or WeSpeaker's), on the train split, selected on val
    for run, speaker, checkpoint in (
        ("paper", "resnet34", "last.pt"),
        ("wespeaker", "wespeaker-resnet34", "avg_model.pt"),
    ):
        g = load_checkpoint(work / "exp" / run / "gradw" / "best.pt")
        assert g["step"] == 2 and g["extra"]["speaker"]["name"] == speaker
        assert Path(g["extra"]["speaker"]["checkpoint"]).name == checkpoint
        assert g["config"]["data"]["val_augment"].endswith("augment/val")
        _, rows = read_results(work / "exp" / run / "eval")
        assert {(r.system, r.condition) for r in rows} == {
            (s, c) for s in ("noisy", "gradw") for c in ("clean", "noise_0", "babble_0")
        }
        assert all(np.isfinite(r.metrics["eer"]) for r in rows)


# ---------------------------------------------------------------------------------------------
# the pipeline, verification and the Python API, on the tiny corpus

#: what the demo-sized commands become on the tiny corpus (the same stages, smaller)
TINY = {
    "--preset demo": "--preset tiny",
    "synthvox-demo": "synthvox-tiny",
    "--config demo": "--config tiny",
    "--config paper": "--config tiny",  # stage 1 on the embedded corpus (the paper's needs VoxCeleb)
    "exp/demo/gradw/best.pt": "exp/mine/best.pt",
    "exp/demo/eval/": "exp/mine-eval/",
    "UTT": "UTTERANCE",
    "/data/audio": "audio",
}


def _run_all(commands: list[list[str]], replace: dict[str, str], work: Path, extra: dict) -> list[str]:
    ran = []
    for words in commands:
        assert words[0] == "gradw", words
        args = [" ".join(words[1:])]
        for old, new in replace.items():
            args = [a.replace(old, new) for a in args]
        argv = shlex.split(args[0]) + extra.get(words[1], [])
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        result = subprocess.run(
            [sys.executable, "-m", "gradw", *argv], cwd=work, env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, f"{' '.join(argv)}\n{result.stderr[-3000:]}"
        ran.append(result.stdout)
    return ran


def test_pipeline_verification_and_api_sections_run_on_the_tiny_corpus(
    synthvox_tiny: tuple[Path, dict, float], tmp_path: Path
) -> None:
    corpus, _, _ = synthvox_tiny
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    (work / "data" / "synthvox-tiny").symlink_to(corpus)
    test = SpeechDir.load(corpus / "test")
    utt = sorted(test.wavs)[0]
    others = [u for u in sorted(test.wavs) if test.utt2spk[u] != test.utt2spk[utt]]
    # the recordings the commands name: the corpus's own audio, in the formats they name
    for name, source in {"enroll.wav": utt, "test.flac": others[0], "noisy.flac": others[1]}.items():
        write_audio(work / name, read_audio(test.wavs[source]), SR)
    for k, source in enumerate((utt, others[0], others[2], others[3]), start=1):
        write_audio(work / f"{'ab'[(k - 1) % 2]}{(k + 1) // 2}.wav", read_audio(test.wavs[source]), SR)
    (work / "noisy").mkdir()
    write_audio(work / "noisy" / "one.wav", read_audio(test.wavs[others[4]]), SR)
    (work / "audio").mkdir()
    write_audio(work / "audio" / "x.wav", read_audio(test.wavs[utt]), SR)
    write_audio(work / "audio" / "y.wav", read_audio(test.wavs[others[0]]), SR)
    (work / "pairs.txt").write_text("x.wav y.wav\n1 x.wav x.wav\n")
    replace = {**TINY, "UTTERANCE": utt}

    pipeline = bash_commands(readme_section("The pipeline"))
    assert [c[1] for c in pipeline] == [
        "data", "train-speaker", "train", "calibrate", "adapt", "evaluate", "report", "inspect", "enhance",
        "enhance", "verify", "export",
    ]  # fmt: skip
    _run_all(pipeline, replace, work, {"evaluate": ["n_boot=20"]})
    assert (work / "exp" / "mine-eval" / "report.md").is_file() and (work / "fig.pdf").is_file()
    assert (work / "enhanced" / "one.wav").is_file() and (work / "enhanced.wav").is_file()
    assert (work / "g.onnx").is_file()
    assert load_checkpoint(work / "exp" / "mine-student" / "last.pt", kind="adapted")["step"] > 0

    verifying = bash_commands(readme_section("Verifying recordings"))
    out = _run_all(verifying, replace, work, {})
    assert len(out[0].split()) == 3  # CAM++ alone: ENROLL TEST SCORE
    assert [line.split()[-1] for line in out[1].splitlines()] in (
        [a, b] for a in ("accept", "reject") for b in ("accept", "reject")
    )
    assert out[2].splitlines()[1].split()[-1] == "target"

    block = re.search(r"```python\n(.*?)```", readme_section("Python API"), flags=re.S)
    assert block
    code = block.group(1)
    for old, new in replace.items():
        code = code.replace(old, new)
    result = subprocess.run(
        [sys.executable, "-c", code + "\nprint(embeddings.shape, type(same_speaker).__name__)"],
        cwd=work,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-1] == "bool"
