"""Stage 1: train a speaker network E (``gradw train-speaker``).

A ResNet (the paper's ResNet34, or a narrow one for the CPU) on speaker-classification crops with
additive angular margin softmax (AAM): the margin ramps linearly from 0 to its final value, the
learning rate warms up linearly, and speed-perturbed copies of each speaker count as new classes.
The cosine head is kept in the checkpoint: stage 2 takes gradients of its true-speaker logit.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor
from torch.nn import functional as F

from gradw.checkpoint import save_checkpoint
from gradw.config import ConfigError, SpeakerTrainConfig, check_config, to_dict
from gradw.data.datasets import SpeakerCrops
from gradw.data.dirs import AugmentDir, SpeechDir
from gradw.fileio import atomic_write
from gradw.models.loading import build_resnet
from gradw.training.distributed import (
    DistInfo,
    all_reduce_mean,
    barrier,
    cleanup_distributed,
    setup_distributed,
    unwrap,
)
from gradw.training.loop import (
    RunLogger,
    TrainingError,
    open_run,
    run_lock,
    seed_everything,
    set_learning_rate,
    set_threads,
    start_training,
    step_loader,
)

SPEEDS = (1.0, 0.9, 1.1)  # class k + i * S is speaker k at SPEEDS[i]; the original speed comes first


def margin_at(step: int, config: SpeakerTrainConfig) -> float:
    """The AAM margin at ``step``: 0 before the ramp, linear during it, final after."""
    aam = config.aam
    if aam.margin_ramp_end <= aam.margin_ramp_start:  # no ramp: a step from 0 to final at the start
        return aam.margin if step >= aam.margin_ramp_start else 0.0
    frac = (step - aam.margin_ramp_start) / (aam.margin_ramp_end - aam.margin_ramp_start)
    return aam.margin * min(1.0, max(0.0, frac))


def aam_logits(cosine: Tensor, labels: Tensor, margin: float, scale: float) -> Tensor:
    """Additive angular margin: s * cos(theta_y + m) for the target class, s * cos(theta_k) otherwise.

    Args:
        cosine: (B, K) cosine similarities in [-1, 1].
        labels: (B,) target classes.
    Returns:
        (B, K) logits. Past theta = pi - m the target logit follows cos(theta) - m sin(m) so that
        it keeps decreasing with theta (the usual "easy margin = False" treatment).
    """
    cos_y = cosine.gather(1, labels[:, None]).clamp(-1 + 1e-7, 1 - 1e-7)
    sin_y = torch.sqrt(1.0 - cos_y * cos_y)
    with_margin = cos_y * torch.cos(torch.tensor(margin)) - sin_y * torch.sin(torch.tensor(margin))
    threshold = torch.cos(torch.tensor(torch.pi - margin))
    fallback = cos_y - torch.sin(torch.tensor(torch.pi - margin)) * margin
    target = torch.where(cos_y > threshold, with_margin, fallback)
    return scale * cosine.scatter(1, labels[:, None], target)


def speaker_crops(config: SpeakerTrainConfig, speech: SpeechDir, augment: AugmentDir | None) -> SpeakerCrops:
    """Stage 1's training set, as ``config`` describes it (crops, speed perturbation, noise and
    rooms)."""
    return SpeakerCrops(
        speech,
        crop_seconds=config.crop_seconds,
        speed_perturb=SPEEDS if config.speed_perturb else None,
        augment=augment,
        augment_prob=config.augment_prob,
        reverb_prob=config.reverb_prob,
        seed=config.seed,
    )


def class_names(speakers: list[str], speeds: tuple[float, ...]) -> list[str]:
    """Names of the classes: speaker ids, then speed-perturbed copies (``spk@0.9``)."""
    names = list(speakers)
    for speed in speeds[1:]:
        names.extend(f"{spk}@{speed:g}" for spk in speakers)
    return names


def train_speaker(config: SpeakerTrainConfig, resume: bool = False, quiet: bool = False) -> Path:
    """Train E; returns the final checkpoint (``OUT/last.pt``)."""
    check_config(config)
    info = setup_distributed()
    try:
        with run_lock(config.out_dir, info):
            return _train(config, resume, quiet, info)
    finally:
        cleanup_distributed()


def _train(config: SpeakerTrainConfig, resume: bool, quiet: bool, info: DistInfo) -> Path:

    set_threads(config.threads)
    seed_everything(config.seed)
    # the data and the network are checked before the run folder exists: bad input leaves nothing
    speech = SpeechDir.load(config.train)
    augment = AugmentDir.load(config.augment) if config.augment else None
    speeds = SPEEDS if config.speed_perturb else (1.0,)
    dataset = speaker_crops(config, speech, augment)
    speakers = speech.speakers
    model_config = {**to_dict(config.model), "num_classes": dataset.num_classes, "scale": config.aam.scale}
    try:
        model = build_resnet(model_config).to(info.device)
    except ValueError as exc:  # an unknown front-end
        raise ConfigError(f"model: {exc}") from None
    out = Path(config.out_dir)
    last = open_run(out, config, resume, info)
    model, optimizer, start_step = start_training(model, config.optim.lr, last, "speaker", resume, info)

    steps = config.optim.steps
    loader = step_loader(
        dataset, config.optim.batch_size, config.seed, start_step, steps, info, config.num_workers
    )
    extra = {"speakers": class_names(speakers, speeds), "train_dir": str(config.train)}
    logger = RunLogger(
        out, steps, start_step, info, quiet=quiet, tensorboard=config.tensorboard, description="train E"
    )
    step = start_step
    try:
        for step, batch in zip(range(start_step, steps), loader, strict=False):
            set_learning_rate(optimizer, config.optim.lr, step, config.optim.warmup_steps)
            wav = batch["wav"].to(info.device)
            labels = batch["speaker"].to(info.device)
            model.train()
            net = unwrap(model)
            embedding = model(net.features(net.mel_power(wav)))
            cosine = net.head.cosine(embedding)
            margin = margin_at(step, config)
            logits = aam_logits(cosine, labels, margin, config.aam.scale)
            loss = F.cross_entropy(logits, labels)
            if not torch.isfinite(loss):
                raise TrainingError(f"non-finite loss at step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.optim.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
            optimizer.step()
            done = step + 1
            logger.advance()
            if done % config.log_every == 0 or done == steps:
                accuracy = (cosine.argmax(1) == labels).float().mean().item()
                logger.log(
                    done,
                    {
                        "loss": all_reduce_mean(loss.item(), info),
                        "accuracy": all_reduce_mean(accuracy, info),
                        "margin": margin,
                        "lr": optimizer.param_groups[0]["lr"],
                    },
                )
            if info.is_main and (done % config.checkpoint_every == 0 or done == steps):
                save_checkpoint(
                    last,
                    kind="speaker",
                    model=unwrap(model),
                    step=done,
                    config=to_dict(config),
                    model_config=model_config,
                    optimizer=optimizer,
                    extra=extra,
                )
            step = done
    finally:
        logger.close()
    barrier(info)
    if info.is_main:
        atomic_write(out / "done.json", json.dumps({"steps": steps, "classes": dataset.num_classes}))
    return last
