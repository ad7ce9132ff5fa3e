"""coursekit.autograd: every op against torch.autograd in float64, the engine's semantics,
to_torch() under gradcheck, and training equal to coursekit.nn step for step."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as tF
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import coursekit.autograd as ag
from coursekit import functional as F
from coursekit import nn
from coursekit.autograd import Function, Tensor, no_grad, to_torch, unbroadcast
from tests._autograd_ref import rel_error

TOL = 1e-10
DT = torch.float64


def randn(*shape: int, seed: int = 0, positive: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(shape, generator=g, dtype=DT)
    return t.abs() + 0.5 if positive else t


def compare(
    ours: Callable[..., Tensor],
    reference: Callable[..., torch.Tensor],
    inputs: list[Any],
    grad_of: list[bool] | None = None,
    seed: int = 1,
) -> None:
    """Run ours on Tensors and reference on torch leaves; outputs and gradients must agree."""
    grad_of = grad_of or [isinstance(t, torch.Tensor) and t.is_floating_point() for t in inputs]
    mine = [
        Tensor(t.clone(), requires_grad=r) if r else t for t, r in zip(inputs, grad_of, strict=True)
    ]
    theirs = [
        t.clone().requires_grad_(True) if r else t for t, r in zip(inputs, grad_of, strict=True)
    ]
    out = ours(*mine)
    ref = reference(*theirs)
    assert out.shape == ref.shape
    assert rel_error(out.data, ref.detach()) < TOL
    g = randn(*ref.shape, seed=seed)
    out.backward(g)
    expected = torch.autograd.grad(ref, [t for t, r in zip(theirs, grad_of, strict=True) if r], g)
    got = [t.grad for t, r in zip(mine, grad_of, strict=True) if r]
    for i, (a, b) in enumerate(zip(got, expected, strict=True)):
        assert a is not None, f"input {i} got no gradient"
        assert a.shape == b.shape, f"input {i}: {tuple(a.shape)} vs {tuple(b.shape)}"
        assert rel_error(a, b) < TOL, f"input {i}: rel error {rel_error(a, b):.2e}"


# --------------------------------------------------------------------------- elementary ops
BINARY = {
    "add": (lambda a, b: a + b, False),
    "sub": (lambda a, b: a - b, False),
    "mul": (lambda a, b: a * b, False),
    "div": (lambda a, b: a / b, True),
    "pow": (lambda a, b: a**b, True),
}
BROADCAST_PAIRS = [
    ((3, 4), (3, 4)),
    ((3, 4), (4,)),
    ((4,), (3, 4)),
    ((2, 1, 4), (3, 1)),
    ((), (2, 3)),
    ((5,), (1,)),
    ((1, 3), (4, 1)),
    ((2, 3, 1, 5), (1, 4, 1)),
]


@pytest.mark.parametrize("op", list(BINARY))
@pytest.mark.parametrize(("sa", "sb"), BROADCAST_PAIRS, ids=str)
def test_binary_op_with_broadcasting_matches_torch(op, sa, sb):
    fn, positive = BINARY[op]
    a, b = randn(*sa, seed=2, positive=positive), randn(*sb, seed=3, positive=positive)
    compare(fn, fn, [a, b])


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: 2 + x,
        lambda x: x + 2.5,
        lambda x: 3 - x,
        lambda x: x - 3,
        lambda x: 1.5 * x,
        lambda x: x * -2,
        lambda x: 2 / x,
        lambda x: x / 4,
        lambda x: x**2,
        lambda x: x**2.5,
        lambda x: x**-1,
        lambda x: 3**x,
        lambda x: -x,
        lambda x: x - x / (1 + x * x),
    ],
    ids=["radd", "add", "rsub", "sub", "rmul", "mul", "rdiv", "div", "sq", "pow", "inv", "rpow",
         "neg", "mixed"],
)  # fmt: skip
def test_operators_with_plain_numbers_on_either_side(fn):
    compare(fn, fn, [randn(3, 4, seed=4, positive=True)])


def test_pow_of_zero_base_has_torch_gradients():
    a = torch.tensor([0.0, 1.5, 2.0], dtype=DT)
    b = torch.tensor([2.0, 0.5, 3.0], dtype=DT)
    compare(lambda x, y: x**y, lambda x, y: x**y, [a, b])


@pytest.mark.parametrize(
    ("sa", "sb"),
    [
        ((3, 4), (4, 5)),
        ((4,), (4, 5)),
        ((3, 4), (4,)),
        ((4,), (4,)),
        ((2, 3, 4), (4, 5)),
        ((3, 4), (2, 4, 5)),
        ((2, 1, 3, 4), (5, 4, 2)),
        ((1, 1), (1, 7)),
    ],
    ids=str,
)
def test_matmul_matches_torch(sa, sb):
    compare(lambda a, b: a @ b, torch.matmul, [randn(*sa, seed=5), randn(*sb, seed=6)])


def test_matmul_with_a_torch_tensor_on_the_left():
    w = randn(4, 2, seed=1)
    compare(lambda x: randn(3, 4, seed=2) @ x, lambda x: randn(3, 4, seed=2) @ x, [w])


@pytest.mark.parametrize("dim", [None, 0, -1, 1, (0, 2), (-1, 0), (0, 1, 2)], ids=str)
@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("reduce", ["sum", "mean"])
def test_sum_and_mean_match_torch(dim, keepdim, reduce):
    def ours(x):
        return getattr(x, reduce)(dim=dim, keepdim=keepdim)

    def ref(x):
        if dim is None:
            out = getattr(x, reduce)()
            return out.reshape([1] * x.dim()) if keepdim else out
        return getattr(x, reduce)(dim=dim, keepdim=keepdim)

    compare(ours, ref, [randn(2, 3, 4, seed=7)])


def test_sum_of_a_0_dim_tensor():
    compare(lambda x: x.sum(), lambda x: x.sum(), [randn(seed=1)])
    compare(lambda x: (x * 3).mean(), lambda x: (x * 3).mean(), [randn(seed=2)])


@pytest.mark.parametrize(
    ("name", "ours", "ref", "positive"),
    [
        ("exp", lambda x: x.exp(), torch.exp, False),
        ("log", lambda x: x.log(), torch.log, True),
        ("relu", lambda x: x.relu(), torch.relu, False),
        ("tanh", lambda x: x.tanh(), torch.tanh, False),
        ("sigmoid", lambda x: x.sigmoid(), torch.sigmoid, False),
        ("reshape", lambda x: x.reshape(6, -1), lambda x: x.reshape(6, -1), False),
        ("reshape_tuple", lambda x: x.reshape((4, 6)), lambda x: x.reshape(4, 6), False),
        ("T", lambda x: x.T, lambda x: x.permute(2, 1, 0), False),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_unary_ops_match_torch(name, ours, ref, positive):
    compare(ours, ref, [randn(2, 3, 4, seed=8, positive=positive)])


def test_matrix_transpose():
    compare(lambda x: x.T @ x, lambda x: x.T @ x, [randn(5, 3, seed=9)])


@settings(max_examples=40, deadline=None)
@given(
    shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=4),
    op=st.sampled_from(["add", "sub", "mul", "div"]),
    seed=st.integers(0, 2**16),
)
def test_broadcasting_gradients_sum_back_to_each_shape(shapes, op, seed):
    fn, positive = BINARY[op]
    sa, sb = shapes.input_shapes
    a, b = randn(*sa, seed=seed, positive=positive), randn(*sb, seed=seed + 1, positive=positive)
    compare(fn, fn, [a, b], seed=seed + 2)


@settings(max_examples=40, deadline=None)
@given(
    shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=4),
    seed=st.integers(0, 2**16),
)
def test_unbroadcast_is_the_gradient_of_expand(shapes, seed):
    (shape, _), out_shape = shapes.input_shapes, shapes.result_shape
    x = randn(*shape, seed=seed).requires_grad_(True)
    g = randn(*out_shape, seed=seed + 1)
    (expected,) = torch.autograd.grad(x.expand(out_shape), x, g)
    got = unbroadcast(g, shape)
    assert got.shape == x.shape
    assert rel_error(got, expected) < TOL


def test_unbroadcast_refuses_shapes_that_do_not_broadcast():
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(5,\)"):
        unbroadcast(torch.zeros(3, 4), (5,))
    with pytest.raises(ValueError, match=r"\(4,\).*\(3, 4\)"):
        unbroadcast(torch.zeros(4), (3, 4))


def test_composite_graph_with_reuse_matches_torch():
    def fn(x, w, b):
        h = (x @ w + b).tanh()
        return ((h * h).sum(1) + h.mean(1) * 2 - (h / (1 + h.exp())).sum(1)).log().mean() + h.sum()

    def ref(x, w, b):
        h = torch.tanh(x @ w + b)
        return ((h * h).sum(1) + h.mean(1) * 2 - (h / (1 + h.exp())).sum(1)).log().mean() + h.sum()

    compare(fn, ref, [randn(5, 3, seed=1), randn(3, 4, seed=2), randn(4, seed=3)])


# --------------------------------------------------------------------------- the F pairs
def _dropout_ref(x, p, generator):
    keep = torch.rand(x.shape, generator=generator, dtype=x.dtype) >= p
    return x * keep / (1 - p)


def _rnn_ref(x, h0, wx, wh, b):
    h, hs = h0, []
    for t in range(x.shape[1]):
        h = torch.tanh(x[:, t] @ wx + h @ wh + b)
        hs.append(h)
    return torch.stack(hs, 1)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


VAR = randn(4, seed=5, positive=True)  # running variance for batchnorm in eval mode

# name -> (our op, torch reference, inputs, which inputs get a gradient)
PAIRS: dict[str, tuple[Callable, Callable, Callable[[], list], list[bool] | None]] = {
    "linear": (
        ag.linear, lambda x, w, b: x @ w + b, lambda: [randn(5, 3), randn(3, 4), randn(4)], None,
    ),
    "relu": (ag.relu, torch.relu, lambda: [randn(3, 5)], None),
    "sigmoid": (ag.sigmoid, torch.sigmoid, lambda: [randn(3, 5) * 5], None),
    "tanh": (ag.tanh, torch.tanh, lambda: [randn(2, 3, 4)], None),
    "leaky_relu": (
        lambda x: ag.leaky_relu(x, 0.2), lambda x: tF.leaky_relu(x, 0.2),
        lambda: [randn(4, 3)], None,
    ),
    "mse": (ag.mse, tF.mse_loss, lambda: [randn(4, 3), randn(4, 3, seed=5)], [True, False]),
    "softmax_cross_entropy": (
        ag.softmax_cross_entropy, tF.cross_entropy,
        lambda: [randn(6, 5) * 3, torch.tensor([0, 4, 2, 2, 1, 3])], [True, False],
    ),
    "dropout": (
        lambda x: ag.dropout(x, 0.3, generator=_gen()), lambda x: _dropout_ref(x, 0.3, _gen()),
        lambda: [randn(5, 7)], None,
    ),
    "dropout_eval": (
        lambda x: ag.dropout(x, 0.3, train=False) * 2, lambda x: x * 2, lambda: [randn(5, 7)], None,
    ),
    "batchnorm": (
        lambda x, g, b: ag.batchnorm(x, g, b, None, None),
        lambda x, g, b: tF.batch_norm(x, None, None, g, b, training=True),
        lambda: [randn(6, 4) * 2 + 1, randn(4, seed=2), randn(4, seed=3)], None,
    ),
    "batchnorm_eval": (
        lambda x, g, b: ag.batchnorm(x, g, b, randn(4, seed=4), VAR, train=False),
        lambda x, g, b: tF.batch_norm(x, randn(4, seed=4), VAR, g, b, training=False),
        lambda: [randn(6, 4), randn(4, seed=2), randn(4, seed=3)], None,
    ),
    "layernorm": (
        ag.layernorm, lambda x, g, b: tF.layer_norm(x, (5,), g, b),
        lambda: [randn(2, 3, 5), randn(5, seed=2), randn(5, seed=3)], None,
    ),
    "conv2d": (
        lambda x, w, b: ag.conv2d(x, w, b, stride=2, padding=1),
        lambda x, w, b: tF.conv2d(x, w, b, stride=2, padding=1),
        lambda: [randn(2, 3, 7, 6), randn(4, 3, 3, 2, seed=2), randn(4, seed=3)], None,
    ),
    "maxpool2d": (
        lambda x: ag.maxpool2d(x, 3, stride=2), lambda x: tF.max_pool2d(x, 3, 2),
        lambda: [randn(2, 3, 7, 8)], None,
    ),
    "embedding": (
        ag.embedding, lambda i, w: tF.embedding(i, w),
        lambda: [torch.tensor([[0, 3, 3], [5, 1, 0]]), randn(6, 4)], [False, True],
    ),
    "rnn_step": (
        ag.rnn_step, lambda x, h, wx, wh, b: torch.tanh(x @ wx + h @ wh + b),
        lambda: [randn(3, 4), randn(3, 5, seed=2), randn(4, 5, seed=3) / 2, randn(5, 5, seed=4) / 3,
                 randn(5, seed=5)], None,
    ),
    "rnn": (
        ag.rnn, _rnn_ref,
        lambda: [randn(2, 4, 3), randn(2, 5, seed=2), randn(3, 5, seed=3) / 2,
                 randn(5, 5, seed=4) / 3, randn(5, seed=5)], None,
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(PAIRS))
def test_every_pair_is_an_op_on_tensor_with_torch_gradients(name):
    ours, ref, inputs, grad_of = PAIRS[name]
    compare(ours, ref, inputs(), grad_of)


def test_pair_ops_accept_keyword_tensors():
    x, w, b = randn(5, 3), randn(3, 4), randn(4)
    compare(lambda x, w, b: ag.linear(x, w=w, b=b), lambda x, w, b: x @ w + b, [x, w, b])


def test_pair_ops_chain_with_elementary_ops():
    def ours(x, w1, b1, w2, b2, gamma, beta):
        h = ag.layernorm(ag.linear(x, w1, b1), gamma, beta).relu()
        return ag.softmax_cross_entropy(ag.linear(h + x @ w1, w2, b2), torch.tensor([1, 0, 2, 1]))

    def ref(x, w1, b1, w2, b2, gamma, beta):
        h = torch.relu(tF.layer_norm(x @ w1 + b1, (6,), gamma, beta))
        return tF.cross_entropy((h + x @ w1) @ w2 + b2, torch.tensor([1, 0, 2, 1]))

    inputs = [randn(4, 3), randn(3, 6, seed=2), randn(6, seed=3), randn(6, 3, seed=4),
              randn(3, seed=5), randn(6, seed=6), randn(6, seed=7)]  # fmt: skip
    compare(ours, ref, inputs)


# --------------------------------------------------------------------------- engine semantics
def leaf(*shape, seed=0):
    return Tensor(randn(*shape, seed=seed), requires_grad=True)


def test_reused_node_accumulates_its_contributions():
    x = leaf(3)
    y = x * x + x  # x used three times
    y.sum().backward()
    assert rel_error(x.grad, 2 * x.data + 1) < TOL


def test_diamond_graph_adds_both_paths():
    x = leaf(4)
    h = x.tanh()
    (h * 2 + h.exp()).sum().backward()
    h_ = torch.tanh(x.data)
    assert rel_error(x.grad, (2 + h_.exp()) * (1 - h_**2)) < TOL


def test_leaves_accumulate_over_backward_calls_like_torch():
    x, xt = leaf(3), randn(3).requires_grad_(True)
    for _ in range(2):
        (x * x).sum().backward()
        (xt * xt).sum().backward()
    assert rel_error(x.grad, xt.grad) < TOL
    assert rel_error(x.grad, 4 * x.data) < TOL
    x.zero_grad()
    assert x.grad is None


def test_second_backward_through_freed_graph_raises_like_torch():
    x = leaf(3)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()
    xt = randn(3).requires_grad_(True)
    yt = (xt * xt).sum()
    yt.backward()
    with pytest.raises(RuntimeError, match="second time"):
        yt.backward()


def test_retain_graph_runs_the_same_graph_twice_like_torch():
    x, xt = leaf(3, 2), randn(3, 2).requires_grad_(True)
    y, yt = (x.tanh() * x).sum(), (xt.tanh() * xt).sum()
    y.backward(retain_graph=True)
    y.backward()
    yt.backward(retain_graph=True)
    yt.backward()
    assert rel_error(x.grad, xt.grad) < TOL


def test_intermediate_gradients_are_not_kept_unless_retained():
    x = leaf(3)
    h = x * 3
    k = (x * 2).retain_grad()
    (h * k).sum().backward()
    assert h.grad is None and x.grad is not None
    assert rel_error(k.grad, h.data) < TOL
    assert not h.is_leaf and x.is_leaf


def test_no_grad_records_nothing_and_works_as_a_decorator():
    x = leaf(3)
    with no_grad():
        y = x * 2
    assert not y.requires_grad and y.grad_fn is None

    @no_grad()
    def update():
        return x + 1

    assert update().grad_fn is None
    assert ag.is_grad_enabled()
    assert (x * 2).grad_fn is not None


def test_detach_shares_data_and_stops_the_gradient():
    x = leaf(3)
    d = x.detach()
    assert d.data.data_ptr() == x.data.data_ptr() and not d.requires_grad
    (x * d).sum().backward()
    assert rel_error(x.grad, x.data) < TOL  # d is a constant: d/dx (x * d) = d


def test_a_long_chain_needs_no_recursion():
    x = Tensor(torch.tensor([0.3, -0.2], dtype=DT), requires_grad=True)
    y = x
    for _ in range(10_000):  # 20,000 recorded operations
        y = (y * 0.9999).tanh()
    y.sum().backward()
    xt = x.data.clone().requires_grad_(True)
    yt = xt
    for _ in range(10_000):
        yt = torch.tanh(yt * 0.9999)
    yt.sum().backward()
    assert len(ag.topological_order((x * 1.0).sum())) == 3
    assert rel_error(x.grad, xt.grad) < TOL


def test_inputs_that_do_not_require_grad_get_none():
    x, c = leaf(3), Tensor(randn(3, seed=1))
    (x * c).sum().backward()
    assert c.grad is None
    assert (c * 2).grad_fn is None


def test_backward_with_an_explicit_gradient():
    x = leaf(2, 3)
    g = randn(2, 3, seed=4)
    (x * 2).backward(g)
    assert rel_error(x.grad, 2 * g) < TOL


def test_grad_fn_and_next_functions_mirror_torch():
    x, w = leaf(2, 3), leaf(3, 4, seed=1)
    b = Tensor(randn(4))
    out = ag.linear(x, w, b).relu().sum()
    assert repr(out.grad_fn) == "<SumBackward>"
    relu_node = out.grad_fn.next_functions[0]
    assert repr(relu_node) == "<ReluBackward>"
    assert relu_node.next_functions[0].next_functions == ("AccumulateGrad", "AccumulateGrad", None)


def test_repr_is_readable():
    x = Tensor(torch.tensor([1.0, 2.0]), requires_grad=True)
    assert repr(x) == "Tensor([1., 2.], requires_grad=True)"
    assert repr(x * 2) == "Tensor([2., 4.], grad_fn=<MulBackward>)"
    assert repr(Tensor([1, 2])) == "Tensor([1, 2])"
    assert Tensor(2.5).dtype == torch.get_default_dtype()


# --------------------------------------------------------------------------- errors
def test_errors_name_the_shapes():
    a, b = leaf(3, 4), leaf(5)
    with pytest.raises(ValueError, match=r"\(3, 4\) and \(5,\)"):
        a + b
    with pytest.raises(ValueError, match=r"\(3, 4\) and \(3, 4\)"):
        a @ a
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(5, 5\)"):
        a.reshape(5, 5)
    with pytest.raises(RuntimeError, match=r"\(3, 4\)"):
        (a * 2).backward()
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(3, 4\)"):
        (a * 2).backward(torch.ones(4, 3))
    with pytest.raises(ValueError, match=r"dim 3 is out of range for shape \(3, 4\)"):
        a.sum(3)
    with pytest.raises(ValueError, match="linear_forward"):
        ag.linear(a, leaf(3, 2), leaf(2))


def test_type_errors():
    with pytest.raises(TypeError, match="floating-point"):
        Tensor(torch.tensor([1, 2]), requires_grad=True)
    with pytest.raises(TypeError, match="str"):
        leaf(2) + "a"
    with pytest.raises(TypeError, match="float32 and torch.float64"):
        Tensor(torch.ones(2, dtype=torch.float32)) * leaf(2)
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor(torch.ones(2)).sum().backward()


class Cube(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * 3 * x**2


class WrongShape(Function):
    @staticmethod
    def forward(ctx, x, w):
        return x * w

    @staticmethod
    def backward(ctx, grad):
        return grad, grad  # w's gradient is not summed over the broadcast dim


class TooFew(Function):
    @staticmethod
    def forward(ctx, x, y):
        return x + y

    @staticmethod
    def backward(ctx, grad):
        return grad


def test_function_subclass_is_an_op():
    compare(lambda x: Cube.apply(x).sum() + Cube.apply(x * 2).mean(),
            lambda x: (x**3).sum() + ((x * 2) ** 3).mean(), [randn(3, 2)])  # fmt: skip
    x = leaf(2)
    assert repr(Cube.apply(x).grad_fn) == "<CubeBackward>"


def test_a_backward_that_returns_a_wrong_shape_is_caught_with_shapes():
    x, w = leaf(3, 4), leaf(4, seed=1)
    with pytest.raises(ValueError, match=r"WrongShape.*\(3, 4\).*input 1.*\(4,\)"):
        WrongShape.apply(x, w).sum().backward()
    with pytest.raises(TypeError, match="1 gradient"):
        TooFew.apply(x, x).sum().backward()


# --------------------------------------------------------------------------- to_torch
def _pair(name):
    return getattr(F, f"{name}_forward"), getattr(F, f"{name}_backward")


GRADCHECK = {
    "linear": (lambda op: op, lambda: [randn(4, 3), randn(3, 2), randn(2)], None),
    "relu": (lambda op: op, lambda: [randn(3, 4)], None),
    "sigmoid": (lambda op: op, lambda: [randn(3, 4)], None),
    "tanh": (lambda op: op, lambda: [randn(3, 4)], None),
    "leaky_relu": (lambda op: lambda x: op(x, 0.1), lambda: [randn(3, 4)], None),
    "mse": (lambda op: op, lambda: [randn(3, 4), randn(3, 4, seed=1)], [0]),
    "softmax_cross_entropy": (
        lambda op: op, lambda: [randn(4, 3), torch.tensor([0, 2, 1, 2])], [0],
    ),
    "dropout": (lambda op: lambda x: op(x, 0.4, generator=_gen()), lambda: [randn(4, 5)], None),
    "batchnorm": (
        lambda op: lambda x, g, b: op(x, g, b, None, None),
        lambda: [randn(5, 3), randn(3, seed=1), randn(3, seed=2)], None,
    ),
    "layernorm": (
        lambda op: op, lambda: [randn(2, 3, 4), randn(4, seed=1), randn(4, seed=2)], None,
    ),
    "conv2d": (
        lambda op: lambda x, w, b: op(x, w, b, stride=2, padding=1),
        lambda: [randn(2, 2, 5, 4), randn(3, 2, 3, 3, seed=1), randn(3, seed=2)], None,
    ),
    "maxpool2d": (lambda op: lambda x: op(x, 2), lambda: [randn(2, 2, 4, 6)], None),
    "embedding": (lambda op: op, lambda: [torch.tensor([[1, 0, 1], [3, 3, 2]]), randn(4, 3)], [1]),
    "rnn_step": (
        lambda op: op,
        lambda: [randn(2, 3), randn(2, 4, seed=1), randn(3, 4, seed=2), randn(4, 4, seed=3) / 2,
                 randn(4, seed=4)], None,
    ),
    "rnn": (
        lambda op: op,
        lambda: [randn(2, 3, 2), randn(2, 4, seed=1), randn(2, 4, seed=2), randn(4, 4, seed=3) / 2,
                 randn(4, seed=4)], None,
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(GRADCHECK))
def test_to_torch_passes_gradcheck_for_every_pair(name):
    wrap, inputs, which = GRADCHECK[name]
    op = to_torch(*_pair(name))
    args = inputs()
    floats = [i for i, t in enumerate(args) if t.is_floating_point()]
    which = floats if which is None else which
    args = [t.requires_grad_(True) if i in which else t for i, t in enumerate(args)]
    assert torch.autograd.gradcheck(wrap(op), args)


def test_to_torch_gradients_come_from_the_hand_written_backward():
    calls = []

    def backward(dout, cache):
        calls.append(dout.shape)
        return F.tanh_backward(dout, cache)

    op = to_torch(F.tanh_forward, backward)
    x = randn(3, 2).requires_grad_(True)
    y = op(x)
    assert type(y.grad_fn).__name__ == "TanhFunctionBackward"
    y.sum().backward()
    assert calls == [torch.Size([3, 2])]
    assert rel_error(x.grad, 1 - torch.tanh(x.detach()) ** 2) < TOL


def test_to_torch_drops_into_a_torch_model():
    linear = to_torch(*_pair("linear"))
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2).double()
    x = randn(5, 3)
    out = linear(torch.relu(x), model.weight.T, model.bias)
    out.square().sum().backward()
    grad_ours = model.weight.grad.clone()
    model.zero_grad()
    model(torch.relu(x)).square().sum().backward()
    assert rel_error(grad_ours, model.weight.grad) < TOL


def test_to_torch_saves_tensors_so_in_place_changes_are_caught():
    op = to_torch(*_pair("linear"))
    x, w, b = randn(4, 3), randn(3, 2).requires_grad_(True), randn(2)
    y = op(x, w, b)
    x.add_(1.0)  # the cache holds x: torch notices the change
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_to_torch_refuses_double_backward():
    op = to_torch(*_pair("tanh"))
    x = randn(3).requires_grad_(True)
    y = op(x)
    (g,) = torch.autograd.grad((y * y).sum(), x, create_graph=True)  # dout = 2y needs a graph
    with pytest.raises(RuntimeError, match="once_differentiable"):
        g.sum().backward()


# --------------------------------------------------------------------------- equal to coursekit.nn
def _train_nn(model, loss_fn, x, y, lr, steps):
    for _ in range(steps):
        model.zero_grad()
        loss_fn(model(x), y)
        model.backward(loss_fn.backward())
        for p in model.parameters():
            p.data -= lr * p.grad
    return [p.data for p in model.parameters()]


def _sgd(params, loss_of, lr, steps):
    for _ in range(steps):
        for p in params:
            p.zero_grad()
        loss_of().backward()
        with no_grad():
            for p in params:
                p.data -= lr * p.grad
    return [p.data for p in params]


def _torch_grads(params, loss_of):
    leaves = [p.data.clone().requires_grad_(True) for p in params]
    return torch.autograd.grad(loss_of(*leaves), leaves)


def test_mlp_through_tensor_equals_nn_modules_step_for_step():
    g = _gen(0)
    model = nn.Sequential(nn.Linear(6, 16, dtype=DT, generator=g), nn.ReLU(),
                          nn.Linear(16, 3, dtype=DT, generator=g))  # fmt: skip
    params = [Tensor(p.data.clone(), requires_grad=True) for p in model.parameters()]
    x, y = randn(32, 6, seed=3), torch.randint(0, 3, (32,), generator=_gen(4))

    def loss_of(w1, b1, w2, b2):
        return ag.softmax_cross_entropy(ag.linear(ag.linear(x, w1, b1).relu(), w2, b2), y)

    grads = _torch_grads(
        params, lambda *p: tF.cross_entropy(torch.relu(x @ p[0] + p[1]) @ p[2] + p[3], y)
    )
    params_copy = [Tensor(p.data.clone(), requires_grad=True) for p in params]
    loss_of(*params_copy).backward()
    for p, expected in zip(params_copy, grads, strict=True):
        assert rel_error(p.grad, expected) < TOL

    ours = _sgd(params, lambda: loss_of(*params), 0.5, 5)
    theirs = _train_nn(model, nn.SoftmaxCrossEntropyLoss(), x, y, 0.5, 5)
    for a, b in zip(ours, theirs, strict=True):
        assert (a - b).abs().max() < 1e-12


def test_cnn_through_tensor_equals_nn_modules_step_for_step():
    g = _gen(1)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, dtype=DT, generator=g), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(4 * 4 * 4, 3, dtype=DT, generator=g),
    )  # fmt: skip
    params = [Tensor(p.data.clone(), requires_grad=True) for p in model.parameters()]
    x, y = randn(8, 1, 8, 8, seed=5), torch.randint(0, 3, (8,), generator=_gen(6))

    def loss_of(w, b, w2, b2):
        h = ag.maxpool2d(ag.conv2d(x, w, b, padding=1).relu(), 2)
        return ag.softmax_cross_entropy(ag.linear(h.reshape(8, -1), w2, b2), y)

    def ref(w, b, w2, b2):
        h = tF.max_pool2d(torch.relu(tF.conv2d(x, w, b, padding=1)), 2)
        return tF.cross_entropy(h.reshape(8, -1) @ w2 + b2, y)

    grads = _torch_grads(params, ref)
    params_copy = [Tensor(p.data.clone(), requires_grad=True) for p in params]
    loss_of(*params_copy).backward()
    for p, expected in zip(params_copy, grads, strict=True):
        assert rel_error(p.grad, expected) < TOL

    ours = _sgd(params, lambda: loss_of(*params), 0.3, 5)
    theirs = _train_nn(model, nn.SoftmaxCrossEntropyLoss(), x, y, 0.3, 5)
    for a, b in zip(ours, theirs, strict=True):
        assert (a - b).abs().max() < 1e-12
    assert math.isfinite(float(ours[0].sum()))


# --------------------------------------------------------------------------- on a GPU
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["linear", "layernorm", "conv2d", "maxpool2d", "rnn"])
def test_pair_ops_on_cuda_match_the_cpu(name):
    ours, _, inputs, grad_of = PAIRS[name]
    args = inputs()
    grad_of = grad_of or [t.is_floating_point() for t in args]
    results = []
    for device in ("cpu", "cuda"):
        mine = [Tensor(t.to(device), requires_grad=r) if r else t.to(device)
                for t, r in zip(args, grad_of, strict=True)]  # fmt: skip
        out = ours(*mine)
        assert out.device.type == device
        ((out * out).sum() + out.mean() * 2).backward()
        results.append([out.data.cpu()] + [t.grad.cpu() for t in mine if isinstance(t, Tensor)])
    for a, b in zip(*results, strict=True):
        assert rel_error(a, b) < 1e-10


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_to_torch_gradcheck_on_cuda():
    op = to_torch(*_pair("linear"))
    args = [randn(4, 3).cuda(), randn(3, 2).cuda(), randn(2).cuda()]
    assert torch.autograd.gradcheck(op, [t.requires_grad_(True) for t in args])


def test_adapters_refuse_unknown_argument_names():
    for adapter in (ag.from_pair, to_torch):
        with pytest.raises(ValueError, match=r"\[.tgt.\].*mse_forward"):
            adapter(F.mse_forward, F.mse_backward, differentiable=("tgt",))


def test_lstm_step_is_an_op_on_tensor_with_h_and_c_joined():
    def reference(x, h, c, wx, wh, b):
        i, f, g, o = (x @ wx + h @ wh + b).chunk(4, dim=1)
        c_next = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.cat([torch.sigmoid(o) * torch.tanh(c_next), c_next], dim=1)

    inputs = [randn(3, 2), randn(3, 4, seed=2), randn(3, 4, seed=3), randn(2, 16, seed=4) / 2,
              randn(4, 16, seed=5) / 2, randn(16, seed=6)]  # fmt: skip
    compare(ag.lstm_step, reference, inputs)


def test_lstm_over_a_sequence_is_an_op_on_tensor():
    def reference(x, h0, c0, wx, wh, b):
        h, c, hs = h0, c0, []
        for t in range(x.shape[1]):
            i, f, g, o = (x[:, t] @ wx + h @ wh + b).chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            hs.append(h)
        return torch.stack(hs, dim=1)

    inputs = [randn(2, 5, 3), randn(2, 4, seed=2), randn(2, 4, seed=3), randn(3, 16, seed=4) / 2,
              randn(4, 16, seed=5) / 2, randn(16, seed=6)]  # fmt: skip
    compare(ag.lstm, reference, inputs)
