"""Graded items of lesson 06 (training): mini-batches, a momentum step and an Adam step.

The references are torch itself: ``torch.randperm`` for the batches (checked by
their properties: every index once, the right sizes, shuffled, reproducible from
the generator), and one step of ``torch.optim.SGD`` / ``torch.optim.Adam`` started
from the given optimizer state.
"""

from __future__ import annotations

import torch

from coursekit.grading.context import GradingContext
from coursekit.grading.hints import Mistake
from coursekit.grading.reference import describe_shapes
from coursekit.grading.registry import item

# ---------------------------------------------------------------------------- references


def _sgd_momentum_reference(
    w: torch.Tensor, grad: torch.Tensor, velocity: torch.Tensor, lr: float, momentum: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of torch.optim.SGD(momentum=...) whose momentum buffer holds ``velocity``.

    With momentum 0, torch keeps no buffer; the velocity is then 0 * v + grad = grad.
    """
    p = torch.nn.Parameter(w.clone())
    p.grad = grad.clone()
    optimizer = torch.optim.SGD([p], lr=lr, momentum=momentum)
    optimizer.state[p]["momentum_buffer"] = velocity.clone()
    optimizer.step()
    buffer = optimizer.state[p]["momentum_buffer"] if momentum != 0 else grad
    return p.detach().clone(), buffer.detach().clone()


def _adam_reference(
    w: torch.Tensor,
    grad: torch.Tensor,
    m: torch.Tensor,
    v: torch.Tensor,
    t: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Step number ``t`` (1-based) of torch.optim.Adam, its moments being ``m`` and ``v``."""
    p = torch.nn.Parameter(w.clone())
    p.grad = grad.clone()
    optimizer = torch.optim.Adam([p], lr=lr, betas=(beta1, beta2), eps=eps, foreach=False)
    state = optimizer.state[p]
    state["step"] = torch.tensor(float(t - 1), dtype=torch.float64)  # step() adds one
    state["exp_avg"] = m.clone()
    state["exp_avg_sq"] = v.clone()
    optimizer.step()
    return p.detach().clone(), state["exp_avg"].clone(), state["exp_avg_sq"].clone()


# ---------------------------------------------------------------------------- 06.minibatches
_USE_RANDPERM = (
    "Draw one permutation of all the indices, order = torch.randperm(n, generator=generator), "
    "then cut it into consecutive pieces: list(order.split(batch_size))."
)


def _seed(ctx: GradingContext) -> int:
    return int(ctx.randint(2**31 - 1, 1).item())


def _check_batches(ctx: GradingContext, got, n: int, batch_size: int) -> list[torch.Tensor]:
    """Fail unless ``got`` is a list of int64 index tensors partitioning range(n) correctly."""
    fn = f"`{ctx.function_name}`"
    if isinstance(got, torch.Tensor):
        ctx.fail(
            f"{fn} returned one tensor of shape {tuple(got.shape)}; it should return a list "
            "of 1-D index tensors, one per batch.",
            _USE_RANDPERM,
        )
    if got is None:
        ctx.fail(f"{fn} returned None.", "Did you forget the `return` statement?")
    try:
        batches = list(got)
    except TypeError:
        ctx.fail(f"{fn} should return a list of index tensors, got a {type(got).__name__}.")
    for i, batch in enumerate(batches):
        if not isinstance(batch, torch.Tensor):
            ctx.fail(
                f"batch {i} is a {type(batch).__name__}; every batch should be a tensor of "
                "indices.",
                _USE_RANDPERM,
            )
        if batch.dtype != torch.int64:
            ctx.fail(
                f"batch {i} has dtype {batch.dtype}; indices are int64 (LongTensor).",
                "torch.randperm already gives int64: keep it, do not convert to float.",
            )
        if batch.dim() != 1:
            ctx.fail(
                f"batch {i} has shape {tuple(batch.shape)}; every batch is 1-D, (batch size,).",
                _USE_RANDPERM,
            )
    everything = torch.cat(batches) if batches else torch.zeros(0, dtype=torch.int64)
    if everything.numel() and (everything.min() < 0 or everything.max() >= n):
        ctx.fail(
            f"An index is outside 0 .. {n - 1}: found {int(everything.min())} .. "
            f"{int(everything.max())}.",
            "The indices are positions 0 .. n-1 of the examples: torch.randperm(n).",
        )
    counts = torch.bincount(everything, minlength=n)
    if bool((counts > 1).any()):
        ctx.fail(
            f"Some indices appear more than once: {int((counts > 1).sum())} of them, and "
            f"{int((counts == 0).sum())} never appear.",
            "Each example must appear exactly once per epoch. Sampling with replacement "
            "(torch.randint) repeats some examples and skips others; a permutation "
            "(torch.randperm) uses each exactly once. Also check that the batches do not "
            "overlap: batch i is order[i * batch_size : (i + 1) * batch_size].",
        )
    want = [batch_size] * (n // batch_size) + ([n % batch_size] if n % batch_size else [])
    sizes = [len(b) for b in batches]
    if sizes != want:
        shown = sizes if len(sizes) <= 12 else sizes[:5] + ["..."] + sizes[-3:]
        expected = want if len(want) <= 12 else want[:5] + ["..."] + want[-3:]
        hint = None
        if sizes == want[:-1] and n % batch_size:
            hint = (
                f"The last, smaller batch (the {n % batch_size} of {n} examples left over) "
                "is missing: it was dropped. Keep it, so that every example is used once per "
                "epoch: range(0, n, batch_size) includes the last start."
            )
        elif len(sizes) == min(batch_size, n) and len(want) != len(sizes):
            hint = (
                "You made batch_size batches. batch_size is the number of examples in each "
                "batch, not the number of batches: torch.chunk(order, k) makes k pieces, "
                "order.split(batch_size) makes pieces of batch_size."
            )
        ctx.fail(f"The batch sizes are {shown}, expected {expected}.", hint or _USE_RANDPERM)
    if bool((counts == 0).any()):
        ctx.fail(
            f"{int((counts == 0).sum())} index(es) never appear.",
            "Each example must appear exactly once per epoch. " + _USE_RANDPERM,
        )
    if n >= 8 and torch.equal(everything, torch.arange(n)):
        ctx.fail(
            "The indices come out in order 0, 1, 2, ...: they are not shuffled.",
            "Shuffle before batching, or every epoch shows the examples in the same order "
            "(and a sorted dataset gives batches of one class). " + _USE_RANDPERM,
        )
    return batches


@item(
    "06.minibatches",
    points=2,
    description="a shuffled partition of range(n) into mini-batches (one epoch)",
    signature="fn(n, batch_size, generator) -> list of int64 index tensors",
    covers="n divisible by batch_size or not, batch_size 1 and >= n, reproducible from the "
    "generator",
    hand_written=True,
)
def minibatches(ctx: GradingContext, fn) -> None:
    cases = [(10, 3), (37, 5), (12, 4), (100, 32), (8, 8), (5, 10), (9, 1), (1, 1), (64, 7)]
    for n, batch_size in cases:
        seed = _seed(ctx)
        with ctx.case(f"n = {n}, batch_size = {batch_size}"):
            got = ctx.call(
                fn,
                n,
                batch_size,
                torch.Generator().manual_seed(seed),
                names=("n", "batch_size", "generator"),
            )
            first = _check_batches(ctx, got, n, batch_size)
            again = ctx.call(
                fn,
                n,
                batch_size,
                torch.Generator().manual_seed(seed),
                names=("n", "batch_size", "generator"),
            )
            second = _check_batches(ctx, again, n, batch_size)
            if not all(torch.equal(a, b) for a, b in zip(first, second, strict=True)):
                ctx.fail(
                    "Two calls with generators seeded alike gave different batches.",
                    "Use the generator you are given: torch.randperm(n, generator=generator). "
                    "Without it, torch's global random state is used and the shuffling "
                    "cannot be reproduced.",
                )
            if n >= 8:
                other = ctx.call(
                    fn,
                    n,
                    batch_size,
                    torch.Generator().manual_seed(seed + 1),
                    names=("n", "batch_size", "generator"),
                )
                third = _check_batches(ctx, other, n, batch_size)
                if torch.equal(torch.cat(first), torch.cat(third)):
                    ctx.fail(
                        "Generators with different seeds gave the same order.",
                        "Do not seed a generator of your own inside the function: the order "
                        "must come from the generator passed in, so that every epoch (and "
                        "every seed) shuffles differently.",
                    )


# ---------------------------------------------------------------------------- 06.momentum_step
@item(
    "06.momentum_step",
    points=2,
    description="one SGD step with momentum, torch.optim.SGD's convention",
    signature="fn(w, grad, velocity, lr, momentum) -> (w_new, velocity_new)",
    covers="first step (velocity 0), momentum 0 and up to 0.99, five steps in a row; "
    "inputs left unchanged",
)
def momentum_step(ctx: GradingContext, fn) -> None:
    cases = [((3,), True, 0.9), ((4, 5), False, 0.9), ((2, 3, 2), False, 0.5), ((6,), False, 0.0)]
    cases += [((), False, 0.99), ((1, 7), False, 0.8)]
    names = ("w", "grad", "velocity", "lr", "momentum")
    for shape, first_step, mu in cases:
        w, grad = ctx.randn(*shape), ctx.randn(*shape)
        velocity = torch.zeros(shape, dtype=torch.float64) if first_step else ctx.randn(*shape)
        lr = round(ctx.uniform(1, low=0.01, high=0.5).item(), 3)
        label = "first step, velocity = 0" if first_step else "velocity from earlier steps"
        with ctx.case(f"{describe_shapes(w=w)}, {label}, lr = {lr:g}, momentum = {mu:g}"):
            expected = _sgd_momentum_reference(w, grad, velocity, lr, mu)
            v_torch = mu * velocity + grad
            v_damped = mu * velocity + (1 - mu) * grad
            v_other = mu * velocity - lr * grad  # the "w = w + v" convention
            mistakes = {
                "w_new": [
                    Mistake(
                        w + lr * v_torch,
                        "The sign is flipped: a descent step subtracts, w_new = w - lr * v.",
                    ),
                    Mistake(
                        w - lr * velocity,
                        "You stepped with the old velocity. Update it first, "
                        "v = momentum * v + grad, then step with the new one: w - lr * v.",
                    ),
                    Mistake(
                        w - lr * v_damped,
                        "torch.optim.SGD does not damp the gradient: v = momentum * v + grad, "
                        "without a factor (1 - momentum) (that is the running-average form).",
                    ),
                    Mistake(
                        w + v_other,
                        "That is the other convention (v = momentum * v - lr * grad, "
                        "w = w + v). Use torch.optim.SGD's: v = momentum * v + grad, "
                        "w = w - lr * v.",
                    ),
                ]
                + (
                    [
                        Mistake(
                            w - lr * grad,
                            "Momentum is missing: the step uses v = momentum * v + grad, "
                            "not grad alone.",
                        )
                    ]
                    if not first_step and mu > 0
                    else []
                ),
                "velocity_new": [
                    Mistake(
                        velocity,
                        "The momentum buffer was not updated: return the new velocity "
                        "v = momentum * v + grad, not the one you were given.",
                    ),
                    Mistake(
                        -v_torch,
                        "velocity_new has the wrong sign: v = momentum * v + grad, "
                        "and the step subtracts it (w - lr * v).",
                    ),
                    Mistake(
                        v_damped,
                        "torch.optim.SGD does not damp the gradient: v = momentum * v + grad, "
                        "without a factor (1 - momentum).",
                    ),
                    Mistake(
                        v_other,
                        "That is the other convention (v = momentum * v - lr * grad). Use "
                        "torch.optim.SGD's: v = momentum * v + grad.",
                    ),
                    Mistake(
                        mu * velocity,
                        "The gradient is missing from the velocity: v = momentum * v + grad.",
                    ),
                ],
            }
            got = ctx.call(fn, w, grad, velocity, lr, mu, names=names)
            ctx.compare(
                got,
                expected,
                ("w_new", "velocity_new"),
                mistakes=mistakes,
                shape_of={"w_new": "w", "velocity_new": "velocity"},
            )

    shape, mu, lr = (4,), 0.9, 0.1
    w, velocity = ctx.randn(*shape), torch.zeros(shape, dtype=torch.float64)
    with ctx.case(f"five steps in a row from velocity 0, lr = {lr:g}, momentum = {mu:g}"):
        w_ref, v_ref = w.clone(), velocity.clone()
        for step in range(1, 6):
            grad = ctx.randn(*shape)
            w_ref, v_ref = _sgd_momentum_reference(w_ref, grad, v_ref, lr, mu)
            got = ctx.call(fn, w, grad, velocity, lr, mu, names=names)
            ctx.compare(got, (w_ref, v_ref), ("w_new", "velocity_new"), what=f"step {step}")
            w, velocity = got


# ---------------------------------------------------------------------------- 06.adam_step
_BIAS = (
    "Bias correction is missing. m and v start at 0, so early on they are too small by the "
    "factors (1 - beta1**t) and (1 - beta2**t): step with m_hat = m / (1 - beta1**t) and "
    "v_hat = v / (1 - beta2**t), where t is the 1-based step count."
)


_T_FROM_ZERO = (
    "At t = 1 the bias correction 1 - beta1**t is 1 - beta1; counted from 0 it is "
    "1 - beta1**0 = 0, and m / 0 is inf or nan. t is the 1-based number of this step: use it "
    "as it is, (1 - beta1**t) and (1 - beta2**t)."
)


@item(
    "06.adam_step",
    points=3,
    description="one Adam step with bias correction, as torch.optim.Adam",
    signature="fn(w, grad, m, v, t, lr, beta1, beta2, eps) -> (w_new, m_new, v_new)",
    covers="t = 1 from zero moments, later steps (t up to 1000), large eps, ten steps in a "
    "row; inputs left unchanged",
)
def adam_step(ctx: GradingContext, fn) -> None:
    names = ("w", "grad", "m", "v", "t", "lr", "beta1", "beta2", "eps")
    cases = [
        ((3,), 1, 0.9, 0.999, 1e-8),
        ((4, 5), 1, 0.9, 0.999, 1e-8),
        ((2, 3), 2, 0.9, 0.999, 1e-8),
        ((5,), 10, 0.8, 0.99, 1e-8),
        ((3, 2, 2), 1000, 0.9, 0.999, 1e-8),
        ((6,), 3, 0.9, 0.999, 0.1),
        ((), 7, 0.5, 0.9, 1e-6),
    ]
    for shape, t, beta1, beta2, eps in cases:
        w, grad = ctx.randn(*shape), ctx.randn(*shape)
        if t == 1:
            m, v = torch.zeros(shape, dtype=torch.float64), torch.zeros(shape, dtype=torch.float64)
        else:
            m, v = 0.5 * ctx.randn(*shape), ctx.uniform(*shape, low=0.1, high=2.0)
        lr = round(ctx.uniform(1, low=0.001, high=0.1).item(), 4)
        description = (
            f"{describe_shapes(w=w)}, t = {t}, lr = {lr:g}, betas = ({beta1:g}, {beta2:g}), "
            f"eps = {eps:g}"
        )
        with ctx.case(description):
            expected = _adam_reference(w, grad, m, v, t, lr, beta1, beta2, eps)
            m_new = beta1 * m + (1 - beta1) * grad
            v_new = beta2 * v + (1 - beta2) * grad**2
            c1, c2 = 1 - beta1**t, 1 - beta2**t
            m_hat, v_hat = m_new / c1, v_new / c2
            w_mistakes = [
                Mistake(w - lr * m_new / (v_new.sqrt() + eps), _BIAS),
                Mistake(
                    w + lr * m_hat / (v_hat.sqrt() + eps),
                    "The sign is flipped: w_new = w - lr * m_hat / (sqrt(v_hat) + eps).",
                ),
                Mistake(
                    w - lr * m_hat / (v_hat + eps).sqrt(),
                    "eps goes outside the square root: sqrt(v_hat) + eps, as in torch.",
                ),
                Mistake(
                    w - lr * m_hat / (v_hat + eps),
                    "Divide by the square root of v_hat: sqrt(v_hat) + eps. v is a mean of "
                    "squared gradients, so its root has the units of the gradient.",
                ),
            ]
            if t > 1:
                for off, when in ((t - 1, "t - 1"), (t + 1, "t + 1")):
                    b1, b2 = 1 - beta1**off, 1 - beta2**off
                    if b1 > 0 and b2 > 0:
                        w_mistakes.append(
                            Mistake(
                                w - lr * (m_new / b1) / ((v_new / b2).sqrt() + eps),
                                f"The bias correction uses {when}: t is already the number of "
                                "this step (1-based), so divide by (1 - beta1**t) and "
                                "(1 - beta2**t).",
                            )
                        )
            mistakes = {
                "w_new": w_mistakes,
                "m_new": [
                    Mistake(
                        m_hat,
                        "Return the raw moment m, not the bias-corrected m_hat: the "
                        "correction is applied only to take the step, while m itself keeps "
                        "the running average.",
                    ),
                    Mistake(
                        beta1 * m + grad,
                        "The new gradient is weighted by (1 - beta1): "
                        "m = beta1 * m + (1 - beta1) * grad.",
                    ),
                    Mistake(
                        m,
                        "m was not updated: return m = beta1 * m + (1 - beta1) * grad.",
                    ),
                ],
                "v_new": [
                    Mistake(
                        v_hat,
                        "Return the raw moment v, not the bias-corrected v_hat.",
                    ),
                    Mistake(
                        beta2 * v + (1 - beta2) * grad,
                        "v averages the squared gradient: v = beta2 * v + (1 - beta2) * grad**2.",
                    ),
                    Mistake(
                        beta1 * v + (1 - beta1) * grad**2,
                        "v uses beta2, not beta1: v = beta2 * v + (1 - beta2) * grad**2.",
                    ),
                    Mistake(
                        v,
                        "v was not updated: return v = beta2 * v + (1 - beta2) * grad**2.",
                    ),
                ],
            }
            got = ctx.call(fn, w, grad, m, v, t, lr, beta1, beta2, eps, names=names)
            ctx.compare(
                got,
                expected,
                ("w_new", "m_new", "v_new"),
                mistakes=mistakes,
                shape_of={"w_new": "w", "m_new": "m", "v_new": "v"},
                nonfinite_hint=_T_FROM_ZERO if t == 1 else None,
            )

    shape, lr = (3,), 0.05
    w = ctx.randn(*shape)
    m, v = torch.zeros(shape, dtype=torch.float64), torch.zeros(shape, dtype=torch.float64)
    with ctx.case(f"ten steps in a row from zero moments, lr = {lr:g}, default betas"):
        w_ref, m_ref, v_ref = w.clone(), m.clone(), v.clone()
        for t in range(1, 11):
            grad = ctx.randn(*shape)
            w_ref, m_ref, v_ref = _adam_reference(
                w_ref, grad, m_ref, v_ref, t, lr, 0.9, 0.999, 1e-8
            )
            got = ctx.call(fn, w, grad, m, v, t, lr, 0.9, 0.999, 1e-8, names=names)
            ctx.compare(
                got, (w_ref, m_ref, v_ref), ("w_new", "m_new", "v_new"), what=f"step t = {t}"
            )
            w, m, v = got
