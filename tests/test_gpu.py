"""coursekit on a device: every F pair, nn module, optimizer and fit(), in float32 and float64.

Every test takes ``device``: ``cpu`` always runs (so this code is tested on every machine),
``cuda`` is marked ``gpu`` and skipped without CUDA (``pytest -m gpu`` on a GPU machine runs
only those). The reference is the same computation on the CPU in float64; on the device,
results must stay there, keep their dtype and agree with it to float32's or float64's
rounding. On CUDA, TF32 is switched off (it rounds float32 products to about 1e-3), but
cuDNN stays on: these are the kernels the notebooks use.
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch

import coursekit.functional as F
from coursekit import data, nn, optim, train
from tests._autograd_ref import rel_error
from tests.test_functional import CASE_PARAMS, CASES, Case, Ints, make_inputs

DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=pytest.mark.gpu),
]
DTYPES = [pytest.param(torch.float32, id="float32"), pytest.param(torch.float64, id="float64")]
TOL = {torch.float32: 1e-4, torch.float64: 1e-10}
F64 = torch.float64


@pytest.fixture(autouse=True)
def _no_tf32():
    """Full float32 precision on CUDA (matmul and cuDNN); nothing to do on the CPU."""
    matmul, cudnn = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.set_float32_matmul_precision(matmul)
    torch.backends.cudnn.allow_tf32 = cudnn


def _as_tuple(grads: Any) -> tuple[Any, ...]:
    return grads if isinstance(grads, tuple) else (grads,)


def _assert_on(t: torch.Tensor, device: str, dtype: torch.dtype | None) -> None:
    assert t.device.type == device, f"on {t.device}, expected {device}"
    if dtype is not None and t.is_floating_point():
        assert t.dtype == dtype, f"{t.dtype}, expected {dtype}"


def _assert_close(ours: torch.Tensor, reference: torch.Tensor, tol: float, what: str) -> None:
    error = rel_error(ours.detach().cpu().double(), reference.detach().cpu().double())
    assert error < tol, f"{what}: relative error {error:.1e} (tolerance {tol:.0e})"


# ----------------------------------------------------------------------- functional pairs
# Pairs without a Case in tests/test_functional.py (their options need state or randomness, or,
# for lstm_step, the output is a pair (h, c): test_lstm_step_matches_autograd runs on CUDA too).
SPECIAL_PAIRS = {"dropout", "batchnorm", "lstm_step"}


def test_every_functional_pair_is_covered() -> None:
    pairs = {
        name.removesuffix("_forward")
        for name in F.__all__
        if name.endswith("_forward") and f"{name.removesuffix('_forward')}_backward" in F.__all__
    }
    covered = {case.op for case in CASES} | SPECIAL_PAIRS
    assert pairs <= covered, (
        f"no device test for {sorted(pairs - covered)}: add a Case to CASES in "
        "tests/test_functional.py"
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASE_PARAMS)
@pytest.mark.parametrize("device", DEVICES)
def test_functional_pair_on_device(device: str, dtype: torch.dtype, case: Case) -> None:
    forward, backward = getattr(F, f"{case.op}_forward"), getattr(F, f"{case.op}_backward")
    results = []
    for where, kind in ((device, dtype), ("cpu", F64)):
        inputs = make_inputs(list(case.specs), where, kind, seed=4)
        out, cache = forward(*inputs, **case.options)
        gen = torch.Generator().manual_seed(5)
        dout = (
            case.dout
            if case.dout is not None
            else torch.randn(out.shape, generator=gen, dtype=F64).to(where, kind)
        )
        results.append([out, *_as_tuple(backward(dout, cache))])
    for i, (ours, reference) in enumerate(zip(*results, strict=True)):
        if ours is None:
            continue
        _assert_on(ours, device, dtype)
        _assert_close(ours, reference, TOL[dtype], f"{case.id} result {i}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device", DEVICES)
def test_dropout_on_device(device: str, dtype: torch.dtype) -> None:
    x = make_inputs([(64, 32)], device, dtype)[0]
    gen = torch.Generator(device=device).manual_seed(0)
    out, cache = F.dropout_forward(x, 0.25, train=True, generator=gen)
    dout = torch.ones_like(x)
    dx = F.dropout_backward(dout, cache)
    for t in (out, dx):
        _assert_on(t, device, dtype)
    kept = out != 0
    assert 0.6 < kept.double().mean().item() < 0.9  # about 1 - p kept
    _assert_close(out[kept], x[kept] / 0.75, TOL[dtype], "kept values scaled by 1/(1-p)")
    _assert_close(dx, kept.to(dtype) / 0.75, TOL[dtype], "dx = dout * mask / (1-p)")


@pytest.mark.parametrize("train_mode", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device", DEVICES)
def test_batchnorm_on_device(device: str, dtype: torch.dtype, train_mode: bool) -> None:
    results, stats = [], []
    for where, kind in ((device, dtype), ("cpu", F64)):
        x, gamma, beta, mean = make_inputs([(9, 4), (4,), (4,), (4,)], where, kind, seed=2)
        var = torch.linspace(0.5, 2.0, 4, dtype=kind, device=where)
        out, cache = F.batchnorm_forward(x * 3 + 1, gamma, beta, mean, var, train=train_mode)
        dout = make_inputs([(9, 4)], where, kind, seed=3)[0]
        results.append([out, *F.batchnorm_backward(dout, cache)])
        stats.append([mean, var])
    for ours, reference in zip(results[0] + stats[0], results[1] + stats[1], strict=True):
        _assert_on(ours, device, dtype)
        _assert_close(ours, reference, TOL[dtype], "batchnorm")


# --------------------------------------------------------------------------- nn modules
def _conv_net(gen: torch.Generator) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, generator=gen, dtype=F64),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(12, 2, generator=gen, dtype=F64),
    )


# name -> (make the module on the CPU in float64 from a generator, input specs)
MODULES: dict[str, tuple[Callable[[torch.Generator], nn.Module], list[Any]]] = {
    "Linear": (lambda g: nn.Linear(5, 4, generator=g, dtype=F64), [(3, 5)]),
    "Conv2d": (
        lambda g: nn.Conv2d(3, 4, (3, 2), stride=2, padding=1, generator=g, dtype=F64),
        [(2, 3, 7, 6)],
    ),
    "BatchNorm1d": (lambda g: nn.BatchNorm1d(4, dtype=F64), [(6, 4)]),
    "LayerNorm": (lambda g: nn.LayerNorm(5, dtype=F64), [(3, 5)]),
    "Embedding": (lambda g: nn.Embedding(7, 3, generator=g, dtype=F64), [Ints(7, (2, 4))]),
    "RNN": (lambda g: nn.RNN(3, 4, generator=g, dtype=F64), [(2, 5, 3)]),
    "LSTM": (lambda g: nn.LSTM(3, 4, generator=g, dtype=F64), [(2, 5, 3)]),
    "ReLU": (lambda g: nn.ReLU(), [(3, 4)]),
    "LeakyReLU": (lambda g: nn.LeakyReLU(0.1), [(3, 4)]),
    "Sigmoid": (lambda g: nn.Sigmoid(), [(3, 4)]),
    "Tanh": (lambda g: nn.Tanh(), [(3, 4)]),
    "Dropout": (lambda g: nn.Dropout(0.5).eval(), [(3, 4)]),  # train mode: test_dropout_on_device
    "MaxPool2d": (lambda g: nn.MaxPool2d(2), [(2, 3, 6, 5)]),
    "Flatten": (lambda g: nn.Flatten(), [(2, 3, 4)]),
    "Residual": (lambda g: nn.Residual(nn.Linear(4, 4, generator=g, dtype=F64)), [(3, 4)]),
    "Sequential": (_conv_net, [(2, 2, 4, 4)]),
    "MSELoss": (lambda g: nn.MSELoss(), [(3, 2), (3, 2)]),
    "SoftmaxCrossEntropyLoss": (lambda g: nn.SoftmaxCrossEntropyLoss(), [(4, 3), Ints(3, (4,))]),
}
LOSSES = {"MSELoss", "SoftmaxCrossEntropyLoss"}


def test_every_module_is_covered() -> None:
    modules = {
        name
        for name in nn.__all__
        if inspect.isclass(cls := getattr(nn, name)) and issubclass(cls, nn.Module)
    }
    missing = modules - {"Module"} - set(MODULES)
    assert not missing, f"no device test for {sorted(missing)}: add them to MODULES above"


def _run_module(module: nn.Module, inputs: list[Any], loss: bool) -> list[torch.Tensor]:
    """Output, input gradient (when there is one) and every parameter's gradient."""
    out = module(*inputs)
    if loss:
        dx = module.backward(1.0)
    else:
        dout = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view(out.shape)
        dx = module.backward(dout.to(out.device))
    return [out, *([] if dx is None else [dx]), *(p.grad for p in module.parameters())]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", MODULES)
