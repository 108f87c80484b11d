"""The console proxy's settings from the environment: paths of the certificate files, the
allowed origins, and a serving certificate that comes whole or not at all."""

from __future__ import annotations

import pathlib

import pytest

from kubenova.console.proxy import settings


def test_the_defaults_serve_port_6080_with_secure_cookies(monkeypatch):
    for name in (
        "KUBENOVA_CONSOLE_PORT",
        "KUBENOVA_CONSOLE_TLS_CERT",
        "KUBENOVA_CONSOLE_TLS_KEY",
        "KUBENOVA_CONSOLE_ALLOWED_ORIGINS",
        "KUBENOVA_CONSOLE_SECURE_COOKIE",
    ):
        monkeypatch.delenv(name, raising=False)
    read = settings.ProxySettings.from_env()
    assert read.listen_port == 6080
    assert read.secure_cookie
    assert not read.serves_tls
    assert read.allowed_origins == ()


def test_the_environment_sets_files_origins_and_port(monkeypatch):
    monkeypatch.setenv("KUBENOVA_CONSOLE_PORT", "16085")
    monkeypatch.setenv("KUBENOVA_CONSOLE_TLS_CERT", "/tls/tls.crt")
    monkeypatch.setenv("KUBENOVA_CONSOLE_TLS_KEY", "/tls/tls.key")
    monkeypatch.setenv("KUBENOVA_CONSOLE_X509_DIR", "/x509")
    monkeypatch.setenv("KUBENOVA_CONSOLE_ALLOWED_ORIGINS", "https://Portal.example ,")
    read = settings.ProxySettings.from_env()
    assert read.listen_port == 16085
    assert read.serves_tls
    assert read.ca_file == pathlib.Path("/x509/ca-cert.pem")
    assert read.client_cert_file == pathlib.Path("/x509/client-cert.pem")
    assert read.client_key_file == pathlib.Path("/x509/client-key.pem")
    assert read.allowed_origins == ("https://portal.example",)


def test_a_serving_certificate_without_its_key_is_refused():
    with pytest.raises(ValueError, match="both its cert and key"):
        settings.ProxySettings(tls_cert_file=pathlib.Path("/tls/tls.crt"))
