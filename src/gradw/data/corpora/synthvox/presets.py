"""synthvox presets: the sizes of each split (speakers, utterances, trials, augmentation files,
the out-of-domain test pool) for ``tiny`` (tests), ``demo`` (the CPU default) and ``full``, and
the seeding helpers every stage of the build derives its random streams from.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from gradw.data.corpora.synthvox.catalogue import CATALOGUE
from gradw.data.lists import DataError

SPLITS = ("train", "val", "test")
#: the augmentation pools: training, validation (every choice: checkpoints, variants, calibration)
#: and test; no recording, sound family, album, song, voice variant or seed is in two of them
SIDES = ("train", "val", "test")
#: the out-of-domain test pool: noise, music, babble and rooms from packages, generators, voices and
#: a room simulation that no item of the three pools above comes from (see ``ood.py``)
OOD_POOL = "test-ood"
#: every augmentation pool of a corpus, in build order
POOLS = (*SIDES, OOD_POOL)
AUDIO_EXT = ".flac"
MANIFEST_VERSION = 1

#: seconds per word at 170 wpm by text language, measured on this recipe's voices with
#: wordfreq prompts; used to choose how many words make an utterance of a target length.
_SECONDS_PER_WORD = {
    "af": 0.23, "ar": 0.29, "ca": 0.26, "cs": 0.18, "de": 0.27, "el": 0.16, "en": 0.17, "es": 0.15,
    "et": 0.22, "fa": 0.25, "fi": 0.22, "fr": 0.13, "he": 0.20, "hi": 0.17, "hr": 0.17, "is": 0.24,
    "it": 0.17, "ja": 0.155, "ko": 0.16, "la": 0.37, "lt": 0.22, "ms": 0.26, "nl": 0.17, "pl": 0.15,
    "pt": 0.13, "ru": 0.17, "sv": 0.20, "te": 0.49, "tr": 0.245, "zh": 0.22,
}  # fmt: skip
_WORD_MARGIN = 1.25  # synthesise a little more than needed, then cut to the target length
_BATCH = {"mbrola": 10, "flite": 10, "festival": 60, "asterisk": 40, "fillets": 40, "ktuberling": 40}
_AUG_BATCH = {
    "rir": 25, "babble": 6, "copy": 40, "coloured": 10, "hum": 10, "am": 10, "synth_music": 4,
    "ood_rir": 5, "ood_talker": 4, "ood_recording": 40, "ood_music": 4, "machine": 10, "crackle": 10,
}  # fmt: skip

_REAL_NOTE = (
    "MBROLA voices are non-free (use with MBROLA only, no sale, redistribution only free of "
    "charge): never redistribute the voices or audio generated from them. Asterisk prompts and "
    "Warzone 2100 music are CC-BY-SA-3.0, lincity-ng and Fish Fillets data GPL-2+: keep this "
    "attribution with any derived audio and do not commit the generated audio."
)


class SynthvoxError(DataError):
    """The corpus cannot be built (a required tool or too many speakers are missing)."""


@dataclass(frozen=True)
class SplitSize:
    """Size of one speech split.

    Attributes:
        utts: utterances per speaker.
        seconds: (min, max) target utterance length; each target is uniform in this range.
        speakers: speaker ids in priority order, or None for every catalogue speaker of the
            split. Speakers whose packages are missing are skipped.
        max_speakers: keep at most this many of the available speakers (None: all).
        trials: at most this many target trials, and as many non-target ones (0: no trials).
    """

    utts: int
    seconds: tuple[float, float]
    speakers: tuple[str, ...] | None = None
    max_speakers: int | None = None
    trials: int = 0


@dataclass(frozen=True)
class OodSize:
    """Size of the out-of-domain test pool (``augment/test-ood``).

    Attributes:
        noise: procedural clips of the pool's own generators (machinery and crackle), each
            ``Preset.noise_seconds`` long.
        recordings: at most this many noise recordings (None: all installed).
        music: at most this many music segments of ``Preset.music_seconds`` (None: all).
        babble: single-talker files of ``Preset.babble_seconds``.
        rirs: room impulse responses.
        packages: draw only on these Debian packages (None: every out-of-domain source installed),
            so that a preset's pool does not depend on what else the machine has.
    """

    noise: int
    recordings: int | None
    music: int | None
    babble: int
    rirs: int
    packages: tuple[str, ...] | None = None


#: the packages of ``scripts/install-system-deps.sh tiny`` that the out-of-domain pool uses
OOD_TINY_PACKAGES = ("libttspico-utils", "simutrans-pak64", "asc-music")


@dataclass(frozen=True)
class Preset:
    """Sizes of a synthvox build. Counts in triples are (train pool, validation pool, test pool).

    Attributes:
        name: preset name.
        train, val, test: the speech splits.
        noise: procedural noise clips (coloured noise, with one in ten mains hum and one in ten
            amplitude-modulated noise).
        noise_seconds: length of a procedural noise clip.
        real_noise: add the lincity-ng recordings (all of them, split by sound family).
        warzone: at most this many 30 s soundtrack segments (None: all).
        midi_seconds: seconds of each MIDI song to render (0: no MIDI).
        music_synth: procedural music clips, always added.
        music_fallback: procedural music clips added when no real music source is installed.
        music_seconds: length of a procedural music clip and of a soundtrack segment.
        babble: single-talker files.
        babble_seconds: length of a babble talker file.
        rirs: room impulse responses.
        rir_max_order: image-source order cap (0: Sabine's estimate, the full tail).
        ood: the out-of-domain test pool.
    """

    name: str
    train: SplitSize
    val: SplitSize
    test: SplitSize
    noise: tuple[int, int, int]
    noise_seconds: float
    real_noise: bool
    warzone: tuple[int, int, int] | None
    midi_seconds: float
    music_synth: tuple[int, int, int]
    music_fallback: tuple[int, int, int]
    music_seconds: float
    babble: tuple[int, int, int]
    babble_seconds: float
    rirs: tuple[int, int, int]
    rir_max_order: int = 0
    ood: OodSize = OodSize(noise=2, recordings=4, music=2, babble=7, rirs=3, packages=OOD_TINY_PACKAGES)

    def split(self, name: str) -> SplitSize:
        """The size of split ``name``."""
        return {"train": self.train, "val": self.val, "test": self.test}[name]


#: test speakers of the demo, in priority order: the real recordings first, then one of each
#: engine, then the rest of the test catalogue as stand-ins for missing packages.
_DEMO_TEST = (
    "asterisk-allison", "asterisk-june", "asterisk-carlo", "fillets-nl-m", "festival-cmu_us_slt",
    "flite-awb", "mbrola-us1", "mbrola-en1", "mbrola-de2", "mbrola-fr2",
    *[s.id for s in CATALOGUE if s.split == "test"],
)  # fmt: skip

PRESETS: dict[str, Preset] = {
    # CI and tests: only what `install-system-deps.sh tiny` installs; builds in seconds
    "tiny": Preset(
        name="tiny",
        train=SplitSize(6, (2.0, 4.0), ("mbrola-us2", "mbrola-de1", "mbrola-fr1", "mbrola-br2", "flite-rms")),
        val=SplitSize(4, (2.0, 4.0), ("mbrola-de4", "mbrola-it4"), trials=40),
        test=SplitSize(
            4, (2.0, 4.0), ("mbrola-us1", "mbrola-en1", "mbrola-de2", "mbrola-fr2", "flite-awb"), trials=60
        ),
        noise=(6, 2, 3),
        noise_seconds=6.0,
        real_noise=False,
        warzone=(0, 0, 0),
        midi_seconds=0.0,
        music_synth=(4, 2, 2),
        music_fallback=(0, 0, 0),
        music_seconds=8.0,
        babble=(8, 7, 7),
        babble_seconds=6.0,
        rirs=(6, 3, 3),
        rir_max_order=10,
        ood=OodSize(noise=2, recordings=4, music=2, babble=7, rirs=3, packages=OOD_TINY_PACKAGES),
    ),
    # CPU demo that trains and evaluates in about 45 minutes
    "demo": Preset(
        name="demo",
        train=SplitSize(20, (3.0, 6.0)),
        val=SplitSize(10, (3.0, 6.0), trials=1000),
        test=SplitSize(10, (4.0, 8.0), _DEMO_TEST, max_speakers=10, trials=2000),
        noise=(60, 20, 20),
        noise_seconds=20.0,
        real_noise=True,
        warzone=(40, 12, 12),
        midi_seconds=60.0,
        music_synth=(0, 0, 0),
        music_fallback=(40, 12, 12),
        music_seconds=30.0,
        babble=(100, 40, 40),
        babble_seconds=15.0,
        rirs=(200, 50, 50),
        # about the size of the test pool: 48 noise files (28 recordings), 14 music segments
        ood=OodSize(noise=20, recordings=30, music=14, babble=40, rirs=50),
    ),
    # the whole corpus: every speaker and every augmentation source
    "full": Preset(
        name="full",
        train=SplitSize(120, (4.0, 10.0)),
        val=SplitSize(50, (4.0, 10.0), trials=3000),
        test=SplitSize(40, (6.0, 10.0), trials=10000),
        noise=(300, 60, 60),
        noise_seconds=30.0,
        real_noise=True,
        warzone=None,
        midi_seconds=300.0,
        music_synth=(0, 0, 0),
        music_fallback=(300, 60, 60),
        music_seconds=30.0,
        babble=(340, 86, 86),
        babble_seconds=20.0,
        rirs=(1000, 200, 200),
        ood=OodSize(noise=60, recordings=None, music=None, babble=86, rirs=200),
    ),
}


# ---------------------------------------------------------------------------------------------
# seeds


def _seed(seed: int, *parts: object) -> int:
    """A 63-bit seed derived from the build seed and a key (stable across runs and machines)."""
    digest = hashlib.blake2b("|".join(map(str, (seed, *parts))).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def _rng(seed: int, *parts: object) -> np.random.Generator:
    return np.random.default_rng(_seed(seed, *parts))
