"""The fuzz's traffic with the apiserver: sending each manifest and telling a refusal from an
acceptance, the valid objects fuzzed Instances refer to, waiting for accepted Instances to
settle, and deleting everything the run made."""

from __future__ import annotations

import dataclasses
import datetime
import sys
import time
from collections.abc import Iterable
from typing import Any

import refusals
from manifests import (
    FLAVOR,
    GROUP,
    IMAGE,
    INSTANCE,
    SERVER_GROUP,
    VERSION,
    Kind,
    RunNames,
    base_manifest,
)
from mutations import Case


class FuzzError(Exception):
    """The fuzz cannot run or cannot go on; the message says why."""


def log(message: str) -> None:
    """A progress line, on stderr so that stdout stays the summary and the JSON line."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


#: Phases an Instance settles in; Pending settles once a condition gives its reason.
SETTLED_PHASES = frozenset({"Running", "Error", "Stopped", "Paused", "Suspended"})


@dataclasses.dataclass
class Outcome:
    """What the apiserver answered to one manifest."""

    case: Case
    #: "accepted", "refused" (4xx) or "error" (5xx, or no answer).
    result: str
    http_status: int | None = None
    #: The refusal's text (or the error), cut to 2000 characters.
    text: str = ""
    names_field: bool = False
    #: The object as stored (accepted only).
    stored: dict[str, Any] | None = None


class Sender:
    """Creates objects through the apiserver, in ``namespace`` for the namespaced kinds."""

    def __init__(self, custom: Any, namespace: str, field_validation: str) -> None:
        self.custom = custom
        self.namespace = namespace
        self.field_validation = field_validation

    def create(self, kind: Kind, body: dict[str, Any]) -> dict[str, Any]:
        if kind.namespaced:
            created: dict[str, Any] = self.custom.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, kind.plural, body,
                field_validation=self.field_validation,
            )  # fmt: skip
        else:
            created = self.custom.create_cluster_custom_object(
                GROUP, VERSION, kind.plural, body, field_validation=self.field_validation
            )
        return created

    def send(self, case: Case) -> Outcome:
        import urllib3
        from kubernetes.client import exceptions

        try:
            stored = self.create(case.kind, case.body)
        except exceptions.ApiException as exc:
            status = int(exc.status or 0)
            text = refusals.refusal_text(exc.body)
            if 400 <= status < 500:
                named = refusals.names_field(text, case.field, case.aliases)
                return Outcome(case, "refused", status, text[:2000], named)
            return Outcome(case, "error", status, text[:2000])
        except (OSError, urllib3.exceptions.HTTPError, ValueError) as exc:
            # No answer (a connection reset, a timeout), or the client refused to send.
            return Outcome(case, "error", None, f"{type(exc).__name__}: {exc}"[:2000])
        return Outcome(case, "accepted", stored=stored)


def create_base_objects(sender: Sender, names: RunNames) -> dict[str, dict[str, Any]]:
    """The valid Flavor, Image and ServerGroup fuzzed Instances refer to, by kind name."""
    made = {}
    for kind, name in (
        (FLAVOR, names.flavor),
        (IMAGE, names.image),
        (SERVER_GROUP, names.server_group),
    ):
        body = base_manifest(kind, names, 0)
        body["metadata"]["name"] = name
        made[kind.name] = sender.create(kind, body)
    return made


def settled_phase(instance: dict[str, Any]) -> str | None:
    """How an Instance settled (its phase, ``Pending:<reason>`` for one that waits with a
    reason), or None while it has not."""
    status = instance.get("status") or {}
    phase = status.get("phase")
    if phase in SETTLED_PHASES:
        return str(phase)
    if phase == "Pending":
        for condition in status.get("conditions") or []:
            if condition.get("type") == "Scheduled" and condition.get("reason"):
                return f"Pending:{condition['reason']}"
    return None


def wait_settled(
    custom: Any, namespace: str, names: Iterable[str], timeout: float
) -> dict[str, dict[str, Any]]:
    """Poll the namespace's Instances until every one of ``names`` settled, or ``timeout``;
    the last seen object of each (absent when it was not seen)."""
    wanted = set(names)
    seen: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while True:
        listing = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "instances")
        seen = {
            item["metadata"]["name"]: item
            for item in listing.get("items", [])
            if item["metadata"]["name"] in wanted
        }
        waiting = [name for name in wanted if settled_phase(seen.get(name, {})) is None]
        if not waiting or time.monotonic() > deadline:
            return seen
        time.sleep(2)


def wait_hosts_up(custom: Any, hosts: list[str], since: float, timeout: float) -> None:
    """Until every one of ``hosts`` has its Hypervisor up, with a heartbeat written after
    ``since`` (a host of an earlier run is down, or up on an old heartbeat)."""
    deadline = time.monotonic() + timeout
    while True:
        listing = custom.list_cluster_custom_object(GROUP, VERSION, "hypervisors")
        up = {
            item["metadata"]["name"]
            for item in listing.get("items", [])
            if (item.get("status") or {}).get("state") == "up"
            and _epoch((item.get("status") or {}).get("lastHeartbeat")) >= since - 1
        }
        missing = sorted(set(hosts) - up)
        if not missing:
            return
        if time.monotonic() > deadline:
            raise FuzzError(f"simulated hosts not up after {timeout:.0f}s: {missing}")
        time.sleep(1)


def _epoch(timestamp: Any) -> float:
    try:
        parsed = datetime.datetime.strptime(str(timestamp), "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return 0.0
    return parsed.replace(tzinfo=datetime.UTC).timestamp()


@dataclasses.dataclass
class Made:
    """Everything a run made, to delete: names by kind."""

    objects: dict[str, list[str]] = dataclasses.field(
        default_factory=lambda: {kind.name: [] for kind in (FLAVOR, IMAGE, SERVER_GROUP, INSTANCE)}
    )

    def add(self, kind: Kind, stored: dict[str, Any]) -> None:
        self.objects[kind.name].append(stored["metadata"]["name"])


def delete_made(custom: Any, namespace: str, made: Made, timeout: float) -> list[str]:
    """Delete what the run made, Instances first (waiting until they are gone, so that their
    hosts free them), then ServerGroups, Flavors and Images; what could not be deleted."""
    from kubernetes.client import exceptions

    left: list[str] = []

    def delete(kind: Kind, name: str) -> None:
        try:
            if kind.namespaced:
                custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, kind.plural, name)
            else:
                custom.delete_cluster_custom_object(GROUP, VERSION, kind.plural, name)
        except exceptions.ApiException as exc:
            if exc.status != 404:
                left.append(f"{kind.name} {name}: HTTP {exc.status}")

    instances = made.objects[INSTANCE.name]
    for name in instances:
        delete(INSTANCE, name)
    deadline = time.monotonic() + timeout
    remaining = set(instances)
    while remaining and time.monotonic() < deadline:
        listing = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "instances")
        remaining = {item["metadata"]["name"] for item in listing.get("items", [])} & remaining
        if remaining:
            time.sleep(1)
    if remaining:
        log(f"{len(remaining)} Instances still there after {timeout:.0f}s")
        left.extend(f"Instance {name}: not gone" for name in sorted(remaining))
    for kind in (SERVER_GROUP, FLAVOR, IMAGE):
        for name in made.objects[kind.name]:
            delete(kind, name)
    return left
