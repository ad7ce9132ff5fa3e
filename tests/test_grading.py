"""Tests of check() and items(): the result and its feedback, hostile code contained, wrong
calls explained. Every item's own tests (reference solutions, classic mistakes) are in
tests/test_grading_items.py."""

from __future__ import annotations

import json
import random
import time

import numpy as np
import pytest
import torch

import coursekit.grading as grading
from coursekit.grading import Mistake, Result, check, item, items
from coursekit.grading import registry as registry_module
from coursekit.grading.hints import generic_value_hint, is_close, relative_error
from tests.grading_fixtures import lesson_01, lesson_03, lesson_05
from tests.grading_fixtures.lesson_03 import relu_backward, relu_forward
from tests.grading_fixtures.lesson_04 import linear_backward, linear_db_not_summed


# ---------------------------------------------------------------------------- the item list
def test_items_prints_as_a_table():
    table = items()
    for it in table.values():
        assert it.description and it.signature
    assert list(table) == [it.name for it in registry_module.all_items()]
    assert list(items("04")) == [name for name in table if name.startswith("04.")]
    assert list(items("04")) == [  # in the order lesson 04 registers them
        "04.linear_backward",
        "04.broadcast_backward",
        "04.grad_shapes",
        "04.find_the_bug",
    ]
    text = repr(table)
    assert "04.linear_backward" in text and "3 pts" in text
    total = sum(it.points for it in table.values())
    assert text.splitlines()[-1].split() == ["total", str(total), "points"]
    assert "<table>" in table._repr_html_()


def test_hand_written_items_forbid_autograd():
    allowed = {name for name, it in items().items() if not it.hand_written}
    assert allowed == {"00.sum_of_squares_grad", "01.central_difference"}


def test_a_new_item_is_a_few_lines():
    @item(
        "99.double",
        points=1,
        description="twice x",
        signature="fn(x) -> tensor",
        covers="two shapes",
    )
    def _double(ctx, fn):
        for shape in [(3,), (2, 2)]:
            x = ctx.randn(*shape)
            with ctx.case(f"x of shape {shape}"):
                got = ctx.call(fn, x, names=("x",))
                ctx.compare(got, 2 * x, ("out",), mistakes={"out": [Mistake(x, "times two!")]})

    try:
        assert check("99.double", lambda x: x + x).passed
        failed = check("99.double", lambda x: x * 1)
        assert not failed.passed and "times two!" in failed.feedback
        with pytest.raises(ValueError, match="registered twice"):
            item("99.double", points=1, description="", signature="", covers="")(_double)
    finally:
        registry_module._ITEMS.pop("99.double", None)


# ---------------------------------------------------------------------------- feedback
def test_passing_feedback_is_the_same_on_every_run():
    # Solution notebooks store check()'s output and compare it on every run.
    first = check("04.linear_backward", linear_backward)
    second = check("04.linear_backward", linear_backward)
    assert str(first) == str(second) and first._repr_html_() == second._repr_html_()
    assert first.seed == second.seed  # the same test inputs: failing feedback is reproducible too


def test_failing_feedback_is_reproducible_and_seed_can_be_overridden(monkeypatch):
    wrong = lambda x: x  # noqa: E731  (forgot the factor 2)
    first = check("00.sum_of_squares_grad", wrong)
    assert str(first) == str(check("00.sum_of_squares_grad", wrong))
    monkeypatch.setenv("COURSEKIT_GRADING_SEED", "random")
    fresh = [check("00.sum_of_squares_grad", wrong) for _ in range(2)]
    assert fresh[0].seed != fresh[1].seed and not any(r.passed for r in fresh)
    monkeypatch.setenv("COURSEKIT_GRADING_SEED", "123")
    assert check("00.sum_of_squares_grad", wrong).seed == 123


def test_wrong_values_report_the_largest_error_and_where():
    def off_by_a_bit(dout, cache):
        dx, dw, db = linear_backward(dout, cache)
        dw = dw.clone()
        dw[1, 2] += 0.5
        return dx, dw, db

    result = check("04.linear_backward", off_by_a_bit)
    assert "dw is wrong: largest relative error" in result.feedback
    assert "at [1, 2]" in result.feedback and "expected" in result.feedback


# ---------------------------------------------------------------------------- hostile code
def test_an_exception_is_reported_with_the_line_of_the_student_code():
    def exploding(dout, cache):
        x, w, b = cache
        return 1 / 0

    result = check("04.linear_backward", exploding)
    assert result.status == "error" and result.points == 0
    assert "ZeroDivisionError: division by zero" in result.feedback
    assert "line" in result.feedback and "return 1 / 0" in result.feedback


