"""A TLS context that is made again from its files when they change, so a server takes up a
renewed certificate with its next connection instead of at its next restart.

The operator renews the certificates in their Secrets (``kubenova.certs.issuer``); the kubelet
then swaps the files of every pod that mounts them (within a minute or two, as it syncs the
pod). :meth:`ReloadingContext.current` looks at the files' identity (inode, size, modification
time, following the kubelet's symlinks) at each call, which costs a few ``stat`` calls per
connection, and builds a new context only when one differs. A pair that cannot be loaded (a
key that no longer matches its certificate while a copy is half done) keeps the previous
context, with a warning, and is tried again at the next call.
"""

from __future__ import annotations

import logging
import os
import pathlib
import ssl
import threading
from collections.abc import Callable, Sequence

LOG = logging.getLogger(__name__)

_Signature = tuple[tuple[int, int, int], ...]


def _signature(files: Sequence[pathlib.Path]) -> _Signature:
    stats = []
    for path in files:
        try:
            found = os.stat(path)
        except OSError:
            stats.append((0, 0, 0))
            continue
        stats.append((found.st_ino, found.st_size, found.st_mtime_ns))
    return tuple(stats)


class ReloadingContext:
    """``build()`` once now (raising what it raises), and again whenever ``files`` change."""

    def __init__(self, build: Callable[[], ssl.SSLContext], files: Sequence[pathlib.Path]) -> None:
        self._build = build
        self._files = tuple(files)
        self._lock = threading.Lock()
        self._signature = _signature(self._files)
        self._context = build()

    def current(self) -> ssl.SSLContext:
        """The context for a new connection, built again if the files changed since."""
        seen = _signature(self._files)
        if seen == self._signature:
            return self._context
        with self._lock:
            if seen != self._signature:
                try:
                    self._context = self._build()
                except (OSError, ssl.SSLError, ValueError) as exc:
                    LOG.warning(
                        "keeping the TLS context of %s: the changed files do not load (%s)",
                        ", ".join(map(str, self._files)),
                        exc,
                    )
                    return self._context
                self._signature = seen
                LOG.info("reloaded the TLS context from %s", ", ".join(map(str, self._files)))
            return self._context
