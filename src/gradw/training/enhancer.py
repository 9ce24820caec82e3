"""Stage 2: train the mask U-Net G against a fixed speaker network E (``gradw train``).

One step (the paper's Appendix A)::

    clean, noisy (B, N) --E.mel_power--> (B, F, T) mel power
    noisy features (B, F, T) --G--> mask M (B, F, T)
    loss = objective(M, clean mel, noisy mel, speaker labels)   # Grad-W / Equal-W / ...
    Adam step on G only (E frozen; gradients flow through E to M)
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from gradw.audio.frontends import frontend_name
from gradw.checkpoint import save_checkpoint
from gradw.config import (
    RANDOM_WEIGHTS,
    ConfigError,
    EnhancerConfig,
    LossConfig,
    SpeakerConfig,
    TrainConfig,
    check_config,
    to_dict,
)
from gradw.data.dirs import AugmentDir, SpeechDir, check_duration
from gradw.fileio import atomic_path, atomic_write, blocking_file
from gradw.losses.objective import (
    OBJECTIVE_SCHEMES,
    EnhancementObjective,
    NonFiniteLossError,
    ObjectiveResult,
)
from gradw.losses.pcgrad import CONFLICT_MODES, combine_gradients
from gradw.losses.weights import check_weight_options
from gradw.models.loading import RESNET_PRESETS, SPEAKER_NETWORKS, load_speaker_network
from gradw.models.speaker import CosineHead, SpeakerNetwork
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
    all_reduce_tensors,
    barrier,
    cleanup_distributed,
    setup_distributed,
    unwrap,
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

# ---------------------------------------------------------------------------------------------
# the fixed speaker network and its head


def _dir_fingerprint(speech: SpeechDir) -> str:
    digest = hashlib.sha256()
    for utt in sorted(speech.wavs):
        digest.update(f"{utt} {speech.wavs[utt]} {speech.utt2spk[utt]}\n".encode())
    return digest.hexdigest()[:16]


def centroid_embeddings(
    speaker: SpeakerNetwork, speech: SpeechDir, crop_seconds: float, device: torch.device, batch: int = 16
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Clean embeddings of every utterance (centre crop) -> ((N, D), labels (N,), speakers)."""
    from gradw.audio.io import read_audio

    speakers = speech.speakers
    index = {spk: i for i, spk in enumerate(speakers)}
    utts = sorted(speech.wavs)
    crop = int(crop_seconds * 16000)
    embeddings, labels = [], []
    for start in range(0, len(utts), batch):
        chunk = utts[start : start + batch]
        wavs = []
        for utt in chunk:
            wav = read_audio(speech.wavs[utt])
            check_duration(utt, speech.wavs[utt], len(wav), speaker.min_samples, "the speaker network E")
            if len(wav) > crop:
                offset = (len(wav) - crop) // 2
                wav = wav[offset : offset + crop]
            wavs.append(wav)
        length = min(len(w) for w in wavs)  # equal lengths within a batch: crop to the shortest
        stacked = torch.from_numpy(np.stack([w[:length] for w in wavs])).to(device)
        with torch.no_grad():
            embeddings.append(speaker.embed(stacked).cpu())
        labels.extend(index[speech.utt2spk[u]] for u in chunk)
    return torch.cat(embeddings), torch.tensor(labels), speakers


def attach_centroid_head(
    speaker: SpeakerNetwork,
    speech: SpeechDir,
    crop_seconds: float,
    cache_dir: Path,
    info: DistInfo,
    cache_key: str,
) -> None:
    """Give E a cosine head whose class y is the mean clean embedding of training speaker y.

    Computed once per (network, training list, crop) and cached in ``cache_dir``.
    """
    from gradw.models.campplus import centroid_head

    key = hashlib.sha256(f"{cache_key}|{_dir_fingerprint(speech)}|{crop_seconds}".encode()).hexdigest()[:16]
    path = cache_dir / f"centroids-{key}.pt"
    if info.is_main and not path.is_file():
        embeddings, labels, speakers = centroid_embeddings(speaker, speech, crop_seconds, info.device)
        head = centroid_head(embeddings, labels, len(speakers))
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save({"weight": head.weight.detach().cpu(), "speakers": speakers}, tmp)
    barrier(info)
    state = torch.load(path, map_location="cpu", weights_only=True)
    head = CosineHead(state["weight"].shape[1], state["weight"].shape[0])
    head.weight.data.copy_(state["weight"])
    speaker.head = head


