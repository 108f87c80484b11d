"""``kubectl nova console``: Ctrl-] leaves (nothing typed after it is sent), a dropped console
is said to have dropped and opened again, and a refusal that waiting will not change ends the
command with its message. The keyboard is a pipe, the websocket a stand-in on a socket pair."""

from __future__ import annotations

import io
import os
import socket
import threading
from collections.abc import Iterator

import pytest
import websocket

from kubenova.cli import kubectl_nova
from kubenova.cli import serial_console as verb


class FakeStream:
    """A websocket stand-in: what the server sends arrives on ``server``'s end."""

    def __init__(self) -> None:
        self.sock, self.server = socket.socketpair()
        self.sent = bytearray()

    def send_bytes(self, data: bytes) -> None:
        self.sent += data

    def recv_data(self) -> tuple[int, bytes]:
        data = self.sock.recv(4096)
        if not data:
            raise websocket.WebSocketConnectionClosedException("closed")
        return websocket.ABNF.OPCODE_BINARY, data

    def settimeout(self, timeout: float | None) -> None:
        self.sock.settimeout(timeout)

    def close(self) -> None:
        self.sock.close()
        self.server.close()


@pytest.fixture
def keyboard() -> Iterator[tuple[int, int]]:
    read_end, write_end = os.pipe()
    try:
        yield read_end, write_end
    finally:
        os.close(read_end)
        os.close(write_end)


@pytest.fixture
def screen() -> Iterator[tuple[int, int]]:
    read_end, write_end = os.pipe()
    try:
        yield read_end, write_end
    finally:
        os.close(read_end)
        os.close(write_end)


def test_the_escape_character_splits_what_was_typed() -> None:
    assert verb.split_at_escape(b"ls -l\r") == (b"ls -l\r", False)
    assert verb.split_at_escape(b"ls\x1dexit\r") == (b"ls", True)
    assert verb.split_at_escape(b"\x1d") == (b"", True)


def test_ctrl_right_bracket_leaves_and_what_follows_it_is_not_sent(
    keyboard: tuple[int, int], screen: tuple[int, int]
) -> None:
    stream = FakeStream()
    stream.server.sendall(b"login: ")
    os.write(keyboard[1], b"echo hi\r\x1dreboot\r")
    err = io.StringIO()
    code = verb.run_console(
        "web-1", lambda: stream, stdin_fd=keyboard[0], stdout_fd=screen[1], err=err
    )
    assert code == 0
    assert bytes(stream.sent) == b"echo hi\r"
    assert "Connected to web-1 (escape character is ^])" in err.getvalue()
    assert "Left the console of web-1." in err.getvalue()


def test_what_the_guest_prints_reaches_the_terminal(
    keyboard: tuple[int, int], screen: tuple[int, int]
) -> None:
    stream = FakeStream()
    stream.server.sendall(b"kubenova-guest: ready\r\n")

    def connect() -> verb.Stream:
        return stream

    # The escape is typed once the guest's line is on the screen.
    def leave_after_output() -> None:
        os.write(keyboard[1], b"\x1d")

    timer = threading.Timer(0.5, leave_after_output)
    timer.start()
    code = verb.run_console(
        "web-1", connect, stdin_fd=keyboard[0], stdout_fd=screen[1], err=io.StringIO()
    )
    timer.join()
    assert code == 0
    assert os.read(screen[0], 4096) == b"kubenova-guest: ready\r\n"


def test_a_dropped_console_is_reported_and_opened_again(
    keyboard: tuple[int, int], screen: tuple[int, int]
) -> None:
    first, second = FakeStream(), FakeStream()
    # The first drops at once (its server end closes); the host is then away for a moment.
    first.server.close()
    attempts: list[object] = [first, verb.Refused("503 the host is unreachable", 503), second]

    def connect() -> verb.Stream:
        outcome = attempts.pop(0)
        if isinstance(outcome, verb.Refused):
            raise outcome
        if outcome is second:
            os.write(keyboard[1], b"\x1d")
        assert isinstance(outcome, FakeStream)
        return outcome

    err = io.StringIO()
    code = verb.run_console(
        "web-1",
        connect,
        stdin_fd=keyboard[0],
        stdout_fd=screen[1],
        err=err,
        backoff=(0.01,),
    )
    said = err.getvalue()
    assert code == 0
    assert attempts == []
    assert "The console of web-1 dropped: the connection closed; connecting again" in said
    assert "503 the host is unreachable\r\nretrying in 0.01s (Ctrl-] to leave)" in said
    assert said.count("Connected to web-1") == 2


@pytest.mark.parametrize("code", [403, 404, 409])
def test_a_refusal_waiting_will_not_change_ends_the_command(
    keyboard: tuple[int, int], screen: tuple[int, int], code: int
) -> None:
    def connect() -> verb.Stream:
        raise verb.Refused(f"Error from server: refused ({code})", code)

    err = io.StringIO()
    assert (
        verb.run_console("web-1", connect, stdin_fd=keyboard[0], stdout_fd=screen[1], err=err) == 1
    )
    assert err.getvalue() == f"Error from server: refused ({code})\r\n"


def test_the_verb_is_registered() -> None:
    options = kubectl_nova.build_parser().parse_args(["console", "web-1", "-n", "prod"])
    assert (options.name, options.namespace, options.run) == ("web-1", "prod", verb.run)
