"""Data-parallel training on ``torch.distributed``: ``launch()`` and ``all_reduce_gradients()``.

Data parallelism in one line: every process (a **rank**) holds the same model,
takes its own shard of every batch, runs forward and backward on it, and then
the ranks **average their gradients**, so that each rank takes exactly the step
one process would take on the whole batch. With a mean loss over a batch of B
examples split into p equal shards S_1..S_p,

    L = (1/B) sum_i l_i = (1/p) sum_k L_k,   L_k = (p/B) sum_{i in S_k} l_i,
    so  dL/dw = (1/p) sum_k dL_k/dw          (the gradient is linear in the loss).

What is here:

    launch(fn, nprocs=2, args=())   runs fn(rank, world_size, *args) in fresh processes
                                    with a process group set up; returns the results
    all_reduce_gradients(params)    averages every parameter's .grad over the ranks
    shard(t, rank, world_size)      the rank's contiguous slice of a batch
    train_mlp(rank, world_size, ...) a worker: data-parallel training of an MLP on MNIST-1D

From the command line, under torchrun, ``coursekit.train.fit`` trains data-parallel
(it shards every batch when a process group is set up)::

    python -m torch.distributed.run --standalone --nproc_per_node 2 \\
        -m coursekit.examples.data_parallel

On one machine the processes talk through the ``gloo`` backend (CPU tensors);
on GPUs ``nccl`` is the usual backend, one process per GPU.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import pickle
import queue
import socket
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "WorkerError",
    "all_reduce_gradients",
    "launch",
    "ring_all_reduce_bytes",
    "shard",
    "train_mlp",
]


class WorkerError(RuntimeError):
    """A worker process of ``launch`` raised; ``rank`` and its ``remote_traceback`` say where."""

    def __init__(self, rank: int, remote_traceback: str) -> None:
        self.rank = rank
        self.remote_traceback = remote_traceback
        super().__init__(f"rank {rank} raised an exception:\n\n{remote_traceback.rstrip()}")


# ---------------------------------------------------------------------------- launch
def _free_port() -> int:
    """A TCP port that is free now: the operating system picks it (bind to port 0)."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(
    rank: int,
    world_size: int,
    port: int,
    backend: str,
    timeout: float,
    threads: int,
    fn: Callable[..., Any],
    args: tuple,
    results: Any,
) -> None:
    """Body of one process: set up the group, run fn, send ("ok" | "error", rank, payload)."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
    )
    torch.set_num_threads(threads)
    try:
        if backend == "nccl":
            torch.cuda.set_device(rank % torch.cuda.device_count())
        dist.init_process_group(
            backend,
            init_method=f"tcp://127.0.0.1:{port}",
            rank=rank,
            world_size=world_size,
            timeout=timedelta(seconds=timeout),
        )
        value = fn(rank, world_size, *args)
        # Plain pickle, as bytes: torch would otherwise send tensors as shared-memory
        # handles that die with this process.
        message = ("ok", rank, pickle.dumps(value))
    except BaseException:
        message = ("error", rank, traceback.format_exc())
    results.put(message)  # before leaving the group, so the first error arrives first
    if dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def _root_cause(errors: dict[int, str]) -> int | None:
    """The rank whose error started it: the first whose last frame is not in torch.distributed.

    When one rank fails, the others fail too, inside their next collective, because
    their partner is gone; those secondary errors are not the one to show. None when
    every error is secondary.
    """
    for rank, text in sorted(errors.items()):
        frames = [line for line in text.splitlines() if line.strip().startswith('File "')]
        last = frames[-1].replace("\\", "/") if frames else ""
        if "torch/distributed/" not in last:
            return rank
    return None


def _died_silently(exitcode: int | None) -> str:
    return (
        f"the process ended with exit code {exitcode} without returning "
        "(killed, or a crash outside Python)"
    )


def _check_importable(fn: Callable[..., Any], start_method: str) -> None:
    if not callable(fn):
        raise TypeError(f"launch: fn must be a function, got {type(fn).__name__}")
    if start_method == "fork":
        return
    name = getattr(fn, "__qualname__", "")
    module = getattr(fn, "__module__", None)
    if module in (None, "__main__") or "<lambda>" in name or "<locals>" in name:
        raise ValueError(
            f"launch: fn ({name or fn!r}) must be importable by the new processes: define it "
            "at the top level of a module (a .py file), not in a notebook, a lambda or another "
            "function. Spawned processes start fresh and find fn by its module and name."
        )


def launch(
    fn: Callable[..., Any],
    nprocs: int = 2,
    args: Sequence[Any] = (),
    backend: str = "gloo",
    *,
    timeout: float = 120.0,
    start_method: str | None = None,
    threads: int | None = None,
) -> list[Any]:
    """Run ``fn(rank, world_size, *args)`` in ``nprocs`` fresh processes; their results by rank.

    Each process joins a process group (``backend``, default ``gloo``) on a fresh
    local port before ``fn`` runs, and leaves it afterwards, so ``fn`` can call
    ``torch.distributed`` collectives. ``fn`` must be importable (a function at the
    top level of a module): the processes start fresh, without the caller's memory,
    and import it by name. Return values travel back pickled.

    If a worker raises, ``launch`` stops the others and raises ``WorkerError``
    carrying the worker's traceback. Nothing waits forever: collectives fail after
    ``timeout`` seconds, and the whole run is stopped after ``timeout`` seconds plus
    a margin for starting the processes (``TimeoutError``).

    ``start_method``: how processes start. Default "forkserver" where it exists
    (Linux, macOS), else "spawn": both give fresh processes that share nothing with
    the caller (a notebook's threads or CUDA state). "spawn" starts a new interpreter
    per process and run, which imports torch again each time (seconds per run);
    "forkserver" spawns one clean server process once, which imports torch, and
    forks every later worker from it (a run then starts in a fraction of a second).
    ``start_method="spawn"`` works the same, only slower to start.
    ``start_method="fork"`` copies the caller and also accepts functions defined in a
    notebook, but is unsafe once the caller has used threads or CUDA.
    ``threads``: torch threads per process (default: the cores shared out).
    """
    if isinstance(nprocs, bool) or not isinstance(nprocs, int) or nprocs < 1:
        raise ValueError(f"launch: nprocs must be a positive int, got {nprocs!r}")
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"launch: backend must be 'gloo' or 'nccl', got {backend!r}")
    if backend == "nccl" and torch.cuda.device_count() < nprocs:
        raise ValueError(
            f"launch: backend 'nccl' needs one GPU per process; {nprocs} processes, "
            f"{torch.cuda.device_count()} GPU(s). Use backend='gloo'."
        )
    if start_method is None:
        start_method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
    if start_method not in mp.get_all_start_methods():
        raise ValueError(
            f"launch: start_method {start_method!r} is not available here; "
            f"choose one of {mp.get_all_start_methods()}"
        )
    _check_importable(fn, start_method)
    if threads is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        threads = max(1, (cores or 1) // nprocs)

    ctx = mp.get_context(start_method)
    if start_method == "forkserver":
        ctx.set_forkserver_preload(["torch", "torch.distributed", "coursekit.distributed"])
    results = ctx.Queue()
    port = _free_port()
    procs = [
        ctx.Process(
            target=_worker,
            args=(rank, nprocs, port, backend, timeout, threads, fn, tuple(args), results),
            daemon=True,
        )
        for rank in range(nprocs)
    ]
    for p in procs:
        p.start()
    values: dict[int, Any] = {}
    deadline = time.monotonic() + timeout + 60.0  # a margin for starting Python and torch
    try:
        while len(values) < nprocs:
            try:
                kind, rank, payload = results.get(timeout=0.2)
            except queue.Empty:
                dead = [
                    r for r, p in enumerate(procs) if r not in values and p.exitcode not in (None,)
                ]
                if dead:  # exited without a word: killed, or crashed in C code
                    time.sleep(0.5)  # its message may still be in the pipe
                    if results.empty():
                        r = dead[0]
                        raise WorkerError(r, _died_silently(procs[r].exitcode)) from None
                if time.monotonic() > deadline:
                    waiting = [r for r in range(nprocs) if r not in values]
                    raise TimeoutError(
                        f"launch: rank(s) {waiting} did not finish within {timeout:g} s "
                        "(a collective that not every rank calls waits for ever; check that "
                        "all ranks make the same collective calls in the same order)"
                    ) from None
                continue
            if kind == "error":
                errors = {rank: payload}
                wait_until = time.monotonic() + 1.0  # other ranks' errors, to find the first
                while time.monotonic() < wait_until and len(errors) + len(values) < nprocs:
                    with contextlib.suppress(queue.Empty):
                        kind, r, text = results.get(timeout=0.1)
                        if kind == "error":
                            errors[r] = text
                first = _root_cause(errors)
                if first is None:  # only secondary errors: did a rank die without a word?
                    silent = [
                        r
                        for r, p in enumerate(procs)
                        if r not in values and r not in errors and p.exitcode not in (None, 0)
                    ]
                    if silent:
                        raise WorkerError(silent[0], _died_silently(procs[silent[0]].exitcode))
                    first = min(errors)
                raise WorkerError(first, errors[first])
            values[rank] = pickle.loads(payload)
    finally:
        for p in procs:
            p.join(timeout=5.0)
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(timeout=5.0)
            if p.is_alive():
                p.kill()
                p.join()
        results.close()
        results.join_thread()
    return [values[r] for r in range(nprocs)]


# ---------------------------------------------------------------------------- gradients
def _world_size() -> int:
    """Ranks in the default process group; 1 when none is set up."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def all_reduce_gradients(params: Iterable[Any]) -> None:
    """Average every parameter's ``.grad`` over the process group, in place.

    After the call every rank holds g = (1/p) sum_k g_k. Works for coursekit
    ``Parameter`` s and for torch tensors with ``.grad``. A missing ``.grad`` counts
    as zeros (so that every rank makes the same calls). The gradients are packed
    into one flat buffer per dtype and device, so there is one all-reduce per
    buffer instead of one per parameter. Outside a process group (one process)
    there is nothing to average and nothing changes.
    """
    params = list(params)
    for i, p in enumerate(params):
        if not hasattr(p, "grad") or not isinstance(getattr(p, "data", None), torch.Tensor):
            raise TypeError(
                f"all_reduce_gradients: params[{i}] must have .data and .grad (a Parameter), "
                f"got {type(p).__name__}"
            )
    world = _world_size()
    if world == 1:
        return
    groups: dict[tuple[torch.dtype, torch.device], list[Any]] = {}
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p.data)
        groups.setdefault((p.grad.dtype, p.grad.device), []).append(p)
    for members in groups.values():
        flat = torch.cat([p.grad.reshape(-1) for p in members])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= world
        offset = 0
        for p in members:
            n = p.grad.numel()
            p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
            offset += n


