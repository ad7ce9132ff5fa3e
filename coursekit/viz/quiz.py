"""Review questions with instant feedback, for the end of each lesson.

A lesson's questions live in package data (``coursekit/quizzes/NN.json``), out of the
notebook's source, so the answer key is not in view above the quiz::

    from coursekit.viz import quiz

    quiz("03")

Authors can still build a quiz from ``Question`` objects::

    quiz([
        Question(
            "What does the backward pass of $y = \\\\mathrm{relu}(x)$ send back to $x$?",
            ["dy everywhere", "dy where $x > 0$, else 0", "relu(dy)"],
            answer=1,
            explanation="relu'(x) is 1 where x > 0 and 0 elsewhere, so dx = dy * (x > 0).",
        ),
    ])

Each question shows its prompt and its choices as ``HTMLMath`` widgets, so $...$ math renders,
with a letter button per choice and a "Check" button; checking shows whether the choice is
right, with the explanation, and offers the question's worked answer (Markdown, written into
an ``Output`` only when asked for, so no stored notebook output holds it). It uses only what
ipywidgets 7.6+ and 8 share. On Colab, whose output frames have no MathJax, the quiz loads
MathJax 2 into its frame first, which ipywidgets 7's ``HTMLMath`` then uses.

``quiz_text`` prints the questions as plain text for frontends without widgets, and
``worked_answers("03")`` shows every worked answer in a collapsible ``<details>`` block.

In prompts, choices and explanations, `backticks` mark code and $...$ marks math.
"""

from __future__ import annotations

import html
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import ipywidgets as widgets
import traitlets
from IPython.display import HTML, Markdown, display

__all__ = [
    "Question",
    "Quiz",
    "quiz",
    "quiz_text",
    "load_questions",
    "available_quizzes",
    "question_to_dict",
    "worked_answers",
    "worked_answers_markdown",
]

CORRECT = "Correct."
INCORRECT = "Incorrect."
NO_CHOICE = "Pick an answer first."
SHOW_WORKED = "Show worked answer"
HIDE_WORKED = "Hide worked answer"
QUIZ_PACKAGE = "coursekit.quizzes"
# The fields of one question in a lesson's JSON file; "worked" is optional.
FIELDS = ("prompt", "choices", "answer", "explanation", "worked")

# Colab renders each output in its own frame, without MathJax; ipywidgets 7's HTMLMath
# typesets with MathJax 2 (``MathJax.Hub``) when the frame has it. $...$ is not one of
# MathJax 2's default inline delimiters, hence the configuration.
COLAB_MATHJAX = (
    '<script type="text/x-mathjax-config">'
    "MathJax.Hub.Config({tex2jax: {inlineMath: [['$','$'], ['\\\\(','\\\\)']], "
    "processEscapes: true}});"
    "</script>"
    '<script src="https://www.gstatic.com/external_hosted/mathjax/latest/MathJax.js'
    '?config=TeX-AMS_HTML"></script>'
)


@dataclass
class Question:
    """One multiple-choice question; ``answer`` is the index of the right choice.

    ``explanation`` is the short feedback shown after checking; ``worked`` (Markdown) is the
    step-by-step worked answer, shown on request after checking.
    """

    prompt: str
    choices: list[str]
    answer: int
    explanation: str = ""
    worked: str = ""

    def __post_init__(self) -> None:
        self.choices = [str(c) for c in self.choices]
        if not 2 <= len(self.choices) <= 26:
            raise ValueError(f"choices: a question needs 2 to 26 choices, got {len(self.choices)}")
        if isinstance(self.answer, bool) or not isinstance(self.answer, int):
            raise TypeError(f"answer: expected an int index, got {type(self.answer).__name__}")
        if not 0 <= self.answer < len(self.choices):
            raise ValueError(
                f"answer: expected an index 0 <= answer < {len(self.choices)} "
                f"into the {len(self.choices)} choices, got {self.answer}"
            )


def question_to_dict(question: Question) -> dict[str, Any]:
    """The JSON form of a question (the ``worked`` field only when there is one)."""
    data = {
        "prompt": question.prompt,
        "choices": list(question.choices),
        "answer": question.answer,
        "explanation": question.explanation,
    }
    if question.worked:
        data["worked"] = question.worked
    return data


