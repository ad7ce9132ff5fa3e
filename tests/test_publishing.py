"""Publishing the course under another address: `make badges` rewrites every notebook, the
README's badges and the package's homepage, and the repository's own checks stay green on a
copy whose address changed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tools import colab

ROOT = Path(__file__).resolve().parents[1]
NEW = {"repository": "https://github.com/uni-example/ml-module", "branch": "winter"}
# What a fresh copy of the course needs for the repository checks that read addresses.
COPIED = ["pyproject.toml", "README.md", "environment.yml", ".ci", "tools", "notebooks"]
COPIED += ["solutions", "exercises", "tests/test_repository.py", "tests/conftest.py"]


def copy_course(dest: Path) -> Path:
    """A copy of the parts of the repository the publishing checks read."""
    for rel in COPIED:
        src, target = ROOT / rel, dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copyfile(src, target)
    return dest


def set_address(root: Path, repository: str, branch: str) -> None:
    """What an instructor edits: ``[tool.coursekit]`` in pyproject.toml."""
    path = root / "pyproject.toml"
    text = path.read_text()
    old = colab.course_settings(path)
    section = text.index("[tool.coursekit]")
    head, tail = text[:section], text[section:]
    tail = tail.replace(f'repository = "{old["repository"]}"', f'repository = "{repository}"', 1)
    tail = tail.replace(f'branch = "{old["branch"]}"', f'branch = "{branch}"', 1)
    path.write_text(head + tail)


def test_rewrite_text_changes_badges_and_homepage_only():
    text = (
        "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        "(https://colab.research.google.com/github/a/b/blob/main/notebooks/00_setup.ipynb)\n"
        'Homepage = "https://github.com/a/b"\nSee https://github.com/a/b/issues.\n'
    )
    out = colab.rewrite_text(text, NEW)
    assert "github/uni-example/ml-module/blob/winter/notebooks/00_setup.ipynb" in out
    assert 'Homepage = "https://github.com/uni-example/ml-module"' in out
    assert "assets/colab-badge.svg" in out and out.endswith("See https://github.com/a/b/issues.\n")
    assert colab.rewrite_text(out, NEW) == out


@pytest.mark.slow
def test_a_changed_address_leaves_the_repository_checks_green(tmp_path):
    root = copy_course(tmp_path / "course")
    set_address(root, NEW["repository"], NEW["branch"])
    changed = colab.rewrite_all(root)
    assert root / "README.md" in changed and root / "pyproject.toml" in changed
    assert len(changed) == len(colab.notebook_paths(root)) + 2
    assert 'Homepage = "https://github.com/uni-example/ml-module"' in (
        (root / "pyproject.toml").read_text()
    )
    assert "backprop-from-scratch/course" not in (root / "README.md").read_text()
    assert colab.rewrite_all(root) == []  # a second run changes nothing
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k",
         "badge or setup or readme or exercises_are_generated or environment",
         "tests/test_repository.py"],
        cwd=root, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "failed" not in run.stdout


# ----------------------------------------------------------------------------- instructor's tools
DEV_ONLY = ["pytest", "xdist", "nbval", "hypothesis", "micrograd", "ruff", "playwright"]


def test_instructor_targets_need_only_the_course_install():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("exercises", "badges", "grade"):
        assert re.search(rf"^{target}: \$\(BASE_STAMP\)$", makefile, re.M), target
    assert re.search(r"^grade: .*\n\t\$\(PY\) -m coursekit\.grading \$\(ARGS\)$", makefile, re.M)


def test_instructor_tools_run_without_the_dev_extra():
    # the dev extra's packages made unimportable: the tools must not need them
    code = (
        "import sys\n"
        f"BLOCKED = {DEV_ONLY!r}\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in BLOCKED:\n"
        "            raise ImportError(f'{name} is in the dev extra')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from tools import colab, make_exercises\n"
        "assert make_exercises.main(['--check', '--lesson', '00']) == 0\n"
        "readme = open('README.md').read()\n"
        "assert colab.rewrite_text(readme, colab.course_settings()) == readme\n"
        "from coursekit.grading.__main__ import main\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
