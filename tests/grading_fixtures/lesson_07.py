"""Lesson 07's graded items: correct solutions written as a student would, and classic mistakes."""

from __future__ import annotations

import torch

from coursekit import functional as F


# ---------------------------------------------------------------------------- correct
def dropout_forward(x, p, generator):
    keep = torch.rand(x.shape, generator=generator, dtype=x.dtype) >= p
    mask = keep.to(x.dtype) / (1 - p)
    return x * mask, mask


def dropout_backward(dout, cache):
    return dout * cache


def dropout_forward_keeps_bool(x, p, generator):
    keep = torch.rand(x.shape, generator=generator, dtype=x.dtype) >= p
    return x * keep / (1 - p), (keep, p)


def dropout_backward_keeps_bool(dout, cache):
    keep, p = cache
    return torch.where(keep, dout / (1 - p), torch.zeros_like(dout))


def dropout_forward_with_coursekit(x, p, generator):
    return F.dropout_forward(x, p, train=True, generator=generator)


def dropout_backward_with_coursekit(dout, cache):
    return F.dropout_backward(dout, cache)


def l2_grad(w, lam):
    return 2 * lam * w


def l2_grad_by_parts(w, lam):
    return lam * (w + w)


SOLUTIONS = {
    "07.dropout": [
        (dropout_forward, dropout_backward),
        (dropout_forward_keeps_bool, dropout_backward_keeps_bool),
        (dropout_forward_with_coursekit, dropout_backward_with_coursekit),
    ],
    "07.l2_grad": [l2_grad, l2_grad_by_parts],
}
SEEDS = 10  # every solution passes on seeds 0..9


# ---------------------------------------------------------------------------- mistakes
def forward_unscaled(x, p, generator):
    keep = (torch.rand(x.shape, generator=generator, dtype=x.dtype) >= p).to(x.dtype)
    return x * keep, keep


def forward_inverted_mask(x, p, generator):
    keep = (torch.rand(x.shape, generator=generator, dtype=x.dtype) < p).to(x.dtype)
    return x * keep / (1 - p), keep / (1 - p)


def forward_global_rng(x, p, generator):
    keep = (torch.rand(x.shape, dtype=x.dtype) >= p).to(x.dtype)
    return x * keep / (1 - p), keep / (1 - p)


def forward_as_float32(x, p, generator):
    out, mask = dropout_forward(x, p, generator)
    return out.float(), mask


def forward_times_keep_prob(x, p, generator):
    keep = (torch.rand(x.shape, generator=generator, dtype=x.dtype) >= p).to(x.dtype)
    return x * keep * (1 - p), keep * (1 - p)


def backward_without_mask(dout, cache):
    return dout.clone()


def backward_unscaled(dout, cache):
    return dout * (cache != 0).to(dout.dtype)


def forward_keeping_generator(x, p, generator):
    out, _ = dropout_forward(x, p, generator)
    return out, (generator, p)


def backward_redraws_mask(dout, cache):
    generator, p = cache
    keep = torch.rand(dout.shape, generator=generator, dtype=dout.dtype) >= p
    return dout * keep / (1 - p)


def backward_in_place(dout, cache):
    return dout.mul_(cache)


def l2_without_two(w, lam):
    return lam * w


def l2_halved(w, lam):
    return lam * w / 2


def l2_doubled_twice(w, lam):
    return 4 * lam * w


def l2_penalty(w, lam):
    return lam * (w**2).sum()


def l2_without_lam(w, lam):
    return 2 * w


def l2_decay_step(w, lam):
    return w - 2 * lam * w


def l2_with_autograd(w, lam):
    leaf = w.clone().requires_grad_(True)
    with torch.enable_grad():
        (lam * (leaf**2).sum()).backward()
    return leaf.grad


MISTAKES = [
    ("07.dropout", (forward_unscaled, dropout_backward), "1/(1 - p) scaling is missing"),
    ("07.dropout", (forward_times_keep_prob, dropout_backward), "multiplied the kept entries"),
    ("07.dropout", (forward_inverted_mask, dropout_backward), "mask is inverted"),
    ("07.dropout", (forward_global_rng, dropout_backward), "from the generator you are given"),
    ("07.dropout", (forward_as_float32, dropout_backward), "dtype"),
    ("07.dropout", (dropout_forward, backward_without_mask), "does not use the mask"),
    ("07.dropout", (forward_keeping_generator, backward_redraws_mask), "drawn again"),
    ("07.dropout", (dropout_forward, backward_in_place), "in place"),
    ("07.dropout", (dropout_forward, backward_unscaled), "missing in the backward"),
    ("07.l2_grad", l2_without_two, "factor 2 is missing"),
    ("07.l2_grad", l2_halved, "wrong lambda convention"),
    ("07.l2_grad", l2_doubled_twice, "counted twice"),
    ("07.l2_grad", l2_penalty, "shape of w"),
    ("07.l2_grad", l2_without_lam, "lam is missing"),
    ("07.l2_grad", l2_decay_step, "not the weights after a decay step"),
    ("07.l2_grad", l2_with_autograd, "uses torch.autograd"),
]
