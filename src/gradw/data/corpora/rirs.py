"""RIRS_NOISES (OpenSLR 28) room impulse responses as an augmentation directory.

Layout read (Kaldi's)::

    RIRS_NOISES/simulated_rirs/{smallroom,mediumroom,largeroom}/rir_list
    RIRS_NOISES/simulated_rirs/<set>/Room###/Room###-#####.wav
    RIRS_NOISES/real_rirs_isotropic_noises/rir_list          (optional, with real=True)

A ``rir_list`` line is ``--rir-id <id> --room-id <room> [--<option> <value> ...] <location>``
(location usually ``RIRS_NOISES/...``, relative to the folder that holds ``RIRS_NOISES``). When a
simulated set has no ``rir_list``, its ``Room*/*.wav`` files are listed instead, with Kaldi's ids
(``smallroom-Room001-00001``, room ``smallroom-Room001``). The real set needs its ``rir_list``:
that folder also holds isotropic *noise* recordings that must not be taken for RIRs.

Output: ``OUT/train/rirs/wav.scp``, ``OUT/val/rirs/wav.scp`` and ``OUT/test/rirs/wav.scp``
(category ``rirs`` of the augmentation-directory contract), split by *room* (seeded), so the
validation and test rooms are never heard in training.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradw.data.corpora.musan import (
    DEFAULT_TEST_FRACTION,
    DEFAULT_VAL_FRACTION,
    SPLITS,
    remove_lists,
    split_counts,
    split_groups,
)
from gradw.data.dirs import write_augment_dir
from gradw.data.lists import DataError, format_offenders

__all__ = ["RIR_SETS", "Rir", "prepare_rirs", "read_rir_list"]

#: the simulated RIR sets of RIRS_NOISES.
RIR_SETS: tuple[str, ...] = ("smallroom", "mediumroom", "largeroom")
_REAL = "real_rirs_isotropic_noises"
_SIMULATED = "simulated_rirs"


@dataclass(frozen=True)
class Rir:
    """One impulse response: its id, its room id and its file (absolute)."""

    id: str
    room: str
    path: Path


def _locate(location: str, root: Path, list_dir: Path) -> Path | None:
    """Find the file a ``rir_list`` location names: absolute; relative to the folder above
    ``root`` (Kaldi's ``RIRS_NOISES/...`` form), to the list's folder, or to ``root`` after
    dropping leading components (a renamed ``RIRS_NOISES`` folder)."""
    path = Path(location)
    if path.is_absolute():
        return path if path.is_file() else None
    candidates = [root.parent / path, list_dir / path]
    candidates += [root.joinpath(*path.parts[i:]) for i in range(len(path.parts))]
    return next((c for c in candidates if c.is_file()), None)


def read_rir_list(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> tuple[list[Rir], int]:
    """Read a Kaldi ``rir_list`` and resolve its locations against ``root`` (the
    ``RIRS_NOISES`` folder).

    Returns:
        ``(rirs, piped)``: the entries in file order, and how many piped (``... |``) entries were
        skipped.

    Raises:
        DataError: the file is missing, a line lacks ``--rir-id``, ``--room-id`` or a location,
            or a location names no existing file (names the first offenders).
    """
    path = Path(path).absolute()
    root = Path(root).absolute()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    rirs: list[Rir] = []
    bad: list[int] = []
    missing: list[str] = []
    piped = 0
    for number, line in enumerate(text.splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        options: dict[str, str] = {}
        i = 0
        while i + 1 < len(tokens) and tokens[i].startswith("--"):
            options[tokens[i]] = tokens[i + 1]
            i += 2
        location = " ".join(tokens[i:])
        if "--rir-id" not in options or "--room-id" not in options or not location:
            bad.append(number)
            continue
        if location.endswith("|") or location.startswith("|"):
            piped += 1
            continue
        found = _locate(location, root, path.parent)
        if found is None:
            missing.append(location)
            continue
        rirs.append(Rir(options["--rir-id"], options["--room-id"], found.absolute()))
    if bad:
        raise DataError(
            f"{path}: line(s) {format_offenders(bad)} are not '--rir-id ID --room-id ROOM ... LOCATION'"
        )
    if missing:
        raise DataError(f"{path}: file(s) not found under {root}: {format_offenders(missing)}")
    return rirs, piped


def _glob_set(set_dir: Path, name: str) -> list[Rir]:
    """List ``<set_dir>/Room*/*.wav`` with Kaldi's ids (used when a set has no ``rir_list``)."""
    rirs = []
    for room_dir in sorted(p for p in set_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        room = f"{name}-{room_dir.name}"
        for wav in sorted(room_dir.glob("*.wav")):
            if wav.name.startswith("."):
                continue
            stem = wav.stem
            rir_id = f"{name}-{stem}" if stem.startswith(f"{room_dir.name}-") else f"{room}-{stem}"
            rirs.append(Rir(rir_id, room, wav.absolute()))
    return rirs


def _resolve_root(root: Path) -> Path:
    if not root.is_dir():
        raise DataError(f"{root}: RIRS_NOISES directory not found")
    if not (root / _SIMULATED).is_dir() and not (root / _REAL).is_dir() and (root / "RIRS_NOISES").is_dir():
        return root / "RIRS_NOISES"
    return root


def prepare_rirs(
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    sets: Sequence[str] = ("smallroom", "mediumroom"),
    real: bool = False,
    val: float = DEFAULT_VAL_FRACTION,
    test: float = DEFAULT_TEST_FRACTION,
    seed: int = 0,
) -> dict[str, Any]:
    """Write RIRS_NOISES impulse responses as ``OUT/{train,val,test}/rirs/wav.scp``, split by room.

    Args:
        root: the ``RIRS_NOISES`` folder (or the folder that holds it).
        out: the augmentation directory to write (only its ``rirs`` lists are touched, so MUSAN
            may be prepared into the same folder).
        sets: simulated sets to include, among ``smallroom``, ``mediumroom``, ``largeroom``
            (default: the two that Kaldi's speaker-verification recipes use).
        real: also include ``real_rirs_isotropic_noises`` (read from its ``rir_list``).
        val, test: the fractions of the *rooms* (seeded) on the validation and test sides; the
            rest trains. A room is never on two sides.
        seed: chooses the sides.

    Returns:
        A summary: ``out``, ``rirs`` and ``rooms`` (totals), ``sets`` (set -> RIR count),
        ``sources`` (set -> ``rir_list`` or ``glob``), ``train`` / ``val`` / ``test`` as
        ``{"rirs", "rooms"}``, and ``warnings``.

    Raises:
        DataError: the root or a requested set is missing, a ``rir_list`` is malformed or names
            missing files, a set holds no RIRs, ids repeat, or there are fewer than 3 rooms.
        ValueError: an unknown set name, a fraction outside (0, 1), or fractions that leave
            nothing to train on.
    """
    unknown = [s for s in sets if s not in RIR_SETS]
    if unknown:
        raise ValueError(f"unknown RIR set(s) {', '.join(unknown)}; choose among {', '.join(RIR_SETS)}")
    split_counts(3, val, test)  # the fractions, checked before anything is read
    if not sets and not real:
        raise ValueError("nothing selected: give at least one simulated set or real=True")
    root = _resolve_root(Path(root).expanduser().absolute())
    out = Path(out).expanduser().absolute()

    warnings: list[str] = []
    per_set: dict[str, list[Rir]] = {}
    sources: dict[str, str] = {}
    for name in dict.fromkeys(sets):
        set_dir = root / _SIMULATED / name
        if not set_dir.is_dir():
            raise DataError(
                f"{set_dir}: RIR set not found (expected RIRS_NOISES/{_SIMULATED}/{name}/Room###/*.wav)"
            )
        if (set_dir / "rir_list").is_file():
            rirs, piped = read_rir_list(set_dir / "rir_list", root)
            sources[name] = "rir_list"
        else:
            rirs, piped = _glob_set(set_dir, name), 0
            sources[name] = "glob"
        if piped:
            warnings.append(f"{set_dir / 'rir_list'}: {piped} piped entry(ies) skipped")
        if not rirs:
            raise DataError(f"{set_dir}: no RIRs found")
        per_set[name] = rirs
    if real:
        real_list = root / _REAL / "rir_list"
        if not real_list.is_file():
            raise DataError(
                f"{real_list}: not found; the real RIRs are read from their rir_list (the folder also "
                "holds noise recordings)"
            )
        rirs, piped = read_rir_list(real_list, root)
        if piped:
            warnings.append(f"{real_list}: {piped} piped entry(ies) skipped")
        if not rirs:
            raise DataError(f"{real_list}: no RIRs listed")
        per_set["real"] = rirs
        sources["real"] = "rir_list"

    everything: dict[str, Rir] = {}
    duplicates: list[str] = []
    for rirs in per_set.values():
        for rir in rirs:
            if rir.id in everything:
                duplicates.append(rir.id)
            else:
                everything[rir.id] = rir
    if duplicates:
        raise DataError(f"{root}: RIR id(s) listed more than once: {format_offenders(duplicates)}")

    rooms = {rir.room for rir in everything.values()}
    if len(rooms) < 3:
        raise DataError(f"{root}: {len(rooms)} room(s) found; at least 3 are needed for train, val and test")
    chosen = split_groups(rooms, val, test, seed, salt="rirs")
    summary: dict[str, Any] = {
        "out": str(out),
        "rirs": len(everything),
        "rooms": len(rooms),
        "sets": {name: len(rirs) for name, rirs in per_set.items()},
        "sources": sources,
    }
    for split, side_rooms in zip(SPLITS, chosen, strict=True):
        wavs = {i: r.path for i, r in everything.items() if r.room in side_rooms}
        write_augment_dir(out / split, "rirs", wavs)
        summary[split] = {"rirs": len(wavs), "rooms": len(side_rooms)}
    # a list of every RIR, written by earlier versions, would mix the sides: remove it
    remove_lists(out, ["rirs"])
    summary["warnings"] = warnings
    return summary
