"""The agent's console certificate: made from a key that stays on the node, written as libvirt
expects behind a link swapped in one rename, and renewed when due or when the CA changes."""

from __future__ import annotations

import datetime
import errno
import os
import pathlib
import ssl
import stat
import threading
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kubenova.certs import authority, dh_params
from kubenova_agent import credentials, host_certificate
from tests.unit.agent_credentials.endpoint import Endpoint, running_endpoint, write_token


@pytest.fixture
def endpoint(tmp_path: pathlib.Path) -> Iterator[Endpoint]:
    with running_endpoint(tmp_path) as running:
        yield running


class Clock:
    def __init__(self) -> None:
        self.now = datetime.datetime.now(datetime.UTC)

    def __call__(self) -> datetime.datetime:
        return self.now


def make(
    endpoint: Endpoint,
    tmp_path: pathlib.Path,
    *,
    token: str = "token-of-node-a",
    clock: Clock | None = None,
    ca_file: str | None = None,
) -> host_certificate.HostCertificate:
    return host_certificate.HostCertificate(
        tmp_path / "pki" / "console",
        endpoint.url.rsplit("/", 1)[0] + host_certificate.PATH,
        node="node-a",
        ca_file=ca_file or endpoint.ca_file,
        token_file=write_token(tmp_path, token),
        now=clock or Clock(),
    )


def test_the_files_libvirt_names_are_written_for_the_nodes_own_key(
    endpoint: Endpoint, tmp_path: pathlib.Path
) -> None:
    certificate = make(endpoint, tmp_path)
    issued = certificate.obtain(deadline_s=5)
    directory = certificate.directory
    assert directory.is_symlink()
    cert = x509.load_pem_x509_certificate((directory / "server-cert.pem").read_bytes())
    key = serialization.load_pem_private_key(
        (directory / "server-key.pem").read_bytes(), password=None
    )
    assert cert.public_key() == key.public_key()
    cert.verify_directly_issued_by(endpoint.ca.cert)
    assert (directory / "ca-cert.pem").read_bytes() == endpoint.ca.cert_pem()
    assert stat.S_IMODE(os.stat(directory / "server-key.pem").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(directory / "server-cert.pem").st_mode) == 0o644
    # QEMU's Diffie-Hellman group, so that it does not make one at each guest's start.
    assert (directory / "dh-params.pem").read_bytes() == dh_params.FFDHE2048_PEM
    assert issued.node == "node-a"
    assert issued.not_after == cert.not_valid_after_utc
    # What a TLS server of this host loads (the serial console server does).
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "server-cert.pem", directory / "server-key.pem")


def test_each_issue_swaps_the_link_and_keeps_only_the_previous_directory(
    endpoint: Endpoint, tmp_path: pathlib.Path
) -> None:
    clock = Clock()
    certificate = make(endpoint, tmp_path, clock=clock)
    generations = []
    for _ in range(3):
        certificate.obtain(deadline_s=5)
        generations.append(os.readlink(certificate.directory))
        clock.now += datetime.timedelta(seconds=1)
    assert len(set(generations)) == 3
    left = sorted(p.name for p in certificate.directory.parent.glob(".console-*"))
    assert left == sorted(generations[1:])


def test_a_directory_written_before_is_replaced_by_the_link(
    endpoint: Endpoint, tmp_path: pathlib.Path
) -> None:
    certificate = make(endpoint, tmp_path)
    certificate.directory.mkdir(parents=True)
    (certificate.directory / "server-cert.pem").write_text("old")
    certificate.obtain(deadline_s=5)
    assert certificate.directory.is_symlink()
    assert (certificate.directory / "server-cert.pem").read_bytes().startswith(b"-----BEGIN")


def test_it_is_due_two_thirds_into_its_life_and_not_before(
    endpoint: Endpoint, tmp_path: pathlib.Path
) -> None:
    clock = Clock()
    certificate = make(endpoint, tmp_path, clock=clock)
    assert certificate.due() == "none was issued yet"
    issued = certificate.obtain(deadline_s=5)
    assert certificate.due() is None
    clock.now = issued.renew_after - datetime.timedelta(seconds=1)
    assert certificate.due() is None
    clock.now = issued.renew_after
    assert certificate.due() is not None
    assert "two thirds" in (certificate.due() or "")


