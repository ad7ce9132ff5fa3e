"""Graded items of lesson 14 (attention): softmax backward, attention backward, layer norm backward.

The references are torch.autograd through the forward passes written with torch
ops. The classic mistakes are recomputed directly: the row-sum term of the softmax
Jacobian left out (or only its diagonal kept), the 1/sqrt(d) forgotten in dq or dk,
transposed products, the causal mask forgotten when the weights are recomputed (so
masked scores get a gradient), and layer norm with the unbiased variance or with
batch norm's axis.
"""

from __future__ import annotations

import torch

from coursekit.grading.context import GradingContext
from coursekit.grading.hints import Mistake
from coursekit.grading.reference import describe_shapes
from coursekit.grading.registry import item


def _autograd(outputs_of, inputs, upstream):
    """Gradients of sum(outputs_of(*inputs) * upstream) with respect to every input."""
    leaves = [t.clone().requires_grad_(True) for t in inputs]
    with torch.enable_grad():
        out = outputs_of(*leaves)
        grads = torch.autograd.grad(out, leaves, upstream)
    return tuple(g.detach() for g in grads)


# ---------------------------------------------------------------------------- 14.softmax_backward
@item(
    "14.softmax_backward",
    points=2,
    description="dx of p = softmax(x) over the last dim, from dout and p",
    signature="fn(dout, p) -> dx, p = softmax(x, dim=-1) of any shape (..., C)",
    covers="(N, C) and (B, T, C) inputs, one class, peaked and flat rows",
)
def softmax_backward(ctx: GradingContext, fn) -> None:
    for shape, scale in [
        ((4, 5), 1.0),
        ((2, 3, 6), 2.0),
        ((3, 1), 1.0),
        ((1, 7), 5.0),
        ((5, 4), 0.1),
    ]:
        x = ctx.randn(*shape, scale=scale)
        p = torch.softmax(x, dim=-1)
        dout = ctx.randn(*shape)
        with ctx.case(describe_shapes(p=p)):
            (expected,) = _autograd(lambda x_: torch.softmax(x_, dim=-1), (x,), dout)
            mistakes = [
                Mistake(
                    p * dout,
                    "The row-sum term is missing: every p_i depends on every x_j of its row "
                    "(the Jacobian is diag(p) - p p^T), so dx = p * (dout - (dout * p).sum(-1, "
                    "keepdim=True)).",
                ),
                Mistake(
                    p * (1 - p) * dout,
                    "That keeps only the diagonal of the Jacobian, dp_i/dx_i = p_i (1 - p_i). "
                    "The off-diagonal terms -p_i p_j add up to the row-sum term: "
                    "dx = p * (dout - (dout * p).sum(-1, keepdim=True)).",
                ),
                Mistake(
                    p * (dout - dout.sum(-1, keepdim=True)),
                    "The row sum must weight dout by p: sum_i dout_i p_i, i.e. "
                    "(dout * p).sum(-1, keepdim=True), not dout.sum(-1).",
                ),
                Mistake(
                    dout - (dout * p).sum(-1, keepdim=True),
                    "The factor p in front is missing: dx = p * (dout - (dout * p).sum(-1, "
                    "keepdim=True)).",
                ),
            ]
            if shape[0] > 1:
                mistakes.append(
                    Mistake(
                        p * (dout - (dout * p).sum(0, keepdim=True)),
                        "The sum runs over the wrong dim: softmax normalizes each row over the "
                        "last dim, so sum over dim=-1 (keepdim=True).",
                    )
                )
            got = ctx.call(fn, dout, p, names=("dout", "p"))
            ctx.compare(got, expected, ("dx",), mistakes={"dx": mistakes}, shape_of={"dx": "p"})


# -------------------------------------------------------------------------- 14.attention_backward
def _weights(q, k, causal, masked=True):
    s = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5
    if causal and masked:
        above = torch.ones(s.shape[-2:], dtype=torch.bool).triu(1)
        s = s.masked_fill(above, float("-inf"))
    return torch.softmax(s, dim=-1)


def _attention_grads(dout, q, k, v, p, scale_q=True, scale_k=True, row_sum=True):
    """(dq, dk, dv) by hand, with classic mistakes switchable."""
    scale = q.shape[-1] ** -0.5
    dv = p.transpose(-2, -1) @ dout
    dp = dout @ v.transpose(-2, -1)
    ds = p * (dp - (dp * p).sum(-1, keepdim=True)) if row_sum else p * dp
    dq = ds @ k * (scale if scale_q else 1.0)
    dk = ds.transpose(-2, -1) @ q * (scale if scale_k else 1.0)
    return dq, dk, dv


