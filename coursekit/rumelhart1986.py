"""The 1986 back-propagation experiments, many random starts at once.

Rumelhart, Hinton and Williams (1986), "Learning representations by back-propagating errors",
*Nature* 323, 533-536, and the longer "Learning internal representations by error propagation",
chapter 8 of *Parallel Distributed Processing*, vol. 1. Their procedure, as written there:

* **Units.** Every hidden and output unit is a logistic sigmoid of its total input,
  ``a = sigma(z)``; a bias is a weight from a unit that is always on. In the course's notation
  (lesson 05: the N patterns are the rows of X, a layer computes ``z = a W + b``)::

      z1 = X W1 + b1,               a1 = sigma(z1)        (N, I)(I, H) -> (N, H)
      z2 = a1 W2 + b2  [+ X Wd],    y_hat = sigma(z2)     (N, H)(H, O) -> (N, O)

  ``Wd`` are the optional **direct** input -> output connections (XOR with one hidden unit).
  The papers call the output y and the target d; here they are ``y_hat`` and ``y``.
* **Error.** ``E = 1/2 sum_n sum_k (y_hat_nk - y_nk)^2``: summed, not averaged, over the ``N``
  patterns and the ``O`` output units.
* **Sweeps.** One sweep presents every pattern once. The gradients of all patterns are added up
  and the weights change once, after the sweep (full-batch gradient descent), as in the paper's
  experiments.
* **Momentum.** ``Delta w(t) = -eps dE/dw(t) + alpha Delta w(t - 1)``.
* **Start.** Every weight and bias uniform in ``[-r, r]``.
* **Stop.** The papers state no single rule that we could check; here a run has learned when
  every output is within ``tol`` (0.1) of its target, tested before each sweep's update, and
  ``sweeps`` counts the updates made until then. A run that has not learned after
  ``max_sweeps`` counts as a failure.

Backward, derived in lesson 05 and written out by hand (no autograd)::

      delta2 = dE/dz2 = (y_hat - y) * y_hat (1 - y_hat)                 (N, O)
      dW2 = a1^T delta2,  db2 = sum_n delta2,  dWd = X^T delta2
      delta1 = dE/dz1 = (delta2 W2^T) * a1 (1 - a1)                     (N, H)
      dW1 = X^T delta1,   db1 = sum_n delta1

**Many seeds at once.** Every weight carries a leading *seed* dimension ``S``: ``W1`` is
``(S, I, H)`` and so on, and ``@`` multiplies the ``S`` matrices in one call, so 50 random
starts cost about as much as one. Each start draws its weights from its own generator seeded
with its seed, so training seeds ``[3, 4, 5]`` together gives the same nets as one at a time.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from coursekit import functional as F

__all__ = [
    "Net",
    "TrainResult",
    "Summary",
    "xor_patterns",
    "encoder_patterns",
    "symmetry_patterns",
    "init_weights",
    "forward",
    "error",
    "backward",
    "gradients",
    "train",
    "summarize",
    "format_table",
    "hidden_codes",
    "distinct_codes",
    "mirror_weights",
    "antisymmetry",
    "pair_ratios",
]

Weights = dict[str, torch.Tensor]
DeviceLike = torch.device | str | None


# ----------------------------------------------------------------------------- the problems


def xor_patterns(
    *, dtype: torch.dtype = torch.float64, device: DeviceLike = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The four XOR patterns X (4, 2), rows (0,0), (0,1), (1,0), (1,1), and targets y (4, 1)."""
    X = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], dtype=dtype, device=device)
    y = torch.tensor([[0.0], [1.0], [1.0], [0.0]], dtype=dtype, device=device)
    return X, y


