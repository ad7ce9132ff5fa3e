"""Graded items of lesson 04 (vectorized backprop): the linear layer, broadcasting, shapes."""

from __future__ import annotations

import torch

from coursekit.grading.context import GradingContext
from coursekit.grading.hints import Mistake
from coursekit.grading.reference import autograd_grads, describe_shapes
from coursekit.grading.registry import item

_LINEAR_SHAPES = (
    "Check the shapes: dx = dout @ w.T is (N, H) @ (H, D) -> (N, D), the shape of x; "
    "dw = x.T @ dout is (D, N) @ (N, H) -> (D, H), the shape of w. A missing transpose "
    "(.T) is the usual cause."
)
_DB_NOT_SUMMED = (
    "db must be summed over the batch: db = dout.sum(dim=0). Every example in the batch "
    "adds its own contribution to the bias gradient, because b is added to every row."
)


@item(
    "04.linear_backward",
    points=3,
    description="dx, dw, db of out = x @ w + b",
    signature="fn(dout, cache) -> (dx, dw, db), cache = (x, w, b)",
    covers="batch 1, odd, square and non-square shapes",
)
def linear_backward(ctx: GradingContext, fn) -> None:
    for n, d, h in [(4, 3, 5), (1, 3, 5), (7, 2, 3), (6, 4, 4), (4, 4, 4), (2, 1, 1), (10, 6, 2)]:
        x, w, b, dout = ctx.randn(n, d), ctx.randn(d, h), ctx.randn(h), ctx.randn(n, h)
        with ctx.case(describe_shapes(x=x, w=w, b=b, dout=dout)):
            expected = autograd_grads(lambda x, w, b: x @ w + b, [x, w, b], dout)
            mistakes = {
                "dx": [Mistake(dout @ w, "A transpose is missing: dx = dout @ w.T.")]
                if d == h
                else [],
                "dw": [Mistake(x @ dout, "A transpose is missing: dw = x.T @ dout.")]
                if n == d
                else [],
                "db": [
                    Mistake(dout, _DB_NOT_SUMMED, shape_only=True),
                    Mistake(
                        dout.sum(dim=1),
                        "Sum over the batch, dim 0, not over dim 1: db = dout.sum(dim=0).",
                        shape_only=True,
                    ),
                    Mistake(
                        dout.sum(),
                        "Sum over the batch only (dim 0), not over every "
                        "entry: db = dout.sum(dim=0) has the shape of b.",
                        shape_only=True,
                    ),
                    Mistake(
                        dout.mean(dim=0),
                        "Sum over the batch, do not average: db = dout.sum(dim=0).",
                    ),
                ],
            }
            got = ctx.call(
                fn,
                dout,
                (x, w, b),
                names=("dout", "cache"),
                labels={"cache[0]": "x", "cache[1]": "w", "cache[2]": "b"},
                error_hint=_LINEAR_SHAPES,
            )
            ctx.compare(
                got,
                expected,
                ("dx", "dw", "db"),
                mistakes=mistakes,
                batch=n,
                shape_of={"dx": "x", "dw": "w", "db": "b"},
            )


@item(
    "04.broadcast_backward",
    points=2,
    description="the backward of broadcasting: sum dout back to the input's shape",
    signature="fn(dout, shape) -> dx of that shape",
    covers="leading dims added, size-1 dims stretched, both, no broadcast, 0-dim",
)
def broadcast_backward(ctx: GradingContext, fn) -> None:
    cases = [
        ((1, 5), (4, 5)),
        ((5,), (4, 5)),
        ((4, 1), (4, 5)),
        ((3, 1, 5), (2, 3, 4, 5)),
        ((), (3,)),
        ((2, 3), (2, 3)),
        ((1, 1), (3, 4)),
        ((1,), (4, 5)),
    ]
    for number, (shape, out_shape) in enumerate(cases):
        dout = ctx.randn(*out_shape)
        given = torch.Size(shape) if number % 2 == 0 else tuple(shape)
        with ctx.case(f"x of shape {tuple(shape)} broadcast to dout {tuple(out_shape)}"):
            x = torch.zeros(shape, dtype=torch.float64)
            (expected,) = autograd_grads(lambda t, s=out_shape: t.expand(s), [x], dout)
            copies = dout.numel() // max(x.numel(), 1)  # how many copies of x broadcasting made
            mistakes = [
                Mistake(
                    dout,
                    "You returned dout unchanged. Broadcasting copied x along some "
                    "dims, so its gradient adds up the copies: sum dout over those dims.",
                    shape_only=True,
                ),
                Mistake(
                    expected / copies,
                    "Sum over the broadcast dims, do not average: "
                    "each copy of x passes on its full gradient.",
                ),
                Mistake(
                    dout.sum(),
                    "Sum only over the dims that were broadcast (the leading "
                    "dims x does not have, and the dims where x has size 1), not over all.",
                    shape_only=True,
                ),
            ]
            got = ctx.call(fn, dout, given, names=("dout", "shape"))
            ctx.compare(
                got,
                expected,
                ("dx",),
                mistakes={"dx": mistakes},
                shape_of={"dx": "x (the given shape)"},
            )


@item(
    "04.grad_shapes",
    points=1,
    description="the shapes of dx, dw, db for out = x @ w + b",
    signature="fn(x_shape, w_shape) -> (dx_shape, dw_shape, db_shape), tuples of ints",
    covers="batch 1, square and MNIST-sized layers",
)
def grad_shapes(ctx: GradingContext, fn) -> None:
    for n, d, h in [(4, 3, 5), (1, 7, 2), (6, 6, 6), (2, 1, 1), (128, 784, 10)]:
        x_shape, w_shape = (n, d), (d, h)
        with ctx.case(f"x_shape = {x_shape}, w_shape = {w_shape}"):
            got = ctx.call(fn, x_shape, w_shape, names=("x_shape", "w_shape"))
            expected = {"dx_shape": (n, d), "dw_shape": (d, h), "db_shape": (h,)}
            hints = {
                "dx_shape": {(n, h): "dx has the shape of x, (N, D), not of out."},
                "dw_shape": {(h, d): "dw has the shape of w, (D, H): yours is transposed."},
                "db_shape": {
                    (n, h): "db has the shape of b, (H,): it is summed over the batch.",
                    (1, h): "db has the shape of b, (H,), a 1-tuple; not (1, H).",
                },
            }
            if not isinstance(got, (tuple, list)) or len(got) != 3:
                ctx.fail(
                    f"`{ctx.function_name}` should return three shapes "
                    f"(dx_shape, dw_shape, db_shape), got {got!r}."
                )
            for (name, want), value in zip(expected.items(), got, strict=True):
                if isinstance(value, int):
                    ctx.fail(
                        f"{name} is the int {value}; shapes are tuples of ints.",
                        "A one-element tuple needs a comma: (H,), not (H).",
                    )
                try:
                    shape = tuple(int(v) for v in value)
                except (TypeError, ValueError):
                    ctx.fail(f"{name} should be a tuple of ints, got {value!r}.")
                if shape != want:
                    ctx.fail(
                        f"{name} is {shape}, expected {want}.",
                        hints[name].get(
                            shape,
                            "Every gradient has the shape of the thing it is the gradient "
                            "of: dx like x, dw like w, db like b.",
                        ),
                    )
