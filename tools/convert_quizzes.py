"""Move lessons' review questions out of the notebooks, into ``coursekit/quizzes/NN.json``.

For each notebook given (all of ``notebooks/`` by default) whose quiz cell still builds
``Question(...)`` objects:

1. the questions (prompt, choices, answer, explanation) are read from the cell's source
   (``ast.literal_eval`` of each ``Question``'s arguments, nothing is executed), and the
   worked answers from the ``<details><summary>Worked answers</summary>`` cell below it,
   one numbered item per question;
2. they are written to ``coursekit/quizzes/NN.json`` (NN from the file name);
3. the quiz cell's source becomes ``from coursekit.viz import quiz`` / ``quiz("NN")``, keeping
   its id, tags and stored output; the worked-answers cell becomes a short note on where the
   worked answers are now, and "The worked answers are below the quiz." in the cell above
   says so too.

A notebook whose quiz cell is already the short call is left alone, so the script can be run
again after more notebooks are ready; a notebook still holding questions is re-extracted from
its current source. A notebook that cannot be converted (e.g. 6 questions but 5 worked
answers) is reported and left unchanged, and the exit status is 1. ``--check`` only reports
what would change (exit 1 if anything would).

    python tools/convert_quizzes.py notebooks/02_computational_graphs.ipynb
    python tools/convert_quizzes.py            # every lesson
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
import textwrap
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from coursekit.viz.quiz import Question, question_to_dict  # noqa: E402

QUIZ_DIR = ROOT / "coursekit" / "quizzes"
QUESTION_FIELDS = ("prompt", "choices", "answer", "explanation")
BELOW_THE_QUIZ = "The worked answers are below the quiz."
ON_REQUEST = "After checking, **Show worked answer** works through it step by step."


def lesson_of(path: Path) -> str:
    match = re.match(r"(\d\d)_", path.name)
    if not match:
        raise ValueError(f"{path.name}: expected a lesson file name like 08_deep_nets.ipynb")
    return match.group(1)


def short_call(lesson: str) -> str:
    return f'from coursekit.viz import quiz\n\nquiz("{lesson}")'


def worked_note(lesson: str) -> str:
    return (
        "**Worked answers.** Check a question above, then press **Show worked answer** under "
        "it. Where widgets do not display, run `from coursekit.viz import worked_answers` and "
        f'`worked_answers("{lesson}")` to see every question with its answer worked through.'
    )


def is_quiz_cell(cell) -> bool:
    return cell.cell_type == "code" and "quiz(" in cell.source


def is_worked_cell(cell) -> bool:
    return cell.cell_type == "markdown" and re.search(
        r"<summary>\s*Worked answers\s*</summary>", cell.source
    )


def questions_from_source(source: str) -> list[dict]:
    """The arguments of each ``Question(...)`` in the quiz cell, as dicts."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Question":
            values = dict(zip(QUESTION_FIELDS, map(ast.literal_eval, node.args), strict=False))
            for kw in node.keywords:
                if kw.arg not in QUESTION_FIELDS:
                    raise ValueError(f"Question(): unexpected argument {kw.arg!r}")
                values[kw.arg] = ast.literal_eval(kw.value)
            found.append((node.lineno, node.col_offset, values))
    return [values for *_, values in sorted(found, key=lambda t: t[:2])]


ITEM = re.compile(r"^(?:(\d+)\.\s|\*\*(\d+)\.\s*)", re.MULTILINE)


def worked_items(markdown: str) -> list[str]:
    """Split a worked-answers cell into its numbered items, numbers removed.

    Items are ``1. **Answer.** text`` (continuation lines indented) or ``**1. Answer.** text``.
    """
    body = re.sub(r"</?details>|<summary>.*?</summary>", "", markdown, flags=re.DOTALL)
    starts = list(ITEM.finditer(body))
    before = body[: starts[0].start()].strip() if starts else body.strip()
    if before:
        raise ValueError(f"worked answers: text before the first numbered item: {before[:80]!r}")
    items = []
    for k, match in enumerate(starts):
        number = int(match.group(1) or match.group(2))
        if number != k + 1:
            raise ValueError(f"worked answers: item {k + 1} is numbered {number}")
        end = starts[k + 1].start() if k + 1 < len(starts) else len(body)
        text = body[match.end() : end]
        if match.group(2):  # **1. Answer.** -> **Answer.**
            text = "**" + text
        first, _, rest = text.partition("\n")
        items.append((first.strip() + "\n" + textwrap.dedent(rest)).strip())
    return items


def convert(path: Path, check: bool = False) -> str:
    """Convert one notebook; returns what happened, in a few words."""
    lesson = lesson_of(path)
    nb = nbformat.read(path, as_version=4)
    quiz_cells = [i for i, c in enumerate(nb.cells) if is_quiz_cell(c)]
    if len(quiz_cells) != 1:
        raise ValueError(f"{path.name}: expected one quiz cell, found {len(quiz_cells)}")
    q = quiz_cells[0]
    if "Question(" not in nb.cells[q].source:
        if nb.cells[q].source.strip() != short_call(lesson):
            raise ValueError(f"{path.name}: quiz cell is neither Question(...) nor the short call")
        return "already converted"
    raw = questions_from_source(nb.cells[q].source)
    if not raw:
        raise ValueError(f"{path.name}: no Question(...) in the quiz cell")
    worked_cells = [i for i, c in enumerate(nb.cells) if is_worked_cell(c)]
    worked = [""] * len(raw)
    if worked_cells:
        if len(worked_cells) != 1 or worked_cells[0] < q:
            raise ValueError(f"{path.name}: expected one worked-answers cell below the quiz")
        worked = worked_items(nb.cells[worked_cells[0]].source)
        if len(worked) != len(raw):
            raise ValueError(f"{path.name}: {len(raw)} questions but {len(worked)} worked answers")
    questions = [Question(**values, worked=w) for values, w in zip(raw, worked, strict=True)]
    data = {"lesson": lesson, "questions": [question_to_dict(x) for x in questions]}
    if check:
        return f"would convert ({len(questions)} questions)"

    target = QUIZ_DIR / f"{lesson}.json"
    target.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    nb.cells[q].source = short_call(lesson)  # id, metadata (tags) and outputs are kept
    if worked_cells:
        nb.cells[worked_cells[0]].source = worked_note(lesson)
    for cell in nb.cells[:q]:
        if cell.cell_type == "markdown" and BELOW_THE_QUIZ in cell.source:
            cell.source = cell.source.replace(BELOW_THE_QUIZ, ON_REQUEST)
    nbformat.write(nb, path)
    return f"converted ({len(questions)} questions -> {target.relative_to(ROOT)})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    parser.add_argument("--check", action="store_true", help="report only, change nothing")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    pending = failed = 0
    for path in paths:
        try:  # a notebook that cannot be converted changes nothing, and the others go on
            result = convert(path, check=args.check)
        except (ValueError, SyntaxError) as err:
            failed += 1
            result = f"FAILED, left unchanged: {err}"
        pending += result.startswith("would")
        print(f"{path}: {result}")
    return 1 if failed or (args.check and pending) else 0


if __name__ == "__main__":
    sys.exit(main())
