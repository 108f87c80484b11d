"""The KVM probe's guest (virt/libvirt/payload.py): a bootable sector, assembled from the source
it carries, that under QEMU prints its marker on COM1 and exits through the debug-exit port."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess

import pytest

from kubenova_agent.virt.libvirt import payload, probe

QEMU = shutil.which("qemu-system-x86_64")
BINUTILS = shutil.which("as") and shutil.which("ld")


def test_payload_is_one_bootable_sector():
    assert len(payload.BOOT_SECTOR) == 512
    assert payload.BOOT_SECTOR.endswith(b"\x55\xaa")
    assert payload.MARKER in payload.BOOT_SECTOR


@pytest.mark.skipif(not BINUTILS, reason="GNU as and ld (binutils) are not installed")
def test_payload_is_its_source_assembled(tmp_path):
    source = tmp_path / "payload.S"
    source.write_text(payload.SOURCE)
    subprocess.run(["as", "--32", "-o", str(tmp_path / "payload.o"), str(source)], check=True)
    subprocess.run(
        [
            "ld", "-m", "elf_i386", "-Ttext", "0x7c00", "--oformat", "binary",
            "-o", str(tmp_path / "payload.bin"), str(tmp_path / "payload.o"),
        ],
        check=True,
    )  # fmt: skip
    assert (tmp_path / "payload.bin").read_bytes() == payload.CODE


def test_disk_holds_the_sector_and_is_large_enough_for_seabios(tmp_path):
    path = tmp_path / "boot.img"
    payload.write_disk(str(path), 0o644)
    assert path.read_bytes()[:512] == payload.BOOT_SECTOR
    assert os.path.getsize(path) == payload.DISK_SIZE
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


@pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 is not installed")
@pytest.mark.parametrize("interface", ["ide", "virtio"])
def test_payload_prints_its_marker_and_exits_under_tcg(tmp_path, interface):
    # What the libvirt path relies on (a virtio disk, like its domain's), and the local one (an
    # IDE disk): the marker on the serial port, then the known exit status.
    assert QEMU is not None
    disk = tmp_path / "boot.img"
    payload.write_disk(str(disk))
    serial = tmp_path / "serial.log"
    command = probe.qemu_command(QEMU, str(disk), "tcg")
    command[-1] = command[-1].replace("if=ide", f"if={interface}")
    finished = subprocess.run(
        [*command, "-serial", f"file:{serial}"], capture_output=True, timeout=30, check=False
    )
    assert finished.returncode == payload.EXPECTED_EXIT_STATUS, finished.stderr
    assert serial.read_bytes() == payload.MARKER
