"""A stand-in for the operator in the plugin's tests: the real operator (with its database, queue
and hosts) does not run here, so this thread plays its part through the API, and only that part
the plugin reads.

For each Instance of its namespace whose ``metadata.generation`` is ahead of
``status.observedGeneration``, it works out the operation the spec asks for (a new
``spec.powerState``, or a new ``spec.reboot.requestedAt``), then writes the status subresource as
the operator does:

- refused (the operation does not fit the state): ``observedGeneration`` = G, no task,
  ``Synced`` False/InvalidState with a message that names the operation and the state;
- accepted: ``taskState`` set and ``Synced`` False/InProgress, then after a moment the new
  phase, no task, and ``Synced`` True (or False/OperationFailed when the Instance carries the
  annotation ``FAIL``); with the annotation ``STUCK`` the task never ends.

Each operation is recorded as an InstanceAction (owned by the Instance, labelled with its name),
InProgress, then Success or Error, with one event.
"""

from __future__ import annotations

import datetime
import threading
import uuid
from typing import Any

from kubernetes import client as k8s_client

from kubenova.k8s.resources import GROUP, INSTANCE_ACTIONS, INSTANCE_LABEL, INSTANCES, VERSION

FAIL = "test.kubenova.io/fail"
STUCK = "test.kubenova.io/stuck"
HOST = "fake-host"
#: How long an accepted operation runs: long enough for the plugin to see its task state.
RUN_SECONDS = 0.6

