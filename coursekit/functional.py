"""Forward and backward passes on torch tensors, written out by hand.

Every operation is a pair of functions::

    out, cache = F.<op>_forward(*inputs, **options)
    grads      = F.<op>_backward(dout, cache)

The forward pass returns its output and a ``cache``: whatever the backward pass
will need (some inputs, some intermediate results). The backward pass receives
``dout``, the gradient of the loss with respect to ``out`` (so it has the shape
of ``out``), and returns the gradient with respect to every tensor input, in
input order. An op with a single tensor input returns that gradient alone.
Every gradient has the shape of the thing it is the gradient of.

Losses return a 0-dim tensor averaged over the batch; their backward takes the
upstream gradient of that scalar, ``dout`` (a float or a 0-dim tensor, usually 1.0).

No autograd is used: each backward is the chain rule written out, and each
docstring derives it in a few lines. The ops are meant for plain tensors (no
requires_grad; torch.no_grad() is fine too): given tensors that require grad,
torch would record a graph that nothing uses. Every op works on float32 and
float64 tensors on any device, keeps the inputs' dtype and device, and never
modifies an input (batchnorm's running statistics, updated in train mode, are
the one exception). A wrong shape, dtype or device raises ValueError or
TypeError naming the argument and the shapes involved.

Contents, in the order a course meets them:

1. elementwise activations   relu, sigmoid, tanh, leaky_relu (and a forward-only softmax)
2. the linear layer          linear
3. losses                    mse, softmax_cross_entropy
4. regularization            dropout
5. normalization             batchnorm, layernorm
6. convolution and pooling   conv2d, maxpool2d
7. recurrence                rnn_step, rnn, lstm_step, lstm
8. look-up tables            embedding
9. attention                 softmax (with its backward), gelu, attention
10. input checks             small private helpers shared by every op
"""

from __future__ import annotations

from numbers import Real
from typing import Any

import torch
import torch.nn.functional as _torch_F
from torch import Tensor

# Whatever a forward pass hands to its backward pass; treat it as opaque.
Cache = Any

__all__ = [
    "relu_forward",
    "relu_backward",
    "sigmoid_forward",
    "sigmoid_backward",
    "tanh_forward",
    "tanh_backward",
    "leaky_relu_forward",
    "leaky_relu_backward",
    "softmax",
    "linear_forward",
    "linear_backward",
    "mse_forward",
    "mse_backward",
    "softmax_cross_entropy_forward",
    "softmax_cross_entropy_backward",
    "dropout_forward",
    "dropout_backward",
    "batchnorm_forward",
    "batchnorm_backward",
    "layernorm_forward",
    "layernorm_backward",
    "conv2d_forward",
    "conv2d_backward",
    "maxpool2d_forward",
    "maxpool2d_backward",
    "rnn_step_forward",
    "rnn_step_backward",
    "rnn_forward",
    "rnn_backward",
    "lstm_step_forward",
    "lstm_step_backward",
    "lstm_forward",
    "lstm_backward",
    "embedding_forward",
    "embedding_backward",
    "softmax_forward",
    "softmax_backward",
    "gelu_forward",
    "gelu_backward",
    "attention_forward",
    "attention_backward",
]


# ---------------------------------------------------------------------------
# 1. Elementwise activations
#
# out = f(x) element by element, so each output depends on one input only and
# the chain rule has a single term: dx = dout * f'(x).
# ---------------------------------------------------------------------------


def relu_forward(x: Tensor) -> tuple[Tensor, Cache]:
    """Rectified linear unit: out = max(x, 0).

    Backward: f'(x) = 1 where x > 0 and 0 elsewhere (0 at x == 0, as in torch),
    so dx = dout where x > 0 and 0 elsewhere. Since out > 0 exactly where x > 0,
    out is the cache.
    """
    _check_float("relu_forward", "x", x)
    out = x.clamp_min(0)
    return out, out


def relu_backward(dout: Tensor, cache: Cache) -> Tensor:
    """dx = dout where the input was positive, 0 elsewhere.

    A select, not a product: where x <= 0, dx is exactly 0 even when dout is
    inf or NaN (0 * inf would be NaN), as in torch. dout must have the forward
    output's dtype, so dx keeps it: a float64 dout for a float32 forward pass is
    an error rather than a silent rounding to float32.
    """
    op = "relu_backward"
    out = cache
    _check_dout(op, dout, out.shape)
    _check_dout_dtype(op, dout, out)
    # dx = where(out <= 0, 0, dout): a NaN input passes dout, as in torch. threshold_backward
    # is torch's kernel for exactly this select, in one pass (no mask tensor, many times
    # faster than torch.where with a scalar on the CPU); it is not autograd.
    return torch.ops.aten.threshold_backward(dout, out, 0)


def sigmoid_forward(x: Tensor) -> tuple[Tensor, Cache]:
    """Logistic sigmoid: out = s = 1 / (1 + exp(-x)).

    Computed without overflow for any x: with e = exp(-|x|), which lies in (0, 1],
    s = 1 / (1 + e) for x >= 0 and s = e / (1 + e) for x < 0 (the same function).
    Backward: ds/dx = exp(-x) / (1 + exp(-x))**2 = s * (1 - s), so
    dx = dout * s * (1 - s); the cache is s.
    """
    _check_float("sigmoid_forward", "x", x)
    e = torch.exp(-x.abs())
    s = torch.where(x >= 0, 1.0, e) / (1 + e)
    return s, s


def sigmoid_backward(dout: Tensor, cache: Cache) -> Tensor:
    """dx = dout * s * (1 - s)."""
    s = cache
    _check_dout("sigmoid_backward", dout, s.shape)
    return dout * s * (1 - s)


def tanh_forward(x: Tensor) -> tuple[Tensor, Cache]:
    """Hyperbolic tangent: out = t = tanh(x) = (e^x - e^-x) / (e^x + e^-x).

    Backward: dt/dx = 1 - tanh(x)**2 = 1 - t**2, so dx = dout * (1 - t**2);
    the derivative is a function of the output, so the cache is t.
    """
    _check_float("tanh_forward", "x", x)
    t = torch.tanh(x)
    return t, t


def tanh_backward(dout: Tensor, cache: Cache) -> Tensor:
    """dx = dout * (1 - t**2)."""
    t = cache
    _check_dout("tanh_backward", dout, t.shape)
    return dout * (1 - t * t)


def leaky_relu_forward(x: Tensor, negative_slope: float = 0.01) -> tuple[Tensor, Cache]:
    """Leaky ReLU: out = x where x > 0, negative_slope * x elsewhere.

    Backward: f'(x) = 1 where x > 0 and negative_slope elsewhere (as in torch), so
    dx = dout where x > 0 and negative_slope * dout elsewhere.
    """
    op = "leaky_relu_forward"
    _check_float(op, "x", x)
    _check_real(op, "negative_slope", negative_slope)
    positive = x > 0
    out = torch.where(positive, x, x * negative_slope)
    return out, (positive, negative_slope)


