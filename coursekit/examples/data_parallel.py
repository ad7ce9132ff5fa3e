"""Data-parallel training of an MLP on MNIST-1D with ``fit()``: one process or several.

Every process (rank) builds the same model from the same seed and calls
``coursekit.train.fit`` with the same data and the same seeded shuffling; because a
``torch.distributed`` process group is set up, ``fit`` gives each rank its shard of
every batch and averages the gradients over the ranks before each step (lesson 12).
The step is then the one a single process takes on the whole batch, so the run
ends with the same parameters and prints the same accuracy, whatever the number of
processes (in float64, to within rounding: 1e-15 after the default 10 epochs)::

    python -m torch.distributed.run --standalone --nproc_per_node 2 \\
        -m coursekit.examples.data_parallel
    python -m coursekit.examples.data_parallel        # one process: the same numbers

Backend and device follow the machine: with one GPU per process, each rank trains
on its own GPU and the ranks talk through NCCL; otherwise they run on the CPU and
talk through gloo. ``--device cpu`` forces the CPU. ``--save PATH`` writes the final
parameters (rank 0) with ``torch.save``, to compare runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from datetime import timedelta

import torch
import torch.distributed as dist

from coursekit import data, nn, optim
from coursekit.train import fit

__all__ = ["build_model", "main", "pick_device"]


def build_model(hidden: int, dtype: torch.dtype, seed: int) -> nn.Sequential:
    """The 40-hidden-hidden-10 ReLU MLP, initialised from ``seed`` (the same on every rank)."""
    g = torch.Generator().manual_seed(seed)
    return nn.Sequential(
        nn.Linear(40, hidden, dtype=dtype, generator=g),
        nn.ReLU(),
        nn.Linear(hidden, hidden, dtype=dtype, generator=g),
        nn.ReLU(),
        nn.Linear(hidden, 10, dtype=dtype, generator=g),
    )


def pick_device(requested: str, local_rank: int, local_world: int) -> tuple[str, str]:
    """(device, backend): this rank's GPU and NCCL when every local rank has a GPU, else
    the CPU and gloo. ``requested`` is "auto", "cpu" or "cuda"."""
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if requested == "cuda" and gpus < local_world:
        raise SystemExit(
            f"--device cuda needs one GPU per process: {local_world} process(es), {gpus} GPU(s)"
        )
    if requested != "cpu" and gpus >= local_world:
        return f"cuda:{local_rank}", "nccl"
    return "cpu", "gloo"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m coursekit.examples.data_parallel",
        description="Train an MLP on MNIST-1D with fit(), data-parallel over the processes "
        "that torchrun starts (or in one process). Prints the test accuracy.",
    )
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    parser.add_argument("--train-size", type=int, default=None, help="use the first N examples")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--save", default=None, help="write the final parameters here (rank 0)")
    opts = parser.parse_args(argv)

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    device, backend = pick_device(opts.device, local_rank, local_world)
    if device.startswith("cuda"):
        torch.cuda.set_device(device)
    if world > 1:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        torch.set_num_threads(max(1, cores // local_world))  # the cores shared out
        dist.init_process_group(backend, timeout=timedelta(seconds=120))
    try:
        dtype = getattr(torch, opts.dtype)
        mnist = data.load_mnist1d(dtype=dtype)
        X, y = mnist.X_train, mnist.y_train
        if opts.train_size is not None:
            X, y = X[: opts.train_size], y[: opts.train_size]
        model = build_model(opts.hidden, dtype, opts.seed).to(device)
        optimizer = optim.SGD(model.parameters(), lr=opts.lr, momentum=0.9)
        start = time.perf_counter()
        history = fit(
            model,
            nn.SoftmaxCrossEntropyLoss(),
            optimizer,
            (X, y),
            val=(mnist.X_test, mnist.y_test),
            epochs=opts.epochs,
            batch_size=opts.batch_size,
            progress=False,
            device=device,
            generator=torch.Generator().manual_seed(opts.seed + 1),  # the same on every rank
        )
        seconds = time.perf_counter() - start
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if rank == 0:
        procs = "1 process" if world == 1 else f"{world} processes"
        talk = "" if world == 1 else f", {backend}"
        checksum = sum(float(v.double().abs().sum()) for v in state.values())
        print(
            f"{procs} ({device}{talk}): {history.epochs} epochs of batch {opts.batch_size} "
            f"on {len(X)} examples in {seconds:.1f} s\n"
            f"  final train loss {history.train_loss[-1]:.6f}, "
            f"test accuracy {100 * history.val_acc[-1]:.2f}%, "
            f"sum of |parameters| {checksum:.9f}"
        )
        if opts.save:
            torch.save(state, opts.save)
    return 0


if __name__ == "__main__":
    sys.exit(main())
