"""Repository checks: notebooks carry the Colab badge and set-up cell, exercises are
generated from solutions and leak nothing, and the environment files agree."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

from tools import colab, make_exercises

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = colab.notebook_paths(ROOT)
NAME_RE = re.compile(r"^\d\d_[a-z0-9_]+\.ipynb$")
ALLOWED_TAGS = {"nbval-ignore-output", "nbval-skip", "raises-exception", "hide-input", "solution"}


def _id(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def test_there_are_notebooks_in_every_folder():
    for folder in colab.NOTEBOOK_DIRS:
        assert list((ROOT / folder).glob("*.ipynb")), f"{folder}/ has no notebooks"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_notebook_name(path):
    assert NAME_RE.match(path.name), f"{_id(path)}: expected NN_short_name.ipynb"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_colab_badge_points_at_own_path(path):
    first = _read(path).cells[0]
    assert first.cell_type == "markdown", f"{_id(path)}: first cell must be the badge (markdown)"
    badge = colab.badge_markdown(_id(path), colab.course_settings(ROOT / "pyproject.toml"))
    assert first.source.splitlines()[0] == badge, (
        f"{_id(path)}: badge missing or stale; run make badges"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_first_code_cell_is_the_colab_setup(path):
    nb = _read(path)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert code_cells, f"{_id(path)} has no code"
    expected = colab.setup_cell_source(colab.course_settings(ROOT / "pyproject.toml"))
    assert code_cells[0].source == expected, f"{_id(path)}: set-up cell missing or stale"


def test_setup_cell_installs_only_on_colab_and_pins_nothing():
    source = colab.setup_cell_source()
    guarded = source.split('if "google.colab" in sys.modules:')[1].split("\n\n", 2)
    assert "pip" in "".join(guarded) and "pip" not in source.split("if ")[0]
    spec = colab.install_spec()
    assert spec.startswith("coursekit @ git+https://github.com/")
    assert "torch" not in source and "==" not in source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_kernelspec_is_portable(path):
    # nbval runs with --nbval-current-env; Colab and fresh Jupyter installs know "python3".
    spec = _read(path).metadata.get("kernelspec", {})
    assert spec.get("name") == "python3", f"{_id(path)}: kernelspec {spec}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_id)
def test_no_stored_errors_and_stable_outputs(path):
    for i, cell in enumerate(_read(path).cells):
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            assert out.output_type != "error", f"{_id(path)} cell {i} stores an error"
            text = json.dumps(out.get("data", {}).get("text/plain", "")) + out.get("text", "")
            assert not re.search(r" at 0x[0-9a-f]{6,}", text), (
                f"{_id(path)} cell {i} prints a memory address (end plot lines with ';')"
            )
            assert "image/svg+xml" not in out.get("data", {}), f"{_id(path)} cell {i}: store PNG"
        tags = set(cell.metadata.get("tags", []))
        assert tags <= ALLOWED_TAGS, f"{_id(path)} cell {i}: unknown tags {tags - ALLOWED_TAGS}"


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=_id)
def test_lessons_end_with_review_questions(path):
    text = "\n".join(c.source for c in _read(path).cells)
    assert "Check your understanding" in text, f"{_id(path)}: no review section"
    assert "quiz(" in text and "Worked answers" in text, (
        f"{_id(path)}: quiz or worked answers missing"
    )


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=_id)
def test_quiz_answers_are_not_in_the_notebook_source(path):
    # Questions, answers and worked answers live in coursekit/quizzes/NN.json, out of view
    # (tools/convert_quizzes.py moves them there); the notebook only calls quiz("NN").
    cells = _read(path).cells
    code = "\n".join(c.source for c in cells if c.cell_type == "code")
    assert "Question(" not in code and not re.search(r"\banswer\s*=\s*\d", code), (
        f"{_id(path)}: the quiz's answer key is in the source (run tools/convert_quizzes.py)"
    )
    lesson = path.name[:2]
    calls = re.findall(r"\bquiz\((.*?)\)", code)
    assert calls == [f'"{lesson}"'], f'{_id(path)}: expected one quiz("{lesson}"), found {calls}'
    written_out = [
        i
        for i, c in enumerate(cells)
        if c.cell_type == "markdown" and re.search(r"<summary>\s*Worked answers", c.source)
    ]
    assert not written_out, f"{_id(path)}: worked answers written out in cells {written_out}"


# ----------------------------------------------------------------------------- exercises


def test_exercises_are_generated_from_solutions():
    expected = make_exercises.expected_exercises(ROOT)
    present = set((ROOT / "exercises").glob("*.ipynb"))
    assert present == set(expected), "exercises/ and solutions/ hold different notebooks"
    stale = [_id(p) for p, text in expected.items() if p.read_text() != text]
    assert not stale, f"out of date (run `make exercises ARGS=--force`): {stale}"


def _solution_lines(source: str) -> list[str]:
    inside, lines = False, []
    for line in source.splitlines():
        if line.strip() == make_exercises.BEGIN:
            inside = True
        elif line.strip() == make_exercises.END:
            inside = False
        elif inside and len(line.strip()) > 3:
            lines.append(line.strip())
    return lines


@pytest.mark.parametrize("path", sorted((ROOT / "solutions").glob("*.ipynb")), ids=_id)
def test_exercise_leaks_no_solution(path):
    solution = _read(path)
    exercise = _read(ROOT / "exercises" / path.name)
    ex_text = "\n".join(c.source for c in exercise.cells)
    assert make_exercises.BEGIN not in ex_text and make_exercises.END not in ex_text
    solution_lines = [ln for c in solution.cells for ln in _solution_lines(c.source)]
    assert solution_lines, f"{_id(path)} has no ### BEGIN SOLUTION block"
    ex_lines = {ln.strip() for ln in ex_text.splitlines()}
    leaked = [ln for ln in solution_lines if ln in ex_lines and not ln.startswith(("#", "return"))]
    assert not leaked, f"exercise for {_id(path)} contains solution lines: {leaked}"
    assert all(not c.get("outputs") for c in exercise.cells if c.cell_type == "code")
    assert "NotImplementedError" in ex_text


def _solution_nb(tmp_path: Path, source: str, markdown: str = "Intro") -> Path:
    settings = colab.course_settings(ROOT / "pyproject.toml")
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell(colab.badge_markdown("solutions/01_x.ipynb", settings)),
            nbformat.v4.new_markdown_cell(markdown),
            nbformat.v4.new_code_cell(
                source, outputs=[nbformat.v4.new_output("stream", text="4\n")]
            ),
        ]
    )
    (tmp_path / "solutions").mkdir()
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    path = tmp_path / "solutions" / "01_x.ipynb"
    nbformat.write(nb, path)
    return path


SOLUTION = """def f(x):
    y = 1
    ### BEGIN SOLUTION
    secret = x * 2
    return secret
    ### END SOLUTION

