"""The KVM-versus-TCG probe: how it judges what a local QEMU did, and how it runs its payload as
a libvirt domain when there is no local QEMU."""

from __future__ import annotations

import logging
import os
import shutil
import stat
import time
import xml.etree.ElementTree as ET

import pytest

from kubenova_agent import exceptions
from kubenova_agent.virt.libvirt import connection, payload, probe

QEMU = shutil.which("qemu-system-x86_64")


@pytest.fixture(autouse=True)
def forget_probe_results():
    probe.probe_virt_type.cache_clear()
    yield
    probe.probe_virt_type.cache_clear()


def fake_qemu(tmp_path, script: str) -> str:
    path = tmp_path / "fake-qemu"
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(0o755)
    return str(path)


# -- a local QEMU ------------------------------------------------------------------------------


@pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 is not installed")
def test_payload_runs_to_its_end_under_tcg():
    # Software emulation always works: this proves the payload reaches long mode, finishes its
    # loop and exits through the debug-exit port with the status the probe waits for.
    assert QEMU is not None
    assert probe.run_payload(QEMU, "tcg", timeout=30)


def test_guest_that_exits_with_the_known_status_counts_as_running(tmp_path):
    qemu = fake_qemu(tmp_path, f"exit {payload.EXPECTED_EXIT_STATUS}")
    assert probe.run_payload(qemu, "kvm", timeout=5)


def test_guest_that_exits_otherwise_does_not_count(tmp_path):
    qemu = fake_qemu(tmp_path, "echo 'failed to initialize kvm' >&2; exit 1")
    assert not probe.run_payload(qemu, "kvm", timeout=5)


def test_guest_that_hangs_is_killed_at_the_timeout(tmp_path):
    qemu = fake_qemu(tmp_path, "exec sleep 60")
    started = time.monotonic()
    assert not probe.run_payload(qemu, "kvm", timeout=0.5)
    assert time.monotonic() - started < 5


def test_missing_qemu_binary_means_no_kvm(tmp_path):
    assert not probe.run_payload(str(tmp_path / "no-such-qemu"), "kvm", timeout=5)


