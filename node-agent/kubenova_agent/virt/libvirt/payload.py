"""The KVM probe's guest: a boot sector that does real work, then says it finished.

It enters 64-bit long mode, performs 64 Mi iterations of a read-modify-write loop over 1 MiB of
guest memory (the pattern of a kernel's decompressor), writes :data:`MARKER` to the first serial
port (COM1) and finally writes :data:`EXIT_VALUE` to QEMU's ``isa-debug-exit`` port, which makes
QEMU exit with :data:`EXPECTED_EXIT_STATUS`. Under TCG this takes about 0.3 s, with working KVM
less; on hosts where KVM crawls it does not finish in 20 s.

Two ways to see that it finished: a QEMU run directly reports its exit status; a domain run
through libvirtd cannot (libvirt does not say how QEMU exited), so there the marker on the
serial port, written to a file, is the proof.

:data:`SOURCE` is the program, assembled with GNU binutils::

    as --32 -o payload.o payload.S
    ld -m elf_i386 -Ttext 0x7c00 --oformat binary -o payload.bin payload.o

and :data:`BOOT_SECTOR` holds the result; a unit test re-assembles the source where binutils
are installed, so the two cannot drift apart. The agent itself never assembles anything (its
image has no binutils).
"""

from __future__ import annotations

import os

#: The value the payload writes to the debug-exit port; QEMU exits with ``(value << 1) | 1``.
EXIT_VALUE = 0x21
EXPECTED_EXIT_STATUS = (EXIT_VALUE << 1) | 1

#: What the payload writes to COM1 just before it exits; nothing else prints it (SeaBIOS's own
#: messages go to the debug port 0x402, not the serial port).
MARKER = b"kubenova-probe-ok\n"

#: The size of the disk image holding the boot sector. SeaBIOS cannot read a virtio disk of one
#: sector ("Boot failed: could not read the boot disk"; 64 KiB fails too, 1 MiB boots), and a
#: sparse file of this size costs one block.
DISK_SIZE = 1 << 20

SOURCE = r"""
        .code16
        .globl _start
_start: cli
        xor %ax, %ax
        mov %ax, %ds
        mov %ax, %ss
        mov $0x7c00, %sp
        lgdtl gdtr
        mov %cr0, %eax
        or $1, %eax                     # protected mode
        mov %eax, %cr0
        ljmp $0x08, $pm32

        .code32
pm32:   mov $0x10, %ax
        mov %ax, %ds
        mov %ax, %es
        mov %ax, %ss
        mov $0x1000, %edi               # zero 3 pages for the page tables
        xor %eax, %eax
        mov $0xc00, %ecx
        rep stosl
        movl $0x2003, 0x1000            # PML4[0] -> PDPT
        movl $0x3003, 0x2000            # PDPT[0] -> PD
        movl $0x83, 0x3000              # PD[0]: the first 2 MiB, identity-mapped
        mov $0x1000, %eax
        mov %eax, %cr3
        mov %cr4, %eax
        or $0x20, %eax                  # PAE
        mov %eax, %cr4
        mov $0xc0000080, %ecx
        rdmsr
        or $0x100, %eax                 # EFER.LME
        wrmsr
        mov %cr0, %eax
        or $0x80000000, %eax            # paging: long mode is on
        mov %eax, %cr0
        ljmp $0x18, $lm64

        .code64
lm64:   mov $0x4000000, %ecx            # 64 Mi iterations
1:      mov %ecx, %edx
        and $0xfffff, %edx              # over 1 MiB
        addb %cl, 0x100000(%rdx)
        dec %ecx
        jnz 1b
        mov $marker, %esi               # the marker to COM1: no UART setup is needed for
        mov $(marker_end - marker), %ecx  # QEMU's 16550 to pass bytes on
        mov $0x3f8, %dx
        rep outsb
        mov $0x21, %al                  # EXIT_VALUE to isa-debug-exit: QEMU exits
        out %al, $0xf4
2:      hlt
        jmp 2b

marker: .ascii "kubenova-probe-ok\n"
marker_end:

        .balign 8
gdt:    .quad 0
        .quad 0x00cf9a000000ffff        # 0x08: 32-bit code
        .quad 0x00cf92000000ffff        # 0x10: data
        .quad 0x00af9a000000ffff        # 0x18: 64-bit code
gdtr:   .word gdtr - gdt - 1
        .long gdt
"""

#: :data:`SOURCE` assembled and linked at 0x7c00 (the output of the commands above).
CODE = bytes.fromhex(
    "fa31c08ed88ed0bc007c660f0116e87c0f20c06683c8010f22c0ea1f7c080066b810008ed88ec08ed0bf0010"
    "000031c0b9000c0000f3abc7050010000003200000c7050020000003300000c7050030000083000000b80010"
    "00000f22d80f20e083c8200f22e0b9800000c00f320d000100000f300f20c00d000000800f22c0ea867c0000"
    "1800b90000000489ca81e2ffff0f00008a00001000ffc975eebeb47c0000b91200000066baf803f36eb021e6"
    "f4f4ebfd6b7562656e6f76612d70726f62652d6f6b0a66900000000000000000ffff0000009acf00ffff0000"
    "0092cf00ffff0000009aaf001f00c87c0000"
)
BOOT_SECTOR = CODE.ljust(510, b"\0") + b"\x55\xaa"


def write_disk(path: str, mode: int = 0o644) -> None:
    """Write the boot disk (:data:`BOOT_SECTOR`, sparse up to :data:`DISK_SIZE`) to ``path``,
    which must not exist yet."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(BOOT_SECTOR)
        handle.truncate(DISK_SIZE)
    os.chmod(path, mode)  # os.open's mode is filtered by the umask
