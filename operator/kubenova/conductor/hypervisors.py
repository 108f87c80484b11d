"""The hypervisor lifecycle: registration and heartbeats, a stopping agent, an administrator's
changes to a Hypervisor object, its deletion, and the periodic check that marks silent hosts
down and keeps every Hypervisor's status true to the database.
"""

from __future__ import annotations

import datetime
import itertools
import logging
import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from kubenova.conductor import audit, hypervisor_spec, hypervisor_status, last_written
from kubenova.conductor.projector import InstanceProjector
from kubenova.config import OperatorSettings
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.db import models
from kubenova.k8s.client import KubeClient
from kubenova.rpc import envelope, payloads

LOG = logging.getLogger(__name__)

# How often a heartbeat reads the Hypervisor object even though its handlers keep the
# database current (a safety net for a missed watch event; as often as the kubelet writes
# an unchanged Node status).
HYPERVISOR_RESYNC_S = 300.0
# How often a heartbeat that changed nothing else refreshes status.lastHeartbeat, on a fleet
# small enough to stay within the budget below.
HEARTBEAT_STATUS_INTERVAL_S = 30.0
# The refreshes of every Hypervisor's status together stay near this many apiserver writes a
# second: each is also a watch event for every client watching Hypervisors. A thousand idle
# hosts refreshed every 30 s cost the apiserver about half a core (docs/benchmarks.md).
HEARTBEAT_STATUS_WRITES_PER_S = 10.0


def heartbeat_status_interval_s(hosts: int) -> float:
    """How often a heartbeat that changed nothing else refreshes a Hypervisor's status on a
    fleet of ``hosts``: every ``HEARTBEAT_STATUS_INTERVAL_S``, or, once that would write more
    than ``HEARTBEAT_STATUS_WRITES_PER_S`` a second, as often as the budget allows (100 s for
    1000 hosts), as the kubelet reports an unchanged Node status only every few minutes."""
    return max(HEARTBEAT_STATUS_INTERVAL_S, hosts / HEARTBEAT_STATUS_WRITES_PER_S)


class _HandledChange(NamedTuple):
    """A change to a Hypervisor object the handler was told of: its labels and spec, and its
    number in the order changes were handled."""

    number: int
    labels: dict[str, str]
    spec: dict[str, Any]


