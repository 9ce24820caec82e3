"""Stage 3: label-free adaptation of the speaker network to noise (``gradw adapt``).

A *student* copy of the fixed speaker network E is made trainable (LoRA adapters or full
fine-tuning, :mod:`gradw.models.adapters`) and taught to embed noisy speech where the frozen
*teacher* E embeds the clean speech. No speaker labels are used. One step::

    clean, noisy (B, N) --E.mel_power--> (B, F, T) mel power
    teacher (no grad):  A_ref (B, C, F', T'), e_ref (B, D)  on the clean features
    [G, frozen, when given: masks M = G(features) for the student's inputs; with joint.enabled,
     G trains too (its own objective plus the student's loss, :mod:`gradw.training.joint`)]
    student:  A_s, e_s on the noisy (or G-masked) features, and e_c on the clean (or G-masked
              clean) features, in one batch
    loss = the objective of :mod:`gradw.losses.adaptation` (embedding, tap, consistency, anchor)
    Adam step on the student's trainable weights (and G's, with joint.enabled)

BatchNorm layers of the student stay in eval mode: they normalise with E's running statistics,
which adaptation never updates.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gradw.audio.frontends import frontend_name
from gradw.checkpoint import CheckpointError, file_digest, save_checkpoint
from gradw.config import RANDOM_WEIGHTS, AdaptConfig, ConfigError, check_config, to_dict
from gradw.data.dirs import AugmentDir, SpeechDir
from gradw.fileio import atomic_write
from gradw.losses.adaptation import TAP_SCHEMES, AdaptationObjective
from gradw.losses.objective import NonFiniteLossError
from gradw.losses.weights import check_weight_options
from gradw.models.adapters import (
    ADAPTER_MODES,
    adapter_state_dict,
    base_digest,
    inject_adapters,
    load_adapter_state,
    trainable_parameters,
)
from gradw.models.loading import RESNET_PRESETS, SPEAKER_NETWORKS, load_enhancer, load_speaker_network
from gradw.models.speaker import SpeakerNetwork
from gradw.models.unet import MaskUNet
from gradw.training.calibrate import (
    calibrate_checkpoint,
    check_calibration_config,
    check_calibration_data,
    needs_calibration,
)
from gradw.training.distributed import (
    DistInfo,
    all_reduce_mean,
    barrier,
    cleanup_distributed,
    setup_distributed,
    unwrap,
)
from gradw.training.enhancer import _make_dataset
from gradw.training.joint import (
    STAT_PREFIX,
    JointEnhancer,
    check_joint_config,
    initial_enhancer,
    saved_enhancer,
)
from gradw.training.loop import (
    RunLogger,
    TrainingError,
    augment_fingerprints,
    open_run,
    run_lock,
    seed_everything,
    set_learning_rate,
    set_threads,
    start_training,
    step_loader,
)
from gradw.training.validation import Validator

__all__ = ["StudentModule", "StudentValidator", "check_adapt_config", "load_frozen_enhancer", "train_adapter"]


# ---------------------------------------------------------------------------------------------
# the trainable student


class StudentModule(nn.Module):
    """The student as training sees it: one forward for the optimizer (and DDP), the adapter
    weights as its state dict (what checkpoints hold and resuming restores), eval mode always.

    Args:
        student: a speaker network made adaptable by :func:`gradw.models.adapters.inject_adapters`.
    """

    def __init__(self, student: SpeakerNetwork) -> None:
        super().__init__()
        self.student = student
        self.eval()

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """(B, F, T) features -> (B, C, F', T') tap activation and (B, D) embedding."""
        out = self.student.run(features)
        return out.activation, out.embedding

    def train(self, mode: bool = True) -> StudentModule:
        """Always eval mode: BatchNorm keeps E's running statistics."""
        return super().train(False)

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Tensor]:  # type: ignore[override]
        """Only the adapter weights (:func:`gradw.models.adapters.adapter_state_dict`)."""
        return adapter_state_dict(self.student)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """Load adapter weights saved by :meth:`state_dict` (always strict)."""
        load_adapter_state(self.student, state_dict)
        return None


# ---------------------------------------------------------------------------------------------
# validation


