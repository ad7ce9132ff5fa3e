"""The student's side of grading: call the student's functions on the inputs the grader sends.

This code runs in the student's process (a forked copy of the notebook for
check(), a process loaded with the notebook's code for bulk grading). It reads
requests, calls the student's function with the decoded arguments, and answers
with what the function returned (plain data and handles, see ``wire``), what it
printed, which of its inputs it changed in place, and how it failed if it did.
It never sees a reference answer: those stay in the grader.

For items that ask for a hand-written answer the autograd ban is in force here
(``guard.install_ban``), and calling coursekit's own implementation of the
graded operation is detected (``guard.LibraryUsed``).
"""

from __future__ import annotations

import io
import os
import select
import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch

from coursekit.grading import guard
from coursekit.grading.wire import Codec, FrameReader, Malformed, write_frame

# Text the student's code prints is kept up to this many characters.
OUTPUT_LIMIT = 20_000


class CappedText(io.TextIOBase):
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


class StudentServer:
    """Answers the grader's requests with the student's functions.

    ``functions`` are the student's functions in the order the item takes them;
    ``hand_written`` switches the autograd ban on; ``library`` names coursekit's own
    implementations of the graded operation (dotted names); ``ban`` is the Ban in
    force (installed by the caller). ``ask`` sends a request to the grader and returns
    its answer (for callbacks: a function of the grader's called by the student).
    """

    def __init__(
        self,
        functions: Sequence[Callable[..., Any]],
        hand_written: bool,
        ban: guard.Ban | None,
        ask: Callable[[dict, list], tuple[dict, list]] | None = None,
    ) -> None:
        self.functions = list(functions)
        self.hand_written = hand_written
        self.ban = ban
        self.ask = ask
        self.codec = Codec("student", callback=self._callback)
        # In-process grading: tells whether a KeyboardInterrupt is the time limit, not the student.
        self.stopped: Callable[[], bool] = lambda: False

    # ------------------------------------------------------------------ one call
    def handle(self, header: dict, buffers: list) -> tuple[dict, list]:
        """The answer to one "call" request."""
        index = header.get("fn")
        if type(index) is not int or not 0 <= index < len(self.functions):
            return {"op": "result", "status": "internal", "message": "no such function"}, []
        try:
            args, kwargs = self.codec.decode(header.get("nodes"), header.get("root"), buffers)
        except Malformed as err:
            return {"op": "result", "status": "internal", "message": f"bad request: {err}"}, []
        fn = self.functions[index]
        via = header.get("via")
        if via is not None:
            runner = _runner(via)
            if runner is None:
                return {"op": "result", "status": "internal", "message": f"no runner {via!r}"}, []
            fn = _through(runner, fn)
        before = _snapshot_mirrors(self.codec, (args, kwargs))
        status, info, output = "ok", {}, None
        try:
            output = self._guarded_call(fn, args, kwargs)
        except guard.AutogradUsed as used:
            status, info = "autograd", {"route": str(used)}
        except guard.LibraryUsed as used:
            status, info = "library", {"name": str(used)}
        except NotImplementedError:
            status = "not implemented"
        except KeyboardInterrupt as err:
            if self.stopped():
                raise
            status, info = "raised", describe_error(err, _name(fn))
        except BaseException as err:  # KeyboardInterrupt and SystemExit included: the student's
            status, info = "raised", describe_error(err, _name(fn))
        if self.ban is not None:  # a route used counts, whatever the code did afterwards
            hit = self.ban.hit()
            if hit:
                status, info = hit
        if status == "ok" and self.hand_written and guard.has_graph(output):
            status, info = "autograd", {"route": "returned a tensor attached to an autograd graph"}
        changed = _changed_mirrors(self.codec, before)
        if status != "ok":
            output = None
        try:
            nodes, root, out_buffers = self.codec.encode((output, changed))
        except Exception as err:  # e.g. a tensor that cannot be read
            nodes, root, out_buffers = self.codec.encode((None, changed))
            status, info = "raised", {"text": f"its result could not be read ({err})"}
        reply = {"op": "result", "status": status, "nodes": nodes, "root": root, **info}
        return reply, out_buffers

    def _guarded_call(self, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        if self.ban is None:
            return fn(*args, **kwargs)
        with self.ban.active():
            return fn(*args, **kwargs)

    def _callback(self, token: str, args: tuple, kwargs: dict) -> Any:
        if self.ask is None:
            raise RuntimeError("this function of the grader cannot be called here")
        nodes, root, buffers = self.codec.encode((args, kwargs))
        header, answer = self.ask(
            {"op": "callback", "token": token, "nodes": nodes, "root": root}, buffers
        )
        if header.get("status") != "ok":
            raise RuntimeError(str(header.get("message", "the grader's function failed")))
        value, _changed = self.codec.decode(header.get("nodes"), header.get("root"), answer)
        return value  # the arguments it changed in place were updated while decoding


def _runner(via: Any) -> Callable[..., Any] | None:
    """The grading function named ``via`` (only ``coursekit.grading``'s own are accepted)."""
    from coursekit.grading.wire import _import_target

    if not isinstance(via, str) or not via.startswith("coursekit.grading."):
        return None
    module, _, name = via.rpartition(".")
    runner = _import_target([module, name])
    return runner if callable(runner) else None


def _through(runner: Callable[..., Any], fn: Callable[..., Any]) -> Callable[..., Any]:
    """``runner(fn, ...)``, under the student's function's name (for the feedback)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return runner(fn, *args, **kwargs)

    call.__name__ = getattr(fn, "__name__", "your function")
    return call


def _name(fn: Any) -> str:
    return f"`{getattr(fn, '__name__', 'your function')}`"


def _mirrors(codec: Codec, value: Any) -> list[tuple[str, Any]]:
    """(token, object) for every tensor, list, dict and generator the grader sent in ``value``."""
    found, seen, stack = [], set(), [value]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, (torch.Tensor, torch.Generator, list, dict)):
            token = codec.by_id.get(id(obj))
            if token is not None:
                found.append((token, obj))
        if type(obj) in (tuple, list):
            stack.extend(obj)
        elif type(obj) is dict:
            stack.extend(obj.values())
    return found


def _snapshot_mirrors(codec: Codec, value: Any) -> list[tuple[str, Any, Any]]:
    snapshot = []
    for token, obj in _mirrors(codec, value):
        if isinstance(obj, torch.Tensor):
            snapshot.append((token, obj, obj.detach().clone()))
        elif isinstance(obj, torch.Generator):
            snapshot.append((token, obj, obj.get_state()))
        elif isinstance(obj, list):
            snapshot.append((token, obj, [id(v) for v in obj]))
        else:
            snapshot.append((token, obj, {k: id(v) for k, v in obj.items()}))
    return snapshot


def _changed_mirrors(codec: Codec, snapshot: list) -> list:
    """The grader's objects that the call changed in place: sent back so the grader sees it."""
    changed = []
    for _token, obj, before in snapshot:
        if isinstance(obj, torch.Tensor):
            now = obj.detach()
            same = (
                now.shape == before.shape
                and now.dtype == before.dtype
                and bool(((now == before) | (now.isnan() & before.isnan())).all())
            )
        elif isinstance(obj, torch.Generator):
            same = torch.equal(obj.get_state(), before)
        elif isinstance(obj, list):
            same = [id(v) for v in obj] == before
        else:
            same = {k: id(v) for k, v in obj.items()} == before
        if not same:
            changed.append(obj)
    return changed


def describe_error(err: BaseException, fn: str) -> dict:
    """What the grader needs to explain an exception: its text and what kind it is."""
    from coursekit.grading.context import describe_exception

    kind = "other"
    text = str(err)
    if isinstance(err, RecursionError):
        kind = "recursion"
    elif isinstance(err, MemoryError) or "can't allocate memory" in text or "out of memory" in text:
        kind = "memory"
    elif isinstance(err, SystemExit):
        kind = "exit"
    elif isinstance(err, KeyboardInterrupt):
        kind = "interrupt"
    return {"text": describe_exception(err, fn), "kind": kind, "message": text[:2000]}


# ---------------------------------------------------------------------------- over a pipe
def serve(read_fd: int, write_fd: int, server: StudentServer, captured: CappedText) -> None:
    """Answer requests from ``read_fd`` on ``write_fd`` until "end" or the pipe closes."""
    reader = FrameReader()

    def receive() -> tuple[dict, list] | None:
        while True:
            message = reader.next()
            if message is not None:
                return message
            select.select([read_fd], [], [])
            chunk = os.read(read_fd, 1 << 20)
            if not chunk:
                return None
            reader.feed(chunk)

    def ask(header: dict, buffers: list) -> tuple[dict, list]:
        write_frame(write_fd, {**header, "output": captured.take()}, buffers)
        answer = receive()
        if answer is None:
            os._exit(0)
        return answer

    server.ask = ask
    while True:
        message = receive()
        if message is None:
            return
        header, buffers = message
        if header.get("op") == "end":
            return
        if header.get("op") != "call":
            continue
        reply, out_buffers = server.handle(header, buffers)
        reply["output"] = captured.take() + captured.tail_note()
        write_frame(write_fd, reply, out_buffers)


def redirect_output() -> CappedText:
    """Send what Python code prints to a capped buffer (the pipes stay the protocol's)."""
    captured = CappedText()
    sys.stdout = sys.stderr = captured
    return captured
