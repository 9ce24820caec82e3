"""Stage 3 end to end on the toy corpus: the objective, training, checkpoints, resume, loading
back for evaluation, errors."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import adapt_overrides, make_enhancer_checkpoint
from torch.nn import functional as F

from gradw.audio.io import read_audio
from gradw.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from gradw.config import AdaptConfig, ConfigError, load_config
from gradw.data.dirs import SpeechDir
from gradw.evaluation.systems import SystemSpecError, load_system, parse_system
from gradw.losses.adaptation import AdaptationObjective, label_free_weights, relation_distance
from gradw.models.adapters import LoRALayer, adapter_spec, inject_adapters, trainable_parameters
from gradw.models.loading import RESNET_PRESETS, build_resnet, load_adapted, load_speaker_network
from gradw.training.adapt import StudentModule, train_adapter
from gradw.training.loop import TrainingError, read_metrics

CPU = torch.device("cpu")


def _save_speaker(path: Path, seed: int) -> Path:
    """A randomly initialised resnet-tiny saved as ``gradw train-speaker`` would (no head)."""
    torch.manual_seed(seed)
    config = {**RESNET_PRESETS["resnet-tiny"], "num_classes": None}
    model = build_resnet(config)
    save_checkpoint(path, kind="speaker", model=model, step=0, config={}, model_config=config)
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_speaker(tmp_path_factory.mktemp("base") / "speaker.pt", seed=7)


def _overrides(corpus: Path, out: Path, base: Path, *extra: str) -> list[str]:
    return adapt_overrides(corpus, out, base, *extra)


def _config(corpus: Path, out: Path, base: Path, *extra: str) -> AdaptConfig:
    return load_config(AdaptConfig, "tiny", _overrides(corpus, out, base, *extra), section="adapt")


def _batch(seed: int = 0, batch: int = 3, n: int = 8000) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    clean = 0.1 * torch.randn(batch, n, generator=gen)
    return clean, clean + 0.2 * torch.randn(batch, n, generator=gen)


def _test_wav(corpus: Path) -> str:
    test = SpeechDir.load(corpus / "test")
    return test.wavs[sorted(test.wavs)[0]]


def _teacher_student(base: Path, rank: int = 2) -> tuple:
    teacher = load_speaker_network("resnet-tiny", checkpoint=base, tap="layer3").freeze()
    student = load_speaker_network("resnet-tiny", checkpoint=base, tap="layer3")
    inject_adapters(student, ["all"], rank=rank)
    return teacher, StudentModule(student)


def _step_inputs(teacher, clean: torch.Tensor, noisy: torch.Tensor):
    with torch.no_grad():
        reference = teacher.run(teacher.features(teacher.mel_power(clean)))
        features = torch.cat([teacher.features(teacher.mel_power(x)) for x in (noisy, clean)])
    return reference, features


# ---------------------------------------------------------------------------------------------
# the objective


def test_consistency_is_zero_at_step_zero_and_the_loss_is_what_it_says(base: Path):
    teacher, model = _teacher_student(base)
    objective = AdaptationObjective(teacher, embedding_weight=2.0, consistency_weight=0.5)
    clean, noisy = _batch()
    reference, features = _step_inputs(teacher, clean, noisy)
    activation, embedding = model(features)
    result = objective(activation, embedding, reference.activation, reference.embedding)
    assert result.stats["consistency_distance"] < 1e-6  # the student is the teacher at step 0
    with torch.no_grad():
        teacher_noisy = teacher.embed(noisy)
    expected = 1 - F.cosine_similarity(teacher_noisy, reference.embedding, dim=-1)
    assert float(expected.mean()) > 1e-3  # the noise moves the teacher's embedding
    assert result.stats["embedding_distance"] == pytest.approx(float(expected.mean()), abs=1e-6)
    assert result.loss.item() == pytest.approx(2.0 * float(expected.mean()), abs=1e-5)
    assert set(result.stats) == {"loss", "embedding_distance", "consistency_distance"}


def test_a_few_steps_on_one_batch_bring_the_student_to_the_clean_teacher(base: Path):
    teacher, model = _teacher_student(base, rank=4)
    objective = AdaptationObjective(teacher, embedding_weight=1.0, consistency_weight=1.0)
    optimizer = torch.optim.Adam(trainable_parameters(model.student), lr=5e-3)
    reference, features = _step_inputs(teacher, *_batch(seed=1))
    losses = []
    for _ in range(10):
        model.train()  # asked for training mode, the student stays in eval mode (BatchNorm frozen)
        result = objective(*model(features), reference.activation, reference.embedding)
        optimizer.zero_grad()
        result.loss.backward()
        optimizer.step()
        losses.append(result.stats["loss"])
    assert losses[-1] < 0.25 * losses[0] and losses[-1] < min(losses[:-1])
    assert not model.training and not any(m.training for m in model.modules())
    for name, buffer in teacher.named_buffers():  # BatchNorm statistics untouched
        if "running" in name:
            assert torch.equal(model.student.get_buffer(name), buffer), name


def test_tap_term_with_label_free_weights_and_the_anchor(base: Path):
    teacher = load_speaker_network("resnet-tiny", checkpoint=base, tap="layer3").freeze()
    student = copy.deepcopy(teacher)
    inject_adapters(student, ["layer3", "layer4"], rank=0)
    model = StudentModule(student)
    anchors = [(p, p.detach().clone()) for p in trainable_parameters(student)]
    clean, noisy = _batch(seed=2)
    reference, features = _step_inputs(teacher, clean, noisy)
    activation, _ = model(features[: clean.shape[0]])
    weights = label_free_weights(teacher, activation, reference.embedding, "gradw-norm")
    assert weights.shape == (3, 1, *activation.shape[2:])
    torch.testing.assert_close(weights.sum(dim=(1, 2, 3)), torch.ones(3))
    assert float(weights.flatten(1).std(dim=1).min()) > 0  # not uniform
    equal = label_free_weights(teacher, activation, reference.embedding, "equal")
    assert torch.allclose(equal, torch.full_like(equal, 1 / equal[0].numel()))
    objective = AdaptationObjective(
        teacher,
        tap_weight=0.5,
        consistency_weight=0.0,
        scheme="gradw-norm",
        anchor_weight=10.0,
        anchors=anchors,
    )
    result = objective(*model(features[:3]), reference.activation, reference.embedding)
    assert result.stats["tap_l1"] > 0 and 0 < result.stats["weight_entropy"] <= 1
    assert result.stats["anchor_distance"] == 0.0
    with torch.no_grad():
        anchors[0][0].add_(0.1)
    result = objective(*model(features[:3]), reference.activation, reference.embedding)
    assert result.stats["anchor_distance"] == pytest.approx(0.01 * anchors[0][0].numel(), rel=1e-4)


def test_relation_term_against_a_loop_and_its_limits() -> None:
    """|cos(e_i, e_j) - cos(r_i, r_j)| averaged over j != i, item by item; 0 when the student keeps
    the teacher's geometry (a rotation of it too); large when it collapses the batch."""
    gen = torch.Generator().manual_seed(0)
    e, r = torch.randn(5, 16, generator=gen), torch.randn(5, 16, generator=gen)
    expected = torch.tensor(
        [
            np.mean(
                [
                    abs(F.cosine_similarity(e[i], e[j], dim=0) - F.cosine_similarity(r[i], r[j], dim=0))
                    for j in range(5)
                    if j != i
                ]
            )
            for i in range(5)
        ]
    )
    torch.testing.assert_close(relation_distance(e, r), expected.float())
    rotation, _ = torch.linalg.qr(torch.randn(16, 16, generator=gen))
    assert float(relation_distance(3.0 * r @ rotation, r).max()) < 1e-5  # the same geometry
    collapsed = r.mean(dim=0, keepdim=True) + 0.01 * torch.randn(5, 16, generator=gen)
    assert float(relation_distance(collapsed, r).mean()) > 0.5  # every pair now scores about 1
    assert relation_distance(e[:1], r[:1]).tolist() == [0.0]


