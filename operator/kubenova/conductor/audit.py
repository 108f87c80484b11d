"""The periodic audit that converges records, claims and what hosts really run.

Each agent's heartbeat lists the instances its hypervisor runs; the audit compares that
with the records and the claims and writes what it finds into the Hypervisor's status
(``status.audit``), with a log line per difference (``status.audit.inSync`` sums it up). A report
is older than the database's view, so a difference is acted on only when two audits in a
row agree: then domains whose record is deleted, or whose live record is on another host
(a build that failed here and was rescheduled), are terminated. A domain the database never
knew is reported and left alone.
"""

from __future__ import annotations

import datetime
import logging
import threading
from typing import Any

from kubenova.conductor import status as status_mod
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.k8s.client import KubeClient
from kubenova.rpc import compute_rpcapi, envelope

LOG = logging.getLogger(__name__)


class HostAuditor:
    """Remembers each host's last report and audits one host at a time."""

    def __init__(
        self,
        session_factory: db_engine.SessionFactory,
        kube: KubeClient,
        compute: compute_rpcapi.ComputeAPI,
    ) -> None:
        self._session_factory = session_factory
        self._kube = kube
        self._compute = compute
        self._lock = threading.Lock()
        self._reported: dict[str, tuple[str, ...]] = {}
        self._leftovers_seen: dict[str, set[str]] = {}
        self._missing_seen: dict[str, set[str]] = {}

    def record_report(self, host: str, instance_uuids: tuple[str, ...]) -> None:
        with self._lock:
            self._reported[host] = instance_uuids

    def audit_all(self) -> dict[str, dict[str, Any]]:
        """Audit every host that has reported; the usage check is one statement for all."""
        with self._lock:
            hosts = sorted(self._reported)
        if not hosts:
            return {}
        with db_engine.transaction(self._session_factory) as session:
            usage = db_api.usage_audit(session)
        results = {}
        for host in hosts:
            audit = self.audit(host, usage=[d for d in usage if d.host == host])
            if audit is not None:
                results[host] = audit
        return results

    def audit(
        self, host: str, *, usage: list[db_api.UsageDiscrepancy] | None = None
    ) -> dict[str, Any] | None:
        """Audit ``host`` against its last report; None until it has reported.

        ``usage``: this host's usage differences, when the caller checked all hosts at once.
        """
        with self._lock:
            reported = self._reported.get(host)
        if reported is None:
            return None
        with db_engine.transaction(self._session_factory) as session:
            missing = db_api.instances_not_reported(
                session, host, reported, exclude_vm_states=("building",)
            )
            unrecorded = db_api.reported_without_live_record(session, host, reported)
            if usage is None:
                usage = [d for d in db_api.usage_audit(session) if d.host == host]
        leftovers = set(unrecorded.soft_deleted) | set(unrecorded.elsewhere)
        with self._lock:
            confirmed = leftovers & self._leftovers_seen.get(host, set())
            self._leftovers_seen[host] = leftovers
            # An instance placed after the host listed its domains looks missing once.
            sightings = set(missing)
            missing = sorted(sightings & self._missing_seen.get(host, set()))
            self._missing_seen[host] = sightings
        for instance_uuid in sorted(confirmed):
            LOG.warning("host %s runs leftover domain %s; terminating it", host, instance_uuid)
            self._compute.terminate_instance(host, instance_uuid, envelope.new_request_id())
        for instance_uuid in missing:
            LOG.warning("host %s does not run instance %s, which it should", host, instance_uuid)
        for instance_uuid in unrecorded.unknown:
            LOG.warning("host %s runs domain %s, which has no record", host, instance_uuid)
        for difference in usage:
            LOG.warning(
                "host %s: claims add up to %s but allocations to %s",
                host,
                difference.claimed,
                difference.allocated,
            )
        audit = {
            "inSync": not (missing or unrecorded.unknown or leftovers or usage),
            "lastRun": status_mod.timestamp(datetime.datetime.now(datetime.UTC)),
            "missingDomains": sorted(missing),
            "unknownDomains": sorted(unrecorded.unknown),
            "leftoverDomains": sorted(leftovers),
            "usageMatchesAllocations": not usage,
        }
        self._kube.patch_hypervisor_status(host, {"audit": audit})
        return audit
