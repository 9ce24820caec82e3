"""Real-time factor and memory of ``gradw enhance``, against DeepFilterNet3 and RNNoise.

Run by hand (not part of the tests)::

    python benchmarks/enhance_rtf.py                                  # 10 s and 60 s, demo and paper G
    python benchmarks/enhance_rtf.py --seconds 10 --peers             # G only
    python benchmarks/enhance_rtf.py --long-seconds 3600              # + peak memory on one hour
    python benchmarks/enhance_rtf.py --device cuda --seconds 60 --peers

RTF = processing time / audio duration, for the full enhancement path of ``gradw.enhance``
(front-end, U-Net mask, mel -> STFT mapping, iSTFT, chunking with cross-fades; chunks of
``--chunk-seconds``, 30 s by default as in ``gradw enhance``) on noisy speech-like audio
(``_common.speech_like`` at 0 dB), with G as each preset builds it (``demo``: width 8, one block
per stage, on CAM++'s Kaldi fbank; ``paper``: width 32, blocks 3-4-6-3, up-samplers 3-4-6, on
the paper's log-mel), randomly initialised: the time does not depend on the weights. The peers
(``peers_rtf.measure_peer``) are timed in the same run on the same audio. Each figure is the
median of ``--repeats`` calls after a warm-up call.

``--long-seconds S`` writes S seconds of noisy speech to a temporary 16-bit WAV and runs the
command line ``gradw enhance`` on it in a child process per preset (a random G saved as a
checkpoint), reporting its wall time and its peak resident memory (``ru_maxrss``), next to the
same command on a 10 s file (the fixed cost: interpreter, torch, model) and to the size of the
waveform itself as float32.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from _common import (
    SR,
    machine_summary,
    markdown_table,
    median,
    noisy_mixture,
    parameter_count,
    preset_models,
    run_child,
    save_random_enhancer,
    set_threads,
    speech_like,
    time_calls,
    write_repeated_wav,
)
from peers_rtf import measure_peer

from gradw.audio.frontends import build_frontend
from gradw.enhance.enhancer import Enhancer


def test_audio(seconds: float) -> np.ndarray:
    """(N,) float32 noisy speech-like audio at 0 dB SNR."""
    return noisy_mixture(speech_like(seconds), 0.0)


def write_recording(path: Path, seconds: float, block_seconds: float = 60.0) -> None:
    """Write ``seconds`` of noisy speech-like audio as a 16-bit 16 kHz WAV, one block repeated."""
    write_repeated_wav(path, test_audio(min(block_seconds, seconds)), seconds)


def measure_g(
    preset: str, audio: dict[float, np.ndarray], repeats: int, device: torch.device, chunk: float | None
):
    """Wall times of ``Enhancer.enhance_tensor`` per duration for ``preset``'s G."""
    models = preset_models(preset)
    enhancer = Enhancer(models.enhancer, build_frontend(models.frontend), chunk_seconds=chunk, device=device)
    times = {}
    for seconds, wav in audio.items():
        x = torch.from_numpy(wav).to(device)

        def run(x: torch.Tensor = x) -> None:
            enhancer.enhance_tensor(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        times[seconds] = time_calls(run, repeats, warmup=1)
    label = f"gradw G, {preset} (w{models.config.enhancer.base_width}, {models.frontend})"
    return {"name": label, "params": parameter_count(models.enhancer), "times": times}


def long_run(preset: str, seconds: float, chunk: float, threads: int, folder: Path) -> dict:
    """``gradw enhance`` on a ``seconds`` recording and on a 10 s one, each in its own process."""
    checkpoint = save_random_enhancer(folder / f"{preset}.pt", preset_models(preset))
    rows = {}
    for length in (10.0, seconds):
        wav = folder / f"in-{length:g}.wav"
        if not wav.is_file():
            write_recording(wav, length)
        command = [sys.executable, "-m", "gradw", "enhance", str(wav), "-o", str(folder / f"out-{preset}")]
        command += ["--checkpoint", str(checkpoint), "--chunk-seconds", str(chunk), "--quiet"]
        command += ["--threads", str(threads)]
        child = run_child(command)
        if child.returncode != 0:
            raise RuntimeError(f"gradw enhance failed on {wav}:\n{child.stderr[-3000:]}")
        rows[length] = child
    return {
        "preset": preset,
        "seconds": seconds,
        "wall_s": rows[seconds].wall_s,
        "rss_mib": rows[seconds].max_rss_mib,
        "short_wall_s": rows[10.0].wall_s,
        "short_rss_mib": rows[10.0].max_rss_mib,
        "waveform_mib": seconds * SR * 4 / 2**20,
        "load": machine_summary().rsplit("load average ", 1)[1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--presets", nargs="+", default=["demo", "paper"], help="G of these presets")
    parser.add_argument("--seconds", type=float, nargs="+", default=[10.0, 60.0], help="audio durations")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls after a warm-up (default 3)")
    parser.add_argument(
        "--peers", nargs="*", default=["rnnoise", "deepfilternet3"], help="peers timed in the same run"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--chunk-seconds", type=float, default=30.0, help="chunk length (0: whole input)")
    parser.add_argument("--long-seconds", type=float, default=0.0, help="gradw enhance on this long a file")
    parser.add_argument("--long-presets", nargs="+", default=["demo"], help="presets for --long-seconds")
    args = parser.parse_args()
    set_threads(args.threads)
    device = torch.device(args.device)
    chunk = args.chunk_seconds or None
    print(f"machine: {machine_summary()}")
    if device.type == "cuda":
        print(f"device: {torch.cuda.get_device_name(device)}")

    audio = {s: test_audio(s) for s in args.seconds}
    results = []
    for preset in args.presets:
        results.append(measure_g(preset, audio, args.repeats, device, chunk))
        results[-1]["load"] = machine_summary().rsplit("load average ", 1)[1]
        print(f"measured {results[-1]['name']}", flush=True)
    for name in args.peers:
        times, params = {}, None
        for seconds, wav in audio.items():
            result = measure_peer(name, wav, args.repeats)
            if "unavailable" in result:
                print(f"{name}: {result['unavailable']}")
                break
            times[seconds] = result["times"]
        if times:
            results.append({"name": name, "params": params, "times": times})
            results[-1]["load"] = machine_summary().rsplit("load average ", 1)[1]
            print(f"measured {name}", flush=True)

    longs = []
    if args.long_seconds > 0:
        with tempfile.TemporaryDirectory() as tmp:
            for preset in args.long_presets:
                longs.append(long_run(preset, args.long_seconds, args.chunk_seconds, args.threads, Path(tmp)))
                print(f"gradw enhance {preset}: {longs[-1]['wall_s']:.1f} s", flush=True)

    print(f"\nmachine: {machine_summary()}")
    print(f"chunks {args.chunk_seconds:g} s; median of {args.repeats} calls after a warm-up\n")
    headers = ["system", "params"]
    for seconds in args.seconds:
        headers += [f"{seconds:g} s: wall s", f"{seconds:g} s: RTF"]
    headers.append("load average after")
    rows = []
    for r in results:
        row = [r["name"], f"{r['params'] / 1e6:.2f} M" if r["params"] else "-"]
        for seconds in args.seconds:
            t = median(r["times"][seconds])
            row += [f"{t:.3f}", f"{t / seconds:.4f}"]
        row.append(r["load"])
        rows.append(row)
    print(markdown_table(headers, rows))
    if longs:
        print()
        rows = [
            [
                run["preset"],
                f"{run['seconds'] / 60:g} min",
                f"{run['wall_s']:.1f}",
                f"{run['wall_s'] / run['seconds']:.4f}",
                f"{run['rss_mib']:.0f}",
                f"{run['short_rss_mib']:.0f}",
                f"{run['rss_mib'] - run['short_rss_mib']:.0f}",
                f"{run['waveform_mib']:.0f}",
                f"{(run['rss_mib'] - run['short_rss_mib']) / run['waveform_mib']:.2f}",
                run["load"],
            ]
            for run in longs
        ]
        headers = ["G", "recording", "wall s", "RTF", "peak RSS MiB", "same on 10 s MiB", "difference MiB"]
        headers += ["float32 waveform MiB", "difference / waveform", "load average after"]
        print(markdown_table(headers, rows))


if __name__ == "__main__":
    main()