def load_fixed_speaker(config: TrainConfig) -> SpeakerNetwork:
    """E as ``config.speaker`` names it (no head attached yet).

    Raises:
        ConfigError: an unknown tap, or an unreadable or unfitting checkpoint (naming it).
    """
    cfg = config.speaker
    try:
        return load_speaker_network(cfg.name, checkpoint=cfg.checkpoint, tap=cfg.tap)
    except ValueError as exc:  # CheckpointError included
        raise ConfigError(f"speaker: {exc}") from None


def prepare_speaker(
    config: TrainConfig, speech: SpeechDir, info: DistInfo, speaker: SpeakerNetwork | None = None
) -> SpeakerNetwork:
    """E, frozen, on the device, with a head indexed like the training speakers (``speaker``: E
    already loaded by :func:`load_fixed_speaker`)."""
    speaker = (speaker if speaker is not None else load_fixed_speaker(config)).to(info.device)
    cache_dir = Path(config.cache_dir) if config.cache_dir else Path(config.out_dir) / "cache"
    give_head(speaker, speech, config.speaker, cache_dir, info)
    return speaker.freeze()


def give_head(
    speaker: SpeakerNetwork, speech: SpeechDir, cfg: SpeakerConfig, cache_dir: Path, info: DistInfo
) -> None:
    """Give E (on ``info.device``) a head indexed like the training speakers of ``speech`` unless
    it has one: class centroids (:func:`attach_centroid_head`), cached in ``cache_dir``."""
    speakers = speech.speakers
    recorded = getattr(speaker, "speakers", None)
    if speaker.head is None or recorded is None or list(recorded[: len(speakers)]) != speakers:
        # no head, or a head over other classes: build one from clean class centroids
        attach_centroid_head(
            speaker,
            speech,
            cfg.centroid_crop_seconds,
            cache_dir,
            info,
            cache_key=f"{cfg.name}|{cfg.checkpoint}",
        )
        speaker.to(info.device)


# ---------------------------------------------------------------------------------------------
# the enhancer


def build_enhancer(config: TrainConfig | EnhancerConfig, n_mels: int) -> MaskUNet:
    """G as the config (a train config, or its ``enhancer`` section) describes it."""
    cfg = config if isinstance(config, EnhancerConfig) else config.enhancer
    return MaskUNet(
        n_mels=n_mels,
        base_width=cfg.base_width,
        blocks=tuple(cfg.blocks),
        up_layers=tuple(cfg.up_layers),
        init_bias=cfg.init_bias,
        min_gain_db=cfg.min_gain_db,
    )


def build_objective(speaker: SpeakerNetwork, loss: LossConfig) -> EnhancementObjective:
    """G's objective against E as a ``loss`` section describes it (``loss.conflict`` is applied
    by :func:`backward`, not here)."""
    return EnhancementObjective(
        speaker,
        scheme=loss.scheme,
        temperature=loss.temperature,
        clip=loss.clip,
        embedding_weight=loss.embedding_weight,
        keep_weight=loss.keep_weight,
    )


# ---------------------------------------------------------------------------------------------
# training


def _make_dataset(config: TrainConfig, speech: SpeechDir, augment: AugmentDir):
    from gradw.data.datasets import EnhancementTriples

    data = config.data
    snr = {
        "noise": tuple(data.snr.noise),
        "music": tuple(data.snr.music),
        "babble": {"talkers": tuple(data.snr.babble_talkers), "snrs": tuple(data.snr.babble_snrs)},
    }
    return EnhancementTriples(
        speech,
        augment,
        crop_seconds=data.crop_seconds,
        snr=snr,
        category_probs=data.category_probs,
        clean_fraction=data.clean_fraction,
        reverb_prob=data.reverb_prob,
        seed=config.seed,
        preload=data.preload,
        noise_colour=dataclasses.asdict(data.noise_colour),
    )


def _save(
    path: Path,
    config: TrainConfig,
    enhancer: nn.Module,
    optimizer: torch.optim.Optimizer,
    step: int,
    extra: dict[str, Any],
) -> None:
    model = unwrap(enhancer)
    save_checkpoint(
        path,
        kind="enhancer",
        model=model,
        step=step,
        config=to_dict(config),
        model_config=model.config,
        optimizer=optimizer,
        extra=extra,
    )


