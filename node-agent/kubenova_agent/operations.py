"""The operations a host is asked for on an instance it runs (contract 1.3: the power
operations and rebuild): which driver call each message means, and what is worth recording about
how it went.

``ComputeManager.run_operation`` runs them, times them and reports each with one
``instance_operation_finished``; this module only decides what to call. An operation returns a
note for the record (a soft reboot that became hard, a clean stop that had to force) or None;
it raises what the driver raises, which the manager reports as the operation's error.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

from kubenova.rpc import envelope, payloads
from kubenova_agent.virt import driver as virt_driver
from kubenova_agent.virt.power_state import PowerState

# What vm_state a power state means for an instance that is not being built or deleted; a
# suspended instance (shut off with its memory saved) is told apart by InstanceState.saved.
_VM_STATE_FOR_POWER: dict[PowerState, str] = {
    PowerState.RUNNING: "active",
    PowerState.PAUSED: "paused",
    PowerState.SHUTDOWN: "stopped",
    PowerState.CRASHED: "error",
    PowerState.NOSTATE: "active",
}

#: What to call for the operations that need nothing but the uuid, by method.
_SIMPLE: dict[
    str, tuple[payloads.OperationName, Callable[[virt_driver.ComputeDriver, str], None]]
] = {
    "start_instance": ("start", lambda driver, uuid: driver.power_on(uuid)),
    "pause_instance": ("pause", lambda driver, uuid: driver.pause(uuid)),
    "unpause_instance": ("unpause", lambda driver, uuid: driver.unpause(uuid)),
    "suspend_instance": ("suspend", lambda driver, uuid: driver.suspend(uuid)),
    "resume_instance": ("resume", lambda driver, uuid: driver.resume(uuid)),
}

#: Every compute method this module handles.
METHODS = frozenset({"stop_instance", "reboot_instance", "rebuild_instance", *_SIMPLE})


def vm_state(state: virt_driver.InstanceState) -> str:
    """The vm_state the host's view of an instance means: active, stopped, paused,
    suspended or error."""
    if state.saved:
        return "suspended"
    return _VM_STATE_FOR_POWER[state.power_state]


#: What the agent reports of an instance: vm_state, task_state, power_state, addresses and
#: console ports.
Report = tuple[str, str | None, str, tuple[str, ...], payloads.ConsolePorts | None]


def report(state: virt_driver.InstanceState) -> Report:
    """What the host's view of an instance reports, with no task under way."""
    return (vm_state(state), None, state.power_state.value, state.addresses, console_ports(state))


def console_ports(state: virt_driver.InstanceState) -> payloads.ConsolePorts | None:
    """The console ports of the host's view of an instance, as the contract carries them."""
    ports = state.console_ports
    if ports is None:
        return None
    return payloads.ConsolePorts(
        vnc_port=ports.vnc_port, spice_port=ports.spice_port, spice_tls_port=ports.spice_tls_port
    )


def instance_spec(instance: payloads.InstancePayload) -> virt_driver.InstanceSpec:
    """What the driver is given to build (or rebuild) an instance; raises ``ValueError`` for
    what the driver's value types refuse."""
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


@dataclasses.dataclass(frozen=True)
class Operation:
    """One operation asked of this host."""

    #: The method's name without ``_instance``, as ``instance_operation_finished`` names it.
    name: payloads.OperationName
    instance_uuid: str
    #: Does it with the driver; returns a note for the record, or None.
    run: Callable[[virt_driver.ComputeDriver], str | None]


def from_message(message: envelope.Envelope) -> Operation | None:
    """The operation a message asks for; None when it is none of :data:`METHODS`.

    Raises ``pydantic.ValidationError`` for malformed arguments (the consumer dead-letters the
    message).
    """
    if message.method == "stop_instance":
        stop = payloads.StopInstance.model_validate(message.args)
        return Operation("stop", stop.instance_uuid, functools.partial(_stop, stop))
    if message.method == "reboot_instance":
        reboot = payloads.RebootInstance.model_validate(message.args)
        return Operation("reboot", reboot.instance_uuid, functools.partial(_reboot, reboot))
    if message.method == "rebuild_instance":
        rebuild = payloads.RebuildInstance.model_validate(message.args)
        return Operation("rebuild", rebuild.instance.uuid, functools.partial(_rebuild, rebuild))
    simple = _SIMPLE.get(message.method)
    if simple is None:
        return None
    name, call = simple
    uuid = payloads.InstanceOperation.model_validate(message.args).instance_uuid

    def run(driver: virt_driver.ComputeDriver) -> None:
        call(driver, uuid)

    return Operation(name, uuid, run)


def _stop(args: payloads.StopInstance, driver: virt_driver.ComputeDriver) -> str | None:
    uuid, timeout = args.instance_uuid, args.shutdown_timeout_s
    if not args.clean_shutdown or timeout == 0:
        driver.power_off(uuid, 0)
        return None
    before = driver.get_instance_state(uuid)
    if driver.power_off(uuid, timeout):
        return None
    if before.saved:
        return "the instance was suspended; its saved memory was discarded"
    if before.power_state is PowerState.RUNNING:
        return f"the guest did not shut down within {timeout} s; powered off"
    return f"the instance was {_described(before)}, so its guest could not be asked; powered off"


def _reboot(args: payloads.RebootInstance, driver: virt_driver.ComputeDriver) -> str | None:
    uuid, timeout = args.instance_uuid, args.shutdown_timeout_s
    if args.reboot_type == "HARD":
        driver.reboot(uuid, True, timeout)
        return None
    before = driver.get_instance_state(uuid)
    if driver.reboot(uuid, False, timeout) is virt_driver.RebootType.SOFT:
        return None
    if before.power_state is not PowerState.RUNNING:
        return (
            f"a soft reboot needs a running guest, and the instance was {_described(before)}; "
            "rebooted hard"
        )
    if timeout == 0:
        return "the shutdown timeout is 0 s; rebooted hard"
    return f"the guest did not shut down within {timeout} s; rebooted hard"


def _rebuild(args: payloads.RebuildInstance, driver: virt_driver.ComputeDriver) -> None:
    # The spec is made here, not when the message is read: an instance the driver's checks
    # refuse (user-data over the cap in bytes, say) is then this rebuild's reported error
    # rather than a message dead-lettered with no answer.
    driver.rebuild(instance_spec(args.instance), args.power_on)


def _described(state: virt_driver.InstanceState) -> str:
    if state.saved:
        return "suspended"
    if state.power_state is PowerState.SHUTDOWN:
        return "stopped"
    return str(state.power_state.value)
