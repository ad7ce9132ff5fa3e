"""Graded items of lesson 10 (recurrent nets): one RNN step backward, BPTT, one LSTM step backward.

Steps are numbered t = 1 .. T and h_0 is the initial state, as in the lesson; in code the
step index starts at 0, so x[:, t] is x_{t+1} and caches[0] is step 1's cache, whose
h_prev (caches[0][1]) is h_0.

The references are torch.autograd through h_t = tanh(x_t @ wx + h_{t-1} @ wh + b), and
through the LSTM cell (gates i, f, g, o in torch's order). The classic mistakes are
recomputed directly: the tanh derivative (1 - h^2) left out, db not summed over the batch,
weight gradients with the product the wrong way round, the gradient from later steps left
out of dh_t, weight gradients that keep only the last step instead of summing over time;
for the LSTM, the path from c through h = o * tanh(c) left out or without tanh's slope, the
gates' sigmoid slopes left out, the gates in the wrong order (i, f, o, g), and dc_prev
without the forget gate.
"""

from __future__ import annotations

import torch

from coursekit.grading.context import GradingContext
from coursekit.grading.hints import Mistake
from coursekit.grading.reference import describe_shapes
from coursekit.grading.registry import item


def _step(x, h_prev, wx, wh, b):
    """h_t = tanh(x_t @ wx + h_{t-1} @ wh + b) and its cache (x_t, h_{t-1}, wx, wh, h_t)."""
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


def _bptt(
    dhs,
    caches,
    from_future: bool = True,
    keep: str = "sum",
    skip_last: bool = False,
    tanh: bool = True,
):
    """BPTT by hand, with the classic mistakes switchable: the gradient from later steps left
    out, weight gradients overwritten in the loop (``keep="last"`` keeps step T-1's, ``"first"``
    step 0's, what ``=`` instead of ``+=`` leaves), the last step skipped, tanh' forgotten."""
    dh_next = torch.zeros_like(caches[0][1])
    dxs, dwx, dwh, db = [], 0.0, 0.0, 0.0
    steps = len(caches)
    for t in reversed(range(steps)):
        if skip_last and t == steps - 1:
            dxs.append(torch.zeros_like(caches[t][0]))
            continue
        dh = dhs[:, t] + (dh_next if from_future else 0.0)
        da = dh * (1 - caches[t][4] ** 2) if tanh else dh
        dx, dh_next, dwx_t, dwh_t, db_t = _step_grads(da, *caches[t][:4])
        dxs.append(dx)
        if keep == "sum":
            dwx, dwh, db = dwx + dwx_t, dwh + dwh_t, db + db_t
        elif keep == "first" or (keep == "last" and t == steps - 1):
            dwx, dwh, db = dwx_t, dwh_t, db_t
    return torch.stack(dxs[::-1], 1), dh_next, dwx, dwh, db


