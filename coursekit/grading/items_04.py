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
    description="the backward of broadcasting: sum dout back to the input's shape "
    "(torch's one-call version, dout.sum_to_size(shape), is allowed: it is a sum, not autograd)",
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


# ----------------------------------------------------------------- the debugging lab
_SQUARE_TRANSPOSE = (
    "dx = dout @ w.T, not dout @ w. With a square w both have the right shape, so only a "
    "value check (against torch.autograd or finite differences) can tell them apart."
)
_DOUT_IN_PLACE = (
    "`dx = dout` does not copy: dx and dout are one tensor, so writing into dx (`dx[...] = 0`) "
    "changes dout too, and a second `dy = dout` sees the zeros. Build new tensors instead: "
    "`dx = torch.where(x >= y, dout, 0.0)`, or start from `dout.clone()`."
)


@item(
    "04.find_the_bug",
    points=3,
    description="repair three broken backward passes: x @ w with a square w, "
    "x * gamma + beta, and torch.maximum(x, y)",
    signature="matmul_backward(dout, (x, w)) -> (dx, dw); "
    "scale_shift_backward(dout, (x, gamma)) -> (dx, dgamma, dbeta); "
    "max_backward(dout, (x, y)) -> (dx, dy)",
    covers="square and non-square w, batch 1, every function checked for in-place changes",
)
def find_the_bug(ctx: GradingContext, matmul_backward, scale_shift_backward, max_backward) -> None:
    """Three small backward passes, each with the bug of lesson 04's debugging lab repaired."""
    # 1. out = x @ w; the broken version has dx = dout @ w, which runs when w is square.
    for n, d, h in [(5, 4, 4), (1, 3, 3), (6, 2, 5), (3, 6, 6)]:
        x, w, dout = ctx.randn(n, d), ctx.randn(d, h), ctx.randn(n, h)
        with ctx.case("matmul_backward, " + describe_shapes(x=x, w=w, dout=dout)):
            expected = autograd_grads(lambda x, w: x @ w, [x, w], dout)
            mistakes = {
                "dx": [Mistake(dout @ w, _SQUARE_TRANSPOSE)] if d == h else [],
                "dw": [
                    Mistake(
                        dout.T @ x,
                        "dw = x.T @ dout (D, N)(N, H); dout.T @ x is its transpose, "
                        "which a square w does not reveal by its shape.",
                    )
                ]
                if d == h
                else [],
            }
            got = ctx.call(
                matmul_backward,
                dout,
                (x, w),
                names=("dout", "cache"),
                labels={"cache[0]": "x", "cache[1]": "w"},
                error_hint=_LINEAR_SHAPES,
            )
            ctx.compare(
                got, expected, ("dx", "dw"), mistakes=mistakes, shape_of={"dx": "x", "dw": "w"}
            )

    # 2. out = x * gamma + beta; the broken version returns dbeta = dout, not summed.
    for n, d in [(6, 3), (1, 4), (4, 4), (7, 1)]:
        x, gamma, beta, dout = ctx.randn(n, d), ctx.randn(d), ctx.randn(d), ctx.randn(n, d)
        with ctx.case("scale_shift_backward, " + describe_shapes(x=x, gamma=gamma, dout=dout)):
            expected = autograd_grads(lambda x, g, b: x * g + b, [x, gamma, beta], dout)
            unsummed = (
                "beta is added to every row (broadcast), so its gradient adds up the rows: "
                "dbeta = dout.sum(dim=0), with the shape of beta. The shape rule catches this one."
            )
            mistakes = {
                "dx": [Mistake(dout * x, "Multiply swaps: dx = dout * gamma, not dout * x.")],
                "dgamma": [
                    Mistake(
                        dout * x,
                        "gamma is broadcast over the batch too: dgamma = (dout * x).sum(dim=0).",
                        shape_only=True,
                    ),
                    Mistake(
                        (dout * gamma).sum(dim=0),
                        "Multiply swaps: dgamma uses the *other* factor, x: (dout * x).sum(0).",
                    ),
                ],
                "dbeta": [
                    Mistake(dout, unsummed, shape_only=True),
                    Mistake(dout.mean(dim=0), "Sum over the batch, do not average."),
                ],
            }
            got = ctx.call(
                scale_shift_backward,
                dout,
                (x, gamma),
                names=("dout", "cache"),
                labels={"cache[0]": "x", "cache[1]": "gamma"},
            )
            ctx.compare(
                got,
                expected,
                ("dx", "dgamma", "dbeta"),
                mistakes=mistakes,
                batch=n,
                shape_of={"dx": "x", "dgamma": "gamma", "dbeta": "beta"},
            )

    # 3. out = torch.maximum(x, y); the broken version zeroes entries of dout in place.
    for shape in [(5, 3), (2, 4), (7,)]:
        x, y, dout = ctx.randn(*shape), ctx.randn(*shape), ctx.randn(*shape)
        # Ties (x == y) have no single derivative; continuous random inputs have none.
        with ctx.case("max_backward, " + describe_shapes(x=x, y=y, dout=dout)):
            expected = autograd_grads(torch.maximum, [x, y], dout)
            zeros = torch.zeros_like(dout)
            mistakes = {
                "dx": [
                    Mistake(zeros, _DOUT_IN_PLACE),
                    Mistake(dout, "Max routes: x gets dout only where x won (x > y), 0 elsewhere."),
                    Mistake(expected[1], "The routing is swapped: dx = dout where x > y."),
                ],
                "dy": [
                    Mistake(zeros, _DOUT_IN_PLACE),
                    Mistake(dout, "Max routes: y gets dout only where y won (y > x), 0 elsewhere."),
                    Mistake(expected[0], "The routing is swapped: dy = dout where y > x."),
                ],
            }
            before = dout.clone()
            got = ctx.call(
                max_backward,
                dout,
                (x, y),
                names=("dout", "cache"),
                opaque=("dout",),  # checked just below, with a hint about aliasing
                labels={"cache[0]": "x", "cache[1]": "y"},
            )
            if not torch.equal(dout, before):
                ctx.fail(
                    f"`{ctx.function_name}` modified its input dout in place.",
                    _DOUT_IN_PLACE,
                )
            ctx.compare(
                got, expected, ("dx", "dy"), mistakes=mistakes, shape_of={"dx": "x", "dy": "y"}
            )
