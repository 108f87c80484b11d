"""The conductor: writes what agents report, and nothing else writes for them.

Agents hold no database credentials. Each report arrives here as a message whose
``user_id`` RabbitMQ has verified, so the conductor can refuse a report about an
instance that is not assigned to the sender's host before it writes anything.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import logging
import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

from kubenova.compute import states
from kubenova.conductor import audit, faults, status_writer, written_status
from kubenova.conductor import status as status_mod
from kubenova.config import MessagingSettings, OperatorSettings
from kubenova.db import api as db_api
from kubenova.db import engine as db_engine
from kubenova.db import models
from kubenova.k8s.client import KubeClient
from kubenova.rpc import compute_rpcapi, envelope, payloads
from kubenova.rpc.amqp import PermanentFailure

LOG = logging.getLogger(__name__)

# Every agent report names the host it is about; the conductor checks the sender against it.
_Report = TypeVar(
    "_Report",
    payloads.ComputeNodeReport,
    payloads.InstanceUpdate,
    payloads.InstanceBuildFailed,
    payloads.InstanceTerminated,
    payloads.ServiceStopping,
)


# How often a heartbeat reads the Hypervisor object even though its handlers keep the
# database current (a safety net for a missed watch event; as often as the kubelet writes
# an unchanged Node status).
HYPERVISOR_RESYNC_S = 300.0
# How often a heartbeat that changed nothing else refreshes status.lastHeartbeat.
HEARTBEAT_STATUS_INTERVAL_S = 30.0


@dataclasses.dataclass(frozen=True)
class Projection:
    """A status to write into one Instance (see ``ConductorManager.projection``)."""

    uid: str
    namespace: str
    name: str
    status: dict[str, Any]


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class ConductorManager:
    """Handles the ``conductor`` queue and keeps Kubernetes status true to the database."""

    def __init__(
        self,
        settings: OperatorSettings,
        session_factory: db_engine.SessionFactory,
        kube: KubeClient,
        compute: compute_rpcapi.ComputeAPI,
    ) -> None:
        self.settings = settings
        self.session_factory = session_factory
        self.kube = kube
        self.compute = compute
        self.auditor = audit.HostAuditor(session_factory, kube, compute)
        # Instance uid -> the status last written to it; Hypervisor name -> likewise.
        self.written = written_status.WrittenStatus()
        self.written_hypervisors = written_status.WrittenStatus()
        # "namespace/name" -> the status last written to that ServerGroup.
        self.written_server_groups = written_status.WrittenStatus()
        # Host -> when a heartbeat last read its Hypervisor object (time.monotonic()).
        self._hypervisor_read_at: dict[str, float] = {}
        # Host -> what its last heartbeat that recorded the compute node said of it.
        self._recorded_inventory: dict[str, _Inventory] = {}
        # Called when an administrator changed a host, so cached views of hosts (the
        # scheduler's) are read again; the runtime wires it.
        self.on_hosts_changed: Callable[[], None] = lambda: None
        # Every Instance status write goes through it, in order per instance.
        self.status_writer: status_writer.StatusWriter[Projection] = status_writer.StatusWriter(
            self._patch_projection, delay_s=settings.building_status_delay_s
        )

    # -- dispatch -----------------------------------------------------------------------

    def handle(self, message: envelope.Envelope, user_id: str | None) -> None:
        """Dispatch one agent report after checking who sent it."""
        method = message.method
        if method == "compute_node_report":
            self.compute_node_report(
                self._checked(payloads.ComputeNodeReport, message, user_id), message.version
            )
        elif method == "instance_update":
            self.instance_update(self._checked(payloads.InstanceUpdate, message, user_id))
        elif method == "instance_build_failed":
            self.instance_build_failed(
                self._checked(payloads.InstanceBuildFailed, message, user_id)
            )
        elif method == "service_stopping":
            self.service_stopping(self._checked(payloads.ServiceStopping, message, user_id))
        elif method == "instance_terminated":
            self.instance_terminated(self._checked(payloads.InstanceTerminated, message, user_id))
        else:
            raise PermanentFailure(f"the conductor has no method {method!r}")

    def _checked(
        self, payload_type: type[_Report], message: envelope.Envelope, user_id: str | None
    ) -> _Report:
        """The message's payload, once its sender is known to be the host it names."""
        payload = payload_type.model_validate(message.args)
        self._check_sender(user_id, payload.host, message.method)
        return payload

    @staticmethod
    def _check_sender(user_id: str | None, host: str, method: str) -> None:
        expected = MessagingSettings.agent_user(host)
        if user_id != expected:
            raise PermanentFailure(
                f"{method} about host {host!r} was sent by {user_id!r}, not {expected!r}"
            )

    # -- reports ------------------------------------------------------------------------

    def compute_node_report(
        self, report: payloads.ComputeNodeReport, version: str = envelope.VERSION
    ) -> None:
        """Registration and heartbeat: record the node, then project it as a Hypervisor.

        The agent's service version, like Nova's, says what the agent speaks: the report's
        ``service_version`` (the newest contract version the agent implements), or for an
        agent older than 1.2, which leaves it out, ``version``, the one its report came in.

        The Hypervisor object is where administrators label and disable a host. The
        Hypervisor handlers copy its labels and ``spec.disabled`` into the database at once;
        a heartbeat reads the object only on a host's first report to this process and then
        every ``HYPERVISOR_RESYNC_S``, to create it and to catch a change whose event was
        missed. The labels an agent starts with only seed the object when it is created.
        """
        labels: dict[str, str] | None = None
        spec: dict[str, Any] | None = None
        remembered = self.written_hypervisors.get(report.host)
        prior_state = remembered.get("state") if remembered is not None else None
        now = time.monotonic()
        resync = now - self._hypervisor_read_at.get(report.host, -math.inf) >= HYPERVISOR_RESYNC_S
        inventory = _inventory(report)
        if (
            not resync
            and prior_state == "up"
            and self._recorded_inventory.get(report.host) == inventory
            and _heartbeat_written_within(remembered, HEARTBEAT_STATUS_INTERVAL_S)
        ):
            # Nothing to record but liveness, and nothing the status would show before its
            # refresh is due (usage is the periodic check's): one statement, not three.
            with db_engine.transaction(self.session_factory) as session:
                _record_liveness(session, report.host, report.service_version or version)
            self.auditor.record_report(report.host, report.instance_uuids)
            return
        if resync:
            hypervisor = self.kube.ensure_hypervisor(report.host, report.labels)
            labels = dict(hypervisor.get("metadata", {}).get("labels") or {})
            spec = dict(hypervisor.get("spec") or {})
            if prior_state is None:
                prior_state = (hypervisor.get("status") or {}).get("state")
            self._hypervisor_read_at[report.host] = now
        with db_engine.transaction(self.session_factory) as session:
            _record_liveness(session, report.host, report.service_version or version)
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
            )
            if spec is not None and bool(spec.get("disabled", False)) != node.disabled:
                changed = db_api.compute_node_set_disabled(
                    session, report.host, bool(spec.get("disabled")), spec.get("disabledReason")
                )
                if changed is not None:
                    node = node._replace(
                        disabled=changed.disabled, disabled_reason=changed.disabled_reason
                    )
            hypervisor_status = _hypervisor_status(node, utcnow(), up=True)
        self._recorded_inventory[report.host] = inventory
        self._write_hypervisor_status(report.host, hypervisor_status, remembered)
        self.auditor.record_report(report.host, report.instance_uuids)
        if prior_state == "down":
            # Back up: its instances said Unknown while it was down; say what they are.
            LOG.warning("hypervisor %s is up", report.host)
            self._project_instances_on(report.host)

    def service_stopping(self, stopping: payloads.ServiceStopping) -> None:
        """An agent is stopping: its host is down now, not ``service_down_time`` from now.

        The scheduler stops choosing it at once and its instances say Unknown (builds cast
        meanwhile wait in its durable queue); the next heartbeat brings it back up.
        """
        with db_engine.transaction(self.session_factory) as session:
            known = db_api.service_mark_stopped(session, stopping.host, models.AGENT_BINARY)
        if known:
            previous = self.written_hypervisors.get(stopping.host) or {}
            self._apply_hypervisor_check(stopping.host, False, {}, previous)

    def _write_hypervisor_status(
        self, host: str, hypervisor_status: dict[str, Any], previous: dict[str, Any] | None
    ) -> None:
        """Patch the status if it changed from ``previous`` (what this process last wrote, if
        anything). A heartbeat that changed only ``lastHeartbeat``, usage or the running
        count refreshes the status only every ``HEARTBEAT_STATUS_INTERVAL_S``, as the
        kubelet does for a Node's status: liveness itself is in the database at every
        heartbeat, and the periodic check writes usage changes every few seconds, so a host
        taking builds is not written twice per interval."""
        changes = written_status.changed_fields(previous, hypervisor_status)
        if (
            previous is not None
            and _only_refreshed(previous, changes)
            and _heartbeat_written_within(previous, HEARTBEAT_STATUS_INTERVAL_S)
        ):
            return
        if not changes:
            return
        self.kube.patch_hypervisor_status(host, hypervisor_status)
        self.written_hypervisors.remember(host, hypervisor_status)

    def hypervisor_deleted(self, host: str) -> bool:
        """The Hypervisor object was deleted: forget the host unless something runs there.

        A host whose agent still heartbeats simply registers again (and its object comes
        back); one with instances keeps its records, and the deletion is logged as refused.
        """
        # A recreated object starts with no status: the next heartbeat reads and writes it.
        self._hypervisor_read_at.pop(host, None)
        self._recorded_inventory.pop(host, None)
        self.written_hypervisors.forget(host)
        self.auditor.forget_written(host)
        with db_engine.transaction(self.session_factory) as session:
            if host_is_up(session, host, self.settings.service_down_time_s):
                LOG.warning("hypervisor %s was deleted while up; it will register again", host)
                return False
            forgotten = db_api.compute_node_delete(session, host)
        if not forgotten:
            LOG.warning("hypervisor %s was deleted but instances are recorded on it", host)
        return forgotten

    def hypervisor_changed(self, host: str, labels: dict[str, str], spec: dict[str, Any]) -> None:
        """An administrator labelled, disabled or enabled a host (or made its object): record
        it now; the object's status is written again at the next check."""
        self.written_hypervisors.forget(host)
        self._recorded_inventory.pop(host, None)
        self.auditor.forget_written(host)
        with db_engine.transaction(self.session_factory) as session:
            node = db_api.compute_node_get(session, host)
            if node is None:
                return  # its first heartbeat will record it
            node.labels = dict(labels)
            node = db_api.compute_node_set_disabled(
                session, host, bool(spec.get("disabled", False)), spec.get("disabledReason")
            )
            applied = _disabled_status(node) if node is not None else None
        self.on_hosts_changed()
        if applied is not None:
            # Say it is in force: from here on no claim lands on a disabled host.
            self.kube.patch_hypervisor_status(host, applied)

    def instance_update(self, update: payloads.InstanceUpdate) -> None:
        """Record the host's view of one instance and project it into status.

        A report about an instance whose record was deleted (its host was down at the
        time) reaps the leftover domain: the conductor casts terminate back to the host.
        """
        projection = None
        with db_engine.transaction(self.session_factory) as session:
            record = db_api.instance_lock(session, update.instance_uuid, read_deleted=True)
            if record is None:
                # Not ours at all: report it, never destroy what we did not make.
                LOG.warning(
                    "host %s reports instance %s, which has no record",
                    update.host,
                    update.instance_uuid,
                )
                return
            deleted = bool(record.deleted)
            if not deleted and record.host != update.host:
                raise PermanentFailure(
                    f"host {update.host!r} reported instance {update.instance_uuid}, "
                    f"which is assigned to {record.host!r}"
                )
            if not deleted:
                values: dict[str, Any] = {
                    "power_state": update.power_state,
                    "addresses": list(update.addresses),
                }
                # A delete in progress owns the states; the agent's view only adds power.
                if record.task_state != states.DELETING and record.vm_state != states.ERROR:
                    values["vm_state"] = update.vm_state
                    values["task_state"] = update.task_state
                if update.launched_at is not None and record.launched_at is None:
                    values["launched_at"] = update.launched_at
                    # Nova resets a host's build failure count on a successful build.
                    db_api.compute_node_clear_build_failures(session, update.host)
                if all(getattr(record, key) == value for key, value in values.items()):
                    return  # what the record already says (the agent's "spawning", say)
                db_api.instance_set(session, record, **values)
                # The host just reported, so it is up.
                projection = self.projection(session, record, host_up=True)
        if deleted:
            LOG.warning(
                "host %s still runs deleted instance %s; reaping it",
                update.host,
                update.instance_uuid,
            )
            self.compute.terminate_instance(
                update.host, update.instance_uuid, envelope.new_request_id()
            )
            return
        self.write_status(projection)

    def instance_build_failed(self, failure: payloads.InstanceBuildFailed) -> None:
        """A build failed on its host: reschedule to an alternate, or go to Error.

        As Nova's conductor does: the failed host's claim is freed and its build failures
        counted (the BuildFailureWeigher avoids it), then the alternates chosen at
        scheduling time are claimed in order, up to ``max_attempts`` builds in all. A
        failure that is not reschedulable (a bad image) or the last attempt ends in Error
        with a fault that lists every host tried and why it failed, its code saying which
        way it ended (:mod:`kubenova.conductor.faults`).
        """
        with db_engine.transaction(self.session_factory) as session:
            record = db_api.instance_get(session, failure.instance_uuid)
            if record is None or record.host != failure.host:
                LOG.warning(
                    "ignoring a build failure of %s from %s", failure.instance_uuid, failure.host
                )
                return
            if record.task_state == states.DELETING:
                return  # the delete in flight finishes the job
            tried = [*(record.tried_hosts or []), {"host": failure.host, "reason": failure.message}]
            db_api.compute_node_record_build_failure(session, failure.host)
            db_api.instance_update(session, failure.instance_uuid, tried_hosts=tried)
            attempts = record.attempts or 1
            alternates = list(record.alternates or [])
            namespace, name = record.namespace, record.name
            flavor = dict(record.flavor)
        db_api.release_resources(self.session_factory, failure.instance_uuid, clear_host=True)
        refused: list[str] = []
        if failure.reschedulable and attempts < self.settings.max_attempts:
            refusals = self._reschedule(
                failure.instance_uuid,
                namespace,
                name,
                flavor,
                alternates,
                attempts,
                {t["host"] for t in tried},
            )
            if refusals is None:
                return
            refused = refusals
        message = "build failed on {} host(s): {}".format(
            len(tried), "; ".join(f"{t['host']}: {t['reason']}" for t in tried)
        )
        if refused:
            # Why the instance did not get another attempt while it had some left.
            message += f"; no alternate took it ({', '.join(refused)})"
        with db_engine.transaction(self.session_factory) as session:
            db_api.fault_create(
                session,
                failure.instance_uuid,
                faults.build_fault_code(failure, refused),
                message,
                failure.reason,
                failure.host,
            )
            db_api.instance_update(
                session, failure.instance_uuid, vm_state=states.ERROR, task_state=None
            )
        self.project_instance(failure.instance_uuid, namespace, name)

    def _reschedule(
        self,
        instance_uuid: str,
        namespace: str,
        name: str,
        flavor: dict[str, Any],
        alternates: list[str],
        attempts: int,
        tried: set[str],
    ) -> list[str] | None:
        """Claim the next alternate that takes the instance and cast the build there; None
        when one did, else why each alternate refused ("h2: insufficient memory")."""
        group = self._server_group_claim(namespace, name)
        refused: list[str] = []
        for index, host in enumerate(alternates):
            if host in tried:
                continue
            claimed = db_api.claim_resources(
                self.session_factory,
                instance_uuid,
                host,
                flavor["vcpus"],
                flavor["memory_mib"],
                flavor["disk_gib"],
                server_group=group,
            )
            if not claimed:
                refused.append(f"{host}: {claimed.refusal}")
                continue
            with db_engine.transaction(self.session_factory) as session:
                record = db_api.instance_update(
                    session,
                    instance_uuid,
                    attempts=attempts + 1,
                    alternates=alternates[index + 1 :],
                    vm_state=states.BUILDING,
                    task_state=states.SPAWNING,
                    power_state=states.NOSTATE,
                )
                instance = instance_payload(record)
                request_id = record.request_id or envelope.new_request_id()
            LOG.warning("rescheduling instance %s to %s", instance_uuid, host)
            self.project_instance(instance_uuid, namespace, name)
            self.compute.build_and_run_instance(host, instance, request_id)
            return None
        return refused

    def _server_group_claim(self, namespace: str, name: str) -> db_api.ServerGroupClaim | None:
        obj = self.kube.get_instance(namespace, name) or {}
        group_name = (obj.get("spec") or {}).get("serverGroup")
        if not group_name:
            return None
        with db_engine.transaction(self.session_factory) as session:
            group = db_api.server_group_get(session, namespace, group_name)
            return db_api.ServerGroupClaim.from_group(group) if group is not None else None

    def instance_terminated(self, event: payloads.InstanceTerminated) -> None:
        """The host destroyed the domain: free the claim and soft-delete the record."""
        with db_engine.transaction(self.session_factory) as session:
            record = db_api.instance_get(session, event.instance_uuid)
            if record is None:
                return
            if record.host not in (None, event.host):
                raise PermanentFailure(
                    f"host {event.host!r} terminated {event.instance_uuid}, "
                    f"which is assigned to {record.host!r}"
                )
        db_api.release_resources(self.session_factory, event.instance_uuid)
        with db_engine.transaction(self.session_factory) as session:
            db_api.instance_update(session, event.instance_uuid, power_state=states.NOSTATE)
            db_api.server_group_remove_member(session, event.instance_uuid)
            db_api.instance_soft_delete(session, event.instance_uuid)
        self.written.forget(event.instance_uuid)

    # -- projection ---------------------------------------------------------------------

    def project_instance(
        self,
        instance_uuid: str,
        namespace: str,
        name: str,
        *,
        fault: dict[str, str] | None = None,
        current_status: dict[str, Any] | None = None,
    ) -> None:
        """Write the record's projection into the Instance's status, if it changed."""
        with db_engine.transaction(self.session_factory) as session:
            record = db_api.instance_get(session, instance_uuid)
            if record is None:
                return
            projection = self.projection(
                session, record, fault=fault, current_status=current_status
            )
        self.write_status(projection)

    def projection(
        self,
        session: Any,
        record: models.Instance,
        *,
        host_up: bool | None = None,
        fault: dict[str, str] | None = None,
        current_status: dict[str, Any] | None = None,
    ) -> Projection | None:
        """The status ``record`` projects to, inside the caller's transaction; None when the
        object already says so or is gone. Write it with :meth:`write_status` after commit.

        ``host_up`` is asked of the database unless the caller knows it (an agent that just
        reported, a host just claimed). The status this process last wrote stands in for a
        GET (see ``written_status``); failing that, ``current_status`` (a caller that holds
        the object passes its status), and failing that, the object is read. ``session``
        may be None: what the database must add (whether the host is up, the latest fault
        of a record in Error) is then read in a short transaction of its own, which ends
        before the apiserver is asked anything.
        """
        needs_database = (host_up is None and record.host is not None) or (
            fault is None and record.vm_state == states.ERROR
        )
        if needs_database and session is None:
            with db_engine.transaction(self.session_factory) as own:
                host_up, fault = self._database_view(own, record, host_up, fault)
        elif needs_database:
            host_up, fault = self._database_view(session, record, host_up, fault)
        previous = self.written.get(record.uuid) or current_status
        if previous is None:
            current = self.kube.get_instance(record.namespace, record.name)
            if current is None:
                return None
            previous = dict(current.get("status") or {})
        new_status = status_mod.project(
            record,
            previous_conditions=previous.get("conditions"),
            host_up=True if host_up is None else host_up,  # None: no host to be down
            fault=fault,
        )
        if not written_status.changed_fields(previous, new_status):
            self.written.remember(record.uuid, new_status)
            return None
        return Projection(record.uuid, record.namespace, record.name, new_status)

    def _database_view(
        self,
        session: Any,
        record: models.Instance,
        host_up: bool | None,
        fault: dict[str, str] | None,
    ) -> tuple[bool, dict[str, str] | None]:
        """``host_up`` and ``fault`` for a projection, read from the database when not given."""
        if host_up is None:
            host_up = record.host is None or host_is_up(
                session, record.host, self.settings.service_down_time_s
            )
        if fault is None and record.vm_state == states.ERROR:
            latest = db_api.fault_get_latest(session, record.uuid)
            if latest is not None:
                fault = {"reason": latest.details or "Error", "message": latest.message}
        return host_up, fault

    def write_status(self, projection: Projection | None, *, defer: bool = False) -> None:
        """Patch a projection into its Instance's status and remember it.

        It is remembered as soon as it is submitted, so the next projection is compared with
        it even while it waits. ``defer`` lets a newer projection of the same instance
        replace it within ``building_status_delay_s`` (see ``status_writer``).
        """
        if projection is None:
            return
        self.written.remember(projection.uid, projection.status)
        self.status_writer.submit(projection, defer=defer)

    def _patch_projection(self, projection: Projection) -> None:
        try:
            written = self.kube.patch_instance_status(
                projection.namespace, projection.name, projection.status
            )
        except Exception:
            # Not written after all: the retry (or the next projection) must not take the
            # remembered status for the object's.
            self.written.forget(projection.uid)
            raise
        if not written:
            self.written.forget(projection.uid)

    def check_hypervisors(self) -> dict[str, str]:
        """Mark every Hypervisor down after service_down_time without a heartbeat (or up
        again), and keep its usage true to the claims while no heartbeat refreshes it.

        One query reads all nodes with their heartbeats (as Kubernetes' node lifecycle
        controller walks all Nodes), and status is written only where it changed, so idle
        hosts cost no API writes. When a state flips, the instances on that host are
        projected again, so their phase says Unknown while nobody can vouch for them.
        Returns each host's state.
        """
        with db_engine.transaction(self.session_factory) as session:
            views = [
                (
                    record.node.host,
                    db_api.service_is_up(
                        record.last_seen_up, down_time=self.settings.service_down_time_s
                    ),
                    _usage_status(record.node),
                )
                for record in db_api.compute_nodes_list(session)
            ]
        if any(host not in self.written_hypervisors for host, _, _ in views):
            # After a start, learn what the objects say with one LIST instead of a GET each.
            for obj in self.kube.list_hypervisors():
                name = obj.get("metadata", {}).get("name")
                if name and name not in self.written_hypervisors:
                    self.written_hypervisors.remember(name, dict(obj.get("status") or {}))
        states = {}
        for host, up, usage in views:
            try:
                states[host] = self._apply_hypervisor_check(
                    host, up, usage, self.written_hypervisors.get(host) or {}
                )
            except Exception:
                # One host's trouble must not keep the others from being marked down.
                LOG.exception("checking hypervisor %s failed", host)
        return states

    def _apply_hypervisor_check(
        self, host: str, up: bool, usage: dict[str, Any], previous: dict[str, Any]
    ) -> str:
        state = "up" if up else "down"
        changed = {key: value for key, value in usage.items() if previous.get(key) != value}
        if state != previous.get("state"):
            changed["state"] = state
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
            self.written_hypervisors.remember(host, {**previous, **changed})
        if "state" in changed:
            LOG.warning("hypervisor %s is %s", host, state)
            self._project_instances_on(host)
        return state

    def project_server_groups(self) -> int:
        """Write each ServerGroup's ``memberCount`` and members per host where they changed;
        how many objects were written. Periodic: membership follows claims, reschedules and
        deletes in several places, and one pass over all groups is two statements."""
        with db_engine.transaction(self.session_factory) as session:
            usages = db_api.server_group_usage_all(session)
        written = 0
        for usage in usages:
            key = f"{usage.namespace}/{usage.name}"
            previous = self.written_server_groups.get(key)
            if previous is None:
                obj = self.kube.get_server_group(usage.namespace, usage.name)
                if obj is None:
                    # Its object is gone: remember the figures so it is not read every pass.
                    self.written_server_groups.remember(
                        key, {"memberCount": usage.member_count, "hosts": dict(usage.hosts)}
                    )
                    continue
                previous = dict(obj.get("status") or {})
            hosts: dict[str, int | None] = dict(usage.hosts)
            # A merge patch keeps map keys it is not told about: null removes a host.
            hosts.update({h: None for h in previous.get("hosts") or {} if h not in usage.hosts})
            status: dict[str, Any] = {"memberCount": usage.member_count, "hosts": hosts}
            if (
                previous.get("memberCount") == usage.member_count
                and (previous.get("hosts") or {}) == usage.hosts
            ):
                continue
            if self.kube.patch_server_group_status(usage.namespace, usage.name, status):
                written += 1
            self.written_server_groups.remember(
                key, {"memberCount": usage.member_count, "hosts": dict(usage.hosts)}
            )
        return written

    def _project_instances_on(self, host: str) -> None:
        """Project every instance on ``host`` again (its up/down state changed)."""
        with db_engine.transaction(self.session_factory) as session:
            affected = [
                (record.uuid, record.namespace, record.name)
                for record in db_api.instance_get_all(session, host=host)
            ]
        for instance_uuid, namespace, name in affected:
            self.project_instance(instance_uuid, namespace, name)


