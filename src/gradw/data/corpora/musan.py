"""MUSAN (OpenSLR 17) as augmentation directories.

``prepare_musan(root, out)`` walks a MUSAN tree and writes ``OUT/{train,val,test}/noise/wav.scp``,
``.../music/wav.scp`` and ``.../babble/wav.scp`` (MUSAN's ``speech``), the augmentation-directory
contract of :mod:`gradw.data.dirs`.

The category of a file is the name of a folder on its path (``noise``, ``music``, ``speech`` or
``babble``, the one closest to ``root``), never a fixed path position. So the original layout
``musan/noise/free-sound/noise-free-sound-0001.wav``, voxceleb_trainer's
``musan_split/noise/free-sound/noise-free-sound-0001/00000.wav`` and any extra levels above
either give the same categories (the wespeaker#263 pitfall: keys parsed by position silently lost
their category with ``musan_split``). When ``root`` is itself a category folder
(``musan/noise``), its own name is the category.

Keys are ``<category>/<path below root without the category folder and suffix>``, e.g.
``noise/free-sound/noise-free-sound-0001`` or ``babble/librivox/speech-librivox-0000``, so they
are unique and carry the category.

The *recordings* of each category are divided into three disjoint augmentation directories,
``OUT/train`` (training), ``OUT/val`` (every choice: checkpoints, variants, fusion, calibration)
and ``OUT/test`` (the final evaluation), seeded; nothing lists every recording, so no recording
can reach two sides by mistake. A recording is the first two folder levels below the category
folder (``<source>/<file>``): every ``musan_split`` segment of one file stays on one side, so test
noise is never heard in training or selection.

The helpers :func:`seeded_order` and :func:`split_groups` are shared by the other corpus
preparers.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from gradw.data.dirs import write_augment_dir
from gradw.data.lists import DataError, format_offenders

__all__ = [
    "MUSAN_AUDIO_SUFFIXES",
    "MUSAN_FOLDERS",
    "prepare_musan",
    "remove_lists",
    "seeded_order",
    "SPLITS",
    "split_counts",
    "split_groups",
]

#: folder name (lower case) -> augmentation category.
MUSAN_FOLDERS: dict[str, str] = {"noise": "noise", "music": "music", "speech": "babble", "babble": "babble"}
#: audio file suffixes that are listed (all readable by libsndfile).
MUSAN_AUDIO_SUFFIXES: frozenset[str] = frozenset({".wav", ".flac", ".ogg"})
_MUSAN_CATEGORIES = ("noise", "music", "babble")


def seeded_order(items: Iterable[str], seed: int, salt: str = "") -> list[str]:
    """Order ``items`` by a SHA-256 hash of ``(salt, seed, item)``.

    The position of an item depends only on the item, the seed and the salt (not on the other
    items, the platform or library versions), so a selection made from the front of the list is
    reproducible and stable when unrelated items are added.
    """
    return sorted(
        set(items), key=lambda item: (hashlib.sha256(f"{salt}\0{seed}\0{item}".encode()).hexdigest(), item)
    )


#: the augmentation splits a preparer writes: training, selection (checkpoints, variants,
#: fusion, calibration) and the final test, disjoint by recording.
SPLITS: tuple[str, ...] = ("train", "val", "test")
DEFAULT_VAL_FRACTION = 0.1
DEFAULT_TEST_FRACTION = 0.2


def split_counts(n: int, val: float, test: float) -> tuple[int, int]:
    """How many of ``n`` groups go to the val and to the test side.

    ``round(fraction * n)`` each, at least 1, leaving at least one group for training.

    Raises:
        ValueError: a fraction outside (0, 1), fractions summing to 1 or more, or ``n < 3``.
    """
    for name, fraction in (("val", val), ("test", test)):
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"the {name} fraction must be in (0, 1), got {fraction!r}")
    if val + test >= 1.0:
        raise ValueError(f"the val and test fractions must leave some for training, got {val} + {test}")
    if n < 3:
        raise ValueError(f"cannot split {n} group(s) into three non-empty parts")
    k_test = min(max(round(test * n), 1), n - 2)
    k_val = min(max(round(val * n), 1), n - 1 - k_test)
    return k_val, k_test


def split_groups(
    groups: Iterable[str], val: float, test: float, seed: int, salt: str = ""
) -> tuple[set[str], set[str], set[str]]:
    """Split distinct ``groups`` into disjoint ``(train, val, test)`` sets with :func:`seeded_order`
    (test from the front of the order, then val, the rest train).

    Raises:
        ValueError: as :func:`split_counts`.
    """
    ordered = seeded_order(groups, seed, salt)
    k_val, k_test = split_counts(len(ordered), val, test)
    return set(ordered[k_test + k_val :]), set(ordered[k_test : k_test + k_val]), set(ordered[:k_test])


def remove_lists(root: Path, categories: Sequence[str]) -> None:
    """Remove ``<root>/<category>/wav.scp`` for each category (stale output of an earlier run)."""
    for category in categories:
        (root / category / "wav.scp").unlink(missing_ok=True)


def _clean_key_part(text: str) -> str:
    return "_".join(text.split())


def _category_of(dirs: Sequence[str], root_name: str) -> tuple[str, int] | None:
    """``(category, index in dirs)`` of the category folder closest to the root, or ``None``.

    Index ``-1`` means ``root`` itself is the category folder.
    """
    for index, name in enumerate(dirs):
        category = MUSAN_FOLDERS.get(name.lower())
        if category is not None:
            return category, index
    category = MUSAN_FOLDERS.get(root_name.lower())
    return (category, -1) if category is not None else None


def _scan(root: Path) -> tuple[dict[str, dict[str, Path]], dict[str, dict[str, str]], list[str]]:
    """Walk ``root``: category -> key -> path, category -> key -> recording, uncategorised files."""
    files: dict[str, dict[str, Path]] = {c: {} for c in _MUSAN_CATEGORIES}
    recordings: dict[str, dict[str, str]] = {c: {} for c in _MUSAN_CATEGORIES}
    first_path: dict[str, Path] = {}
    duplicates: list[str] = []
    uncategorised: list[str] = []
    for folder, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dirs = Path(folder).relative_to(root).parts
        found = _category_of(rel_dirs, root.name)
        for filename in sorted(filenames):
            path = Path(folder) / filename
            if filename.startswith(".") or path.suffix.lower() not in MUSAN_AUDIO_SUFFIXES:
                continue
            if found is None:
                uncategorised.append(str(path))
                continue
            category, index = found
            before = list(rel_dirs[:index]) if index >= 0 else []
            after = [*rel_dirs[index + 1 :], path.stem]
            key = "/".join(_clean_key_part(p) for p in (category, *before, *after))
            if key in first_path:
                duplicates.append(f"{key!r} ({first_path[key]} and {path})")
                continue
            first_path[key] = path
            files[category][key] = path.absolute()
            recordings[category][key] = "/".join(_clean_key_part(p) for p in (*before, *after[:2]))
    if duplicates:
        raise DataError(f"{root}: several files map to the same key: {format_offenders(duplicates)}")
    return files, recordings, uncategorised


def prepare_musan(
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    val: float = DEFAULT_VAL_FRACTION,
    test: float = DEFAULT_TEST_FRACTION,
    seed: int = 0,
) -> dict[str, Any]:
    """Write MUSAN as three recording-disjoint augmentation directories, ``OUT/train``,
    ``OUT/val`` and ``OUT/test`` (each with ``{noise,music,babble}/wav.scp``).

    Args:
        root: the MUSAN folder (``musan``, ``musan_split``, a folder above one, or one category
            folder). Categories come from folder names on each file's path (see the module doc).
        out: the folder of the three augmentation directories. Only MUSAN's categories are
            touched, so RIRs may be prepared into the same folder.
        val, test: the fractions of each category's *recordings* that go to the validation and
            test sides (seeded); the rest trains. A recording is never on two sides.
        seed: chooses the sides (deterministic for a seed).

    Returns:
        A summary: ``out``; per category ``{"files", "recordings"}``; per split a category ->
        ``{"files", "recordings"}`` mapping; ``uncategorised`` (audio files under no category
        folder, not listed); ``warnings``.

    Raises:
        DataError: ``root`` is missing or holds no audio under a category folder; two files map
            to the same key; a category has fewer than 3 recordings.
        ValueError: a fraction outside (0, 1), or fractions that leave nothing to train on.
    """
    root = Path(root).expanduser().absolute()
    out = Path(out).expanduser().absolute()
    split_counts(3, val, test)  # the fractions, checked before anything is read
    if not root.is_dir():
        raise DataError(f"{root}: MUSAN directory not found")
    files, recordings, uncategorised = _scan(root)
    present = [c for c in _MUSAN_CATEGORIES if files[c]]
    if not present:
        raise DataError(
            f"{root}: no audio files under a folder named noise, music or speech "
            "(expected e.g. musan/noise/free-sound/*.wav or musan_split/noise/free-sound/*/*.wav)"
        )
    warnings: list[str] = []
    missing = [c for c in _MUSAN_CATEGORIES if not files[c]]
    if missing:
        warnings.append(f"no audio for category(ies) {', '.join(missing)}")
    if uncategorised:
        warnings.append(
            f"{len(uncategorised)} audio file(s) under no noise/music/speech folder were skipped: "
            f"{format_offenders(uncategorised, 3)}"
        )

    sides: dict[str, dict[str, dict[str, Path]]] = {split: {} for split in SPLITS}
    for category in present:
        groups = set(recordings[category].values())
        if len(groups) < 3:
            raise DataError(
                f"{root}: category {category!r} has {len(groups)} recording(s); at least 3 are "
                "needed for disjoint train, val and test sides"
            )
        chosen = split_groups(groups, val, test, seed, salt=f"musan/{category}")
        for split, side_groups in zip(SPLITS, chosen, strict=True):
            sides[split][category] = {
                k: p for k, p in files[category].items() if recordings[category][k] in side_groups
            }

    summary: dict[str, Any] = {"out": str(out)}
    for category in present:
        summary[category] = {
            "files": len(files[category]),
            "recordings": len(set(recordings[category].values())),
        }
    for split in SPLITS:
        summary[split] = {}
        for category, wavs in sides[split].items():
            write_augment_dir(out / split, category, wavs)
            summary[split][category] = {
                "files": len(wavs),
                "recordings": len({recordings[category][k] for k in wavs}),
            }
        remove_lists(out / split, [*missing, "speech"])
    # lists of every recording, written by earlier versions, would mix the sides: remove them
    remove_lists(out, [*_MUSAN_CATEGORIES, "speech"])
    summary["uncategorised"] = len(uncategorised)
    summary["warnings"] = warnings
    return summary
