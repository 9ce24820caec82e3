"""``gradw evaluate``: EER / minDCF of systems across SNRs and noise types.

The run is an ``evaluate`` config section (:class:`gradw.config.EvaluationConfig`): from a preset
(``--config``), from the flags below, and from ``KEY=VALUE`` overrides, in that order of priority
(the last wins)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gradw.cli.common import FORMATS, dpi_value

#: flag destination -> config key, for flags whose value is used as it is
_PLAIN = (
    "test", "out", "augment", "rooms", "scorer", "scorer_checkpoint", "scorer_tap", "trials", "max_trials",
    "clean_enroll", "seed", "n_boot", "cache_dir", "threads", "batch_seconds", "save_every",
    "figure_format", "dpi",
    "window_seconds",
)  # fmt: skip


def _comma_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _snr_values(text: str) -> list[float]:
    try:
        return [float(v) for v in _comma_list(text) if v != "clean"]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") from None


def _snrs_text(text: str) -> str:
    """An argparse type: ``--snrs`` as given, once it is known to parse (a bad list is a usage error)."""
    _snr_values(text)
    return text


def evaluation_config(args: argparse.Namespace) -> Any:
    """The :class:`~gradw.config.EvaluationConfig` that the preset, flags and overrides describe."""
    from gradw.config import (
        ROOT_KEY,
        ConfigError,
        EvaluationConfig,
        apply_overrides,
        from_dict,
        load_section,
        split_root,
    )

    data: dict[str, Any] = {}
    given = vars(args)
    overrides = list(given.get("overrides") or [])
    if getattr(args, "config", None):
        # the preset's evaluate section with ${data.root} expanded (data.root=PATH moves it)
        root, overrides = split_root(overrides)
        moved = [] if root is None else [f"{ROOT_KEY}={root}"]
        data = dict(load_section(args.config, "evaluate", moved, required=False))
    data.update({key: given[key] for key in _PLAIN if key in given})
    if "systems" in given:
        data["systems"] = _comma_list(given["systems"])
    if "categories" in given:
        data["categories"] = _comma_list(given["categories"])
    if "snrs" in given:
        data["snrs"] = _snr_values(given["snrs"])
        if "clean" in _comma_list(given["snrs"]):
            data["clean"] = True
    if given.get("clean"):
        data["clean"] = True
    config = from_dict(EvaluationConfig, apply_overrides(data, overrides), "evaluate.")
    for key in ("test", "out"):
        if not getattr(config, key):
            raise ConfigError(f"evaluate.{key} is required (--{key} or evaluate.{key}=...)")
    return config


def cmd_evaluate(args: argparse.Namespace) -> int:
    from gradw.evaluation.grid import evaluate
    from gradw.evaluation.report.tables import summary_table

    config = evaluation_config(args)
    rows = evaluate(config, quiet=args.quiet)
    if rows:
        print(summary_table(rows), end="")
        print(f"report: {Path(config.out) / 'report.md'}")
    return 0


def register(sub: Any) -> None:
    s = argparse.SUPPRESS  # only the flags that are given override the preset
    ev = sub.add_parser(
        "evaluate",
        help="EER / minDCF of systems across SNRs and noise types",
        description="Evaluate systems on a trial list under every category x SNR condition. The run "
        "is the 'evaluate' section of --config (if given), then the flags, then KEY=VALUE overrides.",
    )
    ev.add_argument("--config", default=None, help="a preset or YAML file with an 'evaluate' section")
    ev.add_argument("--test", default=s, help="test speech directory (wav.scp, utt2spk, trials)")
    ev.add_argument("--augment", default=s, help="augmentation directory with the test noise pools")
    ev.add_argument(
        "--systems", default=s, help="comma-separated: noisy, NAME:CHECKPOINT, rnnoise, ... (default noisy)"
    )
    ev.add_argument(
        "--snrs",
        type=_snrs_text,
        default=s,
        help="SNRs in dB, 'clean' adds clean (default clean,20,15,10,5,0,-5,-10,-15,-20)",
    )
    ev.add_argument("--categories", default=s, help="default noise,music,babble; empty for clean only")
    ev.add_argument("--clean", action="store_true", default=s, help="also evaluate clean speech")
    ev.add_argument(
        "--rooms", action="store_true", default=s, help="also evaluate every condition with reverberation"
    )
    ev.add_argument("--scorer", default=s, help="speaker network E that scores the trials (default campplus)")
    ev.add_argument("--scorer-checkpoint", default=s)
    ev.add_argument("--scorer-tap", default=s)
    ev.add_argument("--trials", default=s, help="trial list name in the test directory, or a path")
    ev.add_argument("--max-trials", type=int, default=s, help="seeded subset of the trials")
    ev.add_argument(
        "--clean-enroll", action="store_true", default=s, help="enrolment side clean, test side corrupted"
    )
    ev.add_argument("--seed", type=int, default=s)
    ev.add_argument("--n-boot", type=int, default=s, help="bootstrap resamples for the intervals (1000)")
    ev.add_argument("--cache-dir", default=s, help="embedding cache (default OUT/cache)")
    ev.add_argument("--threads", type=int, default=s)
    ev.add_argument(
        "--batch-seconds",
        type=float,
        default=s,
        help="most audio per batch, renderings of one length only (default: 60 on a GPU; "
        "on the CPU one at a time, measured faster there)",
    )
    ev.add_argument("--save-every", type=int, default=s, help="save progress every N utterances (200)")
    ev.add_argument("--figure-format", default=s, choices=FORMATS, help="the plots' format (png)")
    ev.add_argument("--dpi", type=dpi_value, default=s, help="resolution of PNG plots (110; 50-1200)")
    ev.add_argument(
        "--window-seconds",
        type=float,
        default=s,
        help="embed a longer utterance as the mean of its windows' embeddings, bounding memory "
        "(default 30; window_seconds=null embeds every utterance whole)",
    )
    ev.add_argument("--out", default=s, help="output directory (required)")
    ev.add_argument("--quiet", action="store_true")
    ev.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides, e.g. n_boot=200")
    ev.set_defaults(func=cmd_evaluate)
