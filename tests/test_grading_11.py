"""Tests of lesson 11's graded items: correct code passes, classic mistakes are named."""

from __future__ import annotations

import pytest
import torch

from coursekit.grading import check
from coursekit.grading.context import grade
from coursekit.grading.registry import get_item
from tests import _item_suite as suite

ITEMS_11 = {"11.unbroadcast": 2, "11.backward": 3, "11.custom_function": 3}


# ---------------------------------------------------------------------------- correct code
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


# ---------------------------------------------------------------------------- classic mistakes
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
]
# 11.custom_function takes the Function's two static methods
FUNCTION_MISTAKES = [
    (LogSumExpOverflows, "Subtract the maximum"),
    (LogSumExpIgnoresGrad, "ignores the upstream gradient"),
    (LogSumExpNoUnsqueeze, "unsqueeze"),
    (LogSumExpKeepdim, "keeps the reduced dim"),
    (LogSumExpAutograd, "automatic differentiation"),
    (LogSumExpScaled, "constant factor"),
    (LogSumExpInconsistent, "finite differences"),
]
ONE_FUNCTION = {k: v for k, v in ITEMS_11.items() if k != "11.custom_function"}


def _grade_function(cls, seed):
    return grade(get_item("11.custom_function"), (cls.forward, cls.backward), seed)


# ---------------------------------------------------------------------------- tests
def test_lesson_11_items_are_listed_with_their_points():
    suite.assert_items_listed("11", ITEMS_11)
    assert get_item("11.custom_function").functions == ("forward", "backward")


@pytest.mark.parametrize("name", list(ONE_FUNCTION))
def test_reference_solution_gets_full_marks(name):
    suite.assert_full_marks(name, SOLUTIONS[name], ITEMS_11[name])


@pytest.mark.parametrize("name", list(ONE_FUNCTION))
def test_reference_solution_passes_on_many_seeds(name):
    suite.assert_passes_on_seeds(name, SOLUTIONS[name], seeds=6)


@pytest.mark.parametrize("cls", [LogSumExp, LogSumExpWithAttributes], ids=lambda c: c.__name__)
def test_custom_function_reference_gets_full_marks(cls):
    result = check("11.custom_function", cls.forward, cls.backward)
    assert result.passed, str(result)
    assert result.points == result.max_points == 3
    for seed in range(1, 4):
        outcome = _grade_function(cls, seed)
        assert outcome.status == "passed", f"seed {seed}: {outcome.feedback}"


def test_the_reference_is_a_working_torch_function():
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(LogSumExp.apply, (x,))


@pytest.mark.parametrize(
    ("name", "fn", "words"), MISTAKES, ids=[f"{name}-{fn.__name__}" for name, fn, _ in MISTAKES]
)
def test_classic_mistake_fails_with_a_hint_naming_it(name, fn, words):
    suite.assert_mistake_named(name, fn, words)


@pytest.mark.parametrize(
    ("cls", "words"), FUNCTION_MISTAKES, ids=[cls.__name__ for cls, _ in FUNCTION_MISTAKES]
)
def test_custom_function_mistake_fails_with_a_hint_naming_it(cls, words):
    for seed in (0, 7):
        outcome = _grade_function(cls, seed)
        assert outcome.status != "passed"
        assert words in outcome.feedback, outcome.feedback
        assert "Test case" in outcome.feedback


def test_mistakes_are_named_on_other_seeds_too():
    suite.assert_mistakes_named_on_seeds(MISTAKES, seeds=(1, 7))


def test_a_stub_scores_zero_without_crashing():
    suite.assert_stub_scores_zero(ONE_FUNCTION)

    def stub(*args):
        raise NotImplementedError("write your code here")

    result = check("11.custom_function", stub, stub)
    assert not result.passed and result.points == 0
    assert result.status == "not implemented"