def test_relation_term_enters_the_objective(base: Path) -> None:
    teacher = load_speaker_network("resnet-tiny", checkpoint=base, tap="layer3").freeze()
    clean, noisy = _batch(seed=3)
    reference, features = _step_inputs(teacher, clean, noisy)
    student = StudentModule(copy.deepcopy(teacher))
    activation, embedding = student(features[: clean.shape[0]])
    off = AdaptationObjective(teacher, consistency_weight=0.0)
    on = AdaptationObjective(teacher, consistency_weight=0.0, relation_weight=2.0)
    base_result = off(activation, embedding, reference.activation, reference.embedding)
    result = on(activation, embedding, reference.activation, reference.embedding)
    relation = relation_distance(embedding, reference.embedding)
    assert "relation_distance" not in base_result.stats
    assert result.stats["relation_distance"] == pytest.approx(float(relation.mean()), rel=1e-5)
    expected = float(base_result.loss) + 2.0 * float(relation.mean())
    assert float(result.loss) == pytest.approx(expected, rel=1e-5)


# ---------------------------------------------------------------------------------------------
# training


def test_adaptation_writes_one_self_describing_checkpoint_and_logs(
    toy_corpus: Path, tmp_path: Path, base: Path
):
    config = _config(toy_corpus, tmp_path / "run", base, "validation.every=2")
    last = train_adapter(config, quiet=True)
    state = load_checkpoint(last, kind="adapted")
    assert state["step"] == config.optim.steps == 4
    model_config = state["model_config"]
    assert model_config["speaker"] == {"name": "resnet-tiny", "checkpoint": str(base), "tap": "layer3"}
    assert model_config["adapter"]["mode"] == "lora" and model_config["adapter"]["rank"] == 4
    assert len(model_config["base_digest"]) == 16
    assert state["model"] and all(k.endswith((".lora_A", ".lora_B")) for k in state["model"])
    assert set(state["extra"]) >= {"frontend", "train_speakers", "enhancer"}
    assert state["extra"]["enhancer"] is None and state["optimizer"] is not None
    train = read_metrics(tmp_path / "run", "train")
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    assert train[0]["consistency_distance"] < 1e-6  # logged from step 0's forward pass
    assert all(r["embedding_distance"] > 0 for r in train)
    val = read_metrics(tmp_path / "run", "val")
    assert [r["step"] for r in val] == [2, 4] and all(0 <= r["eer"] <= 100 for r in val)
    assert val[0]["eer_noisy"] == val[1]["eer_noisy"]  # the teacher's baseline, computed once
    best = load_checkpoint(tmp_path / "run" / "best.pt", kind="adapted")
    assert best["extra"]["val"]["eer"] == min(r["eer"] for r in val)
    calibration = best["extra"]["calibration"]  # fitted at the end, with the student as E
    assert calibration["extra"]["conditions"] == ["clean", "noise_0"] and "scorer" not in calibration["extra"]

    # loaded back, the student is no longer the teacher, and the merged and unmerged agree
    student, enhancer, info = load_adapted(last)
    unmerged, _, _ = load_adapted(last, merge=False)
    assert enhancer is None and info["step"] == 4 and info["adapter"]["mode"] == "lora"
    assert adapter_spec(student) is None and any(isinstance(m, LoRALayer) for m in unmerged.modules())
    teacher = load_speaker_network("resnet-tiny", checkpoint=base, tap="layer3").freeze()
    wav = torch.from_numpy(read_audio(_test_wav(toy_corpus)))[None]
    with torch.no_grad():
        e_student, e_teacher = student.embed(wav), teacher.embed(wav)
        torch.testing.assert_close(unmerged.embed(wav), e_student, atol=1e-5, rtol=0)
    assert (F.normalize(e_student, dim=-1) - F.normalize(e_teacher, dim=-1)).abs().max() > 1e-4


