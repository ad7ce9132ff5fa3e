"""Checking gradients: by finite differences, and against ``torch.autograd``.

Three tools, from the simplest to the most complete:

* ``numerical_grad(f, x, h)`` estimates df/dx by central differences, one entry at a time:
  df/dx_i ~ (f(x + h e_i) - f(x - h e_i)) / (2 h). Its error is O(h**2) from truncation
  plus O(eps / h) from rounding, eps being the machine epsilon (lesson 01), so it works in
  float64, where the best step is near (3 eps)**(1/3) ~ 1e-5 and any h from 1e-6 to 1e-5
  gives about 1e-10 relative accuracy for values and derivatives of order one.
* ``rel_error(a, b)`` = max|a - b| / max(|a| + |b|): one number, scale-free, about 1e-16
  when two float64 results agree to the last bit and about 1 when they are unrelated.
* ``compare_with_torch(forward, backward, reference, inputs)`` runs a hand-written
  forward/backward pair and the same math through ``torch.autograd`` and reports, for the
  output and for every gradient, the relative error, where the difference is largest, and
  whether the shapes agree. It reports problems instead of raising them.
"""

from __future__ import annotations

import html
import inspect
import itertools
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["GradEntry", "GradReport", "compare_with_torch", "numerical_grad", "rel_error"]


