"""The compute manager: the agent's message handlers and periodic tasks.

Nova's ``compute/manager.py`` in miniature. Every handler is idempotent, because a
message is acknowledged only after its effect is durable and may therefore arrive
twice (a crash between the effect and the ack redelivers it).

The conductor hears about an instance in three ways: the result of what it asked (a build's
report, ``instance_terminated``, ``instance_operation_finished``), a lifecycle event from the
hypervisor (a guest that powered itself off, crashed, or was paused by libvirt), reported within
moments, and the periodic power-state sync, the backstop for events lost while the hypervisor was
unreachable. While this agent works on an instance (a build, a delete, a power operation, a
rebuild), the other two keep quiet about it: the work's own report is the one that counts, and a
report from half-way through would set the record's task state back to None while the work
still runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import threading
from collections.abc import Iterator
from typing import Literal

from kubenova.exception import PermanentFailure
from kubenova.rpc import conductor_rpcapi, envelope, payloads
from kubenova_agent import (
    console_output,
    exceptions,
    lifecycle,
    live_migrations,
    operations,
    resizes,
    snapshots,
)
from kubenova_agent.virt import driver as virt_driver
from kubenova_agent.virt.power_state import PowerState

LOG = logging.getLogger(__name__)

#: The ``message`` field's limit in the contract.
_MESSAGE_MAX = 4096

_Report = operations.Report


@dataclasses.dataclass
class _Tracked:
    """What this agent last told the conductor about one instance."""

    request_id: str
    last_report: _Report | None = None
    launched_at: datetime.datetime | None = None


#: The steps after which an instance prepared for a live migration is no longer arriving.
_ARRIVAL_ENDS = frozenset(
    {"post_live_migration_at_destination", "rollback_live_migration_at_destination"}
)
#: Methods handled out of their instance's turn: the message they act on holds that turn, or
#: (a console log read) a caller waits with a timeout while a long operation holds it.
OUT_OF_TURN = frozenset({live_migrations.ABORT, console_output.METHOD})


class ComputeManager:
    """Handles ``compute.<host>`` messages and keeps the conductor informed."""

    def __init__(
        self,
        host: str,
        driver: virt_driver.ComputeDriver,
        conductor: conductor_rpcapi.ConductorAPI,
        labels: dict[str, str] | None = None,
    ) -> None:
        self.host = host
        self.driver = driver
        self.conductor = conductor
        self.labels = dict(labels or {})
        self._tracked: dict[str, _Tracked] = {}
        # Periodic tasks, message handlers (one thread per consumer lane) and the lifecycle
        # worker run on different threads.
        self._lock = threading.RLock()
        # Instances being built, deleted or operated on (a count: two lanes may overlap).
        self._busy: dict[str, int] = {}
        # Instances prepared here for an incoming live migration that has not ended here.
        self._arriving: set[str] = set()
        # Counts finished work; _done[uuid] is the count when work on it last finished, so
        # that a state read before that is not reported after it (see _report_state).
        self._work_count = 0
        self._done: dict[str, int] = {}
        self._forget_done_before = 0
        self._events = lifecycle.EventWorker(self._on_lifecycle_event, f"lifecycle-events-{host}")
        self.snapshots = snapshots.Snapshotter(
            host, driver, conductor, snapshots.SnapshotSettings.from_env()
        )
        self.live_migrations = live_migrations.LiveMigrations(host, conductor)

    # -- message handling -------------------------------------------------------------

    def handle(self, message: envelope.Envelope, user_id: str | None) -> object:
        """Dispatch one message from this host's queue; a call's answer is returned."""
        del user_id  # only the operator can publish to compute.<host> (broker permissions)
        operation = operations.from_message(message)
        if message.method == console_output.METHOD:
            return console_output.handle(self.driver, message.args)
        if operation is not None:
            self.run_operation(operation, message.request_id)
        elif message.method == "build_and_run_instance":
            build = payloads.BuildAndRunInstance.model_validate(message.args)
            self.build_and_run_instance(build.instance, message.request_id)
        elif message.method == "terminate_instance":
            terminate = payloads.TerminateInstance.model_validate(message.args)
            self.terminate_instance(terminate.instance_uuid, message.request_id)
        elif message.method in resizes.METHODS or message.method in live_migrations.METHODS:
            step = (
                resizes.from_message(message.method, message.args)
                if message.method in resizes.METHODS
                else self.live_migrations.step(message.method, message.args, message.request_id)
            )
            with self._working_on(step.instance_uuid):
                resizes.run(step, self.host, self.driver, self.conductor, message.request_id)
            self._track_arrival(message.method, step.instance_uuid)
        elif message.method == live_migrations.ABORT:
            # Out of the instance's turn (see OUT_OF_TURN): it returns at once.
            self.live_migrations.abort(message.args)
        elif message.method == snapshots.METHOD:
            snapshot = payloads.SnapshotInstance.model_validate(message.args)
            # Busy while the copy is made: the guest's pause and resume are not reported.
            with self._working_on(snapshot.instance_uuid):
                self.snapshots.run(snapshot, message.request_id)
        else:
            raise PermanentFailure(f"unknown method {message.method!r}")
        return None

    def build_and_run_instance(self, instance: payloads.InstancePayload, request_id: str) -> None:
        """Build the instance and start it, then report the result.

        There is no "spawning" report: the operator records that task state when it casts
        the build (and again when it reschedules one), so such a report changed nothing and
        cost a message and a transaction per instance. It also set a running instance back
        to building when a build message was delivered twice.
        """
        try:
            spec = operations.instance_spec(instance)
        except ValueError as exc:
            self._build_failed(instance.uuid, "BuildAborted", str(exc), False, request_id)
            return
        with self._working_on(instance.uuid):
            with self._lock:
                self._tracked.setdefault(instance.uuid, _Tracked(request_id=request_id))
            try:
                self.driver.spawn(spec)
            except exceptions.RescheduledBuildError as exc:
                self._build_failed(instance.uuid, "BuildFailed", exc.reason, True, request_id)
                return
            except exceptions.BuildAbortedError as exc:
                self._build_failed(instance.uuid, "BuildAborted", exc.reason, False, request_id)
                return
            launched_at = datetime.datetime.now(datetime.UTC)
            with self._lock:
                self._tracked[instance.uuid].launched_at = launched_at
            LOG.info("instance %s spawned", instance.uuid, extra={"instance_uuid": instance.uuid})
            self._sync_one(instance.uuid, force=True)

    def terminate_instance(self, instance_uuid: str, request_id: str) -> None:
        """Destroy the domain and its files; a second terminate is a no-op."""
        with self._working_on(instance_uuid):
            self.driver.destroy(instance_uuid)
            with self._lock:
                self._tracked.pop(instance_uuid, None)
            LOG.info(
                "instance %s terminated", instance_uuid, extra={"instance_uuid": instance_uuid}
            )
            self.conductor.instance_terminated(
                payloads.InstanceTerminated(instance_uuid=instance_uuid, host=self.host),
                request_id,
            )

    def run_operation(self, operation: operations.Operation, request_id: str) -> None:
        """Carry out a power operation or a rebuild and report it with one
        ``instance_operation_finished``.

        Whatever the driver raises (an unknown instance, a state the operation does not apply
        to, a bad image, a libvirt error) is reported as the operation's ``Error`` rather than
        raised: the request has had its answer, and a message that failed the same way on
        every delivery would only go round. The report's vm_state is what the host sees
        afterwards, except after a rebuild that left the instance broken (powered off with its
        old disk possibly gone): "error" then, which only a rebuild that succeeds clears. Doing
        it again (a redelivered message) is harmless: the driver's operations are idempotent
        (a rebuild ends the same, done twice), and the report says the same.
        """
        uuid = operation.instance_uuid
        extra = {"instance_uuid": uuid}
        with self._working_on(uuid):
            started_at = datetime.datetime.now(datetime.UTC)
            result: Literal["Success", "Error"] = "Success"
            broken = False
            try:
                note = operation.run(self.driver)
            except (exceptions.AgentError, ValueError) as exc:
                result, note = "Error", str(exc)
                broken = isinstance(exc, exceptions.RebuildFailed) and not exc.intact
                LOG.warning("instance %s: %s failed: %s", uuid, operation.name, exc, extra=extra)
            except Exception as exc:
                result, note = "Error", f"{type(exc).__name__}: {exc}"
                LOG.exception("instance %s: %s failed", uuid, operation.name, extra=extra)
            finished_at = datetime.datetime.now(datetime.UTC)
            state: virt_driver.InstanceState | None
            try:
                state = self.driver.get_instance_state(uuid)
            except Exception as exc:
                state = None
                if result == "Success":
                    result, note = "Error", f"the instance's state cannot be read: {exc}"
            # No domain (or no answer): there is no power state to speak of.
            seen = None if state is None else operations.report(state)
            report: _Report = (
                ("error", None, PowerState.NOSTATE.value, (), None)
                if seen is None
                else ("error" if broken else seen[0], *seen[1:])
            )
            vm, _, power, addresses, ports = report
            self.conductor.instance_operation_finished(
                payloads.InstanceOperationFinished(
                    instance_uuid=uuid,
                    host=self.host,
                    operation=operation.name,
                    result=result,
                    message=note[:_MESSAGE_MAX] if note else None,
                    started_at=started_at,
                    finished_at=finished_at,
                    vm_state=vm,
                    power_state=power,
                    addresses=addresses,
                    console_ports=ports,
                ),
                request_id,
            )
            if seen is not None:
                with self._lock:
                    tracked = self._tracked.setdefault(uuid, _Tracked(request_id=request_id))
                    # The sync has nothing new to say until the host's view changes (the
                    # conductor keeps an instance in error whatever the sync says).
                    tracked.last_report = seen
        LOG.info(
            "instance %s: %s finished: %s%s",
            uuid,
            operation.name,
            result,
            f" ({note})" if note else "",
            extra=extra,
        )

    # -- lifecycle events -------------------------------------------------------------

    def start_lifecycle_events(self) -> bool:
        """Report instances as soon as the hypervisor says they changed; returns whether
        the driver delivers events (else only the periodic sync reports changes)."""
        self._events.start()
        if self.driver.set_lifecycle_listener(self._events.put):
            return True
        LOG.info("the driver delivers no lifecycle events; the periodic sync reports changes")
        self._events.stop()
        return False

    def stop_lifecycle_events(self) -> None:
        self.driver.set_lifecycle_listener(None)
        self._events.stop()

    def _on_lifecycle_event(self, instance_uuid: str) -> None:
        self._sync_one(instance_uuid, force=False)

    # -- periodic tasks ---------------------------------------------------------------

    def report_compute_node(self) -> None:
        """Register and heartbeat: capacity, versions and the instances this host runs."""
        info = self.driver.get_host_info()
        report = payloads.ComputeNodeReport(
            host=self.host,
            vcpus=info.vcpus,
            memory_mib=info.memory_mib,
            disk_gib=info.disk_gib,
            cpu_arch=info.cpu_arch,
            hypervisor_type=info.hypervisor_type,
            virt_type=info.virt_type,
            libvirt_version=info.libvirt_version,
            qemu_version=info.qemu_version,
            instance_uuids=tuple(sorted(self.driver.list_instance_uuids())),
            labels=self.labels,
            service_version=envelope.VERSION,
            migration_uri=info.migration_uri,
            console_address=info.console_address,
        )
        self.conductor.compute_node_report(report, envelope.new_request_id())

    def report_stopping(self) -> None:
        """Tell the conductor this host is going down (a graceful stop)."""
        self.conductor.service_stopping(
            payloads.ServiceStopping(host=self.host), envelope.new_request_id()
        )

    def sync_power_states(self) -> None:
        """Report every instance whose power state or addresses changed since last time.

        Runs every few seconds for every instance on the host, so it asks the driver for all
        of them in one listing rather than instance by instance.
        """
        with self._lock:
            read_at = self._work_count
        for instance_uuid, state in self.driver.list_instance_states().items():
            self._report_state(instance_uuid, state, read_at=read_at)
        with self._lock:
            # A state read before the last sync began has been reported or dropped by now.
            forget = self._forget_done_before
            self._done = {uuid: done for uuid, done in self._done.items() if done > forget}
            self._forget_done_before = read_at

    def _sync_one(self, instance_uuid: str, *, force: bool) -> None:
        with self._lock:
            read_at = self._work_count
            if not force and instance_uuid in self._busy:
                return  # not worth asking the hypervisor: the work will report it
        try:
            state = self.driver.get_instance_state(instance_uuid)
        except exceptions.InstanceNotFound:
            return
        self._report_state(instance_uuid, state, read_at=None if force else read_at)

    def _report_state(
        self, instance_uuid: str, state: virt_driver.InstanceState, *, read_at: int | None
    ) -> None:
        """Report ``state``, read when the work count was ``read_at``: unless it is what was
        last reported, or the instance is being worked on or was since it was read (the
        work's report says more). ``read_at`` None forces the report."""
        with self._lock:
            if read_at is not None and (
                instance_uuid in self._busy or self._done.get(instance_uuid, 0) > read_at
            ):
                return
            tracked = self._tracked.get(instance_uuid)
            if tracked is None:
                # Found on the host but not built by this process (e.g. before a restart).
                tracked = self._tracked[instance_uuid] = _Tracked(
                    request_id=envelope.new_request_id()
                )
            report = operations.report(state)
            if read_at is not None and tracked.last_report == report:
                return
            tracked.last_report = report
            # Sent under the lock, so that no work on the instance starts between the checks
            # above and the report.
            self._send_update(instance_uuid, report, tracked.request_id, tracked.launched_at)

    # -- helpers ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _working_on(self, instance_uuid: str) -> Iterator[None]:
        with self._lock:
            self._busy[instance_uuid] = self._busy.get(instance_uuid, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._work_done(instance_uuid)

    def _work_done(self, instance_uuid: str) -> None:
        """One piece of work on the instance ended (called under the lock)."""
        remaining = self._busy.pop(instance_uuid) - 1
        if remaining:
            self._busy[instance_uuid] = remaining
        self._work_count += 1
        self._done[instance_uuid] = self._work_count

    def _track_arrival(self, method: str, instance_uuid: str) -> None:
        """An instance arriving by live migration is worked on here from its preparation
        until the move ends here (kept, or rolled back): the incoming guest's lifecycle
        events are neither reported half-way nor answered with questions to the hypervisor
        while libvirt still moves it in."""
        with self._lock:
            if method == "pre_live_migration" and instance_uuid not in self._arriving:
                self._arriving.add(instance_uuid)
                self._busy[instance_uuid] = self._busy.get(instance_uuid, 0) + 1
            elif method in _ARRIVAL_ENDS and instance_uuid in self._arriving:
                self._arriving.discard(instance_uuid)
                self._work_done(instance_uuid)

    def _send_update(
        self,
        instance_uuid: str,
        report: _Report,
        request_id: str,
        launched_at: datetime.datetime | None,
    ) -> None:
        vm, task_state, power, addresses, ports = report
        self.conductor.instance_update(
            payloads.InstanceUpdate(
                instance_uuid=instance_uuid,
                host=self.host,
                vm_state=vm,
                task_state=task_state,
                power_state=power,
                addresses=addresses,
                launched_at=launched_at,
                console_ports=ports,
            ),
            request_id,
        )

    def _build_failed(
        self, instance_uuid: str, reason: str, message: str, reschedulable: bool, request_id: str
    ) -> None:
        LOG.warning("build of %s failed: %s", instance_uuid, message)
        with self._lock:
            self._tracked.pop(instance_uuid, None)
        self.conductor.instance_build_failed(
            payloads.InstanceBuildFailed(
                instance_uuid=instance_uuid,
                host=self.host,
                reason=reason,
                message=message,
                reschedulable=reschedulable,
            ),
            request_id,
        )
