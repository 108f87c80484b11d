"""The compute manager: the agent's message handlers and periodic tasks.

Nova's ``compute/manager.py`` in miniature. Every handler is idempotent, because a
message is acknowledged only after its effect is durable and may therefore arrive
twice (a crash between the effect and the ack redelivers it).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import threading

from kubenova.exception import PermanentFailure
from kubenova.rpc import conductor_rpcapi, envelope, payloads
from kubenova_agent import exceptions
from kubenova_agent.virt import driver as virt_driver
from kubenova_agent.virt.power_state import PowerState

LOG = logging.getLogger(__name__)

# What vm_state a power state means for an instance that is not being built or deleted.
_VM_STATE_FOR_POWER: dict[PowerState, str] = {
    PowerState.RUNNING: "active",
    PowerState.PAUSED: "paused",
    PowerState.SHUTDOWN: "stopped",
    PowerState.CRASHED: "error",
    PowerState.NOSTATE: "active",
}


@dataclasses.dataclass
class _Tracked:
    """What this agent last told the conductor about one instance."""

    request_id: str
    last_report: tuple[str, str | None, str, tuple[str, ...]] | None = None
    launched_at: datetime.datetime | None = None


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
        # Periodic tasks and message handlers run on different threads.
        self._lock = threading.RLock()

    # -- message handling -------------------------------------------------------------

    def handle(self, message: envelope.Envelope, user_id: str | None) -> None:
        """Dispatch one message from this host's queue."""
        del user_id  # only the operator can publish to compute.<host> (broker permissions)
        if message.method == "build_and_run_instance":
            build = payloads.BuildAndRunInstance.model_validate(message.args)
            self.build_and_run_instance(build.instance, message.request_id)
        elif message.method == "terminate_instance":
            terminate = payloads.TerminateInstance.model_validate(message.args)
            self.terminate_instance(terminate.instance_uuid, message.request_id)
        else:
            raise PermanentFailure(f"unknown method {message.method!r}")

    def build_and_run_instance(self, instance: payloads.InstancePayload, request_id: str) -> None:
        """Build the instance and start it, then report the result.

        There is no "spawning" report: the operator records that task state when it casts
        the build (and again when it reschedules one), so such a report changed nothing and
        cost a message and a transaction per instance. It also set a running instance back
        to building when a build message was delivered twice.
        """
        try:
            spec = _instance_spec(instance)
        except ValueError as exc:
            self._build_failed(instance.uuid, "BuildAborted", str(exc), False, request_id)
            return
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
        self.driver.destroy(instance_uuid)
        with self._lock:
            self._tracked.pop(instance_uuid, None)
        LOG.info("instance %s terminated", instance_uuid, extra={"instance_uuid": instance_uuid})
        self.conductor.instance_terminated(
            payloads.InstanceTerminated(instance_uuid=instance_uuid, host=self.host), request_id
        )

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
        for instance_uuid, state in self.driver.list_instance_states().items():
            self._report_state(instance_uuid, state, force=False)

    def _sync_one(self, instance_uuid: str, *, force: bool) -> None:
        try:
            state = self.driver.get_instance_state(instance_uuid)
        except exceptions.InstanceNotFound:
            return
        self._report_state(instance_uuid, state, force=force)

    def _report_state(
        self, instance_uuid: str, state: virt_driver.InstanceState, *, force: bool
    ) -> None:
        with self._lock:
            tracked = self._tracked.get(instance_uuid)
            if tracked is None:
                # Found on the host but not built by this process (e.g. before a restart).
                tracked = self._tracked[instance_uuid] = _Tracked(
                    request_id=envelope.new_request_id()
                )
            request_id = tracked.request_id
            launched_at = tracked.launched_at
        power = state.power_state
        self._report(
            instance_uuid,
            _VM_STATE_FOR_POWER[power],
            None,
            power,
            state.addresses,
            request_id,
            launched_at=launched_at,
            force=force,
        )

    # -- helpers ----------------------------------------------------------------------

    def _report(
        self,
        instance_uuid: str,
        vm_state: str,
        task_state: str | None,
        power: PowerState,
        addresses: tuple[str, ...],
        request_id: str,
        *,
        launched_at: datetime.datetime | None = None,
        force: bool = True,
    ) -> None:
        state = (vm_state, task_state, power.value, addresses)
        with self._lock:
            tracked = self._tracked.get(instance_uuid)
            if tracked is not None:
                if not force and tracked.last_report == state:
                    return
                tracked.last_report = state
        self.conductor.instance_update(
            payloads.InstanceUpdate(
                instance_uuid=instance_uuid,
                host=self.host,
                vm_state=vm_state,
                task_state=task_state,
                power_state=power.value,
                addresses=addresses,
                launched_at=launched_at,
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


def _instance_spec(instance: payloads.InstancePayload) -> virt_driver.InstanceSpec:
    image = instance.image
    return virt_driver.InstanceSpec(
        uuid=instance.uuid,
        name=instance.name,
        hostname=instance.hostname,
        vcpus=instance.vcpus,
        memory_mib=instance.memory_mib,
        disk_gib=instance.disk_gib,
        image=virt_driver.ImageRef(
            name=image.name, url=image.url, sha256=image.sha256, disk_format=image.disk_format
        ),
        user_data=instance.user_data.encode() if instance.user_data is not None else None,
        ssh_authorized_keys=tuple(instance.ssh_authorized_keys),
    )
