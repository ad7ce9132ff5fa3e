"""Graded items of lesson 09 (convolutional nets): conv2d backward and max-pool backward.

The references are torch.autograd through ``torch.nn.functional.conv2d`` and
``torch.nn.functional.max_pool2d``. The classic mistakes are recomputed with
torch's own ops: a transposed convolution with the flipped kernel (dx computed
as a correlation), per-example weight gradients, overlapping pooling windows
that assign instead of add, and a gradient spread over the window as in
average pooling.
"""

from __future__ import annotations

import torch

from coursekit.grading.context import GradingContext
from coursekit.grading.hints import Mistake
from coursekit.grading.reference import describe_shapes
from coursekit.grading.registry import item

_tF = torch.nn.functional


# ---------------------------------------------------------------------------- 09.conv2d_backward
def _conv_grads(dout, x, w, b, stride: int, padding: int):
    """(dx, dw, db) of out = conv2d(x, w, b, stride, padding), from torch.autograd."""
    xs, ws, bs = (t.clone().requires_grad_(True) for t in (x, w, b))
    with torch.enable_grad():
        out = _tF.conv2d(xs, ws, bs, stride=stride, padding=padding)
        grads = torch.autograd.grad(out, (xs, ws, bs), dout)
    return tuple(g.detach() for g in grads)


def _transposed_conv(dout, w, x_shape, stride: int, padding: int):
    """conv_transpose2d(dout, w) cropped or padded to the input's (H, W): the adjoint of conv2d."""
    h, wd = x_shape[2:]
    ho, wo = dout.shape[2:]
    kh, kw = w.shape[2:]
    extra = (
        h - ((ho - 1) * stride - 2 * padding + kh),
        wd - ((wo - 1) * stride - 2 * padding + kw),
    )
    return _tF.conv_transpose2d(dout, w, stride=stride, padding=padding, output_padding=extra)


def _per_example_dw(dout, x, w, stride: int, padding: int):
    """dw of each example on its own, (N, F, C, KH, KW): the sum over the batch left out."""
    b = torch.zeros(w.shape[0], dtype=w.dtype)
    one = [_conv_grads(dout[i : i + 1], x[i : i + 1], w, b, stride, padding) for i in range(len(x))]
    return torch.stack([grads[1] for grads in one])


