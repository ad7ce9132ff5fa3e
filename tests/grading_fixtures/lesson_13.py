"""Lesson 13's graded items: correct trainers written as a student would, and classic mistakes.

Every item grades the same function, ``train(x, d, params, lr, momentum, max_sweeps) ->
(params, sweeps)``: the 1986 procedure on a net with one hidden layer of sigmoid units.
"""

from __future__ import annotations

import torch

from coursekit import functional as F
from coursekit.nn import Parameter
from coursekit.optim import SGD

KEYS = ("W1", "b1", "W2", "b2")
SEEDS = 3  # each grading trains nets for a few seconds


# ---------------------------------------------------------------------------- correct
def train(x, d, params, lr, momentum, max_sweeps):
    w1, b1, w2, b2 = (params[k].clone() for k in KEYS)
    dw = [torch.zeros_like(p) for p in (w1, b1, w2, b2)]
    for sweep in range(max_sweeps + 1):
        h = torch.sigmoid(x @ w1 + b1)
        y = torch.sigmoid(h @ w2 + b2)
        if (y - d).abs().max() < 0.1 or sweep == max_sweeps:
            return {"W1": w1, "b1": b1, "W2": w2, "b2": b2}, sweep
        dz2 = (y - d) * y * (1 - y)
        dz1 = (dz2 @ w2.T) * h * (1 - h)
        grads = [x.T @ dz1, dz1.sum(0), h.T @ dz2, dz2.sum(0)]
        for i, (p, g) in enumerate(zip((w1, b1, w2, b2), grads, strict=True)):
            dw[i] = -lr * g + momentum * dw[i]
            p += dw[i]


def train_velocity_form(x, d, params, lr, momentum, max_sweeps):
    """Momentum written as v = momentum * v + g, w -= lr * v (the same steps), float32 maths."""
    p = {k: params[k].float().clone() for k in KEYS}
    v = {k: torch.zeros_like(t) for k, t in p.items()}
    x32, d32 = x.float(), d.float()
    sweep = 0
    while True:
        a1 = x32 @ p["W1"] + p["b1"]
        h = 1 / (1 + torch.exp(-a1))
        y = 1 / (1 + torch.exp(-(h @ p["W2"] + p["b2"])))
        if bool(((y - d32).abs() < 0.1).all()) or sweep == max_sweeps:
            return {k: t.double() for k, t in p.items()}, sweep
        delta_out = (y - d32) * y * (1 - y)
        delta_hidden = delta_out @ p["W2"].T * h * (1 - h)
        g = {
            "W2": h.T @ delta_out,
            "b2": delta_out.sum(0),
            "W1": x32.T @ delta_hidden,
            "b1": delta_hidden.sum(0),
        }
        for k in KEYS:
            v[k] = momentum * v[k] + g[k]
            p[k] = p[k] - lr * v[k]
        sweep += 1


def train_from_functional_pieces(x, d, params, lr, momentum, max_sweeps):
    """Built from coursekit's hand-written functional pieces and its SGD with momentum."""
    p = {k: Parameter(params[k].clone()) for k in KEYS}
    optimizer = SGD(list(p.values()), lr=lr, momentum=momentum)
    for sweep in range(max_sweeps + 1):
        a1, linear1 = F.linear_forward(x, p["W1"].data, p["b1"].data)
        h, sigmoid1 = F.sigmoid_forward(a1)
        a2, linear2 = F.linear_forward(h, p["W2"].data, p["b2"].data)
        y, sigmoid2 = F.sigmoid_forward(a2)
        if bool(((y - d).abs() < 0.1).all()) or sweep == max_sweeps:
            break
        dh, p["W2"].grad, p["b2"].grad = F.linear_backward(
            F.sigmoid_backward(y - d, sigmoid2), linear2
        )
        _, p["W1"].grad, p["b1"].grad = F.linear_backward(F.sigmoid_backward(dh, sigmoid1), linear1)
        optimizer.step()  # v = momentum * v + g; w -= lr * v: the paper's step
    return {k: t.data for k, t in p.items()}, sweep


def train_with_coursekit_rumelhart1986(x, d, params, lr, momentum, max_sweeps):
    """Lesson 13's own trainer: correct, and it must score zero in check()."""
    from coursekit import rumelhart1986 as R

    net = R.Net(x.shape[1], params["W1"].shape[1], d.shape[1])
    start = {
        k: t.reshape(1, *(t.shape if k.startswith("W") else (1, -1))) for k, t in params.items()
    }
    result = R.train(
        net, x, d, [0], eps=lr, alpha=momentum, r=0.3, max_sweeps=max_sweeps, start=start
    )
    trained = {k: t[0] if k.startswith("W") else t[0, 0] for k, t in result.weights.items()}
    return trained, int(result.sweeps[0])