def shard(t: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Rank ``rank``'s contiguous slice of a batch ``t`` (split along dim 0 into equal parts).

    The batch size must be divisible by ``world_size``: the average of the shards'
    mean losses is the whole batch's mean loss only when the shards are equal.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"shard: rank must be in [0, {world_size}), got {rank}")
    n = t.shape[0]
    if n % world_size:
        raise ValueError(
            f"shard: a batch of {n} does not split into {world_size} equal shards; "
            "use a batch size divisible by the number of processes"
        )
    size = n // world_size
    return t[rank * size : (rank + 1) * size]


def ring_all_reduce_bytes(nbytes: int, world_size: int) -> float:
    """Bytes each rank sends (and receives) in a ring all-reduce of ``nbytes``: 2(p-1)/p * nbytes.

    Reduce-scatter: p-1 steps, each passing one of p chunks to the next rank; then
    all-gather: p-1 more steps. 2(p-1) chunks of nbytes/p each.
    """
    if world_size < 1:
        raise ValueError(f"ring_all_reduce_bytes: world_size must be >= 1, got {world_size}")
    return 2 * (world_size - 1) / world_size * nbytes


# ---------------------------------------------------------------------------- a worker
def train_mlp(
    rank: int,
    world_size: int,
    steps: int = 50,
    batch_size: int = 64,
    hidden: int = 64,
    lr: float = 0.1,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, Any]:
    """Train a 40-``hidden``-10 MLP on MNIST-1D with SGD, data-parallel over the process group.

    Every rank builds the same model (same seed) and draws the same batch indices;
    it keeps its shard of each batch, runs forward and backward on it, and averages
    the gradients with ``all_reduce_gradients`` before the step. With world_size 1
    (no process group) this is ordinary training on the whole batch.

    Returns {"state": the final state_dict (CPU), "loss": the last batch loss
    averaged over the ranks, "test_acc": accuracy on the 1000 test examples,
    "seconds_all_reduce": time spent averaging gradients}.
    """
    from coursekit import data, nn, optim

    device_t = torch.device(device)
    train_set = data.load_mnist1d(dtype=dtype, device=device_t)
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(40, hidden, dtype=dtype, generator=g, device=device_t),
        nn.ReLU(),
        nn.Linear(hidden, 10, dtype=dtype, generator=g, device=device_t),
    )
    loss_fn = nn.SoftmaxCrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    order = torch.Generator().manual_seed(seed + 1)  # the same batches on every rank
    reduce_seconds, loss = 0.0, torch.zeros((), dtype=dtype, device=device_t)
    for _ in range(steps):
        idx = torch.randint(len(train_set.X_train), (batch_size,), generator=order).to(device_t)
        xb = shard(train_set.X_train[idx], rank, world_size)
        yb = shard(train_set.y_train[idx], rank, world_size)
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        model.backward(loss_fn.backward())
        start = time.perf_counter()
        all_reduce_gradients(model.parameters())
        reduce_seconds += time.perf_counter() - start
        opt.step()
    loss = loss.detach().clone()
    if _world_size() > 1:  # report the whole batch's loss: the mean of the shards' losses
        dist.all_reduce(loss)
        loss /= world_size
    with torch.no_grad():
        logits = model(train_set.X_test)
        acc = (logits.argmax(1) == train_set.y_test).double().mean().item()
    return {
        "state": {k: v.cpu() for k, v in model.state_dict().items()},
        "loss": loss.item(),
        "test_acc": acc,
        "seconds_all_reduce": reduce_seconds,
    }
