"""Long recordings in overlapping chunks, so G's memory does not grow with their length.

**Long recordings** (:func:`plan_chunks`) are processed in the fewest overlapping chunks of at
most 30 s (by default) with at least 2 s of overlap, of about equal length, each starting on G's
8-frame downsampling grid, so the U-Net, whose activations grow with T (about 100 MB per minute
of audio at the paper's width), never sees more than one chunk. The output is yielded chunk by
chunk as it becomes final (:meth:`Enhancer.enhance_blocks`) and files are written block by block;
``gradw enhance`` also decodes its input block by block into a temporary 16 kHz file and reads
each chunk from there (:meth:`Enhancer.enhance_file`), so its memory does not grow with the length
of the recording. Two things would make a chunk's mask differ from the whole-file mask:

* CMN: the features of a chunk would be normalised by the chunk's own mean. A first, cheap pass
  (front-end only) computes the whole recording's mean log-mel, counting each frame once, and
  every chunk is normalised by it, so chunked features equal whole-file features.
* The U-Net itself is not local: its decoder uses instance normalisation (statistics over the
  whole input map) and its receptive field spans many frames. These differences remain.

Each chunk is enhanced on its own and the outputs are cross-faded with complementary raised-
cosine weights over the middle half of each overlap (1 s by default), away from both chunk edges.
Chunked and whole-file outputs are therefore close but not bit-identical (the tests bound the
difference; see ``tests/test_enhance.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

DEFAULT_CHUNK_SECONDS = 30.0
DEFAULT_OVERLAP_SECONDS = 2.0
#: Suffixes picked up when a directory is scanned (case-insensitive); files named explicitly are

#: ``read(start, stop)`` -> (stop - start,) float32 samples of a recording at 16 kHz
Reader = Callable[[int, int], Tensor]

# ---------------------------------------------------------------------------------------------
# chunking


@dataclass(frozen=True)
class Chunk:
    """One chunk of a long recording, in samples.

    Attributes:
        start, stop: the samples fed to the network, ``[start, stop)``.
        own_start, own_stop: the samples this chunk answers for; the own ranges of a plan tile
            ``[0, N)``. A mel frame belongs to the chunk whose own range holds its centre.
        fade_in, fade_out: lengths of the raised-cosine cross-fades centred on ``own_start`` and
            ``own_stop`` (0 at the ends of the recording).
    """

    start: int
    stop: int
    own_start: int
    own_stop: int
    fade_in: int = 0
    fade_out: int = 0

    def weights(self) -> Tensor:
        """(stop - start,) float32 output weights: 1 on the own range, complementary raised-
        cosine ramps across each shared boundary, 0 beyond them."""
        n = torch.arange(self.start, self.stop, dtype=torch.float64)
        w = torch.ones_like(n)
        if self.fade_in:
            w = w * _ramp(n, self.own_start, self.fade_in)
        if self.fade_out:
            w = w * (1.0 - _ramp(n, self.own_stop, self.fade_out))
        return w.float()


def _ramp(n: Tensor, centre: int, width: int) -> Tensor:
    """Raised-cosine rise from 0 to 1 over ``[centre - width / 2, centre + width / 2)``."""
    r = ((n - (centre - width / 2.0) + 0.5) / width).clamp(0.0, 1.0)
    return 0.5 - 0.5 * torch.cos(math.pi * r)


def plan_chunks(
    num_samples: int,
    chunk_samples: int | None,
    overlap_samples: int,
    align: int = 1,
    crossfade: int | None = None,
) -> list[Chunk]:
    """Split ``[0, num_samples)`` into the fewest overlapping chunks, all of about one length.

    The number of chunks is the least that keeps every chunk within ``chunk_samples`` and every
    overlap at least ``overlap_samples``; the recording is then shared evenly between them, so no
    work is spent on a last chunk that is mostly overlap (60 s in chunks of 30 s with 4 s of
    overlap: three chunks of about 23 s, not three of 30 s). Chunk starts are multiples of
    ``align`` (the hop, so every chunk's frames lie on the recording's frame grid); the last
    chunk ends at ``num_samples`` (it may be up to ``align - 1`` samples longer than the others).
    The boundary between two own ranges sits in the middle of their overlap (rounded down to
    ``align``), and the cross-fade there spans ``crossfade`` samples (default half the overlap),
    shortened if needed to stay inside both chunks.

    Args:
        num_samples: N.
        chunk_samples: longest chunk; None (or N <= chunk length) gives one chunk.
        overlap_samples: minimum overlap between consecutive chunks.
        align: granularity of chunk starts and boundaries.
        crossfade: cross-fade length at each boundary.

    Returns:
        The chunks, in order.

    Raises:
        ValueError: for a non-positive length or an overlap that leaves no progress.
    """
    if num_samples <= 0:
        raise ValueError(f"need a positive number of samples, got {num_samples}")
    if chunk_samples is None or num_samples <= chunk_samples:
        return [Chunk(0, num_samples, 0, num_samples)]
    if align < 1 or overlap_samples < 0:
        raise ValueError(f"need align >= 1 and overlap >= 0, got {align}, {overlap_samples}")
    # two steps of `align` are kept in hand for rounding the length up and the starts down
    longest = chunk_samples // align * align - 2 * align
    overlap = -(-overlap_samples // align) * align
    if longest - overlap <= 0:
        raise ValueError(
            f"chunks of {chunk_samples} samples with {overlap_samples} samples of overlap make no progress"
        )
    count = -(-(num_samples - overlap) // (longest - overlap))  # fewest chunks of <= longest samples
    # k chunks of c samples with overlaps >= O cover N when k c - (k - 1) O >= N
    chunk = -(-(num_samples + (count - 1) * overlap) // count)
    chunk = -(-chunk // align) * align + align
    last = (num_samples - chunk) // align * align
    starts = [(i * last) // (count - 1) // align * align for i in range(count - 1)] + [last]
    stops = [s + chunk for s in starts[:-1]] + [num_samples]
    fade = overlap // 2 if crossfade is None else int(crossfade)
    bounds = []
    fades = []
    for i in range(len(starts) - 1):
        lo, hi = starts[i + 1], stops[i]
        b = (lo + hi) // 2 // align * align
        if not lo < b < hi:
            b = (lo + hi) // 2
        bounds.append(b)
        fades.append(max(0, min(fade, 2 * (b - lo), 2 * (hi - b))))
    own_starts = [0, *bounds]
    own_stops = [*bounds, num_samples]
    fade_ins = [0, *fades]
    fade_outs = [*fades, 0]
    return [
        Chunk(s, e, os_, oe, fi, fo)
        for s, e, os_, oe, fi, fo in zip(
            starts, stops, own_starts, own_stops, fade_ins, fade_outs, strict=True
        )
    ]


def own_frames(chunk: Chunk, num_frames: int, centre: float, hop: int) -> Tensor:
    """(num_frames,) bool: which of a chunk's mel frames it owns.

    A frame is owned when its centre lies in ``[own_start, own_stop)``; the first chunk also owns
    frames centred before its start and the last chunk frames centred at or after its end (a
    ``center=True`` front-end has a frame centred on sample N), so the chunks of a plan own every
    frame of the recording exactly once.
    """
    centres = chunk.start + centre + hop * torch.arange(num_frames, dtype=torch.float64)
    keep = torch.ones(num_frames, dtype=torch.bool)
    if chunk.own_start > chunk.start:
        keep &= centres >= chunk.own_start
    if chunk.own_stop < chunk.stop:
        keep &= centres < chunk.own_stop
    return keep