@item(
    "14.attention_backward",
    points=3,
    description="dq, dk, dv of out = softmax(q k^T / sqrt(d), causal mask optional) v",
    signature=(
        "fn(dout, cache) -> (dq, dk, dv), cache = (q, k, v, causal): q (..., Tq, d), "
        "k (..., Tk, d), v (..., Tk, dv), causal a bool (query i sees keys j <= i)"
    ),
    covers="Tq = Tk and Tq != Tk, a batch and a head dim, causal masks, one token, d = 1",
    timeout=30.0,
)
def attention_backward(ctx: GradingContext, fn) -> None:
    cases = [
        ((), 4, 4, 4, 2, False),
        ((2,), 5, 5, 4, 3, True),
        ((2,), 3, 6, 4, 4, False),
        ((2, 2), 6, 6, 2, 3, True),
        ((1,), 4, 2, 5, 2, True),
        ((), 1, 1, 1, 1, True),
    ]
    for lead, tq, tk, d, dv_width, causal in cases:
        q, k = ctx.randn(*lead, tq, d), ctx.randn(*lead, tk, d)
        v, dout = ctx.randn(*lead, tk, dv_width), ctx.randn(*lead, tq, dv_width)
        mask = ", causal" if causal else ""
        with ctx.case(describe_shapes(q=q, k=k, v=v) + mask):
            expected = _autograd(
                lambda q_, k_, v_, c=causal: _weights(q_, k_, c) @ v_, (q, k, v), dout
            )
            p = _weights(q, k, causal)
            no_scale = _attention_grads(dout, q, k, v, p, scale_q=False, scale_k=False)
            no_row_sum = _attention_grads(dout, q, k, v, p, row_sum=False)
            scale_hint = (
                "the 1/sqrt(d) is missing: s = q @ k^T / sqrt(d), so both dq = ds @ k / sqrt(d) "
                "and dk = ds^T @ q / sqrt(d) carry it."
            )
            row_sum_hint = (
                "the softmax's row-sum term is missing: ds = p * (dp - (dp * p).sum(-1, "
                "keepdim=True)), not p * dp."
            )
            mistakes = {
                "dq": [
                    Mistake(no_scale[0], "dq: " + scale_hint),
                    Mistake(no_row_sum[0], row_sum_hint),
                ],
                "dk": [
                    Mistake(
                        _attention_grads(dout, q, k, v, p, scale_k=False)[1],
                        "dk: " + scale_hint + " Forgetting it in dk only is a classic slip.",
                    ),
                    Mistake(no_row_sum[1], row_sum_hint),
                ],
                "dv": [],
            }
            scale = d**-0.5
            dp = dout @ v.transpose(-2, -1)
            ds = p * (dp - (dp * p).sum(-1, keepdim=True))
            if tq == tk:
                mistakes["dv"].append(
                    Mistake(
                        p @ dout,
                        "dv is p^T @ dout (out = p @ v, so dv = p^T dout), not p @ dout.",
                    )
                )
                mistakes["dq"].append(
                    Mistake(
                        ds.transpose(-2, -1) @ k * scale,
                        "dq uses the transpose of ds where it needs ds itself: s = q k^T / sqrt(d) "
                        "gives dq = ds @ k / sqrt(d), (Tq, Tk) @ (Tk, d).",
                    )
                )
                if tk == d:
                    mistakes["dk"].append(
                        Mistake(
                            ds @ q * scale,
                            "dk needs the transpose of ds: s = q k^T / sqrt(d) gives "
                            "dk = ds^T @ q / sqrt(d).",
                        )
                    )
            if causal and tq > 1:
                p_open = _weights(q, k, causal, masked=False)
                unmasked = _attention_grads(dout, q, k, v, p_open)
                mask_hint = (
                    "the causal mask is missing when you recompute the weights: set the scores "
                    "above the diagonal to -inf before the softmax, so those weights are 0 and "
                    "no gradient flows through the masked scores."
                )
                for name, wrong in zip(("dq", "dk", "dv"), unmasked, strict=True):
                    mistakes[name].append(Mistake(wrong, mask_hint))
            got = ctx.call(
                fn,
                dout,
                (q, k, v, causal),
                names=("dout", "cache"),
                labels={
                    "cache[0]": "cache[0] (q)",
                    "cache[1]": "cache[1] (k)",
                    "cache[2]": "cache[2] (v)",
                },
            )
            ctx.compare(
                got,
                expected,
                ("dq", "dk", "dv"),
                mistakes=mistakes,
                shape_of={"dq": "q", "dk": "k", "dv": "v"},
            )


