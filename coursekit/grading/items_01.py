"""Graded items of lesson 01 (derivatives and the chain rule)."""

from __future__ import annotations

import torch

from coursekit.grading.context import GradingContext
from coursekit.grading.hints import Mistake
from coursekit.grading.reference import autograd_grads
from coursekit.grading.registry import item

# Elementwise test functions for the central difference: (name, f).
_FUNCTIONS = [
    ("torch.sin", torch.sin),
    ("x**3 - 2*x", lambda t: t**3 - 2 * t),
    ("torch.exp", torch.exp),
    ("torch.tanh", torch.tanh),
]

# A vectorised answer calls f twice (four leaves room for an extra f(x)); a loop over the
# entries calls it twice per entry, and every test case but the 0-dim one has 4 or more.
_MOST_CALLS = 4


@item(
    "01.central_difference",
    points=1,
    description="the central difference (f(x+h) - f(x-h)) / (2h), elementwise",
    signature="fn(f, x, h) -> tensor of x's shape",
    covers="four functions, steps h from 1e-4 to 0.5, several shapes, no loop over entries",
    hand_written=False,  # autograd would give f'(x), not the central difference: it fails anyway
)
def central_difference(ctx: GradingContext, fn) -> None:
    """Values against the formula, and f called on whole tensors: a Python loop over the
    entries calls f twice per entry, which the count of calls reveals."""
    cases = [(0, (5,), 1e-3), (1, (3, 4), 0.5), (2, (), 0.1), (3, (2, 3, 2), 0.25), (1, (4,), 1e-4)]
    for f_index, shape, h in cases:
        label, f = _FUNCTIONS[f_index]
        x = ctx.randn(*shape)
        with ctx.case(f"f = {label}, x of shape {tuple(x.shape)}, h = {h:g}"):
            expected = (f(x + h) - f(x - h)) / (2 * h)
            (exact,) = autograd_grads(lambda t, f=f: f(t), [x])
            mistakes = [
                Mistake(
                    (f(x + h) - f(x)) / h,
                    "That is the forward difference (f(x+h) - f(x)) / h. The central difference "
                    "steps both ways: (f(x+h) - f(x-h)) / (2h), and its error shrinks like h**2.",
                ),
                Mistake(
                    (f(x) - f(x - h)) / h,
                    "That is the backward difference (f(x) - f(x-h)) / h; the central difference "
                    "is (f(x+h) - f(x-h)) / (2h).",
                ),
                Mistake(
                    (f(x + h) - f(x - h)) / h,
                    "Divide by 2h, not h: x+h and x-h are 2h apart.",
                ),
                Mistake(
                    exact,
                    "You returned the exact derivative f'(x). The exercise asks for the "
                    "finite-difference approximation (f(x+h) - f(x-h)) / (2h), which differs "
                    "from f'(x) when h is not tiny.",
                ),
            ]
            calls: list[int] = []

            def counted(t, f=f, calls=calls):
                calls.append(1)
                return f(t)

            got = ctx.call(fn, counted, x, h, names=("f", "x", "h"))
            ctx.compare(
                got,
                expected,
                ("the result",),
                mistakes={"the result": mistakes},
                shape_of={"the result": "x"},
            )
            if len(calls) > _MOST_CALLS:
                ctx.fail(
                    f"The values are right, but `{ctx.function_name}` called f {len(calls)} "
                    f"times for an x of {x.numel()} entries: a Python loop over the entries.",
                    "f acts elementwise, so f(x + h) evaluates it at every entry at once: "
                    "call f twice, on whole tensors, with no loop. On a million entries that "
                    "is two calls instead of two million.",
                )


@item(
    "01.chain_rule",
    points=1,
    description="d/dx exp(sin(x**2)) by the chain rule, elementwise",
    signature="fn(x) -> tensor of x's shape",
    covers="vectors, a matrix and a 0-dim tensor, no autograd",
)
def chain_rule(ctx: GradingContext, fn) -> None:
    for shape in [(7,), (3, 4), (), (1,)]:
        x = ctx.randn(*shape, scale=1.5)
        with ctx.case(f"x of shape {tuple(x.shape)}"):
            (expected,) = autograd_grads(lambda t: torch.exp(torch.sin(t**2)), [x])
            y, u = torch.exp(torch.sin(x**2)), x**2
            mistakes = [
                Mistake(
                    y * torch.cos(u),
                    "The derivative of the innermost function, d(x**2)/dx = 2x, is missing.",
                ),
                Mistake(y * 2 * x, "The derivative of sin, cos(x**2), is missing."),
                Mistake(
                    torch.cos(u) * 2 * x,
                    "The derivative of the outer exp, exp(sin(x**2)) itself, is missing.",
                ),
                Mistake(
                    y * torch.cos(x) * 2 * x,
                    "sin's derivative must be taken at its input: cos(x**2), not cos(x).",
                ),
                Mistake(y, "You returned y = exp(sin(x**2)) itself, not its derivative."),
            ]
            got = ctx.call(fn, x, names=("x",))
            ctx.compare(
                got, expected, ("dy/dx",), mistakes={"dy/dx": mistakes}, shape_of={"dy/dx": "x"}
            )
