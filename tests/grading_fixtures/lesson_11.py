"""Lesson 11's graded items: correct solutions written as a student would, and classic mistakes."""

from __future__ import annotations

import torch


# ---------------------------------------------------------------------------- correct
def unbroadcast_by_hand(grad, shape):
    extra = grad.dim() - len(shape)
    dims = list(range(extra))
    dims += [extra + i for i, s in enumerate(shape) if s == 1 and grad.shape[extra + i] != 1]
    summed = grad.sum(dim=dims, keepdim=True) if dims else grad
    return summed.reshape(shape)


def unbroadcast_one_dim_at_a_time(grad, shape):
    while grad.dim() > len(shape):
        grad = grad.sum(0)
    for i, s in enumerate(shape):
        if s == 1:
            grad = grad.sum(i, keepdim=True)
    return grad


def backward_stack(root, dout):
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
        elif id(node) not in seen:
            seen.add(id(node))
            stack.append((node, True))
            stack.extend((n, False) for n in node.inputs)
    grads, leaves = {id(root): dout}, {}
    for node in reversed(order):
        g = grads.pop(id(node))
        if not node.inputs:
            leaves[node.name] = g
            continue
        for inp, gi in zip(node.inputs, node.backward_step(g), strict=True):
            grads[id(inp)] = grads[id(inp)] + gi if id(inp) in grads else gi
    return leaves


def backward_recursive_topo(root, dout):
    order, seen = [], set()

    def build(node):
        if node in seen:
            return
        seen.add(node)
        for child in node.inputs:
            build(child)
        order.append(node)

    build(root)
    grad = {root: dout}
    for node in reversed(order):
        if not node.inputs:
            continue
        for inp, gi in zip(node.inputs, node.backward_step(grad[node]), strict=True):
            grad[inp] = grad[inp] + gi if inp in grad else gi
    return {node.name: grad[node] for node in order if not node.inputs}


def backward_counting_consumers(root, dout):
    # Kahn's algorithm: a node runs once every consumer has sent its gradient
    consumers, stack, seen = {}, [root], {id(root)}
    while stack:
        node = stack.pop()
        for inp in node.inputs:
            consumers[id(inp)] = consumers.get(id(inp), 0) + 1
            if id(inp) not in seen:
                seen.add(id(inp))
                stack.append(inp)
    ready, grads, leaves = [root], {id(root): dout}, {}
    while ready:
        node = ready.pop()
        g = grads[id(node)]
        if not node.inputs:
            leaves[node.name] = g
        for inp, gi in zip(node.inputs, node.backward_step(g) if node.inputs else (), strict=True):
            grads[id(inp)] = grads[id(inp)] + gi if id(inp) in grads else gi
            consumers[id(inp)] -= 1
            if consumers[id(inp)] == 0:
                ready.append(inp)
    return leaves


class LogSumExp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        m = x.amax(dim=-1, keepdim=True)
        out = (m + torch.log(torch.exp(x - m).sum(-1, keepdim=True))).squeeze(-1)
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, out = ctx.saved_tensors
        return grad.unsqueeze(-1) * torch.exp(x - out.unsqueeze(-1))


