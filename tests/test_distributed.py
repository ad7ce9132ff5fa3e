"""coursekit.distributed: launch(), all_reduce_gradients(), and data-parallel training.

The central check: training on 2 gloo processes, each on half of every batch with the
gradients averaged, ends at the same parameters as one process on the whole batch.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch

from coursekit import distributed as D
from tests import _distributed_workers as workers

ROOT = Path(__file__).resolve().parents[1]


def test_launch_returns_results_in_rank_order_with_a_process_group():
    out = D.launch(workers.rank_and_sum, 3, args=(10.0,))
    assert [r[0] for r in out] == [0, 1, 2]
    assert all(r[1] == 3 for r in out)
    assert all(r[2] == 0 + 1 + 2 + 30 for r in out)  # all_reduce saw every rank


def test_two_process_training_equals_one_process_on_the_whole_batch():
    one = D.train_mlp(0, 1, steps=40, batch_size=32, dtype=torch.float64)
    two = D.launch(D.train_mlp, 2, args=(40, 32))
    for rank_result in two:
        for name, value in one["state"].items():
            diff = (rank_result["state"][name] - value).abs().max().item()
            assert diff < 1e-10, f"{name}: {diff}"
    assert abs(two[0]["loss"] - one["loss"]) < 1e-10
    assert two[0]["test_acc"] == one["test_acc"]
    # training did something: the parameters moved away from their initial values
    start = D.train_mlp(0, 1, steps=0)["state"]
    assert max((one["state"][k] - start[k]).abs().max().item() for k in start) > 1e-2


def test_a_worker_that_raises_makes_launch_raise_with_its_traceback():
    start = time.monotonic()
    with pytest.raises(D.WorkerError) as info:
        D.launch(workers.raise_on_rank_one, 2, timeout=60)
    assert info.value.rank == 1
    assert "worker 1 failed on purpose" in str(info.value)
    assert "raise_on_rank_one" in info.value.remote_traceback  # the worker's own traceback
    assert time.monotonic() - start < 50  # the waiting rank 0 was stopped, not waited for
    # and a new run works at once
    assert [r[0] for r in D.launch(workers.rank_and_sum, 2, args=(0.0,))] == [0, 1]


def test_a_worker_that_dies_without_an_exception_is_reported():
    with pytest.raises(D.WorkerError, match="exit code 3"):
        D.launch(workers.exit_hard, 2, timeout=30)


def test_a_silent_death_is_reported_before_the_errors_it_causes_in_other_ranks():
    # rank 1 fails in its barrier because rank 0 is gone: its error is a consequence
    with pytest.raises(D.WorkerError, match="exit code 3") as info:
        D.launch(workers.exit_hard_while_the_other_waits, 2, timeout=30)
    assert info.value.rank == 0


def test_a_collective_that_only_one_rank_calls_times_out_instead_of_hanging():
    start = time.monotonic()
    with pytest.raises(D.WorkerError, match="rank 0") as info:
        D.launch(workers.collective_on_rank_zero_only, 2, timeout=5)
    assert "all_reduce" in info.value.remote_traceback
    assert time.monotonic() - start < 60  # the sleeping rank 1 was stopped, not waited for


def test_all_reduce_gradients_averages_every_parameter():
    out = D.launch(workers.average_random_grads, 2)
    expected = []
    for rank in range(2):
        g = torch.Generator().manual_seed(100 + rank)
        expected.append(
            [torch.randn(3, 4, generator=g, dtype=torch.float64), torch.randn(5, generator=g)]
        )
    for rank_grads in out:
        torch.testing.assert_close(rank_grads[0], (expected[0][0] + expected[1][0]) / 2)
        torch.testing.assert_close(rank_grads[1], (expected[0][1] + expected[1][1]) / 2)
        torch.testing.assert_close(rank_grads[2], torch.full((2,), 0.5))
        assert rank_grads[0].dtype == torch.float64 and rank_grads[1].dtype == torch.float32


def test_all_reduce_gradients_without_a_process_group_changes_nothing():
    from coursekit.nn import Parameter

    p = Parameter(torch.zeros(3))
    p.grad = torch.arange(3.0)
    D.all_reduce_gradients([p])
    assert p.grad.tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(TypeError, match="params\\[0\\]"):
        D.all_reduce_gradients([torch.zeros(2).numpy()])


def test_launch_rejects_functions_spawned_processes_cannot_import():
    with pytest.raises(ValueError, match="importable"):
        D.launch(lambda rank, world: rank, 2)
    with pytest.raises(ValueError, match="nprocs"):
        D.launch(workers.rank_and_sum, 0)
    with pytest.raises(ValueError, match="backend"):
        D.launch(workers.rank_and_sum, 2, backend="mpi")


def test_shard_splits_a_batch_into_equal_parts():
    x = torch.arange(12).view(6, 2)
    assert torch.equal(torch.cat([D.shard(x, r, 3) for r in range(3)]), x)
    with pytest.raises(ValueError, match="equal shards"):
        D.shard(x, 0, 4)
    with pytest.raises(ValueError, match="rank"):
        D.shard(x, 3, 3)


def test_averaged_shard_gradients_are_the_whole_batch_gradient():
    from coursekit import nn

    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(
        nn.Linear(5, 7, dtype=torch.float64, generator=g),
        nn.Tanh(),
        nn.Linear(7, 3, dtype=torch.float64, generator=g),
    )
    loss_fn = nn.SoftmaxCrossEntropyLoss()
    x = torch.randn(12, 5, generator=g, dtype=torch.float64)
    y = torch.randint(3, (12,), generator=g)

    def grads(xb, yb):
        model.zero_grad()
        loss_fn(model(xb), yb)
        model.backward(loss_fn.backward())
        return [p.grad.clone() for p in model.parameters()]

    whole = grads(x, y)
    shards = [grads(D.shard(x, r, 4), D.shard(y, r, 4)) for r in range(4)]
    for k, full in enumerate(whole):
        torch.testing.assert_close(sum(s[k] for s in shards) / 4, full, rtol=1e-12, atol=1e-14)


def test_ring_all_reduce_bytes():
    assert D.ring_all_reduce_bytes(1000, 1) == 0
    assert D.ring_all_reduce_bytes(1000, 2) == 1000
    assert D.ring_all_reduce_bytes(1000, 4) == 1500


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_training_on_cuda_matches_the_cpu():
    cpu = D.train_mlp(0, 1, steps=10, device="cpu")
    gpu = D.train_mlp(0, 1, steps=10, device="cuda")
    for name, value in cpu["state"].items():
        assert (gpu["state"][name] - value).abs().max().item() < 1e-8


def test_fit_trains_data_parallel_like_one_process_on_the_whole_batch():
    # Batches of 13 split into shards of 7 and 6, the last batch of 11 into 6 and 5: the
    # shard-size weights make the average the whole batch's gradient even then.
    one = workers.fit_small_mlp(0, 1)
    two = D.launch(workers.fit_small_mlp, 2)
    for result in two:
        for mine, single in zip(result["params"], one["params"], strict=True):
            assert (mine - single).abs().max().item() < 1e-10
        for key in ("train_loss", "train_acc", "val_loss"):
            assert result["history"][key] == pytest.approx(one["history"][key], abs=1e-10)
    assert one["history"]["train_loss"][-1] < one["history"]["train_loss"][0]


def test_fit_refuses_a_batch_smaller_than_the_number_of_processes():
    with pytest.raises(D.WorkerError, match="cannot give each of 2 processes one"):
        D.launch(workers.fit_small_mlp, 2, args=(1,))


def test_each_run_meets_on_a_fresh_port(monkeypatch):
    ports = []
    real = D._free_port

    def free_port():
        ports.append(real())
        return ports[-1]

    monkeypatch.setattr(D, "_free_port", free_port)
    first = D.launch(workers.port_and_group, 2)
    second = D.launch(workers.port_and_group, 2)
    assert len(ports) == 2
    assert [p for p, _, _ in first] == [ports[0]] * 2
    assert [p for p, _, _ in second] == [ports[1]] * 2
    assert all(up and backend == "gloo" for _, up, backend in first + second)


def test_the_default_start_is_fresh_processes_and_spawn_works_the_same():
    # forkserver (Linux, macOS): the workers are forked from a clean server process, not
    # from this one; spawn starts a new interpreter per worker (slower: it imports torch)
    parent = os.getpid()
    pids = D.launch(workers.parent_pid, 2)
    assert all(pid != parent for pid in pids)
    spawned = D.launch(workers.rank_and_sum, 2, args=(1.0,), start_method="spawn")
    assert spawned == D.launch(workers.rank_and_sum, 2, args=(1.0,))
    with pytest.raises(D.WorkerError, match="worker 1 failed on purpose"):
        D.launch(workers.raise_on_rank_one, 2, start_method="spawn", timeout=30)
