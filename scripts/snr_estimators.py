#!/usr/bin/env python3
"""How well each blind SNR estimator of gradw.audio.quality reads the true SNR of validation
mixtures, per category and SNR, dry and reverberant: the table behind the choice of the
calibration's default quality measure (docs/calibration.md).

The mixtures are the validation speakers x the validation noise, drawn as the calibration draws
them (the seeded manifest, both sides corrupted); the true SNR of each is measured on its own
parts (the reverberant speech and the added noise, before any peak guard), so it is exact also
where the manifest's nominal SNR is relative to other audio. Clean speech has no true SNR: its
row gives the 10th, 50th and 90th percentiles of the estimates instead.

Usage:
    python scripts/snr_estimators.py --val data/synthvox-demo/val --augment data/synthvox-demo/augment/val
"""

from __future__ import annotations

import argparse
import dataclasses
import math

import numpy as np

from gradw.audio.io import read_audio
from gradw.audio.quality import percentile_snr, wada_snr
from gradw.data.conditions import AudioCache, augment_loader, parse_conditions, render
from gradw.data.dirs import AugmentDir, SpeechDir
from gradw.data.manifest import build_manifest

ESTIMATORS = {
    "WADA": lambda wav: wada_snr(wav, -30.0, 100.0),
    "band floor, 20th pct": lambda wav: percentile_snr(wav, 20.0, lo=-30.0, hi=100.0),
    "band floor, 30th pct (default)": lambda wav: percentile_snr(wav, 30.0, lo=-30.0, hi=100.0),
    "band floor, 50th pct": lambda wav: percentile_snr(wav, 50.0, lo=-30.0, hi=100.0),
}


def _power_db(x: np.ndarray) -> float:
    return 10.0 * math.log10(float(np.mean(np.square(x.astype(np.float64)))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--val", required=True, help="the validation speech directory")
    parser.add_argument("--augment", required=True, help="the validation noise directory (with rirs)")
    parser.add_argument("--snrs", default="5,0,-5,-10")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    speech = SpeechDir.load(args.val)
    augment = AugmentDir.load(args.augment)
    conditions = parse_conditions(["noise", "music", "babble"], args.snrs, rooms="rirs" in augment)
    manifest = build_manifest(speech, augment, conditions, args.seed)
    loader = augment_loader(augment, AudioCache())
    utts = sorted(speech.wavs)
    clean = {u: read_audio(speech.wavs[u]) for u in utts}
    names = list(ESTIMATORS)

    print(f"Blind SNR estimates on {len(utts)} validation utterances per condition: bias ± sd of")
    print("(estimate - true SNR) in dB; clean: the 10th / 50th / 90th percentiles of the estimates.\n")
    print("| condition | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    readings = {n: [ESTIMATORS[n](clean[u]) for u in utts] for n in names}
    cells = ["{:.0f} / {:.0f} / {:.0f}".format(*np.percentile(readings[n], [10, 50, 90])) for n in names]
    print("| clean | " + " | ".join(cells) + " |")
    errors: dict[str, list[float]] = {n: [] for n in names}
    for condition in conditions:
        per = {n: [] for n in names}
        for utt in utts:
            entry = manifest.entry(utt, condition)
            mixture = render(entry, clean[utt], loader, clip_guard=False)
            voice = render(dataclasses.replace(entry, sources=()), clean[utt], loader, clip_guard=False)
            true = _power_db(voice) - _power_db(mixture - voice)
            for n in names:
                per[n].append(ESTIMATORS[n](mixture) - true)
        cells = [f"{np.mean(per[n]):+.1f} ± {np.std(per[n]):.1f}" for n in names]
        print(f"| {condition.name} | " + " | ".join(cells) + " |")
        for n in names:
            errors[n] += per[n]
    cells = [f"{np.mean(np.abs(errors[n])):.1f}" for n in names]
    print("| mean absolute error, every mixture | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
