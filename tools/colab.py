"""The Colab badge and set-up cell every notebook starts with.

The repository's public address is set once, in ``pyproject.toml`` under
``[tool.coursekit]``.  Run ``python tools/colab.py`` (or ``make badges``) after
changing it: every notebook's badge and set-up cell, the README's badges and
``[project.urls] Homepage`` are rewritten to match.

Colab's set-up cell installs the package with ``pip install git+<repository>``, which
works only when the repository is public (see the README for private forks).
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIRS = ("notebooks", "solutions", "exercises")
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
SETUP_MARKER = "# Set-up: on Google Colab"
BADGE_RE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)")
_COLAB_URL_RE = re.compile(
    r"https://colab\.research\.google\.com/github/[^/\s)]+/[^/\s)]+/blob/[^/\s)]+/"
)
_HOMEPAGE_RE = re.compile(r'^(Homepage\s*=\s*)"[^"]*"', re.M)


def course_settings(pyproject: Path = ROOT / "pyproject.toml") -> dict[str, str]:
    """``repository`` and ``branch`` from the ``[tool.coursekit]`` table."""
    text = pyproject.read_text()
    section = re.search(r"^\[tool\.coursekit\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    if section is None:
        raise ValueError(f"{pyproject} has no [tool.coursekit] table")
    settings = dict(re.findall(r'^(\w+)\s*=\s*"([^"]*)"', section.group(1), re.M))
    settings.setdefault("branch", "main")
    return settings


def github_path(repository: str) -> str:
    """``https://github.com/owner/name`` -> ``owner/name``."""
    return repository.removeprefix("https://github.com/").strip("/")


def badge_markdown(notebook: str, settings: dict[str, str] | None = None) -> str:
    """The badge for a notebook given by its path inside the repository."""
    s = settings or course_settings()
    url = (
        f"https://colab.research.google.com/github/{github_path(s['repository'])}"
        f"/blob/{s['branch']}/{notebook}"
    )
    return f"[![Open In Colab]({BADGE_IMAGE})]({url})"


def install_spec(settings: dict[str, str] | None = None) -> str:
    """What the set-up cell gives to ``pip install`` on Colab."""
    s = settings or course_settings()
    return f"coursekit @ git+{s['repository']}@{s['branch']}"


def setup_cell_source(settings: dict[str, str] | None = None) -> str:
    """The first code cell: installs coursekit on Colab only, then imports it.

    Colab already has torch, numpy and ipywidgets; the package asks only for
    lower bounds, so pip keeps Colab's own builds.
    """
    spec = install_spec(settings)
    return (
        f"{SETUP_MARKER}, install the course package (does nothing elsewhere).\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules:\n'
        "    import subprocess\n"
        "\n"
        f'    spec = "{spec}"\n'
        '    subprocess.run([sys.executable, "-m", "pip", "install", "-q", spec], check=True)\n'
        "\n"
        "import coursekit"
    )


def content_hash(nb: nbformat.NotebookNode) -> str:
    """A hash of what a person edits in a notebook: each cell's type and source.

    ``make exercises`` stores it in each exercise (``metadata.coursekit.generated``) to tell
    an untouched exercise from an edited one; a badge rewrite keeps it in step.
    """
    cells = [[cell.cell_type, cell.source] for cell in nb.cells]
    return hashlib.sha256(json.dumps(cells).encode("utf-8")).hexdigest()


def find_setup_cell(nb: nbformat.NotebookNode) -> int | None:
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and cell.source.startswith(SETUP_MARKER):
            return i
    return None


def notebook_paths(root: Path = ROOT) -> list[Path]:
    return sorted(p for d in NOTEBOOK_DIRS for p in (root / d).glob("*.ipynb"))


def apply(path: Path, settings: dict[str, str] | None = None, root: Path = ROOT) -> bool:
    """Rewrite one notebook's badge and set-up cell; True if the file changed."""
    settings = settings or course_settings()
    nb = nbformat.read(path, as_version=4)
    rel = path.resolve().relative_to(root).as_posix()
    badge = badge_markdown(rel, settings)
    before = nbformat.writes(nb)
    stamp = nb.metadata.get("coursekit", {})
    untouched = "generated" in stamp and stamp["generated"] == content_hash(nb)
    first = nb.cells[0] if nb.cells else None
    if first is not None and first.cell_type == "markdown" and BADGE_RE.search(first.source):
        first.source = BADGE_RE.sub(lambda _: badge, first.source, count=1)
    else:
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(badge))
    setup = find_setup_cell(nb)
    if setup is None:
        nb.cells.insert(1, nbformat.v4.new_code_cell(setup_cell_source(settings)))
    else:
        nb.cells[setup].source = setup_cell_source(settings)
    if untouched:  # a generated exercise nobody edited stays one
        stamp["generated"] = content_hash(nb)
    after = nbformat.writes(nb)
    if after != before:
        nbformat.write(nb, path)
        return True
    return False


def colab_prefix(settings: dict[str, str]) -> str:
    """What every badge's address starts with, up to the notebook's path."""
    return (
        f"https://colab.research.google.com/github/{github_path(settings['repository'])}"
        f"/blob/{settings['branch']}/"
    )


def rewrite_text(text: str, settings: dict[str, str]) -> str:
    """A README or pyproject.toml with every Colab badge address and the ``Homepage`` URL
    pointing at ``settings``' repository and branch."""
    text = _COLAB_URL_RE.sub(lambda _: colab_prefix(settings), text)
    return _HOMEPAGE_RE.sub(lambda m: f'{m.group(1)}"{settings["repository"]}"', text)


def apply_text(path: Path, settings: dict[str, str] | None = None) -> bool:
    """Rewrite the badges and the homepage in one text file; True if it changed."""
    settings = settings or course_settings()
    before = path.read_text(encoding="utf-8")
    after = rewrite_text(before, settings)
    if after != before:
        path.write_text(after, encoding="utf-8")
        return True
    return False


def rewrite_all(root: Path = ROOT) -> list[Path]:
    """Every notebook, the README and pyproject.toml's homepage, from ``[tool.coursekit]``;
    the files that changed."""
    settings = course_settings(root / "pyproject.toml")
    changed = [p for p in notebook_paths(root) if apply(p, settings, root)]
    texts = [root / "README.md", root / "pyproject.toml"]
    return changed + [p for p in texts if p.exists() and apply_text(p, settings)]


def main(argv: list[str]) -> int:
    if argv:
        settings = course_settings()
        paths = [Path(a) for a in argv]
        changed = [p for p in paths if apply(p, settings)]
    else:
        paths = [*notebook_paths(), ROOT / "README.md", ROOT / "pyproject.toml"]
        changed = rewrite_all(ROOT)
    for p in changed:
        print(f"updated {p}")
    print(f"{len(changed)} of {len(paths)} files updated")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
