"""Running the student's code where it cannot hurt the notebook.

The grading of one item runs in a **forked child process** (Linux, macOS):

* the child is a copy-on-write copy of the notebook's process, so it has the
  student's functions without pickling them, and nothing it changes (random
  seeds, default dtype, globals, monkey-patches) reaches the notebook;
* it is killed after a time limit, so an endless loop costs seconds, and the
  kernel stays usable;
* its address space is limited (``resource.setrlimit(RLIMIT_AS)``, Linux), so
  a huge allocation fails inside the child with an error instead of taking the
  machine's memory;
* it runs with one torch thread, on the CPU (CUDA cannot be used after a fork,
  and the references are CPU float64 anyway);
* what it prints is captured and handed back, with its progress (which test
  case it is on) and its final result, as pickled frames through a pipe.

Where ``os.fork`` does not exist (Windows), or with the environment variable
``COURSEKIT_GRADING_ISOLATION=inprocess``, the grading runs in the notebook's
own process instead: a timer interrupts it after the time limit (this stops
Python loops, but not a single long call into C code), global state is restored
afterwards (``guard.preserved_global_state``), and memory is not limited.
"""

from __future__ import annotations

import faulthandler
import gc
import io
import os
import pickle
import signal
import struct
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from coursekit.grading.guard import preserved_global_state

# Text the student's code prints is kept up to this many characters.
OUTPUT_LIMIT = 20_000
_HEADER = struct.Struct("!Q")


@dataclass
class Run:
    """How an isolated run ended.

    Attributes:
        status: "finished", "timeout", "crashed" or "internal error".
        value: the task's return value when finished.
        progress: the last progress message the task sent (which test case it was on).
        output: what the task printed.
        detail: for "crashed", how the process ended; for "internal error", a traceback.
    """

    status: str
    value: Any = None
    progress: str = ""
    output: str = ""
    detail: str = ""


# Set inside the child (or the in-process run) to where progress messages go.
_progress_sink: Callable[[str], None] | None = None


def report_progress(message: str) -> None:
    """Tell the parent what the task is doing now, e.g. which test case it runs."""
    if _progress_sink is not None:
        _progress_sink(message)


def isolation_mode() -> str:
    """ "fork" where available, unless COURSEKIT_GRADING_ISOLATION=inprocess."""
    wanted = os.environ.get("COURSEKIT_GRADING_ISOLATION", "").strip().lower()
    if wanted == "inprocess" or not hasattr(os, "fork"):
        return "inprocess"
    return "fork"


def run_isolated(
    task: Callable[[], Any],
    *,
    timeout: float,
    memory_bytes: int | None,
    mode: str | None = None,
) -> Run:
    """Run ``task()`` in a forked child or in-process (``mode``; default ``isolation_mode()``)."""
    if (mode or isolation_mode()) == "fork":
        return _run_forked(task, timeout, memory_bytes)
    return _run_in_process(task, timeout)