@item(
    "09.conv2d_backward",
    points=3,
    description="dx, dw, db of a 2-D convolution (as torch.nn.functional.conv2d)",
    signature="fn(dout, cache) -> (dx, dw, db), cache = (x, w, stride, padding)",
    covers="stride 1 and 2, padding 0 and 1, non-square kernels and images, 1x1 kernels, "
    "batch 1, odd sizes",
    timeout=60.0,
)
def conv2d_backward(ctx: GradingContext, fn) -> None:
    # (N, C, H, W, F, KH, KW, stride, padding)
    cases = [
        (2, 3, 5, 5, 4, 3, 3, 1, 0),
        (2, 2, 7, 6, 3, 3, 3, 2, 1),
        (1, 1, 5, 4, 2, 2, 3, 1, 1),
        (3, 2, 7, 7, 2, 3, 2, 2, 0),
        (2, 3, 4, 5, 2, 1, 1, 1, 0),
        (2, 2, 6, 6, 3, 3, 3, 2, 1),
    ]
    for n, c, h, wd, f, kh, kw, stride, padding in cases:
        x, w = ctx.randn(n, c, h, wd), ctx.randn(f, c, kh, kw)
        b = ctx.randn(f)
        ho = (h + 2 * padding - kh) // stride + 1
        wo = (wd + 2 * padding - kw) // stride + 1
        dout = ctx.randn(n, f, ho, wo)
        with ctx.case(f"{describe_shapes(x=x, w=w)}, stride = {stride}, padding = {padding}"):
            expected = _conv_grads(dout, x, w, b, stride, padding)
            flipped = _transposed_conv(dout, w.flip(2, 3), x.shape, stride, padding)
            per_example = _per_example_dw(dout, x, w, stride, padding)
            mistakes = {
                "dx": [
                    Mistake(
                        flipped,
                        "dx used the kernel flipped (dx computed as a correlation of dout with w, "
                        "or with w.flip). dx is the transposed operation: every output pixel adds "
                        "dout * w back onto the window it was computed from, "
                        "dx[n, :, i*s + p, j*s + q] += dout[n, f, i, j] * w[f, :, p, q] "
                        "(then drop the padding); as a convolution that is a 'full' convolution "
                        "of dout with the flipped kernel.",
                    ),
                ],
                "dw": [
                    Mistake(
                        per_example,
                        "dw has one value per weight, (F, C, KH, KW): the kernel is shared by "
                        "every example, so add the per-example gradients up (sum over the batch).",
                        shape_only=True,
                    ),
                    Mistake(
                        per_example[0],
                        "dw only holds the first example's contribution: the kernel is shared by "
                        "the whole batch, so sum the contributions of all N examples.",
                    ),
                    Mistake(
                        per_example.mean(0),
                        "dw is averaged over the batch: the loss's own mean is already in dout, "
                        "so sum the per-example contributions, do not average them.",
                    ),
                ],
                "db": [
                    Mistake(
                        dout,
                        "db has one value per filter, (F,): every output pixel of filter f adds "
                        "b[f], so db = dout.sum((0, 2, 3)), over the batch and the positions.",
                        shape_only=True,
                    ),
                    Mistake(
                        dout.sum((2, 3)),
                        "db is summed over the positions but not over the batch: "
                        "db = dout.sum((0, 2, 3)).",
                        shape_only=True,
                    ),
                    Mistake(
                        dout.sum(0),
                        "db is summed over the batch but not over the positions: every output "
                        "pixel adds b[f], so db = dout.sum((0, 2, 3)).",
                        shape_only=True,
                    ),
                    Mistake(
                        dout.sum((0, 2, 3)) / (n * ho * wo),
                        "db is averaged; it is a sum: db = dout.sum((0, 2, 3)).",
                    ),
                ],
            }
            got = ctx.call(
                fn,
                dout,
                (x, w, stride, padding),
                names=("dout", "cache"),
                labels={"cache[0]": "cache[0] (x)", "cache[1]": "cache[1] (w)"},
            )
            ctx.compare(
                got,
                expected,
                ("dx", "dw", "db"),
                mistakes=mistakes,
                batch=n,
                shape_of={"dx": "x", "dw": "w", "db": "b"},
            )


# ---------------------------------------------------------------------------- 09.maxpool_backward
def _maxpool_grad(dout, x, kernel_size: int, stride: int):
    """dx of out = max_pool2d(x, kernel_size, stride), from torch.autograd."""
    xs = x.clone().requires_grad_(True)
    with torch.enable_grad():
        out = _tF.max_pool2d(xs, kernel_size, stride)
        (dx,) = torch.autograd.grad(out, (xs,), dout)
    return dx.detach()


def _assigned(dout, x, kernel_size: int, stride: int, last_wins: bool):
    """dx when each window *assigns* its gradient to its maximum (overlaps overwrite)."""
    _, argmax = _tF.max_pool2d(x, kernel_size, stride, return_indices=True)
    n, c, h, w = x.shape
    dx = torch.zeros(n, c, h * w, dtype=dout.dtype)
    idx, vals = argmax.reshape(n, c, -1), dout.reshape(n, c, -1)
    order = range(idx.shape[2]) if last_wins else reversed(range(idx.shape[2]))
    for k in order:  # raster order: a later window overwrites an earlier one
        dx.scatter_(2, idx[:, :, k : k + 1], vals[:, :, k : k + 1])
    return dx.view(n, c, h, w)


def _to_every_maximum(dout, x, kernel_size: int, stride: int):
    """dx when dout goes to every entry equal to its window's maximum (a tie mistake)."""
    dx = torch.zeros_like(x)
    ho, wo = dout.shape[2:]
    for i in range(ho):
        for j in range(wo):
            rows = slice(i * stride, i * stride + kernel_size)
            cols = slice(j * stride, j * stride + kernel_size)
            window = x[:, :, rows, cols]
            mask = window == window.amax((2, 3), keepdim=True)
            dx[:, :, rows, cols] += mask * dout[:, :, i : i + 1, j : j + 1]
    return dx


