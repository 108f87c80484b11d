"""The one table of day-2 operations: in which states each is allowed, the task state it runs
under, and where it leaves the instance (Nova's ``check_instance_state`` decorators, gathered).

An operation is allowed only when the instance has no task under way and its vm_state is one
of those listed; the conductor swaps the task state in under that condition in one locked
transaction (Nova's ``expected_task_state``), so two operations never race. The spec's
``powerState`` names a wanted state, not an operation: :func:`for_power_state` says which
operation gets there from where the instance is.
"""

from __future__ import annotations

import dataclasses

from kubenova.compute import states


@dataclasses.dataclass(frozen=True)
class Operation:
    """One operation a host carries out on an instance it runs."""

    #: The instance action's name (``kubectl nova events``) and the operation's word in
    #: messages.
    name: str
    #: vm_states in which it may start (with no task under way).
    allowed_vm_states: frozenset[str]
    #: The task state while it runs.
    task_state: str
    #: The vm_state it leaves the instance in when it succeeds (None: the one it was in).
    final_vm_state: str | None

    @property
    def event(self) -> str:
        """The name of its event on the host, as Nova names them."""
        return f"compute_{self.name}_instance"

    def refusal(self, vm_state: str, task_state: str | None) -> str | None:
        """Why it may not start now, naming the operation and the state; None if it may."""
        if task_state is not None:
            return f"cannot {self.name}: the instance is busy ({task_state})"
        if vm_state not in self.allowed_vm_states:
            wanted = " or ".join(sorted(self.allowed_vm_states))
            return (
                f"cannot {self.name}: the instance is {vm_state}; "
                f"{self.name} needs vm_state {wanted}"
            )
        return None


def _operation(name: str, allowed: set[str], task_state: str, final: str | None) -> Operation:
    return Operation(name, frozenset(allowed), task_state, final)


STOP = _operation("stop", {states.ACTIVE, states.ERROR}, states.POWERING_OFF, states.STOPPED)
START = _operation("start", {states.STOPPED}, states.POWERING_ON, states.ACTIVE)
PAUSE = _operation("pause", {states.ACTIVE}, states.PAUSING, states.PAUSED)
UNPAUSE = _operation("unpause", {states.PAUSED}, states.UNPAUSING, states.ACTIVE)
SUSPEND = _operation("suspend", {states.ACTIVE}, states.SUSPENDING, states.SUSPENDED)
RESUME = _operation("resume", {states.SUSPENDED}, states.RESUMING, states.ACTIVE)
REBOOT_SOFT = _operation("reboot", {states.ACTIVE}, states.REBOOTING, states.ACTIVE)
# A hard reboot also brings back a stopped, paused, suspended or failed guest (Nova allows it
# in every one of these states).
REBOOT_HARD = _operation(
    "reboot",
    {states.ACTIVE, states.STOPPED, states.PAUSED, states.SUSPENDED, states.ERROR},
    states.REBOOTING_HARD,
    states.ACTIVE,
)

# A new root disk from another image, where the instance is; a stopped one stays stopped.
REBUILD = _operation(
    "rebuild", {states.ACTIVE, states.STOPPED, states.ERROR}, states.REBUILDING, states.ACTIVE
)

#: Nova's task state while an image is made of the instance's disk.
IMAGE_SNAPSHOT = "image_snapshot"
# An image of the root disk (Nova's createImage, with Nova's allowed states); the instance
# stays in the state it was in. Its road is kubenova.conductor.snapshots, not the spec's, so
# it is not in BY_TASK_STATE below.
SNAPSHOT = _operation(
    "snapshot",
    {states.ACTIVE, states.STOPPED, states.PAUSED, states.SUSPENDED},
    IMAGE_SNAPSHOT,
    None,
)

