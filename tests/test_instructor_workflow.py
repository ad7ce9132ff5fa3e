"""The instructor's path from publishing to gradebook, end to end on a copy of the course:
change the address, add a graded item, regenerate the exercises, bulk-grade LMS-named
submissions (one with a hanging cell, one empty), read the gradebook and the feedback."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from coursekit.grading import check, item
from coursekit.grading import registry as registry_module

ROOT = Path(__file__).resolve().parents[1]
NEW_ITEM = """

@item(
    "00.cube_grad",
    points=2,
    description="the gradient of sum(x**3) with respect to x",
    signature="fn(x) -> tensor of x's shape",
    covers="a vector and a matrix",
)
def cube_grad(ctx: GradingContext, fn) -> None:
    for shape in [(4,), (2, 3)]:
        x = ctx.randn(*shape)
        with ctx.case(f"x of shape {tuple(x.shape)}"):
            (expected,) = autograd_grads(lambda t: (t**3).sum(), [x])
            got = ctx.call(fn, x, names=("x",))
            ctx.compare(got, expected, ("the gradient",), shape_of={"the gradient": "x"})
"""
SOLUTION = """def cube_grad(x):
    ### BEGIN SOLUTION
    return 3 * x**2
    ### END SOLUTION"""
TEST_FUNCTIONS = """def cube_grad(x):
    return 3 * x**2


def cube_grad_wrong_sign(x):
    return -3 * x**2


"""


def _run(
    args: list[str], cwd: Path, timeout: float = 120, returncode: int = 0
) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(cwd), "OMP_NUM_THREADS": "1"}
    run = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert run.returncode == returncode, run.stdout[-3000:] + run.stderr[-3000:]
    return run


def _course(tmp: Path) -> Path:
    """A copy of the course with lesson 00 only (small and quick)."""
    root = tmp / "course"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "coursekit", root / "coursekit", ignore=ignore)
    shutil.copytree(ROOT / "tools", root / "tools", ignore=ignore)
    for rel in (
        "tests/_item_suite.py",
        "tests/test_grading_items.py",
        "tests/grading_fixtures/__init__.py",
        "tests/grading_fixtures/lesson_00.py",
    ):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / rel, root / rel)
    for rel in ("pyproject.toml", "README.md"):
        shutil.copyfile(ROOT / rel, root / rel)
    for folder in ("solutions", "exercises"):
        (root / folder).mkdir()
        shutil.copyfile(ROOT / folder / "00_warmup.ipynb", root / folder / "00_warmup.ipynb")
    return root


def _answer(nb: nbformat.NotebookNode, function: str, body: str) -> None:
    """Fill in a stub the way a student does."""
    for cell in nb.cells:
        if cell.cell_type == "code" and f'raise NotImplementedError("{function}:' in cell.source:
            head = cell.source.split("\n")[0]
            cell.source = f"{head}\n    return {body}"
            return
    raise AssertionError(f"no stub for {function}")


def _check_cell(nb: nbformat.NotebookNode, item_name: str) -> int:
    return next(i for i, c in enumerate(nb.cells) if f'check("{item_name}"' in c.source)