class Hypervisors:
    """Keeps compute node records and Hypervisor objects in step with the agents' reports."""

    def __init__(
        self,
        settings: OperatorSettings,
        session_factory: db_engine.SessionFactory,
        kube: KubeClient,
        projector: InstanceProjector,
        auditor: audit.HostAuditor,
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.kube = kube
        self.projector = projector
        self.auditor = auditor
        # Hypervisor name -> the status this process last wrote to it.
        self.last_written = last_written.LastWritten()
        # Host -> when a heartbeat last read its Hypervisor object (time.monotonic()).
        self._hypervisor_read_at: dict[str, float] = {}
        # Host -> what its last heartbeat that recorded the compute node said of it.
        self._recorded_inventory: dict[str, hypervisor_status.Inventory] = {}
        # Host -> the latest change to its object the Hypervisor handler was told of, so a
        # heartbeat that read the object can tell a newer copy from its own (numbered from
        # one counter: next() on it is atomic).
        self._change_numbers = itertools.count(1)
        self._latest_change: dict[str, _HandledChange] = {}
        # Called when an administrator changed a host, so cached views of hosts (the
        # scheduler's) are read again; the conductor's wiring sets it.
        self.on_hosts_changed: Callable[[], None] = lambda: None
        # Told each heartbeat's host and the guests it lists (a host that evacuations left
        # must drop their guests); the conductor's wiring sets it.
        self.on_report: Callable[[str, tuple[str, ...]], None] = lambda _host, _uuids: None

    def compute_node_report(
        self, report: payloads.ComputeNodeReport, version: str = envelope.VERSION
    ) -> None:
        """Registration and heartbeat: record the node, then project it as a Hypervisor.

        The agent's service version, like Nova's, says what the agent speaks: the report's
        ``service_version`` (the newest contract version the agent implements), or for an
        agent older than 1.2, which leaves it out, ``version``, the one its report came in.

        The Hypervisor object is where administrators label and disable a host and set its
        allocation ratios. The Hypervisor handlers copy its labels and spec into the database
        at once; a heartbeat reads the object only on a host's first report to this process
        and then every ``HYPERVISOR_RESYNC_S``, to create it and to catch a change whose event
        was missed, and applies the spec in the transaction that records the node: a spec set
        before the host's first heartbeat reaches the row that heartbeat creates. The labels
        an agent starts with only seed the object when it is created.

        The handler may be told of a change while a heartbeat reads the object and records
        the node, and find no row to record it in yet. The heartbeat then records the
        handler's copy, not the one it read before; a change the handler is told of after
        that has the next heartbeat read the object again.
        """
        labels: dict[str, str] | None = None
        spec: dict[str, Any] | None = None
        change_seen: int | None = None
        remembered = self.last_written.get(report.host)
        prior_state = remembered.get("state") if remembered is not None else None
        now = time.monotonic()
        resync = now - self._hypervisor_read_at.get(report.host, -math.inf) >= HYPERVISOR_RESYNC_S
        inventory = hypervisor_status.inventory(report)
        service_version = report.service_version or version
        if (
            not resync
            and prior_state == "up"
            and self._recorded_inventory.get(report.host) == inventory
            and hypervisor_status.heartbeat_written_within(remembered, self._refresh_interval_s())
        ):
            # Nothing to record but liveness, and nothing the status would show before its
            # refresh is due (usage is the periodic check's): one statement, not three.
            with db_engine.transaction(self.session_factory) as session:
                _record_liveness(session, report.host, service_version)
            self.auditor.record_report(report.host, report.instance_uuids)
            self.on_report(report.host, report.instance_uuids)
            return
        if resync:
            change_seen = self._latest_change_number(report.host)
            hypervisor = self.kube.ensure_hypervisor(report.host, report.labels)
            labels = dict(hypervisor.get("metadata", {}).get("labels") or {})
            spec = dict(hypervisor.get("spec") or {})
            if prior_state is None:
                prior_state = (hypervisor.get("status") or {}).get("state")
            self._hypervisor_read_at[report.host] = now
        with db_engine.transaction(self.session_factory) as session:
            _record_liveness(session, report.host, service_version)
            handled = self._latest_change.get(report.host)
            if resync and handled is not None and handled.number != change_seen:
                # Told to the handler since this heartbeat began reading: at least as new.
                labels, spec = dict(handled.labels), dict(handled.spec)
                change_seen = handled.number
            node = db_api.compute_node_update_from_report(
                session,
                report.host,
                vcpus=report.vcpus,
                memory_mib=report.memory_mib,
                local_gb=report.disk_gib,
                hypervisor_type=report.hypervisor_type,
                hypervisor_version=report.qemu_version,
                libvirt_version=report.libvirt_version,
                virt_type=report.virt_type,
                cpu_arch=report.cpu_arch,
                running_vms=len(report.instance_uuids),
                labels=labels,
                migration_uri=report.migration_uri,
                console_address=report.console_address,
            )
            spec_changed = False
            if spec is not None:
                node, spec_changed = hypervisor_spec.apply_to_report(
                    session, report.host, spec, node
                )
            status = hypervisor_status.reported_status(node, datetime.datetime.now(datetime.UTC))
        if resync and self._latest_change_number(report.host) != change_seen:
            # The handler may have found no row to record that change in: read the object
            # again at the next heartbeat.
            self._hypervisor_read_at.pop(report.host, None)
        if spec_changed:
            self.on_hosts_changed()
        self._recorded_inventory[report.host] = inventory
        self._write_reported_status(report.host, status, remembered)
        self.auditor.record_report(report.host, report.instance_uuids)
        self.on_report(report.host, report.instance_uuids)
        if prior_state == "down":
            # Back up: its instances said Unknown while it was down; say what they are.
            LOG.warning("hypervisor %s is up", report.host)
            self.projector.project_host(report.host)

    def _refresh_interval_s(self) -> float:
        """How often an unchanged status is refreshed, for the hosts this process records."""
        return heartbeat_status_interval_s(len(self._recorded_inventory))

    def _latest_change_number(self, host: str) -> int | None:
        handled = self._latest_change.get(host)
        return handled.number if handled is not None else None

    def service_stopping(self, stopping: payloads.ServiceStopping) -> None:
        """An agent is stopping: its host is down now, not ``service_down_time`` from now.

        The scheduler stops choosing it at once and its instances say Unknown (builds cast
        meanwhile wait in its durable queue); the next heartbeat brings it back up.
        """
        with db_engine.transaction(self.session_factory) as session:
            known = db_api.service_mark_stopped(session, stopping.host, models.AGENT_BINARY)
        if not known:
            return
        previous = self.last_written.get(stopping.host)
        if previous is None:
            # Nothing written by this process yet (it restarted, or the object changed): what
            # the object shows, so that the agent's last count goes with the host's state.
            hypervisor = self.kube.get_hypervisor(stopping.host) or {}
            previous = dict(hypervisor.get("status") or {})
        self._apply_check(stopping.host, False, {}, previous)

    def _write_reported_status(
        self, host: str, status: dict[str, Any], previous: dict[str, Any] | None
    ) -> None:
        """Patch the status if it changed from ``previous`` (what this process last wrote, if
        anything). A heartbeat that changed only ``lastHeartbeat``, usage or the running
        count refreshes the status only every ``heartbeat_status_interval_s`` (30 s, longer
        on a large fleet), as the kubelet does for a Node's status: liveness itself is in the
        database at every heartbeat, and the periodic check writes usage changes every few
        seconds, so a host taking builds is not written twice per interval."""
        changes = last_written.changed_fields(previous, status)
        if (
            previous is not None
            and hypervisor_status.only_refreshed(previous, changes)
            and hypervisor_status.heartbeat_written_within(previous, self._refresh_interval_s())
        ):
            return
        if not changes:
            return
        self.kube.patch_hypervisor_status(host, status)
        self.last_written.remember(host, status)

    def hypervisor_deleted(self, host: str) -> bool:
        """The Hypervisor object was deleted: forget the host unless something runs there.

        A host whose agent still heartbeats simply registers again (and its object comes
        back); one with instances keeps its records, and the deletion is logged as refused.
        """
        # A recreated object starts with no status: the next heartbeat reads and writes it.
        self._hypervisor_read_at.pop(host, None)
        self._recorded_inventory.pop(host, None)
        self._latest_change.pop(host, None)
        self.last_written.forget(host)
        self.auditor.forget_written(host)
        self.auditor.forget_report(host)
        with db_engine.transaction(self.session_factory) as session:
            if db_api.host_is_up(session, host, self.settings.service_down_time_s):
                LOG.warning("hypervisor %s was deleted while up; it will register again", host)
                return False
            forgotten = db_api.compute_node_delete(session, host)
        if not forgotten:
            LOG.warning("hypervisor %s was deleted but instances are recorded on it", host)
        return forgotten

    def hypervisor_changed(self, host: str, labels: dict[str, str], spec: dict[str, Any]) -> None:
        """An administrator labelled a host, disabled or enabled it, set its allocation ratios
        (or made its object): record it now, in one transaction, and say in the status what
        is in force; the rest of the status is written again at the next check.

        A host with no compute node yet is left to its first heartbeat, which records this
        change, or reads the object again if it recorded an older copy."""
        self._latest_change[host] = _HandledChange(
            next(self._change_numbers), dict(labels), dict(spec)
        )
        self.last_written.forget(host)
        self._recorded_inventory.pop(host, None)
        self.auditor.forget_written(host)
        with db_engine.transaction(self.session_factory) as session:
            node = db_api.compute_node_get(session, host)
            if node is None:
                return
            node.labels = dict(labels)
            node = hypervisor_spec.apply(session, host, spec)
            applied = (
                {
                    **hypervisor_status.disabled_status(node),
                    **hypervisor_status.usage_status(node),
                }
                if node is not None
                else None
            )
        self.on_hosts_changed()
        if applied is not None:
            # Say it is in force: from here on no claim lands on a disabled host, and every
            # claim is held to these ratios.
            self.kube.patch_hypervisor_status(host, applied)

    def check_hypervisors(self) -> dict[str, str]:
        """Mark every Hypervisor down after service_down_time without a heartbeat (or up
        again), and keep its usage and instance count true to the claims while no heartbeat
        refreshes them.

        One query reads all nodes with their heartbeats (as Kubernetes' node lifecycle
        controller walks all Nodes), one more counts the instances placed on each, and status
        is written only where it changed, so idle hosts cost no API writes. When a state
        flips, the instances on that host are projected again, so their phase says Unknown
        while nobody can vouch for them. Returns each host's state.
        """
        with db_engine.transaction(self.session_factory) as session:
            placed = db_api.instance_count_by_host(session)
            views = [
                (
                    record.node.host,
                    db_api.service_is_up(
                        record.last_seen_up, down_time=self.settings.service_down_time_s
                    ),
                    {
                        **hypervisor_status.usage_status(record.node),
                        "instances": placed.get(record.node.host, 0),
                    },
                )
                for record in db_api.compute_nodes_list(session)
            ]
        if any(host not in self.last_written for host, _, _ in views):
            # After a start, learn what the objects say with one LIST instead of a GET each.
            for obj in self.kube.list_hypervisors():
                name = obj.get("metadata", {}).get("name")
                if name and name not in self.last_written:
                    self.last_written.remember(name, dict(obj.get("status") or {}))
        states = {}
        for host, up, usage in views:
            try:
                previous = self.last_written.get(host) or {}
                checked = _with_capacity_condition(host, usage, previous)
                states[host] = self._apply_check(host, up, checked, previous)
            except Exception:
                # One host's trouble must not keep the others from being marked down.
                LOG.exception("checking hypervisor %s failed", host)
        return states

    def _apply_check(
        self, host: str, up: bool, usage: dict[str, Any], previous: dict[str, Any]
    ) -> str:
        state = "up" if up else "down"
        changed = {key: value for key, value in usage.items() if previous.get(key) != value}
        if state != previous.get("state"):
            changed["state"] = state
        if not up and previous.get("runningInstances") is not None:
            # What the agent last counted running is nobody's word while it is down; the
            # placed count (``instances``) stays, kept true to the claims.
            changed["runningInstances"] = None
        if changed:
            # A down host whose object is gone was deleted while nobody handled it (say,
            # before its object carried the finalizer): forget it now, as the delete
            # handler would have, so it stops counting in every scheduling pass.
            gone = not self.kube.patch_hypervisor_status(host, changed)
            if gone and not up and self.hypervisor_deleted(host):
                LOG.info("hypervisor %s has no object and is down: forgotten", host)
                return state
            # A node whose object was deleted (or not made yet) is remembered all the same,
            # so it is not patched again every pass; a new object is forgotten by
            # hypervisor_changed and gets its status at the next pass. The whole status is
            # remembered, as a refused hypervisor_deleted forgot what was known before.
            self.last_written.remember(host, {**previous, **changed})
        if not up:
            # Its last report grows older with every audit: acted on, each audit would cast
            # the same terminates again into the queue of a host that takes none. It is
            # audited again from its next report.
            self.auditor.forget_report(host)
        if "state" in changed:
            LOG.warning("hypervisor %s is %s", host, state)
            self.projector.project_host(host)
        return state


def _with_capacity_condition(
    host: str, usage: dict[str, Any], previous: dict[str, Any]
) -> dict[str, Any]:
    """``usage`` with the status's conditions, ``OverCapacity`` said from it (logged when it
    turns true)."""
    checked = {
        **usage,
        "conditions": hypervisor_status.capacity_conditions(usage, previous.get("conditions")),
    }
    if hypervisor_status.is_over_capacity(checked) and not hypervisor_status.is_over_capacity(
        previous
    ):
        LOG.warning(
            "hypervisor %s is over capacity: it takes no new instance until usage falls", host
        )
    return checked


def _record_liveness(session: Any, host: str, version: str) -> None:
    """The agent service of ``host``, speaking contract ``version``, was seen up now (its
    heartbeat's one statement)."""
    db_api.service_record_heartbeat(session, host, models.AGENT_BINARY, f"compute.{host}", version)
