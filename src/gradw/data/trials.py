"""Verification trials: the one place where they are read, written, generated and selected.

A trial names an enrolment utterance, a test utterance and whether both come from one speaker.
Lists are Kaldi order (``enroll test target|nontarget``) or VoxCeleb order (``1|0 enroll test``);
both are read, either is written (:func:`read_pairs` also reads unlabelled ``enroll test`` lines,
as ``gradw verify --trials`` takes them). Two generators make balanced lists from ``spk2utt``:
:func:`make_trials` enumerates pairs (small corpora: every utterance pair can be listed), and
:func:`make_balanced_trials` samples them without listing all (VoxCeleb-sized lists).
"""

from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from gradw.data.lists import DataError, _check_key, _read_lines, atomic_write_text, format_offenders

if TYPE_CHECKING:
    from gradw.data.dirs import SpeechDir


@dataclass(frozen=True)
class Trial:
    """One verification trial: an enrolment utterance, a test utterance and the truth."""

    enroll: str
    test: str
    target: bool


def read_trials(path: str | os.PathLike[str]) -> list[Trial]:
    """Read a trial list in VoxCeleb (``1|0 enroll test``) or Kaldi order
    (``enroll test target|nontarget``); the order is detected per line.

    Raises:
        DataError: the file is missing or a line is in neither form (names the line numbers).
    """
    path = Path(path)
    trials: list[Trial] = []
    bad: list[int] = []
    for number, line in _read_lines(path):
        parts = line.split()
        if len(parts) == 3 and parts[0] in ("0", "1"):
            trials.append(Trial(parts[1], parts[2], parts[0] == "1"))
        elif len(parts) == 3 and parts[2] in ("target", "nontarget"):
            trials.append(Trial(parts[0], parts[1], parts[2] == "target"))
        else:
            bad.append(number)
    if bad:
        raise DataError(
            f"{path}: line(s) {format_offenders(bad)} are neither '1|0 enroll test' nor "
            "'enroll test target|nontarget'"
        )
    _check_consistent(path, trials)
    return trials


def _check_consistent(path: Path, trials: Sequence[Trial]) -> None:
    """Refuse a pair listed both as target and as non-target; warn about a pair listed twice (it
    would count twice in the EER)."""
    seen: dict[tuple[str, str], bool] = {}
    contradictory: list[str] = []
    repeated: list[str] = []
    for trial in trials:
        pair = (min(trial.enroll, trial.test), max(trial.enroll, trial.test))
        if pair in seen:
            (contradictory if seen[pair] != trial.target else repeated).append(" ".join(pair))
        seen[pair] = trial.target
    if contradictory:
        raise DataError(
            f"{path}: {len(contradictory)} pair(s) listed both as target and as non-target: "
            f"{format_offenders(contradictory)}"
        )
    if repeated:
        warnings.warn(
            f"{path}: {len(repeated)} pair(s) listed more than once (each copy counts in the EER): "
            f"{format_offenders(repeated)}",
            stacklevel=3,
        )


def read_pairs(path: str | os.PathLike[str]) -> list[tuple[str, str, bool | None]]:
    """Read a list of pairs to verify: ``enroll test`` lines, or labelled trials in either order
    (``1|0 enroll test`` or ``enroll test target|nontarget``), mixed freely; the order is detected
    per line as :func:`read_trials` does (a three-field line starting with 0 or 1 is VoxCeleb's).

    Returns:
        ``(enroll, test, target)`` per line, in file order; ``target`` is None on unlabelled lines.

    Raises:
        DataError: the file is missing, holds no pair, or a line is in none of the three forms
            (names the line numbers).
    """
    path = Path(path)
    pairs: list[tuple[str, str, bool | None]] = []
    bad: list[int] = []
    for number, line in _read_lines(path):
        parts = line.split()
        if len(parts) == 2:
            pairs.append((parts[0], parts[1], None))
        elif len(parts) == 3 and parts[0] in ("0", "1"):
            pairs.append((parts[1], parts[2], parts[0] == "1"))
        elif len(parts) == 3 and parts[2] in ("target", "nontarget"):
            pairs.append((parts[0], parts[1], parts[2] == "target"))
        else:
            bad.append(number)
    if bad:
        raise DataError(
            f"{path}: line(s) {format_offenders(bad)} are none of 'enroll test', '1|0 enroll test' "
            "and 'enroll test target|nontarget'"
        )
    if not pairs:
        raise DataError(f"{path}: no pair to verify (the file is empty)")
    return pairs


