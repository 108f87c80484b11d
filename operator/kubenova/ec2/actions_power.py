"""StartInstances, StopInstances and RebootInstances: the day-2 power operations, asked for
declaratively as ``kubectl nova`` asks for them (``spec.powerState``, ``spec.reboot``); the
operator carries them out, and DescribeInstances shows the way there (stopping, pending)."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

from kubenova.ec2 import actions_instances, batch, errors, ids, states, terminated
from kubenova.ec2.context import Context

_STOPPABLE = (states.RUNNING, states.STOPPING, states.STOPPED)
_STARTABLE = (states.STOPPED, states.RUNNING, states.PENDING)


def _incorrect(obj: dict[str, Any], state: states.State, verb: str) -> errors.Ec2Error:
    return errors.Ec2Error(
        errors.INCORRECT_INSTANCE_STATE,
        f"The instance '{ids.instance_id(obj)}' is not in a state from which it can be {verb}"
        f" (it is {state.name}).",
    )


def _found(ctx: Context, params: dict[str, Any]) -> list[dict[str, Any]]:
    return actions_instances.find(ctx, [str(v) for v in params.get("InstanceIds") or []])


def _require(allowed: tuple[states.State, ...], verb: str) -> Callable[[dict[str, Any]], None]:
    def check(obj: dict[str, Any]) -> None:
        state = states.of_instance(obj)
        if state not in allowed:
            raise _incorrect(obj, state, verb)

    return check


def stop_instances(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    def stop(obj: dict[str, Any]) -> dict[str, Any]:
        previous = states.of_instance(obj)
        patched = ctx.cluster.patch_instance(
            ctx.namespace, obj["metadata"]["name"], {"spec": {"powerState": "Stopped"}}
        )
        current = states.of_instance(patched) if patched else states.SHUTTING_DOWN
        return _change(obj, previous, current)

    changes = batch.check_all_then_apply(_found(ctx, params), _require(_STOPPABLE, "stopped"), stop)
    return {"StoppingInstances": changes}


def start_instances(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    def start(obj: dict[str, Any]) -> dict[str, Any]:
        previous = states.of_instance(obj)
        spec = obj.get("spec") or {}
        patch: dict[str, Any] = {"powerState": "Running"}
        if previous is states.STOPPED and spec.get("powerState", "Running") == "Running":
            # Its guest powered itself off (runStrategy Manual): setting powerState to the
            # value it has changes nothing; a hard reboot starts it, as kubectl nova start does.
            patch["reboot"] = {"requestedAt": _now(), "type": "Hard"}
        ctx.cluster.patch_instance(ctx.namespace, obj["metadata"]["name"], {"spec": patch})
        current = states.PENDING if previous is states.STOPPED else previous
        return _change(obj, previous, current)

    changes = batch.check_all_then_apply(
        _found(ctx, params), _require(_STARTABLE, "started"), start
    )
    return {"StartingInstances": changes}


def reboot_instances(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    def reboot(obj: dict[str, Any]) -> None:
        ctx.cluster.patch_instance(
            ctx.namespace,
            obj["metadata"]["name"],
            {"spec": {"reboot": {"requestedAt": _now(), "type": "Soft"}}},
        )

    wanted = [str(value) for value in params.get("InstanceIds") or []]
    # EC2 ignores a reboot of a terminated instance rather than refusing it.
    live = [
        found
        for found in actions_instances.lookup(ctx, wanted)
        if not isinstance(found, terminated.Record)
    ]
    batch.check_all_then_apply(live, _require((states.RUNNING,), "rebooted"), reboot)
    return {}


def _change(obj: dict[str, Any], previous: states.State, current: states.State) -> dict[str, Any]:
    return {
        "InstanceId": ids.instance_id(obj),
        "PreviousState": previous.as_output(),
        "CurrentState": current.as_output(),
    }


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