# A resize: a new flavor, on the same host or another (the scheduler picks), awaiting the
# user's confirmation at the end (vm_state resized, phase VerifyResize). It runs in several
# steps on two hosts (:mod:`kubenova.conductor.resize`), under the task states of its steps.
RESIZE = _operation("resize", {states.ACTIVE, states.STOPPED}, states.RESIZE_PREP, states.RESIZED)
CONFIRM_RESIZE = _operation(
    "confirmResize", {states.RESIZED}, states.RESIZE_CONFIRMING, states.ACTIVE
)
REVERT_RESIZE = _operation("revertResize", {states.RESIZED}, states.RESIZE_REVERTING, states.ACTIVE)
# A cold migration (an InstanceMigration): the resize's steps with the same flavor, to another
# host, confirmed at once.
MIGRATE = _operation("migrate", {states.ACTIVE, states.STOPPED}, states.RESIZE_PREP, states.ACTIVE)
# A live migration (an InstanceMigration of type Live): the guest keeps running (or paused)
# while it moves, in steps on both hosts (:mod:`kubenova.conductor.live_migration`).
LIVE_MIGRATE = _operation("live-migration", {states.ACTIVE, states.PAUSED}, states.MIGRATING, None)
# An evacuation (an InstanceMigration of type Evacuate): the instance of a host that is down,
# rebuilt from its image on another (Nova allows it in these states).
EVACUATE = _operation(
    "evacuate", {states.ACTIVE, states.STOPPED, states.ERROR}, states.REBUILD_SPAWNING, None
)
#: The task states of a resize's steps, in order, and of its confirmation and revert.
RESIZE_TASK_STATES = frozenset(
    {
        states.RESIZE_PREP,
        states.RESIZE_MIGRATING,
        states.RESIZE_MIGRATED,
        states.RESIZE_FINISH,
        states.RESIZE_CONFIRMING,
        states.RESIZE_REVERTING,
    }
)

#: Every operation of one cast by the task state it runs under: the way back from a record to
#: what is under way.
BY_TASK_STATE: dict[str, Operation] = {
    op.task_state: op
    for op in (STOP, START, PAUSE, UNPAUSE, SUSPEND, RESUME, REBOOT_SOFT, REBOOT_HARD, REBUILD)
}

#: Every operation, the resize's steps included, by the task state it runs under: what the
#: Synced condition says is in progress.
IN_PROGRESS: dict[str, Operation] = {
    **BY_TASK_STATE,
    **dict.fromkeys(RESIZE_TASK_STATES, RESIZE),
    states.RESIZE_CONFIRMING: CONFIRM_RESIZE,
    states.RESIZE_REVERTING: REVERT_RESIZE,
    states.MIGRATING: LIVE_MIGRATE,
    states.REBUILD_SPAWNING: EVACUATE,
}

#: spec.powerState -> the vm_state it stands for.
VM_STATE_FOR_POWER_STATE: dict[str, str] = {
    "Running": states.ACTIVE,
    "Stopped": states.STOPPED,
    "Paused": states.PAUSED,
    "Suspended": states.SUSPENDED,
}

# From where, which operation reaches a wanted vm_state (for Running, it depends on where the
# instance is; for the others there is one operation, and the table decides where it may run).
_TO_ACTIVE: dict[str, Operation] = {
    states.STOPPED: START,
    states.PAUSED: UNPAUSE,
    states.SUSPENDED: RESUME,
}
_TO: dict[str, Operation] = {
    states.STOPPED: STOP,
    states.PAUSED: PAUSE,
    states.SUSPENDED: SUSPEND,
}


def for_power_state(wanted: str, vm_state: str) -> Operation | None:
    """The operation that takes an instance in ``vm_state`` to spec.powerState ``wanted``;
    None when it is there already. For Running from a state no operation leaves (error, say),
    START, which the table then refuses with a message that says why."""
    target = VM_STATE_FOR_POWER_STATE[wanted]
    if vm_state == target or vm_state == states.RESIZED:
        # A resized instance keeps the power it had until it is confirmed or reverted.
        return None
    if target == states.ACTIVE:
        return _TO_ACTIVE.get(vm_state, START)
    return _TO[target]


def reboot(hard: bool) -> Operation:
    """The reboot operation of the type asked for."""
    return REBOOT_HARD if hard else REBOOT_SOFT
