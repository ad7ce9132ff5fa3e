"""The grading context: what an item's grading function uses to test the student's code.

An item's grader builds test cases with fresh random inputs (``ctx.randn``),
calls the student's function through ``ctx.call`` (which turns anything the
function does wrong into a clear failure) and compares what comes back with
the reference through ``ctx.compare`` (which says which value is wrong, where,
by how much, and which classic mistake it looks like). The first failing test
case stops the item; its description heads the feedback.
"""

from __future__ import annotations

import contextlib
import os
import sys
import sysconfig
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from coursekit.grading.hints import (
    TOLERANCE,
    Mistake,
    generic_value_hint,
    item_hint,
    precision_hint,
    relative_error,
    shape_hint,
)
from coursekit.grading.isolation import LocalSession, Session, StudentGone
from coursekit.grading.registry import Item
from coursekit.grading.wire import Opaque

AUTOGRAD_HINT = (
    "This exercise asks for the backward pass written by hand, so it scores zero when "
    "automatic differentiation computes the answer (.backward(), torch.autograd.grad, "
    "torch.func, forward-mode AD, coursekit's own autograd, or returning a tensor attached to "
    "an autograd graph). Write out the chain rule with tensor operations instead."
)
LIBRARY_HINT = (
    "This exercise asks you to write the operation yourself, so it scores zero when it calls "
    "coursekit's own implementation of it. Write it with tensor operations instead."
)
NOT_IMPLEMENTED = (
    "Not implemented yet: {fn} raises NotImplementedError. Replace the "
    "`raise NotImplementedError` line with your code, run that cell, then run this check again."
)


class CaseFailed(Exception):
    """Raised by the context when a test case fails; ends the grading of the item."""

    def __init__(self, message: str, hint: str | None = None, status: str = "failed") -> None:
        super().__init__(message)
        self.message, self.hint, self.status = message, hint, status


@dataclass
class Outcome:
    """What grading an item produced (plain data, so it can travel back from the child)."""

    status: str
    feedback: str
    cases: int
    output: str = ""
    progress: str = ""


