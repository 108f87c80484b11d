"""Running ``kubenova-console`` and ``kubenova-subresources`` as installed, in a subprocess
with an environment of the test's making, to see what an administrator sees when a setting is
wrong: the exit code and stderr."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from collections.abc import Mapping

#: A database URL that parses and names an installed driver; nothing connects to it, since a
#: process that fails on its settings stops before it reaches the database.
DB_URL = "mysql+pymysql://kubenova:secret-password@127.0.0.1:1/nova?charset=utf8mb4"


def script(name: str) -> pathlib.Path:
    """The console script ``name`` of the Python running the tests (the project's venv)."""
    path = pathlib.Path(sys.executable).parent / name
    if not path.exists():
        raise FileNotFoundError(f"{path}: install the project (pip install -e .) first")
    return path


def run(
    name: str, env: Mapping[str, str], home: pathlib.Path, timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the console script ``name`` with only ``env`` (and ``PATH``), ``home`` as its
    ``HOME`` and no kubeconfig, so nothing of the machine's own settings leaks in."""
    return subprocess.run(
        [str(script(name))],
        env={
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(home),
            "KUBECONFIG": str(home / "no-kubeconfig"),
            **env,
        },
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def failure_line(completed: subprocess.CompletedProcess[str]) -> str:
    """The one line a process that refused its settings wrote, after checking that it exited
    with 2, wrote nothing else, and gave no traceback."""
    assert completed.returncode == 2, completed
    assert "Traceback" not in completed.stderr, completed.stderr
    lines = completed.stderr.splitlines()
    assert len(lines) == 1, completed.stderr
    return lines[0]