def backward(
    result: ObjectiveResult, enhancer: nn.Module, conflict: str = "none", info: DistInfo | None = None
) -> dict[str, float]:
    """Put the loss gradient into G's ``.grad``; returns stats for the log.

    ``conflict="none"`` (or no embedding term): plain backward of the loss (DDP averages it over
    ranks). ``"project"``: the gradients of the activation term and of the embedding term are
    taken separately, each averaged over ranks (so the global batch decides, as with one
    process; G's forward then runs under DDP's ``no_sync``), and combined by
    :func:`gradw.losses.pcgrad.combine_gradients` (PCGrad where they conflict); the stats
    ``grad_cosine`` and ``grad_conflict`` say how often and how much they disagree.
    """
    if conflict == "none" or "embedding" not in result.terms:
        result.loss.backward()
        return {}
    info = info or DistInfo()
    params = [p for p in enhancer.parameters() if p.requires_grad]

    def grads(term: Tensor, retain: bool) -> list[Tensor]:
        got = torch.autograd.grad(term, params, retain_graph=retain, allow_unused=True)
        return all_reduce_tensors(
            [torch.zeros_like(p) if g is None else g for p, g in zip(params, got, strict=True)], info
        )

    feature = grads(result.terms["feature"], retain=True)
    embedding = grads(result.terms["embedding"], retain=False)
    combined, stats = combine_gradients(feature, embedding, conflict)
    for param, grad in zip(params, combined, strict=True):
        param.grad = grad
    return stats


def check_loss_config(config: TrainConfig) -> None:
    """Refuse a config that cannot work, naming the key (before any work): every value's range
    (:func:`gradw.config.check_config`), an unknown loss scheme or speaker network, a cache_dir
    that cannot be a folder, loss options that cannot work together, and a ResNet E without
    weights."""
    check_config(config)
    check_calibration_config(config)
    check_loss_section(config.loss)
    blocker = blocking_file(config.cache_dir) if config.cache_dir else None
    if blocker is not None:
        raise ConfigError(f"cache_dir: {blocker} exists and is not a folder")
    if config.speaker.name not in SPEAKER_NETWORKS:
        raise ConfigError(
            f"speaker.name: unknown speaker network {config.speaker.name!r} "
            f"(choose from {', '.join(SPEAKER_NETWORKS)})"
        )
    if config.speaker.name in RESNET_PRESETS and not config.speaker.checkpoint:
        raise ConfigError(
            f"speaker.checkpoint: {config.speaker.name} has no weights of its own: give its checkpoint "
            f"(gradw train-speaker), or speaker.checkpoint={RANDOM_WEIGHTS} for random weights on purpose"
        )


def check_loss_section(loss: LossConfig, prefix: str = "loss") -> None:
    """Refuse a ``loss`` section (of G's objective) that cannot work, naming the key under
    ``prefix``: an unknown scheme or conflict mode, weight options that do not fit the scheme, a
    conflict treatment without the embedding term."""
    if loss.scheme not in OBJECTIVE_SCHEMES:
        raise ConfigError(
            f"{prefix}.scheme: unknown scheme {loss.scheme!r} "
            f"(expected one of {', '.join(OBJECTIVE_SCHEMES)})"
        )
    try:
        scheme = "equal" if loss.scheme == "spectral" else loss.scheme
        check_weight_options(scheme, loss.temperature, loss.clip)
    except ValueError as exc:
        raise ConfigError(f"{prefix}: {exc}") from None
    if loss.conflict not in CONFLICT_MODES:
        raise ConfigError(
            f"{prefix}.conflict: unknown mode {loss.conflict!r} (expected one of {', '.join(CONFLICT_MODES)})"
        )
    if loss.conflict != "none" and not loss.embedding_weight > 0:
        raise ConfigError(
            f"{prefix}.conflict={loss.conflict} combines the activation and embedding terms: "
            f"it needs {prefix}.embedding_weight > 0"
        )


def train_enhancer(config: TrainConfig, resume: bool = False, quiet: bool = False) -> Path:
    """Train G; returns the path of the final checkpoint (``OUT/last.pt``).

    Checkpoints: ``last.pt`` every ``checkpoint_every`` steps and at the end (atomic), and
    ``best.pt`` on the best validation EER when validation is on; at the end, ``best.pt`` gets the
    calibration of the ``calibration`` section (:mod:`gradw.training.calibrate`).
    """
    check_loss_config(config)
    info = setup_distributed()
    try:
        with run_lock(config.out_dir, info):
            return _train(config, resume, quiet, info)
    finally:
        cleanup_distributed()


