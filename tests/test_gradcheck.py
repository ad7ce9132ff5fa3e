"""Tests of coursekit.gradcheck: finite differences, rel_error and compare_with_torch."""

from __future__ import annotations

import math

import pytest
import torch

from coursekit.gradcheck import GradReport, compare_with_torch, numerical_grad, rel_error

f64 = torch.float64


# ------------------------------------------------------------------------ numerical_grad
def test_numerical_grad_of_a_scalar_function_matches_the_derivative():
    x = torch.randn(3, 4, dtype=f64)
    grad = numerical_grad(lambda t: (t**3).sum(), x)
    assert grad.shape == x.shape and grad.dtype == f64
    assert rel_error(grad, 3 * x**2) < 1e-8


def test_numerical_grad_of_a_tensor_function_uses_dout():
    x = torch.randn(5, dtype=f64)
    dout = torch.randn(5, dtype=f64)
    assert rel_error(numerical_grad(torch.sin, x, dout=dout), torch.cos(x) * dout) < 1e-8
    # without dout: the gradient of the sum
    assert rel_error(numerical_grad(torch.sin, x), torch.cos(x)) < 1e-8


def test_numerical_grad_matches_autograd_on_a_matrix_function():
    x = torch.randn(4, 3, dtype=f64)
    w = torch.randn(3, 2, dtype=f64, requires_grad=True)
    dout = torch.randn(4, 2, dtype=f64)
    (expected,) = torch.autograd.grad(torch.tanh(x @ w), w, grad_outputs=dout)
    grad = numerical_grad(lambda v: torch.tanh(x @ v), w, dout=dout)
    assert rel_error(grad, expected) < 1e-8
    assert w.grad is None  # no autograd graph was built through w


def test_numerical_grad_restores_every_entry():
    x = torch.randn(2, 3, 2, dtype=f64) * 1e3 + 0.1  # eps is not exactly representable here
    before = x.clone()
    numerical_grad(lambda t: (t * t).sum(), x)
    assert torch.equal(x, before)

    x32 = torch.randn(6)
    before32 = x32.clone()
    grad = numerical_grad(lambda t: (t * t).sum(), x32)
    assert torch.equal(x32, before32)
    assert grad.dtype == f64 and rel_error(grad, 2 * x32.double()) < 1e-8


def test_numerical_grad_restores_x_even_when_f_raises():
    x = torch.randn(3, dtype=f64)
    before = x.clone()
    calls = []

    def f(t):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return t.sum()

    with pytest.raises(RuntimeError, match="boom"):
        numerical_grad(f, x)
    assert torch.equal(x, before)


def test_numerical_grad_works_when_f_reads_x_from_outside():
    w = torch.randn(4, dtype=f64)
    grad = numerical_grad(lambda _: (w.exp() * 2).sum(), w)  # the cs231n style
    assert rel_error(grad, 2 * w.exp()) < 1e-8


def test_numerical_grad_on_a_zero_dim_tensor_and_a_float_result():
    x = torch.tensor(0.5, dtype=f64)
    grad = numerical_grad(lambda t: math.sin(t.item()), x)
    assert grad.shape == () and abs(grad.item() - math.cos(0.5)) < 1e-9


def test_numerical_grad_rejects_bad_arguments():
    with pytest.raises(TypeError, match="x"):
        numerical_grad(lambda t: t.sum(), [1.0, 2.0])
    with pytest.raises(TypeError, match="floating"):
        numerical_grad(lambda t: t.sum(), torch.arange(3))
    with pytest.raises(ValueError, match="h"):
        numerical_grad(lambda t: t.sum(), torch.randn(3), h=0.0)
    with pytest.raises(ValueError, match=r"dout.*\(2,\).*\(3,\)"):
        numerical_grad(torch.sin, torch.randn(3, dtype=f64), dout=torch.ones(2))


def test_numerical_grad_step_is_called_h_and_eps_still_works_with_a_warning():
    x = torch.randn(5, dtype=f64)
    f = lambda t: (t**3).sum()  # noqa: E731
    by_position = numerical_grad(f, x, 1e-5)
    by_name = numerical_grad(f, x, h=1e-5)
    assert torch.equal(by_position, by_name)
    with pytest.warns(DeprecationWarning, match="h"):
        old_name = numerical_grad(f, x, eps=1e-5)
    assert torch.equal(old_name, by_name)
    # The step really is used: a coarse step leaves the O(h**2) truncation error, x**3 -> h**2.
    coarse = numerical_grad(f, x, h=0.1)
    assert torch.allclose(coarse - 3 * x**2, torch.full_like(x, 0.01), atol=1e-10)
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="h"):
        numerical_grad(f, x, eps=-1.0)


