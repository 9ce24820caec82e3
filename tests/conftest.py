"""Test-wide settings: one intra-op thread (the tests use tiny tensors, where threading costs more
than it saves), and no TensorBoard or progress bars."""

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
