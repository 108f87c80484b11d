"""The front-proxy CA followed without a restart, over real TLS on loopback: the server trusts
the CAs its ConfigMap holds after each refresh, keeps the last good ones when the ConfigMap
breaks, and refuses a kept-open connection whose CA is no longer trusted."""

from __future__ import annotations

import dataclasses
import http.client
import json
import logging
import pathlib
import socket
import ssl
import time
from collections.abc import Iterator, Mapping

import pytest
from kubernetes.client import exceptions as k8s_exceptions

from kubenova.certs import authority, reloading
from kubenova.subresources import (
    app,
    requestheader,
    requestheader_provider,
    server,
    status,
    streams,
)
from tests.unit.subresources import support

DISCOVERY = "/apis/subresources.compute.kubenova.io/v1"
VNC = f"{DISCOVERY}/namespaces/demo/instances/web-1/vnc"
AS_ALICE = {"X-Remote-User": "alice", "X-Remote-Group": "system:authenticated"}
REFUSED_IN_HANDSHAKE = "refused in the handshake"
PROVIDER_LOG = requestheader_provider.__name__


@dataclasses.dataclass(frozen=True)
class Cas:
    """Two front-proxy CAs (before and after a rotation), a client certificate of each, and
    the serving certificate."""

    first: authority.KeyPair
    second: authority.KeyPair
    client_of_first: authority.KeyPair
    client_of_second: authority.KeyPair
    serving_ca: authority.KeyPair
    serving: authority.KeyPair


@pytest.fixture(scope="module")
def cas() -> Cas:
    first, second = authority.issue_ca("front-proxy-ca-1"), authority.issue_ca("front-proxy-ca-2")
    serving_ca = authority.issue_ca("serving-ca")
    return Cas(
        first=first,
        second=second,
        client_of_first=support.client_cert(first, support.FRONT_PROXY_NAME),
        client_of_second=support.client_cert(second, support.FRONT_PROXY_NAME),
        serving_ca=serving_ca,
        serving=authority.issue_server_cert(serving_ca, ["localhost"]),
    )


def configmap_of(
    *cas: authority.KeyPair, allowed: tuple[str, ...] = (support.FRONT_PROXY_NAME,)
) -> dict[str, str]:
    """The data the kube-apiserver writes into extension-apiserver-authentication."""
    return {
        "requestheader-client-ca-file": "".join(ca.cert_pem().decode() for ca in cas),
        "requestheader-allowed-names": json.dumps(list(allowed)),
        "requestheader-username-headers": json.dumps(["X-Remote-User"]),
        "requestheader-group-headers": json.dumps(["X-Remote-Group"]),
        "requestheader-extra-headers-prefix": json.dumps(["X-Remote-Extra-"]),
    }


class FakeConfigMap:
    """The ConfigMap as a test sets it; ``failure`` makes the next reads raise it."""

    def __init__(self, data: Mapping[str, str]) -> None:
        self.data = dict(data)
        self.failure: Exception | None = None

    def read(self) -> Mapping[str, str]:
        if self.failure is not None:
            raise self.failure
        return dict(self.data)


@dataclasses.dataclass
class Served:
    port: int
    provider: requestheader_provider.RequestHeaderProvider
    configmap: FakeConfigMap
    key_file: pathlib.Path


@pytest.fixture
def served(cas: Cas, tmp_path: pathlib.Path) -> Iterator[Served]:
    """The server as ``kubenova-subresources`` wires it, trusting the first CA."""
    cert, key = (pathlib.Path(p) for p in support.write_pair(tmp_path, "serving", cas.serving))

    def contexts(headers: requestheader.RequestHeaderConfig) -> reloading.ReloadingContext:
        return reloading.ReloadingContext(
            lambda: server.tls_context(cert, key, headers.client_ca_pem), (cert, key)
        )

    configmap = FakeConfigMap(configmap_of(cas.first))
    provider = requestheader_provider.RequestHeaderProvider(
        configmap.read, lambda headers: contexts(headers).current
    )
    urls = support.console_urls(
        support.FakeKube(support.instance_object()), support.place(), support.RecordingMint()
    )
    running = server.serve(
        app.App(provider.current, urls),
        provider.tls_context,
        "127.0.0.1",
        0,
        peer_trust=provider.still_trusted,
    )
    try:
        yield Served(running.port, provider, configmap, key)
    finally:
        running.stop()


def client_context(cas: Cas, tmp_path: pathlib.Path, client: authority.KeyPair) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=cas.serving_ca.cert_pem().decode())
    cert, key = support.write_pair(tmp_path, f"client-{client.cert.serial_number}", client)
    context.load_cert_chain(cert, key)
    return context


