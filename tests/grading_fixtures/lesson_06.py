"""Lesson 06's graded items: correct solutions written as a student would, and classic mistakes."""

from __future__ import annotations

import torch


# ---------------------------------------------------------------------------- correct
def minibatches(n, batch_size, generator):
    order = torch.randperm(n, generator=generator)
    return list(order.split(batch_size))


def minibatches_with_a_loop(n, batch_size, generator):
    order = torch.randperm(n, generator=generator)
    return [order[start : start + batch_size] for start in range(0, n, batch_size)]


def momentum_step(w, grad, velocity, lr, momentum):
    velocity = momentum * velocity + grad
    return w - lr * velocity, velocity


def adam_step(w, grad, m, v, t, lr, beta1, beta2, eps):
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad**2
    m_hat = m / (1 - beta1**t)
    v_hat = v / (1 - beta2**t)
    return w - lr * m_hat / (v_hat.sqrt() + eps), m, v


SOLUTIONS = {
    "06.minibatches": [minibatches, minibatches_with_a_loop],
    "06.momentum_step": [momentum_step],
    "06.adam_step": [adam_step],
}
SEEDS = 15  # every solution passes on seeds 0..14


# ---------------------------------------------------------------------------- mistakes
def batches_drop_last(n, batch_size, generator):
    order = torch.randperm(n, generator=generator)
    return [order[s : s + batch_size] for s in range(0, n - batch_size + 1, batch_size)]


def batches_with_replacement(n, batch_size, generator):
    order = torch.randint(0, n, (n,), generator=generator)
    return list(order.split(batch_size))


def batches_overlapping(n, batch_size, generator):
    order = torch.randperm(n, generator=generator)
    return [order[i : i + batch_size] for i in range(-(-n // batch_size))]


def batches_not_shuffled(n, batch_size, generator):
    return list(torch.arange(n).split(batch_size))


def batches_count_for_size(n, batch_size, generator):
    return list(torch.randperm(n, generator=generator).chunk(batch_size))


def batches_global_rng(n, batch_size, generator):
    return list(torch.randperm(n).split(batch_size))


def batches_own_seed(n, batch_size, generator):
    return list(torch.randperm(n, generator=torch.Generator().manual_seed(0)).split(batch_size))


def batches_as_floats(n, batch_size, generator):
    return [b.double() for b in torch.randperm(n, generator=generator).split(batch_size)]


def batches_one_tensor(n, batch_size, generator):
    return torch.randperm(n, generator=generator)


def momentum_velocity_not_updated(w, grad, velocity, lr, momentum):
    new_velocity = momentum * velocity + grad
    return w - lr * new_velocity, velocity


def momentum_sign(w, grad, velocity, lr, momentum):
    velocity = momentum * velocity + grad
    return w + lr * velocity, velocity


def momentum_old_velocity(w, grad, velocity, lr, momentum):
    return w - lr * velocity, momentum * velocity + grad


def momentum_dampened(w, grad, velocity, lr, momentum):
    velocity = momentum * velocity + (1 - momentum) * grad
    return w - lr * velocity, velocity


def momentum_other_convention(w, grad, velocity, lr, momentum):
    velocity = momentum * velocity - lr * grad
    return w + velocity, velocity


def momentum_in_place(w, grad, velocity, lr, momentum):
    velocity.mul_(momentum).add_(grad)
    return w - lr * velocity, velocity


def adam_without_bias_correction(w, grad, m, v, t, lr, beta1, beta2, eps):
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad**2
    return w - lr * m / (v.sqrt() + eps), m, v


def adam_returns_corrected_moments(w, grad, m, v, t, lr, beta1, beta2, eps):
    w_new, m, v = adam_step(w, grad, m, v, t, lr, beta1, beta2, eps)
    return w_new, m / (1 - beta1**t), v / (1 - beta2**t)


def adam_eps_inside_sqrt(w, grad, m, v, t, lr, beta1, beta2, eps):
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad**2
    m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
    return w - lr * m_hat / (v_hat + eps).sqrt(), m, v


def adam_v_of_grad(w, grad, m, v, t, lr, beta1, beta2, eps):
    w_new, m, _ = adam_step(w, grad, m, v, t, lr, beta1, beta2, eps)
    return w_new, m, beta2 * v + (1 - beta2) * grad


def adam_t_minus_one(w, grad, m, v, t, lr, beta1, beta2, eps):
    if t == 1:
        return adam_step(w, grad, m, v, t, lr, beta1, beta2, eps)
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad**2
    m_hat, v_hat = m / (1 - beta1 ** (t - 1)), v / (1 - beta2 ** (t - 1))
    return w - lr * m_hat / (v_hat.sqrt() + eps), m, v


def adam_uses_autograd(w, grad, m, v, t, lr, beta1, beta2, eps):
    x = w.clone().requires_grad_(True)
    with torch.enable_grad():
        (x * grad).sum().backward()
    return adam_step(w, x.grad, m, v, t, lr, beta1, beta2, eps)


MISTAKES = [
    ("06.minibatches", batches_drop_last, "last, smaller batch"),
    ("06.minibatches", batches_with_replacement, "Sampling with replacement"),
    ("06.minibatches", batches_overlapping, "do not overlap"),
    ("06.minibatches", batches_not_shuffled, "not shuffled"),
    ("06.minibatches", batches_count_for_size, "not the number of batches"),
    ("06.minibatches", batches_global_rng, "Use the generator you are given"),
    ("06.minibatches", batches_own_seed, "Do not seed a generator of your own"),
    ("06.minibatches", batches_as_floats, "int64"),
    ("06.minibatches", batches_one_tensor, "list of 1-D index tensors"),
    ("06.momentum_step", momentum_velocity_not_updated, "momentum buffer was not updated"),
    ("06.momentum_step", momentum_sign, "sign is flipped"),
    ("06.momentum_step", momentum_old_velocity, "stepped with the old velocity"),
    ("06.momentum_step", momentum_dampened, "does not damp the gradient"),
    ("06.momentum_step", momentum_other_convention, "other convention"),
    ("06.momentum_step", momentum_in_place, "modified its input velocity in place"),
    ("06.adam_step", adam_without_bias_correction, "Bias correction is missing"),
    ("06.adam_step", adam_returns_corrected_moments, "not the bias-corrected"),
    ("06.adam_step", adam_eps_inside_sqrt, "eps goes outside the square root"),
    ("06.adam_step", adam_v_of_grad, "squared gradient"),
    ("06.adam_step", adam_t_minus_one, "uses t - 1"),
    ("06.adam_step", adam_uses_autograd, "uses torch.autograd"),
]