def leaky_relu_backward(dout: Tensor, cache: Cache) -> Tensor:
    """dx = dout where x > 0, negative_slope * dout elsewhere."""
    positive, negative_slope = cache
    _check_dout("leaky_relu_backward", dout, positive.shape)
    return torch.where(positive, dout, dout * negative_slope)


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """Softmax along ``dim``: exp(x) / sum(exp(x)), forward only.

    The row maximum is subtracted first; this changes nothing mathematically
    (it cancels between numerator and denominator) but keeps exp from overflowing.
    Its gradient is part of softmax_cross_entropy_backward.
    """
    _check_float("softmax", "x", x)
    e = torch.exp(x - x.amax(dim=dim, keepdim=True))
    return e / e.sum(dim=dim, keepdim=True)


# ---------------------------------------------------------------------------
# 2. The linear (fully connected) layer
# ---------------------------------------------------------------------------


def linear_forward(x: Tensor, w: Tensor, b: Tensor) -> tuple[Tensor, Cache]:
    """Affine map: out = x @ w + b, for x (N, D), w (D, H), b (H,) -> out (N, H).

    Backward: out[n, h] = sum_d x[n, d] * w[d, h] + b[h], hence
    dx = dout @ w.T (N, D); dw = x.T @ dout (D, H); db = dout.sum(0) (H,).
    b is broadcast over the batch, and the backward of a broadcast is a sum.
    """
    op = "linear_forward"
    _check_float(op, "x", x, ndim=2, layout="(N, D)")
    _check_float(op, "w", w, ndim=2, layout="(D, H)")
    _check_float(op, "b", b, ndim=1, layout="(H,)")
    _check_same_kind(op, "x", x, w=w, b=b)
    _check_dim(op, "w", w, 0, "x", x, 1)
    _check_dim(op, "b", b, 0, "w", w, 1)
    out = torch.addmm(b, x, w)  # b + x @ w in one call
    return out, (x, w)


def linear_backward(dout: Tensor, cache: Cache) -> tuple[Tensor, Tensor, Tensor]:
    """(dx, dw, db) = (dout @ w.T, x.T @ dout, dout.sum(0))."""
    x, w = cache
    _check_dout("linear_backward", dout, (x.shape[0], w.shape[1]))
    dx = dout @ w.T
    dw = x.T @ dout
    db = dout.sum(0)
    return dx, dw, db


# ---------------------------------------------------------------------------
# 3. Losses: a scalar averaged over the batch. Their backward takes the
#    upstream gradient dout of that scalar (1.0 when the loss is the output).
# ---------------------------------------------------------------------------


def mse_forward(pred: Tensor, target: Tensor) -> tuple[Tensor, Cache]:
    """Mean squared error: loss = mean((pred - target)**2) over all M elements.

    Backward: d loss / d pred = 2 * (pred - target) / M, times the upstream dout.
    target is data, not something we learn, so only dpred is returned.
    """
    op = "mse_forward"
    _check_float(op, "pred", pred)
    _check_float(op, "target", target)
    _check_same_kind(op, "pred", pred, target=target)
    if pred.shape != target.shape:
        raise ValueError(
            f"{op}: target has shape {_shape(target)} but pred has shape {_shape(pred)}; "
            "expected the same shape"
        )
    diff = pred - target
    return (diff * diff).mean(), diff


def mse_backward(dout: float | Tensor, cache: Cache) -> Tensor:
    """dpred = dout * 2 * (pred - target) / M."""
    _check_scalar_dout("mse_backward", dout)
    diff = cache
    return diff * (dout * (2.0 / diff.numel()))


def softmax_cross_entropy_forward(logits: Tensor, y: Tensor) -> tuple[Tensor, Cache]:
    """Softmax followed by cross-entropy: logits (N, C), y (N,) int64 class ids -> loss.

    With p = softmax(logits) row by row, loss = -(1/N) * sum_n log p[n, y[n]].
    log p = logits - logsumexp(logits) is computed after subtracting the row
    maximum, so it is finite for logits of any size.
    Backward: -log p[y] = logsumexp(z) - z[y] has gradient p - onehot(y) with
    respect to the row z, hence dlogits = dout * (p - onehot(y)) / N.
    """
    op = "softmax_cross_entropy_forward"
    _check_float(op, "logits", logits, ndim=2, layout="(N, C)")
    _check_index(op, "y", y, ndim=1, layout="(N,)")
    _check_same_device(op, "logits", logits, y=y)
    _check_dim(op, "y", y, 0, "logits", logits, 0)
    log_p = _log_softmax(logits)
    try:
        log_p_true = log_p.gather(1, y.unsqueeze(1))  # log p[n, y[n]], shape (N, 1)
    except (IndexError, RuntimeError) as err:
        raise ValueError(
            f"{op}: y must hold class ids in [0, {logits.shape[1]}) for logits of shape "
            f"{_shape(logits)}; {err}"
        ) from err
    return -log_p_true.mean(), (log_p, y)


def softmax_cross_entropy_backward(dout: float | Tensor, cache: Cache) -> Tensor:
    """dlogits = dout * (softmax(logits) - onehot(y)) / N, in the logits' dtype.

    dout is the scalar upstream gradient: a number or a 0-dim tensor of any
    float dtype, used as a scale (as mse_backward and torch do), so dlogits has
    the logits' dtype and device.
    """
    _check_scalar_dout("softmax_cross_entropy_backward", dout)
    log_p, y = cache
    n = log_p.shape[0]
    p_minus_onehot = log_p.exp()  # p, a fresh tensor we are free to modify
    p_minus_onehot[torch.arange(n, device=y.device), y] -= 1  # p - onehot(y)
    return p_minus_onehot * (dout / n)  # a 0-dim dout does not change the dtype


def _log_softmax(z: Tensor) -> Tensor:
    """log softmax over the last dim: z - m - log(sum(exp(z - m))), m = row max, so exp <= 1."""
    shifted = z - z.amax(dim=-1, keepdim=True)
    return shifted - shifted.exp().sum(dim=-1, keepdim=True).log()


# ---------------------------------------------------------------------------
# 4. Regularization
# ---------------------------------------------------------------------------


def dropout_forward(
    x: Tensor, p: float, train: bool = True, generator: torch.Generator | None = None
) -> tuple[Tensor, Cache]:
    """Inverted dropout: zero each element with probability p, scale the rest by 1 / (1 - p).

    The scaling keeps the expected value: E[out] = (1 - p) * x / (1 - p) = x, so
    nothing changes at evaluation time, where (train=False) and for p == 0 the op
    is the identity and returns x itself. p == 1 drops everything: out = 0.
    The mask is keep = torch.rand(x.shape, generator=generator, dtype=x.dtype,
    device=x.device) >= p, so the same generator state gives the same mask.
    Backward: out = x * m with the fixed mask m = keep / (1 - p), so dx = dout * m.
    """
    op = "dropout_forward"
    _check_float(op, "x", x)
    _check_real(op, "p", p)
    if not 0 <= p <= 1:
        raise ValueError(
            f"{op}: p, the probability of dropping an element, must be in [0, 1]; got {p}"
        )
    if generator is not None and torch.device(generator.device).type != x.device.type:
        raise ValueError(
            f"{op}: generator is on {generator.device} but x (shape {_shape(x)}) is on "
            f"{x.device}; create it with torch.Generator(device=x.device)"
        )
    if not train or p == 0:
        return x, None
    keep = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device) >= p
    mask = keep.to(x.dtype) / (1 - p) if p < 1 else torch.zeros_like(x)
    return x * mask, mask


