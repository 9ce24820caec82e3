"""Long utterances window by window: what the manifest measures of them, and their renderings under
the conditions, without ever holding a whole-length copy of one.

Reading a long utterance whole, then rendering it whole under a condition, costs a few float32
copies of it (3.7 MiB per minute each). Here it is read in consecutive windows
(:func:`gradw.audio.io.read_windows`), and:

* the manifest's levels (:func:`speech_levels`, :func:`streamed_gains`) are sums of squares
  accumulated window by window: the speech, its reverberation, each noise segment and the babble
  sum, so the gains are those of the whole utterance (to float rounding);
* an entry is rendered window by window (:func:`render_windows`): each window's noise is the
  segment of the noise file at the window's own position in the utterance (the same samples the
  whole rendering adds there), the reverberation is an overlap-add that carries the convolution's
  tail into the next window (:class:`gradw.audio.mixing.Reverberator`), and the clip guard's peak
  is found by a first pass, so the scale is the whole mixture's.

The windows of a rendering, put end to end, are the whole rendering
(:func:`gradw.data.conditions.render`): sample for sample without reverberation, to float rounding
with it.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

from gradw.audio.io import rechunk
from gradw.audio.mixing import (
    Reverberator,
    apply_scale,
    fit_length,
    fitted_power_db,
    gain_for_levels,
    peak_scale,
    unit_gains,
    weighted_sum,
)
from gradw.data.conditions import Entry, Loader, _checked
from gradw.data.lists import DataError

__all__ = ["render_windows", "speech_levels", "streamed_gains"]


def _sum_squares(x: np.ndarray) -> float:
    return float(np.sum(np.square(x.astype(np.float64))))


def _level(total: float, n: int) -> float:
    """``power_db(x, 0.0)`` from the sum of squares of (n,) samples."""
    return 10.0 * math.log10(total / n) if total > 0 else -math.inf


def speech_levels(
    blocks: Iterable[np.ndarray], num_samples: int, rir: np.ndarray | None
) -> dict[bool, float]:
    """The levels (``power_db``, floor 0) of a clean utterance given in consecutive blocks
    (``False``) and, when ``rir`` is given, of its reverberation (``True``, as
    :func:`gradw.audio.mixing.reverberate` makes it).

    Raises:
        DataError: the blocks do not hold ``num_samples`` samples.
    """
    reverb = None if rir is None else Reverberator(rir, num_samples)
    dry = wet = 0.0
    count = 0
    for block in blocks:
        count += block.shape[0]
        if count > num_samples:
            break
        dry += _sum_squares(block)
        if reverb is not None:
            wet += _sum_squares(reverb.push(block))
    if count != num_samples:
        raise DataError(f"the utterance holds {count} samples where {num_samples} were expected")
    levels = {False: _level(dry, num_samples)}
    if reverb is not None:
        levels[True] = _level(wet + _sum_squares(reverb.finish()), num_samples)
    return levels


def streamed_gains(
    speech_db: float, audio: Sequence[np.ndarray], offsets: Sequence[int], snr_db: float, n: int, block: int
) -> list[float]:
    """The exact-SNR gains of :func:`gradw.data.conditions._gains` for an utterance of ``n``
    samples at level ``speech_db``, the noise segments taken ``block`` samples at a time.

    Raises:
        MixingError: a near-silent speech or noise.
    """
    if len(audio) == 1:
        return [gain_for_levels(speech_db, fitted_power_db(audio[0], n, offsets[0], block), snr_db, True)]
    unit = unit_gains([fitted_power_db(a, n, o, block) for a, o in zip(audio, offsets, strict=True)])
    total = 0.0
    for start in range(0, n, block):
        size = min(block, n - start)
        pieces = [
            fit_length(a, size, offset=(o + start) % a.shape[0])[0]
            for a, o in zip(audio, offsets, strict=True)
        ]
        total += _sum_squares(weighted_sum(pieces, unit))
    overall = gain_for_levels(speech_db, _level(total, n), snr_db, True)
    return [overall * u for u in unit]


def _reverberated(rir: np.ndarray, n: int, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    reverb = Reverberator(rir, n)
    for block in blocks:
        out = reverb.push(block)
        if out.shape[0]:
            yield out
    yield reverb.finish()


def _fan_out(source: Iterable[np.ndarray], count: int) -> list[Iterator[np.ndarray]]:
    """``count`` iterators over ``source``'s items, each item held only until every iterator has
    passed it (``itertools.tee`` keeps dozens of items alive in its buffer links)."""
    items = iter(source)
    queues: list[collections.deque[np.ndarray]] = [collections.deque() for _ in range(count)]

    def follow(queue: collections.deque[np.ndarray]) -> Iterator[np.ndarray]:
        while True:
            if not queue:
                item = next(items, None)
                if item is None:
                    return
                for each in queues:
                    each.append(item)
            yield queue.popleft()

    return [follow(queue) for queue in queues]


def _mixed(
    entries: Sequence[Entry | None], windows: Iterable[np.ndarray], sizes: Sequence[int], loader: Loader
) -> Iterator[list[np.ndarray]]:
    """The renderings of each window before the clip guard (see :func:`render_windows`)."""
    n = sum(sizes)
    for entry in entries:
        if entry is not None and entry.num_samples != n:
            raise DataError(
                f"utterance {entry.utt!r} ({entry.condition}): the clean audio has {n} samples, the "
                f"manifest expects {entry.num_samples}"
            )
    rirs = {e.rir.key: e for e in entries if e is not None and e.rir is not None}
    copies = _fan_out(windows, 1 + len(rirs))
    wet = {
        key: rechunk(_reverberated(_checked(loader, "rirs", key, e.rir.length, e), n, copy), sizes)  # type: ignore[union-attr]
        for (key, e), copy in zip(rirs.items(), copies[1:], strict=True)
    }
    noises = [
        [] if e is None else [(s, _checked(loader, s.category, s.key, s.length, e)) for s in e.sources]
        for e in entries
    ]
    start = 0
    for size, clean in zip(sizes, copies[0], strict=True):
        reverberant = {key: next(stream) for key, stream in wet.items()}
        out = []
        for entry, sources in zip(entries, noises, strict=True):
            if entry is None:
                out.append(clean)
                continue
            speech = clean if entry.rir is None else reverberant[entry.rir.key]
            if sources:
                noise = np.zeros(size, dtype=np.float32)
                for source, audio in sources:
                    segment, _ = fit_length(audio, size, offset=(source.offset + start) % audio.shape[0])
                    noise += np.float32(source.gain) * segment
                speech = speech + noise
            out.append(speech.astype(np.float32, copy=False))
        start += size
        yield out


def render_windows(
    entries: Sequence[Entry | None],
    read: Callable[[], Iterable[np.ndarray]],
    sizes: Sequence[int],
    loader: Loader,
    clip_guard: bool = True,
) -> Iterator[list[np.ndarray]]:
    """Render manifest entries of one utterance window by window.

    Args:
        entries: the entries (None: the clean utterance itself, not rendered).
        read: ``read()`` gives the clean utterance's consecutive (``sizes[j]``,) float32 windows
            (e.g. :func:`gradw.audio.io.read_windows`); called twice when the clip guard needs the
            mixtures' peaks first.
        sizes: the windows' lengths; they sum to the utterance's length.
        loader: ``loader(category, key)`` for the augmentation audio.
        clip_guard: as :func:`gradw.data.conditions.render` (the scale of the whole mixture).

    Yields:
        For each window in turn, the list of its renderings (``sizes[j]``,) float32, one per entry:
        end to end, an entry's windows are ``render(entry, clean, loader, clip_guard)``.

    Raises:
        DataError: the clean audio or an augmentation file does not have the length recorded in
            the manifest.
    """
    scales = [1.0] * len(entries)
    if clip_guard and any(e is not None for e in entries):
        tops = [0.0] * len(entries)
        for renderings in _mixed(entries, read(), sizes, loader):
            tops = [max(top, float(np.max(np.abs(w)))) for top, w in zip(tops, renderings, strict=True)]
        scales = [1.0 if e is None else peak_scale(top) for e, top in zip(entries, tops, strict=True)]
    for renderings in _mixed(entries, read(), sizes, loader):
        yield [apply_scale(w, scale) for w, scale in zip(renderings, scales, strict=True)]
