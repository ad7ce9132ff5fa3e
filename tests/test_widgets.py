"""Tests of coursekit.viz.widgets and coursekit.viz.quiz, driven from code (no browser).

They use only what ipywidgets 7.6+ and 8 share, so the same tests run under both.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
import types
from pathlib import Path

import ipywidgets
import matplotlib.pyplot as plt
import nbformat
import numpy as np
import pytest
import torch
import traitlets

from coursekit.viz.quiz import (
    Question,
    available_quizzes,
    load_questions,
    quiz,
    quiz_text,
    worked_answers,
    worked_answers_markdown,
)
from coursekit.viz.widgets import (
    classify_run,
    gradient_descent_1d,
    learning_rate_explorer,
    step_through,
)
from tools import convert_quizzes

quiz_module = importlib.import_module("coursekit.viz.quiz")  # the module; viz.quiz is the function
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _agg_and_close_figures():
    """Draw off-screen, and leave no figure open after a test."""
    plt.switch_backend("Agg")
    yield
    plt.close("all")


def square(x):
    return x * x


def square_grad(x):
    return 2 * x


# --------------------------------------------------------------------------------------------
# Gradient descent in 1-D
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lr", [0.05, 0.3, 0.8])
def test_gradient_descent_1d_matches_the_closed_form(lr):
    # On x^2 each step multiplies x by (1 - 2 lr).
    xs = gradient_descent_1d(square_grad, 3.0, lr, steps=10)
    np.testing.assert_allclose(xs, [3.0 * (1 - 2 * lr) ** t for t in range(11)])


def test_gradient_descent_1d_stops_when_it_blows_up():
    xs = gradient_descent_1d(square_grad, 1.0, 10.0, steps=1000)
    assert len(xs) < 1000 and abs(xs[-1]) > 1e12


@pytest.mark.parametrize(
    ("lr", "status"), [(0.1, "converges"), (0.8, "oscillates"), (1.2, "diverges")]
)
def test_classify_run_tells_the_three_regimes_apart(lr, status):
    xs = gradient_descent_1d(square_grad, 3.0, lr, steps=20)
    assert classify_run(xs, [square(x) for x in xs]) == status


# --------------------------------------------------------------------------------------------
# Learning-rate explorer
# --------------------------------------------------------------------------------------------


def _iterates_line(figure):
    """The line of the iterates in the explorer's left panel."""
    (line,) = [ln for ln in figure.axes[0].lines if ln.get_label() == "iterates"]
    return line


def test_explorer_starts_at_the_given_learning_rate():
    explorer = learning_rate_explorer(square, square_grad, x0=3.0, lrs=(1e-3, 1.5), lr=0.1)
    assert explorer.slider.value == pytest.approx(0.1)
    assert explorer.slider.min == pytest.approx(-3.0)
    assert explorer.slider.max == pytest.approx(np.log10(1.5))
    assert explorer.last_trajectory == gradient_descent_1d(square_grad, 3.0, 0.1, 20)
    assert explorer.last_status == "converges"
    assert explorer.slider in explorer.widget.children[0].children
    assert explorer.output in explorer.widget.children
    assert plt.get_fignums() == []  # drawn into the Output, then closed


def test_moving_the_slider_reruns_and_redraws():
    explorer = learning_rate_explorer(square, square_grad, x0=3.0, lrs=(1e-3, 1.5), lr=0.1)
    first_figure = explorer.last_figure
    explorer.slider.value = 0.8  # what dragging the slider does
    assert explorer.last_trajectory == gradient_descent_1d(square_grad, 3.0, 0.8, 20)
    assert explorer.last_status == "oscillates"
    assert "oscillates" in explorer.status.value
    assert explorer.last_figure is not first_figure
    iterates = _iterates_line(explorer.last_figure)
    np.testing.assert_allclose(iterates.get_xdata(), explorer.last_trajectory)
    assert explorer.last_figure.axes[0].get_title() == "lr = 0.8: oscillates"

    explorer.slider.value = 1.2
    assert explorer.last_status == "diverges"
    assert abs(explorer.last_trajectory[-1]) > abs(explorer.last_trajectory[0])
    assert plt.get_fignums() == []


