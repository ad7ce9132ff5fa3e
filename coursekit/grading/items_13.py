"""Graded items of lesson 13 (the capstone): the 1986 experiments of Rumelhart, Hinton and
Williams (Nature 323:533, 1986), trained by the student's own back-propagation.

Every item calls the same student function,

    train(X, y, params, eps, alpha, max_sweeps) -> (params, sweeps)

which trains a net with one hidden layer of sigmoid units, ŷ = σ(σ(X W1 + b1) W2 + b2), on
the patterns X (N, I) with targets y (N, O), starting from the initial weights ``params`` (a
dict W1 (I, H), b1 (H,), W2 (H, O), b2 (O,); the notation of lesson 13). The procedure is the
paper's: the error E = ½ Σ_n Σ_k (ŷ − y)² of the whole set, its gradient by back-propagation
written by hand, and after each sweep through the patterns the change
Δw(t) = −ε ∂E/∂w + α Δw(t−1) for every weight and bias. It stops at the first sweep after
which every output is within 0.1 of its target (the stopping rule of lesson 13), or after
``max_sweeps`` sweeps, and returns the weights and the number of sweeps done.

The grader never checks a sweep count or a weight value. It gives the function data it has
not seen (the patterns shuffled; XOR and its complement; encoders of two sizes, the larger
with its output units relabelled; mirror symmetry of two sizes with the bits in a random
order) and initial weights it drew itself, and checks properties of the returned net with
its own forward pass: the stopping rule reached, every pattern classified (or reconstructed),
and for the encoder distinct hidden codes, for symmetry mirror weights that are equal and
opposite.

Initial weights are drawn uniformly in ±0.3 and kept only when the grader's own run of the
procedure from them, on the same data, reaches the stopping rule within half the budget
given to the student and has the property checked, with a margin (hidden codes at least
0.1 from the threshold, mirror weights antisymmetric to 1% of the unit's largest weight). A
correct implementation starting from those weights follows the same path (its rounding
differs) and passes; about half of all draws give the 8-3-8 encoder codes that are not
distinct, so without this choice a correct solution would fail by chance.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import torch

from coursekit import rumelhart1986
from coursekit.grading.context import GradingContext
from coursekit.grading.registry import item

STOP = 0.1  # the stopping rule: every output within STOP of its target
INIT = 0.3  # initial weights and biases uniform in [-INIT, INIT]
MIRROR_TOLERANCE = 0.1  # |w_a + w_b| of a mirror pair, as a fraction of the unit's largest |w|
CANDIDATES = 4  # initial weights tried at once by the grader's own run
KEYS = ("W1", "b1", "W2", "b2")
NAMES = ("X", "y", "params", "eps", "alpha", "max_sweeps")
SIGNATURE = (
    "train(X, y, params, eps, alpha, max_sweeps) -> (params, sweeps); params = dict W1, b1, "
    "W2, b2 (initial in, trained out), sigmoid units, E = ½Σ(ŷ−y)², Δw = −eps·∂E/∂w + "
    "alpha·Δw_prev once per sweep, stop when every |ŷ−y| < 0.1"
)
PROCEDURE_HINT = (
    "From these initial weights the procedure as specified reaches the stopping rule in "
    "less than half of max_sweeps. Check: E = ½Σ(ŷ−y)² sums over the patterns, so ∂E/∂w "
    "sums over them too (no mean); the derivative of the sigmoid is a(1−a) at both layers; "
    "the weights change once per sweep, by Δw = −eps·∂E/∂w + alpha·Δw_prev, against the "
    "gradient; the biases learn too; start from the params passed in."
)


@dataclass
class Task:
    """One training problem as the student's function receives it. In the grader's code, x
    and d are the lesson's X and y (d for "desired", as in the paper), y its outputs ŷ and h
    its hidden activations a1."""

    title: str
    x: torch.Tensor  # the patterns X, (N, I)
    d: torch.Tensor  # the targets y, (N, O)
    hidden: int
    eps: float  # ε, the learning rate
    alpha: float  # α, the momentum
    max_sweeps: int
    label: Callable[[int], str]  # how feedback names pattern p, after the noun
    noun: str = "pattern"  # "point" for XOR


# ---------------------------------------------------------------------------- the procedure
def forward(params: dict[str, torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Hidden and output activations a1 = σ(X W1 + b1), ŷ = σ(a1 W2 + b2) (any leading dims)."""
    h = torch.sigmoid(x @ params["W1"] + params["b1"])
    return h, torch.sigmoid(h @ params["W2"] + params["b2"])


