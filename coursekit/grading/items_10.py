"""Graded items of lesson 10 (recurrent nets): one RNN step backward, and BPTT.

The references are torch.autograd through h = tanh(x @ wx + h_prev @ wh + b).
The classic mistakes are recomputed directly: the tanh derivative (1 - h^2)
left out, db not summed over the batch, weight gradients with the product the
wrong way round, the gradient from later steps left out of dh_t, and weight
gradients that keep only the last step instead of summing over time.
"""

from __future__ import annotations

import torch

from coursekit.grading.context import GradingContext
from coursekit.grading.hints import Mistake
from coursekit.grading.reference import describe_shapes
from coursekit.grading.registry import item


def _step(x, h_prev, wx, wh, b):
    """h = tanh(x @ wx + h_prev @ wh + b) and its cache (x, h_prev, wx, wh, h)."""
    h = torch.tanh(x @ wx + h_prev @ wh + b)
    return h, (x, h_prev, wx, wh, h)


def _inputs(ctx: GradingContext, n: int, d: int, hidden: int):
    """Random weights scaled so that tanh is neither linear nor saturated."""
    wx = ctx.randn(d, hidden, scale=1.0 / d**0.5)
    wh = ctx.randn(hidden, hidden, scale=0.8 / hidden**0.5)
    b = ctx.randn(hidden, scale=0.3)
    h0 = ctx.randn(n, hidden, scale=0.5)
    return wx, wh, b, h0


def _autograd(outputs_of, inputs, upstream):
    """Gradients of sum(outputs_of(*inputs) * upstream) with respect to every input."""
    leaves = [t.clone().requires_grad_(True) for t in inputs]
    with torch.enable_grad():
        out = outputs_of(*leaves)
        grads = torch.autograd.grad(out, leaves, upstream)
    return tuple(g.detach() for g in grads)


# ---------------------------------------------------------------------------- 10.rnn_step_backward
def _step_grads(da, x, h_prev, wx, wh):
    """(dx, dh_prev, dwx, dwh, db) from the pre-activation's gradient da."""
    return da @ wx.T, da @ wh.T, x.T @ da, h_prev.T @ da, da.sum(0)


@item(
    "10.rnn_step_backward",
    points=2,
    description="dx, dh_prev, dwx, dwh, db of one vanilla RNN step h = tanh(x@wx + h_prev@wh + b)",
    signature="fn(dh, cache) -> (dx, dh_prev, dwx, dwh, db), cache = (x, h_prev, wx, wh, h)",
    covers="D < H, D > H, D = H, batch 1, a single hidden unit",
    timeout=30.0,
)
def rnn_step_backward(ctx: GradingContext, fn) -> None:
    for n, d, hidden in [(3, 4, 5), (2, 6, 3), (1, 3, 4), (4, 5, 5), (3, 2, 1)]:
        wx, wh, b, h_prev = _inputs(ctx, n, d, hidden)
        x = ctx.randn(n, d)
        h, cache = _step(x, h_prev, wx, wh, b)
        dh = ctx.randn(n, hidden)
        with ctx.case(describe_shapes(x=x, h_prev=h_prev, wx=wx, wh=wh)):
            expected = _autograd(
                lambda x_, hp_, wx_, wh_, b_: torch.tanh(x_ @ wx_ + hp_ @ wh_ + b_),
                (x, h_prev, wx, wh, b),
                dh,
            )
            da = dh * (1 - h * h)
            no_tanh = _step_grads(dh, x, h_prev, wx, wh)
            tanh_hint = (
                "the tanh derivative is missing: h = tanh(a), so first da = dh * (1 - h**2) "
                "(h is in the cache), then every gradient is computed from da, not from dh."
            )
            mistakes = {
                name: [Mistake(wrong, tanh_hint)]
                for name, wrong in zip(("dx", "dh_prev", "dwx", "dwh", "db"), no_tanh, strict=True)
            }
            mistakes["dh_prev"].append(
                Mistake(
                    da @ wh,
                    "dh_prev uses wh where it needs its transpose: a = h_prev @ wh, so "
                    "dh_prev = da @ wh.T, (N, H) @ (H, H).",
                )
            )
            mistakes["dwx"].append(
                Mistake(
                    da.T @ x,
                    "dwx is transposed: it has the shape of wx, (D, H), so dwx = x.T @ da, "
                    "(D, N) @ (N, H).",
                    shape_only=d != hidden,
                )
            )
            mistakes["dwh"].append(
                Mistake(
                    da.T @ h_prev,
                    "dwh is transposed: a = h_prev @ wh, so dwh = h_prev.T @ da, "
                    "(H, N) @ (N, H), not da.T @ h_prev.",
                )
            )
            mistakes["db"] += [
                Mistake(
                    da,
                    "db has one value per hidden unit, (H,): b is added to every example, so "
                    "db = da.sum(0), summed over the batch.",
                    shape_only=True,
                ),
                Mistake(da.mean(0), "db is averaged over the batch; it is a sum: db = da.sum(0)."),
            ]
            got = ctx.call(
                fn,
                dh,
                cache,
                names=("dh", "cache"),
                labels={
                    "cache[0]": "cache[0] (x)",
                    "cache[1]": "cache[1] (h_prev)",
                    "cache[2]": "cache[2] (wx)",
                    "cache[3]": "cache[3] (wh)",
                    "cache[4]": "cache[4] (h)",
                },
            )
            ctx.compare(
                got,
                expected,
                ("dx", "dh_prev", "dwx", "dwh", "db"),
                mistakes=mistakes,
                batch=n,
                shape_of={"dx": "x", "dh_prev": "h_prev", "dwx": "wx", "dwh": "wh", "db": "b"},
            )


