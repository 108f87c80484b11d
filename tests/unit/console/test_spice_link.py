"""The SPICE link interposer between a browser speaking as spice-html5 does and a fake
spice-server on a socket pair (:mod:`tests.support.fake_spice`): the server gets the guest's
ticket in place of the browser's password, and every link the proxy must not pass is stopped
before the server hears more than it should."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from kubenova.console import spice_ticket
from kubenova.console.proxy import spice_link
from tests.support.fake_spice import (
    AUTH_SELECTION_CAP,
    KEY,
    LINK_ERR_CHANNEL_NOT_AVAILABLE,
    MINI_HEADER_CAP,
    OAEP,
    TICKET,
    UUID,
    FakeSpiceServer,
    SpiceHtml5,
    link_header,
    link_message,
    new_server_key,
    recv_exact,
)


@pytest.fixture(scope="module")
def server_key() -> rsa.RSAPrivateKey:
    return new_server_key()


class Linked:
    """A :class:`FakeSpiceServer` on a thread, at the other end of the proxy's socket."""

    def __init__(self, server: FakeSpiceServer) -> None:
        self.server = server
        self.proxy_end, self._spice_end = socket.socketpair()
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.server.serve(self._spice_end)
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.errors.append(exc)
        finally:
            self._spice_end.close()

    def link_result(self) -> int:
        """The u32 the server answered the ticket with, as the relay would read it."""
        self.proxy_end.settimeout(10)
        (result,) = struct.unpack("<I", recv_exact(self.proxy_end, 4))
        return int(result)

    def close(self) -> None:
        """Close the proxy's side and wait for the server to have seen everything."""
        self.proxy_end.close()
        self._thread.join(timeout=10)
        assert not self._thread.is_alive()
        assert not self.errors, self.errors


@pytest.fixture
def spice() -> Iterator[list[Linked]]:
    started: list[Linked] = []
    yield started
    for linked in started:
        if linked.proxy_end.fileno() != -1:
            linked.close()


def start(started: list[Linked], server: FakeSpiceServer) -> Linked:
    linked = Linked(server)
    started.append(linked)
    return linked


@pytest.mark.parametrize("auth_selection", [True, False], ids=["auth-selection", "ticket-only"])
def test_the_server_gets_the_guests_ticket_and_grants_the_link(server_key, spice, auth_selection):
    linked = start(spice, FakeSpiceServer(server_key, TICKET))
    browser = SpiceHtml5(password="", auth_selection=auth_selection)

    spice_link.interpose(browser, linked.proxy_end, TICKET)

    assert linked.link_result() == spice_link.LINK_ERR_OK
    linked.close()
    assert linked.server.decrypted == TICKET.encode() + b"\0"
    assert linked.server.mechanism == (spice_link.AUTH_SPICE if auth_selection else None)
    # The browser got the server's reply, key and all, and never saw the ticket.
    assert bytes(browser.received) == linked.server.reply()


def test_a_wrong_ticket_is_denied_by_the_server(server_key, spice):
    # The proxy's key is not the one the guest's password was derived from.
    linked = start(spice, FakeSpiceServer(server_key, TICKET))

    spice_link.interpose(SpiceHtml5(), linked.proxy_end, spice_ticket.ticket(KEY + b"!", UUID))

    assert linked.link_result() == spice_link.LINK_ERR_PERMISSION_DENIED


def test_without_the_proxy_the_browsers_own_password_is_denied(server_key, spice):
    # The control: the fake server tells passwords apart, so the grant above is the ticket's.
    linked = start(spice, FakeSpiceServer(server_key, TICKET))
    browser = SpiceHtml5(password="guessed")
    linked.proxy_end.sendall(browser.leftover())  # its link message, straight to the server
    browser.sendall(recv_exact(linked.proxy_end, len(linked.server.reply())))
    linked.proxy_end.sendall(browser.leftover())  # its mechanism and encrypted password

    assert linked.link_result() == spice_link.LINK_ERR_PERMISSION_DENIED
    linked.close()
    assert linked.server.decrypted == b"guessed\0"