def _draw(ctx: GradingContext, task: Task, k: int) -> dict[str, torch.Tensor]:
    """k sets of initial weights, stacked along a first dimension, uniform in ±INIT."""
    n_in, n_out, hidden = task.x.shape[1], task.d.shape[1], task.hidden
    shapes = {"W1": (n_in, hidden), "b1": (1, hidden), "W2": (hidden, n_out), "b2": (1, n_out)}
    return {key: ctx.uniform(k, *shape, low=-INIT, high=INIT) for key, shape in shapes.items()}


def _single(stacked: dict[str, torch.Tensor], i: int) -> dict[str, torch.Tensor]:
    """The i-th set of weights of a stack, with the biases as vectors."""
    return {key: (t[i, 0] if key.startswith("b") else t[i]).clone() for key, t in stacked.items()}


def reference_train(
    task: Task,
    stacked: dict[str, torch.Tensor],
    cap: int,
    accept: Callable[[dict[str, torch.Tensor]], bool],
) -> tuple[int, int] | None:
    """Train every stacked set of weights at once by the paper's procedure for up to ``cap``
    sweeps; return (index, sweeps) of the first to reach the stopping rule with a net that
    ``accept`` takes, or None. The gradients are ``coursekit.rumelhart1986``'s; the loop is
    its ``train`` with an early exit at the first net accepted."""
    weights = {key: t.clone() for key, t in stacked.items()}
    velocity = {key: torch.zeros_like(t) for key, t in weights.items()}
    seen = torch.zeros(stacked["W1"].shape[0], dtype=torch.bool)  # reached the rule before
    for sweep in range(cap + 1):
        h, y = rumelhart1986.forward(weights, task.x)
        reached = ((y - task.d).abs().amax(dim=(1, 2)) < STOP) & ~seen
        if bool(reached.any()):
            for i in reached.nonzero().flatten().tolist():
                if accept({key: t[i].clone() for key, t in weights.items()}):
                    return i, sweep
            seen |= reached
            if bool(seen.all()):
                return None
        if sweep == cap:
            return None
        # the others train on (it does not matter): no mask, fewer operations per sweep
        grads = rumelhart1986.backward(weights, task.x, task.d, h, y)
        for key, t in weights.items():
            velocity[key].mul_(task.alpha).add_(grads[key], alpha=-task.eps)  # Δw = −ε∂E/∂w + αΔw
            t.add_(velocity[key])
    return None


