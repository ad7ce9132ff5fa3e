"""Classic wrong answers, one or more per graded item, and the hint each must get.

Each entry: (item, functions, words the feedback must contain). The words name
the mistake, so a test fails if the grader stops recognising it.
"""

from __future__ import annotations

import torch

from tests.grading_fixtures import correct as ok


# ------------------------------------------------------------------------ 00, 01
def forgot_two(x):
    return x


def returned_the_sum(x):
    return (x**2).sum()


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


# ------------------------------------------------------------------------ 02
def mul_swapped(a, b, dout):
    return a * dout, b * dout


def mul_without_dout(a, b, dout):
    return b, a


def mul_float32_tensors(a, b, dout):
    return torch.tensor(b * dout), torch.tensor(a * dout)  # float32 when a, b are floats


def pow_exponent_n(a, n, dout):
    return n * a**n * dout


def exp_without_dout(a, dout):
    return torch.exp(a)


def tanh_of_input(a, dout):
    return (1 - a**2) * dout


def topo_recursive(root):
    order, visited = [], set()

    def visit(node):
        if node not in visited:
            visited.add(node)
            for child in node._prev:
                visit(child)
            order.append(node)

    visit(root)
    return order


def topo_no_visited_set(root):
    order, stack = [], [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
        else:
            stack.append((node, True))
            stack.extend((child, False) for child in node._prev)
    return order


def topo_preorder(root):
    order, visited, stack = [], set(), [root]
    while stack:
        node = stack.pop()
        if node not in visited:
            visited.add(node)
            order.append(node)
            stack.extend(node._prev)
    return order


def topo_first_input_only(root):
    order, node = [], root
    while True:
        order.append(node)
        if not node._prev:
            return order[::-1]
        node = node._prev[0]


# ------------------------------------------------------------------------ 03
def sigmoid_naive_forward(x):
    out = torch.exp(x) / (1 + torch.exp(x))
    return out, out


def sigmoid_backward_at_x(dout, cache):
    x = cache
    return dout * x * (1 - x)


def sigmoid_forward_keep_x(x):
    return torch.sigmoid(x), x


def tanh_backward_at_x(dout, cache):
    x = cache
    return dout * (1 - x**2)


def tanh_forward_keep_x(x):
    return torch.tanh(x), x


def relu_backward_unchanged(dout, cache):
    return dout


def relu_backward_in_place(dout, cache):
    dout[cache <= 0] = 0
    return dout


def leaky_backward_like_relu(dout, cache):
    x, _ = cache
    return dout * (x > 0)


def leaky_forward_fixed_slope(x, negative_slope=0.01):
    return torch.where(x > 0, x, 0.01 * x), (x, negative_slope)


def gd_uphill(w, b, x, y, lr):
    w_new, b_new = ok.gd_step(w, b, x, y, lr)
    return 2 * w - w_new, 2 * b - b_new


def gd_without_two(w, b, x, y, lr):
    err = x @ w + b - y
    n = x.shape[0]
    return w - lr * (x.T @ err / n), b - lr * (err.sum() / n)


def gd_in_place(w, b, x, y, lr):
    w_new, b_new = ok.gd_step(w, b, x, y, lr)
    w -= w - w_new
    return w, b_new


# ------------------------------------------------------------------------ 04
def linear_db_not_summed(dout, cache):
    x, w, b = cache
    return dout @ w.T, x.T @ dout, dout


def linear_dx_no_transpose(dout, cache):
    x, w, b = cache
    return dout @ w, x.T @ dout, dout.sum(0)


def linear_dw_transposed(dout, cache):
    x, w, b = cache
    return dout @ w.T, dout.T @ x, dout.sum(0)


def linear_dw_mean(dout, cache):
    x, w, b = cache
    return dout @ w.T, x.T @ dout / x.shape[0], dout.sum(0)


def linear_db_mean(dout, cache):
    x, w, b = cache
    return dout @ w.T, x.T @ dout, dout.mean(0)


def linear_dx_sign(dout, cache):
    x, w, b = cache
    return -(dout @ w.T), x.T @ dout, dout.sum(0)


def broadcast_unchanged(dout, shape):
    return dout


def broadcast_squeezed(dout, shape):
    dx = ok.broadcast_backward(dout, shape)
    return dx.squeeze() if dx.dim() else dx


def broadcast_mean(dout, shape):
    dx = ok.broadcast_backward(dout, shape)
    return dx * (dx.numel() / dout.numel())


def shapes_dw_transposed(x_shape, w_shape):
    return tuple(x_shape), (w_shape[1], w_shape[0]), (w_shape[1],)


def shapes_db_like_out(x_shape, w_shape):
    return tuple(x_shape), tuple(w_shape), (x_shape[0], w_shape[1])


def shapes_db_int(x_shape, w_shape):
    return tuple(x_shape), tuple(w_shape), w_shape[1]


# ------------------------------------------------------------------------ 05
def ce_backward_without_n(dout, cache):
    return ok.softmax_cross_entropy_backward(dout, cache) * len(cache[1])


def ce_forward_naive(logits, y):
    p = torch.exp(logits) / torch.exp(logits).sum(dim=1, keepdim=True)
    return -torch.log(p[torch.arange(len(y)), y]).mean(), (torch.log(p), y)


def ce_backward_no_onehot(dout, cache):
    log_p, y = cache
    return log_p.exp() * dout / len(y)


def ce_forward_sum(logits, y):
    loss, cache = ok.softmax_cross_entropy_forward(logits, y)
    return loss * len(y), cache


def ce_backward_ignores_dout(dout, cache):
    return ok.softmax_cross_entropy_backward(1.0, cache)


def dlogits_without_n(logits, y):
    return ok.dlogits(logits, y) * len(y)


def dlogits_sign(logits, y):
    return -ok.dlogits(logits, y)


def dlogits_softmax_over_batch(logits, y):
    p = torch.softmax(logits, dim=0)
    onehot = torch.nn.functional.one_hot(y, logits.shape[1]).to(p.dtype)
    return (p - onehot) / len(y)


def _mlp(params, x, y, *, mask=True, mean=True, sum_bias=True, transpose=True):
    z1 = x @ params["w1"] + params["b1"]
    h = z1.clamp(min=0)
    loss, cache = ok.softmax_cross_entropy_forward(h @ params["w2"] + params["b2"], y)
    dz2 = ok.softmax_cross_entropy_backward(1.0, cache) * (1 if mean else len(y))
    dh = dz2 @ (params["w2"].T if transpose else params["w2"])
    dz1 = dh * (z1 > 0) if mask else dh
    reduce = (lambda t: t.sum(0)) if sum_bias else (lambda t: t)
    grads = {"w1": x.T @ dz1, "b1": reduce(dz1), "w2": h.T @ dz2, "b2": reduce(dz2)}
    return loss, grads


def mlp_no_relu_derivative(params, x, y):
    return _mlp(params, x, y, mask=False)


def mlp_sum_not_mean(params, x, y):
    return _mlp(params, x, y, mean=False)


def mlp_bias_not_summed(params, x, y):
    return _mlp(params, x, y, sum_bias=False)


def mlp_no_transpose(params, x, y):
    return _mlp(params, x, y, transpose=False)


# The three broken backward passes of lesson 04's debugging lab, each left unrepaired.
def matmul_backward_as_given(dout, cache):
    x, w = cache
    return dout @ w, x.T @ dout  # the transpose of w is missing: runs only when w is square


def scale_shift_backward_as_given(dout, cache):
    x, gamma = cache
    return dout * gamma, (dout * x).sum(dim=0), dout  # dbeta not summed over the batch


def max_backward_as_given(dout, cache):
    x, y = cache
    dx = dout  # not a copy
    dx[x < y] = 0  # in place: zeroes entries of dout itself
    dy = dout
    dy[x >= y] = 0
    return dx, dy


def max_backward_half_repaired(dout, cache):
    x, y = cache
    dx = dout.clone()
    dx[x < y] = 0
    dy = dout  # still the caller's tensor
    dy[x >= y] = 0
    return dx, dy


def max_backward_to_both(dout, cache):
    return dout.clone(), dout.clone()


MISTAKES = [
    ("00.sum_of_squares_grad", (forgot_two,), "factor 2 is missing"),
    ("00.sum_of_squares_grad", (returned_the_sum,), "single number"),
    ("01.central_difference", (forward_difference,), "forward difference"),
    ("01.central_difference", (divided_by_h,), "Divide by 2h"),
    ("01.central_difference", (exact_derivative,), "exact derivative"),
    ("01.central_difference", (central_difference_loop,), "Python loop"),
    ("01.chain_rule", (chain_without_inner,), "d(x**2)/dx = 2x, is missing"),
    ("01.chain_rule", (chain_cos_of_x,), "cos(x**2), not cos(x)"),
    ("02.mul_backward", (mul_swapped,), "uses the *other* input"),
    ("02.mul_backward", (mul_without_dout,), "by dout"),
    ("02.mul_backward", (mul_float32_tensors,), "plain Python floats"),
    ("02.pow_backward", (pow_exponent_n,), "n - 1"),
    ("02.exp_backward", (exp_without_dout,), "by dout"),
    ("02.tanh_backward", (tanh_of_input,), "square tanh(a), not a"),
    ("02.topological_order", (topo_recursive,), "explicit stack"),
    ("02.topological_order", (topo_no_visited_set,), "appears twice"),
    ("02.topological_order", (topo_preorder,), "seems reversed"),
    ("02.topological_order", (topo_first_input_only,), "not only the first one"),
    ("03.sigmoid", (sigmoid_naive_forward, ok.sigmoid_backward), "exp overflows"),
    ("03.sigmoid", (sigmoid_forward_keep_x, sigmoid_backward_at_x), "not x itself"),
    ("03.tanh", (tanh_forward_keep_x, tanh_backward_at_x), "not 1 - x**2"),
    ("03.relu", (ok.relu_forward, relu_backward_unchanged), "returned dout unchanged"),
    ("03.relu", (ok.relu_forward, relu_backward_in_place), "in place"),
    ("03.leaky_relu", (ok.leaky_relu_forward, leaky_backward_like_relu), "not 0"),
    ("03.leaky_relu", (leaky_forward_fixed_slope, ok.leaky_relu_backward), "ignores its"),
    ("03.gd_step", (gd_uphill,), "moved uphill"),
    ("03.gd_step", (gd_without_two,), "factor 2 is missing"),
    ("03.gd_step", (gd_in_place,), "modified its input w in place"),
    ("04.linear_backward", (linear_db_not_summed,), "summed over the batch"),
    ("04.linear_backward", (linear_dx_no_transpose,), "missing transpose"),
    ("04.linear_backward", (linear_dw_transposed,), "dw looks transposed"),
    ("04.linear_backward", (linear_dw_mean,), "N = 4 times too small"),
    ("04.linear_backward", (linear_db_mean,), "do not average"),
    ("04.linear_backward", (linear_dx_sign,), "wrong sign"),
    (
        "04.find_the_bug",
        (matmul_backward_as_given, ok.scale_shift_backward, ok.max_backward),
        "dx = dout @ w.T, not dout @ w",
    ),
    (
        "04.find_the_bug",
        (ok.matmul_backward, scale_shift_backward_as_given, ok.max_backward),
        "dbeta = dout.sum(dim=0)",
    ),
    (
        "04.find_the_bug",
        (ok.matmul_backward, ok.scale_shift_backward, max_backward_as_given),
        "modified its input dout in place",
    ),
    (
        "04.find_the_bug",
        (ok.matmul_backward, ok.scale_shift_backward, max_backward_half_repaired),
        "`dx = dout` does not copy",
    ),
    (
        "04.find_the_bug",
        (ok.matmul_backward, ok.scale_shift_backward, max_backward_to_both),
        "Max routes",
    ),
    ("04.broadcast_backward", (broadcast_unchanged,), "returned dout unchanged"),
    ("04.broadcast_backward", (broadcast_squeezed,), "keep the size-1 dims"),
    ("04.broadcast_backward", (broadcast_mean,), "do not average"),
    ("04.grad_shapes", (shapes_dw_transposed,), "transposed"),
    ("04.grad_shapes", (shapes_db_like_out,), "summed over the batch"),
    ("04.grad_shapes", (shapes_db_int,), "needs a comma"),
    ("05.softmax_cross_entropy", (ok.softmax_cross_entropy_forward, ce_backward_without_n), "1/N"),
    (
        "05.softmax_cross_entropy",
        (ce_forward_naive, ok.softmax_cross_entropy_backward),
        "log-sum-exp",
    ),
    (
        "05.softmax_cross_entropy",
        (ok.softmax_cross_entropy_forward, ce_backward_no_onehot),
        "one-hot",
    ),
    (
        "05.softmax_cross_entropy",
        (ce_forward_sum, ok.softmax_cross_entropy_backward),
        "mean over the batch, not the sum",
    ),
    (
        "05.softmax_cross_entropy",
        (ok.softmax_cross_entropy_forward, ce_backward_ignores_dout),
        "Multiply by dout",
    ),
    ("05.dlogits", (dlogits_without_n,), "1/N"),
    ("05.dlogits", (dlogits_sign,), "sign is flipped"),
    ("05.dlogits", (dlogits_softmax_over_batch,), "not over the batch (dim=0)"),
    ("05.mlp_backward", (mlp_no_relu_derivative,), "ReLU derivative is missing"),
    ("05.mlp_backward", (mlp_sum_not_mean,), "N = 6 times too large"),
    ("05.mlp_backward", (mlp_bias_not_summed,), "summed over the batch"),
    ("05.mlp_backward", (mlp_no_transpose,), "missing transpose"),
]