def test_bytes_after_the_handshake_reach_the_server_after_the_ticket(server_key, spice):
    linked = start(spice, FakeSpiceServer(server_key, TICKET))
    browser = SpiceHtml5(then=b"first message of the channel")

    spice_link.interpose(browser, linked.proxy_end, TICKET)

    assert linked.link_result() == spice_link.LINK_ERR_OK
    linked.close()
    assert bytes(linked.server.after_ticket) == b"first message of the channel"


def test_sasl_is_refused_and_nothing_after_the_link_reaches_the_server(server_key, spice):
    linked = start(spice, FakeSpiceServer(server_key, TICKET))
    browser = SpiceHtml5(mechanism=spice_link.AUTH_SASL)

    with pytest.raises(spice_link.LinkError, match=r"SASL authentication \(mechanism 2\)") as e:
        spice_link.interpose(browser, linked.proxy_end, TICKET)

    assert e.value.close_code == spice_link.CLOSE_POLICY
    linked.close()
    assert bytes(linked.server.received) == link_message([MINI_HEADER_CAP | AUTH_SELECTION_CAP])


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        (b"RFB 003.008\n" + bytes(20), r"does not speak SPICE \(magic b'RFB ', not b'REDQ'\)"),
        (link_header(18, major=1) + bytes(18), "speaks SPICE protocol 1, not 2"),
        (link_header(4097) + bytes(4097), "link message of 4097 bytes, not 18-4096"),
        (link_header(4) + bytes(4), "link message of 4 bytes, not 18-4096"),
        (link_message([1], caps_offset=40), "1 capability words at offset 40, beyond its 22-byte"),
    ],
    ids=["magic", "major-version", "too-long", "too-short", "caps-outside"],
)
def test_a_link_message_that_is_not_spice_is_refused_before_the_server_hears_it(
    server_key, spice, first, reason
):
    linked = start(spice, FakeSpiceServer(server_key, TICKET))

    with pytest.raises(spice_link.LinkError, match=reason) as refused:
        spice_link.interpose(SpiceHtml5(first=first), linked.proxy_end, TICKET)

    assert refused.value.close_code == spice_link.CLOSE_POLICY
    linked.close()
    assert bytes(linked.server.received) == b""


def test_a_link_error_of_the_server_is_relayed_without_a_ticket(server_key, spice):
    server = FakeSpiceServer(server_key, TICKET, error=LINK_ERR_CHANNEL_NOT_AVAILABLE)
    linked = start(spice, server)
    browser = SpiceHtml5()

    spice_link.interpose(browser, linked.proxy_end, TICKET)

    linked.close()
    assert bytes(browser.received) == server.reply()
    assert bytes(server.received) == link_message([MINI_HEADER_CAP | AUTH_SELECTION_CAP])


def test_a_server_that_does_not_speak_spice_is_refused(spice):
    class NotSpice(FakeSpiceServer):
        def reply(self) -> bytes:
            return b"RFB 003.008\n" + bytes(200)

    linked = start(spice, NotSpice(new_server_key(), TICKET))
    browser = SpiceHtml5()

    with pytest.raises(spice_link.LinkError, match="the SPICE server does not speak SPICE") as e:
        spice_link.interpose(browser, linked.proxy_end, TICKET)

    assert e.value.close_code == spice_link.CLOSE_SERVER_ERROR
    assert bytes(browser.received) == b""


def test_the_ticket_is_encrypted_as_spice_server_decrypts_it(server_key):
    encrypted = spice_link.encrypt_ticket(server_key.public_key(), TICKET)

    assert len(encrypted) == 128
    assert server_key.decrypt(encrypted, OAEP) == TICKET.encode() + b"\0"