class GradingContext:
    """Random inputs, guarded calls and comparisons for one run of one item."""

    def __init__(self, item: Item, seed: int, session: Session) -> None:
        self.item = item
        self.generator = torch.Generator().manual_seed(seed)
        self.cases = 0
        self.current_case = ""
        self.function_name = item.functions[0] if item.functions else "your function"
        self.session = session
        self.output: list[str] = []

    # ------------------------------------------------------------------ random inputs
    def randn(self, *shape: int, scale: float = 1.0) -> torch.Tensor:
        """Standard normal float64 entries (times ``scale``)."""
        return torch.randn(shape, generator=self.generator, dtype=torch.float64) * scale

    def uniform(self, *shape: int, low: float, high: float) -> torch.Tensor:
        """Float64 entries uniform in [low, high)."""
        u = torch.rand(shape, generator=self.generator, dtype=torch.float64)
        return low + (high - low) * u

    def randint(self, high: int, *shape: int) -> torch.Tensor:
        """Int64 entries in [0, high)."""
        return torch.randint(high, shape, generator=self.generator, dtype=torch.int64)

    def random_float(self, low: float = -2.0, high: float = 2.0) -> float:
        """One Python float uniform in [low, high), kept away from zero."""
        while True:
            value = low + (high - low) * torch.rand((), generator=self.generator).item()
            if abs(value) > 0.1:
                return value

    # ------------------------------------------------------------------ test cases
    @contextlib.contextmanager
    def case(self, description: str) -> Iterator[None]:
        """Mark the start of a test case; its description heads the feedback if it fails."""
        self.cases += 1
        self.current_case = f"Test case {self.cases}: {description}"
        yield

    def fail(self, message: str, hint: str | None = None, status: str = "failed") -> None:
        """Fail the current test case."""
        raise CaseFailed(message, hint, status)

    # ------------------------------------------------------------------ calling the student
    def call(
        self,
        fn: Callable[..., Any],
        *args: Any,
        names: Sequence[str],
        labels: dict[str, str] | None = None,
        opaque: Sequence[str] = (),
        error_hint: str | None = None,
        via: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """``fn(*args, **kwargs)``, guarded; returns its output with tensors detached.

        ``names`` names the positional arguments (for messages); arguments named in
        ``opaque`` (a student's own cache) are not checked for in-place changes;
        ``labels`` renames nested inputs in messages ("cache[0]" -> "cache[0] (x)").
        ``error_hint`` is the hint for a shape mismatch raised inside the function.
        ``via`` names a function of ``coursekit.grading`` that the student's process calls
        instead, as ``via(fn, *args, **kwargs)`` (``ranks.RUN``: fn on every rank).
        Fails the case on an exception (NotImplementedError included), on autograd use
        (for hand-written items) and on an in-place change of an input.
        """
        if not isinstance(fn, StudentFunction):
            raise TypeError("ctx.call() takes one of the student's functions (an item parameter)")
        name = fn.__name__
        if name and not name.startswith("<"):  # "<lambda>" says nothing: keep the item's name
            self.function_name = name
        watched = {n: a for n, a in zip(names, args, strict=False) if n not in opaque}
        watched.update({k: v for k, v in kwargs.items() if k not in opaque})
        before = {name: _snapshot(value) for name, value in watched.items()}
        reply = self.session.call(fn.index, args, kwargs, via)  # StudentGone ends the grading
        if reply.output:
            self.output.append(reply.output)
        if reply.status == "autograd":
            route = reply.info["route"] or "torch.autograd"
            put_back = route.startswith(("put ", "switched ", "returned "))
            self.fail(
                f"{self._fn()} {route} (that counts as using automatic differentiation)."
                if put_back
                else f"{self._fn()} uses {route}.",
                AUTOGRAD_HINT,
                "uses autograd",
            )
        if reply.status == "library":
            short = reply.info["name"].rsplit(".", 1)[-1]
            self.fail(
                f"{self._fn()} calls coursekit's own {short} ({reply.info['name']}).",
                LIBRARY_HINT,
                "uses coursekit",
            )
        if reply.status == "not implemented":
            self.fail(NOT_IMPLEMENTED.format(fn=self._fn()), None, "not implemented")
        if reply.status == "raised":
            hint = _exception_hint(reply.info["kind"], reply.info["message"], error_hint)
            self.fail(reply.info["text"] or f"{self._fn()} raised an exception.", hint, "error")
        if reply.status != "ok":
            raise RuntimeError(f"the student's process could not run the call: {reply.info}")
        changed = [
            path for name, value in watched.items() for path in _changes(name, before[name], value)
        ]
        if changed:
            shown = ", ".join((labels or {}).get(p, p) for p in changed)
            self.fail(
                f"{self._fn()} modified its input {shown} in place.",
                "Never change an input: the caller still needs it (other layers may share "
                "it). Build new tensors instead, e.g. `dx = dout * mask` rather than "
                "`dout[...] = 0` or `x += ...`, or work on a `.clone()`.",
            )
        return _detach(reply.value)

    def _fn(self) -> str:
        return f"`{self.function_name}`"

    # ------------------------------------------------------------------ comparing
    def compare(
        self,
        got: Any,
        expected: torch.Tensor | Sequence[torch.Tensor] | dict[str, torch.Tensor],
        names: Sequence[str],
        *,
        mistakes: dict[str, list[Mistake]] | None = None,
        batch: int | None = None,
        shape_of: dict[str, str] | None = None,
        nonfinite_hint: str | None = None,
        what: str | None = None,
        slack: torch.Tensor | float = 0.0,
    ) -> None:
        """Fail the case unless ``got`` matches ``expected`` value by value.

        ``expected`` is one tensor (``names`` has one name), a tuple of tensors (one
        name each), or a dict (``names`` are its keys). ``mistakes`` maps an output's
        name to the mistakes to recognise in it; ``batch`` is the batch size N, for
        the "factor N" hints; ``shape_of`` says whose shape each output has ("dw" ->
        "w"); ``what`` describes the returned object ("the (loss, cache) pair"); ``slack`` is
        an absolute error any correct formula may make (see ``hints.relative_error``).
        """
        mistakes = mistakes or {}
        what = what or f"{self._fn()}"
        if isinstance(expected, dict):
            if got is None:
                self.fail(f"{what} returned None.", "Did you forget the `return` statement?")
            if not isinstance(got, dict):
                self.fail(
                    f"{what} should be a dict with keys {list(names)}, got {_kind(got)}.",
                )
            missing = [k for k in names if k not in got]
            if missing:
                self.fail(f"{what} is missing the key(s) {missing}; it has {list(got)}.")
            pairs = [(k, f"{what}[{k!r}]", got[k], expected[k]) for k in names]
        elif len(names) == 1:
            if isinstance(got, (tuple, list)) and not isinstance(expected, (tuple, list)):
                self.fail(
                    f"{what} returned a {type(got).__name__} of {len(got)} values; "
                    f"it should return {names[0]} alone.",
                    "Return the tensor itself, e.g. `return dx`, not `return (dx,)`.",
                )
            pairs = [(names[0], names[0], got, expected)]
        else:
            if got is None:
                self.fail(f"{what} returned None.", "Did you forget the `return` statement?")
            if not isinstance(got, (tuple, list)):
                self.fail(
                    f"{what} returned {_kind(got)}; it should return a tuple ({', '.join(names)}).",
                )
            if len(got) != len(names):
                self.fail(
                    f"{what} returned {len(got)} values; it should return {len(names)}: "
                    f"({', '.join(names)}).",
                )
            pairs = [(n, n, g, e) for n, g, e in zip(names, got, expected, strict=True)]
        for key, shown, g, e in pairs:
            self._compare_one(
                shown,
                g,
                e,
                mistakes.get(key, []),
                batch,
                (shape_of or {}).get(key),
                nonfinite_hint,
                slack,
            )

    def _compare_one(
        self,
        name: str,
        got: Any,
        expected: torch.Tensor,
        mistakes: list[Mistake],
        batch: int | None,
        shape_of: str | None,
        nonfinite_hint: str | None,
        slack: torch.Tensor | float = 0.0,
    ) -> None:
        got = self._as_tensor(name, got, expected)
        if got.shape != expected.shape:
            whose = f", the shape of {shape_of}" if shape_of else ""
            hint = item_hint(got, mistakes) or shape_hint(name, got, expected)
            self.fail(
                f"{name} has shape {_shape(got)}, expected {_shape(expected)}{whose}.",
                hint,
            )
        if got.dtype != expected.dtype:
            precision = (
                f"your result has {str(got.dtype).removeprefix('torch.')} precision: "
                if got.dtype in (torch.float32, torch.float16, torch.bfloat16)
                and expected.dtype == torch.float64
                else ""
            )
            self.fail(
                f"{name} has dtype {got.dtype}, expected {expected.dtype} (the inputs' dtype).",
                f"{precision.capitalize()}keep the input's dtype. Build new tensors with "
                "torch.zeros_like(x) or dtype=x.dtype (torch.zeros(shape) alone gives float32), "
                "and turn masks into numbers with .to(x.dtype).",
            )
        if got.device != expected.device:
            self.fail(
                f"{name} is on device {got.device}, expected {expected.device} (the inputs' "
                "device).",
                "Create new tensors on the inputs' device: torch.zeros_like(x), or "
                "device=x.device.",
            )
        bad = ~torch.isfinite(got) & torch.isfinite(expected)
        if bool(bad.any()):
            index = _index(bad.nonzero()[0])
            self.fail(
                f"{name} contains {got[index].item()} at {_fmt_index(index)}, where the right "
                f"value is {expected[index].item():.6g} ({int(bad.sum())} non-finite "
                "value(s) in all).",
                nonfinite_hint
                or "nan and inf come from overflow (exp of a large number), 0/0 or log(0).",
            )
        if got.numel() == 0:
            return
        err = relative_error(got, expected, slack)
        worst = err.max().item()
        if worst > TOLERANCE or worst != worst:
            index = _index(torch.nonzero(err == err.max())[0]) if worst == worst else ()
            hint = (
                item_hint(got, mistakes)
                or generic_value_hint(name, got, expected, batch)
                or precision_hint(got, expected)
            )
            where = f" at {_fmt_index(index)}" if index else ""
            self.fail(
                f"{name} is wrong: largest relative error {worst:.1e}{where}: expected "
                f"{expected[index].item():.6g}, got {got[index].item():.6g}.",
                hint,
            )

    def _as_tensor(self, name: str, got: Any, expected: torch.Tensor) -> torch.Tensor:
        if got is None:
            self.fail(f"{name} is None.", "Did you forget a `return` statement?")
        if isinstance(got, (int, float)) and not isinstance(got, bool) and expected.dim() == 0:
            return torch.tensor(float(got), dtype=expected.dtype)
        if isinstance(got, torch.Tensor):
            if got.layout != torch.strided:
                self.fail(f"{name} is a {got.layout} tensor; return an ordinary (dense) tensor.")
            return (
                torch.Tensor._make_subclass(torch.Tensor, got)
                if type(got) is not torch.Tensor
                else got
            )
        if isinstance(got, Opaque) and got.note:
            device = got.note.startswith("on device")
            self.fail(
                f"{name} is {got.note}, expected a plain torch.Tensor"
                + (f" on {expected.device} (the inputs' device)." if device else "."),
                "Create new tensors on the inputs' device: torch.zeros_like(x), or device=x.device."
                if device
                else "Return an ordinary tensor built with torch operations (no subclass, no "
                "sparse layout).",
            )
        if isinstance(got, Opaque) and got.module.split(".")[0] == "numpy":
            self.fail(
                f"{name} is a NumPy {got.type_name.rsplit('.', 1)[-1]}; return a torch tensor.",
                "Stay in torch: torch operations on torch tensors give torch tensors.",
            )
        self.fail(
            f"{name} should be a tensor of shape {_shape(expected)}, got {_kind(got)}.",
        )
        raise AssertionError  # unreachable: fail() raises

    def outcome(self) -> Outcome:
        """The Outcome of a run in which every case passed."""
        return Outcome(
            "passed", f"All {self.cases} test cases passed ({self.item.covers}).", self.cases
        )


# ---------------------------------------------------------------------------- helpers
class StudentFunction:
    """Stands, in the grader, for one of the student's functions: ``ctx.call`` sends its
    calls to the student's process. ``__name__`` is the student's name for it."""

    def __init__(self, index: int, name: str) -> None:
        self.index, self.__name__ = index, name

    def __repr__(self) -> str:
        return f"<the student's {self.__name__}>"


def grade(
    item: Item,
    functions: Sequence[Callable[..., Any]] | None,
    seed: int,
    session: Session | None = None,
    names: Sequence[str] | None = None,
) -> Outcome:
    """Run ``item``'s grader; never raises.

    The student's functions run behind ``session`` (a separate process, for check() and
    bulk grading); without one they are called in this process through the same messages
    (``LocalSession``: for tests and in-process grading, no integrity). ``names`` are the
    student's names for the functions (default: their ``__name__``).
    """
    own = session is None
    if own:
        from coursekit.grading.library import library_of

        session = LocalSession(functions or (), item.hand_written, library_of(item.name))
    if names is None and functions is None:
        names = list(item.functions)
    elif names is None:
        names = [
            getattr(fn, "__name__", "") or p
            for fn, p in zip(functions, item.functions, strict=False)
        ]
    proxies = [StudentFunction(i, name) for i, name in enumerate(names)]
    ctx = GradingContext(item, seed, session)
    try:
        try:
            item.grade(ctx, *proxies)
        finally:
            if own:
                session.close()
    except CaseFailed as failure:
        lines = [ctx.current_case, failure.message] if ctx.current_case else [failure.message]
        if failure.hint:
            lines.append(f"Hint: {failure.hint}")
        return Outcome(failure.status, "\n".join(lines), ctx.cases, "".join(ctx.output))
    except StudentGone as gone:
        return Outcome(gone.status, gone.detail, ctx.cases, "".join(ctx.output), ctx.current_case)
    except Exception:
        return Outcome(
            "internal error",
            "The grader itself failed (not your code). Please report this:\n"
            + traceback.format_exc(limit=-3),
            ctx.cases,
            "".join(ctx.output),
        )
    outcome = ctx.outcome()
    outcome.output = "".join(ctx.output)
    return outcome


def _snapshot(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, tuple):
        return tuple(_snapshot(v) for v in value)
    if isinstance(value, list):  # a list can be changed: remember each entry and its snapshot
        return [(v, _snapshot(v)) for v in value]
    if isinstance(value, dict):
        return {k: (v, _snapshot(v)) for k, v in value.items()}
    return value


def _changes(path: str, before: Any, now: Any) -> list[str]:
    """Paths (like "cache[0]" or "params['w1']") whose content differs from the snapshot."""
    if isinstance(before, torch.Tensor):
        same = (
            isinstance(now, torch.Tensor)
            and now.shape == before.shape
            and now.dtype == before.dtype
            and bool(((now == before) | (now.isnan() & before.isnan())).all())
        )
        return [] if same else [path]
    if isinstance(before, tuple):
        return [c for i, b in enumerate(before) for c in _changes(f"{path}[{i}]", b, now[i])]
    if isinstance(before, list):  # entries saved as (object, snapshot)
        if not isinstance(now, list) or len(now) != len(before):
            return [path]
        found = []
        for i, (obj, snap) in enumerate(before):
            found += [f"{path}[{i}]"] if now[i] is not obj else _changes(f"{path}[{i}]", snap, obj)
        return found
    if isinstance(before, dict):
        if not isinstance(now, dict) or set(now) != set(before):
            return [path]
        found = []
        for key, (obj, snap) in before.items():
            sub = f"{path}[{key!r}]"
            found += [sub] if now[key] is not obj else _changes(sub, snap, obj)
        return found
    return []


def _detach(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(_detach(v) for v in value)
    if isinstance(value, list):
        return [_detach(v) for v in value]
    if isinstance(value, dict):
        return {k: _detach(v) for k, v in value.items()}
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {_shape(value)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} values"
    if isinstance(value, Opaque):
        return f"a {value.type_name.rsplit('.', 1)[-1]}"
    return f"a {type(value).__name__}"


def _shape(t: torch.Tensor) -> str:
    return str(tuple(t.shape))


def _index(nonzero_row: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(i) for i in nonzero_row)


def _fmt_index(index: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(i) for i in index) + "]"


# ---------------------------------------------------------------------------- exceptions
_LIBRARY_DIRS = tuple(
    os.path.normcase(os.path.realpath(p))
    for p in {
        os.path.dirname(torch.__file__),
        os.path.dirname(os.path.dirname(__file__)),  # coursekit
        sysconfig.get_paths()["stdlib"],
    }
)


def describe_exception(err: BaseException, fn: str) -> str:
    """ "`fn` raised Type: message", and the line of the student's code where it happened."""
    text = f"{fn} raised {type(err).__name__}"
    message = str(err).strip()
    if message:
        if len(message) > 400:
            message = message[:400] + " ..."
        text += f": {message}"
    frames = traceback.extract_tb(err.__traceback__)
    mine = [f for f in frames if not _in_library(f.filename)]
    frame = mine[-1] if mine else (frames[-1] if len(frames) > 1 else None)
    if frame is not None:
        text += f"\n  at {_where(frame.filename)}, line {frame.lineno}"
        if frame.line:
            text += f": {frame.line.strip()}"
    return text


def _in_library(filename: str) -> bool:
    path = os.path.normcase(os.path.realpath(filename))
    return path.startswith(_LIBRARY_DIRS) or "site-packages" in path


def _where(filename: str) -> str:
    """ "Cell In[7]" for a notebook cell, else the file's name."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None:
            named = shell.compile.format_code_name(filename)
            if named:
                return " ".join(named)
    except Exception:
        pass
    return os.path.basename(filename) if filename.startswith(sys.prefix) else filename


def _exception_hint(kind: str, text: str, error_hint: str | None) -> str | None:
    """A hint for an exception of ``kind`` ("recursion", "memory", "exit", ...) saying ``text``."""
    if kind == "recursion":
        return (
            "Too deep a recursion: Python allows about a thousand nested calls. "
            "Use a loop with an explicit stack (a list you append to and pop from) instead."
        )
    if kind == "memory" or "can't allocate memory" in text or "out of memory" in text:
        return "Your code asked for far more memory than the grader allows."
    if "CUDA" in text and "fork" in text:
        return (
            "Your function moved tensors to the GPU. It is checked on CPU tensors in a separate "
            "process, where CUDA is not available: create new tensors on the inputs' device "
            "(torch.zeros_like(x), or device=x.device) instead of choosing one."
        )
    if kind == "exit":
        return "Do not call exit() or sys.exit() in your function; return the result instead."
    if kind == "interrupt":
        return (
            "Your function raised KeyboardInterrupt itself; it is graded like any other exception."
        )
    shapes = ("shapes cannot be multiplied", "must match the size", "size mismatch", "broadcast")
    if any(s in text for s in shapes):
        return error_hint or (
            "A shape mismatch: write down the shape of every tensor in that line. A gradient "
            "has the shape of the thing it is the gradient of."
        )
    return None
