"""Exceptions in the JSON-lines logs of Kubenova's processes (``kubenova.log``), in the part a
run wrote.

An exception is a line whose record carries a traceback (its ``exception`` key), a record at
level CRITICAL, or a line that is not JSON and starts a Python traceback (``Traceback (most
recent call last):``, what an interpreter prints for an exception nothing caught, outside the
logging). ERROR records without a traceback are counted apart, as errors: kopf logs a handler
that asks to be retried later (``failed temporarily``) at ERROR, which is how the operator
waits, not a failure.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Iterable

TRACEBACK = "Traceback (most recent call last):"
#: How many exception lines a scan keeps, to show.
SAMPLES = 5


@dataclasses.dataclass
class LogScan:
    """What a scan found."""

    lines: int = 0
    exceptions: int = 0
    errors: int = 0
    samples: list[str] = dataclasses.field(default_factory=list)

    def add(self, other: LogScan) -> None:
        self.lines += other.lines
        self.exceptions += other.exceptions
        self.errors += other.errors
        self.samples.extend(other.samples[: max(0, SAMPLES - len(self.samples))])


def scan_lines(lines: Iterable[str]) -> LogScan:
    """Count the exceptions and errors among ``lines``."""
    scan = LogScan()
    for line in lines:
        if not line.strip():
            continue
        scan.lines += 1
        kind = _classify(line)
        if kind == "exception":
            scan.exceptions += 1
            if len(scan.samples) < SAMPLES:
                scan.samples.append(line.strip()[:500])
        elif kind == "error":
            scan.errors += 1
    return scan


def _classify(line: str) -> str | None:
    try:
        record = json.loads(line)
    except ValueError:
        return "exception" if line.lstrip().startswith(TRACEBACK) else None
    if not isinstance(record, dict):
        return None
    level = record.get("level")
    if record.get("exception") or level == "CRITICAL":
        return "exception"
    return "error" if level == "ERROR" else None


def size_of(path: pathlib.Path) -> int:
    """The size of ``path`` now (0 when it does not exist): where a later scan starts."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def scan_file(path: pathlib.Path, offset: int) -> LogScan:
    """Scan what ``path`` holds past ``offset`` (all of it when it has shrunk since: it was
    rotated or truncated)."""
    try:
        with path.open("rb") as log_file:
            if log_file.seek(0, 2) < offset:
                offset = 0
            log_file.seek(offset)
            data = log_file.read()
    except FileNotFoundError:
        return LogScan()
    return scan_lines(data.decode(errors="replace").splitlines())
