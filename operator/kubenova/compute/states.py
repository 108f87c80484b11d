"""Nova's three states and the one phase ``kubectl get`` shows.

vm_state says what the instance is (building, active, stopped...), task_state what
is being done to it (scheduling, spawning, deleting...), power_state what the
hypervisor last reported. The phase is derived from all three plus whether its host
is up; it is never stored on its own, so it cannot disagree with them.
"""

from __future__ import annotations

# vm_state
BUILDING = "building"
ACTIVE = "active"
STOPPED = "stopped"
PAUSED = "paused"
SUSPENDED = "suspended"
RESIZED = "resized"
ERROR = "error"
DELETED = "deleted"

# task_state
SCHEDULING = "scheduling"
SPAWNING = "spawning"
DELETING = "deleting"
POWERING_OFF = "powering-off"
POWERING_ON = "powering-on"
PAUSING = "pausing"
UNPAUSING = "unpausing"
SUSPENDING = "suspending"
RESUMING = "resuming"
REBOOTING = "rebooting"
REBOOTING_HARD = "rebooting_hard"
REBUILDING = "rebuilding"
RESIZE_PREP = "resize_prep"
RESIZE_MIGRATING = "resize_migrating"
RESIZE_MIGRATED = "resize_migrated"
RESIZE_FINISH = "resize_finish"
RESIZE_CONFIRMING = "resize_confirming"
RESIZE_REVERTING = "resize_reverting"
MIGRATING = "migrating"
REBUILD_SPAWNING = "rebuild_spawning"

# power_state
RUNNING = "running"
SHUTDOWN = "shutdown"
NOSTATE = "nostate"


def phase(
    vm_state: str,
    task_state: str | None,
    power_state: str | None,
    *,
    host: str | None,
    host_up: bool = True,
) -> str:
    """The phase for ``kubectl get`` (Pending, Building, Running, ... Unknown)."""
    if task_state == DELETING or vm_state == DELETED:
        return "Deleting"
    if vm_state == ERROR:
        return "Error"
    if host is None:
        return "Pending"
    if not host_up:
        return "Unknown"
    if vm_state == BUILDING:
        return "Building"
    if vm_state == ACTIVE:
        # A running guest being rebooted or stopped is still Running (taskState says
        # what is under way), as Nova shows ACTIVE with a task; one that never ran is
        # still Building.
        return "Running" if power_state == RUNNING or task_state is not None else "Building"
    return {
        STOPPED: "Stopped",
        PAUSED: "Paused",
        SUSPENDED: "Suspended",
        # Resized, on its new flavor (and host), until the user confirms or reverts.
        RESIZED: "VerifyResize",
    }.get(vm_state, "Unknown")
