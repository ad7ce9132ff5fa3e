"""Lesson 10's graded items: correct solutions written as a student would, and classic mistakes."""

from __future__ import annotations

import torch

from coursekit import functional as F


# ---------------------------------------------------------------------------- correct
def rnn_step_backward_by_hand(dh, cache):
    x, h_prev, wx, wh, h = cache
    da = dh * (1 - h**2)
    return da @ wx.T, da @ wh.T, x.T @ da, h_prev.T @ da, da.sum(0)


def rnn_step_backward_with_coursekit(dh, cache):
    return F.rnn_step_backward(dh, cache)


def bptt_by_hand(dhs, caches):
    dh_next = torch.zeros_like(caches[0][1])
    dxs = [None] * len(caches)
    dwx, dwh, db = (torch.zeros_like(caches[0][2]), torch.zeros_like(caches[0][3]), None)
    for t in reversed(range(len(caches))):
        dx_t, dh_next, dwx_t, dwh_t, db_t = rnn_step_backward_by_hand(
            dhs[:, t] + dh_next, caches[t]
        )
        dxs[t] = dx_t
        dwx, dwh = dwx + dwx_t, dwh + dwh_t
        db = db_t if db is None else db + db_t
    return torch.stack(dxs, 1), dh_next, dwx, dwh, db


def bptt_with_coursekit(dhs, caches):
    x = torch.stack([c[0] for c in caches], 1)
    hs = torch.stack([c[4] for c in caches], 1)
    _, h0, wx, wh, _ = caches[0]
    return F.rnn_backward(dhs, (x, h0, wx, wh, hs))


def _lstm_grads(dout, cache, order="ifgo", through_h=True, sigmoid_slope=True, forget=True):
    # the LSTM step's backward by hand; the keywords switch on a classic mistake
    dh, dc = dout
    x, h_prev, c_prev, wx, wh, i, f, g, o, c = cache
    tanh_c = torch.tanh(c)
    dc_total = dc + dh * o * (1 - tanh_c**2) if through_h else dc
    slope = {"i": i * (1 - i), "f": f * (1 - f), "o": o * (1 - o)} if sigmoid_slope else {}
    d = {
        "i": dc_total * g * slope.get("i", 1.0),
        "f": dc_total * c_prev * slope.get("f", 1.0),
        "g": dc_total * i * (1 - g**2),
        "o": dh * tanh_c * slope.get("o", 1.0),
    }
    da = torch.cat([d[k] for k in order], dim=1)
    dc_prev = dc_total * f if forget else dc_total
    return da @ wx.T, da @ wh.T, dc_prev, x.T @ da, h_prev.T @ da, da.sum(0)


def lstm_step_backward_by_hand(dout, cache):
    return _lstm_grads(dout, cache)


def lstm_step_backward_with_coursekit(dout, cache):
    x, h_prev, c_prev, wx, wh, i, f, g, o, _ = cache
    # the cache has no b: recover it from the gates, a = x @ wx + h_prev @ wh + b
    a = torch.cat([torch.logit(i), torch.logit(f), torch.atanh(g), torch.logit(o)], dim=1)
    b = (a - x @ wx - h_prev @ wh).mean(0)
    _, ck_cache = F.lstm_step_forward(x, h_prev, c_prev, wx, wh, b)
    return F.lstm_step_backward(dout, ck_cache)


SOLUTIONS = {
    "10.rnn_step_backward": [rnn_step_backward_by_hand, rnn_step_backward_with_coursekit],
    "10.bptt": [bptt_by_hand, bptt_with_coursekit],
    "10.lstm_step_backward": [lstm_step_backward_by_hand, lstm_step_backward_with_coursekit],
}
SEEDS = 8  # every solution passes on seeds 0..7


# ---------------------------------------------------------------------------- mistakes
def step_no_tanh_derivative(dh, cache):
    x, h_prev, wx, wh, _ = cache
    return dh @ wx.T, dh @ wh.T, x.T @ dh, h_prev.T @ dh, dh.sum(0)


def step_db_not_summed(dh, cache):
    dx, dh_prev, dwx, dwh, _ = rnn_step_backward_by_hand(dh, cache)
    return dx, dh_prev, dwx, dwh, dh * (1 - cache[4] ** 2)


def step_dwh_transposed(dh, cache):
    dx, dh_prev, dwx, dwh, db = rnn_step_backward_by_hand(dh, cache)
    return dx, dh_prev, dwx, dwh.T, db


def step_dh_prev_no_transpose(dh, cache):
    dx, _, dwx, dwh, db = rnn_step_backward_by_hand(dh, cache)
    return dx, (dh * (1 - cache[4] ** 2)) @ cache[3], dwx, dwh, db


def step_autograd(dh, cache):
    x, h_prev, wx, wh, _ = cache
    leaves = [t.clone().requires_grad_(True) for t in (x, h_prev, wx, wh)]
    with torch.enable_grad():
        h = torch.tanh(leaves[0] @ leaves[2] + leaves[1] @ leaves[3])
        h.backward(dh)
    return (*(t.grad for t in leaves), (dh * (1 - h.detach() ** 2)).sum(0))


def bptt_no_future(dhs, caches):
    outs = [rnn_step_backward_by_hand(dhs[:, t], c) for t, c in enumerate(caches)]
    dx = torch.stack([o[0] for o in outs], 1)
    return dx, outs[0][1], *(sum(o[k] for o in outs) for k in (2, 3, 4))


def bptt_last_step_weights(dhs, caches):
    dx, dh0, _, _, _ = bptt_by_hand(dhs, caches)
    dh_last = dhs[:, -1]
    _, _, dwx, dwh, db = rnn_step_backward_by_hand(dh_last, caches[-1])
    return dx, dh0, dwx, dwh, db


def bptt_in_place(dhs, caches):
    out = bptt_by_hand(dhs, caches)
    dhs.zero_()
    return out


def lstm_no_path_through_h(dout, cache):
    return _lstm_grads(dout, cache, through_h=False)


def lstm_no_sigmoid_slope(dout, cache):
    return _lstm_grads(dout, cache, sigmoid_slope=False)


def lstm_gates_in_cs231n_order(dout, cache):
    return _lstm_grads(dout, cache, order="ifog")


def lstm_dc_prev_without_forget_gate(dout, cache):
    return _lstm_grads(dout, cache, forget=False)


MISTAKES = [
    ("10.rnn_step_backward", step_no_tanh_derivative, "tanh derivative is missing"),
    ("10.rnn_step_backward", step_db_not_summed, "summed over the batch"),
    ("10.rnn_step_backward", step_dwh_transposed, "dwh is transposed"),
    ("10.rnn_step_backward", step_dh_prev_no_transpose, "needs its transpose"),
    ("10.rnn_step_backward", step_autograd, "uses torch.autograd"),
    ("10.bptt", bptt_no_future, "gradient from later steps is missing"),
    ("10.bptt", bptt_last_step_weights, "only holds the last step"),
    ("10.bptt", bptt_in_place, "modified its input"),
    ("10.lstm_step_backward", lstm_no_path_through_h, "path from c through h is missing"),
    ("10.lstm_step_backward", lstm_no_sigmoid_slope, "sigmoid derivative"),
    ("10.lstm_step_backward", lstm_gates_in_cs231n_order, "wrong order"),
    ("10.lstm_step_backward", lstm_dc_prev_without_forget_gate, "misses the forget gate"),
]
