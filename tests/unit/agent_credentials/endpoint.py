"""The real HTTPS endpoint on loopback, in front of an exchange made of fakes."""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
from collections.abc import Iterator

from kubenova.agent_credentials import exchange, host_certificates, minter, server
from kubenova.certs import authority, bundle
from tests.unit.agent_credentials.fakes import (
    AGENT_USERNAME,
    AUDIENCE,
    NODE_SELECTOR,
    FakeAdmin,
    FakeNodes,
    FakeObjects,
    FakeReviewer,
    agent_review,
)


@dataclasses.dataclass
class Endpoint:
    url: str
    ca_file: str
    ca: authority.KeyPair
    reviewer: FakeReviewer
    admin: FakeAdmin
    port: int


def write_token(directory: pathlib.Path, token: str) -> str:
    path = directory / "token"
    path.write_text(token + "\n")
    return str(path)


@contextlib.contextmanager
def running_endpoint(directory: pathlib.Path) -> Iterator[Endpoint]:
    """Tokens ``token-of-node-a`` and ``token-of-node-b`` are those nodes' agents';
    ``operator-token`` is another ServiceAccount's. The certificate is for ``localhost``."""
    reviewer = FakeReviewer(
        {
            "token-of-node-a": agent_review("node-a"),
            "token-of-node-b": agent_review("node-b"),
            "operator-token": agent_review(
                "node-a", username="system:serviceaccount:kubenova:kubenova-operator"
            ),
        }
    )
    admin = FakeAdmin()
    ca = authority.issue_ca()
    exchanger = exchange.Exchange(
        reviewer,
        FakeNodes({"node-a", "node-b"}),
        minter.Minter(FakeObjects(), admin, "amqp://rabbitmq:5672/kubenova"),
        audience=AUDIENCE,
        agent_username=AGENT_USERNAME,
        node_selector=NODE_SELECTOR,
        host_certificates=host_certificates.HostCertificates(
            lambda: bundle.TrustState(ca), FakeNodes({"node-a", "node-b"})
        ),
    )
    ca_file = directory / "ca.crt"
    ca_file.write_bytes(ca.cert_pem())
    credentials_server = server.serve(
        exchanger, server.ServingCertificate(ca, ["localhost"]), "127.0.0.1", 0
    )
    try:
        port = credentials_server.port
        yield Endpoint(
            f"https://localhost:{port}{server.PATH}", str(ca_file), ca, reviewer, admin, port
        )
    finally:
        credentials_server.stop()
