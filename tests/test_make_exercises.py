"""The exercise generator's nbgrader metadata: solutions/ carry it, and it is right, stable
and strict about check() cells it cannot map to one item. (nbgrader itself runs on the
notebooks in tests/nbgrader.)"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from tools import colab, make_exercises

ROOT = Path(__file__).resolve().parents[1]
POINTS = {"03.sigmoid": 2, "03.gd_step": 3}


def _id(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("path", sorted((ROOT / "solutions").glob("*.ipynb")), ids=_id)
def test_solutions_carry_nbgrader_metadata(path):
    expected = make_exercises.expected_solutions(ROOT)[path]
    assert path.read_text() == expected, (
        f"{_id(path)}: nbgrader metadata missing or stale (run `make exercises`)"
    )
    nb = nbformat.read(path, as_version=4)
    tests = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert any(c.cell_type == "code" for c in tests), f"{_id(path)} has no autograder test cell"
    for cell in nb.cells:
        if make_exercises.BEGIN in cell.source:
            assert cell.metadata["nbgrader"]["solution"], f"{_id(path)}: {cell.source[:60]}"


def _notebook(*cells) -> nbformat.NotebookNode:
    settings = colab.course_settings(ROOT / "pyproject.toml")
    badge = nbformat.v4.new_markdown_cell(colab.badge_markdown("solutions/03_x.ipynb", settings))
    return nbformat.v4.new_notebook(cells=[badge, *cells])


SIGMOID = """def sigmoid_forward(x):
    ### BEGIN SOLUTION
    return 1 / (1 + (-x).exp())
    ### END SOLUTION"""

ANSWER = "Derive it:\n\n### BEGIN SOLUTION\nIt is $w - \\eta g$.\n### END SOLUTION"


def _course_notebook() -> nbformat.NotebookNode:
    code, md = nbformat.v4.new_code_cell, nbformat.v4.new_markdown_cell
    stale = code("x = 1")
    stale.metadata["nbgrader"] = {"grade": False, "solution": True, "locked": False}
    return _notebook(
        code("from coursekit.grading import check  # check( in a comment is no call"),
        code(SIGMOID),
        code('result = check("03.sigmoid", sigmoid_forward, sigmoid_backward)'),
        md(ANSWER),
        code(SIGMOID.replace("sigmoid", "gd_step")),
        code(SIGMOID.replace("sigmoid", "gd_helper")),
        code('check(\n    "03.gd_step",\n    gd_step,\n)'),
        stale,
    )


def test_stamp_marks_solution_answer_and_test_cells():
    stamped = make_exercises.stamp_solution(_course_notebook(), POINTS)
    meta = [c.metadata.get("nbgrader") for c in stamped.cells]
    base = {"schema_version": 3, "locked": False}
    assert meta[0] is None and meta[1] is None and meta[8] is None  # stale metadata removed
    assert meta[2] == base | {"grade": False, "solution": True, "grade_id": "03_sigmoid_solution"}
    assert meta[3] == base | {
        "grade": True,
        "solution": False,
        "locked": True,
        "grade_id": "03_sigmoid",
        "points": 2,
    }
    assert meta[4] == base | {
        "grade": True,
        "solution": True,
        "grade_id": "03_gd_step_answer",
        "points": 0,
    }
    assert meta[5]["grade_id"] == "03_gd_step_solution"
    assert meta[6]["grade_id"] == "03_gd_step_solution_2"  # unique within the notebook
    assert meta[7]["points"] == 3 and meta[7]["grade_id"] == "03_gd_step"
    # Only metadata changes, and stamping twice changes nothing more.
    original = _course_notebook()
    assert [c.source for c in stamped.cells] == [c.source for c in original.cells]
    again = make_exercises.stamp_solution(stamped, POINTS)
    assert nbformat.writes(again) == nbformat.writes(stamped)


def test_solution_after_the_last_check_takes_the_previous_item():
    nb = _notebook(
        nbformat.v4.new_code_cell('check("03.sigmoid", f, g)'),
        nbformat.v4.new_code_cell(SIGMOID),
    )
    meta = make_exercises.nbgrader_cell_metadata(nb, POINTS)
    assert meta[2]["grade_id"] == "03_sigmoid_solution"


