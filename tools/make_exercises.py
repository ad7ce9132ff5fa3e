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

Generated from ``coursekit.grading.items()``
--------------------------------------------
In the solution (and so in the exercise) the generator also writes:

* the notebook's lesson, ``metadata.coursekit.lesson`` ("04" for ``04_*.ipynb``), which bulk
  grading reads first, whatever a learning platform renames the file to;
* the item table of the header, the lines from ``| item | you write | points |`` to the
  table's end: one row per item, in the order the notebook checks them, with the item's
  ``description`` and ``points``;
* the score cell, the code cell that starts with ``results = {``: one entry per item,
  ``result_<name>`` being the variable its check() cell assigns.

Adding an item is then: its ``@item`` code, its solution and check() cells, one test entry
(see docs/authoring_items.md), and ``make exercises``.

Overwriting exercises
---------------------
Each exercise stores a hash of the cells it was written with
(``metadata.coursekit.generated``). A file in exercises/ whose cells still match that hash
was not touched since and is brought up to date; one that differs from it (a student's
work, an edit by hand) is never overwritten unless ``--force`` is given. Solution notebooks
are always re-stamped (metadata, item table and score cell). ``--check`` only reports which
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
_LESSON_RE = re.compile(r"^(\d\d)_")
TABLE_HEADER = "| item | you write |"
SCORE_START = "results = {"
_RESULT_RE = re.compile(r"^(\w+)\s*=\s*check\(\s*[\"']([\w.]+)[\"']", re.M)
_WIDTH_RE = re.compile(r"\{item:<(\d+)\}")


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


# ----------------------------------------------------------------------------- generated cells


def lesson_of(path: Path | str) -> str | None:
    """ "04" for ``04_vectorized_backprop.ipynb``; None for a name without ``NN_``."""
    match = _LESSON_RE.match(Path(path).name)
    return match.group(1) if match else None


def _checked_order(nb: nbformat.NotebookNode) -> list[str]:
    names: list[str] = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            names += [n for n in checked_items(cell.source) if n not in names]
    return names


def _lesson_items(nb: nbformat.NotebookNode, lesson: str) -> list[tuple[str, str, int]]:
    """(name, description, points) of the lesson's items, in the order the notebook checks
    them (items it never checks last, in the order of ``items()``)."""
    from coursekit.grading import items

    table = items(lesson)
    order = [n for n in _checked_order(nb) if n in table]
    order += [n for n in table if n not in order]
    return [(n, table[n].description, table[n].points) for n in order]


def item_table(rows: list[tuple[str, str, int]]) -> str:
    """The header's markdown table of items: name, what the student writes, points."""
    lines = [f"{TABLE_HEADER} points |", "|---|---|---|"]
    for name, description, points in rows:
        text = re.sub(r"([\\|*])", r"\\\1", description)  # literal |, * and \\ in markdown
        lines.append(f"| `{name}` | {text} | {points} |")
    return "\n".join(lines)


def _replace_table(source: str, table: str) -> str:
    lines = source.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(TABLE_HEADER))
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return "\n".join([*lines[:start], table, *lines[end:]])


def score_cell_source(entries: list[tuple[str, str]], width: int) -> str:
    """The "Your score" cell: ``entries`` are (item, the variable holding its Result)."""
    listed = "".join(f'    "{name}": {var},\n' for name, var in entries)
    return (
        f"results = {{\n{listed}}}\n"
        "for item, result in results.items():\n"
        '    status = "pass" if result.passed else "todo"\n'
        f'    print(f"{{item:<{width}}} {{status}}  '
        '{result.points:g} / {result.max_points:g}")\n'
        "earned = sum(result.points for result in results.values())\n"
        "possible = sum(result.max_points for result in results.values())\n"
        f"print(f\"{{'total':<{width}}} {{earned:g}} / {{possible:g}} points\")"
    )


def _score_entries(nb: nbformat.NotebookNode, rows) -> list[tuple[str, str]]:
    assigned = {}
    for cell in nb.cells:
        if cell.cell_type == "code":
            for var, name in _RESULT_RE.findall(cell.source):
                assigned[name] = var
    missing = [name for name, *_ in rows if name not in assigned]
    if missing:
        raise ValueError(
            f"the score cell needs each item's result: write `result_<name> = check(...)` "
            f"for {', '.join(missing)}"
        )
    return [(name, assigned[name]) for name, *_ in rows]


def write_generated_cells(nb: nbformat.NotebookNode, lesson: str) -> None:
    """Rewrite, in place, the item table and the score cell from ``items(lesson)``."""
    rows = _lesson_items(nb, lesson)
    if not rows:
        return
    longest = max(len(name) for name, *_ in rows)
    for cell in nb.cells:
        if cell.cell_type == "markdown" and any(
            line.startswith(TABLE_HEADER) for line in cell.source.split("\n")
        ):
            cell.source = _replace_table(cell.source, item_table(rows))
        elif cell.cell_type == "code" and cell.source.startswith(SCORE_START):
            # the column width the author chose stays, unless a name no longer fits
            found = _WIDTH_RE.search(cell.source)
            width = int(found.group(1)) if found else 0
            width = width if width > longest else longest + 3
            cell.source = score_cell_source(_score_entries(nb, rows), width)


