"""Review questions with instant feedback, for the end of each lesson.

::

    from coursekit.viz import Question, quiz

    quiz([
        Question(
            "What does the backward pass of y = relu(x) send back to x?",
            ["dy everywhere", "dy where x > 0, else 0", "relu(dy)"],
            answer=1,
            explanation="relu'(x) is 1 where x > 0 and 0 elsewhere, so dx = dy * (x > 0).",
        ),
    ])

Each question shows its choices as radio buttons and a "Check" button; checking shows
whether the choice is right, with the explanation. It uses only what ipywidgets 7.6+ and 8
share. ``quiz_text`` prints the same questions as plain text for frontends without widgets,
and ``worked_answers_markdown`` writes the answers for a collapsible ``<details>`` cell.

In prompts, choices and explanations, `backticks` mark code and $...$ marks math.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import ipywidgets as widgets
from IPython.display import display

__all__ = ["Question", "Quiz", "quiz", "quiz_text", "worked_answers_markdown"]

CORRECT = "Correct."
INCORRECT = "Incorrect."
NO_CHOICE = "Pick an answer first."


@dataclass
class Question:
    """One multiple-choice question; ``answer`` is the index of the right choice."""

    prompt: str
    choices: list[str]
    answer: int
    explanation: str = ""

    def __post_init__(self) -> None:
        self.choices = [str(c) for c in self.choices]
        if not 2 <= len(self.choices) <= 26:
            raise ValueError(f"choices: a question needs 2 to 26 choices, got {len(self.choices)}")
        if not 0 <= self.answer < len(self.choices):
            raise ValueError(
                f"answer: expected an index 0 <= answer < {len(self.choices)} "
                f"into the {len(self.choices)} choices, got {self.answer}"
            )


def _letter(index: int) -> str:
    return "abcdefghijklmnopqrstuvwxyz"[index]


def _to_html(text: str) -> str:
    """Plain text to HTML: special characters escaped, `code` in backticks set as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text, quote=False))


@dataclass
class _QuestionView:
    """One question's widgets, the plain text of its feedback, and whether it was right."""

    question: Question
    choices: widgets.RadioButtons
    check_button: widgets.Button
    feedback_html: widgets.HTMLMath
    text: str = ""
    correct: bool | None = field(default=None)  # None until checked