def _letter(index: int) -> str:
    return "abcdefghijklmnopqrstuvwxyz"[index]


def _to_html(text: str) -> str:
    """Plain text to HTML: special characters escaped, `code` in backticks set as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text, quote=False))


def _on_colab() -> bool:
    return "google.colab" in sys.modules


# --------------------------------------------------------------------------------------------
# Lessons' questions, from package data
# --------------------------------------------------------------------------------------------


def _lesson_key(lesson: str | int) -> str:
    if isinstance(lesson, bool) or not isinstance(lesson, (str, int)):
        raise TypeError(f"lesson: expected a lesson number like '08', got {lesson!r}")
    key = str(lesson).strip()
    if not key.isdigit():
        raise ValueError(f"lesson: expected a lesson number like '08', got {lesson!r}")
    return f"{int(key):02d}"


def available_quizzes() -> list[str]:
    """The lessons that have a quiz in package data, e.g. ``['00', '01', ...]``."""
    folder = resources.files(QUIZ_PACKAGE)
    return sorted(
        p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json")
    )


def _question_from_dict(data: Any, where: str) -> Question:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object with {FIELDS[:4]}, got {data!r}")
    unknown = set(data) - set(FIELDS)
    missing = {"prompt", "choices", "answer"} - set(data)
    if unknown or missing:
        raise ValueError(
            f"{where}: unknown fields {sorted(unknown)}, missing fields {sorted(missing)}"
        )
    for name in ("prompt", "explanation", "worked"):
        if not isinstance(data.get(name, ""), str):
            raise ValueError(f"{where}.{name}: expected a string")
    choices = data["choices"]
    if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
        raise ValueError(f"{where}.choices: expected a list of strings")
    try:
        return Question(
            data["prompt"],
            choices,
            data["answer"],
            data.get("explanation", ""),
            data.get("worked", ""),
        )
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: {err}") from None


def load_questions(lesson: str | int) -> list[Question]:
    """The questions of lesson ``lesson`` ("08" or 8), from ``coursekit/quizzes/08.json``."""
    key = _lesson_key(lesson)
    source = resources.files(QUIZ_PACKAGE) / f"{key}.json"
    if not source.is_file():
        raise ValueError(f"lesson: no quiz for lesson {key}; there are {available_quizzes()}")
    where = f"{QUIZ_PACKAGE}/{key}.json"
    data = json.loads(source.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("questions"), list):
        raise ValueError(f"{where}: expected an object with a list 'questions'")
    if not data["questions"]:
        raise ValueError(f"{where}: no questions")
    return [
        _question_from_dict(q, f"{where} questions[{i}]") for i, q in enumerate(data["questions"])
    ]


def _questions(questions: Sequence[Question] | str | int) -> list[Question]:
    if isinstance(questions, (str, int)):
        return load_questions(questions)
    return list(questions)


# --------------------------------------------------------------------------------------------
# Widgets
# --------------------------------------------------------------------------------------------


class ChoiceList(widgets.VBox):
    """A question's choices, one row each: a letter button and the choice as ``HTMLMath``.

    Radio-button labels cannot render math, so each choice is its own ``HTMLMath`` next to a
    ``ToggleButton``; pressing one releases the others. ``value`` (Python side only) is the
    index of the choice picked, or None.
    """

    value = traitlets.Int(None, allow_none=True)

    def __init__(self, choices: Sequence[str], **kwargs: Any):
        self.texts = [str(c) for c in choices]
        self.buttons = [
            widgets.ToggleButton(
                value=False,
                description=_letter(k),
                tooltip=f"choose ({_letter(k)})",
                layout=widgets.Layout(width="2.6em", min_width="2.6em"),
            )
            for k in range(len(self.texts))
        ]
        self.labels = [widgets.HTMLMath(_to_html(text)) for text in self.texts]
        rows = []
        for button, label in zip(self.buttons, self.labels, strict=True):
            label.add_class("coursekit-quiz-choice")
            rows.append(widgets.HBox([button, label], layout=widgets.Layout(align_items="center")))
        super().__init__(rows, **kwargs)
        self._syncing = False
        for k, button in enumerate(self.buttons):
            button.observe(lambda change, k=k: self._pressed(k, change["new"]), names="value")

    @property
    def options(self) -> list[tuple[str, int]]:
        """``(label, index)`` pairs, as a RadioButtons' options would be."""
        return [(f"{_letter(k)}) {text}", k) for k, text in enumerate(self.texts)]

    @traitlets.validate("value")
    def _valid_value(self, proposal: dict) -> int | None:
        value = proposal["value"]
        if value is not None and not 0 <= value < len(self.texts):
            raise traitlets.TraitError(
                f"value: expected None or 0 <= value < {len(self.texts)}, got {value}"
            )
        return value

    @traitlets.observe("value")
    def _show_value(self, change: dict) -> None:
        self._syncing = True
        try:
            for k, button in enumerate(self.buttons):
                button.value = k == change["new"]
                button.button_style = "info" if k == change["new"] else ""
        finally:
            self._syncing = False

    def _pressed(self, k: int, down: bool) -> None:
        if self._syncing:
            return
        if down:
            self.value = k
        elif self.value == k:  # pressing the chosen one again keeps it chosen, as a radio does
            self._syncing = True
            try:
                self.buttons[k].value = True
            finally:
                self._syncing = False


