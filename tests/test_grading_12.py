"""Lesson 12's item 12.average_gradients on real processes: the ranks are separate processes in
a gloo group, a rank that waits for ever is stopped and named, a raising or dying rank is
reported, and none outlives the check.

The tests every item gets (full marks, many seeds, named mistakes, a stub scores zero) run
from ``tests/grading_fixtures/lesson_12.py`` in ``tests/test_grading_items.py``."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch

from coursekit.grading import check
from coursekit.grading.context import grade
from coursekit.grading.registry import get_item
from coursekit.nn import Parameter
from tests.grading_fixtures.lesson_12 import SOLUTIONS


# ---------------------------------------------------------------------------- real ranks
def test_average_gradients_runs_on_real_gloo_processes(tmp_path):
    """Each rank is a separate process in a real process group; none outlives check()."""

    def average_gradients(grads):
        import torch.distributed as dist

        (tmp_path / f"{dist.get_rank()}-{os.getpid()}").write_text(str(dist.get_world_size()))
        print("rank", dist.get_rank(), "of", dist.get_world_size())
        return SOLUTIONS["12.average_gradients"][0](grads)

    result = check("12.average_gradients", average_gradients)
    assert result.passed, str(result)
    runs = [(*p.name.split("-"), p.read_text()) for p in tmp_path.iterdir()]  # rank, pid, world
    assert sorted((rank, world) for rank, _, world in runs) == [
        ("0", "2"),
        ("0", "2"),
        ("0", "3"),
        ("1", "2"),
        ("1", "2"),
        ("1", "3"),
        ("2", "3"),
    ]
    pids = {int(pid) for _, pid, _ in runs}
    assert len(pids) == len(runs) and os.getpid() not in pids  # one process per rank and case
    assert "[rank 1] rank 1 of 2" in result.output
    for pid in pids:
        _assert_gone(pid)


def _assert_gone(pid: int) -> None:
    for _ in range(200):
        stat = Path(f"/proc/{pid}/stat")
        if not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return
        time.sleep(0.02)
    pytest.fail(f"the rank process {pid} outlived check()")


def test_a_rank_that_waits_for_ever_is_stopped_and_named(tmp_path):
    def average_gradients(grads):
        import torch.distributed as dist

        (tmp_path / str(os.getpid())).touch()
        if dist.get_rank() == 0:
            dist.all_reduce(grads[0])  # rank 1 never makes this call
        return grads

    result = check("12.average_gradients", average_gradients)
    assert result.status == "failed" and result.points == 0, str(result)
    assert "Rank 1 did not call all_reduce" in result.feedback
    assert "rank 0: 1, rank 1: 0" in result.feedback
    for pid in tmp_path.iterdir():
        _assert_gone(int(pid.name))


def test_a_raising_rank_surfaces_its_traceback():
    def average_gradients(grads):
        import torch.distributed as dist

        if dist.get_rank() == 1:
            return helper(grads)
        return grads

    def helper(grads):
        return grads[5]

    result = check("12.average_gradients", average_gradients)
    assert result.status == "error", str(result)
    assert "On rank 1 of 2" in result.feedback and "IndexError" in result.feedback
    assert "Traceback of rank 1" in result.feedback and "return grads[5]" in result.feedback


def test_a_rank_that_dies_is_reported():
    def average_gradients(grads):
        import torch.distributed as dist

        if dist.get_rank() == 1:
            os._exit(3)
        return grads

    result = check("12.average_gradients", average_gradients)
    assert result.points == 0 and "Rank 1 of 2 failed" in result.feedback, str(result)
    assert "exit status 3" in result.feedback


def test_autograd_or_coursekit_on_a_rank_counts_as_used():
    # graded without the source scan (grade(), not check()): the ban inside each rank is what
    # catches these, and the rank's record reaches the student's process
    def with_autograd(grads):
        import torch.distributed as dist

        w = torch.ones(1, dtype=torch.float64, requires_grad=True)
        getattr((w * 2).sum(), "back" + "ward")()
        for g in grads:
            dist.all_reduce(g)
            g /= dist.get_world_size()
        return grads

    def with_coursekit(grads):
        from coursekit import distributed

        params = [Parameter(g.clone()) for g in grads]
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        getattr(distributed, "all_reduce_" + "gradients")(params)
        return [p.grad for p in params]

    item = get_item("12.average_gradients")
    used = grade(item, (with_autograd,), seed=0)
    assert used.status == "uses autograd", used.feedback
    used = grade(item, (with_coursekit,), seed=0)
    assert used.status == "uses coursekit", used.feedback
    assert "all_reduce_gradients" in used.feedback


def test_a_port_taken_before_the_ranks_bind_it_is_retried_with_another(monkeypatch):
    import socket

    from coursekit import distributed

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    taken = busy.getsockname()[1]
    real, handed = distributed._free_port, []

    def free_port():  # the first run's port is taken by the time the ranks meet
        handed.append(taken if not handed else real())
        return handed[-1]

    monkeypatch.setattr(distributed, "_free_port", free_port)
    try:
        outcome = grade(get_item("12.average_gradients"), SOLUTIONS["12.average_gradients"][:1], 0)
    finally:
        busy.close()
    assert outcome.status == "passed", outcome.feedback
    assert handed[0] == taken and len(handed) == 4  # 3 cases and one retry
