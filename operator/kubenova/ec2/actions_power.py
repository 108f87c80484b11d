"""StartInstances, StopInstances and RebootInstances: the day-2 power operations, asked for
declaratively as ``kubectl nova`` asks for them (``spec.powerState``, ``spec.reboot``); the
operator carries them out, and DescribeInstances shows the way there (stopping, pending)."""

from __future__ import annotations

import datetime
from typing import Any

from kubenova.ec2 import actions_instances, errors, ids, states
from kubenova.ec2.context import Context

_STOPPABLE = (states.RUNNING, states.STOPPING, states.STOPPED)
_STARTABLE = (states.STOPPED, states.RUNNING, states.PENDING)


def _incorrect(obj: dict[str, Any], state: states.State, verb: str) -> errors.Ec2Error:
    return errors.Ec2Error(
        errors.INCORRECT_INSTANCE_STATE,
        f"The instance '{ids.instance_id(obj)}' is not in a state from which it can be {verb}"
        f" (it is {state.name}).",
    )


def stop_instances(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    found = actions_instances.find(ctx, [str(v) for v in params.get("InstanceIds") or []])
    for obj in found:
        state = states.of_instance(obj)
        if state not in _STOPPABLE:
            raise _incorrect(obj, state, "stopped")
    changes = []
    for obj in found:
        previous = states.of_instance(obj)
        patched = ctx.cluster.patch_instance(
            ctx.namespace, obj["metadata"]["name"], {"spec": {"powerState": "Stopped"}}
        )
        current = states.of_instance(patched) if patched else states.SHUTTING_DOWN
        changes.append(_change(obj, previous, current))
    return {"StoppingInstances": changes}


def start_instances(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    found = actions_instances.find(ctx, [str(v) for v in params.get("InstanceIds") or []])
    for obj in found:
        state = states.of_instance(obj)
        if state not in _STARTABLE:
            raise _incorrect(obj, state, "started")
    changes = []
    for obj in found:
        previous = states.of_instance(obj)
        spec = obj.get("spec") or {}
        patch: dict[str, Any] = {"powerState": "Running"}
        if previous is states.STOPPED and spec.get("powerState", "Running") == "Running":
            # Its guest powered itself off (runStrategy Manual): setting powerState to the
            # value it has changes nothing; a hard reboot starts it, as kubectl nova start does.
            patch["reboot"] = {"requestedAt": _now(), "type": "Hard"}
        ctx.cluster.patch_instance(ctx.namespace, obj["metadata"]["name"], {"spec": patch})
        current = states.PENDING if previous is states.STOPPED else previous
        changes.append(_change(obj, previous, current))
    return {"StartingInstances": changes}


def reboot_instances(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    found = actions_instances.find(ctx, [str(v) for v in params.get("InstanceIds") or []])
    for obj in found:
        state = states.of_instance(obj)
        if state is not states.RUNNING:
            raise _incorrect(obj, state, "rebooted")
    for obj in found:
        ctx.cluster.patch_instance(
            ctx.namespace,
            obj["metadata"]["name"],
            {"spec": {"reboot": {"requestedAt": _now(), "type": "Soft"}}},
        )
    return {}


def _change(obj: dict[str, Any], previous: states.State, current: states.State) -> dict[str, Any]:
    return {
        "InstanceId": ids.instance_id(obj),
        "PreviousState": previous.as_output(),
        "CurrentState": current.as_output(),
    }


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
