"""How fast is hand-written backprop? ``python -m coursekit.bench``.

The measurements, all in one run of this program:

a. a 3-layer MLP, forward + backward: ``coursekit.functional`` (linear, relu,
   softmax cross-entropy, each backward written by hand) against the same math through
   ``torch.autograd``, which computes the same gradients (every weight and bias, and the
   input's);
b. conv2d on several shapes (``CONV_SHAPES``), forward + backward:
   ``F.conv2d_forward/backward`` (dx a transposed convolution, dw the weight-gradient
   convolution) against ``torch.nn.functional.conv2d`` + autograd; and max pooling,
   ``F.maxpool2d_forward/backward`` against ``torch.nn.functional.max_pool2d`` + autograd;
c. the scalar engine ``coursekit.scalar.Value``: how many nodes per second its
   ``backward()`` processes on a large random expression graph;
d. the scalar engine against Karpathy's micrograd (its recursive ``backward()``), on the same
   MLP-shaped graph built with each engine: only when ``micrograd`` is installed
   (``pip install micrograd``; the row is skipped otherwise);
e. lesson 14's causal attention (``F.attention_forward/backward``), lesson 11's tape
   (``coursekit.autograd.Tensor``) on the MLP of (a), and lesson 14's small GPT
   (forward + backward through ``coursekit.transformer``), each against the same maths
   differentiated by ``torch.autograd``.

Timing method: both variants of a benchmark are timed in the same loop, alternating
(manual then autograd, then autograd then manual, ...), so that a change of machine load
affects both alike; each repetition times enough calls to last at least ~20 ms, and the
table reports the median over repetitions. On CUDA every timing waits for the GPU
(``torch.cuda.synchronize``). Before timing, the two variants' gradients are compared, and
the largest relative error is shown, so the comparison is between equal computations.

Options: ``--device cpu|cuda|mps`` (default: ``coursekit.default_device()``),
``--repeats N`` (default 7), ``--quick`` (small sizes, for tests), ``--dtype``,
``--threads N`` (torch's CPU threads; on a busy machine, fewer threads than cores gives
steadier numbers, because threads that wait for each other suffer most from other load).
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from coursekit import functional as F
from coursekit.device import default_device, describe
from coursekit.gradcheck import rel_error
from coursekit.scalar import Value, topological_order

try:  # optional: only the comparison row (d) needs it
    from micrograd.engine import Value as MicrogradValue
except ImportError:  # pragma: no cover - depends on the environment
    MicrogradValue = None

__all__ = ["BenchResult", "main", "run_benchmarks", "format_table"]

_MIN_SECONDS_PER_REPEAT = 0.02


@dataclass
class BenchResult:
    """One row of the table.

    Attributes:
        name: what was measured.
        manual_s: median seconds of one call of the hand-written version.
        autograd_s: median seconds of one call of the autograd version (None for (c)).
        max_rel_error: largest relative error between the two versions' results.
        nodes: for the scalar engine, the number of nodes in the graph.
        micrograd_s: for (d), median seconds of micrograd's ``backward()`` on the same graph.
    """

    name: str
    manual_s: float
    autograd_s: float | None = None
    max_rel_error: float | None = None
    nodes: int | None = None
    micrograd_s: float | None = None

    @property
    def ratio(self) -> float | None:
        """manual time / autograd time (below 1: the hand-written version is faster)."""
        return None if self.autograd_s is None else self.manual_s / self.autograd_s

    @property
    def nodes_per_second(self) -> float | None:
        return None if self.nodes is None else self.nodes / self.manual_s

    @property
    def micrograd_ratio(self) -> float | None:
        """coursekit time / micrograd time (below 1: coursekit's backward is faster)."""
        return None if self.micrograd_s is None else self.manual_s / self.micrograd_s


# ------------------------------------------------------------------------------- timing
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _calls_per_repeat(fn: Callable[[], object], device: torch.device) -> int:
    """How many calls make one timed repetition last at least _MIN_SECONDS_PER_REPEAT."""
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    once = time.perf_counter() - start
    return max(1, int(_MIN_SECONDS_PER_REPEAT / max(once, 1e-9)) + 1)


def _time_once(fn: Callable[[], object], calls: int, device: torch.device) -> float:
    """Seconds per call, averaged over ``calls`` back-to-back calls."""
    _sync(device)
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / calls


def time_interleaved(
    a: Callable[[], object], b: Callable[[], object], repeats: int, device: torch.device
) -> tuple[float, float]:
    """Median seconds per call of ``a`` and of ``b``, timed alternately (a b, b a, a b, ...)."""
    a(), b()  # warm-up: first-call costs (allocations, kernel selection) are not measured
    calls_a, calls_b = _calls_per_repeat(a, device), _calls_per_repeat(b, device)
    times_a, times_b = [], []
    for r in range(repeats):
        if r % 2 == 0:
            times_a.append(_time_once(a, calls_a, device))
            times_b.append(_time_once(b, calls_b, device))
        else:
            times_b.append(_time_once(b, calls_b, device))
            times_a.append(_time_once(a, calls_a, device))
    return statistics.median(times_a), statistics.median(times_b)


def _max_rel_error(xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor]) -> float:
    return max(rel_error(x, y) for x, y in zip(xs, ys, strict=True))


