"""Tests of lesson 13's graded items: correct trainers pass, classic mistakes are named."""

from __future__ import annotations

import pytest

from tests import _item_suite as suite
from tests.grading_fixtures.lesson_13 import MISTAKES, SEED_0_MISTAKES, SOLUTIONS

ITEMS_13 = {"13.xor": 3, "13.encoder": 3, "13.symmetry": 4}


def test_lesson_13_items_are_listed_with_their_points():
    suite.assert_items_listed("13", ITEMS_13)


@pytest.mark.parametrize("name", list(ITEMS_13))
def test_reference_solution_gets_full_marks(name):
    suite.assert_full_marks(name, SOLUTIONS[name], ITEMS_13[name])


@pytest.mark.parametrize("name", list(ITEMS_13))
def test_reference_solution_passes_on_many_seeds(name):
    suite.assert_passes_on_seeds(name, SOLUTIONS[name], seeds=3)


@pytest.mark.parametrize(
    ("name", "fn", "words"),
    MISTAKES + SEED_0_MISTAKES,
    ids=[f"{name}-{fn.__name__}" for name, fn, _ in MISTAKES + SEED_0_MISTAKES],
)
def test_classic_mistake_fails_with_a_hint_naming_it(name, fn, words):
    suite.assert_mistake_named(name, fn, words)


def test_mistakes_are_named_on_other_seeds_too():
    suite.assert_mistakes_named_on_seeds(MISTAKES, seeds=(1, 7))


def test_a_stub_scores_zero_without_crashing():
    suite.assert_stub_scores_zero(ITEMS_13)
