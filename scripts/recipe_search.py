#!/usr/bin/env python3
"""The first recipe search for G on the embedded corpus, and docs/recipe-search.md generated from it.

Every variant is the demo preset's train section plus overrides. Each is trained once (skipped
when done), its checkpoint chosen on the validation speakers' EER (``best.pt``), then evaluated
on the validation split (choices are made there) and, with ``--test``, on the test split (run once
per final candidate). The document is written from the runs' files alone.

Usage:
    python scripts/recipe_search.py [--variants a,b] [--test] [--root DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Collection
from pathlib import Path

from gradw.config import EvaluationConfig, TrainConfig, load_config
from gradw.data.dirs import SpeechDir
from gradw.evaluation.grid import evaluate as run_evaluation
from gradw.evaluation.report.tables import (
    format_diff_table,
    format_metric_table,
    format_summary_table,
    mean_eer_at_low_snr,
)
from gradw.evaluation.results import read_results
from gradw.losses.weights import GRADIENT_SCHEMES
from gradw.training.enhancer import train_enhancer
from gradw.training.loop import read_metrics

# Every variant starts from src/gradw/configs/demo.yaml's train section with the recipe's knobs pinned to
# the recipe of the first measurements (so that a later change of the demo preset does not change
# what a variant name means), then its own overrides.
BASE = [
    "speaker.tap=pool-input",
    "loss.scheme=gradw-norm",
    "loss.embedding_weight=0.0",
    "loss.keep_weight=0.0",
    "loss.conflict=none",
    "enhancer.init_bias=0.0",
    "enhancer.min_gain_db=null",
    "data.clean_fraction=0.3",
    "data.max_speakers=null",
    "optim.steps=600",
    "validation.every=200",
]
# name -> (overrides of BASE, what it tests)
VARIANTS: dict[str, tuple[list[str], str]] = {
    "paper-literal": (
        ["speaker.tap=front", "loss.scheme=gradw", "enhancer.init_bias=null", "data.clean_fraction=0.0"],
        "the paper's recipe as written, on CAM++: tap = the last 2-D map, literal Grad-W, default "
        "initialisation, every input noisy",
    ),
    "paper-literal-equalw": (
        ["speaker.tap=front", "loss.scheme=equal", "enhancer.init_bias=null", "data.clean_fraction=0.0"],
        "the same with uniform weights (Equal-W)",
    ),
    "demo-gradw-literal": (["loss.scheme=gradw"], "the demo recipe with the paper's literal weights"),
    "demo-gradw-norm": (
        [],
        "the demo recipe: layer-before-pooling tap, identity start, 30 % clean, gradw-norm",
    ),
    "demo-equalw": (["loss.scheme=equal"], "the demo recipe with uniform weights (Equal-W)"),
    "demo-gradw-norm-emb": (
        ["loss.embedding_weight=400.0"],
        "the demo recipe plus the embedding term (cosine distance to the clean embedding, weight 400: "
        "equal to the activation L1 at the start)",
    ),
    "demo-gradw-norm-emb-project": (
        ["loss.embedding_weight=400.0", "loss.conflict=project"],
        "the embedding term with conflicting gradients projected (PCGrad), the paper's future direction",
    ),
    "demo-gradw-norm-floor": (
        ["enhancer.min_gain_db=-12.0"],
        "the demo recipe with the mask floored at -12 dB (limits suppression, where artefacts come from)",
    ),
    "demo-gradw-norm-keep": (
        ["loss.keep_weight=100.0"],
        "the demo recipe plus a penalty on attenuating cells the noise left intact (clean and noisy "
        "within 3 dB), weight 100",
    ),
    "demo-gradw-norm-keep10": (
        ["loss.keep_weight=10.0"],
        "the suppression penalty at weight 10 (at 100 it held the mask constant: G stayed the identity)",
    ),
    "demo-equalw-keep10": (
        ["loss.scheme=equal", "loss.keep_weight=10.0"],
        "Equal-W with the suppression penalty at weight 10: the paper's ablation of the keep10 recipe",
    ),
    "demo-spectral": (
        ["loss.scheme=spectral"],
        "the same G and mask trained on the log-mel L1 to the clean features, no network in the loss: "
        "the signal-level baseline",
    ),
    "demo-front": (
        ["speaker.tap=front"],
        "the demo recipe with the tap at CAM++'s front (32x10xT, the last 2-D map): tap depth",
    ),
    "demo-gradw-norm-spk12": (
        ["data.max_speakers=12"],
        "the demo recipe trained on 12 of the 49 speakers (spread over the sources): speaker scale",
    ),
    "demo-gradw-norm-spk24": (
        ["data.max_speakers=24"],
        "the demo recipe trained on 24 of the 49 speakers: speaker scale",
    ),
    "demo-gradw-norm-wide": (
        ["enhancer.base_width=16"],
        "the demo recipe with G twice as wide (about 4x the parameters): model scale",
    ),
    "demo-gradw-norm-long": (
        ["optim.steps=1200", "validation.every=300"],
        "the demo recipe trained twice as long (the validation curve was still moving at 600 steps)",
    ),
}
CONDITIONS = ("clean,0,-5,-10", "noise,music,babble")
ALL_NOISY = ("noise", "music", "babble")  # the categories the choice averages over
MIN_SEEDS = 2  # a recipe is chosen only on the mean of at least this many seeds


def split_seed(run: str) -> tuple[str, int]:
    """``"name"`` -> (name, 0); ``"name-s2"`` -> (name, 2): runs of other seeds carry a suffix."""
    name, _, seed = run.rpartition("-s")
    if name in VARIANTS and seed.isdigit():
        return name, int(seed)
    return run, 0


def variant_config(run: str, root: Path, out: Path) -> TrainConfig:
    """The resolved train config of a run (a variant, optionally with a ``-sN`` seed suffix)."""
    name, seed = split_seed(run)
    overrides, _ = VARIANTS[name]
    data = [
        f"data.train={root / 'train'}",
        f"data.augment={root / 'augment' / 'train'}",
        f"data.val={root / 'val'}",
        f"data.val_augment={root / 'augment' / 'test'}",
    ]
    pinned = [*data, *BASE, *overrides, f"seed={seed}", f"out_dir={out / run}"]
    return load_config(TrainConfig, "demo", pinned, section="train")


def train(name: str, out: Path, root: Path) -> Path:
    config = variant_config(name, root, out)
    run = out / name
    done = run / "done.json"
    if not (done.is_file() and json.loads(done.read_text()).get("steps") == config.optim.steps):
        print(f"training {name}", flush=True)
        train_enhancer(config, resume=(run / "last.pt").is_file(), quiet=True)
    best = run / "best.pt"
    return best if best.is_file() else run / "last.pt"


def evaluate(
    split: str,
    checkpoints: dict[str, Path],
    out: Path,
    root: Path,
    cache: Path,
    fuse: Collection[str] = (),
) -> Path:
    eval_dir = out / f"eval-{split}"
    specs = ["noisy", *(f"{n}:{p}" for n, p in checkpoints.items())]
    # the runs in ``fuse`` also with the noisy and enhanced embeddings averaged at inference
    specs += [f"{n}:{p}@fuse" for n, p in checkpoints.items() if n in fuse]
    snrs = [v for v in CONDITIONS[0].split(",") if v != "clean"]
    config = EvaluationConfig(
        test=str(root / split),
        out=str(eval_dir),
        systems=specs,
        augment=str(root / "augment" / split),  # validation speakers with validation noise
        categories=CONDITIONS[1].split(","),
        snrs=[float(v) for v in snrs],
        clean="clean" in CONDITIONS[0].split(","),
        cache_dir=str(cache),
    )
    run_evaluation(config, quiet=True)
    return eval_dir


def curves(out: Path, names: list[str], path: Path, dpi: int = 150) -> Path | None:
    """Training loss and validation EER against steps: one colour and marker per variant, one
    line style per seed, the legend outside the panels. The path's suffix sets the format."""
    try:
        from gradw.evaluation.report.plots import LINE_STYLES, new_figure, save_figure, system_styles
    except ImportError:
        return None
    try:
        fig = new_figure(12.5, 4.5)
    except ImportError:
        return None
    loss_ax, eer_ax = fig.subplots(1, 2)
    variants = list(dict.fromkeys(split_seed(n)[0] for n in names))
    styles = system_styles(variants)
    seeds = sorted({split_seed(n)[1] for n in names})
    noisy = None
    for name in names:
        variant, seed = split_seed(name)
        style = {
            "color": styles[variant]["color"],
            "ls": LINE_STYLES[seeds.index(seed) % len(LINE_STYLES)],
            "lw": 1.2,
            "label": f"{variant}, seed {seed}",
        }
        train_rows = read_metrics(out / name, "train")
        val_rows = read_metrics(out / name, "val")
        if train_rows:
            loss_ax.plot([r["step"] for r in train_rows], [r["loss"] for r in train_rows], **style)
        if val_rows:
            eer_ax.plot(
                [r["step"] for r in val_rows],
                [r["eer"] for r in val_rows],
                marker=styles[variant]["marker"],
                ms=3.5,
                **style,
            )
            if seed == seeds[0]:  # a run's validation audio follows its seed: the first seed's noisy line
                noisy = val_rows[0]["eer_noisy"]
    if noisy is not None:
        eer_ax.axhline(noisy, color="grey", linestyle="--", linewidth=0.8)
    loss_ax.set(xlabel="step", ylabel="training loss", yscale="log", title="training loss")
    eer_ax.set(xlabel="step", ylabel="mean validation EER (%)", title="validation EER (dashed: noisy)")
    for ax in (loss_ax, eer_ax):
        ax.grid(alpha=0.3)
    handles, labels = eer_ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside right upper", fontsize=7)
    return save_figure(fig, path, dpi=dpi)


