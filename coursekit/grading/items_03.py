"""Graded items of lesson 03 (a single neuron): activation pairs and one gradient-descent step.

An activation is checked as a pair: ``out, cache = forward(x)`` is compared with
torch, then ``dx = backward(dout, cache)`` with torch.autograd. The cache is the
student's own business; only the input x must come through unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from coursekit.grading.context import GradingContext
from coursekit.grading.hints import Mistake
from coursekit.grading.reference import autograd_grads, describe_shapes
from coursekit.grading.registry import item

_EXTREMES = [-1000.0, -30.0, -5.0, -1.0, -0.25, 0.25, 1.0, 5.0, 30.0, 1000.0]
_FORGOT_DOUT = (
    "Multiply the local derivative by dout, the gradient arriving from above (the chain rule)."
)
_UNCHANGED = "You returned dout unchanged: multiply it by the derivative of the activation at x."


def _inputs(ctx: GradingContext, extremes: bool) -> list[tuple[str, torch.Tensor]]:
    cases = [
        ("x of shape (4, 5)", ctx.randn(4, 5, scale=2.0)),
        ("x of shape (7,)", ctx.randn(7, scale=2.0)),
        ("x of shape (1, 1)", ctx.randn(1, 1)),
        ("x of shape (2, 3, 4)", ctx.randn(2, 3, 4, scale=2.0)),
    ]
    if extremes:
        x = torch.tensor(_EXTREMES, dtype=torch.float64)
        cases.append(("x = " + str([int(v) if v.is_integer() else v for v in _EXTREMES]), x))
    return cases


def _check_pair(
    ctx: GradingContext,
    forward: Callable,
    backward: Callable,
    x: torch.Tensor,
    reference: Callable[[torch.Tensor], torch.Tensor],
    forward_mistakes: list[Mistake],
    backward_mistakes: Callable[[torch.Tensor], list[Mistake]],
    nonfinite_hint: str | None,
    **options: float,
) -> None:
    """Forward compared with ``reference(x)``, backward with autograd through it."""
    x_before = x.clone()
    result = ctx.call(forward, x, names=("x",), **options)
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        got = "None" if result is None else f"a {type(result).__name__}"
        ctx.fail(
            f"`{ctx.function_name}` should return the pair (out, cache), got {got}.",
            "End the forward pass with `return out, cache`, where cache holds what the "
            "backward pass needs (x, or the output).",
        )
    out, cache = result
    ctx.compare(
        out,
        reference(x),
        ("out",),
        shape_of={"out": "x"},
        mistakes={"out": forward_mistakes},
        nonfinite_hint=nonfinite_hint,
        what="the forward pass",
    )
    dout = ctx.randn(*x.shape)
    (expected,) = autograd_grads(reference, [x], dout)
    got = ctx.call(backward, dout, cache, names=("dout", "cache"), opaque=("cache",))
    if not torch.equal(x, x_before):
        ctx.fail(
            "The input x changed during the backward pass (the cache holds x itself, and "
            "the backward pass modified it in place).",
            "Build new tensors in the backward pass instead of modifying the cached ones.",
        )
    ctx.compare(
        got,
        expected,
        ("dx",),
        shape_of={"dx": "x"},
        mistakes={"dx": backward_mistakes(dout)},
        nonfinite_hint=nonfinite_hint,
    )


@item(
    "03.sigmoid",
    points=2,
    description="sigmoid forward and backward, stable for large |x|",
    signature="forward(x) -> (out, cache), backward(dout, cache) -> dx",
    covers="several shapes, x = +-1000 without nan or inf",
)
def sigmoid(ctx: GradingContext, forward, backward) -> None:
    unstable = (
        "exp overflows for large |x| (exp(1000) = inf, and inf/inf = nan). Use a form that "
        "only ever takes exp of a negative number: 1 / (1 + exp(-x)) for x >= 0 and "
        "exp(x) / (1 + exp(x)) for x < 0 (torch.where), or torch.sigmoid."
    )
    for description, x in _inputs(ctx, extremes=True):
        with ctx.case(description):
            s = torch.sigmoid(x)

            def mistakes(dout: torch.Tensor, s: torch.Tensor = s, x: torch.Tensor = x):
                return [
                    Mistake(
                        dout * x * (1 - x),
                        "The derivative is s * (1 - s) with "
                        "s = sigmoid(x), the forward output, not x itself.",
                    ),
                    Mistake(
                        dout * s, "The derivative is s * (1 - s): the factor (1 - s) is missing."
                    ),
                    Mistake(s * (1 - s), _FORGOT_DOUT),
                    Mistake(dout, _UNCHANGED),
                ]

            forward_mistakes = [Mistake(1 - s, "That is sigmoid(-x): check the sign in exp(-x).")]
            _check_pair(
                ctx, forward, backward, x, torch.sigmoid, forward_mistakes, mistakes, unstable
            )


@item(
    "03.tanh",
    points=2,
    description="tanh forward and backward",
    signature="forward(x) -> (out, cache), backward(dout, cache) -> dx",
    covers="several shapes, x = +-1000 without nan or inf",
)
def tanh(ctx: GradingContext, forward, backward) -> None:
    unstable = (
        "exp overflows for large |x|: (exp(x) - exp(-x)) / (exp(x) + exp(-x)) is inf/inf = nan "
        "at x = 1000. Use torch.tanh, or 2 * sigmoid(2x) - 1 with a stable sigmoid."
    )
    for description, x in _inputs(ctx, extremes=True):
        with ctx.case(description):
            t = torch.tanh(x)

            def mistakes(dout: torch.Tensor, t: torch.Tensor = t, x: torch.Tensor = x):
                return [
                    Mistake(
                        dout * (1 - x**2),
                        "The derivative is 1 - tanh(x)**2, with "
                        "tanh(x) the forward output, not 1 - x**2.",
                    ),
                    Mistake(
                        dout * (1 - t), "The derivative is 1 - tanh(x)**2: the square is missing."
                    ),
                    Mistake(1 - t**2, _FORGOT_DOUT),
                    Mistake(dout, _UNCHANGED),
                ]

            _check_pair(ctx, forward, backward, x, torch.tanh, [], mistakes, unstable)


@item(
    "03.relu",
    points=2,
    description="ReLU forward and backward",
    signature="forward(x) -> (out, cache), backward(dout, cache) -> dx",
    covers="several shapes, large |x|, exact zeros",
)
def relu(ctx: GradingContext, forward, backward) -> None:
    zeros = ctx.randn(3, 6)
    zeros[:, ::2] = 0.0  # ReLU's derivative at exactly 0 is 0 (torch's convention)
    cases = [*_inputs(ctx, extremes=True), ("x of shape (3, 6) with exact zeros", zeros)]
    for description, x in cases:
        with ctx.case(description):
            positive = (x > 0).to(x.dtype)

            def mistakes(
                dout: torch.Tensor, positive: torch.Tensor = positive, x: torch.Tensor = x
            ):
                return [
                    Mistake(dout, _UNCHANGED + " For ReLU that is 1 where x > 0, else 0."),
                    Mistake(positive, _FORGOT_DOUT),
                    Mistake(
                        dout * (1 - positive),
                        "The mask is inverted: the gradient flows "
                        "where x > 0 and is blocked where x <= 0.",
                    ),
                    Mistake(
                        dout * torch.relu(x),
                        "Multiply dout by the derivative of ReLU "
                        "(1 where x > 0, else 0), not by relu(x) itself.",
                    ),
                    Mistake(
                        dout * (x >= 0).to(x.dtype),
                        "At x = 0 the gradient is 0 (torch's convention, and the cache's mask "
                        "must agree with it): use x > 0, not x >= 0.",
                    ),
                ]

            _check_pair(ctx, forward, backward, x, torch.relu, [], mistakes, None)


@item(
    "03.leaky_relu",
    points=2,
    description="leaky ReLU forward and backward, with its negative_slope argument",
    signature="forward(x, negative_slope=0.01) -> (out, cache), backward(dout, cache) -> dx",
    covers="the default slope and slopes 0.2 and 0.5, several shapes",
)
def leaky_relu(ctx: GradingContext, forward, backward) -> None:
    slopes = [None, 0.2, None, 0.5, 0.2]
    for (description, x), slope in zip(_inputs(ctx, extremes=True), slopes, strict=True):
        options = {} if slope is None else {"negative_slope": slope}
        a = 0.01 if slope is None else slope
        label = "default negative_slope" if slope is None else f"negative_slope={slope}"
        with ctx.case(f"{description}, {label}"):
            positive = (x > 0).to(x.dtype)

            def reference(t: torch.Tensor, a: float = a) -> torch.Tensor:
                return torch.nn.functional.leaky_relu(t, a)

            def mistakes(dout: torch.Tensor, positive: torch.Tensor = positive, a: float = a):
                return [
                    Mistake(
                        dout * positive,
                        "On the negative side the slope is "
                        "negative_slope, not 0: dx = dout where x > 0, "
                        "negative_slope * dout elsewhere.",
                    ),
                    Mistake(
                        dout * (positive + 0.01 * (1 - positive)),
                        "The backward pass "
                        "uses the default slope 0.01 instead of the negative_slope given to "
                        "the forward pass: keep it in the cache.",
                    ),
                    Mistake(positive + a * (1 - positive), _FORGOT_DOUT),
                    Mistake(dout, _UNCHANGED),
                ]

            forward_mistakes = [
                Mistake(
                    torch.nn.functional.leaky_relu(x, 0.01),
                    "The forward pass ignores its negative_slope argument (it uses 0.01).",
                ),
                Mistake(
                    torch.relu(x), "Leaky ReLU keeps negative_slope * x for x < 0 instead of 0."
                ),
            ]
            _check_pair(
                ctx, forward, backward, x, reference, forward_mistakes, mistakes, None, **options
            )


@item(
    "03.gd_step",
    points=2,
    description="one gradient-descent step for a linear neuron with the MSE loss",
    signature="fn(w, b, x, y, lr) -> (w_new, b_new)",
    covers="batch sizes 1 to 20, several learning rates; w and b left unchanged",
)
def gd_step(ctx: GradingContext, fn) -> None:
    for n, d, lr in [(8, 3, 0.1), (1, 1, 0.1), (5, 4, 0.5), (20, 2, 1e-3), (3, 6, 0.05)]:
        x, w, b = ctx.randn(n, d), ctx.randn(d), ctx.randn()
        y = ctx.randn(n)
        with ctx.case(f"{describe_shapes(x=x, w=w, b=b, y=y)}, lr = {lr:g}"):
            dw, db = autograd_grads(lambda w, b, x=x, y=y: ((x @ w + b - y) ** 2).mean(), [w, b])
            expected = (w - lr * dw, b - lr * db)

            def step(gw: torch.Tensor, gb: torch.Tensor, w=w, b=b, lr=lr) -> tuple:
                return w - lr * gw, b - lr * gb

            hints = [
                (
                    step(-dw, -db),
                    "You moved uphill: a descent step subtracts the gradient, w_new = w - lr * dw.",
                ),
                (
                    step(dw / 2, db / 2),
                    "The derivative of (pred - y)**2 is 2 * (pred - y): the factor 2 is missing.",
                ),
                (
                    step(n * dw, n * db),
                    "The loss is the mean over the N examples: divide the summed gradient by N.",
                ),
                (step(dw / lr, db / lr), "The step is lr times the gradient: lr is missing."),
                (
                    (dw, db),
                    "You returned the gradient; return the new parameters "
                    "w - lr * dw and b - lr * db.",
                ),
            ]
            mistakes = {
                "w_new": [Mistake(h[0][0], h[1]) for h in hints],
                "b_new": [Mistake(h[0][1], h[1]) for h in hints],
            }
            got = ctx.call(fn, w, b, x, y, lr, names=("w", "b", "x", "y", "lr"))
            ctx.compare(
                got,
                expected,
                ("w_new", "b_new"),
                mistakes=mistakes,
                shape_of={"w_new": "w", "b_new": "b (a 0-dim tensor)"},
            )