# ---------------------------------------------------------------------------- 10.bptt
def _unroll(x, h0, wx, wh, b):
    """All hidden states (N, T, H) and the list of per-step caches."""
    h, hs, caches = h0, [], []
    for t in range(x.shape[1]):
        h, cache = _step(x[:, t], h, wx, wh, b)
        hs.append(h)
        caches.append(cache)
    return torch.stack(hs, 1), caches


def _bptt(dhs, caches, from_future: bool, last_only: bool):
    """BPTT by hand, with the two classic mistakes switchable."""
    dh_next = torch.zeros_like(caches[0][1])
    dxs, dwx, dwh, db = [], 0.0, 0.0, 0.0
    for t in reversed(range(len(caches))):
        dh = dhs[:, t] + (dh_next if from_future else 0.0)
        dx, dh_next, dwx_t, dwh_t, db_t = _step_grads(dh * (1 - caches[t][4] ** 2), *caches[t][:4])
        dxs.append(dx)
        if last_only:
            if t == len(caches) - 1:
                dwx, dwh, db = dwx_t, dwh_t, db_t
        else:
            dwx, dwh, db = dwx + dwx_t, dwh + dwh_t, db + db_t
    return torch.stack(dxs[::-1], 1), dh_next, dwx, dwh, db


@item(
    "10.bptt",
    points=3,
    description="backprop through time: (dx, dh0, dwx, dwh, db) of a vanilla RNN over T steps",
    signature="fn(dhs, caches) -> (dx, dh0, dwx, dwh, db), dhs (N, T, H), "
    "caches = list of T step caches (x_t, h_prev, wx, wh, h_t)",
    covers="T = 1, 2, 5 and 8, D < H and D > H, batch 1",
    timeout=30.0,
)
def bptt(ctx: GradingContext, fn) -> None:
    for n, t_len, d, hidden in [(2, 5, 3, 4), (3, 2, 5, 3), (1, 8, 2, 3), (2, 1, 3, 2)]:
        wx, wh, b, h0 = _inputs(ctx, n, d, hidden)
        x = ctx.randn(n, t_len, d)
        _, caches = _unroll(x, h0, wx, wh, b)
        dhs = ctx.randn(n, t_len, hidden)
        with ctx.case(f"{describe_shapes(x=x, h0=h0, wx=wx, wh=wh)}, T = {t_len}"):
            expected = _autograd(lambda *a: _unroll(*a)[0], (x, h0, wx, wh, b), dhs)
            names = ("dx", "dh0", "dwx", "dwh", "db")
            mistakes: dict[str, list[Mistake]] = {name: [] for name in names}
            if t_len > 1:
                no_future = _bptt(dhs, caches, from_future=False, last_only=False)
                last = _bptt(dhs, caches, from_future=True, last_only=True)
                for name, wrong in zip(names, no_future, strict=True):
                    mistakes[name].append(
                        Mistake(
                            wrong,
                            "the gradient from later steps is missing: h_t feeds the output "
                            "at t and step t+1, so dh_t = dhs[:, t] + (the dh_prev that step "
                            "t+1's backward returned). Walk t from T-1 down to 0 and carry it.",
                        )
                    )
                for name, wrong in zip(names[2:], last[2:], strict=True):
                    mistakes[name].append(
                        Mistake(
                            wrong,
                            f"{name} only holds the last step's contribution: wx, wh and b are "
                            "shared by every step, so add up the step gradients over all T "
                            "steps (start from zeros and +=).",
                        )
                    )
            got = ctx.call(
                fn,
                dhs,
                caches,
                names=("dhs", "caches"),
            )
            ctx.compare(
                got,
                expected,
                names,
                mistakes=mistakes,
                batch=n,
                shape_of={"dx": "x", "dh0": "h0", "dwx": "wx", "dwh": "wh", "db": "b"},
            )