# --------------------------------------------------------------------------- finite differences
def numerical_grad(
    f: Callable[[Tensor], Any],
    x: Tensor,
    h: float = 1e-6,
    *,
    dout: Tensor | None = None,
    eps: float | None = None,
) -> Tensor:
    """The gradient of ``f`` at ``x`` by central differences, in float64.

    For each entry i:  grad_i = (g(x + h e_i) - g(x - h e_i)) / (2 h),
    where g(x) = f(x) when f returns a scalar and g(x) = sum(f(x) * dout) when it returns a
    tensor (``dout`` is the upstream gradient, ones when not given: the gradient of the sum).

    ``f`` is called with a float64 tensor whose entries are nudged one at a time under
    ``torch.no_grad()``. When ``x`` is already float64 that tensor *is* ``x`` (so an ``f``
    that reads ``x`` from outside, ignoring its argument, works too); otherwise it is a
    float64 copy. Every entry is put back exactly as it was.

    ``h`` is the step. ``eps`` is its old name, still accepted but deprecated: in the course
    epsilon means the machine epsilon, ``torch.finfo(dtype).eps``.

    Returns:
        a float64 tensor of ``x``'s shape, on ``x``'s device.
    """
    if eps is not None:
        warnings.warn(
            "numerical_grad(eps=...) is deprecated: the step is now called h, "
            "numerical_grad(f, x, h=...)",
            DeprecationWarning,
            stacklevel=2,
        )
        h = eps
    if not isinstance(x, Tensor):
        raise TypeError(f"numerical_grad(x): x must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"numerical_grad(x): x must hold floating-point numbers, got {x.dtype}")
    if not h > 0:
        raise ValueError(f"numerical_grad(h): the step h must be positive, got {h}")
    x64 = x if x.dtype == torch.float64 else x.detach().to(torch.float64)
    upstream = None if dout is None else torch.as_tensor(dout, dtype=torch.float64)

    def g() -> float:
        out = f(x64)
        if isinstance(out, Tensor):
            out = out.to(torch.float64)
            if upstream is not None:
                if upstream.shape != out.shape:
                    raise ValueError(
                        f"numerical_grad(dout): dout has shape {tuple(upstream.shape)} but "
                        f"f(x) has shape {tuple(out.shape)}"
                    )
                out = out * upstream.to(out.device)
            return out.sum().item()
        return float(out)

    grad = torch.zeros(x.shape, dtype=torch.float64, device=x.device)
    with torch.no_grad():
        for index in itertools.product(*(range(n) for n in x.shape)):
            original = x64[index].item()
            try:
                x64[index] = original + h
                f_plus = g()
                x64[index] = original - h
                f_minus = g()
            finally:
                x64[index] = original
            grad[index] = (f_plus - f_minus) / (2 * h)
    return grad


def rel_error(a: Any, b: Any, floor: float = 1e-12) -> float:
    """max|a - b| / max(|a| + |b|), a scale-free distance between two tensors (or numbers).

    About 1e-16 for float64 results equal up to rounding, about 1e-7 for float32, about 1
    when unrelated. ``floor`` keeps the denominator away from 0 when both are all zeros.
    Entries equal in both (infinities included) count as agreeing; a NaN where the other has
    something else gives NaN, which fails every ``error <= tol`` test.
    """
    a64, b64 = _as_float64(a, "a"), _as_float64(b, "b")
    if a64.shape != b64.shape:
        raise ValueError(
            f"rel_error(a, b): shapes differ, a {tuple(a64.shape)} vs b {tuple(b64.shape)}"
        )
    b64 = b64.to(a64.device)
    if a64.numel() == 0:
        return 0.0
    same = a64 == b64  # exact agreement, also for matching infinities
    diff = torch.where(same, 0.0, (a64 - b64).abs())
    if diff.isnan().any():
        return float("nan")
    total = a64.abs() + b64.abs()
    scale = torch.where(same & total.isinf(), 0.0, total)  # a shared infinity sets no scale
    return (diff.max() / scale.max().clamp_min(floor)).item()


def _as_float64(t: Any, name: str) -> Tensor:
    if isinstance(t, Tensor):
        return t.detach().to(torch.float64)
    try:
        return torch.as_tensor(t, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(
            f"rel_error({name}): expected a tensor or a number, got {type(t).__name__}"
        ) from None


# ------------------------------------------------------------------------ comparison report
@dataclass
class GradEntry:
    """One row of a ``GradReport``: a hand-written result against torch's.

    Attributes:
        name: what is compared ('out', 'dx', 'dw', ...).
        shape: the shape of the hand-written result (None if it is missing).
        expected_shape: the shape it should have.
        rel_error: ``rel_error(got, expected)``; NaN when they cannot be compared.
        worst_index: the index of the largest absolute difference.
        got: the hand-written value at ``worst_index``.
        expected: torch's value at ``worst_index``.
        problem: '' or what is wrong besides the numbers (missing, wrong shape, dtype, ...).
    """

    name: str
    shape: tuple[int, ...] | None
    expected_shape: tuple[int, ...]
    rel_error: float = float("nan")
    worst_index: tuple[int, ...] | None = None
    got: float | None = None
    expected: float | None = None
    problem: str = ""

    def ok(self, tol: float = 1e-8) -> bool:
        """No problem and a relative error of at most ``tol`` (NaN never passes)."""
        return not self.problem and self.rel_error <= tol


@dataclass
class GradReport:
    """Hand-written forward/backward against ``torch.autograd``, one row per result.

    Attributes:
        output: the forward output against torch's.
        grads: one entry per gradient, in input order.
        error: the exception raised by the hand-written code ('' when none was raised).
        modified_inputs: names of inputs that the hand-written code changed in place.
    """

    output: GradEntry
    grads: list[GradEntry] = field(default_factory=list)
    error: str = ""
    modified_inputs: list[str] = field(default_factory=list)

    @property
    def entries(self) -> list[GradEntry]:
        """The output row followed by the gradient rows."""
        return [self.output, *self.grads]

    def ok(self, tol: float = 1e-8) -> bool:
        """True when nothing raised, no input was modified and every row is within ``tol``."""
        return not self.error and not self.modified_inputs and all(e.ok(tol) for e in self.entries)

    def worst(self) -> GradEntry:
        """The row with the largest relative error (rows with a problem or NaN first)."""

        def badness(e: GradEntry) -> tuple[bool, float]:
            bad = bool(e.problem) or e.rel_error != e.rel_error  # NaN != NaN
            return (bad, 0.0 if bad else e.rel_error)

        return max(self.entries, key=badness)

    def _rows(self, tol: float) -> list[list[str]]:
        rows = []
        for e in self.entries:
            rows.append(
                [
                    e.name,
                    _fmt_shape(e.shape),
                    _fmt_shape(e.expected_shape),
                    f"{e.rel_error:.2e}",
                    "" if e.worst_index is None else str(e.worst_index),
                    "" if e.got is None else f"{e.got:.6g}",
                    "" if e.expected is None else f"{e.expected:.6g}",
                    "ok" if e.ok(tol) else (e.problem or "TOO LARGE"),
                ]
            )
        return rows

    _HEADER = (
        "result",
        "shape",
        "expected shape",
        "rel. error",
        "largest diff at",
        "got",
        "expected",
        "verdict",
    )

    def __str__(self) -> str:
        return self.to_text()

    def _repr_html_(self) -> str:
        return self.to_html()

    def to_text(self, tol: float = 1e-8) -> str:
        """A plain-text table, one row per result, with the verdict at tolerance ``tol``."""
        rows = [list(self._HEADER), *self._rows(tol)]
        widths = [max(len(r[i]) for r in rows) for i in range(len(self._HEADER))]
        lines = [
            "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
            for r in rows
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        if self.error:
            lines.append(f"error: {self.error}")
        if self.modified_inputs:
            lines.append(f"modified in place: {', '.join(self.modified_inputs)}")
        lines.append(f"{'passed' if self.ok(tol) else 'failed'} (tol {tol:g})")
        return "\n".join(lines)

    def to_html(self, tol: float = 1e-8) -> str:
        """The same table in HTML, rows coloured green (ok) or red (not ok); Jupyter shows it."""
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self._HEADER)
        body = ""
        for row, entry in zip(self._rows(tol), self.entries, strict=True):
            color = "#dcfce7" if entry.ok(tol) else "#fee2e2"
            cells = "".join(f"<td>{html.escape(c)}</td>" for c in row)
            body += f'<tr style="background:{color}">{cells}</tr>'
        extra = ""
        if self.error:
            extra += f"<p><b>error:</b> <code>{html.escape(self.error)}</code></p>"
        if self.modified_inputs:
            names = html.escape(", ".join(self.modified_inputs))
            extra += f"<p><b>modified in place:</b> {names}</p>"
        verdict = "passed" if self.ok(tol) else "failed"
        return f"<table><tr>{head}</tr>{body}</table>{extra}<p>{verdict} (tol {tol:g})</p>"


def _fmt_shape(shape: tuple[int, ...] | None) -> str:
    return "missing" if shape is None else str(tuple(shape))


def compare_with_torch(
    forward: Callable[..., tuple[Any, Any]],
    backward: Callable[[Any, Any], Any],
    reference: Callable[..., Tensor],
    inputs: Sequence[Any],
    dout: Tensor | float | None = None,
    *,
    wrt: Sequence[int] | None = None,
    names: Sequence[str] | None = None,
) -> GradReport:
    """Run a hand-written forward/backward pair and the same math through ``torch.autograd``.

    1. ``out, cache = forward(*inputs)`` and ``grads = backward(dout, cache)`` (hand-written);
    2. ``reference(*clones)`` on detached float64 clones of the inputs, differentiated by
       ``torch.autograd.grad`` with the same ``dout``;
    3. every result is compared with ``rel_error``, noting where the difference is largest.

    Args:
        forward, backward: the pair under test, in the ``coursekit.functional`` convention.
        reference: the same forward computation written with torch operations.
        inputs: the arguments of both; non-tensors (class ids, options) are passed unchanged.
        dout: the upstream gradient; default 1.0 for a scalar output, else a fixed random
            tensor (random rather than ones, so that a transposed or summed gradient shows).
        wrt: positions of the inputs that get a gradient, in the order ``backward`` returns
            them; default every floating-point tensor input.
        names: names of the gradients; default 'd' + the reference's parameter names.

    Returns:
        a ``GradReport``. Wrong shapes, a wrong number of gradients and exceptions raised by
        ``forward`` or ``backward`` are reported in it, not raised.
    """
    inputs = list(inputs)
    if wrt is None:
        wrt = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.is_floating_point()]
    wrt = list(wrt)
    for i in wrt:
        if not (0 <= i < len(inputs) and isinstance(inputs[i], Tensor)):
            raise ValueError(f"compare_with_torch(wrt): input {i} is not a tensor input")
    grad_names = list(names) if names is not None else _default_names(reference, wrt)
    if len(grad_names) != len(wrt):
        raise ValueError(
            f"compare_with_torch(names): {len(grad_names)} names for {len(wrt)} gradients"
        )

    # The reference: float64 clones, made before the hand-written code can touch the inputs.
    clones = [_float64_clone(t, requires_grad=i in wrt) for i, t in enumerate(inputs)]
    originals = {i: inputs[i].detach().clone() for i in wrt}
    ref_out = reference(*clones)
    if not isinstance(ref_out, Tensor):
        raise TypeError(
            f"compare_with_torch(reference): must return a tensor, got {type(ref_out).__name__}"
        )
    upstream = _default_dout(ref_out) if dout is None else _float64_clone(torch.as_tensor(dout))
    upstream = upstream.to(ref_out.device)
    if upstream.shape != ref_out.shape:
        raise ValueError(
            f"compare_with_torch(dout): dout has shape {tuple(upstream.shape)} but the "
            f"reference output has shape {tuple(ref_out.shape)}"
        )
    ref_grads = _autograd_grads(ref_out, [clones[i] for i in wrt], upstream)

    report = GradReport(output=GradEntry("out", None, tuple(ref_out.shape)))
    # The hand-written code gets dout in the dtype/device of its own inputs.
    first = next((t for t in inputs if isinstance(t, Tensor) and t.is_floating_point()), None)
    hand_dout = upstream if first is None else upstream.to(dtype=first.dtype, device=first.device)
    if dout is not None and not isinstance(dout, Tensor):
        hand_dout = dout  # a plain number stays a plain number (the usual 1.0 for losses)
    try:
        out, cache = forward(*inputs)
        report.output = _compare("out", out, ref_out.detach(), like=None)
        grads = backward(hand_dout, cache)
    except Exception as exc:  # the code under test failed: report it, do not raise
        report.error = _describe_exception(exc)
        grads = None
        if report.output.shape is None and not report.output.problem:
            report.output.problem = "not computed"

    if grads is not None:
        if not isinstance(grads, (tuple, list)):
            grads = (grads,)
        if len(grads) != len(wrt):
            report.error = (
                f"backward returned {len(grads)} gradient(s), expected {len(wrt)} "
                f"({', '.join(grad_names)})"
            )
        for k, (name, expected) in enumerate(zip(grad_names, ref_grads, strict=True)):
            got = grads[k] if k < len(grads) else None
            report.grads.append(_compare(name, got, expected, like=inputs[wrt[k]]))
    else:
        report.grads = [
            GradEntry(n, None, tuple(g.shape)) for n, g in zip(grad_names, ref_grads, strict=True)
        ]
        for entry in report.grads:
            entry.problem = "not computed"

    for i, before in originals.items():
        now = inputs[i].detach()
        if now.shape != before.shape or not torch.allclose(now, before, 0, 0, equal_nan=True):
            report.modified_inputs.append(_input_name(reference, i))
    return report


def _compare(name: str, got: Any, expected: Tensor, like: Tensor | None) -> GradEntry:
    """Compare one hand-written result with torch's; ``like`` is the input it is the grad of."""
    entry = GradEntry(name, None, tuple(expected.shape))
    if got is None:
        entry.problem = "missing"
        return entry
    if not isinstance(got, Tensor):
        try:
            got = torch.as_tensor(got, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            entry.problem = f"not a tensor ({type(got).__name__})"
            return entry
    elif like is not None and (got.dtype != like.dtype or got.device != like.device):
        entry.problem = (
            f"dtype/device {got.dtype}/{got.device}, expected {like.dtype}/{like.device}"
        )
    entry.shape = tuple(got.shape)
    if entry.shape != entry.expected_shape:
        entry.problem = f"shape {entry.shape}, expected {entry.expected_shape}"
        return entry
    got64 = got.detach().to(device=expected.device, dtype=torch.float64)
    entry.rel_error = rel_error(got64, expected)
    if got64.numel() > 0:
        diff = (got64 - expected).abs()
        diff = torch.where(got64 == expected, 0.0, diff.nan_to_num(nan=float("inf")))
        flat = int(diff.argmax())
        index = tuple(int(i) for i in np.unravel_index(flat, tuple(expected.shape)))
        entry.worst_index = index
        entry.got = got64[index].item()
        entry.expected = expected[index].item()
    return entry


def _float64_clone(t: Any, requires_grad: bool = False) -> Any:
    """A detached float64 copy of a floating-point tensor; anything else passes through."""
    if isinstance(t, Tensor) and t.is_floating_point():
        return t.detach().to(torch.float64).clone().requires_grad_(requires_grad)
    return t


def _default_dout(out: Tensor) -> Tensor:
    """1.0 for a scalar output, else a fixed random tensor of the output's shape."""
    if out.dim() == 0:
        return torch.ones((), dtype=torch.float64, device=out.device)
    generator = torch.Generator().manual_seed(1234)
    return torch.randn(out.shape, generator=generator, dtype=torch.float64).to(out.device)


def _autograd_grads(out: Tensor, leaves: list[Tensor], dout: Tensor) -> list[Tensor]:
    """d(sum(out * dout))/d(leaf) for each leaf, zeros where out does not depend on it."""
    if not leaves:
        return []
    if not out.requires_grad:
        return [torch.zeros_like(leaf) for leaf in leaves]
    grads = torch.autograd.grad(out, leaves, grad_outputs=dout, allow_unused=True)
    return [
        torch.zeros_like(leaf) if g is None else g.detach()
        for g, leaf in zip(grads, leaves, strict=True)
    ]


def _parameter_names(fn: Callable[..., Any]) -> list[str] | None:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return None
    return [p.name for p in params]


def _input_name(reference: Callable[..., Any], i: int) -> str:
    names = _parameter_names(reference)
    return names[i] if names is not None and i < len(names) else f"input{i}"


def _default_names(reference: Callable[..., Any], wrt: list[int]) -> list[str]:
    return ["d" + _input_name(reference, i) for i in wrt]


def _describe_exception(exc: BaseException) -> str:
    """'TypeError: message (in file.py, line 12)' pointing at the innermost frame."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return f"{type(exc).__name__}: {exc}"
    file = frames[-1].filename.replace("\\", "/").rsplit("/", 1)[-1]
    return f"{type(exc).__name__}: {exc} (in {file}, line {frames[-1].lineno})"
