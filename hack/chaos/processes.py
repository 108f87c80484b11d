"""The processes of the local stack as the chaos suite finds them: by pid file, checked to be
the program they should be (a recycled pid is never signalled), with their environment."""

from __future__ import annotations

import os
import pathlib
import time

import benchlib
from benchlib import BenchError


def parse_environ(data: bytes) -> dict[str, str]:
    """/proc/PID/environ: NUL-separated NAME=VALUE entries."""
    environ = {}
    for entry in data.split(b"\0"):
        name, sep, value = entry.partition(b"=")
        if sep and name:
            environ[name.decode(errors="replace")] = value.decode(errors="replace")
    return environ


def environ_of(pid: int) -> dict[str, str]:
    try:
        return parse_environ(pathlib.Path(f"/proc/{pid}/environ").read_bytes())
    except OSError as exc:
        raise BenchError(f"cannot read the environment of pid {pid}: {exc.strerror}") from exc


def comm(pid: int) -> str:
    """The process's command name (/proc/PID/comm); empty when it is gone."""
    try:
        return pathlib.Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def pidfile_pid(pidfile: pathlib.Path) -> int | None:
    """The pid a pid file holds (its first number), alive; None otherwise."""
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if benchlib.process_alive(pid) else None


def launcher_pid(pidfile: pathlib.Path, binary: pathlib.Path) -> int | None:
    """The pid in ``pidfile`` when that process runs ``binary`` (hack/kube/common.sh's
    kube_pid checks the same)."""
    pid = pidfile_pid(pidfile)
    if pid is None:
        return None
    try:
        argv0 = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return None
    return pid if argv0 == os.fsencode(binary) else None


def wait_gone(pid: int, timeout: float) -> bool:
    """Until ``pid`` has exited (a zombie counts as gone); whether it did in time."""
    deadline = time.monotonic() + timeout
    while benchlib.process_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True