def test_explorer_redraw_and_run_can_be_called_directly():
    explorer = learning_rate_explorer(square, square_grad, x0=-2.0, steps=5)
    figure = explorer.redraw(0.25)
    assert figure is explorer.last_figure
    xs, losses = explorer.run(0.25)
    assert explorer.last_trajectory == xs and len(xs) == 6
    np.testing.assert_allclose(losses, [x * x for x in xs])
    history_line = figure.axes[1].lines[0]
    np.testing.assert_allclose(history_line.get_ydata(), losses)


def test_explorer_accepts_functions_of_tensors():
    def loss(x):
        return (torch.tensor(x, dtype=torch.float64) - 1.0) ** 2

    def grad(x):
        return 2 * (torch.tensor(x, dtype=torch.float64) - 1.0)

    explorer = learning_rate_explorer(loss, grad, x0=torch.tensor(4.0), lr=0.25, lrs=(0.01, 1.0))
    assert explorer.last_trajectory[:3] == [4.0, 2.5, 1.75]
    lo, hi = explorer.xlim
    assert lo < 1.0 < 4.0 < hi  # the default view holds the minimum and the start


def test_explorer_rejects_bad_settings():
    with pytest.raises(ValueError, match="lrs"):
        learning_rate_explorer(square, square_grad, 1.0, lrs=(1.0, 0.1))
    with pytest.raises(ValueError, match="lr"):
        learning_rate_explorer(square, square_grad, 1.0, lrs=(0.01, 0.1), lr=0.5)
    with pytest.raises(ValueError, match="steps"):
        learning_rate_explorer(square, square_grad, 1.0, steps=0)
    with pytest.raises(ValueError, match="xlim"):
        learning_rate_explorer(square, square_grad, 1.0, xlim=(2.0, -2.0))


def test_explorer_displays_its_widget(monkeypatch):
    import coursekit.viz.widgets as module

    shown = []
    monkeypatch.setattr(module, "display", shown.append)
    explorer = learning_rate_explorer(square, square_grad, 1.0)
    shown.clear()
    explorer._ipython_display_()
    assert shown == [explorer.widget]


# --------------------------------------------------------------------------------------------
# Stepper
# --------------------------------------------------------------------------------------------


def _recording_stepper(frames, **options):
    drawn = []

    def draw(frame):
        drawn.append(frame)
        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, frame])
        return fig

    return step_through(frames, draw, **options), drawn


def test_stepper_moves_within_bounds():
    stepper, drawn = _recording_stepper([10, 20, 30])
    assert (stepper.index, drawn) == (0, [10])
    assert stepper.previous_button.disabled and not stepper.next_button.disabled
    stepper.previous()  # already at the first frame: nothing happens
    assert (stepper.index, drawn) == (0, [10])
    stepper.next()
    stepper.next()
    assert (stepper.index, drawn) == (2, [10, 20, 30])
    assert stepper.next_button.disabled and not stepper.previous_button.disabled
    stepper.next()  # already at the last frame
    assert (stepper.index, drawn) == (2, [10, 20, 30])
    assert stepper.caption.value == "step 3 / 3"
    assert stepper.last_result.axes[0].lines[0].get_ydata()[1] == 30
    assert plt.get_fignums() == []


def test_stepper_buttons_and_slider_are_wired():
    stepper, drawn = _recording_stepper(iter(range(5)), start=2)
    assert drawn == [2]
    stepper.next_button.click()
    stepper.previous_button.click()
    stepper.previous_button.click()
    assert drawn == [2, 3, 2, 1]
    stepper.slider.value = 4
    assert (stepper.index, drawn[-1]) == (4, 4)
    stepper.show(99)  # clamped to the last frame, already shown
    assert drawn == [2, 3, 2, 1, 4]


