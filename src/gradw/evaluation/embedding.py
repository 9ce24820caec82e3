"""What the benchmark embeds: the test utterances under each condition, through one system.

Short utterances (no longer than the system's window) are read once, rendered under every
condition (:func:`gradw.data.conditions.render`) and embedded whole, batched by length
(:func:`gradw.evaluation.systems.embed_many`). A longer one is never held whole: it is read and
rendered window by window (:mod:`gradw.data.streaming`) and its windows' embeddings are combined
(:mod:`gradw.evaluation.windows`), which gives what embedding its whole rendering by windows gives,
to float rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from gradw.audio.io import audio_length, read_audio, read_windows
from gradw.data.conditions import Condition, render
from gradw.data.dirs import SpeechDir, check_duration
from gradw.data.lists import DataError
from gradw.data.manifest import Manifest
from gradw.data.streaming import render_windows
from gradw.evaluation.systems import System, default_batch_seconds, embed_many
from gradw.evaluation.windows import embed_windows, window_sizes

__all__ = ["embed_conditions", "embed_long"]


def embed_conditions(
    system: System,
    utts: Sequence[str],
    conditions: Sequence[Condition],
    test: SpeechDir,
    manifest: Manifest | None,
    loader: Callable[[str, str], np.ndarray] | None,
    batch_seconds: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Embeddings of ``utts`` under each condition through ``system``: condition -> utt -> (D,).

    Each utterance no longer than the system's window is read once; its renderings under the
    conditions (all of its length) are embedded together, batched with neighbouring utterances of
    the same length. A longer one goes window by window (:func:`embed_long`).
    """

    out: dict[str, dict[str, np.ndarray]] = {c.name: {} for c in conditions}
    short = []
    for utt in utts:
        sizes = window_sizes(audio_length(test.wavs[utt]), system.window_seconds)
        if len(sizes) == 1:
            short.append(utt)
            continue
        for name, emb in embed_long(
            system, utt, test.wavs[utt], sizes, conditions, manifest, loader, batch_seconds, progress
        ).items():
            out[name][utt] = emb

    def items() -> Iterable[tuple[tuple[str, str], np.ndarray]]:
        for utt in short:
            clean = read_audio(test.wavs[utt])
            check_duration(
                utt, test.wavs[utt], clean.shape[0], system.scorer.min_samples, "the speaker network"
            )
            for condition in conditions:
                if condition.category == "clean" and not condition.reverb:
                    yield (condition.name, utt), clean
                else:
                    assert manifest is not None and loader is not None
                    yield (condition.name, utt), render(manifest.entry(utt, condition), clean, loader)

    for (name, utt), emb in embed_many(system, items(), batch_seconds, progress).items():
        out[name][utt] = emb
    return out


def embed_long(
    system: System,
    utt: str,
    path: Path,
    sizes: list[int],
    conditions: Sequence[Condition],
    manifest: Manifest | None,
    loader: Callable[[str, str], np.ndarray] | None,
    batch_seconds: float | None,
    progress: Callable[[int], None] | None,
) -> dict[str, np.ndarray]:
    """An utterance longer than the system's window under each condition: condition -> (D,).

    Nothing of the length of the utterance is held: it is read and rendered window by window
    (:func:`gradw.data.streaming.render_windows`), each window embedded through the whole system
    and the embeddings combined (:func:`gradw.evaluation.windows.embed_windows`): the embedding
    the system gives the whole rendering (:meth:`System.embed_batch`), to float rounding. The
    conditions go through together as far as ``batch_seconds`` allows (one at a time on the CPU
    by default), each group in its own pass over the file.
    """
    if batch_seconds is None:
        batch_seconds = default_batch_seconds(system.device)
    group = max(1, int(batch_seconds * 16000) // max(sizes))
    out: dict[str, np.ndarray] = {}
    for first in range(0, len(conditions), group):
        chosen = conditions[first : first + group]
        entries = [None if c.category == "clean" and not c.reverb else c for c in chosen]
        if any(entries) and (manifest is None or loader is None):
            raise DataError(f"utterance {utt!r}: noisy conditions need a manifest and the noise audio")
        entries = [None if c is None else manifest.entry(utt, c) for c in entries]  # type: ignore[union-attr]
        windows = render_windows(entries, lambda: read_windows(path, sizes), sizes, loader)  # type: ignore[arg-type]
        batches = (np.stack(w) if len(w) > 1 else w[0][None] for w in windows)
        embeddings = embed_windows(batches, system.embed_whole)
        out.update((c.name, emb) for c, emb in zip(chosen, embeddings, strict=True))
        if progress is not None:
            progress(len(chosen))
    return out