def initial_weights(
    ctx: GradingContext, task: Task, accept: Callable[[dict[str, torch.Tensor]], bool]
) -> dict[str, torch.Tensor]:
    """Initial weights from which the procedure reaches the stopping rule within half the
    budget, with a net that ``accept`` takes."""
    for _ in range(20):
        stacked = _draw(ctx, task, CANDIDATES)
        found = reference_train(task, stacked, task.max_sweeps // 2, accept)
        if found is not None:
            return _single(stacked, found[0])
    raise RuntimeError(f"no initial weights found for {task.title}")


# ---------------------------------------------------------------------------- the student's net


def _a_type(value: object) -> str:
    """'a list', 'an int': the value's type with its article, for feedback."""
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _trained(ctx: GradingContext, train, task: Task, init: dict[str, torch.Tensor]):
    """Call the student's function; return (params as float64, sweeps), or fail with what
    is wrong in what it returned."""
    got = ctx.call(
        train,
        task.x.clone(),
        task.d.clone(),
        {key: t.clone() for key, t in init.items()},
        task.eps,
        task.alpha,
        task.max_sweeps,
        names=NAMES,
    )
    returns = "It should return (params, sweeps): the dict of trained weights and the number "
    returns += "of sweeps it made."
    if got is None:
        ctx.fail(
            "Your function returned None.", "Did you forget the `return` statement? " + returns
        )
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        what = _a_type(got) + (f" of {len(got)} values" if isinstance(got, (tuple, list)) else "")
        ctx.fail(f"Your function returned {what}.", returns)
    params, sweeps = got
    if not isinstance(params, dict):
        ctx.fail(
            f"The params it returned are {_a_type(params)}, not a dict.",
            "Return a dict with the keys W1, b1, W2, b2, like the params passed in.",
        )
    missing = [key for key in KEYS if key not in params]
    if missing:
        ctx.fail(f"The params it returned lack the key(s) {missing}; they have {list(params)}.")
    out = {}
    for key in KEYS:
        t = params[key]
        if not isinstance(t, torch.Tensor):
            ctx.fail(f"params[{key!r}] is {_a_type(t)}, not a tensor.")
        if t.shape != init[key].shape:
            ctx.fail(
                f"params[{key!r}] has shape {tuple(t.shape)}; the initial one had shape "
                f"{tuple(init[key].shape)}.",
                "Return weights of the shapes passed in: W1 (I, H), b1 (H,), W2 (H, O), b2 (O,).",
            )
        if not t.is_floating_point() or not bool(torch.isfinite(t).all()):
            ctx.fail(
                f"params[{key!r}] holds non-finite or non-float values.",
                "A diverging run (too large a step, or a step along the gradient instead "
                "of against it) overflows.",
            )
        out[key] = t.to(torch.float64)
    if isinstance(sweeps, torch.Tensor) and sweeps.numel() == 1 and not sweeps.is_floating_point():
        sweeps = int(sweeps.item())
    if not isinstance(sweeps, int) or isinstance(sweeps, bool):
        ctx.fail(
            f"The sweeps it returned are {_a_type(sweeps)}, not an int.",
            "Return the number of sweeps made, e.g. `return params, sweep`.",
        )
    if not 0 <= sweeps <= task.max_sweeps:
        ctx.fail(f"It returned sweeps = {sweeps}, outside 0 .. max_sweeps = {task.max_sweeps}.")
    return out, sweeps


def _stopping_rule(ctx: GradingContext, task: Task, y: torch.Tensor, sweeps: int) -> None:
    """Fail unless every output is within STOP of its target."""
    err = (y - task.d).abs()
    worst = float(err.max())
    if worst < STOP + 1e-9:
        return
    p, j = (int(i) for i in (err == err.max()).nonzero()[0])
    unit = f" output {j}" if task.d.shape[1] > 1 else ""
    where = (
        f"largest error {worst:.2f} at {task.noun} {task.label(p)}{unit} "
        f"(output {float(y[p, j]):.2f}, target {float(task.d[p, j]):g})"
    )
    if sweeps >= task.max_sweeps:
        ctx.fail(
            f"The net did not reach the stopping rule (every output within {STOP} of its "
            f"target) in {task.max_sweeps} sweeps: {where}.",
            PROCEDURE_HINT,
        )
    ctx.fail(
        f"Your function stopped after {sweeps} sweeps, but the net it returned has not "
        f"reached the stopping rule (every output within {STOP} of its target): {where}.",
        "Stop only when every |ŷ − y| < 0.1 (or when max_sweeps sweeps are done), and return "
        "the weights that passed the test.",
    )


def _misclassified(ctx: GradingContext, task: Task, y: torch.Tensor, sweeps: int) -> None:
    """Fail if an output, thresholded at 0.5, differs from its target."""
    wrong = ((y > 0.5).to(task.d.dtype) != task.d).any(dim=1).nonzero().flatten().tolist()
    if not wrong:
        return
    p = wrong[0]
    others = f" ({len(wrong)} of {len(task.d)} patterns wrong)" if len(wrong) > 1 else ""
    budget = sweeps >= task.max_sweeps
    ending = f": the net did not reach the stopping rule in {task.max_sweeps} sweeps."
    ctx.fail(
        f"{task.noun.capitalize()} {task.label(p)} classified {int(y[p, 0] > 0.5)} "
        f"(output {float(y[p, 0]):.2f}, target {float(task.d[p, 0]):g}){others}, after "
        f"{sweeps} sweeps{ending if budget else '.'}",
        PROCEDURE_HINT if budget else None,
    )


# ---------------------------------------------------------------------------- 13.xor
def _bits(row: torch.Tensor) -> str:
    return "".join(str(int(v)) for v in row.tolist())


def _xor_task(ctx: GradingContext, complement: bool, hidden: int) -> Task:
    x = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=torch.float64)
    x = x[torch.randperm(4, generator=ctx.generator)]
    d = (x[:, :1] != x[:, 1:]).to(torch.float64)
    if complement:
        d = 1 - d
    title = f"{'XNOR (the complement of XOR)' if complement else 'XOR'}, a 2-{hidden}-1 net"
    label = lambda p: "(" + ",".join(str(int(v)) for v in x[p].tolist()) + ")"  # noqa: E731
    return Task(title, x, d, hidden, 0.5, 0.9, max_sweeps=2000, label=label, noun="point")