def ask(connection: http.client.HTTPSConnection) -> tuple[int, str]:
    """The discovery document's status code and message on an open connection."""
    connection.request("GET", DISCOVERY, headers=AS_ALICE)
    response = connection.getresponse()
    body = json.loads(response.read())
    return response.status, body.get("message", "")


def answer(served: Served, cas: Cas, tmp_path: pathlib.Path, client: authority.KeyPair) -> object:
    """The status code of the discovery document on a new connection with ``client``'s
    certificate, or REFUSED_IN_HANDSHAKE when TLS does not trust it."""
    context = client_context(cas, tmp_path, client)
    connection = http.client.HTTPSConnection("localhost", served.port, context=context, timeout=10)
    try:
        return ask(connection)[0]
    except (ssl.SSLError, ConnectionError):
        return REFUSED_IN_HANDSHAKE
    finally:
        connection.close()


def test_after_a_rotation_the_new_ca_is_trusted_and_the_old_one_refused(
    served, cas, tmp_path
) -> None:
    assert answer(served, cas, tmp_path, cas.client_of_first) == 200
    assert answer(served, cas, tmp_path, cas.client_of_second) == REFUSED_IN_HANDSHAKE

    served.configmap.data = configmap_of(cas.second)
    # Until the refresh the server goes on with what it read.
    assert answer(served, cas, tmp_path, cas.client_of_first) == 200
    assert served.provider.refresh() is True

    assert answer(served, cas, tmp_path, cas.client_of_first) == REFUSED_IN_HANDSHAKE
    assert answer(served, cas, tmp_path, cas.client_of_second) == 200


def test_a_bundle_of_two_cas_trusts_each(served, cas, tmp_path) -> None:
    served.configmap.data = configmap_of(cas.first, cas.second)

    assert served.provider.refresh() is True

    assert answer(served, cas, tmp_path, cas.client_of_first) == 200
    assert answer(served, cas, tmp_path, cas.client_of_second) == 200


def test_an_unchanged_configmap_is_not_taken_up_again(served, cas, tmp_path) -> None:
    assert served.provider.refresh() is False
    assert answer(served, cas, tmp_path, cas.client_of_first) == 200


_NOT_BASE64 = "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n"


@pytest.mark.parametrize(
    ("broken", "key", "reason"),
    [
        ({}, "requestheader-client-ca-file", "has no requestheader-client-ca-file"),
        (
            {"requestheader-client-ca-file": "no certificate"},
            "requestheader-client-ca-file",
            "holds no PEM certificate",
        ),
        (
            {"requestheader-client-ca-file": _NOT_BASE64},
            "requestheader-client-ca-file",
            "is not a bundle of PEM certificates",
        ),
        ({"requestheader-allowed-names": '["front-proxy-client"'}, "allowed-names", "not JSON"),
        (
            {"requestheader-allowed-names": '"front-proxy-client"'},
            "requestheader-allowed-names",
            "not a JSON list of strings",
        ),
    ],
    ids=["emptied", "no pem", "bad pem", "bad json", "not a list"],
)
def test_a_broken_configmap_keeps_the_last_good_configuration(
    served, cas, tmp_path, caplog, broken, key, reason
) -> None:
    """Each broken ConfigMap also carries the second CA where it can, so that taking it up
    by mistake would show."""
    data = configmap_of(cas.second) if broken else {}
    served.configmap.data = {**data, **broken}

    with caplog.at_level(logging.WARNING, logger=PROVIDER_LOG):
        assert served.provider.refresh() is False

    assert answer(served, cas, tmp_path, cas.client_of_first) == 200
    assert answer(served, cas, tmp_path, cas.client_of_second) == REFUSED_IN_HANDSHAKE
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert key in warnings[0]
    assert reason in warnings[0]


def test_a_configmap_that_cannot_be_read_keeps_the_last_good_configuration(
    served, cas, tmp_path, caplog
) -> None:
    served.configmap.data = configmap_of(cas.second)
    served.configmap.failure = k8s_exceptions.ApiException(status=403, reason="Forbidden")

    with caplog.at_level(logging.WARNING, logger=PROVIDER_LOG):
        assert served.provider.refresh() is False

    assert answer(served, cas, tmp_path, cas.client_of_first) == 200
    assert "kube-system/extension-apiserver-authentication" in caplog.text
    assert "Forbidden" in caplog.text


