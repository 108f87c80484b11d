"""Settings of ``kubenova-subresources``, read from the environment.

- ``KUBENOVA_SUBRESOURCES_LISTEN_HOST`` / ``_PORT`` (``0.0.0.0`` / ``9443``): where the
  kube-apiserver connects.
- ``KUBENOVA_SUBRESOURCES_TLS_CERT`` / ``_KEY`` (required): the serving certificate and key
  (PEM). The certificate must name the APIService's Service (``NAME.NAMESPACE.svc``, which is
  what the kube-apiserver checks) and be signed by a CA in the APIService's ``caBundle``.
- ``KUBENOVA_CONSOLE_PUBLIC_URL`` (required): the console proxy's base URL as browsers reach
  it, e.g. ``https://console.example.com:6080``.
- ``KUBENOVA_CONSOLE_TOKEN_TTL`` (600): seconds a console URL may wait before it is opened.
- ``KUBENOVA_SERIAL_CONSOLE_PORT`` (6083): the port of every host's serial console server.
- ``KUBENOVA_SUBRESOURCES_REQUESTHEADER_REFRESH`` (60): seconds between two reads of
  ``kube-system/extension-apiserver-authentication``, so that a rotated front-proxy CA is
  trusted (and the one it replaced no longer) within that long, without a restart.
- ``KUBENOVA_DB_URL``: the ``nova`` database (records and tokens).

A variable that cannot be used raises
:class:`kubenova.console.proxy.settings.SettingError` naming it (the console proxy's settings
are read the same way, and ``instances/vnc`` uses them).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
from collections.abc import Mapping
from urllib import parse

from kubenova import config
from kubenova.console.proxy import settings as proxy_settings
from kubenova.subresources import requestheader_provider, serial

DEFAULT_PORT = 9443


@dataclasses.dataclass(frozen=True)
class SubresourceSettings:
    tls_cert_file: pathlib.Path
    tls_key_file: pathlib.Path
    console_public_url: str
    listen_host: str = "0.0.0.0"
    listen_port: int = DEFAULT_PORT
    console_token_ttl_s: int = config.DEFAULT_CONSOLE_TOKEN_TTL_S
    serial_console_port: int = serial.DEFAULT_PORT
    requestheader_refresh_s: int = requestheader_provider.DEFAULT_REFRESH_S

    def __post_init__(self) -> None:
        parts = parse.urlsplit(self.console_public_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise proxy_settings.SettingError(
                "KUBENOVA_CONSOLE_PUBLIC_URL",
                "must be the console proxy's http(s) URL, e.g. https://console.example.com:6080",
                self.console_public_url,
            )

    def check_files(self) -> None:
        """:class:`~kubenova.console.proxy.settings.SettingError` naming the variable of a
        serving certificate file that is not there or not readable."""
        proxy_settings.require_readable("KUBENOVA_SUBRESOURCES_TLS_CERT", self.tls_cert_file)
        proxy_settings.require_readable("KUBENOVA_SUBRESOURCES_TLS_KEY", self.tls_key_file)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SubresourceSettings:
        env = os.environ if environ is None else environ
        required = functools.partial(proxy_settings.env_required, env)
        return cls(
            tls_cert_file=pathlib.Path(required("KUBENOVA_SUBRESOURCES_TLS_CERT")),
            tls_key_file=pathlib.Path(required("KUBENOVA_SUBRESOURCES_TLS_KEY")),
            console_public_url=required("KUBENOVA_CONSOLE_PUBLIC_URL"),
            listen_host=env.get("KUBENOVA_SUBRESOURCES_LISTEN_HOST") or "0.0.0.0",
            listen_port=proxy_settings.env_port(env, "KUBENOVA_SUBRESOURCES_PORT", DEFAULT_PORT),
            console_token_ttl_s=proxy_settings.env_positive_int(
                env, "KUBENOVA_CONSOLE_TOKEN_TTL", config.DEFAULT_CONSOLE_TOKEN_TTL_S, "seconds"
            ),
            serial_console_port=proxy_settings.env_port(
                env, "KUBENOVA_SERIAL_CONSOLE_PORT", serial.DEFAULT_PORT
            ),
            requestheader_refresh_s=proxy_settings.env_positive_int(
                env,
                "KUBENOVA_SUBRESOURCES_REQUESTHEADER_REFRESH",
                requestheader_provider.DEFAULT_REFRESH_S,
                "seconds",
            ),
        )