def test_a_changed_trust_bundle_makes_it_due_and_the_renewal_tells_the_guests(
    endpoint: Endpoint, tmp_path: pathlib.Path
) -> None:
    projected = tmp_path / "projected-ca.crt"
    projected.write_bytes(endpoint.ca.cert_pem())
    certificate = make(endpoint, tmp_path, ca_file=str(projected))
    certificate.obtain(deadline_s=5)
    renewed: list[bool] = []
    assert certificate.renew_if_due(lambda: renewed.append(True)) is False
    # The kubelet projects the bundle after a rotation: a new CA first, the old one after it.
    projected.write_bytes(
        authority.issue_ca(common_name="next").cert_pem() + endpoint.ca.cert_pem()
    )
    assert certificate.due() == "the trust bundle changed (a CA rotation)"
    first = os.readlink(certificate.directory)
    # The operator here still signs with its one CA; what matters is the agent asks again.
    assert certificate.renew_if_due(lambda: renewed.append(True)) is True
    assert renewed == [True]
    assert os.readlink(certificate.directory) != first


def test_a_refused_renewal_keeps_the_files_and_says_so(
    endpoint: Endpoint, tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    certificate = make(endpoint, tmp_path, clock=clock)
    issued = certificate.obtain(deadline_s=5)
    before = (certificate.directory / "server-cert.pem").read_bytes()
    write_token(tmp_path, "operator-token")  # the token of another ServiceAccount
    clock.now = issued.renew_after
    renewed: list[bool] = []
    assert certificate.renew_if_due(lambda: renewed.append(True)) is False
    assert renewed == []
    assert (certificate.directory / "server-cert.pem").read_bytes() == before
    assert "could not renew the host certificate" in caplog.text
    assert "HTTP 403" in caplog.text


def test_the_url_defaults_to_beside_the_credentials_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(host_certificate.URL_ENV, raising=False)
    monkeypatch.setenv(
        credentials.URL_ENV, "https://kubenova-operator.kubenova:8443/agent-credentials"
    )
    assert host_certificate.url_from_env() == (
        "https://kubenova-operator.kubenova:8443/host-certificate"
    )
    monkeypatch.setenv(host_certificate.URL_ENV, "https://elsewhere:1/host-certificate")
    assert host_certificate.url_from_env() == "https://elsewhere:1/host-certificate"


def test_every_directory_and_file_gets_the_parents_group(
    endpoint: Endpoint, tmp_path: pathlib.Path
) -> None:
    certificate = make(endpoint, tmp_path)
    parent = certificate.directory.parent
    parent.mkdir()
    group = next(gid for gid in (os.getgid() + 1, 1, 2) if gid != os.getgid())
    os.chown(parent, -1, group)
    parent.chmod(0o750)  # no set-group-ID bit: the group is set explicitly
    certificate.obtain(deadline_s=5)
    assert certificate.directory.resolve().stat().st_gid == group
    for name in ("ca-cert.pem", "server-cert.pem", "server-key.pem", "dh-params.pem"):
        assert os.stat(certificate.directory / name).st_gid == group, name


def test_renew_soon_issues_a_new_certificate_at_once_and_tells_the_guests(
    endpoint: Endpoint, tmp_path: pathlib.Path
) -> None:
    certificate = make(endpoint, tmp_path)
    certificate.obtain(deadline_s=5)
    first = (certificate.directory / "server-cert.pem").read_bytes()
    renewed = threading.Event()
    certificate.start_renewing(on_renewed=renewed.set, interval_s=3600)
    try:
        assert not renewed.wait(0.3), "nothing was due"
        certificate.renew_soon()
        assert renewed.wait(10), "no renewal after renew_soon"
    finally:
        certificate.stop()
    assert (certificate.directory / "server-cert.pem").read_bytes() != first


def test_files_that_cannot_be_written_keep_the_old_ones_and_the_renewals_going(
    endpoint: Endpoint,
    tmp_path: pathlib.Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    certificate = make(endpoint, tmp_path, clock=clock)
    issued = certificate.obtain(deadline_s=5)
    before = (certificate.directory / "server-cert.pem").read_bytes()
    clock.now = issued.renew_after

    def disk_full(*args: object, **kwargs: object) -> str:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(host_certificate.tempfile, "mkdtemp", disk_full)
    assert certificate.renew_if_due() is False
    assert (certificate.directory / "server-cert.pem").read_bytes() == before
    assert "could not renew the host certificate" in caplog.text
    assert "No space left on device" in caplog.text


def test_the_request_asks_for_the_nodes_name_and_console_address() -> None:
    # What cert-manager signs as it is (the operator as CA writes its own names instead).
    key_pem, request_pem = host_certificate.signing_request(
        "node-a", ["192.0.2.7", "node-a.example", "192.0.2.7", "2001:db8::7"]
    )
    request = x509.load_pem_x509_csr(request_pem)
    assert request.is_signature_valid
    assert request.subject.rfc4514_string() == "CN=node-a"
    names = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["node-a"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == [
        "192.0.2.7",
        "2001:db8::7",
    ]
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert request.public_key() == key.public_key()
