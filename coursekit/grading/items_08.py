"""Graded items of lesson 08 (deep nets): batchnorm backward, clipping by global norm, He init.

The references are torch itself: torch.autograd through the batchnorm forward,
``torch.nn.utils.clip_grad_norm_`` on copies of the gradients, and for the
initialization the statistics of a large draw (mean 0, variance 2 / fan_in).
"""

from __future__ import annotations

import math

import torch

from coursekit.grading.context import GradingContext
from coursekit.grading.hints import Mistake
from coursekit.grading.reference import describe_shapes
from coursekit.grading.registry import item


# ---------------------------------------------------------------------------- 08.batchnorm_backward
def _batchnorm(
    x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float, *, unbiased=False
):
    """Train-mode batchnorm over the batch (dim 0): gamma * (x - mu) / sqrt(var + eps) + beta."""
    mu = x.mean(0)
    var = x.var(0, unbiased=unbiased)
    return gamma * (x - mu) / torch.sqrt(var + eps) + beta


def _batchnorm_grads(dout, x, gamma, eps, *, unbiased=False):
    """(dx, dgamma, dbeta) from torch.autograd."""
    xs = x.clone().requires_grad_(True)
    gs = gamma.clone().requires_grad_(True)
    bs = torch.zeros_like(gamma, requires_grad=True)
    with torch.enable_grad():
        out = _batchnorm(xs, gs, bs, eps, unbiased=unbiased)
        grads = torch.autograd.grad(out, (xs, gs, bs), dout)
    return tuple(g.detach() for g in grads)


@item(
    "08.batchnorm_backward",
    points=3,
    description="dx, dgamma, dbeta of train-mode batch normalization over (N, D)",
    signature="fn(dout, cache) -> (dx, dgamma, dbeta), cache = (x, gamma, eps)",
    covers="batches of 2 to 16, one feature, small and large eps",
)
def batchnorm_backward(ctx: GradingContext, fn) -> None:
    cases = [(4, 3, 1e-5), (2, 5, 1e-5), (16, 4, 1e-5), (7, 1, 0.1), (3, 2, 1e-5), (9, 6, 1.0)]
    for n, d, eps in cases:
        x = ctx.randn(n, d, scale=2.0) + ctx.randn(1, d)
        gamma, dout = ctx.uniform(d, low=0.5, high=2.0), ctx.randn(n, d)
        with ctx.case(f"{describe_shapes(x=x, gamma=gamma)}, eps = {eps:g}"):
            expected = _batchnorm_grads(dout, x, gamma, eps)
            std = torch.sqrt(x.var(0, unbiased=False) + eps)
            xhat = (x - x.mean(0)) / std
            dx_mistakes = [
                Mistake(
                    dout * gamma / std,
                    "dx = dout * gamma / std ignores the paths through the mean and the "
                    "variance: both depend on every x in the column. Add them: "
                    "dx = gamma / (N * std) * (N * dout - sum(dout) - xhat * sum(dout * xhat)), "
                    "the sums over the batch (dim 0).",
                ),
                Mistake(
                    gamma / std * (dout - dout.mean(0)),
                    "Only the path through the mean is there; the path through the variance "
                    "is missing: subtract xhat * mean(dout * xhat) as well.",
                ),
            ]
            if n > 1:
                std_u = torch.sqrt(x.var(0, unbiased=True) + eps)
                xhat_u = (x - x.mean(0)) / std_u
                unbiased_formula = (
                    gamma / (n * std_u) * (n * dout - dout.sum(0) - xhat_u * (dout * xhat_u).sum(0))
                )
                dx_mistakes.append(
                    Mistake(
                        unbiased_formula,
                        "The variance is the unbiased one (x.var(0) divides by N - 1). "
                        "Batchnorm normalizes with the biased variance, var = mean((x - mu)**2), "
                        "divided by N: x.var(0, unbiased=False).",
                    )
                )
                dx_mistakes.append(
                    Mistake(
                        _batchnorm_grads(dout, x, gamma, eps, unbiased=True)[0],
                        "That is the gradient with the unbiased variance (divided by N - 1). "
                        "Batchnorm normalizes with the biased variance, var = mean((x - mu)**2), "
                        "divided by N: x.var(0, unbiased=False).",
                    )
                )
            mistakes = {
                "dx": dx_mistakes,
                "dgamma": [
                    Mistake(
                        dout * xhat,
                        "dgamma has one value per feature: sum dout * xhat over the batch, "
                        "(dout * xhat).sum(0), since gamma is shared by every example.",
                        shape_only=True,
                    ),
                    Mistake(
                        (dout * (x - x.mean(0))).sum(0),
                        "dgamma multiplies dout by the normalized "
                        "xhat = (x - mu) / sqrt(var + eps), "
                        "not by x - mu.",
                    ),
                ],
                "dbeta": [
                    Mistake(
                        dout,
                        "dbeta has one value per feature: sum dout over the batch, dout.sum(0).",
                        shape_only=True,
                    ),
                ],
            }
            if n > 1:
                unbiased_std = torch.sqrt(x.var(0, unbiased=True) + eps)
                mistakes["dgamma"].append(
                    Mistake(
                        (dout * (x - x.mean(0)) / unbiased_std).sum(0),
                        "xhat uses the biased variance (divided by N): x.var(0, unbiased=False).",
                    )
                )
            got = ctx.call(
                fn,
                dout,
                (x, gamma, eps),
                names=("dout", "cache"),
                labels={"cache[0]": "cache[0] (x)", "cache[1]": "cache[1] (gamma)"},
            )
            ctx.compare(
                got,
                expected,
                ("dx", "dgamma", "dbeta"),
                mistakes=mistakes,
                batch=n,
                shape_of={"dx": "x", "dgamma": "gamma", "dbeta": "gamma"},
            )