def test_stepper_captions_and_pyplot_drawings():
    def draw(frame):
        plt.figure()
        plt.plot([frame, frame])

    stepper = step_through(["a", "b"], draw, caption=lambda f: f"node <{f}>")
    assert stepper.caption.value == "step 1 / 2: node &lt;a&gt;"
    assert stepper.last_result is None
    assert plt.get_fignums() == []  # the pyplot figure was shown, then closed


def test_stepper_replays_a_backward_pass_node_by_node():
    graph = pytest.importorskip("coursekit.viz.graph")
    from coursekit.scalar import Value

    a, b = Value(2.0), Value(-3.0)
    loss = (a * b + a).tanh()
    steps = graph.backward_steps(loss)
    highlighted = []

    def draw(step):
        highlighted.append(step.node)
        return graph.draw_graph(loss, highlight=step.node, grads=step.grads)

    stepper = step_through(steps, draw, caption=lambda step: step.description)
    for _ in steps:
        stepper.next()
    assert highlighted == [step.node for step in steps]
    assert stepper.caption.value.startswith(f"step {len(steps)} / {len(steps)}: ")
    assert stepper.last_result is not None
    assert plt.get_fignums() == []


def test_stepper_rejects_empty_frames_and_bad_start():
    with pytest.raises(ValueError, match="frames"):
        step_through([], print)
    with pytest.raises(ValueError, match="start"):
        step_through([1, 2], print, start=2)


# --------------------------------------------------------------------------------------------
# Quiz
# --------------------------------------------------------------------------------------------


def _questions():
    return [
        Question(
            "Which derivative does `relu` pass back where x < 0?",
            ["1", "0", "x"],
            answer=1,
            explanation="relu'(x) = 0 for x < 0.",
        ),
        Question("Is $\\sigma'(0) = 1/4$?", ["yes", "no"], answer=0, explanation="s(1 - s) = 1/4."),
    ]


def test_quiz_gives_instant_feedback():
    q = quiz(_questions())
    assert q.feedback(0) == "" and q.selected(0) is None
    q.select(0, 1)
    assert q.check(0) is True
    assert q.feedback(0) == "Correct. relu'(x) = 0 for x < 0."
    assert "Correct." in q.views[0].feedback_html.value
    q.select(1, "no")
    assert q.selected(1) == 1
    assert q.check(1) is False
    assert q.feedback(1).startswith("Incorrect.") and "1/4" in q.feedback(1)
    assert q.score() == 1
    assert q.score_line.value == "Score: 1 / 2"


def test_quiz_check_without_a_choice_and_changing_the_choice():
    q = quiz(_questions())
    assert q.check(0) is False
    assert q.feedback(0) == "Pick an answer first."
    q.select(0, 1)
    q.check(0)
    q.select(0, 2)  # a new choice hides the old verdict
    assert q.feedback(0) == "" and q.views[0].feedback_html.value == "" and q.score() == 0


def test_quiz_check_button_and_radio_buttons_are_wired():
    q = quiz(_questions())
    q.views[1].choices.value = 0  # what clicking the first radio button does
    q.views[1].check_button.click()
    assert q.feedback(1).startswith("Correct.")
    radio_labels = [label for label, _ in q.views[0].choices.options]
    assert radio_labels == ["a) 1", "b) 0", "c) x"]


def test_quiz_escapes_html_and_marks_code():
    q = quiz([Question("Is `a<b` <script>?", ["x", "y"], 0, "")])
    prompt = q.widget.children[1].children[0].value
    assert "<code>a&lt;b</code>" in prompt and "<script>" not in prompt


def test_quiz_rejects_bad_questions_and_choices():
    with pytest.raises(ValueError, match="answer"):
        Question("?", ["a", "b"], answer=2, explanation="")
    with pytest.raises(ValueError, match="choices"):
        Question("?", ["only one"], answer=0, explanation="")
    with pytest.raises(TypeError, match=r"questions\[0\]"):
        quiz(["not a question"])
    q = quiz(_questions())
    with pytest.raises(ValueError, match="choice"):
        q.select(0, "maybe")
    with pytest.raises(ValueError, match="choice"):
        q.select(0, 3)
    with pytest.raises(IndexError, match="question 5"):
        q.check(5)


