"""The allowed range of every config value, one table: what :func:`gradw.config.from_dict` checks
when a section is built (the section classes live in :mod:`gradw.config`, which imports this)."""

from __future__ import annotations

import math
from typing import Any


def _positive(v: Any) -> bool:
    return v > 0


def _at_least_one(v: Any) -> bool:
    return v >= 1


def _non_negative(v: Any) -> bool:
    return v >= 0


def _share(v: Any) -> bool:
    return 0.0 <= v <= 1.0


def _optional(check: Any) -> Any:
    return lambda v: v is None or check(v)


def _range(v: Any) -> bool:
    return len(v) == 2 and v[0] <= v[1]


def _each_at_least_one(v: Any) -> bool:
    return len(v) > 0 and all(x >= 1 for x in v)


def _named(v: Any) -> bool:
    return bool(str(v).strip())


_STEPS = (_at_least_one, "an integer >= 1")
_COUNT = (_non_negative, "an integer >= 0")
_SHARE = (_share, "a number in [0, 1]")
_WEIGHT = (_non_negative, "a number >= 0")
_POSITIVE = (_positive, "a number > 0")
_RUN_FOLDER = (_named, "a folder name (not empty)")
_RUN = {
    "out_dir": _RUN_FOLDER,
    "seed": _COUNT,
    "threads": _COUNT,
    "checkpoint_every": _STEPS,
    "log_every": _STEPS,
}

