"""Validation EER during training: held-out speakers, held-out noise, fixed corrupted audio.

The corrupted validation audio is rendered once (seeded manifest) and kept in memory; each call
embeds it through E with the current G and returns the EER of every condition and their mean.
The noisy baseline (no G) is computed once, so the log shows both. The calibration of the
selected checkpoint is fitted once, at the end of training, over a wider grid
(:mod:`gradw.training.calibrate`).
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import torch

from gradw.audio.io import read_audio
from gradw.data.conditions import AudioCache, augment_loader, parse_conditions, render
from gradw.data.dirs import AugmentDir, SpeechDir, check_duration
from gradw.data.manifest import build_manifest
from gradw.data.trials import load_trials, select_trials
from gradw.evaluation.metrics import eer
from gradw.evaluation.scoring import score_trials
from gradw.evaluation.systems import System, SystemSpec, embed_many
from gradw.models.speaker import SpeakerNetwork


class Validator:
    """``validator(G) -> {"eer": mean %, "eer_<condition>": %, "eer_noisy": mean % without G}``."""

    def __init__(
        self,
        speaker: SpeakerNetwork,
        test_dir: str,
        augment_dir: str,
        categories: tuple[str, ...],
        snrs: tuple[float, ...],
        max_trials: int,
        seed: int,
        device: torch.device,
    ) -> None:
        test = SpeechDir.load(test_dir)
        self.trials = select_trials(load_trials(test, "trials"), max_trials, seed)
        self.pairs = [(t.enroll, t.test, t.target) for t in self.trials]
        self.labels = np.array([t.target for t in self.trials])
        utts = sorted({u for t in self.trials for u in (t.enroll, t.test)})
        test = test.subset(utts)
        test.check_durations(speaker.min_samples, "the speaker network E")
        augment = AugmentDir.load(augment_dir)
        self.conditions = parse_conditions(list(categories), list(snrs))
        manifest = build_manifest(test, augment, self.conditions, seed)
        loader = augment_loader(augment, AudioCache())
        clean = {u: read_audio(test.wavs[u]) for u in utts}
        for utt, wav in clean.items():
            check_duration(utt, test.wavs[utt], wav.shape[0], speaker.min_samples, "the speaker network E")
        self.audio = {
            c.name: {u: render(manifest.entry(u, c), clean[u], loader) for u in utts} for c in self.conditions
        }
        self.speaker, self.device = speaker, device
        self.baseline = self._eers(None)

    @classmethod
    def from_config(cls, config: Any, speaker: SpeakerNetwork, device: torch.device) -> Self | None:
        """The validator a training config asks for (its ``validation`` and ``data`` sections), or
        None when validation is off or there are no validation speakers."""
        if config.validation.every <= 0 or not config.data.val:
            return None
        return cls(
            speaker,
            test_dir=config.data.val,
            augment_dir=config.data.val_augment or config.data.augment,
            categories=config.validation.categories,
            snrs=config.validation.snrs,
            max_trials=config.validation.max_trials,
            seed=config.seed,
            device=device,
        )

    def _eers(self, enhancer: torch.nn.Module | None) -> dict[str, float]:
        spec = SystemSpec("validation", "noisy" if enhancer is None else "mask")
        system = System(spec, self.speaker, self.device, identity="", enhancer=enhancer)
        # utterance-major order: one utterance's renderings (one length) are embedded as a batch
        utts = sorted(next(iter(self.audio.values())))
        items = (((c, u), audio[u]) for u in utts for c, audio in self.audio.items())
        flat = embed_many(system, items)
        out: dict[str, float] = {}
        for condition in self.audio:
            embeddings = {u: flat[condition, u] for u in utts}
            out[condition] = 100 * eer(score_trials(embeddings, self.pairs), self.labels)[0]
        return out

    def __call__(self, enhancer: torch.nn.Module) -> dict[str, float]:
        was_training = enhancer.training
        enhancer.eval()
        try:
            eers = self._eers(enhancer)
        finally:
            enhancer.train(was_training)
        result = {
            "eer": float(np.mean(list(eers.values()))),
            "eer_noisy": float(np.mean(list(self.baseline.values()))),
        }
        result.update({f"eer_{k}": v for k, v in eers.items()})
        return result
