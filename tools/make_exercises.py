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

A file in exercises/ that differs from what would be generated (a student's
work, or a stale copy) is never overwritten unless ``--force`` is given.
``--check`` only reports which exercises are out of date (exit code 1 if any).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tools import colab  # noqa: E402

ROOT = colab.ROOT
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
_DEF_RE = re.compile(r"^\s*def\s+(\w+)\s*\(")


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
    settings = settings or colab.course_settings()
    first = nb.cells[0]
    first.source = colab.BADGE_RE.sub(
        lambda _: colab.badge_markdown(exercise_rel, settings), first.source, count=1
    )
    return nb


def expected_exercises(root: Path = ROOT) -> dict[Path, str]:
    """Map each exercise path to the text the generator would write there."""
    result = {}
    for sol in sorted((root / "solutions").glob("*.ipynb")):
        target = root / "exercises" / sol.name
        rel = target.relative_to(root).as_posix()
        nb = exercise_from_solution(nbformat.read(sol, as_version=4), rel)
        result[target] = nbformat.writes(nb) + "\n"
    return result


def generate(root: Path = ROOT, force: bool = False, check: bool = False) -> dict[str, list]:
    """Bring exercises/ up to date; returns the paths that were stale, written and skipped."""
    report: dict[str, list] = {"stale": [], "written": [], "skipped": []}
    for target, text in expected_exercises(root).items():
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
    parser.add_argument("--check", action="store_true", help="only report out-of-date exercises")
    args = parser.parse_args(argv)
    report = generate(ROOT, force=args.force, check=args.check)
    if args.check:
        for t in report["stale"]:
            print(f"out of date: {t.relative_to(ROOT)} (run `make exercises ARGS=--force`)")
        return 1 if report["stale"] else 0
    for t in report["written"]:
        print(f"wrote {t.relative_to(ROOT)}")
    for t in report["skipped"]:
        rel = t.relative_to(ROOT)
        print(f"kept {rel}: it differs from the generated version; --force replaces it")
    return 1 if report["skipped"] else 0


if __name__ == "__main__":
    sys.exit(main())
