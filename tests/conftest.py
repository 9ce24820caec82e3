"""Test-wide settings: one intra-op thread (the tests use tiny tensors, where threading costs more
than it saves), and no TensorBoard or progress bars."""

import shutil
from pathlib import Path

import pytest
import torch

from gradw.data.corpora.toy import build_toy_corpus

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def toy_corpus(tmp_path_factory: pytest.TempPathFactory):
    """The synthetic toy corpus (train/val/test speech dirs, augment/train and augment/test)."""
    root = tmp_path_factory.mktemp("toy")
    build_toy_corpus(root, seed=0)
    return root


TINY_TOOLS = ("espeak-ng", "mbrola", "flite")


@pytest.fixture(scope="session")
def synthvox_tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, float]:
    """The tiny synthvox corpus, built once: (root, build summary, build seconds)."""
    import time

    from gradw.data.corpora.synthvox.build import build_synthvox

    if any(shutil.which(t) is None for t in TINY_TOOLS) or not Path("/usr/share/mbrola/us1/us1").is_file():
        pytest.skip(
            "synthvox needs espeak-ng, mbrola and flite: run `sudo scripts/install-system-deps.sh tiny`"
        )
    out = tmp_path_factory.mktemp("synthvox") / "tiny"
    start = time.monotonic()
    summary = build_synthvox(out, preset="tiny", seed=0, jobs=2, quiet=True)
    return out, summary, time.monotonic() - start