def instance_payload(record: models.Instance) -> payloads.InstancePayload:
    """What a host needs to build ``record``, from the record's own snapshots."""
    flavor, image = record.flavor, record.image
    user_data = None
    if record.user_data is not None:
        user_data = base64.b64decode(record.user_data).decode()
    return payloads.InstancePayload(
        uuid=record.uuid,
        name=record.name,
        namespace=record.namespace,
        hostname=record.hostname or record.name,
        vcpus=flavor["vcpus"],
        memory_mib=flavor["memory_mib"],
        disk_gib=flavor["disk_gib"],
        image=payloads.ImagePayload(
            name=image["name"],
            url=image["url"],
            sha256=image["sha256"],
            disk_format=image["disk_format"],
        ),
        user_data=user_data,
        ssh_authorized_keys=tuple(record.ssh_authorized_keys or ()),
    )


def host_is_up(session: Any, host: str, down_time_s: int) -> bool:
    """Whether ``host``'s agent reported within ``down_time_s`` (Nova's servicegroup rule)."""
    service = db_api.service_get(session, host, models.AGENT_BINARY)
    return service is not None and db_api.service_is_up(service.last_seen_up, down_time=down_time_s)


def _usage(capacity: int, ratio: float, reserved: int, used: int) -> dict[str, Any]:
    allocatable = int((capacity - reserved) * ratio)
    return {
        "capacity": capacity,
        "allocatable": allocatable,
        "used": used,
        "display": f"{used}/{allocatable}",
    }