# --------------------------------------------------------------------------- (a) the MLP
def bench_mlp(device: torch.device, dtype: torch.dtype, repeats: int, quick: bool) -> BenchResult:
    """Linear-ReLU-Linear-ReLU-Linear + softmax cross-entropy, forward and backward."""
    n, d, h, c = (64, 64, 64, 10) if quick else (512, 512, 512, 10)
    g = torch.Generator().manual_seed(0)

    def randn(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(*shape, generator=g, dtype=dtype) * scale).to(device)

    x, y = randn(n, d), torch.randint(0, c, (n,), generator=g).to(device)
    params = [
        randn(d, h, scale=(2 / d) ** 0.5),
        randn(h, scale=0.1),
        randn(h, h, scale=(2 / h) ** 0.5),
        randn(h, scale=0.1),
        randn(h, c, scale=(1 / h) ** 0.5),
        randn(c, scale=0.1),
    ]

    def manual() -> list[torch.Tensor]:
        w1, b1, w2, b2, w3, b3 = params
        z1, c1 = F.linear_forward(x, w1, b1)
        a1, r1 = F.relu_forward(z1)
        z2, c2 = F.linear_forward(a1, w2, b2)
        a2, r2 = F.relu_forward(z2)
        logits, c3 = F.linear_forward(a2, w3, b3)
        _, closs = F.softmax_cross_entropy_forward(logits, y)
        dlogits = F.softmax_cross_entropy_backward(1.0, closs)
        da2, dw3, db3 = F.linear_backward(dlogits, c3)
        da1, dw2, db2 = F.linear_backward(F.relu_backward(da2, r2), c2)
        dx, dw1, db1 = F.linear_backward(F.relu_backward(da1, r1), c1)
        return [dx, dw1, db1, dw2, db2, dw3, db3]

    leaves = [t.clone().requires_grad_(True) for t in (x, *params)]

    def autograd() -> list[torch.Tensor]:
        xa, w1, b1, w2, b2, w3, b3 = leaves
        a1 = torch.relu(xa @ w1 + b1)
        a2 = torch.relu(a1 @ w2 + b2)
        loss = torch.nn.functional.cross_entropy(a2 @ w3 + b3, y)
        return list(torch.autograd.grad(loss, leaves))

    error = _max_rel_error(manual(), autograd())
    t_manual, t_auto = time_interleaved(manual, autograd, repeats, device)
    name = f"MLP {d}-{h}-{h}-{c}, batch {n}, fwd+bwd"
    return BenchResult(name, t_manual, t_auto, max_rel_error=error)


