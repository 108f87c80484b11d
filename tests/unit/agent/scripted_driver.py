"""A ComputeDriver that keeps its domains in dicts, for the manager's unit tests.

It follows the driver contract's power semantics (idempotent operations, InstanceNotFound,
InstanceInvalidState) in the simplest way, and records each call that changed something, so a
test can tell one effect from two.
"""

from __future__ import annotations

from kubenova_agent import exceptions
from kubenova_agent.virt import driver as virt_driver
from kubenova_agent.virt.power_state import PowerState


class ScriptedDriver(virt_driver.ComputeDriver):
    """Keeps domains in a dict; ``fail_with`` makes the next spawn raise."""

    def __init__(self) -> None:
        self.domains: dict[str, PowerState] = {}
        self.addresses: dict[str, list[str]] = {}
        #: The console ports of each instance while it runs.
        self.console_ports: dict[str, virt_driver.ConsolePorts] = {}
        self.saved: set[str] = set()
        self.acpi_ignored: set[str] = set()
        self.fail_with: Exception | None = None
        #: Raised by the next power operation instead of doing it.
        self.operation_fails_with: Exception | None = None
        self.spawned: list[str] = []
        #: (operation, uuid) of every power operation that changed something.
        self.effects: list[tuple[str, str]] = []
        #: The spec and power_on of every rebuild done.
        self.rebuilt: list[tuple[virt_driver.InstanceSpec, bool]] = []
        #: Raised by the next rebuild; one that is not ``intact`` leaves the domain shut off
        #: first, as the contract says.
        self.rebuild_fails_with: exceptions.RebuildFailed | None = None
        self.listener: virt_driver.LifecycleListener | None = None

    # -- the basics ------------------------------------------------------------------------

    def init_host(self) -> None:
        pass

    def get_host_info(self) -> virt_driver.HostInfo:
        return virt_driver.HostInfo(
            hostname="h1",
            vcpus=4,
            memory_mib=8192,
            disk_gib=100,
            cpu_arch="x86_64",
            hypervisor_type="QEMU",
            virt_type="qemu",
            libvirt_version="9.0.0",
            qemu_version="7.2.0",
        )

    def spawn(self, instance: virt_driver.InstanceSpec) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.spawned.append(instance.uuid)
        self.domains[instance.uuid] = PowerState.RUNNING

    def destroy(self, instance_uuid: str) -> None:
        self.domains.pop(instance_uuid, None)
        self.saved.discard(instance_uuid)

    def get_power_state(self, instance_uuid: str) -> PowerState:
        return self._power(instance_uuid)

    def get_addresses(self, instance_uuid: str) -> list[str]:
        return self.addresses.get(instance_uuid, [])

    def get_instance_state(self, instance_uuid: str) -> virt_driver.InstanceState:
        return virt_driver.InstanceState(
            self._power(instance_uuid),
            tuple(self.addresses.get(instance_uuid, [])),
            saved=instance_uuid in self.saved,
            console_ports=(
                self.console_ports.get(instance_uuid)
                if self._power(instance_uuid) == PowerState.RUNNING
                else None
            ),
        )

    def list_instance_uuids(self) -> list[str]:
        return list(self.domains)

    def console_log_path(self, instance_uuid: str) -> str | None:
        return None

    # -- power operations ------------------------------------------------------------------

    def power_off(self, instance_uuid: str, timeout_s: float) -> bool:
        power = self._operate(instance_uuid)
        if power is PowerState.SHUTDOWN:
            if instance_uuid in self.saved:
                self.saved.discard(instance_uuid)
                self.effects.append(("power_off", instance_uuid))
                return False
            return True
        clean = (
            timeout_s > 0 and power is PowerState.RUNNING and instance_uuid not in self.acpi_ignored
        )
        self._set(instance_uuid, PowerState.SHUTDOWN, "power_off")
        return clean

    def power_on(self, instance_uuid: str) -> None:
        if self._operate(instance_uuid) is PowerState.SHUTDOWN:
            self.saved.discard(instance_uuid)
            self._set(instance_uuid, PowerState.RUNNING, "power_on")

    def pause(self, instance_uuid: str) -> None:
        power = self._operate(instance_uuid)
        if power is PowerState.RUNNING:
            self._set(instance_uuid, PowerState.PAUSED, "pause")
        elif power is not PowerState.PAUSED:
            raise exceptions.InstanceInvalidState(instance_uuid, "pause", self._word(instance_uuid))

    def unpause(self, instance_uuid: str) -> None:
        power = self._operate(instance_uuid)
        if power is PowerState.PAUSED:
            self._set(instance_uuid, PowerState.RUNNING, "unpause")
        elif power is not PowerState.RUNNING:
            raise exceptions.InstanceInvalidState(
                instance_uuid, "unpause", self._word(instance_uuid)
            )

    def suspend(self, instance_uuid: str) -> None:
        power = self._operate(instance_uuid)
        if power in (PowerState.RUNNING, PowerState.PAUSED):
            self.saved.add(instance_uuid)
            self._set(instance_uuid, PowerState.SHUTDOWN, "suspend")
        elif instance_uuid not in self.saved:
            raise exceptions.InstanceInvalidState(instance_uuid, "suspend", "stopped")

    def resume(self, instance_uuid: str) -> None:
        power = self._operate(instance_uuid)
        if power is PowerState.SHUTDOWN and instance_uuid in self.saved:
            self.saved.discard(instance_uuid)
            self._set(instance_uuid, PowerState.RUNNING, "resume")
        elif power is not PowerState.RUNNING:
            raise exceptions.InstanceInvalidState(
                instance_uuid, "resume", self._word(instance_uuid)
            )

    def reboot(self, instance_uuid: str, hard: bool, timeout_s: float) -> virt_driver.RebootType:
        power = self._operate(instance_uuid)
        soft = (
            not hard
            and timeout_s > 0
            and power is PowerState.RUNNING
            and instance_uuid not in self.acpi_ignored
        )
        self.saved.discard(instance_uuid)
        self._set(instance_uuid, PowerState.RUNNING, "reboot")
        return virt_driver.RebootType.SOFT if soft else virt_driver.RebootType.HARD

    def rebuild(self, instance: virt_driver.InstanceSpec, power_on: bool) -> None:
        self._operate(instance.uuid)
        if self.rebuild_fails_with is not None:
            error, self.rebuild_fails_with = self.rebuild_fails_with, None
            if not error.intact:
                self.saved.discard(instance.uuid)
                self.domains[instance.uuid] = PowerState.SHUTDOWN
            raise error
        self.saved.discard(instance.uuid)
        self.rebuilt.append((instance, power_on))
        self._set(instance.uuid, PowerState.RUNNING if power_on else PowerState.SHUTDOWN, "rebuild")

    def snapshot(self, instance_uuid: str, target: str) -> None:
        """Writes ``disk of <uuid> (<power state>)``: what the disk held when it was copied."""
        power = self._operate(instance_uuid)
        with open(target, "xb") as out:
            out.write(f"disk of {instance_uuid} ({power.value})".encode())
        self.effects.append(("snapshot", instance_uuid))

    def set_lifecycle_listener(self, listener: virt_driver.LifecycleListener | None) -> bool:
        self.listener = listener
        return True

    # -- for the tests -----------------------------------------------------------------------

    def guest_changes(self, instance_uuid: str, power: PowerState) -> None:
        """The guest (or libvirt) changes the domain by itself, and the event is emitted."""
        self.domains[instance_uuid] = power
        if self.listener is not None:
            self.listener(instance_uuid)

    def _power(self, instance_uuid: str) -> PowerState:
        if instance_uuid not in self.domains:
            raise exceptions.InstanceNotFound(instance_uuid)
        return self.domains[instance_uuid]

    def _operate(self, instance_uuid: str) -> PowerState:
        if self.operation_fails_with is not None:
            error, self.operation_fails_with = self.operation_fails_with, None
            raise error
        return self._power(instance_uuid)

    def _set(self, instance_uuid: str, power: PowerState, operation: str) -> None:
        self.domains[instance_uuid] = power
        self.effects.append((operation, instance_uuid))

    def _word(self, instance_uuid: str) -> str:
        if instance_uuid in self.saved:
            return "suspended"
        return {PowerState.SHUTDOWN: "stopped"}.get(self.domains[instance_uuid], "paused")
