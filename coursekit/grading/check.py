"""check(): grade the student's functions for one item, show the result, return it.

    from coursekit.grading import check
    check("04.linear_backward", linear_backward)
    check("03.sigmoid", sigmoid_forward, sigmoid_backward)

What it does:

1. Looks the item up and checks the call (unknown item, wrong number of
   functions, something that is not a function: reported, never raised).
2. For an item that asks for a hand-written answer, reads the functions' source
   (``scan``): automatic differentiation or coursekit's own implementation of
   the graded operation scores zero, with the line quoted.
3. Grades the item on fresh random float64 inputs, the references and the
   comparisons here and the student's functions in a forked process of their own
   (``isolation``), which only sends plain data back; with a time limit (default
   10 s; argument ``timeout`` or the environment variable COURSEKIT_GRADING_TIMEOUT).
4. Shows the result: in Jupyter as a green or red box, elsewhere as text. The
   result is shown by check() itself, so it appears even when check() is not
   the last line of a cell; when it is the last line, the returned Result is
   not shown a second time.
5. If the environment variable COURSEKIT_GRADING_LOG names a file, appends the
   result to it as one line of JSON (a record for the student; bulk grading does not
   read it: it grades the notebook's functions itself).
6. Returns the Result; in strict mode (``strict=True`` or the environment variable
   COURSEKIT_GRADING_STRICT=1) raises ``AssertionError`` with the feedback instead
   when the item did not pass, so a test harness such as nbgrader's autograder
   scores the cell zero.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
import zlib
from collections.abc import Callable
from typing import Any

from coursekit.grading.context import AUTOGRAD_HINT, LIBRARY_HINT, Outcome, grade
from coursekit.grading.guard import prepare, preserved_global_state
from coursekit.grading.isolation import (
    NO_INTEGRITY,
    ForkedSession,
    LocalSession,
    default_memory_budget,
    in_process_time_limit,
    isolation_mode,
)
from coursekit.grading.library import library_of
from coursekit.grading.reference import warm_up
from coursekit.grading.registry import Item, all_items, get_item
from coursekit.grading.result import Result
from coursekit.grading.scan import Hit, scan_functions

DEFAULT_TIMEOUT = 10.0
LOG_VARIABLE = "COURSEKIT_GRADING_LOG"
STRICT_VARIABLE = "COURSEKIT_GRADING_STRICT"


def check(
    item: str,
    *functions: Callable[..., Any],
    timeout: float | None = None,
    strict: bool | None = None,
) -> Result:
    """Grade ``functions`` on item ``item``, show the result and return it.

    Never raises because of the student's code, except in strict mode: with
    ``strict=True`` (default: the environment variable COURSEKIT_GRADING_STRICT
    set to 1) a result that did not pass raises ``AssertionError`` carrying the
    feedback. ``timeout`` (seconds) bounds the whole check; by default 10 s, or the
    item's own limit if it needs longer.
    """
    if os.environ.get("COURSEKIT_GRADING_BULK_WORKER"):  # bulk grading grades every item itself
        found = get_item(item) if isinstance(item, str) else None
        points = found.points if found else 0
        return Result(str(item), False, 0, points, "", status="not graded here")
    start = time.perf_counter()
    result = _grade(item, functions, timeout)
    result.seconds = round(time.perf_counter() - start, 3)
    _show(result)
    _log(result)
    if strict is None:
        strict = os.environ.get(STRICT_VARIABLE, "").strip().lower() in {"1", "true", "yes"}
    if strict and not result.passed:
        raise AssertionError(f"{result.item}: {result.status}\n{result.feedback}")
    return result


def _grade(name: Any, functions: tuple, timeout: float | None) -> Result:
    found = get_item(name) if isinstance(name, str) else None
    if found is None:
        return _invalid(str(name), 0, _unknown_item_message(name))
    if getattr(found.grade, "__module__", None) == "__main__":
        return _invalid(found.name, found.points, NOTEBOOK_ITEM)
    problem = _call_problem(found, functions)
    if problem:
        return _invalid(found.name, found.points, problem)
    seed = _seed(found)
    if found.hand_written:
        hit = scan_functions(functions, library_of(found.name))
        if hit is not None:
            return flagged(found, hit, seed)
    limit = _time_limit(found, timeout)
    warm_up()
    if found.hand_written:
        prepare(library_of(found.name))
    outcome = grade_in_student_process(found, functions, seed, limit)
    return to_result(found, outcome, seed, limit)


def grade_in_student_process(
    found: Item, functions: tuple, seed: int, limit: float, mode: str | None = None
) -> Outcome:
    """Grade with the student's functions in a forked process (or in this one, see isolation)."""
    names = [
        getattr(fn, "__name__", "") or p for fn, p in zip(functions, found.functions, strict=True)
    ]
    if (mode or isolation_mode()) == "fork":
        session = ForkedSession(
            functions,
            found.hand_written,
            library_of(found.name),
            limit,
            default_memory_budget(),
        )
        try:
            outcome = grade(found, None, seed, session=session, names=names)
        finally:
            session.close()
        if outcome.status == "crashed" and session.calls == 0 and not outcome.progress:
            # The child died before the student's code ran: forking itself is broken here (say,
            # a platform library that does not survive a fork). Grade in this process instead.
            return grade_in_student_process(found, functions, seed, limit, mode="inprocess")
        return outcome
    session = LocalSession(functions, found.hand_written, library_of(found.name))
    with preserved_global_state(), in_process_time_limit(limit) as stopped:
        session.server.stopped = lambda: True
        outcome = grade(found, None, seed, session=session, names=names)
    if stopped[0]:
        outcome = Outcome("timeout", "", 0)
    outcome.feedback = (outcome.feedback + "\n" if outcome.feedback else "") + NO_INTEGRITY
    return outcome


