"""Result: what check() found, readable as plain text and rendered in colour in Jupyter."""

from __future__ import annotations

import html
from dataclasses import asdict, dataclass, field

# Why an item did or did not earn its points. "passed" is the only status that scores.
STATUSES = (
    "passed",  # every test case matched the reference
    "failed",  # a returned value is wrong (feedback says which, and how)
    "not implemented",  # the function still raises NotImplementedError
    "error",  # the function raised an exception
    "timeout",  # the function did not finish within the time limit
    "crashed",  # the function ended the grading process (a segfault, os._exit, ...)
    "uses autograd",  # a hand-written answer that used automatic differentiation
    "uses coursekit",  # a hand-written answer that called coursekit's own implementation
    "tampers",  # the code reaches into the grader
    "not graded here",  # check() inside bulk grading's student process (bulk grades itself)
    "invalid call",  # check() itself was called wrongly: unknown item, wrong number of functions
    "internal error",  # a bug in the grader, not in the student's code
)


@dataclass
class Result:
    """The outcome of ``check(item, *fns)``.

    Attributes:
        item: the item's name, e.g. ``"04.linear_backward"``.
        passed: True when every test case matched the reference.
        points: points earned (all or nothing: ``max_points`` if passed, else 0).
        max_points: points the item is worth.
        feedback: what was checked and, on failure, what went wrong and a hint.
        status: one of ``STATUSES``.
        output: text the student's functions printed while being checked.
        seconds: how long the check took.
        seed: the seed of the random test inputs, to reproduce a run.
    """

    item: str
    passed: bool
    points: int
    max_points: int
    feedback: str
    status: str = "passed"
    output: str = field(default="", repr=False)
    seconds: float = field(default=0.0, repr=False)
    seed: int | None = field(default=None, repr=False)
    _shown_in: object = field(default=None, repr=False, compare=False)

    @property
    def headline(self) -> str:
        """One line: PASS/FAIL, the item, the points and, when it failed, why."""
        verdict = "PASS" if self.passed else "FAIL"
        reason = "" if self.status in ("passed", "failed") else f" ({self.status})"
        return f"{verdict} {self.item}: {self.points}/{self.max_points} points{reason}"

    def __str__(self) -> str:
        body = "\n".join("    " + line if line else "" for line in self.feedback.splitlines())
        return f"{self.headline}\n{body}" if body else self.headline

    def __repr__(self) -> str:
        return (
            f"Result(item={self.item!r}, passed={self.passed}, "
            f"points={self.points}/{self.max_points}, status={self.status!r})"
        )

    def _repr_html_(self) -> str:
        colour, background = ("#1b5e20", "#e8f5e9") if self.passed else ("#b71c1c", "#ffebee")
        return (
            f'<div style="border-left: 6px solid {colour}; background: {background}; '
            f'color: #1a1a1a; padding: 6px 12px; margin: 4px 0;">'
            f'<b style="color: {colour}">{html.escape(self.headline)}</b>'
            f'<pre style="white-space: pre-wrap; background: transparent; color: #1a1a1a; '
            f'margin: 4px 0 0 0;">{html.escape(self.feedback)}</pre></div>'
        )

    def _ipython_display_(self) -> None:
        """Show the result once per cell run.

        check() displays its result itself, so that it is seen even when check() is
        not the last line of a cell. When it is the last line, IPython asks the
        returned result to display itself a second time; that request is ignored
        during the same cell run. Evaluating the result in a later cell shows it again.
        """
        from IPython import get_ipython
        from IPython.display import display

        shell = get_ipython()
        run = getattr(shell, "execution_count", None)
        if run is not None and self._shown_in == run:
            return
        self._shown_in = run
        display({"text/plain": str(self), "text/html": self._repr_html_()}, raw=True)

    def to_record(self) -> dict:
        """A JSON-ready dict: the line check() writes for bulk grading."""
        record = asdict(self)
        record.pop("_shown_in")
        return record
