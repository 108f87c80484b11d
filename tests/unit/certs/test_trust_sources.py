"""The trust bundle when cert-manager issues: every distinct CA of the Secrets' ``ca.crt``, in
a stable order, with the Secrets that gave none named."""

from __future__ import annotations

from cryptography import x509

from kubenova.certs import authority, trust_sources
from kubenova.k8s import objects
from tests.unit.agent_credentials.fakes import FakeObjects

GARBAGE = b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"


def _secret(objs: FakeObjects, name: str, ca_pem: bytes | None) -> None:
    data = {"tls.crt": b"leaf", "tls.key": b"key"}
    if ca_pem is not None:
        data["ca.crt"] = ca_pem
    objs.put("Secret", objects.StoredObject(name=name, data=data, type="kubernetes.io/tls"))


def _subjects(pem: bytes) -> list[str]:
    return [cert.subject.rfc4514_string() for cert in x509.load_pem_x509_certificates(pem)]


def test_the_bundle_is_each_ca_once_in_the_order_the_secrets_give_them() -> None:
    old, new = authority.issue_ca("old-ca"), authority.issue_ca("new-ca")
    objs = FakeObjects()
    # Mid-rotation: one Secret renewed already, two not, one with both.
    _secret(objs, "console-tls", new.cert_pem())
    _secret(objs, "console-x509", old.cert_pem())
    _secret(objs, "subresources-tls", old.cert_pem() + new.cert_pem())
    union = trust_sources.union_of_secrets(
        objs, ["console-tls", "console-x509", "subresources-tls"]
    )
    assert _subjects(union.pem) == ["CN=new-ca", "CN=old-ca"]
    assert union.pem == new.cert_pem() + old.cert_pem()
    assert union.missing == ()
    # The same Secrets read again give the same bytes.
    again = trust_sources.union_of_secrets(
        objs, ["console-tls", "console-x509", "subresources-tls"]
    )
    assert again.pem == union.pem


def test_secrets_without_a_ca_add_nothing_and_are_named() -> None:
    ca = authority.issue_ca()
    objs = FakeObjects()
    _secret(objs, "with-ca", ca.cert_pem())
    _secret(objs, "no-ca", None)
    _secret(objs, "garbage", GARBAGE)
    union = trust_sources.union_of_secrets(objs, ["missing", "no-ca", "garbage", "with-ca"])
    assert union.pem == ca.cert_pem()
    reasons = dict(union.missing)
    assert reasons["missing"] == "there is no such Secret yet"
    assert reasons["no-ca"] == "it has no ca.crt"
    assert reasons["garbage"].startswith("its ca.crt cannot be read")
    assert set(reasons) == {"missing", "no-ca", "garbage"}


def test_no_secret_yet_gives_an_empty_bundle() -> None:
    union = trust_sources.union_of_secrets(FakeObjects(), ["a", "b"])
    assert union.pem == b""
    assert [name for name, _ in union.missing] == ["a", "b"]


def test_union_pem_skips_what_cannot_be_read() -> None:
    one, two = authority.issue_ca("one"), authority.issue_ca("two")
    assert trust_sources.union_pem(
        [b"", two.cert_pem(), b"junk", one.cert_pem(), two.cert_pem()]
    ) == (two.cert_pem() + one.cert_pem())
