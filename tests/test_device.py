"""Tests of coursekit.device: the default device and seeded generators on a device."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from coursekit import data, init, nn
from coursekit import functional as F
from coursekit.device import default_device, describe, seeded_generator


def test_default_device_can_be_forced(monkeypatch):
    monkeypatch.setenv("COURSEKIT_DEVICE", "cpu")
    assert default_device() == torch.device("cpu")
    assert describe("cpu").startswith("cpu: ")


def test_seeded_generator_on_the_cpu_draws_what_torch_generator_draws():
    for seed in (0, 7, 2**40):
        ours = seeded_generator(seed, "cpu")
        theirs = torch.Generator().manual_seed(seed)
        assert ours.device == torch.device("cpu")
        assert torch.equal(torch.rand(100, generator=ours), torch.rand(100, generator=theirs))
    assert seeded_generator(3).device == torch.device("cpu")  # the CPU by default
    assert seeded_generator(np.int64(3)).initial_seed() == 3


def test_seeded_generator_same_seed_same_stream_and_other_seed_other_stream():
    a = torch.randperm(50, generator=seeded_generator(1, "cpu"))
    b = torch.randperm(50, generator=seeded_generator(1, torch.device("cpu")))
    c = torch.randperm(50, generator=seeded_generator(2, "cpu"))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("seed", [1.0, "1", None, True])
def test_seeded_generator_rejects_a_seed_that_is_not_an_int(seed):
    with pytest.raises(TypeError, match="seed"):
        seeded_generator(seed)


def test_dropout_with_a_seeded_generator_is_reproducible_on_the_cpu():
    x = torch.ones(64, 32)
    a, _ = F.dropout_forward(x, 0.5, generator=seeded_generator(5, "cpu"))
    b, _ = F.dropout_forward(x, 0.5, generator=seeded_generator(5, "cpu"))
    c, _ = F.dropout_forward(x, 0.5, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and torch.equal(a, c)


def _cuda() -> torch.device:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    return torch.device("cuda")


@pytest.mark.gpu
def test_seeded_generator_on_cuda_feeds_dropout_batches_and_init():
    cuda = _cuda()
    g = seeded_generator(0, cuda)
    assert g.device.type == "cuda"
    x = torch.ones(128, 64, device=cuda)
    layer = nn.Dropout(0.5, generator=seeded_generator(4, cuda))
    out_a = layer(x)
    layer.generator = seeded_generator(4, cuda)
    assert torch.equal(out_a, layer(x)) and out_a.is_cuda  # same seed, same mask, on the GPU
    with pytest.raises(ValueError, match="generator"):
        nn.Dropout(0.5, generator=seeded_generator(4, "cpu"))(x)  # a CPU generator is refused
    X, y = torch.arange(10.0, device=cuda).reshape(10, 1), torch.arange(10, device=cuda)
    order_a = torch.cat(
        [yb for _, yb in data.batches(X, y, 3, generator=seeded_generator(1, cuda))]
    )
    order_b = torch.cat(
        [yb for _, yb in data.batches(X, y, 3, generator=seeded_generator(1, cuda))]
    )
    assert torch.equal(order_a, order_b) and order_a.is_cuda
    assert torch.equal(order_a.sort().values, y)
    w = init.he_normal_(torch.empty(300, 200, device=cuda), generator=seeded_generator(2, cuda))
    assert w.is_cuda and abs(w.var().item() - 2 / 300) < 1e-3
