"""``kubenova-manage console-certs``: a host's x509 directory for QEMU's console TLS, from a
CA in files that is made on first use and reused afterwards."""

from __future__ import annotations

import pathlib
import stat

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from kubenova.certs import console, dh_params, host_dir
from kubenova.cmd import manage


def _mode(path: pathlib.Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_command_writes_the_files_libvirt_names_signed_by_the_ca(tmp_path, capsys):
    ca_dir, out = tmp_path / "ca", tmp_path / "hosts" / "h1"
    status = manage.main(
        ["console-certs", "--host", "h1", "--dir", str(out), "--ca-dir", str(ca_dir),
         "--address", "127.0.0.1"]
    )  # fmt: skip
    assert status == manage.EXIT_OK
    assert "host h1" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [
        console.CA_FILE, dh_params.DH_PARAMS_FILE, console.SERVER_CERT_FILE,
        console.SERVER_KEY_FILE,
    ]  # fmt: skip
    assert (out / dh_params.DH_PARAMS_FILE).read_bytes() == dh_params.FFDHE2048_PEM
    assert _mode(out / console.SERVER_KEY_FILE) == 0o600
    assert _mode(ca_dir / host_dir.CA_KEY_FILE) == 0o600
    ca = host_dir.load_or_create_ca(ca_dir)
    assert (out / console.CA_FILE).read_bytes() == ca.cert_pem()
    cert = x509.load_pem_x509_certificate((out / console.SERVER_CERT_FILE).read_bytes())
    cert.verify_directly_issued_by(ca.cert)
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["h1"]
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_a_second_host_gets_a_certificate_from_the_same_ca(tmp_path):
    ca_dir = tmp_path / "ca"
    host_dir.write_host_dir(ca_dir, "h1", tmp_path / "h1")
    host_dir.write_host_dir(ca_dir, "h2", tmp_path / "h2")
    assert (tmp_path / "h1" / console.CA_FILE).read_bytes() == (
        tmp_path / "h2" / console.CA_FILE
    ).read_bytes()


def test_a_file_that_is_no_ca_is_refused(tmp_path, capsys):
    ca_dir = tmp_path / "ca"
    host_dir.write_host_dir(ca_dir, "h1", tmp_path / "h1")
    # A leaf's pair where the CA's should be.
    (ca_dir / host_dir.CA_CERT_FILE).write_bytes((tmp_path / "h1" / "server-cert.pem").read_bytes())
    (ca_dir / host_dir.CA_KEY_FILE).write_bytes((tmp_path / "h1" / "server-key.pem").read_bytes())
    status = manage.main(
        ["console-certs", "--host", "h2", "--dir", str(tmp_path / "h2"), "--ca-dir", str(ca_dir)]
    )
    assert status == manage.EXIT_FAILURE
    assert "is not a CA certificate" in capsys.readouterr().err