def test_probe_says_qemu_without_a_usable_dev_kvm(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    qemu = fake_qemu(tmp_path, f"exit {payload.EXPECTED_EXIT_STATUS}")
    assert probe.probe_virt_type(qemu, 5) == "qemu"


def test_probe_says_kvm_when_the_kvm_guest_finishes(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "access", lambda path, mode: True)
    qemu = fake_qemu(tmp_path, f"exit {payload.EXPECTED_EXIT_STATUS}")
    assert probe.probe_virt_type(qemu, 5) == "kvm"


def test_probe_says_qemu_when_the_kvm_guest_hangs(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "access", lambda path, mode: True)
    qemu = fake_qemu(tmp_path, "exec sleep 60")
    assert probe.probe_virt_type(qemu, 0.5) == "qemu"


def test_probe_result_is_cached_per_process(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "access", lambda path, mode: True)
    marker = tmp_path / "runs"
    qemu = fake_qemu(tmp_path, f"echo run >> {marker}; exit {payload.EXPECTED_EXIT_STATUS}")
    assert probe.probe_virt_type(qemu, 5) == "kvm"
    assert probe.probe_virt_type(qemu, 5) == "kvm"
    assert marker.read_text().count("run") == 1


def test_probe_asks_for_kvm_with_a_named_cpu_and_the_debug_exit_device():
    command = probe.qemu_command("qemu-system-x86_64", "/tmp/boot.img", "kvm")
    assert "accel=kvm" in command
    assert command[command.index("-cpu") + 1] == "qemu64"
    assert "isa-debug-exit,iobase=0xf4,iosize=0x04" in command


# -- without a local QEMU: the payload runs as a libvirt domain ---------------------------------


class FakeDomain:
    """A transient domain as ``connection.Domain`` shows it: active until it ends by itself
    (after ``runs_for`` looks; None: never) or is destroyed, then gone (ERR_NO_DOMAIN)."""

    def __init__(self, runs_for: int | None, error: exceptions.HypervisorError | None = None):
        self.runs_for = runs_for
        self.error = error
        self.looks = 0
        self.destroyed = False

    def _gone(self) -> bool:
        return self.destroyed or (self.runs_for is not None and self.looks > self.runs_for)

    def is_active(self) -> bool:
        self.looks += 1
        if self.error is not None:
            raise self.error
        if self._gone():
            raise exceptions.HypervisorError("Domain not found", code=connection.ERR_NO_DOMAIN)
        return True

    def destroy(self) -> None:
        if self._gone():
            raise exceptions.HypervisorError("Domain not found", code=connection.ERR_NO_DOMAIN)
        self.destroyed = True


class FakeLibvirtd:
    """Stands in for ``connection.Connection`` at its seam: starts the probe's transient domain
    as libvirtd would, writing ``serial_output`` to the domain's serial file, and records what
    it was given and what it saw of the probe's files."""

    uri = "qemu:///system"

    def __init__(
        self,
        *,
        serial_output: bytes = payload.MARKER,
        runs_for: int | None = 2,
        refuse: exceptions.HypervisorError | None = None,
        unreachable: bool = False,
        running_error: exceptions.HypervisorError | None = None,
    ) -> None:
        self.serial_output = serial_output
        self.runs_for = runs_for
        self.refuse = refuse
        self.unreachable = unreachable
        self.running_error = running_error
        self.xml: list[str] = []
        self.domains: list[FakeDomain] = []
        self.files_seen: dict[str, int] = {}

    def open(self) -> None:
        if self.unreachable:
            raise exceptions.HypervisorError("Failed to connect socket", code=38)

    def create_transient_domain(self, xml: str) -> FakeDomain:
        self.xml.append(xml)
        root = ET.fromstring(xml)
        disk = root.find("devices/disk/source").get("file")
        console_log = root.find("devices/serial/source").get("path")
        for path in (os.path.dirname(disk), disk, console_log):
            self.files_seen[os.path.basename(path)] = stat.S_IMODE(os.stat(path).st_mode)
        with open(disk, "rb") as handle:
            assert handle.read(512) == payload.BOOT_SECTOR
        if self.refuse is not None:
            raise self.refuse
        with open(console_log, "ab") as handle:
            handle.write(self.serial_output)
        domain = FakeDomain(self.runs_for, self.running_error)
        self.domains.append(domain)
        return domain


@pytest.fixture
def quick(monkeypatch):
    """Short polls and no grace for a marker that will never come."""
    monkeypatch.setattr(probe, "POLL_INTERVAL", 0.01)
    monkeypatch.setattr(probe, "MARKER_GRACE", 0.05)


@pytest.fixture
def no_local_payload(monkeypatch):
    """Fails the test if the local probe (/dev/kvm, then the payload) runs."""

    def refuse(*args, **kwargs):
        raise AssertionError("the local probe ran although there is no local QEMU")

    monkeypatch.setattr(probe, "run_local_probe", refuse)


@pytest.fixture
def shared_dir(tmp_path):
    path = tmp_path / "instances"
    path.mkdir()
    return path


def probe_without_local_qemu(tmp_path, libvirtd, shared_dir, timeout=5.0) -> str:
    return probe.probe_virt_type(str(tmp_path / "no-such-qemu"), timeout, libvirtd, str(shared_dir))


def test_domain_that_ends_with_the_marker_means_kvm(
    tmp_path, shared_dir, no_local_payload, quick, caplog
):
    libvirtd = FakeLibvirtd()
    with caplog.at_level(logging.INFO, logger=probe.LOG.name):
        assert probe_without_local_qemu(tmp_path, libvirtd, shared_dir) == "kvm"
    assert ET.fromstring(libvirtd.xml[0]).get("type") == "kvm"
    assert not libvirtd.domains[0].destroyed
    assert list(shared_dir.iterdir()) == []
    # The log says how the decision was made.
    assert "no local" in caplog.text
    assert "kvm domain of libvirtd at qemu:///system: it finished" in caplog.text


def test_domain_still_running_at_the_timeout_is_destroyed_and_means_qemu(
    tmp_path, shared_dir, no_local_payload, quick, caplog
):
    libvirtd = FakeLibvirtd(runs_for=None)
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger=probe.LOG.name):
        assert probe_without_local_qemu(tmp_path, libvirtd, shared_dir, timeout=0.3) == "qemu"
    assert 0.3 <= time.monotonic() - started < 3
    assert libvirtd.domains[0].destroyed
    assert list(shared_dir.iterdir()) == []
    assert "did not finish within 0.3 s" in caplog.text
    assert "guests will run under TCG" in caplog.text


