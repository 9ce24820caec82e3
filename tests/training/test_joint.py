"""Joint training of G and the student (``gradw adapt`` with ``joint.enabled``) on the toy corpus:
G trains or stays fixed, one checkpoint is the whole system, resume, the gradient combination,
errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import adapt_overrides, make_enhancer_checkpoint, make_speaker_checkpoint
from torch import nn
from torch.nn import functional as F

from gradw import SpeakerVerifier
from gradw.audio.io import read_audio
from gradw.checkpoint import load_checkpoint
from gradw.config import AdaptConfig, ConfigError, EnhancerConfig, load_config
from gradw.data.dirs import SpeechDir
from gradw.evaluation.systems import load_system, parse_system
from gradw.losses.objective import ObjectiveResult
from gradw.losses.pcgrad import combine_gradients
from gradw.models.loading import load_adapted
from gradw.models.unet import MaskUNet
from gradw.training.adapt import train_adapter
from gradw.training.enhancer import build_enhancer
from gradw.training.joint import JointEnhancer
from gradw.training.loop import TrainingError, read_metrics, seed_everything

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_speaker_checkpoint(tmp_path_factory.mktemp("base") / "speaker.pt", seed=7)


def _config(corpus: Path, out: Path, base: Path, *extra: str) -> AdaptConfig:
    return load_config(AdaptConfig, "tiny", adapt_overrides(corpus, out, base, *extra), section="adapt")


def _test_wav(corpus: Path) -> np.ndarray:
    test = SpeechDir.load(corpus / "test")
    return read_audio(test.wavs[sorted(test.wavs)[0]])


def _hand_g(record: dict) -> MaskUNet:
    """G rebuilt by hand from a checkpoint's ``extra.enhancer`` record."""
    g = MaskUNet.from_config(record["model_config"])
    g.load_state_dict(record["model"])
    return g.eval()


# ---------------------------------------------------------------------------------------------
# training


@pytest.mark.parametrize("joint", [False, True])
def test_g_from_its_checkpoint_trains_only_when_joint_is_on(
    toy_corpus: Path, tmp_path: Path, base: Path, joint: bool
):
    g_path = make_enhancer_checkpoint(tmp_path / "g.pt", init_bias=0.0)
    extra = (
        f"enhancer_checkpoint={g_path}",
        f"joint.enabled={str(joint).lower()}",
        "joint.loss.scheme=equal",
    )
    last = train_adapter(_config(toy_corpus, tmp_path / "run", base, *extra), quiet=True)
    stored = load_checkpoint(last, kind="adapted")["extra"]["enhancer"]
    start = load_checkpoint(g_path, kind="enhancer")
    assert stored["model_config"] == start["model_config"] and stored["checkpoint"] == str(g_path)
    changed = [k for k, v in start["model"].items() if not torch.equal(stored["model"][k], v)]
    rows = read_metrics(tmp_path / "run", "train")
    if joint:
        assert "out.weight" in changed and len(changed) > len(start["model"]) // 2
        assert stored["joint_steps"] == 4
        assert all(r["enhancer_loss"] > 0 and r["enhancer_lr"] > 0 for r in rows)
    else:
        assert changed == [] and "joint_steps" not in stored
        assert not any(k.startswith("enhancer_") for k in rows[0])


