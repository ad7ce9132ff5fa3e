"""Graded items of lesson 07 (generalization): inverted dropout and the L2 gradient.

Dropout is random, so its reference is the rule itself, drawn from a copy of the
student's generator: keep = torch.rand(x.shape, generator=copy, dtype=x.dtype) >= p,
out = x * keep / (1 - p). Before the exact comparison the output is checked by its
statistics (fraction of zeros about p, kept entries scaled by 1 / (1 - p), mean
kept), so that a mask drawn some other way gets a hint that says what differs. The
backward pass must use the forward's own mask: dx = dout * keep / (1 - p).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from coursekit.grading.context import GradingContext
from coursekit.grading.hints import Mistake, is_close
from coursekit.grading.reference import describe_shapes
from coursekit.grading.registry import item

# ---------------------------------------------------------------------------- 07.dropout
_THE_RULE = (
    "Draw the mask exactly as asked, from the generator you are given: "
    "keep = torch.rand(x.shape, generator=generator, dtype=x.dtype) >= p, "
    "then out = x * keep / (1 - p)."
)
_NO_SCALING = (
    "The 1/(1 - p) scaling is missing: inverted dropout divides the kept entries by (1 - p), "
    "so that E[out] = (1 - p) * x / (1 - p) = x and nothing changes at evaluation time."
)
_TIMES_KEEP_PROB = (
    "You multiplied the kept entries by (1 - p); inverted dropout divides by it: "
    "out = x * keep / (1 - p)."
)
_DIVIDED_BY_P = "Divide by the probability of keeping, (1 - p), not by p."
_INVERTED_MASK = (
    "The mask is inverted: an element is kept when torch.rand(...) >= p (probability 1 - p); "
    "you kept it when the number is below p."
)
_BACKWARD_NO_MASK = (
    "The backward pass does not use the mask: out = x * keep / (1 - p) is linear in x with a "
    "fixed mask, so dx = dout * keep / (1 - p), zero wherever the forward pass dropped x."
)
_BACKWARD_NO_SCALING = (
    "The 1/(1 - p) scaling is missing in the backward pass: out = x * keep / (1 - p), so "
    "dx = dout * keep / (1 - p)."
)
_REDRAWN = (
    "The backward pass uses a different mask from the forward pass (was the mask drawn again "
    "in backward?). The derivative of out = x * m is m, the very mask the forward pass used: "
    "keep it in the cache and reuse it, dx = dout * keep / (1 - p)."
)
_BACKWARD_OF_X = "Multiply dout, the gradient from above, not x: dx = dout * keep / (1 - p)."


def _copy(generator: torch.Generator) -> torch.Generator:
    clone = torch.Generator()
    clone.set_state(generator.get_state())
    return clone


def _check_statistics(
    ctx: GradingContext, out: torch.Tensor, x: torch.Tensor, p: float, what: str
) -> None:
    """On a large tensor: about a fraction p zeros, kept entries x / (1 - p), mean kept."""
    if not isinstance(out, torch.Tensor) or out.shape != x.shape or out.dtype != x.dtype:
        return  # ctx.compare explains these
    zero = out == 0
    fraction = zero.double().mean().item()
    n = x.numel()
    spread = 6 * (p * (1 - p) / n) ** 0.5 + 1e-3
    if abs(fraction - p) > spread:
        hint = _INVERTED_MASK if abs(fraction - (1 - p)) <= spread else _THE_RULE
        if fraction == 0.0:
            hint = "Nothing was dropped. " + _THE_RULE
        ctx.fail(
            f"{what}: {fraction:.3f} of the entries are zero; with p = {p:g} about {p:g} "
            f"(give or take {spread:.3f}) should be.",
            hint,
        )
    kept = ~zero
    ratio = (out[kept] / x[kept]).double()
    scale = 1 / (1 - p)
    if ratio.numel() and not torch.allclose(ratio, torch.full_like(ratio, scale), rtol=1e-6):
        typical = ratio.median().item()
        if abs(typical - 1) < 1e-6:
            hint = _NO_SCALING
        elif abs(typical - (1 - p)) < 1e-6:
            hint = _TIMES_KEEP_PROB
        elif abs(typical - 1 / p) < 1e-6:
            hint = _DIVIDED_BY_P
        else:
            hint = _THE_RULE
        ctx.fail(
            f"{what}: the kept entries are x times {typical:.6g}; they should be x / (1 - p) "
            f"= x times {scale:.6g}.",
            hint,
        )
    mean_ratio = (out.double().mean() / x.double().mean()).item()
    if abs(mean_ratio - 1) > 0.05:
        ctx.fail(
            f"{what}: the mean of out is {mean_ratio:.3f} times the mean of x; inverted "
            "dropout keeps it (E[out] = x).",
            _NO_SCALING,
        )


def _forward(
    ctx: GradingContext, forward: Callable, x: torch.Tensor, p: float, seed: int
) -> tuple[torch.Tensor, object]:
    result = ctx.call(
        forward, x, p, torch.Generator().manual_seed(seed), names=("x", "p", "generator")
    )
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        got = "None" if result is None else f"a {type(result).__name__}"
        ctx.fail(
            f"`{ctx.function_name}` should return the pair (out, cache), got {got}.",
            "End the forward pass with `return out, cache`, where the cache holds what the "
            "backward pass needs: the mask (already divided by 1 - p, say).",
        )
    return result[0], result[1]


def _forward_mistakes(x: torch.Tensor, p: float, u: torch.Tensor) -> list[Mistake]:
    keep = (u >= p).to(x.dtype)
    mistakes = [
        Mistake(x * keep, _NO_SCALING),
        Mistake(x * keep * (1 - p), _TIMES_KEEP_PROB),
        Mistake(x * (u < p).to(x.dtype) / (1 - p), _INVERTED_MASK),
    ]
    if p > 0:
        mistakes.append(Mistake(x * keep / p, _DIVIDED_BY_P))
    return mistakes


def _backward_mistakes(
    dout: torch.Tensor, x: torch.Tensor, p: float, keep: torch.Tensor
) -> list[Mistake]:
    return [
        Mistake(dout * keep, _BACKWARD_NO_SCALING),
        Mistake(x * keep / (1 - p), _BACKWARD_OF_X),
        Mistake(dout, _BACKWARD_NO_MASK),
        Mistake(dout / (1 - p), _BACKWARD_NO_MASK),
    ]


def _check_backward_mask(
    ctx: GradingContext, dx: object, dout: torch.Tensor, p: float, keep: torch.Tensor
) -> None:
    """Name a mask redrawn in backward: right scaling and rate, but other zeros."""
    if not isinstance(dx, torch.Tensor) or dx.shape != dout.shape or p == 0:
        return
    expected = dout * keep / (1 - p)
    if is_close(dx, expected):
        return
    nonzero = dx != 0
    if not bool(nonzero.any()) or bool((~nonzero).sum() == 0):
        return
    scaled = is_close(dx[nonzero], dout[nonzero] / (1 - p))
    if scaled and not torch.equal(nonzero, keep):
        ctx.fail(
            f"dx is zero at {int((~nonzero).sum())} places, but not where the forward pass "
            f"dropped x ({int((~keep).sum())} places, {int((nonzero != keep).sum())} "
            "positions differ).",
            _REDRAWN,
        )


def _check_forward_mask(
    ctx: GradingContext, out: object, x: torch.Tensor, p: float, keep: torch.Tensor
) -> None:
    """Name a mask drawn some other way: right scaling, but zeros elsewhere than the rule's."""
    if not isinstance(out, torch.Tensor) or out.shape != x.shape or out.dtype != x.dtype:
        return
    if p == 0 or is_close(out, x * keep / (1 - p)):
        return
    kept = out != 0
    if bool(kept.any()) and is_close(out[kept], x[kept] / (1 - p)):
        if not torch.equal(kept, keep) and not torch.equal(kept, ~keep):
            ctx.fail(
                "the forward pass: the kept entries are scaled right, but "
                f"{int((kept != keep).sum())} of the entries are dropped or kept differently "
                "from the mask drawn from the generator.",
                _THE_RULE + " Use the generator passed in (not torch's global one), "
                "torch.rand (not torch.bernoulli or randn), and compare with >= p.",
            )