def variant_means(rows: list, categories: tuple[str, ...] = ALL_NOISY) -> dict[str, dict[int, float]]:
    """variant (``+fuse`` kept) -> {seed: mean EER (%) over the conditions <= 0 dB of ``categories``}."""
    groups: dict[str, dict[int, float]] = {}
    for system, mean in mean_eer_at_low_snr(rows, categories).items():
        base, fused = system.removesuffix("+fuse"), system.endswith("+fuse")
        name, seed = split_seed(base)
        if name in VARIANTS:
            groups.setdefault(name + ("+fuse" if fused else ""), {})[seed] = mean
    return groups


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    mu = sum(values) / len(values)
    if len(values) < 2:
        return mu, 0.0
    return mu, (sum((x - mu) ** 2 for x in values) / (len(values) - 1)) ** 0.5


def is_gradient_recipe(name: str) -> bool:
    """Whether a variant trains with gradient weights (Grad-W in any form), not Equal-W."""
    overrides = (*BASE, *VARIANTS[name][0])  # the last setting wins, as in the config loader
    scheme = next((o.split("=", 1)[1] for o in reversed(overrides) if o.startswith("loss.scheme=")), "gradw")
    return scheme in GRADIENT_SCHEMES


def choose(groups: dict[str, dict[int, float]], min_seeds: int = MIN_SEEDS) -> str | None:
    """The rule, fixed before the second round of runs: the Grad-W variant (a trained recipe, not
    an inference option) with the lowest mean validation EER over at least ``min_seeds`` seeds."""
    candidates = [
        (mean_sd(list(v.values()))[0], name)
        for name, v in groups.items()
        if "+fuse" not in name and is_gradient_recipe(name) and len(v) >= min_seeds
    ]
    return min(candidates)[1] if candidates else None