class LogSumExpWithAttributes(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.p = torch.softmax(x, dim=-1)
        return torch.logsumexp(x, dim=-1)

    @staticmethod
    def backward(ctx, grad):
        return (grad[..., None] * ctx.p,)


SOLUTIONS = {
    "11.unbroadcast": [unbroadcast_by_hand, unbroadcast_one_dim_at_a_time],
    "11.backward": [backward_stack, backward_recursive_topo, backward_counting_consumers],
    "11.custom_function": [
        (LogSumExp.forward, LogSumExp.backward),
        (LogSumExpWithAttributes.forward, LogSumExpWithAttributes.backward),
    ],
}
SEEDS = 6  # every solution passes on seeds 0..5


# ---------------------------------------------------------------------------- mistakes
def unbroadcast_not_summed(grad, shape):
    return grad


def unbroadcast_no_keepdim(grad, shape):
    extra = grad.dim() - len(shape)
    dims = list(range(extra)) + [extra + i for i, s in enumerate(shape) if s == 1]
    return grad.sum(dim=dims) if dims else grad


def unbroadcast_leading_only(grad, shape):
    while grad.dim() > len(shape):
        grad = grad.sum(0)
    return grad


def unbroadcast_mean(grad, shape):
    extra = grad.dim() - len(shape)
    dims = list(range(extra)) + [extra + i for i, s in enumerate(shape) if s == 1]
    return (grad.mean(dim=dims, keepdim=True) if dims else grad).reshape(shape)


def backward_assigns(root, dout):
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
        elif id(node) not in seen:
            seen.add(id(node))
            stack.append((node, True))
            stack.extend((n, False) for n in node.inputs)
    grads, leaves = {id(root): dout}, {}
    for node in reversed(order):
        g = grads[id(node)]
        if not node.inputs:
            leaves[node.name] = g
            continue
        for inp, gi in zip(node.inputs, node.backward_step(g), strict=True):
            grads[id(inp)] = gi  # the mistake: "=" instead of "+="
    return leaves


def backward_breadth_first(root, dout):
    grads, leaves, queue, done = {id(root): dout}, {}, [root], set()
    while queue:
        node = queue.pop(0)
        if id(node) in done:
            continue
        done.add(id(node))
        if not node.inputs:
            leaves[node.name] = grads[id(node)]
            continue
        for inp, gi in zip(node.inputs, node.backward_step(grads[id(node)]), strict=True):
            grads[id(inp)] = grads[id(inp)] + gi if id(inp) in grads else gi
            queue.append(inp)
    return leaves


def backward_with_autograd(root, dout):
    leaf = torch.ones(1, dtype=torch.float64, requires_grad=True)
    with torch.enable_grad():
        (leaf * 2).sum().backward()
    return backward_stack(root, dout)


class LogSumExpOverflows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.log(torch.exp(x).sum(-1))

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad.unsqueeze(-1) * torch.softmax(x, -1)


class LogSumExpIgnoresGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.logsumexp(x, -1)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return torch.softmax(x, -1)


class LogSumExpNoUnsqueeze(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.logsumexp(x, -1)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * torch.softmax(x, -1)


class LogSumExpKeepdim(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.logsumexp(x, -1, keepdim=True)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * torch.softmax(x, -1)


class LogSumExpAutograd(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.logsumexp(x, -1)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        with torch.enable_grad():
            leaf = x.detach().requires_grad_(True)
            (dx,) = torch.autograd.grad(torch.logsumexp(leaf, -1), leaf, grad)
        return dx


class LogSumExpScaled(torch.autograd.Function):
    """A forward off by a factor 1.5, with the backward of the true function."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.logsumexp(x, -1) * 1.5

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad.unsqueeze(-1) * torch.softmax(x, -1)


class LogSumExpInconsistent(torch.autograd.Function):
    """Right on the value cases; on 1-D inputs of length 5 only, the backward's slope is off,
    which only the gradcheck case (finite differences of forward) sees."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.logsumexp(x, -1)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        factor = 1.2 if x.shape == (5,) else 1.0
        return factor * grad.unsqueeze(-1) * torch.softmax(x, -1)


MISTAKES = [
    ("11.unbroadcast", unbroadcast_not_summed, "not summed over the broadcast dims"),
    ("11.unbroadcast", unbroadcast_no_keepdim, "keepdim=True"),
    ("11.unbroadcast", unbroadcast_leading_only, "summed"),
    ("11.unbroadcast", unbroadcast_mean, "averaged"),
    ("11.backward", backward_assigns, "SUM of what each consumer sends back"),
    ("11.backward", backward_breadth_first, "Order the graph topologically"),
    ("11.backward", backward_with_autograd, "automatic differentiation"),
    # 11.custom_function takes the Function's two static methods
    (
        "11.custom_function",
        (LogSumExpOverflows.forward, LogSumExpOverflows.backward),
        "Subtract the maximum",
    ),
    (
        "11.custom_function",
        (LogSumExpIgnoresGrad.forward, LogSumExpIgnoresGrad.backward),
        "ignores the upstream gradient",
    ),
    (
        "11.custom_function",
        (LogSumExpNoUnsqueeze.forward, LogSumExpNoUnsqueeze.backward),
        "unsqueeze",
    ),
    (
        "11.custom_function",
        (LogSumExpKeepdim.forward, LogSumExpKeepdim.backward),
        "keeps the reduced dim",
    ),
    (
        "11.custom_function",
        (LogSumExpAutograd.forward, LogSumExpAutograd.backward),
        "automatic differentiation",
    ),
    ("11.custom_function", (LogSumExpScaled.forward, LogSumExpScaled.backward), "constant factor"),
    (
        "11.custom_function",
        (LogSumExpInconsistent.forward, LogSumExpInconsistent.backward),
        "finite differences",
    ),
]