def test_resume_gives_the_weights_of_an_uninterrupted_run(toy_corpus: Path, tmp_path: Path, base: Path):
    full = train_adapter(_config(toy_corpus, tmp_path / "full", base), quiet=True)
    _ = train_adapter(_config(toy_corpus, tmp_path / "split", base, "optim.steps=2"), quiet=True)
    with pytest.raises(TrainingError, match="--resume"):
        train_adapter(_config(toy_corpus, tmp_path / "split", base), quiet=True)
    split = train_adapter(_config(toy_corpus, tmp_path / "split", base), resume=True, quiet=True)
    a, b = load_checkpoint(full), load_checkpoint(split)
    assert a["step"] == b["step"] == 4 and a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], atol=1e-6, rtol=1e-5, msg=key)
    assert [r["step"] for r in read_metrics(tmp_path / "split", "train")] == [1, 2, 3, 4]


def test_full_mode_on_the_output_of_g_is_one_file(toy_corpus: Path, tmp_path: Path, base: Path):
    g_path = make_enhancer_checkpoint(tmp_path / "g.pt", init_bias=0.0)
    extra = ("adapter.mode=full", "adapter.layers=[layer4]", f"enhancer_checkpoint={g_path}")
    extra += ("loss.tap_weight=0.1", "loss.scheme=gradw-norm", "loss.anchor_weight=1.0", "optim.steps=2")
    last = train_adapter(_config(toy_corpus, tmp_path / "run", base, *extra), quiet=True)
    state = load_checkpoint(last, kind="adapted")
    teacher = load_speaker_network("resnet-tiny", checkpoint=base, tap="layer3").freeze()
    layer4 = {k for k in teacher.state_dict() if k.startswith("layer4.") and "running" not in k}
    layer4 -= {k for k in layer4 if k.endswith("num_batches_tracked")}
    assert set(state["model"]) == layer4
    stored = state["extra"]["enhancer"]
    g_state = load_checkpoint(g_path, kind="enhancer")
    assert stored["model_config"] == g_state["model_config"] and stored["frontend"] == "logmel"
    for key, value in g_state["model"].items():
        assert torch.equal(stored["model"][key], value), key
    rows = read_metrics(tmp_path / "run", "train")
    assert (
        all(r["tap_l1"] > 0 and r["anchor_distance"] >= 0 for r in rows) and rows[-1]["anchor_distance"] > 0
    )

    # evaluation: the student scores both sides, behind G; the given scorer is not used
    g_path.unlink()  # the checkpoint is the whole system
    scorer = load_speaker_network("resnet-tiny", checkpoint="random").freeze()  # another one: not used
    system = load_system(parse_system(f"adapted:{last}"), scorer, "scorer-id", CPU)
    assert system.scorer is not scorer and system.enhancer is not None
    assert system.info["adapter"]["mode"] == "full" and system.info["enhancer"] == str(g_path)
    student, g, _ = load_adapted(last)
    wav = read_audio(_test_wav(toy_corpus))
    with torch.no_grad():
        mel = student.mel_power(torch.from_numpy(wav)[None])
        expected = student(student.features(mel, g(student.features(mel))))
    np.testing.assert_allclose(system.embed(wav), F.normalize(expected, dim=-1)[0].numpy(), atol=2e-5)
    with torch.no_grad():
        plain = F.normalize(teacher.embed(torch.from_numpy(wav)[None]), dim=-1)[0].numpy()
    assert np.abs(system.embed(wav) - plain).max() > 1e-4

    # @fuse: the student's embedding (behind G) averaged with the original's on the input as is
    fused = load_system(parse_system(f"adapted:{last}@fuse"), scorer, "scorer-id", CPU)
    assert fused.spec.name == "adapted+fuse" and fused.identity != system.identity
    assert fused.identity.startswith(system.identity + "|fuse:")
    expected_fused = F.normalize(F.normalize(expected, dim=-1)[0] + torch.from_numpy(plain), dim=-1).numpy()
    np.testing.assert_allclose(fused.embed(wav), expected_fused, atol=2e-5)


