"""Every bad input of every user-facing command, table-driven.

Each case runs ``gradw`` in-process on a bad file, list, checkpoint, config, override or flag and
asserts the contract of DESIGN.md: a non-zero exit status (2), stderr of exactly one line
``gradw: error: ...`` naming the culprit (for an argparse-level error: the usage lines, then one
``gradw COMMAND: error: ...`` line), and nothing left behind: every file and folder under the
module's working tree (inputs, corpus, checkpoints, output area, current folder) is as it was,
byte for byte, with no new file and no temporary one.

The inputs are built once per module: the toy corpus (``gradw data toy``), tiny checkpoints
(``tests/helpers.py``), audio files and broken copies of the corpus lists. Every case fails before
any heavy work; a few "documented handling" cases (a byte-order mark, CRLF line ends, ...) assert
success instead, and ``gradw enhance`` reports unreadable inputs in its documented batch form.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import (
    make_adapted_checkpoint,
    make_enhancer_checkpoint,
    make_speaker_checkpoint,
    toy_tone,
    write_float_wav,
)

from gradw.cli.main import main
from gradw.runlock import RunLock

#: the first utterance of the toy corpus's test split (the one the broken lists spoil)
UTT = "spk009-00"
CUDA = torch.cuda.is_available()


# ---------------------------------------------------------------------------------------------
# the inputs, built once


def _copy_speech_dir(source: Path, target: Path) -> Path:
    """A copy of a speech directory's lists (the audio stays where it is: wav.scp paths are absolute)."""
    target.mkdir(parents=True)
    for name in ("wav.scp", "utt2spk", "spk2utt", "trials"):
        if (source / name).exists():
            shutil.copyfile(source / name, target / name)
    return target


def _replace_line(path: Path, key: str, line: str) -> None:
    """Replace the line of ``path`` whose first field is ``key``."""
    lines = path.read_text().splitlines()
    path.write_text("".join((line if ln.split()[0] == key else ln) + "\n" for ln in lines))


def _append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)


def _append_bytes(path: Path, data: bytes) -> None:
    with open(path, "ab") as handle:
        handle.write(data)


#: audio problem -> file name under in/ (built by _write_audio_inputs)
AUDIO = {
    "missing": "nowhere.wav",
    "directory": "folder.wav",
    "empty-file": "empty.wav",
    "text-file": "text.wav",
    "truncated-header": "truncated.wav",
    "truncated-wav-data": "cut.wav",
    "truncated-aiff": "cut.aiff",
    "truncated-w64": "cut.w64",
    "truncated-rf64": "cut.rf64",
    "unsupported-extension": "clip.m4a",
    "zero-length": "zero.wav",
    "nan-samples": "nan.wav",
    "unreadable": "unreadable.wav",
}


def _write_audio_inputs(folder: Path) -> None:
    good = write_float_wav(folder / "good.wav", toy_tone(16000, seed=1))
    write_float_wav(folder / "good2.wav", toy_tone(16000, seed=2))
    (folder / "folder.wav").mkdir()
    (folder / "empty.wav").write_bytes(b"")
    (folder / "text.wav").write_text("this is a text file, not audio\n")
    (folder / "truncated.wav").write_bytes(good.read_bytes()[:30])
    for suffix, container in ((".wav", "WAV"), (".aiff", "AIFF"), (".w64", "W64"), (".rf64", "RF64")):
        whole = folder / f"whole{suffix}"  # cut in its data: the header promises more than it holds
        sf.write(whole, toy_tone(16000, seed=4), 16000, format=container, subtype="PCM_16")
        (folder / f"cut{suffix}").write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
        whole.unlink()
    (folder / "clip.m4a").write_bytes(bytes(range(256)) * 8)  # no container libsndfile knows
    sf.write(folder / "zero.wav", np.zeros(0, dtype=np.float32), 16000, subtype="FLOAT")
    nan = toy_tone(16000, seed=3)
    nan[4000:4010] = np.nan
    write_float_wav(folder / "nan.wav", nan)
    unreadable = folder / "unreadable.wav"
    if os.geteuid() == 0:  # root reads any file: a dangling symbolic link stands in
        unreadable.symlink_to(folder / "gone" / "target.wav")
    else:
        shutil.copyfile(good, unreadable)
        unreadable.chmod(0)


