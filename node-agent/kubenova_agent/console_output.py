"""``get_console_output``: the tail of an instance's serial console log, for a caller that
waits for it (Nova's ``get_console_output``).

The log is the file the hypervisor writes the guest's serial console to
(``ComputeDriver.console_log_path``). It can grow without end, so at most the last
:data:`MAX_BYTES` are read whatever is asked, as Nova bounds what it returns; a line the cap
cuts is left out rather than shown half. Bytes that are not UTF-8 (a guest may write
anything to its serial port) are replaced, not refused. An instance the host does not have
raises :class:`~kubenova_agent.exceptions.InstanceNotFound`, which the caller receives as
the call's failure.
"""

from __future__ import annotations

import os
from typing import Any

from kubenova.rpc import payloads
from kubenova_agent.virt import driver as virt_driver

METHOD = "get_console_output"
#: The most of a console log one answer carries: its last MiB.
MAX_BYTES = 1024 * 1024


def handle(driver: virt_driver.ComputeDriver, args: dict[str, Any]) -> dict[str, str]:
    """Answer one ``get_console_output`` message: ``{"output": text}``."""
    request = payloads.GetConsoleOutput.model_validate(args)
    path = driver.console_log_path(request.instance_uuid)
    if path is None:
        # The driver keeps no log (the test driver), or the guest has written none yet.
        return {"output": ""}
    return {"output": read_tail(path, request.tail_lines)}


def read_tail(path: str, tail_lines: int | None, max_bytes: int = MAX_BYTES) -> str:
    """The last ``tail_lines`` lines of the file (all when None), of its last ``max_bytes``
    at most. A last line without its newline counts as a line, as ``tail -n`` counts it; a
    file that does not exist (the log not made yet, or removed) reads as empty."""
    try:
        with open(path, "rb") as log:
            size = log.seek(0, os.SEEK_END)
            start = max(0, size - max_bytes)
            # One byte more, before the cap: whether the cap falls at the start of a line.
            log.seek(max(0, start - 1))
            data = log.read(max_bytes + 1)
    except FileNotFoundError:
        return ""
    if start > 0:
        before, data = data[:1], data[1:]
        newline = data.find(b"\n")
        if before != b"\n" and newline >= 0:
            # The cap cut this line (perhaps inside a character): the tail starts after it.
            data = data[newline + 1 :]
    if tail_lines is not None:
        data = _last_lines(data, tail_lines)
    return data.decode("utf-8", errors="replace")


def _last_lines(data: bytes, count: int) -> bytes:
    if count == 0:
        return b""
    # Search from the end for the newline before the count-th line from the end; the
    # file's final newline ends the last line rather than starting an empty one.
    end = len(data) - 1 if data.endswith(b"\n") else len(data)
    cut = end
    for _ in range(count):
        cut = data.rfind(b"\n", 0, cut)
        if cut < 0:
            return data
    return data[cut + 1 :]
