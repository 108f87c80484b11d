"""Settings of ``kubenova-ec2-api``, read from the environment.

- ``KUBENOVA_EC2_LISTEN_HOST`` / ``KUBENOVA_EC2_PORT`` (``0.0.0.0`` / ``8788``, ec2-api's port).
- ``KUBENOVA_EC2_TLS_CERT`` / ``KUBENOVA_EC2_TLS_KEY``: the serving certificate and key (PEM).
  Both set: HTTPS; neither: plain HTTP (behind a TLS-terminating ingress, or in tests); one
  alone is an error.
- ``KUBENOVA_EC2_REGION`` (``kubenova``): the region clients sign for (their
  ``AWS_DEFAULT_REGION``); a signature scoped to another region is refused.
- ``KUBENOVA_EC2_PUBLIC_URL``: the URL clients reach the server at, which DescribeRegions
  answers with; by default the listening address's.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
from collections.abc import Mapping
from urllib import parse

DEFAULT_PORT = 8788
DEFAULT_REGION = "kubenova"
_REGION = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclasses.dataclass(frozen=True)
class Ec2Settings:
    listen_host: str = "0.0.0.0"
    listen_port: int = DEFAULT_PORT
    tls_cert_file: pathlib.Path | None = None
    tls_key_file: pathlib.Path | None = None
    region: str = DEFAULT_REGION
    public_url: str = ""

    def __post_init__(self) -> None:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError(
                "KUBENOVA_EC2_TLS_CERT and KUBENOVA_EC2_TLS_KEY must be set together (HTTPS)"
                " or not at all (HTTP)"
            )
        if not _REGION.match(self.region):
            raise ValueError(
                "KUBENOVA_EC2_REGION must be lower-case letters, digits and dashes, e.g."
                f" kubenova-1, not {self.region!r}"
            )
        if self.public_url:
            parts = parse.urlsplit(self.public_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(
                    "KUBENOVA_EC2_PUBLIC_URL must be an http(s) URL, e.g."
                    f" https://ec2.example.com:8788, not {self.public_url!r}"
                )

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None

    def endpoint(self, port: int) -> str:
        """The URL clients reach the server at (``port``: the one it listens on)."""
        if self.public_url:
            return self.public_url
        scheme = "https" if self.tls else "http"
        host = "localhost" if self.listen_host in ("0.0.0.0", "::", "") else self.listen_host
        return f"{scheme}://{host}:{port}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Ec2Settings:
        env = os.environ if environ is None else environ
        cert = env.get("KUBENOVA_EC2_TLS_CERT") or ""
        key = env.get("KUBENOVA_EC2_TLS_KEY") or ""
        return cls(
            listen_host=env.get("KUBENOVA_EC2_LISTEN_HOST") or "0.0.0.0",
            listen_port=_port(env, "KUBENOVA_EC2_PORT", DEFAULT_PORT),
            tls_cert_file=pathlib.Path(cert) if cert else None,
            tls_key_file=pathlib.Path(key) if key else None,
            region=env.get("KUBENOVA_EC2_REGION") or DEFAULT_REGION,
            public_url=env.get("KUBENOVA_EC2_PUBLIC_URL") or "",
        )


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc
    if not 0 <= value <= 65535:
        raise ValueError(f"{name} must be a port from 0 to 65535, got {value}")
    return value
