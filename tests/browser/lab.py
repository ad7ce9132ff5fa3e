"""Start a throwaway JupyterLab server on localhost for browser tests."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# JupyterLab's news and update checks reach for the network and pop up a notice.
SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    # Render every cell (no virtual scrolling), so outputs below the fold are in the page.
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


@contextmanager
def jupyter_lab(notebook_dir: Path, work: Path, timeout: float = 60.0):
    """Serve ``notebook_dir`` on a free port; yields ``(base_url, token)``; always stops."""
    for name in ("config", "runtime", "settings", "workspaces", "data"):
        (work / name).mkdir(parents=True, exist_ok=True)
    for rel, value in SETTINGS.items():
        path = work / "settings" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    port, token = free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(work / "config"),
        "JUPYTER_RUNTIME_DIR": str(work / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(work / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(work / "workspaces"),
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    }
    cmd = [
        sys.executable, "-m", "jupyterlab",
        "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
        f"--ServerApp.token={token}", f"--ServerApp.root_dir={notebook_dir}",
        "--ServerApp.open_browser=False", "--LabApp.expose_app_in_browser=True",
    ]  # fmt: skip
    log = open(work / "server.log", "wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited early; see {work / 'server.log'}")
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"jupyter lab did not answer within {timeout} s") from None
                time.sleep(0.5)
        yield base, token
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def copy_notebooks(src: Path, dst: Path) -> Path:
    """A temporary copy, so autosave never writes outputs back into the repository."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    return dst