@pytest.mark.slow
def test_publish_add_an_item_regenerate_and_bulk_grade(tmp_path):
    root = _course(tmp_path)

    # 1. Publish under another address.
    pyproject = root / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace(
            'repository = "https://github.com/backprop-from-scratch/course"',
            'repository = "https://github.com/uni-example/ml-module"',
        )
    )
    _run([sys.executable, "tools/colab.py"], root)
    assert "github/uni-example/ml-module/blob/main/notebooks/00_setup.ipynb" in (
        (root / "README.md").read_text()
    )
    assert 'Homepage = "https://github.com/uni-example/ml-module"' in pyproject.read_text()

    # 2. Add an item: its code, its solution cells and one test entry.
    items_00 = root / "coursekit" / "grading" / "items_00.py"
    items_00.write_text(items_00.read_text() + NEW_ITEM)
    solution_path = root / "solutions" / "00_warmup.ipynb"
    solution = nbformat.read(solution_path, as_version=4)
    at = _check_cell(solution, "00.sum_of_squares_grad") + 1
    solution.cells[at:at] = [
        new_code_cell(SOLUTION),
        new_code_cell('result_cube = check("00.cube_grad", cube_grad)'),
    ]
    nbformat.write(solution, solution_path)
    # Without its test entry, the item's tests fail and say where the entry goes.
    item_tests = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
    item_tests += ["tests/test_grading_items.py", "-k", "00.cube_grad"]
    run = _run(item_tests, root, returncode=1)
    assert "FAILED tests/test_grading_items.py::test_item_has_a_test_entry[00.cube_grad]" in (
        run.stdout
    )
    assert "00.cube_grad has no test entry" in run.stdout
    assert "tests/grading_fixtures/lesson_00.py" in run.stdout
    fixture = root / "tests" / "grading_fixtures" / "lesson_00.py"
    text = fixture.read_text()
    text = text.replace(
        "SOLUTIONS = {", TEST_FUNCTIONS + 'SOLUTIONS = {\n    "00.cube_grad": [cube_grad],'
    )
    text = text.replace(
        "MISTAKES = [", 'MISTAKES = [\n    ("00.cube_grad", cube_grad_wrong_sign, "wrong sign"),'
    )
    fixture.write_text(text)
    run = _run(item_tests, root)
    assert "6 passed" in run.stdout, run.stdout  # entry, listed, marks, seeds, mistake, stub

    # 3. Regenerate: the untouched exercise is updated without --force.
    run = _run([sys.executable, "tools/make_exercises.py", "--lesson", "00"], root)
    assert "wrote exercises/00_warmup.ipynb" in run.stdout
    exercise = nbformat.read(root / "exercises" / "00_warmup.ipynb", as_version=4)
    assert exercise.metadata["coursekit"]["lesson"] == "00"
    assert "uni-example/ml-module/blob/main/exercises/00_warmup.ipynb" in exercise.cells[0].source
    assert any('raise NotImplementedError("cube_grad:' in c.source for c in exercise.cells)
    assert "3 * x**2" not in nbformat.writes(exercise)

    # 4. Submissions as a learning platform names them.
    subs = tmp_path / "downloads"
    subs.mkdir()
    alice = nbformat.reads(nbformat.writes(exercise), as_version=4)
    _answer(alice, "sum_of_squares_grad", "2 * x")
    _answer(alice, "cube_grad", "3 * x**2")
    alice.cells.insert(_check_cell(alice, "00.cube_grad"), new_code_cell("while True:\n    pass"))
    nbformat.write(alice, subs / "smithalice_1001_55555_00_warmup.ipynb")
    nbformat.write(new_notebook(), subs / "jonesbob_1002_55555_00_warmup.ipynb")
    carol = nbformat.reads(nbformat.writes(exercise), as_version=4)
    _answer(carol, "sum_of_squares_grad", "2 * x")
    del carol.cells[_check_cell(carol, "00.cube_grad")]  # a failing check, deleted
    nbformat.write(carol, subs / "leecarol_1003_55555_assignment.ipynb")

    # 5. Bulk grading, as `make grade ARGS=...` runs it.
    out = tmp_path / "out"
    run = _run(
        [sys.executable, "-m", "coursekit.grading", str(subs), "--cell-timeout", "3",
         "--timeout", "60", "--jobs", "2", "--quiet", "--csv", str(out / "grades.csv"),
         "--feedback", str(out / "feedback"), "--id-pattern", r"/([a-z]+)_\d{4}_"],
        root, timeout=300,
    )  # fmt: skip
    rows = {r["student"]: r for r in csv.DictReader((out / "grades.csv").open())}
    assert set(rows) == {"smithalice", "jonesbob", "leecarol"}
    header = next(csv.reader((out / "grades.csv").open()))
    assert header.index("00.sum_of_squares_grad") < header.index("00.cube_grad")

    a = rows["smithalice"]
    assert (a["lesson"], a["lesson from"], a["total"], a["max_total"]) == (
        "00",
        "notebook metadata",
        "3",
        "3",
    )
    assert a["00.cube_grad status"] == "passed"
    assert (
        a["reason"].startswith("code cell ") and "interrupted at the cell time limit" in a["reason"]
    )
    assert "`while True:`" in a["reason"]

    b = rows["jonesbob"]
    assert (b["lesson"], b["lesson from"], b["total"]) == ("00", "file name", "0")
    assert b["reason"] != "ok" and "empty submission" in b["reason"]
    assert b["00.cube_grad status"] == "not run"

    c = rows["leecarol"]
    assert (c["lesson"], c["total"], c["max_total"]) == ("00", "1", "3")  # not 1/1
    assert c["00.cube_grad status"] == "not run" and "check not run: 00.cube_grad" in c["reason"]

    feedback = sorted(p.name for p in (out / "feedback").iterdir())
    assert feedback == [
        "jonesbob_00.txt",
        "leecarol_00.txt",
        "smithalice_00.txt",
    ]
    text = (out / "feedback" / "smithalice_00.txt").read_text()
    assert "Score: 3 / 3" in text and "== 00.cube_grad: 2 / 2 (passed)" in text
    assert "coursekit-grading-" not in (out / "grades.csv").read_text()  # no temporary paths


def test_an_item_defined_in_a_notebook_is_refused_by_check_with_a_reason():
    def notebook_item(ctx, fn):  # as if written in a notebook cell
        ctx.compare(ctx.call(fn, 1.0, names=("x",)), 1.0, ("out",))

    notebook_item.__module__ = "__main__"
    item("99.in_notebook", points=1, description="", signature="", covers="")(notebook_item)
    try:
        result = check("99.in_notebook", lambda x: x)
        assert not result.passed and result.points == 0 and result.status == "invalid call"
        assert "defined in the notebook" in result.feedback
        assert "coursekit/grading/items_NN.py" in result.feedback
    finally:
        registry_module._ITEMS.pop("99.in_notebook", None)


def test_readme_shows_the_instructor_path_in_one_screen():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## For instructors", 1)[1].split("\n## ", 1)[0]
    quick = section.split("```", 2)[1]
    steps = ["make badges", "make exercises", "make grade", "--csv", "--feedback"]
    for step in steps:
        assert step in quick, step
    assert len(quick.strip().splitlines()) <= 20
    assert ".venv/bin/python" in section and "docs/authoring_items.md" in section
    text = textwrap.dedent(section)
    assert "public" in text and "private" in text.lower()