@item(
    "10.bptt",
    points=3,
    description="backprop through time: (dx, dh0, dwx, dwh, db) of a vanilla RNN over T steps",
    signature="fn(dhs, caches) -> (dx, dh0, dwx, dwh, db), dhs (N, T, H), "
    "caches = list of T step caches (x_t, h_{t-1}, wx, wh, h_t) for t = 1 .. T, "
    "so caches[0][1] is the initial state h_0",
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
            no_tanh = _bptt(dhs, caches, tanh=False)
            for name, wrong in zip(names, no_tanh, strict=True):
                mistakes[name].append(
                    Mistake(
                        wrong,
                        "the tanh derivative is missing: h_t = tanh(a_t), so each step first "
                        "computes da = dh * (1 - h_t**2), then every gradient from da.",
                    )
                )
            if t_len > 1:
                no_future = _bptt(dhs, caches, from_future=False)
                last = _bptt(dhs, caches, keep="last")
                first = _bptt(dhs, caches, keep="first")
                skipped = _bptt(dhs, caches, skip_last=True)
                for name, wrong in zip(names[2:], first[2:], strict=True):
                    mistakes[name].append(
                        Mistake(
                            wrong,
                            f"{name} holds only step 0's contribution: it was overwritten in the "
                            "loop (= instead of +=). wx, wh and b are shared by every step, so "
                            "add up the step gradients over all T steps (start from zeros).",
                        )
                    )
                for name, wrong in zip(names, skipped, strict=True):
                    mistakes[name].append(
                        Mistake(
                            wrong,
                            "the last step, t = T-1, is missing: the loop must run over every "
                            "step, for t in reversed(range(T)) (range(T - 1) stops one short).",
                        )
                    )
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


# ---------------------------------------------------------------------------- 10.lstm_step_backward
def _lstm_step(x, h_prev, c_prev, wx, wh, b):
    """One LSTM step, gates i, f, g, o (torch's order): out (h, c) and the item's cache.

    cache = (x, h_prev, c_prev, wx, wh, i, f, g, o, c): the inputs, the four gate values
    (N, H) each, and the new cell state c.
    """
    hidden = h_prev.shape[1]
    a = x @ wx + h_prev @ wh + b
    i, f, o = (torch.sigmoid(a[:, k * hidden : (k + 1) * hidden]) for k in (0, 1, 3))
    g = torch.tanh(a[:, 2 * hidden : 3 * hidden])
    c = f * c_prev + i * g
    h = o * torch.tanh(c)
    return (h, c), (x, h_prev, c_prev, wx, wh, i, f, g, o, c)


def _lstm_by_hand(
    dh,
    dc,
    cache,
    *,
    through_h: bool = True,
    tanh_slope: bool = True,
    sigmoid_slopes: bool = True,
    order: str = "ifgo",
    forget_in_dc_prev: bool = True,
):
    """The backward by hand, with the classic mistakes switchable (all off: correct)."""
    x, h_prev, c_prev, wx, wh, i, f, g, o, c = cache
    tanh_c = torch.tanh(c)
    dc_total = dc
    if through_h:
        dc_total = dc + dh * o * ((1 - tanh_c**2) if tanh_slope else 1.0)
    slopes = {
        "i": i * (1 - i) if sigmoid_slopes else 1.0,
        "f": f * (1 - f) if sigmoid_slopes else 1.0,
        "g": 1 - g**2,
        "o": o * (1 - o) if sigmoid_slopes else 1.0,
    }
    d_gate = {"i": dc_total * g, "f": dc_total * c_prev, "g": dc_total * i, "o": dh * tanh_c}
    da = torch.cat([d_gate[k] * slopes[k] for k in order], dim=1)
    dc_prev = dc_total * f if forget_in_dc_prev else dc_total
    return da @ wx.T, da @ wh.T, dc_prev, x.T @ da, h_prev.T @ da, da.sum(0)


_LSTM_NAMES = ("dx", "dh_prev", "dc_prev", "dwx", "dwh", "db")
_LSTM_MISTAKES = {
    "through_h": (
        {"through_h": False},
        "the path from c through h is missing: h = o * tanh(c), so the gradient reaching c is "
        "dc_total = dc + dh * o * (1 - tanh(c)**2), and every gate gradient uses dc_total.",
    ),
    "tanh_slope": (
        {"tanh_slope": False},
        "the derivative of tanh(c) is missing: h = o * tanh(c), so c gets "
        "dh * o * (1 - tanh(c)**2) from h, not dh * o.",
    ),
    "sigmoid_slopes": (
        {"sigmoid_slopes": False},
        "the sigmoid derivative of the gates is missing: i = sigmoid(a_i), so "
        "da_i = di * i * (1 - i), and the same for f and o (g = tanh(a_g) gets 1 - g**2).",
    ),
    "order": (
        {"order": "ifog"},
        "the gates are in the wrong order: a = x @ wx + h_prev @ wh + b holds the blocks "
        "i, f, g, o (torch's order), so da = cat([da_i, da_f, da_g, da_o], dim=1).",
    ),
    "forget": (
        {"forget_in_dc_prev": False},
        "dc_prev misses the forget gate: c = f * c_prev + i * g, so dc_prev = dc_total * f.",
    ),
}


@item(
    "10.lstm_step_backward",
    points=3,
    description="dx, dh_prev, dc_prev, dwx, dwh, db of one LSTM step (gates i, f, g, o)",
    signature="fn((dh, dc), cache) -> (dx, dh_prev, dc_prev, dwx, dwh, db), "
    "cache = (x, h_prev, c_prev, wx, wh, i, f, g, o, c)",
    covers="D < H, D > H, batch 1, a single hidden unit",
    timeout=30.0,
)
def lstm_step_backward(ctx: GradingContext, fn) -> None:
    for n, d, hidden in [(3, 4, 5), (2, 6, 3), (1, 3, 2), (4, 2, 4), (3, 2, 1)]:
        wx = ctx.randn(d, 4 * hidden, scale=1.0 / d**0.5)
        wh = ctx.randn(hidden, 4 * hidden, scale=0.8 / hidden**0.5)
        b = ctx.randn(4 * hidden, scale=0.3)
        x, h_prev, c_prev = ctx.randn(n, d), ctx.randn(n, hidden, scale=0.5), ctx.randn(n, hidden)
        _, cache = _lstm_step(x, h_prev, c_prev, wx, wh, b)
        dh, dc = ctx.randn(n, hidden), ctx.randn(n, hidden)
        with ctx.case(describe_shapes(x=x, h_prev=h_prev, wx=wx, wh=wh)):
            expected = _autograd(
                lambda *args: _lstm_step(*args)[0],
                (x, h_prev, c_prev, wx, wh, b),
                (dh, dc),
            )
            mistakes: dict[str, list[Mistake]] = {name: [] for name in _LSTM_NAMES}
            for switches, hint in _LSTM_MISTAKES.values():
                wrong = _lstm_by_hand(dh, dc, cache, **switches)
                for name, bad, good in zip(_LSTM_NAMES, wrong, expected, strict=True):
                    if not torch.allclose(bad, good, rtol=1e-6, atol=1e-9):
                        mistakes[name].append(Mistake(bad, hint))
            right = _lstm_by_hand(dh, dc, cache)
            mistakes["db"].append(
                Mistake(
                    right[5] / n,
                    "db is averaged over the batch; it is a sum: db = da.sum(0).",
                )
            )
            got = ctx.call(
                fn,
                (dh, dc),
                cache,
                names=("dout", "cache"),
                labels={
                    "dout[0]": "dout[0] (dh)",
                    "dout[1]": "dout[1] (dc)",
                    **{
                        f"cache[{k}]": f"cache[{k}] ({name})"
                        for k, name in enumerate(
                            ("x", "h_prev", "c_prev", "wx", "wh", "i", "f", "g", "o", "c")
                        )
                    },
                },
            )
            ctx.compare(
                got,
                expected,
                _LSTM_NAMES,
                mistakes=mistakes,
                batch=n,
                shape_of={
                    "dx": "x",
                    "dh_prev": "h_prev",
                    "dc_prev": "c_prev",
                    "dwx": "wx",
                    "dwh": "wh",
                    "db": "b",
                },
            )