#: section class name (gradw.config) -> field -> (check, what is allowed); choices that other
#: layers own (loss schemes, taps, network names) are checked where those are known, still before
#: any work starts
RULES: dict[str, dict[str, tuple[Any, str]]] = {
    "SnrConfig": {
        "noise": (_range, "a range [low, high] in dB with low <= high"),
        "music": (_range, "a range [low, high] in dB with low <= high"),
        "babble_talkers": (
            lambda v: _range(v) and v[0] >= 1,
            "a range [low, high] of talkers, 1 <= low <= high",
        ),
        "babble_snrs": (lambda v: len(v) > 0, "a non-empty list of SNRs in dB"),
    },
    "DataConfig": {
        "crop_seconds": _POSITIVE,
        "clean_fraction": _SHARE,
        "reverb_prob": _SHARE,
        "num_workers": _COUNT,
        "max_speakers": (_optional(_at_least_one), "an integer >= 1 (or null for all)"),
        "category_probs": (
            lambda v: v is None or (all(p >= 0 for p in v.values()) and sum(v.values()) > 0),
            "non-negative weights per category, not all 0",
        ),
    },
    "NoiseColourConfig": {
        "prob": _SHARE,
        "tilt_db": _WEIGHT,
        "eq_db": _WEIGHT,
        "bands": _COUNT,
    },
    "SpeakerConfig": {"centroid_crop_seconds": _POSITIVE},
    "EnhancerConfig": {
        "base_width": _STEPS,
        "blocks": (_each_at_least_one, "a non-empty list of integers >= 1"),
        "up_layers": (_each_at_least_one, "a non-empty list of integers >= 1"),
        "min_gain_db": (_optional(lambda v: v <= 0), "a floor in dB <= 0 (or null for none)"),
    },
    "LossConfig": {
        "temperature": _POSITIVE,
        "clip": _POSITIVE,
        "embedding_weight": _WEIGHT,
        "keep_weight": _WEIGHT,
    },
    "OptimConfig": {
        "lr": _POSITIVE,
        "warmup_steps": _COUNT,
        "steps": _STEPS,
        "batch_size": _STEPS,
        "grad_clip": (_optional(_positive), "a number > 0 (or null for none)"),
    },
    "ValidationConfig": {
        "every": (_non_negative, "an integer >= 0 (0: no validation)"),
        "max_trials": (lambda v: v >= 2, "an integer >= 2"),
    },
    "ScoreNormConfig": {
        "kind": (lambda v: v in ("asnorm",), "asnorm"),
        "top_n": (lambda v: v >= 2, "an integer >= 2 (the spread of one score is 0)"),
        "utterances": _STEPS,
    },
    "CalibrationConfig": {
        "categories": (lambda v: len(v) > 0, "a non-empty list of categories"),
        "snrs": (lambda v: all(math.isfinite(x) for x in v), "a list of finite SNRs in dB"),
        "clip": (
            lambda v: all(lo < hi for lo, hi in v.values()),
            "a mapping measure: [low, high] with low < high",
        ),
        "max_trials": (lambda v: v >= 2, "an integer >= 2"),
    },
    "FusionConfig": {
        "categories": (lambda v: len(v) > 0, "a non-empty list of categories"),
        "snrs": (lambda v: all(math.isfinite(x) for x in v), "a list of finite SNRs in dB"),
        "clip": (
            lambda v: len(v) == 2 and all(math.isfinite(x) for x in v) and v[0] < v[1],
            "[low, high] in dB with low < high",
        ),
        "utterances": (lambda v: v >= 2, "an integer >= 2 (a target pair needs two)"),
        "max_trials": (lambda v: v >= 2, "an integer >= 2"),
    },
    "TrainConfig": _RUN,
    "SpeakerModelConfig": {
        "base_width": _STEPS,
        "embedding_dim": _STEPS,
        "blocks": (_each_at_least_one, "a non-empty list of integers >= 1"),
    },
    "AamConfig": {
        "scale": _POSITIVE,
        "margin": _WEIGHT,
        "margin_ramp_start": _COUNT,
        "margin_ramp_end": _COUNT,
    },
    "SpeakerTrainConfig": {
        **_RUN,
        "augment_prob": _SHARE,
        "reverb_prob": _SHARE,
        "crop_seconds": _POSITIVE,
        "num_workers": _COUNT,
    },
    "AdapterConfig": {"rank": _COUNT, "alpha": _POSITIVE},
    "AdaptLossConfig": {
        "embedding_weight": _WEIGHT,
        "tap_weight": _WEIGHT,
        "temperature": _POSITIVE,
        "clip": _POSITIVE,
        "consistency_weight": _WEIGHT,
        "anchor_weight": _WEIGHT,
        "relation_weight": _WEIGHT,
    },
    "JointConfig": {"objective_weight": _WEIGHT, "lr": _POSITIVE},
    "AdaptConfig": _RUN,
    "EvaluationConfig": {
        "seed": _COUNT,
        "threads": _COUNT,
        "n_boot": _STEPS,
        "max_trials": (_optional(lambda v: v >= 2), "an integer >= 2 (or null for all)"),
        "batch_seconds": (_optional(_non_negative), "a number >= 0 (or null for the device's default)"),
        "save_every": _STEPS,
        "systems": (lambda v: len(v) > 0, "a non-empty list of systems"),
        "figure_format": (lambda v: v in ("png", "pdf", "svg"), "png, pdf or svg"),
        "dpi": (lambda v: 50 <= v <= 1200, "an integer in [50, 1200]"),
        "window_seconds": (
            _optional(lambda v: v >= 1),
            "a number of seconds >= 1 (or null to embed every utterance whole)",
        ),
    },
    "DemoConfig": {
        "n_boot": _STEPS,
        "eval_processes": _STEPS,
        "max_trials": (_optional(lambda v: v >= 2), "an integer >= 2 (or null for all)"),
    },
}


def first_out_of_range(config: Any, prefix: str = "") -> str | None:
    """The first value of one section (not its sub-sections) outside its range, as a message
    naming the key, the value and what is allowed; None when every value is allowed."""
    for name, (check, allowed) in RULES.get(type(config).__name__, {}).items():
        value = getattr(config, name)
        try:
            ok = bool(check(value))
        except TypeError:
            ok = False
        if not ok:
            return f"{prefix}{name}: must be {allowed}, got {value!r}"
    return None
