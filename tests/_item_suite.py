"""The checks every graded item gets, and the test data they read.

Each lesson's test data lives in ``tests/grading_fixtures/lesson_NN.py``:

* ``SOLUTIONS``: item name -> list of correct solutions;
* ``MISTAKES``: list of ``(item name, wrong solution, words the feedback must contain)``;
* ``SEED_0_MISTAKES`` (optional): mistakes that only show on seed 0's test cases;
* ``SEEDS`` (optional): on how many seeds every solution must pass, one number for the
  lesson or a dict item name -> number (default ``DEFAULT_SEEDS``). An item given 1 (each
  run is slow) has its mistakes checked on seed 0 only, too.

A solution is a function, or a tuple of functions for an item that takes several (``03.relu``
takes ``(relu_forward, relu_backward)``). A solution whose name contains "coursekit" wraps
coursekit's own implementation: it must agree with the grader, yet score zero in check().
``tests/test_grading_items.py`` runs these checks over every item of ``coursekit.grading.items()``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from coursekit.grading import check, items
from coursekit.grading.context import grade
from coursekit.grading.isolation import LocalSession
from coursekit.grading.registry import Item, get_item

FIXTURES = Path(__file__).parent / "grading_fixtures"
DEFAULT_SEEDS = 5
OTHER_SEEDS = (1, 7)  # a mistake is named on these too (see mistake_seeds)
HOW_TO = "docs/authoring_items.md, step 3"


# ---------------------------------------------------------------------------- test data
def fixture_path(lesson: str) -> str:
    """Where lesson ``lesson``'s test data lives, relative to the repository."""
    return f"tests/grading_fixtures/lesson_{lesson}.py"


def load_fixtures() -> dict[str, ModuleType]:
    """Every ``tests/grading_fixtures/lesson_NN.py``, by lesson ("05")."""
    return {
        path.stem.removeprefix("lesson_"): importlib.import_module(
            f"tests.grading_fixtures.{path.stem}"
        )
        for path in sorted(FIXTURES.glob("lesson_*.py"))
    }


def functions_of(solution: Callable | Sequence[Callable]) -> tuple[Callable, ...]:
    """The functions check() takes for one solution: a function alone, or a tuple of them."""
    return tuple(solution) if isinstance(solution, (tuple, list)) else (solution,)


def solutions_of(fixtures: dict[str, ModuleType], name: str) -> list[tuple[Callable, ...]]:
    """The item's correct solutions, or a skip when it has no test entry (another test fails
    for that with a message naming the file)."""
    module = fixtures.get(name.split(".", 1)[0])
    entry = getattr(module, "SOLUTIONS", {}).get(name) if module else None
    if not entry:
        pytest.skip(f"{name} has no test entry (test_item_has_a_test_entry says where)")
    return [functions_of(solution) for solution in entry]


def mistakes(fixtures: dict[str, ModuleType]) -> list[tuple[str, tuple[Callable, ...], str, bool]]:
    """Every classic mistake: (item, functions, words, only_seed_0)."""
    found = []
    for module in fixtures.values():
        for entries, seed_0 in (
            (getattr(module, "MISTAKES", []), False),
            (getattr(module, "SEED_0_MISTAKES", []), True),
        ):
            found += [(name, functions_of(fns), words, seed_0) for name, fns, words in entries]
    return found


def seeds_of(fixtures: dict[str, ModuleType], name: str) -> int:
    seeds = getattr(fixtures[name.split(".", 1)[0]], "SEEDS", DEFAULT_SEEDS)
    return seeds.get(name, DEFAULT_SEEDS) if isinstance(seeds, dict) else seeds


def mistake_seeds(fixtures: dict[str, ModuleType], name: str, seed_0_only: bool) -> tuple[int, ...]:
    """The seeds a mistake is checked on: 0, and OTHER_SEEDS unless it only shows on seed 0
    or its item is tested on one seed only."""
    if seed_0_only or seeds_of(fixtures, name) == 1:
        return (0,)
    return (0, *OTHER_SEEDS)


def label(fns: Iterable[Callable], known: Iterable[Callable] = ()) -> str:
    """A readable test id for a solution: the names of its functions that are not ``known``
    (a mistake pairs a wrong backward with the correct forward: the backward names it)."""
    known_ids = {id(fn) for fn in known}
    fns = list(fns)
    named = [fn for fn in fns if id(fn) not in known_ids] or fns
    names = []
    for fn in named:
        qualname = getattr(fn, "__qualname__", "") or getattr(fn, "__name__", repr(fn))
        # a static method of a torch.autograd.Function: the class names it
        name = qualname.split(".")[0] if "." in qualname and "<" not in qualname else fn.__name__
        if name not in names:
            names.append(name)
    return "+".join(names)


