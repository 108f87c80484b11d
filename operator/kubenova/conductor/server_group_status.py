"""Each ServerGroup's status (``memberCount`` and its members per host), kept true to the
database by a periodic pass: membership follows claims, reschedules and deletes in several
places, and one pass over every group is two statements."""

from __future__ import annotations

from typing import Any

from kubenova.conductor import last_written
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.k8s.client import KubeClient


class ServerGroupStatus:
    """Writes ServerGroup statuses where they changed."""

    def __init__(self, session_factory: db_engine.SessionFactory, kube: KubeClient) -> None:
        self._session_factory = session_factory
        self._kube = kube
        # "namespace/name" -> the status last written to that ServerGroup.
        self._last_written = last_written.LastWritten()

    def project_all(self) -> int:
        """Write each group's status where it changed; how many objects were written."""
        with db_engine.transaction(self._session_factory) as session:
            usages = db_api.server_group_usage_all(session)
        written = 0
        for usage in usages:
            key = f"{usage.namespace}/{usage.name}"
            figures = {"memberCount": usage.member_count, "hosts": dict(usage.hosts)}
            previous = self._last_written.get(key)
            if previous is None:
                obj = self._kube.get_server_group(usage.namespace, usage.name)
                if obj is None:
                    # Its object is gone: remember the figures so it is not read every pass.
                    self._last_written.remember(key, figures)
                    continue
                previous = dict(obj.get("status") or {})
            if (
                previous.get("memberCount") == usage.member_count
                and (previous.get("hosts") or {}) == usage.hosts
            ):
                continue
            hosts: dict[str, int | None] = dict(usage.hosts)
            # A merge patch keeps map keys it is not told about: null removes a host.
            hosts.update({h: None for h in previous.get("hosts") or {} if h not in usage.hosts})
            status: dict[str, Any] = {"memberCount": usage.member_count, "hosts": hosts}
            if self._kube.patch_server_group_status(usage.namespace, usage.name, status):
                written += 1
            self._last_written.remember(key, figures)
        return written
