"""Settings of ``kubenova-subresources``, read from the environment.

- ``KUBENOVA_SUBRESOURCES_LISTEN_HOST`` / ``_PORT`` (``0.0.0.0`` / ``9443``): where the
  kube-apiserver connects.
- ``KUBENOVA_SUBRESOURCES_TLS_CERT`` / ``_KEY`` (required): the serving certificate and key
  (PEM). The certificate must name the APIService's Service (``NAME.NAMESPACE.svc``, which is
  what the kube-apiserver checks) and be signed by a CA in the APIService's ``caBundle``.
- ``KUBENOVA_CONSOLE_PUBLIC_URL`` (required): the console proxy's base URL as browsers reach
  it, e.g. ``https://console.example.com:6080``.
- ``KUBENOVA_CONSOLE_TOKEN_TTL`` (600): seconds a console URL may wait before it is opened.
- ``KUBENOVA_DB_URL``: the ``nova`` database (records and tokens).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Mapping
from urllib import parse

from kubenova import config

DEFAULT_PORT = 9443


@dataclasses.dataclass(frozen=True)
class SubresourceSettings:
    tls_cert_file: pathlib.Path
    tls_key_file: pathlib.Path
    console_public_url: str
    listen_host: str = "0.0.0.0"
    listen_port: int = DEFAULT_PORT
    console_token_ttl_s: int = config.DEFAULT_CONSOLE_TOKEN_TTL_S

    def __post_init__(self) -> None:
        parts = parse.urlsplit(self.console_public_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                "KUBENOVA_CONSOLE_PUBLIC_URL must be the console proxy's http(s) URL, e.g."
                f" https://console.example.com:6080, not {self.console_public_url!r}"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SubresourceSettings:
        env = os.environ if environ is None else environ

        def required(name: str) -> str:
            value = env.get(name, "")
            if not value:
                raise ValueError(f"{name} is required")
            return value

        return cls(
            tls_cert_file=pathlib.Path(required("KUBENOVA_SUBRESOURCES_TLS_CERT")),
            tls_key_file=pathlib.Path(required("KUBENOVA_SUBRESOURCES_TLS_KEY")),
            console_public_url=required("KUBENOVA_CONSOLE_PUBLIC_URL"),
            listen_host=env.get("KUBENOVA_SUBRESOURCES_LISTEN_HOST") or "0.0.0.0",
            listen_port=_int(env, "KUBENOVA_SUBRESOURCES_PORT", DEFAULT_PORT),
            console_token_ttl_s=_int(
                env, "KUBENOVA_CONSOLE_TOKEN_TTL", config.DEFAULT_CONSOLE_TOKEN_TTL_S
            ),
        )


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value