def test_an_adapter_never_meets_another_base_network(toy_corpus: Path, tmp_path: Path):
    base = _save_speaker(tmp_path / "speaker.pt", seed=1)
    last = train_adapter(_config(toy_corpus, tmp_path / "run", base, "optim.steps=1"), quiet=True)
    system = load_system(parse_system(f"a:{last}"), None, "s", CPU)  # type: ignore[arg-type]
    first = system.identity
    _save_speaker(base, seed=2)  # the base checkpoint replaced by another network
    with pytest.raises(CheckpointError, match="is not the one this adapter was trained on"):
        load_adapted(last)
    with pytest.raises(SystemSpecError, match="^system a: .*is not the one this adapter was trained on"):
        load_system(parse_system(f"a:{last}"), None, "s", CPU)  # type: ignore[arg-type]
    assert first.startswith("adapted:")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("adapter.mode=half",), r"adapter.mode: unknown mode 'half'"),
        (("adapter.rank=0",), r"adapter.rank must be >= 1 for LoRA"),
        (("adapter.layers=[layer9]",), r"adapter.layers: .*pattern 'layer9' matches no"),
        (("loss.embedding_weight=0",), r"nothing pulls the student"),
        (("loss.scheme=gradw",), r"loss.scheme: unknown tap scheme 'gradw'"),
        (("loss.consistency_weight=-1",), r"loss.consistency_weight: must be a number >= 0, got -1.0"),
        (("loss.relation_weight=-1",), r"loss.relation_weight: must be a number >= 0, got -1.0"),
        (("speaker.checkpoint=null",), r"speaker.checkpoint: resnet-tiny without a checkpoint"),
        (("speaker.checkpoint=random",), r"speaker.checkpoint: resnet-tiny without a checkpoint"),
        (("enhancer_checkpoint=nowhere.pt",), r"enhancer_checkpoint: file not found: nowhere.pt"),
    ],
)
def test_bad_configs_fail_before_any_work(toy_corpus: Path, tmp_path: Path, base: Path, extra, message):
    with pytest.raises(ConfigError, match=message):
        train_adapter(_config(toy_corpus, tmp_path / "run", base, *extra), quiet=True)
    assert not (tmp_path / "run").exists()