def test_domain_that_ends_without_the_marker_means_qemu(
    tmp_path, shared_dir, no_local_payload, quick, caplog
):
    # A reset (triple fault) ends the domain too (on_reboot destroy) but prints nothing.
    libvirtd = FakeLibvirtd(serial_output=b"SeaBIOS says hello\n")
    with caplog.at_level(logging.INFO, logger=probe.LOG.name):
        assert probe_without_local_qemu(tmp_path, libvirtd, shared_dir) == "qemu"
    assert list(shared_dir.iterdir()) == []
    assert "without finishing" in caplog.text
    assert "SeaBIOS says hello" in caplog.text


def test_domain_libvirtd_will_not_start_means_qemu(
    tmp_path, shared_dir, no_local_payload, quick, caplog
):
    refusal = exceptions.HypervisorError("/dev/kvm: Permission denied", code=1)
    libvirtd = FakeLibvirtd(refuse=refusal)
    with caplog.at_level(logging.INFO, logger=probe.LOG.name):
        assert probe_without_local_qemu(tmp_path, libvirtd, shared_dir) == "qemu"
    assert libvirtd.domains == []
    assert list(shared_dir.iterdir()) == []
    assert "/dev/kvm: Permission denied" in caplog.text


def test_probe_files_are_readable_by_libvirtds_qemu(tmp_path, shared_dir, no_local_payload, quick):
    libvirtd = FakeLibvirtd()
    probe_without_local_qemu(tmp_path, libvirtd, shared_dir)
    (directory,) = (name for name in libvirtd.files_seen if name.startswith(".probe-"))
    assert libvirtd.files_seen[directory] == 0o755
    assert libvirtd.files_seen["boot.img"] == 0o644
    assert libvirtd.files_seen["console.log"] == 0o644


def test_libvirtd_failing_while_the_domain_runs_is_raised_after_cleaning_up(
    tmp_path, shared_dir, no_local_payload, quick
):
    lost = exceptions.HypervisorError("End of file while reading data", code=38)
    libvirtd = FakeLibvirtd(running_error=lost)
    with pytest.raises(exceptions.HypervisorError, match="End of file"):
        probe_without_local_qemu(tmp_path, libvirtd, shared_dir)
    assert libvirtd.domains[0].destroyed
    assert list(shared_dir.iterdir()) == []
    # Not cached: the next start asks again.
    libvirtd.running_error = None
    assert probe_without_local_qemu(tmp_path, libvirtd, shared_dir) == "kvm"


def test_unreachable_libvirtd_is_raised_and_not_cached(
    tmp_path, shared_dir, no_local_payload, quick
):
    libvirtd = FakeLibvirtd(unreachable=True)
    with pytest.raises(exceptions.HypervisorError):
        probe_without_local_qemu(tmp_path, libvirtd, shared_dir)
    assert libvirtd.xml == []
    libvirtd.unreachable = False
    assert probe_without_local_qemu(tmp_path, libvirtd, shared_dir) == "kvm"


