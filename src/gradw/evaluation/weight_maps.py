"""``gradw inspect``: what E attends to, and where Grad-W puts its weight, for one utterance.

A figure in the manner of the authors' analysis routine, for one utterance under
one condition and one or more enhancers G (for example ``gradw`` and ``equalw``):

- row 0: E's features (CMN log-mel) of the clean and the noisy input; the gradient map of the
  true-speaker logit on the clean input; the activation difference without enhancement
  ``sum_c |A_ref - A_noisy|``; the numbers;
- one row per G: the enhanced features and the mask M; the gradient map on the enhanced input;
  ``sum_c |A_ref - A_enh|``; the weights P of Equal-W and of the chosen gradient scheme
  (``gradw-norm`` by default) on a shared colour scale; and the P-weighted difference
  ``P * sum_c |A_ref - A_enh|``, whose sum is that scheme's loss for the utterance.

A *gradient map* is the channel sum ``sum_c d s / d A_c`` of the gradient of the true-speaker
logit s with respect to E's tap activation A (the ``G_ref`` / ``G_enh`` of the authors' code).

The true-speaker logit. With a head on E and a speaker label, it is the head's scaled cosine
``s * cos(e, w_y)`` of that class, as in training. Without a head (the pretrained CAM++ has none)
or without a label, the logit is the scaled cosine ``32 * cos(e, t)`` to a *target embedding* t:
pass ``target_embedding`` (``gradw inspect`` uses the mean clean embedding of the speaker's other
utterances in the test set, a centroid like the heads built for training). When no target is
given, the utterance's own clean embedding is used: then the clean logit sits at its maximum (32)
and its gradient vanishes (the clean map is zero up to rounding), so P reflects the enhanced
gradient alone; the result records this in ``notes``.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from gradw.losses import activation_weights, logit_gradient, weight_stats
from gradw.losses.weights import WEIGHT_SCHEMES
from gradw.models.speaker import SpeakerNetwork

__all__ = [
    "TARGET_SCALE",
    "inspect_utterance",
    "parse_checkpoint_args",
    "speaker_target",
]

#: Logit scale of the target-cosine logit (the paper's head scale).
TARGET_SCALE = 32.0


# ---------------------------------------------------------------------------------------------
# the numbers


def _tap_gradient(
    speaker: SpeakerNetwork, activation: Tensor, label: int | None, target: Tensor | None
) -> tuple[Tensor, float, Tensor]:
    """(1, C, F', T') activation -> (gradient (1, C, F', T'), logit, embedding (1, D)), detached.

    With ``label`` the head's logit of that class; otherwise ``TARGET_SCALE * cos(e, target)``.
    """
    if label is not None:
        result = logit_gradient(speaker, activation, torch.tensor([label], device=activation.device))
        return result.gradient, float(result.logit[0]), result.embedding
    assert target is not None
    with torch.enable_grad():
        leaf = activation.detach().requires_grad_(True)
        embedding = speaker.from_tap(leaf)
        logit = TARGET_SCALE * F.cosine_similarity(embedding, target.to(embedding)[None], dim=-1)
        (gradient,) = torch.autograd.grad(logit.sum(), leaf)
    return gradient.detach(), float(logit.detach()[0]), embedding.detach()


def _np(x: Tensor) -> np.ndarray:
    return x.detach().to(torch.float64).cpu().numpy()


def _cosine(a: Tensor, b: Tensor) -> float:
    return float(F.cosine_similarity(a.reshape(1, -1), b.reshape(1, -1).to(a)).item())


def _check_wavs(clean_wav: np.ndarray, noisy_wav: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    clean = np.asarray(clean_wav, dtype=np.float32)
    noisy = np.asarray(noisy_wav, dtype=np.float32)
    if clean.ndim != 1 or noisy.ndim != 1:
        raise ValueError(f"waveforms must be 1-D, got shapes {clean.shape} and {noisy.shape}")
    if clean.shape != noisy.shape:
        raise ValueError(
            f"clean and noisy waveforms must have the same length (the noisy one is the clean one "
            f"plus noise), got {clean.shape[0]} and {noisy.shape[0]} samples"
        )
    return clean, noisy


def _load_bundles(checkpoints: Mapping[str, str | Path]) -> dict[str, Any]:
    from gradw.models.loading import load_enhancer

    if not checkpoints:
        raise ValueError("no enhancer checkpoint given")
    return {label: load_enhancer(path) for label, path in checkpoints.items()}


def _speaker_from(bundle: Any) -> SpeakerNetwork:
    """The E a G checkpoint records it was trained against."""
    from gradw.models.loading import load_speaker_network

    spec = bundle.speaker or {}
    if not spec.get("name"):
        raise ValueError("the enhancer checkpoint does not record its speaker network; pass speaker=")
    return load_speaker_network(spec["name"], checkpoint=spec.get("checkpoint"), tap=spec.get("tap"))


def inspect_utterance(
    checkpoints: Mapping[str, str | Path],
    clean_wav: np.ndarray,
    noisy_wav: np.ndarray,
    speaker_label: int | None,
    out_png: str | Path | None,
    speaker: SpeakerNetwork | None = None,
    scheme: str = "gradw-norm",
    target_embedding: np.ndarray | Tensor | None = None,
    title: str | None = None,
    temperature: float = 1.0,
    clip: float | None = 3.0,
    dpi: int = 150,
) -> dict[str, Any]:
    """Compute and plot E's gradient maps, the weights P and the activation differences.

    Args:
        checkpoints: label -> G checkpoint (``gradw train`` output), in plotting order.
        clean_wav: (N,) float32 16 kHz clean utterance.
        noisy_wav: (N,) the same utterance corrupted (same length).
        speaker_label: the true speaker's class in E's head, or None (see ``target_embedding``).
        out_png: where to write the figure, in the format its suffix names (``.png``,
            ``.pdf`` or ``.svg``; checked before any work), or None: compute only.
        speaker: E (default: the network the first checkpoint was trained against). Put in eval
            mode; its parameters are not changed.
        scheme: the gradient scheme plotted beside Equal-W (``gradw-norm``, ``gradw``, ``absdiff``
            or ``minmax``; see :mod:`gradw.losses.weights`).
        target_embedding: (D,) target of the logit when E has no head or no label is given:
            ``32 * cos(e, target)``. Default: the clean embedding of this utterance (see the
            module docstring for why a speaker centroid is better).
        title: a line on top of the figure (e.g. the utterance and the condition).
        temperature, clip: options of ``scheme`` (as in training).
        dpi: resolution of a PNG (and of the raster images inside a PDF or SVG).

    Returns:
        ``figure`` (the path written, or None; also under its former key ``png``, whatever
        the format); ``logit`` (``kind``: ``head`` or ``target-cosine``, ``label``,
        ``scale``); ``logits`` and ``cosine_to_clean`` (``clean``, ``noisy`` and each label);
        ``systems``: label -> ``mask_mean``, ``weights`` (scheme -> :func:`weight_stats` plus
        ``sum``, for ``equal``, ``scheme`` and the paper's ``gradw``), ``weighted_l1`` (scheme ->
        the utterance's loss ``sum P |A_ref - A_enh|``), ``grad_diff_std``; ``maps``: the plotted
        arrays (``features``, ``mask``, ``gradient``, ``difference``, ``weights``,
        ``weighted_difference``); ``shapes``; ``notes``.

    Raises:
        ValueError: unequal lengths, an unknown scheme, a G whose mask lives on another mel grid
            than E's, or a label outside E's head.
        gradw.evaluation.report.plots.FigureError: a figure suffix other than png, pdf, svg.
    """
    from gradw.evaluation.report.plots import figure_format

    if out_png is not None:
        figure_format(out_png)  # a bad suffix fails before any work
    from gradw.audio.frontends import frontend_name

    if scheme not in WEIGHT_SCHEMES or scheme == "equal":
        raise ValueError(f"scheme must be one of {', '.join(s for s in WEIGHT_SCHEMES if s != 'equal')}")
    clean_np, noisy_np = _check_wavs(clean_wav, noisy_wav)
    bundles = _load_bundles(checkpoints)
    notes: list[str] = []
    if speaker is None:
        speaker = _speaker_from(next(iter(bundles.values())))
        recorded = {str(sorted((b.speaker or {}).items())) for b in bundles.values()}
        if len(recorded) > 1:
            notes.append(
                "the checkpoints were trained against different speaker networks; E of the first is used"
            )
    speaker.eval()
    grid = frontend_name(speaker.frontend)
    for label, bundle in bundles.items():
        if bundle.frontend != grid:
            raise ValueError(
                f"checkpoint {label!r}: G's mask lives on the {bundle.frontend!r} mel grid, "
                f"E uses {grid!r}; inspect it with the speaker network it was trained against"
            )
    device = next(speaker.parameters()).device

    if speaker_label is not None:
        if speaker.head is None:
            notes.append("E has no head: the speaker label is ignored, the target-cosine logit is used")
            speaker_label = None
        elif not 0 <= speaker_label < speaker.head.num_classes:
            raise ValueError(
                f"speaker label {speaker_label} is outside E's head (0..{speaker.head.num_classes - 1})"
            )

    with torch.no_grad():
        clean = torch.from_numpy(clean_np)[None].to(device)
        noisy = torch.from_numpy(noisy_np)[None].to(device)
        mel_clean = speaker.mel_power(clean)
        mel_noisy = speaker.mel_power(noisy)
        feats_clean = speaker.features(mel_clean)
        feats_noisy = speaker.features(mel_noisy)
        a_ref = speaker.to_tap(feats_clean)
        a_noisy = speaker.to_tap(feats_noisy)

    target: Tensor | None = None
    if speaker_label is None:
        if target_embedding is None:
            with torch.no_grad():
                target = speaker.from_tap(a_ref)[0]
            notes.append(
                "logit target = this utterance's clean embedding: the clean logit is at its maximum "
                "and its gradient vanishes"
            )
        else:
            target = torch.as_tensor(np.asarray(target_embedding, dtype=np.float32)).reshape(-1).to(device)
            if target.shape[0] != speaker.embedding_dim:
                raise ValueError(
                    f"target_embedding has {target.shape[0]} dimensions, "
                    f"E's embedding has {speaker.embedding_dim}"
                )

    g_ref, logit_ref, emb_ref = _tap_gradient(speaker, a_ref, speaker_label, target)
    g_noisy, logit_noisy, emb_noisy = _tap_gradient(speaker, a_noisy, speaker_label, target)
    diff_noisy = (a_ref - a_noisy).abs().sum(dim=1)[0]
    result: dict[str, Any] = {
        "png": None,
        "figure": None,
        "logit": {
            "kind": "head" if speaker_label is not None else "target-cosine",
            "label": speaker_label,
            "scale": speaker.head.scale
            if speaker_label is not None and speaker.head is not None
            else TARGET_SCALE,
        },
        "logits": {"clean": logit_ref, "noisy": logit_noisy},
        "cosine_to_clean": {"clean": 1.0, "noisy": _cosine(emb_noisy, emb_ref)},
        "systems": {},
        "maps": {
            "features": {"clean": _np(feats_clean[0]), "noisy": _np(feats_noisy[0])},
            "mask": {},
            "gradient": {"clean": _np(g_ref.sum(dim=1)[0]), "noisy": _np(g_noisy.sum(dim=1)[0])},
            "difference": {"noisy": _np(diff_noisy)},
            "weights": {},
            "weighted_difference": {},
        },
        "shapes": {"features": list(feats_clean.shape[1:]), "tap": list(a_ref.shape[1:])},
        "frame_seconds": speaker.frontend.hop_length / speaker.frontend.sample_rate,
        "scheme": scheme,
        "notes": notes,
    }
    schemes = list(dict.fromkeys(["equal", scheme, "gradw"]))
    for label, bundle in bundles.items():
        enhancer = bundle.enhancer.to(device).eval()
        with torch.no_grad():
            mask = enhancer(feats_noisy)
            feats_enh = speaker.features(mel_noisy, mask)
            a_enh = speaker.to_tap(feats_enh)
        g_enh, logit_enh, emb_enh = _tap_gradient(speaker, a_enh, speaker_label, target)
        diff = (a_ref - a_enh).abs().sum(dim=1, keepdim=True)  # (1, 1, F', T')
        weights = {
            s: activation_weights(g_enh, g_ref, s, temperature if s == scheme else 1.0, clip) for s in schemes
        }
        stats = {s: {**weight_stats(w), "sum": float(w.sum())} for s, w in weights.items()}
        d = (g_enh - g_ref).sum(dim=1).flatten(1)
        result["logits"][label] = logit_enh
        result["cosine_to_clean"][label] = _cosine(emb_enh, emb_ref)
        result["systems"][label] = {
            "mask_mean": float(mask.mean()),
            "weights": stats,
            "weighted_l1": {s: float((w * diff).sum()) for s, w in weights.items()},
            "grad_diff_std": float(d.std(correction=0)),
            "checkpoint": str(checkpoints[label]),
        }
        maps = result["maps"]
        maps["features"][label] = _np(feats_enh[0])
        maps["mask"][label] = _np(mask[0])
        maps["gradient"][label] = _np(g_enh.sum(dim=1)[0])
        maps["difference"][label] = _np(diff[0, 0])
        maps["weights"][label] = {s: _np(w[0, 0]) for s, w in weights.items()}
        maps["weighted_difference"][label] = _np((weights[scheme] * diff)[0, 0])

    if out_png is not None:
        result["png"] = result["figure"] = _plot(result, Path(out_png), title, dpi)
    return result


# ---------------------------------------------------------------------------------------------
# the figure

_SCHEME_NAMES = {"equal": "Equal-W", "gradw": "Grad-W", "gradw-norm": "Grad-W (norm)"}


def _plot(result: dict[str, Any], path: Path, title: str | None, dpi: int = 150) -> Path:
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    from gradw.evaluation.report.plots import new_figure, save_figure

    maps = result["maps"]
    labels = list(result["systems"])
    scheme = result["scheme"]
    scheme_name = _SCHEME_NAMES.get(scheme, scheme)
    n_rows, n_cols = 1 + len(labels), 7
    fig = new_figure(2.7 * n_cols, 2.35 * n_rows + (0.3 if title else 0.0))
    if title:
        fig.suptitle(title, fontsize=11)
    grid = fig.add_gridspec(n_rows, n_cols)

    feats = [maps["features"][k] for k in ["clean", "noisy", *labels]]
    f_lo = float(np.percentile(np.concatenate([f.ravel() for f in feats]), 1))
    f_hi = float(np.percentile(np.concatenate([f.ravel() for f in feats]), 99.5))
    grads = [maps["gradient"][k] for k in ["clean", *labels]]
    g_max = max(float(np.percentile(np.abs(np.concatenate([g.ravel() for g in grads])), 99.5)), 1e-30)
    d_max = max(float(max(maps["difference"][k].max() for k in maps["difference"])), 1e-30)

    frames = maps["features"]["clean"].shape[-1]
    seconds = frames * float(result.get("frame_seconds", 0.01))  # every map spans the same audio

    def show(
        row: int,
        col: int,
        image: np.ndarray,
        name: str,
        cmap: str,
        vmin: float,
        vmax: float,
        bar: bool = True,
    ) -> None:
        """One panel on a time axis in seconds: an image (mel band or the tap's frequency bin on
        y), or a curve when the tap has no frequency axis (one row, e.g. CAM++'s pool input)."""
        ax = fig.add_subplot(grid[row, col])
        ax.set_title(name, fontsize=8.5)
        ax.tick_params(labelsize=6.5)
        if row == n_rows - 1:
            ax.set_xlabel("time (s)", fontsize=7.5)
        if image.shape[0] == 1:
            t = (np.arange(image.shape[1]) + 0.5) * seconds / image.shape[1]
            ax.plot(t, image[0], lw=0.8, color="C0")
            ax.set_xlim(0.0, seconds)
            ax.set_ylim(vmin, vmax if vmax > vmin else vmin + 1.0)
            ax.grid(alpha=0.3)
            if col == 2:
                ax.set_ylabel("value per tap frame", fontsize=7.5)
            return
        im = ax.imshow(
            image,
            origin="lower",
            aspect="auto",
            cmap=cmap,
            vmin=vmin,
            vmax=vmax,
            interpolation="nearest",
            extent=(0.0, seconds, 0.0, float(image.shape[0])),
        )
        if col == 0:
            ax.set_ylabel("mel band", fontsize=7.5)
        elif col == 2:
            ax.set_ylabel(f"tap freq. bin (of {image.shape[0]})", fontsize=7.5)
        if bar:
            cb = fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02)
            cb.ax.tick_params(labelsize=6)
            cb.locator = MaxNLocator(5)
            cb.formatter = FuncFormatter(lambda v, _: f"{v:.2g}")  # no offset text over the titles
            cb.update_ticks()

    show(0, 0, maps["features"]["clean"], "clean log-mel (E)", "magma", f_lo, f_hi)
    show(0, 1, maps["features"]["noisy"], "noisy log-mel (E)", "magma", f_lo, f_hi)
    show(0, 2, maps["gradient"]["clean"], "grad. map, clean: Σc ∂s/∂A", "RdBu_r", -g_max, g_max)
    show(0, 3, maps["difference"]["noisy"], "Σc|A_ref − A_noisy| (no G)", "inferno", 0.0, d_max)
    text = fig.add_subplot(grid[0, 4:])
    text.axis("off")
    text.text(0.0, 1.0, _summary_text(result), va="top", ha="left", family="monospace", fontsize=7.5)

    for i, label in enumerate(labels, start=1):
        stats = result["systems"][label]
        w = maps["weights"][label]
        n = w["equal"].size  # P is shown as F'T' * P: 1 = the uniform weight of Equal-W
        w_max = n * float(max(w["equal"].max(), w[scheme].max()))
        show(i, 0, maps["features"][label], f"{label}: enhanced log-mel", "magma", f_lo, f_hi)
        show(i, 1, maps["mask"][label], f"{label}: mask M (mean {stats['mask_mean']:.2f})", "gray", 0.0, 1.0)
        show(i, 2, maps["gradient"][label], f"{label}: grad. map, enhanced", "RdBu_r", -g_max, g_max)
        show(i, 3, maps["difference"][label], f"{label}: Σc|A_ref − A_enh|", "inferno", 0.0, d_max)
        for col, s in ((4, "equal"), (5, scheme)):
            h = stats["weights"][s]["weight_entropy"]
            name = f"F'T'·P {_SCHEME_NAMES.get(s, s)} (H={h:.3f})"
            show(i, col, n * w[s], name, "viridis", 0.0, w_max)
        weighted = n * maps["weighted_difference"][label]
        loss = stats["weighted_l1"][scheme]
        name = f"F'T'·P·Σc|ΔA|, {scheme_name}: loss {loss:.3g}"
        show(i, 6, weighted, name, "inferno", 0.0, max(float(weighted.max()), 1e-30))
    return save_figure(fig, path, dpi=dpi)


def _summary_text(result: dict[str, Any]) -> str:
    logit = result["logit"]
    kind = f"head class {logit['label']}" if logit["kind"] == "head" else f"{logit['scale']:g}·cos(e, target)"
    lines = [f"true-speaker logit s = {kind}"]
    width = max(len(k) for k in result["logits"])
    lines.append(f"{'':<{width}}  {'logit':>7}  {'cos(e,e_clean)':>14}")
    for k, v in result["logits"].items():
        lines.append(f"{k:<{width}}  {v:7.2f}  {result['cosine_to_clean'][k]:14.3f}")
    scheme = result["scheme"]
    lines.append("")
    lines.append(f"P: H = entropy/log(F'T'), max/mean, top-10 % share; tap {result['shapes']['tap']}")
    for label, stats in result["systems"].items():
        for s in dict.fromkeys([scheme, "gradw"]):
            ws = stats["weights"][s]
            lines.append(
                f"{label} {_SCHEME_NAMES.get(s, s):<13} H {ws['weight_entropy']:.4f}  "
                f"max/mean {ws['weight_max_mean']:.2f}  top10 {ws['weight_top10']:.3f}"
            )
    for note in result["notes"]:
        lines.extend(textwrap.wrap(f"note: {note}", width=80, subsequent_indent="  "))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# the command


def parse_checkpoint_args(values: list[str]) -> dict[str, Path]:
    """``NAME=PATH`` (or ``PATH``: named after its run directory) -> ordered label -> path.

    Raises:
        DataError: an empty name or path, a duplicate name, or a missing file.
    """
    from gradw.data.lists import DataError

    out: dict[str, Path] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep:
            path = value
            name = Path(value).parent.name or Path(value).stem
        if not name or not path:
            raise DataError(f"--checkpoint {value!r}: expected NAME=PATH")
        if name in out:
            raise DataError(f"--checkpoint: the name {name!r} is given twice")
        if not Path(path).is_file():
            raise DataError(f"--checkpoint {name}: file not found: {path}")
        out[name] = Path(path)
    return out


def speaker_target(
    speaker: SpeakerNetwork, test: Any, utt: str, max_utts: int = 10
) -> tuple[np.ndarray | None, list[str]]:
    """The mean clean embedding (each L2-normalised) of up to ``max_utts`` other utterances of
    ``utt``'s speaker in ``test`` (a :class:`~gradw.data.lists.SpeechDir`); (None, []) if none."""
    from gradw.audio.io import read_audio

    spk = test.utt2spk[utt]
    others = [u for u in test.spk2utt.get(spk, []) if u != utt][:max_utts]
    if not others:
        return None, []
    device = next(speaker.parameters()).device
    embeddings = []
    with torch.no_grad():
        for other in others:
            wav = torch.from_numpy(read_audio(test.wavs[other]))[None].to(device)
            embeddings.append(F.normalize(speaker.embed(wav), dim=-1)[0])
    return _np(torch.stack(embeddings).mean(dim=0)).astype(np.float32), others
