"""Lesson 01's graded items: correct solutions written as a student would, and classic mistakes."""

from __future__ import annotations

import torch


# ---------------------------------------------------------------------------- correct
def central_difference(f, x, h):
    return (f(x + h) - f(x - h)) / (2 * h)


def chain_rule(x):
    return torch.exp(torch.sin(x**2)) * torch.cos(x**2) * 2 * x


SOLUTIONS = {
    "01.central_difference": [central_difference],
    "01.chain_rule": [chain_rule],
}

SEEDS = 25  # every solution passes on seeds 0..24


# ---------------------------------------------------------------------------- mistakes
def forward_difference(f, x, h):
    return (f(x + h) - f(x)) / h


def divided_by_h(f, x, h):
    return (f(x + h) - f(x - h)) / h


def exact_derivative(f, x, h):
    tiny = 1e-7  # the derivative itself, to about 1e-8 (f is the grader's, outside autograd)
    return (f(x + tiny) - f(x - tiny)) / (2 * tiny)


def chain_without_inner(x):
    return torch.exp(torch.sin(x**2)) * torch.cos(x**2)


def central_difference_loop(f, x, h):
    grad = torch.empty_like(x)
    flat, out = x.reshape(-1), grad.view(-1)
    for i in range(flat.numel()):
        out[i] = (f(flat[i] + h) - f(flat[i] - h)) / (2 * h)
    return grad


def chain_cos_of_x(x):
    return torch.exp(torch.sin(x**2)) * torch.cos(x) * 2 * x


MISTAKES = [
    ("01.central_difference", forward_difference, "forward difference"),
    ("01.central_difference", divided_by_h, "Divide by 2h"),
    ("01.central_difference", exact_derivative, "exact derivative"),
    ("01.central_difference", central_difference_loop, "Python loop"),
    ("01.chain_rule", chain_without_inner, "d(x**2)/dx = 2x, is missing"),
    ("01.chain_rule", chain_cos_of_x, "cos(x**2), not cos(x)"),
]