def test_a_new_g_trains_with_the_student_and_the_checkpoint_is_the_whole_system(
    toy_corpus: Path, tmp_path: Path, base: Path
):
    # a new G at its identity start, its own objective Grad-W (labels: E gets a centroid head); a
    # mask bias of 0 and a large rate, so that 4 steps move the mask visibly
    extra = ("joint.enabled=true", "joint.loss.scheme=gradw-norm", "validation.every=2")
    extra += ("joint.enhancer.init_bias=0.0", "joint.lr=0.01")
    config = _config(toy_corpus, tmp_path / "run", base, *extra)
    last = train_adapter(config, quiet=True)
    state = load_checkpoint(last, kind="adapted")
    record = state["extra"]["enhancer"]
    assert record["checkpoint"] is None and record["digest"] is None and record["joint_steps"] == 4
    assert record["speaker"] == {"name": "resnet-tiny", "checkpoint": str(base), "tap": "layer3"}
    seed_everything(config.seed)
    start = build_enhancer(config.joint.enhancer, 80)
    assert start.config == record["model_config"] and start.config["init_bias"] == 0.0
    assert any(not torch.equal(record["model"][k], v) for k, v in start.state_dict().items())
    rows = read_metrics(tmp_path / "run", "train")
    assert all("enhancer_grad_diff_std" in r and "embedding_distance" in r for r in rows)
    best = load_checkpoint(tmp_path / "run" / "best.pt", kind="adapted")
    assert best["extra"]["enhancer"]["joint_steps"] in (2, 4) and "calibration" in best["extra"]

    # loaded back by the evaluation, the Python API: the student behind the trained G
    student, g, info = load_adapted(last)
    assert g is not None and info["enhancer"]["joint_steps"] == 4
    hand = _hand_g(record)
    wav = _test_wav(toy_corpus)
    with torch.no_grad():
        mel = student.mel_power(torch.from_numpy(wav)[None])
        expected = student(student.features(mel, hand(student.features(mel))))
        bare = student(student.features(mel))
    assert (expected - bare).abs().max() > 1e-5  # G's mask is no longer the identity
    system = load_system(parse_system(f"joint:{last}"), None, "s", CPU)  # type: ignore[arg-type]
    assert system.enhancer is not None and system.info["enhancer"] is None  # no starting checkpoint
    np.testing.assert_allclose(system.embed(wav), F.normalize(expected, dim=-1)[0].numpy(), atol=2e-5)
    fused = load_system(parse_system(f"joint:{last}@fuse"), None, "s", CPU)  # type: ignore[arg-type]
    assert fused.embed(wav).shape == system.embed(wav).shape
    verifier = SpeakerVerifier(enhancer=last)
    np.testing.assert_allclose(verifier.embed(wav, 16000), expected[0].numpy(), atol=2e-5)


def test_resume_restores_g_and_its_optimizer_state(toy_corpus: Path, tmp_path: Path, base: Path):
    extra = ("joint.enabled=true", "joint.loss.scheme=equal", "joint.loss.embedding_weight=1.0")
    extra += ("joint.conflict=project",)
    full = train_adapter(_config(toy_corpus, tmp_path / "full", base, *extra), quiet=True)
    _ = train_adapter(_config(toy_corpus, tmp_path / "split", base, *extra, "optim.steps=2"), quiet=True)
    with pytest.raises(TrainingError, match=r"joint.enabled=true: resume it with the same setting"):
        train_adapter(_config(toy_corpus, tmp_path / "split", base), resume=True, quiet=True)
    split = train_adapter(_config(toy_corpus, tmp_path / "split", base, *extra), resume=True, quiet=True)
    a, b = load_checkpoint(full), load_checkpoint(split)
    assert b["extra"]["enhancer"]["joint_steps"] == 4
    ga, gb = a["extra"]["enhancer"]["model"], b["extra"]["enhancer"]["model"]
    for key in ga:
        torch.testing.assert_close(ga[key], gb[key], atol=1e-6, rtol=1e-5, msg=key)
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], atol=1e-6, rtol=1e-5, msg=key)
    # one optimizer, two groups: the student's, then G's (its Adam moments restored on resume)
    groups = b["optimizer"]["param_groups"]
    assert len(groups) == 2 and groups[1]["lr"] == pytest.approx(1e-3)  # tiny's joint.lr
    for index in groups[1]["params"]:
        for moment in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(
                a["optimizer"]["state"][index][moment],
                b["optimizer"]["state"][index][moment],
                atol=1e-7,
                rtol=1e-4,
            )
    rows = read_metrics(tmp_path / "split", "train")
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and all("enhancer_grad_conflict" in r for r in rows)
    # a plain run is not resumed as a joint one either
    plain = train_adapter(_config(toy_corpus, tmp_path / "plain", base, "optim.steps=2"), quiet=True)
    with pytest.raises(TrainingError, match=r"joint.enabled=false: resume it with the same setting"):
        train_adapter(_config(toy_corpus, plain.parent, base, *extra), resume=True, quiet=True)


# ---------------------------------------------------------------------------------------------
# the gradient combination


