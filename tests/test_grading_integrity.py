"""Grading that the student's code cannot fool: every attack scores zero, and the next honest
check in the same process still passes."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch

from coursekit.grading import check
from coursekit.grading.isolation import NO_INTEGRITY
from tests.grading_fixtures.lesson_02 import tanh_backward
from tests.grading_fixtures.lesson_03 import relu_forward
from tests.grading_fixtures.lesson_04 import linear_backward


def _honest_check_still_passes() -> None:
    result = check("04.linear_backward", linear_backward)
    assert result.passed, str(result)


def _zero(result, *words: str) -> None:
    assert not result.passed and result.points == 0, str(result)
    for word in words:
        assert word in str(result), str(result)


# ---------------------------------------------------------------------------- forged messages
def forge_the_result_and_exit(dout, cache):
    """Writes a forged "done, passed" message (the old format, and raw bytes) on every pipe."""
    import pickle
    import struct

    from coursekit.grading.context import Outcome

    data = pickle.dumps(("done", (Outcome("passed", "All 7 test cases passed.", 7), "")))
    for fd in range(3, 256):
        for frame in (struct.pack("!Q", len(data)) + data, b"\0" * 64):
            try:
                os.write(fd, frame)
            except OSError:
                pass
    os._exit(0)


class ZeroDifference(torch.Tensor):
    """A tensor whose difference with anything is zero (the grader computes got - expected)."""

    def __sub__(self, other):
        return torch.zeros_like(torch.Tensor(other))

    __rsub__ = __sub__


def tensor_subclass(dout, cache):
    return tuple(
        torch.zeros_like(g).as_subclass(ZeroDifference) for g in linear_backward(dout, cache)
    )


def read_the_grader_frames(dout, cache):
    import inspect
    import sys

    for frame in inspect.stack():
        if "expected" in frame.frame.f_locals:
            return frame.frame.f_locals["expected"]
    frame = sys._getframe()
    while frame is not None:
        if "expected" in frame.f_locals:
            return frame.f_locals["expected"]
        frame = frame.f_back
    x, w, b = cache
    return torch.zeros_like(x), torch.zeros_like(w), torch.zeros_like(b)


def patch_the_grader(dout, cache):
    import gc
    import importlib

    context = importlib.import_module("coursekit.grading." + "context")  # past the source scan
    context.TOLERANCE = float("inf")
    context.GradingContext._compare_one = lambda *args, **kwargs: None
    for obj in gc.get_objects():
        if isinstance(obj, context.GradingContext):
            obj.compare = lambda *args, **kwargs: None
    x, w, b = cache
    return torch.zeros_like(x), torch.zeros_like(w), torch.zeros_like(b)


def patch_the_grader_openly(dout, cache):
    import coursekit.grading.context as context

    context.TOLERANCE = float("inf")
    x, w, b = cache
    return torch.zeros_like(x), torch.zeros_like(w), torch.zeros_like(b)


@pytest.mark.parametrize(
    ("fn", "words"),
    [
        (forge_the_result_and_exit, ()),
        (tensor_subclass, ("tensor subclass",)),
        (read_the_grader_frames, ("wrong",)),
        (patch_the_grader, ("wrong",)),
        (patch_the_grader_openly, ("tampers", "import coursekit.grading.context as context")),
        (lambda dout, cache: {"dx"}, ("returned a set",)),
        (lambda dout, cache: (*linear_backward(dout, cache)[:2], object()), ("got a object",)),
    ],
    ids=["forged", "subclass", "frames", "patch", "patch-openly", "set", "object"],
)
def test_an_attack_scores_zero_and_the_next_check_passes(fn, words):
    _zero(check("04.linear_backward", fn), *words)
    _honest_check_still_passes()


# ---------------------------------------------------------------------------- autograd, every route
def tanh_by_jvp(a, dout):
    return torch.func.jvp(torch.tanh, (a,), (dout,))[1]


def tanh_by_jacfwd(a, dout):
    return (torch.func.jacfwd(torch.tanh)(a.reshape(-1)) @ dout.reshape(-1)).reshape(a.shape)


def tanh_by_dual_numbers(a, dout):
    import torch.autograd.forward_ad as fwad

    with fwad.dual_level():
        return fwad.unpack_dual(torch.tanh(fwad.make_dual(a, dout))).tangent


def tanh_engine_restored(a, dout):
    from torch.autograd.variable import Variable

    Variable._execution_engine = torch._C._ImperativeEngine()
    a = a.clone().requires_grad_(True)
    with torch.enable_grad():
        torch.tanh(a).backward(dout)
    return a.grad


def _hidden(module: str, name: str):
    """getattr by strings: a route the source scan cannot read."""
    import importlib

    return getattr(importlib.import_module(module), name)


def tanh_by_hidden_jvp(a, dout):
    return _hidden("torch." + "func", "j" + "vp")(torch.tanh, (a,), (dout,))[1]


def tanh_by_hidden_dual_numbers(a, dout):
    fwad = __import__("torch.autograd." + "forward_ad", fromlist=["x"])
    with getattr(fwad, "dual_" + "level")():
        dual = getattr(fwad, "make_" + "dual")(a, dout)
        return getattr(fwad, "unpack_" + "dual")(torch.tanh(dual)).tangent


def tanh_by_hidden_engine(a, dout):
    variable = _hidden("torch.autograd." + "variable", "Variable")
    setattr(variable, "_execution" + "_engine", _hidden("torch._C", "_Imperative" + "Engine")())
    return dout * (1 - torch.tanh(a) ** 2)  # right, but the engine was put back


def tanh_by_hidden_backward(a, dout):
    a = a.clone()
    getattr(a, "requires_grad" + "_")(True)
    with getattr(torch, "enable" + "_grad")():
        getattr(torch.tanh(a), "back" + "ward")(dout)
    return a.grad


@pytest.mark.parametrize(
    "fn",
    [
        tanh_by_jvp,
        tanh_by_jacfwd,
        tanh_by_dual_numbers,
        tanh_engine_restored,
        tanh_by_hidden_jvp,
        tanh_by_hidden_dual_numbers,
        tanh_by_hidden_engine,
        tanh_by_hidden_backward,
    ],
)
def test_automatic_differentiation_by_any_route_scores_zero(fn):
    result = check("02.tanh_backward", fn)
    _zero(result, "autograd")
    assert result.status == "uses autograd"
    assert check("02.tanh_backward", tanh_backward).passed
    _honest_check_still_passes()


def test_a_source_hit_quotes_the_line():
    result = check("02.tanh_backward", tanh_by_jvp)
    assert "return torch.func.jvp(torch.tanh, (a,), (dout,))[1]" in result.feedback


def linear_by_coursekit(dout, cache):
    from coursekit import functional as F

    return F.linear_backward(dout, F.linear_forward(*cache)[1])


def linear_by_hidden_coursekit(dout, cache):
    f = __import__("coursekit." + "functional", fromlist=["x"])
    return getattr(f, "linear_" + "backward")(dout, getattr(f, "linear_" + "forward")(*cache)[1])


@pytest.mark.parametrize("fn", [linear_by_coursekit, linear_by_hidden_coursekit])
def test_calling_coursekits_own_implementation_scores_zero(fn):
    result = check("04.linear_backward", fn)
    _zero(result, "coursekit's own linear_backward")
    assert result.status == "uses coursekit"
    _honest_check_still_passes()


# ---------------------------------------------------------------------------- processes
def test_processes_the_student_code_starts_end_with_the_check(tmp_path):
    marker = tmp_path / "grandchild.pid"

    def forks(dout, cache):
        pid = os.fork()
        if pid == 0:
            (tmp_path / "pid.tmp").write_text(str(os.getpid()))
            os.rename(tmp_path / "pid.tmp", marker)  # whole, or not at all
            time.sleep(120)
            os._exit(0)
        while not marker.exists():
            time.sleep(0.01)
        return linear_backward(dout, cache)

    assert check("04.linear_backward", forks).passed
    pid = int(marker.read_text())
    for _ in range(200):  # killed with the group; reaped by init shortly after
        stat = Path(f"/proc/{pid}/stat")
        if not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
            break
        time.sleep(0.02)
    else:
        pytest.fail(f"the grandchild {pid} outlived check()")


def test_a_keyboard_interrupt_raised_by_student_code_is_the_students_error():
    def interrupts(dout, cache):
        raise KeyboardInterrupt

    result = check("04.linear_backward", interrupts)
    assert result.status == "error" and "KeyboardInterrupt" in result.feedback, str(result)
    assert "grader itself failed" not in result.feedback
    _honest_check_still_passes()


def test_in_process_mode_says_it_offers_no_integrity(monkeypatch):
    monkeypatch.setenv("COURSEKIT_GRADING_ISOLATION", "inprocess")
    result = check("04.linear_backward", linear_backward)
    assert result.passed and NO_INTEGRITY in result.feedback
    assert "no integrity" in NO_INTEGRITY


# ---------------------------------------------------------------------------- right, wrong answers
def _tanh_cosh(a, dout):
    return dout / torch.cosh(a) ** 2


def _tanh_factored(a, dout):
    t = torch.tanh(a)
    return dout * (1 - t) * (1 + t)


def _tanh_exp(a, dout):
    return dout * 4 / (torch.exp(a) + torch.exp(-a)) ** 2


@pytest.mark.parametrize("fn", [tanh_backward, _tanh_cosh, _tanh_factored, _tanh_exp])
def test_correct_alternative_formulas_pass_on_many_seeds(fn):
    from coursekit.grading.context import grade
    from coursekit.grading.registry import get_item

    for seed in range(20):
        outcome = grade(get_item("02.tanh_backward"), (fn,), seed)
        assert outcome.status == "passed", f"seed {seed}: {outcome.feedback}"


def _relu_at_zero(dout, cache):
    return dout * (cache >= 0)


def _dropout_forward(x, p, generator):
    keep = (torch.rand(x.shape, generator=generator, dtype=x.dtype) >= p).to(x.dtype) / (1 - p)
    _LAST["mask"] = keep
    return x * keep, keep


_LAST: dict = {}


def _dropout_backward_latest_mask(dout, cache):
    return dout * _LAST["mask"]


def _maxpool_every_maximum(dout, cache):
    x, k, stride = cache
    n, c, ho, wo = dout.shape
    dx = torch.zeros_like(x)
    for i in range(ho):
        for j in range(wo):
            rows, cols = slice(i * stride, i * stride + k), slice(j * stride, j * stride + k)
            window = x[:, :, rows, cols]
            mask = window == window.amax((2, 3), keepdim=True)
            dx[:, :, rows, cols] += mask * dout[:, :, i : i + 1, j : j + 1]
    return dx


def _batchnorm_unbiased(dout, cache):
    x, gamma, eps = cache
    n = x.shape[0]
    std = torch.sqrt(x.var(0) + eps)  # unbiased: divides by N - 1
    xhat = (x - x.mean(0)) / std
    dx = gamma / (n * std) * (n * dout - dout.sum(0) - xhat * (dout * xhat).sum(0))
    return dx, (dout * xhat).sum(0), dout.sum(0)


def _adam_t_from_zero(w, grad, m, v, t, lr, beta1, beta2, eps):
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad**2
    m_hat, v_hat = m / (1 - beta1 ** (t - 1)), v / (1 - beta2 ** (t - 1))
    return w - lr * m_hat / (v_hat.sqrt() + eps), m, v


def _bptt(dhs, caches, *, overwrite=False, skip_last=False, tanh=True):
    dh_next = torch.zeros_like(caches[0][1])
    dxs, grads = [], None
    steps = range(len(caches) - 1) if skip_last else range(len(caches))
    for t in reversed(steps):
        x, h_prev, wx, wh, h = caches[t]
        da = dhs[:, t] + dh_next
        da = da * (1 - h**2) if tanh else da
        dxs.append(da @ wx.T)
        dh_next = da @ wh.T
        step = (x.T @ da, h_prev.T @ da, da.sum(0))
        grads = (
            step
            if grads is None or overwrite
            else tuple(a + b for a, b in zip(grads, step, strict=True))
        )
    dxs = dxs[::-1] + ([torch.zeros_like(caches[-1][0])] if skip_last else [])
    return (torch.stack(dxs, 1), dh_next, *grads)


@pytest.mark.parametrize(
    ("name", "fns", "words"),
    [
        ("03.relu", (relu_forward, _relu_at_zero), "x > 0, not x >= 0"),
        ("07.dropout", (_dropout_forward, _dropout_backward_latest_mask), "mask of the second"),
        ("09.maxpool_backward", (_maxpool_every_maximum,), "first maximum"),
        ("08.batchnorm_backward", (_batchnorm_unbiased,), "unbiased"),
        ("06.adam_step", (_adam_t_from_zero,), "1-based"),
        ("10.bptt", (lambda d, c: _bptt(d, c, overwrite=True),), "overwritten in the loop"),
        ("10.bptt", (lambda d, c: _bptt(d, c, skip_last=True),), "the last step, t = T-1"),
        ("10.bptt", (lambda d, c: _bptt(d, c, tanh=False),), "tanh derivative is missing"),
    ],
    ids=[
        "relu-zero",
        "dropout-latest",
        "maxpool-ties",
        "bn-unbiased",
        "adam-t0",
        "bptt-overwrite",
        "bptt-skip-last",
        "bptt-no-tanh",
    ],  # fmt: skip
)
def test_wrong_answers_that_used_to_pass_or_go_unnamed(name, fns, words):
    from coursekit.grading.context import grade
    from coursekit.grading.registry import get_item

    for seed in (0, 5):
        outcome = grade(get_item(name), fns, seed)
        assert outcome.status != "passed" and words in outcome.feedback, outcome.feedback


def test_a_float32_answer_is_told_about_its_precision():
    def float32(dout, cache):
        return tuple(g.float() for g in linear_backward(dout, cache))

    def float32_inside(logits, y):
        from tests.grading_fixtures.lesson_05 import dlogits

        return dlogits(logits.float(), y).double()

    result = check("04.linear_backward", float32)
    _zero(result, "float32 precision: keep the input's dtype")
    result = check("05.dlogits", float32_inside)
    assert "float32 precision" in result.feedback or result.passed, str(result)
