"""Graded item of lesson 00 (set-up and tour): a warm-up to see how check() works."""

from __future__ import annotations

from coursekit.grading.context import GradingContext
from coursekit.grading.hints import Mistake
from coursekit.grading.reference import autograd_grads
from coursekit.grading.registry import item


@item(
    "00.sum_of_squares_grad",
    points=1,
    description="the gradient of sum(x**2) with respect to x, i.e. 2*x",
    signature="fn(x) -> tensor of x's shape",
    covers="vectors, matrices, a 3-d tensor and a 0-dim tensor",
    hand_written=False,  # the warm-up may be solved by hand or with torch.autograd
)
def sum_of_squares_grad(ctx: GradingContext, fn) -> None:
    for shape in [(5,), (3, 4), (), (2, 3, 4), (1,)]:
        x = ctx.randn(*shape)
        with ctx.case(f"x of shape {tuple(x.shape)}"):
            (expected,) = autograd_grads(lambda t: (t**2).sum(), [x])
            got = ctx.call(fn, x, names=("x",))
            mistakes = [
                Mistake(x, "d/dx x**2 = 2*x: the factor 2 is missing."),
                Mistake(x**2, "You returned x**2, the function itself; its derivative is 2*x."),
                Mistake(
                    (x**2).sum(),
                    "You returned the value of sum(x**2), a single number. The gradient has "
                    "one entry per entry of x (the same shape as x).",
                    shape_only=True,
                ),
            ]
            ctx.compare(
                got,
                expected,
                ("the gradient",),
                mistakes={"the gradient": mistakes},
                shape_of={"the gradient": "x"},
            )