def stamp_solution(
    solution: nbformat.NotebookNode,
    points: Mapping[str, int] | None = None,
    lesson: str | None = None,
) -> nbformat.NotebookNode:
    """The solution notebook (a new object) with nbgrader's metadata on every cell; given its
    ``lesson``, also the lesson in its metadata, the item table and the score cell."""
    nb = nbformat.reads(nbformat.writes(solution), as_version=4)
    if lesson is not None:
        nb.metadata.setdefault("coursekit", {})["lesson"] = lesson
        write_generated_cells(nb, lesson)
    for cell, meta in zip(nb.cells, nbgrader_cell_metadata(nb, points), strict=True):
        if meta is None:
            cell.metadata.pop("nbgrader", None)
        else:
            cell.metadata["nbgrader"] = meta
    return nb


content_hash = colab.content_hash


def untouched(text: str) -> bool:
    """True if a generated exercise's cells are still those it was written with."""
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception:
        return False
    stored = nb.metadata.get("coursekit", {}).get("generated")
    return stored is not None and stored == content_hash(nb)


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
    nb.metadata.setdefault("coursekit", {})["generated"] = content_hash(nb)
    return nb


def _solution_paths(root: Path, lessons: list[str] | None = None) -> list[Path]:
    paths = sorted((root / "solutions").glob("*.ipynb"))
    return [p for p in paths if lessons is None or lesson_of(p) in lessons]


def expected_solutions(
    root: Path = ROOT, points: Mapping[str, int] | None = None, lessons: list[str] | None = None
) -> dict[Path, str]:
    """Map each solution path to its text with nbgrader's metadata stamped."""
    points = _course_points() if points is None else points
    return {
        sol: nbformat.writes(
            stamp_solution(nbformat.read(sol, as_version=4), points, lesson_of(sol))
        )
        + "\n"
        for sol in _solution_paths(root, lessons)
    }


def expected_exercises(
    root: Path = ROOT, points: Mapping[str, int] | None = None, lessons: list[str] | None = None
) -> dict[Path, str]:
    """Map each exercise path to the text the generator would write there."""
    result = {}
    for sol, text in expected_solutions(root, points, lessons).items():
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
        lesson = lesson_of(sol)
        absent = [name for name in items(lesson) if name not in checked]
        if absent:
            missing[sol] = absent
    return missing


def generate(
    root: Path = ROOT,
    force: bool = False,
    check: bool = False,
    points: Mapping[str, int] | None = None,
    lessons: list[str] | None = None,
) -> dict[str, list]:
    """Stamp solutions/ with nbgrader's metadata and bring exercises/ up to date.

    ``lessons`` ("04", ...) limits the work to those lessons' notebooks.
    Returns the paths that were stale, written and skipped (exercises: skipped ones were
    edited since they were generated), and the solutions that lacked (``unstamped``) and were
    given (``stamped``) the metadata.
    """
    points = _course_points() if points is None else points
    report: dict[str, list] = {
        "stale": [],
        "written": [],
        "skipped": [],
        "unstamped": [],
        "stamped": [],
    }
    for sol, text in expected_solutions(root, points, lessons).items():
        if sol.read_text() != text:
            report["unstamped"].append(sol)
            if not check:
                sol.write_text(text)
                report["stamped"].append(sol)
    for target, text in expected_exercises(root, points, lessons).items():
        current = target.read_text() if target.exists() else None
        if current == text:
            continue
        report["stale"].append(target)
        if check:
            continue
        if current is not None and not force and not untouched(current):
            report["skipped"].append(target)
            continue
        target.parent.mkdir(exist_ok=True)
        target.write_text(text)
        report["written"].append(target)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--force", action="store_true", help="also overwrite exercises edited since generated"
    )
    parser.add_argument("--check", action="store_true", help="only report out-of-date notebooks")
    parser.add_argument(
        "--lesson",
        action="append",
        metavar="NN",
        help="only this lesson's notebooks (repeatable; default: every lesson)",
    )
    args = parser.parse_args(argv)
    report = generate(ROOT, force=args.force, check=args.check, lessons=args.lesson)
    for sol, names in unchecked_items(ROOT).items():
        print(f"note: {sol.relative_to(ROOT)} checks no cell for {', '.join(names)}")
    if args.check:
        for t in report["unstamped"]:
            rel = t.relative_to(ROOT)
            print(f"nbgrader metadata missing or stale: {rel} (run `make exercises`)")
        for t in report["stale"]:
            print(f"out of date: {t.relative_to(ROOT)} (run `make exercises`)")
        return 1 if report["stale"] or report["unstamped"] else 0
    for t in report["stamped"]:
        print(f"stamped nbgrader metadata on {t.relative_to(ROOT)}")
    for t in report["written"]:
        print(f"wrote {t.relative_to(ROOT)}")
    for t in report["skipped"]:
        rel = t.relative_to(ROOT)
        why = (
            "it was edited since it was generated (its cells no longer match the hash in its "
            "metadata)"
            if '"generated"' in t.read_text()
            else "it carries no hash of what was generated (an older copy, or one made by hand)"
        )
        print(f"kept {rel}: {why}; `make exercises ARGS=--force` replaces it")
    return 1 if report["skipped"] else 0


if __name__ == "__main__":
    sys.exit(main())
