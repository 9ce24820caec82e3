"""Fitting and storing a checkpoint's quality-aware fusion (``gradw fuse``).

The weight ``w(q) = sigmoid(a + b * clip(q, lo, hi))`` between the system's embedding and the
unenhanced one (:mod:`gradw.evaluation.fusion`) is fitted on the training speakers x the training
noise over the config's ``fusion`` grid, then judged on the validation speakers x the validation
noise: the mean EER over the grid of the system alone, the unenhanced embedding alone, ``@fuse``
and the fitted weight are stored with it (``extra["fusion"]["extra"]["validation"]``) and printed.
Writing it changes that entry only (every other key of the checkpoint is kept as loaded), to a
copy or in place, atomically, as :mod:`gradw.training.calibrate` stores a calibration.

A calibration stored in the checkpoint was fitted on the system's own scores, not the fused
ones: fit it again on the fused system when its LLRs matter.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import torch

from gradw.checkpoint import CheckpointError, load_checkpoint
from gradw.config import AdaptConfig, ConfigError, TrainConfig, to_dict
from gradw.data.dirs import AugmentDir, SpeechDir
from gradw.data.lists import DataError
from gradw.evaluation.calibration_fit import grid_conditions
from gradw.evaluation.fusion import FusionWeights, fit_fusion
from gradw.evaluation.fusion_fit import collect, compare, training_trials, validation_trials
from gradw.fileio import atomic_path
from gradw.progress import Progress
from gradw.runlock import RunLock
from gradw.training.calibrate import KINDS, check_grid, check_output, checkpoint_inputs, checkpoint_system

__all__ = ["check_fusion_config", "fuse_checkpoint"]


def check_fusion_config(config: TrainConfig | AdaptConfig) -> None:
    """Refuse a ``fusion`` section or data that cannot work, naming the key or folder (before any
    work): unknown categories, noisy categories without SNRs, missing training or validation data,
    noise folders that lack a category of the grid.

    Raises:
        ConfigError: naming the key.
        DataError: naming the folder and the missing list(s).
    """
    cfg = config.fusion
    check_grid("fusion", cfg.categories, cfg.snrs)
    noisy = sorted({c for c in cfg.categories if c != "clean"})
    for key, what in (
        ("train", "fitted on the training speakers"),
        ("val", "judged on the validation speakers"),
    ):
        if not getattr(config.data, key):
            raise ConfigError(f"data.{key}: the fusion is {what}; give their data folder")
    roots = {
        "data.augment": config.data.augment,
        "data.val_augment": config.data.val_augment or config.data.augment,
    }
    for key, root in roots.items():
        if not noisy:
            break
        if not root:
            raise ConfigError(f"{key}: the fusion grid has noisy conditions; give the noise folder")
        augment = AugmentDir.load(root)
        missing = [c for c in noisy if c not in augment]
        if missing:
            raise DataError(f"{augment.root}: the fusion grid needs the missing list(s) {', '.join(missing)}")


def fuse_checkpoint(
    checkpoint: str | Path,
    config: TrainConfig | AdaptConfig,
    output: str | Path | None = None,
    *,
    device: torch.device | str = "cpu",
    quiet: bool = True,
) -> FusionWeights:
    """Fit the fusion ``config`` asks for on ``checkpoint``, judge it on validation, store it.

    Args:
        checkpoint: a checkpoint of ``gradw train`` (G, scored by the E it was trained against)
            or of ``gradw adapt`` (its student against the original network).
        config: the config whose ``fusion``, ``data`` (``train``, ``augment``, ``val``,
            ``val_augment``) and ``seed`` say what to fit.
        output: where to write the checkpoint with its fusion; None (or the checkpoint's own path):
            update ``checkpoint`` in place (holding its folder's run lock).
        device: where the networks run.
        quiet: no progress lines.

    Returns:
        The weights stored, their ``extra`` holding the provenance and the validation figures.

    Raises:
        CheckpointError: an unreadable checkpoint or one of another kind.
        ConfigError: a bad ``fusion`` section, missing data, an output that is another input.
        DataError: bad lists or audio (named).
        RunLockError: in place, while another run holds the checkpoint's folder.
    """
    path = Path(checkpoint)
    target = path if output is None else Path(output)
    in_place = path.is_file() and target.resolve() == path.resolve()
    with RunLock(path.parent, "fusion") if in_place else contextlib.nullcontext():
        return _fuse(path, config, target, torch.device(device), quiet)


def _fuse(
    path: Path, config: TrainConfig | AdaptConfig, target: Path, device: torch.device, quiet: bool
) -> FusionWeights:
    state = load_checkpoint(path)
    if state["kind"] not in KINDS:
        raise CheckpointError(
            f"{path} holds a {state['kind']} model: fuse a checkpoint of gradw train or gradw adapt"
        )
    check_fusion_config(config)
    check_output(target, checkpoint_inputs(state))
    cfg = config.fusion
    lo, hi = cfg.clip
    conditions = grid_conditions(cfg.categories, cfg.snrs)
    system, _ = checkpoint_system(path, state, config.seed, device, fuse=True)

    def log(line: str) -> None:
        if not quiet:
            print(f"[fuse] {path}: {line}", file=sys.stderr, flush=True)

    train = SpeechDir.load(config.data.train)
    val = SpeechDir.load(config.data.val)
    train_trials = training_trials(train, cfg.utterances, cfg.max_trials, config.seed)
    val_trials = validation_trials(val, cfg.max_trials, config.seed)
    bar = Progress("fusion", unit="utt-cond", quiet=quiet)
    with bar:
        fit_data = collect(
            system, train, train_trials, config.data.augment, conditions, config.seed, bar.update
        )
        log(fit_data.describe("fit on training"))
        a, b, fitted_eer = fit_fusion(
            fit_data.e_sys, fit_data.e_base, fit_data.q, fit_data.pairs, fit_data.labels, lo, hi
        )
        val_augment = config.data.val_augment or config.data.augment
        val_data = collect(system, val, val_trials, val_augment, conditions, config.seed, bar.update)
        log(val_data.describe("judged on validation"))
    weights = FusionWeights(a, b, float(lo), float(hi))
    extra = {
        "fitted_on": fit_data.describe(
            f"training speakers of {config.data.train} x noise of {config.data.augment}"
        ),
        "judged_on": val_data.describe(f"validation speakers of {config.data.val} x noise of {val_augment}"),
        "criterion": "mean EER (%) over the conditions",
        "request": {
            **to_dict(cfg),
            "train": config.data.train,
            "augment": config.data.augment,
            "val": config.data.val,
            "val_augment": val_augment,
            "seed": config.seed,
        },
        "training": {**compare(fit_data, weights), "qfuse": fitted_eer},
        "validation": compare(val_data, weights),
    }
    weights = FusionWeights(a, b, float(lo), float(hi), extra=extra)
    state["extra"]["fusion"] = weights.to_dict()
    with atomic_path(target, fsync=True) as tmp:
        torch.save(state, tmp)
    log(f"stored in {target} ({weights.describe()})")
    return weights
