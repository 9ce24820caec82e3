"""Stage 2 end to end on the toy corpus: training, checkpoints, resume, multi-process, errors."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gradw.checkpoint import load_checkpoint
from gradw.config import ConfigError, TrainConfig, load_config
from gradw.data.lists import DataError
from gradw.losses.objective import EnhancementObjective, NonFiniteLossError, ObjectiveResult
from gradw.models.loading import load_enhancer
from gradw.models.unet import MaskUNet
from gradw.training.distributed import DistInfo
from gradw.training.enhancer import TrainingError, train_enhancer
from gradw.training.loop import read_metrics

ROOT = Path(__file__).resolve().parents[2]


def _overrides(corpus: Path, out: Path, *extra: str) -> list[str]:
    return [
        f"out_dir={out}",
        f"cache_dir={out.parent / 'cache'}",
        f"data.train={corpus / 'train'}",
        f"data.augment={corpus / 'augment' / 'train'}",
        f"data.val={corpus / 'val'}",
        f"data.val_augment={corpus / 'augment' / 'test'}",
        "speaker.name=resnet-tiny",
        "speaker.checkpoint=random",
        "speaker.tap=layer4",
        "speaker.centroid_crop_seconds=1.0",
        "data.crop_seconds=0.5",
        "optim.batch_size=4",
        "tensorboard=false",
        "threads=1",
        *extra,
    ]


def _config(corpus: Path, out: Path, *extra: str) -> TrainConfig:
    return load_config(TrainConfig, "tiny", _overrides(corpus, out, *extra), section="train")


def test_training_writes_a_self_describing_checkpoint_and_logs(toy_corpus: Path, tmp_path: Path):
    config = _config(toy_corpus, tmp_path / "run", "validation.every=3", "loss.scheme=gradw")
    last = train_enhancer(config, quiet=True)
    state = load_checkpoint(last, kind="enhancer")
    assert state["step"] == config.optim.steps
    assert state["config"]["loss"]["scheme"] == "gradw"
    assert state["extra"]["speaker"]["name"] == "resnet-tiny" and state["extra"]["frontend"] == "logmel"
    assert state["versions"]["torch"] and state["optimizer"] is not None
    bundle = load_enhancer(last)
    feats = torch.randn(1, 80, 37)
    mask = bundle.enhancer(feats)
    assert mask.shape == feats.shape and bool(((mask > 0) & (mask < 1)).all())
    train = read_metrics(tmp_path / "run", "train")
    assert [r["step"] for r in train] == [2, 4, 6]
    for record in train:  # the spread of P is logged so users can see whether Grad-W differs from Equal-W
        assert 0 < record["weight_entropy"] <= 1 and record["weight_max_mean"] >= 1
        assert record["loss"] > 0
    val = read_metrics(tmp_path / "run", "val")
    assert [r["step"] for r in val] == [3, 6] and all(0 <= r["eer"] <= 100 for r in val)
    assert (tmp_path / "run" / "best.pt").is_file() and (tmp_path / "run" / "config.yaml").is_file()
    # the selected checkpoint is calibrated once, at the end, over the config's grid; last.pt is not
    from gradw.evaluation.calibration import Calibration
    from gradw.training.calibrate import calibration_request

    best = load_checkpoint(tmp_path / "run" / "best.pt", kind="enhancer")
    calibration = Calibration.from_dict(best["extra"]["calibration"])
    assert calibration.extra["request"] == calibration_request(config)
    assert calibration.extra["conditions"] == ["clean", "noise_0"] and calibration.extra["scorer"] == (
        "resnet-tiny|random-0"
    )
    assert calibration.measures == ("snr_percentile",) and "calibration" not in state["extra"]


def test_an_existing_run_is_not_overwritten(toy_corpus: Path, tmp_path: Path):
    config = _config(toy_corpus, tmp_path / "run", "optim.steps=1")
    train_enhancer(config, quiet=True)
    with pytest.raises(TrainingError, match="--resume"):
        train_enhancer(config, quiet=True)


def _train_args(
    corpus: Path, out: Path, *extra: str, resume: bool = False, launcher: tuple = (), quiet: bool = True
) -> list[str]:
    """``gradw train`` on the tiny preset for the toy corpus, run by ``launcher`` (default: python)."""
    resume_flag = ["--resume"] if resume else []
    return [
        *(launcher or (sys.executable,)),
        "-m",
        "gradw",
        "train",
        "--config",
        "tiny",
        *(["--quiet"] if quiet else []),
        *resume_flag,
        *_overrides(corpus, out, *extra),
    ]


def _train_cli(
    corpus: Path, out: Path, *extra: str, resume: bool = False, quiet: bool = True
) -> subprocess.CompletedProcess:
    args = _train_args(corpus, out, *extra, resume=resume, quiet=quiet)
    result = subprocess.run(args, capture_output=True, text=True, cwd=out.parent, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_resume_gives_the_weights_of_an_uninterrupted_run(toy_corpus: Path, tmp_path: Path):
    # a resumed run is a new process, so each leg runs as one (numerics are then bit-exact)
    full = _train_cli(
        toy_corpus, tmp_path / "full", "optim.steps=6", "checkpoint_every=3", "log_every=3", quiet=False
    )
    # redirected output: a plain progress line per logged step, and the checkpoint to use named
    lines = full.stderr.splitlines()
    progress = [line for line in lines if line.startswith("[train G] step ") and "validation:" not in line]
    assert sum("validation: eer" in line for line in lines) == 1  # the tiny preset validates at step 6
    assert [line.split()[3] for line in progress] == ["3/6", "6/6"], full.stderr
    assert all(" loss " in line and ", left " in line for line in progress)
    assert full.stdout.strip() == f"enhancer checkpoint: {tmp_path / 'full' / 'best.pt'}"  # selected
    _train_cli(toy_corpus, tmp_path / "split", "optim.steps=3", "checkpoint_every=3")
    _train_cli(toy_corpus, tmp_path / "split", "optim.steps=6", "checkpoint_every=3", resume=True)
    a = load_checkpoint(tmp_path / "full" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "last.pt")
    assert a["step"] == b["step"] == 6
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], atol=1e-7, rtol=1e-6, msg=key)
    steps = [r["step"] for r in read_metrics(tmp_path / "split", "train")]
    assert steps == [2, 3, 4, 6]  # every 2 steps, at the end of the first leg, and no step twice


def test_non_finite_loss_names_the_utterances(toy_corpus: Path, tmp_path: Path, monkeypatch):
    def explode(self, mask, clean_mel, noisy_mel, labels=None):
        raise NonFiniteLossError([1])

    monkeypatch.setattr(EnhancementObjective, "__call__", explode)
    config = _config(toy_corpus, tmp_path / "run", "optim.steps=2")
    with pytest.raises(TrainingError, match=r"non-finite loss at step 0 for utterance\(s\): spk\d+-\d+"):
        train_enhancer(config, quiet=True)


def test_centroids_are_cached_in_the_run_folder_not_the_current_one(
    toy_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from gradw.data.dirs import SpeechDir
    from gradw.training.enhancer import prepare_speaker

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    overrides = [o for o in _overrides(toy_corpus, tmp_path / "run") if not o.startswith("cache_dir=")]
    config = load_config(TrainConfig, "tiny", overrides, section="train")
    assert config.cache_dir == ""
    speaker = prepare_speaker(config, SpeechDir.load(config.data.train), DistInfo())
    assert speaker.head is not None  # built from clean class centroids (random E has no head)
    assert len(list((tmp_path / "run" / "cache").glob("centroids-*.pt"))) == 1
    assert list(cwd.iterdir()) == []  # nothing written relative to the current folder
    assert not list((tmp_path / "run" / "cache").glob(".*"))  # no temporary file left


def test_projected_gradients_are_pcgrad_of_the_two_terms(toy_corpus: Path, tmp_path: Path):
    """``backward(..., "project")`` puts into G's .grad what PCGrad makes of the two terms'
    gradients, each obtained here from its own forward and backward pass."""
    from gradw.data.dirs import SpeechDir
    from gradw.losses.pcgrad import combine_gradients
    from gradw.training.enhancer import backward, build_enhancer, prepare_speaker

    config = _config(toy_corpus, tmp_path / "run", "loss.embedding_weight=30", "loss.scheme=gradw-norm")
    speaker = prepare_speaker(config, SpeechDir.load(config.data.train), DistInfo())
    objective = EnhancementObjective(speaker, scheme="gradw-norm", embedding_weight=30.0)
    torch.manual_seed(0)
    g = build_enhancer(config, speaker.frontend.n_mels)
    gen = torch.Generator().manual_seed(1)
    clean = 0.1 * torch.randn(2, 8000, generator=gen)
    noisy = clean + 0.1 * torch.randn(2, 8000, generator=gen)
    labels = torch.tensor([0, 1])
    clean_mel, noisy_mel = speaker.mel_power(clean), speaker.mel_power(noisy)

    def run() -> ObjectiveResult:
        return objective(g(speaker.features(noisy_mel)), clean_mel, noisy_mel, labels)

    params = list(g.parameters())
    separate = []
    for term in ("feature", "embedding"):
        g.zero_grad(set_to_none=True)
        run().terms[term].backward()
        separate.append([torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in params])
    expected, expected_stats = combine_gradients(*separate, "project")
    g.zero_grad(set_to_none=True)
    result = run()
    assert set(result.terms) == {"feature", "embedding"}
    torch.testing.assert_close(result.terms["feature"] + result.terms["embedding"], result.loss)
    stats = backward(result, g, "project")
    assert stats == pytest.approx(expected_stats)
    for param, want in zip(params, expected, strict=True):
        torch.testing.assert_close(param.grad, want, rtol=1e-5, atol=1e-8)
    # "none" is the ordinary backward of the loss
    g.zero_grad(set_to_none=True)
    assert backward(run(), g, "none") == {}
    for param, a, b in zip(params, *separate, strict=True):
        torch.testing.assert_close(param.grad, a + b, rtol=1e-5, atol=1e-8)


def test_training_with_projection_logs_the_conflicts(toy_corpus: Path, tmp_path: Path):
    extra = ("loss.embedding_weight=30", "loss.conflict=project", "optim.steps=4", "log_every=1")
    train_enhancer(_config(toy_corpus, tmp_path / "run", *extra), quiet=True)
    rows = read_metrics(tmp_path / "run", "train")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for row in rows:
        assert -1 <= row["grad_cosine"] <= 1 and row["grad_conflict"] in (0.0, 1.0)
        assert row["embedding_term"] > 0


def test_training_on_fewer_speakers_and_with_the_keep_penalty(toy_corpus: Path, tmp_path: Path):
    extra = ("data.max_speakers=2", "loss.keep_weight=50", "optim.steps=2", "log_every=1")
    last = train_enhancer(_config(toy_corpus, tmp_path / "run", *extra), quiet=True)
    assert load_checkpoint(last, kind="enhancer")["extra"]["train_speakers"] == 2
    assert all(r["keep_term"] >= 0 for r in read_metrics(tmp_path / "run", "train"))
    with pytest.raises(DataError, match="cannot keep 99 speakers"):
        train_enhancer(_config(toy_corpus, tmp_path / "bad", "data.max_speakers=99"), quiet=True)
    assert not (tmp_path / "bad").exists()  # bad data leaves no run folder behind


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("loss.conflict=project",), r"loss.conflict=project .* needs loss.embedding_weight > 0"),
        (("loss.conflict=pcgrad", "loss.embedding_weight=1"), r"loss.conflict: unknown mode 'pcgrad'"),
        (("speaker.checkpoint=null",), r"speaker.checkpoint: resnet-tiny has no weights of its own"),
    ],
)
def test_conflict_options_are_checked_before_any_work(toy_corpus: Path, tmp_path: Path, extra, message):
    with pytest.raises(ConfigError, match=message):
        train_enhancer(_config(toy_corpus, tmp_path / "run", *extra), quiet=True)
    assert not (tmp_path / "run").exists()


def test_cli_reports_bad_config_in_one_line(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-m", "gradw", "train", "--config", "tiny", "loss.shceme=equal"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "gradw: error: unknown config key loss.shceme "
        "(valid: clip, conflict, embedding_weight, keep_weight, scheme, temperature)"
    ]
    result = subprocess.run(
        [sys.executable, "-m", "gradw", "train", "--config", "tiny", f"data.train={tmp_path / 'nothing'}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 2 and "nothing" in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.parametrize("split", ["train", "val"])
def test_an_utterance_too_short_for_e_is_named_in_one_line(
    split: str, toy_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from helpers import with_short_utterance

    from gradw.cli import main

    short, utt = with_short_utterance(toy_corpus / split, tmp_path / f"short-{split}")
    overrides = _overrides(toy_corpus, tmp_path / "run", f"data.{split}={short}", "validation.every=2")
    assert main(["train", "--config", "tiny", *overrides]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err == (
        f"gradw: error: {short / 'short.wav'}: utterance {utt!r} lasts 10.0 ms, shorter than the 80.0 ms "
        "(1280 samples at 16 kHz) that the speaker network E needs; remove it from the list\n"
    )


def _run_cli(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    "loss", [(), ("loss.embedding_weight=30", "loss.conflict=project")], ids=["plain", "projected"]
)
def test_two_processes_match_one_process_with_the_same_global_batch(
    toy_corpus: Path, tmp_path: Path, loss: tuple[str, ...]
):
    """DDP over 2 gloo processes (batch 2 each, BatchNorm statistics reduced across ranks) computes
    the gradient of one process with batch 4. Compared after one step, through Adam's first moment
    (exp_avg = 0.1 * gradient): later steps are ill-conditioned to compare, since Adam's first update
    is sign(gradient) and flips for elements whose gradient is at rounding level. With projected
    gradients, each term's gradient is averaged over ranks before PCGrad combines them, so the
    global batch decides whether they conflict, as with one process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    extra = ("optim.steps=1", "log_every=1", "enhancer.init_bias=null", *loss)
    one = _run_cli(_train_args(toy_corpus, tmp_path / "one", *extra), tmp_path, env)
    assert one.returncode == 0, one.stderr
    torchrun = (
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={_free_port()}",
    )
    two = _run_cli(_train_args(toy_corpus, tmp_path / "two", *extra, launcher=torchrun), tmp_path, env)
    assert two.returncode == 0, two.stderr[-3000:]
    a = load_checkpoint(tmp_path / "one" / "last.pt")
    b = load_checkpoint(tmp_path / "two" / "last.pt")
    loss_a, loss_b = (read_metrics(tmp_path / run, "train")[0]["loss"] for run in ("one", "two"))
    assert abs(loss_a - loss_b) <= 1e-6 * abs(loss_a)
    model = MaskUNet.from_config(a["model_config"])
    # a transposed conv's bias feeds an InstanceNorm, which removes it: its true gradient is 0
    no_gradient = {
        f"{m}.bias" for m, mod in model.named_modules() if isinstance(mod, torch.nn.ConvTranspose2d)
    }
    compared = 0
    for index, (name, _) in enumerate(model.named_parameters()):
        if name in no_gradient:
            continue
        ga = a["optimizer"]["state"][index]["exp_avg"]
        gb = b["optimizer"]["state"][index]["exp_avg"]
        scale = float(ga.abs().max())
        assert scale > 0, name
        assert float((ga - gb).abs().max()) <= 1e-4 * scale, name
        compared += 1
    assert compared >= 40


