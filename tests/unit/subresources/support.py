"""Certificates, headers and fakes the subresource API's tests share."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.message
import pathlib
from typing import Any

from cryptography.x509.oid import ExtendedKeyUsageOID

from kubenova.certs import authority
from kubenova.console import auth
from kubenova.subresources import consoleurl, requestheader

FRONT_PROXY_NAME = "front-proxy-client"
NOW = dt.datetime(2026, 12, 6, 22, 0, tzinfo=dt.UTC)


def client_cert(ca: authority.KeyPair, common_name: str) -> authority.KeyPair:
    return authority.issue_leaf(
        ca,
        common_name,
        [],
        purpose=ExtendedKeyUsageOID.CLIENT_AUTH,
        validity=dt.timedelta(days=1),
    )


def write_pair(directory: pathlib.Path, name: str, pair: authority.KeyPair) -> tuple[str, str]:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    cert.write_bytes(pair.cert_pem())
    key.write_bytes(pair.key_pem())
    return str(cert), str(key)


@dataclasses.dataclass(frozen=True)
class Pki:
    """A serving CA and certificate, and a front-proxy CA with its client certificate."""

    serving_ca: authority.KeyPair
    serving: authority.KeyPair
    front_proxy_ca: authority.KeyPair
    front_proxy_client: authority.KeyPair

    def request_headers(self, allowed: tuple[str, ...] = (FRONT_PROXY_NAME,)) -> Any:
        return requestheader.RequestHeaderConfig(
            client_ca_pem=self.front_proxy_ca.cert_pem().decode(), allowed_names=allowed
        )


def make_pki() -> Pki:
    serving_ca = authority.issue_ca("serving-ca")
    front_proxy_ca = authority.issue_ca("front-proxy-ca")
    return Pki(
        serving_ca=serving_ca,
        serving=authority.issue_server_cert(serving_ca, ["localhost"]),
        front_proxy_ca=front_proxy_ca,
        front_proxy_client=client_cert(front_proxy_ca, FRONT_PROXY_NAME),
    )


def headers(*pairs: tuple[str, str]) -> email.message.Message:
    message = email.message.Message()
    for name, value in pairs:
        message[name] = value
    return message


def peer_cert(common_name: str) -> dict[str, Any]:
    """A verified client certificate as ``SSLSocket.getpeercert()`` gives it."""
    return {"subject": ((("commonName", common_name),),)}


def place(**overrides: Any) -> consoleurl.ConsolePlace:
    values: dict[str, Any] = {
        "uuid": "5b0c1d7e-0000-4000-8000-000000000001",
        "host": "compute-1",
        "vm_state": "active",
        "power_state": "running",
        "vnc_port": 5900,
        "spice_port": None,
        "spice_tls_port": 5901,
    }
    values.update(overrides)
    return consoleurl.ConsolePlace(**values)


class FakeKube:
    """Instance objects by (namespace, name)."""

    def __init__(self, *objects: dict[str, Any]) -> None:
        self.objects = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objects}

    def get_instance(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((namespace, name))


def instance_object(
    name: str = "web-1", namespace: str = "demo", **metadata: Any
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": "5b0c1d7e-0000-4000-8000-000000000001",
            **metadata,
        }
    }


@dataclasses.dataclass
class RecordingMint:
    """Stands in for :func:`kubenova.console.auth.mint`; keeps what it was asked."""

    calls: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)

    def __call__(self, session_factory: Any, *args: Any, **kwargs: Any) -> auth.MintedToken:
        self.calls.append(args)
        return auth.MintedToken(token="tok-en_1", expires=NOW + dt.timedelta(minutes=10))


def console_urls(
    kube: FakeKube, found: consoleurl.ConsolePlace | None, mint: RecordingMint
) -> consoleurl.ConsoleUrls:
    return consoleurl.ConsoleUrls(
        kube,
        None,  # type: ignore[arg-type]  # the stand-ins never touch a database
        "https://console.example:6080/",
        600,
        read_place=lambda _factory, _uuid: found,
        mint=mint,
    )