# ---------------------------------------------------------------------------- 08.clip_grad_norm
def _clip_reference(grads: list[torch.Tensor], max_norm: float):
    """torch.nn.utils.clip_grad_norm_ on copies: (clipped gradients, norm before clipping)."""
    params = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    for p, g in zip(params, grads, strict=True):
        p.grad = g.clone()
    total = torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=False)
    return [p.grad.detach().clone() for p in params], total.detach().to(torch.float64)


@item(
    "08.clip_grad_norm",
    points=2,
    description="clip gradients by their global L2 norm, as torch.nn.utils.clip_grad_norm_",
    signature="fn(grads: list of tensors, max_norm) -> (clipped_grads, total_norm)",
    covers="one to four gradients of any shape, norms above and below max_norm; "
    "inputs left unchanged",
)
def clip_grad_norm(ctx: GradingContext, fn) -> None:
    cases = [
        ([(3, 4), (4,)], 1.0, "above"),
        ([(5,)], 100.0, "below"),
        ([(2, 3), (3,), (), (4, 2, 2)], 0.5, "above"),
        ([(6, 2), (2,)], 50.0, "below"),
        ([(1,), (10,), (3, 3)], 2.0, "above"),
    ]
    for shapes, max_norm, where in cases:
        grads = [ctx.randn(*s, scale=3.0) for s in shapes]
        shown = ", ".join(str(tuple(g.shape)) for g in grads)
        with ctx.case(f"grads of shapes [{shown}], max_norm = {max_norm:g} (norm {where} it)"):
            expected, total = _clip_reference(grads, max_norm)
            got = ctx.call(fn, list(grads), max_norm, names=("grads", "max_norm"))
            if got is None:
                ctx.fail(f"`{ctx.function_name}` returned None.", "Did you forget `return`?")
            if not isinstance(got, (tuple, list)) or len(got) != 2:
                ctx.fail(
                    f"`{ctx.function_name}` should return a pair (clipped_grads, total_norm).",
                    "return clipped, total_norm",
                )
            clipped, got_total = got
            if isinstance(clipped, torch.Tensor) or not isinstance(clipped, (list, tuple)):
                ctx.fail(
                    "clipped_grads should be a list of tensors, one per gradient, got "
                    f"a {type(clipped).__name__}.",
                    "Return [g * scale for g in grads].",
                )
            if len(clipped) != len(grads):
                ctx.fail(
                    f"clipped_grads has {len(clipped)} tensors; there are {len(grads)} gradients.",
                )
            sum_of_norms = sum(float(torch.linalg.vector_norm(g)) for g in grads)
            squared = float(sum((g**2).sum() for g in grads))
            ctx.compare(
                got_total,
                total,
                ("total_norm",),
                mistakes={
                    "total_norm": [
                        Mistake(
                            torch.tensor(sum_of_norms, dtype=torch.float64),
                            "The global norm is not the sum of the norms: it is the norm of "
                            "all entries together, sqrt(sum over grads of (g**2).sum()).",
                        ),
                        Mistake(
                            torch.tensor(squared, dtype=torch.float64),
                            "The square root is missing: total_norm = sqrt(sum of g**2).",
                        ),
                        Mistake(
                            torch.tensor(min(float(total), max_norm), dtype=torch.float64),
                            "Return the norm before clipping, as torch.nn.utils.clip_grad_norm_ "
                            "does (it is what one monitors during training).",
                        ),
                    ]
                },
            )
            scale_always = max_norm / (float(total) + 1e-6)
            for i, g in enumerate(grads):
                own = max_norm / (float(torch.linalg.vector_norm(g)) + 1e-6)
                mistakes = [
                    Mistake(
                        g * min(1.0, own),
                        "Each gradient was clipped by its own norm. Clip by the global norm "
                        "over all gradients together, and scale every one by the same factor, "
                        "so that the direction of the whole gradient is kept.",
                    ),
                    Mistake(
                        g.clamp(-max_norm, max_norm),
                        "That clips each entry by value (clamp). Clipping by norm rescales "
                        "every gradient by max_norm / (total_norm + 1e-6).",
                    ),
                ]
                if where == "below":
                    mistakes.append(
                        Mistake(
                            g * scale_always,
                            "The gradients were scaled although total_norm <= max_norm. Scale "
                            "only when total_norm > max_norm: the factor is "
                            "min(1, max_norm / (total_norm + 1e-6)).",
                        )
                    )
                ctx.compare(
                    clipped[i],
                    expected[i],
                    (f"clipped_grads[{i}]",),
                    mistakes={f"clipped_grads[{i}]": mistakes},
                    shape_of={f"clipped_grads[{i}]": f"grads[{i}]"},
                )


