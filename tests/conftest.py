"""Test-wide settings: one intra-op thread (the tests use tiny tensors, where threading costs more
than it saves), and no TensorBoard or progress bars."""

import torch

torch.set_num_threads(1)
