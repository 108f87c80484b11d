"""Binding a console token to one browser session with a cookie.

A token is spent once (:func:`kubenova.console.auth.authorize`), but one console is several
connections: the page, spice-html5's websocket per channel, noVNC's reconnect after a drop
(close code 1006). So whoever spends the token gets a random session secret in a cookie, and
the database keeps the secret's sha256 beside the token (``console_session``). A later request
with the token and that cookie is let in until the token expires
(:func:`kubenova.console.auth.resume`); a request without it, or with another, is refused.
Every replica of the proxy reads the same row, so they agree on who owns a token.

The cookie is named after the token (a digest of it, which reveals nothing), so consoles of
two instances open in one browser do not overwrite each other's. It is HttpOnly (no script
reads it), SameSite=Strict (no other site's page sends it) and Secure (never over plain text),
and it lives no longer than the token.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import http.cookies
import secrets
from typing import Final

COOKIE_PREFIX: Final = "kn_console_"
SECRET_BYTES: Final = 32
# A secret is token_urlsafe(32): 43 characters. Anything else is not ours.
_MAX_SECRET_LENGTH: Final = 64


@dataclasses.dataclass(frozen=True)
class Session:
    """A browser session's secret (only in its cookie) and what the database holds of it."""

    secret: str = dataclasses.field(repr=False)

    @property
    def digest(self) -> str:
        return session_digest(self.secret)


def new_session() -> Session:
    return Session(secrets.token_urlsafe(SECRET_BYTES))


def session_digest(secret: str) -> str:
    """What ``console_auth_tokens.console_session`` holds for a session: a copy of the
    database must not let anyone pose as the session."""
    return "sha256:" + hashlib.sha256(secret.encode("ascii")).hexdigest()


def cookie_name(token: str) -> str:
    """The cookie of ``token``'s session. A different digest from the stored token hash, so
    the name gives away nothing the database holds."""
    digest = hashlib.sha256(b"kubenova-console-cookie\0" + token.encode("utf-8")).hexdigest()
    return COOKIE_PREFIX + digest[:32]


def from_cookie_header(header: str | None, token: str) -> Session | None:
    """The session ``token``'s cookie names in a ``Cookie`` header, if any."""
    if not header:
        return None
    jar = http.cookies.SimpleCookie()
    try:
        jar.load(header)
    except http.cookies.CookieError:
        return None
    morsel = jar.get(cookie_name(token))
    if morsel is None:
        return None
    secret = morsel.value
    if not secret or len(secret) > _MAX_SECRET_LENGTH or not secret.isascii():
        return None
    return Session(secret)


def set_cookie_header(
    token: str, session: Session, *, expires: dt.datetime, now: dt.datetime, secure: bool
) -> str:
    """The ``Set-Cookie`` value that hands ``session`` to the browser until ``expires``."""
    max_age = max(0, int((expires - now).total_seconds()))
    attributes = [
        f"{cookie_name(token)}={session.secret}",
        "Path=/",
        f"Max-Age={max_age}",
        "HttpOnly",
        "SameSite=Strict",
    ]
    if secure:
        attributes.append("Secure")
    return "; ".join(attributes)