class Quiz:
    """The widgets of a quiz, and the same actions a student takes, callable from code.

    ``widget`` is the container to display; ``select(i, choice)`` picks a choice of question
    ``i``, ``check(i)`` checks it (as the button does) and ``feedback(i)`` is the text shown.
    ``views[i]`` holds question ``i``'s widgets: ``choices`` (RadioButtons whose value is the
    index of the choice), ``check_button`` and ``feedback_html``.
    """

    def __init__(self, questions: Sequence[Question], title: str = "Check your understanding"):
        self.questions = list(questions)
        if not self.questions:
            raise ValueError("questions: a quiz needs at least one question")
        for i, q in enumerate(self.questions):
            if not isinstance(q, Question):
                raise TypeError(f"questions[{i}]: expected a Question, got {type(q).__name__}")
        self.views = [self._build(i, q) for i, q in enumerate(self.questions)]
        self.score_line = widgets.HTML()
        self._update_score()
        parts: list[widgets.Widget] = [widgets.HTML(f"<h3>{html.escape(title)}</h3>")]
        for i, view in enumerate(self.views):
            prompt = widgets.HTMLMath(f"<b>{i + 1}.</b> {_to_html(view.question.prompt)}")
            parts.append(
                widgets.VBox(
                    [prompt, view.choices, widgets.HBox([view.check_button, view.feedback_html])],
                    layout=widgets.Layout(margin="0 0 12px 0"),
                )
            )
        parts.append(self.score_line)
        self.widget = widgets.VBox(parts)

    def _build(self, index: int, question: Question) -> _QuestionView:
        choices = widgets.RadioButtons(
            options=[(f"{_letter(k)}) {c}", k) for k, c in enumerate(question.choices)],
            value=None,  # nothing chosen yet
            layout=widgets.Layout(width="auto"),
        )
        button = widgets.Button(description="Check", button_style="info")
        feedback = widgets.HTMLMath(layout=widgets.Layout(margin="0 0 0 12px"))
        button.on_click(lambda _button: self.check(index))
        # A new choice hides the feedback that was about the old one.
        choices.observe(lambda _change: self._clear(index), names="value")
        return _QuestionView(question, choices, button, feedback)

    def _view(self, i: int) -> _QuestionView:
        if not 0 <= i < len(self.views):
            raise IndexError(f"i: question {i} does not exist (the quiz has {len(self.views)})")
        return self.views[i]

    def select(self, i: int, choice: int | str) -> None:
        """Pick a choice of question ``i``, by index or by its text."""
        view = self._view(i)
        if isinstance(choice, str):
            if choice not in view.question.choices:
                raise ValueError(
                    f"choice: {choice!r} is not one of question {i}'s choices "
                    f"{view.question.choices}"
                )
            choice = view.question.choices.index(choice)
        if not 0 <= choice < len(view.question.choices):
            raise ValueError(
                f"choice: expected 0 <= choice < {len(view.question.choices)}, got {choice}"
            )
        view.choices.value = choice

    def selected(self, i: int) -> int | None:
        """The index of the choice picked for question ``i`` (None if none is)."""
        return self._view(i).choices.value

    def check(self, i: int) -> bool:
        """Check question ``i``'s choice, show the feedback, and say whether it is right."""
        view = self._view(i)
        q, picked = view.question, view.choices.value
        if picked is None:
            view.correct, view.text = None, NO_CHOICE
            view.feedback_html.value = f"<i>{NO_CHOICE}</i>"
            self._update_score()
            return False
        view.correct = picked == q.answer
        verdict = CORRECT if view.correct else INCORRECT
        view.text = f"{verdict} {q.explanation}".strip()
        colour, mark = ("green", "&#10004;") if view.correct else ("firebrick", "&#10008;")
        view.feedback_html.value = (
            f"<span style='color:{colour}'><b>{mark} {verdict}</b></span> {_to_html(q.explanation)}"
        )
        self._update_score()
        return view.correct

    def feedback(self, i: int) -> str:
        """The feedback shown for question ``i``, as plain text ("" before it is checked)."""
        return self._view(i).text

    def score(self) -> int:
        """How many questions were checked and found right."""
        return sum(1 for view in self.views if view.correct)

    def _clear(self, i: int) -> None:
        view = self.views[i]
        view.correct, view.text, view.feedback_html.value = None, "", ""
        self._update_score()

    def _update_score(self) -> None:
        self.score_line.value = f"Score: {self.score()} / {len(self.views)}"

    def _ipython_display_(self) -> None:
        display(self.widget)

    def __repr__(self) -> str:
        return quiz_text(self.questions)


def quiz(questions: Sequence[Question], title: str = "Check your understanding") -> Quiz:
    """An interactive quiz; evaluate it as a cell's last line (or ``display(q.widget)``)."""
    return Quiz(questions, title=title)


def quiz_text(questions: Sequence[Question], show_answers: bool = False) -> str:
    """The questions as plain text, for frontends without widgets (answers optional)."""
    lines: list[str] = []
    for i, q in enumerate(questions):
        lines.append(f"{i + 1}. {q.prompt}")
        lines.extend(f"   {_letter(k)}) {choice}" for k, choice in enumerate(q.choices))
        if show_answers:
            lines.append(f"   Answer: {_letter(q.answer)}) {q.choices[q.answer]}")
            if q.explanation:
                lines.append(f"   {q.explanation}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def worked_answers_markdown(questions: Sequence[Question], summary: str = "Worked answers") -> str:
    """Markdown for a collapsible cell: each question, its right answer and the explanation."""
    parts = [f"<details>\n<summary>{html.escape(summary)}</summary>\n"]
    for i, q in enumerate(questions):
        parts.append(f"**{i + 1}. {q.prompt}**\n")
        parts.append(f"Answer: ({_letter(q.answer)}) {q.choices[q.answer]}\n")
        if q.explanation:
            parts.append(f"{q.explanation}\n")
    parts.append("</details>\n")
    return "\n".join(parts)
