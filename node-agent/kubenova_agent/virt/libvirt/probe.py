"""Decides whether guests on this host can use KVM or must run under software emulation (TCG).

``/dev/kvm`` being there proves little: on some hosts (nested virtualisation without proper
support) a KVM guest starts but crawls, so slowly that a Linux kernel never finishes
decompressing itself, while a trivial guest still looks fine. So the probe runs a guest that does
real work: a boot sector that enters 64-bit long mode, then performs 64 Mi iterations of a
read-modify-write loop over 1 MiB of guest memory (the pattern of a kernel's decompressor) and
finally writes to QEMU's ``isa-debug-exit`` port, which makes QEMU exit with a known status.
Under TCG this takes about 0.3 s, with working KVM less; on the broken hosts it does not finish
in 20 s. No exit with the known status within the timeout means "use qemu".

The result is cached for the life of the process: the answer does not change while we run, and
the probe costs up to ``timeout`` seconds.
"""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import tempfile
import time

LOG = logging.getLogger(__name__)

#: The value the payload writes to the debug-exit port; QEMU exits with ``(value << 1) | 1``.
EXIT_VALUE = 0x21
EXPECTED_EXIT_STATUS = (EXIT_VALUE << 1) | 1

DEFAULT_TIMEOUT = 5.0

# The boot sector's code, assembled (GNU as, --32; linked at 0x7c00, objcopy -O binary):
#
#   .code16                            |  .code32
#     cli                              |  pm32: mov $0x10,%ax; mov %ax,%ds; mov %ax,%es
#     xor %ax,%ax; mov %ax,%ds         |        mov %ax,%ss
#     mov %ax,%ss; mov $0x7c00,%sp     |        mov $0x1000,%edi; xor %eax,%eax
#     lgdtl gdtr                       |        mov $0xc00,%ecx; rep stosl    # zero 3 pages
#     mov %cr0,%eax; or $1,%eax        |        movl $0x2003,0x1000           # PML4[0]
#     mov %eax,%cr0                    |        movl $0x3003,0x2000           # PDPT[0]
#     ljmp $0x08,$pm32                 |        movl $0x83,0x3000             # 2 MiB page
#                                      |        mov $0x1000,%eax; mov %eax,%cr3
#   .code64                            |        mov %cr4,%eax; or $0x20,%eax  # PAE
#   lm64: mov $0x4000000,%ecx          |        mov %eax,%cr4
#   1:    mov %ecx,%edx                |        mov $0xc0000080,%ecx; rdmsr
#         and $0xfffff,%edx            |        or $0x100,%eax; wrmsr         # EFER.LME
#         addb %cl,0x100000(%rdx)      |        mov %cr0,%eax
#         dec %ecx; jnz 1b             |        or $0x80000000,%eax           # paging
#         mov $0x21,%al; out %al,$0xf4 |        mov %eax,%cr0
#   2:    hlt; jmp 2b                  |        ljmp $0x18,$lm64
#
#   gdt: null; 32-bit code 0x00cf9a000000ffff; data 0x00cf92000000ffff;
#        64-bit code 0x00af9a000000ffff.   gdtr: limit, base.
_CODE = bytes.fromhex(
    "fa31c08ed88ed0bc007c660f0116c87c0f20c06683c8010f22c0ea1f7c080066b810008ed88ec08ed0bf0010"
    "000031c0b9000c0000f3abc7050010000003200000c7050020000003300000c7050030000083000000b80010"
    "00000f22d80f20e083c8200f22e0b9800000c00f320d000100000f300f20c00d000000800f22c0ea867c0000"
    "1800b90000000489ca81e2ffff0f00008a00001000ffc975eeb021e6f4f4ebfd8d7426000000000000000000"
    "ffff0000009acf00ffff00000092cf00ffff0000009aaf001f00a87c"
)
BOOT_SECTOR = _CODE.ljust(510, b"\0") + b"\x55\xaa"


def qemu_command(qemu_binary: str, disk: str, accel: str) -> list[str]:
    """The QEMU command line that boots the probe payload from ``disk``."""
    return [
        qemu_binary,
        "-machine", f"accel={accel}",
        # A named model: "-cpu host" aborts on some of these hosts.
        "-cpu", "qemu64",
        "-m", "16",
        "-display", "none",
        "-nodefaults",
        "-no-reboot",
        "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
        "-drive", f"file={disk},format=raw,if=ide",
    ]  # fmt: skip


def run_payload(qemu_binary: str, accel: str, timeout: float) -> bool:
    """Boot the payload under ``accel``; True when it ran to its end within ``timeout`` s."""
    with tempfile.TemporaryDirectory(prefix="kubenova-probe-") as workdir:
        disk = os.path.join(workdir, "boot.img")
        with open(disk, "wb") as handle:
            handle.write(BOOT_SECTOR)
        started = time.monotonic()
        try:
            process = subprocess.Popen(
                qemu_command(qemu_binary, disk, accel),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        except OSError as exc:
            LOG.info("virt probe: cannot run %s: %s", qemu_binary, exc)
            return False
        try:
            _, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            try:
                process.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                # A process stuck in the kernel may ignore even SIGKILL for a while; the probe
                # has its answer and does not wait for it.
                LOG.warning("virt probe: qemu (pid %d) did not die after SIGKILL", process.pid)
            LOG.info("virt probe: %s guest did not finish within %.1f s", accel, timeout)
            return False
        elapsed = time.monotonic() - started
        if process.returncode != EXPECTED_EXIT_STATUS:
            LOG.info(
                "virt probe: %s guest exited with %s, not %d: %s",
                accel,
                process.returncode,
                EXPECTED_EXIT_STATUS,
                stderr.decode(errors="replace").strip()[-500:],
            )
            return False
        LOG.info("virt probe: %s guest finished in %.2f s", accel, elapsed)
        return True


@functools.cache
def probe_virt_type(
    qemu_binary: str = "qemu-system-x86_64", timeout: float = DEFAULT_TIMEOUT
) -> str:
    """Return ``"kvm"`` when a KVM guest really executes here, else ``"qemu"``.

    Cached per process and per arguments (``probe_virt_type.cache_clear()`` forgets).
    """
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        LOG.info("virt probe: /dev/kvm is not usable; guests will run under TCG")
        return "qemu"
    if run_payload(qemu_binary, "kvm", timeout):
        return "kvm"
    LOG.warning("virt probe: /dev/kvm is present but a KVM guest does not run; using TCG")
    return "qemu"
