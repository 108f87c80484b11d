"""Lifecycle events through the hypervisor adapter, on libvirt's in-process test:///default
(no daemon): delivered on libvirt's event thread, registered again after a reconnect, and
stopped on request."""

from __future__ import annotations

import logging
import threading
import uuid

from kubenova_agent.virt import driver as virt_driver
from kubenova_agent.virt.libvirt import connection
from kubenova_agent.virt.testdriver import TestDriver

PATIENCE_S = 5.0
IMAGE = virt_driver.ImageRef(
    name="tiny", url="http://127.0.0.1/tiny.qcow2", sha256="a" * 64, disk_format="qcow2"
)


class Heard:
    """Collects the events of one domain and lets a test wait for one by name."""

    def __init__(self, domain_uuid: str) -> None:
        self.domain_uuid = domain_uuid
        self.names: list[str] = []
        self.threads: set[str] = set()
        self.changed = threading.Condition()

    def __call__(self, domain_uuid: str, event: int, detail: int) -> None:
        del detail
        if domain_uuid != self.domain_uuid:
            return
        with self.changed:
            self.names.append(connection.LIFECYCLE_EVENT_NAMES.get(event, str(event)))
            self.threads.add(threading.current_thread().name)
            self.changed.notify_all()

    def wait_for(self, name: str) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: name in self.names, PATIENCE_S)


def _driver_with_instance() -> tuple[TestDriver, str]:
    test_driver = TestDriver(f"events-{uuid.uuid4().hex[:8]}", 4, 4096, 40)
    test_driver.init_host()
    instance = virt_driver.InstanceSpec(
        uuid=str(uuid.uuid4()),
        name="events",
        hostname="events",
        vcpus=1,
        memory_mib=128,
        disk_gib=1,
        image=IMAGE,
    )
    test_driver.spawn(instance)
    return test_driver, instance.uuid


def test_events_arrive_on_libvirts_event_thread():
    test_driver, instance_uuid = _driver_with_instance()
    watcher = connection.Connection("test:///default")
    heard = Heard(instance_uuid)
    try:
        assert watcher.watch_lifecycle(heard)
        watcher.open()
        test_driver.pause(instance_uuid)
        assert heard.wait_for("suspended")
        assert heard.threads == {"libvirt-events"}
    finally:
        watcher.close()
        test_driver.destroy(instance_uuid)


def test_events_are_registered_again_after_a_reconnect(caplog):
    test_driver, instance_uuid = _driver_with_instance()
    connection.start_event_loop()
    watcher = connection.Connection("test:///default")
    heard = Heard(instance_uuid)
    try:
        watcher.open()
        assert watcher.watch_lifecycle(heard)
        # The connection dies under the adapter (as when libvirtd restarts); the next call
        # reconnects, and events flow on the new connection.
        watcher._handle.close()
        with caplog.at_level(logging.WARNING, logger=connection.__name__):
            assert watcher.lookup_by_uuid(instance_uuid) is not None
        assert "reconnecting" in caplog.text
        test_driver.suspend(instance_uuid)
        assert heard.wait_for("stopped")
    finally:
        watcher.close()
        test_driver.destroy(instance_uuid)


def test_no_events_once_the_callback_is_removed():
    test_driver, instance_uuid = _driver_with_instance()
    watcher = connection.Connection("test:///default")
    heard, sentinel = Heard(instance_uuid), Heard(instance_uuid)
    try:
        watcher.open()
        assert watcher.watch_lifecycle(heard)
        assert watcher.watch_lifecycle(None) is False
        # A second watcher proves the event was emitted while the first heard nothing.
        other = connection.Connection("test:///default")
        other.open()
        other.watch_lifecycle(sentinel)
        test_driver.pause(instance_uuid)
        assert sentinel.wait_for("suspended")
        other.close()
        assert heard.names == []
    finally:
        watcher.close()
        test_driver.destroy(instance_uuid)


def test_starting_the_event_loop_twice_is_harmless():
    connection.start_event_loop()
    connection.start_event_loop()
    loops = [t for t in threading.enumerate() if t.name == "libvirt-events"]
    assert len(loops) == 1
