"""The student's function on every rank of a real ``torch.distributed`` process group.

Item ``12.average_gradients`` asks for a function that runs on each of p
processes (ranks) and talks to the others with ``torch.distributed.all_reduce``.
To grade it, the grader sends all ranks' inputs to the student's process and asks
it to call ``run`` (``ctx.call(..., via=RUN)``) instead of the function itself.
``run`` runs **in the student's process** and

1. forks p rank processes from it: a fork has the student's function as it is in
   the notebook (nothing is pickled or re-imported), in Jupyter, on Colab, under
   nbgrader and in bulk grading alike, on Linux and macOS;
2. each rank joins a ``gloo`` process group on a fresh local port, calls
   ``fn(inputs[rank])`` and sends back (pickled, through its own pipe) what it
   returned, or its traceback, and how many times it called ``all_reduce``;
3. collects the reports until every rank has answered, one has failed, or
   ``timeout`` seconds have passed, or ``AFTER_FIRST`` seconds after the first rank
   returned (a rank still running then is "hung": waiting in a collective that
   another rank never made), and kills every rank.

It returns one plain report per rank; the grader checks them against its own
reference. The ranks are the student's code: nothing they send is trusted by
the grader beyond its value (the reports come back through ``wire``, as data).
The ranks are children of the student's process, in its process group, so they
end with the check whatever happens (and, on Linux, when their parent dies).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import pickle
import select
import signal
import struct
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import torch

# The dotted name the grader asks the student's process to call (``ctx.call(via=RUN)``).
RUN = "coursekit.grading.ranks.run"
# Seconds the other ranks have to finish once one rank has returned: after its last
# collective, a rank has only local work left (a division), so a rank still busy is hung.
AFTER_FIRST = 2.0
_LENGTH = struct.Struct("!Q")
_COUNT = struct.Struct("q")


def run(fn: Callable[..., Any], inputs: Sequence[Any], timeout: float = 10.0) -> list[dict]:
    """Call ``fn(inputs[rank])`` on each of ``len(inputs)`` ranks of a gloo process group.

    Returns, for each rank, {"status": "ok" | "raised" | "hung" | "crashed", "value":
    what fn returned (status "ok"), "text": the error (raised, crashed), "calls": how
    many times the rank called torch.distributed.all_reduce, "output": what it printed}.
    A rank whose fn raised NotImplementedError makes this call raise it too (the
    exercise is not written yet); a rank that used a banned route (autograd, coursekit's
    own implementation) has it recorded in this process's ban as well.
    """
    if not hasattr(os, "fork"):
        raise RuntimeError(
            "grading on several processes needs os.fork (Linux, macOS, Colab); "
            "it is not available on this system"
        )
    import torch.distributed as dist  # noqa: F401  (imported once here, not in every rank)

    reports = _run_once(fn, inputs, timeout)
    if any(r.get("joined") is False for r in reports):  # the free port was taken meanwhile?
        reports = _run_once(fn, inputs, timeout)
    for rank, report in enumerate(reports):
        if report.get("output"):
            print("".join(f"[rank {rank}] {line}\n" for line in report["output"].splitlines()))
    _forward_ban_hits(reports)
    for report in reports:
        if report["status"] == "not implemented":
            raise NotImplementedError(report["text"])
    for report in reports:
        report.pop("ban", None)
    return reports


def _run_once(fn: Callable[..., Any], inputs: Sequence[Any], timeout: float) -> list[dict]:
    """Fork the ranks, collect their reports (with their all_reduce counts), end them."""
    from coursekit.distributed import _free_port

    world = len(inputs)
    port = _free_port()
    counts = mmap.mmap(-1, _COUNT.size * world)  # shared with the ranks: all_reduce calls
    parent = os.getpid()
    ranks: list[tuple[int, int]] = []  # (pid, read end of its pipe)
    try:
        for rank in range(world):
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:  # the rank: never returns
                code = 0
                try:
                    os.close(read_end)
                    for _, other in ranks:
                        os.close(other)
                    _rank_main(fn, inputs[rank], rank, world, port, write_end, counts, parent)
                except BaseException:
                    code = 1
                finally:
                    os._exit(code)
            os.close(write_end)
            ranks.append((pid, read_end))
        reports = _collect(ranks, time.monotonic() + timeout)
    finally:
        for pid, _ in ranks:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        for pid, read_end in ranks:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            os.close(read_end)
    for rank, report in enumerate(reports):
        report["calls"] = _COUNT.unpack_from(counts, _COUNT.size * rank)[0]
    counts.close()
    return reports


# ---------------------------------------------------------------------------- one rank
def _rank_main(
    fn: Callable[..., Any],
    value: Any,
    rank: int,
    world: int,
    port: int,
    write_end: int,
    counts: mmap.mmap,
    parent: int,
) -> None:
    from coursekit.grading import guard
    from coursekit.grading.isolation import _die_with_parent
    from coursekit.grading.student import CappedText, describe_error

    with contextlib.suppress(OSError):
        _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    captured = CappedText()
    sys.stdout = sys.stderr = captured
    torch.set_num_threads(1)
    report: dict[str, Any] = {"status": "ok", "value": None, "text": ""}
    import torch.distributed as dist

    try:
        dist.init_process_group(
            "gloo",
            init_method=f"tcp://127.0.0.1:{port}",
            rank=rank,
            world_size=world,
            timeout=timedelta(seconds=120),  # the parent kills a hung rank long before
        )
    except Exception:
        text = "joining the process group failed:\n" + _tb()
        report.update(status="crashed", text=text, joined=False)
        _send(write_end, report, captured)
        return
    _count_all_reduce(dist, counts, rank)
    name = f"`{getattr(fn, '__name__', 'your function')}`"
    try:
        report["value"] = fn(value)
    except NotImplementedError as err:
        report.update(status="not implemented", text=str(err))
    except (guard.AutogradUsed, guard.LibraryUsed):
        pass  # recorded by the ban: see below
    except BaseException as err:  # SystemExit and KeyboardInterrupt included: the student's
        info = describe_error(err, name)
        report.update(
            status="raised",
            text=info["text"],
            kind=info["kind"],
            message=info["message"],
            traceback=_tb(skip=1),
        )
    ban = guard._CURRENT[-1] if guard._CURRENT else None
    hit = ban.hit() if ban is not None else None
    if hit is not None:
        report.update(status="banned", value=None, ban=hit)
    _send(write_end, report, captured)
    while True:  # stay in the group until the parent ends it: a rank that leaves early
        time.sleep(60)  # would make the others fail in their collective, not wait


def _count_all_reduce(dist: Any, counts: mmap.mmap, rank: int) -> None:
    """Wrap torch.distributed.all_reduce so that each call adds one to this rank's count."""
    real = dist.all_reduce
    offset = _COUNT.size * rank

    def all_reduce(*args: Any, **kwargs: Any) -> Any:
        _COUNT.pack_into(counts, offset, _COUNT.unpack_from(counts, offset)[0] + 1)
        return real(*args, **kwargs)

    all_reduce.__doc__, all_reduce.__wrapped__ = real.__doc__, real
    dist.all_reduce = all_reduce
    dist.distributed_c10d.all_reduce = all_reduce


