"""Graded items of lesson 05 (a multilayer perceptron): softmax cross-entropy and a full
MLP backward pass."""

from __future__ import annotations

import torch
import torch.nn.functional as torch_F

from coursekit.grading.context import GradingContext
from coursekit.grading.hints import Mistake
from coursekit.grading.reference import autograd_grads, describe_shapes
from coursekit.grading.registry import item

_UNSTABLE = (
    "exp overflows for large logits (exp(1e4) = inf). Subtract each row's maximum before "
    "exp: softmax and log-softmax do not change, and every exp is at most 1 "
    "(log p = z - max - log(sum(exp(z - max))), the log-sum-exp trick)."
)
_FORGOT_N = (
    "The loss is the mean over the batch, so dlogits carries a factor 1/N: "
    "dlogits = (softmax(logits) - onehot(y)) / N."
)


def _onehot(y: torch.Tensor, classes: int) -> torch.Tensor:
    return torch_F.one_hot(y, classes).to(torch.float64)


def _dlogits_mistakes(logits: torch.Tensor, y: torch.Tensor, dout: float) -> list[Mistake]:
    n, c = logits.shape
    p, onehot = torch.softmax(logits, dim=1), _onehot(y, c)
    mistakes = [
        Mistake(dout * (p - onehot), _FORGOT_N),
        Mistake(
            dout * p / n,
            "Subtract the one-hot encoding of y: dlogits = (p - onehot(y)) / N "
            "(the correct class's probability loses 1).",
        ),
        Mistake(
            dout * (onehot - p) / n,
            "The sign is flipped: dlogits = (p - onehot(y)) / N "
            "(the loss falls as the correct class's logit grows).",
        ),
        Mistake(
            dout * (torch.softmax(logits, dim=0) - onehot) / n,
            "Softmax goes over the classes of each example (dim=1), not over the batch (dim=0).",
        ),
        Mistake(
            dout * (logits - onehot) / n,
            "Use the probabilities p = softmax(logits), "
            "not the logits themselves: dlogits = (p - onehot(y)) / N.",
        ),
    ]
    if dout != 1.0:
        mistakes.append(
            Mistake(
                (p - onehot) / n,
                "Multiply by dout, the upstream gradient of the loss (here it is not 1).",
            )
        )
    return mistakes


def _classification_cases(ctx: GradingContext):
    """(description, logits, y) test cases, the last with logits of size 1e4."""
    for n, c, scale in [(5, 3, 2.0), (1, 4, 2.0), (8, 10, 3.0), (3, 2, 1.0), (6, 5, 1e4)]:
        logits, y = ctx.randn(n, c, scale=scale), ctx.randint(c, n)
        label = describe_shapes(logits=logits, y=y)
        yield (label + ", logits of size 1e4" if scale > 100 else label), logits, y


@item(
    "05.softmax_cross_entropy",
    points=3,
    description="softmax cross-entropy (mean over the batch), forward and backward",
    signature="forward(logits, y) -> (loss, cache), backward(dout, cache) -> dlogits",
    covers="batch 1, 2 to 10 classes, dout other than 1, logits of +-1e4",
)
def softmax_cross_entropy(ctx: GradingContext, forward, backward) -> None:
    for number, (description, logits, y) in enumerate(_classification_cases(ctx)):
        n = logits.shape[0]
        dout_value = 1.0 if number != 2 else 0.5
        dout = torch.tensor(dout_value, dtype=torch.float64)
        with ctx.case(f"{description}, dout = {dout_value:g}"):
            expected_loss = torch_F.cross_entropy(logits, y)
            logits_before = logits.clone()
            result = ctx.call(forward, logits, y, names=("logits", "y"))
            if not isinstance(result, (tuple, list)) or len(result) != 2:
                got = "None" if result is None else f"a {type(result).__name__}"
                ctx.fail(
                    f"`{ctx.function_name}` should return the pair (loss, cache), got {got}.",
                    "End the forward pass with `return loss, cache`.",
                )
            loss, cache = result
            per_example = torch_F.cross_entropy(logits, y, reduction="none")
            loss_mistakes = [
                Mistake(
                    per_example,
                    "Average the per-example losses into one number: .mean() over the batch.",
                    shape_only=True,
                ),
                Mistake(
                    per_example.sum(),
                    "The loss is the mean over the batch, not the sum: divide by N.",
                ),
            ]
            ctx.compare(
                loss,
                expected_loss,
                ("loss",),
                mistakes={"loss": loss_mistakes},
                shape_of={"loss": "a scalar (0-dim tensor)"},
                nonfinite_hint=_UNSTABLE,
                what="the forward pass",
            )
            (expected,) = autograd_grads(lambda z, y=y: torch_F.cross_entropy(z, y), [logits], dout)
            got = ctx.call(backward, dout, cache, names=("dout", "cache"), opaque=("cache",))
            if not torch.equal(logits, logits_before):
                ctx.fail(
                    "The logits changed during the backward pass (modified in place "
                    "through the cache).",
                    "Compute dlogits in a new tensor, e.g. start from p.clone().",
                )
            ctx.compare(
                got,
                expected,
                ("dlogits",),
                batch=n,
                shape_of={"dlogits": "logits"},
                mistakes={"dlogits": _dlogits_mistakes(logits, y, dout_value)},
                nonfinite_hint=_UNSTABLE,
            )


