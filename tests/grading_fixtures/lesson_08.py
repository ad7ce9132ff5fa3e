"""Lesson 08's graded items: correct solutions written as a student would, and classic mistakes."""

from __future__ import annotations

import math

import torch

from coursekit import functional as F


# ---------------------------------------------------------------------------- correct
def batchnorm_backward(dout, cache):
    x, gamma, eps = cache
    n = x.shape[0]
    std = torch.sqrt(x.var(0, unbiased=False) + eps)
    xhat = (x - x.mean(0)) / std
    dx = gamma / (n * std) * (n * dout - dout.sum(0) - xhat * (dout * xhat).sum(0))
    return dx, (dout * xhat).sum(0), dout.sum(0)


def batchnorm_backward_with_coursekit(dout, cache):
    x, gamma, eps = cache
    _, ck_cache = F.batchnorm_forward(x, gamma, torch.zeros_like(gamma), None, None, eps=eps)
    return F.batchnorm_backward(dout, ck_cache)


def clip_grad_norm(grads, max_norm):
    total = torch.sqrt(sum((g**2).sum() for g in grads))
    scale = max_norm / (total + 1e-6) if total > max_norm else 1.0
    return [g * scale for g in grads], total


def he_init(fan_in, fan_out, generator):
    w = torch.randn(fan_in, fan_out, generator=generator, dtype=torch.float64)
    return w * math.sqrt(2 / fan_in)


def he_init_float32(fan_in, fan_out, generator):
    return torch.randn(fan_in, fan_out, generator=generator) * math.sqrt(2 / fan_in)


SOLUTIONS = {
    "08.batchnorm_backward": [batchnorm_backward, batchnorm_backward_with_coursekit],
    "08.clip_grad_norm": [clip_grad_norm],
    "08.he_init": [he_init, he_init_float32],
}
SEEDS = 15  # every solution passes on seeds 0..14


# ---------------------------------------------------------------------------- mistakes
def bn_no_mean_var_paths(dout, cache):
    x, gamma, eps = cache
    std = torch.sqrt(x.var(0, unbiased=False) + eps)
    xhat = (x - x.mean(0)) / std
    return dout * gamma / std, (dout * xhat).sum(0), dout.sum(0)


def bn_dgamma_not_summed(dout, cache):
    dx, _, dbeta = batchnorm_backward(dout, cache)
    x, gamma, eps = cache
    xhat = (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + eps)
    return dx, dout * xhat, dbeta


def bn_unbiased(dout, cache):
    x, gamma, eps = cache
    n = x.shape[0]
    std = torch.sqrt(x.var(0, unbiased=True) + eps)
    xhat = (x - x.mean(0)) / std
    dxhat = dout * gamma
    dx = (n * dxhat - dxhat.sum(0) - xhat * (dxhat * xhat).sum(0) * n / (n - 1)) / (n * std)
    return dx, (dout * xhat).sum(0), dout.sum(0)


def bn_autograd(dout, cache):
    x, gamma, eps = cache
    xs, gs = x.clone().requires_grad_(True), gamma.clone().requires_grad_(True)
    with torch.enable_grad():
        out = gs * (xs - xs.mean(0)) / torch.sqrt(xs.var(0, unbiased=False) + eps)
        out.backward(dout)
    return xs.grad, gs.grad, dout.sum(0)


def clip_always(grads, max_norm):
    total = torch.sqrt(sum((g**2).sum() for g in grads))
    return [g * max_norm / (total + 1e-6) for g in grads], total


def clip_each_own_norm(grads, max_norm):
    total = torch.sqrt(sum((g**2).sum() for g in grads))
    out = [g * min(1.0, max_norm / (float(g.norm()) + 1e-6)) for g in grads]
    return out, total


def clip_by_value(grads, max_norm):
    total = torch.sqrt(sum((g**2).sum() for g in grads))
    return [g.clamp(-max_norm, max_norm) for g in grads], total


def clip_sum_of_norms(grads, max_norm):
    clipped, _ = clip_grad_norm(grads, max_norm)
    return clipped, sum(g.norm() for g in grads)


def clip_in_place(grads, max_norm):
    total = torch.sqrt(sum((g**2).sum() for g in grads))
    if total > max_norm:
        for g in grads:
            g.mul_(max_norm / (total + 1e-6))
    return grads, total


def he_fan_out(fan_in, fan_out, generator):
    w = torch.randn(fan_in, fan_out, generator=generator, dtype=torch.float64)
    return w * math.sqrt(2 / fan_out)


def he_lecun(fan_in, fan_out, generator):
    return he_init(fan_in, fan_out, generator) / math.sqrt(2)


def he_xavier(fan_in, fan_out, generator):
    w = torch.randn(fan_in, fan_out, generator=generator, dtype=torch.float64)
    return w * math.sqrt(2 / (fan_in + fan_out))


def he_uniform(fan_in, fan_out, generator):
    bound = math.sqrt(3 * 2 / fan_in)
    u = torch.rand(fan_in, fan_out, generator=generator, dtype=torch.float64)
    return (2 * u - 1) * bound


def he_global_rng(fan_in, fan_out, generator):
    return torch.randn(fan_in, fan_out, dtype=torch.float64) * math.sqrt(2 / fan_in)


def he_own_seed(fan_in, fan_out, generator):
    return he_init(fan_in, fan_out, torch.Generator().manual_seed(0))


def he_transposed(fan_in, fan_out, generator):
    return he_init(fan_out, fan_in, generator) * math.sqrt(fan_out / fan_in)


MISTAKES = [
    ("08.batchnorm_backward", bn_no_mean_var_paths, "ignores the paths through the mean"),
    ("08.batchnorm_backward", bn_dgamma_not_summed, "sum dout * xhat over the batch"),
    ("08.batchnorm_backward", bn_unbiased, "unbiased variance"),
    ("08.batchnorm_backward", bn_autograd, "uses torch.autograd"),
    ("08.clip_grad_norm", clip_always, "only when total_norm > max_norm"),
    ("08.clip_grad_norm", clip_each_own_norm, "its own norm"),
    ("08.clip_grad_norm", clip_by_value, "by value"),
    ("08.clip_grad_norm", clip_sum_of_norms, "not the sum of the norms"),
    ("08.clip_grad_norm", clip_in_place, "modified its input"),
    ("08.he_init", he_fan_out, "2 / fan_out"),
    ("08.he_init", he_lecun, "LeCun"),
    ("08.he_init", he_xavier, "Xavier"),
    ("08.he_init", he_uniform, "not uniform"),
    ("08.he_init", he_global_rng, "generator you are given"),
    ("08.he_init", he_own_seed, "Do not seed a generator of your own"),
    ("08.he_init", he_transposed, "(fan_in, fan_out)"),
]