def test_a_change_whose_tls_context_cannot_be_built_is_tried_again(
    served, cas, tmp_path, caplog
) -> None:
    """The serving key is missing for a moment (the kubelet swapping files): the new CA waits
    for the next refresh, and the server goes on with the context it has."""
    key_pem = served.key_file.read_bytes()
    served.key_file.unlink()
    served.configmap.data = configmap_of(cas.second)

    with caplog.at_level(logging.WARNING, logger=PROVIDER_LOG):
        assert served.provider.refresh() is False
    assert "no TLS context with the client CAs" in caplog.text
    assert answer(served, cas, tmp_path, cas.client_of_first) == 200

    served.key_file.write_bytes(key_pem)
    assert served.provider.refresh() is True
    assert answer(served, cas, tmp_path, cas.client_of_second) == 200


def test_a_connection_kept_open_across_a_rotation_is_refused_with_the_old_ca(
    served, cas, tmp_path
) -> None:
    context = client_context(cas, tmp_path, cas.client_of_first)
    connection = http.client.HTTPSConnection("localhost", served.port, context=context, timeout=10)
    try:
        assert ask(connection)[0] == 200
        served.configmap.data = configmap_of(cas.second)
        assert served.provider.refresh() is True

        code, message = ask(connection)
    finally:
        connection.close()

    assert code == 401
    assert "kube-apiserver" in message


def test_a_connection_kept_open_across_an_overlap_keeps_working(served, cas, tmp_path) -> None:
    old_context = client_context(cas, tmp_path, cas.client_of_first)
    new_context = client_context(cas, tmp_path, cas.client_of_second)
    old = http.client.HTTPSConnection("localhost", served.port, context=old_context, timeout=10)
    new = http.client.HTTPSConnection("localhost", served.port, context=new_context, timeout=10)
    try:
        assert ask(old)[0] == 200
        served.configmap.data = configmap_of(cas.first, cas.second)
        assert served.provider.refresh() is True

        assert ask(old)[0] == 200
        assert ask(new)[0] == 200
        # The overlap ends: the first CA leaves the bundle; the second one still vouches for
        # the connection made during the overlap.
        served.configmap.data = configmap_of(cas.second)
        assert served.provider.refresh() is True

        assert ask(old)[0] == 401
        assert ask(new)[0] == 200
    finally:
        old.close()
        new.close()


def test_the_allowed_names_follow_the_configmap(served, cas, tmp_path) -> None:
    served.configmap.data = configmap_of(cas.first, allowed=("another-front-proxy",))

    assert served.provider.refresh() is True

    context = client_context(cas, tmp_path, cas.client_of_first)
    connection = http.client.HTTPSConnection("localhost", served.port, context=context, timeout=10)
    try:
        code, message = ask(connection)
    finally:
        connection.close()
    assert code == 401
    assert f"{support.FRONT_PROXY_NAME!r} is not one of" in message


class _NeverOpened:
    def open(self, namespace: str, name: str, user: requestheader.User) -> socket.socket:
        raise AssertionError("a refused request must not reach the opener")


def test_the_websocket_subresources_follow_the_configmap_too(cas) -> None:
    configmap = FakeConfigMap(configmap_of(cas.first))
    provider = requestheader_provider.RequestHeaderProvider(configmap.read)
    subresources = streams.Streams(provider.current, {"vnc": _NeverOpened()})
    upgrade = support.headers(("X-Remote-User", "alice"), ("Upgrade", "not-websocket"))
    front_proxy = support.peer_cert(support.FRONT_PROXY_NAME)

    # Past the front-proxy check: the missing upgrade is what refuses it.
    with pytest.raises(status.ApiError) as before:
        subresources.open(VNC, front_proxy, upgrade)
    configmap.data = configmap_of(cas.first, allowed=("another-front-proxy",))
    provider.refresh()
    with pytest.raises(status.ApiError) as after:
        subresources.open(VNC, front_proxy, upgrade)

    assert before.value.code == 400
    assert after.value.code == 401


def test_the_refresh_thread_takes_up_a_change(cas) -> None:
    configmap = FakeConfigMap(configmap_of(cas.first))
    provider = requestheader_provider.RequestHeaderProvider(configmap.read)
    provider.start(interval_s=0.05)
    try:
        configmap.data = configmap_of(cas.second)
        deadline = time.monotonic() + 10
        while provider.current().client_ca_pem != configmap.data["requestheader-client-ca-file"]:
            assert time.monotonic() < deadline, "the change was not taken up"
            time.sleep(0.02)
    finally:
        provider.stop()


def test_a_configmap_unusable_at_start_names_the_key(cas) -> None:
    broken = {**configmap_of(cas.first), "requestheader-client-ca-file": _NOT_BASE64}

    with pytest.raises(ValueError, match="requestheader-client-ca-file"):
        requestheader_provider.RequestHeaderProvider(FakeConfigMap(broken).read)
