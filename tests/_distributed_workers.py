"""Worker functions for tests/test_distributed.py: importable, so spawned processes find them."""

from __future__ import annotations

import os
import time

import torch
import torch.distributed as dist


def rank_and_sum(rank: int, world_size: int, offset: float) -> tuple[int, int, float]:
    t = torch.tensor([rank + offset])
    dist.all_reduce(t)
    return rank, world_size, t.item()


def raise_on_rank_one(rank: int, world_size: int) -> int:
    if rank == 1:
        raise ValueError("worker 1 failed on purpose")
    dist.barrier()  # rank 0 waits for rank 1, which never comes: launch must not hang
    return rank


def exit_hard(rank: int, world_size: int) -> int:
    if rank == 0:
        os._exit(3)
    return rank


def exit_hard_while_the_other_waits(rank: int, world_size: int) -> int:
    """Rank 0 dies without a word; rank 1's barrier then fails inside torch.distributed."""
    if rank == 0:
        os._exit(3)
    dist.barrier()
    return rank


def collective_on_rank_zero_only(rank: int, world_size: int) -> int:
    if rank == 0:
        dist.all_reduce(torch.zeros(1))  # waits for a partner that never calls it
    else:
        time.sleep(120)  # busy elsewhere, without leaving the group
    return rank


def average_random_grads(rank: int, world_size: int) -> list[torch.Tensor]:
    """Each rank's own random gradients, then their average, for coursekit Parameters."""
    from coursekit.distributed import all_reduce_gradients
    from coursekit.nn import Parameter

    g = torch.Generator().manual_seed(100 + rank)
    params = [Parameter(torch.zeros(3, 4, dtype=torch.float64)), Parameter(torch.zeros(5))]
    params[0].grad = torch.randn(3, 4, generator=g, dtype=torch.float64)
    params[1].grad = torch.randn(5, generator=g)
    extra = Parameter(torch.zeros(2))  # no gradient on this rank: counts as zeros
    if rank == 0:
        extra.grad = torch.ones(2)
    all_reduce_gradients([*params, extra])
    return [p.grad for p in [*params, extra]]


def fit_small_mlp(rank: int, world_size: int, batch_size: int = 13) -> dict:
    """fit() on 50 examples, in float64, with whatever process group is set up: returns the
    final parameters and the history (the same with 1 process or 2, up to rounding)."""
    from coursekit import nn, optim
    from coursekit.device import seeded_generator
    from coursekit.train import fit

    g = torch.Generator().manual_seed(0)
    X = torch.randn(50, 5, generator=g, dtype=torch.float64)
    y = (X[:, 0] + X[:, 1] ** 2 > 0.5).long()
    model = nn.Sequential(
        nn.Linear(5, 8, dtype=torch.float64, generator=g),
        nn.Tanh(),
        nn.Linear(8, 2, dtype=torch.float64, generator=g),
    )
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    history = fit(
        model,
        nn.SoftmaxCrossEntropyLoss(),
        opt,
        (X, y),
        val=(X[:20], y[:20]),
        epochs=3,
        batch_size=batch_size,
        clip=1.0,
        progress=False,
        generator=seeded_generator(1),
    )
    return {"params": [p.data.clone() for p in model.parameters()], "history": history.as_dict()}


def port_and_group(rank: int, world_size: int) -> tuple[int, bool, str]:
    """The port this run's group met on, whether the group is up, and the backend."""
    return int(os.environ["MASTER_PORT"]), dist.is_initialized(), dist.get_backend()


def parent_pid(rank: int, world_size: int) -> int:
    return os.getppid()