def dropout_backward(dout: Tensor, cache: Cache) -> Tensor:
    """dx = dout * mask (dx = dout where the forward pass was the identity)."""
    mask = cache
    if mask is None:
        return dout
    _check_dout("dropout_backward", dout, mask.shape)
    return dout * mask


# ---------------------------------------------------------------------------
# 5. Normalization
#
# Both ops compute xhat = (x - mean) / std with std = sqrt(var + eps) and then
# out = gamma * xhat + beta. Because mean and var depend on x, x reaches xhat
# along three paths (directly, through mean, through var); adding them up with
# g = dout * gamma gives the compact formula
#     dx = (g - mean(g) - xhat * mean(g * xhat)) / std,
# the means being over the dimension that was normalized.
# ---------------------------------------------------------------------------


def batchnorm_forward(
    x: Tensor,
    gamma: Tensor,
    beta: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    train: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> tuple[Tensor, Cache]:
    """Batch normalization of x (N, D), each feature over the batch; gamma, beta (D,).

    Train: mean and var (biased, divide by N) of each column of x normalize it.
    The running statistics (D,) are then updated in place, as torch does:
    running = (1 - momentum) * running + momentum * batch statistic, storing the
    unbiased variance var * N / (N - 1). Either may be None (then it is not kept).
    Eval (train=False): running_mean and running_var replace the batch statistics.
    Backward: dgamma = sum_n dout * xhat; dbeta = sum_n dout; with g = dout * gamma,
    train: dx = (g - mean_n(g) - xhat * mean_n(g * xhat)) / std;
    eval: mean and var are constants, so dx = g / std.
    """
    op = "batchnorm_forward"
    _check_float(op, "x", x, ndim=2, layout="(N, D)")
    _check_feature_vector(op, "gamma", gamma, x)
    _check_feature_vector(op, "beta", beta, x)
    _check_normalization_options(op, eps, momentum)
    for name, stat in (("running_mean", running_mean), ("running_var", running_var)):
        if stat is not None:
            _check_feature_vector(op, name, stat, x)
        elif not train:
            raise ValueError(f"{op}: eval mode (train=False) needs {name}, got None")
    if train:
        n = x.shape[0]
        if n < 2:
            raise ValueError(
                f"{op}: train mode needs at least 2 rows to estimate a variance, "
                f"but x has shape {_shape(x)}"
            )
        var, mean = torch.var_mean(x, dim=0, correction=0)
        with torch.no_grad():  # bookkeeping for eval mode, never part of a graph
            if running_mean is not None:
                running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
            if running_var is not None:
                running_var.mul_(1 - momentum).add_(var, alpha=momentum * n / (n - 1))
    else:
        mean, var = running_mean, running_var
    inv_std = torch.rsqrt(var + eps)
    xhat = (x - mean) * inv_std
    out = torch.addcmul(beta, xhat, gamma)  # beta + xhat * gamma
    return out, (xhat, gamma, inv_std, train)


def batchnorm_backward(dout: Tensor, cache: Cache) -> tuple[Tensor, Tensor, Tensor]:
    """(dx, dgamma, dbeta); see batchnorm_forward for the derivation."""
    xhat, gamma, inv_std, train = cache
    _check_dout("batchnorm_backward", dout, xhat.shape)
    dgamma = (dout * xhat).sum(0)
    dbeta = dout.sum(0)
    g = dout * gamma
    if train:
        g_xhat_mean = dgamma * gamma / xhat.shape[0]  # mean_n(g * xhat), reusing dgamma
        g = g - g.mean(0) - xhat * g_xhat_mean
    return g * inv_std, dgamma, dbeta


def layernorm_forward(
    x: Tensor, gamma: Tensor, beta: Tensor, eps: float = 1e-5
) -> tuple[Tensor, Cache]:
    """Layer normalization over the last dim of x (..., D); gamma, beta (D,).

    Each vector x[..., :] is normalized by its own mean and biased variance:
    xhat = (x - mean) / std, std = sqrt(var + eps), out = gamma * xhat + beta.
    Backward: the batchnorm algebra with rows and columns swapped; g = dout * gamma,
    dx = (g - mean_D(g) - xhat * mean_D(g * xhat)) / std;
    dgamma = sum of dout * xhat and dbeta = sum of dout over every leading dim.
    """
    op = "layernorm_forward"
    _check_float(op, "x", x)
    if x.dim() == 0:
        raise ValueError(f"{op}: x must have at least 1 dim (..., D), but has shape ()")
    _check_feature_vector(op, "gamma", gamma, x)
    _check_feature_vector(op, "beta", beta, x)
    _check_normalization_options(op, eps)
    var, mean = torch.var_mean(x, dim=-1, keepdim=True, correction=0)
    inv_std = torch.rsqrt(var + eps)
    xhat = (x - mean) * inv_std
    out = torch.addcmul(beta, xhat, gamma)  # beta + xhat * gamma
    return out, (xhat, gamma, inv_std)


def layernorm_backward(dout: Tensor, cache: Cache) -> tuple[Tensor, Tensor, Tensor]:
    """(dx, dgamma, dbeta); see layernorm_forward for the derivation."""
    xhat, gamma, inv_std = cache
    _check_dout("layernorm_backward", dout, xhat.shape)
    d = xhat.shape[-1]
    dgamma = (dout * xhat).reshape(-1, d).sum(0)
    dbeta = dout.reshape(-1, d).sum(0)
    g = dout * gamma
    g_mean = g.mean(dim=-1, keepdim=True)
    g_xhat_mean = (g * xhat).mean(dim=-1, keepdim=True)
    return (g - g_mean - xhat * g_xhat_mean) * inv_std, dgamma, dbeta


# ---------------------------------------------------------------------------
# 6. Convolution and pooling
#
# A convolution is a linear map of its input (a sparse matrix M with shared
# entries), so its backward pass is the transposed map, dx = M^T dout, and
# every gradient is itself a convolution. Lesson 09 derives this and computes
# it twice by hand, with loops and with im2col; here torch's convolution
# kernels compute the three convolutions, so the hand-derived backward runs
# as fast as torch's own. Max pooling records where each window's maximum
# sits and routes dout back there.
# ---------------------------------------------------------------------------


def conv2d_forward(
    x: Tensor,
    w: Tensor,
    b: Tensor,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
) -> tuple[Tensor, Cache]:
    """2-D convolution as in torch (a cross-correlation): x (N, C, H, W), w (F, C, KH, KW),
    b (F,) -> out (N, F, Ho, Wo), Ho = (H + 2 * padding - KH) // stride + 1, same for Wo.

    With x_pad the zero-padded input and S the stride,
        out[n, f, i, j] = b[f] + sum_{c, p, q} x_pad[n, c, i*S + p, j*S + q] * w[f, c, p, q].
    Backward, by the chain rule (each sum runs over every output a variable touches):
        db[f]          = sum_{n, i, j} dout[n, f, i, j]
        dw[f, c, p, q] = sum_{n, i, j} dout[n, f, i, j] * x_pad[n, c, i*S + p, j*S + q]
                         (a correlation of x_pad with dout, summed over the batch)
        dx_pad[n, c, u, v] = sum_{f, i*S + p = u, j*S + q = v} dout[n, f, i, j] * w[f, c, p, q]
                         (every output adds dout * w back onto its window: the transposed
                         convolution, for S = 1 the full correlation of dout with the
                         flipped kernel), and dx is dx_pad without the padding.
    """
    op = "conv2d_forward"
    _check_float(op, "x", x, ndim=4, layout="(N, C, H, W)")
    _check_float(op, "w", w, ndim=4, layout="(F, C, KH, KW)")
    _check_float(op, "b", b, ndim=1, layout="(F,)")
    _check_same_kind(op, "x", x, w=w, b=b)
    _check_dim(op, "w", w, 1, "x", x, 1)
    _check_dim(op, "b", b, 0, "w", w, 0)
    stride = _pair(op, "stride", stride, minimum=1)
    padding = _pair(op, "padding", padding, minimum=0)
    _output_size(op, x, tuple(w.shape[2:]), stride, padding)  # the kernel must fit
    out = _torch_F.conv2d(x, w, b, stride=stride, padding=padding)
    return out, (x, w, stride, padding, out.shape)


def conv2d_backward(dout: Tensor, cache: Cache) -> tuple[Tensor, Tensor, Tensor]:
    """(dx, dw, db); see conv2d_forward for the derivation.

    dx is the transposed convolution of dout with w, the same as
        conv_transpose2d(dout, w, stride=S, padding=P, output_padding=unread)
    where ``unread`` counts the rows (columns) at the bottom (right) of x_pad that no
    window reads (the floor in Ho leaves up to S - 1 of them; their gradient is 0);
    dw is the correlation of x_pad with dout, torch.nn.grad.conv2d_weight(x, w.shape,
    dout, S, P); db is a sum. torch's convolution_backward kernel computes dx and dw in
    one call (the two functions above each call it for one of them): the call autograd
    makes, which shares work between the two (the unfolded input, in float64 on a CPU).
    """
    x, w, stride, padding, out_shape = cache
    _check_dout("conv2d_backward", dout, out_shape)
    dx, dw, _ = torch.ops.aten.convolution_backward(
        dout,
        x,
        w,
        None,  # no bias gradient here: db is the sum below
        stride,
        padding,
        (1, 1),  # dilation
        False,  # not a transposed convolution
        (0, 0),  # output_padding (of a transposed convolution)
        1,  # groups
        (True, True, False),  # compute dx and dw
    )
    db = dout.sum((0, 2, 3))
    return dx, dw, db


def maxpool2d_forward(
    x: Tensor,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
) -> tuple[Tensor, Cache]:
    """Max pooling over KH x KW windows of x (N, C, H, W); stride defaults to the kernel size.

    out (N, C, Ho, Wo), Ho = (H - KH) // stride + 1: the largest value of each window.
    Backward: each output is a copy of one input, its window's maximum, so
    dout is routed to where that maximum sits and is 0 elsewhere. Windows overlap
    when stride < kernel_size, and an input that is the maximum of several windows
    receives the sum of their gradients (scatter_add, never plain assignment).
    The forward pass records where each maximum sits (torch's max_pool2d returns it
    as an index into the flattened H*W plane).
    Ties: when several entries of a window share its maximum, the whole dout goes
    to one of them, the first in row-major order within the window (top row first,
    left to right), as torch does; the others get 0. A mask `window == max` would
    send dout to every tied entry and return k * dout for a k-way tie.
    """
    op = "maxpool2d_forward"
    _check_float(op, "x", x, ndim=4, layout="(N, C, H, W)")
    kernel = _pair(op, "kernel_size", kernel_size, minimum=1)
    stride = _pair(op, "stride", stride if stride is not None else kernel, minimum=1)
    _output_size(op, x, kernel, stride, (0, 0))  # the window must fit
    out, argmax = _torch_F.max_pool2d(x, kernel, stride, return_indices=True)
    return out, (argmax, x.shape)


def maxpool2d_backward(dout: Tensor, cache: Cache) -> Tensor:
    """dx: each dout added (scatter_add) onto the input that was its window's maximum."""
    argmax, (n, c, h, w) = cache
    _check_dout("maxpool2d_backward", dout, argmax.shape)
    dx = dout.new_zeros(n, c, h * w)
    dx.scatter_add_(2, argmax.reshape(n, c, -1), dout.reshape(n, c, -1))
    return dx.view(n, c, h, w)


# ---------------------------------------------------------------------------
# 7. Recurrence
# ---------------------------------------------------------------------------


def rnn_step_forward(
    x: Tensor, h_prev: Tensor, wx: Tensor, wh: Tensor, b: Tensor
) -> tuple[Tensor, Cache]:
    """One vanilla RNN step: h = tanh(a), a = x @ wx + h_prev @ wh + b.

    Shapes: x (N, D), h_prev (N, H), wx (D, H), wh (H, H), b (H,) -> h (N, H).
    Backward: da = dout * (1 - h**2) (tanh), then a is two linear layers sharing b:
    dx = da @ wx.T; dh_prev = da @ wh.T; dwx = x.T @ da; dwh = h_prev.T @ da; db = da.sum(0).
    """
    _check_rnn_inputs("rnn_step_forward", x, "h_prev", h_prev, wx, wh, b)
    a = torch.addmm(b, x, wx).addmm_(h_prev, wh)
    h = torch.tanh(a)
    return h, (x, h_prev, wx, wh, h)


def rnn_step_backward(dout: Tensor, cache: Cache) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(dx, dh_prev, dwx, dwh, db); see rnn_step_forward for the derivation."""
    x, h_prev, wx, wh, h = cache
    _check_dout("rnn_step_backward", dout, h.shape)
    da = dout * (1 - h * h)
    return da @ wx.T, da @ wh.T, x.T @ da, h_prev.T @ da, da.sum(0)


def rnn_forward(x: Tensor, h0: Tensor, wx: Tensor, wh: Tensor, b: Tensor) -> tuple[Tensor, Cache]:
    """A vanilla RNN over a whole sequence: x (N, T, D), h0 (N, H) -> hs (N, T, H).

    h_t = tanh(a_t), a_t = x_t @ wx + h_{t-1} @ wh + b, for t = 1 .. T from the initial
    state h0; x_t is x[:, t - 1] and h_t is hs[:, t - 1] (Python counts from 0).
    The input part x_t @ wx + b of every step is one big matrix product, done first.
    Backward through time: h_t is used by the output (dout[:, t - 1]) and by step t+1,
    so its gradient is dh_t = dout[:, t - 1] + da_{t+1} @ wh.T, walked from t = T down.
    Then da_t = dh_t * (1 - h_t**2); dh0 = da_1 @ wh.T; and, summing over steps,
    dx_t = da_t @ wx.T; dwx = sum_t x_t.T @ da_t; dwh = sum_t h_{t-1}.T @ da_t; db = sum da_t.
    """
    op = "rnn_forward"
    _check_rnn_inputs(op, x, "h0", h0, wx, wh, b)
    if x.shape[1] == 0:
        raise ValueError(f"{op}: x must hold at least one time step, but has shape {_shape(x)}")
    n, t_len, d = x.shape
    x_proj = torch.addmm(b, x.reshape(n * t_len, d), wx).view(n, t_len, -1)  # x_t @ wx + b
    hs = x.new_empty(n, t_len, h0.shape[1])
    h = h0
    for t in range(t_len):
        h = torch.tanh(torch.addmm(x_proj[:, t], h, wh))
        hs[:, t] = h
    return hs, (x, h0, wx, wh, hs)


def rnn_backward(dout: Tensor, cache: Cache) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(dx, dh0, dwx, dwh, db) by backpropagation through time; see rnn_forward."""
    x, h0, wx, wh, hs = cache
    _check_dout("rnn_backward", dout, hs.shape)
    n, t_len, d = x.shape
    hidden = h0.shape[1]
    da = torch.empty_like(hs)  # gradient of every pre-activation a_t
    dh_from_next = torch.zeros_like(h0)  # the last step has no step after it
    for t in reversed(range(t_len)):
        dh = dout[:, t] + dh_from_next  # from the output at t and from step t + 1
        h = hs[:, t]
        da_t = dh * (1 - h * h)
        da[:, t] = da_t
        dh_from_next = da_t @ wh.T
    dh0 = dh_from_next

    # Every weight is shared by all steps: its gradient sums over them (one product).
    da_flat = da.reshape(n * t_len, hidden)
    h_prev = torch.cat([h0.unsqueeze(1), hs[:, :-1]], dim=1)  # h_{t-1} for every t
    dx = (da_flat @ wx.T).view(n, t_len, d)
    dwx = x.reshape(n * t_len, d).T @ da_flat
    dwh = h_prev.reshape(n * t_len, hidden).T @ da_flat
    db = da_flat.sum(0)
    return dx, dh0, dwx, dwh, db


def lstm_step_forward(
    x: Tensor, h_prev: Tensor, c_prev: Tensor, wx: Tensor, wh: Tensor, b: Tensor
) -> tuple[tuple[Tensor, Tensor], Cache]:
    """One LSTM step (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000).

    a = x @ wx + h_prev @ wh + b, (N, 4H), split into four (N, H) blocks in torch's
    order i, f, g, o:
        i = sigmoid(a_i), f = sigmoid(a_f), g = tanh(a_g), o = sigmoid(a_o),
        c = f * c_prev + i * g,   h = o * tanh(c).
    Shapes: x (N, D), h_prev and c_prev (N, H), wx (D, 4H), wh (H, 4H), b (4H,);
    returns out = (h, c). ``torch.nn.LSTMCell`` with weight_ih = wx.T, weight_hh = wh.T
    and bias_ih + bias_hh = b gives the same h and c.

    Backward, from dh and dc (the gradients reaching h and c from outside the step):
        dc_total = dc + dh * o * (1 - tanh(c)**2)       (c reaches the loss directly and via h)
        do = dh * tanh(c); di = dc_total * g; dg = dc_total * i; df = dc_total * c_prev
        dc_prev = dc_total * f                          (the cell-state path: one product)
        da = [di * i(1-i), df * f(1-f), dg * (1-g**2), do * o(1-o)]   (sigmoid' = s(1-s))
    then a is two linear layers sharing b, as in rnn_step: dx = da @ wx.T,
    dh_prev = da @ wh.T, dwx = x.T @ da, dwh = h_prev.T @ da, db = da.sum(0).
    """
    op = "lstm_step_forward"
    _check_lstm_inputs(op, x, h_prev, c_prev, wx, wh, b)
    hidden = h_prev.shape[1]
    a = torch.addmm(b, x, wx).addmm_(h_prev, wh)  # (N, 4H)
    i = torch.sigmoid(a[:, :hidden])  # input gate
    f = torch.sigmoid(a[:, hidden : 2 * hidden])  # forget gate
    g = torch.tanh(a[:, 2 * hidden : 3 * hidden])  # candidate values
    o = torch.sigmoid(a[:, 3 * hidden :])  # output gate
    c = f * c_prev + i * g
    tanh_c = torch.tanh(c)
    h = o * tanh_c
    return (h, c), (x, h_prev, c_prev, wx, wh, i, f, g, o, tanh_c)


def lstm_step_backward(
    dout: tuple[Tensor | None, Tensor | None], cache: Cache
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(dx, dh_prev, dc_prev, dwx, dwh, db) from dout = (dh, dc); see lstm_step_forward.

    dh or dc may be None when nothing reaches h or c from outside (e.g. dc at the last step).
    """
    op = "lstm_step_backward"
    x, h_prev, c_prev, wx, wh, i, f, g, o, tanh_c = cache
    if not isinstance(dout, (tuple, list)) or len(dout) != 2:
        raise TypeError(
            f"{op}: dout must be the pair (dh, dc) of gradients of the outputs (h, c), "
            f"got {type(dout).__name__}"
        )
    dh, dc = dout
    for name, grad in (("dh", dh), ("dc", dc)):
        if grad is None:
            continue
        _check_tensor(op, name, grad)
        if grad.shape != i.shape:
            raise ValueError(
                f"{op}: {name} has shape {_shape(grad)} but the forward output has shape "
                f"{_shape(i)}; expected the same shape"
            )
        if grad.dtype != i.dtype or grad.device != i.device:
            raise TypeError(
                f"{op}: {name} is {grad.dtype} on {grad.device} but the forward pass ran in "
                f"{i.dtype} on {i.device}; convert {name} to match"
            )
    dc_total = torch.zeros_like(c_prev) if dc is None else dc
    if dh is not None:
        dc_total = dc_total + dh * o * (1 - tanh_c * tanh_c)
        da_o = dh * tanh_c * o * (1 - o)
    else:
        da_o = torch.zeros_like(o)
    da = torch.cat(
        [
            dc_total * g * i * (1 - i),  # through i = sigmoid(a_i)
            dc_total * c_prev * f * (1 - f),  # through f = sigmoid(a_f)
            dc_total * i * (1 - g * g),  # through g = tanh(a_g)
            da_o,  # through o = sigmoid(a_o)
        ],
        dim=1,
    )
    dc_prev = dc_total * f
    return da @ wx.T, da @ wh.T, dc_prev, x.T @ da, h_prev.T @ da, da.sum(0)


def lstm_forward(
    x: Tensor, h0: Tensor, c0: Tensor, wx: Tensor, wh: Tensor, b: Tensor
) -> tuple[Tensor, Cache]:
    """An LSTM over a whole sequence: x (N, T, D), h0 and c0 (N, H) -> hs (N, T, H).

    Step t = 1 .. T is lstm_step_forward(x_t, h_{t-1}, c_{t-1}, wx, wh, b), the initial
    state being (h0, c0). As in rnn_forward, the input part x_t @ wx + b of every step is
    one matrix product, done first. The last cell state c_T is ``cache[-1][:, -1]``.
    Backward through time: h_t gets dout[:, t - 1] plus dh_prev from step t+1, c_t gets
    dc_prev from step t+1 (nothing from outside); each step is lstm_step_backward, with
    the gates' slopes computed for all steps at once, and the weight gradients are
    summed over the steps in one product each.
    """
    op = "lstm_forward"
    _check_float(op, "x", x, ndim=3, layout="(N, T, D)")
    if x.shape[1] == 0:
        raise ValueError(f"{op}: x must hold at least one time step, but has shape {_shape(x)}")
    _check_lstm_inputs(op, x[:, 0], h0, c0, wx, wh, b, names=("h0", "c0"))
    n, t_len, d = x.shape
    hidden = h0.shape[1]
    x_proj = torch.addmm(b, x.reshape(n * t_len, d), wx).view(n, t_len, 4 * hidden)
    h, c = h0, c0
    sigmoids, gs, cs, hs = [], [], [c0], []
    for t in range(t_len):
        a = torch.addmm(x_proj[:, t], h, wh)
        s = torch.sigmoid(a)  # i, f and o are its blocks 0, 1, 3
        g = torch.tanh(a[:, 2 * hidden : 3 * hidden])
        c = torch.addcmul(s[:, hidden : 2 * hidden] * c, s[:, :hidden], g)  # f c + i g
        h = s[:, 3 * hidden :] * torch.tanh(c)
        sigmoids.append(s)
        gs.append(g)
        cs.append(c)
        hs.append(h)
    hs = torch.stack(hs, dim=1)
    gates = torch.stack(sigmoids, dim=1)  # (N, T, 4H); block g holds sigmoid(a_g), unused
    gates[:, :, 2 * hidden : 3 * hidden] = torch.stack(gs, dim=1)
    cs = torch.stack(cs, dim=1)  # c_0 .. c_T, (N, T + 1, H)
    return hs, (x, h0, wx, wh, hs, gates, cs)


def lstm_backward(
    dout: Tensor, cache: Cache
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(dx, dh0, dc0, dwx, dwh, db) by backpropagation through time; see lstm_forward."""
    x, h0, wx, wh, hs, gates, cs = cache
    _check_dout("lstm_backward", dout, hs.shape)
    n, t_len, d = x.shape
    hidden = h0.shape[1]
    i, f, g, o = gates.split(hidden, dim=2)  # (N, T, H) each
    c_prev, tanh_c = cs[:, :-1], torch.tanh(cs[:, 1:])
    # what multiplies dc_total_t in da_i, da_f, da_g, and dh_t in da_o and dc_total_t
    via_c = torch.cat([g * i * (1 - i), c_prev * f * (1 - f), i * (1 - g * g)], dim=2)
    via_h_o = tanh_c * o * (1 - o)
    via_h_c = o * (1 - tanh_c * tanh_c)
    da = torch.empty_like(gates)
    dh_next = torch.zeros_like(h0)
    dc_next = torch.zeros_like(h0)
    for t in reversed(range(t_len)):
        dh = dout[:, t] + dh_next  # from the output at t and from step t + 1
        dc_total = torch.addcmul(dc_next, dh, via_h_c[:, t])
        da[:, t, : 3 * hidden] = dc_total.repeat(1, 3) * via_c[:, t]  # da_i, da_f, da_g
        da[:, t, 3 * hidden :] = dh * via_h_o[:, t]  # da_o
        dh_next = da[:, t] @ wh.T
        dc_next = dc_total * f[:, t]
    da_flat = da.reshape(n * t_len, 4 * hidden)
    h_prev = torch.cat([h0.unsqueeze(1), hs[:, :-1]], dim=1)  # h_{t-1} for every t
    dx = (da_flat @ wx.T).view(n, t_len, d)
    dwx = x.reshape(n * t_len, d).T @ da_flat
    dwh = h_prev.reshape(n * t_len, hidden).T @ da_flat
    return dx, dh_next, dc_next, dwx, dwh, da_flat.sum(0)


def _check_lstm_inputs(
    op: str,
    x: Tensor,
    h_prev: Tensor,
    c_prev: Tensor,
    wx: Tensor,
    wh: Tensor,
    b: Tensor,
    names: tuple[str, str] = ("h_prev", "c_prev"),
) -> None:
    """LSTM shapes: x (N, D), h_prev and c_prev (N, H), wx (D, 4H), wh (H, 4H), b (4H,)."""
    h_name, c_name = names
    _check_float(op, "x", x, ndim=2, layout="(N, D)")
    _check_float(op, h_name, h_prev, ndim=2, layout="(N, H)")
    _check_float(op, c_name, c_prev, ndim=2, layout="(N, H)")
    _check_float(op, "wx", wx, ndim=2, layout="(D, 4H)")
    _check_float(op, "wh", wh, ndim=2, layout="(H, 4H)")
    _check_float(op, "b", b, ndim=1, layout="(4H,)")
    _check_same_kind(op, "x", x, **{h_name: h_prev, c_name: c_prev}, wx=wx, wh=wh, b=b)
    _check_dim(op, h_name, h_prev, 0, "x", x, 0)
    if c_prev.shape != h_prev.shape:
        raise ValueError(
            f"{op}: {c_name} has shape {_shape(c_prev)} but {h_name} has shape "
            f"{_shape(h_prev)}; expected the same shape (N, H)"
        )
    hidden = h_prev.shape[1]
    _check_dim(op, "wx", wx, 0, "x", x, -1)
    for name, t in (("wx", wx), ("wh", wh), ("b", b)):
        if t.shape[-1] != 4 * hidden:
            raise ValueError(
                f"{op}: {name} has shape {_shape(t)} but {h_name} has shape {_shape(h_prev)}; "
                f"expected {name}.shape[-1] == 4 * H = {4 * hidden} (gates i, f, g, o)"
            )
    _check_dim(op, "wh", wh, 0, h_name, h_prev, 1)


# ---------------------------------------------------------------------------
# 8. Look-up tables
# ---------------------------------------------------------------------------


def embedding_forward(idx: Tensor, w: Tensor) -> tuple[Tensor, Cache]:
    """Row look-up: out[...] = w[idx[...]], idx int64 of any shape, w (V, E) -> idx.shape + (E,).

    Backward: each output row is a copy of one row of w, so row v of dw adds up
    dout at every position where idx == v: dw = zeros(V, E), then dw[idx[i]] += dout[i]
    (index_add_, so an index used twice gets both contributions). idx gets no gradient.
    """
    op = "embedding_forward"
    _check_index(op, "idx", idx)
    _check_float(op, "w", w, ndim=2, layout="(V, E)")
    _check_same_device(op, "w", w, idx=idx)
    flat = idx.reshape(-1)
    try:
        rows = w.index_select(0, flat)
    except (IndexError, RuntimeError) as err:
        raise ValueError(
            f"{op}: idx must hold row numbers in [0, {w.shape[0]}) for w of shape "
            f"{_shape(w)}; {err}"
        ) from err
    return rows.view(*idx.shape, w.shape[1]), (flat, idx.shape, w.shape)


def embedding_backward(dout: Tensor, cache: Cache) -> Tensor:
    """dw = zeros(V, E) with dout's rows added (index_add_) at the rows idx picked."""
    flat, idx_shape, (vocab, dim) = cache
    _check_dout("embedding_backward", dout, (*idx_shape, dim))
    return dout.new_zeros(vocab, dim).index_add_(0, flat, dout.reshape(-1, dim))


# ---------------------------------------------------------------------------
# 9. Attention (lesson 14)
#
# softmax with its own backward, GELU, and scaled dot-product attention: the
# three new pieces of a transformer (layer norm is in section 5). The softmax
# Jacobian diag(p) - p p^T is never built; the row-sum shortcut applies it.
# ---------------------------------------------------------------------------


def softmax_forward(x: Tensor, dim: int = -1) -> tuple[Tensor, Cache]:
    """p = exp(x) / sum(exp(x)) along ``dim``, stably (the maximum is subtracted first).

    Backward: the Jacobian of one softmax vector is dp_i/dx_j = p_i (delta_ij - p_j),
    i.e. diag(p) - p p^T, and it is symmetric, so
    dx_j = sum_i dout_i p_i (delta_ij - p_j) = p_j (dout_j - sum_i dout_i p_i):
    dx = p * (dout - rowsum(dout * p)), never forming the (n, n) matrix. The cache is p.
    """
    op = "softmax_forward"
    _check_float(op, "x", x)
    dim = _check_axis(op, "dim", dim, x)
    p = softmax(x, dim)
    return p, (p, dim)


def softmax_backward(dout: Tensor, cache: Cache) -> Tensor:
    """dx = p * (dout - sum(dout * p, dim)); see softmax_forward."""
    p, dim = cache
    _check_dout("softmax_backward", dout, p.shape)
    return p * (dout - (dout * p).sum(dim=dim, keepdim=True))


def _check_axis(op: str, name: str, dim: Any, x: Tensor) -> int:
    """dim is an int naming a dim of x (negative counts from the end); returned >= 0."""
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"{op}: {name} must be an int, got {dim!r}")
    if not -x.dim() <= dim < max(x.dim(), 1) or x.dim() == 0:
        raise ValueError(
            f"{op}: {name}={dim} is out of range for x of shape {_shape(x)} "
            f"(it needs at least 1 dim; {name} in [-{x.dim()}, {x.dim()}))"
        )
    return dim % x.dim()


_SQRT_2 = 2.0**0.5
_SQRT_2_OVER_PI = (2.0 / torch.pi) ** 0.5
_INV_SQRT_2PI = (2.0 * torch.pi) ** -0.5
_GELU_CUBIC = 0.044715


def gelu_forward(x: Tensor, approximate: str = "none") -> tuple[Tensor, Cache]:
    """Gaussian error linear unit (Hendrycks and Gimpel, 2016), as torch.nn.functional.gelu.

    "none":  out = x Phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2, the normal CDF.
             d out/dx = Phi(x) + x phi(x), phi(x) = exp(-x^2 / 2) / sqrt(2 pi).
    "tanh":  out = x (1 + tanh(u)) / 2, u = sqrt(2/pi) (x + 0.044715 x^3) (GPT-2's form).
             d out/dx = (1 + t) / 2 + x (1 - t^2) / 2 * du/dx, t = tanh(u),
             du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2).
    dx = dout * d out/dx; the cache is x with Phi(x) (or t).
    """
    op = "gelu_forward"
    _check_float(op, "x", x)
    if approximate == "none":
        s = 0.5 * (1.0 + torch.erf(x / _SQRT_2))  # Phi(x)
    elif approximate == "tanh":
        s = torch.tanh(_SQRT_2_OVER_PI * (x + _GELU_CUBIC * x**3))  # t
    else:
        raise ValueError(f'{op}: approximate must be "none" or "tanh", got {approximate!r}')
    out = x * s if approximate == "none" else 0.5 * x * (1.0 + s)
    return out, (x, approximate, s)


def gelu_backward(dout: Tensor, cache: Cache) -> Tensor:
    """dx = dout * gelu'(x); see gelu_forward for both derivatives."""
    x, approximate, s = cache
    _check_dout("gelu_backward", dout, x.shape)
    if approximate == "none":
        pdf = torch.exp(-0.5 * x * x) * _INV_SQRT_2PI
        return dout * (s + x * pdf)  # s = Phi(x)
    t = s
    du_dx = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_CUBIC * x * x)
    return dout * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du_dx)


