"""Write an OpenStack-style config drive for booting the tiny guest by hand.

A development tool, not the node-agent's implementation. The drive it writes follows the same
contract: an ISO 9660 image with Rock Ridge and Joliet, volume label ``config-2``, holding
``openstack/latest/meta_data.json`` (``json.dumps(..., indent=1)``: one top-level key per line,
which is what the guest's init parses) and, when given, ``openstack/latest/user_data``.

Example::

    .venv/bin/python hack/guest/make-configdrive.py /tmp/config.iso \\
        --hostname demo --user-data cloud-config.yaml --key mykey=$HOME/.ssh/id_ed25519.pub
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import uuid
from pathlib import Path

import pycdlib

VOLUME_LABEL = "config-2"
USER_DATA_LIMIT = 64 * 1024  # the cap Kubenova puts on an Instance's user-data


def build_metadata(
    instance_uuid: str, hostname: str, name: str, public_keys: dict[str, str]
) -> bytes:
    """Return meta_data.json's bytes in the layout the guest's init expects."""
    document = {
        "uuid": instance_uuid,
        "hostname": hostname,
        "name": name,
        "public_keys": public_keys,
    }
    return (json.dumps(document, indent=1) + "\n").encode()


def write_config_drive(path: Path, metadata: bytes, user_data: bytes | None) -> None:
    """Write the ISO image to ``path``; ``user_data`` of None leaves the file out."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, vol_ident=VOLUME_LABEL, joliet=3, rock_ridge="1.09")
    # ISO 9660 names are upper-case and short; Rock Ridge and Joliet carry the real ones,
    # and Linux reads the Rock Ridge names first.
    iso.add_directory("/OPENSTACK", rr_name="openstack", joliet_path="/openstack")
    iso.add_directory("/OPENSTACK/LATEST", rr_name="latest", joliet_path="/openstack/latest")
    files = {"meta_data.json": metadata}
    if user_data is not None:
        files["user_data"] = user_data
    for filename, content in files.items():
        iso_name = filename.upper().replace(".", "_") + ".;1"
        iso.add_fp(
            io.BytesIO(content),
            len(content),
            f"/OPENSTACK/LATEST/{iso_name}",
            rr_name=filename,
            joliet_path=f"/openstack/latest/{filename}",
        )
    try:
        iso.write(str(path))
    finally:
        iso.close()


def parse_key(value: str) -> tuple[str, str]:
    """Parse ``NAME=FILE`` into the key's name and the public key read from FILE."""
    name, separator, filename = value.partition("=")
    if not separator or not name or not filename:
        raise argparse.ArgumentTypeError(f"expected NAME=FILE, got {value!r}")
    return name, Path(filename).read_text().strip()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        description="Write an OpenStack-style config drive for the tiny guest."
    )
    parser.add_argument("output", type=Path, help="where to write the ISO image")
    parser.add_argument("--uuid", default=str(uuid.uuid4()), help="instance uuid (random)")
    parser.add_argument("--hostname", default="kubenova-guest", help="guest hostname")
    parser.add_argument("--name", help="instance name (defaults to the hostname)")
    parser.add_argument("--user-data", type=Path, help="file copied verbatim as user_data")
    parser.add_argument(
        "--key",
        type=parse_key,
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="public SSH key to list in public_keys (repeatable)",
    )
    args = parser.parse_args(argv)

    user_data: bytes | None = None
    if args.user_data is not None:
        user_data = args.user_data.read_bytes()
        if len(user_data) > USER_DATA_LIMIT:
            parser.error(f"user-data is {len(user_data)} bytes; the limit is {USER_DATA_LIMIT}")
    metadata = build_metadata(args.uuid, args.hostname, args.name or args.hostname, dict(args.key))
    write_config_drive(args.output, metadata, user_data)
    print(f"{args.output}: uuid={args.uuid} hostname={args.hostname}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