SOLUTIONS = {
    "13.xor": [
        train,
        train_velocity_form,
        train_from_functional_pieces,
        train_with_coursekit_rumelhart1986,
    ],
    "13.encoder": [train, train_velocity_form, train_from_functional_pieces],
    "13.symmetry": [train, train_velocity_form, train_from_functional_pieces],
}


# ---------------------------------------------------------------------------- mistakes
def _fit(x, d, params, lr, momentum, max_sweeps, *, sign=1.0, scale=1.0, hidden_slope=True):
    """The procedure with one thing changed: the step's sign, a factor on the gradient (1/P
    for a mean), or the hidden layer's sigmoid slope left out."""
    w1, b1, w2, b2 = (params[k].clone() for k in KEYS)
    dw = [torch.zeros_like(p) for p in (w1, b1, w2, b2)]
    for sweep in range(max_sweeps + 1):
        h = torch.sigmoid(x @ w1 + b1)
        y = torch.sigmoid(h @ w2 + b2)
        if (y - d).abs().max() < 0.1 or sweep == max_sweeps:
            return {"W1": w1, "b1": b1, "W2": w2, "b2": b2}, sweep
        dz2 = (y - d) * y * (1 - y) * scale
        dz1 = (dz2 @ w2.T) * (h * (1 - h) if hidden_slope else 1.0)
        grads = [x.T @ dz1, dz1.sum(0), h.T @ dz2, dz2.sum(0)]
        for i, (p, g) in enumerate(zip((w1, b1, w2, b2), grads, strict=True)):
            dw[i] = -sign * lr * g + momentum * dw[i]
            p += dw[i]


def train_gradient_ascent(x, d, params, lr, momentum, max_sweeps):
    return _fit(x, d, params, lr, momentum, max_sweeps, sign=-1.0)


def train_mean_over_patterns(x, d, params, lr, momentum, max_sweeps):
    return _fit(x, d, params, lr, momentum, max_sweeps, scale=1.0 / len(x))


def train_without_momentum(x, d, params, lr, momentum, max_sweeps):
    return _fit(x, d, params, lr, 0.0, max_sweeps)


def train_returns_initial_weights(x, d, params, lr, momentum, max_sweeps):
    return {k: params[k].clone() for k in KEYS}, 0


def train_returns_params_only(x, d, params, lr, momentum, max_sweeps):
    return train(x, d, params, lr, momentum, max_sweeps)[0]


def train_biases_as_rows(x, d, params, lr, momentum, max_sweeps):
    net, sweeps = train(x, d, params, lr, momentum, max_sweeps)
    return {k: t.reshape(1, -1) if k.startswith("b") else t for k, t in net.items()}, sweeps


def train_sweeps_as_float(x, d, params, lr, momentum, max_sweeps):
    net, sweeps = train(x, d, params, lr, momentum, max_sweeps)
    return net, float(sweeps)


def train_returns_sweeps_first(x, d, params, lr, momentum, max_sweeps):
    net, sweeps = train(x, d, params, lr, momentum, max_sweeps)
    return sweeps, net


def train_in_place(x, d, params, lr, momentum, max_sweeps):
    net, sweeps = train(x, d, params, lr, momentum, max_sweeps)
    for k in KEYS:
        params[k].copy_(net[k])
    return params, sweeps


def train_stops_on_total_error(x, d, params, lr, momentum, max_sweeps):
    """Stops when E = 1/2 sum (y - d)^2 < 0.5 instead of every output within 0.1."""
    w1, b1, w2, b2 = (params[k].clone() for k in KEYS)
    dw = [torch.zeros_like(p) for p in (w1, b1, w2, b2)]
    for sweep in range(max_sweeps + 1):
        h = torch.sigmoid(x @ w1 + b1)
        y = torch.sigmoid(h @ w2 + b2)
        if 0.5 * ((y - d) ** 2).sum() < 0.5 or sweep == max_sweeps:
            return {"W1": w1, "b1": b1, "W2": w2, "b2": b2}, sweep
        dz2 = (y - d) * y * (1 - y)
        dz1 = (dz2 @ w2.T) * h * (1 - h)
        grads = [x.T @ dz1, dz1.sum(0), h.T @ dz2, dz2.sum(0)]
        for i, (p, g) in enumerate(zip((w1, b1, w2, b2), grads, strict=True)):
            dw[i] = -lr * g + momentum * dw[i]
            p += dw[i]


