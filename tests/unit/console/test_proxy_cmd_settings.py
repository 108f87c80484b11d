"""``kubenova-console`` with a setting it cannot use: exit code 2 and one line naming the
variable, the reason and the value, never a traceback. Each case runs the installed console
script, with every other setting valid."""

from __future__ import annotations

import pathlib
import socket
from collections.abc import Iterator

import pytest

from tests.support import console_scripts
from tests.support.serial_console import write_pki

SCRIPT = "kubenova-console"


@pytest.fixture
def port_in_use() -> Iterator[int]:
    """A loopback port something already listens on."""
    with socket.create_server(("127.0.0.1", 0)) as listening:
        yield listening.getsockname()[1]


@pytest.fixture
def valid_env(tmp_path: pathlib.Path, port_in_use: int) -> dict[str, str]:
    """Settings that pass: the process gets as far as listening, on a port that is taken."""
    return {
        "KUBENOVA_CONSOLE_X509_DIR": str(write_pki(tmp_path).proxy_dir),
        "KUBENOVA_CONSOLE_LISTEN_HOST": "127.0.0.1",
        "KUBENOVA_CONSOLE_PORT": str(port_in_use),
        "KUBENOVA_CONSOLE_WEB_DIR": str(tmp_path),
        "KUBENOVA_DB_URL": console_scripts.DB_URL,
    }


def _fails_with(env: dict[str, str], home: pathlib.Path) -> str:
    return console_scripts.failure_line(console_scripts.run(SCRIPT, env, home))


def test_valid_settings_get_as_far_as_listening(valid_env, tmp_path, port_in_use):
    # The control for the cases below: what stops this run is the port being taken.
    line = _fails_with(valid_env, tmp_path)

    assert line.startswith(
        f"{SCRIPT}: cannot serve on 127.0.0.1:{port_in_use}"
        " (KUBENOVA_CONSOLE_LISTEN_HOST, KUBENOVA_CONSOLE_PORT)"
    )
    assert line.endswith("Address already in use")


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("KUBENOVA_CONSOLE_PORT", "x", "must be a port number 1-65535, got 'x'"),
        ("KUBENOVA_CONSOLE_PORT", "70000", "must be a port number 1-65535, got '70000'"),
        (
            "KUBENOVA_CONSOLE_PORT",
            "tcp://10.96.0.10:6080",
            "must be a port number 1-65535 (a Kubernetes service link set it: set it"
            " explicitly in the pod spec), got 'tcp://10.96.0.10:6080'",
        ),
        ("KUBENOVA_CONSOLE_SECURE_COOKIE", "true", "must be 1 (on) or 0 (off), got 'true'"),
        (
            "KUBENOVA_CONSOLE_ALLOWED_ORIGINS",
            "https://ok.example, portal.example",
            "an allowed origin needs a scheme and a host, e.g. https://portal.example",
        ),
        (
            "KUBENOVA_CONSOLE_TLS_CERT",
            "/tls/tls.crt",
            "and KUBENOVA_CONSOLE_TLS_KEY must be set together or not at all",
        ),
    ],
)
def test_a_bad_value_is_named_with_the_reason(valid_env, tmp_path, name, value, expected):
    line = _fails_with({**valid_env, name: value}, tmp_path)

    assert line == f"{SCRIPT}: {name}: {expected}"


def test_an_x509_directory_without_the_client_certificate_is_named(valid_env, tmp_path):
    x509_dir = pathlib.Path(valid_env["KUBENOVA_CONSOLE_X509_DIR"])
    (x509_dir / "client-cert.pem").unlink()

    line = _fails_with(valid_env, tmp_path)

    assert line == (
        f"{SCRIPT}: KUBENOVA_CONSOLE_X509_DIR: {x509_dir / 'client-cert.pem'}"
        " is not a file this process can read"
    )


def test_a_missing_database_url_is_named(valid_env, tmp_path):
    del valid_env["KUBENOVA_DB_URL"]

    line = _fails_with(valid_env, tmp_path)

    assert line == (f"{SCRIPT}: KUBENOVA_DB_URL: is required: the nova database's SQLAlchemy URL")
