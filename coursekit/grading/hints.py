"""Hints: recognising a classic mistake from the wrong answer it produces.

A mistake is recognised by recomputing the answer *as the mistake would*: if a
student's ``db`` equals ``dout`` (not summed over the batch), or ``-expected``
(a sign flip), or ``N * expected`` (a sum where the loss takes a mean), that is
almost certainly what happened, and the hint can say so.

Each item lists its own mistakes as ``Mistake(result, hint)`` pairs, where
``result`` is what the mistaken code would return for the current test case.
Mistakes that fit every gradient (sign, transpose, a factor N, a constant
factor, all zeros) are tried after the item's own.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# How close "got" must be to a mistaken result to blame that mistake, and to
# the reference to pass (the relative error defined in relative_error()).
TOLERANCE = 1e-6


@dataclass(frozen=True)
class Mistake:
    """What a known mistake would return (``result``), and the hint to give when it matches.

    ``shape_only=True`` blames the mistake on a shape match alone, for mistakes
    that are recognisable by their shape (``db`` of shape (N, H) instead of (H,)).
    """

    result: torch.Tensor | float
    hint: str
    shape_only: bool = False


def relative_error(
    got: torch.Tensor, expected: torch.Tensor, slack: torch.Tensor | float = 0.0
) -> torch.Tensor:
    """Elementwise (|got - expected| - slack) / max(|expected|, floor), in float64.

    ``floor`` is 1e-5 times the largest |expected| (and at least 1e-12), so that
    entries that should be (nearly) zero are compared on the scale of the whole
    tensor instead of producing 0/0. ``slack`` is an absolute error every correct
    formula may make (an item sets it where a textbook formula cancels, e.g.
    1 - tanh(a)**2 at large |a|); it is 0 by default.
    """
    got, expected = got.detach().double(), expected.detach().double()
    scale = expected.abs().max().item() if expected.numel() else 0.0
    floor = max(1e-5 * scale, 1e-12)
    err = (got - expected).abs()
    if not isinstance(slack, float) or slack:
        err = (err - slack).clamp_min(0.0)
    return err / expected.abs().clamp_min(floor)


def is_close(got: torch.Tensor, expected: torch.Tensor) -> bool:
    """Same shape, finite where expected is finite, and relative error below TOLERANCE."""
    if got.shape != expected.shape:
        return False
    if got.numel() == 0:
        return True
    both_finite = torch.isfinite(got) & torch.isfinite(expected)
    same_nonfinite = (~torch.isfinite(got)) & (got.double() == expected.double())
    if not bool((both_finite | same_nonfinite).all()):
        return False
    err = relative_error(got[both_finite], expected[both_finite])
    return err.numel() == 0 or err.max().item() <= TOLERANCE


def _as_tensor(value: torch.Tensor | float) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach()
    return torch.tensor(float(value), dtype=torch.float64)


def item_hint(got: torch.Tensor, mistakes: list[Mistake]) -> str | None:
    """The hint of the first mistake whose result ``got`` reproduces (values, then shape)."""
    for mistake in mistakes:
        if is_close(got, _as_tensor(mistake.result)):
            return mistake.hint
    for mistake in mistakes:
        if mistake.shape_only and got.shape == _as_tensor(mistake.result).shape:
            return mistake.hint
    return None


def shape_hint(name: str, got: torch.Tensor, expected: torch.Tensor) -> str | None:
    """A hint for a wrong shape that fits any gradient: transposed, or extra/missing dims."""
    if got.dim() == 2 and expected.dim() == 2 and got.shape == expected.T.shape:
        return (
            f"{name} looks transposed: its shape {tuple(got.shape)} is the transpose of "
            f"{tuple(expected.shape)}. A gradient has the shape of the thing it is the "
            "gradient of; swap the factors of the matrix product or transpose one of them (.T)."
        )
    if got.numel() == expected.numel():
        if is_close(got.reshape(expected.shape), expected):
            return (
                f"{name} has the right values in the wrong shape: reshape it to "
                f"{tuple(expected.shape)} (keepdim=True or .reshape), e.g. keep the size-1 dims."
            )
    if got.dim() == expected.dim() + 1:
        return f"{name} has one dimension too many: a sum or mean over one dim is probably missing."
    if got.dim() + 1 == expected.dim():
        return f"{name} has one dimension too few: keep the dim you reduced (keepdim=True)?"
    return None


def generic_value_hint(
    name: str, got: torch.Tensor, expected: torch.Tensor, batch: int | None
) -> str | None:
    """A hint for wrong values that fits any gradient: sign, transpose, a factor, zeros."""
    got, expected = got.double(), expected.double()
    if not bool(torch.isfinite(got).all()) or expected.abs().max().item() == 0:
        return None
    if is_close(got, -expected):
        return (
            f"{name} has the wrong sign: you returned -{name}. Check the sign of each "
            "local derivative (and whether you subtract in the right order)."
        )
    if got.dim() == 2 and got.shape[0] == got.shape[1] and is_close(got, expected.T):
        return (
            f"{name} is the transpose of the right answer: a transpose is missing or "
            "extra, or the factors of a matrix product are swapped."
        )
    if got.abs().max().item() == 0:
        return (
            f"{name} is all zeros. Did you return a freshly created tensor without filling "
            "it in, or multiply by a mask that is never true?"
        )
    factor = _constant_factor(got, expected)
    if factor is None:
        return None
    if batch is not None and batch > 1 and abs(factor - batch) < 1e-6 * batch:
        return (
            f"{name} is N = {batch} times too large, and N is the batch size: the loss is "
            "the mean over the batch, so its gradient carries a factor 1/N "
            "(a sum where a mean belongs?)."
        )
    if batch is not None and batch > 1 and abs(factor * batch - 1) < 1e-6:
        return (
            f"{name} is N = {batch} times too small, and N is the batch size: the "
            "contributions of the examples add up (sum over the batch, not mean)."
        )
    if abs(factor - 2) < 1e-6 or abs(factor - 0.5) < 1e-6:
        return (
            f"{name} is {factor:g} times the right answer: a factor 2 is missing or extra "
            "(the derivative of a square, x**2, is 2*x)."
        )
    return f"{name} is exactly {factor:.4g} times the right answer: a constant factor is off."


def precision_hint(got: torch.Tensor, expected: torch.Tensor) -> str | None:
    """The hint for a float64 result computed in float32 somewhere on the way."""
    if got.dtype != torch.float64 or expected.dtype != torch.float64:
        return None
    if not bool(torch.isfinite(got).all()):
        return None
    scale = expected.abs().max().item()
    err = (got - expected).abs().max().item()
    if scale > 0 and err <= 1e-5 * scale and is_close(got, got.float().double()):
        return (
            "Your result has float32 precision: keep the input's dtype. Somewhere a float32 "
            "tensor was made (torch.zeros(shape), torch.tensor([...]) of Python floats, "
            ".float()): use torch.zeros_like(x) or dtype=x.dtype."
        )
    return None


def _constant_factor(got: torch.Tensor, expected: torch.Tensor) -> float | None:
    """The c with got == c * expected, if there is one (least squares, then verified)."""
    denominator = (expected * expected).sum().item()
    if denominator == 0:
        return None
    c = (got * expected).sum().item() / denominator
    if c == 0 or abs(c - 1) < 1e-9 or not is_close(got, c * expected):
        return None
    return c
