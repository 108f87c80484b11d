"""Kubenova's CA: made once and kept in a Secret, published in a ConfigMap, replaced only
when it cannot serve; the serving certificates it signs verify as TLS clients check them."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
from collections.abc import Callable

import pytest
from cryptography import x509

from kubenova.certs import authority, ca_secret, store
from kubenova.k8s import objects
from tests.unit.agent_credentials.fakes import FakeObjects
from tests.unit.interleavings import Turns, every_interleaving

NOW = datetime.datetime(2031, 5, 1, tzinfo=datetime.UTC)


@pytest.fixture
def objs() -> FakeObjects:
    return FakeObjects()


def test_the_first_call_makes_the_ca_and_publishes_its_certificate(objs: FakeObjects) -> None:
    ca = store.ensure_ca(objs, now=NOW)
    secret = objs.items[("Secret", "kubenova-ca")]
    assert secret.type == "kubernetes.io/tls"
    stored = authority.KeyPair.from_pem(secret.data["tls.crt"], secret.data["tls.key"])
    assert (stored.cert, stored.key_pem()) == (ca.cert, ca.key_pem())
    published = objs.items[("ConfigMap", "kubenova-ca")]
    assert published.data == {"ca.crt": ca.cert_pem()}
    assert "tls.key" not in published.data
    assert authority.is_ca(ca.cert)
    assert ca.not_after - NOW == authority.CA_VALIDITY


def test_later_calls_use_the_stored_ca_and_write_nothing(objs: FakeObjects) -> None:
    first = store.ensure_ca(objs, now=NOW)
    objs.calls.clear()
    again = store.ensure_ca(objs, now=NOW + datetime.timedelta(days=400))
    assert (again.cert, again.key_pem()) == (first.cert, first.key_pem())
    assert objs.calls == ["get Secret kubenova-ca", "get ConfigMap kubenova-ca"]


def test_a_ca_made_by_another_replica_first_is_the_one_used(objs: FakeObjects) -> None:
    theirs = authority.issue_ca(now=NOW)
    objs.before_create = lambda: objs.put(
        "Secret",
        objects.StoredObject(
            name="kubenova-ca",
            data={"tls.crt": theirs.cert_pem(), "tls.key": theirs.key_pem()},
            type="kubernetes.io/tls",
        ),
    )
    assert store.ensure_ca(objs, now=NOW).cert == theirs.cert
    assert objs.items[("ConfigMap", "kubenova-ca")].data["ca.crt"] == theirs.cert_pem()


@pytest.mark.parametrize("start", ["none", "expiring"])
def test_two_replicas_ensuring_the_ca_at_once_end_with_one_in_every_order(start: str) -> None:
    # Every replica serves the agent credentials exchange, so each makes sure of the CA as it
    # starts: both first creates and both replacements of a CA about to expire race.
    def world(calls: Turns) -> FakeObjects:
        shared = FakeObjects(calls)
        if start == "expiring":
            old = authority.issue_ca(now=NOW - authority.CA_VALIDITY + datetime.timedelta(days=9))
            shared.put("Secret", ca_secret.new_secret("kubenova-ca", old))
            shared.put("ConfigMap", objects.StoredObject("kubenova-ca", {"ca.crt": old.cert_pem()}))
        return shared

    def replicas(shared: FakeObjects) -> dict[str, Callable[[], object]]:
        return {name: lambda: store.ensure_ca(shared, now=NOW) for name in ("a", "b")}

    orders = 0
    for shared, run in every_interleaving(world, replicas):
        orders += 1
        a, b = run.results["a"], run.results["b"]
        assert isinstance(a, authority.KeyPair), f"{a!r} ({run})"
        assert isinstance(b, authority.KeyPair), f"{b!r} ({run})"
        assert a.cert == b.cert, run
        assert shared.items[("Secret", "kubenova-ca")].data["tls.crt"] == a.cert_pem(), run
        assert shared.items[("ConfigMap", "kubenova-ca")].data == {"ca.crt": a.cert_pem()}, run
        assert a.not_after - NOW == authority.CA_VALIDITY, run  # a new one, not the old
    # Each makes at least three calls (get and write the Secret, get the ConfigMap).
    assert orders >= 20


def test_a_ca_about_to_expire_is_replaced_and_published_again(objs: FakeObjects) -> None:
    old = store.ensure_ca(objs, now=NOW)
    later = old.not_after - datetime.timedelta(days=10)
    new = store.ensure_ca(objs, now=later)
    assert new.cert != old.cert
    assert objs.items[("ConfigMap", "kubenova-ca")].data["ca.crt"] == new.cert_pem()


@pytest.mark.parametrize(
    "data",
    [{}, {"tls.crt": b"garbage", "tls.key": b"garbage"}, "leaf"],
    ids=["empty", "garbage", "not-a-ca"],
)
def test_a_secret_that_holds_no_usable_ca_is_replaced(
    objs: FakeObjects, data: dict[str, bytes] | str
) -> None:
    if data == "leaf":
        leaf = authority.issue_server_cert(authority.issue_ca(now=NOW), ["x"], now=NOW)
        data = {"tls.crt": leaf.cert_pem(), "tls.key": leaf.key_pem()}
    assert isinstance(data, dict)
    objs.put("Secret", objects.StoredObject(name="kubenova-ca", data=data))
    ca = store.ensure_ca(objs, now=NOW)
    assert authority.is_ca(ca.cert)
    stored = objs.items[("Secret", "kubenova-ca")]
    assert stored.data["tls.crt"] == ca.cert_pem()


def test_an_administrators_own_rsa_ca_is_used_as_it_is(objs: FakeObjects) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "corporate-ca")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    own = authority.KeyPair(cert, key)
    objs.put(
        "Secret",
        objects.StoredObject(
            name="kubenova-ca", data={"tls.crt": own.cert_pem(), "tls.key": own.key_pem()}
        ),
    )
    assert store.ensure_ca(objs, now=NOW).cert == cert
    leaf = authority.issue_server_cert(own, ["svc.ns.svc"], now=NOW)
    leaf.cert.verify_directly_issued_by(cert)


def test_a_serving_certificate_names_the_service_and_never_outlives_the_ca() -> None:
    ca = authority.issue_ca(now=NOW, validity=datetime.timedelta(days=30))
    leaf = authority.issue_server_cert(
        ca,
        ["kubenova-operator.kubenova.svc", "kubenova-operator.kubenova.svc.cluster.local"],
        now=NOW + datetime.timedelta(days=10),
    )
    names = leaf.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [
        "kubenova-operator.kubenova.svc",
        "kubenova-operator.kubenova.svc.cluster.local",
    ]
    assert leaf.not_after == ca.not_after
    assert not authority.is_ca(leaf.cert)


def test_a_tls_client_trusting_the_ca_accepts_the_serving_certificate(tmp_path) -> None:
    ca = authority.issue_ca()
    leaf = authority.issue_server_cert(ca, ["kubenova-operator.kubenova.svc"])
    (tmp_path / "tls.crt").write_bytes(leaf.cert_pem())
    (tmp_path / "tls.key").write_bytes(leaf.key_pem())
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem())
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    client_context = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
    listener = socket.create_server(("127.0.0.1", 0))

    def accept() -> None:
        conn, _ = listener.accept()
        with server_context.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(b"ok")

    thread = threading.Thread(target=accept)
    thread.start()
    with (
        socket.create_connection(listener.getsockname()) as raw,
        client_context.wrap_socket(raw, server_hostname="kubenova-operator.kubenova.svc") as tls,
    ):
        assert tls.recv(2) == b"ok"
    thread.join(5)
    listener.close()