def default_memory_budget() -> int | None:
    """Bytes the child may allocate beyond what the notebook already uses.

    COURSEKIT_GRADING_MEMORY_MB if set; otherwise half of the available memory,
    at most 4 GiB. None where it cannot be measured (then nothing is limited).
    """
    configured = os.environ.get("COURSEKIT_GRADING_MEMORY_MB")
    if configured:
        return int(float(configured) * 2**20)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    return min(4 * 2**30, available // 2)
    except OSError:
        pass
    return None


# ---------------------------------------------------------------------------- forked child
class _CappedText(io.TextIOBase):
    """A text stream that keeps the first OUTPUT_LIMIT characters and counts the rest."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.dropped = 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        text = str(text)
        room = OUTPUT_LIMIT - self.size
        if room > 0:
            self.parts.append(text[:room])
            self.size += min(room, len(text))
        self.dropped += max(0, len(text) - max(room, 0))
        return len(text)

    def take(self) -> str:
        """The text written since the last take()."""
        text = "".join(self.parts)
        self.parts.clear()
        return text

    def tail_note(self) -> str:
        return f"\n... ({self.dropped} more characters not shown)\n" if self.dropped else ""


def _send(fd: int, kind: str, payload: Any) -> None:
    data = pickle.dumps((kind, payload), protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _address_space_in_use() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _limit_memory(memory_bytes: int | None) -> None:
    if memory_bytes is None:
        return
    try:
        import resource
    except ImportError:
        return
    in_use = _address_space_in_use()
    if in_use is None:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = in_use + memory_bytes
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ValueError, OSError):
        pass


def _die_with_parent(parent: int) -> None:
    """On Linux, have the kernel kill this child if the notebook's process dies first."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _child_main(fd: int, task: Callable[[], Any], memory_bytes: int | None, parent: int) -> None:
    global _progress_sink
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # an interrupt of the notebook ends the child
    faulthandler.disable()  # a crash is reported by the parent, without a C-level traceback
    captured = _CappedText()
    sys.stdout = sys.stderr = captured

    def send_progress(message: str) -> None:
        _send(fd, "progress", (message, captured.take()))

    _progress_sink = send_progress
    # The child is short-lived: no cyclic garbage collection. Collections would walk every
    # object inherited from the notebook (and copy their memory pages); building a graph of
    # 100_000 nodes runs about four times faster without them.
    gc.freeze()
    gc.disable()
    import torch

    torch.set_num_threads(1)
    _limit_memory(memory_bytes)
    try:
        value = task()
    except BaseException:  # a bug in the grader: report it rather than die silently
        _send(fd, "internal error", (traceback.format_exc(), captured.take()))
        return
    _send(fd, "done", (value, captured.take() + captured.tail_note()))


def _run_forked(task: Callable[[], Any], timeout: float, memory_bytes: int | None) -> Run:
    read_fd, write_fd = os.pipe()
    parent = os.getpid()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "fork() in a threaded process"
        pid = os.fork()
    if pid == 0:  # the child
        code = 0
        try:
            os.close(read_fd)
            _child_main(write_fd, task, memory_bytes, parent)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    try:
        return _collect(pid, read_fd, timeout)
    except BaseException:  # e.g. KeyboardInterrupt: never leave the child behind
        _kill(pid)
        raise
    finally:
        os.close(read_fd)


def _collect(pid: int, fd: int, timeout: float) -> Run:
    """Read the child's frames until its final one, its end, or the deadline."""
    import select

    deadline = time.monotonic() + timeout
    buffer, progress, output = b"", "", []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            _kill(pid)
            return Run("timeout", progress=progress, output="".join(output))
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:  # the child ended without sending its result
            status = _reap(pid)
            return Run(
                "crashed", progress=progress, output="".join(output), detail=_describe(status)
            )
        buffer += chunk
        while len(buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buffer)
            if len(buffer) < _HEADER.size + size:
                break
            kind, payload = pickle.loads(buffer[_HEADER.size : _HEADER.size + size])
            buffer = buffer[_HEADER.size + size :]
            if kind == "progress":
                progress, text = payload
                output.append(text)
            elif kind == "done":
                value, text = payload
                _reap(pid)
                text = "".join(output) + text
                return Run("finished", value=value, progress=progress, output=text)
            else:
                detail, text = payload
                _reap(pid)
                return Run(
                    "internal error",
                    progress=progress,
                    output="".join(output) + text,
                    detail=detail,
                )


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _reap(pid)


def _reap(pid: int) -> int:
    try:
        return os.waitpid(pid, 0)[1]
    except ChildProcessError:
        return 0


def _describe(status: int) -> str:
    """How a child process ended, in words."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        reasons = {
            "SIGSEGV": "a segmentation fault (very deep recursion, or a bug in C code)",
            "SIGKILL": "SIGKILL (the system may have run out of memory)",
            "SIGABRT": "an abort (often: out of memory in C++ code)",
            "SIGBUS": "a bus error",
        }
        return reasons.get(name, name)
    if os.WIFEXITED(status):
        return f"exit status {os.WEXITSTATUS(status)} (os._exit() or a fatal error)"
    return f"status {status}"


# ---------------------------------------------------------------------------- in process
def _run_in_process(task: Callable[[], Any], timeout: float) -> Run:
    global _progress_sink
    progress = [""]
    fired = threading.Event()

    def interrupt() -> None:
        import _thread

        fired.set()
        _thread.interrupt_main()

    def record(message: str) -> None:
        progress[0] = message

    timer = None
    previous_handler = None
    if threading.current_thread() is threading.main_thread():
        timer = threading.Timer(timeout, interrupt)
        timer.daemon = True
        # interrupt_main() simulates Ctrl-C, which does nothing if SIGINT is ignored (as it is
        # for a process started in the background): make sure Ctrl-C raises while we wait.
        previous_handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    previous_sink, _progress_sink = _progress_sink, record
    try:
        with preserved_global_state():
            torch.set_num_threads(1)  # tiny tensors: threads only add overhead (restored after)
            try:
                if timer is not None:
                    timer.start()
                try:
                    value = task()
                finally:
                    if timer is not None:
                        timer.cancel()
                if fired.is_set():  # fired just as the task ended: let the interrupt land here
                    try:
                        time.sleep(0.1)
                    except KeyboardInterrupt:
                        pass
                    return Run("finished", value=value, progress=progress[0])
            except KeyboardInterrupt:
                if fired.is_set():
                    return Run("timeout", progress=progress[0])
                raise
            except BaseException:
                return Run("internal error", progress=progress[0], detail=traceback.format_exc())
    finally:
        _progress_sink = previous_sink
        if previous_handler is not None:
            signal.signal(signal.SIGINT, previous_handler)
    return Run("finished", value=value, progress=progress[0])
