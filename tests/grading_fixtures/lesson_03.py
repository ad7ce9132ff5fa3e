"""Lesson 03's graded items: correct solutions written as a student would, and classic mistakes."""

from __future__ import annotations

import torch


# ---------------------------------------------------------------------------- correct
def sigmoid_forward(x):
    e = torch.exp(-x.abs())
    out = torch.where(x >= 0, 1 / (1 + e), e / (1 + e))
    return out, out


def sigmoid_backward(dout, cache):
    s = cache
    return dout * s * (1 - s)


def tanh_forward(x):
    out = torch.tanh(x)
    return out, out


def tanh_backward_pair(dout, cache):
    return dout * (1 - cache**2)


def relu_forward(x):
    return x.clamp(min=0), x


def relu_backward(dout, cache):
    return dout * (cache > 0)


def leaky_relu_forward(x, negative_slope=0.01):
    return torch.where(x > 0, x, negative_slope * x), (x, negative_slope)


def leaky_relu_backward(dout, cache):
    x, slope = cache
    return torch.where(x > 0, dout, slope * dout)


def gd_step(w, b, x, y, lr):
    err = x @ w + b - y
    n = x.shape[0]
    dw = 2 * x.T @ err / n
    db = 2 * err.sum() / n
    return w - lr * dw, b - lr * db


SOLUTIONS = {
    "03.sigmoid": [(sigmoid_forward, sigmoid_backward)],
    "03.tanh": [(tanh_forward, tanh_backward_pair)],
    "03.relu": [(relu_forward, relu_backward)],
    "03.leaky_relu": [(leaky_relu_forward, leaky_relu_backward)],
    "03.gd_step": [gd_step],
}

SEEDS = 25  # every solution passes on seeds 0..24


# ---------------------------------------------------------------------------- mistakes
def sigmoid_naive_forward(x):
    out = torch.exp(x) / (1 + torch.exp(x))
    return out, out


def sigmoid_backward_at_x(dout, cache):
    x = cache
    return dout * x * (1 - x)


def sigmoid_forward_keep_x(x):
    return torch.sigmoid(x), x


def tanh_backward_at_x(dout, cache):
    x = cache
    return dout * (1 - x**2)


def tanh_forward_keep_x(x):
    return torch.tanh(x), x


def relu_backward_unchanged(dout, cache):
    return dout


def relu_backward_in_place(dout, cache):
    dout[cache <= 0] = 0
    return dout


def leaky_backward_like_relu(dout, cache):
    x, _ = cache
    return dout * (x > 0)


def leaky_forward_fixed_slope(x, negative_slope=0.01):
    return torch.where(x > 0, x, 0.01 * x), (x, negative_slope)


def gd_uphill(w, b, x, y, lr):
    w_new, b_new = gd_step(w, b, x, y, lr)
    return 2 * w - w_new, 2 * b - b_new


def gd_without_two(w, b, x, y, lr):
    err = x @ w + b - y
    n = x.shape[0]
    return w - lr * (x.T @ err / n), b - lr * (err.sum() / n)


def gd_in_place(w, b, x, y, lr):
    w_new, b_new = gd_step(w, b, x, y, lr)
    w -= w - w_new
    return w, b_new


MISTAKES = [
    ("03.sigmoid", (sigmoid_naive_forward, sigmoid_backward), "exp overflows"),
    ("03.sigmoid", (sigmoid_forward_keep_x, sigmoid_backward_at_x), "not x itself"),
    ("03.tanh", (tanh_forward_keep_x, tanh_backward_at_x), "not 1 - x**2"),
    ("03.relu", (relu_forward, relu_backward_unchanged), "returned dout unchanged"),
    ("03.relu", (relu_forward, relu_backward_in_place), "in place"),
    ("03.leaky_relu", (leaky_relu_forward, leaky_backward_like_relu), "not 0"),
    ("03.leaky_relu", (leaky_forward_fixed_slope, leaky_relu_backward), "ignores its"),
    ("03.gd_step", gd_uphill, "moved uphill"),
    ("03.gd_step", gd_without_two, "factor 2 is missing"),
    ("03.gd_step", gd_in_place, "modified its input w in place"),
]
