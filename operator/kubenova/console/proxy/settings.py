"""The console proxy's settings, read from the environment (``KUBENOVA_CONSOLE_*``).

The file paths are those of a mounted Secret: :func:`kubenova.certs.console.proxy_files` names
the client side (``ca-cert.pem``, ``client-cert.pem``, ``client-key.pem``) in ``x509_dir``;
the proxy's own serving certificate is a separate pair, since browsers see it and QEMU does not.

A variable that cannot be used raises :class:`SettingError`, whose message names the variable,
says what it must be and shows what it was; the helpers below read the environment that way for
``kubenova-console`` and ``kubenova-subresources`` alike, so both fail the same clear way.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Mapping
from typing import Final
from urllib import parse

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from kubenova.certs import console as console_certs
from kubenova.console import spice_ticket
from kubenova.db import engine as db_engine

DEFAULT_PORT = 6080
ORIGINS_ENV: Final = "KUBENOVA_CONSOLE_ALLOWED_ORIGINS"
SPICE_TICKET_KEY_ENV: Final = "KUBENOVA_CONSOLE_SPICE_TICKET_KEY_FILE"
MAX_PORT: Final = 65535


class SettingError(ValueError):
    """An environment variable that cannot be used, e.g.
    ``KUBENOVA_CONSOLE_PORT: must be a port number 1-65535, got '70000'``."""

    def __init__(self, name: str, reason: str, raw: str | None = None) -> None:
        got = "" if raw is None else f", got {raw!r}"
        super().__init__(f"{name}: {reason}{got}")
        self.name = name


def env_required(env: Mapping[str, str], name: str) -> str:
    """The value of ``name``; unset or empty raises :class:`SettingError`."""
    value = env.get(name, "")
    if not value:
        raise SettingError(name, "is required and is unset or empty")
    return value


def env_port(env: Mapping[str, str], name: str, default: int) -> int:
    """``name`` as a TCP port number, ``default`` when unset or empty."""
    raw = env.get(name, "")
    if not raw:
        return default
    # isdigit() also takes non-ASCII digits ("٣") that int() reads; a port is ASCII.
    if not (raw.isascii() and raw.isdigit() and 0 < int(raw) <= MAX_PORT):
        reason = f"must be a port number 1-{MAX_PORT}"
        if "://" in raw:
            # Kubernetes' service links: a Service named like the variable's prefix sets it.
            reason += " (a Kubernetes service link set it: set it explicitly in the pod spec)"
        raise SettingError(name, reason, raw)
    return int(raw)


def env_positive_int(env: Mapping[str, str], name: str, default: int, unit: str) -> int:
    """``name`` as a whole number of ``unit`` above zero, ``default`` when unset or empty."""
    raw = env.get(name, "")
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit() and int(raw) > 0):
        raise SettingError(name, f"must be a whole number of {unit} above 0", raw)
    return int(raw)


def env_flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    """``name`` as ``1`` (on) or ``0`` (off), ``default`` when unset or empty."""
    raw = env.get(name, "")
    if not raw:
        return default
    if raw not in ("0", "1"):
        raise SettingError(name, "must be 1 (on) or 0 (off)", raw)
    return raw == "1"


def parse_origins(raw: str) -> tuple[str, ...]:
    """``"https://a.example, https://b.example:8443"`` -> the origins, normalized (lower case,
    no path). An entry without a scheme raises ``ValueError``: an origin is matched with its
    scheme, so ``console.example`` alone would be ambiguous."""
    origins = []
    for item in raw.split(","):
        entry = item.strip()
        if not entry:
            continue
        parts = parse.urlsplit(entry)
        if not parts.scheme or not parts.hostname:
            raise ValueError(f"an allowed origin needs a scheme and a host, e.g. https://{entry}")
        origins.append(f"{parts.scheme.lower()}://{parts.netloc.lower()}")
    return tuple(origins)


def require_readable(name: str, path: pathlib.Path) -> None:
    """:class:`SettingError` naming ``name`` unless ``path`` (its value, or a file in the
    directory it names) is a file this process can read. ``ssl`` says only "No such file or
    directory", without the file, let alone the variable that named it."""
    if not (path.is_file() and os.access(path, os.R_OK)):
        raise SettingError(name, f"{path} is not a file this process can read")


def engine_from_env(environ: Mapping[str, str] | None = None) -> sa.Engine:
    """The engine of the ``nova`` database at ``KUBENOVA_DB_URL``; :class:`SettingError` when
    it is unset or not a usable URL. The message never shows the URL: it holds a password."""
    name = db_engine.DB_URL_ENV
    try:
        url = db_engine.url_from_env(environ)
    except RuntimeError as exc:
        raise SettingError(name, "is required: the nova database's SQLAlchemy URL") from exc
    try:
        return db_engine.create_engine(url)
    except (ValueError, sa_exc.ArgumentError) as exc:
        raise SettingError(name, f"is not a usable database URL ({exc})") from exc


