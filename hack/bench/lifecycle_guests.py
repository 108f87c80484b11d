"""The timed operations of the lifecycle benchmark (lifecycle_bench.py) on its two guests.

:class:`KubenovaGuest` patches an Instance's spec and watches until the operation has settled;
:class:`DirectOps` makes the calls Nova's libvirt driver makes on a domain no agent manages.
What each operation waits for is in lifecycle_bench.py's docstring.
"""

from __future__ import annotations

import pathlib
import threading
import time
import uuid
from typing import Any

import benchlib
from benchlib import BenchError

#: How often libvirt is asked for the direct domain's state while it shuts down.
STATE_POLL_S = 0.02


# -- Kubenova: patches and the status they lead to ------------------------------------------


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


def settled(obj: dict[str, Any], generation: int, phase: str) -> bool:
    """Whether the Instance ``obj`` shows the spec at ``generation`` applied, no task running,
    in ``phase``. Raises BenchError when the status says it will not be: phase Error, or Synced
    False (refused or failed) for that generation."""
    name = (obj.get("metadata") or {}).get("name")
    status = obj.get("status") or {}
    if status.get("phase") == "Error":
        raise BenchError(f"instance {name} went to Error: {status.get('fault')}")
    if _int(status.get("observedGeneration")) < generation or status.get("taskState"):
        return False
    synced = next(
        (
            c
            for c in status.get("conditions") or []
            if isinstance(c, dict) and c.get("type") == "Synced"
        ),
        None,
    )
    if synced is None or _int(synced.get("observedGeneration")) < generation:
        return False
    if synced.get("reason") == "InProgress":
        return False
    if synced.get("status") == "False":
        raise BenchError(
            f"instance {name}: generation {generation} was not applied: "
            f"{synced.get('reason')}: {synced.get('message')}"
        )
    return synced.get("status") == "True" and status.get("phase") == phase