def _usage_status(node: models.ComputeNode | db_api.ReportedNode) -> dict[str, Any]:
    """Capacity, allocatable and claimed usage of each resource, as the claims hold them."""
    return {
        "vcpus": _usage(node.vcpus, node.cpu_allocation_ratio, 0, node.vcpus_used),
        "memoryMiB": _usage(
            node.memory_mib,
            node.ram_allocation_ratio,
            node.reserved_host_memory_mib,
            node.memory_mib_used,
        ),
        "diskGiB": _usage(
            node.local_gb,
            node.disk_allocation_ratio,
            node.reserved_host_disk_gib,
            node.local_gb_used,
        ),
    }


# Hypervisor status a heartbeat refreshes on its own schedule (see _write_hypervisor_status):
# these fields, and the usage figures of each resource. Anything else (state, capacity,
# allocatable, versions) is written as soon as it changes.
_HEARTBEAT_REFRESH_FIELDS = frozenset({"lastHeartbeat", "runningInstances"})
_USAGE_FIELDS = frozenset({"vcpus", "memoryMiB", "diskGiB"})
_USAGE_FIGURES = frozenset({"used", "display"})


class _Inventory(NamedTuple):
    """What a heartbeat records of its compute node, apart from liveness."""

    vcpus: int
    memory_mib: int
    disk_gib: int
    hypervisor_type: str
    qemu_version: str
    libvirt_version: str
    virt_type: str
    cpu_arch: str
    running_vms: int


