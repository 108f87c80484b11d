"""The console proxy's settings, read from the environment (``KUBENOVA_CONSOLE_*``).

The file paths are those of a mounted Secret: :func:`kubenova.certs.console.proxy_files` names
the client side (``ca-cert.pem``, ``client-cert.pem``, ``client-key.pem``) in ``x509_dir``;
the proxy's own serving certificate is a separate pair, since browsers see it and QEMU does not.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from urllib import parse

from kubenova import config
from kubenova.certs import console as console_certs

DEFAULT_PORT = 6080


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

    def __post_init__(self) -> None:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("the proxy's serving certificate needs both its cert and key file")

    @classmethod
    def from_env(cls) -> ProxySettings:
        def path(name: str) -> pathlib.Path | None:
            raw = os.environ.get(name, "")
            return pathlib.Path(raw) if raw else None

        defaults = cls()
        return cls(
            listen_host=os.environ.get("KUBENOVA_CONSOLE_LISTEN_HOST") or defaults.listen_host,
            listen_port=config.env_int("KUBENOVA_CONSOLE_PORT", DEFAULT_PORT),
            tls_cert_file=path("KUBENOVA_CONSOLE_TLS_CERT"),
            tls_key_file=path("KUBENOVA_CONSOLE_TLS_KEY"),
            x509_dir=path("KUBENOVA_CONSOLE_X509_DIR") or defaults.x509_dir,
            allowed_origins=parse_origins(os.environ.get("KUBENOVA_CONSOLE_ALLOWED_ORIGINS", "")),
            web_dir=path("KUBENOVA_CONSOLE_WEB_DIR") or defaults.web_dir,
            secure_cookie=config.env_choice("KUBENOVA_CONSOLE_SECURE_COOKIE", "1", ("0", "1"))
            == "1",
        )
