"""Settings of ``kubenova-ec2-api``, read from the environment.

- ``KUBENOVA_EC2_LISTEN_HOST`` / ``KUBENOVA_EC2_PORT`` (``0.0.0.0`` / ``8788``, ec2-api's port).
- ``KUBENOVA_EC2_TLS_CERT`` / ``KUBENOVA_EC2_TLS_KEY``: the serving certificate and key (PEM).
  Both set: HTTPS; neither: plain HTTP (behind a TLS-terminating ingress, or in tests); one
  alone is an error.
- ``KUBENOVA_EC2_REGION`` (``kubenova``): the region clients sign for (their
  ``AWS_DEFAULT_REGION``); a signature scoped to another region is refused.
- ``KUBENOVA_EC2_PUBLIC_URL``: the URL clients reach the server at, which DescribeRegions
  answers with; by default the listening address's.
- ``KUBENOVA_DB_URL`` (unset: none): the ``nova`` database, read (never written) for the
  instances terminated lately; without it, a terminated instance is not shown once its
  Instance object is gone.
- ``KUBENOVA_EC2_TERMINATED_VISIBLE_S`` (3600, as EC2): how many seconds a terminated
  instance stays visible; 0 shows none.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
from collections.abc import Mapping
from urllib import parse

from kubenova.db import engine as db_engine

DEFAULT_PORT = 8788
DEFAULT_REGION = "kubenova"
#: EC2 shows a terminated instance for about an hour.
DEFAULT_TERMINATED_VISIBLE_S = 3600
_REGION = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclasses.dataclass(frozen=True)
class Ec2Settings:
    listen_host: str = "0.0.0.0"
    listen_port: int = DEFAULT_PORT
    tls_cert_file: pathlib.Path | None = None
    tls_key_file: pathlib.Path | None = None
    region: str = DEFAULT_REGION
    public_url: str = ""
    # Never shown: the URL holds the database's password.
    database_url: str = dataclasses.field(default="", repr=False)
    terminated_visible_s: int = DEFAULT_TERMINATED_VISIBLE_S

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
        if self.terminated_visible_s < 0:
            raise ValueError(
                "KUBENOVA_EC2_TERMINATED_VISIBLE_S must be 0 or more seconds, not"
                f" {self.terminated_visible_s}"
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
            database_url=(env.get(db_engine.DB_URL_ENV) or "").strip(),
            terminated_visible_s=_seconds(
                env, "KUBENOVA_EC2_TERMINATED_VISIBLE_S", DEFAULT_TERMINATED_VISIBLE_S
            ),
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


def _seconds(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a whole number of seconds, got {raw!r}") from exc
    if value < 0:
        raise ValueError(f"{name} must be 0 or more seconds, got {value}")
    return value
