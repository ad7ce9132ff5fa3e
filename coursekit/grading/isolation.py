"""Where the student's code runs: a separate process that only ever sends data back.

The grader (this process) makes the inputs, computes the references and
compares. The student's functions run in **another process**; a ``Session``
sends it the inputs of each call and reads back what the function returned,
as plain data (``wire``): nothing it sends can run code here, so a forged
message, a tensor subclass, a patched grader or a peek at the grader's stack
frames cannot change a score. What the student's code may do there (patch
torch, fork, loop forever, crash) stays there:

* ``ForkedSession`` (Linux, macOS) forks the notebook's process, so the child
  has the student's functions without pickling them. The child is the leader of
  its own process group; the whole group is killed when the check ends and on
  timeout, so processes it forked do not outlive check(). Its address space is
  limited (``RLIMIT_AS``), it uses one torch thread on the CPU, and the kernel
  kills it if the notebook dies (``PR_SET_PDEATHSIG``).
* ``PipeSession`` talks to a student process started some other way (bulk
  grading: a process loaded with the notebook's code), with the same protocol.
* ``LocalSession`` calls the functions in this very process, through the same
  messages. Where ``os.fork`` does not exist (Windows), or with the environment
  variable ``COURSEKIT_GRADING_ISOLATION=inprocess``, check() grades this way:
  **this offers no integrity** (the student's code shares the grader's memory and
  could change its verdict); it is for practice, not for marks.
"""

from __future__ import annotations

import contextlib
import faulthandler
import gc
import os
import select
import signal
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from coursekit.grading import guard
from coursekit.grading.student import (
    CappedText,
    StudentServer,
    _changed_mirrors,
    _snapshot_mirrors,
    redirect_output,
    serve,
)
from coursekit.grading.wire import Codec, FrameReader, Malformed, write_frame

NO_INTEGRITY = (
    "Graded inside the notebook's own process (COURSEKIT_GRADING_ISOLATION=inprocess, or no "
    "os.fork here): this run offers no integrity, its score is for practice only."
)


class StudentGone(Exception):
    """The student's process stopped answering: ``status`` is "timeout" or "crashed",
    or "malformed" when it sent something that is not a valid message."""

    def __init__(self, status: str, detail: str = "") -> None:
        super().__init__(detail or status)
        self.status, self.detail = status, detail


@dataclass
class Reply:
    """What one call of a student's function gave."""

    status: str  # "ok", "raised", "not implemented", "autograd", "library", "internal"
    value: Any
    info: dict
    output: str


def isolation_mode() -> str:
    """ "fork" where available, unless COURSEKIT_GRADING_ISOLATION=inprocess."""
    wanted = os.environ.get("COURSEKIT_GRADING_ISOLATION", "").strip().lower()
    if wanted == "inprocess" or not hasattr(os, "fork"):
        return "inprocess"
    return "fork"


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


