"""The console proxy against a real QEMU and a real MariaDB: a noVNC console opens through it
over VeNCrypt/TLS and shows a framebuffer; QEMU refuses plain VNC; a token serves one browser
session; and each reason a console is refused comes back as its own message."""

from __future__ import annotations

import datetime as dt
import pathlib
import socket
import struct
from collections.abc import Iterator
from urllib import parse

import pytest
import requests
import websocket

from kubenova.console import auth
from kubenova.console.proxy import server as proxy_server
from kubenova.console.proxy import session
from kubenova.console.proxy import settings as proxy_settings
from kubenova.db import api, models
from kubenova.db import engine as db_engine
from tests.integration.console.helpers import instance_on, move, report_console_ports
from tests.integration.console.proxy_support import (
    HOST,
    PROXY_PORT,
    SPICE_TLS_PORT,
    X509,
    RFBClient,
    make_x509,
    open_console,
    qemu_with_tls_vnc,
    running_proxy,
)

pytestmark = pytest.mark.integration

BASE = f"http://127.0.0.1:{PROXY_PORT}"
WS_BASE = f"ws://127.0.0.1:{PROXY_PORT}"
OWN_ORIGIN = BASE


@pytest.fixture(scope="module")
def x509(tmp_path_factory: pytest.TempPathFactory) -> X509:
    return make_x509(tmp_path_factory.mktemp("x509"))