def choice_section(rows: list, names: list[str]) -> list[str]:
    """Variants ranked by their mean validation EER over seeds, and the chosen recipe."""
    means = mean_eer_at_low_snr(rows, ALL_NOISY)
    groups = variant_means(rows)
    if not groups or "noisy" not in means:
        return []
    noisy = means["noisy"]
    stats = {name: mean_sd(list(v.values())) for name, v in groups.items()}
    ranked = sorted((mean, sd, name) for name, (mean, sd) in stats.items())
    lines = [
        "",
        "## The choice",
        "",
        "Variants ranked on the validation split by the mean EER over every noisy condition at or "
        f"below 0 dB, averaged over their seeds (noisy: {noisy:.2f} %). The rule, fixed before the "
        "second round of runs (the extra seeds, the suppression penalty, the scale and tap-depth "
        "variants; the first round had one seed per variant): the demo preset trains the Grad-W "
        f"variant with the lowest mean over at least {MIN_SEEDS} seeds. Equal-W variants are ranked "
        "but are the paper's ablation, which the demo trains beside the chosen recipe; `+fuse` rows "
        "are an inference option of the same checkpoints.",
        "",
        "| rank | variant | seeds | mean EER (%) | sd | rel. vs noisy (%) |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for rank, (mean, sd, name) in enumerate(ranked, 1):
        n = len(groups[name])
        spread = f"{sd:.2f}" if n > 1 else "–"
        lines.append(f"| {rank} | {name} | {n} | {mean:.2f} | {spread} | {100 * (mean / noisy - 1):+.1f} |")
    chosen = choose(groups)
    if chosen is None:
        lines += ["", f"No Grad-W variant has {MIN_SEEDS} seeds yet: nothing is chosen."]
        return lines
    lines += ["", f"Chosen on validation: **{chosen}**."]
    best = ranked[0][2]
    if best != chosen:
        lines.append(
            f"Ranked first: {best} ({len(groups[best])} seed(s)); the gap to the chosen recipe is "
            f"{stats[best][0] - stats[chosen][0]:+.2f} points."
        )
    return lines


def seed_success_line(rows: list, variant: str) -> list[str]:
    """The first criterion (noise and music <= 0 dB vs noisy) for every seed of ``variant`` run
    on these rows, and their mean: one seed's verdict is not the recipe's."""
    nm = variant_means(rows, ("noise", "music")).get(variant, {})
    noisy = mean_eer_at_low_snr(rows, ("noise", "music")).get("noisy")
    if len(nm) < 2 or noisy is None:
        return []
    rel = {seed: 100 * (m / noisy - 1) for seed, m in sorted(nm.items())}
    mean = 100 * (mean_sd(list(nm.values()))[0] / noisy - 1)
    per = ", ".join(f"s{seed}: {r:+.1f} %" for seed, r in rel.items())
    return [
        "",
        f"Noise and music <= 0 dB against noisy for each seed of {variant}: {per}; mean over the "
        f"{len(rel)} seeds {mean:+.1f} % (the bar is -30 %).",
    ]


def success_section(rows: list, system: str) -> list[str]:
    """The recipe issue's success criteria, checked for ``system`` on these rows."""
    index = {(r.system, r.condition): r for r in rows}
    if not any(r.system == system for r in rows):
        return []
    low = [
        r for r in rows if r.system == system and r.category in ("noise", "music") and r.snr_db is not None
    ]
    low = [r for r in low if r.snr_db <= 0]
    noisy_nm = mean_eer_at_low_snr(rows, ("noise", "music"))
    noisy_b = mean_eer_at_low_snr(rows, ("babble",))
    rel = 100 * (noisy_nm[system] / noisy_nm["noisy"] - 1)
    better = sum(1 for r in low if r.metrics.get("eer_diff_high", 0.0) < 0)
    babble = [r for r in rows if r.system == system and r.category == "babble"]
    babble_worse = [r.condition for r in babble if r.metrics.get("eer_diff_low", 0.0) > 0]
    clean = index.get((system, "clean")), index.get(("noisy", "clean"))
    clean_diff = clean[0].metrics["eer"] - clean[1].metrics["eer"] if all(clean) else float("nan")
    checks = [
        (f"mean EER over noise and music <= 0 dB at least 30 % below noisy's: {rel:+.1f} %", rel <= -30),
        (
            f"paired interval excludes 0 (better) in at least half of those {len(low)} conditions: {better}",
            better >= len(low) / 2,
        ),
        (
            "babble not worse than noisy (no paired interval above 0): "
            + (", ".join(babble_worse) + " worse" if babble_worse else "none worse")
            + f"; mean {noisy_b.get(system, float('nan')):.2f} vs {noisy_b.get('noisy', float('nan')):.2f} %",
            not babble_worse,
        ),
        (f"clean EER at most 0.5 points above noisy's: {clean_diff:+.2f}", clean_diff <= 0.5),
    ]
    lines = ["", f"Success criteria for **{system}** on this split:", ""]
    lines += [f"- {'met' if ok else '**not met**'}: {text}" for text, ok in checks]
    return lines


def score_section(eval_dir: Path, rows: list, conditions: tuple[str, ...]) -> list[str]:
    """Mean target and non-target cosine scores and d' per system, from the score files: where G
    hurts, does it pull the two speakers' embeddings together (non-target up) or apart?"""
    from gradw.evaluation.scoring import read_scores

    systems = list(dict.fromkeys(r.system for r in rows))
    lines = [
        "",
        "Score distributions (mean target score / mean non-target score / d' = difference of the means "
        "over the root mean variance), from the score files:",
        "",
        "| system | " + " | ".join(conditions) + " |",
        "|---|" + "---:|" * len(conditions),
    ]
    for system in systems:
        cells = []
        for condition in conditions:
            path = eval_dir / "scores" / system / f"{condition}.txt"
            if not path.is_file():
                cells.append("–")
                continue
            _, _, scores, labels = read_scores(path)
            tar, non = scores[labels], scores[~labels]
            dprime = (tar.mean() - non.mean()) / ((tar.var() + non.var()) / 2) ** 0.5
            cells.append(f"{tar.mean():.3f} / {non.mean():.3f} / {dprime:.2f}")
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    return lines


def seeds_section(rows: list) -> list[str]:
    """Mean over seeds of each variant run with several (``name``, ``name-s1``, ...)."""
    means = mean_eer_at_low_snr(rows, ALL_NOISY)
    several = {k: v for k, v in variant_means(rows).items() if len(v) > 1}
    if not several:
        return []
    lines = [
        "",
        "Seeds (mean EER over every noisy condition <= 0 dB, per seed, then mean and standard deviation "
        f"over seeds; noisy {means['noisy']:.2f} %):",
        "",
        "| variant | per seed | mean | sd |",
        "|---|---|---:|---:|",
    ]
    for name, values in sorted(several.items()):
        mu, sd = mean_sd(list(values.values()))
        per = ", ".join(f"s{seed}: {m:.2f}" for seed, m in sorted(values.items()))
        lines.append(f"| {name} | {per} | {mu:.2f} | {sd:.2f} |")
    return lines


# scale axes: the variants that differ from the demo recipe in one quantity only, and how to read
# that quantity from a run's resolved config
SCALE_AXES: dict[str, tuple[tuple[str, ...], str]] = {
    "training speakers": (("demo-gradw-norm-spk12", "demo-gradw-norm-spk24", "demo-gradw-norm"), "speakers"),
    "training steps": (("demo-gradw-norm", "demo-gradw-norm-long"), "steps"),
    "G width (channels of the first stage)": (("demo-gradw-norm", "demo-gradw-norm-wide"), "width"),
}
VOXCELEB2_SPEAKERS = 5994  # the paper's training speakers


def scale_value(name: str, quantity: str, root: Path, out: Path) -> int:
    """The scale quantity of a variant: training speakers, steps or G width."""
    config = variant_config(name, root, out)
    if quantity == "steps":
        return config.optim.steps
    if quantity == "width":
        return config.enhancer.base_width
    if config.data.max_speakers is not None:
        return config.data.max_speakers
    return len(SpeechDir.load(config.data.train, check_audio=False).speakers)


def log_fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least squares y = a + b log2(x) -> (a, b): b is the change per doubling of x."""
    xs = [math.log2(x) for x, _ in points]
    ys = [y for _, y in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return my - b * mx, b


def scale_section(rows: list, root: Path, out: Path) -> list[str]:
    """Validation EER against each scale axis, per seed and averaged, and what the speaker curve
    predicts at the paper's number of speakers."""
    all_means = variant_means(rows)
    nm_means = variant_means(rows, ("noise", "music"))
    noisy_all = mean_eer_at_low_snr(rows, ALL_NOISY).get("noisy")
    noisy_nm = mean_eer_at_low_snr(rows, ("noise", "music")).get("noisy")
    lines: list[str] = []
    for axis, (variants, quantity) in SCALE_AXES.items():
        present = [v for v in variants if v in all_means]
        if len(present) < 2 or noisy_all is None or noisy_nm is None:
            continue
        if not lines:
            lines += [
                "",
                "## Scale",
                "",
                "Validation EER (%) of the demo recipe as one quantity grows, everything else fixed; mean "
                f"over the seeds run (noisy: {noisy_all:.2f} % over every noisy condition <= 0 dB, "
                f"{noisy_nm:.2f} % over noise and music <= 0 dB).",
            ]
        lines += ["", f"**{axis}**:", "", f"| {axis} | seeds | all noisy <= 0 dB | noise + music <= 0 dB |"]
        lines.append("|---:|---:|---:|---:|")
        points_all, points_nm = [], []
        values = {name: scale_value(name, quantity, root, out) for name in present}
        for name, x in sorted(values.items(), key=lambda item: item[1]):
            seeds = all_means[name]
            points_all += [(x, y) for y in seeds.values()]
            points_nm += [(x, y) for y in nm_means.get(name, {}).values()]
            nm = mean_sd(list(nm_means[name].values()))[0] if name in nm_means else float("nan")
            lines.append(f"| {x} | {len(seeds)} | {mean_sd(list(seeds.values()))[0]:.2f} | {nm:.2f} |")
        if quantity != "speakers" or len({x for x, _ in points_all}) < 3:
            continue
        a, b = log_fit(points_all)
        a_nm, b_nm = log_fit(points_nm)
        far = math.log2(VOXCELEB2_SPEAKERS)
        pred, pred_nm = a + b * far, a_nm + b_nm * far
        lines += [
            "",
            f"A straight line in log2(speakers) through every seed's point: {b:+.2f} points per doubling "
            f"over all noisy conditions, {b_nm:+.2f} over noise and music. Extrapolated to the paper's "
            f"{VOXCELEB2_SPEAKERS:,} VoxCeleb2 speakers: {pred:.1f} % "
            f"({100 * (pred / noisy_all - 1):+.0f} % vs noisy) and {pred_nm:.1f} % on noise and music "
            f"({100 * (pred_nm / noisy_nm - 1):+.0f} % vs noisy; the issue's "
            "bar is -30 %). The fit spans a factor of "
            f"{max(x for x, _ in points_all) / min(x for x, _ in points_all):.0f} in speakers and the "
            "extrapolation a factor of "
            f"{VOXCELEB2_SPEAKERS / max(x for x, _ in points_all):.0f} beyond it, with synthetic voices "
            "standing in for real ones: it says which way the curve points, not where it ends.",
        ]
    return lines


def preset_match(names: list[str], root: Path, out: Path) -> str | None:
    """The variant whose resolved config is src/gradw/configs/demo.yaml's train section (paths aside)."""
    from dataclasses import asdict

    def recipe(config: TrainConfig) -> dict:
        d = asdict(config)
        d.pop("out_dir", None)
        d.pop("data", None)
        return d

    demo = recipe(load_config(TrainConfig, "demo", [], section="train"))
    for name in names:
        if recipe(variant_config(name, root, out)) == demo:
            return name
    return None


def curve_table(out: Path, names: list[str]) -> list[str]:
    """Mean validation EER (%) at each validation step of each run, from its training log."""
    curves = {name: {r["step"]: r["eer"] for r in read_metrics(out / name, "val")} for name in names}
    steps = sorted({step for c in curves.values() for step in c})
    if not steps:
        return []
    noisy = {n: next((r["eer_noisy"] for r in read_metrics(out / n, "val")), None) for n in names}
    lines = [
        "",
        "Mean validation EER (%) over noise, music and babble at 0 and -5 dB during training (the "
        "checkpoint kept is the lowest; the validation audio follows the run's seed, so each run has "
        "its own noisy baseline; training time: wall clock on the 2-core CPU, validation included):",
        "",
        "| run | training time (min) | noisy | " + " | ".join(f"step {s}" for s in steps) + " |",
        "|---|---:|---:|" + "---:|" * len(steps),
    ]
    for name, curve in curves.items():
        base = f"{noisy[name]:.2f}" if noisy[name] is not None else "–"
        train = read_metrics(out / name, "train")
        minutes = f"{train[-1]['time'] / 60:.1f}" if train and "time" in train[-1] else "–"
        cells = " | ".join(f"{curve[s]:.2f}" if s in curve else "–" for s in steps)
        lines.append(f"| {name} | {minutes} | {base} | {cells} |")
    return lines


def reproduce_command(names: list[str], test_names: list[str], fused: list[str]) -> str:
    """The recipe_search.py command line that trains and evaluates these runs."""
    command = f"python scripts/recipe_search.py --variants {','.join(names)}"
    everything = list(dict.fromkeys([*names, *test_names]))
    if fused:
        command += " --fuse" if set(fused) >= set(everything) else f" --fuse {','.join(fused)}"
    if test_names:
        command += " --test" + (f" --test-variants {','.join(test_names)}" if test_names != names else "")
    return command


def document(
    out: Path,
    names: list[str],
    doc: Path,
    root: Path,
    test_names: list[str] | None = None,
    fused: list[str] | None = None,
) -> None:
    lines = [
        "# The first recipe search: G alone",
        "",
        "Generated by `python scripts/recipe_search.py` from the runs in "
        f"`{out}`; nothing here is typed by hand. E = the pretrained CAM++, G trained on the embedded "
        "demo corpus (49 training speakers), batch 8 x 3 s on a 2-core CPU. Choices are made on the "
        "validation split (6 speakers never seen in training, noise files held out from training); "
        "the test split (10 other speakers) is run for the final candidates. `+fuse`: the same "
        "checkpoint with the noisy and enhanced embeddings averaged at inference. The validation audio "
        "of these runs was mixed from the test noise pool (the augmentation data had no validation "
        "split of its own yet), so its figures are not comparable with docs/experiments.md's.",
        "",
        "## Variants",
        "",
        f"Each is src/gradw/configs/demo.yaml's train section with `{' '.join(BASE)}`, then:",
        "",
        "| variant | overrides | what it tests |",
        "|---|---|---|",
    ]
    for name in dict.fromkeys(split_seed(n)[0] for n in names):
        overrides, why = VARIANTS[name]
        lines.append(f"| {name} | `{' '.join(overrides) or '(none)'}` | {why} |")
    seeds = sorted({split_seed(n)[1] for n in names} - {0})
    if seeds:
        lines += ["", f"`NAME-sK`: the same variant trained with `seed=K` (seeds {seeds})."]
    match = preset_match(names, root, out)
    lines += [
        "",
        f"The `demo` preset (src/gradw/configs/demo.yaml) is the variant **{match}**."
        if match
        else "No variant here is the `demo` preset as it stands.",
    ]
    plot = curves(out, names, doc.parent / "recipe-search" / "curves.png")
    if plot is not None:
        lines += ["", "## Training curves", "", f"![training curves]({plot.relative_to(doc.parent)})"]
    lines += curve_table(out, names)
    for split in ("val", "test"):
        eval_dir = out / f"eval-{split}"
        if not (eval_dir / "results.json").is_file():
            continue
        _, rows = read_results(eval_dir)
        lines += [
            "",
            f"## {split} split",
            "",
            "Mean EER (%) at or below 0 dB:",
            "",
            format_summary_table(rows).rstrip(),
        ]
        lines += seeds_section(rows)
        if split == "val":
            lines += choice_section(rows, names)
            lines += scale_section(rows, root, out)
        elif match is not None:
            lines += success_section(rows, match)
            lines += seed_success_line(rows, match)
        lines += score_section(eval_dir, rows, ("clean", "noise_-10", "music_-10", "babble_0"))
        lines += [
            "",
            "EER (%) per condition, 95 % bootstrap interval over speakers:",
            "",
            format_metric_table(rows, "eer").rstrip(),
            "",
            "EER change against noisy (points, paired 95 % interval, ✓ where it excludes 0):",
            "",
            format_diff_table(rows).rstrip(),
        ]
    lines += [
        "",
        "## Reproduce",
        "",
        "```bash",
        "gradw data build synthvox --preset demo --out data/synthvox-demo",
        reproduce_command(names, test_names or [], fused or []),
        "```",
        "",
    ]
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text("\n".join(lines))
    print(f"wrote {doc}")


def run_names(variants: str, seeds: list[int]) -> list[str]:
    """Comma-separated variants -> run names: a ``NAME-sK`` entry is one run, a plain ``NAME`` is
    run with every seed (``NAME`` for seed 0, ``NAME-sK`` otherwise).

    Raises:
        ValueError: an unknown variant, named.
    """
    entries = [n for n in variants.split(",") if n]
    unknown = [n for n in entries if split_seed(n)[0] not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants: {', '.join(unknown)} (known: {', '.join(VARIANTS)})")
    names: list[str] = []
    for entry in entries:
        if split_seed(entry)[0] != entry:
            names.append(entry)
        else:
            names += [entry if seed == 0 else f"{entry}-s{seed}" for seed in seeds]
    return list(dict.fromkeys(names))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="variants (NAME) or single runs of a seed (NAME-sK)"
    )
    parser.add_argument(
        "--seeds", default="0", help="seeds to train each variant with (runs NAME, NAME-s1, ...)"
    )
    parser.add_argument("--root", default="data/synthvox-demo", help="the demo corpus")
    parser.add_argument("--out", default="exp/experiments")
    parser.add_argument("--doc", default="docs/recipe-search.md")
    parser.add_argument("--test", action="store_true", help="also evaluate on the test split")
    parser.add_argument(
        "--test-variants",
        default=None,
        help="the final candidates run on the test split (default: --variants)",
    )
    parser.add_argument("--doc-only", action="store_true", help="only rewrite the document")
    parser.add_argument(
        "--fuse",
        nargs="?",
        const="",
        default=None,
        help="also evaluate with @fuse: every run, or the runs named (NAME or NAME-sK, comma-separated)",
    )
    parser.add_argument(
        "--cache-dir", default=None, help="embedding cache shared with other evaluations (default OUT/cache)"
    )
    args = parser.parse_args()
    seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    try:
        names = run_names(args.variants, seeds)
        test_names = names if args.test_variants is None else run_names(args.test_variants, seeds)
        if args.fuse is None:
            fused: list[str] = []
        else:
            fused = names + test_names if not args.fuse else run_names(args.fuse, seeds)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    out, root = Path(args.out), Path(args.root)
    if not args.doc_only:
        checkpoints = {name: train(name, out, root) for name in dict.fromkeys([*names, *test_names])}
        cache = Path(args.cache_dir) if args.cache_dir else out / "cache"
        evaluate("val", {n: checkpoints[n] for n in names}, out, root, cache, fused)
        if args.test:
            evaluate("test", {n: checkpoints[n] for n in test_names}, out, root, cache, fused)
    document(out, names, Path(args.doc), root, test_names if args.test else [], fused)
    return 0


if __name__ == "__main__":
    sys.exit(main())