def _spread(dout, x, kernel_size: int, stride: int, scale: float):
    """dx when dout * scale goes to every pixel of its window (average-pool style)."""
    ones = torch.ones(x.shape[1], 1, kernel_size, kernel_size, dtype=dout.dtype) * scale
    return _transposed_conv_groups(dout, ones, x.shape, stride)


def _transposed_conv_groups(dout, w, x_shape, stride: int):
    h, wd = x_shape[2:]
    ho, wo = dout.shape[2:]
    k = w.shape[2]
    extra = (h - ((ho - 1) * stride + k), wd - ((wo - 1) * stride + k))
    return _tF.conv_transpose2d(dout, w, stride=stride, output_padding=extra, groups=x_shape[1])[
        ..., :h, :wd
    ]


@item(
    "09.maxpool_backward",
    points=2,
    description="dx of 2-D max pooling: the gradient routed to each window's maximum",
    signature="fn(dout, cache) -> dx, cache = (x, kernel_size, stride)",
    covers="non-overlapping and overlapping windows (kernel 3, stride 2; kernel 2, stride 1), "
    "sizes that do not divide evenly, batch 1, non-square images, ties (the first maximum gets "
    "the gradient, as in torch)",
    timeout=30.0,
)
def maxpool_backward(ctx: GradingContext, fn) -> None:
    # (N, C, H, W, kernel_size, stride)
    cases = [
        (2, 3, 4, 6, 2, 2),
        (2, 2, 7, 7, 3, 2),
        (1, 2, 5, 6, 2, 1),
        (3, 1, 8, 7, 3, 3),
        (2, 3, 9, 7, 3, 2),
    ]
    # ties: small integers, so windows hold several equal maxima; the gradient goes to the
    # first of them in row-major order within the window, as torch routes it
    cases += [(2, 2, 6, 6, 2, 2, "ties"), (1, 2, 7, 6, 3, 2, "ties")]
    for n, c, h, wd, k, stride, *ties in cases:
        x = ctx.randint(3, n, c, h, wd).to(torch.float64) if ties else ctx.randn(n, c, h, wd)
        overlapping = stride < k and not ties
        if overlapping:
            # a pixel shared by four windows holds the largest value: its gradient must add up
            x[:, :, stride, stride] = x.abs().amax() + 1.0
        ho, wo = (h - k) // stride + 1, (wd - k) // stride + 1
        dout = ctx.randn(n, c, ho, wo)
        label = ", ties (entries 0, 1, 2)" if ties else ""
        with ctx.case(f"{describe_shapes(x=x)}, kernel_size = {k}, stride = {stride}{label}"):
            expected = _maxpool_grad(dout, x, k, stride)
            assign = (
                "Overlapping windows share pixels, and a pixel that is the maximum of several "
                "windows gets the gradient of each: add, dx[...] += dout[...], never "
                "dx[...] = dout[...] (which keeps only one window's share)."
            )
            spread = (
                "is average pooling's backward. Max pooling's output is a copy of one input, "
                "the window's maximum: route dout there only, the other pixels get 0."
            )
            mistakes = [
                Mistake(
                    _spread(dout, x, k, stride, 1.0 / (k * k)),
                    "dout / (KH * KW) spread over the whole window " + spread,
                ),
                Mistake(_spread(dout, x, k, stride, 1.0), "dout copied to every pixel " + spread),
            ]
            if ties:
                mistakes.append(
                    Mistake(
                        _to_every_maximum(dout, x, k, stride),
                        "Where a window holds its maximum more than once, the gradient went to "
                        "every copy. Max pooling passes it to one input only: the first maximum "
                        "in row-major order within the window (as torch does), e.g. the argmax "
                        "of the flattened window.",
                    )
                )
            if overlapping:
                mistakes += [
                    Mistake(_assigned(dout, x, k, stride, last_wins=True), assign),
                    Mistake(_assigned(dout, x, k, stride, last_wins=False), assign),
                ]
            got = ctx.call(
                fn,
                dout,
                (x, k, stride),
                names=("dout", "cache"),
                labels={"cache[0]": "cache[0] (x)"},
            )
            ctx.compare(got, expected, ("dx",), mistakes={"dx": mistakes}, shape_of={"dx": "x"})
