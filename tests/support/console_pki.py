"""The console's x509 directories as tests write them: the console proxy's client side and a
host's QEMU side, each issued from a CA the test chooses and written with the file names
:mod:`kubenova.certs.console` gives them (what the operator's Secrets hold)."""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence

from kubenova.certs import authority
from kubenova.certs import console as console_certs


def write_files(directory: pathlib.Path, files: Mapping[str, bytes]) -> pathlib.Path:
    """``files`` (file name -> content) in ``directory``, made if missing; returns it."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (directory / name).write_bytes(content)
    return directory


def write_proxy_x509_dir(directory: pathlib.Path, ca: authority.KeyPair) -> pathlib.Path:
    """The console proxy's client side (``ca-cert.pem``, ``client-cert.pem``,
    ``client-key.pem``: :func:`kubenova.certs.console.proxy_files`) with a new client
    certificate from ``ca``, as ``KUBENOVA_CONSOLE_X509_DIR`` holds it; returns ``directory``."""
    client = console_certs.issue_proxy_client_cert(ca)
    return write_files(directory, console_certs.proxy_files(client, ca.cert_pem()))


def write_host_x509_dir(
    directory: pathlib.Path,
    ca: authority.KeyPair,
    host: str = "localhost",
    addresses: Sequence[str] = ("127.0.0.1",),
) -> pathlib.Path:
    """A host's QEMU side (``ca-cert.pem``, ``server-cert.pem``, ``server-key.pem``:
    :func:`kubenova.certs.console.host_files`) for ``host`` at ``addresses``, from ``ca``;
    returns ``directory``."""
    certificate = console_certs.issue_host_cert(ca, host, list(addresses))
    return write_files(directory, console_certs.host_files(certificate, ca.cert_pem()))
