"""The periodic audit that converges records, claims and what hosts really run.

Each agent's heartbeat lists the instances its hypervisor runs; the audit compares that
with the records and the claims and writes what it finds into the Hypervisor's status
(``status.audit``), with a log line per difference (``status.audit.inSync`` sums it up); findings
that stay the same are written again only every ``AUDIT_STATUS_REFRESH_S``. A report
is older than the database's view, so a difference is acted on only when two audits in a
row agree: then domains whose record is deleted, or whose live record is on another host
(a build that failed here and was rescheduled), are terminated. A domain the database never
knew is reported and left alone.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kubenova.conductor import instance_status
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.k8s.client import KubeClient
from kubenova.rpc import compute_rpcapi, envelope

LOG = logging.getLogger(__name__)


# Findings that did not change are written again only this often (to refresh ``lastRun``):
# with a hundred hosts audited every minute, rewriting each unchanged status was more than
# one Hypervisor write a second. A change is written at the audit that finds it.
AUDIT_STATUS_REFRESH_S = 300.0


class HostAuditor:
    """Remembers each host's last report and audits the hosts against them.

    ``clock`` (seconds, monotonic) times the refresh of unchanged findings.
    """

    def __init__(
        self,
        session_factory: db_engine.SessionFactory,
        kube: KubeClient,
        compute: compute_rpcapi.ComputeAPI,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session_factory = session_factory
        self._kube = kube
        self._compute = compute
        self._clock = clock
        self._lock = threading.Lock()
        self._reported: dict[str, tuple[str, ...]] = {}
        self._leftovers_seen: dict[str, set[str]] = {}
        self._missing_seen: dict[str, set[str]] = {}
        # Host -> the findings last written into its status, and when (``clock``).
        self._written: dict[str, tuple[dict[str, Any], float]] = {}

    def record_report(self, host: str, instance_uuids: tuple[str, ...]) -> None:
        with self._lock:
            self._reported[host] = instance_uuids

    def forget_report(self, host: str) -> None:
        """The host is down or gone: its last report no longer says what it runs. Until it
        reports again it is not audited, and nothing is concluded from what was seen."""
        with self._lock:
            self._reported.pop(host, None)
            self._leftovers_seen.pop(host, None)
            self._missing_seen.pop(host, None)

    def forget_written(self, host: str) -> None:
        """The host's object changed or went (its status may be empty): write next time."""
        with self._lock:
            self._written.pop(host, None)

    def audit_all(self) -> dict[str, dict[str, Any]]:
        """Audit every host that has reported: three statements for all of them."""
        with self._lock:
            reports = dict(self._reported)
        return self._audit(reports)

    def audit(self, host: str) -> dict[str, Any] | None:
        """Audit ``host`` against its last report; None until it has reported."""
        with self._lock:
            reported = self._reported.get(host)
        if reported is None:
            return None
        return self._audit({host: reported})[host]

    def _audit(self, reports: dict[str, tuple[str, ...]]) -> dict[str, dict[str, Any]]:
        """Audit each host of ``reports`` (host -> the uuids it reported) in one transaction."""
        if not reports:
            return {}
        with db_engine.transaction(self._session_factory) as session:
            usage = db_api.usage_audit(session)
            missing = db_api.instances_not_reported_by_host(
                session, reports, exclude_vm_states=_MAY_HAVE_NO_DOMAIN
            )
            unrecorded = db_api.reported_without_live_record_by_host(session, reports)
        return {
            host: self._conclude(
                host, missing[host], unrecorded[host], [d for d in usage if d.host == host]
            )
            for host in sorted(reports)
        }

    def _conclude(
        self,
        host: str,
        missing: list[str],
        unrecorded: db_api.UnrecordedDomains,
        usage: list[db_api.UsageDiscrepancy],
    ) -> dict[str, Any]:
        """Act on what two audits in a row agree on, log each difference, write the status."""
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
        findings = {
            "inSync": not (missing or unrecorded.unknown or leftovers or usage),
            "missingDomains": sorted(missing),
            "unknownDomains": sorted(unrecorded.unknown),
            "leftoverDomains": sorted(leftovers),
            "usageMatchesAllocations": not usage,
        }
        audit = {
            **findings,
            "lastRun": instance_status.timestamp(datetime.datetime.now(datetime.UTC)),
        }
        self._write(host, findings, audit)
        return audit

    def _write(self, host: str, findings: dict[str, Any], audit: dict[str, Any]) -> None:
        now = self._clock()
        with self._lock:
            written = self._written.get(host)
        if written is not None:
            written_findings, written_at = written
            if written_findings == findings and now - written_at < AUDIT_STATUS_REFRESH_S:
                return
        self._kube.patch_hypervisor_status(host, {"audit": audit})
        with self._lock:
            self._written[host] = (findings, now)


# Building records whose domain may rightly not exist yet: the build message may not have
# reached the host when it listed its domains.
_MAY_HAVE_NO_DOMAIN = ("building",)
