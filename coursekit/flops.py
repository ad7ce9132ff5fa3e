"""FLOPs counted by torch and timed on a device: achieved FLOP/s against a matrix-product peak.

count_flops(fn)               FLOPs of the matrix products fn() runs (torch's FlopCounterMode)
seconds(fn, device)           fastest time of one call: synchronized, after a warm-up
matmul_peak(device)           the best FLOP/s of square float32 products of several sizes
mlp_step_row(device, quick)   one benchmark row: a coursekit MLP training step's FLOP/s
                              as a fraction of that peak (lesson 12, section 2)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch

__all__ = ["count_flops", "matmul_peak", "mlp_step_row", "seconds", "sync"]


def sync(device: torch.device) -> None:
    """Wait until the device has finished the work queued so far (GPUs run asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of the matrix products and convolutions that ``fn()`` runs, as torch counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def seconds(
    fn: Callable[[], Any], device: torch.device, repeats: int = 5, min_time: float = 0.05
) -> float:
    """Fastest time of one call of ``fn``: a warm-up call, then ``repeats`` timings of enough
    back-to-back calls to last ``min_time``, each between two synchronizations."""
    fn()
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    calls = max(1, int(min_time / max(time.perf_counter() - start, 1e-9)))
    best = math.inf
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        sync(device)
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def matmul_peak(device: torch.device, sizes: tuple[int, ...] | None = None) -> float:
    """The best FLOP/s of float32 n x n products over ``sizes`` (default up to 1024, or 8192
    on CUDA): 2 n^3 FLOPs per product."""
    if sizes is None:
        sizes = (256, 512, 1024) + ((2048, 4096, 8192) if device.type == "cuda" else ())
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device)
        b = torch.randn(n, n, device=device)
        best = max(best, 2 * n**3 / seconds(lambda a=a, b=b: a @ b, device, repeats=3))
    return best


def mlp_step_row(device: torch.device | str, quick: bool = False) -> dict[str, Any]:
    """One training step (forward, backward, SGD) of a coursekit MLP, in FLOP/s and in % of the
    device's matrix-product peak. The FLOPs are counted by torch, not by a formula."""
    from coursekit import nn, optim

    device = torch.device(device)
    batch, sizes = (64, [40, 64, 64, 10]) if quick else (256, [40, 512, 512, 10])
    g = torch.Generator().manual_seed(0)
    layers: list[nn.Module] = []
    for d, h in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(d, h, generator=g), nn.ReLU()]
    model = nn.Sequential(*layers[:-1]).to(device)
    loss_fn = nn.SoftmaxCrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(batch, sizes[0], generator=g).to(device)
    y = torch.randint(sizes[-1], (batch,), generator=g).to(device)

    def step() -> None:
        opt.zero_grad()
        loss_fn(model(x), y)
        model.backward(loss_fn.backward())
        opt.step()

    flops = count_flops(step)
    t = seconds(step, device, repeats=3 if quick else 5)
    peak = matmul_peak(device, (128, 256) if quick else None)
    return {
        "name": f"MLP step {sizes}, batch {batch}",
        "device": device.type,
        "flops": flops,
        "seconds": t,
        "flops_per_second": flops / t,
        "peak_flops_per_second": peak,
        "fraction_of_peak": flops / t / peak,
    }
