"""Correct solutions of every graded item, written the way a student would."""

from __future__ import annotations

import torch


def sum_of_squares_grad(x):
    return 2 * x


def central_difference(f, x, h):
    return (f(x + h) - f(x - h)) / (2 * h)


def chain_rule(x):
    return torch.exp(torch.sin(x**2)) * torch.cos(x**2) * 2 * x


def mul_backward(a, b, dout):
    return b * dout, a * dout


def pow_backward(a, n, dout):
    return n * a ** (n - 1) * dout


def exp_backward(a, dout):
    return torch.exp(a) * dout


def tanh_backward(a, dout):
    return (1 - torch.tanh(a) ** 2) * dout


def topological_order(root):
    order, visited, stack = [], set(), [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
        elif node not in visited:
            visited.add(node)
            stack.append((node, True))
            stack.extend((child, False) for child in node._prev if child not in visited)
    return order


def sigmoid_forward(x):
    e = torch.exp(-x.abs())
    out = torch.where(x >= 0, 1 / (1 + e), e / (1 + e))
    return out, out


def sigmoid_backward(dout, cache):
    s = cache
    return dout * s * (1 - s)


def tanh_forward(x):
    out = torch.tanh(x)
    return out, out


def tanh_backward_pair(dout, cache):
    return dout * (1 - cache**2)


def relu_forward(x):
    return x.clamp(min=0), x


def relu_backward(dout, cache):
    return dout * (cache > 0)


def leaky_relu_forward(x, negative_slope=0.01):
    return torch.where(x > 0, x, negative_slope * x), (x, negative_slope)


def leaky_relu_backward(dout, cache):
    x, slope = cache
    return torch.where(x > 0, dout, slope * dout)


def gd_step(w, b, x, y, lr):
    err = x @ w + b - y
    n = x.shape[0]
    dw = 2 * x.T @ err / n
    db = 2 * err.sum() / n
    return w - lr * dw, b - lr * db


def linear_backward(dout, cache):
    x, w, b = cache
    return dout @ w.T, x.T @ dout, dout.sum(dim=0)


def broadcast_backward(dout, shape):
    shape = tuple(shape)
    lead = dout.dim() - len(shape)
    dx = dout.sum(dim=tuple(range(lead))) if lead else dout
    dims = tuple(i for i, size in enumerate(shape) if size == 1 and dx.shape[i] != 1)
    return dx.sum(dim=dims, keepdim=True) if dims else dx


def grad_shapes(x_shape, w_shape):
    return tuple(x_shape), tuple(w_shape), (w_shape[1],)


def matmul_backward(dout, cache):
    x, w = cache
    return dout @ w.T, x.T @ dout


def scale_shift_backward(dout, cache):
    x, gamma = cache
    return dout * gamma, (dout * x).sum(dim=0), dout.sum(dim=0)


def max_backward(dout, cache):
    x, y = cache
    x_won = x > y
    return torch.where(x_won, dout, 0.0), torch.where(x_won, 0.0, dout)


def _log_softmax(z):
    shifted = z - z.max(dim=1, keepdim=True).values
    return shifted - shifted.exp().sum(dim=1, keepdim=True).log()


def softmax_cross_entropy_forward(logits, y):
    log_p = _log_softmax(logits)
    loss = -log_p[torch.arange(len(y)), y].mean()
    return loss, (log_p, y)


def softmax_cross_entropy_backward(dout, cache):
    log_p, y = cache
    d = log_p.exp()
    d[torch.arange(len(y)), y] -= 1
    return d * dout / len(y)


def dlogits(logits, y):
    p = _log_softmax(logits).exp()
    onehot = torch.zeros_like(p)
    onehot[torch.arange(len(y)), y] = 1
    return (p - onehot) / len(y)


def mlp_backward(params, x, y):
    z1 = x @ params["w1"] + params["b1"]
    h = z1.clamp(min=0)
    logits = h @ params["w2"] + params["b2"]
    loss, cache = softmax_cross_entropy_forward(logits, y)
    dz2 = softmax_cross_entropy_backward(1.0, cache)
    dh = dz2 @ params["w2"].T
    dz1 = dh * (z1 > 0)
    grads = {"w1": x.T @ dz1, "b1": dz1.sum(0), "w2": h.T @ dz2, "b2": dz2.sum(0)}
    return loss, grads


# item -> the functions check() takes
SOLUTIONS = {
    "00.sum_of_squares_grad": (sum_of_squares_grad,),
    "01.central_difference": (central_difference,),
    "01.chain_rule": (chain_rule,),
    "02.mul_backward": (mul_backward,),
    "02.pow_backward": (pow_backward,),
    "02.exp_backward": (exp_backward,),
    "02.tanh_backward": (tanh_backward,),
    "02.topological_order": (topological_order,),
    "03.sigmoid": (sigmoid_forward, sigmoid_backward),
    "03.tanh": (tanh_forward, tanh_backward_pair),
    "03.relu": (relu_forward, relu_backward),
    "03.leaky_relu": (leaky_relu_forward, leaky_relu_backward),
    "03.gd_step": (gd_step,),
    "04.linear_backward": (linear_backward,),
    "04.broadcast_backward": (broadcast_backward,),
    "04.grad_shapes": (grad_shapes,),
    "04.find_the_bug": (matmul_backward, scale_shift_backward, max_backward),
    "05.softmax_cross_entropy": (softmax_cross_entropy_forward, softmax_cross_entropy_backward),
    "05.dlogits": (dlogits,),
    "05.mlp_backward": (mlp_backward,),
}
