"""The Origin check: a console websocket opens only from a page of this proxy or of an allowed
origin, scheme included, so a page elsewhere cannot drive a console with a user's cookie or
token (cross-site websocket hijacking; browsers do not apply the same-origin policy to
websockets).

Nova compares host names only and the scheme apart; here an origin is compared whole
(scheme, host and port), as browsers define it: ``https://console.example`` does not allow
``http://console.example`` nor ``https://console.example:8443``.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib import parse

from kubenova.console.proxy import refusals

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _normalized(scheme: str, host: str, port: int | None) -> str:
    scheme = scheme.lower()
    host = host.lower()
    if port is None or port == _DEFAULT_PORTS.get(scheme):
        netloc = f"[{host}]" if ":" in host else host
    else:
        netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"{scheme}://{netloc}"


def _parse_origin(value: str) -> str | None:
    try:
        parts = parse.urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    return _normalized(parts.scheme, parts.hostname, port)


def own_origin(host_header: str | None, scheme: str) -> str | None:
    """The origin of this proxy's own pages as the client reached it: ``scheme`` (``https``
    when the proxy serves TLS) and the Host header."""
    if not host_header:
        return None
    return _parse_origin(f"{scheme}://{host_header}")


def check(
    origin: str | None,
    *,
    host_header: str | None,
    scheme: str,
    allowed_origins: Iterable[str],
) -> None:
    """Pass when ``origin`` is this proxy's own or one of ``allowed_origins``; else raise
    :class:`refusals.ConsoleRefusedError` (``foreign_origin``).

    A request without an Origin header passes: it does not come from a web page (a native
    client, ``kubectl nova vnc``), and a browser always sends one with a websocket.
    """
    if origin is None:
        return
    seen = _parse_origin(origin)
    if seen is None:
        raise refusals.ConsoleRefusedError(
            refusals.Reason.FOREIGN_ORIGIN, f"malformed Origin {origin!r}"
        )
    accepted = {own_origin(host_header, scheme)}
    accepted.update(_parse_origin(allowed) for allowed in allowed_origins)
    accepted.discard(None)
    if seen not in accepted:
        raise refusals.ConsoleRefusedError(
            refusals.Reason.FOREIGN_ORIGIN,
            f"Origin {seen} is neither this proxy's ({own_origin(host_header, scheme)}) "
            "nor an allowed origin",
        )