def attention_forward(
    q: Tensor, k: Tensor, v: Tensor, causal: bool = False
) -> tuple[Tensor, Cache]:
    """Scaled dot-product attention (Vaswani et al., 2017): out = softmax(q k^T / sqrt(d)) v.

    q (..., Tq, d), k (..., Tk, d), v (..., Tk, dv) -> out (..., Tq, dv); the leading
    (batch, head) dims of the three must be equal. With ``causal``, query i sees the
    keys j <= i only (as torch's scaled_dot_product_attention(is_causal=True)): the
    scores above the diagonal are set to -inf, so their weights are exactly 0.
    With s = q k^T / sqrt(d), p = softmax(s) over the keys, out = p v, backward is
    the chain rule through the three steps:
        dv = p^T dout,   dp = dout v^T,   ds = p * (dp - rowsum(dp * p))  (softmax_backward),
        dq = ds k / sqrt(d),   dk = ds^T q / sqrt(d).
    A masked entry has p = 0, hence ds = 0: no gradient flows through it. The cache
    keeps p, (..., Tq, Tk): memory that grows with T^2.
    """
    op = "attention_forward"
    _check_float(op, "q", q)
    _check_float(op, "k", k)
    _check_float(op, "v", v)
    _check_same_kind(op, "q", q, k=k, v=v)
    for name, t, layout in (
        ("q", q, "(..., Tq, d)"),
        ("k", k, "(..., Tk, d)"),
        ("v", v, "(..., Tk, dv)"),
    ):
        if t.dim() < 2:
            raise ValueError(
                f"{op}: {name} must be {layout} with at least 2 dims, but has shape {_shape(t)}"
            )
    if not (q.shape[:-2] == k.shape[:-2] == v.shape[:-2]):
        raise ValueError(
            f"{op}: q, k and v must have the same leading (batch, head) dims; got q {_shape(q)}, "
            f"k {_shape(k)}, v {_shape(v)}"
        )
    if k.shape[-1] != q.shape[-1]:
        raise ValueError(
            f"{op}: q (..., Tq, d) and k (..., Tk, d) need the same d; "
            f"got q {_shape(q)}, k {_shape(k)}"
        )
    if v.shape[-2] != k.shape[-2]:
        raise ValueError(
            f"{op}: k (..., Tk, d) and v (..., Tk, dv) need the same Tk; "
            f"got k {_shape(k)}, v {_shape(v)}"
        )
    if not isinstance(causal, bool):
        raise TypeError(f"{op}: causal must be True or False, got {causal!r}")
    scale = q.shape[-1] ** -0.5
    s = (q @ k.transpose(-2, -1)) * scale  # (..., Tq, Tk)
    if causal:
        above = torch.ones(s.shape[-2:], dtype=torch.bool, device=s.device).triu(1)
        s = s.masked_fill(above, float("-inf"))  # every row keeps key 0, so no row is all -inf
    p = torch.softmax(s, dim=-1)  # torch's fused kernel: the same stable formula, one pass
    return p @ v, (q, k, v, p, scale)