@pytest.mark.parametrize("device", DEVICES)
def test_module_on_device(device: str, dtype: torch.dtype, name: str) -> None:
    make, specs = MODULES[name]
    reference = make(torch.Generator().manual_seed(0))
    module = copy.deepcopy(reference).to(device, dtype)
    for p in module.parameters():
        _assert_on(p.data, device, dtype)
    ours = _run_module(module, make_inputs(specs, device, dtype, seed=1), name in LOSSES)
    expected = _run_module(reference, make_inputs(specs, "cpu", F64, seed=1), name in LOSSES)
    assert len(ours) == len(expected)
    for i, (a, b) in enumerate(zip(ours, expected, strict=True)):
        _assert_on(a, device, dtype)
        _assert_close(a, b, TOL[dtype], f"{name} result {i}")


# --------------------------------------------------------------------------- optimizers
OPTIMIZERS = {
    "SGD": (optim.SGD, torch.optim.SGD, {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.01}),
    "SGD-nesterov": (optim.SGD, torch.optim.SGD, {"lr": 0.05, "momentum": 0.8, "nesterov": True}),
    "RMSprop": (optim.RMSprop, torch.optim.RMSprop, {"lr": 0.01, "momentum": 0.5}),
    "Adam": (optim.Adam, torch.optim.Adam, {"lr": 0.01, "weight_decay": 0.1}),
    "AdamW": (optim.AdamW, torch.optim.AdamW, {"lr": 0.01, "weight_decay": 0.1}),
}