# ---------------------------------------------------------------------------- 08.he_init
_HE = (
    "w = torch.randn(fan_in, fan_out, generator=generator, dtype=torch.float64) * sqrt(2 / fan_in)"
)


def _he_variance_hint(ratio: float, fan_in: int, fan_out: int) -> str | None:
    """Name the mistake whose variance / (2 / fan_in) is close to ``ratio``."""
    candidates = [
        (
            fan_in / fan_out,
            "The variance is 2 / fan_out. He initialization keeps the forward signal: "
            "Var[w] = 2 / fan_in, fan_in being the number of inputs of each unit (rows of w).",
        ),
        (
            0.5,
            "The variance is 1 / fan_in (LeCun). A ReLU zeroes half of its inputs, so He "
            "doubles it: Var[w] = 2 / fan_in.",
        ),
        (
            fan_in / (fan_in + fan_out),
            "That is Xavier/Glorot, 2 / (fan_in + fan_out). He uses 2 / fan_in.",
        ),
        (
            2 / fan_in,
            "The standard deviation is 2 / fan_in: that number is the variance. Multiply the "
            "standard normal by its square root, sqrt(2 / fan_in).",
        ),
    ]
    for want, hint in candidates:
        if abs(ratio / want - 1) < 0.1 and abs(want - 1) > 0.15:
            return hint
    return None


