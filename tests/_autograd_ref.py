"""Reference gradients from torch.autograd, for the tests of coursekit.functional.

The tests run a hand-written forward/backward pair and the same function written
with torch ops, differentiate the latter with torch.autograd (in float64), and
compare the two.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor


def rel_error(a: Tensor, b: Tensor, tiny: float = 1e-300) -> float:
    """max|a - b| / max(|a| + |b|): the largest error relative to the size of the values.

    Unlike an element-wise relative error it does not blow up where both values are
    (nearly) zero; two all-zero tensors have error 0.
    """
    a = torch.as_tensor(a).detach().double()
    b = torch.as_tensor(b).detach().double().to(a.device)
    if a.shape != b.shape:
        raise AssertionError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.numel() == 0:
        return 0.0
    return ((a - b).abs().max() / (a.abs() + b.abs()).max().clamp_min(tiny)).item()


def autograd_reference(
    fn: Callable[..., Tensor],
    inputs: Sequence[Any],
    dout: Tensor | float,
    wrt: Sequence[int],
    **options: Any,
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """fn(*inputs, **options) in float64 and its gradients w.r.t. inputs[i] for i in wrt.

    Floating-point inputs are copied to float64 leaves; the gradients are those of
    sum(out * dout), i.e. dout is the upstream gradient, as in a backward pass.
    """
    leaves = []
    for i, t in enumerate(inputs):
        if isinstance(t, Tensor) and t.is_floating_point():
            t = t.detach().to(torch.float64).clone().requires_grad_(i in wrt)
        leaves.append(t)
    with torch.enable_grad():
        out = fn(*leaves, **options)
        grad_out = torch.as_tensor(dout, dtype=torch.float64, device=out.device).expand_as(out)
        grads = torch.autograd.grad(out, [leaves[i] for i in wrt], grad_out)
    return out.detach(), tuple(grads)


def compare_with_autograd(
    forward: Callable[..., tuple[Tensor, Any]],
    backward: Callable[[Any, Any], Any],
    reference: Callable[..., Tensor],
    inputs: Sequence[Any],
    *,
    tol: float,
    wrt: Sequence[int] | None = None,
    dout: Tensor | float | None = None,
    options: dict[str, Any] | None = None,
    reference_options: dict[str, Any] | None = None,
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Check a forward/backward pair against autograd; return (out, grads).

    Checks: out and every gradient match the float64 autograd reference within tol
    (relative error); they keep the inputs' shape, dtype and device; a single
    gradient comes back alone, several as a tuple in input order; neither the
    inputs nor dout are modified.
    """
    options = options or {}
    reference_options = options if reference_options is None else reference_options
    if wrt is None:
        wrt = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.is_floating_point()]
    before = [t.clone() if isinstance(t, Tensor) else t for t in inputs]

    out, cache = forward(*inputs, **options)
    if dout is None:
        gen = torch.Generator().manual_seed(1234)
        dout = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(out.device, out.dtype)
    dout_before = dout.clone() if isinstance(dout, Tensor) else dout
    grads = backward(dout, cache)

    if len(wrt) == 1:
        assert isinstance(grads, Tensor), f"one tensor input: expected a Tensor, got {type(grads)}"
        grads = (grads,)
    assert isinstance(grads, tuple) and len(grads) == len(wrt), f"expected {len(wrt)} gradients"

    ref_out, ref_grads = autograd_reference(reference, inputs, dout, wrt, **reference_options)
    first = inputs[wrt[0]]
    assert out.dtype == first.dtype and out.device == first.device, (out.dtype, out.device)
    assert out.shape == ref_out.shape, f"out shape {tuple(out.shape)} != {tuple(ref_out.shape)}"
    err = rel_error(out, ref_out)
    assert err < tol, f"forward: relative error {err:.2e} >= {tol:.0e}"
    for i, grad, ref in zip(wrt, grads, ref_grads, strict=True):
        x = inputs[i]
        assert isinstance(grad, Tensor), f"gradient {i} is a {type(grad).__name__}"
        assert grad.shape == x.shape, f"gradient {i}: shape {tuple(grad.shape)} != {tuple(x.shape)}"
        assert grad.dtype == x.dtype and grad.device == x.device, (i, grad.dtype, grad.device)
        err = rel_error(grad, ref)
        assert err < tol, f"gradient of input {i}: relative error {err:.2e} >= {tol:.0e}"

    for i, (now, then) in enumerate(zip(inputs, before, strict=True)):
        if isinstance(now, Tensor):
            assert torch.equal(now, then), f"input {i} was modified"
    if isinstance(dout, Tensor):
        assert torch.equal(dout, dout_before), "dout was modified"
    return out, grads
