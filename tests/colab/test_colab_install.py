"""The Colab install path, simulated: a fresh virtual environment that already holds torch
(as Colab does), the notebooks' own set-up cell run with `google.colab` present, then a
lesson and an exercise executed with nbclient in that environment.

The repository plays GitHub: the set-up cell installs `coursekit @ git+file://...` at the
commit under test (committed state, as Colab would see it). A second run starts from
ipywidgets 7.7.1 and numpy 2.0.2, the versions Colab ships.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tools import colab

ROOT = Path(__file__).resolve().parents[2]
TORCH_SPEC = "torch==2.13.0"
pytestmark = [pytest.mark.colab, pytest.mark.timeout(900)]

# Notebooks to execute in the simulated Colab environment: the tour, an exercise, and every
# lesson that uses widgets.
NOTEBOOKS = ["notebooks/00_setup.ipynb", "exercises/00_warmup.ipynb"] + sorted(
    p.relative_to(ROOT).as_posix()
    for p in (ROOT / "notebooks").glob("*.ipynb")
    if "learning_rate_explorer(" in p.read_text()
)[:1]


def run(cmd, **kw) -> str:
    """Run a command; return its stdout, failing the test with both streams on error."""
    result = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert result.returncode == 0, (
        f"{cmd} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout


def torch_fingerprint(python: Path) -> dict:
    code = (
        "import json, os, torch; "
        "print(json.dumps({'version': torch.__version__, 'file': torch.__file__, "
        "'mtime': os.path.getmtime(torch.__file__)}))"
    )
    return json.loads(run([str(python), "-c", code]).strip().splitlines()[-1])


def head_commit() -> str:
    return run(["git", "-C", str(ROOT), "rev-parse", "HEAD"]).strip()


# Colab's own versions of what it preinstalls (besides torch): ipywidgets 7.7.1 and an
# older numpy. The package must work with them, and must not upgrade them.
COLAB_PINS = ["ipywidgets==7.7.1", "numpy==2.0.2"]


@pytest.mark.parametrize("colab_pins", [[], COLAB_PINS], ids=["latest", "colab-versions"])
def test_colab_setup_cell_installs_and_notebooks_run(tmp_path, colab_pins):
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    preinstalled = [TORCH_SPEC, *colab_pins]
    run([str(python), "-m", "pip", "install", "-q", *preinstalled])
    before = torch_fingerprint(python)

    # The set-up cell exactly as the notebooks carry it, pointed at this repository.
    settings = {"repository": f"file://localhost{ROOT}", "branch": head_commit()}
    cell = colab.setup_cell_source(settings)
    assert cell.replace(f"file://localhost{ROOT}", "R").replace(settings["branch"], "B") == (
        colab.setup_cell_source({"repository": "R", "branch": "B"})
    )
    fake_colab = textwrap.dedent(
        """
        import sys, types
        sys.modules["google"] = types.ModuleType("google")
        sys.modules["google.colab"] = types.ModuleType("google.colab")
        """
    )
    install = subprocess.run(
        [str(python), "-c", fake_colab + cell + "\nprint('imported', coursekit.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the repository: `python -c` would import coursekit from the cwd
    )
    log = install.stdout + install.stderr
    assert install.returncode == 0, log[-3000:]
    assert "imported" in log and "site-packages" in log.split("imported")[-1]
    assert "Uninstalling torch" not in log

    after = torch_fingerprint(python)
    assert after == before, f"torch was replaced: {before} -> {after}"
    for pin in colab_pins:
        name, version = pin.split("==")
        found = run([str(python), "-c", f"import {name}; print({name}.__version__)"]).strip()
        assert found == version, f"{name} was changed from {version} to {found}"

    # The set-up cell is a no-op outside Colab (no pip call).
    run([str(python), "-c", cell.replace("import coursekit", "")], cwd=tmp_path)

    for rel in NOTEBOOKS:
        target = tmp_path / "run" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((ROOT / rel).read_bytes())
        execute(venv, target)


def execute(venv: Path, notebook: Path, attempts: int = 2) -> None:
    """Run a notebook top to bottom with nbclient in ``venv``; fail on any cell error.

    A cell timeout is retried once: on a loaded machine a kernel has been seen to go
    idle without its reply reaching the client. A notebook that really hangs times out
    twice; an error in a cell fails at once.
    """
    cmd = [str(venv / "bin" / "jupyter-execute"), "--timeout=240", notebook.name]
    for attempt in range(1, attempts + 1):
        result = subprocess.run(cmd, capture_output=True, text=True, cwd=notebook.parent)
        if result.returncode == 0:
            return
        timed_out = "CellTimeoutError" in result.stderr or "TimeoutError" in result.stderr
        if not timed_out or attempt == attempts:
            pytest.fail(f"{notebook.name} failed in the Colab-like env:\n{result.stderr[-3000:]}")
