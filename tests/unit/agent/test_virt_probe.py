"""The KVM-versus-TCG probe: its payload, and how it judges what QEMU did."""

from __future__ import annotations

import os
import shutil
import time

import pytest

from kubenova_agent.virt.libvirt import probe

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


def test_payload_is_one_bootable_sector():
    assert len(probe.BOOT_SECTOR) == 512
    assert probe.BOOT_SECTOR.endswith(b"\x55\xaa")


@pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 is not installed")
def test_payload_runs_to_its_end_under_tcg():
    # Software emulation always works: this proves the payload reaches long mode, finishes its
    # loop and exits through the debug-exit port with the status the probe waits for.
    assert QEMU is not None
    assert probe.run_payload(QEMU, "tcg", timeout=30)


def test_guest_that_exits_with_the_known_status_counts_as_running(tmp_path):
    qemu = fake_qemu(tmp_path, f"exit {probe.EXPECTED_EXIT_STATUS}")
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
    qemu = fake_qemu(tmp_path, f"exit {probe.EXPECTED_EXIT_STATUS}")
    assert probe.probe_virt_type(qemu, 5) == "qemu"


def test_probe_says_kvm_when_the_kvm_guest_finishes(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "access", lambda path, mode: True)
    qemu = fake_qemu(tmp_path, f"exit {probe.EXPECTED_EXIT_STATUS}")
    assert probe.probe_virt_type(qemu, 5) == "kvm"


def test_probe_says_qemu_when_the_kvm_guest_hangs(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "access", lambda path, mode: True)
    qemu = fake_qemu(tmp_path, "exec sleep 60")
    assert probe.probe_virt_type(qemu, 0.5) == "qemu"


def test_probe_result_is_cached_per_process(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "access", lambda path, mode: True)
    marker = tmp_path / "runs"
    qemu = fake_qemu(tmp_path, f"echo run >> {marker}; exit {probe.EXPECTED_EXIT_STATUS}")
    assert probe.probe_virt_type(qemu, 5) == "kvm"
    assert probe.probe_virt_type(qemu, 5) == "kvm"
    assert marker.read_text().count("run") == 1


def test_probe_asks_for_kvm_with_a_named_cpu_and_the_debug_exit_device():
    command = probe.qemu_command("qemu-system-x86_64", "/tmp/boot.img", "kvm")
    assert "accel=kvm" in command
    assert command[command.index("-cpu") + 1] == "qemu64"
    assert "isa-debug-exit,iobase=0xf4,iosize=0x04" in command