def _tb(skip: int = 0) -> str:
    """The current exception's traceback, without this module's own ``skip`` frames; a
    notebook cell is named as IPython names it ("Cell In[7]")."""
    from coursekit.grading.context import _where

    kind, err, tb = sys.exc_info()
    for _ in range(skip):
        if tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
    frames = traceback.extract_tb(tb, limit=-12)
    for frame in frames:
        _ = frame.line  # read the source line before the file is renamed
        frame.filename = _where(frame.filename)
    lines = traceback.StackSummary.from_list(frames).format()
    last = traceback.format_exception_only(kind, err)
    return "".join(["Traceback (most recent call last):\n", *lines, *last])


def _send(write_end: int, report: dict, captured: Any) -> None:
    report["output"] = captured.take() + captured.tail_note()
    try:
        data = pickle.dumps(report)
    except Exception as err:  # what fn returned cannot be sent (e.g. a generator)
        data = pickle.dumps(
            {
                "status": "raised",
                "value": None,
                "text": f"its result could not be sent back ({type(err).__name__}: {err})",
                "output": report["output"],
            }
        )
    message = _LENGTH.pack(len(data)) + data
    view = memoryview(message)
    while view:
        view = view[os.write(write_end, view) :]


# ---------------------------------------------------------------------------- the parent
def _collect(ranks: list[tuple[int, int]], deadline: float) -> list[dict]:
    """Each rank's report, read from its pipe until all came, one failed, or the deadline."""
    buffers = {fd: bytearray() for _, fd in ranks}
    reports: dict[int, dict] = {}
    closed: set[int] = set()
    failed_at: float | None = None
    returned_at: float | None = None
    index = {fd: rank for rank, (_, fd) in enumerate(ranks)}
    while len(reports) + len(closed) < len(ranks):
        now = time.monotonic()
        if now >= deadline or (failed_at is not None and now >= failed_at + 0.2):
            break
        if returned_at is not None:  # the others can only finish what needs no collective
            deadline = min(deadline, returned_at + AFTER_FIRST)
        waiting = [fd for _, fd in ranks if index[fd] not in reports and fd not in closed]
        ready, _, _ = select.select(waiting, [], [], min(0.1, deadline - now))
        for fd in ready:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                closed.add(fd)
                continue
            buffers[fd] += chunk
            report = _complete(buffers[fd])
            if report is not None:
                reports[index[fd]] = report
                if report.get("status") != "ok" and failed_at is None:
                    failed_at = time.monotonic()  # the others' reports, briefly
                if report.get("status") == "ok" and returned_at is None:
                    returned_at = time.monotonic()
        if closed and failed_at is None:
            failed_at = time.monotonic()
    from coursekit.grading.isolation import describe_status

    out = []
    for rank, (pid, fd) in enumerate(ranks):
        if rank in reports:
            out.append(reports[rank])
        elif fd in closed:
            text = f"its process ended without answering: {describe_status(_ended(pid))}"
            out.append({"status": "crashed", "value": None, "text": text})
        else:
            out.append({"status": "hung", "value": None, "text": ""})
    return out