@dataclass
class _QuestionView:
    """One question's widgets, the plain text of its feedback, and whether it was right."""

    question: Question
    prompt_html: widgets.HTMLMath
    choices: ChoiceList
    check_button: widgets.Button
    feedback_html: widgets.HTMLMath
    worked_button: widgets.Button
    worked_output: widgets.Output
    text: str = ""
    correct: bool | None = field(default=None)  # None until checked


def _hidden(widget: widgets.Widget, hidden: bool) -> None:
    widget.layout.display = "none" if hidden else ""


class Quiz:
    """The widgets of a quiz, and the same actions a student takes, callable from code.

    ``widget`` is the container to display; ``select(i, choice)`` picks a choice of question
    ``i``, ``check(i)`` checks it (as the button does), ``feedback(i)`` is the text shown, and
    ``toggle_worked(i)`` shows or hides the worked answer (available once ``i`` is checked).
    ``views[i]`` holds question ``i``'s widgets: ``prompt_html``, ``choices`` (a
    ``ChoiceList`` whose ``value`` is the index of the choice), ``check_button``,
    ``feedback_html``, ``worked_button`` and ``worked_output``.
    """

    def __init__(
        self,
        questions: Sequence[Question],
        title: str = "Check your understanding",
        lesson: str | None = None,
    ):
        self.questions = list(questions)
        self.lesson = lesson
        if not self.questions:
            raise ValueError("questions: a quiz needs at least one question")
        for i, q in enumerate(self.questions):
            if not isinstance(q, Question):
                raise TypeError(f"questions[{i}]: expected a Question, got {type(q).__name__}")
        self.views = [self._build(i, q) for i, q in enumerate(self.questions)]
        self.score_line = widgets.HTML()
        self._update_score()
        parts: list[widgets.Widget] = [widgets.HTML(f"<h3>{html.escape(title)}</h3>")]
        for view in self.views:
            parts.append(
                widgets.VBox(
                    [
                        view.prompt_html,
                        view.choices,
                        widgets.HBox([view.check_button, view.feedback_html]),
                        view.worked_button,
                        view.worked_output,
                    ],
                    layout=widgets.Layout(margin="0 0 12px 0"),
                )
            )
        parts.append(self.score_line)
        self.widget = widgets.VBox(parts)

    def _build(self, index: int, question: Question) -> _QuestionView:
        prompt = widgets.HTMLMath(f"<b>{index + 1}.</b> {_to_html(question.prompt)}")
        prompt.add_class("coursekit-quiz-prompt")
        choices = ChoiceList(question.choices, layout=widgets.Layout(width="auto"))
        button = widgets.Button(description="Check", button_style="info")
        feedback = widgets.HTMLMath(layout=widgets.Layout(margin="0 0 0 12px"))
        worked_button = widgets.Button(description=SHOW_WORKED, layout=widgets.Layout(width="13em"))
        worked_output = widgets.Output()
        _hidden(worked_button, True)
        button.on_click(lambda _button: self.check(index))
        worked_button.on_click(lambda _button: self.toggle_worked(index))
        # A new choice hides the feedback (and the worked answer) that was about the old one.
        choices.observe(lambda _change: self._clear(index), names="value")
        return _QuestionView(
            question, prompt, choices, button, feedback, worked_button, worked_output
        )

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
        _hidden(view.worked_button, not q.worked)
        self._update_score()
        return view.correct

    def feedback(self, i: int) -> str:
        """The feedback shown for question ``i``, as plain text ("" before it is checked)."""
        return self._view(i).text

    def toggle_worked(self, i: int) -> bool:
        """Show (or hide again) question ``i``'s worked answer; True when it is now shown.

        Only a checked question offers it. The Markdown goes into the ``Output`` only now, so
        an executed notebook's stored outputs never hold it.
        """
        view = self._view(i)
        if view.correct is None:
            raise ValueError(f"i: check question {i} before asking for its worked answer")
        if not view.question.worked:
            raise ValueError(f"i: question {i} has no worked answer")
        if view.worked_output.outputs:
            view.worked_output.outputs = ()
            view.worked_button.description = SHOW_WORKED
            return False
        view.worked_output.append_display_data(Markdown(view.question.worked))
        view.worked_button.description = HIDE_WORKED
        return True

    def worked_shown(self, i: int) -> str:
        """The worked answer shown under question ``i`` (Markdown), or "" if it is hidden."""
        view = self._view(i)
        return view.question.worked if view.worked_output.outputs else ""

    def score(self) -> int:
        """How many questions were checked and found right."""
        return sum(1 for view in self.views if view.correct)

    def _clear(self, i: int) -> None:
        view = self.views[i]
        view.correct, view.text, view.feedback_html.value = None, "", ""
        view.worked_output.outputs = ()
        view.worked_button.description = SHOW_WORKED
        _hidden(view.worked_button, True)
        self._update_score()

    def _update_score(self) -> None:
        self.score_line.value = f"Score: {self.score()} / {len(self.views)}"

    def _ipython_display_(self) -> None:
        if _on_colab():
            display(HTML(COLAB_MATHJAX))
        display(self.widget)

    def __repr__(self) -> str:
        return quiz_text(self.questions)