def test_not_implemented_scores_zero_without_error():
    def stub(dout, cache):
        raise NotImplementedError("linear_backward: write your code here")

    result = check("04.linear_backward", stub)
    assert result.status == "not implemented" and result.points == 0
    assert "Not implemented yet" in result.feedback
    assert result.headline == "FAIL 04.linear_backward: 0/3 points (not implemented)"


@pytest.mark.parametrize(
    ("fn", "words"),
    [
        (lambda dout, cache: None, "returned None"),
        (lambda dout, cache: "dx, dw, db", "returned a str"),
        (lambda dout, cache: (dout, dout), "returned 2 values; it should return 3"),
        (lambda dx, dw, db: (dx.numpy(), dw, db), "dx is a NumPy ndarray"),
        (lambda dx, dw, db: (dx, [1.0], db), "dw should be a tensor of shape (3, 5), got a list"),
        (lambda dx, dw, db: (dx, dw, db.float()), "db has dtype torch.float32"),
        (lambda dx, dw, db: (dx, dw * float("nan"), db), "dw contains nan"),
        (lambda dx, dw, db: (dx, dw, db[:-1]), "db has shape (4,), expected (5,)"),
    ],
)
def test_wrong_types_and_values_are_explained(fn, words):
    if fn.__code__.co_varnames[:3] == ("dx", "dw", "db"):  # spoil a correct answer
        spoil = fn
        fn = lambda dout, cache: spoil(*linear_backward(dout, cache))  # noqa: E731
    result = check("04.linear_backward", fn)
    assert result.status == "failed" and words in result.feedback, str(result)


def test_a_one_tuple_for_a_single_gradient_is_explained():
    result = check("03.relu", relu_forward, lambda dout, cache: (dout * (cache > 0),))
    assert "alone" in result.feedback


def test_forward_that_modifies_its_input_fails():
    def relu_forward_in_place(x):
        return x.clamp_(min=0), x

    result = check("03.relu", relu_forward_in_place, relu_backward)
    assert "modified its input x in place" in result.feedback


def test_an_endless_loop_is_stopped_and_the_next_check_works():
    def forever(dout, cache):
        while True:
            pass

    start = time.perf_counter()
    result = check("04.linear_backward", forever, timeout=1)
    assert time.perf_counter() - start < 5
    assert result.status == "timeout" and result.points == 0
    assert "Stopped after 1 s" in result.feedback and "test case 1" in result.feedback
    assert check("04.linear_backward", linear_backward).passed