@dataclasses.dataclass(frozen=True)
class ProxySettings:
    """Settings of ``kubenova-console``."""

    # All addresses: a proxy serves browsers on other machines.
    listen_host: str = "0.0.0.0"
    listen_port: int = DEFAULT_PORT
    # The proxy's serving certificate and key (PEM); without them it serves plain HTTP, which
    # only fits behind a TLS-terminating ingress.
    tls_cert_file: pathlib.Path | None = None
    tls_key_file: pathlib.Path | None = None
    # The client side of the hop to QEMU: the trust bundle and the proxy's client certificate.
    x509_dir: pathlib.Path = pathlib.Path("/etc/kubenova/console-x509")
    # Origins besides the proxy's own (the Host header) whose pages may open a console.
    allowed_origins: tuple[str, ...] = ()
    # Where noVNC and spice-html5 are (hack/console/assets.sh installs them).
    web_dir: pathlib.Path = pathlib.Path("/usr/share/kubenova-console")
    # The Secure attribute of the session cookie. Browsers keep Secure cookies of https pages
    # and of loopback; only a plain-HTTP deployment on another address needs it off.
    secure_cookie: bool = True
    # The key every guest's SPICE password is derived from (kubenova.console.spice_ticket),
    # read at start from the file KUBENOVA_CONSOLE_SPICE_TICKET_KEY_FILE names, the agents'
    # key. With it the proxy gives each SPICE channel its guest's password (spice_link);
    # None: SPICE is relayed as it comes, for guests whose SPICE has no password.
    spice_ticket_key: bytes | None = dataclasses.field(default=None, repr=False)

    @property
    def ca_file(self) -> pathlib.Path:
        return self.x509_dir / console_certs.CA_FILE

    @property
    def client_cert_file(self) -> pathlib.Path:
        return self.x509_dir / console_certs.CLIENT_CERT_FILE

    @property
    def client_key_file(self) -> pathlib.Path:
        return self.x509_dir / console_certs.CLIENT_KEY_FILE

    @property
    def serves_tls(self) -> bool:
        return self.tls_cert_file is not None

    def check_files(self) -> None:
        """:class:`SettingError` naming the variable of the first certificate file the proxy
        loads at start that is not there or not readable."""
        for file in (self.ca_file, self.client_cert_file, self.client_key_file):
            require_readable("KUBENOVA_CONSOLE_X509_DIR", file)
        if self.tls_cert_file is not None:
            require_readable("KUBENOVA_CONSOLE_TLS_CERT", self.tls_cert_file)
        if self.tls_key_file is not None:
            require_readable("KUBENOVA_CONSOLE_TLS_KEY", self.tls_key_file)

    def __post_init__(self) -> None:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("the proxy's serving certificate needs both its cert and key file")
        if self.spice_ticket_key is not None:
            spice_ticket.check_key(self.spice_ticket_key, "spice_ticket_key", "the settings")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ProxySettings:
        """The settings from ``environ`` (the process's environment); a variable that cannot
        be used raises :class:`SettingError` naming it."""
        env = os.environ if environ is None else environ

        def path(name: str) -> pathlib.Path | None:
            raw = env.get(name, "")
            return pathlib.Path(raw) if raw else None

        try:
            origins = parse_origins(env.get(ORIGINS_ENV, ""))
        except ValueError as exc:
            raise SettingError(ORIGINS_ENV, str(exc)) from exc
        tls_cert_file = path("KUBENOVA_CONSOLE_TLS_CERT")
        tls_key_file = path("KUBENOVA_CONSOLE_TLS_KEY")
        if (tls_cert_file is None) != (tls_key_file is None):
            raise SettingError(
                "KUBENOVA_CONSOLE_TLS_CERT",
                "and KUBENOVA_CONSOLE_TLS_KEY must be set together or not at all",
            )
        key_file = env.get(SPICE_TICKET_KEY_ENV, "")
        try:
            key = spice_ticket.read_key(key_file, SPICE_TICKET_KEY_ENV) if key_file else None
        except spice_ticket.TicketKeyError as exc:
            raise SettingError(exc.setting, exc.reason) from None
        defaults = cls()
        return cls(
            listen_host=env.get("KUBENOVA_CONSOLE_LISTEN_HOST") or defaults.listen_host,
            listen_port=env_port(env, "KUBENOVA_CONSOLE_PORT", DEFAULT_PORT),
            tls_cert_file=tls_cert_file,
            tls_key_file=tls_key_file,
            x509_dir=path("KUBENOVA_CONSOLE_X509_DIR") or defaults.x509_dir,
            allowed_origins=origins,
            web_dir=path("KUBENOVA_CONSOLE_WEB_DIR") or defaults.web_dir,
            secure_cookie=env_flag(env, "KUBENOVA_CONSOLE_SECURE_COOKIE", defaults.secure_cookie),
            spice_ticket_key=key,
        )