# ------------------------------------------------------------------------------ (b) conv2d
@dataclass(frozen=True)
class ConvShape:
    """One convolution to time: x (N, C, H, W), w (F, C, KH, KW), stride, padding."""

    x: tuple[int, int, int, int]
    w: tuple[int, int, int, int]
    stride: int = 1
    padding: int = 0

    def __str__(self) -> str:
        x, w = ",".join(map(str, self.x)), ",".join(map(str, self.w))
        return f"x({x}) w({w}) stride {self.stride} pad {self.padding}"


# The first is a hidden layer of a small CNN; the others are first layers (3-channel
# images): strides 1 and 2, paddings 0 to 2, kernels 3 and 5, batches of 8 and 16.
CONV_SHAPES = (
    ConvShape((32, 16, 32, 32), (32, 16, 3, 3), stride=1, padding=1),
    ConvShape((16, 3, 32, 32), (16, 3, 3, 3), stride=1, padding=1),
    ConvShape((16, 3, 32, 32), (16, 3, 3, 3), stride=2, padding=0),
    ConvShape((8, 3, 32, 32), (16, 3, 5, 5), stride=1, padding=2),
    ConvShape((8, 3, 32, 32), (16, 3, 5, 5), stride=2, padding=1),
)
QUICK_CONV_SHAPES = (
    ConvShape((4, 3, 16, 16), (8, 3, 3, 3), stride=1, padding=1),
    ConvShape((2, 3, 12, 12), (4, 3, 5, 5), stride=2, padding=2),
)


def bench_conv2d(
    device: torch.device,
    dtype: torch.dtype,
    repeats: int,
    quick: bool = False,
    shape: ConvShape | None = None,
) -> BenchResult:
    """One convolution, forward and backward (dx, dw, db)."""
    shape = shape or (QUICK_CONV_SHAPES if quick else CONV_SHAPES)[0]
    s, p = shape.stride, shape.padding
    g = torch.Generator().manual_seed(1)
    x = torch.randn(shape.x, generator=g, dtype=dtype).to(device)
    w = (torch.randn(shape.w, generator=g, dtype=dtype) * 0.1).to(device)
    b = torch.randn(shape.w[0], generator=g, dtype=dtype).to(device)
    out_shape = torch.nn.functional.conv2d(x, w, b, stride=s, padding=p).shape
    dout = torch.randn(out_shape, generator=g, dtype=dtype).to(device)

    def manual() -> list[torch.Tensor]:
        _, cache = F.conv2d_forward(x, w, b, stride=s, padding=p)
        return list(F.conv2d_backward(dout, cache))

    leaves = [t.clone().requires_grad_(True) for t in (x, w, b)]

    def autograd() -> list[torch.Tensor]:
        out = torch.nn.functional.conv2d(leaves[0], leaves[1], leaves[2], stride=s, padding=p)
        return list(torch.autograd.grad(out, leaves, grad_outputs=dout))

    error = _max_rel_error(manual(), autograd())
    t_manual, t_auto = time_interleaved(manual, autograd, repeats, device)
    return BenchResult(f"conv2d {shape}, fwd+bwd", t_manual, t_auto, max_rel_error=error)


# -------------------------------------------------------------------------- (b') max pooling
# (x shape, kernel, stride): after the first conv row above, and overlapping windows.
POOL_SHAPES = (((32, 32, 32, 32), 2, 2), ((16, 16, 32, 32), 3, 2))
QUICK_POOL_SHAPES = (((4, 8, 16, 16), 2, 2), ((2, 4, 9, 9), 3, 2))


