"""EC2's instance states of a Kubenova Instance, as ec2-api mapped Nova's.

EC2 knows six states, each with a code: pending 0, running 16, shutting-down 32, terminated 48,
stopping 64, stopped 80. The state follows ``status.phase``, the object's deletion, and a power
change asked for in the spec but not reached yet.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class State:
    code: int
    name: str

    def as_output(self) -> dict[str, Any]:
        return {"Code": self.code, "Name": self.name}


PENDING = State(0, "pending")
RUNNING = State(16, "running")
SHUTTING_DOWN = State(32, "shutting-down")
TERMINATED = State(48, "terminated")
STOPPING = State(64, "stopping")
STOPPED = State(80, "stopped")
ALL = (PENDING, RUNNING, SHUTTING_DOWN, TERMINATED, STOPPING, STOPPED)

_BY_PHASE = {
    "Pending": PENDING,
    "Building": PENDING,
    "Running": RUNNING,
    # A resize that awaits confirmation runs on its new flavor, as ec2-api showed RESIZED
    # (unless its guest is shut off: see of_instance).
    "VerifyResize": RUNNING,
    "Stopped": STOPPED,
    # EC2 has no paused or suspended instance: the guest does not run, so "stopped".
    "Paused": STOPPED,
    "Suspended": STOPPED,
    # EC2 shows an instance that failed to launch as terminated (state reason
    # Server.InternalError); Kubenova's Error instance is kept, with its fault, until deleted.
    "Error": TERMINATED,
    "Deleting": SHUTTING_DOWN,
}


def of_instance(obj: dict[str, Any]) -> State:
    """The EC2 state of an Instance object."""
    if obj["metadata"].get("deletionTimestamp"):
        return SHUTTING_DOWN
    status = obj.get("status") or {}
    spec = obj.get("spec") or {}
    phase = str(status.get("phase") or "Pending")
    wanted = str(spec.get("powerState") or "Running")
    state = _BY_PHASE.get(phase, PENDING)
    if phase == "VerifyResize" and status.get("powerState") not in (None, "running"):
        # A stopped instance resized (ModifyInstanceAttribute) stays shut off on its new
        # flavor until the resize is confirmed: still stopped, as EC2 shows it.
        state = STOPPED
    if state is RUNNING and wanted != "Running":
        return STOPPING
    if state is STOPPED and wanted == "Running" and phase != "Paused":
        # A start asked for and not done yet: EC2 shows a starting instance as pending.
        return PENDING if _start_pending(obj) else STOPPED
    return state


def _start_pending(obj: dict[str, Any]) -> bool:
    """Whether the spec asks for a start the operator has not acted on yet (its generation
    newer than the one it observed)."""
    generation = obj["metadata"].get("generation")
    observed = (obj.get("status") or {}).get("observedGeneration")
    return isinstance(generation, int) and isinstance(observed, int) and generation > observed


def state_reason(obj: dict[str, Any]) -> dict[str, str] | None:
    """EC2's StateReason: why an instance is where it is, for a failed one."""
    status = obj.get("status") or {}
    if status.get("phase") != "Error":
        return None
    fault = status.get("fault") or {}
    message = str(fault.get("message") or fault.get("reason") or "the instance failed")
    return {"Code": "Server.InternalError", "Message": f"Server.InternalError: {message}"}
