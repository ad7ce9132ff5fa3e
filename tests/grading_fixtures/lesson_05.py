"""Lesson 05's graded items: correct solutions written as a student would, and classic mistakes."""

from __future__ import annotations

import torch


# ---------------------------------------------------------------------------- correct
def _log_softmax(z):
    shifted = z - z.max(dim=1, keepdim=True).values
    return shifted - shifted.exp().sum(dim=1, keepdim=True).log()


def softmax_cross_entropy_forward(logits, y):
    log_p = _log_softmax(logits)
    loss = -log_p[torch.arange(len(y)), y].mean()
    return loss, (log_p, y)


def softmax_cross_entropy_backward(dout, cache):
    log_p, y = cache
    d = log_p.exp()
    d[torch.arange(len(y)), y] -= 1
    return d * dout / len(y)


def dlogits(logits, y):
    p = _log_softmax(logits).exp()
    onehot = torch.zeros_like(p)
    onehot[torch.arange(len(y)), y] = 1
    return (p - onehot) / len(y)


def mlp_backward(params, x, y):
    z1 = x @ params["w1"] + params["b1"]
    h = z1.clamp(min=0)
    logits = h @ params["w2"] + params["b2"]
    loss, cache = softmax_cross_entropy_forward(logits, y)
    dz2 = softmax_cross_entropy_backward(1.0, cache)
    dh = dz2 @ params["w2"].T
    dz1 = dh * (z1 > 0)
    grads = {"w1": x.T @ dz1, "b1": dz1.sum(0), "w2": h.T @ dz2, "b2": dz2.sum(0)}
    return loss, grads


SOLUTIONS = {
    "05.softmax_cross_entropy": [(softmax_cross_entropy_forward, softmax_cross_entropy_backward)],
    "05.dlogits": [dlogits],
    "05.mlp_backward": [mlp_backward],
}

SEEDS = 25  # every solution passes on seeds 0..24


# ---------------------------------------------------------------------------- mistakes
def ce_backward_without_n(dout, cache):
    return softmax_cross_entropy_backward(dout, cache) * len(cache[1])


def ce_forward_naive(logits, y):
    p = torch.exp(logits) / torch.exp(logits).sum(dim=1, keepdim=True)
    return -torch.log(p[torch.arange(len(y)), y]).mean(), (torch.log(p), y)


def ce_backward_no_onehot(dout, cache):
    log_p, y = cache
    return log_p.exp() * dout / len(y)


def ce_forward_sum(logits, y):
    loss, cache = softmax_cross_entropy_forward(logits, y)
    return loss * len(y), cache


def ce_backward_ignores_dout(dout, cache):
    return softmax_cross_entropy_backward(1.0, cache)


def dlogits_without_n(logits, y):
    return dlogits(logits, y) * len(y)


def dlogits_sign(logits, y):
    return -dlogits(logits, y)


def dlogits_softmax_over_batch(logits, y):
    p = torch.softmax(logits, dim=0)
    onehot = torch.nn.functional.one_hot(y, logits.shape[1]).to(p.dtype)
    return (p - onehot) / len(y)


def _mlp(params, x, y, *, mask=True, mean=True, sum_bias=True, transpose=True):
    z1 = x @ params["w1"] + params["b1"]
    h = z1.clamp(min=0)
    loss, cache = softmax_cross_entropy_forward(h @ params["w2"] + params["b2"], y)
    dz2 = softmax_cross_entropy_backward(1.0, cache) * (1 if mean else len(y))
    dh = dz2 @ (params["w2"].T if transpose else params["w2"])
    dz1 = dh * (z1 > 0) if mask else dh
    reduce = (lambda t: t.sum(0)) if sum_bias else (lambda t: t)
    grads = {"w1": x.T @ dz1, "b1": reduce(dz1), "w2": h.T @ dz2, "b2": reduce(dz2)}
    return loss, grads


def mlp_no_relu_derivative(params, x, y):
    return _mlp(params, x, y, mask=False)


def mlp_sum_not_mean(params, x, y):
    return _mlp(params, x, y, mean=False)


def mlp_bias_not_summed(params, x, y):
    return _mlp(params, x, y, sum_bias=False)


def mlp_no_transpose(params, x, y):
    return _mlp(params, x, y, transpose=False)


MISTAKES = [
    ("05.softmax_cross_entropy", (softmax_cross_entropy_forward, ce_backward_without_n), "1/N"),
    ("05.softmax_cross_entropy", (ce_forward_naive, softmax_cross_entropy_backward), "log-sum-exp"),
    ("05.softmax_cross_entropy", (softmax_cross_entropy_forward, ce_backward_no_onehot), "one-hot"),
    (
        "05.softmax_cross_entropy",
        (ce_forward_sum, softmax_cross_entropy_backward),
        "mean over the batch, not the sum",
    ),
    (
        "05.softmax_cross_entropy",
        (softmax_cross_entropy_forward, ce_backward_ignores_dout),
        "Multiply by dout",
    ),
    ("05.dlogits", dlogits_without_n, "1/N"),
    ("05.dlogits", dlogits_sign, "sign is flipped"),
    ("05.dlogits", dlogits_softmax_over_batch, "not over the batch (dim=0)"),
    ("05.mlp_backward", mlp_no_relu_derivative, "ReLU derivative is missing"),
    ("05.mlp_backward", mlp_sum_not_mean, "N = 6 times too large"),
    ("05.mlp_backward", mlp_bias_not_summed, "summed over the batch"),
    ("05.mlp_backward", mlp_no_transpose, "missing transpose"),
]