def _write_checkpoints(folder: Path) -> None:
    from gradw.models.unet import MaskUNet

    g = make_enhancer_checkpoint(folder / "g.pt")
    shutil.copyfile(g, folder / "g.onnx")  # a checkpoint with the suffix of an export
    spk = make_speaker_checkpoint(folder / "spk.pt")
    make_adapted_checkpoint(folder / "adapted.pt", base=spk)
    (folder / "empty.pt").write_bytes(b"")
    (folder / "text.pt").write_text("not a checkpoint\n")
    torch.save(
        MaskUNet(n_mels=80, base_width=4, blocks=(1, 1, 1, 1), up_layers=(1, 1, 1)), folder / "pickle.pt"
    )
    data = g.read_bytes()
    (folder / "truncated.pt").write_bytes(data[: len(data) // 2])
    state = torch.load(g, weights_only=True)
    state["model_config"] = {**state["model_config"], "base_width": 8}  # the weights no longer fit
    torch.save(state, folder / "tampered.pt")
    state = torch.load(folder / "adapted.pt", weights_only=True)
    del state["model_config"]["speaker"]
    torch.save(state, folder / "tampered-adapted.pt")
    # a calibration whose AS-norm cohort is not of the student's embedding dimension
    from gradw.evaluation.calibration import Calibration
    from gradw.evaluation.score_norm import ScoreNorm

    state = torch.load(folder / "adapted.pt", weights_only=True)
    norm = ScoreNorm("asnorm", 2, np.ones((3, 7), dtype=np.float32))
    state["extra"]["calibration"] = Calibration(1.0, 0.0, score_norm=norm).to_dict()
    torch.save(state, folder / "cohort-dim.pt")


#: list problem -> (what to do to a copy of the test split, the file the error names ("" for the
#: folder), texts the error must also contain)
LISTS: dict[str, tuple[Any, str, tuple[str, ...]]] = {
    "wav.scp-missing-audio": (
        lambda d: _replace_line(d / "wav.scp", UTT, f"{UTT} {d / 'nowhere.wav'}"),
        "wav.scp",
        ("not found", UTT),
    ),
    "wav.scp-line-with-one-field": (
        lambda d: _append(d / "wav.scp", "lonely\n"),
        "wav.scp",
        ("no value: 17",),
    ),
    "wav.scp-duplicate-key": (
        lambda d: _append(d / "wav.scp", (d / "wav.scp").read_text().splitlines()[0] + "\n"),
        "wav.scp",
        (f"'{UTT}' (lines 1 and 17)",),
    ),
    "utt2spk-unknown-utterance": (lambda d: _append(d / "utt2spk", "ghost spk009\n"), "wav.scp", ("ghost",)),
    "wav.scp-empty": (lambda d: (d / "wav.scp").write_text(""), "wav.scp", ("empty",)),
    "wav.scp-absent": (lambda d: (d / "wav.scp").unlink(), "wav.scp", ("not found",)),
    "wav.scp-not-utf8": (lambda d: _append_bytes(d / "wav.scp", b"caf\xe9 x.wav\n"), "wav.scp", ("UTF-8",)),
    "wav.scp-piped-command": (
        lambda d: _replace_line(d / "wav.scp", UTT, f"{UTT} sox x.wav -t wav - |"),
        "wav.scp",
        ("piped", UTT),
    ),
    "segments-file": (lambda d: (d / "segments").write_text(f"{UTT}-a {UTT} 0 1\n"), "segments", ()),
    "spk2utt-disagrees": (lambda d: _append(d / "spk2utt", "spk999 spk009-01\n"), "spk2utt", ("spk009-01",)),
    "trials-unknown-utterance": (
        lambda d: _append(d / "trials", f"{UTT} ghost nontarget\n"),
        "trials",
        ("ghost",),
    ),
    "trials-contradictory-pair": (
        lambda d: _append(d / "trials", f"spk009-01 {UTT} nontarget\n"),
        "trials",
        (f"{UTT} spk009-01",),
    ),
    "trials-bad-label": (lambda d: _append(d / "trials", f"{UTT} spk010-00 maybe\n"), "trials", ("121",)),
    "not-a-directory": (lambda d: shutil.rmtree(d), "", ("not a directory",)),
}


def _write_lists(toy: Path, folder: Path) -> None:
    for name, (spoil, _file, _texts) in LISTS.items():
        spoil(_copy_speech_dir(toy / "test", folder / name))
    for name, file in AUDIO.items():  # the first utterance's audio replaced by a bad file
        target = _copy_speech_dir(toy / "test", folder / f"audio-{name}")
        _replace_line(target / "wav.scp", UTT, f"{UTT} {folder.parent / 'in' / file}")
    bom = _copy_speech_dir(toy / "test", folder / "bom")
    for name in ("wav.scp", "trials"):  # unstripped, the mark would make wav.scp's first key unknown
        (bom / name).write_bytes(b"\xef\xbb\xbf" + (bom / name).read_bytes())
    repeated = _copy_speech_dir(toy / "test", folder / "repeated")
    _append(repeated / "trials", (repeated / "trials").read_text().splitlines()[0] + "\n")
    crlf = _copy_speech_dir(toy / "test", folder / "crlf")
    for name in ("wav.scp", "utt2spk", "trials"):
        (crlf / name).write_bytes((crlf / name).read_bytes().replace(b"\n", b"\r\n"))
    # augmentation directories
    for name, spoil in {
        "aug-missing-audio": lambda a: _replace_line(
            a / "noise" / "wav.scp", "noise0", f"noise0 {a / 'gone.wav'}"
        ),
        "aug-empty-list": lambda a: (a / "noise" / "wav.scp").write_text(""),
        "aug-no-category": lambda a: [shutil.rmtree(a / c) for c in ("noise", "music", "babble", "rirs")],
        "aug-speech-and-babble": lambda a: shutil.copytree(a / "babble", a / "speech"),
    }.items():
        target = folder / name
        shutil.copytree(toy / "augment" / "test", target)
        spoil(target)
    # trial lists of gradw verify (pairs of paths)
    audio = folder.parent / "in"
    (folder / "pairs-one-field.txt").write_text(
        f"{audio / 'good.wav'} {audio / 'good2.wav'}\n{audio / 'good.wav'}\n"
    )
    (folder / "pairs-bad-label.txt").write_text(f"{audio / 'good.wav'} {audio / 'good2.wav'} maybe\n")
    (folder / "pairs-empty.txt").write_text("\n")
    (folder / "pairs-missing-audio.txt").write_text(f"{audio / 'good.wav'} {audio / 'nowhere.wav'}\n")
    (folder / "badresults").mkdir()
    (folder / "badresults" / "results.json").write_text("{ not json")
    (folder / "oddresults").mkdir()
    (folder / "oddresults" / "results.json").write_text('{"rows": 3}')
    (folder / "pairs-crlf.txt").write_bytes(f"{audio / 'good.wav'} {audio / 'good2.wav'}\r\n".encode())
    (folder / "pairs-bom.txt").write_bytes(
        b"\xef\xbb\xbf" + f"{audio / 'good.wav'} {audio / 'good2.wav'}\n".encode()
    )


def _write_configs(toy: Path, folder: Path) -> None:
    folder.mkdir()
    (folder / "bom.yaml").write_bytes(b"\xef\xbb\xbftrain:\n  seed: 3\n")
    (folder / "list.yaml").write_text("- train\n- evaluate\n")
    (folder / "syntax.yaml").write_text("train:\n  optim: {lr: 0.1\n")
    (folder / "noroot.yaml").write_text(
        "train:\n  data: {train: '${data.root}/train'}\n"
        "train_speaker:\n  train: '${data.root}/train'\n"
        "adapt:\n  data: {train: '${data.root}/train'}\n"
        "evaluate:\n  test: '${data.root}/test'\n"
    )
    (folder / "plain.yaml").write_text(
        f"train:\n  data: {{train: {toy / 'train'}}}\n"
        f"train_speaker:\n  train: {toy / 'train'}\n"
        f"adapt:\n  data: {{train: {toy / 'train'}}}\n"
        f"evaluate:\n  test: {toy / 'test'}\n"
    )


@dataclass
class World:
    """The module's working tree: every path a case may name, and the folder snapshots cover."""

    root: Path
    paths: dict[str, str]

    def fill(self, template: str, **more: str) -> str:
        """``template`` with every ``{name}`` replaced by the path of that name (or ``more``'s)."""
        return template.format_map({**self.paths, **more})


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("bad-input")
    toy = root / "toy"
    assert main(["data", "toy", "--out", str(toy)]) == 0
    (root / "in").mkdir()
    _write_audio_inputs(root / "in")
    _write_checkpoints(root / "ck")
    _write_lists(toy, root / "lists")
    _write_configs(toy, root / "cfg")
    work = root / "work"
    work.mkdir()
    (work / "afile").write_text("an ordinary file where a folder is expected\n")
    (work / "afile.wav").write_text("an ordinary file\n")
    (work / "locked").mkdir()
    shutil.copyfile(root / "ck" / "g.pt", work / "locked" / "g.pt")  # for gradw calibrate --in-place
    (work / "folder.onnx").mkdir()
    (root / "cwd").mkdir()
    paths = {
        "root": str(root),
        "toy": str(toy),
        "test": str(toy / "test"),
        "train": str(toy / "train"),
        "val": str(toy / "val"),
        "aug": str(toy / "augment" / "test"),
        "augtrain": str(toy / "augment" / "train"),
        "in": str(root / "in"),
        "ck": str(root / "ck"),
        "g": str(root / "ck" / "g.pt"),
        "spk": str(root / "ck" / "spk.pt"),
        "adapted": str(root / "ck" / "adapted.pt"),
        "lists": str(root / "lists"),
        "cfg": str(root / "cfg"),
        "work": str(work),
        "out": str(work / "out"),
    }
    return World(root, paths)


# ---------------------------------------------------------------------------------------------
# running a case and checking that nothing changed


def _digest(path: Path) -> str | None:
    try:
        return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
    except PermissionError:  # a file made unreadable on purpose (when not running as root)
        return None


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` -> (kind, size, mtime_ns, content hash) for files, the target
    for symbolic links, ("dir",) for folders."""
    state: dict[str, tuple] = {}
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(folder) / name
            info = path.lstat()
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(info.st_mode):
                state[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                state[rel] = ("dir",)
            else:
                state[rel] = ("file", info.st_size, info.st_mtime_ns, _digest(path))
    return state


def _assert_unchanged(before: dict[str, tuple], after: dict[str, tuple]) -> None:
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(p for p in set(before) & set(after) if before[p] != after[p])
    assert not (added or removed or changed), f"left behind: {added}; removed: {removed}; changed: {changed}"


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``gradw ARGV`` in this process: (exit status, stdout, stderr); argparse's SystemExit is
    turned into its status."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def guarded(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    """The world, run from its own current folder, with the corpus build of ``gradw demo``
    refused (a case that reaches it has failed too late)."""
    import gradw.data.corpora.synthvox.build as synthvox_build

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a bad input reached the corpus build")

    monkeypatch.setattr(synthvox_build, "build_synthvox", refuse)
    monkeypatch.chdir(world.root / "cwd")
    return world


@dataclass(frozen=True)
class Case:
    """A bad command line: ``argv`` (placeholders such as ``{g}`` name the world's paths),
    the texts its one error line must contain, and the argparse ``prog`` when the error is one of
    argparse's (``gradw enhance``: usage lines, then ``gradw enhance: error: ...``)."""

    argv: tuple[str, ...]
    culprit: tuple[str, ...]
    usage: str | None = None


def case(argv: str | list[str], *culprit: str, usage: str | None = None, id: str, marks: Any = ()) -> Any:
    """A parametrised :class:`Case`; ``argv`` as one string is split on whitespace."""
    args = tuple(argv.split() if isinstance(argv, str) else argv)
    return pytest.param(Case(args, culprit, usage), id=id, marks=marks)


def check_refused(world: World, bad: Case, capsys: pytest.CaptureFixture[str]) -> str:
    """Run a bad command line; assert exit status 2, the one error line (after argparse's usage
    lines for an argparse error) naming the culprit, and nothing changed under the world's root.
    Returns the error line."""
    before = snapshot(world.root)
    code, out, err = run_cli([world.fill(a) for a in bad.argv], capsys)
    after = snapshot(world.root)
    lines = err.splitlines()
    assert code == 2, f"exit status {code}; stderr: {err}"
    assert "Traceback" not in err and err.endswith("\n"), err
    if bad.usage is None:
        assert len(lines) == 1, f"{len(lines)} lines on stderr: {err}"
        assert lines[0].startswith("gradw: error: "), err
    else:
        assert lines[0].startswith("usage: gradw"), err
        assert lines[-1].startswith(f"{bad.usage}: error: "), err
        assert sum(": error: " in line for line in lines) == 1, err  # the usage, then one error line
    for text in bad.culprit:
        assert world.fill(text) in lines[-1], f"{world.fill(text)!r} not named in: {lines[-1]}"
    assert out == "", f"stdout: {out}"
    _assert_unchanged(before, after)
    assert not list(world.root.rglob(".*.tmp"))
    return lines[-1]


# ---------------------------------------------------------------------------------------------
# the table


# the command lines that would work, which the cases spoil
EVALUATE = (
    "evaluate --test {test} --augment {aug} --scorer resnet-tiny --scorer-checkpoint random "
    "--snrs 0 --categories noise --n-boot 20 --quiet --out {out}"
)
TRAIN = (
    "train --config tiny --quiet out_dir={out} cache_dir={work}/cache data.train={train} "
    "data.augment={augtrain} data.val={val} data.val_augment={aug} speaker.name=resnet-tiny "
    "speaker.checkpoint=random speaker.tap=layer4 speaker.centroid_crop_seconds=1.0 "
    "data.crop_seconds=0.5 optim.batch_size=4 tensorboard=false threads=1"
)
SPEAKER = (
    "train-speaker --config tiny --quiet out_dir={out} train={train} augment={augtrain} "
    "tensorboard=false threads=1"
)
ADAPT = (
    "adapt --config tiny --quiet out_dir={out} data.train={train} data.augment={augtrain} data.val={val} "
    "data.val_augment={aug} speaker.name=resnet-tiny speaker.checkpoint={spk} speaker.tap=layer3 "
    "data.crop_seconds=0.5 optim.batch_size=4 tensorboard=false threads=1"
)
CONFIG = "config --config tiny --section train"
DEMO = "demo --preset tiny --quiet out={work}/demo"
INSPECT = (
    "inspect --test {test} --augment {aug} --utt " + UTT + " --condition noise_0 --checkpoint g={g} "
    "-o {work}/figure.png --scorer resnet-tiny --scorer-checkpoint random --quiet"
)
ENHANCE = "enhance {in}/good.wav -o {out} --checkpoint {g} --quiet"
VERIFY = "verify {in}/good.wav {in}/good2.wav --speaker resnet-tiny --speaker-checkpoint {spk} --quiet"
EXPORT = "export onnx --checkpoint {g} -o {work}/model.onnx"
CALIBRATE = "calibrate --checkpoint {g} -o {work}/g-cal.pt --quiet data.val={val} data.val_augment={aug}"
FUSE = (
    "fuse --checkpoint {g} -o {work}/g-fused.pt --quiet data.train={train} data.augment={augtrain} "
    "data.val={val} data.val_augment={aug} fusion.categories=[clean,noise] fusion.snrs=[0]"
)


def _without(command: str, option: str) -> str:
    """``command`` with ``option`` and its value removed (``--test DIR``) or a ``KEY=...`` override."""
    words = command.split()
    if option.startswith("-"):
        if option not in words:
            return command
        i = words.index(option)
        return " ".join(words[:i] + words[i + 2 :])
    return " ".join(w for w in words if not w.startswith(option + "="))


def _with(command: str, option: str, value: str) -> str:
    """``command`` with ``option``'s value (or the override ``KEY=...``) replaced by ``value``."""
    if option.startswith("-"):
        return f"{_without(command, option)} {option} {value}"
    return f"{_without(command, option)} {option}={value}"


# -- audio: enhance (batch form, below), verify, inspect ---------------------------------------

AUDIO_CASES = [
    *(
        case(
            VERIFY.replace("{in}/good2.wav", "{in}/" + file),
            "{in}/" + file,
            id=f"verify-{kind}",
        )
        for kind, file in AUDIO.items()
    ),
    *(
        case(
            _with(INSPECT, "--test", "{lists}/audio-" + kind),
            *(
                ("{lists}/audio-" + kind, UTT)
                if kind not in ("nan-samples", "zero-length")
                else ("{in}/" + file,)
            ),
            id=f"inspect-{kind}",
        )
        for kind, file in AUDIO.items()
    ),
]


# -- lists: evaluate, inspect, train, train-speaker, adapt ------------------------------------


def _list_culprit(kind: str) -> tuple[str, ...]:
    """The file (or folder) the error names, and its other texts."""
    _spoil, file, texts = LISTS[kind]
    return ("{lists}/" + kind + (f"/{file}" if file else ""), *texts)


LIST_CASES = [
    *(case(_with(EVALUATE, "--test", "{lists}/" + k), *_list_culprit(k), id=f"evaluate-{k}") for k in LISTS),
    *(case(_with(INSPECT, "--test", "{lists}/" + k), *_list_culprit(k), id=f"inspect-{k}") for k in LISTS),
    *(case(_with(TRAIN, "data.train", "{lists}/" + k), *_list_culprit(k), id=f"train-{k}") for k in LISTS),
    *(
        case(_with(SPEAKER, "train", "{lists}/" + k), *_list_culprit(k), id=f"train-speaker-{k}")
        for k in LISTS
    ),
    *(case(_with(ADAPT, "data.train", "{lists}/" + k), *_list_culprit(k), id=f"adapt-{k}") for k in LISTS),
    # validation data of the training stages
    case(
        _with(TRAIN, "data.val", "{lists}/trials-bad-label"),
        "{lists}/trials-bad-label",
        id="train-val-trials-bad-label",
    ),
    case(
        _with(TRAIN, "data.val_augment", "{lists}/aug-empty-list"),
        "{lists}/aug-empty-list",
        id="train-val-augment-empty-list",
    ),
    case(
        _with(ADAPT, "data.val", "{lists}/trials-bad-label") + " validation.every=2",
        "{lists}/trials-bad-label",
        id="adapt-val-trials-bad-label",
    ),
    # augmentation directories
    *(
        case(_with(EVALUATE, "--augment", "{lists}/" + k), "{lists}/" + k, id=f"evaluate-{k}")
        for k in ("aug-missing-audio", "aug-empty-list", "aug-no-category", "aug-speech-and-babble")
    ),
    *(
        case(_with(TRAIN, "data.augment", "{lists}/" + k), "{lists}/" + k, id=f"train-{k}")
        for k in ("aug-missing-audio", "aug-empty-list", "aug-no-category", "aug-speech-and-babble")
    ),
    # trial lists of gradw verify
    *(
        case(
            f"verify --trials {{lists}}/{name} --speaker resnet-tiny --speaker-checkpoint {{spk}}",
            culprit,
            id=f"verify-{name}",
        )
        for name, culprit in (
            ("pairs-one-field.txt", "{lists}/pairs-one-field.txt"),
            ("pairs-bad-label.txt", "{lists}/pairs-bad-label.txt"),
            ("pairs-empty.txt", "{lists}/pairs-empty.txt"),
            ("pairs-missing-audio.txt", "{in}/nowhere.wav"),
            ("pairs-absent.txt", "{lists}/pairs-absent.txt"),
        )
    ),
    case(_with(EVALUATE, "--trials", "nonesuch"), "nonesuch", id="evaluate-trials-name-unknown"),
    # the validation data gradw calibrate fits on
    *(
        case(_with(CALIBRATE, "data.val", "{lists}/" + k), *_list_culprit(k), id=f"calibrate-val-{k}")
        for k in LISTS
    ),
    *(
        case(_with(CALIBRATE, "data.val_augment", "{lists}/" + k), "{lists}/" + k, id=f"calibrate-{k}")
        for k in ("aug-missing-audio", "aug-empty-list", "aug-no-category", "aug-speech-and-babble")
    ),
]


# -- checkpoints -------------------------------------------------------------------------------

#: checkpoint problem -> the file (where an enhancer is expected, the wrong kind is E's checkpoint)
CHECKPOINTS = {
    "missing": "{ck}/nowhere.pt",
    "empty-file": "{ck}/empty.pt",
    "text-file": "{ck}/text.pt",
    "pickle-not-weights-only": "{ck}/pickle.pt",
    "wrong-kind": "{spk}",
    "truncated": "{ck}/truncated.pt",
    "tampered-model-config": "{ck}/tampered.pt",
}
#: where a speaker network E's checkpoint is expected (the wrong kind is then G's)
SPEAKER_CHECKPOINTS = {
    **{kind: CHECKPOINTS[kind] for kind in ("missing", "text-file", "pickle-not-weights-only", "truncated")},
    "wrong-kind": "{g}",
}
ENHANCER_USES = {
    "evaluate": lambda ck: _with(EVALUATE, "--systems", "g:" + ck),
    "enhance": lambda ck: _with(ENHANCE, "--checkpoint", ck),
    "verify": lambda ck: f"{VERIFY} --checkpoint {ck}",
    "export": lambda ck: _with(EXPORT, "--checkpoint", ck),
    "inspect": lambda ck: _with(INSPECT, "--checkpoint", "g=" + ck),
    "adapt": lambda ck: f"{ADAPT} enhancer_checkpoint={ck}",
    "calibrate": lambda ck: _with(CALIBRATE, "--checkpoint", ck),
    "fuse": lambda ck: _with(FUSE, "--checkpoint", ck),
}
SPEAKER_USES = {
    "evaluate-scorer": lambda ck: _with(EVALUATE, "--scorer-checkpoint", ck),
    "verify-speaker": lambda ck: _with(VERIFY, "--speaker-checkpoint", ck),
    "train-e": lambda ck: _with(TRAIN, "speaker.checkpoint", ck),
    "adapt-e": lambda ck: _with(ADAPT, "speaker.checkpoint", ck),
}

CHECKPOINT_CASES = [
    *(
        case(use(ck), ck, id=f"{command}-checkpoint-{kind}")
        for command, use in ENHANCER_USES.items()
        for kind, ck in CHECKPOINTS.items()
    ),
    *(
        case(use(ck), ck, id=f"{command}-checkpoint-{kind}")
        for command, use in SPEAKER_USES.items()
        for kind, ck in SPEAKER_CHECKPOINTS.items()
    ),
    case(
        f"{VERIFY} --checkpoint {{ck}}/tampered-adapted.pt",
        "{ck}/tampered-adapted.pt",
        id="verify-tampered-adapted",
    ),
    case(
        _with(EVALUATE, "--systems", "a:{ck}/tampered-adapted.pt"),
        "{ck}/tampered-adapted.pt",
        id="evaluate-tampered-adapted",
    ),
    case(
        _with(CALIBRATE, "--checkpoint", "{ck}/tampered-adapted.pt"),
        "{ck}/tampered-adapted.pt",
        id="calibrate-tampered-adapted",
    ),
]


# -- configs and overrides -----------------------------------------------------------------------

#: command -> (its working command line, an unknown key, a key with a value of the wrong type)
CONFIG_COMMANDS = {
    "train": (TRAIN, "optim.nonsense=1", "optim.lr=fast"),
    "train-speaker": (SPEAKER, "aam.nonsense=1", "optim.steps=many"),
    "adapt": (ADAPT, "adapter.nonsense=1", "adapter.rank=big"),
    "config": (CONFIG, "nonsense=1", "seed=zero"),
    "evaluate": (EVALUATE, "nonsense=1", "n_boot=lots"),
    "demo": (DEMO, "nonsense=1", "n_boot=[1]"),
    "calibrate": (CALIBRATE, "calibration.nonsense=1", "calibration.max_trials=many"),
    "fuse": (FUSE, "fusion.nonsense=1", "fusion.max_trials=many"),
}


def _preset(command: str, line: str, preset: str) -> str:
    return _with(line, "--preset" if command == "demo" else "--config", preset)


OUT_OF_RANGE = {
    "train": [
        "optim.lr=-0.001", "optim.batch_size=0", "optim.steps=0", "optim.steps=-5", "enhancer.base_width=0",
        "data.crop_seconds=0", "data.crop_seconds=-1", "data.clean_fraction=1.5", "data.snr.noise=[0,-10]",
        "seed=-1", "checkpoint_every=0", "log_every=0", "loss.scheme=nonesuch", "speaker.tap=nowhere",
        "speaker.name=nonesuch", "loss.temperature=0", "validation.max_trials=1", "optim.warmup_steps=-1",
        "data.reverb_prob=2", "data.snr.babble_talkers=[0,3]", "enhancer.blocks=[]", "loss.conflict=sideways",
        "threads=-1", "data.noise_colour.prob=1.5", "data.noise_colour.bands=-1",
    ],
    "train-speaker": [
        "optim.lr=-1", "optim.batch_size=0", "optim.steps=0", "crop_seconds=0", "seed=-1",
        "model.base_width=0", "model.frontend=nonesuch", "augment_prob=1.5",
        "checkpoint_every=0", "log_every=0", "aam.scale=0",
    ],
    "adapt": [
        "optim.lr=-1", "optim.steps=-5", "data.clean_fraction=1.5", "seed=-1", "adapter.rank=-1",
        "adapter.mode=nonesuch", "loss.scheme=nonesuch", "adapter.layers=[nomatch]", "speaker.tap=nowhere",
        "checkpoint_every=0", "log_every=0", "joint.lr=-1", "joint.objective_weight=-1",
        "joint.conflict=sideways", "joint.loss.scheme=nonesuch", "joint.enhancer.base_width=0",
        "data.noise_colour.eq_db=-3",
    ],
    "config": [
        "optim.steps=0", "data.snr.noise=[0,-10]", "--config {cfg}/plain.yaml --section evaluate dpi=10",
        "--section demo eval_processes=0", "--section train_speaker crop_seconds=0",
    ],
    "evaluate": [
        "n_boot=0", "seed=-1", "save_every=0", "batch_seconds=-1", "max_trials=1", "figure_format=jpg",
        "dpi=10", "systems=[]", "scorer=nonesuch", "scorer_tap=nowhere", "categories=[thunder]",
    ],
    "demo": ["n_boot=0", "eval_processes=0", "max_trials=1", "snrs=abc"],
    "calibrate": [
        "calibration.max_trials=1", "calibration.snrs=[.nan]", "calibration.categories=[thunder]",
        "calibration.categories=[]", "calibration.quality=[loudness]", "seed=-1",
        "calibration.score_norm.top_n=0", "calibration.score_norm.top_n=1",
        "calibration.score_norm.kind=znorm", "calibration.score_norm.utterances=0",
    ],
    "fuse": [
        "fusion.max_trials=1", "fusion.snrs=[.nan]", "fusion.categories=[thunder]", "fusion.categories=[]",
        "fusion.clip=[5,1]", "fusion.clip=[0,1,2]", "fusion.utterances=1", "seed=-1",
    ],
}  # fmt: skip


def _key(override: str) -> str:
    """The key an override names (its culprit): ``optim.lr=-1`` -> ``optim.lr``."""
    return override.split()[-1].partition("=")[0]


def _value(override: str) -> str:
    """The value an override gives: ``optim.lr=-1`` -> ``-1``."""
    return override.split()[-1].partition("=")[2]


def _range_culprit(override: str) -> str:
    """What a refused value's message names: the key, or for a choice that another layer owns
    (a scheme, a tap, a network, a front-end, a category) the value."""
    key = _key(override)
    owned = ("scheme", "tap", "name", "frontend", "mode", "layers", "scorer", "categories", "conflict")
    return _value(override).strip("[]") if key.split(".")[-1].endswith(owned) else key


CONFIG_CASES = [
    *(
        case(f"{line} {unknown}", _key(unknown), id=f"{c}-unknown-key")
        for c, (line, unknown, _) in CONFIG_COMMANDS.items()
    ),
    *(
        case(f"{line} {typed}", _key(typed), id=f"{c}-bad-type")
        for c, (line, _, typed) in CONFIG_COMMANDS.items()
    ),
    *(
        case(f"{line} nonsense", "nonsense", id=f"{c}-override-without-equals")
        for c, (line, _, _) in CONFIG_COMMANDS.items()
    ),
    *(
        case(f"{line} =1", "=1", id=f"{c}-override-without-key")
        for c, (line, _, _) in CONFIG_COMMANDS.items()
    ),
    *(
        case(_preset(c, line, "nonesuch"), "nonesuch", id=f"{c}-unknown-preset")
        for c, (line, _, _) in CONFIG_COMMANDS.items()
    ),
    *(
        case(_preset(c, line, "{cfg}/list.yaml"), "{cfg}/list.yaml", id=f"{c}-yaml-not-a-mapping")
        for c, (line, _, _) in CONFIG_COMMANDS.items()
    ),
    *(
        case(_preset(c, line, "{cfg}/syntax.yaml"), "{cfg}/syntax.yaml", id=f"{c}-yaml-syntax-error")
        for c, (line, _, _) in CONFIG_COMMANDS.items()
    ),
    *(
        case(_preset(c, line, "{cfg}/absent.yaml"), "{cfg}/absent.yaml", id=f"{c}-yaml-missing")
        for c, (line, _, _) in CONFIG_COMMANDS.items()
    ),
    *(
        case(
            f"{CONFIG_COMMANDS[c][0]} {override}",
            _range_culprit(override),
            id=f"{c}-{override.split()[-1]}",
        )
        for c, overrides in OUT_OF_RANGE.items()
        for override in overrides
    ),
    # ${data.root} in a preset that sets no root
    case("train --config {cfg}/noroot.yaml", "data.root", id="train-root-reference-without-root"),
    case(
        "train-speaker --config {cfg}/noroot.yaml",
        "data.root",
        id="train-speaker-root-reference-without-root",
    ),
    case("adapt --config {cfg}/noroot.yaml", "data.root", id="adapt-root-reference-without-root"),
    case("config --config {cfg}/noroot.yaml", "data.root", id="config-root-reference-without-root"),
    case(
        "evaluate --config {cfg}/noroot.yaml --out {out}",
        "data.root",
        id="evaluate-root-reference-without-root",
    ),
    # data.root=PATH where the section names no path under ${data.root}: it would move nothing
    case(
        f"{TRAIN} --config {{cfg}}/plain.yaml data.root={{work}}/corpus",
        "data.root",
        id="train-root-moves-nothing",
    ),
    case(
        "train-speaker --config {cfg}/plain.yaml data.root={work}/corpus",
        "data.root",
        id="train-speaker-root-moves-nothing",
    ),
    case(
        "adapt --config {cfg}/plain.yaml data.root={work}/corpus", "data.root", id="adapt-root-moves-nothing"
    ),
    case(
        "config --config tiny --section demo data.root={work}/corpus",
        "data.root",
        id="config-root-moves-nothing",
    ),
    case(
        f"{EVALUATE} --config tiny data.root={{work}}/corpus", "data.root", id="evaluate-root-moves-nothing"
    ),
    case(f"{TRAIN} data.root=", "data.root", id="train-root-empty"),
]


# -- flags ---------------------------------------------------------------------------------------

FLAG_CASES = [
    # evaluate
    case(_with(EVALUATE, "--snrs", "abc"), "abc", usage="gradw evaluate", id="evaluate-snrs-abc"),
    case(_with(EVALUATE, "--snrs", "nan"), "nan", id="evaluate-snrs-nan"),
    case(_with(EVALUATE, "--snrs", "0,inf"), "inf", id="evaluate-snrs-inf"),
    case(_with(EVALUATE, "--n-boot", "0"), "n_boot", id="evaluate-n-boot-0"),
    case(_with(EVALUATE, "--n-boot", "x"), "x", usage="gradw evaluate", id="evaluate-n-boot-not-a-number"),
    case(f"{EVALUATE} --threads -3", "threads", id="evaluate-threads-negative"),
    case(f"{EVALUATE} --dpi 10", "10", usage="gradw evaluate", id="evaluate-dpi-10"),
    case(f"{EVALUATE} --figure-format jpg", "jpg", usage="gradw evaluate", id="evaluate-figure-format-jpg"),
    case(f"{EVALUATE} --max-trials 1", "max_trials", id="evaluate-max-trials-1"),
    case(f"{EVALUATE} --batch-seconds -1", "batch_seconds", id="evaluate-batch-seconds-negative"),
    case(f"{EVALUATE} --save-every 0", "save_every", id="evaluate-save-every-0"),
    case(
        f"{EVALUATE} --trials {{lists}}/pairs-bad-label.txt",
        "{lists}/pairs-bad-label.txt",
        id="evaluate-trials-path-malformed",
    ),
    case(f"{EVALUATE} --cache-dir {{work}}/afile", "{work}/afile", id="evaluate-cache-dir-is-a-file"),
    case(_with(EVALUATE, "--out", "{work}/afile"), "{work}/afile", id="evaluate-out-is-a-file"),
    case(_with(EVALUATE, "--out", "{work}/afile/run"), "{work}/afile", id="evaluate-out-under-a-file"),
    case(
        _with(_with(EVALUATE, "--out", "{work}/new/deeper/out"), "--test", "{lists}/wav.scp-empty"),
        "{lists}/wav.scp-empty",
        id="evaluate-bad-test-into-a-new-nested-out",
    ),
    case(_without(EVALUATE, "--test"), "evaluate.test", id="evaluate-no-test"),
    case(_without(EVALUATE, "--out"), "evaluate.out", id="evaluate-no-out"),
    case(_without(EVALUATE, "--augment"), "--augment", id="evaluate-noise-without-augment"),
    case(f"{EVALUATE} --systems nonesuch", "nonesuch", id="evaluate-unknown-system"),
    case(f"{EVALUATE} --systems noisy,noisy", "noisy", id="evaluate-duplicate-system"),
    case(f"{EVALUATE} --systems bad/name:{{g}}", "bad/name", id="evaluate-system-name-unsafe"),
    case(f"{EVALUATE} --systems g:", "g:", id="evaluate-system-without-checkpoint"),
    case(f"{EVALUATE} --categories thunder", "thunder", id="evaluate-unknown-category"),
    case(_with(EVALUATE, "--scorer", "nonesuch"), "nonesuch", id="evaluate-unknown-scorer"),
    case(_without(EVALUATE, "--scorer-checkpoint"), "resnet-tiny", id="evaluate-resnet-without-weights"),
    case(f"{EVALUATE} --bogus-flag", "--bogus-flag", usage="gradw", id="evaluate-unknown-flag"),
    # report
    case("report {work}/noeval", "{work}/noeval", id="report-no-results"),
    case("report {work}/afile", "{work}/afile", id="report-out-is-a-file"),
    case("report {lists}/badresults", "{lists}/badresults", id="report-results-not-json"),
    case("report {lists}/oddresults", "{lists}/oddresults", id="report-results-not-results"),
    case("report {lists} --dpi 10", "10", usage="gradw report", id="report-dpi-10"),
    case("report {lists} --figure-format jpg", "jpg", usage="gradw report", id="report-figure-format-jpg"),
    case("report {lists} --max-snr abc", "abc", usage="gradw report", id="report-max-snr-abc"),
    # training stages
    case(_with(TRAIN, "out_dir", "{work}/afile"), "{work}/afile", id="train-out-is-a-file"),
    case(_with(SPEAKER, "out_dir", "{work}/afile"), "{work}/afile", id="train-speaker-out-is-a-file"),
    case(_with(ADAPT, "out_dir", "{work}/afile"), "{work}/afile", id="adapt-out-is-a-file"),
    case(_with(TRAIN, "out_dir", ""), "out_dir", id="train-out-empty"),
    case(_with(TRAIN, "cache_dir", "{work}/afile"), "{work}/afile", id="train-cache-dir-is-a-file"),
    case(
        _with(_with(TRAIN, "out_dir", "{work}/new/deeper/run"), "data.train", "{lists}/wav.scp-empty"),
        "{lists}/wav.scp-empty",
        id="train-bad-data-into-a-new-nested-out",
    ),
    case(f"{TRAIN} --resume", "{out}", id="train-resume-nothing"),
    case(_without(TRAIN, "speaker.checkpoint"), "speaker.checkpoint", id="train-resnet-without-weights"),
    case("config --section nonesuch", "nonesuch", usage="gradw config", id="config-unknown-section"),
    case("demo --preset tiny --processes 0 out={work}/demo", "0", usage="gradw demo", id="demo-processes-0"),
    # inspect
    case(_with(INSPECT, "-o", "{work}/figure.jpg"), "{work}/figure.jpg", id="inspect-output-jpg"),
    case(_with(INSPECT, "-o", "{work}/figure"), "{work}/figure", id="inspect-output-no-suffix"),
    case(f"{INSPECT} --dpi 10", "10", usage="gradw inspect", id="inspect-dpi-10"),
    case(_with(INSPECT, "--utt", "ghost"), "ghost", id="inspect-unknown-utterance"),
    case(_with(INSPECT, "--condition", "thunder_0"), "thunder_0", id="inspect-unknown-condition"),
    case(_without(INSPECT, "--augment"), "--augment", id="inspect-noise-without-augment"),
    case(f"{INSPECT} --manifest {{work}}/absent.json", "{work}/absent.json", id="inspect-manifest-missing"),
    case(f"{INSPECT} --manifest {{ck}}/text.pt", "{ck}/text.pt", id="inspect-manifest-not-json"),
    case(f"{INSPECT} --manifest {{cfg}}/list.yaml", "{cfg}/list.yaml", id="inspect-manifest-not-a-manifest"),
    case(f"{INSPECT} --checkpoint g={{g}}", "g", id="inspect-checkpoint-name-twice"),
    case(_with(INSPECT, "--checkpoint", "={g}"), "={g}", id="inspect-checkpoint-without-name"),
    case(f"{INSPECT} --scheme nonesuch", "nonesuch", usage="gradw inspect", id="inspect-unknown-scheme"),
    case(_with(INSPECT, "--scorer", "nonesuch"), "nonesuch", id="inspect-unknown-scorer"),
    # enhance
    case(_with(ENHANCE, "-o", "{work}/afile"), "{work}/afile", id="enhance-out-is-a-file"),
    case(_with(ENHANCE, "-o", "{work}/afile/x.wav"), "{work}/afile", id="enhance-file-out-under-a-file"),
    case(_with(ENHANCE, "-o", "{work}/x.mp3"), ".mp3", id="enhance-file-out-unsupported-suffix"),
    case(_with(ENHANCE, "-o", "{in}/good.wav"), "{in}/good.wav", id="enhance-file-out-is-the-input"),
    case(
        "enhance {in}/good.wav {in}/good2.wav -o {work}/x.wav --checkpoint {g}",
        "{work}/x.wav",
        id="enhance-file-out-two-inputs",
    ),
    case(
        f"{ENHANCE} {{in}}/good2.wav", "{in}/good2.wav", usage="gradw", id="enhance-input-after-the-options"
    ),
    case(ENHANCE.replace("{in}/good.wav", "{in}/folder.wav"), "{in}/folder.wav", id="enhance-empty-folder"),
    case(f"{ENHANCE} --min-gain-db 5", "5", usage="gradw enhance", id="enhance-min-gain-positive"),
    case(f"{ENHANCE} --min-gain-db abc", "abc", usage="gradw enhance", id="enhance-min-gain-abc"),
    case(
        f"{ENHANCE} --chunk-seconds 1 --overlap-seconds 2",
        "overlap_seconds",
        id="enhance-overlap-exceeds-chunk",
    ),
    case(f"{ENHANCE} --overlap-seconds -1", "overlap_seconds", id="enhance-overlap-negative"),
    case(f"{ENHANCE} --threads -3", "-3", usage="gradw enhance", id="enhance-threads-negative"),
    case(f"{ENHANCE} --device nonesuch", "nonesuch", usage="gradw enhance", id="enhance-device-unknown"),
    case(f"{ENHANCE} --device cuda:7", "cuda:7", usage="gradw enhance", id="enhance-device-absent-index"),
    case(
        f"{ENHANCE} --device cuda",
        "cuda",
        usage="gradw enhance",
        id="enhance-device-cuda-without-cuda",
        marks=pytest.mark.skipif(CUDA, reason="CUDA is available here"),
    ),
    case(
        "enhance {in}/good.wav --checkpoint {g}", "-o/--output", usage="gradw enhance", id="enhance-no-output"
    ),
    # verify
    case(VERIFY.replace(" {in}/good2.wav", ""), "1 path(s)", id="verify-odd-number-of-files"),
    case(f"{VERIFY} --trials {{lists}}/pairs-bom.txt", "--trials", id="verify-trials-and-files"),
    case(f"{VERIFY} --root {{in}}", "--root", id="verify-root-without-trials"),
    case(
        VERIFY.replace("{in}/good2.wav", "{in}/nan.wav").replace(" --quiet", "") + " --threshold 0.5",
        "{in}/nan.wav",
        id="verify-nan-samples-with-a-threshold",
    ),
    case(
        VERIFY.replace("{in}/good2.wav", "{in}/nowhere.wav").replace(" --quiet", "") + " --threshold 0.5",
        "{in}/nowhere.wav",
        id="verify-missing-file-with-a-threshold",
    ),
    case(f"{VERIFY} --threshold high", "high", id="verify-threshold-word"),
    case(f"{VERIFY} --threshold {{ck}}/text.pt", "{ck}/text.pt", id="verify-threshold-file-not-scores"),
    case(
        f"{VERIFY} --threshold {{lists}}/pairs-bom.txt",
        "{lists}/pairs-bom.txt",
        id="verify-threshold-file-without-labels",
    ),
    case(f"{VERIFY} --threshold nan", "nan", id="verify-threshold-nan"),
    case(_with(VERIFY, "--speaker", "nonesuch"), "nonesuch", id="verify-unknown-speaker"),
    case(_without(VERIFY, "--speaker-checkpoint"), "resnet-tiny", id="verify-resnet-without-weights"),
    case(
        _with(_without(VERIFY, "--speaker-checkpoint"), "--speaker", "campplus")
        + " --speaker-checkpoint random",
        "campplus",
        id="verify-campplus-random",
    ),
    case(f"{VERIFY} --threads -3", "-3", usage="gradw verify", id="verify-threads-negative"),
    case(f"{VERIFY} --device nonesuch", "nonesuch", usage="gradw verify", id="verify-device-unknown"),
    case(
        f"{VERIFY} --device cuda",
        "cuda",
        usage="gradw verify",
        id="verify-device-cuda-without-cuda",
        marks=pytest.mark.skipif(CUDA, reason="CUDA is available here"),
    ),
    case("verify --speaker resnet-tiny --speaker-checkpoint {spk}", "0 path(s)", id="verify-no-files"),
    case(f"{VERIFY} --window-seconds 0.5", "0.5", usage="gradw verify", id="verify-window-under-a-second"),
    case(f"{VERIFY} --window-seconds all", "all", usage="gradw verify", id="verify-window-not-a-number"),
    # export
    case(_with(EXPORT, "-o", "{work}/model.txt"), "{work}/model.txt", id="export-output-not-onnx"),
    case(
        "export onnx --checkpoint {ck}/g.onnx -o {ck}/g.onnx --what enhancer",
        "{ck}/g.onnx",
        id="export-output-is-the-checkpoint",
    ),
    case(_with(EXPORT, "-o", "{g}"), "{g}", id="export-output-is-a-pt-file"),
    case(_with(EXPORT, "-o", "{work}/folder.onnx"), "{work}/folder.onnx", id="export-output-is-a-folder"),
    case(_with(EXPORT, "-o", "{work}/afile/model.onnx"), "{work}/afile", id="export-output-under-a-file"),
    case(f"{EXPORT} --what nonesuch", "nonesuch", usage="gradw export onnx", id="export-unknown-target"),
    case("export --checkpoint {g}", "export_format", usage="gradw export", id="export-no-format"),
    # data
    case("data toy --out {work}/afile", "{work}/afile", id="data-toy-out-is-a-file"),
    case("data prepare musan {work}/nowhere --out {out}", "{work}/nowhere", id="data-musan-root-missing"),
    case("data prepare rirs {work}/nowhere --out {out}", "{work}/nowhere", id="data-rirs-root-missing"),
    case(
        "data prepare musan {in} --split-val 1.5 --out {out}",
        "1.5",
        usage="gradw data prepare musan",
        id="data-musan-split-1.5",
    ),
    case(
        "data build synthvox --preset huge --out {out}",
        "huge",
        usage="gradw data build",
        id="data-build-unknown-preset",
    ),
    case(
        "data build synthvox --pool test-ood --out {work}/nowhere",
        "{work}/nowhere: no synthvox corpus here",
        id="data-build-pool-without-a-corpus",
    ),
    case(
        "data build synthvox --pool test --out {out}",
        "test",
        usage="gradw data build",
        id="data-build-unknown-pool",
    ),
    # calibrate
    case(_with(CALIBRATE, "-o", "{g}"), "--in-place", id="calibrate-output-is-the-checkpoint"),
    # fuse, and @qfuse of a checkpoint without fusion weights
    case(_with(FUSE, "-o", "{g}"), "--in-place", id="fuse-output-is-the-checkpoint"),
    case(
        _with(_with(FUSE, "--checkpoint", "{adapted}"), "-o", "{spk}"),
        "{spk}",
        id="fuse-output-is-the-base-network",
    ),
    case(_with(FUSE, "data.train", ""), "data.train", id="fuse-no-training-speakers"),
    case(_with(FUSE, "data.val", ""), "data.val", id="fuse-no-validation-speakers"),
    case(
        _with(EVALUATE, "--systems", "g:{g}@qfuse"),
        "{g}",
        "extra.fusion",
        id="evaluate-qfuse-without-weights",
    ),
    case(
        _with(EVALUATE, "--systems", "a:{adapted}@qfuse"),
        "{adapted}",
        "extra.fusion",
        id="evaluate-qfuse-adapted-without-weights",
    ),
    case(
        _with(CALIBRATE, "-o", "{work}/folder.onnx"), "{work}/folder.onnx", id="calibrate-output-is-a-folder"
    ),
    case(_with(CALIBRATE, "-o", "{work}/afile/g.pt"), "{work}/afile", id="calibrate-output-under-a-file"),
    case(
        _with(_with(CALIBRATE, "--checkpoint", "{adapted}"), "-o", "{spk}"),
        "{spk}",
        id="calibrate-output-is-the-base-network",
    ),
    case(
        f"{CALIBRATE} --in-place", "--in-place", usage="gradw calibrate", id="calibrate-output-and-in-place"
    ),
    case(_without(CALIBRATE, "-o"), "--in-place", usage="gradw calibrate", id="calibrate-no-output"),
    case(
        _without(CALIBRATE, "--checkpoint"),
        "--checkpoint",
        usage="gradw calibrate",
        id="calibrate-no-checkpoint",
    ),
    case(_without(CALIBRATE, "data.val"), "data.val", id="calibrate-no-validation-speakers"),
    case(
        f"{CALIBRATE} data.train={{train}} calibration.score_norm.top_n=1000",
        "calibration.score_norm.top_n",
        id="calibrate-score-norm-top-n-above-the-cohort",
    ),
    case(
        f"{CALIBRATE} data.train= calibration.score_norm.top_n=2",
        "data.train",
        id="calibrate-score-norm-without-training-speakers",
    ),
    case(
        _with(EVALUATE, "--systems", "a:{ck}/cohort-dim.pt"),
        "{ck}/cohort-dim.pt",
        "dimension 7",
        id="evaluate-cohort-of-another-dimension",
    ),
    case(
        "verify {in}/good.wav {in}/good2.wav --checkpoint {ck}/cohort-dim.pt --quiet",
        "{ck}/cohort-dim.pt",
        "dimension 7",
        id="verify-cohort-of-another-dimension",
    ),
    case(f"{CALIBRATE} --threads -3", "-3", usage="gradw calibrate", id="calibrate-threads-negative"),
    case(
        f"{CALIBRATE} --device nonesuch", "nonesuch", usage="gradw calibrate", id="calibrate-device-unknown"
    ),
    case(
        f"{CALIBRATE} calibration.clip={{{{seconds:[1,2]}}}}",
        "calibration.clip",
        id="calibrate-clip-of-an-unused-measure",
    ),
    # the command itself
    case("frobnicate", "frobnicate", usage="gradw", id="unknown-command"),
]


# -- a folder locked by a live run ------------------------------------------------------------

LOCK_CASES = [
    case(_with(EVALUATE, "--out", "{work}/locked"), "{work}/locked", id="evaluate-into-a-locked-folder"),
    case(_with(TRAIN, "out_dir", "{work}/locked"), "{work}/locked", id="train-into-a-locked-folder"),
    case(
        _with(SPEAKER, "out_dir", "{work}/locked"), "{work}/locked", id="train-speaker-into-a-locked-folder"
    ),
    case(_with(ADAPT, "out_dir", "{work}/locked"), "{work}/locked", id="adapt-into-a-locked-folder"),
    case("demo --preset tiny --quiet out={work}/locked", "{work}/locked", id="demo-into-a-locked-folder"),
    case(
        "calibrate --checkpoint {work}/locked/g.pt --in-place --quiet data.val={val} data.val_augment={aug}",
        "{work}/locked",
        id="calibrate-in-place-in-a-locked-folder",
    ),
    case(
        _with(_without(FUSE, "-o") + " --in-place", "--checkpoint", "{work}/locked/g.pt"),
        "{work}/locked",
        id="fuse-in-place-in-a-locked-folder",
    ),
]


# ---------------------------------------------------------------------------------------------
# the tests


@pytest.mark.parametrize("bad", AUDIO_CASES)
def test_bad_audio_is_refused(guarded: World, bad: Case, capsys: pytest.CaptureFixture[str]) -> None:
    check_refused(guarded, bad, capsys)


@pytest.mark.parametrize("bad", LIST_CASES)
def test_bad_lists_are_refused(guarded: World, bad: Case, capsys: pytest.CaptureFixture[str]) -> None:
    check_refused(guarded, bad, capsys)


@pytest.mark.parametrize("bad", CHECKPOINT_CASES)
def test_bad_checkpoints_are_refused(guarded: World, bad: Case, capsys: pytest.CaptureFixture[str]) -> None:
    check_refused(guarded, bad, capsys)


@pytest.mark.parametrize("bad", CONFIG_CASES)
def test_bad_configs_and_overrides_are_refused(
    guarded: World, bad: Case, capsys: pytest.CaptureFixture[str]
) -> None:
    check_refused(guarded, bad, capsys)


@pytest.mark.parametrize("bad", FLAG_CASES)
def test_bad_flags_are_refused(guarded: World, bad: Case, capsys: pytest.CaptureFixture[str]) -> None:
    check_refused(guarded, bad, capsys)


@pytest.mark.parametrize("bad", LOCK_CASES)
def test_a_folder_locked_by_a_live_run_is_refused(
    guarded: World, bad: Case, capsys: pytest.CaptureFixture[str]
) -> None:
    lock = RunLock(guarded.root / "work" / "locked", "evaluation").acquire()
    try:
        line = check_refused(guarded, bad, capsys)
    finally:
        lock.release()
    assert f"pid {os.getpid()}" in line


# -- gradw enhance: unreadable inputs are listed at the end, exit status 1 ----------------------

ENHANCE_UNREADABLE = [
    pytest.param(kind, output, id=f"{kind}-{'to-file' if output.endswith('.wav') else 'to-folder'}")
    for kind in AUDIO
    if kind != "directory"  # a folder is an input enhance scans (see enhance-empty-folder)
    for output in ("{out}", "{work}/enhanced.wav")
]


@pytest.mark.parametrize(("kind", "output"), ENHANCE_UNREADABLE)
def test_enhance_lists_each_unreadable_input_and_writes_nothing(
    guarded: World, kind: str, output: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``gradw enhance`` goes on past an input it cannot read and lists each at the end, exit
    status 1 (its documented batch behaviour): the header line, then ``  PATH: reason``."""
    source = guarded.fill("{in}/" + AUDIO[kind])
    before = snapshot(guarded.root)
    code, out, err = run_cli(
        ["enhance", source, "-o", guarded.fill(output), "--checkpoint", guarded.fill("{g}"), "--quiet"],
        capsys,
    )
    after = snapshot(guarded.root)
    assert code == 1, err
    assert err.splitlines() == ["gradw: error: 1 input(s) could not be enhanced:", err.splitlines()[1]], err
    assert err.splitlines()[1].startswith(f"  {source}: "), err
    assert out == ""
    _assert_unchanged(before, after)


# -- documented handling: inputs that look odd and work ---------------------------------------


def _evaluate_on(test: str) -> str:
    """A clean-only evaluation of 20 trials of ``test`` into the test's own tmp_path (``{tmp}``)."""
    line = _with(_with(EVALUATE, "--test", test), "--out", "{tmp}/eval")
    return _with(_with(line, "--categories", ","), "--snrs", "0") + " --max-trials 20"


PAIR = "{in}/good.wav {in}/good2.wav "
VERIFY_PAIRS = "verify --trials {lists}/%s --speaker resnet-tiny --speaker-checkpoint {spk}"

#: (command line, text its stdout holds, the warning it gives or None)
HANDLED = [
    pytest.param(_evaluate_on("{lists}/bom"), "report:", None, id="evaluate-lists-with-a-byte-order-mark"),
    pytest.param(_evaluate_on("{lists}/crlf"), "report:", None, id="evaluate-lists-with-crlf-line-ends"),
    pytest.param(
        _evaluate_on("{lists}/repeated"),
        "report:",
        "listed more than once",
        id="evaluate-a-trial-listed-twice",
    ),
    pytest.param(VERIFY_PAIRS % "pairs-bom.txt", PAIR, None, id="verify-pairs-with-a-byte-order-mark"),
    pytest.param(VERIFY_PAIRS % "pairs-crlf.txt", PAIR, None, id="verify-pairs-with-crlf-line-ends"),
    pytest.param("config --config {cfg}/bom.yaml", "seed: 3", None, id="config-yaml-with-a-byte-order-mark"),
]


@pytest.mark.parametrize(("line", "printed", "warning"), HANDLED)
def test_documented_handling_works(
    world: World,
    line: str,
    printed: str,
    warning: str | None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A byte-order mark, CRLF line ends and a trial listed twice (a warning) are handled."""
    argv = [world.fill(word, tmp=str(tmp_path)) for word in line.split()]
    with pytest.warns(UserWarning, match=warning) if warning else contextlib.nullcontext():
        code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    assert world.fill(printed) in out, out
    assert "error" not in err, err