def _train(config: TrainConfig, resume: bool, quiet: bool, info: DistInfo) -> Path:
    set_threads(config.threads)
    seed_everything(config.seed)
    # the data is checked before the run folder exists: bad data leaves nothing behind
    speech = SpeechDir.load(config.data.train)
    if config.data.max_speakers is not None:
        speech = speech.spread_speakers(config.data.max_speakers)
    augment = AugmentDir.load(config.data.augment)
    # E, then the validation data (the same E object, which prepare_speaker gives its head), are
    # checked before the run folder exists too: a bad name, tap, checkpoint or list leaves nothing
    network = load_fixed_speaker(config).to(info.device)
    validator = Validator.from_config(config, network, info.device)
    if validator is not None:
        check_calibration_data(config)
    out = Path(config.out_dir)
    last = open_run(out, config, resume, info)
    speaker = prepare_speaker(config, speech, info, network)
    # G's initial weights depend on the seed alone, not on what preparing E consumed (a cached or a
    # freshly computed head draws different amounts of randomness)
    seed_everything(config.seed)
    enhancer = build_enhancer(config, speaker.frontend.n_mels).to(info.device)
    enhancer, optimizer, start_step = start_training(
        enhancer, config.optim.lr, last, "enhancer", resume, info
    )

    project = config.loss.conflict != "none"
    objective = build_objective(speaker, config.loss)
    dataset = _make_dataset(config, speech, augment)
    steps = config.optim.steps
    loader = step_loader(
        dataset, config.optim.batch_size, config.seed, start_step, steps, info, config.data.num_workers
    )
    extra = {
        "speaker": {
            "name": config.speaker.name,
            "checkpoint": config.speaker.checkpoint,
            "tap": config.speaker.tap,
        },
        "frontend": frontend_name(speaker.frontend),
        "train_speakers": len(speech.spk2utt),
        # what the evaluation checks its test noise against (content fingerprints, not paths)
        "augment_fingerprints": augment_fingerprints(augment),
    }
    logger = RunLogger(
        out, steps, start_step, info, quiet=quiet, tensorboard=config.tensorboard, description="train G"
    )
    best = math.inf
    step = start_step
    try:
        for step, batch in zip(range(start_step, steps), loader, strict=False):
            set_learning_rate(optimizer, config.optim.lr, step, config.optim.warmup_steps)
            clean = batch["clean"].to(info.device)
            noisy = batch["noisy"].to(info.device)
            labels = batch["speaker"].to(info.device)
            with torch.no_grad():
                clean_mel = speaker.mel_power(clean)
                noisy_mel = speaker.mel_power(noisy)
                noisy_features = speaker.features(noisy_mel)
            enhancer.train()
            # gradients combined by hand (loss.conflict) are averaged over ranks by hand, not by DDP
            with enhancer.no_sync() if project and info.distributed else contextlib.nullcontext():
                mask = enhancer(noisy_features)
                try:
                    result = objective(mask, clean_mel, noisy_mel, labels)
                except NonFiniteLossError as exc:
                    names = [batch["utt"][i] for i in exc.indices]
                    raise TrainingError(
                        f"non-finite loss at step {step} for utterance(s): {', '.join(names) or 'unknown'}"
                    ) from None
                optimizer.zero_grad(set_to_none=True)
                result.stats.update(backward(result, enhancer, config.loss.conflict, info))
            if config.optim.grad_clip:
                torch.nn.utils.clip_grad_norm_(enhancer.parameters(), config.optim.grad_clip)
            optimizer.step()
            done = step + 1
            logger.advance()
            if done % config.log_every == 0 or done == steps:
                stats = {k: all_reduce_mean(v, info) for k, v in result.stats.items()}
                stats["lr"] = optimizer.param_groups[0]["lr"]
                logger.log(done, stats)
            if validator is not None and done % config.validation.every == 0:
                scores = validator(unwrap(enhancer))
                logger.log(done, scores, kind="val")
                if info.is_main and scores["eer"] < best:
                    best = scores["eer"]
                    _save(out / "best.pt", config, enhancer, optimizer, done, {**extra, "val": scores})
            if info.is_main and (done % config.checkpoint_every == 0 or done == steps):
                _save(last, config, enhancer, optimizer, done, extra)
            step = done
    finally:
        logger.close()
    barrier(info)
    if info.is_main and step < steps:
        raise TrainingError(f"training stopped early at step {step} of {steps}: the data loader ran dry")
    if info.is_main:
        selected = out / "best.pt"
        if selected.is_file() and needs_calibration(selected, config):  # once, on the selected weights
            calibrate_checkpoint(
                selected, config, speaker=speaker, device=info.device, quiet=quiet, lock=False
            )
        atomic_write(
            out / "done.json",
            json.dumps({"steps": steps, "best_val_eer": None if best == math.inf else best}),
        )
    return last
