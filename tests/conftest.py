"""Fixtures shared by the unit tests."""

from __future__ import annotations

import matplotlib
import pytest
import torch

# Figures render off-screen in the unit tests. (Not through MPLBACKEND: kernels started by
# tests would inherit it and lose their inline figures.)
matplotlib.use("Agg")

# pytest-xdist runs one worker per core; more torch threads than that oversubscribe the
# cores (one training test ran 20x slower with 2 workers x 2 threads on 2 cores).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_and_restore_torch_state():
    """Every test starts from seed 0 and leaves torch's global state as it found it."""
    dtype, grad = torch.get_default_dtype(), torch.is_grad_enabled()
    torch.manual_seed(0)
    yield
    torch.set_default_dtype(dtype)
    torch.set_grad_enabled(grad)