def bench_maxpool2d(
    device: torch.device,
    dtype: torch.dtype,
    repeats: int,
    quick: bool = False,
    shape: tuple[tuple[int, ...], int, int] | None = None,
) -> BenchResult:
    """Max pooling, forward and backward (dx), against torch.nn.functional.max_pool2d."""
    x_shape, k, s = shape or (QUICK_POOL_SHAPES if quick else POOL_SHAPES)[0]
    g = torch.Generator().manual_seed(2)
    x = torch.randn(x_shape, generator=g, dtype=dtype).to(device)
    out_shape = torch.nn.functional.max_pool2d(x, k, s).shape
    dout = torch.randn(out_shape, generator=g, dtype=dtype).to(device)

    def manual() -> list[torch.Tensor]:
        _, cache = F.maxpool2d_forward(x, k, s)
        return [F.maxpool2d_backward(dout, cache)]

    leaf = x.clone().requires_grad_(True)

    def autograd() -> list[torch.Tensor]:
        out = torch.nn.functional.max_pool2d(leaf, k, s)
        return list(torch.autograd.grad(out, leaf, grad_outputs=dout))

    error = _max_rel_error(manual(), autograd())
    t_manual, t_auto = time_interleaved(manual, autograd, repeats, device)
    name = f"maxpool2d x({','.join(map(str, x_shape))}) kernel {k} stride {s}, fwd+bwd"
    return BenchResult(name, t_manual, t_auto, max_rel_error=error)


# ------------------------------------------------------------------- (c) the scalar engine
def random_expression(n_ops: int, seed: int = 0, n_leaves: int = 100) -> Value:
    """A random expression graph of about ``n_ops`` operations on ``n_leaves`` leaves.

    Each operation takes one or two of the 50 most recent nodes, so the graph is deep
    (long chains) and wide (nodes used many times), like a real network's. Only operations
    that cannot raise are used (no exp, log or division).
    """
    rng = random.Random(seed)
    nodes = [Value(rng.uniform(-1, 1)) for _ in range(n_leaves)]
    binary = (Value.__add__, Value.__sub__, Value.__mul__)
    unary = (Value.tanh, Value.sigmoid, Value.relu)
    for _ in range(n_ops):
        recent = nodes[-50:]
        if rng.random() < 0.5:
            nodes.append(rng.choice(binary)(rng.choice(recent), rng.choice(recent)))
        else:
            nodes.append(rng.choice(unary)(rng.choice(recent)))
    return nodes[-1]


def bench_scalar(repeats: int, quick: bool) -> BenchResult:
    """Seconds for one ``Value.backward()`` (ordering + local steps) of a random graph."""
    root = random_expression(5_000 if quick else 200_000)
    nodes = len(topological_order(root))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        root.backward()
        times.append(time.perf_counter() - start)
    name = f"scalar Value.backward(), random graph of {nodes:,} nodes"
    return BenchResult(name, statistics.median(times), nodes=nodes)


# --------------------------------------------------------- (d) the scalar engine vs micrograd
def mlp_graph(value_class: type, width: int = 64, depth: int = 6, seed: int = 0) -> tuple:
    """The graph of an MLP on one example, built from ``value_class`` scalars.

    ``depth`` layers of ``width`` ReLU units, each unit b + w_1 a_1 + ... + w_n a_n as in
    micrograd's ``Neuron``, on ``width`` inputs; the root adds up the last layer's outputs.
    Only ``+``, ``*`` and ``relu`` are used, which every scalar engine has. The weights come
    from ``seed``, so two engines get the same numbers. Returns (root, leaves).
    """
    rng = random.Random(seed)
    activations = [value_class(rng.uniform(-1, 1)) for _ in range(width)]
    leaves = list(activations)
    for _ in range(depth):
        layer = []
        for _ in range(width):
            weights = [value_class(rng.uniform(-1, 1) / width**0.5) for _ in range(width)]
            bias = value_class(0.0)
            leaves += [*weights, bias]
            unit = sum((w * a for w, a in zip(weights, activations, strict=True)), bias)
            layer.append(unit.relu())
        activations = layer
    return sum(activations[1:], activations[0]), leaves


