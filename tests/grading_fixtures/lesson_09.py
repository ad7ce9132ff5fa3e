"""Lesson 09's graded items: correct solutions written as a student would, and classic mistakes."""

from __future__ import annotations

import torch

from coursekit import functional as F


# ---------------------------------------------------------------------------- correct
def conv2d_backward_loops(dout, cache):
    """Loops over examples and output pixels, as a student might write it."""
    x, w, stride, padding = cache
    n, f, ho, wo = dout.shape
    kh, kw = w.shape[2:]
    x_pad = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    dx_pad = torch.zeros_like(x_pad)
    dw = torch.zeros_like(w)
    for i in range(n):
        for a in range(ho):
            for c in range(wo):
                rows = slice(a * stride, a * stride + kh)
                cols = slice(c * stride, c * stride + kw)
                g = dout[i, :, a, c].view(f, 1, 1, 1)
                dw += g * x_pad[i, :, rows, cols]
                dx_pad[i, :, rows, cols] += (g * w).sum(0)
    h, wd = x.shape[2:]
    dx = dx_pad[:, :, padding : padding + h, padding : padding + wd]
    return dx, dw, dout.sum((0, 2, 3))


def conv2d_backward_unfold(dout, cache):
    x, w, stride, padding = cache
    n, f = dout.shape[:2]
    kh, kw = w.shape[2:]
    cols = torch.nn.functional.unfold(x, (kh, kw), padding=padding, stride=stride)
    d = dout.reshape(n, f, -1)
    dw = (d @ cols.transpose(1, 2)).sum(0).view(w.shape)
    dcols = w.reshape(f, -1).T @ d
    dx = torch.nn.functional.fold(dcols, x.shape[2:], (kh, kw), padding=padding, stride=stride)
    return dx, dw, d.sum((0, 2))


def conv2d_backward_with_coursekit(dout, cache):
    x, w, stride, padding = cache
    b = torch.zeros(w.shape[0], dtype=w.dtype)
    _, ck_cache = F.conv2d_forward(x, w, b, stride, padding)
    return F.conv2d_backward(dout, ck_cache)


def maxpool_backward_loops(dout, cache):
    x, k, stride = cache
    n, c, ho, wo = dout.shape
    dx = torch.zeros_like(x)
    for i in range(ho):
        for j in range(wo):
            window = x[:, :, i * stride : i * stride + k, j * stride : j * stride + k]
            # ties: the first maximum in row-major order gets the gradient, as in torch
            first = window.reshape(n, c, k * k).argmax(-1)
            mask = torch.nn.functional.one_hot(first, k * k).reshape(n, c, k, k)
            dx[:, :, i * stride : i * stride + k, j * stride : j * stride + k] += (
                mask * dout[:, :, i : i + 1, j : j + 1]
            )
    return dx


def maxpool_backward_with_coursekit(dout, cache):
    x, k, stride = cache
    _, ck_cache = F.maxpool2d_forward(x, k, stride)
    return F.maxpool2d_backward(dout, ck_cache)


SOLUTIONS = {
    "09.conv2d_backward": [
        conv2d_backward_loops,
        conv2d_backward_unfold,
        conv2d_backward_with_coursekit,
    ],
    "09.maxpool_backward": [maxpool_backward_loops, maxpool_backward_with_coursekit],
}
SEEDS = 8  # every solution passes on seeds 0..7


# ---------------------------------------------------------------------------- mistakes
def conv_db_not_summed(dout, cache):
    dx, dw, _ = conv2d_backward_unfold(dout, cache)
    return dx, dw, dout


def conv_db_batch_only(dout, cache):
    dx, dw, _ = conv2d_backward_unfold(dout, cache)
    return dx, dw, dout.sum((2, 3))


def conv_dw_per_example(dout, cache):
    x, w, stride, padding = cache
    n, f = dout.shape[:2]
    kh, kw = w.shape[2:]
    cols = torch.nn.functional.unfold(x, (kh, kw), padding=padding, stride=stride)
    dw = (dout.reshape(n, f, -1) @ cols.transpose(1, 2)).view(n, *w.shape)
    dx, _, db = conv2d_backward_unfold(dout, cache)
    return dx, dw, db


def conv_dw_first_example(dout, cache):
    x, w, stride, padding = cache
    dx, _, db = conv2d_backward_unfold(dout, cache)
    _, dw, _ = conv2d_backward_unfold(dout[:1], (x[:1], w, stride, padding))
    return dx, dw, db


def conv_dx_flipped_kernel(dout, cache):
    x, w, stride, padding = cache
    _, dw, db = conv2d_backward_unfold(dout, cache)
    dx, _, _ = conv2d_backward_loops(dout, (x, w.flip(2, 3), stride, padding))
    return dx, dw, db


def conv_autograd(dout, cache):
    x, w, stride, padding = cache
    xs, ws = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    with torch.enable_grad():
        out = torch.nn.functional.conv2d(xs, ws, None, stride, padding)
        out.backward(dout)
    return xs.grad, ws.grad, dout.sum((0, 2, 3))


def pool_assign_last(dout, cache):
    x, k, stride = cache
    n, c, ho, wo = dout.shape
    dx = torch.zeros_like(x)
    for i in range(ho):
        for j in range(wo):
            rows, cols = slice(i * stride, i * stride + k), slice(j * stride, j * stride + k)
            window = x[:, :, rows, cols]
            mask = window == window.amax((2, 3), keepdim=True)
            patch = dx[:, :, rows, cols]
            patch[mask] = dout[:, :, i : i + 1, j : j + 1].expand_as(window)[mask]
    return dx


def pool_average(dout, cache):
    x, k, stride = cache
    xs = x.clone()
    n, c, ho, wo = dout.shape
    dx = torch.zeros_like(xs)
    for i in range(ho):
        for j in range(wo):
            rows, cols = slice(i * stride, i * stride + k), slice(j * stride, j * stride + k)
            dx[:, :, rows, cols] += dout[:, :, i : i + 1, j : j + 1] / (k * k)
    return dx


def pool_in_place(dout, cache):
    x, k, stride = cache
    dx = maxpool_backward_loops(dout, cache)
    x.zero_()
    return dx


MISTAKES = [
    ("09.conv2d_backward", conv_db_not_summed, "db = dout.sum((0, 2, 3))"),
    ("09.conv2d_backward", conv_db_batch_only, "not over the batch"),
    ("09.conv2d_backward", conv_dw_per_example, "sum over the batch"),
    ("09.conv2d_backward", conv_dw_first_example, "first example"),
    ("09.conv2d_backward", conv_dx_flipped_kernel, "flipped"),
    ("09.conv2d_backward", conv_autograd, "uses torch.autograd"),
    ("09.maxpool_backward", pool_assign_last, "never dx[...] = dout[...]"),
    ("09.maxpool_backward", pool_average, "average pooling"),
    ("09.maxpool_backward", pool_in_place, "modified its input"),
]