class StudentValidator(Validator):
    """Validation EER of the student (scoring both sides of every trial), with G when given.

    ``eer_noisy`` is the teacher without G on the same audio (computed once), as for G's runs.
    G is in eval mode while it is validated (and back in its mode after).
    """

    def __call__(self, student: nn.Module, enhancer: nn.Module | None = None) -> dict[str, float]:  # type: ignore[override]
        teacher = self.speaker
        self.speaker = student  # type: ignore[assignment]
        was_training = enhancer is not None and enhancer.training
        if enhancer is not None:
            enhancer.eval()
        try:
            eers = self._eers(enhancer)
        finally:
            self.speaker = teacher
            if enhancer is not None:
                enhancer.train(was_training)
        result = {
            "eer": float(sum(eers.values()) / len(eers)),
            "eer_noisy": float(sum(self.baseline.values()) / len(self.baseline)),
        }
        result.update({f"eer_{k}": v for k, v in eers.items()})
        return result


# ---------------------------------------------------------------------------------------------
# configuration checks and inputs


def check_adapt_config(config: AdaptConfig) -> None:
    """Refuse an adaptation config that cannot work, naming the key (before any work): every
    value's range (:func:`gradw.config.check_config`), then what the values must do together."""
    check_config(config)
    check_calibration_config(config)
    adapter, loss = config.adapter, config.loss
    if adapter.mode not in ADAPTER_MODES:
        raise ConfigError(
            f"adapter.mode: unknown mode {adapter.mode!r} (expected one of {', '.join(ADAPTER_MODES)})"
        )
    if adapter.mode == "lora" and adapter.rank < 1:
        raise ConfigError(
            f"adapter.rank must be >= 1 for LoRA, got {adapter.rank} (adapter.mode=full trains the layers)"
        )
    if not adapter.layers:
        raise ConfigError("adapter.layers: give at least one pattern (all: the whole network)")
    if not (loss.embedding_weight > 0 or loss.tap_weight > 0):
        raise ConfigError(
            "nothing pulls the student towards the clean teacher: "
            "set loss.embedding_weight or loss.tap_weight > 0"
        )
    if loss.scheme not in TAP_SCHEMES:
        raise ConfigError(
            f"loss.scheme: unknown tap scheme {loss.scheme!r} (expected one of {', '.join(TAP_SCHEMES)})"
        )
    try:
        check_weight_options(loss.scheme, loss.temperature, loss.clip)
    except ValueError as exc:
        raise ConfigError(f"loss: {exc}") from None
    if config.speaker.name not in SPEAKER_NETWORKS:
        raise ConfigError(
            f"speaker.name: unknown speaker network {config.speaker.name!r} "
            f"(choose from {', '.join(SPEAKER_NETWORKS)})"
        )
    if config.speaker.name in RESNET_PRESETS and config.speaker.checkpoint in (None, "", RANDOM_WEIGHTS):
        raise ConfigError(
            f"speaker.checkpoint: {config.speaker.name} without a checkpoint has no weights of its own; "
            "an adapted network is stored relative to its base network, so give the base's checkpoint"
        )
    if config.enhancer_checkpoint is not None and not Path(config.enhancer_checkpoint).is_file():
        raise ConfigError(f"enhancer_checkpoint: file not found: {config.enhancer_checkpoint}")
    check_joint_config(config)


def load_frozen_enhancer(path: str | Path, teacher: SpeakerNetwork) -> tuple[MaskUNet, dict[str, Any]]:
    """G from a ``gradw train`` checkpoint, frozen, and what an adapted checkpoint keeps of it
    (weights, constructor arguments, provenance). G's mask must live on the teacher's mel grid.

    Raises:
        ConfigError: G was trained on another front-end than the teacher's, or the file is not a
            G checkpoint.
    """
    path = Path(path)
    try:
        bundle = load_enhancer(path)
    except CheckpointError as exc:
        raise ConfigError(f"enhancer_checkpoint: {str(exc).splitlines()[0]}") from None
    if bundle.frontend != frontend_name(teacher.frontend):
        raise ConfigError(
            f"enhancer_checkpoint: G's mask lives on the {bundle.frontend} grid but the speaker network "
            f"uses {frontend_name(teacher.frontend)}"
        )
    enhancer = bundle.enhancer.requires_grad_(False)
    record = {
        "model": {k: v.detach().cpu() for k, v in enhancer.state_dict().items()},
        "model_config": enhancer.config,
        "speaker": bundle.speaker,
        "frontend": bundle.frontend,
        "step": int(bundle.step),
        "checkpoint": str(path),
        "digest": file_digest(path),
    }
    return enhancer, record


def _save(
    path: Path,
    config: AdaptConfig,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    step: int,
    model_config: dict[str, Any],
    extra: dict[str, Any],
) -> None:
    save_checkpoint(
        path,
        kind="adapted",
        model=unwrap(model),
        step=step,
        config=to_dict(config),
        model_config=model_config,
        optimizer=optimizer,
        extra=extra,
    )