def test_probing_through_libvirtd_needs_a_shared_directory(tmp_path, no_local_payload):
    with pytest.raises(ValueError, match="shares"):
        probe.probe_virt_type(str(tmp_path / "no-such-qemu"), 5, FakeLibvirtd())


def test_a_qemu_binary_on_path_is_found_and_libvirtd_is_not_used(monkeypatch, tmp_path, shared_dir):
    monkeypatch.setattr(os, "access", lambda path, mode: True)
    fake_qemu(tmp_path, f"exit {payload.EXPECTED_EXIT_STATUS}")
    monkeypatch.setenv("PATH", str(tmp_path))
    libvirtd = FakeLibvirtd(runs_for=None)
    assert probe.probe_virt_type("fake-qemu", 5, libvirtd, str(shared_dir)) == "kvm"
    assert libvirtd.xml == []


def test_the_domain_type_is_a_parameter(tmp_path, shared_dir, quick):
    libvirtd = FakeLibvirtd()
    assert probe.run_payload_in_libvirtd(libvirtd, str(shared_dir), "qemu", timeout=5)
    assert ET.fromstring(libvirtd.xml[0]).get("type") == "qemu"


def test_libvirts_test_driver_refuses_the_domain_so_the_probe_says_qemu(
    tmp_path, shared_dir, no_local_payload, quick
):
    # The real adapter against libvirt's in-process test driver, which refuses AUTODESTROY:
    # libvirt's error must come out as a refusal, a "qemu", with nothing left behind.
    libvirtd = connection.Connection("test:///default")
    try:
        assert probe_without_local_qemu(tmp_path, libvirtd, shared_dir) == "qemu"
        names = [domain.name for domain in libvirtd.list_domains()]
        assert not [name for name in names if name.startswith(probe.DOMAIN_NAME_PREFIX)]
    finally:
        libvirtd.close()
    assert list(shared_dir.iterdir()) == []


# -- the probe domain's XML --------------------------------------------------------------------

QEMU_NS = "{http://libvirt.org/schemas/domain/qemu/1.0}"


def probe_xml(domain_type: str = "kvm") -> str:
    return probe.probe_domain_xml(
        "kubenova-probe-0123456789ab", domain_type, "/probe/boot.img", "/probe/console.log"
    )


def test_probe_domain_passes_the_debug_exit_device_in_the_qemu_namespace():
    text = probe_xml()
    assert 'xmlns:qemu="http://libvirt.org/schemas/domain/qemu/1.0"' in text
    args = ET.fromstring(text).findall(f"{QEMU_NS}commandline/{QEMU_NS}arg")
    assert [arg.get("value") for arg in args] == [
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=0x04",
    ]


def test_probe_domain_writes_its_serial_port_to_the_file_and_boots_the_disk():
    devices = ET.fromstring(probe_xml()).find("devices")
    serial = devices.find("serial")
    assert serial.get("type") == "file"
    assert serial.find("source").get("path") == "/probe/console.log"
    (disk,) = devices.findall("disk")
    assert disk.find("source").get("file") == "/probe/boot.img"
    assert disk.find("driver").get("type") == "raw"


@pytest.mark.parametrize("domain_type", ["kvm", "qemu"])
def test_probe_domain_is_small_bare_and_ends_on_any_stop(domain_type):
    root = ET.fromstring(probe_xml(domain_type))
    assert root.get("type") == domain_type
    assert root.findtext("name").startswith(probe.DOMAIN_NAME_PREFIX)
    assert (root.findtext("memory"), root.find("memory").get("unit")) == ("16", "MiB")
    assert root.find("cpu").get("mode") == "custom"
    assert root.findtext("cpu/model") == "qemu64"
    for event in ("on_poweroff", "on_reboot", "on_crash"):
        assert root.findtext(event) == "destroy"
    devices = root.find("devices")
    assert devices.find("interface") is None
    assert devices.find("graphics") is None
    assert root.find("metadata") is None  # not an instance: no driver may adopt it