# ---------------------------------------------------------------------------- sessions
class Session:
    """The grader's end of a conversation with the student's process."""

    def __init__(self) -> None:
        self.codec = Codec("grader")
        self.calls = 0

    def call(self, index: int, args: tuple, kwargs: dict, via: str | None = None) -> Reply:
        """Call the student's function number ``index``; its decoded answer.

        ``via``: the dotted name of a function of ``coursekit.grading`` that the student's
        process calls instead, as ``via(fn, *args, **kwargs)`` (e.g. to run fn on ranks).
        """
        nodes, root, buffers = self.codec.encode((tuple(args), dict(kwargs)))
        request = {"op": "call", "fn": index, "nodes": nodes, "root": root}
        if via is not None:
            request["via"] = via
        header, answer = self._exchange(request, buffers)
        self.calls += 1
        status = header.get("status")
        if status not in ("ok", "raised", "not implemented", "autograd", "library", "internal"):
            raise StudentGone("malformed", f"an answer with status {status!r}")
        try:
            value, _changed = self.codec.decode(header.get("nodes"), header.get("root"), answer)
        except (Malformed, ValueError, TypeError) as err:
            raise StudentGone("malformed", str(err)) from None
        info = {k: _text(header.get(k)) for k in ("route", "name", "text", "kind", "message")}
        return Reply(status, value, info, _text(header.get("output"), 50_000))

    def answer_callback(self, header: dict, buffers: list) -> tuple[dict, list]:
        """Run a function of the grader's that the student's code called (e.g. f in a
        finite difference) on the arguments it sent, and encode what it returns."""
        fn = self.codec.objects.get(header.get("token"))
        if not callable(fn) or isinstance(fn, (torch.Tensor, list, dict)):
            raise StudentGone("malformed", "a call of an unknown function")
        try:
            args, kwargs = self.codec.decode(header.get("nodes"), header.get("root"), buffers)
        except Malformed as err:
            raise StudentGone("malformed", str(err)) from None
        if not isinstance(args, tuple) or not isinstance(kwargs, dict):
            raise StudentGone("malformed", "a call with malformed arguments")
        try:
            before = _snapshot_mirrors(self.codec, (args, kwargs))
            value = fn(*args, **kwargs)
            # tensors the function changed in place (e.g. an all_reduce): the student's change too
            changed = _changed_mirrors(self.codec, before)
            nodes, root, out = self.codec.encode((value, changed))
        except Exception as err:
            return {
                "op": "callback-result",
                "status": "error",
                "message": f"{type(err).__name__}: {err}",
            }, []
        return {"op": "callback-result", "status": "ok", "nodes": nodes, "root": root}, out

    def _exchange(self, header: dict, buffers: list) -> tuple[dict, list]:
        raise NotImplementedError

    def close(self) -> None:
        """End the student's process (and everything it started)."""

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _text(value: Any, limit: int = 4000) -> str:
    return value[:limit] if isinstance(value, str) else ""


class PipeSession(Session):
    """A student process reached through two pipes (it runs ``student.serve``)."""

    def __init__(self, read_fd: int, write_fd: int, limit: float) -> None:
        super().__init__()
        self.read_fd, self.write_fd = read_fd, write_fd
        self.limit = limit  # seconds the student's process may take, all its calls together
        self.spent = 0.0  # (the grader's own work, references and comparisons, is not counted)
        self.reader = FrameReader()
        self.output: list[str] = []

    def _exchange(self, header: dict, buffers: list) -> tuple[dict, list]:
        try:
            write_frame(self.write_fd, header, buffers)
        except (BrokenPipeError, OSError):
            raise StudentGone("crashed", self._ended()) from None
        while True:
            message = self._receive()
            reply, answer = message
            if reply.get("op") == "callback":
                self.output.append(_text(reply.get("output"), 50_000))
                back, back_buffers = self.answer_callback(reply, answer)
                try:
                    write_frame(self.write_fd, back, back_buffers)
                except OSError:
                    raise StudentGone("crashed", self._ended()) from None
                continue
            if reply.get("op") != "result":
                raise StudentGone("malformed", f"an unexpected message {reply.get('op')!r}")
            if self.output:
                reply["output"] = "".join(self.output) + _text(reply.get("output"), 50_000)
                self.output.clear()
            return reply, answer

    def _receive(self) -> tuple[dict, list]:
        while True:
            try:
                message = self.reader.next()
            except Malformed as err:
                raise StudentGone("malformed", str(err)) from None
            if message is not None:
                return message
            remaining = self.limit - self.spent
            if remaining <= 0:
                raise StudentGone("timeout")
            start = time.monotonic()
            ready, _, _ = select.select([self.read_fd], [], [], remaining)
            self.spent += time.monotonic() - start
            if not ready:
                continue
            chunk = os.read(self.read_fd, 1 << 20)
            if not chunk:
                raise StudentGone("crashed", self._ended())
            self.reader.feed(chunk)

    def _ended(self) -> str:
        return "the end of its process"

    def close(self) -> None:
        with contextlib.suppress(OSError):
            write_frame(self.write_fd, {"op": "end"}, [])