def quiz(
    questions: Sequence[Question] | str | int, title: str = "Check your understanding"
) -> Quiz:
    """An interactive quiz: a lesson's (``quiz("08")``) or a list of ``Question``.

    Evaluate it as a cell's last line (or ``display(q.widget)``).
    """
    lesson = _lesson_key(questions) if isinstance(questions, (str, int)) else None
    return Quiz(_questions(questions), title=title, lesson=lesson)


# --------------------------------------------------------------------------------------------
# Text, for frontends without widgets
# --------------------------------------------------------------------------------------------


def quiz_text(questions: Sequence[Question] | str | int, show_answers: bool = False) -> str:
    """The questions as plain text, for frontends without widgets (answers optional)."""
    lines: list[str] = []
    for i, q in enumerate(_questions(questions)):
        lines.append(f"{i + 1}. {q.prompt}")
        lines.extend(f"   {_letter(k)}) {choice}" for k, choice in enumerate(q.choices))
        if show_answers:
            lines.append(f"   Answer: {_letter(q.answer)}) {q.choices[q.answer]}")
            if q.explanation:
                lines.append(f"   {q.explanation}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def worked_answers_markdown(
    questions: Sequence[Question] | str | int, summary: str = "Worked answers"
) -> str:
    """Markdown for a collapsible block: each question, its right answer and the worked answer
    (the explanation where a question has none)."""
    parts = [f"<details>\n<summary>{html.escape(summary)}</summary>\n"]
    for i, q in enumerate(_questions(questions)):
        parts.append(f"**{i + 1}. {q.prompt}**\n")
        parts.append(f"Answer: ({_letter(q.answer)}) {q.choices[q.answer]}\n")
        if q.worked or q.explanation:
            parts.append(f"{q.worked or q.explanation}\n")
    parts.append("</details>\n")
    return "\n".join(parts)


def worked_answers(
    questions: Sequence[Question] | str | int, summary: str = "Worked answers"
) -> Markdown:
    """All worked answers of a quiz, as a collapsed block to show in a notebook:
    ``worked_answers("08")``."""
    return Markdown(worked_answers_markdown(questions, summary=summary))