def _ended(pid: int) -> int:
    """The wait status of a rank whose pipe closed (killed if it closed it and lives on)."""
    for _ in range(50):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return os.waitpid(pid, 0)[1]


def _complete(buffer: bytearray) -> dict | None:
    if len(buffer) < _LENGTH.size:
        return None
    (size,) = _LENGTH.unpack_from(buffer)
    if len(buffer) < _LENGTH.size + size:
        return None
    try:
        report = pickle.loads(bytes(buffer[_LENGTH.size : _LENGTH.size + size]))
    except Exception as err:
        return {"status": "raised", "value": None, "text": f"its result could not be read ({err})"}
    if not isinstance(report, dict) or not isinstance(report.get("status"), str):
        return {"status": "raised", "value": None, "text": "it sent something unexpected"}
    return report


def _forward_ban_hits(reports: list[dict]) -> None:
    """A banned route used on a rank counts as used in this process (the server checks here)."""
    from coursekit.grading import guard

    if not guard._CURRENT:
        return
    ban = guard._CURRENT[-1]
    for report in reports:
        hit = report.get("ban")
        if not hit:
            continue
        kind, info = hit
        if kind == "library":
            ban.record_library(str(info.get("name", "")))
        else:
            ban.record(str(info.get("route", "")))
        report["status"], report["text"] = "raised", ""


__all__ = ["RUN", "run"]
