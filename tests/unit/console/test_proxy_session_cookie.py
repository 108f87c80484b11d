"""The session cookie that binds a spent console token to one browser: HttpOnly,
SameSite=Strict, Secure, no longer-lived than the token, named per token, and read back only
for its own token."""

from __future__ import annotations

import datetime as dt

from kubenova.console.proxy import handler, session

NOW = dt.datetime(2026, 12, 6, 21, 0, tzinfo=dt.UTC)


def test_the_cookie_is_httponly_strict_secure_and_dies_with_the_token():
    fresh = session.new_session()
    header = session.set_cookie_header(
        "tok", fresh, expires=NOW + dt.timedelta(seconds=600), now=NOW, secure=True
    )
    attributes = header.split("; ")
    assert attributes[0] == f"{session.cookie_name('tok')}={fresh.secret}"
    assert set(attributes[1:]) == {"Path=/", "Max-Age=600", "HttpOnly", "SameSite=Strict", "Secure"}


def test_the_cookie_is_read_back_for_its_own_token_only():
    fresh = session.new_session()
    header = f"other=1; {session.cookie_name('tok')}={fresh.secret}; x=y"
    assert session.from_cookie_header(header, "tok") == fresh
    assert session.from_cookie_header(header, "another-token") is None
    assert session.from_cookie_header(None, "tok") is None
    assert session.from_cookie_header(f"{session.cookie_name('tok')}=" + "a" * 200, "tok") is None


def test_the_database_holds_a_digest_of_the_secret_never_the_secret():
    fresh = session.new_session()
    assert fresh.secret not in fresh.digest
    assert fresh.digest == session.session_digest(fresh.secret)
    assert fresh.digest != session.new_session().digest
    assert fresh.secret not in repr(fresh)


def test_the_cookie_name_gives_nothing_of_the_token_away():
    name = session.cookie_name("my-secret-token")
    assert "my-secret-token" not in name
    assert name.startswith(session.COOKIE_PREFIX)


def test_the_token_is_found_in_the_url_or_in_novncs_nested_path():
    assert handler.query_parameters("/?token=abc")["token"] == "abc"
    nested = handler.query_parameters(
        "/vnc_lite.html?path=websockify%3Ftoken%3Dabc%26instance%3Du1"
    )
    assert nested["token"] == "abc"
    assert nested["instance"] == "u1"
    assert "token" not in handler.query_parameters("/app/ui.js")