def bench_micrograd(repeats: int, quick: bool) -> BenchResult | None:
    """``Value.backward()`` against micrograd's, on the same MLP-shaped graph (None without it).

    Each engine builds its graph once; then the two backward passes are timed alternately,
    one call each per repetition (a call lasts tens of milliseconds), and the median is kept.
    Both are pure Python on one thread, so the clock is this thread's processor time, which
    does not count the moments when other programs have the core (the wall clock on Windows,
    where the thread clock ticks too coarsely). Before timing, the leaves' gradients of the
    two engines are compared.
    """
    if MicrogradValue is None:
        return None
    width, depth = (16, 3) if quick else (64, 6)
    ours, our_leaves = mlp_graph(Value, width, depth)
    theirs, their_leaves = mlp_graph(MicrogradValue, width, depth)
    ours.backward()
    theirs.backward()
    error = rel_error(
        torch.tensor([leaf.grad for leaf in our_leaves], dtype=torch.float64),
        torch.tensor([float(leaf.grad) for leaf in their_leaves], dtype=torch.float64),
    )
    # micrograd orders the graph by recursion: one Python call per node of the longest path
    needed = 2 * depth * (width + 3) + width + 100
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, needed))
    clock = time.perf_counter if sys.platform == "win32" else time.thread_time
    try:
        times_ours, times_theirs = [], []
        for r in range(repeats):
            for backward, times in [(ours.backward, times_ours), (theirs.backward, times_theirs)][
                :: 1 if r % 2 == 0 else -1
            ]:
                start = clock()
                backward()
                times.append(clock() - start)
    finally:
        sys.setrecursionlimit(limit)
    nodes = len(topological_order(ours))
    name = f"Value.backward() vs micrograd, MLP {depth}x{width} ReLU, {nodes:,} nodes"
    return BenchResult(
        name,
        statistics.median(times_ours),
        max_rel_error=error,
        nodes=nodes,
        micrograd_s=statistics.median(times_theirs),
    )


# ------------------------------------------------- (e) attention, the tape, a GPT training step
def bench_attention(
    device: torch.device, dtype: torch.dtype, repeats: int, quick: bool
) -> BenchResult:
    """Causal scaled dot-product attention (lesson 14), forward and backward (dq, dk, dv),
    against the same maths (masked softmax of q kᵀ/√d, times v) differentiated by autograd."""
    b, h, t, d = (2, 2, 16, 8) if quick else (8, 4, 128, 32)
    g = torch.Generator().manual_seed(2)
    q, k, v, dout = (torch.randn(b, h, t, d, generator=g, dtype=dtype).to(device) for _ in "qkvo")
    mask = torch.ones(t, t, dtype=torch.bool, device=device).triu(1)

    def manual() -> list[torch.Tensor]:
        _, cache = F.attention_forward(q, k, v, causal=True)
        return list(F.attention_backward(dout, cache))

    leaves = [x.clone().requires_grad_(True) for x in (q, k, v)]

    def autograd() -> list[torch.Tensor]:
        qa, ka, va = leaves
        scores = (qa @ ka.transpose(-2, -1) / d**0.5).masked_fill(mask, float("-inf"))
        out = torch.softmax(scores, dim=-1) @ va
        return list(torch.autograd.grad(out, leaves, grad_outputs=dout))

    error = _max_rel_error(manual(), autograd())
    t_manual, t_auto = time_interleaved(manual, autograd, repeats, device)
    name = f"attention (B,H,T,d)=({b},{h},{t},{d}) causal, fwd+bwd"
    return BenchResult(name, t_manual, t_auto, max_rel_error=error)