# ---------------------------------------------------------------------------------------------
# training


def train_adapter(config: AdaptConfig, resume: bool = False, quiet: bool = False) -> Path:
    """Adapt a student copy of E; returns the path of the final checkpoint (``OUT/last.pt``).

    Checkpoints (kind ``adapted``): ``last.pt`` every ``checkpoint_every`` steps and at the end
    (atomic), and ``best.pt`` on the best validation EER when validation is on. Each holds the
    base network's record and digest, the adapter spec and weights, and G's weights when the
    student was adapted on G's output (G as trained with the student, with ``joint.enabled``):
    one file is the whole system (see :func:`gradw.models.adapters.load_adapted`).
    """
    check_adapt_config(config)
    info = setup_distributed()
    try:
        if info.distributed and config.joint.enabled:
            raise ConfigError("joint.enabled: joint training of G and the student runs in one process only")
        if info.distributed and config.loss.embedding_weight == 0 and config.loss.consistency_weight == 0:
            raise ConfigError(
                "several processes need every trained weight to reach the loss: "
                "set loss.embedding_weight or loss.consistency_weight > 0"
            )
        with run_lock(config.out_dir, info):
            return _train(config, resume, quiet, info)
    finally:
        cleanup_distributed()


def _train(config: AdaptConfig, resume: bool, quiet: bool, info: DistInfo) -> Path:
    set_threads(config.threads)
    seed_everything(config.seed)
    # the data and the networks are checked before the run folder exists: bad input leaves nothing
    speech = SpeechDir.load(config.data.train)
    if config.data.max_speakers is not None:
        speech = speech.spread_speakers(config.data.max_speakers)
    augment = AugmentDir.load(config.data.augment)
    cfg = config.speaker
    try:
        teacher = load_speaker_network(cfg.name, checkpoint=cfg.checkpoint, tap=cfg.tap)
    except ValueError as exc:
        raise ConfigError(f"speaker: {exc}") from None
    enhancer, enhancer_record = None, None
    if config.enhancer_checkpoint is not None:
        enhancer, enhancer_record = load_frozen_enhancer(config.enhancer_checkpoint, teacher)
    if config.joint.enabled:
        enhancer, enhancer_record = initial_enhancer(config, teacher, enhancer, enhancer_record)
    if enhancer is not None:
        enhancer = enhancer.to(info.device)
    student = copy.deepcopy(teacher)
    digest = base_digest(teacher)
    teacher = teacher.freeze().to(info.device)
    seed_everything(config.seed)  # LoRA's A depends on the seed alone
    rank = config.adapter.rank if config.adapter.mode == "lora" else 0
    try:
        spec = inject_adapters(student, config.adapter.layers, rank=rank, alpha=config.adapter.alpha)
    except ValueError as exc:
        raise ConfigError(f"adapter.layers: {exc}") from None
    student = student.to(info.device).eval()
    # the anchor's reference: the weights before any step (also when resuming: taken before loading)
    anchors = (
        [(p, p.detach().clone()) for p in trainable_parameters(student)]
        if config.loss.anchor_weight > 0
        else []
    )

    validator = StudentValidator.from_config(config, teacher, info.device)  # its data checked here too
    if validator is not None:
        check_calibration_data(config)
    out = Path(config.out_dir)
    saved_g = None  # a joint run's G, to resume (checked before the run folder is touched)
    if resume and (out / "last.pt").is_file():
        saved_g = saved_enhancer(out / "last.pt", config.joint.enabled)
    last = open_run(out, config, resume, info)
    joint, rates = None, [config.optim.lr]
    if enhancer is not None and config.joint.enabled:
        assert enhancer_record is not None and isinstance(enhancer, MaskUNet)
        joint = JointEnhancer.from_config(
            config, teacher, enhancer, enhancer_record, speech, out / "cache", info
        )
        rates.append(config.joint.lr)
        if saved_g is not None:
            joint.restore(saved_g)
    model, optimizer, start_step = start_training(
        StudentModule(student),
        config.optim.lr,
        last,
        "adapted",
        resume,
        info,
        groups=[] if joint is None else [joint.param_group(config.joint.lr)],
    )
    objective = AdaptationObjective(
        teacher,
        embedding_weight=config.loss.embedding_weight,
        tap_weight=config.loss.tap_weight,
        consistency_weight=config.loss.consistency_weight,
        anchor_weight=config.loss.anchor_weight,
        relation_weight=config.loss.relation_weight,
        scheme=config.loss.scheme,
        temperature=config.loss.temperature,
        clip=config.loss.clip,
        anchors=anchors,
    )
    dataset = _make_dataset(config, speech, augment)  # type: ignore[arg-type]
    steps = config.optim.steps
    loader = step_loader(
        dataset, config.optim.batch_size, config.seed, start_step, steps, info, config.data.num_workers
    )
    model_config = {
        "speaker": {"name": cfg.name, "checkpoint": cfg.checkpoint, "tap": cfg.tap},
        "base_digest": digest,
        "adapter": spec.to_dict(),
    }
    extra: dict[str, Any] = {
        "frontend": frontend_name(teacher.frontend),
        "train_speakers": len(speech.spk2utt),
        "enhancer": enhancer_record,
        "augment_fingerprints": augment_fingerprints(augment),
    }
    logger = RunLogger(
        out, steps, start_step, info, quiet=quiet, tensorboard=config.tensorboard, description="adapt E"
    )
    params = trainable_parameters(student)

    def extra_now(done: int) -> dict[str, Any]:  # G's record as it is now, when G trains
        return extra if joint is None else {**extra, "enhancer": joint.record(done)}

    best = math.inf
    step = start_step
    try:
        for step, batch in zip(range(start_step, steps), loader, strict=False):
            set_learning_rate(optimizer, rates, step, config.optim.warmup_steps)
            clean = batch["clean"].to(info.device)
            noisy = batch["noisy"].to(info.device)
            with torch.no_grad():
                clean_mel = teacher.mel_power(clean)
                noisy_mel = teacher.mel_power(noisy)
                reference = teacher.run(teacher.features(clean_mel))
                if joint is None:
                    inputs = [teacher.features_through(noisy_mel, enhancer)]  # the student's input
                    if objective.needs_clean_pass:
                        inputs.append(teacher.features_through(clean_mel, enhancer))
                    features = torch.cat(inputs)
            try:
                if joint is not None:  # G's masks with their graph, and G's own objective
                    labels = batch["speaker"].to(info.device)
                    features, own = joint.inputs(
                        teacher, noisy_mel, clean_mel, labels, objective.needs_clean_pass
                    )
                activation, embedding = model(features)
                result = objective(activation, embedding, reference.activation, reference.embedding)
            except NonFiniteLossError as exc:
                names = [batch["utt"][i] for i in exc.indices]
                raise TrainingError(
                    f"non-finite loss at step {step} for utterance(s): {', '.join(names) or 'unknown'}"
                ) from None
            optimizer.zero_grad(set_to_none=True)
            if joint is None:
                result.loss.backward()
            else:
                result.stats.update(joint.backward(own, result.loss))
            if config.optim.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, config.optim.grad_clip)
                if joint is not None:  # G's gradient is clipped on its own
                    torch.nn.utils.clip_grad_norm_(joint.parameters, config.optim.grad_clip)
            optimizer.step()
            done = step + 1
            logger.advance()
            if done % config.log_every == 0 or done == steps:
                stats = {k: all_reduce_mean(v, info) for k, v in result.stats.items()}
                stats["lr"] = optimizer.param_groups[0]["lr"]
                if joint is not None:
                    stats[f"{STAT_PREFIX}lr"] = optimizer.param_groups[1]["lr"]
                logger.log(done, stats)
            if validator is not None and done % config.validation.every == 0:
                scores = validator(unwrap(model).student, enhancer)
                logger.log(done, scores, kind="val")
                if info.is_main and scores["eer"] < best:
                    best = scores["eer"]
                    _save(
                        out / "best.pt",
                        config,
                        model,
                        optimizer,
                        done,
                        model_config,
                        {**extra_now(done), "val": scores},
                    )
            if info.is_main and (done % config.checkpoint_every == 0 or done == steps):
                _save(last, config, model, optimizer, done, model_config, extra_now(done))
            step = done
    finally:
        logger.close()
    barrier(info)
    if info.is_main and step < steps:
        raise TrainingError(f"training stopped early at step {step} of {steps}: the data loader ran dry")
    if info.is_main:
        selected = out / "best.pt"
        if selected.is_file() and needs_calibration(selected, config):  # once, on the selected weights
            calibrate_checkpoint(selected, config, device=info.device, quiet=quiet, lock=False)
        atomic_write(
            out / "done.json",
            json.dumps({"steps": steps, "best_val_eer": None if best == math.inf else best}),
        )
    return last