def test_exercise_carries_nbgrader_release_metadata():
    stamped = make_exercises.stamp_solution(_course_notebook(), POINTS)
    exercise = make_exercises.exercise_from_solution(stamped, "exercises/03_x.ipynb")
    solution, test, answer = exercise.cells[2], exercise.cells[3], exercise.cells[4]
    assert "NotImplementedError" in solution.source
    assert solution.metadata["deletable"] is False and "editable" not in solution.metadata
    assert test.metadata["deletable"] is False and test.metadata["editable"] is False
    assert answer.source == "Derive it:\n\n*Your answer here.*"
    for cell in (solution, test, answer):
        meta = cell.metadata["nbgrader"]
        assert meta["cell_type"] == cell.cell_type
        assert meta["checksum"] == make_exercises.nbgrader_checksum(cell)
    assert "nbgrader" not in exercise.cells[1].metadata
    assert "deletable" not in exercise.cells[1].metadata


def test_checksum_is_nbgraders():
    # Values from nbgrader 0.9.6's nbgrader.utils.compute_checksum on the same cells
    # (tests/nbgrader compares every checksum of a real release).
    cell = nbformat.v4.new_code_cell(
        'result = check("03.sigmoid", sigmoid_forward, sigmoid_backward)'
    )
    cell.metadata["nbgrader"] = {
        "grade": True,
        "solution": False,
        "locked": True,
        "grade_id": "03_sigmoid",
        "points": 2,
        "schema_version": 3,
    }
    assert make_exercises.nbgrader_checksum(cell) == "5f67589ea74e3931cae262e7e3e24411"
    md = nbformat.v4.new_markdown_cell("Derive it:\n\n*Your answer here.*")
    md.metadata["nbgrader"] = {
        "grade": True,
        "solution": True,
        "locked": False,
        "grade_id": "03_gd_step_answer",
        "points": 0,
        "schema_version": 3,
    }
    assert make_exercises.nbgrader_checksum(md) == "8e7866033d0b434e168c4683833996b3"


@pytest.mark.parametrize(
    "source, message",
    [
        ('check("03.sigmoid", f, g)\ncheck("03.gd_step", h)', "one item per cell"),
        ('check("03.nope", f)', "not a graded item"),
        ("name = '03.sigmoid'\ncheck(name, f, g)", "string literal"),
        ('%time check("03.sigmoid", f, g)', "magic"),
        (SIGMOID + '\ncheck("03.sigmoid", sigmoid_forward, g)', "split it"),
    ],
)
def test_check_cells_that_cannot_be_mapped_to_one_item_are_refused(source, message):
    nb = _notebook(nbformat.v4.new_code_cell(source))
    with pytest.raises(ValueError, match=message):
        make_exercises.nbgrader_cell_metadata(nb, POINTS)


def test_an_item_checked_twice_is_refused():
    cell = 'check("03.sigmoid", f, g)'
    nb = _notebook(nbformat.v4.new_code_cell(cell), nbformat.v4.new_code_cell(cell))
    with pytest.raises(ValueError, match="two cells"):
        make_exercises.nbgrader_cell_metadata(nb, POINTS)


def test_generate_stamps_solutions_in_place_once(tmp_path):
    (tmp_path / "solutions").mkdir()
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    path = tmp_path / "solutions" / "03_x.ipynb"
    nbformat.write(_course_notebook(), path)
    before = nbformat.read(path, as_version=4)
    checked = make_exercises.generate(tmp_path, check=True, points=POINTS)
    assert checked["unstamped"] == [path] and checked["stamped"] == []
    assert nbformat.read(path, as_version=4) == before  # --check writes nothing
    report = make_exercises.generate(tmp_path, points=POINTS)
    assert report["stamped"] == [path] and report["written"] == [tmp_path / "exercises" / path.name]
    after = nbformat.read(path, as_version=4)
    assert after.cells[3].metadata["nbgrader"]["grade_id"] == "03_sigmoid"
    assert [c.source for c in after.cells] == [c.source for c in before.cells]
    again = make_exercises.generate(tmp_path, check=True, points=POINTS)
    assert not any(again.values()), again


# ----------------------------------------------------------------------------- generated cells
def _lesson_07_notebook(table_note: str = "") -> nbformat.NotebookNode:
    code, md = nbformat.v4.new_code_cell, nbformat.v4.new_markdown_cell
    header = "Two items:\n\n| item | you write |\n|---|---|\n| `07.old` | gone |\n\nHow it works"
    dropout = (
        "def dropout_forward(x, p, g):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION"
    )
    return _notebook(
        md(header + table_note),
        code(dropout),
        code('result_dropout = check("07.dropout", dropout_forward, dropout_backward)'),
        code(dropout.replace("dropout_forward(x, p, g)", "l2_grad(w, lam)")),
        code('result_l2 = check("07.l2_grad", l2_grad)'),
        md("## Your score"),
        code('results = {"07.old": result_old}\nprint(f"{item:<12} {x}")'),
    )  # fmt: skip