def attention_backward(dout: Tensor, cache: Cache) -> tuple[Tensor, Tensor, Tensor]:
    """(dq, dk, dv); see attention_forward for the derivation."""
    q, k, v, p, scale = cache
    _check_dout("attention_backward", dout, (*p.shape[:-1], v.shape[-1]))
    dv = p.transpose(-2, -1) @ dout  # (..., Tk, dv)
    dp = dout @ v.transpose(-2, -1)  # (..., Tq, Tk)
    ds = p * (dp - (dp * p).sum(dim=-1, keepdim=True)) * scale  # the 1/sqrt(d) of s, once
    return ds @ k, ds.transpose(-2, -1) @ q, dv


# ---------------------------------------------------------------------------
# 10. Input checks
#
# Each raises TypeError (not a tensor, wrong dtype) or ValueError (wrong shape
# or device) with a message that starts with the op's name and names the
# argument and the shapes. They only look at metadata, so they cost next to
# nothing and never wait for a GPU.
# ---------------------------------------------------------------------------


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def _check_tensor(op: str, name: str, t: Any) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")


def _check_ndim(op: str, name: str, t: Tensor, ndim: int | None, layout: str) -> None:
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{op}: {name} must be {ndim}-D {layout} but has shape {_shape(t)}")


def _check_float(op: str, name: str, t: Any, ndim: int | None = None, layout: str = "") -> None:
    """t is a floating-point tensor (float32, float64, ...) with ndim dims."""
    _check_tensor(op, name, t)
    if not t.is_floating_point():
        raise TypeError(
            f"{op}: {name} must be a floating-point tensor (e.g. float32 or float64), "
            f"got {t.dtype} with shape {_shape(t)}"
        )
    _check_ndim(op, name, t, ndim, layout)


