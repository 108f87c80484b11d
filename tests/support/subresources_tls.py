"""The serving side of a ``kubenova-subresources`` that a test runs on this machine behind a
real kube-apiserver: a CA of its own (the APIService's ``caBundle``) and a certificate for the
Service the APIService names, ``kubenova-subresources.<system>.svc``, which is the name the
kube-apiserver checks. Each test module registers its APIService in a namespace of its own
(``system``), so modules never take each other's."""

from __future__ import annotations

import dataclasses
import pathlib
import ssl
import uuid

from kubenova.certs import authority
from kubenova.subresources import manifests, server


@dataclasses.dataclass(frozen=True)
class SubresourcesTLS:
    #: The namespace of the APIService's Service: a prefix and a random suffix.
    system: str
    #: The serving certificate's CA, what the APIService's caBundle holds.
    ca: authority.KeyPair
    cert_file: pathlib.Path
    key_file: pathlib.Path

    def context(self, client_ca_pem: str) -> ssl.SSLContext:
        """The server's TLS context, trusting ``client_ca_pem`` (the kube-apiserver's
        front-proxy CA) for the clients it lets in, as ``kubenova-subresources`` makes it."""
        return server.tls_context(self.cert_file, self.key_file, client_ca_pem)


def write_subresources_tls(
    directory: pathlib.Path, system_prefix: str, ca_name: str = "kubenova-subresources-e2e-ca"
) -> SubresourcesTLS:
    """A new CA, and its serving certificate for a new ``system`` namespace named
    ``<system_prefix>-<6 hex digits>``, as ``tls.crt`` and ``tls.key`` in ``directory``."""
    system = f"{system_prefix}-{uuid.uuid4().hex[:6]}"
    ca = authority.issue_ca(ca_name)
    serving = authority.issue_server_cert(ca, [f"{manifests.SERVICE}.{system}.svc"])
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / "tls.crt", directory / "tls.key"
    cert_file.write_bytes(serving.cert_pem())
    key_file.write_bytes(serving.key_pem())
    return SubresourcesTLS(system, ca, cert_file, key_file)