@item(
    "13.xor",
    points=3,
    description="train a net by the 1986 procedure; it must classify all 4 XOR points",
    signature=SIGNATURE,
    covers="XOR on a 2-2-1 net and its complement on a 2-3-1 net, patterns shuffled, "
    "eps 0.5, alpha 0.9, initial weights drawn by the checker",
    timeout=60.0,
)
def xor(ctx: GradingContext, train) -> None:
    for complement, hidden in [(False, 2), (True, 3)]:
        task = _xor_task(ctx, complement, hidden)
        init = initial_weights(ctx, task, lambda net: True)
        with ctx.case(f"{task.title}, eps {task.eps}, alpha {task.alpha}"):
            params, sweeps = _trained(ctx, train, task, init)
            _, y = forward(params, task.x)
            _misclassified(ctx, task, y, sweeps)
            _stopping_rule(ctx, task, y, sweeps)


# ---------------------------------------------------------------------------- 13.encoder
def _codes(h: torch.Tensor) -> list[str]:
    return [_bits(row) for row in (h > 0.5).to(torch.int64)]


def _encoder_accepts(task: Task) -> Callable[[dict[str, torch.Tensor]], bool]:
    def accept(net: dict[str, torch.Tensor]) -> bool:
        h, _ = forward(net, task.x)
        return len(set(_codes(h))) == len(task.x) and float((h - 0.5).abs().min()) > 0.1

    return accept


def _encoder_task(ctx: GradingContext, n: int, hidden: int, sweeps: int, relabel: bool) -> Task:
    """The n patterns with one input unit on, in a random order; the target turns on the same
    unit, or (``relabel``) a unit of a random relabelling of the outputs."""
    on = torch.randperm(n, generator=ctx.generator)
    out = torch.randperm(n, generator=ctx.generator)[on] if relabel else on
    eye = torch.eye(n, dtype=torch.float64)
    x, d = eye[on], eye[out]
    if relabel:
        label = lambda p: f"{p} (input unit {int(on[p])} on, target unit {int(out[p])})"  # noqa: E731
        title = f"the {n}-{hidden}-{n} encoder, output units relabelled"
    else:
        label = lambda p: f"{p} (input unit {int(on[p])} on)"  # noqa: E731
        title = f"the {n}-{hidden}-{n} encoder"
    return Task(title, x, d, hidden, eps=0.1, alpha=0.9, max_sweeps=sweeps, label=label)


@item(
    "13.encoder",
    points=3,
    description="the same trainer on the encoder: distinct hidden codes, every input reconstructed",
    signature=SIGNATURE,
    covers="a 4-2-4 encoder and an 8-3-8 one with its outputs relabelled, patterns shuffled, "
    "eps 0.1, alpha 0.9, initial weights drawn by the checker",
    timeout=60.0,
)
def encoder(ctx: GradingContext, train) -> None:
    for n, hidden, budget, relabel in [(4, 2, 2000, False), (8, 3, 4000, True)]:
        task = _encoder_task(ctx, n, hidden, budget, relabel)
        init = initial_weights(ctx, task, _encoder_accepts(task))
        with ctx.case(f"{task.title}, eps {task.eps}, alpha {task.alpha}"):
            params, sweeps = _trained(ctx, train, task, init)
            h, y = forward(params, task.x)
            target = task.d.argmax(dim=1)
            wrong = (y.argmax(dim=1) != target).nonzero().flatten().tolist()
            if wrong:
                p = wrong[0]
                budget_used = sweeps >= task.max_sweeps
                ctx.fail(
                    f"Pattern {task.label(p)} is reconstructed as unit {int(y[p].argmax())} "
                    f"(the largest output, {float(y[p].max()):.2f}; unit {int(target[p])} "
                    f"gives {float(y[p, target[p]]):.2f}), after {sweeps} sweeps"
                    + (
                        f": the net did not reach the stopping rule in {task.max_sweeps} sweeps."
                        if budget_used
                        else "."
                    ),
                    PROCEDURE_HINT if budget_used else None,
                )
            _stopping_rule(ctx, task, y, sweeps)
            codes = _codes(h)
            seen: dict[str, int] = {}
            for p, code in enumerate(codes):
                if code in seen:
                    q = seen[code]
                    shown = ", ".join(f"{v:.2f}" for v in h[q].tolist())
                    shown_p = ", ".join(f"{v:.2f}" for v in h[p].tolist())
                    ctx.fail(
                        f"Codes not distinct: patterns {task.label(q)} and {task.label(p)} "
                        f"share hidden code {code} (hidden units thresholded at 0.5; "
                        f"activations {shown} and {shown_p}).",
                        "From these initial weights the procedure as specified gives every "
                        "pattern its own code. Train by the procedure exactly: the whole "
                        "set's gradient once per sweep, eps and alpha as passed, from the "
                        "params passed in.",
                    )
                seen[code] = p


