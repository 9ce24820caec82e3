"""An independent implementation of WeSpeaker's VoxCeleb ResNet34 and its features, written from
the published architecture (a 3x3 stem of 32 channels, BasicBlocks [3, 4, 6, 3] at widths
32/64/128/256 with strides 1/2/2/2 and 1x1 projection shortcuts, statistics pooling over time of
the (C x F/8) map, mean and sqrt(unbiased variance + 1e-7), one linear layer to 256) and its
feature pipeline (Kaldi fbank from kaldi-native-fbank, 80 bins, 25/10 ms, no dither, on
16-bit-scaled samples; mean normalised over time). It shares no code with gradw: tests use it to
write WeSpeaker-layout checkpoints (``avg_model.pt``) and to compute the reference embedding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

SR = 16000


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class WeSpeakerResNet34(nn.Module):
    def __init__(self, feat_dim: int = 80, embed_dim: int = 256, num_classes: int = 7) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        cin = 32
        for i, (n, width, stride) in enumerate(
            zip((3, 4, 6, 3), (32, 64, 128, 256), (1, 2, 2, 2), strict=True), start=1
        ):
            blocks = []
            for j in range(n):
                blocks.append(_Block(cin, width, stride if j == 0 else 1))
                cin = width
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
        self.seg_1 = nn.Linear(2 * 256 * (feat_dim // 8), embed_dim)
        self.projection = nn.Linear(embed_dim, num_classes, bias=False)  # the margin head's weight

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, T, F) mean-normalised fbank -> (B, 256) embedding."""
        x = feats.permute(0, 2, 1).unsqueeze(1)
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = x.reshape(x.shape[0], -1, x.shape[-1])
        stats = torch.cat([x.mean(dim=-1), torch.sqrt(torch.var(x, dim=-1) + 1e-7)], dim=-1)
        return self.seg_1(stats)


def kaldi_fbank(wav: np.ndarray, scale: float) -> torch.Tensor:
    """(N,) waveform in [-1, 1] -> (T, 80) mean-normalised log Kaldi fbank (kaldi-native-fbank:
    25/10 ms, no dither, snip edges), on the samples multiplied by ``scale`` first."""
    import kaldi_native_fbank as knf  # optional: the tests that need it skip without it

    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = SR
    opts.frame_opts.dither = 0.0
    opts.frame_opts.snip_edges = True
    opts.mel_opts.num_bins = 80
    fbank = knf.OnlineFbank(opts)
    fbank.accept_waveform(SR, (wav * scale).tolist())
    fbank.input_finished()
    feats = np.stack([fbank.get_frame(i) for i in range(fbank.num_frames_ready)])
    return torch.from_numpy(feats - feats.mean(axis=0, keepdims=True)).float()


def wespeaker_fbank(wav: np.ndarray) -> torch.Tensor:
    """The features WeSpeaker computes: :func:`kaldi_fbank` on 16-bit-scaled samples."""
    return kaldi_fbank(wav, float(1 << 15))


def write_wespeaker_checkpoint(path: Path, seed: int = 0, num_classes: int = 7) -> WeSpeakerResNet34:
    """Save a seeded random WeSpeaker ResNet34 (with non-trivial BatchNorm statistics, as a trained
    network has) the way WeSpeaker saves ``avg_model.pt``: the DDP-wrapped state dict, keys
    starting with ``module.``. Returns the network (in eval mode)."""
    torch.manual_seed(seed)
    reference = WeSpeakerResNet34(num_classes=num_classes)
    with torch.no_grad():
        for module in reference.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    reference.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({f"module.{k}": v for k, v in reference.state_dict().items()}, path)
    return reference
