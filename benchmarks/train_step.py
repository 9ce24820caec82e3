"""Training step time, peak memory and FLOPs of G's training (``gradw train``) per preset.

Run by hand (not part of the tests)::

    python benchmarks/train_step.py                                   # demo (gradw-norm, equal) + paper
    python benchmarks/train_step.py --runs demo:gradw-norm --steps 3  # one preset, one scheme
    python benchmarks/train_step.py --runs paper:gradw --paper-batch 8 --paper-crop 5

One training step is what ``gradw.training.enhancer._train`` does per batch: E's mel power of the
clean and the noisy waveforms and the noisy features (no grad), G forward, the objective
(E to the tap on the clean and the masked noisy input; for the gradient schemes the two
logit-gradient passes of Grad-W; the weighted L1), backward (through E into the mask, then
through G), Adam. Batches are synthetic (speech-like signal plus pink/white noise at 0 dB);
the time does not depend on the content.

Presets (from ``src/gradw/configs/*.yaml``, section ``train``): ``demo`` is CAM++ (pretrained, the preset's
tap) with the preset's small G, batch 8 x 3 s; ``paper`` is ResNet34 (random weights; the paper's
VoxCeleb-trained one is not shipped) with layer4 tap, a cosine head of ``--paper-classes``
speakers (VoxCeleb2 dev: 5994), G at width 32 and full depth, 5 s crops, batch 32 if it fits in
memory (else the largest that does, estimated from a probe at batch 2, and said so).

Each (preset, scheme) runs in its own process: its peak resident memory (``ru_maxrss``) is its
own. FLOPs are counted on the warm-up step with ``torch.utils.flop_counter.FlopCounterMode``
(forward and backward of convolutions and matrix products; FFTs and element-wise work are not
counted). The dense float32 matmul rate (``--matmul-n``, best of 5) is measured in the same run,
before and after the steps, and the better of the two is the reference.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import (
    SectionFlopCounter,
    Stopwatch,
    emit_result,
    machine_summary,
    markdown_table,
    matmul_rate,
    median,
    memory_gib,
    noisy_mixture,
    parameter_count,
    peak_rss_mib,
    preset_models,
    run_child,
    set_threads,
    si,
    speech_like,
    worker_command,
)

DEFAULT_RUNS = ("demo:gradw-norm", "demo:equal", "paper:gradw")
PHASES = (
    ("front-end", "front-end (mel power, features)"),
    ("G forward", "G forward"),
    ("E to tap", "E forward to the tap (clean + masked)"),
    ("E logit gradients", "E logit-gradient passes (Grad-W)"),
    ("objective other", "rest of the objective (weights, L1, stats)"),
    ("backward E", "backward through E to the mask"),
    ("backward G", "backward through G"),
    ("Adam", "Adam (zero_grad, step)"),
)


# ---------------------------------------------------------------------------------------------
# the worker: one (preset, scheme) in this process


def synthetic_batch(batch: int, seconds: float, num_classes: int) -> dict[str, torch.Tensor]:
    """(B, N) clean and noisy (0 dB) speech-like waveforms and (B,) speaker labels."""
    clean = np.stack([speech_like(seconds, seed=2 * i) for i in range(batch)])
    noisy = np.stack([noisy_mixture(c, 0.0, seed=2 * i + 1) for i, c in enumerate(clean)])
    labels = torch.from_numpy(np.random.default_rng(0).integers(0, num_classes, size=batch))
    return {"clean": torch.from_numpy(clean), "noisy": torch.from_numpy(noisy), "speaker": labels}


class Step:
    """One training step of G, as ``gradw.training.enhancer._train`` runs it, with phase timers.

    Timers wrap E's ``to_tap`` and ``gradw.losses.objective.logit_gradient`` (the Grad-W passes)
    without changing them; a hook on the mask's gradient splits backward into E's and G's parts.
    """

    def __init__(self, preset: str, scheme: str, batch: int, crop: float, num_classes: int) -> None:
        import gradw.losses.objective as objective_module
        from gradw.losses.objective import EnhancementObjective
        from gradw.models.speaker import CosineHead

        overrides = [f"loss.scheme={scheme}", f"optim.batch_size={batch}", f"data.crop_seconds={crop}"]
        models = preset_models(preset, overrides)
        self.config = models.config
        self.speaker = models.speaker
        torch.manual_seed(1)
        self.speaker.head = CosineHead(self.speaker.embedding_dim, num_classes)
        self.speaker.freeze()
        self.enhancer = models.enhancer
        self.optimizer = torch.optim.Adam(self.enhancer.parameters(), lr=self.config.optim.lr)
        loss = self.config.loss
        self.objective = EnhancementObjective(
            self.speaker,
            scheme=loss.scheme,
            temperature=loss.temperature,
            clip=loss.clip,
            embedding_weight=loss.embedding_weight,
        )
        self.watch = Stopwatch()
        self.speaker.to_tap = self.watch.wrap("E to tap", self.speaker.to_tap)
        objective_module.logit_gradient = self.watch.wrap(
            "E logit gradients", objective_module.logit_gradient
        )
        self.batch = synthetic_batch(batch, crop, num_classes)
        self.params = {"E": parameter_count(self.speaker), "G": parameter_count(self.enhancer)}

    def __call__(self) -> float:
        """Run one step; returns its wall time in seconds."""
        watch, speaker, enhancer = self.watch, self.speaker, self.enhancer
        start = time.perf_counter()
        clean, noisy, labels = self.batch["clean"], self.batch["noisy"], self.batch["speaker"]
        with watch("front-end"), torch.no_grad():
            clean_mel = speaker.mel_power(clean)
            noisy_mel = speaker.mel_power(noisy)
            noisy_features = speaker.features(noisy_mel)
        enhancer.train()
        with watch("G forward"):
            mask = enhancer(noisy_features)
        with watch("objective"):
            result = self.objective(mask, clean_mel, noisy_mel, labels)
        self.optimizer.zero_grad(set_to_none=True)
        # backward reaches the mask once it is through E; from there on it runs through G
        mask.register_hook(lambda grad: watch.switch("backward G"))
        watch.start("backward E")
        result.loss.backward()
        watch.stop()
        with watch("Adam"):
            if self.config.optim.grad_clip:
                torch.nn.utils.clip_grad_norm_(enhancer.parameters(), self.config.optim.grad_clip)
            self.optimizer.step()
        elapsed = time.perf_counter() - start
        watch.add("step", elapsed)
        return elapsed


def worker(args: argparse.Namespace) -> None:
    """Measure one (preset, scheme) and print the RESULT line."""
    set_threads(args.threads)
    preset, scheme = args.worker.split(":")
    batch, crop, classes = args.batch, args.crop, args.classes
    step = Step(preset, scheme, batch, crop, classes)
    rss_ready = peak_rss_mib()
    with SectionFlopCounter(step.watch) as counter:  # the first warm-up step counts FLOPs
        step()
    flops = counter.get_total_flops()
    phase_flops = dict(counter.by_section)
    phase_flops["objective other"] = phase_flops.pop("objective", 0)  # the innermost section counts
    flops_g = sum(phase_flops.get(name, 0) for name in ("G forward", "backward G", "Adam"))
    for _ in range(args.warmup - 1):
        step()
    step.watch.reset()
    times = [step() for _ in range(args.steps)]
    count = max(len(times), 1)
    phases = {name: step.watch.get(name) / count for name, _ in PHASES if name != "objective other"}
    phases["objective other"] = (
        step.watch.get("objective") - step.watch.get("E to tap") - step.watch.get("E logit gradients")
    ) / count
    emit_result(
        {
            "preset": preset,
            "scheme": scheme,
            "batch": batch,
            "crop_s": crop,
            "classes": classes,
            "speaker": type(step.speaker).__name__,
            "tap": step.config.speaker.tap,
            "g_width": step.config.enhancer.base_width,
            "params": step.params,
            "times": times,
            "phases": phases,
            "flops": flops,
            "flops_g": flops_g,
            "phase_flops": phase_flops,
            "rss_ready_mib": rss_ready,
            "rss_peak_mib": peak_rss_mib(),
            "threads": torch.get_num_threads(),
        }
    )


# ---------------------------------------------------------------------------------------------
# the driver


def run_worker(script: str, run: str, batch: int, crop: float, args: argparse.Namespace, steps: int) -> dict:
    """Measure ``run`` (PRESET:SCHEME) in a fresh process; raises with its stderr on failure."""
    preset = run.split(":")[0]
    classes = args.paper_classes if preset == "paper" else args.demo_classes
    child = run_child(
        worker_command(
            script,
            "--worker",
            run,
            "--batch",
            str(batch),
            "--crop",
            str(crop),
            "--classes",
            str(classes),
            "--steps",
            str(steps),
            "--warmup",
            str(args.warmup),
            "--threads",
            str(args.threads),
        )
    )
    if child.returncode != 0 or child.result is None:
        raise RuntimeError(
            f"{run} at batch {batch} failed (exit {child.returncode}):\n{child.stderr[-3000:]}"
        )
    return child.result


def preset_shape(preset: str, args: argparse.Namespace) -> tuple[int, float]:
    """(batch, crop seconds) to measure ``preset`` at."""
    if preset == "paper":
        return args.paper_batch, args.paper_crop
    from gradw.config import TrainConfig, load_config

    config = load_config(TrainConfig, preset, section="train")
    return config.optim.batch_size, config.data.crop_seconds


def fitting_batch(
    script: str, run: str, wanted: int, crop: float, args: argparse.Namespace
) -> tuple[int, str]:
    """The largest batch <= ``wanted`` whose extrapolated peak memory fits in 90 % of the memory
    available now, from one probe step at batch 2 (so that the measurement never pushes other
    work on the machine into the OOM killer). Returns (batch, note)."""
    probe = run_worker(script, run, 2, crop, args, steps=0)
    per_item = max(probe["rss_peak_mib"] - probe["rss_ready_mib"], 1.0) / 2
    budget = 0.9 * memory_gib()[1] * 1024 - probe["rss_ready_mib"]
    batch = min(wanted, max(1, int(budget // per_item)))
    note = (
        f"probe at batch 2: {per_item:.0f} MiB per item over {probe['rss_ready_mib']:.0f} MiB; "
        f"{budget / 1024:.1f} GiB usable"
    )
    return batch, note


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--runs", nargs="+", default=list(DEFAULT_RUNS), metavar="PRESET:SCHEME", help="what to measure"
    )
    parser.add_argument("--steps", type=int, default=5, help="timed steps per run (default 5)")
    parser.add_argument("--paper-steps", type=int, default=3, help="timed steps for paper (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (>= 1; FLOPs counted)")
    parser.add_argument("--paper-batch", type=int, default=32, help="paper batch, if it fits (default 32)")
    parser.add_argument("--paper-crop", type=float, default=5.0, help="paper crop seconds (default 5)")
    parser.add_argument("--paper-classes", type=int, default=5994, help="paper head classes (default 5994)")
    parser.add_argument("--demo-classes", type=int, default=49, help="demo head classes (default 49)")
    parser.add_argument("--matmul-n", type=int, default=2048, help="matmul size for the reference rate")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: default)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--crop", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--classes", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.warmup < 1:
        parser.error("--warmup must be at least 1 (the FLOP-counting step)")
    if args.worker:
        worker(args)
        return

    set_threads(args.threads)
    script = __file__
    print(f"machine: {machine_summary()}")
    rates = [matmul_rate(args.matmul_n)]
    results, notes = [], []
    for run in args.runs:
        preset = run.split(":")[0]
        batch, crop = preset_shape(preset, args)
        steps = args.paper_steps if preset == "paper" else args.steps
        if preset == "paper":
            fitted, note = fitting_batch(script, run, batch, crop, args)
            notes.append(f"{run}: batch {fitted} of {batch} wanted ({note})")
            batch = fitted
        started = time.strftime("%H:%M:%S")
        results.append(run_worker(script, run, batch, crop, args, steps))
        results[-1]["load"] = machine_summary().rsplit("load average ", 1)[1]
        print(f"{started} {run} batch {batch}: done, load average {results[-1]['load']}", flush=True)
    rates.append(matmul_rate(args.matmul_n))
    rate = max(rates)

    print(f"\nmachine: {machine_summary()}")
    print(
        f"dense float32 matmul {args.matmul_n}^2, best of 5: {si(rates[0], 'FLOP/s')} before, "
        f"{si(rates[1], 'FLOP/s')} after; reference {si(rate, 'FLOP/s')}"
    )
    for note in notes:
        print(note)
    rows = []
    for r in results:
        t = median(r["times"])
        rows.append(
            [
                f"{r['preset']}:{r['scheme']}",
                f"{r['speaker']} ({r['tap']}, {r['classes']} classes), G w{r['g_width']}",
                f"{r['params']['G'] / 1e6:.2f} M",
                f"{r['batch']} x {r['crop_s']:g} s",
                f"{t:.3f} ({min(r['times']):.3f})",
                f"{3600 / t:.0f}",
                f"{r['batch'] / t:.1f}",
                f"{r['rss_peak_mib'] / 1024:.2f} ({(r['rss_peak_mib'] - r['rss_ready_mib']) / 1024:.2f})",
                si(r["flops"], "FLOP"),
                f"{100 * r['flops_g'] / r['flops']:.0f} %",
                si(r["flops"] / t, "FLOP/s"),
                f"{100 * r['flops'] / t / rate:.1f} %",
                r["load"],
            ]
        )
    print()
    print(
        markdown_table(
            [
                "run",
                "E, G",
                "G params",
                "batch",
                "step s, median (min)",
                "steps/h",
                "items/s",
                "peak RSS GiB (step's share)",
                "FLOPs/step",
                "G's share of FLOPs",
                "achieved",
                "of matmul rate",
                "load average",
            ],
            rows,
        )
    )
    print()
    phase_rows = []
    for name, label in PHASES:
        row = [label]
        for r in results:
            seconds, flops = r["phases"][name], r["phase_flops"].get(name, 0)
            share = 100 * seconds / median(r["times"])
            rate_text = f", {si(flops / seconds, 'FLOP/s')}" if flops and seconds > 0 else ""
            row.append(f"{seconds:.3f} s ({share:.0f} %); {si(flops, 'FLOP')}{rate_text}")
        phase_rows.append(row)
    phase_rows.append(
        ["whole step (median)"] + [f"{median(r['times']):.3f} s; {si(r['flops'], 'FLOP')}" for r in results]
    )
    headers = [
        "phase: time per step (share); FLOPs, rate",
        *(f"{r['preset']}:{r['scheme']}" for r in results),
    ]
    print(markdown_table(headers, phase_rows))


if __name__ == "__main__":
    main()
