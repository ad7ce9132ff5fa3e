"""nbgrader takes solutions/ as they are: in a throwaway virtual environment with nbgrader
0.9 from the package registry, with the settings of tools/nbgrader_config.py,

1. ``nbgrader generate_assignment`` (its ClearSolutions, LockCells, ComputeChecksums) on the
   solution notebooks gives the committed exercises, apart from the documented differences
   (the stub's message and the Colab badge);
2. ``nbgrader autograde`` scores a solved and an unsolved (the exercise as given) submission
   with full and zero points, cell by cell the same points as coursekit's bulk grading.

The kernels nbgrader starts run in this test's own environment (a "python3" kernelspec that
points at it), the one coursekit's bulk grading uses; nbgrader's ~100 packages stay in the
throwaway environment. Skipped only when nbgrader cannot be installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tools import colab, make_exercises

ROOT = Path(__file__).resolve().parents[2]
NBGRADER_SPEC = "nbgrader>=0.9,<0.10"
ASSIGNMENT = "backprop"
# Autograded in both forms: five items, forward/backward pairs and a written answer.
AUTOGRADED = "03_single_neuron.ipynb"
STUB_RE = re.compile(r'^(\s*)raise NotImplementedError\("\w+: write your code here"\)$', re.M)
pytestmark = [pytest.mark.nbgrader, pytest.mark.timeout(900)]


def run(cmd, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert result.returncode == 0, (
        f"{cmd} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> dict:
    """A venv with nbgrader and a course directory whose assignment is solutions/,
    already generated (release/) with nbgrader."""
    base = tmp_path_factory.mktemp("nbgrader")
    venv = base / "venv"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    run([sys.executable, "-m", "venv", str(venv)], env=env)
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-compile"]
        + [NBGRADER_SPEC],
        capture_output=True,
        text=True,
        env=env,
    )
    if install.returncode != 0:
        pytest.skip(f"nbgrader could not be installed with pip: {install.stderr[-1500:]}")

    # Kernels: this environment's Python (coursekit, torch), one torch thread each.
    kernel = base / "jupyter" / "kernels" / "python3"
    kernel.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3",
        "language": "python",
        "env": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    }
    (kernel / "kernel.json").write_text(json.dumps(spec))
    env |= {
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",  # nbgrader runs alembic
        "JUPYTER_PATH": str(base / "jupyter"),
        "JUPYTER_CONFIG_DIR": str(base / "config"),  # no user settings
        "JUPYTER_DATA_DIR": str(base / "data"),
    }

    root = base / "course"
    source = root / "source" / ASSIGNMENT
    source.mkdir(parents=True)
    for sol in sorted((ROOT / "solutions").glob("*.ipynb")):
        shutil.copy(sol, source / sol.name)
    shutil.copy(ROOT / "tools" / "nbgrader_config.py", root / "nbgrader_config.py")
    run(["nbgrader", "generate_assignment", ASSIGNMENT], cwd=root, env=env)
    return {"root": root, "env": env, "python": venv / "bin" / "python"}


def _as_released(exercise: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """The committed exercise with the documented differences from nbgrader's release
    undone: nbgrader's plain stub, the solution's Colab badge, and the generator's hash."""
    nb = nbformat.reads(nbformat.writes(exercise), as_version=4)
    nb.metadata["coursekit"].pop("generated")
    settings = colab.course_settings(ROOT / "pyproject.toml")
    first = nb.cells[0]
    first.source = first.source.replace(
        colab.badge_markdown(f"exercises/{name}", settings),
        colab.badge_markdown(f"solutions/{name}", settings),
    )
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader")
        if cell.cell_type == "code" and meta and meta["solution"]:
            cell.source = STUB_RE.sub(r"\1raise NotImplementedError()", cell.source)
            meta["checksum"] = make_exercises.nbgrader_checksum(cell)
    return nb