@item(
    "05.dlogits",
    points=2,
    description="dlogits = (softmax(logits) - onehot(y)) / N for the mean cross-entropy",
    signature="fn(logits, y) -> dlogits",
    covers="batch 1, 2 to 10 classes, logits of +-1e4",
)
def dlogits(ctx: GradingContext, fn) -> None:
    for description, logits, y in _classification_cases(ctx):
        with ctx.case(description):
            (expected,) = autograd_grads(lambda z, y=y: torch_F.cross_entropy(z, y), [logits])
            got = ctx.call(fn, logits, y, names=("logits", "y"))
            ctx.compare(
                got,
                expected,
                ("dlogits",),
                batch=logits.shape[0],
                shape_of={"dlogits": "logits"},
                mistakes={"dlogits": _dlogits_mistakes(logits, y, 1.0)},
                nonfinite_hint=_UNSTABLE,
            )


# --------------------------------------------------------------------------- MLP backward
_MLP_SHAPES = (
    "Check the shapes on the way back: dz2 = (p - onehot(y)) / N is (N, C); dw2 = a1.T @ dz2 is "
    "(H, C); da1 = dz2 @ w2.T is (N, H) (a missing transpose is the usual cause); "
    "dz1 = da1 * (z1 > 0); dw1 = x.T @ dz1 is (D, H); db = dz.sum(dim=0)."
)


def _mlp_loss(w1, b1, w2, b2, x, y):
    a1 = torch.relu(x @ w1 + b1)
    return torch_F.cross_entropy(a1 @ w2 + b2, y)


def _mlp_variants(params: dict, x: torch.Tensor, y: torch.Tensor) -> dict[str, dict]:
    """Gradients as some classic mistakes compute them: name -> grads dict."""
    w1, b1, w2, b2 = (params[k] for k in ("w1", "b1", "w2", "b2"))
    n = x.shape[0]
    z1 = x @ w1 + b1
    a1 = torch.relu(z1)
    p = torch.softmax(a1 @ w2 + b2, dim=1)
    dz2 = (p - _onehot(y, w2.shape[1])) / n

    def backward(dz2: torch.Tensor, mask: torch.Tensor, back: torch.Tensor) -> dict:
        dz1 = (dz2 @ back) * mask
        return {"w1": x.T @ dz1, "b1": dz1.sum(0), "w2": a1.T @ dz2, "b2": dz2.sum(0)}

    variants = {
        "no relu derivative": backward(dz2, torch.ones_like(z1), w2.T),
        "a1 instead of mask": backward(dz2, a1, w2.T),
    }
    if w2.shape[0] == w2.shape[1]:  # only then does dz2 @ w2 (no transpose) run at all
        variants["w2 not transposed"] = backward(dz2, (z1 > 0).to(z1.dtype), w2)
    return variants


@item(
    "05.mlp_backward",
    points=4,
    description="loss and all four gradients of a 2-layer ReLU MLP with softmax cross-entropy",
    signature="fn(params, x, y) -> (loss, grads), params/grads dicts with w1, b1, w2, b2",
    covers="batch 1, square and non-square layers, no autograd, params left unchanged",
)
def mlp_backward(ctx: GradingContext, fn) -> None:
    keys = ("w1", "b1", "w2", "b2")
    for n, d, h, c in [(6, 4, 5, 3), (1, 3, 4, 2), (10, 2, 8, 4), (4, 5, 5, 5), (3, 2, 3, 2)]:
        params = {
            "w1": ctx.randn(d, h),
            "b1": ctx.randn(h, scale=0.5),
            "w2": ctx.randn(h, c),
            "b2": ctx.randn(c, scale=0.5),
        }
        x, y = ctx.randn(n, d), ctx.randint(c, n)
        with ctx.case(describe_shapes(x=x, **params) + f", {c} classes"):
            values = [params[k] for k in keys]
            expected_loss = _mlp_loss(*values, x, y)
            grads = autograd_grads(lambda *p, x=x, y=y: _mlp_loss(*p, x, y), values)
            expected = dict(zip(keys, grads, strict=True))
            got = ctx.call(fn, params, x, y, names=("params", "x", "y"), error_hint=_MLP_SHAPES)
            if not isinstance(got, (tuple, list)) or len(got) != 2:
                kind = "None" if got is None else f"a {type(got).__name__}"
                ctx.fail(f"`{ctx.function_name}` should return (loss, grads), got {kind}.")
            loss, got_grads = got
            ctx.compare(
                loss,
                expected_loss,
                ("loss",),
                batch=n,
                shape_of={"loss": "a scalar (0-dim tensor)"},
                nonfinite_hint=_UNSTABLE,
            )
            variants = _mlp_variants(params, x, y)
            relu_hint = (
                "The ReLU derivative is missing: on the way back through the hidden "
                "layer multiply by (z1 > 0), dz1 = da1 * (z1 > 0), z1 = x @ w1 + b1."
            )
            mask_hint = "Multiply da1 by the ReLU's derivative (z1 > 0), not by relu(z1) itself."
            mistakes = {
                k: [
                    Mistake(variants["no relu derivative"][k], relu_hint),
                    Mistake(variants["a1 instead of mask"][k], mask_hint),
                ]
                for k in ("w1", "b1")
            }
            for k, by in (("b1", "dz1"), ("b2", "dz2")):
                mistakes.setdefault(k, []).append(
                    Mistake(
                        torch.zeros(n, expected[k].shape[0], dtype=torch.float64),
                        f"grads['{k}'] must be summed over the batch: {by}.sum(dim=0).",
                        shape_only=True,
                    )
                )
            if "w2 not transposed" in variants:
                for k in ("w1", "b1"):
                    mistakes[k].append(
                        Mistake(
                            variants["w2 not transposed"][k],
                            "A transpose is missing on the way back to the hidden layer: "
                            "da1 = dz2 @ w2.T.",
                        )
                    )
            ctx.compare(
                got_grads,
                expected,
                keys,
                mistakes=mistakes,
                batch=n,
                shape_of={k: k for k in keys},
                what="grads",
            )
