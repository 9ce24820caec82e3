"""Torch datasets: (clean, noisy) triples for training the enhancer G, speaker crops for E.

Both datasets are *map-style* and deterministic: item ``i`` of epoch ``e`` is drawn from
``np.random.default_rng([seed, e, i])`` alone, so it is the same whatever the number of
DataLoader workers, the batch size or the order items are asked in. Two ways to move on to fresh
crops and noise:

* ``dataset[i]`` uses the epoch set with ``set_epoch`` (call it before each epoch; with
  ``persistent_workers=True`` the workers keep their own copy of the dataset, so recreate the
  DataLoader or leave persistent workers off);
* ``dataset[(e, i)]`` names the epoch (or any other counter, such as a training step) in the
  key itself, which suits step-based samplers and needs no ``set_epoch``: a sampler yields
  ``[(step, i), ...]`` and every draw of utterance ``i`` gets new randomness.

``dataset.collate`` (the module's :func:`collate`) stacks items into batches.

Audio is read with :func:`gradw.audio.io.read_audio` at 16 kHz. Augmentation files (reused a
lot) go through a per-process LRU cache (:class:`gradw.data.conditions.AudioCache`); with
``preload=True`` every file is decoded once up front and shared with forked workers (for small
corpora only).

Noise specifications (``snr``), per category:

* ``"noise": (lo, hi)`` / ``"music": (lo, hi)``: SNR drawn uniformly in ``[lo, hi]`` dB.
* ``"babble": {"talkers": (lo, hi), "snrs": (5, 8, 10, 13, 15)}``: ``lo..hi`` talkers, each
  scaled to its own SNR drawn from the set (the paper's per-talker mode), or
  ``{"talkers": (lo, hi), "snr": (lo, hi)}``: talkers at equal level, the sum at one SNR drawn
  uniformly (overall mode). See :func:`gradw.audio.mixing.babble`.

A category absent from ``snr`` is never used. SNRs use the paper's formula with its ``1e-4``
floor by default (``floor`` argument), i.e. paper-faithful training noise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from gradw.audio.colour import random_colouring
from gradw.audio.mixing import (
    PAPER_FLOOR,
    babble,
    fit_length,
    peak_normalise,
    reverberate,
    snr_gain,
)
from gradw.data.conditions import AudioCache
from gradw.data.dirs import AugmentDir, SpeechDir
from gradw.data.lists import DataError

__all__ = [
    "ENHANCEMENT_SNRS",
    "EnhancementTriples",
    "SPEAKER_SNRS",
    "SpeakerCrops",
    "collate",
]

NOISE_CATEGORIES = ("noise", "music", "babble")

ENHANCEMENT_SNRS: dict[str, Any] = {
    "noise": (-10.0, 0.0),
    "music": (-10.0, 0.0),
    "babble": {"talkers": (5, 7), "snrs": (5.0, 8.0, 10.0, 13.0, 15.0)},
}
"""The paper's low-SNR training noise (Grad-W HEAD)."""

SPEAKER_SNRS: dict[str, Any] = {
    "noise": (0.0, 15.0),
    "music": (5.0, 15.0),
    "babble": {"talkers": (3, 7), "snr": (13.0, 20.0)},
}
"""Usual speaker-network augmentation (voxceleb_trainer / Kaldi style ranges)."""


class _Reader:
    """``reader(path) -> (N,) float32``: preloaded arrays first, then an LRU cache."""

    def __init__(self, cache_mb: float, sample_rate: int) -> None:
        self.cache = AudioCache(cache_mb, sample_rate)
        self.preloaded: dict[str, np.ndarray] = {}

    def preload(self, paths: Sequence[Path]) -> None:
        from gradw.audio.io import read_audio

        for path in paths:
            key = str(path)
            if key not in self.preloaded:
                wav = read_audio(path, self.cache.sample_rate)
                wav.setflags(write=False)
                self.preloaded[key] = wav

    def __call__(self, path: Path, cache: bool = True) -> np.ndarray:
        wav = self.preloaded.get(str(path))
        if wav is not None:
            return wav
        if cache:
            return self.cache(path)
        from gradw.audio.io import read_audio

        return read_audio(path, self.cache.sample_rate)


