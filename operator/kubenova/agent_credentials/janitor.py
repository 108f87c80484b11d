"""Take a node's RabbitMQ identity away once the node is no hypervisor any more.

A thread lists the hypervisor nodes, revokes every minted node not among them (what happened
while no replica was watching: a Node deleted, a label removed), then watches them from that
list's resourceVersion and revokes a node when it leaves: a watch filtered by the selector
reports a Node that is deleted or loses the label as DELETED. When the watch's history is gone
(410) it lists again; any other failure (the apiserver or RabbitMQ away) lists again after a
back-off, and the sweep retries what a failed revocation left behind, because the Secret
outlives the user until the user is gone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Iterator
from typing import Protocol

from kubernetes.client import exceptions as k8s_exceptions

from kubenova.k8s.nodes import NodeEvent

LOG = logging.getLogger(__name__)

WATCH_TIMEOUT_S = 300
BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)


class Nodes(Protocol):
    def list_selected(self, label_selector: str) -> tuple[set[str], str]: ...

    def watch_selected(
        self, label_selector: str, resource_version: str, timeout_s: int
    ) -> Iterator[tuple[NodeEvent, str]]: ...

    def stop_watching(self) -> None: ...


class Revoker(Protocol):
    def revoke(self, node: str) -> bool: ...

    def sweep(self, keep: Collection[str]) -> list[str]: ...


class Janitor:
    def __init__(
        self,
        nodes: Nodes,
        revoker: Revoker,
        node_selector: str,
        *,
        watch_timeout_s: int = WATCH_TIMEOUT_S,
    ) -> None:
        self._nodes = nodes
        self._revoker = revoker
        self._selector = node_selector
        self._watch_timeout_s = watch_timeout_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="agent-credentials-janitor")
        self._thread.daemon = True
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the thread to end; it does at the watch's next event or timeout (the thread is
        a daemon, so a process that exits does not wait for it)."""
        self._stop.set()
        self._nodes.stop_watching()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def run(self) -> None:
        resource_version: str | None = None
        failures = 0
        while not self._stop.is_set():
            try:
                if resource_version is None:
                    resource_version = self.sweep()
                resource_version = self._watch(resource_version)
                failures = 0
            except k8s_exceptions.ApiException as exc:
                resource_version = None
                if exc.status == 410:
                    continue  # the watch's history is gone: list again at once
                failures = self._back_off(failures, exc)
            except Exception as exc:
                resource_version = None
                failures = self._back_off(failures, exc)

    def sweep(self) -> str:
        """Revoke every minted node that is not a hypervisor now; returns the resourceVersion
        of the list of nodes to watch from."""
        keep, resource_version = self._nodes.list_selected(self._selector)
        for node in self._revoker.sweep(keep):
            LOG.info("node %s is no hypervisor any more: its agent's user is revoked", node)
        return resource_version

    def _watch(self, resource_version: str) -> str:
        for event, resume_from in self._nodes.watch_selected(
            self._selector, resource_version, self._watch_timeout_s
        ):
            if event.type == "DELETED" and event.name:
                LOG.info("node %s left the hypervisors: revoking its agent's user", event.name)
                self._revoker.revoke(event.name)
            resource_version = resume_from or resource_version
            if self._stop.is_set():
                break
        return resource_version

    def _back_off(self, failures: int, exc: Exception) -> int:
        if self._stop.is_set():
            return failures  # ending: a watch cut short is no failure
        delay = BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]
        LOG.warning("agent credentials janitor: %s; listing nodes again in %.0f s", exc, delay)
        self._stop.wait(delay)
        return failures + 1