# ---------------------------------------------------------------------------- 13.symmetry
def _symmetry_task(ctx: GradingContext, n: int, budget: int) -> tuple[Task, list[tuple[int, int]]]:
    """All 2^n patterns with the bits in a random column order; target 1 for a palindrome.
    Returns the task and the mirror pairs of columns (bit i and bit n−1−i of the string)."""
    strings = torch.tensor(list(itertools.product([0, 1], repeat=n)), dtype=torch.float64)
    d = (strings == strings.flip(1)).all(dim=1, keepdim=True).to(torch.float64)
    order = torch.randperm(n, generator=ctx.generator)  # column c holds bit order[c]
    rows = torch.randperm(2**n, generator=ctx.generator)
    x, d = strings[rows][:, order], d[rows]
    column = {int(bit): c for c, bit in enumerate(order.tolist())}
    pairs = [(column[i], column[n - 1 - i]) for i in range(n // 2)]
    pairs = [tuple(sorted(pair)) for pair in pairs]
    label = lambda p: _bits(x[p])  # noqa: E731
    title = f"{n}-bit mirror symmetry on a {n}-2-1 net, bit order {order.tolist()}"
    task = Task(title, x, d, 2, eps=0.1, alpha=0.9, max_sweeps=budget, label=label)
    return task, pairs


def _worst_pair(w1: torch.Tensor, pairs: list[tuple[int, int]]) -> tuple[float, int, int, int]:
    """(|w_a + w_b| / the unit's largest |w|, unit, a, b) of the least antisymmetric pair."""
    worst = (-1.0, 0, 0, 0)
    for unit in range(w1.shape[1]):
        scale = float(w1[:, unit].abs().max()) or 1.0
        for a, b in pairs:
            gap = float((w1[a, unit] + w1[b, unit]).abs()) / scale
            if gap > worst[0]:
                worst = (gap, unit, a, b)
    return worst


@item(
    "13.symmetry",
    points=4,
    description="the same trainer on mirror symmetry: all patterns right, mirror weights opposite",
    signature=SIGNATURE,
    covers="4-bit and 6-bit symmetry (all 16 and 64 patterns) with the bits in a random "
    "order, eps 0.1, alpha 0.9, initial weights drawn by the checker",
    timeout=60.0,
)
def symmetry(ctx: GradingContext, train) -> None:
    for n, budget in [(4, 2000), (6, 5000)]:
        task, pairs = _symmetry_task(ctx, n, budget)
        init = initial_weights(
            ctx,
            task,
            lambda net, pairs=pairs: _worst_pair(net["W1"], pairs)[0] < MIRROR_TOLERANCE / 10,
        )
        with ctx.case(f"{task.title}, eps {task.eps}, alpha {task.alpha}"):
            params, sweeps = _trained(ctx, train, task, init)
            _, y = forward(params, task.x)
            _misclassified(ctx, task, y, sweeps)
            _stopping_rule(ctx, task, y, sweeps)
            gap, unit, a, b = _worst_pair(params["W1"], pairs)
            if gap > MIRROR_TOLERANCE:
                w = params["W1"]
                shown = ", ".join(f"({i}, {j})" for i, j in pairs)
                ctx.fail(
                    f"Weights not mirrored: hidden unit {unit} has w_{a} = "
                    f"{float(w[a, unit]):.2f} and w_{b} = {float(w[b, unit]):.2f} from inputs "
                    f"{a} and {b}, which hold mirror bits in this bit order (the mirror pairs "
                    f"of columns are {shown}); they should be equal and opposite, to within "
                    f"{MIRROR_TOLERANCE:.0%} of the unit's largest weight "
                    f"({float(w[:, unit].abs().max()):.2f}).",
                    "From these initial weights the procedure as specified ends with every "
                    "mirror pair equal and opposite. Train by the procedure exactly, from "
                    "the params passed in, and return the weights it reached.",
                )