def bench_tape(device: torch.device, dtype: torch.dtype, repeats: int, quick: bool) -> BenchResult:
    """The MLP of (a) through lesson 11's tape (coursekit.autograd.Tensor), whose backward
    calls the same F pairs, against torch.autograd: the cost of recording a graph in Python."""
    from coursekit import autograd as ag

    n, d, h, c = (64, 64, 64, 10) if quick else (512, 512, 512, 10)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g, dtype=dtype).to(device)
    y = torch.randint(0, c, (n,), generator=g).to(device)
    sizes = [(d, h), (h, h), (h, c)]
    params = []
    for fan_in, fan_out in sizes:
        w = torch.randn(fan_in, fan_out, generator=g, dtype=dtype) * (2 / fan_in) ** 0.5
        params += [w.to(device), (torch.randn(fan_out, generator=g, dtype=dtype) * 0.1).to(device)]
    tape_params = [ag.Tensor(p, requires_grad=True) for p in params]

    def manual() -> list[torch.Tensor]:
        tape_x = ag.Tensor(x, requires_grad=True)
        for p in tape_params:
            p.grad = None
        a = tape_x
        for i in range(0, len(tape_params), 2):
            a = ag.linear(a, tape_params[i], tape_params[i + 1])
            if i + 2 < len(tape_params):
                a = ag.relu(a)
        ag.softmax_cross_entropy(a, y).backward()
        return [tape_x.grad, *(p.grad for p in tape_params)]

    # As in (a), both compute the input's gradient too (F.linear_backward always returns
    # dx), so the two do the same arithmetic and the ratio measures the tape's bookkeeping.
    leaves = [t.clone().requires_grad_(True) for t in (x, *params)]

    def autograd() -> list[torch.Tensor]:
        xa, w1, b1, w2, b2, w3, b3 = leaves
        a2 = torch.relu(torch.relu(xa @ w1 + b1) @ w2 + b2)
        loss = torch.nn.functional.cross_entropy(a2 @ w3 + b3, y)
        return list(torch.autograd.grad(loss, leaves))

    error = _max_rel_error(manual(), autograd())
    t_manual, t_auto = time_interleaved(manual, autograd, repeats, device)
    name = f"tape (lesson 11) MLP {d}-{h}-{h}-{c}, batch {n}, fwd+bwd"
    return BenchResult(name, t_manual, t_auto, max_rel_error=error)


def bench_gpt(device: torch.device, dtype: torch.dtype, repeats: int, quick: bool) -> BenchResult:
    """Lesson 14's GPT, forward and backward of the loss, against the same model in
    torch.nn (``TorchGPT``, plain attention maths) differentiated by autograd."""
    from coursekit import nn
    from coursekit.transformer import GPT, TorchGPT

    vocab, block, batch = (32, 16, 4) if quick else (65, 64, 16)
    g = torch.Generator().manual_seed(3)
    model = GPT(vocab, block, d_model=32 if quick else 64, n_heads=4, n_layers=2, generator=g)
    model = model.to(device=device, dtype=dtype)
    twin = TorchGPT.from_coursekit(model)
    idx = torch.randint(vocab, (batch, block), generator=g).to(device)
    targets = torch.randint(vocab, (batch * block,), generator=g).to(device)
    loss_fn = nn.SoftmaxCrossEntropyLoss()

    def manual() -> list[torch.Tensor]:
        model.zero_grad()
        loss_fn(model(idx).reshape(batch * block, vocab), targets)
        model.backward(loss_fn.backward().reshape(batch, block, vocab))
        return [p.grad for p in model.parameters()]

    twin_params = twin.ordered_parameters()
    transposed = [t for _, t in twin._matched()]

    def autograd() -> list[torch.Tensor]:
        logits = twin(idx).reshape(batch * block, vocab)
        loss = torch.nn.functional.cross_entropy(logits, targets)
        grads = torch.autograd.grad(loss, twin_params)
        return [gr.T if t else gr for gr, t in zip(grads, transposed, strict=True)]

    error = _max_rel_error(manual(), autograd())
    t_manual, t_auto = time_interleaved(manual, autograd, repeats, device)
    params = sum(p.data.numel() for p in model.parameters())
    name = f"GPT (lesson 14) {params:,} parameters, batch {batch}x{block}, fwd+bwd"
    return BenchResult(name, t_manual, t_auto, max_rel_error=error)