def test_a_huge_allocation_fails_inside_the_grader_only():
    def greedy(dout, cache):
        torch.ones(100 * 2**30 // 4)  # 100 GiB of float32
        return linear_backward(dout, cache)

    result = check("04.linear_backward", greedy)
    assert result.status in ("error", "crashed") and result.points == 0, str(result)
    assert "memory" in result.feedback
    assert check("04.linear_backward", linear_backward).passed


def test_memory_beyond_the_budget_is_refused(monkeypatch):
    monkeypatch.setenv("COURSEKIT_GRADING_MEMORY_MB", "200")

    def hungry(dout, cache):
        torch.ones(2**28, dtype=torch.float64)  # 2 GiB, far beyond the 200 MiB budget
        return linear_backward(dout, cache)

    result = check("04.linear_backward", hungry)
    assert result.status == "error" and "memory" in result.feedback, str(result)


def test_a_segfault_in_student_code_does_not_take_the_process_down():
    def segfault(dout, cache):
        import ctypes

        ctypes.string_at(0)

    result = check("04.linear_backward", segfault)
    assert result.status == "crashed" and "segmentation fault" in result.feedback
    assert check("04.linear_backward", linear_backward).passed


@pytest.mark.gpu
def test_check_works_after_cuda_is_initialised():
    torch.zeros(1, device="cuda")  # the child process cannot use CUDA after a fork; grading is CPU
    assert check("04.linear_backward", linear_backward).passed

    def to_gpu(dout, cache):
        return tuple(g.cuda() for g in linear_backward(dout, cache))

    result = check("04.linear_backward", to_gpu)
    assert not result.passed and "device" in result.feedback


def test_exit_calls_are_contained():
    def exits(dout, cache):
        raise SystemExit(3)

    def hard_exit(dout, cache):
        import os

        os._exit(3)

    result = check("04.linear_backward", exits)
    assert result.status == "error" and "exit()" in result.feedback
    result = check("04.linear_backward", hard_exit)
    assert result.status == "crashed" and "exit status 3" in result.feedback


def _autograd_backward(dout, cache):
    x, w, b = (t.clone().requires_grad_(True) for t in cache)
    with torch.enable_grad():
        (x @ w + b).backward(dout)
    return x.grad, w.grad, b.grad


def _autograd_grad(dout, cache):
    leaves = [t.clone().requires_grad_(True) for t in cache]
    with torch.enable_grad():
        out = leaves[0] @ leaves[1] + leaves[2]
        return torch.autograd.grad(out, leaves, dout)


def _autograd_swallowed(dout, cache):
    try:
        return _autograd_backward(dout, cache)
    except BaseException:
        return linear_backward(dout, cache)


def _autograd_graph_returned(dout, cache):
    x, w, b = cache
    with torch.enable_grad():
        scale = torch.ones((), dtype=dout.dtype, requires_grad=True)
        return (dout * scale) @ w.T, x.T @ dout, dout.sum(0)


def _torch_func_grad(dout, cache):
    x, w, b = cache
    dx = torch.func.grad(lambda x: ((x @ w + b) * dout).sum())(x)
    return dx, x.T @ dout, dout.sum(0)


@pytest.mark.parametrize(
    "fn",
    [
        _autograd_backward,
        _autograd_grad,
        _autograd_swallowed,
        _autograd_graph_returned,
        _torch_func_grad,
    ],
)
def test_autograd_in_a_hand_written_backward_scores_zero(fn):
    result = check("04.linear_backward", fn)
    assert result.status == "uses autograd" and result.points == 0, str(result)
    assert "autograd" in result.feedback


def test_autograd_is_allowed_in_the_warm_up():
    def with_autograd(x):
        x = x.clone().requires_grad_(True)
        (x**2).sum().backward()
        return x.grad

    assert check("00.sum_of_squares_grad", with_autograd).passed


def _global_state():
    return (
        torch.get_rng_state(),
        torch.get_default_dtype(),
        torch.is_grad_enabled(),
        np.random.get_state()[1].copy(),  # noqa: NPY002
        random.getstate(),
        torch.matmul,
        torch.get_num_threads(),
    )


def _assert_same_state(before, after):
    assert torch.equal(before[0], after[0])
    assert before[1:3] == after[1:3]
    assert np.array_equal(before[3], after[3])
    assert before[4:] == after[4:]


def _meddling(dout, cache):
    torch.manual_seed(123)
    np.random.seed(5)  # noqa: NPY002
    random.seed(7)
    torch.set_default_dtype(torch.float32)
    torch.set_grad_enabled(False)
    torch.set_num_threads(1)
    torch.randn(3)
    torch.matmul = None
    x, w, b = cache
    return dout @ w.T, x.T @ dout, dout.sum(0)


@pytest.mark.parametrize("mode", ["fork", "inprocess"])
def test_global_state_changed_by_student_code_does_not_leak(mode, monkeypatch):
    if mode == "inprocess":
        monkeypatch.setenv("COURSEKIT_GRADING_ISOLATION", "inprocess")
        # In process, a monkey-patch of torch itself cannot be undone: leave it out.
        fn = _meddling_without_patch
    else:
        fn = _meddling
    before = _global_state()
    result = check("04.linear_backward", fn)
    assert result.passed, str(result)  # the grader's own inputs do not depend on global state
    _assert_same_state(before, _global_state())
    assert check("04.linear_backward", linear_backward).passed


def _meddling_without_patch(dout, cache):
    saved = torch.matmul
    try:
        return _meddling(dout, cache)
    finally:
        torch.matmul = saved


def test_check_itself_leaves_global_state_alone():
    before = _global_state()
    check("03.sigmoid", lesson_03.sigmoid_forward, lesson_03.sigmoid_backward)
    check("05.mlp_backward", lesson_05.mlp_backward)
    _assert_same_state(before, _global_state())


def test_in_process_mode_stops_an_endless_loop(monkeypatch):
    monkeypatch.setenv("COURSEKIT_GRADING_ISOLATION", "inprocess")

    def forever(x):
        while True:
            pass

    result = check("01.chain_rule", forever, timeout=1)
    assert result.status == "timeout"
    assert check("01.chain_rule", lesson_01.chain_rule).passed


def test_in_process_mode_grades_and_guards(monkeypatch):
    monkeypatch.setenv("COURSEKIT_GRADING_ISOLATION", "inprocess")
    assert check("04.linear_backward", linear_backward).passed
    assert check("04.linear_backward", _autograd_backward).status == "uses autograd"
    assert "summed over the batch" in check("04.linear_backward", linear_db_not_summed).feedback
    assert torch.autograd.grad is not None and torch.is_grad_enabled()


def test_what_the_student_code_prints_is_kept():
    def chatty(dout, cache):
        print("shapes:", tuple(dout.shape))
        return linear_backward(dout, cache)

    result = check("04.linear_backward", chatty)
    assert result.passed and "shapes: (4, 5)" in result.output


# ---------------------------------------------------------------------------- calling check()
@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("04.linear", linear_backward), "no graded item called '04.linear'"),
        (("04.linear_backward",), "takes 1 function(s), you passed 0"),
        (("03.relu", relu_forward), "takes 2 function(s), you passed 1"),
        (("04.linear_backward", "linear_backward"), "without calling it"),
        ((42, linear_backward), "no graded item called"),
    ],
)
def test_a_wrong_call_is_explained_not_raised(args, words):
    result = check(*args)
    assert result.status == "invalid call" and not result.passed and result.points == 0
    assert words in result.feedback


