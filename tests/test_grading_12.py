"""Tests of lesson 12's graded items: correct code passes, classic mistakes are named."""

from __future__ import annotations

import pytest

from tests import _item_suite as suite
from tests.grading_fixtures.lesson_12 import MISTAKES, SEED_0_MISTAKES, SOLUTIONS

ITEMS_12 = {
    "12.flops": 2,
    "12.saved_bytes": 2,
    "12.average_gradients": 3,
    "12.loss_scaler_step": 3,
}


def test_lesson_12_items_are_listed_with_their_points():
    suite.assert_items_listed("12", ITEMS_12)


@pytest.mark.parametrize("name", list(ITEMS_12))
def test_reference_solution_gets_full_marks(name):
    suite.assert_full_marks(name, SOLUTIONS[name], ITEMS_12[name])


@pytest.mark.parametrize("name", list(ITEMS_12))
def test_reference_solution_passes_on_many_seeds(name):
    suite.assert_passes_on_seeds(name, SOLUTIONS[name], seeds=5)


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
    suite.assert_stub_scores_zero(ITEMS_12)
