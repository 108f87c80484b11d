"""``kubectl nova console NAME``: the guest's serial console in this terminal, interactive.

A websocket to the Instance's ``console`` subresource through the kube-apiserver, with the
kubeconfig's credentials (RBAC: ``get`` on ``instances/console`` in the group
``subresources.compute.kubenova.io``), relayed to this terminal in raw mode, so that every key
(Ctrl-C included) reaches the guest. Ctrl-] leaves, as telnet's and virsh console's escape
character does, and the terminal is restored.

It never hangs silently: when the console drops (the host's agent restarted or is unreachable,
the guest moved) it says so on stderr and connects again, with a growing pause, until Ctrl-].
A refusal that waiting will not change (403 not allowed, 404 no such Instance, 409 no console
for this guest) is printed and the command exits 1; after a first connection a 409 is waited
out too, since a guest that is moving or restarting has none for a moment.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import ssl
import sys
import termios
import tty
from collections.abc import Callable, Iterator
from typing import Any, Final, Protocol, TextIO

import websocket
from kubernetes.stream import ws_client

from kubenova.cli import kube, vnc_proxy

#: Ctrl-], the byte that leaves the console.
ESCAPE: Final = 0x1D
BUFFER_SIZE: Final = 65536
#: Pauses between attempts to connect again, in seconds; the last repeats.
BACKOFF_S: Final = (1.0, 2.0, 4.0, 8.0, 10.0)
# How long one wait for the server's next message lasts before the loop looks at the keyboard
# again: a readable TLS socket may hold records that carry no message.
_POLL_S: Final = 0.5
# Refusals that no wait will change; 409 only until a first connection.
_FINAL_CODES: Final = frozenset({400, 401, 403, 404, 409})


class Refused(Exception):
    """The console could not be opened; ``code`` is the HTTP status (None: no answer)."""

    def __init__(self, message: str, code: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class Stream(Protocol):
    """What the relay needs of a websocket (``websocket.WebSocket``)."""

    sock: Any

    def send_bytes(self, data: bytes) -> Any: ...
    def recv_data(self) -> tuple[int, bytes]: ...
    def settimeout(self, timeout: float | None) -> None: ...
    def close(self) -> None: ...


Connect = Callable[[], Stream]


def split_at_escape(data: bytes) -> tuple[bytes, bool]:
    """The bytes to send of what was typed, and whether the escape character was among them
    (what follows it is dropped)."""
    at = data.find(bytes((ESCAPE,)))
    return (data, False) if at < 0 else (data[:at], True)


def connector(cluster: kube.Cluster, name: str) -> Connect:
    """Opens the websocket of the Instance's ``console``; :class:`Refused` otherwise."""

    def connect() -> Stream:
        where = vnc_proxy.target(cluster, name, "console")
        try:
            opened: websocket.WebSocket = ws_client.create_websocket(  # type: ignore[no-untyped-call]
                cluster.api.configuration, where.url, where.headers
            )
        except websocket.WebSocketBadStatusException as refused:
            message = vnc_proxy.describe_refusal(refused, cluster.server)
            raise Refused(message, refused.status_code) from None
        except (websocket.WebSocketException, OSError) as failed:
            raise Refused(kube.describe_error(failed, cluster.server), None) from None
        return opened

    return connect


def run_console(
    name: str,
    connect: Connect,
    *,
    stdin_fd: int,
    stdout_fd: int,
    err: TextIO,
    backoff: tuple[float, ...] = BACKOFF_S,
) -> int:
    """Relay until Ctrl-] (0) or a final refusal (1); see the module docstring."""

    def say(message: str) -> None:
        # The terminal is raw: a line ends with a carriage return too.
        err.write(message.rstrip("\n").replace("\n", "\r\n") + "\r\n")
        err.flush()

    attempt = 0
    connected_before = False
    while True:
        try:
            stream = connect()
        except Refused as refused:
            final = refused.code in _FINAL_CODES and not (connected_before and refused.code == 409)
            if final:
                say(refused.message)
                return 1
            pause = backoff[min(attempt, len(backoff) - 1)]
            attempt += 1
            say(f"{refused.message}\nretrying in {pause:g}s (Ctrl-] to leave)")
            if _wait_for_escape(stdin_fd, pause):
                say(f"Left the console of {name}.")
                return 0
            continue
        attempt = 0
        connected_before = True
        say(f"Connected to {name} (escape character is ^])")
        try:
            dropped = relay(stream, stdin_fd, stdout_fd)
        finally:
            with contextlib.suppress(Exception):
                stream.close()
        if dropped is None:
            say(f"\nLeft the console of {name}.")
            return 0
        say(f"\nThe console of {name} dropped: {dropped}; connecting again (Ctrl-] to leave)")


def relay(stream: Stream, stdin_fd: int, stdout_fd: int) -> str | None:
    """Copy keys to the websocket and its messages to the terminal; None when the user left
    (Ctrl-], or the end of the input), else why the console dropped."""
    remote = stream.sock
    if remote is None:
        return "the websocket is closed"
    while True:
        waiting = isinstance(remote, ssl.SSLSocket) and remote.pending() > 0
        readable, _, _ = select.select([stdin_fd, remote], [], [], 0.0 if waiting else None)
        if stdin_fd in readable:
            typed = os.read(stdin_fd, BUFFER_SIZE)
            keys, escaped = split_at_escape(typed)
            if keys:
                try:
                    stream.send_bytes(keys)
                except (websocket.WebSocketException, OSError) as failed:
                    return f"cannot send: {failed}"
            if escaped or not typed:
                return None
        if remote in readable or waiting:
            stream.settimeout(_POLL_S)
            try:
                opcode, message = stream.recv_data()
            except websocket.WebSocketTimeoutException:
                continue
            except (websocket.WebSocketException, OSError):
                return "the connection closed"
            finally:
                with contextlib.suppress(Exception):
                    stream.settimeout(None)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                reason = bytes(message[2:]).decode(errors="replace")
                return f"the server closed it ({reason})" if reason else "the server closed it"
            os.write(stdout_fd, bytes(message))


def _wait_for_escape(stdin_fd: int, seconds: float) -> bool:
    """Wait ``seconds``; True as soon as Ctrl-] is typed (other keys are dropped: there is no
    console to send them to)."""
    readable, _, _ = select.select([stdin_fd], [], [], seconds)
    if not readable:
        return False
    typed = os.read(stdin_fd, BUFFER_SIZE)
    return split_at_escape(typed)[1] or not typed


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """The terminal on ``fd`` in raw mode, restored afterwards; nothing when not a terminal."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def run(cluster: kube.Cluster, options: argparse.Namespace) -> int:
    stdin_fd = sys.stdin.fileno()
    with raw_terminal(stdin_fd):
        return run_console(
            options.name,
            connector(cluster, options.name),
            stdin_fd=stdin_fd,
            stdout_fd=sys.stdout.fileno(),
            err=sys.stderr,
        )


def register(
    verbs: argparse._SubParsersAction[argparse.ArgumentParser],
    common: list[argparse.ArgumentParser],
) -> None:
    parser = verbs.add_parser(
        "console",
        parents=common,
        help="open an instance's serial console in this terminal (Ctrl-] leaves)",
        description=(
            "Type on the instance's serial console, through the kube-apiserver: the terminal"
            " is raw until Ctrl-] leaves. A console that drops is opened again until then."
        ),
    )
    parser.add_argument("name", metavar="NAME", help="the Instance's name")
    parser.set_defaults(run=run)
