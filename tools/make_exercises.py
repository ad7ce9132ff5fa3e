"""Generate the student notebooks in exercises/ from the graded ones in solutions/.

In a solution notebook, the instructor's code sits between nbgrader's markers::

    def relu_backward(dout, cache):
        ### BEGIN SOLUTION
        x = cache
        return dout * (x > 0)
        ### END SOLUTION

Everything from ``### BEGIN SOLUTION`` to ``### END SOLUTION`` becomes a stub
at the same indentation::

        # YOUR CODE HERE
        raise NotImplementedError("relu_backward: write your code here")

Markdown cells may hide a worked answer the same way (the block becomes
"*Your answer here.*").  All outputs are cleared, so no output computed by the
solution is left behind, and the badge points at the exercise's own path.

nbgrader's cell metadata
------------------------
The generator also stamps every solution notebook with the cell metadata nbgrader
(schema version 3) needs, so ``solutions/`` is a ready nbgrader source assignment;
it owns the ``nbgrader`` key of every cell and rewrites nothing else:

* a code cell with a solution block: an autograded answer
  (``solution``, ``grade_id`` ``<item>_solution``);
* a markdown cell with a worked answer: a manually graded answer worth 0 points
  (nbgrader allows no ungraded markdown solution cell; coursekit does not grade them);
* a code cell that calls ``check("<item>", ...)``: an autograder test cell, locked,
  worth the item's points from ``coursekit.grading.items()`` (``grade_id`` ``<item>``
  with the dot as ``_``, e.g. ``04_linear_backward``);
* any other cell: no nbgrader metadata.

A solution cell takes the item of the next check() cell (else the previous one).
check() must be called with the item's name as a string literal, one item per cell
and one cell per item, so that one cell scores exactly one item.

The exercises carry the metadata nbgrader's ``generate_assignment`` gives its release
version: the same cell metadata plus each cell's checksum, the cells made undeletable
and the test cells read-only. An exercise then equals nbgrader's release (with the
settings in tools/nbgrader_config.py) apart from the stub's message (nbgrader's
``raise NotImplementedError()`` names no function, so the checksums of code solution
cells differ too) and the Colab badge (nbgrader keeps the solution's link).

A file in exercises/ that differs from what would be generated (a student's
work, or a stale copy) is never overwritten unless ``--force`` is given; solution
notebooks are always re-stamped (metadata only). ``--check`` only reports which
notebooks are out of date (exit code 1 if any).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import re
import sys
from collections.abc import Mapping
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tools import colab  # noqa: E402

ROOT = colab.ROOT
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
_DEF_RE = re.compile(r"^\s*def\s+(\w+)\s*\(")
NBGRADER_SCHEMA = 3
_MAGIC_CHECK_RE = re.compile(r"^\s*[%!].*(?<![\w.])check\s*\(", re.M)


# ----------------------------------------------------------------------------- nbgrader metadata


def checked_items(source: str) -> list[str]:
    """The item names a code cell passes to ``check()``, in order.

    Raises ValueError for a call that names its item other than by a string literal
    (or hides it in a magic), since such a cell cannot be matched to its points.
    """
    from IPython.core.inputtransformer2 import TransformerManager

    if _MAGIC_CHECK_RE.search(source):
        raise ValueError(f"check() inside an IPython magic or shell line:\n{source}")
    tree = ast.parse(TransformerManager().transform_cell(source))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id != "check":
                continue
            first = node.args[0] if node.args else None
            if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                raise ValueError(f"check() needs the item's name as a string literal:\n{source}")
            names.append((node.lineno, node.col_offset, first.value))
    return [name for *_, name in sorted(names)]


def _grade_id(item: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", item)


def _course_points() -> dict[str, int]:
    from coursekit.grading import items

    return {name: it.points for name, it in items().items()}


def nbgrader_cell_metadata(
    nb: nbformat.NotebookNode, points: Mapping[str, int] | None = None
) -> list[dict | None]:
    """For each cell of a solution notebook, its ``nbgrader`` metadata (None: none).

    ``points`` maps item names to points (default: ``coursekit.grading.items()``).
    """
    points = _course_points() if points is None else points
    tests: dict[int, str] = {}
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        names = checked_items(cell.source)
        if len(names) > 1:
            raise ValueError(f"cell {index} checks {names}: one item per cell")
        if names and BEGIN in cell.source:
            raise ValueError(f"cell {index} holds a solution and checks {names[0]}: split it")
        if names:
            if names[0] not in points:
                raise ValueError(f"cell {index} checks {names[0]!r}, which is not a graded item")
            if names[0] in tests.values():
                raise ValueError(f"{names[0]} is checked in two cells; keep one")
            tests[index] = names[0]

    result: list[dict | None] = []
    used: set[str] = set()
    for index, cell in enumerate(nb.cells):
        base = {"schema_version": NBGRADER_SCHEMA, "locked": False}
        if index in tests:
            item = tests[index]
            meta = base | {"grade": True, "solution": False, "locked": True}
            meta |= {"grade_id": _grade_id(item), "points": points[item]}
        elif BEGIN in cell.source and cell.cell_type in ("code", "markdown"):
            after = [tests[i] for i in sorted(tests) if i > index]
            before = [tests[i] for i in sorted(tests) if i < index]
            owner = (after or before[-1:] or [f"cell_{cell.get('id', index)}"])[0]
            kind = "solution" if cell.cell_type == "code" else "answer"
            meta = base | {"grade": cell.cell_type == "markdown", "solution": True}
            meta["grade_id"] = f"{_grade_id(owner)}_{kind}"
            if cell.cell_type == "markdown":
                meta["points"] = 0
        else:
            result.append(None)
            continue
        grade_id, n = meta["grade_id"], 1
        while meta["grade_id"] in used:
            n += 1
            meta["grade_id"] = f"{grade_id}_{n}"
        used.add(meta["grade_id"])
        result.append(meta)
    return result


def stamp_solution(
    solution: nbformat.NotebookNode, points: Mapping[str, int] | None = None
) -> nbformat.NotebookNode:
    """The solution notebook (a new object) with nbgrader's metadata on every cell."""
    nb = nbformat.reads(nbformat.writes(solution), as_version=4)
    for cell, meta in zip(nb.cells, nbgrader_cell_metadata(nb, points), strict=True):
        if meta is None:
            cell.metadata.pop("nbgrader", None)
        else:
            cell.metadata["nbgrader"] = meta
    return nb


