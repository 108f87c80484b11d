"""Disk images with ``qemu-img``: inspecting a cached image and making an instance's root disk.

Every call names the image's format explicitly (``-f``/``-F``): letting QEMU probe the format
of an untrusted image is how a raw image that looks like a qcow2 header gets to read host files
through a backing file it names.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess

from kubenova_agent import exceptions

GIB = 1 << 30

QEMU_IMG = "qemu-img"
_TIMEOUT = 300.0


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """What ``qemu-img info`` says about an image."""

    virtual_size: int
    backing_file: str | None


def image_info(path: str, disk_format: str, *, qemu_img: str = QEMU_IMG) -> ImageInfo:
    """Inspect ``path`` as an image of ``disk_format``.

    Raises :class:`~kubenova_agent.exceptions.InvalidImage` when qemu-img cannot read it as
    that format (the image is not what it claims to be).
    """
    # --force-share: the image may be open as a backing file of running guests; a read-only
    # look must not wait for, or be refused by, their locks.
    command = [qemu_img, "info", "--force-share", "--output=json", "-f", disk_format, path]
    try:
        result = subprocess.run(
            command, check=True, capture_output=True, text=True, timeout=_TIMEOUT
        )
    except subprocess.CalledProcessError as exc:
        raise exceptions.InvalidImage(
            f"qemu-img cannot read the image as {disk_format}: {exc.stderr.strip()}"
        ) from exc
    info = json.loads(result.stdout)
    return ImageInfo(
        virtual_size=int(info["virtual-size"]),
        backing_file=info.get("backing-filename") or info.get("full-backing-filename"),
    )


def create_overlay(
    path: str,
    *,
    backing_file: str,
    backing_format: str,
    size_gib: int,
    qemu_img: str = QEMU_IMG,
) -> None:
    """Create ``path`` as a qcow2 image of ``size_gib`` GiB backed by ``backing_file``.

    The overlay takes only what the guest writes; reads of untouched blocks go to the shared,
    read-only cached image. Raises ``subprocess.CalledProcessError`` (with qemu-img's stderr)
    when qemu-img fails.
    """
    command = [
        qemu_img, "create", "-q",
        "-f", "qcow2",
        "-b", backing_file,
        "-F", backing_format,
        path,
        f"{size_gib}G",
    ]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=_TIMEOUT)
