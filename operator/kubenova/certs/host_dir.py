"""A hypervisor host's x509 directory for QEMU's console TLS, written from a CA kept in files.

``kubenova-manage console-certs --host NAME --dir DIR --ca-dir CA_DIR`` calls
:func:`write_host_dir`: it loads the CA from ``CA_DIR`` (``ca.crt``, ``ca.key``), making one
there on first use, issues the host a certificate (:func:`kubenova.certs.console.issue_host_cert`)
and writes the files libvirt names in qemu.conf (``vnc_tls_x509_cert_dir``,
``spice_tls_x509_cert_dir``): ``ca-cert.pem``, ``server-cert.pem`` and ``server-key.pem``.

Why a CA in files, and how it stays the operator's CA
-----------------------------------------------------
libvirt refuses to start a guest whose consoles are TLS when those files are missing, and the
local stack starts its libvirtds (and the integration tests boot guests) before a cluster
exists, or with none at all. So the local stack's CA is a pair of files under
``$KUBENOVA_STATE/console-pki/ca``, which every start of a local libvirtd passes here first
(``hack/lib/console_tls.sh``). The console proxy's client certificate must be signed by the
same CA, and the operator issues it from the Secret ``kubenova-ca`` (:mod:`kubenova.certs.store`).
The two are made one by ``hack/lib/console_tls.sh`` whenever a cluster answers: an existing
Secret is the authority and its pair is copied into the files (the operator made it first, or
an administrator put their own there); where there is no Secret yet, it is created from the
files, as an administrator's own CA, which the operator then uses as it is. A CA the operator
rotates later reaches the hosts at their next libvirtd start.

In a cluster the chart's libvirt pod is the node's libvirtd: there the operator issues each
host's certificate from the Secret and the pod mounts the directory, with no CA in files.

The host certificate is issued afresh at each call (a libvirtd start), so it never ages past
:data:`~kubenova.certs.authority.CONSOLE_VALIDITY`; QEMU reads it when a guest starts.
"""

from __future__ import annotations

import grp
import os
import pathlib
from collections.abc import Sequence

from kubenova.certs import authority, console

CA_CERT_FILE = "ca.crt"
CA_KEY_FILE = "ca.key"


def load_or_create_ca(ca_dir: pathlib.Path) -> authority.KeyPair:
    """The CA in ``ca_dir``, made there (key readable by its owner only) when there is none.
    ValueError when the files are there but unreadable, or not a CA."""
    cert_path, key_path = ca_dir / CA_CERT_FILE, ca_dir / CA_KEY_FILE
    if cert_path.exists() or key_path.exists():
        ca = authority.KeyPair.from_pem(cert_path.read_bytes(), key_path.read_bytes())
        if not authority.is_ca(ca.cert):
            raise ValueError(f"{cert_path} is not a CA certificate")
        return ca
    ca = authority.issue_ca()
    ca_dir.mkdir(parents=True, exist_ok=True)
    _write(key_path, ca.key_pem(), 0o600)
    _write(cert_path, ca.cert_pem(), 0o644)
    return ca


def write_host_dir(
    ca_dir: pathlib.Path,
    host: str,
    directory: pathlib.Path,
    addresses: Sequence[str] = (),
    *,
    group: str | None = None,
) -> dict[str, pathlib.Path]:
    """Write ``host``'s x509 directory into ``directory``; returns the paths written.

    ``addresses`` become IP SANs of the host's certificate. ``group`` (e.g. ``libvirt-qemu``,
    the user QEMU runs as) gets read access to the directory and its key; KeyError when there
    is no such group.
    """
    ca = load_or_create_ca(ca_dir)
    files = console.host_files(console.issue_host_cert(ca, host, addresses), ca.cert_pem())
    gid = grp.getgrnam(group).gr_gid if group is not None else None
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o750 if gid is not None else 0o755)
    if gid is not None:
        os.chown(directory, -1, gid)
    written: dict[str, pathlib.Path] = {}
    for name, content in files.items():
        secret = name == console.SERVER_KEY_FILE
        path = directory / name
        _write(path, content, (0o640 if gid is not None else 0o600) if secret else 0o644, gid)
        written[name] = path
    return written


def _write(path: pathlib.Path, content: bytes, mode: int, gid: int | None = None) -> None:
    """Replace ``path`` at once (a QEMU starting meanwhile reads the old file or the new)."""
    staged = path.with_name(f".{path.name}.new")
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, content)
        os.fchmod(fd, mode)
        if gid is not None:
            os.fchown(fd, -1, gid)
    finally:
        os.close(fd)
    os.replace(staged, path)