def missing_entry_message(name: str, fixtures: dict[str, ModuleType]) -> str | None:
    """Why ``name`` lacks a complete test entry, or None when it has one."""
    lesson = name.split(".", 1)[0]
    path = fixture_path(lesson)
    if lesson not in fixtures:
        return (
            f"{name} has no test entry: create {path} with SOLUTIONS = {{{name!r}: [...]}} "
            f"and MISTAKES = [({name!r}, wrong_function, 'words of the hint'), ...] ({HOW_TO})"
        )
    module = fixtures[lesson]
    if not getattr(module, "SOLUTIONS", {}).get(name):
        return (
            f"{name} has no test entry: add {name!r}: [its reference solutions] to SOLUTIONS "
            f"in {path}, and its classic mistakes to MISTAKES ({HOW_TO})"
        )
    named = {entry[0] for entry in mistakes({lesson: module})}
    if name not in named:
        return (
            f"{name} has no classic mistake: add ({name!r}, wrong_function, 'words of the "
            f"hint') to MISTAKES in {path} ({HOW_TO})"
        )
    return None


# ---------------------------------------------------------------------------- the checks
def calls_coursekit(fn: Callable) -> bool:
    """A test solution that wraps coursekit's own implementation (its name says so)."""
    return "coursekit" in getattr(fn, "__name__", "")


def assert_listed(name: str) -> None:
    """Listed by items() under its lesson, with positive points and the texts an exercise shows."""
    it: Item = get_item(name)
    assert it is not None, f"{name} is not a registered item"
    assert name in items(it.lesson)
    assert isinstance(it.points, int) and it.points > 0, f"{name}: points={it.points!r}"
    assert it.description and it.signature and it.covers and it.functions, it


def assert_full_marks(
    name: str, solutions: Iterable[Callable | Sequence[Callable]], points: int | None = None
) -> None:
    """Full marks in check(); a solution wrapping coursekit's own implementation scores zero."""
    it = get_item(name)
    assert points is None or points == it.points, f"{name}: {it.points} points, not {points}"
    for fns in map(functions_of, solutions):
        result = check(name, *fns)
        if any(calls_coursekit(fn) for fn in fns):
            assert result.status == "uses coursekit" and result.points == 0, str(result)
            continue
        assert result.passed and result.status == "passed", str(result)
        assert result.points == result.max_points == it.points
        assert result.feedback.startswith("All ") and "test cases passed" in result.feedback


def assert_passes_on_seeds(
    name: str, solutions: Iterable[Callable | Sequence[Callable]], seeds: int
) -> None:
    """Every solution passes on seeds 0..seeds-1, in this process, with one thread as in
    check()'s child process."""
    it, threads = get_item(name), torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for seed in range(seeds):
            for fns in map(functions_of, solutions):
                # coursekit's implementations are checked against the references too, with
                # the library allowed (an exercise may not call them: see assert_full_marks)
                session = LocalSession(tuple(fns), it.hand_written, library=())
                outcome = grade(it, None, seed, session=session)
                assert outcome.status == "passed", f"{label(fns)}, seed {seed}: {outcome.feedback}"
    finally:
        torch.set_num_threads(threads)


def assert_mistake_named(
    name: str, fns: Callable | Sequence[Callable], words: str, seeds: Sequence[int] = (0,)
) -> None:
    """The mistake fails on each seed, and the feedback names it and the test case."""
    fns = functions_of(fns)
    for seed in seeds:
        outcome = grade(get_item(name), fns, seed)
        where = f"seed {seed}, {label(fns)}"
        assert outcome.status != "passed", f"{where}: passed"
        assert words in outcome.feedback, f"{where}: {words!r} not in:\n{outcome.feedback}"
        assert "Test case" in outcome.feedback, f"{where}: {outcome.feedback}"


def assert_stub_scores_zero(names: str | Iterable[str]) -> None:
    def stub(*args: Any) -> Any:
        raise NotImplementedError("write your code here")

    for name in [names] if isinstance(names, str) else names:
        result = check(name, *(stub,) * len(get_item(name).functions))
        assert not result.passed and result.points == 0, str(result)
        assert result.status == "not implemented", str(result)
