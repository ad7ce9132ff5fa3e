"""Run notebooks top to bottom in place, storing fresh outputs (``make outputs``).

Each notebook runs in a fresh kernel of the current environment, from its own
folder, with the seeds it sets itself.  Prints each notebook's wall time, the
figure lessons report.  Exits non-zero if any cell raises.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def execute(path: Path, timeout: int = 600) -> float:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        record_timing=False,
    )
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
    nb.metadata["kernelspec"] = {
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
        "name": "python3",
    }
    nbformat.write(nb, path)
    return elapsed


def main(argv: list[str]) -> int:
    failed = 0
    for arg in argv:
        path = Path(arg)
        try:
            print(f"{path}: {execute(path):.1f} s", flush=True)
        except CellExecutionError as err:
            failed += 1
            print(f"{path}: FAILED\n{str(err)[-2000:]}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
