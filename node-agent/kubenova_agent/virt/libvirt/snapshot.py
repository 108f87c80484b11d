"""A snapshot of an instance's root disk: the steps behind ``LibvirtDriver.snapshot``.

How it is made consistent. Nova's libvirt driver has two ways: a *cold* snapshot, which stops
the guest from running (managed save) while ``qemu-img convert`` reads its disk, and a *live*
one, which mirrors the disk to a new file with a block job while the guest runs and may
quiesce the guest's filesystems first through the QEMU guest agent. Here the guest is paused,
not saved, and only the root disk's overlay is copied while it is paused:

- Pausing stops the vCPUs, and QEMU drains and flushes every block device when a VM stops
  (``vm_stop``), so the overlay on disk holds everything the guest has written, including the
  qcow2 metadata QEMU caches. What the guest itself has not written out (its page cache) is
  not there, as after a power cut: the copy is crash-consistent, as Nova's cold snapshot is.
  The tiny guest has no guest agent to quiesce it, so the live way would be no more consistent.
- The overlay holds only what the guest wrote since it booted (its base is the cached image,
  read-only and shared), so the pause lasts as long as copying that: milliseconds for the test
  guest, where a managed save would write all of the guest's memory and restore it.
- The flattening into a standalone qcow2 (``qemu-img convert`` of the copy, which reads its
  base through the backing file) runs after the guest is running again.

The copy is made in the instance's directory, beside the overlay, so that a backing file the
overlay names by a relative path resolves the same. A guest that was paused stays paused; a
stopped or suspended instance is not running, so its disk is copied as it is.
"""

from __future__ import annotations

import logging
import os
import pathlib
import shutil
import subprocess
import time

from kubenova_agent import exceptions
from kubenova_agent.virt.libvirt import connection, disk
from kubenova_agent.virt.power_state import LibvirtDomainState

LOG = logging.getLogger(__name__)

_RUNNING = frozenset({LibvirtDomainState.RUNNING, LibvirtDomainState.BLOCKED})
_PAUSED = frozenset({LibvirtDomainState.PAUSED})
#: Time allowed for flattening a disk (a large one is read whole).
FLATTEN_TIMEOUT_S = 3600.0


def copy_overlay(
    domain: connection.Domain,
    overlay: pathlib.Path,
    copy: pathlib.Path,
    *,
    pause_marker: pathlib.Path,
) -> float:
    """Copy ``overlay`` (the root disk the domain runs on) to ``copy`` at one instant of the
    guest's life; return how long the guest was paused for it (0.0 when it was not running).

    A running guest is paused for the copy and runs again afterwards, whether the copy worked
    or not. ``pause_marker`` exists while the guest is paused for a copy: an agent that died
    then leaves it behind, and the snapshot done again (its message is delivered again) finds
    the guest paused with the marker there, and runs it again afterwards, as it was.
    """
    state = domain.state()
    running = state in _RUNNING
    if not running and not (state in _PAUSED and pause_marker.exists()):
        _copy(overlay, copy)
        return 0.0
    if running:
        pause_marker.touch(mode=0o600)
        domain.pause()
    paused_at = time.monotonic()
    try:
        _copy(overlay, copy)
    finally:
        domain.unpause()
        pause_marker.unlink(missing_ok=True)
    paused_s = time.monotonic() - paused_at
    LOG.info("domain %s: paused %.3f s for its disk to be copied", domain.name, paused_s)
    return paused_s


def _copy(source: pathlib.Path, target: pathlib.Path) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(fd, "wb") as out, source.open("rb") as src:
        shutil.copyfileobj(src, out, 1 << 20)


def flatten(copy: pathlib.Path, target: pathlib.Path, *, qemu_img: str = disk.QEMU_IMG) -> None:
    """Write ``copy`` (a qcow2 overlay) and its backing chain as one standalone qcow2 at
    ``target``. Raises :class:`~kubenova_agent.exceptions.SnapshotFailed` when qemu-img
    fails."""
    command = [
        # -U: the base is the cached image, which running guests hold open.
        qemu_img, "convert", "-q", "-U",
        "-f", "qcow2",
        "-O", "qcow2",
        str(copy),
        str(target),
    ]  # fmt: skip
    try:
        subprocess.run(
            command, check=True, capture_output=True, text=True, timeout=FLATTEN_TIMEOUT_S
        )
    except subprocess.CalledProcessError as exc:
        raise exceptions.SnapshotFailed(f"qemu-img convert failed: {exc.stderr.strip()}") from exc
    except subprocess.TimeoutExpired as exc:
        raise exceptions.SnapshotFailed(
            f"qemu-img convert did not finish in {FLATTEN_TIMEOUT_S:.0f} s"
        ) from exc
    os.chmod(target, 0o600)
