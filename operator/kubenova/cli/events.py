"""``kubectl nova events NAME [REQUEST_ID]``: an instance's operations and their steps, as
``openstack server event list`` and ``server event show`` print them.

The operations are the InstanceAction objects labelled with the Instance's name. Those whose
``instanceUID`` names another uid belonged to an earlier Instance of the same name (left behind
where nothing collected them) and are not shown. A create that succeeded at its first try has
no object (the operator does not write one, to keep bursts of creates cheap): it is shown from
the Instance's own status, which carries its request id, host and launch time.
"""

from __future__ import annotations

import argparse
import datetime
from typing import Any

from kubenova.cli import kube, output

LIST_HEADERS = ("REQUEST ID", "ACTION", "RESULT", "START TIME", "FINISH TIME", "MESSAGE")
EVENT_HEADERS = ("EVENT", "HOST", "RESULT", "START TIME", "FINISH TIME", "DETAILS")
BUILD_EVENT = "compute_build_and_run_instance"
_LATEST = datetime.datetime.max.replace(tzinfo=datetime.UTC)


def _time(value: Any) -> datetime.datetime:
    """A timestamp to sort by; one that is missing or unreadable sorts last."""
    if not isinstance(value, str) or not value:
        return _LATEST
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except ValueError:
        return _LATEST
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def _order(action: dict[str, Any]) -> tuple[datetime.datetime, datetime.datetime, str]:
    meta = action.get("metadata") or {}
    created = _time(meta.get("creationTimestamp"))
    started = _time(action.get("startTime"))
    return (created if started is _LATEST else started, created, str(meta.get("name") or ""))


def actions_of(instance: dict[str, Any], items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The instance's actions among ``items``, oldest first."""
    uid = (instance.get("metadata") or {}).get("uid")
    mine = [item for item in items if item.get("instanceUID") in (None, "", uid)]
    return sorted(mine, key=_order)


def create_from_status(instance: dict[str, Any]) -> dict[str, Any] | None:
    """The create action as the Instance's status tells it: in progress until the guest is
    launched, then a success on the status's host. None when the status names no request."""
    meta = instance.get("metadata") or {}
    status = instance.get("status") or {}
    request_id = status.get("requestId")
    if not request_id:
        return None
    started = meta.get("creationTimestamp")
    launched = status.get("launchedAt")
    result = "Success" if launched else "InProgress"
    event: dict[str, Any] = {"event": BUILD_EVENT, "result": result, "startTime": started}
    if status.get("host"):
        event["host"] = status["host"]
    action: dict[str, Any] = {
        "metadata": {"name": f"{meta.get('name')}-create", "creationTimestamp": started},
        "instance": meta.get("name"),
        "instanceUID": meta.get("uid"),
        "action": "create",
        "requestId": request_id,
        "result": result,
        "startTime": started,
        "events": [event],
    }
    if launched:
        action["finishTime"] = event["finishTime"] = launched
    return action


def with_create(instance: dict[str, Any], actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``actions`` (oldest first) with the create first, from the status when it has no object."""
    create = create_from_status(instance)
    if create is None or any(a.get("requestId") == create["requestId"] for a in actions):
        return actions
    return [create, *actions]


def find_action(actions: list[dict[str, Any]], request_id: str) -> dict[str, Any] | None:
    """The action of ``request_id`` (or, failing that, of that object name)."""
    for action in actions:
        if action.get("requestId") == request_id:
            return action
    for action in actions:
        if (action.get("metadata") or {}).get("name") == request_id:
            return action
    return None


def action_table(actions: list[dict[str, Any]]) -> str:
    rows = [
        (a.get("requestId"), a.get("action"), a.get("result"), a.get("startTime"),
         a.get("finishTime"), a.get("message"))
        for a in actions
    ]  # fmt: skip
    return output.table(LIST_HEADERS, rows)


def describe_action(action: dict[str, Any]) -> str:
    """One action and its events, in ``kubectl describe``'s layout."""
    fields = [
        ("Request ID", action.get("requestId")),
        ("Action", action.get("action")),
        ("Instance", action.get("instance")),
        ("Instance UID", action.get("instanceUID")),
        ("Result", action.get("result")),
        ("Start Time", action.get("startTime")),
        ("Finish Time", action.get("finishTime")),
        ("Message", action.get("message")),
    ]
    # Two blanks after the longest label, as kubectl describe aligns its fields.
    width = max(len(label) for label, _ in fields) + 3
    lines = [f"{label + ':':<{width}}{output.cell(value)}" for label, value in fields]
    events = [event for event in action.get("events") or [] if isinstance(event, dict)]
    if not events:
        lines.append(f"{'Events:':<{width}}<none>")
        return "\n".join(lines)
    rows = [
        (e.get("event"), e.get("host"), e.get("result"), e.get("startTime"),
         e.get("finishTime"), e.get("details"))
        for e in events
    ]  # fmt: skip
    lines.append("Events:")
    lines.append(output.table(EVENT_HEADERS, rows, indent="  "))
    return "\n".join(lines)


def run(cluster: kube.Cluster, options: argparse.Namespace) -> int:
    # Read first: a missing Instance is NotFound, not an empty history.
    instance = kube.get_instance(cluster, options.name)
    actions = with_create(
        instance, actions_of(instance, kube.list_instance_actions(cluster, options.name))
    )
    if options.request_id is not None:
        action = find_action(actions, options.request_id)
        if action is None:
            raise kube.CommandError(
                f'error: instance {options.name} has no action with request ID "'
                f'{options.request_id}"'
            )
        print(output.dump(action, options.output) if options.output else describe_action(action))
        return 0
    if options.output:
        print(output.dump(output.as_list(actions), options.output))
    elif not actions:
        print(f"No actions found for instance {options.name}.")
    else:
        print(action_table(actions))
    return 0


def register(
    verbs: argparse._SubParsersAction[argparse.ArgumentParser],
    common: list[argparse.ArgumentParser],
) -> None:
    parser = verbs.add_parser(
        "events",
        parents=common,
        help="list an instance's operations, or show one with its events",
        description=(
            "List the operations on an instance (its InstanceActions), oldest first, as "
            "`openstack server event list` does; with a REQUEST_ID, show that operation and "
            "the steps it took, as `openstack server event show` does."
        ),
    )
    parser.add_argument("name", metavar="NAME", help="the Instance's name")
    parser.add_argument(
        "request_id", metavar="REQUEST_ID", nargs="?", help="show this operation in detail"
    )
    parser.add_argument(
        "-o",
        "--output",
        choices=("json", "yaml"),
        help="print the InstanceAction objects in this format instead of a table",
    )
    parser.set_defaults(run=run)
