"""Joint training of G and the student (``gradw adapt`` with ``joint.enabled``).

Without ``joint``, ``gradw adapt`` trains the student on the output of a *frozen* G (or on the
noisy input). With it, G trains too, in the same steps. One step, after the teacher's clean pass
of :mod:`gradw.training.adapt`::

    mel power (B or 2B, F, T): the noisy crops, then the clean ones (when the consistency term
        is on)  --E.features-->  plain features  --G (train mode)-->  masks M (B or 2B, F, T)
    (a) G's own objective, the ``loss`` section of ``gradw train`` against the frozen teacher E:
        objective(M[:B], clean mel, noisy mel, speaker labels)
    (b) the student's loss (:mod:`gradw.losses.adaptation`) on E.features(mel, M)
    G:        objective_weight x grad (a)  +  grad (b)       (conflict=project: PCGrad of the two)
    student:  grad (b) only ((a) does not reach it)
    one Adam: group 0 the student's trained weights (optim.lr), group 1 G's (joint.lr), both
        warmed up over optim.warmup_steps

G starts from ``enhancer_checkpoint`` when one is given, else from ``joint.enhancer`` at its
identity start (a constant mask, which E's mean normalisation removes: at step 0 the student sees
the noisy input, as without G). Checkpoints hold G as adapt holds a frozen G (``extra.enhancer``:
weights, constructor arguments, provenance; ``checkpoint``/``digest`` name the G it started from,
or are None), plus ``joint_steps``, the steps G was trained jointly: the evaluation, ``@fuse``,
the Python API and calibration read them unchanged. Resuming restores G's weights from
``last.pt`` and its Adam state with the student's (one optimizer).

Only one process: a run with several refuses ``joint.enabled`` (its two hand-combined gradients
would need to be averaged over ranks by hand).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gradw.audio.frontends import frontend_name
from gradw.checkpoint import load_checkpoint
from gradw.config import AdaptConfig, ConfigError
from gradw.data.dirs import SpeechDir
from gradw.losses.objective import EnhancementObjective, ObjectiveResult
from gradw.losses.pcgrad import CONFLICT_MODES, combine_gradients
from gradw.losses.weights import GRADIENT_SCHEMES
from gradw.models.speaker import SpeakerNetwork
from gradw.models.unet import MaskUNet
from gradw.training.distributed import DistInfo
from gradw.training.enhancer import build_enhancer, build_objective, check_loss_section, give_head
from gradw.training.loop import TrainingError, seed_everything

__all__ = ["JointEnhancer", "check_joint_config", "initial_enhancer"]

#: the prefix of G's values in the training log (its objective's stats and the PCGrad stats)
STAT_PREFIX = "enhancer_"


def check_joint_config(config: AdaptConfig) -> None:
    """Refuse a ``joint`` section that cannot work, naming the key (before any work): an unknown
    conflict mode or loss scheme always; when enabled, also ``joint.loss.conflict`` other than
    ``none`` (``joint.conflict`` is the one that applies), a conflict treatment without G's own
    objective and a new G without its identity start."""
    joint = config.joint
    if joint.conflict not in CONFLICT_MODES:
        raise ConfigError(
            f"joint.conflict: unknown mode {joint.conflict!r} (expected one of {', '.join(CONFLICT_MODES)})"
        )
    if joint.enabled and joint.loss.conflict != "none":
        raise ConfigError(
            f"joint.loss.conflict={joint.loss.conflict}: G's objective is one gradient here; "
            "joint.conflict=project treats its conflict with the student's loss"
        )
    check_loss_section(joint.loss, "joint.loss")
    if not joint.enabled:
        return
    if joint.conflict != "none" and not joint.objective_weight > 0:
        raise ConfigError(
            f"joint.conflict={joint.conflict} combines G's own objective with the student's loss: "
            "it needs joint.objective_weight > 0"
        )
    if config.enhancer_checkpoint is None and joint.enhancer.init_bias is None:
        raise ConfigError(
            "joint.enhancer.init_bias: a G trained with the student starts at its identity start "
            "(set a number, e.g. 0.0) or from enhancer_checkpoint"
        )


def initial_enhancer(
    config: AdaptConfig,
    teacher: SpeakerNetwork,
    loaded: MaskUNet | None,
    record: dict[str, Any] | None,
) -> tuple[MaskUNet, dict[str, Any]]:
    """G at the start of joint training, trainable, and its provenance.

    Args:
        config: the adapt config (``joint.enhancer`` builds G when ``loaded`` is None).
        teacher: E (its front-end sets G's number of mel bands and names the mel grid).
        loaded: G read from ``enhancer_checkpoint`` (by
            :func:`gradw.training.adapt.load_frozen_enhancer`), or None.
        record: what adapt keeps of that G, or None.

    Returns:
        (G with gradients on, in train mode; its provenance: ``speaker``, ``frontend``, ``step``,
        ``checkpoint`` and ``digest`` of the G it started from, the last two None for a new G).
        A new G's weights depend on ``config.seed`` alone.
    """
    if loaded is not None and record is not None:
        base = {k: v for k, v in record.items() if k not in ("model", "model_config")}
        return loaded.requires_grad_(True).train(), base
    seed_everything(config.seed)
    enhancer = build_enhancer(config.joint.enhancer, teacher.frontend.n_mels)
    speaker = config.speaker
    base = {
        "speaker": {"name": speaker.name, "checkpoint": speaker.checkpoint, "tap": speaker.tap},
        "frontend": frontend_name(teacher.frontend),
        "step": 0,
        "checkpoint": None,
        "digest": None,
    }
    return enhancer.train(), base


def saved_enhancer(last: Path, joint: bool) -> dict[str, Any] | None:
    """G's weights in ``last.pt`` when the run resumed was a joint run, checked against
    ``joint`` (whether this one is).

    Raises:
        TrainingError: the saved run and this one differ in ``joint.enabled``.
    """
    stored = load_checkpoint(last, kind="adapted")["extra"].get("enhancer") or {}
    was_joint = "joint_steps" in stored
    if was_joint != joint:
        raise TrainingError(
            f"{last} was written with joint.enabled={str(was_joint).lower()}: "
            f"resume it with the same setting (this run has joint.enabled={str(joint).lower()})"
        )
    return stored.get("model") if joint else None


class JointEnhancer:
    """G trained with the student: its masks for the student's inputs, its own objective, how its
    two gradients combine, and its record for checkpoints.

    Args:
        enhancer: G (trainable; from :func:`initial_enhancer`).
        base: G's provenance (from :func:`initial_enhancer`).
        objective: G's own objective against the frozen teacher
            (:func:`gradw.training.enhancer.build_objective`).
        objective_weight: weight of that objective in G's loss (>= 0).
        conflict: ``none`` (sum) or ``project`` (PCGrad, :func:`gradw.losses.pcgrad.combine_gradients`).
    """

    def __init__(
        self,
        enhancer: MaskUNet,
        base: dict[str, Any],
        objective: EnhancementObjective,
        objective_weight: float = 1.0,
        conflict: str = "none",
    ) -> None:
        if conflict not in CONFLICT_MODES:
            raise ValueError(
                f"unknown conflict mode {conflict!r}: expected one of {', '.join(CONFLICT_MODES)}"
            )
        self.enhancer = enhancer
        self.base = dict(base)
        self.objective = objective
        self.objective_weight = float(objective_weight)
        self.conflict = conflict
        self.parameters = [p for p in enhancer.parameters() if p.requires_grad]

    @classmethod
    def from_config(
        cls,
        config: AdaptConfig,
        teacher: SpeakerNetwork,
        enhancer: MaskUNet,
        base: dict[str, Any],
        speech: SpeechDir,
        cache_dir: Path,
        info: DistInfo,
    ) -> JointEnhancer:
        """As ``config.joint`` describes it; the teacher gets a head over the training speakers
        of ``speech`` first when G's loss scheme needs labels (class centroids, cached in
        ``cache_dir``, as ``gradw train`` does)."""
        joint = config.joint
        if joint.loss.scheme in GRADIENT_SCHEMES:
            give_head(teacher, speech, config.speaker, cache_dir, info)
            teacher.freeze()
        try:
            objective = build_objective(teacher, joint.loss)
        except ValueError as exc:
            raise ConfigError(f"joint.loss: {exc}") from None
        return cls(enhancer, base, objective, joint.objective_weight, joint.conflict)

    def param_group(self, lr: float) -> dict[str, Any]:
        """G's Adam parameter group at learning rate ``lr``."""
        return {"params": self.parameters, "lr": lr}

    def restore(self, weights: dict[str, Tensor]) -> None:
        """Load G's weights (and BatchNorm statistics) saved by :meth:`record`."""
        self.enhancer.load_state_dict(weights)

    def inputs(
        self,
        teacher: SpeakerNetwork,
        noisy_mel: Tensor,
        clean_mel: Tensor,
        labels: Tensor | None,
        clean_pass: bool,
    ) -> tuple[Tensor, ObjectiveResult]:
        """The student's input through G, and G's own objective.

        Args:
            teacher: the frozen E (its front-end).
            noisy_mel / clean_mel: (B, F, T) mel power of the noisy and clean crops.
            labels: (B,) training speaker indices (used by the gradient schemes).
            clean_pass: whether the student also sees the clean crops (the consistency term).

        Returns:
            ((B or 2B, F, T) features: the noisy crops', then the clean ones', masked by G and
            carrying G's graph; G's objective on the noisy half).

        Raises:
            NonFiniteLossError: G's objective is not finite (naming the batch items).
        """
        mel = torch.cat([noisy_mel, clean_mel]) if clean_pass else noisy_mel
        with torch.no_grad():
            plain = teacher.features(mel)
        self.enhancer.train()
        mask = self.enhancer(plain)
        own = self.objective(mask[: noisy_mel.shape[0]], clean_mel, noisy_mel, labels)
        return teacher.features(mel, mask), own

    def backward(self, own: ObjectiveResult, student_loss: Tensor) -> dict[str, float]:
        """Put the gradients into ``.grad``: the student's from ``student_loss`` alone, G's from
        ``objective_weight x own.loss`` and ``student_loss`` (summed, or combined by PCGrad where
        they conflict). Returns G's values for the log, prefixed ``enhancer_``: its objective's
        stats and, with ``project``, ``grad_cosine`` and ``grad_conflict``."""
        first = {"loss": own.stats["loss"]}  # G's loss first: the progress line shows the first few
        stats = {STAT_PREFIX + k: v for k, v in {**first, **own.stats}.items()}
        weighted = self.objective_weight * own.loss
        if self.conflict == "none":
            (weighted + student_loss).backward()
            return stats
        got = torch.autograd.grad(weighted, self.parameters, retain_graph=True, allow_unused=True)
        student_loss.backward()  # the student's .grad, and G's share of it
        own_grads = [
            torch.zeros_like(p) if g is None else g for p, g in zip(self.parameters, got, strict=True)
        ]
        via_student = [torch.zeros_like(p) if p.grad is None else p.grad for p in self.parameters]
        combined, combine_stats = combine_gradients(own_grads, via_student, self.conflict)
        for param, grad in zip(self.parameters, combined, strict=True):
            param.grad = grad
        stats.update({STAT_PREFIX + k: v for k, v in combine_stats.items()})
        return stats

    def record(self, joint_steps: int) -> dict[str, Any]:
        """G as a checkpoint of ``gradw adapt`` holds it (``extra.enhancer``): weights on the CPU,
        constructor arguments, provenance, and ``joint_steps``, the steps trained with the student."""
        return {
            **self.base,
            "model": {k: v.detach().cpu().clone() for k, v in self.enhancer.state_dict().items()},
            "model_config": self.enhancer.config,
            "joint_steps": int(joint_steps),
        }
