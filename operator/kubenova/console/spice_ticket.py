"""The password ("ticket") of each guest's SPICE display, derived from a key the console proxy
and the hosts' agents share.

SPICE cannot ask its client for a certificate, as QEMU's VNC does (``verify-peer=yes``), so
TLS alone would let anyone who reaches a SPICE port on a node's address in. Each guest's SPICE
therefore gets a password: the same function of the key and the instance's uuid on every host
(a guest that migrates keeps its password), which the agent sets in the domain's XML with
this module's :func:`ticket`. The console proxy, holding the key too, answers
SPICE's link handshake with it on the browser's behalf (:mod:`kubenova.console.proxy.spice_link`),
so the browser, and whoever copies its console URL, never learns it.

The ticket is an HMAC rather than a random password kept somewhere: nothing has to be stored,
looked up or sent to the proxy per guest, and a guest's ticket says nothing about another's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import pathlib
from typing import Final

#: The shortest key accepted: a ticket is only as hard to guess as its key.
MIN_KEY_BYTES: Final = 32
#: SPICE takes passwords of at most 60 bytes; 32 characters of base64 carry 192 bits.
TICKET_LENGTH: Final = 32
# Binds the HMAC to this one use of the key.
_CONTEXT: Final = b"kubenova-spice-ticket\0"


class TicketKeyError(ValueError):
    """A key file that cannot serve, e.g. ``KUBENOVA_CONSOLE_SPICE_TICKET_KEY_FILE: the key in
    /keys/key has 5 bytes; at least 32 are needed``."""

    def __init__(self, setting: str, reason: str) -> None:
        super().__init__(f"{setting}: {reason}")
        self.setting = setting
        self.reason = reason


def ticket(key: bytes, instance_uuid: str) -> str:
    """The SPICE password of the instance ``instance_uuid``: 32 URL-safe base64 characters."""
    digest = hmac.new(key, _CONTEXT + instance_uuid.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:TICKET_LENGTH]


def check_key(key: bytes, setting: str, source: str) -> bytes:
    """``key`` unchanged, or :class:`TicketKeyError` naming ``setting`` when it is too short
    to serve; ``source`` says where it came from."""
    if len(key) < MIN_KEY_BYTES:
        raise TicketKeyError(
            setting,
            f"the key in {source} has {len(key)} bytes; at least {MIN_KEY_BYTES} are needed",
        )
    return key


def read_key(path: str | os.PathLike[str], setting: str) -> bytes:
    """The key in the file ``path``, trailing white space and newlines dropped (a Secret's
    value often ends in one); :class:`TicketKeyError` naming ``setting`` and the reason when
    the file cannot be read or the key is too short."""
    try:
        key = pathlib.Path(path).read_bytes().rstrip()
    except OSError as exc:
        raise TicketKeyError(setting, f"cannot read {path}: {exc.strerror or exc}") from None
    return check_key(key, setting, str(path))