class ForkedSession(PipeSession):
    """The student's functions in a forked child of this process (see the module's doc)."""

    def __init__(
        self,
        functions: Sequence[Callable[..., Any]],
        hand_written: bool,
        library: Sequence[str],
        limit: float,
        memory_bytes: int | None,
    ) -> None:
        child_read, grader_write = os.pipe()
        grader_read, child_write = os.pipe()
        parent = os.getpid()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # "fork() in a threaded process"
            pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 0
            try:
                os.close(grader_write)
                os.close(grader_read)
                _child_main(
                    child_read, child_write, functions, hand_written, library, memory_bytes, parent
                )
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(child_read)
        os.close(child_write)
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)  # also done by the child: whichever runs first
        super().__init__(grader_read, grader_write, limit)
        self.pid = pid
        self.status: int | None = None

    def _ended(self) -> str:
        kill_group(self.pid)  # the pipe closed: the child is ending or gone; make sure of it
        return describe_status(self._reap())

    def _reap(self) -> int:
        if self.status is None:
            try:
                self.status = os.waitpid(self.pid, 0)[1]
            except ChildProcessError:
                self.status = 0
        return self.status

    def close(self) -> None:
        """Kill the child's whole process group, reap the child, close the pipes."""
        kill_group(self.pid)
        self._reap()
        for fd in (self.read_fd, self.write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


def kill_group(pid: int) -> None:
    """SIGKILL the process group led by ``pid`` (and ``pid`` itself)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def _child_main(
    read_fd: int,
    write_fd: int,
    functions: Sequence[Callable[..., Any]],
    hand_written: bool,
    library: Sequence[str],
    memory_bytes: int | None,
    parent: int,
) -> None:
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # an interrupt of the notebook ends the child
    faulthandler.disable()  # a crash is reported by the parent, without a C-level traceback
    captured = redirect_output()
    # The child is short-lived: no cyclic garbage collection. Collections would walk every
    # object inherited from the notebook (and copy their memory pages); building a graph of
    # 100_000 nodes runs about four times faster without them.
    gc.freeze()
    gc.disable()
    torch.set_num_threads(1)
    limit_memory(memory_bytes)
    ban = guard.install_for_good(library) if hand_written else None
    server = StudentServer(functions, hand_written, ban)
    serve(read_fd, write_fd, server, captured)


class LocalSession(Session):
    """The student's functions called in this process, through the same messages.

    No integrity: see the module's doc. The ban is installed around each call and
    removed after it; what the functions print is captured.
    """

    def __init__(
        self,
        functions: Sequence[Callable[..., Any]],
        hand_written: bool,
        library: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.library = tuple(library)
        self.hand_written = hand_written
        self.server = StudentServer(functions, hand_written, None, ask=self.answer_callback)

    def _exchange(self, header: dict, buffers: list) -> tuple[dict, list]:
        captured = CappedText()
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            if self.hand_written:
                with guard.banned(self.library) as ban:
                    self.server.ban = ban
                    reply, answer = self.server.handle(header, [memoryview(b) for b in buffers])
            else:
                reply, answer = self.server.handle(header, [memoryview(b) for b in buffers])
        reply["output"] = captured.take() + captured.tail_note()
        return reply, [memoryview(b) for b in answer]


# ---------------------------------------------------------------------------- helpers
def _address_space_in_use() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def limit_memory(memory_bytes: int | None) -> None:
    """Limit this process's address space to what it uses now plus ``memory_bytes``."""
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
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


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


def describe_status(status: int) -> str:
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


@contextlib.contextmanager
def in_process_time_limit(timeout: float) -> Any:
    """Interrupt the body after ``timeout`` seconds (in-process grading; Python code only).

    Yields a list; it holds True after the body was interrupted by the limit.
    """
    import threading

    fired = threading.Event()
    state = [False]
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def interrupt() -> None:
        import _thread

        fired.set()
        _thread.interrupt_main()

    timer = threading.Timer(timeout, interrupt)
    timer.daemon = True
    # interrupt_main() simulates Ctrl-C, which does nothing if SIGINT is ignored (as it is
    # for a process started in the background): make sure Ctrl-C raises while we wait.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        timer.start()
        try:
            yield state
        finally:
            timer.cancel()
        if fired.is_set():  # fired just as the body ended: let the interrupt land here
            with contextlib.suppress(KeyboardInterrupt):
                time.sleep(0.1)
    except KeyboardInterrupt:
        if not fired.is_set():
            raise
        state[0] = True
    finally:
        signal.signal(signal.SIGINT, previous)