def test_the_result_reads_well_as_text_and_html():
    result = check("04.linear_backward", linear_backward)
    assert isinstance(result, Result)
    assert str(result).startswith("PASS 04.linear_backward: 3/3 points")
    assert repr(result) == (
        "Result(item='04.linear_backward', passed=True, points=3/3, status='passed')"
    )
    assert "#1b5e20" in result._repr_html_()  # green
    failed = check("04.linear_backward", linear_db_not_summed)
    assert str(failed).startswith("FAIL") and "#b71c1c" in failed._repr_html_()  # red
    json.dumps(failed.to_record())


def test_in_jupyter_the_result_is_shown_once_per_cell(monkeypatch):
    import IPython
    import IPython.display

    shown = []

    class Shell:
        execution_count = 7

    monkeypatch.setattr(IPython, "get_ipython", lambda: Shell)
    monkeypatch.setattr(IPython.display, "display", lambda data, raw: shown.append(data))
    result = check("04.linear_backward", linear_backward)  # check() shows it
    result._ipython_display_()  # the cell's last line: IPython asks again
    assert len(shown) == 1 and set(shown[0]) == {"text/plain", "text/html"}
    Shell.execution_count = 8
    result._ipython_display_()  # evaluated again in a later cell
    assert len(shown) == 2


def test_each_result_is_logged_for_bulk_grading(tmp_path, monkeypatch):
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv("COURSEKIT_GRADING_LOG", str(log))
    check("04.linear_backward", linear_backward)
    check("03.relu", relu_forward, lambda dout, cache: dout)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["item"], r["points"], r["status"]) for r in records] == [
        ("04.linear_backward", 3, "passed"),
        ("03.relu", 0, "failed"),
    ]


def test_a_typical_check_takes_well_under_a_second():
    check("04.linear_backward", linear_backward)  # the first check warms torch up
    times = []
    for _ in range(3):
        start = time.perf_counter()
        check("04.linear_backward", linear_backward)
        times.append(time.perf_counter() - start)
    assert sorted(times)[1] < 1.0, times


# ---------------------------------------------------------------------------- comparisons
def test_relative_error_compares_near_zero_entries_on_the_tensor_scale():
    expected = torch.tensor([1.0, 0.0, 1e-20], dtype=torch.float64)
    got = expected + torch.tensor([0.0, 1e-17, 0.0], dtype=torch.float64)
    assert relative_error(got, expected).max() < 1e-9
    assert is_close(got, expected)
    assert not is_close(expected * 1.001, expected)
    assert not is_close(torch.tensor([float("nan")]), torch.tensor([1.0]))


def test_generic_hints_name_sign_scale_and_transpose():
    e = torch.randn(4, 4, dtype=torch.float64)
    assert "wrong sign" in generic_value_hint("dx", -e, e, None)
    assert "N = 4 times too large" in generic_value_hint("dx", 4 * e, e, 4)
    assert "transpose" in generic_value_hint("dx", e.T, e, None)
    assert "factor 2" in generic_value_hint("dx", 2 * e, e, None)
    assert "3.5 times" in generic_value_hint("dx", 3.5 * e, e, None)
    assert "all zeros" in generic_value_hint("dx", torch.zeros_like(e), e, None)
    assert generic_value_hint("dx", torch.randn(4, 4, dtype=torch.float64), e, 4) is None


def test_the_package_exports_its_public_names():
    assert set(grading.__all__) == {"Item", "Mistake", "Result", "check", "item", "items"}


def test_strict_mode_raises_on_failure_only(monkeypatch):
    def stub(dout, cache):
        raise NotImplementedError

    with pytest.raises(AssertionError, match="not implemented"):
        check("04.linear_backward", stub, strict=True)
    monkeypatch.setenv("COURSEKIT_GRADING_STRICT", "1")
    with pytest.raises(AssertionError, match="04.linear_backward"):
        check("04.linear_backward", stub)
    assert check("04.linear_backward", linear_backward).passed
    assert check("04.linear_backward", stub, strict=False).points == 0