def _check_index(op: str, name: str, t: Any, ndim: int | None = None, layout: str = "") -> None:
    """t is an int64 (torch.long) tensor of indices with ndim dims."""
    _check_tensor(op, name, t)
    if t.dtype != torch.int64:
        raise TypeError(
            f"{op}: {name} must be an int64 (torch.long) tensor of indices, "
            f"got {t.dtype} with shape {_shape(t)}"
        )
    _check_ndim(op, name, t, ndim, layout)


def _check_same_device(op: str, ref_name: str, ref: Tensor, **others: Tensor) -> None:
    for name, t in others.items():
        if t.device != ref.device:
            raise ValueError(
                f"{op}: {name} (shape {_shape(t)}) is on {t.device} but {ref_name} "
                f"(shape {_shape(ref)}) is on {ref.device}; move them to one device"
            )


def _check_same_kind(op: str, ref_name: str, ref: Tensor, **others: Tensor) -> None:
    """Every tensor in others has ref's device and dtype."""
    _check_same_device(op, ref_name, ref, **others)
    for name, t in others.items():
        if t.dtype != ref.dtype:
            raise TypeError(
                f"{op}: {name} (shape {_shape(t)}) has dtype {t.dtype} but {ref_name} "
                f"(shape {_shape(ref)}) has dtype {ref.dtype}; convert them to one dtype"
            )


