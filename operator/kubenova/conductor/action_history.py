"""The action history shown to kubectl users: each instance action (Nova's instance_actions,
kept in the database) written as an InstanceAction object owned by its Instance, so it goes
when the Instance goes and needs no database access to read (``kubectl nova events``).

The objects are a projection, written on a thread of their own from a queue, off the road of
requests: a create or a reboot never waits for its history. While views keep arriving (a
burst of creates) the writer waits for a quiet moment, up to ``max_delay_s``: each write costs
the apiserver and this process what a status write costs, and the history of a burst can come
a few seconds later without anyone waiting on it, where the statuses cannot. The database
stays the record; an object that could not be written is tried again a few times, then
logged.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from kubenova.conductor import background
from kubenova.db import models
from kubenova.k8s import resources
from kubenova.k8s.client import KubeClient

LOG = logging.getLogger(__name__)

IN_PROGRESS = "InProgress"
SUCCESS = "Success"
ERROR = "Error"

# Attempts at writing one object before it is given up (logged).
_ATTEMPTS = 3
# Kubernetes object names are at most 253 characters; the suffix takes at most 40.
_NAME_PREFIX_MAX = 200


@dataclasses.dataclass(frozen=True)
class EventView:
    """One event of an action, as the object shows it."""

    event: str
    host: str | None
    start_time: datetime.datetime | None
    finish_time: datetime.datetime | None
    result: str | None
    details: str | None = None

    @classmethod
    def from_row(cls, row: models.InstanceActionEvent) -> EventView:
        return cls(row.event, row.host, row.start_time, row.finish_time, row.result, row.details)


@dataclasses.dataclass(frozen=True)
class ActionView:
    """One action of one instance, as its InstanceAction object shows it."""

    instance_uuid: str
    namespace: str
    instance_name: str
    action: str
    request_id: str
    start_time: datetime.datetime | None
    finish_time: datetime.datetime | None
    result: str
    message: str | None
    events: tuple[EventView, ...] = ()

    @classmethod
    def from_rows(
        cls,
        record: models.Instance,
        action: models.InstanceAction,
        events: Sequence[models.InstanceActionEvent],
        *,
        result: str | None = None,
    ) -> ActionView:
        """The view of ``action`` of ``record``; its result is In progress until it has a
        finish time, then that of its last event unless given."""
        views = tuple(EventView.from_row(event) for event in events)
        if result is None:
            if action.finish_time is None:
                result = IN_PROGRESS
            elif views and views[-1].result == ERROR:
                result = ERROR
            else:
                result = SUCCESS
        return cls(
            instance_uuid=record.uuid,
            namespace=record.namespace,
            instance_name=record.name,
            action=action.action,
            request_id=action.request_id,
            start_time=action.start_time,
            finish_time=action.finish_time,
            result=result,
            message=action.message,
            events=views,
        )

    @property
    def object_name(self) -> str:
        """``<instance>-<action, lower case>-<10 hex digits of the request id>``: one object
        per action, the same name however often it is written."""
        digest = hashlib.sha256(self.request_id.encode()).hexdigest()[:10]
        # Object names are lower case; Nova's action names are not (createImage).
        return f"{self.instance_name[:_NAME_PREFIX_MAX]}-{self.action.lower()}-{digest}"

    def body(self) -> dict[str, Any]:
        """The InstanceAction object."""
        body: dict[str, Any] = {
            "apiVersion": resources.API_VERSION,
            "kind": "InstanceAction",
            "metadata": {
                "name": self.object_name,
                "namespace": self.namespace,
                "labels": {resources.INSTANCE_LABEL: self.instance_name[:63]},
                "ownerReferences": [
                    {
                        "apiVersion": resources.API_VERSION,
                        "kind": "Instance",
                        "name": self.instance_name,
                        "uid": self.instance_uuid,
                    }
                ],
            },
            "instance": self.instance_name,
            "instanceUID": self.instance_uuid,
            "action": self.action,
            "requestId": self.request_id,
            "result": self.result,
            "events": [_event_body(event) for event in self.events],
        }
        if self.start_time is not None:
            body["startTime"] = timestamp(self.start_time)
        if self.finish_time is not None:
            body["finishTime"] = timestamp(self.finish_time)
        if self.message:
            body["message"] = self.message
        return body


def timestamp(value: datetime.datetime) -> str:
    """RFC 3339 UTC with microseconds: actions a moment apart keep their order (a status's
    whole seconds would tie an unpause and the suspend that followed it)."""
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _event_body(event: EventView) -> dict[str, Any]:
    body: dict[str, Any] = {"event": event.event}
    if event.host:
        body["host"] = event.host
    if event.start_time is not None:
        body["startTime"] = timestamp(event.start_time)
    if event.finish_time is not None:
        body["finishTime"] = timestamp(event.finish_time)
    body["result"] = event.result or IN_PROGRESS
    if event.details:
        body["details"] = event.details
    return body


class ActionHistory:
    """Writes InstanceAction objects on its own thread; the newest view of an action wins.

    A view is written once none has arrived for ``quiet_s``, or once it has waited
    ``max_delay_s``.
    """

    def __init__(
        self,
        kube: KubeClient,
        *,
        quiet_s: float = 0.5,
        max_delay_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kube = kube
        self._quiet_s = quiet_s
        self._max_delay_s = max_delay_s
        self._clock = clock
        # (namespace, object name) -> (the view, when it was first queued)
        self._pending: collections.OrderedDict[tuple[str, str], tuple[ActionView, float]] = (
            collections.OrderedDict()
        )
        self._last_arrival = 0.0
        self._worker = background.Worker("action-history", self._run)

    def record(self, view: ActionView) -> None:
        """Write ``view`` soon; a newer view of the same action replaces one not yet written."""
        with self._worker.condition:
            key = (view.namespace, view.object_name)
            now = self._clock()
            previous = self._pending.pop(key, None)
            if previous is not None and view.result == IN_PROGRESS != previous[0].result:
                # An action's end is never undone by a view of it in progress.
                view = previous[0]
            self._pending[key] = (view, previous[1] if previous else now)
            self._last_arrival = now
            self._worker.condition.notify()

    def start(self) -> None:
        self._worker.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Write what is queued (within ``timeout_s``), then stop."""
        self._worker.stop(timeout_s)

    def pending(self) -> int:
        with self._worker.condition:
            return len(self._pending)

    def flush(self) -> None:
        """Write everything queued on the calling thread (for a process that does not run
        the writer thread, and for tests)."""
        while True:
            with self._worker.condition:
                if not self._pending:
                    return
                _, (view, _) = self._pending.popitem(last=False)
            self._write(view)

    def _due_in(self) -> float:
        """Seconds until the oldest view may be written (0: now); the lock is held."""
        now = self._clock()
        _, queued = next(iter(self._pending.values()))
        return max(
            0.0,
            min(self._last_arrival + self._quiet_s - now, queued + self._max_delay_s - now),
        )

    def _run(self) -> None:
        while True:
            with self._worker.condition:
                while not self._worker.stopping and (not self._pending or self._due_in() > 0):
                    self._worker.condition.wait(self._due_in() if self._pending else None)
                if not self._pending:
                    return
                _, (view, _) = self._pending.popitem(last=False)
            self._write(view)

    def _write(self, view: ActionView) -> None:
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                self._kube.apply_instance_action(view.namespace, view.body())
                return
            except Exception:
                if attempt == _ATTEMPTS:
                    LOG.exception(
                        "could not write InstanceAction %s/%s", view.namespace, view.object_name
                    )