@item(
    "07.dropout",
    points=3,
    description="inverted dropout (train mode) forward and backward",
    signature="forward(x, p, generator) -> (out, cache), backward(dout, cache) -> dx",
    covers="several shapes and p, float32 and float64, p = 0, the zero rate and scaling on a "
    "large tensor, the backward using the forward's mask",
)
def dropout(ctx: GradingContext, forward, backward) -> None:
    cases = [
        ((200, 500), 0.3, torch.float64),
        ((4, 5), 0.5, torch.float64),
        ((7,), 0.2, torch.float64),
        ((2, 3, 4), 0.8, torch.float64),
        ((3, 6), 0.5, torch.float32),
        ((5, 4), 0.0, torch.float64),
    ]
    for shape, p, dtype in cases:
        seed = int(ctx.randint(2**31 - 1, 1).item())
        big = shape[0] * shape[-1] >= 10_000
        x = ctx.uniform(*shape, low=0.5, high=1.5)  # positive: its mean tells E[out] = x
        if not big:
            x = x * torch.where(ctx.randn(*shape) < 0, -1.0, 1.0)
        x = x.to(dtype)
        dout = ctx.randn(*shape).to(dtype)
        label = "large tensor, statistics" if big else describe_shapes(x=x)
        with ctx.case(f"{label}, x {tuple(shape)} {dtype}, p = {p:g}"):
            u = torch.rand(x.shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)
            keep = u >= p
            expected_out = x * keep / (1 - p)
            out, cache = _forward(ctx, forward, x, p, seed)
            if big:
                _check_statistics(ctx, out, x, p, "the forward pass")
            _check_forward_mask(ctx, out, x, p, keep)
            ctx.compare(
                out,
                expected_out,
                ("out",),
                shape_of={"out": "x"},
                mistakes={"out": _forward_mistakes(x, p, u)},
                what="the forward pass",
            )
            dx = ctx.call(backward, dout, cache, names=("dout", "cache"), opaque=("cache",))
            if isinstance(dx, torch.Tensor) and dx.shape == x.shape:
                _check_backward_mask(ctx, dx, dout, p, keep)
            ctx.compare(
                dx,
                dout * keep / (1 - p),
                ("dx",),
                shape_of={"dx": "x"},
                mistakes={"dx": _backward_mistakes(dout, x, p, keep)},
            )
            if p == 0 and not torch.equal(out, x):
                ctx.fail("With p = 0 dropout must be the identity: out = x.", _THE_RULE)

    shape, p = (6, 8), 0.5
    with ctx.case(
        f"two forward passes in a row on x {shape}, p = {p:g}: two masks; then the backward "
        "of the first"
    ):
        seed = int(ctx.randint(2**31 - 1, 1).item())
        x = ctx.uniform(*shape, low=0.5, high=1.5)
        generator = torch.Generator().manual_seed(seed)
        reference = _copy(generator)
        names = ("x", "p", "generator")
        first = ctx.call(forward, x, p, generator, names=names)
        second = ctx.call(forward, x, p, generator, names=names)
        masks = []
        for number, result in (("first", first), ("second", second)):
            u = torch.rand(x.shape, generator=reference, dtype=x.dtype)
            masks.append(u >= p)
            if not isinstance(result, (tuple, list)) or len(result) != 2:
                ctx.fail(f"`{ctx.function_name}` should return the pair (out, cache).")
            ctx.compare(
                result[0],
                x * (u >= p) / (1 - p),
                ("out",),
                mistakes={"out": _forward_mistakes(x, p, u)},
                what=f"the {number} forward pass",
            )
        # the backward of the FIRST forward, after the second: its own mask, from its cache
        dout = ctx.randn(*shape)
        dx = ctx.call(backward, dout, first[1], names=("dout", "cache"), opaque=("cache",))
        stale = [
            Mistake(
                dout * masks[1] / (1 - p),
                "The backward of the first forward pass used the mask of the second (the most "
                "recent one, kept outside the cache?). Each forward pass returns its own mask "
                "in its cache; the backward must take it from the cache it is given.",
            )
        ]
        ctx.compare(
            dx,
            dout * masks[0] / (1 - p),
            ("dx",),
            mistakes={"dx": stale + _backward_mistakes(dout, x, p, masks[0])},
            what="the backward of the first forward pass",
        )


