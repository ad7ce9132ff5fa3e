"""Grading the course's exercises: ``check()`` in a notebook, bulk grading on the command line.

In a notebook::

    from coursekit.grading import check, items
    items("04")                                   # the graded items of lesson 04 and their points
    check("04.linear_backward", linear_backward)  # PASS/FAIL, points, and what to fix

``check`` tests the functions on fresh random float64 inputs against
torch.autograd and never raises because of the code it checks. The references
and the comparison stay in this process; the student's functions run in a
separate process with a time limit, which only sends plain data back. On the
command line::

    python -m coursekit.grading submissions/*.ipynb --json grades.json --csv grades.csv

runs each notebook in a fresh process and grades every item of its lesson (see ``bulk``).

Modules, one idea each:

    check       check(): scan, grade, show, record, return a Result
    result      Result: passed, points, max_points, feedback, status
    registry    the @item decorator and items()
    context     GradingContext: random inputs, calls to the student's process, comparisons
    hints       recognising classic mistakes from the wrong answer they give
    isolation   sessions with the student's process: forked, over pipes, or in-process
    wire        the messages between the two processes: data only, never code
    student     the student's side: calls the functions, reports results and in-place changes
    guard       the autograd ban (every route) and global state kept in-process
    scan        the source scan for automatic differentiation and coursekit's own answer
    library     coursekit's implementations of each graded operation
    reference   gradients from torch.autograd
    items_00 ... the graded items, one module per lesson
    bulk        grading many notebooks; worker: a process loaded with one notebook's code
"""

from coursekit.grading import (  # noqa: F401
    items_00,
    items_01,
    items_02,
    items_03,
    items_04,
    items_05,
    items_06,
    items_07,
    items_08,
    items_09,
    items_10,
    items_11,
    items_12,
    items_13,
    items_14,
)
from coursekit.grading.check import check
from coursekit.grading.hints import Mistake
from coursekit.grading.registry import Item, item, items
from coursekit.grading.result import Result

__all__ = ["Item", "Mistake", "Result", "check", "item", "items"]