# ----------------------------------------------------------------------------- rel_error
def test_rel_error_values():
    assert rel_error(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0])) == 0.0
    assert rel_error([1.0, 2.0], [1.0, 2.2]) == pytest.approx(0.2 / 4.2)
    assert rel_error(torch.zeros(3), torch.zeros(3)) == 0.0
    assert rel_error(3.0, 3.0) == 0.0
    assert rel_error(1.0, -1.0) == pytest.approx(1.0)
    assert isinstance(rel_error(torch.ones(2), torch.ones(2)), float)


def test_rel_error_is_scale_free():
    a, b = torch.randn(10, dtype=f64), torch.randn(10, dtype=f64)
    assert rel_error(a * 1e-6, b * 1e-6) == pytest.approx(rel_error(a, b), rel=1e-12)
    assert rel_error(a * 1e6, b * 1e6) == pytest.approx(rel_error(a, b), rel=1e-12)


def test_rel_error_special_values():
    inf, nan = math.inf, math.nan
    assert rel_error([inf, 1.0], [inf, 1.0]) == 0.0
    assert rel_error([inf, 1.0], [inf, 1.5]) == pytest.approx(0.5 / 2.5)
    assert math.isnan(rel_error([nan, 1.0], [0.0, 1.0]))
    assert math.isnan(rel_error([inf], [1.0]))
    assert rel_error(torch.zeros(0), torch.zeros(0)) == 0.0


def test_rel_error_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        rel_error(torch.zeros(2, 3), torch.zeros(3, 2))
    with pytest.raises(TypeError, match="a"):
        rel_error(object(), 1.0)


# --------------------------------------------------------------------- compare_with_torch
def linear_forward(x, w, b):
    return x @ w + b, (x, w)


def linear_backward(dout, cache):
    x, w = cache
    return dout @ w.T, x.T @ dout, dout.sum(0)


def linear_reference(x, w, b):
    return x @ w + b


def linear_inputs(dtype=f64):
    return [torch.randn(5, 4, dtype=dtype), torch.randn(4, 3, dtype=dtype), torch.randn(3)]


def test_compare_with_torch_accepts_a_correct_pair():
    inputs = linear_inputs()
    inputs[2] = inputs[2].double()
    report = compare_with_torch(linear_forward, linear_backward, linear_reference, inputs)
    assert isinstance(report, GradReport)
    assert report.ok(), str(report)
    assert [e.name for e in report.grads] == ["dx", "dw", "db"]
    assert report.output.shape == (5, 3) and report.grads[1].shape == (4, 3)
    assert report.output.rel_error < 1e-14 and all(e.rel_error < 1e-14 for e in report.grads)


def test_compare_with_torch_catches_a_wrong_backward_and_finds_where():
    inputs = [torch.randn(5, 4, dtype=f64), torch.randn(4, 3, dtype=f64), torch.randn(3, dtype=f64)]

    def wrong_backward(dout, cache):
        dx, dw, db = linear_backward(dout, cache)
        dw = dw.clone()
        dw[2, 1] += 0.5
        return dx, dw, db

    report = compare_with_torch(linear_forward, wrong_backward, linear_reference, inputs)
    assert not report.ok()
    dx, dw, db = report.grads
    assert dx.ok() and db.ok() and not dw.ok()
    assert dw.worst_index == (2, 1)
    assert dw.got - dw.expected == pytest.approx(0.5)
    assert report.worst() is dw
    text = str(report)
    assert "dw" in text and "(2, 1)" in text and "failed" in text


def test_compare_with_torch_catches_a_missing_factor_even_with_a_loose_tolerance():
    x = torch.randn(6, 3, dtype=f64)

    def tanh_forward(x):
        t = torch.tanh(x)
        return t, t

    def forgot_the_chain_rule(dout, t):
        return 1 - t * t  # dout is missing

    report = compare_with_torch(tanh_forward, forgot_the_chain_rule, torch.tanh, [x])
    assert not report.ok(tol=1e-2)
    assert report.grads[0].name == "dinput0"  # a builtin has no signature: numbered names


def test_compare_with_torch_reports_a_wrong_shape_without_raising():
    inputs = [torch.randn(5, 4, dtype=f64), torch.randn(4, 3, dtype=f64), torch.randn(3, dtype=f64)]

    def transposed_dw(dout, cache):
        dx, dw, db = linear_backward(dout, cache)
        return dx, dw.T, db

    report = compare_with_torch(linear_forward, transposed_dw, linear_reference, inputs)
    assert not report.ok()
    dw = report.grads[1]
    assert dw.shape == (3, 4) and dw.expected_shape == (4, 3)
    assert "shape" in dw.problem and "(3, 4)" in dw.problem and "(4, 3)" in dw.problem
    assert report.grads[0].ok() and report.grads[2].ok()
    assert "(3, 4)" in report._repr_html_()