# phase -> vm_state, as the operator projects them.
VM_STATE = {"Running": "active", "Stopped": "stopped", "Paused": "paused", "Suspended": "suspended"}
POWER = {"Running": "running", "Stopped": "shutdown", "Paused": "paused", "Suspended": "shutdown"}
# (operation, task state, the phases it may start from)
_TO: dict[str, tuple[str, str, set[str]]] = {
    "Stopped": ("stop", "powering-off", {"Running"}),
    "Paused": ("pause", "pausing", {"Running"}),
    "Suspended": ("suspend", "suspending", {"Running"}),
}
_TO_RUNNING: dict[str, tuple[str, str, set[str]]] = {
    "Stopped": ("start", "powering-on", {"Stopped"}),
    "Paused": ("unpause", "unpausing", {"Paused"}),
    "Suspended": ("resume", "resuming", {"Suspended"}),
}


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def synced(status: str, reason: str, message: str, generation: int) -> list[dict[str, Any]]:
    return [
        {
            "type": "Synced",
            "status": status,
            "reason": reason,
            "message": message,
            "observedGeneration": generation,
            "lastTransitionTime": datetime.datetime.now(datetime.UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
        }
    ]


def settled_status(phase: str, generation: int) -> dict[str, Any]:
    """The status of an instance at rest in ``phase`` with its spec applied."""
    return {
        "phase": phase,
        "vmState": VM_STATE[phase],
        "powerState": POWER[phase],
        "taskState": None,
        "observedGeneration": generation,
        "conditions": synced("True", "Synced", "", generation),
    }


class FakeOperator:
    def __init__(self, api: k8s_client.ApiClient, namespace: str) -> None:
        self.custom = k8s_client.CustomObjectsApi(api)
        self.namespace = namespace
        self.errors: list[BaseException] = []
        # The last reboot request acted on, per Instance uid (the operator keeps it in MySQL).
        self.reboots: dict[str, str | None] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-operator", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                listed = self.custom.list_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, INSTANCES
                )
                for obj in listed.get("items") or []:
                    self._reconcile(obj)
            except Exception as exc:  # reported by the fixture at teardown
                self.errors.append(exc)

    def _patch_status(self, name: str, status: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, self.namespace, INSTANCES, name, {"status": status}
        )

    def _reconcile(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        status = obj.get("status") or {}
        generation = meta["generation"]
        # No status yet: the test has not written the state it starts from.
        if not status or meta.get("deletionTimestamp"):
            return
        if status.get("observedGeneration", 0) >= generation:
            return
        spec = obj["spec"]
        phase = status.get("phase") or "Running"
        uid = meta["uid"]
        reboot = spec.get("reboot") or {}
        if reboot.get("requestedAt") and reboot["requestedAt"] != self.reboots.get(uid):
            self.reboots[uid] = reboot["requestedAt"]
            hard = reboot.get("type") == "Hard"
            allowed = set(VM_STATE) if hard else {"Running"}
            task = "rebooting_hard" if hard else "rebooting"
            self._operate(obj, "reboot", task, allowed, phase, "Running")
            return
        wanted = spec.get("powerState") or "Running"
        if wanted == phase:
            self._patch_status(meta["name"], settled_status(phase, generation))
            return
        if wanted == "Running":
            # From a state no operation leaves (Error, say): start, which the table refuses.
            operation, task, allowed = _TO_RUNNING.get(phase, _TO_RUNNING["Stopped"])
        else:
            operation, task, allowed = _TO[wanted]
        self._operate(obj, operation, task, allowed, phase, wanted)

    def _operate(
        self,
        obj: dict[str, Any],
        operation: str,
        task: str,
        allowed: set[str],
        phase: str,
        final: str,
    ) -> None:
        meta = obj["metadata"]
        name, generation = meta["name"], meta["generation"]
        request_id = f"req-{uuid.uuid4()}"
        started = now()
        if phase not in allowed:
            wanted = " or ".join(sorted(VM_STATE[p] for p in allowed))
            message = (
                f"cannot {operation}: the instance is {VM_STATE.get(phase, phase)}; "
                f"{operation} needs vm_state {wanted}"
            )
            self._record(obj, request_id, operation, "Error", started, message)
            status = settled_status(phase, generation)
            status["conditions"] = synced("False", "InvalidState", message, generation)
            self._patch_status(name, status)
            return
        self._record(obj, request_id, operation, "InProgress", started, "")
        self._patch_status(
            name,
            {
                "taskState": task,
                "observedGeneration": generation,
                "conditions": synced("False", "InProgress", f"{operation} under way", generation),
            },
        )
        annotations = meta.get("annotations") or {}
        if STUCK in annotations:
            return
        self._stop.wait(RUN_SECONDS)
        if FAIL in annotations:
            message = f"{operation} failed on {HOST}: libvirt said no"
            self._record(obj, request_id, operation, "Error", started, message)
            status = settled_status(phase, generation)
            status["conditions"] = synced("False", "OperationFailed", message, generation)
            self._patch_status(name, status)
            return
        self._record(obj, request_id, operation, "Success", started, "")
        self._patch_status(name, settled_status(final, generation))

    def _record(
        self,
        obj: dict[str, Any],
        request_id: str,
        operation: str,
        result: str,
        started: str,
        message: str,
    ) -> None:
        """Create or update the operation's InstanceAction."""
        meta = obj["metadata"]
        finished = None if result == "InProgress" else now()
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "InstanceAction",
            "metadata": {
                "name": f"{meta['name']}-{request_id}",
                "labels": {INSTANCE_LABEL: meta["name"]},
                "ownerReferences": [
                    {
                        "apiVersion": f"{GROUP}/{VERSION}",
                        "kind": "Instance",
                        "name": meta["name"],
                        "uid": meta["uid"],
                    }
                ],
            },
            "instance": meta["name"],
            "instanceUID": meta["uid"],
            "action": operation,
            "requestId": request_id,
            "result": result,
            "startTime": started,
            "message": message,
            "events": [
                {
                    "event": f"compute_{operation}_instance",
                    "host": HOST,
                    "startTime": started,
                    "result": result,
                    **({"finishTime": finished} if finished else {}),
                }
            ],
        }
        if finished:
            body["finishTime"] = finished
        if result == "InProgress":
            self.custom.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, INSTANCE_ACTIONS, body
            )
            return
        try:
            self.custom.replace_namespaced_custom_object(
                GROUP,
                VERSION,
                self.namespace,
                INSTANCE_ACTIONS,
                body["metadata"]["name"],
                self._with_version(body),
            )
        except k8s_client.ApiException as exc:
            if exc.status != 404:
                raise
            self.custom.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, INSTANCE_ACTIONS, body
            )

    def _with_version(self, body: dict[str, Any]) -> dict[str, Any]:
        current = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, INSTANCE_ACTIONS, body["metadata"]["name"]
        )
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        return body
