"""Lesson 00's graded item: correct solutions written as a student would, and classic mistakes."""

from __future__ import annotations


# ---------------------------------------------------------------------------- correct
def sum_of_squares_grad(x):
    return 2 * x


SOLUTIONS = {
    "00.sum_of_squares_grad": [sum_of_squares_grad],
}

SEEDS = 25  # every solution passes on seeds 0..24


# ---------------------------------------------------------------------------- mistakes
def forgot_two(x):
    return x


def returned_the_sum(x):
    return (x**2).sum()


MISTAKES = [
    ("00.sum_of_squares_grad", forgot_two, "factor 2 is missing"),
    ("00.sum_of_squares_grad", returned_the_sum, "single number"),
]
