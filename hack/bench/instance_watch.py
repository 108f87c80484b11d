"""A watch on one namespace's Instances, for the benchmarks: when each was first seen
Running (and on which host), in Error, and deleted."""

from __future__ import annotations

import threading
import time
from typing import Any

import benchlib
from benchlib import log


class InstanceWatch(threading.Thread):
    """Watches the Instances of one namespace; records when each is first seen Running."""

    def __init__(self, custom: Any, namespace: str) -> None:
        super().__init__(name="instance-watch", daemon=True)
        self._custom = custom
        self._namespace = namespace
        self._lock = threading.Lock()
        self.running_at: dict[str, float] = {}
        self.hosts: dict[str, str] = {}
        self.errors: dict[str, str] = {}
        self.present: set[str] = set()
        #: When each Instance's deletion was first seen (the object gone from the apiserver).
        self.gone_at: dict[str, float] = {}
        self.listed = threading.Event()
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()

    def snapshot(self) -> tuple[dict[str, float], dict[str, str], dict[str, str], set[str]]:
        with self._lock:
            return dict(self.running_at), dict(self.hosts), dict(self.errors), set(self.present)

    def gone(self) -> dict[str, float]:
        """name -> when its deletion was seen, for every Instance seen deleted."""
        with self._lock:
            return dict(self.gone_at)

    def _see(self, obj: dict[str, Any], seen_at: float) -> None:
        name = obj["metadata"]["name"]
        status = obj.get("status") or {}
        phase = status.get("phase")
        with self._lock:
            self.present.add(name)
            if phase == "Running" and name not in self.running_at:
                self.running_at[name] = seen_at
                self.hosts[name] = status.get("host") or ""
            elif phase == "Error" and name not in self.errors:
                fault = status.get("fault") or {}
                self.errors[name] = f"{fault.get('reason')}: {fault.get('message')}"

    def _list(self) -> str:
        listing = self._custom.list_namespaced_custom_object(
            benchlib.GROUP, benchlib.VERSION, self._namespace, "instances"
        )
        now = time.monotonic()
        items = listing.get("items", [])
        with self._lock:
            # Gone while the watch was not looking (a relist after 410 Gone): seen gone now.
            listed = {obj["metadata"]["name"] for obj in items}
            for name in self.present - listed:
                self.gone_at.setdefault(name, now)
            self.present = set()
        for obj in items:
            self._see(obj, now)
        self.listed.set()
        return str(listing["metadata"]["resourceVersion"])

    def run(self) -> None:
        from kubernetes import watch
        from kubernetes.client import exceptions

        resource_version: str | None = None
        while not self._stopping.is_set():
            try:
                if resource_version is None:
                    resource_version = self._list()
                stream = watch.Watch()  # type: ignore[no-untyped-call]
                for event in stream.stream(  # type: ignore[no-untyped-call]
                    self._custom.list_namespaced_custom_object,
                    benchlib.GROUP,
                    benchlib.VERSION,
                    self._namespace,
                    "instances",
                    resource_version=resource_version,
                    timeout_seconds=10,
                ):
                    seen_at = time.monotonic()
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        # 410 Gone: our resourceVersion is too old; list again.
                        resource_version = None
                        break
                    resource_version = obj["metadata"]["resourceVersion"]
                    if event["type"] == "DELETED":
                        with self._lock:
                            self.present.discard(obj["metadata"]["name"])
                            self.gone_at.setdefault(obj["metadata"]["name"], seen_at)
                    else:
                        self._see(obj, seen_at)
                    if self._stopping.is_set():
                        stream.stop()  # type: ignore[no-untyped-call]
            except exceptions.ApiException as exc:
                if exc.status == 410:
                    resource_version = None
                else:
                    log(f"watch failed ({exc.status}); watching again")
                    time.sleep(0.5)
            except Exception as exc:  # a dropped connection: watch again from where we were
                log(f"watch interrupted ({exc!r}); watching again")
                time.sleep(0.5)
