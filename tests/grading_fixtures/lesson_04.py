"""Lesson 04's graded items: correct solutions written as a student would, and classic mistakes."""

from __future__ import annotations

import torch


# ---------------------------------------------------------------------------- correct
def linear_backward(dout, cache):
    x, w, b = cache
    return dout @ w.T, x.T @ dout, dout.sum(dim=0)


def broadcast_backward(dout, shape):
    shape = tuple(shape)
    lead = dout.dim() - len(shape)
    dx = dout.sum(dim=tuple(range(lead))) if lead else dout
    dims = tuple(i for i, size in enumerate(shape) if size == 1 and dx.shape[i] != 1)
    return dx.sum(dim=dims, keepdim=True) if dims else dx


def grad_shapes(x_shape, w_shape):
    return tuple(x_shape), tuple(w_shape), (w_shape[1],)


def matmul_backward(dout, cache):
    x, w = cache
    return dout @ w.T, x.T @ dout


def scale_shift_backward(dout, cache):
    x, gamma = cache
    return dout * gamma, (dout * x).sum(dim=0), dout.sum(dim=0)


def max_backward(dout, cache):
    x, y = cache
    x_won = x > y
    return torch.where(x_won, dout, 0.0), torch.where(x_won, 0.0, dout)


SOLUTIONS = {
    "04.linear_backward": [linear_backward],
    "04.broadcast_backward": [broadcast_backward],
    "04.grad_shapes": [grad_shapes],
    "04.find_the_bug": [(matmul_backward, scale_shift_backward, max_backward)],
}

SEEDS = 25  # every solution passes on seeds 0..24


# ---------------------------------------------------------------------------- mistakes
def linear_db_not_summed(dout, cache):
    x, w, b = cache
    return dout @ w.T, x.T @ dout, dout


def linear_dx_no_transpose(dout, cache):
    x, w, b = cache
    return dout @ w, x.T @ dout, dout.sum(0)


def linear_dw_transposed(dout, cache):
    x, w, b = cache
    return dout @ w.T, dout.T @ x, dout.sum(0)


def linear_dw_mean(dout, cache):
    x, w, b = cache
    return dout @ w.T, x.T @ dout / x.shape[0], dout.sum(0)


def linear_db_mean(dout, cache):
    x, w, b = cache
    return dout @ w.T, x.T @ dout, dout.mean(0)


def linear_dx_sign(dout, cache):
    x, w, b = cache
    return -(dout @ w.T), x.T @ dout, dout.sum(0)


def broadcast_unchanged(dout, shape):
    return dout


def broadcast_squeezed(dout, shape):
    dx = broadcast_backward(dout, shape)
    return dx.squeeze() if dx.dim() else dx


def broadcast_mean(dout, shape):
    dx = broadcast_backward(dout, shape)
    return dx * (dx.numel() / dout.numel())


def shapes_dw_transposed(x_shape, w_shape):
    return tuple(x_shape), (w_shape[1], w_shape[0]), (w_shape[1],)


def shapes_db_like_out(x_shape, w_shape):
    return tuple(x_shape), tuple(w_shape), (x_shape[0], w_shape[1])


def shapes_db_int(x_shape, w_shape):
    return tuple(x_shape), tuple(w_shape), w_shape[1]


# The three broken backward passes of lesson 04's debugging lab, each left unrepaired.
def matmul_backward_as_given(dout, cache):
    x, w = cache
    return dout @ w, x.T @ dout  # the transpose of w is missing: runs only when w is square


def scale_shift_backward_as_given(dout, cache):
    x, gamma = cache
    return dout * gamma, (dout * x).sum(dim=0), dout  # dbeta not summed over the batch


def max_backward_as_given(dout, cache):
    x, y = cache
    dx = dout  # not a copy
    dx[x < y] = 0  # in place: zeroes entries of dout itself
    dy = dout
    dy[x >= y] = 0
    return dx, dy


def max_backward_half_repaired(dout, cache):
    x, y = cache
    dx = dout.clone()
    dx[x < y] = 0
    dy = dout  # still the caller's tensor
    dy[x >= y] = 0
    return dx, dy


def max_backward_to_both(dout, cache):
    return dout.clone(), dout.clone()


MISTAKES = [
    ("04.linear_backward", linear_db_not_summed, "summed over the batch"),
    ("04.linear_backward", linear_dx_no_transpose, "missing transpose"),
    ("04.linear_backward", linear_dw_transposed, "dw looks transposed"),
    ("04.linear_backward", linear_dw_mean, "N = 4 times too small"),
    ("04.linear_backward", linear_db_mean, "do not average"),
    ("04.linear_backward", linear_dx_sign, "wrong sign"),
    (
        "04.find_the_bug",
        (matmul_backward_as_given, scale_shift_backward, max_backward),
        "dx = dout @ w.T, not dout @ w",
    ),
    (
        "04.find_the_bug",
        (matmul_backward, scale_shift_backward_as_given, max_backward),
        "dbeta = dout.sum(dim=0)",
    ),
    (
        "04.find_the_bug",
        (matmul_backward, scale_shift_backward, max_backward_as_given),
        "modified its input dout in place",
    ),
    (
        "04.find_the_bug",
        (matmul_backward, scale_shift_backward, max_backward_half_repaired),
        "`dx = dout` does not copy",
    ),
    (
        "04.find_the_bug",
        (matmul_backward, scale_shift_backward, max_backward_to_both),
        "Max routes",
    ),
    ("04.broadcast_backward", broadcast_unchanged, "returned dout unchanged"),
    ("04.broadcast_backward", broadcast_squeezed, "keep the size-1 dims"),
    ("04.broadcast_backward", broadcast_mean, "do not average"),
    ("04.grad_shapes", shapes_dw_transposed, "transposed"),
    ("04.grad_shapes", shapes_db_like_out, "summed over the batch"),
    ("04.grad_shapes", shapes_db_int, "needs a comma"),
]
