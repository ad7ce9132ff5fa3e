"""Every graded item, tested the same way from its lesson's test data.

The items are those of ``coursekit.grading.items()``; the test data, every
``tests/grading_fixtures/lesson_NN.py`` (see ``tests/_item_suite.py``). Test ids name the
item, and for a mistake the wrong function: ``05.dlogits-dlogits_sign``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from coursekit.grading import items
from coursekit.grading.registry import get_item
from tests import _item_suite as suite

FIXTURES = suite.load_fixtures()
REGISTERED = list(items())
# an entry for an item nobody registered is listed too: its entry test fails
NAMES = REGISTERED + [
    name
    for module in FIXTURES.values()
    for name in getattr(module, "SOLUTIONS", {})
    if name not in REGISTERED
]
MISTAKES = suite.mistakes(FIXTURES)


def _solutions(name: str) -> list[tuple[Callable, ...]]:
    return suite.solutions_of(FIXTURES, name)


def _mistake_id(entry) -> str:
    name, fns, _, _ = entry
    module = FIXTURES.get(name.split(".", 1)[0])
    correct = [
        fn
        for solution in getattr(module, "SOLUTIONS", {}).get(name, [])
        for fn in suite.functions_of(solution)
    ]
    return f"{name}-{suite.label(fns, correct)}"


# ---------------------------------------------------------------------------- the test data
@pytest.mark.parametrize("name", NAMES)
def test_item_has_a_test_entry(name):
    if get_item(name) is None:
        pytest.fail(
            f"{suite.fixture_path(name.split('.', 1)[0])} has a test entry for {name}, "
            "but no item of that name is registered (coursekit/grading/items_NN.py)"
        )
    message = suite.missing_entry_message(name, FIXTURES)
    if message:
        pytest.fail(message)


def test_a_missing_entry_names_the_file_to_add_it_to():
    no_lesson = suite.missing_entry_message("98.new_item", FIXTURES)
    assert no_lesson.startswith("98.new_item has no test entry: create ")
    assert "tests/grading_fixtures/lesson_98.py" in no_lesson
    no_entry = suite.missing_entry_message("05.new_item", FIXTURES)
    assert no_entry.startswith("05.new_item has no test entry: add '05.new_item'")
    assert "SOLUTIONS in tests/grading_fixtures/lesson_05.py" in no_entry
    without_mistakes = {"05": type("Fixture", (), {"SOLUTIONS": {"05.x": [print]}})}
    assert "05.x has no classic mistake" in suite.missing_entry_message("05.x", without_mistakes)
    assert suite.missing_entry_message("05.dlogits", FIXTURES) is None


@pytest.mark.parametrize("lesson", list(FIXTURES), ids=lambda lesson: f"lesson_{lesson}.py")
def test_test_data_is_well_formed(lesson):
    """Each entry names an item of its own lesson, passes it as many functions as it takes,
    and a mistake names the words its feedback must contain."""
    module, where = FIXTURES[lesson], suite.fixture_path(lesson)
    solutions = getattr(module, "SOLUTIONS", {})
    entries = [(name, s) for name, entry in solutions.items() for s in entry]
    entries += [(name, fns) for name, fns, _, _ in suite.mistakes({lesson: module})]
    for name, solution in entries:
        assert name.startswith(f"{lesson}."), f"{where}: {name} belongs to another lesson"
        it = get_item(name)
        if it is None:
            continue  # test_item_has_a_test_entry names it
        fns = suite.functions_of(solution)
        assert all(callable(fn) for fn in fns), f"{where}, {name}: {fns}"
        assert len(fns) == len(it.functions), (
            f"{where}, {name}: {suite.label(fns)} gives {len(fns)} function(s); "
            f"the item takes {len(it.functions)}: {', '.join(it.functions)}"
        )
    for name, _, words, _ in suite.mistakes({lesson: module}):
        assert isinstance(words, str) and words.strip(), f"{where}, {name}: words {words!r}"
    seeds = getattr(module, "SEEDS", suite.DEFAULT_SEEDS)
    if isinstance(seeds, dict):
        assert set(seeds) <= set(solutions), f"{where}: SEEDS names {set(seeds) - set(solutions)}"
        seeds = list(seeds.values())
    else:
        seeds = [seeds]
    assert all(isinstance(n, int) and n >= 1 for n in seeds), f"{where}: SEEDS"


# ---------------------------------------------------------------------------- each item
@pytest.mark.parametrize("name", REGISTERED)
def test_item_is_listed_with_its_points(name):
    suite.assert_listed(name)


@pytest.mark.parametrize("name", REGISTERED)
def test_reference_solution_gets_full_marks(name):
    suite.assert_full_marks(name, _solutions(name))


@pytest.mark.parametrize("name", REGISTERED)
def test_reference_solution_passes_on_many_seeds(name):
    suite.assert_passes_on_seeds(name, _solutions(name), suite.seeds_of(FIXTURES, name))


@pytest.mark.filterwarnings("ignore::UserWarning")  # what a wrong answer's torch calls print
@pytest.mark.parametrize(
    ("name", "fns", "words", "seed_0_only"), MISTAKES, ids=[_mistake_id(m) for m in MISTAKES]
)
def test_classic_mistake_is_named(name, fns, words, seed_0_only):
    if get_item(name) is None:
        pytest.skip(f"{name} is not registered (test_item_has_a_test_entry fails)")
    suite.assert_mistake_named(name, fns, words, suite.mistake_seeds(FIXTURES, name, seed_0_only))


@pytest.mark.parametrize("name", REGISTERED)
def test_a_stub_scores_zero(name):
    suite.assert_stub_scores_zero(name)