def patch_instance(custom: Any, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Merge-patch the Instance's spec; the object the apiserver answered with."""
    obj: dict[str, Any] = custom.patch_namespaced_custom_object(
        benchlib.GROUP,
        benchlib.VERSION,
        namespace,
        "instances",
        name,
        {"spec": spec},
        _content_type="application/merge-patch+json",
    )
    return obj


def wait_settled(
    custom: Any, namespace: str, answer: dict[str, Any], phase: str, deadline: float
) -> float:
    """Watch the Instance from the resourceVersion of ``answer`` (a create's or patch's) until
    it has :func:`settled` at ``answer``'s generation in ``phase``; the monotonic time that was
    seen. Starting at that resourceVersion, no status written after the call is missed."""
    from kubernetes import watch
    from kubernetes.client import exceptions

    name = answer["metadata"]["name"]
    generation = int(answer["metadata"]["generation"])
    version = answer["metadata"]["resourceVersion"]
    if settled(answer, generation, phase):
        return time.monotonic()
    while (remaining := deadline - time.monotonic()) > 0:
        stream = watch.Watch()  # type: ignore[no-untyped-call]
        try:
            for event in stream.stream(  # type: ignore[no-untyped-call]
                custom.list_namespaced_custom_object,
                benchlib.GROUP,
                benchlib.VERSION,
                namespace,
                "instances",
                field_selector=f"metadata.name={name}",
                resource_version=version,
                timeout_seconds=max(1, int(remaining)),
            ):
                obj = event["object"]
                if event["type"] == "ERROR":  # 410 Gone is raised by the client itself
                    raise BenchError(f"the watch of {namespace}/{name} failed: {obj}")
                if event["type"] == "DELETED":
                    raise BenchError(f"instance {namespace}/{name} was deleted meanwhile")
                version = obj["metadata"]["resourceVersion"]
                if settled(obj, generation, phase):
                    return time.monotonic()
        except exceptions.ApiException as exc:
            if exc.status != 410:
                raise
            # The version is too old to watch from: read the object, go on from its version.
            obj = custom.get_namespaced_custom_object(
                benchlib.GROUP, benchlib.VERSION, namespace, "instances", name
            )
            if settled(obj, generation, phase):
                return time.monotonic()
            version = obj["metadata"]["resourceVersion"]
        finally:
            stream.stop()  # type: ignore[no-untyped-call]
    raise BenchError(f"instance {namespace}/{name} was not {phase} and Synced in time")


class ReadyWatch:
    """Waits in a thread of its own for a console's ready count to go past ``above``, so that
    the moment the guest is up is taken even while the API is being watched."""

    def __init__(self, console_log: pathlib.Path, above: int, deadline: float) -> None:
        self._stop = threading.Event()
        self._ready_at: float | None = None
        self._error: BaseException | None = None
        self._deadline = deadline
        self._thread = threading.Thread(
            target=self._run, args=(console_log, above, deadline), daemon=True
        )
        self._thread.start()

    def _run(self, console_log: pathlib.Path, above: int, deadline: float) -> None:
        try:
            self._ready_at = benchlib.wait_ready_count(
                console_log, above, deadline, stop=self._stop
            )
        except BaseException as exc:  # handed to the caller by result()
            self._error = exc

    def result(self) -> float:
        """The monotonic time the guest was ready."""
        self._thread.join(max(0.0, self._deadline - time.monotonic()) + 1)
        if self._error is not None:
            raise self._error
        if self._ready_at is None:
            raise BenchError("the console was not read in time")
        return self._ready_at

    def cancel(self) -> None:
        self._stop.set()
        self._thread.join()


class KubenovaGuest:
    """The benchmark's Instance on ``host``: boot, the timed operations, deletion."""

    def __init__(
        self, custom: Any, namespace: str, name: str, flavor: str, host: str, timeout: float
    ) -> None:
        self.custom, self.namespace, self.name = custom, namespace, name
        self.flavor, self.host, self.timeout = flavor, host, timeout
        self.console_log = pathlib.Path()

    def boot(self) -> float:
        """Create the Instance and wait until it is Running and its guest ready; the time that
        took (a boot, not one of the operations compared)."""
        body = {
            "apiVersion": benchlib.API_VERSION,
            "kind": "Instance",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "flavor": self.flavor,
                "image": benchlib.TINY_IMAGE,
                "forcedHost": self.host,
                "powerState": "Running",
            },
        }
        started = time.monotonic()
        created = self.custom.create_namespaced_custom_object(
            benchlib.GROUP, benchlib.VERSION, self.namespace, "instances", body
        )
        self.console_log = benchlib.INSTANCES_PATH / created["metadata"]["uid"] / "console.log"
        ready = ReadyWatch(self.console_log, 0, started + self.timeout)
        try:
            wait_settled(self.custom, self.namespace, created, "Running", started + self.timeout)
            obj = self.custom.get_namespaced_custom_object(
                benchlib.GROUP, benchlib.VERSION, self.namespace, "instances", self.name
            )
            # Checked before waiting for the console, which another host's guest never writes.
            placed = (obj.get("status") or {}).get("host")
            if placed != self.host:
                raise BenchError(f"{self.name} runs on {placed!r}, not on {self.host!r}")
            ready_at = ready.result()
        finally:
            ready.cancel()
        return ready_at - started

    def stop(self) -> float:
        """powerState Stopped -> Stopped and Synced."""
        started = time.monotonic()
        answer = patch_instance(self.custom, self.namespace, self.name, {"powerState": "Stopped"})
        done = wait_settled(self.custom, self.namespace, answer, "Stopped", started + self.timeout)
        return done - started

    def start(self) -> tuple[float, float]:
        """powerState Running -> (Running and Synced, one more ready line)."""
        return self._until_up({"powerState": "Running"})

    def reboot(self) -> tuple[float, float]:
        """A soft reboot request -> (Synced, one more ready line)."""
        stamp = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}-{uuid.uuid4().hex[:6]}"
        return self._until_up({"reboot": {"requestedAt": stamp, "type": "Soft"}})

    def _until_up(self, spec: dict[str, Any]) -> tuple[float, float]:
        before = benchlib.ready_count(self.console_log)
        started = time.monotonic()
        deadline = started + self.timeout
        # Watching the console from before the patch: the guest may be up before the status
        # says the operation is done.
        ready = ReadyWatch(self.console_log, before, deadline)
        try:
            answer = patch_instance(self.custom, self.namespace, self.name, spec)
            synced_at = wait_settled(self.custom, self.namespace, answer, "Running", deadline)
            ready_at = ready.result()
        finally:
            ready.cancel()
        return synced_at - started, ready_at - started

    def delete(self) -> None:
        """Delete the Instance and wait until it is gone. Tried even when the create call
        did not answer (an interrupted call may still have made it); a missing one is gone."""
        benchlib.delete_instance(self.custom, self.namespace, self.name, self.timeout)


# -- Direct: the same calls on libvirt -------------------------------------------------------


def wait_shutoff(domain: Any, deadline: float) -> float:
    """Poll the domain's state every STATE_POLL_S until libvirt reports it SHUTOFF; the
    monotonic time that was seen."""
    import libvirt

    while time.monotonic() < deadline:
        if domain.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF:
            return time.monotonic()
        time.sleep(STATE_POLL_S)
    raise BenchError(f"domain {domain.name()} did not shut off in time")


class DirectOps:
    """The timed calls on a guest of ``benchlib.define_direct_guest``."""

    def __init__(self, guest: benchlib.DirectGuest, timeout: float) -> None:
        self.guest, self.timeout = guest, timeout

    def boot(self) -> float:
        """Start it the first time, until ready (not compared)."""
        return self.start()

    def stop(self) -> float:
        """``shutdown()`` (ACPI) until SHUTOFF."""
        started = time.monotonic()
        self.guest.domain.shutdown()
        return wait_shutoff(self.guest.domain, started + self.timeout) - started

    def start(self) -> float:
        """``create()`` until one more ready line."""
        before = benchlib.ready_count(self.guest.console_log)
        started = time.monotonic()
        self.guest.domain.create()
        ready_at = benchlib.wait_ready_count(self.guest.console_log, before, started + self.timeout)
        return ready_at - started

    def reboot(self) -> float:
        """Nova's soft reboot: ``shutdown()``, SHUTOFF, ``create()``, until one more ready
        line."""
        before = benchlib.ready_count(self.guest.console_log)
        started = time.monotonic()
        deadline = started + self.timeout
        self.guest.domain.shutdown()
        wait_shutoff(self.guest.domain, deadline)
        self.guest.domain.create()
        return benchlib.wait_ready_count(self.guest.console_log, before, deadline) - started
