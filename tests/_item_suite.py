"""The checks every lesson's graded items get: listed with their points, reference solutions
pass (also over many seeds), classic mistakes fail with a hint naming them, a stub scores zero.

Each ``tests/test_grading_NN.py`` keeps its own test functions and calls these.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from coursekit.grading import check, items
from coursekit.grading.context import grade
from coursekit.grading.isolation import LocalSession
from coursekit.grading.registry import get_item


def calls_coursekit(fn: Callable) -> bool:
    """A test solution that wraps coursekit's own implementation (its name says so)."""
    return "coursekit" in getattr(fn, "__name__", "")


def assert_items_listed(lesson: str, expected: dict[str, int]) -> None:
    table = items(lesson)
    assert {name: it.points for name, it in table.items()} == expected
    assert all(it.hand_written for it in table.values())


def assert_full_marks(name: str, solutions: Iterable[Callable], points: int) -> None:
    """Full marks in check(); a solution wrapping coursekit's own implementation scores zero."""
    for fn in solutions:
        result = check(name, fn)
        if calls_coursekit(fn):
            assert result.status == "uses coursekit" and result.points == 0, str(result)
            continue
        assert result.passed, str(result)
        assert result.points == result.max_points == points


def assert_passes_on_seeds(name: str, solutions: Iterable[Callable], seeds: int) -> None:
    it, threads = get_item(name), torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for seed in range(seeds):
            for fn in solutions:
                # coursekit's implementations are checked against the references too, with
                # the library allowed (an exercise may not call them: see assert_full_marks)
                session = LocalSession((fn,), it.hand_written, library=())
                outcome = grade(it, None, seed, session=session)
                assert outcome.status == "passed", f"seed {seed}: {outcome.feedback}"
    finally:
        torch.set_num_threads(threads)


def assert_mistake_named(name: str, fn: Callable, words: str) -> None:
    outcome = grade(get_item(name), (fn,), seed=0)
    assert outcome.status != "passed"
    assert words in outcome.feedback, outcome.feedback
    assert "Test case" in outcome.feedback


def assert_mistakes_named_on_seeds(mistakes, seeds=(1, 7)) -> None:
    for seed in seeds:
        for name, fn, words in mistakes:
            outcome = grade(get_item(name), (fn,), seed)
            assert words in outcome.feedback, f"seed {seed}, {fn.__name__}: {outcome.feedback}"


def assert_stub_scores_zero(names: Iterable[str]) -> None:
    def stub(*args):
        raise NotImplementedError("write your code here")

    for name in names:
        result = check(name, stub)
        assert not result.passed and result.points == 0
        assert result.status == "not implemented"