def _check_dim(
    op: str, name: str, t: Tensor, axis: int, ref_name: str, ref: Tensor, ref_axis: int
) -> None:
    """t.shape[axis] == ref.shape[ref_axis]."""
    if t.shape[axis] != ref.shape[ref_axis]:
        raise ValueError(
            f"{op}: {name} has shape {_shape(t)} but {ref_name} has shape {_shape(ref)}; "
            f"expected {name}.shape[{axis}] == {ref.shape[ref_axis]}"
        )


def _check_feature_vector(op: str, name: str, t: Any, x: Tensor) -> None:
    """t is a (D,) vector, D = x.shape[-1], with x's dtype and device."""
    _check_float(op, name, t)
    if t.shape != x.shape[-1:]:
        raise ValueError(
            f"{op}: {name} has shape {_shape(t)} but x has shape {_shape(x)}; "
            f"expected {name}.shape == ({x.shape[-1]},)"
        )
    _check_same_kind(op, "x", x, **{name: t})


def _check_rnn_inputs(
    op: str, x: Tensor, h_name: str, h: Tensor, wx: Tensor, wh: Tensor, b: Tensor
) -> None:
    """RNN shapes: x (N, D) for one step or (N, T, D), h (N, H), wx (D, H), wh (H, H), b (H,)."""
    layout = "(N, D)" if h_name == "h_prev" else "(N, T, D)"
    _check_float(op, "x", x, ndim=layout.count(",") + 1, layout=layout)
    _check_float(op, h_name, h, ndim=2, layout="(N, H)")
    _check_float(op, "wx", wx, ndim=2, layout="(D, H)")
    _check_float(op, "wh", wh, ndim=2, layout="(H, H)")
    _check_float(op, "b", b, ndim=1, layout="(H,)")
    _check_same_kind(op, "x", x, **{h_name: h}, wx=wx, wh=wh, b=b)
    _check_dim(op, h_name, h, 0, "x", x, 0)
    _check_dim(op, "wx", wx, 0, "x", x, -1)
    _check_dim(op, "wx", wx, 1, h_name, h, 1)
    _check_dim(op, "wh", wh, 0, h_name, h, 1)
    _check_dim(op, "wh", wh, 1, h_name, h, 1)
    _check_dim(op, "b", b, 0, h_name, h, 1)