class _Toy(nn.Module):
    """A stand-in for G: two parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
        self.b = nn.Parameter(torch.tensor([0.5, 0.0, 1.0], dtype=torch.float64))


def _losses(g: _Toy, s: torch.Tensor) -> tuple[ObjectiveResult, torch.Tensor]:
    """G's own loss (reaches g only) and the student's (reaches g and the student's s); their
    gradients on g conflict."""
    own = (g.w**2).sum() + (g.b * torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64)).sum()
    student = -3.0 * g.w[0] - 2.0 * (g.b[1] * s).sum() + (s**2).sum()
    return ObjectiveResult(loss=own, stats={"loss": own.detach().item()}), student


@pytest.mark.parametrize("conflict", ["none", "project"])
def test_g_gets_both_gradients_combined_and_the_student_its_own_only(conflict: str):
    g, s = _Toy(), torch.tensor([1.5], dtype=torch.float64, requires_grad=True)
    weight = 0.5
    joint = JointEnhancer(g, {}, objective=None, objective_weight=weight, conflict=conflict)  # type: ignore[arg-type]
    own, student = _losses(g, s)
    stats = joint.backward(own, student)

    # by hand: the two gradients on G separately, then their sum or PCGrad's rule
    g2, s2 = _Toy(), s.detach().clone().requires_grad_(True)
    own2, student2 = _losses(g2, s2)
    ga = torch.cat([t.flatten() for t in torch.autograd.grad(weight * own2.loss, [g2.w, g2.b])])
    gb = torch.cat([t.flatten() for t in torch.autograd.grad(student2, [g2.w, g2.b], retain_graph=True)])
    (gs,) = torch.autograd.grad(student2, [s2])
    dot = float(ga @ gb)
    assert dot < 0  # the toy case conflicts
    if conflict == "project":
        expected = (ga - dot / float(gb @ gb) * gb) + (gb - dot / float(ga @ ga) * ga)
        assert stats["enhancer_grad_conflict"] == 1.0
        assert stats["enhancer_grad_cosine"] == pytest.approx(dot / float(ga.norm() * gb.norm()))
        helper, _ = combine_gradients([ga], [gb], "project")
        torch.testing.assert_close(expected, helper[0])
    else:
        expected = ga + gb
        assert "enhancer_grad_conflict" not in stats
    torch.testing.assert_close(torch.cat([g.w.grad, g.b.grad]), expected)
    torch.testing.assert_close(s.grad, gs)  # G's own objective does not reach the student
    assert stats["enhancer_loss"] == pytest.approx(own2.loss.detach().item())


# ---------------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("joint.conflict=pcgrad",), r"^joint.conflict: unknown mode 'pcgrad'"),
        (("joint.lr=0",), r"^joint.lr: must be a number > 0, got 0.0"),
        (("joint.objective_weight=-1",), r"^joint.objective_weight: must be a number >= 0, got -1.0"),
        (("joint.loss.scheme=nonesuch",), r"^joint.loss.scheme: unknown scheme 'nonesuch'"),
        (("joint.loss.temperature=0",), r"^joint.loss.temperature: must be a number > 0"),
        (("joint.enhancer.base_width=0",), r"^joint.enhancer.base_width: must be an integer >= 1"),
        (("joint.enabled=true", "joint.loss.conflict=project"), r"^joint.loss.conflict=project: "),
        (("joint.enabled=true", "joint.enhancer.init_bias=null"), r"^joint.enhancer.init_bias: "),
        (
            ("joint.enabled=true", "joint.conflict=project", "joint.objective_weight=0"),
            r"^joint.conflict=project .* needs joint.objective_weight > 0",
        ),
        (("joint.enabled=maybe",), r"^joint.enabled: expected true or false"),
    ],
)
def test_bad_joint_values_fail_before_any_work(toy_corpus: Path, tmp_path: Path, base: Path, extra, message):
    with pytest.raises(ConfigError, match=message):
        train_adapter(_config(toy_corpus, tmp_path / "run", base, *extra), quiet=True)
    assert not (tmp_path / "run").exists()


def test_the_default_new_g_is_at_its_identity_start():
    config = AdaptConfig()
    assert not config.joint.enabled and config.joint.conflict == "none"
    assert config.joint.enhancer == EnhancerConfig(init_bias=0.0)
    g = build_enhancer(config.joint.enhancer, 80)
    features = torch.randn(2, 80, 24)
    mask = g(features)
    torch.testing.assert_close(mask, torch.full_like(mask, 0.5))  # constant: removed by the CMN