def write_trials(
    path: str | os.PathLike[str],
    trials: Iterable[Trial],
    style: Literal["kaldi", "voxceleb"] = "kaldi",
) -> None:
    """Write trials in Kaldi (``enroll test target|nontarget``) or VoxCeleb
    (``1|0 enroll test``) order, keeping their order, atomically."""
    path = Path(path)
    if style not in ("kaldi", "voxceleb"):
        raise ValueError(f"style must be 'kaldi' or 'voxceleb', not {style!r}")
    lines = []
    for trial in trials:
        _check_key(path, trial.enroll)
        _check_key(path, trial.test)
        if style == "kaldi":
            lines.append(f"{trial.enroll} {trial.test} {'target' if trial.target else 'nontarget'}\n")
        else:
            lines.append(f"{int(trial.target)} {trial.enroll} {trial.test}\n")
    atomic_write_text(path, "".join(lines))


def make_trials(spk2utt: dict[str, list[str]], max_target: int, rng: np.random.Generator) -> list[Trial]:
    """A balanced trial list: up to ``max_target`` same-speaker pairs and as many
    different-speaker pairs, each pair of two distinct utterances listed once.

    Args:
        spk2utt: speaker -> utterances.
        max_target: cap on target trials (sampled without replacement when there are more).
        rng: random generator.

    Returns:
        Trials sorted by (enroll, test); empty when fewer than two speakers have two utterances.
    """
    spk2utt = {s: sorted(u) for s, u in sorted(spk2utt.items()) if u}
    targets = [pair for utts in spk2utt.values() for pair in itertools.combinations(utts, 2)]
    if max_target <= 0 or not targets or len(spk2utt) < 2:
        return []
    if len(targets) > max_target:
        targets = [targets[i] for i in sorted(rng.choice(len(targets), max_target, replace=False))]
    utts = [(u, s) for s, us in spk2utt.items() for u in us]
    n_nontarget_all = (len(utts) ** 2 - sum(len(us) ** 2 for us in spk2utt.values())) // 2
    want = min(len(targets), n_nontarget_all)
    nontargets: set[tuple[str, str]] = set()
    if want > n_nontarget_all // 4:
        every = [
            (a, b) for (a, sa), (b, sb) in itertools.combinations(utts, 2) if sa != sb
        ]  # small lists: enumerate
        nontargets = {every[i] for i in rng.choice(len(every), want, replace=False)}
    else:
        while len(nontargets) < want:
            i, j = rng.integers(len(utts), size=2)
            (a, sa), (b, sb) = utts[i], utts[j]
            if sa != sb:
                nontargets.add((min(a, b), max(a, b)))
    trials = [Trial(a, b, True) for a, b in targets] + [Trial(a, b, False) for a, b in nontargets]
    return sorted(trials, key=lambda t: (t.enroll, t.test))


def _pair_offsets(n: int) -> np.ndarray:
    """Start index of row ``i`` when the pairs ``(i, j), i < j`` of ``n`` items are listed row
    by row."""
    i = np.arange(n - 1, dtype=np.int64)
    return i * n - i * (i + 1) // 2