def test_every_optimizer_is_covered() -> None:
    classes = {
        name
        for name, cls in vars(optim).items()
        if inspect.isclass(cls) and issubclass(cls, optim.Optimizer) and cls is not optim.Optimizer
    }
    missing = classes - {kind.__name__ for kind, _, _ in OPTIMIZERS.values()}
    assert not missing, f"no device test for {sorted(missing)}: add them to OPTIMIZERS above"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("device", DEVICES)
def test_optimizer_on_device_matches_torch(device: str, dtype: torch.dtype, name: str) -> None:
    ours_cls, torch_cls, options = OPTIMIZERS[name]
    start = make_inputs([(4, 3), (5,)], device, dtype, seed=6)
    ours = [nn.Parameter(t.clone()) for t in start]
    theirs = [t.clone().requires_grad_() for t in start]
    opt, opt_ref = ours_cls(ours, **options), torch_cls(theirs, **options)
    for step in range(10):
        noise = make_inputs([(4, 3), (5,)], device, dtype, seed=100 + step)
        for p, q, n in zip(ours, theirs, noise, strict=True):
            p.grad = 0.5 * p.data + n
            q.grad = 0.5 * q.detach() + n
        opt.step()
        opt_ref.step()
    for p, q in zip(ours, theirs, strict=True):
        _assert_on(p.data, device, dtype)
        _assert_close(p.data, q, TOL[dtype], name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device", DEVICES)
def test_gradient_clipping_on_device(device: str, dtype: torch.dtype) -> None:
    grads = make_inputs([(4, 3), (5,)], device, dtype, seed=7)
    params = [nn.Parameter(torch.zeros_like(g)) for g in grads]
    for p, g in zip(params, grads, strict=True):
        p.grad = g.clone() * 10
    expected = math.sqrt(sum((g.double().cpu() * 10).pow(2).sum().item() for g in grads))
    norm = optim.clip_grad_norm_(params, 1.0)
    assert float(norm) == pytest.approx(expected, rel=1e-5)
    clipped = math.sqrt(sum(p.grad.double().pow(2).sum().item() for p in params))
    assert clipped == pytest.approx(1.0, rel=1e-4)
    optim.clip_grad_value_(params, 0.01)
    for p in params:
        _assert_on(p.grad, device, dtype)
        assert p.grad.abs().max().item() <= 0.01


# -------------------------------------------------------------------------------- fit()
def _train(where: str, dtype: torch.dtype) -> tuple[nn.Module, Any]:
    """Five epochs of full-batch Adam on the moons, the model made on ``where`` first."""
    X, y = data.make_moons(n=128, noise=0.1, seed=0)
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(
        nn.Linear(2, 16, generator=g, dtype=F64),
        nn.Tanh(),
        nn.Linear(16, 2, generator=g, dtype=F64),
    ).to(where, dtype)
    history = train.fit(
        model,
        nn.SoftmaxCrossEntropyLoss(),
        optim.Adam(model.parameters(), lr=0.01),
        (X, y),
        val=(X, y),
        epochs=5,
        batch_size=len(X),
        progress=False,
        device=where,
    )
    return model, history


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("device", DEVICES)
def test_fit_on_device(device: str, dtype: torch.dtype) -> None:
    """Full-batch training (so the shuffled order does not matter) on the device and on the
    CPU in float64: the same weights at the end, up to the device dtype's rounding."""
    model, history = _train(device, dtype)
    reference, _ = _train("cpu", F64)
    for p in model.parameters():
        _assert_on(p.data, device, dtype)
    if getattr(history, "device", None) is not None:
        assert torch.device(history.device).type == device
    assert history.epochs == 5
    assert all(math.isfinite(v) for v in history.train_loss + history.val_loss)
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        _assert_close(p.data, q.data, 1e-4 if dtype == torch.float32 else 1e-9, "weights")
