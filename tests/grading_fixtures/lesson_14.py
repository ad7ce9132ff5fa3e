"""Lesson 14's graded items: correct solutions written as a student would, and classic mistakes."""

from __future__ import annotations

import torch

from coursekit import functional as F


# ---------------------------------------------------------------------------- correct
def softmax_backward_by_hand(dout, p):
    return p * (dout - (dout * p).sum(-1, keepdim=True))


def softmax_backward_by_jacobian(dout, p):
    # the full Jacobian diag(p) - p p^T per row, then J^T dout
    jac = torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)
    return (jac.transpose(-2, -1) @ dout.unsqueeze(-1)).squeeze(-1)


def softmax_backward_with_coursekit(dout, p):
    return F.softmax_backward(dout, (p, p.dim() - 1))


def _weights(q, k, causal):
    s = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5
    if causal:
        s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(s, dim=-1)


def _attention(dout, cache, *, mask=True, scale_k=True, row_sum=True, dv_transposed=False):
    # attention's backward by hand; the keywords switch on a classic mistake
    q, k, v, causal = cache
    scale = q.shape[-1] ** -0.5
    p = _weights(q, k, causal and mask)
    dv = p @ dout if dv_transposed else p.transpose(-2, -1) @ dout
    dp = dout @ v.transpose(-2, -1)
    ds = p * (dp - (dp * p).sum(-1, keepdim=True)) if row_sum else p * dp
    dk = ds.transpose(-2, -1) @ q * (scale if scale_k else 1.0)
    return ds @ k * scale, dk, dv


def attention_backward_by_hand(dout, cache):
    return _attention(dout, cache)


def attention_backward_with_coursekit(dout, cache):
    _, ck_cache = F.attention_forward(*cache)
    return F.attention_backward(dout, ck_cache)


def _layernorm(dout, cache, *, unbiased=False, variance_path=True, batch_axis=False):
    x, gamma, eps = cache
    axis = 0 if batch_axis else -1
    mu = x.mean(axis, keepdim=True)
    std = torch.sqrt(x.var(axis, keepdim=True, unbiased=unbiased) + eps)
    xhat = (x - mu) / std
    g = dout * gamma
    dx = g - g.mean(axis, keepdim=True)
    if variance_path:
        # unbiased: var = sum / (D - 1), so the variance path is scaled by D / (D - 1)
        factor = x.shape[axis] / (x.shape[axis] - 1) if unbiased else 1.0
        dx = dx - xhat * (g * xhat).mean(axis, keepdim=True) * factor
    d = x.shape[-1]
    return dx / std, (dout * xhat).reshape(-1, d).sum(0), dout.reshape(-1, d).sum(0)


def layernorm_backward_by_hand(dout, cache):
    return _layernorm(dout, cache)


def layernorm_backward_with_coursekit(dout, cache):
    x, gamma, eps = cache
    _, ck_cache = F.layernorm_forward(x, gamma, torch.zeros_like(gamma), eps)
    return F.layernorm_backward(dout, ck_cache)


SOLUTIONS = {
    "14.softmax_backward": [
        softmax_backward_by_hand,
        softmax_backward_by_jacobian,
        softmax_backward_with_coursekit,
    ],
    "14.attention_backward": [attention_backward_by_hand, attention_backward_with_coursekit],
    "14.layernorm_backward": [layernorm_backward_by_hand, layernorm_backward_with_coursekit],
}
SEEDS = 8  # every solution passes on seeds 0..7


# ---------------------------------------------------------------------------- mistakes
def softmax_no_row_sum(dout, p):
    return p * dout


def softmax_diagonal_only(dout, p):
    return p * (1 - p) * dout


def softmax_sum_of_dout(dout, p):
    return p * (dout - dout.sum(-1, keepdim=True))


def softmax_sum_over_dim_0(dout, p):
    return p * (dout - (dout * p).sum(0, keepdim=True))


def softmax_autograd(dout, p):
    x = torch.log(p).clone().requires_grad_(True)
    with torch.enable_grad():
        torch.softmax(x, -1).backward(dout)
    return x.grad


def attention_no_mask(dout, cache):
    return _attention(dout, cache, mask=False)


def attention_dk_without_scale(dout, cache):
    return _attention(dout, cache, scale_k=False)


def attention_no_row_sum(dout, cache):
    return _attention(dout, cache, row_sum=False)


def attention_dv_transposed(dout, cache):
    return _attention(dout, cache, dv_transposed=True)


def attention_dk_not_transposed(dout, cache):
    dq, _, dv = _attention(dout, cache)
    q, k, v, causal = cache
    p = _weights(q, k, causal)
    dp = dout @ v.transpose(-2, -1)
    ds = p * (dp - (dp * p).sum(-1, keepdim=True))
    return dq, ds @ q / q.shape[-1] ** 0.5, dv


def attention_in_place(dout, cache):
    out = _attention(dout, cache)
    cache[0].mul_(2)
    return out


def layernorm_unbiased(dout, cache):
    return _layernorm(dout, cache, unbiased=True)


def layernorm_no_variance_path(dout, cache):
    return _layernorm(dout, cache, variance_path=False)


def layernorm_batchnorm_axis(dout, cache):
    dx, dgamma, dbeta = _layernorm(dout, cache, batch_axis=True)
    return dx, *_layernorm(dout, cache)[1:]


def layernorm_dgamma_not_summed(dout, cache):
    dx, _, dbeta = _layernorm(dout, cache)
    x, gamma, eps = cache
    xhat = (x - x.mean(-1, keepdim=True)) / torch.sqrt(
        x.var(-1, keepdim=True, unbiased=False) + eps
    )
    return dx, dout * xhat, dbeta


MISTAKES = [
    ("14.softmax_backward", softmax_no_row_sum, "row-sum term is missing"),
    ("14.softmax_backward", softmax_diagonal_only, "only the diagonal"),
    ("14.softmax_backward", softmax_sum_of_dout, "weight dout by p"),
    ("14.softmax_backward", softmax_sum_over_dim_0, "wrong dim"),
    ("14.softmax_backward", softmax_autograd, "uses torch.autograd"),
    ("14.attention_backward", attention_no_mask, "causal mask is missing"),
    ("14.attention_backward", attention_dk_without_scale, "Forgetting it in dk"),
    ("14.attention_backward", attention_no_row_sum, "row-sum term is missing"),
    ("14.attention_backward", attention_dv_transposed, "p^T @ dout"),
    ("14.attention_backward", attention_dk_not_transposed, "transpose of ds"),
    ("14.attention_backward", attention_in_place, "modified its input"),
    ("14.layernorm_backward", layernorm_unbiased, "unbiased variance"),
    ("14.layernorm_backward", layernorm_no_variance_path, "path through the variance"),
    ("14.layernorm_backward", layernorm_batchnorm_axis, "batch norm's backward"),
    ("14.layernorm_backward", layernorm_dgamma_not_summed, "one value per feature"),
]