def test_item_table_and_score_cell_come_from_items():
    from coursekit.grading import items

    nb = make_exercises.stamp_solution(_lesson_07_notebook(), lesson="07")
    assert nb.metadata["coursekit"] == {"lesson": "07"}
    table = nb.cells[1].source
    assert table.startswith("Two items:\n\n| item | you write | points |\n|---|---|---|\n")
    assert table.endswith("\n\nHow it works") and "07.old" not in table
    for name, it in items("07").items():
        assert f"| `{name}` | {it.description.replace('*', chr(92) + '*')} | {it.points} |" in table
    score = nb.cells[7].source
    assert '"07.dropout": result_dropout,\n    "07.l2_grad": result_l2,\n}' in score
    assert "{item:<12}" in score  # the author's width is kept while the names fit
    assert make_exercises.stamp_solution(nb, lesson="07").cells == nb.cells  # stable


def test_score_cell_columns_line_up():
    class Result:
        def __init__(self, passed, points, max_points):
            self.passed, self.points, self.max_points = passed, points, max_points

    source = make_exercises.score_cell_source([("07.dropout", "a"), ("07.l2_grad", "b")], 12)
    lines: list[str] = []
    namespace = {"a": Result(True, 3, 3), "b": Result(False, 0, 1), "print": lines.append}
    exec(source, namespace)
    assert lines[:2] == ["07.dropout   pass  3 / 3", "07.l2_grad   todo  0 / 1"]
    assert lines[2] == "total        3 / 4 points"


def test_a_score_cell_without_the_result_of_an_item_is_refused():
    nb = _lesson_07_notebook()
    nb.cells[5].source = 'check("07.l2_grad", l2_grad)'
    with pytest.raises(ValueError, match="07.l2_grad"):
        make_exercises.stamp_solution(nb, lesson="07")


# ----------------------------------------------------------------------------- overwriting
def _course(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "solutions").mkdir()
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    solution = tmp_path / "solutions" / "07_x.ipynb"
    nbformat.write(_lesson_07_notebook(), solution)
    make_exercises.generate(tmp_path)
    return solution, tmp_path / "exercises" / "07_x.ipynb"


def test_exercise_records_its_lesson_and_a_hash_of_what_was_written(tmp_path):
    _, exercise = _course(tmp_path)
    nb = nbformat.read(exercise, as_version=4)
    meta = nb.metadata["coursekit"]
    assert meta["lesson"] == "07" and meta["generated"] == make_exercises.content_hash(nb)
    assert make_exercises.untouched(exercise.read_text())


def test_an_untouched_exercise_follows_its_solution_without_force(tmp_path):
    solution, exercise = _course(tmp_path)
    text = solution.read_text().replace("How it works", "How it all works")
    solution.write_text(text)
    assert make_exercises.generate(tmp_path, check=True)["stale"] == [exercise]
    report = make_exercises.generate(tmp_path)
    assert report["written"] == [exercise] and report["skipped"] == []
    assert "How it all works" in exercise.read_text()
    # what Jupyter changes without an edit (outputs, metadata, layout) does not count
    nb = nbformat.read(exercise, as_version=4)
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="ran\n")]
    nb.metadata["widgets"] = {}
    nbformat.write(nb, exercise)
    assert make_exercises.untouched(exercise.read_text())
    assert make_exercises.generate(tmp_path)["written"] == [exercise]


def test_an_edited_exercise_is_kept_unless_forced(tmp_path):
    solution, exercise = _course(tmp_path)
    nb = nbformat.read(exercise, as_version=4)
    nb.cells[2].source = nb.cells[2].source.replace("# YOUR CODE HERE", "return x  # mine")
    nbformat.write(nb, exercise)
    solution.write_text(solution.read_text().replace("How it works", "How it all works"))
    report = make_exercises.generate(tmp_path)
    assert report["skipped"] == [exercise] and "# mine" in exercise.read_text()
    report = make_exercises.generate(tmp_path, force=True)
    assert report["written"] == [exercise] and "# mine" not in exercise.read_text()


def test_lessons_limits_the_work(tmp_path):
    solution, exercise = _course(tmp_path)
    solution.write_text(solution.read_text().replace("How it works", "How it all works"))
    assert make_exercises.generate(tmp_path, lessons=["03"]) == {
        "stale": [], "written": [], "skipped": [], "unstamped": [], "stamped": []
    }  # fmt: skip
    assert make_exercises.generate(tmp_path, lessons=["07"])["written"] == [exercise]