def _check_dout(op: str, dout: Any, shape: tuple[int, ...] | torch.Size) -> None:
    """dout is a tensor with the forward output's shape."""
    _check_tensor(op, "dout", dout)
    if dout.shape != shape:
        raise ValueError(
            f"{op}: dout has shape {_shape(dout)} but the forward output has shape "
            f"{tuple(shape)}; expected the same shape"
        )


def _check_dout_dtype(op: str, dout: Tensor, out: Tensor) -> None:
    """dout has the forward output's dtype (so the gradient keeps it)."""
    if dout.dtype != out.dtype:
        raise TypeError(
            f"{op}: dout has dtype {dout.dtype} but the forward output (shape {_shape(out)}) "
            f"has dtype {out.dtype}; pass dout in the forward pass's dtype"
        )


def _check_normalization_options(op: str, eps: Any, momentum: Any = None) -> None:
    """eps > 0 keeps sqrt(var + eps) away from 0; momentum is a weight in [0, 1]."""
    _check_real(op, "eps", eps)
    if not eps > 0:
        raise ValueError(
            f"{op}: eps must be > 0 (it keeps sqrt(var + eps) away from 0 for a constant "
            f"feature); got {eps}"
        )
    if momentum is not None:
        _check_real(op, "momentum", momentum)
        if not 0 <= momentum <= 1:
            raise ValueError(
                f"{op}: momentum, the weight of the batch statistic in the running "
                f"average, must be in [0, 1]; got {momentum}"
            )


def _check_scalar_dout(op: str, dout: Any) -> None:
    """dout of a loss is a number or a 0-dim tensor."""
    if isinstance(dout, Tensor):
        if dout.dim() != 0:
            raise ValueError(
                f"{op}: dout of a scalar loss must be a number or a 0-dim tensor, "
                f"got a tensor of shape {_shape(dout)}"
            )
    elif not isinstance(dout, Real) or isinstance(dout, bool):
        raise TypeError(f"{op}: dout must be a number or a 0-dim tensor, got {type(dout).__name__}")


def _check_real(op: str, name: str, value: Any) -> None:
    if not isinstance(value, Real) or isinstance(value, bool):
        raise TypeError(f"{op}: {name} must be a real number, got {value!r}")


def _pair(op: str, name: str, value: Any, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints (height, width), each >= minimum, as a pair."""
    pair = (value, value) if isinstance(value, int) else value
    if not (
        isinstance(pair, (tuple, list))
        and len(pair) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in pair)
    ):
        raise ValueError(f"{op}: {name} must be an int >= {minimum} or two of them, got {value!r}")
    return pair[0], pair[1]


def _output_size(
    op: str,
    x: Tensor,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> tuple[int, int]:
    """Output height and width of a sliding window; the window must fit the padded input."""
    h, w = x.shape[-2] + 2 * padding[0], x.shape[-1] + 2 * padding[1]
    if kernel[0] > h or kernel[1] > w:
        raise ValueError(
            f"{op}: the kernel {kernel} is larger than the (padded) input {(h, w)}; "
            f"x has shape {_shape(x)}, padding {padding}"
        )
    return (h - kernel[0]) // stride[0] + 1, (w - kernel[1]) // stride[1] + 1
