"""Pictures and widgets for the lessons.

- ``plots``: training curves, decision boundaries, gradient norms, loss surfaces, filters.
- ``widgets``: a learning-rate explorer and a Previous/Next stepper.
- ``quiz``: review questions with instant feedback; ``quiz("08")`` loads lesson 08's.
- ``graph``: drawing a ``coursekit.scalar.Value`` graph and stepping through its backward pass.
- ``hinton``: Hinton diagrams, weights drawn as white (positive) and black (negative) squares.

Everything is importable from here, e.g. ``from coursekit.viz import plot_history, quiz``.
``draw_graph`` and ``backward_steps`` are imported from ``graph`` the first time they are used.
"""

from __future__ import annotations

import importlib
from typing import Any

from coursekit.viz.hinton import hinton_diagram
from coursekit.viz.plots import (
    plot_activation_histograms,
    plot_decision_boundary,
    plot_filters,
    plot_finite_difference_error,
    plot_function_and_derivative,
    plot_grad_norms,
    plot_history,
    plot_loss_surface,
)
from coursekit.viz.quiz import (
    Question,
    Quiz,
    load_questions,
    quiz,
    quiz_text,
    worked_answers,
    worked_answers_markdown,
)
from coursekit.viz.widgets import (
    LearningRateExplorer,
    Stepper,
    learning_rate_explorer,
    step_through,
)

_FROM_GRAPH = ("draw_graph", "backward_steps")

__all__ = [
    "plot_history",
    "plot_decision_boundary",
    "plot_grad_norms",
    "plot_activation_histograms",
    "plot_loss_surface",
    "plot_filters",
    "plot_function_and_derivative",
    "plot_finite_difference_error",
    "hinton_diagram",
    "LearningRateExplorer",
    "learning_rate_explorer",
    "Stepper",
    "step_through",
    "Question",
    "Quiz",
    "quiz",
    "quiz_text",
    "load_questions",
    "worked_answers",
    "worked_answers_markdown",
    *_FROM_GRAPH,
]


def __getattr__(name: str) -> Any:
    """Import ``draw_graph`` and ``backward_steps`` from ``coursekit.viz.graph`` on first use."""
    if name in _FROM_GRAPH:
        value = getattr(importlib.import_module("coursekit.viz.graph"), name)
        globals()[name] = value  # later look-ups find it directly
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