def to_result(found: Item, outcome: Outcome, seed: int, limit: float) -> Result:
    """The Result of an Outcome: points only for "passed", messages for a stopped process."""
    status, feedback = outcome.status, outcome.feedback
    where = outcome.progress
    if status == "timeout":
        feedback = (
            f"Stopped after {limit:g} s: your code did not finish (an endless loop? a loop "
            "over every element of a large tensor?)."
            + (f"\nIt was running {where[0].lower()}{where[1:]}." if where else "")
            + (f"\n{NO_INTEGRITY}" if NO_INTEGRITY in outcome.feedback else "")
        )
    elif status == "crashed":
        feedback = f"Your code ended the grading process with {outcome.feedback}."
        if where:
            feedback += f"\nIt was running {where[0].lower()}{where[1:]}."
    elif status == "malformed":
        status = "error"
        feedback = (
            "Your code sent the grader something that is not a valid answer "
            f"({outcome.feedback}); it scores zero."
        )
        if where:
            feedback += f"\nIt was running {where[0].lower()}{where[1:]}."
    passed = status == "passed"
    return Result(
        item=found.name,
        passed=passed,
        points=found.points if passed else 0,
        max_points=found.points,
        feedback=feedback,
        status=status,
        output=outcome.output,
        seed=seed,
    )


def flagged(found: Item, hit: Hit, seed: int | None = None) -> Result:
    """The Result of a source-scan hit: zero points, the line quoted."""
    hints = {
        "uses autograd": AUTOGRAD_HINT,
        "uses coursekit": LIBRARY_HINT,
        "tampers": "The grader is not part of the exercise: leave coursekit.grading alone.",
    }
    return Result(
        item=found.name,
        passed=False,
        points=0,
        max_points=found.points,
        feedback=f"{hit.message()}\nHint: {hints[hit.status]}",
        status=hit.status,
        seed=seed,
    )


def _seed(found: Item) -> int:
    """The seed of the test inputs: fixed per item, so feedback is reproducible.

    The inputs are still generated on the spot and the reference is computed by
    torch.autograd, so there is no answer key. ``COURSEKIT_GRADING_SEED`` overrides it:
    an integer, or ``random`` for fresh inputs on every call.
    """
    configured = os.environ.get("COURSEKIT_GRADING_SEED", "").strip()
    if configured == "random":
        return secrets.randbits(63)
    if configured:
        return int(configured)
    return zlib.crc32(found.name.encode())


def _time_limit(found: Item, timeout: float | None) -> float:
    if timeout is not None:
        return float(timeout)
    configured = os.environ.get("COURSEKIT_GRADING_TIMEOUT")
    default = float(configured) if configured else DEFAULT_TIMEOUT
    return max(default, found.timeout or 0.0)


def _invalid(name: str, points: int, feedback: str) -> Result:
    return Result(name, False, 0, points, feedback, status="invalid call")


NOTEBOOK_ITEM = (
    "This item is defined in the notebook itself, not in coursekit: bulk grading and nbgrader "
    "grade only the package's items, so it would count for nothing there. Move its @item "
    "code into coursekit/grading/items_NN.py (docs/authoring_items.md)."
)


def _unknown_item_message(name: Any) -> str:
    names = [it.name for it in all_items()]
    close = [n for n in names if isinstance(name, str) and name.split(".")[-1] in n]
    text = f"There is no graded item called {name!r}."
    if close:
        text += f" Did you mean {close[0]!r}?"
    return text + " coursekit.grading.items() lists them all."


def _call_problem(found: Item, functions: tuple) -> str | None:
    expected = len(found.functions)
    usage = f"check({found.name!r}, {', '.join(found.functions)}) with {found.signature}"
    if len(functions) != expected:
        return (
            f"{found.name} takes {expected} function(s), you passed {len(functions)}. "
            f"Call it as {usage}."
        )
    for position, fn in enumerate(functions):
        if not callable(fn):
            return (
                f"Argument {position + 2} of check() should be your function "
                f"{found.functions[position]!r}, got a {type(fn).__name__}. Call it as {usage} "
                "(pass the function itself, without calling it: no parentheses)."
            )
    return None


def _show(result: Result) -> None:
    if result.output:
        sys.stdout.write(result.output if result.output.endswith("\n") else result.output + "\n")
    shell = None
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        pass
    if shell is not None:
        result._ipython_display_()
    else:
        print(result)


def _log(result: Result) -> None:
    path = os.environ.get(LOG_VARIABLE)
    if not path:
        return
    line = json.dumps(result.to_record()) + "\n"
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line)
    except OSError as err:
        print(f"(could not record the result in {path}: {err})", file=sys.stderr)
