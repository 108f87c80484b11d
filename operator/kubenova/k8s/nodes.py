"""Nodes chosen by a label selector: is one chosen, which are, and when that changes.

Selection is always the apiserver's: a name is checked with a list filtered by the selector
and the name, never by parsing the selector here, so every selector Kubernetes understands
works. A watch filtered by a selector reports a node that stops matching (its label removed)
as DELETED, exactly as it reports a node that is deleted.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterator
from typing import Any

from kubernetes import client as k8s_client
from kubernetes import watch as k8s_watch

# The Node addresses that are IP addresses a peer may reach the node at, most private first.
_ADDRESS_TYPES = ("InternalIP", "ExternalIP")

# Longer than the watch's own server-side timeout, so a healthy watch ends by the server's
# choice and only a dead connection trips this.
_WATCH_GRACE_S = 30


@dataclasses.dataclass(frozen=True)
class NodeEvent:
    type: str  # ADDED, MODIFIED, DELETED or BOOKMARK
    name: str


class KubeNodes:
    """Reads Nodes (RBAC: ``get``, ``list``, ``watch`` on ``nodes``)."""

    def __init__(self, api_client: k8s_client.ApiClient | None = None) -> None:
        self._api_client = api_client or k8s_client.ApiClient()
        self._core = k8s_client.CoreV1Api(self._api_client)
        self._watch: k8s_watch.Watch | None = None

    def is_selected(self, name: str, label_selector: str) -> bool:
        """Whether the Node ``name`` exists and matches ``label_selector``."""
        result: Any = self._core.list_node(
            label_selector=label_selector, field_selector=f"metadata.name={name}", limit=1
        )
        return any(node.metadata.name == name for node in result.items or [])

    def addresses(self, name: str) -> list[str]:
        """The IP addresses of Node ``name`` as its kubelet reports them (InternalIP first, then
        ExternalIP); empty for a Node that is gone."""
        try:
            node: Any = self._core.read_node(name)
        except k8s_client.ApiException as exc:
            if exc.status == 404:
                return []
            raise
        reported = [
            (str(address.type), str(address.address))
            for address in (node.status.addresses if node.status else None) or []
        ]
        ordered = [a for kind in _ADDRESS_TYPES for t, a in reported if t == kind]
        return [a for a in dict.fromkeys(ordered) if _is_ip(a)]

    def list_selected(self, label_selector: str) -> tuple[set[str], str]:
        """The names of the matching Nodes and the list's resourceVersion (to watch from)."""
        result: Any = self._core.list_node(label_selector=label_selector)
        names = {str(node.metadata.name) for node in result.items or []}
        return names, str(result.metadata.resource_version)

    def watch_selected(
        self, label_selector: str, resource_version: str, timeout_s: int
    ) -> Iterator[tuple[NodeEvent, str]]:
        """Events after ``resource_version`` for up to ``timeout_s``, each with the
        resourceVersion to resume from. Raises ``ApiException`` 410 when that version is too
        old (list again)."""
        watch = k8s_watch.Watch()  # type: ignore[no-untyped-call]
        self._watch = watch
        try:
            for event in watch.stream(  # type: ignore[no-untyped-call]
                self._core.list_node,
                label_selector=label_selector,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=timeout_s,
                _request_timeout=timeout_s + _WATCH_GRACE_S,
            ):
                obj = event["object"]
                if event["type"] == "ERROR":
                    # The stream's own error (410 Gone when resource_version is too old) comes
                    # as a Status dict, not a Node: raise it as the API would have.
                    raise _watch_error(obj)
                resume_from = str(watch.resource_version or resource_version)
                yield NodeEvent(event["type"], obj.metadata.name or ""), resume_from
        finally:
            self._watch = None

    def stop_watching(self) -> None:
        """End the current watch at its next event (or its timeout)."""
        watch = self._watch
        if watch is not None:
            watch.stop()  # type: ignore[no-untyped-call]


def _watch_error(status: Any) -> k8s_client.ApiException:
    """The ``ApiException`` a watch's ERROR event stands for."""
    fields = status if isinstance(status, dict) else {}
    error = k8s_client.ApiException(
        status=int(fields.get("code") or 500), reason=str(fields.get("reason") or "")
    )
    error.body = str(fields.get("message") or status)
    return error


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
