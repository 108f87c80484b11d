"""``kubenova-subresources`` with a setting it cannot use: exit code 2 and one line naming the
variable, the reason and the value, never a traceback. Each case runs the installed console
script, with every other setting valid."""

from __future__ import annotations

import pathlib

import pytest

from tests.support import console_scripts

SCRIPT = "kubenova-subresources"


@pytest.fixture
def valid_env(tmp_path: pathlib.Path) -> dict[str, str]:
    """Settings that pass: the process gets as far as the kube-apiserver's configuration."""
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_text("certificate")
    key.write_text("key")
    return {
        "KUBENOVA_SUBRESOURCES_TLS_CERT": str(cert),
        "KUBENOVA_SUBRESOURCES_TLS_KEY": str(key),
        "KUBENOVA_CONSOLE_PUBLIC_URL": "https://console.example:6080",
        "KUBENOVA_DB_URL": console_scripts.DB_URL,
    }


def _fails_with(env: dict[str, str], home: pathlib.Path) -> str:
    return console_scripts.failure_line(console_scripts.run(SCRIPT, env, home))


def test_valid_settings_get_past_the_settings(valid_env, tmp_path):
    # The control for the cases below: what stops this run is the missing kubeconfig.
    line = _fails_with(valid_env, tmp_path)

    assert line.startswith(f"{SCRIPT}: ")
    assert "KUBENOVA_" not in line


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        (
            "KUBENOVA_SERIAL_CONSOLE_PORT",
            "x",
            "KUBENOVA_SERIAL_CONSOLE_PORT: must be a port number 1-65535, got 'x'",
        ),
        (
            "KUBENOVA_SERIAL_CONSOLE_PORT",
            "65536",
            "KUBENOVA_SERIAL_CONSOLE_PORT: must be a port number 1-65535, got '65536'",
        ),
        (
            "KUBENOVA_SUBRESOURCES_PORT",
            "tcp://10.96.0.12:443",
            "KUBENOVA_SUBRESOURCES_PORT: must be a port number 1-65535 (a Kubernetes service"
            " link set it: set it explicitly in the pod spec), got 'tcp://10.96.0.12:443'",
        ),
        (
            "KUBENOVA_CONSOLE_TOKEN_TTL",
            "-5",
            "KUBENOVA_CONSOLE_TOKEN_TTL: must be a whole number of seconds above 0, got '-5'",
        ),
        (
            "KUBENOVA_SUBRESOURCES_REQUESTHEADER_REFRESH",
            "0",
            "KUBENOVA_SUBRESOURCES_REQUESTHEADER_REFRESH: must be a whole number of seconds"
            " above 0, got '0'",
        ),
        (
            "KUBENOVA_CONSOLE_PUBLIC_URL",
            "console.example",
            "KUBENOVA_CONSOLE_PUBLIC_URL: must be the console proxy's http(s) URL, e.g."
            " https://console.example.com:6080, got 'console.example'",
        ),
        (
            "KUBENOVA_CONSOLE_PORT",
            "0",
            "KUBENOVA_CONSOLE_PORT: must be a port number 1-65535, got '0'",
        ),
        (
            "KUBENOVA_CONSOLE_SECURE_COOKIE",
            "yes",
            "KUBENOVA_CONSOLE_SECURE_COOKIE: must be 1 (on) or 0 (off), got 'yes'",
        ),
        (
            "KUBENOVA_CONSOLE_ALLOWED_ORIGINS",
            "portal.example",
            "KUBENOVA_CONSOLE_ALLOWED_ORIGINS: an allowed origin needs a scheme and a host,"
            " e.g. https://portal.example",
        ),
    ],
)
def test_a_bad_value_is_named_with_the_reason(valid_env, tmp_path, name, value, expected):
    line = _fails_with({**valid_env, name: value}, tmp_path)

    assert line == f"{SCRIPT}: {expected}"


def test_a_missing_required_setting_is_named(valid_env, tmp_path):
    del valid_env["KUBENOVA_SUBRESOURCES_TLS_CERT"]

    line = _fails_with(valid_env, tmp_path)

    assert line == f"{SCRIPT}: KUBENOVA_SUBRESOURCES_TLS_CERT: is required and is unset or empty"


def test_a_serving_key_that_is_not_there_is_named(valid_env, tmp_path):
    valid_env["KUBENOVA_SUBRESOURCES_TLS_KEY"] = str(tmp_path / "absent.key")

    line = _fails_with(valid_env, tmp_path)

    assert line == (
        f"{SCRIPT}: KUBENOVA_SUBRESOURCES_TLS_KEY: {tmp_path / 'absent.key'}"
        " is not a file this process can read"
    )


def test_a_database_url_that_does_not_parse_is_named_and_not_shown(valid_env, tmp_path):
    line = _fails_with({**valid_env, "KUBENOVA_DB_URL": "not a url, password hunter2"}, tmp_path)

    assert line.startswith(f"{SCRIPT}: KUBENOVA_DB_URL: is not a usable database URL")
    assert "hunter2" not in line
