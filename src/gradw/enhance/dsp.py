"""The mel mask of G mapped onto a linear STFT: the signal processing of enhancement.

Pipeline for one waveform (B = 1)::

    wav (N,) 16 kHz --E's front-end--> mel power (F, T_mel) --log, CMN--> features (F, T_mel)
    features --G--> mask M (F, T_mel)                        power gains on the mel grid
    M --time alignment, mel -> linear mapping, floor--> G_lin (K, T_stft), K = n_fft // 2 + 1
    STFT(wav) (K, T_stft) * sqrt(G_lin) --iSTFT, noisy phase--> enhanced wav (N,)

**STFT.** The framing of E's front-end: n_fft 512 (K = 257 bins, 31.25 Hz apart), a 400-sample
window, hop 160, ``center=True`` (frame j centred on sample 160 j, T_stft = 1 + N // 160) with
zero padding at the ends. The window is a periodic Hann window for both analysis and synthesis
(``torch.istft`` divides by the summed squared windows, so a gain of 1 reconstructs the input to
float precision); its shape does not matter for the mapping, only the bin frequencies do.

**Mel -> linear mapping** (:func:`mel_to_linear_matrix`). With W (F, K) the front-end's
triangular filterbank (the weights that produced the mel power), linear bin k gets the
filterbank-weighted average of the mel gains of the bands that cover it::

    G_lin[k] = sum_f W[f, k] M[f] / sum_f W[f, k]        (bins with sum_f W[f, k] > 0)

Bins that no band covers (below ``f_min``, above ``f_max``, Kaldi's Nyquist bin) take the gain
of the band whose centre (the weight centroid of its triangle) is nearest. Every row of the
(K, F) mapping sums to one, so a constant mask maps to the same constant, and a bin between two
bands interpolates their gains. This is the normalised transpose of W; it is not an exact
inverse (none exists: 257 bins are projected onto 80 bands), but projecting ``G_lin * power``
back through W gives ``M * mel`` wherever the mask is smooth across neighbouring bands.

**Power gains.** M multiplies power, so the STFT is scaled by the amplitude gain sqrt(G_lin).
The optional floor (``min_gain_db`` = g <= 0, DeepFilterNet's attenuation limit) applies to the
power gain: ``G_lin = max(G_lin, 10 ** (g / 10))``, i.e. no bin is attenuated by more than |g| dB.
Deep suppression at low SNR is where musical noise and speech distortion come from; -20 dB to
-30 dB is a sensible floor for listening.

**Time alignment** (:func:`stft_frame_shift`). The mask lives on E's frames, the gains on the
STFT frames; the two grids share the hop but not the origin:

* ``LogMel`` (the paper's features) is itself a ``center=True`` STFT with hop 160: mel frame t is
  centred on sample 160 t, the same as STFT frame t. Shift 0.
* ``KaldiFbank`` snips edges: frame t covers samples [160 t, 160 t + 400), centre 160 t + 200
  (T_mel = 1 + (N - 400) // 160), whereas STFT frame j is centred on 160 j. Kaldi frame t therefore
  sits at STFT position j = t + 200 / 160 = t + 1.25.

(Strictly, both centres are half a sample earlier, 160 t + 199.5 and 160 j - 0.5: the offset of
exactly 200 samples is unaffected.) STFT frame j takes the mask linearly interpolated at mel-frame
position ``j - shift``; frames before the first or after the last mel centre hold the edge value.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from gradw.audio.frontends import KaldiFbank, LogMel, MelFrontend

# ---------------------------------------------------------------------------------------------
# the mask -> STFT gain mapping


def mel_to_linear_matrix(fbank: Tensor) -> Tensor:
    """The (K, F) matrix that maps mel gains onto linear STFT bins (the normalised transpose).

    Row k holds the weights ``W[f, k] / sum_f W[f, k]`` of the bands covering bin k; a bin that
    no band covers gets a one-hot row selecting the band whose centre is nearest (centres are the
    weight centroids of the triangles, in bins). Every row sums to one.

    Args:
        fbank: (F, K) non-negative filterbank weights (mel power = fbank @ power).

    Returns:
        (K, F) float64 mapping: linear gains = mapping @ mel gains.

    Raises:
        ValueError: if ``fbank`` is not 2-D, has negative weights or covers no bin at all.
    """
    if fbank.dim() != 2:
        raise ValueError(f"expected a (F, K) filterbank, got shape {tuple(fbank.shape)}")
    weights = fbank.detach().to(torch.float64).cpu()
    if (weights < 0).any():
        raise ValueError("filterbank weights must be non-negative")
    num_bands, num_bins = weights.shape
    band_mass = weights.sum(dim=1)  # (F,)
    if not (band_mass > 0).any():
        raise ValueError("the filterbank covers no frequency bin")
    bins = torch.arange(num_bins, dtype=torch.float64)
    centres = (weights * bins).sum(dim=1) / band_mass.clamp(min=1e-300)
    centres = torch.where(band_mass > 0, centres, torch.full_like(centres, math.inf))
    coverage = weights.sum(dim=0)  # (K,)
    mapping = weights.t() / coverage.clamp(min=1e-300)[:, None]  # (K, F)
    uncovered = coverage <= 0
    if uncovered.any():
        nearest = (bins[uncovered, None] - centres[None, :]).abs().argmin(dim=1)
        mapping[uncovered] = F.one_hot(nearest, num_bands).to(torch.float64)
    return mapping


def stft_frame_shift(frontend: MelFrontend) -> float:
    """Position of mel frame 0 on the STFT frame grid (hop units): 0 for ``LogMel``, 1.25 for
    ``KaldiFbank`` (frame t centred on sample 160 t + 200, STFT frame j on 160 j).

    Raises:
        TypeError: for a front-end whose framing is not known here.
    """
    return frame_centre(frontend) / frontend.hop_length


def frame_centre(frontend: MelFrontend) -> float:
    """Centre of mel frame 0 in samples (frame t is centred on ``frame_centre + hop * t``)."""
    if isinstance(frontend, LogMel):
        return 0.0
    if isinstance(frontend, KaldiFbank):
        return frontend.frame_length / 2.0
    raise TypeError(f"unknown framing for front-end {type(frontend).__name__}")


def align_mask_frames(mask: Tensor, num_frames: int, shift: float) -> Tensor:
    """Resample a mask from mel frames onto STFT frames by linear interpolation.

    STFT frame j takes the mask at mel-frame position ``j - shift`` (clamped to the first and
    last mel frame).

    Args:
        mask: (..., T_mel) values on the mel frames.
        num_frames: T_stft.
        shift: position of mel frame 0 on the STFT grid (:func:`stft_frame_shift`).

    Returns:
        (..., T_stft) tensor.
    """
    num_mel = mask.shape[-1]
    if num_mel < 1:
        raise ValueError("the mask has no frames")
    pos = torch.arange(num_frames, dtype=torch.float64, device=mask.device) - shift
    pos = pos.clamp(0.0, float(num_mel - 1))
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=num_mel - 1)
    frac = (pos - lo.to(torch.float64)).to(mask.dtype)
    return mask[..., lo] * (1.0 - frac) + mask[..., hi] * frac


def gain_floor(min_gain_db: float | None) -> float:
    """The power-gain floor ``10 ** (min_gain_db / 10)`` (0 for None).

    Raises:
        ValueError: unless ``min_gain_db`` is None or a finite value <= 0.
    """
    if min_gain_db is None:
        return 0.0
    if isinstance(min_gain_db, bool) or not math.isfinite(min_gain_db) or min_gain_db > 0:
        raise ValueError(f"min_gain_db must be a finite value <= 0 dB, got {min_gain_db!r}")
    return 10.0 ** (float(min_gain_db) / 10.0)


def mask_to_stft_gains(
    mask: Tensor,
    mapping: Tensor,
    num_frames: int,
    shift: float,
    min_gain_db: float | None = None,
) -> Tensor:
    """Mel power mask -> linear STFT power gains.

    Args:
        mask: (B, F, T_mel) mel power gains.
        mapping: (K, F) from :func:`mel_to_linear_matrix`.
        num_frames: T_stft of the STFT the gains will multiply.
        shift: :func:`stft_frame_shift` of the front-end the mask was computed on.
        min_gain_db: optional power-gain floor in dB (<= 0).

    Returns:
        (B, K, T_stft) power gains, at least ``10 ** (min_gain_db / 10)``.
    """
    if mask.dim() != 3 or mask.shape[1] != mapping.shape[1]:
        raise ValueError(f"expected a mask (B, {mapping.shape[1]}, T), got shape {tuple(mask.shape)}")
    aligned = align_mask_frames(mask, num_frames, shift)  # (B, F, T_stft)
    gains = torch.matmul(mapping.to(device=mask.device, dtype=mask.dtype), aligned)  # (B, K, T_stft)
    floor = gain_floor(min_gain_db)
    return gains.clamp(min=floor) if floor > 0 else gains