def _inventory(report: payloads.ComputeNodeReport) -> _Inventory:
    return _Inventory(
        report.vcpus,
        report.memory_mib,
        report.disk_gib,
        report.hypervisor_type,
        report.qemu_version,
        report.libvirt_version,
        report.virt_type,
        report.cpu_arch,
        len(report.instance_uuids),
    )


def _record_liveness(session: Any, host: str, version: str) -> None:
    """The agent service of ``host``, speaking contract ``version``, was seen up now (its
    heartbeat's one statement)."""
    db_api.service_record_heartbeat(session, host, models.AGENT_BINARY, f"compute.{host}", version)


def _heartbeat_written_within(status: dict[str, Any] | None, seconds: float) -> bool:
    """Whether ``status`` (as last written) carries a lastHeartbeat younger than ``seconds``."""
    written = status_mod.parse_timestamp((status or {}).get("lastHeartbeat"))
    return written is not None and (utcnow() - written).total_seconds() < seconds


def _only_refreshed(previous: dict[str, Any], changes: dict[str, Any]) -> bool:
    """True when ``changes`` to a Hypervisor status touch only what a heartbeat refreshes."""

    def without_figures(value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {key: item for key, item in value.items() if key not in _USAGE_FIGURES}

    return all(
        key in _HEARTBEAT_REFRESH_FIELDS
        or (key in _USAGE_FIELDS and without_figures(value) == without_figures(previous.get(key)))
        for key, value in changes.items()
    )


def _hypervisor_status(
    node: db_api.ReportedNode, now: datetime.datetime, *, up: bool
) -> dict[str, Any]:
    return {
        "state": "up" if up else "down",
        "lastHeartbeat": status_mod.timestamp(now),
        "virtType": node.virt_type,
        "hypervisorType": node.hypervisor_type,
        "cpuArch": node.cpu_arch,
        "libvirtVersion": node.libvirt_version,
        "qemuVersion": node.hypervisor_version,
        "runningInstances": node.running_vms,
        **_disabled_status(node),
        **_usage_status(node),
    }


def _disabled_status(node: models.ComputeNode | db_api.ReportedNode) -> dict[str, Any]:
    return {"disabled": bool(node.disabled), "disabledReason": node.disabled_reason}