@pytest.fixture(scope="module")
def vnc_port(x509: X509, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    log = tmp_path_factory.mktemp("qemu") / "qemu.log"
    with qemu_with_tls_vnc(x509.host_dir, log) as port:
        yield port


@pytest.fixture
def proxy(
    x509: X509, db_session_factory: db_engine.SessionFactory, tmp_path: pathlib.Path
) -> Iterator[proxy_server.ConsoleProxyServer]:
    web = tmp_path / "web"
    web.mkdir()
    (web / "vnc_lite.html").write_text("<!doctype html><title>noVNC</title>\n")
    settings = proxy_settings.ProxySettings(
        listen_host="127.0.0.1", listen_port=PROXY_PORT, x509_dir=x509.proxy_dir, web_dir=web
    )
    with running_proxy(settings, db_session_factory) as running:
        yield running


def mint(
    session_factory: db_engine.SessionFactory,
    uuid: str,
    port: int,
    *,
    made: dt.datetime | None = None,
) -> str:
    # The instance's host reported that port for its VNC console.
    report_console_ports(session_factory, uuid, vnc_port=port)
    return auth.mint(
        session_factory,
        uuid,
        auth.ConsoleType.NOVNC,
        HOST,
        port,
        None,
        None,
        600,
        clock=(lambda: made) if made else models.utcnow,
    ).token


def refusal(url: str, **kwargs: object) -> tuple[int, str]:
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        open_console(url, **kwargs)  # type: ignore[arg-type]
    return refused.value.status_code, str(refused.value.status_message)


def test_a_vnc_console_opens_through_the_proxy_over_vencrypt_tls(
    proxy, vnc_port, db_session_factory
):
    uuid = instance_on(db_session_factory, HOST)
    token = mint(db_session_factory, uuid, vnc_port)

    ws = open_console(f"{WS_BASE}/?token={token}", origin=OWN_ORIGIN)
    try:
        client = RFBClient(ws)
        width, height, _ = client.handshake()
        message_type, rectangles = client.framebuffer_update(width, height)
    finally:
        ws.close()

    assert (width, height) >= (320, 200)
    assert message_type == 0  # FramebufferUpdate
    assert rectangles >= 1


def test_a_spice_console_is_relayed_to_the_tls_port(proxy, vnc_port, db_session_factory):
    uuid = instance_on(db_session_factory, HOST, spice_tls_port=SPICE_TLS_PORT)
    token = auth.mint(
        db_session_factory,
        uuid,
        auth.ConsoleType.SPICE_HTML5,
        HOST,
        SPICE_TLS_PORT,
        SPICE_TLS_PORT,
        None,
    ).token
    # SpiceLinkHeader (magic REDQ, protocol 2.2) and a SpiceLinkMess for the main channel.
    link = struct.pack("<IBBIII", 0, 1, 0, 0, 0, 18)
    header = b"REDQ" + struct.pack("<III", 2, 2, len(link))

    ws = open_console(f"{WS_BASE}/websockify?token={token}", origin=OWN_ORIGIN)
    try:
        ws.send_binary(header + link)
        reply = ws.recv()
    finally:
        ws.close()

    assert isinstance(reply, bytes)
    assert reply[:4] == b"REDQ"  # the server's SpiceLinkHeader, through TLS


def test_qemu_refuses_plain_vnc_straight_to_its_port(vnc_port):
    with socket.create_connection(("127.0.0.1", vnc_port), timeout=10) as plain:
        assert plain.recv(12) == b"RFB 003.008\n"
        plain.sendall(b"RFB 003.008\n")
        (count,) = plain.recv(1)
        offered = list(plain.recv(count))
        plain.sendall(b"\x01")  # None, which QEMU did not offer
        result = plain.recv(4)

    assert offered == [19]  # VeNCrypt only
    assert struct.unpack("!I", result) == (1,)  # SecurityResult: failed


def test_a_page_spends_the_token_and_its_session_alone_may_reconnect(
    proxy, vnc_port, db_session_factory
):
    uuid = instance_on(db_session_factory, HOST)
    token = mint(db_session_factory, uuid, vnc_port)
    page = requests.get(
        f"{BASE}/vnc_lite.html?path={parse.quote(f'websockify?token={token}')}", timeout=30
    )
    assert page.status_code == 200
    set_cookie = page.headers["Set-Cookie"]
    assert {"HttpOnly", "SameSite=Strict", "Secure", "Path=/"} <= set(set_cookie.split("; "))
    assert page.headers["Cache-Control"] == "no-store"
    cookie = set_cookie.split("; ")[0]
    url = f"{WS_BASE}/websockify?token={token}"

    # The page's websocket, then noVNC's reconnect after a drop: one session, both let in.
    for _ in range(2):
        ws = open_console(url, origin=OWN_ORIGIN, cookie=cookie)
        try:
            assert RFBClient(ws).handshake()[0] > 0
        finally:
            ws.close()

    # Another browser: without the cookie, or with a session of its own.
    assert refusal(url, origin=OWN_ORIGIN) == (
        403,
        "console refused (already_used): the console token was already used; "
        "ask for a new console URL",
    )
    stranger = f"{session.cookie_name(token)}={session.new_session().secret}"
    assert refusal(url, origin=OWN_ORIGIN, cookie=stranger) == (
        403,
        "console refused (other_session): the console token belongs to another browser "
        "session; ask for a new console URL",
    )


def test_an_expired_token_is_refused(proxy, vnc_port, db_session_factory):
    uuid = instance_on(db_session_factory, HOST)
    token = mint(
        db_session_factory, uuid, vnc_port, made=models.utcnow() - dt.timedelta(seconds=601)
    )
    assert refusal(f"{WS_BASE}/?token={token}", origin=OWN_ORIGIN) == (
        403,
        "console refused (expired): the console token has expired; ask for a new console URL",
    )


def test_a_token_of_another_instance_is_refused(proxy, vnc_port, db_session_factory):
    mine = instance_on(db_session_factory, HOST)
    theirs = instance_on(db_session_factory, HOST)
    token = mint(db_session_factory, theirs, vnc_port)
    assert refusal(f"{WS_BASE}/?token={token}&instance={mine}", origin=OWN_ORIGIN) == (
        403,
        "console refused (wrong_instance): the console token is for another instance",
    )


def test_a_token_after_its_instance_was_deleted_is_refused(proxy, vnc_port, db_session_factory):
    uuid = instance_on(db_session_factory, HOST)
    token = mint(db_session_factory, uuid, vnc_port)
    with db_engine.transaction(db_session_factory) as db:
        api.instance_soft_delete(db, uuid)
    assert refusal(f"{WS_BASE}/?token={token}", origin=OWN_ORIGIN) == (
        403,
        "console refused (instance_deleted): the instance was deleted",
    )


def test_a_token_after_its_instance_moved_is_refused(proxy, vnc_port, db_session_factory):
    uuid = instance_on(db_session_factory, HOST)
    token = mint(db_session_factory, uuid, vnc_port)
    move(db_session_factory, uuid, "another-host")
    assert refusal(f"{WS_BASE}/?token={token}", origin=OWN_ORIGIN) == (
        403,
        "console refused (instance_moved): the instance moved to another host; "
        "ask for a new console URL",
    )


@pytest.mark.parametrize("foreign", ["https://evil.example", f"https://127.0.0.1:{PROXY_PORT}"])
def test_a_foreign_origin_is_refused(proxy, vnc_port, db_session_factory, foreign):
    uuid = instance_on(db_session_factory, HOST)
    token = mint(db_session_factory, uuid, vnc_port)
    assert refusal(f"{WS_BASE}/?token={token}", origin=foreign) == (
        403,
        "console refused (foreign_origin): "
        "the page that opened this console is not one this proxy serves",
    )


def test_a_websocket_without_a_token_is_refused(proxy):
    assert refusal(f"{WS_BASE}/websockify", origin=OWN_ORIGIN) == (
        400,
        "console refused (no_token): the URL carries no console token; ask for a new console URL",
    )
