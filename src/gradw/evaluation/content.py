"""Content digests of the audio an evaluation reads: what its manifest and embedding caches are
keyed by.

Every file an evaluation reads (the test utterances it scores, and the noise, music, babble and
room recordings of the categories its conditions need) is digested in full (SHA-256 of its bytes,
:func:`gradw.checkpoint.file_digest`) at the start of every run. A recording replaced in place,
even by one of the same size with its modification time restored, changes its digest, so the
manifest is drawn again and the embeddings that read it are computed again. Sizes, times and paths
are not trusted for this (a stat-keyed shortcut is exactly what such a replacement fools), and
paths are not part of the digests, so a moved or copied corpus keeps its cached embeddings.

Cost: one read of the files. VoxCeleb1-O's 4,874 test files (1.3 GB) digest in 1-2 s from the
page cache on a 2-core machine (0.7-1.2 GB/s); from a cold disk, at the disk's read speed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gradw.checkpoint import file_digest
from gradw.data.conditions import Entry
from gradw.data.dirs import AugmentDir, SpeechDir
from gradw.data.lists import DataError


def _digest(path: Path, what: str) -> str:
    try:
        return file_digest(path)
    except OSError as exc:
        raise DataError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None


@dataclass(frozen=True)
class InputDigests:
    """Content digests (16 hex digits) of an evaluation's audio files.

    Attributes:
        speech: utterance id -> digest of its test audio file.
        augment: (category, key) -> digest of the augmentation file (only the categories read).
    """

    speech: dict[str, str]
    augment: dict[tuple[str, str], str]

    @classmethod
    def read(
        cls, test: SpeechDir, utts: Sequence[str], augment: AugmentDir | None, categories: Iterable[str]
    ) -> InputDigests:
        """Digest the test audio of ``utts`` and every file of ``categories`` in ``augment``.

        Raises:
            DataError: a file cannot be read (names it).
        """
        speech = {utt: _digest(test.wavs[utt], f"utterance {utt!r}") for utt in utts}
        pools: dict[tuple[str, str], str] = {}
        if augment is not None:
            for category in sorted(set(categories)):
                for key in augment.keys(category):
                    pools[category, key] = _digest(augment.path(category, key), f"{category} {key!r}")
        return cls(speech, pools)

    def of_entry(self, entry: Entry) -> list[str]:
        """Digests of what rendering ``entry`` reads: the clean utterance, each added recording,
        then the RIR (``-`` for none)."""
        parts = [self.speech[entry.utt]]
        parts += [self.augment[s.category, s.key] for s in entry.sources]
        parts.append("-" if entry.rir is None else self.augment["rirs", entry.rir.key])
        return parts

    def fingerprint(self) -> str:
        """SHA-256 (16 hex digits) of every digest, with its utterance or (category, key)."""
        body = {
            "speech": sorted(self.speech.items()),
            "augment": sorted(f"{c}/{k}={d}" for (c, k), d in self.augment.items()),
        }
        return hashlib.sha256(json.dumps(body, separators=(",", ":")).encode()).hexdigest()[:16]