# -------------------------------------------------------------------------------- report
def run_benchmarks(
    device: torch.device | str | None = None,
    repeats: int = 7,
    quick: bool = False,
    dtype: torch.dtype = torch.float32,
) -> list[BenchResult]:
    """Run every benchmark of the table and return their results."""
    if repeats < 1:
        raise ValueError(f"run_benchmarks(repeats): expected at least 1, got {repeats}")
    device = torch.device(device) if device is not None else default_device()
    with torch.enable_grad():  # the autograd variants need it, even inside torch.no_grad()
        conv_shapes = QUICK_CONV_SHAPES if quick else CONV_SHAPES
        pool_shapes = QUICK_POOL_SHAPES if quick else POOL_SHAPES
        return [
            bench_mlp(device, dtype, repeats, quick),
            *(bench_conv2d(device, dtype, repeats, shape=shape) for shape in conv_shapes),
            *(bench_maxpool2d(device, dtype, repeats, shape=shape) for shape in pool_shapes),
            bench_attention(device, dtype, repeats, quick),
            bench_tape(device, dtype, repeats, quick),
            bench_gpt(device, dtype, repeats, quick),
            bench_scalar(repeats, quick),
            *filter(None, [bench_micrograd(repeats, quick)]),  # None without micrograd
        ]


def format_table(results: Sequence[BenchResult]) -> str:
    """The results as a Markdown table (readable as plain text too)."""
    lines = [
        "| benchmark | manual (ms) | autograd (ms) | manual / autograd | max rel. error |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        if r.autograd_s is None:
            continue
        lines.append(
            f"| {r.name} | {r.manual_s * 1e3:.3f} | {r.autograd_s * 1e3:.3f} | "
            f"{r.ratio:.2f} | {r.max_rel_error:.1e} |"
        )
    scalar = [r for r in results if r.nodes is not None and r.micrograd_s is None]
    if scalar:
        lines += ["", "| scalar engine | backward (ms) | nodes / s |", "|---|---:|---:|"]
        for r in scalar:
            lines.append(f"| {r.name} | {r.manual_s * 1e3:.1f} | {r.nodes_per_second:,.0f} |")
    against = [r for r in results if r.micrograd_s is not None]
    if against:
        lines += [
            "",
            "| scalar engine vs micrograd | coursekit (ms) | micrograd (ms) "
            "| coursekit / micrograd | max rel. error |",
            "|---|---:|---:|---:|---:|",
        ]
        for r in against:
            lines.append(
                f"| {r.name} | {r.manual_s * 1e3:.1f} | {r.micrograd_s * 1e3:.1f} | "
                f"{r.micrograd_ratio:.2f} | {r.max_rel_error:.1e} |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m coursekit.bench",
        description="Hand-written backprop (coursekit.functional) against torch.autograd.",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: the fastest)")
    parser.add_argument("--repeats", type=int, default=7, help="timed repetitions (median)")
    parser.add_argument("--quick", action="store_true", help="small sizes, a few seconds")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads for torch (default: unchanged)"
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats: expected at least 1, got {args.repeats}")
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads: expected at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    device = torch.device(args.device) if args.device else default_device()
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available here")
    dtype = getattr(torch, args.dtype)

    print(f"machine: {describe(device)}")
    print(
        f"torch {torch.__version__}, python {platform.python_version()}, {args.dtype}, "
        f"median of {args.repeats} interleaved repetitions{' (quick sizes)' if args.quick else ''}"
    )
    print()
    print(format_table(run_benchmarks(device, args.repeats, args.quick, dtype)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