def test_quiz_text_and_worked_answers():
    questions = _questions()
    text = quiz_text(questions)
    assert text.startswith("1. Which derivative")
    assert "   b) 0" in text and "Answer" not in text
    with_answers = quiz_text(questions, show_answers=True)
    assert "   Answer: b) 0" in with_answers and "   Answer: a) yes" in with_answers
    markdown = worked_answers_markdown(questions)
    assert markdown.startswith("<details>") and markdown.rstrip().endswith("</details>")
    assert "Answer: (b) 0" in markdown and "s(1 - s) = 1/4." in markdown
    assert repr(quiz(questions)) == text


# --------------------------------------------------------------------------------------------
# Quiz: math in choices, worked answers, lessons' questions from package data
# --------------------------------------------------------------------------------------------


def _worked_questions():
    return [
        Question(
            "Which step size is best for a central difference in float64?",
            ["$10^{-1}$", "$10^{-5}$", "$10^{-15}$"],
            answer=1,
            explanation="About $\\varepsilon^{1/3}$.",
            worked="**$10^{-5}$.** Truncation $\\propto h^2$, rounding $\\propto \\varepsilon/h$.",
        ),
        Question("No worked answer here.", ["a", "b"], answer=0),
    ]


def test_quiz_choices_are_math_widgets_with_a_letter_button_each():
    q = quiz(_worked_questions())
    choices = q.views[0].choices
    assert [label.value for label in choices.labels] == ["$10^{-1}$", "$10^{-5}$", "$10^{-15}$"]
    assert all(isinstance(label, ipywidgets.HTMLMath) for label in choices.labels)
    assert "coursekit-quiz-choice" in choices.labels[0]._dom_classes
    assert isinstance(q.views[0].prompt_html, ipywidgets.HTMLMath)
    assert [b.description for b in choices.buttons] == ["a", "b", "c"]
    assert choices.options == [("a) $10^{-1}$", 0), ("b) $10^{-5}$", 1), ("c) $10^{-15}$", 2)]


def test_quiz_letter_buttons_act_as_radio_buttons():
    q = quiz(_worked_questions())
    buttons = q.views[0].choices.buttons
    buttons[2].value = True  # what pressing (c) does
    assert q.selected(0) == 2
    buttons[0].value = True  # pressing (a) releases (c)
    assert q.selected(0) == 0 and [b.value for b in buttons] == [True, False, False]
    assert buttons[0].button_style == "info" and buttons[2].button_style == ""
    buttons[0].value = False  # pressing the chosen one again keeps it chosen
    assert q.selected(0) == 0 and buttons[0].value is True
    q.select(0, 1)  # from code, the buttons follow
    assert [b.value for b in buttons] == [False, True, False]
    with pytest.raises(traitlets.TraitError, match="value"):
        q.views[0].choices.value = 3


def test_quiz_offers_the_worked_answer_only_after_checking():
    q = quiz(_worked_questions())
    view = q.views[0]
    assert view.worked_button.layout.display == "none" and view.worked_output.outputs == ()
    with pytest.raises(ValueError, match="check question 0"):
        q.toggle_worked(0)
    q.select(0, 0)
    q.views[0].check_button.click()
    assert q.feedback(0).startswith("Incorrect.")
    assert view.worked_button.layout.display != "none"
    view.worked_button.click()
    assert q.worked_shown(0).startswith("**$10^{-5}$.**")
    (shown,) = view.worked_output.outputs
    assert shown["data"]["text/markdown"] == _worked_questions()[0].worked
    assert view.worked_button.description == "Hide worked answer"
    assert q.toggle_worked(0) is False and view.worked_output.outputs == ()
    q.toggle_worked(0)
    q.select(0, 1)  # a new choice hides the worked answer with the verdict
    assert view.worked_output.outputs == () and view.worked_button.layout.display == "none"
    q.select(1, 0)
    q.check(1)  # a question without a worked answer offers none
    assert q.views[1].worked_button.layout.display == "none"
    with pytest.raises(ValueError, match="no worked answer"):
        q.toggle_worked(1)