def train_from_zero_weights(x, d, params, lr, momentum, max_sweeps):
    """Ignores the initial weights and starts from zeros: the hidden units stay identical."""
    return train(x, d, {k: torch.zeros_like(params[k]) for k in KEYS}, lr, momentum, max_sweeps)


def xor_weights_by_hand(x, d, params, lr, momentum, max_sweeps):
    """A hand-set XOR net (OR and AND units), whatever the task."""
    h = params["W1"].shape[1]
    w1 = torch.zeros(2, h, dtype=x.dtype)
    w1[:, :2] = 20.0
    b1 = torch.zeros(h, dtype=x.dtype)
    b1[:2] = torch.tensor([-10.0, -30.0])
    w2 = torch.zeros(h, 1, dtype=x.dtype)
    w2[:2, 0] = torch.tensor([20.0, -20.0])
    return {"W1": w1, "b1": b1, "W2": w2, "b2": torch.tensor([-10.0], dtype=x.dtype)}, 0


def symmetry_net_by_hand_not_mirrored(x, d, params, lr, momentum, max_sweeps):
    """A net built from the data (the mirror pairs are the columns equal on every symmetric
    pattern) with weights 1, 2, 4 on one side of each pair and -1.4, -2, -4 on the other:
    every pattern classified, the smallest pair not equal and opposite."""
    n = x.shape[1]
    symmetric = x[d[:, 0] > 0.5]
    pairs, used = [], set()
    for a in range(n):
        if a in used:
            continue
        b = next(
            b
            for b in range(n)
            if b != a and b not in used and bool((symmetric[:, a] == symmetric[:, b]).all())
        )
        pairs.append((a, b))
        used |= {a, b}
    k = 25.0
    w1 = torch.zeros(n, 2, dtype=x.dtype)
    for size, (a, b) in enumerate(pairs):
        magnitude = 2.0**size
        w1[a, 0], w1[b, 0] = k * magnitude, -k * magnitude * (1.4 if size == 0 else 1.0)
    w1[:, 1] = -w1[:, 0]
    b1 = torch.full((2,), -k / 2, dtype=x.dtype)
    w2 = torch.full((2, 1), -20.0, dtype=x.dtype)
    b2 = torch.tensor([10.0], dtype=x.dtype)
    return {"W1": w1, "b1": b1, "W2": w2, "b2": b2}, 0


MISTAKES = [
    ("13.xor", train_gradient_ascent, "did not reach the stopping rule"),
    ("13.xor", train_without_momentum, "did not reach the stopping rule"),
    ("13.xor", train_returns_initial_weights, "classified"),
    ("13.xor", train_returns_params_only, "should return (params, sweeps)"),
    ("13.xor", train_biases_as_rows, "has shape (1, 2)"),
    ("13.xor", train_sweeps_as_float, "are a float, not an int"),
    ("13.xor", train_returns_sweeps_first, "params it returned are an int, not a dict"),
    ("13.xor", train_in_place, "modified its input"),
    ("13.xor", xor_weights_by_hand, "classified"),
    ("13.encoder", train_mean_over_patterns, "did not reach the stopping rule"),
    ("13.encoder", train_from_zero_weights, "reconstructed as unit"),
    ("13.encoder", train_stops_on_total_error, "has not reached the stopping rule"),
    ("13.symmetry", train_mean_over_patterns, "did not reach the stopping rule"),
    ("13.symmetry", train_gradient_ascent, "did not reach the stopping rule"),
    ("13.symmetry", symmetry_net_by_hand_not_mirrored, "Weights not mirrored"),
]


def train_own_initial_weights(x, d, params, lr, momentum, max_sweeps):
    """Ignores the initial weights passed in and draws its own: about half of all draws give
    the 8-3-8 encoder codes that are not distinct (with this draw, at the grader's seed 0)."""
    g = torch.Generator().manual_seed(1)
    own = {k: (torch.rand(params[k].shape, generator=g, dtype=x.dtype) * 2 - 1) * 0.3 for k in KEYS}
    return train(x, d, own, lr, momentum, max_sweeps)


SEED_0_MISTAKES = [("13.encoder", train_own_initial_weights, "Codes not distinct")]