def _range(value: Any, what: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a (low, high) pair, got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise ValueError(f"{what} must be a finite (low, high) pair with low <= high, got {value!r}")
    return lo, hi


class _Augmenter:
    """Draws additive noise (and RIRs) from an augmentation directory."""

    def __init__(
        self,
        augment: AugmentDir,
        snr: Mapping[str, Any],
        category_probs: Mapping[str, float] | None,
        reader: _Reader,
        floor: float,
        allow_no_noise: bool = False,
        colour: Mapping[str, float] | None = None,
    ) -> None:
        self.colour = dict(colour) if colour and colour.get("prob", 0) > 0 else None
        unknown = sorted(set(snr) - set(NOISE_CATEGORIES))
        if unknown:
            raise ValueError(f"unknown noise categories in snr: {unknown}")
        self.reader = reader
        self.floor = floor
        self.keys = {c: augment.keys(c) for c in (*NOISE_CATEGORIES, "rirs")}
        self.paths = {c: [augment.path(c, k) for k in keys] for c, keys in self.keys.items()}
        self.specs: dict[str, Any] = {}
        for category, spec in snr.items():
            if category == "babble":
                if (
                    not isinstance(spec, Mapping)
                    or "talkers" not in spec
                    or ("snrs" in spec) == ("snr" in spec)
                ):
                    raise ValueError(
                        "babble spec must be {'talkers': (lo, hi), 'snrs': (...)} or "
                        f"{{'talkers': (lo, hi), 'snr': (lo, hi)}}, got {spec!r}"
                    )
                lo, hi = _range(spec["talkers"], "babble talkers")
                if lo < 1 or not lo.is_integer() or not hi.is_integer():
                    raise ValueError(f"babble talkers must be whole numbers >= 1, got {spec['talkers']!r}")
                parsed: dict[str, Any] = {"talkers": (int(lo), int(hi))}
                if "snrs" in spec:
                    parsed["snrs"] = tuple(float(s) for s in spec["snrs"])
                    if not parsed["snrs"]:
                        raise ValueError("babble snrs must not be empty")
                else:
                    parsed["snr"] = _range(spec["snr"], "babble snr")
                self.specs[category] = parsed
            else:
                self.specs[category] = _range(spec, f"{category} SNR range")
        if category_probs is None:
            weights = {c: float(len(self.keys[c])) for c in self.specs}
        else:
            bad = sorted(set(category_probs) - set(self.specs))
            if bad:
                raise ValueError(f"category_probs names categories without an SNR spec in snr: {bad}")
            weights = {c: float(category_probs.get(c, 0.0)) for c in self.specs}
            if any(w < 0 or not math.isfinite(w) for w in weights.values()):
                raise ValueError(f"category_probs must be non-negative, got {dict(category_probs)}")
            missing = sorted(c for c, w in weights.items() if w > 0 and not self.keys[c])
            if missing:
                raise DataError(f"{augment.root}: no audio for the categor(ies) {', '.join(missing)}")
        total = sum(weights.values())
        if total <= 0 and not allow_no_noise:
            raise DataError(
                f"{augment.root}: no usable noise category (need one of {', '.join(self.specs)} with files)"
            )
        self.categories = [c for c, w in weights.items() if w > 0]
        self.probs = np.array([weights[c] / total for c in self.categories]) if total > 0 else np.zeros(0)

    def all_paths(self) -> list[Path]:
        wanted = [*self.categories, "rirs"]
        return [p for c in wanted for p in self.paths[c]]

    def noise(self, speech: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """A scaled noise (N,) for ``speech`` (N,), and its category."""
        category = self.categories[int(rng.choice(len(self.categories), p=self.probs))]
        paths = self.paths[category]
        n = speech.shape[0]
        spec = self.specs[category]
        if category != "babble":
            audio = self.reader(paths[int(rng.integers(len(paths)))])
            segment, _ = fit_length(audio, n, rng)
            if self.colour is not None and rng.random() < self.colour["prob"]:
                segment = random_colouring(
                    segment, rng, self.colour["tilt_db"], self.colour["eq_db"], int(self.colour["bands"])
                )
            gain = snr_gain(speech, segment, float(rng.uniform(*spec)), floor=self.floor)
            return (np.float32(gain) * segment).astype(np.float32), category
        lo, hi = spec["talkers"]
        count = int(rng.integers(lo, hi + 1))
        picks = rng.choice(len(paths), size=count, replace=count > len(paths))
        talkers = [self.reader(paths[int(i)]) for i in picks]
        if "snrs" in spec:
            snrs = [float(s) for s in rng.choice(spec["snrs"], size=count)]
            mix = babble(talkers, n, rng, snrs_db=snrs, speech=speech, floor=self.floor)
        else:
            mix = babble(
                talkers, n, rng, speech=speech, snr_db=float(rng.uniform(*spec["snr"])), floor=self.floor
            )
        return mix.noise, category

    def reverb(self, speech: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``speech`` (N,) convolved with a random RIR, aligned on its direct path."""
        paths = self.paths["rirs"]
        return reverberate(speech, self.reader(paths[int(rng.integers(len(paths)))]))[0]


def _crop(wav: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """A random (n,) crop; shorter audio is tiled (repeated) to length."""
    return fit_length(wav, n, rng)[0]


def collate(batch: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack a list of items: tensors -> ``(B, ...)`` (e.g. waveforms ``(B, N)``), ints ->
    ``(B,)`` int64 tensor, floats -> ``(B,)`` float32 tensor, anything else -> a list."""
    if not batch:
        raise ValueError("empty batch")
    out: dict[str, Any] = {}
    for key in batch[0]:
        values = [item[key] for item in batch]
        first = values[0]
        if isinstance(first, torch.Tensor):
            shapes = {tuple(v.shape) for v in values}
            if len(shapes) > 1:
                raise ValueError(f"cannot stack {key!r}: shapes differ {sorted(shapes)}")
            out[key] = torch.stack(values)
        elif isinstance(first, np.ndarray):
            out[key] = torch.from_numpy(np.stack(values))
        elif isinstance(first, bool):
            out[key] = values
        elif isinstance(first, int | np.integer):
            out[key] = torch.tensor(values, dtype=torch.int64)
        elif isinstance(first, float | np.floating):
            out[key] = torch.tensor(values, dtype=torch.float32)
        else:
            out[key] = values
    return out


class _Base(Dataset):
    def __init__(
        self,
        speech: SpeechDir,
        crop_seconds: float,
        seed: int,
        epoch: int,
        preload: bool,
        cache_mb: float,
        sample_rate: int,
    ) -> None:
        if crop_seconds <= 0:
            raise ValueError(f"crop_seconds must be positive, got {crop_seconds}")
        self.speech = speech
        self.utts = speech.utts
        if not self.utts:
            raise DataError(f"{speech.root}: no utterances")
        self.speakers = speech.speakers
        self.speaker_index = {spk: i for i, spk in enumerate(self.speakers)}
        self.crop_samples = int(round(crop_seconds * sample_rate))
        self.sample_rate = sample_rate
        self.seed = int(seed)
        self.epoch = int(epoch)
        self.preload = preload
        self.reader = _Reader(cache_mb, sample_rate)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (items of different epochs differ, each is reproducible)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.utts)

    def _rng(self, key: int | tuple[int, int]) -> tuple[np.random.Generator, int]:
        """The generator and utterance index of an item key (``index`` or ``(epoch, index)``)."""
        if isinstance(key, tuple):
            epoch, index = (int(k) for k in key)
        else:
            epoch, index = self.epoch, int(key)
        if not 0 <= index < len(self.utts):
            raise IndexError(f"index {index} out of range for {len(self.utts)} items")
        if epoch < 0:
            raise IndexError(f"epoch {epoch} must be non-negative")
        return np.random.default_rng([self.seed, epoch, index]), index

    collate = staticmethod(collate)

    def _speech(self, utt: str) -> np.ndarray:
        return self.reader(self.speech.wavs[utt], cache=False)


class EnhancementTriples(_Base):
    """(clean, noisy) crops with the speaker label, for training the enhancer.

    Each item is one utterance: a random ``crop_seconds`` crop (tiled when the utterance is
    shorter) is the clean target; with probability ``clean_fraction`` the input is the clean crop
    itself, otherwise (optionally reverberated with probability ``reverb_prob``) it gets one
    noise category drawn with ``category_probs`` at an SNR drawn from ``snr``. When the mixture
    would exceed full scale both signals are scaled by the same factor.

    Items: ``{"clean": (N,), "noisy": (N,), "speaker": int, "utt": str, "category": str}``;
    float32 tensors, ``speaker`` indexes the sorted speaker ids (:attr:`speaker_index`),
    ``category`` is ``clean``/``noise``/``music``/``babble``.

    Args:
        speech: the training speech.
        augment: the noise pools (may be None when ``clean_fraction`` is 1).
        crop_seconds: crop length (the paper: 5 s).
        snr: noise specification per category (default :data:`ENHANCEMENT_SNRS`, the paper).
        category_probs: category -> weight; None weights categories by file count (the paper
            draws a file uniformly from the whole MUSAN list).
        clean_fraction: share of items whose input is the clean crop.
        reverb_prob: probability of convolving the input with a random RIR (the clean target
            stays dry and aligned). The paper's code never reverberates.
        seed / epoch: randomness; item ``i`` uses ``default_rng([seed, epoch, i])``.
        preload: decode every file at construction (small corpora).
        cache_mb: size of the per-process cache of decoded augmentation files.
        floor: power floor of the SNR formula (paper 1e-4; 0 for exact SNRs).
        noise_colour: ``{prob, tilt_db, eq_db, bands}``: with probability ``prob`` a noise or
            music segment is coloured by :func:`gradw.audio.colour.random_colouring` before it
            is scaled to its SNR (babble is left as speech); None or ``prob`` 0: never (and no
            random number is drawn for it, so the items are those of a dataset without it).
    """

    def __init__(
        self,
        speech: SpeechDir,
        augment: AugmentDir | None,
        crop_seconds: float = 5.0,
        snr: Mapping[str, Any] | None = None,
        category_probs: Mapping[str, float] | None = None,
        clean_fraction: float = 0.0,
        reverb_prob: float = 0.0,
        seed: int = 0,
        epoch: int = 0,
        preload: bool = False,
        cache_mb: float = 256.0,
        sample_rate: int = 16000,
        floor: float = PAPER_FLOOR,
        noise_colour: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(speech, crop_seconds, seed, epoch, preload, cache_mb, sample_rate)
        if not 0.0 <= clean_fraction <= 1.0 or not 0.0 <= reverb_prob <= 1.0:
            raise ValueError("clean_fraction and reverb_prob must lie in [0, 1]")
        self.clean_fraction = float(clean_fraction)
        self.reverb_prob = float(reverb_prob)
        self.augmenter: _Augmenter | None = None
        if clean_fraction < 1.0:
            if augment is None:
                raise DataError("an augmentation directory is needed unless clean_fraction is 1")
            self.augmenter = _Augmenter(
                augment,
                ENHANCEMENT_SNRS if snr is None else snr,
                category_probs,
                self.reader,
                floor,
                colour=noise_colour,
            )
            if reverb_prob > 0 and not self.augmenter.paths["rirs"]:
                raise DataError(f"{augment.root}: reverb_prob > 0 needs a 'rirs' list")
        if preload:
            self.reader.preload([speech.wavs[u] for u in self.utts])
            if self.augmenter is not None:
                self.reader.preload(self.augmenter.all_paths())

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        rng, index = self._rng(key)
        utt = self.utts[index]
        clean = _crop(self._speech(utt), self.crop_samples, rng)
        category = "clean"
        if self.augmenter is None or rng.random() < self.clean_fraction:
            noisy = clean.copy()
        else:
            source = clean
            if self.reverb_prob > 0 and rng.random() < self.reverb_prob:
                source = self.augmenter.reverb(clean, rng)
            noise, category = self.augmenter.noise(source, rng)
            noisy = source + noise
            noisy, scale = peak_normalise(noisy)
            if scale != 1.0:
                clean = (clean * np.float32(scale)).astype(np.float32)
        return {
            "clean": torch.from_numpy(np.ascontiguousarray(clean, dtype=np.float32)),
            "noisy": torch.from_numpy(np.ascontiguousarray(noisy, dtype=np.float32)),
            "speaker": self.speaker_index[self.speech.utt2spk[utt]],
            "utt": utt,
            "category": category,
        }


class SpeakerCrops(_Base):
    """Random crops with speaker labels, for training a speaker network.

    Speed perturbation (resampling with soxr, which changes tempo and pitch) makes new speaker
    classes: speaker ``k`` at ``speeds[i]`` has class ``k + i * S`` (``S`` speakers), as in
    WeSpeaker. ``speeds`` puts 1.0 first, so classes ``0..S-1`` are the unperturbed speakers
    (the labels a frozen speaker head is later queried with). Each item draws its speed uniformly.

    With an augmentation directory, each crop is augmented with probability ``augment_prob``:
    reverberated with probability ``reverb_prob`` (needs ``rirs``), then mixed with one noise
    category (default :data:`SPEAKER_SNRS`; none when the directory holds only RIRs or
    ``snr`` is empty, which gives reverberation-only augmentation).

    Items: ``{"wav": (N,) float32 tensor, "speaker": int, "utt": str}``.
    """

    def __init__(
        self,
        speech: SpeechDir,
        crop_seconds: float = 2.0,
        speed_perturb: Sequence[float] | None = (0.9, 1.0, 1.1),
        augment: AugmentDir | None = None,
        augment_prob: float = 0.6,
        snr: Mapping[str, Any] | None = None,
        category_probs: Mapping[str, float] | None = None,
        reverb_prob: float = 0.0,
        seed: int = 0,
        epoch: int = 0,
        preload: bool = False,
        cache_mb: float = 256.0,
        sample_rate: int = 16000,
        floor: float = PAPER_FLOOR,
    ) -> None:
        super().__init__(speech, crop_seconds, seed, epoch, preload, cache_mb, sample_rate)
        speeds = [1.0] if speed_perturb is None else [float(s) for s in speed_perturb]
        if not speeds or len(set(speeds)) != len(speeds) or any(not 0.5 <= s <= 2.0 for s in speeds):
            raise ValueError(f"speed_perturb must be distinct factors in [0.5, 2], got {speed_perturb!r}")
        if 1.0 in speeds:
            speeds.remove(1.0)
            speeds.insert(0, 1.0)
        self.speeds: tuple[float, ...] = tuple(speeds)
        if not 0.0 <= augment_prob <= 1.0 or not 0.0 <= reverb_prob <= 1.0:
            raise ValueError("augment_prob and reverb_prob must lie in [0, 1]")
        self.augment_prob = float(augment_prob)
        self.reverb_prob = float(reverb_prob)
        self.augmenter: _Augmenter | None = None
        if augment is not None and augment_prob > 0:
            self.augmenter = _Augmenter(
                augment,
                SPEAKER_SNRS if snr is None else snr,
                category_probs,
                self.reader,
                floor,
                allow_no_noise=reverb_prob > 0,
            )
            if reverb_prob > 0 and not self.augmenter.paths["rirs"]:
                raise DataError(f"{augment.root}: reverb_prob > 0 needs a 'rirs' list")
        if preload:
            self.reader.preload([speech.wavs[u] for u in self.utts])
            if self.augmenter is not None:
                self.reader.preload(self.augmenter.all_paths())

    @property
    def num_speakers(self) -> int:
        """Speakers in the data (``S``)."""
        return len(self.speakers)

    @property
    def num_classes(self) -> int:
        """Classes after speed perturbation: ``S * len(speeds)``."""
        return len(self.speakers) * len(self.speeds)

    def _perturbed_crop(self, wav: np.ndarray, speed: float, rng: np.random.Generator) -> np.ndarray:
        n = self.crop_samples
        if speed == 1.0:
            return _crop(wav, n, rng)
        from gradw.audio.io import resample

        margin = 64  # resampler edge effects stay outside the returned crop
        source_rate = int(round(self.sample_rate * speed))
        need = int(math.ceil((n + 2 * margin) * source_rate / self.sample_rate))
        out = resample(_crop(wav, need, rng), source_rate, self.sample_rate)
        return np.ascontiguousarray(out[margin : margin + n], dtype=np.float32)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        rng, index = self._rng(key)
        utt = self.utts[index]
        speed_index = int(rng.integers(len(self.speeds)))
        wav = self._perturbed_crop(self._speech(utt), self.speeds[speed_index], rng)
        if self.augmenter is not None and rng.random() < self.augment_prob:
            if self.reverb_prob > 0 and rng.random() < self.reverb_prob:
                wav = self.augmenter.reverb(wav, rng)
            if self.augmenter.categories:
                noise, _ = self.augmenter.noise(wav, rng)
                wav = wav + noise
            wav, _ = peak_normalise(wav)
        speaker = self.speaker_index[self.speech.utt2spk[utt]] + speed_index * len(self.speakers)
        return {
            "wav": torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)),
            "speaker": speaker,
            "utt": utt,
        }
