"""Many simulated hosts in one agent process: the hosts file, the fleet's start and stop, the
private test hypervisors that keep the hosts apart, and the command line that wires them."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest

from kubenova.config import MessagingSettings
from kubenova_agent import cmd, fleet
from kubenova_agent import service as service_mod
from kubenova_agent.settings import AgentSettings
from kubenova_agent.virt import driver as virt_driver
from kubenova_agent.virt import testdriver

IMAGE = virt_driver.ImageRef(
    name="tiny", url="http://127.0.0.1:8089/tiny.qcow2", sha256="ab" * 32, disk_format="qcow2"
)


# -- the hosts file -------------------------------------------------------------------------


def test_hosts_file_lines_give_names_url_files_and_labels():
    hosts = fleet.parse_hosts(
        "# simulated hosts\n\nh-1 /s/h-1.url zone=a gpu=\n  h-2   /s/h-2.url\n", "f.hosts"
    )
    assert hosts == [
        fleet.SimulatedHost("h-1", "/s/h-1.url", {"zone": "a", "gpu": ""}),
        fleet.SimulatedHost("h-2", "/s/h-2.url", {}),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("h-1\n", "f.hosts, line 1: wants HOST URL-FILE"),
        ("h-1 /u\nh-1 /v\n", "f.hosts, line 2: host 'h-1' is listed twice"),
        ("h-1 /u =a\n", "f.hosts, line 1: a label wants KEY=VALUE, got '=a'"),
        ("h-1 /u zone\n", "f.hosts, line 1: a label wants KEY=VALUE, got 'zone'"),
        ("# nothing\n\n", "f.hosts: lists no host"),
    ],
)
def test_a_bad_hosts_file_is_refused_naming_the_line_and_the_reason(text: str, message: str):
    with pytest.raises(fleet.HostsFileError) as caught:
        fleet.parse_hosts(text, "f.hosts")
    assert str(caught.value).startswith(message)


def test_an_unreadable_hosts_file_is_named(tmp_path):
    missing = tmp_path / "none.hosts"
    with pytest.raises(fleet.HostsFileError, match=f"cannot read the hosts file {missing}"):
        fleet.read_hosts_file(str(missing))


# -- running the hosts -----------------------------------------------------------------------


class _Consumer:
    def __init__(self) -> None:
        self.stopped = threading.Event()
        self.ran = threading.Event()

    def run(self) -> None:
        self.ran.set()
        self.stopped.wait(10)

    def stop(self) -> None:
        self.stopped.set()


class _Service:
    """What the fleet uses of an AgentService."""

    def __init__(self, host: str, failures: int = 0) -> None:
        self.settings = AgentSettings(host=host, messaging=MessagingSettings())
        self.consumer = _Consumer()
        self.failures = failures
        self.starts = 0
        self.stops = 0

    def start(self) -> None:
        self.starts += 1
        if self.starts <= self.failures:
            raise ConnectionError("broker refused")

    def stop(self) -> None:
        self.stops += 1


def _run(hosts: fleet.Fleet) -> threading.Thread:
    thread = threading.Thread(target=hosts.run, daemon=True)
    thread.start()
    return thread


def test_every_host_starts_and_consumes_on_its_own_thread_and_stops_once():
    services = [_Service(f"h-{n}") for n in range(5)]
    hosts = fleet.Fleet(services, start_interval_s=0)  # type: ignore[arg-type]
    thread = _run(hosts)
    for service in services:
        assert service.consumer.ran.wait(5)
    assert hosts.started() == 5
    hosts.stop()
    thread.join(10)
    assert not thread.is_alive()
    assert [(s.starts, s.stops) for s in services] == [(1, 1)] * 5


def test_a_host_that_cannot_start_is_tried_again_without_holding_up_the_others():
    stubborn = _Service("h-stubborn", failures=2)
    others = [_Service(f"h-{n}") for n in range(3)]
    hosts = fleet.Fleet(
        [stubborn, *others],  # type: ignore[list-item]
        start_interval_s=0,
        retry_interval_s=0.05,
    )
    thread = _run(hosts)
    for service in others:
        assert service.consumer.ran.wait(5)
    assert stubborn.consumer.ran.wait(5)
    assert stubborn.starts == 3
    hosts.stop()
    thread.join(10)
    assert stubborn.stops == 1


def test_a_host_that_never_started_is_not_told_to_stop():
    broken = _Service("h-broken", failures=10**6)
    healthy = _Service("h-ok")
    hosts = fleet.Fleet(
        [broken, healthy],  # type: ignore[list-item]
        start_interval_s=0,
        retry_interval_s=0.01,
    )
    thread = _run(hosts)
    assert healthy.consumer.ran.wait(5)
    hosts.stop()
    thread.join(10)
    assert not thread.is_alive()
    assert (broken.stops, healthy.stops) == (0, 1)
    assert hosts.started() == 1


# -- private test hypervisors ----------------------------------------------------------------


def _instance() -> virt_driver.InstanceSpec:
    return virt_driver.InstanceSpec(
        uuid=str(uuid.uuid4()),
        name="vm",
        hostname="vm",
        vcpus=1,
        memory_mib=128,
        disk_gib=1,
        image=IMAGE,
    )


def test_hosts_on_private_hypervisors_see_only_their_own_domains(tmp_path):
    uri = testdriver.private_hypervisor_uri(str(tmp_path))
    assert uri == f"test://{tmp_path}/kubenova-test-node.xml"
    assert testdriver.private_hypervisor_uri(str(tmp_path)) == uri
    first, second = (
        testdriver.TestDriver(hostname=name, vcpus=2, memory_mib=2048, disk_gib=20, uri=uri)
        for name in ("p-1", "p-2")
    )
    shared = testdriver.TestDriver(hostname="p-3", vcpus=2, memory_mib=2048, disk_gib=20)
    drivers = (first, second, shared)
    for test_driver in drivers:
        test_driver.init_host()
    try:
        instance = _instance()
        first.spawn(instance)
        assert first.list_instance_uuids() == [instance.uuid]
        # The same uuid is a domain of the second host's own, not a clash with the first's.
        second.spawn(instance)
        assert second.list_instance_uuids() == [instance.uuid]
        first.destroy(instance.uuid)
        assert first.list_instance_uuids() == []
        assert second.list_instance_uuids() == [instance.uuid]
        # The process-wide test:///default holds none of them.
        assert shared._connection.lookup_by_uuid(instance.uuid) is None
        second.destroy(instance.uuid)
    finally:
        for test_driver in drivers:
            test_driver._connection.close()


# -- the command line ------------------------------------------------------------------------


def test_the_command_line_makes_one_service_per_host_with_its_url_and_labels(
    tmp_path, monkeypatch: pytest.MonkeyPatch
):
    made: list[dict[str, Any]] = []

    class _Recorded:
        def __init__(self, settings: AgentSettings, driver: Any, labels: dict[str, str]):
            made.append({"settings": settings, "driver": driver, "labels": labels})

    monkeypatch.setattr(service_mod, "AgentService", _Recorded)
    for host in ("s-1", "s-2"):
        (tmp_path / f"{host}.url").write_text(f"amqp://agent-{host}:pw@127.0.0.1:5672/kn\n")
    hosts_file = tmp_path / "sim.hosts"
    hosts_file.write_text(
        f"s-1 {tmp_path}/s-1.url zone=a\ns-2 {tmp_path}/s-2.url zone=b role=edge\n"
    )
    args = cmd.build_parser().parse_args(
        [
            "--driver=test",
            f"--hosts-file={hosts_file}",
            "--vcpus=3",
            "--label=zone=x",
            "--label=pool=p",
            "--fail-builds=disk on fire",
        ]
    )
    services = cmd._fleet_services(args, str(tmp_path))
    assert len(services) == 2
    assert [m["settings"].host for m in made] == ["s-1", "s-2"]
    assert [m["settings"].messaging.url for m in made] == [
        "amqp://agent-s-1:pw@127.0.0.1:5672/kn",
        "amqp://agent-s-2:pw@127.0.0.1:5672/kn",
    ]
    # A host's own labels win over the ones every host is given.
    assert [m["labels"] for m in made] == [
        {"zone": "a", "pool": "p"},
        {"zone": "b", "pool": "p", "role": "edge"},
    ]
    drivers = [m["driver"] for m in made]
    assert {d.uri for d in drivers} == {f"test://{tmp_path}/kubenova-test-node.xml"}
    assert [(d.hostname, d.vcpus, d.host_failure) for d in drivers] == [
        ("s-1", 3, "disk on fire"),
        ("s-2", 3, "disk on fire"),
    ]
    assert {d.migration_uri for d in drivers} == {testdriver.DEFAULT_URI}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--hosts-file=x"], "--hosts-file is for the test driver only"),
        (["--driver=test", "--hosts-file=x", "--host=h"], "leave out --host and --amqp-url-file"),
    ],
)
def test_the_command_line_refuses_what_does_not_go_with_a_hosts_file(argv, message):
    with pytest.raises(SystemExit, match=message):
        cmd.run_fleet(cmd.build_parser().parse_args(argv))


def test_a_missing_url_file_stops_the_agent_naming_the_host(tmp_path):
    hosts_file = tmp_path / "sim.hosts"
    hosts_file.write_text(f"s-1 {tmp_path}/absent.url\n")
    args = cmd.build_parser().parse_args(["--driver=test", f"--hosts-file={hosts_file}"])
    with pytest.raises(SystemExit, match="AMQP URL file of host 's-1'"):
        cmd._fleet_services(args, str(tmp_path))


def test_a_named_test_hypervisor_serves_every_host_of_the_file(
    tmp_path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(service_mod, "AgentService", lambda settings, driver, labels: driver)
    (tmp_path / "u").write_text("amqp://a:b@127.0.0.1:5672/kn\n")
    hosts_file = tmp_path / "sim.hosts"
    hosts_file.write_text(f"s-1 {tmp_path}/u\ns-2 {tmp_path}/u\n")
    args = cmd.build_parser().parse_args(
        ["--driver=test", f"--hosts-file={hosts_file}", "--test-hypervisor=test+unix:///default"]
    )
    drivers: list[Any] = cmd._fleet_services(args, str(tmp_path))  # type: ignore[assignment]
    assert [d.uri for d in drivers] == ["test+unix:///default"] * 2


def test_a_lone_simulated_host_takes_the_named_test_hypervisor_too():
    args = cmd.build_parser().parse_args(
        ["--driver=test", "--host=h", "--test-hypervisor=test+unix:///default"]
    )
    settings = AgentSettings(host="h", messaging=MessagingSettings())
    assert cmd.make_driver(args, settings).uri == "test+unix:///default"  # type: ignore[attr-defined]
    with pytest.raises(SystemExit, match="for the test driver only"):
        cmd.make_driver(
            cmd.build_parser().parse_args(["--test-hypervisor=test:///default"]), settings
        )


@pytest.mark.parametrize(
    ("hosts", "interval_s"),
    [(1, 0.005), (100, 0.005), (200, 0.01), (500, 0.025), (1000, 0.05), (5000, 0.05)],
)
def test_the_switch_interval_grows_with_the_hosts_of_a_process(hosts, interval_s):
    assert fleet.switch_interval_s(hosts) == pytest.approx(interval_s)


def test_a_process_of_many_hosts_switches_threads_less_often(monkeypatch, tmp_path):
    """Hundreds of host threads waiting for the GIL each woke every 5 ms to ask for it; a
    process of 1000 hosts asks every 50 ms instead."""
    intervals: list[float] = []
    ran: list[int] = []

    class _Fleet:
        def __init__(self, services):
            self.services = services

        def run(self):
            ran.append(len(self.services))

        def stop(self):
            pass

    monkeypatch.setattr(cmd.sys, "setswitchinterval", intervals.append)
    monkeypatch.setattr(cmd, "_fleet_services", lambda args, directory: [object()] * 1000)
    monkeypatch.setattr(fleet, "Fleet", _Fleet)
    monkeypatch.setattr(cmd.signal, "signal", lambda signum, handler: None)
    hosts_file = tmp_path / "sim.hosts"
    hosts_file.write_text(f"s-1 {tmp_path}/s-1.url\n")

    args = cmd.build_parser().parse_args(["--driver=test", f"--hosts-file={hosts_file}"])
    assert cmd.run_fleet(args) == 0

    assert intervals == [0.05]
    assert ran == [1000]