def nbgrader_checksum(cell: nbformat.NotebookNode) -> str:
    """nbgrader's checksum of a cell (``nbgrader.utils.compute_checksum``).

    nbgrader stores it in the student's version; at autograding, a solution cell whose
    checksum still matches is an unanswered one.
    """
    meta = cell.metadata["nbgrader"]
    grade, solution = bool(meta.get("grade")), bool(meta.get("solution"))
    locked = not solution and (grade or bool(meta.get("locked")))
    parts = [cell.source, cell.cell_type, str(grade), str(solution), str(locked)]
    parts.append(meta["grade_id"])
    if grade:
        parts.append(str(float(meta["points"])))
    return hashlib.md5("".join(parts).encode("utf-8")).hexdigest()


def _release_metadata(cell: nbformat.NotebookNode) -> None:
    """The metadata nbgrader's generate_assignment gives a cell in the student's version:
    locks as its LockCells sets them by default, and ComputeChecksums' checksum."""
    meta = cell.metadata.get("nbgrader")
    if not meta:
        return
    if meta["solution"]:
        cell.metadata["deletable"] = False
    elif meta["grade"] or meta["locked"]:
        cell.metadata["deletable"] = False
        cell.metadata["editable"] = False
    meta["checksum"] = nbgrader_checksum(cell)
    meta["cell_type"] = cell.cell_type


def _stub_code(source: str) -> str:
    lines, out, inside, indent, name = source.split("\n"), [], False, "", "this function"
    for line in lines:
        stripped = line.strip()
        if not inside:
            match = _DEF_RE.match(line)
            if match:
                name = match.group(1)
            if stripped == BEGIN:
                inside, indent = True, line[: len(line) - len(line.lstrip())]
                out.append(f"{indent}# YOUR CODE HERE")
                out.append(f'{indent}raise NotImplementedError("{name}: write your code here")')
                continue
            out.append(line)
        elif stripped == END:
            inside = False
    if inside:
        raise ValueError(f"a {BEGIN!r} block has no {END!r}")
    return "\n".join(out)


def _stub_markdown(source: str) -> str:
    pattern = re.compile(
        rf"^[ \t]*{re.escape(BEGIN)}.*?^[ \t]*{re.escape(END)}[ \t]*$", re.M | re.S
    )
    return pattern.sub("*Your answer here.*", source)