def test_quiz_loads_mathjax_on_colab_only(monkeypatch):
    shown = []
    monkeypatch.setattr(quiz_module, "display", lambda obj: shown.append(obj))
    q = quiz(_worked_questions())
    q._ipython_display_()
    assert shown == [q.widget]
    shown.clear()
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    q._ipython_display_()
    assert len(shown) == 2 and shown[1] is q.widget
    assert "MathJax.js" in shown[0].data and "inlineMath: [['$','$']" in shown[0].data


def test_quiz_of_a_lesson_comes_from_package_data():
    questions = load_questions("03")
    assert load_questions(3) == questions
    q = quiz("03")
    assert q.lesson == "03" and q.questions == questions
    assert repr(q) == quiz_text("03") == quiz_text(questions)
    assert "Answer" not in quiz_text("03")
    block = worked_answers("03").data
    assert block.startswith("<details>") and all(x.worked in block for x in questions)
    with pytest.raises(ValueError, match="no quiz for lesson 99"):
        quiz("99")
    with pytest.raises(ValueError, match="lesson"):
        quiz("eight")
    with pytest.raises(TypeError, match="lesson"):
        load_questions(3.0)


def test_quiz_data_errors_name_the_field():
    good = {"prompt": "?", "choices": ["a", "b"], "answer": 1}
    assert quiz_module._question_from_dict(good, "q").answer == 1
    bad = [
        ({**good, "answer": 2}, "answer"),
        ({**good, "answer": True}, "answer"),
        ({**good, "choices": ["a"]}, "choices"),
        ({**good, "choices": "ab"}, "choices"),
        ({**good, "hint": "x"}, "unknown fields \\['hint'\\]"),
        ({"prompt": "?", "choices": ["a", "b"]}, "missing fields \\['answer'\\]"),
        ({**good, "worked": 3}, "worked"),
    ]
    for data, message in bad:
        with pytest.raises(ValueError, match=message):
            quiz_module._question_from_dict(data, "q")


@pytest.mark.parametrize("lesson", available_quizzes())
def test_every_lessons_quiz_data_is_valid(lesson):
    path = ROOT / "coursekit" / "quizzes" / f"{lesson}.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["lesson"] == lesson
    questions = load_questions(lesson)  # Question checks 2-26 choices and the answer's range
    assert len(questions) == len(data["questions"]) >= 3
    for i, q in enumerate(questions):
        assert 2 <= len(q.choices) <= 26 and 0 <= q.answer < len(q.choices)
        assert len(set(q.choices)) == len(q.choices), f"{lesson} q{i + 1}: repeated choice"
        assert q.prompt.strip() and q.explanation.strip() and q.worked.strip(), (
            f"{lesson} q{i + 1}: prompt, explanation and worked answer are all needed"
        )
        for text in [q.prompt, *q.choices, q.explanation, q.worked]:
            assert text.count("$") % 2 == 0, f"{lesson} q{i + 1}: unbalanced $ in {text!r}"


QUIZ_CALL = re.compile(r"""\bquiz\(\s*["'](\d+)["']\s*\)""")


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_every_notebook_quiz_call_names_existing_data(path):
    nb = nbformat.read(path, as_version=4)
    calls = [m for c in nb.cells if c.cell_type == "code" for m in QUIZ_CALL.findall(c.source)]
    if not calls:
        pytest.skip(f"{path.name} still builds its questions in the notebook")
    assert calls == [path.name[:2]], f"{path.name}: quiz calls {calls}"
    assert calls[0] in available_quizzes()


# --------------------------------------------------------------------------------------------
# tools/convert_quizzes.py
# --------------------------------------------------------------------------------------------


