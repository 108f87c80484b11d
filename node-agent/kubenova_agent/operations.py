"""The power operations a host is asked for (contract 1.3): which driver call each message
means, and what is worth recording about how it went.

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
METHODS = frozenset({"stop_instance", "reboot_instance", *_SIMPLE})


def vm_state(state: virt_driver.InstanceState) -> str:
    """The vm_state the host's view of an instance means: active, stopped, paused,
    suspended or error."""
    if state.saved:
        return "suspended"
    return _VM_STATE_FOR_POWER[state.power_state]


@dataclasses.dataclass(frozen=True)
class PowerOperation:
    """One power operation asked of this host."""

    #: The method's name without ``_instance``, as ``instance_operation_finished`` names it.
    name: payloads.OperationName
    instance_uuid: str
    #: Does it with the driver; returns a note for the record, or None.
    run: Callable[[virt_driver.ComputeDriver], str | None]


def from_message(message: envelope.Envelope) -> PowerOperation | None:
    """The operation a message asks for; None when it is not a power operation.

    Raises ``pydantic.ValidationError`` for malformed arguments (the consumer dead-letters the
    message).
    """
    if message.method == "stop_instance":
        stop = payloads.StopInstance.model_validate(message.args)
        return PowerOperation("stop", stop.instance_uuid, functools.partial(_stop, stop))
    if message.method == "reboot_instance":
        reboot = payloads.RebootInstance.model_validate(message.args)
        return PowerOperation("reboot", reboot.instance_uuid, functools.partial(_reboot, reboot))
    simple = _SIMPLE.get(message.method)
    if simple is None:
        return None
    name, call = simple
    uuid = payloads.InstanceOperation.model_validate(message.args).instance_uuid

    def run(driver: virt_driver.ComputeDriver) -> None:
        call(driver, uuid)

    return PowerOperation(name, uuid, run)


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


def _described(state: virt_driver.InstanceState) -> str:
    if state.saved:
        return "suspended"
    if state.power_state is PowerState.SHUTDOWN:
        return "stopped"
    return str(state.power_state.value)