def encoder_patterns(
    n: int = 8, *, dtype: torch.dtype = torch.float64, device: DeviceLike = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The n-bit encoder: n one-hot patterns X (n, n), each its own target."""
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"encoder_patterns: n must be an int >= 2, got {n!r}")
    X = torch.eye(n, dtype=dtype, device=device)
    return X, X.clone()


def symmetry_patterns(
    bits: int = 6, *, dtype: torch.dtype = torch.float64, device: DeviceLike = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """All 2**bits binary inputs X (2**bits, bits); target 1 where the input is its own mirror
    image (x_i = x_{bits+1-i} for every i), else 0. Rows in counting order."""
    if not isinstance(bits, int) or bits < 2 or bits % 2:
        raise ValueError(f"symmetry_patterns: bits must be an even int >= 2, got {bits!r}")
    X = torch.tensor(list(itertools.product([0.0, 1.0], repeat=bits)), dtype=dtype, device=device)
    y = (X == X.flip(1)).all(dim=1, keepdim=True).to(dtype)
    return X, y


# ----------------------------------------------------------------------------- the net


@dataclass(frozen=True)
class Net:
    """Layer sizes: ``inputs``-``hidden``-``outputs``; ``direct`` adds input -> output weights."""

    inputs: int
    hidden: int
    outputs: int
    direct: bool = False

    def shapes(self) -> dict[str, tuple[int, int]]:
        """The shape of each weight of one net (without the seed dimension)."""
        shapes = {
            "W1": (self.inputs, self.hidden),
            "b1": (1, self.hidden),
            "W2": (self.hidden, self.outputs),
            "b2": (1, self.outputs),
        }
        if self.direct:
            shapes["Wd"] = (self.inputs, self.outputs)
        return shapes

    def __str__(self) -> str:
        name = f"{self.inputs}-{self.hidden}-{self.outputs}"
        return name + (" with direct connections" if self.direct else "")


def init_weights(
    net: Net,
    seeds: Sequence[int],
    r: float,
    *,
    dtype: torch.dtype = torch.float64,
    device: DeviceLike = None,
) -> Weights:
    """Weights of one net per seed, uniform in [-r, r], stacked along a leading seed dimension.

    Each seed has its own CPU generator (so the draws do not depend on the device or on the other
    seeds); the weights are drawn in the order W1, b1, W2, b2, Wd, then moved to ``device``.
    """
    seeds = list(seeds)
    if not seeds or not all(isinstance(s, int) for s in seeds):
        raise ValueError(f"init_weights: seeds must be a non-empty list of ints, got {seeds!r}")
    if not r > 0:
        raise ValueError(f"init_weights: r must be positive, got {r!r}")
    per_seed = []
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        per_seed.append(
            {
                name: (2 * torch.rand(shape, generator=g, dtype=torch.float64) - 1) * r
                for name, shape in net.shapes().items()
            }
        )
    return {
        name: torch.stack([w[name] for w in per_seed]).to(dtype=dtype, device=device)
        for name in per_seed[0]
    }


def _check(weights: Weights, X: torch.Tensor, y: torch.Tensor | None = None) -> None:
    W1, W2 = weights["W1"], weights["W2"]
    if W1.dim() != 3 or W2.dim() != 3:
        raise ValueError(
            f"weights: W1 and W2 need a leading seed dimension, (S, I, H) and (S, H, O); "
            f"got {tuple(W1.shape)} and {tuple(W2.shape)}"
        )
    if X.dim() != 2 or X.shape[1] != W1.shape[1]:
        raise ValueError(
            f"X must be (N, {W1.shape[1]}) for W1 {tuple(W1.shape)}, got {tuple(X.shape)}"
        )
    if y is not None and (y.dim() != 2 or y.shape != (X.shape[0], W2.shape[2])):
        raise ValueError(
            f"y must be (N, O) = ({X.shape[0]}, {W2.shape[2]}) for X {tuple(X.shape)} and W2 "
            f"{tuple(W2.shape)}, got {tuple(y.shape)}"
        )


def forward(weights: Weights, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Hidden activations a1 (S, N, H) and outputs y_hat (S, N, O) of every net on the patterns X.

    sigma is lesson 03's logistic sigmoid (``F.sigmoid_forward``); ``torch.sigmoid`` computes the
    same function in one call, which matters here: the nets are tiny, so the time goes into the
    number of calls, not into arithmetic.
    """
    _check(weights, X)
    a1 = torch.sigmoid(X @ weights["W1"] + weights["b1"])  # (N, I) @ (S, I, H) -> (S, N, H)
    z2 = a1 @ weights["W2"] + weights["b2"]  # (S, N, H) @ (S, H, O) -> (S, N, O)
    if "Wd" in weights:
        z2 = z2 + X @ weights["Wd"]  # the direct connections: (N, I) @ (S, I, O)
    return a1, torch.sigmoid(z2)


def error(weights: Weights, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """E = 1/2 sum over patterns and outputs of (y_hat - y)^2, one value per net: shape (S,)."""
    _check(weights, X, y)
    _, y_hat = forward(weights, X)
    return 0.5 * ((y_hat - y) ** 2).sum(dim=(1, 2))


def backward(
    weights: Weights, X: torch.Tensor, y: torch.Tensor, a1: torch.Tensor, y_hat: torch.Tensor
) -> Weights:
    """dE/dw for every weight of every net, from the forward pass's a1 and y_hat (no autograd)."""
    delta2 = F.sigmoid_backward(y_hat - y, y_hat)  # (y_hat - y) * y_hat (1 - y_hat): (S, N, O)
    grads = {
        "W2": a1.transpose(1, 2) @ delta2,  # (S, H, N) @ (S, N, O) -> (S, H, O)
        "b2": delta2.sum(dim=1, keepdim=True),  # (S, 1, O)
    }
    if "Wd" in weights:
        grads["Wd"] = X.T @ delta2  # (I, N) @ (S, N, O) -> (S, I, O)
    delta1 = F.sigmoid_backward(delta2 @ weights["W2"].transpose(1, 2), a1)  # dE/dz1 (S, N, H)
    grads["W1"] = X.T @ delta1  # (I, N) @ (S, N, H) -> (S, I, H)
    grads["b1"] = delta1.sum(dim=1, keepdim=True)  # (S, 1, H)
    return {name: grads[name] for name in weights}


def gradients(weights: Weights, X: torch.Tensor, y: torch.Tensor) -> Weights:
    """dE/dw for every weight of every net: a forward pass, then back-propagation."""
    _check(weights, X, y)
    a1, y_hat = forward(weights, X)
    return backward(weights, X, y, a1, y_hat)


# ----------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    """What training many seeds gave, one entry per seed.

    ``converged[s]``: every output came within ``tol`` of its target; ``sweeps[s]``: the number
    of weight updates made before that (for a failure: ``max_sweeps``); ``error[s]``: E at the
    end; ``weights``: the final weights, seed dimension first (a converged net stops changing
    when it converges).
    """

    net: Net
    seeds: list[int]
    converged: torch.Tensor
    sweeps: torch.Tensor
    error: torch.Tensor
    weights: Weights
    settings: dict[str, float]

    def one(self, i: int) -> Weights:
        """The weights of the i-th seed's net, still with a seed dimension of size 1."""
        return {name: w[i : i + 1] for name, w in self.weights.items()}


def train(
    net: Net,
    X: torch.Tensor,
    y: torch.Tensor,
    seeds: Sequence[int],
    *,
    eps: float,
    alpha: float,
    r: float,
    max_sweeps: int,
    tol: float = 0.1,
    dtype: torch.dtype = torch.float64,
    device: DeviceLike = None,
    start: Weights | None = None,
) -> TrainResult:
    """Train one net per seed with the 1986 procedure (see the module's docstring).

    Every sweep: test whether all outputs are within ``tol`` of their targets (a net that passes
    is frozen, its sweep count recorded), then ``Delta w = -eps dE/dw + alpha Delta w_prev`` and
    ``w += Delta w`` for the nets still learning.

    ``start``: weights to continue from (one net per seed, e.g. a previous result's
    ``weights``) instead of fresh ones drawn from the seeds; the momentum starts again at 0.
    """
    if not (eps > 0 and 0 <= alpha < 1 and 0 < tol < 1):
        raise ValueError(
            f"train: need eps > 0, 0 <= alpha < 1, 0 < tol < 1; got {eps}, {alpha}, {tol}"
        )
    if not isinstance(max_sweeps, int) or max_sweeps < 0:
        raise ValueError(f"train: max_sweeps must be an int >= 0, got {max_sweeps!r}")
    X = X.to(dtype=dtype, device=device)
    y = y.to(dtype=dtype, device=device)
    if start is None:
        weights = init_weights(net, seeds, r, dtype=dtype, device=X.device)
    else:
        if set(start) != set(net.shapes()) or start["W1"].shape[0] != len(list(seeds)):
            raise ValueError(
                f"train: start must hold {sorted(net.shapes())} for {len(list(seeds))} seeds, "
                f"got {sorted(start)} with W1 {tuple(start['W1'].shape)}"
            )
        weights = {name: w.to(dtype=dtype, device=X.device).clone() for name, w in start.items()}
    _check(weights, X, y)
    S = len(seeds)
    learning = torch.ones(S, dtype=torch.bool, device=X.device)
    sweeps = torch.full((S,), max_sweeps, dtype=torch.int64, device=X.device)
    change = {name: torch.zeros_like(w) for name, w in weights.items()}  # Delta w(t - 1)
    for t in range(max_sweeps + 1):
        a1, y_hat = forward(weights, X)
        worst = (y_hat - y).abs().amax(dim=(1, 2))  # the largest |y_hat - y| of each net: (S,)
        done_now = learning & (worst < tol)
        sweeps = torch.where(done_now, t, sweeps)
        learning = learning & ~done_now
        if t == max_sweeps or (t % 25 == 0 and not learning.any()):
            break  # asking the device whether any net still learns costs a wait: not every sweep
        keep = learning.to(dtype)[:, None, None]  # 1 for the nets still learning, 0 for the rest
        grads = backward(weights, X, y, a1, y_hat)
        for name in weights:  # Delta w(t) = -eps dE/dw + alpha Delta w(t - 1); frozen nets: 0
            change[name] = keep * (alpha * change[name] - eps * grads[name])
            weights[name] = weights[name] + change[name]
    converged = ~learning  # a net that learned at the very last test counts too
    return TrainResult(
        net=net,
        seeds=list(seeds),
        converged=converged.cpu(),
        sweeps=sweeps.cpu(),
        error=error(weights, X, y).cpu(),
        weights=weights,
        settings={"eps": eps, "alpha": alpha, "r": r, "tol": tol, "max_sweeps": max_sweeps},
    )


# ----------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class Summary:
    """Success rate and sweeps to success (median and quartiles, over the successes only)."""

    seeds: int
    successes: int
    median: float | None
    q1: float | None
    q3: float | None

    @property
    def rate(self) -> float:
        return self.successes / self.seeds


def summarize(result: TrainResult) -> Summary:
    """Count the successes and describe their sweeps to success."""
    won = result.sweeps[result.converged].tolist()
    if not won:
        return Summary(len(result.seeds), 0, None, None, None)
    if len(won) == 1:
        return Summary(len(result.seeds), 1, float(won[0]), float(won[0]), float(won[0]))
    q1, median, q3 = statistics.quantiles(won, n=4, method="inclusive")
    return Summary(len(result.seeds), len(won), median, q1, q3)


def format_table(rows: Mapping[str, tuple[TrainResult, str]]) -> str:
    """A plain-text table: one row per experiment, the paper's figure beside ours.

    ``rows`` maps a name to (result, what the paper reports).
    """
    head = (
        f"{'experiment':<26}{'paper':>16}{'seeds':>7}{'learned':>12}"
        f"{'median sweeps':>15}{'quartiles':>12}   settings"
    )
    lines = [head, "-" * len(head)]
    for name, (result, paper) in rows.items():
        s = summarize(result)
        med = "-" if s.median is None else f"{s.median:.0f}"
        quart = "-" if s.q1 is None else f"{s.q1:.0f}-{s.q3:.0f}"
        st = result.settings
        settings = (
            f"eps {st['eps']:g}, alpha {st['alpha']:g}, r {st['r']:g}, max {st['max_sweeps']}"
        )
        learned = f"{s.successes} ({100 * s.rate:.0f}%)"
        lines.append(
            f"{name:<26}{paper:>16}{s.seeds:>7}{learned:>12}{med:>15}{quart:>12}   {settings}"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- what was learned


def hidden_codes(weights: Weights, X: torch.Tensor) -> torch.Tensor:
    """The hidden activations a1 (S, N, H): the code each net gives each pattern."""
    return forward(weights, X)[0]


def distinct_codes(codes: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Per net (S,): do the N codes, each unit rounded at ``threshold``, differ pairwise?"""
    if codes.dim() != 3:
        raise ValueError(f"codes must be (S, N, H), got {tuple(codes.shape)}")
    bits = (codes > threshold).to(torch.int64)  # (S, N, H)
    powers = 2 ** torch.arange(codes.shape[2], device=codes.device)
    numbers = (bits * powers).sum(dim=2)  # each rounded code as an integer: (S, N)
    return torch.tensor([len(set(row.tolist())) == codes.shape[1] for row in numbers.cpu()])


def mirror_weights(W1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split W1 (S, I, H) into its left half (S, I/2, H), positions 1..I/2, and its right half
    mirrored (S, I/2, H), positions I, I-1, ..., so that row i of each meets its mirror image."""
    if W1.dim() != 3 or W1.shape[1] % 2:
        raise ValueError(f"W1 must be (S, I, H) with I even, got {tuple(W1.shape)}")
    half = W1.shape[1] // 2
    return W1[:, :half], W1[:, half:].flip(1)


def antisymmetry(W1: torch.Tensor) -> torch.Tensor:
    """How far each hidden unit is from mirror weights equal and opposite, per net and unit
    (S, H): max_i |w_i + w_mirror(i)| / max_i |w_i|. 0 means exactly antisymmetric."""
    left, right = mirror_weights(W1)
    return (left + right).abs().amax(dim=1) / W1.abs().amax(dim=1)


def pair_ratios(W1: torch.Tensor) -> torch.Tensor:
    """The three (or I/2) mirror pairs' weight sizes, sorted and divided by the smallest, per net
    and unit (S, H, I/2); the paper's solution gives about (1, 2, 4). A pair's size is the mean
    of |w_i| and |w_mirror(i)|."""
    left, right = mirror_weights(W1)
    size = 0.5 * (left.abs() + right.abs())  # (S, I/2, H)
    size = size.sort(dim=1).values
    return (size / size[:, :1]).transpose(1, 2)
