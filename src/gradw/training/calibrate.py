"""Calibrating a selected checkpoint (``best.pt``): at the end of training, by ``gradw calibrate``,
and by ``gradw demo`` for runs trained before their config asked for the calibration they hold.

The calibration is fitted on the validation speakers x the validation noise over the grid of the
config's ``calibration`` section (:func:`gradw.evaluation.calibration_fit.fit_on_validation`),
and stored as ``extra["calibration"]`` with the identity of the speaker network it was fitted
with (``scorer``) and the request it answers (``request``: the grid, the quality measures, the
validation data, the seed), so that a later run can tell whether it is the one its config asks
for (:func:`needs_calibration`). Writing it changes that entry only: every other key of the
checkpoint is kept as loaded, and the file is replaced atomically.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from gradw.checkpoint import CheckpointError, load_checkpoint, read_torch_file
from gradw.config import AdaptConfig, CalibrationConfig, ConfigError, TrainConfig, to_dict
from gradw.data.conditions import CONDITION_CATEGORIES
from gradw.data.dirs import AugmentDir, SpeechDir
from gradw.data.lists import DataError
from gradw.evaluation.calibration import Calibration
from gradw.evaluation.calibration_fit import build_cohort, cohort_size, fit_on_validation, grid_conditions
from gradw.evaluation.quality import QualityFunctions
from gradw.evaluation.systems import System, SystemSpec, load_adapted_system, load_system
from gradw.fileio import atomic_path, blocking_file
from gradw.models.loading import load_speaker_network, weights_identity
from gradw.models.speaker import SpeakerNetwork
from gradw.progress import Progress
from gradw.runlock import RunLock

__all__ = [
    "calibrate_checkpoint",
    "calibration_request",
    "check_calibration_config",
    "check_output",
    "checkpoint_inputs",
    "checkpoint_system",
    "check_calibration_data",
    "check_score_norm_data",
    "needs_calibration",
    "quality_functions",
]

#: what the calibration of a checkpoint kind reads from a config
KINDS = {"enhancer": TrainConfig, "adapted": AdaptConfig}


def quality_functions(cfg: CalibrationConfig) -> QualityFunctions | None:
    """The quality measure functions the section asks for, or None (``quality: []``).

    Raises:
        ConfigError: an unknown measure, a clip range of a measure not used, a bad range.
    """
    if not cfg.quality:
        if cfg.clip:
            raise ConfigError("calibration.clip: clip ranges given, but calibration.quality lists no measure")
        return None
    stray = sorted(set(cfg.clip) - set(cfg.quality))
    if stray:
        raise ConfigError(
            f"calibration.clip: a range for {', '.join(stray)}, which calibration.quality does not list"
        )
    try:
        return QualityFunctions.build(cfg.quality, cfg.clip, cfg.interactions)
    except ValueError as exc:
        key = "calibration.clip" if "clip range" in str(exc) else "calibration.quality"
        raise ConfigError(f"{key}: {exc}") from None


def check_grid(section: str, categories: Sequence[str], snrs: Sequence[float]) -> None:
    """Refuse a grid of conditions (``categories`` x ``snrs`` of the config section ``section``)
    that names an unknown category, or noisy categories without SNRs.

    Raises:
        ConfigError: naming ``section.categories`` or ``section.snrs``.
    """
    unknown = [c for c in categories if c not in CONDITION_CATEGORIES]
    if unknown:
        raise ConfigError(
            f"{section}.categories: unknown category {unknown[0]!r} "
            f"(expected some of {', '.join(CONDITION_CATEGORIES)})"
        )
    if any(c != "clean" for c in categories) and not snrs:
        raise ConfigError(f"{section}.snrs: the noisy categories need at least one SNR")


def check_calibration_config(config: TrainConfig | AdaptConfig) -> None:
    """Refuse a ``calibration`` section that cannot work, naming the key (before any work)."""
    cfg = config.calibration
    check_grid("calibration", cfg.categories, cfg.snrs)
    quality_functions(cfg)


def check_score_norm_data(config: TrainConfig | AdaptConfig) -> None:
    """Refuse a score normalisation whose cohort cannot be built: no training data, or a
    ``top_n`` larger than the cohort its training speakers give (before any work).

    Raises:
        ConfigError: naming the key.
        DataError: bad training lists (named).
    """
    norm = config.calibration.score_norm
    if norm is None:
        return
    if not config.data.train:
        raise ConfigError(
            "data.train: calibration.score_norm embeds its cohort from the training speakers; "
            "give their data folder"
        )
    size = cohort_size(SpeechDir.load(config.data.train), norm.utterances, norm.per_speaker)
    if norm.top_n > size:
        entries = "speakers" if norm.per_speaker else "utterances"
        raise ConfigError(
            f"calibration.score_norm.top_n: {norm.top_n} is more than the cohort's {size} entries "
            f"({entries} of {config.data.train})"
        )


def check_calibration_data(config: TrainConfig | AdaptConfig) -> None:
    """Refuse validation noise that lacks a category the calibration grid needs, or a cohort that
    cannot be built (:func:`check_score_norm_data`), before any work.

    Raises:
        DataError: naming the folder and the missing list(s).
        ConfigError: a bad score normalisation (naming the key).
    """
    check_score_norm_data(config)
    cfg = config.calibration
    wanted = sorted({c for c in cfg.categories if c != "clean"} | ({"rirs"} if cfg.rooms else set()))
    if not wanted:
        return
    root = config.data.val_augment or config.data.augment
    augment = AugmentDir.load(root)
    missing = [c for c in wanted if c not in augment]
    if missing:
        raise DataError(
            f"{augment.root}: the calibration grid needs the missing list(s) {', '.join(missing)}"
        )


#: the lists that say which validation utterances, speakers and trials a calibration is fitted on
_VAL_LISTS = ("wav.scp", "utt2spk", "trials")


def validation_lists_digest(folder: str | Path | None) -> str | None:
    """A digest of a validation folder's lists (``wav.scp``, ``utt2spk``, ``trials``): a folder
    rebuilt with other speakers under the same path gives another digest. None without a folder."""
    if not folder:
        return None
    digest = hashlib.sha256()
    for name in _VAL_LISTS:
        path = Path(folder) / name
        digest.update(name.encode() + b"\0")
        digest.update(path.read_bytes() if path.is_file() else b"(absent)")
    return digest.hexdigest()[:16]


def calibration_request(config: TrainConfig | AdaptConfig) -> dict[str, Any]:
    """What a config asks the calibration for: its ``calibration`` section, the validation data
    (its paths and the digest of its lists, so a validation split rebuilt in place asks for a new
    calibration) and the seed (plain types; stored with the calibration)."""
    return {
        **to_dict(config.calibration),
        "val": config.data.val,
        "val_lists": validation_lists_digest(config.data.val),
        "val_augment": config.data.val_augment or config.data.augment,
        "seed": config.seed,
    }


def needs_calibration(checkpoint: str | Path, config: TrainConfig | AdaptConfig) -> bool:
    """Whether ``checkpoint`` lacks the calibration ``config`` asks for (none stored, or one
    fitted for another request or by another version of the quality measures)."""
    extra = read_torch_file(checkpoint).get("extra", {})
    stored = extra.get("calibration") if isinstance(extra, dict) else None
    if not stored:
        return True
    calibration = Calibration.from_dict(stored)
    try:
        calibration.functions  # noqa: B018 - another version of the measures is refused here
    except ValueError:
        return True
    return calibration.extra.get("request") != calibration_request(config)


def check_output(output: Path, inputs: list[Path]) -> None:
    """Refuse an output that is an input other than the checkpoint itself (which is an in-place
    update), a folder, or a path under a file."""
    if output.is_dir():
        raise ConfigError(f"{output} is a folder: name the checkpoint file to write")
    blocker = blocking_file(output.parent)
    if blocker is not None:
        raise ConfigError(f"{output}: {blocker} exists and is not a folder")
    for path in inputs:
        if output.resolve() == path.resolve():
            raise ConfigError(f"the output {output} is an input of the calibration ({path}): choose another")


def checkpoint_inputs(state: dict[str, Any]) -> list[Path]:
    """The files a checkpoint of ``gradw train`` or ``gradw adapt`` reads when loaded (its speaker
    network's weights, its G's checkpoint), those that exist."""
    record = state["extra"].get("speaker") or {}
    base = state["model_config"].get("speaker") if state["kind"] == "adapted" else record
    read = [(base or {}).get("checkpoint")] + [((state["extra"].get("enhancer") or {}).get("checkpoint"))]
    return [Path(p) for p in read if isinstance(p, str) and Path(p).is_file()]


def checkpoint_system(
    path: Path,
    state: dict[str, Any],
    seed: int,
    device: torch.device,
    speaker: SpeakerNetwork | None = None,
    fuse: bool = False,
) -> tuple[System, str | None]:
    """The system a checkpoint of ``gradw train`` or ``gradw adapt`` (``state``, as loaded from
    ``path``) scores with: G with the E it was trained against (``speaker`` when already loaded),
    or the adapted student; with ``fuse``, as ``@fuse``. Returns it and the scorer's weights
    identity (``NAME|DIGEST``; None for a student, which is its own scorer)."""
    spec = SystemSpec("fusion" if fuse else "calibration", "mask", path, fuse)
    if state["kind"] == "adapted":
        return load_adapted_system(spec, device), None
    record = state["extra"].get("speaker") or {}
    name, weights = record.get("name", "campplus"), record.get("checkpoint")
    network = (
        speaker
        if speaker is not None
        else load_speaker_network(name, checkpoint=weights, tap=record.get("tap"))
    )
    scorer = weights_identity(name, weights, seed)
    return load_system(spec, network.eval().to(device), f"{scorer}|{record.get('tap')}", device), scorer


def calibrate_checkpoint(
    checkpoint: str | Path,
    config: TrainConfig | AdaptConfig,
    output: str | Path | None = None,
    *,
    speaker: SpeakerNetwork | None = None,
    device: torch.device | str = "cpu",
    quiet: bool = True,
    lock: bool = True,
) -> Calibration:
    """Fit the calibration ``config`` asks for on ``checkpoint`` and store it.

    Args:
        checkpoint: a checkpoint of ``gradw train`` (G, scored by the E it was trained against)
            or of ``gradw adapt`` (its student, behind its G when it has one).
        config: the config whose ``calibration``, ``data.val``, ``data.val_augment`` and ``seed``
            say what to fit (its ``speaker`` section is not used: E is the checkpoint's own).
        output: where to write the calibrated checkpoint; None (or the checkpoint's own path):
            update ``checkpoint`` in place.
        speaker: G's E already loaded (the training's), instead of loading it again.
        device: where the networks run.
        quiet: no progress lines.
        lock: in place, hold the checkpoint's folder (:class:`~gradw.runlock.RunLock`) meanwhile;
            False when the caller already holds it (the training that wrote it).

    Returns:
        The calibration stored.

    Raises:
        CheckpointError: an unreadable checkpoint or one of another kind.
        ConfigError: a bad ``calibration`` section, no validation data, or an output that is
            another input.
        RunLockError: in place, while another run holds the checkpoint's folder.
        DataError: bad validation lists or audio (named).
    """
    path = Path(checkpoint)
    target = path if output is None else Path(output)
    in_place = lock and path.is_file() and target.resolve() == path.resolve()
    with RunLock(path.parent, "calibration") if in_place else contextlib.nullcontext():
        return _calibrate(path, config, target, speaker, torch.device(device), quiet)


def _calibrate(
    path: Path,
    config: TrainConfig | AdaptConfig,
    target: Path,
    speaker: SpeakerNetwork | None,
    device: torch.device,
    quiet: bool,
) -> Calibration:
    state = load_checkpoint(path)
    kind = state["kind"]
    if kind not in KINDS:
        raise CheckpointError(
            f"{path} holds a {kind} model: calibrate a checkpoint of gradw train or gradw adapt"
        )
    check_calibration_config(config)
    if not config.data.val:
        raise ConfigError(
            "data.val: the calibration is fitted on validation speakers; give their data folder"
        )
    check_calibration_data(config)
    check_output(target, checkpoint_inputs(state))
    functions = quality_functions(config.calibration)
    conditions = grid_conditions(
        config.calibration.categories, config.calibration.snrs, config.calibration.rooms
    )
    system, scorer = checkpoint_system(path, state, config.seed, device, speaker)

    def log(line: str) -> None:
        if not quiet:
            print(f"[calibrate] {path}: {line}", file=sys.stderr, flush=True)

    # a bar on a terminal; elsewhere a line a minute and one at the end
    bar = Progress("calibration", unit="utt-cond", quiet=quiet)
    with bar:
        norm, cfg = None, config.calibration.score_norm
        if cfg is not None:
            log(f"cohort: at most {cfg.utterances} clean utterances of each speaker of {config.data.train}")
            norm = build_cohort(
                system,
                config.data.train,
                kind=cfg.kind,
                top_n=cfg.top_n,
                utterances=cfg.utterances,
                per_speaker=cfg.per_speaker,
                seed=config.seed,
                progress=bar.update,
            )
        calibration = fit_on_validation(
            system,
            config.data.val,
            config.data.val_augment or config.data.augment,
            conditions,
            functions,
            config.calibration.max_trials,
            config.seed,
            log=log,
            progress=bar.update,
            score_norm=norm,
        )
    extra = {**calibration.extra, "request": calibration_request(config)}
    if scorer is not None:
        extra["scorer"] = scorer
    calibration = replace(calibration, extra=extra)
    state["extra"]["calibration"] = calibration.to_dict()
    with atomic_path(target, fsync=True) as tmp:
        torch.save(state, tmp)
    log(f"stored in {target} ({calibration.fitted_on})")
    return calibration