def test_compare_with_torch_reports_missing_gradients_and_exceptions():
    inputs = [torch.randn(5, 4, dtype=f64), torch.randn(4, 3, dtype=f64), torch.randn(3, dtype=f64)]
    report = compare_with_torch(
        linear_forward,
        lambda dout, cache: linear_backward(dout, cache)[:2],
        linear_reference,
        inputs,
    )
    assert not report.ok() and "2 gradient(s), expected 3" in report.error
    assert report.grads[2].problem == "missing"

    def broken_backward(dout, cache):
        raise ZeroDivisionError("oops")

    report = compare_with_torch(linear_forward, broken_backward, linear_reference, inputs)
    assert not report.ok()
    assert report.error.startswith("ZeroDivisionError: oops")
    assert report.output.ok()  # the forward pass was fine
    assert all(e.problem == "not computed" for e in report.grads)
    assert "oops" in str(report)


def test_compare_with_torch_reports_inputs_modified_in_place():
    x = torch.randn(4, 3, dtype=f64)

    def relu_forward_in_place(x):
        x.clamp_(min=0)
        return x, x

    def relu_backward(dout, out):
        return dout * (out > 0)

    report = compare_with_torch(relu_forward_in_place, relu_backward, torch.relu, [x])
    assert report.modified_inputs == ["input0"]
    assert not report.ok()


def test_compare_with_torch_with_class_ids_and_a_scalar_loss():
    logits = torch.randn(6, 4, dtype=f64)
    y = torch.randint(0, 4, (6,))

    def ce_forward(logits, y):
        log_p = logits - logits.logsumexp(dim=1, keepdim=True)
        return -log_p[torch.arange(len(y)), y].mean(), (log_p, y)

    def ce_backward(dout, cache):
        log_p, y = cache
        d = log_p.exp()
        d[torch.arange(len(y)), y] -= 1
        return d * dout / len(y)

    def reference(logits, y):
        return torch.nn.functional.cross_entropy(logits, y)

    report = compare_with_torch(ce_forward, ce_backward, reference, [logits, y])
    assert report.ok(), str(report)
    assert [e.name for e in report.grads] == ["dlogits"]  # no gradient for the class ids
    report = compare_with_torch(ce_forward, ce_backward, reference, [logits, y], dout=2.5)
    assert report.ok(), str(report)


def test_compare_with_torch_wrt_and_names():
    x, gamma = torch.randn(8, 3, dtype=f64), torch.randn(3, dtype=f64)
    stats = torch.zeros(3, dtype=f64)  # a float input that gets no gradient

    def forward(x, gamma, stats):
        return x * gamma, (x, gamma)

    def backward(dout, cache):
        x, gamma = cache
        return dout * gamma, (dout * x).sum(0)

    report = compare_with_torch(
        forward, backward, lambda x, g, s: x * g, [x, gamma, stats], wrt=[0, 1], names=["dx", "dg"]
    )
    assert report.ok(), str(report)
    assert [e.name for e in report.grads] == ["dx", "dg"]
    with pytest.raises(ValueError, match="names"):
        compare_with_torch(forward, backward, lambda x, g, s: x * g, [x, gamma, stats], names=["a"])


def test_compare_with_torch_flags_a_gradient_of_the_wrong_dtype():
    inputs = [torch.randn(5, 4, dtype=f64), torch.randn(4, 3, dtype=f64), torch.randn(3, dtype=f64)]

    def float32_dx(dout, cache):
        dx, dw, db = linear_backward(dout, cache)
        return dx.float(), dw, db

    report = compare_with_torch(linear_forward, float32_dx, linear_reference, inputs)
    assert "dtype" in report.grads[0].problem and not report.ok(tol=1e-3)


def test_compare_with_torch_on_float32_inputs_passes_a_float32_tolerance():
    inputs = [torch.randn(5, 4), torch.randn(4, 3), torch.randn(3)]
    report = compare_with_torch(linear_forward, linear_backward, linear_reference, inputs)
    assert report.ok(tol=1e-5) and not report.ok(tol=1e-12)
    assert "passed (tol 1e-05)" in report.to_text(tol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_numerical_grad_and_compare_on_cuda():
    x = torch.randn(3, 4, dtype=f64, device="cuda")
    grad = numerical_grad(lambda t: (t**3).sum(), x)
    assert grad.device == x.device and rel_error(grad, 3 * x**2) < 1e-8
    inputs = [t.cuda() for t in linear_inputs()]
    inputs[2] = inputs[2].double()
    report = compare_with_torch(linear_forward, linear_backward, linear_reference, inputs)
    assert report.ok(tol=1e-10), str(report)