def exercise_from_solution(
    solution: nbformat.NotebookNode, exercise_rel: str, settings: dict[str, str] | None = None
):
    """The exercise notebook (a new object) for a solution notebook."""
    nb = nbformat.reads(nbformat.writes(solution), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            if BEGIN in cell.source:
                cell.source = _stub_code(cell.source)
            cell.outputs = []
            cell.execution_count = None
            cell.metadata.pop("execution", None)
        elif cell.cell_type == "markdown" and BEGIN in cell.source:
            cell.source = _stub_markdown(cell.source)
        _release_metadata(cell)
    settings = settings or colab.course_settings()
    first = nb.cells[0]
    first.source = colab.BADGE_RE.sub(
        lambda _: colab.badge_markdown(exercise_rel, settings), first.source, count=1
    )
    return nb


def _solution_paths(root: Path) -> list[Path]:
    return sorted((root / "solutions").glob("*.ipynb"))


def expected_solutions(
    root: Path = ROOT, points: Mapping[str, int] | None = None
) -> dict[Path, str]:
    """Map each solution path to its text with nbgrader's metadata stamped."""
    points = _course_points() if points is None else points
    return {
        sol: nbformat.writes(stamp_solution(nbformat.read(sol, as_version=4), points)) + "\n"
        for sol in _solution_paths(root)
    }


def expected_exercises(
    root: Path = ROOT, points: Mapping[str, int] | None = None
) -> dict[Path, str]:
    """Map each exercise path to the text the generator would write there."""
    result = {}
    for sol, text in expected_solutions(root, points).items():
        target = root / "exercises" / sol.name
        rel = target.relative_to(root).as_posix()
        nb = exercise_from_solution(nbformat.reads(text, as_version=4), rel)
        result[target] = nbformat.writes(nb) + "\n"
    return result


def unchecked_items(root: Path = ROOT) -> dict[Path, list[str]]:
    """Graded items of a lesson that its solution notebook never checks."""
    from coursekit.grading import items

    missing = {}
    for sol in _solution_paths(root):
        nb = nbformat.read(sol, as_version=4)
        checked = {n for c in nb.cells if c.cell_type == "code" for n in checked_items(c.source)}
        lesson = sol.name[:2]
        absent = [name for name in items(lesson) if name not in checked]
        if absent:
            missing[sol] = absent
    return missing


def generate(
    root: Path = ROOT,
    force: bool = False,
    check: bool = False,
    points: Mapping[str, int] | None = None,
) -> dict[str, list]:
    """Stamp solutions/ with nbgrader's metadata and bring exercises/ up to date.

    Returns the paths that were stale, written and skipped (exercises), and the
    solutions that lacked (``unstamped``) and were given (``stamped``) the metadata.
    """
    points = _course_points() if points is None else points
    report: dict[str, list] = {
        "stale": [],
        "written": [],
        "skipped": [],
        "unstamped": [],
        "stamped": [],
    }
    for sol, text in expected_solutions(root, points).items():
        if sol.read_text() != text:
            report["unstamped"].append(sol)
            if not check:
                sol.write_text(text)
                report["stamped"].append(sol)
    for target, text in expected_exercises(root, points).items():
        current = target.read_text() if target.exists() else None
        if current == text:
            continue
        report["stale"].append(target)
        if check:
            continue
        if current is not None and not force:
            report["skipped"].append(target)
            continue
        target.parent.mkdir(exist_ok=True)
        target.write_text(text)
        report["written"].append(target)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--force", action="store_true", help="overwrite exercises that differ")
    parser.add_argument("--check", action="store_true", help="only report out-of-date notebooks")
    args = parser.parse_args(argv)
    report = generate(ROOT, force=args.force, check=args.check)
    for sol, names in unchecked_items(ROOT).items():
        print(f"note: {sol.relative_to(ROOT)} checks no cell for {', '.join(names)}")
    if args.check:
        for t in report["unstamped"]:
            rel = t.relative_to(ROOT)
            print(f"nbgrader metadata missing or stale: {rel} (run `make exercises`)")
        for t in report["stale"]:
            print(f"out of date: {t.relative_to(ROOT)} (run `make exercises ARGS=--force`)")
        return 1 if report["stale"] or report["unstamped"] else 0
    for t in report["stamped"]:
        print(f"stamped nbgrader metadata on {t.relative_to(ROOT)}")
    for t in report["written"]:
        print(f"wrote {t.relative_to(ROOT)}")
    for t in report["skipped"]:
        rel = t.relative_to(ROOT)
        print(f"kept {rel}: it differs from the generated version; --force replaces it")
    return 1 if report["skipped"] else 0


if __name__ == "__main__":
    sys.exit(main())