def make_balanced_trials(spk2utt: Mapping[str, Sequence[str]], num_trials: int, seed: int) -> list[Trial]:
    """A balanced trial list: ``num_trials // 2`` same-speaker pairs and as many
    different-speaker pairs (fewer of both when fewer exist), each unordered pair of two distinct
    utterances at most once, sampled uniformly without listing every pair.

    Args:
        spk2utt: speaker -> utterances.
        num_trials: wanted total.
        seed: random seed (the list is a function of the inputs and the seed).

    Returns:
        Trials sorted by ``(enroll, test)``, with ``enroll < test``.
    """
    rng = np.random.default_rng(seed)
    groups = [sorted(set(utts)) for _, utts in sorted(spk2utt.items()) if utts]
    sizes = np.array([len(g) for g in groups], dtype=np.int64)
    n_target_all = int((sizes * (sizes - 1) // 2).sum())
    total = int(sizes.sum())
    n_nontarget_all = (total * total - int((sizes * sizes).sum())) // 2
    want = min(num_trials // 2, n_target_all, n_nontarget_all)
    if want <= 0:
        return []

    # target pairs: an index into all same-speaker pairs, unranked into (speaker, i, j)
    pair_counts = sizes * (sizes - 1) // 2
    starts = np.concatenate([[0], np.cumsum(pair_counts)])
    picks = rng.choice(n_target_all, size=want, replace=False)
    offsets_cache: dict[int, np.ndarray] = {}
    targets: list[tuple[str, str]] = []
    for index in np.sort(picks):
        g = int(np.searchsorted(starts, index, side="right") - 1)
        k = int(index - starts[g])
        offsets = offsets_cache.setdefault(g, _pair_offsets(int(sizes[g])))
        i = int(np.searchsorted(offsets, k, side="right") - 1)
        j = k - int(offsets[i]) + i + 1
        targets.append((groups[g][i], groups[g][j]))

    # non-target pairs: rejection sampling (or enumeration when most pairs are wanted)
    utts = [(u, s) for s, g in enumerate(groups) for u in g]
    nontargets: set[tuple[str, str]] = set()
    if want * 4 > n_nontarget_all:
        every = [
            (min(a, b), max(a, b)) for x, (a, sa) in enumerate(utts) for b, sb in utts[x + 1 :] if sa != sb
        ]
        nontargets = {every[int(i)] for i in rng.choice(len(every), size=want, replace=False)}
    else:
        while len(nontargets) < want:
            for x, y in rng.integers(total, size=(2 * (want - len(nontargets)), 2)):
                (a, sa), (b, sb) = utts[int(x)], utts[int(y)]
                if sa != sb and len(nontargets) < want:
                    nontargets.add((min(a, b), max(a, b)))
    trials = [Trial(a, b, True) for a, b in targets] + [Trial(a, b, False) for a, b in nontargets]
    return sorted(trials, key=lambda t: (t.enroll, t.test))


def select_trials(trials: list[Trial], max_trials: int | None, seed: int) -> list[Trial]:
    """At most ``max_trials`` trials, a seeded sample keeping the target share (all when None).

    The sample keeps at least one trial of each class, so it needs ``max_trials >= 2``.
    """
    if max_trials is not None and max_trials < 2:
        raise DataError(f"max_trials must be at least 2 (a target and a non-target), got {max_trials}")
    if max_trials is None or len(trials) <= max_trials:
        return trials
    rng = np.random.default_rng([seed, 7])
    targets = [t for t in trials if t.target]
    others = [t for t in trials if not t.target]
    n_target = min(max(1, round(max_trials * len(targets) / len(trials))), max_trials - 1)
    keep_t = rng.choice(len(targets), size=min(n_target, len(targets)), replace=False)
    keep_n = rng.choice(len(others), size=min(max_trials - len(keep_t), len(others)), replace=False)
    chosen = {id(targets[i]) for i in keep_t} | {id(others[i]) for i in keep_n}
    return [t for t in trials if id(t) in chosen]


def load_trials(test: SpeechDir, name: str) -> list[Trial]:
    """The trial list ``name`` of a test directory (``trials`` by default, or a path)."""
    path = Path(name) if Path(name).is_file() else test.root / name
    if not path.is_file():
        raise DataError(f"{test.root}: no trial list {name!r}")
    trials = read_trials(path)
    unknown = sorted({u for t in trials for u in (t.enroll, t.test)} - set(test.wavs))
    if unknown:
        raise DataError(f"{path}: trials name utterances missing from wav.scp: {', '.join(unknown[:5])}")
    if not any(t.target for t in trials) or all(t.target for t in trials):
        raise DataError(f"{path}: needs both target and non-target trials (EER is undefined otherwise)")
    return trials