def test_sigkill_loses_at_most_the_steps_since_the_last_checkpoint(toy_corpus: Path, tmp_path: Path):
    out = tmp_path / "run"
    args = _train_args(toy_corpus, out, "optim.steps=400", "checkpoint_every=2")
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    try:
        while time.time() < deadline:
            if (out / "last.pt").is_file() and load_checkpoint(out / "last.pt")["step"] >= 4:
                break
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    state = load_checkpoint(out / "last.pt")  # never half-written
    killed_at = state["step"]
    assert killed_at >= 4 and killed_at % 2 == 0
    resumed = _config(toy_corpus, out, f"optim.steps={killed_at + 2}", "checkpoint_every=2")
    train_enhancer(resumed, resume=True, quiet=True)
    assert load_checkpoint(out / "last.pt")["step"] == killed_at + 2


def test_the_noise_colour_section_reaches_the_training_data(toy_corpus: Path, tmp_path: Path) -> None:
    from gradw.data.dirs import AugmentDir, SpeechDir
    from gradw.training.enhancer import _make_dataset

    def dataset(*extra: str):
        config = _config(toy_corpus, tmp_path / "run", "data.clean_fraction=0.0", *extra)
        return _make_dataset(config, SpeechDir.load(config.data.train), AugmentDir.load(config.data.augment))

    off, on = dataset(), dataset("data.noise_colour.prob=1.0", "data.noise_colour.bands=2")
    assert off.augmenter.colour is None
    assert on.augmenter.colour == {"prob": 1.0, "tilt_db": 3.0, "eq_db": 10.0, "bands": 2}
    noise_items = [i for i in range(len(off)) if off[i]["category"] in ("noise", "music")]
    assert noise_items and all(not torch.equal(off[i]["noisy"], on[i]["noisy"]) for i in noise_items)