def test_worked_items_split_numbered_and_bold_numbered_answers():
    listed = (
        "<details><summary>Worked answers</summary>\n\n"
        "1. **A.** one\n   more\n2. **B.** two\n\n</details>"
    )
    assert convert_quizzes.worked_items(listed) == ["**A.** one\nmore", "**B.** two"]
    bold = (
        "<details>\n<summary>Worked answers</summary>\n\n"
        "**1. A.** one\nmore\n\n**2. B.** two\n</details>"
    )
    assert convert_quizzes.worked_items(bold) == ["**A.** one\nmore", "**B.** two"]
    with pytest.raises(ValueError, match="item 2 is numbered 3"):
        convert_quizzes.worked_items("1. a\n3. b")


def _lesson_notebook(path):
    source = (
        "from coursekit.viz import Question, quiz\n\nquiz(\n    [\n"
        '        Question("Is $x^2$ convex?", ["yes", "no"], 0, "Its second derivative is 2."),\n'
        '        Question("p?", ["a", "b", "c"], answer=2, explanation="e" "f"),\n'
        "    ]\n)"
    )
    quiz_cell = nbformat.v4.new_code_cell(source, id="quizcell")
    quiz_cell.metadata["tags"] = ["nbval-ignore-output"]
    quiz_cell.outputs = [nbformat.v4.new_output("display_data", {"text/plain": "1. Is ..."})]
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell(
                "## Check your understanding\n\n"
                "Press **Check**. The worked answers are below the quiz."
            ),
            quiz_cell,
            nbformat.v4.new_markdown_cell(
                "<details><summary>Worked answers</summary>\n\n1. **Yes.** $f'' = 2 > 0$.\n"
                "2. **c.** Because.\n</details>",
                id="workedcell",
            ),
        ]
    )
    nbformat.write(nb, path)


def test_convert_quizzes_moves_questions_out_and_is_idempotent(tmp_path, monkeypatch):
    monkeypatch.setattr(convert_quizzes, "QUIZ_DIR", tmp_path)
    monkeypatch.setattr(convert_quizzes, "ROOT", tmp_path)
    path = tmp_path / "07_example.ipynb"
    _lesson_notebook(path)
    assert convert_quizzes.main(["--check", str(path)]) == 1
    assert convert_quizzes.convert(path).startswith("converted (2 questions")
    data = json.loads((tmp_path / "07.json").read_text())
    assert data["lesson"] == "07"
    assert data["questions"][1] == {
        "prompt": "p?",
        "choices": ["a", "b", "c"],
        "answer": 2,
        "explanation": "ef",
        "worked": "**c.** Because.",
    }
    nb = nbformat.read(path, as_version=4)
    intro, cell, worked = nb.cells
    assert cell.source == 'from coursekit.viz import quiz\n\nquiz("07")'
    assert cell.id == "quizcell" and cell.metadata["tags"] == ["nbval-ignore-output"]
    assert cell.outputs[0]["data"]["text/plain"] == "1. Is ..."
    assert worked.id == "workedcell" and "Worked answers" in worked.source
    assert 'worked_answers("07")' in worked.source and "Because" not in worked.source
    assert "below the quiz" not in intro.source and "Show worked answer" in intro.source
    before = path.read_text()
    assert convert_quizzes.convert(path) == "already converted"
    assert convert_quizzes.main(["--check", str(path)]) == 0
    assert path.read_text() == before


def test_convert_quizzes_leaves_a_notebook_it_cannot_convert_unchanged(tmp_path, monkeypatch):
    monkeypatch.setattr(convert_quizzes, "QUIZ_DIR", tmp_path)
    path = tmp_path / "07_example.ipynb"
    _lesson_notebook(path)
    nb = nbformat.read(path, as_version=4)
    nb.cells[2].source = nb.cells[2].source.replace("2. **c.** Because.\n", "")
    nbformat.write(nb, path)
    before = path.read_text()
    assert convert_quizzes.main([str(path)]) == 1
    assert path.read_text() == before and not (tmp_path / "07.json").exists()