# -------------------------------------------------------------------------- 14.layernorm_backward
def _layernorm(x, gamma, beta, eps, unbiased=False):
    mu = x.mean(-1, keepdim=True)
    var = x.var(-1, keepdim=True, unbiased=unbiased)
    return gamma * (x - mu) / torch.sqrt(var + eps) + beta


@item(
    "14.layernorm_backward",
    points=3,
    description="dx, dgamma, dbeta of layer normalization over the last dim of x (..., D)",
    signature="fn(dout, cache) -> (dx, dgamma, dbeta), cache = (x, gamma, eps), gamma (D,)",
    covers="(N, D) and (B, T, D) inputs, a single row, small and large eps",
)
def layernorm_backward(ctx: GradingContext, fn) -> None:
    for shape, eps in [
        ((4, 5), 1e-5),
        ((2, 3, 6), 1e-5),
        ((1, 4), 1e-5),
        ((6, 3), 0.5),
        ((3, 2, 2), 1e-5),
    ]:
        d = shape[-1]
        x = ctx.randn(*shape, scale=2.0) + ctx.randn(*shape[:-1], 1)
        gamma, dout = ctx.uniform(d, low=0.5, high=2.0), ctx.randn(*shape)
        with ctx.case(f"{describe_shapes(x=x, gamma=gamma)}, eps = {eps:g}"):
            beta = torch.zeros(d, dtype=x.dtype)
            expected = _autograd(
                lambda x_, g_, b_, e=eps: _layernorm(x_, g_, b_, e), (x, gamma, beta), dout
            )
            std = torch.sqrt(x.var(-1, keepdim=True, unbiased=False) + eps)
            xhat = (x - x.mean(-1, keepdim=True)) / std
            g = dout * gamma
            rows = dout.reshape(-1, d)
            dx_mistakes = [
                Mistake(
                    g / std,
                    "dx = dout * gamma / std ignores the paths through the mean and the "
                    "variance: both depend on every x of the row. "
                    "dx = (g - g.mean(-1) - xhat * (g * xhat).mean(-1)) / std, g = dout * gamma.",
                ),
                Mistake(
                    (g - g.mean(-1, keepdim=True)) / std,
                    "Only the path through the mean is there; subtract "
                    "xhat * (g * xhat).mean(-1, keepdim=True) as well (the path through the "
                    "variance).",
                ),
                Mistake(
                    _autograd(
                        lambda x_, g=gamma, b=beta, e=eps: _layernorm(x_, g, b, e, unbiased=True),
                        (x,),
                        dout,
                    )[0],
                    "That is the gradient with the unbiased variance (divided by D - 1). "
                    "Layer norm uses the biased variance, mean((x - mu)**2) over the last dim.",
                ),
            ]
            if x.dim() == 2 and x.shape[0] > 1:
                bn_std = torch.sqrt(x.var(0, unbiased=False) + eps)
                bn_xhat = (x - x.mean(0)) / bn_std
                dx_mistakes.append(
                    Mistake(
                        (g - g.mean(0) - bn_xhat * (g * bn_xhat).mean(0)) / bn_std,
                        "That is batch norm's backward, with means over the batch (dim 0). "
                        "Layer norm normalizes each row: every mean runs over the last dim.",
                    )
                )
            mistakes = {
                "dx": dx_mistakes,
                "dgamma": [
                    Mistake(
                        dout * xhat,
                        "dgamma has one value per feature, (D,): gamma is shared by every row, "
                        "so sum dout * xhat over all leading dims.",
                        shape_only=True,
                    ),
                    Mistake(
                        (rows * (x - x.mean(-1, keepdim=True)).reshape(-1, d)).sum(0),
                        "dgamma multiplies dout by xhat = (x - mu) / sqrt(var + eps), "
                        "not by x - mu.",
                    ),
                ],
                "dbeta": [
                    Mistake(
                        dout,
                        "dbeta has one value per feature, (D,): sum dout over all leading dims.",
                        shape_only=True,
                    ),
                ],
            }
            got = ctx.call(
                fn,
                dout,
                (x, gamma, eps),
                names=("dout", "cache"),
                labels={"cache[0]": "cache[0] (x)", "cache[1]": "cache[1] (gamma)"},
            )
            ctx.compare(
                got,
                expected,
                ("dx", "dgamma", "dbeta"),
                mistakes=mistakes,
                shape_of={"dx": "x", "dgamma": "gamma", "dbeta": "gamma"},
            )