# ---------------------------------------------------------------------------- 07.l2_grad
_CONVENTION = "This course's penalty is lam * sum(w**2), whose gradient is 2 * lam * w. "


@item(
    "07.l2_grad",
    points=1,
    description="the gradient of the L2 penalty lam * sum(w**2)",
    signature="fn(w, lam) -> tensor",
    covers="several shapes (0-dim included), lam = 0 and positive lam; w left unchanged",
)
def l2_grad(ctx: GradingContext, fn) -> None:
    cases = [((3,), None), ((4, 5), None), ((), None), ((2, 3, 4), None), ((6,), 0.0)]
    for shape, lam in cases:
        w = ctx.randn(*shape)
        if lam is None:
            lam = round(ctx.uniform(1, low=0.01, high=1.0).item(), 3)
        with ctx.case(f"{describe_shapes(w=w)}, lam = {lam:g}"):
            mistakes = [
                Mistake(
                    lam * w,
                    "The factor 2 is missing: d/dw (lam * w**2) = 2 * lam * w. (lam * w is the "
                    "gradient of the other convention, (lam / 2) * sum(w**2).)",
                ),
                Mistake(
                    lam * w / 2,
                    "That is the wrong lambda convention: the penalty is lam * sum(w**2), "
                    "not (lam / 2) * sum(w**2) or lam / 2 * ..., and its gradient is "
                    "2 * lam * w.",
                ),
                Mistake(
                    4 * lam * w,
                    "The factor 2 is counted twice: the gradient of lam * sum(w**2) is "
                    "2 * lam * w (the weight decay of SGD is wd = 2 * lam; do not double it "
                    "again).",
                ),
                Mistake(2 * w, "lam is missing: the gradient is 2 * lam * w."),
                Mistake(-2 * lam * w, "The sign is flipped: the gradient is +2 * lam * w."),
                Mistake(
                    lam * w**2,
                    "That is the penalty itself (per entry), not its gradient: "
                    "d/dw (lam * w**2) = 2 * lam * w.",
                ),
                Mistake(
                    w - 2 * lam * w,
                    "Return the gradient 2 * lam * w, not the weights after a decay step.",
                ),
            ]
            if lam != 0:
                mistakes.append(
                    Mistake(
                        2 * w / lam,
                        "lam multiplies the penalty: the gradient is 2 * lam * w, not 2 * w / lam.",
                    )
                )
            got = ctx.call(fn, w, lam, names=("w", "lam"))
            if isinstance(got, torch.Tensor) and got.dim() == 0 and w.dim() > 0:
                ctx.fail(
                    f"`{ctx.function_name}` returned one number; the gradient has the shape of "
                    f"w, {tuple(w.shape)}.",
                    _CONVENTION + "Do not sum: each weight gets its own 2 * lam * w_i.",
                )
            ctx.compare(got, 2 * lam * w, ("dw",), mistakes={"dw": mistakes}, shape_of={"dw": "w"})
