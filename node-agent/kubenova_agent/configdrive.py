"""Builds an instance's config drive: OpenStack's ``config-2`` layout on an ISO 9660 image.

The guest finds the drive by its volume label ``config-2`` and reads::

    openstack/latest/meta_data.json    uuid, hostname, name, public_keys, launch_index,
                                       availability_zone
    openstack/latest/user_data         the user's user-data, byte for byte (only when given)

The image carries Rock Ridge (which Linux reads first) and Joliet names besides the short
upper-case ISO 9660 ones, so a guest sees the names above whatever it mounts with. It is built
with pycdlib from values, never by passing user text to a command line.

``meta_data.json`` is written as ``json.dumps(..., indent=1)``: one top-level key per line,
which is the layout the test guest's shell init parses.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Sequence
from typing import Any

import pycdlib

from kubenova_agent.virt import driver

VOLUME_LABEL = "config-2"
AVAILABILITY_ZONE = "nova"

_HOSTNAME_INVALID = re.compile(r"[^a-z0-9.-]")
_HOSTNAME_MAX = 63


def sanitize_hostname(hostname: str, *, fallback: str) -> str:
    """Return ``hostname`` made safe to hand to a guest, as Nova's ``sanitize_hostname`` does.

    Lower case; spaces and underscores become dashes; anything but letters, digits, dots and
    dashes is dropped; at most 63 characters; no leading or trailing dot or dash. When nothing
    is left, ``fallback`` (sanitised the same way) is used.
    """
    for candidate in (hostname, fallback):
        cleaned = candidate.lower().replace(" ", "-").replace("_", "-")
        cleaned = _HOSTNAME_INVALID.sub("", cleaned)[:_HOSTNAME_MAX].strip(".-")
        if cleaned:
            return cleaned
    raise ValueError(f"neither {hostname!r} nor {fallback!r} gives a usable hostname")


def meta_data(instance: driver.InstanceSpec) -> dict[str, Any]:
    """The content of ``meta_data.json`` for ``instance``."""
    return {
        "uuid": instance.uuid,
        "hostname": sanitize_hostname(instance.hostname, fallback=f"instance-{instance.uuid[:8]}"),
        "name": instance.name,
        "public_keys": _public_keys(instance.ssh_authorized_keys),
        "launch_index": 0,
        "availability_zone": AVAILABILITY_ZONE,
    }


def _public_keys(keys: Sequence[str]) -> dict[str, str]:
    return {f"key-{index}": key.strip() for index, key in enumerate(keys)}


def meta_data_json(instance: driver.InstanceSpec) -> bytes:
    """``meta_data.json``'s bytes, in the one-key-per-line layout guests rely on."""
    return (json.dumps(meta_data(instance), indent=1) + "\n").encode()


def build(path: str | os.PathLike[str], instance: driver.InstanceSpec) -> None:
    """Write the config drive of ``instance`` to ``path`` (replacing any file there)."""
    files: dict[str, bytes] = {"meta_data.json": meta_data_json(instance)}
    if instance.user_data is not None:
        files["user_data"] = instance.user_data

    iso = pycdlib.PyCdlib()
    # Interchange level 3 lets pycdlib keep files in one extent whatever their size; the
    # Rock Ridge and Joliet trees carry the real names.
    iso.new(interchange_level=3, vol_ident=VOLUME_LABEL, joliet=3, rock_ridge="1.09")
    try:
        iso.add_directory("/OPENSTACK", rr_name="openstack", joliet_path="/openstack")
        iso.add_directory("/OPENSTACK/LATEST", rr_name="latest", joliet_path="/openstack/latest")
        for name, content in files.items():
            iso.add_fp(
                io.BytesIO(content),
                len(content),
                f"/OPENSTACK/LATEST/{_iso9660_name(name)}",
                rr_name=name,
                joliet_path=f"/openstack/latest/{name}",
            )
        iso.write(os.fspath(path))
    finally:
        iso.close()


def _iso9660_name(name: str) -> str:
    # ISO 9660 file names: upper-case d-characters, a dot, and a version.
    return name.upper().replace(".", "_") + ".;1"