def test_generate_assignment_gives_the_exercises(course):
    released = sorted((course["root"] / "release" / ASSIGNMENT).glob("*.ipynb"))
    solutions = sorted((ROOT / "solutions").glob("*.ipynb"))
    assert [p.name for p in released] == [p.name for p in solutions]
    for path in released:
        release = nbformat.read(path, as_version=4)
        exercise = nbformat.read(ROOT / "exercises" / path.name, as_version=4)
        expected = _as_released(exercise, path.name)
        assert release.metadata == expected.metadata, path.name
        assert len(release.cells) == len(expected.cells), path.name
        for index, (got, want) in enumerate(zip(release.cells, expected.cells, strict=True)):
            where = f"{path.name} cell {index}"
            assert got.get("id") == want.get("id"), where
            assert got.cell_type == want.cell_type, where
            assert got.source == want.source, where
            assert got.metadata == want.metadata, where
            if got.cell_type == "code":
                assert got.outputs == want.outputs == [], where
                assert got.execution_count is want.execution_count is None, where


GRADES = """
import json, sys
from nbgrader.api import Gradebook
assignment, notebook, *students = sys.argv[1:]
out = {}
with Gradebook("sqlite:///gradebook.db") as gb:
    for student in students:
        nb = gb.find_submission_notebook(notebook, assignment, student)
        out[student] = {
            "score": nb.score,
            "max_score": nb.max_score,
            "cells": {g.name: [g.score, g.max_score] for g in nb.grades},
        }
print(json.dumps(out))
"""


def test_autograde_agrees_with_bulk_grading(course, tmp_path):
    root, env = course["root"], course["env"]
    stem = AUTOGRADED.removesuffix(".ipynb")
    submissions = {
        "solved": ROOT / "solutions" / AUTOGRADED,
        "empty": ROOT / "exercises" / AUTOGRADED,
    }
    copies = []
    for student, notebook in submissions.items():
        folder = root / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        shutil.copy(notebook, folder / AUTOGRADED)
        copies.append(tmp_path / student / AUTOGRADED)
        copies[-1].parent.mkdir()
        shutil.copy(notebook, copies[-1])

    # coursekit's bulk grading of the same two notebooks, alongside nbgrader's autograde.
    report = tmp_path / "grades.json"
    bulk_run = subprocess.Popen(
        [sys.executable, "-m", "coursekit.grading", *map(str, copies), "--json", str(report)]
        + ["--jobs", "1", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        run(["nbgrader", "autograde", ASSIGNMENT], cwd=root, env=env)
    finally:
        bulk_log, _ = bulk_run.communicate(timeout=600)
    assert bulk_run.returncode == 0, bulk_log[-3000:]
    out = run([str(course["python"]), "-c", GRADES, ASSIGNMENT, stem, *submissions], cwd=root)
    nbgrader = json.loads(out.stdout)
    bulk = {Path(s["name"]).parent.name: s for s in json.loads(report.read_text())["submissions"]}

    # Which test cell grades which item, from the solution's own metadata.
    source = nbformat.read(submissions["solved"], as_version=4)
    test_cells = {
        cell.metadata.nbgrader["grade_id"]: make_exercises.checked_items(cell.source)[0]
        for cell in source.cells
        if cell.metadata.get("nbgrader", {}).get("grade") and cell.cell_type == "code"
    }
    assert len(test_cells) >= 2, test_cells
    for student in submissions:
        ours, theirs = bulk[student], nbgrader[student]
        for grade_id, item in test_cells.items():
            score, max_score = theirs["cells"][grade_id]
            assert score == ours["items"][item]["points"], (student, item, theirs, ours)
            assert max_score == ours["items"][item]["max_points"], (student, item)
        assert theirs["score"] == ours["total"], (student, theirs, ours)
        assert theirs["max_score"] == ours["max_total"], (
            f"{student}: the items nbgrader grades differ from the lesson's items "
            f"({sorted(test_cells.values())} vs {sorted(ours['items'])})"
        )
    assert nbgrader["solved"]["score"] == nbgrader["solved"]["max_score"] > 0
    assert nbgrader["empty"]["score"] == 0

    # The unsolved notebook scores zero because check() raises in strict mode (the setting
    # in nbgrader_config.py), not because of some other error.
    graded = nbformat.read(root / "autograded" / "empty" / ASSIGNMENT / AUTOGRADED, as_version=4)
    for cell in graded.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") in test_cells:
            errors = [o.ename for o in cell.outputs if o.output_type == "error"]
            assert errors == ["AssertionError"], (cell.metadata.nbgrader["grade_id"], errors)