print(f(2))"""


def test_generator_stubs_inside_the_function_and_clears_outputs(tmp_path):
    _solution_nb(tmp_path, SOLUTION, "Answer:\n### BEGIN SOLUTION\nsecret text\n### END SOLUTION")
    report = make_exercises.generate(tmp_path)
    (target,) = report["written"]
    nb = _read(target)
    code = nb.cells[2]
    assert code.outputs == [] and code.execution_count is None
    assert "secret" not in code.source and "secret text" not in nb.cells[1].source
    assert '    raise NotImplementedError("f: write your code here")' in code.source
    assert code.source.startswith("def f(x):\n    y = 1\n    # YOUR CODE HERE")
    assert code.source.endswith("print(f(2))")
    assert "exercises/01_x.ipynb" in nb.cells[0].source


def test_generator_never_overwrites_student_work_without_force(tmp_path):
    _solution_nb(tmp_path, SOLUTION)
    make_exercises.generate(tmp_path)
    target = tmp_path / "exercises" / "01_x.ipynb"
    target.write_text(target.read_text().replace("# YOUR CODE HERE", "return x * 2  # mine"))
    student = target.read_text()
    report = make_exercises.generate(tmp_path)
    assert report["skipped"] == [target] and target.read_text() == student
    assert make_exercises.generate(tmp_path, check=True)["stale"] == [target]
    make_exercises.generate(tmp_path, force=True)
    assert "# mine" not in target.read_text()
    assert make_exercises.generate(tmp_path, check=True)["stale"] == []


def test_generator_rejects_unclosed_block():
    with pytest.raises(ValueError, match="END SOLUTION"):
        make_exercises._stub_code("def f():\n    ### BEGIN SOLUTION\n    return 1\n")


def test_badges_are_rewritten_when_the_repository_moves(tmp_path):
    path = _solution_nb(tmp_path, SOLUTION)
    settings = {"repository": "https://github.com/someone/fork", "branch": "dev"}
    assert colab.apply(path, settings, root=tmp_path)
    nb = _read(path)
    assert "colab.research.google.com/github/someone/fork/blob/dev/solutions/01_x.ipynb" in (
        nb.cells[0].source
    )
    assert "git+https://github.com/someone/fork@dev" in nb.cells[1].source
    assert not colab.apply(path, settings, root=tmp_path)  # idempotent


# ----------------------------------------------------------------------------- set-up files


def _pyproject_requirements() -> set[str]:
    text = (ROOT / "pyproject.toml").read_text()
    blocks = re.findall(r"^(?:dependencies|dev) = \[(.*?)\]", text, re.M | re.S)
    return {req for block in blocks for req in re.findall(r'"([^"]+)"', block)}


def _conda_pip_requirements() -> set[str]:
    lines = (ROOT / "environment.yml").read_text().split("- pip:")[1].splitlines()
    reqs = {ln.strip()[2:].strip() for ln in lines if ln.strip().startswith("- ")}
    return {r for r in reqs if not r.startswith("-e ")}


def test_environment_yml_matches_pyproject():
    assert _pyproject_requirements(), "could not read pyproject dependencies"
    assert _conda_pip_requirements() == _pyproject_requirements()


def test_dependencies_use_lower_bounds_only():
    # Colab ships its own torch/numpy/ipywidgets: never pin them (no == and no upper bounds).
    for req in _pyproject_requirements():
        assert "==" not in req and "<" not in req, req


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make lab" in readme


def test_readme_lists_every_lesson_with_its_badges():
    readme = (ROOT / "README.md").read_text()
    settings = colab.course_settings(ROOT / "pyproject.toml")
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        rel = _id(path)
        assert f"]({rel})" in readme, f"README's lesson table does not link {rel}"
        assert colab.badge_markdown(rel, settings) in readme, f"README: no Colab badge for {rel}"
    for link in re.findall(r"\]\(((?:notebooks|exercises|solutions)/[^)]+\.ipynb)\)", readme):
        assert (ROOT / link).exists(), f"README links a missing notebook: {link}"
