"""coursekit.flops: FLOPs counted by torch, timing helpers, and the benchmark row."""

from __future__ import annotations

import pytest
import torch

from coursekit import flops, nn


def test_count_flops_counts_2bdh_per_linear_layer():
    layer = nn.Linear(7, 5)
    x = torch.randn(3, 7)
    assert flops.count_flops(lambda: layer(x)) == 2 * 3 * 7 * 5
    out = layer(x)
    # backward: dX and dW, two products of the forward's size
    assert flops.count_flops(lambda: layer.backward(torch.ones_like(out))) == 2 * 2 * 3 * 7 * 5


def test_seconds_is_positive_and_calls_the_function():
    calls = []
    t = flops.seconds(lambda: calls.append(1), torch.device("cpu"), repeats=2, min_time=0.001)
    assert t > 0 and len(calls) >= 4


def test_mlp_step_row_quick():
    row = flops.mlp_step_row("cpu", quick=True)
    sizes = [40, 64, 64, 10]
    matmuls = sum(64 * d * h for d, h in zip(sizes[:-1], sizes[1:], strict=True))
    first = 64 * 40 * 64
    assert row["flops"] == 2 * matmuls + 4 * matmuls - 2 * first  # no dX for the first layer
    assert row["flops_per_second"] > 0 and row["peak_flops_per_second"] > 0
    assert row["fraction_of_peak"] == pytest.approx(
        row["flops_per_second"] / row["peak_flops_per_second"]
    )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_mlp_step_row_on_cuda():
    row = flops.mlp_step_row("cuda", quick=True)
    assert row["device"] == "cuda" and row["flops_per_second"] > 0
