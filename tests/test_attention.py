"""coursekit.functional's attention pieces: softmax, gelu and attention against torch.autograd.

Float64 within 1e-8 relative error on awkward shapes (Tq != Tk, T = 1, extra batch and
head dims, causal), float32 against the float64 reference, scores of +-1e4 without NaN,
inputs never modified, and clear errors for wrong shapes.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as tF
from hypothesis import given, settings
from hypothesis import strategies as st

import coursekit.functional as F
from tests._autograd_ref import compare_with_autograd

TOL = {torch.float64: 1e-8, torch.float32: 5e-5}
DTYPES = [pytest.param(torch.float64, id="float64"), pytest.param(torch.float32, id="float32")]


def _randn(*shape: int, dtype: torch.dtype = torch.float64, seed: int = 0, scale: float = 1.0):
    gen = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(shape, generator=gen, dtype=torch.float64)).to(dtype)


def attention_ref(q, k, v, causal=False):
    """The same maths written with torch ops, differentiated by autograd."""
    s = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5
    if causal:
        above = torch.ones(s.shape[-2:], dtype=torch.bool, device=s.device).triu(1)
        s = s.masked_fill(above, float("-inf"))
    return torch.softmax(s, dim=-1) @ v


# ------------------------------------------------------------------------------- softmax
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("shape", "dim"), [((5,), 0), ((3, 7), -1), ((3, 7), 0), ((2, 1, 4), 1), ((2, 3, 4, 5), 2)]
)
def test_softmax_matches_autograd(shape, dim, dtype) -> None:
    x = _randn(*shape, dtype=dtype, scale=3.0)
    compare_with_autograd(
        F.softmax_forward,
        F.softmax_backward,
        lambda x, dim: torch.softmax(x, dim=dim),
        [x],
        tol=TOL[dtype],
        options={"dim": dim},
    )


def test_softmax_backward_is_the_jacobian_transpose_times_dout() -> None:
    x, dout = _randn(6, seed=1), _randn(6, seed=2)
    p, cache = F.softmax_forward(x)
    jacobian = torch.diag(p) - torch.outer(p, p)
    torch.testing.assert_close(F.softmax_backward(dout, cache), jacobian.T @ dout)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_softmax_is_stable_for_huge_inputs(dtype) -> None:
    x = torch.tensor([[1e4, -1e4, 0.0], [1e4, 1e4, -1e4]], dtype=dtype)
    p, cache = F.softmax_forward(x)
    dx = F.softmax_backward(torch.ones_like(x), cache)
    assert torch.isfinite(p).all() and torch.isfinite(dx).all()
    torch.testing.assert_close(p, torch.softmax(x, -1))


# ---------------------------------------------------------------------------------- gelu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("shape", [(1,), (4, 7), (2, 3, 5)])
def test_gelu_matches_autograd(shape, approximate, dtype) -> None:
    x = _randn(*shape, dtype=dtype, scale=3.0)
    compare_with_autograd(
        F.gelu_forward,
        F.gelu_backward,
        tF.gelu,
        [x],
        tol=TOL[dtype],
        options={"approximate": approximate},
    )


@settings(max_examples=40, deadline=None)
@given(
    xs=st.lists(st.floats(-30, 30, allow_nan=False), min_size=1, max_size=20),
    approximate=st.sampled_from(["none", "tanh"]),
)
def test_gelu_matches_autograd_anywhere(xs, approximate) -> None:
    x = torch.tensor(xs, dtype=torch.float64)
    compare_with_autograd(
        F.gelu_forward,
        F.gelu_backward,
        tF.gelu,
        [x],
        tol=1e-8,
        options={"approximate": approximate},
    )


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_is_finite_at_extremes(approximate) -> None:
    x = torch.tensor([-1e4, -50.0, 0.0, 50.0, 1e4], dtype=torch.float32)
    out, cache = F.gelu_forward(x, approximate=approximate)
    dx = F.gelu_backward(torch.ones_like(x), cache)
    assert torch.isfinite(out).all() and torch.isfinite(dx).all()
    torch.testing.assert_close(out, tF.gelu(x, approximate=approximate))
    torch.testing.assert_close(dx, torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]))


# ----------------------------------------------------------------------------- attention
ATTENTION_SHAPES = [
    # (leading dims, Tq, Tk, d, dv)
    ((), 4, 4, 3, 3),
    ((), 1, 1, 2, 5),
    ((2,), 5, 3, 4, 2),
    ((2,), 3, 6, 4, 4),
    ((2, 3), 7, 7, 8, 5),
    ((1, 2), 1, 5, 3, 3),
    ((3, 1, 2), 6, 2, 1, 1),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("shape", ATTENTION_SHAPES, ids=str)
def test_attention_matches_autograd(shape, causal, dtype) -> None:
    lead, tq, tk, d, dv = shape
    q = _randn(*lead, tq, d, dtype=dtype, seed=1)
    k = _randn(*lead, tk, d, dtype=dtype, seed=2)
    v = _randn(*lead, tk, dv, dtype=dtype, seed=3)
    compare_with_autograd(
        F.attention_forward,
        F.attention_backward,
        attention_ref,
        [q, k, v],
        tol=TOL[dtype],
        options={"causal": causal},
    )


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("tq", "tk"), [(5, 5), (3, 6), (6, 3)])
def test_attention_forward_matches_torch_sdpa(tq, tk, causal) -> None:
    q, k, v = _randn(2, 3, tq, 4, seed=4), _randn(2, 3, tk, 4, seed=5), _randn(2, 3, tk, 2, seed=6)
    out, _ = F.attention_forward(q, k, v, causal=causal)
    expected = tF.scaled_dot_product_attention(q, k, v, is_causal=causal)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


def test_causal_attention_gives_masked_entries_zero_weight_and_zero_gradient() -> None:
    q, k, v = _randn(5, 3, seed=7), _randn(5, 3, seed=8), _randn(5, 2, seed=9)
    out, cache = F.attention_forward(q, k, v, causal=True)
    p = cache[3]
    assert (p.triu(1) == 0).all()
    # The first query sees only the first key: its output is v[0].
    torch.testing.assert_close(out[0], v[0])
    # The last key is seen only by the last query: its dv row is p[-1, -1] * dout[-1].
    dout = _randn(5, 2, seed=10)
    _, dk, dv = F.attention_backward(dout, cache)
    torch.testing.assert_close(dv[-1], p[-1, -1] * dout[-1])
    # Changing a future value changes nothing before it.
    v2 = v.clone()
    v2[-1] += 100.0
    out2, _ = F.attention_forward(q, k, v2, causal=True)
    torch.testing.assert_close(out2[:-1], out[:-1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("causal", [False, True])
def test_attention_has_no_nan_for_scores_of_1e4(dtype, causal) -> None:
    # Scores q k^T / sqrt(d) of +-1e4: the softmax saturates to a one-hot row.
    q = torch.tensor([[100.0, 0.0], [-100.0, 0.0], [0.0, 100.0]], dtype=dtype) * 2**0.5
    k = torch.tensor([[100.0, 0.0], [-100.0, 0.0], [0.0, -100.0]], dtype=dtype)
    v = _randn(3, 4, dtype=dtype, seed=11)
    out, cache = F.attention_forward(q, k, v, causal=causal)
    scores = q @ k.T / 2**0.5
    assert scores.abs().max().item() == pytest.approx(1e4, rel=1e-6)
    grads = F.attention_backward(torch.ones_like(out), cache)
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(g).all() for g in grads)
    torch.testing.assert_close(out, attention_ref(q, k, v, causal=causal))


def test_attention_leaves_its_inputs_and_dout_alone() -> None:
    q, k, v = _randn(2, 4, 3, seed=12), _randn(2, 4, 3, seed=13), _randn(2, 4, 3, seed=14)
    dout = _randn(2, 4, 3, seed=15)
    copies = [t.clone() for t in (q, k, v, dout)]
    _, cache = F.attention_forward(q, k, v, causal=True)
    F.attention_backward(dout, cache)
    for now, then in zip((q, k, v, dout), copies, strict=True):
        assert torch.equal(now, then)


def test_pairs_work_under_no_grad_and_with_inputs_that_require_grad() -> None:
    q, k, v = (_randn(3, 4, seed=s).requires_grad_(True) for s in (16, 17, 18))
    with torch.no_grad():
        out, cache = F.attention_forward(q, k, v)
        dq, _, _ = F.attention_backward(torch.ones_like(out), cache)
    out2, cache2 = F.attention_forward(q.detach(), k.detach(), v.detach())
    torch.testing.assert_close(dq, F.attention_backward(torch.ones_like(out2), cache2)[0])


@settings(max_examples=25, deadline=None)
@given(
    lead=st.lists(st.integers(1, 3), max_size=2),
    tq=st.integers(1, 6),
    tk=st.integers(1, 6),
    d=st.integers(1, 5),
    dv=st.integers(1, 4),
    causal=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_attention_matches_autograd_on_any_shape(lead, tq, tk, d, dv, causal, seed) -> None:
    q = _randn(*lead, tq, d, seed=seed)
    k = _randn(*lead, tk, d, seed=seed + 1)
    v = _randn(*lead, tk, dv, seed=seed + 2)
    compare_with_autograd(
        F.attention_forward,
        F.attention_backward,
        attention_ref,
        [q, k, v],
        tol=1e-8,
        options={"causal": causal},
    )


# ---------------------------------------------------------------------------- bad inputs
def _t(*shape: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.zeros(shape, dtype=dtype)


BAD_INPUTS = [
    (lambda: F.softmax_forward([1.0, 2.0]), TypeError, ["softmax_forward", "x", "Tensor"]),
    (lambda: F.softmax_forward(_t(3, dtype=torch.int64)), TypeError, ["softmax_forward", "x"]),
    (lambda: F.softmax_forward(_t(2, 3), dim=2), ValueError, ["dim=2", "(2, 3)"]),
    (lambda: F.softmax_forward(_t(2, 3), dim=1.0), TypeError, ["dim", "int"]),
    (lambda: F.softmax_forward(_t()), ValueError, ["softmax_forward", "()"]),
    (
        lambda: F.softmax_backward(_t(2, 2), F.softmax_forward(_t(2, 3))[1]),
        ValueError,
        ["softmax_backward", "(2, 2)", "(2, 3)"],
    ),
    (lambda: F.gelu_forward(_t(3), approximate="erf"), ValueError, ["gelu_forward", "'erf'"]),
    (
        lambda: F.gelu_backward(_t(4), F.gelu_forward(_t(3))[1]),
        ValueError,
        ["gelu_backward", "(4,)", "(3,)"],
    ),
    (
        lambda: F.attention_forward(_t(2, 3, 4), _t(2, 3, 5), _t(2, 3, 4)),
        ValueError,
        ["attention_forward", "(2, 3, 4)", "(2, 3, 5)", "same d"],
    ),
    (
        lambda: F.attention_forward(_t(3, 4), _t(5, 4), _t(4, 4)),
        ValueError,
        ["attention_forward", "(5, 4)", "(4, 4)", "Tk"],
    ),
    (
        lambda: F.attention_forward(_t(2, 3, 4), _t(3, 3, 4), _t(3, 3, 4)),
        ValueError,
        ["leading", "(2, 3, 4)", "(3, 3, 4)"],
    ),
    (lambda: F.attention_forward(_t(4), _t(4), _t(4)), ValueError, ["q", "(4,)", "2 dims"]),
    (
        lambda: F.attention_forward(_t(3, 4), _t(3, 4, dtype=torch.float32), _t(3, 4)),
        TypeError,
        ["k", "float32", "float64"],
    ),
    (lambda: F.attention_forward(_t(3, 4), _t(3, 4), _t(3, 4), causal=1), TypeError, ["causal"]),
    (
        lambda: F.attention_backward(
            _t(3, 5), F.attention_forward(_t(3, 4), _t(2, 4), _t(2, 6))[1]
        ),
        ValueError,
        ["attention_backward", "(3, 5)", "(3, 6)"],
    ),
]


@pytest.mark.parametrize(("call", "error", "fragments"), BAD_INPUTS)
def test_bad_input_gives_a_clear_error(call, error, fragments) -> None:
    with pytest.raises(error) as info:
        call()
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.gpu
@pytest.mark.parametrize("causal", [False, True])
def test_attention_on_cuda_keeps_the_device(causal) -> None:
    q, k, v = (_randn(2, 5, 4, seed=s).cuda() for s in (20, 21, 22))
    compare_with_autograd(
        F.attention_forward,
        F.attention_backward,
        attention_ref,
        [q, k, v],
        tol=1e-8,
        options={"causal": causal},
    )


# ---------------------------------------------------------------- as operations on Tensor
def test_pairs_are_ops_of_coursekit_autograd() -> None:
    import coursekit.autograd as ag

    q, k, v = _randn(2, 4, 3, seed=30), _randn(2, 5, 3, seed=31), _randn(2, 5, 2, seed=32)
    leaves = [ag.Tensor(t.clone(), requires_grad=True) for t in (q, k, v)]
    out = ag.gelu(ag.softmax(ag.attention(*leaves, causal=True), dim=1), approximate="tanh")
    out.sum().backward()
    refs = [t.clone().requires_grad_(True) for t in (q, k, v)]
    expected = tF.gelu(torch.softmax(attention_ref(*refs, causal=True), dim=1), approximate="tanh")
    expected.sum().backward()
    torch.testing.assert_close(out.data, expected.detach(), rtol=1e-12, atol=1e-12)
    for ours, ref in zip(leaves, refs, strict=True):
        torch.testing.assert_close(ours.grad, ref.grad, rtol=1e-10, atol=1e-12)