def test_g_of_another_mel_grid_is_refused(toy_corpus: Path, tmp_path: Path, base: Path):
    g_path = make_enhancer_checkpoint(tmp_path / "g.pt")
    state = load_checkpoint(g_path)
    state["extra"]["frontend"] = "kaldi-fbank"
    torch.save(state, g_path)
    with pytest.raises(
        ConfigError, match="G's mask lives on the kaldi-fbank grid but the speaker network uses logmel"
    ):
        train_adapter(
            _config(toy_corpus, tmp_path / "run", base, f"enhancer_checkpoint={g_path}"), quiet=True
        )
    assert not (tmp_path / "run").exists()


def test_cli_prints_the_checkpoint_to_use(toy_corpus: Path, tmp_path: Path, base: Path):
    args = [sys.executable, "-m", "gradw", "adapt", "--config", "tiny", "--quiet"]
    args += _overrides(toy_corpus, tmp_path / "run", base, "optim.steps=2", "validation.every=2")
    result = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == f"adapted checkpoint: {tmp_path / 'run' / 'best.pt'}"
    bad = subprocess.run(
        [sys.executable, "-m", "gradw", "adapt", "--config", "tiny", "adapter.moed=full"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "gradw: error: unknown config key adapter.moed (valid: alpha, layers, mode, rank)"
    ]