def _check_weights(ctx: GradingContext, w, fan_in: int, fan_out: int) -> torch.Tensor:
    fn = f"`{ctx.function_name}`"
    if w is None:
        ctx.fail(f"{fn} returned None.", "Did you forget the `return` statement?")
    if not isinstance(w, torch.Tensor):
        ctx.fail(f"{fn} should return a tensor, got a {type(w).__name__}.", _HE)
    if tuple(w.shape) != (fan_in, fan_out):
        hint = (
            "The layout is (fan_in, fan_out), as in x @ w: rows are inputs, columns are units."
            if tuple(w.shape) == (fan_out, fan_in)
            else _HE
        )
        ctx.fail(f"w has shape {tuple(w.shape)}, expected ({fan_in}, {fan_out}).", hint)
    if w.dtype not in (torch.float32, torch.float64):
        ctx.fail(f"w has dtype {w.dtype}; expected float64 (or float32).", _HE)
    if not bool(torch.isfinite(w).all()):
        ctx.fail("w contains nan or inf.", _HE)
    return w.double()


@item(
    "08.he_init",
    points=1,
    description="He (Kaiming) normal initialization: w ~ N(0, 2 / fan_in), shape (fan_in, fan_out)",
    signature="fn(fan_in, fan_out, generator) -> tensor (fan_in, fan_out)",
    covers="mean and variance of large draws, normal not uniform, small shapes, "
    "reproducible from the generator",
)
def he_init(ctx: GradingContext, fn) -> None:
    names = ("fan_in", "fan_out", "generator")
    for fan_in, fan_out in [(400, 100), (3, 40000), (256, 512), (1, 1), (5, 2)]:
        seed = int(ctx.randint(2**31 - 1, 1).item())
        with ctx.case(f"fan_in = {fan_in}, fan_out = {fan_out}"):
            w = ctx.call(fn, fan_in, fan_out, torch.Generator().manual_seed(seed), names=names)
            w = _check_weights(ctx, w, fan_in, fan_out)
            again = ctx.call(fn, fan_in, fan_out, torch.Generator().manual_seed(seed), names=names)
            again = _check_weights(ctx, again, fan_in, fan_out)
            if not torch.equal(w, again):
                ctx.fail(
                    "Two calls with generators seeded alike gave different weights.",
                    "Draw with the generator you are given: torch.randn(..., "
                    "generator=generator). Without it, torch's global random state is used.",
                )
            other = ctx.call(
                fn, fan_in, fan_out, torch.Generator().manual_seed(seed + 1), names=names
            )
            other = _check_weights(ctx, other, fan_in, fan_out)
            if torch.equal(w, other):
                ctx.fail(
                    "Generators with different seeds gave the same weights.",
                    "Do not seed a generator of your own inside the function: draw from the "
                    "one passed in.",
                )
            n = w.numel()
            if n < 10_000:
                continue
            want_var = 2 / fan_in
            mean, var = w.mean().item(), w.var().item()
            if abs(mean) > 6 * math.sqrt(want_var / n):
                ctx.fail(
                    f"The weights' mean is {mean:.3g}; it should be close to 0 "
                    f"(within {6 * math.sqrt(want_var / n):.1g} for {n} draws).",
                    "He weights are centred: N(0, 2 / fan_in). " + _HE,
                )
            ratio = var / want_var
            if abs(ratio - 1) > 0.05:
                ctx.fail(
                    f"The weights' variance is {var:.4g}; expected 2 / fan_in = {want_var:.4g}.",
                    _he_variance_hint(ratio, fan_in, fan_out) or _HE,
                )
            inside = (w.abs() < math.sqrt(want_var)).double().mean().item()
            if abs(inside - 0.6827) > 0.02:
                ctx.fail(
                    f"{inside:.1%} of the weights lie within one standard deviation of 0; "
                    "for a normal distribution it is 68.3%.",
                    "The weights should be normal, not uniform: torch.randn, not torch.rand. "
                    + _HE,
                )
